package fsm

import (
	"strings"
	"testing"
	"time"

	statev1 "github.com/rationhq/ration/api/ration/state/v1"
	rationv1 "github.com/rationhq/ration/api/ration/v1"
)

// retentionFixture: service "dm" (buckets of one item) with cfg, worker w1,
// and results for items, one batch each, accepted a minute apart.
func retentionFixture(t *testing.T, cfg *rationv1.ServiceConfig, items ...string) (*harness, []uint64) {
	t.Helper()
	cfg.BucketSize = 1
	h := setup(t, cfg, 0, "w1")
	h.add("dm", 0, items...)
	var seqs []uint64
	for range items {
		h.advance(time.Minute)
		b := h.acquire("dm", "w1", 1)[0]
		h.submitAll("w1", b, "DM")
		seqs = append(seqs, h.f.State().Results("dm", 0, 1000)[len(seqs)].Seq)
	}
	return h, seqs
}

func trim(h *harness) *statev1.TickResult {
	h.t.Helper()
	return h.must(&statev1.Tick{TrimResults: true}).GetTick()
}

func retained(h *harness) int { return len(h.f.State().Results("dm", 0, 1000)) }

// Nothing is trimmed before it is acknowledged and its retention has
// passed; then it is, with its bucket, and its item stays done.
func TestFSM_ResultRetention(t *testing.T) {
	h, seqs := retentionFixture(t, &rationv1.ServiceConfig{}, "a", "b", "c") // default: 24h
	// Unacknowledged results stay, however old.
	h.advance(400 * 24 * time.Hour)
	if r := trim(h); r.ResultsTrimmed != 0 || retained(h) != 3 {
		t.Fatalf("trimmed unacknowledged results: %v", r)
	}
	h.must(&rationv1.AckResultsRequest{Service: "dm", ThroughSeq: seqs[1]})
	if !h.f.State().TickDue(h.now.UnixNano(), &statev1.Tick{TrimResults: true}) {
		t.Fatal("TickDue says nothing to trim")
	}
	r := trim(h)
	if r.ResultsTrimmed != 2 || r.ResultsDropped != 0 || retained(h) != 1 {
		t.Fatalf("after acknowledging two old batches: %v, %d retained", r, retained(h))
	}
	if h.f.State().TickDue(h.now.UnixNano(), &statev1.Tick{TrimResults: true}) {
		t.Fatal("TickDue says there is more to trim")
	}
	for _, id := range []string{"a", "b", "c"} {
		v, _ := h.f.State().Item("dm", id)
		if v.State != itemDone {
			t.Fatalf("item %s is %v after trimming", id, v.State)
		}
	}
	s, _ := h.f.State().Service("dm")
	if s.Items[itemDone] != 3 || s.Buckets[done] != 3 || s.Counters.ResultsTrimmed != 2 || s.Counters.ResultsAccepted != 3 {
		t.Fatalf("service after trimming: items %v buckets %v counters %+v", s.Items, s.Buckets, s.Counters)
	}
	// A trimmed item (buckets are granted in random order: find one) is
	// remembered: adding it again skips it, rerun re-queues it.
	var trimmed string
	for _, v := range h.f.State().Items("dm", itemDone, "", 10) {
		if v.Result == nil {
			trimmed = v.ID
		}
	}
	if n := len(h.f.State().Items("dm", itemDone, "", 10)); trimmed == "" || n != 3 {
		t.Fatalf("%d done items, trimmed one %q", n, trimmed)
	}
	if r := h.add("dm", 0, trimmed); r.Added != 0 || r.Skipped != 1 {
		t.Fatalf("adding a done item again: %v", r)
	}
	e, _ := h.f.State().ExplainItem("dm", trimmed)
	if !strings.Contains(strings.Join(e.Lines, "\n"), "result was trimmed") {
		t.Fatalf("explain of a trimmed item: %v", e.Lines)
	}
	if r := h.must(&rationv1.AddItemsRequest{Service: "dm", Items: []string{trimmed}, Rerun: true}).GetAddItems(); r.Added != 1 {
		t.Fatalf("rerun of a trimmed item: %v", r)
	}
	// A revert says what it could not reach.
	rv := h.must(&rationv1.RevertWorkerRequest{Service: "dm", WorkerId: "w1", Since: ts(t0)}).GetRevertWorker()
	if rv.Reverted != 1 || rv.TrimmedBefore == nil {
		t.Fatalf("revert after trimming: %v", rv)
	}
}

// A retention of 0s trims a result at its acknowledgment's next tick.
func TestFSM_ResultRetentionZero(t *testing.T) {
	h, seqs := retentionFixture(t, &rationv1.ServiceConfig{ResultRetention: dur(0)}, "a", "b")
	if s, _ := h.f.State().Service("dm"); s.Config.ResultRetention != 0 || s.Config.Proto().GetResultRetention() == nil {
		t.Fatalf("result_retention 0s became %v", s.Config.ResultRetention)
	}
	if r := trim(h); r.ResultsTrimmed != 0 {
		t.Fatalf("trimmed before any ack: %v", r)
	}
	h.must(&rationv1.AckResultsRequest{Service: "dm", ThroughSeq: seqs[0]})
	if r := trim(h); r.ResultsTrimmed != 1 || retained(h) != 1 {
		t.Fatalf("after the ack: %v", r)
	}
}

// unacked_result_retention drops what nobody acknowledged, counted and
// recorded as such.
func TestFSM_UnackedResultRetention(t *testing.T) {
	h, _ := retentionFixture(t, &rationv1.ServiceConfig{UnackedResultRetention: dur(time.Hour)}, "a", "b", "c")
	h.advance(time.Hour - 2*time.Minute) // the first batch is an hour old, the others younger
	if r := trim(h); r.ResultsTrimmed != 1 || r.ResultsDropped != 1 {
		t.Fatalf("an hour after the first result: %v", r)
	}
	s, _ := h.f.State().Service("dm")
	if s.Counters.ResultsDropped != 1 || s.UnackedResults != 2 || s.TrimmedThrough == 0 {
		t.Fatalf("service after dropping: unacked %d, counters %+v", s.UnackedResults, s.Counters)
	}
	acts := h.f.State().Activity(ActivityQuery{Service: "dm", Action: ActResultsTrimmed, Limit: 10})
	if len(acts) != 1 || !strings.Contains(acts[0].Message, "never acknowledged") || acts[0].Count != 1 {
		t.Fatalf("activity of the drop: %+v", acts)
	}
}

// At max_unacked_results, Acquire waits; an acknowledgment lets it go on.
func TestFSM_ResultsBacklog(t *testing.T) {
	h, seqs := retentionFixture(t, &rationv1.ServiceConfig{MaxUnackedResults: 3}, "a", "b")
	h.add("dm", 0, "c", "d")
	b := h.acquire("dm", "w1", 1)[0] // two unacknowledged: below the limit
	h.submitAll("w1", b, "DM")
	before := h.stateBytes()
	r := h.refuse(&rationv1.AcquireRequest{Service: "dm", WorkerId: "w1", MaxBuckets: 1}, ErrResultsBacklog)
	if !strings.Contains(r.GetError().GetMessage(), "max_unacked_results") {
		t.Fatalf("refusal message: %q", r.GetError().GetMessage())
	}
	h.assertOnlyActivityChanged(before)
	h.must(&rationv1.AckResultsRequest{Service: "dm", ThroughSeq: seqs[0]})
	if got := h.acquire("dm", "w1", 1); len(got) != 1 {
		t.Fatalf("after an ack: %v", got)
	}
}

func TestFSM_RetentionConfigLimits(t *testing.T) {
	h := newHarness(t)
	for _, tt := range []struct {
		name string
		cfg  *rationv1.ServiceConfig
		ok   bool
	}{
		{"defaults", &rationv1.ServiceConfig{}, true},
		{"unacked at its minimum", &rationv1.ServiceConfig{UnackedResultRetention: dur(time.Minute)}, true},
		{"unacked below it", &rationv1.ServiceConfig{UnackedResultRetention: dur(time.Minute - time.Second)}, false},
		{"unacked 0s is never", &rationv1.ServiceConfig{UnackedResultRetention: dur(0)}, true},
		{"retention at its maximum", &rationv1.ServiceConfig{ResultRetention: dur(MaxResultRetention)}, true},
		{"retention past it", &rationv1.ServiceConfig{ResultRetention: dur(MaxResultRetention + time.Second)}, false},
		{"negative retention", &rationv1.ServiceConfig{ResultRetention: dur(-time.Second)}, false},
		{"refresh at its minimum", &rationv1.ServiceConfig{RefreshAfter: dur(MinRefreshAfter)}, true},
		{"refresh below it", &rationv1.ServiceConfig{RefreshAfter: dur(MinRefreshAfter - time.Second)}, false},
		{"refresh 0s", &rationv1.ServiceConfig{RefreshAfter: dur(0)}, false},
		{"refresh at its maximum", &rationv1.ServiceConfig{RefreshAfter: dur(MaxResultRetention)}, true},
		{"refresh past it", &rationv1.ServiceConfig{RefreshAfter: dur(MaxResultRetention + time.Second)}, false},
		{"backlog at its cap", &rationv1.ServiceConfig{MaxUnackedResults: MaxUnackedResultsCap}, true},
		{"backlog past it", &rationv1.ServiceConfig{MaxUnackedResults: MaxUnackedResultsCap + 1}, false},
	} {
		err := CheckRequest(&rationv1.CreateServiceRequest{Name: "x", Kind: "dmcheck", Config: tt.cfg})
		if (err == nil) != tt.ok {
			t.Errorf("%s: %v", tt.name, err)
		}
	}
	h.createService("d", "dmcheck", nil)
	s, _ := h.f.State().Service("d")
	if s.Config.ResultRetention != DefaultResultRetention || s.Config.MaxUnackedResults != DefaultMaxUnackedResults || s.Config.UnackedResultRetention != 0 ||
		s.Config.RefreshAfter != NeverRefresh || s.Config.DoneRetention != RememberForever {
		t.Fatalf("defaults: %+v", s.Config)
	}
}

// Trimmed state survives a snapshot: the export position, what was
// trimmed, and items done without their results.
func TestFSM_RetentionSurvivesRestore(t *testing.T) {
	h, seqs := retentionFixture(t, &rationv1.ServiceConfig{ResultRetention: dur(0)}, "a", "b", "c")
	h.must(&rationv1.AckResultsRequest{Service: "dm", ThroughSeq: seqs[1]})
	trim(h)
	f := h.restored()
	s, _ := f.State().Service("dm")
	if s.LastResultSeq != seqs[2] || s.AckedThrough != seqs[1] || s.UnackedResults != 1 || s.TrimmedThrough == 0 {
		t.Fatalf("restored service: %+v", s)
	}
}

// done_retention forgets a done item, once its result is trimmed, that long
// after the result was accepted; an AddItems of it then queues it as new.
// An item re-run meanwhile is not forgotten.
func TestFSM_DoneRetention(t *testing.T) {
	h, seqs := retentionFixture(t, &rationv1.ServiceConfig{ResultRetention: dur(0), DoneRetention: dur(time.Hour)}, "a", "b", "c")
	forget := func() *statev1.TickResult {
		t.Helper()
		return h.must(&statev1.Tick{TrimResults: true, ForgetDone: true}).GetTick()
	}
	if r := forget(); r.ItemsForgotten != 0 {
		t.Fatalf("forgot items whose results are not trimmed: %v", r)
	}
	h.must(&rationv1.AckResultsRequest{Service: "dm", ThroughSeq: seqs[2]})
	if r := forget(); r.ResultsTrimmed != 3 || r.ItemsForgotten != 0 {
		t.Fatalf("at the trim: %v", r)
	}
	// One item is re-run before its done bucket is forgotten: it stays.
	var rerun string
	for _, v := range h.f.State().Items("dm", itemDone, "", 10) {
		rerun = v.ID
	}
	h.must(&rationv1.AddItemsRequest{Service: "dm", Items: []string{rerun}, Rerun: true})
	// The results were accepted a minute apart, the first two minutes ago:
	// a second before its done_retention, nothing goes; past the last's,
	// all three buckets go.
	h.advance(time.Hour - 2*time.Minute - time.Second)
	if r := forget(); r.ItemsForgotten != 0 {
		t.Fatalf("forgot before done_retention: %v", r)
	}
	h.advance(2*time.Minute + time.Second)
	if !h.f.State().TickDue(h.now.UnixNano(), &statev1.Tick{ForgetDone: true}) {
		t.Fatal("TickDue sees nothing to forget")
	}
	if r := forget(); r.ItemsForgotten != 2 {
		t.Fatalf("at done_retention: %v", r)
	}
	s, _ := h.f.State().Service("dm")
	if s.Items[itemDone] != 0 || s.Items[pending] != 1 || s.Buckets[done] != 0 || s.Counters.ItemsForgotten != 2 {
		t.Fatalf("after forgetting: items %v buckets %v counters %+v", s.Items, s.Buckets, s.Counters)
	}
	if _, ok := h.f.State().Item("dm", rerun); !ok {
		t.Fatal("the re-run item was forgotten")
	}
	// A forgotten id is new again.
	var forgotten []string
	for _, id := range []string{"a", "b", "c"} {
		if _, ok := h.f.State().Item("dm", id); !ok {
			forgotten = append(forgotten, id)
		}
	}
	if r := h.add("dm", 0, forgotten...); len(forgotten) != 2 || r.Added != 2 {
		t.Fatalf("adding forgotten ids %v again: %v", forgotten, r)
	}
}

// Unset, done_retention remembers done items for ever; 0s forgets them at
// the tick after their results are trimmed.
func TestFSM_DoneRetentionBounds(t *testing.T) {
	for _, tt := range []struct {
		name   string
		keep   *rationv1.ServiceConfig
		forgot uint32
	}{
		{"unset", &rationv1.ServiceConfig{ResultRetention: dur(0)}, 0},
		{"0s", &rationv1.ServiceConfig{ResultRetention: dur(0), DoneRetention: dur(0)}, 2},
	} {
		t.Run(tt.name, func(t *testing.T) {
			h, seqs := retentionFixture(t, tt.keep, "a", "b")
			h.must(&rationv1.AckResultsRequest{Service: "dm", ThroughSeq: seqs[1]})
			h.advance(400 * 24 * time.Hour)
			if r := h.must(&statev1.Tick{TrimResults: true, ForgetDone: true}).GetTick(); r.ResultsTrimmed != 2 || r.ItemsForgotten != 0 {
				t.Fatalf("the tick that trims: %v", r)
			}
			if r := h.must(&statev1.Tick{TrimResults: true, ForgetDone: true}).GetTick(); r.ItemsForgotten != tt.forgot {
				t.Fatalf("forgot %d, want %d", r.ItemsForgotten, tt.forgot)
			}
		})
	}
}

// refresh_after queues a done item again that long after its result was
// accepted, by the FSM's clock, whether or not the result is still
// retained; a snapshot restore keeps what is due; the item is then leased
// and done again like a new one.
func TestFSM_RefreshAfter(t *testing.T) {
	h, seqs := retentionFixture(t, &rationv1.ServiceConfig{RefreshAfter: dur(time.Hour), ResultRetention: dur(0)}, "a", "b", "c")
	refresh := func() *statev1.TickResult {
		t.Helper()
		return h.must(&statev1.Tick{TrimResults: true, RefreshDone: true, ForgetDone: true}).GetTick()
	}
	due := func() bool {
		return h.f.State().TickDue(h.now.UnixNano(), &statev1.Tick{RefreshDone: true})
	}
	// "a"'s result is trimmed (acknowledged, retention 0s); "b" and "c" keep theirs.
	h.must(&rationv1.AckResultsRequest{Service: "dm", ThroughSeq: seqs[0]})
	if r := h.must(&statev1.Tick{TrimResults: true}).GetTick(); r.ResultsTrimmed != 1 {
		t.Fatalf("trim: %v", r)
	}
	// The results were accepted a minute apart, the first two minutes ago.
	h.advance(time.Hour - 2*time.Minute - time.Second)
	if r := refresh(); r.ItemsRefreshed != 0 || due() {
		t.Fatalf("refreshed a second before refresh_after: %v", r)
	}
	h.advance(time.Second)
	if !due() {
		t.Fatal("TickDue sees nothing to refresh at refresh_after")
	}
	if r := refresh(); r.ItemsRefreshed != 1 {
		t.Fatalf("at the first item's refresh_after: %v", r)
	}
	// Through a snapshot, the rest is still due, and nothing else.
	h.f = h.restored()
	if due() {
		t.Fatal("after the restore, more is due before its time")
	}
	h.advance(2 * time.Minute)
	if r := refresh(); r.ItemsRefreshed != 2 || due() {
		t.Fatalf("at the last item's refresh_after: %v", r)
	}
	if retained(h) != 2 {
		t.Fatalf("%d results retained after refreshing, want 2 (refreshing keeps results)", retained(h))
	}
	s, _ := h.f.State().Service("dm")
	if s.Items[pending] != 3 || s.Items[itemDone] != 0 || s.Buckets[done] != 0 || s.Counters.ItemsRefreshed != 3 {
		t.Fatalf("after refreshing: items %v buckets %v counters %+v", s.Items, s.Buckets, s.Counters)
	}
	// Each is checked anew: leased, done, and refreshed again an hour later.
	for range 3 {
		b := h.acquire("dm", "w1", 1)[0]
		h.submitAll("w1", b, "DM")
	}
	if r := refresh(); r.ItemsRefreshed != 0 {
		t.Fatalf("refreshed the new results at once: %v", r)
	}
	h.advance(time.Hour)
	if r := refresh(); r.ItemsRefreshed != 3 {
		t.Fatalf("the second round: %v", r)
	}
}

// A revoked service's done items wait: refresh_after queues nothing there.
func TestFSM_RefreshAfterWaitsWhileRevoked(t *testing.T) {
	h, _ := retentionFixture(t, &rationv1.ServiceConfig{RefreshAfter: dur(time.Minute)}, "a")
	h.must(&rationv1.RevokeServiceRequest{Name: "dm", Reason: "paused"})
	h.advance(time.Hour)
	if r := h.must(&statev1.Tick{RefreshDone: true}).GetTick(); r.ItemsRefreshed != 0 {
		t.Fatalf("refreshed in a revoked service: %v", r)
	}
	h.must(&rationv1.ReinstateServiceRequest{Name: "dm"})
	if r := h.must(&statev1.Tick{RefreshDone: true}).GetTick(); r.ItemsRefreshed != 1 {
		t.Fatalf("after reinstating: %v", r)
	}
}
