package cluster

import (
	"bytes"
	"testing"

	"github.com/hashicorp/raft"
)

// countingStore counts the reads that reach the store.
type countingStore struct {
	raft.LogStore
	reads int
}

func (s *countingStore) GetLog(idx uint64, l *raft.Log) error {
	s.reads++
	return s.LogStore.GetLog(idx, l)
}

func entry(idx uint64, size int) *raft.Log {
	return &raft.Log{Index: idx, Term: 1, Type: raft.LogCommand, Data: bytes.Repeat([]byte{byte(idx)}, size)}
}

// cached reports whether GetLog(idx) was answered without the store, and
// checks that the answer is the entry stored.
func cached(t *testing.T, c *logCache, s *countingStore, idx uint64, size int) bool {
	t.Helper()
	before := s.reads
	var l raft.Log
	if err := c.GetLog(idx, &l); err != nil {
		t.Fatalf("GetLog(%d): %v", idx, err)
	}
	if l.Index != idx || !bytes.Equal(l.Data, entry(idx, size).Data) {
		t.Fatalf("GetLog(%d) = index %d, %d bytes", idx, l.Index, len(l.Data))
	}
	return s.reads == before
}

func TestLogCache_BoundedInEntriesAndBytes(t *testing.T) {
	s := &countingStore{LogStore: raft.NewInmemStore()}
	c := newLogCache(s, 4, 100)
	for i := uint64(1); i <= 6; i++ { // 10 bytes each: the entry bound applies
		if err := c.StoreLog(entry(i, 10)); err != nil {
			t.Fatal(err)
		}
	}
	for i, want := range map[uint64]bool{1: false, 2: false, 3: true, 4: true, 5: true, 6: true} {
		if got := cached(t, c, s, i, 10); got != want {
			t.Errorf("entries bound: entry %d cached %v, want %v", i, got, want)
		}
	}
	if c.bytes != 40 || c.n != 4 {
		t.Errorf("accounting: %d bytes in %d entries, want 40 in 4", c.bytes, c.n)
	}
	// 45 bytes each: at most two fit in 100 bytes, the newest.
	if err := c.StoreLogs([]*raft.Log{entry(7, 45), entry(8, 45), entry(9, 45)}); err != nil {
		t.Fatal(err)
	}
	for i, want := range map[uint64]bool{5: false, 6: false, 7: false, 8: true, 9: true} {
		size := 45
		if i < 7 {
			size = 10
		}
		if got := cached(t, c, s, i, size); got != want {
			t.Errorf("bytes bound: entry %d cached %v, want %v", i, got, want)
		}
	}
	if c.bytes > 100 {
		t.Errorf("%d bytes cached, bound 100", c.bytes)
	}
	// An entry over the bound is stored but never cached.
	if err := c.StoreLog(entry(10, 101)); err != nil {
		t.Fatal(err)
	}
	if cached(t, c, s, 10, 101) {
		t.Error("an entry larger than the byte bound was cached")
	}
	// A deletion empties the cache; what is left is read from the store.
	if err := c.DeleteRange(9, 10); err != nil {
		t.Fatal(err)
	}
	if cached(t, c, s, 8, 45) || c.bytes != 0 || c.n != 0 {
		t.Errorf("after DeleteRange: %d bytes in %d entries cached", c.bytes, c.n)
	}
	var l raft.Log
	if err := c.GetLog(9, &l); err != raft.ErrLogNotFound {
		t.Errorf("deleted entry: %v, want ErrLogNotFound", err)
	}
}
