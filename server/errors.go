package server

import (
	"context"
	"errors"
	"fmt"

	"connectrpc.com/connect"

	rationv1 "github.com/rationhq/ration/api/ration/v1"
	"github.com/rationhq/ration/cluster"
	"github.com/rationhq/ration/fsm"
)

// codes is the one table from domain and cluster errors to RPC codes.
var codes = []struct {
	err    error
	code   connect.Code
	reason string // for errors without a reason of their own
}{
	{fsm.ErrInvalidArgument, connect.CodeInvalidArgument, ""},
	{fsm.ErrLimitExceeded, connect.CodeInvalidArgument, ""},
	{fsm.ErrUnknownKind, connect.CodeInvalidArgument, ""},
	{fsm.ErrInvalidConfig, connect.CodeInvalidArgument, ""},
	{fsm.ErrItemNotInBucket, connect.CodeInvalidArgument, ""},
	{fsm.ErrDuplicateResult, connect.CodeInvalidArgument, ""},
	{fsm.ErrInvalidResult, connect.CodeInvalidArgument, ""},
	{fsm.ErrRequestIDReused, connect.CodeInvalidArgument, ""},
	{fsm.ErrServiceNotFound, connect.CodeNotFound, ""},
	{fsm.ErrBucketNotFound, connect.CodeNotFound, ""},
	{fsm.ErrWorkerNotFound, connect.CodeNotFound, ""},
	{fsm.ErrNodeNotFound, connect.CodeNotFound, ""},
	{fsm.ErrServiceExists, connect.CodeAlreadyExists, ""},
	{fsm.ErrServiceRevoked, connect.CodeFailedPrecondition, ""},
	{fsm.ErrNotRegistered, connect.CodeFailedPrecondition, ""},
	{fsm.ErrWorkerInactive, connect.CodeFailedPrecondition, ""},
	{fsm.ErrWorkerDeactivated, connect.CodeFailedPrecondition, ""},
	{fsm.ErrLeaseLost, connect.CodeFailedPrecondition, ""},
	{fsm.ErrLeaseExpired, connect.CodeFailedPrecondition, ""},
	{fsm.ErrNotHolder, connect.CodePermissionDenied, ""},
	{fsm.ErrNoCredential, connect.CodeUnauthenticated, ""},
	{fsm.ErrBadCredential, connect.CodeUnauthenticated, ""},
	{fsm.ErrBadOwnerToken, connect.CodeUnauthenticated, ""},
	{fsm.ErrLeaseLimit, connect.CodeResourceExhausted, ""},
	{fsm.ErrResultsBacklog, connect.CodeResourceExhausted, ""},
	{fsm.ErrAckBeyondResults, connect.CodeOutOfRange, ""},
	{fsm.ErrServiceNotRevoked, connect.CodeFailedPrecondition, ""},
	{fsm.ErrResultsNotAcknowledged, connect.CodeFailedPrecondition, ""},
	{fsm.ErrClusterVersion, connect.CodeFailedPrecondition, ""},
	{cluster.ErrTooLarge, connect.CodeInvalidArgument, "TOO_LARGE"},
	{cluster.ErrNotLeader, connect.CodeUnavailable, "NOT_LEADER"},
	{cluster.ErrNoLeader, connect.CodeUnavailable, "NO_LEADER"},
	{cluster.ErrNotReady, connect.CodeUnavailable, "NOT_READY"},
	{cluster.ErrOutcomeUnknown, connect.CodeUnavailable, "OUTCOME_UNKNOWN"},
	{errLeaderUnreachable, connect.CodeUnavailable, "LEADER_UNREACHABLE"},
	{cluster.ErrShutdown, connect.CodeUnavailable, "SHUTTING_DOWN"},
	{cluster.ErrLastVoter, connect.CodeFailedPrecondition, "LAST_VOTER"},
	{cluster.ErrTransferFailed, connect.CodeUnavailable, "TRANSFER_FAILED"},
	{cluster.ErrUnknownNode, connect.CodeNotFound, "UNKNOWN_NODE"},
	{cluster.ErrUnreachable, connect.CodeFailedPrecondition, "MEMBER_UNREACHABLE"},
	{context.DeadlineExceeded, connect.CodeDeadlineExceeded, "DEADLINE_EXCEEDED"},
	{context.Canceled, connect.CodeCanceled, "CANCELED"},
}

// rpcError turns any error from below into a Connect error with a
// machine-readable reason in its details. Errors it does not know become
// Internal with a generic message; the full error goes to the log only.
// Connect errors pass as they are, unless wrapped in one of the table's.
func (s *Server) rpcError(err error) error {
	if err == nil {
		return nil
	}
	if ce, ok := err.(*connect.Error); ok {
		return ce
	}
	for _, c := range codes {
		if errors.Is(err, c.err) {
			reason := fsm.Reason(err)
			if reason == "" {
				reason = c.reason
			}
			return withDetail(connect.NewError(c.code, err), reason, s.store.ID())
		}
	}
	var ce *connect.Error
	if errors.As(err, &ce) {
		return ce
	}
	s.log.Error("internal error", "error", err)
	return withDetail(connect.NewError(connect.CodeInternal, errors.New("internal error; see the node's log")), "INTERNAL", s.store.ID())
}

// errorf is a Connect error with its reason, raised by the server itself.
func (s *Server) errorf(code connect.Code, reason, format string, args ...any) *connect.Error {
	return withDetail(connect.NewError(code, fmt.Errorf(format, args...)), reason, s.store.ID())
}

// invalid is an InvalidArgument error with its reason.
func (s *Server) invalid(err error) error {
	return withDetail(connect.NewError(connect.CodeInvalidArgument, err), "INVALID_ARGUMENT", s.store.ID())
}

// notFound is a NotFound error: format names what was not found.
func (s *Server) notFound(format string, args ...any) error {
	return s.errorf(connect.CodeNotFound, "NOT_FOUND", format+" not found", args...)
}

func withDetail(e *connect.Error, reason, node string) *connect.Error {
	if d, err := connect.NewErrorDetail(&rationv1.ErrorDetail{Reason: reason, ServedBy: node}); err == nil {
		e.AddDetail(d)
	}
	return e
}
