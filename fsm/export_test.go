package fsm

import (
	"bytes"
	"io"
	"testing"

	rationv1 "github.com/rationhq/ration/api/ration/v1"
)

// ackFixture is a service "dm" with three accepted submits of two results
// each, and the seqs of their result batches.
func ackFixture(t *testing.T) (*harness, []uint64) {
	h := setup(t, &rationv1.ServiceConfig{BucketSize: 2}, 6, "w1")
	var seqs []uint64
	for _, b := range h.acquire("dm", "w1", 3) {
		h.submitAll("w1", b, "DM")
		seqs = append(seqs, h.f.State().Results("dm", 0, 100)[len(seqs)].Seq)
	}
	return h, seqs
}

func exportOf(t *testing.T, h *harness) *rationv1.ExportPosition {
	t.Helper()
	s, ok := h.f.State().Service("dm")
	if !ok {
		t.Fatal("no service dm")
	}
	return s.ExportPosition()
}

func TestFSM_AckResultsMovesTheExportPosition(t *testing.T) {
	h, seqs := ackFixture(t)
	size := uint64(h.f.State().Results("dm", 0, 100)[0].Size())
	if p := exportOf(t, h); p.AckedThrough != 0 || p.LastSeq != seqs[2] || p.UnackedResults != 6 || p.UnackedBytes != 3*size {
		t.Fatalf("before any ack: %v", p)
	}
	r := h.must(&rationv1.AckResultsRequest{Service: "dm", ThroughSeq: seqs[0]}).GetAckResults().GetExport()
	if r.AckedThrough != seqs[0] || r.UnackedResults != 4 || r.UnackedBytes != 2*size {
		t.Fatalf("after acking the first batch: %v", r)
	}
	// A seq between batches acknowledges what is at or below it.
	r = h.must(&rationv1.AckResultsRequest{Service: "dm", ThroughSeq: seqs[2] - 1}).GetAckResults().GetExport()
	if r.AckedThrough != seqs[2]-1 || r.UnackedResults != 2 {
		t.Fatalf("after acking through %d: %v", seqs[2]-1, r)
	}
	// Less than before changes nothing and answers the position.
	before := h.stateBytes()
	r = h.must(&rationv1.AckResultsRequest{Service: "dm", ThroughSeq: seqs[0]}).GetAckResults().GetExport()
	if r.AckedThrough != seqs[2]-1 || r.UnackedResults != 2 {
		t.Fatalf("acking less: %v", r)
	}
	h.assertOnlyActivityChanged(before)
	// Exactly the last batch is the boundary: it is accepted, one past it is not.
	h.refuse(&rationv1.AckResultsRequest{Service: "dm", ThroughSeq: seqs[2] + 1}, ErrAckBeyondResults)
	r = h.must(&rationv1.AckResultsRequest{Service: "dm", ThroughSeq: seqs[2]}).GetAckResults().GetExport()
	if r.AckedThrough != seqs[2] || r.UnackedResults != 0 || r.UnackedBytes != 0 {
		t.Fatalf("after acking everything: %v", r)
	}
	// A new result is unacknowledged again.
	h.add("dm", 0, "late")
	b := h.acquire("dm", "w1", 1)[0]
	h.submitAll("w1", b, "NON_DM")
	if p := exportOf(t, h); p.AckedThrough != seqs[2] || p.LastSeq <= seqs[2] || p.UnackedResults != 1 {
		t.Fatalf("after a new submit: %v", p)
	}
}

func TestFSM_AckResultsRefusals(t *testing.T) {
	h, seqs := ackFixture(t)
	before := h.stateBytes()
	h.refuse(&rationv1.AckResultsRequest{Service: "dm", ThroughSeq: seqs[2] + 1}, ErrAckBeyondResults)
	h.refuse(&rationv1.AckResultsRequest{Service: "nope", ThroughSeq: 1}, ErrServiceNotFound)
	h.refuse(&rationv1.AckResultsRequest{Service: "Bad Name", ThroughSeq: 1}, ErrInvalidArgument)
	h.assertOnlyActivityChanged(before)
	h.createService("empty", "dmcheck", nil)
	r := h.apply(&rationv1.AckResultsRequest{Service: "empty", ThroughSeq: 1})
	if err := ResultError(r); Reason(err) != ErrAckBeyondResults.Reason || !bytes.Contains([]byte(err.Error()), []byte("has no results")) {
		t.Fatalf("acking a service without results: %v", err)
	}
	h.must(&rationv1.AckResultsRequest{Service: "empty", ThroughSeq: 0}) // nothing to acknowledge, nothing refused
	// A revoked service's results can still be acknowledged.
	h.must(&rationv1.RevokeServiceRequest{Name: "dm"})
	h.must(&rationv1.AckResultsRequest{Service: "dm", ThroughSeq: seqs[1]})
}

// An owner token reaches AckResults for its own service only.
func TestFSM_AckResultsTakesTheOwnerToken(t *testing.T) {
	h, seqs := ackFixture(t)
	tok := tokenHash("owner of dm")
	wantReason(t, h.applyCmd(h.ownerCmd(&rationv1.RotateOwnerTokenRequest{Name: "dm"}, "admin", nil, tok, "")), nil)
	wantReason(t, h.applyCmd(h.ownerCmd(&rationv1.AckResultsRequest{Service: "dm", ThroughSeq: seqs[0]}, "owner", tok, nil, "")), nil)
	wantReason(t, h.applyCmd(h.ownerCmd(&rationv1.AckResultsRequest{Service: "dm", ThroughSeq: seqs[1]}, "owner", tokenHash("another"), nil, "")), ErrBadOwnerToken)
	if p := exportOf(t, h); p.AckedThrough != seqs[0] {
		t.Fatalf("position %v", p)
	}
}

// The export position survives a snapshot, and the counts derived from it
// are rebuilt on restore.
func TestFSM_AckResultsSurvivesRestore(t *testing.T) {
	h, seqs := ackFixture(t)
	h.must(&rationv1.AckResultsRequest{Service: "dm", ThroughSeq: seqs[1]})
	want := exportOf(t, h)
	f := New(nil)
	if err := f.Restore(io.NopCloser(bytes.NewReader(h.snapshot()))); err != nil {
		t.Fatal(err)
	}
	s, _ := f.State().Service("dm")
	if got := s.ExportPosition(); got.String() != want.String() {
		t.Fatalf("restored position %v, want %v", got, want)
	}
	if err := f.State().CheckInvariants(); err != nil {
		t.Fatal(err)
	}
}
