package main

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"os"
	"strconv"
	"time"

	"github.com/spf13/cobra"

	"github.com/rationhq/ration/api/client"
	rationv1 "github.com/rationhq/ration/api/ration/v1"
)

func (a *app) resultsCommand() *cobra.Command {
	cmd := &cobra.Command{Use: "results", Short: "Export and acknowledge a service's results (OwnerService)"}
	cmd.AddCommand(a.resultsExportCommand(), a.resultsAckCommand())
	return cmd
}

func (a *app) resultsAckCommand() *cobra.Command {
	var reqID string
	cmd := &cobra.Command{
		Use:   "ack SERVICE SEQ",
		Short: "Record that every result through SEQ is stored (the export position)",
		Long: `Record, through the log, that the owner has stored every result of the
service through SEQ, the "seq" of the last line export wrote. Acknowledging
less than before changes nothing; past the service's last result is refused
(ACK_BEYOND_RESULTS).`,
		Args: cobra.ExactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			seq, err := strconv.ParseUint(args[1], 10, 64)
			if err != nil {
				return fmt.Errorf("SEQ %q: want a whole number: %w", args[1], err)
			}
			req := &rationv1.AckResultsRequest{Service: args[0], ThroughSeq: seq, RequestId: requestID(reqID)}
			resp, err := a.api.AckResults(cmd.Context(), req)
			if err != nil {
				return err
			}
			return a.print(resp, func(w io.Writer) { exportRows(w, resp.GetExport()) })
		},
	}
	requestIDFlag(cmd, &reqID)
	return cmd
}

// exportRows prints a service's export position.
func exportRows(w io.Writer, p *rationv1.ExportPosition) {
	row(w, "acked_through", p.GetAckedThrough())
	row(w, "last_seq", p.GetLastSeq())
	row(w, "unacked", fmt.Sprintf("results=%d bytes=%d", p.GetUnackedResults(), p.GetUnackedBytes()))
}

func (a *app) resultsExportCommand() *cobra.Command {
	var (
		afterSeq    uint64
		follow, ack bool
		out         string
	)
	cmd := &cobra.Command{
		Use:   "export SERVICE",
		Short: "Write a service's results as JSON lines, in the order they were accepted",
		Long: `Write a service's results as JSON lines (whatever -o says), one result
per line, with "seq", the number of the submit it came in: pass the last one
seen as --after-seq to resume.

--follow keeps writing new results as they are accepted, until interrupted,
and resumes on another node if the one serving it goes away. --ack
acknowledges (AckResults) what has been written, at most every second and
when the export ends; with --out, only after the file is synced. With --ack
and no --after-seq, the export starts after the service's acknowledged
position, so running it again picks up where it left off. Export is
at-least-once: results written but not yet acknowledged when it stops come
again the next time.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			w, sync, closeOut, err := a.exportSink(out)
			if err != nil {
				return err
			}
			e := client.Export{Service: args[0], After: afterSeq, Follow: follow, Sync: sync,
				FromAcknowledged: ack && !cmd.Flags().Changed("after-seq"),
				Store: func(m *rationv1.ExportResultsResponse) error {
					for _, r := range m.GetResults() {
						if err := jsonLine(w, r, map[string]any{"seq": m.GetSeq()}); err != nil {
							return err
						}
					}
					return nil
				}}
			if ack {
				e.AckEvery = time.Second
			}
			_, err = a.api.Export(cmd.Context(), e)
			return errors.Join(err, closeOut())
		},
	}
	cmd.Flags().Uint64Var(&afterSeq, "after-seq", 0, "resume after this submit sequence number")
	cmd.Flags().BoolVar(&follow, "follow", false, "keep writing new results until interrupted")
	cmd.Flags().BoolVar(&ack, "ack", false, "acknowledge what has been written (AckResults)")
	cmd.Flags().StringVar(&out, "out", "", "append to this file, synced before each acknowledgment (default stdout)")
	return cmd
}

// exportSink returns where export writes: stdout, or the file path opened
// for appending, with a sync that flushes it to disk and its closer.
func (a *app) exportSink(path string) (w io.Writer, sync func() error, closeOut func() error, err error) {
	if path == "" {
		return a.stdout, nil, func() error { return nil }, nil
	}
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o600)
	if err != nil {
		return nil, nil, nil, err
	}
	bw := bufio.NewWriter(f)
	sync = func() error {
		if err := bw.Flush(); err != nil {
			return err
		}
		return f.Sync()
	}
	return bw, sync, func() error { return errors.Join(sync(), f.Close()) }, nil
}
