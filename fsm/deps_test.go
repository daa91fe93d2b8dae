package fsm

import (
	"os/exec"
	"strings"
	"testing"
)

// TestDeps_FSMImportsNoNetworkOrClock keeps the layering README's Layout states: the
// state machine imports no networking, RPC, cluster or server code, and
// nothing that reads the environment or true randomness directly.
func TestDeps_FSMImportsNoNetworkOrClock(t *testing.T) {
	for _, pkg := range []string{".", "./kind"} {
		direct := goList(t, "{{join .Imports \"\\n\"}}", pkg)
		for _, imp := range direct {
			switch {
			case imp == "net" || strings.HasPrefix(imp, "net/"),
				imp == "os" || strings.HasPrefix(imp, "os/"),
				imp == "syscall", imp == "crypto/rand", imp == "math/rand", imp == "unsafe":
				t.Errorf("%s imports %s directly", pkg, imp)
			case strings.Contains(imp, "."): // a module outside the standard library
				if !allowedModule(imp) {
					t.Errorf("%s imports %s, which the state machine may not use", pkg, imp)
				}
			}
		}
		// hashicorp/raft is allowed for its types (raft.Log, FSM, SnapshotSink);
		// what it brings along (its transport, go-metrics) is its own business.
		viaRaft := map[string]bool{}
		for _, d := range goList(t, "{{join .Deps \"\\n\"}}", "github.com/hashicorp/raft") {
			viaRaft[d] = true
		}
		for _, dep := range goList(t, "{{join .Deps \"\\n\"}}", pkg) {
			if viaRaft[dep] {
				continue
			}
			for _, bad := range []string{"net/http", "connectrpc.com/", "google.golang.org/grpc",
				"github.com/rationhq/ration/cluster", "github.com/rationhq/ration/server", "github.com/rationhq/ration/cmd"} {
				if dep == bad || strings.HasPrefix(dep, bad) {
					t.Errorf("%s depends on %s", pkg, dep)
				}
			}
		}
	}
}

func allowedModule(imp string) bool {
	for _, ok := range []string{
		"github.com/rationhq/ration/api/", "github.com/rationhq/ration/fsm/",
		"github.com/hashicorp/raft", "github.com/hashicorp/go-hclog", "github.com/tidwall/btree",
		"google.golang.org/protobuf/",
	} {
		if imp == strings.TrimSuffix(ok, "/") || strings.HasPrefix(imp, ok) {
			return true
		}
	}
	return false
}

func goList(t *testing.T, format, pkg string) []string {
	t.Helper()
	out, err := exec.Command("go", "list", "-f", format, pkg).Output()
	if err != nil {
		t.Fatalf("go list %s: %v", pkg, err)
	}
	return strings.Fields(string(out))
}
