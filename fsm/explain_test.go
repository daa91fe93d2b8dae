package fsm

import (
	"strings"
	"testing"
	"time"

	statev1 "github.com/rationhq/ration/api/ration/state/v1"
	rationv1 "github.com/rationhq/ration/api/ration/v1"
)

func TestState_Explain(t *testing.T) {
	h := setup(t, &rationv1.ServiceConfig{BucketSize: 1, LeaseTtl: dur(time.Hour), MaxAttempts: 1}, 3, "w1", "w2")
	b := h.acquire("dm", "w1", 1)[0]
	h.applyAs(&rationv1.SubmitRequest{WorkerId: "w2", BucketId: b.Id, Epoch: b.Lease.Epoch, Results: results(b, "DM")}, "w2", secret("w2"), "req-7")
	h.must(&rationv1.DeactivateWorkerRequest{Service: "dm", WorkerId: "w2", Reason: "cheating"})
	st := h.f.State()
	has := func(e *Explanation, ok bool, want string) {
		t.Helper()
		if !ok || !strings.Contains(strings.Join(e.Lines, "\n"), want) {
			t.Fatalf("want %q in %v (found %v)", want, e, ok)
		}
	}
	e, ok := st.ExplainBucket("dm", b.Id)
	has(e, ok, "leased to w1")
	if len(e.Activity) == 0 {
		t.Fatal("no activity behind the bucket's explanation")
	}
	var waiting uint64
	for _, v := range st.Items("dm", pending, "", 10) {
		waiting = v.Bucket
	}
	e, ok = st.ExplainBucket("dm", waiting)
	has(e, ok, "is unassigned")
	e, ok = st.ExplainWorker("dm", "w2")
	has(e, ok, "only ReactivateWorker")
	e, ok = st.ExplainRequest("dm", "req-7", true)
	has(e, ok, "was refused")
	has(e, ok, "NOT_HOLDER")
	e, ok = st.ExplainItem("dm", b.Items[0])
	has(e, ok, "held by w1")
	h.advance(2 * time.Hour)
	h.tick()
	h.advance(16 * time.Minute)
	h.tick()
	e, ok = st.ExplainItem("dm", b.Items[0])
	has(e, ok, "held by w1") // an old version keeps its answer
	e, ok = h.f.State().ExplainItem("dm", b.Items[0])
	has(e, ok, "quarantined")
	if _, ok := h.f.State().ExplainBucket("nope", 1); ok {
		t.Fatal("explained a bucket of an unknown service")
	}
	if _, ok := h.f.State().ExplainWorker("dm", "nobody"); ok {
		t.Fatal("explained an unknown worker")
	}
}

// A record that names no service shows in a service's ExplainRequest only
// when unscoped is asked for (the admin): an owner sees its service's.
func TestExplainRequest_UnscopedRecordsOnlyWhenAsked(t *testing.T) {
	h := newHarness(t)
	h.createService("dm", "dmcheck", nil)
	h.applyCmd(h.command(&statev1.SetNode{NodeId: "n1", ApiAddress: "127.0.0.1:1"}, "admin", nil, "rid-node"))
	st := h.f.State()
	if e, ok := st.ExplainRequest("dm", "rid-node", true); !ok || len(e.Activity) != 1 {
		t.Fatalf("unscoped: %v %v, want the SetNode record", e, ok)
	}
	if e, ok := st.ExplainRequest("dm", "rid-node", false); !ok || len(e.Activity) != 0 || !strings.Contains(e.Lines[0], "no record") {
		t.Fatalf("scoped: %+v %v, want no record", e, ok)
	}
}
