package client_test

import (
	"context"
	"errors"
	"net"
	"net/http"
	"testing"
	"time"

	"connectrpc.com/connect"

	"github.com/rationhq/ration/api/client"
	rationv1 "github.com/rationhq/ration/api/ration/v1"
	"github.com/rationhq/ration/cluster/clustertest"
	"github.com/rationhq/ration/server"
)

// startLimited starts a lone node, held in memory, whose server enforces lim.
func startLimited(t *testing.T, lim server.Limits) string {
	t.Helper()
	c := clustertest.New(t, 1, clustertest.Options{InMemory: true})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: server.New(c.Nodes[0], server.Config{Limits: &lim}).Handler(), ReadHeaderTimeout: 5 * time.Second}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	c.Leader()
	return ln.Addr().String()
}

func TestClient_WaitsAsToldWhenRateLimited(t *testing.T) {
	addr := startLimited(t, server.Limits{AcquirePerWorker: server.RateLimit{Rate: 2, Burst: 1}})
	cl, err := client.New(client.Config{Addrs: []string{addr}, WorkerSecret: secret})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	if _, err := cl.CreateService(ctx, &rationv1.CreateServiceRequest{Name: "dm", Kind: "dmcheck"}); err != nil {
		t.Fatal(err)
	}
	if _, err := cl.Register(ctx, &rationv1.RegisterRequest{Service: "dm", WorkerId: "w"}); err != nil {
		t.Fatal(err)
	}
	// A token every 500ms, none saved up: the 2nd and 3rd calls are
	// refused with a hint, and served once the client has waited it out.
	start := time.Now()
	for i := range 3 {
		if _, err := cl.Acquire(ctx, &rationv1.AcquireRequest{Service: "dm", WorkerId: "w"}); err != nil {
			t.Fatalf("acquire %d: %v", i+1, err)
		}
	}
	if took := time.Since(start); took < 900*time.Millisecond {
		t.Fatalf("3 acquires at 2 a second took %v: the client did not wait", took)
	}

	// A hint beyond RetryFor is not waited for: the refusal comes back.
	short, err := client.New(client.Config{Addrs: []string{addr}, WorkerSecret: secret, RetryFor: time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	start = time.Now()
	_, err = short.Acquire(ctx, &rationv1.AcquireRequest{Service: "dm", WorkerId: "w"})
	if _, ok := client.RetryAfter(err); !ok || client.Reason(err) != "RATE_LIMITED" || time.Since(start) > 400*time.Millisecond {
		t.Fatalf("with RetryFor 1ms: %v after %v, want RATE_LIMITED at once", err, time.Since(start))
	}
}

func TestRetryAfter(t *testing.T) {
	hinted := func(h, v string) error {
		e := connect.NewError(connect.CodeResourceExhausted, errors.New("rate limited"))
		e.Meta().Set(h, v)
		return e
	}
	for _, tc := range []struct {
		err  error
		want time.Duration
		ok   bool
	}{
		{hinted("Ration-Retry-After-Ms", "1500"), 1500 * time.Millisecond, true},
		{hinted("Retry-After", "2"), 2 * time.Second, true},
		{hinted("Retry-After", "soon"), 0, false},
		{connect.NewError(connect.CodeResourceExhausted, errors.New("lease limit")), 0, false},
		{connect.NewError(connect.CodeUnavailable, errors.New("no leader")), 0, false},
		{errors.New("plain"), 0, false},
	} {
		if got, ok := client.RetryAfter(tc.err); got != tc.want || ok != tc.ok {
			t.Errorf("RetryAfter(%v) = %v, %v; want %v, %v", tc.err, got, ok, tc.want, tc.ok)
		}
	}
}
