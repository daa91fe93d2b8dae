package chaos

import (
	"testing"

	"github.com/anishathalye/porcupine"
)

// The checker must catch what it is there for; these histories are wrong.
func TestModel_CatchesViolations(t *testing.T) {
	grantOp := func(w string, e uint64, call, ret int64) op {
		return op{Kind: "acquire", Worker: w, Call: call, Return: ret, Outcome: outOK, Grants: []grant{{Bucket: 1, Epoch: e}}}
	}
	submit := func(w string, e uint64, call, ret int64, out string) op {
		return op{Kind: "submit", Worker: w, Bucket: 1, Epoch: e, Call: call, Return: ret, Outcome: out}
	}
	tests := []struct {
		name string
		ops  []op
		ok   bool
	}{
		{"grant, submit", []op{grantOp("a", 1, 0, 1), submit("a", 1, 2, 3, outOK)}, true},
		{"grant, expiry, regrant, old holder refused", []op{grantOp("a", 1, 0, 1), grantOp("b", 2, 2, 3), submit("a", 1, 4, 5, "fail"), submit("b", 2, 6, 7, outOK)}, true},
		{"unknown submit, then regrant refused or not", []op{grantOp("a", 1, 0, 1), submit("a", 1, 2, 3, outUnknown), grantOp("b", 2, 4, 5)}, true},
		{"stale submit accepted after regrant", []op{grantOp("a", 1, 0, 1), grantOp("b", 2, 2, 3), submit("a", 1, 4, 5, outOK)}, false},
		{"two submits accepted", []op{grantOp("a", 1, 0, 1), submit("a", 1, 2, 3, outOK), submit("a", 1, 4, 5, outOK)}, false},
		{"granted again after done", []op{grantOp("a", 1, 0, 1), submit("a", 1, 2, 3, outOK), grantOp("b", 2, 4, 5)}, false},
		{"epoch reused", []op{grantOp("a", 2, 0, 1), grantOp("b", 2, 2, 3)}, false},
		{"submit by someone else", []op{grantOp("a", 1, 0, 1), submit("b", 1, 2, 3, outOK)}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := porcupine.CheckOperations(leaseModel.ToModel(), modelOps(tt.ops))
			if got != tt.ok {
				t.Fatalf("linearizable = %v, want %v", got, tt.ok)
			}
		})
	}
	// The validated service's buckets close on a second vote by another
	// worker; no grant may go to a worker who has voted.
	vgrant := func(w string, e uint64, call, ret int64) op {
		o := grantOp(w, e, call, ret)
		o.Service = validatedService
		return o
	}
	vote := func(w string, e uint64, call, ret int64, out string) op {
		o := submit(w, e, call, ret, out)
		o.Service = validatedService
		return o
	}
	vrelease := func(w string, e uint64, call, ret int64) op {
		return op{Kind: "release", Service: validatedService, Worker: w, Bucket: 1, Epoch: e, Call: call, Return: ret, Outcome: outOK}
	}
	vtests := []struct {
		name string
		ops  []op
		ok   bool
	}{
		{"vote, regrant to another, second vote", []op{vgrant("a", 1, 0, 1), vote("a", 1, 2, 3, outOK), vgrant("b", 2, 4, 5), vote("b", 2, 6, 7, outOK)}, true},
		{"vote, regrant released, regrant, second vote", []op{vgrant("a", 1, 0, 1), vote("a", 1, 2, 3, outOK), vgrant("b", 2, 4, 5),
			vrelease("b", 2, 6, 7), vgrant("c", 3, 8, 9), vote("c", 3, 10, 11, outOK)}, true},
		{"vote, the voter's lease is gone", []op{vgrant("a", 1, 0, 1), vote("a", 1, 2, 3, outOK), vote("a", 1, 4, 5, "fail")}, true},
		{"unknown vote, regrant to the voter", []op{vgrant("a", 1, 0, 1), vote("a", 1, 2, 3, outUnknown), vgrant("a", 2, 4, 5)}, true},
		{"vote, regrant to the voter", []op{vgrant("a", 1, 0, 1), vote("a", 1, 2, 3, outOK), vgrant("a", 2, 4, 5)}, false},
		{"vote, then the voter's lease accepted again", []op{vgrant("a", 1, 0, 1), vote("a", 1, 2, 3, outOK), vote("a", 1, 4, 5, outOK)}, false},
		{"vote, released by the voter", []op{vgrant("a", 1, 0, 1), vote("a", 1, 2, 3, outOK), vrelease("a", 1, 4, 5)}, false},
		{"second vote, then granted again", []op{vgrant("a", 1, 0, 1), vote("a", 1, 2, 3, outOK), vgrant("b", 2, 4, 5),
			vote("b", 2, 6, 7, outOK), vgrant("c", 3, 8, 9)}, false},
		{"vote, regrant to another, then to the voter", []op{vgrant("a", 1, 0, 1), vote("a", 1, 2, 3, outOK), vgrant("b", 2, 4, 5),
			vgrant("a", 3, 6, 7)}, false},
	}
	for _, tt := range vtests {
		t.Run("validated/"+tt.name, func(t *testing.T) {
			got := porcupine.CheckOperations(leaseModel.ToModel(), modelOps(tt.ops))
			if got != tt.ok {
				t.Fatalf("linearizable = %v, want %v", got, tt.ok)
			}
		})
	}
	if bad := checkEpochs([]op{grantOp("a", 5, 0, 1), {Kind: "acquire", Worker: "b", Outcome: outOK, Grants: []grant{{Bucket: 2, Epoch: 5}}}}); len(bad) != 1 {
		t.Fatalf("epoch shared by two buckets: %v", bad)
	}
}
