package main

import (
	"bufio"
	"context"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/rationhq/ration/api/client"
	rationv1 "github.com/rationhq/ration/api/ration/v1"
)

// A long bench is a soak: --export runs the owner's export loop beside the
// load (acknowledging what it took), and --report-every prints, per
// interval, the throughput and each node's memory, read from its /metrics.

// benchExport runs one exporter that follows the service's results and
// acknowledges them every second; it counts what it took in n.
func benchExport(ctx context.Context, owner *client.Client, service string, n *atomic.Int64) {
	for ctx.Err() == nil {
		_, _ = owner.Export(ctx, client.Export{Service: service, FromAcknowledged: true, Follow: true, AckEvery: time.Second,
			Store: func(m *rationv1.ExportResultsResponse) error {
				n.Add(int64(len(m.GetResults())))
				return nil
			}})
		sleepCtx(ctx, time.Second) // an export that failed starts again from the acknowledged position
	}
}

// benchReportRow is one interval of --report-every.
type benchReportRow struct {
	At          float64         `json:"at_seconds"`
	ItemsPerSec float64         `json:"items_per_sec"`
	Exported    int64           `json:"exported"`
	Nodes       []benchNodeStat `json:"nodes"`
}

// benchNodeStat is one node's memory, from its /metrics.
type benchNodeStat struct {
	Addr      string `json:"addr"`
	HeapInuse int64  `json:"heap_inuse_bytes"`
	RSS       int64  `json:"rss_bytes"`
	Err       string `json:"error,omitempty"`
}

// benchReport samples every interval until ctx ends and returns the rows,
// printing each to stderr as it is taken.
func (a *app) benchReport(ctx context.Context, every time.Duration, st *benchStats, exported *atomic.Int64, start time.Time) []benchReportRow {
	var rows []benchReportRow
	t := time.NewTicker(every)
	defer t.Stop()
	last, lastAt := st.items.Load(), start
	for {
		select {
		case <-ctx.Done():
			return rows
		case now := <-t.C:
			items := st.items.Load()
			r := benchReportRow{At: now.Sub(start).Seconds(), ItemsPerSec: float64(items-last) / now.Sub(lastAt).Seconds(), Exported: exported.Load()}
			last, lastAt = items, now
			for _, addr := range a.addrs {
				// A row begun is finished, even if the load ends meanwhile.
				r.Nodes = append(r.Nodes, a.nodeMemory(context.WithoutCancel(ctx), addr))
			}
			rows = append(rows, r)
			fmt.Fprintln(a.stderr, fmtReportRow(r))
		}
	}
}

func fmtReportRow(r benchReportRow) string {
	var b strings.Builder
	fmt.Fprintf(&b, "report %6.0fs  %8.0f items/s  exported %d", r.At, r.ItemsPerSec, r.Exported)
	for _, n := range r.Nodes {
		if n.Err != "" {
			fmt.Fprintf(&b, "  | %s: %s", n.Addr, n.Err)
			continue
		}
		fmt.Fprintf(&b, "  | %s heap %.0f MiB rss %.0f MiB", n.Addr, float64(n.HeapInuse)/(1<<20), float64(n.RSS)/(1<<20))
	}
	return b.String()
}

// nodeMemory reads a node's heap in use and resident memory from /metrics.
func (a *app) nodeMemory(ctx context.Context, addr string) benchNodeStat {
	out := benchNodeStat{Addr: addr}
	base := addr
	if !strings.Contains(addr, "://") {
		base = "http://" + addr
	}
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, base+"/metrics", nil)
	if err != nil {
		out.Err = err.Error()
		return out
	}
	resp, err := a.httpClient.Do(req)
	if err != nil {
		out.Err = err.Error()
		return out
	}
	defer resp.Body.Close()
	for sc := bufio.NewScanner(resp.Body); sc.Scan(); {
		name, value, ok := strings.Cut(sc.Text(), " ")
		if !ok {
			continue
		}
		v, err := strconv.ParseFloat(value, 64)
		if err != nil {
			continue
		}
		switch name {
		case "go_memstats_heap_inuse_bytes":
			out.HeapInuse = int64(v)
		case "process_resident_memory_bytes":
			out.RSS = int64(v)
		}
	}
	return out
}
