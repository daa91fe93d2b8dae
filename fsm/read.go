package fsm

import (
	"fmt"
	"slices"
	"sort"
	"time"

	statev1 "github.com/rationhq/ration/api/ration/state/v1"
	rationv1 "github.com/rationhq/ration/api/ration/v1"
)

// State is one immutable version of the state machine, tagged with the Raft
// index it reflects. Any number of goroutines may read it while Apply goes
// on: nothing it returns ever changes. Records it returns are shared and
// must not be modified.
type State struct {
	t *tables
}

// Index is the Raft index of the last entry this version reflects.
func (s *State) Index() uint64 { return s.t.meta.index }

// Now is the state machine's clock: the latest proposal time it applied.
func (s *State) Now() time.Time { return unixTime(s.t.meta.now) }

// Service returns a service by name.
func (s *State) Service(name string) (*Service, bool) { return s.t.serviceByName(name) }

// Services returns every service, by name.
func (s *State) Services() []*Service { return s.t.services.Items() }

// ServiceName returns the name of the service with the ordinal.
func (s *State) ServiceName(ordinal uint32) string {
	if svc, ok := s.t.serviceByOrdinal(ordinal); ok {
		return svc.Name
	}
	return ""
}

// ItemView is an item with its derived state and, when done, the result
// that completed it.
type ItemView struct {
	*Item
	State  rationv1.ItemState
	Result *Result
	// Validated: a quorum of workers agreed on Result.
	Validated bool
}

func (s *State) view(it *Item) ItemView {
	v := ItemView{Item: it, State: it.parkedState()}
	if it.parked() {
		return v
	}
	b, _ := s.t.bucket(it.Bucket)
	v.State = itemStateOf(b)
	if v.State == itemDone {
		if rb, ok := s.t.results.Get(&ResultBatch{Seq: b.ResultSeq}); ok {
			if r, ok := rb.Find(it.ID); ok {
				v.Result, v.Validated = &r, rb.Validated
			}
		}
	}
	return v
}

// Item returns one item of a service.
func (s *State) Item(service, id string) (ItemView, bool) {
	svc, ok := s.t.serviceByName(service)
	if !ok {
		return ItemView{}, false
	}
	it, ok := s.t.itemOrRemembered(svc.Ordinal, id)
	if !ok {
		return ItemView{}, false
	}
	return s.view(it), true
}

// Items lists a service's items in id order after the id after, keeping
// those in state (any state when state is unspecified), at most limit.
func (s *State) Items(service string, state rationv1.ItemState, after string, limit int) []ItemView {
	svc, ok := s.t.serviceByName(service)
	if !ok || limit <= 0 {
		return nil
	}
	var out []ItemView
	s.t.items.Ascend(&Item{Service: svc.Ordinal, ID: after}, func(it *Item) bool {
		if it.Service != svc.Ordinal {
			return false
		}
		if it.ID == after {
			return true
		}
		v := s.view(it)
		if state == rationv1.ItemState_ITEM_STATE_UNSPECIFIED || v.State == state {
			out = append(out, v)
		}
		return len(out) < limit
	})
	return out
}

// BucketQuery selects buckets. Service is required; zero fields match all.
type BucketQuery struct {
	Service string
	State   rationv1.BucketState
	Holder  string
	// After is the id to list after (paging).
	After uint64
	Limit int
}

// Buckets lists buckets in id order.
func (s *State) Buckets(q BucketQuery) []*Bucket {
	svc, ok := s.t.serviceByName(q.Service)
	if !ok || q.Limit <= 0 {
		return nil
	}
	var out []*Bucket
	if q.Holder != "" {
		s.t.held.Ascend(heldKey{service: svc.Ordinal, holder: q.Holder, id: q.After + 1}, func(k heldKey) bool {
			if k.service != svc.Ordinal || k.holder != q.Holder {
				return false
			}
			b, _ := s.t.bucket(k.id)
			if q.State == 0 || b.State == q.State {
				out = append(out, b)
			}
			return len(out) < q.Limit
		})
		return out
	}
	s.t.buckets.Ascend(&Bucket{ID: q.After + 1}, func(b *Bucket) bool {
		if b.Service == svc.Ordinal && (q.State == 0 || b.State == q.State) {
			out = append(out, b)
		}
		return len(out) < q.Limit
	})
	return out
}

// Bucket returns a bucket by id.
func (s *State) Bucket(id uint64) (*Bucket, bool) { return s.t.bucket(id) }

// Worker returns a worker id's binding.
func (s *State) Worker(id string) (*Worker, bool) { return s.t.worker(id) }

// Registration returns a worker's registration for a service.
func (s *State) Registration(service, worker string) (*Registration, bool) {
	svc, ok := s.t.serviceByName(service)
	if !ok {
		return nil, false
	}
	return s.t.registration(svc.Ordinal, worker)
}

// Registrations lists a service's registrations by worker id, after the id
// after, at most limit.
func (s *State) Registrations(service, after string, limit int) []*Registration {
	svc, ok := s.t.serviceByName(service)
	if !ok || limit <= 0 {
		return nil
	}
	var out []*Registration
	s.t.regs.Ascend(&Registration{Service: svc.Ordinal, Worker: after}, func(r *Registration) bool {
		if r.Service != svc.Ordinal {
			return false
		}
		if r.Worker != after {
			out = append(out, r)
		}
		return len(out) < limit
	})
	return out
}

// ActivityQuery selects activity records; zero fields match all.
type ActivityQuery struct {
	Service string
	Worker  string
	Action  string
	// Since and Until bound the record time (Until exclusive).
	Since, Until time.Time
	// AfterSeq lists records after this sequence number (paging, resuming).
	AfterSeq uint64
	Limit    int
	// Newest takes the newest Limit matching records instead of the oldest.
	Newest bool
}

// Activity lists activity records in the order they were applied.
func (s *State) Activity(q ActivityQuery) []*Activity {
	if q.Limit <= 0 {
		return nil
	}
	from := q.AfterSeq + 1
	if !q.Since.IsZero() {
		from = max(from, s.firstSeqAt(q.Since.UnixNano()))
	}
	var out []*Activity
	keep := func(a *Activity) bool {
		if !q.Until.IsZero() && a.At >= q.Until.UnixNano() {
			return false
		}
		if (q.Service == "" || a.Service == q.Service) && (q.Worker == "" || a.Worker == q.Worker) &&
			(q.Action == "" || a.Action == q.Action) {
			out = append(out, a)
		}
		return len(out) < q.Limit
	}
	get := func(seq uint64) *Activity {
		a, _ := s.t.activity.Get(&Activity{Seq: seq})
		return a
	}
	if q.Newest {
		// Walk back from the end; Until and AfterSeq bound the walk.
		keepBack := func(a *Activity) bool {
			if a.Seq < from {
				return false
			}
			if !q.Until.IsZero() && a.At >= q.Until.UnixNano() {
				return true
			}
			if (q.Service == "" || a.Service == q.Service) && (q.Worker == "" || a.Worker == q.Worker) &&
				(q.Action == "" || a.Action == q.Action) {
				out = append(out, a)
			}
			return len(out) < q.Limit
		}
		switch {
		case q.Worker != "":
			s.t.actWkr.Descend(strSeq{q.Worker, 1<<64 - 1}, func(k strSeq) bool { return k.key == q.Worker && keepBack(get(k.seq)) })
		case q.Service != "":
			s.t.actSvc.Descend(strSeq{q.Service, 1<<64 - 1}, func(k strSeq) bool { return k.key == q.Service && keepBack(get(k.seq)) })
		default:
			s.t.activity.Descend(&Activity{Seq: 1<<64 - 1}, keepBack)
		}
		slices.Reverse(out)
		return out
	}
	switch {
	case q.Worker != "":
		s.t.actWkr.Ascend(strSeq{q.Worker, from}, func(k strSeq) bool { return k.key == q.Worker && keep(get(k.seq)) })
	case q.Service != "":
		s.t.actSvc.Ascend(strSeq{q.Service, from}, func(k strSeq) bool { return k.key == q.Service && keep(get(k.seq)) })
	default:
		s.t.activity.Ascend(&Activity{Seq: from}, keep)
	}
	return out
}

// firstSeqAt finds the first activity record at or after t. Records are
// applied in time order, so a binary search by position works.
func (s *State) firstSeqAt(t int64) uint64 {
	n := s.t.activity.Len()
	i := sort.Search(n, func(i int) bool {
		a, _ := s.t.activity.GetAt(i)
		return a.At >= t
	})
	if i == n {
		return s.t.meta.nextSeq
	}
	a, _ := s.t.activity.GetAt(i)
	return a.Seq
}

// Results lists a service's result batches in the order they were accepted,
// after the sequence number after, at most limit.
func (s *State) Results(service string, after uint64, limit int) []*ResultBatch {
	svc, ok := s.t.serviceByName(service)
	if !ok || limit <= 0 {
		return nil
	}
	var out []*ResultBatch
	s.t.resSvc.Ascend(svcSeq{svc.Ordinal, after + 1}, func(k svcSeq) bool {
		if k.service != svc.Ordinal {
			return false
		}
		rb, _ := s.t.results.Get(&ResultBatch{Seq: k.seq})
		out = append(out, rb)
		return len(out) < limit
	})
	return out
}

// Nodes returns the cluster members' address book, by node id.
func (s *State) Nodes() []*NodeAddress { return s.t.nodes.Items() }

// NodeAddress returns one member's entry.
func (s *State) NodeAddress(id string) (*NodeAddress, bool) {
	return s.t.nodes.Get(&NodeAddress{ID: id})
}

// ResultBatch returns the result batch with sequence number seq.
func (s *State) ResultBatch(seq uint64) (*ResultBatch, bool) {
	return s.t.results.Get(&ResultBatch{Seq: seq})
}

// LastActivitySeq is the sequence number of the newest activity record, or
// 0 when there is none.
func (s *State) LastActivitySeq() uint64 {
	if a, ok := s.t.activity.Max(); ok {
		return a.Seq
	}
	return 0
}

// TickDue reports whether a Tick proposed at now with these settings would
// change anything, so that an idle cluster's leader need not write ticks.
func (s *State) TickDue(now int64, tick *statev1.Tick) bool {
	t := s.t
	if tick.GetExpireLeases() {
		if k, ok := t.leases.Min(); ok && k.at < now {
			return true
		}
		if k, ok := t.dead.Min(); ok && k.at <= now {
			return true
		}
	}
	if tick.GetDeactivateIdle() {
		if k, ok := t.idle.Min(); ok && k.at <= now {
			return true
		}
	}
	if a, ok := t.activity.Min(); ok {
		if r := tick.GetActivityRetention(); r > 0 && a.At < now-r {
			return true
		}
		if m := tick.GetActivityMax(); m > 0 && uint64(t.activity.Len()) > m {
			return true
		}
	}
	if k, ok := t.reqAge.Min(); ok {
		if r := tick.GetRequestRetention(); r > 0 && k.at < now-r {
			return true
		}
		if m := tick.GetRequestMaxBytes(); m > 0 && t.meta.requestBytes > m {
			return true
		}
	}
	due := false
	t.ordinals.Scan(func(s *Service) bool {
		due = (tick.GetTrimResults() && len(t.trimDue(s, now, 1)) > 0) ||
			(tick.GetForgetDone() && len(t.forgetDue(s, now, 1)) > 0) ||
			(tick.GetRefreshDone() && len(t.refreshDue(s, now, 1)) > 0)
		return !due
	})
	return due
}

// Thresholds of Suspicions.
const (
	suspectMinExpired    = 3
	suspectMinRejected   = 10
	suspectMinResults    = 50
	suspectMinSvcResults = 200
	suspectVerdictSkew   = 0.3
)

// Suspicions lists why a worker's registration looks faulty, from its
// counters, what it holds, and how its verdicts compare with the service's:
// many expired leases against completions, acquiring while holding expired
// buckets, many refused commands, reverted results, or a verdict mix far
// from the service's. An empty list means nothing stands out.
func (s *State) Suspicions(service string, r *Registration) []string {
	svc, ok := s.t.serviceByName(service)
	if !ok {
		return nil
	}
	c := r.Counters
	var out []string
	if c.LeasesExpired >= suspectMinExpired && c.LeasesExpired > c.BucketsDone {
		out = append(out, fmt.Sprintf("many expired leases (%d) against completed buckets (%d)", c.LeasesExpired, c.BucketsDone))
	}
	var deadHeld int
	var firstDead int64
	s.t.held.Ascend(heldKey{service: svc.Ordinal, holder: r.Worker}, func(k heldKey) bool {
		if k.service != svc.Ordinal || k.holder != r.Worker {
			return false
		}
		if b, ok := s.t.bucket(k.id); ok && b.State == dead {
			if deadHeld == 0 || b.DeadAt < firstDead {
				firstDead = b.DeadAt
			}
			deadHeld++
		}
		return true
	})
	if deadHeld > 0 && r.LastSeen > firstDead {
		out = append(out, fmt.Sprintf("still acquiring while holding %d expired buckets", deadHeld))
	}
	if c.Rejected >= suspectMinRejected && c.Rejected > c.LeasesGranted {
		out = append(out, fmt.Sprintf("many refused commands (%d) against leases granted (%d)", c.Rejected, c.LeasesGranted))
	}
	if c.ResultsReverted > 0 {
		out = append(out, fmt.Sprintf("%d results reverted", c.ResultsReverted))
	}
	total := func(vs []KeyCount) (n uint64) {
		for _, v := range vs {
			n += v.Count
		}
		return n
	}
	wn, sn := total(c.Verdicts), total(svc.Counters.Verdicts)
	if wn >= suspectMinResults && sn >= suspectMinSvcResults {
		share := func(vs []KeyCount, v string, n uint64) float64 {
			for _, x := range vs {
				if x.Key == v {
					return float64(x.Count) / float64(n)
				}
			}
			return 0
		}
		for _, v := range svc.Counters.Verdicts {
			w, all := share(c.Verdicts, v.Key, wn), share(svc.Counters.Verdicts, v.Key, sn)
			if w-all > suspectVerdictSkew || all-w > suspectVerdictSkew {
				out = append(out, fmt.Sprintf("verdict mix far from the service's: %s %.0f%% against %.0f%%", v.Key, 100*w, 100*all))
				break
			}
		}
	}
	return out
}
