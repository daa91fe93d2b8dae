package fsm

import (
	"bytes"

	statev1 "github.com/rationhq/ration/api/ration/state/v1"
	rationv1 "github.com/rationhq/ration/api/ration/v1"
)

// Precheck returns the refusal that applying cmd to this state would give,
// with the reason (see Reason) and message Apply would give, or nil if
// Apply would go on. It runs the very checks the operations run before
// they change anything (each operation's check), on a scratch transaction
// that is never written back, so it cannot drift from Apply. It costs what those checks
// cost: a few lookups, and for a submit, validating its results.
//
// None of those checks reads the clock: a refusal follows from the state
// alone, so a command Precheck refuses is refused by Apply on the same
// state, and one it passes is refused by Apply only if the state changed in
// between, or if Apply answers from its request-id table (a retry with the
// same body passes: Apply repeats the first answer). An id reused with
// another body is refused as Apply would. Ticks, batches, heartbeats (see
// PrecheckHeartbeat) and commands without a header always pass.
//
// The API's leader refuses what Precheck refuses without proposing it, so a
// refused request costs no log entry and changes nothing.
func (s *State) Precheck(cmd *statev1.Command) error {
	hdr := cmd.GetHeader()
	if hdr == nil {
		return nil
	}
	o, req, compacted := operations.decode(cmd)
	if o == nil {
		return nil // a batch, or an operation unknown here: Apply decides
	}
	x := &txn{t: s.t, index: s.t.meta.index, now: s.t.meta.now, hdr: hdr}
	if compacted {
		var err error
		if req, _, err = o.compact.expand(req); err != nil {
			return err
		}
	}
	if err := x.checkOwner(o, req); err != nil {
		return err // before the request-id lookup, as in Apply
	}
	if key := o.requestKey(hdr, req); key != "" {
		if prev, ok := s.t.requests.Get(&request{Key: key}); ok {
			if bytes.Equal(prev.BodyHash, canonicalHash(cmd)) {
				return nil
			}
			return reusedID(hdr, prev)
		}
	}
	if o.check == nil {
		return nil
	}
	return o.check(x, req)
}

// PrecheckHeartbeat is Precheck for one worker's heartbeat entry, as the
// leader would propose it. It returns the refusal Apply would
// give the entry as a whole; or, when none of the leases it names could be
// extended, the answer Apply would give (each lease's refusal), since
// applying it would change nothing but the activity log; or neither, when
// the entry must be proposed.
func (s *State) PrecheckHeartbeat(e *statev1.HeartbeatEntry) (*rationv1.HeartbeatResponse, error) {
	x := &txn{t: s.t, index: s.t.meta.index, now: s.t.meta.now, hdr: &statev1.CommandHeader{}}
	req := e.GetRequest()
	if err := x.checkHeartbeat(req, e.GetCredential()); err != nil {
		return nil, err
	}
	resp := &rationv1.HeartbeatResponse{Buckets: make([]*rationv1.HeartbeatOutcome, 0, len(req.GetBuckets()))}
	for _, ref := range req.GetBuckets() {
		_, err := x.extendable(req.GetWorkerId(), ref)
		if err == nil {
			return nil, nil
		}
		resp.Buckets = append(resp.Buckets, refusedOutcome(ref.GetId(), err))
	}
	return resp, nil
}

// RefusalService names the service whose rejected counters a refusal of
// cmd counts under, as Apply counts it, or "" when no such service exists.
func (s *State) RefusalService(cmd *statev1.Command) string {
	_, req, _ := operations.decode(cmd)
	if req == nil {
		return ""
	}
	name := s.t.subject(req).service
	if _, ok := s.t.serviceByName(name); !ok {
		return ""
	}
	return name
}
