package fsm

import (
	"fmt"
	"hash/fnv"
	"math/rand/v2"
	"testing"

	rationv1 "github.com/rationhq/ration/api/ration/v1"
)

// The trust simulation runs a population of volunteers, some of whom lie,
// through the real apply, and measures how many of the results the service
// ends up believing are wrong and how much extra work believing cost. Each
// validation policy is one line of BenchmarkTrustSimulation; today there
// is a line for "off" (every result is believed), the baseline the others
// are measured against.

// simWorker is one volunteer: how often it answers an item wrongly.
type simWorker struct {
	id   string
	lie  float64 // chance of a wrong answer per item
	pair bool    // a colluder: always the same wrong answer as its partner
}

// simPopulation is honest workers and, making up dishonest percent of the
// population, liars who answer wrongly 30% of the time and one colluding
// pair who always give the same wrong answer.
func simPopulation(n, dishonest int) []simWorker {
	bad := n * dishonest / 100
	var ws []simWorker
	for i := range n {
		w := simWorker{id: fmt.Sprintf("w%03d", i)}
		switch {
		case i < 2 && bad >= 2:
			w.lie, w.pair = 1, true
		case i < bad:
			w.lie = 0.3
		}
		ws = append(ws, w)
	}
	return ws
}

// truth is an item's right verdict.
func truth(item string) string {
	h := fnv.New32a()
	h.Write([]byte(item))
	if h.Sum32()%2 == 0 {
		return "DM"
	}
	return "NON_DM"
}

func wrongOf(v string) string {
	if v == "DM" {
		return "NON_DM"
	}
	return "DM"
}

// simOutcome is what one run measured.
type simOutcome struct {
	items        int // items the service finished
	results      int // results the workers submitted, canary answers included
	wrong        int // finished items whose believed result is wrong
	inconclusive int // items that never reached a quorum
	deactivated  int // workers deactivated by wrong canary answers
}

func (o simOutcome) wrongPct() float64    { return 100 * float64(o.wrong) / float64(o.items) }
func (o simOutcome) overheadPct() float64 { return 100 * (float64(o.results)/float64(o.items) - 1) }

// runTrustSim adds items to a dmcheck service configured by cfg and lets
// the workers, in an order drawn from seed, take a bucket each in turn and
// answer it until nothing is left, then compares what the service holds
// with the truth.
func runTrustSim(tb testing.TB, cfg *rationv1.ServiceConfig, workers []simWorker, items int, seed uint64) simOutcome {
	tb.Helper()
	h := newUpgraded(tb)
	h.check = false // the invariants run once, at the end
	h.createService("sim", "dmcheck", cfg)
	for _, w := range workers {
		h.register("sim", w.id)
	}
	if cfg.GetValidation().GetCanaryRate() > 0 {
		var cs []*rationv1.Canary
		for _, id := range ids("k", 500) {
			cs = append(cs, &rationv1.Canary{Item: id, Verdict: truth(id)})
		}
		h.must(&rationv1.AddCanariesRequest{Service: "sim", Canaries: cs})
	}
	all := ids("", items)
	for i := 0; i < len(all); i += 10000 {
		h.must(&rationv1.AddItemsRequest{Service: "sim", Items: all[i:min(i+10000, len(all))]})
	}
	rng := rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))
	var out simOutcome
	for round := 0; ; round++ {
		if round > 10*items {
			tb.Fatalf("trust simulation: work left after %d rounds", round)
		}
		s, _ := h.f.State().Service("sim")
		if s.Items[pending] == 0 && s.Items[itemLeased] == 0 {
			break
		}
		w := workers[rng.IntN(len(workers))]
		r := h.apply(&rationv1.AcquireRequest{Service: "sim", WorkerId: w.id, MaxBuckets: 1})
		bs := r.GetAcquire().GetBuckets()
		if len(bs) == 0 {
			continue // nothing it may take, or deactivated
		}
		res := make([]*rationv1.ResultInput, len(bs[0].Items))
		for i, id := range bs[0].Items {
			v := truth(id)
			if rng.Float64() < w.lie {
				v = wrongOf(v)
			}
			res[i] = &rationv1.ResultInput{Item: id, Verdict: v}
		}
		h.must(&rationv1.SubmitRequest{WorkerId: w.id, BucketId: bs[0].Id, Epoch: bs[0].Lease.Epoch, Results: res})
		out.results += len(res)
	}
	st := h.f.State()
	if err := st.CheckInvariants(); err != nil {
		tb.Fatal(err)
	}
	for _, id := range all {
		v, _ := st.Item("sim", id)
		switch v.State {
		case itemDone:
			out.items++
			if v.Result.Verdict != truth(id) {
				out.wrong++
			}
		case inconclusive:
			out.inconclusive++
		default:
			tb.Fatalf("item %s is %v at the end", id, v.State)
		}
	}
	for _, w := range workers {
		if r, _ := st.Registration("sim", w.id); !r.Active() {
			out.deactivated++
		}
	}
	return out
}

// simPolicies are the validation policies the simulation compares.
var simPolicies = []struct {
	name string
	cfg  *rationv1.ServiceConfig
}{
	{"off", &rationv1.ServiceConfig{BucketSize: 20}},
	{"replicas=2", &rationv1.ServiceConfig{BucketSize: 20, Validation: &rationv1.ValidationPolicy{Replicas: 2}}},
	{"adaptive", &rationv1.ServiceConfig{BucketSize: 20, Validation: &rationv1.ValidationPolicy{Replicas: 2, Adaptive: true}}},
	{"adaptive+canaries", &rationv1.ServiceConfig{BucketSize: 20, Validation: &rationv1.ValidationPolicy{
		Replicas: 2, Adaptive: true, CanaryRate: 20, CanaryFailuresToDeactivate: 2}}},
}

// BenchmarkTrustSimulation prints, per policy, the share of finished items
// whose believed result is wrong and the extra work spent, with 10% of the
// workers dishonest:
//
//	go test ./fsm -run '^$' -bench TrustSimulation -benchtime 1x
func BenchmarkTrustSimulation(b *testing.B) {
	workers := simPopulation(50, 10)
	for _, p := range simPolicies {
		b.Run(p.name, func(b *testing.B) {
			var out simOutcome
			for b.Loop() {
				out = runTrustSim(b, p.cfg, workers, 20000, 1)
			}
			b.ReportMetric(out.wrongPct(), "wrong_canonical_%")
			b.ReportMetric(out.overheadPct(), "overhead_%")
			fmt.Printf("trust simulation: policy=%s liars=10%% wrong_canonical=%.2f%% overhead=%.0f%% inconclusive=%d deactivated=%d\n",
				p.name, out.wrongPct(), out.overheadPct(), out.inconclusive, out.deactivated)
		})
	}
}

// TestTrustSimulation_ValidationOff: with validation off every result is
// believed, so the wrong share is the dishonest workers' share of the work
// times how often they lie; the simulation must measure that, or it can
// measure nothing.
func TestTrustSimulation_ValidationOff(t *testing.T) {
	workers := simPopulation(50, 10)
	var want float64
	for _, w := range workers {
		want += w.lie / float64(len(workers))
	}
	out := runTrustSim(t, simPolicies[0].cfg, workers, 4000, 7)
	if out.items != 4000 || out.results != 4000 {
		t.Fatalf("finished %d items with %d results, want 4000 and 4000", out.items, out.results)
	}
	if got := out.wrongPct() / 100; got < want*0.6 || got > want*1.4 {
		t.Fatalf("wrong share %.3f, want about %.3f (the dishonest share of work times their lie rate)", got, want)
	}
	t.Logf("policy=off: wrong %.2f%% (expected about %.2f%%), overhead %.0f%%", out.wrongPct(), 100*want, out.overheadPct())
}

// TestTrustSimulation_Targets holds validation to what it promises, with
// 10% of the workers dishonest: with replicas 2 (quorum 2) under 0.5% of
// the canonical results are wrong; adaptive with canaries at 2% keeps under
// 0.5% for at most 20% extra work.
func TestTrustSimulation_Targets(t *testing.T) {
	workers := simPopulation(50, 10)
	items := 20000 // the targets hold at scale: trust takes a while to earn
	for _, p := range simPolicies {
		if p.name == "off" || p.name == "adaptive" {
			continue
		}
		for seed := uint64(1); seed <= 2; seed++ {
			out := runTrustSim(t, p.cfg, workers, items, seed)
			t.Logf("policy=%s seed=%d: wrong %.2f%%, overhead %.0f%%, inconclusive %d, deactivated %d",
				p.name, seed, out.wrongPct(), out.overheadPct(), out.inconclusive, out.deactivated)
			if out.wrongPct() >= 0.5 {
				t.Errorf("policy=%s seed=%d: %.2f%% of the canonical results are wrong, want under 0.5%%", p.name, seed, out.wrongPct())
			}
			if p.name == "adaptive+canaries" && out.overheadPct() > 20 {
				t.Errorf("policy=%s seed=%d: %.0f%% extra work, want at most 20%%", p.name, seed, out.overheadPct())
			}
			if out.items+out.inconclusive != items {
				t.Errorf("policy=%s seed=%d: %d items finished and %d inconclusive of %d", p.name, seed, out.items, out.inconclusive, items)
			}
		}
	}
}
