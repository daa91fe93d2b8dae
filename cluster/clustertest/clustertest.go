// Package clustertest starts real ration clusters inside a test: n nodes on
// 127.0.0.1 ephemeral ports, real TCP and real BoltDB files in temporary
// directories, short Raft timeouts, and shutdown in t.Cleanup; or a single
// node held in memory (Options.InMemory). A wait for a node's applied
// state (WaitState) is woken by each state the node applies; every other
// wait polls a condition through WaitFor; nothing sleeps a fixed time.
package clustertest

import (
	"bytes"
	"context"
	"fmt"
	"path/filepath"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/rationhq/ration/cluster"
	"github.com/rationhq/ration/fsm"
)

// Cluster is a set of nodes under test.
type Cluster struct {
	t     testing.TB
	Nodes []*cluster.Node // nil for a node that is down
	cfgs  []cluster.Config
	// APIAddr, if set, gives each node's API address (servers started by the caller).
	APIAddr func(i int) string
}

// Options adjusts the nodes' configs before they start.
type Options struct {
	// Config, if set, edits node i's config.
	Config func(i int, c *cluster.Config)
	// InMemory starts the one node of a cluster of one in memory
	// (cluster.Config.InMemory): no files, no network, and an election
	// within milliseconds. Kill loses its state; it cannot Restart.
	InMemory bool
}

// FastConfig returns a config with timeouts short enough for tests (three
// times as long under the race detector).
func FastConfig(t testing.TB, id string) cluster.Config {
	c := cluster.DefaultConfig()
	c.NodeID = id
	c.RaftAddr = "127.0.0.1:0"
	c.APIAddr = "api-" + id
	c.DataDir = filepath.Join(t.TempDir(), id)
	c.HeartbeatTimeout = raceSlack * 100 * time.Millisecond
	c.ElectionTimeout = raceSlack * 100 * time.Millisecond
	c.LeaderLeaseTimeout = raceSlack * 50 * time.Millisecond
	c.CommitTimeout = 5 * time.Millisecond
	c.TickInterval = 50 * time.Millisecond
	c.FailoverGrace = raceSlack * 300 * time.Millisecond
	c.ApplyTimeout = 5 * time.Second
	c.ClockOffsetWait = 0 // no server measures clock offsets here
	c.Logger = hclog.New(&hclog.LoggerOptions{Name: id, Level: hclog.Warn, Output: testWriter{t}})
	return c
}

// inMemory turns a FastConfig into an in-memory node's. With no other
// voter to wait for, Raft's shortest timeouts are safe.
func inMemory(c *cluster.Config) {
	c.InMemory = true
	c.DataDir, c.RaftAddr = "", ""
	c.HeartbeatTimeout = 10 * time.Millisecond
	c.ElectionTimeout = 10 * time.Millisecond
	c.LeaderLeaseTimeout = 10 * time.Millisecond
}

type testWriter struct{ t testing.TB }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Helper()
	w.t.Log(string(bytes.TrimRight(p, "\n")))
	return len(p), nil
}

// New starts n nodes: the first bootstraps, the others join through the
// leader. It returns once all n are voters and agree on a leader.
func New(t testing.TB, n int, opts Options) *Cluster {
	t.Helper()
	if opts.InMemory && n != 1 {
		t.Fatalf("clustertest: an in-memory cluster has one node, not %d", n)
	}
	c := &Cluster{t: t, Nodes: make([]*cluster.Node, n), cfgs: make([]cluster.Config, n)}
	t.Cleanup(c.Close)
	for i := range n {
		cfg := FastConfig(t, fmt.Sprintf("n%d", i+1))
		cfg.Bootstrap = i == 0
		if opts.InMemory {
			inMemory(&cfg)
		}
		if opts.Config != nil {
			opts.Config(i, &cfg)
		}
		c.cfgs[i] = cfg
		c.start(i)
	}
	first := c.Nodes[0]
	WaitFor(t, 10*time.Second, func() error {
		if !first.IsLeader() {
			return fmt.Errorf("%s has not bootstrapped into leadership", first.ID())
		}
		return nil
	})
	for i := 1; i < n; i++ {
		node := c.Nodes[i]
		WaitFor(t, 10*time.Second, func() error {
			return first.Join(context.Background(), node.ID(), node.RaftAddr(), c.cfgs[i].APIAddr)
		})
	}
	c.Leader()
	WaitFor(t, 10*time.Second, func() error {
		for _, node := range c.Nodes {
			if got := len(node.Members()); got != n {
				return fmt.Errorf("%s sees %d members", node.ID(), got)
			}
		}
		return nil
	})
	return c
}

func (c *Cluster) start(i int) {
	c.t.Helper()
	node, err := cluster.New(c.cfgs[i])
	if err != nil {
		c.t.Fatalf("start node %d: %v", i, err)
	}
	c.Nodes[i] = node
	// Restarts reuse the port the node got first.
	c.cfgs[i].RaftAddr = node.RaftAddr()
}

// Close stops every node that is up.
func (c *Cluster) Close() {
	for i, n := range c.Nodes {
		if n != nil {
			n.Close()
			c.Nodes[i] = nil
		}
	}
}

// Kill stops node i (its data dir stays).
func (c *Cluster) Kill(i int) {
	c.t.Helper()
	if err := c.Nodes[i].Close(); err != nil {
		c.t.Logf("close node %d: %v", i, err)
	}
	c.Nodes[i] = nil
}

// Restart starts node i again from its data dir.
func (c *Cluster) Restart(i int) *cluster.Node {
	c.t.Helper()
	c.cfgs[i].Bootstrap = false
	c.start(i)
	return c.Nodes[i]
}

// RestartWith starts node i again from its data dir, its config edited.
func (c *Cluster) RestartWith(i int, edit func(*cluster.Config)) *cluster.Node {
	c.t.Helper()
	edit(&c.cfgs[i])
	return c.Restart(i)
}

// Config returns node i's config.
func (c *Cluster) Config(i int) cluster.Config { return c.cfgs[i] }

// Leader waits for a stable leader: one node leads, every live node agrees,
// and it stays so across two observations.
func (c *Cluster) Leader() *cluster.Node {
	c.t.Helper()
	var leader *cluster.Node
	WaitFor(c.t, 10*time.Second, func() error {
		l, err := c.observeLeader()
		if err != nil {
			return err
		}
		time.Sleep(20 * time.Millisecond) // a second observation, not a fixed wait for a condition
		l2, err := c.observeLeader()
		if err != nil {
			return err
		}
		if l != l2 {
			return fmt.Errorf("leadership moved from %s to %s", l.ID(), l2.ID())
		}
		leader = l
		return nil
	})
	return leader
}

func (c *Cluster) observeLeader() (*cluster.Node, error) {
	var leader *cluster.Node
	for _, n := range c.Nodes {
		if n != nil && n.IsLeader() {
			if leader != nil {
				return nil, fmt.Errorf("two leaders: %s and %s", leader.ID(), n.ID())
			}
			leader = n
		}
	}
	if leader == nil {
		return nil, fmt.Errorf("no leader")
	}
	for _, n := range c.Nodes {
		if n == nil {
			continue
		}
		if st := n.Status(); st.LeaderID != leader.ID() {
			return nil, fmt.Errorf("%s thinks the leader is %q, not %s", n.ID(), st.LeaderID, leader.ID())
		}
	}
	return leader, nil
}

// Followers returns the live nodes that are not the leader.
func (c *Cluster) Followers() []*cluster.Node {
	l := c.Leader()
	var out []*cluster.Node
	for _, n := range c.Nodes {
		if n != nil && n != l {
			out = append(out, n)
		}
	}
	return out
}

// Index returns the position of node in the cluster.
func (c *Cluster) Index(node *cluster.Node) int {
	for i, n := range c.Nodes {
		if n == node {
			return i
		}
	}
	return -1
}

// WaitForNewLeader waits for a stable leader other than old.
func (c *Cluster) WaitForNewLeader(old string) *cluster.Node {
	c.t.Helper()
	var leader *cluster.Node
	WaitFor(c.t, 10*time.Second, func() error {
		l := c.Leader()
		if l.ID() == old {
			return fmt.Errorf("%s still leads", old)
		}
		leader = l
		return nil
	})
	return leader
}

// WaitApplied waits until every live node has applied index.
func (c *Cluster) WaitApplied(index uint64) {
	c.t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for _, n := range c.Nodes {
		if n == nil {
			continue
		}
		WaitState(c.t, n, time.Until(deadline), func(st *fsm.State) error {
			if st.Index() < index {
				return fmt.Errorf("%s applied %d of %d", n.ID(), st.Index(), index)
			}
			return nil
		})
	}
}

// EnsureSame waits until every live node has applied the leader's last index
// and checks that all of them write byte-identical snapshots.
func (c *Cluster) EnsureSame() {
	c.t.Helper()
	c.WaitApplied(c.Leader().State().Index())
	var first []byte
	var firstID string
	WaitFor(c.t, 10*time.Second, func() error {
		first = nil
		for _, n := range c.Nodes {
			if n == nil {
				continue
			}
			var buf bytes.Buffer
			if err := n.State().WriteSnapshot(&buf); err != nil {
				return err
			}
			if first == nil {
				first, firstID = buf.Bytes(), n.ID()
				continue
			}
			if !bytes.Equal(first, buf.Bytes()) {
				return fmt.Errorf("%s and %s hold different states (%d vs %d bytes)", firstID, n.ID(), len(first), buf.Len())
			}
		}
		return nil
	})
}

// WaitState waits until node's applied state satisfies cond, failing the
// test with cond's last error after timeout. It does not poll: it checks
// each state the node applies, woken by Node.Changed.
func WaitState(t testing.TB, node *cluster.Node, timeout time.Duration, cond func(*fsm.State) error) *fsm.State {
	t.Helper()
	timer := time.NewTimer(timeout)
	defer timer.Stop()
	for {
		changed := node.Changed() // before State, so no change is missed
		st := node.State()
		err := cond(st)
		if err == nil {
			return st
		}
		select {
		case <-changed:
		case <-timer.C:
			t.Fatalf("state of %s not reached after %s: %v", node.ID(), timeout, err)
			return nil
		}
	}
}

// WaitFor polls cond until it returns nil, failing the test with the last
// error after timeout.
func WaitFor(t testing.TB, timeout time.Duration, cond func() error) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	var err error
	for time.Now().Before(deadline) {
		if err = cond(); err == nil {
			return
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Fatalf("condition not met after %s: %v", timeout, err)
}
