package server

import (
	"context"
	"time"

	"connectrpc.com/connect"
)

// DefaultStaleStreamAfter is how long a node serves a following stream
// (WatchActivity, ExportResults with follow) without hearing from a leader
// before it ends the stream (Config.StaleStreamAfter).
const DefaultStaleStreamAfter = 10 * time.Second

// awaitChange waits until this node applies a newer state (changed closes)
// and reports true, or until ctx ends and reports false. A following
// stream reads this node's own state, which a node cut off from the leader
// (or stopped) never moves again: once it has not heard from a leader for
// StaleStreamAfter, the stream ends with Unavailable, and its client
// resumes on another node.
func (s *Server) awaitChange(ctx context.Context, changed <-chan struct{}) (bool, error) {
	stale := s.cfg.StaleStreamAfter
	if stale <= 0 {
		stale = DefaultStaleStreamAfter
	}
	tick := time.NewTicker(min(time.Second, stale/4))
	defer tick.Stop()
	// While the node knows no leader (an election) its contact age is
	// unknown: count from the last contact seen, or from the stream's start.
	heard := time.Now()
	for {
		select {
		case <-ctx.Done():
			return false, nil
		case <-changed:
			return true, nil
		case now := <-tick.C:
			if age := s.store.LeaderContactAge(); age >= 0 {
				heard = now.Add(-age)
			}
			if now.Sub(heard) > stale {
				return false, s.errorf(connect.CodeUnavailable, "NO_LEADER",
					"this node has not heard from a leader for over %s: resume the stream on another node", stale)
			}
		}
	}
}
