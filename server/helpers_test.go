package server_test

import (
	"context"
	"crypto/tls"
	"net"
	"net/http"
	"testing"
	"time"

	"connectrpc.com/connect"
	"golang.org/x/net/http2"

	"github.com/rationhq/ration/api/client"
	"github.com/rationhq/ration/api/ration/v1/rationv1connect"
	"github.com/rationhq/ration/cluster"
	"github.com/rationhq/ration/server/servertest"
)

// testCluster is n real nodes, each serving the API on its own loopback port.
type testCluster struct {
	*servertest.Cluster
	addrs []string
	token string
}

func newTestCluster(t *testing.T, n int, token string) *testCluster {
	t.Helper()
	c := servertest.Start(t, n, token)
	return &testCluster{Cluster: c, addrs: c.Addrs, token: token}
}

// newNode starts one node held in memory (servertest.Options.InMemory: no
// files, no Raft network, a quick election), serving the API on its own
// loopback port: for what a single node shows.
func newNode(t *testing.T, token string) *testCluster {
	t.Helper()
	c := servertest.StartWith(t, 1, servertest.Options{Token: token, InMemory: true})
	return &testCluster{Cluster: c, addrs: c.Addrs, token: token}
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
		return append(append([]connect.ClientOption{}, opts...), connect.WithInterceptors(client.Bearer(tok)))
	}
	return clients{
		owner:   rationv1connect.NewOwnerServiceClient(hc, base, withAuth(admin)...),
		worker:  rationv1connect.NewWorkerServiceClient(hc, base, withAuth(secret)...),
		insight: rationv1connect.NewInsightServiceClient(hc, base, withAuth(admin)...),
		cluster: rationv1connect.NewClusterServiceClient(hc, base, withAuth(admin)...),
	}
}

// reasonOf returns the machine-readable reason attached to err.
func reasonOf(err error) string { return client.Reason(err) }

func ctx(t *testing.T) context.Context {
	c, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	t.Cleanup(cancel)
	return c
}

func contextWithTimeout(d time.Duration) (context.Context, context.CancelFunc) {
	return context.WithTimeout(context.Background(), d)
}
