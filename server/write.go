package server

import (
	"context"

	"connectrpc.com/connect"
	"google.golang.org/protobuf/proto"

	statev1 "github.com/rationhq/ration/api/ration/state/v1"
	rationv1 "github.com/rationhq/ration/api/ration/v1"
	"github.com/rationhq/ration/fsm"
)

// write serves a write RPC, the same way for every one:
//
//  1. the rate limits of its procedure, if any;
//  2. the checks that need no state (fsm.CheckRequest), on the node the
//     call reached, before it is forwarded;
//  3. on the leader (here, or forwarded to it as the caller sent it): the
//     request becomes a command stamped with who sent it; the leader
//     refuses what the state machine would refuse before it costs a log
//     entry (precheck); the command is proposed in its compact form and
//     applied;
//  4. the command's answer is the reply.
func write[Res, Req any](s *Server, ctx context.Context, req *connect.Request[Req]) (*connect.Response[Res], error) {
	p := procedureOf(req.Spec().Procedure)
	msg := any(req.Msg).(proto.Message)
	who := callerOf(ctx)
	if err := s.limits.allow(p.limit, req.Peer().Addr, req.Header(), workerOf(msg), who.workerSecret, s.store.ID()); err != nil {
		return nil, err
	}
	if err := s.checkRequest(msg); err != nil {
		return nil, err
	}
	// A write with a request id takes effect once however often it is sent.
	return onLeader(s, ctx, req, requestID(msg) != "", func() (*Res, error) {
		cmd, ok := fsm.NewCommand(msg)
		if !ok {
			return nil, s.errorf(connect.CodeInternal, "INTERNAL", "%s carries no command", req.Spec().Procedure)
		}
		cmd.Header = who.header(requestID(msg), workerOf(msg))
		var token *ownerToken
		if p.issuesOwnerToken {
			token = newOwnerToken()
			cmd.Header.NewOwnerTokenHash = token.hash
		}
		// A feature of a higher cluster version than the members' waits for
		// the last of them (fsm/version.go).
		if err := fsm.CheckVersion(s.store.State().ClusterVersion(), msg); err != nil {
			return nil, s.rpcError(err)
		}
		if err := s.precheck(ctx, cmd); err != nil {
			return nil, err
		}
		res, err := s.store.Apply(ctx, fsm.Compact(cmd))
		if err != nil {
			return nil, err
		}
		out, _ := any(fsm.Answer(res)).(*Res)
		if out == nil {
			out = new(Res)
		}
		if token != nil {
			// A copy: the state machine keeps res in its request-id record.
			out = any(withOwnerToken(any(out).(proto.Message), token.reveal(res))).(*Res)
		}
		return out, nil
	})
}

// checkRequest runs a request's checks that need no state.
func (s *Server) checkRequest(msg proto.Message) error {
	if err := fsm.CheckRequest(msg); err != nil {
		return s.rpcError(err)
	}
	return s.rpcError(fsm.CheckRequestID(requestID(msg)))
}

// heartbeat serves Heartbeat: one worker's heartbeat, which the leader
// proposes as a command of its own (group commit lets many share a log
// entry). A heartbeat refused whole, or one extending nothing, is answered
// on the leader without a log entry.
func (s *Server) heartbeat(ctx context.Context, req *connect.Request[rationv1.HeartbeatRequest]) (*connect.Response[rationv1.HeartbeatResponse], error) {
	if err := fsm.CheckRequest(req.Msg); err != nil {
		return nil, s.rpcError(err)
	}
	e := &statev1.HeartbeatEntry{Request: req.Msg, Credential: callerOf(ctx).workerSecret}
	// A heartbeat applied twice extends the same leases to the same end.
	return onLeader(s, ctx, req, true, func() (*rationv1.HeartbeatResponse, error) {
		if resp, err := s.precheckHeartbeat(ctx, e); resp != nil || err != nil {
			return resp, err
		}
		res, err := s.store.Heartbeat(ctx, e)
		if err == nil {
			err = fsm.ResultError(res)
		}
		return res.GetHeartbeatEntry(), err
	})
}

func requestID(m proto.Message) string {
	if r, ok := m.(interface{ GetRequestId() string }); ok {
		return r.GetRequestId()
	}
	return ""
}

func workerOf(m proto.Message) string {
	if r, ok := m.(interface{ GetWorkerId() string }); ok {
		return r.GetWorkerId()
	}
	return ""
}

func reply[T any](s *Server, msg *T) *connect.Response[T] {
	r := connect.NewResponse(msg)
	r.Header().Set(ServedByHeader, s.store.ID())
	return r
}
