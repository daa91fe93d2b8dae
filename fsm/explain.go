package fsm

import (
	"fmt"
	"strings"
	"time"
)

// explainScan bounds how many activity records an explanation reads.
const explainScan = 20000

// Explanation is an answer to "why": sentences, and the activity records
// they rest on.
type Explanation struct {
	Lines    []string
	Activity []*Activity
}

func (e *Explanation) say(format string, args ...any) {
	e.Lines = append(e.Lines, fmt.Sprintf(format, args...))
}

func (s *State) when(ns int64) string {
	d := time.Duration(s.t.meta.now - ns).Round(time.Second)
	if d >= 0 {
		return fmt.Sprintf("%s (%s ago)", unixTime(ns).UTC().Format(time.RFC3339), d)
	}
	return fmt.Sprintf("%s (in %s)", unixTime(ns).UTC().Format(time.RFC3339), -d)
}

// recent returns up to n of the latest records of a service that match.
func (s *State) recent(service string, n int, match func(*Activity) bool) []*Activity {
	var out []*Activity
	scanned := 0
	s.t.actSvc.Descend(strSeq{service, 1<<64 - 1}, func(k strSeq) bool {
		if k.key != service || scanned >= explainScan {
			return false
		}
		scanned++
		a, _ := s.t.activity.Get(&Activity{Seq: k.seq})
		if match(a) {
			out = append([]*Activity{a}, out...)
		}
		return len(out) < n
	})
	return out
}

// ExplainBucket says why a bucket is where it is.
func (s *State) ExplainBucket(service string, id uint64) (*Explanation, bool) {
	svc, ok := s.Service(service)
	b, found := s.t.bucket(id)
	if !ok || !found || b.Service != svc.Ordinal {
		return nil, false
	}
	e := &Explanation{}
	if !svc.Active() {
		e.say("service %s is revoked (%s): nothing in it is leased until it is reinstated", svc.Name, svc.Reason)
	}
	switch b.State {
	case unassigned:
		ahead := 0
		s.t.ready.Ascend(readyKey{service: svc.Ordinal, score: 1<<63 - 1}, func(k readyKey) bool {
			if k.service != svc.Ordinal || k.id == id || ahead >= explainScan {
				return false
			}
			ahead++
			return true
		})
		e.say("bucket %d is unassigned with %d items, priority %d, waiting since %s", id, len(b.Items), b.Priority, s.when(b.ReadySince))
		e.say("%d unassigned buckets come before it (higher priority, or waiting longer: one priority level per %s of waiting)", ahead, svc.Config.PriorityAging)
		if svc.Active() && ahead == 0 {
			e.say("it is among the next to be granted; no worker has acquired since it became ready")
		}
	case leased:
		e.say("bucket %d is leased to %s at epoch %d since %s; the lease runs to %s", id, b.Holder, b.Epoch, s.when(b.LeasedAt), s.when(b.Deadline))
		if b.Deadline < s.t.meta.now {
			e.say("the deadline has passed; the leader expires it at its next tick (after the failover grace, if it was just elected)")
		}
	case dead:
		e.say("bucket %d's lease to %s (epoch %d) expired at %s; %s may still submit it until it is released at %s", id, b.Holder, b.Epoch,
			s.when(b.Deadline), b.Holder, s.when(b.ReleaseAt))
	case done:
		if rb, ok := s.t.results.Get(&ResultBatch{Seq: b.ResultSeq}); ok {
			e.say("bucket %d is done: %s submitted %d results at epoch %d at %s", id, rb.Worker, rb.Len(), rb.Epoch, s.when(rb.At))
		}
	}
	e.Activity = s.recent(svc.Name, 10, func(a *Activity) bool { return a.Bucket == id })
	return e, true
}

// ExplainWorker says where a worker's registration stands and why.
func (s *State) ExplainWorker(service, worker string) (*Explanation, bool) {
	r, ok := s.Registration(service, worker)
	if !ok {
		return nil, false
	}
	e := &Explanation{}
	if r.Active() {
		e.say("worker %s is active in %s, last seen %s, holding %d buckets", worker, service, s.when(r.LastSeen), r.Held)
	} else {
		e.say("worker %s is inactive in %s since %s: %s", worker, service, s.when(r.ChangedAt), r.Reason)
		switch {
		case r.Blocked:
			e.say("an owner deactivated it: only ReactivateWorker brings it back; registering again is refused")
		case r.Reason == "idle":
			svc, _ := s.Service(service)
			e.say("it was not seen for %s (worker_inactive_after); registering again reactivates it", svc.Config.WorkerInactiveAfter)
		default:
			e.say("registering again reactivates it")
		}
	}
	c := r.Counters
	e.say("leases granted %d, buckets done %d, expired %d, released %d, refused commands %d, results reverted %d",
		c.LeasesGranted, c.BucketsDone, c.LeasesExpired, c.LeasesReleased, c.Rejected, c.ResultsReverted)
	if svc, ok := s.Service(service); ok && svc.Config.Validation != defaultValidation {
		e.say("validation: %d results agreed with the canonical ones, %d disagreed, %d believed unreplicated; canaries right %d, wrong %d",
			c.ResultsValidated, c.ResultsDisagreed, c.ResultsUnvalidated, c.CanariesPassed, c.CanariesFailed)
		e.say("trust: %s", svc.Config.Validation.TrustWhy(r.TrustRun))
	}
	for _, why := range s.Suspicions(service, r) {
		e.say("suspect: %s", why)
	}
	e.Activity = s.recent(service, 10, func(a *Activity) bool { return a.Worker == worker })
	return e, true
}

// ExplainItem says where an item is and why.
func (s *State) ExplainItem(service, id string) (*Explanation, bool) {
	v, ok := s.Item(service, id)
	if !ok {
		return nil, false
	}
	svc, _ := s.Service(service)
	e := &Explanation{}
	switch v.State {
	case quarantined:
		e.say("item %s is quarantined: its leases ended without a result %d times (max_attempts %d); adding it again re-queues it", id, v.Attempts, svc.Config.MaxAttempts)
	case inconclusive:
		e.say("item %s is inconclusive: its workers reached no quorum within max_replicas %d (the activity log's items-inconclusive record says who voted what); adding it again re-queues it",
			id, svc.Config.Validation.MaxReplicas)
	case pending:
		e.say("item %s is pending in bucket %d (priority %d, %d failed attempts)", id, v.Bucket, v.Priority, v.Attempts)
	case itemLeased:
		b, _ := s.t.bucket(v.Bucket)
		e.say("item %s is in bucket %d, held by %s (epoch %d)", id, v.Bucket, b.Holder, b.Epoch)
	case itemDone:
		if v.Result == nil {
			e.say("item %s is done; its result was trimmed (results are kept for result_retention, %s, after they are accepted, once acknowledged)",
				id, svc.Config.ResultRetention)
			break
		}
		e.say("item %s is done in bucket %d: verdict %s", id, v.Bucket, v.Result.Verdict)
		if svc.Config.Validation.replicated() && !v.Validated {
			e.say("its result was believed on one worker's word (a trusted worker's unreplicated bucket), not validated by a quorum")
		}
	}
	s.explainVotes(e, service, v)
	if v.State == pending || v.State == itemLeased {
		if more, ok := s.ExplainBucket(service, v.Bucket); ok {
			e.Lines = append(e.Lines, more.Lines...)
			e.Activity = more.Activity
		}
	}
	return e, true
}

// ExplainRequest says what became of a request id: the records its
// command left, with their outcome and reason. Records that name a service
// must name this one; records that name none (a refused command, a
// worker's refused heartbeat, a cluster operation) are included only when
// unscoped is set, as for the admin: they may concern other services.
func (s *State) ExplainRequest(service, requestID string, unscoped bool) (*Explanation, bool) {
	if _, ok := s.Service(service); !ok {
		return nil, false
	}
	e := &Explanation{}
	scanned := 0
	s.t.activity.Descend(&Activity{Seq: 1<<64 - 1}, func(a *Activity) bool {
		if a.RequestID == requestID && (a.Service == service || unscoped && a.Service == "") {
			e.Activity = append([]*Activity{a}, e.Activity...)
		}
		scanned++
		return scanned < explainScan && len(e.Activity) < 10
	})
	if len(e.Activity) == 0 {
		e.say("no record of request %q among the latest %d records (records age out with the activity retention)", requestID, explainScan)
		return e, true
	}
	for _, a := range e.Activity {
		if a.Reason != "" {
			e.say("%s by %s at %s was refused: %s (%s)", a.Action, a.Actor, s.when(a.At), a.Message, a.Reason)
		} else {
			e.say("%s by %s at %s succeeded: %s", a.Action, a.Actor, s.when(a.At), a.Message)
		}
	}
	return e, true
}

// explainVotes says how the votes on an item stand.
func (s *State) explainVotes(e *Explanation, service string, v ItemView) {
	votes := s.Votes(service, v)
	if len(votes) == 0 {
		return
	}
	svc, _ := s.Service(service)
	pol := svc.Config.Validation
	parts := make([]string, len(votes))
	for i, vt := range votes {
		parts[i] = vt.Worker + " " + vt.Result.Verdict
		if vt.Agreed {
			parts[i] += " (agreed)"
		}
	}
	if v.State == itemDone {
		e.say("validated by a quorum of %d (replicas %d): votes %s", pol.Quorum, pol.Replicas, strings.Join(parts, ", "))
		return
	}
	e.say("awaiting a quorum of %d (replicas %d, max_replicas %d): votes so far %s; none of these workers may lease it again",
		pol.Quorum, pol.Replicas, pol.MaxReplicas, strings.Join(parts, ", "))
}
