package cluster

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/hashicorp/raft"

	statev1 "github.com/rationhq/ration/api/ration/state/v1"
)

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
	if node, ok := n.fsm.State().NodeAddress(id); ok && node.APIAddress == apiAddr {
		return nil
	}
	_, err := n.Apply(ctx, &statev1.Command{Header: &statev1.CommandHeader{Actor: "admin"},
		Op: &statev1.Command_SetNode{SetNode: &statev1.SetNode{NodeId: id, ApiAddress: apiAddr}}})
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
		if _, ok := n.fsm.State().NodeAddress(id); ok {
			// Left in the address book by a removal cut short: finish it.
			_, err := n.Apply(ctx, &statev1.Command{Header: &statev1.CommandHeader{Actor: "admin"},
				Op: &statev1.Command_RemoveNode{RemoveNode: &statev1.RemoveNode{NodeId: id}}})
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
	if _, ok := n.fsm.State().NodeAddress(id); !ok || !n.IsLeader() {
		return true, nil // a leader that removed itself steps down here
	}
	_, err := n.Apply(ctx, &statev1.Command{Header: &statev1.CommandHeader{Actor: "admin"},
		Op: &statev1.Command_RemoveNode{RemoveNode: &statev1.RemoveNode{NodeId: id}}})
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
		if rerr := raftError(err); rerr != err {
			return "", rerr
		}
		return "", fmt.Errorf("%w: %v", ErrTransferFailed, err)
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
	// Version is its build as last heard (versions.go); Known is false
	// while nothing was heard lately.
	Version MemberVersion
	Known   bool
}

// HandOver passes leadership to another voter if this node leads, so that
// stopping it costs the cluster no election timeout (as etcd does when a
// leader is stopped); elsewhere, or as the only voter, it does nothing.
// Raft bounds the transfer by the election timeout.
func (n *Node) HandOver() error {
	if !n.IsLeader() {
		return nil
	}
	voters := 0
	for _, m := range n.Members() {
		if m.Suffrage == raft.Voter.String() {
			voters++
		}
	}
	if voters < 2 {
		return nil
	}
	n.log.Info("handing leadership over before stopping")
	if err := n.raft.LeadershipTransfer().Error(); err != nil {
		return fmt.Errorf("hand leadership over: %w", err)
	}
	return nil
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
		if node, ok := st.NodeAddress(m.ID); ok {
			m.APIAddress = node.APIAddress
		}
		m.Version, m.Known = n.memberVersion(m.ID)
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
	// ClusterVersion is the protocol every member applies (fsm/version.go).
	ClusterVersion uint32
}

// Status reports this node's view of the cluster.
func (n *Node) Status() Status {
	s := Status{NodeID: n.cfg.NodeID, State: n.raft.State().String(), Term: n.raft.CurrentTerm(),
		CommitIndex: n.raft.CommitIndex(), AppliedIndex: n.fsm.State().Index(), LeaderContactAge: n.LeaderContactAge(),
		Members: n.Members(), ClusterVersion: n.fsm.State().ClusterVersion()}
	s.LeaderID, s.LeaderAPIAddr, _ = n.Leader()
	return s
}
