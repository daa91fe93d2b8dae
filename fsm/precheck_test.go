package fsm

import (
	"bytes"
	"errors"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"

	statev1 "github.com/rationhq/ration/api/ration/state/v1"
	rationv1 "github.com/rationhq/ration/api/ration/v1"
)

// checkPrecheck holds Precheck to Apply for one applied command: what
// Precheck refuses on the state before it, Apply refused with the same
// reason and message; what Precheck passes, Apply did not refuse, unless it
// answered from its request-id table. Heartbeat entries are held to
// PrecheckHeartbeat the same way. The harness runs it on every command, so
// every table, model and determinism test checks it.
func checkPrecheck(t testing.TB, before *State, c *statev1.Command, res *statev1.CommandResult) {
	t.Helper()
	if _, ok := c.Op.(*statev1.Command_Batch); ok {
		return // sub-commands see each other's changes, not the state before
	}
	if hb, ok := c.Op.(*statev1.Command_Heartbeat); ok {
		for i, e := range hb.Heartbeat.GetEntries() {
			if len(e.GetCredential()) == 0 && len(c.GetHeader().GetCredential()) > 0 {
				continue // Apply falls back to the header's secret; the API never sends that
			}
			checkPrecheckBeat(t, before, e, res.GetHeartbeat().GetEntries()[i])
		}
		return
	}
	p := before.Precheck(c)
	got := res.GetError()
	if p != nil {
		if got.GetReason() != Reason(p) || got.GetMessage() != p.Error() {
			t.Fatalf("%s: Precheck refused %s %q, Apply answered %v", actionOf(c), Reason(p), p.Error(), res)
		}
		return
	}
	if got != nil && !dedupHit(before, c) {
		t.Fatalf("%s: Precheck passed, Apply refused %s %q", actionOf(c), got.GetReason(), got.GetMessage())
	}
}

func checkPrecheckBeat(t testing.TB, before *State, e *statev1.HeartbeatEntry, got *statev1.CommandResult) {
	t.Helper()
	resp, p := before.PrecheckHeartbeat(e)
	switch {
	case p != nil:
		if got.GetError().GetReason() != Reason(p) || got.GetError().GetMessage() != p.Error() {
			t.Fatalf("heartbeat: Precheck refused %s %q, Apply answered %v", Reason(p), p.Error(), got)
		}
	case resp != nil:
		if !proto.Equal(resp, got.GetHeartbeatEntry()) || got.GetError() != nil {
			t.Fatalf("heartbeat: Precheck answered %v, Apply %v", resp, got)
		}
	default:
		if got.GetError() != nil {
			t.Fatalf("heartbeat: Precheck passed, Apply refused %v", got.GetError())
		}
		extended := false
		for _, o := range got.GetHeartbeatEntry().GetBuckets() {
			extended = extended || o.GetErrorReason() == ""
		}
		if !extended {
			t.Fatalf("heartbeat: Precheck passed, Apply extended nothing: %v", got)
		}
	}
}

// dedupHit reports whether Apply answers c from its request-id table.
func dedupHit(st *State, c *statev1.Command) bool {
	o, req, compacted := operations.decode(c)
	if o == nil {
		return false
	}
	if compacted {
		req, _, _ = o.compact.expand(req)
	}
	key := o.requestKey(c.GetHeader(), req)
	if key == "" {
		return false
	}
	_, ok := st.t.requests.Get(&request{Key: key})
	return ok
}

// precheckFixture is a service with two registered workers, w1 holding a
// bucket of two items, w2 holding nothing, a deactivated worker, an
// unregistered one, a revoked service, and one remembered request id.
type precheckFixture struct {
	h *harness
	b *rationv1.LeasedBucket
}

func newPrecheckFixture(t *testing.T) *precheckFixture {
	h := newHarness(t)
	h.createService("dm", "dmcheck", &rationv1.ServiceConfig{BucketSize: 2, MaxLeasesPerWorker: 1, LeaseTtl: dur(time.Hour)})
	h.createService("old", "dmcheck", nil)
	h.createService("spare", "dmcheck", nil)
	for _, w := range []string{"w1", "w2", "bad", "gone"} {
		h.register("dm", w)
	}
	h.register("old", "w1")
	h.must(&rationv1.RevokeServiceRequest{Name: "old", Reason: "done"})
	h.must(&rationv1.DeactivateWorkerRequest{Service: "dm", WorkerId: "bad", Reason: "faulty"})
	h.must(&rationv1.UnregisterRequest{Service: "dm", WorkerId: "gone"})
	h.add("dm", 0, "a", "b", "c", "d")
	b := h.acquire("dm", "w1", 1)[0]
	if r := h.applyAs(&rationv1.RegisterRequest{Service: "dm", WorkerId: "w2"}, "w2", secret("w2"), "id-1"); r.GetError() != nil {
		t.Fatal(r.GetError())
	}
	h.must(&statev1.SetNode{NodeId: "n1", ApiAddress: "127.0.0.1:1"})
	return &precheckFixture{h: h, b: b}
}

// TestPrecheck_RefusesAsApply runs one command per refusal through Precheck
// and then Apply, on the same state: both must refuse it, with the same
// reason and message.
func TestPrecheck_RefusesAsApply(t *testing.T) {
	fx := newPrecheckFixture(t)
	h, b := fx.h, fx.b
	res := results(b, "DM")
	type as struct {
		actor string
		cred  []byte
		id    string
	}
	admin := as{actor: "admin"}
	w := func(id string) as { return as{actor: id, cred: secret(id)} }
	tests := []struct {
		name string
		op   proto.Message
		as   as
		want *Error
	}{
		{"create: bad name", &rationv1.CreateServiceRequest{Name: "Bad Name", Kind: "dmcheck"}, admin, ErrInvalidArgument},
		{"create: unknown kind", &rationv1.CreateServiceRequest{Name: "x", Kind: "nope"}, admin, ErrUnknownKind},
		{"create: bad config", &rationv1.CreateServiceRequest{Name: "x", Kind: "dmcheck", Config: &rationv1.ServiceConfig{BucketSize: 1 << 30}}, admin, ErrInvalidConfig},
		{"create: exists", &rationv1.CreateServiceRequest{Name: "dm", Kind: "dmcheck"}, admin, ErrServiceExists},
		{"update: unknown service", &rationv1.UpdateServiceRequest{Name: "nope"}, admin, ErrServiceNotFound},
		{"update: bad config", &rationv1.UpdateServiceRequest{Name: "dm", Config: &rationv1.ServiceConfig{MaxAttempts: 1 << 30}}, admin, ErrInvalidConfig},
		{"revoke: unknown service", &rationv1.RevokeServiceRequest{Name: "nope"}, admin, ErrServiceNotFound},
		{"revoke: control character in reason", &rationv1.RevokeServiceRequest{Name: "dm", Reason: "a\x00b"}, admin, ErrInvalidArgument},
		{"reinstate: unknown service", &rationv1.ReinstateServiceRequest{Name: "nope"}, admin, ErrServiceNotFound},
		{"register: no secret", &rationv1.RegisterRequest{Service: "dm", WorkerId: "w9"}, as{actor: "w9"}, ErrNoCredential},
		{"register: revoked service", &rationv1.RegisterRequest{Service: "old", WorkerId: "w9"}, w("w9"), ErrServiceRevoked},
		{"register: unknown service", &rationv1.RegisterRequest{Service: "nope", WorkerId: "w9"}, w("w9"), ErrServiceNotFound},
		{"register: another's id", &rationv1.RegisterRequest{Service: "dm", WorkerId: "w1"}, as{actor: "w1", cred: secret("w2")}, ErrBadCredential},
		{"register: deactivated", &rationv1.RegisterRequest{Service: "dm", WorkerId: "bad"}, w("bad"), ErrWorkerDeactivated},
		{"register: bad id", &rationv1.RegisterRequest{Service: "dm", WorkerId: "a\nb"}, w("a\nb"), ErrInvalidArgument},
		{"unregister: never registered", &rationv1.UnregisterRequest{Service: "dm", WorkerId: "w9"}, w("w9"), ErrWorkerNotFound},
		{"unregister: not in service", &rationv1.UnregisterRequest{Service: "old", WorkerId: "w2"}, w("w2"), ErrNotRegistered},
		{"deactivate: not in service", &rationv1.DeactivateWorkerRequest{Service: "dm", WorkerId: "w9"}, admin, ErrNotRegistered},
		{"reactivate: unknown service", &rationv1.ReactivateWorkerRequest{Service: "nope", WorkerId: "w1"}, admin, ErrServiceNotFound},
		{"revert: no since", &rationv1.RevertWorkerRequest{Service: "dm", WorkerId: "w1"}, admin, ErrInvalidArgument},
		{"revert: not registered", &rationv1.RevertWorkerRequest{Service: "dm", WorkerId: "w9", Since: ts(t0)}, admin, ErrNotRegistered},
		{"add: revoked service", &rationv1.AddItemsRequest{Service: "old", Items: []string{"x"}}, admin, ErrServiceRevoked},
		{"add: bad item", &rationv1.AddItemsRequest{Service: "dm", Items: []string{"a\x00b"}}, admin, ErrInvalidArgument},
		{"add: priority", &rationv1.AddItemsRequest{Service: "dm", Items: []string{"x"}, Priority: MaxPriority + 1}, admin, ErrInvalidArgument},
		{"acquire: wrong secret", &rationv1.AcquireRequest{Service: "dm", WorkerId: "w1"}, as{actor: "w1", cred: secret("w2")}, ErrBadCredential},
		{"acquire: no secret", &rationv1.AcquireRequest{Service: "dm", WorkerId: "w1"}, as{actor: "w1"}, ErrNoCredential},
		{"acquire: lease limit", &rationv1.AcquireRequest{Service: "dm", WorkerId: "w1"}, w("w1"), ErrLeaseLimit},
		{"acquire: deactivated", &rationv1.AcquireRequest{Service: "dm", WorkerId: "bad"}, w("bad"), ErrWorkerDeactivated},
		{"acquire: inactive", &rationv1.AcquireRequest{Service: "dm", WorkerId: "gone"}, w("gone"), ErrWorkerInactive},
		{"acquire: revoked", &rationv1.AcquireRequest{Service: "old", WorkerId: "w1"}, w("w1"), ErrServiceRevoked},
		{"acquire: not registered", &rationv1.AcquireRequest{Service: "spare", WorkerId: "w2"}, w("w2"), ErrNotRegistered},
		{"submit: not the holder", &rationv1.SubmitRequest{WorkerId: "w2", BucketId: b.Id, Epoch: b.Lease.Epoch, Results: res}, w("w2"), ErrNotHolder},
		{"submit: stale epoch", &rationv1.SubmitRequest{WorkerId: "w1", BucketId: b.Id, Epoch: b.Lease.Epoch + 1, Results: res}, w("w1"), ErrLeaseLost},
		{"submit: unknown bucket", &rationv1.SubmitRequest{WorkerId: "w1", BucketId: 999, Epoch: 1, Results: res}, w("w1"), ErrBucketNotFound},
		{"submit: item not in bucket", &rationv1.SubmitRequest{WorkerId: "w1", BucketId: b.Id, Epoch: b.Lease.Epoch,
			Results: []*rationv1.ResultInput{{Item: "zz", Verdict: "DM"}}}, w("w1"), ErrItemNotInBucket},
		{"submit: duplicate result", &rationv1.SubmitRequest{WorkerId: "w1", BucketId: b.Id, Epoch: b.Lease.Epoch,
			Results: []*rationv1.ResultInput{{Item: b.Items[0], Verdict: "DM"}, {Item: b.Items[0], Verdict: "DM"}}}, w("w1"), ErrDuplicateResult},
		{"submit: bad verdict", &rationv1.SubmitRequest{WorkerId: "w1", BucketId: b.Id, Epoch: b.Lease.Epoch,
			Results: []*rationv1.ResultInput{{Item: b.Items[0], Verdict: "MAYBE"}}}, w("w1"), ErrInvalidResult},
		{"submit: unregistered holder's bucket", &rationv1.SubmitRequest{WorkerId: "gone", BucketId: b.Id, Epoch: b.Lease.Epoch, Results: res}, w("gone"), ErrNotHolder},
		{"release: not the holder", &rationv1.ReleaseRequest{WorkerId: "w2", BucketId: b.Id, Epoch: b.Lease.Epoch}, w("w2"), ErrNotHolder},
		{"release: wrong secret", &rationv1.ReleaseRequest{WorkerId: "w1", BucketId: b.Id, Epoch: b.Lease.Epoch}, as{actor: "w1", cred: secret("x")}, ErrBadCredential},
		{"request id reused", &rationv1.RegisterRequest{Service: "dm", WorkerId: "w2", Name: "other"}, as{actor: "w2", cred: secret("w2"), id: "id-1"}, ErrRequestIDReused},
		{"set node: empty id", &statev1.SetNode{}, admin, ErrInvalidArgument},
		{"remove node: unknown", &statev1.RemoveNode{NodeId: "n9"}, admin, ErrNodeNotFound},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h.t = t
			c := h.command(tt.op, tt.as.actor, tt.as.cred, tt.as.id)
			before := h.snapshot()
			p := h.f.State().Precheck(c)
			if !bytes.Equal(before, h.snapshot()) {
				t.Fatal("Precheck changed the state")
			}
			if p == nil || Reason(p) != tt.want.Reason {
				t.Fatalf("Precheck = %v, want %s", p, tt.want.Reason)
			}
			if !errors.Is(p, tt.want) {
				t.Fatalf("Precheck's error %v does not match %s with errors.Is", p, tt.want.Reason)
			}
			r := h.applyCmd(c) // checkPrecheck compares reason and message
			if r.GetError().GetReason() != tt.want.Reason {
				t.Fatalf("Apply answered %v, want %s", r, tt.want.Reason)
			}
		})
	}
}

// TestPrecheck_PassesRetriesAndValidCommands: a request id retried with
// the same body passes (Apply answers from its table), as do commands
// Apply accepts.
func TestPrecheck_PassesRetriesAndValidCommands(t *testing.T) {
	fx := newPrecheckFixture(t)
	h, b := fx.h, fx.b
	retry := h.command(&rationv1.RegisterRequest{Service: "dm", WorkerId: "w2"}, "w2", secret("w2"), "id-1")
	if p := h.f.State().Precheck(retry); p != nil {
		t.Fatalf("a retry with the same body: %v", p)
	}
	// The same id from another worker is another request.
	other := h.command(&rationv1.RegisterRequest{Service: "dm", WorkerId: "w3"}, "w3", secret("w3"), "id-1")
	// A refused command remembered under its id is answered again, not re-run.
	refused := h.command(&rationv1.ReleaseRequest{WorkerId: "w2", BucketId: 999, Epoch: 1}, "w2", secret("w2"), "id-2")
	if r := h.applyCmd(refused); r.GetError().GetReason() != ErrBucketNotFound.Reason {
		t.Fatalf("release of a missing bucket: %v", r)
	}
	valid := []*statev1.Command{
		retry, other, refused,
		h.command(&rationv1.SubmitRequest{WorkerId: "w1", BucketId: b.Id, Epoch: b.Lease.Epoch, Results: results(b, "DM")}, "w1", secret("w1"), ""),
		h.command(&rationv1.AcquireRequest{Service: "dm", WorkerId: "w2", MaxBuckets: 1000}, "w2", secret("w2"), ""),
		h.command(&rationv1.AddItemsRequest{Service: "dm", Items: []string{"e"}}, "admin", nil, ""),
		h.command(&rationv1.RevokeServiceRequest{Name: "old"}, "admin", nil, ""),
		h.command(&rationv1.ReinstateServiceRequest{Name: "old"}, "admin", nil, ""),
		h.command(&rationv1.ReactivateWorkerRequest{Service: "dm", WorkerId: "bad"}, "admin", nil, ""),
		h.command(&statev1.Tick{ExpireLeases: true}, "system", nil, ""),
	}
	for _, c := range valid {
		if p := h.f.State().Precheck(c); p != nil {
			t.Fatalf("%s: Precheck refused %v", actionOf(c), p)
		}
		h.applyCmd(c) // checkPrecheck: Apply must not refuse it
	}
	if r := h.applyCmd(proto.Clone(refused).(*statev1.Command)); r.GetError().GetReason() != ErrBucketNotFound.Reason {
		t.Fatalf("a retried refusal: %v", r)
	}
}

// TestPrecheck_Heartbeat covers a heartbeat entry refused whole, one whose
// every lease is refused (Precheck gives Apply's answer), and one that
// extends something (to be proposed).
func TestPrecheck_Heartbeat(t *testing.T) {
	fx := newPrecheckFixture(t)
	h, b := fx.h, fx.b
	entry := func(worker string, cred []byte, refs ...*rationv1.BucketRef) *statev1.HeartbeatEntry {
		return &statev1.HeartbeatEntry{Request: &rationv1.HeartbeatRequest{WorkerId: worker, Buckets: refs}, Credential: cred}
	}
	mine := &rationv1.BucketRef{Id: b.Id, Epoch: b.Lease.Epoch}
	stale := &rationv1.BucketRef{Id: b.Id, Epoch: b.Lease.Epoch + 7}
	missing := &rationv1.BucketRef{Id: 999, Epoch: 1}
	tests := []struct {
		name    string
		e       *statev1.HeartbeatEntry
		refuse  *Error
		answers []string // each lease's refusal, when none is extended
	}{
		{"wrong secret", entry("w1", secret("w2"), mine), ErrBadCredential, nil},
		{"no secret", entry("w1", nil, mine), ErrNoCredential, nil},
		{"unknown worker", entry("w9", secret("w9"), mine), ErrWorkerNotFound, nil},
		{"no buckets", entry("w1", secret("w1")), ErrInvalidArgument, nil},
		{"someone else's lease", entry("w2", secret("w2"), mine, missing), nil, []string{"NOT_HOLDER", "BUCKET_NOT_FOUND"}},
		{"stale epoch", entry("w1", secret("w1"), stale), nil, []string{"LEASE_LOST"}},
		{"one good lease", entry("w1", secret("w1"), stale, mine), nil, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h.t = t
			resp, p := h.f.State().PrecheckHeartbeat(tt.e)
			switch {
			case tt.refuse != nil:
				if p == nil || Reason(p) != tt.refuse.Reason || resp != nil {
					t.Fatalf("PrecheckHeartbeat = %v, %v; want refusal %s", resp, p, tt.refuse.Reason)
				}
			case tt.answers != nil:
				if p != nil || resp == nil || len(resp.Buckets) != len(tt.answers) {
					t.Fatalf("PrecheckHeartbeat = %v, %v; want an answer", resp, p)
				}
				for i, o := range resp.Buckets {
					if o.ErrorReason != tt.answers[i] || o.ErrorMessage == "" || o.Lease != nil {
						t.Fatalf("outcome %d: %v, want %s", i, o, tt.answers[i])
					}
				}
			default:
				if p != nil || resp != nil {
					t.Fatalf("PrecheckHeartbeat = %v, %v; want neither", resp, p)
				}
			}
			h.applyCmd(h.command(&statev1.HeartbeatBatch{Entries: []*statev1.HeartbeatEntry{tt.e}}, "system", nil, "")) // checkPrecheck compares
		})
	}
}

// TestPrecheck_RefusalService names the service a refusal counts under, as
// Apply's rejected counters do, and only services that exist.
func TestPrecheck_RefusalService(t *testing.T) {
	fx := newPrecheckFixture(t)
	h, b := fx.h, fx.b
	for _, tt := range []struct {
		op   proto.Message
		want string
	}{
		{&rationv1.SubmitRequest{WorkerId: "w2", BucketId: b.Id}, "dm"},
		{&rationv1.AcquireRequest{Service: "old", WorkerId: "w1"}, "old"},
		{&rationv1.AcquireRequest{Service: "nope", WorkerId: "w1"}, ""},
		{&rationv1.ReleaseRequest{WorkerId: "w1", BucketId: 999}, ""},
		{&statev1.SetNode{}, ""},
	} {
		c := h.command(tt.op, "x", nil, "")
		if got := h.f.State().RefusalService(c); got != tt.want {
			t.Errorf("%s: RefusalService = %q, want %q", actionOf(c), got, tt.want)
		}
	}
}

// TestPrecheck_CoversEveryOperation applies each operation of the Command
// envelope, empty (which most refuse), on a populated state: whatever Apply
// refuses, Precheck must refuse alike. An operation added without its case
// in txn.check fails here.
func TestPrecheck_CoversEveryOperation(t *testing.T) {
	fx := newPrecheckFixture(t)
	h := fx.h
	op := (&statev1.Command{}).ProtoReflect().Descriptor().Oneofs().ByName("op")
	fields := op.Fields()
	refused := 0
	for i := range fields.Len() {
		fd := fields.Get(i)
		t.Run(string(fd.Name()), func(t *testing.T) {
			h.t = t
			c := h.command(&statev1.Tick{}, "admin", nil, "")
			m := c.ProtoReflect()
			m.Set(fd, m.NewField(fd))
			before := h.f.State()
			r := h.applyCmd(c) // checkPrecheck holds Precheck to Apply
			if r.GetError() != nil {
				refused++
				if before.Precheck(c) == nil {
					t.Fatalf("Apply refused %v; Precheck passed", r.GetError())
				}
			}
		})
	}
	if refused < fields.Len()/2 {
		t.Fatalf("only %d of %d empty operations were refused: the test no longer exercises Precheck", refused, fields.Len())
	}
}
