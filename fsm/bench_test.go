package fsm

import (
	"bytes"
	"fmt"
	"io"
	"runtime"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	statev1 "github.com/rationhq/ration/api/ration/state/v1"
	rationv1 "github.com/rationhq/ration/api/ration/v1"
)

// Benchmarks of the state machine. They drive it through the harness, as
// bytes through FSM.Apply, the way raft does; the harness's invariant checks
// are off because they read the whole state after every command. Each
// benchmark runs the invariants once at the end, outside the timer.
//
// Run them with:
//
//	go test ./fsm -run '^$' -bench . -benchtime 1s
//	go test ./fsm -run '^$' -bench 'TickExpire|Snapshot1M' -benchtime 2x

const benchService = "bench"

// benchHarness is a harness without per-command invariant checks.
func benchHarness(b *testing.B) *harness {
	h := newHarness(b)
	h.check = false
	return h
}

// benchIDs returns n item ids of 16 bytes, like account ids, numbered from
// from.
func benchIDs(prefix string, from, n int) []string {
	out := make([]string, n)
	for i := range out {
		out[i] = fmt.Sprintf("%s%012d", prefix, from+i)
	}
	return out
}

// benchAddAll adds ids in requests of at most DefaultMaxItemsPerAdd.
func benchAddAll(h *harness, service string, rerun bool, ids []string) {
	h.t.Helper()
	for len(ids) > 0 {
		n := min(len(ids), DefaultMaxItemsPerAdd)
		h.must(&rationv1.AddItemsRequest{Service: service, Items: ids[:n], Rerun: rerun})
		ids = ids[n:]
	}
}

// benchPending returns how many unassigned buckets a service has.
func benchPending(h *harness, service string) int {
	s, ok := h.f.State().Service(service)
	if !ok {
		h.t.Fatalf("service %q missing", service)
	}
	return int(s.Buckets[unassigned])
}

// benchCheck runs the invariants on the current state.
func benchCheck(h *harness) {
	h.t.Helper()
	if err := h.f.State().CheckInvariants(); err != nil {
		h.t.Fatalf("at index %d: %v", h.index, err)
	}
}

// BenchmarkApply_Acquire10: one op is one Acquire granting 10 buckets of 180
// items. The pool grows by AddItems to 3,000 buckets (540,000 items); after
// that it is refilled by releasing the held buckets, so memory stays bounded
// however long the benchmark runs. Refills are outside the timer.
func BenchmarkApply_Acquire10(b *testing.B) {
	b.ReportAllocs()
	const (
		perOp      = 10
		addBuckets = 1000 // buckets per AddItems refill
		maxBuckets = 3000 // beyond this, refill by releasing
	)
	h := benchHarness(b)
	h.createService(benchService, "dmcheck", &rationv1.ServiceConfig{BucketSize: 180, MaxLeasesPerWorker: MaxLeasesPerWorkerCap})
	h.register(benchService, "w1")
	cred := secret("w1")
	added := 0
	var held []*rationv1.LeasedBucket
	refill := func() {
		if added < maxBuckets*180 {
			benchAddAll(h, benchService, false, benchIDs("acct", added, addBuckets*180))
			added += addBuckets * 180
		} else {
			// Releases go in batches, one publish per 1,000, to keep the
			// refill cheap.
			for len(held) > 0 {
				n := min(len(held), 1000)
				batch := &statev1.CommandBatch{}
				for _, lb := range held[:n] {
					op := &rationv1.ReleaseRequest{WorkerId: "w1", BucketId: lb.Id, Epoch: lb.Lease.Epoch}
					batch.Commands = append(batch.Commands, h.command(op, "w1", cred, ""))
				}
				for _, r := range h.applyCmd(h.command(batch, "admin", nil, "")).GetBatch().GetResults() {
					if err := ResultError(r); err != nil {
						b.Fatalf("release: %v", err)
					}
				}
				held = held[n:]
			}
		}
	}
	refill()
	pending := benchPending(h, benchService)
	op := &rationv1.AcquireRequest{Service: benchService, WorkerId: "w1", MaxBuckets: perOp}
	for b.Loop() {
		if pending < perOp {
			b.StopTimer()
			refill()
			pending = benchPending(h, benchService)
			b.StartTimer()
		}
		r := h.applyCmd(h.command(op, "w1", cred, ""))
		got := r.GetAcquire().GetBuckets()
		if len(got) != perOp {
			b.Fatalf("acquire: got %d buckets, want %d (error %v)", len(got), perOp, ResultError(r))
		}
		held = append(held, got...)
		pending -= perOp
	}
	b.StopTimer()
	benchCheck(h)
}

// BenchmarkApply_Submit180: one op submits "DM" for all 180 items of one
// leased bucket. Leases are prepared outside the timer, 100 buckets at a
// time, from a pool of 90,000 ids that is re-queued (AddItems with rerun)
// when it is used up, so the item table stays at 90,000 items. "compact" is
// the form the leader proposes (see Compact), "plain" the protobuf one.
func BenchmarkApply_Submit180(b *testing.B) { benchForms(b, benchSubmit180) }

func benchSubmit180(b *testing.B, pack bool) {
	b.ReportAllocs()
	const (
		chunk    = 100
		poolSize = 500 * 180
	)
	h := benchHarness(b)
	h.pack = pack
	h.createService(benchService, "dmcheck", &rationv1.ServiceConfig{
		BucketSize: 180, MaxBucketsPerAcquire: chunk, MaxLeasesPerWorker: MaxLeasesPerWorkerCap,
	})
	h.register(benchService, "w1")
	cred := secret("w1")
	pool := benchIDs("acct", 0, poolSize)
	benchAddAll(h, benchService, false, pool)
	var ready []*rationv1.SubmitRequest
	prepare := func() {
		if benchPending(h, benchService) < chunk {
			benchAddAll(h, benchService, true, pool)
		}
		for _, lb := range h.acquire(benchService, "w1", chunk) {
			ready = append(ready, &rationv1.SubmitRequest{WorkerId: "w1", BucketId: lb.Id, Epoch: lb.Lease.Epoch, Results: results(lb, "DM")})
		}
	}
	for b.Loop() {
		if len(ready) == 0 {
			b.StopTimer()
			prepare()
			b.StartTimer()
		}
		op := ready[len(ready)-1]
		ready = ready[:len(ready)-1]
		r := h.applyCmd(h.command(op, "w1", cred, ""))
		if got := r.GetSubmit().GetAccepted(); got != 180 {
			b.Fatalf("submit: accepted %d, want 180 (error %v)", got, ResultError(r))
		}
	}
	b.StopTimer()
	benchCheck(h)
}

// BenchmarkApply_AddItems18000: one op adds 18,000 new ids to a service with
// buckets of 180. The service starts over (a new state machine) every 30 ops
// (540,000 items), outside the timer, to bound memory. Forms as in
// BenchmarkApply_Submit180.
func BenchmarkApply_AddItems18000(b *testing.B) { benchForms(b, benchAddItems18000) }

// benchForms runs bench with commands applied in their plain and their
// compact form.
func benchForms(b *testing.B, bench func(b *testing.B, pack bool)) {
	b.Run("plain", func(b *testing.B) { bench(b, false) })
	b.Run("compact", func(b *testing.B) { bench(b, true) })
}

func benchAddItems18000(b *testing.B, pack bool) {
	b.ReportAllocs()
	const (
		perOp    = DefaultMaxItemsPerAdd
		restart  = 30
		prepared = 10 // requests whose ids are made ahead, outside the timer
	)
	var h *harness
	start := func() {
		h = benchHarness(b)
		h.pack = pack
		h.createService(benchService, "dmcheck", &rationv1.ServiceConfig{BucketSize: 180})
	}
	start()
	var (
		ops   []*rationv1.AddItemsRequest
		next  int // the next id number
		inSvc int // ops applied to the current state machine
	)
	for b.Loop() {
		if inSvc == restart {
			b.StopTimer()
			benchCheck(h)
			start()
			inSvc = 0
			b.StartTimer()
		}
		if len(ops) == 0 {
			b.StopTimer()
			for range prepared {
				ops = append(ops, &rationv1.AddItemsRequest{Service: benchService, Items: benchIDs("acct", next, perOp)})
				next += perOp
			}
			b.StartTimer()
		}
		op := ops[0]
		ops = ops[1:]
		r := h.applyCmd(h.command(op, "admin", nil, ""))
		if got := r.GetAddItems(); got.GetAdded() != perOp || got.GetBuckets() != perOp/180 {
			b.Fatalf("add: %v (error %v)", got, ResultError(r))
		}
		inSvc++
	}
	b.StopTimer()
	benchCheck(h)
}

// BenchmarkApply_TickExpire10000: one op is one Tick that expires exactly
// 10,000 leases. Each op gets a new state machine with 10,000 leased buckets
// of one item, whose leases the clock has just passed (set up outside the
// timer). release_grace is long, so the tick only expires.
func BenchmarkApply_TickExpire10000(b *testing.B) {
	b.ReportAllocs()
	const n = 10000
	var expired uint64
	op := &statev1.Tick{ExpireLeases: true}
	var h *harness
	for b.Loop() {
		b.StopTimer()
		h = benchHarness(b)
		h.createService(benchService, "dmcheck", &rationv1.ServiceConfig{
			BucketSize: 1, MaxBucketsPerAcquire: MaxBucketsPerAcquire, MaxLeasesPerWorker: MaxLeasesPerWorkerCap,
			LeaseTtl: dur(time.Minute), ReleaseGrace: dur(time.Hour),
		})
		h.register(benchService, "w1")
		benchAddAll(h, benchService, false, benchIDs("acct", 0, n))
		for leased := 0; leased < n; {
			leased += len(h.acquire(benchService, "w1", MaxBucketsPerAcquire))
		}
		h.advance(time.Minute + time.Second)
		b.StartTimer()

		r := h.applyCmd(h.command(op, "admin", nil, ""))

		b.StopTimer()
		tr := r.GetTick()
		if tr.GetExpired() != n || tr.GetReleased() != 0 || tr.GetMore() {
			b.Fatalf("tick: %v (error %v)", tr, ResultError(r))
		}
		expired += uint64(tr.GetExpired())
		b.StartTimer()
	}
	b.StopTimer()
	benchCheck(h)
	b.ReportMetric(float64(expired)/float64(b.N), "leases/op")
}

// benchCycler runs acquire+submit cycles of one bucket of 180 items on a
// pool of 36,000 ids, re-queued with AddItems rerun when used up. It is the
// only writer of its harness; with checks off the harness never calls
// Fatal, so it can run on a goroutine of its own.
type benchCycler struct {
	h       *harness
	cred    []byte
	pool    []string
	pending int
	acq     *rationv1.AcquireRequest
}

func newBenchCycler(b *testing.B) *benchCycler {
	h := benchHarness(b)
	h.createService(benchService, "dmcheck", &rationv1.ServiceConfig{BucketSize: 180})
	h.register(benchService, "w1")
	c := &benchCycler{h: h, cred: secret("w1"), pool: benchIDs("acct", 0, 200*180),
		acq: &rationv1.AcquireRequest{Service: benchService, WorkerId: "w1", MaxBuckets: 1}}
	if err := c.refill(false); err != nil {
		b.Fatal(err)
	}
	return c
}

func (c *benchCycler) low() bool { return c.pending == 0 }

func (c *benchCycler) refill(rerun bool) error {
	ids := c.pool
	for len(ids) > 0 {
		n := min(len(ids), DefaultMaxItemsPerAdd)
		op := &rationv1.AddItemsRequest{Service: benchService, Items: ids[:n], Rerun: rerun}
		if err := ResultError(c.h.applyCmd(c.h.command(op, "admin", nil, ""))); err != nil {
			return fmt.Errorf("refill: %w", err)
		}
		ids = ids[n:]
	}
	s, _ := c.h.f.State().Service(benchService)
	c.pending = int(s.Buckets[unassigned])
	return nil
}

// cycle acquires one bucket and submits it. The caller refills when low.
func (c *benchCycler) cycle() error {
	r := c.h.applyCmd(c.h.command(c.acq, "w1", c.cred, ""))
	bs := r.GetAcquire().GetBuckets()
	if len(bs) != 1 {
		return fmt.Errorf("acquire: got %d buckets (error %v)", len(bs), ResultError(r))
	}
	c.pending--
	lb := bs[0]
	op := &rationv1.SubmitRequest{WorkerId: "w1", BucketId: lb.Id, Epoch: lb.Lease.Epoch, Results: results(lb, "DM")}
	r = c.h.applyCmd(c.h.command(op, "w1", c.cred, ""))
	if err := ResultError(r); err != nil {
		return fmt.Errorf("submit: %w", err)
	}
	return nil
}

// run cycles until stop is set, refilling as needed.
func (c *benchCycler) run(stop *atomic.Bool, cycles *atomic.Int64) error {
	for !stop.Load() {
		if c.low() {
			if err := c.refill(true); err != nil {
				return err
			}
		}
		if err := c.cycle(); err != nil {
			return err
		}
		cycles.Add(1)
	}
	return nil
}

// warm runs n cycles so that reads see a state with done, leased and
// pending items, results and activity.
func (c *benchCycler) warm(b *testing.B, n int) {
	for range n {
		if c.low() {
			if err := c.refill(true); err != nil {
				b.Fatal(err)
			}
		}
		if err := c.cycle(); err != nil {
			b.Fatal(err)
		}
	}
}

// benchReads is one round of the reads a status page makes. It returns how
// many records it saw.
func benchReads(f *FSM) int {
	st := f.State()
	n := 0
	if _, ok := st.Service(benchService); ok {
		n++
	}
	n += len(st.Buckets(BucketQuery{Service: benchService, Limit: 100}))
	n += len(st.Items(benchService, rationv1.ItemState_ITEM_STATE_UNSPECIFIED, "", 100))
	n += len(st.Activity(ActivityQuery{Limit: 100}))
	return n
}

// benchGroup runs background goroutines until halted. They are also
// stopped when the benchmark ends early (b.Fatal), so none outlives it.
type benchGroup struct {
	stop atomic.Bool
	wg   sync.WaitGroup
	mu   sync.Mutex
	err  error
}

func (g *benchGroup) start(b *testing.B, n int, fn func(stop *atomic.Bool) error) {
	b.Cleanup(func() {
		g.stop.Store(true)
		g.wg.Wait()
	})
	for range n {
		g.wg.Add(1)
		go func() {
			defer g.wg.Done()
			if err := fn(&g.stop); err != nil {
				g.mu.Lock()
				g.err = err
				g.mu.Unlock()
				g.stop.Store(true)
			}
		}()
	}
}

// halt stops the goroutines, waits for them and fails b if one failed.
func (g *benchGroup) halt(b *testing.B) {
	g.stop.Store(true)
	g.wg.Wait()
	if g.err != nil {
		b.Fatal(g.err)
	}
}

// BenchmarkReadsDuringApply shows that readers and the apply goroutine do not
// slow each other down beyond sharing the CPUs: readers load the published
// immutable version and never take a lock Apply needs. One apply op is an
// acquire+submit cycle of a bucket of 180; one read op is benchReads. On a
// machine with fewer than 3 cores the "with" cases also share CPU time.
func BenchmarkReadsDuringApply(b *testing.B) {
	b.ReportAllocs()
	const readers = 2
	perSec := func(n int64, d time.Duration) float64 { return float64(n) / d.Seconds() }

	applyLoop := func(b *testing.B, c *benchCycler) {
		for b.Loop() {
			if c.low() {
				b.StopTimer()
				if err := c.refill(true); err != nil {
					b.Fatal(err)
				}
				b.StartTimer()
			}
			if err := c.cycle(); err != nil {
				b.Fatal(err)
			}
		}
	}
	readLoop := func(b *testing.B, f *FSM) {
		seen := 0
		for b.Loop() {
			seen += benchReads(f)
		}
		if seen == 0 {
			b.Fatal("reads saw nothing")
		}
	}

	b.Run("apply-alone", func(b *testing.B) {
		b.ReportAllocs()
		c := newBenchCycler(b)
		c.warm(b, 300)
		applyLoop(b, c)
		b.ReportMetric(perSec(int64(b.N), b.Elapsed()), "cycles/s")
		benchCheck(c.h)
	})
	b.Run("apply-with-readers", func(b *testing.B) {
		b.ReportAllocs()
		c := newBenchCycler(b)
		c.warm(b, 300)
		var reads atomic.Int64
		var g benchGroup
		g.start(b, readers, func(stop *atomic.Bool) error {
			for !stop.Load() {
				if benchReads(c.h.f) == 0 {
					return fmt.Errorf("reads saw nothing")
				}
				reads.Add(1)
			}
			return nil
		})
		begin, r0 := time.Now(), reads.Load()
		applyLoop(b, c)
		elapsed, r1 := time.Since(begin), reads.Load()
		g.halt(b)
		b.ReportMetric(perSec(int64(b.N), b.Elapsed()), "cycles/s")
		b.ReportMetric(perSec(r1-r0, elapsed), "bg-reads/s")
		benchCheck(c.h)
	})
	// A control: the apply loop beside goroutines that only burn CPU,
	// touching neither the state nor the heap. Whatever apply-with-readers
	// loses beyond this is the readers' own doing (allocation, GC, caches).
	b.Run("apply-with-spinners", func(b *testing.B) {
		b.ReportAllocs()
		c := newBenchCycler(b)
		c.warm(b, 300)
		var spins atomic.Int64
		var g benchGroup
		g.start(b, readers, func(stop *atomic.Bool) error {
			x := uint64(1)
			for !stop.Load() {
				for range 1000 {
					x = x*6364136223846793005 + 1442695040888963407
				}
				spins.Add(1)
			}
			if x == 0 {
				return fmt.Errorf("spinner overflowed")
			}
			return nil
		})
		applyLoop(b, c)
		g.halt(b)
		b.ReportMetric(perSec(int64(b.N), b.Elapsed()), "cycles/s")
	})
	b.Run("reads-alone", func(b *testing.B) {
		b.ReportAllocs()
		c := newBenchCycler(b)
		c.warm(b, 300)
		readLoop(b, c.h.f)
		b.ReportMetric(perSec(int64(b.N), b.Elapsed()), "reads/s")
	})
	b.Run("reads-with-apply", func(b *testing.B) {
		b.ReportAllocs()
		c := newBenchCycler(b)
		c.warm(b, 300)
		var cycles atomic.Int64
		var g benchGroup
		g.start(b, 1, func(stop *atomic.Bool) error { return c.run(stop, &cycles) })
		begin, c0 := time.Now(), cycles.Load()
		readLoop(b, c.h.f)
		elapsed, c1 := time.Since(begin), cycles.Load()
		g.halt(b)
		b.ReportMetric(perSec(int64(b.N), b.Elapsed()), "reads/s")
		b.ReportMetric(perSec(c1-c0, elapsed), "bg-cycles/s")
		benchCheck(c.h)
	})
}

// BenchmarkSnapshot1M measures a snapshot of a state with 1,000,000 pending
// items (dmcheck, buckets of 180). The state is built once, outside the
// timers, with the live heap measured before and after: "persist" reports
// the snapshot's size (MB) and the heap per pending item of the built state
// (B/item); "restore" reports the heap per item of the restored state. The
// targets are at most 300 B/item and a restore under 3 s; they are reported,
// not asserted.
func BenchmarkSnapshot1M(b *testing.B) {
	b.ReportAllocs()
	const total = 1_000_000
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	h := benchHarness(b)
	h.createService(benchService, "dmcheck", &rationv1.ServiceConfig{BucketSize: 180})
	for from := 0; from < total; from += DefaultMaxItemsPerAdd {
		h.add(benchService, 0, benchIDs("acct", from, min(DefaultMaxItemsPerAdd, total-from))...)
	}
	runtime.GC()
	runtime.ReadMemStats(&after)
	builtPerItem := (float64(after.HeapAlloc) - float64(before.HeapAlloc)) / total
	st := h.f.State()
	want, _ := st.Service(benchService)
	if want.Items[pending] != total {
		b.Fatalf("built %d pending items, want %d", want.Items[pending], total)
	}
	b.Logf("built %d pending items in %d buckets: heap %d B/item", total, want.Buckets[unassigned], int(builtPerItem))

	var snap []byte
	persist := func() []byte {
		var buf bytes.Buffer
		if err := st.WriteSnapshot(&buf); err != nil {
			b.Fatal(err)
		}
		return buf.Bytes()
	}
	b.Run("persist", func(b *testing.B) {
		b.ReportAllocs()
		var buf bytes.Buffer
		for b.Loop() {
			buf.Reset()
			if err := st.WriteSnapshot(&buf); err != nil {
				b.Fatal(err)
			}
		}
		snap = buf.Bytes()
		b.ReportMetric(float64(len(snap))/1e6, "MB")
		b.ReportMetric(builtPerItem, "B/item")
	})
	b.Run("restore", func(b *testing.B) {
		b.ReportAllocs()
		if snap == nil {
			snap = persist()
		}
		var m0, m1 runtime.MemStats
		f := New(nil)
		runtime.GC()
		runtime.ReadMemStats(&m0)
		for b.Loop() {
			if err := f.Restore(io.NopCloser(bytes.NewReader(snap))); err != nil {
				b.Fatal(err)
			}
		}
		b.StopTimer()
		runtime.GC()
		runtime.ReadMemStats(&m1)
		b.ReportMetric((float64(m1.HeapAlloc)-float64(m0.HeapAlloc))/total, "B/item")
		got, ok := f.State().Service(benchService)
		if !ok || got.Items != want.Items || got.Buckets != want.Buckets {
			b.Fatalf("restored service %+v, want %+v", got, want)
		}
		var again bytes.Buffer
		if err := f.State().WriteSnapshot(&again); err != nil {
			b.Fatal(err)
		}
		if !bytes.Equal(again.Bytes(), snap) {
			b.Fatalf("restored state persists to %d bytes that differ from the %d restored", again.Len(), len(snap))
		}
		if err := f.State().CheckInvariants(); err != nil {
			b.Fatalf("restored state: %v", err)
		}
	})
	runtime.KeepAlive(h)
}

// BenchmarkMemory_RememberedItems: what a done item costs once its result is
// trimmed. 1,000,000 items (ids as given by kind) are added, processed in
// buckets of 180, acknowledged and trimmed (result_retention 0s), outside
// the timer; the op is a no-op read. "decimal" ids (account ids of 13 to 19
// digits) are remembered without a record; "named" ids keep their item
// record. Reported, not asserted.
func BenchmarkMemory_RememberedItems(b *testing.B) {
	const total = 1_000_000
	for _, tt := range []struct {
		kind string
		ids  func(i int) string
	}{
		{"decimal", func(i int) string { return strconv.FormatUint(1_000_000_000_000+uint64(i)*7919, 10) }},
		{"named", func(i int) string { return fmt.Sprintf("acct%012d", i) }},
	} {
		b.Run(tt.kind, func(b *testing.B) {
			ids := make([]string, total)
			for i := range ids {
				ids[i] = tt.ids(i)
			}
			var before, after runtime.MemStats
			runtime.GC()
			runtime.ReadMemStats(&before)
			h := benchHarness(b)
			h.createService(benchService, "dmcheck", &rationv1.ServiceConfig{
				BucketSize: 180, MaxBucketsPerAcquire: 100, MaxLeasesPerWorker: MaxLeasesPerWorkerCap, ResultRetention: dur(0),
			})
			h.register(benchService, "w1")
			cred := secret("w1")
			benchAddAll(h, benchService, false, ids)
			ids = nil
			for benchPending(h, benchService) > 0 {
				for _, lb := range h.acquire(benchService, "w1", 100) {
					op := &rationv1.SubmitRequest{WorkerId: "w1", BucketId: lb.Id, Epoch: lb.Lease.Epoch, Results: results(lb, "DM")}
					if r := h.applyCmd(h.command(op, "w1", cred, "")); r.GetSubmit().GetAccepted() != 180 && r.GetSubmit().GetAccepted() != total%180 {
						b.Fatalf("submit: %v", ResultError(r))
					}
				}
			}
			s, _ := h.f.State().Service(benchService)
			h.must(&rationv1.AckResultsRequest{Service: benchService, ThroughSeq: s.LastResultSeq})
			if r := h.must(&statev1.Tick{TrimResults: true}).GetTick(); r.More {
				b.Fatal("trimming took more than one tick")
			}
			runtime.GC()
			runtime.ReadMemStats(&after)
			s, _ = h.f.State().Service(benchService)
			if s.Items[itemDone] != total || s.UnackedResults != 0 || len(h.f.State().Results(benchService, 0, 1)) != 0 {
				b.Fatalf("%d items done, %d results unacknowledged; want %d, 0", s.Items[itemDone], s.UnackedResults, total)
			}
			for b.Loop() {
				h.f.State().Index()
			}
			b.ReportMetric((float64(after.HeapAlloc)-float64(before.HeapAlloc))/total, "B/done-item")
			b.ReportMetric(float64(h.f.State().t.remember.Len()), "remembered")
			benchCheck(h)
		})
	}
}

// BenchmarkMemory_DoneItems measures the heap a done item costs with its
// stored result (a 56-byte payload, as in bench/): 180,000 items are added,
// acquired and submitted once, outside the timer; the op is a no-op read.
// Results are kept as history, so this is what a service grows by per item
// processed. Reported, not asserted.
func BenchmarkMemory_DoneItems(b *testing.B) {
	const total = 180_000
	payload := string(bytes.Repeat([]byte("p"), 56))
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	h := benchHarness(b)
	h.createService(benchService, "dmcheck", &rationv1.ServiceConfig{
		BucketSize: 180, MaxBucketsPerAcquire: 100, MaxLeasesPerWorker: MaxLeasesPerWorkerCap,
	})
	h.register(benchService, "w1")
	cred := secret("w1")
	benchAddAll(h, benchService, false, benchIDs("acct", 0, total))
	for benchPending(h, benchService) > 0 {
		for _, lb := range h.acquire(benchService, "w1", 100) {
			res := results(lb, "DM")
			for _, r := range res {
				r.Payload = payload
			}
			op := &rationv1.SubmitRequest{WorkerId: "w1", BucketId: lb.Id, Epoch: lb.Lease.Epoch, Results: res}
			if r := h.applyCmd(h.command(op, "w1", cred, "")); r.GetSubmit().GetAccepted() != 180 {
				b.Fatalf("submit: %v", ResultError(r))
			}
		}
	}
	runtime.GC()
	runtime.ReadMemStats(&after)
	s, _ := h.f.State().Service(benchService)
	if s.Items[itemDone] != total {
		b.Fatalf("%d items done, want %d", s.Items[itemDone], total)
	}
	for b.Loop() {
		h.f.State().Index()
	}
	b.ReportMetric((float64(after.HeapAlloc)-float64(before.HeapAlloc))/total, "B/done-item")
	benchCheck(h)
}

// BenchmarkApply_DeleteService1M: one op deletes a revoked service holding
// 1,000,000 pending items in buckets of 180; building it is outside the
// timer. DeleteService is one command, so this is how long it holds the log.
func BenchmarkApply_DeleteService1M(b *testing.B) {
	const total = 1_000_000
	ids := benchIDs("acct", 0, total)
	for b.Loop() {
		b.StopTimer()
		h := benchHarness(b)
		h.createService(benchService, "dmcheck", &rationv1.ServiceConfig{BucketSize: 180})
		benchAddAll(h, benchService, false, ids)
		h.must(&rationv1.RevokeServiceRequest{Name: benchService})
		b.StartTimer()
		if r := h.must(&rationv1.DeleteServiceRequest{Name: benchService}).GetDeleteService(); r.Items != total {
			b.Fatalf("deleted %v", r)
		}
	}
}
