package main

import (
	"context"
	"fmt"
	"io"
	"maps"
	"math/rand/v2"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

// A system is one of the two coordinators under test, already running.
type system interface {
	Name() string
	// NewRound prepares an empty pool (a fresh service or key prefix) and
	// p.Workers registered workers. Nothing in it is timed.
	NewRound(ctx context.Context, p roundParams) (round, error)
	Close() error
}

// A round is one pool with its workers.
type round interface {
	// Add puts ids into the pool as the owner does and returns how many
	// buckets they made. Not timed.
	Add(ctx context.Context, ids []string) (buckets int, err error)
	// Worker returns worker i (0 <= i < Workers); each is used by one goroutine.
	Worker(i int) worker
	// Counters returns extra cumulative counters (e.g. lost compares).
	Counters() map[string]int64
	// ErrClass names the class of an error for the errors-by-code table.
	ErrClass(err error) string
	// Close ends the round (leases, keep-alives, sweepers). Not timed.
	Close()
}

// A worker runs the bucket cycle's two timed steps.
type worker interface {
	// Acquire claims up to n buckets; none available is an empty answer.
	// It may return buckets together with an error (some were claimed).
	Acquire(ctx context.Context, n int) ([]bucket, error)
	// Submit stores a result (verdict + payload) for every item of b.
	Submit(ctx context.Context, b bucket) error
}

type bucket struct {
	items []string
	ref   any // the system's lease handle
}

// ownerAdders is how many adds the owner may have in flight.
const ownerAdders = 4

type roundParams struct {
	Seq        int    // unique per system and round: names the service or prefix
	Workers    int    // concurrent workers
	PerAcquire int    // buckets asked per acquire
	BucketSize int    // items per bucket
	Chunk      int    // ids per owner add
	Payload    string // payload of one item's result
}

// latStats are percentiles of one operation's latency in milliseconds.
type latStats struct {
	Count int64   `json:"count"`
	P50   float64 `json:"p50_ms"`
	P99   float64 `json:"p99_ms"`
	P999  float64 `json:"p999_ms"`
}

type roundResult struct {
	System        string           `json:"system"`
	Workers       int              `json:"workers"`
	Round         int              `json:"round"`
	Seconds       float64          `json:"seconds"`
	Items         int64            `json:"items"`
	Buckets       int64            `json:"buckets"`
	ItemsPerSec   float64          `json:"items_per_sec"`
	BucketsPerSec float64          `json:"buckets_per_sec"`
	Acquire       latStats         `json:"acquire"`
	Submit        latStats         `json:"submit"`
	Errors        map[string]int64 `json:"errors"`
	EmptyAcquires int64            `json:"empty_acquires"`
	Counters      map[string]int64 `json:"counters,omitempty"`
	AddedBuckets  int64            `json:"added_buckets"`
	OwnerErrors   int64            `json:"owner_errors"`
	OwnerAdd      latStats         `json:"owner_add"` // untimed, shown to prove the owner kept up
	PoolMin       int64            `json:"pool_min_buckets"`
	CPUPercent    float64          `json:"cpu_percent"`
}

type runConfig struct {
	Warmup   time.Duration
	Duration time.Duration
	Progress time.Duration
	Log      io.Writer
}

// workerStats is one worker's record of the measured window.
type workerStats struct {
	acq, sub []time.Duration
	errs     map[string]int64
}

// runRound runs the bucket cycle on sys for one round and measures it.
func runRound(ctx context.Context, sys system, p roundParams, rc runConfig, label string) (roundResult, error) {
	res := roundResult{System: sys.Name(), Workers: p.Workers}
	r, err := sys.NewRound(ctx, p)
	if err != nil {
		return res, fmt.Errorf("%s: prepare round: %w", sys.Name(), err)
	}
	defer r.Close()

	// The owner keeps the pool at least this many buckets ahead of the
	// workers, with up to ownerAdders adds in flight when it falls behind.
	lowWater := int64(4*p.Workers*p.PerAcquire + 200)
	perChunk := int64((p.Chunk + p.BucketSize - 1) / p.BucketSize)
	var added, inflight, acquired, ownerErrs atomic.Int64
	var idMu sync.Mutex
	var nextID int64 = 1_000_000_000_000
	chunk := func() []string {
		idMu.Lock()
		defer idMu.Unlock()
		ids := make([]string, p.Chunk)
		for i := range ids {
			ids[i] = strconv.FormatInt(nextID, 10)
			nextID++
		}
		return ids
	}
	var addMu sync.Mutex
	var addLat []time.Duration
	addOne := func(ctx context.Context) error {
		inflight.Add(perChunk)
		defer inflight.Add(-perChunk)
		t0 := time.Now()
		n, err := r.Add(ctx, chunk())
		if err != nil {
			return err
		}
		addMu.Lock()
		addLat = append(addLat, time.Since(t0))
		addMu.Unlock()
		added.Add(int64(n))
		return nil
	}
	pending := func() int64 { return added.Load() + inflight.Load() - acquired.Load() }
	for added.Load() < lowWater {
		if err := addOne(ctx); err != nil {
			return res, fmt.Errorf("%s: fill the pool: %w", sys.Name(), err)
		}
	}

	wctx, stop := context.WithCancel(ctx)
	defer stop()
	start := time.Now()
	mStart := start.Add(rc.Warmup)
	mEnd := mStart.Add(rc.Duration)
	var measuring atomic.Bool
	var items, buckets, empty, errCount atomic.Int64
	var acqSum, acqN, subSum, subN atomic.Int64 // for progress lines

	var wg sync.WaitGroup
	// The owner: untimed, keeps up with demand.
	var poolMin atomic.Int64
	poolMin.Store(1 << 62)
	for range ownerAdders {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for wctx.Err() == nil {
				if measuring.Load() {
					if v := added.Load() - acquired.Load(); v < poolMin.Load() {
						poolMin.Store(v) // racy minimum: good enough for a gauge
					}
				}
				if pending() >= lowWater {
					time.Sleep(2 * time.Millisecond)
					continue
				}
				if err := addOne(wctx); err != nil && wctx.Err() == nil {
					ownerErrs.Add(1)
					fmt.Fprintf(rc.Log, "  %s: owner add: %v\n", label, err)
					time.Sleep(50 * time.Millisecond)
				}
			}
		}()
	}

	stats := make([]*workerStats, p.Workers)
	for i := range p.Workers {
		ws := &workerStats{errs: map[string]int64{}}
		stats[i] = ws
		w := r.Worker(i)
		wg.Add(1)
		go func() {
			defer wg.Done()
			fail := func(err error) {
				if measuring.Load() {
					ws.errs[r.ErrClass(err)]++
					errCount.Add(1)
				}
			}
			for wctx.Err() == nil {
				t0 := time.Now()
				bs, err := w.Acquire(wctx, p.PerAcquire)
				t1 := time.Now()
				acquired.Add(int64(len(bs)))
				if wctx.Err() != nil {
					return
				}
				if err != nil {
					fail(err)
					if len(bs) == 0 {
						time.Sleep(10 * time.Millisecond)
						continue
					}
				} else if !t0.Before(mStart) {
					ws.acq = append(ws.acq, t1.Sub(t0))
					acqSum.Add(int64(t1.Sub(t0)))
					acqN.Add(1)
				}
				if len(bs) == 0 {
					if measuring.Load() {
						empty.Add(1)
					}
					time.Sleep(2 * time.Millisecond)
					continue
				}
				for _, b := range bs {
					t2 := time.Now()
					err := w.Submit(wctx, b)
					t3 := time.Now()
					if wctx.Err() != nil {
						return
					}
					if err != nil {
						fail(err)
						continue
					}
					if !t2.Before(mStart) {
						ws.sub = append(ws.sub, t3.Sub(t2))
						subSum.Add(int64(t3.Sub(t2)))
						subN.Add(1)
					}
					if !t3.Before(mStart) && t3.Before(mEnd) {
						items.Add(int64(len(b.items)))
						buckets.Add(1)
					}
				}
			}
		}()
	}

	// Wait for the warm-up, then measure, printing progress.
	if !sleepCtx(ctx, time.Until(mStart)) {
		stop()
		wg.Wait()
		return res, ctx.Err()
	}
	measuring.Store(true)
	cpu0 := cpuTime()
	counters0 := r.Counters()
	added0 := added.Load()
	tick := time.NewTicker(rc.Progress)
	last, lastItems, lastBuckets := mStart, int64(0), int64(0)
	var lastAcq, lastAcqN, lastSub, lastSubN int64
	for interrupted := false; !interrupted && time.Now().Before(mEnd); {
		select {
		case <-ctx.Done():
			interrupted = true
		case <-time.After(time.Until(mEnd)):
		case now := <-tick.C:
			it, bk := items.Load(), buckets.Load()
			as, an, ss, sn := acqSum.Load(), acqN.Load(), subSum.Load(), subN.Load()
			dt := now.Sub(last).Seconds()
			fmt.Fprintf(rc.Log, "  %-22s t=%4.1fs items/s=%8.0f buckets/s=%7.1f acquire=%6.2fms submit=%6.2fms errors=%d empty=%d pool=%d\n",
				label, now.Sub(mStart).Seconds(), float64(it-lastItems)/dt, float64(bk-lastBuckets)/dt,
				meanMS(as-lastAcq, an-lastAcqN), meanMS(ss-lastSub, sn-lastSubN), errCount.Load(), empty.Load(),
				added.Load()-acquired.Load())
			last, lastItems, lastBuckets = now, it, bk
			lastAcq, lastAcqN, lastSub, lastSubN = as, an, ss, sn
		}
	}
	tick.Stop()
	end := time.Now()
	measuring.Store(false)
	cpu1 := cpuTime()
	counters1 := r.Counters()
	stop()
	wg.Wait()
	if ctx.Err() != nil {
		return res, ctx.Err()
	}

	secs := end.Sub(mStart).Seconds()
	res.Seconds = secs
	res.Items, res.Buckets = items.Load(), buckets.Load()
	res.ItemsPerSec, res.BucketsPerSec = float64(res.Items)/secs, float64(res.Buckets)/secs
	var acq, sub []time.Duration
	res.Errors = map[string]int64{}
	for _, ws := range stats {
		acq = append(acq, ws.acq...)
		sub = append(sub, ws.sub...)
		for k, v := range ws.errs {
			res.Errors[k] += v
		}
	}
	res.Acquire, res.Submit = percentiles(acq), percentiles(sub)
	res.EmptyAcquires = empty.Load()
	res.AddedBuckets = added.Load() - added0
	res.OwnerErrors = ownerErrs.Load()
	res.PoolMin = poolMin.Load()
	res.OwnerAdd = percentiles(addLat)
	res.CPUPercent = 100 * (cpu1 - cpu0).Seconds() / secs
	if len(counters1) > 0 {
		res.Counters = map[string]int64{}
		for k, v := range counters1 {
			res.Counters[k] = v - counters0[k]
		}
	}
	return res, nil
}

func meanMS(sum, n int64) float64 {
	if n == 0 {
		return 0
	}
	return float64(sum) / float64(n) / 1e6
}

func percentiles(d []time.Duration) latStats {
	if len(d) == 0 {
		return latStats{}
	}
	slices.Sort(d)
	at := func(q float64) float64 {
		i := int(q * float64(len(d)))
		if i >= len(d) {
			i = len(d) - 1
		}
		return float64(d[i]) / 1e6
	}
	return latStats{Count: int64(len(d)), P50: at(0.50), P99: at(0.99), P999: at(0.999)}
}

// cpuTime is the process's user+system CPU time so far.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// sleepCtx sleeps for d and reports whether ctx is still alive.
func sleepCtx(ctx context.Context, d time.Duration) bool {
	if d <= 0 {
		return ctx.Err() == nil
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}

// payloadOf returns a printable, incompressible-looking payload of n bytes.
func payloadOf(n int) string {
	const alphabet = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"
	r := rand.New(rand.NewPCG(1, 2))
	b := make([]byte, n)
	for i := range b {
		b[i] = alphabet[r.IntN(len(alphabet))]
	}
	return string(b)
}

func sortedKeys[V any](m map[string]V) []string { return slices.Sorted(maps.Keys(m)) }
