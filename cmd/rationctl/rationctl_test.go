package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"connectrpc.com/connect"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"

	rationv1 "github.com/rationhq/ration/api/ration/v1"
	"github.com/rationhq/ration/api/ration/v1/rationv1connect"
)

// fakeServer is a fake of the four services: a few handlers answer, the
// rest are Unimplemented. It records requests and the Authorization header
// of every call by procedure.
type fakeServer struct {
	rationv1connect.UnimplementedOwnerServiceHandler
	rationv1connect.UnimplementedWorkerServiceHandler
	rationv1connect.UnimplementedInsightServiceHandler
	rationv1connect.UnimplementedClusterServiceHandler

	// statusErr, when set, is Status's answer.
	statusErr error
	noLeader  bool   // Status answers as a node that knows no leader yet
	notReady  string // Status's not_ready
	// ownerToken is the owner token CreateService and RotateOwnerToken return.
	ownerToken string
	services   []*rationv1.ServiceInfo

	mu       sync.Mutex
	auth     map[string][]string // procedure → Authorization headers
	calls    []string            // procedures in call order, from the HTTP layer
	creates  []*rationv1.CreateServiceRequest
	rotates  []*rationv1.RotateOwnerTokenRequest
	adds     []*rationv1.AddItemsRequest
	canaries []*rationv1.AddCanariesRequest
	acquires []*rationv1.AcquireRequest
}

func (f *fakeServer) record(procedure string, h http.Header) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.auth == nil {
		f.auth = map[string][]string{}
	}
	f.auth[procedure] = append(f.auth[procedure], h.Get("Authorization"))
}

func (f *fakeServer) CreateService(_ context.Context, req *connect.Request[rationv1.CreateServiceRequest]) (*connect.Response[rationv1.CreateServiceResponse], error) {
	f.record(req.Spec().Procedure, req.Header())
	f.mu.Lock()
	f.creates = append(f.creates, req.Msg)
	f.mu.Unlock()
	return connect.NewResponse(&rationv1.CreateServiceResponse{Config: req.Msg.GetConfig(), OwnerToken: f.ownerToken}), nil
}

func (f *fakeServer) RotateOwnerToken(_ context.Context, req *connect.Request[rationv1.RotateOwnerTokenRequest]) (*connect.Response[rationv1.RotateOwnerTokenResponse], error) {
	f.record(req.Spec().Procedure, req.Header())
	f.mu.Lock()
	f.rotates = append(f.rotates, req.Msg)
	f.mu.Unlock()
	return connect.NewResponse(&rationv1.RotateOwnerTokenResponse{OwnerToken: f.ownerToken}), nil
}

func (f *fakeServer) ListServices(_ context.Context, req *connect.Request[rationv1.ListServicesRequest]) (*connect.Response[rationv1.ListServicesResponse], error) {
	f.record(req.Spec().Procedure, req.Header())
	return connect.NewResponse(&rationv1.ListServicesResponse{
		Services: f.services,
		Read:     &rationv1.ReadInfo{Index: 42, ServedBy: "n1"},
	}), nil
}

func (f *fakeServer) AddItems(_ context.Context, req *connect.Request[rationv1.AddItemsRequest]) (*connect.Response[rationv1.AddItemsResponse], error) {
	f.record(req.Spec().Procedure, req.Header())
	f.mu.Lock()
	f.adds = append(f.adds, req.Msg)
	f.mu.Unlock()
	return connect.NewResponse(&rationv1.AddItemsResponse{Added: uint32(len(req.Msg.GetItems())), Skipped: 1, Buckets: 1}), nil
}

func (f *fakeServer) Acquire(_ context.Context, req *connect.Request[rationv1.AcquireRequest]) (*connect.Response[rationv1.AcquireResponse], error) {
	f.record(req.Spec().Procedure, req.Header())
	f.mu.Lock()
	f.acquires = append(f.acquires, req.Msg)
	f.mu.Unlock()
	return connect.NewResponse(&rationv1.AcquireResponse{Buckets: []*rationv1.LeasedBucket{{
		Id: 7, Service: req.Msg.GetService(), Items: []string{"a", "b"},
		Lease: &rationv1.Lease{Epoch: 3}, State: rationv1.BucketState_BUCKET_STATE_LEASED,
	}}}), nil
}

func (f *fakeServer) Status(_ context.Context, req *connect.Request[rationv1.StatusRequest]) (*connect.Response[rationv1.StatusResponse], error) {
	f.record(req.Spec().Procedure, req.Header())
	if f.statusErr != nil {
		return nil, f.statusErr
	}
	if f.noLeader {
		return connect.NewResponse(&rationv1.StatusResponse{NodeId: "n1", State: "Follower", Term: 0}), nil
	}
	return connect.NewResponse(&rationv1.StatusResponse{
		NodeId: "n2", State: "Follower", LeaderId: "n1", Term: 4, NotReady: f.notReady,
		Members: []*rationv1.Member{
			{Id: "n1", RaftAddress: "127.0.0.1:7001", ApiAddress: "127.0.0.1:7071", Suffrage: "Voter", Leader: true},
			{Id: "n2", RaftAddress: "127.0.0.1:7002", ApiAddress: "127.0.0.1:7072", Suffrage: "Voter"},
		},
	}), nil
}

func (f *fakeServer) SaveSnapshot(_ context.Context, req *connect.Request[rationv1.SaveSnapshotRequest], s *connect.ServerStream[rationv1.SaveSnapshotResponse]) error {
	f.record(req.Spec().Procedure, req.Header())
	if err := s.Send(&rationv1.SaveSnapshotResponse{Data: []byte("snap-"), Index: 99}); err != nil {
		return err
	}
	return s.Send(&rationv1.SaveSnapshotResponse{Data: []byte("shot")})
}

func (f *fakeServer) ExportResults(_ context.Context, req *connect.Request[rationv1.ExportResultsRequest], s *connect.ServerStream[rationv1.ExportResultsResponse]) error {
	f.record(req.Spec().Procedure, req.Header())
	for seq := req.Msg.GetAfterSeq() + 1; seq <= req.Msg.GetAfterSeq()+2; seq++ {
		err := s.Send(&rationv1.ExportResultsResponse{Seq: seq, Results: []*rationv1.ResultInfo{
			{Item: "i" + string(rune('0'+seq)), Verdict: "ok", WorkerId: "w1", BucketId: seq},
		}})
		if err != nil {
			return err
		}
	}
	return nil
}

// startFake serves f on a loopback httptest server and returns its address
// (host:port).
func startFake(t *testing.T, f *fakeServer) string {
	t.Helper()
	mux := http.NewServeMux()
	mux.Handle(rationv1connect.NewOwnerServiceHandler(f))
	mux.Handle(rationv1connect.NewWorkerServiceHandler(f))
	mux.Handle(rationv1connect.NewInsightServiceHandler(f))
	mux.Handle(rationv1connect.NewClusterServiceHandler(f))
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		f.mu.Lock()
		f.calls = append(f.calls, r.URL.Path)
		f.mu.Unlock()
		mux.ServeHTTP(w, r)
	}))
	t.Cleanup(srv.Close)
	return strings.TrimPrefix(srv.URL, "http://")
}

// deadAddr returns a loopback address nothing listens on.
func deadAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	return addr
}

type result struct {
	stdout, stderr string
	code           int
}

// runCLI runs rationctl in process with env as its whole environment.
func runCLI(t *testing.T, env map[string]string, stdin string, args ...string) result {
	t.Helper()
	var out, errOut strings.Builder
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	code := run(ctx, args, func(k string) string { return env[k] }, strings.NewReader(stdin), &out, &errOut)
	return result{out.String(), errOut.String(), code}
}

func mustRun(t *testing.T, env map[string]string, stdin string, args ...string) string {
	t.Helper()
	r := runCLI(t, env, stdin, args...)
	if r.code != 0 {
		t.Fatalf("rationctl %s: exit %d\nstdout:\n%s\nstderr:\n%s", strings.Join(args, " "), r.code, r.stdout, r.stderr)
	}
	return r.stdout
}

func TestServiceCreate_ConfigFlagsReachRequest(t *testing.T) {
	f := &fakeServer{}
	addr := startFake(t, f)
	out := mustRun(t, nil, "", "--addr", addr, "service", "create", "dm", "--kind", "generic",
		"--bucket-size", "50", "--lease-ttl", "30m", "--max-attempts", "3", "--verdicts", "ok,bad",
		"--result-retention", "0s", "--max-unacked-results", "5000", "--done-retention", "90m", "--refresh-after", "24h",
		"--request-id", "r-1")

	if len(f.creates) != 1 {
		t.Fatalf("CreateService calls = %d, want 1", len(f.creates))
	}
	req := f.creates[0]
	if req.GetName() != "dm" || req.GetKind() != "generic" || req.GetRequestId() != "r-1" {
		t.Errorf("request = %v", req)
	}
	cfg := req.GetConfig()
	if cfg.GetBucketSize() != 50 || cfg.GetMaxAttempts() != 3 {
		t.Errorf("bucket_size, max_attempts = %d, %d; want 50, 3", cfg.GetBucketSize(), cfg.GetMaxAttempts())
	}
	if got := cfg.GetLeaseTtl().AsDuration(); got != 30*time.Minute {
		t.Errorf("lease_ttl = %v, want 30m", got)
	}
	if !slices.Equal(cfg.GetVerdicts(), []string{"ok", "bad"}) {
		t.Errorf("verdicts = %v", cfg.GetVerdicts())
	}
	if cfg.GetResultRetention() == nil || cfg.GetResultRetention().AsDuration() != 0 || cfg.GetMaxUnackedResults() != 5000 {
		t.Errorf("result_retention (want an explicit 0s), max_unacked_results = %v, %d", cfg.GetResultRetention(), cfg.GetMaxUnackedResults())
	}
	if cfg.GetDoneRetention().AsDuration() != 90*time.Minute || cfg.GetRefreshAfter().AsDuration() != 24*time.Hour {
		t.Errorf("done_retention, refresh_after = %v, %v; want 90m, 24h", cfg.GetDoneRetention(), cfg.GetRefreshAfter())
	}
	if cfg.GetUnackedResultRetention() != nil {
		t.Errorf("unacked_result_retention reached the config unset: %v", cfg.GetUnackedResultRetention())
	}
	if cfg.GetReleaseGrace() != nil || cfg.GetMaxBucketsPerAcquire() != 0 {
		t.Errorf("unset flags reached the config: %v", cfg)
	}
	if !strings.Contains(out, "bucket_size") || !strings.Contains(out, "30m0s") {
		t.Errorf("table output lacks the config:\n%s", out)
	}
}

func TestWrites_GenerateDistinctRequestIDs(t *testing.T) {
	f := &fakeServer{}
	addr := startFake(t, f)
	mustRun(t, nil, "", "--addr", addr, "service", "create", "a", "--kind", "dmcheck")
	mustRun(t, nil, "", "--addr", addr, "service", "create", "b", "--kind", "dmcheck")
	id1, id2 := f.creates[0].GetRequestId(), f.creates[1].GetRequestId()
	if id1 == "" || id1 == id2 {
		t.Errorf("request ids %q, %q: want distinct, non-empty", id1, id2)
	}
}

func TestAuth_AdminTokenForOwnerAndWorkerSecretForWorker(t *testing.T) {
	const (
		list    = "/ration.v1.OwnerService/ListServices"
		acquire = "/ration.v1.WorkerService/Acquire"
		status  = "/ration.v1.ClusterService/Status"
	)
	t.Run("flags", func(t *testing.T) {
		f := &fakeServer{}
		addr := startFake(t, f)
		auth := []string{"--addr", addr, "--token", "tok", "--worker-secret", "sec"}
		mustRun(t, nil, "", append(auth, "service", "list")...)
		mustRun(t, nil, "", append(auth, "worker", "acquire", "svc", "w1", "-n", "3")...)
		mustRun(t, nil, "", append(auth, "cluster", "status")...)
		if got := f.auth[list]; !slices.Equal(got, []string{"Bearer tok"}) {
			t.Errorf("ListServices Authorization = %q, want Bearer tok", got)
		}
		if got := f.auth[acquire]; !slices.Equal(got, []string{"Bearer sec"}) {
			t.Errorf("Acquire Authorization = %q, want Bearer sec", got)
		}
		if got := f.auth[status]; !slices.Equal(got, []string{"Bearer tok"}) {
			t.Errorf("Status Authorization = %q, want Bearer tok", got)
		}
		if got := f.acquires[0]; got.GetMaxBuckets() != 3 || got.GetWorkerId() != "w1" || got.GetService() != "svc" {
			t.Errorf("Acquire request = %v", got)
		}
	})
	t.Run("environment", func(t *testing.T) {
		f := &fakeServer{}
		addr := startFake(t, f)
		env := map[string]string{envAddr: addr, envToken: "envtok", envWorkerSecret: "envsec"}
		mustRun(t, env, "", "service", "list")
		mustRun(t, env, "", "worker", "acquire", "svc", "w1")
		if got := f.auth[list]; !slices.Equal(got, []string{"Bearer envtok"}) {
			t.Errorf("ListServices Authorization = %q, want Bearer envtok", got)
		}
		if got := f.auth[acquire]; !slices.Equal(got, []string{"Bearer envsec"}) {
			t.Errorf("Acquire Authorization = %q, want Bearer envsec", got)
		}
	})
	t.Run("none", func(t *testing.T) {
		f := &fakeServer{}
		addr := startFake(t, f)
		mustRun(t, nil, "", "--addr", addr, "service", "list")
		mustRun(t, nil, "", "--addr", addr, "worker", "acquire", "svc", "w1")
		if got := f.auth[list]; !slices.Equal(got, []string{""}) {
			t.Errorf("ListServices Authorization = %q, want none", got)
		}
		if got := f.auth[acquire]; !slices.Equal(got, []string{""}) {
			t.Errorf("Acquire Authorization = %q, want none", got)
		}
	})
}

func TestItemsAdd_SendsChunksWithDistinctRequestIDs(t *testing.T) {
	f := &fakeServer{}
	addr := startFake(t, f)
	// Three ids as arguments, two from stdin around blank lines.
	out := mustRun(t, nil, "\nd\n\n  e  \n\n", "--addr", addr, "items", "add", "svc", "a", "b", "c",
		"--file", "-", "--chunk", "2", "--priority", "5", "--rerun")

	if len(f.adds) != 3 {
		t.Fatalf("AddItems calls = %d, want 3", len(f.adds))
	}
	want := [][]string{{"a", "b"}, {"c", "d"}, {"e"}}
	ids := map[string]bool{}
	for i, req := range f.adds {
		if !slices.Equal(req.GetItems(), want[i]) {
			t.Errorf("chunk %d items = %q, want %q", i, req.GetItems(), want[i])
		}
		if req.GetService() != "svc" || req.GetPriority() != 5 || !req.GetRerun() {
			t.Errorf("chunk %d = %v", i, req)
		}
		if req.GetRequestId() == "" || ids[req.GetRequestId()] {
			t.Errorf("chunk %d request id %q is empty or repeated", i, req.GetRequestId())
		}
		ids[req.GetRequestId()] = true
	}
	// Sums: added 2+2+1, skipped 1 each, buckets 1 each, 3 calls.
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if len(lines) != 2 || strings.Join(strings.Fields(lines[1]), " ") != "5 3 0 3 3" {
		t.Errorf("output:\n%s\nwant ADDED..CALLS = 5 3 0 3 3", out)
	}
}

func TestItemsAdd_RequestIDIsAPrefix(t *testing.T) {
	f := &fakeServer{}
	addr := startFake(t, f)
	mustRun(t, nil, "", "--addr", addr, "items", "add", "svc", "a", "b", "c", "--chunk", "2", "--request-id", "load-7")
	var got []string
	for _, req := range f.adds {
		got = append(got, req.GetRequestId())
	}
	if want := []string{"load-7-1", "load-7-2"}; !slices.Equal(got, want) {
		t.Errorf("request ids = %q, want %q", got, want)
	}
}

func TestItemsAdd_NoIDsIsAnError(t *testing.T) {
	f := &fakeServer{}
	addr := startFake(t, f)
	r := runCLI(t, nil, "\n\n", "--addr", addr, "items", "add", "svc", "--file", "-")
	if r.code != 1 || !strings.Contains(r.stderr, "no item ids") || len(f.adds) != 0 {
		t.Errorf("exit %d, stderr %q, calls %d", r.code, r.stderr, len(f.adds))
	}
}

func TestFailover_MovesPastDeadAddress(t *testing.T) {
	f := &fakeServer{}
	addr := startFake(t, f)
	out := mustRun(t, nil, "", "--addr", deadAddr(t)+","+addr, "cluster", "status")
	if !strings.Contains(out, "n1") || !strings.Contains(out, "*") {
		t.Errorf("status output lacks the marked leader:\n%s", out)
	}
}

func TestFailover_MovesPastUnavailable(t *testing.T) {
	down := &fakeServer{statusErr: connect.NewError(connect.CodeUnavailable, errors.New("no leader"))}
	up := &fakeServer{}
	mustRun(t, nil, "", "--addr", startFake(t, down)+","+startFake(t, up), "cluster", "status")
	if len(down.auth) != 1 || len(up.auth) != 1 {
		t.Errorf("calls: unavailable node %d, healthy node %d; want 1, 1", len(down.auth), len(up.auth))
	}
}

func TestFailover_ReportsLastError(t *testing.T) {
	r := runCLI(t, nil, "", "--addr", deadAddr(t)+","+deadAddr(t), "cluster", "status")
	if r.code != 1 || !strings.HasPrefix(r.stderr, "rationctl: unavailable: ") {
		t.Errorf("exit %d, stderr %q; want 1 and an unavailable error", r.code, r.stderr)
	}
}

func TestErrors_StopFailoverAndPrintReason(t *testing.T) {
	err := connect.NewError(connect.CodeNotFound, errors.New(`service "x" not found`))
	detail, derr := connect.NewErrorDetail(&rationv1.ErrorDetail{Reason: "SERVICE_NOT_FOUND", ServedBy: "n1"})
	if derr != nil {
		t.Fatal(derr)
	}
	err.AddDetail(detail)
	first := &fakeServer{statusErr: err}
	second := &fakeServer{}
	r := runCLI(t, nil, "", "--addr", startFake(t, first)+","+startFake(t, second), "cluster", "status")
	if r.code != 1 {
		t.Fatalf("exit %d, want 1", r.code)
	}
	want := `rationctl: not_found: service "x" not found (reason=SERVICE_NOT_FOUND served-by=n1)` + "\n"
	if r.stderr != want {
		t.Errorf("stderr = %q, want %q", r.stderr, want)
	}
	if len(second.auth) != 0 {
		t.Errorf("NotFound moved on to the next address")
	}
}

func TestOutput_JSONParsesBack(t *testing.T) {
	f := &fakeServer{services: []*rationv1.ServiceInfo{{
		Name: "dm", Kind: "dmcheck", State: rationv1.ServiceState_SERVICE_STATE_ACTIVE,
		Config: &rationv1.ServiceConfig{BucketSize: 180},
		Items:  &rationv1.ItemCounts{Pending: 10, Done: 4},
	}}}
	addr := startFake(t, f)

	out := mustRun(t, nil, "", "--addr", addr, "-o", "json", "service", "list")
	var got rationv1.ListServicesResponse
	if err := protojson.Unmarshal([]byte(out), &got); err != nil {
		t.Fatalf("output does not parse: %v\n%s", err, out)
	}
	want := &rationv1.ListServicesResponse{Services: f.services, Read: &rationv1.ReadInfo{Index: 42, ServedBy: "n1"}}
	if !proto.Equal(&got, want) {
		t.Errorf("parsed %v, want %v", &got, want)
	}
	if !strings.Contains(out, `"bucket_size"`) || !strings.Contains(out, `"served_by"`) {
		t.Errorf("want snake_case field names:\n%s", out)
	}
	if !regexp.MustCompile(`"leased":\s*"0"`).MatchString(out) { // protojson varies its spacing
		t.Errorf("want zero values written out, as the API writes them:\n%s", out)
	}

	table := mustRun(t, nil, "", "--addr", addr, "service", "list")
	lines := strings.Split(strings.TrimSpace(table), "\n")
	if len(lines) != 2 ||
		strings.Join(strings.Fields(lines[0]), " ") != "NAME KIND STATE PENDING LEASED DONE QUARANTINED" ||
		strings.Join(strings.Fields(lines[1]), " ") != "dm dmcheck active 10 0 4 0" {
		t.Errorf("table:\n%s", table)
	}
}

func TestConsistency_StaleReachesRequest(t *testing.T) {
	var got rationv1.Consistency
	f := &consistencyFake{seen: &got}
	mux := http.NewServeMux()
	mux.Handle(rationv1connect.NewOwnerServiceHandler(f))
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	mustRun(t, nil, "", "--addr", srv.URL, "--consistency", "stale", "service", "list")
	if got != rationv1.Consistency_CONSISTENCY_STALE {
		t.Errorf("consistency = %v, want STALE", got)
	}
	r := runCLI(t, nil, "", "--addr", srv.URL, "--consistency", "weak", "service", "list")
	if r.code != 1 || !strings.Contains(r.stderr, "--consistency") {
		t.Errorf("bad --consistency: exit %d, stderr %q", r.code, r.stderr)
	}
}

type consistencyFake struct {
	rationv1connect.UnimplementedOwnerServiceHandler
	seen *rationv1.Consistency
}

func (f *consistencyFake) ListServices(_ context.Context, req *connect.Request[rationv1.ListServicesRequest]) (*connect.Response[rationv1.ListServicesResponse], error) {
	*f.seen = req.Msg.GetConsistency()
	return connect.NewResponse(&rationv1.ListServicesResponse{}), nil
}

func TestSnapshotSave_WritesFileAtomically(t *testing.T) {
	f := &fakeServer{}
	addr := startFake(t, f)
	dir := t.TempDir()
	path := filepath.Join(dir, "backup.snap")
	if err := os.WriteFile(path, []byte("old"), 0o600); err != nil {
		t.Fatal(err)
	}
	out := mustRun(t, nil, "", "--addr", addr, "snapshot", "save", path)
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if string(data) != "snap-shot" {
		t.Errorf("file = %q, want snap-shot", data)
	}
	if !strings.Contains(out, "index 99") {
		t.Errorf("output %q lacks the index", out)
	}
	entries, _ := os.ReadDir(dir)
	if len(entries) != 1 {
		t.Errorf("temporary files left behind: %v", entries)
	}
}

func TestResultsExport_PrintsJSONLines(t *testing.T) {
	f := &fakeServer{}
	addr := startFake(t, f)
	out := mustRun(t, nil, "", "--addr", addr, "-o", "table", "results", "export", "svc", "--after-seq", "4")
	sc := bufio.NewScanner(strings.NewReader(out))
	var seqs []float64
	for sc.Scan() {
		var m map[string]any
		if err := json.Unmarshal(sc.Bytes(), &m); err != nil {
			t.Fatalf("line %q: %v", sc.Text(), err)
		}
		if m["verdict"] != "ok" || m["worker_id"] != "w1" {
			t.Errorf("line %v", m)
		}
		seqs = append(seqs, m["seq"].(float64))
	}
	if !slices.Equal(seqs, []float64{5, 6}) {
		t.Errorf("seqs = %v, want [5 6]", seqs)
	}
}

// TestCommands_ReachEveryRPC runs one command per RPC against a server that
// implements none of them and checks that every method of the four services
// was called.
func TestCommands_ReachEveryRPC(t *testing.T) {
	f := &fakeServer{}
	addr := startFake(t, f)
	dir := t.TempDir()
	snap := filepath.Join(dir, "in.snap")
	if err := os.WriteFile(snap, []byte("data"), 0o600); err != nil {
		t.Fatal(err)
	}
	commands := [][]string{
		{"service", "create", "s", "--kind", "generic"},
		{"service", "update", "s", "--replace", "--bucket-size", "3"},
		{"service", "get", "s"},
		{"service", "list"},
		{"service", "revoke", "s", "--reason", "r"},
		{"service", "reinstate", "s"},
		{"service", "rotate-token", "s"},
		{"service", "delete", "s", "--force"},
		{"items", "add", "s", "a"},
		{"items", "list", "s", "--state", "done"},
		{"canaries", "add", "s", "c1=ok"},
		{"results", "export", "s"},
		{"results", "ack", "s", "7"},
		{"worker", "register", "s", "w", "--name", "n"},
		{"worker", "unregister", "s", "w"},
		{"worker", "check", "s"},
		{"worker", "acquire", "s", "w"},
		{"worker", "heartbeat", "w", "1:2", "3:4"},
		{"worker", "submit", "w", "1", "2", "--verdict", "ok", "--items", "a,b"},
		{"worker", "release", "w", "1", "2"},
		{"worker", "buckets", "s", "w"},
		{"worker", "deactivate", "s", "w"},
		{"worker", "reactivate", "s", "w"},
		{"worker", "revert", "s", "w", "--since", "2025-01-02T15:04:05Z"},
		{"stats", "s", "--worker", "w"},
		{"workers", "s"},
		{"buckets", "s", "--state", "dead", "--holder", "w"},
		{"activity", "--service", "s", "--since", "2025-01-02T15:04:05Z"},
		{"activity", "--follow", "--tail", "0"},
		{"explain", "s", "--bucket", "7"},
		{"cluster", "status"},
		{"cluster", "join", "n4", "127.0.0.1:7004", "127.0.0.1:7074"},
		{"cluster", "remove", "n4"},
		{"cluster", "transfer", "n2"},
		{"snapshot", "save", filepath.Join(dir, "out.snap")},
		{"snapshot", "restore", snap},
	}
	for _, c := range commands {
		runCLI(t, nil, "", append([]string{"--addr", addr}, c...)...)
	}
	called := map[string]bool{}
	for _, p := range f.calls {
		called[p] = true
	}
	for _, fd := range []protoreflect.FileDescriptor{
		rationv1.File_ration_v1_owner_proto, rationv1.File_ration_v1_worker_proto,
		rationv1.File_ration_v1_insight_proto, rationv1.File_ration_v1_cluster_proto,
	} {
		for i := 0; i < fd.Services().Len(); i++ {
			sd := fd.Services().Get(i)
			for j := 0; j < sd.Methods().Len(); j++ {
				p := "/" + string(sd.FullName()) + "/" + string(sd.Methods().Get(j).Name())
				if !called[p] {
					t.Errorf("no command called %s", p)
				}
			}
		}
	}
}

func TestHeartbeat_ParsesBucketRefs(t *testing.T) {
	ref, err := parseBucketRef("12:3")
	if err != nil || ref.GetId() != 12 || ref.GetEpoch() != 3 {
		t.Errorf("parseBucketRef(12:3) = %v, %v", ref, err)
	}
	for _, bad := range []string{"12", "x:1", "1:y", ":"} {
		if _, err := parseBucketRef(bad); err == nil {
			t.Errorf("parseBucketRef(%q) succeeded", bad)
		}
	}
}

func TestSubmit_ReadsResultsFile(t *testing.T) {
	a := &app{stdin: strings.NewReader(`[{"item":"a","verdict":"ok","payload":"p"},{"item":"b","verdict":"x","payload":[1,2]},{"item":"c","verdict":"ok"}]`)}
	got, err := a.readResults("-")
	if err != nil {
		t.Fatal(err)
	}
	want := []*rationv1.ResultInput{
		{Item: "a", Verdict: "ok", Payload: "p"},
		{Item: "b", Verdict: "x", Payload: "[1,2]"},
		{Item: "c", Verdict: "ok"},
	}
	if len(got) != len(want) {
		t.Fatalf("got %d results, want %d", len(got), len(want))
	}
	for i := range want {
		if !proto.Equal(got[i], want[i]) {
			t.Errorf("result %d = %v, want %v", i, got[i], want[i])
		}
	}
}

// TestClusterStatus_WaitsForALeader: right after a start, a node knows no
// leader; cluster status waits --retry-for for one, then fails saying so
// rather than printing term 0 and exiting 0.
func TestClusterStatus_WaitsForALeader(t *testing.T) {
	f := &fakeServer{noLeader: true}
	start := time.Now()
	r := runCLI(t, nil, "", "--addr", startFake(t, f), "--retry-for", "300ms", "cluster", "status")
	if r.code == 0 || !strings.Contains(r.stderr, "no leader yet: node n1 is Follower in term 0 with 0 members") {
		t.Fatalf("exit %d, stderr %q", r.code, r.stderr)
	}
	if took := time.Since(start); took < 300*time.Millisecond {
		t.Errorf("gave up after %s, before --retry-for", took)
	}
}

// TestClusterStatus_Ready: with --ready, status fails unless the node is
// ready, saying why: a health check for a container.
func TestClusterStatus_Ready(t *testing.T) {
	f := &fakeServer{notReady: "lagging 5000 entries behind the leader"}
	addr := startFake(t, f)
	if r := runCLI(t, nil, "", "--addr", addr, "--retry-for", "200ms", "cluster", "status"); r.code != 0 {
		t.Fatalf("without --ready: exit %d, stderr %q", r.code, r.stderr)
	}
	r := runCLI(t, nil, "", "--addr", addr, "--retry-for", "200ms", "cluster", "status", "--ready")
	if r.code == 0 || !strings.Contains(r.stderr, "node n2 is not ready: lagging 5000 entries behind the leader") {
		t.Fatalf("--ready on a node not ready: exit %d, stderr %q", r.code, r.stderr)
	}
	f.notReady = ""
	if r := runCLI(t, nil, "", "--addr", addr, "cluster", "status", "--ready"); r.code != 0 {
		t.Fatalf("--ready on a ready node: exit %d, stderr %q", r.code, r.stderr)
	}
}

// TestCredentialHint: a refusal for want of a credential tells how to give
// rationctl one (the server's message names the HTTP header only).
func TestCredentialHint(t *testing.T) {
	var buf bytes.Buffer
	err := connect.NewError(connect.CodeUnauthenticated, errors.New("worker calls need the worker's secret: Authorization: Bearer <secret>"))
	if d, derr := connect.NewErrorDetail(&rationv1.ErrorDetail{Reason: "NO_CREDENTIAL", ServedBy: "n1"}); derr == nil {
		err.AddDetail(d)
	}
	printError(&buf, err)
	if !strings.Contains(buf.String(), "--worker-secret (or RATION_WORKER_SECRET)") {
		t.Errorf("no hint: %q", buf.String())
	}
	buf.Reset()
	printError(&buf, connect.NewError(connect.CodeNotFound, errors.New("service not found")))
	if strings.Contains(buf.String(), "--worker-secret") {
		t.Errorf("a hint where none is due: %q", buf.String())
	}
}
