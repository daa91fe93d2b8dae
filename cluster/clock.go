package cluster

import (
	"context"
	"fmt"
	"sync/atomic"
	"time"

	"github.com/hashicorp/raft"
)

// The state machine's time is the largest proposed_at it has applied, and
// only the leader proposes. So the cluster's time is the leader's, and a
// leader must neither jump it with a wrong wall clock nor stop it with one
// that is behind. Within a term the leader advances time by its monotonic
// clock from where the term began. The term begins at the state machine's
// time when the leader took over, or at the leader's wall clock if that is
// later and agrees with the majority's within MaxClockOffset (measured on
// the read-index calls every node makes, ObserveClockOffset): so a cluster
// restarted after hours catches up with real time, and a node whose clock
// is wrong cannot drag it. Time never jumps within a term, so a lease
// granted in a term lasts its ttl of the leader's monotonic time. A new
// leader waits (up to Config.ClockOffsetWait) to know its offset before it
// takes commands, and a leader that finds its clock too far off hands
// leadership over.

// DefaultMaxClockOffset is how far a node's wall clock may be from the
// majority's (Config.MaxClockOffset).
const DefaultMaxClockOffset = time.Second

// termClock is the leader's time within one term: base (unix ns) at start,
// a monotonic reading.
type termClock struct {
	base  int64
	start time.Time
}

func (c *termClock) now() int64 { return c.base + int64(time.Since(c.start)) }

// ClockOffset is how far this node's wall clock is from the majority's.
type ClockOffset struct {
	// Offset is this node's clock minus the majority's (the median of the
	// voters' clocks as the leader measures them).
	Offset time.Duration
	// At is when it was measured (monotonic); zero if never.
	At time.Time
	// Wall is this node's wall clock then. A wall clock stepped since
	// moves the offset by the step at once (offsetAt), without waiting for
	// the next measurement.
	Wall time.Time
}

// offsetAt is the offset as of the wall clock reading wall: the measured
// one, plus how far the wall clock has moved from the monotonic one since.
func (o ClockOffset) offsetAt(wall time.Time) time.Duration {
	return o.Offset + wall.Round(0).Sub(o.Wall) - time.Since(o.At)
}

// clockOffsetFresh is how long a measured offset stays usable.
const clockOffsetFresh = 10 * time.Second

// Fresh reports whether the offset was measured lately (10s).
func (o ClockOffset) Fresh() bool { return !o.At.IsZero() && time.Since(o.At) < clockOffsetFresh }

// timeSeen is when (monotonic) this node applied the state machine's time
// at.
type timeSeen struct {
	at   int64
	mono time.Time
}

// watchTime notes when the state machine's time moves on, until the node
// stops.
func (n *Node) watchTime() {
	defer n.wg.Done()
	for {
		ch := n.fsm.Changed()
		if at := n.fsm.State().Now().UnixNano(); at > 0 {
			if seen := n.clock.seen.Load(); seen == nil || seen.at != at {
				n.clock.seen.Store(&timeSeen{at: at, mono: time.Now()})
			}
		}
		select {
		case <-ch:
		case <-n.stop:
			return
		}
	}
}

// nodeClock is the node's view of time: its term's clock while leading,
// and its clock's offset from the majority.
type nodeClock struct {
	seen       atomic.Pointer[timeSeen] // the state machine's time, when applied
	term       atomic.Pointer[termClock]
	offset     atomic.Pointer[ClockOffset]
	handedOver atomic.Pointer[time.Time] // the last hand-over for the clock
	off        atomic.Bool               // the log last said the clock was off
}

// now is the time this node stamps proposals with: its term's clock while
// it leads, the state machine's time otherwise (a new leader's first
// entries, before its term's clock runs), or its wall clock while the
// cluster has no time yet.
func (n *Node) now() int64 {
	if c := n.clock.term.Load(); c != nil {
		return c.now()
	}
	if t := n.fsm.State().Now().UnixNano(); t > 0 {
		return t
	}
	return n.cfg.Now().UnixNano()
}

// awaitClockOffset waits until this node's clock offset is known, it is
// the only voter, ClockOffsetWait has passed, or ctx ends.
func (n *Node) awaitClockOffset(ctx context.Context) {
	deadline := time.Now().Add(n.cfg.ClockOffsetWait)
	for !n.ClockOffset().Fresh() && !n.onlyVoter() && time.Now().Before(deadline) && ctx.Err() == nil {
		select {
		case <-ctx.Done():
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// startTermClock starts the term's clock where the last term's left it:
// the state machine's time, moved on by this node's monotonic time since it
// applied that time (never further than the last leader's clock would have
// run, since it applied the entry after it was stamped). It starts at this
// node's wall clock instead if that is later and the clock is trusted, or
// if the cluster has no time yet (its first term).
func (n *Node) startTermClock() {
	base := n.fsm.State().Now().UnixNano()
	if seen := n.clock.seen.Load(); seen != nil && seen.at == base {
		base += int64(time.Since(seen.mono))
	}
	wall := n.cfg.Now()
	if wall.UnixNano() > base && (base <= 0 || n.clockTrusted(wall)) {
		if jump := time.Duration(wall.UnixNano() - base); jump > time.Second {
			n.log.Info("the cluster's time catches up with this node's clock", "by", jump.Round(time.Millisecond))
		}
		base = wall.UnixNano()
	}
	n.clock.term.Store(&termClock{base: base, start: time.Now()})
}

// awaitTermClock holds a command that reaches a new leader until its
// term's clock runs: at most ClockOffsetWait after the election, and
// usually a few milliseconds.
func (n *Node) awaitTermClock(ctx context.Context) error {
	deadline := time.Now().Add(n.cfg.ClockOffsetWait + time.Second)
	for n.IsLeader() && n.clock.term.Load() == nil {
		if time.Now().After(deadline) {
			return fmt.Errorf("%w: the new leader's clock is not set yet", ErrNotReady)
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("%w: waiting for the new leader's clock: %v", ErrNotReady, ctx.Err())
		case <-n.stop:
			return ErrShutdown
		case <-time.After(2 * time.Millisecond):
		}
	}
	return nil
}

// stopTermClock ends the term's clock.
func (n *Node) stopTermClock() { n.clock.term.Store(nil) }

// clockTrusted reports whether this node's clock, read as wall, was
// measured lately and is within MaxClockOffset of the majority's.
func (n *Node) clockTrusted(wall time.Time) bool {
	if n.onlyVoter() {
		return true // its clock is the majority's
	}
	o := n.ClockOffset()
	return o.Fresh() && o.offsetAt(wall).Abs() <= n.cfg.MaxClockOffset
}

// onlyVoter reports whether this node is the cluster's only voter.
func (n *Node) onlyVoter() bool {
	voters := 0
	for _, m := range n.Members() {
		if m.Suffrage == raft.Voter.String() {
			if m.ID != n.cfg.NodeID {
				return false
			}
			voters++
		}
	}
	return voters == 1
}

// MaxClockOffset is how far this node's clock may be from the majority's.
func (n *Node) MaxClockOffset() time.Duration { return n.cfg.MaxClockOffset }

// WallClock reads this node's wall clock (Config.Now).
func (n *Node) WallClock() time.Time { return n.cfg.Now() }

// ObserveClockOffset records this node's clock offset from the majority,
// as just measured.
func (n *Node) ObserveClockOffset(offset time.Duration) {
	n.clock.offset.Store(&ClockOffset{Offset: offset, At: time.Now(), Wall: n.cfg.Now().Round(0)})
	problem := n.ClockProblem()
	if n.clock.off.Swap(problem != "") == (problem != "") {
		return
	}
	if problem != "" {
		n.log.Warn(problem+": this node is not ready, will not lead, and its clock does not move the cluster's time", "offset", offset)
	} else {
		n.log.Info("this node's clock agrees with the majority's again", "offset", offset)
	}
}

// ClockOffset returns this node's clock offset from the majority: the last
// one measured, moved by any step of the wall clock since.
func (n *Node) ClockOffset() ClockOffset {
	o := n.clock.offset.Load()
	if o == nil {
		return ClockOffset{}
	}
	wall := n.cfg.Now()
	return ClockOffset{Offset: o.offsetAt(wall), At: o.At, Wall: wall.Round(0)}
}

// ClockProblem says why this node's clock is not to be trusted, or "":
// it was measured lately and is too far from the majority's.
func (n *Node) ClockProblem() string {
	o := n.ClockOffset()
	if !o.Fresh() || o.Offset.Abs() <= n.cfg.MaxClockOffset {
		return ""
	}
	return fmt.Sprintf("this node's clock is %s off the majority's (limit %s)", o.Offset.Round(time.Millisecond), n.cfg.MaxClockOffset)
}

// handOverEvery spaces a leader's attempts to hand over for its clock.
const handOverEvery = 10 * time.Second

// checkClock, on each of the leader's ticks, hands leadership over if this
// node's clock is too far off (at most every handOverEvery).
func (n *Node) checkClock() {
	problem := n.ClockProblem()
	if problem == "" {
		return
	}
	last := n.clock.handedOver.Load()
	if last != nil && time.Since(*last) < handOverEvery {
		return
	}
	now := time.Now()
	n.clock.handedOver.Store(&now)
	n.log.Warn("handing leadership over: "+problem, "offset", n.ClockOffset().Offset)
	if err := n.HandOver(); err != nil {
		n.log.Warn("could not hand leadership over", "error", err)
	}
}
