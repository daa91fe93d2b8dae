package fsm

import (
	"fmt"
	"slices"
	"strings"

	"google.golang.org/protobuf/types/known/timestamppb"

	statev1 "github.com/rationhq/ration/api/ration/state/v1"
	rationv1 "github.com/rationhq/ration/api/ration/v1"
	"github.com/rationhq/ration/fsm/kind"
)

// Limits of lease requests.
const (
	// MaxHeartbeatBuckets bounds the buckets one heartbeat entry may name.
	MaxHeartbeatBuckets = 1000
	// tieWindow bounds how many equally good buckets a grant chooses among.
	tieWindow = 64
)

// checkAcquire runs acquire's refusals (Precheck runs them too): an active
// service, an active worker with room under max_leases_per_worker.
func (x *txn) checkAcquire(op *rationv1.AcquireRequest) (*Service, *Registration, error) {
	s, err := x.activeService(op.GetService())
	if err != nil {
		return nil, nil, err
	}
	r, err := x.activeWorker(s, op.GetWorkerId(), x.hdr.GetCredential())
	if err != nil {
		return nil, nil, err
	}
	if r.Held >= s.Config.MaxLeasesPerWorker {
		return nil, nil, fmt.Errorf("worker %q holds %d buckets of service %q, limit %d (max_leases_per_worker): %w",
			r.Worker, r.Held, s.Name, s.Config.MaxLeasesPerWorker, ErrLeaseLimit)
	}
	if s.UnackedResults >= s.Config.MaxUnackedResults {
		return nil, nil, fmt.Errorf("service %q holds %d results its owner has not acknowledged, limit %d (max_unacked_results): "+
			"work waits until the owner exports and acknowledges them (ExportResults, AckResults): %w",
			s.Name, s.UnackedResults, s.Config.MaxUnackedResults, ErrResultsBacklog)
	}
	return s, r, nil
}

func (x *txn) acquire(op *rationv1.AcquireRequest) (*rationv1.AcquireResponse, error) {
	s, r, err := x.checkAcquire(op)
	if err != nil {
		return nil, err
	}
	cfg := s.Config
	n := min(max(op.GetMaxBuckets(), 1), cfg.MaxBucketsPerAcquire)
	n = min(n, cfg.MaxLeasesPerWorker-r.Held)
	ms := x.svc(s.Ordinal)
	r.LastSeen = x.now
	out := &rationv1.AcquireResponse{}
	deadline := x.now + int64(cfg.LeaseTTL)
	for _, id := range x.pick(s, r.Worker, int(n)) {
		b := x.bkt(id)
		ms.Open = slices.DeleteFunc(slices.Clone(ms.Open), func(o OpenBucket) bool { return o.Bucket == id })
		b.State, b.Holder, b.Epoch = leased, r.Worker, x.t.meta.nextEpoch
		x.t.meta.nextEpoch++
		b.LeasedAt, b.Deadline = x.now, deadline
		x.mixCanaries(s, b)
		ms.Buckets[unassigned]--
		ms.Buckets[leased]++
		ms.Items[pending] -= int64(len(b.Items))
		ms.Items[itemLeased] += int64(len(b.Items))
		out.Buckets = append(out.Buckets, &rationv1.LeasedBucket{
			Id: b.ID, Service: s.Name, Items: b.Shown(), State: leased,
			Lease: &rationv1.Lease{Epoch: b.Epoch, Deadline: timestamppb.New(unixTime(deadline))},
		})
	}
	k := uint64(len(out.Buckets))
	ms.Counters.LeasesGranted += k
	r.Counters.LeasesGranted += k
	r.Held += uint32(k)
	x.record(&Activity{Action: ActAcquire, Service: s.Name, Worker: r.Worker, Actor: r.Worker, Count: k,
		Message: fmt.Sprintf("asked %d, granted %d", op.GetMaxBuckets(), k)})
	return out, nil
}

// pick chooses up to n unassigned buckets of s, best effective priority
// first. Effective priority is priority plus one level per priority_aging of
// waiting, so the ready index orders by priority*aging - ready_since. Buckets
// within one level of the best are equals; among (at most tieWindow of) them
// the choice is random, drawn from the command's seed, so a worker can
// neither predict nor steer what it gets. Under validation a worker is
// never given a bucket it has voted on; past those, the grant looks at no
// more than maxExcludedCandidate buckets.
func (x *txn) pick(s *Service, worker string, n int) []uint64 {
	if n <= 0 {
		return nil
	}
	step := int64(s.Config.PriorityAging / 1e6)
	var cands []readyKey
	skipped, exclude := 0, s.Config.Validation.replicated()
	x.t.ready.Ascend(readyKey{service: s.Ordinal, score: 1<<63 - 1}, func(k readyKey) bool {
		if k.service != s.Ordinal {
			return false
		}
		if exclude {
			if _, voting := x.t.voting.Get(svcSeq{k.service, k.id}); voting && votedOn(x.peekBucket(k.id), worker) {
				skipped++
				return skipped < maxExcludedCandidate
			}
		}
		cands = append(cands, k)
		return len(cands) < n+tieWindow
	})
	out := make([]uint64, 0, min(n, len(cands)))
	for len(out) < n && len(cands) > 0 {
		ties := 1
		for ties < len(cands) && ties < tieWindow && cands[0].score-cands[ties].score < step {
			ties++
		}
		i := 0
		if ties > 1 {
			i = x.random().IntN(ties)
		}
		out = append(out, cands[i].id)
		cands = slices.Delete(cands, i, i+1)
	}
	return out
}

// heldBucket checks that worker holds bucket at epoch, for submit, release
// and heartbeat.
func (x *txn) heldBucket(worker string, id, epoch uint64) (*Bucket, error) {
	b := x.peekBucket(id)
	if b == nil {
		return nil, fmt.Errorf("bucket %d: %w", id, ErrBucketNotFound)
	}
	if b.Holder != worker || !b.Held() {
		if b.Held() {
			return nil, fmt.Errorf("bucket %d is leased to another worker: %w", id, ErrNotHolder)
		}
		return nil, fmt.Errorf("bucket %d is %s, not leased to %q: %w", id, stateName(b.State), worker, ErrLeaseLost)
	}
	if epoch != b.Epoch {
		return nil, fmt.Errorf("bucket %d: epoch %d is not the current lease's %d: %w", id, epoch, b.Epoch, ErrLeaseLost)
	}
	return b, nil
}

// holding authenticates a worker and checks that it holds bucket at epoch.
func (x *txn) holding(worker string, bucket, epoch uint64) (*Bucket, error) {
	if _, err := x.authenticate(worker, x.hdr.GetCredential()); err != nil {
		return nil, err
	}
	return x.heldBucket(worker, bucket, epoch)
}

func stateName(s rationv1.BucketState) string {
	return strings.ToLower(strings.TrimPrefix(s.String(), "BUCKET_STATE_"))
}

func (x *txn) heartbeat(op *statev1.HeartbeatBatch) *statev1.HeartbeatBatchResult {
	out := &statev1.HeartbeatBatchResult{Entries: make([]*statev1.CommandResult, 0, len(op.GetEntries()))}
	for _, e := range op.GetEntries() {
		cred := e.GetCredential()
		if len(cred) == 0 {
			cred = x.hdr.GetCredential()
		}
		r, err := x.heartbeatOne(e.GetRequest(), cred)
		if err != nil {
			worker := e.GetRequest().GetWorkerId()
			x.record(&Activity{Action: ActHeartbeat, Worker: worker, Actor: worker, Reason: Reason(err), Message: err.Error()})
			r = &statev1.CommandResult{Error: &statev1.CommandError{Reason: Reason(err), Message: err.Error()}}
		}
		out.Entries = append(out.Entries, r)
	}
	return out
}

// checkHeartbeat runs the refusals of one worker's heartbeat as a whole
// (Precheck runs them too).
func (x *txn) checkHeartbeat(req *rationv1.HeartbeatRequest, cred []byte) error {
	if _, err := x.authenticate(req.GetWorkerId(), cred); err != nil {
		return err
	}
	refs := req.GetBuckets()
	if len(refs) == 0 {
		return fmt.Errorf("buckets is empty: %w", ErrInvalidArgument)
	}
	if len(refs) > MaxHeartbeatBuckets {
		return fmt.Errorf("buckets has %d entries, limit %d: %w", len(refs), MaxHeartbeatBuckets, ErrLimitExceeded)
	}
	return nil
}

// extendable checks that worker's lease on ref can be extended: held at
// that epoch and not expired.
func (x *txn) extendable(worker string, ref *rationv1.BucketRef) (*Bucket, error) {
	b, err := x.heldBucket(worker, ref.GetId(), ref.GetEpoch())
	if err != nil {
		return nil, err
	}
	if b.State == dead {
		return nil, fmt.Errorf("bucket %d expired at %s; submit or release it: %w", b.ID, unixTime(b.Deadline).UTC().Format("2006-01-02T15:04:05Z"), ErrLeaseExpired)
	}
	return b, nil
}

// refusedOutcome is a heartbeat's answer for a lease it did not extend.
func refusedOutcome(id uint64, err error) *rationv1.HeartbeatOutcome {
	return &rationv1.HeartbeatOutcome{BucketId: id, ErrorReason: Reason(err), ErrorMessage: err.Error()}
}

// heartbeatOne extends the leases one worker names. A lease that cannot be
// extended is reported in its own outcome; only a bad request fails whole.
func (x *txn) heartbeatOne(req *rationv1.HeartbeatRequest, cred []byte) (*statev1.CommandResult, error) {
	worker := req.GetWorkerId()
	if err := x.checkHeartbeat(req, cred); err != nil {
		return nil, err
	}
	refs := req.GetBuckets()
	resp := &rationv1.HeartbeatResponse{Buckets: make([]*rationv1.HeartbeatOutcome, 0, len(refs))}
	// One activity record per service touched, in the order first named.
	type tally struct {
		svc      uint32
		extended uint64
	}
	var tallies []tally
	var refused uint64
	var firstReason string
	for _, ref := range refs {
		b, err := x.extendable(worker, ref)
		if err != nil {
			resp.Buckets = append(resp.Buckets, refusedOutcome(ref.GetId(), err))
			if refused == 0 {
				firstReason = Reason(err)
			}
			refused++
			continue
		}
		o := &rationv1.HeartbeatOutcome{BucketId: ref.GetId()}
		resp.Buckets = append(resp.Buckets, o)
		s := x.svc(b.Service)
		nb := x.bkt(b.ID)
		nb.Deadline = max(nb.Deadline, x.now+int64(s.Config.LeaseTTL))
		o.Lease = &rationv1.Lease{Epoch: nb.Epoch, Deadline: timestamppb.New(unixTime(nb.Deadline))}
		if r := x.reg(b.Service, worker); r != nil {
			r.LastSeen = x.now
			r.Counters.Heartbeats++
		}
		s.Counters.Heartbeats++
		i := slices.IndexFunc(tallies, func(t tally) bool { return t.svc == b.Service })
		if i < 0 {
			tallies = append(tallies, tally{svc: b.Service})
			i = len(tallies) - 1
		}
		tallies[i].extended++
	}
	for _, t := range tallies {
		x.record(&Activity{Action: ActHeartbeat, Service: x.peekSvc(t.svc).Name, Worker: worker, Actor: worker, Count: t.extended})
	}
	if refused > 0 {
		x.record(&Activity{Action: ActHeartbeat, Worker: worker, Actor: worker, Reason: firstReason,
			Message: fmt.Sprintf("%d of %d leases not extended (first: %s)", refused, len(refs), firstReason)})
	}
	return &statev1.CommandResult{Value: &statev1.CommandResult_HeartbeatEntry{HeartbeatEntry: resp}}, nil
}

// checkSubmit runs submit's refusals (Precheck runs them too): the holder
// at the current epoch, an active service and worker, results that fit the
// bucket and the kind.
func (x *txn) checkSubmit(op *rationv1.SubmitRequest) (*Service, *Bucket, *Registration, error) {
	worker := op.GetWorkerId()
	b, err := x.holding(worker, op.GetBucketId(), op.GetEpoch())
	if err != nil {
		return nil, nil, nil, err
	}
	s := x.peekSvc(b.Service)
	if !s.Active() {
		return nil, nil, nil, fmt.Errorf("service %q is revoked: %w", s.Name, ErrServiceRevoked)
	}
	r, err := x.activeWorker(s, worker, x.hdr.GetCredential())
	if err != nil {
		return nil, nil, nil, err
	}
	if err := checkResults(s, b, op.GetResults()); err != nil {
		return nil, nil, nil, err
	}
	return s, b, r, nil
}

func (x *txn) submit(op *rationv1.SubmitRequest) (*rationv1.SubmitResponse, error) {
	s, b, r, err := x.checkSubmit(op)
	if err != nil {
		return nil, err
	}
	// Everything is checked: from here on the submit takes effect.
	ms := x.svc(s.Ordinal)
	results, deactivate := x.judgeCanaries(s, ms, b, r, op.GetResults())
	var resp *rationv1.SubmitResponse
	if x.believe(s, b, r) {
		resp = x.closeBucket(s, ms, b, r, results)
	} else {
		resp = x.vote(s, ms, b, r, results)
	}
	// The canaries count as accepted, or as requeued when left out: the
	// worker must not tell them apart.
	answered := len(op.GetResults()) - len(results)
	resp.Accepted += uint32(answered)
	resp.Requeued += uint32(len(b.Canaries) - answered)
	if deactivate {
		x.canaryDeactivate(s, ms, r)
	}
	return resp, nil
}

// closeBucket closes b with the worker's results, believed as they are,
// and sends its items without a result back to the pool.
func (x *txn) closeBucket(s, ms *Service, b *Bucket, r *Registration, results []*rationv1.ResultInput) *rationv1.SubmitResponse {
	worker := r.Worker
	nb := x.bkt(b.ID)
	late := b.State == dead || x.now > b.Deadline
	rb := &ResultBatch{Seq: x.t.meta.nextSeq, Service: s.Ordinal, Worker: worker, Bucket: b.ID, Epoch: b.Epoch, At: x.now,
		n: len(results), encoded: x.compactResults}
	if rb.encoded == "" || len(b.Canaries) > 0 {
		rb.encoded = encodeResults(results, resultFields)
	}
	x.t.meta.nextSeq++
	// Results in the bucket's order (the usual case) answer its first items.
	var got map[string]bool
	missing := b.Items[min(len(results), len(b.Items)):]
	if !inBucketOrder(b.Items, results) {
		got, missing = make(map[string]bool, len(results)), b.Items
	}
	var verdicts []KeyCount
	for _, in := range results {
		if got != nil {
			got[in.GetItem()] = true
		}
		verdicts = countKey(verdicts, in.GetVerdict())
	}
	n := uint64(rb.Len())
	ms.Buckets[b.State]--
	if n > 0 {
		x.t.putResults(rb)
		ms.LastResultSeq = rb.Seq
		ms.UnackedResults += n
		ms.UnackedBytes += uint64(rb.Size())
		ms.Buckets[done]++
		nb.State, nb.ClosedAt, nb.ResultSeq = done, x.now, rb.Seq
		nb.Votes, nb.Canaries = nil, nil
	} else {
		x.dropBucket(b.ID) // it had only canary answers
	}
	ms.Items[itemLeased] -= int64(len(b.Items))
	ms.Items[itemDone] += int64(n)
	resp := &rationv1.SubmitResponse{Accepted: uint32(n)}
	for _, id := range missing {
		if got[id] {
			continue
		}
		it, _ := x.item(s.Ordinal, id)
		if x.requeue(ms, it, true) {
			resp.Quarantined++
		} else {
			resp.Requeued++
		}
	}
	unvalidated := uint64(0)
	if s.Config.Validation.replicated() {
		unvalidated = n
	}
	x.countSubmit(ms, r, n, uint64(resp.Requeued), verdicts, late)
	ms.Counters.ResultsUnvalidated += unvalidated
	r.Counters.ResultsUnvalidated += unvalidated
	msg := fmt.Sprintf("accepted %d, requeued %d", n, resp.Requeued)
	if late {
		msg += ", late"
	}
	if unvalidated > 0 {
		msg += ", believed without replication (trusted)"
	}
	x.record(&Activity{Action: ActSubmit, Service: s.Name, Worker: worker, Actor: worker, Bucket: b.ID, Count: n, Message: msg})
	return resp
}

// countSubmit counts an accepted submit for its service and worker.
func (x *txn) countSubmit(ms *Service, r *Registration, accepted, requeued uint64, verdicts []KeyCount, late bool) {
	for _, c := range []*Counters{&ms.Counters, &r.Counters} {
		c.BucketsDone++
		c.ResultsAccepted += accepted
		c.ItemsRequeued += requeued
		for _, v := range verdicts {
			c.Verdicts = addCount(c.Verdicts, v.Key, v.Count)
		}
		if late {
			c.LateSubmits++
		}
	}
	r.Held--
	r.LastSeen = x.now
}

// resultFields is a submitted result as a ResultBatch stores it.
func resultFields(in *rationv1.ResultInput) (string, string, string) {
	return in.GetItem(), in.GetVerdict(), in.GetPayload()
}

// inBucketOrder reports whether results answer a bucket's first items in
// the bucket's order, as workers usually send them.
func inBucketOrder(items []string, results []*rationv1.ResultInput) bool {
	if len(results) > len(items) {
		return false
	}
	for i, r := range results {
		if r.GetItem() != items[i] {
			return false
		}
	}
	return true
}

// checkResults validates a submit's results against its bucket, as its
// holder sees it, and its kind.
func checkResults(s *Service, b *Bucket, results []*rationv1.ResultInput) error {
	if len(results) == 0 {
		return fmt.Errorf("results is empty (use Release to give a bucket back): %w", ErrInvalidArgument)
	}
	k := mustKind(s)
	settings := s.Config.settings()
	shown := b.Shown()
	if inBucketOrder(shown, results) {
		// Each names a different item of the bucket: only the kind checks.
		for i, r := range results {
			if err := k.Validate(settings, r.GetVerdict(), r.GetPayload()); err != nil {
				return fmt.Errorf("results[%d] (item %q): %v: %w", i, r.GetItem(), err, ErrInvalidResult)
			}
		}
		return nil
	}
	in := make(map[string]bool, len(shown))
	for _, id := range shown {
		in[id] = false
	}
	for i, r := range results {
		seen, ok := in[r.GetItem()]
		if !ok {
			return fmt.Errorf("results[%d]: item %q is not in bucket %d: %w", i, r.GetItem(), b.ID, ErrItemNotInBucket)
		}
		if seen {
			return fmt.Errorf("results[%d]: item %q has two results: %w", i, r.GetItem(), ErrDuplicateResult)
		}
		in[r.GetItem()] = true
		if err := k.Validate(settings, r.GetVerdict(), r.GetPayload()); err != nil {
			return fmt.Errorf("results[%d] (item %q): %v: %w", i, r.GetItem(), err, ErrInvalidResult)
		}
	}
	return nil
}

func (x *txn) release(op *rationv1.ReleaseRequest) (*rationv1.ReleaseResponse, error) {
	worker := op.GetWorkerId()
	b, err := x.holding(worker, op.GetBucketId(), op.GetEpoch())
	if err != nil {
		return nil, err
	}
	s := x.svc(b.Service)
	shown := len(b.Canaries) // the holder counts its canaries among the items it gives back
	n := x.unlease(s, b.ID)
	s.Counters.LeasesReleased++
	if r := x.reg(s.Ordinal, worker); r != nil {
		r.Counters.LeasesReleased++
		r.LastSeen = x.now
	}
	x.record(&Activity{Action: ActRelease, Service: s.Name, Worker: worker, Actor: worker, Bucket: b.ID, Count: uint64(n)})
	return &rationv1.ReleaseResponse{Requeued: uint32(n + shown)}, nil
}

// unlease puts a held bucket back in the pool with its items, as it was, and
// returns how many items it holds. The holder's Held count drops.
func (x *txn) unlease(s *Service, id uint64) int {
	b := x.bkt(id)
	if r := x.reg(s.Ordinal, b.Holder); r != nil {
		r.Held--
	}
	s.Buckets[b.State]--
	s.Buckets[unassigned]++
	s.Items[itemLeased] -= int64(len(b.Items))
	s.Items[pending] += int64(len(b.Items))
	b.State, b.Holder, b.Canaries = unassigned, "", nil
	b.LeasedAt, b.Deadline, b.DeadAt, b.ReleaseAt = 0, 0, 0, 0
	return len(b.Items)
}

// endLeases takes back the buckets of service svc held by worker (by anyone
// when worker is empty), without counting an attempt against their items: the
// lease ended by decision, not by failure.
func (x *txn) endLeases(svc uint32, worker string) int {
	var ids []uint64
	x.t.held.Ascend(heldKey{service: svc, holder: worker}, func(k heldKey) bool {
		if k.service != svc || (worker != "" && k.holder != worker) {
			return false
		}
		ids = append(ids, k.id)
		return true
	})
	s := x.svc(svc)
	n := 0
	for _, id := range ids {
		b := x.peekBucket(id)
		if b == nil || !b.Held() {
			continue // this command closed it (a submit that deactivated its worker)
		}
		n++
		holder := b.Holder
		x.unlease(s, id)
		s.Counters.LeasesEnded++
		if r := x.reg(svc, holder); r != nil {
			r.Counters.LeasesEnded++
		}
	}
	return n
}

func validateAcquire(r *rationv1.AcquireRequest) error {
	return firstErr(checkServiceName(r.GetService()), checkID("worker_id", r.GetWorkerId()))
}

// validateHeartbeat checks one worker's heartbeat as the edge receives it;
// the log carries it inside a HeartbeatBatch.
func validateHeartbeat(r *rationv1.HeartbeatRequest) error {
	if err := checkID("worker_id", r.GetWorkerId()); err != nil {
		return err
	}
	if n := len(r.GetBuckets()); n == 0 || n > MaxHeartbeatBuckets {
		return fmt.Errorf("buckets has %d entries, want 1 to %d: %w", n, MaxHeartbeatBuckets, ErrInvalidArgument)
	}
	return nil
}

func validateSubmit(r *rationv1.SubmitRequest) error {
	if err := checkID("worker_id", r.GetWorkerId()); err != nil {
		return err
	}
	if r.GetBucketId() == 0 {
		return fmt.Errorf("bucket_id is required: %w", ErrInvalidArgument)
	}
	if n := len(r.GetResults()); n == 0 || n > MaxBucketSize {
		return fmt.Errorf("results has %d entries, want 1 to %d (use Release to give a bucket back): %w", n, MaxBucketSize, ErrInvalidArgument)
	}
	for i, res := range r.GetResults() {
		if p := idProblem(res.GetItem()); p != "" {
			return fmt.Errorf("results[%d].item %s: %w", i, p, ErrInvalidArgument)
		}
		if v := res.GetVerdict(); v == "" || len(v) > kind.MaxVerdictLength {
			return fmt.Errorf("results[%d].verdict: want 1 to %d bytes: %w", i, kind.MaxVerdictLength, ErrInvalidArgument)
		}
		if len(res.GetPayload()) > kind.MaxPayloadLimit {
			return fmt.Errorf("results[%d].payload is %d bytes, limit %d: %w", i, len(res.GetPayload()), kind.MaxPayloadLimit, ErrInvalidArgument)
		}
	}
	return nil
}

func validateRelease(r *rationv1.ReleaseRequest) error {
	if err := checkID("worker_id", r.GetWorkerId()); err != nil {
		return err
	}
	if r.GetBucketId() == 0 {
		return fmt.Errorf("bucket_id is required: %w", ErrInvalidArgument)
	}
	return nil
}
