package server

import (
	"context"
	"errors"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"connectrpc.com/connect"
)

// DefaultProbeInterval is how often a node asks the leader for its commit
// index (Config.ProbeInterval): what readiness and the staleness bound of
// STALE reads are measured against.
const DefaultProbeInterval = 250 * time.Millisecond

// keepProbes is how many recent probes a node keeps: enough to bound the
// staleness of a state a few seconds behind.
const keepProbes = 16

// probe is one answer from the leader: its read index (its commit index,
// confirmed by a quorum) and when this node asked. A write acknowledged
// before at was committed at an index no higher, so a state that has
// applied index holds every write acknowledged before at.
type probe struct {
	at    time.Time
	index uint64
}

// freshness keeps the latest probes, oldest first. Readers (STALE reads,
// /readyz) load them without a lock; the prober, the one writer, replaces
// the list.
type freshness struct {
	mu      sync.Mutex // writers
	probes  atomic.Pointer[[]probe]
	lastErr atomic.Pointer[string]
}

func (f *freshness) list() []probe {
	if p := f.probes.Load(); p != nil {
		return *p
	}
	return nil
}

// record keeps p, and forgets probes that are older and at a higher index
// (concurrent probes can finish out of order).
func (f *freshness) record(p probe) {
	f.mu.Lock()
	defer f.mu.Unlock()
	old := f.list()
	out := make([]probe, 0, keepProbes)
	for _, q := range old[max(0, len(old)-keepProbes+1):] {
		if !(q.at.Before(p.at) && q.index > p.index) {
			out = append(out, q)
		}
	}
	out = append(out, p)
	slices.SortFunc(out, func(a, b probe) int { return a.at.Compare(b.at) })
	f.probes.Store(&out)
	f.lastErr.Store(nil)
}

func (f *freshness) failed(err error) {
	s := err.Error()
	if ce := new(connect.Error); errors.As(err, &ce) {
		s = ce.Message()
	}
	f.lastErr.Store(&s)
}

// staleness bounds how stale a state that has applied index applied is:
// the time since the newest probe it has applied was asked; ok is false if
// it has applied none of the probes kept.
func (f *freshness) staleness(applied uint64, now time.Time) (d time.Duration, ok bool) {
	ps := f.list()
	for i := len(ps) - 1; i >= 0; i-- {
		if ps[i].index <= applied {
			return max(now.Sub(ps[i].at), 0), true
		}
	}
	return 0, false
}

// latest returns the newest probe, if any.
func (f *freshness) latest() (probe, bool) {
	ps := f.list()
	if len(ps) == 0 {
		return probe{}, false
	}
	return ps[len(ps)-1], true
}

// probeLeader asks the leader for its read index every ProbeInterval until
// stop closes.
func (s *Server) probeLeader(stop <-chan struct{}) {
	t := time.NewTicker(s.cfg.ProbeInterval)
	defer t.Stop()
	for {
		ctx, cancel := context.WithTimeout(context.Background(), probeTimeout)
		go func() {
			select {
			case <-stop:
				cancel()
			case <-ctx.Done():
			}
		}()
		at := time.Now()
		if idx, err := s.readIndex(ctx); err != nil {
			s.fresh.failed(err)
		} else {
			s.fresh.record(probe{at: at, index: idx})
		}
		cancel()
		select {
		case <-stop:
			return
		case <-t.C:
		}
	}
}

// probeTimeout bounds one probe: a leader that answers slower than this
// is not one to measure freshness against.
const probeTimeout = time.Second
