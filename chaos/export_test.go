package chaos

import (
	"context"
	"fmt"
	"sync"
	"time"

	"connectrpc.com/connect"

	"github.com/rationhq/ration/api/client"
	rationv1 "github.com/rationhq/ration/api/ration/v1"
	"github.com/rationhq/ration/fsm"
)

// exportStore is the owner's own store of exported results, as a real
// consumer keeps them: by seq, so a batch exported twice (export is
// at-least-once) is stored once.
type exportStore struct {
	mu      sync.Mutex
	batches map[uint64]storedBatch
	dups    int // batches received again after a resume
}

// storedBatch is one accepted submit's results, as the state or the
// owner's store keeps them.
type storedBatch struct {
	seq, bucket, epoch uint64
	worker             string
	items              []string
	service            string
	verdicts           []string // the items' verdicts
	// validated: the batch, every result of it when exported, was
	// validated (a quorum of distinct workers agreed).
	validated bool
}

func newExportStore() *exportStore { return &exportStore{batches: map[uint64]storedBatch{}} }

// put stores one batch exported from service (client.Export's Store).
func (s *exportStore) put(service string, r *rationv1.ExportResultsResponse) error {
	rs := r.GetResults()
	if len(rs) == 0 {
		return fmt.Errorf("batch %d has no results", r.GetSeq())
	}
	b := storedBatch{seq: r.GetSeq(), worker: rs[0].GetWorkerId(), bucket: rs[0].GetBucketId(), epoch: rs[0].GetEpoch(),
		service: service, validated: true}
	for _, x := range rs {
		b.items = append(b.items, x.GetItem())
		b.verdicts = append(b.verdicts, x.GetVerdict())
		b.validated = b.validated && x.GetValidated()
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, ok := s.batches[b.seq]; ok {
		s.dups++
	}
	s.batches[b.seq] = b
	return nil
}

// has reports whether the owner has stored batch seq (0: none to store).
func (s *exportStore) has(seq uint64) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	_, ok := s.batches[seq]
	return ok || seq == 0
}

// exporter follows a service's results and acknowledges what it stored,
// starting again from the acknowledged position whenever an export ends
// early (every node it tried was down or without a leader for a while).
func (l *load) exporter(ctx context.Context, service string) {
	var opts []connect.ClientOption
	if l.recordAcks {
		opts = append(opts, connect.WithInterceptors(l.ackRecorder()))
	}
	c, err := client.New(client.Config{Addrs: l.addrs, CallTimeout: time.Second, RetryFor: 5 * time.Second, Options: opts})
	if err != nil {
		panic(err)
	}
	for ctx.Err() == nil {
		_, _ = c.Export(ctx, client.Export{Service: service, FromAcknowledged: true, Follow: true,
			AckEvery: 300 * time.Millisecond, Store: func(r *rationv1.ExportResultsResponse) error { return l.exported.put(service, r) }})
		sleep(ctx, 200*time.Millisecond)
	}
}

// ackClient is the client id of the exporters' AckResults in the history.
const ackClient = 300

// ackRecorder records each AckResults attempt a client makes as an "ack"
// op: the seq it acknowledges through, and its outcome. (The client retries
// above the interceptor, so each attempt is one op; an ok one is a write the
// cluster acknowledged.)
func (l *load) ackRecorder() connect.UnaryInterceptorFunc {
	return func(next connect.UnaryFunc) connect.UnaryFunc {
		return func(ctx context.Context, req connect.AnyRequest) (connect.AnyResponse, error) {
			ar, ok := req.Any().(*rationv1.AckResultsRequest)
			if !ok {
				return next(ctx, req)
			}
			o := op{Client: ackClient, Kind: "ack", Service: ar.GetService(), Seq: ar.GetThroughSeq(), Call: l.rec.now()}
			res, err := next(ctx, req)
			o.Return, o.Outcome = l.rec.now(), outcome(err)
			l.rec.add(o)
			return res, err
		}
	}
}

// storedBatches is every result batch that survives: those the final state
// holds and those the owner exported (and may since have been trimmed).
func storedBatches(st *fsm.State, exp *exportStore) map[uint64]storedBatch {
	out := map[uint64]storedBatch{}
	for _, svc := range st.Services() {
		for _, rb := range st.Results(svc.Name, 0, 1<<30) {
			b := storedBatch{seq: rb.Seq, worker: rb.Worker, bucket: rb.Bucket, epoch: rb.Epoch, service: svc.Name, validated: rb.Validated}
			for _, r := range rb.All() {
				b.items = append(b.items, r.Item)
				b.verdicts = append(b.verdicts, r.Verdict)
			}
			out[rb.Seq] = b
		}
	}
	exp.mu.Lock()
	defer exp.mu.Unlock()
	for seq, rb := range exp.batches {
		if _, ok := out[seq]; !ok {
			out[seq] = rb
		}
	}
	return out
}

// checkExported checks that the export loop ran through the faults: each
// service's owner acknowledged results, none was dropped unacknowledged,
// and a service that trims at acknowledgment (trimmed) trimmed some. That
// nothing trimmed was lost is checkFinal's: it finds every acknowledged
// submit in the state or in the owner's store.
func checkExported(st *fsm.State, services []string, trimmed map[string]bool) []string {
	var problems []string
	for _, name := range services {
		s, ok := st.Service(name)
		switch {
		case !ok:
			problems = append(problems, fmt.Sprintf("service %s is missing", name))
		case s.AckedThrough == 0:
			problems = append(problems, fmt.Sprintf("service %s: nothing was acknowledged", name))
		case s.Counters.ResultsDropped != 0:
			problems = append(problems, fmt.Sprintf("service %s: %d results dropped unacknowledged", name, s.Counters.ResultsDropped))
		case trimmed[name] && s.Counters.ResultsTrimmed == 0:
			problems = append(problems, fmt.Sprintf("service %s trims at acknowledgment but trimmed nothing", name))
		}
	}
	return problems
}
