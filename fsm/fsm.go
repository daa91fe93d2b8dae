package fsm

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"sync/atomic"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/raft"
	"google.golang.org/protobuf/proto"

	"github.com/tidwall/btree"

	rationv1 "github.com/rationhq/ration/api/ration/v1"
)

const (
	unassigned = rationv1.BucketState_BUCKET_STATE_UNASSIGNED
	leased     = rationv1.BucketState_BUCKET_STATE_LEASED
	dead       = rationv1.BucketState_BUCKET_STATE_DEAD
	done       = rationv1.BucketState_BUCKET_STATE_DONE

	pending     = rationv1.ItemState_ITEM_STATE_PENDING
	itemLeased  = rationv1.ItemState_ITEM_STATE_LEASED
	itemDone    = rationv1.ItemState_ITEM_STATE_DONE
	quarantined = rationv1.ItemState_ITEM_STATE_QUARANTINED

	workerActive   = rationv1.WorkerState_WORKER_STATE_ACTIVE
	workerInactive = rationv1.WorkerState_WORKER_STATE_INACTIVE
	serviceActive  = rationv1.ServiceState_SERVICE_STATE_ACTIVE
	serviceRevoked = rationv1.ServiceState_SERVICE_STATE_REVOKED
)

// FSM is ration's replicated state machine. It implements raft.FSM and
// raft.BatchingFSM.
//
// Apply, ApplyBatch, Snapshot and Restore must be called from one goroutine
// (raft's FSM goroutine). State may be called from any goroutine at any time:
// it never blocks and never waits for Apply.
type FSM struct {
	log     hclog.Logger
	t       *tables                       // written by the apply goroutine only
	pub     atomic.Pointer[State]         // the latest frozen version, for readers
	changed atomic.Pointer[chan struct{}] // closed when a newer version is published
}

var (
	_ raft.FSM         = (*FSM)(nil)
	_ raft.BatchingFSM = (*FSM)(nil)
)

// New returns an empty state machine. log may be nil.
func New(log hclog.Logger) *FSM {
	if log == nil {
		log = hclog.NewNullLogger()
	}
	f := &FSM{log: log, t: newTables()}
	f.publish()
	return f
}

// State returns the latest applied version of the state. It is immutable:
// holding it never blocks Apply, and Apply never changes it.
func (f *FSM) State() *State { return f.pub.Load() }

// Changed returns a channel that is closed once a version newer than the
// current one is published. Waiting on it never blocks Apply.
func (f *FSM) Changed() <-chan struct{} { return *f.changed.Load() }

func (f *FSM) publish() {
	f.pub.Store(&State{t: f.t.copy()})
	ch := make(chan struct{})
	if old := f.changed.Swap(&ch); old != nil {
		close(*old)
	}
}

// Apply implements raft.FSM. It returns a *rationv1.CommandResult for
// command entries and nil for others. It panics on an entry it cannot
// decode: every node would fail the same way, and stopping is better than
// diverging.
func (f *FSM) Apply(l *raft.Log) any {
	r := f.applyLog(l)
	f.publish()
	return r
}

// ApplyBatch implements raft.BatchingFSM: it applies the entries in order
// and publishes one new version for the batch.
func (f *FSM) ApplyBatch(logs []*raft.Log) []any {
	out := make([]any, len(logs))
	for i, l := range logs {
		out[i] = f.applyLog(l)
	}
	f.publish()
	return out
}

func (f *FSM) applyLog(l *raft.Log) any {
	if l.Index > f.t.meta.index {
		f.t.meta.index = l.Index
	}
	if l.Type != raft.LogCommand {
		return nil
	}
	cmd := new(rationv1.Command)
	if err := proto.Unmarshal(l.Data, cmd); err != nil {
		panic(fmt.Sprintf("fsm: cannot decode log entry %d: %v", l.Index, err))
	}
	sums, err := bodySums(l.Data)
	if err != nil || len(sums) != leaves(cmd) {
		sums = nil // cannot happen for a decodable entry; bodyHash then computes them
	}
	return f.applyCommand(l.Index, cmd, &sums)
}

// leaves counts the commands applyCommand applies one by one.
func leaves(cmd *rationv1.Command) int {
	if b, ok := cmd.Op.(*rationv1.Command_Batch); ok {
		n := 0
		for _, c := range b.Batch.GetCommands() {
			n += leaves(c)
		}
		return n
	}
	return 1
}

// ApplyCommand applies one decoded command at index. It is Apply without
// raft, for tests and tools that replay commands. The state may keep cmd's
// byte fields, so cmd must not change afterwards.
func (f *FSM) ApplyCommand(index uint64, cmd *rationv1.Command) *rationv1.CommandResult {
	if index > f.t.meta.index {
		f.t.meta.index = index
	}
	r := f.applyCommand(index, cmd, nil)
	f.publish()
	return r
}

// applyCommand applies cmd. sums, when not nil, holds the body hashes of
// the commands still to apply in this entry (see bodySums).
func (f *FSM) applyCommand(index uint64, cmd *rationv1.Command, sums *[][]byte) *rationv1.CommandResult {
	hdr := cmd.GetHeader()
	if hdr == nil {
		panic(fmt.Sprintf("fsm: log entry %d has no header", index))
	}
	if hdr.GetProposedAt() > f.t.meta.now {
		f.t.meta.now = hdr.GetProposedAt()
	}
	if b, ok := cmd.Op.(*rationv1.Command_Batch); ok {
		res := make([]*rationv1.CommandResult, len(b.Batch.GetCommands()))
		for i, c := range b.Batch.GetCommands() {
			res[i] = f.applyCommand(index, c, sums)
		}
		return &rationv1.CommandResult{Value: &rationv1.CommandResult_Batch{Batch: &rationv1.BatchResult{Results: res}}}
	}
	var sum []byte
	if sums != nil && len(*sums) > 0 {
		sum, *sums = (*sums)[0], (*sums)[1:]
	}
	if packable(cmd) {
		sum = nil // hashed in packed form, see canonicalHash
	}
	orig := cmd
	cmd, packedResults, perr := unpackCommand(cmd)
	x := &txn{t: f.t, index: index, now: f.t.meta.now, hdr: hdr, packedResults: packedResults}
	if perr != nil {
		res := x.fail(cmd, perr)
		x.flush()
		return res
	}
	if err := x.checkOwner(cmd); err != nil {
		// Before the request-id lookup: a rotated-away token gets no answer,
		// not even a replayed one. The refusal is not remembered.
		res := x.fail(cmd, err)
		x.flush()
		return res
	}
	key := x.requestKey(cmd)
	if key == "" {
		return x.run(cmd)
	}
	if sum == nil {
		sum = canonicalHash(orig)
	}
	if prev, ok := f.t.requests.Get(&request{Key: key}); ok {
		if string(prev.BodyHash) == string(sum) {
			return prev.Result
		}
		res := x.fail(cmd, reusedID(hdr, prev))
		x.flush()
		return res
	}
	res := x.run(cmd)
	f.t.putRequest(&request{Key: key, BodyHash: sum, At: x.now, Index: index, Result: res})
	return res
}

// reusedID is the refusal of a request id that first came with another body.
func reusedID(hdr *rationv1.CommandHeader, prev *request) error {
	return fmt.Errorf("request id %q was first used at index %d for another request: %w", hdr.GetRequestId(), prev.Index, ErrRequestIDReused)
}

// txn applies one command. It caches the records it changes so that a
// command touching a service or registration many times clones it once, and
// writes them back in flush.
type txn struct {
	t     *tables
	index uint64
	now   int64
	hdr   *rationv1.CommandHeader
	rng   *rand.Rand

	svcs map[uint32]*Service
	regs map[regKey]*regMut
	bkts map[uint64]*bucketMut

	// packedResults is a CompactSubmit's results as the log carried them,
	// already in the form a ResultBatch keeps.
	packedResults string

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

func (x *txn) random() *rand.Rand {
	if x.rng == nil {
		x.rng = rand.New(rand.NewPCG(x.hdr.GetSeed(), x.index))
	}
	return x.rng
}

// requestKey scopes a request id to who sent it, so one client can never
// read another's answer by guessing its request id.
func (x *txn) requestKey(cmd *rationv1.Command) string {
	id := x.hdr.GetRequestId()
	if id == "" {
		return ""
	}
	var scope string
	switch op := cmd.Op.(type) {
	case *rationv1.Command_Register:
		scope = "w/" + op.Register.GetWorkerId()
	case *rationv1.Command_Unregister:
		scope = "w/" + op.Unregister.GetWorkerId()
	case *rationv1.Command_Acquire:
		scope = "w/" + op.Acquire.GetWorkerId()
	case *rationv1.Command_Submit:
		scope = "w/" + op.Submit.GetWorkerId()
	case *rationv1.Command_Release:
		scope = "w/" + op.Release.GetWorkerId()
	case *rationv1.Command_Heartbeat:
		if len(op.Heartbeat.GetEntries()) != 1 {
			return "" // a coalesced heartbeat is the leader's own, never retried by a client
		}
		scope = "w/" + op.Heartbeat.GetEntries()[0].GetRequest().GetWorkerId()
	case *rationv1.Command_Tick, *rationv1.Command_SetNode, *rationv1.Command_RemoveNode:
		return ""
	default:
		scope = "a/" + x.hdr.GetActor()
	}
	return scope + "\x00" + id
}

// run dispatches one command: one case, one call.
func (x *txn) run(cmd *rationv1.Command) *rationv1.CommandResult {
	var (
		res *rationv1.CommandResult
		err error
	)
	switch op := cmd.Op.(type) {
	case *rationv1.Command_CreateService:
		var r *rationv1.CreateServiceResponse
		r, err = x.createService(op.CreateService)
		res = &rationv1.CommandResult{Value: &rationv1.CommandResult_CreateService{CreateService: r}, OwnerTokenHash: x.hdr.GetNewOwnerTokenHash()}
	case *rationv1.Command_UpdateService:
		var r *rationv1.UpdateServiceResponse
		r, err = x.updateService(op.UpdateService)
		res = &rationv1.CommandResult{Value: &rationv1.CommandResult_UpdateService{UpdateService: r}}
	case *rationv1.Command_RevokeService:
		var r *rationv1.RevokeServiceResponse
		r, err = x.revokeService(op.RevokeService)
		res = &rationv1.CommandResult{Value: &rationv1.CommandResult_RevokeService{RevokeService: r}}
	case *rationv1.Command_ReinstateService:
		var r *rationv1.ReinstateServiceResponse
		r, err = x.reinstateService(op.ReinstateService)
		res = &rationv1.CommandResult{Value: &rationv1.CommandResult_ReinstateService{ReinstateService: r}}
	case *rationv1.Command_RotateOwnerToken:
		var r *rationv1.RotateOwnerTokenResponse
		r, err = x.rotateOwnerToken(op.RotateOwnerToken)
		res = &rationv1.CommandResult{Value: &rationv1.CommandResult_RotateOwnerToken{RotateOwnerToken: r}, OwnerTokenHash: x.hdr.GetNewOwnerTokenHash()}
	case *rationv1.Command_Register:
		var r *rationv1.RegisterResponse
		r, err = x.register(op.Register)
		res = &rationv1.CommandResult{Value: &rationv1.CommandResult_Register{Register: r}}
	case *rationv1.Command_Unregister:
		var r *rationv1.UnregisterResponse
		r, err = x.unregister(op.Unregister)
		res = &rationv1.CommandResult{Value: &rationv1.CommandResult_Unregister{Unregister: r}}
	case *rationv1.Command_DeactivateWorker:
		var r *rationv1.DeactivateWorkerResponse
		r, err = x.deactivateWorker(op.DeactivateWorker)
		res = &rationv1.CommandResult{Value: &rationv1.CommandResult_DeactivateWorker{DeactivateWorker: r}}
	case *rationv1.Command_ReactivateWorker:
		var r *rationv1.ReactivateWorkerResponse
		r, err = x.reactivateWorker(op.ReactivateWorker)
		res = &rationv1.CommandResult{Value: &rationv1.CommandResult_ReactivateWorker{ReactivateWorker: r}}
	case *rationv1.Command_RevertWorker:
		var r *rationv1.RevertWorkerResponse
		r, err = x.revertWorker(op.RevertWorker)
		res = &rationv1.CommandResult{Value: &rationv1.CommandResult_RevertWorker{RevertWorker: r}}
	case *rationv1.Command_AddItems:
		var r *rationv1.AddItemsResponse
		r, err = x.addItems(op.AddItems)
		res = &rationv1.CommandResult{Value: &rationv1.CommandResult_AddItems{AddItems: r}}
	case *rationv1.Command_Acquire:
		var r *rationv1.AcquireResponse
		r, err = x.acquire(op.Acquire)
		res = &rationv1.CommandResult{Value: &rationv1.CommandResult_Acquire{Acquire: r}}
	case *rationv1.Command_Heartbeat:
		// Each entry succeeds or fails on its own; the command never fails as a whole.
		r := x.heartbeat(op.Heartbeat)
		res = &rationv1.CommandResult{Value: &rationv1.CommandResult_Heartbeat{Heartbeat: r}}
	case *rationv1.Command_Submit:
		var r *rationv1.SubmitResponse
		r, err = x.submit(op.Submit)
		res = &rationv1.CommandResult{Value: &rationv1.CommandResult_Submit{Submit: r}}
	case *rationv1.Command_Release:
		var r *rationv1.ReleaseResponse
		r, err = x.release(op.Release)
		res = &rationv1.CommandResult{Value: &rationv1.CommandResult_Release{Release: r}}
	case *rationv1.Command_Tick:
		r := x.tick(op.Tick)
		res = &rationv1.CommandResult{Value: &rationv1.CommandResult_Tick{Tick: r}}
	case *rationv1.Command_SetNode:
		err = x.setNode(op.SetNode)
		res = &rationv1.CommandResult{}
	case *rationv1.Command_RemoveNode:
		err = x.removeNode(op.RemoveNode)
		res = &rationv1.CommandResult{}
	default:
		panic(fmt.Sprintf("fsm: log entry %d has an unknown operation %T", x.index, cmd.Op))
	}
	if err != nil {
		res = x.fail(cmd, err)
	}
	x.flush()
	return res
}

// fail records a refused command and turns err into its result. A refused
// command changes nothing but the activity log and the rejected counters.
func (x *txn) fail(cmd *rationv1.Command, err error) *rationv1.CommandResult {
	reason := Reason(err)
	if reason == "" {
		// Only domain errors may come back from an operation: anything else
		// is a bug, and nodes must not diverge over it.
		panic(fmt.Sprintf("fsm: log entry %d: operation returned a non-domain error: %v", x.index, err))
	}
	a := &Activity{Action: actionOf(cmd), Reason: reason, Message: err.Error()}
	svcName, worker, bucket := x.t.subject(cmd)
	a.Service, a.Worker, a.Bucket = svcName, worker, bucket
	if s, ok := x.t.serviceByName(svcName); ok {
		ms := x.svc(s.Ordinal)
		ms.Counters.Rejected++
		ms.Counters.RejectedBy = addVerdict(ms.Counters.RejectedBy, reason, 1)
		// A wrong secret is someone else's fault: it must not stain the worker's record.
		if r := x.reg(s.Ordinal, worker); r != nil && !errors.Is(err, ErrBadCredential) {
			r.Counters.Rejected++
			r.Counters.RejectedBy = addVerdict(r.Counters.RejectedBy, reason, 1)
		}
	}
	x.record(a)
	return &rationv1.CommandResult{Error: &rationv1.CommandError{Reason: reason, Message: err.Error()}}
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

// checkSetNode runs setNode's refusals (Precheck runs them too).
func checkSetNode(op *rationv1.SetNode) error {
	if op.GetNodeId() == "" {
		return fmt.Errorf("node_id is empty: %w", ErrInvalidArgument)
	}
	return nil
}

// checkRemoveNode runs removeNode's refusals (Precheck runs them too).
func (x *txn) checkRemoveNode(op *rationv1.RemoveNode) error {
	if _, ok := x.t.nodes.Get(&Node{ID: op.GetNodeId()}); !ok {
		return fmt.Errorf("node %q: %w", op.GetNodeId(), ErrNodeNotFound)
	}
	return nil
}

func (x *txn) setNode(op *rationv1.SetNode) error {
	if err := checkSetNode(op); err != nil {
		return err
	}
	x.t.nodes.Set(&Node{ID: op.GetNodeId(), APIAddress: op.GetApiAddress()})
	x.record(&Activity{Action: ActSetNode, Message: op.GetNodeId() + " " + op.GetApiAddress()})
	return nil
}

func (x *txn) removeNode(op *rationv1.RemoveNode) error {
	if err := x.checkRemoveNode(op); err != nil {
		return err
	}
	x.t.nodes.Delete(&Node{ID: op.GetNodeId()})
	x.record(&Activity{Action: ActRemoveNode, Message: op.GetNodeId()})
	return nil
}

// actionOf names a command's action for the activity log.
func actionOf(cmd *rationv1.Command) string {
	switch cmd.Op.(type) {
	case *rationv1.Command_CreateService:
		return ActCreateService
	case *rationv1.Command_UpdateService:
		return ActUpdateService
	case *rationv1.Command_RevokeService:
		return ActRevokeService
	case *rationv1.Command_ReinstateService:
		return ActReinstateService
	case *rationv1.Command_RotateOwnerToken:
		return ActRotateOwnerToken
	case *rationv1.Command_Register:
		return ActRegister
	case *rationv1.Command_Unregister:
		return ActUnregister
	case *rationv1.Command_DeactivateWorker:
		return ActDeactivate
	case *rationv1.Command_ReactivateWorker:
		return ActReactivate
	case *rationv1.Command_RevertWorker:
		return ActRevert
	case *rationv1.Command_AddItems:
		return ActAddItems
	case *rationv1.Command_Acquire:
		return ActAcquire
	case *rationv1.Command_Heartbeat:
		return ActHeartbeat
	case *rationv1.Command_Submit:
		return ActSubmit
	case *rationv1.Command_Release:
		return ActRelease
	case *rationv1.Command_SetNode:
		return ActSetNode
	case *rationv1.Command_RemoveNode:
		return ActRemoveNode
	case *rationv1.Command_Tick:
		return ActTick
	}
	return "unknown"
}

// subject returns the service, worker and bucket a refusal of cmd is
// recorded under: what the command names, and for a bucket alone, the
// bucket's service.
func (t *tables) subject(cmd *rationv1.Command) (service, worker string, bucket uint64) {
	service, worker, bucket = subjectOf(cmd)
	if b, ok := t.bucket(bucket); ok && service == "" {
		if s, ok := t.serviceByOrdinal(b.Service); ok {
			service = s.Name
		}
	}
	return service, worker, bucket
}

// subjectOf returns the service, worker and bucket a command names, as far
// as the command itself says.
func subjectOf(cmd *rationv1.Command) (service, worker string, bucket uint64) {
	switch op := cmd.Op.(type) {
	case *rationv1.Command_CreateService:
		return op.CreateService.GetName(), "", 0
	case *rationv1.Command_UpdateService:
		return op.UpdateService.GetName(), "", 0
	case *rationv1.Command_RevokeService:
		return op.RevokeService.GetName(), "", 0
	case *rationv1.Command_ReinstateService:
		return op.ReinstateService.GetName(), "", 0
	case *rationv1.Command_RotateOwnerToken:
		return op.RotateOwnerToken.GetName(), "", 0
	case *rationv1.Command_Register:
		return op.Register.GetService(), op.Register.GetWorkerId(), 0
	case *rationv1.Command_Unregister:
		return op.Unregister.GetService(), op.Unregister.GetWorkerId(), 0
	case *rationv1.Command_DeactivateWorker:
		return op.DeactivateWorker.GetService(), op.DeactivateWorker.GetWorkerId(), 0
	case *rationv1.Command_ReactivateWorker:
		return op.ReactivateWorker.GetService(), op.ReactivateWorker.GetWorkerId(), 0
	case *rationv1.Command_RevertWorker:
		return op.RevertWorker.GetService(), op.RevertWorker.GetWorkerId(), 0
	case *rationv1.Command_AddItems:
		return op.AddItems.GetService(), "", 0
	case *rationv1.Command_Acquire:
		return op.Acquire.GetService(), op.Acquire.GetWorkerId(), 0
	case *rationv1.Command_Submit:
		return "", op.Submit.GetWorkerId(), op.Submit.GetBucketId()
	case *rationv1.Command_Release:
		return "", op.Release.GetWorkerId(), op.Release.GetBucketId()
	}
	return "", "", 0
}
