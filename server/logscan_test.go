package server_test

import (
	"encoding/base64"
	"net/http"
	"strings"
	"testing"

	"connectrpc.com/connect"

	rationv1 "github.com/rationhq/ration/api/ration/v1"
	"github.com/rationhq/ration/server/servertest"
)

// TestServer_LogsHoldNoSecrets runs a flow with the admin token, a worker
// secret and an owner token against a 3-node cluster logging at trace level
// (Raft, cluster and server), through the leader and through a follower
// (which forwards with the caller's credentials), with refused calls among
// them, and checks that no node's log holds any of the secrets, plainly or
// in base64.
func TestServer_LogsHoldNoSecrets(t *testing.T) {
	const (
		admin  = "log-scan-admin-token-d41d8cd98f00"
		secret = "log-scan-worker-secret-9e107d9d372b"
	)
	var log syncBuffer
	c := servertest.StartWith(t, 3, servertest.Options{Token: admin, Log: &log})
	leader, follower := c.Leader(), c.Followers()[0]
	lc := newClients(http.DefaultClient, c.AddrOf(leader), nil, admin, secret)
	fc := newClients(h2cClient(), c.AddrOf(follower), []connect.ClientOption{connect.WithGRPC()}, admin, secret)

	created, err := fc.owner.CreateService(ctx(t), connect.NewRequest(&rationv1.CreateServiceRequest{Name: "dm", Kind: "dmcheck",
		Config: &rationv1.ServiceConfig{BucketSize: 2}}))
	if err != nil {
		t.Fatal(err)
	}
	secrets := []string{admin, secret}
	owner := created.Msg.GetOwnerToken()
	if owner != "" {
		secrets = append(secrets, owner)
		oc := newClients(http.DefaultClient, c.AddrOf(follower), nil, owner, secret)
		if _, err := oc.owner.AddItems(ctx(t), connect.NewRequest(&rationv1.AddItemsRequest{Service: "dm", Items: []string{"a", "b"}})); err != nil {
			t.Fatal(err)
		}
		// An owner token where a worker secret belongs is refused.
		wrong := newClients(http.DefaultClient, c.AddrOf(follower), nil, owner, owner)
		if _, err := wrong.worker.Acquire(ctx(t), connect.NewRequest(&rationv1.AcquireRequest{Service: "dm", WorkerId: "w1"})); err == nil {
			t.Fatal("an owner token served as a worker secret")
		}
	} else {
		t.Log("CreateService returned no owner token; scanning for the admin token and the worker secret")
		if _, err := lc.owner.AddItems(ctx(t), connect.NewRequest(&rationv1.AddItemsRequest{Service: "dm", Items: []string{"a", "b"}})); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := fc.worker.Register(ctx(t), connect.NewRequest(&rationv1.RegisterRequest{Service: "dm", WorkerId: "w1", RequestId: "reg-1"})); err != nil {
		t.Fatal(err)
	}
	acq, err := fc.worker.Acquire(ctx(t), connect.NewRequest(&rationv1.AcquireRequest{Service: "dm", WorkerId: "w1"}))
	if err != nil || len(acq.Msg.Buckets) != 1 {
		t.Fatalf("acquire: %v %v", acq, err)
	}
	bk := acq.Msg.Buckets[0]
	if _, err := fc.worker.Heartbeat(ctx(t), connect.NewRequest(&rationv1.HeartbeatRequest{WorkerId: "w1",
		Buckets: []*rationv1.BucketRef{{Id: bk.Id, Epoch: bk.Lease.Epoch}}})); err != nil {
		t.Fatal(err)
	}
	// Refusals: a stale epoch, the admin token as a worker secret, a wrong
	// admin token, a secret bound to another worker.
	if _, err := lc.worker.Submit(ctx(t), connect.NewRequest(&rationv1.SubmitRequest{WorkerId: "w1", BucketId: bk.Id, Epoch: bk.Lease.Epoch + 1,
		Results: []*rationv1.ResultInput{{Item: bk.Items[0], Verdict: "DM"}}})); err == nil {
		t.Fatal("submit at a stale epoch succeeded")
	}
	asAdmin := newClients(http.DefaultClient, c.AddrOf(follower), nil, admin, admin)
	if _, err := asAdmin.worker.Acquire(ctx(t), connect.NewRequest(&rationv1.AcquireRequest{Service: "dm", WorkerId: "w1"})); err == nil {
		t.Fatal("the admin token served as a worker secret")
	}
	wrongAdmin := newClients(http.DefaultClient, c.AddrOf(leader), nil, secret, secret)
	if _, err := wrongAdmin.owner.ListServices(ctx(t), connect.NewRequest(&rationv1.ListServicesRequest{})); err == nil {
		t.Fatal("a worker secret served as the admin token")
	}
	if _, err := wrongAdmin.worker.Register(ctx(t), connect.NewRequest(&rationv1.RegisterRequest{Service: "dm", WorkerId: "w2"})); err != nil {
		t.Fatal(err)
	}
	if _, err := fc.worker.Submit(ctx(t), connect.NewRequest(&rationv1.SubmitRequest{WorkerId: "w1", BucketId: bk.Id, Epoch: bk.Lease.Epoch,
		Results: []*rationv1.ResultInput{{Item: bk.Items[0], Verdict: "DM"}}})); err != nil {
		t.Fatal(err)
	}
	if _, err := fc.insight.ListActivity(ctx(t), connect.NewRequest(&rationv1.ListActivityRequest{})); err != nil {
		t.Fatal(err)
	}
	c.EnsureSame()

	out := log.String()
	// The log was captured, below info level, from every node.
	for _, want := range []string{"[DEBUG]", "n1.raft", "n2.raft", "n3.raft", "n1.cluster"} {
		if !strings.Contains(out, want) {
			t.Fatalf("the captured log has no %q: capture is broken (%d bytes)", want, len(out))
		}
	}
	for _, s := range secrets {
		forms := map[string]string{"plain": s}
		for name, enc := range map[string]*base64.Encoding{"std": base64.StdEncoding, "raw std": base64.RawStdEncoding,
			"url": base64.URLEncoding, "raw url": base64.RawURLEncoding} {
			forms["base64 "+name] = enc.EncodeToString([]byte(s))
		}
		for form, v := range forms {
			if i := strings.Index(out, v); i >= 0 {
				line := out[strings.LastIndex(out[:i], "\n")+1:]
				if j := strings.IndexByte(line, '\n'); j >= 0 {
					line = line[:j]
				}
				t.Errorf("a secret (%s) appears in the log: %s", form, line)
			}
		}
	}
}
