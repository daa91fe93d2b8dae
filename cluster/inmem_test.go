package cluster_test

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	statev1 "github.com/rationhq/ration/api/ration/state/v1"
	rationv1 "github.com/rationhq/ration/api/ration/v1"
	"github.com/rationhq/ration/cluster"
	"github.com/rationhq/ration/cluster/clustertest"
)

// An in-memory node is the real node without files or network: it applies
// commands, concurrent ones through group commit, heartbeats, serves read
// indexes and snapshots, and leaves nothing on disk.
func TestCluster_InMemory(t *testing.T) {
	t.Chdir(t.TempDir()) // where a relative path would land
	wd, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	c := clustertest.New(t, 1, clustertest.Options{InMemory: true})
	l := c.Leader()
	t.Logf("in-memory node led after %s", time.Since(start))
	if cfg := c.Config(0); !cfg.InMemory || cfg.DataDir != "" {
		t.Fatalf("config: InMemory %v, DataDir %q", cfg.InMemory, cfg.DataDir)
	}
	setupService(t, l, &rationv1.ServiceConfig{BucketSize: 1})
	var wg sync.WaitGroup
	for i := range 20 {
		wg.Go(func() {
			if _, err := tryApply(l, &rationv1.AddItemsRequest{Service: "dm", Items: []string{fmt.Sprintf("i%d", i)}}, ""); err != nil {
				t.Error(err)
			}
		})
	}
	wg.Wait()
	b := apply(t, l, &rationv1.AcquireRequest{Service: "dm", WorkerId: "w1"}, "w1").GetAcquire().GetBuckets()[0]
	res, err := l.Heartbeat(context.Background(), &statev1.HeartbeatEntry{Credential: secret("w1"),
		Request: &rationv1.HeartbeatRequest{WorkerId: "w1", Buckets: []*rationv1.BucketRef{{Id: b.Id, Epoch: b.Lease.Epoch}}}})
	if err != nil || res.GetHeartbeatEntry().GetBuckets()[0].GetLease() == nil {
		t.Fatalf("heartbeat: %v %v", res, err)
	}

	var idx uint64
	clustertest.WaitFor(t, 5*time.Second, func() (err error) {
		idx, err = l.ReadIndex(context.Background())
		return err
	})
	st, err := l.WaitApplied(context.Background(), idx)
	if err != nil {
		t.Fatal(err)
	}
	if s, ok := st.Service("dm"); !ok || s.Items[rationv1.ItemState_ITEM_STATE_PENDING] != 19 || s.Items[rationv1.ItemState_ITEM_STATE_LEASED] != 1 {
		t.Fatalf("service after the writes: %+v", s)
	}
	if _, rc, err := l.Snapshot(); err != nil {
		t.Fatal(err)
	} else {
		rc.Close()
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := l.Join(ctx, "n2", "127.0.0.1:1", "api-n2"); !errors.Is(err, cluster.ErrUnreachable) {
		t.Fatalf("join to an in-memory node: %v", err)
	}

	c.Close()
	if files, err := os.ReadDir(wd); err != nil || len(files) != 0 {
		t.Fatalf("the in-memory node left %v (%v)", files, err)
	}
}

func TestConfig_InMemoryRefusals(t *testing.T) {
	for _, tc := range []struct {
		name string
		edit func(*cluster.Config)
	}{
		{"no Bootstrap", func(c *cluster.Config) { c.Bootstrap = false }},
		{"DataDir", func(c *cluster.Config) { c.DataDir = t.TempDir() }},
		{"PeerTLS", func(c *cluster.Config) { c.PeerTLS = &tls.Config{} }},
		{"PeerDialAddrs", func(c *cluster.Config) { c.PeerDialAddrs = map[string]string{"n2": "127.0.0.1:1"} }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := cluster.DefaultConfig()
			cfg.NodeID, cfg.InMemory, cfg.Bootstrap = "n1", true, true
			tc.edit(&cfg)
			err := cfg.Validate()
			if err == nil || !strings.Contains(err.Error(), "InMemory") {
				t.Fatalf("Validate: %v", err)
			}
		})
	}
	cfg := cluster.DefaultConfig()
	cfg.NodeID, cfg.InMemory, cfg.Bootstrap = "n1", true, true
	if err := cfg.Validate(); err != nil {
		t.Fatalf("a valid in-memory config: %v", err)
	}
}
