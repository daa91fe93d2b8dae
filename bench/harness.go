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

	s := newRoundState(r, p, rc, label)
	if err := s.fill(ctx); err != nil {
		return res, fmt.Errorf("%s: fill the pool: %w", sys.Name(), err)
	}

	wctx, stop := context.WithCancel(ctx)
	defer stop()
	s.mStart = time.Now().Add(rc.Warmup)
	s.mEnd = s.mStart.Add(rc.Duration)
	var wg sync.WaitGroup
	s.startOwners(wctx, &wg)
	stats := s.startWorkers(wctx, &wg)

	// Wait for the warm-up, then measure, printing progress.
	if !sleepCtx(ctx, time.Until(s.mStart)) {
		stop()
		wg.Wait()
		return res, ctx.Err()
	}
	win := s.measure(ctx)
	stop()
	wg.Wait()
	if ctx.Err() != nil {
		return res, ctx.Err()
	}
	s.fillResult(&res, win, stats)
	return res, nil
}

// roundState is what the owner, the workers and the measuring loop of one
// round share; the counters are atomics because all of them run at once.
type roundState struct {
	r     round
	p     roundParams
	rc    runConfig
	label string

	// The owner keeps the pool at least lowWater buckets ahead of the
	// workers, with up to ownerAdders adds in flight when it falls behind.
	lowWater int64
	perChunk int64 // buckets per owner add
	idMu     sync.Mutex
	nextID   int64
	addMu    sync.Mutex
	addLat   []time.Duration

	added, inflight, acquired, ownerErrs atomic.Int64
	poolMin                              atomic.Int64

	// Throughput counts submits completed in [mStart, mEnd); latencies are
	// sampled from mStart on, errors and empty acquires while measuring.
	mStart, mEnd time.Time
	measuring    atomic.Bool

	items, buckets, empty, errs atomic.Int64
	acqSum, acqN, subSum, subN  atomic.Int64 // for progress lines
}

// newRoundState sizes the owner's low-water mark to four acquires per worker
// plus a margin, so that the workers, not the owner, set the pace.
func newRoundState(r round, p roundParams, rc runConfig, label string) *roundState {
	s := &roundState{r: r, p: p, rc: rc, label: label,
		lowWater: int64(4*p.Workers*p.PerAcquire + 200),
		perChunk: int64((p.Chunk + p.BucketSize - 1) / p.BucketSize),
		nextID:   1_000_000_000_000,
	}
	s.poolMin.Store(1 << 62)
	return s
}

// chunk returns the next p.Chunk ids, unique within the round.
func (s *roundState) chunk() []string {
	s.idMu.Lock()
	defer s.idMu.Unlock()
	ids := make([]string, s.p.Chunk)
	for i := range ids {
		ids[i] = strconv.FormatInt(s.nextID, 10)
		s.nextID++
	}
	return ids
}

// addOne makes the owner add one chunk, counting it as in flight meanwhile
// so that concurrent adders do not overshoot the low-water mark.
func (s *roundState) addOne(ctx context.Context) error {
	s.inflight.Add(s.perChunk)
	defer s.inflight.Add(-s.perChunk)
	t0 := time.Now()
	n, err := s.r.Add(ctx, s.chunk())
	if err != nil {
		return err
	}
	s.addMu.Lock()
	s.addLat = append(s.addLat, time.Since(t0))
	s.addMu.Unlock()
	s.added.Add(int64(n))
	return nil
}

// pending is the pool's size as the owner plans it: added or being added,
// not yet acquired.
func (s *roundState) pending() int64 { return s.added.Load() + s.inflight.Load() - s.acquired.Load() }

// fill adds chunks until the pool reaches the low-water mark, before any
// worker starts.
func (s *roundState) fill(ctx context.Context) error {
	for s.added.Load() < s.lowWater {
		if err := s.addOne(ctx); err != nil {
			return err
		}
	}
	return nil
}

// startOwners starts the owner's ownerAdders goroutines: untimed, they keep
// up with demand until ctx ends.
func (s *roundState) startOwners(ctx context.Context, wg *sync.WaitGroup) {
	for range ownerAdders {
		wg.Add(1)
		go func() {
			defer wg.Done()
			s.own(ctx)
		}()
	}
}

// own is one owner goroutine's loop; it also samples the pool's minimum
// while measuring.
func (s *roundState) own(ctx context.Context) {
	for ctx.Err() == nil {
		if s.measuring.Load() {
			if v := s.added.Load() - s.acquired.Load(); v < s.poolMin.Load() {
				s.poolMin.Store(v) // racy minimum: good enough for a gauge
			}
		}
		if s.pending() >= s.lowWater {
			time.Sleep(2 * time.Millisecond)
			continue
		}
		if err := s.addOne(ctx); err != nil && ctx.Err() == nil {
			s.ownerErrs.Add(1)
			fmt.Fprintf(s.rc.Log, "  %s: owner add: %v\n", s.label, err)
			time.Sleep(50 * time.Millisecond)
		}
	}
}

// startWorkers starts p.Workers goroutines running the bucket cycle until
// ctx ends; each records into its own workerStats.
func (s *roundState) startWorkers(ctx context.Context, wg *sync.WaitGroup) []*workerStats {
	stats := make([]*workerStats, s.p.Workers)
	for i := range s.p.Workers {
		ws := &workerStats{errs: map[string]int64{}}
		stats[i] = ws
		w := s.r.Worker(i)
		wg.Add(1)
		go func() {
			defer wg.Done()
			s.work(ctx, w, ws)
		}()
	}
	return stats
}

// work is one worker's bucket cycle: acquire, then submit every bucket got.
func (s *roundState) work(ctx context.Context, w worker, ws *workerStats) {
	for ctx.Err() == nil {
		t0 := time.Now()
		bs, err := w.Acquire(ctx, s.p.PerAcquire)
		t1 := time.Now()
		s.acquired.Add(int64(len(bs)))
		if ctx.Err() != nil {
			return
		}
		if err != nil {
			s.fail(ws, err)
			if len(bs) == 0 {
				time.Sleep(10 * time.Millisecond)
				continue
			}
		} else if !t0.Before(s.mStart) {
			ws.acq = append(ws.acq, t1.Sub(t0))
			s.acqSum.Add(int64(t1.Sub(t0)))
			s.acqN.Add(1)
		}
		if len(bs) == 0 {
			if s.measuring.Load() {
				s.empty.Add(1)
			}
			time.Sleep(2 * time.Millisecond)
			continue
		}
		if !s.submitAll(ctx, w, ws, bs) {
			return
		}
	}
}

// submitAll submits bs one by one; it reports false once ctx has ended.
// A bucket counts if its submit completed inside the measured window.
func (s *roundState) submitAll(ctx context.Context, w worker, ws *workerStats, bs []bucket) bool {
	for _, b := range bs {
		t2 := time.Now()
		err := w.Submit(ctx, b)
		t3 := time.Now()
		if ctx.Err() != nil {
			return false
		}
		if err != nil {
			s.fail(ws, err)
			continue
		}
		if !t2.Before(s.mStart) {
			ws.sub = append(ws.sub, t3.Sub(t2))
			s.subSum.Add(int64(t3.Sub(t2)))
			s.subN.Add(1)
		}
		if !t3.Before(s.mStart) && t3.Before(s.mEnd) {
			s.items.Add(int64(len(b.items)))
			s.buckets.Add(1)
		}
	}
	return true
}

// fail counts a worker's error by class, while measuring.
func (s *roundState) fail(ws *workerStats, err error) {
	if s.measuring.Load() {
		ws.errs[s.r.ErrClass(err)]++
		s.errs.Add(1)
	}
}

// window is what measure read at the two ends of the measured window.
type window struct {
	end                  time.Time
	cpu0, cpu1           time.Duration
	counters0, counters1 map[string]int64
	added0               int64
}

// measure runs the measured window, from now (mStart) to mEnd or until
// ctx ends, printing progress lines.
func (s *roundState) measure(ctx context.Context) window {
	s.measuring.Store(true)
	w := window{cpu0: cpuTime(), counters0: s.r.Counters(), added0: s.added.Load()}
	s.progress(ctx)
	w.end = time.Now()
	s.measuring.Store(false)
	w.cpu1 = cpuTime()
	w.counters1 = s.r.Counters()
	return w
}

// progress prints, every rc.Progress until mEnd or until ctx ends, the
// rates and mean latencies since the previous line.
func (s *roundState) progress(ctx context.Context) {
	tick := time.NewTicker(s.rc.Progress)
	defer tick.Stop()
	last, lastItems, lastBuckets := s.mStart, int64(0), int64(0)
	var lastAcq, lastAcqN, lastSub, lastSubN int64
	for interrupted := false; !interrupted && time.Now().Before(s.mEnd); {
		select {
		case <-ctx.Done():
			interrupted = true
		case <-time.After(time.Until(s.mEnd)):
		case now := <-tick.C:
			it, bk := s.items.Load(), s.buckets.Load()
			as, an, ss, sn := s.acqSum.Load(), s.acqN.Load(), s.subSum.Load(), s.subN.Load()
			dt := now.Sub(last).Seconds()
			fmt.Fprintf(s.rc.Log, "  %-22s t=%4.1fs items/s=%8.0f buckets/s=%7.1f acquire=%6.2fms submit=%6.2fms errors=%d empty=%d pool=%d\n",
				s.label, now.Sub(s.mStart).Seconds(), float64(it-lastItems)/dt, float64(bk-lastBuckets)/dt,
				meanMS(as-lastAcq, an-lastAcqN), meanMS(ss-lastSub, sn-lastSubN), s.errs.Load(), s.empty.Load(),
				s.added.Load()-s.acquired.Load())
			last, lastItems, lastBuckets = now, it, bk
			lastAcq, lastAcqN, lastSub, lastSubN = as, an, ss, sn
		}
	}
}

// fillResult puts the round's measurements into res.
func (s *roundState) fillResult(res *roundResult, win window, stats []*workerStats) {
	secs := win.end.Sub(s.mStart).Seconds()
	res.Seconds = secs
	res.Items, res.Buckets = s.items.Load(), s.buckets.Load()
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
	res.EmptyAcquires = s.empty.Load()
	res.AddedBuckets = s.added.Load() - win.added0
	res.OwnerErrors = s.ownerErrs.Load()
	res.PoolMin = s.poolMin.Load()
	res.OwnerAdd = percentiles(s.addLat)
	res.CPUPercent = 100 * (win.cpu1 - win.cpu0).Seconds() / secs
	if len(win.counters1) > 0 {
		res.Counters = map[string]int64{}
		for k, v := range win.counters1 {
			res.Counters[k] = v - win.counters0[k]
		}
	}
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
