package main

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
)

// TestEtcdCycle checks the etcd design's guarantees: a bucket is never
// claimed twice, an expired claim's bucket goes back to the pool, and the
// expired holder's late submit is refused.
func TestEtcdCycle(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a 3-member etcd cluster")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	es, err := startEtcd(ctx, t.TempDir(), 2)
	if err != nil {
		t.Fatal(err)
	}
	defer es.Close()

	const size = 3
	ids := func(from, n int) []string {
		out := make([]string, n)
		for i := range out {
			out[i] = fmt.Sprint(from + i)
		}
		return out
	}

	t.Run("expiry", func(t *testing.T) {
		rd, err := es.NewRound(ctx, roundParams{Seq: 1, Workers: 2, PerAcquire: 2, BucketSize: size, Chunk: 2 * size, Payload: "p"})
		if err != nil {
			t.Fatal(err)
		}
		defer rd.Close()
		r := rd.(*etcdRound)
		if n, err := r.Add(ctx, ids(0, 2*size)); err != nil || n != 2 {
			t.Fatalf("add: %d buckets, %v", n, err)
		}
		a, b := r.Worker(0), r.Worker(1)
		ba, err := a.Acquire(ctx, 1)
		if err != nil || len(ba) != 1 {
			t.Fatalf("a acquire: %v, %v", ba, err)
		}
		bb, err := b.Acquire(ctx, 2)
		if err != nil || len(bb) != 1 {
			t.Fatalf("b acquire: got %d buckets, %v; want the one a does not hold", len(bb), err)
		}
		if ba[0].ref.(etcdClaim).id == bb[0].ref.(etcdClaim).id {
			t.Fatal("a and b hold the same bucket")
		}
		if more, err := b.Acquire(ctx, 1); err != nil || len(more) != 0 {
			t.Fatalf("acquire from an empty pool: %d buckets, %v", len(more), err)
		}
		// a's lease expires (revoked here rather than waiting for the TTL).
		wa := r.workers[0]
		if _, err := wa.cli.Revoke(ctx, wa.lease); err != nil {
			t.Fatal(err)
		}
		var again []bucket
		deadline := time.Now().Add(10 * time.Second)
		for len(again) == 0 && time.Now().Before(deadline) {
			if again, err = b.Acquire(ctx, 1); err != nil {
				t.Fatal(err)
			}
			time.Sleep(100 * time.Millisecond)
		}
		if len(again) != 1 || again[0].ref.(etcdClaim).id != ba[0].ref.(etcdClaim).id {
			t.Fatalf("after a's lease expired, b got %v, want a's bucket back", again)
		}
		if err := a.Submit(ctx, ba[0]); !errors.Is(err, errLeaseLost) {
			t.Fatalf("a's late submit: %v, want errLeaseLost", err)
		}
		for _, bk := range append(bb, again...) {
			if err := b.Submit(ctx, bk); err != nil {
				t.Fatalf("b submit: %v", err)
			}
		}
		if left, _ := r.owner.Get(ctx, r.pfx+"d/", clientv3.WithPrefix(), clientv3.WithCountOnly()); left.Count != 0 {
			t.Fatalf("%d buckets left after all were submitted", left.Count)
		}
	})

	t.Run("race", func(t *testing.T) {
		const workers, buckets = 16, 60
		rd, err := es.NewRound(ctx, roundParams{Seq: 2, Workers: workers, PerAcquire: 3, BucketSize: size, Chunk: buckets * size, Payload: "p"})
		if err != nil {
			t.Fatal(err)
		}
		defer rd.Close()
		if _, err := rd.Add(ctx, ids(0, buckets*size)); err != nil {
			t.Fatal(err)
		}
		var mu sync.Mutex
		seen := map[string]int{}
		var wg sync.WaitGroup
		for i := range workers {
			wg.Add(1)
			go func() {
				defer wg.Done()
				w := rd.Worker(i)
				for {
					bs, err := w.Acquire(ctx, 1+i%3)
					if err != nil {
						t.Error(err)
						return
					}
					if len(bs) == 0 {
						return
					}
					for _, b := range bs {
						mu.Lock()
						seen[b.ref.(etcdClaim).id]++
						mu.Unlock()
						if err := w.Submit(ctx, b); err != nil {
							t.Error(err)
						}
					}
				}
			}()
		}
		wg.Wait()
		if len(seen) != buckets {
			t.Fatalf("%d distinct buckets done, want %d", len(seen), buckets)
		}
		for id, n := range seen {
			if n != 1 {
				t.Fatalf("bucket %s claimed %d times", id, n)
			}
		}
	})
}
