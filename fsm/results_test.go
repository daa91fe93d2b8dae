package fsm

import (
	"encoding/binary"
	"slices"
	"strings"
	"testing"
	"unsafe"
)

func TestResultBatch_PackRoundTrip(t *testing.T) {
	in := []Result{
		{Item: "a", Verdict: "DM", Payload: ""},
		{Item: "", Verdict: "", Payload: strings.Repeat("x", 300)}, // two-byte lengths
		{Item: "ü-€", Verdict: "NON_DM", Payload: strings.Repeat("y", 1<<16)},
	}
	rb := newResultBatch(ResultBatch{Seq: 7, RevertedAt: 9}, in, func(r Result) (string, string, string) {
		return r.Item, r.Verdict, r.Payload
	})
	if rb.Len() != len(in) {
		t.Fatalf("Len = %d, want %d", rb.Len(), len(in))
	}
	var out []Result
	for i, r := range rb.All() {
		if i != len(out) {
			t.Fatalf("index %d, want %d", i, len(out))
		}
		out = append(out, r)
	}
	for i := range in {
		in[i].RevertedAt = 9
	}
	if !slices.Equal(in, out) {
		t.Fatalf("round trip: got %+v", out)
	}
	if r, ok := rb.Find("ü-€"); !ok || r.Verdict != "NON_DM" {
		t.Fatalf("Find = %+v, %v", r, ok)
	}
	if _, ok := rb.Find("missing"); ok {
		t.Fatal("Find found a missing item")
	}
	// Stopping early stops.
	n := 0
	for range rb.All() {
		n++
		break
	}
	if n != 1 {
		t.Fatalf("break after 1, got %d", n)
	}
}

func TestResultBatch_CorruptPanics(t *testing.T) {
	for _, p := range []string{"\x05ab", "\xff", "\x80\x80\x80\x80\x80\x80\x80\x80\x80\x80\x01"} {
		func() {
			defer func() {
				if recover() == nil {
					t.Errorf("%q: no panic", p)
				}
			}()
			rb := &ResultBatch{n: 1, encoded: p}
			for range rb.All() {
			}
		}()
	}
}

func TestEncodedLen(t *testing.T) {
	for _, n := range []int{0, 1, 127, 128, 16383, 16384, 1 << 21} {
		s := strings.Repeat("x", n)
		var b strings.Builder
		writeString(&b, s)
		want := len(binary.AppendUvarint(nil, uint64(n))) + n
		if got := encodedLen(s); got != want || b.Len() != want {
			t.Errorf("%d bytes: encodedLen %d, writeString wrote %d, want %d", n, got, b.Len(), want)
		}
	}
}

func TestItemSize(t *testing.T) {
	if n := unsafe.Sizeof(Item{}); n != 48 {
		t.Errorf("Item is %d bytes, want 48: keep its fields ordered by size", n)
	}
}
