package chaos

import (
	"slices"
	"strings"
	"testing"

	rationv1 "github.com/rationhq/ration/api/ration/v1"
	"github.com/rationhq/ration/fsm"
)

// The acknowledged-write check must pass a state holding every write and
// name each kind of write missing.
func TestCheckAcked_CatchesLostWrites(t *testing.T) {
	// whole: on dm-a, w1 submits two of a bucket's items and the owner
	// acknowledges the results; on the validated service w1 votes on a
	// bucket.
	whole := func(t *testing.T) *fsmDriver {
		d := newFSMDriver(t)
		d.apply(&rationv1.CreateServiceRequest{Name: "dm-a", Kind: "dmcheck", Config: &rationv1.ServiceConfig{BucketSize: 5}}, "")
		d.apply(&rationv1.RegisterRequest{Service: "dm-a", WorkerId: "w1"}, "w1")
		ids := []string{"a1", "a2", "a3"}
		d.apply(&rationv1.AddItemsRequest{Service: "dm-a", Items: ids}, "")
		d.record(op{Kind: "add", Service: "dm-a", Items: ids, Outcome: outOK})
		res := d.apply(&rationv1.AcquireRequest{Service: "dm-a", WorkerId: "w1", MaxBuckets: 1}, "w1").(*rationv1.AcquireResponse)
		b := res.Buckets[0]
		d.record(op{Kind: "acquire", Worker: "w1", Service: "dm-a", Outcome: outOK,
			Grants: []grant{{Bucket: b.Id, Epoch: b.Lease.GetEpoch(), Items: b.Items}}})
		sr := d.apply(&rationv1.SubmitRequest{WorkerId: "w1", BucketId: b.Id, Epoch: b.Lease.GetEpoch(), Results: []*rationv1.ResultInput{
			{Item: b.Items[0], Verdict: "DM"}, {Item: b.Items[1], Verdict: "DM"}}}, "w1").(*rationv1.SubmitResponse)
		d.record(op{Kind: "submit", Worker: "w1", Service: "dm-a", Bucket: b.Id, Epoch: b.Lease.GetEpoch(), Items: b.Items[:2], N: sr.Accepted, Outcome: outOK})
		s, _ := d.f.State().Service("dm-a")
		d.apply(&rationv1.AckResultsRequest{Service: "dm-a", ThroughSeq: s.LastResultSeq}, "")
		d.record(op{Kind: "ack", Service: "dm-a", Seq: s.LastResultSeq, Outcome: outOK})
		d.add("v1", "v2")
		g := d.acquire("w1")
		d.vote("w1", g, g.Items, true)
		return d
	}
	d := whole(t)
	st := d.f.State()
	n, lost := checkAcked(st, exportAll(st), d.ops, d.ops[len(d.ops)-1].Return+1)
	if len(lost) != 0 || n != (acked{adds: 2, items: 5, submits: 1, votes: 1, acks: 1}) {
		t.Fatalf("every write in place: %s, lost: %v", n, lost)
	}

	tests := []struct {
		name   string
		change func(d *fsmDriver, exp *exportStore) // tampers with the history or the owner's store
		want   string                               // "": no problem
	}{
		{"an added item is missing", func(d *fsmDriver, exp *exportStore) {
			d.record(op{Kind: "add", Service: "dm-a", Items: []string{"a9"}, Outcome: outOK})
		}, "items added to dm-a are missing: [a9]"},
		{"an add not acknowledged", func(d *fsmDriver, exp *exportStore) {
			d.record(op{Kind: "add", Service: "dm-a", Items: []string{"a9"}, Outcome: outUnknown})
		}, ""},
		{"a submit's results are missing", func(d *fsmDriver, exp *exportStore) {
			d.record(op{Kind: "submit", Worker: "w1", Service: "dm-a", Bucket: 1, Epoch: 99, Items: []string{"a1"}, N: 1, Outcome: outOK})
		}, "are stored 0 times"},
		{"a submit stored with other items", func(d *fsmDriver, exp *exportStore) {
			d.ops[2].Items = []string{"a3"}
		}, "stored results"},
		{"trimmed results the owner stored and acknowledged", func(d *fsmDriver, exp *exportStore) {
			seq := trimmedSeq(d)
			exp.batches[seq] = storedBatch{seq: seq, service: "dm-a", bucket: 7, epoch: 77, worker: "w1", items: []string{"a3"}}
			d.record(op{Kind: "submit", Worker: "w1", Service: "dm-a", Bucket: 7, Epoch: 77, Items: []string{"a3"}, N: 1, Outcome: outOK})
		}, ""},
		{"results only the owner stored, not acknowledged", func(d *fsmDriver, exp *exportStore) {
			exp.batches[10000] = storedBatch{seq: 10000, service: "dm-a", bucket: 7, epoch: 77, worker: "w1", items: []string{"a3"}}
			d.record(op{Kind: "submit", Worker: "w1", Service: "dm-a", Bucket: 7, Epoch: 77, Items: []string{"a3"}, N: 1, Outcome: outOK})
		}, "are gone from the state, which is acknowledged only through"},
		{"a vote is missing", func(d *fsmDriver, exp *exportStore) {
			d.record(op{Kind: "submit", Worker: "w2", Service: validatedService, Bucket: 2, Epoch: 99, Items: []string{"v1"}, N: 1, Outcome: outOK})
		}, "is stored 0 times"},
		{"a vote stored with other items", func(d *fsmDriver, exp *exportStore) {
			d.ops[len(d.ops)-1].Items = []string{"v9"}
		}, "is stored with items"},
		{"the export position went back", func(d *fsmDriver, exp *exportStore) {
			d.record(op{Kind: "ack", Service: "dm-a", Seq: 1000, Outcome: outOK})
		}, "acknowledged through"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d := whole(t)
			before := len(d.ops)
			exp := exportAll(d.f.State())
			tt.change(d, exp)
			st := d.f.State()
			end := d.ops[len(d.ops)-1].Return
			_, lost := checkAcked(st, exp, d.ops, end+1)
			if tt.want == "" {
				if len(lost) != 0 {
					t.Fatalf("lost %v, want none", lost)
				}
				return
			}
			if !slices.ContainsFunc(lost, func(l lostWrite) bool { return strings.Contains(l.String(), tt.want) }) {
				t.Fatalf("lost %v, want one with %q", lost, tt.want)
			}
			// A write acknowledged after the state was read is not its
			// business.
			if len(d.ops) == before {
				return
			}
			if _, lost := checkAcked(st, exp, d.ops, end); len(lost) != 0 {
				t.Fatalf("writes acknowledged by %d: lost %v, want none", end, lost)
			}
		})
	}
}

// trimmedSeq is a seq at or below dm-a's export position that no result
// batch of the state has: where a batch trimmed after acknowledgment was.
func trimmedSeq(d *fsmDriver) uint64 {
	st := d.f.State()
	s, _ := st.Service("dm-a")
	for seq := s.AckedThrough; seq > 0; seq-- {
		if !slices.ContainsFunc(st.Results("dm-a", 0, 1<<30), func(rb *fsm.ResultBatch) bool { return rb.Seq == seq }) {
			return seq
		}
	}
	d.t.Fatal("every seq through the export position is a result batch")
	return 0
}
