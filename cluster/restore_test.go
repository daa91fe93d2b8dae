package cluster_test

import (
	"bytes"
	"testing"
	"time"

	statev1 "github.com/rationhq/ration/api/ration/state/v1"
	rationv1 "github.com/rationhq/ration/api/ration/v1"
	"github.com/rationhq/ration/cluster/clustertest"
	"github.com/rationhq/ration/fsm"
)

// TestRestore_KeepsMembersAddresses: a snapshot from another cluster (a
// backup restored into a new one) names that cluster's API addresses;
// after the restore every member's is this cluster's again, so followers
// still find the leader's API.
func TestRestore_KeepsMembersAddresses(t *testing.T) {
	c := clustertest.New(t, 3, clustertest.Options{})
	leader := c.Leader()
	f := fsm.New(nil)
	at := time.Now().UnixNano()
	for i, op := range []*statev1.Command{
		{Op: &statev1.Command_SetNode{SetNode: &statev1.SetNode{NodeId: "n1", ApiAddress: "old-host-1:7070"}}},
		{Op: &statev1.Command_SetNode{SetNode: &statev1.SetNode{NodeId: "n2", ApiAddress: "old-host-2:7070"}}},
		{Op: &statev1.Command_SetNode{SetNode: &statev1.SetNode{NodeId: "gone", ApiAddress: "old-host-9:7070"}}},
	} {
		op.Header = &statev1.CommandHeader{ProposedAt: at, Actor: "system"}
		if res := f.ApplyCommand(uint64(i+1), op); res.GetError() != nil {
			t.Fatal(res.GetError())
		}
	}
	cmd, _ := fsm.NewCommand(&rationv1.CreateServiceRequest{Name: "restored", Kind: "dmcheck"})
	cmd.Header = &statev1.CommandHeader{ProposedAt: at, Actor: "admin"}
	if res := f.ApplyCommand(4, cmd); res.GetError() != nil {
		t.Fatal(res.GetError())
	}
	var snap bytes.Buffer
	if err := f.State().WriteSnapshot(&snap); err != nil {
		t.Fatal(err)
	}
	idx, err := leader.Restore(bytes.NewReader(snap.Bytes()), int64(snap.Len()))
	if err != nil {
		t.Fatal(err)
	}
	c.WaitApplied(idx)
	for i, n := range c.Nodes {
		st := n.State()
		if _, ok := st.Service("restored"); !ok {
			t.Fatalf("%s does not hold the restored state", n.ID())
		}
		for j := range c.Nodes {
			want := c.Config(j).APIAddr
			if got, ok := st.NodeAddress(c.Config(j).NodeID); !ok || got.APIAddress != want {
				t.Errorf("node %d sees %s's API address as %v, want %s", i, c.Config(j).NodeID, got, want)
			}
		}
	}
	if _, api, err := c.Followers()[0].Leader(); err != nil || api != c.Config(c.Index(leader)).APIAddr {
		t.Fatalf("a follower finds the leader's API at %q (%v)", api, err)
	}
}
