package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/rationhq/ration/api/client"
	statev1 "github.com/rationhq/ration/api/ration/state/v1"
	rationv1 "github.com/rationhq/ration/api/ration/v1"
	"github.com/rationhq/ration/cluster/clustertest"
	"github.com/rationhq/ration/fsm"
	"github.com/rationhq/ration/internal/backup"
)

// startThree starts a three-node cluster of rationd's in this process, over
// real TCP, with data dirs under dir; extra(id) adds flags per node.
func startThree(t *testing.T, dir string, extra func(id string) []string) []*Main {
	t.Helper()
	args := func(id string, more ...string) []string {
		return append(append([]string{"--node-id", id, "--election-timeout", "500ms"}, more...), extra(id)...)
	}
	m1 := startMain(t, filepath.Join(dir, "n1"), args("n1", "--bootstrap")...)
	m2 := startMain(t, filepath.Join(dir, "n2"), args("n2", "--join", m1.Addr())...)
	m3 := startMain(t, filepath.Join(dir, "n3"), args("n3", "--join", m1.Addr())...)
	ms := []*Main{m1, m2, m3}
	clustertest.WaitFor(t, 20*time.Second, func() error {
		for _, m := range ms {
			if n := len(m.Node().Members()); n != 3 {
				return fmt.Errorf("%s sees %d members", m.NodeID, n)
			}
			if _, _, err := m.Node().Leader(); err != nil {
				return fmt.Errorf("%s: %v", m.NodeID, err)
			}
		}
		return nil
	})
	return ms
}

func addrsOf(ms []*Main) []string {
	var out []string
	for _, m := range ms {
		out = append(out, m.Addr())
	}
	return out
}

// acks are the writes the cluster acknowledged, each with an index at or
// above the one it was applied at: the largest applied index of any node,
// read after the acknowledgment. A backup of the state at index B holds
// every write whose bound is at most B.
type acks struct {
	mu         sync.Mutex
	items      map[string]uint64 // added item -> bound
	results    map[string]result // item -> its submitted result
	acked      []ackedThrough    // AckResults calls
	registered map[string]uint64 // worker -> bound
}

type result struct {
	verdict string
	bound   uint64
}

type ackedThrough struct{ through, bound uint64 }

// appliedBound is the largest index any of ms has applied.
func appliedBound(ms []*Main) uint64 {
	var b uint64
	for _, m := range ms {
		b = max(b, m.Node().State().Index())
	}
	return b
}

// drillLoad puts load on the cluster until stop is closed: the owner adds
// items (two streams of calls), three workers acquire buckets and submit results for all but some
// of their items (and leave every fifth bucket leased), and an exporter
// exports the results and acknowledges them. Every acknowledged write goes
// into a.
func drillLoad(t *testing.T, ms []*Main, a *acks, stop <-chan struct{}) (wait func()) {
	addrs := addrsOf(ms)
	cfg := client.Config{Addrs: addrs, RetryFor: 20 * time.Second, CallTimeout: 5 * time.Second}
	owner, err := client.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	var wg sync.WaitGroup
	var errMu sync.Mutex
	var errs []error
	fail := func(err error) {
		errMu.Lock()
		errs = append(errs, err)
		errMu.Unlock()
	}
	stopped := func() bool {
		select {
		case <-stop:
			return true
		default:
			return false
		}
	}
	for adder := range 2 {
		wg.Go(func() { // the owner adds items
			for i := 0; !stopped(); i++ {
				ids := make([]string, 20)
				for j := range ids {
					ids[j] = fmt.Sprintf("item-%d-%06d", adder, i*len(ids)+j)
				}
				if _, err := owner.AddItems(ctx, &rationv1.AddItemsRequest{Service: "dm", Items: ids,
					RequestId: fmt.Sprintf("add-%d-%d", adder, i)}); err != nil {
					fail(fmt.Errorf("add items: %w", err))
					return
				}
				bound := appliedBound(ms)
				a.mu.Lock()
				for _, id := range ids {
					a.items[id] = bound
				}
				a.mu.Unlock()
			}
		})
	}
	for w := range 3 {
		id := fmt.Sprintf("w%d", w+1)
		wc := cfg
		wc.WorkerSecret = "drill-secret-of-worker-" + id
		worker, err := client.New(wc)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := worker.Register(ctx, &rationv1.RegisterRequest{Service: "dm", WorkerId: id, Name: id}); err != nil {
			t.Fatal(err)
		}
		a.mu.Lock()
		a.registered[id] = appliedBound(ms)
		a.mu.Unlock()
		wg.Go(func() { // a worker
			for n := 0; !stopped(); {
				acq, err := worker.Acquire(ctx, &rationv1.AcquireRequest{Service: "dm", WorkerId: id, MaxBuckets: 2})
				if err != nil {
					fail(fmt.Errorf("%s acquire: %w", id, err))
					return
				}
				if len(acq.GetBuckets()) == 0 {
					time.Sleep(10 * time.Millisecond)
					continue
				}
				for _, b := range acq.GetBuckets() {
					if n++; n%5 == 0 {
						continue // left leased
					}
					var rs []*rationv1.ResultInput
					for i, item := range b.GetItems() {
						if i > 0 && i == len(b.GetItems())-1 && n%3 == 0 {
							continue // no result: it goes back to the pool
						}
						v := "DM"
						if len(item)%2 == int(item[len(item)-1])%2 {
							v = "NON_DM"
						}
						rs = append(rs, &rationv1.ResultInput{Item: item, Verdict: v})
					}
					if _, err := worker.Submit(ctx, &rationv1.SubmitRequest{WorkerId: id, BucketId: b.GetId(),
						Epoch: b.GetLease().GetEpoch(), Results: rs}); err != nil {
						fail(fmt.Errorf("%s submit: %w", id, err))
						return
					}
					bound := appliedBound(ms)
					a.mu.Lock()
					for _, r := range rs {
						a.results[r.Item] = result{r.Verdict, bound}
					}
					a.mu.Unlock()
				}
			}
		})
	}
	wg.Go(func() { // the owner exports results and acknowledges them
		var last uint64
		for !stopped() {
			err := owner.ExportResults(ctx, &rationv1.ExportResultsRequest{Service: "dm", AfterSeq: last},
				func(m *rationv1.ExportResultsResponse) error {
					last = max(last, m.GetSeq())
					return nil
				})
			if err != nil {
				fail(fmt.Errorf("export: %w", err))
				return
			}
			if last > 0 {
				if _, err := owner.AckResults(ctx, &rationv1.AckResultsRequest{Service: "dm", ThroughSeq: last}); err != nil {
					fail(fmt.Errorf("ack results: %w", err))
					return
				}
				bound := appliedBound(ms)
				a.mu.Lock()
				a.acked = append(a.acked, ackedThrough{last, bound})
				a.mu.Unlock()
			}
			time.Sleep(50 * time.Millisecond)
		}
	})
	return func() {
		wg.Wait()
		if err := errors.Join(errs...); err != nil {
			t.Fatal(err)
		}
	}
}

// newestBackup is the backup with the highest index in the nodes' backup
// dirs (one cluster's indexes only grow).
func newestBackup(t *testing.T, dirs []string) (backup.Info, bool) {
	t.Helper()
	var newest backup.Info
	for _, d := range dirs {
		all, err := backup.List(d)
		if err != nil {
			t.Fatal(err)
		}
		for _, b := range all {
			if b.Index > newest.Index {
				newest = b
			}
		}
	}
	return newest, newest.Path != ""
}

// TestRestoreDrill is the restore drill README's "Backups" describes: a
// three-node cluster under load backs itself up (rationd --backup-dir);
// the whole cluster is destroyed, data dirs and all; a fresh three-node
// cluster takes the newest backup through ClusterService.Restore; and it
// then holds exactly the backup's state, with every write acknowledged
// before the backup was taken.
func TestRestoreDrill(t *testing.T) {
	if testing.Short() {
		t.Skip("starts two three-node clusters")
	}
	began := time.Now()
	dir := t.TempDir()
	backupDir := func(id string) string { return filepath.Join(dir, "backups", id) }
	var dirs []string
	for _, id := range []string{"n1", "n2", "n3"} {
		dirs = append(dirs, backupDir(id))
	}
	old := startThree(t, filepath.Join(dir, "old"), func(id string) []string {
		return []string{"--backup-dir", backupDir(id), "--backup-every", "1s", "--backup-keep", "3"}
	})
	ctx := context.Background()
	owner, err := client.New(client.Config{Addrs: addrsOf(old), RetryFor: 20 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := owner.CreateService(ctx, &rationv1.CreateServiceRequest{Name: "dm", Kind: "dmcheck",
		Config: &rationv1.ServiceConfig{BucketSize: 5, MaxLeasesPerWorker: 10000}}); err != nil {
		t.Fatal(err)
	}
	loadFrom := appliedBound(old)

	// Load until the schedule has written three backups under it.
	a := &acks{items: map[string]uint64{}, results: map[string]result{}, registered: map[string]uint64{}}
	stop := make(chan struct{})
	wait := drillLoad(t, old, a, stop)
	var taken []backup.Info
	clustertest.WaitFor(t, 30*time.Second, func() error {
		for _, d := range dirs {
			all, err := backup.List(d)
			if err != nil {
				return err
			}
			for _, b := range all {
				if b.Index > loadFrom && !slices.Contains(taken, b) {
					taken = append(taken, b)
				}
			}
		}
		a.mu.Lock()
		n := len(a.results)
		a.mu.Unlock()
		if len(taken) < 3 || n == 0 {
			return fmt.Errorf("%d backups under load, %d results so far", len(taken), n)
		}
		return nil
	})
	chosen, _ := newestBackup(t, dirs)
	data, err := os.ReadFile(chosen.Path)
	if err != nil {
		t.Fatal(err)
	}
	// The load goes on past the backup: the old cluster moves beyond it.
	time.Sleep(300 * time.Millisecond)
	close(stop)
	wait()
	final := appliedBound(old)
	if final <= chosen.Index {
		t.Fatalf("the old cluster is at %d, the backup at %d: no write after it", final, chosen.Index)
	}
	t.Logf("backup %s: %d bytes at index %d (the old cluster ended at %d)", filepath.Base(chosen.Path), len(data), chosen.Index, final)

	// Destroy the whole cluster: every node, every data dir.
	for _, m := range old {
		if err := m.Close(); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.RemoveAll(filepath.Join(dir, "old")); err != nil {
		t.Fatal(err)
	}

	// A fresh cluster, on other ports, takes the backup as an operator
	// would: ClusterService.Restore, through any node.
	fresh := startThree(t, filepath.Join(dir, "fresh"), func(string) []string { return nil })
	fc, err := client.New(client.Config{Addrs: addrsOf(fresh), RetryFor: 20 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	res, err := fc.Restore(ctx, &rationv1.RestoreRequest{Data: data})
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range fresh {
		wctx, cancel := context.WithTimeout(ctx, 20*time.Second)
		_, err := m.Node().WaitApplied(wctx, res.GetIndex())
		cancel()
		if err != nil {
			t.Fatalf("%s: %v", m.NodeID, err)
		}
	}

	// Every node holds what the backup held.
	want := readRecords(t, data)
	for _, m := range fresh {
		var buf bytes.Buffer
		if err := m.Node().State().WriteSnapshot(&buf); err != nil {
			t.Fatal(err)
		}
		if err := want.sameAs(readRecords(t, buf.Bytes())); err != nil {
			t.Fatalf("%s after the restore: %v", m.NodeID, err)
		}
	}

	// And every write acknowledged before the backup.
	st := fresh[0].Node().State()
	var items, results, ackedN int
	a.mu.Lock()
	for id, bound := range a.items {
		if bound > chosen.Index {
			continue
		}
		items++
		if _, ok := st.Item("dm", id); !ok {
			t.Errorf("item %s, added before the backup (bound %d), is missing", id, bound)
		}
	}
	for id, r := range a.results {
		if r.bound > chosen.Index {
			continue
		}
		results++
		v, ok := st.Item("dm", id)
		if !ok || v.State != rationv1.ItemState_ITEM_STATE_DONE || v.Result == nil || v.Result.Verdict != r.verdict {
			t.Errorf("item %s, submitted %s before the backup (bound %d), is %+v", id, r.verdict, r.bound, v)
		}
	}
	svc, _ := st.Service("dm")
	for _, k := range a.acked {
		if k.bound > chosen.Index {
			continue
		}
		ackedN++
		if svc == nil || svc.AckedThrough < k.through {
			t.Errorf("results acknowledged through %d before the backup (bound %d); the restored service has %+v", k.through, k.bound, svc)
		}
	}
	for w, bound := range a.registered {
		if _, ok := st.Registration("dm", w); !ok && bound <= chosen.Index {
			t.Errorf("worker %s, registered before the backup, is missing", w)
		}
	}
	t.Logf("acknowledged before the backup and found after the restore: %d items (of %d added), %d results (of %d), %d acks (of %d)",
		items, len(a.items), results, len(a.results), ackedN, len(a.acked))
	a.mu.Unlock()
	if items == 0 || results == 0 {
		t.Fatalf("the backup held %d acknowledged items and %d results: the drill proved nothing", items, results)
	}

	// The restored cluster works: a write through each node, and a worker
	// known from the backup leases work with its secret.
	for i, m := range fresh {
		c, err := client.New(client.Config{Addrs: []string{m.Addr()}, RetryFor: 20 * time.Second})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := c.AddItems(ctx, &rationv1.AddItemsRequest{Service: "dm", Items: []string{fmt.Sprintf("after-restore-%d", i)}}); err != nil {
			t.Fatalf("a write through %s after the restore: %v", m.NodeID, err)
		}
	}
	wc, err := client.New(client.Config{Addrs: addrsOf(fresh), WorkerSecret: "drill-secret-of-worker-w1", RetryFor: 20 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := wc.Acquire(ctx, &rationv1.AcquireRequest{Service: "dm", WorkerId: "w1"}); err != nil {
		t.Fatalf("w1 after the restore: %v", err)
	}
	t.Logf("drill took %v", time.Since(began).Round(time.Millisecond))
}

// records is a snapshot's content, split for comparison.
type records struct {
	meta     *statev1.SnapshotMeta
	rest     [][]byte // every record but the meta, node addresses, activity and the end, encoded
	activity [][]byte
}

// readRecords splits a snapshot (fsm.State.WriteSnapshot's format: magic,
// version, length-prefixed records) into its records.
func readRecords(t *testing.T, data []byte) records {
	t.Helper()
	if err := fsm.CheckSnapshot(bytes.NewReader(data)); err != nil {
		t.Fatal(err)
	}
	r := bufio.NewReader(bytes.NewReader(data[12:]))
	var out records
	for {
		n, err := binary.ReadUvarint(r)
		if err == io.EOF {
			return out
		}
		if err != nil {
			t.Fatal(err)
		}
		buf := make([]byte, n)
		if _, err := io.ReadFull(r, buf); err != nil {
			t.Fatal(err)
		}
		rec := &statev1.SnapshotRecord{}
		if err := proto.Unmarshal(buf, rec); err != nil {
			t.Fatal(err)
		}
		switch rec.Record.(type) {
		case *statev1.SnapshotRecord_Meta:
			out.meta = rec.GetMeta()
		case *statev1.SnapshotRecord_Node, *statev1.SnapshotRecord_End:
			// Node addresses are the cluster's own; the end counts records.
		case *statev1.SnapshotRecord_Activity:
			out.activity = append(out.activity, buf)
		default:
			out.rest = append(out.rest, buf)
		}
	}
}

// sameAs reports how got differs from the state r holds, beyond what a
// restore changes: the index and time (the restore is applied at the new
// cluster's index, followed by a tick), node addresses, and activity
// recorded since.
func (r records) sameAs(got records) error {
	w, g := r.meta, got.meta
	if w.NextEpoch != g.NextEpoch || w.NextBucket != g.NextBucket || w.NextService != g.NextService || g.NextSeq < w.NextSeq {
		return fmt.Errorf("meta %v, backup's %v", g, w)
	}
	if len(got.rest) != len(r.rest) {
		return fmt.Errorf("%d records, the backup %d", len(got.rest), len(r.rest))
	}
	for i := range r.rest {
		if !bytes.Equal(r.rest[i], got.rest[i]) {
			return fmt.Errorf("record %d differs:\n got %x\nwant %x", i, got.rest[i], r.rest[i])
		}
	}
	if len(got.activity) < len(r.activity) {
		return fmt.Errorf("%d activity records, the backup %d", len(got.activity), len(r.activity))
	}
	for i := range r.activity {
		if !bytes.Equal(r.activity[i], got.activity[i]) {
			return fmt.Errorf("activity record %d differs", i)
		}
	}
	return nil
}
