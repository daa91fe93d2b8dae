package server

import (
	"context"
	"errors"
	"sync"

	statev1 "github.com/rationhq/ration/api/ration/state/v1"
	rationv1 "github.com/rationhq/ration/api/ration/v1"
	"github.com/rationhq/ration/cluster"
	"github.com/rationhq/ration/fsm"
)

// precheck refuses, on the leader and before it costs a log entry, a
// command the state machine would refuse (fsm.State.Precheck: the same
// checks with the same reason and message). The leader's latest state
// answers first, in a few lookups. A refusal is confirmed against
// linearizable state (a read index, which also confirms leadership, then
// waiting to apply it), so a deposed leader, or one whose state trails the
// log, never refuses what the log would accept; if that state passes the
// command, it is proposed. A new leader that cannot serve a read index yet
// proposes the command and lets the log decide. A refused command changes
// nothing in the replicated state; it counts in this node's edge refusals.
func (s *Server) precheck(ctx context.Context, cmd *statev1.Command) error {
	if s.store.State().Precheck(cmd) == nil {
		return nil
	}
	st, err := s.confirmState(ctx)
	if st == nil {
		return err
	}
	perr := st.Precheck(cmd)
	if perr == nil {
		return nil
	}
	s.refused.add(st.RefusalService(cmd), fsm.Reason(perr))
	return perr
}

// precheckHeartbeat is precheck for a heartbeat, which the leader proposes
// as a HeartbeatBatch of one entry. It returns the refusal of an entry the state machine
// would refuse whole, or the answer for one that would extend none of its
// leases (each lease's refusal), confirmed as precheck confirms; or neither,
// when the heartbeat must be proposed.
func (s *Server) precheckHeartbeat(ctx context.Context, e *statev1.HeartbeatEntry) (*rationv1.HeartbeatResponse, error) {
	if resp, perr := s.store.State().PrecheckHeartbeat(e); resp == nil && perr == nil {
		return nil, nil
	}
	st, err := s.confirmState(ctx)
	if st == nil {
		return nil, err
	}
	resp, perr := st.PrecheckHeartbeat(e)
	if perr != nil {
		return nil, perr
	}
	return resp, nil
}

// confirmState returns linearizable state on the leader. It returns nil
// and no error when leadership is too new to serve a read index (the caller
// then proposes), and nil with ErrNotLeader when this node no longer leads
// (the caller forwards).
func (s *Server) confirmState(ctx context.Context) (*fsm.State, error) {
	idx, err := s.store.ReadIndex(ctx)
	if errors.Is(err, cluster.ErrNotReady) {
		return nil, nil
	}
	if errors.Is(err, cluster.ErrOutcomeUnknown) {
		// Leadership was lost while confirming it: nothing was proposed.
		return nil, cluster.ErrNotLeader
	}
	if err != nil {
		return nil, err
	}
	return s.store.WaitApplied(ctx, idx)
}

// refusals counts the commands this node refused at the edge (precheck), by
// service and reason: the refusals the state machine would have counted in
// its replicated rejected counters, had they been proposed. They are this
// node's own, kept in memory from its start. Refusals of commands naming no
// existing service are not counted, as the state machine does not count
// them, so labels stay bounded.
type refusals struct {
	mu sync.Mutex
	n  map[string]map[string]uint64 // service -> reason -> count
}

func (r *refusals) add(service, reason string) {
	if service == "" || reason == "" {
		return
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.n == nil {
		r.n = map[string]map[string]uint64{}
	}
	if r.n[service] == nil {
		r.n[service] = map[string]uint64{}
	}
	r.n[service][reason]++
}

// of returns a copy of one service's counts by reason.
func (r *refusals) of(service string) map[string]uint64 {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := make(map[string]uint64, len(r.n[service]))
	for k, v := range r.n[service] {
		out[k] = v
	}
	return out
}
