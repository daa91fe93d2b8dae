package main

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"

	"connectrpc.com/connect"
	"google.golang.org/protobuf/proto"

	"github.com/rationhq/ration/api/client"
	rationv1 "github.com/rationhq/ration/api/ration/v1"
	"github.com/rationhq/ration/api/ration/v1/rationv1connect"
	"github.com/rationhq/ration/server/servertest"
)

func (f *fakeServer) AddCanaries(_ context.Context, req *connect.Request[rationv1.AddCanariesRequest]) (*connect.Response[rationv1.AddCanariesResponse], error) {
	f.record(req.Spec().Procedure, req.Header())
	f.mu.Lock()
	f.canaries = append(f.canaries, req.Msg)
	f.mu.Unlock()
	n := uint32(len(req.Msg.GetCanaries()))
	return connect.NewResponse(&rationv1.AddCanariesResponse{Added: n - 1, Updated: 1, Total: 100 + n}), nil
}

func TestCanariesAdd_ArgumentsFileAndChunks(t *testing.T) {
	f := &fakeServer{}
	addr := startFake(t, f)
	file := `{"item":"c3","verdict":"OK","payload":["1","2"]}

{"item":"c4","verdict":"NON_DM","payload":"note"}
`
	out := mustRun(t, nil, file, "--addr", addr, "canaries", "add", "svc", "c1=DM", "c2=OK:[\"7\"]",
		"--file", "-", "--chunk", "3", "--request-id", "can")
	want := [][]*rationv1.Canary{
		{{Item: "c1", Verdict: "DM"}, {Item: "c2", Verdict: "OK", Payload: `["7"]`}, {Item: "c3", Verdict: "OK", Payload: `["1","2"]`}},
		{{Item: "c4", Verdict: "NON_DM", Payload: "note"}},
	}
	if len(f.canaries) != len(want) {
		t.Fatalf("AddCanaries calls = %d, want %d", len(f.canaries), len(want))
	}
	for i, req := range f.canaries {
		if req.GetService() != "svc" || req.GetRequestId() != "can-"+string(rune('1'+i)) {
			t.Errorf("call %d: service %q, request id %q", i, req.GetService(), req.GetRequestId())
		}
		if len(req.GetCanaries()) != len(want[i]) {
			t.Fatalf("call %d: %v, want %v", i, req.GetCanaries(), want[i])
		}
		for j, c := range req.GetCanaries() {
			if !proto.Equal(c, want[i][j]) {
				t.Errorf("call %d canary %d = %v, want %v", i, j, c, want[i][j])
			}
		}
	}
	// Sums: added 2+0, updated 1+1; the total is the last answer's.
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if len(lines) != 2 || strings.Join(strings.Fields(lines[0]), " ") != "ADDED UPDATED TOTAL CALLS" ||
		strings.Join(strings.Fields(lines[1]), " ") != "2 2 101 2" {
		t.Errorf("output:\n%s", out)
	}

	for _, bad := range []struct{ args []string }{
		{[]string{"svc"}},                       // nothing to add
		{[]string{"svc", "c1"}},                 // no verdict
		{[]string{"svc", "c1=:x"}},              // an empty verdict
		{[]string{"svc", "c1=DM", "c1=NON_DM"}}, // twice
	} {
		before := len(f.canaries)
		if r := runCLI(t, nil, "", append([]string{"--addr", addr, "canaries", "add"}, bad.args...)...); r.code != 1 || len(f.canaries) != before {
			t.Errorf("canaries add %v: exit %d, stderr %q, calls %d", bad.args, r.code, r.stderr, len(f.canaries)-before)
		}
	}
	r := runCLI(t, nil, `{"item":"c1","verdict":"DM","extra":1}`, "--addr", addr, "canaries", "add", "svc", "--file", "-")
	if r.code != 1 || !strings.Contains(r.stderr, "line 1") {
		t.Errorf("an unknown field: exit %d, stderr %q", r.code, r.stderr)
	}
}

func TestServiceCreate_ValidationFlagsReachRequest(t *testing.T) {
	f := &fakeServer{}
	addr := startFake(t, f)
	out := mustRun(t, nil, "", "--addr", addr, "service", "create", "v", "--kind", "followers",
		"--replicas", "3", "--quorum", "2", "--max-replicas", "9", "--adaptive", "--spot-check", "50", "--trust-after", "20",
		"--canary-rate", "10", "--canary-failures-to-deactivate", "2", "--list-tolerance", "100", "--compare-payload")
	want := &rationv1.ValidationPolicy{Replicas: 3, Quorum: 2, MaxReplicas: 9, Adaptive: true, SpotCheck: 50, TrustAfter: 20,
		CanaryRate: 10, CanaryFailuresToDeactivate: 2, ListTolerance: 100, ComparePayload: true}
	if got := f.creates[0].GetConfig().GetValidation(); !proto.Equal(got, want) {
		t.Errorf("validation = %v, want %v", got, want)
	}
	if !strings.Contains(out, "replicas=3 quorum=2 max_replicas=9 adaptive=true") {
		t.Errorf("output lacks the policy:\n%s", out)
	}
	// Without a validation flag the config has no policy, and the output
	// no validation row.
	out = mustRun(t, nil, "", "--addr", addr, "service", "create", "plain", "--kind", "dmcheck")
	if f.creates[1].GetConfig().GetValidation() != nil || strings.Contains(out, "validation") {
		t.Errorf("a service without validation flags: %v\n%s", f.creates[1].GetConfig(), out)
	}
}

// configFake answers GetService with a config and records UpdateService.
type configFake struct {
	rationv1connect.UnimplementedOwnerServiceHandler
	config  *rationv1.ServiceConfig
	updates []*rationv1.UpdateServiceRequest
}

func (f *configFake) GetService(context.Context, *connect.Request[rationv1.GetServiceRequest]) (*connect.Response[rationv1.GetServiceResponse], error) {
	return connect.NewResponse(&rationv1.GetServiceResponse{Service: &rationv1.ServiceInfo{Name: "v", Config: f.config}}), nil
}

func (f *configFake) UpdateService(_ context.Context, req *connect.Request[rationv1.UpdateServiceRequest]) (*connect.Response[rationv1.UpdateServiceResponse], error) {
	f.updates = append(f.updates, req.Msg)
	return connect.NewResponse(&rationv1.UpdateServiceResponse{Config: req.Msg.GetConfig()}), nil
}

// service update changes only the validation fields given; a quorum and
// max_replicas that were the old replicas' defaults follow new replicas,
// values of their own stay.
func TestServiceUpdate_ValidationFlags(t *testing.T) {
	for _, tc := range []struct {
		name string
		cur  *rationv1.ValidationPolicy
		args []string
		want *rationv1.ValidationPolicy
	}{
		{"none yet", nil, []string{"--replicas", "2"}, &rationv1.ValidationPolicy{Replicas: 2}},
		{"defaults follow replicas", &rationv1.ValidationPolicy{Replicas: 2, Quorum: 2, MaxReplicas: 6, SpotCheck: 20, TrustAfter: 10},
			[]string{"--replicas", "5"}, &rationv1.ValidationPolicy{Replicas: 5, SpotCheck: 20, TrustAfter: 10}},
		{"replicas 1 had max 1", &rationv1.ValidationPolicy{Replicas: 1, Quorum: 1, MaxReplicas: 1, CanaryRate: 5},
			[]string{"--replicas", "3"}, &rationv1.ValidationPolicy{Replicas: 3, CanaryRate: 5}},
		{"values of their own stay", &rationv1.ValidationPolicy{Replicas: 3, Quorum: 3, MaxReplicas: 12},
			[]string{"--replicas", "4"}, &rationv1.ValidationPolicy{Replicas: 4, Quorum: 3, MaxReplicas: 12}},
		{"given with replicas", &rationv1.ValidationPolicy{Replicas: 2, Quorum: 2, MaxReplicas: 6},
			[]string{"--replicas", "3", "--quorum", "3", "--max-replicas", "3"}, &rationv1.ValidationPolicy{Replicas: 3, Quorum: 3, MaxReplicas: 3}},
		{"other fields only", &rationv1.ValidationPolicy{Replicas: 2, Quorum: 2, MaxReplicas: 6},
			[]string{"--canary-rate", "20", "--adaptive"}, &rationv1.ValidationPolicy{Replicas: 2, Quorum: 2, MaxReplicas: 6, CanaryRate: 20, Adaptive: true}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := &configFake{config: &rationv1.ServiceConfig{BucketSize: 7, Validation: tc.cur}}
			mux := http.NewServeMux()
			mux.Handle(rationv1connect.NewOwnerServiceHandler(f))
			srv := httptest.NewServer(mux)
			t.Cleanup(srv.Close)
			mustRun(t, nil, "", append([]string{"--addr", srv.URL, "service", "update", "v"}, tc.args...)...)
			if len(f.updates) != 1 {
				t.Fatalf("UpdateService calls = %d", len(f.updates))
			}
			cfg := f.updates[0].GetConfig()
			if !proto.Equal(cfg.GetValidation(), tc.want) || cfg.GetBucketSize() != 7 {
				t.Errorf("config = %v, want bucket_size 7 and validation %v", cfg, tc.want)
			}
		})
	}
}

// TestValidation_AgainstARealNode runs a service with replicas 2 and a
// canary in every bucket through two workers and reads what rationctl
// shows at each step; a service without validation shows as before.
func TestValidation_AgainstARealNode(t *testing.T) {
	c := servertest.StartWith(t, 1, servertest.Options{InMemory: true})
	env := map[string]string{envAddr: c.Addrs[0]}
	ctx := context.Background()
	cols := func(line string) string { return strings.Join(strings.Fields(line), " ") }
	lines := func(out string) []string { return strings.Split(strings.TrimRight(out, "\n"), "\n") }
	// find returns the row of a table whose first cell is key, and its header.
	find := func(out, key string) (head, row []string) {
		t.Helper()
		ls := lines(out)
		for _, l := range ls[1:] {
			if f := strings.Fields(l); len(f) > 0 && f[0] == key {
				return strings.Fields(ls[0]), f
			}
		}
		t.Fatalf("no row %q in:\n%s", key, out)
		return nil, nil
	}
	cell := func(head, row []string, name string) string {
		t.Helper()
		i := slices.Index(head, name)
		if i < 0 || i >= len(row) {
			t.Fatalf("no column %s in %v / %v", name, head, row)
		}
		return row[i]
	}

	mustRun(t, env, "", "service", "create", "val", "--kind", "dmcheck", "--bucket-size", "4", "--replicas", "2", "--canary-rate", "250")
	mustRun(t, env, "", "service", "create", "plain", "--kind", "dmcheck", "--bucket-size", "4")
	out := mustRun(t, env, `{"item":"can-3","verdict":"DM","payload":"known"}`+"\n", "canaries", "add", "val", "can-1=DM", "can-2=DM:note", "--file", "-")
	if ls := lines(out); len(ls) != 2 || cols(ls[1]) != "3 0 3 1" {
		t.Fatalf("canaries add:\n%s", out)
	}
	// An item's id is refused as a canary, with the server's reason.
	mustRun(t, env, "", "items", "add", "val", "a", "b", "c", "d")
	mustRun(t, env, "", "items", "add", "plain", "p1", "p2")
	r := runCLI(t, env, "", "canaries", "add", "val", "a=DM")
	if r.code != 1 || !strings.Contains(r.stderr, "invalid_argument") || !strings.Contains(r.stderr, `"a" is an item of service "val"`) {
		t.Fatalf("canaries add of an item: exit %d, stderr %q", r.code, r.stderr)
	}

	items := map[string]bool{"a": true, "b": true, "c": true, "d": true}
	process := func(worker, canaryVerdict string) {
		t.Helper()
		w, err := client.New(client.Config{Addrs: c.Addrs, WorkerSecret: "the-secret-of-worker-" + worker})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := w.Register(ctx, &rationv1.RegisterRequest{Service: "val", WorkerId: worker}); err != nil {
			t.Fatal(err)
		}
		acq, err := w.Acquire(ctx, &rationv1.AcquireRequest{Service: "val", WorkerId: worker})
		if err != nil || len(acq.GetBuckets()) != 1 {
			t.Fatalf("%s acquires: %v, %v", worker, acq, err)
		}
		b := acq.GetBuckets()[0]
		if len(b.GetItems()) != 5 {
			t.Fatalf("%s leased %v: want the 4 items and one canary", worker, b.GetItems())
		}
		var res []*rationv1.ResultInput
		for _, id := range b.GetItems() {
			v := "DM"
			if !items[id] {
				v = canaryVerdict
			}
			res = append(res, &rationv1.ResultInput{Item: id, Verdict: v})
		}
		if _, err := w.Submit(ctx, &rationv1.SubmitRequest{WorkerId: worker, BucketId: b.GetId(), Epoch: b.GetLease().GetEpoch(), Results: res}); err != nil {
			t.Fatal(err)
		}
	}

	process("w1", "DM")
	head, row := find(mustRun(t, env, "", "stats"), "val")
	if cell(head, row, "AWAITING-QUORUM") != "4" || cell(head, row, "CANONICAL") != "0" || cell(head, row, "PENDING") != "4" {
		t.Fatalf("stats after one vote: %v / %v", head, row)
	}
	out = mustRun(t, env, "", "items", "list", "val")
	head, row = find(out, "a")
	if cell(head, row, "VALIDATED") != "-" || cell(head, row, "VOTES") != "w1=DM" {
		t.Fatalf("items list after one vote:\n%s", out)
	}

	process("w2", "NON_DM") // agrees on every item, answers its canary wrong
	out = mustRun(t, env, "", "stats")
	head, row = find(out, "val")
	for col, want := range map[string]string{"DONE": "4", "AWAITING-QUORUM": "0", "INCONCLUSIVE": "0", "CANONICAL": "4",
		"UNVALIDATED": "0", "CANARIES-FAILED": "1"} {
		if got := cell(head, row, col); got != want {
			t.Errorf("stats: %s = %s, want %s\n%s", col, got, want, out)
		}
	}
	if _, prow := find(out, "plain"); cols(strings.Join(prow[7:], " ")) != "- - - - -" {
		t.Errorf("stats: a service without validation shows validation cells: %v", prow)
	}
	out = mustRun(t, env, "", "items", "list", "val")
	for _, id := range []string{"a", "b", "c", "d"} {
		head, row = find(out, id)
		if cell(head, row, "STATE") != "done" || cell(head, row, "VALIDATED") != "yes" || cell(head, row, "VOTES") != "w1=DM✓" ||
			row[len(row)-1] != "w2=DM✓" {
			t.Errorf("items list, item %s: %v", id, row)
		}
	}
	out = mustRun(t, env, "", "workers", "val")
	for worker, want := range map[string][]string{"w1": {"5", "no", "100.0%", "0", "0"}, "w2": {"4", "no", "100.0%", "0", "1"}} {
		head, row = find(out, worker)
		for i, col := range []string{"TRUST-RUN", "TRUSTED", "REPLICATED", "DISAGREED", "CANARIES-FAILED"} {
			if got := cell(head, row, col); got != want[i] {
				t.Errorf("workers: %s's %s = %s, want %s\n%s", worker, col, got, want[i], out)
			}
		}
	}
	if !strings.Contains(out, "validation is not adaptive: every bucket is replicated") {
		t.Errorf("workers: no WHY:\n%s", out)
	}
	out = mustRun(t, env, "", "service", "get", "val")
	for _, want := range []string{"replicas=2 quorum=2 max_replicas=6 adaptive=false", "canonical=4 unvalidated=0 disagreed=0 awaiting_quorum=0 inconclusive=0 canaries_passed=1 canaries_failed=1 overhead=+100%"} {
		if !strings.Contains(out, want) {
			t.Errorf("service get lacks %q:\n%s", want, out)
		}
	}

	// JSON carries the votes and whether the result was validated.
	var got struct {
		Items []struct {
			ID     string `json:"id"`
			Result struct {
				Validated bool `json:"validated"`
			} `json:"result"`
			Votes []struct {
				WorkerID string `json:"worker_id"`
				Agreed   bool   `json:"agreed"`
			} `json:"votes"`
		} `json:"items"`
	}
	if err := json.Unmarshal([]byte(mustRun(t, env, "", "-o", "json", "items", "list", "val")), &got); err != nil {
		t.Fatal(err)
	}
	if len(got.Items) != 4 || !got.Items[0].Result.Validated || len(got.Items[0].Votes) != 2 || !got.Items[0].Votes[1].Agreed {
		t.Errorf("items list -o json: %+v", got)
	}

	// A service without validation: the tables are as they always were.
	w, _ := client.New(client.Config{Addrs: c.Addrs, WorkerSecret: "the-secret-of-worker-w1"})
	if _, err := w.Register(ctx, &rationv1.RegisterRequest{Service: "plain", WorkerId: "w1"}); err != nil {
		t.Fatal(err)
	}
	acq, err := w.Acquire(ctx, &rationv1.AcquireRequest{Service: "plain", WorkerId: "w1"})
	if err != nil || len(acq.GetBuckets()) != 1 {
		t.Fatalf("acquire in plain: %v, %v", acq, err)
	}
	b := acq.GetBuckets()[0]
	if _, err := w.Submit(ctx, &rationv1.SubmitRequest{WorkerId: "w1", BucketId: b.GetId(), Epoch: b.GetLease().GetEpoch(),
		Results: []*rationv1.ResultInput{{Item: b.GetItems()[0], Verdict: "DM"}}}); err != nil {
		t.Fatal(err)
	}
	for args, want := range map[string]string{
		"stats plain":      "NAME KIND STATE PENDING LEASED DONE QUARANTINED",
		"workers plain":    "WORKER STATE HELD GRANTED DONE EXPIRED REJECTED LAST-SEEN SUSPECT",
		"items list plain": "ID STATE PRIORITY ATTEMPTS BUCKET SINCE VERDICT",
	} {
		out := mustRun(t, env, "", strings.Fields(args)...)
		if got := cols(lines(out)[0]); got != want {
			t.Errorf("%s: header %q, want %q", args, got, want)
		}
	}
	if out := mustRun(t, env, "", "service", "get", "plain"); strings.Contains(out, "validation") || strings.Contains(out, "canonical=") {
		t.Errorf("service get of a service without validation shows validation:\n%s", out)
	}
}
