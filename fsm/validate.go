package fsm

import (
	"fmt"

	"google.golang.org/protobuf/proto"

	rationv1 "github.com/rationhq/ration/api/ration/v1"
	"github.com/rationhq/ration/fsm/kind"
)

// MaxRequestIDLength bounds a request id, in bytes.
const MaxRequestIDLength = 128

// CheckRequest runs the checks of a write request that need no state: field
// formats, lengths and ranges. The API edge calls it so that a malformed
// request is refused with a clear error before it reaches the log; Apply
// runs the same checks (and the ones that need state) again. The edge also
// refuses bidirectional controls in ids (checkBidiIDs), which Apply does not.
func CheckRequest(req proto.Message) error {
	if err := checkRequest(req); err != nil {
		return err
	}
	return checkBidiIDs(req)
}

func checkRequest(req proto.Message) error {
	switch r := req.(type) {
	case *rationv1.CreateServiceRequest:
		if err := checkServiceName(r.GetName()); err != nil {
			return err
		}
		k, ok := kind.Lookup(r.GetKind())
		if !ok {
			return fmt.Errorf("kind %q (known: %v): %w", r.GetKind(), kind.Names(), ErrUnknownKind)
		}
		_, err := configFromProto(k, r.GetConfig())
		return err
	case *rationv1.UpdateServiceRequest:
		if err := checkServiceName(r.GetName()); err != nil {
			return err
		}
		_, err := configFromProto(anyKind{}, r.GetConfig())
		return err
	case *rationv1.RevokeServiceRequest:
		return firstErr(checkServiceName(r.GetName()), checkText("reason", r.GetReason()))
	case *rationv1.ReinstateServiceRequest:
		return checkServiceName(r.GetName())
	case *rationv1.RotateOwnerTokenRequest:
		return checkServiceName(r.GetName())
	case *rationv1.RegisterRequest:
		return firstErr(checkServiceName(r.GetService()), checkID("worker_id", r.GetWorkerId()), checkText("name", r.GetName()))
	case *rationv1.UnregisterRequest:
		return firstErr(checkServiceName(r.GetService()), checkID("worker_id", r.GetWorkerId()))
	case *rationv1.DeactivateWorkerRequest:
		return firstErr(checkServiceName(r.GetService()), checkID("worker_id", r.GetWorkerId()), checkText("reason", r.GetReason()))
	case *rationv1.ReactivateWorkerRequest:
		return firstErr(checkServiceName(r.GetService()), checkID("worker_id", r.GetWorkerId()))
	case *rationv1.RevertWorkerRequest:
		if err := firstErr(checkServiceName(r.GetService()), checkID("worker_id", r.GetWorkerId())); err != nil {
			return err
		}
		if r.GetSince() == nil {
			return fmt.Errorf("since is required (use 1970-01-01T00:00:00Z to revert everything): %w", ErrInvalidArgument)
		}
		if err := r.GetSince().CheckValid(); err != nil {
			return fmt.Errorf("since: %v: %w", err, ErrInvalidArgument)
		}
	case *rationv1.AddItemsRequest:
		if err := checkServiceName(r.GetService()); err != nil {
			return err
		}
		if err := checkItems(r.GetItems(), MaxItemsPerAddLimit); err != nil {
			return err
		}
		if p := r.GetPriority(); p < MinPriority || p > MaxPriority {
			return fmt.Errorf("priority %d, want %d to %d: %w", p, MinPriority, MaxPriority, ErrInvalidArgument)
		}
	case *rationv1.AcquireRequest:
		return firstErr(checkServiceName(r.GetService()), checkID("worker_id", r.GetWorkerId()))
	case *rationv1.HeartbeatRequest:
		if err := checkID("worker_id", r.GetWorkerId()); err != nil {
			return err
		}
		if n := len(r.GetBuckets()); n == 0 || n > MaxHeartbeatBuckets {
			return fmt.Errorf("buckets has %d entries, want 1 to %d: %w", n, MaxHeartbeatBuckets, ErrInvalidArgument)
		}
	case *rationv1.SubmitRequest:
		if err := checkID("worker_id", r.GetWorkerId()); err != nil {
			return err
		}
		if r.GetBucketId() == 0 {
			return fmt.Errorf("bucket_id is required: %w", ErrInvalidArgument)
		}
		if n := len(r.GetResults()); n == 0 || n > MaxBucketSize {
			return fmt.Errorf("results has %d entries, want 1 to %d (use Release to give a bucket back): %w", n, MaxBucketSize, ErrInvalidArgument)
		}
		for i, res := range r.GetResults() {
			if p := idProblem(res.GetItem()); p != "" {
				return fmt.Errorf("results[%d].item %s: %w", i, p, ErrInvalidArgument)
			}
			if v := res.GetVerdict(); v == "" || len(v) > kind.MaxVerdictLength {
				return fmt.Errorf("results[%d].verdict: want 1 to %d bytes: %w", i, kind.MaxVerdictLength, ErrInvalidArgument)
			}
			if len(res.GetPayload()) > kind.MaxPayloadLimit {
				return fmt.Errorf("results[%d].payload is %d bytes, limit %d: %w", i, len(res.GetPayload()), kind.MaxPayloadLimit, ErrInvalidArgument)
			}
		}
	case *rationv1.ReleaseRequest:
		if err := checkID("worker_id", r.GetWorkerId()); err != nil {
			return err
		}
		if r.GetBucketId() == 0 {
			return fmt.Errorf("bucket_id is required: %w", ErrInvalidArgument)
		}
	}
	return nil
}

// CheckRequestID validates a client's request id: at most 128 bytes of
// printable text.
func CheckRequestID(id string) error {
	if len(id) > MaxRequestIDLength {
		return fmt.Errorf("request_id is %d bytes, limit %d: %w", len(id), MaxRequestIDLength, ErrInvalidArgument)
	}
	if id == "" {
		return nil
	}
	return firstErr(checkID("request_id", id), checkBidi("request_id", id))
}

func firstErr(errs ...error) error {
	for _, err := range errs {
		if err != nil {
			return err
		}
	}
	return nil
}

// anyKind accepts every kind-specific setting: the edge checks an update's
// limits before it knows the service's kind; Apply checks the rest.
type anyKind struct{}

func (anyKind) Name() string                                 { return "" }
func (anyKind) Defaults(s kind.Settings) kind.Settings       { return s }
func (anyKind) Check(kind.Settings) error                    { return nil }
func (anyKind) Validate(kind.Settings, string, string) error { return nil }
