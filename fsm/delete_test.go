package fsm

import (
	"testing"

	rationv1 "github.com/rationhq/ration/api/ration/v1"
)

// DeleteService takes only a revoked service, and only once its results are
// acknowledged (or forced); it removes everything of that service and
// nothing of another; its activity stays; the name is new again.
func TestFSM_DeleteService(t *testing.T) {
	h := setup(t, &rationv1.ServiceConfig{BucketSize: 2}, 6, "w1", "w2")
	h.createService("other", "dmcheck", &rationv1.ServiceConfig{BucketSize: 2})
	h.register("other", "w1")
	h.add("other", 0, ids("u", 4)...) // the same ids as dm's, in another service
	b := h.acquire("dm", "w1", 1)[0]
	h.submitAll("w1", b, "DM")
	h.acquire("dm", "w2", 1) // one lease outstanding
	h.acquire("other", "w1", 1)
	before := h.f.State()
	otherBefore, _ := before.Service("other")

	h.refuse(&rationv1.DeleteServiceRequest{Name: "dm"}, ErrServiceNotRevoked)
	h.refuse(&rationv1.DeleteServiceRequest{Name: "nope"}, ErrServiceNotFound)
	h.refuse(&rationv1.DeleteServiceRequest{Name: "Bad Name"}, ErrInvalidArgument)
	h.must(&rationv1.RevokeServiceRequest{Name: "dm", Reason: "done with it"})
	h.refuse(&rationv1.DeleteServiceRequest{Name: "dm"}, ErrResultsNotAcknowledged)
	if _, ok := h.f.State().Service("dm"); !ok {
		t.Fatal("a refused delete removed the service")
	}
	seq := h.f.State().Results("dm", 0, 10)[0].Seq
	h.must(&rationv1.AckResultsRequest{Service: "dm", ThroughSeq: seq})
	r := h.must(&rationv1.DeleteServiceRequest{Name: "dm"}).GetDeleteService()
	if r.Items != 6 || r.Buckets != 3 || r.ResultBatches != 1 || r.UnackedResults != 0 || r.Registrations != 2 {
		t.Fatalf("deleted %v", r)
	}
	st := h.f.State()
	if _, ok := st.Service("dm"); ok {
		t.Fatal("the service is still there")
	}
	if _, ok := st.Item("dm", "u00000"); ok {
		t.Fatal("an item is still there")
	}
	if _, ok := st.Registration("dm", "w1"); ok {
		t.Fatal("a registration is still there")
	}
	if err := st.CheckInvariants(); err != nil {
		t.Fatal(err)
	}
	otherAfter, _ := st.Service("other")
	if otherAfter.Items != otherBefore.Items || otherAfter.Buckets != otherBefore.Buckets || len(st.Items("other", 0, "", 100)) != 4 {
		t.Fatalf("the other service changed: items %v buckets %v", otherAfter.Items, otherAfter.Buckets)
	}
	if acts := st.Activity(ActivityQuery{Service: "dm", Action: ActSubmit, Limit: 10}); len(acts) != 1 {
		t.Fatalf("dm's activity after the delete: %d submit records, want 1", len(acts))
	}
	// Two refusals (active, unacknowledged) and the delete itself.
	acts := st.Activity(ActivityQuery{Service: "dm", Action: ActDeleteService, Limit: 10})
	if len(acts) != 3 || acts[0].Reason != ErrServiceNotRevoked.Reason || acts[1].Reason != ErrResultsNotAcknowledged.Reason ||
		acts[2].Reason != "" || acts[2].Count != 6 {
		t.Fatalf("the delete's records: %d", len(acts))
	}
	// The name is free: a new service, and the old ids are new in it.
	h.createService("dm", "dmcheck", &rationv1.ServiceConfig{BucketSize: 2})
	if r := h.add("dm", 0, ids("u", 6)...); r.Added != 6 {
		t.Fatalf("adding the old ids to the new service: %v", r)
	}
	// A snapshot of the result reads back the same.
	h.restored()
}

// force deletes results nobody acknowledged, and says how many.
func TestFSM_DeleteServiceForced(t *testing.T) {
	h := setup(t, &rationv1.ServiceConfig{BucketSize: 2}, 4, "w1")
	for range 2 {
		h.submitAll("w1", h.acquire("dm", "w1", 1)[0], "DM")
	}
	h.must(&rationv1.RevokeServiceRequest{Name: "dm"})
	h.refuse(&rationv1.DeleteServiceRequest{Name: "dm"}, ErrResultsNotAcknowledged)
	r := h.must(&rationv1.DeleteServiceRequest{Name: "dm", Force: true}).GetDeleteService()
	if r.UnackedResults != 4 || r.ResultBatches != 2 || r.Items != 4 {
		t.Fatalf("forced delete: %v", r)
	}
	if err := h.f.State().CheckInvariants(); err != nil {
		t.Fatal(err)
	}
}

// An owner token deletes its own service only.
func TestFSM_DeleteServiceTakesTheOwnerToken(t *testing.T) {
	h := newHarness(t)
	h.createService("a", "dmcheck", nil)
	h.createService("b", "dmcheck", nil)
	tok := tokenHash("owner of a")
	wantReason(t, h.applyCmd(h.ownerCmd(&rationv1.RotateOwnerTokenRequest{Name: "a"}, "admin", nil, tok, "")), nil)
	h.must(&rationv1.RevokeServiceRequest{Name: "a"})
	h.must(&rationv1.RevokeServiceRequest{Name: "b"})
	wantReason(t, h.applyCmd(h.ownerCmd(&rationv1.DeleteServiceRequest{Name: "b"}, "owner", tok, nil, "")), ErrBadOwnerToken)
	wantReason(t, h.applyCmd(h.ownerCmd(&rationv1.DeleteServiceRequest{Name: "a"}, "owner", tok, nil, "")), nil)
	if _, ok := h.f.State().Service("b"); !ok {
		t.Fatal("b was deleted with a's token")
	}
}
