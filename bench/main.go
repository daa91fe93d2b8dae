// Command bench runs the same work-distribution workload (the bucket
// cycle: acquire buckets, submit a result for every item, repeat) on a
// 3-node ration cluster and on a 3-member etcd cluster, both started in this
// process on loopback, alternating rounds between them, and prints a
// comparison. See README.md.
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"path/filepath"
	"runtime"
	"runtime/pprof"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"text/tabwriter"
	"time"
)

type options struct {
	Rounds       int           `json:"rounds"`
	OtherRounds  int           `json:"other_rounds"`
	Duration     time.Duration `json:"-"`
	Warmup       time.Duration `json:"-"`
	Workers      []int         `json:"workers"`
	RatioWorkers int           `json:"ratio_workers"`
	BucketSize   int           `json:"bucket_size"`
	PayloadBytes int           `json:"payload_bytes_per_item"`
	PerAcquire   int           `json:"buckets_per_acquire"`
	Chunk        int           `json:"ids_per_add"`
	Conns        int           `json:"conns"`
	RationProto  string        `json:"ration_proto"`
	Output       string        `json:"-"`
	Systems      []string      `json:"systems"`
	Progress     time.Duration `json:"-"`
	Settle       time.Duration `json:"-"`
	Seconds      float64       `json:"duration_seconds"`
	MemProfile   string        `json:"-"`
	WarmupSecs   float64       `json:"warmup_seconds"`
}

func main() {
	o := options{}
	workers := flag.String("workers", "1,16,64,256", "comma-separated worker counts")
	flag.IntVar(&o.Rounds, "rounds", 3, "rounds per system at -ratio-workers (medians are taken over rounds)")
	flag.IntVar(&o.OtherRounds, "other-rounds", 1, "rounds per system at the other worker counts")
	flag.DurationVar(&o.Duration, "duration", 10*time.Second, "measured time of one round")
	flag.DurationVar(&o.Warmup, "warmup", 2*time.Second, "unmeasured warm-up before each round")
	flag.IntVar(&o.RatioWorkers, "ratio-workers", 64, "worker count of the headline ratio (last line)")
	flag.IntVar(&o.BucketSize, "bucket", 180, "items per bucket")
	flag.IntVar(&o.PayloadBytes, "payload", 56, "payload bytes of each item's result (56 x 180 items = ~10 KB per bucket)")
	flag.IntVar(&o.PerAcquire, "n", 1, "buckets asked for per acquire")
	flag.IntVar(&o.Chunk, "chunk", 18000, "ids per owner add")
	flag.IntVar(&o.Conns, "conns", 8, "client connections shared by the workers (etcd clientv3 clients; ration gRPC h2c clients)")
	flag.StringVar(&o.RationProto, "ration-proto", "connect", "ration client protocol: connect (Connect over HTTP/1.1) or grpc (gRPC over h2c)")
	flag.StringVar(&o.Output, "o", "table", "output: table or json")
	flag.DurationVar(&o.Progress, "progress", 2*time.Second, "progress line period (to stderr)")
	flag.DurationVar(&o.Settle, "settle", time.Second, "pause between rounds")
	systems := flag.String("systems", "ration,etcd", "systems to run (for debugging; the ratio needs both)")
	cpuprofile := flag.String("cpuprofile", "", "write a CPU profile of the whole run to this file")
	flag.StringVar(&o.MemProfile, "memprofile", "", "write a heap profile to this file after the last round, with both clusters still running")
	flag.Parse()
	o.Systems = strings.Split(*systems, ",")
	if *cpuprofile != "" {
		f, err := os.Create(*cpuprofile)
		if err != nil {
			fmt.Fprintln(os.Stderr, "bench:", err)
			os.Exit(1)
		}
		pprof.StartCPUProfile(f)
		defer pprof.StopCPUProfile()
	}
	for _, s := range strings.Split(*workers, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(s))
		if err != nil || n < 1 {
			fmt.Fprintf(os.Stderr, "bench: -workers: bad count %q\n", s)
			os.Exit(2)
		}
		o.Workers = append(o.Workers, n)
	}
	switch {
	case o.Output != "table" && o.Output != "json":
		fmt.Fprintln(os.Stderr, "bench: -o: want table or json")
		os.Exit(2)
	case o.BucketSize < 1 || o.Chunk < o.BucketSize || o.PerAcquire < 1 || o.Conns < 1 || o.PayloadBytes < 0:
		fmt.Fprintln(os.Stderr, "bench: -bucket, -chunk, -n, -conns must be positive (chunk >= bucket), -payload >= 0")
		os.Exit(2)
	}
	o.Seconds, o.WarmupSecs = o.Duration.Seconds(), o.Warmup.Seconds()

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	results, interrupted, err := run(ctx, o, os.Stderr)
	stop()
	if err == nil {
		// Everything is stopped and removed by now, so nothing prints after the last line.
		err = report(os.Stdout, o, results, interrupted)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		pprof.StopCPUProfile()
		os.Exit(1)
	}
	if interrupted {
		pprof.StopCPUProfile()
		os.Exit(130)
	}
}

// run starts both systems, runs the rounds, and stops and removes
// everything before it returns.
func run(ctx context.Context, o options, log io.Writer) (results []roundResult, interrupted bool, err error) {
	dir, err := os.MkdirTemp("", "ration-bench-")
	if err != nil {
		return nil, false, err
	}
	defer func() {
		if rerr := os.RemoveAll(dir); rerr != nil && err == nil {
			err = rerr
		}
	}()
	fmt.Fprintf(log, "starting a 3-node ration cluster and a 3-member etcd cluster under %s\n", dir)
	var systems []system
	if slices.Contains(o.Systems, "ration") {
		rs, err := startRation(ctx, filepath.Join(dir, "ration"), o.RationProto, o.Conns)
		if err != nil {
			return nil, false, err
		}
		defer func() {
			fmt.Fprintln(log, "stopping ration")
			rs.Close()
		}()
		systems = append(systems, rs)
	}
	if slices.Contains(o.Systems, "etcd") {
		es, err := startEtcd(ctx, filepath.Join(dir, "etcd"), o.Conns)
		if err != nil {
			return nil, false, err
		}
		defer func() {
			fmt.Fprintln(log, "stopping etcd")
			es.Close()
		}()
		systems = append(systems, es)
	}
	payload := payloadOf(o.PayloadBytes)

	seq := 0
outer:
	for _, w := range o.Workers {
		rounds := o.OtherRounds
		if w == o.RatioWorkers {
			rounds = o.Rounds
		}
		for rnd := 1; rnd <= rounds; rnd++ {
			for _, sys := range systems { // alternate: ration, etcd, ration, etcd, ...
				seq++
				label := fmt.Sprintf("%s w=%d #%d/%d", sys.Name(), w, rnd, rounds)
				fmt.Fprintf(log, "round %s\n", label)
				p := roundParams{Seq: seq, Workers: w, PerAcquire: o.PerAcquire, BucketSize: o.BucketSize,
					Chunk: o.Chunk, Payload: payload}
				res, err := runRound(ctx, sys, p, runConfig{Warmup: o.Warmup, Duration: o.Duration, Progress: o.Progress, Log: log}, label)
				if err != nil {
					if ctx.Err() != nil {
						interrupted = true
						break outer
					}
					return results, false, err
				}
				res.Round = rnd
				results = append(results, res)
				fmt.Fprintf(log, "  %-22s done: items/s=%.0f buckets/s=%.1f acquire p50/p99=%.2f/%.2fms submit p50/p99=%.2f/%.2fms cpu=%.0f%% errors=%d empty=%d pool-min=%d owner-add p50/p99=%.0f/%.0fms %v\n",
					label, res.ItemsPerSec, res.BucketsPerSec, res.Acquire.P50, res.Acquire.P99, res.Submit.P50, res.Submit.P99,
					res.CPUPercent, sum(res.Errors), res.EmptyAcquires, res.PoolMin, res.OwnerAdd.P50, res.OwnerAdd.P99, res.Counters)
				if !sleepCtx(ctx, o.Settle) {
					interrupted = true
					break outer
				}
			}
		}
	}
	if interrupted {
		fmt.Fprintln(log, "interrupted: reporting the rounds that finished")
	}
	if o.MemProfile != "" {
		if err := writeHeapProfile(o.MemProfile); err != nil {
			return results, interrupted, err
		}
	}
	return results, interrupted, nil
}

// report prints the results; its last line is the headline ratio.
func report(out io.Writer, o options, results []roundResult, interrupted bool) error {
	summary := summarize(results, o.Workers)
	ratio, ok := ratioAt(summary, o.RatioWorkers)
	if o.Output == "json" {
		enc := json.NewEncoder(out)
		enc.SetIndent("", "  ")
		if err := enc.Encode(map[string]any{"options": o, "rounds": results, "summary": summary,
			"ratio_items_per_sec": ratio, "ratio_workers": o.RatioWorkers, "interrupted": interrupted}); err != nil {
			return err
		}
	} else {
		printTable(out, o, summary, results)
		// Both clusters live in this process and keep every round's state.
		var ru syscall.Rusage
		if syscall.Getrusage(syscall.RUSAGE_SELF, &ru) == nil {
			fmt.Fprintf(out, "peak memory of this process (both clusters, all rounds): %.1f GiB\n", float64(ru.Maxrss)/(1<<20))
		}
	}
	r := "n/a"
	if ok {
		r = fmt.Sprintf("%.2f", ratio)
	}
	fmt.Fprintf(out, "ration/etcd items/s ratio: %s (workers=%d)\n", r, o.RatioWorkers)
	return nil
}

// summary is the medians over rounds of one system at one worker count.
type summary struct {
	System        string           `json:"system"`
	Workers       int              `json:"workers"`
	Rounds        int              `json:"rounds"`
	ItemsPerSec   float64          `json:"items_per_sec"`
	BucketsPerSec float64          `json:"buckets_per_sec"`
	Acquire       latStats         `json:"acquire"`
	Submit        latStats         `json:"submit"`
	CPUPercent    float64          `json:"cpu_percent"`
	Errors        map[string]int64 `json:"errors"` // summed over rounds
	EmptyAcquires int64            `json:"empty_acquires"`
	Counters      map[string]int64 `json:"counters,omitempty"` // summed over rounds
}

func summarize(results []roundResult, workers []int) []summary {
	var out []summary
	for _, w := range workers {
		for _, name := range []string{"ration", "etcd"} {
			var rs []roundResult
			for _, r := range results {
				if r.Workers == w && r.System == name {
					rs = append(rs, r)
				}
			}
			if len(rs) == 0 {
				continue
			}
			med := func(f func(roundResult) float64) float64 {
				v := make([]float64, len(rs))
				for i, r := range rs {
					v[i] = f(r)
				}
				return median(v)
			}
			s := summary{System: name, Workers: w, Rounds: len(rs),
				ItemsPerSec:   med(func(r roundResult) float64 { return r.ItemsPerSec }),
				BucketsPerSec: med(func(r roundResult) float64 { return r.BucketsPerSec }),
				CPUPercent:    med(func(r roundResult) float64 { return r.CPUPercent }),
				Acquire: latStats{P50: med(func(r roundResult) float64 { return r.Acquire.P50 }),
					P99:  med(func(r roundResult) float64 { return r.Acquire.P99 }),
					P999: med(func(r roundResult) float64 { return r.Acquire.P999 })},
				Submit: latStats{P50: med(func(r roundResult) float64 { return r.Submit.P50 }),
					P99:  med(func(r roundResult) float64 { return r.Submit.P99 }),
					P999: med(func(r roundResult) float64 { return r.Submit.P999 })},
				Errors: map[string]int64{},
			}
			for _, r := range rs {
				s.Acquire.Count += r.Acquire.Count
				s.Submit.Count += r.Submit.Count
				s.EmptyAcquires += r.EmptyAcquires
				for k, v := range r.Errors {
					s.Errors[k] += v
				}
				if r.Counters != nil {
					if s.Counters == nil {
						s.Counters = map[string]int64{}
					}
					for k, v := range r.Counters {
						s.Counters[k] += v
					}
				}
			}
			out = append(out, s)
		}
	}
	return out
}

func ratioAt(sums []summary, workers int) (float64, bool) {
	var ra, et float64
	for _, s := range sums {
		if s.Workers != workers {
			continue
		}
		switch s.System {
		case "ration":
			ra = s.ItemsPerSec
		case "etcd":
			et = s.ItemsPerSec
		}
	}
	if ra == 0 || et == 0 {
		return 0, false
	}
	return ra / et, true
}

func printTable(out io.Writer, o options, sums []summary, results []roundResult) {
	fmt.Fprintf(out, "\nbucket cycle: bucket=%d items, %d B payload per item (%.1f KB results per bucket), %d bucket(s) per acquire, %s rounds after %s warm-up, ration over %s\n",
		o.BucketSize, o.PayloadBytes, float64(o.BucketSize*o.PayloadBytes)/1000, o.PerAcquire, o.Duration, o.Warmup, o.RationProto)
	fmt.Fprintln(out, "medians over rounds; latencies in ms (acquire = ration Acquire / etcd range+claim Txn; submit = ration Submit / etcd fenced Txn)")
	tw := tabwriter.NewWriter(out, 2, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "workers\tsystem\trounds\titems/s\tbuckets/s\tacq p50\tacq p99\tacq p999\tsub p50\tsub p99\tsub p999\tcpu%\terrors\tempty\t")
	for _, s := range sums {
		fmt.Fprintf(tw, "%d\t%s\t%d\t%.0f\t%.1f\t%.2f\t%.2f\t%.2f\t%.2f\t%.2f\t%.2f\t%.0f\t%d\t%d\t\n",
			s.Workers, s.System, s.Rounds, s.ItemsPerSec, s.BucketsPerSec, s.Acquire.P50, s.Acquire.P99, s.Acquire.P999,
			s.Submit.P50, s.Submit.P99, s.Submit.P999, s.CPUPercent, sum(s.Errors), s.EmptyAcquires)
	}
	tw.Flush()

	fmt.Fprintln(out, "\nration/etcd by worker count (items/s, median over rounds):")
	tw = tabwriter.NewWriter(out, 2, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "workers\tration\tetcd\tratio\tration rounds\tetcd rounds\t")
	for _, w := range o.Workers {
		var ra, et []string
		for _, r := range results {
			if r.Workers == w {
				v := fmt.Sprintf("%.0f", r.ItemsPerSec)
				if r.System == "ration" {
					ra = append(ra, v)
				} else {
					et = append(et, v)
				}
			}
		}
		ratio, ok := ratioAt(sums, w)
		if !ok {
			continue
		}
		var rv, ev float64
		for _, s := range sums {
			if s.Workers == w && s.System == "ration" {
				rv = s.ItemsPerSec
			} else if s.Workers == w {
				ev = s.ItemsPerSec
			}
		}
		fmt.Fprintf(tw, "%d\t%.0f\t%.0f\t%.2f\t%s\t%s\t\n", w, rv, ev, ratio, strings.Join(ra, " "), strings.Join(et, " "))
	}
	tw.Flush()

	var lines []string
	for _, s := range sums {
		for _, k := range sortedKeys(s.Errors) {
			lines = append(lines, fmt.Sprintf("  %s w=%d: %s x%d", s.System, s.Workers, k, s.Errors[k]))
		}
	}
	if len(lines) > 0 {
		fmt.Fprintln(out, "\nerrors by code (summed over rounds):")
		fmt.Fprintln(out, strings.Join(lines, "\n"))
	} else {
		fmt.Fprintln(out, "\nerrors by code: none")
	}
	var ctr []string
	for _, s := range sums {
		if len(s.Counters) > 0 {
			var kv []string
			for _, k := range sortedKeys(s.Counters) {
				kv = append(kv, fmt.Sprintf("%s=%d", k, s.Counters[k]))
			}
			ctr = append(ctr, fmt.Sprintf("  %s w=%d: %s", s.System, s.Workers, strings.Join(kv, " ")))
		}
	}
	if len(ctr) > 0 {
		fmt.Fprintln(out, "etcd counters in the measured windows (summed over rounds):")
		fmt.Fprintln(out, strings.Join(ctr, "\n"))
	}
}

func median(v []float64) float64 {
	if len(v) == 0 {
		return 0
	}
	v = slices.Clone(v)
	slices.Sort(v)
	if len(v)%2 == 1 {
		return v[len(v)/2]
	}
	return (v[len(v)/2-1] + v[len(v)/2]) / 2
}

func sum(m map[string]int64) int64 {
	var t int64
	for _, v := range m {
		t += v
	}
	return t
}

// writeHeapProfile writes the live heap, after a collection, to path.
func writeHeapProfile(path string) error {
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	runtime.GC()
	if err := pprof.WriteHeapProfile(f); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}
