package chaos

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"connectrpc.com/connect"

	rationv1 "github.com/rationhq/ration/api/ration/v1"
	"github.com/rationhq/ration/api/ration/v1/rationv1connect"
	"github.com/rationhq/ration/cluster/clustertest"
	"github.com/rationhq/ration/internal/testport"
)

// rationdBin is built once by TestMain.
var rationdBin string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "ration-chaos-bin-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	rationdBin = filepath.Join(dir, "rationd")
	build := exec.Command("go", "build", "-buildvcs=auto", "-o", rationdBin, "github.com/rationhq/ration/cmd/rationd")
	build.Stdout, build.Stderr = os.Stderr, os.Stderr
	if err := build.Run(); err != nil {
		fmt.Fprintln(os.Stderr, "build rationd:", err)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// proc is one rationd process.
type proc struct {
	t       *testing.T
	id      string
	api     string
	raft    string
	dataDir string
	logPath string
	// clockFile holds the offset of its wall clock (rationd's test-only
	// --test-clock-offset-file).
	clockFile string
	baseArgs  []string
	// bin is the rationd binary it runs: rationdBin when empty.
	bin string

	mu      sync.Mutex
	cmd     *exec.Cmd
	exited  chan struct{}
	stopped bool
}

func (p *proc) start(extra ...string) {
	p.t.Helper()
	p.mu.Lock()
	defer p.mu.Unlock()
	logf, err := os.OpenFile(p.logPath, os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o644)
	if err != nil {
		p.t.Fatal(err)
	}
	bin := p.bin
	if bin == "" {
		bin = rationdBin
	}
	cmd := exec.Command(bin, append(append([]string{}, p.baseArgs...), extra...)...)
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		p.t.Fatalf("start %s: %v", p.id, err)
	}
	exited := make(chan struct{})
	go func() { cmd.Wait(); logf.Close(); close(exited) }()
	p.cmd, p.exited, p.stopped = cmd, exited, false
}

// kill sends SIGKILL and waits until the process is gone.
func (p *proc) kill() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.cmd == nil {
		return
	}
	_ = p.cmd.Process.Signal(syscall.SIGKILL)
	<-p.exited
	p.cmd = nil
}

func (p *proc) signal(sig syscall.Signal) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.cmd != nil {
		_ = p.cmd.Process.Signal(sig)
		p.stopped = sig == syscall.SIGSTOP
	}
}

func (p *proc) running() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.cmd != nil && !p.stopped
}

func (p *proc) clusterClient() rationv1connect.ClusterServiceClient {
	return rationv1connect.NewClusterServiceClient(http.DefaultClient, "http://"+p.api)
}

func (p *proc) status(ctx context.Context) (*rationv1.StatusResponse, error) {
	ctx, cancel := context.WithTimeout(ctx, 500*time.Millisecond)
	defer cancel()
	r, err := p.clusterClient().Status(ctx, connect.NewRequest(&rationv1.StatusRequest{}))
	if err != nil {
		return nil, err
	}
	return r.Msg, nil
}

// proxy forwards TCP connections to a target and can cut them: the chaos
// tests put one on every Raft link (from node i to node j) so that single
// links can fail, as etcd's bridge does.
type proxy struct {
	ln     net.Listener
	target string

	mu    sync.Mutex
	cut   bool
	conns map[net.Conn]struct{}
}

func newProxy(t *testing.T, target string) *proxy {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &proxy{ln: ln, target: target, conns: map[net.Conn]struct{}{}}
	go p.serve()
	t.Cleanup(func() { ln.Close(); p.setCut(true) })
	return p
}

func (p *proxy) addr() string { return p.ln.Addr().String() }

func (p *proxy) serve() {
	for {
		c, err := p.ln.Accept()
		if err != nil {
			return
		}
		go p.handle(c)
	}
}

func (p *proxy) handle(c net.Conn) {
	p.mu.Lock()
	if p.cut {
		p.mu.Unlock()
		c.Close()
		return
	}
	p.mu.Unlock()
	up, err := net.DialTimeout("tcp", p.target, time.Second)
	if err != nil {
		c.Close()
		return
	}
	p.mu.Lock()
	if p.cut {
		p.mu.Unlock()
		c.Close()
		up.Close()
		return
	}
	p.conns[c], p.conns[up] = struct{}{}, struct{}{}
	p.mu.Unlock()
	done := make(chan struct{}, 2)
	go func() { io.Copy(up, c); done <- struct{}{} }()
	go func() { io.Copy(c, up); done <- struct{}{} }()
	<-done
	c.Close()
	up.Close()
	p.mu.Lock()
	delete(p.conns, c)
	delete(p.conns, up)
	p.mu.Unlock()
}

// setCut blackholes the link (closing what is open) or heals it.
func (p *proxy) setCut(cut bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.cut = cut
	if cut {
		for c := range p.conns {
			c.Close()
		}
	}
}

// testCluster is n rationd processes wired through per-link proxies.
type testCluster struct {
	t       *testing.T
	procs   []*proc
	proxies map[[2]int]*proxy // [from, to]
	dir     string
}

// clusterArgs are the timing flags of a chaos cluster: fast elections and
// ticks, a failover grace of a few election timeouts.
var clusterArgs = []string{"--election-timeout", "300ms", "--tick-interval", "100ms", "--failover-grace", "1500ms", "--log-level", "info"}

// startCluster starts n nodes with data dirs and logs in dir; extra flags
// go to every node, at every start.
func startCluster(t *testing.T, n int, dir string, extra ...string) *testCluster {
	t.Helper()
	c := newTestCluster(t, n, dir, extra...)
	c.boot()
	return c
}

// newTestCluster lays out n nodes (ports, proxies, flags) with data dirs
// and logs in dir, without starting any; extra flags go to every node, at
// every start. Its cleanup kills them all.
func newTestCluster(t *testing.T, n int, dir string, extra ...string) *testCluster {
	t.Helper()
	c := &testCluster{t: t, proxies: map[[2]int]*proxy{}, dir: dir}
	for i := range n {
		id := fmt.Sprintf("n%d", i+1)
		c.procs = append(c.procs, &proc{t: t, id: id, api: testport.Free(t), raft: testport.Free(t),
			dataDir: filepath.Join(dir, id), logPath: filepath.Join(dir, id+".log"), clockFile: filepath.Join(dir, id+".clock")})
	}
	for i := range n {
		for j := range n {
			if i != j {
				c.proxies[[2]int{i, j}] = newProxy(t, c.procs[j].raft)
			}
		}
	}
	for i, p := range c.procs {
		var dial []string
		for j, q := range c.procs {
			if i != j {
				dial = append(dial, q.id+"="+c.proxies[[2]int{i, j}].addr())
			}
		}
		p.baseArgs = append([]string{"--node-id", p.id, "--data-dir", p.dataDir, "--http-addr", p.api, "--raft-addr", p.raft,
			"--raft-dial", strings.Join(dial, ","), "--test-clock-offset-file", p.clockFile, "--enable-test-flags"}, clusterArgs...)
		p.baseArgs = append(p.baseArgs, extra...)
	}
	t.Cleanup(func() {
		for _, p := range c.procs {
			p.kill()
		}
	})
	return c
}

// boot starts the first node as a new cluster, joins the others through it,
// and waits until every node sees them all and a leader.
func (c *testCluster) boot() {
	c.t.Helper()
	n := len(c.procs)
	c.procs[0].start("--bootstrap")
	clustertest.WaitFor(c.t, 30*time.Second, func() error {
		st, err := c.procs[0].status(context.Background())
		if err != nil || st.State != "Leader" {
			return fmt.Errorf("n1 not leading yet: %v", err)
		}
		return nil
	})
	for _, p := range c.procs[1:] {
		p.start("--join", c.procs[0].api)
	}
	clustertest.WaitFor(c.t, 60*time.Second, func() error {
		for _, p := range c.procs {
			st, err := p.status(context.Background())
			if err != nil {
				return err
			}
			if len(st.Members) != n || st.LeaderId == "" {
				return fmt.Errorf("%s: %d members, leader %q", p.id, len(st.Members), st.LeaderId)
			}
		}
		return nil
	})
}

func (c *testCluster) addrs() []string {
	var out []string
	for _, p := range c.procs {
		out = append(out, p.api)
	}
	return out
}

// leader returns the node the running nodes agree leads, or -1.
func (c *testCluster) leader() int {
	votes := map[string]int{}
	for _, p := range c.procs {
		if !p.running() {
			continue
		}
		if st, err := p.status(context.Background()); err == nil && st.LeaderId != "" {
			votes[st.LeaderId]++
		}
	}
	for i, p := range c.procs {
		if votes[p.id] > len(c.procs)/2 && p.running() {
			return i
		}
	}
	return -1
}

func (c *testCluster) waitLeader(timeout time.Duration) int {
	var l int
	clustertest.WaitFor(c.t, timeout, func() error {
		if l = c.leader(); l < 0 {
			return fmt.Errorf("no agreed leader")
		}
		return nil
	})
	return l
}

// cutNode isolates node i from every other node (both directions) or heals it.
func (c *testCluster) cutNode(i int, cut bool) {
	for k, p := range c.proxies {
		if k[0] == i || k[1] == i {
			p.setCut(cut)
		}
	}
}

// killAll SIGKILLs every node at once: the signals go out in one tight
// loop before it waits for any process to exit. It returns the time from
// the first signal to the last.
func (c *testCluster) killAll() time.Duration {
	for _, p := range c.procs {
		p.mu.Lock()
	}
	start := time.Now()
	for _, p := range c.procs {
		if p.cmd != nil {
			_ = p.cmd.Process.Signal(syscall.SIGKILL)
		}
	}
	spread := time.Since(start)
	for _, p := range c.procs {
		if p.cmd != nil {
			<-p.exited
			p.cmd = nil
		}
		p.mu.Unlock()
	}
	return spread
}
