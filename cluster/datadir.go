package cluster

import (
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"runtime/debug"
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

// memIdentity is the identity of an in-memory node: no file, never saved.
func memIdentity(nodeID string, log hclog.Logger) *identity {
	return &identity{log: log, rec: identityRecord{NodeID: nodeID}}
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
	if id.path == "" {
		return nil // in memory
	}
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

// damaged builds the error a node returns for data it cannot read.
func damaged(path, format string, args ...any) error {
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
				done <- damaged(path, "cannot be read (%v)", r)
			}
		}()
		done <- fn()
	}()
	return <-done
}

// boltFirstRead is how much of raft.db bbolt reads to learn its page
// size; of a shorter file it says only "invalid database" (bbolt v1.3.5,
// Open).
const boltFirstRead = 0x1000

// checkRaftDB makes sure raft.db is a whole BoltDB file before raft-boltdb
// opens it for writing, and leaves it as it is. bbolt does the checking:
// its read-only open validates the meta pages (magic, version, checksum),
// the newest meta's size must fit in the file, and every page of every
// bucket is read once. A missing file is fine (a new node).
func checkRaftDB(path string) error {
	fi, err := os.Stat(path)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return nil // and bbolt would create it
	case err != nil:
		return fmt.Errorf("raft log %s: %w", path, err)
	case !fi.Mode().IsRegular():
		return damaged(path, "is not a regular file")
	case fi.Size() == 0:
		// bbolt would initialize it (read-only, it fails to write).
		return damaged(path, "is empty")
	case fi.Size() < boltFirstRead:
		return damaged(path, "is truncated: it holds %d bytes, less than BoltDB's first page", fi.Size())
	}
	return safely(path, func() error {
		db, err := bolt.Open(path, 0o600, &bolt.Options{ReadOnly: true, Timeout: DataDirLockTimeout})
		switch {
		case errors.Is(err, bolt.ErrTimeout):
			return fmt.Errorf("raft log %s is locked by another process (is another node running on this data dir?)", path)
		case errors.Is(err, bolt.ErrInvalid), errors.Is(err, bolt.ErrChecksum), errors.Is(err, bolt.ErrVersionMismatch):
			return damaged(path, "is not a BoltDB file, or both its meta pages are damaged (%v)", err)
		case err != nil:
			return damaged(path, "cannot be opened: %v", err)
		}
		defer db.Close()
		return db.View(func(tx *bolt.Tx) error {
			// Before any page past the end of the file is touched: bbolt
			// maps the file and does not compare its length with the meta.
			if tx.Size() > fi.Size() {
				return damaged(path, "is truncated: it holds %d bytes, its header says %d", fi.Size(), tx.Size())
			}
			// Every page of every bucket is read here, where a fault or a
			// panic becomes an error. Not tx.Check: it runs in a goroutine
			// of bbolt's own, out of safely's reach, and on a file written
			// without freelist syncs (raft.db, see openStores) it first
			// rebuilds the freelist by a walk that panics, in yet another
			// goroutine, on the very inconsistencies Check would report:
			// on raft.db it can only pass or end the process.
			return tx.ForEach(func(_ []byte, b *bolt.Bucket) error {
				b.Stats()
				return nil
			})
		})
	})
}

// checkSnapshots has Raft's file snapshot store read every snapshot in the
// data dir: List reads the meta.json files, Open checks a state.bin against
// the CRC in its meta. List leaves out, with a log line only, a snapshot
// whose meta.json it cannot read or whose version it does not know, and
// Raft would start from an older snapshot, or none; the node refuses to
// start instead. It returns the newest snapshot's directory, "" if none.
func checkSnapshots(dir string, log hclog.Logger) (string, error) {
	sdir := filepath.Join(dir, SnapshotsDir)
	entries, err := os.ReadDir(sdir)
	if errors.Is(err, fs.ErrNotExist) {
		return "", nil
	}
	if err != nil {
		return "", fmt.Errorf("snapshots %s: %w", sdir, err)
	}
	// The store's retain count bounds what List returns: here, all of them.
	store, err := raft.NewFileSnapshotStoreWithLogger(dir, max(len(entries), 1), log)
	if err != nil {
		return "", fmt.Errorf("open snapshot store in %s: %w", dir, err)
	}
	metas, err := store.List()
	if err != nil {
		return "", fmt.Errorf("snapshots %s: %w", sdir, err)
	}
	listed := make(map[string]bool, len(metas))
	for _, m := range metas {
		listed[m.ID] = true
	}
	for _, e := range entries {
		if !e.IsDir() || strings.HasSuffix(e.Name(), ".tmp") {
			continue // raft ignores files, and snapshots it did not finish
		}
		if err := checkSnapshot(store, filepath.Join(sdir, e.Name()), listed[e.Name()]); err != nil {
			return "", err
		}
	}
	if len(metas) == 0 {
		return "", nil
	}
	return filepath.Join(sdir, metas[0].ID), nil // List puts the newest first
}

// checkSnapshot opens the snapshot in dir as Raft would, which reads its
// meta.json and checks state.bin against its CRC. listed says whether List
// read its meta.json; one it left out is refused, naming the file.
func checkSnapshot(store *raft.FileSnapshotStore, dir string, listed bool) error {
	metaPath, statePath := filepath.Join(dir, "meta.json"), filepath.Join(dir, "state.bin")
	meta, rc, err := store.Open(filepath.Base(dir))
	if err == nil {
		rc.Close()
	}
	var pathErr *fs.PathError
	switch {
	case !listed && err != nil:
		return damaged(metaPath, "cannot be read by Raft (%v)", err)
	case !listed && (meta.Version < raft.SnapshotVersionMin || meta.Version > raft.SnapshotVersionMax):
		return damaged(metaPath, "has snapshot version %d", meta.Version)
	case !listed:
		return damaged(metaPath, "names snapshot %q, not its directory", meta.ID)
	case errors.As(err, &pathErr):
		return damaged(statePath, "cannot be read: %v", err)
	case err != nil:
		return damaged(statePath, "does not match its checksum in meta.json (%v)", err)
	}
	return nil
}
