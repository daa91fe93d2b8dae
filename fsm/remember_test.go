package fsm

import (
	"testing"
	"time"

	statev1 "github.com/rationhq/ration/api/ration/state/v1"
	rationv1 "github.com/rationhq/ration/api/ration/v1"
)

func TestNumericID(t *testing.T) {
	for id, want := range map[string]bool{
		"0": true, "7": true, "1234567890123": true, "18446744073709551615": true,
		"18446744073709551616": false, "007": false, "": false, "-1": false, "+1": false, "1e3": false, "12a": false, " 1": false,
	} {
		if _, ok := numericID(id); ok != want {
			t.Errorf("numericID(%q) = %v, want %v", id, ok, want)
		}
	}
}

// Once its result is trimmed, a done item with a decimal id is remembered
// without an item record; it reads, de-duplicates, re-runs, refreshes and
// is forgotten as before, and survives a snapshot. Other ids keep their
// record.
func TestFSM_DoneItemsRemembered(t *testing.T) {
	h := setup(t, &rationv1.ServiceConfig{BucketSize: 3, ResultRetention: dur(0), DoneRetention: dur(time.Hour),
		RefreshAfter: dur(2 * time.Hour)}, 0, "w1")
	h.add("dm", 0, "1", "2", "3", "007", "x1", "18446744073709551615")
	for range 2 {
		h.submitAll("w1", h.acquire("dm", "w1", 1)[0], "DM")
	}
	last := h.f.State().Results("dm", 0, 10)[1].Seq
	h.must(&rationv1.AckResultsRequest{Service: "dm", ThroughSeq: last})
	if r := h.must(&statev1.Tick{TrimResults: true}).GetTick(); r.ResultsTrimmed != 2 {
		t.Fatalf("trim: %v", r)
	}
	st := h.f.State()
	if n := st.t.remember.Len(); n != 4 {
		t.Fatalf("%d items remembered, want 4 (1, 2, 3 and 2^64-1)", n)
	}
	for _, id := range []string{"1", "2", "3", "007", "x1", "18446744073709551615"} {
		if v, ok := st.Item("dm", id); !ok || v.State != itemDone {
			t.Fatalf("item %s: %+v %v", id, v, ok)
		}
		_, recorded := st.t.item(1, id)
		if _, numeric := numericID(id); recorded == numeric {
			t.Fatalf("item %s: recorded %v", id, recorded)
		}
	}
	if s, _ := st.Service("dm"); s.Items[itemDone] != 6 || s.Buckets[done] != 2 {
		t.Fatalf("counts: items %v buckets %v", s.Items, s.Buckets)
	}
	for _, b := range st.Buckets(BucketQuery{Service: "dm", State: done, Limit: 10}) {
		if ids := b.ItemIDs(); len(ids) != 3 {
			t.Fatalf("bucket %d lists %v", b.ID, ids)
		}
	}
	if e, _ := st.ExplainItem("dm", "2"); len(e.Lines) == 0 {
		t.Fatal("no explanation for a remembered item")
	}
	// Adding a remembered id skips it; re-running it queues it.
	if r := h.add("dm", 0, "1", "4"); r.Added != 1 || r.Skipped != 1 {
		t.Fatalf("adding a remembered id: %v", r)
	}
	if r := h.must(&rationv1.AddItemsRequest{Service: "dm", Items: []string{"2"}, Rerun: true}).GetAddItems(); r.Added != 1 {
		t.Fatalf("re-running a remembered id: %v", r)
	}
	if v, _ := h.f.State().Item("dm", "2"); v.State != pending {
		t.Fatalf("re-run item is %v", v.State)
	}
	// A snapshot holds the same state.
	h.restored()
	// After done_retention they are forgotten, and new again.
	h.advance(time.Hour)
	if r := h.must(&statev1.Tick{ForgetDone: true, RefreshDone: true}).GetTick(); r.ItemsForgotten != 5 || r.ItemsRefreshed != 0 {
		t.Fatalf("forget: %v", r)
	}
	if h.f.State().t.remember.Len() != 0 {
		t.Fatalf("%d items still remembered", h.f.State().t.remember.Len())
	}
	if r := h.add("dm", 0, "1", "3"); r.Added != 2 {
		t.Fatalf("adding forgotten ids: %v", r)
	}
}

// refresh_after queues remembered items again, at their bucket's priority.
func TestFSM_RememberedItemsRefresh(t *testing.T) {
	h := setup(t, &rationv1.ServiceConfig{BucketSize: 2, ResultRetention: dur(0), RefreshAfter: dur(time.Hour)}, 0, "w1")
	h.add("dm", 7, "10", "11")
	b := h.acquire("dm", "w1", 1)[0]
	h.submitAll("w1", b, "DM")
	h.must(&rationv1.AckResultsRequest{Service: "dm", ThroughSeq: h.f.State().Results("dm", 0, 1)[0].Seq})
	h.must(&statev1.Tick{TrimResults: true})
	if h.f.State().t.remember.Len() != 2 {
		t.Fatal("not remembered")
	}
	h.advance(time.Hour)
	if r := h.must(&statev1.Tick{RefreshDone: true}).GetTick(); r.ItemsRefreshed != 2 {
		t.Fatalf("refresh: %v", r)
	}
	for _, id := range []string{"10", "11"} {
		if v, _ := h.f.State().Item("dm", id); v.State != pending || v.Priority != 7 {
			t.Fatalf("item %s after refresh: %v priority %d", id, v.State, v.Priority)
		}
	}
}
