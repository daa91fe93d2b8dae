package cluster

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/raft"
	raftboltdb "github.com/hashicorp/raft-boltdb/v2"
	bolt "go.etcd.io/bbolt"
	"google.golang.org/protobuf/proto"

	rationv1 "github.com/rationhq/ration/api/ration/v1"
	"github.com/rationhq/ration/fsm"
)

// Errors a Node returns; server maps them to RPC codes.
var (
	// ErrNotLeader: the operation needs the leader and this node is not it.
	ErrNotLeader = errors.New("not the leader")
	// ErrNoLeader: no leader is known; try again after an election.
	ErrNoLeader = errors.New("no leader known")
	// ErrNotReady: this node just became leader and has not yet applied its
	// predecessor's entries.
	ErrNotReady = errors.New("leader not ready yet")
	// ErrOutcomeUnknown: the command may or may not have been applied (the
	// leader lost leadership or the deadline passed); retry with the same
	// request id.
	ErrOutcomeUnknown = errors.New("outcome unknown: retry with the same request id")
	// ErrTooLarge: the command exceeds MaxCommandBytes.
	ErrTooLarge = errors.New("command too large")
	// ErrShutdown: the node is shutting down.
	ErrShutdown = errors.New("node is shutting down")
	// ErrLastVoter: removing the node would leave the cluster without voters.
	ErrLastVoter = errors.New("cannot remove the last voter")
	// ErrUnknownNode: no member has the id.
	ErrUnknownNode = errors.New("no such member")
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

// LeaderContactAge is the time since this node last heard from the leader
// (0 on the leader).
func (n *Node) LeaderContactAge() time.Duration {
	if n.IsLeader() {
		return 0
	}
	last := n.raft.LastContact()
	if last.IsZero() {
		return -1
	}
	return n.cfg.Now().Sub(last)
}

// Apply proposes cmd and returns the state machine's answer. It is the one
// way into the log: it stamps the header with the time, a random seed and
// this node's id, refuses commands above MaxCommandBytes, hands the command
// to the group commit (the only caller of raft.Apply), and turns a domain
// failure into an error matching its fsm sentinel (the result is returned
// as well). Only the leader applies; others get ErrNotLeader.
func (n *Node) Apply(ctx context.Context, cmd *rationv1.Command) (*rationv1.CommandResult, error) {
	if cmd.Header == nil {
		cmd.Header = &rationv1.CommandHeader{}
	}
	cmd.Header.ProposedAt = n.cfg.Now().UnixNano()
	cmd.Header.Seed = rand.Uint64()
	cmd.Header.Proposer = n.cfg.NodeID
	data, err := proto.Marshal(cmd)
	if err != nil {
		return nil, fmt.Errorf("marshal command: %w", err)
	}
	if len(data) > n.cfg.MaxCommandBytes {
		return nil, fmt.Errorf("%w: %d bytes, limit %d", ErrTooLarge, len(data), n.cfg.MaxCommandBytes)
	}
	if !n.IsLeader() {
		return nil, ErrNotLeader
	}
	res, err := n.prop.propose(ctx, data)
	if err != nil {
		return nil, err
	}
	return res, fsm.ResultError(res)
}

func raftError(err error) error {
	switch {
	case errors.Is(err, raft.ErrNotLeader):
		return ErrNotLeader
	case errors.Is(err, raft.ErrLeadershipLost), errors.Is(err, raft.ErrLeadershipTransferInProgress):
		return fmt.Errorf("%w: %v", ErrOutcomeUnknown, err)
	case errors.Is(err, raft.ErrEnqueueTimeout):
		return fmt.Errorf("%w: %v", ErrNotReady, err)
	case errors.Is(err, raft.ErrRaftShutdown):
		return ErrShutdown
	}
	return err
}

// Heartbeat extends one worker's leases and returns the entry's own
// result: an error result or a heartbeat_entry. It is an ordinary command
// through Apply, so heartbeats arriving together share log entries through
// the group commit, as every command does. The header carries no request
// id: the state machine keeps no request-id record for a heartbeat.
func (n *Node) Heartbeat(ctx context.Context, e *rationv1.HeartbeatEntry) (*rationv1.CommandResult, error) {
	if !n.IsLeader() {
		return nil, ErrNotLeader
	}
	res, err := n.Apply(ctx, &rationv1.Command{Header: &rationv1.CommandHeader{Actor: "system"},
		Op: &rationv1.Command_Heartbeat{Heartbeat: &rationv1.HeartbeatBatch{Entries: []*rationv1.HeartbeatEntry{e}}}})
	if err != nil {
		return nil, err
	}
	entries := res.GetHeartbeat().GetEntries()
	if len(entries) == 0 {
		return nil, errors.New("heartbeat answered with no entry")
	}
	return entries[0], nil
}

// ReadIndex returns an index that a linearizable read must wait for: the
// leader's commit index, confirmed by a round of heartbeats to a quorum so
// that a deposed leader cannot answer. Only the leader answers.
func (n *Node) ReadIndex(ctx context.Context) (uint64, error) {
	if !n.IsLeader() {
		return 0, ErrNotLeader
	}
	if !n.leaderReady.Load() {
		return 0, ErrNotReady
	}
	idx := n.raft.CommitIndex()
	done := make(chan error, 1)
	go func() { done <- n.raft.VerifyLeader().Error() }()
	select {
	case err := <-done:
		if err != nil {
			return 0, raftError(err)
		}
	case <-ctx.Done():
		return 0, ctx.Err()
	}
	return idx, nil
}

// WaitApplied waits until this node's state machine has applied index.
func (n *Node) WaitApplied(ctx context.Context, index uint64) (*fsm.State, error) {
	for {
		ch := n.fsm.Changed()
		if st := n.fsm.State(); st.Index() >= index {
			return st, nil
		}
		select {
		case <-ch:
		case <-ctx.Done():
			return nil, fmt.Errorf("waiting to apply index %d: %w", index, ctx.Err())
		case <-n.stop:
			return nil, ErrShutdown
		}
	}
}

// LinearizableState returns state that reflects every write acknowledged
// before the call. Only the leader answers; a follower gets the read index
// from the leader and calls WaitApplied.
func (n *Node) LinearizableState(ctx context.Context) (*fsm.State, error) {
	idx, err := n.ReadIndex(ctx)
	if err != nil {
		return nil, err
	}
	return n.WaitApplied(ctx, idx)
}

// watchLeadership starts the leader's loop when this node gains leadership
// and stops it when it loses it. NotifyCh delivers every change in order.
func (n *Node) watchLeadership() {
	defer n.wg.Done()
	var running *leaderRun
	stopLoop := func() {
		if running != nil {
			running.stop()
			running = nil
		}
		n.leaderReady.Store(false)
	}
	defer stopLoop()
	for {
		select {
		case <-n.stop:
			return
		case leader := <-n.notify:
			stopLoop()
			if !leader {
				n.log.Info("lost leadership")
				continue
			}
			n.log.Info("gained leadership")
			running = startLeaderRun(n.leaderLoop)
		}
	}
}

// leaderRun is one term's leader loop.
type leaderRun struct {
	cancel context.CancelFunc
	done   chan struct{}
}

func startLeaderRun(loop func(context.Context)) *leaderRun {
	ctx, cancel := context.WithCancel(context.Background())
	r := &leaderRun{cancel: cancel, done: make(chan struct{})}
	go func() {
		defer close(r.done)
		loop(ctx)
	}()
	return r
}

func (r *leaderRun) stop() {
	r.cancel()
	<-r.done
}

// leaderLoop is the leader's housekeeping: it waits until every earlier
// entry is applied, publishes this node's API address, then proposes a Tick
// every TickInterval. Leases expire only after FailoverGrace has passed since
// leadership began, so workers can reach the new leader first.
func (n *Node) leaderLoop(ctx context.Context) {
	if err := n.raft.Barrier(0).Error(); err != nil {
		n.log.Warn("barrier after election failed", "error", err)
		return
	}
	// Raft's no-op and barrier entries never reach the state machine, so
	// its applied index would stay behind the commit index until the next
	// command, and reads waiting for the commit index would wait with it.
	// An empty tick closes the gap before reads are served.
	if _, err := n.Apply(ctx, &rationv1.Command{Header: &rationv1.CommandHeader{Actor: "system"},
		Op: &rationv1.Command_Tick{Tick: &rationv1.Tick{}}}); err != nil {
		n.log.Warn("first entry after election failed", "error", err)
		return
	}
	n.leaderReady.Store(true)
	since := n.cfg.Now()
	if node, ok := n.fsm.State().Node(n.cfg.NodeID); !ok || node.APIAddress != n.cfg.APIAddr {
		cmd := &rationv1.Command{Header: &rationv1.CommandHeader{Actor: "system"},
			Op: &rationv1.Command_SetNode{SetNode: &rationv1.SetNode{NodeId: n.cfg.NodeID, ApiAddress: n.cfg.APIAddr}}}
		if _, err := n.Apply(ctx, cmd); err != nil {
			n.log.Warn("cannot publish API address", "error", err)
		}
	}
	t := time.NewTicker(n.cfg.TickInterval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		grace := n.cfg.Now().Sub(since) >= n.cfg.FailoverGrace
		for more := true; more && ctx.Err() == nil; {
			tick := &rationv1.Tick{
				ExpireLeases:      grace,
				DeactivateIdle:    grace,
				ActivityRetention: int64(n.cfg.ActivityRetention),
				ActivityMax:       n.cfg.ActivityMax,
				RequestRetention:  int64(n.cfg.RequestRetention),
				MaxTransitions:    n.cfg.MaxTransitionsPerTick,
			}
			// An idle cluster writes nothing: a tick with nothing due is skipped.
			if !n.fsm.State().TickDue(n.cfg.Now().UnixNano(), tick) {
				break
			}
			res, err := n.Apply(ctx, &rationv1.Command{Header: &rationv1.CommandHeader{Actor: "system"}, Op: &rationv1.Command_Tick{Tick: tick}})
			if err != nil {
				if ctx.Err() == nil {
					n.log.Warn("tick failed", "error", err)
				}
				break
			}
			more = res.GetTick().GetMore()
		}
	}
}

// Join adds a voter, idempotently: nothing changes if a member already has
// this id and address; a member matching only one of them is removed first.
// It also records the node's API address in the replicated state.
func (n *Node) Join(ctx context.Context, id, raftAddr, apiAddr string) error {
	if !n.IsLeader() {
		return ErrNotLeader
	}
	if id == "" || raftAddr == "" {
		return errors.New("join needs a node id and a raft address")
	}
	cf := n.raft.GetConfiguration()
	if err := cf.Error(); err != nil {
		return raftError(err)
	}
	present := false
	var stale []raft.Server
	for _, s := range cf.Configuration().Servers {
		switch {
		case s.ID == raft.ServerID(id) && s.Address == raft.ServerAddress(raftAddr):
			present = true
		case s.ID == raft.ServerID(id) || s.Address == raft.ServerAddress(raftAddr):
			stale = append(stale, s)
		}
	}
	if !present {
		// Nothing changes unless the new member answers over Raft.
		if err := n.probe(ctx, id, raftAddr); err != nil {
			return err
		}
	}
	for _, s := range stale {
		if err := n.raft.RemoveServer(s.ID, 0, 0).Error(); err != nil {
			return fmt.Errorf("remove stale member %s at %s: %w", s.ID, s.Address, raftError(err))
		}
	}
	if !present {
		if err := n.raft.AddVoter(raft.ServerID(id), raft.ServerAddress(raftAddr), 0, 0).Error(); err != nil {
			return fmt.Errorf("add voter %s at %s: %w", id, raftAddr, raftError(err))
		}
		n.log.Info("member joined", "node-id", id, "raft-address", raftAddr)
	}
	if node, ok := n.fsm.State().Node(id); ok && node.APIAddress == apiAddr {
		return nil
	}
	_, err := n.Apply(ctx, &rationv1.Command{Header: &rationv1.CommandHeader{Actor: "admin"},
		Op: &rationv1.Command_SetNode{SetNode: &rationv1.SetNode{NodeId: id, ApiAddress: apiAddr}}})
	return err
}

// Remove takes a member out of the cluster and reports whether it was one:
// removing a node that is not a member does nothing, so a retried Remove
// succeeds. It refuses to remove the last voter.
func (n *Node) Remove(ctx context.Context, id string) (bool, error) {
	if !n.IsLeader() {
		return false, ErrNotLeader
	}
	cf := n.raft.GetConfiguration()
	if err := cf.Error(); err != nil {
		return false, raftError(err)
	}
	found, voters := false, 0
	for _, s := range cf.Configuration().Servers {
		if s.Suffrage == raft.Voter {
			voters++
		}
		found = found || s.ID == raft.ServerID(id)
	}
	if !found {
		if _, ok := n.fsm.State().Node(id); ok {
			// Left in the address book by a removal cut short: finish it.
			_, err := n.Apply(ctx, &rationv1.Command{Header: &rationv1.CommandHeader{Actor: "admin"},
				Op: &rationv1.Command_RemoveNode{RemoveNode: &rationv1.RemoveNode{NodeId: id}}})
			return false, err
		}
		return false, nil
	}
	if voters <= 1 {
		return false, ErrLastVoter
	}
	if err := n.raft.RemoveServer(raft.ServerID(id), 0, 0).Error(); err != nil {
		return false, fmt.Errorf("remove %s: %w", id, raftError(err))
	}
	n.log.Info("member removed", "node-id", id)
	if _, ok := n.fsm.State().Node(id); !ok || !n.IsLeader() {
		return true, nil // a leader that removed itself steps down here
	}
	_, err := n.Apply(ctx, &rationv1.Command{Header: &rationv1.CommandHeader{Actor: "admin"},
		Op: &rationv1.Command_RemoveNode{RemoveNode: &rationv1.RemoveNode{NodeId: id}}})
	return true, err
}

// TransferLeadership hands leadership to id, or to the most up-to-date
// follower when id is empty, and returns the new leader's id.
func (n *Node) TransferLeadership(ctx context.Context, id string) (string, error) {
	if !n.IsLeader() {
		return "", ErrNotLeader
	}
	var f raft.Future
	if id == "" {
		f = n.raft.LeadershipTransfer()
	} else {
		addr := ""
		for _, m := range n.Members() {
			if m.ID == id {
				addr = m.RaftAddress
			}
		}
		if addr == "" {
			return "", fmt.Errorf("%w: %q", ErrUnknownNode, id)
		}
		f = n.raft.LeadershipTransferToServer(raft.ServerID(id), raft.ServerAddress(addr))
	}
	if err := f.Error(); err != nil {
		return "", fmt.Errorf("transfer leadership: %w", err)
	}
	for ctx.Err() == nil {
		if lid, _, err := n.Leader(); err == nil && lid != n.cfg.NodeID {
			return lid, nil
		}
		select {
		case <-ctx.Done():
		case <-time.After(10 * time.Millisecond):
		}
	}
	return "", ctx.Err()
}

// Member is one server of the Raft configuration.
type Member struct {
	ID          string
	RaftAddress string
	APIAddress  string
	Suffrage    string
	Leader      bool
}

// Members lists the Raft configuration with each member's API address.
func (n *Node) Members() []Member {
	cf := n.raft.GetConfiguration()
	if cf.Error() != nil {
		return nil
	}
	_, lid := n.raft.LeaderWithID()
	st := n.fsm.State()
	var out []Member
	for _, s := range cf.Configuration().Servers {
		m := Member{ID: string(s.ID), RaftAddress: string(s.Address), Suffrage: s.Suffrage.String(), Leader: s.ID == lid}
		if node, ok := st.Node(m.ID); ok {
			m.APIAddress = node.APIAddress
		}
		out = append(out, m)
	}
	return out
}

// Status is a node's view of the cluster.
type Status struct {
	NodeID, State, LeaderID, LeaderAPIAddr string
	Term, CommitIndex, AppliedIndex        uint64
	LeaderContactAge                       time.Duration
	Members                                []Member
}

// Status reports this node's view of the cluster.
func (n *Node) Status() Status {
	s := Status{NodeID: n.cfg.NodeID, State: n.raft.State().String(), Term: n.raft.CurrentTerm(),
		CommitIndex: n.raft.CommitIndex(), AppliedIndex: n.fsm.State().Index(), LeaderContactAge: n.LeaderContactAge(),
		Members: n.Members()}
	s.LeaderID, s.LeaderAPIAddr, _ = n.Leader()
	return s
}

// Snapshot takes a fresh snapshot and returns it for reading; the caller
// closes it.
func (n *Node) Snapshot() (*raft.SnapshotMeta, io.ReadCloser, error) {
	f := n.raft.Snapshot()
	if err := f.Error(); err != nil {
		return nil, nil, fmt.Errorf("take snapshot: %w", err)
	}
	return f.Open()
}

// Restore replaces the cluster's state with a snapshot's. Only the leader
// restores; the followers receive the state from it.
//
// WARNING: everything applied before the restore is replaced.
func (n *Node) Restore(r io.Reader, size int64) (uint64, error) {
	if !n.IsLeader() {
		return 0, ErrNotLeader
	}
	if err := n.raft.Restore(&raft.SnapshotMeta{Version: raft.SnapshotVersionMax, Size: size}, r, n.cfg.ApplyTimeout); err != nil {
		return 0, fmt.Errorf("restore: %w", raftError(err))
	}
	// The restored state carries the index it was saved at, older than the
	// log's; one applied entry brings every node's applied index past the
	// restore, so reads that wait for the commit index are answered.
	ctx, cancel := context.WithTimeout(context.Background(), n.cfg.ApplyTimeout)
	defer cancel()
	if _, err := n.Apply(ctx, &rationv1.Command{Header: &rationv1.CommandHeader{Actor: "system"},
		Op: &rationv1.Command_Tick{Tick: &rationv1.Tick{}}}); err != nil {
		return 0, fmt.Errorf("restore applied, but the entry after it failed: %w", err)
	}
	return n.fsm.State().Index(), nil
}
