package main

import (
	"encoding/json"
	"testing"

	"github.com/rationhq/ration/server/servertest"
)

// TestBench_AgainstARealNode runs the load generator for a moment against a
// real single node, held in memory, and checks that it moved work and said
// so.
func TestBench_AgainstARealNode(t *testing.T) {
	c := servertest.StartWith(t, 1, servertest.Options{InMemory: true})
	out := mustRun(t, nil, "", "--addr", c.Addrs[0], "-o", "json", "bench", "--workers", "2", "--bucket-size", "20",
		"--duration", "1s", "--warmup", "200ms", "--progress", "0")
	var res benchResult
	if err := json.Unmarshal([]byte(out), &res); err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	if res.Items == 0 || res.Buckets == 0 || res.Items != 20*res.Buckets || res.AcquireMs["p50"] <= 0 || res.SubmitMs["p99"] <= 0 {
		t.Fatalf("bench result %+v", res)
	}
	if len(res.Errors) != 0 {
		t.Fatalf("errors: %v", res.Errors)
	}
}

// TestBench_SoakExportsAndReports runs bench as a soak: it exports and
// acknowledges beside the load, the service it creates trims at once, and
// each interval reports every node's memory.
func TestBench_SoakExportsAndReports(t *testing.T) {
	c := servertest.StartWith(t, 1, servertest.Options{InMemory: true})
	out := mustRun(t, nil, "", "--addr", c.Addrs[0], "-o", "json", "bench", "--service", "soak", "--workers", "2", "--bucket-size", "20",
		"--duration", "1500ms", "--warmup", "200ms", "--progress", "0", "--export", "--report-every", "500ms",
		"--result-retention", "0s", "--done-retention", "0s")
	var res benchResult
	if err := json.Unmarshal([]byte(out), &res); err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	if res.Items == 0 || res.Exported == 0 || len(res.Report) < 2 {
		t.Fatalf("soak result %+v", res)
	}
	for _, r := range res.Report {
		if len(r.Nodes) != 1 || r.Nodes[0].Err != "" || r.Nodes[0].HeapInuse <= 0 || r.Nodes[0].RSS <= 0 {
			t.Fatalf("report row %+v", r)
		}
	}
	svc, ok := c.Nodes[0].State().Service("soak")
	if !ok || svc.Config.ResultRetention != 0 || svc.Config.DoneRetention != 0 || svc.AckedThrough == 0 {
		t.Fatalf("the soak's service: %+v", svc)
	}
}
