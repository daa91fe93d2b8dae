package cluster

import (
	"context"
	"time"

	"github.com/hashicorp/raft"

	statev1 "github.com/rationhq/ration/api/ration/state/v1"
)

// watchLeadership starts the leader's loop when this node gains leadership
// and stops it when it loses it. NotifyCh delivers every change in order.
func (n *Node) watchLeadership() {
	defer n.wg.Done()
	var running *leaderRun
	stopLoop := func() {
		if running != nil {
			running.stop()
			running = nil
		}
		n.leaderReady.Store(false)
	}
	defer stopLoop()
	for {
		select {
		case <-n.stop:
			return
		case leader := <-n.notify:
			stopLoop()
			if !leader {
				n.log.Info("lost leadership")
				continue
			}
			n.log.Info("gained leadership")
			running = startLeaderRun(n.leaderLoop)
		}
	}
}

// leaderRun is one term's leader loop.
type leaderRun struct {
	cancel context.CancelFunc
	done   chan struct{}
}

func startLeaderRun(loop func(context.Context)) *leaderRun {
	ctx, cancel := context.WithCancel(context.Background())
	r := &leaderRun{cancel: cancel, done: make(chan struct{})}
	go func() {
		defer close(r.done)
		loop(ctx)
	}()
	return r
}

func (r *leaderRun) stop() {
	r.cancel()
	<-r.done
}

// leaderLoop is the leader's housekeeping: it waits until every earlier
// entry is applied, publishes this node's API address, then proposes a Tick
// every TickInterval. Leases expire only after FailoverGrace has passed since
// leadership began, so workers can reach the new leader first.
func (n *Node) leaderLoop(ctx context.Context) {
	if err := n.await(ctx, n.raft.Barrier(0)); err != nil {
		n.log.Warn("barrier after election failed", "error", err)
		return
	}
	// Raft's no-op and barrier entries never reach the state machine, so
	// its applied index would stay behind the commit index until the next
	// command, and reads waiting for the commit index would wait with it.
	// An empty tick closes the gap before reads are served. It and the
	// API address carry the state machine's time: the term's clock is not
	// set yet.
	if _, err := n.apply(ctx, &statev1.Command{Header: &statev1.CommandHeader{Actor: "system"},
		Op: &statev1.Command_Tick{Tick: &statev1.Tick{}}}); err != nil {
		n.log.Warn("first entry after election failed", "error", err)
		return
	}
	// A new cluster whose members all run this build starts at its
	// protocol, before any command could find it lower.
	n.raiseClusterVersion(ctx)
	n.leaderReady.Store(true)
	since := time.Now()
	if node, ok := n.fsm.State().NodeAddress(n.cfg.NodeID); !ok || node.APIAddress != n.cfg.APIAddr {
		cmd := &statev1.Command{Header: &statev1.CommandHeader{Actor: "system"},
			Op: &statev1.Command_SetNode{SetNode: &statev1.SetNode{NodeId: n.cfg.NodeID, ApiAddress: n.cfg.APIAddr}}}
		if _, err := n.apply(ctx, cmd); err != nil {
			n.log.Warn("cannot publish API address", "error", err)
		}
	}
	// The term's clock starts once this node knows how its clock stands
	// with the majority's (clock.go); until then commands wait in Apply.
	n.awaitClockOffset(ctx)
	n.startTermClock()
	defer n.stopTermClock()
	t := time.NewTicker(n.cfg.TickInterval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		n.checkClock()
		n.raiseClusterVersion(ctx)
		grace := time.Since(since) >= n.cfg.FailoverGrace
		for more := true; more && ctx.Err() == nil; {
			tick := &statev1.Tick{
				ExpireLeases:      grace,
				DeactivateIdle:    grace,
				ActivityRetention: int64(n.cfg.ActivityRetention),
				ActivityMax:       n.cfg.ActivityMax,
				RequestRetention:  int64(n.cfg.RequestRetention),
				RequestMaxBytes:   n.cfg.RequestMaxBytes,
				MaxTransitions:    n.cfg.MaxTransitionsPerTick,
				TrimResults:       true,
				ForgetDone:        true,
				RefreshDone:       true,
			}
			// An idle cluster writes nothing: a tick with nothing due is skipped.
			if !n.fsm.State().TickDue(n.now(), tick) {
				break
			}
			res, err := n.Apply(ctx, &statev1.Command{Header: &statev1.CommandHeader{Actor: "system"}, Op: &statev1.Command_Tick{Tick: tick}})
			if err != nil {
				if ctx.Err() == nil {
					n.log.Warn("tick failed", "error", err)
				}
				break
			}
			more = res.GetTick().GetMore()
		}
	}
}

// await waits for a Raft future, or until ctx ends or the node stops: Raft
// may leave a future unanswered when it shuts down with the entry on its
// way to the state machine, and Close must not wait for it.
func (n *Node) await(ctx context.Context, f raft.Future) error {
	done := make(chan error, 1)
	go func() { done <- f.Error() }()
	select {
	case err := <-done:
		return err
	case <-ctx.Done():
		return ctx.Err()
	case <-n.stop:
		return ErrShutdown
	}
}
