package fsm

import (
	"slices"
	"strings"
	"testing"

	statev1 "github.com/rationhq/ration/api/ration/state/v1"
	rationv1 "github.com/rationhq/ration/api/ration/v1"
)

// newUpgraded is a harness whose cluster runs this build's protocol.
func newUpgraded(t testing.TB) *harness {
	h := newHarness(t)
	h.upgrade()
	return h
}

// upgrade raises the cluster version to this build's, as a leader does once
// every member runs it.
func (h *harness) upgrade() {
	h.t.Helper()
	h.must(&statev1.SetClusterVersion{Version: MaxProtocol})
}

func policy(p *rationv1.ValidationPolicy) *rationv1.ServiceConfig {
	return &rationv1.ServiceConfig{BucketSize: 4, Validation: p}
}

// vote answers every item of b with verdict, but for the items in odd.
func (h *harness) vote(worker string, b *rationv1.LeasedBucket, verdict string, odd map[string]string) *rationv1.SubmitResponse {
	h.t.Helper()
	res := results(b, verdict)
	for _, r := range res {
		if v, ok := odd[r.Item]; ok {
			r.Verdict = v
		}
	}
	return h.must(&rationv1.SubmitRequest{WorkerId: worker, BucketId: b.Id, Epoch: b.Lease.Epoch, Results: res}).GetSubmit()
}

func (h *harness) svcState(name string) *Service {
	h.t.Helper()
	s, ok := h.f.State().Service(name)
	if !ok {
		h.t.Fatalf("service %q missing", name)
	}
	return s
}

func (h *harness) regState(service, worker string) *Registration {
	h.t.Helper()
	r, ok := h.f.State().Registration(service, worker)
	if !ok {
		h.t.Fatalf("registration %s/%s missing", service, worker)
	}
	return r
}

func TestValidation_ConfigLimits(t *testing.T) {
	for _, c := range []struct {
		name string
		p    *rationv1.ValidationPolicy
		kind string
		want string // "" accepts
	}{
		{"replicas at limit", &rationv1.ValidationPolicy{Replicas: MaxReplicas}, "dmcheck", ""},
		{"replicas over", &rationv1.ValidationPolicy{Replicas: MaxReplicas + 1}, "dmcheck", "replicas is 11"},
		{"quorum over replicas", &rationv1.ValidationPolicy{Replicas: 2, Quorum: 3}, "dmcheck", "quorum is 3"},
		{"max_replicas below replicas", &rationv1.ValidationPolicy{Replicas: 3, MaxReplicas: 2}, "dmcheck", "max_replicas is 2"},
		{"max_replicas at limit", &rationv1.ValidationPolicy{Replicas: 2, MaxReplicas: MaxMaxReplicas}, "dmcheck", ""},
		{"max_replicas over", &rationv1.ValidationPolicy{Replicas: 2, MaxReplicas: MaxMaxReplicas + 1}, "dmcheck", "max_replicas is 21"},
		{"adaptive without replicas", &rationv1.ValidationPolicy{Adaptive: true}, "dmcheck", "adaptive needs replicas"},
		{"spot_check at limit", &rationv1.ValidationPolicy{Replicas: 2, Adaptive: true, SpotCheck: 1000}, "dmcheck", ""},
		{"spot_check over", &rationv1.ValidationPolicy{Replicas: 2, Adaptive: true, SpotCheck: 1001}, "dmcheck", "spot_check is 1001"},
		{"trust_after over", &rationv1.ValidationPolicy{Replicas: 2, TrustAfter: MaxTrustAfter + 1}, "dmcheck", "trust_after is 1000001"},
		{"canary_rate at limit", &rationv1.ValidationPolicy{CanaryRate: MaxCanaryRate}, "dmcheck", ""},
		{"canary_rate over", &rationv1.ValidationPolicy{CanaryRate: MaxCanaryRate + 1}, "dmcheck", "canary_rate is 501"},
		{"list_tolerance on dmcheck", &rationv1.ValidationPolicy{Replicas: 2, ListTolerance: 10}, "dmcheck", "list_tolerance"},
		{"list_tolerance at limit", &rationv1.ValidationPolicy{Replicas: 2, ListTolerance: 1000}, "followers", ""},
		{"list_tolerance over", &rationv1.ValidationPolicy{Replicas: 2, ListTolerance: 1001}, "followers", "list_tolerance 1001"},
	} {
		t.Run(c.name, func(t *testing.T) {
			h := newUpgraded(t)
			r := h.apply(&rationv1.CreateServiceRequest{Name: "s", Kind: c.kind, Config: policy(c.p)})
			err := ResultError(r)
			switch {
			case c.want == "" && err != nil:
				t.Fatalf("refused: %v", err)
			case c.want != "" && (err == nil || !strings.Contains(err.Error(), c.want) || Reason(err) != "INVALID_CONFIG"):
				t.Fatalf("got %v, want INVALID_CONFIG with %q", err, c.want)
			}
		})
	}
	h := newUpgraded(t)
	h.createService("s", "dmcheck", policy(&rationv1.ValidationPolicy{Replicas: 3}))
	v := h.svcState("s").Config.Validation
	if v.Quorum != 2 || v.MaxReplicas != 7 || v.SpotCheck != DefaultSpotCheck || v.TrustAfter != DefaultTrustAfter {
		t.Fatalf("defaults for replicas 3: %+v", v)
	}
	if p := h.svcState("s").Config.Proto().GetValidation(); p.GetQuorum() != 2 || p.GetMaxReplicas() != 7 {
		t.Fatalf("config read back: %v", p)
	}
	h.createService("plain", "dmcheck", nil)
	if p := h.svcState("plain").Config.Proto().GetValidation(); p != nil {
		t.Fatalf("a service without validation reads back %v", p)
	}
}

// Two workers agree: the items are canonical, validated, with both votes;
// between the two, the items wait for a quorum, barred to the first.
func TestValidation_QuorumAgrees(t *testing.T) {
	h := newUpgraded(t)
	h.createService("s", "dmcheck", policy(&rationv1.ValidationPolicy{Replicas: 2}))
	h.register("s", "w1")
	h.register("s", "w2")
	h.add("s", 0, ids("i", 4)...)
	b := h.acquire("s", "w1", 1)[0]
	if got := h.vote("w1", b, "DM", nil); got.Accepted != 4 || got.Requeued != 0 {
		t.Fatalf("first vote: %v", got)
	}
	st := h.f.State()
	s := h.svcState("s")
	if st.AwaitingQuorum(s) != 4 || s.Items[pending] != 4 || s.Items[itemDone] != 0 {
		t.Fatalf("after one vote: awaiting %d, counts %v", st.AwaitingQuorum(s), s.Items)
	}
	if got := h.acquire("s", "w1", 1); len(got) != 0 {
		t.Fatalf("w1 got its own bucket again: %v", got)
	}
	b2 := h.acquire("s", "w2", 1)[0]
	if b2.Id != b.Id || !slices.Equal(b2.Items, b.Items) {
		t.Fatalf("w2 got %v, want bucket %d again", b2, b.Id)
	}
	h.vote("w2", b2, "DM", nil)
	s = h.svcState("s")
	if s.Items[itemDone] != 4 || h.f.State().AwaitingQuorum(s) != 0 || s.Counters.ResultsValidated != 4 || s.Counters.ResultsUnvalidated != 0 {
		t.Fatalf("after quorum: counts %v, counters %+v", s.Items, s.Counters)
	}
	v, _ := h.f.State().Item("s", "i00000")
	if v.State != itemDone || v.Result == nil || v.Result.Verdict != "DM" {
		t.Fatalf("item: %+v", v)
	}
	votes := h.f.State().Votes("s", v)
	if len(votes) != 2 || votes[0].Worker != "w1" || votes[1].Worker != "w2" || !votes[0].Agreed || !votes[1].Agreed {
		t.Fatalf("votes: %+v", votes)
	}
	rbs := h.f.State().Results("s", 0, 10)
	if len(rbs) != 1 || !rbs[0].Validated || rbs[0].Len() != 4 {
		t.Fatalf("result batches: %d, validated %v", len(rbs), len(rbs) > 0 && rbs[0].Validated)
	}
	for _, w := range []string{"w1", "w2"} {
		if r := h.regState("s", w); r.TrustRun != 4 || r.Counters.ResultsValidated != 4 {
			t.Fatalf("%s: run %d, counters %+v", w, r.TrustRun, r.Counters)
		}
	}
	h.restored()
}

// A disagreement splits the bucket: agreed items close, the disputed one
// goes out again, to a third worker and, the 2-1 lead being short of the
// margin, a fourth, whose votes decide it.
func TestValidation_DisagreementGoesOutAgain(t *testing.T) {
	h := newUpgraded(t)
	h.createService("s", "dmcheck", policy(&rationv1.ValidationPolicy{Replicas: 2}))
	for _, w := range []string{"w1", "w2", "w3", "w4"} {
		h.register("s", w)
	}
	h.add("s", 0, ids("i", 4)...)
	b := h.acquire("s", "w1", 1)[0]
	h.vote("w1", b, "DM", nil)
	b = h.acquire("s", "w2", 1)[0]
	h.vote("w2", b, "DM", map[string]string{"i00002": "NON_DM"})
	if st := h.itemState("s", "i00002"); st != pending {
		t.Fatalf("disputed item is %v, want pending", st)
	}
	for _, id := range []string{"i00000", "i00001", "i00003"} {
		if st := h.itemState("s", id); st != itemDone {
			t.Fatalf("%s is %v, want done", id, st)
		}
	}
	if got := h.acquire("s", "w1", 1); len(got) != 0 {
		t.Fatal("a voter got the disputed item again")
	}
	b3 := h.acquire("s", "w3", 1)[0]
	if !slices.Equal(b3.Items, []string{"i00002"}) {
		t.Fatalf("w3 got %v, want only the disputed item", b3.Items)
	}
	h.vote("w3", b3, "DM", nil)
	if st := h.itemState("s", "i00002"); st != pending {
		t.Fatalf("after a 2-1 split the item is %v, want pending", st)
	}
	h.vote("w4", h.acquire("s", "w4", 1)[0], "DM", nil)
	v, _ := h.f.State().Item("s", "i00002")
	if v.State != itemDone || v.Result.Verdict != "DM" {
		t.Fatalf("disputed item: %v %+v", v.State, v.Result)
	}
	votes := h.f.State().Votes("s", v)
	if len(votes) != 4 || !votes[0].Agreed || votes[1].Agreed || !votes[2].Agreed || !votes[3].Agreed {
		t.Fatalf("votes: %+v", votes)
	}
	w2 := h.regState("s", "w2")
	if w2.TrustRun != 0 || w2.Counters.ResultsDisagreed != 1 || w2.Counters.ResultsValidated != 3 {
		t.Fatalf("w2: run %d, counters %+v", w2.TrustRun, w2.Counters)
	}
	if s := h.svcState("s"); s.Counters.ResultsValidated != 4 || s.Counters.ResultsDisagreed != 1 || s.Buckets[done] != 2 {
		t.Fatalf("service: buckets %v, counters %+v", s.Buckets, s.Counters)
	}
	h.restored()
}

// With no quorum after max_replicas votes an item is INCONCLUSIVE, and
// AddItems queues it again, without its votes.
func TestValidation_InconclusiveAtMaxReplicas(t *testing.T) {
	h := newUpgraded(t)
	h.createService("s", "dmcheck", policy(&rationv1.ValidationPolicy{Replicas: 2, MaxReplicas: 3}))
	// DM, NON_DM, UNKNOWN: no two agree.
	for _, w := range []string{"w1", "w2", "w3", "w4"} {
		h.register("s", w)
	}
	h.add("s", 0, "x")
	for i, v := range []string{"DM", "NON_DM", "UNKNOWN"} {
		w := []string{"w1", "w2", "w3"}[i]
		h.vote(w, h.acquire("s", w, 1)[0], v, nil)
	}
	if st := h.itemState("s", "x"); st != inconclusive {
		t.Fatalf("item is %v, want inconclusive", st)
	}
	s := h.svcState("s")
	if s.Items[inconclusive] != 1 || s.Counters.ItemsInconclusive != 1 || s.Buckets[unassigned]+s.Buckets[done] != 0 {
		t.Fatalf("counts %v, buckets %v, counters %+v", s.Items, s.Buckets, s.Counters)
	}
	if got := h.acquire("s", "w4", 1); len(got) != 0 {
		t.Fatal("an inconclusive item was leased")
	}
	acts := h.f.State().Activity(ActivityQuery{Service: "s", Action: ActItemsInconclusive, Limit: 10})
	if len(acts) != 1 || acts[0].Message != "no quorum within max_replicas 3: x: w1 DM, w2 NON_DM, w3 UNKNOWN" {
		t.Fatalf("activity: %+v", acts)
	}
	if r := h.add("s", 0, "x"); r.Added != 1 {
		t.Fatalf("AddItems of an inconclusive item: %v", r)
	}
	b := h.acquire("s", "w1", 1)[0]
	if !slices.Equal(b.Items, []string{"x"}) {
		t.Fatalf("re-queued item: %v", b.Items)
	}
	h.restored()
}

// Items a voter leaves out go back to the pool with a failed attempt and
// without their votes; release and expiry keep a bucket's votes.
func TestValidation_PartialSubmitAndRelease(t *testing.T) {
	h := newUpgraded(t)
	h.createService("s", "dmcheck", policy(&rationv1.ValidationPolicy{Replicas: 2}))
	for _, w := range []string{"w1", "w2", "w3"} {
		h.register("s", w)
	}
	h.add("s", 0, ids("i", 4)...)
	b := h.acquire("s", "w1", 1)[0]
	got := h.must(&rationv1.SubmitRequest{WorkerId: "w1", BucketId: b.Id, Epoch: b.Lease.Epoch, Results: results(b, "DM")[:3]}).GetSubmit()
	if got.Requeued != 1 {
		t.Fatalf("partial first vote: %v", got)
	}
	v, _ := h.f.State().Item("s", "i00003")
	if v.Attempts != 1 || v.Bucket == b.Id || len(h.f.State().Votes("s", v)) != 0 {
		t.Fatalf("left-out item: %+v", v)
	}
	b2 := h.acquire("s", "w2", 1)[0]
	if b2.Id != b.Id {
		// The voted bucket and the new one are equals; take whichever came.
		h.must(&rationv1.ReleaseRequest{WorkerId: "w2", BucketId: b2.Id, Epoch: b2.Lease.Epoch})
		b2 = h.acquire("s", "w2", 2)[0]
	}
	h.must(&rationv1.ReleaseRequest{WorkerId: "w2", BucketId: b2.Id, Epoch: b2.Lease.Epoch})
	if bk, _ := h.f.State().Bucket(b.Id); len(bk.Votes) != 1 || bk.State != unassigned {
		t.Fatalf("released bucket: %+v", bk)
	}
	h.restored()
}

func canaryService(h *harness, p *rationv1.ValidationPolicy) {
	h.createService("s", "dmcheck", &rationv1.ServiceConfig{BucketSize: 10, Validation: p})
	var cs []*rationv1.Canary
	for _, id := range ids("c", 20) {
		cs = append(cs, &rationv1.Canary{Item: id, Verdict: "DM"})
	}
	if r := h.must(&rationv1.AddCanariesRequest{Service: "s", Canaries: cs}).GetAddCanaries(); r.Added != 20 || r.Total != 20 {
		h.t.Fatalf("AddCanaries: %v", r)
	}
}

// Canaries are mixed into leases at canary_rate, look like any item, count
// as accepted, and never reach the results or the item counts.
func TestCanaries_MixedAndNeverRevealed(t *testing.T) {
	h := newUpgraded(t)
	canaryService(h, &rationv1.ValidationPolicy{CanaryRate: 200})
	h.register("s", "w1")
	h.add("s", 0, ids("i", 10)...)
	b := h.acquire("s", "w1", 1)[0]
	var shown []string
	for _, id := range b.Items {
		if strings.HasPrefix(id, "c") {
			shown = append(shown, id)
		}
	}
	if len(b.Items) != 12 || len(shown) != 2 {
		t.Fatalf("leased items %v: want the 10 items and 2 canaries", b.Items)
	}
	if mine := h.f.State().Buckets(BucketQuery{Service: "s", Holder: "w1", Limit: 10}); len(mine) != 1 || !slices.Equal(mine[0].Shown(), b.Items) {
		t.Fatal("the holder's view of its bucket differs from its lease")
	}
	// Counts tell nothing either: a release gives back every item shown,
	// and a submit that leaves out a canary has it requeued, as any item.
	if got := h.must(&rationv1.ReleaseRequest{WorkerId: "w1", BucketId: b.Id, Epoch: b.Lease.Epoch}).GetRelease(); got.Requeued != 12 {
		t.Fatalf("release: %v, want all 12 shown items requeued", got)
	}
	b = h.acquire("s", "w1", 1)[0]
	shown = shown[:0]
	for _, id := range b.Items {
		if strings.HasPrefix(id, "c") {
			shown = append(shown, id)
		}
	}
	got := h.vote("w1", b, "NON_DM", map[string]string{shown[0]: "DM", shown[1]: "DM"})
	if got.Accepted != 12 || got.Requeued != 0 {
		t.Fatalf("submit: %v", got)
	}
	s := h.svcState("s")
	if s.Items[itemDone] != 10 || s.Counters.ResultsAccepted != 10 || s.Counters.CanariesPassed != 2 || s.Counters.CanariesFailed != 0 {
		t.Fatalf("counts %v, counters %+v", s.Items, s.Counters)
	}
	for _, rb := range h.f.State().Results("s", 0, 10) {
		for _, r := range rb.All() {
			if strings.HasPrefix(r.Item, "c") {
				t.Fatalf("a canary's answer is among the results: %v", r)
			}
		}
	}
	if r := h.regState("s", "w1"); r.TrustRun != 2 || r.Counters.CanariesPassed != 2 {
		t.Fatalf("worker: run %d, counters %+v", r.TrustRun, r.Counters)
	}
	if r := h.add("s", 0, "c00001"); r.Added != 0 || r.Skipped != 1 {
		t.Fatalf("AddItems of a canary's id: %v", r)
	}
	h.refuse(&rationv1.AddCanariesRequest{Service: "s", Canaries: []*rationv1.Canary{{Item: "i00001", Verdict: "DM"}}}, ErrInvalidArgument)
	h.refuse(&rationv1.AddCanariesRequest{Service: "s", Canaries: []*rationv1.Canary{{Item: "z", Verdict: "MAYBE"}}}, ErrInvalidArgument)
	if r := h.must(&rationv1.AddCanariesRequest{Service: "s", Canaries: []*rationv1.Canary{{Item: "c00001", Verdict: "NON_DM"}}}).GetAddCanaries(); r.Updated != 1 || r.Total != 20 {
		t.Fatalf("replacing a canary: %v", r)
	}
	h.add("s", 0, ids("j", 10)...)
	b = h.acquire("s", "w1", 1)[0]
	var res []*rationv1.ResultInput
	left := ""
	for _, in := range results(b, "DM") {
		if strings.HasPrefix(in.Item, "c") && left == "" {
			left = in.Item
			continue
		}
		res = append(res, in)
	}
	got = h.must(&rationv1.SubmitRequest{WorkerId: "w1", BucketId: b.Id, Epoch: b.Lease.Epoch, Results: res}).GetSubmit()
	if left == "" || got.Accepted != uint32(len(b.Items)-1) || got.Requeued != 1 {
		t.Fatalf("submit without canary %q: %v (of %d items shown)", left, got, len(b.Items))
	}
	h.restored()
}

func TestCanaries_Limits(t *testing.T) {
	h := newUpgraded(t)
	h.createService("s", "dmcheck", nil)
	many := func(prefix string, n int) []*rationv1.Canary {
		var cs []*rationv1.Canary
		for _, id := range ids(prefix, n) {
			cs = append(cs, &rationv1.Canary{Item: id, Verdict: "DM"})
		}
		return cs
	}
	if err := validateAddCanaries(&rationv1.AddCanariesRequest{Service: "s", Canaries: many("a", MaxCanariesPerAdd+1)}); err == nil {
		t.Fatal("1001 canaries in one call passed")
	}
	if err := validateAddCanaries(&rationv1.AddCanariesRequest{Service: "s", Canaries: append(many("a", 1), many("a", 1)...)}); err == nil {
		t.Fatal("a canary named twice passed")
	}
	for i := range MaxCanaries / MaxCanariesPerAdd {
		h.must(&rationv1.AddCanariesRequest{Service: "s", Canaries: many(string(rune('a'+i)), MaxCanariesPerAdd)})
	}
	h.refuse(&rationv1.AddCanariesRequest{Service: "s", Canaries: many("z", 1)}, ErrLimitExceeded)
	h.must(&rationv1.AddCanariesRequest{Service: "s", Canaries: many("a", 1)}) // a replacement fits
}

// A wrong canary answer ends a worker's trust; at
// canary_failures_to_deactivate the worker is deactivated and its
// unvalidated results reverted, by the system, on the record.
func TestCanaries_WrongAnswersDeactivateAndRevert(t *testing.T) {
	h := newUpgraded(t)
	canaryService(h, &rationv1.ValidationPolicy{CanaryRate: 100, CanaryFailuresToDeactivate: 1})
	h.register("s", "w1")
	h.register("s", "w2")
	h.add("s", 0, ids("i", 30)...)
	b := h.acquire("s", "w1", 1)[0]
	h.vote("w1", b, "DM", nil) // right on its canary
	if r := h.regState("s", "w1"); r.TrustRun != 1 || !r.Active() {
		t.Fatalf("after a right canary: run %d, %v", r.TrustRun, r.State)
	}
	other := h.acquire("s", "w1", 1)[0]
	b = h.acquire("s", "w1", 1)[0]
	h.vote("w1", b, "NON_DM", nil) // wrong on its canary
	r := h.regState("s", "w1")
	if r.Active() || !r.Blocked || r.TrustRun != 0 || r.Counters.CanariesFailed != 1 || !strings.Contains(r.Reason, "canary") {
		t.Fatalf("after a wrong canary: %+v", r)
	}
	if r.Counters.ResultsReverted != 20 || r.Held != 0 {
		t.Fatalf("reverted %d results, holds %d; want both batches reverted and the other lease ended", r.Counters.ResultsReverted, r.Held)
	}
	if s := h.svcState("s"); s.Items[itemDone] != 0 || s.Items[pending] != 30 {
		t.Fatalf("item counts %v, want all 30 pending again", s.Items)
	}
	h.refuse(&rationv1.SubmitRequest{WorkerId: "w1", BucketId: other.Id, Epoch: other.Lease.Epoch, Results: results(other, "DM")}, ErrLeaseLost)
	var actions []string
	for _, a := range h.f.State().Activity(ActivityQuery{Worker: "w1", Limit: 100}) {
		if a.Actor == "system" || a.Action == ActCanaryFailed {
			actions = append(actions, a.Action)
		}
	}
	if !slices.Equal(actions, []string{ActCanaryFailed, ActDeactivate, ActRevert}) {
		t.Fatalf("activity: %v", actions)
	}
	h.restored()
}

// Trust is earned by agreeing and lost at the first disagreement; a
// trusted worker's buckets are mostly believed on its word.
func TestValidation_AdaptiveTrustEarnedAndLost(t *testing.T) {
	h := newUpgraded(t)
	h.createService("s", "dmcheck", &rationv1.ServiceConfig{BucketSize: 10,
		Validation: &rationv1.ValidationPolicy{Replicas: 2, Adaptive: true, SpotCheck: 10}})
	h.register("s", "w1")
	h.register("s", "w2")
	h.add("s", 0, ids("i", 400)...)
	s := h.svcState("s")
	if tr := s.Trust(h.regState("s", "w1")); tr.Trusted || tr.ReplicateChance != 1000 {
		t.Fatalf("a new worker's trust: %v", tr)
	}
	// Both answer rightly: the first bucket is replicated (nobody is
	// trusted), then w1 and w2 are, and most buckets are believed.
	for range 40 {
		for _, w := range []string{"w1", "w2"} {
			if bs := h.acquire("s", w, 1); len(bs) > 0 {
				h.vote(w, bs[0], "DM", nil)
			}
		}
	}
	s = h.svcState("s")
	if s.Counters.ResultsUnvalidated == 0 || s.Counters.ResultsValidated == 0 {
		t.Fatalf("counters %+v: want both validated and believed results", s.Counters)
	}
	r := h.regState("s", "w1")
	tr := s.Trust(r)
	if !tr.Trusted || tr.Run < 10 || tr.ReplicateChance >= 1000 || !strings.Contains(tr.Why, "trusted") {
		t.Fatalf("trust after agreeing: %v", tr)
	}
	for { // finish the rest
		bs := h.acquire("s", "w1", 1)
		if len(bs) == 0 {
			break
		}
		h.vote("w1", bs[0], "DM", nil)
		if bs = h.acquire("s", "w2", 1); len(bs) > 0 {
			h.vote("w2", bs[0], "DM", nil)
		}
	}
	// A spot check (every bucket, with spot_check 1000) finds w2 wrong once
	// a third worker settles the item: that ends w2's trust.
	h.must(&rationv1.UpdateServiceRequest{Name: "s", Config: &rationv1.ServiceConfig{BucketSize: 10,
		Validation: &rationv1.ValidationPolicy{Replicas: 2, Adaptive: true, SpotCheck: 1000}}})
	h.add("s", 0, ids("j", 10)...)
	h.vote("w1", h.acquire("s", "w1", 1)[0], "DM", nil)
	h.vote("w2", h.acquire("s", "w2", 1)[0], "NON_DM", nil)
	if st := h.itemState("s", "j00000"); st != pending {
		t.Fatalf("disputed item is %v, want pending for a third vote", st)
	}
	for _, w := range []string{"w3", "w4"} {
		h.register("s", w)
		h.vote(w, h.acquire("s", w, 1)[0], "DM", nil)
	}
	s = h.svcState("s")
	if r := h.regState("s", "w2"); r.Counters.ResultsDisagreed != 10 || r.TrustRun != 0 || s.Trust(r).Trusted {
		t.Fatalf("after disagreeing: run %d, counters %+v", r.TrustRun, r.Counters)
	}
	if v, _ := h.f.State().Item("s", "j00000"); v.State != itemDone || v.Result.Verdict != "DM" {
		t.Fatalf("disputed item: %v %+v", v.State, v.Result)
	}
	h.restored()
}

// Explain says how the votes on an item stand and what a worker's trust is.
func TestValidation_Explain(t *testing.T) {
	h := newUpgraded(t)
	h.createService("s", "dmcheck", policy(&rationv1.ValidationPolicy{Replicas: 2, Adaptive: true}))
	h.register("s", "w1")
	h.register("s", "w2")
	h.add("s", 0, ids("i", 4)...)
	h.vote("w1", h.acquire("s", "w1", 1)[0], "DM", nil)
	lines := func(e *Explanation, ok bool) string {
		if !ok {
			t.Fatal("nothing to explain")
		}
		return strings.Join(e.Lines, "\n")
	}
	got := lines(h.f.State().ExplainItem("s", "i00000"))
	if !strings.Contains(got, "awaiting a quorum of 2 (replicas 2, max_replicas 6): votes so far w1 DM; none of these workers may lease it again") {
		t.Fatalf("pending item:\n%s", got)
	}
	h.vote("w2", h.acquire("s", "w2", 1)[0], "DM", nil)
	got = lines(h.f.State().ExplainItem("s", "i00000"))
	if !strings.Contains(got, "validated by a quorum of 2 (replicas 2): votes w1 DM (agreed), w2 DM (agreed)") {
		t.Fatalf("done item:\n%s", got)
	}
	got = lines(h.f.State().ExplainWorker("s", "w1"))
	if !strings.Contains(got, "validation: 4 results agreed") || !strings.Contains(got, "trust: run 4 < trust_after 10: untrusted") {
		t.Fatalf("worker:\n%s", got)
	}
}
