package cluster_test

import (
	"errors"
	"fmt"
	"testing"
	"time"

	"google.golang.org/protobuf/types/known/durationpb"

	statev1 "github.com/rationhq/ration/api/ration/state/v1"
	rationv1 "github.com/rationhq/ration/api/ration/v1"
	"github.com/rationhq/ration/cluster/clustertest"
	"github.com/rationhq/ration/fsm"
)

// No result is trimmed before its owner acknowledged it and its retention
// passed, through a leader failover and a node restoring from a snapshot;
// then the leader's ticks trim exactly what may go, on every node.
func TestCluster_ResultsStayUntilAcknowledgedAndRetained(t *testing.T) {
	const retention = time.Second
	c := clustertest.New(t, 3, clustertest.Options{})
	l := c.Leader()
	setupService(t, l, &rationv1.ServiceConfig{BucketSize: 1, ResultRetention: durationpb.New(retention)})
	apply(t, l, &rationv1.AddItemsRequest{Service: "dm", Items: []string{"a", "b", "c", "d"}}, "")
	var seqs []uint64
	for range 4 {
		b := apply(t, l, &rationv1.AcquireRequest{Service: "dm", WorkerId: "w1"}, "w1").GetAcquire().GetBuckets()[0]
		apply(t, l, &rationv1.SubmitRequest{WorkerId: "w1", BucketId: b.Id, Epoch: b.Lease.Epoch,
			Results: []*rationv1.ResultInput{{Item: b.Items[0], Verdict: "DM"}}}, "w1")
		rbs := l.State().Results("dm", 0, 10)
		seqs = append(seqs, rbs[len(rbs)-1].Seq)
	}
	accepted := time.Now()
	retained := func(n interface{ State() *fsm.State }) int { return len(n.State().Results("dm", 0, 10)) }

	// Twice the retention passes with the leader ticking: nothing is
	// acknowledged, so nothing goes.
	clustertest.WaitFor(t, 10*time.Second, func() error {
		if time.Since(accepted) < 2*retention {
			return errors.New("retention not yet passed")
		}
		return nil
	})
	for _, n := range c.Nodes {
		if got := retained(n); got != 4 {
			t.Fatalf("%s holds %d result batches before any acknowledgment, want 4", n.ID(), got)
		}
	}
	// A follower restores from its snapshot; the leader dies.
	f := c.Followers()[0]
	if _, rc, err := f.Snapshot(); err != nil {
		t.Fatal(err)
	} else {
		rc.Close()
	}
	fi := c.Index(f)
	c.Kill(fi)
	c.Restart(fi)
	li := c.Index(l)
	c.Kill(li)
	nl := c.WaitForNewLeader(l.ID())
	for _, n := range c.Nodes {
		if n != nil && retained(n) != 4 {
			t.Fatalf("%s holds %d result batches after the failover and restore, want 4", n.ID(), retained(n))
		}
	}
	// The owner acknowledges the first two: they go, once their retention
	// (long past) is checked by the new leader's tick; the others stay.
	var res *statev1.CommandResult
	clustertest.WaitFor(t, 10*time.Second, func() (err error) {
		res, err = tryApply(nl, &rationv1.AckResultsRequest{Service: "dm", ThroughSeq: seqs[1]}, "")
		return err
	})
	if p := res.GetAckResults().GetExport(); p.AckedThrough != seqs[1] || p.UnackedResults != 2 {
		t.Fatalf("export position after the ack: %v", p)
	}
	c.Restart(li)
	for _, n := range c.Nodes {
		clustertest.WaitState(t, n, 10*time.Second, func(st *fsm.State) error {
			if rbs := st.Results("dm", 0, 10); len(rbs) != 2 || rbs[0].Seq != seqs[2] {
				return fmt.Errorf("%d result batches retained", len(rbs))
			}
			return nil
		})
	}
	c.EnsureSame()
	s, _ := nl.State().Service("dm")
	if s.Counters.ResultsTrimmed != 2 || s.Counters.ResultsDropped != 0 || s.Items[rationv1.ItemState_ITEM_STATE_DONE] != 4 {
		t.Fatalf("after trimming: counters %+v, items %v", s.Counters, s.Items)
	}
}
