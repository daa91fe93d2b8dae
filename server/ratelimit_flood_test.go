package server_test

import (
	"context"
	"fmt"
	"net/http"
	"net/netip"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"connectrpc.com/connect"

	"github.com/rationhq/ration/api/client"
	rationv1 "github.com/rationhq/ration/api/ration/v1"
	"github.com/rationhq/ration/api/ration/v1/rationv1connect"
	"github.com/rationhq/ration/cluster/clustertest"
	"github.com/rationhq/ration/server"
)

// TestRateLimit_FloodSparesHonestWorkers runs K honest workers through
// the acquire/submit cycle on a 3-node cluster with the default limits,
// first alone and then while one client address floods Register and
// Acquire, under one worker id and under ever new ids. The honest workers
// must all still succeed, at a latency near the quiet one, and the flooder
// must be refused.
func TestRateLimit_FloodSparesHonestWorkers(t *testing.T) {
	if raceEnabled {
		// It compares latencies; it runs in every plain `go test ./...`.
		t.Skip("latency comparison: not under the race detector")
	}
	lim := server.DefaultLimits()
	// Honest workers call from 127.0.0.1 (exempt from the per-address
	// limits, as loopback is by default); the flooder from 127.0.0.2.
	lim.ExemptAddrs = []netip.Prefix{netip.MustParsePrefix("127.0.0.1/32")}
	c := startLimitedWith(t, 3, lim, tolerant)
	const (
		workers = 8
		cycles  = 40 // per worker and phase
		size    = 5
		svc     = "flood"
	)
	bg := context.Background()
	owner, err := client.New(client.Config{Addrs: c.addrs})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := owner.CreateService(bg, &rationv1.CreateServiceRequest{Name: svc, Kind: "dmcheck", Config: &rationv1.ServiceConfig{BucketSize: size}}); err != nil {
		t.Fatal(err)
	}
	// Enough for both phases and for what the flooder may lease: its one
	// id up to max_leases_per_worker (100), and a bucket for each new id
	// it gets to register (the per-address limit allows some 150 in the
	// flood's time).
	var items []string
	for i := range (2*workers*cycles + 500) * size {
		items = append(items, fmt.Sprint(i))
	}
	for len(items) > 0 {
		n := min(len(items), 10000)
		if _, err := owner.AddItems(bg, &rationv1.AddItemsRequest{Service: svc, Items: items[:n]}); err != nil {
			t.Fatal(err)
		}
		items = items[n:]
	}
	// Honest workers use the Go client, which retries what any client
	// should (no leader, for one); each starts on a different node.
	hc := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 64}}
	honest := make([]*client.Client, workers)
	for i := range honest {
		addrs := append(slices.Clone(c.addrs[i%3:]), c.addrs[:i%3]...)
		honest[i], err = client.New(client.Config{Addrs: addrs, HTTPClient: hc, WorkerSecret: fmt.Sprintf("honest-secret-%d-of-enough-length", i)})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := honest[i].Register(bg, &rationv1.RegisterRequest{Service: svc, WorkerId: fmt.Sprint("h", i)}); err != nil {
			t.Fatal(err)
		}
	}

	// phase runs every honest worker through its cycles and returns the
	// latency of each call, and the cycles that failed.
	phase := func() (lat []time.Duration, failed []error) {
		var mu sync.Mutex
		var wg sync.WaitGroup
		for i, w := range honest {
			id := fmt.Sprint("h", i)
			wg.Go(func() {
				for range cycles {
					t0 := time.Now()
					acq, err := w.Acquire(bg, &rationv1.AcquireRequest{Service: svc, WorkerId: id, MaxBuckets: 1})
					t1 := time.Now()
					if err == nil && len(acq.Buckets) != 1 {
						err = fmt.Errorf("acquire got %d buckets", len(acq.Buckets))
					}
					if err != nil {
						mu.Lock()
						failed = append(failed, fmt.Errorf("%s acquire: %w", id, err))
						mu.Unlock()
						continue
					}
					b := acq.Buckets[0]
					res := make([]*rationv1.ResultInput, len(b.Items))
					for j, it := range b.Items {
						res[j] = &rationv1.ResultInput{Item: it, Verdict: "DM"}
					}
					sub, err := w.Submit(bg, &rationv1.SubmitRequest{WorkerId: id, BucketId: b.Id, Epoch: b.Lease.Epoch, Results: res})
					t2 := time.Now()
					if err == nil && sub.Accepted != uint32(len(res)) {
						err = fmt.Errorf("submit accepted %d of %d", sub.Accepted, len(res))
					}
					mu.Lock()
					lat = append(lat, t1.Sub(t0), t2.Sub(t1))
					if err != nil {
						failed = append(failed, fmt.Errorf("%s submit: %w", id, err))
					}
					mu.Unlock()
				}
			})
		}
		wg.Wait()
		return lat, failed
	}

	quiet, failed := phase()
	if len(failed) > 0 {
		t.Fatalf("%d of %d cycles failed without a flood; first: %v", len(failed), workers*cycles, failed[0])
	}

	// The flood, from one address to one node: an open loop offering floodBatch calls
	// every millisecond (Register and Acquire in turn, as one worker id
	// and as a new id each time), up to 256 in flight, for at most 8 s. A
	// closed loop would slow down with the cluster; an attacker does not.
	const floodBatch = 1
	fctx, stop := context.WithTimeout(bg, 8*time.Second)
	defer stop()
	const flooderSecret = "the-flooder-has-a-secret-too"
	fc := httpFrom("127.0.0.2")
	fw := rationv1connect.NewWorkerServiceClient(fc, "http://"+c.addrOf(c.Followers()[0]), connect.WithInterceptors(client.Bearer(flooderSecret)))
	// Outcomes by kind of call: register or acquire, as "flooder" or as a
	// new id.
	type outcome struct{ passed, refused, other atomic.Int64 }
	var out [4]outcome
	var lastOther atomic.Value
	var fwg sync.WaitGroup
	inflight := make(chan struct{}, 256)
	floodStart := time.Now()
	fwg.Go(func() {
		tick := time.NewTicker(time.Millisecond)
		defer tick.Stop()
		for n := 0; ; {
			select {
			case <-fctx.Done():
				return
			case <-tick.C:
			}
			for range floodBatch {
				select {
				case inflight <- struct{}{}:
				default:
					continue // as many in flight as the flooder allows itself
				}
				n++
				kind := n % 4 // 0, 1: register, acquire as "flooder"; 2, 3: as a new id
				id := "flooder"
				if kind >= 2 {
					id = fmt.Sprint("flood-", n)
				}
				fwg.Go(func() {
					defer func() { <-inflight }()
					var err error
					if kind%2 == 0 {
						_, err = fw.Register(fctx, connect.NewRequest(&rationv1.RegisterRequest{Service: svc, WorkerId: id}))
					} else {
						_, err = fw.Acquire(fctx, connect.NewRequest(&rationv1.AcquireRequest{Service: svc, WorkerId: id, MaxBuckets: 1}))
					}
					switch o := &out[kind]; {
					case err == nil:
						o.passed.Add(1)
					case connect.CodeOf(err) == connect.CodeResourceExhausted && client.Reason(err) == "RATE_LIMITED":
						o.refused.Add(1)
					case fctx.Err() == nil:
						o.other.Add(1)
						lastOther.Store(err.Error())
					}
				})
			}
		}
	})
	// An attacker's bursts are spent at once; measure the flood it keeps
	// up: from when both its one id and its address are being refused.
	clustertest.WaitFor(t, 5*time.Second, func() error {
		if out[0].refused.Load() == 0 || out[2].refused.Load() == 0 {
			return fmt.Errorf("flooder not rate limited yet: %d Registers as one id, %d as new ids refused", out[0].refused.Load(), out[2].refused.Load())
		}
		return nil
	})
	flooded, failed := phase()
	stop()
	fwg.Wait()
	floodFor := time.Since(floodStart)
	if len(failed) > 0 {
		t.Fatalf("%d of %d cycles failed under the flood; first: %v", len(failed), workers*cycles, failed[0])
	}
	q50, q99 := percentile(quiet, 50), percentile(quiet, 99)
	f50, f99 := percentile(flooded, 50), percentile(flooded, 99)
	t.Logf("honest calls: quiet p50 %v p99 %v; flooded p50 %v p99 %v", q50, q99, f50, f99)
	var refused int64
	for i, name := range []string{"Register as flooder", "Acquire as flooder", "Register as a new id", "Acquire as a new id"} {
		o := &out[i]
		refused += o.refused.Load()
		t.Logf("flood over %v: %s: %d passed, %d rate limited, %d refused otherwise", floodFor.Round(time.Millisecond), name, o.passed.Load(), o.refused.Load(), o.other.Load())
	}
	t.Logf("last other refusal: %v", lastOther.Load())
	if refused == 0 {
		t.Fatal("the flooder was never rate limited")
	}
	// What got through is no more than the limits allow.
	secs := floodFor.Seconds()
	if got, most := out[0].passed.Load(), lim.RegisterPerWorker.Burst+int(lim.RegisterPerWorker.Rate*secs)+1; got > int64(most) {
		t.Errorf("%d Registers as one worker got through in %v, the per-worker limit allows %d", got, floodFor, most)
	}
	if got, most := out[2].passed.Load(), lim.RegisterPerAddr.Burst+int(lim.RegisterPerAddr.Rate*secs)+1; got > int64(most) {
		t.Errorf("%d Registers from one address got through in %v, the per-address limit allows %d", got, floodFor, most)
	}
	if f50 > 3*q50 {
		t.Errorf("honest p50 under the flood %v, more than 3x the quiet %v", f50, q50)
	}
	if f99 > 10*max(q99, 20*time.Millisecond) {
		t.Errorf("honest p99 under the flood %v, more than 10x the quiet %v (or 20ms)", f99, q99)
	}
}

// percentile returns the p-th percentile of ds.
func percentile(ds []time.Duration, p int) time.Duration {
	s := slices.Clone(ds)
	slices.Sort(s)
	return s[min(len(s)-1, len(s)*p/100)]
}
