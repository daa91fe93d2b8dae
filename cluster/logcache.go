package cluster

import (
	"sync"

	"github.com/hashicorp/raft"
)

// logCache keeps the latest log entries in memory in front of the BoltDB
// log store, as raft.LogCache does, but bounded in bytes as well as in
// entries: an entry may be as large as MaxCommandBytes. Raft reads every
// entry back soon after storing it (the leader to replicate it, a follower
// to apply it); from the cache that costs no BoltDB read and no decoding.
type logCache struct {
	raft.LogStore

	mu       sync.Mutex
	ring     []*raft.Log // by index modulo its length
	bytes    int         // Data bytes of the entries in ring
	maxBytes int
	lo       uint64 // no cached entry has a lower index
	n        int    // entries in ring
}

// newLogCache caches up to entries entries and maxBytes bytes of their
// data in front of store. An entry larger than maxBytes is not cached.
func newLogCache(store raft.LogStore, entries, maxBytes int) *logCache {
	return &logCache{LogStore: store, ring: make([]*raft.Log, entries), maxBytes: maxBytes}
}

func (c *logCache) slot(idx uint64) **raft.Log { return &c.ring[idx%uint64(len(c.ring))] }

// GetLog answers from the cache when it holds idx, else from the store.
func (c *logCache) GetLog(idx uint64, out *raft.Log) error {
	c.mu.Lock()
	l := *c.slot(idx)
	c.mu.Unlock()
	if l != nil && l.Index == idx {
		*out = *l
		return nil
	}
	return c.LogStore.GetLog(idx, out)
}

// StoreLog stores one entry.
func (c *logCache) StoreLog(l *raft.Log) error { return c.StoreLogs([]*raft.Log{l}) }

// StoreLogs stores entries and, once they are durable, caches them.
func (c *logCache) StoreLogs(logs []*raft.Log) error {
	if err := c.LogStore.StoreLogs(logs); err != nil {
		return err
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, l := range logs {
		c.drop(c.slot(l.Index))
		if len(l.Data) > c.maxBytes {
			continue
		}
		if c.n == 0 || l.Index < c.lo {
			c.lo = l.Index
		}
		*c.slot(l.Index) = l
		c.bytes += len(l.Data)
		c.n++
		// Older entries than a ring's length back were overwritten.
		if n := uint64(len(c.ring)); l.Index >= n && c.lo <= l.Index-n {
			c.lo = l.Index - n + 1
		}
		for c.bytes > c.maxBytes && c.lo < l.Index {
			if s := c.slot(c.lo); *s != nil && (*s).Index == c.lo {
				c.drop(s)
			}
			c.lo++
		}
	}
	return nil
}

// DeleteRange deletes entries from the store and empties the cache (raft
// deletes only to truncate a conflicting suffix or compact a prefix).
func (c *logCache) DeleteRange(lo, hi uint64) error {
	c.mu.Lock()
	clear(c.ring)
	c.bytes, c.lo, c.n = 0, 0, 0
	c.mu.Unlock()
	return c.LogStore.DeleteRange(lo, hi)
}

func (c *logCache) drop(s **raft.Log) {
	if *s != nil {
		c.bytes -= len((*s).Data)
		c.n--
		*s = nil
	}
}
