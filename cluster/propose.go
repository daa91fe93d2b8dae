package cluster

import (
	"context"
	"errors"
	"fmt"
	"sync"

	statev1 "github.com/rationhq/ration/api/ration/state/v1"
	"github.com/rationhq/ration/fsm"
)

// proposer is the leader's group commit: commands proposed while earlier
// log entries are in flight are gathered into one CommandBatch entry. The
// number of log entries, not their size, is what costs (each is a disk sync
// on the leader and a follower), so under load many commands share an
// entry, while a lone command still goes out at once. Each command keeps
// its own header and gets its own result: batching never merges answers.
type proposer struct {
	n        *Node
	maxBatch int
	maxBytes int

	mu    sync.Mutex
	queue []*proposal
	kick  chan struct{}
	slots chan struct{} // entries in flight
}

type proposal struct {
	data []byte
	done chan proposalResult
}

type proposalResult struct {
	res *statev1.CommandResult
	err error
}

func newProposer(n *Node, inFlight, maxBatch int) *proposer {
	return &proposer{n: n, maxBatch: maxBatch, maxBytes: n.cfg.MaxCommandBytes,
		kick: make(chan struct{}, 1), slots: make(chan struct{}, max(inFlight, 1))}
}

// propose queues one marshaled command and waits for its result.
func (p *proposer) propose(ctx context.Context, data []byte) (*statev1.CommandResult, error) {
	pr := &proposal{data: data, done: make(chan proposalResult, 1)}
	p.mu.Lock()
	p.queue = append(p.queue, pr)
	p.mu.Unlock()
	select {
	case p.kick <- struct{}{}:
	default:
	}
	select {
	case r := <-pr.done:
		return r.res, r.err
	case <-ctx.Done():
		return nil, fmt.Errorf("%w: %v", ErrOutcomeUnknown, ctx.Err())
	}
}

func (p *proposer) run(stop <-chan struct{}, wg *sync.WaitGroup) {
	defer wg.Done()
	var inflight sync.WaitGroup
	defer inflight.Wait()
	for {
		select {
		case <-stop:
			p.fail(ErrShutdown)
			return
		case <-p.kick:
		}
		for {
			select {
			case <-stop:
				p.fail(ErrShutdown)
				return
			case p.slots <- struct{}{}:
			}
			batch := p.take()
			if len(batch) == 0 {
				<-p.slots
				break
			}
			inflight.Add(1)
			go func() {
				defer inflight.Done()
				p.apply(batch)
				<-p.slots
			}()
		}
	}
}

// take removes up to maxBatch commands (and maxBytes) from the queue.
func (p *proposer) take() []*proposal {
	p.mu.Lock()
	defer p.mu.Unlock()
	n, size := 0, 0
	for n < len(p.queue) && n < p.maxBatch {
		size += len(p.queue[n].data) + 8
		if n > 0 && size > p.maxBytes {
			break
		}
		n++
	}
	batch := p.queue[:n:n]
	p.queue = p.queue[n:]
	return batch
}

func (p *proposer) fail(err error) {
	p.mu.Lock()
	q := p.queue
	p.queue = nil
	p.mu.Unlock()
	for _, pr := range q {
		pr.done <- proposalResult{err: err}
	}
}

// apply writes one log entry for the batch and hands out the results.
func (p *proposer) apply(batch []*proposal) {
	data := batch[0].data
	if len(batch) > 1 {
		subs := make([][]byte, len(batch))
		for i, pr := range batch {
			subs[i] = pr.data
		}
		data = fsm.EncodeBatch(&statev1.CommandHeader{ProposedAt: p.n.now(), Proposer: p.n.cfg.NodeID, Actor: "system"}, subs)
	}
	f := p.n.raft.Apply(data, p.n.cfg.ApplyTimeout)
	if err := p.n.await(context.Background(), f); err != nil {
		if errors.Is(err, ErrShutdown) {
			// The node stopped with the entry on its way: it may yet commit.
			err = fmt.Errorf("%w: the node stopped with the command in flight", ErrOutcomeUnknown)
		}
		err = raftError(err)
		for _, pr := range batch {
			pr.done <- proposalResult{err: err}
		}
		return
	}
	res, ok := f.Response().(*statev1.CommandResult)
	if !ok {
		err := fmt.Errorf("state machine answered %T", f.Response())
		for _, pr := range batch {
			pr.done <- proposalResult{err: err}
		}
		return
	}
	if len(batch) == 1 {
		batch[0].done <- proposalResult{res: res}
		return
	}
	results := res.GetBatch().GetResults()
	for i, pr := range batch {
		if i < len(results) {
			pr.done <- proposalResult{res: results[i]}
		} else {
			pr.done <- proposalResult{err: fmt.Errorf("batch answered %d of %d commands", len(results), len(batch))}
		}
	}
}
