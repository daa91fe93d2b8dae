package fsm

import (
	"strings"
	"testing"
	"time"

	rationv1 "github.com/rationhq/ration/api/ration/v1"
)

func TestFSM_CreateServiceFillsDefaults(t *testing.T) {
	h := newHarness(t)
	r := h.must(&rationv1.CreateServiceRequest{Name: "dm", Kind: "dmcheck"}).GetCreateService()
	c := r.GetConfig()
	if c.BucketSize != 180 || c.MaxBucketsPerAcquire != 10 || c.LeaseTtl.AsDuration() != 2*time.Hour ||
		c.ReleaseGrace.AsDuration() != 15*time.Minute || c.MaxAttempts != 5 || c.MaxItemsPerAdd != 18000 ||
		c.WorkerInactiveAfter.AsDuration() != 24*time.Hour || c.PriorityAging.AsDuration() != time.Minute ||
		c.MaxPayloadBytes != 1024 || c.MaxLeasesPerWorker != 100 {
		t.Fatalf("defaults: %v", c)
	}
	s, ok := h.f.State().Service("dm")
	if !ok || !s.Active() || s.Kind != "dmcheck" || s.CreatedAt != t0.UnixNano() {
		t.Fatalf("service: %+v", s)
	}
}

func TestFSM_CreateServiceRefusesBadInput(t *testing.T) {
	tests := []struct {
		name string
		req  *rationv1.CreateServiceRequest
		want *Error
	}{
		{"empty name", &rationv1.CreateServiceRequest{Kind: "dmcheck"}, ErrInvalidArgument},
		{"upper case", &rationv1.CreateServiceRequest{Name: "DM", Kind: "dmcheck"}, ErrInvalidArgument},
		{"65 chars", &rationv1.CreateServiceRequest{Name: strings.Repeat("a", 65), Kind: "dmcheck"}, ErrInvalidArgument},
		{"unknown kind", &rationv1.CreateServiceRequest{Name: "x", Kind: "nope"}, ErrUnknownKind},
		{"bucket too big", &rationv1.CreateServiceRequest{Name: "x", Kind: "dmcheck",
			Config: &rationv1.ServiceConfig{BucketSize: MaxBucketSize + 1}}, ErrInvalidConfig},
		{"lease too short", &rationv1.CreateServiceRequest{Name: "x", Kind: "dmcheck",
			Config: &rationv1.ServiceConfig{LeaseTtl: dur(time.Millisecond)}}, ErrInvalidConfig},
		{"negative grace", &rationv1.CreateServiceRequest{Name: "x", Kind: "dmcheck",
			Config: &rationv1.ServiceConfig{ReleaseGrace: dur(-time.Second)}}, ErrInvalidConfig},
		{"generic without verdicts", &rationv1.CreateServiceRequest{Name: "x", Kind: "generic"}, ErrInvalidConfig},
		{"dmcheck with verdicts", &rationv1.CreateServiceRequest{Name: "x", Kind: "dmcheck",
			Config: &rationv1.ServiceConfig{Verdicts: []string{"A"}}}, ErrInvalidConfig},
		{"payload limit", &rationv1.CreateServiceRequest{Name: "x", Kind: "generic",
			Config: &rationv1.ServiceConfig{Verdicts: []string{"A"}, MaxPayloadBytes: 1<<20 + 1}}, ErrInvalidConfig},
		{"too many per acquire", &rationv1.CreateServiceRequest{Name: "x", Kind: "dmcheck",
			Config: &rationv1.ServiceConfig{MaxBucketsPerAcquire: MaxBucketsPerAcquire + 1}}, ErrInvalidConfig},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := newHarness(t)
			h.refuse(tt.req, tt.want)
			if n := len(h.f.State().Services()); n != 0 {
				t.Fatalf("%d services after a refused create", n)
			}
		})
	}
}

func TestFSM_CreateServiceAtLimits(t *testing.T) {
	h := newHarness(t)
	h.createService(strings.Repeat("a", 64), "generic", &rationv1.ServiceConfig{
		Verdicts: []string{"A"}, MaxPayloadBytes: 1 << 20, BucketSize: MaxBucketSize,
		MaxBucketsPerAcquire: MaxBucketsPerAcquire, LeaseTtl: dur(MaxLeaseTTL), MaxAttempts: MaxAttemptsLimit,
		MaxItemsPerAdd: MaxItemsPerAddLimit, PriorityAging: dur(MaxPriorityAging), MaxLeasesPerWorker: MaxLeasesPerWorkerCap,
	})
	h.createService("b", "dmcheck", &rationv1.ServiceConfig{LeaseTtl: dur(MinLeaseTTL), PriorityAging: dur(MinPriorityAging),
		WorkerInactiveAfter: dur(MinWorkerInactive), BucketSize: 1, MaxAttempts: 1})
}

func TestFSM_CreateServiceTwiceIsRefused(t *testing.T) {
	h := newHarness(t)
	h.createService("dm", "dmcheck", nil)
	h.refuse(&rationv1.CreateServiceRequest{Name: "dm", Kind: "followers"}, ErrServiceExists)
	if s, _ := h.f.State().Service("dm"); s.Kind != "dmcheck" {
		t.Fatalf("kind changed to %q", s.Kind)
	}
}

func TestFSM_RevokeServiceStopsWorkAndKeepsHistory(t *testing.T) {
	h := newHarness(t)
	h.createService("dm", "dmcheck", &rationv1.ServiceConfig{BucketSize: 2})
	h.register("dm", "w1")
	h.add("dm", 0, ids("u", 6)...)
	bs := h.acquire("dm", "w1", 2)
	h.submitAll("w1", bs[0], "DM")

	r := h.must(&rationv1.RevokeServiceRequest{Name: "dm", Reason: "done for the year"}).GetRevokeService()
	if r.LeasesEnded != 1 {
		t.Fatalf("leases ended: %d, want 1", r.LeasesEnded)
	}
	h.refuse(&rationv1.RegisterRequest{Service: "dm", WorkerId: "w2"}, ErrServiceRevoked)
	h.refuse(&rationv1.AcquireRequest{Service: "dm", WorkerId: "w1"}, ErrServiceRevoked)
	h.refuse(&rationv1.AddItemsRequest{Service: "dm", Items: []string{"new"}}, ErrServiceRevoked)
	// The lease was ended, so the late submit is refused and stores nothing.
	h.refuse(&rationv1.SubmitRequest{WorkerId: "w1", BucketId: bs[1].Id, Epoch: bs[1].Lease.Epoch, Results: results(bs[1], "DM")}, ErrLeaseLost)

	st := h.f.State()
	if got := len(st.Results("dm", 0, 10)); got != 1 {
		t.Fatalf("results readable after revoke: %d, want 1", got)
	}
	if got := len(st.Activity(ActivityQuery{Service: "dm", Limit: 100})); got < 5 {
		t.Fatalf("activity after revoke: %d records", got)
	}
	if s, _ := st.Service("dm"); s.Active() || s.Reason != "done for the year" {
		t.Fatalf("service after revoke: %+v", s)
	}

	h.must(&rationv1.ReinstateServiceRequest{Name: "dm"})
	got := h.acquire("dm", "w1", 10)
	if len(got) != 2 {
		t.Fatalf("after reinstate acquired %d buckets, want the 2 left", len(got))
	}
}

func TestFSM_RevokeIsIdempotent(t *testing.T) {
	h := newHarness(t)
	h.createService("dm", "dmcheck", nil)
	h.must(&rationv1.RevokeServiceRequest{Name: "dm"})
	h.must(&rationv1.RevokeServiceRequest{Name: "dm"})
	h.must(&rationv1.ReinstateServiceRequest{Name: "dm"})
	h.must(&rationv1.ReinstateServiceRequest{Name: "dm"})
	h.refuse(&rationv1.RevokeServiceRequest{Name: "nope"}, ErrServiceNotFound)
}

func TestFSM_UpdateServiceAppliesToNewWork(t *testing.T) {
	h := newHarness(t)
	h.createService("dm", "dmcheck", &rationv1.ServiceConfig{BucketSize: 5})
	h.register("dm", "w1")
	h.add("dm", 0, ids("a", 5)...)
	h.must(&rationv1.UpdateServiceRequest{Name: "dm", Config: &rationv1.ServiceConfig{BucketSize: 2, PriorityAging: dur(time.Hour),
		WorkerInactiveAfter: dur(time.Hour)}})
	add := h.add("dm", 0, ids("b", 4)...)
	if add.Buckets != 2 {
		t.Fatalf("after resize, 4 items made %d buckets, want 2", add.Buckets)
	}
	bs := h.acquire("dm", "w1", 10)
	sizes := map[int]int{}
	for _, b := range bs {
		sizes[len(b.Items)]++
	}
	if len(bs) != 3 || sizes[5] != 1 || sizes[2] != 2 {
		t.Fatalf("acquired buckets of sizes %v, want one of 5 (packed before) and two of 2", sizes)
	}
	h.refuse(&rationv1.UpdateServiceRequest{Name: "dm", Config: &rationv1.ServiceConfig{BucketSize: MaxBucketSize + 1}}, ErrInvalidConfig)
}
