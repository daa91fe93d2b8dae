package fsm

import (
	"fmt"

	rationv1 "github.com/rationhq/ration/api/ration/v1"
)

// A service's results leave through its owner: ExportResults reads them in
// seq order, and AckResults records, through the log, how far the owner
// has stored them. The export position is what retention may trim behind.

func validateAckResults(r *rationv1.AckResultsRequest) error {
	return checkServiceName(r.GetService())
}

// checkAckResults runs ackResults' refusals (Precheck runs them too).
func (x *txn) checkAckResults(op *rationv1.AckResultsRequest) (*Service, error) {
	s, err := x.service(op.GetService())
	if err != nil {
		return nil, err
	}
	if through := op.GetThroughSeq(); through > s.LastResultSeq {
		if s.LastResultSeq == 0 {
			return nil, fmt.Errorf("through_seq %d: service %q has no results: %w", through, s.Name, ErrAckBeyondResults)
		}
		return nil, fmt.Errorf("through_seq %d is beyond service %q's last result batch, seq %d: %w", through, s.Name, s.LastResultSeq, ErrAckBeyondResults)
	}
	return s, nil
}

// ackResults moves the export position forward to through_seq; an
// acknowledgment at or behind it changes nothing.
func (x *txn) ackResults(op *rationv1.AckResultsRequest) (*rationv1.AckResultsResponse, error) {
	s, err := x.checkAckResults(op)
	if err != nil {
		return nil, err
	}
	through := op.GetThroughSeq()
	if through <= s.AckedThrough {
		x.record(&Activity{Action: ActAckResults, Service: s.Name, Message: fmt.Sprintf("already acknowledged through %d", s.AckedThrough)})
		return &rationv1.AckResultsResponse{Export: s.ExportPosition()}, nil
	}
	ms := x.svc(s.Ordinal)
	var results uint64
	x.t.resSvc.Ascend(svcSeq{service: s.Ordinal, seq: s.AckedThrough + 1}, func(k svcSeq) bool {
		if k.service != s.Ordinal || k.seq > through {
			return false
		}
		rb, _ := x.t.results.Get(&ResultBatch{Seq: k.seq})
		results += uint64(rb.Len())
		ms.UnackedResults -= uint64(rb.Len())
		ms.UnackedBytes -= uint64(rb.Size())
		return true
	})
	ms.AckedThrough = through
	x.record(&Activity{Action: ActAckResults, Service: s.Name, Count: results, Message: fmt.Sprintf("acknowledged through %d", through)})
	return &rationv1.AckResultsResponse{Export: ms.ExportPosition()}, nil
}

// ExportPosition returns where the service's results stand with its owner.
func (s *Service) ExportPosition() *rationv1.ExportPosition {
	return &rationv1.ExportPosition{AckedThrough: s.AckedThrough, LastSeq: s.LastResultSeq,
		UnackedResults: s.UnackedResults, UnackedBytes: s.UnackedBytes}
}
