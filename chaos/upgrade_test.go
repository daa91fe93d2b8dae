package chaos

import (
	"bytes"
	"context"
	"fmt"
	"math/rand/v2"
	"net/http"
	"os"
	osexec "os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"connectrpc.com/connect"

	"github.com/rationhq/ration/api/client"
	rationv1 "github.com/rationhq/ration/api/ration/v1"
	"github.com/rationhq/ration/api/ration/v1/rationv1connect"
	"github.com/rationhq/ration/cluster/clustertest"
	"github.com/rationhq/ration/fsm"
)

// TestChaos_RollingUpgrade upgrades a three-node cluster from the previous
// release to this build under the chaos load, one node at a time, as an
// operator would: it builds rationd at upgradeFromCommit (the last commit
// before validation and versions; RATION_UPGRADE_FROM names another),
// starts three nodes of it with the flags it knows, creates plain services
// only (an old leader would drop a validation policy), and runs the load
// (owner, exporters, six workers, a direct writer per node). Then, in an
// order the seed picks (RATION_CHAOS_SEED replays it), the leader replaced
// at least once and a follower at least once, each node in turn gets
// SIGTERM (a graceful stop: a leader hands over), and this build starts on
// the same data dir and addresses; once it is ready, a linearizable read
// gives an index that every node must reach holding every write
// acknowledged before the read, its snapshot keeping every invariant.
//
// While an old node remains (after the first and the second replacement),
// a new node is made the leader, and creating a service with validation
// and AddCanaries must be refused with FAILED_PRECONDITION CLUSTER_VERSION
// through every node, Status showing cluster version 1; while an old node
// leads, a validating config sent through a new node must be refused or
// applied without its policy on every node, as the old nodes apply it.
// After the last replacement the cluster version must reach 2; a node of
// the old build must then be refused at Join; a validating service is
// created and the load's validated service (honest workers, two votes an
// item) runs beside the others, with a canaried service worked by two
// workers apart. A long run (RATION_CHAOS_DURATION) runs the load longer
// between replacements and restarts the new nodes, one at a time, while
// the validating load runs.
//
// At the end, the whole history goes to the suite's checks: linearizable
// against the lease model, no epoch granted twice, every acknowledged
// write in the final state (or the owner's export), results stored once,
// exports, the validated service's rules, lease expiries on time,
// invariants, and byte-identical snapshots on every node. The log gives,
// for each replacement, how long writes were unavailable: the longest time
// without a successful write of the load from the SIGTERM until the node
// was ready, and the time to the first write sent after the SIGTERM that
// succeeded.
func TestChaos_RollingUpgrade(t *testing.T) {
	rev := upgradeFromCommit
	if s := os.Getenv("RATION_UPGRADE_FROM"); s != "" {
		rev = s
	}
	oldBin, oldCommit := buildRelease(t, rev)
	seed := chaosSeed(t)
	r := rand.New(rand.NewPCG(seed, 0x09a4de))
	long := duration(t, 0)
	between, phase2 := 3*time.Second, 8*time.Second
	if long > 0 {
		between, phase2 = max(between, long/8), max(phase2, long/2)
	}
	dir := runDir(t)
	t.Logf("seed %d (RATION_CHAOS_SEED=%d replays the order of the replacements); data dirs and logs in %s", seed, seed, dir)
	if v, err := osexec.Command(rationdBin, "--version").Output(); err == nil {
		t.Logf("this build: %s", strings.Join(strings.Fields(strings.ReplaceAll(string(v), "\n", ";")), " "))
	}

	c := newTestCluster(t, 3, dir, upgradeArgs...)
	oldFlags, newFlags := binaryFlags(t, oldBin), binaryFlags(t, rationdBin)
	u := &upgrade{t: t, c: c, r: r, old: map[int]bool{}}
	for i, p := range c.procs {
		u.newArgs = append(u.newArgs, p.baseArgs)
		kept, dropped := keepFlags(p.baseArgs, oldFlags, newFlags)
		if len(dropped) > 0 && i == 0 {
			t.Logf("the old build does not know %v: its nodes start without", dropped)
		}
		p.bin, p.baseArgs, u.old[i] = oldBin, kept, true
	}
	c.boot()
	t.Logf("three nodes of %s running", oldCommit[:12])
	u.admin, _ = client.New(client.Config{Addrs: c.addrs(), RetryFor: 30 * time.Second})
	services := []string{"dm-a", "dm-b"} // no validation: the old build has none
	for _, s := range services {
		if _, err := u.admin.CreateService(context.Background(), createRequest(s)); err != nil {
			t.Fatal(err)
		}
	}

	rec := newRecorder()
	u.rec = rec
	ld := &load{rec: rec, addrs: c.addrs(), services: services, exported: newExportStore(), leases: &leaseLog{}, recordAcks: true}
	u.ld = ld
	ctx1, cancel1 := context.WithCancel(context.Background())
	defer cancel1()
	wctx, wcancel := context.WithCancel(context.Background())
	defer wcancel()
	var watcher sync.WaitGroup
	watcher.Go(func() { ld.watchExpiries(wctx) })
	wg1 := ld.start(ctx1, c)
	// On a failure too, the load ends before the nodes are killed.
	t.Cleanup(func() { cancel1(); wcancel(); wg1.Wait(); watcher.Wait() })
	history := filepath.Join(dir, "history.json")
	u.fail = func(format string, args ...any) {
		t.Helper()
		if err := rec.save(history); err != nil {
			t.Log(err)
		}
		t.Fatalf("seed %d: %s\nnode logs: %s; history: %s", seed, fmt.Sprintf(format, args...), strings.Join(logPaths(c), ", "), history)
	}
	start := time.Now()

	// The order of the replacements, and which replace the leader (at least
	// one does, and at least one does not).
	order := r.Perm(3)
	leaderFirst := [3]bool{r.IntN(2) == 0, r.IntN(2) == 0, r.IntN(2) == 0}
	if leaderFirst == [3]bool{} || leaderFirst == [3]bool{true, true, true} {
		leaderFirst[r.IntN(3)] = !leaderFirst[0]
	}
	var names []string
	for k, i := range order {
		names = append(names, fmt.Sprintf("%s (%s)", c.procs[i].id, map[bool]string{true: "as leader", false: "as follower"}[leaderFirst[k]]))
	}
	t.Logf("replacing %s", strings.Join(names, ", then "))
	u.baseline = [2]int64{rec.now(), 0}
	sleep(context.Background(), between)
	u.baseline[1] = rec.now()
	for k, i := range order {
		u.replace(k+1, i, leaderFirst[k], "replace", oldBin)
		if k == 0 {
			// An old node leads: a validating config through the new node,
			// and the new node catching up by the old leader's snapshot.
			u.oldLeaderConfig()
			u.installSnapshot(u.newNodes()[0])
		}
		if k < 2 {
			u.refused(fmt.Sprintf("after replacement %d", k+1))
		}
		if k == 1 {
			// A new node leads: the old node catches up by its snapshot.
			u.installSnapshot(u.oldNodes()[0])
		}
		if k < 2 {
			sleep(context.Background(), between)
		}
	}
	u.versionTwo()

	// The features of version 2: the load's validated service joins the
	// others, and a canaried service is worked apart.
	if _, err := u.admin.CreateService(context.Background(), createRequest(validatedService)); err != nil {
		u.fail("create %s with validation {replicas: 2} at cluster version 2: %v", validatedService, err)
	}
	cctx, ccancel := context.WithTimeout(context.Background(), 2*minDrainTimeout)
	defer ccancel()
	var canary canaryReport
	var canaryProblems []string
	var canaryDone sync.WaitGroup
	canaryDone.Go(func() { canary, canaryProblems = u.canaries(cctx) })

	// The load goes on with the validated service: the first load stops and
	// a second, over all three services, starts at once.
	cancel1()
	wg1.Wait()
	services = append(services, validatedService)
	ld2 := &load{rec: rec, addrs: c.addrs(), services: services, exported: ld.exported, leases: ld.leases, recordAcks: true}
	ld2.nextItem.Store(ld.nextItem.Load())
	u.ld = ld2
	ctx2, cancel2 := context.WithTimeout(context.Background(), phase2)
	defer cancel2()
	watcher.Go(func() { ld2.exporter(wctx, validatedService) })
	wg2 := ld2.start(ctx2, c)
	t.Cleanup(func() { cancel2(); wg2.Wait() })
	restarts := 0
	if long > 0 {
		// Restart the new nodes, one at a time, while the validating load
		// runs.
		every := max(5*time.Second, phase2/9)
		for k := 0; ; k++ {
			sleep(ctx2, every)
			if ctx2.Err() != nil {
				break
			}
			restarts++
			u.replace(restarts, k%3, r.IntN(2) == 0, "restart", rationdBin)
		}
	}
	<-ctx2.Done()
	wg2.Wait()
	if err := rec.save(history); err != nil {
		t.Log(err)
	}
	drained, problems := ld2.drain(max(minDrainTimeout, long/10))
	wcancel()
	watcher.Wait()
	canaryDone.Wait()
	if err := rec.save(history); err != nil {
		t.Log(err)
	}
	problems = append(problems, u.problems...)
	problems = append(problems, canaryProblems...)

	// Checks.
	ops := slices.Clone(rec.ops)
	st, checked := checkHistory(t, dir, c, ops)
	problems = append(problems, checked...)
	if n := len(st.Results(canaryService, 0, 1<<30)); n > 0 {
		problems = append(problems, fmt.Sprintf("%s still holds %d result batches: every one is acknowledged and trimmed before the end", canaryService, n))
	}
	problems = append(problems, checkFinal(st, ld.exported, ops)...)
	problems = append(problems, checkExported(st, services, map[string]bool{"dm-b": true})...)
	validated, badValidation := checkValidated(st, ld.exported, ops)
	problems = append(problems, badValidation...)
	final, lost := checkAcked(st, ld.exported, ops, rec.now())
	for _, l := range lost {
		problems = append(problems, l.String())
	}
	expiries, badExpiries := checkExpiries(ld.leases, ops, rec.now())
	problems = append(problems, badExpiries...)

	counts := map[string]int{}
	for _, o := range ops {
		counts[o.Kind+"/"+outcomeClass(o.Outcome)]++
	}
	t.Logf("rolling upgrade from %s in %s: 3 replacements, %d restarts of new nodes, %d operations %v",
		oldCommit[:12], time.Since(start).Round(time.Second), restarts, len(ops), counts)
	u.logReplacements(ops)
	t.Logf("refused while an old node remained: %s", strings.Join(u.refusals, "; "))
	t.Logf("cluster version 2 on every node %s after the last new node started", u.raised.Round(time.Millisecond))
	t.Logf("snapshots sent to a node that fell behind: %s", strings.Join(u.snaps, "; "))
	t.Logf("final state at index %d holds every acknowledged write: %s", st.Index(), final)
	logProgress(t, st, ld2, rec)
	logValidated(t, validated, drained)
	logCanaries(t, canary)
	logExpiries(t, expiries, ld.leases)
	t.Logf("%d violations", len(problems))
	if len(problems) > 0 {
		u.fail("%d violations:\n%s", len(problems), summarize(problems, 30))
	}
	if counts["submit/ok"] == 0 || counts["add/ok"] == 0 || counts["ack/ok"] == 0 {
		u.fail("the load made no progress: %v", counts)
	}
}

// upgradeArgs make the nodes snapshot often (every 1-2s once 150
// entries have gone by) and keep few entries after (upgradeTrailingLogs):
// each new node starts from a snapshot the old build wrote, and a node cut
// off for a second or two catches up by a snapshot its leader sends.
var upgradeArgs = []string{"--snapshot-interval", "1s", "--snapshot-threshold", "150", "--trailing-logs", fmt.Sprint(upgradeTrailingLogs)}

const upgradeTrailingLogs = 50

// upgrade is the state of a rolling upgrade run.
type upgrade struct {
	t     *testing.T
	c     *testCluster
	r     *rand.Rand
	rec   *recorder
	ld    *load // the load running now
	admin *client.Client
	fail  func(format string, args ...any)
	// newArgs are each node's flags for this build.
	newArgs [][]string
	// old holds the nodes still running the previous release.
	old map[int]bool

	reps     []replacement
	baseline [2]int64 // a stretch of load before the first replacement (recorder times)
	refusals []string
	raised   time.Duration // last node started to cluster version 2 everywhere
	// lastStart is when this build last started on a node.
	lastStart time.Time
	snaps     []string // snapshots sent to a node that fell behind
	problems  []string
}

// replacement is what one stop and start of a node found.
type replacement struct {
	kind         string // replace (old build to new) or restart (new to new)
	k            int
	node         string
	leader       bool  // it led when stopped
	at, ready    int64 // recorder times: SIGTERM; ready and caught up
	stop, start  time.Duration
	exit         int // the stopped process's exit status
	snapshots    int // on its data dir when this build started on it
	readIndex    uint64
	checked      acked
	leaderAfter  string
	gap, toWrite time.Duration // filled in at the end
}

// replace stops node i (SIGTERM, after making it the leader or making sure
// it is not, as asLeader says) and starts this build on its data dir and
// addresses; once it is ready, it checks every node at or past a
// linearizable read's index against every write acknowledged before the
// read.
func (u *upgrade) replace(k, i int, asLeader bool, kind, from string) {
	t, c, p := u.t, u.c, u.c.procs[i]
	if asLeader {
		u.lead(i)
	} else if c.leader() == i {
		u.lead((i + 1 + u.r.IntN(2)) % 3)
	}
	rep := replacement{kind: kind, k: k, node: p.id, leader: c.leader() == i, at: u.rec.now()}
	stopAt := time.Now()
	exit, err := p.terminate(30 * time.Second)
	if err != nil {
		u.fail("%s %d: %s: %v", kind, k, p.id, err)
	}
	rep.exit = exit
	rep.stop = time.Since(stopAt)
	rep.snapshots = countSnapshots(p.dataDir)
	startAt := time.Now()
	p.bin, p.baseArgs = rationdBin, u.newArgs[i]
	p.start()
	u.lastStart = startAt
	delete(u.old, i)
	deadline := time.Now().Add(60 * time.Second)
	for readyz(p, http.StatusOK) != nil {
		if p.hasExited() {
			u.fail("%s %d: %s (this build, on the data dir %s left) exited", kind, k, p.id, filepath.Base(from))
		}
		if time.Now().After(deadline) {
			u.fail("%s %d: %s not ready within 60s: %v; %s", kind, k, p.id, readyz(p, http.StatusOK), c.describe())
		}
		time.Sleep(20 * time.Millisecond)
	}
	// Caught up: at a linearizable read's index, every node holds every
	// write acknowledged before the read.
	readCall := u.rec.now()
	res, err := u.admin.GetService(context.Background(), &rationv1.GetServiceRequest{Name: "dm-a", Consistency: rationv1.Consistency_CONSISTENCY_LINEARIZABLE})
	if err != nil {
		u.fail("%s %d: a linearizable read after %s started: %v; %s", kind, k, p.id, err, c.describe())
	}
	rep.readIndex = res.GetRead().GetIndex()
	if _, _, err := nodeState(p, rep.readIndex, 30*time.Second); err != nil {
		u.fail("%s %d: %s: %v", kind, k, p.id, err)
	}
	rep.start, rep.ready = time.Since(startAt), u.rec.now()
	u.rec.event(event{Kind: kind, Node: p.id, Leader: rep.leader, At: rep.at, End: rep.ready})
	ops := u.rec.snapshotOps()
	var problems []string
	for _, q := range c.procs {
		st, raw, err := nodeState(q, rep.readIndex, 30*time.Second)
		if err != nil {
			u.fail("%s %d: %s: %v", kind, k, q.id, err)
		}
		if err := fsm.CheckSnapshot(bytes.NewReader(raw)); err != nil {
			problems = append(problems, fmt.Sprintf("%s at index %d: %v", q.id, st.Index(), err))
		}
		got, lost := checkAcked(st, u.ld.exported, ops, readCall)
		rep.checked = got
		for _, l := range lost {
			problems = append(problems, fmt.Sprintf("%s at index %d: %s", q.id, st.Index(), l))
		}
	}
	if len(problems) > 0 {
		u.fail("%s %d of %s: a linearizable read sent at %s saw index %d, and:\n%s", kind, k, p.id, ms(readCall), rep.readIndex, summarize(problems, 30))
	}
	if l := c.leader(); l >= 0 {
		rep.leaderAfter = c.procs[l].id
	}
	t.Logf("%s %d: %s (%s) stopped in %s (exit status %d), this build started on its data dir (%d snapshots) ready and caught up %s after its start; every node at index >= %d holds the %s acknowledged before the read; %s leads",
		kind, k, p.id, map[bool]string{true: "leader", false: "follower"}[rep.leader], rep.stop.Round(time.Millisecond), rep.exit, rep.snapshots,
		rep.start.Round(time.Millisecond), rep.readIndex, rep.checked, rep.leaderAfter)
	u.reps = append(u.reps, rep)
}

// terminate sends SIGTERM and waits until the process is gone, returning
// its exit status; past timeout it SIGKILLs it and says so.
func (p *proc) terminate(timeout time.Duration) (int, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.cmd == nil {
		return 0, nil
	}
	cmd := p.cmd
	p.cmd = nil
	_ = cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.exited:
		return cmd.ProcessState.ExitCode(), nil
	case <-time.After(timeout):
		_ = cmd.Process.Signal(syscall.SIGKILL)
		<-p.exited
		return -1, fmt.Errorf("still running %s after SIGTERM", timeout)
	}
}

// lead makes node i the leader (TransferLeadership, through whoever leads).
func (u *upgrade) lead(i int) {
	p := u.c.procs[i]
	clustertest.WaitFor(u.t, 30*time.Second, func() error {
		if u.c.leader() == i {
			return nil
		}
		if st, err := p.status(context.Background()); err == nil && st.State == "Leader" {
			return fmt.Errorf("%s leads; not every node knows yet", p.id)
		}
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if _, err := u.admin.TransferLeadership(ctx, &rationv1.TransferLeadershipRequest{NodeId: p.id}); err != nil {
			return fmt.Errorf("transfer to %s: %w", p.id, err)
		}
		if u.c.leader() != i {
			return fmt.Errorf("%s does not lead yet", p.id)
		}
		return nil
	})
}

// installSnapshot cuts node i off (every Raft link) while the load runs,
// until its leader has taken a snapshot past where the leader's log still
// reaches back to i (upgradeTrailingLogs), then heals it: the leader must
// send it that snapshot. Node i must then reach a linearizable read's
// index holding every write acknowledged before the read, and say in its
// log that it installed the snapshot.
func (u *upgrade) installSnapshot(i int) {
	c, p := u.c, u.c.procs[i]
	l := c.leader()
	if l < 0 || l == i {
		u.fail("installSnapshot: %s, leader %d", p.id, l)
	}
	leader := c.procs[l]
	installed := countInFile(p.logPath, "Installed remote snapshot")
	c.cutNode(i, true)
	cut := time.Now()
	var applied, snap uint64
	for {
		if st, err := p.status(context.Background()); err == nil {
			applied = st.AppliedIndex
		}
		if snap = latestSnapshotIndex(leader.dataDir); snap > applied+upgradeTrailingLogs+50 {
			break
		}
		if time.Since(cut) > 30*time.Second {
			c.cutNode(i, false)
			u.fail("%s cut off for 30s at index %d: %s, leading, has no snapshot past %d (latest at %d)", p.id, applied, leader.id, applied+upgradeTrailingLogs+50, snap)
		}
		time.Sleep(100 * time.Millisecond)
	}
	c.cutNode(i, false)
	behind := time.Since(cut)
	healed := time.Now()
	readCall := u.rec.now()
	res, err := u.admin.GetService(context.Background(), &rationv1.GetServiceRequest{Name: "dm-a", Consistency: rationv1.Consistency_CONSISTENCY_LINEARIZABLE})
	if err != nil {
		u.fail("a linearizable read after healing %s: %v", p.id, err)
	}
	st, raw, err := nodeState(p, res.GetRead().GetIndex(), 30*time.Second)
	if err != nil {
		u.fail("%s, healed after falling behind: %v", p.id, err)
	}
	caughtUp := time.Since(healed)
	if err := fsm.CheckSnapshot(bytes.NewReader(raw)); err != nil {
		u.problems = append(u.problems, fmt.Sprintf("%s at index %d, after catching up by %s's snapshot: %v", p.id, st.Index(), leader.id, err))
	}
	_, lost := checkAcked(st, u.ld.exported, u.rec.snapshotOps(), readCall)
	for _, lw := range lost {
		u.problems = append(u.problems, fmt.Sprintf("%s at index %d, after catching up by %s's snapshot: %s", p.id, st.Index(), leader.id, lw))
	}
	build := func(j int) string { return map[bool]string{true: "old", false: "new"}[u.old[j]] }
	what := fmt.Sprintf("%s (%s, leading) to %s (%s): cut off %s at index %d, the leader's snapshot at %d; caught up %s after the heal",
		leader.id, build(l), p.id, build(i), behind.Round(time.Millisecond), applied, snap, caughtUp.Round(time.Millisecond))
	if countInFile(p.logPath, "Installed remote snapshot") == installed {
		u.problems = append(u.problems, fmt.Sprintf("%s: no snapshot installed (its log does not say so)", what))
	}
	u.snaps = append(u.snaps, what)
	u.t.Logf("snapshot sent from %s; every acknowledged write there", what)
}

// latestSnapshotIndex is the index of the newest Raft snapshot in a data
// dir (hashicorp/raft names each term-index-millis); 0 if none.
func latestSnapshotIndex(dataDir string) uint64 {
	es, _ := os.ReadDir(filepath.Join(dataDir, "snapshots"))
	var top uint64
	for _, e := range es {
		var term, index, ms uint64
		if n, _ := fmt.Sscanf(e.Name(), "%d-%d-%d", &term, &index, &ms); n == 3 && e.IsDir() && !strings.HasSuffix(e.Name(), ".tmp") {
			top = max(top, index)
		}
	}
	return top
}

// countInFile counts the lines of a file that hold s.
func countInFile(path, s string) int {
	b, _ := os.ReadFile(path)
	return bytes.Count(b, []byte(s))
}

// newNodes and oldNodes are the nodes running this build and the previous
// release.
func (u *upgrade) newNodes() []int {
	var out []int
	for i := range u.c.procs {
		if !u.old[i] {
			out = append(out, i)
		}
	}
	return out
}

func (u *upgrade) oldNodes() []int {
	var out []int
	for i := range u.c.procs {
		if u.old[i] {
			out = append(out, i)
		}
	}
	return out
}

// refused makes a new node the leader while an old node remains, and
// checks that a validating config and AddCanaries are refused with
// CLUSTER_VERSION through every node (through an old one, which has no
// AddCanaries, that one is unimplemented), and that Status says cluster
// version 1, with the new members at protocol 2 and the old ones at 1 or
// less (unknown: a build from before versions names none).
func (u *upgrade) refused(stage string) {
	newOnes := u.newNodes()
	u.lead(newOnes[u.r.IntN(len(newOnes))])
	leader := u.c.leader()
	var seen []string
	for i, p := range u.c.procs {
		owner := rationv1connect.NewOwnerServiceClient(http.DefaultClient, "http://"+p.api)
		build := map[bool]string{true: "old", false: "new"}[u.old[i]]
		req := createRequest(validatedService)
		req.Name = fmt.Sprintf("early-%d-%s", len(u.refusals), p.id)
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		_, err := owner.CreateService(ctx, connect.NewRequest(req))
		cancel()
		created := "create " + codeOf(err)
		switch {
		case versionRefusal(err):
		case err == nil && u.old[i]:
			// The old node does not know validation: what it forwards to
			// the leader has no policy left to refuse.
			created = "created without its policy"
			u.withoutPolicy(req.Name, fmt.Sprintf("%s, through %s (old) with %s (new) leading", stage, p.id, u.c.procs[leader].id))
		default:
			u.problems = append(u.problems, fmt.Sprintf("%s, %s leading, an old node remaining: CreateService with validation through %s (%s) answered %v, want FAILED_PRECONDITION CLUSTER_VERSION",
				stage, u.c.procs[leader].id, p.id, build, err))
		}
		ctx, cancel = context.WithTimeout(context.Background(), 10*time.Second)
		_, cerr := owner.AddCanaries(ctx, connect.NewRequest(&rationv1.AddCanariesRequest{Service: "dm-a",
			Canaries: []*rationv1.Canary{{Item: "canary-" + req.Name, Verdict: "DM"}}}))
		cancel()
		switch {
		case versionRefusal(cerr):
		case u.old[i] && connect.CodeOf(cerr) == connect.CodeUnimplemented:
		default:
			u.problems = append(u.problems, fmt.Sprintf("%s, %s leading, an old node remaining: AddCanaries through %s (%s) answered %v, want FAILED_PRECONDITION CLUSTER_VERSION",
				stage, u.c.procs[leader].id, p.id, build, cerr))
		}
		seen = append(seen, fmt.Sprintf("%s (%s): %s, canaries %s", p.id, build, created, codeOf(cerr)))
	}
	// The leader knows every member's build once each has made a read-index
	// call (a few times a second).
	var members []string
	err := func() error {
		var last error
		deadline := time.Now().Add(10 * time.Second)
		for time.Now().Before(deadline) {
			last = u.statusAtVersionOne(leader, &members)
			if last == nil {
				return nil
			}
			time.Sleep(100 * time.Millisecond)
		}
		return last
	}()
	if err != nil {
		u.problems = append(u.problems, fmt.Sprintf("%s: %v", stage, err))
	}
	u.refusals = append(u.refusals, fmt.Sprintf("%s, %s leading: %s; Status: cluster_version 1, members %s",
		stage, u.c.procs[leader].id, strings.Join(seen, ", "), strings.Join(members, " ")))
	u.t.Logf("%s, %s (new) leading: validation and AddCanaries through each node: %s; Status on the leader: cluster_version 1, members (min-max protocol) %s",
		stage, u.c.procs[leader].id, strings.Join(seen, ", "), strings.Join(members, " "))
}

// statusAtVersionOne checks Status on node i (a new one) during the
// upgrade: cluster version 1; new members at protocols 1 to 2, old ones at
// most 1.
func (u *upgrade) statusAtVersionOne(i int, members *[]string) error {
	st, err := u.c.procs[i].status(context.Background())
	if err != nil {
		return err
	}
	if st.ClusterVersion != 1 {
		return fmt.Errorf("Status on %s: cluster_version %d while an old node remains, want 1", st.NodeId, st.ClusterVersion)
	}
	*members = nil
	for _, m := range st.Members {
		j := slices.IndexFunc(u.c.procs, func(p *proc) bool { return p.id == m.Id })
		*members = append(*members, fmt.Sprintf("%s:%d-%d", m.Id, m.MinProtocol, m.MaxProtocol))
		switch {
		case j < 0:
			return fmt.Errorf("Status on %s lists an unknown member %s", st.NodeId, m.Id)
		case u.old[j] && m.MaxProtocol > 1:
			return fmt.Errorf("Status on %s: %s, of the old build, applies protocols up to %d", st.NodeId, m.Id, m.MaxProtocol)
		case !u.old[j] && (m.MaxProtocol != fsm.MaxProtocol || m.Release == ""):
			return fmt.Errorf("Status on %s: %s, of this build, shows release %q, protocols up to %d", st.NodeId, m.Id, m.Release, m.MaxProtocol)
		}
	}
	return nil
}

// oldLeaderConfig, with one new node and an old one leading, sends a
// validating config through the new node: it goes to the old leader, which
// does not know validation. It must be refused, or apply without the
// policy, on every node alike (a config that reaches the log at version 1
// applies as an old member applies it).
func (u *upgrade) oldLeaderConfig() {
	olds, news := u.oldNodes(), u.newNodes()
	u.lead(olds[u.r.IntN(len(olds))])
	leader := u.c.procs[u.c.leader()]
	via := u.c.procs[news[0]]
	owner := rationv1connect.NewOwnerServiceClient(http.DefaultClient, "http://"+via.api)
	req := createRequest(validatedService)
	req.Name = "sent-to-an-old-leader"
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	_, err := owner.CreateService(ctx, connect.NewRequest(req))
	cancel()
	if versionRefusal(err) {
		u.t.Logf("a validating config sent through %s (new) to %s (old, leading) was refused: %v", via.id, leader.id, err)
		return
	}
	if err != nil {
		u.problems = append(u.problems, fmt.Sprintf("a validating config sent through %s (new) to %s (old, leading): %v", via.id, leader.id, err))
		return
	}
	u.withoutPolicy(req.Name, fmt.Sprintf("through %s (new) with %s (old) leading", via.id, leader.id))
	u.t.Logf("a validating config sent through %s (new) with %s (old) leading was created without its policy, as the old build applies it",
		via.id, leader.id)
}

// withoutPolicy checks that every node, at the index of a linearizable
// read, holds service name, created with a validation policy at cluster
// version 1, without the policy: as the old nodes hold it.
func (u *upgrade) withoutPolicy(name, how string) {
	res, err := u.admin.GetService(context.Background(), &rationv1.GetServiceRequest{Name: name, Consistency: rationv1.Consistency_CONSISTENCY_LINEARIZABLE})
	if err != nil {
		u.fail("read %s back: %v", name, err)
	}
	for _, q := range u.c.procs {
		st, _, err := nodeState(q, res.GetRead().GetIndex(), 30*time.Second)
		if err != nil {
			u.fail("%s: %v", q.id, err)
		}
		s, ok := st.Service(name)
		switch {
		case !ok:
			u.problems = append(u.problems, fmt.Sprintf("%s lacks service %s, created %s", q.id, name, how))
		case s.Config.Proto().GetValidation() != nil:
			u.problems = append(u.problems, fmt.Sprintf("%s holds service %s, created %s at cluster version 1, with validation {%v}; the old nodes hold it without",
				q.id, name, how, s.Config.Proto().GetValidation()))
		}
	}
}

// versionTwo waits until every node says cluster version 2, then checks
// that Join refuses a node of the old build (which names no build).
func (u *upgrade) versionTwo() {
	clustertest.WaitFor(u.t, 30*time.Second, func() error {
		for _, p := range u.c.procs {
			st, err := p.status(context.Background())
			if err != nil {
				return err
			}
			if st.ClusterVersion != fsm.MaxProtocol {
				return fmt.Errorf("%s: cluster_version %d", p.id, st.ClusterVersion)
			}
		}
		return nil
	})
	u.raised = time.Since(u.lastStart)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	_, err := u.admin.Join(ctx, &rationv1.JoinRequest{NodeId: "n-old", RaftAddress: "127.0.0.1:1", ApiAddress: "127.0.0.1:2"})
	if !versionRefusal(err) {
		u.problems = append(u.problems, fmt.Sprintf("at cluster version 2, Join of a node that names no build (the old release) answered %v, want FAILED_PRECONDITION CLUSTER_VERSION", err))
	}
	u.t.Logf("cluster version 2 on every node %s after the last new node started; Join of an old-build node: %s", u.raised.Round(time.Millisecond), codeOf(err))
}

func versionRefusal(err error) bool {
	return connect.CodeOf(err) == connect.CodeFailedPrecondition && client.Reason(err) == fsm.ErrClusterVersion.Reason
}

func codeOf(err error) string {
	if err == nil {
		return "ok"
	}
	if r := client.Reason(err); r != "" {
		return fmt.Sprintf("%s %s", connect.CodeOf(err), r)
	}
	return connect.CodeOf(err).String()
}

// logReplacements reports, for each replacement and restart, how long
// writes were unavailable: the longest time in which no write of the load
// succeeded, over the stretch from the SIGTERM until the node was ready
// and caught up (the gap that spans the SIGTERM counts whole), and the
// time from the SIGTERM to the end of the first write sent after it that
// succeeded. The same longest gap over a stretch of load before the first
// replacement is the baseline.
func (u *upgrade) logReplacements(ops []op) {
	var returns []int64
	for _, o := range ops {
		if o.Outcome == outOK && !o.Drain {
			returns = append(returns, o.Return)
		}
	}
	slices.Sort(returns)
	gap := func(from, to int64) time.Duration {
		var worst int64
		for k := 1; k < len(returns); k++ {
			if returns[k] >= from && returns[k-1] <= to {
				worst = max(worst, returns[k]-returns[k-1])
			}
		}
		return time.Duration(worst)
	}
	u.t.Logf("baseline: the longest time without a successful write over %s of load before the first replacement: %s",
		time.Duration(u.baseline[1]-u.baseline[0]).Round(time.Millisecond), gap(u.baseline[0], u.baseline[1]).Round(time.Millisecond))
	for k := range u.reps {
		rep := &u.reps[k]
		rep.gap = gap(rep.at, rep.ready)
		first := int64(-1)
		for _, o := range ops {
			if o.Outcome == outOK && !o.Drain && o.Call >= rep.at && (first < 0 || o.Return < first) {
				first = o.Return
			}
		}
		if first >= 0 {
			rep.toWrite = time.Duration(first - rep.at)
		}
		u.t.Logf("%s %d of %s (%s): writes unavailable at most %s (longest time without a successful write, SIGTERM to ready); first write sent after the SIGTERM succeeded %s after it; stop %s, start to caught up %s",
			rep.kind, rep.k, rep.node, map[bool]string{true: "leader", false: "follower"}[rep.leader], rep.gap.Round(time.Millisecond),
			rep.toWrite.Round(time.Millisecond), rep.stop.Round(time.Millisecond), rep.start.Round(time.Millisecond))
	}
}

// canaryService is the service the rolling upgrade adds canaries to once
// the cluster version allows: validation {replicas: 2}, with canaries mixed
// into the leases (canary_rate 500), worked by two honest workers apart
// from the load and its history. Its results are trimmed as soon as they
// are acknowledged, so the final state holds none: the history checks
// hold every result batch the state holds to the load's submits.
const canaryService = "dm-c"

// canaryReport is what the canaried service's work came to.
type canaryReport struct {
	items, canaries, shown, submits, exported int
	passed, failed, validated                 uint64
	took                                      time.Duration
}

// canaries creates canaryService, adds canaries and items, and has two
// honest workers (cw1, cw2) vote on every item while its owner exports
// and acknowledges, until every item is done and every result batch
// acknowledged. Every item must then be exported once, validated, with
// the honest answer; no canary may be exported; the canaries must have
// been shown and passed, none failed.
func (u *upgrade) canaries(ctx context.Context) (rep canaryReport, problems []string) {
	start := time.Now()
	defer func() { rep.took = time.Since(start) }()
	cfg := createRequest("dm-b").GetConfig() // retention 0
	cfg.BucketSize = 4
	cfg.Validation = &rationv1.ValidationPolicy{Replicas: 2, CanaryRate: 500}
	if _, err := u.admin.CreateService(ctx, &rationv1.CreateServiceRequest{Name: canaryService, Kind: "dmcheck", Config: cfg}); err != nil {
		return rep, []string{fmt.Sprintf("create %s (validation, canary_rate 500) at cluster version 2: %v", canaryService, err)}
	}
	var canaries []*rationv1.Canary
	isCanary := map[string]bool{}
	for k := range 3 {
		id := fmt.Sprintf("canary-%d", k+1)
		canaries = append(canaries, &rationv1.Canary{Item: id, Verdict: honestVerdict(id)})
		isCanary[id] = true
	}
	added, err := u.admin.AddCanaries(ctx, &rationv1.AddCanariesRequest{Service: canaryService, Canaries: canaries, RequestId: client.NewRequestID()})
	if err != nil || added.GetAdded() != 3 || added.GetTotal() != 3 {
		return rep, []string{fmt.Sprintf("AddCanaries to %s at cluster version 2: %v, %v; want 3 added", canaryService, added, err)}
	}
	rep.canaries = len(canaries)
	var items []string
	for k := range 24 {
		items = append(items, fmt.Sprintf("c%03d", k))
	}
	rep.items = len(items)
	if _, err := u.admin.AddItems(ctx, &rationv1.AddItemsRequest{Service: canaryService, Items: items, RequestId: client.NewRequestID()}); err != nil {
		return rep, []string{fmt.Sprintf("add items to %s: %v", canaryService, err)}
	}

	owner := &load{rec: u.rec, addrs: u.c.addrs(), exported: newExportStore()}
	wctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var wg sync.WaitGroup
	wg.Go(func() { owner.exporter(wctx, canaryService) })
	var mu sync.Mutex
	for _, worker := range []string{"cw1", "cw2"} {
		wg.Go(func() {
			c := owner.client(5 * time.Second)
			for wctx.Err() == nil {
				if _, err := c.Register(wctx, &rationv1.RegisterRequest{Service: canaryService, WorkerId: worker}); err == nil {
					break
				}
				sleep(wctx, 100*time.Millisecond)
			}
			for wctx.Err() == nil {
				res, err := c.Acquire(wctx, &rationv1.AcquireRequest{Service: canaryService, WorkerId: worker, MaxBuckets: 2})
				if err != nil || len(res.GetBuckets()) == 0 {
					sleep(wctx, 100*time.Millisecond)
					continue
				}
				for _, b := range res.GetBuckets() {
					var results []*rationv1.ResultInput
					shown := 0
					for _, it := range b.Items {
						results = append(results, &rationv1.ResultInput{Item: it, Verdict: honestVerdict(it)})
						if isCanary[it] {
							shown++
						}
					}
					_, err := c.Submit(wctx, &rationv1.SubmitRequest{WorkerId: worker, BucketId: b.Id, Epoch: b.Lease.GetEpoch(), Results: results})
					mu.Lock()
					rep.shown += shown
					if err == nil {
						rep.submits++
					}
					mu.Unlock()
				}
			}
		})
	}
	// Until every item is done and the owner has stored every result batch;
	// the export acknowledges them all as it stops.
	var info *rationv1.ServiceInfo
	for ctx.Err() == nil {
		res, err := u.admin.GetService(ctx, &rationv1.GetServiceRequest{Name: canaryService, Consistency: rationv1.Consistency_CONSISTENCY_LINEARIZABLE})
		if err == nil {
			info = res.GetService()
			n, exp := info.GetItems(), info.GetExport()
			if n.GetDone() == int64(len(items)) && n.GetPending() == 0 && n.GetLeased() == 0 && exp.GetLastSeq() > 0 && owner.exported.has(exp.GetLastSeq()) {
				break
			}
		}
		sleep(ctx, 200*time.Millisecond)
	}
	finished := ctx.Err() == nil
	cancel()
	wg.Wait()
	if !finished {
		return rep, []string{fmt.Sprintf("%s: not every item done and exported in time: items %v, export %v",
			canaryService, info.GetItems(), info.GetExport())}
	}
	res, err := u.admin.GetService(ctx, &rationv1.GetServiceRequest{Name: canaryService, Consistency: rationv1.Consistency_CONSISTENCY_LINEARIZABLE})
	if err != nil {
		return rep, []string{fmt.Sprintf("%s: %v", canaryService, err)}
	}
	info = res.GetService()
	if exp := info.GetExport(); exp.GetAckedThrough() != exp.GetLastSeq() || exp.GetUnackedResults() != 0 {
		problems = append(problems, fmt.Sprintf("%s: the export stopped, and the service is acknowledged only through %d of %d", canaryService, exp.GetAckedThrough(), exp.GetLastSeq()))
	}
	cn := info.GetCounters()
	rep.passed, rep.failed, rep.validated = cn.GetCanariesPassed(), cn.GetCanariesFailed(), cn.GetResultsValidated()
	if rep.shown == 0 || rep.passed == 0 || rep.failed != 0 {
		problems = append(problems, fmt.Sprintf("%s: %d canaries shown in leases, %d passed, %d failed; want some shown and passed, none failed",
			canaryService, rep.shown, rep.passed, rep.failed))
	}
	if rep.validated != uint64(len(items)) {
		problems = append(problems, fmt.Sprintf("%s: %d results validated, want one for each of the %d items", canaryService, rep.validated, len(items)))
	}
	owner.exported.mu.Lock()
	defer owner.exported.mu.Unlock()
	got := map[string]int{}
	for _, b := range owner.exported.batches {
		rep.exported++
		if !b.validated {
			problems = append(problems, fmt.Sprintf("%s: exported batch %d (bucket %d) is not validated", canaryService, b.seq, b.bucket))
		}
		for k, it := range b.items {
			got[it]++
			if isCanary[it] {
				problems = append(problems, fmt.Sprintf("%s: canary %s was exported as a result (batch %d)", canaryService, it, b.seq))
			}
			if b.verdicts[k] != honestVerdict(it) {
				problems = append(problems, fmt.Sprintf("%s: item %s exported with %q, both workers answered %q", canaryService, it, b.verdicts[k], honestVerdict(it)))
			}
		}
	}
	for _, it := range items {
		if got[it] != 1 {
			problems = append(problems, fmt.Sprintf("%s: item %s exported %d times, want once", canaryService, it, got[it]))
		}
	}
	return rep, problems
}

func logCanaries(t *testing.T, rep canaryReport) {
	t.Logf("%s (replicas 2, canary_rate 500): %d canaries added, %d items done in %s by two workers' %d submits; canaries shown %d times, %d passed, %d failed; %d results validated, %d batches exported",
		canaryService, rep.canaries, rep.items, rep.took.Round(time.Millisecond), rep.submits, rep.shown, rep.passed, rep.failed, rep.validated, rep.exported)
}
