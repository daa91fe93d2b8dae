package main

// The ration side: three nodes started in this process as cmd/rationd
// starts one (cluster.DefaultConfig, node n1 bootstraps, n2 and n3 are
// joined through the leader's cluster.Node.Join, each serving
// server.New(node).Handler() on its own loopback port), driven through the
// Go client in api/client exactly as a worker would use it.

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	"connectrpc.com/connect"
	"github.com/hashicorp/go-hclog"

	"github.com/rationhq/ration/api/client"
	rationv1 "github.com/rationhq/ration/api/ration/v1"
	"github.com/rationhq/ration/cluster"
	"github.com/rationhq/ration/server"
)

const workerSecret = "ration-bench-worker-secret" // 16+ bytes

type rationSystem struct {
	nodes   []*cluster.Node
	servers []*http.Server
	apis    []*server.Server
	addrs   []string // API addresses, the leader's first
	// The workers' HTTP clients: one shared HTTP/1.1 client (a connection
	// per call in flight), or conns HTTP/2 cleartext clients for gRPC.
	hcs   []*http.Client
	opts  []connect.ClientOption
	proto string
	owner *client.Client
}

// startRation starts a 3-node ration cluster with its data under dir.
func startRation(ctx context.Context, dir, proto string, conns int) (sys *rationSystem, err error) {
	s := &rationSystem{proto: proto}
	defer func() {
		if err != nil {
			s.Close()
		}
	}()
	logger := hclog.New(&hclog.LoggerOptions{Name: "ration", Level: hclog.Error, Output: os.Stderr})
	// As rationd does: raft's metrics sink before Raft starts.
	if _, err := server.InstallRaftMetrics(); err != nil {
		logger.Warn("raft metrics unavailable", "error", err)
	}
	for i := range 3 {
		if err := s.startNode(dir, i, logger); err != nil {
			return nil, err
		}
	}
	leader, err := s.formCluster(ctx)
	if err != nil {
		return nil, err
	}
	// Clients try the leader first (the client then sticks to the node that
	// answered last), as the etcd clients talk to the etcd leader.
	s.addrs[0], s.addrs[leader] = s.addrs[leader], s.addrs[0]
	if err := s.dial(proto, conns); err != nil {
		return nil, err
	}
	return s, nil
}

// startNode starts node n<i+1> as rationd would, serving its API on a free
// loopback port; node n1 bootstraps.
func (s *rationSystem) startNode(dir string, i int, logger hclog.Logger) error {
	id := fmt.Sprintf("n%d", i+1)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return err
	}
	cfg := cluster.DefaultConfig()
	cfg.NodeID = id
	cfg.RaftAddr = "127.0.0.1:0"
	cfg.APIAddr = ln.Addr().String()
	cfg.DataDir = filepath.Join(dir, id)
	cfg.Bootstrap = i == 0
	cfg.Logger = logger.Named(id)
	node, err := cluster.New(cfg)
	if err != nil {
		ln.Close()
		return fmt.Errorf("start ration node %s: %w", id, err)
	}
	// rationd's default limits, but for the per-worker Acquire rate: a
	// lone worker cycling flat out on loopback reaches it, and etcd has
	// no such limit, so it would measure the limit, not the system.
	limits := server.DefaultLimits()
	limits.AcquirePerWorker = server.RateLimit{}
	api := server.New(node, server.Config{Logger: cfg.Logger, Limits: &limits})
	s.apis = append(s.apis, api)
	srv := &http.Server{Handler: api.Handler(),
		ReadHeaderTimeout: 10 * time.Second, IdleTimeout: 2 * time.Minute}
	go srv.Serve(ln)
	s.nodes = append(s.nodes, node)
	s.servers = append(s.servers, srv)
	s.addrs = append(s.addrs, cfg.APIAddr)
	return nil
}

// formCluster waits for n1 to lead, joins the other nodes through it and
// waits until every node sees 3 members and the same leader, whose index it
// returns: a round must not start while the cluster is still settling.
func (s *rationSystem) formCluster(ctx context.Context) (leader int, err error) {
	if err := waitFor(ctx, 30*time.Second, func() error {
		if !s.nodes[0].IsLeader() {
			return errors.New("n1 has not bootstrapped into leadership")
		}
		return nil
	}); err != nil {
		return -1, err
	}
	for i := 1; i < len(s.nodes); i++ {
		n := s.nodes[i]
		if err := waitFor(ctx, 30*time.Second, func() error {
			return s.nodes[0].Join(ctx, n.ID(), n.RaftAddr(), s.addrs[i])
		}); err != nil {
			return -1, fmt.Errorf("join %s: %w", n.ID(), err)
		}
	}
	err = waitFor(ctx, 30*time.Second, func() error {
		leader = -1
		for i, n := range s.nodes {
			if len(n.Members()) != 3 {
				return fmt.Errorf("%s sees %d members", n.ID(), len(n.Members()))
			}
			if n.IsLeader() {
				leader = i
			}
		}
		if leader < 0 {
			return errors.New("no leader")
		}
		for _, n := range s.nodes {
			if n.Status().LeaderID != s.nodes[leader].ID() {
				return fmt.Errorf("%s does not know the leader yet", n.ID())
			}
		}
		return nil
	})
	return leader, err
}

// dial makes the workers' HTTP clients for proto and the owner's client.
func (s *rationSystem) dial(proto string, conns int) error {
	switch proto {
	case "connect":
		s.hcs = []*http.Client{{Transport: &http.Transport{MaxIdleConnsPerHost: 4096, IdleConnTimeout: time.Minute}}}
	case "grpc":
		for range conns {
			var p http.Protocols
			p.SetUnencryptedHTTP2(true)
			s.hcs = append(s.hcs, &http.Client{Transport: &http.Transport{Protocols: &p, IdleConnTimeout: time.Minute}})
		}
		s.opts = []connect.ClientOption{connect.WithGRPC()}
	default:
		return fmt.Errorf("-ration-proto %q: want connect or grpc", proto)
	}
	var err error
	s.owner, err = client.New(client.Config{Addrs: s.addrs})
	return err
}

func (s *rationSystem) Name() string { return "ration" }

func (s *rationSystem) Close() error {
	var errs []error
	for _, srv := range s.servers {
		ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
		if err := srv.Shutdown(ctx); err != nil {
			srv.Close()
		}
		cancel()
	}
	for _, api := range s.apis {
		api.Close()
	}
	for _, n := range s.nodes {
		errs = append(errs, n.Close())
	}
	for _, hc := range s.hcs {
		hc.CloseIdleConnections()
	}
	s.servers, s.apis, s.nodes, s.hcs = nil, nil, nil, nil
	return errors.Join(errs...)
}

type rationRound struct {
	svc     string
	workers []*rationWorker
	owner   *client.Client
}

func (s *rationSystem) NewRound(ctx context.Context, p roundParams) (round, error) {
	cfg := &rationv1.ServiceConfig{
		BucketSize:           uint32(p.BucketSize),
		MaxBucketsPerAcquire: uint32(max(p.PerAcquire, 10)),
		MaxLeasesPerWorker:   uint32(max(4*p.PerAcquire, 1000)),
		MaxItemsPerAdd:       uint32(p.Chunk),
	}
	if len(p.Payload) > 1024 { // dmcheck's default payload limit
		cfg.MaxPayloadBytes = uint32(len(p.Payload))
	}
	r := &rationRound{svc: fmt.Sprintf("bench-%d", p.Seq), owner: s.owner}
	if _, err := s.owner.CreateService(ctx, &rationv1.CreateServiceRequest{Name: r.svc, Kind: "dmcheck", Config: cfg}); err != nil {
		return nil, fmt.Errorf("create service: %w", err)
	}
	r.workers = make([]*rationWorker, p.Workers)
	for i := range r.workers {
		c, err := client.New(client.Config{Addrs: s.addrs, WorkerSecret: workerSecret,
			HTTPClient: s.hcs[i%len(s.hcs)], Options: s.opts})
		if err != nil {
			return nil, err
		}
		r.workers[i] = &rationWorker{c: c, svc: r.svc, id: fmt.Sprintf("w%d", i+1), payload: p.Payload}
	}
	// Register every worker (untimed), a few at a time.
	var next atomic.Int64
	var wg sync.WaitGroup
	errs := make(chan error, 16)
	for range min(16, p.Workers) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := next.Add(1) - 1; i < int64(len(r.workers)); i = next.Add(1) - 1 {
				w := r.workers[i]
				if _, err := w.c.Register(ctx, &rationv1.RegisterRequest{Service: r.svc, WorkerId: w.id, Name: w.id}); err != nil {
					errs <- fmt.Errorf("register %s: %w", w.id, err)
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	if err := <-errs; err != nil {
		return nil, err
	}
	return r, nil
}

func (r *rationRound) Add(ctx context.Context, ids []string) (int, error) {
	res, err := r.owner.AddItems(ctx, &rationv1.AddItemsRequest{Service: r.svc, Items: ids})
	if err != nil {
		return 0, err
	}
	return int(res.Buckets), nil
}

func (r *rationRound) Worker(i int) worker        { return r.workers[i] }
func (r *rationRound) Counters() map[string]int64 { return nil }
func (r *rationRound) Close()                     {}

func (r *rationRound) ErrClass(err error) string {
	var pe partialError
	if errors.As(err, &pe) {
		return "submit-not-all-accepted"
	}
	s := connect.CodeOf(err).String()
	if reason := client.Reason(err); reason != "" {
		s += "/" + reason
	}
	return s
}

type rationWorker struct {
	c       *client.Client
	svc, id string
	payload string
}

func (w *rationWorker) Acquire(ctx context.Context, n int) ([]bucket, error) {
	res, err := w.c.Acquire(ctx, &rationv1.AcquireRequest{Service: w.svc, WorkerId: w.id, MaxBuckets: uint32(n)})
	if err != nil {
		return nil, err
	}
	bs := make([]bucket, len(res.Buckets))
	for i, b := range res.Buckets {
		bs[i] = bucket{items: b.Items, ref: b}
	}
	return bs, nil
}

func (w *rationWorker) Submit(ctx context.Context, b bucket) error {
	lb := b.ref.(*rationv1.LeasedBucket)
	results := make([]*rationv1.ResultInput, len(lb.Items))
	for i, item := range lb.Items {
		results[i] = &rationv1.ResultInput{Item: item, Verdict: "DM", Payload: w.payload}
	}
	res, err := w.c.Submit(ctx, &rationv1.SubmitRequest{WorkerId: w.id, BucketId: lb.Id, Epoch: lb.Lease.GetEpoch(), Results: results})
	if err != nil {
		return err
	}
	if int(res.Accepted) != len(results) {
		return partialError{accepted: int(res.Accepted), want: len(results)}
	}
	return nil
}

type partialError struct{ accepted, want int }

func (e partialError) Error() string {
	return fmt.Sprintf("accepted %d of %d results", e.accepted, e.want)
}

// waitFor polls cond until it returns nil or the timeout passes.
func waitFor(ctx context.Context, timeout time.Duration, cond func() error) error {
	deadline := time.Now().Add(timeout)
	for {
		err := cond()
		if err == nil {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("after %s: %w", timeout, err)
		}
		if !sleepCtx(ctx, 50*time.Millisecond) {
			return ctx.Err()
		}
	}
}
