package fsm

import (
	"fmt"

	rationv1 "github.com/rationhq/ration/api/ration/v1"
)

// checkDeleteService runs deleteService's refusals: only a revoked service
// goes, and only with every result acknowledged unless the owner forces it.
func (x *txn) checkDeleteService(op *rationv1.DeleteServiceRequest) (*Service, error) {
	s, err := x.service(op.GetName())
	if err != nil {
		return nil, err
	}
	if s.Active() {
		return nil, fmt.Errorf("service %q is active: revoke it first (RevokeService): %w", s.Name, ErrServiceNotRevoked)
	}
	if s.UnackedResults > 0 && !op.GetForce() {
		return nil, fmt.Errorf("service %q holds %d results (%d bytes) its owner never acknowledged: export and acknowledge them (ExportResults, AckResults), or delete with force to lose them: %w",
			s.Name, s.UnackedResults, s.UnackedBytes, ErrResultsNotAcknowledged)
	}
	return s, nil
}

// deleteService removes a revoked service and everything it holds but its
// activity records, which age out as usual. A later CreateService of the
// name makes a new service with a new ordinal.
func (x *txn) deleteService(op *rationv1.DeleteServiceRequest) (*rationv1.DeleteServiceResponse, error) {
	s, err := x.checkDeleteService(op)
	if err != nil {
		return nil, err
	}
	x.flush() // nothing of this service may be written back after it is gone
	t, ord := x.t, s.Ordinal
	res := &rationv1.DeleteServiceResponse{UnackedResults: s.UnackedResults}
	var items []*Item
	t.items.Ascend(&Item{Service: ord}, func(it *Item) bool {
		if it.Service != ord {
			return false
		}
		items = append(items, it)
		return true
	})
	for _, it := range items {
		t.items.Delete(it)
	}
	res.Items = uint64(len(items))
	var buckets []*Bucket
	t.buckets.Scan(func(b *Bucket) bool {
		if b.Service == ord {
			buckets = append(buckets, b)
		}
		return true
	})
	aging := int64(s.Config.PriorityAging)
	for _, b := range buckets {
		t.putBucket(b, nil, aging)
	}
	res.Buckets = uint64(len(buckets))
	var seqs []uint64
	t.resSvc.Ascend(svcSeq{service: ord}, func(k svcSeq) bool {
		if k.service != ord {
			return false
		}
		seqs = append(seqs, k.seq)
		return true
	})
	for _, seq := range seqs {
		rb, _ := t.results.Get(&ResultBatch{Seq: seq})
		t.dropResults(rb)
	}
	res.ResultBatches = uint64(len(seqs))
	var regs []*Registration
	t.regs.Ascend(&Registration{Service: ord}, func(r *Registration) bool {
		if r.Service != ord {
			return false
		}
		regs = append(regs, r)
		return true
	})
	for _, r := range regs {
		t.dropRegistration(r)
	}
	res.Registrations = uint64(len(regs))
	t.services.Delete(s)
	t.ordinals.Delete(s)
	msg := fmt.Sprintf("deleted %d items, %d buckets, %d result batches, %d registrations", res.Items, res.Buckets, res.ResultBatches, res.Registrations)
	if res.UnackedResults > 0 {
		msg += fmt.Sprintf("; forced: %d results never acknowledged were lost", res.UnackedResults)
	}
	x.record(&Activity{Action: ActDeleteService, Service: s.Name, Count: res.Items, Message: msg})
	return res, nil
}

func validateDeleteService(r *rationv1.DeleteServiceRequest) error {
	return checkServiceName(r.GetName())
}
