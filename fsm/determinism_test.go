package fsm

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"

	statev1 "github.com/rationhq/ration/api/ration/state/v1"
	rationv1 "github.com/rationhq/ration/api/ration/v1"
)

func TestFSM_RetriedRequestTakesEffectOnce(t *testing.T) {
	h := setup(t, &rationv1.ServiceConfig{BucketSize: 2}, 10, "w1")
	acq := &rationv1.AcquireRequest{Service: "dm", WorkerId: "w1", MaxBuckets: 2}
	first := h.applyAs(acq, "w1", secret("w1"), "req-1")
	before := h.stateBytes()
	h.advance(time.Second)
	again := h.applyAs(acq, "w1", secret("w1"), "req-1")
	if !proto.Equal(first, again) {
		t.Fatalf("retry answered %v, first answer %v", again, first)
	}
	if !bytes.Equal(before, h.stateBytes()) {
		t.Fatal("a retried acquire changed the state")
	}
	// The same id with another body is refused and changes nothing.
	other := h.applyAs(&rationv1.AcquireRequest{Service: "dm", WorkerId: "w1", MaxBuckets: 3}, "w1", secret("w1"), "req-1")
	if Reason(ResultError(other)) != ErrRequestIDReused.Reason {
		t.Fatalf("reused id: %v", ResultError(other))
	}
	h.assertOnlyActivityChanged(before)
	// A refused command's answer is remembered too.
	bad := &rationv1.SubmitRequest{WorkerId: "w1", BucketId: 999, Epoch: 1, Results: []*rationv1.ResultInput{{Item: "x", Verdict: "DM"}}}
	e1 := h.applyAs(bad, "w1", secret("w1"), "req-2")
	e2 := h.applyAs(bad, "w1", secret("w1"), "req-2")
	if !proto.Equal(e1, e2) || ResultError(e1) == nil {
		t.Fatalf("refused retry: %v then %v", e1, e2)
	}
	// Request ids are scoped to their sender: another worker's "req-1" is its own.
	h.register("dm", "w2")
	if r := h.applyAs(&rationv1.AcquireRequest{Service: "dm", WorkerId: "w2", MaxBuckets: 1}, "w2", secret("w2"), "req-1"); ResultError(r) != nil || len(r.GetAcquire().GetBuckets()) != 1 {
		t.Fatalf("w2's req-1: %v", r)
	}
	// Request ids are forgotten after the retention.
	h.advance(time.Hour)
	if r := h.must(&statev1.Tick{RequestRetention: int64(30 * time.Minute)}).GetTick(); r.RequestsTrimmed != 3 {
		t.Fatalf("trimmed %d request ids, want 3", r.RequestsTrimmed)
	}
}

// script is a command sequence touching every operation, used by the
// determinism, snapshot and golden tests.
func script(h *harness) {
	h.must(&statev1.SetNode{NodeId: "n1", ApiAddress: "127.0.0.1:7070"})
	h.createService("dm", "dmcheck", &rationv1.ServiceConfig{BucketSize: 3, LeaseTtl: dur(time.Hour), MaxAttempts: 2})
	h.createService("fol", "followers", nil)
	h.createService("gen", "generic", &rationv1.ServiceConfig{Verdicts: []string{"A", "B"}})
	for _, w := range []string{"w1", "w2", "w3"} {
		h.register("dm", w)
	}
	h.register("fol", "w1")
	h.add("dm", 0, ids("d", 20)...)
	h.add("dm", 5, ids("p", 4)...)
	h.add("fol", 0, ids("f", 5)...)
	h.advance(time.Minute)
	a := h.acquire("dm", "w1", 3)
	b := h.acquire("dm", "w2", 2)
	h.acquire("dm", "w3", 1)
	h.submitAll("w1", a[0], "DM")
	h.must(&rationv1.SubmitRequest{WorkerId: "w1", BucketId: a[1].Id, Epoch: a[1].Lease.Epoch,
		Results: []*rationv1.ResultInput{{Item: a[1].Items[0], Verdict: "UNKNOWN", Payload: "gone"}}})
	h.must(&rationv1.ReleaseRequest{WorkerId: "w2", BucketId: b[0].Id, Epoch: b[0].Lease.Epoch})
	h.refuse(&rationv1.SubmitRequest{WorkerId: "w3", BucketId: a[2].Id, Epoch: a[2].Lease.Epoch, Results: results(a[2], "DM")}, ErrNotHolder)
	fb := h.acquire("fol", "w1", 1)[0]
	h.must(&rationv1.SubmitRequest{WorkerId: "w1", BucketId: fb.Id, Epoch: fb.Lease.Epoch,
		Results: []*rationv1.ResultInput{{Item: fb.Items[0], Verdict: "OK", Payload: `["1","2"]`}}})
	h.must(&statev1.HeartbeatBatch{Entries: []*statev1.HeartbeatEntry{{Request: &rationv1.HeartbeatRequest{WorkerId: "w2",
		Buckets: []*rationv1.BucketRef{{Id: b[1].Id, Epoch: b[1].Lease.Epoch}}}}}})
	h.applyAs(&rationv1.AcquireRequest{Service: "dm", WorkerId: "w2", MaxBuckets: 1}, "w2", secret("w2"), "rid-1")
	h.advance(61 * time.Minute)
	h.tick()
	h.advance(16 * time.Minute)
	h.tick()
	h.must(&rationv1.RevertWorkerRequest{Service: "dm", WorkerId: "w1", Since: ts(t0)})
	h.must(&rationv1.DeactivateWorkerRequest{Service: "dm", WorkerId: "w3", Reason: "test"})
	h.must(&rationv1.RevokeServiceRequest{Name: "gen", Reason: "unused"})
	h.must(&rationv1.UpdateServiceRequest{Name: "fol", Config: &rationv1.ServiceConfig{BucketSize: 7, PriorityAging: dur(time.Hour)}})
	h.must(&statev1.CommandBatch{Commands: []*statev1.Command{
		h.command(&rationv1.AddItemsRequest{Service: "fol", Items: ids("g", 3)}, "admin", nil, ""),
		h.command(&rationv1.AcquireRequest{Service: "fol", WorkerId: "w1", MaxBuckets: 5}, "w1", secret("w1"), ""),
	}})
}

// validationScript drives a service that validates its results: replicas,
// adaptive trust, canaries, disagreement, inconclusive items and an
// automatic deactivation, each drawing on the commands' seeds.
func validationScript(h *harness) {
	h.upgrade()
	h.createService("val", "dmcheck", &rationv1.ServiceConfig{BucketSize: 4, Validation: &rationv1.ValidationPolicy{
		Replicas: 2, MaxReplicas: 4, Adaptive: true, TrustAfter: 4, CanaryRate: 250, CanaryFailuresToDeactivate: 2}})
	var cs []*rationv1.Canary
	for _, id := range ids("c", 6) {
		cs = append(cs, &rationv1.Canary{Item: id, Verdict: "DM"})
	}
	h.must(&rationv1.AddCanariesRequest{Service: "val", Canaries: cs})
	workers := []string{"v1", "v2", "v3", "v4", "v5"}
	for _, w := range workers {
		h.register("val", w)
	}
	h.add("val", 0, ids("x", 40)...)
	answers := []string{"DM", "DM", "DM", "NON_DM", "UNKNOWN"}
	for round := range 60 {
		w := workers[round%len(workers)]
		r := h.apply(&rationv1.AcquireRequest{Service: "val", WorkerId: w, MaxBuckets: 1})
		for _, b := range r.GetAcquire().GetBuckets() {
			res := results(b, "DM")
			for i, in := range res {
				in.Verdict = answers[(round+i)%len(answers)]
			}
			h.apply(&rationv1.SubmitRequest{WorkerId: w, BucketId: b.Id, Epoch: b.Lease.Epoch, Results: res})
		}
		h.advance(time.Second)
	}
}

func TestFSM_SameLogSameBytes(t *testing.T) {
	for name, run := range map[string]func(*harness){"script": script, "validation": validationScript} {
		t.Run(name, func(t *testing.T) {
			h1, h2 := newHarness(t), newHarness(t)
			run(h1)
			run(h2)
			s1, s2 := h1.snapshot(), h2.snapshot()
			if !bytes.Equal(s1, s2) {
				t.Fatal("two state machines fed the same commands wrote different snapshots")
			}
			// Replaying the same log bytes through ApplyBatch gives the same bytes too.
			h3 := newHarness(t)
			h3.check = false
			h3.f.ApplyBatch(captureLog(t, run))
			if !bytes.Equal(s1, h3.snapshot()) {
				t.Fatal("ApplyBatch of the same log wrote a different snapshot")
			}
			h1.restored()
			if s, ok := h1.f.State().Service("val"); ok {
				c := s.Counters
				if c.ResultsValidated == 0 || c.ResultsDisagreed == 0 || c.ItemsInconclusive == 0 || c.CanariesPassed == 0 || c.CanariesFailed == 0 {
					t.Fatalf("the validation script missed a case: %+v", c)
				}
			}
		})
	}
}

// replayLog re-runs script, capturing the raw log entries.
func replayLog(t *testing.T) []*rawEntry { return captureLog(t, script) }

// captureLog runs a script, capturing the raw log entries.
func captureLog(t *testing.T, run func(*harness)) []*rawEntry {
	h := newHarness(t)
	h.check = false
	var logs []*rawEntry
	h.capture = func(e *rawEntry) { logs = append(logs, e) }
	run(h)
	return logs
}

func TestFSM_SnapshotRoundTrip(t *testing.T) {
	h := newHarness(t)
	script(h)
	b := h.snapshot()
	f := New(nil)
	if err := f.Restore(io.NopCloser(bytes.NewReader(b))); err != nil {
		t.Fatal(err)
	}
	var again bytes.Buffer
	if err := f.State().WriteSnapshot(&again); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(b, again.Bytes()) {
		t.Fatal("snapshot -> restore -> snapshot changed the bytes")
	}
	if err := f.State().CheckInvariants(); err != nil {
		t.Fatal(err)
	}
	// The restored machine goes on exactly as the original does.
	h2 := &harness{t: t, f: f, index: h.index, now: h.now, seed: h.seed, check: true}
	h.add("dm", 0, "after")
	h2.add("dm", 0, "after")
	if !bytes.Equal(h.snapshot(), h2.snapshot()) {
		t.Fatal("a restored state machine diverged on the next command")
	}
}

func TestFSM_RestoreRefusesCorruptSnapshots(t *testing.T) {
	h := newHarness(t)
	script(h)
	good := h.snapshot()
	cases := map[string][]byte{
		"empty":          nil,
		"bad magic":      append([]byte("NOTASNAP"), good[8:]...),
		"future version": append(append([]byte{}, good[:8]...), append([]byte{0, 0, 0, 99}, good[12:]...)...),
		"truncated":      good[:len(good)/2],
		"huge length":    append(append([]byte{}, good[:12]...), 0xff, 0xff, 0xff, 0xff, 0x0f),
		"no meta":        good[:12],
	}
	for name, b := range cases {
		t.Run(name, func(t *testing.T) {
			f := New(nil)
			h2 := newHarness(t)
			h2.f = f
			h2.createService("keep", "dmcheck", nil)
			if err := f.Restore(io.NopCloser(bytes.NewReader(b))); err == nil {
				t.Fatal("restore accepted a corrupt snapshot")
			}
			if _, ok := f.State().Service("keep"); !ok {
				t.Fatal("a failed restore lost the current state")
			}
		})
	}
}

// golden returns the golden snapshot file of a format version.
func golden(version int) string {
	return filepath.Join("..", "testdata", "snapshots", fmt.Sprintf("v%d.snap", version))
}

// TestFSM_GoldenSnapshot keeps every released snapshot format readable: each
// file was written by the script above with its format version. Set
// RATION_UPDATE_GOLDEN=1 to write the current version's file, only when the
// format version changes; older files are never rewritten.
func TestFSM_GoldenSnapshot(t *testing.T) {
	if os.Getenv("RATION_UPDATE_GOLDEN") == "1" {
		h := newHarness(t)
		script(h)
		now := h.snapshot()
		if err := os.MkdirAll(filepath.Dir(golden(SnapshotVersion)), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(golden(SnapshotVersion), now, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	for v := OldestSnapshotVersion; v <= SnapshotVersion; v++ {
		file, err := os.ReadFile(golden(v))
		if err != nil {
			t.Fatal(err)
		}
		f := New(nil)
		if err := f.Restore(io.NopCloser(bytes.NewReader(file))); err != nil {
			t.Fatalf("the v%d golden snapshot no longer restores: %v", v, err)
		}
		if err := f.State().CheckInvariants(); err != nil {
			t.Fatal(err)
		}
		var again bytes.Buffer
		if err := f.State().WriteSnapshot(&again); err != nil {
			t.Fatal(err)
		}
		if v == SnapshotVersion && !bytes.Equal(file, again.Bytes()) {
			t.Fatal("restoring the current golden snapshot and writing it again changed the bytes")
		}
		if s, ok := f.State().Service("fol"); !ok || s.Config.BucketSize != 7 {
			t.Fatalf("v%d golden state lost its services: %+v", v, s)
		}
		// An old format, rewritten, is the current one and restores.
		if err := New(nil).Restore(io.NopCloser(bytes.NewReader(again.Bytes()))); err != nil {
			t.Fatalf("v%d golden rewritten in v%d: %v", v, SnapshotVersion, err)
		}
	}
}

// A snapshot cut at any record boundary is refused: the end record is
// missing, so the cut cannot pass for a smaller state.
func TestFSM_RestoreRefusesCutAtRecordBoundary(t *testing.T) {
	h := newHarness(t)
	script(h)
	snap := h.snapshot()
	cuts := 0
	for off := 12; off < len(snap); {
		size, n := binary.Uvarint(snap[off:])
		if n <= 0 {
			t.Fatalf("bad record length at %d", off)
		}
		off += n + int(size)
		if off == len(snap) {
			break
		}
		if err := New(nil).Restore(io.NopCloser(bytes.NewReader(snap[:off]))); err == nil {
			t.Fatalf("restore accepted the snapshot cut after %d of %d bytes", off, len(snap))
		}
		cuts++
	}
	if cuts < 10 {
		t.Fatalf("only %d record boundaries tried", cuts)
	}
}

// Past request_max_bytes the tick forgets the oldest request ids first, and
// at exactly the limit it forgets none.
func TestFSM_RequestIDsBoundedByBytes(t *testing.T) {
	h := setup(t, &rationv1.ServiceConfig{BucketSize: 2}, 10, "w1")
	acq := &rationv1.AcquireRequest{Service: "dm", WorkerId: "w1", MaxBuckets: 1}
	for _, id := range []string{"a", "b", "c"} {
		if r := h.applyAs(acq, "w1", secret("w1"), id); len(r.GetAcquire().GetBuckets()) != 1 {
			t.Fatalf("acquire %s: %v", id, r)
		}
	}
	costs := map[string]uint64{}
	var total uint64
	h.f.t.requests.Scan(func(r *request) bool {
		costs[r.Key[len(r.Key)-1:]] = r.cost()
		total += r.cost()
		return true
	})
	if len(costs) != 3 || total != h.f.t.meta.requestBytes {
		t.Fatalf("remembered %v, %d bytes counted, %d summed", costs, h.f.t.meta.requestBytes, total)
	}
	if r := h.must(&statev1.Tick{RequestMaxBytes: total}).GetTick(); r.RequestsTrimmed != 0 {
		t.Fatalf("at the limit the tick forgot %d request ids", r.RequestsTrimmed)
	}
	if r := h.must(&statev1.Tick{RequestMaxBytes: total - 1}).GetTick(); r.RequestsTrimmed != 1 {
		t.Fatalf("one byte past the limit the tick forgot %d request ids, want 1", r.RequestsTrimmed)
	}
	var left []string
	h.f.t.requests.Scan(func(r *request) bool {
		left = append(left, r.Key[len(r.Key)-1:])
		return true
	})
	if fmt.Sprint(left) != "[b c]" || h.f.t.meta.requestBytes != total-costs["a"] {
		t.Fatalf("left %v costing %d, want [b c] costing %d", left, h.f.t.meta.requestBytes, total-costs["a"])
	}
	if err := h.f.State().CheckInvariants(); err != nil {
		t.Fatal(err)
	}
}
