package server

import (
	"context"
	"fmt"
	"time"

	"connectrpc.com/connect"
	"google.golang.org/protobuf/types/known/durationpb"

	peerv1 "github.com/rationhq/ration/api/ration/peer/v1"
	"github.com/rationhq/ration/api/ration/peer/v1/peerv1connect"
	rationv1 "github.com/rationhq/ration/api/ration/v1"
	"github.com/rationhq/ration/fsm"
)

// read returns state at the requested consistency. LINEARIZABLE (the
// default) waits until this node has applied the leader's read index, asked
// of the leader; STALE answers from local state at once.
func (s *Server) read(ctx context.Context, c rationv1.Consistency) (*fsm.State, *rationv1.ReadInfo, error) {
	info := &rationv1.ReadInfo{ServedBy: s.store.ID(), Consistency: c}
	if c == rationv1.Consistency_CONSISTENCY_UNSPECIFIED {
		info.Consistency = rationv1.Consistency_CONSISTENCY_LINEARIZABLE
	}
	if age := s.store.LeaderContactAge(); age >= 0 {
		info.LeaderContactAge = durationpb.New(age)
	}
	var st *fsm.State
	switch info.Consistency {
	case rationv1.Consistency_CONSISTENCY_STALE:
		st = s.store.State()
		if d, ok := s.fresh.staleness(st.Index(), time.Now()); ok {
			info.MaxStaleness = durationpb.New(d)
		}
	case rationv1.Consistency_CONSISTENCY_LINEARIZABLE:
		idx, err := s.readIndex(ctx)
		if err != nil {
			return nil, nil, err
		}
		if st, err = s.store.WaitApplied(ctx, idx); err != nil {
			return nil, nil, s.rpcError(err)
		}
		info.MaxStaleness = durationpb.New(0)
	default:
		return nil, nil, s.invalid(fmt.Errorf("consistency %v is not one of LINEARIZABLE, STALE", c))
	}
	info.Index = st.Index()
	return st, info, nil
}

// readIndex returns the index a linearizable read waits for: the leader's
// own, or one asked of the leader. Asking again is always safe, so it
// follows leadership as a write with a request id does.
func (s *Server) readIndex(ctx context.Context) (uint64, error) {
	var idx uint64
	err := s.followLeader(ctx, true, "", func(ctx context.Context, addr string) error {
		if addr == "" {
			i, err := s.store.ReadIndex(ctx)
			idx = i
			return err
		}
		msg := &peerv1.ReadIndexRequest{}
		s.stampClock(msg)
		s.stampVersion(msg)
		req := connect.NewRequest(msg)
		if t := s.cfg.AdminToken; t != "" {
			req.Header().Set("Authorization", "Bearer "+t)
		}
		res, err := peerCall[peerv1.ReadIndexResponse](s, ctx, addr, peerv1connect.PeerServiceReadIndexProcedure, req)
		if err == nil {
			idx = res.Msg.GetIndex()
			s.measureClock(msg.GetSentAt(), res.Msg)
			s.learnVersions(res.Msg)
		}
		return err
	})
	return idx, err
}

// peerHandler serves PeerService: what nodes ask of each other over the API.
type peerHandler struct{ s *Server }

func (h *peerHandler) ReadIndex(ctx context.Context, req *connect.Request[peerv1.ReadIndexRequest]) (*connect.Response[peerv1.ReadIndexResponse], error) {
	idx, err := h.s.store.ReadIndex(ctx)
	if err != nil {
		return nil, h.s.rpcError(err)
	}
	res := &peerv1.ReadIndexResponse{Index: idx, LeaderId: h.s.store.ID()}
	// One look at the membership serves both (it asks Raft's main loop).
	members := h.s.store.Members()
	h.s.answerClock(req.Msg, res, members)
	h.s.answerVersions(req.Msg, res, members)
	return connect.NewResponse(res), nil
}
