package fsm

import (
	"bytes"
	"errors"
	"strings"
	"testing"

	"google.golang.org/protobuf/reflect/protoreflect"

	statev1 "github.com/rationhq/ration/api/ration/state/v1"
	rationv1 "github.com/rationhq/ration/api/ration/v1"
)

// The leader proposes AddItems and Submit compact; the state they leave
// must be the one the plain commands leave, byte for byte.
func TestCompact_SameStateAsPlain(t *testing.T) {
	plain, packed := newHarness(t), newHarness(t)
	packed.pack = true
	script(plain)
	script(packed)
	if !bytes.Equal(plain.snapshot(), packed.snapshot()) {
		t.Fatal("the compact log left another state than the plain one")
	}
}

func TestCompact_RoundTrip(t *testing.T) {
	h := newHarness(t)
	add := h.command(&rationv1.AddItemsRequest{Service: "dm", Items: []string{"a", "", "ü€", string(bytes.Repeat([]byte("x"), 300))}, Priority: 2}, "admin", nil, "r")
	sub := h.command(&rationv1.SubmitRequest{WorkerId: "w", BucketId: 3, Epoch: 9, Results: []*rationv1.ResultInput{
		{Item: "a", Verdict: "DM", Payload: "p"}, {Item: "b"}}}, "w", []byte("c"), "s")
	for _, c := range []*statev1.Command{add, sub} {
		before := c.String()
		p := Compact(c)
		if c.String() != before {
			t.Fatal("Compact changed its argument")
		}
		o, req, compacted := operations.decode(p)
		if !compacted {
			t.Fatalf("Compact left %T plain", p.Op)
		}
		packed := p.String()
		plain, _, err := o.compact.expand(req)
		if err != nil {
			t.Fatal(err)
		}
		if p.String() != packed {
			t.Fatal("expand changed its argument")
		}
		back := &statev1.Command{Header: c.Header}
		back.ProtoReflect().Set(o.field, protoreflect.ValueOfMessage(plain.ProtoReflect()))
		if back.String() != before {
			t.Fatalf("expand(Compact(c)) = %v, want %v", back, before)
		}
		if !bytes.Equal(canonicalHash(c), canonicalHash(p)) {
			t.Fatal("plain and compact forms hash differently")
		}
	}
	other := &statev1.Command{Header: add.Header, Op: &statev1.Command_Release{Release: &rationv1.ReleaseRequest{}}}
	if Compact(other) != other {
		t.Fatal("Compact changed a command it has no compact form for")
	}
}

// A request first applied plain and retried compact (or the other way)
// gets the first answer, not REQUEST_ID_REUSED.
func TestCompact_RetryAcrossForms(t *testing.T) {
	h := newHarness(t)
	h.createService("dm", "dmcheck", nil)
	add := h.command(&rationv1.AddItemsRequest{Service: "dm", Items: []string{"a", "b"}}, "admin", nil, "req-1")
	first := h.applyCmd(add)
	if ResultError(first) != nil {
		t.Fatal(ResultError(first))
	}
	again := h.applyCmd(Compact(add))
	if err := ResultError(again); err != nil {
		t.Fatalf("compact retry: %v", err)
	}
	if again.GetAddItems().GetAdded() != 2 {
		t.Fatalf("compact retry answered %v, want the first answer", again)
	}
}

// A compact command whose bytes do not decode is refused, never applied in
// part and never a panic.
func TestCompact_CorruptRefused(t *testing.T) {
	h := newHarness(t)
	h.createService("dm", "dmcheck", nil)
	hdr := h.command(&rationv1.ReleaseRequest{}, "admin", nil, "").Header
	for name, c := range map[string]*statev1.Command{
		"items cut":      {Op: &statev1.Command_CompactAddItems{CompactAddItems: &statev1.CompactAddItems{Request: &rationv1.AddItemsRequest{Service: "dm"}, Items: string([]byte{5, 'a'}), Count: 1}}},
		"items count":    {Op: &statev1.Command_CompactAddItems{CompactAddItems: &statev1.CompactAddItems{Request: &rationv1.AddItemsRequest{Service: "dm"}, Items: string([]byte{1, 'a'}), Count: 2}}},
		"huge count":     {Op: &statev1.Command_CompactAddItems{CompactAddItems: &statev1.CompactAddItems{Count: 1 << 31}}},
		"results cut":    {Op: &statev1.Command_CompactSubmit{CompactSubmit: &statev1.CompactSubmit{Results: string([]byte{1, 'a', 1}), Count: 1}}},
		"results count":  {Op: &statev1.Command_CompactSubmit{CompactSubmit: &statev1.CompactSubmit{Results: string([]byte{1, 'a', 0, 0, 1, 'b', 0, 0}), Count: 1}}},
		"results extra":  {Op: &statev1.Command_CompactSubmit{CompactSubmit: &statev1.CompactSubmit{Results: string([]byte{1, 'a', 0, 0, 9}), Count: 1}}},
		"no request":     {Op: &statev1.Command_CompactSubmit{CompactSubmit: &statev1.CompactSubmit{Results: string([]byte{0, 0}), Count: 1}}},
		"varint too big": {Op: &statev1.Command_CompactAddItems{CompactAddItems: &statev1.CompactAddItems{Items: strings.Repeat("\xff", 12), Count: 1}}},
	} {
		c.Header = hdr
		r := h.applyCmd(c)
		if err := ResultError(r); !errors.Is(err, ErrInvalidArgument) {
			t.Errorf("%s: %v, want INVALID_ARGUMENT", name, err)
		}
	}
	if s, _ := h.f.State().Service("dm"); s.Items[pending] != 0 {
		t.Fatalf("a corrupt packed command added items: %+v", s.Items)
	}
}
