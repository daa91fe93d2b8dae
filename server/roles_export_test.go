package server

// RolesTable returns the procedures table's roles as role names by full
// procedure name.
func RolesTable() map[string]string {
	out := make(map[string]string, len(procedures))
	for p, r := range procedures {
		out[p] = r.role.String()
	}
	return out
}

// RoleOf returns the role name procedure has, as the interceptor sees it.
func RoleOf(procedure string) string { return procedureOf(procedure).role.String() }
