package cluster

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/raft"
	raftboltdb "github.com/hashicorp/raft-boltdb/v2"
	bolt "go.etcd.io/bbolt"

	"github.com/rationhq/ration/fsm"
)

// Node runs the state machine under Raft: one member of a ration cluster.
// Its methods are safe for concurrent use.
type Node struct {
	cfg    Config
	log    hclog.Logger
	fsm    *fsm.FSM
	raft   *raft.Raft
	trans  raft.Transport
	stream *streamLayer          // nil in memory
	store  *raftboltdb.BoltStore // nil in memory
	id     *identity

	notify      chan bool
	leaders     *leaderWatch
	leaderReady atomic.Bool
	startingUp  atomic.Bool // the heartbeat timeout is still the startup one
	clock       nodeClock
	versions    sync.Map // member id -> MemberVersion (versions.go)
	prop        *proposer
	compact     *compactor

	stop      chan struct{}
	wg        sync.WaitGroup
	closeOnce sync.Once
}

// New opens (or creates) the node's data dir and starts Raft. With
// cfg.Bootstrap and an empty data dir it forms a one-member cluster; with
// existing state it rejoins the cluster it was part of. With cfg.InMemory
// it forms a one-member cluster held in memory.
func New(cfg Config) (*Node, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	log := cfg.Logger
	if log == nil {
		log = hclog.NewNullLogger()
	}
	n := &Node{cfg: cfg, log: log.Named("cluster"), fsm: fsm.New(log.Named("fsm")), notify: make(chan bool, 16),
		leaders: newLeaderWatch(), stop: make(chan struct{})}
	started := false
	defer func() {
		if !started {
			n.Close() // the one cleanup: Close releases whatever was opened
		}
	}()
	newestSnap, err := n.checkDataDir()
	if err != nil {
		return nil, err
	}
	st, err := n.openStores(log)
	if err != nil {
		return nil, err
	}
	if err := n.recordIdentity(st.existing); err != nil {
		return nil, err
	}
	if err := n.openTransport(log); err != nil {
		return nil, err
	}
	if err := n.startRaft(log, st, newestSnap); err != nil {
		return nil, err
	}
	if cfg.Bootstrap && !st.existing {
		if err := n.bootstrap(); err != nil {
			return nil, err
		}
	}
	n.prop = newProposer(n, cfg.MaxEntriesInFlight, cfg.MaxCommandsPerEntry)
	n.wg.Add(4)
	go n.watchLeadership()
	go n.watchLeader()
	go n.watchTime()
	go n.prop.run(n.stop, &n.wg)
	n.wg.Add(1)
	go func() {
		defer n.wg.Done()
		n.compact.run(n.stop)
	}()
	started = true
	return n, nil
}

// checkDataDir creates the data dir and checks it before anything opens it
// for writing: it must be this node's, and whole (datadir.go). It returns
// the newest snapshot's directory, "" if none. An in-memory node has no
// data dir, and keeps its identity in memory.
func (n *Node) checkDataDir() (string, error) {
	if n.cfg.InMemory {
		n.id = memIdentity(n.cfg.NodeID, n.log)
		return "", nil
	}
	dir := n.cfg.DataDir
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return "", fmt.Errorf("create data dir: %w", err)
	}
	id, err := loadIdentity(dir, n.cfg.NodeID, n.log)
	if err != nil {
		return "", err
	}
	n.id = id
	if err := checkRaftDB(filepath.Join(dir, RaftDBFile)); err != nil {
		return "", err
	}
	return checkSnapshots(dir, n.log.Named("snapshot"))
}

// stores are where Raft keeps its log, its stable state and its snapshots.
type stores struct {
	logs     raft.LogStore
	stable   raft.StableStore
	snaps    raft.SnapshotStore
	existing bool // they hold state already
}

// openStores opens the Raft log and stable store (raft.db) and the
// snapshot store, or makes Raft's in-memory ones.
func (n *Node) openStores(log hclog.Logger) (stores, error) {
	if n.cfg.InMemory {
		mem := raft.NewInmemStore()
		return stores{logs: mem, stable: mem, snaps: raft.NewInmemSnapshotStore()}, nil
	}
	dir := n.cfg.DataDir
	dbPath := filepath.Join(dir, RaftDBFile)
	if err := safely(dbPath, func() error {
		// As etcd's backend: the freelist is not written on every commit
		// (it is rebuilt when the file opens), and kept as a hash map.
		store, err := raftboltdb.New(raftboltdb.Options{Path: dbPath, BoltOptions: &bolt.Options{
			Timeout: DataDirLockTimeout, NoFreelistSync: true, FreelistType: bolt.FreelistMapType}})
		n.store = store
		return err
	}); err != nil {
		return stores{}, fmt.Errorf("open raft log %s: %w", dbPath, err)
	}
	snaps, err := raft.NewFileSnapshotStoreWithLogger(dir, 2, log.Named("snapshot"))
	if err != nil {
		return stores{}, fmt.Errorf("open snapshot store in %s: %w", dir, err)
	}
	var existing bool
	if err := safely(dbPath, func() (err error) {
		existing, err = raft.HasExistingState(n.store, n.store, snaps)
		return err
	}); err != nil {
		return stores{}, fmt.Errorf("read raft state in %s: %w", dir, err)
	}
	return stores{logs: n.store, stable: n.store, snaps: snaps, existing: existing}, nil
}

// recordIdentity gives a node that bootstraps a new cluster its cluster
// id, and writes the identity file of a data dir that has none.
func (n *Node) recordIdentity(existing bool) error {
	switch {
	case n.cfg.Bootstrap && !existing:
		return n.id.newCluster() // a new cluster is born here
	case !n.id.recorded():
		if existing {
			n.log.Warn("data dir has no identity file: recording this node's id", "file", n.id.path, "node-id", n.cfg.NodeID)
		}
		return n.id.save()
	}
	return nil
}

// openTransport listens on RaftAddr: Raft's network transport over the
// stream layer (tls.go). An in-memory node has Raft's in-memory transport,
// connected to nothing.
func (n *Node) openTransport(log hclog.Logger) error {
	if n.cfg.InMemory {
		_, n.trans = raft.NewInmemTransport("")
		return nil
	}
	stream, err := newStreamLayer(n.cfg.RaftAddr, n.cfg.AdvertiseRaft, n.cfg.PeerTLS, n.id)
	if err != nil {
		return fmt.Errorf("raft transport on %s: %w", n.cfg.RaftAddr, err)
	}
	n.stream = stream
	tc := &raft.NetworkTransportConfig{Stream: stream, Logger: log.Named("transport"), MaxPool: 3, Timeout: raftTimeout}
	if len(n.cfg.PeerDialAddrs) > 0 {
		// Raft warns on every address the provider has no answer for, and
		// asks for its own in every RPC's header: the provider answers that
		// with the address it advertises.
		tc.ServerAddressProvider = dialOverrides{self: raft.ServerID(n.cfg.NodeID), selfAddr: stream.Addr().String(), to: n.cfg.PeerDialAddrs}
	}
	n.trans = raft.NewNetworkTransportWithConfig(tc)
	return nil
}

// raftConfig is Raft's configuration for this node.
func (n *Node) raftConfig(log hclog.Logger) *raft.Config {
	cfg := n.cfg
	rc := raft.DefaultConfig()
	rc.LocalID = raft.ServerID(cfg.NodeID)
	rc.Logger = log.Named("raft")
	rc.HeartbeatTimeout = cfg.startupHeartbeatTimeout()
	n.startingUp.Store(rc.HeartbeatTimeout != cfg.HeartbeatTimeout)
	rc.ElectionTimeout = cfg.ElectionTimeout
	rc.LeaderLeaseTimeout = cfg.LeaderLeaseTimeout
	rc.CommitTimeout = cfg.CommitTimeout
	rc.SnapshotInterval = cfg.SnapshotInterval
	rc.SnapshotThreshold = cfg.SnapshotThreshold
	rc.TrailingLogs = cfg.TrailingLogs
	rc.NotifyCh = n.notify
	return rc
}

// startRaft starts Raft on the stores. Raft restores the newest snapshot as
// it starts; if that fails it would go on from an older one without a
// word, so the node refuses to start instead (startGuard).
func (n *Node) startRaft(log hclog.Logger, st stores, newestSnap string) error {
	guard := &startGuard{FSM: n.fsm}
	guard.starting.Store(true)
	metered := &meteredLogs{LogStore: st.logs}
	if err := n.seedLogSize(metered, st.snaps); err != nil {
		return err
	}
	var logs raft.LogStore = metered
	if n.cfg.LogCacheEntries > 0 && n.cfg.LogCacheBytes > 0 {
		logs = newLogCache(metered, n.cfg.LogCacheEntries, n.cfg.LogCacheBytes)
	}
	snaps := newWatchedSnapshots(st.snaps)
	r, err := raft.NewRaft(n.raftConfig(log), guard, logs, st.stable, snaps, n.trans)
	guard.starting.Store(false)
	if err == nil {
		n.raft = r
		n.compact = &compactor{n: n, logs: metered, snaps: snaps}
		n.compact.trail.Store(n.cfg.TrailingLogs)
	}
	if gerr := guard.failed(); gerr != nil {
		return damaged(filepath.Join(newestSnap, "state.bin"), "does not restore (%v)", gerr)
	}
	if err != nil {
		return fmt.Errorf("start raft: %w", err)
	}
	return nil
}

// seedLogSize tells the metered log how many bytes of it follow the
// newest snapshot.
func (n *Node) seedLogSize(m *meteredLogs, snaps raft.SnapshotStore) error {
	var index uint64
	metas, err := snaps.List()
	if err != nil {
		return fmt.Errorf("list snapshots: %w", err)
	}
	if len(metas) > 0 {
		index = metas[0].Index
	}
	if err := m.seed(index); err != nil {
		return fmt.Errorf("read the raft log after snapshot %d: %w", index, err)
	}
	return nil
}

// bootstrap forms a one-member cluster of this node.
func (n *Node) bootstrap() error {
	boot := raft.Configuration{Servers: []raft.Server{{ID: raft.ServerID(n.cfg.NodeID), Address: n.trans.LocalAddr()}}}
	if err := n.raft.BootstrapCluster(boot).Error(); err != nil && !errors.Is(err, raft.ErrCantBootstrap) {
		return fmt.Errorf("bootstrap: %w", err)
	}
	n.log.Info("bootstrapped a new cluster", "node-id", n.cfg.NodeID, "cluster-id", n.id.clusterID())
	return nil
}

// Close stops the node: Raft, its transport and its stores.
func (n *Node) Close() error {
	var err error
	n.closeOnce.Do(func() {
		close(n.stop)
		if n.raft != nil {
			err = n.raft.Shutdown().Error()
		}
		n.wg.Wait()
		if t, ok := n.trans.(raft.WithClose); ok {
			t.Close()
		}
		if n.stream != nil && !n.stream.drain(raftTimeout) {
			n.log.Warn("raft connections still busy at shutdown")
		}
		n.closeStores()
	})
	return err
}

// dialOverrides maps member ids to the addresses to dial them at.
type dialOverrides struct {
	self     raft.ServerID
	selfAddr string
	to       map[string]string
}

// ServerAddr implements raft.ServerAddressProvider; an error makes Raft
// dial the member's own address (and log a warning).
func (d dialOverrides) ServerAddr(id raft.ServerID) (raft.ServerAddress, error) {
	if a, ok := d.to[string(id)]; ok {
		return raft.ServerAddress(a), nil
	}
	if id == d.self {
		return raft.ServerAddress(d.selfAddr), nil
	}
	return "", fmt.Errorf("no dial override for %s", id)
}

func (n *Node) closeStores() {
	if n.store != nil {
		n.store.Close()
	}
}

// ID is the node's id.
func (n *Node) ID() string { return n.cfg.NodeID }

// RaftAddr is the address Raft listens on.
func (n *Node) RaftAddr() string { return string(n.trans.LocalAddr()) }

// ClusterID is the id of the cluster this node's data belongs to, recorded
// in the data dir's IdentityFile; "" until a node that has not bootstrapped
// first hears from a member.
func (n *Node) ClusterID() string { return n.id.clusterID() }

// State returns this node's latest applied state, at once (a stale read).
func (n *Node) State() *fsm.State { return n.fsm.State() }

// Changed returns a channel closed when a newer state is applied.
func (n *Node) Changed() <-chan struct{} { return n.fsm.Changed() }

// IsLeader reports whether this node is the leader.
func (n *Node) IsLeader() bool { return n.raft.State() == raft.Leader }

// Leader returns the leader's id and API address, as far as this node knows.
func (n *Node) Leader() (id, apiAddr string, err error) {
	_, lid := n.raft.LeaderWithID()
	if lid == "" {
		return "", "", ErrNoLeader
	}
	node, ok := n.fsm.State().NodeAddress(string(lid))
	if !ok || node.APIAddress == "" {
		return string(lid), "", fmt.Errorf("leader %s has not published its API address yet: %w", lid, ErrNoLeader)
	}
	return string(lid), node.APIAddress, nil
}
