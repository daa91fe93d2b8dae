package client

import (
	"context"
	"errors"
	"fmt"
	"time"

	rationv1 "github.com/rationhq/ration/api/ration/v1"
)

// Export describes how to take a service's results out of the cluster:
// stream them (ExportResults), store them, and acknowledge what is stored
// (AckResults), so that nothing is acknowledged that was not stored. It is
// at-least-once: after a crash, results stored but not yet acknowledged
// come again, so Store should be idempotent (key them by seq or item).
type Export struct {
	Service string
	// After resumes after this result batch seq (0: from the first).
	After uint64
	// FromAcknowledged starts after the service's acknowledged position
	// (GetService's export.acked_through) instead of After: where the last
	// consumer that acknowledged left off.
	FromAcknowledged bool
	// Follow keeps streaming new results until the context ends; a broken
	// stream is resumed, on any node, after the last batch stored.
	Follow bool
	// Store takes one batch of results. It must not return before they are
	// stored as far as Sync goes; an error ends the export.
	Store func(*rationv1.ExportResultsResponse) error
	// Sync, if set, makes everything Store took durable; it runs before
	// each acknowledgment.
	Sync func() error
	// AckEvery is how often, at most, to acknowledge what is stored while
	// the export runs; it always acknowledges when it ends. 0 never
	// acknowledges.
	AckEvery time.Duration
}

// Export takes a service's results out as e describes and returns the seq
// of the last batch stored (where it started, when none was). With Follow
// it runs until ctx ends, and that is no error.
func (c *Client) Export(ctx context.Context, e Export) (last uint64, err error) {
	if e.Store == nil {
		return 0, errors.New("client: Export needs a Store")
	}
	last = e.After
	if e.FromAcknowledged {
		svc, err := c.GetService(ctx, &rationv1.GetServiceRequest{Name: e.Service})
		if err != nil {
			return 0, err
		}
		last = svc.GetService().GetExport().GetAckedThrough()
	}
	x := &exporter{c: c, e: e, last: last, acked: last, lastAck: time.Now()}
	err = x.run(ctx)
	// What was stored is acknowledged even when the export stops, on an
	// error of its own or because ctx ended.
	if aerr := x.ack(context.WithoutCancel(ctx), true); err == nil {
		err = aerr
	}
	if e.Follow && ctx.Err() != nil && errors.Is(err, ctx.Err()) {
		err = nil
	}
	return x.last, err
}

type exporter struct {
	c           *Client
	e           Export
	last, acked uint64
	lastAck     time.Time
}

// run streams until the export is done: the end of the results, or of ctx
// when following, which resumes a stream that broke.
func (x *exporter) run(ctx context.Context) error {
	for {
		var own error // the export's own failure: never retried
		req := &rationv1.ExportResultsRequest{Service: x.e.Service, AfterSeq: x.last, Follow: x.e.Follow}
		err := x.c.ExportResults(ctx, req, func(m *rationv1.ExportResultsResponse) error {
			if err := x.e.Store(m); err != nil {
				own = fmt.Errorf("store results through seq %d: %w", m.GetSeq(), err)
				return own
			}
			x.last = m.GetSeq()
			own = x.ack(ctx, false)
			return own
		})
		if own != nil {
			return own
		}
		if !x.e.Follow || ctx.Err() != nil || !Retryable(err) {
			return err
		}
		// The stream broke (a node went away): resume after what is stored.
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(time.Second):
		}
	}
}

// ack acknowledges what is stored, when AckEvery has passed since the last
// acknowledgment or final is set.
func (x *exporter) ack(ctx context.Context, final bool) error {
	if x.e.AckEvery <= 0 || x.last <= x.acked || (!final && time.Since(x.lastAck) < x.e.AckEvery) {
		return nil
	}
	if x.e.Sync != nil {
		if err := x.e.Sync(); err != nil {
			return fmt.Errorf("sync results through seq %d: %w", x.last, err)
		}
	}
	if _, err := x.c.AckResults(ctx, &rationv1.AckResultsRequest{Service: x.e.Service, ThroughSeq: x.last}); err != nil {
		return fmt.Errorf("acknowledge results through seq %d: %w", x.last, err)
	}
	x.acked, x.lastAck = x.last, time.Now()
	return nil
}
