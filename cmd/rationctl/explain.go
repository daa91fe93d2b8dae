package main

import (
	"errors"
	"fmt"
	"io"

	"github.com/spf13/cobra"

	rationv1 "github.com/rationhq/ration/api/ration/v1"
)

func (a *app) explainCommand() *cobra.Command {
	var (
		bucket                  uint64
		worker, item, requestID string
	)
	cmd := &cobra.Command{
		Use:   "explain SERVICE (--bucket ID | --worker ID | --item ID | --request-id ID)",
		Short: "Explain why a bucket, worker or item is where it is, or what became of a request",
		Long: `Explain answers from the state and the activity log: why a bucket is not
leased (or who holds it, or when it died), why a worker is inactive or
suspect, where an item is, or why a request (e.g. a submit) was refused.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			req := &rationv1.ExplainRequest{Service: args[0], Consistency: a.consistency}
			n := 0
			if bucket != 0 {
				req.Subject, n = &rationv1.ExplainRequest_BucketId{BucketId: bucket}, n+1
			}
			if worker != "" {
				req.Subject, n = &rationv1.ExplainRequest_WorkerId{WorkerId: worker}, n+1
			}
			if item != "" {
				req.Subject, n = &rationv1.ExplainRequest_Item{Item: item}, n+1
			}
			if requestID != "" {
				req.Subject, n = &rationv1.ExplainRequest_RequestId{RequestId: requestID}, n+1
			}
			if n != 1 {
				return errors.New("give exactly one of --bucket, --worker, --item, --request-id")
			}
			resp, err := a.api.Explain(cmd.Context(), req)
			if err != nil {
				return err
			}
			return a.print(resp, func(w io.Writer) {
				for _, l := range resp.GetLines() {
					fmt.Fprintln(w, l)
				}
				if len(resp.GetActivity()) > 0 {
					fmt.Fprintln(w)
					t := newTable(w)
					row(t, "SEQ", "AT", "ACTOR", "ACTION", "BUCKET", "REASON", "MESSAGE")
					for _, act := range resp.GetActivity() {
						row(t, act.GetSeq(), fmtTime(act.GetAt()), act.GetActor(), act.GetAction(), fmtID(act.GetBucketId()),
							fmtStr(act.GetReason()), fmtStr(act.GetMessage()))
					}
					t.Flush()
				}
			})
		},
	}
	f := cmd.Flags()
	f.Uint64Var(&bucket, "bucket", 0, "bucket id")
	f.StringVar(&worker, "worker", "", "worker id")
	f.StringVar(&item, "item", "", "item id")
	f.StringVar(&requestID, "request-id", "", "a request id a client used")
	return cmd
}
