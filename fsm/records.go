package fsm

import (
	statev1 "github.com/rationhq/ration/api/ration/state/v1"
	rationv1 "github.com/rationhq/ration/api/ration/v1"
)

// Conversions between records and their snapshot (and API) messages.

// serviceRecord is a service as a snapshot stores it.
func serviceRecord(s *Service) *statev1.ServiceRecord {
	rec := &statev1.ServiceRecord{Ordinal: s.Ordinal, Name: s.Name, Kind: s.Kind, Config: s.Config.Proto(),
		State: s.State, Reason: s.Reason, CreatedAt: s.CreatedAt, UpdatedAt: s.UpdatedAt, Counters: s.Counters.Proto(),
		OwnerTokenHash: s.OwnerTokenHash, AckedThrough: s.AckedThrough, LastResultSeq: s.LastResultSeq,
		TrimmedThrough: s.TrimmedThrough}
	for _, o := range s.Open {
		rec.Open = append(rec.Open, &statev1.OpenBucket{Priority: o.Priority, BucketId: o.Bucket})
	}
	for _, c := range s.Canaries {
		rec.Canaries = append(rec.Canaries, &rationv1.Canary{Item: c.ID, Verdict: c.Verdict, Payload: c.Payload})
	}
	return rec
}

// bucketRecord is a bucket as a snapshot stores it.
func bucketRecord(b *Bucket) *statev1.BucketRecord {
	rec := &statev1.BucketRecord{
		Id: b.ID, Service: b.Service, State: b.State, Priority: b.Priority, ReadySince: b.ReadySince, Items: b.Items,
		Holder: b.Holder, Epoch: b.Epoch, LeasedAt: b.LeasedAt, Deadline: b.Deadline, DeadAt: b.DeadAt,
		ReleaseAt: b.ReleaseAt, ClosedAt: b.ClosedAt, ResultSeq: b.ResultSeq, Packed: b.Packed, Votes: votesRecord(b.Votes),
	}
	for _, c := range b.Canaries {
		rec.Canaries = append(rec.Canaries, &statev1.CanaryAt{Item: c.ID, Position: c.Position})
	}
	return rec
}

// Proto returns the counters as their API message.
func (c Counters) Proto() *rationv1.Counters {
	p := &rationv1.Counters{
		LeasesGranted: c.LeasesGranted, LeasesExpired: c.LeasesExpired, LeasesReleased: c.LeasesReleased,
		LeasesEnded: c.LeasesEnded, BucketsDone: c.BucketsDone, ResultsAccepted: c.ResultsAccepted,
		ItemsRequeued: c.ItemsRequeued, ResultsReverted: c.ResultsReverted, Rejected: c.Rejected,
		Heartbeats: c.Heartbeats, ItemsAdded: c.ItemsAdded, ItemsQuarantined: c.ItemsQuarantined,
		LateSubmits: c.LateSubmits, DeadReleased: c.DeadReleased,
		ResultsTrimmed: c.ResultsTrimmed, ResultsDropped: c.ResultsDropped, ItemsForgotten: c.ItemsForgotten,
		ItemsRefreshed:   c.ItemsRefreshed,
		ResultsValidated: c.ResultsValidated, ResultsDisagreed: c.ResultsDisagreed, ResultsUnvalidated: c.ResultsUnvalidated,
		ItemsInconclusive: c.ItemsInconclusive, CanariesPassed: c.CanariesPassed, CanariesFailed: c.CanariesFailed,
	}
	for _, v := range c.Verdicts {
		p.Verdicts = append(p.Verdicts, &rationv1.VerdictCount{Verdict: v.Key, Count: v.Count})
	}
	for _, r := range c.RejectedBy {
		p.RejectedByReason = append(p.RejectedByReason, &rationv1.ReasonCount{Reason: r.Key, Count: r.Count})
	}
	return p
}

func countersFromProto(p *rationv1.Counters) Counters {
	c := Counters{
		LeasesGranted: p.GetLeasesGranted(), LeasesExpired: p.GetLeasesExpired(), LeasesReleased: p.GetLeasesReleased(),
		LeasesEnded: p.GetLeasesEnded(), BucketsDone: p.GetBucketsDone(), ResultsAccepted: p.GetResultsAccepted(),
		ItemsRequeued: p.GetItemsRequeued(), ResultsReverted: p.GetResultsReverted(), Rejected: p.GetRejected(),
		Heartbeats: p.GetHeartbeats(), ItemsAdded: p.GetItemsAdded(), ItemsQuarantined: p.GetItemsQuarantined(),
		LateSubmits: p.GetLateSubmits(), DeadReleased: p.GetDeadReleased(),
		ResultsTrimmed: p.GetResultsTrimmed(), ResultsDropped: p.GetResultsDropped(), ItemsForgotten: p.GetItemsForgotten(),
		ItemsRefreshed:   p.GetItemsRefreshed(),
		ResultsValidated: p.GetResultsValidated(), ResultsDisagreed: p.GetResultsDisagreed(),
		ResultsUnvalidated: p.GetResultsUnvalidated(), ItemsInconclusive: p.GetItemsInconclusive(),
		CanariesPassed: p.GetCanariesPassed(), CanariesFailed: p.GetCanariesFailed(),
	}
	for _, v := range p.GetVerdicts() {
		c.Verdicts = append(c.Verdicts, KeyCount{Key: v.GetVerdict(), Count: v.GetCount()})
	}
	for _, r := range p.GetRejectedByReason() {
		c.RejectedBy = append(c.RejectedBy, KeyCount{Key: r.GetReason(), Count: r.GetCount()})
	}
	return c
}

func votesRecord(vs []Vote) []*statev1.StoredVote {
	var out []*statev1.StoredVote
	for _, v := range vs {
		rec := &statev1.StoredVote{WorkerId: v.Worker, At: v.At, Results: make([]*statev1.StoredResult, 0, v.Len())}
		for _, r := range v.All() {
			rec.Results = append(rec.Results, &statev1.StoredResult{Item: r.Item, Verdict: r.Verdict, Payload: r.Payload})
		}
		out = append(out, rec)
	}
	return out
}

func votesOf(recs []*statev1.StoredVote) []Vote {
	var out []Vote
	for _, rec := range recs {
		rb := newResultBatch(ResultBatch{}, rec.GetResults(), func(x *statev1.StoredResult) (string, string, string) {
			return x.Item, x.Verdict, x.Payload
		})
		out = append(out, Vote{Worker: rec.GetWorkerId(), At: rec.GetAt(), n: rb.n, encoded: rb.encoded})
	}
	return out
}

// clusterVersionRecord is the cluster version as a snapshot stores it: 1
// is left out, so that a cluster that never raised it writes what builds
// before versions existed wrote, and they can restore it.
func clusterVersionRecord(v uint32) uint32 {
	if v <= 1 {
		return 0
	}
	return v
}
