package fsm

import (
	"bytes"
	"crypto/sha256"
	"fmt"
	"io"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/timestamppb"

	statev1 "github.com/rationhq/ration/api/ration/state/v1"
	rationv1 "github.com/rationhq/ration/api/ration/v1"
)

// harness drives an FSM the way the log does: one command at a time, with
// a header stamped by a fake proposer whose clock the test moves.
type harness struct {
	t     testing.TB
	f     *FSM
	index uint64
	now   time.Time
	seed  uint64
	// check runs the invariants after every command.
	check bool
	// capture, if set, sees every log entry applied.
	capture func(*rawEntry)
	// pack proposes commands as the leader does, compact (see Compact).
	pack bool
}

// packAll is Compact of a command and of every command in a batch.
func packAll(c *statev1.Command) *statev1.Command {
	if b, ok := c.Op.(*statev1.Command_Batch); ok {
		out := &statev1.CommandBatch{}
		for _, sub := range b.Batch.GetCommands() {
			out.Commands = append(out.Commands, packAll(sub))
		}
		return &statev1.Command{Header: c.Header, Op: &statev1.Command_Batch{Batch: out}}
	}
	return Compact(c)
}

// actionOf names a command's operation for test messages.
func actionOf(c *statev1.Command) string {
	if o, _, _ := operations.decode(c); o != nil {
		return o.action
	}
	return fmt.Sprintf("%T", c.GetOp())
}

var t0 = time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)

func newHarness(t testing.TB) *harness {
	return &harness{t: t, f: New(nil), now: t0, seed: 1, check: true}
}

func secret(worker string) []byte {
	s := sha256.Sum256([]byte("secret of " + worker))
	return s[:]
}

func (h *harness) advance(d time.Duration) { h.now = h.now.Add(d) }

// command wraps an operation in a stamped envelope.
func (h *harness) command(op proto.Message, actor string, cred []byte, requestID string) *statev1.Command {
	h.seed = h.seed*6364136223846793005 + 1442695040888963407
	c := &statev1.Command{Header: &statev1.CommandHeader{
		RequestId: requestID, ProposedAt: h.now.UnixNano(), Seed: h.seed, Proposer: "test", Actor: actor, Credential: cred,
	}}
	if b, ok := op.(*statev1.CommandBatch); ok {
		c.Op = &statev1.Command_Batch{Batch: b}
		return c
	}
	op1, ok := NewCommand(op)
	if !ok {
		h.t.Fatalf("harness: unknown op %T", op)
	}
	c.Op = op1.Op
	return c
}

// workerOf names the worker a worker operation is for, so the harness can
// present that worker's secret.
func workerOf(op proto.Message) string {
	if o, ok := operations.of(op); ok && o.scope == byWorker {
		return subjectOf(op).worker
	}
	return ""
}

// apply applies op as its rightful sender: a worker op with the worker's
// secret, anything else as the admin.
func (h *harness) apply(op proto.Message) *statev1.CommandResult {
	if w := workerOf(op); w != "" {
		return h.applyAs(op, w, secret(w), "")
	}
	if hb, ok := op.(*statev1.HeartbeatBatch); ok {
		for _, e := range hb.Entries {
			if e.Credential == nil {
				e.Credential = secret(e.GetRequest().GetWorkerId())
			}
		}
	}
	return h.applyAs(op, "admin", nil, "")
}

func (h *harness) applyAs(op proto.Message, actor string, cred []byte, requestID string) *statev1.CommandResult {
	h.t.Helper()
	return h.applyCmd(h.command(op, actor, cred, requestID))
}

// applyCmd applies a command through raft's entry point, as bytes.
func (h *harness) applyCmd(c *statev1.Command) *statev1.CommandResult {
	h.t.Helper()
	h.index++
	if h.pack {
		c = packAll(c)
	}
	data, err := proto.Marshal(c)
	if err != nil {
		h.t.Fatal(err)
	}
	l := rawLog(h.index, data)
	if h.capture != nil {
		h.capture(l)
	}
	before := h.f.State()
	r := h.f.Apply(l).(*statev1.CommandResult)
	if h.check {
		checkPrecheck(h.t, before, c, r)
		if err := h.f.State().CheckInvariants(); err != nil {
			h.t.Fatalf("after index %d (%s): %v", h.index, actionOf(c), err)
		}
	}
	return r
}

// must applies op and fails the test if it was refused.
func (h *harness) must(op proto.Message) *statev1.CommandResult {
	h.t.Helper()
	r := h.apply(op)
	if err := ResultError(r); err != nil {
		h.t.Fatalf("%T: %v", op, err)
	}
	return r
}

// refuse applies op and fails the test unless it was refused with want.
func (h *harness) refuse(op proto.Message, want *Error) *statev1.CommandResult {
	h.t.Helper()
	r := h.apply(op)
	err := ResultError(r)
	if err == nil || Reason(err) != want.Reason {
		h.t.Fatalf("%T: got error %v, want %s", op, err, want.Reason)
	}
	return r
}

func (h *harness) createService(name, kind string, cfg *rationv1.ServiceConfig) {
	h.t.Helper()
	h.must(&rationv1.CreateServiceRequest{Name: name, Kind: kind, Config: cfg})
}

func (h *harness) register(service, worker string) {
	h.t.Helper()
	h.must(&rationv1.RegisterRequest{Service: service, WorkerId: worker, Name: "name of " + worker})
}

func (h *harness) add(service string, prio int32, ids ...string) *rationv1.AddItemsResponse {
	h.t.Helper()
	return h.must(&rationv1.AddItemsRequest{Service: service, Items: ids, Priority: prio}).GetAddItems()
}

func (h *harness) acquire(service, worker string, n uint32) []*rationv1.LeasedBucket {
	h.t.Helper()
	return h.must(&rationv1.AcquireRequest{Service: service, WorkerId: worker, MaxBuckets: n}).GetAcquire().GetBuckets()
}

// results answers every item of b with verdict.
func results(b *rationv1.LeasedBucket, verdict string) []*rationv1.ResultInput {
	out := make([]*rationv1.ResultInput, len(b.Items))
	for i, id := range b.Items {
		out[i] = &rationv1.ResultInput{Item: id, Verdict: verdict}
	}
	return out
}

func (h *harness) submitAll(worker string, b *rationv1.LeasedBucket, verdict string) *rationv1.SubmitResponse {
	h.t.Helper()
	return h.must(&rationv1.SubmitRequest{WorkerId: worker, BucketId: b.Id, Epoch: b.Lease.Epoch, Results: results(b, verdict)}).GetSubmit()
}

func (h *harness) tick() *statev1.TickResult {
	h.t.Helper()
	return h.must(&statev1.Tick{ExpireLeases: true, DeactivateIdle: true}).GetTick()
}

func (h *harness) itemState(service, id string) rationv1.ItemState {
	h.t.Helper()
	v, ok := h.f.State().Item(service, id)
	if !ok {
		h.t.Fatalf("item %s/%s missing", service, id)
	}
	return v.State
}

// restored restores h's snapshot into a new FSM, checks that it keeps every
// invariant and writes the same snapshot back, and returns it.
func (h *harness) restored() *FSM {
	h.t.Helper()
	snap := h.snapshot()
	f := New(nil)
	if err := f.Restore(io.NopCloser(bytes.NewReader(snap))); err != nil {
		h.t.Fatal(err)
	}
	if err := f.State().CheckInvariants(); err != nil {
		h.t.Fatal(err)
	}
	var again bytes.Buffer
	if err := f.State().WriteSnapshot(&again); err != nil {
		h.t.Fatal(err)
	}
	if !bytes.Equal(again.Bytes(), snap) {
		h.t.Fatal("the state changed through a snapshot")
	}
	return f
}

func (h *harness) snapshot() []byte {
	h.t.Helper()
	var buf bytes.Buffer
	if err := h.f.State().WriteSnapshot(&buf); err != nil {
		h.t.Fatal(err)
	}
	return buf.Bytes()
}

func ids(prefix string, n int) []string {
	out := make([]string, n)
	for i := range out {
		out[i] = fmt.Sprintf("%s%05d", prefix, i)
	}
	return out
}

func dur(d time.Duration) *durationpb.Duration { return durationpb.New(d) }

func ts(t time.Time) *timestamppb.Timestamp { return timestamppb.New(t) }

// stateBytes encodes the state without its activity log and clock, to check
// that a refused or repeated command changed nothing else.
func (h *harness) stateBytes() []byte {
	h.t.Helper()
	t := h.f.t.copy()
	t.meta.index, t.meta.now, t.meta.nextSeq = 0, 0, 0
	t.activity, t.actSvc, t.actWkr = newTables().activity, newTables().actSvc, newTables().actWkr
	// Counters of refusals live on services and registrations; clear them.
	for _, s := range t.ordinals.Items() {
		c := *s
		c.Counters.Rejected, c.Counters.RejectedBy = 0, nil
		t.putService(&c)
	}
	for _, r := range t.regs.Items() {
		c := *r
		c.Counters.Rejected, c.Counters.RejectedBy = 0, nil
		t.regs.Set(&c)
	}
	var buf bytes.Buffer
	if err := t.encode(&buf); err != nil {
		h.t.Fatal(err)
	}
	return buf.Bytes()
}

func (h *harness) assertOnlyActivityChanged(before []byte) {
	h.t.Helper()
	if !bytes.Equal(before, h.stateBytes()) {
		h.t.Fatal("state changed beyond the activity log and rejection counters")
	}
}
