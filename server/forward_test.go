package server_test

import (
	"context"
	"io"
	"net"
	"net/http"
	"sync"
	"testing"
	"time"

	"connectrpc.com/connect"

	"github.com/rationhq/ration/api/client"
	rationv1 "github.com/rationhq/ration/api/ration/v1"
	"github.com/rationhq/ration/cluster"
	"github.com/rationhq/ration/server"
	"github.com/rationhq/ration/server/servertest"
)

// faultMode is what a faultProxy does with a connection.
type faultMode int

const (
	pass      faultMode = iota // forward both ways
	refuse                     // no listener: dials are refused
	reset                      // read the request, then reset the connection
	hang                       // read the request, never answer
	resetOnce                  // reset the next connection, then pass
)

// faultProxy stands in front of the leader's API address, the one
// followers forward to, and fails the way a network or a process can.
type faultProxy struct {
	t      *testing.T
	addr   string
	target string

	mu    sync.Mutex
	mode  faultMode
	ln    net.Listener
	conns []net.Conn
}

func newFaultProxy(t *testing.T, target string) *faultProxy {
	p := &faultProxy{t: t, target: target}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p.addr, p.ln = ln.Addr().String(), ln
	go p.serve(ln)
	t.Cleanup(p.close)
	return p
}

// set changes the mode and closes the connections open (so the next
// call opens one); refuse closes the listener, leaving refuse opens it
// again on the same address.
func (p *faultProxy) set(m faultMode) {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, c := range p.conns {
		c.Close()
	}
	p.conns = nil
	time.Sleep(20 * time.Millisecond) // for the client to see them closed
	switch {
	case m == refuse && p.ln != nil:
		p.ln.Close()
		p.ln = nil
	case m != refuse && p.ln == nil:
		ln, err := net.Listen("tcp", p.addr)
		if err != nil {
			p.t.Errorf("listen again on %s: %v", p.addr, err)
			return
		}
		p.ln = ln
		go p.serve(ln)
	}
	p.mode = m
}

func (p *faultProxy) close() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.ln != nil {
		p.ln.Close()
		p.ln = nil
	}
	for _, c := range p.conns {
		c.Close()
	}
}

func (p *faultProxy) serve(ln net.Listener) {
	for {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		p.mu.Lock()
		m := p.mode
		if m == resetOnce {
			p.mode = pass
		}
		p.conns = append(p.conns, c)
		p.mu.Unlock()
		go p.handle(c, m)
	}
}

func (p *faultProxy) handle(c net.Conn, m faultMode) {
	switch m {
	case reset, resetOnce:
		c.Read(make([]byte, 4096))
		c.(*net.TCPConn).SetLinger(0)
		c.Close()
		return
	case hang:
		io.Copy(io.Discard, c)
		return
	}
	up, err := net.Dial("tcp", p.target)
	if err != nil {
		c.Close()
		return
	}
	go func() { io.Copy(up, c); up.Close() }()
	io.Copy(c, up)
	c.Close()
}

// faultCluster is three nodes whose first (the leader) publishes its API
// behind a faultProxy, so that forwards to it can fail.
type faultCluster struct {
	*servertest.Cluster
	proxy  *faultProxy
	leader *cluster.Node
	owners []rationv1connectOwner
}

type rationv1connectOwner = interface {
	AddItems(context.Context, *connect.Request[rationv1.AddItemsRequest]) (*connect.Response[rationv1.AddItemsResponse], error)
	GetService(context.Context, *connect.Request[rationv1.GetServiceRequest]) (*connect.Response[rationv1.GetServiceResponse], error)
}

const testLeaderWait = 600 * time.Millisecond

func newFaultCluster(t *testing.T) *faultCluster {
	var proxy *faultProxy
	c := servertest.StartWith(t, 3, servertest.Options{
		Config: func(i int, cfg *cluster.Config) {
			if i == 0 {
				proxy = newFaultProxy(t, cfg.APIAddr)
				cfg.APIAddr = proxy.addr
			}
		},
		Server: func(i int, cfg *server.Config) {
			cfg.LeaderWait = testLeaderWait
			cfg.CallTimeout = 5 * time.Second
		},
	})
	fc := &faultCluster{Cluster: c, proxy: proxy, leader: c.Leader()}
	if fc.leader != c.Nodes[0] {
		t.Fatalf("node 0 should lead, %s does", fc.leader.ID())
	}
	for _, a := range c.Addrs {
		fc.owners = append(fc.owners, newClients(http.DefaultClient, a, nil, "", workerSecret).owner)
	}
	if _, err := newClients(http.DefaultClient, c.Addrs[0], nil, "", "").owner.CreateService(ctx(t),
		connect.NewRequest(&rationv1.CreateServiceRequest{Name: "dm", Kind: "dmcheck"})); err != nil {
		t.Fatal(err)
	}
	c.EnsureSame()
	return fc
}

// add sends AddItems of one item to node i and times the answer.
func (fc *faultCluster) add(ctx context.Context, i int, item, requestID string) (time.Duration, error) {
	start := time.Now()
	_, err := fc.owners[i].AddItems(ctx, connect.NewRequest(&rationv1.AddItemsRequest{Service: "dm", Items: []string{item}, RequestId: requestID}))
	return time.Since(start), err
}

// has reports whether the leader's state holds item.
func (fc *faultCluster) has(item string) bool {
	_, ok := fc.leader.State().Item("dm", item)
	return ok
}

// wantRefusal checks an error's code, reason and serving node.
func wantRefusal(t *testing.T, what string, err error, code connect.Code, reason, servedBy string) {
	t.Helper()
	d := client.Detail(err)
	if connect.CodeOf(err) != code || d.GetReason() != reason || d.GetServedBy() != servedBy {
		t.Fatalf("%s: got %v (reason %q, served by %q), want %s %s served by %s", what, err, d.GetReason(), d.GetServedBy(), code, reason, servedBy)
	}
}

// TestForward_FailurePoints walks the ways a forward to the leader fails
// and checks what the caller is told: never sent is retried and then
// LEADER_UNREACHABLE; sent without an answer is OUTCOME_UNKNOWN at once, or
// retried when the write has a request id; the node's own bound on a call
// is OUTCOME_UNKNOWN; each with a reason and the node that answered.
func TestForward_FailurePoints(t *testing.T) {
	fc := newFaultCluster(t)
	f := 1 // a follower
	fid := fc.Nodes[f].ID()

	fc.proxy.set(refuse)
	took, err := fc.add(ctx(t), f, "refused", "")
	wantRefusal(t, "dial refused", err, connect.CodeUnavailable, "LEADER_UNREACHABLE", fid)
	if took < testLeaderWait {
		t.Errorf("dial refused: gave up after %s, before the leader wait %s", took, testLeaderWait)
	}
	go func() { time.Sleep(testLeaderWait / 3); fc.proxy.set(pass) }()
	if _, err := fc.add(ctx(t), f, "refused-then-back", ""); err != nil {
		t.Fatalf("a write never sent is retried until the leader answers: %v", err)
	}

	fc.proxy.set(reset)
	took, err = fc.add(ctx(t), f, "reset", "")
	wantRefusal(t, "reset mid-request", err, connect.CodeUnavailable, "OUTCOME_UNKNOWN", fid)
	if took >= testLeaderWait {
		t.Errorf("reset mid-request without a request id: answered after %s, want at once", took)
	}
	fc.proxy.set(resetOnce)
	if _, err := fc.add(ctx(t), f, "reset-once", "req-reset-once"); err != nil {
		t.Fatalf("reset mid-request with a request id is retried: %v", err)
	}

	fc.proxy.set(hang)
	took, err = fc.add(context.Background(), f, "hung", "") // no deadline: the node's own applies
	wantRefusal(t, "the node's own deadline", err, connect.CodeUnavailable, "OUTCOME_UNKNOWN", fid)
	if took < 5*time.Second || took > 8*time.Second {
		t.Errorf("a call with no deadline ended after %s, want the node's CallTimeout (5s)", took)
	}
	fc.proxy.set(pass)
	fc.EnsureSame()
	for item, want := range map[string]bool{"refused": false, "refused-then-back": true, "reset": false, "reset-once": true, "hung": false} {
		if fc.has(item) != want {
			t.Errorf("item %q in state: %v, want %v", item, !want, want)
		}
	}
}

// TestForward_FollowsLeadership: the leader's API stops answering (as a
// frozen process would) and leadership moves. A forwarded write with a
// request id goes to the new leader as soon as the follower learns of it; one
// without is answered OUTCOME_UNKNOWN then, not when the old leader wakes;
// a linearizable read is asked of the new leader.
func TestForward_FollowsLeadership(t *testing.T) {
	fc := newFaultCluster(t)
	fc.proxy.set(hang)
	type answer struct {
		at  time.Time
		err error
	}
	withID, withoutID, read := make(chan answer, 1), make(chan answer, 1), make(chan answer, 1)
	go func() { _, err := fc.add(ctx(t), 1, "with-id", "req-with-id"); withID <- answer{time.Now(), err} }()
	go func() { _, err := fc.add(ctx(t), 2, "without-id", ""); withoutID <- answer{time.Now(), err} }()
	go func() {
		_, err := fc.owners[2].GetService(ctx(t), connect.NewRequest(&rationv1.GetServiceRequest{Name: "dm"}))
		read <- answer{time.Now(), err}
	}()
	time.Sleep(300 * time.Millisecond)
	moved := time.Now()
	id, err := fc.leader.TransferLeadership(ctx(t), fc.Nodes[1].ID())
	if err != nil {
		t.Fatal(err)
	}
	// Bound: the transfer's election plus the new leader's first entries.
	const within = 2 * time.Second
	for _, w := range []struct {
		what string
		ch   chan answer
	}{{"with a request id", withID}, {"without one", withoutID}, {"read", read}} {
		var a answer
		select {
		case a = <-w.ch:
		case <-time.After(time.Until(moved.Add(within))):
			t.Fatalf("%s: no answer %s after leadership moved to %s", w.what, within, id)
		}
		if a.at.Before(moved) {
			t.Errorf("%s: answered (%v) before leadership moved: the forward did not wait for the leader", w.what, a.err)
		}
		if w.what == "without one" {
			wantRefusal(t, w.what, a.err, connect.CodeUnavailable, "OUTCOME_UNKNOWN", fc.Nodes[2].ID())
		} else if a.err != nil {
			t.Errorf("%s: %v", w.what, a.err)
		}
	}
	fc.proxy.set(pass)
	fc.EnsureSame()
	if !fc.has("with-id") {
		t.Error("the write with a request id is not in the state")
	}
	if fc.has("without-id") {
		t.Error("the write without one was applied, though it never reached a leader")
	}
}

// TestForward_LeaderLostWhileCommitting: a leader that cannot reach a
// quorum steps down with the write in flight; the write's outcome is
// unknown, and the leader says so.
func TestForward_LeaderLostWhileCommitting(t *testing.T) {
	fc := newFaultCluster(t)
	fc.Kill(1)
	fc.Kill(2)
	_, err := fc.add(ctx(t), 0, "lost", "")
	wantRefusal(t, "leader lost while committing", err, connect.CodeUnavailable, "OUTCOME_UNKNOWN", fc.leader.ID())
}
