package cluster

import (
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"strconv"
	"time"

	"github.com/hashicorp/go-hclog"
)

// Config configures a Node. DefaultConfig gives working values; Validate
// names the first bad field.
type Config struct {
	// NodeID names the node in the cluster; it must stay the same across restarts.
	NodeID string
	// RaftAddr is the address Raft listens on and advertises (host:port);
	// an in-memory node ignores it.
	RaftAddr string
	// AdvertiseRaft, when set, is the address other nodes dial to reach
	// this node's Raft, kept as given: a host name is looked up at each
	// dial, so it outlives a change of the node's IP (containers). Empty
	// advertises RaftAddr, resolved to an IP. An in-memory node ignores it.
	AdvertiseRaft string
	// APIAddr is the address other nodes reach this node's API on.
	APIAddr string
	// DataDir holds the Raft log (raft.db) and snapshots; created 0700.
	DataDir string
	// Bootstrap makes this node a one-member cluster if it has no state yet.
	Bootstrap bool
	// InMemory, for tests, keeps the whole node in memory: Raft's in-memory
	// log, stable and snapshot stores and its in-memory transport, no data
	// dir and no network. It is a one-member cluster (Bootstrap), with no
	// DataDir, PeerTLS or PeerDialAddrs; otherwise the node is the same
	// (Apply, group commit, the leader's loop, read indexes). Its state is
	// gone when it closes.
	InMemory bool
	// PeerDialAddrs, by node id, overrides the Raft address this node dials
	// to reach a member (behind a proxy or NAT; the chaos tests use it to
	// cut single links). Members not listed are dialed at their address.
	PeerDialAddrs map[string]string
	// PeerTLS, when set, puts Raft traffic under mutual TLS: Certificates
	// holds this node's certificate, presented both as server and as client
	// (so it needs both extended key usages and SANs for the advertised Raft
	// address); RootCAs is the peer CA, which verifies other nodes'
	// certificates in both directions (ClientCAs, if set, overrides it for
	// incoming connections). Nil means plain TCP.
	PeerTLS *tls.Config
	Logger  hclog.Logger

	// Raft timing; tests shorten them.
	HeartbeatTimeout   time.Duration
	ElectionTimeout    time.Duration
	LeaderLeaseTimeout time.Duration
	CommitTimeout      time.Duration
	SnapshotInterval   time.Duration
	SnapshotThreshold  uint64
	TrailingLogs       uint64
	// SnapshotLogBytes makes the node snapshot once its log since the last
	// snapshot holds this many bytes, or half that snapshot's size if
	// larger (0: only SnapshotThreshold and SnapshotInterval decide). It
	// bounds what a restart replays after restoring its snapshot.
	SnapshotLogBytes uint64
	// TrailingLogBytes lowers TrailingLogs so that the entries kept after
	// a snapshot hold about this many bytes (0: TrailingLogs alone).
	TrailingLogBytes uint64

	// TickInterval is how often the leader proposes a Tick.
	TickInterval time.Duration
	// FailoverGrace is how long a new leader waits before it expires any
	// lease, so workers can heartbeat after an election.
	FailoverGrace time.Duration
	// ActivityRetention and ActivityMax bound the activity log.
	ActivityRetention time.Duration
	ActivityMax       uint64
	// RequestRetention and RequestMaxBytes bound the request ids remembered
	// for retries: by age, and by what they cost (their answers mostly).
	RequestRetention time.Duration
	RequestMaxBytes  uint64
	// MaxTransitionsPerTick bounds the work of one Tick.
	MaxTransitionsPerTick uint32
	// MaxCommandBytes caps one proposed command, and one log entry.
	MaxCommandBytes int
	// MaxEntriesInFlight bounds the log entries the leader has proposed
	// and not yet applied; commands arriving meanwhile share the next entry.
	MaxEntriesInFlight int
	// MaxCommandsPerEntry bounds how many commands one entry carries.
	MaxCommandsPerEntry int
	// ApplyTimeout bounds a proposal when the caller's context has no deadline.
	ApplyTimeout time.Duration
	// LogCacheEntries and LogCacheBytes bound the latest log entries kept
	// in memory, so Raft reads them back without BoltDB; zero turns the
	// cache off.
	LogCacheEntries int
	LogCacheBytes   int

	// Now is the node's wall clock. The leader stamps proposals with the
	// cluster's time, which follows its monotonic clock and moves to this
	// one only while it agrees with the majority's (clock.go).
	Now func() time.Time
	// MaxClockOffset is how far this node's wall clock may be from the
	// majority's for the leader to trust it; a leader further off hands
	// leadership over.
	MaxClockOffset time.Duration
	// ClockOffsetWait bounds how long a new leader waits to learn its clock
	// offset before it starts its term's clock anyway (commands wait with
	// it). The server measures offsets a few times a second; a node
	// without one (tests of this package) sets 0.
	ClockOffsetWait time.Duration
	// MaxProtocol, when set, is the highest log protocol this node says it
	// applies, below its build's (tests that play an older member); 0 is
	// the build's (fsm.MaxProtocol).
	MaxProtocol uint32
}

// DefaultConfig returns the settings of a production node. Address and
// identity fields are left for the caller.
func DefaultConfig() Config {
	return Config{
		HeartbeatTimeout:      1000 * time.Millisecond,
		ElectionTimeout:       1000 * time.Millisecond,
		LeaderLeaseTimeout:    500 * time.Millisecond,
		CommitTimeout:         50 * time.Millisecond,
		SnapshotInterval:      2 * time.Minute,
		SnapshotThreshold:     8192,
		TrailingLogs:          10240,
		SnapshotLogBytes:      32 << 20,
		TrailingLogBytes:      256 << 20,
		TickInterval:          time.Second,
		FailoverGrace:         15 * time.Second,
		ActivityRetention:     7 * 24 * time.Hour,
		ActivityMax:           1_000_000,
		RequestRetention:      time.Hour,
		RequestMaxBytes:       128 << 20,
		MaxTransitionsPerTick: 5000,
		MaxCommandBytes:       16 << 20,
		MaxEntriesInFlight:    2,
		MaxCommandsPerEntry:   512,
		ApplyTimeout:          10 * time.Second,
		LogCacheEntries:       512,
		LogCacheBytes:         64 << 20,
		Now:                   time.Now,
		MaxClockOffset:        DefaultMaxClockOffset,
		ClockOffsetWait:       2 * time.Second,
	}
}

// Validate reports the first field that cannot work.
func (c *Config) Validate() error {
	switch {
	case c.NodeID == "":
		return errors.New("cluster config: NodeID is empty")
	case c.DataDir == "" && !c.InMemory:
		return errors.New("cluster config: DataDir is empty")
	case c.Now == nil:
		return errors.New("cluster config: Now is nil")
	case c.TickInterval <= 0:
		return errors.New("cluster config: TickInterval must be positive")
	case c.FailoverGrace < c.ElectionTimeout:
		return fmt.Errorf("cluster config: FailoverGrace %s is shorter than ElectionTimeout %s", c.FailoverGrace, c.ElectionTimeout)
	case c.MaxClockOffset <= 0:
		return errors.New("cluster config: MaxClockOffset must be positive")
	case c.MaxCommandBytes <= 0:
		return errors.New("cluster config: MaxCommandBytes must be positive")
	}
	if c.InMemory {
		return c.validateInMemory()
	}
	if t := c.PeerTLS; t != nil {
		switch {
		case len(t.Certificates) == 0 && (t.GetCertificate == nil || t.GetClientCertificate == nil):
			return errors.New("cluster config: PeerTLS has no certificate")
		case t.RootCAs == nil:
			return errors.New("cluster config: PeerTLS has no RootCAs (the peer CA)")
		}
	}
	if _, _, err := net.SplitHostPort(c.RaftAddr); err != nil {
		return fmt.Errorf("cluster config: RaftAddr %q: %v", c.RaftAddr, err)
	}
	if c.AdvertiseRaft != "" {
		if err := CheckAdvertiseAddr(c.AdvertiseRaft); err != nil {
			return fmt.Errorf("cluster config: AdvertiseRaft: %w", err)
		}
	}
	return nil
}

// CheckAdvertiseAddr reports why addr cannot be dialed by other nodes:
// it must be host:port with a host (a name or an IP other than 0.0.0.0 or
// ::) and a port from 1 to 65535.
func CheckAdvertiseAddr(addr string) error {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return fmt.Errorf("%q: %v", addr, err)
	}
	if ip := net.ParseIP(host); host == "" || ip != nil && ip.IsUnspecified() {
		return fmt.Errorf("%q: give a host other nodes can reach", addr)
	}
	if p, err := strconv.ParseUint(port, 10, 16); err != nil || p == 0 {
		return fmt.Errorf("%q: port must be a number from 1 to 65535", addr)
	}
	return nil
}

// validateInMemory refuses what an in-memory node cannot do: it has no
// data dir, no network and no other member.
func (c *Config) validateInMemory() error {
	switch {
	case !c.Bootstrap:
		return errors.New("cluster config: InMemory needs Bootstrap: an in-memory node is a one-member cluster")
	case c.DataDir != "":
		return errors.New("cluster config: InMemory takes no DataDir")
	case c.PeerTLS != nil:
		return errors.New("cluster config: InMemory takes no PeerTLS: an in-memory node has no network")
	case len(c.PeerDialAddrs) > 0:
		return errors.New("cluster config: InMemory takes no PeerDialAddrs: an in-memory node has no peers")
	}
	return nil
}
