package main

import (
	"bufio"
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/rationhq/ration/api/client"
	rationv1 "github.com/rationhq/ration/api/ration/v1"
	"github.com/rationhq/ration/server/servertest"
)

// results export --ack --out appends what it exports to the file and
// acknowledges it; run again, it writes only what came since.
func TestResultsExport_AckAgainstARealNode(t *testing.T) {
	c := servertest.StartWith(t, 1, servertest.Options{InMemory: true})
	owner, _ := client.New(client.Config{Addrs: c.Addrs})
	worker, _ := client.New(client.Config{Addrs: c.Addrs, WorkerSecret: "a-worker-secret-for-tests"})
	ctx := context.Background()
	if _, err := owner.CreateService(ctx, &rationv1.CreateServiceRequest{Name: "dm", Kind: "dmcheck",
		Config: &rationv1.ServiceConfig{BucketSize: 1}}); err != nil {
		t.Fatal(err)
	}
	if _, err := worker.Register(ctx, &rationv1.RegisterRequest{Service: "dm", WorkerId: "w1"}); err != nil {
		t.Fatal(err)
	}
	process := func(items ...string) {
		t.Helper()
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
	file := filepath.Join(t.TempDir(), "results.ndjson")
	env := map[string]string{envAddr: c.Addrs[0]}
	items := func() []string {
		t.Helper()
		f, err := os.Open(file)
		if err != nil {
			t.Fatal(err)
		}
		defer f.Close()
		var out []string
		for sc := bufio.NewScanner(f); sc.Scan(); {
			var line struct {
				Item string  `json:"item"`
				Seq  float64 `json:"seq"`
			}
			if err := json.Unmarshal(sc.Bytes(), &line); err != nil || line.Seq == 0 {
				t.Fatalf("line %q: %v", sc.Text(), err)
			}
			out = append(out, line.Item)
		}
		return out
	}
	acked := func() *rationv1.ExportPosition {
		t.Helper()
		svc, err := owner.GetService(ctx, &rationv1.GetServiceRequest{Name: "dm"})
		if err != nil {
			t.Fatal(err)
		}
		return svc.GetService().GetExport()
	}
	process("a", "b")
	mustRun(t, env, "", "results", "export", "dm", "--ack", "--out", file)
	if got := items(); len(got) != 2 || !slices.Contains(got, "a") || !slices.Contains(got, "b") {
		t.Fatalf("first export wrote %v", got)
	}
	if p := acked(); p.UnackedResults != 0 || p.AckedThrough != p.LastSeq {
		t.Fatalf("after the first export: %v", p)
	}
	process("c")
	mustRun(t, env, "", "results", "export", "dm", "--ack", "--out", file)
	if got := items(); len(got) != 3 || got[2] != "c" {
		t.Fatalf("the second export appended %v", got)
	}
	if p := acked(); p.UnackedResults != 0 {
		t.Fatalf("after the second export: %v", p)
	}
	// Without --ack it writes everything and acknowledges nothing.
	process("d")
	out := mustRun(t, env, "", "results", "export", "dm")
	if n := strings.Count(out, "\n"); n != 4 {
		t.Fatalf("export without --ack wrote %d lines:\n%s", n, out)
	}
	if p := acked(); p.UnackedResults != 1 {
		t.Fatalf("an export without --ack acknowledged: %v", p)
	}
}
