package cluster_test

import (
	"net"
	"strings"
	"testing"

	rationv1 "github.com/rationhq/ration/api/ration/v1"
	"github.com/rationhq/ration/cluster"
	"github.com/rationhq/ration/cluster/clustertest"
)

// freePort returns a port that was free on 127.0.0.1 a moment ago.
func freePort(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	_, port, _ := net.SplitHostPort(ln.Addr().String())
	return port
}

// TestCluster_AdvertisedHostNames: nodes that advertise a host name are
// members under that name, and reach each other by it (elections,
// replication, a restarted node catching up).
func TestCluster_AdvertisedHostNames(t *testing.T) {
	ports := []string{freePort(t), freePort(t), freePort(t)}
	c := clustertest.New(t, 3, clustertest.Options{Config: func(i int, cfg *cluster.Config) {
		cfg.RaftAddr = "127.0.0.1:" + ports[i]
		cfg.AdvertiseRaft = "localhost:" + ports[i]
	}})
	l := c.Leader()
	for _, m := range l.Members() {
		if !strings.HasPrefix(m.RaftAddress, "localhost:") {
			t.Fatalf("member %s advertises %s, want localhost:PORT", m.ID, m.RaftAddress)
		}
	}
	setupService(t, l, &rationv1.ServiceConfig{BucketSize: 1})
	old := c.Index(l)
	c.Kill(old)
	nl := c.WaitForNewLeader(l.ID())
	apply(t, nl, &rationv1.AddItemsRequest{Service: "dm", Items: []string{"a"}}, "")
	c.RestartWith(old, func(cfg *cluster.Config) { cfg.RaftAddr = "127.0.0.1:" + ports[old] })
	c.EnsureSame()
	if got := c.Nodes[old].RaftAddr(); got != "localhost:"+ports[old] {
		t.Fatalf("restarted node advertises %s", got)
	}
}

func TestConfig_AdvertiseRaft(t *testing.T) {
	for _, tc := range []struct {
		addr string
		want string
	}{
		{"n1:7071", ""},
		{"10.0.0.5:7071", ""},
		{"[fd00::1]:7071", ""},
		{"n1", "missing port"},
		{":7071", "give a host"},
		{"0.0.0.0:7071", "give a host"},
		{"[::]:7071", "give a host"},
		{"n1:0", "port must be"},
		{"n1:http", "port must be"},
		{"n1:70000", "port must be"},
	} {
		cfg := clustertest.FastConfig(t, "n1")
		cfg.AdvertiseRaft = tc.addr
		err := cfg.Validate()
		if tc.want == "" && err != nil || tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)) {
			t.Errorf("AdvertiseRaft %q: %v, want %q", tc.addr, err, tc.want)
		}
	}
	// Listening on every interface needs an address to advertise.
	cfg := clustertest.FastConfig(t, "n1")
	cfg.Bootstrap = true
	cfg.RaftAddr = "0.0.0.0:0"
	if n, err := cluster.New(cfg); err == nil || !strings.Contains(err.Error(), "cannot be advertised") {
		if n != nil {
			n.Close()
		}
		t.Fatalf("New on 0.0.0.0 without AdvertiseRaft: %v", err)
	}
}
