package fsm

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"runtime/debug"

	"github.com/hashicorp/raft"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"

	statev1 "github.com/rationhq/ration/api/ration/state/v1"
	"github.com/rationhq/ration/fsm/kind"
)

// Snapshot format: the magic, a big-endian uint32 version, then
// length-prefixed SnapshotRecords (see api/ration/state/v1/snapshot.proto),
// the meta first; from version 2 on, an end record with the count last.
const (
	snapshotMagic = "RATNSNAP"
	// SnapshotVersion is the format Persist writes. Restore reads it and
	// every earlier version kept in testdata. Format 3 added the services'
	// retention settings and export position.
	SnapshotVersion = 3
	// OldestSnapshotVersion is the oldest format Restore reads.
	OldestSnapshotVersion = 1
	// maxRecord bounds one record, so a corrupt length cannot make Restore
	// allocate without limit.
	maxRecord = 64 << 20
)

// Snapshot implements raft.FSM. It is O(1): the state is copy-on-write, so
// the snapshot is a frozen copy that Persist encodes while Apply goes on.
func (f *FSM) Snapshot() (raft.FSMSnapshot, error) { return &fsmSnapshot{t: f.t.copy()}, nil }

type fsmSnapshot struct{ t *tables }

// Persist implements raft.FSMSnapshot.
func (s *fsmSnapshot) Persist(sink raft.SnapshotSink) error {
	w := bufio.NewWriterSize(sink, 1<<20)
	err := s.t.encode(w)
	if err == nil {
		err = w.Flush()
	}
	if err != nil {
		_ = sink.Cancel()
		return fmt.Errorf("persist snapshot: %w", err)
	}
	return sink.Close()
}

// Release implements raft.FSMSnapshot.
func (s *fsmSnapshot) Release() {}

// WriteSnapshot writes this version in the snapshot format. Equal states give
// equal bytes.
func (s *State) WriteSnapshot(w io.Writer) error {
	bw := bufio.NewWriterSize(w, 1<<20)
	if err := s.t.encode(bw); err != nil {
		return err
	}
	return bw.Flush()
}

// Restore implements raft.FSM: it replaces the whole state with a snapshot's.
// On error the current state is left as it was.
func (f *FSM) Restore(rc io.ReadCloser) error {
	defer rc.Close()
	// A restore allocates the whole state, all of it live: collecting
	// garbage as often as usual costs a sixth of its time for nothing.
	defer debug.SetGCPercent(debug.SetGCPercent(400))
	t, err := decode(bufio.NewReaderSize(rc, 1<<20))
	if err != nil {
		return fmt.Errorf("restore snapshot: %w", err)
	}
	f.t = t
	f.publish()
	return nil
}

type recordWriter struct {
	w   io.Writer
	buf []byte
	err error
	n   uint64 // records written
}

func (rw *recordWriter) put(r *statev1.SnapshotRecord) {
	if rw.err != nil {
		return
	}
	rw.n++
	b, err := proto.MarshalOptions{Deterministic: true}.MarshalAppend(rw.buf[:0], r)
	if err != nil {
		rw.err = err
		return
	}
	rw.buf = b
	var hdr [binary.MaxVarintLen64]byte
	n := binary.PutUvarint(hdr[:], uint64(len(b)))
	if _, err := rw.w.Write(hdr[:n]); err != nil {
		rw.err = err
		return
	}
	_, rw.err = rw.w.Write(b)
}

func (t *tables) encode(w io.Writer) error {
	var head [12]byte
	copy(head[:], snapshotMagic)
	binary.BigEndian.PutUint32(head[8:], SnapshotVersion)
	if _, err := w.Write(head[:]); err != nil {
		return err
	}
	rw := &recordWriter{w: w}
	m := t.meta
	rw.put(&statev1.SnapshotRecord{Record: &statev1.SnapshotRecord_Meta{Meta: &statev1.SnapshotMeta{
		Index: m.index, Now: m.now, NextSeq: m.nextSeq, NextEpoch: m.nextEpoch, NextBucket: m.nextBucket, NextService: m.nextService,
		ClusterVersion: clusterVersionRecord(m.clusterVersion),
	}}})
	t.nodes.Scan(func(n *NodeAddress) bool {
		rw.put(&statev1.SnapshotRecord{Record: &statev1.SnapshotRecord_Node{Node: &statev1.NodeRecord{
			NodeId: n.ID, ApiAddress: n.APIAddress}}})
		return rw.err == nil
	})
	t.ordinals.Scan(func(s *Service) bool {
		rw.put(&statev1.SnapshotRecord{Record: &statev1.SnapshotRecord_Service{Service: serviceRecord(s)}})
		return rw.err == nil
	})
	t.workers.Scan(func(w *Worker) bool {
		rw.put(&statev1.SnapshotRecord{Record: &statev1.SnapshotRecord_Worker{Worker: &statev1.WorkerRecord{
			Id: w.ID, SecretHash: w.SecretHash, CreatedAt: w.CreatedAt}}})
		return rw.err == nil
	})
	t.regs.Scan(func(r *Registration) bool {
		rw.put(&statev1.SnapshotRecord{Record: &statev1.SnapshotRecord_Registration{Registration: &statev1.RegistrationRecord{
			Service: r.Service, WorkerId: r.Worker, Name: r.Name, State: r.State, Reason: r.Reason,
			RegisteredAt: r.RegisteredAt, LastSeen: r.LastSeen, ChangedAt: r.ChangedAt, Counters: r.Counters.Proto(), Blocked: r.Blocked,
			TrustRun: r.TrustRun,
		}}})
		return rw.err == nil
	})
	t.buckets.Scan(func(b *Bucket) bool {
		rw.put(&statev1.SnapshotRecord{Record: &statev1.SnapshotRecord_Bucket{Bucket: bucketRecord(b)}})
		return rw.err == nil
	})
	item := &statev1.ItemRecord{}
	rec := &statev1.SnapshotRecord{Record: &statev1.SnapshotRecord_Item{Item: item}}
	t.items.Scan(func(it *Item) bool {
		item.Service, item.Id, item.Priority, item.Attempts = it.Service, it.ID, it.Priority, it.Attempts
		item.Bucket, item.Quarantined, item.Since, item.Inconclusive = it.Bucket, it.Quarantined, it.Since, it.Inconclusive
		rw.put(rec)
		return rw.err == nil
	})
	t.results.Scan(func(rb *ResultBatch) bool {
		r := &statev1.ResultRecord{Seq: rb.Seq, Service: rb.Service, WorkerId: rb.Worker, Bucket: rb.Bucket,
			Epoch: rb.Epoch, At: rb.At, Results: make([]*statev1.StoredResult, rb.Len()),
			Validated: rb.Validated, Votes: votesRecord(rb.Votes)}
		for i, x := range rb.All() {
			r.Results[i] = &statev1.StoredResult{Item: x.Item, Verdict: x.Verdict, Payload: x.Payload, RevertedAt: x.RevertedAt}
		}
		rw.put(&statev1.SnapshotRecord{Record: &statev1.SnapshotRecord_Result{Result: r}})
		return rw.err == nil
	})
	t.activity.Scan(func(a *Activity) bool {
		rw.put(&statev1.SnapshotRecord{Record: &statev1.SnapshotRecord_Activity{Activity: &statev1.ActivityRecord{
			Seq: a.Seq, Index: a.Index, At: a.At, Actor: a.Actor, Service: a.Service, WorkerId: a.Worker,
			Action: a.Action, Bucket: a.Bucket, Reason: a.Reason, Message: a.Message, Count: a.Count, RequestId: a.RequestID,
		}}})
		return rw.err == nil
	})
	t.requests.Scan(func(r *request) bool {
		rw.put(&statev1.SnapshotRecord{Record: &statev1.SnapshotRecord_Request{Request: &statev1.RequestRecord{
			Key: r.Key, BodyHash: r.BodyHash, At: r.At, Index: r.Index, Result: r.Answer}}})
		return rw.err == nil
	})
	rw.put(&statev1.SnapshotRecord{Record: &statev1.SnapshotRecord_End{End: &statev1.SnapshotEnd{Records: rw.n}}})
	return rw.err
}

// ErrCorruptSnapshot: a snapshot could not be decoded.
var ErrCorruptSnapshot = errors.New("corrupt snapshot")

func corruptSnapshot(format string, args ...any) error {
	return fmt.Errorf("%w: "+format, append([]any{ErrCorruptSnapshot}, args...)...)
}

// decode reads a snapshot into fresh tables, rebuilding every secondary
// index and derived count from the primary records.
func decode(r *bufio.Reader) (*tables, error) {
	var head [12]byte
	if _, err := io.ReadFull(r, head[:]); err != nil {
		return nil, corruptSnapshot("header: %v", err)
	}
	if string(head[:8]) != snapshotMagic {
		return nil, corruptSnapshot("not a ration snapshot (magic %q)", head[:8])
	}
	version := binary.BigEndian.Uint32(head[8:])
	if version < OldestSnapshotVersion || version > SnapshotVersion {
		return nil, corruptSnapshot("format version %d, this build reads %d to %d", version, OldestSnapshotVersion, SnapshotVersion)
	}
	t := newTables()
	var (
		buf     []byte
		rec     statev1.SnapshotRecord
		sawMeta bool
		sawEnd  bool
		n       int
	)
	for ; ; n++ {
		size, err := binary.ReadUvarint(r)
		if err == io.EOF {
			break
		}
		if sawEnd {
			return nil, corruptSnapshot("record %d after the end record", n)
		}
		if err != nil {
			return nil, corruptSnapshot("record %d length: %v", n, err)
		}
		if size > maxRecord {
			return nil, corruptSnapshot("record %d is %d bytes, limit %d", n, size, maxRecord)
		}
		if cap(buf) < int(size) {
			buf = make([]byte, size)
		}
		buf = buf[:size]
		if _, err := io.ReadFull(r, buf); err != nil {
			return nil, corruptSnapshot("record %d: %v", n, err)
		}
		rec.Reset()
		if err := proto.Unmarshal(buf, &rec); err != nil {
			return nil, corruptSnapshot("record %d: %v", n, err)
		}
		if n == 0 {
			if rec.GetMeta() == nil {
				return nil, corruptSnapshot("first record is not the meta")
			}
		}
		if end := rec.GetEnd(); end != nil {
			if version < 2 {
				return nil, corruptSnapshot("record %d: an end record in format version %d", n, version)
			}
			if end.GetRecords() != uint64(n) {
				return nil, corruptSnapshot("end record counts %d records, read %d", end.GetRecords(), n)
			}
			sawEnd = true
			continue
		}
		if err := t.load(&rec, &sawMeta); err != nil {
			return nil, corruptSnapshot("record %d: %v", n, err)
		}
	}
	if !sawMeta {
		return nil, corruptSnapshot("no meta record")
	}
	if version >= 2 && !sawEnd {
		return nil, corruptSnapshot("no end record after %d records: the snapshot is cut short", n)
	}
	if err := t.derive(); err != nil {
		return nil, corruptSnapshot("%v", err)
	}
	return t, nil
}

// load adds one record. Records of a table arrive in key order.
func (t *tables) load(rec *statev1.SnapshotRecord, sawMeta *bool) error {
	switch r := rec.Record.(type) {
	case *statev1.SnapshotRecord_Meta:
		if *sawMeta {
			return errors.New("second meta record")
		}
		*sawMeta = true
		m := r.Meta
		if m.ClusterVersion > MaxProtocol {
			return fmt.Errorf("the snapshot's cluster version is %d, and this build applies protocols %d to %d: "+
				"restore it with a build that applies protocol %d", m.ClusterVersion, MinProtocol, MaxProtocol, m.ClusterVersion)
		}
		t.meta = meta{index: m.Index, now: m.Now, nextSeq: m.NextSeq, nextEpoch: m.NextEpoch, nextBucket: m.NextBucket,
			nextService: m.NextService, clusterVersion: m.ClusterVersion}
	case *statev1.SnapshotRecord_Node:
		if _, dup := t.nodes.Load(&NodeAddress{ID: r.Node.NodeId, APIAddress: r.Node.ApiAddress}); dup {
			return fmt.Errorf("node %q twice", r.Node.NodeId)
		}
	case *statev1.SnapshotRecord_Service:
		return t.loadService(r.Service)
	case *statev1.SnapshotRecord_Worker:
		if _, dup := t.workers.Load(&Worker{ID: r.Worker.Id, SecretHash: r.Worker.SecretHash, CreatedAt: r.Worker.CreatedAt}); dup {
			return fmt.Errorf("worker %q twice", r.Worker.Id)
		}
	case *statev1.SnapshotRecord_Registration:
		return t.loadRegistration(r.Registration)
	case *statev1.SnapshotRecord_Bucket:
		return t.loadBucket(r.Bucket)
	case *statev1.SnapshotRecord_Item:
		p := r.Item
		if _, dup := t.items.Load(&Item{Service: p.Service, ID: p.Id, Priority: p.Priority, Attempts: p.Attempts, Bucket: p.Bucket,
			Quarantined: p.Quarantined, Inconclusive: p.Inconclusive, Since: p.Since}); dup {
			return fmt.Errorf("item %d/%q twice", p.Service, p.Id)
		}
	case *statev1.SnapshotRecord_Result:
		return t.loadResults(r.Result)
	case *statev1.SnapshotRecord_Activity:
		p := r.Activity
		if _, dup := t.activity.Get(&Activity{Seq: p.Seq}); dup {
			return fmt.Errorf("activity %d twice", p.Seq)
		}
		t.putActivity(&Activity{Seq: p.Seq, Index: p.Index, At: p.At, Actor: p.Actor, Service: p.Service, Worker: p.WorkerId,
			Action: p.Action, Bucket: p.Bucket, Reason: p.Reason, Message: p.Message, Count: p.Count, RequestID: p.RequestId})
	case *statev1.SnapshotRecord_Request:
		p := r.Request
		if _, dup := t.requests.Get(&request{Key: p.Key}); dup {
			return fmt.Errorf("request %q twice", p.Key)
		}
		if err := proto.Unmarshal(p.Result, &statev1.CommandResult{}); err != nil {
			return fmt.Errorf("request %q: answer: %v", p.Key, err)
		}
		t.putRequest(&request{Key: p.Key, BodyHash: p.BodyHash, At: p.At, Index: p.Index, Answer: p.Result})
	default:
		return fmt.Errorf("unknown record type (fields %v)", unknownFields(rec))
	}
	return nil
}

func (t *tables) loadService(p *statev1.ServiceRecord) error {
	cfg, err := configFromRecord(p)
	if err != nil {
		return err
	}
	if _, ok := kind.Lookup(p.Kind); !ok {
		return fmt.Errorf("service %q has kind %q, which this build does not have", p.Name, p.Kind)
	}
	if p.State != serviceActive && p.State != serviceRevoked {
		return fmt.Errorf("service %q has state %v", p.Name, p.State)
	}
	if n := len(p.OwnerTokenHash); n != 0 && n != OwnerTokenHashSize {
		return fmt.Errorf("service %q has a %d-byte owner token hash", p.Name, n)
	}
	s := &Service{Ordinal: p.Ordinal, Name: p.Name, Kind: p.Kind, Config: cfg, State: p.State, Reason: p.Reason,
		CreatedAt: p.CreatedAt, UpdatedAt: p.UpdatedAt, Counters: countersFromProto(p.Counters), OwnerTokenHash: p.OwnerTokenHash,
		AckedThrough: p.AckedThrough, LastResultSeq: p.LastResultSeq, TrimmedThrough: p.TrimmedThrough}
	for _, o := range p.Open {
		s.Open = append(s.Open, OpenBucket{Priority: o.Priority, Bucket: o.BucketId})
	}
	for i, c := range p.Canaries {
		if i > 0 && c.GetItem() <= p.Canaries[i-1].GetItem() {
			return fmt.Errorf("service %q: canaries out of order at %q", p.Name, c.GetItem())
		}
		s.Canaries = append(s.Canaries, Canary{ID: c.GetItem(), Verdict: c.GetVerdict(), Payload: c.GetPayload()})
	}
	if _, dup := t.serviceByName(s.Name); dup {
		return fmt.Errorf("service %q twice", s.Name)
	}
	if _, dup := t.serviceByOrdinal(s.Ordinal); dup {
		return fmt.Errorf("service ordinal %d twice", s.Ordinal)
	}
	t.putService(s)
	return nil
}

func (t *tables) loadRegistration(p *statev1.RegistrationRecord) error {
	s, ok := t.serviceByOrdinal(p.Service)
	if !ok {
		return fmt.Errorf("registration of %q names unknown service %d", p.WorkerId, p.Service)
	}
	if p.State != workerActive && p.State != workerInactive {
		return fmt.Errorf("registration of %q has state %v", p.WorkerId, p.State)
	}
	reg := &Registration{Service: p.Service, Worker: p.WorkerId, Name: p.Name, State: p.State, Reason: p.Reason,
		Blocked: p.Blocked, RegisteredAt: p.RegisteredAt, LastSeen: p.LastSeen, ChangedAt: p.ChangedAt,
		Counters: countersFromProto(p.Counters), TrustRun: p.TrustRun}
	reg.idleAt = reg.LastSeen + int64(s.Config.WorkerInactiveAfter)
	if _, dup := t.registration(reg.Service, reg.Worker); dup {
		return fmt.Errorf("registration %d/%q twice", reg.Service, reg.Worker)
	}
	t.putRegistration(nil, reg)
	return nil
}

func (t *tables) loadBucket(p *statev1.BucketRecord) error {
	s, ok := t.serviceByOrdinal(p.Service)
	if !ok {
		return fmt.Errorf("bucket %d names unknown service %d", p.Id, p.Service)
	}
	if p.State < unassigned || p.State > done {
		return fmt.Errorf("bucket %d has state %v", p.Id, p.State)
	}
	if len(p.Items) == 0 && len(p.Packed) == 0 {
		return fmt.Errorf("bucket %d is empty", p.Id)
	}
	if len(p.Packed) > 0 && (p.State != done || p.ResultSeq != 0) {
		return fmt.Errorf("bucket %d remembers items but is not done with its results trimmed", p.Id)
	}
	b := &Bucket{ID: p.Id, Service: p.Service, State: p.State, Priority: p.Priority, ReadySince: p.ReadySince,
		Items: p.Items, Holder: p.Holder, Epoch: p.Epoch, LeasedAt: p.LeasedAt, Deadline: p.Deadline, DeadAt: p.DeadAt,
		ReleaseAt: p.ReleaseAt, ClosedAt: p.ClosedAt, ResultSeq: p.ResultSeq, Packed: p.Packed, Votes: votesOf(p.Votes)}
	for _, c := range p.Canaries {
		b.Canaries = append(b.Canaries, CanaryAt{ID: c.GetItem(), Position: c.GetPosition()})
	}
	if _, dup := t.bucket(b.ID); dup {
		return fmt.Errorf("bucket %d twice", b.ID)
	}
	for _, n := range b.Packed {
		if _, dup := t.remember.Get(doneKey{service: b.Service, id: n}); dup {
			return fmt.Errorf("bucket %d remembers item %d, remembered already", b.ID, n)
		}
		t.remember.Set(doneKey{service: b.Service, id: n, bucket: b.ID})
	}
	t.putBucket(nil, b, int64(s.Config.PriorityAging))
	return nil
}

func (t *tables) loadResults(p *statev1.ResultRecord) error {
	var reverted int64
	for i, x := range p.Results {
		if i == 0 {
			reverted = x.RevertedAt
		} else if x.RevertedAt != reverted {
			return fmt.Errorf("result batch %d: results reverted at different times (%d, %d)", p.Seq, reverted, x.RevertedAt)
		}
	}
	rb := newResultBatch(ResultBatch{Seq: p.Seq, Service: p.Service, Worker: p.WorkerId, Bucket: p.Bucket, Epoch: p.Epoch, At: p.At,
		RevertedAt: reverted, Validated: p.Validated, Votes: votesOf(p.Votes)}, p.Results, func(x *statev1.StoredResult) (string, string, string) {
		return x.Item, x.Verdict, x.Payload
	})
	if _, dup := t.results.Get(rb); dup {
		return fmt.Errorf("result batch %d twice", rb.Seq)
	}
	t.putResults(rb)
	return nil
}

func unknownFields(m proto.Message) []protowire.Number {
	var out []protowire.Number
	b := m.ProtoReflect().GetUnknown()
	for len(b) > 0 {
		num, _, n := protowire.ConsumeField(b)
		if n < 0 {
			break
		}
		out = append(out, num)
		b = b[n:]
	}
	return out
}

// derive recomputes the counts kept alongside the records and checks that
// records point at records that exist.
func (t *tables) derive() error {
	c, err := tallyOf(t)
	if err != nil {
		return err
	}
	for _, s := range t.ordinals.Items() {
		d := *s
		d.Items, d.Buckets = countsOf(c.items, s.Ordinal), countsOf(c.buckets, s.Ordinal)
		r := c.results[s.Ordinal]
		d.UnackedResults, d.UnackedBytes = r.unacked, r.unackedBytes
		if d.LastResultSeq == 0 {
			d.LastResultSeq = r.last // formats before 3 do not keep it
		}
		if d.LastResultSeq < r.last {
			return fmt.Errorf("service %q's last result batch is %d, but it holds batch %d", s.Name, d.LastResultSeq, r.last)
		}
		if d.AckedThrough > d.LastResultSeq {
			return fmt.Errorf("service %q acknowledged through %d, past its last result batch %d", s.Name, d.AckedThrough, d.LastResultSeq)
		}
		t.putService(&d)
	}
	for k, n := range c.held {
		r, ok := t.registration(k.service, k.worker)
		if !ok {
			return fmt.Errorf("bucket held by %q, who is not registered in service %d", k.worker, k.service)
		}
		d := *r
		d.Held = n
		t.regs.Set(&d) // Held is not part of any index key
	}
	return nil
}

func configFromRecord(p *statev1.ServiceRecord) (Config, error) {
	pc := p.GetConfig()
	c := Config{
		BucketSize: pc.GetBucketSize(), MaxBucketsPerAcquire: pc.GetMaxBucketsPerAcquire(),
		LeaseTTL: pc.GetLeaseTtl().AsDuration(), ReleaseGrace: pc.GetReleaseGrace().AsDuration(),
		MaxAttempts: pc.GetMaxAttempts(), MaxItemsPerAdd: pc.GetMaxItemsPerAdd(),
		WorkerInactiveAfter: pc.GetWorkerInactiveAfter().AsDuration(), PriorityAging: pc.GetPriorityAging().AsDuration(),
		MaxPayloadBytes: pc.GetMaxPayloadBytes(), Verdicts: pc.GetVerdicts(), MaxLeasesPerWorker: pc.GetMaxLeasesPerWorker(),
	}
	if c.BucketSize == 0 || c.PriorityAging < MinPriorityAging || c.MaxAttempts == 0 {
		return c, fmt.Errorf("service %q has an incomplete config", p.Name)
	}
	// Formats before 3 have no retention settings: the defaults apply.
	if err := retentionFromProto(pc, &c); err != nil {
		return c, fmt.Errorf("service %q: %v", p.Name, err)
	}
	v, err := validationFromProto(pc.GetValidation())
	if err != nil {
		return c, fmt.Errorf("service %q: %v", p.Name, err)
	}
	c.Validation = v
	return c, nil
}

// CheckSnapshot reports whether r holds a snapshot this build can restore
// and whose state keeps every invariant, without touching any state
// machine. Restore checks only the structure (Raft's snapshot store guards
// its files with a checksum); a snapshot from outside goes through this
// first.
func CheckSnapshot(r io.Reader) error {
	t, err := decode(bufio.NewReaderSize(r, 1<<20))
	if err != nil {
		return err
	}
	if err := (&State{t: t}).CheckInvariants(); err != nil {
		return fmt.Errorf("%w: %v", ErrCorruptSnapshot, err)
	}
	return nil
}
