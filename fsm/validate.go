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
	if r, ok := req.(*rationv1.HeartbeatRequest); ok {
		return validateHeartbeat(r) // the log carries it inside a HeartbeatBatch
	}
	if o, ok := operations.of(req); ok && o.validate != nil {
		return o.validate(req)
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

func (anyKind) Name() string                                       { return "" }
func (anyKind) Defaults(s kind.Settings) kind.Settings             { return s }
func (anyKind) Check(kind.Settings) error                          { return nil }
func (anyKind) Validate(kind.Settings, string, string) error       { return nil }
func (anyKind) Agree(kind.Settings, kind.Result, kind.Result) bool { return false }
