package client_test

import (
	"context"
	"errors"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"connectrpc.com/connect"

	"github.com/rationhq/ration/api/client"
	rationv1 "github.com/rationhq/ration/api/ration/v1"
	"github.com/rationhq/ration/api/ration/v1/rationv1connect"
)

// fake answers ExportResults, Explain and Status from its fields, and
// counts the calls it got.
type fake struct {
	rationv1connect.UnimplementedOwnerServiceHandler
	rationv1connect.UnimplementedInsightServiceHandler
	rationv1connect.UnimplementedClusterServiceHandler

	// sends is how many ExportResults messages to send before failing
	// with failWith (nil: end the stream cleanly).
	sends    int
	failWith error

	mu          sync.Mutex
	calls       int
	hadDeadline bool
	explained   *rationv1.ExplainRequest
	restoreErr  error // what Restore answers
}

func (f *fake) count(ctx context.Context) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls++
	_, f.hadDeadline = ctx.Deadline()
}

func (f *fake) ExportResults(ctx context.Context, _ *connect.Request[rationv1.ExportResultsRequest], s *connect.ServerStream[rationv1.ExportResultsResponse]) error {
	f.count(ctx)
	for i := range f.sends {
		if err := s.Send(&rationv1.ExportResultsResponse{Seq: uint64(i + 1)}); err != nil {
			return err
		}
	}
	return f.failWith
}

func (f *fake) Explain(ctx context.Context, req *connect.Request[rationv1.ExplainRequest]) (*connect.Response[rationv1.ExplainResponse], error) {
	f.count(ctx)
	f.mu.Lock()
	f.explained = req.Msg
	f.mu.Unlock()
	return connect.NewResponse(&rationv1.ExplainResponse{}), nil
}

func (f *fake) Status(ctx context.Context, _ *connect.Request[rationv1.StatusRequest]) (*connect.Response[rationv1.StatusResponse], error) {
	f.count(ctx)
	return connect.NewResponse(&rationv1.StatusResponse{NodeId: "fake"}), nil
}

func (f *fake) Restore(ctx context.Context, _ *connect.Request[rationv1.RestoreRequest]) (*connect.Response[rationv1.RestoreResponse], error) {
	f.count(ctx)
	if f.restoreErr != nil {
		return nil, f.restoreErr
	}
	return connect.NewResponse(&rationv1.RestoreResponse{}), nil
}

func (f *fake) nCalls() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.calls
}

// startFake serves f and returns its base URL (http://host:port).
func startFake(t *testing.T, f *fake) string {
	t.Helper()
	mux := http.NewServeMux()
	mux.Handle(rationv1connect.NewOwnerServiceHandler(f))
	mux.Handle(rationv1connect.NewInsightServiceHandler(f))
	mux.Handle(rationv1connect.NewClusterServiceHandler(f))
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	return srv.URL
}

// deadAddr returns a loopback address nothing listens on.
func deadAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

func mustNew(t *testing.T, cfg client.Config) *client.Client {
	t.Helper()
	c, err := client.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// export runs ExportResults and returns the sequence numbers received.
func export(c *client.Client) ([]uint64, error) {
	var seqs []uint64
	err := c.ExportResults(context.Background(), &rationv1.ExportResultsRequest{Service: "s"},
		func(m *rationv1.ExportResultsResponse) error {
			seqs = append(seqs, m.GetSeq())
			return nil
		})
	return seqs, err
}

func TestClient_StreamFailsOverUntilDataFlows(t *testing.T) {
	unavailable := connect.NewError(connect.CodeUnavailable, errors.New("no leader"))

	t.Run("before the first message", func(t *testing.T) {
		down, up := &fake{failWith: unavailable}, &fake{sends: 2}
		c := mustNew(t, client.Config{Addrs: []string{deadAddr(t), startFake(t, down), startFake(t, up)}, RetryFor: time.Second})
		seqs, err := export(c)
		if err != nil || len(seqs) != 2 {
			t.Fatalf("got %v, %v; want 2 messages from the healthy node", seqs, err)
		}
		if down.nCalls() != 1 || up.nCalls() != 1 {
			t.Errorf("calls: unavailable node %d, healthy node %d; want 1, 1", down.nCalls(), up.nCalls())
		}
	})
	t.Run("after data flowed", func(t *testing.T) {
		broken, other := &fake{sends: 1, failWith: unavailable}, &fake{sends: 2}
		c := mustNew(t, client.Config{Addrs: []string{startFake(t, broken), startFake(t, other)}, RetryFor: time.Second})
		seqs, err := export(c)
		if connect.CodeOf(err) != connect.CodeUnavailable || len(seqs) != 1 {
			t.Fatalf("got %v, %v; want the one message, then Unavailable", seqs, err)
		}
		if other.nCalls() != 0 {
			t.Errorf("a stream that had delivered data was retried on another node")
		}
	})
	t.Run("callback error", func(t *testing.T) {
		first, second := &fake{sends: 2}, &fake{sends: 2}
		c := mustNew(t, client.Config{Addrs: []string{startFake(t, first), startFake(t, second)}})
		stop := errors.New("disk full")
		err := c.ExportResults(context.Background(), &rationv1.ExportResultsRequest{},
			func(*rationv1.ExportResultsResponse) error { return stop })
		if err != stop || second.nCalls() != 0 {
			t.Fatalf("got %v, second node called %d times; want the callback's error as is, no failover", err, second.nCalls())
		}
	})
}

func TestClient_StreamsHaveNoCallTimeout(t *testing.T) {
	f := &fake{sends: 1}
	c := mustNew(t, client.Config{Addrs: []string{startFake(t, f)}, CallTimeout: time.Minute})
	if _, err := export(c); err != nil {
		t.Fatal(err)
	}
	if f.hadDeadline {
		t.Errorf("the stream carried a deadline")
	}
}

func TestConfig_NegativeCallTimeoutSendsNoDeadline(t *testing.T) {
	f := &fake{}
	addr := startFake(t, f)
	for _, tc := range []struct {
		timeout time.Duration
		want    bool
	}{{0, true}, {time.Minute, true}, {-1, false}} {
		c := mustNew(t, client.Config{Addrs: []string{addr}, CallTimeout: tc.timeout})
		if _, err := c.Status(context.Background(), &rationv1.StatusRequest{}); err != nil {
			t.Fatal(err)
		}
		if f.hadDeadline != tc.want {
			t.Errorf("CallTimeout %v: deadline %v, want %v", tc.timeout, f.hadDeadline, tc.want)
		}
	}
}

func TestConfig_NegativeRetryForTriesEachNodeOnce(t *testing.T) {
	c := mustNew(t, client.Config{Addrs: []string{deadAddr(t), deadAddr(t)}, RetryFor: -1})
	start := time.Now()
	_, err := c.Status(context.Background(), &rationv1.StatusRequest{})
	if connect.CodeOf(err) != connect.CodeUnavailable || strings.HasPrefix(err.Error(), "gave up") {
		t.Fatalf("got %v; want the last Unavailable as is", err)
	}
	if took := time.Since(start); took > time.Second {
		t.Errorf("took %v: RetryFor -1 backed off", took)
	}
}

func TestClient_ExplainKeepsItsSubject(t *testing.T) {
	f := &fake{}
	c := mustNew(t, client.Config{Addrs: []string{startFake(t, f)}})
	if _, err := c.Explain(context.Background(), &rationv1.ExplainRequest{Service: "s",
		Subject: &rationv1.ExplainRequest_BucketId{BucketId: 7}}); err != nil {
		t.Fatal(err)
	}
	if f.explained.GetBucketId() != 7 || f.explained.GetRequestId() != "" {
		t.Errorf("server saw %v; want bucket 7 and no request id", f.explained)
	}
}

// Restore fails over only past nodes it cannot reach: a restore that took
// effect and is repeated would undo the writes made in between.
func TestClient_RestoreIsNotRepeated(t *testing.T) {
	first, second := &fake{restoreErr: connect.NewError(connect.CodeUnavailable, errors.New("leadership lost"))}, &fake{}
	c := mustNew(t, client.Config{Addrs: []string{deadAddr(t), startFake(t, first), startFake(t, second)}, RetryFor: time.Second})
	_, err := c.Restore(context.Background(), &rationv1.RestoreRequest{Data: []byte("snap")})
	if connect.CodeOf(err) != connect.CodeUnavailable {
		t.Fatalf("got %v; want the first reachable node's Unavailable", err)
	}
	if first.nCalls() != 1 || second.nCalls() != 0 {
		t.Errorf("calls: first reachable node %d, next node %d; want 1, 0", first.nCalls(), second.nCalls())
	}
	if _, err := c.Restore(context.Background(), &rationv1.RestoreRequest{}); connect.CodeOf(err) != connect.CodeUnavailable {
		t.Fatalf("second restore: %v", err)
	}
	ok := &fake{}
	c = mustNew(t, client.Config{Addrs: []string{deadAddr(t), startFake(t, ok)}, RetryFor: time.Second})
	if _, err := c.Restore(context.Background(), &rationv1.RestoreRequest{}); err != nil || ok.nCalls() != 1 {
		t.Fatalf("past an unreachable node: %v, %d calls", err, ok.nCalls())
	}
}
