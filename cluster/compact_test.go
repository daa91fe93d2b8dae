package cluster_test

import (
	"fmt"
	"testing"
	"time"

	rationv1 "github.com/rationhq/ration/api/ration/v1"
	"github.com/rationhq/ration/cluster"
	"github.com/rationhq/ration/cluster/clustertest"
)

// With entry counts that never trigger Raft's own snapshots, the log is
// still compacted once it holds SnapshotLogBytes, and a snapshot leaves
// behind about TrailingLogBytes of entries, not TrailingLogs.
func TestCluster_LogCompactedByBytes(t *testing.T) {
	const logBytes, trailBytes = 256 << 10, 64 << 10 // 64 and 16 entries of ~4 KiB
	c := clustertest.New(t, 1, clustertest.Options{Config: func(_ int, cfg *cluster.Config) {
		cfg.SnapshotThreshold = 1 << 40
		cfg.SnapshotInterval = time.Hour
		cfg.TrailingLogs = 100000
		cfg.SnapshotLogBytes = logBytes
		cfg.TrailingLogBytes = trailBytes
	}})
	l := c.Leader()
	setupService(t, l, &rationv1.ServiceConfig{})
	// 400 entries of about 4 KiB: 1.6 MiB, six times the limit. The same
	// ids each time, so the state (and each snapshot) stays small and the
	// limit is SnapshotLogBytes, not the snapshot's size.
	items := make([]string, 200)
	for j := range items {
		items[j] = fmt.Sprintf("item-%05d-%03d", 0, j)
	}
	for range 400 {
		apply(t, l, &rationv1.AddItemsRequest{Service: "dm", Items: items}, "")
		time.Sleep(2 * time.Millisecond) // spread over several checks
	}
	clustertest.WaitFor(t, 20*time.Second, func() error {
		s := l.LogSize()
		if s.First <= 1 {
			return fmt.Errorf("log not compacted: %+v", s)
		}
		// 64 KiB of 4 KiB entries is 16, below the floor of 64.
		if s.TrailingLogs != 64 {
			return fmt.Errorf("trailing logs not set from the entry size: %+v", s)
		}
		// What stays is the trailing entries and what came since the
		// snapshot, less than the limit: nowhere near the 400 written.
		if kept := s.Last - s.First + 1; kept > 64+logBytes/4096+16 {
			return fmt.Errorf("%d entries kept: %+v", kept, s)
		}
		return nil
	})
	t.Logf("log after the load: %+v", l.LogSize())
}

// TestCluster_RestartCountsTheLogTail: a node restarted with a long log
// after its snapshot counts it, and snapshots without waiting for as much
// again, so the next restart replays little.
func TestCluster_RestartCountsTheLogTail(t *testing.T) {
	const logBytes = 256 << 10
	c := clustertest.New(t, 1, clustertest.Options{Config: func(_ int, cfg *cluster.Config) {
		cfg.SnapshotThreshold = 1 << 40
		cfg.SnapshotInterval = time.Hour
		cfg.SnapshotLogBytes = 0 // no compaction by bytes until the restart
	}})
	l := c.Leader()
	setupService(t, l, &rationv1.ServiceConfig{})
	items := make([]string, 200)
	for j := range items {
		items[j] = fmt.Sprintf("item-%05d-%03d", 0, j)
	}
	for range 100 { // about 400 KiB of log
		apply(t, l, &rationv1.AddItemsRequest{Service: "dm", Items: items}, "")
	}
	c.Kill(0)
	n := c.RestartWith(0, func(cfg *cluster.Config) { cfg.SnapshotLogBytes, cfg.TrailingLogBytes = logBytes, 64<<10 })
	clustertest.WaitFor(t, 20*time.Second, func() error {
		if s := n.LogSize(); s.First <= 1 {
			return fmt.Errorf("the log written before the restart was not counted: %+v", s)
		}
		return nil
	})
}
