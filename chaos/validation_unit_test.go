package chaos

import (
	"crypto/sha256"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/anishathalye/porcupine"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/durationpb"

	statev1 "github.com/rationhq/ration/api/ration/state/v1"
	rationv1 "github.com/rationhq/ration/api/ration/v1"
	"github.com/rationhq/ration/fsm"
)

// fsmDriver applies commands to a state machine directly, as the log
// would, and records them as the chaos load records its operations.
type fsmDriver struct {
	t     *testing.T
	f     *fsm.FSM
	index uint64
	now   time.Time
	ops   []op
}

// record adds an operation to the history, after every other.
func (d *fsmDriver) record(o op) {
	o.Call, o.Return = int64(2*len(d.ops)), int64(2*len(d.ops)+1)
	d.ops = append(d.ops, o)
}

func newFSMDriver(t *testing.T) *fsmDriver {
	d := &fsmDriver{t: t, f: fsm.New(nil), now: time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)}
	// Validation needs cluster version 2, which a leader raises once every
	// member applies it: below, a validation policy would apply as an old
	// member applies it, without the policy.
	d.index++
	set := &statev1.Command{Header: &statev1.CommandHeader{ProposedAt: d.now.UnixNano(), Seed: d.index, Proposer: "test", Actor: "system"},
		Op: &statev1.Command_SetClusterVersion{SetClusterVersion: &statev1.SetClusterVersion{Version: fsm.ValidationProtocol}}}
	if res := d.f.ApplyCommand(d.index, set); res.GetError() != nil {
		t.Fatalf("set the cluster version: %v", res.GetError())
	}
	d.apply(&rationv1.CreateServiceRequest{Name: validatedService, Kind: "dmcheck", Config: &rationv1.ServiceConfig{BucketSize: 5,
		LeaseTtl: durationpb.New(chaosLeaseTTL), ResultRetention: durationpb.New(24 * time.Hour),
		Validation: &rationv1.ValidationPolicy{Replicas: 2}}}, "")
	for _, w := range []string{"w1", "w2", "w3"} {
		d.apply(&rationv1.RegisterRequest{Service: validatedService, WorkerId: w}, w)
	}
	return d
}

// apply applies op, as worker when one is named, and fails the test if it
// is refused.
func (d *fsmDriver) apply(op proto.Message, worker string) proto.Message {
	d.t.Helper()
	c, ok := fsm.NewCommand(op)
	if !ok {
		d.t.Fatalf("no command for %T", op)
	}
	d.index++
	d.now = d.now.Add(time.Millisecond)
	c.Header = &statev1.CommandHeader{ProposedAt: d.now.UnixNano(), Seed: d.index, Proposer: "test", Actor: "admin"}
	if worker != "" {
		cred := sha256.Sum256([]byte("secret of " + worker)) // the edge passes the secret's hash
		c.Header.Actor, c.Header.Credential = worker, cred[:]
	}
	res := d.f.ApplyCommand(d.index, c)
	if res.GetError() != nil {
		d.t.Fatalf("%T: %v", op, res.GetError())
	}
	return fsm.Answer(res)
}

func (d *fsmDriver) add(ids ...string) {
	d.apply(&rationv1.AddItemsRequest{Service: validatedService, Items: ids}, "")
	d.record(op{Kind: "add", Service: validatedService, Items: ids, Outcome: outOK})
}

// acquire takes one bucket for worker and records the grant.
func (d *fsmDriver) acquire(worker string) grant {
	d.t.Helper()
	g, ok := d.tryAcquire(worker)
	if !ok {
		d.t.Fatalf("%s was granted nothing", worker)
	}
	return g
}

// tryAcquire asks one bucket for worker, and records the grant if any.
func (d *fsmDriver) tryAcquire(worker string) (grant, bool) {
	res := d.apply(&rationv1.AcquireRequest{Service: validatedService, WorkerId: worker, MaxBuckets: 1}, worker).(*rationv1.AcquireResponse)
	if len(res.Buckets) == 0 {
		return grant{}, false
	}
	b := res.Buckets[0]
	g := grant{Bucket: b.Id, Epoch: b.Lease.GetEpoch(), Items: b.Items}
	d.record(op{Kind: "acquire", Worker: worker, Service: validatedService, Grants: []grant{g}, Outcome: outOK})
	return g, true
}

// finish has w2, w3 and w1, in turn, answer all they get until nothing is
// left.
func (d *fsmDriver) finish() {
	for range 5 {
		for _, w := range []string{"w2", "w3", "w1"} {
			if g, ok := d.tryAcquire(w); ok {
				d.vote(w, g, g.Items, true)
			}
		}
	}
}

// vote submits a result for each of items: the honest answer, or another.
func (d *fsmDriver) vote(worker string, g grant, items []string, honest bool) {
	d.t.Helper()
	var results []*rationv1.ResultInput
	for _, it := range items {
		v := honestVerdict(it)
		if !honest {
			v = map[string]string{"DM": "NON_DM", "NON_DM": "UNKNOWN", "UNKNOWN": "DM"}[v]
		}
		results = append(results, &rationv1.ResultInput{Item: it, Verdict: v})
	}
	res := d.apply(&rationv1.SubmitRequest{WorkerId: worker, BucketId: g.Bucket, Epoch: g.Epoch, Results: results}, worker).(*rationv1.SubmitResponse)
	d.record(op{Kind: "submit", Worker: worker, Service: validatedService, Bucket: g.Bucket, Epoch: g.Epoch,
		Items: items, N: res.Accepted, Outcome: outOK})
}

// exportAll is the owner's store holding every result batch of the state.
func exportAll(st *fsm.State) *exportStore {
	exp := newExportStore()
	for seq, b := range storedBatches(st, exp) {
		exp.batches[seq] = b
	}
	return exp
}

// The validation check must pass an honest run and catch what it is there
// for.
func TestValidated_CatchesViolations(t *testing.T) {
	items := []string{"it1", "it2", "it3", "it4", "it5"}
	// honest: w1 votes on every item but the last (which goes back to the
	// pool without its vote); w2, w3 and w1 in turn, each answering all it
	// gets, decide both buckets.
	honest := func(t *testing.T) *fsmDriver {
		d := newFSMDriver(t)
		d.add(items...)
		g := d.acquire("w1")
		d.vote("w1", g, g.Items[:4], true)
		d.finish()
		return d
	}
	d := honest(t)
	st := d.f.State()
	rep, problems := checkValidated(st, exportAll(st), d.ops)
	if len(problems) != 0 || rep.items["done"] != 5 || rep.batches != 2 || rep.votes != 4 || rep.acked != 4 || rep.closing != 2 {
		t.Fatalf("honest run: %+v, problems:\n%s", rep, strings.Join(problems, "\n"))
	}
	// The lease model agrees with the state machine on the honest run.
	if !porcupine.CheckOperations(leaseModel.ToModel(), modelOps(d.ops)) {
		t.Fatal("the honest run is not linearizable against the lease model")
	}

	tests := []struct {
		name string
		// change tampers with the honest run's history or export, or goes
		// on with the state.
		change func(d *fsmDriver, exp *exportStore) *exportStore
		want   string
	}{
		{"an acknowledged vote is not stored", func(d *fsmDriver, exp *exportStore) *exportStore {
			d.ops = append(d.ops, op{Kind: "submit", Worker: "w3", Service: validatedService, Bucket: 1, Epoch: 99, Items: items[:1], N: 1, Outcome: outOK})
			return exp
		}, "is stored 0 times"},
		{"a vote stored with other items", func(d *fsmDriver, exp *exportStore) *exportStore {
			d.ops[4].Items = []string{"it9"}
			return exp
		}, "stored with items"},
		{"a stored vote no submit sent", func(d *fsmDriver, exp *exportStore) *exportStore {
			d.ops = append(d.ops[:2:2], d.ops[3:]...) // w1's first vote
			return exp
		}, "sent by no submit"},
		{"a bucket granted to its voter", func(d *fsmDriver, exp *exportStore) *exportStore {
			d.ops = append(d.ops, op{Kind: "acquire", Worker: "w1", Service: validatedService, Outcome: outOK,
				Grants: []grant{{Bucket: d.ops[1].Grants[0].Bucket, Epoch: 50}}})
			return exp
		}, "after its acknowledged vote"},
		{"a vote exported", func(d *fsmDriver, exp *exportStore) *exportStore {
			exp.batches[777] = storedBatch{seq: 777, service: validatedService, validated: true, items: items[:1]}
			return exp
		}, "is no result batch of the final state"},
		{"an unvalidated export", func(d *fsmDriver, exp *exportStore) *exportStore {
			for seq, b := range exp.batches {
				b.validated = false
				exp.batches[seq] = b
				break
			}
			return exp
		}, "has results not validated"},
		{"a batch never exported", func(d *fsmDriver, exp *exportStore) *exportStore {
			return newExportStore()
		}, "was never exported"},
		{"an item left pending", func(d *fsmDriver, exp *exportStore) *exportStore {
			d.add("it6")
			return exp
		}, "1 items are pending at the end"},
		{"an item awaiting a quorum", func(d *fsmDriver, exp *exportStore) *exportStore {
			d.add("it6")
			d.vote("w2", d.acquire("w2"), []string{"it6"}, true)
			return exp
		}, "await a quorum at the end"},
		{"disagreeing votes", func(d *fsmDriver, exp *exportStore) *exportStore {
			d.add("it6")
			d.vote("w2", d.acquire("w2"), []string{"it6"}, false)
			d.vote("w3", d.acquire("w3"), []string{"it6"}, true)
			return exp
		}, "1 items are pending at the end"},
		{"two workers agree on a wrong answer", func(d *fsmDriver, exp *exportStore) *exportStore {
			d.add("it6")
			d.vote("w2", d.acquire("w2"), []string{"it6"}, false)
			d.vote("w3", d.acquire("w3"), []string{"it6"}, false)
			return exportAll(d.f.State())
		}, "every worker answered"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d := honest(t)
			exp := tt.change(d, exportAll(d.f.State()))
			_, problems := checkValidated(d.f.State(), exp, d.ops)
			if !slices.ContainsFunc(problems, func(p string) bool { return strings.Contains(p, tt.want) }) {
				t.Fatalf("problems %q, want one with %q", problems, tt.want)
			}
		})
	}
}
