package server

import (
	"context"
	"crypto/subtle"
	"errors"
	"net/http"
	"strings"

	"connectrpc.com/connect"

	statev1 "github.com/rationhq/ration/api/ration/state/v1"
)

// Worker secrets are between these lengths, in bytes.
const (
	MinSecretLength = 16
	MaxSecretLength = 1024
)

// caller is who a call comes from, as the auth interceptor found it: what a
// write stamps into its command's header, and the state machine checks
// again at the command's index.
type caller struct {
	// workerSecret is the SHA-256 of the worker secret a worker call
	// presented.
	workerSecret []byte
	// ownerToken is the SHA-256 of the owner token an owner call presented;
	// nil when it came with the admin token (or none was needed).
	ownerToken []byte
}

type callerKey struct{}

// callerOf returns who the auth interceptor found ctx's call to come from.
func callerOf(ctx context.Context) caller {
	c, _ := ctx.Value(callerKey{}).(caller)
	return c
}

// header returns the header of a command this caller sends: the admin's,
// a worker's (actor workerID, with its secret's hash) or an owner's.
func (c caller) header(requestID, workerID string) *statev1.CommandHeader {
	hdr := &statev1.CommandHeader{RequestId: requestID, Actor: "admin"}
	if c.workerSecret != nil {
		hdr.Credential, hdr.Actor = c.workerSecret, workerID
	}
	if c.ownerToken != nil {
		hdr.OwnerCredential, hdr.Actor = c.ownerToken, "owner"
	}
	return hdr
}

// authInterceptor enforces the procedures' roles. Owner calls are checked
// against the service their request names, so unary calls are checked with
// their request and streams when the handler receives it.
type authInterceptor struct{ s *Server }

// bearer returns the token of an Authorization header as RFC 6750 has it:
// the scheme "Bearer" in any case, a space, the token. No header is "";
// another scheme, or no token, is an error (which never repeats the
// header: it may hold a secret).
func bearer(h http.Header) (string, error) {
	v := strings.TrimSpace(h.Get("Authorization"))
	if v == "" {
		return "", nil
	}
	scheme, token, _ := strings.Cut(v, " ")
	if !strings.EqualFold(scheme, "Bearer") {
		return "", errors.New(`the Authorization header does not use the Bearer scheme: send "Authorization: Bearer <token>"`)
	}
	if token = strings.TrimSpace(token); token == "" {
		return "", errors.New(`the Authorization header has no token after "Bearer": send "Authorization: Bearer <token>"`)
	}
	return token, nil
}

// authenticate checks the call's credential against procedure's role and
// returns ctx carrying the caller. msg is the request, needed by owner
// calls only.
func (a *authInterceptor) authenticate(ctx context.Context, procedure string, h http.Header, msg any) (context.Context, error) {
	s := a.s
	r := procedureOf(procedure).role
	if r == rolePublic {
		return ctx, nil
	}
	token, err := bearer(h)
	if err != nil {
		return ctx, s.errorf(connect.CodeUnauthenticated, "BAD_CREDENTIAL", "%v", err)
	}
	switch r {
	case roleWorker:
		if token == "" {
			return ctx, s.errorf(connect.CodeUnauthenticated, "NO_CREDENTIAL", "worker calls need the worker's secret: Authorization: Bearer <secret>")
		}
		if len(token) < MinSecretLength || len(token) > MaxSecretLength {
			return ctx, s.errorf(connect.CodeUnauthenticated, "BAD_CREDENTIAL", "worker secret is %d bytes, want %d to %d", len(token), MinSecretLength, MaxSecretLength)
		}
		if s.isAdminToken(token) || looksLikeOwnerToken(token) {
			return ctx, s.errorf(connect.CodePermissionDenied, "WRONG_ROLE", "worker calls take the worker's own secret, never the admin token or an owner token")
		}
		return context.WithValue(ctx, callerKey{}, caller{workerSecret: hashToken(token)}), nil
	}
	if s.cfg.AdminToken == "" {
		return ctx, nil // a loopback development node: no credentials
	}
	if token == "" {
		if r == roleOwner {
			return ctx, s.errorf(connect.CodeUnauthenticated, "NO_CREDENTIAL", "this call needs the admin token or the service's owner token: Authorization: Bearer <token>")
		}
		return ctx, s.errorf(connect.CodeUnauthenticated, "NO_CREDENTIAL", "this call needs the admin token: Authorization: Bearer <token>")
	}
	if s.isAdminToken(token) {
		return ctx, nil
	}
	if r == roleOwner {
		hash, err := s.authorizeOwner(ctx, token, msg)
		if err != nil {
			return ctx, err
		}
		return context.WithValue(ctx, callerKey{}, caller{ownerToken: hash}), nil
	}
	if _, ok := ownerOf(s.store.State(), hashToken(token)); ok {
		return ctx, s.errorf(connect.CodePermissionDenied, "ADMIN_ONLY", "this call needs the admin token; an owner token does not reach it")
	}
	return ctx, s.errorf(connect.CodeUnauthenticated, "BAD_CREDENTIAL", "wrong admin token")
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
		if procedureOf(procedure).role == roleOwner {
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

// adminOnly requires the admin token, when one is set, on a plain HTTP handler.
func (s *Server) adminOnly(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if token, err := bearer(r.Header); s.cfg.AdminToken != "" && (err != nil || !s.isAdminToken(token)) {
			http.Error(w, "admin token required", http.StatusUnauthorized)
			return
		}
		h.ServeHTTP(w, r)
	})
}

// isAdminToken reports, in constant time, whether token is the admin token.
func (s *Server) isAdminToken(token string) bool {
	return s.cfg.AdminToken != "" && subtle.ConstantTimeCompare([]byte(token), []byte(s.cfg.AdminToken)) == 1
}
