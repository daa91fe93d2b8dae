package client_test

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/rationhq/ration/api/client"
	rationv1 "github.com/rationhq/ration/api/ration/v1"
	"github.com/rationhq/ration/cluster/clustertest"
	"github.com/rationhq/ration/server"
	"github.com/rationhq/ration/server/servertest"
)

// processItems has a worker submit a DM verdict for each item, one bucket
// (of one item) at a time.
func processItems(t *testing.T, owner, worker *client.Client, items ...string) {
	t.Helper()
	ctx := context.Background()
	if _, err := owner.AddItems(ctx, &rationv1.AddItemsRequest{Service: "dm", Items: items}); err != nil {
		t.Fatal(err)
	}
	for range items {
		acq, err := worker.Acquire(ctx, &rationv1.AcquireRequest{Service: "dm", WorkerId: "w1"})
		if err != nil || len(acq.GetBuckets()) != 1 {
			t.Fatalf("acquire: %v, %v", acq, err)
		}
		b := acq.GetBuckets()[0]
		if _, err := worker.Submit(ctx, &rationv1.SubmitRequest{WorkerId: "w1", BucketId: b.Id, Epoch: b.Lease.Epoch,
			Results: []*rationv1.ResultInput{{Item: b.Items[0], Verdict: "DM"}}}); err != nil {
			t.Fatal(err)
		}
	}
}

func exportFixture(t *testing.T, addrs []string) (owner, worker *client.Client) {
	t.Helper()
	owner, _ = client.New(client.Config{Addrs: addrs, RetryFor: 20 * time.Second, CallTimeout: 2 * time.Second})
	worker, _ = client.New(client.Config{Addrs: addrs, WorkerSecret: secret, RetryFor: 20 * time.Second, CallTimeout: 2 * time.Second})
	ctx := context.Background()
	if _, err := owner.CreateService(ctx, &rationv1.CreateServiceRequest{Name: "dm", Kind: "dmcheck",
		Config: &rationv1.ServiceConfig{BucketSize: 1}}); err != nil {
		t.Fatal(err)
	}
	if _, err := worker.Register(ctx, &rationv1.RegisterRequest{Service: "dm", WorkerId: "w1"}); err != nil {
		t.Fatal(err)
	}
	return owner, worker
}

// store collects exported items; Export must call it from one goroutine.
type store struct {
	mu    sync.Mutex
	items []string
	syncs int
}

func (s *store) put(m *rationv1.ExportResultsResponse) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, r := range m.GetResults() {
		s.items = append(s.items, r.GetItem())
	}
	return nil
}

func (s *store) sync() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.syncs++
	return nil
}

func (s *store) count() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.items)
}

// Export stores every result, syncs, acknowledges what it stored, and a
// second export starts where the first acknowledged.
func TestExport_StoresThenAcknowledges(t *testing.T) {
	c := servertest.StartWith(t, 1, servertest.Options{InMemory: true})
	owner, worker := exportFixture(t, c.Addrs)
	processItems(t, owner, worker, "a", "b", "c")
	ctx := context.Background()
	var s store
	last, err := owner.Export(ctx, client.Export{Service: "dm", FromAcknowledged: true, Store: s.put, Sync: s.sync, AckEvery: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	svc, err := owner.GetService(ctx, &rationv1.GetServiceRequest{Name: "dm"})
	if err != nil {
		t.Fatal(err)
	}
	p := svc.GetService().GetExport()
	slices.Sort(s.items) // buckets are granted in random order
	if fmt.Sprint(s.items) != "[a b c]" || s.syncs != 1 || last != p.LastSeq || p.AckedThrough != last || p.UnackedResults != 0 {
		t.Fatalf("stored %v with %d syncs, last %d; position %v", s.items, s.syncs, last, p)
	}
	processItems(t, owner, worker, "d")
	var again store
	if _, err := owner.Export(ctx, client.Export{Service: "dm", FromAcknowledged: true, Store: again.put, AckEvery: time.Hour}); err != nil {
		t.Fatal(err)
	}
	if fmt.Sprint(again.items) != "[d]" {
		t.Fatalf("the second export stored %v, want only what came after the acknowledged position", again.items)
	}
	// A Store that fails ends the export, and what it did not store is not acknowledged.
	processItems(t, owner, worker, "e")
	failing := func(*rationv1.ExportResultsResponse) error { return errors.New("disk full") }
	if _, err := owner.Export(ctx, client.Export{Service: "dm", FromAcknowledged: true, Store: failing, AckEvery: time.Nanosecond}); err == nil {
		t.Fatal("an export whose Store failed reported no error")
	}
	svc, _ = owner.GetService(ctx, &rationv1.GetServiceRequest{Name: "dm"})
	if p := svc.GetService().GetExport(); p.UnackedResults != 1 {
		t.Fatalf("after a failed store: %v", p)
	}
}

// A followed export survives the node serving it going away: it resumes on
// another node after the last batch it stored, and nothing is lost or
// stored twice.
func TestExport_FollowResumesAfterFailover(t *testing.T) {
	c := servertest.StartWith(t, 3, servertest.Options{Server: func(_ int, cfg *server.Config) {
		cfg.StaleStreamAfter = time.Second
	}})
	owner, worker := exportFixture(t, c.Addrs)
	processItems(t, owner, worker, "a", "b")
	// The exporter talks to a follower first, so the leader keeps the cluster
	// writable when that follower is killed.
	f := c.Followers()[0]
	order := []string{c.AddrOf(f)}
	for _, a := range c.Addrs {
		if a != c.AddrOf(f) {
			order = append(order, a)
		}
	}
	exp, _ := client.New(client.Config{Addrs: order, RetryFor: 20 * time.Second, CallTimeout: 2 * time.Second})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var s store
	done := make(chan error, 1)
	go func() {
		_, err := exp.Export(ctx, client.Export{Service: "dm", Follow: true, Store: s.put, AckEvery: time.Nanosecond})
		done <- err
	}()
	clustertest.WaitFor(t, 10*time.Second, func() error {
		if n := s.count(); n != 2 {
			return fmt.Errorf("%d results stored", n)
		}
		return nil
	})
	c.Kill(c.Index(f))
	processItems(t, owner, worker, "c", "d")
	clustertest.WaitFor(t, 20*time.Second, func() error {
		if n := s.count(); n != 4 {
			return fmt.Errorf("%d results stored", n)
		}
		return nil
	})
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("a followed export ended by its context: %v", err)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	slices.Sort(s.items)
	if fmt.Sprint(s.items) != "[a b c d]" {
		t.Fatalf("stored %v", s.items)
	}
}
