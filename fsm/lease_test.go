package fsm

import (
	"slices"
	"strings"
	"testing"
	"time"

	statev1 "github.com/rationhq/ration/api/ration/state/v1"
	rationv1 "github.com/rationhq/ration/api/ration/v1"
)

// setup makes service "dm" (dmcheck) with cfg, registers workers and adds n items.
func setup(t *testing.T, cfg *rationv1.ServiceConfig, n int, workers ...string) *harness {
	t.Helper()
	h := newHarness(t)
	h.createService("dm", "dmcheck", cfg)
	for _, w := range workers {
		h.register("dm", w)
	}
	if n > 0 {
		h.add("dm", 0, ids("u", n)...)
	}
	return h
}

// The bucket-fetch cases of the original design's test list.
func TestFSM_Acquire(t *testing.T) {
	cfg := &rationv1.ServiceConfig{BucketSize: 2, MaxBucketsPerAcquire: 3}
	t.Run("one bucket", func(t *testing.T) {
		h := setup(t, cfg, 10, "w1")
		bs := h.acquire("dm", "w1", 1)
		if len(bs) != 1 || len(bs[0].Items) != 2 || bs[0].Service != "dm" || bs[0].Lease.Epoch == 0 {
			t.Fatalf("got %v", bs)
		}
		if got := bs[0].Lease.Deadline.AsTime(); !got.Equal(t0.Add(DefaultLeaseTTL)) {
			t.Fatalf("deadline %v", got)
		}
		for _, id := range bs[0].Items {
			if st := h.itemState("dm", id); st != itemLeased {
				t.Fatalf("item %s: %v", id, st)
			}
		}
	})
	t.Run("several buckets, distinct epochs", func(t *testing.T) {
		h := setup(t, cfg, 10, "w1")
		bs := h.acquire("dm", "w1", 3)
		if len(bs) != 3 {
			t.Fatalf("got %d", len(bs))
		}
		if bs[0].Lease.Epoch == bs[1].Lease.Epoch || bs[1].Lease.Epoch == bs[2].Lease.Epoch {
			t.Fatal("two grants in one command share an epoch")
		}
	})
	t.Run("too many is capped", func(t *testing.T) {
		h := setup(t, cfg, 20, "w1")
		if bs := h.acquire("dm", "w1", 1000); len(bs) != 3 {
			t.Fatalf("got %d, want the cap of 3", len(bs))
		}
	})
	t.Run("zero means one", func(t *testing.T) {
		h := setup(t, cfg, 20, "w1")
		if bs := h.acquire("dm", "w1", 0); len(bs) != 1 {
			t.Fatalf("got %d", len(bs))
		}
	})
	t.Run("unregistered worker is refused", func(t *testing.T) {
		h := setup(t, cfg, 10, "w1")
		h.refuse(&rationv1.AcquireRequest{Service: "dm", WorkerId: "w2"}, ErrWorkerNotFound)
	})
	t.Run("worker of another service is refused", func(t *testing.T) {
		h := setup(t, cfg, 10, "w1")
		h.createService("other", "dmcheck", nil)
		h.register("other", "w2")
		h.refuse(&rationv1.AcquireRequest{Service: "dm", WorkerId: "w2"}, ErrNotRegistered)
	})
	t.Run("nothing available is an empty answer", func(t *testing.T) {
		h := setup(t, cfg, 0, "w1")
		if bs := h.acquire("dm", "w1", 2); len(bs) != 0 {
			t.Fatalf("got %v", bs)
		}
	})
	t.Run("lease limit per worker", func(t *testing.T) {
		h := setup(t, &rationv1.ServiceConfig{BucketSize: 1, MaxBucketsPerAcquire: 10, MaxLeasesPerWorker: 4}, 20, "w1")
		if bs := h.acquire("dm", "w1", 10); len(bs) != 4 {
			t.Fatalf("got %d, want 4", len(bs))
		}
		h.refuse(&rationv1.AcquireRequest{Service: "dm", WorkerId: "w1", MaxBuckets: 1}, ErrLeaseLimit)
	})
}

func TestFSM_AcquireNeverGrantsABucketTwice(t *testing.T) {
	h := setup(t, &rationv1.ServiceConfig{BucketSize: 3}, 300, "a", "b", "c")
	seen := map[uint64]string{}
	for i := 0; ; i++ {
		w := []string{"a", "b", "c"}[i%3]
		bs := h.acquire("dm", w, 7)
		if len(bs) == 0 {
			break
		}
		for _, b := range bs {
			if prev, dup := seen[b.Id]; dup {
				t.Fatalf("bucket %d granted to %s and %s", b.Id, prev, w)
			}
			seen[b.Id] = w
		}
	}
	if len(seen) != 100 {
		t.Fatalf("granted %d buckets, want 100", len(seen))
	}
}

func TestFSM_AcquireServesPriorityThenAge(t *testing.T) {
	h := setup(t, &rationv1.ServiceConfig{BucketSize: 1, PriorityAging: dur(time.Minute)}, 0, "w1")
	h.add("dm", 0, "old-low")
	h.advance(10 * time.Minute)
	h.add("dm", 5, "new-high")
	h.add("dm", 20, "new-urgent")
	order := func() []string {
		var out []string
		for {
			bs := h.acquire("dm", "w1", 1)
			if len(bs) == 0 {
				return out
			}
			out = append(out, bs[0].Items[0])
		}
	}
	// Effective priorities now: old-low 0+10, new-high 5, new-urgent 20.
	if got := order(); !slices.Equal(got, []string{"new-urgent", "old-low", "new-high"}) {
		t.Fatalf("served %v", got)
	}
}

func TestFSM_AgingPreventsStarvation(t *testing.T) {
	h := setup(t, &rationv1.ServiceConfig{BucketSize: 1, PriorityAging: dur(time.Minute)}, 0, "w1")
	h.add("dm", 0, "starving")
	// A stream of priority-100 work arrives faster than it is served.
	served := false
	for i := 0; i < 300 && !served; i++ {
		h.advance(time.Minute)
		h.add("dm", 100, ids("hi"+string(rune('a'+i%26)), 2)...)
		for _, b := range h.acquire("dm", "w1", 1) {
			served = served || b.Items[0] == "starving"
			h.submitAll("w1", b, "DM")
		}
	}
	if !served {
		t.Fatal("a priority-0 item starved behind priority-100 work for 300 minutes")
	}
}

func TestFSM_AcquireChoiceAmongEqualsIsRandom(t *testing.T) {
	first := map[string]bool{}
	for seed := uint64(1); seed <= 20; seed++ {
		h := setup(t, &rationv1.ServiceConfig{BucketSize: 1}, 50, "w1")
		h.seed = seed
		bs := h.acquire("dm", "w1", 1)
		first[bs[0].Items[0]] = true
	}
	if len(first) < 5 {
		t.Fatalf("20 seeds chose only %d distinct first buckets among 50 equals", len(first))
	}
	// The same seed gives the same choice: every node agrees.
	var again []string
	for range 2 {
		h := setup(t, &rationv1.ServiceConfig{BucketSize: 1}, 50, "w1")
		h.seed = 42
		again = append(again, h.acquire("dm", "w1", 1)[0].Items[0])
	}
	if again[0] != again[1] {
		t.Fatalf("same seed, different choices: %v", again)
	}
}

// The bucket-update cases of the original design's test list.
func TestFSM_Submit(t *testing.T) {
	cfg := &rationv1.ServiceConfig{BucketSize: 3}
	t.Run("own bucket", func(t *testing.T) {
		h := setup(t, cfg, 3, "w1")
		b := h.acquire("dm", "w1", 1)[0]
		r := h.submitAll("w1", b, "NON_DM")
		if r.Accepted != 3 || r.Requeued != 0 {
			t.Fatalf("got %v", r)
		}
		v, _ := h.f.State().Item("dm", b.Items[0])
		if v.State != itemDone || v.Result == nil || v.Result.Verdict != "NON_DM" {
			t.Fatalf("item: %+v", v)
		}
		reg, _ := h.f.State().Registration("dm", "w1")
		if reg.Counters.BucketsDone != 1 || reg.Counters.ResultsAccepted != 3 || reg.Held != 0 ||
			!slices.Equal(reg.Counters.Verdicts, []KeyCount{{"NON_DM", 3}}) {
			t.Fatalf("counters: %+v", reg.Counters)
		}
	})
	t.Run("someone else's bucket", func(t *testing.T) {
		h := setup(t, cfg, 3, "w1", "w2")
		b := h.acquire("dm", "w1", 1)[0]
		h.refuse(&rationv1.SubmitRequest{WorkerId: "w2", BucketId: b.Id, Epoch: b.Lease.Epoch, Results: results(b, "DM")}, ErrNotHolder)
		if st := h.itemState("dm", b.Items[0]); st != itemLeased {
			t.Fatalf("item %v", st)
		}
	})
	t.Run("unregistered worker, own or other bucket", func(t *testing.T) {
		h := setup(t, cfg, 3, "w1")
		b := h.acquire("dm", "w1", 1)[0]
		h.refuse(&rationv1.SubmitRequest{WorkerId: "ghost", BucketId: b.Id, Epoch: b.Lease.Epoch, Results: results(b, "DM")}, ErrWorkerNotFound)
		r := h.applyAs(&rationv1.SubmitRequest{WorkerId: "w1", BucketId: b.Id, Epoch: b.Lease.Epoch, Results: results(b, "DM")}, "w1", secret("ghost"), "")
		if Reason(ResultError(r)) != ErrBadCredential.Reason {
			t.Fatalf("impostor submit: %v", ResultError(r))
		}
	})
	t.Run("partial results requeue the rest", func(t *testing.T) {
		h := setup(t, cfg, 3, "w1")
		b := h.acquire("dm", "w1", 1)[0]
		r := h.must(&rationv1.SubmitRequest{WorkerId: "w1", BucketId: b.Id, Epoch: b.Lease.Epoch,
			Results: []*rationv1.ResultInput{{Item: b.Items[1], Verdict: "DM"}}}).GetSubmit()
		if r.Accepted != 1 || r.Requeued != 2 {
			t.Fatalf("got %v", r)
		}
		if h.itemState("dm", b.Items[0]) != pending || h.itemState("dm", b.Items[1]) != itemDone || h.itemState("dm", b.Items[2]) != pending {
			t.Fatal("wrong item states after a partial submit")
		}
		again := h.acquire("dm", "w1", 1)[0]
		if len(again.Items) != 2 {
			t.Fatalf("requeued items came back as %v", again.Items)
		}
	})
	t.Run("result for an item not in the bucket stores nothing", func(t *testing.T) {
		h := setup(t, cfg, 6, "w1")
		bs := h.acquire("dm", "w1", 2)
		res := append(results(bs[0], "DM"), &rationv1.ResultInput{Item: bs[1].Items[0], Verdict: "DM"})
		before := h.stateBytes()
		h.refuse(&rationv1.SubmitRequest{WorkerId: "w1", BucketId: bs[0].Id, Epoch: bs[0].Lease.Epoch, Results: res}, ErrItemNotInBucket)
		if len(h.f.State().Results("dm", 0, 10)) != 0 || h.itemState("dm", bs[0].Items[0]) != itemLeased {
			t.Fatal("a refused submit stored results")
		}
		h.assertOnlyActivityChanged(before)
	})
	t.Run("duplicate, bad verdict, oversize payload, empty", func(t *testing.T) {
		h := setup(t, cfg, 3, "w1")
		b := h.acquire("dm", "w1", 1)[0]
		sub := func(res ...*rationv1.ResultInput) *rationv1.SubmitRequest {
			return &rationv1.SubmitRequest{WorkerId: "w1", BucketId: b.Id, Epoch: b.Lease.Epoch, Results: res}
		}
		h.refuse(sub(&rationv1.ResultInput{Item: b.Items[0], Verdict: "DM"}, &rationv1.ResultInput{Item: b.Items[0], Verdict: "DM"}), ErrDuplicateResult)
		h.refuse(sub(&rationv1.ResultInput{Item: b.Items[0], Verdict: "dm"}), ErrInvalidResult)
		h.refuse(sub(&rationv1.ResultInput{Item: b.Items[0], Verdict: "DM", Payload: string(make([]byte, 1025))}), ErrInvalidResult)
		h.must(sub(&rationv1.ResultInput{Item: b.Items[0], Verdict: "DM", Payload: string(make([]byte, 1024))}))
		h.add("dm", 0, "z")
		b = h.acquire("dm", "w1", 1)[0]
		h.refuse(sub(), ErrInvalidArgument)
	})
	t.Run("late but unreleased is accepted", func(t *testing.T) {
		h := setup(t, &rationv1.ServiceConfig{BucketSize: 1, LeaseTtl: dur(time.Hour), ReleaseGrace: dur(15 * time.Minute)}, 2, "w1")
		bs := h.acquire("dm", "w1", 2)
		h.advance(time.Hour + time.Minute)
		h.submitAll("w1", bs[0], "DM") // past the deadline, not yet marked dead
		if r := h.tick(); r.Expired != 1 {
			t.Fatalf("tick: %v", r)
		}
		h.advance(10 * time.Minute)
		h.submitAll("w1", bs[1], "DM") // dead, within the grace
		reg, _ := h.f.State().Registration("dm", "w1")
		if reg.Counters.LateSubmits != 2 {
			t.Fatalf("late submits %d", reg.Counters.LateSubmits)
		}
	})
	t.Run("after release it is refused", func(t *testing.T) {
		h := setup(t, &rationv1.ServiceConfig{BucketSize: 1, LeaseTtl: dur(time.Hour), ReleaseGrace: dur(15 * time.Minute)}, 1, "w1", "w2")
		b := h.acquire("dm", "w1", 1)[0]
		h.advance(time.Hour + time.Second)
		h.tick()
		h.advance(15 * time.Minute)
		if r := h.tick(); r.Released != 1 {
			t.Fatalf("tick: %v", r)
		}
		h.refuse(&rationv1.SubmitRequest{WorkerId: "w1", BucketId: b.Id, Epoch: b.Lease.Epoch, Results: results(b, "DM")}, ErrLeaseLost)
		// Re-granted to another worker: the old holder's epoch is fenced off.
		b2 := h.acquire("dm", "w2", 1)[0]
		if b2.Id != b.Id || b2.Lease.Epoch <= b.Lease.Epoch {
			t.Fatalf("re-grant %v after %v", b2, b)
		}
		h.refuse(&rationv1.SubmitRequest{WorkerId: "w1", BucketId: b.Id, Epoch: b.Lease.Epoch, Results: results(b, "DM")}, ErrNotHolder)
		h.refuse(&rationv1.SubmitRequest{WorkerId: "w1", BucketId: b.Id, Epoch: b2.Lease.Epoch, Results: results(b, "DM")}, ErrNotHolder)
		h.submitAll("w2", b2, "DM")
	})
	t.Run("same worker, old epoch after re-grant", func(t *testing.T) {
		h := setup(t, &rationv1.ServiceConfig{BucketSize: 1}, 1, "w1")
		b := h.acquire("dm", "w1", 1)[0]
		h.must(&rationv1.ReleaseRequest{WorkerId: "w1", BucketId: b.Id, Epoch: b.Lease.Epoch})
		b2 := h.acquire("dm", "w1", 1)[0]
		h.refuse(&rationv1.SubmitRequest{WorkerId: "w1", BucketId: b.Id, Epoch: b.Lease.Epoch, Results: results(b, "DM")}, ErrLeaseLost)
		h.submitAll("w1", b2, "DM")
	})
	t.Run("unknown bucket", func(t *testing.T) {
		h := setup(t, cfg, 0, "w1")
		h.refuse(&rationv1.SubmitRequest{WorkerId: "w1", BucketId: 99, Epoch: 1, Results: []*rationv1.ResultInput{{Item: "x", Verdict: "DM"}}}, ErrBucketNotFound)
	})
}

func TestFSM_Release(t *testing.T) {
	h := setup(t, &rationv1.ServiceConfig{BucketSize: 2}, 2, "w1", "w2")
	b := h.acquire("dm", "w1", 1)[0]
	h.refuse(&rationv1.ReleaseRequest{WorkerId: "w2", BucketId: b.Id, Epoch: b.Lease.Epoch}, ErrNotHolder)
	h.refuse(&rationv1.ReleaseRequest{WorkerId: "w1", BucketId: b.Id, Epoch: b.Lease.Epoch + 1}, ErrLeaseLost)
	r := h.must(&rationv1.ReleaseRequest{WorkerId: "w1", BucketId: b.Id, Epoch: b.Lease.Epoch}).GetRelease()
	if r.Requeued != 2 {
		t.Fatalf("got %v", r)
	}
	it, _ := h.f.State().Item("dm", b.Items[0])
	if it.State != pending || it.Attempts != 0 {
		t.Fatalf("released item %+v: a release is not a failed attempt", it)
	}
	h.refuse(&rationv1.ReleaseRequest{WorkerId: "w1", BucketId: b.Id, Epoch: b.Lease.Epoch}, ErrLeaseLost)
}

func TestFSM_Heartbeat(t *testing.T) {
	h := setup(t, &rationv1.ServiceConfig{BucketSize: 1, LeaseTtl: dur(time.Hour)}, 3, "w1", "w2")
	bs := h.acquire("dm", "w1", 3)
	h.advance(50 * time.Minute)
	hb := &statev1.HeartbeatBatch{Entries: []*statev1.HeartbeatEntry{
		{Request: &rationv1.HeartbeatRequest{WorkerId: "w1", Buckets: []*rationv1.BucketRef{
			{Id: bs[0].Id, Epoch: bs[0].Lease.Epoch}, {Id: bs[1].Id, Epoch: 12345}, {Id: 999, Epoch: 1}}}},
		{Request: &rationv1.HeartbeatRequest{WorkerId: "w2", Buckets: []*rationv1.BucketRef{{Id: bs[2].Id, Epoch: bs[2].Lease.Epoch}}}},
		{Request: &rationv1.HeartbeatRequest{WorkerId: "w1", Buckets: []*rationv1.BucketRef{{Id: bs[2].Id, Epoch: bs[2].Lease.Epoch}}}, Credential: secret("x")},
	}}
	out := h.must(hb).GetHeartbeat().GetEntries()
	w1 := out[0].GetHeartbeatEntry().GetBuckets()
	if w1[0].GetLease().GetDeadline().AsTime() != h.now.Add(time.Hour) || w1[1].ErrorReason != ErrLeaseLost.Reason || w1[2].ErrorReason != ErrBucketNotFound.Reason {
		t.Fatalf("w1 outcomes: %v", w1)
	}
	if got := out[1].GetHeartbeatEntry().GetBuckets()[0].ErrorReason; got != ErrNotHolder.Reason {
		t.Fatalf("w2 heartbeat on w1's bucket: %q", got)
	}
	if got := out[2].GetError().GetReason(); got != ErrBadCredential.Reason {
		t.Fatalf("impostor heartbeat: %q", got)
	}
	// Ten more minutes: only the heartbeated lease survives the tick.
	h.advance(10*time.Minute + time.Second)
	if r := h.tick(); r.Expired != 2 {
		t.Fatalf("tick expired %d, want 2", r.Expired)
	}
	// A dead bucket cannot be heartbeated back to life.
	hb = &statev1.HeartbeatBatch{Entries: []*statev1.HeartbeatEntry{{Request: &rationv1.HeartbeatRequest{WorkerId: "w1",
		Buckets: []*rationv1.BucketRef{{Id: bs[1].Id, Epoch: bs[1].Lease.Epoch}}}}}}
	if got := h.must(hb).GetHeartbeat().GetEntries()[0].GetHeartbeatEntry().GetBuckets()[0].ErrorReason; got != ErrLeaseExpired.Reason {
		t.Fatalf("heartbeat on a dead bucket: %q", got)
	}
}

// Dead buckets: detected once, released after the grace, items quarantined
// at max_attempts. The original system counted a dead bucket again on every
// cycle and never fired its dead check at submit; neither may happen here.
func TestFSM_DeadBucketLifecycle(t *testing.T) {
	h := setup(t, &rationv1.ServiceConfig{BucketSize: 2, LeaseTtl: dur(time.Hour), ReleaseGrace: dur(15 * time.Minute), MaxAttempts: 2}, 2, "w1")
	for attempt := 1; attempt <= 2; attempt++ {
		b := h.acquire("dm", "w1", 1)
		if len(b) != 1 {
			t.Fatalf("attempt %d: no bucket", attempt)
		}
		h.advance(time.Hour)
		if r := h.tick(); r.Expired != 0 {
			t.Fatal("expired at the deadline itself, not after it")
		}
		h.advance(time.Nanosecond)
		if r := h.tick(); r.Expired != 1 {
			t.Fatalf("tick: %v", r)
		}
		for range 3 {
			h.advance(time.Minute)
			if r := h.tick(); r.Expired != 0 || r.Released != 0 {
				t.Fatalf("a dead bucket counted again: %v", r)
			}
		}
		h.advance(12 * time.Minute)
		r := h.tick()
		if r.Released != 1 {
			t.Fatalf("attempt %d: tick %v", attempt, r)
		}
		if attempt == 2 && r.Quarantined != 2 {
			t.Fatalf("quarantined %d, want 2", r.Quarantined)
		}
	}
	if st := h.itemState("dm", "u00000"); st != quarantined {
		t.Fatalf("item after 2 failures: %v", st)
	}
	if bs := h.acquire("dm", "w1", 1); len(bs) != 0 {
		t.Fatal("a quarantined item was handed out")
	}
	reg, _ := h.f.State().Registration("dm", "w1")
	if reg.Counters.LeasesExpired != 2 || reg.Counters.DeadReleased != 2 {
		t.Fatalf("counters %+v", reg.Counters)
	}
	// Quarantined items are visible and re-addable.
	if got := h.f.State().Items("dm", quarantined, "", 10); len(got) != 2 {
		t.Fatalf("quarantined list: %d", len(got))
	}
	if a := h.add("dm", 0, "u00000"); a.Added != 1 {
		t.Fatalf("re-add: %v", a)
	}
	it, _ := h.f.State().Item("dm", "u00000")
	if it.State != pending || it.Attempts != 0 {
		t.Fatalf("re-added: %+v", it)
	}
}

func TestFSM_TickWithoutExpiryExpiresNothing(t *testing.T) {
	// During the failover grace the leader ticks without expire_leases.
	h := setup(t, &rationv1.ServiceConfig{BucketSize: 1, LeaseTtl: dur(time.Hour)}, 1, "w1")
	h.acquire("dm", "w1", 1)
	h.advance(2 * time.Hour)
	if r := h.must(&statev1.Tick{DeactivateIdle: true}).GetTick(); r.Expired != 0 {
		t.Fatalf("tick %v", r)
	}
	if st := h.itemState("dm", "u00000"); st != itemLeased {
		t.Fatalf("item %v", st)
	}
}

func TestFSM_TickRespectsMaxTransitions(t *testing.T) {
	h := setup(t, &rationv1.ServiceConfig{BucketSize: 1, LeaseTtl: dur(time.Hour), MaxBucketsPerAcquire: 10}, 10, "w1")
	h.acquire("dm", "w1", 10)
	h.advance(2 * time.Hour)
	r := h.must(&statev1.Tick{ExpireLeases: true, MaxTransitions: 4}).GetTick()
	if r.Expired != 4 || !r.More {
		t.Fatalf("tick %v", r)
	}
}

func TestFSM_TimeNeverRunsBackwards(t *testing.T) {
	h := setup(t, &rationv1.ServiceConfig{BucketSize: 1, LeaseTtl: dur(time.Hour)}, 1, "w1")
	h.advance(time.Hour)
	h.tick()
	h.advance(-time.Hour) // a proposer with a slow clock
	b := h.acquire("dm", "w1", 1)[0]
	if got := b.Lease.Deadline.AsTime(); !got.Equal(t0.Add(2 * time.Hour)) {
		t.Fatalf("deadline %v computed from a clock that went back", got)
	}
}

func TestFSM_TickDue(t *testing.T) {
	h := setup(t, &rationv1.ServiceConfig{BucketSize: 1, LeaseTtl: dur(time.Hour), ReleaseGrace: dur(time.Minute)}, 1, "w1")
	full := &statev1.Tick{ExpireLeases: true, DeactivateIdle: true}
	h.acquire("dm", "w1", 1)
	due := func() bool { return h.f.State().TickDue(h.now.UnixNano(), full) }
	if due() {
		t.Fatal("a tick is due with nothing to do")
	}
	h.advance(time.Hour + time.Second)
	if !due() || h.f.State().TickDue(h.now.UnixNano(), &statev1.Tick{}) {
		t.Fatal("an expired lease does not make an expiring tick due (or makes an empty one due)")
	}
	h.tick()
	if due() {
		t.Fatal("still due right after the tick")
	}
	h.advance(time.Minute)
	if !due() {
		t.Fatal("a dead bucket past its grace does not make a tick due")
	}
	h.tick()
	h.advance(25 * time.Hour)
	if !due() {
		t.Fatal("an idle worker does not make a tick due")
	}
	if !h.f.State().TickDue(h.now.UnixNano(), &statev1.Tick{ActivityMax: 1}) || !h.f.State().TickDue(h.now.UnixNano(), &statev1.Tick{ActivityRetention: int64(time.Hour)}) {
		t.Fatal("activity over its bounds does not make a tick due")
	}
}

func TestState_Suspicions(t *testing.T) {
	h := setup(t, &rationv1.ServiceConfig{BucketSize: 1, LeaseTtl: dur(time.Hour), ReleaseGrace: dur(time.Hour), MaxAttempts: 100}, 0, "good", "lazy", "biased")
	h.add("dm", 0, ids("i", 400)...)
	for range 150 {
		h.submitAll("good", h.acquire("dm", "good", 1)[0], "DM")
		b := h.acquire("dm", "good", 1)[0]
		h.submitAll("good", b, "NON_DM")
	}
	for range 60 {
		h.submitAll("biased", h.acquire("dm", "biased", 1)[0], "DM")
	}
	h.acquire("dm", "lazy", 4)
	h.advance(time.Hour + time.Second)
	h.tick()
	h.advance(time.Second)
	h.acquire("dm", "lazy", 1) // acquires again while its dead buckets wait
	st := h.f.State()
	reasons := func(w string) []string {
		r, _ := st.Registration("dm", w)
		return st.Suspicions("dm", r)
	}
	if got := reasons("good"); len(got) != 0 {
		t.Fatalf("good worker suspected: %v", got)
	}
	if got := reasons("lazy"); len(got) != 2 {
		t.Fatalf("lazy worker: %v", got)
	}
	if got := reasons("biased"); len(got) != 1 || !strings.Contains(got[0], "verdict mix") {
		t.Fatalf("biased worker: %v", got)
	}
}
