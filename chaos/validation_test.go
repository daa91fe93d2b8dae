package chaos

import (
	"context"
	"fmt"
	"hash/fnv"
	"maps"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/rationhq/ration/api/client"
	rationv1 "github.com/rationhq/ration/api/ration/v1"
	"github.com/rationhq/ration/fsm"
)

// validatedService is the service the chaos load runs under validation
// (replicas 2: every item goes to two distinct workers, and a submit is a
// vote). Its workers are honest: they answer each item the same, so the
// votes always agree. The lease model covers its buckets (a first vote frees
// the bucket barred to its voter, a second closes it); checkValidated holds
// its final state, results and exports to the validation rules.
const validatedService = "dm-v"

// validatedAdd is how many items the owner adds to the validated service
// each round, fewer than to the others: each takes two votes, and the drain
// after the faults finishes them all.
const validatedAdd = 5

// drainClient is the first client id of the drain's workers.
const drainClient = 200

// minDrainTimeout bounds the drain after a short run; a long run's drain
// may take a tenth of the run (its backlog grows with it).
const minDrainTimeout = 90 * time.Second

// honestVerdict is every honest worker's answer for an item: fixed by its
// id.
func honestVerdict(item string) string {
	h := fnv.New32a()
	h.Write([]byte(item))
	return []string{"DM", "NON_DM", "UNKNOWN"}[h.Sum32()%3]
}

// drain finishes the validated service's work once the faults are over:
// one honest worker per worker id acquires and answers every item of what
// it gets until the service has no item pending or leased (the leases the
// load left behind expire and come back first) and its owner has stored
// every result batch (its exporter runs on). It returns how long that took
// and, if it did not finish within timeout, why.
func (l *load) drain(timeout time.Duration) (time.Duration, []string) {
	start := time.Now()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	var wg sync.WaitGroup
	for i := range 3 {
		wg.Go(func() { l.drainWorker(ctx, drainClient+i, fmt.Sprintf("w%d", i+1)) })
	}
	admin, err := client.New(client.Config{Addrs: l.addrs, CallTimeout: time.Second, RetryFor: 5 * time.Second})
	if err != nil {
		panic(err)
	}
	var left *rationv1.ServiceInfo
	for ctx.Err() == nil {
		res, err := admin.GetService(ctx, &rationv1.GetServiceRequest{Name: validatedService, Consistency: rationv1.Consistency_CONSISTENCY_LINEARIZABLE})
		if err == nil {
			left = res.GetService()
			items, exp := left.GetItems(), left.GetExport()
			if items.GetPending() == 0 && items.GetLeased() == 0 && l.exported.has(exp.GetLastSeq()) {
				break
			}
		}
		sleep(ctx, 200*time.Millisecond)
	}
	finished := ctx.Err() == nil
	cancel()
	wg.Wait()
	took := time.Since(start)
	if finished {
		return took, nil
	}
	items, exp := left.GetItems(), left.GetExport()
	return took, []string{fmt.Sprintf("drain: %s still has %d items pending and %d leased (%d awaiting a quorum) after %s; its last result batch is %d, exported: %v",
		validatedService, items.GetPending(), items.GetLeased(), items.GetAwaitingQuorum(), timeout, exp.GetLastSeq(), l.exported.has(exp.GetLastSeq()))}
}

// drainWorker is one honest worker of the drain: it answers every item of
// each bucket it gets, at once.
func (l *load) drainWorker(ctx context.Context, id int, workerID string) {
	c := l.client(5 * time.Second)
	for ctx.Err() == nil {
		o := op{Client: id, Kind: "acquire", Worker: workerID, Service: validatedService, Drain: true, Call: l.rec.now()}
		res, err := c.Acquire(ctx, &rationv1.AcquireRequest{Service: validatedService, WorkerId: workerID, MaxBuckets: 10})
		o.Return, o.Outcome = l.rec.now(), outcome(err)
		for _, b := range res.GetBuckets() {
			o.Grants = append(o.Grants, grant{Bucket: b.Id, Epoch: b.Lease.GetEpoch(), Items: b.Items})
		}
		l.rec.add(o)
		if len(o.Grants) == 0 {
			sleep(ctx, 100*time.Millisecond)
			continue
		}
		for _, g := range o.Grants {
			var results []*rationv1.ResultInput
			for _, it := range g.Items {
				results = append(results, &rationv1.ResultInput{Item: it, Verdict: honestVerdict(it)})
			}
			so := op{Client: id, Kind: "submit", Worker: workerID, Service: validatedService, Bucket: g.Bucket, Epoch: g.Epoch,
				Items: g.Items, Drain: true, Call: l.rec.now()}
			sr, err := c.Submit(ctx, &rationv1.SubmitRequest{WorkerId: workerID, BucketId: g.Bucket, Epoch: g.Epoch, Results: results})
			so.Return, so.Outcome, so.N = l.rec.now(), outcome(err), sr.GetAccepted()
			l.rec.add(so)
		}
	}
}

// voteKey names a vote: a worker votes at most once on a bucket (it may
// not lease a bucket it has voted on again).
type voteKey struct {
	bucket uint64
	worker string
}

// storedVote is a vote the final state holds: in a bucket still awaiting a
// quorum, or in the validated result batch it helped decide.
type storedVote struct {
	items []string
}

// validationReport is what checkValidated found, to log.
type validationReport struct {
	items      map[string]int // the service's items by state
	batches    int            // validated result batches
	votes      int            // votes stored
	acked      int            // acknowledged submits (votes)
	ackedDrain int            // of which the drain's
	closing    int            // of which closed a batch
	grants     int            // grants checked against the votes
	exported   int            // batches exported
}

// checkValidated holds the validated service to the validation rules, from
// the final state (after the drain), the owner's exports and the history:
//
//   - every result batch is validated and holds votes from at least two
//     distinct workers, the last of them the submit that closed it; each of
//     its results is the honest answer, and two distinct workers' votes
//     agree with it;
//   - every item is done with such a result: none is pending, leased,
//     quarantined or inconclusive (the workers are honest and the drain
//     finished the work), and none awaits a quorum;
//   - every acknowledged submit is stored exactly once, as a vote with its
//     items (the state keeps the service's results); if its epoch closed a
//     batch, that batch is its bucket's, by its worker, with its items as
//     the canonical ones (and, above, another worker's vote before it: no
//     submit makes its items done by itself);
//   - every stored vote was sent by a submit that could have succeeded;
//   - no worker was granted a bucket after its vote on it (the leases the
//     history saw);
//   - the owner's export holds exactly the state's batches (the drain waited
//     for it to store them all), each validated, with the same results: a
//     vote is never exported.
func checkValidated(st *fsm.State, exp *exportStore, ops []op) (validationReport, []string) {
	var rep validationReport
	if _, ok := st.Service(validatedService); !ok {
		return rep, []string{fmt.Sprintf("service %s is missing", validatedService)}
	}
	var problems []string
	votes := map[voteKey][]storedVote{}
	byEpoch := map[uint64][]*fsm.ResultBatch{}
	bySeq := map[uint64]*fsm.ResultBatch{}
	for _, rb := range st.Results(validatedService, 0, 1<<30) {
		rep.batches++
		byEpoch[rb.Epoch] = append(byEpoch[rb.Epoch], rb)
		bySeq[rb.Seq] = rb
		problems = append(problems, checkValidatedBatch(rb)...)
		for i := range rb.Votes {
			k := voteKey{rb.Bucket, rb.Votes[i].Worker}
			votes[k] = append(votes[k], storedVote{items: voteItems(&rb.Votes[i])})
		}
	}
	for _, b := range st.Buckets(fsm.BucketQuery{Service: validatedService, Limit: 1 << 30}) {
		if b.State == rationv1.BucketState_BUCKET_STATE_DONE {
			continue
		}
		for i := range b.Votes {
			k := voteKey{b.ID, b.Votes[i].Worker}
			votes[k] = append(votes[k], storedVote{items: voteItems(&b.Votes[i])})
		}
	}
	for _, vs := range votes {
		rep.votes += len(vs)
	}
	problems = append(problems, checkValidatedItems(st, &rep)...)

	type grantSeen struct {
		epoch  uint64
		client int
		call   int64
	}
	sent := map[voteKey][]op{}           // submits that could have succeeded
	granted := map[voteKey][]grantSeen{} // the bucket's grants to the worker
	for _, o := range ops {
		if o.Service != validatedService {
			continue
		}
		switch {
		case o.Kind == "submit" && (o.Outcome == outOK || o.Outcome == outUnknown):
			k := voteKey{o.Bucket, o.Worker}
			sent[k] = append(sent[k], o)
		case o.Kind == "acquire" && o.Outcome == outOK:
			for _, g := range o.Grants {
				k := voteKey{g.Bucket, o.Worker}
				granted[k] = append(granted[k], grantSeen{g.Epoch, o.Client, o.Call})
			}
		}
	}
	for _, o := range ops {
		if o.Service != validatedService || o.Kind != "submit" || o.Outcome != outOK {
			continue
		}
		rep.acked++
		if o.Drain {
			rep.ackedDrain++
		}
		k := voteKey{o.Bucket, o.Worker}
		if o.N != uint32(len(o.Items)) {
			problems = append(problems, fmt.Sprintf("%s: vote on bucket %d (epoch %d) by %s: %d results accepted of %d sent",
				validatedService, o.Bucket, o.Epoch, o.Worker, o.N, len(o.Items)))
		}
		switch got := votes[k]; {
		case len(got) != 1:
			problems = append(problems, fmt.Sprintf("%s: acknowledged vote on bucket %d (epoch %d) by %s is stored %d times",
				validatedService, o.Bucket, o.Epoch, o.Worker, len(got)))
		case !slices.Equal(got[0].items, o.Items):
			problems = append(problems, fmt.Sprintf("%s: bucket %d: %s's vote is stored with items %v, acknowledged with %v (epoch %d)",
				validatedService, o.Bucket, o.Worker, got[0].items, o.Items, o.Epoch))
		}
		closed := byEpoch[o.Epoch]
		if len(closed) > 0 {
			rep.closing++
		}
		if len(closed) > 1 {
			problems = append(problems, fmt.Sprintf("%s: the submit at epoch %d closed %d result batches", validatedService, o.Epoch, len(closed)))
		}
		for _, rb := range closed {
			if items := batchItems(rb); rb.Bucket != o.Bucket || rb.Worker != o.Worker || !slices.Equal(items, o.Items) {
				problems = append(problems, fmt.Sprintf("%s: batch %d (bucket %d, epoch %d) holds %v by %s; the submit at that epoch was bucket %d's, %v by %s",
					validatedService, rb.Seq, rb.Bucket, rb.Epoch, items, rb.Worker, o.Bucket, o.Items, o.Worker))
			}
		}
		for _, g := range granted[k] {
			if g.epoch > o.Epoch {
				problems = append(problems, fmt.Sprintf("%s: bucket %d granted to %s at epoch %d (acquire by client %d at %s), after its acknowledged vote at epoch %d",
					validatedService, o.Bucket, o.Worker, g.epoch, g.client, ms(g.call), o.Epoch))
			}
		}
	}
	for k, vs := range votes {
		if len(vs) > 1 {
			problems = append(problems, fmt.Sprintf("%s: %s has %d votes on bucket %d", validatedService, k.worker, len(vs), k.bucket))
		}
		// The submits that could have cast it; a grant at a later epoch
		// than all of them came after it.
		var last uint64
		for _, o := range sent[k] {
			if slices.Equal(o.Items, vs[0].items) {
				last = max(last, o.Epoch)
			}
		}
		if last == 0 {
			problems = append(problems, fmt.Sprintf("%s: %s's vote on bucket %d (%v) was sent by no submit that could have succeeded",
				validatedService, k.worker, k.bucket, vs[0].items))
			continue
		}
		for _, g := range granted[k] {
			rep.grants++
			if g.epoch > last {
				problems = append(problems, fmt.Sprintf("%s: bucket %d granted to %s at epoch %d (acquire by client %d at %s), after its vote (sent at epoch %d or before)",
					validatedService, k.bucket, k.worker, g.epoch, g.client, ms(g.call), last))
			}
		}
	}
	problems = append(problems, checkValidatedExports(exp, bySeq, &rep)...)
	if rep.acked == rep.ackedDrain {
		problems = append(problems, fmt.Sprintf("%s: no vote was acknowledged through the faults", validatedService))
	}
	return rep, problems
}

// checkValidatedBatch checks one of the validated service's result
// batches: validated, decided by votes from two or more distinct workers
// (the last vote its closing submit's), each result the honest answer with
// two distinct workers' votes agreeing.
func checkValidatedBatch(rb *fsm.ResultBatch) []string {
	var problems []string
	what := fmt.Sprintf("%s: batch %d (bucket %d, epoch %d, by %s)", validatedService, rb.Seq, rb.Bucket, rb.Epoch, rb.Worker)
	var workers []string
	for i := range rb.Votes {
		if slices.Contains(workers, rb.Votes[i].Worker) {
			problems = append(problems, fmt.Sprintf("%s holds two votes from %s", what, rb.Votes[i].Worker))
		}
		workers = append(workers, rb.Votes[i].Worker)
	}
	switch {
	case !rb.Validated:
		problems = append(problems, what+" is not validated: believed on one worker's word")
	case len(rb.Votes) < 2:
		problems = append(problems, fmt.Sprintf("%s was decided by %d votes", what, len(rb.Votes)))
	case workers[len(workers)-1] != rb.Worker:
		problems = append(problems, fmt.Sprintf("%s: its last vote is %s's", what, workers[len(workers)-1]))
	}
	for _, r := range rb.All() {
		if want := honestVerdict(r.Item); r.Verdict != want {
			problems = append(problems, fmt.Sprintf("%s: item %s's result is %q; every worker answered %q", what, r.Item, r.Verdict, want))
		}
		var agree []string
		for i := range rb.Votes {
			if v, ok := rb.Votes[i].Find(r.Item); ok && v.Verdict == r.Verdict && !slices.Contains(agree, rb.Votes[i].Worker) {
				agree = append(agree, rb.Votes[i].Worker)
			}
		}
		if len(agree) < 2 {
			problems = append(problems, fmt.Sprintf("%s: item %s's result %q has the votes of %v only", what, r.Item, r.Verdict, agree))
		}
	}
	return problems
}

// checkValidatedItems checks that every item of the validated service is
// done with a validated result that two distinct workers' votes agree with.
func checkValidatedItems(st *fsm.State, rep *validationReport) []string {
	var problems []string
	rep.items = map[string]int{}
	notDone := map[string][]string{}
	after := ""
	for {
		page := st.Items(validatedService, rationv1.ItemState_ITEM_STATE_UNSPECIFIED, after, 1000)
		if len(page) == 0 {
			break
		}
		for _, v := range page {
			after = v.ID
			state := strings.ToLower(strings.TrimPrefix(v.State.String(), "ITEM_STATE_"))
			rep.items[state]++
			if v.State != rationv1.ItemState_ITEM_STATE_DONE {
				notDone[state] = append(notDone[state], v.ID)
				continue
			}
			if p := checkDoneItem(st, v); p != "" {
				problems = append(problems, fmt.Sprintf("%s: item %s: %s", validatedService, v.ID, p))
			}
		}
	}
	for _, state := range slices.Sorted(maps.Keys(notDone)) {
		ids := notDone[state]
		problems = append(problems, fmt.Sprintf("%s: %d items are %s at the end (honest workers, after the drain: all should be done), e.g. %v",
			validatedService, len(ids), state, ids[:min(len(ids), 5)]))
	}
	if svc, _ := st.Service(validatedService); st.AwaitingQuorum(svc) != 0 {
		problems = append(problems, fmt.Sprintf("%s: %d items await a quorum at the end", validatedService, st.AwaitingQuorum(svc)))
	}
	return problems
}

// checkDoneItem says what is wrong with a done item of the validated
// service, if anything.
func checkDoneItem(st *fsm.State, v fsm.ItemView) string {
	if v.Result == nil {
		return "done without a result"
	}
	b, ok := st.Bucket(v.Bucket)
	if !ok {
		return fmt.Sprintf("done in bucket %d, which is gone", v.Bucket)
	}
	rb, ok := st.ResultBatch(b.ResultSeq)
	switch {
	case !ok:
		return fmt.Sprintf("done in bucket %d, whose result batch %d is gone", b.ID, b.ResultSeq)
	case !rb.Validated:
		return fmt.Sprintf("done with an unvalidated result (batch %d)", rb.Seq)
	case v.Result.Verdict != honestVerdict(v.ID):
		return fmt.Sprintf("result %q; every worker answered %q", v.Result.Verdict, honestVerdict(v.ID))
	}
	var agreed []string
	for _, vv := range st.Votes(validatedService, v) {
		if vv.Agreed && !slices.Contains(agreed, vv.Worker) {
			agreed = append(agreed, vv.Worker)
		}
	}
	if len(agreed) < 2 {
		return fmt.Sprintf("its result (batch %d) has the agreeing votes of %v only", rb.Seq, agreed)
	}
	return ""
}

// checkValidatedExports checks the owner's exports of the validated
// service: each batch validated, and the state's batch with that seq, with
// the same results (the state keeps them: its retention outlasts the run),
// and every state batch exported; and that no other service's export
// claims validation.
func checkValidatedExports(exp *exportStore, bySeq map[uint64]*fsm.ResultBatch, rep *validationReport) []string {
	exp.mu.Lock()
	defer exp.mu.Unlock()
	var problems []string
	for _, seq := range slices.Sorted(maps.Keys(bySeq)) {
		if b, ok := exp.batches[seq]; !ok || b.service != validatedService {
			rb := bySeq[seq]
			problems = append(problems, fmt.Sprintf("%s: batch %d (bucket %d, epoch %d) was never exported", validatedService, seq, rb.Bucket, rb.Epoch))
		}
	}
	seqs := slices.Sorted(maps.Keys(exp.batches))
	for _, seq := range seqs {
		b := exp.batches[seq]
		if b.service != validatedService {
			if b.validated {
				problems = append(problems, fmt.Sprintf("%s: exported batch %d claims validation", b.service, seq))
			}
			continue
		}
		rep.exported++
		if !b.validated {
			problems = append(problems, fmt.Sprintf("%s: exported batch %d (bucket %d, epoch %d) has results not validated", validatedService, seq, b.bucket, b.epoch))
		}
		rb, ok := bySeq[seq]
		if !ok {
			problems = append(problems, fmt.Sprintf("%s: exported batch %d (bucket %d, epoch %d, %v) is no result batch of the final state",
				validatedService, seq, b.bucket, b.epoch, b.items))
			continue
		}
		var verdicts []string
		for _, r := range rb.All() {
			verdicts = append(verdicts, r.Verdict)
		}
		if !slices.Equal(b.items, batchItems(rb)) || !slices.Equal(b.verdicts, verdicts) || b.worker != rb.Worker || b.bucket != rb.Bucket || b.epoch != rb.Epoch {
			problems = append(problems, fmt.Sprintf("%s: exported batch %d is %v %v by %s (bucket %d, epoch %d); the state's is %v %v by %s (bucket %d, epoch %d)",
				validatedService, seq, b.items, b.verdicts, b.worker, b.bucket, b.epoch, batchItems(rb), verdicts, rb.Worker, rb.Bucket, rb.Epoch))
		}
	}
	return problems
}

func voteItems(v *fsm.Vote) []string {
	var out []string
	for _, r := range v.All() {
		out = append(out, r.Item)
	}
	return out
}

func batchItems(rb *fsm.ResultBatch) []string {
	var out []string
	for _, r := range rb.All() {
		out = append(out, r.Item)
	}
	return out
}

// logValidated reports what the validation check covered.
func logValidated(t *testing.T, rep validationReport, drained time.Duration) {
	var states []string
	for _, s := range slices.Sorted(maps.Keys(rep.items)) {
		states = append(states, fmt.Sprintf("%s %d", s, rep.items[s]))
	}
	t.Logf("%s (replicas 2): drained in %s; items %s; %d validated batches, %d votes stored; %d acknowledged votes (%d in the drain; %d closing a batch), %d grants checked against votes; %d batches exported",
		validatedService, drained.Round(time.Millisecond), strings.Join(states, ", "), rep.batches, rep.votes, rep.acked, rep.ackedDrain, rep.closing, rep.grants, rep.exported)
}
