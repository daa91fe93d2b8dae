package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"time"

	"github.com/spf13/cobra"

	"github.com/rationhq/ration/api/client"
	rationv1 "github.com/rationhq/ration/api/ration/v1"
)

func (a *app) clusterCommand() *cobra.Command {
	cmd := &cobra.Command{Use: "cluster", Short: "Membership and leadership (ClusterService)"}
	cmd.AddCommand(
		a.clusterStatusCommand(),
		a.clusterJoinCommand(),
		a.clusterRemoveCommand(),
		a.clusterTransferCommand(),
	)
	return cmd
}

func (a *app) clusterStatusCommand() *cobra.Command {
	var ready bool
	cmd := &cobra.Command{
		Use:   "status",
		Short: "Show the answering node's Raft state and the members, leader marked (waits up to --retry-for for a leader)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			resp, err := a.statusWhen(cmd.Context(), ready)
			if err != nil {
				return err
			}
			return a.print(resp, func(w io.Writer) {
				fmt.Fprintf(w, "node %s is %s, term %d, commit %d, applied %d, leader %s (%s), last contact %s ago\n",
					fmtStr(resp.GetNodeId()), fmtStr(resp.GetState()), resp.GetTerm(), resp.GetCommitIndex(),
					resp.GetAppliedIndex(), fmtStr(resp.GetLeaderId()), fmtStr(resp.GetLeaderApiAddress()),
					fmtDur(resp.GetLeaderContactAge()))
				ready := "ready"
				if r := resp.GetNotReady(); r != "" {
					ready = "NOT READY: " + r
				}
				clock := "not measured yet"
				if o := resp.GetClockOffset(); o != nil {
					clock = o.AsDuration().String() + " off the majority's"
				}
				fmt.Fprintf(w, "%s; clock %s\n", ready, clock)
				fmt.Fprintf(w, "cluster version %d; this node runs %s\n\n", max(resp.GetClusterVersion(), 1), fmtStr(resp.GetRelease()))
				row(w, "LEADER", "ID", "SUFFRAGE", "RAFT-ADDRESS", "API-ADDRESS", "RELEASE", "PROTOCOLS")
				for _, m := range resp.GetMembers() {
					mark := ""
					if m.GetLeader() {
						mark = "*"
					}
					protocols := "unknown"
					if m.GetMaxProtocol() > 0 {
						protocols = fmt.Sprintf("%d-%d", m.GetMinProtocol(), m.GetMaxProtocol())
					}
					row(w, mark, m.GetId(), fmtStr(m.GetSuffrage()), fmtStr(m.GetRaftAddress()), fmtStr(m.GetApiAddress()),
						fmtStr(m.GetRelease()), protocols)
				}
			})
		},
	}
	cmd.Flags().BoolVar(&ready, "ready", false, "wait up to --retry-for for the node to be ready (as /readyz), else fail: a health check")
	return cmd
}

func (a *app) clusterJoinCommand() *cobra.Command {
	return &cobra.Command{
		Use:   "join NODE_ID RAFT_ADDR API_ADDR",
		Short: "Add a node as a voter (joining again with the same addresses does nothing)",
		Args:  cobra.ExactArgs(3),
		RunE: func(cmd *cobra.Command, args []string) error {
			req := &rationv1.JoinRequest{NodeId: args[0], RaftAddress: args[1], ApiAddress: args[2]}
			a.joinerVersion(cmd.Context(), req)
			resp, err := a.api.Join(cmd.Context(), req)
			if err != nil {
				return err
			}
			return a.print(resp, func(w io.Writer) { fmt.Fprintf(w, "joined %s\n", args[0]) })
		},
	}
}

func (a *app) clusterRemoveCommand() *cobra.Command {
	return &cobra.Command{
		Use:   "remove NODE_ID",
		Short: "Take a node out of the cluster (the last voter cannot be removed)",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			req := &rationv1.RemoveRequest{NodeId: args[0]}
			resp, err := a.api.Remove(cmd.Context(), req)
			if err != nil {
				return err
			}
			return a.print(resp, func(w io.Writer) {
				if resp.GetRemoved() {
					fmt.Fprintf(w, "removed %s\n", args[0])
				} else {
					fmt.Fprintf(w, "%s is not a member; nothing to do\n", args[0])
				}
			})
		},
	}
}

func (a *app) clusterTransferCommand() *cobra.Command {
	return &cobra.Command{
		Use:   "transfer [NODE_ID]",
		Short: "Hand leadership to a node, or to the most up-to-date follower",
		Args:  cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			req := &rationv1.TransferLeadershipRequest{}
			if len(args) == 1 {
				req.NodeId = args[0]
			}
			resp, err := a.api.TransferLeadership(cmd.Context(), req)
			if err != nil {
				return err
			}
			return a.print(resp, func(w io.Writer) { fmt.Fprintf(w, "leader is now %s\n", resp.GetLeaderId()) })
		},
	}
}

func (a *app) snapshotCommand() *cobra.Command {
	cmd := &cobra.Command{Use: "snapshot", Short: "Back up and restore the state machine (ClusterService)"}
	cmd.AddCommand(a.snapshotSaveCommand(), a.snapshotRestoreCommand())
	return cmd
}

func (a *app) snapshotSaveCommand() *cobra.Command {
	return &cobra.Command{
		Use:   "save FILE",
		Short: `Save a fresh snapshot to FILE, atomically ("-" for stdout)`,
		Long: `Save a fresh snapshot of the state machine. The data goes to a temporary file
beside FILE that is renamed over it once complete, so FILE is either the old
content or a whole new snapshot. "-" writes to stdout.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			path := args[0]
			if path == "-" {
				_, _, err := a.saveSnapshot(cmd.Context(), a.stdout)
				return err
			}
			n, index, err := a.saveSnapshotFile(cmd.Context(), path)
			if err != nil {
				return err
			}
			// -o json: the stream's header without its data.
			return a.print(&rationv1.SaveSnapshotResponse{Index: index}, func(w io.Writer) {
				fmt.Fprintf(w, "saved %s: %d bytes at index %d\n", path, n, index)
			})
		},
	}
}

// saveSnapshotFile writes the snapshot to a temporary file in path's
// directory, syncs it and renames it to path.
func (a *app) saveSnapshotFile(ctx context.Context, path string) (n int64, index uint64, err error) {
	tmp, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".tmp-*")
	if err != nil {
		return 0, 0, err
	}
	defer func() {
		if err != nil {
			tmp.Close()
			os.Remove(tmp.Name())
		}
	}()
	bw := bufio.NewWriterSize(tmp, 1<<20)
	if n, index, err = a.saveSnapshot(ctx, bw); err != nil {
		return 0, 0, err
	}
	if err = bw.Flush(); err != nil {
		return 0, 0, err
	}
	if err = tmp.Sync(); err != nil {
		return 0, 0, err
	}
	if err = tmp.Close(); err != nil {
		return 0, 0, err
	}
	if err = os.Rename(tmp.Name(), path); err != nil {
		return 0, 0, err
	}
	return n, index, nil
}

// saveSnapshot streams SaveSnapshot into w and returns the bytes written and
// the snapshot's index.
func (a *app) saveSnapshot(ctx context.Context, w io.Writer) (n int64, index uint64, err error) {
	err = a.api.SaveSnapshot(ctx, &rationv1.SaveSnapshotRequest{},
		func(m *rationv1.SaveSnapshotResponse) error {
			if m.GetIndex() != 0 && index == 0 {
				index = m.GetIndex()
			}
			k, err := w.Write(m.GetData())
			n += int64(k)
			return err
		})
	if err == nil && n == 0 {
		err = errors.New("snapshot save: the server sent no data")
	}
	return n, index, err
}

func (a *app) snapshotRestoreCommand() *cobra.Command {
	return &cobra.Command{
		Use:   "restore FILE",
		Short: `Replace the whole cluster's state with a snapshot's ("-" for stdin)`,
		Long: `Replace the whole cluster's state with the snapshot in FILE ("-" for stdin).

WARNING: every service, item, worker and result now in the cluster is lost
and replaced by the snapshot's; take a snapshot save first.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			r, closeFn, err := a.open(args[0])
			if err != nil {
				return err
			}
			data, err := io.ReadAll(r)
			closeFn()
			if err != nil {
				return err
			}
			if len(data) == 0 {
				return fmt.Errorf("%s: empty", args[0])
			}
			resp, err := a.api.Restore(cmd.Context(), &rationv1.RestoreRequest{Data: data})
			if err != nil {
				return err
			}
			return a.print(resp, func(w io.Writer) {
				fmt.Fprintf(w, "restored %d bytes at index %d\n", len(data), resp.GetIndex())
			})
		},
	}
}

// statusWhen asks for the node's status until it knows a leader (with
// ready, until it is ready), for up to --retry-for (a node just started has
// no leader yet); if it is not so by then, it fails saying why.
func (a *app) statusWhen(ctx context.Context, ready bool) (*rationv1.StatusResponse, error) {
	deadline := time.Now().Add(a.retryFor)
	for {
		resp, err := a.api.Status(ctx, &rationv1.StatusRequest{})
		if err != nil || resp.GetLeaderId() != "" && (!ready || resp.GetNotReady() == "") {
			return resp, err
		}
		if !time.Now().Before(deadline) {
			if resp.GetLeaderId() != "" {
				return nil, fmt.Errorf("node %s is not ready: %s (waited --retry-for %s)", resp.GetNodeId(), resp.GetNotReady(), a.retryFor)
			}
			return nil, fmt.Errorf("no leader yet: node %s is %s in term %d with %d members (waited --retry-for %s)",
				resp.GetNodeId(), resp.GetState(), resp.GetTerm(), len(resp.GetMembers()), a.retryFor)
		}
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// joinerVersion asks the joining node which build it runs, so that the
// leader can refuse one that cannot apply the cluster version; a node that
// does not answer joins unnamed (the leader counts it as protocol 1).
func (a *app) joinerVersion(ctx context.Context, req *rationv1.JoinRequest) {
	c, err := client.New(client.Config{Addrs: []string{req.GetApiAddress()}, AdminToken: a.token, HTTPClient: a.httpClient,
		CallTimeout: 2 * time.Second, RetryFor: -1})
	if err != nil {
		return
	}
	st, err := c.Status(ctx, &rationv1.StatusRequest{})
	if err != nil {
		return
	}
	req.Release, req.MaxProtocol = st.GetRelease(), st.GetMaxProtocol()
}
