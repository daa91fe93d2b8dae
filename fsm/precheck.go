package fsm

import (
	"bytes"

	rationv1 "github.com/rationhq/ration/api/ration/v1"
)

// Precheck returns the refusal that applying cmd to this state would give,
// with the reason and message Apply would give, or nil if Apply would go
// on. It runs the very checks the operations run before they change
// anything (the check* functions), on a scratch transaction that is never
// written back, so it cannot drift from Apply. It costs what those checks
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
func (s *State) Precheck(cmd *rationv1.Command) *Error {
	hdr := cmd.GetHeader()
	if hdr == nil {
		return nil
	}
	orig := cmd
	cmd, _, perr := unpackCommand(cmd)
	if perr != nil {
		return asError(perr)
	}
	x := &txn{t: s.t, index: s.t.meta.index, now: s.t.meta.now, hdr: hdr}
	if err := x.checkOwner(cmd); err != nil {
		return asError(err) // before the request-id lookup, as in Apply
	}
	if key := x.requestKey(cmd); key != "" {
		if prev, ok := s.t.requests.Get(&request{Key: key}); ok {
			if bytes.Equal(prev.BodyHash, canonicalHash(orig)) {
				return nil
			}
			return asError(reusedID(hdr, prev))
		}
	}
	return asError(x.check(cmd))
}

// PrecheckHeartbeat is Precheck for one worker's heartbeat entry, as the
// leader's coalescer would propose it. It returns the refusal Apply would
// give the entry as a whole; or, when none of the leases it names could be
// extended, the answer Apply would give (each lease's refusal), since
// applying it would change nothing but the activity log; or neither, when
// the entry must be proposed.
func (s *State) PrecheckHeartbeat(e *rationv1.HeartbeatEntry) (*rationv1.HeartbeatResponse, *Error) {
	x := &txn{t: s.t, index: s.t.meta.index, now: s.t.meta.now, hdr: &rationv1.CommandHeader{}}
	req := e.GetRequest()
	if err := x.checkHeartbeat(req, e.GetCredential()); err != nil {
		return nil, asError(err)
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
func (s *State) RefusalService(cmd *rationv1.Command) string {
	name, _, _ := s.t.subject(cmd)
	if _, ok := s.t.serviceByName(name); !ok {
		return ""
	}
	return name
}

// check runs the refusals of the command's operation: the same check*
// function its operation calls first.
func (x *txn) check(cmd *rationv1.Command) error {
	var err error
	switch op := cmd.Op.(type) {
	case *rationv1.Command_CreateService:
		_, _, err = x.checkCreateService(op.CreateService)
	case *rationv1.Command_UpdateService:
		_, _, err = x.checkUpdateService(op.UpdateService)
	case *rationv1.Command_RevokeService:
		_, err = x.checkRevokeService(op.RevokeService)
	case *rationv1.Command_ReinstateService:
		_, err = x.service(op.ReinstateService.GetName())
	case *rationv1.Command_RotateOwnerToken:
		_, _, err = x.checkRotateOwnerToken(op.RotateOwnerToken)
	case *rationv1.Command_Register:
		_, _, _, err = x.checkRegister(op.Register)
	case *rationv1.Command_Unregister:
		_, _, err = x.checkUnregister(op.Unregister)
	case *rationv1.Command_DeactivateWorker:
		_, _, err = x.checkDeactivate(op.DeactivateWorker)
	case *rationv1.Command_ReactivateWorker:
		_, _, err = x.registered(op.ReactivateWorker.GetService(), op.ReactivateWorker.GetWorkerId())
	case *rationv1.Command_RevertWorker:
		_, err = x.checkRevert(op.RevertWorker)
	case *rationv1.Command_AddItems:
		_, err = x.checkAddItems(op.AddItems)
	case *rationv1.Command_Acquire:
		_, _, err = x.checkAcquire(op.Acquire)
	case *rationv1.Command_Submit:
		_, _, _, err = x.checkSubmit(op.Submit)
	case *rationv1.Command_Release:
		_, err = x.holding(op.Release.GetWorkerId(), op.Release.GetBucketId(), op.Release.GetEpoch())
	case *rationv1.Command_SetNode:
		err = checkSetNode(op.SetNode)
	case *rationv1.Command_RemoveNode:
		err = x.checkRemoveNode(op.RemoveNode)
	}
	// Heartbeats, ticks and batches are never refused as a whole.
	return err
}

// asError turns a check's error into an Error that keeps its message and
// still matches its sentinel with errors.Is. An error without a reason (a
// bug: Apply would panic on it) keeps an empty Reason.
func asError(err error) *Error {
	if err == nil {
		return nil
	}
	return &Error{Reason: Reason(err), msg: err.Error(), err: err}
}
