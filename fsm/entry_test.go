package fsm

import (
	"bytes"
	"testing"

	"google.golang.org/protobuf/proto"

	statev1 "github.com/rationhq/ration/api/ration/state/v1"
	rationv1 "github.com/rationhq/ration/api/ration/v1"
)

// bodySums must give what bodyHash computes, or request-id matching would
// depend on whether a command came from the log or from ApplyCommand.
func TestBodySums_MatchBodyHash(t *testing.T) {
	h := newHarness(t)
	a := h.command(&rationv1.AddItemsRequest{Service: "dm", Items: []string{"a", "b", "ü"}, Priority: 3, Rerun: true}, "admin", nil, "r1")
	s := h.command(&rationv1.SubmitRequest{WorkerId: "w", BucketId: 9, Epoch: 4, RequestId: "r2",
		Results: []*rationv1.ResultInput{{Item: "a", Verdict: "DM", Payload: "p"}, {Item: "b"}}}, "w", []byte("cred"), "r2")
	empty := h.command(&rationv1.ReleaseRequest{}, "w", nil, "")
	batch := &statev1.Command{Header: &statev1.CommandHeader{ProposedAt: 5},
		Op: &statev1.Command_Batch{Batch: &statev1.CommandBatch{Commands: []*statev1.Command{a, s, empty}}}}
	for _, tc := range []struct {
		name string
		cmd  *statev1.Command
		want []*statev1.Command
	}{
		{"add", a, []*statev1.Command{a}},
		{"submit", s, []*statev1.Command{s}},
		{"empty op", empty, []*statev1.Command{empty}},
		{"batch", batch, []*statev1.Command{a, s, empty}},
	} {
		data, err := proto.Marshal(tc.cmd)
		if err != nil {
			t.Fatal(err)
		}
		sums, err := bodySums(data)
		if err != nil {
			t.Fatalf("%s: %v", tc.name, err)
		}
		if len(sums) != len(tc.want) || len(sums) != leaves(tc.cmd) {
			t.Fatalf("%s: %d sums, want %d", tc.name, len(sums), len(tc.want))
		}
		for i, c := range tc.want {
			if !bytes.Equal(sums[i], bodyHash(c)) {
				t.Errorf("%s: sum %d = %x, bodyHash %x", tc.name, i, sums[i], bodyHash(c))
			}
		}
	}
	if _, err := bodySums([]byte{0xff}); err == nil {
		t.Error("bodySums accepted a broken tag")
	}
}

// EncodeBatch writes the bytes proto.Marshal writes for the same batch.
func TestEncodeBatch_MatchesMarshal(t *testing.T) {
	hdr := &statev1.CommandHeader{ProposedAt: 1234567, Seed: 99}
	var cmds []*statev1.Command
	var enc [][]byte
	for i, id := range []string{"a", "", "a-much-longer-worker-id-" + string(make([]byte, 300))} {
		c := &statev1.Command{
			Header: &statev1.CommandHeader{RequestId: id, ProposedAt: int64(i)},
			Op:     &statev1.Command_Register{Register: &rationv1.RegisterRequest{Service: "s", WorkerId: id}},
		}
		b, err := proto.Marshal(c)
		if err != nil {
			t.Fatal(err)
		}
		cmds, enc = append(cmds, c), append(enc, b)
	}
	want, err := proto.Marshal(&statev1.Command{Header: hdr, Op: &statev1.Command_Batch{Batch: &statev1.CommandBatch{Commands: cmds}}})
	if err != nil {
		t.Fatal(err)
	}
	got := EncodeBatch(hdr, enc)
	if string(got) != string(want) {
		t.Fatalf("EncodeBatch wrote %d bytes that differ from proto.Marshal's %d", len(got), len(want))
	}
	if cap(got) != len(got) {
		t.Errorf("EncodeBatch allocated %d bytes for %d", cap(got), len(got))
	}
}
