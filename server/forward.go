package server

import (
	"context"
	"errors"
	"fmt"
	"net/http"

	"connectrpc.com/connect"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/durationpb"

	peerv1 "github.com/rationhq/ration/api/ration/peer/v1"
	"github.com/rationhq/ration/api/ration/peer/v1/peerv1connect"
	rationv1 "github.com/rationhq/ration/api/ration/v1"
	"github.com/rationhq/ration/api/ration/v1/rationv1connect"
	"github.com/rationhq/ration/cluster"
	"github.com/rationhq/ration/fsm"
)

// Headers ration sets on answers and on forwarded requests.
const (
	// ServedByHeader names the node that applied a write or answered a read.
	ServedByHeader = "Ration-Served-By"
	// forwardedHeader marks a request a follower forwarded, so that it is
	// never forwarded twice.
	forwardedHeader = "Ration-Forwarded-By"
)

// peer holds clients for another node's API.
type peer struct {
	owner   rationv1connect.OwnerServiceClient
	worker  rationv1connect.WorkerServiceClient
	cluster rationv1connect.ClusterServiceClient
	peer    peerv1connect.PeerServiceClient
}

func (s *Server) peer(addr string) *peer {
	s.mu.Lock()
	defer s.mu.Unlock()
	if p, ok := s.peers[addr]; ok {
		return p
	}
	base := s.cfg.PeerScheme + "://" + addr
	c := s.cfg.PeerClient
	p := &peer{
		owner:   rationv1connect.NewOwnerServiceClient(c, base),
		worker:  rationv1connect.NewWorkerServiceClient(c, base),
		cluster: rationv1connect.NewClusterServiceClient(c, base),
		peer:    peerv1connect.NewPeerServiceClient(c, base),
	}
	s.peers[addr] = p
	return p
}

// leader returns clients for the leader, or an Unavailable error.
func (s *Server) leader(h http.Header) (*peer, error) {
	if by := h.Get(forwardedHeader); by != "" {
		return nil, toConnect(s.log, s.store.ID(), fmt.Errorf("forwarded by %s, but this node is not the leader either: %w", by, cluster.ErrNotLeader))
	}
	_, addr, err := s.store.Leader()
	if err != nil {
		return nil, toConnect(s.log, s.store.ID(), err)
	}
	return s.peer(addr), nil
}

// forwardRequest copies what the leader needs from the caller's request.
func forwardRequest[T any](s *Server, in *connect.Request[T]) *connect.Request[T] {
	out := connect.NewRequest(in.Msg)
	if a := in.Header().Get("Authorization"); a != "" {
		out.Header().Set("Authorization", a)
	}
	out.Header().Set(forwardedHeader, s.store.ID())
	return out
}

// write runs a write: validate at the edge, then apply on the leader, here
// or by forwarding the original request to it. The leader refuses what the
// state machine would refuse before proposing it (precheck), so a refused
// write costs no log entry and changes no state.
func write[Req, Res any](s *Server, ctx context.Context, req *connect.Request[Req],
	op func(*Req) *rationv1.Command,
	pick func(*rationv1.CommandResult) *Res,
	forward func(*peer, context.Context, *connect.Request[Req]) (*connect.Response[Res], error),
) (*connect.Response[Res], error) {
	msg := any(req.Msg).(proto.Message)
	if err := fsm.CheckRequest(msg); err != nil {
		return nil, toConnect(s.log, s.store.ID(), err)
	}
	if err := fsm.CheckRequestID(requestID(msg)); err != nil {
		return nil, toConnect(s.log, s.store.ID(), err)
	}
	return onLeader(s, ctx, req, func() (*Res, error) {
		cmd := op(req.Msg)
		cmd.Header = &rationv1.CommandHeader{RequestId: requestID(msg), Actor: "admin"}
		if cred := credential(ctx); cred != nil {
			cmd.Header.Credential, cmd.Header.Actor = cred, workerOf(msg)
		}
		stampOwner(ctx, cmd.Header)
		if err := s.precheck(ctx, cmd); err != nil {
			return nil, err
		}
		res, err := s.store.Apply(ctx, fsm.Compact(cmd))
		if err != nil {
			return nil, err
		}
		return pick(res), nil
	}, forward)
}

// onLeader runs fn here if this node leads (and still does when fn
// returns), or else forwards the original request to the leader.
func onLeader[Req, Res any](s *Server, ctx context.Context, req *connect.Request[Req], fn func() (*Res, error),
	forward func(*peer, context.Context, *connect.Request[Req]) (*connect.Response[Res], error)) (*connect.Response[Res], error) {
	if s.store.IsLeader() {
		res, err := fn()
		if !errors.Is(err, cluster.ErrNotLeader) {
			if err != nil {
				return nil, toConnect(s.log, s.store.ID(), err)
			}
			return reply(s, res), nil
		}
	}
	p, err := s.leader(req.Header())
	if err != nil {
		return nil, err
	}
	return forward(p, ctx, forwardRequest(s, req))
}

type requestIDer interface{ GetRequestId() string }

func requestID(m proto.Message) string {
	if r, ok := m.(requestIDer); ok {
		return r.GetRequestId()
	}
	return ""
}

type workerIDer interface{ GetWorkerId() string }

func workerOf(m proto.Message) string {
	if r, ok := m.(workerIDer); ok {
		return r.GetWorkerId()
	}
	return ""
}

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
	case rationv1.Consistency_CONSISTENCY_LINEARIZABLE:
		idx, err := s.readIndex(ctx)
		if err != nil {
			return nil, nil, err
		}
		if st, err = s.store.WaitApplied(ctx, idx); err != nil {
			return nil, nil, toConnect(s.log, s.store.ID(), err)
		}
	default:
		return nil, nil, invalid(s.store.ID(), fmt.Errorf("consistency %v is not one of LINEARIZABLE, STALE", c))
	}
	info.Index = st.Index()
	return st, info, nil
}

func (s *Server) readIndex(ctx context.Context) (uint64, error) {
	if s.store.IsLeader() {
		idx, err := s.store.ReadIndex(ctx)
		if !errors.Is(err, cluster.ErrNotLeader) {
			return idx, toConnect(s.log, s.store.ID(), err)
		}
	}
	_, addr, err := s.store.Leader()
	if err != nil {
		return 0, toConnect(s.log, s.store.ID(), err)
	}
	req := connect.NewRequest(&peerv1.ReadIndexRequest{})
	if t := s.cfg.AdminToken; t != "" {
		req.Header().Set("Authorization", "Bearer "+t)
	}
	res, err := s.peer(addr).peer.ReadIndex(ctx, req)
	if err != nil {
		return 0, err
	}
	return res.Msg.GetIndex(), nil
}

// peerHandler serves PeerService.
type peerHandler struct{ s *Server }

func (h *peerHandler) ReadIndex(ctx context.Context, _ *connect.Request[peerv1.ReadIndexRequest]) (*connect.Response[peerv1.ReadIndexResponse], error) {
	idx, err := h.s.store.ReadIndex(ctx)
	if err != nil {
		return nil, toConnect(h.s.log, h.s.store.ID(), err)
	}
	return connect.NewResponse(&peerv1.ReadIndexResponse{Index: idx, LeaderId: h.s.store.ID()}), nil
}
