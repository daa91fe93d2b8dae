package cluster

import (
	"testing"

	"github.com/hashicorp/raft"
)

// Raft asks the address provider for the node's own id in every RPC's
// header: it answers with the advertised address, so Raft does not warn
// each time; an id it has no override for falls back (with an error).
func TestDialOverrides_AnswerOwnID(t *testing.T) {
	d := dialOverrides{self: "n1", selfAddr: "127.0.0.1:7071", to: map[string]string{"n2": "127.0.0.1:9002"}}
	for id, want := range map[raft.ServerID]raft.ServerAddress{"n1": "127.0.0.1:7071", "n2": "127.0.0.1:9002"} {
		if got, err := d.ServerAddr(id); err != nil || got != want {
			t.Errorf("ServerAddr(%s) = %q, %v; want %q", id, got, err, want)
		}
	}
	if _, err := d.ServerAddr("n3"); err == nil {
		t.Error("ServerAddr(n3) found an address it was not given")
	}
}
