package chaos

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"sync"
	"syscall"
	"testing"
	"time"

	"connectrpc.com/connect"
	"github.com/anishathalye/porcupine"
	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/rationhq/ration/api/client"
	rationv1 "github.com/rationhq/ration/api/ration/v1"
	"github.com/rationhq/ration/cluster/clustertest"
	"github.com/rationhq/ration/fsm"
)

// duration is how long the nemesis runs: short by default (CI), or
// RATION_CHAOS_DURATION (e.g. 30m) for a long run.
func duration(t *testing.T, short time.Duration) time.Duration {
	if s := os.Getenv("RATION_CHAOS_DURATION"); s != "" {
		d, err := time.ParseDuration(s)
		if err != nil {
			t.Fatalf("RATION_CHAOS_DURATION=%q: %v", s, err)
		}
		return d
	}
	return short
}

func TestChaos_ThreeNodes(t *testing.T) {
	runChaos(t, 3, duration(t, 60*time.Second), []string{"kill-leader", "stop-leader", "kill-follower", "partition", "remove-readd", "transfer"})
}

func TestChaos_FiveNodes(t *testing.T) {
	runChaos(t, 5, duration(t, 30*time.Second), []string{"kill-leader", "stop-leader", "partition", "kill-follower"})
}

func runChaos(t *testing.T, n int, d time.Duration, nemeses []string) {
	dir := runDir(t)
	c := startCluster(t, n, dir)
	admin, _ := client.New(client.Config{Addrs: c.addrs(), RetryFor: 30 * time.Second})
	services := createServices(t, admin)
	rec := newRecorder()
	ld := &load{rec: rec, addrs: c.addrs(), services: services, exported: newExportStore(), leases: &leaseLog{}}
	ctx, cancel := context.WithTimeout(context.Background(), d)
	defer cancel()
	// The expiry watcher and the validated service's export run on through
	// the heal and the drain.
	wctx, wcancel := context.WithCancel(context.Background())
	defer wcancel()
	var watcher sync.WaitGroup
	watcher.Go(func() { ld.watchExpiries(wctx) })
	watcher.Go(func() { ld.exporter(wctx, validatedService) })
	wg := ld.start(ctx, c)
	rounds := nemesis(ctx, t, c, rec, admin, nemeses)
	cancel()
	wg.Wait()
	loadOps := len(rec.ops)
	history := filepath.Join(dir, "history.json")
	if err := rec.save(history); err != nil {
		t.Log(err)
	}
	heal(t, c, admin)
	// The faults are over: honest workers finish the validated service's
	// work, so that its final state can be held to all done, and all of it
	// exported.
	drained, problems := ld.drain(max(minDrainTimeout, d/10))
	wcancel()
	watcher.Wait()
	if err := rec.save(history); err != nil { // with the drain
		t.Log(err)
	}

	// Checks.
	ops := rec.ops
	st, checked := checkHistory(t, dir, c, ops)
	problems = append(problems, checked...)
	problems = append(problems, checkFinal(st, ld.exported, ops)...)
	problems = append(problems, checkExported(st, services, map[string]bool{"dm-b": true})...)
	validated, badValidation := checkValidated(st, ld.exported, ops)
	problems = append(problems, badValidation...)
	waits, late := checkWaits(ops[:loadOps], rec.events, rec.elections)
	problems = append(problems, late...)
	expiries, badExpiries := checkExpiries(ld.leases, ops, rec.now())
	problems = append(problems, badExpiries...)

	counts := map[string]int{}
	for _, o := range ops {
		counts[o.Kind+"/"+outcomeClass(o.Outcome)]++
	}
	t.Logf("%d nodes, %s: %d nemesis rounds, %d operations %v", n, d, rounds, len(ops), counts)
	logProgress(t, st, ld, rec)
	logValidated(t, validated, drained)
	logWaits(t, waits)
	logExpiries(t, expiries, ld.leases)
	if len(problems) > 0 {
		t.Fatalf("%d violations:\n%s", len(problems), summarize(problems, 30))
	}
	if counts["submit/ok"] == 0 || counts["acquire/ok"] == 0 {
		t.Fatalf("the load made no progress: %v", counts)
	}
}

// runDir makes the folder of a run's data dirs, node logs and history,
// removed when the test passes and kept, and named, when it fails.
func runDir(t *testing.T) string {
	dir, err := os.MkdirTemp("", "ration-chaos-"+t.Name()+"-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("history, node logs and the linearizability visualization are kept in %s", dir)
			return
		}
		os.RemoveAll(dir)
	})
	return dir
}

// createServices creates the services the load drives and returns their
// names. Every service's owner exports and acknowledges; dm-b's results
// are trimmed as soon as they are acknowledged, dm-a's are kept, and so are
// the validated service's (with the votes that decided them) for longer
// than any run.
func createServices(t *testing.T, admin *client.Client) []string {
	services := []string{"dm-a", "dm-b", validatedService}
	// Validation waits for cluster version 2, which the leader raises within
	// a second or so of a new cluster's start, once it has heard from every
	// member.
	deadline := time.Now().Add(30 * time.Second)
	for _, s := range services {
		for {
			_, err := admin.CreateService(context.Background(), createRequest(s))
			if versionRefusal(err) && time.Now().Before(deadline) {
				time.Sleep(100 * time.Millisecond)
				continue
			}
			if err != nil {
				t.Fatal(err)
			}
			break
		}
	}
	return services
}

// createRequest is the CreateService request of one of the load's
// services (createServices).
func createRequest(name string) *rationv1.CreateServiceRequest {
	retention := map[string]*durationpb.Duration{"dm-a": durationpb.New(time.Hour), "dm-b": durationpb.New(0),
		validatedService: durationpb.New(24 * time.Hour)}
	validation := map[string]*rationv1.ValidationPolicy{validatedService: {Replicas: 2}}
	return &rationv1.CreateServiceRequest{Name: name, Kind: "dmcheck",
		Config: &rationv1.ServiceConfig{BucketSize: 5, LeaseTtl: durationpb.New(chaosLeaseTTL),
			ReleaseGrace: durationpb.New(time.Second), MaxAttempts: 1000, MaxLeasesPerWorker: 1000,
			ResultRetention: retention[name], Validation: validation[name]}}
}

// logProgress reports how far the export got and how long writes were
// unavailable after the leader went away.
func logProgress(t *testing.T, st *fsm.State, ld *load, rec *recorder) {
	for _, name := range ld.services {
		if s, ok := st.Service(name); ok {
			t.Logf("%s: acknowledged through %d of %d, %d results trimmed", name, s.AckedThrough, s.LastResultSeq, s.Counters.ResultsTrimmed)
		}
	}
	t.Logf("the owner stored %d exported batches (%d received twice)", len(ld.exported.batches), ld.exported.dups)
	kinds := map[string]int{}
	for _, e := range rec.events {
		kinds[e.Kind]++
	}
	t.Logf("nemesis events: %v", kinds)
	for _, kind := range []string{"kill-leader", "stop-leader"} {
		if u := rec.unavailability(kind); len(u) > 0 {
			sort.Slice(u, func(i, j int) bool { return u[i] < u[j] })
			t.Logf("write unavailability after %s: median %s, max %s over %d rounds", kind,
				u[len(u)/2].Round(time.Millisecond), u[len(u)-1].Round(time.Millisecond), len(u))
		}
	}
}

// start runs the load until ctx ends: an owner, an exporter per service
// but the validated one, six workers, a direct writer per node, and the
// election watcher. (The expiry watcher and the validated service's
// exporter run apart: on through the drain.)
func (l *load) start(ctx context.Context, c *testCluster) *sync.WaitGroup {
	var wg sync.WaitGroup
	wg.Go(func() { l.owner(ctx, 0) })
	for _, s := range l.services {
		if s != validatedService {
			wg.Go(func() { l.exporter(ctx, s) })
		}
	}
	for i := range 6 {
		wg.Go(func() { l.worker(ctx, i+1, fmt.Sprintf("w%d", i/2+1), uint64(i)) })
	}
	for i, p := range c.procs {
		wg.Go(func() { l.directWriter(ctx, directClient+i, p) })
	}
	wg.Go(func() { watchElections(ctx, c, l.rec) })
	return &wg
}

func outcomeClass(o string) string {
	if o == outOK || o == outUnknown {
		return o
	}
	return "fail"
}

// nemesis injects faults until ctx ends and returns how many it injected.
func nemesis(ctx context.Context, t *testing.T, c *testCluster, rec *recorder, admin *client.Client, kinds []string) int {
	r := rand.New(rand.NewPCG(uint64(time.Now().UnixNano()), 1))
	rounds := 0
	for {
		sleep(ctx, time.Duration(800+r.IntN(1500))*time.Millisecond)
		if ctx.Err() != nil {
			return rounds
		}
		l := c.leader()
		if l < 0 {
			continue
		}
		kind := kinds[r.IntN(len(kinds))]
		pause := time.Duration(500+r.IntN(1500)) * time.Millisecond
		follower := (l + 1 + r.IntN(len(c.procs)-1)) % len(c.procs)
		e := event{Kind: kind, At: rec.now()}
		switch kind {
		case "kill-leader":
			e.Node, e.Leader = c.procs[l].id, true
			c.procs[l].kill()
			sleep(ctx, pause)
			c.procs[l].start()
		case "stop-leader":
			e.Node, e.Leader = c.procs[l].id, true
			c.procs[l].signal(syscall.SIGSTOP)
			// Long enough (3-4.5s) that a write waiting for the frozen
			// leader to wake would wait more than 2s past the election.
			sleep(ctx, pause+2500*time.Millisecond)
			c.procs[l].signal(syscall.SIGCONT)
		case "kill-follower":
			e.Node = c.procs[follower].id
			c.procs[follower].kill()
			sleep(ctx, pause)
			c.procs[follower].start()
		case "partition":
			i := r.IntN(len(c.procs))
			e.Node, e.Leader = c.procs[i].id, i == l
			c.cutNode(i, true)
			sleep(ctx, pause+time.Second)
			c.cutNode(i, false)
		case "remove-readd":
			p := c.procs[follower]
			e.Node = p.id
			actx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
			if _, err := admin.Remove(actx, &rationv1.RemoveRequest{NodeId: p.id}); err != nil {
				t.Logf("remove %s: %v", p.id, err) // it may have happened anyway: re-add regardless
			}
			sleep(ctx, pause)
			if _, err := admin.Join(actx, p.joinRequest()); err != nil {
				t.Logf("re-add %s: %v", p.id, err)
			}
			cancel()
		case "clock-leader", "clock-follower", "clock-strobe":
			clockNemesis(ctx, c, r, kind, l, follower, pause, &e)
		case "transfer":
			e.Node, e.Leader = c.procs[l].id, true
			actx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			if _, err := admin.TransferLeadership(actx, &rationv1.TransferLeadershipRequest{}); err != nil {
				t.Logf("transfer: %v", err)
			}
			cancel()
		}
		e.End = rec.now()
		rec.event(e)
		rounds++
	}
}

// heal ends every fault, puts every node back in the configuration
// (joining is idempotent), and waits for a leader that all nodes follow.
func heal(t *testing.T, c *testCluster, admin *client.Client) {
	for i, p := range c.procs {
		c.cutNode(i, false)
		p.setClock(0)
		p.signal(syscall.SIGCONT)
		if !p.running() {
			p.start()
		}
	}
	for _, p := range c.procs {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		if _, err := admin.Join(ctx, p.joinRequest()); err != nil {
			t.Logf("heal: join %s: %v", p.id, err)
		}
		cancel()
	}
	clustertest.WaitFor(c.t, 60*time.Second, func() error {
		for _, p := range c.procs {
			st, err := p.status(context.Background())
			if err != nil {
				return err
			}
			if len(st.Members) != len(c.procs) || st.LeaderId == "" {
				return fmt.Errorf("%s: %d members, leader %q", p.id, len(st.Members), st.LeaderId)
			}
		}
		return nil
	})
}

// joinRequest is node p's Join as an operator sends it (rationctl cluster
// join asks the node): naming its build, so that the leader can hold it to
// the cluster version, which refuses a node that names none once the
// version is 2. A node running this build applies protocols up to
// fsm.MaxProtocol; one running another build (the rolling upgrade's old
// nodes, from before versions) names none.
func (p *proc) joinRequest() *rationv1.JoinRequest {
	req := &rationv1.JoinRequest{NodeId: p.id, RaftAddress: p.raft, ApiAddress: p.api}
	if p.bin != "" && p.bin != rationdBin {
		return req
	}
	req.MaxProtocol = fsm.MaxProtocol
	if st, err := p.status(context.Background()); err == nil {
		req.Release = st.Release
	}
	return req
}

// checkHistory holds a run's history to the checks every chaos test
// makes: epochs never shared, linearizability against the lease model (a
// failure leaves linearizability.html in dir), the same state on every node,
// and every invariant in it. It returns that state.
func checkHistory(t *testing.T, dir string, c *testCluster, ops []op) (*fsm.State, []string) {
	var problems []string
	problems = append(problems, checkEpochs(ops)...)
	model := leaseModel.ToModel()
	res, info := porcupine.CheckOperationsVerbose(model, modelOps(ops), time.Minute)
	if res != porcupine.Ok {
		problems = append(problems, fmt.Sprintf("history not linearizable against the lease model: %s", res))
		if err := porcupine.VisualizePath(model, info, filepath.Join(dir, "linearizability.html")); err != nil {
			t.Logf("visualization: %v", err)
		}
	}
	st, same := finalStates(t, c)
	problems = append(problems, same...)
	if err := st.CheckInvariants(); err != nil {
		problems = append(problems, fmt.Sprintf("final state: %v", err))
	}
	return st, problems
}

// finalStates fetches every node's state once they all have applied the
// same index, checks that the snapshots are byte-identical, and returns
// the state decoded.
func finalStates(t *testing.T, c *testCluster) (*fsm.State, []string) {
	var snaps [][]byte
	var idx []uint64
	var problems []string
	clustertest.WaitFor(c.t, 60*time.Second, func() error {
		snaps, idx = nil, nil
		for _, p := range c.procs {
			snap, index, err := saveSnapshot(p)
			if err != nil {
				return err
			}
			snaps, idx = append(snaps, snap), append(idx, index)
		}
		for i := range idx {
			if idx[i] != idx[0] {
				return fmt.Errorf("nodes at indexes %v", idx)
			}
		}
		return nil
	})
	for i := range snaps {
		if !bytes.Equal(snaps[i], snaps[0]) {
			problems = append(problems, fmt.Sprintf("%s and %s hold different states at index %d", c.procs[0].id, c.procs[i].id, idx[0]))
		}
	}
	f := fsm.New(nil)
	if err := f.Restore(io.NopCloser(bytes.NewReader(snaps[0]))); err != nil {
		t.Fatalf("decode the final state: %v", err)
	}
	return f.State(), problems
}

// saveSnapshot fetches node p's state as SaveSnapshot streams it, and its
// index.
func saveSnapshot(p *proc) ([]byte, uint64, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	stream, err := p.clusterClient().SaveSnapshot(ctx, connect.NewRequest(&rationv1.SaveSnapshotRequest{}))
	if err != nil {
		return nil, 0, err
	}
	var buf bytes.Buffer
	var index uint64
	for stream.Receive() {
		if index == 0 {
			index = stream.Msg().Index
		}
		buf.Write(stream.Msg().Data)
	}
	if err := stream.Err(); err != nil {
		return nil, 0, err
	}
	return buf.Bytes(), index, nil
}

// checkFinal holds the final state and the owner's exported results to the
// history: every acknowledged submit is stored exactly once, in the state
// or exported (where its results went if they were trimmed), with its
// results; every stored result comes from a submit that was sent; every
// acknowledged item exists. A submit on the validated service is a vote,
// which makes no result batch by itself: checkValidated finds those; a
// validated batch comes from the submit that closed it, like any other.
func checkFinal(st *fsm.State, exp *exportStore, ops []op) []string {
	var problems []string
	type key struct {
		bucket, epoch uint64
	}
	stored := map[key][]storedBatch{}
	for _, b := range storedBatches(st, exp) {
		k := key{b.bucket, b.epoch}
		stored[k] = append(stored[k], b)
	}
	sent := map[key]op{}
	for _, o := range ops {
		switch o.Kind {
		case "submit":
			if o.Outcome == outOK || o.Outcome == outUnknown {
				sent[key{o.Bucket, o.Epoch}] = o
			}
			if o.Outcome != outOK || o.Service == validatedService {
				continue // a vote: checkValidated finds it
			}
			got := stored[key{o.Bucket, o.Epoch}]
			if len(got) != 1 {
				problems = append(problems, fmt.Sprintf("acknowledged submit of bucket %d epoch %d is stored %d times", o.Bucket, o.Epoch, len(got)))
				continue
			}
			if items := got[0].items; uint32(len(items)) != o.N || !slices.Equal(items, o.Items) || got[0].worker != o.Worker {
				problems = append(problems, fmt.Sprintf("bucket %d epoch %d: stored results %v by %s, acknowledged %v (%d) by %s",
					o.Bucket, o.Epoch, items, got[0].worker, o.Items, o.N, o.Worker))
			}
		case "add":
			if o.Outcome != outOK {
				continue
			}
			for _, id := range o.Items {
				if _, ok := st.Item(o.Service, id); !ok {
					problems = append(problems, fmt.Sprintf("acknowledged item %s/%s is missing", o.Service, id))
				}
			}
		}
	}
	for k, bs := range stored {
		o, ok := sent[k]
		if !ok {
			problems = append(problems, fmt.Sprintf("results stored for bucket %d epoch %d, which no submit that could have succeeded sent", k.bucket, k.epoch))
			continue
		}
		if bs[0].worker != o.Worker {
			problems = append(problems, fmt.Sprintf("bucket %d epoch %d stored for %s, sent by %s", k.bucket, k.epoch, bs[0].worker, o.Worker))
		}
	}
	return problems
}
