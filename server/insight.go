package server

import (
	"context"
	"errors"
	"fmt"
	"strconv"

	"connectrpc.com/connect"

	rationv1 "github.com/rationhq/ration/api/ration/v1"
	"github.com/rationhq/ration/api/ration/v1/rationv1connect"
	"github.com/rationhq/ration/fsm"
)

type insightHandler struct{ s *Server }

var _ rationv1connect.InsightServiceHandler = (*insightHandler)(nil)

func (h *insightHandler) GetStats(ctx context.Context, req *connect.Request[rationv1.GetStatsRequest]) (*connect.Response[rationv1.GetStatsResponse], error) {
	st, info, err := h.s.read(ctx, req.Msg.GetConsistency())
	if err != nil {
		return nil, err
	}
	var svcs []*fsm.Service
	if name := req.Msg.GetService(); name != "" {
		svc, ok := st.Service(name)
		if !ok {
			return nil, h.s.notFound("service %q", name)
		}
		svcs = []*fsm.Service{svc}
	} else {
		svcs = st.Services()
	}
	out := &rationv1.GetStatsResponse{Read: info}
	var items, buckets fsm.StateCounts
	for _, svc := range svcs {
		out.Services = append(out.Services, serviceInfo(st, svc))
		for i := range items {
			items[i] += svc.Items[i]
			buckets[i] += svc.Buckets[i]
		}
		if w := req.Msg.GetWorkerId(); w != "" {
			if r, ok := st.Registration(svc.Name, w); ok {
				out.Workers = append(out.Workers, workerInfo(st, svc.Name, r))
			}
		}
	}
	out.Items, out.Buckets = itemCounts(items), bucketCounts(buckets)
	for _, s := range out.Services {
		out.Items.AwaitingQuorum += s.GetItems().GetAwaitingQuorum()
	}
	return reply(h.s, out), nil
}

func (h *insightHandler) ListWorkers(ctx context.Context, req *connect.Request[rationv1.ListWorkersRequest]) (*connect.Response[rationv1.ListWorkersResponse], error) {
	n, st, info, err := h.s.listService(ctx, req.Msg.GetService(), req.Msg.GetPageSize(), req.Msg.GetConsistency())
	if err != nil {
		return nil, err
	}
	regs := st.Registrations(req.Msg.GetService(), req.Msg.GetPageToken(), n)
	out := &rationv1.ListWorkersResponse{Read: info}
	for _, r := range regs {
		out.Workers = append(out.Workers, workerInfo(st, req.Msg.GetService(), r))
	}
	if len(regs) == n {
		out.NextPageToken = regs[n-1].Worker
	}
	return reply(h.s, out), nil
}

func (h *insightHandler) ListBuckets(ctx context.Context, req *connect.Request[rationv1.ListBucketsRequest]) (*connect.Response[rationv1.ListBucketsResponse], error) {
	after, err := parseUint(req.Msg.GetPageToken())
	if err != nil {
		return nil, h.s.invalid(fmt.Errorf("page_token %q: %v", req.Msg.GetPageToken(), err))
	}
	n, st, info, err := h.s.listService(ctx, req.Msg.GetService(), req.Msg.GetPageSize(), req.Msg.GetConsistency())
	if err != nil {
		return nil, err
	}
	bs := st.Buckets(fsm.BucketQuery{Service: req.Msg.GetService(), State: req.Msg.GetState(), Holder: req.Msg.GetHolder(), After: after, Limit: n})
	out := &rationv1.ListBucketsResponse{Read: info}
	for _, b := range bs {
		out.Buckets = append(out.Buckets, bucketInfo(req.Msg.GetService(), b))
	}
	if len(bs) == n {
		out.NextPageToken = strconv.FormatUint(bs[n-1].ID, 10)
	}
	return reply(h.s, out), nil
}

func activityQuery(service, worker, action string, after uint64, limit int) fsm.ActivityQuery {
	return fsm.ActivityQuery{Service: service, Worker: worker, Action: action, AfterSeq: after, Limit: limit}
}

func (h *insightHandler) ListActivity(ctx context.Context, req *connect.Request[rationv1.ListActivityRequest]) (*connect.Response[rationv1.ListActivityResponse], error) {
	n, err := h.s.pageSize(req.Msg.GetPageSize())
	if err != nil {
		return nil, err
	}
	st, info, err := h.s.read(ctx, req.Msg.GetConsistency())
	if err != nil {
		return nil, err
	}
	m := req.Msg
	q := activityQuery(m.GetService(), m.GetWorkerId(), m.GetAction(), m.GetAfterSeq(), n)
	q.Newest = m.GetNewest()
	if m.GetSince() != nil {
		q.Since = m.GetSince().AsTime()
	}
	if m.GetUntil() != nil {
		q.Until = m.GetUntil().AsTime()
	}
	acts := st.Activity(q)
	out := &rationv1.ListActivityResponse{Read: info}
	for _, a := range acts {
		out.Activity = append(out.Activity, activityInfo(a))
	}
	if len(acts) == n {
		out.NextAfterSeq = acts[n-1].Seq
	}
	return reply(h.s, out), nil
}

// WatchActivity sends records as this node applies them. It reads the local
// state only, so watching never loads the leader.
func (h *insightHandler) WatchActivity(ctx context.Context, req *connect.Request[rationv1.WatchActivityRequest], stream *connect.ServerStream[rationv1.WatchActivityResponse]) error {
	m := req.Msg
	after := m.GetAfterSeq()
	if after == 0 {
		after = h.s.store.State().LastActivitySeq()
	}
	stream.ResponseHeader().Set(ServedByHeader, h.s.store.ID())
	for {
		changed := h.s.store.Changed()
		acts := h.s.store.State().Activity(activityQuery(m.GetService(), m.GetWorkerId(), m.GetAction(), after, MaxPageSize))
		if len(acts) > 0 {
			msg := &rationv1.WatchActivityResponse{}
			for _, a := range acts {
				msg.Activity = append(msg.Activity, activityInfo(a))
			}
			if err := stream.Send(msg); err != nil {
				return err
			}
			after = acts[len(acts)-1].Seq
			continue
		}
		if more, err := h.s.awaitChange(ctx, changed); !more {
			return err
		}
	}
}

func (h *insightHandler) Explain(ctx context.Context, req *connect.Request[rationv1.ExplainRequest]) (*connect.Response[rationv1.ExplainResponse], error) {
	st, info, err := h.s.read(ctx, req.Msg.GetConsistency())
	if err != nil {
		return nil, err
	}
	m := req.Msg
	var (
		e     *fsm.Explanation
		found bool
		what  string
	)
	switch subj := m.GetSubject().(type) {
	case *rationv1.ExplainRequest_BucketId:
		e, found = st.ExplainBucket(m.GetService(), subj.BucketId)
		what = fmt.Sprintf("bucket %d in service %q", subj.BucketId, m.GetService())
	case *rationv1.ExplainRequest_WorkerId:
		e, found = st.ExplainWorker(m.GetService(), subj.WorkerId)
		what = fmt.Sprintf("worker %q in service %q", subj.WorkerId, m.GetService())
	case *rationv1.ExplainRequest_Item:
		e, found = st.ExplainItem(m.GetService(), subj.Item)
		what = fmt.Sprintf("item %q in service %q", subj.Item, m.GetService())
	case *rationv1.ExplainRequest_RequestId:
		// An owner token sees only its service's records.
		e, found = st.ExplainRequest(m.GetService(), subj.RequestId, callerOf(ctx).ownerToken == nil)
		what = fmt.Sprintf("service %q", m.GetService())
	default:
		return nil, h.s.invalid(errors.New("say what to explain: bucket_id, worker_id, item or request_id"))
	}
	if !found {
		return nil, h.s.notFound("%s", what)
	}
	out := &rationv1.ExplainResponse{Lines: e.Lines, Read: info}
	for _, a := range e.Activity {
		out.Activity = append(out.Activity, activityInfo(a))
	}
	return reply(h.s, out), nil
}
