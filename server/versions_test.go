package server_test

import (
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"connectrpc.com/connect"

	rationv1 "github.com/rationhq/ration/api/ration/v1"
	"github.com/rationhq/ration/cluster"
	"github.com/rationhq/ration/cluster/clustertest"
	"github.com/rationhq/ration/fsm"
	"github.com/rationhq/ration/server/servertest"
)

// Status shows each member's build and the cluster version, which a
// cluster whose members all run this build reaches.
func TestServer_StatusShowsVersions(t *testing.T) {
	const token = "versions-admin-token"
	c := newTestCluster(t, 3, token)
	cl := newClients(h2cClient(), c.addrs[1], nil, token, "").cluster
	var st *rationv1.StatusResponse
	clustertest.WaitFor(t, 10*time.Second, func() error {
		res, err := cl.Status(ctx(t), connect.NewRequest(&rationv1.StatusRequest{}))
		if err != nil {
			return err
		}
		st = res.Msg
		if st.GetClusterVersion() != fsm.MaxProtocol {
			return fmt.Errorf("cluster version %d", st.GetClusterVersion())
		}
		for _, m := range st.GetMembers() {
			if m.GetRelease() == "" || m.GetMinProtocol() != fsm.MinProtocol || m.GetMaxProtocol() != fsm.MaxProtocol {
				return fmt.Errorf("member %s: release %q, protocols %d-%d", m.GetId(), m.GetRelease(), m.GetMinProtocol(), m.GetMaxProtocol())
			}
		}
		return nil
	})
	if st.GetRelease() == "" || st.GetMinProtocol() != fsm.MinProtocol || st.GetMaxProtocol() != fsm.MaxProtocol || len(st.GetMembers()) != 3 {
		t.Fatalf("status: %v", st)
	}
}

// While a member applies only protocol 1, validation is refused at the
// edge with CLUSTER_VERSION, and so is a node joining with an older build
// than the cluster runs.
func TestServer_FeaturesWaitForTheClusterVersion(t *testing.T) {
	const token = "versions-admin-token"
	// Node 0 founds the cluster as an older build (so it starts at
	// version 1); node 2 stays one.
	c := servertest.StartWith(t, 3, servertest.Options{Token: token, Config: func(i int, cfg *cluster.Config) {
		if i != 1 {
			cfg.MaxProtocol = 1
		}
	}})
	cl := newClients(h2cClient(), c.Addrs[0], nil, token, "")
	time.Sleep(1500 * time.Millisecond) // several ticks: nothing raises it
	st, err := cl.cluster.Status(ctx(t), connect.NewRequest(&rationv1.StatusRequest{}))
	if err != nil || st.Msg.GetClusterVersion() != 1 {
		t.Fatalf("status %v, %v: want cluster version 1", st, err)
	}
	wantVersionRefusal := func(what string, err error) {
		t.Helper()
		var ce *connect.Error
		if !errors.As(err, &ce) || ce.Code() != connect.CodeFailedPrecondition || reasonOf(ce) != "CLUSTER_VERSION" ||
			!strings.Contains(ce.Message(), "needs cluster version 2; the cluster runs 1") {
			t.Fatalf("%s: %v, want failed_precondition CLUSTER_VERSION", what, err)
		}
	}
	_, err = cl.owner.CreateService(ctx(t), connect.NewRequest(&rationv1.CreateServiceRequest{Name: "v", Kind: "dmcheck",
		Config: &rationv1.ServiceConfig{Validation: &rationv1.ValidationPolicy{Replicas: 2}}}))
	wantVersionRefusal("CreateService with validation", err)
	if _, err := cl.owner.CreateService(ctx(t), connect.NewRequest(&rationv1.CreateServiceRequest{Name: "v", Kind: "dmcheck"})); err != nil {
		t.Fatalf("a plain service: %v", err)
	}
	_, err = cl.owner.AddCanaries(ctx(t), connect.NewRequest(&rationv1.AddCanariesRequest{Service: "v",
		Canaries: []*rationv1.Canary{{Item: "c", Verdict: "DM"}}}))
	wantVersionRefusal("AddCanaries", err)
}

func TestServer_JoinRefusesABuildBelowTheClusterVersion(t *testing.T) {
	const token = "versions-admin-token"
	c := newNode(t, token)
	cl := newClients(h2cClient(), c.addrs[0], nil, token, "").cluster
	_, err := cl.Join(ctx(t), connect.NewRequest(&rationv1.JoinRequest{NodeId: "old", RaftAddress: "127.0.0.1:1", ApiAddress: "127.0.0.1:2"}))
	var ce *connect.Error
	if !errors.As(err, &ce) || ce.Code() != connect.CodeFailedPrecondition || reasonOf(ce) != "CLUSTER_VERSION" ||
		!strings.Contains(ce.Message(), "node old runs a build that does not say (one from before versions were published), which applies protocols up to 1; the cluster runs version 2") {
		t.Fatalf("Join of an unnamed build: %v", err)
	}
	_, err = cl.Join(ctx(t), connect.NewRequest(&rationv1.JoinRequest{NodeId: "older", RaftAddress: "127.0.0.1:1", ApiAddress: "127.0.0.1:2",
		Release: "v0.9.0", MaxProtocol: 1}))
	if !errors.As(err, &ce) || !strings.Contains(ce.Message(), "node older runs v0.9.0, which applies protocols up to 1") {
		t.Fatalf("Join of v0.9.0: %v", err)
	}
}
