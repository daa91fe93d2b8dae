package server_test

import (
	"io"
	"net/http"
	"strconv"
	"strings"
	"testing"

	"connectrpc.com/connect"

	rationv1 "github.com/rationhq/ration/api/ration/v1"
)

// TestServer_MetricsMoveUnderLoad runs a little work through a follower and
// checks that /metrics, scraped without the admin token, reports it: domain
// gauges and counters computed from the follower's own state, node gauges,
// and raft's own telemetry.
func TestServer_MetricsMoveUnderLoad(t *testing.T) {
	const token = "metrics-admin-token"
	c := newTestCluster(t, 3, token)
	f := c.Followers()[0]
	addr := c.addrOf(f)
	before := scrape(t, addr)
	for _, name := range []string{"ration_node_applied_index", "ration_node_commit_index", "ration_node_term",
		"ration_node_is_leader", "ration_node_leader_known", "ration_node_members", "go_goroutines"} {
		mustValue(t, before, name)
	}
	if v := mustValue(t, before, "ration_node_members"); v != 3 {
		t.Fatalf("ration_node_members = %v, want 3", v)
	}
	if v := mustValue(t, before, "ration_node_log_entries"); v < 1 {
		t.Fatalf("ration_node_log_entries = %v on a cluster that has written entries", v)
	}
	if v := mustValue(t, before, "ration_node_trailing_logs"); v != 10240 {
		t.Fatalf("ration_node_trailing_logs = %v, want the default 10240", v)
	}
	mustValue(t, before, "ration_node_log_bytes_since_snapshot")

	const worker = "worker-with-a-distinct-id"
	cl := newClients(http.DefaultClient, addr, nil, token, workerSecret)
	if _, err := cl.owner.CreateService(ctx(t), connect.NewRequest(&rationv1.CreateServiceRequest{Name: "dm", Kind: "dmcheck",
		Config: &rationv1.ServiceConfig{BucketSize: 2}})); err != nil {
		t.Fatal(err)
	}
	if _, err := cl.worker.Register(ctx(t), connect.NewRequest(&rationv1.RegisterRequest{Service: "dm", WorkerId: worker})); err != nil {
		t.Fatal(err)
	}
	if _, err := cl.owner.AddItems(ctx(t), connect.NewRequest(&rationv1.AddItemsRequest{Service: "dm",
		Items: []string{"item-a1", "item-a2", "item-a3", "item-a4"}})); err != nil {
		t.Fatal(err)
	}
	acq, err := cl.worker.Acquire(ctx(t), connect.NewRequest(&rationv1.AcquireRequest{Service: "dm", WorkerId: worker, MaxBuckets: 1}))
	if err != nil || len(acq.Msg.Buckets) != 1 {
		t.Fatalf("acquire: %v %v", acq, err)
	}
	bk := acq.Msg.Buckets[0]
	res := []*rationv1.ResultInput{{Item: bk.Items[0], Verdict: "DM"}, {Item: bk.Items[1], Verdict: "NON_DM"}}
	if _, err := cl.worker.Submit(ctx(t), connect.NewRequest(&rationv1.SubmitRequest{WorkerId: worker, BucketId: bk.Id,
		Epoch: bk.Lease.Epoch, Results: res})); err != nil {
		t.Fatal(err)
	}
	// A submit with a stale epoch is refused, by the leader before it
	// proposes it: the leader counts it, the follower that forwarded it
	// does not, and the replicated counters do not move.
	if _, err := cl.worker.Submit(ctx(t), connect.NewRequest(&rationv1.SubmitRequest{WorkerId: worker, BucketId: bk.Id,
		Epoch: bk.Lease.Epoch + 1, Results: res})); err == nil {
		t.Fatal("submit with a wrong epoch succeeded")
	}

	want := map[string]float64{
		`ration_services{state="active"}`:                              1,
		`ration_items{service="dm",state="pending"}`:                   2,
		`ration_items{service="dm",state="done"}`:                      2,
		`ration_items{service="dm",state="leased"}`:                    0,
		`ration_buckets{service="dm",state="done"}`:                    1,
		`ration_buckets{service="dm",state="unassigned"}`:              1,
		`ration_leases_granted_total{service="dm"}`:                    1,
		`ration_buckets_done_total{service="dm"}`:                      1,
		`ration_items_added_total{service="dm"}`:                       4,
		`ration_results_accepted_total{service="dm",verdict="DM"}`:     1,
		`ration_results_accepted_total{service="dm",verdict="NON_DM"}`: 1,
		`ration_commands_rejected_total{service="dm"}`:                 0,
		`ration_workers{service="dm",state="active"}`:                  1,
		`ration_workers{service="dm",state="inactive"}`:                0,
		// Validation's series are there, at zero, for a service without it.
		`ration_items{service="dm",state="inconclusive"}`: 0,
		`ration_items_awaiting_quorum{service="dm"}`:      0,
		`ration_results_validated_total{service="dm"}`:    0,
		`ration_results_unvalidated_total{service="dm"}`:  0,
		`ration_canaries_failed_total{service="dm"}`:      0,
	}
	// The follower's gauges and counters come from its own state: once it
	// has applied what the leader acknowledged, one scrape shows them.
	c.WaitApplied(c.Leader().State().Index())
	after := scrape(t, addr)
	for series, w := range want {
		if got, ok := value(after, series); !ok || got != w {
			t.Fatalf("%s = %v (present %v), want %v", series, got, ok, w)
		}
	}

	if _, ok := value(after, `ration_commands_rejected_by_reason_total{reason="LEASE_LOST",service="dm"}`); ok {
		t.Error("the follower counts a refusal the leader made")
	}
	lead := scrape(t, c.addrOf(c.Leader()))
	for series, w := range map[string]float64{
		`ration_commands_rejected_total{service="dm"}`:                               1,
		`ration_commands_rejected_by_reason_total{reason="LEASE_LOST",service="dm"}`: 1,
	} {
		if got, ok := value(lead, series); !ok || got != w {
			t.Errorf("leader: %s = %v (present %v), want %v", series, got, ok, w)
		}
	}

	for _, name := range []string{"ration_node_applied_index", "ration_node_commit_index"} {
		if b, a := mustValue(t, before, name), mustValue(t, after, name); a <= b {
			t.Errorf("%s did not move: %v then %v", name, b, a)
		}
	}
	// Raft's telemetry: every node of the process shares the go-metrics
	// global, so any node's scrape shows the leader's applies and commits.
	// Before the load the sink may not have seen an apply yet (an idle
	// cluster writes nothing): a missing series counts as zero.
	b, _ := value(before, "raft_apply")
	if a := mustValue(t, after, "raft_apply"); a <= b {
		t.Errorf("raft_apply did not move: %v then %v", b, a)
	}
	mustValue(t, after, "raft_commitTime_count")
	mustValue(t, after, "raft_fsm_applyBatch_count")
	mustValue(t, after, "raft_leader_lastContact_count")
	// Bounded labels: neither worker nor item ids appear.
	for _, id := range []string{worker, "item-a1"} {
		if strings.Contains(after, id) {
			t.Errorf("/metrics mentions the id %q", id)
		}
	}
	if v := mustValue(t, scrape(t, c.addrOf(c.Leader())), "ration_node_is_leader"); v != 1 {
		t.Errorf("leader's ration_node_is_leader = %v", v)
	}
	if v := mustValue(t, after, "ration_node_is_leader"); v != 0 {
		t.Errorf("follower's ration_node_is_leader = %v", v)
	}
}

// scrape fetches /metrics from addr, without credentials.
func scrape(t *testing.T, addr string) string {
	t.Helper()
	resp, err := http.Get("http://" + addr + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET /metrics: %s: %s", resp.Status, body)
	}
	return string(body)
}

// value finds one sample in the text format. series is the metric name with
// its labels as the exposition writes them (sorted by label name).
func value(body, series string) (float64, bool) {
	for line := range strings.SplitSeq(body, "\n") {
		rest, ok := strings.CutPrefix(line, series+" ")
		if !ok {
			continue
		}
		v, err := strconv.ParseFloat(strings.Fields(rest)[0], 64)
		return v, err == nil
	}
	return 0, false
}

func mustValue(t *testing.T, body, series string) float64 {
	t.Helper()
	v, ok := value(body, series)
	if !ok {
		t.Fatalf("/metrics has no sample %s", series)
	}
	return v
}

// TestServer_MetricsShowValidation: under replicas 3, quorum 2 and
// max_replicas 3, with a canary in every lease, three workers settle one
// item (one of them dissenting) and leave the other inconclusive; /metrics
// shows the votes waiting, then what was decided.
func TestServer_MetricsShowValidation(t *testing.T) {
	c := newNode(t, "")
	addr := c.addrs[0]
	owner := newClients(http.DefaultClient, addr, nil, "", workerSecret).owner
	if _, err := owner.CreateService(ctx(t), connect.NewRequest(&rationv1.CreateServiceRequest{Name: "v", Kind: "dmcheck",
		Config: &rationv1.ServiceConfig{BucketSize: 2, Validation: &rationv1.ValidationPolicy{Replicas: 3, Quorum: 2, MaxReplicas: 3, CanaryRate: 500}}})); err != nil {
		t.Fatal(err)
	}
	if _, err := owner.AddCanaries(ctx(t), connect.NewRequest(&rationv1.AddCanariesRequest{Service: "v",
		Canaries: []*rationv1.Canary{{Item: "can-1", Verdict: "DM"}}})); err != nil {
		t.Fatal(err)
	}
	if _, err := owner.AddItems(ctx(t), connect.NewRequest(&rationv1.AddItemsRequest{Service: "v", Items: []string{"x1", "x2"}})); err != nil {
		t.Fatal(err)
	}
	// vote submits a worker's answers: item → verdict.
	vote := func(worker string, answers map[string]string) {
		t.Helper()
		wk := newClients(http.DefaultClient, addr, nil, "", workerSecret+"-"+worker).worker
		if _, err := wk.Register(ctx(t), connect.NewRequest(&rationv1.RegisterRequest{Service: "v", WorkerId: worker})); err != nil {
			t.Fatal(err)
		}
		acq, err := wk.Acquire(ctx(t), connect.NewRequest(&rationv1.AcquireRequest{Service: "v", WorkerId: worker}))
		if err != nil || len(acq.Msg.Buckets) != 1 || len(acq.Msg.Buckets[0].Items) != 3 {
			t.Fatalf("%s acquires: %v %v", worker, acq, err)
		}
		b := acq.Msg.Buckets[0]
		var res []*rationv1.ResultInput
		for _, id := range b.Items {
			res = append(res, &rationv1.ResultInput{Item: id, Verdict: answers[id]})
		}
		if _, err := wk.Submit(ctx(t), connect.NewRequest(&rationv1.SubmitRequest{WorkerId: worker, BucketId: b.Id, Epoch: b.Lease.Epoch,
			Results: res})); err != nil {
			t.Fatal(err)
		}
	}
	check := func(when string, want map[string]float64) {
		t.Helper()
		body := scrape(t, addr)
		for series, w := range want {
			if got, ok := value(body, series); !ok || got != w {
				t.Errorf("%s: %s = %v (present %v), want %v", when, series, got, ok, w)
			}
		}
	}
	vote("w1", map[string]string{"x1": "DM", "x2": "DM", "can-1": "DM"})
	vote("w2", map[string]string{"x1": "NON_DM", "x2": "NON_DM", "can-1": "NON_DM"})
	check("after two votes", map[string]float64{
		`ration_items_awaiting_quorum{service="v"}`:      2,
		`ration_items{service="v",state="pending"}`:      2,
		`ration_items{service="v",state="inconclusive"}`: 0,
		`ration_results_validated_total{service="v"}`:    0,
		`ration_canaries_passed_total{service="v"}`:      1,
		`ration_canaries_failed_total{service="v"}`:      1,
	})
	vote("w3", map[string]string{"x1": "DM", "x2": "UNKNOWN", "can-1": "DM"})
	check("after three votes", map[string]float64{
		`ration_items_awaiting_quorum{service="v"}`:      0,
		`ration_items{service="v",state="pending"}`:      0,
		`ration_items{service="v",state="done"}`:         1,
		`ration_items{service="v",state="inconclusive"}`: 1,
		`ration_results_validated_total{service="v"}`:    1,
		`ration_results_disagreed_total{service="v"}`:    1,
		`ration_results_unvalidated_total{service="v"}`:  0,
		`ration_items_inconclusive_total{service="v"}`:   1,
		`ration_canaries_passed_total{service="v"}`:      2,
		`ration_canaries_failed_total{service="v"}`:      1,
		// Every vote is a result received; the canaries are not.
		`ration_results_accepted_total{service="v",verdict="DM"}`: 3,
	})
}
