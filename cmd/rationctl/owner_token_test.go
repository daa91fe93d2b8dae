package main

import (
	"encoding/json"
	"slices"
	"strings"
	"testing"

	"github.com/rationhq/ration/server/servertest"
)

func TestServiceCreate_PrintsOwnerTokenOnce(t *testing.T) {
	f := &fakeServer{ownerToken: "rot_the-fake-owner-token"}
	addr := startFake(t, f)

	r := runCLI(t, nil, "", "--addr", addr, "service", "create", "dm", "--kind", "dmcheck")
	if r.code != 0 || !strings.Contains(r.stdout, "owner_token") || !strings.Contains(r.stdout, "rot_the-fake-owner-token") {
		t.Fatalf("table output lacks the owner token (exit %d):\n%s\n%s", r.code, r.stdout, r.stderr)
	}
	if !strings.Contains(r.stderr, "will not be shown again") || strings.Contains(r.stderr, "rot_the-fake-owner-token") {
		t.Errorf("stderr should warn, without the token: %q", r.stderr)
	}

	r = runCLI(t, nil, "", "--addr", addr, "-o", "json", "service", "create", "dm2", "--kind", "dmcheck")
	var got struct {
		OwnerToken string `json:"owner_token"`
	}
	if err := json.Unmarshal([]byte(r.stdout), &got); err != nil || got.OwnerToken != "rot_the-fake-owner-token" {
		t.Fatalf("json output %q: %v", r.stdout, err)
	}

	// A replayed answer has no token: say what to do instead.
	f.ownerToken = ""
	r = runCLI(t, nil, "", "--addr", addr, "service", "create", "dm3", "--kind", "dmcheck", "--request-id", "again")
	if r.code != 0 || !strings.Contains(r.stderr, "rotate-token dm3") {
		t.Fatalf("without a token: exit %d, stderr %q", r.code, r.stderr)
	}
}

func TestServiceRotateToken_CallsRotateOwnerToken(t *testing.T) {
	f := &fakeServer{ownerToken: "rot_new"}
	addr := startFake(t, f)
	out := mustRun(t, nil, "", "--addr", addr, "--token", "rot_old", "service", "rotate-token", "dm", "--request-id", "r-9")
	if len(f.rotates) != 1 || f.rotates[0].GetName() != "dm" || f.rotates[0].GetRequestId() != "r-9" {
		t.Fatalf("RotateOwnerToken requests: %v", f.rotates)
	}
	if got := f.auth["/ration.v1.OwnerService/RotateOwnerToken"]; !slices.Equal(got, []string{"Bearer rot_old"}) {
		t.Errorf("Authorization = %q", got)
	}
	if !strings.Contains(out, "rot_new") {
		t.Errorf("output lacks the new token:\n%s", out)
	}
}

func TestAuth_TokenEnvironmentPrecedence(t *testing.T) {
	const list = "/ration.v1.OwnerService/ListServices"
	f := &fakeServer{}
	addr := startFake(t, f)
	mustRun(t, map[string]string{envAddr: addr, envToken: "owner-tok", envAdminToken: "admin-tok"}, "", "service", "list")
	mustRun(t, map[string]string{envAddr: addr, envAdminToken: "admin-tok"}, "", "service", "list")
	mustRun(t, map[string]string{envAddr: addr, envToken: "owner-tok"}, "", "--token", "flag-tok", "service", "list")
	if got := f.auth[list]; !slices.Equal(got, []string{"Bearer owner-tok", "Bearer admin-tok", "Bearer flag-tok"}) {
		t.Errorf("Authorization headers = %q", got)
	}
}

// TestOwnerToken_AgainstARealNode: the token service create prints works as
// --token for that service's calls, not for another's, and rotate-token
// ends it.
func TestOwnerToken_AgainstARealNode(t *testing.T) {
	const admin = "admin-token-of-the-rationctl-test"
	c := servertest.StartWith(t, 1, servertest.Options{Token: admin, InMemory: true})
	env := map[string]string{envAddr: c.Addrs[0], envAdminToken: admin}
	tokenOf := func(out string) string {
		for _, line := range strings.Split(out, "\n") {
			if f := strings.Fields(line); len(f) == 2 && f[0] == "owner_token" {
				return f[1]
			}
		}
		t.Fatalf("no owner_token row in:\n%s", out)
		return ""
	}
	tok := tokenOf(mustRun(t, env, "", "service", "create", "dm", "--kind", "dmcheck"))
	mustRun(t, env, "", "service", "create", "other", "--kind", "dmcheck")

	owner := map[string]string{envAddr: c.Addrs[0], envToken: tok}
	mustRun(t, owner, "", "items", "add", "dm", "a", "b")
	if out := mustRun(t, owner, "", "service", "get", "dm"); !strings.Contains(out, "dm") {
		t.Fatalf("service get:\n%s", out)
	}
	for _, args := range [][]string{{"items", "add", "other", "a"}, {"service", "list"}, {"cluster", "status"}} {
		if r := runCLI(t, owner, "", args...); r.code == 0 || !strings.Contains(r.stderr, "permission_denied") {
			t.Errorf("%v with dm's owner token: exit %d, stderr %q; want permission_denied", args, r.code, r.stderr)
		}
	}

	next := tokenOf(mustRun(t, owner, "", "service", "rotate-token", "dm"))
	if next == tok {
		t.Fatal("rotate-token returned the same token")
	}
	if r := runCLI(t, owner, "", "service", "get", "dm"); r.code == 0 || !strings.Contains(r.stderr, "unauthenticated") {
		t.Errorf("old token after rotation: exit %d, stderr %q", r.code, r.stderr)
	}
	mustRun(t, map[string]string{envAddr: c.Addrs[0], envToken: next}, "", "service", "get", "dm")
}
