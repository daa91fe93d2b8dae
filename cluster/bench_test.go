package cluster_test

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/protobuf/types/known/durationpb"

	statev1 "github.com/rationhq/ration/api/ration/state/v1"
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
			if _, err := l.Apply(ctx, &statev1.Command{Op: &statev1.Command_CreateService{CreateService: &rationv1.CreateServiceRequest{Name: "dm", Kind: "dmcheck"}}}); err != nil {
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
						cmd := &statev1.Command{Op: &statev1.Command_AddItems{AddItems: &rationv1.AddItemsRequest{Service: "dm", Items: []string{id}}}}
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

// BenchmarkCluster_Heartbeat measures heartbeats through a 1-node cluster
// with 64 workers heartbeating at once, each its own leased bucket: the
// leader's batching decides how many log entries they cost.
func BenchmarkCluster_Heartbeat(b *testing.B) {
	const workers = 64
	c := clustertest.New(b, 1, clustertest.Options{})
	l := c.Leader()
	ctx := context.Background()
	must := func(op *statev1.Command, worker string) *statev1.CommandResult {
		op.Header = &statev1.CommandHeader{Actor: "admin"}
		if worker != "" {
			op.Header.Actor, op.Header.Credential = worker, secret(worker)
		}
		res, err := l.Apply(ctx, op)
		if err != nil {
			b.Fatal(err)
		}
		return res
	}
	must(&statev1.Command{Op: &statev1.Command_CreateService{CreateService: &rationv1.CreateServiceRequest{Name: "dm", Kind: "dmcheck",
		Config: &rationv1.ServiceConfig{BucketSize: 1, LeaseTtl: durationpb.New(time.Hour)}}}}, "")
	items := make([]string, workers)
	for i := range items {
		items[i] = fmt.Sprintf("i%d", i)
	}
	must(&statev1.Command{Op: &statev1.Command_AddItems{AddItems: &rationv1.AddItemsRequest{Service: "dm", Items: items}}}, "")
	beats := make([]*statev1.HeartbeatEntry, workers)
	for i := range beats {
		w := fmt.Sprintf("w%d", i)
		must(&statev1.Command{Op: &statev1.Command_Register{Register: &rationv1.RegisterRequest{Service: "dm", WorkerId: w}}}, w)
		bk := must(&statev1.Command{Op: &statev1.Command_Acquire{Acquire: &rationv1.AcquireRequest{Service: "dm", WorkerId: w}}}, w).GetAcquire().GetBuckets()[0]
		beats[i] = &statev1.HeartbeatEntry{Credential: secret(w),
			Request: &rationv1.HeartbeatRequest{WorkerId: w, Buckets: []*rationv1.BucketRef{{Id: bk.Id, Epoch: bk.Lease.Epoch}}}}
	}
	start := l.State().Index()
	var next atomic.Int64
	b.ResetTimer()
	var wg sync.WaitGroup
	for _, e := range beats {
		wg.Go(func() {
			for next.Add(1) <= int64(b.N) {
				res, err := l.Heartbeat(ctx, e)
				if err != nil || res.GetHeartbeatEntry().GetBuckets()[0].GetLease() == nil {
					b.Errorf("heartbeat: %v %v", res, err)
					return
				}
			}
		})
	}
	wg.Wait()
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "heartbeats/s")
	b.ReportMetric(float64(l.State().Index()-start)/float64(b.N), "entries/heartbeat")
}
