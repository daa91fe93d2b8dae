package server

import (
	"context"
	"errors"
	"fmt"
	"net/http"

	"connectrpc.com/connect"

	"github.com/rationhq/ration/cluster"
)

// Headers ration sets on answers and on forwarded requests.
const (
	// ServedByHeader names the node that applied a write or answered a read.
	ServedByHeader = "Ration-Served-By"
	// forwardedHeader marks a request a follower forwarded, so that it is
	// never forwarded twice.
	forwardedHeader = "Ration-Forwarded-By"
)

// onLeader runs fn here if this node leads (and still does when fn
// returns), or else forwards the call, as the caller sent it, to the leader.
func onLeader[Res, Req any](s *Server, ctx context.Context, req *connect.Request[Req], fn func() (*Res, error)) (*connect.Response[Res], error) {
	if s.store.IsLeader() {
		res, err := fn()
		if !errors.Is(err, cluster.ErrNotLeader) {
			if err != nil {
				return nil, s.rpcError(err)
			}
			return reply(s, res), nil
		}
	}
	addr, err := s.leaderAddr(req.Header())
	if err != nil {
		return nil, err
	}
	return peerCall[Res](s, ctx, addr, req.Spec().Procedure, forwardRequest(s, req))
}

// leaderAddr returns the leader's API address, or an Unavailable error.
func (s *Server) leaderAddr(h http.Header) (string, error) {
	if by := h.Get(forwardedHeader); by != "" {
		return "", s.rpcError(fmt.Errorf("forwarded by %s, but this node is not the leader either: %w", by, cluster.ErrNotLeader))
	}
	_, addr, err := s.store.Leader()
	if err != nil {
		return "", s.rpcError(err)
	}
	return addr, nil
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

// peerCall calls a unary procedure on another node's API.
func peerCall[Res, Req any](s *Server, ctx context.Context, addr, procedure string, req *connect.Request[Req]) (*connect.Response[Res], error) {
	key := peerKey{addr, procedure}
	c, ok := s.peers.Load(key)
	if !ok {
		c, _ = s.peers.LoadOrStore(key, connect.NewClient[Req, Res](s.cfg.PeerClient, s.cfg.PeerScheme+"://"+addr+procedure))
	}
	return c.(*connect.Client[Req, Res]).CallUnary(ctx, req)
}

// peerKey names a client of one procedure on one node.
type peerKey struct{ addr, procedure string }
