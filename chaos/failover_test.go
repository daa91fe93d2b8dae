package chaos

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"syscall"
	"testing"
	"time"

	"connectrpc.com/connect"
	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/rationhq/ration/api/client"
	rationv1 "github.com/rationhq/ration/api/ration/v1"
	"github.com/rationhq/ration/api/ration/v1/rationv1connect"
	"github.com/rationhq/ration/cluster/clustertest"
)

// TestFailover_FrozenLeader freezes the leader (SIGSTOP) and checks what
// clients of the other nodes see, as curl would (one try, no deadline):
// a write with a request id sent to a follower succeeds, and one without
// is answered (OUTCOME_UNKNOWN, with its reason, if it reached the frozen
// leader), both within 2s of the new leader's election, not when the frozen
// process wakes. Then the old leader, awake but cut off from Raft, misses a
// write the new leader acknowledged: its STALE read says how stale it may
// be with a bound no smaller than the truth, and its /readyz says 503.
func TestFailover_FrozenLeader(t *testing.T) {
	c := startCluster(t, 3, t.TempDir())
	owners := make([]rationv1connect.OwnerServiceClient, len(c.procs))
	for i, p := range c.procs {
		owners[i] = rationv1connect.NewOwnerServiceClient(&http.Client{}, "http://"+p.api)
	}
	l := c.waitLeader(10 * time.Second)
	if _, err := owners[l].CreateService(context.Background(), connect.NewRequest(&rationv1.CreateServiceRequest{Name: "dm", Kind: "dmcheck"})); err != nil {
		t.Fatal(err)
	}
	f1, f2 := (l+1)%3, (l+2)%3

	c.procs[l].signal(syscall.SIGSTOP)
	t.Cleanup(func() { c.procs[l].signal(syscall.SIGCONT) })
	type answer struct {
		at  time.Time
		err error
	}
	send := func(i int, item, requestID string) <-chan answer {
		ch := make(chan answer, 1)
		go func() {
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			_, err := owners[i].AddItems(ctx, connect.NewRequest(&rationv1.AddItemsRequest{Service: "dm", Items: []string{item}, RequestId: requestID}))
			ch <- answer{time.Now(), err}
		}()
		return ch
	}
	withID, withoutID := send(f1, "with-id", client.NewRequestID()), send(f2, "without-id", "")
	elected, newLeader := waitElected(t, c, f1, f2)
	t.Logf("leader %s frozen; %s elected", c.procs[l].id, c.procs[newLeader].id)
	for _, w := range []struct {
		what string
		ch   <-chan answer
	}{{"with a request id", withID}, {"without one", withoutID}} {
		var a answer
		select {
		case a = <-w.ch:
		case <-time.After(time.Until(elected.Add(10 * time.Second))):
			t.Fatalf("write %s: no answer 10s after the election", w.what)
		}
		if late := a.at.Sub(elected); late > 2*time.Second {
			t.Errorf("write %s answered %s after the new leader's election (%v), want within 2s", w.what, late, a.err)
		}
		switch {
		case a.err == nil:
		case w.what == "with a request id":
			t.Errorf("write %s: %v", w.what, a.err)
		case client.Reason(a.err) != "OUTCOME_UNKNOWN":
			t.Errorf("write %s: %v (reason %q), want success or OUTCOME_UNKNOWN", w.what, a.err, client.Reason(a.err))
		}
	}

	c.procs[l].signal(syscall.SIGCONT)
	waitFollows(t, c, l, c.procs[newLeader].id)
	before, err := owners[newLeader].GetService(context.Background(), connect.NewRequest(&rationv1.GetServiceRequest{Name: "dm"}))
	if err != nil {
		t.Fatal(err)
	}
	// Following the new leader is not having applied its log: wait for the
	// state the read saw, so the cut node lacks only the write after the cut.
	clustertest.WaitFor(t, 10*time.Second, func() error {
		st, err := c.procs[l].status(context.Background())
		if err != nil || st.AppliedIndex < before.Msg.GetRead().GetIndex() {
			return fmt.Errorf("%s applied %d (%v), want %d", c.procs[l].id, st.GetAppliedIndex(), err, before.Msg.GetRead().GetIndex())
		}
		return nil
	})
	c.cutNode(l, true)
	if _, err := owners[newLeader].AddItems(context.Background(), connect.NewRequest(&rationv1.AddItemsRequest{Service: "dm", Items: []string{"after-cut"}})); err != nil {
		t.Fatal(err)
	}
	acked := time.Now()
	time.Sleep(1500 * time.Millisecond)
	checkStaleness(t, owners[l], acked, before.Msg.GetService().GetItems().GetPending())
	clustertest.WaitFor(t, 5*time.Second, func() error { return readyz(c.procs[l], http.StatusServiceUnavailable) })

	c.cutNode(l, false)
	clustertest.WaitFor(t, 10*time.Second, func() error { return readyz(c.procs[l], http.StatusOK) })
}

// waitElected waits until one of the nodes given leads, and returns when it
// was first seen leading.
func waitElected(t *testing.T, c *testCluster, nodes ...int) (time.Time, int) {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for time.Now().Before(deadline) {
		for _, i := range nodes {
			if st, err := c.procs[i].status(context.Background()); err == nil && st.State == "Leader" {
				return time.Now(), i
			}
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatal("no new leader within 15s")
	return time.Time{}, -1
}

// waitFollows waits until node i follows leader.
func waitFollows(t *testing.T, c *testCluster, i int, leader string) {
	t.Helper()
	clustertest.WaitFor(t, 15*time.Second, func() error {
		st, err := c.procs[i].status(context.Background())
		if err != nil || st.LeaderId != leader {
			return fmt.Errorf("%s follows %q (%v), want %s", c.procs[i].id, st.GetLeaderId(), err, leader)
		}
		return nil
	})
}

// checkStaleness reads the service at once from a node that has missed
// the write acknowledged at acked, and checks that its staleness bound, if
// it gives one, covers the truth.
func checkStaleness(t *testing.T, owner rationv1connect.OwnerServiceClient, acked time.Time, pendingBefore int64) {
	t.Helper()
	res, err := owner.GetService(context.Background(), connect.NewRequest(&rationv1.GetServiceRequest{Name: "dm", Consistency: rationv1.Consistency_CONSISTENCY_STALE}))
	if err != nil {
		t.Fatal(err)
	}
	truth := time.Since(acked)
	info := res.Msg.GetRead()
	if n := res.Msg.GetService().GetItems().GetPending(); n != pendingBefore {
		t.Fatalf("the cut node has %d pending items, want %d (without the write acknowledged after the cut)", n, pendingBefore)
	}
	if info.MaxStaleness != nil && info.MaxStaleness.AsDuration() < truth {
		t.Errorf("STALE read bounds its staleness at %s, but it misses a write acknowledged %s ago", info.MaxStaleness.AsDuration(), truth)
	}
	t.Logf("STALE read %s after the write it misses: max_staleness %s, leader_contact_age %s",
		truth.Round(time.Millisecond), durationOrUnset(info.MaxStaleness), durationOrUnset(info.LeaderContactAge))
}

// readyz checks node p's /readyz status code.
func readyz(p *proc, want int) error {
	res, err := http.Get("http://" + p.api + "/readyz")
	if err != nil {
		return err
	}
	defer res.Body.Close()
	body, _ := io.ReadAll(res.Body)
	if res.StatusCode != want {
		return fmt.Errorf("%s /readyz: %d %q, want %d", p.id, res.StatusCode, body, want)
	}
	return nil
}

func durationOrUnset(d *durationpb.Duration) string {
	if d == nil {
		return "unset"
	}
	return d.AsDuration().String()
}
