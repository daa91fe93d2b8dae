package server_test

import (
	"fmt"
	"net/http"
	"sync/atomic"
	"testing"
	"time"

	"connectrpc.com/connect"
	"google.golang.org/protobuf/types/known/durationpb"

	rationv1 "github.com/rationhq/ration/api/ration/v1"
	"github.com/rationhq/ration/cluster"
	"github.com/rationhq/ration/cluster/clustertest"
	"github.com/rationhq/ration/server/servertest"
)

// skewClock is a node's wall clock, real time moved by an offset the test
// sets; the monotonic clock stays real, as a stepped wall clock does.
type skewClock struct{ off atomic.Int64 }

func (c *skewClock) Now() time.Time      { return time.Now().Add(time.Duration(c.off.Load())) }
func (c *skewClock) set(d time.Duration) { c.off.Store(int64(d)) }

// clockCluster is three nodes, each with its own wall clock.
type clockCluster struct {
	*servertest.Cluster
	clocks []*skewClock
	owner  clients
}

// newClockCluster starts n nodes whose clocks are all off by initial.
func newClockCluster(t *testing.T, n int, maxOffset, initial time.Duration) *clockCluster {
	clocks := make([]*skewClock, n)
	for i := range clocks {
		clocks[i] = &skewClock{}
		clocks[i].set(initial)
	}
	c := servertest.StartWith(t, n, servertest.Options{Config: func(i int, cfg *cluster.Config) {
		cfg.Now = clocks[i].Now
		if maxOffset > 0 {
			cfg.MaxClockOffset = maxOffset
		}
	}})
	return &clockCluster{Cluster: c, clocks: clocks, owner: newClients(http.DefaultClient, c.Addrs[0], nil, "", workerSecret)}
}

// leaseOne creates a service with lease ttl, registers a worker and leases
// its one bucket; it returns the bucket id.
func (cc *clockCluster) leaseOne(t *testing.T, ttl time.Duration) uint64 {
	t.Helper()
	cl := cc.owner
	if _, err := cl.owner.CreateService(ctx(t), connect.NewRequest(&rationv1.CreateServiceRequest{Name: "dm", Kind: "dmcheck",
		Config: &rationv1.ServiceConfig{LeaseTtl: durationpb.New(ttl), ReleaseGrace: durationpb.New(time.Hour)}})); err != nil {
		t.Fatal(err)
	}
	if _, err := cl.owner.AddItems(ctx(t), connect.NewRequest(&rationv1.AddItemsRequest{Service: "dm", Items: []string{"a", "b"}})); err != nil {
		t.Fatal(err)
	}
	if _, err := cl.worker.Register(ctx(t), connect.NewRequest(&rationv1.RegisterRequest{Service: "dm", WorkerId: "w1"})); err != nil {
		t.Fatal(err)
	}
	res, err := cl.worker.Acquire(ctx(t), connect.NewRequest(&rationv1.AcquireRequest{Service: "dm", WorkerId: "w1", MaxBuckets: 1}))
	if err != nil || len(res.Msg.Buckets) != 1 {
		t.Fatalf("acquire: %v %v", res, err)
	}
	return res.Msg.Buckets[0].Id
}

// bucketState reads the bucket's state from node's own state.
func bucketState(node *cluster.Node, id uint64) string {
	b, ok := node.State().Bucket(id)
	if !ok {
		return "missing"
	}
	switch b.State {
	case rationv1.BucketState_BUCKET_STATE_LEASED:
		return "leased"
	case rationv1.BucketState_BUCKET_STATE_DEAD:
		return "dead"
	case rationv1.BucketState_BUCKET_STATE_UNASSIGNED:
		return "unassigned"
	}
	return b.State.String()
}

// waitMeasured waits until every node has measured its clock offset.
func (cc *clockCluster) waitMeasured(t *testing.T) {
	clustertest.WaitFor(t, 10*time.Second, func() error {
		for _, n := range cc.Nodes {
			if !n.ClockOffset().Fresh() {
				return fmt.Errorf("%s has not measured its clock offset", n.ID())
			}
		}
		return nil
	})
}

// drift is how far the state machine's time on node is from real time.
func drift(node *cluster.Node) time.Duration { return node.State().Now().Sub(time.Now()) }

// TestClock_LeaderAheadNeitherExpiresLeasesNorLeads: the leader's wall clock
// jumps 3h ahead. The cluster's time does not follow it, so a 1h lease
// lives on; the leader finds itself off the majority, says so, and hands
// leadership over.
func TestClock_LeaderAheadNeitherExpiresLeasesNorLeads(t *testing.T) {
	cc := newClockCluster(t, 3, 0, 0)
	bucket := cc.leaseOne(t, time.Hour)
	cc.waitMeasured(t)
	l := cc.Leader()
	cc.clocks[cc.Index(l)].set(3 * time.Hour)
	time.Sleep(time.Second) // ticks, with the failover grace past
	for _, n := range cc.Nodes {
		if d := drift(n); d > 5*time.Second || d < -5*time.Second {
			t.Errorf("%s: the cluster's time is %s off real time", n.ID(), d)
		}
		if s := bucketState(n, bucket); s != "leased" {
			t.Errorf("%s: bucket %d is %s, want leased (its lease has 1h to run)", n.ID(), bucket, s)
		}
	}
	nl := cc.WaitForNewLeader(l.ID())
	if p := l.ClockProblem(); p == "" {
		t.Errorf("the old leader sees no problem with its clock (offset %s)", l.ClockOffset().Offset)
	}
	if err := wantProbe(cc.AddrOf(l), "/readyz", http.StatusServiceUnavailable, "off the majority's"); err != nil {
		t.Error(err)
	}
	t.Logf("leadership moved from %s (clock +3h) to %s", l.ID(), nl.ID())
}

// TestClock_LeaderBehindDoesNotStopTime: with a limit wide enough to keep it
// leading, a leader whose wall clock steps 3h back still moves the cluster's
// time on with real time, so an abandoned lease expires when it should.
func TestClock_LeaderBehindDoesNotStopTime(t *testing.T) {
	cc := newClockCluster(t, 3, 24*time.Hour, 0)
	l := cc.Leader()
	bucket := cc.leaseOne(t, 2*time.Second)
	cc.clocks[cc.Index(l)].set(-3 * time.Hour)
	start := time.Now()
	clustertest.WaitFor(t, 10*time.Second, func() error {
		if s := bucketState(l, bucket); s != "dead" && s != "unassigned" {
			return fmt.Errorf("bucket %d is %s %s after its 2s lease began", bucket, s, time.Since(start).Round(time.Millisecond))
		}
		return nil
	})
	if !l.IsLeader() {
		t.Fatal("leadership moved: the test did not keep the slow clock leading")
	}
	if d := drift(l); d > 2*time.Second || d < -2*time.Second {
		t.Errorf("the cluster's time is %s off real time", d)
	}
}

// TestClock_CatchesUpWithAgreeingClocks: a cluster whose time is an hour
// behind (its clocks were) catches up with real time at the next term once
// the voters' clocks agree again, as after a restart following hours of
// downtime; within a term it does not jump.
func TestClock_CatchesUpWithAgreeingClocks(t *testing.T) {
	cc := newClockCluster(t, 3, 0, -time.Hour)
	l := cc.Leader()
	cc.leaseOne(t, time.Hour)
	for _, c := range cc.clocks {
		c.set(0)
	}
	// Until the next measurements, each node takes the step for its own.
	clustertest.WaitFor(t, 10*time.Second, func() error {
		for _, n := range cc.Nodes {
			if o := n.ClockOffset(); !o.Fresh() || o.Offset.Abs() > 100*time.Millisecond {
				return fmt.Errorf("%s: clock offset %s", n.ID(), o.Offset)
			}
		}
		return nil
	})
	add := func(item string) {
		t.Helper()
		if _, err := cc.owner.owner.AddItems(ctx(t), connect.NewRequest(&rationv1.AddItemsRequest{Service: "dm", Items: []string{item}})); err != nil {
			t.Fatal(err)
		}
	}
	add("within-the-term")
	if d := drift(l); d > -59*time.Minute {
		t.Fatalf("the cluster's time jumped within a term: %s off real time", d)
	}
	if _, err := l.TransferLeadership(ctx(t), ""); err != nil {
		t.Fatal(err)
	}
	nl := cc.WaitForNewLeader(l.ID())
	clustertest.WaitFor(t, 10*time.Second, func() error {
		add(fmt.Sprintf("after-%d", time.Now().UnixNano()))
		if d := drift(nl); d < -2*time.Second || d > 2*time.Second {
			return fmt.Errorf("the cluster's time is %s off real time (the leader's clock offset %+v)", d, nl.ClockOffset())
		}
		return nil
	})
}
