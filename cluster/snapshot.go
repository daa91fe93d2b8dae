package cluster

import (
	"context"
	"fmt"
	"io"

	"github.com/hashicorp/raft"

	statev1 "github.com/rationhq/ration/api/ration/state/v1"
)

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
// restores; the followers receive the state from it. The members' API
// addresses stay this cluster's: a backup restored into a new cluster
// names the old one's.
//
// WARNING: everything applied before the restore is replaced.
func (n *Node) Restore(r io.Reader, size int64) (uint64, error) {
	if !n.IsLeader() {
		return 0, ErrNotLeader
	}
	members := n.Members()
	if err := n.raft.Restore(&raft.SnapshotMeta{Version: raft.SnapshotVersionMax, Size: size}, r, n.cfg.ApplyTimeout); err != nil {
		return 0, fmt.Errorf("restore: %w", raftError(err))
	}
	// The restored state carries the index it was saved at, older than the
	// log's; one applied entry brings every node's applied index past the
	// restore, so reads that wait for the commit index are answered.
	ctx, cancel := context.WithTimeout(context.Background(), n.cfg.ApplyTimeout)
	defer cancel()
	if _, err := n.Apply(ctx, &statev1.Command{Header: &statev1.CommandHeader{Actor: "system"},
		Op: &statev1.Command_Tick{Tick: &statev1.Tick{}}}); err != nil {
		return 0, fmt.Errorf("restore applied, but the entry after it failed: %w", err)
	}
	// Followers find the leader's API by its address in the state.
	for _, m := range members {
		addr := m.APIAddress
		if m.ID == n.cfg.NodeID {
			addr = n.cfg.APIAddr
		}
		if got, ok := n.fsm.State().NodeAddress(m.ID); addr == "" || ok && got.APIAddress == addr {
			continue
		}
		if _, err := n.Apply(ctx, &statev1.Command{Header: &statev1.CommandHeader{Actor: "system"},
			Op: &statev1.Command_SetNode{SetNode: &statev1.SetNode{NodeId: m.ID, ApiAddress: addr}}}); err != nil {
			return 0, fmt.Errorf("restore applied, but the members' API addresses were not: %w", err)
		}
	}
	return n.fsm.State().Index(), nil
}
