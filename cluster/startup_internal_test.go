package cluster

import (
	"testing"
	"time"
)

// TestNode_StartsWithAShortHeartbeatTimeout: a node stands for election
// after LeaderLeaseTimeout at start, and goes back to HeartbeatTimeout once
// it knows a leader.
func TestNode_StartsWithAShortHeartbeatTimeout(t *testing.T) {
	start := func(bootstrap bool) (*Node, Config) {
		cfg := DefaultConfig()
		cfg.NodeID, cfg.RaftAddr, cfg.DataDir, cfg.Bootstrap = "n1", "127.0.0.1:0", t.TempDir(), bootstrap
		n, err := New(cfg)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { n.Close() })
		return n, cfg
	}
	// A node that is no member of any cluster yet never hears of a leader.
	alone, cfg := start(false)
	time.Sleep(2 * cfg.LeaderLeaseTimeout)
	if got := alone.raft.ReloadableConfig().HeartbeatTimeout; got != cfg.LeaderLeaseTimeout || !alone.startingUp.Load() {
		t.Fatalf("heartbeat timeout with no leader known %s (starting up: %v), want LeaderLeaseTimeout %s", got, alone.startingUp.Load(), cfg.LeaderLeaseTimeout)
	}
	n, cfg := start(true)
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
