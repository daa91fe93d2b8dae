package client

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"connectrpc.com/connect"

	rationv1 "github.com/rationhq/ration/api/ration/v1"
)

// ProcessFunc does the work of one bucket and returns a result per item it
// finished; items left out go back to the pool. It should stop when ctx is
// done: that means the lease was lost.
type ProcessFunc func(ctx context.Context, b *rationv1.LeasedBucket) ([]*rationv1.ResultInput, error)

// Worker is the worker loop: register, acquire, heartbeat while
// processing, submit, release on error, and wait when there is no work.
type Worker struct {
	Client   *Client
	Service  string
	WorkerID string
	Name     string
	// MaxBuckets per Acquire (default 1).
	MaxBuckets uint32
	// HeartbeatEvery is the heartbeat period while processing (default
	// 30s); keep it well under the service's lease_ttl.
	HeartbeatEvery time.Duration
	// IdleWait is the pause when no bucket is available (default 5s).
	IdleWait time.Duration
	Process  ProcessFunc
	// OnError, if set, sees errors the loop survives (it logs nothing itself).
	OnError func(error)
}

// Run works until ctx is done or registration is refused for good. It
// returns nil when ctx ends.
func (w *Worker) Run(ctx context.Context) error {
	if w.Process == nil || w.Client == nil {
		return errors.New("client: Worker needs a Client and a Process function")
	}
	if err := w.register(ctx); err != nil {
		return err
	}
	for ctx.Err() == nil {
		acq, err := w.Client.Acquire(ctx, &rationv1.AcquireRequest{Service: w.Service, WorkerId: w.WorkerID, MaxBuckets: max(w.MaxBuckets, 1)})
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			if Reason(err) == "WORKER_INACTIVE" {
				if err := w.register(ctx); err != nil {
					return err
				}
				continue
			}
			w.report(fmt.Errorf("acquire: %w", err))
			w.sleep(ctx, w.idle())
			continue
		}
		if len(acq.Buckets) == 0 {
			w.sleep(ctx, w.idle())
			continue
		}
		for _, b := range acq.Buckets {
			w.work(ctx, b)
		}
	}
	return nil
}

func (w *Worker) register(ctx context.Context) error {
	for {
		_, err := w.Client.Register(ctx, &rationv1.RegisterRequest{Service: w.Service, WorkerId: w.WorkerID, Name: w.Name})
		switch {
		case err == nil, ctx.Err() != nil:
			return nil
		case connect.CodeOf(err) == connect.CodeUnauthenticated, Reason(err) == "WORKER_DEACTIVATED", connect.CodeOf(err) == connect.CodeInvalidArgument:
			return fmt.Errorf("register: %w", err)
		}
		// Not there yet, revoked, or no leader: wait for the service.
		w.report(fmt.Errorf("register: %w", err))
		w.sleep(ctx, w.idle())
	}
}

// work processes one bucket under heartbeats, then submits or releases it.
func (w *Worker) work(ctx context.Context, b *rationv1.LeasedBucket) {
	pctx, cancel := context.WithCancel(ctx)
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		w.heartbeat(pctx, cancel, b)
	}()
	results, err := w.Process(pctx, b)
	lost := pctx.Err() != nil && ctx.Err() == nil
	cancel()
	wg.Wait()
	if ctx.Err() != nil {
		return
	}
	if lost {
		w.report(fmt.Errorf("bucket %d: lease lost while processing", b.Id))
		return
	}
	if err != nil || len(results) == 0 {
		if err != nil {
			w.report(fmt.Errorf("bucket %d: %w", b.Id, err))
		}
		if _, err := w.Client.Release(ctx, &rationv1.ReleaseRequest{WorkerId: w.WorkerID, BucketId: b.Id, Epoch: b.Lease.GetEpoch()}); err != nil {
			w.report(fmt.Errorf("release bucket %d: %w", b.Id, err))
		}
		return
	}
	if _, err := w.Client.Submit(ctx, &rationv1.SubmitRequest{WorkerId: w.WorkerID, BucketId: b.Id, Epoch: b.Lease.GetEpoch(), Results: results}); err != nil {
		w.report(fmt.Errorf("submit bucket %d: %w", b.Id, err))
	}
}

// heartbeat extends the lease until ctx ends, and cancels the processing
// when the lease is lost.
func (w *Worker) heartbeat(ctx context.Context, lost context.CancelFunc, b *rationv1.LeasedBucket) {
	every := w.HeartbeatEvery
	if every <= 0 {
		every = 30 * time.Second
	}
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		res, err := w.Client.Heartbeat(ctx, &rationv1.HeartbeatRequest{WorkerId: w.WorkerID,
			Buckets: []*rationv1.BucketRef{{Id: b.Id, Epoch: b.Lease.GetEpoch()}}})
		if err != nil {
			if ctx.Err() == nil {
				w.report(fmt.Errorf("heartbeat bucket %d: %w", b.Id, err))
			}
			continue
		}
		if o := res.GetBuckets(); len(o) == 1 && o[0].GetErrorReason() != "" {
			w.report(fmt.Errorf("heartbeat bucket %d: %s: %s", b.Id, o[0].GetErrorReason(), o[0].GetErrorMessage()))
			lost()
			return
		}
	}
}

func (w *Worker) idle() time.Duration {
	if w.IdleWait > 0 {
		return w.IdleWait
	}
	return 5 * time.Second
}

func (w *Worker) sleep(ctx context.Context, d time.Duration) {
	select {
	case <-ctx.Done():
	case <-time.After(d):
	}
}

func (w *Worker) report(err error) {
	if w.OnError != nil {
		w.OnError(err)
	}
}

// Detail returns the ErrorDetail ration attached to err (its reason and
// the node that answered), or nil.
func Detail(err error) *rationv1.ErrorDetail {
	ce, ok := errors.AsType[*connect.Error](err)
	if !ok {
		return nil
	}
	for _, d := range ce.Details() {
		if v, err := d.Value(); err == nil {
			if ed, ok := v.(*rationv1.ErrorDetail); ok {
				return ed
			}
		}
	}
	return nil
}

// Reason returns the machine-readable reason ration attached to err (e.g.
// "LEASE_LOST"), or "".
func Reason(err error) string { return Detail(err).GetReason() }
