package server_test

import (
	"context"
	"crypto/tls"
	"errors"
	"net"
	"net/http"
	"sync/atomic"
	"testing"
	"time"

	"connectrpc.com/connect"
	"golang.org/x/net/http2"

	rationv1 "github.com/rationhq/ration/api/ration/v1"
	"github.com/rationhq/ration/api/ration/v1/rationv1connect"
	"github.com/rationhq/ration/cluster"
	"github.com/rationhq/ration/cluster/clustertest"
	"github.com/rationhq/ration/server"
)

// testCluster is n real nodes, each serving the API on its own loopback port.
type testCluster struct {
	*clustertest.Cluster
	addrs []string
	token string
}

func newTestCluster(t *testing.T, n int, token string) *testCluster {
	t.Helper()
	lns := make([]net.Listener, n)
	addrs := make([]string, n)
	for i := range lns {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		lns[i], addrs[i] = ln, ln.Addr().String()
	}
	// The servers start first so that joins, which record API addresses,
	// find them; a node's handler is set once the node exists.
	handlers := make([]*lazyHandler, n)
	for i, ln := range lns {
		handlers[i] = &lazyHandler{}
		srv := &http.Server{Handler: handlers[i], ReadHeaderTimeout: 5 * time.Second}
		go srv.Serve(ln)
		t.Cleanup(func() { srv.Close() })
	}
	c := clustertest.New(t, n, clustertest.Options{Config: func(i int, cfg *cluster.Config) {
		cfg.APIAddr = addrs[i]
	}})
	for i, node := range c.Nodes {
		handlers[i].set(server.New(node, server.Config{AdminToken: token, Logger: clustertest.FastConfig(t, node.ID()).Logger}).Handler())
	}
	return &testCluster{Cluster: c, addrs: addrs, token: token}
}

type lazyHandler struct{ h atomic.Pointer[http.Handler] }

func (l *lazyHandler) set(h http.Handler) { l.h.Store(&h) }

func (l *lazyHandler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	h := l.h.Load()
	if h == nil {
		http.Error(w, "starting", http.StatusServiceUnavailable)
		return
	}
	(*h).ServeHTTP(w, r)
}

// addrOf returns the API address of node.
func (c *testCluster) addrOf(node *cluster.Node) string { return c.addrs[c.Index(node)] }

// protocols are the wire protocols every handler test runs over.
var protocols = []struct {
	name string
	opts []connect.ClientOption
	http *http.Client
}{
	{"connect", nil, http.DefaultClient},
	{"grpc", []connect.ClientOption{connect.WithGRPC()}, h2cClient()},
	{"grpcweb", []connect.ClientOption{connect.WithGRPCWeb()}, http.DefaultClient},
}

func h2cClient() *http.Client {
	return &http.Client{Transport: &http2.Transport{AllowHTTP: true,
		DialTLSContext: func(ctx context.Context, network, addr string, _ *tls.Config) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, network, addr)
		}}}
}

// clients for one protocol against one address, with credentials.
type clients struct {
	owner   rationv1connect.OwnerServiceClient
	worker  rationv1connect.WorkerServiceClient
	insight rationv1connect.InsightServiceClient
	cluster rationv1connect.ClusterServiceClient
}

func newClients(hc *http.Client, addr string, opts []connect.ClientOption, admin, secret string) clients {
	base := "http://" + addr
	withAuth := func(tok string) []connect.ClientOption {
		return append(append([]connect.ClientOption{}, opts...), connect.WithInterceptors(bearer(tok)))
	}
	return clients{
		owner:   rationv1connect.NewOwnerServiceClient(hc, base, withAuth(admin)...),
		worker:  rationv1connect.NewWorkerServiceClient(hc, base, withAuth(secret)...),
		insight: rationv1connect.NewInsightServiceClient(hc, base, withAuth(admin)...),
		cluster: rationv1connect.NewClusterServiceClient(hc, base, withAuth(admin)...),
	}
}

type bearer string

func (b bearer) WrapUnary(next connect.UnaryFunc) connect.UnaryFunc {
	return func(ctx context.Context, req connect.AnyRequest) (connect.AnyResponse, error) {
		if b != "" {
			req.Header().Set("Authorization", "Bearer "+string(b))
		}
		return next(ctx, req)
	}
}

func (b bearer) WrapStreamingClient(next connect.StreamingClientFunc) connect.StreamingClientFunc {
	return func(ctx context.Context, spec connect.Spec) connect.StreamingClientConn {
		conn := next(ctx, spec)
		if b != "" {
			conn.RequestHeader().Set("Authorization", "Bearer "+string(b))
		}
		return conn
	}
}

func (b bearer) WrapStreamingHandler(next connect.StreamingHandlerFunc) connect.StreamingHandlerFunc {
	return next
}

// reasonOf returns the machine-readable reason attached to err.
func reasonOf(err error) string {
	var ce *connect.Error
	if !errors.As(err, &ce) {
		return ""
	}
	for _, d := range ce.Details() {
		if v, err := d.Value(); err == nil {
			if ed, ok := v.(*rationv1.ErrorDetail); ok {
				return ed.GetReason()
			}
		}
	}
	return ""
}

func ctx(t *testing.T) context.Context {
	c, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	t.Cleanup(cancel)
	return c
}

func contextWithTimeout(d time.Duration) (context.Context, context.CancelFunc) {
	return context.WithTimeout(context.Background(), d)
}
