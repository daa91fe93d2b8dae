package cluster_test

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	rationv1 "github.com/rationhq/ration/api/ration/v1"
	"github.com/rationhq/ration/cluster"
	"github.com/rationhq/ration/cluster/clustertest"
	"github.com/rationhq/ration/internal/testcerts"
)

// tlsCluster starts n nodes whose Raft runs under mutual TLS with ca.
func tlsCluster(t *testing.T, n int, ca *testcerts.CA) *clustertest.Cluster {
	t.Helper()
	return clustertest.New(t, n, clustertest.Options{Config: func(i int, c *cluster.Config) {
		c.PeerTLS = ca.PeerTLS(ca.Localhost(t, c.NodeID))
	}})
}

func memberIDs(n *cluster.Node) string {
	var ids []string
	for _, m := range n.Members() {
		ids = append(ids, m.ID)
	}
	return strings.Join(ids, ",")
}

func TestTLS_ClusterReplicatesOverMutualTLS(t *testing.T) {
	c := tlsCluster(t, 3, testcerts.NewCA(t, "peers"))
	l := c.Leader()
	setupService(t, l, &rationv1.ServiceConfig{BucketSize: 10})
	for i := range 5 {
		apply(t, l, &rationv1.AddItemsRequest{Service: "dm", Items: []string{fmt.Sprintf("i%d", i)}}, "")
	}
	c.EnsureSame()
	// Every node learned the cluster id the first node made.
	want := c.Nodes[0].ClusterID()
	if len(want) != 32 {
		t.Fatalf("cluster id %q", want)
	}
	for _, n := range c.Nodes {
		if got := n.ClusterID(); got != want {
			t.Fatalf("%s: cluster id %q, want %q", n.ID(), got, want)
		}
	}
	// A new leader replicates over TLS too.
	c.Kill(c.Index(l))
	l2 := c.WaitForNewLeader(l.ID())
	apply(t, l2, &rationv1.AddItemsRequest{Service: "dm", Items: []string{"after"}}, "")
}

func TestTLS_NodeWithForeignCACannotJoin(t *testing.T) {
	ca := testcerts.NewCA(t, "peers")
	c := tlsCluster(t, 3, ca)
	l := c.Leader()
	before := memberIDs(l)

	other := testcerts.NewCA(t, "other")
	for _, tc := range []struct {
		name string
		tls  *tls.Config
	}{
		// Its certificate is from another CA, and it trusts only that CA.
		{"foreign CA", other.PeerTLS(other.Localhost(t, "rogue"))},
		// It trusts the cluster's CA, but its own certificate is foreign.
		// (The members' refusal of such a client is in tls_internal_test.go.)
		{"foreign certificate", &tls.Config{Certificates: []tls.Certificate{other.Localhost(t, "rogue").TLS}, RootCAs: ca.Pool()}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := clustertest.FastConfig(t, "rogue")
			cfg.PeerTLS = tc.tls
			rogue, err := cluster.New(cfg)
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { rogue.Close() })
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			err = l.Join(ctx, "rogue", rogue.RaftAddr(), "api-rogue")
			if !errors.Is(err, cluster.ErrUnreachable) || !strings.Contains(err.Error(), "certificate") {
				t.Fatalf("join: %v, want %v about a certificate", err, cluster.ErrUnreachable)
			}
			for _, n := range c.Nodes {
				if got := memberIDs(n); got != before {
					t.Fatalf("%s: members %s after the refused join, want %s", n.ID(), got, before)
				}
			}
			if rogue.ClusterID() != "" {
				t.Fatalf("rogue learned cluster id %q", rogue.ClusterID())
			}
		})
	}
}

func TestTLS_PlainNodeCannotJoinTLSCluster(t *testing.T) {
	c := tlsCluster(t, 1, testcerts.NewCA(t, "peers"))
	l := c.Leader()
	plain, err := cluster.New(clustertest.FastConfig(t, "plain"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { plain.Close() })
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := l.Join(ctx, "plain", plain.RaftAddr(), "api-plain"); !errors.Is(err, cluster.ErrUnreachable) {
		t.Fatalf("join of a node without TLS: %v", err)
	}
	if got := memberIDs(l); got != "n1" {
		t.Fatalf("members %s", got)
	}
}

func TestConfig_PeerTLSNeedsCertificateAndCA(t *testing.T) {
	ca := testcerts.NewCA(t, "peers")
	leaf := ca.Localhost(t, "n1")
	for _, tc := range []struct {
		tls  *tls.Config
		want string
	}{
		{&tls.Config{RootCAs: ca.Pool()}, "no certificate"},
		{&tls.Config{Certificates: []tls.Certificate{leaf.TLS}}, "no RootCAs"},
		{ca.PeerTLS(leaf), ""},
	} {
		cfg := clustertest.FastConfig(t, "n1")
		cfg.PeerTLS = tc.tls
		err := cfg.Validate()
		if tc.want == "" && err != nil || tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)) {
			t.Fatalf("Validate: %v, want %q", err, tc.want)
		}
	}
}
