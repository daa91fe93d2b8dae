package fsm

import (
	"cmp"
	"strings"

	"github.com/tidwall/btree"
)

// tables is the whole state: copy-on-write B-trees, so that copy is O(1)
// and a copy never changes while the original is written.
type tables struct {
	meta meta

	nodes    *btree.BTreeG[*NodeAddress]
	services *btree.BTreeG[*Service] // by name
	ordinals *btree.BTreeG[*Service] // by ordinal
	workers  *btree.BTreeG[*Worker]
	regs     *btree.BTreeG[*Registration] // by (service, worker)
	idle     *btree.BTreeG[idleKey]       // active registrations by idle time
	items    *btree.BTreeG[*Item]         // by (service, id)
	remember *btree.BTreeG[doneKey]       // remembered done items, by (service, id): see remember.go
	buckets  *btree.BTreeG[*Bucket]       // by id
	ready    *btree.BTreeG[readyKey]      // unassigned buckets, best first
	leases   *btree.BTreeG[timeKey]       // leased buckets by deadline
	dead     *btree.BTreeG[timeKey]       // dead buckets by release time
	held     *btree.BTreeG[heldKey]       // leased and dead buckets by holder
	closed   *btree.BTreeG[svcTimeKey]    // done buckets by service and close time
	trimmed  *btree.BTreeG[svcTimeKey]    // done buckets whose results were trimmed, by service and close time
	voting   *btree.BTreeG[svcSeq]        // buckets not done that hold votes, by service and id (validation)
	results  *btree.BTreeG[*ResultBatch]  // by seq
	resSvc   *btree.BTreeG[svcSeq]        // result batches by service
	resWkr   *btree.BTreeG[wkrSeq]        // result batches by service and worker
	activity *btree.BTreeG[*Activity]     // by seq
	actSvc   *btree.BTreeG[strSeq]        // activity by service name
	actWkr   *btree.BTreeG[strSeq]        // activity by worker id
	requests *btree.BTreeG[*request]      // by key
	reqAge   *btree.BTreeG[ageKey]        // requests by time
}

// meta holds the state machine's clock and counters.
type meta struct {
	index       uint64
	now         int64
	nextSeq     uint64
	nextEpoch   uint64
	nextBucket  uint64
	nextService uint32
	// clusterVersion is the protocol every member applies; 0 means 1.
	clusterVersion uint32
	// requestBytes is what the remembered request ids cost (requestCost),
	// derived from them: snapshots do not carry it.
	requestBytes uint64
}

type idleKey struct {
	at      int64
	service uint32
	worker  string
}

type readyKey struct {
	service uint32
	score   int64 // higher is served first
	id      uint64
}

type timeKey struct {
	at int64
	id uint64
}

type heldKey struct {
	service uint32
	holder  string
	id      uint64
}

type svcTimeKey struct {
	service uint32
	at      int64
	id      uint64
}

type svcSeq struct {
	service uint32
	seq     uint64
}

type wkrSeq struct {
	service uint32
	worker  string
	seq     uint64
}

type strSeq struct {
	key string
	seq uint64
}

type ageKey struct {
	at  int64
	key string
}

func newTree[T any](less func(a, b T) bool) *btree.BTreeG[T] {
	return btree.NewBTreeGOptions(less, btree.Options{NoLocks: true, Degree: 32})
}

func newTables() *tables {
	return &tables{
		meta:     meta{nextSeq: 1, nextEpoch: 1, nextBucket: 1, nextService: 1},
		nodes:    newTree(func(a, b *NodeAddress) bool { return a.ID < b.ID }),
		services: newTree(func(a, b *Service) bool { return a.Name < b.Name }),
		ordinals: newTree(func(a, b *Service) bool { return a.Ordinal < b.Ordinal }),
		workers:  newTree(func(a, b *Worker) bool { return a.ID < b.ID }),
		regs: newTree(func(a, b *Registration) bool {
			return cmp.Or(cmp.Compare(a.Service, b.Service), strings.Compare(a.Worker, b.Worker)) < 0
		}),
		idle: newTree(func(a, b idleKey) bool {
			return cmp.Or(cmp.Compare(a.at, b.at), cmp.Compare(a.service, b.service), strings.Compare(a.worker, b.worker)) < 0
		}),
		items: newTree(func(a, b *Item) bool {
			if a.Service != b.Service {
				return a.Service < b.Service
			}
			return a.ID < b.ID
		}),
		buckets: newTree(func(a, b *Bucket) bool { return a.ID < b.ID }),
		ready: newTree(func(a, b readyKey) bool {
			return cmp.Or(cmp.Compare(a.service, b.service), cmp.Compare(b.score, a.score), cmp.Compare(a.id, b.id)) < 0
		}),
		leases: newTree(lessTime),
		dead:   newTree(lessTime),
		held: newTree(func(a, b heldKey) bool {
			return cmp.Or(cmp.Compare(a.service, b.service), strings.Compare(a.holder, b.holder), cmp.Compare(a.id, b.id)) < 0
		}),
		remember: newTree(lessDone),
		closed:   newTree(lessSvcTime),
		trimmed:  newTree(lessSvcTime),
		voting:   newTree(lessSvcSeq),
		results:  newTree(func(a, b *ResultBatch) bool { return a.Seq < b.Seq }),
		resSvc:   newTree(lessSvcSeq),
		resWkr: newTree(func(a, b wkrSeq) bool {
			return cmp.Or(cmp.Compare(a.service, b.service), strings.Compare(a.worker, b.worker), cmp.Compare(a.seq, b.seq)) < 0
		}),
		activity: newTree(func(a, b *Activity) bool { return a.Seq < b.Seq }),
		actSvc:   newTree(lessStrSeq),
		actWkr:   newTree(lessStrSeq),
		requests: newTree(func(a, b *request) bool { return a.Key < b.Key }),
		reqAge: newTree(func(a, b ageKey) bool {
			return cmp.Or(cmp.Compare(a.at, b.at), strings.Compare(a.key, b.key)) < 0
		}),
	}
}

func lessSvcTime(a, b svcTimeKey) bool {
	return cmp.Or(cmp.Compare(a.service, b.service), cmp.Compare(a.at, b.at), cmp.Compare(a.id, b.id)) < 0
}

func lessSvcSeq(a, b svcSeq) bool {
	return cmp.Or(cmp.Compare(a.service, b.service), cmp.Compare(a.seq, b.seq)) < 0
}

func lessTime(a, b timeKey) bool { return cmp.Or(cmp.Compare(a.at, b.at), cmp.Compare(a.id, b.id)) < 0 }

func lessStrSeq(a, b strSeq) bool {
	return cmp.Or(strings.Compare(a.key, b.key), cmp.Compare(a.seq, b.seq)) < 0
}

// copy returns a frozen copy: later writes to t never show in it.
func (t *tables) copy() *tables {
	return &tables{
		meta:     t.meta,
		nodes:    t.nodes.Copy(),
		services: t.services.Copy(),
		ordinals: t.ordinals.Copy(),
		workers:  t.workers.Copy(),
		regs:     t.regs.Copy(),
		idle:     t.idle.Copy(),
		items:    t.items.Copy(),
		remember: t.remember.Copy(),
		buckets:  t.buckets.Copy(),
		ready:    t.ready.Copy(),
		leases:   t.leases.Copy(),
		dead:     t.dead.Copy(),
		held:     t.held.Copy(),
		closed:   t.closed.Copy(),
		trimmed:  t.trimmed.Copy(),
		voting:   t.voting.Copy(),
		results:  t.results.Copy(),
		resSvc:   t.resSvc.Copy(),
		resWkr:   t.resWkr.Copy(),
		activity: t.activity.Copy(),
		actSvc:   t.actSvc.Copy(),
		actWkr:   t.actWkr.Copy(),
		requests: t.requests.Copy(),
		reqAge:   t.reqAge.Copy(),
	}
}

// Lookups shared by apply and reads.

func (t *tables) serviceByName(name string) (*Service, bool) {
	return t.services.Get(&Service{Name: name})
}

func (t *tables) serviceByOrdinal(o uint32) (*Service, bool) {
	return t.ordinals.Get(&Service{Ordinal: o})
}

func (t *tables) bucket(id uint64) (*Bucket, bool) { return t.buckets.Get(&Bucket{ID: id}) }

func (t *tables) item(svc uint32, id string) (*Item, bool) {
	return t.items.Get(&Item{Service: svc, ID: id})
}

func (t *tables) registration(svc uint32, worker string) (*Registration, bool) {
	return t.regs.Get(&Registration{Service: svc, Worker: worker})
}

func (t *tables) worker(id string) (*Worker, bool) { return t.workers.Get(&Worker{ID: id}) }

// Writes keep the secondary indexes in step with the primary records. old is
// the record being replaced (nil for an insert), new the replacement (nil for
// a delete).

func (t *tables) putService(s *Service) {
	t.services.Set(s)
	t.ordinals.Set(s)
}

func readyKeyOf(b *Bucket, aging int64) readyKey {
	ms := int64(aging / 1e6)
	return readyKey{service: b.Service, score: int64(b.Priority)*ms - b.ReadySince/1e6, id: b.ID}
}

func (t *tables) putBucket(old, b *Bucket, aging int64) {
	if old != nil {
		t.unindexBucket(old, aging)
	}
	if b == nil {
		t.buckets.Delete(old)
		return
	}
	t.buckets.Set(b)
	switch {
	case b.State == unassigned:
		t.ready.Set(readyKeyOf(b, aging))
	case b.State == leased:
		t.leases.Set(timeKey{b.Deadline, b.ID})
	case b.State == dead:
		t.dead.Set(timeKey{b.ReleaseAt, b.ID})
	case b.State == done:
		t.closed.Set(svcTimeKey{b.Service, b.ClosedAt, b.ID})
		if b.ResultSeq == 0 {
			t.trimmed.Set(svcTimeKey{b.Service, b.ClosedAt, b.ID})
		}
	}
	if b.Held() {
		t.held.Set(heldKey{b.Service, b.Holder, b.ID})
	}
	if b.awaitingQuorum() {
		t.voting.Set(svcSeq{b.Service, b.ID})
	}
}

func (t *tables) unindexBucket(b *Bucket, aging int64) {
	switch b.State {
	case unassigned:
		t.ready.Delete(readyKeyOf(b, aging))
	case leased:
		t.leases.Delete(timeKey{b.Deadline, b.ID})
	case dead:
		t.dead.Delete(timeKey{b.ReleaseAt, b.ID})
	case done:
		t.closed.Delete(svcTimeKey{b.Service, b.ClosedAt, b.ID})
		if b.ResultSeq == 0 {
			t.trimmed.Delete(svcTimeKey{b.Service, b.ClosedAt, b.ID})
		}
	}
	if b.Held() {
		t.held.Delete(heldKey{b.Service, b.Holder, b.ID})
	}
	if b.awaitingQuorum() {
		t.voting.Delete(svcSeq{b.Service, b.ID})
	}
}

func (t *tables) putRegistration(old, r *Registration) {
	if old != nil && old.Active() {
		t.idle.Delete(idleKey{old.idleAt, old.Service, old.Worker})
	}
	t.regs.Set(r)
	if r.Active() {
		t.idle.Set(idleKey{r.idleAt, r.Service, r.Worker})
	}
}

func (t *tables) dropRegistration(r *Registration) {
	if r.Active() {
		t.idle.Delete(idleKey{r.idleAt, r.Service, r.Worker})
	}
	t.regs.Delete(r)
}

func (t *tables) putResults(rb *ResultBatch) {
	t.results.Set(rb)
	t.resSvc.Set(svcSeq{rb.Service, rb.Seq})
	t.resWkr.Set(wkrSeq{rb.Service, rb.Worker, rb.Seq})
}

func (t *tables) dropResults(rb *ResultBatch) {
	t.results.Delete(rb)
	t.resSvc.Delete(svcSeq{rb.Service, rb.Seq})
	t.resWkr.Delete(wkrSeq{rb.Service, rb.Worker, rb.Seq})
}

func (t *tables) putActivity(a *Activity) {
	t.activity.Set(a)
	if a.Service != "" {
		t.actSvc.Set(strSeq{a.Service, a.Seq})
	}
	if a.Worker != "" {
		t.actWkr.Set(strSeq{a.Worker, a.Seq})
	}
}

func (t *tables) dropActivity(a *Activity) {
	t.activity.Delete(a)
	if a.Service != "" {
		t.actSvc.Delete(strSeq{a.Service, a.Seq})
	}
	if a.Worker != "" {
		t.actWkr.Delete(strSeq{a.Worker, a.Seq})
	}
}

func (t *tables) putRequest(r *request) {
	t.requests.Set(r)
	t.reqAge.Set(ageKey{r.At, r.Key})
	t.meta.requestBytes += r.cost()
}

func (t *tables) dropRequest(r *request) {
	t.requests.Delete(r)
	t.reqAge.Delete(ageKey{r.At, r.Key})
	t.meta.requestBytes -= r.cost()
}
