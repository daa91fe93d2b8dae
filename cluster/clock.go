package cluster

import (
	"fmt"
	"sync/atomic"
	"time"

	"github.com/hashicorp/raft"
)

// The state machine's time is the largest proposed_at it has applied, and
// only the leader proposes. So the cluster's time is the leader's, and a
// leader must neither jump it with a wrong wall clock nor stop it with one
// that is behind. Within a term the leader advances time by its monotonic
// clock from where the term began: the state machine's time when it took
// over. It moves that start forward to its wall clock only while its clock
// agrees with the majority's within MaxClockOffset (measured on the
// read-index calls every node makes, ObserveClockOffset), so a cluster
// restarted after hours catches up with real time, and a node whose clock
// is wrong cannot drag it. A leader that finds its clock too far off hands
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

// nodeClock is the node's view of time: its term's clock while leading,
// and its clock's offset from the majority.
type nodeClock struct {
	term       atomic.Pointer[termClock]
	offset     atomic.Pointer[ClockOffset]
	handedOver atomic.Pointer[time.Time] // the last hand-over for the clock
	off        atomic.Bool               // the log last said the clock was off
}

// now is the time this node stamps proposals with: its term's clock while
// it leads, the state machine's time otherwise (only a leader's stamp
// reaches the log).
func (n *Node) now() int64 {
	if c := n.clock.term.Load(); c != nil {
		return c.now()
	}
	return n.fsm.State().Now().UnixNano()
}

// startTermClock starts the term's clock at the state machine's time, or
// at this node's wall clock if that is later and the clock is trusted.
func (n *Node) startTermClock() {
	base := n.fsm.State().Now().UnixNano()
	c := &termClock{base: base, start: time.Now()}
	n.clock.term.Store(c)
	n.catchUpClock()
}

// stopTermClock ends the term's clock.
func (n *Node) stopTermClock() { n.clock.term.Store(nil) }

// catchUpClock moves the term's clock forward to this node's wall clock if
// that is ahead and agrees with the majority's within MaxClockOffset. It
// never moves time back.
func (n *Node) catchUpClock() {
	c := n.clock.term.Load()
	wall := n.cfg.Now()
	if c == nil || !n.clockTrusted(wall) {
		return
	}
	if now := c.now(); wall.UnixNano() > now {
		n.clock.term.CompareAndSwap(c, &termClock{base: wall.UnixNano(), start: time.Now()})
		if jump := time.Duration(wall.UnixNano() - now); jump > time.Second {
			n.log.Info("cluster time caught up with this node's clock", "by", jump.Round(time.Millisecond))
		}
	}
}

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

// checkClock, on each of the leader's ticks, catches the term's clock up
// with a trusted wall clock, or hands leadership over if this node's clock
// is too far off (at most every handOverEvery).
func (n *Node) checkClock() {
	n.catchUpClock()
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
