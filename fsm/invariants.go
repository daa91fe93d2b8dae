package fsm

import (
	"errors"
	"fmt"
	"slices"
)

// CheckInvariants verifies the rules the state machine keeps at every
// applied index: each item is in exactly one state and in the bucket it
// names; no bucket has two holders or shares an epoch with another held
// bucket; every held bucket belongs to an active worker of an active
// service; the counts kept beside the records and every secondary index
// agree with the records. It reads the whole state and is meant for tests
// and diagnostics.
func (s *State) CheckInvariants() error {
	t := s.t
	var errs []error
	fail := func(format string, args ...any) {
		if len(errs) < 20 {
			errs = append(errs, fmt.Errorf(format, args...))
		}
	}
	items := map[uint32]*[5]int64{}
	buckets := map[uint32]*[5]int64{}
	held := map[regKey]uint32{}
	epochs := map[uint64]uint64{}
	inBucket := map[string]uint64{} // service/item -> the live bucket listing it
	readyN, leasesN, deadN := 0, 0, 0
	t.buckets.Scan(func(b *Bucket) bool {
		svc, ok := t.serviceByOrdinal(b.Service)
		if !ok {
			fail("bucket %d: unknown service %d", b.ID, b.Service)
			return true
		}
		if buckets[b.Service] == nil {
			buckets[b.Service] = new([5]int64)
		}
		buckets[b.Service][b.State]++
		if b.ID >= t.meta.nextBucket {
			fail("bucket %d: id not below next id %d", b.ID, t.meta.nextBucket)
		}
		if len(b.Items) == 0 {
			fail("bucket %d: empty", b.ID)
		}
		if len(b.Items) > int(svc.Config.BucketSize) && b.State == unassigned && slices.ContainsFunc(svc.Open, func(o OpenBucket) bool { return o.Bucket == b.ID }) {
			fail("bucket %d: open but over bucket_size", b.ID)
		}
		switch b.State {
		case unassigned:
			readyN++
			if _, ok := t.ready.Get(readyKeyOf(b, int64(svc.Config.PriorityAging))); !ok {
				fail("bucket %d: unassigned but not in the ready index", b.ID)
			}
			if b.Holder != "" {
				fail("bucket %d: unassigned with holder %q", b.ID, b.Holder)
			}
		case leased:
			leasesN++
			if _, ok := t.leases.Get(timeKey{b.Deadline, b.ID}); !ok {
				fail("bucket %d: leased but not in the lease index", b.ID)
			}
		case dead:
			deadN++
			if _, ok := t.dead.Get(timeKey{b.ReleaseAt, b.ID}); !ok {
				fail("bucket %d: dead but not in the dead index", b.ID)
			}
		case done:
			if _, ok := t.results.Get(&ResultBatch{Seq: b.ResultSeq}); !ok {
				fail("bucket %d: done without its result batch %d", b.ID, b.ResultSeq)
			}
		default:
			fail("bucket %d: state %v", b.ID, b.State)
		}
		if b.Held() {
			if b.Holder == "" {
				fail("bucket %d: held by nobody", b.ID)
			}
			if _, ok := t.held.Get(heldKey{b.Service, b.Holder, b.ID}); !ok {
				fail("bucket %d: held but not in the holder index", b.ID)
			}
			if prev, dup := epochs[b.Epoch]; dup {
				fail("buckets %d and %d share epoch %d", prev, b.ID, b.Epoch)
			}
			epochs[b.Epoch] = b.ID
			if b.Epoch == 0 || b.Epoch >= t.meta.nextEpoch {
				fail("bucket %d: epoch %d outside 1..%d", b.ID, b.Epoch, t.meta.nextEpoch-1)
			}
			held[regKey{b.Service, b.Holder}]++
			if !svc.Active() {
				fail("bucket %d: held in revoked service %q", b.ID, svc.Name)
			}
			r, ok := t.registration(b.Service, b.Holder)
			if !ok || !r.Active() {
				fail("bucket %d: held by %q, who is not an active worker of %q", b.ID, b.Holder, svc.Name)
			}
		}
		if b.State != done {
			for _, id := range b.Items {
				k := fmt.Sprintf("%d/%s", b.Service, id)
				if other, dup := inBucket[k]; dup {
					fail("item %s: in live buckets %d and %d", k, other, b.ID)
				}
				inBucket[k] = b.ID
				it, ok := t.item(b.Service, id)
				switch {
				case !ok:
					fail("bucket %d lists missing item %q", b.ID, id)
				case it.Quarantined || it.Bucket != b.ID:
					fail("bucket %d lists item %q, which is in bucket %d (quarantined %v)", b.ID, id, it.Bucket, it.Quarantined)
				}
			}
		}
		return true
	})
	if n := t.ready.Len(); n != readyN {
		fail("ready index has %d entries for %d unassigned buckets", n, readyN)
	}
	if n := t.leases.Len(); n != leasesN {
		fail("lease index has %d entries for %d leased buckets", n, leasesN)
	}
	if n := t.dead.Len(); n != deadN {
		fail("dead index has %d entries for %d dead buckets", n, deadN)
	}
	if n := t.held.Len(); n != leasesN+deadN {
		fail("holder index has %d entries for %d held buckets", n, leasesN+deadN)
	}
	t.items.Scan(func(it *Item) bool {
		st := quarantined
		if it.Quarantined {
			if it.Bucket != 0 {
				fail("item %q: quarantined but in bucket %d", it.ID, it.Bucket)
			}
		} else {
			b, ok := t.bucket(it.Bucket)
			if !ok {
				fail("item %q: in missing bucket %d", it.ID, it.Bucket)
				return true
			}
			st = itemStateOf(b)
			if st == itemDone {
				rb, _ := t.results.Get(&ResultBatch{Seq: b.ResultSeq})
				if r, ok := findResult(rb, it.ID); !ok || r.RevertedAt != 0 {
					fail("item %q: done in bucket %d without a standing result", it.ID, b.ID)
				}
			} else if inBucket[fmt.Sprintf("%d/%s", it.Service, it.ID)] != b.ID {
				fail("item %q: names bucket %d, which does not list it", it.ID, b.ID)
			}
		}
		if items[it.Service] == nil {
			items[it.Service] = new([5]int64)
		}
		items[it.Service][st]++
		return true
	})
	regs, active := 0, 0
	t.regs.Scan(func(r *Registration) bool {
		regs++
		if r.Active() {
			active++
			if _, ok := t.idle.Get(idleKey{r.idleAt, r.Service, r.Worker}); !ok {
				fail("registration %d/%s: active but not in the idle index", r.Service, r.Worker)
			}
		}
		if r.Held != held[regKey{r.Service, r.Worker}] {
			fail("registration %d/%s: Held %d, holds %d", r.Service, r.Worker, r.Held, held[regKey{r.Service, r.Worker}])
		}
		if _, ok := t.worker(r.Worker); !ok {
			fail("registration %d/%s: worker id never bound", r.Service, r.Worker)
		}
		return true
	})
	if n := t.idle.Len(); n != active {
		fail("idle index has %d entries for %d active registrations", n, active)
	}
	t.services.Scan(func(s *Service) bool {
		o, ok := t.serviceByOrdinal(s.Ordinal)
		if !ok || o != s {
			fail("service %q: ordinal index out of step", s.Name)
		}
		want := [5]int64{}
		if v := items[s.Ordinal]; v != nil {
			want = *v
		}
		if s.Items != want {
			fail("service %q: item counts %v, actual %v", s.Name, s.Items, want)
		}
		want = [5]int64{}
		if v := buckets[s.Ordinal]; v != nil {
			want = *v
		}
		if s.Buckets != want {
			fail("service %q: bucket counts %v, actual %v", s.Name, s.Buckets, want)
		}
		prios := map[int32]bool{}
		for _, o := range s.Open {
			b, ok := t.bucket(o.Bucket)
			if !ok || b.State != unassigned || b.Priority != o.Priority || len(b.Items) >= int(s.Config.BucketSize) {
				fail("service %q: open bucket %d is not an unassigned, unfilled bucket of priority %d", s.Name, o.Bucket, o.Priority)
			}
			if prios[o.Priority] {
				fail("service %q: two open buckets of priority %d", s.Name, o.Priority)
			}
			prios[o.Priority] = true
		}
		return true
	})
	if t.services.Len() != t.ordinals.Len() {
		fail("%d services by name, %d by ordinal", t.services.Len(), t.ordinals.Len())
	}
	if t.results.Len() != t.resSvc.Len() || t.results.Len() != t.resWkr.Len() {
		fail("result indexes out of step: %d, %d, %d", t.results.Len(), t.resSvc.Len(), t.resWkr.Len())
	}
	if t.requests.Len() != t.reqAge.Len() {
		fail("request indexes out of step: %d, %d", t.requests.Len(), t.reqAge.Len())
	}
	var prev *Activity
	t.activity.Scan(func(a *Activity) bool {
		if prev != nil && a.At < prev.At {
			fail("activity %d at %d is before activity %d at %d", a.Seq, a.At, prev.Seq, prev.At)
		}
		if a.Seq >= t.meta.nextSeq {
			fail("activity %d: seq not below next %d", a.Seq, t.meta.nextSeq)
		}
		prev = a
		return true
	})
	return errors.Join(errs...)
}
