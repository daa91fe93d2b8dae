package fsm

import (
	"testing"

	rationv1 "github.com/rationhq/ration/api/ration/v1"
)

func TestFSM_WorkerLoop(t *testing.T) {
	h := newHarness(t)
	h.createService("dm", "dmcheck", &rationv1.ServiceConfig{BucketSize: 3})
	h.register("dm", "w1")
	add := h.add("dm", 0, ids("u", 7)...)
	if add.Added != 7 || add.Buckets != 3 {
		t.Fatalf("add: %v", add)
	}
	bs := h.acquire("dm", "w1", 2)
	if len(bs) != 2 {
		t.Fatalf("acquired %d buckets, want 2", len(bs))
	}
	res := h.submitAll("w1", bs[0], "DM")
	if res.Accepted != uint32(len(bs[0].Items)) {
		t.Fatalf("submit: %v", res)
	}
	for _, id := range bs[0].Items {
		if st := h.itemState("dm", id); st != itemDone {
			t.Fatalf("item %s: %v", id, st)
		}
	}
	s, _ := h.f.State().Service("dm")
	t.Logf("service: items %v buckets %v counters %+v", s.Items, s.Buckets, s.Counters)
}
