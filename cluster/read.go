package cluster

import (
	"context"
	"fmt"
	"time"

	"github.com/rationhq/ration/fsm"
)

// ReadIndex returns an index that a linearizable read must wait for: the
// leader's commit index, confirmed by a round of heartbeats to a quorum so
// that a deposed leader cannot answer. Only the leader answers.
func (n *Node) ReadIndex(ctx context.Context) (uint64, error) {
	if !n.IsLeader() {
		return 0, ErrNotLeader
	}
	if !n.leaderReady.Load() {
		return 0, ErrNotReady
	}
	idx := n.raft.CommitIndex()
	done := make(chan error, 1)
	go func() { done <- n.raft.VerifyLeader().Error() }()
	select {
	case err := <-done:
		if err != nil {
			return 0, raftError(err)
		}
	case <-ctx.Done():
		return 0, ctx.Err()
	}
	return idx, nil
}

// WaitApplied waits until this node's state machine has applied index.
func (n *Node) WaitApplied(ctx context.Context, index uint64) (*fsm.State, error) {
	for {
		ch := n.fsm.Changed()
		if st := n.fsm.State(); st.Index() >= index {
			return st, nil
		}
		select {
		case <-ch:
		case <-ctx.Done():
			return nil, fmt.Errorf("waiting to apply index %d: %w", index, ctx.Err())
		case <-n.stop:
			return nil, ErrShutdown
		}
	}
}

// LinearizableState returns state that reflects every write acknowledged
// before the call. Only the leader answers; a follower gets the read index
// from the leader and calls WaitApplied.
func (n *Node) LinearizableState(ctx context.Context) (*fsm.State, error) {
	idx, err := n.ReadIndex(ctx)
	if err != nil {
		return nil, err
	}
	return n.WaitApplied(ctx, idx)
}

// LeaderContactAge is the time since this node last heard from the leader
// (0 on the leader), or -1 (unknown) while it knows no leader. Raft also
// counts a vote it grants and its own step-down as contact, so without a
// leader its last contact says nothing about how fresh the state is.
func (n *Node) LeaderContactAge() time.Duration {
	if n.IsLeader() {
		return 0
	}
	if addr, _ := n.raft.LeaderWithID(); addr == "" {
		return -1
	}
	last := n.raft.LastContact()
	if last.IsZero() {
		return -1
	}
	return time.Since(last)
}
