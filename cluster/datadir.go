package cluster

import (
	"bytes"
	"crypto/rand"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"hash/crc64"
	"hash/fnv"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"runtime/debug"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/raft"
	bolt "go.etcd.io/bbolt"

	"github.com/rationhq/ration/fsm"
)

// Data dir layout and limits.
const (
	// IdentityFile, in the data dir, records the node id and the cluster id
	// the data belongs to (JSON, 0600).
	IdentityFile = "cluster-id"
	// RaftDBFile, in the data dir, is the Raft log and stable store.
	RaftDBFile = "raft.db"
	// SnapshotsDir, in the data dir, holds Raft's snapshots.
	SnapshotsDir = "snapshots"
	// DataDirLockTimeout is how long a node waits for another process to
	// release raft.db before it refuses to start.
	DataDirLockTimeout = time.Second
)

// identity is the node's record of whose data its data dir holds. The
// cluster id is random, made by the node that bootstraps the cluster; other
// nodes learn it from the first Raft connection they take part in (see the
// hello in tls.go) and keep it from then on.
type identity struct {
	path string
	log  hclog.Logger

	mu    sync.Mutex
	rec   identityRecord
	saved bool // the file exists
}

type identityRecord struct {
	NodeID    string `json:"node_id"`
	ClusterID string `json:"cluster_id,omitempty"`
}

// loadIdentity reads the data dir's identity file, or starts one for nodeID
// when there is none. It refuses a file that names another node.
func loadIdentity(dir, nodeID string, log hclog.Logger) (*identity, error) {
	id := &identity{path: filepath.Join(dir, IdentityFile), log: log}
	data, err := os.ReadFile(id.path)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		id.rec.NodeID = nodeID
		return id, nil
	case err != nil:
		return nil, fmt.Errorf("read %s: %w", id.path, err)
	}
	if err := json.Unmarshal(data, &id.rec); err != nil || id.rec.NodeID == "" {
		return nil, fmt.Errorf("%w: %s is not an identity record (want {\"node_id\": ..., \"cluster_id\": ...}); the node has not changed it", ErrCorrupt, id.path)
	}
	id.saved = true
	if id.rec.NodeID != nodeID {
		return nil, fmt.Errorf("%w: %s says the data dir is node %q's, but this node is %q: start it with its own id, or give it an empty data dir",
			ErrOtherNode, id.path, id.rec.NodeID, nodeID)
	}
	return id, nil
}

// newCluster gives the identity a fresh random cluster id: only the node
// that bootstraps a new cluster calls it.
func (id *identity) newCluster() error {
	var b [16]byte
	if _, err := rand.Read(b[:]); err != nil {
		return err
	}
	id.mu.Lock()
	defer id.mu.Unlock()
	id.rec.ClusterID = hex.EncodeToString(b[:])
	return id.saveLocked()
}

// clusterID returns the recorded cluster id, "" while unknown.
func (id *identity) clusterID() string {
	id.mu.Lock()
	defer id.mu.Unlock()
	return id.rec.ClusterID
}

// agree compares a peer's cluster id with this node's. An unknown id on
// either side is no conflict; a node that does not know its cluster yet
// adopts the peer's and records it. It returns this node's id after the
// comparison.
func (id *identity) agree(theirs, peer string) (string, error) {
	id.mu.Lock()
	defer id.mu.Unlock()
	ours := id.rec.ClusterID
	switch {
	case theirs == "" || theirs == ours:
		return ours, nil
	case ours == "":
		id.rec.ClusterID = theirs
		if err := id.saveLocked(); err != nil {
			id.rec.ClusterID = ""
			return "", fmt.Errorf("record cluster id %s learned from %s: %w", theirs, peer, err)
		}
		id.log.Info("learned the cluster id", "cluster-id", theirs, "from", peer)
		return theirs, nil
	}
	return ours, fmt.Errorf("it %w %s; this node's data dir belongs to cluster %s (%s)", ErrOtherCluster, theirs, ours, id.path)
}

// recorded reports whether the identity file exists.
func (id *identity) recorded() bool {
	id.mu.Lock()
	defer id.mu.Unlock()
	return id.saved
}

// save writes the identity file.
func (id *identity) save() error {
	id.mu.Lock()
	defer id.mu.Unlock()
	return id.saveLocked()
}

// saveLocked writes the record atomically: a temporary file, synced, then
// renamed over the old one, and the directory synced.
func (id *identity) saveLocked() error {
	data, err := json.Marshal(id.rec)
	if err != nil {
		return err
	}
	tmp := id.path + ".tmp"
	f, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return fmt.Errorf("write %s: %w", tmp, err)
	}
	_, err = f.Write(append(data, '\n'))
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp, id.path)
	}
	if err != nil {
		os.Remove(tmp)
		return fmt.Errorf("write %s: %w", id.path, err)
	}
	if d, err := os.Open(filepath.Dir(id.path)); err == nil {
		d.Sync()
		d.Close()
	}
	id.saved = true
	return nil
}

// startGuard is the state machine as Raft sees it while it starts: Raft
// restores the newest snapshot, and when that fails it silently goes on
// from an older one, or none. The guard notes the failure so the node can
// refuse to start.
type startGuard struct {
	*fsm.FSM
	starting atomic.Bool

	mu  sync.Mutex
	err error
}

// Restore restores the state machine and notes a failure during start.
func (g *startGuard) Restore(rc io.ReadCloser) error {
	err := g.FSM.Restore(rc)
	if err != nil && g.starting.Load() {
		g.mu.Lock()
		if g.err == nil {
			g.err = err
		}
		g.mu.Unlock()
	}
	return err
}

func (g *startGuard) failed() error {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.err
}

// corrupt builds the error a node returns for data it cannot read.
func corrupt(path, format string, args ...any) error {
	return fmt.Errorf("%w: %s %s; the node has not changed it: restore the data dir from a backup, or move it aside and add the node to the cluster again",
		ErrCorrupt, path, fmt.Sprintf(format, args...))
}

// safely runs fn in a goroutine of its own where a memory fault (a
// memory-mapped file shorter than its header claims) is a panic, and turns
// any panic into an error: BoltDB panics on some damaged files, and the
// user should read which file is damaged, not a stack trace.
func safely(path string, fn func() error) error {
	done := make(chan error, 1)
	go func() {
		debug.SetPanicOnFault(true)
		defer func() {
			if r := recover(); r != nil {
				done <- corrupt(path, "cannot be read (%v)", r)
			}
		}()
		done <- fn()
	}()
	return <-done
}

// BoltDB's file header: two meta pages, each a 16-byte page header then the
// meta fields in the machine's byte order, the last being an FNV-64a
// checksum of the ones before it (go.etcd.io/bbolt, db.go).
const (
	boltMagic      = 0xED0CDAED
	boltVersion    = 2
	boltPageHeader = 16
	boltMetaSum    = 56 // bytes of meta covered by the checksum
	boltNoFreelist = ^uint64(0)
)

type boltMeta struct {
	pageSize                   uint32
	root, freelist, pgid, txid uint64
}

func readBoltMeta(b []byte) (boltMeta, bool) {
	if len(b) < boltMetaSum+8 {
		return boltMeta{}, false
	}
	e := binary.NativeEndian
	h := fnv.New64a()
	h.Write(b[:boltMetaSum])
	if e.Uint32(b[0:]) != boltMagic || e.Uint32(b[4:]) != boltVersion || h.Sum64() != e.Uint64(b[boltMetaSum:]) {
		return boltMeta{}, false
	}
	return boltMeta{pageSize: e.Uint32(b[8:]), root: e.Uint64(b[16:]), freelist: e.Uint64(b[32:]),
		pgid: e.Uint64(b[40:]), txid: e.Uint64(b[48:])}, true
}

// checkRaftDB makes sure raft.db is a whole BoltDB file before BoltDB opens
// it for writing: its header must be valid, the file as long as the header
// says, and the buckets' first and last pages readable. A missing file is
// fine (a new node); an empty one is not, since BoltDB would initialize it.
func checkRaftDB(path string) error {
	fi, err := os.Stat(path)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return nil
	case err != nil:
		return fmt.Errorf("raft log %s: %w", path, err)
	case !fi.Mode().IsRegular():
		return corrupt(path, "is not a regular file")
	case fi.Size() == 0:
		return corrupt(path, "is empty")
	}
	f, err := os.Open(path)
	if err != nil {
		return fmt.Errorf("raft log %s: %w", path, err)
	}
	head := make([]byte, 64<<10)
	n, err := io.ReadFull(f, head)
	f.Close()
	if err != nil && !errors.Is(err, io.ErrUnexpectedEOF) {
		return fmt.Errorf("raft log %s: %w", path, err)
	}
	head = head[:n]
	m0, ok0 := readBoltMeta(head[min(len(head), boltPageHeader):])
	pageSize := os.Getpagesize()
	if ok0 {
		pageSize = int(m0.pageSize)
	}
	var m1 boltMeta
	ok1 := false
	if off := pageSize + boltPageHeader; pageSize >= 512 && off < len(head) {
		m1, ok1 = readBoltMeta(head[off:])
	}
	var m boltMeta
	switch {
	case ok0 && (!ok1 || m0.txid >= m1.txid):
		m = m0
	case ok1:
		m = m1
	default:
		return corrupt(path, "is not a BoltDB file, or both its meta pages are damaged")
	}
	if m.pageSize < 512 || m.pageSize&(m.pageSize-1) != 0 {
		return corrupt(path, "has a page size of %d", m.pageSize)
	}
	if need := int64(m.pgid) * int64(m.pageSize); m.pgid < 2 || fi.Size() < need {
		return corrupt(path, "is truncated: it holds %d bytes, its header says %d", fi.Size(), need)
	}
	if m.root < 2 || m.root >= m.pgid || (m.freelist != boltNoFreelist && (m.freelist < 2 || m.freelist >= m.pgid)) {
		return corrupt(path, "has a header pointing outside the file")
	}
	return safely(path, func() error {
		db, err := bolt.Open(path, 0o600, &bolt.Options{ReadOnly: true, Timeout: DataDirLockTimeout})
		if errors.Is(err, bolt.ErrTimeout) {
			return fmt.Errorf("raft log %s is locked by another process (is another node running on this data dir?)", path)
		}
		if err != nil {
			return corrupt(path, "cannot be opened: %v", err)
		}
		defer db.Close()
		if err := db.View(func(tx *bolt.Tx) error {
			return tx.ForEach(func(_ []byte, b *bolt.Bucket) error {
				c := b.Cursor()
				c.First()
				c.Last()
				return nil
			})
		}); err != nil {
			return corrupt(path, "cannot be read: %v", err)
		}
		return nil
	})
}

// fileSnapshotMeta is raft.FileSnapshotStore's meta.json.
type fileSnapshotMeta struct {
	raft.SnapshotMeta
	CRC []byte
}

// checkSnapshots verifies every snapshot in the data dir as Raft's file
// snapshot store would when it opens one: meta.json must decode and
// state.bin must match its checksum. Raft itself skips a snapshot whose
// meta it cannot read and falls back to an older one; a node here refuses
// to start instead. It returns the newest snapshot's directory, "" if none.
func checkSnapshots(dir string) (string, error) {
	sdir := filepath.Join(dir, SnapshotsDir)
	entries, err := os.ReadDir(sdir)
	if errors.Is(err, fs.ErrNotExist) {
		return "", nil
	}
	if err != nil {
		return "", fmt.Errorf("snapshots %s: %w", sdir, err)
	}
	var metas []*fileSnapshotMeta
	for _, e := range entries {
		if !e.IsDir() || strings.HasSuffix(e.Name(), ".tmp") {
			continue // raft ignores files, and snapshots it did not finish
		}
		metaPath := filepath.Join(sdir, e.Name(), "meta.json")
		data, err := os.ReadFile(metaPath)
		if err != nil {
			return "", corrupt(metaPath, "cannot be read: %v", err)
		}
		var m fileSnapshotMeta
		if err := json.Unmarshal(data, &m); err != nil {
			return "", corrupt(metaPath, "does not decode: %v", err)
		}
		if m.Version < raft.SnapshotVersionMin || m.Version > raft.SnapshotVersionMax {
			return "", corrupt(metaPath, "has snapshot version %d", m.Version)
		}
		statePath := filepath.Join(sdir, e.Name(), "state.bin")
		f, err := os.Open(statePath)
		if err != nil {
			return "", corrupt(statePath, "cannot be read: %v", err)
		}
		h := crc64.New(crc64.MakeTable(crc64.ECMA))
		n, err := io.Copy(h, f)
		f.Close()
		if err != nil {
			return "", corrupt(statePath, "cannot be read: %v", err)
		}
		if !bytes.Equal(h.Sum(nil), m.CRC) {
			return "", corrupt(statePath, "does not match its checksum in meta.json (%d bytes, %d expected)", n, m.Size)
		}
		metas = append(metas, &m)
	}
	if len(metas) == 0 {
		return "", nil
	}
	// Raft's order: newest term, then index, then id.
	sort.Slice(metas, func(i, j int) bool {
		a, b := metas[i], metas[j]
		if a.Term != b.Term {
			return a.Term > b.Term
		}
		if a.Index != b.Index {
			return a.Index > b.Index
		}
		return a.ID > b.ID
	})
	return filepath.Join(sdir, metas[0].ID), nil
}
