package fsm

import (
	"errors"
	"fmt"
	"slices"
	"strconv"
)

// CheckInvariants verifies the rules the state machine keeps at every
// applied index: each item is in exactly one state and in the bucket it
// names; no bucket has two holders or shares an epoch with another held
// bucket; every held bucket belongs to an active worker of an active
// service; the counts kept beside the records and every secondary index
// agree with the records. It reads the whole state and is meant for tests
// and diagnostics.
func (s *State) CheckInvariants() error {
	c := &checker{t: s.t, epochs: map[uint64]uint64{}, inBucket: map[string]uint64{}}
	c.tally, _ = tallyOf(s.t) // an item in a missing bucket is reported by checkItems
	c.checkBuckets()
	c.checkItems()
	c.checkRegistrations()
	c.checkServices()
	c.checkIndexSizes()
	c.checkActivity()
	return errors.Join(c.errs...)
}

// tally is what a snapshot does not store but the records imply: each
// service's items and buckets by state, and the buckets each registration
// holds. Restore derives them from it; CheckInvariants compares them with
// what the state kept.
type tally struct {
	items, buckets map[uint32]*StateCounts
	held           map[regKey]uint32
	results        map[uint32]resultTally
}

// resultTally is what a service's result batches imply: the last seq, and
// the results (and bytes) past its export position.
type resultTally struct {
	last, unacked, unackedBytes uint64
}

// tallyOf counts the records. An item in a missing bucket (or one of
// another service) is left out, and the first such is the error.
func tallyOf(t *tables) (*tally, error) {
	c := &tally{items: map[uint32]*StateCounts{}, buckets: map[uint32]*StateCounts{}, held: map[regKey]uint32{},
		results: map[uint32]resultTally{}}
	add := func(m map[uint32]*StateCounts, svc uint32, state int32) {
		if m[svc] == nil {
			m[svc] = new(StateCounts)
		}
		m[svc][state]++
	}
	t.buckets.Scan(func(b *Bucket) bool {
		add(c.buckets, b.Service, int32(b.State))
		if b.Held() {
			c.held[regKey{b.Service, b.Holder}]++
		}
		return true
	})
	t.results.Scan(func(rb *ResultBatch) bool {
		r := c.results[rb.Service]
		r.last = rb.Seq // batches scan in seq order
		if s, ok := t.serviceByOrdinal(rb.Service); ok && rb.Seq > s.AckedThrough {
			r.unacked += uint64(rb.Len())
			r.unackedBytes += uint64(rb.Size())
		}
		c.results[rb.Service] = r
		return true
	})
	var err error
	var last *Bucket // items in id order mostly share a bucket with the one before
	t.items.Scan(func(it *Item) bool {
		st := it.parkedState()
		if !it.parked() {
			b, ok := last, last != nil && last.ID == it.Bucket
			if !ok {
				b, ok = t.bucket(it.Bucket)
				last = b
			}
			if !ok || b.Service != it.Service {
				if err == nil {
					err = fmt.Errorf("item %q names bucket %d, which is missing or of another service", it.ID, it.Bucket)
				}
				return true
			}
			st = itemStateOf(b)
		}
		add(c.items, it.Service, int32(st))
		return true
	})
	t.remember.Scan(func(k doneKey) bool {
		add(c.items, k.service, int32(itemDone))
		return true
	})
	return c, err
}

// countsOf returns one service's counts from m, zero when it has none.
func countsOf(m map[uint32]*StateCounts, svc uint32) StateCounts {
	if v := m[svc]; v != nil {
		return *v
	}
	return StateCounts{}
}

// checker collects invariant violations, at most 20.
type checker struct {
	t        *tables
	tally    *tally
	errs     []error
	epochs   map[uint64]uint64 // epoch -> the held bucket with it
	inBucket map[string]uint64 // service/item -> the live bucket listing it

	ready, leases, dead int // buckets by index they must be in
	trimmed             int // done buckets whose results were trimmed
	remembered          int // items remembered by done buckets
	closed              int // done buckets
	voting              int // buckets awaiting a quorum
	active              int // active registrations
}

func (c *checker) fail(format string, args ...any) {
	if len(c.errs) < 20 {
		c.errs = append(c.errs, fmt.Errorf(format, args...))
	}
}

func (c *checker) checkBuckets() {
	t := c.t
	t.buckets.Scan(func(b *Bucket) bool {
		svc, ok := t.serviceByOrdinal(b.Service)
		if !ok {
			c.fail("bucket %d: unknown service %d", b.ID, b.Service)
			return true
		}
		if b.ID >= t.meta.nextBucket {
			c.fail("bucket %d: id not below next id %d", b.ID, t.meta.nextBucket)
		}
		if len(b.Items) == 0 && len(b.Packed) == 0 {
			c.fail("bucket %d: empty", b.ID)
		}
		if len(b.Packed) > 0 {
			c.checkPacked(b)
		}
		if len(b.Items) > int(svc.Config.BucketSize) && b.State == unassigned && slices.ContainsFunc(svc.Open, func(o OpenBucket) bool { return o.Bucket == b.ID }) {
			c.fail("bucket %d: open but over bucket_size", b.ID)
		}
		c.checkBucketIndex(svc, b)
		if b.Held() {
			c.checkHeld(svc, b)
		}
		if b.State != done {
			c.checkListed(b)
		}
		c.checkVotes(b)
		return true
	})
}

// checkVotes checks a bucket's validation records: votes only on a bucket
// that is not done, from distinct workers other than its holder, each with a
// result for every item; canaries only on a held bucket, distinct, in order
// of position, and indexed as voting exactly when it awaits a quorum.
func (c *checker) checkVotes(b *Bucket) {
	if b.awaitingQuorum() {
		c.voting++
		if _, ok := c.t.voting.Get(svcSeq{b.Service, b.ID}); !ok {
			c.fail("bucket %d: holds votes but is not in the voting index", b.ID)
		}
	}
	if len(b.Votes) > 0 && b.State == done {
		c.fail("bucket %d: done but holds votes", b.ID)
	}
	for i, v := range b.Votes {
		if votedOn(&Bucket{Votes: b.Votes[:i]}, v.Worker) {
			c.fail("bucket %d: two votes from %q", b.ID, v.Worker)
		}
		if b.Held() && v.Worker == b.Holder {
			c.fail("bucket %d: held by %q, who has voted on it", b.ID, v.Worker)
		}
		for _, id := range b.Items {
			if _, ok := v.Find(id); !ok {
				c.fail("bucket %d: %q's vote has no result for item %q", b.ID, v.Worker, id)
			}
		}
	}
	if len(b.Canaries) > 0 && !b.Held() {
		c.fail("bucket %d: %s but shows canaries", b.ID, stateName(b.State))
	}
	for i, ca := range b.Canaries {
		if int(ca.Position) > len(b.Items) || (i > 0 && ca.Position < b.Canaries[i-1].Position) {
			c.fail("bucket %d: canary %q at position %d out of order or range", b.ID, ca.ID, ca.Position)
		}
		if slices.ContainsFunc(b.Canaries[:i], func(o CanaryAt) bool { return o.ID == ca.ID }) {
			c.fail("bucket %d: canary %q shown twice", b.ID, ca.ID)
		}
	}
}

// checkBucketIndex checks that a bucket is in the index of its state.
func (c *checker) checkBucketIndex(svc *Service, b *Bucket) {
	t := c.t
	switch b.State {
	case unassigned:
		c.ready++
		if _, ok := t.ready.Get(readyKeyOf(b, int64(svc.Config.PriorityAging))); !ok {
			c.fail("bucket %d: unassigned but not in the ready index", b.ID)
		}
		if b.Holder != "" {
			c.fail("bucket %d: unassigned with holder %q", b.ID, b.Holder)
		}
	case leased:
		c.leases++
		if _, ok := t.leases.Get(timeKey{b.Deadline, b.ID}); !ok {
			c.fail("bucket %d: leased but not in the lease index", b.ID)
		}
	case dead:
		c.dead++
		if _, ok := t.dead.Get(timeKey{b.ReleaseAt, b.ID}); !ok {
			c.fail("bucket %d: dead but not in the dead index", b.ID)
		}
	case done:
		c.closed++
		if _, ok := t.closed.Get(svcTimeKey{b.Service, b.ClosedAt, b.ID}); !ok {
			c.fail("bucket %d: done but not in the closed index", b.ID)
		}
		if b.ResultSeq == 0 { // its results were trimmed
			c.trimmed++
			if _, ok := t.trimmed.Get(svcTimeKey{b.Service, b.ClosedAt, b.ID}); !ok {
				c.fail("bucket %d: done with its results trimmed, but not in the trimmed index", b.ID)
			}
		} else if _, ok := t.results.Get(&ResultBatch{Seq: b.ResultSeq}); !ok {
			c.fail("bucket %d: done without its result batch %d", b.ID, b.ResultSeq)
		}
	default:
		c.fail("bucket %d: state %v", b.ID, b.State)
	}
}

// checkHeld checks a leased or dead bucket: one holder, an epoch of its
// own, an active worker of an active service.
func (c *checker) checkHeld(svc *Service, b *Bucket) {
	t := c.t
	if b.Holder == "" {
		c.fail("bucket %d: held by nobody", b.ID)
	}
	if _, ok := t.held.Get(heldKey{b.Service, b.Holder, b.ID}); !ok {
		c.fail("bucket %d: held but not in the holder index", b.ID)
	}
	if prev, dup := c.epochs[b.Epoch]; dup {
		c.fail("buckets %d and %d share epoch %d", prev, b.ID, b.Epoch)
	}
	c.epochs[b.Epoch] = b.ID
	if b.Epoch == 0 || b.Epoch >= t.meta.nextEpoch {
		c.fail("bucket %d: epoch %d outside 1..%d", b.ID, b.Epoch, t.meta.nextEpoch-1)
	}
	if !svc.Active() {
		c.fail("bucket %d: held in revoked service %q", b.ID, svc.Name)
	}
	if r, ok := t.registration(b.Service, b.Holder); !ok || !r.Active() {
		c.fail("bucket %d: held by %q, who is not an active worker of %q", b.ID, b.Holder, svc.Name)
	}
}

// checkListed checks that each item a live bucket lists is in no other
// live bucket and names this one.
func (c *checker) checkListed(b *Bucket) {
	for _, id := range b.Items {
		k := fmt.Sprintf("%d/%s", b.Service, id)
		if other, dup := c.inBucket[k]; dup {
			c.fail("item %s: in live buckets %d and %d", k, other, b.ID)
		}
		c.inBucket[k] = b.ID
		it, ok := c.t.item(b.Service, id)
		switch {
		case !ok:
			c.fail("bucket %d lists missing item %q", b.ID, id)
		case it.parked() || it.Bucket != b.ID:
			c.fail("bucket %d lists item %q, which is in bucket %d (%v)", b.ID, id, it.Bucket, it.parkedState())
		}
	}
}

func (c *checker) checkItems() {
	t := c.t
	t.items.Scan(func(it *Item) bool {
		if it.Quarantined && it.Inconclusive {
			c.fail("item %q: quarantined and inconclusive", it.ID)
		}
		if it.parked() {
			if it.Bucket != 0 {
				c.fail("item %q: %v but in bucket %d", it.ID, it.parkedState(), it.Bucket)
			}
			return true
		}
		b, ok := t.bucket(it.Bucket)
		if !ok {
			c.fail("item %q: in missing bucket %d", it.ID, it.Bucket)
			return true
		}
		if itemStateOf(b) == itemDone && b.ResultSeq != 0 {
			rb, _ := t.results.Get(&ResultBatch{Seq: b.ResultSeq})
			if r, ok := findResult(rb, it.ID); !ok || r.RevertedAt != 0 {
				c.fail("item %q: done in bucket %d without a standing result", it.ID, b.ID)
			}
		} else if itemStateOf(b) != itemDone && c.inBucket[fmt.Sprintf("%d/%s", it.Service, it.ID)] != b.ID {
			c.fail("item %q: names bucket %d, which does not list it", it.ID, b.ID)
		}
		return true
	})
}

func (c *checker) checkRegistrations() {
	t := c.t
	t.regs.Scan(func(r *Registration) bool {
		if r.Active() {
			c.active++
			if _, ok := t.idle.Get(idleKey{r.idleAt, r.Service, r.Worker}); !ok {
				c.fail("registration %d/%s: active but not in the idle index", r.Service, r.Worker)
			}
		}
		if held := c.tally.held[regKey{r.Service, r.Worker}]; r.Held != held {
			c.fail("registration %d/%s: Held %d, holds %d", r.Service, r.Worker, r.Held, held)
		}
		if _, ok := t.worker(r.Worker); !ok {
			c.fail("registration %d/%s: worker id never bound", r.Service, r.Worker)
		}
		return true
	})
}

func (c *checker) checkServices() {
	t := c.t
	t.services.Scan(func(s *Service) bool {
		if o, ok := t.serviceByOrdinal(s.Ordinal); !ok || o != s {
			c.fail("service %q: ordinal index out of step", s.Name)
		}
		for i, ca := range s.Canaries {
			if i > 0 && ca.ID <= s.Canaries[i-1].ID {
				c.fail("service %q: canaries out of order at %q", s.Name, ca.ID)
			}
			if _, ok := t.item(s.Ordinal, ca.ID); ok {
				c.fail("service %q: canary %q is also an item", s.Name, ca.ID)
			}
		}
		if want := countsOf(c.tally.items, s.Ordinal); s.Items != want {
			c.fail("service %q: item counts %v, actual %v", s.Name, s.Items, want)
		}
		if want := countsOf(c.tally.buckets, s.Ordinal); s.Buckets != want {
			c.fail("service %q: bucket counts %v, actual %v", s.Name, s.Buckets, want)
		}
		r := c.tally.results[s.Ordinal]
		if s.LastResultSeq < r.last || s.UnackedResults != r.unacked || s.UnackedBytes != r.unackedBytes {
			c.fail("service %q: last result %d, unacked %d (%d B); the batches say at least %d, %d (%d B)", s.Name,
				s.LastResultSeq, s.UnackedResults, s.UnackedBytes, r.last, r.unacked, r.unackedBytes)
		}
		if s.AckedThrough > s.LastResultSeq {
			c.fail("service %q: acknowledged through %d, past its last result batch %d", s.Name, s.AckedThrough, s.LastResultSeq)
		}
		prios := map[int32]bool{}
		for _, o := range s.Open {
			b, ok := t.bucket(o.Bucket)
			if !ok || b.State != unassigned || b.Priority != o.Priority || len(b.Items) >= int(s.Config.BucketSize) {
				c.fail("service %q: open bucket %d is not an unassigned, unfilled bucket of priority %d", s.Name, o.Bucket, o.Priority)
			}
			if prios[o.Priority] {
				c.fail("service %q: two open buckets of priority %d", s.Name, o.Priority)
			}
			prios[o.Priority] = true
		}
		return true
	})
}

// checkIndexSizes checks that every secondary index has an entry per
// record it indexes, and no more.
func (c *checker) checkIndexSizes() {
	t := c.t
	if n := t.ready.Len(); n != c.ready {
		c.fail("ready index has %d entries for %d unassigned buckets", n, c.ready)
	}
	if n := t.leases.Len(); n != c.leases {
		c.fail("lease index has %d entries for %d leased buckets", n, c.leases)
	}
	if n := t.dead.Len(); n != c.dead {
		c.fail("dead index has %d entries for %d dead buckets", n, c.dead)
	}
	if n := t.remember.Len(); n != c.remembered {
		c.fail("remembered index has %d entries for %d items that buckets remember", n, c.remembered)
	}
	if n := t.closed.Len(); n != c.closed {
		c.fail("closed index has %d entries for %d done buckets", n, c.closed)
	}
	if n := t.trimmed.Len(); n != c.trimmed {
		c.fail("trimmed index has %d entries for %d done buckets with their results trimmed", n, c.trimmed)
	}
	if n := t.voting.Len(); n != c.voting {
		c.fail("voting index has %d entries for %d buckets awaiting a quorum", n, c.voting)
	}
	if n := t.held.Len(); n != c.leases+c.dead {
		c.fail("holder index has %d entries for %d held buckets", n, c.leases+c.dead)
	}
	if n := t.idle.Len(); n != c.active {
		c.fail("idle index has %d entries for %d active registrations", n, c.active)
	}
	if t.services.Len() != t.ordinals.Len() {
		c.fail("%d services by name, %d by ordinal", t.services.Len(), t.ordinals.Len())
	}
	if t.results.Len() != t.resSvc.Len() || t.results.Len() != t.resWkr.Len() {
		c.fail("result indexes out of step: %d, %d, %d", t.results.Len(), t.resSvc.Len(), t.resWkr.Len())
	}
	if t.requests.Len() != t.reqAge.Len() {
		c.fail("request indexes out of step: %d, %d", t.requests.Len(), t.reqAge.Len())
	}
	var cost uint64
	t.requests.Scan(func(r *request) bool {
		cost += r.cost()
		return true
	})
	if cost != t.meta.requestBytes {
		c.fail("request ids cost %d bytes, counted %d", cost, t.meta.requestBytes)
	}
}

func (c *checker) checkActivity() {
	var prev *Activity
	c.t.activity.Scan(func(a *Activity) bool {
		if prev != nil && a.At < prev.At {
			c.fail("activity %d at %d is before activity %d at %d", a.Seq, a.At, prev.Seq, prev.At)
		}
		if a.Seq >= c.t.meta.nextSeq {
			c.fail("activity %d: seq not below next %d", a.Seq, c.t.meta.nextSeq)
		}
		prev = a
		return true
	})
}

// checkPacked checks that a bucket remembers items only when done with its
// results trimmed, and that each remembered item names it and has no item
// record besides.
func (c *checker) checkPacked(b *Bucket) {
	if b.State != done || b.ResultSeq != 0 {
		c.fail("bucket %d: remembers %d items but is %v with result %d", b.ID, len(b.Packed), b.State, b.ResultSeq)
	}
	for _, n := range b.Packed {
		k, ok := c.t.remember.Get(doneKey{service: b.Service, id: n})
		if !ok || k.bucket != b.ID {
			c.fail("bucket %d lists remembered item %d, which names bucket %d (found %v)", b.ID, n, k.bucket, ok)
		}
		if _, dup := c.t.item(b.Service, strconv.FormatUint(n, 10)); dup {
			c.fail("item %d of service %d: remembered and recorded", n, b.Service)
		}
		c.remembered++
	}
}
