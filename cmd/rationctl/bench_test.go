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
