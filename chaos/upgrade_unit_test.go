package chaos

import (
	"maps"
	"slices"
	"testing"
)

// TestUsageFlagsAndKeepFlags shows how the rolling upgrade starts an older
// build with the flags it knows: the flags come from its -h usage, and the
// flags it lacks are dropped with their values, in either form.
func TestUsageFlagsAndKeepFlags(t *testing.T) {
	usage := `Usage of rationd:
  -data-dir string
    	directory for the Raft log and snapshots (created 0700) (default "ration-data")
  -enable-test-flags
    	allow the flags marked TESTS ONLY; never in production
  -node-id string
    	this node's id, unique in the cluster and kept across restarts (default "n1")
  -rate-exempt value
    	comma-separated addresses or CIDR prefixes the per-address rate limits skip
`
	known := usageFlags(usage)
	if want := map[string]bool{"data-dir": true, "enable-test-flags": false, "node-id": true, "rate-exempt": true}; !maps.Equal(known, want) {
		t.Fatalf("usageFlags: %v, want %v", known, want)
	}
	all := maps.Clone(known)
	all["new-flag"], all["new-bool"] = true, false
	args := []string{"--node-id", "n1", "--new-flag", "x", "--enable-test-flags", "--new-bool", "--data-dir=/d", "-new-flag=y", "--rate-exempt", ""}
	kept, dropped := keepFlags(args, known, all)
	if want := []string{"--node-id", "n1", "--enable-test-flags", "--data-dir=/d", "--rate-exempt", ""}; !slices.Equal(kept, want) {
		t.Errorf("kept %q, want %q", kept, want)
	}
	if want := []string{"--new-flag", "x", "--new-bool", "-new-flag=y"}; !slices.Equal(dropped, want) {
		t.Errorf("dropped %q, want %q", dropped, want)
	}
}
