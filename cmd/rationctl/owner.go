package main

import (
	"fmt"
	"io"
	"slices"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/durationpb"

	rationv1 "github.com/rationhq/ration/api/ration/v1"
)

// configFlags are the ServiceConfig flags shared by service create and
// update. Only flags given on the command line touch the config; a zero
// field is filled with its default by the server.
type configFlags struct {
	bucketSize           uint32
	maxBucketsPerAcquire uint32
	leaseTTL             time.Duration
	releaseGrace         time.Duration
	maxAttempts          uint32
	maxItemsPerAdd       uint32
	workerInactiveAfter  time.Duration
	priorityAging        time.Duration
	maxPayloadBytes      uint32
	verdicts             []string
	maxLeasesPerWorker   uint32
	resultRetention      time.Duration
	unackedRetention     time.Duration
	maxUnackedResults    uint64
	doneRetention        time.Duration
	refreshAfter         time.Duration
	validation           validationFlags
}

func (f *configFlags) register(fs *pflag.FlagSet) {
	fs.Uint32Var(&f.bucketSize, "bucket-size", 0, "items per bucket (server default 180)")
	fs.Uint32Var(&f.maxBucketsPerAcquire, "max-buckets-per-acquire", 0, "buckets one Acquire may lease (server default 10)")
	fs.DurationVar(&f.leaseTTL, "lease-ttl", 0, "lease duration without a heartbeat, e.g. 2h (server default 2h)")
	fs.DurationVar(&f.releaseGrace, "release-grace", 0, "how long a dead bucket waits for a late submit (server default 15m)")
	fs.Uint32Var(&f.maxAttempts, "max-attempts", 0, "grants after which an item is quarantined (server default 5)")
	fs.Uint32Var(&f.maxItemsPerAdd, "max-items-per-add", 0, "ids one AddItems may carry (server default 18000)")
	fs.DurationVar(&f.workerInactiveAfter, "worker-inactive-after", 0, "idle time after which a worker is deactivated (server default 24h)")
	fs.DurationVar(&f.priorityAging, "priority-aging", 0, "waiting time worth one priority level (server default 1m)")
	fs.Uint32Var(&f.maxPayloadBytes, "max-payload-bytes", 0, "largest payload of one result (default set by the kind)")
	fs.StringSliceVar(&f.verdicts, "verdicts", nil, "allowed verdicts, comma-separated (kind generic only)")
	fs.Uint32Var(&f.maxLeasesPerWorker, "max-leases-per-worker", 0, "buckets one worker may hold at once (server default 100)")
	fs.DurationVar(&f.resultRetention, "result-retention", 0, "how long a result is kept after it was accepted, once acknowledged; 0s trims at acknowledgment (server default 24h)")
	fs.DurationVar(&f.unackedRetention, "unacked-result-retention", 0, "drop results nobody acknowledged this long after they were accepted (server default: never)")
	fs.Uint64Var(&f.maxUnackedResults, "max-unacked-results", 0, "results not yet acknowledged at which Acquire waits (server default 1000000)")
	fs.DurationVar(&f.doneRetention, "done-retention", 0, "forget a done item, once its result is trimmed, this long after the result was accepted; 0s: right after the trim (server default: never)")
	fs.DurationVar(&f.refreshAfter, "refresh-after", 0, "queue a done item again this long after its result was accepted, to check it anew; at least 1m (server default: never)")
	f.validation.register(fs)
}

// apply copies the flags given on the command line into cfg.
func (f *configFlags) apply(fs *pflag.FlagSet, cfg *rationv1.ServiceConfig) {
	dur := func(d time.Duration) *durationpb.Duration {
		if d == 0 {
			return nil
		}
		return durationpb.New(d)
	}
	set := fs.Changed
	if set("bucket-size") {
		cfg.BucketSize = f.bucketSize
	}
	if set("max-buckets-per-acquire") {
		cfg.MaxBucketsPerAcquire = f.maxBucketsPerAcquire
	}
	if set("lease-ttl") {
		cfg.LeaseTtl = dur(f.leaseTTL)
	}
	if set("release-grace") {
		cfg.ReleaseGrace = dur(f.releaseGrace)
	}
	if set("max-attempts") {
		cfg.MaxAttempts = f.maxAttempts
	}
	if set("max-items-per-add") {
		cfg.MaxItemsPerAdd = f.maxItemsPerAdd
	}
	if set("worker-inactive-after") {
		cfg.WorkerInactiveAfter = dur(f.workerInactiveAfter)
	}
	if set("priority-aging") {
		cfg.PriorityAging = dur(f.priorityAging)
	}
	if set("max-payload-bytes") {
		cfg.MaxPayloadBytes = f.maxPayloadBytes
	}
	if set("verdicts") {
		cfg.Verdicts = f.verdicts
	}
	if set("max-leases-per-worker") {
		cfg.MaxLeasesPerWorker = f.maxLeasesPerWorker
	}
	if set("result-retention") {
		cfg.ResultRetention = durationpb.New(f.resultRetention) // 0s is a value here
	}
	if set("unacked-result-retention") {
		cfg.UnackedResultRetention = dur(f.unackedRetention)
	}
	if set("max-unacked-results") {
		cfg.MaxUnackedResults = f.maxUnackedResults
	}
	if set("done-retention") {
		cfg.DoneRetention = durationpb.New(f.doneRetention) // 0s is a value here
	}
	if set("refresh-after") {
		cfg.RefreshAfter = durationpb.New(f.refreshAfter) // 0s is refused by the server, with the range
	}
	f.validation.apply(fs, cfg)
}

func (a *app) serviceCommand() *cobra.Command {
	cmd := &cobra.Command{Use: "service", Short: "Define, inspect, revoke, reinstate and delete services (OwnerService)"}
	cmd.AddCommand(
		a.serviceCreateCommand(),
		a.serviceUpdateCommand(),
		a.serviceGetCommand(),
		a.serviceListCommand(),
		a.serviceRevokeCommand(),
		a.serviceReinstateCommand(),
		a.serviceDeleteCommand(),
		a.serviceRotateTokenCommand(),
	)
	return cmd
}

func (a *app) serviceCreateCommand() *cobra.Command {
	var (
		kind, reqID string
		cf          configFlags
	)
	cmd := &cobra.Command{
		Use:   "create NAME --kind KIND",
		Short: "Create a service; unset config flags take the server's defaults",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			req := &rationv1.CreateServiceRequest{
				Name:      args[0],
				Kind:      kind,
				Config:    &rationv1.ServiceConfig{},
				RequestId: requestID(reqID),
			}
			cf.apply(cmd.Flags(), req.Config)
			resp, err := a.api.CreateService(cmd.Context(), req)
			if err != nil {
				return err
			}
			err = a.print(resp, func(w io.Writer) {
				row(w, "created", args[0])
				row(w, "owner_token", ownerTokenCell(resp.GetOwnerToken()))
				configRows(w, resp.GetConfig())
			})
			a.ownerTokenNote(args[0], resp.GetOwnerToken())
			return err
		},
	}
	cmd.Flags().StringVar(&kind, "kind", "", "the service's kind: dmcheck, followers, following or generic")
	cmd.MarkFlagRequired("kind")
	cf.register(cmd.Flags())
	requestIDFlag(cmd, &reqID)
	return cmd
}

func (a *app) serviceUpdateCommand() *cobra.Command {
	var (
		reqID   string
		replace bool
		cf      configFlags
	)
	cmd := &cobra.Command{
		Use:   "update NAME",
		Short: "Change a service's config",
		Long: `Change a service's config.

By default the current config is read first and only the flags given change
it. With --replace the flags given make the whole new config and every other
field goes back to its default.

--replicas without --quorum or --max-replicas lets the server derive them
anew from the new replicas, unless they were set to values of their own.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx := cmd.Context()
			cfg := &rationv1.ServiceConfig{}
			if !replace {
				cur, err := a.api.GetService(ctx, &rationv1.GetServiceRequest{Name: args[0]})
				if err != nil {
					return err
				}
				if c := cur.GetService().GetConfig(); c != nil {
					cfg = proto.CloneOf(c)
				}
			}
			cf.apply(cmd.Flags(), cfg)
			req := &rationv1.UpdateServiceRequest{Name: args[0], Config: cfg, RequestId: requestID(reqID)}
			resp, err := a.api.UpdateService(ctx, req)
			if err != nil {
				return err
			}
			return a.print(resp, func(w io.Writer) {
				row(w, "updated", args[0])
				configRows(w, resp.GetConfig())
			})
		},
	}
	cmd.Flags().BoolVar(&replace, "replace", false, "send only the flags given; other fields take defaults")
	cf.register(cmd.Flags())
	requestIDFlag(cmd, &reqID)
	return cmd
}

func (a *app) serviceGetCommand() *cobra.Command {
	return &cobra.Command{
		Use:   "get NAME",
		Short: "Show a service: config, state, counts and counters",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			req := &rationv1.GetServiceRequest{Name: args[0], Consistency: a.consistency}
			resp, err := a.api.GetService(cmd.Context(), req)
			if err != nil {
				return err
			}
			return a.print(resp, func(w io.Writer) { serviceRows(w, resp.GetService()) })
		},
	}
}

func (a *app) serviceListCommand() *cobra.Command {
	return &cobra.Command{
		Use:   "list",
		Short: "List services with their item counts",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			req := &rationv1.ListServicesRequest{Consistency: a.consistency}
			resp, err := a.api.ListServices(cmd.Context(), req)
			if err != nil {
				return err
			}
			return a.print(resp, func(w io.Writer) { serviceTable(w, resp.GetServices(), nil) })
		},
	}
}

func (a *app) serviceRevokeCommand() *cobra.Command {
	var reason, reqID string
	cmd := &cobra.Command{
		Use:   "revoke NAME",
		Short: "Stop a service: no registrations, acquisitions, items or submits; leases end",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			req := &rationv1.RevokeServiceRequest{Name: args[0], Reason: reason, RequestId: requestID(reqID)}
			resp, err := a.api.RevokeService(cmd.Context(), req)
			if err != nil {
				return err
			}
			return a.print(resp, func(w io.Writer) {
				fmt.Fprintf(w, "revoked %s (%d leases ended)\n", args[0], resp.GetLeasesEnded())
			})
		},
	}
	cmd.Flags().StringVar(&reason, "reason", "", "why, kept with the service")
	requestIDFlag(cmd, &reqID)
	return cmd
}

func (a *app) serviceReinstateCommand() *cobra.Command {
	var reqID string
	cmd := &cobra.Command{
		Use:   "reinstate NAME",
		Short: "Make a revoked service active again",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			req := &rationv1.ReinstateServiceRequest{Name: args[0], RequestId: requestID(reqID)}
			resp, err := a.api.ReinstateService(cmd.Context(), req)
			if err != nil {
				return err
			}
			return a.print(resp, func(w io.Writer) { fmt.Fprintf(w, "reinstated %s\n", args[0]) })
		},
	}
	requestIDFlag(cmd, &reqID)
	return cmd
}

func (a *app) serviceDeleteCommand() *cobra.Command {
	var reqID string
	var force bool
	cmd := &cobra.Command{
		Use:   "delete NAME",
		Short: "Remove a revoked service with its items, buckets, results and registrations",
		Long: `Remove a revoked service with its items, buckets, results and
registrations; its activity records stay until they age out, and the name is
free again. The cluster refuses while results were never acknowledged
(RESULTS_NOT_ACKNOWLEDGED): export them first (rationctl results export
--ack), or pass --force to lose them.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			req := &rationv1.DeleteServiceRequest{Name: args[0], Force: force, RequestId: requestID(reqID)}
			resp, err := a.api.DeleteService(cmd.Context(), req)
			if err != nil {
				return err
			}
			return a.print(resp, func(w io.Writer) {
				fmt.Fprintf(w, "deleted %s: %d items, %d buckets, %d result batches (%d results never acknowledged), %d registrations\n",
					args[0], resp.GetItems(), resp.GetBuckets(), resp.GetResultBatches(), resp.GetUnackedResults(), resp.GetRegistrations())
			})
		},
	}
	cmd.Flags().BoolVar(&force, "force", false, "delete even though some results were never acknowledged: they are lost")
	requestIDFlag(cmd, &reqID)
	return cmd
}

func (a *app) serviceRotateTokenCommand() *cobra.Command {
	var reqID string
	cmd := &cobra.Command{
		Use:   "rotate-token NAME",
		Short: "Give a service a new owner token; the old one stops working at once",
		Long: `Give a service a new owner token and print it, once: the cluster keeps only
its hash. The old token stops working at once. Needs the admin token or the
service's current owner token (--token).`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			req := &rationv1.RotateOwnerTokenRequest{Name: args[0], RequestId: requestID(reqID)}
			resp, err := a.api.RotateOwnerToken(cmd.Context(), req)
			if err != nil {
				return err
			}
			err = a.print(resp, func(w io.Writer) { row(w, "owner_token", ownerTokenCell(resp.GetOwnerToken())) })
			a.ownerTokenNote(args[0], resp.GetOwnerToken())
			return err
		},
	}
	requestIDFlag(cmd, &reqID)
	return cmd
}

// ownerTokenCell is how a table shows an owner token that may be missing.
func ownerTokenCell(token string) string {
	if token == "" {
		return "(not shown: see below)"
	}
	return token
}

// ownerTokenNote tells, on stderr so that stdout stays the answer, that an
// owner token is shown once, or why none was.
func (a *app) ownerTokenNote(service, token string) {
	if token != "" {
		fmt.Fprintf(a.stderr, "rationctl: keep the owner token of %s now: it will not be shown again "+
			"(rationctl service rotate-token %s makes a new one)\n", service, service)
		return
	}
	fmt.Fprintf(a.stderr, "rationctl: no owner token in this answer: it repeats an earlier call with the same request id, "+
		"whose token cannot be shown again; run rationctl service rotate-token %s for a new one\n", service)
}

// requestIDFlag adds --request-id to a write command.
func requestIDFlag(cmd *cobra.Command, p *string) {
	cmd.Flags().StringVar(p, "request-id", "", "idempotency key: the same id retried takes effect once (default random)")
}

// Tables shared by several commands.

// serviceTable lists services, with a (total) row when total is set. The
// validation columns show when a service listed validates.
func serviceTable(w io.Writer, services []*rationv1.ServiceInfo, total *rationv1.ItemCounts) {
	validation := slices.ContainsFunc(services, func(s *rationv1.ServiceInfo) bool { return validating(s.GetConfig()) })
	head := []any{"NAME", "KIND", "STATE", "PENDING", "LEASED", "DONE", "QUARANTINED"}
	if validation {
		head = append(head, validationHeads...)
	}
	row(w, head...)
	var sum rationv1.Counters
	for _, s := range services {
		it := s.GetItems()
		cells := []any{s.GetName(), s.GetKind(), enumName(s.GetState(), "SERVICE_STATE_"),
			it.GetPending(), it.GetLeased(), it.GetDone(), it.GetQuarantined()}
		if validation {
			cells = append(cells, validationCells(s)...)
		}
		row(w, cells...)
		c := s.GetCounters()
		sum.ResultsValidated += c.GetResultsValidated()
		sum.ResultsUnvalidated += c.GetResultsUnvalidated()
		sum.CanariesFailed += c.GetCanariesFailed()
	}
	if total == nil {
		return
	}
	cells := []any{"(total)", "", "", total.GetPending(), total.GetLeased(), total.GetDone(), total.GetQuarantined()}
	if validation {
		cells = append(cells, total.GetAwaitingQuorum(), total.GetInconclusive(), sum.ResultsValidated, sum.ResultsUnvalidated, sum.CanariesFailed)
	}
	row(w, cells...)
}

func configRows(w io.Writer, c *rationv1.ServiceConfig) {
	row(w, "bucket_size", c.GetBucketSize())
	row(w, "max_buckets_per_acquire", c.GetMaxBucketsPerAcquire())
	row(w, "lease_ttl", fmtDur(c.GetLeaseTtl()))
	row(w, "release_grace", fmtDur(c.GetReleaseGrace()))
	row(w, "max_attempts", c.GetMaxAttempts())
	row(w, "max_items_per_add", c.GetMaxItemsPerAdd())
	row(w, "worker_inactive_after", fmtDur(c.GetWorkerInactiveAfter()))
	row(w, "priority_aging", fmtDur(c.GetPriorityAging()))
	row(w, "max_payload_bytes", c.GetMaxPayloadBytes())
	row(w, "verdicts", fmtStr(strings.Join(c.GetVerdicts(), ",")))
	row(w, "max_leases_per_worker", c.GetMaxLeasesPerWorker())
	row(w, "result_retention", fmtDur(c.GetResultRetention()))
	row(w, "unacked_result_retention", fmtDur(c.GetUnackedResultRetention()))
	row(w, "max_unacked_results", c.GetMaxUnackedResults())
	row(w, "done_retention", fmtDur(c.GetDoneRetention()))
	row(w, "refresh_after", fmtDur(c.GetRefreshAfter()))
	if validating(c) {
		validationRow(w, c.GetValidation())
	}
}

func serviceRows(w io.Writer, s *rationv1.ServiceInfo) {
	it, b, c := s.GetItems(), s.GetBuckets(), s.GetCounters()
	row(w, "name", s.GetName())
	row(w, "kind", s.GetKind())
	row(w, "state", enumName(s.GetState(), "SERVICE_STATE_"))
	row(w, "reason", fmtStr(s.GetReason()))
	row(w, "created_at", fmtTime(s.GetCreatedAt()))
	row(w, "updated_at", fmtTime(s.GetUpdatedAt()))
	row(w, "items", fmt.Sprintf("pending=%d leased=%d done=%d quarantined=%d",
		it.GetPending(), it.GetLeased(), it.GetDone(), it.GetQuarantined()))
	row(w, "buckets", fmt.Sprintf("unassigned=%d leased=%d dead=%d done=%d",
		b.GetUnassigned(), b.GetLeased(), b.GetDead(), b.GetDone()))
	configRows(w, s.GetConfig())
	counterRows(w, c)
	if validating(s.GetConfig()) {
		validationCounterRow(w, it, c)
	}
	exportRows(w, s.GetExport())
}

func counterRows(w io.Writer, c *rationv1.Counters) {
	row(w, "leases", fmt.Sprintf("granted=%d expired=%d released=%d ended=%d",
		c.GetLeasesGranted(), c.GetLeasesExpired(), c.GetLeasesReleased(), c.GetLeasesEnded()))
	row(w, "results", fmt.Sprintf("accepted=%d reverted=%d late_submits=%d buckets_done=%d trimmed=%d dropped=%d",
		c.GetResultsAccepted(), c.GetResultsReverted(), c.GetLateSubmits(), c.GetBucketsDone(), c.GetResultsTrimmed(), c.GetResultsDropped()))
	row(w, "item_flow", fmt.Sprintf("added=%d requeued=%d quarantined=%d dead_released=%d refreshed=%d forgotten=%d",
		c.GetItemsAdded(), c.GetItemsRequeued(), c.GetItemsQuarantined(), c.GetDeadReleased(), c.GetItemsRefreshed(), c.GetItemsForgotten()))
	row(w, "rejected", c.GetRejected())
	row(w, "heartbeats", c.GetHeartbeats())
	row(w, "verdicts", fmtVerdicts(c.GetVerdicts()))
}
