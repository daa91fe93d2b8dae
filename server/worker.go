package server

import (
	"context"
	"crypto/subtle"
	"fmt"

	"connectrpc.com/connect"

	rationv1 "github.com/rationhq/ration/api/ration/v1"
	"github.com/rationhq/ration/api/ration/v1/rationv1connect"
	"github.com/rationhq/ration/fsm"
)

type workerHandler struct{ s *Server }

var _ rationv1connect.WorkerServiceHandler = (*workerHandler)(nil)

func (h *workerHandler) Register(ctx context.Context, req *connect.Request[rationv1.RegisterRequest]) (*connect.Response[rationv1.RegisterResponse], error) {
	return write[rationv1.RegisterResponse](h.s, ctx, req)
}

func (h *workerHandler) Unregister(ctx context.Context, req *connect.Request[rationv1.UnregisterRequest]) (*connect.Response[rationv1.UnregisterResponse], error) {
	return write[rationv1.UnregisterResponse](h.s, ctx, req)
}

func (h *workerHandler) Acquire(ctx context.Context, req *connect.Request[rationv1.AcquireRequest]) (*connect.Response[rationv1.AcquireResponse], error) {
	return write[rationv1.AcquireResponse](h.s, ctx, req)
}

func (h *workerHandler) Submit(ctx context.Context, req *connect.Request[rationv1.SubmitRequest]) (*connect.Response[rationv1.SubmitResponse], error) {
	return write[rationv1.SubmitResponse](h.s, ctx, req)
}

func (h *workerHandler) Release(ctx context.Context, req *connect.Request[rationv1.ReleaseRequest]) (*connect.Response[rationv1.ReleaseResponse], error) {
	return write[rationv1.ReleaseResponse](h.s, ctx, req)
}

func (h *workerHandler) Heartbeat(ctx context.Context, req *connect.Request[rationv1.HeartbeatRequest]) (*connect.Response[rationv1.HeartbeatResponse], error) {
	return h.s.heartbeat(ctx, req)
}

func (h *workerHandler) CheckService(ctx context.Context, req *connect.Request[rationv1.CheckServiceRequest]) (*connect.Response[rationv1.CheckServiceResponse], error) {
	st, info, err := h.s.read(ctx, req.Msg.GetConsistency())
	if err != nil {
		return nil, err
	}
	out := &rationv1.CheckServiceResponse{Read: info}
	if svc, ok := st.Service(req.Msg.GetService()); ok {
		out.Exists, out.Active, out.Kind, out.Reason = true, svc.Active(), svc.Kind, svc.Reason
	}
	return reply(h.s, out), nil
}

func (h *workerHandler) ListMyBuckets(ctx context.Context, req *connect.Request[rationv1.ListMyBucketsRequest]) (*connect.Response[rationv1.ListMyBucketsResponse], error) {
	st, info, err := h.s.read(ctx, req.Msg.GetConsistency())
	if err != nil {
		return nil, err
	}
	id := req.Msg.GetWorkerId()
	w, ok := st.Worker(id)
	if !ok {
		return nil, h.s.rpcError(fmt.Errorf("worker %q has never registered: %w", id, fsm.ErrWorkerNotFound))
	}
	if subtle.ConstantTimeCompare(w.SecretHash, callerOf(ctx).workerSecret) != 1 {
		return nil, h.s.rpcError(fmt.Errorf("worker %q: %w", id, fsm.ErrBadCredential))
	}
	if _, ok := st.Service(req.Msg.GetService()); !ok {
		return nil, h.s.notFound("service %q", req.Msg.GetService())
	}
	out := &rationv1.ListMyBucketsResponse{Read: info}
	for _, b := range st.Buckets(fsm.BucketQuery{Service: req.Msg.GetService(), Holder: id, Limit: 1 << 20}) {
		out.Buckets = append(out.Buckets, leasedBucket(req.Msg.GetService(), b))
	}
	return reply(h.s, out), nil
}
