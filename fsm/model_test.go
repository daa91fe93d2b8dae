package fsm

import (
	"flag"
	"fmt"
	"math/rand/v2"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"

	statev1 "github.com/rationhq/ration/api/ration/state/v1"
	rationv1 "github.com/rationhq/ration/api/ration/v1"
)

var modelSteps = flag.Int("model.steps", 4000, "commands per randomized model run")

// TestFSM_RandomizedModel applies thousands of random commands, valid and
// invalid, from workers who hold stale views, and checks after every one
// that the invariants hold, that stats agree with the activity log, and that
// every acknowledged result is kept.
func TestFSM_RandomizedModel(t *testing.T) {
	steps := *modelSteps
	if raceEnabled {
		// Apply runs on one goroutine: the full run (without -race) checks
		// the model; under the race detector half checks the reads.
		steps = max(steps/2, 1)
	}
	for seed := uint64(1); seed <= 3; seed++ {
		t.Run(fmt.Sprintf("seed-%d", seed), func(t *testing.T) {
			t.Parallel()
			runModel(t, seed, steps)
		})
	}
}

type modelRun struct {
	h        *harness
	r        *rand.Rand
	services []string
	workers  []string
	held     map[string][]*rationv1.LeasedBucket // what each worker believes it holds, possibly stale
	acked    uint64                              // results acknowledged by submits
	retry    []retryable
	// maxRemembered is the most done items remembered without a record at once.
	maxRemembered int
}

type retryable struct {
	cmd *statev1.Command
	res *statev1.CommandResult
	at  time.Time
}

func runModel(t *testing.T, seed uint64, steps int) {
	h := newHarness(t)
	m := &modelRun{h: h, r: rand.New(rand.NewPCG(seed, 99)), held: map[string][]*rationv1.LeasedBucket{}}
	h.createService("dm", "dmcheck", &rationv1.ServiceConfig{BucketSize: 3, LeaseTtl: dur(10 * time.Minute),
		ReleaseGrace: dur(2 * time.Minute), MaxAttempts: 3, MaxBucketsPerAcquire: 4, MaxLeasesPerWorker: 6,
		WorkerInactiveAfter: dur(40 * time.Minute), ResultRetention: dur(10 * time.Minute), DoneRetention: dur(20 * time.Minute)})
	// gen's owner lets results nobody acknowledged go after half an hour,
	// and has done items checked again after 25 minutes.
	h.createService("gen", "generic", &rationv1.ServiceConfig{BucketSize: 5, Verdicts: []string{"A", "B", "C"},
		LeaseTtl: dur(5 * time.Minute), ReleaseGrace: dur(time.Minute), MaxAttempts: 2, UnackedResultRetention: dur(30 * time.Minute),
		RefreshAfter: dur(25 * time.Minute)})
	// val checks its results: two workers, adaptive trust, canaries.
	h.upgrade()
	h.createService("val", "dmcheck", &rationv1.ServiceConfig{BucketSize: 3, LeaseTtl: dur(10 * time.Minute),
		MaxAttempts: 3, Validation: &rationv1.ValidationPolicy{Replicas: 2, MaxReplicas: 4, Adaptive: true, TrustAfter: 3,
			CanaryRate: 150, CanaryFailuresToDeactivate: 12}})
	m.addCanaries()
	m.services = []string{"dm", "gen", "val"}
	for i := range 6 {
		m.workers = append(m.workers, fmt.Sprintf("w%d", i))
	}
	for i := 0; i < steps; i++ {
		m.step()
		m.maxRemembered = max(m.maxRemembered, h.f.State().t.remember.Len())
		if err := statsMatchActivity(h.f.State()); err != nil {
			t.Fatalf("step %d: %v", i, err)
		}
	}
	// Every result a submit acknowledged is stored, or was trimmed: dm's
	// only once its owner acknowledged it, gen's perhaps without.
	var stored, trimmed uint64
	for _, s := range []string{"dm", "gen"} { // val's submits are votes

		for _, rb := range h.f.State().Results(s, 0, 1<<30) {
			stored += uint64(rb.Len())
		}
		svc, _ := h.f.State().Service(s)
		trimmed += svc.Counters.ResultsTrimmed
	}
	if stored+trimmed != m.acked {
		t.Fatalf("%d results acknowledged, %d stored and %d trimmed", m.acked, stored, trimmed)
	}
	if dm, _ := h.f.State().Service("dm"); dm.Counters.ResultsDropped != 0 {
		t.Fatalf("dm dropped %d results nobody acknowledged", dm.Counters.ResultsDropped)
	}
	st := h.f.State()
	dm, _ := st.Service("dm")
	gen, _ := st.Service("gen")
	if gen.Counters.ItemsRefreshed == 0 {
		t.Fatalf("seed %d: gen refreshed no done items in %d commands", seed, h.index)
	}
	if m.maxRemembered == 0 {
		t.Fatalf("seed %d: no done item was ever remembered without a record", seed)
	}
	val, _ := st.Service("val")
	c := val.Counters
	if untried := c.ResultsValidated == 0 || c.CanariesPassed == 0 || c.CanariesFailed == 0 || c.ItemsInconclusive == 0; untried && steps >= 4000 {
		t.Fatalf("seed %d: val validated %d, inconclusive %d, canaries passed %d and failed %d: a case went untried",
			seed, c.ResultsValidated, c.ItemsInconclusive, c.CanariesPassed, c.CanariesFailed)
	}
	t.Logf("seed %d: %d commands; dm items %v buckets %v; %d results; counters %+v; gen refreshed %d; up to %d items remembered",
		seed, h.index, dm.Items, dm.Buckets, stored, dm.Counters, gen.Counters.ItemsRefreshed, m.maxRemembered)
}

func (m *modelRun) pick(xs []string) string { return xs[m.r.IntN(len(xs))] }

// addCanaries gives val canaries, now and then naming an item (refused).
func (m *modelRun) addCanaries() {
	var cs []*rationv1.Canary
	for range 1 + m.r.IntN(4) {
		cs = append(cs, &rationv1.Canary{Item: fmt.Sprintf("c%02d", m.r.IntN(20)), Verdict: m.pick([]string{"DM", "DM", "NON_DM"})})
	}
	if m.r.IntN(5) == 0 {
		cs[0].Item = fmt.Sprintf("i%03d", m.r.IntN(150))
	}
	m.h.apply(&rationv1.AddCanariesRequest{Service: "val", Canaries: cs})
}

func (m *modelRun) step() {
	h := m.h
	// dm and gen take three eighths of the commands each, val a quarter.
	svc, w := m.services[m.r.IntN(8)/3], m.pick(m.workers)
	verdicts := map[string][]string{"dm": {"DM", "NON_DM", "UNKNOWN"}, "gen": {"A", "B", "C"}, "val": {"DM", "DM", "DM", "DM", "NON_DM", "UNKNOWN"}}
	switch n := m.r.IntN(100); {
	case n < 12 && svc == "val" && m.r.IntN(6) == 0:
		m.addCanaries()
	case n < 12:
		k := 1 + m.r.IntN(12)
		items := make([]string, k)
		for i := range items {
			// Half the ids are decimal: remembered without a record once done and trimmed.
			if m.r.IntN(2) == 0 {
				items[i] = fmt.Sprint(m.r.IntN(150))
			} else {
				items[i] = fmt.Sprintf("i%03d", m.r.IntN(150))
			}
		}
		if m.r.IntN(30) == 0 {
			items[0] = "bad id" // invalid: the whole add is refused
		}
		h.apply(&rationv1.AddItemsRequest{Service: svc, Items: items, Priority: int32(m.r.IntN(3)), Rerun: m.r.IntN(5) == 0})
	case n < 30:
		res := h.apply(&rationv1.AcquireRequest{Service: svc, WorkerId: w, MaxBuckets: uint32(m.r.IntN(4))})
		m.held[w] = append(m.held[w], res.GetAcquire().GetBuckets()...)
	case n < 52:
		bs := m.held[w]
		if len(bs) == 0 {
			return
		}
		i := m.r.IntN(len(bs))
		b := bs[i]
		if m.r.IntN(4) != 0 {
			m.held[w] = append(bs[:i:i], bs[i+1:]...)
		}
		// All items in order, a prefix in order (Submit's fast path), or
		// a random subset, shuffled half the time.
		var res []*rationv1.ResultInput
		shape := m.r.IntN(3)
		prefix := m.r.IntN(len(b.Items) + 1)
		for i, id := range b.Items {
			if shape == 0 || (shape == 1 && i < max(prefix, 1)) || (shape == 2 && m.r.IntN(5) != 0) {
				res = append(res, &rationv1.ResultInput{Item: id, Verdict: m.pick(verdicts[b.Service])})
			}
		}
		if shape == 2 && m.r.IntN(2) == 0 {
			m.r.Shuffle(len(res), func(i, j int) { res[i], res[j] = res[j], res[i] })
		}
		switch m.r.IntN(20) {
		case 0:
			res = append(res, &rationv1.ResultInput{Item: "i999", Verdict: "DM"}) // not in the bucket
		case 1:
			res = append(res, &rationv1.ResultInput{Item: b.Items[0], Verdict: "bogus"})
		}
		epoch := b.Lease.Epoch
		if m.r.IntN(20) == 0 {
			epoch++
		}
		sender := w
		if m.r.IntN(15) == 0 {
			sender = m.pick(m.workers) // someone else's bucket
		}
		r := h.apply(&rationv1.SubmitRequest{WorkerId: sender, BucketId: b.Id, Epoch: epoch, Results: res})
		if b.Service != "val" {
			m.acked += uint64(r.GetSubmit().GetAccepted())
		}
	case n < 58:
		if bs := m.held[w]; len(bs) > 0 {
			b := bs[m.r.IntN(len(bs))]
			h.apply(&rationv1.ReleaseRequest{WorkerId: w, BucketId: b.Id, Epoch: b.Lease.Epoch})
		}
	case n < 66:
		var refs []*rationv1.BucketRef
		for _, b := range m.held[w] {
			refs = append(refs, &rationv1.BucketRef{Id: b.Id, Epoch: b.Lease.Epoch})
		}
		if len(refs) > 0 {
			h.apply(&statev1.HeartbeatBatch{Entries: []*statev1.HeartbeatEntry{{Request: &rationv1.HeartbeatRequest{WorkerId: w, Buckets: refs}}}})
		}
	case n < 78:
		h.advance(time.Duration(m.r.IntN(180)) * time.Second)
		h.apply(&statev1.Tick{ExpireLeases: m.r.IntN(8) != 0, DeactivateIdle: true, RequestRetention: int64(time.Hour),
			RequestMaxBytes: 64 << 10, TrimResults: true, ForgetDone: true, RefreshDone: true})
	case n < 84:
		h.apply(&rationv1.RegisterRequest{Service: svc, WorkerId: w})
	case n < 86:
		h.apply(&rationv1.UnregisterRequest{Service: svc, WorkerId: w})
	case n < 87:
		h.apply(&rationv1.DeactivateWorkerRequest{Service: svc, WorkerId: w, Reason: "model"})
	case n < 89:
		h.apply(&rationv1.ReactivateWorkerRequest{Service: svc, WorkerId: w})
	case n < 90:
		if m.r.IntN(3) == 0 && (svc != "val" || m.r.IntN(4) == 0) { // val's votes need it active
			h.apply(&rationv1.RevokeServiceRequest{Name: svc})
		} else {
			h.apply(&rationv1.ReinstateServiceRequest{Name: svc})
		}
	case n < 91:
		if m.r.IntN(2) == 0 {
			h.apply(&rationv1.RevertWorkerRequest{Service: svc, WorkerId: w, Since: ts(h.now.Add(-time.Duration(m.r.IntN(60)) * time.Minute))})
			return
		}
		// The owner acknowledges a random seq, now and then past the last batch.
		s, _ := h.f.State().Service(svc)
		h.apply(&rationv1.AckResultsRequest{Service: svc, ThroughSeq: uint64(m.r.IntN(int(s.LastResultSeq) + 3))})
	case n < 94:
		// An impostor presents the wrong secret.
		h.applyAs(&rationv1.AcquireRequest{Service: svc, WorkerId: w}, w, secret("impostor"), "")
	default:
		// A client retries a request id: the same answer, no new effect.
		// Ids are remembered for the hour the ticks keep them.
		for len(m.retry) > 0 && h.now.Sub(m.retry[0].at) > 50*time.Minute {
			m.retry = m.retry[1:]
		}
		if len(m.retry) > 0 && m.r.IntN(2) == 0 {
			rt := m.retry[m.r.IntN(len(m.retry))]
			rt.cmd.Header.ProposedAt = h.now.UnixNano()
			res := h.applyCmd(rt.cmd)
			if !proto.Equal(res, rt.res) {
				h.t.Fatalf("retry answered %v, first %v", res, rt.res)
			}
			return
		}
		c := h.command(&rationv1.AcquireRequest{Service: svc, WorkerId: w, MaxBuckets: 2}, w, secret(w), fmt.Sprintf("r%d", h.index))
		res := h.applyCmd(c)
		m.held[w] = append(m.held[w], res.GetAcquire().GetBuckets()...)
		m.retry = append(m.retry, retryable{cmd: c, res: res, at: h.now})
	}
}

// statsMatchActivity checks that the counters kept on services and
// registrations equal what the (untrimmed) activity log says happened.
func statsMatchActivity(st *State) error {
	type key struct{ svc, worker string }
	type tally struct {
		granted, done, results, expired, deadReleased, released, rejected, heartbeats, reverted, ended, added uint64
	}
	got := map[key]*tally{}
	at := func(k key) *tally {
		if got[k] == nil {
			got[k] = &tally{}
		}
		return got[k]
	}
	registered := map[key]bool{}
	for _, a := range st.Activity(ActivityQuery{Limit: 1 << 30}) {
		if a.Service == "" {
			continue
		}
		keys := []key{{a.Service, ""}} // the service's tally counts every record of it
		wk := key{a.Service, a.Worker}
		if a.Action == ActRegister && a.Reason == "" {
			registered[wk] = true
		}
		// A worker's counters exist from its first registration on.
		if a.Worker != "" && registered[wk] {
			keys = append(keys, wk)
		}
		for _, k := range keys {
			c := at(k)
			if a.Reason != "" {
				// A wrong secret is counted on the service, never on the worker it claimed to be.
				if k.worker == "" || a.Reason != ErrBadCredential.Reason {
					c.rejected++
				}
				continue
			}
			switch a.Action {
			case ActAcquire:
				c.granted += a.Count
			case ActSubmit:
				c.done++
				c.results += a.Count
			case ActLeaseExpired:
				c.expired++
			case ActDeadReleased:
				c.deadReleased++
			case ActRelease:
				c.released++
			case ActHeartbeat:
				c.heartbeats += a.Count
			case ActRevert:
				c.reverted += a.Count
			case ActUnregister, ActDeactivate, ActIdle, ActRevokeService:
				c.ended += a.Count
			case ActAddItems:
				c.added += a.Count
			}
		}
	}
	check := func(what string, c Counters, want *tally, service bool) error {
		if want == nil {
			want = &tally{}
		}
		var byReason uint64
		for _, r := range c.RejectedBy {
			byReason += r.Count
		}
		if byReason != c.Rejected {
			return fmt.Errorf("%s: %d refusals by reason, %d in all", what, byReason, c.Rejected)
		}
		have := tally{c.LeasesGranted, c.BucketsDone, c.ResultsAccepted, c.LeasesExpired, c.DeadReleased, c.LeasesReleased,
			c.Rejected, c.Heartbeats, c.ResultsReverted, c.LeasesEnded, 0}
		if service {
			have.added = c.ItemsAdded
		} else {
			want2 := *want
			want2.added = 0
			want2.ended = have.ended // revocations end leases without a per-worker record
			want = &want2
		}
		if have != *want {
			return fmt.Errorf("%s: counters %+v, activity says %+v", what, have, *want)
		}
		return nil
	}
	for _, s := range st.Services() {
		if err := check("service "+s.Name, s.Counters, got[key{s.Name, ""}], true); err != nil {
			return err
		}
		for _, r := range st.Registrations(s.Name, "", 1<<30) {
			if err := check("worker "+r.Worker+" in "+s.Name, r.Counters, got[key{s.Name, r.Worker}], false); err != nil {
				return err
			}
		}
	}
	return nil
}
