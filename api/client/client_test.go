package client_test

import (
	"context"
	"fmt"
	"net"
	"sync/atomic"
	"testing"
	"time"

	"connectrpc.com/connect"
	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/rationhq/ration/api/client"
	rationv1 "github.com/rationhq/ration/api/ration/v1"
	"github.com/rationhq/ration/cluster"
	"github.com/rationhq/ration/cluster/clustertest"
	"github.com/rationhq/ration/fsm"
	"github.com/rationhq/ration/server/servertest"
)

const secret = "a-worker-secret-for-tests"

func TestClient_FailsOverAndRetriesWrites(t *testing.T) {
	c := servertest.Start(t, 3, "")
	// The first address is dead; the client moves on.
	addrs := append([]string{"127.0.0.1:1"}, c.Addrs...)
	cl, err := client.New(client.Config{Addrs: addrs, WorkerSecret: secret, RetryFor: 20 * time.Second, CallTimeout: 2 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	if _, err := cl.CreateService(ctx, &rationv1.CreateServiceRequest{Name: "dm", Kind: "dmcheck"}); err != nil {
		t.Fatal(err)
	}
	// Kill the leader; writes keep succeeding once a new leader is elected.
	old := c.Leader()
	c.Kill(c.Index(old))
	added := 0
	for i := range 20 {
		r, err := cl.AddItems(ctx, &rationv1.AddItemsRequest{Service: "dm", Items: []string{fmt.Sprintf("i%d", i)}})
		if err != nil {
			t.Fatalf("add %d after the leader died: %v", i, err)
		}
		added += int(r.Added)
	}
	got, err := cl.GetService(ctx, &rationv1.GetServiceRequest{Name: "dm"})
	if err != nil || got.Service.Items.Pending != 20 || added != 20 {
		t.Fatalf("after failover: %v (added %d), %v", got, added, err)
	}
	// A domain error is final: no retry, the code and reason come back.
	_, err = cl.CreateService(ctx, &rationv1.CreateServiceRequest{Name: "dm", Kind: "dmcheck"})
	if connect.CodeOf(err) != connect.CodeAlreadyExists || client.Reason(err) != "SERVICE_EXISTS" {
		t.Fatalf("duplicate create: %v", err)
	}
}

// TestWorker_ProcessesEverything runs two worker loops under one id
// against one in-memory node until every item is done.
func TestWorker_ProcessesEverything(t *testing.T) {
	c := servertest.StartWith(t, 1, servertest.Options{InMemory: true})
	owner, _ := client.New(client.Config{Addrs: c.Addrs})
	ctx := context.Background()
	if _, err := owner.CreateService(ctx, &rationv1.CreateServiceRequest{Name: "dm", Kind: "dmcheck",
		Config: &rationv1.ServiceConfig{BucketSize: 5}}); err != nil {
		t.Fatal(err)
	}
	var ids []string
	for i := range 50 {
		ids = append(ids, fmt.Sprintf("%d", 1000+i))
	}
	if _, err := owner.AddItems(ctx, &rationv1.AddItemsRequest{Service: "dm", Items: ids}); err != nil {
		t.Fatal(err)
	}
	wctx, stop := context.WithCancel(ctx)
	defer stop()
	var processed, failures atomic.Int64
	done := make(chan error, 2)
	for w := range 2 {
		cl, _ := client.New(client.Config{Addrs: c.Addrs, WorkerSecret: secret})
		worker := &client.Worker{
			Client: cl, Service: "dm", WorkerID: "shared-id", Name: fmt.Sprintf("process-%d", w), MaxBuckets: 2,
			HeartbeatEvery: 50 * time.Millisecond, IdleWait: 20 * time.Millisecond,
			Process: func(ctx context.Context, b *rationv1.LeasedBucket) ([]*rationv1.ResultInput, error) {
				// Every third bucket fails: the loop releases it and another try succeeds.
				if processed.Add(1)%3 == 0 {
					failures.Add(1)
					return nil, fmt.Errorf("simulated failure")
				}
				time.Sleep(60 * time.Millisecond) // long enough for a heartbeat
				var out []*rationv1.ResultInput
				for _, it := range b.Items {
					out = append(out, &rationv1.ResultInput{Item: it, Verdict: "DM"})
				}
				return out, nil
			},
		}
		go func() { done <- worker.Run(wctx) }()
	}
	clustertest.WaitState(t, c.Nodes[0], 30*time.Second, func(st *fsm.State) error {
		s, ok := st.Service("dm")
		if !ok {
			return fmt.Errorf("no service dm")
		}
		if done := s.Items[rationv1.ItemState_ITEM_STATE_DONE]; done != 50 {
			return fmt.Errorf("%d items done, items %v", done, s.Items)
		}
		return nil
	})
	if s, err := owner.GetService(ctx, &rationv1.GetServiceRequest{Name: "dm"}); err != nil || s.Service.Items.Done != 50 {
		t.Fatalf("service once the node holds 50 done: %v %v", s, err)
	}
	stop()
	for range 2 {
		if err := <-done; err != nil {
			t.Fatal(err)
		}
	}
	s, _ := owner.GetService(ctx, &rationv1.GetServiceRequest{Name: "dm"})
	if s.Service.Counters.LeasesReleased != uint64(failures.Load()) || s.Service.Counters.Heartbeats == 0 {
		t.Fatalf("counters %v after %d failures", s.Service.Counters, failures.Load())
	}
}

// TestWorker_HeartbeatsWaitingBuckets: the buckets of one Acquire are
// worked one after the other, each for longer than the lease lasts; the
// loop keeps the waiting ones leased too, so none expires and no submit
// is late.
func TestWorker_HeartbeatsWaitingBuckets(t *testing.T) {
	c := servertest.StartWith(t, 1, servertest.Options{InMemory: true})
	owner, _ := client.New(client.Config{Addrs: c.Addrs})
	ctx := context.Background()
	if _, err := owner.CreateService(ctx, &rationv1.CreateServiceRequest{Name: "dm", Kind: "dmcheck",
		Config: &rationv1.ServiceConfig{BucketSize: 2, MaxBucketsPerAcquire: 3, LeaseTtl: durationpb.New(time.Second)}}); err != nil {
		t.Fatal(err)
	}
	if _, err := owner.AddItems(ctx, &rationv1.AddItemsRequest{Service: "dm", Items: []string{"1", "2", "3", "4", "5", "6"}}); err != nil {
		t.Fatal(err)
	}
	cl, _ := client.New(client.Config{Addrs: c.Addrs, WorkerSecret: secret})
	var batch atomic.Int64
	worker := &client.Worker{Client: cl, Service: "dm", WorkerID: "w", MaxBuckets: 3,
		HeartbeatEvery: 150 * time.Millisecond, IdleWait: 20 * time.Millisecond,
		Process: func(ctx context.Context, b *rationv1.LeasedBucket) ([]*rationv1.ResultInput, error) {
			batch.Add(1)
			select {
			case <-time.After(1300 * time.Millisecond): // longer than lease_ttl
			case <-ctx.Done():
				return nil, ctx.Err()
			}
			return results(b.Items), nil
		}}
	if k := runUntilDone(t, worker, c.Nodes[0], owner, 6); k.LeasesGranted != 3 || k.LeasesExpired != 0 || k.LateSubmits != 0 || k.BucketsDone != 3 {
		t.Fatalf("counters %v after %d buckets processed: want 3 leases, none expired, no late submit", k, batch.Load())
	}
}

func results(items []string) []*rationv1.ResultInput {
	out := make([]*rationv1.ResultInput, len(items))
	for i, it := range items {
		out[i] = &rationv1.ResultInput{Item: it, Verdict: "DM"}
	}
	return out
}

// pausingProxy forwards TCP to a node until paused: then it holds every
// byte, on new connections and on those already open, as a frozen process
// would.
type pausingProxy struct {
	addr   string
	paused atomic.Bool
}

func startPausingProxy(t *testing.T, target string) *pausingProxy {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &pausingProxy{addr: ln.Addr().String()}
	done := make(chan struct{})
	t.Cleanup(func() { close(done); ln.Close() })
	pipe := func(dst, src net.Conn) {
		defer dst.Close()
		buf := make([]byte, 32<<10)
		for {
			n, err := src.Read(buf)
			for p.paused.Load() {
				select {
				case <-done:
					return
				case <-time.After(10 * time.Millisecond):
				}
			}
			if n > 0 {
				if _, werr := dst.Write(buf[:n]); werr != nil {
					return
				}
			}
			if err != nil {
				return
			}
		}
	}
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			up, err := net.Dial("tcp", target)
			if err != nil {
				c.Close()
				continue
			}
			go pipe(up, c)
			go pipe(c, up)
		}
	}()
	return p
}

// TestWorker_HeartbeatsLeaveAFrozenNode: the node the worker talks to
// freezes while it processes a bucket for longer than the lease lasts; each
// heartbeat attempt gives that node half a period, not the whole call
// timeout, and then moves to another node, so the lease holds and the
// submit is on time.
func TestWorker_HeartbeatsLeaveAFrozenNode(t *testing.T) {
	c := servertest.Start(t, 3, "")
	owner, _ := client.New(client.Config{Addrs: c.Addrs})
	ctx := context.Background()
	if _, err := owner.CreateService(ctx, &rationv1.CreateServiceRequest{Name: "dm", Kind: "dmcheck",
		Config: &rationv1.ServiceConfig{BucketSize: 2, LeaseTtl: durationpb.New(time.Second)}}); err != nil {
		t.Fatal(err)
	}
	if _, err := owner.AddItems(ctx, &rationv1.AddItemsRequest{Service: "dm", Items: []string{"1", "2"}}); err != nil {
		t.Fatal(err)
	}
	f := c.Followers()
	proxy := startPausingProxy(t, c.AddrOf(f[0]))
	cl, _ := client.New(client.Config{Addrs: []string{proxy.addr, c.AddrOf(f[1])}, WorkerSecret: secret, CallTimeout: 5 * time.Second})
	worker := &client.Worker{Client: cl, Service: "dm", WorkerID: "w", HeartbeatEvery: 200 * time.Millisecond, IdleWait: 20 * time.Millisecond,
		Process: func(ctx context.Context, b *rationv1.LeasedBucket) ([]*rationv1.ResultInput, error) {
			proxy.paused.Store(true) // the node it has been talking to freezes
			select {
			case <-time.After(2500 * time.Millisecond): // more than two lease lifetimes
			case <-ctx.Done():
				return nil, ctx.Err()
			}
			return results(b.Items), nil
		}}
	if k := runUntilDone(t, worker, c.Leader(), owner, 2); k.LeasesGranted != 1 || k.LeasesExpired != 0 || k.LateSubmits != 0 || k.Heartbeats == 0 {
		t.Fatalf("counters %v: want one lease, kept alive by heartbeats, never expired, submitted on time", k)
	}
}

// runUntilDone runs the worker loop until node holds done items of service
// dm done, stops it, and returns the service's counters.
func runUntilDone(t *testing.T, w *client.Worker, node *cluster.Node, owner *client.Client, done int64) *rationv1.Counters {
	t.Helper()
	ctx, stop := context.WithCancel(context.Background())
	defer stop()
	ended := make(chan error, 1)
	go func() { ended <- w.Run(ctx) }()
	clustertest.WaitState(t, node, 30*time.Second, func(st *fsm.State) error {
		if s, _ := st.Service("dm"); s.Items[rationv1.ItemState_ITEM_STATE_DONE] != done {
			return fmt.Errorf("items %v", s.Items)
		}
		return nil
	})
	stop()
	if err := <-ended; err != nil {
		t.Fatal(err)
	}
	s, err := owner.GetService(context.Background(), &rationv1.GetServiceRequest{Name: "dm"})
	if err != nil {
		t.Fatal(err)
	}
	return s.Service.Counters
}
