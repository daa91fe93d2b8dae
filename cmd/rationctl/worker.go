package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"google.golang.org/protobuf/types/known/timestamppb"

	rationv1 "github.com/rationhq/ration/api/ration/v1"
)

func (a *app) workerCommand() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "worker",
		Short: "Act as a worker (WorkerService), or manage one as its owner",
		Long: `Act as a worker by hand: register, acquire, heartbeat, submit, release.
These calls carry --worker-secret.

deactivate, reactivate and revert are owner actions (OwnerService) and carry
--token.`,
	}
	cmd.AddCommand(
		a.workerRegisterCommand(),
		a.workerUnregisterCommand(),
		a.workerCheckCommand(),
		a.workerAcquireCommand(),
		a.workerHeartbeatCommand(),
		a.workerSubmitCommand(),
		a.workerReleaseCommand(),
		a.workerBucketsCommand(),
		a.workerDeactivateCommand(),
		a.workerReactivateCommand(),
		a.workerRevertCommand(),
	)
	return cmd
}

func (a *app) workerRegisterCommand() *cobra.Command {
	var name, reqID string
	cmd := &cobra.Command{
		Use:   "register SERVICE WORKER_ID",
		Short: "Register a worker for a service (binds --worker-secret to WORKER_ID on first use)",
		Args:  cobra.ExactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			req := &rationv1.RegisterRequest{Service: args[0], WorkerId: args[1], Name: name, RequestId: requestID(reqID)}
			resp, err := a.api.Register(cmd.Context(), req)
			if err != nil {
				return err
			}
			return a.print(resp, func(w io.Writer) {
				if resp.GetChanged() {
					fmt.Fprintf(w, "registered %s for %s\n", args[1], args[0])
				} else {
					fmt.Fprintf(w, "%s was already registered for %s\n", args[1], args[0])
				}
			})
		},
	}
	cmd.Flags().StringVar(&name, "name", "", "display name")
	requestIDFlag(cmd, &reqID)
	return cmd
}

func (a *app) workerUnregisterCommand() *cobra.Command {
	var reqID string
	cmd := &cobra.Command{
		Use:   "unregister SERVICE WORKER_ID",
		Short: "End a worker's registration and leases",
		Args:  cobra.ExactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			req := &rationv1.UnregisterRequest{Service: args[0], WorkerId: args[1], RequestId: requestID(reqID)}
			resp, err := a.api.Unregister(cmd.Context(), req)
			if err != nil {
				return err
			}
			return a.print(resp, func(w io.Writer) {
				fmt.Fprintf(w, "unregistered %s from %s (%d leases ended)\n", args[1], args[0], resp.GetLeasesEnded())
			})
		},
	}
	requestIDFlag(cmd, &reqID)
	return cmd
}

func (a *app) workerCheckCommand() *cobra.Command {
	return &cobra.Command{
		Use:   "check SERVICE",
		Short: "Tell whether a service exists and is active",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			req := &rationv1.CheckServiceRequest{Service: args[0], Consistency: a.consistency}
			resp, err := a.api.CheckService(cmd.Context(), req)
			if err != nil {
				return err
			}
			return a.print(resp, func(w io.Writer) {
				row(w, "SERVICE", "EXISTS", "ACTIVE", "KIND", "REASON")
				row(w, args[0], resp.GetExists(), resp.GetActive(), fmtStr(resp.GetKind()), fmtStr(resp.GetReason()))
			})
		},
	}
}

func (a *app) workerAcquireCommand() *cobra.Command {
	var (
		n     uint32
		reqID string
	)
	cmd := &cobra.Command{
		Use:   "acquire SERVICE WORKER_ID",
		Short: "Lease up to -n buckets; none available prints nothing",
		Args:  cobra.ExactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			req := &rationv1.AcquireRequest{Service: args[0], WorkerId: args[1], MaxBuckets: n, RequestId: requestID(reqID)}
			resp, err := a.api.Acquire(cmd.Context(), req)
			if err != nil {
				return err
			}
			return a.print(resp, func(w io.Writer) { leasedTable(w, resp.GetBuckets()) })
		},
	}
	cmd.Flags().Uint32VarP(&n, "max-buckets", "n", 1, "most buckets to lease (capped by the service's max_buckets_per_acquire)")
	requestIDFlag(cmd, &reqID)
	return cmd
}

func (a *app) workerHeartbeatCommand() *cobra.Command {
	var reqID string
	cmd := &cobra.Command{
		Use:   "heartbeat WORKER_ID BUCKET_ID:EPOCH...",
		Short: "Extend leases; each bucket succeeds or fails on its own",
		Args:  cobra.MinimumNArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			req := &rationv1.HeartbeatRequest{WorkerId: args[0], RequestId: requestID(reqID)}
			for _, s := range args[1:] {
				ref, err := parseBucketRef(s)
				if err != nil {
					return err
				}
				req.Buckets = append(req.Buckets, ref)
			}
			resp, err := a.api.Heartbeat(cmd.Context(), req)
			if err != nil {
				return err
			}
			return a.print(resp, func(w io.Writer) {
				row(w, "BUCKET", "EPOCH", "DEADLINE", "ERROR")
				for _, o := range resp.GetBuckets() {
					if o.GetErrorReason() != "" || o.GetLease() == nil {
						row(w, o.GetBucketId(), "-", "-", strings.TrimSpace(o.GetErrorReason()+" "+o.GetErrorMessage()))
						continue
					}
					row(w, o.GetBucketId(), o.GetLease().GetEpoch(), fmtTime(o.GetLease().GetDeadline()), "-")
				}
			})
		},
	}
	requestIDFlag(cmd, &reqID)
	return cmd
}

// parseBucketRef parses "BUCKET_ID:EPOCH".
func parseBucketRef(s string) (*rationv1.BucketRef, error) {
	idStr, epochStr, ok := strings.Cut(s, ":")
	if !ok {
		return nil, fmt.Errorf("%q: want BUCKET_ID:EPOCH", s)
	}
	id, err := strconv.ParseUint(idStr, 10, 64)
	if err != nil {
		return nil, fmt.Errorf("%q: bad bucket id: %w", s, err)
	}
	epoch, err := strconv.ParseUint(epochStr, 10, 64)
	if err != nil {
		return nil, fmt.Errorf("%q: bad epoch: %w", s, err)
	}
	return &rationv1.BucketRef{Id: id, Epoch: epoch}, nil
}

// parseBucketEpoch parses the BUCKET_ID EPOCH arguments of submit and release.
func parseBucketEpoch(idStr, epochStr string) (id, epoch uint64, err error) {
	if id, err = strconv.ParseUint(idStr, 10, 64); err != nil {
		return 0, 0, fmt.Errorf("bucket id %q: %w", idStr, err)
	}
	if epoch, err = strconv.ParseUint(epochStr, 10, 64); err != nil {
		return 0, 0, fmt.Errorf("epoch %q: %w", epochStr, err)
	}
	return id, epoch, nil
}

func (a *app) workerSubmitCommand() *cobra.Command {
	var (
		resultsFile, verdict, payload, reqID string
		items                                []string
	)
	cmd := &cobra.Command{
		Use:   "submit WORKER_ID BUCKET_ID EPOCH (--results FILE | --verdict V --items a,b,c)",
		Short: "Submit results for a leased bucket; items without a result go back to the pool",
		Long: `Submit results for a leased bucket.

--results FILE is a JSON array of {"item", "verdict", "payload"} ("-" for
stdin); a payload may be a JSON string or any JSON value, which is sent as its
text. Or give every item in --items the same --verdict (and --payload).
Items of the bucket without a result go back to the pool.`,
		Args: cobra.ExactArgs(3),
		RunE: func(cmd *cobra.Command, args []string) error {
			id, epoch, err := parseBucketEpoch(args[1], args[2])
			if err != nil {
				return err
			}
			req := &rationv1.SubmitRequest{WorkerId: args[0], BucketId: id, Epoch: epoch, RequestId: requestID(reqID)}
			switch {
			case resultsFile != "":
				if req.Results, err = a.readResults(resultsFile); err != nil {
					return err
				}
			case verdict != "" && len(items) > 0:
				for _, it := range items {
					req.Results = append(req.Results, &rationv1.ResultInput{Item: it, Verdict: verdict, Payload: payload})
				}
			default:
				return errors.New("submit: give --results FILE, or --verdict with --items")
			}
			resp, err := a.api.Submit(cmd.Context(), req)
			if err != nil {
				return err
			}
			return a.print(resp, func(w io.Writer) {
				row(w, "ACCEPTED", "REQUEUED", "QUARANTINED")
				row(w, resp.GetAccepted(), resp.GetRequeued(), resp.GetQuarantined())
			})
		},
	}
	f := cmd.Flags()
	f.StringVar(&resultsFile, "results", "", `JSON array of {"item","verdict","payload"} ("-" for stdin)`)
	f.StringVar(&verdict, "verdict", "", "verdict for every item in --items")
	f.StringSliceVar(&items, "items", nil, "items the --verdict applies to, comma-separated")
	f.StringVar(&payload, "payload", "", "payload for every item in --items")
	cmd.MarkFlagsMutuallyExclusive("results", "verdict")
	cmd.MarkFlagsMutuallyExclusive("results", "items")
	cmd.MarkFlagsRequiredTogether("verdict", "items")
	requestIDFlag(cmd, &reqID)
	return cmd
}

// readResults reads a JSON array of results from path ("-": stdin).
func (a *app) readResults(path string) ([]*rationv1.ResultInput, error) {
	r, closeFn, err := a.open(path)
	if err != nil {
		return nil, err
	}
	defer closeFn()
	var in []struct {
		Item    string          `json:"item"`
		Verdict string          `json:"verdict"`
		Payload json.RawMessage `json:"payload"`
	}
	dec := json.NewDecoder(r)
	dec.DisallowUnknownFields()
	if err := dec.Decode(&in); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	out := make([]*rationv1.ResultInput, 0, len(in))
	for i, res := range in {
		if res.Item == "" {
			return nil, fmt.Errorf("%s: result %d has no item", path, i)
		}
		var payload string
		if len(res.Payload) > 0 && string(res.Payload) != "null" {
			if err := json.Unmarshal(res.Payload, &payload); err != nil {
				// Not a string: send the JSON value itself as the payload text.
				payload = string(res.Payload)
			}
		}
		out = append(out, &rationv1.ResultInput{Item: res.Item, Verdict: res.Verdict, Payload: payload})
	}
	return out, nil
}

func (a *app) workerReleaseCommand() *cobra.Command {
	var reqID string
	cmd := &cobra.Command{
		Use:   "release WORKER_ID BUCKET_ID EPOCH",
		Short: "Give a leased bucket back",
		Args:  cobra.ExactArgs(3),
		RunE: func(cmd *cobra.Command, args []string) error {
			id, epoch, err := parseBucketEpoch(args[1], args[2])
			if err != nil {
				return err
			}
			req := &rationv1.ReleaseRequest{WorkerId: args[0], BucketId: id, Epoch: epoch, RequestId: requestID(reqID)}
			resp, err := a.api.Release(cmd.Context(), req)
			if err != nil {
				return err
			}
			return a.print(resp, func(w io.Writer) {
				row(w, "REQUEUED", "QUARANTINED")
				row(w, resp.GetRequeued(), resp.GetQuarantined())
			})
		},
	}
	requestIDFlag(cmd, &reqID)
	return cmd
}

func (a *app) workerBucketsCommand() *cobra.Command {
	return &cobra.Command{
		Use:   "buckets SERVICE WORKER_ID",
		Short: "List the leased and dead buckets a worker holds (ListMyBuckets)",
		Args:  cobra.ExactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			req := &rationv1.ListMyBucketsRequest{Service: args[0], WorkerId: args[1], Consistency: a.consistency}
			resp, err := a.api.ListMyBuckets(cmd.Context(), req)
			if err != nil {
				return err
			}
			return a.print(resp, func(w io.Writer) { leasedTable(w, resp.GetBuckets()) })
		},
	}
}

func leasedTable(w io.Writer, buckets []*rationv1.LeasedBucket) {
	row(w, "BUCKET", "EPOCH", "STATE", "DEADLINE", "N", "ITEMS")
	for _, b := range buckets {
		row(w, b.GetId(), b.GetLease().GetEpoch(), enumName(b.GetState(), "BUCKET_STATE_"),
			fmtTime(b.GetLease().GetDeadline()), len(b.GetItems()), strings.Join(b.GetItems(), ","))
	}
}

func (a *app) workerDeactivateCommand() *cobra.Command {
	var reason, reqID string
	cmd := &cobra.Command{
		Use:   "deactivate SERVICE WORKER_ID",
		Short: "Owner: end a worker's registration and leases until reactivated",
		Args:  cobra.ExactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			req := &rationv1.DeactivateWorkerRequest{Service: args[0], WorkerId: args[1], Reason: reason, RequestId: requestID(reqID)}
			resp, err := a.api.DeactivateWorker(cmd.Context(), req)
			if err != nil {
				return err
			}
			return a.print(resp, func(w io.Writer) {
				fmt.Fprintf(w, "deactivated %s in %s (%d leases ended)\n", args[1], args[0], resp.GetLeasesEnded())
			})
		},
	}
	cmd.Flags().StringVar(&reason, "reason", "", "why, recorded with the worker")
	requestIDFlag(cmd, &reqID)
	return cmd
}

func (a *app) workerReactivateCommand() *cobra.Command {
	var reqID string
	cmd := &cobra.Command{
		Use:   "reactivate SERVICE WORKER_ID",
		Short: "Owner: let a deactivated worker back in",
		Args:  cobra.ExactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			req := &rationv1.ReactivateWorkerRequest{Service: args[0], WorkerId: args[1], RequestId: requestID(reqID)}
			resp, err := a.api.ReactivateWorker(cmd.Context(), req)
			if err != nil {
				return err
			}
			return a.print(resp, func(w io.Writer) { fmt.Fprintf(w, "reactivated %s in %s\n", args[1], args[0]) })
		},
	}
	requestIDFlag(cmd, &reqID)
	return cmd
}

func (a *app) workerRevertCommand() *cobra.Command {
	var since, reqID string
	cmd := &cobra.Command{
		Use:   "revert SERVICE WORKER_ID --since RFC3339",
		Short: "Owner: revert a worker's results since a time and re-queue their items",
		Args:  cobra.ExactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			t, err := parseTime("since", since)
			if err != nil {
				return err
			}
			req := &rationv1.RevertWorkerRequest{Service: args[0], WorkerId: args[1], Since: t, RequestId: requestID(reqID)}
			resp, err := a.api.RevertWorker(cmd.Context(), req)
			if err != nil {
				return err
			}
			return a.print(resp, func(w io.Writer) {
				row(w, "REVERTED", "REQUEUED")
				row(w, resp.GetReverted(), resp.GetRequeued())
			})
		},
	}
	cmd.Flags().StringVar(&since, "since", "", "revert results accepted at or after this time (RFC 3339, e.g. 2025-01-02T15:04:05Z)")
	cmd.MarkFlagRequired("since")
	requestIDFlag(cmd, &reqID)
	return cmd
}

// parseTime parses an RFC 3339 flag value; empty gives nil.
func parseTime(flag, s string) (*timestamppb.Timestamp, error) {
	if s == "" {
		return nil, nil
	}
	t, err := time.Parse(time.RFC3339Nano, s)
	if err != nil {
		return nil, fmt.Errorf("--%s: %q is not an RFC 3339 time (e.g. 2025-01-02T15:04:05Z)", flag, s)
	}
	return timestamppb.New(t), nil
}
