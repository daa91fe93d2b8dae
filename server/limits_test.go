package server_test

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"connectrpc.com/connect"
	"golang.org/x/net/http2"
	"google.golang.org/protobuf/proto"

	"github.com/rationhq/ration/api/client"
	rationv1 "github.com/rationhq/ration/api/ration/v1"
	"github.com/rationhq/ration/api/ration/v1/rationv1connect"
	"github.com/rationhq/ration/cluster"
	"github.com/rationhq/ration/cluster/clustertest"
	"github.com/rationhq/ration/server"
)

// limitedCluster is n nodes serving the API with the given limits.
type limitedCluster struct {
	*clustertest.Cluster
	addrs []string
	srvs  []*server.Server
}

func (c *limitedCluster) addrOf(n *cluster.Node) string { return c.addrs[c.Index(n)] }
func (c *limitedCluster) srvOf(n *cluster.Node) *server.Server {
	return c.srvs[c.Index(n)]
}

// startLimitedWith starts n nodes, as servertest.Start does, whose servers
// enforce lim, with each node's cluster config edited by edit, if not nil.
func startLimitedWith(t *testing.T, n int, lim server.Limits, edit func(*cluster.Config)) *limitedCluster {
	t.Helper()
	return startLimitedOpts(t, n, lim, clustertest.Options{Config: func(_ int, cfg *cluster.Config) {
		if edit != nil {
			edit(cfg)
		}
	}})
}

// startLimitedInMemory starts one node held in memory
// (clustertest.Options.InMemory), whose server enforces lim. With no
// other voter it cannot lose leadership, so it needs no tolerant timeouts.
func startLimitedInMemory(t *testing.T, lim server.Limits) *limitedCluster {
	t.Helper()
	return startLimitedOpts(t, 1, lim, clustertest.Options{InMemory: true})
}

// startLimitedOpts starts n nodes as opts says, whose servers enforce lim.
func startLimitedOpts(t *testing.T, n int, lim server.Limits, opts clustertest.Options) *limitedCluster {
	t.Helper()
	c := &limitedCluster{addrs: make([]string, n), srvs: make([]*server.Server, n)}
	handlers := make([]*atomic.Pointer[http.Handler], n)
	for i := range n {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		c.addrs[i] = ln.Addr().String()
		h := &atomic.Pointer[http.Handler]{}
		handlers[i] = h
		srv := &http.Server{ReadHeaderTimeout: 5 * time.Second, Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if p := h.Load(); p != nil {
				(*p).ServeHTTP(w, r)
				return
			}
			http.Error(w, "starting", http.StatusServiceUnavailable)
		})}
		go srv.Serve(ln)
		t.Cleanup(func() { srv.Close() })
	}
	edit := opts.Config
	opts.Config = func(i int, cfg *cluster.Config) {
		cfg.APIAddr = c.addrs[i]
		if edit != nil {
			edit(i, cfg)
		}
	}
	c.Cluster = clustertest.New(t, n, opts)
	for i, node := range c.Nodes {
		l := lim
		c.srvs[i] = server.New(node, server.Config{Logger: clustertest.FastConfig(t, node.ID()).Logger, Limits: &l})
		h := c.srvs[i].Handler()
		handlers[i].Store(&h)
	}
	return c
}

// tolerant gives Raft the timeouts of a production node, which a loaded
// 2-core machine keeps up with: these tests are about the API edge, not
// elections.
func tolerant(cfg *cluster.Config) {
	d := cluster.DefaultConfig()
	cfg.HeartbeatTimeout, cfg.ElectionTimeout, cfg.LeaderLeaseTimeout = d.HeartbeatTimeout, d.ElectionTimeout, d.LeaderLeaseTimeout
	cfg.FailoverGrace = 2 * d.ElectionTimeout
}

// dialFrom returns a dialer whose connections come from the loopback
// address ip (Linux answers on all of 127.0.0.0/8).
func dialFrom(ip string) func(ctx context.Context, network, addr string) (net.Conn, error) {
	d := &net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(ip)}}
	return d.DialContext
}

// httpFrom is an HTTP/1.1 client calling from ip.
func httpFrom(ip string) *http.Client {
	return &http.Client{Transport: &http.Transport{DialContext: dialFrom(ip), MaxIdleConnsPerHost: 64}}
}

// h2cFrom is a cleartext HTTP/2 client (for gRPC) calling from ip.
func h2cFrom(ip string) *http.Client {
	dial := dialFrom(ip)
	return &http.Client{Transport: &http2.Transport{AllowHTTP: true,
		DialTLSContext: func(ctx context.Context, network, addr string, _ *tls.Config) (net.Conn, error) {
			return dial(ctx, network, addr)
		}}}
}

// servedBy returns the node named in err's ErrorDetail.
func servedBy(err error) string { return client.Detail(err).GetServedBy() }

// refusedAtEdge fails t unless err is code, from the node named node,
// with a message naming limit.
func refusedAtEdge(t *testing.T, err error, code connect.Code, node string, limit int) {
	t.Helper()
	if connect.CodeOf(err) != code {
		t.Fatalf("got %v, want %v", err, code)
	}
	if node != "" && servedBy(err) != node {
		t.Fatalf("refused by %q, want the receiving node %s: %v", servedBy(err), node, err)
	}
	if !strings.Contains(err.Error(), strconv.Itoa(limit)) {
		t.Fatalf("the message does not name the limit %d: %v", limit, err)
	}
}

// ids returns n distinct ids of len bytes (at least 12), prefixed p.
func ids(p string, n, size int) []string {
	out := make([]string, n)
	for i := range out {
		id := fmt.Sprintf("%s%08d", p, i)
		out[i] = id + strings.Repeat("x", size-len(id))
	}
	return out
}

// submitOfSize returns a Submit of a result per item of b, whose payloads
// make it exactly size bytes.
func submitOfSize(t *testing.T, b *rationv1.LeasedBucket, size int) *rationv1.SubmitRequest {
	t.Helper()
	m := &rationv1.SubmitRequest{WorkerId: "w", BucketId: b.Id, Epoch: b.Lease.Epoch, RequestId: fmt.Sprint("of-size-", size)}
	each := size / len(b.Items)
	for _, it := range b.Items {
		m.Results = append(m.Results, &rationv1.ResultInput{Item: it, Verdict: "OK", Payload: strings.Repeat("p", each)})
	}
	// Trim the payloads until the size is exact (length prefixes may
	// shrink by a byte on the way).
	for i := 0; proto.Size(m) != size; i++ {
		r := m.Results[i%len(m.Results)]
		r.Payload = r.Payload[:len(r.Payload)-min(proto.Size(m)-size, len(r.Payload))]
		if i > 10*len(m.Results) {
			t.Fatalf("cannot make %d bytes: %d", size, proto.Size(m))
		}
	}
	return m
}

// TestLimits_RequestsAtTheEdge checks each limit on a request's size and
// fields at its boundary: at the limit served, one past it refused by the
// follower that received it, before forwarding, with the limit named.
// Calls that must be served go through the Go client, which retries them
// (with their request id) should leadership move meanwhile.
func TestLimits_RequestsAtTheEdge(t *testing.T) {
	c := startLimitedWith(t, 3, server.DefaultLimits(), tolerant)
	f := c.Followers()[0]
	p := protocols[0]
	raw := newClients(p.http, c.addrOf(f), p.opts, "", workerSecret) // to see refusals as they are
	addrs := append([]string{c.addrOf(f)}, c.addrs...)
	cl, err := client.New(client.Config{Addrs: addrs, WorkerSecret: workerSecret})
	if err != nil {
		t.Fatal(err)
	}
	bg := context.Background()
	mustCreate := func(name, kind string, cfg *rationv1.ServiceConfig) {
		t.Helper()
		if _, err := cl.CreateService(bg, &rationv1.CreateServiceRequest{Name: name, Kind: kind, Config: cfg}); err != nil {
			t.Fatal(err)
		}
	}
	// mustLease registers w for svc and leases its next bucket.
	mustLease := func(svc string, items int) *rationv1.LeasedBucket {
		t.Helper()
		if _, err := cl.Register(bg, &rationv1.RegisterRequest{Service: svc, WorkerId: "w"}); err != nil {
			t.Fatal(err)
		}
		acq, err := cl.Acquire(bg, &rationv1.AcquireRequest{Service: svc, WorkerId: "w", MaxBuckets: 1})
		if err != nil || len(acq.Buckets) != 1 || len(acq.Buckets[0].Items) != items {
			t.Fatalf("acquire a bucket of %d: %v, %v", items, acq, err)
		}
		return acq.Buckets[0]
	}
	mustCreate("edge", "dmcheck", &rationv1.ServiceConfig{MaxItemsPerAdd: server.MaxItemsPerAdd, BucketSize: server.MaxResultsPerSubmit})

	t.Run("ids per AddItems", func(t *testing.T) {
		items := ids("i-", server.MaxItemsPerAdd+1, 12)
		_, err := raw.owner.AddItems(bg, connect.NewRequest(&rationv1.AddItemsRequest{Service: "edge", Items: items}))
		refusedAtEdge(t, err, connect.CodeInvalidArgument, f.ID(), server.MaxItemsPerAdd)
		res, err := cl.AddItems(bg, &rationv1.AddItemsRequest{Service: "edge", Items: items[:server.MaxItemsPerAdd]})
		if err != nil || res.Added != server.MaxItemsPerAdd {
			t.Fatalf("at the limit: %v, %v", res, err)
		}
	})

	t.Run("results per Submit", func(t *testing.T) {
		b := mustLease("edge", server.MaxResultsPerSubmit)
		res := make([]*rationv1.ResultInput, 0, server.MaxResultsPerSubmit+1)
		for _, it := range b.Items {
			res = append(res, &rationv1.ResultInput{Item: it, Verdict: "DM"})
		}
		over := append(res, &rationv1.ResultInput{Item: "one-too-many", Verdict: "DM"})
		_, err := raw.worker.Submit(bg, connect.NewRequest(&rationv1.SubmitRequest{WorkerId: "w", BucketId: b.Id, Epoch: b.Lease.Epoch, Results: over}))
		refusedAtEdge(t, err, connect.CodeInvalidArgument, f.ID(), server.MaxResultsPerSubmit)
		sub, err := cl.Submit(bg, &rationv1.SubmitRequest{WorkerId: "w", BucketId: b.Id, Epoch: b.Lease.Epoch, Results: res})
		if err != nil || sub.Accepted != server.MaxResultsPerSubmit {
			t.Fatalf("at the limit: %v, %v", sub, err)
		}
	})

	t.Run("payload bytes per result", func(t *testing.T) {
		mustCreate("edge-payload", "generic", &rationv1.ServiceConfig{Verdicts: []string{"OK"}, MaxPayloadBytes: server.MaxPayloadBytes, BucketSize: 2})
		if _, err := cl.AddItems(bg, &rationv1.AddItemsRequest{Service: "edge-payload", Items: []string{"a", "b"}}); err != nil {
			t.Fatal(err)
		}
		b := mustLease("edge-payload", 2)
		submit := func(n int) *rationv1.SubmitRequest {
			return &rationv1.SubmitRequest{WorkerId: "w", BucketId: b.Id, Epoch: b.Lease.Epoch,
				Results: []*rationv1.ResultInput{{Item: b.Items[0], Verdict: "OK", Payload: strings.Repeat("p", n)}}}
		}
		_, err := raw.worker.Submit(bg, connect.NewRequest(submit(server.MaxPayloadBytes+1)))
		refusedAtEdge(t, err, connect.CodeInvalidArgument, f.ID(), server.MaxPayloadBytes)
		if sub, err := cl.Submit(bg, submit(server.MaxPayloadBytes)); err != nil || sub.Accepted != 1 {
			t.Fatalf("at the limit: %v, %v", sub, err)
		}
	})

	t.Run("id length", func(t *testing.T) {
		long := ids("long-", 2, server.MaxIDBytes+1)
		_, err := raw.worker.Register(bg, connect.NewRequest(&rationv1.RegisterRequest{Service: "edge", WorkerId: long[0]}))
		refusedAtEdge(t, err, connect.CodeInvalidArgument, f.ID(), server.MaxIDBytes)
		if _, err := cl.Register(bg, &rationv1.RegisterRequest{Service: "edge", WorkerId: long[0][:server.MaxIDBytes]}); err != nil {
			t.Fatalf("a worker id at the limit: %v", err)
		}
		_, err = raw.owner.AddItems(bg, connect.NewRequest(&rationv1.AddItemsRequest{Service: "edge", Items: long}))
		refusedAtEdge(t, err, connect.CodeInvalidArgument, f.ID(), server.MaxIDBytes)
		if res, err := cl.AddItems(bg, &rationv1.AddItemsRequest{Service: "edge", Items: []string{long[0][:server.MaxIDBytes], long[1][:server.MaxIDBytes]}}); err != nil || res.Added != 2 {
			t.Fatalf("item ids at the limit: %v, %v", res, err)
		}
	})
}

// TestLimits_RequestBytes checks MaxRequestBytes at its boundary, on a
// lone node held in memory (a 16 MiB log entry is slow to replicate on a
// loaded machine).
func TestLimits_RequestBytes(t *testing.T) {
	c := startLimitedInMemory(t, server.DefaultLimits())
	n := c.Leader()
	cl, err := client.New(client.Config{Addrs: c.addrs, WorkerSecret: workerSecret})
	if err != nil {
		t.Fatal(err)
	}
	bg := context.Background()
	// A Submit of 16 payloads of about 1 MiB: large, but cheap to apply.
	if _, err := cl.CreateService(bg, &rationv1.CreateServiceRequest{Name: "bytes", Kind: "generic",
		Config: &rationv1.ServiceConfig{Verdicts: []string{"OK"}, MaxPayloadBytes: server.MaxPayloadBytes, BucketSize: 16}}); err != nil {
		t.Fatal(err)
	}
	if _, err := cl.AddItems(bg, &rationv1.AddItemsRequest{Service: "bytes", Items: ids("big-", 16, 12)}); err != nil {
		t.Fatal(err)
	}
	if _, err := cl.Register(bg, &rationv1.RegisterRequest{Service: "bytes", WorkerId: "w"}); err != nil {
		t.Fatal(err)
	}
	acq, err := cl.Acquire(bg, &rationv1.AcquireRequest{Service: "bytes", WorkerId: "w", MaxBuckets: 1})
	if err != nil || len(acq.Buckets) != 1 || len(acq.Buckets[0].Items) != 16 {
		t.Fatalf("acquire: %v, %v", acq, err)
	}
	b := acq.Buckets[0]
	before := n.State().Index()
	over := submitOfSize(t, b, server.MaxRequestBytes+1)
	for _, p := range protocols {
		pc := newClients(p.http, c.addrOf(n), p.opts, "", workerSecret)
		_, err := pc.worker.Submit(bg, connect.NewRequest(over))
		// Refused by the transport, before any handler: no ErrorDetail.
		refusedAtEdge(t, err, connect.CodeResourceExhausted, "", server.MaxRequestBytes)
	}
	if after := n.State().Index(); after != before {
		t.Fatalf("the index moved from %d to %d on refused requests", before, after)
	}
	sub, err := cl.Submit(bg, submitOfSize(t, b, server.MaxRequestBytes))
	if err != nil || sub.Accepted != 16 {
		t.Fatalf("at the limit: %v, %v", sub, err)
	}
}

// fakeClock is a clock that moves only when told.
type fakeClock struct {
	mu  sync.Mutex
	now time.Time
}

func newFakeClock() *fakeClock { return &fakeClock{now: time.Unix(1_800_000_000, 0)} }

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
}

// rateLimited fails t unless err is a rate-limit refusal by node, naming
// flag, with a retry hint of wait in its message and headers.
func rateLimited(t *testing.T, err error, node, flag string, wait time.Duration) {
	t.Helper()
	var ce *connect.Error
	if !errors.As(err, &ce) || ce.Code() != connect.CodeResourceExhausted || client.Reason(err) != "RATE_LIMITED" {
		t.Fatalf("got %v, want ResourceExhausted, RATE_LIMITED", err)
	}
	if servedBy(err) != node {
		t.Fatalf("refused by %q, want %s: %v", servedBy(err), node, err)
	}
	ms := strconv.FormatInt(wait.Milliseconds(), 10)
	if !strings.Contains(err.Error(), flag) || !strings.Contains(err.Error(), "retry after "+ms+"ms") {
		t.Fatalf("message lacks %s or the retry hint %sms: %v", flag, ms, err)
	}
	secs := strconv.Itoa(int((wait + time.Second - 1) / time.Second))
	if got := ce.Meta().Get(server.RetryAfterMsHeader); got != ms {
		t.Fatalf("%s: %q, want %q", server.RetryAfterMsHeader, got, ms)
	}
	if got := ce.Meta().Get(server.RetryAfterHeader); got != secs {
		t.Fatalf("%s: %q, want %q", server.RetryAfterHeader, got, secs)
	}
	if d, ok := client.RetryAfter(err); !ok || d != wait {
		t.Fatalf("client.RetryAfter = %v, %v; want %v", d, ok, wait)
	}
}

// TestRateLimit_PerWorker checks the per-worker limits of Register and
// Acquire at their boundary, over Connect and gRPC: a burst of 3 served,
// the 4th refused by the node called, with a hint that is exact (the
// clock is fake); served again once a token has refilled. Other workers,
// and callers without the worker's secret, have budgets of their own; the
// leader counts the calls followers forward.
func TestRateLimit_PerWorker(t *testing.T) {
	clock := newFakeClock()
	lim := server.Limits{RegisterPerWorker: server.RateLimit{Rate: 1, Burst: 3}, AcquirePerWorker: server.RateLimit{Rate: 2, Burst: 3}, Now: clock.Now}
	c := startLimitedWith(t, 3, lim, tolerant)
	leader, f := c.Leader(), c.Followers()[0]
	bg := context.Background()
	owner, err := client.New(client.Config{Addrs: c.addrs})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := owner.CreateService(bg, &rationv1.CreateServiceRequest{Name: "rl", Kind: "dmcheck"}); err != nil {
		t.Fatal(err)
	}
	for _, p := range protocols[:2] {
		t.Run(p.name, func(t *testing.T) {
			id := "w-" + p.name
			wf := newClients(p.http, c.addrOf(f), p.opts, "", workerSecret).worker
			register := func(w rationv1connect.WorkerServiceClient, id string) error {
				_, err := w.Register(bg, connect.NewRequest(&rationv1.RegisterRequest{Service: "rl", WorkerId: id}))
				return err
			}
			acquire := func(w rationv1connect.WorkerServiceClient, id string) error {
				_, err := w.Acquire(bg, connect.NewRequest(&rationv1.AcquireRequest{Service: "rl", WorkerId: id}))
				return err
			}
			for i := range 3 {
				if err := register(wf, id); err != nil {
					t.Fatalf("register %d of a burst of 3: %v", i+1, err)
				}
			}
			rateLimited(t, register(wf, id), f.ID(), "--rate-register-worker", time.Second)
			clock.Advance(999 * time.Millisecond)
			rateLimited(t, register(wf, id), f.ID(), "--rate-register-worker", time.Millisecond)
			clock.Advance(time.Millisecond)
			if err := register(wf, id); err != nil {
				t.Fatalf("register once a token refilled: %v", err)
			}
			// Another worker is not held back, nor is this one by a
			// caller without its secret (whom the state machine refuses).
			if err := register(wf, id+"-other"); err != nil {
				t.Fatalf("another worker: %v", err)
			}
			stranger := newClients(p.http, c.addrOf(f), p.opts, "", "not-the-worker-secret-at-all").worker
			if err := register(stranger, id); connect.CodeOf(err) != connect.CodeUnauthenticated {
				t.Fatalf("a stranger's register for %s: %v, want Unauthenticated", id, err)
			}

			for i := range 3 {
				if err := acquire(wf, id); err != nil {
					t.Fatalf("acquire %d of a burst of 3: %v", i+1, err)
				}
			}
			rateLimited(t, acquire(wf, id), f.ID(), "--rate-acquire-worker", 500*time.Millisecond)

			// The leader counts what followers forward: 2 calls of a new
			// worker to the leader, 2 through the follower; the 4th is
			// refused by the leader, and its hint comes back through the
			// follower.
			wl := newClients(p.http, c.addrOf(leader), p.opts, "", workerSecret).worker
			fresh := id + "-forwarded"
			if err := register(wl, fresh); err != nil {
				t.Fatal(err)
			}
			for i, w := range []rationv1connect.WorkerServiceClient{wl, wl, wf} {
				if err := acquire(w, fresh); err != nil {
					t.Fatalf("acquire %d: %v", i+1, err)
				}
			}
			rateLimited(t, acquire(wf, fresh), leader.ID(), "--rate-acquire-worker", 500*time.Millisecond)
		})
	}
}

// TestRateLimit_PerAddressOnTheFirstNode checks the per-address limit at
// its boundary, and that only the node a client called applies it: the
// leader does not count forwarded calls against the follower's address,
// and a client that sets the forwarding header itself gains nothing.
func TestRateLimit_PerAddressOnTheFirstNode(t *testing.T) {
	lim := server.Limits{RegisterPerAddr: server.RateLimit{Rate: 1, Burst: 3}, AcquirePerAddr: server.RateLimit{Rate: 2, Burst: 2},
		Now: newFakeClock().Now} // no exemptions
	c := startLimitedWith(t, 3, lim, tolerant)
	leader, f := c.Leader(), c.Followers()[0]
	bg := context.Background()
	owner, err := client.New(client.Config{Addrs: c.addrs})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := owner.CreateService(bg, &rationv1.CreateServiceRequest{Name: "rl", Kind: "dmcheck"}); err != nil {
		t.Fatal(err)
	}
	from := func(ip string, node *cluster.Node, header http.Header) func(id string) error {
		w := rationv1connect.NewWorkerServiceClient(httpFrom(ip), "http://"+c.addrOf(node), connect.WithInterceptors(client.Bearer(workerSecret)))
		return func(id string) error {
			req := connect.NewRequest(&rationv1.RegisterRequest{Service: "rl", WorkerId: id})
			for k, v := range header {
				req.Header()[k] = v
			}
			_, err := w.Register(bg, req)
			return err
		}
	}
	burst := func(register func(string) error, who string) {
		t.Helper()
		for i := range 3 {
			if err := register(fmt.Sprintf("%s-%d", who, i)); err != nil {
				t.Fatalf("%s: register %d of a burst of 3: %v", who, i+1, err)
			}
		}
	}
	a := from("127.0.0.2", f, nil)
	burst(a, "a")
	err = a("a-3")
	rateLimited(t, err, f.ID(), "--rate-register-addr", time.Second)
	if !strings.Contains(err.Error(), "client address 127.0.0.2") {
		t.Fatalf("the refusal does not name the address: %v", err)
	}
	// The follower forwarded a's calls from its own address, 127.0.0.1;
	// the leader did not count them, so b's, forwarded too, are served.
	burst(from("127.0.0.3", f, nil), "b")
	// A client naming itself a forwarding node is counted all the same.
	forged := from("127.0.0.4", leader, http.Header{"Ration-Forwarded-By": {f.ID()}})
	burst(forged, "c")
	rateLimited(t, forged("c-3"), leader.ID(), "--rate-register-addr", time.Second)

	// Acquire has a budget of its own: 2 served, the 3rd refused.
	w := rationv1connect.NewWorkerServiceClient(httpFrom("127.0.0.5"), "http://"+c.addrOf(f), connect.WithInterceptors(client.Bearer(workerSecret)))
	acquire := func() error {
		_, err := w.Acquire(bg, connect.NewRequest(&rationv1.AcquireRequest{Service: "rl", WorkerId: "a-0"}))
		return err
	}
	for i := range 2 {
		if err := acquire(); err != nil {
			t.Fatalf("acquire %d of a burst of 2: %v", i+1, err)
		}
	}
	rateLimited(t, acquire(), f.ID(), "--rate-acquire-addr", 500*time.Millisecond)
}

// TestLimits_StreamsPerAddress checks DefaultMaxStreamsPerAddr at its
// boundary, over Connect and gRPC: that many server streams open at once
// from one address, one more refused (whichever procedure), one more
// again once one closes; another address is not held back.
func TestLimits_StreamsPerAddress(t *testing.T) {
	c := startLimitedInMemory(t, server.DefaultLimits())
	n := c.Leader()
	bg := context.Background()
	owner, err := client.New(client.Config{Addrs: c.addrs})
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"s1", "s2"} { // activity to watch
		if _, err := owner.CreateService(bg, &rationv1.CreateServiceRequest{Name: name, Kind: "dmcheck"}); err != nil {
			t.Fatal(err)
		}
	}
	// open opens a WatchActivity stream and waits for its first message,
	// so the server holds it; it returns the stream's cancel, or the
	// error that ended it.
	open := func(ic rationv1connect.InsightServiceClient) (context.CancelFunc, error) {
		ctx, cancel := context.WithTimeout(bg, 10*time.Second)
		s, err := ic.WatchActivity(ctx, connect.NewRequest(&rationv1.WatchActivityRequest{AfterSeq: 1}))
		if err == nil && !s.Receive() {
			err = s.Err()
			if err == nil {
				err = errors.New("stream ended without a message")
			}
		}
		if err != nil {
			cancel()
			return nil, err
		}
		return cancel, nil
	}
	const limit = server.DefaultMaxStreamsPerAddr
	for _, p := range protocols[:2] {
		t.Run(p.name, func(t *testing.T) {
			cl := newClients(p.http, c.addrOf(n), p.opts, "", workerSecret)
			var open_ []context.CancelFunc
			t.Cleanup(func() {
				for _, cancel := range open_ {
					cancel()
				}
			})
			// The server notices an earlier subtest's streams closed shortly.
			clustertest.WaitFor(t, 5*time.Second, func() error {
				if n := server.OpenStreams(c.srvOf(n)); n != 0 {
					return fmt.Errorf("%d streams still open", n)
				}
				return nil
			})
			for i := 0; i < limit; i++ {
				cancel, err := open(cl.insight)
				if err != nil {
					t.Fatalf("stream %d of %d: %v", i+1, limit, err)
				}
				open_ = append(open_, cancel)
			}
			_, err := open(cl.insight)
			if connect.CodeOf(err) != connect.CodeResourceExhausted || client.Reason(err) != "TOO_MANY_STREAMS" || !strings.Contains(err.Error(), strconv.Itoa(limit)) {
				t.Fatalf("stream %d: %v, want ResourceExhausted, TOO_MANY_STREAMS, naming %d", limit+1, err, limit)
			}
			ex, err := cl.owner.ExportResults(bg, connect.NewRequest(&rationv1.ExportResultsRequest{Service: "s1"}))
			if err == nil && !ex.Receive() {
				err = ex.Err()
			}
			if client.Reason(err) != "TOO_MANY_STREAMS" {
				t.Fatalf("an ExportResults stream over the limit: %v", err)
			}
			other := newClients(h2cFrom("127.0.0.2"), c.addrOf(n), []connect.ClientOption{connect.WithGRPC()}, "", workerSecret)
			cancel, err := open(other.insight)
			if err != nil {
				t.Fatalf("another address: %v", err)
			}
			cancel()
			// Closing one frees its slot (the server notices shortly).
			open_[0]()
			clustertest.WaitFor(t, 5*time.Second, func() error {
				cancel, err := open(cl.insight)
				if err != nil {
					return err
				}
				open_[0] = cancel
				return nil
			})
			for _, cancel := range open_ {
				cancel()
			}
			open_ = nil
		})
	}
}

// TestRateLimit_KeysBounded floods a node with calls from ever new worker
// ids: the limiters track no more than MaxKeys.
func TestRateLimit_KeysBounded(t *testing.T) {
	const maxKeys = 50
	lim := server.Limits{RegisterPerWorker: server.RateLimit{Rate: 1, Burst: 1}, AcquirePerWorker: server.RateLimit{Rate: 1, Burst: 1}, MaxKeys: maxKeys}
	c := startLimitedInMemory(t, lim)
	n := c.Leader()
	w := newClients(http.DefaultClient, c.addrOf(n), nil, "", workerSecret).worker
	for i := range 20 * maxKeys {
		// A service name no service can have: refused after the limits.
		_, err := w.Acquire(context.Background(), connect.NewRequest(&rationv1.AcquireRequest{Service: "NOT A NAME", WorkerId: fmt.Sprint("id-", i)}))
		if connect.CodeOf(err) != connect.CodeInvalidArgument {
			t.Fatalf("call %d: %v, want InvalidArgument", i, err)
		}
		if got := server.RateKeys(c.srvOf(n)); got > maxKeys {
			t.Fatalf("after %d ids: %d keys tracked, limit %d", i+1, got, maxKeys)
		}
	}
	if got := server.RateKeys(c.srvOf(n)); got != maxKeys {
		t.Fatalf("%d keys tracked after the flood, want the limit %d", got, maxKeys)
	}
}
