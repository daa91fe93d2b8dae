package main

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"connectrpc.com/connect"

	rationv1 "github.com/rationhq/ration/api/ration/v1"
	"github.com/rationhq/ration/api/ration/v1/rationv1connect"
)

// callFake answers Status and WatchActivity from its fields and records
// what the calls looked like.
type callFake struct {
	rationv1connect.UnimplementedClusterServiceHandler
	rationv1connect.UnimplementedInsightServiceHandler

	// limited is how many Status calls are refused as rate limited first.
	limited int
	// watch answers the n-th WatchActivity call (from 1).
	watch func(n int, req *rationv1.WatchActivityRequest, s *connect.ServerStream[rationv1.WatchActivityResponse]) error

	mu       sync.Mutex
	statuses int
	watches  int
	timeLeft time.Duration // before the last Status call's deadline
}

func (f *callFake) Status(ctx context.Context, _ *connect.Request[rationv1.StatusRequest]) (*connect.Response[rationv1.StatusResponse], error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.statuses++
	if d, ok := ctx.Deadline(); ok {
		f.timeLeft = time.Until(d)
	}
	if f.statuses <= f.limited {
		err := connect.NewError(connect.CodeResourceExhausted, errors.New("rate limited"))
		err.Meta().Set("Ration-Retry-After-Ms", "100")
		return nil, err
	}
	return connect.NewResponse(&rationv1.StatusResponse{NodeId: "n1", LeaderId: "n1"}), nil
}

// ListActivity answers the tail --follow prints first: records 3 and 4.
func (f *callFake) ListActivity(_ context.Context, req *connect.Request[rationv1.ListActivityRequest]) (*connect.Response[rationv1.ListActivityResponse], error) {
	if !req.Msg.GetNewest() {
		return nil, connect.NewError(connect.CodeInvalidArgument, errors.New("the fake answers the newest records only"))
	}
	return connect.NewResponse(&rationv1.ListActivityResponse{Activity: []*rationv1.ActivityInfo{{Seq: 3, Action: "acquire"}, {Seq: 4, Action: "acquire"}}}), nil
}

func (f *callFake) WatchActivity(_ context.Context, req *connect.Request[rationv1.WatchActivityRequest], s *connect.ServerStream[rationv1.WatchActivityResponse]) error {
	f.mu.Lock()
	f.watches++
	n := f.watches
	f.mu.Unlock()
	return f.watch(n, req.Msg, s)
}

func startCallFake(t *testing.T, f *callFake) string {
	t.Helper()
	mux := http.NewServeMux()
	mux.Handle(rationv1connect.NewClusterServiceHandler(f))
	mux.Handle(rationv1connect.NewInsightServiceHandler(f))
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	return srv.URL
}

func TestTimeout_BoundsEachCallAndZeroDisables(t *testing.T) {
	f := &callFake{}
	addr := startCallFake(t, f)
	mustRun(t, nil, "", "--addr", addr, "--timeout", "3s", "cluster", "status")
	if f.timeLeft > 3*time.Second {
		t.Errorf("--timeout 3s: the call had %v", f.timeLeft)
	}
	// With no --timeout, only the caller's minute bounds the call (not
	// api/client's default 10s).
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	var out, errOut strings.Builder
	if code := run(ctx, []string{"--addr", addr, "--timeout", "0", "cluster", "status"}, func(string) string { return "" },
		strings.NewReader(""), &out, &errOut); code != 0 {
		t.Fatalf("exit %d, stderr %q", code, errOut.String())
	}
	if f.timeLeft < 30*time.Second {
		t.Errorf("--timeout 0: the call had only %v", f.timeLeft)
	}
}

func TestRetryFor_ZeroTriesEachAddressOnce(t *testing.T) {
	start := time.Now()
	r := runCLI(t, nil, "", "--addr", deadAddr(t)+","+deadAddr(t), "--retry-for", "0", "cluster", "status")
	if r.code != 1 || !strings.HasPrefix(r.stderr, "rationctl: unavailable: ") {
		t.Errorf("exit %d, stderr %q; want 1 and an unavailable error", r.code, r.stderr)
	}
	if took := time.Since(start); took > 2*time.Second {
		t.Errorf("took %v with --retry-for 0", took)
	}
}

func TestRateLimit_WaitsAsToldThenRetries(t *testing.T) {
	f := &callFake{limited: 1}
	mustRun(t, nil, "", "--addr", startCallFake(t, f), "cluster", "status")
	if f.statuses != 2 {
		t.Errorf("Status calls = %d, want 2 (refused, then served)", f.statuses)
	}
	// With no time to retry, the refusal is the answer.
	f = &callFake{limited: 1}
	r := runCLI(t, nil, "", "--addr", startCallFake(t, f), "--retry-for", "0", "cluster", "status")
	if r.code != 1 || !strings.HasPrefix(r.stderr, "rationctl: resource_exhausted: rate limited") {
		t.Errorf("exit %d, stderr %q; want the rate limit", r.code, r.stderr)
	}
}

func TestActivityFollow_ResumesAfterABrokenStream(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	resumedAfter := make(chan uint64, 1)
	firstAfter := make(chan uint64, 1)
	f := &callFake{watch: func(n int, req *rationv1.WatchActivityRequest, s *connect.ServerStream[rationv1.WatchActivityResponse]) error {
		if n == 1 {
			firstAfter <- req.GetAfterSeq()
			if err := s.Send(&rationv1.WatchActivityResponse{Activity: []*rationv1.ActivityInfo{{Seq: 5, Action: "submit"}}}); err != nil {
				return err
			}
			return connect.NewError(connect.CodeUnavailable, errors.New("leadership lost"))
		}
		resumedAfter <- req.GetAfterSeq()
		cancel()
		return nil
	}}
	addr := startCallFake(t, f)
	var out, errOut strings.Builder
	code := run(ctx, []string{"--addr", addr, "-o", "json", "activity", "--follow"}, func(string) string { return "" },
		strings.NewReader(""), &out, &errOut)
	if code != 0 {
		t.Fatalf("exit %d, stderr %q", code, errOut.String())
	}
	if got := <-firstAfter; got != 4 {
		t.Errorf("followed after seq %d, want 4: the last record of the tail printed first", got)
	}
	if got := <-resumedAfter; got != 5 {
		t.Errorf("resumed after seq %d, want 5", got)
	}
	if !strings.Contains(out.String(), `"seq":"3"`) || strings.Index(out.String(), `"seq":"4"`) > strings.Index(out.String(), `"seq":"5"`) {
		t.Errorf("the tail (3, 4) is not printed before the stream (5): %q", out.String())
	}
	if !strings.Contains(out.String(), `"seq":"5"`) || !strings.Contains(errOut.String(), "activity stream broke (unavailable), resuming after seq 5") {
		t.Errorf("stdout %q, stderr %q", out.String(), errOut.String())
	}
}

// failWriter fails every write.
type failWriter struct{}

func (failWriter) Write([]byte) (int, error) { return 0, errors.New("broken pipe") }

func TestActivityFollow_PrintErrorEndsTheCommand(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	f := &callFake{watch: func(_ int, _ *rationv1.WatchActivityRequest, s *connect.ServerStream[rationv1.WatchActivityResponse]) error {
		return s.Send(&rationv1.WatchActivityResponse{Activity: []*rationv1.ActivityInfo{{Seq: 1}}})
	}}
	var errOut strings.Builder
	code := run(ctx, []string{"--addr", startCallFake(t, f), "-o", "json", "activity", "--follow", "--tail", "0"}, func(string) string { return "" },
		strings.NewReader(""), failWriter{}, &errOut)
	if code != 1 || !strings.Contains(errOut.String(), "broken pipe") || f.watches != 1 {
		t.Errorf("exit %d, stderr %q, %d watches; want 1, the write error, 1 watch", code, errOut.String(), f.watches)
	}
}
