package cluster_test

import (
	"sync/atomic"
	"testing"
	"time"

	rationv1 "github.com/rationhq/ration/api/ration/v1"
	"github.com/rationhq/ration/cluster"
	"github.com/rationhq/ration/cluster/clustertest"
)

// TestCluster_OnlyVoterCatchesUpAfterDowntime: a one-node cluster trusts
// its own clock, so after a restart its time is real time again, however
// far behind it was; within a term, a step of its wall clock does not move
// it.
func TestCluster_OnlyVoterCatchesUpAfterDowntime(t *testing.T) {
	var off atomic.Int64
	off.Store(int64(-time.Hour))
	skewed := func() time.Time { return time.Now().Add(time.Duration(off.Load())) }
	c := clustertest.New(t, 1, clustertest.Options{Config: func(_ int, cfg *cluster.Config) { cfg.Now = skewed }})
	n := c.Leader()
	apply(t, n, &rationv1.CreateServiceRequest{Name: "dm", Kind: "dmcheck"}, "")
	if d := n.State().Now().Sub(time.Now()); d > -59*time.Minute {
		t.Fatalf("the cluster's time is %s off real time, want about -1h", d)
	}
	off.Store(0) // the clock is stepped right: no jump within the term
	apply(t, n, &rationv1.AddItemsRequest{Service: "dm", Items: []string{"a"}}, "")
	if d := n.State().Now().Sub(time.Now()); d > -59*time.Minute {
		t.Fatalf("the cluster's time jumped within a term to %s off real time", d)
	}
	c.Kill(0)
	c.Restart(0)
	n = c.Leader()
	apply(t, n, &rationv1.AddItemsRequest{Service: "dm", Items: []string{"b"}}, "")
	if d := n.State().Now().Sub(time.Now()); d < -2*time.Second || d > 2*time.Second {
		t.Fatalf("after the restart the cluster's time is %s off real time, want about 0", d)
	}
}
