package cluster

import (
	"testing"
	"time"
)

// TestNode_StartsWithAShortHeartbeatTimeout: a node stands for election
// after LeaderLeaseTimeout at start, and goes back to HeartbeatTimeout once
// it knows a leader.
func TestNode_StartsWithAShortHeartbeatTimeout(t *testing.T) {
	cfg := DefaultConfig()
	cfg.NodeID, cfg.RaftAddr, cfg.DataDir, cfg.Bootstrap = "n1", "127.0.0.1:0", t.TempDir(), true
	n, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { n.Close() })
	if got := n.raft.ReloadableConfig().HeartbeatTimeout; got != cfg.LeaderLeaseTimeout {
		t.Fatalf("heartbeat timeout at start %s, want LeaderLeaseTimeout %s", got, cfg.LeaderLeaseTimeout)
	}
	deadline := time.Now().Add(10 * time.Second)
	for !n.IsLeader() || n.startingUp.Load() {
		if time.Now().After(deadline) {
			t.Fatal("no leader, or still starting up, after 10s")
		}
		time.Sleep(10 * time.Millisecond)
	}
	if got := n.raft.ReloadableConfig().HeartbeatTimeout; got != cfg.HeartbeatTimeout {
		t.Fatalf("heartbeat timeout once a leader is known %s, want %s", got, cfg.HeartbeatTimeout)
	}
}
