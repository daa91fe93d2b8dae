package fsm

import (
	"strings"
	"testing"
	"time"

	rationv1 "github.com/rationhq/ration/api/ration/v1"
)

func TestFSM_AddItemsPacksIntoBuckets(t *testing.T) {
	h := setup(t, &rationv1.ServiceConfig{BucketSize: 4}, 0)
	a := h.add("dm", 0, ids("a", 6)...)
	if a.Added != 6 || a.Buckets != 2 {
		t.Fatalf("first add: %v", a)
	}
	// The open bucket of the same priority fills up before a new one opens.
	a = h.add("dm", 0, ids("b", 3)...)
	if a.Added != 3 || a.Buckets != 1 {
		t.Fatalf("second add: %v", a)
	}
	s, _ := h.f.State().Service("dm")
	if s.Buckets[unassigned] != 3 || s.Items[pending] != 9 {
		t.Fatalf("counts: %v %v", s.Buckets, s.Items)
	}
	// Another priority gets buckets of its own.
	if a = h.add("dm", 7, "c"); a.Buckets != 1 {
		t.Fatalf("priority add: %v", a)
	}
}

func TestFSM_AddItemsSkipsAndRaises(t *testing.T) {
	h := setup(t, &rationv1.ServiceConfig{BucketSize: 2}, 0, "w1")
	h.add("dm", 0, "p1", "p2", "l1", "l2")
	var leasedBucket *rationv1.LeasedBucket
	for _, b := range h.acquire("dm", "w1", 1) {
		leasedBucket = b
	}
	pendingIDs := []string{"p1", "p2"}
	if leasedBucket.Items[0] == "p1" || leasedBucket.Items[0] == "p2" {
		pendingIDs = []string{"l1", "l2"}
	}
	a := h.add("dm", 0, "p1", "p2", "l1", "l2", "new", "new")
	if a.Added != 1 || a.Skipped != 5 || a.Raised != 0 {
		t.Fatalf("re-add: %v", a)
	}
	a = h.add("dm", 9, pendingIDs[0], leasedBucket.Items[0])
	if a.Raised != 1 || a.Added != 0 || a.Skipped != 2 {
		t.Fatalf("raise: %v", a)
	}
	v, _ := h.f.State().Item("dm", pendingIDs[0])
	if v.Priority != 9 || v.State != pending {
		t.Fatalf("raised item: %+v", v)
	}
	// The raised item is served first.
	if b := h.acquire("dm", "w1", 1)[0]; b.Items[0] != pendingIDs[0] {
		t.Fatalf("served %v first", b.Items)
	}
	// A lower priority never lowers.
	h.add("dm", -5, pendingIDs[1])
	if v, _ := h.f.State().Item("dm", pendingIDs[1]); v.Priority != 0 {
		t.Fatalf("priority lowered to %d", v.Priority)
	}
}

func TestFSM_AddItemsRerunKeepsHistory(t *testing.T) {
	h := setup(t, &rationv1.ServiceConfig{BucketSize: 1}, 1, "w1")
	b := h.acquire("dm", "w1", 1)[0]
	h.submitAll("w1", b, "DM")
	if a := h.add("dm", 0, "u00000"); a.Skipped != 1 {
		t.Fatalf("done item re-added without rerun: %v", a)
	}
	if a := h.must(&rationv1.AddItemsRequest{Service: "dm", Items: []string{"u00000"}, Rerun: true}).GetAddItems(); a.Added != 1 {
		t.Fatalf("rerun: %v", a)
	}
	b = h.acquire("dm", "w1", 1)[0]
	h.submitAll("w1", b, "NON_DM")
	rs := h.f.State().Results("dm", 0, 10)
	if len(rs) != 2 || first(rs[0]).Verdict != "DM" || first(rs[1]).Verdict != "NON_DM" {
		t.Fatalf("history: %+v", rs)
	}
	v, _ := h.f.State().Item("dm", "u00000")
	if v.Result.Verdict != "NON_DM" {
		t.Fatalf("current result %+v", v.Result)
	}
}

func TestFSM_AddItemsLimits(t *testing.T) {
	h := setup(t, &rationv1.ServiceConfig{MaxItemsPerAdd: 5}, 0)
	h.refuse(&rationv1.AddItemsRequest{Service: "dm", Items: ids("x", 6)}, ErrLimitExceeded)
	h.add("dm", 0, ids("x", 5)...)
	h.refuse(&rationv1.AddItemsRequest{Service: "dm"}, ErrInvalidArgument)
	h.refuse(&rationv1.AddItemsRequest{Service: "dm", Items: []string{"ok", ""}}, ErrInvalidArgument)
	h.refuse(&rationv1.AddItemsRequest{Service: "dm", Items: []string{"ok", "a\x00b"}}, ErrInvalidArgument)
	h.refuse(&rationv1.AddItemsRequest{Service: "dm", Items: []string{strings.Repeat("9", MaxIDLength+1)}}, ErrInvalidArgument)
	h.refuse(&rationv1.AddItemsRequest{Service: "dm", Items: []string{"p"}, Priority: MaxPriority + 1}, ErrInvalidArgument)
	h.refuse(&rationv1.AddItemsRequest{Service: "dm", Items: []string{"p"}, Priority: MinPriority - 1}, ErrInvalidArgument)
	h.add("dm", MaxPriority, "max")
	h.add("dm", MinPriority, "min")
	h.add("dm", 0, strings.Repeat("9", MaxIDLength))
	h.refuse(&rationv1.AddItemsRequest{Service: "nope", Items: []string{"p"}}, ErrServiceNotFound)
	// A refused add leaves no item behind.
	if _, ok := h.f.State().Item("dm", "ok"); ok {
		t.Fatal("a refused add stored an item")
	}
}

func TestFSM_RevertWorker(t *testing.T) {
	h := setup(t, &rationv1.ServiceConfig{BucketSize: 2}, 6, "bad", "good")
	b1 := h.acquire("dm", "bad", 1)[0]
	h.submitAll("bad", b1, "DM")
	h.advance(time.Hour)
	since := h.now
	b2 := h.acquire("dm", "bad", 1)[0]
	h.submitAll("bad", b2, "DM")
	b3 := h.acquire("dm", "good", 1)[0]
	h.submitAll("good", b3, "DM")

	r := h.must(&rationv1.RevertWorkerRequest{Service: "dm", WorkerId: "bad", Since: ts(since)}).GetRevertWorker()
	if r.Reverted != 2 || r.Requeued != 2 {
		t.Fatalf("revert: %v", r)
	}
	for _, id := range b2.Items {
		if st := h.itemState("dm", id); st != pending {
			t.Fatalf("reverted item %s: %v", id, st)
		}
	}
	for _, id := range append(b1.Items, b3.Items...) {
		if st := h.itemState("dm", id); st != itemDone {
			t.Fatalf("item %s outside the revert: %v", id, st)
		}
	}
	// Reverting again finds nothing new; the history keeps the reverted results.
	if r := h.must(&rationv1.RevertWorkerRequest{Service: "dm", WorkerId: "bad", Since: ts(since)}).GetRevertWorker(); r.Reverted != 0 {
		t.Fatalf("second revert: %v", r)
	}
	var reverted int
	for _, rb := range h.f.State().Results("dm", 0, 10) {
		for _, x := range rb.All() {
			if x.RevertedAt != 0 {
				reverted++
			}
		}
	}
	if reverted != 2 {
		t.Fatalf("%d reverted results in history, want 2", reverted)
	}
	reg, _ := h.f.State().Registration("dm", "bad")
	if reg.Counters.ResultsReverted != 2 {
		t.Fatalf("counter %d", reg.Counters.ResultsReverted)
	}
	h.refuse(&rationv1.RevertWorkerRequest{Service: "dm", WorkerId: "bad"}, ErrInvalidArgument)
	h.refuse(&rationv1.RevertWorkerRequest{Service: "dm", WorkerId: "nobody", Since: ts(since)}, ErrNotRegistered)
}

func TestFSM_RevertSkipsItemsDoneAgain(t *testing.T) {
	h := setup(t, &rationv1.ServiceConfig{BucketSize: 1}, 1, "bad", "good")
	h.submitAll("bad", h.acquire("dm", "bad", 1)[0], "DM")
	h.must(&rationv1.AddItemsRequest{Service: "dm", Items: []string{"u00000"}, Rerun: true})
	h.submitAll("good", h.acquire("dm", "good", 1)[0], "NON_DM")
	r := h.must(&rationv1.RevertWorkerRequest{Service: "dm", WorkerId: "bad", Since: ts(t0)}).GetRevertWorker()
	if r.Reverted != 1 || r.Requeued != 0 {
		t.Fatalf("revert: %v", r)
	}
	if v, _ := h.f.State().Item("dm", "u00000"); v.State != itemDone || v.Result.Verdict != "NON_DM" {
		t.Fatalf("item: %+v", v)
	}
}

func TestFSM_Kinds(t *testing.T) {
	h := newHarness(t)
	h.createService("fol", "followers", nil)
	h.createService("gen", "generic", &rationv1.ServiceConfig{Verdicts: []string{"SPAM", "HAM"}, MaxPayloadBytes: 8, BucketSize: 10})
	for _, s := range []string{"fol", "gen"} {
		h.register(s, "w1")
		h.add(s, 0, ids("i", 10)...)
	}
	fb := h.acquire("fol", "w1", 1)[0]
	sub := func(b *rationv1.LeasedBucket, verdict, payload string) *rationv1.SubmitRequest {
		return &rationv1.SubmitRequest{WorkerId: "w1", BucketId: b.Id, Epoch: b.Lease.Epoch,
			Results: []*rationv1.ResultInput{{Item: b.Items[0], Verdict: verdict, Payload: payload}}}
	}
	for _, bad := range [][2]string{{"OK", ""}, {"OK", "[1,2]"}, {"OK", `["12a"]`}, {"OK", "null"}, {"NOT_FOUND", `["1"]`}, {"DM", `[]`}} {
		h.refuse(sub(fb, bad[0], bad[1]), ErrInvalidResult)
	}
	h.must(sub(fb, "OK", `["12","345678901234567890"]`))
	gb := h.acquire("gen", "w1", 1)[0]
	h.refuse(sub(gb, "EGGS", ""), ErrInvalidResult)
	h.refuse(sub(gb, "SPAM", "123456789"), ErrInvalidResult)
	h.must(sub(gb, "SPAM", "12345678"))
}

// first returns a batch's first result.
func first(rb *ResultBatch) Result {
	for _, r := range rb.All() {
		return r
	}
	return Result{}
}
