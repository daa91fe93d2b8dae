package main

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/spf13/cobra"

	rationv1 "github.com/rationhq/ration/api/ration/v1"
)

func (a *app) itemsCommand() *cobra.Command {
	cmd := &cobra.Command{Use: "items", Short: "Feed and list a service's items (OwnerService)"}
	cmd.AddCommand(a.itemsAddCommand(), a.itemsListCommand())
	return cmd
}

func (a *app) itemsAddCommand() *cobra.Command {
	var (
		file, reqID string
		priority    int32
		rerun       bool
		chunk       int
	)
	cmd := &cobra.Command{
		Use:   "add SERVICE [ID...] [--file F]",
		Short: "Add items, in chunks of --chunk ids per AddItems call",
		Long: `Add items to a service. Ids come from the arguments and from --file (one id
per line, "-" for stdin; blank lines are skipped).

Each chunk is one AddItems call with its own request id, <prefix>-<n>, where
the prefix is --request-id or a random one. Running the same command again
with the same --request-id and the same input repeats nothing: chunks that
took effect answer as they first did.`,
		Args: cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if chunk <= 0 {
				return errors.New("--chunk: must be positive")
			}
			ids := append([]string(nil), args[1:]...)
			if file != "" {
				more, err := a.readIDs(file)
				if err != nil {
					return err
				}
				ids = append(ids, more...)
			}
			if len(ids) == 0 {
				return errors.New("items add: no item ids given")
			}
			prefix := requestID(reqID)
			total := &rationv1.AddItemsResponse{}
			calls, stopped, err := inChunks(len(ids), chunk, prefix, func(lo, hi int, id string) error {
				resp, err := a.api.AddItems(cmd.Context(), &rationv1.AddItemsRequest{
					Service: args[0], Items: ids[lo:hi], Priority: priority, Rerun: rerun, RequestId: id,
				})
				if err != nil {
					return err
				}
				total.Added += resp.GetAdded()
				total.Skipped += resp.GetSkipped()
				total.Raised += resp.GetRaised()
				total.Buckets += resp.GetBuckets()
				return nil
			})
			if err != nil {
				fmt.Fprintf(a.stderr, "rationctl: items add stopped at chunk %d of %d (%d ids sent before it: added %d, skipped %d); "+
					"run again with --request-id %s to resume without repeating them\n",
					stopped, calls, (stopped-1)*chunk, total.Added, total.Skipped, prefix)
				return err
			}
			return a.print(total, func(w io.Writer) {
				row(w, "ADDED", "SKIPPED", "RAISED", "BUCKETS", "CALLS")
				row(w, total.Added, total.Skipped, total.Raised, total.Buckets, calls)
			})
		},
	}
	f := cmd.Flags()
	f.StringVar(&file, "file", "", `read ids from this file, one per line ("-" for stdin)`)
	f.Int32Var(&priority, "priority", 0, "priority of the items; higher is served first")
	f.BoolVar(&rerun, "rerun", false, "also re-queue items already done (their results are kept)")
	f.IntVar(&chunk, "chunk", 18000, "ids per AddItems call (at most the service's max_items_per_add)")
	f.StringVar(&reqID, "request-id", "", "request id prefix; chunk n is sent as <prefix>-<n> (default random)")
	return cmd
}

// readIDs reads one id per line from path ("-": stdin), skipping blank lines.
func (a *app) readIDs(path string) ([]string, error) {
	r, closeFn, err := a.open(path)
	if err != nil {
		return nil, err
	}
	defer closeFn()
	var ids []string
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64*1024), 16*1024*1024)
	for sc.Scan() {
		if id := strings.TrimSpace(sc.Text()); id != "" {
			ids = append(ids, id)
		}
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("read %s: %w", path, err)
	}
	return ids, nil
}

// open opens path for reading; "-" is stdin (which is not closed).
func (a *app) open(path string) (io.Reader, func(), error) {
	if path == "-" {
		return a.stdin, func() {}, nil
	}
	f, err := os.Open(path)
	if err != nil {
		return nil, nil, err
	}
	return f, func() { f.Close() }, nil
}

func (a *app) itemsListCommand() *cobra.Command {
	var (
		state string
		limit int
	)
	cmd := &cobra.Command{
		Use:   "list SERVICE",
		Short: "List a service's items, page by page up to --limit",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			st, err := parseEnum("state", state, "ITEM_STATE_", rationv1.ItemState_value)
			if err != nil {
				return err
			}
			all := &rationv1.ListItemsResponse{}
			req := &rationv1.ListItemsRequest{Service: args[0], State: rationv1.ItemState(st), Consistency: a.consistency}
			for {
				req.PageSize = pageSize(limit, len(all.Items))
				resp, err := a.api.ListItems(cmd.Context(), req)
				if err != nil {
					return err
				}
				all.Items = append(all.Items, resp.GetItems()...)
				all.NextPageToken, all.Read = resp.GetNextPageToken(), resp.GetRead()
				if all.NextPageToken == "" || limitReached(limit, len(all.Items)) {
					break
				}
				req.PageToken = all.NextPageToken
			}
			if limit > 0 && len(all.Items) > limit {
				all.Items = all.Items[:limit]
			}
			// The votes columns are for services that validate.
			votes := false
			if a.output != "json" {
				svc, err := a.api.GetService(cmd.Context(), &rationv1.GetServiceRequest{Name: args[0], Consistency: a.consistency})
				if err != nil {
					return err
				}
				votes = validating(svc.GetService().GetConfig())
			}
			return a.print(all, func(w io.Writer) {
				head := []any{"ID", "STATE", "PRIORITY", "ATTEMPTS", "BUCKET", "SINCE", "VERDICT"}
				if votes {
					head = append(head, "VALIDATED", "VOTES")
				}
				row(w, head...)
				for _, it := range all.Items {
					cells := []any{it.GetId(), enumName(it.GetState(), "ITEM_STATE_"), it.GetPriority(), it.GetAttempts(),
						fmtID(it.GetBucketId()), fmtTime(it.GetSince()), fmtStr(it.GetResult().GetVerdict())}
					if votes {
						cells = append(cells, fmtValidated(it), fmtVotes(it))
					}
					row(w, cells...)
				}
			})
		},
	}
	cmd.Flags().StringVar(&state, "state", "", "only items in this state: pending, leased, done, quarantined or inconclusive")
	cmd.Flags().IntVar(&limit, "limit", 100, "most items to list (0: all)")
	return cmd
}

// pageSize asks for what is left of limit, at most the server's 1000 (0:
// the server's default page).
func pageSize(limit, have int) uint32 {
	if limit <= 0 {
		return 1000
	}
	return uint32(min(limit-have, 1000))
}

func limitReached(limit, have int) bool { return limit > 0 && have >= limit }

// inChunks sends n things chunk at a time, the k-th chunk (from 1) with the
// request id <prefix>-<k>, so that a run repeated with the same prefix
// repeats none. It returns the number of chunks and, on an error, the one it
// stopped at.
func inChunks(n, chunk int, prefix string, send func(lo, hi int, requestID string) error) (calls, stopped int, err error) {
	calls = (n + chunk - 1) / chunk
	for k := 0; k < calls; k++ {
		if err := send(k*chunk, min((k+1)*chunk, n), fmt.Sprintf("%s-%d", prefix, k+1)); err != nil {
			return calls, k + 1, err
		}
	}
	return calls, 0, nil
}
