package chaos

import (
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"os"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"connectrpc.com/connect"

	"github.com/rationhq/ration/api/client"
	rationv1 "github.com/rationhq/ration/api/ration/v1"
)

// Outcomes of an operation.
const (
	outOK      = "ok"
	outUnknown = "unknown" // may or may not have taken effect
)

// grant is one bucket an acquire returned.
type grant struct {
	Bucket uint64   `json:"bucket"`
	Epoch  uint64   `json:"epoch"`
	Items  []string `json:"items"`
}

// op is one recorded client operation.
type op struct {
	Client  int      `json:"client"`
	Kind    string   `json:"kind"` // acquire, submit, release, add, ack
	Worker  string   `json:"worker,omitempty"`
	Service string   `json:"service"`
	Bucket  uint64   `json:"bucket,omitempty"`
	Epoch   uint64   `json:"epoch,omitempty"`
	Items   []string `json:"items,omitempty"`  // submitted results or added ids
	Grants  []grant  `json:"grants,omitempty"` // acquire
	N       uint32   `json:"n,omitempty"`      // accepted results
	Seq     uint64   `json:"seq,omitempty"`    // ack: the result batch acknowledged through
	Node    string   `json:"node,omitempty"`   // the one node a direct writer sent it to
	// Drain: sent after the faults, to finish the validated service's work.
	Drain  bool  `json:"drain,omitempty"`
	Call   int64 `json:"call"`
	Return int64 `json:"return"`
	// Outcome is ok, unknown, or "fail:<code>:<reason>".
	Outcome string `json:"outcome"`
}

// event is a nemesis action.
type event struct {
	Kind string `json:"kind"`
	Node string `json:"node"`
	// Leader says Node led the cluster when the event began.
	Leader bool  `json:"leader,omitempty"`
	At     int64 `json:"at"`
	End    int64 `json:"end"`
}

// recorder keeps the history; timestamps are nanoseconds since start.
type recorder struct {
	start     time.Time
	mu        sync.Mutex
	ops       []op
	events    []event
	elections []election
}

func newRecorder() *recorder { return &recorder{start: time.Now()} }

func (r *recorder) now() int64 { return int64(time.Since(r.start)) }

func (r *recorder) add(o op) {
	r.mu.Lock()
	r.ops = append(r.ops, o)
	r.mu.Unlock()
}

func (r *recorder) event(e event) {
	r.mu.Lock()
	r.events = append(r.events, e)
	r.mu.Unlock()
}

func outcome(err error) string {
	switch {
	case err == nil:
		return outOK
	case client.Retryable(err) || connect.CodeOf(err) == connect.CodeCanceled:
		return outUnknown
	}
	return fmt.Sprintf("fail:%s:%s", connect.CodeOf(err), client.Reason(err))
}

func (r *recorder) save(path string) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	b, err := json.MarshalIndent(struct {
		Ops       []op       `json:"ops"`
		Events    []event    `json:"events"`
		Elections []election `json:"elections"`
	}{r.ops, r.events, r.elections}, "", " ")
	if err != nil {
		return err
	}
	return os.WriteFile(path, b, 0o644)
}

// load drives workers and an owner against the cluster until ctx ends.
type load struct {
	rec      *recorder
	addrs    []string
	services []string
	nextItem atomic.Int64
	exported *exportStore
	leases   *leaseLog
	// recordAcks: the exporters record each AckResults attempt in the
	// history (an "ack" op).
	recordAcks bool
}

const loadSecret = "chaos-worker-secret-0123456789"

func (l *load) client(timeout time.Duration) *client.Client {
	c, err := client.New(client.Config{Addrs: l.addrs, WorkerSecret: loadSecret, CallTimeout: time.Second, RetryFor: timeout})
	if err != nil {
		panic(err)
	}
	return c
}

// verdict is a worker's answer for item on service svc: on the validated
// service every worker gives each item the same answer (honestVerdict),
// elsewhere the one given.
func (l *load) verdict(svc, item, other string) string {
	if svc == validatedService {
		return honestVerdict(item)
	}
	return other
}

// freshItems returns n item ids never used before.
func (l *load) freshItems(n int) []string {
	var ids []string
	for range n {
		ids = append(ids, fmt.Sprintf("it%06d", l.nextItem.Add(1)))
	}
	return ids
}

// owner adds fresh items to every service at a steady pace (fewer to the
// validated service, whose items take two votes each).
func (l *load) owner(ctx context.Context, id int) {
	c := l.client(5 * time.Second)
	for ctx.Err() == nil {
		for _, svc := range l.services {
			n := 10
			if svc == validatedService {
				n = validatedAdd
			}
			ids := l.freshItems(n)
			o := op{Client: id, Kind: "add", Service: svc, Items: ids, Call: l.rec.now()}
			_, err := c.AddItems(ctx, &rationv1.AddItemsRequest{Service: svc, Items: ids})
			o.Return, o.Outcome = l.rec.now(), outcome(err)
			l.rec.add(o)
		}
		sleep(ctx, 150*time.Millisecond)
	}
}

// worker acquires, then submits (whole or part), releases, or abandons
// each bucket; several workers share each worker id, as the seed allows.
// On the validated service its submits are votes, honest ones.
func (l *load) worker(ctx context.Context, id int, workerID string, seed uint64) {
	r := rand.New(rand.NewPCG(seed, uint64(id)))
	c := l.client(5 * time.Second)
	for _, svc := range l.services {
		for ctx.Err() == nil {
			if _, err := c.Register(ctx, &rationv1.RegisterRequest{Service: svc, WorkerId: workerID}); err == nil {
				break
			}
			sleep(ctx, 100*time.Millisecond)
		}
	}
	for ctx.Err() == nil {
		svc := l.services[r.IntN(len(l.services))]
		o := op{Client: id, Kind: "acquire", Worker: workerID, Service: svc, Call: l.rec.now()}
		res, err := c.Acquire(ctx, &rationv1.AcquireRequest{Service: svc, WorkerId: workerID, MaxBuckets: uint32(1 + r.IntN(2))})
		o.Return, o.Outcome = l.rec.now(), outcome(err)
		for _, b := range res.GetBuckets() {
			o.Grants = append(o.Grants, grant{Bucket: b.Id, Epoch: b.Lease.GetEpoch(), Items: b.Items})
		}
		l.rec.add(o)
		if len(o.Grants) == 0 {
			sleep(ctx, 50*time.Millisecond)
			continue
		}
		for _, g := range o.Grants {
			sleep(ctx, time.Duration(20+r.IntN(200))*time.Millisecond)
			switch n := r.IntN(100); {
			case n < 75:
				var results []*rationv1.ResultInput
				var items []string
				for _, it := range g.Items {
					if r.IntN(6) != 0 {
						results = append(results, &rationv1.ResultInput{Item: it, Verdict: l.verdict(svc, it, "DM")})
						items = append(items, it)
					}
				}
				if len(results) == 0 {
					results = append(results, &rationv1.ResultInput{Item: g.Items[0], Verdict: l.verdict(svc, g.Items[0], "NON_DM")})
					items = append(items, g.Items[0])
				}
				so := op{Client: id, Kind: "submit", Worker: workerID, Service: svc, Bucket: g.Bucket, Epoch: g.Epoch, Items: items, Call: l.rec.now()}
				sr, err := c.Submit(ctx, &rationv1.SubmitRequest{WorkerId: workerID, BucketId: g.Bucket, Epoch: g.Epoch, Results: results})
				so.Return, so.Outcome, so.N = l.rec.now(), outcome(err), sr.GetAccepted()
				l.rec.add(so)
				if r.IntN(20) == 0 {
					// A confused worker submits the same lease again (a new
					// request): it must be refused.
					again := so
					again.Call, again.N = l.rec.now(), 0
					sr, err := c.Submit(ctx, &rationv1.SubmitRequest{WorkerId: workerID, BucketId: g.Bucket, Epoch: g.Epoch, Results: results})
					again.Return, again.Outcome, again.N = l.rec.now(), outcome(err), sr.GetAccepted()
					l.rec.add(again)
				}
			case n < 87:
				ro := op{Client: id, Kind: "release", Worker: workerID, Service: svc, Bucket: g.Bucket, Epoch: g.Epoch, Call: l.rec.now()}
				_, err := c.Release(ctx, &rationv1.ReleaseRequest{WorkerId: workerID, BucketId: g.Bucket, Epoch: g.Epoch})
				ro.Return, ro.Outcome = l.rec.now(), outcome(err)
				l.rec.add(ro)
			default:
				// Abandoned: the lease expires and the items come back.
				l.leases.abandon(abandon{bucket: g.Bucket, epoch: g.Epoch, call: o.Call, ret: o.Return})
			}
		}
	}
}

func sleep(ctx context.Context, d time.Duration) {
	select {
	case <-ctx.Done():
	case <-time.After(d):
	}
}

// unavailability measures, for each nemesis event of the kinds given, the
// time from the event to the end of the first successful write invoked
// after it.
func (r *recorder) unavailability(kinds ...string) []time.Duration {
	r.mu.Lock()
	defer r.mu.Unlock()
	want := map[string]bool{}
	for _, k := range kinds {
		want[k] = true
	}
	ops := append([]op(nil), r.ops...)
	sort.Slice(ops, func(i, j int) bool { return ops[i].Return < ops[j].Return })
	var out []time.Duration
	for _, e := range r.events {
		if !want[e.Kind] {
			continue
		}
		for _, o := range ops {
			if o.Outcome == outOK && o.Call >= e.At && !o.Drain { // every recorded op is a write
				out = append(out, time.Duration(o.Return-e.At))
				break
			}
		}
	}
	return out
}
