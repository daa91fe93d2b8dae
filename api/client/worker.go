package client

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"slices"
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
	// HeartbeatEvery is the heartbeat period while it holds leases
	// (default 30s): every lease of an Acquire is kept alive, those waiting
	// their turn too, and a node that does not answer a heartbeat within
	// half a period is left for another. Keep it well under the service's
	// lease_ttl.
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
		w.workAll(ctx, acq.Buckets)
	}
	return nil
}

// workAll works through the buckets of one Acquire in turn while one
// heartbeat loop keeps every lease still held alive, those waiting their
// turn too.
func (w *Worker) workAll(ctx context.Context, buckets []*rationv1.LeasedBucket) {
	hctx, stop := context.WithCancel(ctx)
	h := &held{leases: map[uint64]*heldLease{}}
	for _, b := range buckets {
		pctx, lost := context.WithCancel(ctx)
		h.leases[b.Id] = &heldLease{ref: &rationv1.BucketRef{Id: b.Id, Epoch: b.Lease.GetEpoch()}, ctx: pctx, lost: lost}
	}
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		w.heartbeat(hctx, h)
	}()
	for _, b := range buckets {
		w.work(ctx, h, b)
	}
	stop()
	wg.Wait()
}

// held are the leases of one Acquire not yet submitted or released.
type held struct {
	mu     sync.Mutex
	leases map[uint64]*heldLease
}

type heldLease struct {
	ref  *rationv1.BucketRef
	ctx  context.Context // ends when the lease is lost
	lost context.CancelFunc
}

// refs are the leases to heartbeat, in bucket order.
func (h *held) refs() []*rationv1.BucketRef {
	h.mu.Lock()
	defer h.mu.Unlock()
	var out []*rationv1.BucketRef
	for _, l := range h.leases {
		out = append(out, l.ref)
	}
	slices.SortFunc(out, func(a, b *rationv1.BucketRef) int { return cmp.Compare(a.Id, b.Id) })
	return out
}

// drop stops heartbeating a bucket; with lost set, its work stops too.
func (h *held) drop(id uint64, lost bool) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if l, ok := h.leases[id]; ok {
		delete(h.leases, id)
		if lost {
			l.lost()
		}
	}
}

func (h *held) get(id uint64) *heldLease {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.leases[id]
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

// work processes one bucket, which the heartbeat loop keeps leased, then
// submits or releases it.
func (w *Worker) work(ctx context.Context, h *held, b *rationv1.LeasedBucket) {
	l := h.get(b.Id)
	if l == nil {
		return // lost while it waited its turn (reported by the heartbeat)
	}
	results, err := w.Process(l.ctx, b)
	lost := l.ctx.Err() != nil && ctx.Err() == nil
	h.drop(b.Id, false)
	l.lost() // releases the context
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

// heartbeat extends the held leases until ctx ends, and stops the work of
// a bucket whose lease is lost.
func (w *Worker) heartbeat(ctx context.Context, h *held) {
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
		refs := h.refs()
		if len(refs) == 0 {
			continue
		}
		// A node that does not answer within half a period is left for the
		// next: waiting out the call timeout on a frozen node could cost
		// the leases.
		actx := withAttemptTimeout(ctx, max(every/2, 100*time.Millisecond))
		res, err := w.Client.Heartbeat(actx, &rationv1.HeartbeatRequest{WorkerId: w.WorkerID, Buckets: refs})
		if err != nil {
			if ctx.Err() == nil {
				w.report(fmt.Errorf("heartbeat %d buckets: %w", len(refs), err))
			}
			continue
		}
		for _, o := range res.GetBuckets() {
			if o.GetErrorReason() != "" && h.get(o.GetBucketId()) != nil {
				w.report(fmt.Errorf("heartbeat bucket %d: %s: %s", o.GetBucketId(), o.GetErrorReason(), o.GetErrorMessage()))
				h.drop(o.GetBucketId(), true)
			}
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
