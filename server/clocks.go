package server

import (
	"slices"
	"sync"
	"time"

	peerv1 "github.com/rationhq/ration/api/ration/peer/v1"
	"github.com/rationhq/ration/cluster"
)

// Clock offsets ride on the read-index calls every node makes to the
// leader a few times a second. The caller sends its wall clock; the leader
// takes the caller's offset from its own clock on receipt (off by the
// one-way delay), keeps it, and answers with its own clock and the
// majority's offset from it (the median over the voters, its own being 0),
// which also gives the leader its own offset from the majority. The caller
// takes its offset from the leader as the midpoint of its send and receive
// times against the leader's clock (off by at most half the round trip),
// and so its offset from the majority. Each node tells its cluster node
// (cluster.Node.ObserveClockOffset), which decides whether its clock may
// move the cluster's time and whether it may lead.
//
// A wall clock can step between two calls. Each offset the leader keeps is
// taken with the leader's wall and monotonic clocks of that moment, and
// moved by any step of the leader's wall clock since (stepOf), so a
// leader's step shows in every offset at once, not one call at a time.

// clockOffsetFresh is how long the leader counts a node's offset.
const clockOffsetFresh = 10 * time.Second

// peerOffset is a node's clock minus the leader's, measured when the
// leader's clocks read wall and at.
type peerOffset struct {
	offset time.Duration
	wall   time.Time // wall clock only
	at     time.Time // monotonic
}

// stepOf is how far the wall clock, read now as wall, has moved from the
// monotonic clock since the pair (then, at).
func stepOf(wall, then, at time.Time) time.Duration {
	return wall.Round(0).Sub(then) - time.Since(at)
}

// clocks is what the leader knows of the others' clock offsets.
type clocks struct {
	peers sync.Map // node id -> peerOffset
}

// stampClock fills a read-index request's clock fields.
func (s *Server) stampClock(req *peerv1.ReadIndexRequest) {
	req.NodeId = s.store.ID()
	req.SentAt = s.store.WallClock().UnixNano()
}

// measureClock takes this node's offset from the majority from a read-index
// answer to a request sent at sentAt.
func (s *Server) measureClock(sentAt int64, res *peerv1.ReadIndexResponse) {
	if res.GetLeaderTime() == 0 || res.MajorityOffset == nil {
		return
	}
	recv := s.store.WallClock().UnixNano()
	fromLeader := time.Duration((sentAt+recv)/2 - res.GetLeaderTime())
	s.store.ObserveClockOffset(fromLeader - time.Duration(res.GetMajorityOffset()))
}

// answerClock, on the leader, takes the caller's offset and fills the
// answer's clock fields: its own clock, and the majority's offset from it,
// which is also its own offset from the majority, negated.
func (s *Server) answerClock(req *peerv1.ReadIndexRequest, res *peerv1.ReadIndexResponse, members []cluster.Member) {
	wall := s.store.WallClock()
	if req.GetSentAt() != 0 && req.GetNodeId() != "" {
		s.clocks.peers.Store(req.GetNodeId(), peerOffset{offset: time.Duration(req.GetSentAt() - wall.UnixNano()),
			wall: wall.Round(0), at: time.Now()})
	}
	res.LeaderTime = wall.UnixNano()
	if m, ok := s.majorityOffset(wall, members); ok {
		res.MajorityOffset = new(int64(m))
		s.store.ObserveClockOffset(-m)
	}
}

// majorityOffset is the median of the voters' clocks minus the leader's
// (read as wall), the leader's own being 0, from offsets taken lately; ok
// is false with fresh offsets from fewer than a majority of the voters, or
// when the two middle ones of an even count disagree by more than
// MaxClockOffset (then which is the majority's is not known).
func (s *Server) majorityOffset(wall time.Time, members []cluster.Member) (time.Duration, bool) {
	self := s.store.ID()
	offs := []time.Duration{0}
	voters := 0
	for _, m := range members {
		if m.Suffrage != "Voter" {
			continue
		}
		voters++
		if m.ID == self {
			continue
		}
		if v, ok := s.clocks.peers.Load(m.ID); ok {
			if p := v.(peerOffset); time.Since(p.at) < clockOffsetFresh {
				offs = append(offs, p.offset-stepOf(wall, p.wall, p.at))
			}
		}
	}
	if voters == 0 || len(offs) < voters/2+1 {
		return 0, false
	}
	slices.Sort(offs)
	n := len(offs)
	if n%2 == 1 {
		return offs[n/2], true
	}
	lo, hi := offs[n/2-1], offs[n/2]
	if hi-lo > s.store.MaxClockOffset() {
		return 0, false
	}
	return lo + (hi-lo)/2, true
}
