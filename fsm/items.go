package fsm

import (
	"fmt"
	"slices"

	rationv1 "github.com/rationhq/ration/api/ration/v1"
)

// itemState says where an item is; it follows from its bucket.
func (x *txn) itemState(it *Item) rationv1.ItemState {
	if it.parked() {
		return it.parkedState()
	}
	b := x.peekBucket(it.Bucket)
	if b == nil {
		panic(fmt.Sprintf("fsm: item %q points at missing bucket %d", it.ID, it.Bucket))
	}
	return itemStateOf(b)
}

func itemStateOf(b *Bucket) rationv1.ItemState {
	switch b.State {
	case unassigned:
		return pending
	case leased, dead:
		return itemLeased
	}
	return itemDone
}

func checkItems(ids []string, limit uint32) error {
	if len(ids) == 0 {
		return fmt.Errorf("items is empty: %w", ErrInvalidArgument)
	}
	if uint32(len(ids)) > limit {
		return fmt.Errorf("items has %d ids, limit %d (max_items_per_add): %w", len(ids), limit, ErrLimitExceeded)
	}
	for i, id := range ids {
		if p := idProblem(id); p != "" {
			return fmt.Errorf("items[%d] %s: %w", i, p, ErrInvalidArgument)
		}
	}
	return nil
}

// checkAddItems runs addItems' refusals (Precheck runs them too).
func (x *txn) checkAddItems(op *rationv1.AddItemsRequest) (*Service, error) {
	s, err := x.activeService(op.GetService())
	if err != nil {
		return nil, err
	}
	if err := checkItems(op.GetItems(), s.Config.MaxItemsPerAdd); err != nil {
		return nil, err
	}
	if prio := op.GetPriority(); prio < MinPriority || prio > MaxPriority {
		return nil, fmt.Errorf("priority %d, want %d to %d: %w", prio, MinPriority, MaxPriority, ErrInvalidArgument)
	}
	return s, nil
}

func (x *txn) addItems(op *rationv1.AddItemsRequest) (*rationv1.AddItemsResponse, error) {
	s, err := x.checkAddItems(op)
	if err != nil {
		return nil, err
	}
	prio := op.GetPriority()
	ms := x.svc(s.Ordinal)
	before := ms.Buckets[unassigned]
	var res rationv1.AddItemsResponse
	var slab []Item // new items, allocated together
	for _, id := range op.GetItems() {
		it, ok := x.item(s.Ordinal, id)
		if !ok && len(s.Canaries) > 0 {
			if _, canary := s.canary(id); canary {
				res.Skipped++ // a canary's id is not free for an item
				continue
			}
		}
		if !ok {
			if k, found := x.t.remembered(s.Ordinal, id); found {
				if op.GetRerun() {
					x.queueAgain(ms, x.unremember(ms, k), itemDone, prio)
					res.Added++
				} else {
					res.Skipped++
				}
				continue
			}
		}
		if !ok {
			if len(slab) == cap(slab) {
				slab = make([]Item, 0, min(len(op.GetItems()), 1024))
			}
			slab = append(slab, Item{Service: s.Ordinal, ID: id, Priority: prio, Since: x.now})
			it = &slab[len(slab)-1]
			it.Bucket = x.pack(ms, prio, id)
			x.setItem(it)
			ms.Items[pending]++
			res.Added++
			continue
		}
		switch st := x.itemState(it); {
		case st == pending && prio > it.Priority:
			x.unpack(ms, it.Bucket, id)
			c := *it
			c.Priority = prio
			c.Bucket = x.pack(ms, prio, id)
			x.setItem(&c)
			res.Raised++
			res.Skipped++
		case st == itemDone && op.GetRerun(), st == quarantined, st == inconclusive:
			x.queueAgain(ms, it, st, prio)
			res.Added++
		default:
			res.Skipped++
		}
	}
	res.Buckets = uint32(max(0, ms.Buckets[unassigned]-before))
	ms.Counters.ItemsAdded += uint64(res.Added)
	x.record(&Activity{Action: ActAddItems, Service: s.Name, Count: uint64(res.Added),
		Message: fmt.Sprintf("added %d, skipped %d, raised %d, priority %d", res.Added, res.Skipped, res.Raised, prio)})
	return &res, nil
}

// queueAgain makes a done (re-run) or quarantined item pending again at
// priority prio, with no failed attempts.
func (x *txn) queueAgain(s *Service, it *Item, from rationv1.ItemState, prio int32) {
	s.Items[from]--
	c := *it
	c.Priority, c.Attempts, c.Quarantined, c.Inconclusive, c.Since = prio, 0, false, false, x.now
	c.Bucket = x.pack(s, prio, c.ID)
	x.setItem(&c)
	s.Items[pending]++
}

// pack puts a pending item into the open bucket of its priority, opening a
// new bucket when there is none or it is full, and returns the bucket's id.
func (x *txn) pack(s *Service, prio int32, id string) uint64 {
	size := int(s.Config.BucketSize)
	i := slices.IndexFunc(s.Open, func(o OpenBucket) bool { return o.Priority == prio })
	var b *Bucket
	if i >= 0 {
		b = x.bkt(s.Open[i].Bucket)
	} else {
		b = &Bucket{ID: x.t.meta.nextBucket, Service: s.Ordinal, State: unassigned, Priority: prio, ReadySince: x.now}
		x.t.meta.nextBucket++
		x.cacheBucket(&bucketMut{cur: b})
		s.Buckets[unassigned]++
		s.Open = append(slices.Clip(s.Open), OpenBucket{Priority: prio, Bucket: b.ID})
		i = len(s.Open) - 1
	}
	x.ownItems(b, size)
	b.Items = append(b.Items, id)
	if len(b.Items) >= size {
		s.Open = slices.Delete(slices.Clone(s.Open), i, i+1)
	}
	return b.ID
}

// unpack takes a pending item out of its unassigned bucket, deleting the
// bucket if it empties.
func (x *txn) unpack(s *Service, bucket uint64, id string) {
	b := x.bkt(bucket)
	x.ownItems(b, len(b.Items))
	b.Items = slices.DeleteFunc(b.Items, func(v string) bool { return v == id })
	if len(b.Items) == 0 {
		x.dropBucket(b.ID)
		s.Buckets[unassigned]--
		s.Open = slices.DeleteFunc(slices.Clone(s.Open), func(o OpenBucket) bool { return o.Bucket == bucket })
	}
}

// requeue sends an item that left a closed bucket without a result back to
// the pool, or to quarantine once it has failed max_attempts times. The
// caller has already taken it out of its previous state's count. It reports
// whether the item was quarantined.
func (x *txn) requeue(s *Service, it *Item, failed bool) bool {
	c := *it
	if failed {
		c.Attempts++
	}
	if c.Attempts >= s.Config.MaxAttempts {
		c.Quarantined, c.Bucket = true, 0
		s.Items[quarantined]++
		s.Counters.ItemsQuarantined++
		x.setItem(&c)
		return true
	}
	c.Bucket = x.pack(s, c.Priority, c.ID)
	c.Since = x.now
	s.Items[pending]++
	x.setItem(&c)
	return false
}

func validateAddItems(r *rationv1.AddItemsRequest) error {
	if err := checkServiceName(r.GetService()); err != nil {
		return err
	}
	if err := checkItems(r.GetItems(), MaxItemsPerAddLimit); err != nil {
		return err
	}
	if p := r.GetPriority(); p < MinPriority || p > MaxPriority {
		return fmt.Errorf("priority %d, want %d to %d: %w", p, MinPriority, MaxPriority, ErrInvalidArgument)
	}
	return nil
}
