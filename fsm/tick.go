package fsm

import (
	"fmt"
	"math"
	"strconv"
	"time"

	"github.com/tidwall/btree"

	statev1 "github.com/rationhq/ration/api/ration/state/v1"
)

// tick moves time-driven transitions forward to the command's time. The FSM
// re-checks every condition against its own clock, so a late or repeated
// tick does nothing wrong: a lease is never expired before its deadline.
func (x *txn) tick(op *statev1.Tick) *statev1.TickResult {
	res := &statev1.TickResult{}
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
	if op.GetTrimResults() {
		budget = x.trimResults(res, budget)
	}
	if op.GetRefreshDone() {
		budget = x.refreshDone(res, budget)
	}
	if op.GetForgetDone() {
		budget = x.forgetDone(res, budget)
	}
	if budget <= 0 {
		res.More = true
	}
	if ret := op.GetActivityRetention(); ret > 0 || op.GetActivityMax() > 0 {
		res.ActivityTrimmed = x.trimActivity(ret, op.GetActivityMax())
	}
	if ret, max := op.GetRequestRetention(), op.GetRequestMaxBytes(); ret > 0 || max > 0 {
		res.RequestsTrimmed = x.trimRequests(ret, max)
	}
	return res
}

// expireLeases turns leases past their deadline into dead buckets. A lease
// is good up to and including its deadline.
func (x *txn) expireLeases(res *statev1.TickResult, budget int) int {
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
func (x *txn) releaseDead(res *statev1.TickResult, budget int) int {
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
func (x *txn) deactivateIdle(res *statev1.TickResult, budget int) int {
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

// trimRequests forgets request ids older than retention and, beyond that,
// the oldest while the rest cost more than maxBytes.
func (x *txn) trimRequests(retention int64, maxBytes uint64) uint32 {
	cut := x.now - retention
	var n uint32
	for {
		k, ok := x.t.reqAge.Min()
		if !ok {
			break
		}
		old := retention > 0 && k.at < cut
		over := maxBytes > 0 && x.t.meta.requestBytes > maxBytes
		if !old && !over {
			break
		}
		if r, ok := x.t.requests.Get(&request{Key: k.key}); ok && r.At == k.at {
			x.t.dropRequest(r)
		} else {
			x.t.reqAge.Delete(k) // cannot happen: the indexes move together
		}
		n++
	}
	return n
}

// trimResults trims result batches past their service's retention, each
// service's oldest first: an acknowledged batch result_retention after it
// was accepted, one nobody acknowledged unacked_result_retention after
// (when set). A trimmed batch's done bucket stays, its results gone, and
// its items stay done in it until done_retention. One batch is one
// transition of the budget; each service that trimmed gets one activity
// record.
func (x *txn) trimResults(res *statev1.TickResult, budget int) int {
	for _, ord := range x.serviceOrdinals() {
		if budget <= 0 {
			break
		}
		due := x.t.trimDue(x.peekSvc(ord), x.now, budget)
		if len(due) == 0 {
			continue
		}
		var results, dropped uint64
		for _, rb := range due {
			n, unacked := x.trimBatch(rb)
			results += n
			if unacked {
				dropped += n
				res.ResultsDropped++
			}
		}
		res.ResultsTrimmed += uint32(len(due))
		budget -= len(due)
		msg := fmt.Sprintf("%d batches, seq %d to %d", len(due), due[0].Seq, due[len(due)-1].Seq)
		if dropped > 0 {
			msg += fmt.Sprintf("; %d results never acknowledged (unacked_result_retention)", dropped)
		}
		x.record(&Activity{Action: ActResultsTrimmed, Actor: "system", Service: x.peekSvc(ord).Name, Count: results, Message: msg})
	}
	return budget
}

// trimDue returns up to n result batches of s that are past their
// retention at now: first the acknowledged ones, then the others, each in
// seq order. Batches are in acceptance order within each range, so a range
// ends at its first batch not yet due.
func (t *tables) trimDue(s *Service, now int64, n int) []*ResultBatch {
	var due []*ResultBatch
	scan := func(from, through uint64, retention time.Duration) {
		t.resSvc.Ascend(svcSeq{service: s.Ordinal, seq: from}, func(k svcSeq) bool {
			if k.service != s.Ordinal || k.seq > through || len(due) >= n {
				return false
			}
			rb, _ := t.results.Get(&ResultBatch{Seq: k.seq})
			if rb.At+int64(retention) > now {
				return false
			}
			due = append(due, rb)
			return true
		})
	}
	scan(0, s.AckedThrough, s.Config.ResultRetention)
	if s.Config.UnackedResultRetention > 0 {
		scan(s.AckedThrough+1, ^uint64(0), s.Config.UnackedResultRetention)
	}
	return due
}

// trimBatch removes one result batch, and its bucket when the batch is
// what closed it. It returns the results trimmed and whether they were
// never acknowledged.
func (x *txn) trimBatch(rb *ResultBatch) (uint64, bool) {
	s := x.svc(rb.Service)
	n := uint64(rb.Len())
	x.t.dropResults(rb)
	s.Counters.ResultsTrimmed += n
	s.TrimmedThrough = max(s.TrimmedThrough, rb.At)
	unacked := rb.Seq > s.AckedThrough
	if unacked {
		s.UnackedResults -= n
		s.UnackedBytes -= uint64(rb.Size())
		s.Counters.ResultsDropped += n
	}
	if b := x.peekBucket(rb.Bucket); b != nil && b.State == done && b.ResultSeq == rb.Seq {
		b = x.bkt(b.ID)
		b.ResultSeq = 0 // the bucket stays, for its items' done_retention
		x.compactDone(s, b)
	}
	return n, unacked
}

// forgetDone forgets done items whose results were trimmed, done_retention
// after the results were accepted (the bucket's close): the bucket goes,
// and with it every item still done in it. An AddItems of a forgotten id
// queues it as new.
func (x *txn) forgetDone(res *statev1.TickResult, budget int) int {
	return x.sweepDone(res, budget, doneSweep{
		due:    (*tables).forgetDue,
		action: ActItemsForgotten,
		note: func(s *Service, buckets int) string {
			return fmt.Sprintf("%d done buckets, results trimmed, done_retention %s", buckets, s.Config.DoneRetention)
		},
		count: func(s *Service, res *statev1.TickResult, n uint64) {
			s.Counters.ItemsForgotten += n
			res.ItemsForgotten += uint32(n)
		},
	})
}

// forgetDue returns up to n done buckets of s, their results trimmed, that
// have passed done_retention at now, oldest first.
func (t *tables) forgetDue(s *Service, now int64, n int) []uint64 {
	if s.Config.DoneRetention == RememberForever {
		return nil
	}
	return t.closedBefore(t.trimmed, s.Ordinal, now-int64(s.Config.DoneRetention), n)
}

// refreshDone queues done items again refresh_after after their results
// were accepted (the bucket's close): the items still done in the bucket
// become pending with no failed attempts, and the bucket goes (its result
// batch, if retained, stays).
func (x *txn) refreshDone(res *statev1.TickResult, budget int) int {
	return x.sweepDone(res, budget, doneSweep{
		due: (*tables).refreshDue,
		each: func(x *txn, s *Service, it Item) {
			it.Attempts = 0
			x.requeue(s, &it, false)
		},
		action: ActItemsRefreshed,
		note: func(s *Service, buckets int) string {
			return fmt.Sprintf("%d done buckets, refresh_after %s", buckets, s.Config.RefreshAfter)
		},
		count: func(s *Service, res *statev1.TickResult, n uint64) {
			s.Counters.ItemsRefreshed += n
			res.ItemsRefreshed += uint32(n)
		},
	})
}

// refreshDue returns up to n done buckets of s that have passed
// refresh_after at now, oldest first.
func (t *tables) refreshDue(s *Service, now int64, n int) []uint64 {
	if s.Config.RefreshAfter == NeverRefresh || !s.Active() {
		return nil
	}
	return t.closedBefore(t.closed, s.Ordinal, now-int64(s.Config.RefreshAfter), n)
}

// closedBefore returns up to n buckets of index (closed or trimmed) of
// service ord closed at or before cut, oldest first.
func (t *tables) closedBefore(index *btree.BTreeG[svcTimeKey], ord uint32, cut int64, n int) []uint64 {
	var due []uint64
	index.Ascend(svcTimeKey{service: ord, at: math.MinInt64}, func(k svcTimeKey) bool {
		if k.service != ord || k.at > cut || len(due) >= n {
			return false
		}
		due = append(due, k.id)
		return true
	})
	return due
}

// doneSweep is what forgetDone and refreshDone do with the done buckets
// that are due.
type doneSweep struct {
	due func(t *tables, s *Service, now int64, n int) []uint64
	// each, if set, takes every item still done in a due bucket, after its
	// record (or remembered entry) is gone.
	each   func(x *txn, s *Service, it Item)
	action string
	note   func(s *Service, buckets int) string
	count  func(s *Service, res *statev1.TickResult, items uint64)
}

// sweepDone deletes the due done buckets, each service's oldest first, and
// hands each item still done in them to w.each. One bucket is one
// transition of the budget; each service that swept gets one activity
// record.
func (x *txn) sweepDone(res *statev1.TickResult, budget int, w doneSweep) int {
	for _, ord := range x.serviceOrdinals() {
		if budget <= 0 {
			break
		}
		due := w.due(x.t, x.peekSvc(ord), x.now, budget)
		if len(due) == 0 {
			continue
		}
		s := x.svc(ord)
		var n uint64
		for _, id := range due {
			n += x.dropDoneBucket(s, id, w.each)
		}
		w.count(s, res, n)
		budget -= len(due)
		x.record(&Activity{Action: w.action, Actor: "system", Service: s.Name, Count: n, Message: w.note(s, len(due))})
	}
	return budget
}

// dropDoneBucket deletes a done bucket and the items still done in it
// (records and remembered ones), handing each to each if set, and returns
// how many there were.
func (x *txn) dropDoneBucket(s *Service, id uint64, each func(*txn, *Service, Item)) uint64 {
	b := x.peekBucket(id)
	var n uint64
	take := func(it Item) {
		n++
		if each != nil {
			each(x, s, it)
		}
	}
	for _, itemID := range b.Items {
		if it, ok := x.item(s.Ordinal, itemID); ok && !it.parked() && it.Bucket == id {
			x.t.items.Delete(it)
			take(*it)
		}
	}
	x.rememberedIn(b, func(k doneKey) {
		x.t.remember.Delete(k)
		take(Item{Service: k.service, ID: strconv.FormatUint(k.id, 10), Priority: b.Priority})
	})
	x.dropBucket(id)
	s.Buckets[done]--
	s.Items[itemDone] -= int64(n)
	return n
}

// serviceOrdinals lists every service's ordinal, in order.
func (x *txn) serviceOrdinals() []uint32 {
	var ords []uint32
	x.t.ordinals.Scan(func(s *Service) bool {
		ords = append(ords, s.Ordinal)
		return true
	})
	return ords
}
