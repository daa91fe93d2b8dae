package main

// The etcd side: three embedded etcd v3.7.3 members in this process (static
// InitialCluster, LogLevel "error", default durability: preallocated WAL
// with fdatasync, backend batch interval 100 ms, SnapshotCount 10000),
// driven over gRPC by clientv3, the way an expert would build the same
// bucket cycle on etcd.
//
// Keys, under a fresh prefix P per round (bucket ids are random 64-bit hex,
// so the keys are spread evenly over the key space):
//
//	P/d/<id>  the bucket's data: its item ids, comma-separated. Written once
//	          by the owner; deleted when the bucket is done.
//	P/u/<id>  "unassigned": present (empty value) while the bucket waits for
//	          a worker.
//	P/h/<id>  the holder: the worker's id, attached to the worker's etcd
//	          lease (one lease per worker session, kept alive by
//	          clientv3's KeepAlive stream, TTL 60 s).
//	P/r/<id>  the results of the whole bucket (one value: a line per item
//	          with id, verdict and payload).
//
// Invariant: while P/d/<id> exists, exactly one of P/u/<id> and P/h/<id>
// exists (except for the moment between a lease expiring and the sweeper
// re-queueing the bucket, when neither does).
//
// Claim (acquire up to n): a keys-only, serializable Range over P/u/ from a
// random start key with a small limit (wrapping to the start of the prefix
// when it runs off the end), shuffled, then ONE Txn per attempt:
//
//	If(ModRevision(P/u/<id>) == rev seen by the range, for each bucket)
//	Then(Delete P/u/<id>, Put P/h/<id> = worker WithLease(workerLease), Get P/d/<id>)
//	Else(Get P/u/<id> keys-only, for each bucket; only when n > 1)
//
// so two workers can never both claim a bucket: the compare fences on the
// unassigned key's revision, and the move from u/ to h/ is atomic. The
// claim's fencing token is the Txn's revision (= P/h/<id>'s ModRevision).
// A lost compare (another worker got there first) retries with the next
// candidate of the same range (with n > 1, the Else branch tells which
// candidates are gone), then with a fresh range. The range is serializable
// because the Txn re-checks it; it is served by the leader, so it is cheap.
//
// Submit: one Txn
//
//	If(ModRevision(P/h/<id>) == claim revision)
//	Then(Put P/r/<id> = results, Delete P/h/<id>, Delete P/d/<id>)
//
// so results are stored only while the claim still holds: after the lease
// expired (and the bucket possibly went to someone else), the compare fails
// and nothing is written.
//
// Expiry: the etcd lease's TTL deletes P/h/<id>; a sweeper per round (every
// second: keys-only ranges of d/, u/ and h/ at one revision) puts P/u/<id>
// back for every d/ key with neither, under
// If(Version(d)>0, Version(u)==0, Version(h)==0), so it can never resurrect
// a claimed or finished bucket. (A watch on h/ deletions would need a read
// per submitted bucket to tell expiry from completion; the sweep is cheaper
// at these rates.)
//
// Owner: each chunk of ids becomes buckets written by Txns of up to 64
// buckets (Put d/ and u/ per bucket, guarded by CreateRevision(d/)==0),
// within etcd's default 128 operations per Txn.
//
// Clients: min(workers, -conns) clientv3 connections to the leader's client
// URL, shared round-robin by the workers; the owner and the sweeper have
// their own connection. Going to the leader spares every Txn the hop a
// follower would add to reach it, and a few HTTP/2 connections carry all
// the workers' streams.
//
// Operator settings beyond the defaults, not durability: periodic
// auto-compaction (retention 1m, so the tombstones of claimed buckets do not
// pile up in the index) and an 8 GiB backend quota (the run writes ~10 KB
// of results per bucket).
//
// What this etcd design does not do and ration does (so it favours etcd):
// no per-item index (AddItems in ration skips ids already pending, leased or
// done), no priorities or aging, no per-item attempts or quarantine, no
// activity log, no per-worker statistics, no request-id deduplication of
// retried writes.

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.etcd.io/etcd/server/v3/embed"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"google.golang.org/grpc/status"
)

const (
	etcdLeaseTTL      = 60 // seconds
	etcdSweepEvery    = time.Second
	etcdBucketsPerTxn = 64 // 2 puts per bucket, etcd's default MaxTxnOps is 128
	etcdMaxPerClaim   = 42 // 3 ops per bucket in a claim Txn
)

var errLeaseLost = errors.New("claim no longer held")

type etcdSystem struct {
	quiet    atomic.Bool // set while closing: drop the shutdown noise
	members  []*embed.Etcd
	leaderEP string
	clients  []*clientv3.Client // the workers' connections
	owner    *clientv3.Client
}

// startEtcd starts a 3-member etcd cluster with its data under dir.
func startEtcd(ctx context.Context, dir string, conns int) (sys *etcdSystem, err error) {
	s := &etcdSystem{}
	defer func() {
		if err != nil {
			s.Close()
		}
	}()
	ports, err := freePorts(6)
	if err != nil {
		return nil, err
	}
	var initial []string
	for i := range 3 {
		pu := loopbackURL(ports[2*i])
		initial = append(initial, fmt.Sprintf("e%d=%s", i, pu.String()))
	}
	var endpoints []string
	for i := range 3 {
		cfg := s.memberConfig(dir, i, ports[2*i], ports[2*i+1], strings.Join(initial, ","))
		e, err := embed.StartEtcd(cfg)
		if err != nil {
			return nil, fmt.Errorf("start etcd member %s: %w", cfg.Name, err)
		}
		s.members = append(s.members, e)
		endpoints = append(endpoints, cfg.AdvertiseClientUrls[0].String())
	}
	if err := s.waitReady(ctx); err != nil {
		return nil, err
	}
	if s.leaderEP, err = findEtcdLeader(ctx, endpoints); err != nil {
		return nil, err
	}
	for range conns {
		c, err := newEtcdClient(s.leaderEP)
		if err != nil {
			return nil, err
		}
		s.clients = append(s.clients, c)
	}
	if s.owner, err = newEtcdClient(s.leaderEP); err != nil {
		return nil, err
	}
	return s, nil
}

// loopbackURL is the http URL of port on 127.0.0.1, where every member listens.
func loopbackURL(port int) url.URL {
	return url.URL{Scheme: "http", Host: fmt.Sprintf("127.0.0.1:%d", port)}
}

// memberConfig is member e<i>'s configuration: etcd's defaults but for
// logging (errors only, silenced once s closes), auto-compaction and the
// backend quota (see the comment at the top of this file).
func (s *etcdSystem) memberConfig(dir string, i, peerPort, clientPort int, initialCluster string) *embed.Config {
	cfg := embed.NewConfig()
	cfg.Name = fmt.Sprintf("e%d", i)
	cfg.Dir = filepath.Join(dir, cfg.Name)
	pu, cu := loopbackURL(peerPort), loopbackURL(clientPort)
	cfg.ListenPeerUrls, cfg.AdvertisePeerUrls = []url.URL{pu}, []url.URL{pu}
	cfg.ListenClientUrls, cfg.AdvertiseClientUrls = []url.URL{cu}, []url.URL{cu}
	cfg.InitialCluster = initialCluster
	cfg.InitialClusterToken = "ration-bench"
	cfg.ClusterState = embed.ClusterStateFlagNew
	cfg.LogLevel = "error"
	cfg.ZapLoggerBuilder = embed.NewZapLoggerBuilder(zap.New(quietCore{
		Core:  zapcore.NewCore(zapcore.NewJSONEncoder(zap.NewProductionEncoderConfig()), zapcore.Lock(os.Stderr), zap.ErrorLevel),
		quiet: &s.quiet}).With(zap.String("member", cfg.Name)))
	cfg.AutoCompactionMode = "periodic"
	cfg.AutoCompactionRetention = "1m"
	cfg.QuotaBackendBytes = 8 << 30
	return cfg
}

// waitReady waits until every member is ready to serve.
func (s *etcdSystem) waitReady(ctx context.Context) error {
	for _, e := range s.members {
		select {
		case <-e.Server.ReadyNotify():
		case err := <-e.Err():
			return fmt.Errorf("etcd member failed: %w", err)
		case <-time.After(60 * time.Second):
			return errors.New("etcd did not become ready within 60s")
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	return nil
}

// findEtcdLeader asks each member's status until one says it leads, and
// returns that member's client URL.
func findEtcdLeader(ctx context.Context, endpoints []string) (string, error) {
	probe, err := newEtcdClient(endpoints...)
	if err != nil {
		return "", err
	}
	defer probe.Close()
	var leader string
	err = waitFor(ctx, 30*time.Second, func() error {
		for _, ep := range endpoints {
			sctx, cancel := context.WithTimeout(ctx, 2*time.Second)
			st, err := probe.Status(sctx, ep)
			cancel()
			if err != nil {
				return err
			}
			if st.Leader != 0 && st.Leader == st.Header.MemberId {
				leader = ep
				return nil
			}
		}
		return errors.New("no etcd leader")
	})
	return leader, err
}

// newEtcdClient connects to eps with clientv3's own logging off, so that
// only the bench's lines reach stderr.
func newEtcdClient(eps ...string) (*clientv3.Client, error) {
	return clientv3.New(clientv3.Config{Endpoints: eps, DialTimeout: 5 * time.Second, Logger: zap.NewNop()})
}

func freePorts(n int) ([]int, error) {
	var lns []net.Listener
	defer func() {
		for _, ln := range lns {
			ln.Close()
		}
	}()
	var ports []int
	for range n {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, err
		}
		lns = append(lns, ln)
		ports = append(ports, ln.Addr().(*net.TCPAddr).Port)
	}
	return ports, nil
}

func (s *etcdSystem) Name() string { return "etcd" }

// Close stops the clients, then the members, the leader first (it hands
// leadership to a live follower instead of waiting for one that is gone).
func (s *etcdSystem) Close() error {
	for _, c := range s.clients {
		c.Close()
	}
	if s.owner != nil {
		s.owner.Close()
	}
	s.quiet.Store(true)
	for len(s.members) > 0 {
		i := 0
		for j, e := range s.members {
			if e.Server.Leader() == e.Server.MemberID() {
				i = j
			}
		}
		s.members[i].Close()
		s.members = slices.Delete(s.members, i, i+1)
	}
	s.clients, s.owner = nil, nil
	return nil
}

// quietCore is a zap core that drops everything once quiet is set.
type quietCore struct {
	zapcore.Core
	quiet *atomic.Bool
}

func (c quietCore) With(f []zapcore.Field) zapcore.Core { return quietCore{c.Core.With(f), c.quiet} }

func (c quietCore) Check(e zapcore.Entry, ce *zapcore.CheckedEntry) *zapcore.CheckedEntry {
	if c.quiet.Load() || !c.Enabled(e.Level) {
		return ce
	}
	return ce.AddCore(e, c)
}

type etcdRound struct {
	pfx        string
	bucketSize int
	owner      *clientv3.Client
	workers    []*etcdWorker
	stop       context.CancelFunc
	wg         sync.WaitGroup

	lostCompares, ranges, requeued atomic.Int64
}

func (r *etcdRound) key(kind, id string) string { return r.pfx + kind + "/" + id }

func (s *etcdSystem) NewRound(ctx context.Context, p roundParams) (round, error) {
	r := &etcdRound{pfx: fmt.Sprintf("/bench/%04d/", p.Seq), bucketSize: p.BucketSize, owner: s.owner}
	bg, stop := context.WithCancel(context.Background())
	r.stop = stop
	conns := s.clients[:min(len(s.clients), p.Workers)]
	for i := range p.Workers {
		cli := conns[i%len(conns)]
		lease, err := cli.Grant(ctx, etcdLeaseTTL)
		if err != nil {
			r.Close()
			return nil, fmt.Errorf("grant lease: %w", err)
		}
		ka, err := cli.KeepAlive(bg, lease.ID)
		if err != nil {
			r.Close()
			return nil, fmt.Errorf("keep lease alive: %w", err)
		}
		r.wg.Add(1)
		go func() {
			defer r.wg.Done()
			for range ka { // drain the keep-alive answers
			}
		}()
		r.workers = append(r.workers, &etcdWorker{r: r, cli: cli, id: fmt.Sprintf("w%d", i+1), lease: lease.ID,
			rng: rand.New(rand.NewPCG(uint64(p.Seq), uint64(i))), payload: p.Payload,
			limit: max(16, 4*min(p.PerAcquire, etcdMaxPerClaim))})
	}
	r.wg.Add(1)
	go func() {
		defer r.wg.Done()
		r.sweep(bg)
	}()
	return r, nil
}

func (r *etcdRound) Worker(i int) worker { return r.workers[i] }

func (r *etcdRound) Counters() map[string]int64 {
	return map[string]int64{"lost_compares": r.lostCompares.Load(), "ranges": r.ranges.Load(), "requeued": r.requeued.Load()}
}

func (r *etcdRound) ErrClass(err error) string {
	switch {
	case errors.Is(err, errLeaseLost):
		return "lease-lost"
	case errors.Is(err, context.DeadlineExceeded):
		return "deadline-exceeded"
	}
	if st, ok := status.FromError(err); ok {
		return st.Code().String() + "/" + rpctypes.ErrorDesc(err)
	}
	s := err.Error()
	if len(s) > 60 {
		s = s[:60]
	}
	return s
}

// Close stops the sweeper and keep-alives and revokes the workers' leases
// (which deletes the holder keys of unfinished claims).
func (r *etcdRound) Close() {
	r.stop()
	r.wg.Wait()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	for _, w := range r.workers {
		w.cli.Revoke(ctx, w.lease)
	}
}

// Add writes the owner's ids as buckets: d/ (items) and u/ (unassigned).
func (r *etcdRound) Add(ctx context.Context, ids []string) (int, error) {
	var groups [][]string
	for len(ids) > 0 {
		n := min(r.bucketSize, len(ids))
		groups, ids = append(groups, ids[:n]), ids[n:]
	}
	total := len(groups)
	for len(groups) > 0 {
		batch := groups[:min(etcdBucketsPerTxn, len(groups))]
		for {
			var cmps []clientv3.Cmp
			var ops []clientv3.Op
			for _, items := range batch {
				id := fmt.Sprintf("%016x", rand.Uint64())
				cmps = append(cmps, clientv3.Compare(clientv3.CreateRevision(r.key("d", id)), "=", 0))
				ops = append(ops, clientv3.OpPut(r.key("d", id), strings.Join(items, ",")), clientv3.OpPut(r.key("u", id), ""))
			}
			resp, err := r.owner.Txn(ctx).If(cmps...).Then(ops...).Commit()
			if err != nil {
				return 0, err
			}
			if resp.Succeeded {
				break
			} // else an id collided: draw new ids
		}
		groups = groups[len(batch):]
	}
	return total, nil
}

// sweep re-queues buckets whose holder key vanished (lease expired).
func (r *etcdRound) sweep(ctx context.Context) {
	t := time.NewTicker(etcdSweepEvery)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		d, err := r.owner.Get(ctx, r.pfx+"d/", clientv3.WithPrefix(), clientv3.WithKeysOnly())
		if err != nil {
			continue
		}
		rev := d.Header.Revision
		u, err := r.owner.Get(ctx, r.pfx+"u/", clientv3.WithPrefix(), clientv3.WithKeysOnly(), clientv3.WithRev(rev))
		if err != nil {
			continue
		}
		h, err := r.owner.Get(ctx, r.pfx+"h/", clientv3.WithPrefix(), clientv3.WithKeysOnly(), clientv3.WithRev(rev))
		if err != nil {
			continue
		}
		live := map[string]bool{}
		for _, kv := range u.Kvs {
			live[string(kv.Key[len(r.pfx)+2:])] = true
		}
		for _, kv := range h.Kvs {
			live[string(kv.Key[len(r.pfx)+2:])] = true
		}
		for _, kv := range d.Kvs {
			id := string(kv.Key[len(r.pfx)+2:])
			if live[id] {
				continue
			}
			resp, err := r.owner.Txn(ctx).If(
				clientv3.Compare(clientv3.Version(r.key("d", id)), ">", 0),
				clientv3.Compare(clientv3.Version(r.key("u", id)), "=", 0),
				clientv3.Compare(clientv3.Version(r.key("h", id)), "=", 0),
			).Then(clientv3.OpPut(r.key("u", id), "")).Commit()
			if err == nil && resp.Succeeded {
				r.requeued.Add(1)
			}
		}
	}
}

type etcdWorker struct {
	r       *etcdRound
	cli     *clientv3.Client
	id      string
	lease   clientv3.LeaseID
	rng     *rand.Rand
	payload string
	limit   int
	buf     []byte
}

// etcdClaim is the worker's handle on a claimed bucket.
type etcdClaim struct {
	id  string
	rev int64 // ModRevision of the holder key: the fencing token
}

type candidate struct {
	id  string
	rev int64
}

// candidates returns unassigned buckets seen by one keys-only range from a
// random start (wrapping around), shuffled.
func (w *etcdWorker) candidates(ctx context.Context) ([]candidate, error) {
	r := w.r
	lo, hi := r.pfx+"u/", r.pfx+"u0" // "0" follows "/"
	start := lo + fmt.Sprintf("%016x", w.rng.Uint64())
	resp, err := w.cli.Get(ctx, start, clientv3.WithRange(hi), clientv3.WithLimit(int64(w.limit)),
		clientv3.WithKeysOnly(), clientv3.WithSerializable())
	r.ranges.Add(1)
	if err != nil {
		return nil, err
	}
	kvs := resp.Kvs
	if len(kvs) < w.limit {
		more, err := w.cli.Get(ctx, lo, clientv3.WithRange(start), clientv3.WithLimit(int64(w.limit-len(kvs))),
			clientv3.WithKeysOnly(), clientv3.WithSerializable())
		r.ranges.Add(1)
		if err != nil {
			return nil, err
		}
		kvs = append(kvs, more.Kvs...)
	}
	out := make([]candidate, len(kvs))
	for i, kv := range kvs {
		out[i] = candidate{id: string(kv.Key[len(lo):]), rev: kv.ModRevision}
	}
	w.rng.Shuffle(len(out), func(i, j int) { out[i], out[j] = out[j], out[i] })
	return out, nil
}

func (w *etcdWorker) Acquire(ctx context.Context, n int) ([]bucket, error) {
	n = min(max(n, 1), etcdMaxPerClaim)
	r := w.r
	var got []bucket
	for attempt := 0; attempt < 8 && len(got) == 0; attempt++ {
		cands, err := w.candidates(ctx)
		if err != nil {
			return got, err
		}
		if len(cands) == 0 {
			return nil, nil // the pool is empty
		}
		for len(cands) > 0 && len(got) < n {
			k := min(n-len(got), len(cands))
			pick := cands[:k]
			cands = cands[k:]
			cmps := make([]clientv3.Cmp, 0, k)
			thens := make([]clientv3.Op, 0, 3*k)
			var elses []clientv3.Op
			for _, c := range pick {
				u := r.key("u", c.id)
				cmps = append(cmps, clientv3.Compare(clientv3.ModRevision(u), "=", c.rev))
				thens = append(thens, clientv3.OpDelete(u),
					clientv3.OpPut(r.key("h", c.id), w.id, clientv3.WithLease(w.lease)),
					clientv3.OpGet(r.key("d", c.id)))
				if k > 1 {
					elses = append(elses, clientv3.OpGet(u, clientv3.WithKeysOnly()))
				}
			}
			resp, err := w.cli.Txn(ctx).If(cmps...).Then(thens...).Else(elses...).Commit()
			if err != nil {
				return got, err
			}
			if !resp.Succeeded {
				r.lostCompares.Add(1)
				// With several buckets, keep those still unassigned.
				for j, rr := range resp.Responses {
					if kvs := rr.GetResponseRange().GetKvs(); len(kvs) == 1 && kvs[0].ModRevision == pick[j].rev {
						cands = append(cands, pick[j])
					}
				}
				continue
			}
			for j, c := range pick {
				kvs := resp.Responses[3*j+2].GetResponseRange().GetKvs()
				if len(kvs) != 1 {
					return got, fmt.Errorf("bucket %s has no data", c.id)
				}
				got = append(got, bucket{items: strings.Split(string(kvs[0].Value), ","),
					ref: etcdClaim{id: c.id, rev: resp.Header.Revision}})
			}
		}
	}
	return got, nil
}

func (w *etcdWorker) Submit(ctx context.Context, b bucket) error {
	c := b.ref.(etcdClaim)
	r := w.r
	buf := w.buf[:0]
	for _, item := range b.items {
		buf = append(buf, item...)
		buf = append(buf, "\tDM\t"...)
		buf = append(buf, w.payload...)
		buf = append(buf, '\n')
	}
	w.buf = buf
	h := r.key("h", c.id)
	resp, err := w.cli.Txn(ctx).If(clientv3.Compare(clientv3.ModRevision(h), "=", c.rev)).
		Then(clientv3.OpPut(r.key("r", c.id), string(buf)), clientv3.OpDelete(h), clientv3.OpDelete(r.key("d", c.id))).
		Commit()
	if err != nil {
		return err
	}
	if !resp.Succeeded {
		return errLeaseLost
	}
	return nil
}
