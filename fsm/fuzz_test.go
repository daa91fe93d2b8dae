package fsm

import (
	"bytes"
	"fmt"
	"io"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/raft"
	"google.golang.org/protobuf/proto"

	statev1 "github.com/rationhq/ration/api/ration/state/v1"
	rationv1 "github.com/rationhq/ration/api/ration/v1"
)

// fuzzState populates a state machine for FuzzApply: every operation, and
// a service that validates its results.
func fuzzState(h *harness) {
	script(h)
	validationScript(h)
}

// FuzzApply feeds arbitrary log entries to a populated state machine. The
// only panics allowed are the documented ones, for an entry that does not
// decode or names no known operation; anything that decodes is applied and
// must leave every invariant standing.
func FuzzApply(f *testing.F) {
	h := newHarness(f)
	h.check = false
	h.capture = func(l *rawEntry) { f.Add(l.Data) }
	fuzzState(h)
	packed := newHarness(f)
	packed.check, packed.pack = false, true
	packed.capture = h.capture
	fuzzState(packed)
	f.Add([]byte{})
	f.Add([]byte{0xff, 0xff})
	f.Fuzz(func(t *testing.T, data []byte) {
		h := newHarness(t)
		h.check = false
		fuzzState(h)
		var decoded statev1.Command
		decodes := proto.Unmarshal(data, &decoded) == nil
		defer func() {
			r := recover()
			if r == nil {
				return
			}
			msg := fmt.Sprint(r)
			documented := strings.HasPrefix(msg, "fsm: ") &&
				(strings.Contains(msg, "cannot decode") || strings.Contains(msg, "no header") || strings.Contains(msg, "unknown operation"))
			if !documented {
				t.Fatalf("undocumented panic: %v", r)
			}
			if decodes && strings.Contains(msg, "cannot decode") {
				t.Fatalf("panicked on an entry that decodes: %v", r)
			}
		}()
		h.index++
		before := h.f.State()
		res := h.f.Apply(&raft.Log{Index: h.index, Type: raft.LogCommand, Data: data})
		if !decodes {
			t.Fatal("applied an entry that does not decode")
		}
		r, ok := res.(*statev1.CommandResult)
		if !ok {
			t.Fatalf("Apply returned %T", res)
		}
		// What the API's edge would have refused, Apply refused the same way.
		checkPrecheck(t, before, &decoded, r)
		if err := h.f.State().CheckInvariants(); err != nil {
			t.Fatalf("invariants after a fuzzed command: %v", err)
		}
	})
}

// FuzzRestore feeds arbitrary bytes to Restore: it must refuse or succeed,
// never panic, and a refused restore must leave the state as it was.
// CheckSnapshot, which the API's Restore runs on a snapshot from outside,
// must accept exactly what Restore accepts with every invariant standing.
func FuzzRestore(f *testing.F) {
	for v := OldestSnapshotVersion; v <= SnapshotVersion; v++ {
		snap, err := os.ReadFile(golden(v))
		if err != nil {
			f.Fatal(err)
		}
		f.Add(snap)
		f.Add(snap[:len(snap)/3])
	}
	f.Add([]byte(snapshotMagic))
	f.Fuzz(restoreFuzzBody)
}

func restoreFuzzBody(t *testing.T, data []byte) {
	{
		checked := CheckSnapshot(bytes.NewReader(data))
		fsm := New(nil)
		if err := fsm.Restore(io.NopCloser(bytes.NewReader(data))); err != nil {
			if fsm.State().Index() != 0 || len(fsm.State().Services()) != 0 {
				t.Fatal("a refused restore changed the state")
			}
			if checked == nil {
				t.Fatalf("CheckSnapshot accepted a snapshot Restore refuses: %v", err)
			}
			return
		}
		var buf bytes.Buffer
		if err := fsm.State().WriteSnapshot(&buf); err != nil {
			t.Fatalf("a restored state does not encode: %v", err)
		}
		if fsm.State().CheckInvariants() != nil {
			// Restore checks structure only; CheckSnapshot refuses this one.
			if CheckSnapshot(bytes.NewReader(data)) == nil {
				t.Fatal("CheckSnapshot accepted a snapshot that breaks the invariants")
			}
			return
		}
		if checked != nil {
			t.Fatalf("CheckSnapshot refused a snapshot that restores soundly: %v", checked)
		}
		// A sound restored state goes on like any other.
		h := &harness{t: t, f: fsm, index: fsm.State().Index(), now: fsm.State().Now(), seed: 7, check: true}
		h.advance(365 * 24 * time.Hour)
		h.apply(&statev1.Tick{ExpireLeases: true, DeactivateIdle: true, ActivityMax: 3, RequestRetention: 1})
		for _, s := range fsm.State().Services() {
			h.apply(&rationv1.AddItemsRequest{Service: s.Name, Items: []string{"fuzz"}, Rerun: true})
			for _, r := range fsm.State().Registrations(s.Name, "", 10) {
				h.apply(&rationv1.AcquireRequest{Service: s.Name, WorkerId: r.Worker, MaxBuckets: 3})
			}
		}
	}
}
