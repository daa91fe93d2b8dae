package fsm

import (
	"fmt"
	"sync/atomic"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/raft"
	"google.golang.org/protobuf/proto"

	statev1 "github.com/rationhq/ration/api/ration/state/v1"
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

// Apply implements raft.FSM. It returns a *statev1.CommandResult for
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
	cmd := new(statev1.Command)
	if err := proto.Unmarshal(l.Data, cmd); err != nil {
		panic(fmt.Sprintf("fsm: cannot decode log entry %d: %v", l.Index, err))
	}
	sums, err := bodySums(l.Data)
	if err != nil || len(sums) != leaves(cmd) {
		sums = nil // cannot happen for a decodable entry; bodyHash then computes them
	}
	return f.applyCommand(l.Index, cmd, &sums)
}

// ApplyCommand applies one decoded command at index. It is Apply without
// raft, for tests and tools that replay commands. The state may keep cmd's
// byte fields, so cmd must not change afterwards.
func (f *FSM) ApplyCommand(index uint64, cmd *statev1.Command) *statev1.CommandResult {
	if index > f.t.meta.index {
		f.t.meta.index = index
	}
	r := f.applyCommand(index, cmd, nil)
	f.publish()
	return r
}

// applyCommand applies cmd. sums, when not nil, holds the body hashes of
// the commands still to apply in this entry (see bodySums).
func (f *FSM) applyCommand(index uint64, cmd *statev1.Command, sums *[][]byte) *statev1.CommandResult {
	hdr := cmd.GetHeader()
	if hdr == nil {
		panic(fmt.Sprintf("fsm: log entry %d has no header", index))
	}
	if hdr.GetProposedAt() > f.t.meta.now {
		f.t.meta.now = hdr.GetProposedAt()
	}
	if b, ok := cmd.Op.(*statev1.Command_Batch); ok {
		res := make([]*statev1.CommandResult, len(b.Batch.GetCommands()))
		for i, c := range b.Batch.GetCommands() {
			res[i] = f.applyCommand(index, c, sums)
		}
		return &statev1.CommandResult{Value: &statev1.CommandResult_Batch{Batch: &statev1.BatchResult{Results: res}}}
	}
	var sum []byte
	if sums != nil && len(*sums) > 0 {
		sum, *sums = (*sums)[0], (*sums)[1:]
	}
	x := &txn{t: f.t, index: index, now: f.t.meta.now, hdr: hdr}
	return x.execute(cmd, sum)
}
