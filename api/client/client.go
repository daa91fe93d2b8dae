// Package client is a Go client for ration. It talks to several nodes,
// moving to the next when one is down or has no leader, retries writes with
// the same request id (so a retried write takes effect once), backs off
// with jitter, waits as told when rate limited, and offers a worker loop
// (Worker) that registers, acquires, heartbeats while processing, submits,
// and releases on error.
package client

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	mrand "math/rand/v2"
	"net"
	"net/http"
	"strings"
	"sync/atomic"
	"time"

	"connectrpc.com/connect"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"

	"github.com/rationhq/ration/api/ration/v1/rationv1connect"
)

// Config configures a Client.
type Config struct {
	// Addrs are the nodes' API addresses (host:port, or URLs with a scheme).
	Addrs []string
	// AdminToken is sent on owner, insight and cluster calls.
	AdminToken string
	// WorkerSecret is sent on worker calls.
	WorkerSecret string
	// HTTPClient carries the calls; nil uses a client with keep-alives.
	HTTPClient *http.Client
	// CallTimeout bounds one attempt of a unary call on one node (default
	// 10s; negative: no bound). Streams are bounded by their context only.
	CallTimeout time.Duration
	// RetryFor bounds how long a call keeps retrying while no node can
	// serve it (default 30s; negative: try each node once, no backoff and
	// no waiting out rate limits). The caller's context bounds it too.
	RetryFor time.Duration
	// Options are added to every Connect client (e.g. connect.WithGRPC()).
	Options []connect.ClientOption
}

// Client calls a ration cluster. It is safe for concurrent use.
type Client struct {
	cfg   Config
	nodes []*node
	pref  atomic.Int32 // the node that answered last
}

type node struct {
	addr    string
	owner   rationv1connect.OwnerServiceClient
	worker  rationv1connect.WorkerServiceClient
	insight rationv1connect.InsightServiceClient
	cluster rationv1connect.ClusterServiceClient
}

// New returns a client for the nodes in cfg.Addrs.
func New(cfg Config) (*Client, error) {
	if len(cfg.Addrs) == 0 {
		return nil, errors.New("client: no node addresses")
	}
	if cfg.HTTPClient == nil {
		cfg.HTTPClient = &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 64, IdleConnTimeout: time.Minute}}
	}
	if cfg.CallTimeout == 0 {
		cfg.CallTimeout = 10 * time.Second
	}
	if cfg.RetryFor == 0 {
		cfg.RetryFor = 30 * time.Second
	}
	c := &Client{cfg: cfg}
	admin := append(append([]connect.ClientOption{}, cfg.Options...), connect.WithInterceptors(bearer(cfg.AdminToken)))
	worker := append(append([]connect.ClientOption{}, cfg.Options...), connect.WithInterceptors(bearer(cfg.WorkerSecret)))
	for _, a := range cfg.Addrs {
		base := a
		if !strings.Contains(a, "://") {
			base = "http://" + a
		}
		c.nodes = append(c.nodes, &node{
			addr:    a,
			owner:   rationv1connect.NewOwnerServiceClient(cfg.HTTPClient, base, admin...),
			worker:  rationv1connect.NewWorkerServiceClient(cfg.HTTPClient, base, worker...),
			insight: rationv1connect.NewInsightServiceClient(cfg.HTTPClient, base, admin...),
			cluster: rationv1connect.NewClusterServiceClient(cfg.HTTPClient, base, admin...),
		})
	}
	return c, nil
}

// Retryable reports whether a call that failed with err may succeed on
// another try: no node could serve it (no leader, node down, connection
// lost). A write that fails this way may or may not have been applied;
// retrying it with the same request id is safe.
func Retryable(err error) bool {
	switch connect.CodeOf(err) {
	case connect.CodeUnavailable, connect.CodeDeadlineExceeded, connect.CodeUnknown, connect.CodeAborted:
		return true
	}
	return false
}

// call runs one unary RPC with failover and retries. For writes, the
// request gets a request id first (if it has none), so every retry is the
// same request.
func call[Req, Res any](ctx context.Context, c *Client, req *Req, write bool,
	rpc func(*node) rpcFunc[Req, Res]) (*Res, error) {
	if write {
		ensureRequestID(any(req).(proto.Message))
	}
	var out *Res
	err := c.do(ctx, func(ctx context.Context, n *node) (err error) {
		out, err = once(ctx, c, n, req, rpc)
		return err
	})
	return out, err
}

// attemptKey carries a shorter bound for each attempt of a call than
// CallTimeout (withAttemptTimeout).
type attemptKey struct{}

// withAttemptTimeout bounds each attempt of the calls made with ctx by d,
// when that is shorter than CallTimeout: a node that does not answer within
// d is left for the next.
func withAttemptTimeout(ctx context.Context, d time.Duration) context.Context {
	return context.WithValue(ctx, attemptKey{}, d)
}

// once makes one attempt of a unary RPC on node n, within CallTimeout (or
// the shorter bound of withAttemptTimeout).
func once[Req, Res any](ctx context.Context, c *Client, n *node, req *Req, rpc func(*node) rpcFunc[Req, Res]) (*Res, error) {
	limit := c.cfg.CallTimeout
	if d, ok := ctx.Value(attemptKey{}).(time.Duration); ok && d > 0 && (limit <= 0 || d < limit) {
		limit = d
	}
	if limit > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, limit)
		defer cancel()
	}
	res, err := rpc(n)(ctx, connect.NewRequest(req))
	if err != nil {
		return nil, err
	}
	return res.Msg, nil
}

// unreached reports whether err says the call never left this client: the
// connection to the node could not be made.
func unreached(err error) bool {
	var op *net.OpError
	return errors.As(err, &op) && op.Op == "dial"
}

// stream runs one server-streaming RPC with failover and hands each message
// to each. It moves to another node only while nothing has been received:
// once data has flowed, an error ends the call (a retry would repeat data).
// An error from each ends it too. Streams are not bounded by CallTimeout.
func stream[Req, Res any](ctx context.Context, c *Client, req *Req,
	rpc func(*node) streamFunc[Req, Res], each func(*Res) error) error {
	return c.do(ctx, func(ctx context.Context, n *node) error {
		ctx, cancel := context.WithCancel(ctx)
		s, err := rpc(n)(ctx, connect.NewRequest(req))
		if err != nil {
			cancel()
			return err
		}
		// Cancel first: closing drains the body, which may never end.
		defer func() { cancel(); s.Close() }()
		received := false
		for s.Receive() {
			received = true
			if err := each(s.Msg()); err != nil {
				return final{err}
			}
		}
		if err := s.Err(); err != nil {
			if received {
				return final{err}
			}
			return err
		}
		return nil
	})
}

// final marks an error that ends a call at once, whatever its code.
type final struct{ err error }

func (f final) Error() string { return f.err.Error() }
func (f final) Unwrap() error { return f.err }

// do is the one failover loop: it runs try on the nodes, starting with the
// one that answered last, until try succeeds or fails with an error another
// try would not fix. A rate-limited try waits as told and asks the same
// node again; other retryable failures move on to the next node, and after
// each round of all nodes it backs off with jitter, all within RetryFor.
func (c *Client) do(ctx context.Context, try func(context.Context, *node) error) error {
	give := time.Now().Add(c.cfg.RetryFor)
	backoff := 25 * time.Millisecond
	start := int(c.pref.Load())
	var last error
	for attempt := 0; ; attempt++ {
		i := (start + attempt) % len(c.nodes)
		err := try(ctx, c.nodes[i])
		if err == nil {
			c.pref.Store(int32(i))
			return nil
		}
		if f, ok := errors.AsType[final](err); ok {
			return f.err
		}
		last = err
		if wait, ok := RetryAfter(err); ok && ctx.Err() == nil {
			// Rate limited: wait as told, then ask the same node again
			// (moving on would only dodge its limit), within RetryFor.
			if time.Now().Add(wait).After(give) {
				return err
			}
			select {
			case <-ctx.Done():
				return err
			case <-time.After(wait + mrand.N(wait/8+time.Millisecond)):
			}
			start += len(c.nodes) - 1 // the next attempt is node i again
			continue
		}
		if ctx.Err() != nil || !Retryable(err) {
			return err
		}
		// Try each node once at full speed, then back off between rounds.
		if (attempt+1)%len(c.nodes) != 0 {
			continue
		}
		if time.Now().Add(backoff).After(give) {
			if c.cfg.RetryFor < 0 {
				return last
			}
			return fmt.Errorf("gave up after %s: %w", c.cfg.RetryFor, last)
		}
		select {
		case <-ctx.Done():
			return last
		case <-time.After(backoff + mrand.N(backoff)):
		}
		backoff = min(2*backoff, time.Second)
	}
}

// ensureRequestID gives a write request a random request id if it has none.
func ensureRequestID(m proto.Message) {
	r := m.ProtoReflect()
	f := r.Descriptor().Fields().ByName("request_id")
	if f == nil || r.Get(f).String() != "" {
		return
	}
	r.Set(f, protoreflect.ValueOfString(NewRequestID()))
}

// NewRequestID returns a random request id.
func NewRequestID() string {
	b := make([]byte, 16)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// Bearer is an interceptor that sends token as "Authorization: Bearer
// <token>" on every call, unary or streaming; an empty token sends nothing.
func Bearer(token string) connect.Interceptor { return bearer(token) }

type bearer string

func (b bearer) WrapUnary(next connect.UnaryFunc) connect.UnaryFunc {
	return func(ctx context.Context, req connect.AnyRequest) (connect.AnyResponse, error) {
		if b != "" {
			req.Header().Set("Authorization", "Bearer "+string(b))
		}
		return next(ctx, req)
	}
}

func (b bearer) WrapStreamingClient(next connect.StreamingClientFunc) connect.StreamingClientFunc {
	return func(ctx context.Context, spec connect.Spec) connect.StreamingClientConn {
		conn := next(ctx, spec)
		if b != "" {
			conn.RequestHeader().Set("Authorization", "Bearer "+string(b))
		}
		return conn
	}
}

func (b bearer) WrapStreamingHandler(next connect.StreamingHandlerFunc) connect.StreamingHandlerFunc {
	return next
}

type rpcFunc[Req, Res any] func(context.Context, *connect.Request[Req]) (*connect.Response[Res], error)

type streamFunc[Req, Res any] func(context.Context, *connect.Request[Req]) (*connect.ServerStreamForClient[Res], error)
