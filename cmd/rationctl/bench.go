package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"connectrpc.com/connect"
	"github.com/spf13/cobra"
	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/rationhq/ration/api/client"
	rationv1 "github.com/rationhq/ration/api/ration/v1"
)

// benchConfig is the load of `rationctl bench`.
type benchConfig struct {
	service    string
	workers    int
	perAcquire uint32
	bucketSize uint32
	payload    int
	duration   time.Duration
	warmup     time.Duration
	progress   time.Duration
	// A soak: export (and acknowledge) beside the load, report memory.
	export      bool
	reportEvery time.Duration
	// Retention of a service bench creates (unset: the server's defaults).
	resultRetention, doneRetention *time.Duration
}

func (a *app) benchCommand() *cobra.Command {
	cfg := benchConfig{}
	cmd := &cobra.Command{
		Use:   "bench",
		Short: "Run the bucket cycle with many workers and report throughput and latency",
		Long: `Run a load against a running cluster: W concurrent workers run the bucket
cycle (acquire up to --per-acquire buckets, submit a result for every item,
repeat) on a service that an owner keeps fed. It reports items/s, buckets/s,
acquire and submit latency percentiles, and errors by code; a progress line
goes to stderr while it runs. The service is created if it does not exist
(needs the admin token when the cluster has one).

As a soak: --export runs the owner's export loop beside the load, following
the results and acknowledging them every second, and --report-every prints,
per interval, items/s, what was exported, and each node's heap in use and
resident memory (from its /metrics). --result-retention and
--done-retention set those of a service bench creates.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if cfg.workers < 1 || cfg.perAcquire < 1 || cfg.bucketSize < 1 || cfg.duration <= 0 {
				return errors.New("--workers, --per-acquire, --bucket-size and --duration must be positive")
			}
			return a.runBench(cmd.Context(), cfg)
		},
	}
	f := cmd.Flags()
	f.StringVar(&cfg.service, "service", "bench", "service to load (created with kind dmcheck if missing)")
	f.IntVar(&cfg.workers, "workers", 16, "concurrent workers")
	f.Uint32Var(&cfg.perAcquire, "per-acquire", 1, "buckets per Acquire")
	f.Uint32Var(&cfg.bucketSize, "bucket-size", 180, "items per bucket, when the service is created")
	f.IntVar(&cfg.payload, "payload", 56, "payload bytes per result (56 x 180 items is about 10 KB per bucket)")
	f.DurationVar(&cfg.duration, "duration", 30*time.Second, "measured time")
	f.DurationVar(&cfg.warmup, "warmup", 3*time.Second, "unmeasured time before")
	f.DurationVar(&cfg.progress, "progress", 2*time.Second, "progress line interval (0: none)")
	f.BoolVar(&cfg.export, "export", false, "export and acknowledge the results beside the load")
	f.DurationVar(&cfg.reportEvery, "report-every", 0, "report items/s and each node's memory at this interval (0: none)")
	var resultRetention, doneRetention time.Duration
	f.DurationVar(&resultRetention, "result-retention", 0, "result_retention of a service bench creates")
	f.DurationVar(&doneRetention, "done-retention", 0, "done_retention of a service bench creates")
	cmd.PreRun = func(cmd *cobra.Command, _ []string) {
		if cmd.Flags().Changed("result-retention") {
			cfg.resultRetention = &resultRetention
		}
		if cmd.Flags().Changed("done-retention") {
			cfg.doneRetention = &doneRetention
		}
	}
	return cmd
}

// benchResult is what bench prints with -o json.
type benchResult struct {
	Workers       int                `json:"workers"`
	Seconds       float64            `json:"seconds"`
	Items         int64              `json:"items"`
	Buckets       int64              `json:"buckets"`
	ItemsPerSec   float64            `json:"items_per_sec"`
	BucketsPerSec float64            `json:"buckets_per_sec"`
	AcquireMs     map[string]float64 `json:"acquire_ms"`
	SubmitMs      map[string]float64 `json:"submit_ms"`
	Errors        map[string]int64   `json:"errors"`
	Exported      int64              `json:"exported,omitempty"`
	Report        []benchReportRow   `json:"report,omitempty"`
}

type benchStats struct {
	mu       sync.Mutex
	acquire  []time.Duration
	submit   []time.Duration
	errors   map[string]int64
	items    atomic.Int64
	buckets  atomic.Int64
	measured atomic.Bool
}

func (s *benchStats) record(lat *[]time.Duration, d time.Duration, err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if err != nil {
		s.errors[connect.CodeOf(err).String()+" "+client.Reason(err)]++
		return
	}
	if s.measured.Load() {
		*lat = append(*lat, d)
	}
}

func (a *app) runBench(ctx context.Context, cfg benchConfig) error {
	owner, err := client.New(client.Config{Addrs: a.addrs, AdminToken: a.token, HTTPClient: a.httpClient})
	if err != nil {
		return err
	}
	if err := benchService(ctx, owner, cfg); err != nil {
		return err
	}
	// Fresh worker ids per run: an id stays bound to the secret it first used.
	runID := client.NewRequestID()[:8]
	secret := a.workerSecret
	if secret == "" {
		secret = "rationctl-bench-secret-" + runID
	}
	st := &benchStats{errors: map[string]int64{}}
	run, stop := context.WithCancel(ctx)
	defer stop()
	var wg sync.WaitGroup
	wg.Go(func() { a.benchFeed(run, owner, cfg) })
	var exported atomic.Int64
	if cfg.export {
		wg.Go(func() { benchExport(run, owner, cfg.service, &exported) })
	}
	payload := strings.Repeat("p", cfg.payload)
	for i := range cfg.workers {
		w, err := client.New(client.Config{Addrs: a.addrs, WorkerSecret: secret, HTTPClient: a.httpClient})
		if err != nil {
			return err
		}
		id := fmt.Sprintf("bench-%s-%d", runID, i)
		if _, err := w.Register(ctx, &rationv1.RegisterRequest{Service: cfg.service, WorkerId: id}); err != nil {
			return fmt.Errorf("register %s: %w", id, err)
		}
		wg.Go(func() { benchWorker(run, w, id, cfg, payload, st) })
	}
	sleepCtx(run, cfg.warmup)
	st.measured.Store(true)
	start := time.Now()
	items0, buckets0 := st.items.Load(), st.buckets.Load()
	var report []benchReportRow
	reported := make(chan struct{})
	measure, endMeasure := context.WithCancel(run)
	go func() {
		defer close(reported)
		if cfg.reportEvery > 0 {
			report = a.benchReport(measure, cfg.reportEvery, st, &exported, start)
		}
	}()
	a.benchProgress(run, cfg, st, start, items0)
	endMeasure()
	<-reported
	elapsed := time.Since(start)
	items, buckets := st.items.Load()-items0, st.buckets.Load()-buckets0
	st.measured.Store(false)
	stop()
	wg.Wait()

	st.mu.Lock()
	defer st.mu.Unlock()
	res := benchResult{Workers: cfg.workers, Seconds: elapsed.Seconds(), Items: items, Buckets: buckets,
		ItemsPerSec: float64(items) / elapsed.Seconds(), BucketsPerSec: float64(buckets) / elapsed.Seconds(),
		AcquireMs: percentiles(st.acquire), SubmitMs: percentiles(st.submit), Errors: st.errors,
		Exported: exported.Load(), Report: report}
	return a.printBench(res, cfg)
}

// benchService creates the service to load, unless it exists.
func benchService(ctx context.Context, owner *client.Client, cfg benchConfig) error {
	if _, err := owner.GetService(ctx, &rationv1.GetServiceRequest{Name: cfg.service}); connect.CodeOf(err) == connect.CodeNotFound {
		sc := &rationv1.ServiceConfig{BucketSize: cfg.bucketSize, MaxLeasesPerWorker: 100000, LeaseTtl: durationpb.New(10 * time.Minute),
			MaxBucketsPerAcquire: max(cfg.perAcquire, 10)}
		if cfg.resultRetention != nil {
			sc.ResultRetention = durationpb.New(*cfg.resultRetention)
		}
		if cfg.doneRetention != nil {
			sc.DoneRetention = durationpb.New(*cfg.doneRetention)
		}
		_, err = owner.CreateService(ctx, &rationv1.CreateServiceRequest{Name: cfg.service, Kind: "dmcheck", Config: sc})
		if err != nil {
			return fmt.Errorf("create service %s: %w", cfg.service, err)
		}
	} else if err != nil {
		return err
	}
	return nil
}

// printBench prints what bench measured: JSON with -o json, else a table
// and the report's rows.
func (a *app) printBench(res benchResult, cfg benchConfig) error {
	if a.output == "json" {
		enc := json.NewEncoder(a.stdout)
		enc.SetIndent("", "  ")
		return enc.Encode(res)
	}
	w := newTable(a.stdout)
	row(w, "WORKERS", "SECONDS", "ITEMS/S", "BUCKETS/S", "ACQUIRE P50/P99/P999 MS", "SUBMIT P50/P99/P999 MS", "ERRORS")
	row(w, res.Workers, fmt.Sprintf("%.1f", res.Seconds), fmt.Sprintf("%.0f", res.ItemsPerSec), fmt.Sprintf("%.1f", res.BucketsPerSec),
		fmtPct(res.AcquireMs), fmtPct(res.SubmitMs), fmtErrors(res.Errors))
	if err := w.Flush(); err != nil {
		return err
	}
	for _, r := range res.Report {
		fmt.Fprintln(a.stdout, fmtReportRow(r))
	}
	if cfg.export {
		fmt.Fprintf(a.stdout, "exported and acknowledged %d results\n", res.Exported)
	}
	return nil
}

// benchWorker runs the bucket cycle.
func benchWorker(ctx context.Context, c *client.Client, id string, cfg benchConfig, payload string, st *benchStats) {
	for ctx.Err() == nil {
		t0 := time.Now()
		res, err := c.Acquire(ctx, &rationv1.AcquireRequest{Service: cfg.service, WorkerId: id, MaxBuckets: cfg.perAcquire})
		if ctx.Err() != nil {
			return
		}
		st.record(&st.acquire, time.Since(t0), err)
		if err != nil || len(res.GetBuckets()) == 0 {
			sleepCtx(ctx, 20*time.Millisecond)
			continue
		}
		for _, b := range res.GetBuckets() {
			results := make([]*rationv1.ResultInput, len(b.Items))
			for i, it := range b.Items {
				results[i] = &rationv1.ResultInput{Item: it, Verdict: "DM", Payload: payload}
			}
			t0 := time.Now()
			_, err := c.Submit(ctx, &rationv1.SubmitRequest{WorkerId: id, BucketId: b.Id, Epoch: b.Lease.GetEpoch(), Results: results})
			if ctx.Err() != nil {
				return
			}
			st.record(&st.submit, time.Since(t0), err)
			if err == nil && st.measured.Load() {
				st.items.Add(int64(len(b.Items)))
				st.buckets.Add(1)
			}
		}
	}
}

// benchFeed keeps enough pending items for every worker to find work. Ids
// are decimal numbers of 19 digits, like account ids, counted from the
// run's start time in nanoseconds, so runs a second apart never share one.
func (a *app) benchFeed(ctx context.Context, owner *client.Client, cfg benchConfig) {
	want := int64(cfg.workers) * int64(cfg.perAcquire) * int64(cfg.bucketSize) * 8
	run := uint64(time.Now().UnixNano())
	for n := uint64(0); ctx.Err() == nil; {
		s, err := owner.GetService(ctx, &rationv1.GetServiceRequest{Name: cfg.service, Consistency: rationv1.Consistency_CONSISTENCY_STALE})
		if err == nil && s.Service.GetItems().GetPending() < want {
			chunk := min(int(s.Service.GetConfig().GetMaxItemsPerAdd()), 18000)
			ids := make([]string, chunk)
			for i := range ids {
				ids[i] = strconv.FormatUint(run+n, 10)
				n++
			}
			if _, err := owner.AddItems(ctx, &rationv1.AddItemsRequest{Service: cfg.service, Items: ids}); err == nil {
				continue
			}
		}
		sleepCtx(ctx, 100*time.Millisecond)
	}
}

func (a *app) benchProgress(ctx context.Context, cfg benchConfig, st *benchStats, start time.Time, items0 int64) {
	end := time.After(cfg.duration)
	var tick <-chan time.Time
	if cfg.progress > 0 {
		t := time.NewTicker(cfg.progress)
		defer t.Stop()
		tick = t.C
	}
	last, lastAt := items0, start
	for {
		select {
		case <-ctx.Done():
			return
		case <-end:
			return
		case now := <-tick:
			items := st.items.Load()
			st.mu.Lock()
			acq, sub := percentiles(st.acquire)["p50"], percentiles(st.submit)["p50"]
			var errs int64
			for _, n := range st.errors {
				errs += n
			}
			st.mu.Unlock()
			fmt.Fprintf(a.stderr, "%5.0fs  %8.0f items/s  acquire p50 %.1f ms  submit p50 %.1f ms  errors %d\n",
				now.Sub(start).Seconds(), float64(items-last)/now.Sub(lastAt).Seconds(), acq, sub, errs)
			last, lastAt = items, now
		}
	}
}

func percentiles(ds []time.Duration) map[string]float64 {
	out := map[string]float64{"p50": 0, "p99": 0, "p999": 0}
	if len(ds) == 0 {
		return out
	}
	s := append([]time.Duration(nil), ds...)
	sort.Slice(s, func(i, j int) bool { return s[i] < s[j] })
	at := func(q float64) float64 { return float64(s[min(len(s)-1, int(q*float64(len(s))))]) / 1e6 }
	out["p50"], out["p99"], out["p999"] = at(0.50), at(0.99), at(0.999)
	return out
}

func fmtPct(p map[string]float64) string {
	return fmt.Sprintf("%.1f / %.1f / %.1f", p["p50"], p["p99"], p["p999"])
}

func fmtErrors(errs map[string]int64) string {
	if len(errs) == 0 {
		return "-"
	}
	var parts []string
	for k, n := range errs {
		parts = append(parts, fmt.Sprintf("%s=%d", strings.TrimSpace(k), n))
	}
	sort.Strings(parts)
	return strings.Join(parts, ",")
}

func sleepCtx(ctx context.Context, d time.Duration) {
	select {
	case <-ctx.Done():
	case <-time.After(d):
	}
}
