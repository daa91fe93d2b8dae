package server

import (
	"context"
	"errors"
	"fmt"
	"net"
	"time"

	"connectrpc.com/connect"

	rationv1 "github.com/rationhq/ration/api/ration/v1"
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

// DefaultLeaderWait is how long a call waits for a leader it can reach
// (Config.LeaderWait): three election timeouts at rationd's default, room
// for an election that takes a second round.
const DefaultLeaderWait = 3 * time.Second

// DefaultCallTimeout bounds a call that needs the leader and came without a
// deadline of its own (Config.CallTimeout): the leader's own bound on a
// proposal.
const DefaultCallTimeout = 10 * time.Second

// errLeaderUnreachable: the leader could not be reached, so the call was
// never sent to it.
var errLeaderUnreachable = errors.New("leader unreachable")

// errLeaderChanged ends a forward to a leader this node no longer follows.
var errLeaderChanged = errors.New("this node's view of the leader changed")

// forwardError is a forward that got no answer from the leader: it was
// never sent (the dial failed), or it was and no answer came back (the
// connection broke, or this node stopped following that leader first).
type forwardError struct {
	leader string
	sent   bool
	err    error
}

func (e *forwardError) Error() string {
	if !e.sent {
		return fmt.Sprintf("cannot reach the leader %s, so the call was not sent: %v", e.leader, e.err)
	}
	return fmt.Sprintf("no answer from the leader %s (%v): the call may or may not have been applied", e.leader, e.err)
}

// Unwrap makes a forwardError match its reason's sentinel.
func (e *forwardError) Unwrap() error {
	if e.sent {
		return cluster.ErrOutcomeUnknown
	}
	return errLeaderUnreachable
}

// onLeader runs fn on the leader: here if this node leads, or else
// forwarded, as the caller sent it, to the leader this node knows. It
// follows leadership (followLeader); retry says whether the call may be
// sent again after an attempt that may have been applied (it carries a
// request id, or doing it twice is harmless).
func onLeader[Res, Req any](s *Server, ctx context.Context, req *connect.Request[Req], retry bool, fn func() (*Res, error)) (*connect.Response[Res], error) {
	var out *connect.Response[Res]
	err := s.followLeader(ctx, retry, req.Header().Get(forwardedHeader), func(ctx context.Context, addr string) error {
		if addr == "" {
			res, err := fn()
			if err == nil {
				out = reply(s, res)
			}
			return err
		}
		res, err := peerCall[Res](s, ctx, addr, req.Spec().Procedure, forwardRequest(s, req))
		out = res
		return err
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}

// attemptKind is what one attempt at the leader came to.
type attemptKind int

const (
	answered     attemptKind = iota // an answer to return, success or refusal
	notApplied                      // surely not applied: try again
	maybeApplied                    // may have been applied
)

// followLeader calls call at the leader (addr "" means here, this node
// leads) until it answers. A forward is abandoned as soon as this node's
// view of the leader changes, and the call goes again to the new leader:
// always if the attempt surely was not applied (never sent, or refused for
// want of a leader), and, if it may have been, only when retry is true;
// otherwise the caller learns at once that the outcome is unknown. It
// gives up when the caller's deadline (Config.CallTimeout if it has none)
// passes, or when attempts have failed for Config.LeaderWait with no change
// of leader, with the reason of the last attempt. A call a follower forwarded here
// (forwardedBy) is never forwarded again.
func (s *Server) followLeader(ctx context.Context, retry bool, forwardedBy string, call func(ctx context.Context, addr string) error) error {
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, s.cfg.CallTimeout)
		defer cancel()
	}
	giveUp := time.Now().Add(s.cfg.LeaderWait)
	var maybe error // an earlier attempt that may have been applied
	for backoff := 10 * time.Millisecond; ; backoff = min(2*backoff, 200*time.Millisecond) {
		changed := s.store.LeaderChanged()
		err := s.attempt(ctx, changed, forwardedBy, call)
		switch kind := attemptOf(err); {
		case kind == answered:
			return s.rpcError(err)
		case kind == maybeApplied && !retry:
			return s.rpcError(err)
		case kind == maybeApplied:
			maybe = err
		}
		if forwardedBy != "" || ctx.Err() != nil || errors.Is(err, cluster.ErrShutdown) {
			return s.rpcError(lastError(err, maybe))
		}
		select {
		case <-changed: // a new leader, or none: wait for the next one afresh
			giveUp = time.Now().Add(s.cfg.LeaderWait)
		case <-time.After(backoff):
		case <-ctx.Done():
		}
		if ctx.Err() != nil || time.Now().After(giveUp) {
			return s.rpcError(lastError(err, maybe))
		}
	}
}

// attempt makes one try at the leader: call here if this node leads, or a
// forward to the leader it knows, abandoned when changed closes.
func (s *Server) attempt(ctx context.Context, changed <-chan struct{}, forwardedBy string, call func(ctx context.Context, addr string) error) error {
	if s.store.IsLeader() {
		return call(ctx, "")
	}
	if forwardedBy != "" {
		return fmt.Errorf("forwarded by %s, but this node is not the leader either: %w", forwardedBy, cluster.ErrNotLeader)
	}
	leader, addr, err := s.store.Leader()
	if err != nil {
		return err
	}
	fctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	go func() {
		select {
		case <-changed:
			cancel(errLeaderChanged)
		case <-fctx.Done():
		}
	}()
	err = call(fctx, addr)
	if err == nil || hasDetail(err) {
		return err // the leader's own answer
	}
	if ctx.Err() != nil {
		return fmt.Errorf("%w: the leader %s had the call when its deadline passed: %v", cluster.ErrOutcomeUnknown, leader, ctx.Err())
	}
	if context.Cause(fctx) == errLeaderChanged {
		err = errLeaderChanged
	}
	var op *net.OpError
	return &forwardError{leader: leader, sent: !errors.As(err, &op) || op.Op != "dial", err: err}
}

// attemptOf classifies an attempt's error.
func attemptOf(err error) attemptKind {
	switch {
	case err == nil:
		return answered
	case errors.Is(err, cluster.ErrOutcomeUnknown):
		return maybeApplied
	case errors.Is(err, cluster.ErrNotLeader), errors.Is(err, cluster.ErrNoLeader),
		errors.Is(err, cluster.ErrNotReady), errors.Is(err, errLeaderUnreachable):
		return notApplied
	}
	switch reasonOf(err) {
	case "OUTCOME_UNKNOWN":
		return maybeApplied
	case "NOT_LEADER", "NO_LEADER", "NOT_READY", "SHUTTING_DOWN", "LEADER_UNREACHABLE":
		return notApplied
	}
	return answered
}

// lastError is the error to answer with after the last attempt: it, or,
// when an earlier attempt may have been applied, an unknown outcome.
func lastError(last, maybe error) error {
	if maybe == nil || attemptOf(last) == maybeApplied {
		return last
	}
	return fmt.Errorf("%w: an earlier attempt may have been applied (%v); then: %v", cluster.ErrOutcomeUnknown, maybe, last)
}

// hasDetail reports whether err is a ration answer: it carries an
// ErrorDetail, as every error a node returns does.
func hasDetail(err error) bool { return reasonOf(err) != "" }

// reasonOf returns the reason in err's ErrorDetail, or "".
func reasonOf(err error) string {
	var ce *connect.Error
	if !errors.As(err, &ce) {
		return ""
	}
	for _, d := range ce.Details() {
		if v, err := d.Value(); err == nil {
			if ed, ok := v.(*rationv1.ErrorDetail); ok {
				return ed.GetReason()
			}
		}
	}
	return ""
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
