package fsm

import (
	"fmt"
	"slices"
	"strings"

	rationv1 "github.com/rationhq/ration/api/ration/v1"
	"github.com/rationhq/ration/fsm/kind"
)

// verdictOf is the part of a result a kind compares.
func verdictOf(r Result) kind.Result { return kind.Result{Verdict: r.Verdict, Payload: r.Payload} }

// judgement is what the votes on a bucket's items decided.
type judgement struct {
	canon        []Result // canonical results, in the bucket's order
	waiting      []string // items that need more votes
	inconclusive []string // items past max_replicas without a quorum
	// said describes the votes on the first inconclusive items.
	said    []string
	missing []string // items the submit left out
	// agreed and disagreed count, per vote, its results that agreed and
	// disagreed with a canonical result.
	agreed, disagreed []uint64
}

// judge decides each of b's items from votes, the last of which is the
// submit being applied (got holds its items). An item is judged once it has
// replicas votes: canonical when quorum of them agree with one of them (the
// earliest such is the canonical result) and they outnumber the others by
// the margin the first judgement needs, inconclusive at max_replicas.
func judge(s *Service, b *Bucket, votes []Vote, got map[string]Result) judgement {
	v := s.Config.Validation
	k, settings := mustKind(s), s.Config.settings()
	j := judgement{agreed: make([]uint64, len(votes)), disagreed: make([]uint64, len(votes))}
	past := make([]map[string]Result, len(votes)-1)
	for i := range past {
		past[i] = make(map[string]Result, votes[i].Len())
		for _, r := range votes[i].All() {
			past[i][r.Item] = r
		}
	}
	rs := make([]Result, 0, len(votes))
	who := make([]int, 0, len(votes))
	for _, id := range b.Items {
		mine, ok := got[id]
		if !ok {
			j.missing = append(j.missing, id)
			continue
		}
		rs, who = rs[:0], who[:0]
		for i := range past {
			if r, ok := past[i][id]; ok {
				rs, who = append(rs, r), append(who, i)
			}
		}
		rs, who = append(rs, mine), append(who, len(votes)-1)
		c := -1
		for a := 0; a < len(rs) && c < 0 && len(rs) >= int(v.Replicas); a++ {
			n := 0
			for _, other := range rs {
				if k.Agree(settings, verdictOf(rs[a]), verdictOf(other)) {
					n++
				}
			}
			if n >= int(v.Quorum) && 2*n-len(rs) >= int(v.margin()) {
				c = a
			}
		}
		switch {
		case c >= 0:
			j.canon = append(j.canon, rs[c])
			for i, r := range rs {
				if k.Agree(settings, verdictOf(rs[c]), verdictOf(r)) {
					j.agreed[who[i]]++
				} else {
					j.disagreed[who[i]]++
				}
			}
		case len(rs) >= int(v.MaxReplicas):
			j.inconclusive = append(j.inconclusive, id)
			if len(j.said) < maxSaidInconclusive {
				j.said = append(j.said, describeVotes(id, rs, who, votes))
			}
		default:
			j.waiting = append(j.waiting, id)
		}
	}
	return j
}

// maxSaidInconclusive bounds the inconclusive items one activity record
// describes.
const maxSaidInconclusive = 10

// describeVotes says who voted what on an item, for the activity log.
func describeVotes(id string, rs []Result, who []int, votes []Vote) string {
	parts := make([]string, len(rs))
	for i, r := range rs {
		parts[i] = votes[who[i]].Worker + " " + r.Verdict
	}
	return id + ": " + strings.Join(parts, ", ")
}

// vote adds a submit to b's votes and acts on the judgement: canonical
// items close in a done bucket with a validated result batch, items still
// short of a quorum go back to the pool in b with its votes (barred to
// every worker who voted), inconclusive ones leave it, and items the submit
// left out go back to the pool without their votes.
func (x *txn) vote(s, ms *Service, b *Bucket, r *Registration, results []*rationv1.ResultInput) *rationv1.SubmitResponse {
	late := b.State == dead || x.now > b.Deadline
	got := make(map[string]Result, len(results))
	var verdicts []KeyCount
	for _, in := range results {
		got[in.GetItem()] = Result{Item: in.GetItem(), Verdict: in.GetVerdict(), Payload: in.GetPayload()}
		verdicts = countKey(verdicts, in.GetVerdict())
	}
	mine := Vote{Worker: r.Worker, At: x.now, n: len(results), encoded: encodeResults(results, resultFields)}
	votes := append(slices.Clip(b.Votes), mine)
	j := judge(s, b, votes, got)
	x.creditVoters(s, ms, votes, j)

	ms.Buckets[b.State]--
	ms.Items[itemLeased] -= int64(len(b.Items))
	resp := &rationv1.SubmitResponse{Accepted: uint32(len(results))}
	for _, id := range j.missing {
		it, _ := x.item(s.Ordinal, id)
		if x.requeue(ms, it, true) {
			resp.Quarantined++
		} else {
			resp.Requeued++
		}
	}
	for _, id := range j.inconclusive {
		it, _ := x.item(s.Ordinal, id)
		c := *it
		c.Inconclusive, c.Bucket = true, 0
		x.setItem(&c)
	}
	ms.Items[inconclusive] += int64(len(j.inconclusive))
	ms.Counters.ItemsInconclusive += uint64(len(j.inconclusive))
	if len(j.inconclusive) > 0 {
		msg := fmt.Sprintf("no quorum within max_replicas %d: %s", s.Config.Validation.MaxReplicas, strings.Join(j.said, "; "))
		if more := len(j.inconclusive) - len(j.said); more > 0 {
			msg += fmt.Sprintf("; and %d more", more)
		}
		x.record(&Activity{Action: ActItemsInconclusive, Actor: "system", Service: s.Name, Bucket: b.ID,
			Count: uint64(len(j.inconclusive)), Message: msg})
	}

	nb := x.bkt(b.ID)
	nb.Canaries = nil
	closed := b.ID
	switch {
	case len(j.waiting) > 0:
		nb.Items, nb.Votes = j.waiting, votes
		nb.State, nb.Holder = unassigned, ""
		nb.LeasedAt, nb.Deadline, nb.DeadAt, nb.ReleaseAt = 0, 0, 0, 0
		ms.Buckets[unassigned]++
		ms.Items[pending] += int64(len(j.waiting))
		if len(j.canon) > 0 {
			closed = x.t.meta.nextBucket
			x.t.meta.nextBucket++
			x.cacheBucket(&bucketMut{cur: &Bucket{ID: closed, Service: s.Ordinal, Priority: b.Priority, ReadySince: b.ReadySince,
				Holder: r.Worker, Epoch: b.Epoch, LeasedAt: b.LeasedAt}})
		}
	case len(j.canon) == 0:
		x.dropBucket(b.ID)
	}
	if len(j.canon) > 0 {
		x.closeCanonical(s, ms, closed, r.Worker, b.Epoch, votes, j.canon)
	}
	x.countSubmit(ms, r, uint64(len(results)), uint64(resp.Requeued), verdicts, late)
	msg := fmt.Sprintf("vote %d of at least %d: canonical %d, awaiting more votes %d, inconclusive %d, requeued %d",
		len(votes), s.Config.Validation.Replicas, len(j.canon), len(j.waiting), len(j.inconclusive), resp.Requeued)
	if late {
		msg += ", late"
	}
	x.record(&Activity{Action: ActSubmit, Service: s.Name, Worker: r.Worker, Actor: r.Worker, Bucket: b.ID,
		Count: uint64(len(results)), Message: msg})
	return resp
}

// closeCanonical closes bucket id (b itself, or one split from it) done
// with the canonical results, as a validated result batch.
func (x *txn) closeCanonical(s, ms *Service, id uint64, worker string, epoch uint64, votes []Vote, canon []Result) {
	rb := newResultBatch(ResultBatch{Seq: x.t.meta.nextSeq, Service: s.Ordinal, Worker: worker, Bucket: id, Epoch: epoch,
		At: x.now, Validated: true, Votes: votes}, canon, func(r Result) (string, string, string) { return r.Item, r.Verdict, r.Payload })
	x.t.meta.nextSeq++
	x.t.putResults(rb)
	ms.LastResultSeq = rb.Seq
	ms.UnackedResults += uint64(rb.Len())
	ms.UnackedBytes += uint64(rb.Size())
	ids := make([]string, len(canon))
	for i, r := range canon {
		ids[i] = r.Item
		if it, _ := x.item(s.Ordinal, r.Item); it.Bucket != id {
			c := *it
			c.Bucket = id
			x.setItem(&c)
		}
	}
	nb := x.bkt(id)
	nb.Items, nb.Votes, nb.Canaries = ids, nil, nil
	nb.State, nb.ClosedAt, nb.ResultSeq = done, x.now, rb.Seq
	ms.Buckets[done]++
	ms.Items[itemDone] += int64(len(canon))
	ms.Counters.ResultsValidated += uint64(len(canon))
}

// creditVoters updates each voter's trust from the judgement: its run grows
// by the results that agreed with a canonical one, unless one disagreed,
// which ends it.
func (x *txn) creditVoters(s, ms *Service, votes []Vote, j judgement) {
	for i, v := range votes {
		if j.agreed[i] == 0 && j.disagreed[i] == 0 {
			continue
		}
		ms.Counters.ResultsDisagreed += j.disagreed[i]
		r := x.reg(s.Ordinal, v.Worker)
		if r == nil {
			continue
		}
		r.Counters.ResultsValidated += j.agreed[i]
		r.Counters.ResultsDisagreed += j.disagreed[i]
		if j.disagreed[i] > 0 {
			r.TrustRun = 0
		} else {
			r.TrustRun += j.agreed[i]
		}
	}
}

// canaryDeactivate deactivates a worker that reached
// canary_failures_to_deactivate, as an owner would, and reverts its
// results that no quorum confirmed.
func (x *txn) canaryDeactivate(s, ms *Service, r *Registration) {
	if !r.Active() {
		return
	}
	limit := s.Config.Validation.CanaryFailuresToDeactivate
	reason := fmt.Sprintf("deactivated: %d wrong canary answers (canary_failures_to_deactivate %d)", r.Counters.CanariesFailed, limit)
	r.State, r.Reason, r.Blocked, r.ChangedAt = workerInactive, reason, true, x.now
	n := x.endLeases(s.Ordinal, r.Worker)
	x.record(&Activity{Action: ActDeactivate, Actor: "system", Service: s.Name, Worker: r.Worker, Count: uint64(n), Message: reason})
	reverted, requeued := x.revertBatches(s, ms, r.Worker, 0, true)
	x.record(&Activity{Action: ActRevert, Actor: "system", Service: s.Name, Worker: r.Worker, Count: uint64(reverted),
		Message: fmt.Sprintf("its unvalidated results, after wrong canary answers; requeued %d", requeued)})
}
