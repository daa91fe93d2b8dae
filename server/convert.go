package server

import (
	"google.golang.org/protobuf/types/known/timestamppb"

	rationv1 "github.com/rationhq/ration/api/ration/v1"
	"github.com/rationhq/ration/fsm"
)

// Conversions from the state machine's records to API messages.

func ts(ns int64) *timestamppb.Timestamp {
	if ns == 0 {
		return nil
	}
	return timestamppb.New(unix(ns))
}

func serviceInfo(st *fsm.State, s *fsm.Service) *rationv1.ServiceInfo {
	items := itemCounts(s.Items)
	items.AwaitingQuorum = st.AwaitingQuorum(s)
	return &rationv1.ServiceInfo{
		Name: s.Name, Kind: s.Kind, Config: s.Config.Proto(), State: s.State, Reason: s.Reason,
		CreatedAt: ts(s.CreatedAt), UpdatedAt: ts(s.UpdatedAt),
		Items:    items,
		Buckets:  bucketCounts(s.Buckets),
		Counters: s.Counters.Proto(),
		// Only whether there is one: the hash never leaves the state machine.
		HasOwnerToken: len(s.OwnerTokenHash) > 0,
		Export:        s.ExportPosition(),
	}
}

func itemCounts(c fsm.StateCounts) *rationv1.ItemCounts {
	return &rationv1.ItemCounts{
		Pending: c[rationv1.ItemState_ITEM_STATE_PENDING], Leased: c[rationv1.ItemState_ITEM_STATE_LEASED],
		Done: c[rationv1.ItemState_ITEM_STATE_DONE], Quarantined: c[rationv1.ItemState_ITEM_STATE_QUARANTINED],
		Inconclusive: c[rationv1.ItemState_ITEM_STATE_INCONCLUSIVE],
	}
}

func bucketCounts(c fsm.StateCounts) *rationv1.BucketCounts {
	return &rationv1.BucketCounts{
		Unassigned: c[rationv1.BucketState_BUCKET_STATE_UNASSIGNED], Leased: c[rationv1.BucketState_BUCKET_STATE_LEASED],
		Dead: c[rationv1.BucketState_BUCKET_STATE_DEAD], Done: c[rationv1.BucketState_BUCKET_STATE_DONE],
	}
}

func workerInfo(st *fsm.State, service string, r *fsm.Registration) *rationv1.WorkerInfo {
	why := st.Suspicions(service, r)
	out := &rationv1.WorkerInfo{
		Service: service, WorkerId: r.Worker, Name: r.Name, State: r.State, Reason: r.Reason, Blocked: r.Blocked,
		RegisteredAt: ts(r.RegisteredAt), LastSeen: ts(r.LastSeen), Held: r.Held, Counters: r.Counters.Proto(),
		Suspect: len(why) > 0, SuspectReasons: why,
	}
	if svc, ok := st.Service(service); ok {
		out.Trust = svc.Trust(r)
	}
	return out
}

func bucketInfo(service string, b *fsm.Bucket) *rationv1.BucketInfo {
	return &rationv1.BucketInfo{
		Id: b.ID, Service: service, State: b.State, Priority: b.Priority, Items: b.ItemIDs(), Holder: b.Holder, Epoch: b.Epoch,
		ReadySince: ts(b.ReadySince), LeasedAt: ts(b.LeasedAt), Deadline: ts(b.Deadline), DeadAt: ts(b.DeadAt),
		ReleaseAt: ts(b.ReleaseAt), ClosedAt: ts(b.ClosedAt),
	}
}

func leasedBucket(service string, b *fsm.Bucket) *rationv1.LeasedBucket {
	return &rationv1.LeasedBucket{Id: b.ID, Service: service, Items: b.Shown(), State: b.State,
		Lease: &rationv1.Lease{Epoch: b.Epoch, Deadline: ts(b.Deadline)}}
}

func activityInfo(a *fsm.Activity) *rationv1.ActivityInfo {
	return &rationv1.ActivityInfo{
		Seq: a.Seq, Index: a.Index, At: ts(a.At), Actor: a.Actor, Service: a.Service, WorkerId: a.Worker, Action: a.Action,
		BucketId: a.Bucket, Reason: a.Reason, Message: a.Message, Count: a.Count, RequestId: a.RequestID,
	}
}

func resultInfo(rb *fsm.ResultBatch, r *fsm.Result) *rationv1.ResultInfo {
	return &rationv1.ResultInfo{Item: r.Item, Verdict: r.Verdict, Payload: r.Payload, WorkerId: rb.Worker,
		BucketId: rb.Bucket, Epoch: rb.Epoch, At: ts(rb.At), RevertedAt: ts(r.RevertedAt), Validated: rb.Validated}
}

func itemInfo(v fsm.ItemView, st *fsm.State, service string) *rationv1.ItemInfo {
	out := &rationv1.ItemInfo{Id: v.ID, State: v.State, Priority: v.Priority, Attempts: v.Attempts, BucketId: v.Bucket, Since: ts(v.Since)}
	if v.Result != nil {
		if b, ok := st.Bucket(v.Bucket); ok {
			if rb, ok := st.ResultBatch(b.ResultSeq); ok {
				out.Result = resultInfo(rb, v.Result)
			}
		}
	}
	for _, vote := range st.Votes(service, v) {
		out.Votes = append(out.Votes, &rationv1.Vote{WorkerId: vote.Worker, Verdict: vote.Result.Verdict,
			Payload: vote.Result.Payload, At: ts(vote.At), Agreed: vote.Agreed})
	}
	return out
}
