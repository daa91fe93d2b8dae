package cluster

import (
	"context"
	"errors"
	"sync"
	"time"

	rationv1 "github.com/rationhq/ration/api/ration/v1"
)

// coalescer gathers heartbeat entries that arrive within a short window and
// proposes them as one HeartbeatBatch, handing each caller its own entry's
// result.
type coalescer struct {
	n      *Node
	window time.Duration
	mu     sync.Mutex
	queue  []*pendingBeat
	kick   chan struct{}
}

type pendingBeat struct {
	entry *rationv1.HeartbeatEntry
	done  chan beatResult
}

type beatResult struct {
	res *rationv1.CommandResult
	err error
}

// maxBeatsPerCommand bounds one coalesced command.
const maxBeatsPerCommand = 2000

func newCoalescer(n *Node, window time.Duration) *coalescer {
	if window <= 0 {
		window = time.Millisecond
	}
	return &coalescer{n: n, window: window, kick: make(chan struct{}, 1)}
}

func (c *coalescer) submit(ctx context.Context, e *rationv1.HeartbeatEntry) (*rationv1.CommandResult, error) {
	p := &pendingBeat{entry: e, done: make(chan beatResult, 1)}
	c.mu.Lock()
	c.queue = append(c.queue, p)
	c.mu.Unlock()
	select {
	case c.kick <- struct{}{}:
	default:
	}
	select {
	case r := <-p.done:
		return r.res, r.err
	case <-ctx.Done():
		return nil, errors.Join(ErrOutcomeUnknown, ctx.Err())
	}
}

func (c *coalescer) run(stop <-chan struct{}, wg *sync.WaitGroup) {
	defer wg.Done()
	for {
		select {
		case <-stop:
			c.flush(ErrShutdown)
			return
		case <-c.kick:
		}
		// Wait a little for more heartbeats to arrive, then propose them all.
		select {
		case <-stop:
			c.flush(ErrShutdown)
			return
		case <-time.After(c.window):
		}
		c.flush(nil)
	}
}

func (c *coalescer) flush(fail error) {
	for {
		c.mu.Lock()
		batch := c.queue
		if len(batch) > maxBeatsPerCommand {
			batch = batch[:maxBeatsPerCommand]
		}
		c.queue = c.queue[len(batch):]
		c.mu.Unlock()
		if len(batch) == 0 {
			return
		}
		if fail != nil {
			for _, p := range batch {
				p.done <- beatResult{err: fail}
			}
			continue
		}
		hb := &rationv1.HeartbeatBatch{Entries: make([]*rationv1.HeartbeatEntry, len(batch))}
		for i, p := range batch {
			hb.Entries[i] = p.entry
		}
		ctx, cancel := context.WithTimeout(context.Background(), c.n.cfg.ApplyTimeout)
		res, err := c.n.Apply(ctx, &rationv1.Command{Header: &rationv1.CommandHeader{Actor: "system"},
			Op: &rationv1.Command_Heartbeat{Heartbeat: hb}})
		cancel()
		entries := res.GetHeartbeat().GetEntries()
		for i, p := range batch {
			switch {
			case err != nil:
				p.done <- beatResult{err: err}
			case i < len(entries):
				p.done <- beatResult{res: entries[i]}
			default:
				p.done <- beatResult{err: errors.New("heartbeat batch answered fewer entries than it had")}
			}
		}
	}
}
