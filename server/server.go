package server

import (
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"errors"
	"fmt"
	"io"

	"net/http"
	"net/http/pprof"
	"strings"
	"sync"
	"time"

	"connectrpc.com/connect"
	"connectrpc.com/grpchealth"
	"connectrpc.com/grpcreflect"
	"github.com/hashicorp/go-hclog"
	"golang.org/x/net/http2"
	"golang.org/x/net/http2/h2c"

	"github.com/rationhq/ration/api/ration/peer/v1/peerv1connect"
	rationv1 "github.com/rationhq/ration/api/ration/v1"
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
	Apply(ctx context.Context, cmd *rationv1.Command) (*rationv1.CommandResult, error)
	Heartbeat(ctx context.Context, e *rationv1.HeartbeatEntry) (*rationv1.CommandResult, error)
	State() *fsm.State
	Changed() <-chan struct{}
	ReadIndex(ctx context.Context) (uint64, error)
	WaitApplied(ctx context.Context, index uint64) (*fsm.State, error)
	LeaderContactAge() time.Duration
	Join(ctx context.Context, id, raftAddr, apiAddr string) error
	Remove(ctx context.Context, id string) (bool, error)
	TransferLeadership(ctx context.Context, id string) (string, error)
	Status() cluster.Status
	Restore(r io.Reader, size int64) (uint64, error)
}

var _ Store = (*cluster.Node)(nil)

// Config configures a Server.
type Config struct {
	// AdminToken, when set, is required (Authorization: Bearer) on owner,
	// insight, cluster and peer calls.
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
}

// Server implements the ration.v1 services on top of a Store.
type Server struct {
	store Store
	cfg   Config
	log   hclog.Logger

	mu    sync.Mutex
	peers map[string]*peer
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
	return &Server{store: store, cfg: cfg, log: cfg.Logger.Named("server"), peers: map[string]*peer{}}
}

// Handler returns the HTTP handler serving every service over Connect,
// gRPC and gRPC-Web, with health checks and reflection, over HTTP/1.1 and
// cleartext HTTP/2.
func (s *Server) Handler() http.Handler {
	// Compressing the small messages of the worker loop costs more CPU than
	// it saves on loopback and LANs; large ones (exports, lists) still are.
	opts := connect.WithHandlerOptions(connect.WithInterceptors(&authInterceptor{s: s}), connect.WithCompressMinBytes(CompressMinBytes))
	mux := http.NewServeMux()
	mux.Handle(rationv1connect.NewOwnerServiceHandler(&ownerHandler{s}, opts))
	mux.Handle(rationv1connect.NewWorkerServiceHandler(&workerHandler{s}, opts))
	mux.Handle(rationv1connect.NewInsightServiceHandler(&insightHandler{s}, opts))
	mux.Handle(rationv1connect.NewClusterServiceHandler(&clusterHandler{s}, opts,
		connect.WithReadMaxBytes(MaxRestoreBytes)))
	mux.Handle(peerv1connect.NewPeerServiceHandler(&peerHandler{s}, opts))
	names := []string{rationv1connect.OwnerServiceName, rationv1connect.WorkerServiceName,
		rationv1connect.InsightServiceName, rationv1connect.ClusterServiceName}
	mux.Handle(grpchealth.NewHandler(grpchealth.NewStaticChecker(names...)))
	mux.Handle(grpcreflect.NewHandlerV1(grpcreflect.NewStaticReflector(names...)))
	mux.Handle(grpcreflect.NewHandlerV1Alpha(grpcreflect.NewStaticReflector(names...)))
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
	return h2c.NewHandler(mux, &http2.Server{IdleTimeout: 2 * time.Minute})
}

// adminOnly requires the admin token, when one is set, on a plain HTTP handler.
func (s *Server) adminOnly(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		token, _ := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
		if s.cfg.AdminToken != "" && subtle.ConstantTimeCompare([]byte(token), []byte(s.cfg.AdminToken)) != 1 {
			http.Error(w, "admin token required", http.StatusUnauthorized)
			return
		}
		h.ServeHTTP(w, r)
	})
}

// CompressMinBytes is the smallest response the server compresses.
const CompressMinBytes = 64 << 10

// MaxRestoreBytes bounds a snapshot sent to Restore.
const MaxRestoreBytes = 1 << 30

// Worker secrets are between these lengths, in bytes.
const (
	MinSecretLength = 16
	MaxSecretLength = 1024
)

// role says who may call a procedure.
type role int

const (
	roleAdmin  role = iota // the admin token, when one is configured
	roleWorker             // a worker's secret
	rolePublic             // anyone
)

// roles is the one table of who may call what: by service, with
// per-procedure exceptions first.
var roles = []struct {
	prefix string
	role   role
}{
	{rationv1connect.WorkerServiceCheckServiceProcedure, rolePublic},
	{"/" + rationv1connect.WorkerServiceName + "/", roleWorker},
	{"/" + rationv1connect.OwnerServiceName + "/", roleAdmin},
	{"/" + rationv1connect.InsightServiceName + "/", roleAdmin},
	{"/" + rationv1connect.ClusterServiceName + "/", roleAdmin},
	{"/" + peerv1connect.PeerServiceName + "/", roleAdmin},
}

func roleOf(procedure string) role {
	for _, r := range roles {
		if strings.HasPrefix(procedure, r.prefix) {
			return r.role
		}
	}
	return roleAdmin
}

type credentialKey struct{}

// credential returns the hash of the worker secret the call presented.
func credential(ctx context.Context) []byte {
	c, _ := ctx.Value(credentialKey{}).([]byte)
	return c
}

type authInterceptor struct{ s *Server }

func (a *authInterceptor) authenticate(ctx context.Context, procedure string, h http.Header) (context.Context, error) {
	token, _ := strings.CutPrefix(h.Get("Authorization"), "Bearer ")
	switch roleOf(procedure) {
	case rolePublic:
		return ctx, nil
	case roleWorker:
		if token == "" {
			return ctx, withDetail(connect.NewError(connect.CodeUnauthenticated,
				errors.New("worker calls need the worker's secret: Authorization: Bearer <secret>")), "NO_CREDENTIAL", a.s.store.ID())
		}
		if len(token) < MinSecretLength || len(token) > MaxSecretLength {
			return ctx, withDetail(connect.NewError(connect.CodeUnauthenticated,
				fmt.Errorf("worker secret is %d bytes, want %d to %d", len(token), MinSecretLength, MaxSecretLength)), "BAD_CREDENTIAL", a.s.store.ID())
		}
		sum := sha256.Sum256([]byte(token))
		return context.WithValue(ctx, credentialKey{}, sum[:]), nil
	default:
		want := a.s.cfg.AdminToken
		if want == "" {
			return ctx, nil
		}
		if token == "" {
			return ctx, withDetail(connect.NewError(connect.CodeUnauthenticated,
				errors.New("this call needs the admin token: Authorization: Bearer <token>")), "NO_CREDENTIAL", a.s.store.ID())
		}
		if subtle.ConstantTimeCompare([]byte(token), []byte(want)) != 1 {
			return ctx, withDetail(connect.NewError(connect.CodeUnauthenticated, errors.New("wrong admin token")), "BAD_CREDENTIAL", a.s.store.ID())
		}
		return ctx, nil
	}
}

func (a *authInterceptor) WrapUnary(next connect.UnaryFunc) connect.UnaryFunc {
	return func(ctx context.Context, req connect.AnyRequest) (connect.AnyResponse, error) {
		if req.Spec().IsClient {
			return next(ctx, req)
		}
		ctx, err := a.authenticate(ctx, req.Spec().Procedure, req.Header())
		if err != nil {
			return nil, err
		}
		return next(ctx, req)
	}
}

func (a *authInterceptor) WrapStreamingClient(next connect.StreamingClientFunc) connect.StreamingClientFunc {
	return next
}

func (a *authInterceptor) WrapStreamingHandler(next connect.StreamingHandlerFunc) connect.StreamingHandlerFunc {
	return func(ctx context.Context, conn connect.StreamingHandlerConn) error {
		ctx, err := a.authenticate(ctx, conn.Spec().Procedure, conn.RequestHeader())
		if err != nil {
			return err
		}
		return next(ctx, conn)
	}
}
