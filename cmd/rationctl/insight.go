package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"
	"time"

	"connectrpc.com/connect"
	"github.com/spf13/cobra"

	"github.com/rationhq/ration/api/client"
	rationv1 "github.com/rationhq/ration/api/ration/v1"
)

func (a *app) statsCommand() *cobra.Command {
	var workerID string
	cmd := &cobra.Command{
		Use:   "stats [SERVICE]",
		Short: "Counts for one service or all, and optionally one worker's registrations",
		Args:  cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			req := &rationv1.GetStatsRequest{WorkerId: workerID, Consistency: a.consistency}
			if len(args) == 1 {
				req.Service = args[0]
			}
			resp, err := a.api.GetStats(cmd.Context(), req)
			if err != nil {
				return err
			}
			return a.print(resp, func(w io.Writer) {
				serviceTable(w, resp.GetServices(), resp.GetItems())
				b := resp.GetBuckets()
				fmt.Fprintf(w, "\nbuckets: unassigned=%d leased=%d dead=%d done=%d\n",
					b.GetUnassigned(), b.GetLeased(), b.GetDead(), b.GetDone())
				if len(resp.GetWorkers()) > 0 {
					io.WriteString(w, "\n")
					workerTable(w, resp.GetWorkers(), true)
				}
			})
		},
	}
	cmd.Flags().StringVar(&workerID, "worker", "", "also show this worker's registrations")
	return cmd
}

func (a *app) workersCommand() *cobra.Command {
	var limit int
	cmd := &cobra.Command{
		Use:   "workers SERVICE",
		Short: "List a service's workers with their counters",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			all := &rationv1.ListWorkersResponse{}
			req := &rationv1.ListWorkersRequest{Service: args[0], Consistency: a.consistency}
			for {
				req.PageSize = pageSize(limit, len(all.Workers))
				resp, err := a.api.ListWorkers(cmd.Context(), req)
				if err != nil {
					return err
				}
				all.Workers = append(all.Workers, resp.GetWorkers()...)
				all.NextPageToken, all.Read = resp.GetNextPageToken(), resp.GetRead()
				if all.NextPageToken == "" || limitReached(limit, len(all.Workers)) {
					break
				}
				req.PageToken = all.NextPageToken
			}
			if limit > 0 && len(all.Workers) > limit {
				all.Workers = all.Workers[:limit]
			}
			return a.print(all, func(w io.Writer) { workerTable(w, all.Workers, false) })
		},
	}
	cmd.Flags().IntVar(&limit, "limit", 100, "most workers to list (0: all)")
	return cmd
}

// workerTable lists workers; the trust columns show, before the free-text
// ones, when a worker listed is in a service that validates.
func workerTable(w io.Writer, workers []*rationv1.WorkerInfo, withService bool) {
	trust := slices.ContainsFunc(workers, func(wk *rationv1.WorkerInfo) bool { return wk.GetTrust() != nil })
	head := []any{"WORKER", "STATE", "HELD", "GRANTED", "DONE", "EXPIRED", "REJECTED"}
	if withService {
		head = append([]any{"SERVICE"}, head...)
	}
	if trust {
		head = append(head, trustHeads...)
	}
	head = append(head, "LAST-SEEN", "SUSPECT")
	if trust {
		head = append(head, "WHY")
	}
	row(w, head...)
	for _, wk := range workers {
		state := enumName(wk.GetState(), "WORKER_STATE_")
		if wk.GetBlocked() {
			state += "/blocked"
		}
		c := wk.GetCounters()
		cells := []any{wk.GetWorkerId(), state, wk.GetHeld(), c.GetLeasesGranted(), c.GetBucketsDone(),
			c.GetLeasesExpired(), c.GetRejected()}
		if withService {
			cells = append([]any{wk.GetService()}, cells...)
		}
		if trust {
			cells = append(cells, trustCells(wk)...)
		}
		cells = append(cells, fmtTime(wk.GetLastSeen()), fmtStr(strings.Join(wk.GetSuspectReasons(), "; ")))
		if trust {
			cells = append(cells, fmtStr(wk.GetTrust().GetWhy()))
		}
		row(w, cells...)
	}
}

func (a *app) bucketsCommand() *cobra.Command {
	var (
		state, holder string
		limit         int
	)
	cmd := &cobra.Command{
		Use:   "buckets SERVICE",
		Short: "List a service's buckets",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			st, err := parseEnum("state", state, "BUCKET_STATE_", rationv1.BucketState_value)
			if err != nil {
				return err
			}
			all := &rationv1.ListBucketsResponse{}
			req := &rationv1.ListBucketsRequest{Service: args[0], State: rationv1.BucketState(st), Holder: holder, Consistency: a.consistency}
			for {
				req.PageSize = pageSize(limit, len(all.Buckets))
				resp, err := a.api.ListBuckets(cmd.Context(), req)
				if err != nil {
					return err
				}
				all.Buckets = append(all.Buckets, resp.GetBuckets()...)
				all.NextPageToken, all.Read = resp.GetNextPageToken(), resp.GetRead()
				if all.NextPageToken == "" || limitReached(limit, len(all.Buckets)) {
					break
				}
				req.PageToken = all.NextPageToken
			}
			if limit > 0 && len(all.Buckets) > limit {
				all.Buckets = all.Buckets[:limit]
			}
			return a.print(all, func(w io.Writer) {
				row(w, "BUCKET", "STATE", "PRIORITY", "ITEMS", "HOLDER", "EPOCH", "DEADLINE")
				for _, b := range all.Buckets {
					row(w, b.GetId(), enumName(b.GetState(), "BUCKET_STATE_"), b.GetPriority(), len(b.GetItems()),
						fmtStr(b.GetHolder()), fmtID(b.GetEpoch()), fmtTime(b.GetDeadline()))
				}
			})
		},
	}
	cmd.Flags().StringVar(&state, "state", "", "only buckets in this state: unassigned, leased, dead or done")
	cmd.Flags().StringVar(&holder, "holder", "", "only buckets this worker holds")
	cmd.Flags().IntVar(&limit, "limit", 100, "most buckets to list (0: all)")
	return cmd
}

func (a *app) activityCommand() *cobra.Command {
	var (
		service, workerID, action, since, until string
		afterSeq                                uint64
		limit, tail                             int
		follow                                  bool
	)
	cmd := &cobra.Command{
		Use:   "activity",
		Short: "List the activity log, or follow it with --follow",
		Long: `List the activity log, oldest first, up to --limit records.

With --follow, print the last --tail records (10), then stream records as they
are applied until interrupted (or start after --after-seq); a broken stream is
resumed, on the next address if need be, after the last record seen. -o json
prints JSON lines when following.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if follow {
				if since != "" || until != "" {
					return errors.New("--since and --until do not apply to --follow; use --after-seq")
				}
				req := &rationv1.WatchActivityRequest{Service: service, WorkerId: workerID, Action: action, AfterSeq: afterSeq}
				return a.tailActivity(cmd.Context(), req, tail)
			}
			sinceTS, err := parseTime("since", since)
			if err != nil {
				return err
			}
			untilTS, err := parseTime("until", until)
			if err != nil {
				return err
			}
			all := &rationv1.ListActivityResponse{}
			req := &rationv1.ListActivityRequest{
				Service: service, WorkerId: workerID, Action: action,
				Since: sinceTS, Until: untilTS, AfterSeq: afterSeq, Consistency: a.consistency,
			}
			for {
				req.PageSize = pageSize(limit, len(all.Activity))
				resp, err := a.api.ListActivity(cmd.Context(), req)
				if err != nil {
					return err
				}
				all.Activity = append(all.Activity, resp.GetActivity()...)
				all.NextAfterSeq, all.Read = resp.GetNextAfterSeq(), resp.GetRead()
				if all.NextAfterSeq == 0 || limitReached(limit, len(all.Activity)) {
					break
				}
				req.AfterSeq = all.NextAfterSeq
			}
			if limit > 0 && len(all.Activity) > limit {
				all.Activity = all.Activity[:limit]
				all.NextAfterSeq = all.Activity[limit-1].GetSeq()
			}
			return a.print(all, func(w io.Writer) {
				activityHeader(w)
				for _, r := range all.Activity {
					activityRow(w, r)
				}
			})
		},
	}
	f := cmd.Flags()
	f.StringVar(&service, "service", "", "only this service")
	f.StringVar(&workerID, "worker", "", "only this worker")
	f.StringVar(&action, "action", "", `only this action, e.g. "submit", "lease-expired"`)
	f.StringVar(&since, "since", "", "only records at or after this time (RFC 3339)")
	f.StringVar(&until, "until", "", "only records before this time (RFC 3339)")
	f.Uint64Var(&afterSeq, "after-seq", 0, "only records after this sequence number")
	f.IntVar(&limit, "limit", 100, "most records to list (0: all); not used with --follow")
	f.BoolVarP(&follow, "follow", "f", false, "stream new records until interrupted")
	f.IntVar(&tail, "tail", 10, "with --follow: print the last this many records first (0: none)")
	return cmd
}

// tailActivity prints the last tail records matching req (unless req
// starts after a sequence number of its own), then follows after them.
func (a *app) tailActivity(ctx context.Context, req *rationv1.WatchActivityRequest, tail int) error {
	if req.AfterSeq != 0 || tail <= 0 {
		return a.followActivity(ctx, req, nil)
	}
	last, err := a.api.ListActivity(ctx, &rationv1.ListActivityRequest{Service: req.Service, WorkerId: req.WorkerId,
		Action: req.Action, Newest: true, PageSize: uint32(min(tail, 1000)), Consistency: a.consistency})
	if err != nil {
		return err
	}
	return a.followActivity(ctx, req, last.GetActivity())
}

// followActivity prints WatchActivity records until ctx ends. When the
// stream breaks on an error another node might not have (Unavailable, a lost
// connection), it resumes after the last record printed.
func (a *app) followActivity(ctx context.Context, req *rationv1.WatchActivityRequest, tail []*rationv1.ActivityInfo) error {
	if a.output == "table" {
		activityHeader(a.stdout)
	}
	show := func(records []*rationv1.ActivityInfo) error {
		for _, r := range records {
			if a.output == "json" {
				if err := jsonLine(a.stdout, r, nil); err != nil {
					return err
				}
			} else {
				activityRow(a.stdout, r)
			}
			req.AfterSeq = max(req.AfterSeq, r.GetSeq())
		}
		return nil
	}
	if err := show(tail); err != nil {
		return err
	}
	for {
		err := a.api.WatchActivity(ctx, req,
			func(m *rationv1.WatchActivityResponse) error { return show(m.GetActivity()) })
		if ctx.Err() != nil {
			return nil // interrupted: the normal way to stop following
		}
		// The server ended the stream or it broke: resume after a pause.
		// An error printing a record is not a Connect error: it ends the
		// command, as does a refusal that no retry would change.
		if err != nil {
			if _, rpc := errors.AsType[*connect.Error](err); !rpc || !client.Retryable(err) {
				return err
			}
			fmt.Fprintf(a.stderr, "rationctl: activity stream broke (%s), resuming after seq %d\n", connect.CodeOf(err), req.AfterSeq)
		}
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(time.Second):
		}
	}
}

// activityHeader and activityRow print records with fixed column widths
// rather than a tabwriter, so that --follow can print each record at once.
func activityHeader(w io.Writer) {
	fmt.Fprintf(w, "%-8s %-25s %-12s %-16s %-16s %-16s %-8s %-6s %-16s %s\n",
		"SEQ", "AT", "ACTOR", "SERVICE", "WORKER", "ACTION", "BUCKET", "COUNT", "REASON", "MESSAGE")
}

func activityRow(w io.Writer, r *rationv1.ActivityInfo) {
	fmt.Fprintf(w, "%-8d %-25s %-12s %-16s %-16s %-16s %-8s %-6d %-16s %s\n",
		r.GetSeq(), fmtTime(r.GetAt()), fmtStr(r.GetActor()), fmtStr(r.GetService()), fmtStr(r.GetWorkerId()),
		fmtStr(r.GetAction()), fmtID(r.GetBucketId()), r.GetCount(), fmtStr(r.GetReason()), r.GetMessage())
}
