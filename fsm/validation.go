package fsm

import (
	"fmt"
	"slices"
	"strings"

	rationv1 "github.com/rationhq/ration/api/ration/v1"
	"github.com/rationhq/ration/fsm/kind"
)

// Validation checks results before the service believes them. Under a
// policy with replicas above 1, a bucket's items go to several distinct
// workers one after the other: each submit adds a vote and, while some of
// its items lack a quorum, the bucket goes back to the pool with those items
// and its votes, barred to the workers who voted. An item's result becomes
// canonical when a quorum of votes agree (the kind decides what agrees); an
// item that collects max_replicas votes without one is INCONCLUSIVE. Under
// adaptive validation a worker whose last trust_after results or more all
// agreed with the canonical ones has its bucket believed on its word, but
// for a chance of 1/run (at least spot_check) that it is replicated anyway.
// Canaries, items with known answers, are mixed into leases at canary_rate;
// a wrong answer ends a worker's trust, and canary_failures_to_deactivate of
// them deactivate it and revert its unvalidated results. Every choice draws
// on the command's seed.

// Limits and defaults of a validation policy.
const (
	MaxReplicas          = 10
	MaxMaxReplicas       = 20
	DefaultSpotCheck     = 20 // thousandths
	DefaultTrustAfter    = 10
	MaxTrustAfter        = 1_000_000
	MaxCanaryRate        = 500 // per thousand items
	MaxCanaries          = 10000
	MaxCanariesPerAdd    = 1000
	thousand             = 1000
	maxExcludedCandidate = 4096 // ready buckets a grant looks at past those a worker voted on
)

// validationFromProto fills a policy's defaults and checks its limits.
func validationFromProto(p *rationv1.ValidationPolicy) (Validation, error) {
	v := Validation{
		Replicas:                   orU32(p.GetReplicas(), 1),
		Adaptive:                   p.GetAdaptive(),
		SpotCheck:                  orU32(p.GetSpotCheck(), DefaultSpotCheck),
		TrustAfter:                 orU32(p.GetTrustAfter(), DefaultTrustAfter),
		CanaryRate:                 p.GetCanaryRate(),
		CanaryFailuresToDeactivate: p.GetCanaryFailuresToDeactivate(),
		ListTolerance:              p.GetListTolerance(),
		ComparePayload:             p.GetComparePayload(),
	}
	v.Quorum = orU32(p.GetQuorum(), v.Replicas/2+1)
	v.MaxReplicas = orU32(p.GetMaxReplicas(), min(v.Replicas+4, MaxMaxReplicas))
	if v.Replicas == 1 && p.GetMaxReplicas() == 0 {
		v.MaxReplicas = 1
	}
	bad := func(format string, args ...any) (Validation, error) {
		return v, fmt.Errorf("config.validation."+format+": %w", append(args, ErrInvalidConfig)...)
	}
	switch {
	case v.Replicas > MaxReplicas:
		return bad("replicas is %d, want 1 to %d", v.Replicas, MaxReplicas)
	case v.Quorum > v.Replicas:
		return bad("quorum is %d, want 1 to replicas (%d)", v.Quorum, v.Replicas)
	case v.MaxReplicas < v.Replicas || v.MaxReplicas > MaxMaxReplicas:
		return bad("max_replicas is %d, want replicas (%d) to %d", v.MaxReplicas, v.Replicas, MaxMaxReplicas)
	case v.Adaptive && v.Replicas < 2:
		return bad("adaptive needs replicas of 2 or more (it decides when to skip replication)")
	case v.SpotCheck > thousand:
		return bad("spot_check is %d, want 1 to %d (thousandths)", v.SpotCheck, thousand)
	case v.TrustAfter > MaxTrustAfter:
		return bad("trust_after is %d, want 1 to %d", v.TrustAfter, MaxTrustAfter)
	case v.CanaryRate > MaxCanaryRate:
		return bad("canary_rate is %d, want 0 to %d (per thousand items)", v.CanaryRate, MaxCanaryRate)
	}
	return v, nil
}

// defaultValidation is the policy of a service that sets none: every
// result is believed.
var defaultValidation, _ = validationFromProto(nil)

// proto returns the policy as its API message; nil for the default, so that
// a service without validation reads as it did before validation existed.
func (v Validation) proto() *rationv1.ValidationPolicy {
	if v == defaultValidation {
		return nil
	}
	return &rationv1.ValidationPolicy{Replicas: v.Replicas, Quorum: v.Quorum, MaxReplicas: v.MaxReplicas,
		Adaptive: v.Adaptive, SpotCheck: v.SpotCheck, TrustAfter: v.TrustAfter, CanaryRate: v.CanaryRate,
		CanaryFailuresToDeactivate: v.CanaryFailuresToDeactivate, ListTolerance: v.ListTolerance,
		ComparePayload: v.ComparePayload}
}

// margin is how many more votes must agree with a canonical result than
// disagree: as many as a quorum at the first judgement has (quorum agree,
// replicas - quorum may not), so that a disputed item is settled no less
// firmly than an undisputed one. With replicas 2 and quorum 2, a 2-1 split
// waits for a fourth vote.
func (v Validation) margin() int {
	return max(1, 2*int(v.Quorum)-int(v.Replicas))
}

// replicated reports whether results need a quorum.
func (v Validation) replicated() bool { return v.Replicas > 1 }

// ReplicateChance is the chance, in thousandths, that a bucket submitted by
// a worker with this trust run is replicated rather than believed.
func (v Validation) ReplicateChance(run uint64) uint32 {
	if !v.Adaptive || run < uint64(v.TrustAfter) {
		return thousand
	}
	return max(uint32((thousand+run-1)/run), v.SpotCheck)
}

// TrustWhy says, in words, what a worker's trust run earns it.
func (v Validation) TrustWhy(run uint64) string {
	switch {
	case !v.Adaptive:
		return fmt.Sprintf("run %d; validation is not adaptive: every bucket is replicated", run)
	case run < uint64(v.TrustAfter):
		return fmt.Sprintf("run %d < trust_after %d: untrusted, every bucket is replicated", run, v.TrustAfter)
	}
	return fmt.Sprintf("run %d ≥ trust_after %d: trusted, a bucket is replicated with chance %.1f%% (1/run, at least spot_check)",
		run, v.TrustAfter, float64(v.ReplicateChance(run))/10)
}

// canary returns the service's canary with id.
func (s *Service) canary(id string) (Canary, bool) {
	i, ok := slices.BinarySearchFunc(s.Canaries, id, func(c Canary, id string) int { return strings.Compare(c.ID, id) })
	if !ok {
		return Canary{}, false
	}
	return s.Canaries[i], true
}

func validateAddCanaries(r *rationv1.AddCanariesRequest) error {
	if err := checkServiceName(r.GetService()); err != nil {
		return err
	}
	cs := r.GetCanaries()
	if len(cs) == 0 || len(cs) > MaxCanariesPerAdd {
		return fmt.Errorf("canaries has %d entries, want 1 to %d: %w", len(cs), MaxCanariesPerAdd, ErrInvalidArgument)
	}
	seen := make(map[string]bool, len(cs))
	for i, c := range cs {
		if p := idProblem(c.GetItem()); p != "" {
			return fmt.Errorf("canaries[%d].item %s: %w", i, p, ErrInvalidArgument)
		}
		if seen[c.GetItem()] {
			return fmt.Errorf("canaries[%d].item %q is named twice: %w", i, c.GetItem(), ErrInvalidArgument)
		}
		seen[c.GetItem()] = true
		if v := c.GetVerdict(); v == "" || len(v) > kind.MaxVerdictLength {
			return fmt.Errorf("canaries[%d].verdict: want 1 to %d bytes: %w", i, kind.MaxVerdictLength, ErrInvalidArgument)
		}
		if len(c.GetPayload()) > kind.MaxPayloadLimit {
			return fmt.Errorf("canaries[%d].payload is %d bytes, limit %d: %w", i, len(c.GetPayload()), kind.MaxPayloadLimit, ErrInvalidArgument)
		}
	}
	return nil
}

// checkAddCanaries runs addCanaries' refusals (Precheck runs them too):
// answers valid for the kind, ids that are no item of the service, and
// room under MaxCanaries.
func (x *txn) checkAddCanaries(op *rationv1.AddCanariesRequest) (*Service, error) {
	s, err := x.service(op.GetService())
	if err != nil {
		return nil, err
	}
	if err := CheckVersion(x.t.clusterVersion(), op); err != nil {
		return nil, err
	}
	if err := validateAddCanaries(op); err != nil {
		return nil, err
	}
	k := mustKind(s)
	added := 0
	for i, c := range op.GetCanaries() {
		if err := k.Validate(s.Config.settings(), c.GetVerdict(), c.GetPayload()); err != nil {
			return nil, fmt.Errorf("canaries[%d] (item %q): %v: %w", i, c.GetItem(), err, ErrInvalidArgument)
		}
		if _, ok := x.t.item(s.Ordinal, c.GetItem()); ok {
			return nil, fmt.Errorf("canaries[%d]: %q is an item of service %q; a canary needs an id of its own: %w", i, c.GetItem(), s.Name, ErrInvalidArgument)
		}
		if _, ok := x.t.remembered(s.Ordinal, c.GetItem()); ok {
			return nil, fmt.Errorf("canaries[%d]: %q is a done item of service %q; a canary needs an id of its own: %w", i, c.GetItem(), s.Name, ErrInvalidArgument)
		}
		if _, ok := s.canary(c.GetItem()); !ok {
			added++
		}
	}
	if n := len(s.Canaries) + added; n > MaxCanaries {
		return nil, fmt.Errorf("service %q would hold %d canaries, limit %d: %w", s.Name, n, MaxCanaries, ErrLimitExceeded)
	}
	return s, nil
}

func (x *txn) addCanaries(op *rationv1.AddCanariesRequest) (*rationv1.AddCanariesResponse, error) {
	s, err := x.checkAddCanaries(op)
	if err != nil {
		return nil, err
	}
	ms := x.svc(s.Ordinal)
	all := slices.Clone(ms.Canaries)
	resp := &rationv1.AddCanariesResponse{}
	for _, c := range op.GetCanaries() {
		nc := Canary{ID: c.GetItem(), Verdict: c.GetVerdict(), Payload: c.GetPayload()}
		i, found := slices.BinarySearchFunc(all, nc.ID, func(c Canary, id string) int { return strings.Compare(c.ID, id) })
		if found {
			all[i] = nc
			resp.Updated++
		} else {
			all = slices.Insert(all, i, nc)
			resp.Added++
		}
	}
	ms.Canaries = all
	resp.Total = uint32(len(all))
	x.record(&Activity{Action: ActAddCanaries, Service: s.Name, Count: uint64(resp.Added),
		Message: fmt.Sprintf("added %d, updated %d, %d in all", resp.Added, resp.Updated, resp.Total)})
	return resp, nil
}

// mixCanaries draws the canaries a new lease on b shows its holder: about
// canary_rate per thousand of its items (a fraction rounds up with its
// chance), distinct, at random positions among the items.
func (x *txn) mixCanaries(s *Service, b *Bucket) {
	b.Canaries = nil
	rate := s.Config.Validation.CanaryRate
	if rate == 0 || len(s.Canaries) == 0 {
		return
	}
	scaled := uint64(rate) * uint64(len(b.Items))
	k := int(scaled / thousand)
	if x.random().Uint64N(thousand) < scaled%thousand {
		k++
	}
	k = min(k, len(s.Canaries))
	if k == 0 {
		return
	}
	picked := make([]CanaryAt, 0, k)
	for len(picked) < k {
		c := s.Canaries[x.random().IntN(len(s.Canaries))]
		if slices.ContainsFunc(picked, func(p CanaryAt) bool { return p.ID == c.ID }) {
			continue
		}
		picked = append(picked, CanaryAt{ID: c.ID, Position: uint32(x.random().IntN(len(b.Items) + 1))})
	}
	slices.SortStableFunc(picked, func(a, b CanaryAt) int { return int(a.Position) - int(b.Position) })
	b.Canaries = picked
}

// Shown is a bucket's items as its holder sees them: with the lease's
// canaries among them.
func (b *Bucket) Shown() []string {
	if len(b.Canaries) == 0 {
		return b.Items
	}
	out := make([]string, 0, len(b.Items)+len(b.Canaries))
	c := 0
	for i, id := range b.Items {
		for c < len(b.Canaries) && int(b.Canaries[c].Position) <= i {
			out = append(out, b.Canaries[c].ID)
			c++
		}
		out = append(out, id)
	}
	for ; c < len(b.Canaries); c++ {
		out = append(out, b.Canaries[c].ID)
	}
	return out
}

// isShownCanary reports whether id is one of the canaries of b's lease.
func isShownCanary(b *Bucket, id string) bool {
	return slices.ContainsFunc(b.Canaries, func(c CanaryAt) bool { return c.ID == id })
}

// judgeCanaries takes a lease's canary answers out of results, scores each
// against the canary's known answer, and returns the rest. It reports
// whether the worker reached canary_failures_to_deactivate.
func (x *txn) judgeCanaries(s, ms *Service, b *Bucket, r *Registration, results []*rationv1.ResultInput) ([]*rationv1.ResultInput, bool) {
	if len(b.Canaries) == 0 {
		return results, false
	}
	k, settings := mustKind(s), s.Config.settings()
	real := make([]*rationv1.ResultInput, 0, len(results))
	var failed []string
	for _, in := range results {
		if !isShownCanary(b, in.GetItem()) {
			real = append(real, in)
			continue
		}
		c, ok := s.canary(in.GetItem())
		if !ok {
			continue // replaced since the grant: nothing to judge against
		}
		if k.Agree(settings, kind.Result{Verdict: c.Verdict, Payload: c.Payload}, kind.Result{Verdict: in.GetVerdict(), Payload: in.GetPayload()}) {
			ms.Counters.CanariesPassed++
			r.Counters.CanariesPassed++
			r.TrustRun++
			continue
		}
		ms.Counters.CanariesFailed++
		r.Counters.CanariesFailed++
		r.TrustRun = 0
		failed = append(failed, fmt.Sprintf("%s: %q, not %q", c.ID, in.GetVerdict(), c.Verdict))
	}
	if len(failed) > 0 {
		x.record(&Activity{Action: ActCanaryFailed, Service: s.Name, Worker: r.Worker, Actor: r.Worker, Bucket: b.ID,
			Count: uint64(len(failed)), Message: "wrong canary answers (" + strings.Join(failed, "; ") + "); trust run reset"})
	}
	limit := s.Config.Validation.CanaryFailuresToDeactivate
	return real, len(failed) > 0 && limit > 0 && r.Counters.CanariesFailed >= uint64(limit)
}

// believe reports whether a submit on b is believed without a quorum: the
// service does not replicate, or, under adaptive validation, the bucket is
// in its first round, the worker is trusted, and the draw spares it.
func (x *txn) believe(s *Service, b *Bucket, r *Registration) bool {
	v := s.Config.Validation
	if !v.replicated() {
		return true
	}
	if !v.Adaptive || len(b.Votes) > 0 {
		return false
	}
	chance := v.ReplicateChance(r.TrustRun)
	return chance < thousand && x.random().Uint64N(thousand) >= uint64(chance)
}

// votedOn reports whether worker has a vote on b: it may not lease b again.
func votedOn(b *Bucket, worker string) bool {
	return slices.ContainsFunc(b.Votes, func(v Vote) bool { return v.Worker == worker })
}

// Find returns the vote's result for an item.
func (v *Vote) Find(item string) (Result, bool) {
	rb := ResultBatch{n: v.n, encoded: v.encoded}
	return rb.Find(item)
}

// All yields the vote's results.
func (v *Vote) All() func(func(int, Result) bool) {
	rb := ResultBatch{n: v.n, encoded: v.encoded}
	return rb.All()
}

// Len returns the number of results in the vote.
func (v *Vote) Len() int { return v.n }

func mustKind(s *Service) kind.Kind {
	k, ok := kind.Lookup(s.Kind)
	if !ok {
		panic(fmt.Sprintf("fsm: service %q has unregistered kind %q", s.Name, s.Kind))
	}
	return k
}

// VoteView is one worker's result for an item under validation.
type VoteView struct {
	Worker string
	At     int64
	Result Result
	// Agreed: it agrees with the item's canonical result.
	Agreed bool
}

// Votes returns the votes on an item: those its canonical result was
// judged from, once done, or those it holds while it awaits a quorum.
func (s *State) Votes(service string, v ItemView) []VoteView {
	svc, ok := s.t.serviceByName(service)
	if !ok || v.Item == nil || v.parked() {
		return nil
	}
	b, ok := s.t.bucket(v.Bucket)
	if !ok {
		return nil
	}
	votes := b.Votes
	var canon *Result
	if b.State == done {
		rb, ok := s.t.results.Get(&ResultBatch{Seq: b.ResultSeq})
		if !ok {
			return nil
		}
		votes, canon = rb.Votes, v.Result
	}
	k, settings := mustKind(svc), svc.Config.settings()
	var out []VoteView
	for i := range votes {
		r, ok := votes[i].Find(v.ID)
		if !ok {
			continue
		}
		agreed := canon != nil && k.Agree(settings, verdictOf(*canon), verdictOf(r))
		out = append(out, VoteView{Worker: votes[i].Worker, At: votes[i].At, Result: r, Agreed: agreed})
	}
	return out
}

// AwaitingQuorum counts a service's pending and leased items that hold
// votes and wait for more.
func (s *State) AwaitingQuorum(svc *Service) int64 {
	var n int64
	s.t.voting.Ascend(svcSeq{service: svc.Ordinal}, func(k svcSeq) bool {
		if k.service != svc.Ordinal {
			return false
		}
		b, _ := s.t.bucket(k.seq)
		n += int64(len(b.Items))
		return true
	})
	return n
}

// Trust returns what a worker has earned under the service's validation;
// nil when the service validates nothing.
func (s *Service) Trust(r *Registration) *rationv1.Trust {
	v := s.Config.Validation
	if v == defaultValidation {
		return nil
	}
	chance := v.ReplicateChance(r.TrustRun)
	return &rationv1.Trust{Run: r.TrustRun, Trusted: chance < thousand, ReplicateChance: chance, Why: v.TrustWhy(r.TrustRun)}
}
