package main

import (
	"errors"
	"flag"
	"fmt"
	"time"

	"github.com/rationhq/ration/cluster"
)

// Bounds are the limits on what a node remembers besides the services'
// own retention: the activity log, request ids and the Raft log.
type Bounds struct {
	ActivityRetention time.Duration
	ActivityMax       uint64
	RequestRetention  time.Duration
	RequestMaxBytes   uint64
	SnapshotInterval  time.Duration
	SnapshotThreshold uint64
	TrailingLogs      uint64
	SnapshotLogBytes  uint64
	TrailingLogBytes  uint64
}

// defaultBounds are cluster.DefaultConfig's.
func defaultBounds() Bounds {
	c := cluster.DefaultConfig()
	return Bounds{
		ActivityRetention: c.ActivityRetention, ActivityMax: c.ActivityMax,
		RequestRetention: c.RequestRetention, RequestMaxBytes: c.RequestMaxBytes,
		SnapshotInterval: c.SnapshotInterval, SnapshotThreshold: c.SnapshotThreshold, TrailingLogs: c.TrailingLogs,
		SnapshotLogBytes: c.SnapshotLogBytes, TrailingLogBytes: c.TrailingLogBytes,
	}
}

// addBoundFlags defines the flags of m.Bounds; their defaults are its values.
func (m *Main) addBoundFlags(fs *flag.FlagSet) {
	b := &m.Bounds
	fs.DurationVar(&b.ActivityRetention, "activity-retention", b.ActivityRetention, "how long the activity log keeps a record (0: no age limit)")
	fs.Uint64Var(&b.ActivityMax, "activity-max", b.ActivityMax, "most activity records kept; the oldest go first (0: no count limit)")
	fs.DurationVar(&b.RequestRetention, "request-retention", b.RequestRetention, "how long a request id and its answer are remembered, so a retry takes effect once (0: no age limit)")
	fs.Uint64Var(&b.RequestMaxBytes, "request-max-bytes", b.RequestMaxBytes, "most bytes of remembered request ids and answers; the oldest go first (0: no size limit)")
	fs.DurationVar(&b.SnapshotInterval, "snapshot-interval", b.SnapshotInterval, "how often a node checks whether to snapshot")
	fs.Uint64Var(&b.SnapshotThreshold, "snapshot-threshold", b.SnapshotThreshold, "log entries since the last snapshot that make a node snapshot at its next check")
	fs.Uint64Var(&b.TrailingLogs, "trailing-logs", b.TrailingLogs, "most log entries kept after a snapshot, so a briefly lagging node catches up without one")
	fs.Uint64Var(&b.SnapshotLogBytes, "snapshot-log-bytes", b.SnapshotLogBytes, "snapshot once the log since the last snapshot holds this many bytes, or half that snapshot's size if larger: this bounds what a restart replays (0: entry counts alone)")
	fs.Uint64Var(&b.TrailingLogBytes, "trailing-log-bytes", b.TrailingLogBytes, "keep fewer than --trailing-logs entries after a snapshot when they would hold more than this many bytes (0: the count alone)")
}

// checkBoundFlags reports a bound that cannot work.
func (m *Main) checkBoundFlags() error {
	b := m.Bounds
	switch {
	case b.ActivityRetention < 0, b.RequestRetention < 0:
		return errors.New("--activity-retention and --request-retention must not be negative")
	case b.RequestRetention == 0 && b.RequestMaxBytes == 0:
		return errors.New("--request-retention 0 and --request-max-bytes 0 together would remember every request id for ever: set one")
	case b.SnapshotInterval < time.Second:
		return fmt.Errorf("--snapshot-interval %s: want at least 1s", b.SnapshotInterval)
	case b.SnapshotThreshold == 0:
		return errors.New("--snapshot-threshold 0: want at least 1 entry")
	}
	return nil
}

// apply copies the bounds into a node's config.
func (b Bounds) apply(cfg *cluster.Config) {
	cfg.ActivityRetention, cfg.ActivityMax = b.ActivityRetention, b.ActivityMax
	cfg.RequestRetention, cfg.RequestMaxBytes = b.RequestRetention, b.RequestMaxBytes
	cfg.SnapshotInterval, cfg.SnapshotThreshold, cfg.TrailingLogs = b.SnapshotInterval, b.SnapshotThreshold, b.TrailingLogs
	cfg.SnapshotLogBytes, cfg.TrailingLogBytes = b.SnapshotLogBytes, b.TrailingLogBytes
}
