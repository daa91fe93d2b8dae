package fsm

import (
	"bytes"
	"crypto/sha256"
	"io"
	"slices"
	"testing"

	"google.golang.org/protobuf/proto"

	statev1 "github.com/rationhq/ration/api/ration/state/v1"
	rationv1 "github.com/rationhq/ration/api/ration/v1"
)

func tokenHash(s string) []byte {
	h := sha256.Sum256([]byte(s))
	return h[:]
}

// ownerCmd stamps op as the server does for a call made with an owner token
// (cred) and, for CreateService and RotateOwnerToken, a new token's hash.
func (h *harness) ownerCmd(op proto.Message, actor string, cred, newHash []byte, requestID string) *statev1.Command {
	var c *statev1.Command
	if r, ok := op.(*rationv1.RotateOwnerTokenRequest); ok {
		c = h.command(&rationv1.ReinstateServiceRequest{}, actor, nil, requestID)
		c.Op = &statev1.Command_RotateOwnerToken{RotateOwnerToken: r}
	} else {
		c = h.command(op, actor, nil, requestID)
	}
	c.Header.OwnerCredential, c.Header.NewOwnerTokenHash = cred, newHash
	return c
}

func wantReason(t *testing.T, r *statev1.CommandResult, want *Error) {
	t.Helper()
	err := ResultError(r)
	if want == nil {
		if err != nil {
			t.Fatalf("refused: %v", err)
		}
		return
	}
	if Reason(err) != want.Reason {
		t.Fatalf("got %v, want %s", err, want.Reason)
	}
}

func TestFSM_CreateServiceStoresOwnerTokenHash(t *testing.T) {
	h := newHarness(t)
	h1, h2 := tokenHash("one"), tokenHash("two")
	create := &rationv1.CreateServiceRequest{Name: "svc", Kind: "dmcheck"}
	r := h.applyCmd(h.ownerCmd(create, "admin", nil, h1, "rid"))
	wantReason(t, r, nil)
	if !bytes.Equal(r.GetOwnerTokenHash(), h1) {
		t.Fatalf("result owner_token_hash = %x, want %x", r.GetOwnerTokenHash(), h1)
	}
	svc, _ := h.f.State().Service("svc")
	if !svc.OwnerTokenMatches(h1) || svc.OwnerTokenMatches(h2) {
		t.Fatal("the service does not hold the proposer's hash")
	}

	// A retry with the same request id carries another proposer's hash: it
	// is the same request (no REQUEST_ID_REUSED), replays the first answer
	// and keeps the first hash.
	r = h.applyCmd(h.ownerCmd(proto.Clone(create), "admin", nil, h2, "rid"))
	wantReason(t, r, nil)
	if !bytes.Equal(r.GetOwnerTokenHash(), h1) {
		t.Fatalf("retried result owner_token_hash = %x, want the first %x", r.GetOwnerTokenHash(), h1)
	}
	if svc, _ := h.f.State().Service("svc"); !svc.OwnerTokenMatches(h1) {
		t.Fatal("a retried CreateService replaced the owner token hash")
	}

	// Without a hash (an older proposer) the service has no token.
	h.createService("bare", "dmcheck", nil)
	if svc, _ := h.f.State().Service("bare"); svc.OwnerTokenHash != nil || svc.OwnerTokenMatches(nil) {
		t.Fatalf("service created without a hash has %x", svc.OwnerTokenHash)
	}
	// A hash of the wrong size is refused.
	wantReason(t, h.applyCmd(h.ownerCmd(&rationv1.CreateServiceRequest{Name: "odd", Kind: "dmcheck"}, "admin", nil, []byte("short"), "")), ErrInvalidArgument)

	// The hash survives a snapshot, and the same log gives the same bytes.
	snap := h.snapshot()
	f := New(nil)
	if err := f.Restore(io.NopCloser(bytes.NewReader(snap))); err != nil {
		t.Fatal(err)
	}
	if svc, _ := f.State().Service("svc"); !svc.OwnerTokenMatches(h1) {
		t.Fatal("restore lost the owner token hash")
	}
	var again bytes.Buffer
	if err := f.State().WriteSnapshot(&again); err != nil || !bytes.Equal(snap, again.Bytes()) {
		t.Fatalf("snapshot → restore → snapshot changed the bytes (%v)", err)
	}
}

func TestFSM_OwnerCredentialIsCheckedAtApply(t *testing.T) {
	h := newHarness(t)
	ha, hb := tokenHash("a"), tokenHash("b")
	wantReason(t, h.applyCmd(h.ownerCmd(&rationv1.CreateServiceRequest{Name: "a", Kind: "dmcheck"}, "admin", nil, ha, "")), nil)
	wantReason(t, h.applyCmd(h.ownerCmd(&rationv1.CreateServiceRequest{Name: "b", Kind: "dmcheck"}, "admin", nil, hb, "")), nil)
	h.createService("bare", "dmcheck", nil)
	add := func(svc string) *rationv1.AddItemsRequest {
		return &rationv1.AddItemsRequest{Service: svc, Items: []string{"x"}}
	}
	for _, tc := range []struct {
		name string
		op   proto.Message
		cred []byte
		want *Error
	}{
		{"own service", add("a"), ha, nil},
		{"another service's token", add("a"), hb, ErrBadOwnerToken},
		{"unknown token", add("a"), tokenHash("nobody"), ErrBadOwnerToken},
		{"service without a token", add("bare"), ha, ErrBadOwnerToken},
		{"unknown service", add("zzz"), ha, ErrBadOwnerToken},
		{"revoke own", &rationv1.RevokeServiceRequest{Name: "a", Reason: "r"}, ha, nil},
		{"reinstate own", &rationv1.ReinstateServiceRequest{Name: "a"}, ha, nil},
		{"update another", &rationv1.UpdateServiceRequest{Name: "b"}, ha, ErrBadOwnerToken},
		{"create is the admin's", &rationv1.CreateServiceRequest{Name: "c", Kind: "dmcheck"}, ha, ErrBadOwnerToken},
		{"worker ops are not the owner's", &rationv1.RegisterRequest{Service: "a", WorkerId: "w"}, ha, ErrBadOwnerToken},
	} {
		t.Run(tc.name, func(t *testing.T) {
			before := h.stateBytes()
			wantReason(t, h.applyCmd(h.ownerCmd(tc.op, "owner", tc.cred, nil, "")), tc.want)
			if tc.want != nil {
				h.assertOnlyActivityChanged(before)
			}
		})
	}
}

func TestFSM_RotateOwnerTokenEndsTheOldOneExactly(t *testing.T) {
	h := newHarness(t)
	old, next := tokenHash("old"), tokenHash("new")
	wantReason(t, h.applyCmd(h.ownerCmd(&rationv1.CreateServiceRequest{Name: "a", Kind: "dmcheck"}, "admin", nil, old, "")), nil)
	add := &rationv1.AddItemsRequest{Service: "a", Items: []string{"x"}}
	wantReason(t, h.applyCmd(h.ownerCmd(add, "owner", old, nil, "add-1")), nil)

	// The owner rotates its own token.
	r := h.applyCmd(h.ownerCmd(&rationv1.RotateOwnerTokenRequest{Name: "a"}, "owner", old, next, ""))
	wantReason(t, r, nil)
	if !bytes.Equal(r.GetOwnerTokenHash(), next) {
		t.Fatalf("rotate result owner_token_hash = %x", r.GetOwnerTokenHash())
	}
	// From the rotation's index on, the old token gets nothing: not even
	// the replay of an answer it got before.
	wantReason(t, h.applyCmd(h.ownerCmd(proto.Clone(add), "owner", old, nil, "add-1")), ErrBadOwnerToken)
	wantReason(t, h.applyCmd(h.ownerCmd(&rationv1.RotateOwnerTokenRequest{Name: "a"}, "owner", old, tokenHash("x"), "")), ErrBadOwnerToken)
	// The new one replays it.
	r = h.applyCmd(h.ownerCmd(proto.Clone(add), "owner", next, nil, "add-1"))
	wantReason(t, r, nil)
	if r.GetAddItems().GetAdded() != 1 {
		t.Fatalf("replayed answer %v, want the first (added 1)", r)
	}
	// The admin rotates without a credential; a rotation needs a new hash.
	third := tokenHash("third")
	wantReason(t, h.applyCmd(h.ownerCmd(&rationv1.RotateOwnerTokenRequest{Name: "a"}, "admin", nil, third, "")), nil)
	wantReason(t, h.applyCmd(h.ownerCmd(&rationv1.RotateOwnerTokenRequest{Name: "a"}, "admin", nil, nil, "")), ErrInvalidArgument)
	wantReason(t, h.applyCmd(h.ownerCmd(&rationv1.RotateOwnerTokenRequest{Name: "nope"}, "admin", nil, third, "")), ErrServiceNotFound)
	if svc, _ := h.f.State().Service("a"); !svc.OwnerTokenMatches(third) || svc.OwnerTokenMatches(next) {
		t.Fatal("the admin's rotation did not take")
	}
	acts := h.f.State().Activity(ActivityQuery{Service: "a", Action: ActRotateOwnerToken, Limit: 10})
	var got []string
	for _, a := range acts {
		got = append(got, a.Actor+":"+a.Reason)
	}
	if want := []string{"owner:", "owner:BAD_OWNER_TOKEN", "admin:", "admin:INVALID_ARGUMENT"}; !slices.Equal(got, want) {
		t.Fatalf("rotation activity (actor:reason) = %q, want %q", got, want)
	}
}
