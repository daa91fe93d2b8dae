package chaos

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"maps"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/rationhq/ration/api/client"
	rationv1 "github.com/rationhq/ration/api/ration/v1"
	"github.com/rationhq/ration/fsm"
)

// wholeLossCycles is how many times the default run (CI's, and -short's)
// kills the whole cluster; a long run (RATION_CHAOS_DURATION) goes on for
// that long, and at least as many times.
const wholeLossCycles = 3

// wholeLossArgs make the nodes snapshot often (every 1-2s once 300 entries
// have gone by, keeping 100 after), so that most restarts restore a
// snapshot and replay the log after it, rather than replay the log alone.
// Nothing touches durability: the Raft log and stable store are a
// raft-boltdb file opened without NoSync (cluster/node.go), so each append
// is fsynced before Raft counts it, as in production; rationd has no flag
// that turns that off. (A SIGKILL leaves the page cache alone, though: what
// this test shows is that nothing is acknowledged before it is written and
// that a restart finds it all, not what a power cut would leave.)
var wholeLossArgs = []string{"--snapshot-interval", "1s", "--snapshot-threshold", "300", "--trailing-logs", "100"}

// probeWriteClient is the client id of the write sent after each restart
// to time the recovery.
const probeWriteClient = 400

// TestChaos_WholeClusterLoss runs the chaos load (owners adding items,
// workers acquiring and submitting, the owner exporting and acknowledging
// results, a direct writer per node) on three nodes and, at a random
// moment, SIGKILLs all three at once, restarts them on the same data dirs,
// and, once a linearizable read succeeds, checks every node's state at or
// past that read's index against every write acknowledged before the read
// was sent: each added item exists, each accepted submit's results are
// stored once with its items (in the state or, trimmed after an
// acknowledgment the state records, in the owner's export store), each
// vote on the validating service is stored once, each service's export position is at least the last
// acknowledged AckResults, and the state keeps its invariants. It repeats
// that on the same data dirs under the same load, logging the time from
// each restart to the first linearizable read and write, then checks the
// whole history as the other chaos tests do (linearizability, epochs,
// results stored exactly once, exports, identical snapshots).
//
// RATION_CHAOS_SEED fixes the kill moments and downtimes (the seed is
// logged); RATION_CHAOS_DURATION makes a long run.
func TestChaos_WholeClusterLoss(t *testing.T) {
	seed := chaosSeed(t)
	r := rand.New(rand.NewPCG(seed, 0x10552))
	long := duration(t, 0)
	dir := runDir(t)
	t.Logf("seed %d (RATION_CHAOS_SEED=%d reproduces the kill moments); data dirs and logs in %s", seed, seed, dir)
	c := startCluster(t, 3, dir, wholeLossArgs...)
	admin, _ := client.New(client.Config{Addrs: c.addrs(), RetryFor: 30 * time.Second})
	services := createServices(t, admin)

	rec := newRecorder()
	ld := &load{rec: rec, addrs: c.addrs(), services: services, exported: newExportStore(), leases: &leaseLog{}, recordAcks: true}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	wg := ld.start(ctx, c)
	wg.Go(func() { ld.exporter(ctx, validatedService) })
	// On a failure too, the load ends before the nodes are killed.
	t.Cleanup(func() { cancel(); wg.Wait() })
	history := filepath.Join(dir, "history.json")
	fail := func(format string, args ...any) {
		t.Helper()
		if err := rec.save(history); err != nil {
			t.Log(err)
		}
		t.Fatalf("seed %d: %s\nnode logs: %s; history: %s", seed, fmt.Sprintf(format, args...), strings.Join(logPaths(c), ", "), history)
	}

	w := &wholeLoss{t: t, c: c, rec: rec, ld: ld, fail: fail}
	start := time.Now()
	var cycles []cycleReport
	for k := 1; k <= wholeLossCycles || (long > 0 && time.Since(start) < long); k++ {
		cycles = append(cycles, w.cycle(k, r))
	}

	// The faults are over: stop the load and hold the whole history to the
	// checks the other chaos tests make.
	cancel()
	wg.Wait()
	if err := rec.save(history); err != nil {
		t.Log(err)
	}
	ops := slices.Clone(rec.ops)
	var problems []string
	st, checked := checkHistory(t, dir, c, ops)
	problems = append(problems, checked...)
	problems = append(problems, checkFinal(st, ld.exported, ops)...)
	problems = append(problems, checkExported(st, services, map[string]bool{"dm-b": true})...)
	final, lost := checkAcked(st, ld.exported, ops, rec.now())
	for _, l := range lost {
		problems = append(problems, l.String())
	}

	counts := map[string]int{}
	for _, o := range ops {
		counts[o.Kind+"/"+outcomeClass(o.Outcome)]++
	}
	t.Logf("%d whole-cluster kills in %s, %d operations %v", len(cycles), time.Since(start).Round(time.Second), len(ops), counts)
	logCycles(t, cycles, ops)
	t.Logf("final state at index %d holds every acknowledged write: %s", st.Index(), final)
	logProgress(t, st, ld, rec)
	if len(problems) > 0 {
		fail("%d violations after the last restart:\n%s", len(problems), summarize(problems, 30))
	}
	if counts["submit/ok"] == 0 || counts["add/ok"] == 0 || counts["ack/ok"] == 0 {
		fail("the load made no progress: %v", counts)
	}
}

// chaosSeed is RATION_CHAOS_SEED, or a fresh seed.
func chaosSeed(t *testing.T) uint64 {
	if s := os.Getenv("RATION_CHAOS_SEED"); s != "" {
		seed, err := strconv.ParseUint(s, 10, 64)
		if err != nil {
			t.Fatalf("RATION_CHAOS_SEED=%q: %v", s, err)
		}
		return seed
	}
	return uint64(time.Now().UnixNano())
}

// wholeLoss is the state of a whole-cluster loss run.
type wholeLoss struct {
	t    *testing.T
	c    *testCluster
	rec  *recorder
	ld   *load
	fail func(format string, args ...any)
}

// cycleReport is what one kill and restart found.
type cycleReport struct {
	k               int
	ran, down       time.Duration // load since the last restart; time the cluster was down
	spread          time.Duration // first to last SIGKILL
	killAt, restart int64         // recorder times
	snapshots       []int         // each node's snapshots on disk at the restart
	read, write     time.Duration // restart to the first linearizable read and write
	readIndex       uint64
	beforeKill      acked // writes acknowledged before the kill
	lastMoment      int   // of which in the lastMoment before it
	checked         acked // writes checked on each node
	checkedIndexes  []uint64
}

// cycle runs the load for a random while, kills every node at once,
// restarts them on their data dirs, waits for a linearizable read and a
// write, and checks every node's state against every write acknowledged
// before the read.
func (w *wholeLoss) cycle(k int, r *rand.Rand) cycleReport {
	t, c, rec := w.t, w.c, w.rec
	rep := cycleReport{k: k}
	since := time.Now()
	sinceRec := rec.now()
	sleep(context.Background(), time.Duration(1500+r.IntN(3000))*time.Millisecond)
	// The kill comes once the load has had each kind of write acknowledged
	// since the last restart (an add, a submit, a vote and an ack), so that
	// every cycle checks some of each made since the last.
	deadline := time.Now().Add(30 * time.Second)
	for !w.progressed(sinceRec) {
		if time.Now().After(deadline) {
			w.fail("cycle %d: within 30s of the restart the load did not have an add, a submit, a vote and an ack each acknowledged", k)
		}
		time.Sleep(50 * time.Millisecond)
	}
	rep.ran = time.Since(since)
	rep.killAt = rec.now()
	rep.spread = c.killAll()
	rec.event(event{Kind: "kill-all", Node: "all", At: rep.killAt, End: rec.now()})
	rep.beforeKill, _ = checkAcked(nil, nil, rec.snapshotOps(), rep.killAt)
	rep.lastMoment = rep.beforeKill.total() - w.ackedBefore(rep.killAt-int64(lastMoment))
	rep.down = time.Duration(r.IntN(1000)) * time.Millisecond
	time.Sleep(rep.down)
	for _, p := range c.procs {
		rep.snapshots = append(rep.snapshots, countSnapshots(p.dataDir))
	}

	rep.restart = rec.now()
	restarted := time.Now()
	for _, p := range c.procs {
		p.start()
	}
	readCall, readIndex, readAt, writeAt := w.probe(k, restarted)
	rep.read, rep.write, rep.readIndex = readAt.Sub(restarted), writeAt.Sub(restarted), readIndex

	// Every node, once it has applied what the read saw, holds every write
	// acknowledged before the read was sent.
	ops := rec.snapshotOps()
	var problems, summary []string
	for _, p := range c.procs {
		st, raw, err := nodeState(p, readIndex, 30*time.Second)
		if err != nil {
			w.fail("cycle %d: %s: %v", k, p.id, err)
		}
		rep.checkedIndexes = append(rep.checkedIndexes, st.Index())
		if err := fsm.CheckSnapshot(bytes.NewReader(raw)); err != nil {
			problems = append(problems, fmt.Sprintf("%s at index %d: %v", p.id, st.Index(), err))
		}
		got, lost := checkAcked(st, w.ld.exported, ops, readCall)
		rep.checked = got
		if len(lost) > 0 {
			summary = append(summary, fmt.Sprintf("%s at index %d lacks %s", p.id, st.Index(), summarizeLost(lost)))
		}
		for _, l := range lost {
			problems = append(problems, fmt.Sprintf("%s at index %d: %s", p.id, st.Index(), l))
		}
	}
	if len(problems) > 0 {
		w.fail("cycle %d: the whole cluster was killed at %s and restarted at %s; a linearizable read sent at %s saw index %d, and:\n%s\n%s",
			k, ms(rep.killAt), ms(rep.restart), ms(readCall), readIndex, strings.Join(summary, "\n"), summarize(problems, 30))
	}
	t.Logf("cycle %d: killed all 3 nodes (signals within %s) after %s of load, down %s, snapshots on disk %v; "+
		"first linearizable read %s, first write %s after the restart; every node at index >= %d holds the %s acknowledged before the read (%s before the kill, %d of them in its last %s)",
		k, rep.spread, rep.ran.Round(time.Millisecond), rep.down.Round(time.Millisecond), rep.snapshots,
		rep.read.Round(time.Millisecond), rep.write.Round(time.Millisecond), readIndex, rep.checked, rep.beforeKill, rep.lastMoment, lastMoment)
	return rep
}

// lastMoment is how long before a kill a write counts as acknowledged at
// the last moment (the log says how many were).
const lastMoment = 200 * time.Millisecond

// ackedBefore counts the writes acknowledged before t.
func (w *wholeLoss) ackedBefore(t int64) int {
	n, _ := checkAcked(nil, nil, w.rec.snapshotOps(), t)
	return n.total()
}

// progressed reports whether the load has had an add, a submit, a vote and
// an ack acknowledged since t.
func (w *wholeLoss) progressed(since int64) bool {
	w.rec.mu.Lock()
	defer w.rec.mu.Unlock()
	seen := map[string]bool{}
	for _, o := range w.rec.ops {
		if o.Outcome == outOK && o.Call >= since && o.Client != probeWriteClient {
			if o.Kind == "submit" && o.Service == validatedService {
				seen["vote"] = true
			} else {
				seen[o.Kind] = true
			}
		}
	}
	return seen["add"] && seen["submit"] && seen["vote"] && seen["ack"]
}

// probe measures the restart: it sends a linearizable read and a write
// (AddItems of a fresh item, one request id for every attempt) at once,
// each tried on every node in turn until one succeeds, and returns when the
// successful read was sent, its index, and when each first succeeded. The
// write is recorded, so later cycles check it too.
func (w *wholeLoss) probe(k int, restarted time.Time) (readCall int64, readIndex uint64, readAt, writeAt time.Time) {
	cl, err := client.New(client.Config{Addrs: w.c.addrs(), CallTimeout: 500 * time.Millisecond, RetryFor: -1})
	if err != nil {
		w.t.Fatal(err)
	}
	deadline := restarted.Add(60 * time.Second)
	var wg sync.WaitGroup
	var readErr, writeErr error
	wg.Go(func() {
		for {
			call := w.rec.now()
			res, err := cl.GetService(context.Background(), &rationv1.GetServiceRequest{Name: "dm-a", Consistency: rationv1.Consistency_CONSISTENCY_LINEARIZABLE})
			if err == nil {
				readCall, readIndex, readAt = call, res.GetRead().GetIndex(), time.Now()
				return
			}
			if readErr = err; time.Now().After(deadline) {
				return
			}
			time.Sleep(20 * time.Millisecond)
		}
	})
	wg.Go(func() {
		req := &rationv1.AddItemsRequest{Service: "dm-a", Items: []string{fmt.Sprintf("probe%03d", k)}, RequestId: client.NewRequestID()}
		o := op{Client: probeWriteClient, Kind: "add", Service: "dm-a", Items: req.Items, Call: w.rec.now()}
		for {
			_, err := cl.AddItems(context.Background(), req)
			o.Return, o.Outcome = w.rec.now(), outcome(err)
			if err == nil {
				writeAt = time.Now()
				break
			}
			if writeErr = err; time.Now().After(deadline) {
				break
			}
			time.Sleep(20 * time.Millisecond)
		}
		w.rec.add(o)
	})
	wg.Wait()
	if readAt.IsZero() || writeAt.IsZero() {
		w.fail("cycle %d: within 60s of the restart, no linearizable read (last error %v) or no write (last error %v) succeeded; %s",
			k, readErr, writeErr, w.c.describe())
	}
	return readCall, readIndex, readAt, writeAt
}

// describe says what each node is doing: its Raft state, or that its
// process has exited.
func (c *testCluster) describe() string {
	var out []string
	for _, p := range c.procs {
		if p.hasExited() {
			out = append(out, fmt.Sprintf("%s: process exited (see %s)", p.id, p.logPath))
			continue
		}
		st, err := p.status(context.Background())
		if err != nil {
			out = append(out, fmt.Sprintf("%s: %v", p.id, err))
			continue
		}
		out = append(out, fmt.Sprintf("%s: %s term %d, leader %q, applied %d", p.id, st.State, st.Term, st.LeaderId, st.AppliedIndex))
	}
	return strings.Join(out, "; ")
}

// hasExited reports whether p's process was started and has since exited
// on its own.
func (p *proc) hasExited() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.cmd == nil {
		return false
	}
	select {
	case <-p.exited:
		return true
	default:
		return false
	}
}

// nodeState waits until node p has applied index at least and returns its
// state (SaveSnapshot, decoded) with the snapshot's bytes.
func nodeState(p *proc, index uint64, timeout time.Duration) (*fsm.State, []byte, error) {
	deadline := time.Now().Add(timeout)
	for {
		raw, at, err := saveSnapshot(p)
		switch {
		case err == nil && at >= index:
			f := fsm.New(nil)
			if err := f.Restore(io.NopCloser(bytes.NewReader(raw))); err != nil {
				return nil, nil, fmt.Errorf("decode its state at index %d: %w", at, err)
			}
			return f.State(), raw, nil
		case time.Now().After(deadline):
			return nil, nil, fmt.Errorf("not at index %d within %s (at %d, %v)", index, timeout, at, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// countSnapshots counts the Raft snapshots in a data dir.
func countSnapshots(dataDir string) int {
	es, _ := os.ReadDir(filepath.Join(dataDir, "snapshots"))
	n := 0
	for _, e := range es {
		if e.IsDir() && !strings.HasSuffix(e.Name(), ".tmp") {
			n++
		}
	}
	return n
}

func logPaths(c *testCluster) []string {
	var out []string
	for _, p := range c.procs {
		out = append(out, p.logPath)
	}
	return out
}

// snapshotOps copies the history so far.
func (r *recorder) snapshotOps() []op {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.ops)
}

// acked counts acknowledged writes.
type acked struct {
	adds, items, submits, votes, acks int
}

func (a acked) total() int { return a.adds + a.submits + a.votes + a.acks }

func (a acked) String() string {
	return fmt.Sprintf("%d adds (%d items), %d submits, %d votes, %d acks", a.adds, a.items, a.submits, a.votes, a.acks)
}

// lostWrite is an acknowledged write a state does not hold as it was
// acknowledged.
type lostWrite struct {
	o    op
	what string
}

func (l lostWrite) String() string { return fmt.Sprintf("%s (%s)", l.what, describe(l.o)) }

// summarizeLost says what a node lost: how many writes of each kind, and
// when the first and last of them were acknowledged.
func summarizeLost(lost []lostWrite) string {
	kinds := map[string]int{}
	first, last := lost[0].o.Return, lost[0].o.Return
	for _, l := range lost {
		kind := l.o.Kind
		if kind == "submit" && l.o.Service == validatedService {
			kind = "vote"
		}
		kinds[kind]++
		first, last = min(first, l.o.Return), max(last, l.o.Return)
	}
	return fmt.Sprintf("%d writes %v, acknowledged from %s to %s", len(lost), kinds, ms(first), ms(last))
}

// checkAcked checks that state st holds every write acknowledged (outcome
// ok) before upTo (recorder time): every item an add added exists; every
// submit's results are stored once, with the submitted items, by its
// worker, in st or, if st says they were acknowledged (a service that trims
// at acknowledgment drops them from the state then), in the owner's export
// store; every vote (a submit
// on the validating service) is stored once, in its bucket or in the result
// batch it helped decide, with its items; and every service's export
// position is at least every acknowledged AckResults. With st nil it only
// counts them. Unlike checkFinal it looks only one way, so it holds while
// the load runs: what st holds beyond the acknowledged writes is not its
// business.
func checkAcked(st *fsm.State, exp *exportStore, ops []op, upTo int64) (acked, []lostWrite) {
	var n acked
	var lost []lostWrite
	type key struct{ bucket, epoch uint64 }
	// The result batches the state holds, and those the owner stored that
	// the state no longer does.
	inState, exported := map[key][]storedBatch{}, map[key][]storedBatch{}
	votes := map[voteKey][]storedVote{}
	if st != nil {
		state := storedBatches(st, newExportStore())
		for _, b := range state {
			inState[key{b.bucket, b.epoch}] = append(inState[key{b.bucket, b.epoch}], b)
		}
		for seq, b := range storedBatches(st, exp) {
			if _, ok := state[seq]; !ok {
				exported[key{b.bucket, b.epoch}] = append(exported[key{b.bucket, b.epoch}], b)
			}
		}
		votes = storedVotes(st)
	}
	ackedThrough := map[string]op{}
	for _, o := range ops {
		if o.Outcome != outOK || o.Return >= upTo {
			continue
		}
		switch {
		case o.Kind == "add":
			n.adds++
			n.items += len(o.Items)
			if st == nil {
				continue
			}
			var missing []string
			for _, id := range o.Items {
				if _, ok := st.Item(o.Service, id); !ok {
					missing = append(missing, id)
				}
			}
			if len(missing) > 0 {
				lost = append(lost, lostWrite{o, fmt.Sprintf("%d of the %d items added to %s are missing: %v", len(missing), len(o.Items), o.Service, missing)})
			}
		case o.Kind == "submit" && o.Service == validatedService:
			n.votes++
			if st == nil {
				continue
			}
			switch got := votes[voteKey{o.Bucket, o.Worker}]; {
			case len(got) != 1:
				lost = append(lost, lostWrite{o, fmt.Sprintf("%s's vote on %s bucket %d (epoch %d, items %v) is stored %d times",
					o.Worker, o.Service, o.Bucket, o.Epoch, o.Items, len(got))})
			case !slices.Equal(got[0].items, o.Items):
				lost = append(lost, lostWrite{o, fmt.Sprintf("%s's vote on %s bucket %d (epoch %d) is stored with items %v, acknowledged with %v",
					o.Worker, o.Service, o.Bucket, o.Epoch, got[0].items, o.Items)})
			}
		case o.Kind == "submit":
			n.submits++
			if st == nil {
				continue
			}
			// Results the state no longer holds were trimmed after the owner
			// stored and acknowledged them: the state must say they were
			// acknowledged.
			got, trimmed := inState[key{o.Bucket, o.Epoch}], false
			if len(got) == 0 {
				got, trimmed = exported[key{o.Bucket, o.Epoch}], true
			}
			switch {
			case len(got) != 1:
				lost = append(lost, lostWrite{o, fmt.Sprintf("results of %s bucket %d epoch %d (items %v by %s) are stored %d times",
					o.Service, o.Bucket, o.Epoch, o.Items, o.Worker, len(got))})
			case !slices.Equal(got[0].items, o.Items) || got[0].worker != o.Worker || got[0].service != o.Service:
				lost = append(lost, lostWrite{o, fmt.Sprintf("%s bucket %d epoch %d: stored results %v by %s in %s, acknowledged %v by %s",
					o.Service, o.Bucket, o.Epoch, got[0].items, got[0].worker, got[0].service, o.Items, o.Worker)})
			case trimmed && ackedThroughIn(st, o.Service) < got[0].seq:
				lost = append(lost, lostWrite{o, fmt.Sprintf("results of %s bucket %d epoch %d (items %v by %s), batch %d in the owner's store, "+
					"are gone from the state, which is acknowledged only through %d", o.Service, o.Bucket, o.Epoch, o.Items, o.Worker,
					got[0].seq, ackedThroughIn(st, o.Service))})
			}
		case o.Kind == "ack":
			n.acks++
			if prev, ok := ackedThrough[o.Service]; !ok || o.Seq > prev.Seq {
				ackedThrough[o.Service] = o
			}
		}
	}
	if st == nil {
		return n, nil
	}
	for _, name := range slices.Sorted(maps.Keys(ackedThrough)) {
		o := ackedThrough[name]
		switch s, ok := st.Service(name); {
		case !ok:
			lost = append(lost, lostWrite{o, fmt.Sprintf("service %s is missing", name)})
		case s.AckedThrough < o.Seq:
			lost = append(lost, lostWrite{o, fmt.Sprintf("service %s is acknowledged through %d, but an AckResults through %d was acknowledged",
				name, s.AckedThrough, o.Seq)})
		}
	}
	return n, lost
}

// ackedThroughIn is service's export position in st (0: no such service).
func ackedThroughIn(st *fsm.State, service string) uint64 {
	if s, ok := st.Service(service); ok {
		return s.AckedThrough
	}
	return 0
}

// storedVotes is every vote st holds: in a bucket still awaiting a quorum,
// or in the validated result batch it helped decide (as checkValidated
// finds them).
func storedVotes(st *fsm.State) map[voteKey][]storedVote {
	votes := map[voteKey][]storedVote{}
	for _, rb := range st.Results(validatedService, 0, 1<<30) {
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
	return votes
}

// logCycles reports the longest recovery, with the load's own first
// acknowledged write after each restart.
func logCycles(t *testing.T, cycles []cycleReport, ops []op) {
	var reads, writes, loads []time.Duration
	checked := 0
	for _, cy := range cycles {
		first := int64(-1)
		for _, o := range ops {
			if o.Outcome == outOK && o.Call >= cy.restart && o.Client != probeWriteClient && (first < 0 || o.Return < first) {
				first = o.Return
			}
		}
		if first >= 0 {
			loads = append(loads, time.Duration(first-cy.restart).Round(time.Millisecond))
		}
		reads, writes = append(reads, cy.read), append(writes, cy.write)
		checked += cy.checked.total()
	}
	longest := func(ds []time.Duration) time.Duration {
		if len(ds) == 0 {
			return 0
		}
		return slices.Max(ds).Round(time.Millisecond)
	}
	t.Logf("recovery after a whole-cluster kill, longest of %d: to a linearizable read %s, to a write %s; the load's first write after each restart: %v",
		len(cycles), longest(reads), longest(writes), loads)
	t.Logf("%d acknowledged writes checked on each node over the cycles (each cycle checks every write acknowledged so far)", checked)
}
