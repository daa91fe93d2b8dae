package server

import (
	"context"
	"io"
	"net/http"
	"net/http/pprof"
	"sync"
	"time"

	"connectrpc.com/connect"
	"connectrpc.com/grpchealth"
	"connectrpc.com/grpcreflect"
	"github.com/hashicorp/go-hclog"
	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/net/http2"
	"golang.org/x/net/http2/h2c"

	"github.com/rationhq/ration/api"
	"github.com/rationhq/ration/api/ration/peer/v1/peerv1connect"
	statev1 "github.com/rationhq/ration/api/ration/state/v1"
	"github.com/rationhq/ration/api/ration/v1/rationv1connect"
	"github.com/rationhq/ration/cluster"
	"github.com/rationhq/ration/fsm"
	"github.com/rationhq/ration/server/dashboard"
)

// Store is what the handlers need from a cluster node.
type Store interface {
	ID() string
	IsLeader() bool
	Leader() (id, apiAddr string, err error)
	Apply(ctx context.Context, cmd *statev1.Command) (*statev1.CommandResult, error)
	Heartbeat(ctx context.Context, e *statev1.HeartbeatEntry) (*statev1.CommandResult, error)
	State() *fsm.State
	Changed() <-chan struct{}
	ReadIndex(ctx context.Context) (uint64, error)
	WaitApplied(ctx context.Context, index uint64) (*fsm.State, error)
	LeaderContactAge() time.Duration
	LeaderChanged() <-chan struct{}
	WallClock() time.Time
	ObserveClockOffset(time.Duration)
	ObserveMemberVersion(id string, v cluster.MemberVersion)
	OwnVersion() cluster.MemberVersion
	ClockOffset() cluster.ClockOffset
	ClockProblem() string
	MaxClockOffset() time.Duration
	Join(ctx context.Context, id, raftAddr, apiAddr string) error
	Remove(ctx context.Context, id string) (bool, error)
	TransferLeadership(ctx context.Context, id string) (string, error)
	Status() cluster.Status
	Members() []cluster.Member
	LogSize() cluster.LogSize
	Restore(r io.Reader, size int64) (uint64, error)
}

var _ Store = (*cluster.Node)(nil)

// Config configures a Server.
type Config struct {
	// AdminToken, when set, is required (Authorization: Bearer) on admin
	// calls; owner calls take it or the service's owner token (see the
	// procedures table).
	// Unset, neither kind of call needs a credential.
	AdminToken string
	Logger     hclog.Logger
	// PeerClient carries forwarded writes and read-index requests to the
	// leader; nil uses a default client.
	PeerClient *http.Client
	// PeerScheme is "http" (default) or "https" for reaching other nodes.
	PeerScheme string
	// Pprof serves Go's profiler at /debug/pprof/ (admin token required when
	// one is set).
	Pprof bool
	// ReadyMaxLag is how far (in entries) the applied index may trail the
	// commit index for /readyz to answer 200; 0 means DefaultReadyMaxLag.
	ReadyMaxLag uint64
	// Limits are the per-client rate and stream limits (see Limits); nil
	// means DefaultLimits().
	Limits *Limits
	// StaleStreamAfter ends a following stream (WatchActivity, a followed
	// ExportResults) once this node has not heard from a leader for this
	// long, so its client resumes elsewhere; 0 means
	// DefaultStaleStreamAfter.
	StaleStreamAfter time.Duration
	// LeaderWait is how long a call that needs the leader keeps trying
	// while no leader answers and none is newly known; 0 means
	// DefaultLeaderWait. rationd sets three election timeouts.
	LeaderWait time.Duration
	// CallTimeout bounds a call that needs the leader and has no deadline
	// of its own; 0 means DefaultCallTimeout.
	CallTimeout time.Duration
	// ProbeInterval is how often the node asks the leader for its commit
	// index, for /readyz and the staleness bound of STALE reads; 0 means
	// DefaultProbeInterval.
	ProbeInterval time.Duration
	// Collectors are served on /metrics besides the node's own (rationd's
	// backup metrics).
	Collectors []prometheus.Collector
}

// Server implements the ration.v1 services on top of a Store.
type Server struct {
	store Store
	cfg   Config
	log   hclog.Logger

	peers sync.Map // peerKey -> *connect.Client, for forwarding
	// refused counts this node's edge refusals (see precheck).
	refused refusals

	limits *limiter
	// fresh is what the node last learned of the leader's commit index.
	fresh freshness
	// clocks are the clock offsets measured on read-index calls.
	clocks clocks

	stop      chan struct{}
	closeOnce sync.Once
}

// New returns a server for store.
func New(store Store, cfg Config) *Server {
	if cfg.Logger == nil {
		cfg.Logger = hclog.NewNullLogger()
	}
	if cfg.PeerClient == nil {
		cfg.PeerClient = &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 64, IdleConnTimeout: time.Minute}}
	}
	if cfg.PeerScheme == "" {
		cfg.PeerScheme = "http"
	}
	if cfg.LeaderWait <= 0 {
		cfg.LeaderWait = DefaultLeaderWait
	}
	if cfg.CallTimeout <= 0 {
		cfg.CallTimeout = DefaultCallTimeout
	}
	if cfg.ProbeInterval <= 0 {
		cfg.ProbeInterval = DefaultProbeInterval
	}
	s := &Server{store: store, cfg: cfg, log: cfg.Logger.Named("server"), limits: newLimiter(store, cfg.Limits), stop: make(chan struct{})}
	go s.probeLeader(s.stop)
	return s
}

// Close stops the server's background work (asking the leader for its
// commit index). The handler still answers; close its listener first.
func (s *Server) Close() {
	s.closeOnce.Do(func() { close(s.stop) })
}

// Handler returns the HTTP handler serving every service over Connect,
// gRPC and gRPC-Web, with health checks and reflection, over HTTP/1.1 and
// cleartext HTTP/2.
func (s *Server) Handler() http.Handler {
	// Compressing the small messages of the worker loop costs more CPU than
	// it saves on loopback and LANs; large ones (exports, lists) still are.
	opts := connect.WithHandlerOptions(connect.WithInterceptors(&authInterceptor{s: s}), connect.WithCompressMinBytes(CompressMinBytes),
		connect.WithCodec(protoCodec{}), connect.WithCodec(jsonCodecs[0]), connect.WithCodec(jsonCodecs[1]), s.limitOptions())
	mux := http.NewServeMux()
	mux.Handle(rationv1connect.NewOwnerServiceHandler(&ownerHandler{s}, opts))
	mux.Handle(rationv1connect.NewWorkerServiceHandler(&workerHandler{s}, opts))
	mux.Handle(rationv1connect.NewInsightServiceHandler(&insightHandler{s}, opts))
	mux.Handle(rationv1connect.NewClusterServiceHandler(&clusterHandler{s}, opts,
		connect.WithReadMaxBytes(MaxRestoreBytes)))
	mux.Handle(peerv1connect.NewPeerServiceHandler(&peerHandler{s}, opts))
	checker := &readyChecker{s: s, services: map[string]bool{}}
	for _, n := range publicServices {
		checker.services[n] = true
	}
	mux.Handle(grpchealth.NewHandler(checker, connect.WithReadMaxBytes(MaxRequestBytes)))
	reflector := s.reflector(publicServices)
	mux.Handle(grpcreflect.NewHandlerV1(reflector, connect.WithReadMaxBytes(MaxRequestBytes)))
	mux.Handle(grpcreflect.NewHandlerV1Alpha(reflector, connect.WithReadMaxBytes(MaxRequestBytes)))
	// Monitoring needs no admin token, as in etcd: probes and scrapers
	// carry no credentials, and these reveal counts by service, never item
	// or worker ids or payloads.
	mux.Handle("GET /metrics", s.MetricsHandler())
	mux.HandleFunc("GET /livez", s.livez)
	mux.HandleFunc("GET /readyz", s.readyz)
	mux.Handle("GET /{$}", dashboard.Handler())
	if s.cfg.Pprof {
		mux.Handle("/debug/pprof/", s.adminOnly(http.HandlerFunc(pprof.Index)))
		mux.Handle("/debug/pprof/profile", s.adminOnly(http.HandlerFunc(pprof.Profile)))
		mux.Handle("/debug/pprof/trace", s.adminOnly(http.HandlerFunc(pprof.Trace)))
	}
	return h2c.NewHandler(rpcEdge(mux), &http2.Server{IdleTimeout: 2 * time.Minute})
}

// reflector serves the public services' descriptors with their comments
// (api.PublicFiles), so that grpcurl describe shows the docs; the
// generated Go's descriptors, which have none, only if those cannot load.
func (s *Server) reflector(services []string) *grpcreflect.Reflector {
	var opts []grpcreflect.Option
	if files, err := api.PublicFiles(); err != nil {
		s.log.Warn("reflection serves descriptors without comments", "error", err)
	} else {
		opts = append(opts, grpcreflect.WithDescriptorResolver(files))
	}
	return grpcreflect.NewReflector(grpcreflect.NamerFunc(func() []string { return services }), opts...)
}

// CompressMinBytes is the smallest response the server compresses.
const CompressMinBytes = 64 << 10

// MaxRestoreBytes bounds a snapshot sent to Restore.
const MaxRestoreBytes = 1 << 30
