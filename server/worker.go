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
	if err := rateLimit(h.s, ctx, opRegister, req, req.Msg.GetWorkerId()); err != nil {
		return nil, err
	}
	return write(h.s, ctx, req,
		func(r *rationv1.RegisterRequest) *rationv1.Command {
			return &rationv1.Command{Op: &rationv1.Command_Register{Register: r}}
		},
		(*rationv1.CommandResult).GetRegister,
		func(p *peer, ctx context.Context, r *connect.Request[rationv1.RegisterRequest]) (*connect.Response[rationv1.RegisterResponse], error) {
			return p.worker.Register(ctx, r)
		})
}

func (h *workerHandler) Unregister(ctx context.Context, req *connect.Request[rationv1.UnregisterRequest]) (*connect.Response[rationv1.UnregisterResponse], error) {
	return write(h.s, ctx, req,
		func(r *rationv1.UnregisterRequest) *rationv1.Command {
			return &rationv1.Command{Op: &rationv1.Command_Unregister{Unregister: r}}
		},
		(*rationv1.CommandResult).GetUnregister,
		func(p *peer, ctx context.Context, r *connect.Request[rationv1.UnregisterRequest]) (*connect.Response[rationv1.UnregisterResponse], error) {
			return p.worker.Unregister(ctx, r)
		})
}

func (h *workerHandler) Acquire(ctx context.Context, req *connect.Request[rationv1.AcquireRequest]) (*connect.Response[rationv1.AcquireResponse], error) {
	if err := rateLimit(h.s, ctx, opAcquire, req, req.Msg.GetWorkerId()); err != nil {
		return nil, err
	}
	return write(h.s, ctx, req,
		func(r *rationv1.AcquireRequest) *rationv1.Command {
			return &rationv1.Command{Op: &rationv1.Command_Acquire{Acquire: r}}
		},
		(*rationv1.CommandResult).GetAcquire,
		func(p *peer, ctx context.Context, r *connect.Request[rationv1.AcquireRequest]) (*connect.Response[rationv1.AcquireResponse], error) {
			return p.worker.Acquire(ctx, r)
		})
}

func (h *workerHandler) Submit(ctx context.Context, req *connect.Request[rationv1.SubmitRequest]) (*connect.Response[rationv1.SubmitResponse], error) {
	return write(h.s, ctx, req,
		func(r *rationv1.SubmitRequest) *rationv1.Command {
			return &rationv1.Command{Op: &rationv1.Command_Submit{Submit: r}}
		},
		(*rationv1.CommandResult).GetSubmit,
		func(p *peer, ctx context.Context, r *connect.Request[rationv1.SubmitRequest]) (*connect.Response[rationv1.SubmitResponse], error) {
			return p.worker.Submit(ctx, r)
		})
}

func (h *workerHandler) Release(ctx context.Context, req *connect.Request[rationv1.ReleaseRequest]) (*connect.Response[rationv1.ReleaseResponse], error) {
	return write(h.s, ctx, req,
		func(r *rationv1.ReleaseRequest) *rationv1.Command {
			return &rationv1.Command{Op: &rationv1.Command_Release{Release: r}}
		},
		(*rationv1.CommandResult).GetRelease,
		func(p *peer, ctx context.Context, r *connect.Request[rationv1.ReleaseRequest]) (*connect.Response[rationv1.ReleaseResponse], error) {
			return p.worker.Release(ctx, r)
		})
}

// Heartbeat goes through the leader's coalescer: many workers' heartbeats
// share one log entry.
func (h *workerHandler) Heartbeat(ctx context.Context, req *connect.Request[rationv1.HeartbeatRequest]) (*connect.Response[rationv1.HeartbeatResponse], error) {
	s := h.s
	if err := fsm.CheckRequest(req.Msg); err != nil {
		return nil, toConnect(s.log, s.store.ID(), err)
	}
	return onLeader(s, ctx, req, func() (*rationv1.HeartbeatResponse, error) {
		e := &rationv1.HeartbeatEntry{Request: req.Msg, Credential: credential(ctx)}
		// A heartbeat refused whole, or one extending nothing, is answered here.
		if resp, err := s.precheckHeartbeat(ctx, e); resp != nil || err != nil {
			return resp, err
		}
		res, err := s.store.Heartbeat(ctx, e)
		if err == nil {
			err = fsm.ResultError(res)
		}
		return res.GetHeartbeatEntry(), err
	}, func(p *peer, ctx context.Context, r *connect.Request[rationv1.HeartbeatRequest]) (*connect.Response[rationv1.HeartbeatResponse], error) {
		return p.worker.Heartbeat(ctx, r)
	})
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
		return nil, toConnect(h.s.log, h.s.store.ID(), fmt.Errorf("worker %q has never registered: %w", id, fsm.ErrWorkerNotFound))
	}
	if subtle.ConstantTimeCompare(w.SecretHash, credential(ctx)) != 1 {
		return nil, toConnect(h.s.log, h.s.store.ID(), fmt.Errorf("worker %q: %w", id, fsm.ErrBadCredential))
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
