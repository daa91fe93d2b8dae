package cluster

import (
	"sync/atomic"
	"time"

	"github.com/hashicorp/raft"
)

// meteredLogs counts the bytes and entries the node writes to its Raft log,
// so that compaction can follow the log's size as well as its length.
type meteredLogs struct {
	raft.LogStore
	bytes atomic.Uint64
}

func (m *meteredLogs) StoreLog(l *raft.Log) error {
	m.bytes.Add(uint64(len(l.Data) + len(l.Extensions)))
	return m.LogStore.StoreLog(l)
}

func (m *meteredLogs) StoreLogs(logs []*raft.Log) error {
	var n int
	for _, l := range logs {
		n += len(l.Data) + len(l.Extensions)
	}
	m.bytes.Add(uint64(n))
	return m.LogStore.StoreLogs(logs)
}

// logMark is how many bytes the node had written when its log reached an
// index.
type logMark struct {
	index, bytes uint64
}

// compactor bounds the Raft log by bytes. Raft on its own snapshots after
// SnapshotThreshold entries and keeps TrailingLogs entries after a snapshot,
// counts that make the log's size depend on how large entries are (group
// commit makes them large under load). The compactor takes a snapshot once
// the log since the newest one holds SnapshotLogBytes, or as much as that
// snapshot's size if more (so snapshots cost at most as much writing as the
// log they replace), and lowers TrailingLogs so that what stays after a
// snapshot holds about TrailingLogBytes.
type compactor struct {
	n     *Node
	logs  *meteredLogs
	snaps raft.SnapshotStore
	marks []logMark     // oldest first, one a check
	trail atomic.Uint64 // the TrailingLogs Raft runs with
	since atomic.Uint64 // bytes written since the newest snapshot, at the last check
}

// compactEvery is how often the compactor looks at the log.
const compactEvery = time.Second

// minTrailingLogs is the fewest entries kept after a snapshot, however large.
const minTrailingLogs = 64

func (c *compactor) run(stop <-chan struct{}) {
	t := time.NewTicker(compactEvery)
	defer t.Stop()
	for {
		select {
		case <-stop:
			return
		case <-t.C:
			c.check()
		}
	}
}

// check records where the log stands and compacts it when it is due.
func (c *compactor) check() {
	now := logMark{index: c.n.raft.LastIndex(), bytes: c.logs.bytes.Load()}
	if len(c.marks) == 0 || now.index > c.marks[len(c.marks)-1].index {
		c.marks = append(c.marks, now)
	}
	snapIndex, snapSize := c.newestSnapshot()
	// Marks before the newest snapshot but the last are no longer needed.
	for len(c.marks) > 1 && c.marks[1].index <= snapIndex {
		c.marks = c.marks[1:]
	}
	c.setTrailing()
	since := now.bytes - c.bytesAt(snapIndex)
	c.since.Store(since)
	limit := max(c.n.cfg.SnapshotLogBytes, snapSize)
	if c.n.cfg.SnapshotLogBytes == 0 || since < limit {
		return
	}
	c.n.log.Info("compacting the raft log", "bytes-since-snapshot", since, "limit", limit, "trailing-logs", c.trail.Load())
	if err := c.n.raft.Snapshot().Error(); err != nil {
		c.n.log.Warn("snapshot to compact the raft log failed", "error", err)
	}
}

// bytesAt is how many bytes had been written by index (the nearest mark at
// or before it; the oldest mark if there is none).
func (c *compactor) bytesAt(index uint64) uint64 {
	b := c.marks[0].bytes
	for _, m := range c.marks {
		if m.index > index {
			break
		}
		b = m.bytes
	}
	return b
}

// setTrailing sets TrailingLogs to the entries that hold TrailingLogBytes
// at the log's recent average entry size, within the configured count.
func (c *compactor) setTrailing() {
	cfg := c.n.cfg
	first, last := c.marks[0], c.marks[len(c.marks)-1]
	if cfg.TrailingLogBytes == 0 || last.index <= first.index {
		return
	}
	avg := max((last.bytes-first.bytes)/(last.index-first.index), 1)
	want := min(max(cfg.TrailingLogBytes/avg, minTrailingLogs), cfg.TrailingLogs)
	if cur := c.trail.Load(); want == cur || (want > cur*9/10 && want < cur*11/10) {
		return // within 10%: not worth a reload
	}
	rc := raft.ReloadableConfig{TrailingLogs: want, SnapshotInterval: cfg.SnapshotInterval, SnapshotThreshold: cfg.SnapshotThreshold,
		HeartbeatTimeout: cfg.HeartbeatTimeout, ElectionTimeout: cfg.ElectionTimeout}
	if err := c.n.raft.ReloadConfig(rc); err != nil {
		c.n.log.Warn("cannot set trailing logs", "trailing-logs", want, "error", err)
		return
	}
	c.trail.Store(want)
}

// newestSnapshot returns the newest snapshot's index and size (0, 0 if none).
func (c *compactor) newestSnapshot() (index, size uint64) {
	metas, err := c.snaps.List()
	if err != nil || len(metas) == 0 {
		return 0, 0
	}
	return metas[0].Index, uint64(metas[0].Size)
}

// LogSize is where a node's Raft log stands.
type LogSize struct {
	// First and Last are the oldest and newest entries the log holds.
	First, Last uint64
	// BytesSinceSnapshot is what the node wrote to its log since its newest
	// snapshot, as of its last check (every second).
	BytesSinceSnapshot uint64
	// TrailingLogs is how many entries a snapshot leaves behind now.
	TrailingLogs uint64
}

// LogSize reports where the node's Raft log stands.
func (n *Node) LogSize() LogSize {
	first, _ := n.compact.logs.FirstIndex()
	return LogSize{First: first, Last: n.raft.LastIndex(), BytesSinceSnapshot: n.compact.since.Load(), TrailingLogs: n.compact.trail.Load()}
}
