package server

import (
	"context"
	"fmt"
	"strconv"
	"time"

	"connectrpc.com/connect"

	rationv1 "github.com/rationhq/ration/api/ration/v1"
	"github.com/rationhq/ration/api/ration/v1/rationv1connect"
	"github.com/rationhq/ration/fsm"
)

// Page sizes of list calls.
const (
	DefaultPageSize = 100
	MaxPageSize     = 1000
)

func unix(ns int64) time.Time { return time.Unix(0, ns) }

func (s *Server) pageSize(n uint32) (int, error) {
	if n == 0 {
		return DefaultPageSize, nil
	}
	if n > MaxPageSize {
		return 0, s.invalid(fmt.Errorf("page_size %d, limit %d", n, MaxPageSize))
	}
	return int(n), nil
}

// listService starts a paged read of one service: the page size, the state
// at the requested consistency, and NotFound for an unknown service.
func (s *Server) listService(ctx context.Context, service string, pageSize uint32, c rationv1.Consistency) (int, *fsm.State, *rationv1.ReadInfo, error) {
	n, err := s.pageSize(pageSize)
	if err != nil {
		return 0, nil, nil, err
	}
	st, info, err := s.read(ctx, c)
	if err != nil {
		return 0, nil, nil, err
	}
	if _, ok := st.Service(service); !ok {
		return 0, nil, nil, s.notFound("service %q", service)
	}
	return n, st, info, nil
}

type ownerHandler struct{ s *Server }

var _ rationv1connect.OwnerServiceHandler = (*ownerHandler)(nil)

// CreateService makes the service's owner token on the leader; only its
// hash enters the log.
func (h *ownerHandler) CreateService(ctx context.Context, req *connect.Request[rationv1.CreateServiceRequest]) (*connect.Response[rationv1.CreateServiceResponse], error) {
	return write[rationv1.CreateServiceResponse](h.s, ctx, req)
}

// RotateOwnerToken replaces the service's owner token, as CreateService
// makes one.
func (h *ownerHandler) RotateOwnerToken(ctx context.Context, req *connect.Request[rationv1.RotateOwnerTokenRequest]) (*connect.Response[rationv1.RotateOwnerTokenResponse], error) {
	return write[rationv1.RotateOwnerTokenResponse](h.s, ctx, req)
}

func (h *ownerHandler) UpdateService(ctx context.Context, req *connect.Request[rationv1.UpdateServiceRequest]) (*connect.Response[rationv1.UpdateServiceResponse], error) {
	return write[rationv1.UpdateServiceResponse](h.s, ctx, req)
}

func (h *ownerHandler) RevokeService(ctx context.Context, req *connect.Request[rationv1.RevokeServiceRequest]) (*connect.Response[rationv1.RevokeServiceResponse], error) {
	return write[rationv1.RevokeServiceResponse](h.s, ctx, req)
}

func (h *ownerHandler) ReinstateService(ctx context.Context, req *connect.Request[rationv1.ReinstateServiceRequest]) (*connect.Response[rationv1.ReinstateServiceResponse], error) {
	return write[rationv1.ReinstateServiceResponse](h.s, ctx, req)
}

func (h *ownerHandler) DeleteService(ctx context.Context, req *connect.Request[rationv1.DeleteServiceRequest]) (*connect.Response[rationv1.DeleteServiceResponse], error) {
	return write[rationv1.DeleteServiceResponse](h.s, ctx, req)
}

func (h *ownerHandler) AddCanaries(ctx context.Context, req *connect.Request[rationv1.AddCanariesRequest]) (*connect.Response[rationv1.AddCanariesResponse], error) {
	return write[rationv1.AddCanariesResponse](h.s, ctx, req)
}

func (h *ownerHandler) AddItems(ctx context.Context, req *connect.Request[rationv1.AddItemsRequest]) (*connect.Response[rationv1.AddItemsResponse], error) {
	return write[rationv1.AddItemsResponse](h.s, ctx, req)
}

func (h *ownerHandler) DeactivateWorker(ctx context.Context, req *connect.Request[rationv1.DeactivateWorkerRequest]) (*connect.Response[rationv1.DeactivateWorkerResponse], error) {
	return write[rationv1.DeactivateWorkerResponse](h.s, ctx, req)
}

func (h *ownerHandler) ReactivateWorker(ctx context.Context, req *connect.Request[rationv1.ReactivateWorkerRequest]) (*connect.Response[rationv1.ReactivateWorkerResponse], error) {
	return write[rationv1.ReactivateWorkerResponse](h.s, ctx, req)
}

func (h *ownerHandler) RevertWorker(ctx context.Context, req *connect.Request[rationv1.RevertWorkerRequest]) (*connect.Response[rationv1.RevertWorkerResponse], error) {
	return write[rationv1.RevertWorkerResponse](h.s, ctx, req)
}

func (h *ownerHandler) AckResults(ctx context.Context, req *connect.Request[rationv1.AckResultsRequest]) (*connect.Response[rationv1.AckResultsResponse], error) {
	return write[rationv1.AckResultsResponse](h.s, ctx, req)
}

func (h *ownerHandler) GetService(ctx context.Context, req *connect.Request[rationv1.GetServiceRequest]) (*connect.Response[rationv1.GetServiceResponse], error) {
	st, info, err := h.s.read(ctx, req.Msg.GetConsistency())
	if err != nil {
		return nil, err
	}
	svc, ok := st.Service(req.Msg.GetName())
	if !ok {
		return nil, h.s.notFound("service %q", req.Msg.GetName())
	}
	return reply(h.s, &rationv1.GetServiceResponse{Service: serviceInfo(st, svc), Read: info}), nil
}

func (h *ownerHandler) ListServices(ctx context.Context, req *connect.Request[rationv1.ListServicesRequest]) (*connect.Response[rationv1.ListServicesResponse], error) {
	st, info, err := h.s.read(ctx, req.Msg.GetConsistency())
	if err != nil {
		return nil, err
	}
	out := &rationv1.ListServicesResponse{Read: info}
	for _, svc := range st.Services() {
		out.Services = append(out.Services, serviceInfo(st, svc))
	}
	return reply(h.s, out), nil
}

func (h *ownerHandler) ListItems(ctx context.Context, req *connect.Request[rationv1.ListItemsRequest]) (*connect.Response[rationv1.ListItemsResponse], error) {
	n, st, info, err := h.s.listService(ctx, req.Msg.GetService(), req.Msg.GetPageSize(), req.Msg.GetConsistency())
	if err != nil {
		return nil, err
	}
	items := st.Items(req.Msg.GetService(), req.Msg.GetState(), req.Msg.GetPageToken(), n)
	out := &rationv1.ListItemsResponse{Read: info}
	for _, v := range items {
		out.Items = append(out.Items, itemInfo(v, st, req.Msg.GetService()))
	}
	if len(items) == n {
		out.NextPageToken = items[n-1].ID
	}
	return reply(h.s, out), nil
}

// exportBatch is how many result batches ExportResults reads at a time.
const exportBatch = 256

func (h *ownerHandler) ExportResults(ctx context.Context, req *connect.Request[rationv1.ExportResultsRequest], stream *connect.ServerStream[rationv1.ExportResultsResponse]) error {
	st, info, err := h.s.read(ctx, req.Msg.GetConsistency())
	if err != nil {
		return err
	}
	if _, ok := st.Service(req.Msg.GetService()); !ok {
		return h.s.notFound("service %q", req.Msg.GetService())
	}
	stream.ResponseHeader().Set(ServedByHeader, h.s.store.ID())
	after := req.Msg.GetAfterSeq()
	first := true
	for {
		// Taken before the state is read, so no result applied after it is missed.
		changed := h.s.store.Changed()
		batches := st.Results(req.Msg.GetService(), after, exportBatch)
		for _, rb := range batches {
			msg := &rationv1.ExportResultsResponse{Seq: rb.Seq}
			msg.Results = make([]*rationv1.ResultInfo, 0, rb.Len())
			for _, r := range rb.All() {
				msg.Results = append(msg.Results, resultInfo(rb, &r))
			}
			if first {
				msg.Read, first = info, false
			}
			if err := stream.Send(msg); err != nil {
				return err
			}
			after = rb.Seq
		}
		if len(batches) == exportBatch {
			continue
		}
		if !req.Msg.GetFollow() {
			return nil
		}
		// Following: new results as this node applies them, from its own
		// state (as WatchActivity), so an export never loads the leader.
		if more, err := h.s.awaitChange(ctx, changed); !more {
			return err
		}
		st = h.s.store.State()
	}
}

func parseUint(s string) (uint64, error) {
	if s == "" {
		return 0, nil
	}
	return strconv.ParseUint(s, 10, 64)
}
