package cluster

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"

	"github.com/hashicorp/raft"
	"google.golang.org/protobuf/proto"

	statev1 "github.com/rationhq/ration/api/ration/state/v1"
	"github.com/rationhq/ration/fsm"
)

// Apply proposes cmd and returns the state machine's answer. It is the one
// way into the log: it stamps the header with the time, a random seed and
// this node's id, refuses commands above MaxCommandBytes, hands the command
// to the group commit (the only caller of raft.Apply), and turns a domain
// failure into an error matching its fsm sentinel (the result is returned
// as well). Only the leader applies; others get ErrNotLeader.
func (n *Node) Apply(ctx context.Context, cmd *statev1.Command) (*statev1.CommandResult, error) {
	if err := n.awaitTermClock(ctx); err != nil {
		return nil, err
	}
	return n.apply(ctx, cmd)
}

// apply is Apply without waiting for the term's clock: the leader's own
// first entries of a term.
func (n *Node) apply(ctx context.Context, cmd *statev1.Command) (*statev1.CommandResult, error) {
	if cmd.Header == nil {
		cmd.Header = &statev1.CommandHeader{}
	}
	cmd.Header.ProposedAt = n.now()
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
	case errors.Is(err, raft.ErrLeadershipLost):
		return fmt.Errorf("%w: %v", ErrOutcomeUnknown, err)
	case errors.Is(err, raft.ErrLeadershipTransferInProgress):
		// Raft refuses the command before it is in the log.
		return fmt.Errorf("%w: %v", ErrNotLeader, err)
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
func (n *Node) Heartbeat(ctx context.Context, e *statev1.HeartbeatEntry) (*statev1.CommandResult, error) {
	if !n.IsLeader() {
		return nil, ErrNotLeader
	}
	res, err := n.Apply(ctx, &statev1.Command{Header: &statev1.CommandHeader{Actor: "system"},
		Op: &statev1.Command_Heartbeat{Heartbeat: &statev1.HeartbeatBatch{Entries: []*statev1.HeartbeatEntry{e}}}})
	if err != nil {
		return nil, err
	}
	entries := res.GetHeartbeat().GetEntries()
	if len(entries) == 0 {
		return nil, errors.New("heartbeat answered with no entry")
	}
	return entries[0], nil
}
