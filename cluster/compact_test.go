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
	const logBytes, trailBytes = 256 << 10, 64 << 10
	c := clustertest.New(t, 1, clustertest.Options{Config: func(_ int, cfg *cluster.Config) {
		cfg.SnapshotThreshold = 1 << 40
		cfg.SnapshotInterval = time.Hour
		cfg.TrailingLogs = 100000
		cfg.SnapshotLogBytes = logBytes
		cfg.TrailingLogBytes = trailBytes
	}})
	l := c.Leader()
	setupService(t, l, &rationv1.ServiceConfig{})
	// 400 entries of about 4 KiB: 1.6 MiB, some six times the limit.
	items := make([]string, 200)
	for i := range 400 {
		for j := range items {
			items[j] = fmt.Sprintf("item-%05d-%03d", i, j)
		}
		apply(t, l, &rationv1.AddItemsRequest{Service: "dm", Items: items}, "")
		time.Sleep(2 * time.Millisecond) // spread over several checks
	}
	clustertest.WaitFor(t, 20*time.Second, func() error {
		s := l.LogSize()
		if s.First <= 1 {
			return fmt.Errorf("log not compacted: %+v", s)
		}
		if s.TrailingLogs >= 100000 || s.TrailingLogs < 64 {
			return fmt.Errorf("trailing logs not set from the entry size: %+v", s)
		}
		// What stays is about TrailingLogBytes plus what came since.
		if kept := (s.Last - s.First + 1) * 4096; kept > 2*trailBytes+logBytes {
			return fmt.Errorf("%d entries (about %d bytes) kept: %+v", s.Last-s.First+1, kept, s)
		}
		return nil
	})
	t.Logf("log after the load: %+v", l.LogSize())
}
