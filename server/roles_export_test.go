package server

// RolesTable returns the roles table as role names by full procedure name.
func RolesTable() map[string]string {
	out := make(map[string]string, len(roles))
	for p, r := range roles {
		out[p] = r.String()
	}
	return out
}

// RoleOf returns the role name procedure has, as the interceptor sees it.
func RoleOf(procedure string) string { return roleOf(procedure).String() }
