package cluster

import (
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/raft"
)

// meteredLogs counts the bytes the node writes to its Raft log, and notes
// after each write how many it had written by then, so that compaction can
// follow the log's size as well as its length.
type meteredLogs struct {
	raft.LogStore

	mu    sync.Mutex
	total uint64
	marks []logMark // index order; the compactor drops those a snapshot covers
}

// logMark is how many bytes the node had written when its log reached an
// index.
type logMark struct {
	index, bytes uint64
}

func (m *meteredLogs) StoreLog(l *raft.Log) error {
	return m.StoreLogs([]*raft.Log{l})
}

func (m *meteredLogs) StoreLogs(logs []*raft.Log) error {
	if err := m.LogStore.StoreLogs(logs); err != nil || len(logs) == 0 {
		return err
	}
	var n int
	for _, l := range logs {
		n += len(l.Data) + len(l.Extensions)
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	// Entries that replace others (a follower's log after a leader change)
	// make later marks wrong: drop them.
	first := logs[0].Index
	for len(m.marks) > 0 && m.marks[len(m.marks)-1].index >= first {
		m.marks = m.marks[:len(m.marks)-1]
	}
	m.total += uint64(n)
	m.marks = append(m.marks, logMark{index: logs[len(logs)-1].Index, bytes: m.total})
	return nil
}

// seed counts the entries already in the log after the snapshot at index,
// so that a node restarted with a long tail of log snapshots soon, instead of
// counting only what it writes from now on.
func (m *meteredLogs) seed(index uint64) error {
	first, err := m.FirstIndex()
	if err != nil {
		return err
	}
	last, err := m.LastIndex()
	if err != nil || last == 0 {
		return err
	}
	var n uint64
	var l raft.Log
	for i := max(first, index+1); i <= last; i++ {
		if err := m.GetLog(i, &l); err != nil {
			return err
		}
		n += uint64(len(l.Data) + len(l.Extensions))
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	m.total = n
	m.marks = []logMark{{index: index}, {index: last, bytes: n}}
	return nil
}

// sinceSnapshot drops the marks a snapshot at index covers (keeping the last
// of them) and returns the bytes written after it and the average size of
// those entries (0 when unknown).
func (m *meteredLogs) sinceSnapshot(index uint64) (bytes, avg uint64) {
	m.mu.Lock()
	defer m.mu.Unlock()
	i := 0
	for i+1 < len(m.marks) && m.marks[i+1].index <= index {
		i++
	}
	m.marks = m.marks[i:]
	if len(m.marks) == 0 {
		return 0, 0
	}
	base := m.marks[0]
	if base.index > index {
		// The snapshot is older than anything written since the node
		// started: count from the first mark.
		return m.total - base.bytes, 0
	}
	last := m.marks[len(m.marks)-1]
	if last.index > base.index {
		avg = (last.bytes - base.bytes) / (last.index - base.index)
	}
	return m.total - base.bytes, avg
}

// compactor bounds the Raft log by bytes. Raft on its own snapshots after
// SnapshotThreshold entries and keeps TrailingLogs entries after a snapshot,
// counts that make the log's size depend on how large entries are (group
// commit makes them large under load). The compactor takes a snapshot once
// the log since the newest one holds SnapshotLogBytes, or half that
// snapshot's size if more, and lowers TrailingLogs so that what stays after
// a snapshot holds about TrailingLogBytes. What a restart replays after its
// snapshot is that log: bounding it by half the snapshot keeps the replay
// shorter than the restore (replaying a byte of log costs about what
// restoring a byte of snapshot does), and snapshots cost at most twice the
// writing of the log they replace.
type compactor struct {
	n     *Node
	logs  *meteredLogs
	snaps *watchedSnapshots
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

// check compacts the log when it is due, and keeps TrailingLogs in step
// with the entries' size.
func (c *compactor) check() {
	snapIndex, snapSize := c.newestSnapshot()
	since, avg := c.logs.sinceSnapshot(snapIndex)
	c.since.Store(since)
	c.setTrailing(avg)
	limit := max(c.n.cfg.SnapshotLogBytes, snapSize/2)
	if c.n.cfg.SnapshotLogBytes == 0 || since < limit || c.n.raft.LastIndex() <= snapIndex {
		return
	}
	c.n.log.Info("compacting the raft log", "bytes-since-snapshot", since, "limit", limit, "trailing-logs", c.trail.Load())
	if err := c.n.raft.Snapshot().Error(); err != nil {
		c.n.log.Warn("snapshot to compact the raft log failed", "error", err)
		return
	}
	snapIndex, _ = c.newestSnapshot()
	since, _ = c.logs.sinceSnapshot(snapIndex)
	c.since.Store(since)
}

// setTrailing sets TrailingLogs to the entries that hold TrailingLogBytes
// at avg bytes an entry, within the configured count.
func (c *compactor) setTrailing(avg uint64) {
	cfg := c.n.cfg
	if cfg.TrailingLogBytes == 0 || avg == 0 {
		return
	}
	want := min(max(cfg.TrailingLogBytes/avg, minTrailingLogs), cfg.TrailingLogs)
	if cur := c.trail.Load(); want == cur || (want > cur*9/10 && want < cur*11/10) {
		return // within 10%: not worth a reload
	}
	if err := c.n.reloadRaft(want); err != nil {
		c.n.log.Warn("cannot set trailing logs", "trailing-logs", want, "error", err)
		return
	}
	c.trail.Store(want)
}

// newestSnapshot returns the newest snapshot's index and size (0, 0 if none).
func (c *compactor) newestSnapshot() (index, size uint64) {
	m := c.snaps.newest.Load()
	return m.index, m.bytes
}

// watchedSnapshots is the snapshot store, noting the index and size of the
// newest snapshot written (taken here or installed from the leader), so
// the compactor need not list the store every second.
type watchedSnapshots struct {
	raft.SnapshotStore
	newest atomic.Pointer[logMark]
}

func newWatchedSnapshots(s raft.SnapshotStore) *watchedSnapshots {
	w := &watchedSnapshots{SnapshotStore: s}
	m := &logMark{}
	if metas, err := s.List(); err == nil && len(metas) > 0 {
		m = &logMark{index: metas[0].Index, bytes: uint64(metas[0].Size)}
	}
	w.newest.Store(m)
	return w
}

func (w *watchedSnapshots) Create(version raft.SnapshotVersion, index, term uint64, cfg raft.Configuration,
	cfgIndex uint64, trans raft.Transport) (raft.SnapshotSink, error) {
	sink, err := w.SnapshotStore.Create(version, index, term, cfg, cfgIndex, trans)
	if err != nil {
		return nil, err
	}
	return &watchedSink{SnapshotSink: sink, w: w, index: index}, nil
}

// watchedSink counts what is written to a snapshot and, once it is
// complete, makes it the store's newest.
type watchedSink struct {
	raft.SnapshotSink
	w     *watchedSnapshots
	index uint64
	size  uint64
}

func (s *watchedSink) Write(p []byte) (int, error) {
	n, err := s.SnapshotSink.Write(p)
	s.size += uint64(n)
	return n, err
}

func (s *watchedSink) Close() error {
	if err := s.SnapshotSink.Close(); err != nil {
		return err
	}
	if s.index >= s.w.newest.Load().index {
		s.w.newest.Store(&logMark{index: s.index, bytes: s.size})
	}
	return nil
}

// LogSize is where a node's Raft log stands.
type LogSize struct {
	// First and Last are the oldest and newest entries the log holds.
	First, Last uint64
	// BytesSinceSnapshot is what the node wrote to its log since its newest
	// snapshot, as of the compactor's last check (every second).
	BytesSinceSnapshot uint64
	// TrailingLogs is how many entries a snapshot leaves behind now.
	TrailingLogs uint64
}

// LogSize reports where the node's Raft log stands. It reads the log
// store, so it is for metrics, not for every request.
func (n *Node) LogSize() LogSize {
	c := n.compact
	first, _ := c.logs.FirstIndex()
	return LogSize{First: first, Last: n.raft.LastIndex(), BytesSinceSnapshot: c.since.Load(), TrailingLogs: c.trail.Load()}
}
