package cluster

import (
	"sync"
	"time"

	"github.com/hashicorp/raft"
)

// leaderWatch tells waiters when this node's view of the leader changes:
// a new leader, none, or this node gaining or losing leadership. A forward
// to a leader that froze is abandoned when the watch fires, not when the
// frozen process wakes.
type leaderWatch struct {
	mu sync.Mutex
	ch chan struct{}
}

func newLeaderWatch() *leaderWatch { return &leaderWatch{ch: make(chan struct{})} }

// changed returns a channel closed at the next change.
func (w *leaderWatch) changed() <-chan struct{} {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.ch
}

func (w *leaderWatch) signal() {
	w.mu.Lock()
	close(w.ch)
	w.ch = make(chan struct{})
	w.mu.Unlock()
}

// watchLeader relays Raft's leader and state observations to n.leaders
// until the node stops. A dropped observation (the channel full) loses
// nothing: the ones queued signal the change.
func (n *Node) watchLeader() {
	defer n.wg.Done()
	obs := make(chan raft.Observation, 64)
	o := raft.NewObserver(obs, false, func(o *raft.Observation) bool {
		switch o.Data.(type) {
		case raft.LeaderObservation, raft.RaftState:
			return true
		}
		return false
	})
	n.raft.RegisterObserver(o)
	defer n.raft.DeregisterObserver(o)
	if _, id := n.raft.LeaderWithID(); id != "" && n.startingUp.Load() {
		n.endStartup() // a leader known before the observer was
	}
	for {
		select {
		case <-n.stop:
			n.leaders.signal()
			return
		case <-obs:
			n.leaders.signal()
			if _, id := n.raft.LeaderWithID(); id != "" && n.startingUp.Load() {
				n.endStartup()
			}
		}
	}
}

// LeaderChanged returns a channel closed when this node's view of the
// leader next changes (a new leader, none, this node gaining or losing
// leadership) or the node stops. Take it before reading Leader, so that no
// change in between is missed.
func (n *Node) LeaderChanged() <-chan struct{} { return n.leaders.changed() }

// Starting up. A node that starts with no leader to hear from waits its
// heartbeat timeout, randomized up to twice as long, before it stands for
// election: after a whole-cluster restart that is pure waiting, on top of
// restoring the state. So, like etcd advancing its election ticks at start,
// a node starts with its heartbeat timeout at LeaderLeaseTimeout (the
// shortest Raft accepts: half the usual at the defaults) and goes back to
// HeartbeatTimeout once it knows a leader. Pre-vote keeps an early
// candidate from disturbing a cluster that has a leader.

// startupHeartbeatTimeout is the heartbeat timeout a node starts with.
func (c *Config) startupHeartbeatTimeout() time.Duration {
	if c.InMemory || c.LeaderLeaseTimeout <= 0 || c.LeaderLeaseTimeout >= c.HeartbeatTimeout {
		return c.HeartbeatTimeout
	}
	return c.LeaderLeaseTimeout
}

// endStartup puts the heartbeat timeout back to HeartbeatTimeout.
func (n *Node) endStartup() {
	n.startingUp.Store(false)
	if err := n.reloadRaft(n.compact.trail.Load()); err != nil {
		n.log.Warn("cannot set the heartbeat timeout after start", "error", err)
	}
}

// reloadRaft sets Raft's reloadable settings: TrailingLogs to trailing,
// the rest from the config (the heartbeat timeout as startup wants it).
func (n *Node) reloadRaft(trailing uint64) error {
	cfg := n.cfg
	ht := cfg.HeartbeatTimeout
	if n.startingUp.Load() {
		ht = cfg.startupHeartbeatTimeout()
	}
	return n.raft.ReloadConfig(raft.ReloadableConfig{TrailingLogs: trailing, SnapshotInterval: cfg.SnapshotInterval,
		SnapshotThreshold: cfg.SnapshotThreshold, HeartbeatTimeout: ht, ElectionTimeout: cfg.ElectionTimeout})
}
