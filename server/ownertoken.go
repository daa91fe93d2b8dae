package server

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"fmt"
	"strings"

	"connectrpc.com/connect"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"

	statev1 "github.com/rationhq/ration/api/ration/state/v1"
	rationv1 "github.com/rationhq/ration/api/ration/v1"
	"github.com/rationhq/ration/fsm"
)

// OwnerTokenPrefix starts every owner token, so that one pasted in the wrong
// place is recognizable; worker calls refuse secrets that start with it.
const OwnerTokenPrefix = "rot_"

// OwnerTokenBytes is the entropy of an owner token: random bytes from
// crypto/rand, written after the prefix in unpadded base64url.
const OwnerTokenBytes = 32

// ownerTokenLen is the length of every owner token.
var ownerTokenLen = len(OwnerTokenPrefix) + base64.RawURLEncoding.EncodedLen(OwnerTokenBytes)

// ownerToken is an owner token the leader made for a CreateService or
// RotateOwnerToken command. Only its hash enters the log, and the token is
// shown only if the state machine stored that hash.
type ownerToken struct {
	token string
	hash  []byte
}

// newOwnerToken returns a fresh owner token and its SHA-256.
func newOwnerToken() *ownerToken {
	b := make([]byte, OwnerTokenBytes)
	_, _ = rand.Read(b) // never fails since Go 1.24
	t := &ownerToken{token: OwnerTokenPrefix + base64.RawURLEncoding.EncodeToString(b)}
	t.hash = hashToken(t.token)
	return t
}

func hashToken(token string) []byte {
	sum := sha256.Sum256([]byte(token))
	return sum[:]
}

// looksLikeOwnerToken reports whether s has the shape of an owner token.
func looksLikeOwnerToken(s string) bool {
	return len(s) == ownerTokenLen && strings.HasPrefix(s, OwnerTokenPrefix)
}

// reveal returns the token if res shows that its command stored this
// token's hash, and "" if res replays an earlier command with the same
// request id (whose token this node never knew).
func (t *ownerToken) reveal(res *statev1.CommandResult) string {
	if subtle.ConstantTimeCompare(res.GetOwnerTokenHash(), t.hash) != 1 {
		return ""
	}
	return t.token
}

// withOwnerToken returns a copy of a reply with its owner_token field set
// (CreateServiceResponse, RotateOwnerTokenResponse).
func withOwnerToken(reply proto.Message, token string) proto.Message {
	out := proto.Clone(reply)
	m := out.ProtoReflect()
	f := m.Descriptor().Fields().ByName("owner_token")
	if f == nil {
		panic(fmt.Sprintf("server: %s has no owner_token field", m.Descriptor().FullName()))
	}
	m.Set(f, protoreflect.ValueOfString(token))
	return out
}

// scopeOf returns the service an owner call's request names: its service
// field, or else its name field.
func scopeOf(msg any) string {
	m, ok := msg.(proto.Message)
	if !ok {
		return ""
	}
	r := m.ProtoReflect()
	for _, n := range []protoreflect.Name{"service", "name"} {
		if f := r.Descriptor().Fields().ByName(n); f != nil && f.Kind() == protoreflect.StringKind && !f.IsList() {
			return r.Get(f).String()
		}
	}
	return ""
}

// linearizableRead reports whether msg is a read at LINEARIZABLE
// consistency (the default of reads that take one).
func linearizableRead(msg any) bool {
	m, ok := msg.(proto.Message)
	if !ok {
		return false
	}
	r := m.ProtoReflect()
	f := r.Descriptor().Fields().ByName("consistency")
	if f == nil || f.Kind() != protoreflect.EnumKind {
		return false
	}
	return rationv1.Consistency(r.Get(f).Enum()) != rationv1.Consistency_CONSISTENCY_STALE
}

// ownerOf returns the service whose owner token has hash.
func ownerOf(st *fsm.State, hash []byte) (string, bool) {
	for _, svc := range st.Services() {
		if svc.OwnerTokenMatches(hash) {
			return svc.Name, true
		}
	}
	return "", false
}

// authorizeOwner checks that token is the owner token of the service msg
// names and returns its hash.
//
// A linearizable read checks it at a linearizable state, so a rotated-away
// token is refused by every node from the moment RotateOwnerToken answers.
// Other calls check this node's state: writes are checked again by the
// state machine at their index (exact), and stale reads and WatchActivity
// accept what the node has applied. A token of the owner-token shape that
// the node does not know is looked up again once the node has caught up
// with the leader: it may have been made a moment ago through another node.
func (s *Server) authorizeOwner(ctx context.Context, token string, msg any) ([]byte, error) {
	service := scopeOf(msg)
	hash := hashToken(token)
	st, caughtUp := s.store.State(), false
	if linearizableRead(msg) {
		var err error
		if st, _, err = s.read(ctx, rationv1.Consistency_CONSISTENCY_LINEARIZABLE); err != nil {
			return nil, err
		}
		caughtUp = true
	}
	if svc, ok := st.Service(service); ok && svc.OwnerTokenMatches(hash) {
		return hash, nil
	}
	// The token is not this service's: whose is it, if anyone's?
	_, ok := ownerOf(st, hash)
	if !ok && !caughtUp && looksLikeOwnerToken(token) {
		var err error
		if st, _, err = s.read(ctx, rationv1.Consistency_CONSISTENCY_LINEARIZABLE); err != nil {
			return nil, err
		}
		if svc, found := st.Service(service); found && svc.OwnerTokenMatches(hash) {
			return hash, nil
		}
		_, ok = ownerOf(st, hash)
	}
	switch {
	case !ok:
		return nil, s.errorf(connect.CodeUnauthenticated, "BAD_CREDENTIAL", "the token is neither the admin token nor a current owner token")
	case service == "":
		return nil, s.errorf(connect.CodePermissionDenied, "WRONG_SERVICE", "an owner token reaches its own service only: name it in the request's service field")
	}
	return nil, s.errorf(connect.CodePermissionDenied, "WRONG_SERVICE", "the owner token is not service %q's", service)
}

// ownerStream runs the owner check of a streaming call on the first request
// message the handler receives, and ends the stream once the token is no
// longer the service's (rotated while the stream was open).
type ownerStream struct {
	connect.StreamingHandlerConn
	s       *Server
	check   func(msg any) (context.Context, error)
	checked bool
	err     error
	service string
	hash    []byte // nil when called with the admin token, or none is needed
}

func (c *ownerStream) Receive(msg any) error {
	if c.err != nil {
		return c.err
	}
	if err := c.StreamingHandlerConn.Receive(msg); err != nil {
		return err
	}
	if !c.checked {
		c.checked = true
		var ctx context.Context
		if ctx, c.err = c.check(msg); c.err == nil {
			c.service, c.hash = scopeOf(msg), callerOf(ctx).ownerToken
		}
	}
	return c.err
}

func (c *ownerStream) Send(msg any) error {
	if !c.checked {
		return c.s.errorf(connect.CodeInternal, "INTERNAL", "stream sent before its request was checked")
	}
	if c.hash != nil {
		if svc, ok := c.s.store.State().Service(c.service); !ok || !svc.OwnerTokenMatches(c.hash) {
			return c.s.errorf(connect.CodeUnauthenticated, "BAD_CREDENTIAL", "the owner token was rotated")
		}
	}
	return c.StreamingHandlerConn.Send(msg)
}
