package fsm

import (
	"fmt"

	"google.golang.org/protobuf/types/known/timestamppb"

	rationv1 "github.com/rationhq/ration/api/ration/v1"
)

// checkRevert runs revertWorker's refusals (Precheck runs them too).
func (x *txn) checkRevert(op *rationv1.RevertWorkerRequest) (*Service, error) {
	s, err := x.service(op.GetService())
	if err != nil {
		return nil, err
	}
	worker := op.GetWorkerId()
	if err := checkID("worker_id", worker); err != nil {
		return nil, err
	}
	if op.GetSince() == nil {
		return nil, fmt.Errorf("since is required (use 1970-01-01T00:00:00Z to revert everything): %w", ErrInvalidArgument)
	}
	if err := op.GetSince().CheckValid(); err != nil {
		return nil, fmt.Errorf("since: %v: %w", err, ErrInvalidArgument)
	}
	if _, ok := x.t.registration(s.Ordinal, worker); !ok {
		return nil, fmt.Errorf("worker %q in service %q: %w", worker, s.Name, ErrNotRegistered)
	}
	return s, nil
}

// revertWorker marks a worker's results in a service since a time as
// reverted and sends the items they completed back to the pool.
func (x *txn) revertWorker(op *rationv1.RevertWorkerRequest) (*rationv1.RevertWorkerResponse, error) {
	s, err := x.checkRevert(op)
	if err != nil {
		return nil, err
	}
	worker := op.GetWorkerId()
	since := op.GetSince().AsTime().UnixNano()
	ms := x.svc(s.Ordinal)
	resp := &rationv1.RevertWorkerResponse{}
	resp.Reverted, resp.Requeued = x.revertBatches(s, ms, worker, since, false)
	if s.TrimmedThrough > 0 && since <= s.TrimmedThrough {
		resp.TrimmedBefore = timestamppb.New(unixTime(s.TrimmedThrough))
	}
	msg := fmt.Sprintf("since %s, requeued %d", op.GetSince().AsTime().UTC().Format("2006-01-02T15:04:05Z"), resp.Requeued)
	if resp.TrimmedBefore != nil {
		msg += fmt.Sprintf("; results accepted before %s were trimmed and stay", resp.TrimmedBefore.AsTime().UTC().Format("2006-01-02T15:04:05Z"))
	}
	x.record(&Activity{Action: ActRevert, Service: s.Name, Worker: worker, Count: uint64(resp.Reverted), Message: msg})
	return resp, nil
}

// revertBatches marks the result batches worker closed in s since a time
// as reverted (only those no quorum validated, with unvalidatedOnly) and
// sends the items they still answer back to the pool.
func (x *txn) revertBatches(s, ms *Service, worker string, since int64, unvalidatedOnly bool) (reverted, requeued uint32) {
	var batches []*ResultBatch
	x.t.resWkr.Ascend(wkrSeq{service: s.Ordinal, worker: worker}, func(k wkrSeq) bool {
		if k.service != s.Ordinal || k.worker != worker {
			return false
		}
		rb, _ := x.t.results.Get(&ResultBatch{Seq: k.seq})
		if rb.At >= since && rb.RevertedAt == 0 && !(unvalidatedOnly && rb.Validated) {
			batches = append(batches, rb)
		}
		return true
	})
	for _, rb := range batches {
		c := *rb
		c.RevertedAt = x.now
		x.t.results.Set(&c)
		for _, r := range c.All() {
			reverted++
			it, _ := x.item(s.Ordinal, r.Item)
			// The item is done by this result only if it is still in this
			// bucket; a later re-run has moved it on.
			if it == nil || it.parked() || it.Bucket != rb.Bucket {
				continue
			}
			ms.Items[itemDone]--
			x.requeue(ms, it, false)
			requeued++
		}
	}
	ms.Counters.ResultsReverted += uint64(reverted)
	if r := x.reg(s.Ordinal, worker); r != nil {
		r.Counters.ResultsReverted += uint64(reverted)
	}
	return reverted, requeued
}

func validateRevertWorker(r *rationv1.RevertWorkerRequest) error {
	if err := firstErr(checkServiceName(r.GetService()), checkID("worker_id", r.GetWorkerId())); err != nil {
		return err
	}
	if r.GetSince() == nil {
		return fmt.Errorf("since is required (use 1970-01-01T00:00:00Z to revert everything): %w", ErrInvalidArgument)
	}
	if err := r.GetSince().CheckValid(); err != nil {
		return fmt.Errorf("since: %v: %w", err, ErrInvalidArgument)
	}
	return nil
}
