package fsm

import (
	"strings"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"

	statev1 "github.com/rationhq/ration/api/ration/state/v1"
	rationv1 "github.com/rationhq/ration/api/ration/v1"
)

func TestCheckRequest(t *testing.T) {
	long := strings.Repeat("x", MaxIDLength+1)
	ok := []proto.Message{
		&rationv1.CreateServiceRequest{Name: "dm", Kind: "dmcheck"},
		&rationv1.UpdateServiceRequest{Name: "dm", Config: &rationv1.ServiceConfig{Verdicts: []string{"A"}}},
		&rationv1.RevokeServiceRequest{Name: "dm", Reason: "done"},
		&rationv1.ReinstateServiceRequest{Name: "dm"},
		&rationv1.RegisterRequest{Service: "dm", WorkerId: "1", Name: "alice"},
		&rationv1.UnregisterRequest{Service: "dm", WorkerId: "1"},
		&rationv1.DeactivateWorkerRequest{Service: "dm", WorkerId: "1"},
		&rationv1.ReactivateWorkerRequest{Service: "dm", WorkerId: "1"},
		&rationv1.RevertWorkerRequest{Service: "dm", WorkerId: "1", Since: ts(t0)},
		&rationv1.AddItemsRequest{Service: "dm", Items: []string{"a"}, Priority: MaxPriority},
		&rationv1.AcquireRequest{Service: "dm", WorkerId: "1"},
		&rationv1.HeartbeatRequest{WorkerId: "1", Buckets: []*rationv1.BucketRef{{Id: 1, Epoch: 1}}},
		&rationv1.SubmitRequest{WorkerId: "1", BucketId: 1, Epoch: 1, Results: []*rationv1.ResultInput{{Item: "a", Verdict: "DM"}}},
		&rationv1.ReleaseRequest{WorkerId: "1", BucketId: 1, Epoch: 1},
		&rationv1.GetServiceRequest{Name: "anything: reads are not checked here"},
	}
	for _, m := range ok {
		if err := CheckRequest(m); err != nil {
			t.Errorf("%T: %v", m, err)
		}
	}
	bad := []proto.Message{
		&rationv1.CreateServiceRequest{Name: "DM", Kind: "dmcheck"},
		&rationv1.CreateServiceRequest{Name: "dm", Kind: "nope"},
		&rationv1.CreateServiceRequest{Name: "dm", Kind: "generic"},
		&rationv1.UpdateServiceRequest{Name: "dm", Config: &rationv1.ServiceConfig{BucketSize: MaxBucketSize + 1}},
		&rationv1.UpdateServiceRequest{Name: ""},
		&rationv1.RevokeServiceRequest{Name: "dm", Reason: "\x00"},
		&rationv1.ReinstateServiceRequest{Name: "-no spaces-"},
		&rationv1.RegisterRequest{Service: "dm", WorkerId: long},
		&rationv1.RegisterRequest{Service: "dm", WorkerId: "1", Name: strings.Repeat("n", MaxNameLength+1)},
		&rationv1.UnregisterRequest{Service: "dm"},
		&rationv1.DeactivateWorkerRequest{Service: "dm", WorkerId: "a b"},
		&rationv1.ReactivateWorkerRequest{WorkerId: "1"},
		&rationv1.RevertWorkerRequest{Service: "dm", WorkerId: "1"},
		&rationv1.RevertWorkerRequest{Service: "dm", WorkerId: "1", Since: ts(time.Date(10000, 1, 1, 0, 0, 0, 0, time.UTC))},
		&rationv1.AddItemsRequest{Service: "dm"},
		&rationv1.AddItemsRequest{Service: "dm", Items: []string{"a"}, Priority: MinPriority - 1},
		&rationv1.AddItemsRequest{Service: "dm", Items: make([]string, MaxItemsPerAddLimit+1)},
		&rationv1.AcquireRequest{Service: "dm"},
		&rationv1.HeartbeatRequest{WorkerId: "1"},
		&rationv1.HeartbeatRequest{Buckets: []*rationv1.BucketRef{{Id: 1}}},
		&rationv1.SubmitRequest{WorkerId: "1", Epoch: 1, Results: []*rationv1.ResultInput{{Item: "a", Verdict: "DM"}}},
		&rationv1.SubmitRequest{WorkerId: "1", BucketId: 1},
		&rationv1.SubmitRequest{WorkerId: "1", BucketId: 1, Results: []*rationv1.ResultInput{{Item: "", Verdict: "DM"}}},
		&rationv1.SubmitRequest{WorkerId: "1", BucketId: 1, Results: []*rationv1.ResultInput{{Item: "a"}}},
		&rationv1.SubmitRequest{WorkerId: "1", BucketId: 1, Results: []*rationv1.ResultInput{{Item: "a", Verdict: "DM", Payload: strings.Repeat("p", 1<<20+1)}}},
		&rationv1.SubmitRequest{BucketId: 1, Results: []*rationv1.ResultInput{{Item: "a", Verdict: "DM"}}},
		&rationv1.ReleaseRequest{WorkerId: "1"},
		&rationv1.ReleaseRequest{BucketId: 1},
	}
	for _, m := range bad {
		err := CheckRequest(m)
		if err == nil || Reason(err) == "" {
			t.Errorf("%T %v: accepted (%v)", m, m, err)
		}
	}
	if err := CheckRequestID(strings.Repeat("r", MaxRequestIDLength)); err != nil {
		t.Error(err)
	}
	for _, id := range []string{strings.Repeat("r", MaxRequestIDLength+1), "has space"} {
		if CheckRequestID(id) == nil {
			t.Errorf("request id %q accepted", id)
		}
	}
}

func TestState_Reads(t *testing.T) {
	h := setup(t, &rationv1.ServiceConfig{BucketSize: 2}, 10, "w1", "w2", "w3")
	bs := h.acquire("dm", "w1", 2)
	h.submitAll("w1", bs[0], "DM")
	h.advance(time.Minute)
	mid := h.now
	h.acquire("dm", "w2", 1)
	st := h.f.State()

	if got := st.Buckets(BucketQuery{Service: "dm", Holder: "w1", Limit: 10}); len(got) != 1 || got[0].ID != bs[1].Id {
		t.Fatalf("w1 holds %v", got)
	}
	if got := st.Buckets(BucketQuery{Service: "dm", State: done, Limit: 10}); len(got) != 1 {
		t.Fatalf("done buckets %v", got)
	}
	page1 := st.Buckets(BucketQuery{Service: "dm", Limit: 2})
	page2 := st.Buckets(BucketQuery{Service: "dm", After: page1[1].ID, Limit: 10})
	if len(page1) != 2 || len(page2) != 3 || page2[0].ID <= page1[1].ID {
		t.Fatalf("bucket pages %d, %d", len(page1), len(page2))
	}
	if got := st.Items("dm", pending, "", 100); len(got) != 4 {
		t.Fatalf("%d pending items", len(got))
	}
	p1 := st.Items("dm", 0, "", 3)
	if p2 := st.Items("dm", 0, p1[2].ID, 100); len(p1)+len(p2) != 10 {
		t.Fatalf("item pages %d+%d", len(p1), len(p2))
	}
	if r := st.Registrations("dm", "w1", 10); len(r) != 2 || r[0].Worker != "w2" {
		t.Fatalf("registrations after w1: %v", r)
	}
	if acts := st.Activity(ActivityQuery{Since: mid, Limit: 10}); len(acts) != 1 || acts[0].Action != ActAcquire {
		t.Fatalf("activity since %v: %v", mid, acts)
	}
	if acts := st.Activity(ActivityQuery{Until: mid, Service: "dm", Limit: 100}); len(acts) == 0 || acts[len(acts)-1].At >= mid.UnixNano() {
		t.Fatalf("activity until: %v", acts)
	}
	if acts := st.Activity(ActivityQuery{Worker: "w1", Action: ActSubmit, Limit: 10}); len(acts) != 1 {
		t.Fatalf("w1's submits: %v", acts)
	}
	if st.LastActivitySeq() == 0 || st.ServiceName(1) != "dm" || st.ServiceName(99) != "" || !st.Now().Equal(h.now) {
		t.Fatal("state metadata")
	}
	if _, ok := st.Item("nope", "x"); ok {
		t.Fatal("item of an unknown service")
	}
	if st.Items("nope", 0, "", 10) != nil || st.Buckets(BucketQuery{Service: "nope", Limit: 1}) != nil || st.Results("nope", 0, 1) != nil {
		t.Fatal("reads of an unknown service returned something")
	}
	h.must(&statev1.SetNode{NodeId: "n1", ApiAddress: "a"})
	h.must(&statev1.RemoveNode{NodeId: "n1"})
	h.refuse(&statev1.RemoveNode{NodeId: "n1"}, ErrNodeNotFound)
	h.refuse(&statev1.SetNode{}, ErrInvalidArgument)
}

func TestState_ActivityNewest(t *testing.T) {
	h := setup(t, &rationv1.ServiceConfig{BucketSize: 1}, 5, "w1")
	for range 4 {
		h.acquire("dm", "w1", 1)
	}
	st := h.f.State()
	all := st.Activity(ActivityQuery{Limit: 1000})
	tail := st.Activity(ActivityQuery{Newest: true, Limit: 3})
	if len(tail) != 3 || tail[2].Seq != all[len(all)-1].Seq || tail[0].Seq >= tail[2].Seq {
		t.Fatalf("tail %v of %d", tail, len(all))
	}
	acq := st.Activity(ActivityQuery{Newest: true, Worker: "w1", Action: ActAcquire, Limit: 2})
	if len(acq) != 2 || acq[0].Action != ActAcquire || acq[1].Seq != all[len(all)-1].Seq {
		t.Fatalf("worker tail %v", acq)
	}
	if got := st.Activity(ActivityQuery{Newest: true, AfterSeq: all[len(all)-2].Seq, Limit: 100}); len(got) != 1 {
		t.Fatalf("tail after a seq: %v", got)
	}
}
