package fsm

import (
	"encoding/binary"
	"fmt"
	"iter"
	"strings"
)

// Results are kept as history, so a service accumulates millions of them.
// A batch stores its results encoded in one string, each result as three
// length-prefixed strings (item, verdict, payload): one allocation per
// submit instead of four per result, and nothing for the garbage collector
// to scan. Strings read back are substrings of it.

// encodeResults encodes results, given as (item, verdict, payload) by f,
// into one string.
func encodeResults[T any](xs []T, f func(T) (item, verdict, payload string)) string {
	size := 0 // exactly: results are kept for good
	for _, x := range xs {
		a, b, c := f(x)
		size += encodedLen(a) + encodedLen(b) + encodedLen(c)
	}
	var buf strings.Builder
	buf.Grow(size)
	for _, x := range xs {
		a, b, c := f(x)
		writeString(&buf, a)
		writeString(&buf, b)
		writeString(&buf, c)
	}
	return buf.String()
}

// packedLen is the length of s packed: its uvarint length and its bytes.
func encodedLen(s string) int {
	n := 1
	for v := uint64(len(s)); v >= 0x80; v >>= 7 {
		n++
	}
	return n + len(s)
}

// writePacked writes s packed: its uvarint length and its bytes.
func writeString(buf *strings.Builder, s string) {
	var n [binary.MaxVarintLen64]byte
	buf.Write(n[:binary.PutUvarint(n[:], uint64(len(s)))])
	buf.WriteString(s)
}

// Len returns the number of results in the batch.
func (rb *ResultBatch) Len() int { return rb.n }

// Size returns the bytes the batch's results take, encoded.
func (rb *ResultBatch) Size() int { return len(rb.encoded) }

// All yields the batch's results in the order they were submitted.
func (rb *ResultBatch) All() iter.Seq2[int, Result] {
	return func(yield func(int, Result) bool) {
		p := rb.encoded
		for i := 0; i < rb.n; i++ {
			var f [3]string
			for j := range f {
				f[j], p = nextString(p)
			}
			if !yield(i, Result{Item: f[0], Verdict: f[1], Payload: f[2], RevertedAt: rb.RevertedAt}) {
				return
			}
		}
	}
}

// Find returns the batch's result for an item.
func (rb *ResultBatch) Find(item string) (Result, bool) {
	for _, r := range rb.All() {
		if r.Item == item {
			return r, true
		}
	}
	return Result{}, false
}

// findResult is Find on a batch that may be missing.
func findResult(rb *ResultBatch, item string) (Result, bool) {
	if rb == nil {
		return Result{}, false
	}
	return rb.Find(item)
}

// nextString reads one length-prefixed string from p, which must hold one.
func nextString(p string) (string, string) {
	s, rest, ok := readString(p)
	if !ok {
		panic(fmt.Sprintf("fsm: encoded results corrupt (%d bytes left)", len(p)))
	}
	return s, rest
}

// readString reads one length-prefixed string from p.
func readString(p string) (s, rest string, ok bool) {
	var n uint64
	k := 0
	for shift := 0; ; shift += 7 {
		if k == len(p) || shift > 63 {
			return "", "", false
		}
		c := p[k]
		k++
		n |= uint64(c&0x7f) << shift
		if c < 0x80 {
			break
		}
	}
	if uint64(len(p)-k) < n {
		return "", "", false
	}
	return p[k : k+int(n)], p[k+int(n):], true
}

// newResultBatch returns rb holding results.
func newResultBatch[T any](rb ResultBatch, xs []T, f func(T) (item, verdict, payload string)) *ResultBatch {
	rb.n = len(xs)
	rb.encoded = encodeResults(xs, f)
	return &rb
}
