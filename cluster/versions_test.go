package cluster_test

import (
	"fmt"
	"testing"
	"time"

	"github.com/rationhq/ration/cluster"
	"github.com/rationhq/ration/cluster/clustertest"
	"github.com/rationhq/ration/fsm"
)

// A new cluster of one starts at this build's protocol.
func TestVersions_NewClusterStartsAtItsProtocol(t *testing.T) {
	c := clustertest.New(t, 1, clustertest.Options{})
	leader := c.Leader()
	clustertest.WaitFor(t, 5*time.Second, func() error {
		if v := leader.Status().ClusterVersion; v != fsm.MaxProtocol {
			return fmt.Errorf("cluster version %d, want %d", v, fsm.MaxProtocol)
		}
		return nil
	})
}

// The leader raises the cluster version only once every member has said
// it applies the new protocol: a member that says nothing, or runs a build
// from before versions (protocol 1), holds it back.
func TestVersions_RaisedWhenEveryMemberSupportsIt(t *testing.T) {
	// The first member plays an older build, so the cluster is born at 1.
	c := clustertest.New(t, 3, clustertest.Options{Config: func(i int, cfg *cluster.Config) {
		if i == 0 {
			cfg.MaxProtocol = 1
		}
	}})
	c.Kill(0)
	c.RestartWith(0, func(cfg *cluster.Config) { cfg.MaxProtocol = 0 }) // now upgraded
	leader := c.Leader()
	hold := func(why string) {
		t.Helper()
		deadline := time.Now().Add(1500 * time.Millisecond) // several ticks
		for time.Now().Before(deadline) {
			if v := leader.Status().ClusterVersion; v != 1 {
				t.Fatalf("%s: cluster version %d, want 1", why, v)
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
	hold("no member said which protocols it applies")
	followers := c.Followers()
	leader.ObserveMemberVersion(followers[0].Status().NodeID, followers[0].OwnVersion())
	leader.ObserveMemberVersion(followers[1].Status().NodeID, cluster.Legacy())
	if v := leader.EffectiveVersion(); v != 1 {
		t.Fatalf("effective version %d with a protocol-1 member, want 1", v)
	}
	hold("one member runs a build from before versions")
	for _, f := range followers {
		leader.ObserveMemberVersion(f.Status().NodeID, f.OwnVersion())
	}
	clustertest.WaitFor(t, 5*time.Second, func() error {
		if v := leader.Status().ClusterVersion; v != fsm.MaxProtocol {
			return fmt.Errorf("cluster version %d, want %d", v, fsm.MaxProtocol)
		}
		return nil
	})
	c.EnsureSame()
	for _, m := range leader.Members() {
		if !m.Known || m.Version.MaxProtocol != fsm.MaxProtocol {
			t.Fatalf("member %s: %+v", m.ID, m)
		}
	}
}
