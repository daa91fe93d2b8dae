package server

import (
	"context"
	"crypto/subtle"
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
	// AdminToken, when set, is required (Authorization: Bearer) on admin
	// calls; owner calls take it or the service's owner token (see roles).
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
}

// Server implements the ration.v1 services on top of a Store.
type Server struct {
	store Store
	cfg   Config
	log   hclog.Logger

	mu    sync.Mutex
	peers map[string]*peer
	// refused counts this node's edge refusals (see precheck).
	refused refusals

	limits *limiter
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
	return &Server{store: store, cfg: cfg, log: cfg.Logger.Named("server"), peers: map[string]*peer{},
		limits: newLimiter(store, cfg.Limits)}
}

// Handler returns the HTTP handler serving every service over Connect,
// gRPC and gRPC-Web, with health checks and reflection, over HTTP/1.1 and
// cleartext HTTP/2.
func (s *Server) Handler() http.Handler {
	// Compressing the small messages of the worker loop costs more CPU than
	// it saves on loopback and LANs; large ones (exports, lists) still are.
	opts := connect.WithHandlerOptions(connect.WithInterceptors(&authInterceptor{s: s}), connect.WithCompressMinBytes(CompressMinBytes),
		connect.WithCodec(protoCodec{}), s.limitOptions())
	mux := http.NewServeMux()
	mux.Handle(rationv1connect.NewOwnerServiceHandler(&ownerHandler{s}, opts))
	mux.Handle(rationv1connect.NewWorkerServiceHandler(&workerHandler{s}, opts))
	mux.Handle(rationv1connect.NewInsightServiceHandler(&insightHandler{s}, opts))
	mux.Handle(rationv1connect.NewClusterServiceHandler(&clusterHandler{s}, opts,
		connect.WithReadMaxBytes(MaxRestoreBytes)))
	mux.Handle(peerv1connect.NewPeerServiceHandler(&peerHandler{s}, opts))
	names := []string{rationv1connect.OwnerServiceName, rationv1connect.WorkerServiceName,
		rationv1connect.InsightServiceName, rationv1connect.ClusterServiceName}
	mux.Handle(grpchealth.NewHandler(grpchealth.NewStaticChecker(names...), connect.WithReadMaxBytes(MaxRequestBytes)))
	mux.Handle(grpcreflect.NewHandlerV1(grpcreflect.NewStaticReflector(names...), connect.WithReadMaxBytes(MaxRequestBytes)))
	mux.Handle(grpcreflect.NewHandlerV1Alpha(grpcreflect.NewStaticReflector(names...), connect.WithReadMaxBytes(MaxRequestBytes)))
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
	roleOwner              // the admin token, or the owner token of the service the request names
	roleWorker             // a worker's secret
	rolePublic             // anyone
)

func (r role) String() string {
	switch r {
	case roleOwner:
		return "owner"
	case roleWorker:
		return "worker"
	case rolePublic:
		return "public"
	}
	return "admin"
}

// roles is the one table of who may call what, by full procedure name; a
// procedure missing from it is admin-only. Tests check that every RPC has an
// entry, and that the protos' comments and README's table say the same.
var roles = map[string]role{
	rationv1connect.OwnerServiceCreateServiceProcedure:    roleAdmin,
	rationv1connect.OwnerServiceUpdateServiceProcedure:    roleOwner,
	rationv1connect.OwnerServiceGetServiceProcedure:       roleOwner,
	rationv1connect.OwnerServiceListServicesProcedure:     roleAdmin,
	rationv1connect.OwnerServiceRevokeServiceProcedure:    roleOwner,
	rationv1connect.OwnerServiceReinstateServiceProcedure: roleOwner,
	rationv1connect.OwnerServiceAddItemsProcedure:         roleOwner,
	rationv1connect.OwnerServiceListItemsProcedure:        roleOwner,
	rationv1connect.OwnerServiceDeactivateWorkerProcedure: roleOwner,
	rationv1connect.OwnerServiceReactivateWorkerProcedure: roleOwner,
	rationv1connect.OwnerServiceRevertWorkerProcedure:     roleOwner,
	rationv1connect.OwnerServiceExportResultsProcedure:    roleOwner,
	rationv1connect.OwnerServiceRotateOwnerTokenProcedure: roleOwner,

	rationv1connect.WorkerServiceRegisterProcedure:      roleWorker,
	rationv1connect.WorkerServiceUnregisterProcedure:    roleWorker,
	rationv1connect.WorkerServiceCheckServiceProcedure:  rolePublic,
	rationv1connect.WorkerServiceAcquireProcedure:       roleWorker,
	rationv1connect.WorkerServiceHeartbeatProcedure:     roleWorker,
	rationv1connect.WorkerServiceSubmitProcedure:        roleWorker,
	rationv1connect.WorkerServiceReleaseProcedure:       roleWorker,
	rationv1connect.WorkerServiceListMyBucketsProcedure: roleWorker,

	// An owner token must name its service; without one these span all.
	rationv1connect.InsightServiceGetStatsProcedure:      roleOwner,
	rationv1connect.InsightServiceListWorkersProcedure:   roleOwner,
	rationv1connect.InsightServiceListBucketsProcedure:   roleOwner,
	rationv1connect.InsightServiceListActivityProcedure:  roleOwner,
	rationv1connect.InsightServiceExplainProcedure:       roleOwner,
	rationv1connect.InsightServiceWatchActivityProcedure: roleOwner,

	rationv1connect.ClusterServiceStatusProcedure:             roleAdmin,
	rationv1connect.ClusterServiceJoinProcedure:               roleAdmin,
	rationv1connect.ClusterServiceRemoveProcedure:             roleAdmin,
	rationv1connect.ClusterServiceTransferLeadershipProcedure: roleAdmin,
	rationv1connect.ClusterServiceSaveSnapshotProcedure:       roleAdmin,
	rationv1connect.ClusterServiceRestoreProcedure:            roleAdmin,

	peerv1connect.PeerServiceReadIndexProcedure: roleAdmin,
}

func roleOf(procedure string) role {
	if r, ok := roles[procedure]; ok {
		return r
	}
	return roleAdmin
}

type credentialKey struct{}

// credential returns the hash of the worker secret the call presented.
func credential(ctx context.Context) []byte {
	c, _ := ctx.Value(credentialKey{}).([]byte)
	return c
}

// authInterceptor enforces the roles table. Owner calls are checked against
// the service their request names, so unary calls are checked with their
// request and streams when the handler receives it.
type authInterceptor struct{ s *Server }

func authError(code connect.Code, reason, node, format string, args ...any) error {
	return withDetail(connect.NewError(code, fmt.Errorf(format, args...)), reason, node)
}

// authenticate checks the call's credential against procedure's role and
// returns ctx carrying what a write stamps into its command's header. msg is
// the request, needed by owner calls only.
func (a *authInterceptor) authenticate(ctx context.Context, procedure string, h http.Header, msg any) (context.Context, error) {
	s, node := a.s, a.s.store.ID()
	token, _ := strings.CutPrefix(h.Get("Authorization"), "Bearer ")
	r := roleOf(procedure)
	switch r {
	case rolePublic:
		return ctx, nil
	case roleWorker:
		if token == "" {
			return ctx, authError(connect.CodeUnauthenticated, "NO_CREDENTIAL", node, "worker calls need the worker's secret: Authorization: Bearer <secret>")
		}
		if len(token) < MinSecretLength || len(token) > MaxSecretLength {
			return ctx, authError(connect.CodeUnauthenticated, "BAD_CREDENTIAL", node, "worker secret is %d bytes, want %d to %d", len(token), MinSecretLength, MaxSecretLength)
		}
		if s.isAdminToken(token) || looksLikeOwnerToken(token) {
			return ctx, authError(connect.CodePermissionDenied, "WRONG_ROLE", node, "worker calls take the worker's own secret, never the admin token or an owner token")
		}
		return context.WithValue(ctx, credentialKey{}, hashToken(token)), nil
	}
	if s.cfg.AdminToken == "" {
		return ctx, nil // a loopback development node: no credentials
	}
	if token == "" {
		if r == roleOwner {
			return ctx, authError(connect.CodeUnauthenticated, "NO_CREDENTIAL", node, "this call needs the admin token or the service's owner token: Authorization: Bearer <token>")
		}
		return ctx, authError(connect.CodeUnauthenticated, "NO_CREDENTIAL", node, "this call needs the admin token: Authorization: Bearer <token>")
	}
	if s.isAdminToken(token) {
		return ctx, nil
	}
	if r == roleOwner {
		hash, err := s.authorizeOwner(ctx, token, msg)
		if err != nil {
			return ctx, err
		}
		return context.WithValue(ctx, ownerCredentialKey{}, hash), nil
	}
	if _, ok := ownerOf(s.store.State(), hashToken(token)); ok {
		return ctx, authError(connect.CodePermissionDenied, "ADMIN_ONLY", node, "this call needs the admin token; an owner token does not reach it")
	}
	return ctx, authError(connect.CodeUnauthenticated, "BAD_CREDENTIAL", node, "wrong admin token")
}

func (a *authInterceptor) WrapUnary(next connect.UnaryFunc) connect.UnaryFunc {
	return func(ctx context.Context, req connect.AnyRequest) (connect.AnyResponse, error) {
		if req.Spec().IsClient {
			return next(ctx, req)
		}
		ctx, err := a.authenticate(ctx, req.Spec().Procedure, req.Header(), req.Any())
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
		procedure := conn.Spec().Procedure
		if roleOf(procedure) == roleOwner {
			// The service is in the request: check when the handler has it.
			return next(ctx, &ownerStream{StreamingHandlerConn: conn, s: a.s, check: func(msg any) (context.Context, error) {
				return a.authenticate(ctx, procedure, conn.RequestHeader(), msg)
			}})
		}
		ctx, err := a.authenticate(ctx, procedure, conn.RequestHeader(), nil)
		if err != nil {
			return err
		}
		return next(ctx, conn)
	}
}
