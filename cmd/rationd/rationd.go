package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"time"

	"connectrpc.com/connect"
	"github.com/hashicorp/go-hclog"
	"golang.org/x/net/http2"
	"golang.org/x/net/http2/h2c"

	rationv1 "github.com/rationhq/ration/api/ration/v1"
	"github.com/rationhq/ration/api/ration/v1/rationv1connect"
	"github.com/rationhq/ration/cluster"
	"github.com/rationhq/ration/internal/backup"
	"github.com/rationhq/ration/internal/version"
	"github.com/rationhq/ration/server"
)

var errHelp = errors.New("help requested")

// Main is the program: flags in, a running node out.
type Main struct {
	NodeID        string
	DataDir       string
	HTTPAddr      string
	AdvertiseHTTP string
	RaftAddr      string
	AdvertiseRaft string
	Bootstrap     bool
	Join          []string
	AdminToken    string
	Insecure      bool
	Pprof         bool
	LogFormat     string
	LogLevel      string
	JoinTimeout   time.Duration
	// Cluster timing; zero keeps cluster.DefaultConfig's.
	ElectionTimeout time.Duration
	TickInterval    time.Duration
	FailoverGrace   time.Duration
	RaftDial        map[string]string
	// Limits are the per-client limits (see limits.go for their flags).
	Limits server.Limits
	// Bounds limit what the node remembers (see bounds.go for their flags).
	Bounds Bounds
	// Clock: the offset limit and a test-only offset (clock.go).
	Clock clockFlags
	// Backup: where and how often backups are written (backup.go).
	Backup backupFlags
	// TLS: certificate files (see tls.go); empty serves cleartext.
	TLSCert, TLSKey, TLSClientCA       string
	PeerTLSCert, PeerTLSKey, PeerTLSCA string
	// Stderr receives the log.
	Stderr io.Writer
	// Stdout receives --version's answer.
	Stdout io.Writer

	log  hclog.Logger
	node *cluster.Node
	srv  *server.Server
	http *http.Server
	ln   net.Listener
	tls  *tlsSetup
	done chan error
	// backups writes backups on schedule, when --backup-dir is set.
	backups *backup.Backups
	// testClock is the test-only clock, when --test-clock-offset-file is set.
	testClock *testClock
}

// NewMain returns a Main with the defaults of a lone local node.
func NewMain() *Main {
	return &Main{
		NodeID: "n1", DataDir: "ration-data", HTTPAddr: "127.0.0.1:7070", RaftAddr: "127.0.0.1:7071",
		LogFormat: "text", LogLevel: "info", JoinTimeout: time.Minute, Stderr: os.Stderr, Stdout: os.Stdout,
		Limits: server.DefaultLimits(), Bounds: defaultBounds(), Clock: clockFlags{MaxClockOffset: cluster.DefaultMaxClockOffset},
	}
}

// parseRaftDial reads --raft-dial: comma-separated ID=HOST:PORT.
func parseRaftDial(flagValue string) (map[string]string, error) {
	out := map[string]string{}
	for _, kv := range strings.Split(flagValue, ",") {
		if kv = strings.TrimSpace(kv); kv == "" {
			continue
		}
		id, addr, ok := strings.Cut(kv, "=")
		if !ok || id == "" || addr == "" {
			return nil, fmt.Errorf("--raft-dial %q: want ID=HOST:PORT", kv)
		}
		out[id] = addr
	}
	return out, nil
}

// ParseFlags reads the command line; getenv supplies RATION_ADMIN_TOKEN.
func (m *Main) ParseFlags(args []string, getenv func(string) string) error {
	fs := flag.NewFlagSet("rationd", flag.ContinueOnError)
	fs.SetOutput(m.Stderr)
	fs.StringVar(&m.NodeID, "node-id", m.NodeID, "this node's id, unique in the cluster and kept across restarts")
	fs.StringVar(&m.DataDir, "data-dir", m.DataDir, "directory for the Raft log and snapshots (created 0700)")
	fs.StringVar(&m.HTTPAddr, "http-addr", m.HTTPAddr, "address the API listens on")
	fs.StringVar(&m.AdvertiseHTTP, "advertise-http", "", "API address other nodes use to reach this one (default: the listening address)")
	fs.StringVar(&m.RaftAddr, "raft-addr", m.RaftAddr, "address Raft listens on (and advertises, resolved to an IP, unless --advertise-raft is given)")
	fs.StringVar(&m.AdvertiseRaft, "advertise-raft", "", "Raft address other nodes dial to reach this one, kept as given: a host name is looked up at each dial (containers)")
	showVersion := fs.Bool("version", false, "print the release, the commit, and the log protocols and snapshot formats this build reads and writes, and exit")
	fs.BoolVar(&m.Bootstrap, "bootstrap", false, "start a new cluster with this node as its first member (implied when --join is not given)")
	join := fs.String("join", "", "comma-separated API addresses of members to join through")
	fs.StringVar(&m.AdminToken, "admin-token", getenv("RATION_ADMIN_TOKEN"), "token required on owner, insight and cluster calls (env RATION_ADMIN_TOKEN)")
	fs.BoolVar(&m.Insecure, "insecure", false, "serve a non-loopback address without an admin token (anyone who reaches it can administer the cluster)")
	fs.BoolVar(&m.Pprof, "pprof", false, "serve Go's profiler at /debug/pprof/ (admin token required when one is set)")
	fs.StringVar(&m.LogFormat, "log-format", m.LogFormat, "log format: text or json")
	fs.StringVar(&m.LogLevel, "log-level", m.LogLevel, "log level: trace, debug, info, warn, error")
	fs.DurationVar(&m.JoinTimeout, "join-timeout", m.JoinTimeout, "how long to keep trying to join")
	fs.DurationVar(&m.ElectionTimeout, "election-timeout", 0, "Raft heartbeat and election timeout (default 1s); lower on fast local networks")
	fs.DurationVar(&m.TickInterval, "tick-interval", 0, "how often the leader checks for expired leases and idle workers (default 1s)")
	fs.DurationVar(&m.FailoverGrace, "failover-grace", 0, "how long a new leader waits before expiring leases (default 15s; at least the election timeout)")
	dial := fs.String("raft-dial", "", "comma-separated ID=HOST:PORT: dial these members' Raft at these addresses instead of their own (proxies, tests)")
	m.addTLSFlags(fs)
	m.addLimitFlags(fs)
	m.addBoundFlags(fs)
	m.addClockFlags(fs)
	m.addBackupFlags(fs)
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return errHelp
		}
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("unexpected arguments: %v", fs.Args())
	}
	if *showVersion {
		fmt.Fprint(m.Stdout, version.Get())
		return errHelp
	}
	var err error
	if m.RaftDial, err = parseRaftDial(*dial); err != nil {
		return err
	}
	for _, a := range strings.Split(*join, ",") {
		if a = strings.TrimSpace(a); a != "" {
			m.Join = append(m.Join, a)
		}
	}
	if err := m.checkAdvertiseFlags(); err != nil {
		return err
	}
	if m.Bootstrap && len(m.Join) > 0 {
		return errors.New("--bootstrap and --join exclude each other: bootstrap the first node, join the others")
	}
	if err := errors.Join(m.checkTLSFlags(), m.checkLimitFlags(), m.checkClockFlags(), m.checkBoundFlags(), m.checkBackupFlags(fs)); err != nil {
		return err
	}
	if m.LogFormat != "text" && m.LogFormat != "json" {
		return fmt.Errorf("--log-format %q: want text or json", m.LogFormat)
	}
	if hclog.LevelFromString(m.LogLevel) == hclog.NoLevel {
		return fmt.Errorf("--log-level %q: want trace, debug, info, warn or error", m.LogLevel)
	}
	if m.AdminToken == "" && !m.Insecure && !loopback(m.HTTPAddr) {
		return fmt.Errorf("refusing to serve %s without an admin token: set --admin-token (or RATION_ADMIN_TOKEN), or pass --insecure to accept that anyone who reaches it can administer the cluster", m.HTTPAddr)
	}
	return nil
}

// checkAdvertiseFlags refuses an address other nodes could not reach: an
// advertised one must name a host, and one listening on every interface
// needs an advertised one.
func (m *Main) checkAdvertiseFlags() error {
	if m.AdvertiseHTTP != "" {
		if err := cluster.CheckAdvertiseAddr(m.AdvertiseHTTP); err != nil {
			return fmt.Errorf("--advertise-http %w", err)
		}
	} else if unspecified(m.HTTPAddr) {
		return fmt.Errorf("--http-addr %s listens on every interface: give --advertise-http, the API address other nodes forward to", m.HTTPAddr)
	}
	if m.AdvertiseRaft != "" {
		if err := cluster.CheckAdvertiseAddr(m.AdvertiseRaft); err != nil {
			return fmt.Errorf("--advertise-raft %w", err)
		}
	} else if unspecified(m.RaftAddr) {
		return fmt.Errorf("--raft-addr %s listens on every interface: give --advertise-raft, the address other nodes reach this one at", m.RaftAddr)
	}
	return nil
}

// unspecified reports whether addr's host is empty, 0.0.0.0 or ::.
func unspecified(addr string) bool {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return false
	}
	ip := net.ParseIP(host)
	return host == "" || ip != nil && ip.IsUnspecified()
}

// loopback reports whether addr listens on loopback only.
func loopback(addr string) bool {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return false
	}
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// Run starts the node and its API and returns once both are up (and the
// node has joined, when asked to). Close stops them.
func (m *Main) Run(ctx context.Context) error {
	m.log = hclog.New(&hclog.LoggerOptions{Name: "rationd", Level: hclog.LevelFromString(m.LogLevel),
		JSONFormat: m.LogFormat == "json", Output: m.Stderr})
	if m.AdminToken == "" && !loopback(m.HTTPAddr) {
		m.log.Warn("INSECURE: serving a non-loopback address without an admin token; anyone who reaches it can administer the cluster", "http-addr", m.HTTPAddr)
	}
	tl, err := m.loadTLS()
	if err != nil {
		return err
	}
	m.tls = tl
	if m.backups, err = m.newBackups(); err != nil {
		return err
	}
	ln, err := net.Listen("tcp", m.HTTPAddr)
	if err != nil {
		return fmt.Errorf("listen on %s: %w", m.HTTPAddr, err)
	}
	m.ln = ln
	advertise := m.AdvertiseHTTP
	if advertise == "" {
		advertise = ln.Addr().String()
	}
	// The port answers at once (startingHandler) while the node starts.
	starting := newStartingHandler(m.NodeID)
	m.serve(ln, starting, tl)
	cfg := m.clusterConfig(advertise, tl)
	existing := hasState(m.DataDir)
	// Raft reports through a process-wide metrics sink: install it before
	// Raft starts, so the first election is counted too.
	if _, err := server.InstallRaftMetrics(); err != nil {
		m.log.Warn("raft metrics unavailable", "error", err)
	}
	node, err := cluster.New(cfg)
	if err != nil {
		m.Close()
		return err
	}
	m.node = node
	scfg := server.Config{AdminToken: m.AdminToken, Logger: m.log, Pprof: m.Pprof,
		PeerClient: tl.peerClient, PeerScheme: tl.peerScheme, Limits: &m.Limits, LeaderWait: 3 * cfg.ElectionTimeout}
	if m.backups != nil {
		scfg.Collectors = append(scfg.Collectors, m.backups.Collector())
		m.backups.Start(node)
	}
	m.srv = server.New(node, scfg)
	starting.serve(m.srv.Handler())
	m.log.Info("serving", "node-id", m.NodeID, "api-address", ln.Addr().String(), "raft-address", node.RaftAddr(),
		"data-dir", m.DataDir, "existing-state", existing, "admin-token", m.AdminToken != "",
		"cluster-id", node.ClusterID(), "tls", tl.api != nil, "peer-tls", tl.peer != nil)
	if len(m.Join) > 0 {
		if err := m.join(ctx, advertise); err != nil {
			m.Close()
			return err
		}
	}
	return nil
}

// serve serves h on ln, over TLS when the API has it.
func (m *Main) serve(ln net.Listener, h http.Handler, tl *tlsSetup) {
	m.http = &http.Server{Handler: h2c.NewHandler(h, &http2.Server{IdleTimeout: 2 * time.Minute}),
		ReadHeaderTimeout: 10 * time.Second, IdleTimeout: 2 * time.Minute, TLSConfig: tl.api,
		ErrorLog: m.log.Named("http").StandardLogger(&hclog.StandardLoggerOptions{ForceLevel: hclog.Warn})}
	m.done = make(chan error, 1)
	if tl.api != nil {
		go func() { m.done <- m.http.ServeTLS(ln, "", "") }()
	} else {
		go func() { m.done <- m.http.Serve(ln) }()
	}
}

// clusterConfig is the node's configuration from the flags.
func (m *Main) clusterConfig(advertise string, tl *tlsSetup) cluster.Config {
	cfg := cluster.DefaultConfig()
	cfg.NodeID, cfg.RaftAddr, cfg.AdvertiseRaft, cfg.APIAddr, cfg.DataDir = m.NodeID, m.RaftAddr, m.AdvertiseRaft, advertise, m.DataDir
	cfg.Bootstrap = len(m.Join) == 0
	cfg.Logger = m.log
	cfg.PeerDialAddrs = m.RaftDial
	cfg.PeerTLS = tl.peer
	m.Bounds.apply(&cfg)
	if m.ElectionTimeout > 0 {
		cfg.HeartbeatTimeout, cfg.ElectionTimeout, cfg.LeaderLeaseTimeout = m.ElectionTimeout, m.ElectionTimeout, m.ElectionTimeout/2
	}
	if m.TickInterval > 0 {
		cfg.TickInterval = m.TickInterval
	}
	if m.FailoverGrace > 0 {
		cfg.FailoverGrace = m.FailoverGrace
	}
	cfg.MaxClockOffset = m.Clock.MaxClockOffset
	if m.Clock.TestClockFile != "" {
		m.log.Warn("TESTS ONLY: this node's wall clock is moved by the offset in a file", "file", m.Clock.TestClockFile)
		m.testClock = startTestClock(m.Clock.TestClockFile)
		cfg.Now = m.testClock.Now
	}
	return cfg
}

func hasState(dir string) bool {
	_, err := os.Stat(filepath.Join(dir, "raft.db"))
	return err == nil
}

// join asks the members named by --join, in turn, to add this node, until
// one accepts (a member forwards to the leader) or JoinTimeout passes.
// Joining is idempotent, so a restarted node may join again.
func (m *Main) join(ctx context.Context, advertise string) error {
	ctx, cancel := context.WithTimeout(ctx, m.JoinTimeout)
	defer cancel()
	own := cluster.OwnVersion()
	req := &rationv1.JoinRequest{NodeId: m.NodeID, RaftAddress: m.node.RaftAddr(), ApiAddress: advertise,
		Release: own.Release, MaxProtocol: own.MaxProtocol}
	backoff := 100 * time.Millisecond
	for {
		var last error
		for _, addr := range m.Join {
			c := rationv1connect.NewClusterServiceClient(m.tls.peerClient, m.tls.peerScheme+"://"+addr)
			r := connect.NewRequest(req)
			if m.AdminToken != "" {
				r.Header().Set("Authorization", "Bearer "+m.AdminToken)
			}
			if _, err := c.Join(ctx, r); err != nil {
				last = fmt.Errorf("join through %s: %w", addr, err)
				m.log.Warn("join failed; will retry", "member", addr, "error", err)
				continue
			}
			m.log.Info("joined the cluster", "through", addr)
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("could not join within %s: %w", m.JoinTimeout, last)
		case <-time.After(backoff):
		}
		backoff = min(2*backoff, 2*time.Second)
	}
}

// Addr is the address the API listens on.
func (m *Main) Addr() string { return m.ln.Addr().String() }

// Node is the running cluster node.
func (m *Main) Node() *cluster.Node { return m.node }

// Close stops the API gracefully, then the node.
func (m *Main) Close() error {
	var errs []error
	if m.backups != nil {
		m.backups.Close()
		m.backups = nil
	}
	if m.node != nil {
		// A leader that stops hands over first, so the cluster does not
		// wait an election timeout to find it gone.
		if err := m.node.HandOver(); err != nil {
			m.log.Warn("could not hand leadership over before stopping", "error", err)
		}
	}
	if m.http != nil {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		errs = append(errs, m.http.Shutdown(ctx))
		cancel()
		if err := <-m.done; err != nil && !errors.Is(err, http.ErrServerClosed) {
			errs = append(errs, err)
		}
		m.http = nil
	}
	if m.srv != nil {
		m.srv.Close()
		m.srv = nil
	}
	if m.node != nil {
		errs = append(errs, m.node.Close())
		m.node = nil
	}
	if m.tls != nil {
		m.tls.peerClient.CloseIdleConnections()
	}
	if m.testClock != nil {
		m.testClock.close()
		m.testClock = nil
	}
	return errors.Join(errs...)
}
