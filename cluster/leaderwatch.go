package cluster

import (
	"sync"

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
	for {
		select {
		case <-n.stop:
			n.leaders.signal()
			return
		case <-obs:
			n.leaders.signal()
		}
	}
}

// LeaderChanged returns a channel closed when this node's view of the
// leader next changes (a new leader, none, this node gaining or losing
// leadership) or the node stops. Take it before reading Leader, so that no
// change in between is missed.
func (n *Node) LeaderChanged() <-chan struct{} { return n.leaders.changed() }
