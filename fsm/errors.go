package fsm

import (
	"errors"

	statev1 "github.com/rationhq/ration/api/ration/state/v1"
)

// Domain failures. Apply returns them as values inside the command's result
// (never panics on them) and records them as rejected activity. Each carries
// a machine-readable reason; server maps them to RPC codes in one table.
var (
	// ErrInvalidArgument: a field is malformed or out of range.
	ErrInvalidArgument = newError("INVALID_ARGUMENT", "invalid argument")
	// ErrLimitExceeded: a request carries more than a documented limit allows.
	ErrLimitExceeded = newError("LIMIT_EXCEEDED", "limit exceeded")
	// ErrUnknownKind: no kind is registered under the name.
	ErrUnknownKind = newError("UNKNOWN_KIND", "unknown kind")
	// ErrInvalidConfig: a service config is out of range or unfit for its kind.
	ErrInvalidConfig = newError("INVALID_CONFIG", "invalid service config")
	// ErrServiceNotFound: no service has the name.
	ErrServiceNotFound = newError("SERVICE_NOT_FOUND", "service not found")
	// ErrServiceExists: a service with the name exists.
	ErrServiceExists = newError("SERVICE_EXISTS", "service already exists")
	// ErrServiceRevoked: the service is revoked and accepts no work.
	ErrServiceRevoked = newError("SERVICE_REVOKED", "service is revoked")
	// ErrNoCredential: a worker operation came without the worker's secret.
	ErrNoCredential = newError("NO_CREDENTIAL", "worker secret required")
	// ErrBadCredential: the secret is not the one bound to the worker id.
	ErrBadCredential = newError("BAD_CREDENTIAL", "worker secret does not match")
	// ErrBadOwnerToken: an owner operation came with an owner token that is
	// not the current one of the service it names (wrong service, or rotated).
	ErrBadOwnerToken = newError("BAD_OWNER_TOKEN", "owner token does not match the service's")
	// ErrWorkerNotFound: the worker id never registered.
	ErrWorkerNotFound = newError("WORKER_NOT_FOUND", "worker not found")
	// ErrNotRegistered: the worker is not registered for the service.
	ErrNotRegistered = newError("NOT_REGISTERED", "worker not registered for service")
	// ErrWorkerInactive: the registration is inactive; Register reactivates it.
	ErrWorkerInactive = newError("WORKER_INACTIVE", "worker inactive")
	// ErrWorkerDeactivated: an owner deactivated the worker; only ReactivateWorker undoes it.
	ErrWorkerDeactivated = newError("WORKER_DEACTIVATED", "worker deactivated by the owner")
	// ErrLeaseLimit: the worker holds max_leases_per_worker buckets already.
	ErrLeaseLimit = newError("LEASE_LIMIT", "worker holds its maximum of leases")
	// ErrResultsBacklog: the service holds max_unacked_results results not
	// yet acknowledged; work waits until the owner acknowledges some.
	ErrResultsBacklog = newError("RESULTS_BACKLOG", "too many results not yet acknowledged")
	// ErrBucketNotFound: no bucket has the id.
	ErrBucketNotFound = newError("BUCKET_NOT_FOUND", "bucket not found")
	// ErrNotHolder: the bucket is not leased to this worker.
	ErrNotHolder = newError("NOT_HOLDER", "bucket not held by this worker")
	// ErrLeaseLost: the lease at this epoch is over (released, re-granted or submitted).
	ErrLeaseLost = newError("LEASE_LOST", "lease lost")
	// ErrLeaseExpired: the lease expired; the bucket is dead and can only be submitted or released.
	ErrLeaseExpired = newError("LEASE_EXPIRED", "lease expired")
	// ErrItemNotInBucket: a result names an item outside the bucket.
	ErrItemNotInBucket = newError("ITEM_NOT_IN_BUCKET", "item not in bucket")
	// ErrDuplicateResult: two results name the same item.
	ErrDuplicateResult = newError("DUPLICATE_RESULT", "duplicate result")
	// ErrInvalidResult: the service's kind refused a verdict or payload.
	ErrInvalidResult = newError("INVALID_RESULT", "invalid result")
	// ErrRequestIDReused: a request id came back with a different body.
	ErrRequestIDReused = newError("REQUEST_ID_REUSED", "request id reused with a different request")
	// ErrAckBeyondResults: an acknowledgment names a seq past the service's
	// last result.
	ErrAckBeyondResults = newError("ACK_BEYOND_RESULTS", "acknowledgment beyond the last result")
	// ErrServiceNotRevoked: only a revoked service can be deleted.
	ErrServiceNotRevoked = newError("SERVICE_NOT_REVOKED", "service is not revoked")
	// ErrResultsNotAcknowledged: deleting the service would lose results its
	// owner never acknowledged; force says to lose them.
	ErrResultsNotAcknowledged = newError("RESULTS_NOT_ACKNOWLEDGED", "results not yet acknowledged")
	// ErrNodeNotFound: no cluster node has the id.
	ErrNodeNotFound = newError("NODE_NOT_FOUND", "node not found")
	// ErrClusterVersion: the request needs a feature of a higher cluster
	// version than the cluster runs (not every member supports it yet).
	ErrClusterVersion = newError("CLUSTER_VERSION", "cluster version too low")
)

// Error is a domain failure with a machine-readable reason.
type Error struct {
	// Reason is stable and machine-readable, e.g. "LEASE_LOST".
	Reason string
	msg    string
	err    error // the detailed error it stands for, if any
}

func (e *Error) Error() string { return e.msg }

// Unwrap returns the detailed error an Error from Precheck stands for, so
// that errors.Is matches its sentinel.
func (e *Error) Unwrap() error { return e.err }

var byReason = map[string]*Error{}

func newError(reason, msg string) *Error {
	e := &Error{Reason: reason, msg: msg}
	byReason[reason] = e
	return e
}

// Reason returns the machine-readable reason of a domain error, or "" for
// other errors.
func Reason(err error) string {
	var e *Error
	if errors.As(err, &e) {
		return e.Reason
	}
	return ""
}

// reasonError keeps a detailed message while matching its sentinel with errors.Is.
type reasonError struct {
	msg      string
	sentinel *Error
}

func (e *reasonError) Error() string { return e.msg }
func (e *reasonError) Unwrap() error { return e.sentinel }

// ResultError turns a command result's error back into a Go error that
// matches its sentinel with errors.Is. It returns nil when the result holds
// no error.
func ResultError(r *statev1.CommandResult) error {
	ce := r.GetError()
	if ce == nil {
		return nil
	}
	s, ok := byReason[ce.GetReason()]
	if !ok {
		s = &Error{Reason: ce.GetReason(), msg: ce.GetReason()}
	}
	return &reasonError{msg: ce.GetMessage(), sentinel: s}
}
