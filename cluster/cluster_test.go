package cluster_test

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/durationpb"

	statev1 "github.com/rationhq/ration/api/ration/state/v1"
	rationv1 "github.com/rationhq/ration/api/ration/v1"
	"github.com/rationhq/ration/cluster"
	"github.com/rationhq/ration/cluster/clustertest"
	"github.com/rationhq/ration/fsm"
)

func secret(w string) []byte { s := sha256.Sum256([]byte(w)); return s[:] }

func apply(t *testing.T, n *cluster.Node, op proto.Message, worker string) *statev1.CommandResult {
	t.Helper()
	res, err := tryApply(n, op, worker)
	if err != nil {
		t.Fatalf("%T on %s: %v", op, n.ID(), err)
	}
	return res
}

func tryApply(n *cluster.Node, op proto.Message, worker string) (*statev1.CommandResult, error) {
	cmd, ok := fsm.NewCommand(op)
	if !ok {
		panic(fmt.Sprintf("unknown op %T", op))
	}
	cmd.Header = &statev1.CommandHeader{Actor: "admin"}
	if worker != "" {
		cmd.Header.Actor, cmd.Header.Credential = worker, secret(worker)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	return n.Apply(ctx, cmd)
}

func setupService(t *testing.T, n *cluster.Node, cfg *rationv1.ServiceConfig) {
	t.Helper()
	apply(t, n, &rationv1.CreateServiceRequest{Name: "dm", Kind: "dmcheck", Config: cfg}, "")
	apply(t, n, &rationv1.RegisterRequest{Service: "dm", WorkerId: "w1"}, "w1")
}

func TestCluster_ReplicatesToIdenticalStates(t *testing.T) {
	c := clustertest.New(t, 3, clustertest.Options{})
	l := c.Leader()
	setupService(t, l, &rationv1.ServiceConfig{BucketSize: 10})
	for i := range 20 {
		apply(t, l, &rationv1.AddItemsRequest{Service: "dm", Items: []string{fmt.Sprintf("i%d", i)}}, "")
	}
	bs := apply(t, l, &rationv1.AcquireRequest{Service: "dm", WorkerId: "w1", MaxBuckets: 1}, "w1").GetAcquire().GetBuckets()
	if len(bs) != 1 {
		t.Fatalf("acquired %v", bs)
	}
	c.EnsureSame()
	for _, n := range c.Nodes {
		if s, ok := n.State().Service("dm"); !ok || s.Items[rationv1.ItemState_ITEM_STATE_LEASED] != 10 {
			t.Fatalf("%s: service %+v", n.ID(), s)
		}
		if err := n.State().CheckInvariants(); err != nil {
			t.Fatalf("%s: %v", n.ID(), err)
		}
	}
}

func TestCluster_FollowerRefusesToApply(t *testing.T) {
	c := clustertest.New(t, 3, clustertest.Options{})
	f := c.Followers()[0]
	if _, err := tryApply(f, &rationv1.CreateServiceRequest{Name: "dm", Kind: "dmcheck"}, ""); !errors.Is(err, cluster.ErrNotLeader) {
		t.Fatalf("follower apply: %v", err)
	}
	if _, err := f.ReadIndex(context.Background()); !errors.Is(err, cluster.ErrNotLeader) {
		t.Fatalf("follower read index: %v", err)
	}
}

func TestCluster_DomainErrorsComeBackAsErrors(t *testing.T) {
	c := clustertest.New(t, 1, clustertest.Options{})
	l := c.Leader()
	res, err := tryApply(l, &rationv1.AddItemsRequest{Service: "nope", Items: []string{"a"}}, "")
	if !errors.Is(err, fsm.ErrServiceNotFound) || res.GetError().GetReason() != "SERVICE_NOT_FOUND" {
		t.Fatalf("got %v, %v", res, err)
	}
	// The size cap refuses before anything reaches the log.
	big := make([]string, 0, 20000)
	for i := range 20000 {
		big = append(big, fmt.Sprintf("%01000d", i))
	}
	if _, err := tryApply(l, &rationv1.AddItemsRequest{Service: "dm", Items: big}, ""); !errors.Is(err, cluster.ErrTooLarge) {
		t.Fatalf("oversize command: %v", err)
	}
}

func TestCluster_LinearizableReadOnFollower(t *testing.T) {
	c := clustertest.New(t, 3, clustertest.Options{})
	l := c.Leader()
	for i := range 5 {
		apply(t, l, &rationv1.CreateServiceRequest{Name: fmt.Sprintf("s%d", i), Kind: "dmcheck"}, "")
		// A write acknowledged by the leader is visible to a linearizable
		// read through any follower: read index from the leader, wait, read.
		for _, f := range c.Followers() {
			idx, err := l.ReadIndex(context.Background())
			if err != nil {
				t.Fatal(err)
			}
			st, err := f.WaitApplied(context.Background(), idx)
			if err != nil {
				t.Fatal(err)
			}
			if _, ok := st.Service(fmt.Sprintf("s%d", i)); !ok {
				t.Fatalf("%s at index %d misses s%d", f.ID(), st.Index(), i)
			}
		}
	}
	st, err := l.LinearizableState(context.Background())
	if err != nil || len(st.Services()) != 5 {
		t.Fatalf("leader read: %v", err)
	}
	if age := c.Followers()[0].LeaderContactAge(); age < 0 || age > 5*time.Second {
		t.Fatalf("leader contact age %s", age)
	}
}

func TestCluster_JoinIsIdempotentAndRemoveWorks(t *testing.T) {
	c := clustertest.New(t, 3, clustertest.Options{})
	l := c.Leader()
	f := c.Followers()[0]
	ctx := context.Background()
	if err := l.Join(ctx, f.ID(), f.RaftAddr(), "api-"+f.ID()); err != nil {
		t.Fatal(err)
	}
	if n := len(l.Members()); n != 3 {
		t.Fatalf("%d members after a repeated join", n)
	}
	if removed, err := l.Remove(ctx, "nobody"); removed || err != nil {
		t.Fatalf("remove of a non-member: %v %v", removed, err)
	}
	if removed, err := l.Remove(ctx, f.ID()); !removed || err != nil {
		t.Fatal(err)
	}
	if removed, err := l.Remove(ctx, f.ID()); removed || err != nil {
		t.Fatalf("a retried remove: %v %v", removed, err)
	}
	clustertest.WaitFor(t, 5*time.Second, func() error {
		if n := len(l.Members()); n != 2 {
			return fmt.Errorf("%d members", n)
		}
		if _, ok := l.State().NodeAddress(f.ID()); ok {
			return fmt.Errorf("address book still lists %s", f.ID())
		}
		return nil
	})
	// Rejoin, then shrink to one and refuse to remove the last voter.
	if err := l.Join(ctx, f.ID(), f.RaftAddr(), "api-"+f.ID()); err != nil {
		t.Fatal(err)
	}
	for _, other := range c.Followers() {
		if _, err := l.Remove(ctx, other.ID()); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := l.Remove(ctx, l.ID()); !errors.Is(err, cluster.ErrLastVoter) {
		t.Fatalf("removing the last voter: %v", err)
	}
}

func TestCluster_LeaderLossKeepsWritesGoing(t *testing.T) {
	c := clustertest.New(t, 3, clustertest.Options{})
	l := c.Leader()
	setupService(t, l, &rationv1.ServiceConfig{BucketSize: 1})
	apply(t, l, &rationv1.AddItemsRequest{Service: "dm", Items: []string{"a", "b"}}, "")
	c.Kill(c.Index(l))
	nl := c.WaitForNewLeader(l.ID())
	apply(t, nl, &rationv1.AddItemsRequest{Service: "dm", Items: []string{"c"}}, "")
	if bs := apply(t, nl, &rationv1.AcquireRequest{Service: "dm", WorkerId: "w1", MaxBuckets: 5}, "w1").GetAcquire().GetBuckets(); len(bs) != 3 {
		t.Fatalf("after failover acquired %d buckets, want 3", len(bs))
	}
	c.Restart(c.Index(nil))
	c.EnsureSame()
}

func TestCluster_RestartFromDataDirs(t *testing.T) {
	c := clustertest.New(t, 3, clustertest.Options{})
	setupService(t, c.Leader(), nil)
	apply(t, c.Leader(), &rationv1.AddItemsRequest{Service: "dm", Items: []string{"a", "b", "c"}}, "")
	for i := range c.Nodes {
		c.Kill(i)
	}
	for i := range c.Nodes {
		c.Restart(i)
	}
	l := c.Leader()
	// A new leader answers reads once it has applied its predecessors'
	// entries; until then it says ErrNotReady.
	var st *fsm.State
	clustertest.WaitFor(t, 5*time.Second, func() (err error) {
		st, err = l.LinearizableState(context.Background())
		if err != nil && !errors.Is(err, cluster.ErrNotReady) {
			t.Fatal(err)
		}
		return err
	})
	if s, ok := st.Service("dm"); !ok || s.Items[rationv1.ItemState_ITEM_STATE_PENDING] != 3 {
		t.Fatalf("after restart: %+v", s)
	}
	c.EnsureSame()
}

func TestCluster_LaggingNodeCatchesUpFromSnapshot(t *testing.T) {
	c := clustertest.New(t, 3, clustertest.Options{Config: func(i int, cfg *cluster.Config) {
		cfg.TrailingLogs = 10
		cfg.SnapshotThreshold = 20
	}})
	l := c.Leader()
	setupService(t, l, nil)
	lag := c.Followers()[0]
	li := c.Index(lag)
	c.Kill(li)
	for i := range 60 {
		apply(t, l, &rationv1.AddItemsRequest{Service: "dm", Items: []string{fmt.Sprintf("i%d", i)}}, "")
	}
	if _, rc, err := l.Snapshot(); err != nil {
		t.Fatal(err)
	} else {
		rc.Close()
	}
	c.Restart(li)
	c.EnsureSame()
	if s, _ := c.Nodes[li].State().Service("dm"); s.Items[rationv1.ItemState_ITEM_STATE_PENDING] != 60 {
		t.Fatalf("lagging node after catch-up: %+v", s.Items)
	}
}

// A new leader waits the failover grace before expiring anything: a lease
// whose deadline passes during an election survives if its worker
// heartbeats the new leader within the grace.
func TestCluster_FailoverGraceKeepsLeasesAlive(t *testing.T) {
	c := clustertest.New(t, 3, clustertest.Options{Config: func(i int, cfg *cluster.Config) {
		cfg.FailoverGrace = 3 * time.Second
	}})
	l := c.Leader()
	setupService(t, l, &rationv1.ServiceConfig{BucketSize: 1, LeaseTtl: durationpb.New(time.Second)})
	apply(t, l, &rationv1.AddItemsRequest{Service: "dm", Items: []string{"a"}}, "")
	b := apply(t, l, &rationv1.AcquireRequest{Service: "dm", WorkerId: "w1"}, "w1").GetAcquire().GetBuckets()[0]
	deadline := b.Lease.Deadline.AsTime()
	c.Kill(c.Index(l))
	nl := c.WaitForNewLeader(l.ID())
	// Wait until the deadline has passed and a few ticks have been applied.
	clustertest.WaitFor(t, 5*time.Second, func() error {
		if time.Now().Before(deadline.Add(200 * time.Millisecond)) {
			return errors.New("deadline not passed")
		}
		return nil
	})
	bk, _ := nl.State().Bucket(b.Id)
	if bk.State != rationv1.BucketState_BUCKET_STATE_LEASED {
		t.Fatalf("bucket %v during the failover grace, want still leased", bk.State)
	}
	res, err := nl.Heartbeat(context.Background(), &statev1.HeartbeatEntry{Credential: secret("w1"),
		Request: &rationv1.HeartbeatRequest{WorkerId: "w1", Buckets: []*rationv1.BucketRef{{Id: b.Id, Epoch: b.Lease.Epoch}}}})
	if err != nil || res.GetHeartbeatEntry().GetBuckets()[0].GetLease() == nil {
		t.Fatalf("heartbeat to the new leader: %v %v", res, err)
	}
	if len(nl.State().Activity(fsm.ActivityQuery{Action: fsm.ActLeaseExpired, Limit: 10})) != 0 {
		t.Fatal("a lease expired because of the election")
	}
	// Without heartbeats, the lease expires once the grace is over.
	clustertest.WaitState(t, nl, 10*time.Second, func(st *fsm.State) error {
		if len(st.Activity(fsm.ActivityQuery{Action: fsm.ActLeaseExpired, Limit: 10})) == 0 {
			return errors.New("not expired yet")
		}
		return nil
	})
}

func TestCluster_TransferLeadership(t *testing.T) {
	c := clustertest.New(t, 3, clustertest.Options{})
	l := c.Leader()
	target := c.Followers()[1]
	got, err := l.TransferLeadership(context.Background(), target.ID())
	if err != nil || got != target.ID() {
		t.Fatalf("transfer to %s: got %q, %v", target.ID(), got, err)
	}
	if nl := c.WaitForNewLeader(l.ID()); nl != target {
		t.Fatalf("leader is %s, want %s", nl.ID(), target.ID())
	}
	if _, err := target.TransferLeadership(context.Background(), "nobody"); !errors.Is(err, cluster.ErrUnknownNode) {
		t.Fatalf("transfer to an unknown node: %v", err)
	}
	apply(t, target, &rationv1.CreateServiceRequest{Name: "after", Kind: "dmcheck"}, "")
	c.EnsureSame()
}

// TestCluster_HandOver: a leader about to stop hands leadership to another
// voter, which leads before the old one is gone; a follower, or the only
// voter, has nothing to hand over.
func TestCluster_HandOver(t *testing.T) {
	c := clustertest.New(t, 3, clustertest.Options{})
	l := c.Leader()
	if err := c.Followers()[0].HandOver(); err != nil {
		t.Fatalf("a follower hands over: %v", err)
	}
	if err := l.HandOver(); err != nil {
		t.Fatal(err)
	}
	if l.IsLeader() {
		t.Fatal("still the leader after handing over")
	}
	nl := c.WaitForNewLeader(l.ID())
	apply(t, nl, &rationv1.CreateServiceRequest{Name: "after", Kind: "dmcheck"}, "")

	one := clustertest.New(t, 1, clustertest.Options{})
	if err := one.Leader().HandOver(); err != nil || !one.Leader().IsLeader() {
		t.Fatalf("the only voter hands over: %v", err)
	}
}

// An idle cluster writes nothing: the leader proposes a tick only when one
// is due, yet linearizable reads are answered (the state machine's applied
// index keeps up with the commit index).
func TestCluster_IdleClusterWritesNothing(t *testing.T) {
	c := clustertest.New(t, 3, clustertest.Options{})
	l := c.Leader()
	apply(t, l, &rationv1.CreateServiceRequest{Name: "dm", Kind: "dmcheck"}, "")
	c.WaitApplied(l.State().Index())
	before := l.State().Index()
	deadline := time.Now().Add(10 * c.Config(0).TickInterval)
	clustertest.WaitFor(t, 5*time.Second, func() error {
		if time.Now().Before(deadline) {
			return errors.New("watching")
		}
		return nil
	})
	if after := l.State().Index(); after != before {
		t.Fatalf("an idle cluster wrote %d entries", after-before)
	}
	for _, f := range c.Followers() {
		idx, err := l.ReadIndex(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		_, err = f.WaitApplied(ctx, idx)
		cancel()
		if err != nil {
			t.Fatalf("%s: linearizable read on an idle cluster: %v", f.ID(), err)
		}
	}
	// After a leader change too.
	c.Kill(c.Index(l))
	nl := c.WaitForNewLeader(l.ID())
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	clustertest.WaitFor(t, 5*time.Second, func() error {
		_, err := nl.LinearizableState(ctx)
		return err
	})
}

// A node that knows no leader reports its leader contact age as unknown
// (-1), not the time of a vote it granted or of its own step-down.
func TestCluster_LeaderContactAgeUnknownWithoutLeader(t *testing.T) {
	c := clustertest.New(t, 3, clustertest.Options{})
	c.Leader()
	f := c.Followers()[0]
	if age := f.LeaderContactAge(); age < 0 {
		t.Fatalf("a follower of a live leader reports contact age %s", age)
	}
	for _, n := range c.Nodes {
		if n != f {
			c.Kill(c.Index(n))
		}
	}
	clustertest.WaitFor(t, 10*time.Second, func() error {
		if id, _, _ := f.Leader(); id != "" {
			return fmt.Errorf("%s still names leader %s", f.ID(), id)
		}
		return nil
	})
	// Alone, it stands for election again and again; it never hears from a
	// leader, so its contact age stays unknown.
	for range 10 {
		if id, _, _ := f.Leader(); id == "" {
			if age := f.LeaderContactAge(); age != -1 {
				t.Fatalf("%s knows no leader but reports contact age %s", f.ID(), age)
			}
		}
		time.Sleep(100 * time.Millisecond)
	}
}
