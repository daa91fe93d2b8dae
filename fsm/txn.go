package fsm

import (
	"errors"
	"fmt"
	"math/rand/v2"

	"github.com/tidwall/btree"
	"google.golang.org/protobuf/proto"

	statev1 "github.com/rationhq/ration/api/ration/state/v1"
	rationv1 "github.com/rationhq/ration/api/ration/v1"
)

const (
	unassigned = rationv1.BucketState_BUCKET_STATE_UNASSIGNED
	leased     = rationv1.BucketState_BUCKET_STATE_LEASED
	dead       = rationv1.BucketState_BUCKET_STATE_DEAD
	done       = rationv1.BucketState_BUCKET_STATE_DONE

	pending      = rationv1.ItemState_ITEM_STATE_PENDING
	itemLeased   = rationv1.ItemState_ITEM_STATE_LEASED
	itemDone     = rationv1.ItemState_ITEM_STATE_DONE
	quarantined  = rationv1.ItemState_ITEM_STATE_QUARANTINED
	inconclusive = rationv1.ItemState_ITEM_STATE_INCONCLUSIVE

	workerActive   = rationv1.WorkerState_WORKER_STATE_ACTIVE
	workerInactive = rationv1.WorkerState_WORKER_STATE_INACTIVE
	serviceActive  = rationv1.ServiceState_SERVICE_STATE_ACTIVE
	serviceRevoked = rationv1.ServiceState_SERVICE_STATE_REVOKED
)

// txn applies one command. It caches the records it changes so that a
// command touching a service or registration many times clones it once, and
// writes them back in flush.
type txn struct {
	t     *tables
	index uint64
	now   int64
	hdr   *statev1.CommandHeader
	rng   *rand.Rand

	svcs map[uint32]*Service
	regs map[regKey]*regMut
	bkts map[uint64]*bucketMut

	// compactResults is a CompactSubmit's results as the log carried them,
	// already in the form a ResultBatch keeps.
	compactResults string

	key   Item           // lookup keys, so that lookups do not allocate
	bkey  Bucket         //
	ihint btree.PathHint // where the last item was, for runs of nearby ids
}

// item looks an item up in the tables being written.
func (x *txn) item(svc uint32, id string) (*Item, bool) {
	x.key.Service, x.key.ID = svc, id
	return x.t.items.GetHint(&x.key, &x.ihint)
}

// setItem writes an item to the tables being written.
func (x *txn) setItem(it *Item) {
	x.t.items.SetHint(it, &x.ihint)
}

type bucketMut struct {
	old, cur *Bucket // cur is nil when the bucket is deleted
	owned    bool    // cur.Items is this command's own slice
}

type regKey struct {
	service uint32
	worker  string
}

type regMut struct {
	old, cur *Registration
}

// random is the command's source of choices, seeded by its proposer.
func (x *txn) random() *rand.Rand {
	if x.rng == nil {
		x.rng = rand.New(rand.NewPCG(x.hdr.GetSeed(), x.index))
	}
	return x.rng
}

// fail records a refused command and turns err into its result. A refused
// command changes nothing but the activity log and the rejected counters.
func (x *txn) fail(o *operation, req proto.Message, err error) *statev1.CommandResult {
	reason := Reason(err)
	if reason == "" {
		// Only domain errors may come back from an operation: anything else
		// is a bug, and nodes must not diverge over it.
		panic(fmt.Sprintf("fsm: log entry %d: operation returned a non-domain error: %v", x.index, err))
	}
	sub := x.t.subject(req)
	if s, ok := x.t.serviceByName(sub.service); ok {
		ms := x.svc(s.Ordinal)
		ms.Counters.Rejected++
		ms.Counters.RejectedBy = addCount(ms.Counters.RejectedBy, reason, 1)
		// A wrong secret is someone else's fault: it must not stain the worker's record.
		if r := x.reg(s.Ordinal, sub.worker); r != nil && !errors.Is(err, ErrBadCredential) {
			r.Counters.Rejected++
			r.Counters.RejectedBy = addCount(r.Counters.RejectedBy, reason, 1)
		}
	}
	x.record(&Activity{Action: o.action, Reason: reason, Message: err.Error(), Service: sub.service, Worker: sub.worker, Bucket: sub.bucket})
	return &statev1.CommandResult{Error: &statev1.CommandError{Reason: reason, Message: err.Error()}}
}

// refuse is fail for a command that stops here: it writes the record back.
func (x *txn) refuse(o *operation, req proto.Message, err error) *statev1.CommandResult {
	res := x.fail(o, req, err)
	x.flush()
	return res
}

// subject is what a request names (see subjectOf), with a bucket's
// service when it names a bucket alone.
func (t *tables) subject(req proto.Message) subject {
	s := subjectOf(req)
	if b, ok := t.bucket(s.bucket); ok && s.service == "" {
		if svc, ok := t.serviceByOrdinal(b.Service); ok {
			s.service = svc.Name
		}
	}
	return s
}

// svc returns a mutable copy of a service, owned by this command.
func (x *txn) svc(ord uint32) *Service {
	if s, ok := x.svcs[ord]; ok {
		return s
	}
	s, ok := x.t.serviceByOrdinal(ord)
	if !ok {
		panic(fmt.Sprintf("fsm: service ordinal %d missing", ord))
	}
	c := *s
	if x.svcs == nil {
		x.svcs = map[uint32]*Service{}
	}
	x.svcs[ord] = &c
	return &c
}

// peekSvc returns the current version of a service without copying it.
func (x *txn) peekSvc(ord uint32) *Service {
	if s, ok := x.svcs[ord]; ok {
		return s
	}
	s, _ := x.t.serviceByOrdinal(ord)
	return s
}

// reg returns a mutable copy of a registration, or nil if there is none.
func (x *txn) reg(svc uint32, worker string) *Registration {
	k := regKey{svc, worker}
	if m, ok := x.regs[k]; ok {
		return m.cur
	}
	r, ok := x.t.registration(svc, worker)
	if !ok {
		return nil
	}
	c := *r
	if x.regs == nil {
		x.regs = map[regKey]*regMut{}
	}
	x.regs[k] = &regMut{old: r, cur: &c}
	return &c
}

// newReg adds a registration to the command's changes.
func (x *txn) newReg(r *Registration) {
	if x.regs == nil {
		x.regs = map[regKey]*regMut{}
	}
	x.regs[regKey{r.Service, r.Worker}] = &regMut{cur: r}
}

// bkt returns a mutable copy of a bucket, or nil if there is none.
func (x *txn) bkt(id uint64) *Bucket {
	if m, ok := x.bkts[id]; ok {
		return m.cur
	}
	b, ok := x.t.bucket(id)
	if !ok {
		return nil
	}
	c := *b
	x.cacheBucket(&bucketMut{old: b, cur: &c})
	return &c
}

// peekBucket returns the current version of a bucket without copying it.
func (x *txn) peekBucket(id uint64) *Bucket {
	if m, ok := x.bkts[id]; ok {
		return m.cur
	}
	x.bkey.ID = id
	b, _ := x.t.buckets.Get(&x.bkey)
	return b
}

func (x *txn) cacheBucket(m *bucketMut) {
	if x.bkts == nil {
		x.bkts = map[uint64]*bucketMut{}
	}
	x.bkts[m.cur.ID] = m
}

// ownItems makes b.Items a slice this command may append to and edit.
func (x *txn) ownItems(b *Bucket, capacity int) {
	m := x.bkts[b.ID]
	if m.owned {
		return
	}
	items := make([]string, len(b.Items), max(capacity, len(b.Items)))
	copy(items, b.Items)
	b.Items = items
	m.owned = true
}

// dropBucket deletes a bucket at flush.
func (x *txn) dropBucket(id uint64) {
	x.bkt(id)
	x.bkts[id].cur = nil
}

// flush writes the command's changed records back. The order of writes does
// not matter: each goes to its own key.
func (x *txn) flush() {
	for _, m := range x.bkts {
		switch {
		case m.cur == nil && m.old == nil: // created and deleted by this command
		case m.cur == nil:
			x.t.putBucket(m.old, nil, int64(x.peekSvc(m.old.Service).Config.PriorityAging))
		default:
			x.t.putBucket(m.old, m.cur, int64(x.peekSvc(m.cur.Service).Config.PriorityAging))
		}
	}
	for _, s := range x.svcs {
		x.t.putService(s)
	}
	for _, m := range x.regs {
		if m.cur.Active() {
			m.cur.idleAt = m.cur.LastSeen + int64(x.peekSvc(m.cur.Service).Config.WorkerInactiveAfter)
		}
		x.t.putRegistration(m.old, m.cur)
	}
	x.svcs, x.regs, x.bkts = nil, nil, nil
}

// record appends an activity record.
func (x *txn) record(a *Activity) {
	a.Seq = x.t.meta.nextSeq
	x.t.meta.nextSeq++
	a.Index = x.index
	a.At = x.now
	if a.Actor == "" {
		a.Actor = x.hdr.GetActor()
	}
	if a.RequestID == "" {
		a.RequestID = x.hdr.GetRequestId()
	}
	x.t.putActivity(a)
}
