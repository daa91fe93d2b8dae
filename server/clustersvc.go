package server

import (
	"bytes"
	"context"
	"errors"
	"io"

	"connectrpc.com/connect"
	"google.golang.org/protobuf/types/known/durationpb"

	rationv1 "github.com/rationhq/ration/api/ration/v1"
	"github.com/rationhq/ration/api/ration/v1/rationv1connect"
	"github.com/rationhq/ration/fsm"
)

type clusterHandler struct{ s *Server }

var _ rationv1connect.ClusterServiceHandler = (*clusterHandler)(nil)

func (h *clusterHandler) Status(ctx context.Context, req *connect.Request[rationv1.StatusRequest]) (*connect.Response[rationv1.StatusResponse], error) {
	st := h.s.store.Status()
	out := &rationv1.StatusResponse{
		NodeId: st.NodeID, State: st.State, LeaderId: st.LeaderID, LeaderApiAddress: st.LeaderAPIAddr, Term: st.Term,
		CommitIndex: st.CommitIndex, AppliedIndex: st.AppliedIndex,
	}
	if st.LeaderContactAge >= 0 {
		out.LeaderContactAge = durationpb.New(st.LeaderContactAge)
	}
	out.NotReady = h.s.notReady()
	if o := h.s.store.ClockOffset(); o.Fresh() {
		out.ClockOffset = durationpb.New(o.Offset)
	}
	own := h.s.store.OwnVersion()
	out.ClusterVersion, out.Release, out.MinProtocol, out.MaxProtocol = st.ClusterVersion, own.Release, own.MinProtocol, own.MaxProtocol
	for _, m := range st.Members {
		out.Members = append(out.Members, &rationv1.Member{Id: m.ID, RaftAddress: m.RaftAddress, ApiAddress: m.APIAddress,
			Suffrage: m.Suffrage, Leader: m.Leader, Release: m.Version.Release,
			MinProtocol: m.Version.MinProtocol, MaxProtocol: m.Version.MaxProtocol})
	}
	return reply(h.s, out), nil
}

func (h *clusterHandler) Join(ctx context.Context, req *connect.Request[rationv1.JoinRequest]) (*connect.Response[rationv1.JoinResponse], error) {
	m := req.Msg
	if m.GetNodeId() == "" || m.GetRaftAddress() == "" || m.GetApiAddress() == "" {
		return nil, h.s.invalid(errors.New("join needs node_id, raft_address and api_address"))
	}
	// Joining is idempotent: a member joining again changes nothing.
	return onLeader(h.s, ctx, req, true, func() (*rationv1.JoinResponse, error) {
		if cv := h.s.store.State().ClusterVersion(); max(m.GetMaxProtocol(), 1) < cv {
			release := m.GetRelease()
			if release == "" {
				release = "a build that does not say (one from before versions were published)"
			}
			return nil, h.s.errorf(connect.CodeFailedPrecondition, fsm.ErrClusterVersion.Reason,
				"node %s runs %s, which applies protocols up to %d; the cluster runs version %d (this node runs %s): "+
					"join it with a build that applies protocol %d", m.GetNodeId(), release, max(m.GetMaxProtocol(), 1), cv,
				h.s.store.OwnVersion().Release, cv)
		}
		return &rationv1.JoinResponse{}, h.s.store.Join(ctx, m.GetNodeId(), m.GetRaftAddress(), m.GetApiAddress())
	})
}

func (h *clusterHandler) Remove(ctx context.Context, req *connect.Request[rationv1.RemoveRequest]) (*connect.Response[rationv1.RemoveResponse], error) {
	if req.Msg.GetNodeId() == "" {
		return nil, h.s.invalid(errors.New("node_id is required"))
	}
	// Removing a member twice removes it once.
	return onLeader(h.s, ctx, req, true, func() (*rationv1.RemoveResponse, error) {
		removed, err := h.s.store.Remove(ctx, req.Msg.GetNodeId())
		return &rationv1.RemoveResponse{Removed: removed}, err
	})
}

func (h *clusterHandler) TransferLeadership(ctx context.Context, req *connect.Request[rationv1.TransferLeadershipRequest]) (*connect.Response[rationv1.TransferLeadershipResponse], error) {
	return onLeader(h.s, ctx, req, false, func() (*rationv1.TransferLeadershipResponse, error) {
		id, err := h.s.store.TransferLeadership(ctx, req.Msg.GetNodeId())
		return &rationv1.TransferLeadershipResponse{LeaderId: id}, err
	})
}

// snapshotChunk is the size of one SaveSnapshot message.
const snapshotChunk = 1 << 20

// SaveSnapshot streams this node's current state in the snapshot format:
// any node can serve a backup, so backups never load the leader, and the
// state is an immutable version, so writing it never blocks Apply.
func (h *clusterHandler) SaveSnapshot(ctx context.Context, req *connect.Request[rationv1.SaveSnapshotRequest], stream *connect.ServerStream[rationv1.SaveSnapshotResponse]) error {
	st := h.s.store.State()
	pr, pw := io.Pipe()
	go func() { pw.CloseWithError(st.WriteSnapshot(pw)) }()
	defer pr.Close()
	stream.ResponseHeader().Set(ServedByHeader, h.s.store.ID())
	buf := make([]byte, snapshotChunk)
	first := true
	for {
		n, err := io.ReadFull(pr, buf)
		if n > 0 {
			msg := &rationv1.SaveSnapshotResponse{Data: buf[:n]}
			if first {
				msg.Index, first = st.Index(), false
			}
			if err := stream.Send(msg); err != nil {
				return err
			}
		}
		if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
			return nil
		}
		if err != nil {
			return h.s.rpcError(err)
		}
	}
}

func (h *clusterHandler) Restore(ctx context.Context, req *connect.Request[rationv1.RestoreRequest]) (*connect.Response[rationv1.RestoreResponse], error) {
	data := req.Msg.GetData()
	if len(data) == 0 {
		return nil, h.s.invalid(errors.New("data is empty: send a snapshot file from SaveSnapshot"))
	}
	// A snapshot that does not decode is refused before Raft stores it.
	if err := fsm.CheckSnapshot(bytes.NewReader(data)); err != nil {
		return nil, h.s.invalid(err)
	}
	return onLeader(h.s, ctx, req, false, func() (*rationv1.RestoreResponse, error) {
		idx, err := h.s.store.Restore(bytes.NewReader(data), int64(len(data)))
		return &rationv1.RestoreResponse{Index: idx}, err
	})
}
