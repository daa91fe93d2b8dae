package fsm

import (
	"fmt"

	"github.com/tidwall/btree"

	rationv1 "github.com/rationhq/ration/api/ration/v1"
)

// tick moves time-driven transitions forward to the command's time. The FSM
// re-checks every condition against its own clock, so a late or repeated
// tick does nothing wrong: a lease is never expired before its deadline.
func (x *txn) tick(op *rationv1.Tick) *rationv1.TickResult {
	res := &rationv1.TickResult{}
	budget := int(op.GetMaxTransitions())
	if budget == 0 {
		budget = int(^uint(0) >> 1)
	}
	if op.GetExpireLeases() {
		budget = x.expireLeases(res, budget)
		budget = x.releaseDead(res, budget)
	}
	if op.GetDeactivateIdle() {
		budget = x.deactivateIdle(res, budget)
	}
	if budget <= 0 {
		res.More = true
	}
	if ret := op.GetActivityRetention(); ret > 0 || op.GetActivityMax() > 0 {
		res.ActivityTrimmed = x.trimActivity(ret, op.GetActivityMax())
	}
	if ret := op.GetRequestRetention(); ret > 0 {
		res.RequestsTrimmed = x.trimRequests(ret)
	}
	return res
}

// expireLeases turns leases past their deadline into dead buckets. A lease
// is good up to and including its deadline.
func (x *txn) expireLeases(res *rationv1.TickResult, budget int) int {
	due := dueIDs(x.t.leases, x.now-1, budget)
	for _, id := range due {
		b := x.bkt(id)
		s := x.svc(b.Service)
		b.State, b.DeadAt, b.ReleaseAt = dead, x.now, x.now+int64(s.Config.ReleaseGrace)
		s.Buckets[leased]--
		s.Buckets[dead]++
		s.Counters.LeasesExpired++
		if r := x.reg(b.Service, b.Holder); r != nil {
			r.Counters.LeasesExpired++
		}
		x.record(&Activity{Action: ActLeaseExpired, Actor: "system", Service: s.Name, Worker: b.Holder, Bucket: id,
			Count: uint64(len(b.Items)), Message: fmt.Sprintf("epoch %d", b.Epoch)})
	}
	res.Expired = uint32(len(due))
	return budget - len(due)
}

// dueIDs returns the ids of up to budget entries of a time index that are
// due at or before until, earliest first.
func dueIDs(index *btree.BTreeG[timeKey], until int64, budget int) []uint64 {
	var due []uint64
	index.Scan(func(k timeKey) bool {
		if k.at > until || len(due) >= budget {
			return false
		}
		due = append(due, k.id)
		return true
	})
	return due
}

// releaseDead sends dead buckets past their grace back to the pool; each of
// their items has failed once more, and those at max_attempts are
// quarantined.
func (x *txn) releaseDead(res *rationv1.TickResult, budget int) int {
	due := dueIDs(x.t.dead, x.now, budget)
	for _, id := range due {
		b := x.peekBucket(id)
		s := x.svc(b.Service)
		holder := b.Holder
		x.unlease(s, id)
		s.Counters.DeadReleased++
		if r := x.reg(s.Ordinal, holder); r != nil {
			r.Counters.DeadReleased++
		}
		q := x.failItems(s, id)
		res.Released++
		res.Quarantined += uint32(q)
		x.record(&Activity{Action: ActDeadReleased, Actor: "system", Service: s.Name, Worker: holder, Bucket: id,
			Count: uint64(len(b.Items)), Message: fmt.Sprintf("quarantined %d", q)})
	}
	return budget - len(due)
}

// failItems counts a failed attempt against every item of an unassigned
// bucket and moves those at max_attempts to quarantine. It returns how many
// it quarantined; a bucket left empty is deleted.
func (x *txn) failItems(s *Service, id uint64) int {
	b := x.bkt(id)
	keep := make([]string, 0, len(b.Items))
	for _, itemID := range b.Items {
		it, _ := x.item(s.Ordinal, itemID)
		c := *it
		c.Attempts++
		if c.Attempts >= s.Config.MaxAttempts {
			c.Quarantined, c.Bucket = true, 0
		} else {
			keep = append(keep, itemID)
		}
		x.setItem(&c)
	}
	q := len(b.Items) - len(keep)
	if q == 0 {
		return 0
	}
	s.Items[pending] -= int64(q)
	s.Items[quarantined] += int64(q)
	s.Counters.ItemsQuarantined += uint64(q)
	if len(keep) == 0 {
		x.dropBucket(id)
		s.Buckets[unassigned]--
		return q
	}
	x.ownItems(b, len(keep))
	b.Items = keep
	return q
}

// deactivateIdle deactivates registrations idle past their service's
// worker_inactive_after and takes back what they hold.
func (x *txn) deactivateIdle(res *rationv1.TickResult, budget int) int {
	var due []idleKey
	x.t.idle.Scan(func(k idleKey) bool {
		if k.at > x.now || len(due) >= budget {
			return false
		}
		due = append(due, k)
		return true
	})
	for _, k := range due {
		r := x.reg(k.service, k.worker)
		r.State, r.Reason, r.ChangedAt = workerInactive, "idle", x.now
		n := x.endLeases(k.service, k.worker)
		s := x.peekSvc(k.service)
		x.record(&Activity{Action: ActIdle, Actor: "system", Service: s.Name, Worker: k.worker, Count: uint64(n),
			Message: fmt.Sprintf("last seen %s", unixTime(r.LastSeen).UTC().Format("2006-01-02T15:04:05Z"))})
	}
	res.Deactivated = uint32(len(due))
	return budget - len(due)
}

// trimActivity drops activity records older than retention and, beyond
// that, the oldest records past max.
func (x *txn) trimActivity(retention int64, max uint64) uint32 {
	cut := x.now - retention
	var n uint32
	for {
		a, ok := x.t.activity.Min()
		if !ok {
			break
		}
		old := retention > 0 && a.At < cut
		over := max > 0 && uint64(x.t.activity.Len()) > max
		if !old && !over {
			break
		}
		x.t.dropActivity(a)
		n++
	}
	return n
}

// trimRequests forgets request ids older than retention.
func (x *txn) trimRequests(retention int64) uint32 {
	cut := x.now - retention
	var n uint32
	for {
		k, ok := x.t.reqAge.Min()
		if !ok || k.at >= cut {
			break
		}
		x.t.reqAge.Delete(k)
		if r, ok := x.t.requests.Get(&request{Key: k.key}); ok && r.At == k.at {
			x.t.requests.Delete(r)
		}
		n++
	}
	return n
}
