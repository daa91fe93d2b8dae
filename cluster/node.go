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
	trans  *raft.NetworkTransport
	stream *streamLayer
	store  *raftboltdb.BoltStore
	id     *identity

	notify      chan bool
	leaderReady atomic.Bool
	prop        *proposer

	stop      chan struct{}
	wg        sync.WaitGroup
	closeOnce sync.Once
}

// New opens (or creates) the node's data dir and starts Raft. With
// cfg.Bootstrap and an empty data dir it forms a one-member cluster; with
// existing state it rejoins the cluster it was part of.
func New(cfg Config) (*Node, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	log := cfg.Logger
	if log == nil {
		log = hclog.NewNullLogger()
	}
	if err := os.MkdirAll(cfg.DataDir, 0o700); err != nil {
		return nil, fmt.Errorf("create data dir: %w", err)
	}
	n := &Node{cfg: cfg, log: log.Named("cluster"), fsm: fsm.New(log.Named("fsm")), notify: make(chan bool, 16), stop: make(chan struct{})}

	// The data dir is checked before anything opens it for writing: it must
	// be this node's, and whole (datadir.go).
	id, err := loadIdentity(cfg.DataDir, cfg.NodeID, n.log)
	if err != nil {
		return nil, err
	}
	n.id = id
	dbPath := filepath.Join(cfg.DataDir, RaftDBFile)
	if err := checkRaftDB(dbPath); err != nil {
		return nil, err
	}
	newestSnap, err := checkSnapshots(cfg.DataDir)
	if err != nil {
		return nil, err
	}
	if err := safely(dbPath, func() error {
		// As etcd's backend: the freelist is not written on every commit
		// (it is rebuilt when the file opens), and kept as a hash map.
		store, err := raftboltdb.New(raftboltdb.Options{Path: dbPath, BoltOptions: &bolt.Options{
			Timeout: DataDirLockTimeout, NoFreelistSync: true, FreelistType: bolt.FreelistMapType}})
		n.store = store
		return err
	}); err != nil {
		return nil, fmt.Errorf("open raft log %s: %w", dbPath, err)
	}
	snaps, err := raft.NewFileSnapshotStoreWithLogger(cfg.DataDir, 2, log.Named("snapshot"))
	if err != nil {
		n.closeStores()
		return nil, fmt.Errorf("open snapshot store in %s: %w", cfg.DataDir, err)
	}
	var existing bool
	if err := safely(dbPath, func() (err error) {
		existing, err = raft.HasExistingState(n.store, n.store, snaps)
		return err
	}); err != nil {
		n.closeStores()
		return nil, fmt.Errorf("read raft state in %s: %w", cfg.DataDir, err)
	}
	switch {
	case cfg.Bootstrap && !existing:
		err = id.newCluster() // a new cluster is born here
	case !id.recorded():
		if existing {
			n.log.Warn("data dir has no identity file: recording this node's id", "file", id.path, "node-id", cfg.NodeID)
		}
		err = id.save()
	}
	if err != nil {
		n.closeStores()
		return nil, err
	}

	stream, err := newStreamLayer(cfg.RaftAddr, cfg.PeerTLS, id)
	if err != nil {
		n.closeStores()
		return nil, fmt.Errorf("raft transport on %s: %w", cfg.RaftAddr, err)
	}
	n.stream = stream
	tc := &raft.NetworkTransportConfig{Stream: stream, Logger: log.Named("transport"), MaxPool: 3, Timeout: raftTimeout}
	if len(cfg.PeerDialAddrs) > 0 {
		// Raft warns on every dial the provider has no answer for.
		tc.ServerAddressProvider = dialOverrides(cfg.PeerDialAddrs)
	}
	n.trans = raft.NewNetworkTransportWithConfig(tc)

	rc := raft.DefaultConfig()
	rc.LocalID = raft.ServerID(cfg.NodeID)
	rc.Logger = log.Named("raft")
	rc.HeartbeatTimeout = cfg.HeartbeatTimeout
	rc.ElectionTimeout = cfg.ElectionTimeout
	rc.LeaderLeaseTimeout = cfg.LeaderLeaseTimeout
	rc.CommitTimeout = cfg.CommitTimeout
	rc.SnapshotInterval = cfg.SnapshotInterval
	rc.SnapshotThreshold = cfg.SnapshotThreshold
	rc.TrailingLogs = cfg.TrailingLogs
	rc.NotifyCh = n.notify

	guard := &startGuard{FSM: n.fsm}
	guard.starting.Store(true)
	var logs raft.LogStore = n.store
	if cfg.LogCacheEntries > 0 && cfg.LogCacheBytes > 0 {
		logs = newLogCache(n.store, cfg.LogCacheEntries, cfg.LogCacheBytes)
	}
	r, err := raft.NewRaft(rc, guard, logs, n.store, snaps, n.trans)
	guard.starting.Store(false)
	if err == nil {
		n.raft = r
	}
	if gerr := guard.failed(); gerr != nil {
		n.Close()
		return nil, corrupt(filepath.Join(newestSnap, "state.bin"), "does not restore (%v)", gerr)
	}
	if err != nil {
		n.Close()
		return nil, fmt.Errorf("start raft: %w", err)
	}
	if cfg.Bootstrap && !existing {
		boot := raft.Configuration{Servers: []raft.Server{{ID: rc.LocalID, Address: n.trans.LocalAddr()}}}
		if err := r.BootstrapCluster(boot).Error(); err != nil && !errors.Is(err, raft.ErrCantBootstrap) {
			n.Close()
			return nil, fmt.Errorf("bootstrap: %w", err)
		}
		n.log.Info("bootstrapped a new cluster", "node-id", cfg.NodeID, "cluster-id", id.clusterID())
	}
	n.prop = newProposer(n, cfg.MaxEntriesInFlight, cfg.MaxCommandsPerEntry)
	n.wg.Add(2)
	go n.watchLeadership()
	go n.prop.run(n.stop, &n.wg)
	return n, nil
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
		if n.trans != nil {
			n.trans.Close()
		}
		if n.stream != nil && !n.stream.drain(raftTimeout) {
			n.log.Warn("raft connections still busy at shutdown")
		}
		n.closeStores()
	})
	return err
}

// dialOverrides maps member ids to the addresses to dial them at.
type dialOverrides map[string]string

// ServerAddr implements raft.ServerAddressProvider; an error makes Raft
// dial the member's own address.
func (d dialOverrides) ServerAddr(id raft.ServerID) (raft.ServerAddress, error) {
	if a, ok := d[string(id)]; ok {
		return raft.ServerAddress(a), nil
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
	node, ok := n.fsm.State().Node(string(lid))
	if !ok || node.APIAddress == "" {
		return string(lid), "", fmt.Errorf("leader %s has not published its API address yet: %w", lid, ErrNoLeader)
	}
	return string(lid), node.APIAddress, nil
}
