package client

import (
	"context"

	rationv1 "github.com/rationhq/ration/api/ration/v1"
)

// Each method runs one RPC with failover; writes are retried with the same
// request id. The errors are Connect errors (connect.CodeOf tells the code;
// the details carry a rationv1.ErrorDetail with a machine-readable reason).
// Server streams hand each message to a callback; they fail over only until
// the first message arrives, and an error from the callback ends them.

// CreateService defines a service.
func (c *Client) CreateService(ctx context.Context, r *rationv1.CreateServiceRequest) (*rationv1.CreateServiceResponse, error) {
	return call(ctx, c, r, true, func(n *node) rpcFunc[rationv1.CreateServiceRequest, rationv1.CreateServiceResponse] {
		return n.owner.CreateService
	})
}

// UpdateService replaces a service's config.
func (c *Client) UpdateService(ctx context.Context, r *rationv1.UpdateServiceRequest) (*rationv1.UpdateServiceResponse, error) {
	return call(ctx, c, r, true, func(n *node) rpcFunc[rationv1.UpdateServiceRequest, rationv1.UpdateServiceResponse] {
		return n.owner.UpdateService
	})
}

// GetService reads a service.
func (c *Client) GetService(ctx context.Context, r *rationv1.GetServiceRequest) (*rationv1.GetServiceResponse, error) {
	return call(ctx, c, r, false, func(n *node) rpcFunc[rationv1.GetServiceRequest, rationv1.GetServiceResponse] {
		return n.owner.GetService
	})
}

// ListServices reads every service.
func (c *Client) ListServices(ctx context.Context, r *rationv1.ListServicesRequest) (*rationv1.ListServicesResponse, error) {
	return call(ctx, c, r, false, func(n *node) rpcFunc[rationv1.ListServicesRequest, rationv1.ListServicesResponse] {
		return n.owner.ListServices
	})
}

// RevokeService stops a service.
func (c *Client) RevokeService(ctx context.Context, r *rationv1.RevokeServiceRequest) (*rationv1.RevokeServiceResponse, error) {
	return call(ctx, c, r, true, func(n *node) rpcFunc[rationv1.RevokeServiceRequest, rationv1.RevokeServiceResponse] {
		return n.owner.RevokeService
	})
}

// DeleteService removes a revoked service and what it holds.
func (c *Client) DeleteService(ctx context.Context, r *rationv1.DeleteServiceRequest) (*rationv1.DeleteServiceResponse, error) {
	return call(ctx, c, r, true, func(n *node) rpcFunc[rationv1.DeleteServiceRequest, rationv1.DeleteServiceResponse] {
		return n.owner.DeleteService
	})
}

// ReinstateService restarts a revoked service.
func (c *Client) ReinstateService(ctx context.Context, r *rationv1.ReinstateServiceRequest) (*rationv1.ReinstateServiceResponse, error) {
	return call(ctx, c, r, true, func(n *node) rpcFunc[rationv1.ReinstateServiceRequest, rationv1.ReinstateServiceResponse] {
		return n.owner.ReinstateService
	})
}

// RotateOwnerToken replaces a service's owner token and returns the new one
// (empty when the answer replays an earlier call with the same request id).
func (c *Client) RotateOwnerToken(ctx context.Context, r *rationv1.RotateOwnerTokenRequest) (*rationv1.RotateOwnerTokenResponse, error) {
	return call(ctx, c, r, true, func(n *node) rpcFunc[rationv1.RotateOwnerTokenRequest, rationv1.RotateOwnerTokenResponse] {
		return n.owner.RotateOwnerToken
	})
}

// AddItems feeds items into a service.
func (c *Client) AddItems(ctx context.Context, r *rationv1.AddItemsRequest) (*rationv1.AddItemsResponse, error) {
	return call(ctx, c, r, true, func(n *node) rpcFunc[rationv1.AddItemsRequest, rationv1.AddItemsResponse] { return n.owner.AddItems })
}

// ListItems reads a page of items.
func (c *Client) ListItems(ctx context.Context, r *rationv1.ListItemsRequest) (*rationv1.ListItemsResponse, error) {
	return call(ctx, c, r, false, func(n *node) rpcFunc[rationv1.ListItemsRequest, rationv1.ListItemsResponse] { return n.owner.ListItems })
}

// AddCanaries stores items with known answers, which leases mix in.
func (c *Client) AddCanaries(ctx context.Context, r *rationv1.AddCanariesRequest) (*rationv1.AddCanariesResponse, error) {
	return call(ctx, c, r, true, func(n *node) rpcFunc[rationv1.AddCanariesRequest, rationv1.AddCanariesResponse] {
		return n.owner.AddCanaries
	})
}

// DeactivateWorker stops a worker in a service.
func (c *Client) DeactivateWorker(ctx context.Context, r *rationv1.DeactivateWorkerRequest) (*rationv1.DeactivateWorkerResponse, error) {
	return call(ctx, c, r, true, func(n *node) rpcFunc[rationv1.DeactivateWorkerRequest, rationv1.DeactivateWorkerResponse] {
		return n.owner.DeactivateWorker
	})
}

// ReactivateWorker undoes DeactivateWorker.
func (c *Client) ReactivateWorker(ctx context.Context, r *rationv1.ReactivateWorkerRequest) (*rationv1.ReactivateWorkerResponse, error) {
	return call(ctx, c, r, true, func(n *node) rpcFunc[rationv1.ReactivateWorkerRequest, rationv1.ReactivateWorkerResponse] {
		return n.owner.ReactivateWorker
	})
}

// RevertWorker reverts a worker's results since a time.
func (c *Client) RevertWorker(ctx context.Context, r *rationv1.RevertWorkerRequest) (*rationv1.RevertWorkerResponse, error) {
	return call(ctx, c, r, true, func(n *node) rpcFunc[rationv1.RevertWorkerRequest, rationv1.RevertWorkerResponse] {
		return n.owner.RevertWorker
	})
}

// ExportResults streams a service's results in the order they were accepted.
func (c *Client) ExportResults(ctx context.Context, r *rationv1.ExportResultsRequest, each func(*rationv1.ExportResultsResponse) error) error {
	return stream(ctx, c, r, func(n *node) streamFunc[rationv1.ExportResultsRequest, rationv1.ExportResultsResponse] {
		return n.owner.ExportResults
	}, each)
}

// AckResults records that the owner has stored the service's results
// through a seq (from ExportResults); retried, it is the same request.
func (c *Client) AckResults(ctx context.Context, r *rationv1.AckResultsRequest) (*rationv1.AckResultsResponse, error) {
	return call(ctx, c, r, true, func(n *node) rpcFunc[rationv1.AckResultsRequest, rationv1.AckResultsResponse] {
		return n.owner.AckResults
	})
}

// Register registers the worker for a service.
func (c *Client) Register(ctx context.Context, r *rationv1.RegisterRequest) (*rationv1.RegisterResponse, error) {
	return call(ctx, c, r, true, func(n *node) rpcFunc[rationv1.RegisterRequest, rationv1.RegisterResponse] { return n.worker.Register })
}

// Unregister ends the worker's registration.
func (c *Client) Unregister(ctx context.Context, r *rationv1.UnregisterRequest) (*rationv1.UnregisterResponse, error) {
	return call(ctx, c, r, true, func(n *node) rpcFunc[rationv1.UnregisterRequest, rationv1.UnregisterResponse] {
		return n.worker.Unregister
	})
}

// CheckService says whether a service exists and is active.
func (c *Client) CheckService(ctx context.Context, r *rationv1.CheckServiceRequest) (*rationv1.CheckServiceResponse, error) {
	return call(ctx, c, r, false, func(n *node) rpcFunc[rationv1.CheckServiceRequest, rationv1.CheckServiceResponse] {
		return n.worker.CheckService
	})
}

// Acquire leases buckets.
func (c *Client) Acquire(ctx context.Context, r *rationv1.AcquireRequest) (*rationv1.AcquireResponse, error) {
	return call(ctx, c, r, true, func(n *node) rpcFunc[rationv1.AcquireRequest, rationv1.AcquireResponse] { return n.worker.Acquire })
}

// Heartbeat extends leases.
func (c *Client) Heartbeat(ctx context.Context, r *rationv1.HeartbeatRequest) (*rationv1.HeartbeatResponse, error) {
	return call(ctx, c, r, true, func(n *node) rpcFunc[rationv1.HeartbeatRequest, rationv1.HeartbeatResponse] {
		return n.worker.Heartbeat
	})
}

// Submit stores results for a leased bucket.
func (c *Client) Submit(ctx context.Context, r *rationv1.SubmitRequest) (*rationv1.SubmitResponse, error) {
	return call(ctx, c, r, true, func(n *node) rpcFunc[rationv1.SubmitRequest, rationv1.SubmitResponse] { return n.worker.Submit })
}

// Release gives a leased bucket back.
func (c *Client) Release(ctx context.Context, r *rationv1.ReleaseRequest) (*rationv1.ReleaseResponse, error) {
	return call(ctx, c, r, true, func(n *node) rpcFunc[rationv1.ReleaseRequest, rationv1.ReleaseResponse] { return n.worker.Release })
}

// ListMyBuckets lists what the worker holds.
func (c *Client) ListMyBuckets(ctx context.Context, r *rationv1.ListMyBucketsRequest) (*rationv1.ListMyBucketsResponse, error) {
	return call(ctx, c, r, false, func(n *node) rpcFunc[rationv1.ListMyBucketsRequest, rationv1.ListMyBucketsResponse] {
		return n.worker.ListMyBuckets
	})
}

// GetStats reads stats.
func (c *Client) GetStats(ctx context.Context, r *rationv1.GetStatsRequest) (*rationv1.GetStatsResponse, error) {
	return call(ctx, c, r, false, func(n *node) rpcFunc[rationv1.GetStatsRequest, rationv1.GetStatsResponse] { return n.insight.GetStats })
}

// ListWorkers reads a page of a service's workers.
func (c *Client) ListWorkers(ctx context.Context, r *rationv1.ListWorkersRequest) (*rationv1.ListWorkersResponse, error) {
	return call(ctx, c, r, false, func(n *node) rpcFunc[rationv1.ListWorkersRequest, rationv1.ListWorkersResponse] {
		return n.insight.ListWorkers
	})
}

// ListBuckets reads a page of a service's buckets.
func (c *Client) ListBuckets(ctx context.Context, r *rationv1.ListBucketsRequest) (*rationv1.ListBucketsResponse, error) {
	return call(ctx, c, r, false, func(n *node) rpcFunc[rationv1.ListBucketsRequest, rationv1.ListBucketsResponse] {
		return n.insight.ListBuckets
	})
}

// ListActivity reads a page of the activity log.
func (c *Client) ListActivity(ctx context.Context, r *rationv1.ListActivityRequest) (*rationv1.ListActivityResponse, error) {
	return call(ctx, c, r, false, func(n *node) rpcFunc[rationv1.ListActivityRequest, rationv1.ListActivityResponse] {
		return n.insight.ListActivity
	})
}

// Explain says why a bucket, worker, item or request is as it is. Its
// request_id is a subject to explain, not one this call adds.
func (c *Client) Explain(ctx context.Context, r *rationv1.ExplainRequest) (*rationv1.ExplainResponse, error) {
	return call(ctx, c, r, false, func(n *node) rpcFunc[rationv1.ExplainRequest, rationv1.ExplainResponse] { return n.insight.Explain })
}

// WatchActivity streams activity records as they are applied, until the
// server ends the stream, ctx ends, or each returns an error.
func (c *Client) WatchActivity(ctx context.Context, r *rationv1.WatchActivityRequest, each func(*rationv1.WatchActivityResponse) error) error {
	return stream(ctx, c, r, func(n *node) streamFunc[rationv1.WatchActivityRequest, rationv1.WatchActivityResponse] {
		return n.insight.WatchActivity
	}, each)
}

// Status reads the answering node's view of the cluster.
func (c *Client) Status(ctx context.Context, r *rationv1.StatusRequest) (*rationv1.StatusResponse, error) {
	return call(ctx, c, r, false, func(n *node) rpcFunc[rationv1.StatusRequest, rationv1.StatusResponse] { return n.cluster.Status })
}

// Join adds a node to the cluster.
func (c *Client) Join(ctx context.Context, r *rationv1.JoinRequest) (*rationv1.JoinResponse, error) {
	return call(ctx, c, r, true, func(n *node) rpcFunc[rationv1.JoinRequest, rationv1.JoinResponse] { return n.cluster.Join })
}

// Remove takes a node out of the cluster.
func (c *Client) Remove(ctx context.Context, r *rationv1.RemoveRequest) (*rationv1.RemoveResponse, error) {
	return call(ctx, c, r, true, func(n *node) rpcFunc[rationv1.RemoveRequest, rationv1.RemoveResponse] { return n.cluster.Remove })
}

// TransferLeadership moves leadership.
func (c *Client) TransferLeadership(ctx context.Context, r *rationv1.TransferLeadershipRequest) (*rationv1.TransferLeadershipResponse, error) {
	return call(ctx, c, r, true, func(n *node) rpcFunc[rationv1.TransferLeadershipRequest, rationv1.TransferLeadershipResponse] {
		return n.cluster.TransferLeadership
	})
}

// SaveSnapshot streams a fresh snapshot of the state machine.
func (c *Client) SaveSnapshot(ctx context.Context, r *rationv1.SaveSnapshotRequest, each func(*rationv1.SaveSnapshotResponse) error) error {
	return stream(ctx, c, r, func(n *node) streamFunc[rationv1.SaveSnapshotRequest, rationv1.SaveSnapshotResponse] {
		return n.cluster.SaveSnapshot
	}, each)
}

// Restore replaces the whole cluster's state with a snapshot's. It has no
// request id, and a restore repeated after it took effect would undo every
// write made in between, so Restore moves to another node only when a node
// cannot be reached at all; any other failure comes back at once.
func (c *Client) Restore(ctx context.Context, r *rationv1.RestoreRequest) (*rationv1.RestoreResponse, error) {
	var out *rationv1.RestoreResponse
	err := c.do(ctx, func(ctx context.Context, n *node) (err error) {
		out, err = once(ctx, c, n, r, func(n *node) rpcFunc[rationv1.RestoreRequest, rationv1.RestoreResponse] { return n.cluster.Restore })
		if err != nil && !unreached(err) {
			return final{err}
		}
		return err
	})
	return out, err
}
