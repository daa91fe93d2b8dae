package fsm

import (
	"cmp"
	"slices"
	"strconv"
)

// A done item whose result was trimmed needs little: that it was done, in
// which bucket (for done_retention and refresh_after, which go a bucket at
// a time). Such an item with a decimal id that fits in 64 bits (most
// account ids) is "remembered": it has no Item record, only an entry in the
// remembered index and its number in its bucket's Packed list, about 32
// bytes in all. Other ids keep their Item record.

// doneKey is a remembered item: its service, its id as a number, and the
// done bucket that remembers it.
type doneKey struct {
	service uint32
	id      uint64
	bucket  uint64
}

func lessDone(a, b doneKey) bool {
	return cmp.Or(cmp.Compare(a.service, b.service), cmp.Compare(a.id, b.id)) < 0
}

// numericID returns the number a canonical decimal id stands for: digits
// only, no leading zero (but "0" itself), within 64 bits.
func numericID(id string) (uint64, bool) {
	if len(id) > 1 && id[0] == '0' {
		return 0, false // ParseUint would take the leading zero
	}
	n, err := strconv.ParseUint(id, 10, 64) // digits only, no sign, in range
	return n, err == nil
}

// remembered finds a remembered item.
func (t *tables) remembered(svc uint32, id string) (doneKey, bool) {
	n, ok := numericID(id)
	if !ok {
		return doneKey{}, false
	}
	return t.remember.Get(doneKey{service: svc, id: n})
}

// itemOrRemembered looks an item up as reads see it: a remembered item is
// an Item done in its bucket.
func (t *tables) itemOrRemembered(svc uint32, id string) (*Item, bool) {
	if it, ok := t.item(svc, id); ok {
		return it, true
	}
	if k, ok := t.remembered(svc, id); ok {
		return &Item{Service: svc, ID: id, Bucket: k.bucket}, true
	}
	return nil, false
}

// compactDone turns the items done in a trimmed bucket into remembered
// ones where their ids allow, and drops from its list the ids that have
// moved on to other buckets. A bucket left with nothing is deleted.
func (x *txn) compactDone(s *Service, b *Bucket) {
	x.ownItems(b, 0)
	keep := b.Items[:0]
	for _, id := range b.Items {
		it, ok := x.item(b.Service, id)
		if !ok || it.parked() || it.Bucket != b.ID {
			continue // done here once, elsewhere now
		}
		if n, ok := numericID(id); ok {
			x.t.items.Delete(it)
			x.t.remember.Set(doneKey{service: b.Service, id: n, bucket: b.ID})
			b.Packed = append(b.Packed, n)
			continue
		}
		keep = append(keep, id)
	}
	b.Items = slices.Clip(keep)
	if len(b.Items) == 0 {
		b.Items = nil
	}
	b.Packed = slices.Clip(b.Packed)
	if len(b.Items) == 0 && len(b.Packed) == 0 {
		x.dropBucket(b.ID)
		s.Buckets[done]--
	}
}

// unremember turns a remembered item back into an Item record (done in its
// bucket), for a change: the caller writes it with its new state.
func (x *txn) unremember(s *Service, k doneKey) *Item {
	x.t.remember.Delete(k)
	b := x.bkt(k.bucket)
	b.Packed = slices.DeleteFunc(slices.Clone(b.Packed), func(n uint64) bool { return n == k.id })
	if len(b.Packed) == 0 {
		b.Packed = nil
		if len(b.Items) == 0 {
			x.dropBucket(b.ID)
			s.Buckets[done]--
		}
	}
	return &Item{Service: k.service, ID: strconv.FormatUint(k.id, 10), Bucket: k.bucket, Priority: b.Priority}
}

// rememberedIn calls fn for each item a bucket remembers.
func (x *txn) rememberedIn(b *Bucket, fn func(doneKey)) {
	for _, n := range b.Packed {
		if k, ok := x.t.remember.Get(doneKey{service: b.Service, id: n}); ok && k.bucket == b.ID {
			fn(k)
		}
	}
}

// ItemIDs returns the ids a bucket lists: its Items, then those it
// remembers by number (a done bucket whose results were trimmed).
func (b *Bucket) ItemIDs() []string {
	if len(b.Packed) == 0 {
		return b.Items
	}
	out := make([]string, 0, len(b.Items)+len(b.Packed))
	out = append(out, b.Items...)
	for _, n := range b.Packed {
		out = append(out, strconv.FormatUint(n, 10))
	}
	return out
}
