// Package servertest starts real ration clusters with their API inside a
// test: n nodes from clustertest, each serving the ration API on its own
// loopback port, all stopped in t.Cleanup.
package servertest

import (
	"io"
	"net"
	"net/http"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/rationhq/ration/cluster"
	"github.com/rationhq/ration/cluster/clustertest"
	"github.com/rationhq/ration/server"
)

// Cluster is a cluster whose nodes serve the API.
type Cluster struct {
	*clustertest.Cluster
	// Addrs are the nodes' API addresses, by node position.
	Addrs []string
}

// Start starts n nodes serving the API; token, if set, is the admin token.
func Start(t testing.TB, n int, token string) *Cluster {
	t.Helper()
	return StartWith(t, n, Options{Token: token})
}

// Options adjusts a cluster started by StartWith.
type Options struct {
	// Token, if set, is the admin token.
	Token string
	// Config, if set, edits node i's config before it starts.
	Config func(i int, c *cluster.Config)
	// Log, if set, receives every node's log (Raft, cluster and server) at
	// trace level, instead of the test log. It must be safe for
	// concurrent use.
	Log io.Writer
	// InMemory starts the one node of a cluster of one in memory
	// (clustertest.Options.InMemory): no files, no Raft network, a quick
	// election. The API is served over loopback as usual.
	InMemory bool
	// Server, if set, edits node i's server config before it starts.
	Server func(i int, c *server.Config)
}

// StartWith starts n nodes serving the API, as opts says.
func StartWith(t testing.TB, n int, opts Options) *Cluster {
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
	// The HTTP servers start first so that joins, which record API
	// addresses, find them; each handler is set once its node exists.
	handlers := make([]*lazyHandler, n)
	for i, ln := range lns {
		handlers[i] = &lazyHandler{}
		srv := &http.Server{Handler: handlers[i], ReadHeaderTimeout: 5 * time.Second}
		go srv.Serve(ln)
		t.Cleanup(func() { srv.Close() })
	}
	c := clustertest.New(t, n, clustertest.Options{InMemory: opts.InMemory, Config: func(i int, cfg *cluster.Config) {
		cfg.APIAddr = addrs[i]
		cfg.ClockOffsetWait = time.Second // the servers measure clock offsets
		if opts.Log != nil {
			cfg.Logger = hclog.New(&hclog.LoggerOptions{Name: cfg.NodeID, Level: hclog.Trace, Output: opts.Log})
		}
		if opts.Config != nil {
			opts.Config(i, cfg)
		}
	}})
	for i, node := range c.Nodes {
		log := c.Config(i).Logger
		if opts.Log == nil {
			log = clustertest.FastConfig(t, node.ID()).Logger
		}
		cfg := server.Config{AdminToken: opts.Token, Logger: log}
		if opts.Server != nil {
			opts.Server(i, &cfg)
		}
		srv := server.New(node, cfg)
		t.Cleanup(srv.Close)
		handlers[i].set(srv.Handler())
	}
	return &Cluster{Cluster: c, Addrs: addrs}
}

// AddrOf returns the API address of node.
func (c *Cluster) AddrOf(node *cluster.Node) string { return c.Addrs[c.Index(node)] }

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
