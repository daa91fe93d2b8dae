package cluster_test

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"

	rationv1 "github.com/rationhq/ration/api/ration/v1"
	"github.com/rationhq/ration/cluster"
	"github.com/rationhq/ration/cluster/clustertest"
)

// BenchmarkCluster_Apply measures proposals per second through a real
// 3-node cluster (TCP, BoltDB) with 64 proposers, with the leader's group
// commit and without it (one command per log entry, as many in flight as
// there are proposers), and the latency of one proposer alone. Compare
// commands/s between the modes in one run.
func BenchmarkCluster_Apply(b *testing.B) {
	for _, mode := range []struct {
		name               string
		inFlight, perEntry int
		proposers          int
	}{{"group-commit", 2, 512, 64}, {"one-per-entry", 1024, 1, 64}, {"sequential", 2, 512, 1}} {
		b.Run(mode.name, func(b *testing.B) {
			c := clustertest.New(b, 3, clustertest.Options{Config: func(i int, cfg *cluster.Config) {
				cfg.MaxEntriesInFlight, cfg.MaxCommandsPerEntry = mode.inFlight, mode.perEntry
			}})
			l := c.Leader()
			ctx := context.Background()
			if _, err := l.Apply(ctx, &rationv1.Command{Op: &rationv1.Command_CreateService{CreateService: &rationv1.CreateServiceRequest{Name: "dm", Kind: "dmcheck"}}}); err != nil {
				b.Fatal(err)
			}
			proposers := mode.proposers
			var next atomic.Int64
			b.ResetTimer()
			var wg sync.WaitGroup
			for range proposers {
				wg.Go(func() {
					for next.Add(1) <= int64(b.N) {
						id := fmt.Sprintf("i%d", next.Load())
						cmd := &rationv1.Command{Op: &rationv1.Command_AddItems{AddItems: &rationv1.AddItemsRequest{Service: "dm", Items: []string{id}}}}
						if _, err := l.Apply(ctx, cmd); err != nil {
							b.Error(err)
							return
						}
					}
				})
			}
			wg.Wait()
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "commands/s")
			b.ReportMetric(float64(b.Elapsed().Microseconds())*float64(proposers)/float64(b.N), "us/command")
			b.ReportMetric(float64(l.State().Index())/float64(b.N), "entries/command")
		})
	}
}
