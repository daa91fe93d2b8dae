// Package python tests the Python worker example, worker.py.
//
// TestWorker_LeaderKilled proves that two worker.py processes, given the
// three nodes of a real rationd cluster, finish every item exactly once
// while the leader is SIGKILLed and restarted: each item has one accepted
// result, with the example's verdict; each accepted submit is one a worker
// logged as submitted, with as many results; each bucket a worker acquired
// ends in exactly one logged outcome (submitted, released or lost); a
// bucket whose work failed is released; the workers moved past the dead
// node; both exit 0; and the restarted node catches up. A third worker, frozen (SIGSTOP) until its lease
// is taken back, must log the lease lost, and on SIGTERM release the
// bucket it holds and exit 0.
package python

import (
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/rationhq/ration/api/client"
	rationv1 "github.com/rationhq/ration/api/ration/v1"
	"github.com/rationhq/ration/cluster/clustertest"
	"github.com/rationhq/ration/internal/testport"
	// rationd is built by go build, which go test's cache cannot see:
	// importing what it is made of makes a change to it run this again.
	_ "github.com/rationhq/ration/server"
)

const secret = "python-worker-secret-1234"

func TestWorker_LeaderKilled(t *testing.T) {
	python, err := exec.LookPath("python3")
	if err != nil {
		if os.Getenv("CI") != "" {
			t.Fatal("python3 is not on PATH: CI must test the Python worker example")
		}
		t.Skip("python3 is not on PATH: the Python worker example is not tested")
	}
	// Reading it also makes go test's cache see a change to it.
	if _, err := os.ReadFile("worker.py"); err != nil {
		t.Fatal(err)
	}
	items := 600
	if testing.Short() {
		items = 300
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	dir := t.TempDir()
	nodes := startCluster(t, dir)
	var addrs []string
	for _, n := range nodes {
		addrs = append(addrs, n.api)
	}
	c, err := client.New(client.Config{Addrs: addrs, RetryFor: 20 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	ids := addService(ctx, t, c, "dm", items, 10*time.Second)
	addService(ctx, t, c, "lose", 10, 3*time.Second)

	// The leader's address first: the workers talk to it until it dies.
	leader := waitLeader(t, nodes)
	order := []string{nodes[leader].api}
	for i, n := range nodes {
		if i != leader {
			order = append(order, n.api)
		}
	}
	loseThenStop(ctx, t, c, startWorker(t, python, dir, "w3", "lose", order, "--max-buckets", "1", "--work-time", "8"))
	workers := []*worker{
		startWorker(t, python, dir, "w1", "dm", order, "--fail-first", "1"),
		startWorker(t, python, dir, "w2", "dm", order),
	}

	done := func() int64 {
		r, err := c.GetService(ctx, &rationv1.GetServiceRequest{Name: "dm"})
		if err != nil {
			return -1
		}
		return r.GetService().GetItems().GetDone()
	}
	clustertest.WaitFor(t, 30*time.Second, func() error {
		if n := done(); n < int64(items/4) {
			return fmt.Errorf("%d of %d items done", n, items)
		}
		for _, w := range workers {
			if !slices.ContainsFunc(readEvents(t, w), func(e event) bool { return e.Event == "submitted" }) {
				return fmt.Errorf("%s has submitted nothing yet", w.id)
			}
		}
		return nil
	})
	if l := waitLeader(t, nodes); l != leader {
		t.Logf("leadership moved from %s to %s before the kill", nodes[leader].id, nodes[l].id)
		leader = l
	}
	killedAt := time.Now()
	t.Logf("SIGKILL leader %s with %d of %d items done", nodes[leader].id, done(), items)
	nodes[leader].proc.kill()
	time.Sleep(2 * time.Second)
	nodes[leader].start()

	clustertest.WaitFor(t, 60*time.Second, func() error {
		if n := done(); n != int64(items) {
			return fmt.Errorf("%d of %d items done", n, items)
		}
		return nil
	})
	t.Logf("all %d items done %.1fs after the kill", items, time.Since(killedAt).Seconds())
	submitted := map[[2]string]logged{}
	retries := 0
	for _, w := range workers {
		if code := w.proc.wait(t, 30*time.Second); code != 0 {
			t.Errorf("%s exited %d", w.id, code)
		}
		l := readLog(t, w, "http://"+nodes[leader].api, killedAt)
		if l.submittedAfterKill == 0 {
			t.Errorf("%s submitted nothing after the kill", w.id)
		}
		if want := map[string]int{"w1": 1}[w.id]; l.releasedWhy["process error"] != want {
			t.Errorf("%s released %d buckets after a process error, want %d (w1 runs with --fail-first 1)", w.id, l.releasedWhy["process error"], want)
		}
		maps.Copy(submitted, l.submitted)
		retries += l.retriesAfterKill
	}
	if retries == 0 && nodes[leader].api == order[0] {
		t.Errorf("no worker logged a retry away from the killed leader, the first address they were given")
	}
	checkResults(ctx, t, c, ids, submitted)
	svc, err := c.GetService(ctx, &rationv1.GetServiceRequest{Name: "dm"})
	if err != nil {
		t.Fatal(err)
	}
	if it, b := svc.GetService().GetItems(), svc.GetService().GetBuckets(); it.GetPending()+it.GetLeased()+it.GetQuarantined() != 0 || b.GetLeased()+b.GetDead() != 0 {
		t.Errorf("after the workers exited: items %v, buckets %v", it, b)
	}
	// The restarted node has caught up: its own state has every result.
	clustertest.WaitFor(t, 10*time.Second, func() error {
		r, err := nodes[leader].client.GetService(ctx, &rationv1.GetServiceRequest{Name: "dm", Consistency: rationv1.Consistency_CONSISTENCY_STALE})
		if n := r.GetService().GetItems().GetDone(); err != nil || n != int64(items) {
			return fmt.Errorf("restarted %s: %d items done, %v", nodes[leader].id, n, err)
		}
		return nil
	})
}

// addService creates a dmcheck service of buckets of 10 with lease ttl,
// and adds items 1 to n to it.
func addService(ctx context.Context, t *testing.T, c *client.Client, name string, n int, ttl time.Duration) []string {
	t.Helper()
	_, err := c.CreateService(ctx, &rationv1.CreateServiceRequest{Name: name, Kind: "dmcheck", Config: &rationv1.ServiceConfig{
		BucketSize: 10, LeaseTtl: durationpb.New(ttl), ReleaseGrace: durationpb.New(500 * time.Millisecond)}})
	if err != nil {
		t.Fatal(err)
	}
	ids := make([]string, n)
	for i := range ids {
		ids[i] = strconv.Itoa(i + 1)
	}
	if _, err := c.AddItems(ctx, &rationv1.AddItemsRequest{Service: name, Items: ids}); err != nil {
		t.Fatal(err)
	}
	return ids
}

// loseThenStop runs w through a lost lease and a SIGTERM: it freezes w
// once it holds a bucket, until the leader has taken the bucket back; w,
// let go, must log the lease lost, acquire again, and on SIGTERM release
// what it holds and exit 0.
func loseThenStop(ctx context.Context, t *testing.T, c *client.Client, w *worker) {
	waitLog(t, w, "acquired", 1)
	w.proc.signal(syscall.SIGSTOP)
	clustertest.WaitFor(t, 20*time.Second, func() error {
		r, err := c.ListWorkers(ctx, &rationv1.ListWorkersRequest{Service: w.service})
		if err != nil {
			return err
		}
		for _, info := range r.GetWorkers() {
			if info.GetWorkerId() == w.id && info.GetHeld() > 0 {
				return fmt.Errorf("%s still holds %d buckets", w.id, info.GetHeld())
			}
		}
		return nil
	})
	w.proc.signal(syscall.SIGCONT)
	waitLog(t, w, "acquired", 2)
	w.proc.signal(syscall.SIGTERM)
	if code := w.proc.wait(t, 15*time.Second); code != 0 {
		t.Errorf("%s exited %d after SIGTERM", w.id, code)
	}
	l := readLog(t, w, "", time.Time{})
	if l.events["lost"] != 1 || l.releasedWhy["stopping"] != 1 || l.events["submitted"] != 0 {
		t.Errorf("%s logged %v, released %v; want 1 lost, 1 released when stopping, no submit", w.id, l.events, l.releasedWhy)
	}
}

// workerLog sums up a worker's --log.
type workerLog struct {
	events      map[string]int
	releasedWhy map[string]int
	submitted   map[[2]string]logged // [bucket, epoch] -> its submit
	// After the kill: submits, and retries away from the killed node.
	submittedAfterKill, retriesAfterKill int
}

// logged is a worker's "submitted" event.
type logged struct {
	worker   string
	accepted int
}

// event is one line of a worker's --log.
type event struct {
	T        float64  `json:"t"`
	Event    string   `json:"event"`
	Bucket   string   `json:"bucket"`
	Epoch    string   `json:"epoch"`
	Accepted int      `json:"accepted"`
	Why      string   `json:"why"`
	Node     string   `json:"node"`
	ExitCode int      `json:"exit_code"`
	Signals  []string `json:"signals"`
}

func readEvents(t *testing.T, w *worker) []event {
	t.Helper()
	b, err := os.ReadFile(w.log)
	if err != nil && !os.IsNotExist(err) {
		t.Fatal(err)
	}
	var out []event
	for line := range strings.Lines(string(b)) {
		if !strings.HasSuffix(line, "\n") {
			break // being written
		}
		var e event
		if err := json.Unmarshal([]byte(line), &e); err != nil {
			t.Fatalf("%s: %q: %v", w.log, line, err)
		}
		out = append(out, e)
	}
	return out
}

func waitLog(t *testing.T, w *worker, event string, n int) {
	t.Helper()
	clustertest.WaitFor(t, 20*time.Second, func() error {
		got := 0
		for _, e := range readEvents(t, w) {
			if e.Event == event {
				got++
			}
		}
		if got < n {
			return fmt.Errorf("%s logged %d %q events, waiting for %d", w.id, got, event, n)
		}
		return nil
	})
}

// readLog checks that each bucket w acquired ended in exactly one outcome
// (submitted, released or lost) and that w exited 0, and sums up its log.
func readLog(t *testing.T, w *worker, killedNode string, killedAt time.Time) *workerLog {
	t.Helper()
	l := &workerLog{events: map[string]int{}, releasedWhy: map[string]int{}, submitted: map[[2]string]logged{}}
	outcomes := map[[2]string][]string{}
	for _, e := range readEvents(t, w) {
		l.events[e.Event]++
		k := [2]string{e.Bucket, e.Epoch}
		switch e.Event {
		case "acquired":
			if _, dup := outcomes[k]; dup {
				t.Errorf("%s acquired bucket %s at epoch %s twice", w.id, e.Bucket, e.Epoch)
			}
			outcomes[k] = []string{}
		case "submitted", "released", "lost", "submit_failed", "release_failed":
			if _, ok := outcomes[k]; !ok {
				t.Errorf("%s logged %s for bucket %s epoch %s, which it never acquired", w.id, e.Event, e.Bucket, e.Epoch)
			}
			outcomes[k] = append(outcomes[k], e.Event)
			if e.Event == "submitted" && e.Accepted > 0 {
				l.submitted[k] = logged{w.id, e.Accepted}
				if e.T >= float64(killedAt.UnixMilli())/1000 {
					l.submittedAfterKill++
				}
			}
			if e.Event == "released" {
				l.releasedWhy[e.Why]++
			}
		case "retry":
			if e.Node == killedNode && e.T >= float64(killedAt.UnixMilli())/1000 {
				l.retriesAfterKill++
			}
		case "exit":
			if e.ExitCode != 0 {
				t.Errorf("%s logged exit code %d (signals %v)", w.id, e.ExitCode, e.Signals)
			}
		}
	}
	for k, o := range outcomes {
		if len(o) != 1 || o[0] == "submit_failed" || o[0] == "release_failed" {
			t.Errorf("%s: bucket %s epoch %s ended %v, want one of submitted, released, lost", w.id, k[0], k[1], o)
		}
	}
	if l.events["exit"] != 1 {
		t.Errorf("%s logged %d exits, want 1", w.id, l.events["exit"])
	}
	if killedNode == "" {
		t.Logf("%s: %v", w.id, l.events)
	} else {
		t.Logf("%s: %v; after the kill %d submits, %d retries away from the killed node", w.id, l.events, l.submittedAfterKill, l.retriesAfterKill)
	}
	return l
}

// checkResults checks the exported results: each item once, with the
// example's verdict, each batch one logged submit with as many results.
func checkResults(ctx context.Context, t *testing.T, c *client.Client, ids []string, submitted map[[2]string]logged) {
	t.Helper()
	seen := map[string]bool{}
	batches := map[[2]string]bool{}
	err := c.ExportResults(ctx, &rationv1.ExportResultsRequest{Service: "dm"}, func(r *rationv1.ExportResultsResponse) error {
		res := r.GetResults()
		if len(res) == 0 {
			return nil
		}
		k := [2]string{strconv.FormatUint(res[0].GetBucketId(), 10), strconv.FormatUint(res[0].GetEpoch(), 10)}
		if batches[k] {
			t.Errorf("bucket %s epoch %s has two result batches", k[0], k[1])
		}
		batches[k] = true
		s, ok := submitted[k]
		if !ok || s.worker != res[0].GetWorkerId() || s.accepted != len(res) {
			t.Errorf("batch seq %d (bucket %s epoch %s, %d results by %s) is not a logged submit (%+v)",
				r.GetSeq(), k[0], k[1], len(res), res[0].GetWorkerId(), s)
		}
		for _, x := range res {
			n, _ := strconv.Atoi(x.GetItem())
			want := map[bool]string{true: "DM", false: "NON_DM"}[n%2 == 0]
			if seen[x.GetItem()] || x.GetVerdict() != want {
				t.Errorf("item %s: verdict %s (want %s), seen before: %v", x.GetItem(), x.GetVerdict(), want, seen[x.GetItem()])
			}
			seen[x.GetItem()] = true
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	for k := range submitted {
		if !batches[k] {
			t.Errorf("a worker logged bucket %s epoch %s as submitted; no such batch was exported", k[0], k[1])
		}
	}
	for _, id := range ids {
		if !seen[id] {
			t.Errorf("item %s has no result", id)
		}
	}
}

// node is one rationd process of the cluster.
type node struct {
	t                     *testing.T
	id, api, bin, logPath string
	args                  []string
	proc                  *proc
	client                *client.Client // this node alone, one try
}

func (n *node) start() { n.proc = startProc(n.t, n.logPath, nil, n.bin, n.args...) }

func (n *node) status() (*rationv1.StatusResponse, error) {
	return n.client.Status(context.Background(), &rationv1.StatusRequest{})
}

// startCluster builds rationd and starts three nodes: n1 bootstraps, n2 and
// n3 join it. It returns once every node sees three members and a leader.
func startCluster(t *testing.T, dir string) []*node {
	bin := filepath.Join(dir, "rationd")
	if out, err := exec.Command("go", "build", "-o", bin, "github.com/rationhq/ration/cmd/rationd").CombinedOutput(); err != nil {
		t.Fatalf("build rationd: %v\n%s", err, out)
	}
	var nodes []*node
	for i := range 3 {
		id, api := fmt.Sprintf("n%d", i+1), testport.Free(t)
		c, err := client.New(client.Config{Addrs: []string{api}, RetryFor: -1, CallTimeout: time.Second})
		if err != nil {
			t.Fatal(err)
		}
		n := &node{t: t, id: id, api: api, bin: bin, logPath: filepath.Join(dir, id+".log"), client: c}
		n.args = []string{"--node-id", id, "--data-dir", filepath.Join(dir, id), "--http-addr", api, "--raft-addr", testport.Free(t),
			"--election-timeout", "300ms", "--tick-interval", "100ms", "--failover-grace", "1500ms"}
		if i > 0 {
			n.args = append(n.args, "--join", nodes[0].api)
		}
		nodes = append(nodes, n)
	}
	for _, n := range nodes {
		n.start()
	}
	clustertest.WaitFor(t, 30*time.Second, func() error {
		for _, n := range nodes {
			st, err := n.status()
			if err != nil {
				return err
			}
			if len(st.GetMembers()) != 3 || st.GetLeaderId() == "" {
				return fmt.Errorf("%s: %d members, leader %q", n.id, len(st.GetMembers()), st.GetLeaderId())
			}
		}
		return nil
	})
	return nodes
}

// waitLeader returns the index of the node every node names as leader.
func waitLeader(t *testing.T, nodes []*node) int {
	leader := -1
	clustertest.WaitFor(t, 10*time.Second, func() error {
		var names []string
		for _, n := range nodes {
			st, err := n.status()
			if err != nil {
				return err
			}
			names = append(names, st.GetLeaderId())
		}
		leader = slices.IndexFunc(nodes, func(n *node) bool { return n.id == names[0] })
		if leader < 0 || slices.ContainsFunc(names, func(id string) bool { return id != names[0] }) {
			return fmt.Errorf("nodes name leaders %v", names)
		}
		return nil
	})
	return leader
}

// worker is one worker.py process.
type worker struct {
	id, service, log string
	proc             *proc
}

func startWorker(t *testing.T, python, dir, id, service string, addrs []string, extra ...string) *worker {
	w := &worker{id: id, service: service, log: filepath.Join(dir, id+".jsonl")}
	args := append([]string{"worker.py", "--addr", strings.Join(addrs, ","), "--service", service, "--worker-id", id,
		"--name", "python " + id, "--max-buckets", "2", "--work-time", "0.1", "--idle-max", "0.5",
		"--stop-when-idle", "2", "--log", w.log}, extra...)
	w.proc = startProc(t, filepath.Join(dir, id+".stderr"), []string{"RATION_WORKER_SECRET=" + secret}, python, args...)
	return w
}

// proc is a process the test started; t.Cleanup kills it, and on failure
// logs the end of its output.
type proc struct {
	cmd    *exec.Cmd
	exited chan struct{}
}

func startProc(t *testing.T, logPath string, env []string, name string, args ...string) *proc {
	t.Helper()
	out, err := os.OpenFile(logPath, os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(name, args...)
	cmd.Stdout, cmd.Stderr, cmd.Env = out, out, append(os.Environ(), env...)
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	p := &proc{cmd: cmd, exited: make(chan struct{})}
	go func() { cmd.Wait(); out.Close(); close(p.exited) }()
	t.Cleanup(func() {
		p.kill()
		if t.Failed() {
			b, _ := os.ReadFile(logPath)
			lines := strings.Split(strings.TrimSpace(string(b)), "\n")
			t.Logf("--- end of %s:\n%s", filepath.Base(logPath), strings.Join(lines[max(0, len(lines)-25):], "\n"))
		}
	})
	return p
}

func (p *proc) signal(sig syscall.Signal) { _ = p.cmd.Process.Signal(sig) }

// kill sends SIGKILL and waits until the process is gone.
func (p *proc) kill() {
	_ = p.cmd.Process.Kill()
	<-p.exited
}

// wait waits for the process to exit by itself and returns its exit code.
func (p *proc) wait(t *testing.T, timeout time.Duration) int {
	t.Helper()
	select {
	case <-p.exited:
		return p.cmd.ProcessState.ExitCode()
	case <-time.After(timeout):
		t.Fatalf("%s still running after %s", p.cmd.Args[0], timeout)
		return -1
	}
}
