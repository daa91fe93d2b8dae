package server_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"connectrpc.com/connect"

	rationv1 "github.com/rationhq/ration/api/ration/v1"
	"github.com/rationhq/ration/cluster/clustertest"
	"github.com/rationhq/ration/fsm"
	"github.com/rationhq/ration/server"
)

const workerSecret = "a-worker-secret-of-some-length"

// TestServer_WorkerLoopThroughFollowers runs the whole loop against
// followers only, over each protocol: writes are forwarded to the leader,
// linearizable reads on a follower see them, and a watch on a follower
// follows them as that follower applies them.
func TestServer_WorkerLoopThroughFollowers(t *testing.T) {
	c := newTestCluster(t, 3, "")
	leader := c.Leader()
	fs := c.Followers()
	for i, p := range protocols {
		t.Run(p.name, func(t *testing.T) {
			svc := fmt.Sprintf("svc-%d", i)
			a := newClients(p.http, c.addrOf(fs[0]), p.opts, "", workerSecret)
			b := newClients(p.http, c.addrOf(fs[1]), p.opts, "", workerSecret)
			cr, err := a.owner.CreateService(ctx(t), connect.NewRequest(&rationv1.CreateServiceRequest{Name: svc, Kind: "dmcheck",
				Config: &rationv1.ServiceConfig{BucketSize: 2}}))
			if err != nil {
				t.Fatal(err)
			}
			if got := cr.Header().Get(server.ServedByHeader); got != leader.ID() {
				t.Fatalf("write served by %q, want the leader %s", got, leader.ID())
			}
			if _, err := a.worker.Register(ctx(t), connect.NewRequest(&rationv1.RegisterRequest{Service: svc, WorkerId: "w1"})); err != nil {
				t.Fatal(err)
			}
			add, err := b.owner.AddItems(ctx(t), connect.NewRequest(&rationv1.AddItemsRequest{Service: svc, Items: []string{"1", "2", "3", "4"}}))
			if err != nil || add.Msg.Added != 4 || add.Msg.Buckets != 2 {
				t.Fatalf("add: %v %v", add, err)
			}
			acq, err := b.worker.Acquire(ctx(t), connect.NewRequest(&rationv1.AcquireRequest{Service: svc, WorkerId: "w1", MaxBuckets: 2}))
			if err != nil || len(acq.Msg.Buckets) != 2 {
				t.Fatalf("acquire: %v %v", acq, err)
			}
			bk := acq.Msg.Buckets[0]
			hb, err := a.worker.Heartbeat(ctx(t), connect.NewRequest(&rationv1.HeartbeatRequest{WorkerId: "w1",
				Buckets: []*rationv1.BucketRef{{Id: bk.Id, Epoch: bk.Lease.Epoch}}}))
			if err != nil || hb.Msg.Buckets[0].GetLease() == nil {
				t.Fatalf("heartbeat: %v %v", hb, err)
			}
			var res []*rationv1.ResultInput
			for _, it := range bk.Items {
				res = append(res, &rationv1.ResultInput{Item: it, Verdict: "DM"})
			}
			sub, err := a.worker.Submit(ctx(t), connect.NewRequest(&rationv1.SubmitRequest{WorkerId: "w1", BucketId: bk.Id, Epoch: bk.Lease.Epoch, Results: res}))
			if err != nil || sub.Msg.Accepted != 2 {
				t.Fatalf("submit: %v %v", sub, err)
			}
			acked := leader.State().Index() // at least the submit's index
			mine, err := b.worker.ListMyBuckets(ctx(t), connect.NewRequest(&rationv1.ListMyBucketsRequest{Service: svc, WorkerId: "w1"}))
			if err != nil || len(mine.Msg.Buckets) != 1 {
				t.Fatalf("my buckets: %v %v", mine, err)
			}
			// A linearizable read on the other follower sees everything acknowledged.
			got, err := b.owner.GetService(ctx(t), connect.NewRequest(&rationv1.GetServiceRequest{Name: svc}))
			if err != nil {
				t.Fatal(err)
			}
			if it := got.Msg.Service.Items; it.Done != 2 || it.Leased != 2 {
				t.Fatalf("items %v", it)
			}
			if r := got.Msg.Read; r.ServedBy != fs[1].ID() || r.Index < acked || r.Consistency != rationv1.Consistency_CONSISTENCY_LINEARIZABLE {
				t.Fatalf("read info %v", r)
			}
			stale, err := b.owner.GetService(ctx(t), connect.NewRequest(&rationv1.GetServiceRequest{Name: svc, Consistency: rationv1.Consistency_CONSISTENCY_STALE}))
			if err != nil || stale.Msg.Read.Consistency != rationv1.Consistency_CONSISTENCY_STALE || stale.Msg.Read.LeaderContactAge == nil {
				t.Fatalf("stale read: %v %v", stale, err)
			}
			// Streams: results export and the activity log.
			exp, err := a.owner.ExportResults(ctx(t), connect.NewRequest(&rationv1.ExportResultsRequest{Service: svc}))
			if err != nil {
				t.Fatal(err)
			}
			n := 0
			for exp.Receive() {
				n += len(exp.Msg().Results)
			}
			if exp.Err() != nil || n != 2 {
				t.Fatalf("export: %d results, %v", n, exp.Err())
			}
			acts, err := a.insight.ListActivity(ctx(t), connect.NewRequest(&rationv1.ListActivityRequest{Service: svc, WorkerId: "w1"}))
			if err != nil || len(acts.Msg.Activity) < 4 {
				t.Fatalf("activity: %v %v", acts, err)
			}
			ws, err := a.insight.ListWorkers(ctx(t), connect.NewRequest(&rationv1.ListWorkersRequest{Service: svc}))
			if err != nil || len(ws.Msg.Workers) != 1 || ws.Msg.Workers[0].Counters.BucketsDone != 1 {
				t.Fatalf("workers: %v %v", ws, err)
			}
			// A watch on a follower serves from that follower's own state:
			// resumed after w1's first record it replays the others, then
			// follows a release made through the other follower as b
			// applies it.
			wctx, cancel := context.WithCancel(ctx(t))
			defer cancel()
			watch, err := b.insight.WatchActivity(wctx, connect.NewRequest(&rationv1.WatchActivityRequest{Service: svc, WorkerId: "w1",
				AfterSeq: acts.Msg.Activity[0].Seq}))
			if err != nil {
				t.Fatal(err)
			}
			var watched []*rationv1.ActivityInfo
			for len(watched) < len(acts.Msg.Activity)-1 && watch.Receive() {
				watched = append(watched, watch.Msg().Activity...)
			}
			if got := watch.ResponseHeader().Get(server.ServedByHeader); got != fs[1].ID() {
				t.Fatalf("watch served by %q, want the follower %s", got, fs[1].ID())
			}
			if len(watched) != len(acts.Msg.Activity)-1 {
				t.Fatalf("watch replayed %d records, want %d (%v)", len(watched), len(acts.Msg.Activity)-1, watch.Err())
			}
			for i, r := range watched {
				if want := acts.Msg.Activity[i+1]; r.Seq != want.Seq || r.Action != want.Action {
					t.Fatalf("replayed record %d: %v, want %v", i, r, want)
				}
			}
			rel := acq.Msg.Buckets[1]
			if _, err := a.worker.Release(ctx(t), connect.NewRequest(&rationv1.ReleaseRequest{WorkerId: "w1", BucketId: rel.Id, Epoch: rel.Lease.Epoch})); err != nil {
				t.Fatal(err)
			}
			if !watch.Receive() {
				t.Fatalf("watch ended: %v", watch.Err())
			}
			if got := watch.Msg().Activity; len(got) != 1 || got[0].Action != "release" || got[0].BucketId != rel.Id {
				t.Fatalf("watch followed %v, want the release of bucket %d", got, rel.Id)
			}
		})
	}
}

// TestServer_ErrorCodes checks that each failure comes back with its
// documented code and reason, over each protocol.
func TestServer_ErrorCodes(t *testing.T) {
	c := newNode(t, "")
	addr := c.addrs[0]
	setup := newClients(http.DefaultClient, addr, nil, "", workerSecret)
	if _, err := setup.owner.CreateService(ctx(t), connect.NewRequest(&rationv1.CreateServiceRequest{Name: "dm", Kind: "dmcheck",
		Config: &rationv1.ServiceConfig{BucketSize: 1, MaxLeasesPerWorker: 1}})); err != nil {
		t.Fatal(err)
	}
	for _, w := range []string{"w1", "w2"} {
		cl := newClients(http.DefaultClient, addr, nil, "", workerSecret+w)
		if _, err := cl.worker.Register(ctx(t), connect.NewRequest(&rationv1.RegisterRequest{Service: "dm", WorkerId: w})); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := setup.owner.AddItems(ctx(t), connect.NewRequest(&rationv1.AddItemsRequest{Service: "dm", Items: []string{"a", "b"}})); err != nil {
		t.Fatal(err)
	}
	w1 := newClients(http.DefaultClient, addr, nil, "", workerSecret+"w1")
	acq, err := w1.worker.Acquire(ctx(t), connect.NewRequest(&rationv1.AcquireRequest{Service: "dm", WorkerId: "w1"}))
	if err != nil {
		t.Fatal(err)
	}
	b := acq.Msg.Buckets[0]
	results := []*rationv1.ResultInput{{Item: b.Items[0], Verdict: "DM"}}

	tests := []struct {
		name   string
		secret string
		call   func(clients) error
		code   connect.Code
		reason string
	}{
		{"unknown service", "", func(c clients) error {
			_, err := c.owner.GetService(ctx(t), connect.NewRequest(&rationv1.GetServiceRequest{Name: "nope"}))
			return err
		}, connect.CodeNotFound, "NOT_FOUND"},
		{"ack beyond the last result", "", func(c clients) error {
			_, err := c.owner.AckResults(ctx(t), connect.NewRequest(&rationv1.AckResultsRequest{Service: "dm", ThroughSeq: 1 << 40}))
			return err
		}, connect.CodeOutOfRange, "ACK_BEYOND_RESULTS"},
		{"bad service name", "", func(c clients) error {
			_, err := c.owner.CreateService(ctx(t), connect.NewRequest(&rationv1.CreateServiceRequest{Name: "Bad Name", Kind: "dmcheck"}))
			return err
		}, connect.CodeInvalidArgument, "INVALID_ARGUMENT"},
		{"service exists", "", func(c clients) error {
			_, err := c.owner.CreateService(ctx(t), connect.NewRequest(&rationv1.CreateServiceRequest{Name: "dm", Kind: "dmcheck"}))
			return err
		}, connect.CodeAlreadyExists, "SERVICE_EXISTS"},
		{"no worker secret", "", func(c clients) error {
			_, err := c.worker.Acquire(ctx(t), connect.NewRequest(&rationv1.AcquireRequest{Service: "dm", WorkerId: "w1"}))
			return err
		}, connect.CodeUnauthenticated, "NO_CREDENTIAL"},
		{"short worker secret", "short", func(c clients) error {
			_, err := c.worker.Acquire(ctx(t), connect.NewRequest(&rationv1.AcquireRequest{Service: "dm", WorkerId: "w1"}))
			return err
		}, connect.CodeUnauthenticated, "BAD_CREDENTIAL"},
		{"someone else's secret", workerSecret + "w2", func(c clients) error {
			_, err := c.worker.Acquire(ctx(t), connect.NewRequest(&rationv1.AcquireRequest{Service: "dm", WorkerId: "w1"}))
			return err
		}, connect.CodeUnauthenticated, "BAD_CREDENTIAL"},
		{"not the holder", workerSecret + "w2", func(c clients) error {
			_, err := c.worker.Submit(ctx(t), connect.NewRequest(&rationv1.SubmitRequest{WorkerId: "w2", BucketId: b.Id, Epoch: b.Lease.Epoch, Results: results}))
			return err
		}, connect.CodePermissionDenied, "NOT_HOLDER"},
		{"stale epoch", workerSecret + "w1", func(c clients) error {
			_, err := c.worker.Submit(ctx(t), connect.NewRequest(&rationv1.SubmitRequest{WorkerId: "w1", BucketId: b.Id, Epoch: b.Lease.Epoch + 100, Results: results}))
			return err
		}, connect.CodeFailedPrecondition, "LEASE_LOST"},
		{"lease limit", workerSecret + "w1", func(c clients) error {
			_, err := c.worker.Acquire(ctx(t), connect.NewRequest(&rationv1.AcquireRequest{Service: "dm", WorkerId: "w1"}))
			return err
		}, connect.CodeResourceExhausted, "LEASE_LIMIT"},
		{"item not in bucket", workerSecret + "w1", func(c clients) error {
			_, err := c.worker.Submit(ctx(t), connect.NewRequest(&rationv1.SubmitRequest{WorkerId: "w1", BucketId: b.Id, Epoch: b.Lease.Epoch,
				Results: []*rationv1.ResultInput{{Item: "zzz", Verdict: "DM"}}}))
			return err
		}, connect.CodeInvalidArgument, "ITEM_NOT_IN_BUCKET"},
		{"bad verdict", workerSecret + "w1", func(c clients) error {
			_, err := c.worker.Submit(ctx(t), connect.NewRequest(&rationv1.SubmitRequest{WorkerId: "w1", BucketId: b.Id, Epoch: b.Lease.Epoch,
				Results: []*rationv1.ResultInput{{Item: b.Items[0], Verdict: "MAYBE"}}}))
			return err
		}, connect.CodeInvalidArgument, "INVALID_RESULT"},
		{"unknown bucket", workerSecret + "w1", func(c clients) error {
			_, err := c.worker.Release(ctx(t), connect.NewRequest(&rationv1.ReleaseRequest{WorkerId: "w1", BucketId: 9999, Epoch: 1}))
			return err
		}, connect.CodeNotFound, "BUCKET_NOT_FOUND"},
		{"empty items", "", func(c clients) error {
			_, err := c.owner.AddItems(ctx(t), connect.NewRequest(&rationv1.AddItemsRequest{Service: "dm"}))
			return err
		}, connect.CodeInvalidArgument, "INVALID_ARGUMENT"},
		{"revert without since", "", func(c clients) error {
			_, err := c.owner.RevertWorker(ctx(t), connect.NewRequest(&rationv1.RevertWorkerRequest{Service: "dm", WorkerId: "w1"}))
			return err
		}, connect.CodeInvalidArgument, "INVALID_ARGUMENT"},
		{"page too large", "", func(c clients) error {
			_, err := c.owner.ListItems(ctx(t), connect.NewRequest(&rationv1.ListItemsRequest{Service: "dm", PageSize: server.MaxPageSize + 1}))
			return err
		}, connect.CodeInvalidArgument, "INVALID_ARGUMENT"},
		{"remove the last voter", "", func(c clients) error {
			_, err := c.cluster.Remove(ctx(t), connect.NewRequest(&rationv1.RemoveRequest{NodeId: "n1"}))
			return err
		}, connect.CodeFailedPrecondition, "LAST_VOTER"},
		{"request id reused", workerSecret + "w1", func(c clients) error {
			// The id is remembered by the register, which is accepted (a
			// refused command is refused before the log and leaves no id).
			if _, err := c.worker.Register(ctx(t), connect.NewRequest(&rationv1.RegisterRequest{Service: "dm", WorkerId: "w1", RequestId: "same"})); err != nil {
				return err
			}
			_, err := c.worker.Release(ctx(t), connect.NewRequest(&rationv1.ReleaseRequest{WorkerId: "w1", BucketId: b.Id, Epoch: b.Lease.Epoch, RequestId: "same"}))
			return err
		}, connect.CodeInvalidArgument, "REQUEST_ID_REUSED"},
	}
	for _, p := range protocols {
		for _, tt := range tests {
			t.Run(p.name+"/"+tt.name, func(t *testing.T) {
				err := tt.call(newClients(p.http, addr, p.opts, "", tt.secret))
				if connect.CodeOf(err) != tt.code || reasonOf(err) != tt.reason {
					t.Fatalf("got %v (code %v, reason %q), want %v %s", err, connect.CodeOf(err), reasonOf(err), tt.code, tt.reason)
				}
				if err != nil && !strings.Contains(err.Error(), " ") {
					t.Fatalf("error message %q says nothing", err)
				}
			})
		}
	}
}

func TestServer_AdminToken(t *testing.T) {
	c := newNode(t, "the-admin-token")
	for _, tc := range []struct {
		token string
		code  connect.Code
	}{{"", connect.CodeUnauthenticated}, {"wrong", connect.CodeUnauthenticated}, {"the-admin-token", 0}} {
		cl := newClients(http.DefaultClient, c.addrs[0], nil, tc.token, workerSecret)
		_, err := cl.owner.ListServices(ctx(t), connect.NewRequest(&rationv1.ListServicesRequest{}))
		if connect.CodeOf(err) != tc.code && !(tc.code == 0 && err == nil) {
			t.Fatalf("token %q: %v", tc.token, err)
		}
		_, err = cl.cluster.Status(ctx(t), connect.NewRequest(&rationv1.StatusRequest{}))
		if connect.CodeOf(err) != tc.code && !(tc.code == 0 && err == nil) {
			t.Fatalf("status with token %q: %v", tc.token, err)
		}
	}
	// CheckService is public.
	cl := newClients(http.DefaultClient, c.addrs[0], nil, "", "")
	if r, err := cl.worker.CheckService(ctx(t), connect.NewRequest(&rationv1.CheckServiceRequest{Service: "x"})); err != nil || r.Msg.Exists {
		t.Fatalf("check: %v %v", r, err)
	}
}

// TestServer_UnavailableWithoutLeader: with the majority gone, writes and
// linearizable reads answer Unavailable; stale reads still answer.
func TestServer_UnavailableWithoutLeader(t *testing.T) {
	c := newTestCluster(t, 3, "")
	l := c.Leader()
	survivor := c.Followers()[0]
	cl := newClients(http.DefaultClient, c.addrOf(survivor), nil, "", workerSecret)
	if _, err := cl.owner.CreateService(ctx(t), connect.NewRequest(&rationv1.CreateServiceRequest{Name: "dm", Kind: "dmcheck"})); err != nil {
		t.Fatal(err)
	}
	c.WaitApplied(l.State().Index())
	for i, n := range c.Nodes {
		if n != survivor {
			c.Kill(i)
		}
	}
	clustertest.WaitFor(t, 10*time.Second, func() error {
		_, err := cl.owner.AddItems(ctx(t), connect.NewRequest(&rationv1.AddItemsRequest{Service: "dm", Items: []string{"a"}}))
		if connect.CodeOf(err) != connect.CodeUnavailable {
			return fmt.Errorf("write: %v", err)
		}
		return nil
	})
	short, cancel := contextWithTimeout(2 * time.Second)
	defer cancel()
	if _, err := cl.owner.GetService(short, connect.NewRequest(&rationv1.GetServiceRequest{Name: "dm"})); connect.CodeOf(err) != connect.CodeUnavailable && connect.CodeOf(err) != connect.CodeDeadlineExceeded {
		t.Fatalf("linearizable read without a leader: %v", err)
	}
	r, err := cl.owner.GetService(ctx(t), connect.NewRequest(&rationv1.GetServiceRequest{Name: "dm", Consistency: rationv1.Consistency_CONSISTENCY_STALE}))
	if err != nil || r.Msg.Service.Name != "dm" {
		t.Fatalf("stale read without a leader: %v %v", r, err)
	}
}

// TestServer_JSONWorkerLoop drives the worker loop the way curl does:
// plain HTTP/1.1 POSTs of JSON with the proto field names (snake_case), as
// README's curl examples spell them.
func TestServer_JSONWorkerLoop(t *testing.T) {
	c := newNode(t, "tok")
	base := "http://" + c.addrs[0]
	post := func(path, auth, body string) map[string]any {
		t.Helper()
		req, _ := http.NewRequest("POST", base+path, strings.NewReader(body))
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("Authorization", "Bearer "+auth)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		raw, _ := io.ReadAll(resp.Body)
		if resp.StatusCode != 200 {
			t.Fatalf("%s: %d %s", path, resp.StatusCode, raw)
		}
		var out map[string]any
		if err := json.Unmarshal(raw, &out); err != nil {
			t.Fatal(err)
		}
		return out
	}
	post("/ration.v1.OwnerService/CreateService", "tok", `{"name":"dm","kind":"dmcheck","config":{"bucket_size":2,"lease_ttl":"600s"}}`)
	post("/ration.v1.WorkerService/Register", workerSecret, `{"service":"dm","worker_id":"42","name":"alice"}`)
	add := post("/ration.v1.OwnerService/AddItems", "tok", `{"service":"dm","items":["1","2"],"priority":3}`)
	if add["added"] != 2.0 {
		t.Fatalf("add: %v", add)
	}
	acq := post("/ration.v1.WorkerService/Acquire", workerSecret, `{"service":"dm","worker_id":"42","max_buckets":1,"request_id":"r1"}`)
	b := acq["buckets"].([]any)[0].(map[string]any)
	id, epoch := b["id"].(string), b["lease"].(map[string]any)["epoch"].(string)
	post("/ration.v1.WorkerService/Heartbeat", workerSecret, fmt.Sprintf(`{"worker_id":"42","buckets":[{"id":%q,"epoch":%q}]}`, id, epoch))
	sub := post("/ration.v1.WorkerService/Submit", workerSecret, fmt.Sprintf(
		`{"worker_id":"42","bucket_id":%q,"epoch":%q,"results":[{"item":"1","verdict":"DM"},{"item":"2","verdict":"NON_DM","payload":"closed"}]}`, id, epoch))
	// Zero values are written out, not left for the client to know.
	if sub["accepted"] != 2.0 || sub["requeued"] != 0.0 {
		t.Fatalf("submit: %v", sub)
	}
	// Retrying the acquire with its request id gives the first answer.
	again := post("/ration.v1.WorkerService/Acquire", workerSecret, `{"service":"dm","worker_id":"42","max_buckets":1,"request_id":"r1"}`)
	if fmt.Sprint(again["buckets"]) != fmt.Sprint(acq["buckets"]) {
		t.Fatalf("retry answered %v, first %v", again, acq)
	}
	st := post("/ration.v1.InsightService/GetStats", "tok", `{"service":"dm","worker_id":"42"}`)
	if st["items"].(map[string]any)["done"] != "2" {
		t.Fatalf("stats: %v", st)
	}
	// The owner acknowledges what it exported: the export position moves.
	export := post("/ration.v1.OwnerService/GetService", "tok", `{"name":"dm"}`)["service"].(map[string]any)["export"].(map[string]any)
	if export["unackedResults"] != "2" || export["lastSeq"] == nil || export["ackedThrough"] != "0" {
		t.Fatalf("export position before the ack: %v", export)
	}
	ack := post("/ration.v1.OwnerService/AckResults", "tok", fmt.Sprintf(`{"service":"dm","through_seq":%q}`, export["lastSeq"]))
	if got := ack["export"].(map[string]any); got["ackedThrough"] != export["lastSeq"] || got["unackedResults"] != "0" {
		t.Fatalf("export position after the ack: %v", got)
	}
}

func TestServer_SnapshotSaveAndRestore(t *testing.T) {
	c := newTestCluster(t, 3, "")
	f := c.Followers()[0]
	cl := newClients(http.DefaultClient, c.addrOf(f), nil, "", workerSecret)
	if _, err := cl.owner.CreateService(ctx(t), connect.NewRequest(&rationv1.CreateServiceRequest{Name: "keep", Kind: "dmcheck"})); err != nil {
		t.Fatal(err)
	}
	c.WaitApplied(c.Leader().State().Index())
	stream, err := cl.cluster.SaveSnapshot(ctx(t), connect.NewRequest(&rationv1.SaveSnapshotRequest{}))
	if err != nil {
		t.Fatal(err)
	}
	var snap bytes.Buffer
	for stream.Receive() {
		snap.Write(stream.Msg().Data)
	}
	if stream.Err() != nil || snap.Len() == 0 {
		t.Fatalf("save: %d bytes, %v", snap.Len(), stream.Err())
	}
	if _, err := cl.owner.CreateService(ctx(t), connect.NewRequest(&rationv1.CreateServiceRequest{Name: "later", Kind: "dmcheck"})); err != nil {
		t.Fatal(err)
	}
	bad := append([]byte{}, snap.Bytes()[:snap.Len()/2]...)
	if _, err := cl.cluster.Restore(ctx(t), connect.NewRequest(&rationv1.RestoreRequest{Data: bad})); connect.CodeOf(err) != connect.CodeInvalidArgument {
		t.Fatalf("restore of a truncated snapshot: %v", err)
	}
	if _, err := cl.cluster.Restore(ctx(t), connect.NewRequest(&rationv1.RestoreRequest{Data: snap.Bytes()})); err != nil {
		t.Fatal(err)
	}
	// Once the follower has applied the restored state, a linearizable
	// read through it sees that state.
	clustertest.WaitState(t, f, 10*time.Second, func(st *fsm.State) error {
		if svcs := st.Services(); len(svcs) != 1 || svcs[0].Name != "keep" {
			return fmt.Errorf("%s holds %d services after the restore", f.ID(), len(svcs))
		}
		return nil
	})
	r, err := cl.owner.ListServices(ctx(t), connect.NewRequest(&rationv1.ListServicesRequest{}))
	if err != nil {
		t.Fatal(err)
	}
	if len(r.Msg.Services) != 1 || r.Msg.Services[0].Name != "keep" {
		t.Fatalf("services after restore: %v", r.Msg.Services)
	}
	c.EnsureSame()
}

func TestServer_Explain(t *testing.T) {
	c := newNode(t, "")
	cl := newClients(http.DefaultClient, c.addrs[0], nil, "", workerSecret)
	if _, err := cl.owner.CreateService(ctx(t), connect.NewRequest(&rationv1.CreateServiceRequest{Name: "dm", Kind: "dmcheck"})); err != nil {
		t.Fatal(err)
	}
	if _, err := cl.worker.Register(ctx(t), connect.NewRequest(&rationv1.RegisterRequest{Service: "dm", WorkerId: "w1"})); err != nil {
		t.Fatal(err)
	}
	// A refused request is refused before the log: it leaves no record.
	_, err := cl.worker.Release(ctx(t), connect.NewRequest(&rationv1.ReleaseRequest{WorkerId: "w1", BucketId: 5, Epoch: 1, RequestId: "my-release"}))
	if connect.CodeOf(err) != connect.CodeNotFound {
		t.Fatalf("release of a missing bucket: %v", err)
	}
	r, err := cl.insight.Explain(ctx(t), connect.NewRequest(&rationv1.ExplainRequest{Service: "dm",
		Subject: &rationv1.ExplainRequest_RequestId{RequestId: "my-release"}}))
	if err != nil || len(r.Msg.Lines) != 1 || !strings.Contains(r.Msg.Lines[0], "no record") || len(r.Msg.Activity) != 0 {
		t.Fatalf("explain refused request: %v %v", r, err)
	}
	if _, err := cl.worker.Register(ctx(t), connect.NewRequest(&rationv1.RegisterRequest{Service: "dm", WorkerId: "w1", RequestId: "my-register"})); err != nil {
		t.Fatal(err)
	}
	r, err = cl.insight.Explain(ctx(t), connect.NewRequest(&rationv1.ExplainRequest{Service: "dm",
		Subject: &rationv1.ExplainRequest_RequestId{RequestId: "my-register"}}))
	if err != nil || len(r.Msg.Lines) != 1 || !strings.Contains(r.Msg.Lines[0], "register by w1") || len(r.Msg.Activity) != 1 {
		t.Fatalf("explain request: %v %v", r, err)
	}
	r, err = cl.insight.Explain(ctx(t), connect.NewRequest(&rationv1.ExplainRequest{Service: "dm",
		Subject: &rationv1.ExplainRequest_WorkerId{WorkerId: "w1"}}))
	if err != nil || !strings.Contains(r.Msg.Lines[0], "is active") {
		t.Fatalf("explain worker: %v %v", r, err)
	}
	if _, err := cl.insight.Explain(ctx(t), connect.NewRequest(&rationv1.ExplainRequest{Service: "dm"})); connect.CodeOf(err) != connect.CodeInvalidArgument {
		t.Fatalf("explain nothing: %v", err)
	}
	if _, err := cl.insight.Explain(ctx(t), connect.NewRequest(&rationv1.ExplainRequest{Service: "dm",
		Subject: &rationv1.ExplainRequest_BucketId{BucketId: 99}})); connect.CodeOf(err) != connect.CodeNotFound {
		t.Fatalf("explain a missing bucket: %v", err)
	}
}

// TestServer_ActivityPagingAndWatch pages the activity log and follows it
// with WatchActivity, resuming after a sequence number, on one node (a
// watch on a follower: TestServer_WorkerLoopThroughFollowers).
func TestServer_ActivityPagingAndWatch(t *testing.T) {
	c := newNode(t, "")
	cl := newClients(http.DefaultClient, c.addrs[0], nil, "", workerSecret)
	for i := range 5 {
		if _, err := cl.owner.CreateService(ctx(t), connect.NewRequest(&rationv1.CreateServiceRequest{Name: fmt.Sprintf("s%d", i), Kind: "dmcheck"})); err != nil {
			t.Fatal(err)
		}
	}
	var seqs []uint64
	for after := uint64(0); ; {
		r, err := cl.insight.ListActivity(ctx(t), connect.NewRequest(&rationv1.ListActivityRequest{Action: "create-service", AfterSeq: after, PageSize: 2}))
		if err != nil {
			t.Fatal(err)
		}
		for _, a := range r.Msg.Activity {
			seqs = append(seqs, a.Seq)
		}
		if r.Msg.NextAfterSeq == 0 {
			break
		}
		after = r.Msg.NextAfterSeq
	}
	if len(seqs) != 5 || seqs[0] >= seqs[4] {
		t.Fatalf("paged seqs %v", seqs)
	}
	// Resume after the second record: the stream replays the other three, then follows.
	wctx, cancel := context.WithCancel(ctx(t))
	defer cancel()
	stream, err := cl.insight.WatchActivity(wctx, connect.NewRequest(&rationv1.WatchActivityRequest{Action: "create-service", AfterSeq: seqs[1]}))
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	replayed := make(chan struct{})
	created := make(chan error, 1)
	go func() {
		<-replayed
		_, err := cl.owner.CreateService(ctx(t), connect.NewRequest(&rationv1.CreateServiceRequest{Name: "later", Kind: "dmcheck"}))
		created <- err
	}()
	for len(got) < 4 && stream.Receive() {
		for _, a := range stream.Msg().Activity {
			got = append(got, a.Service)
		}
		if len(got) == 3 {
			close(replayed)
		}
	}
	if err := <-created; err != nil {
		t.Fatal(err)
	}
	if len(got) != 4 || got[0] != "s2" || got[3] != "later" {
		t.Fatalf("watched %v (%v)", got, stream.Err())
	}
}

// TestServer_JSONRefusesUnknownFields: a misspelled field in a JSON body is
// refused, naming the field and where it stands; a value of the wrong type
// or out of range names the field as the body spells it and what it takes,
// without Go's type names; both spellings of a field work.
func TestServer_JSONRefusesUnknownFields(t *testing.T) {
	c := newNode(t, "")
	post := func(body string) (int, string) {
		return rawCall(t, http.MethodPost, "http://"+c.addrs[0]+"/ration.v1.OwnerService/CreateService", "application/json", body)
	}
	for _, tt := range []struct{ body, want string }{
		{`{"name":"dm","kind":"dmcheck","bucketSise":3}`, `unknown field \"bucketSise\" (line 1, column 31)`},
		{`{"name":"dm","kind":"dmcheck","config":{"bucket_size":"many"}}`, `\"bucket_size\": \"many\" is not a whole number from 0 to 4294967295 (line 1, column 55)`},
		{`{"name":"dm","kind":"dmcheck","config":{"bucketSize":-3}}`, `\"bucketSize\": -3 is not a whole number from 0 to 4294967295 (line 1, column 54)`},
		{`{"name":"dm","kind":"dmcheck","config":{"lease_ttl":300}}`, `\"lease_ttl\": 300 is not a duration in seconds with an \"s\" (\"90s\", \"0.5s\") (line 1, column 53)`},
		{`{"name":"dm","kind":"dmcheck","config":{"lease_ttl":"5m"}}`, `\"lease_ttl\": \"5m\" is not a duration in seconds`},
		{`{"name":["dm"],"kind":"dmcheck"}`, `\"name\": an array is not a string (line 1, column 9)`},
		{`["dm"]`, `the body is not a JSON object: it starts with [`},
		{``, `the body is empty`},
	} {
		code, body := post(tt.body)
		if code != http.StatusBadRequest || !strings.Contains(body, `"code":"invalid_argument"`) || !strings.Contains(body, tt.want) {
			t.Errorf("%s: %d %s, want 400 invalid_argument with %s", tt.body, code, body, tt.want)
		}
		if strings.Contains(body, "rationv1") || strings.Contains(body, "unmarshal into") {
			t.Errorf("%s: the error shows Go's names: %s", tt.body, body)
		}
	}
	for _, body := range []string{`{"name":"a","kind":"dmcheck","config":{"bucket_size":3}}`, `{"name":"b","kind":"dmcheck","config":{"bucketSize":3}}`} {
		if code, res := post(body); code != http.StatusOK {
			t.Errorf("%s: %d %s", body, code, res)
		}
	}
}

// TestServer_EdgeAnswersProtocolMistakes: what curl or a hand-written
// client gets wrong is answered in Connect's JSON error shape, saying what
// to send: a wrong Content-Type (415), a method other than POST (405; GET
// stays open on reads, as Connect serves it), an unknown procedure (404,
// listing the services).
func TestServer_EdgeAnswersProtocolMistakes(t *testing.T) {
	c := newNode(t, "")
	do := func(method, path, ct, body string) (int, string) {
		return rawCall(t, method, "http://"+c.addrs[0]+path, ct, body)
	}
	const create = "/ration.v1.OwnerService/CreateService"
	for _, tt := range []struct {
		method, path, ct string
		code             int
		want             string
	}{
		{"POST", create, "", 415, `Content-Type: application/json`},
		{"POST", create, "application/x-www-form-urlencoded", 415, `"code":"invalid_argument"`},
		{"POST", create, "text/plain", 415, `send a JSON body`},
		{"GET", create, "", 405, `takes POST, not GET`},
		{"PUT", create, "application/json", 405, `"code":"unimplemented"`},
		{"POST", "/ration.v1.OwnerService/CreateServic", "application/json", 404, `ration.v1.OwnerService, ration.v1.WorkerService`},
		{"POST", "/ration.v2.Nothing/Here", "application/json", 404, `no procedure /ration.v2.Nothing/Here`},
	} {
		code, body := do(tt.method, tt.path, tt.ct, `{"name":"x","kind":"dmcheck"}`)
		if code != tt.code || !strings.Contains(body, tt.want) || !strings.Contains(body, `"message"`) {
			t.Errorf("%s %s (%q): %d %s, want %d with %s", tt.method, tt.path, tt.ct, code, body, tt.code, tt.want)
		}
	}
	// What is right still works: JSON with its charset, and GET on a read.
	if code, body := do("POST", create, "application/json; charset=utf-8", `{"name":"dm","kind":"dmcheck"}`); code != 200 {
		t.Errorf("JSON with a charset: %d %s", code, body)
	}
	if code, body := do("GET", "/ration.v1.OwnerService/ListServices?encoding=json&message=%7B%7D", "", ""); code != 200 || !strings.Contains(body, `"dm"`) {
		t.Errorf("Connect GET of a read: %d %s", code, body)
	}
}

// rawCall makes one plain HTTP request, as curl would, with the given
// Content-Type (none if empty), and returns the status and the body.
func rawCall(t *testing.T, method, url, ct, body string) (int, string) {
	t.Helper()
	req, _ := http.NewRequest(method, url, strings.NewReader(body))
	if ct != "" {
		req.Header.Set("Content-Type", ct)
	}
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	b, _ := io.ReadAll(res.Body)
	return res.StatusCode, string(b)
}

// TestServer_RefusalsNameTheirNode: a refusal carries Ration-Served-By as
// an answer does, naming the node that refused: the follower for its own
// read, the leader for a write it refused through the follower.
func TestServer_RefusalsNameTheirNode(t *testing.T) {
	c := newTestCluster(t, 3, "")
	f := c.Followers()[0]
	cl := newClients(http.DefaultClient, c.addrOf(f), nil, "", workerSecret)
	create := connect.NewRequest(&rationv1.CreateServiceRequest{Name: "dm", Kind: "dmcheck"})
	if _, err := cl.owner.CreateService(ctx(t), create); err != nil {
		t.Fatal(err)
	}
	c.WaitApplied(c.Leader().State().Index())
	servedBy := func(err error) string {
		var ce *connect.Error
		if !errors.As(err, &ce) {
			t.Fatalf("want a refusal, got %v", err)
		}
		return ce.Meta().Get(server.ServedByHeader)
	}
	_, err := cl.owner.GetService(ctx(t), connect.NewRequest(&rationv1.GetServiceRequest{Name: "nope", Consistency: rationv1.Consistency_CONSISTENCY_STALE}))
	if got := servedBy(err); got != f.ID() || connect.CodeOf(err) != connect.CodeNotFound {
		t.Errorf("a follower's own refusal: served by %q (%v), want %s", got, err, f.ID())
	}
	_, err = cl.owner.CreateService(ctx(t), connect.NewRequest(&rationv1.CreateServiceRequest{Name: "dm", Kind: "dmcheck"}))
	if got := servedBy(err); got != c.Leader().ID() || reasonOf(err) != "SERVICE_EXISTS" {
		t.Errorf("the leader's refusal through a follower: served by %q (%v), want %s", got, err, c.Leader().ID())
	}
}
