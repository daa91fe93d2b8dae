package fsm

import (
	"bytes"
	"strings"
	"testing"
	"time"

	rationv1 "github.com/rationhq/ration/api/ration/v1"
)

// The registration cases of the original design's test list.
func TestFSM_Registration(t *testing.T) {
	t.Run("first registration succeeds", func(t *testing.T) {
		h := newHarness(t)
		h.createService("dm", "dmcheck", nil)
		r := h.must(&rationv1.RegisterRequest{Service: "dm", WorkerId: "123", Name: "alice"}).GetRegister()
		if !r.Changed {
			t.Fatal("first registration reported no change")
		}
		reg, ok := h.f.State().Registration("dm", "123")
		if !ok || !reg.Active() || reg.Name != "alice" {
			t.Fatalf("registration: %+v", reg)
		}
	})
	t.Run("again without unregistering changes nothing", func(t *testing.T) {
		h := newHarness(t)
		h.createService("dm", "dmcheck", nil)
		h.register("dm", "123")
		before, _ := h.f.State().Registration("dm", "123")
		h.advance(time.Minute)
		r := h.must(&rationv1.RegisterRequest{Service: "dm", WorkerId: "123", Name: "other"}).GetRegister()
		after, _ := h.f.State().Registration("dm", "123")
		if r.Changed || after.Name != before.Name || after.RegisteredAt != before.RegisteredAt || !after.Active() {
			t.Fatalf("repeat registration changed it: %+v -> %+v", before, after)
		}
	})
	t.Run("again after unregistering succeeds", func(t *testing.T) {
		h := newHarness(t)
		h.createService("dm", "dmcheck", nil)
		h.register("dm", "123")
		h.must(&rationv1.UnregisterRequest{Service: "dm", WorkerId: "123"})
		if reg, _ := h.f.State().Registration("dm", "123"); reg.Active() {
			t.Fatal("still active after unregister")
		}
		h.refuse(&rationv1.AcquireRequest{Service: "dm", WorkerId: "123"}, ErrWorkerInactive)
		if !h.must(&rationv1.RegisterRequest{Service: "dm", WorkerId: "123"}).GetRegister().Changed {
			t.Fatal("re-registration reported no change")
		}
	})
	t.Run("no details is refused", func(t *testing.T) {
		h := newHarness(t)
		h.createService("dm", "dmcheck", nil)
		h.refuse(&rationv1.RegisterRequest{Service: "dm"}, ErrInvalidArgument)
		h.refuse(&rationv1.RegisterRequest{WorkerId: "1"}, ErrInvalidArgument)
	})
	t.Run("wrong details are refused", func(t *testing.T) {
		h := newHarness(t)
		h.createService("dm", "dmcheck", nil)
		for _, id := range []string{"a b", "tab\t", "nl\n", strings.Repeat("x", MaxIDLength+1), "\u200bzero-width\u0085"} {
			h.refuse(&rationv1.RegisterRequest{Service: "dm", WorkerId: id}, ErrInvalidArgument)
		}
		h.refuse(&rationv1.RegisterRequest{Service: "nope", WorkerId: "1"}, ErrServiceNotFound)
		h.refuse(&rationv1.RegisterRequest{Service: "dm", WorkerId: "1", Name: "bell\a"}, ErrInvalidArgument)
		h.must(&rationv1.RegisterRequest{Service: "dm", WorkerId: strings.Repeat("x", MaxIDLength)})
	})
	t.Run("without a secret is refused", func(t *testing.T) {
		h := newHarness(t)
		h.createService("dm", "dmcheck", nil)
		r := h.applyAs(&rationv1.RegisterRequest{Service: "dm", WorkerId: "1"}, "1", nil, "")
		if Reason(ResultError(r)) != ErrNoCredential.Reason {
			t.Fatalf("got %v", ResultError(r))
		}
	})
	t.Run("another secret for a bound id is refused", func(t *testing.T) {
		h := newHarness(t)
		h.createService("dm", "dmcheck", nil)
		h.register("dm", "123")
		r := h.applyAs(&rationv1.RegisterRequest{Service: "dm", WorkerId: "123"}, "123", secret("mallory"), "")
		if Reason(ResultError(r)) != ErrBadCredential.Reason {
			t.Fatalf("got %v", ResultError(r))
		}
		w, _ := h.f.State().Worker("123")
		if !bytes.Equal(w.SecretHash, secret("123")) {
			t.Fatal("binding changed")
		}
		reg, _ := h.f.State().Registration("dm", "123")
		if reg.Counters.Rejected != 0 {
			t.Fatal("an impostor's attempt was counted against the worker")
		}
	})
	t.Run("unregister with wrong details is refused", func(t *testing.T) {
		h := newHarness(t)
		h.createService("dm", "dmcheck", nil)
		h.register("dm", "123")
		h.refuse(&rationv1.UnregisterRequest{Service: "dm", WorkerId: "999"}, ErrWorkerNotFound)
		h.refuse(&rationv1.UnregisterRequest{Service: "nope", WorkerId: "123"}, ErrServiceNotFound)
		r := h.applyAs(&rationv1.UnregisterRequest{Service: "dm", WorkerId: "123"}, "123", secret("mallory"), "")
		if Reason(ResultError(r)) != ErrBadCredential.Reason {
			t.Fatalf("got %v", ResultError(r))
		}
		if reg, _ := h.f.State().Registration("dm", "123"); !reg.Active() {
			t.Fatal("a refused unregister deactivated the worker")
		}
	})
	t.Run("a registration flood affects no other worker", func(t *testing.T) {
		h := newHarness(t)
		h.createService("dm", "dmcheck", &rationv1.ServiceConfig{BucketSize: 1})
		h.register("dm", "good")
		h.add("dm", 0, "a", "b")
		bs := h.acquire("dm", "good", 1)
		before, _ := h.f.State().Registration("dm", "good")
		for range 500 {
			h.register("dm", "flooder")
		}
		after, _ := h.f.State().Registration("dm", "good")
		if before != after {
			t.Fatalf("the flood changed another worker's registration: %+v -> %+v", before, after)
		}
		h.submitAll("good", bs[0], "DM")
	})
}

func TestFSM_SameIDWorkersAreOne(t *testing.T) {
	h := newHarness(t)
	h.createService("dm", "dmcheck", &rationv1.ServiceConfig{BucketSize: 2})
	// Two processes register with the same id and secret: one worker.
	h.register("dm", "shared")
	h.register("dm", "shared")
	if n := len(h.f.State().Registrations("dm", "", 10)); n != 1 {
		t.Fatalf("%d registrations, want 1", n)
	}
	h.add("dm", 0, ids("u", 4)...)
	a := h.acquire("dm", "shared", 1) // process A
	b := h.acquire("dm", "shared", 1) // process B
	// Either process may submit for the shared id.
	h.submitAll("shared", b[0], "DM")
	// Both update the same bucket: the second is refused (the lease is over).
	h.submitAll("shared", a[0], "DM")
	h.refuse(&rationv1.SubmitRequest{WorkerId: "shared", BucketId: a[0].Id, Epoch: a[0].Lease.Epoch, Results: results(a[0], "NON_DM")}, ErrLeaseLost)
	// One unregisters while the other works: the other's submit is refused.
	h.add("dm", 0, "x", "y")
	c := h.acquire("dm", "shared", 1)
	h.must(&rationv1.UnregisterRequest{Service: "dm", WorkerId: "shared"})
	h.refuse(&rationv1.SubmitRequest{WorkerId: "shared", BucketId: c[0].Id, Epoch: c[0].Lease.Epoch, Results: results(c[0], "DM")}, ErrLeaseLost)
	for _, id := range c[0].Items {
		if st := h.itemState("dm", id); st != pending {
			t.Fatalf("item %s is %v after unregister, want pending", id, st)
		}
	}
}

func TestFSM_OwnerDeactivationIsSticky(t *testing.T) {
	h := newHarness(t)
	h.createService("dm", "dmcheck", &rationv1.ServiceConfig{BucketSize: 1})
	h.register("dm", "w1")
	h.add("dm", 0, "a")
	bs := h.acquire("dm", "w1", 1)
	r := h.must(&rationv1.DeactivateWorkerRequest{Service: "dm", WorkerId: "w1", Reason: "bad verdicts"}).GetDeactivateWorker()
	if r.LeasesEnded != 1 {
		t.Fatalf("leases ended %d, want 1", r.LeasesEnded)
	}
	if st := h.itemState("dm", "a"); st != pending {
		t.Fatalf("item after deactivation: %v", st)
	}
	h.refuse(&rationv1.SubmitRequest{WorkerId: "w1", BucketId: bs[0].Id, Epoch: bs[0].Lease.Epoch, Results: results(bs[0], "DM")}, ErrLeaseLost)
	h.refuse(&rationv1.RegisterRequest{Service: "dm", WorkerId: "w1"}, ErrWorkerDeactivated)
	h.refuse(&rationv1.AcquireRequest{Service: "dm", WorkerId: "w1"}, ErrWorkerDeactivated)
	h.must(&rationv1.ReactivateWorkerRequest{Service: "dm", WorkerId: "w1"})
	if got := h.acquire("dm", "w1", 1); len(got) != 1 {
		t.Fatalf("after reactivation acquired %d", len(got))
	}
	h.refuse(&rationv1.DeactivateWorkerRequest{Service: "dm", WorkerId: "nobody"}, ErrNotRegistered)
}

func TestFSM_IdleWorkersAreDeactivated(t *testing.T) {
	h := newHarness(t)
	h.createService("dm", "dmcheck", &rationv1.ServiceConfig{BucketSize: 1, WorkerInactiveAfter: dur(time.Hour), LeaseTtl: dur(3 * time.Hour)})
	h.register("dm", "idle")
	h.register("dm", "busy")
	h.add("dm", 0, "a", "b")
	h.acquire("dm", "idle", 1)
	for range 4 {
		h.advance(20 * time.Minute)
		h.acquire("dm", "busy", 1) // busy keeps being seen, even with nothing to get
		h.tick()
	}
	idle, _ := h.f.State().Registration("dm", "idle")
	busy, _ := h.f.State().Registration("dm", "busy")
	if idle.Active() || idle.Reason != "idle" || idle.Held != 0 {
		t.Fatalf("idle worker: %+v", idle)
	}
	if !busy.Active() {
		t.Fatalf("busy worker deactivated: %+v", busy)
	}
	// Registering again reactivates a worker the system deactivated.
	if !h.must(&rationv1.RegisterRequest{Service: "dm", WorkerId: "idle"}).GetRegister().Changed {
		t.Fatal("re-registration did not reactivate")
	}
	acts := h.f.State().Activity(ActivityQuery{Worker: "idle", Action: ActIdle, Limit: 10})
	if len(acts) != 1 || acts[0].Actor != "system" {
		t.Fatalf("idle activity: %+v", acts)
	}
}
