package cluster

import (
	"testing"

	"google.golang.org/protobuf/proto"

	rationv1 "github.com/rationhq/ration/api/ration/v1"
)

// batchEntry writes the bytes proto.Marshal writes for the same batch.
func TestBatchEntry_EncodesTheBatchCommand(t *testing.T) {
	hdr := &rationv1.CommandHeader{ProposedAt: 1234567, Seed: 99}
	var cmds []*rationv1.Command
	var enc [][]byte
	for i, id := range []string{"a", "", "a-much-longer-worker-id-" + string(make([]byte, 300))} {
		c := &rationv1.Command{
			Header: &rationv1.CommandHeader{RequestId: id, ProposedAt: int64(i)},
			Op:     &rationv1.Command_Register{Register: &rationv1.RegisterRequest{Service: "s", WorkerId: id}},
		}
		b, err := proto.Marshal(c)
		if err != nil {
			t.Fatal(err)
		}
		cmds, enc = append(cmds, c), append(enc, b)
	}
	want, err := proto.Marshal(&rationv1.Command{Header: hdr, Op: &rationv1.Command_Batch{Batch: &rationv1.CommandBatch{Commands: cmds}}})
	if err != nil {
		t.Fatal(err)
	}
	got := batchEntry(hdr, enc)
	if string(got) != string(want) {
		t.Fatalf("batchEntry wrote %d bytes that differ from proto.Marshal's %d", len(got), len(want))
	}
	if cap(got) != len(got) {
		t.Errorf("batchEntry allocated %d bytes for %d", cap(got), len(got))
	}
}
