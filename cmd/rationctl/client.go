package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	mrand "math/rand/v2"
	"net"
	"net/http"
	"strings"
	"syscall"
	"time"

	"connectrpc.com/connect"

	"github.com/rationhq/ration/api/client"
	"github.com/rationhq/ration/api/ration/v1/rationv1connect"
)

// newHTTPClient returns the client every call goes through. The TLS flags
// set its Transport.TLSClientConfig (tls.go); an address given as
// https://host:port works with the system roots and no flag.
func newHTTPClient() *http.Client {
	t := http.DefaultTransport.(*http.Transport).Clone()
	return &http.Client{Transport: t}
}

// baseURL turns an --addr entry into a base URL. Plain host:port means
// HTTP; an entry that already has a scheme is used as is.
func baseURL(addr string) string {
	if strings.Contains(addr, "://") {
		return strings.TrimSuffix(addr, "/")
	}
	return "http://" + addr
}

// bearer sets "Authorization: Bearer <secret>" on every call; an empty
// secret sends no header.
func bearer(secret string) connect.Interceptor { return client.Bearer(secret) }

// Client constructors, one per service, for one node address. The worker
// client carries the worker secret, the others the admin token.

func (a *app) owner(addr string) rationv1connect.OwnerServiceClient {
	return rationv1connect.NewOwnerServiceClient(a.httpClient, baseURL(addr), connect.WithInterceptors(bearer(a.token)))
}

func (a *app) worker(addr string) rationv1connect.WorkerServiceClient {
	return rationv1connect.NewWorkerServiceClient(a.httpClient, baseURL(addr), connect.WithInterceptors(bearer(a.workerSecret)))
}

func (a *app) insight(addr string) rationv1connect.InsightServiceClient {
	return rationv1connect.NewInsightServiceClient(a.httpClient, baseURL(addr), connect.WithInterceptors(bearer(a.token)))
}

func (a *app) cluster(addr string) rationv1connect.ClusterServiceClient {
	return rationv1connect.NewClusterServiceClient(a.httpClient, baseURL(addr), connect.WithInterceptors(bearer(a.token)))
}

// permanent marks an error that must not move the call to the next address,
// e.g. a stream that failed after it had delivered data.
type permanent struct{ err error }

func (p permanent) Error() string { return p.err.Error() }
func (p permanent) Unwrap() error { return p.err }

// failover runs attempt against each address in order until one succeeds or
// fails with an error that another node would not fix. It returns the last
// error.
// When every address fails that way, it tries them all again, with backoff,
// for --retry-for: a cluster electing a leader answers within a few seconds.
func (a *app) failover(ctx context.Context, attempt func(ctx context.Context, addr string) error) error {
	var last error
	give := time.Now().Add(a.retryFor)
	backoff := 50 * time.Millisecond
	for {
		for _, addr := range a.addrs {
			err := attempt(ctx, addr)
			if err == nil {
				return nil
			}
			if p, ok := errors.AsType[permanent](err); ok {
				return p.err
			}
			last = err
			if ctx.Err() != nil || !retryable(err) {
				return err
			}
		}
		if time.Now().Add(backoff).After(give) {
			return last
		}
		select {
		case <-ctx.Done():
			return last
		case <-time.After(backoff + mrand.N(backoff/2)):
		}
		backoff = min(2*backoff, time.Second)
	}
}

// retryable reports whether another node may succeed where this one failed:
// the node is unreachable, or it answered Unavailable (no leader, shutting
// down, outcome unknown after a lost leadership: writes carry a request id,
// so repeating them is safe).
func retryable(err error) bool {
	if connect.CodeOf(err) == connect.CodeUnavailable {
		return true
	}
	if _, ok := errors.AsType[*net.OpError](err); ok {
		return true
	}
	return errors.Is(err, syscall.ECONNREFUSED) || errors.Is(err, syscall.ECONNRESET)
}

// withTimeout bounds one unary attempt by --timeout.
func (a *app) withTimeout(ctx context.Context) (context.Context, context.CancelFunc) {
	if a.timeout <= 0 {
		return context.WithCancel(ctx)
	}
	return context.WithTimeout(ctx, a.timeout)
}

// call runs one unary RPC with failover. newClient builds the service's
// client for an address; method is the RPC as a method expression, e.g.
// rationv1connect.OwnerServiceClient.CreateService.
func call[C, Req, Res any](
	ctx context.Context,
	a *app,
	newClient func(addr string) C,
	method func(C, context.Context, *connect.Request[Req]) (*connect.Response[Res], error),
	req *Req,
) (*Res, error) {
	var out *Res
	err := a.failover(ctx, func(ctx context.Context, addr string) error {
		ctx, cancel := a.withTimeout(ctx)
		defer cancel()
		resp, err := method(newClient(addr), ctx, connect.NewRequest(req))
		if err != nil {
			return err
		}
		out = resp.Msg
		return nil
	})
	return out, err
}

// stream runs one server-streaming RPC with failover and hands each message
// to each. The call moves to the next address only while nothing has been
// received; once data has flowed, an error ends the command. A non-nil error
// from each ends it too. Streams are bounded by ctx only, not by --timeout.
func stream[C, Req, Res any](
	ctx context.Context,
	a *app,
	newClient func(addr string) C,
	method func(C, context.Context, *connect.Request[Req]) (*connect.ServerStreamForClient[Res], error),
	req *Req,
	each func(*Res) error,
) error {
	return a.failover(ctx, func(ctx context.Context, addr string) error {
		ctx, cancel := context.WithCancel(ctx)
		defer cancel()
		s, err := method(newClient(addr), ctx, connect.NewRequest(req))
		if err != nil {
			return err
		}
		defer s.Close()
		received := false
		for s.Receive() {
			received = true
			if err := each(s.Msg()); err != nil {
				return permanent{err}
			}
		}
		if err := s.Err(); err != nil {
			if received {
				return permanent{err}
			}
			return err
		}
		return nil
	})
}

// newRequestID returns a random request id: 16 bytes from crypto/rand, hex.
func newRequestID() string {
	b := make([]byte, 16)
	_, _ = rand.Read(b) // never fails since Go 1.24
	return hex.EncodeToString(b)
}

// requestID returns the --request-id given, or a fresh random one, so that a
// write that fails over to another node takes effect at most once.
func requestID(flag string) string {
	if flag != "" {
		return flag
	}
	return newRequestID()
}
