package backup

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/rationhq/ration/cluster"
	"github.com/rationhq/ration/fsm"
)

// Config says where, how often and how many backups a node keeps.
type Config struct {
	// Dir receives the backups; created 0700 if missing.
	Dir string
	// Every is the time from one backup to the next (at least MinEvery).
	Every time.Duration
	// Keep is how many of the newest backups in Dir are kept (at least 1).
	Keep int
	// AllNodes makes every node back up; otherwise only the leader does,
	// so that a cluster writes each backup once.
	AllNodes bool
	// NodeID names this node's temporary files.
	NodeID string
	Logger hclog.Logger
	// Now is the wall clock that names backups and schedules them; nil
	// means time.Now.
	Now func() time.Time
}

// MinEvery is the shortest time between backups.
const MinEvery = time.Second

// Validate reports the first setting that cannot work.
func (c *Config) Validate() error {
	switch {
	case c.Dir == "":
		return errors.New("backup: no directory")
	case c.Every < MinEvery:
		return fmt.Errorf("backup: every %s, want at least %s", c.Every, MinEvery)
	case c.Keep < 1:
		return fmt.Errorf("backup: keep %d, want at least 1", c.Keep)
	}
	return nil
}

// Node is what backups read: a *cluster.Node.
type Node interface {
	IsLeader() bool
	State() *fsm.State
	LinearizableState(ctx context.Context) (*fsm.State, error)
}

// Backups takes a node's backups on schedule. Its methods are safe for
// concurrent use.
type Backups struct {
	cfg  Config
	log  hclog.Logger
	tmp  string
	node Node
	// state returns what to back up, or errSkip when this node should not
	// back up now; tests replace it.
	state func(ctx context.Context) (Snapshot, error)

	mu   sync.Mutex // one backup at a time
	next time.Time  // when the next backup is due
	m    metrics    // guarded by its own mutex: a scrape never waits for a backup

	ctx    context.Context
	cancel context.CancelFunc
	done   chan struct{} // closed when the loop ends; nil before Start
}

// errSkip: this node does not back up now (not the leader, no state yet).
var errSkip = errors.New("not backing up now")

// New checks cfg and the directory (Prepare) and schedules the first
// backup one interval after the newest one already there, or at once.
// Start begins the schedule.
func New(cfg Config) (*Backups, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if cfg.Logger == nil {
		cfg.Logger = hclog.NewNullLogger()
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if err := Prepare(cfg.Dir, cfg.NodeID); err != nil {
		return nil, fmt.Errorf("%s: %w", cfg.Dir, err)
	}
	b := &Backups{cfg: cfg, log: cfg.Logger.Named("backup"), tmp: tempPrefix(cfg.NodeID)}
	b.ctx, b.cancel = context.WithCancel(context.Background())
	if all, err := List(cfg.Dir); err == nil && len(all) > 0 {
		// A newest backup in the future (a clock set back) waits no longer
		// than one interval from now.
		newest := all[len(all)-1].Time
		if now := cfg.Now(); newest.After(now) {
			newest = now
		}
		b.next = newest.Add(cfg.Every)
	}
	b.state = b.nodeState
	return b, nil
}

// Start begins backing node up on schedule, until Close.
func (b *Backups) Start(node Node) {
	b.node = node
	b.done = make(chan struct{})
	go b.loop()
}

// Close stops the schedule; a backup being written is abandoned (not
// counted as failed) and its temporary file removed.
func (b *Backups) Close() {
	b.cancel()
	if b.done != nil {
		<-b.done
	}
}

// Collector returns the backup metrics, for a Prometheus registry.
func (b *Backups) Collector() *Collector { return &Collector{b: b} }

// nodeState is the state a backup holds: on the leader, one reflecting
// every write acknowledged before the backup began; on a follower (with
// AllNodes), its own applied state, which may trail the leader's.
func (b *Backups) nodeState(ctx context.Context) (Snapshot, error) {
	var st *fsm.State
	if b.node.IsLeader() {
		var err error
		if st, err = b.node.LinearizableState(ctx); errors.Is(err, cluster.ErrNotLeader) || errors.Is(err, cluster.ErrNotReady) {
			return nil, errSkip // leadership is changing: the next check decides
		} else if err != nil {
			return nil, err
		}
	} else if b.cfg.AllNodes {
		st = b.node.State()
	} else {
		return nil, errSkip
	}
	if st.Index() == 0 {
		return nil, errSkip // nothing applied yet
	}
	return st, nil
}

// stateTimeout bounds the wait for the leader's linearizable state.
const stateTimeout = 30 * time.Second

// poll is how often the schedule checks whether a backup is due and this
// node should write it.
func (b *Backups) poll() time.Duration { return min(b.cfg.Every, 5*time.Second) }

func (b *Backups) loop() {
	defer close(b.done)
	for {
		b.mu.Lock()
		wait := b.next.Sub(b.cfg.Now())
		b.mu.Unlock()
		if wait <= 0 {
			b.Backup(b.ctx)
			b.mu.Lock()
			wait = b.next.Sub(b.cfg.Now())
			b.mu.Unlock()
		}
		// Not due, or this node does not back up now: look again at the
		// next due time or the next poll, whichever is first.
		t := time.NewTimer(min(max(wait, 0), b.poll()))
		select {
		case <-b.ctx.Done():
			t.Stop()
			return
		case <-t.C:
		}
	}
}

// Backup takes a backup now, if this node should (the leader, or any node
// with AllNodes), and then prunes the directory to the newest Keep. The
// next scheduled one is due an interval later, or sooner (a minute at
// most) after a failure. It returns the backup written, or ok false when
// this node does not back up now.
func (b *Backups) Backup(ctx context.Context) (info Info, ok bool, err error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	start, t0 := b.cfg.Now(), time.Now() // the name's time; the duration's
	sctx, cancel := context.WithTimeout(ctx, stateTimeout)
	snap, err := b.state(sctx)
	cancel()
	if errors.Is(err, errSkip) {
		return Info{}, false, nil
	}
	if err == nil {
		info, err = Write(ctx, b.cfg.Dir, b.tmp, snap, start)
	}
	took := time.Since(t0)
	if err != nil && b.ctx.Err() != nil {
		b.log.Info("backup abandoned: stopping", "dir", b.cfg.Dir)
		return Info{}, true, err
	}
	b.m.record(start, took, info, err)
	if err != nil {
		b.next = start.Add(min(b.cfg.Every, time.Minute))
		b.log.Error("backup failed", "dir", b.cfg.Dir, "took", took, "error", err)
		return Info{}, true, err
	}
	b.next = start.Add(b.cfg.Every)
	removed, perr := Prune(b.cfg.Dir, b.cfg.Keep)
	if perr != nil {
		b.log.Warn("could not remove old backups", "dir", b.cfg.Dir, "error", perr)
	}
	b.log.Info("backup written", "file", info.Path, "bytes", info.Size, "index", info.Index,
		"took", took.Round(time.Millisecond), "removed", len(removed))
	return info, true, nil
}
