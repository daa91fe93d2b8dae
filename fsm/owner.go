package fsm

import (
	"bytes"
	"crypto/sha256"
	"crypto/subtle"
	"fmt"

	"google.golang.org/protobuf/proto"

	rationv1 "github.com/rationhq/ration/api/ration/v1"
)

// OwnerTokenHashSize is the length of an owner token hash (SHA-256). The
// state machine stores only hashes: the token is made and shown by the node
// that proposes CreateService or RotateOwnerToken.
const OwnerTokenHashSize = sha256.Size

// ActRotateOwnerToken is the activity action of RotateOwnerToken.
const ActRotateOwnerToken = "rotate-owner-token"

// OwnerTokenMatches reports, in constant time, whether hash is the hash of
// the service's owner token. A service without one matches nothing.
func (s *Service) OwnerTokenMatches(hash []byte) bool {
	return len(s.OwnerTokenHash) == OwnerTokenHashSize && subtle.ConstantTimeCompare(s.OwnerTokenHash, hash) == 1
}

// newOwnerTokenHash returns a copy of the header's new_owner_token_hash.
// Without required, an empty one is allowed (the service gets no token).
func (x *txn) newOwnerTokenHash(required bool) ([]byte, error) {
	h := x.hdr.GetNewOwnerTokenHash()
	if len(h) == 0 && !required {
		return nil, nil
	}
	if len(h) != OwnerTokenHashSize {
		return nil, fmt.Errorf("new_owner_token_hash is %d bytes, want %d: %w", len(h), OwnerTokenHashSize, ErrInvalidArgument)
	}
	return bytes.Clone(h), nil
}

// checkOwner refuses a command whose header carries an owner credential
// that is not the current owner token hash of the service the command
// names. It runs before the request-id lookup, so a token rotated away
// stops working at exactly the rotation's index, retries included.
// Commands without an owner credential (the admin's, workers', the
// leader's) pass: the edge decides who may send them.
func (x *txn) checkOwner(o *operation, req proto.Message) error {
	cred := x.hdr.GetOwnerCredential()
	if len(cred) == 0 {
		return nil
	}
	name := subjectOf(req).service
	if !o.owner {
		return fmt.Errorf("an owner token cannot %s: %w", o.action, ErrBadOwnerToken)
	}
	s, ok := x.t.serviceByName(name)
	if !ok || !x.peekSvc(s.Ordinal).OwnerTokenMatches(cred) {
		return fmt.Errorf("the owner token is not service %q's current one: %w", name, ErrBadOwnerToken)
	}
	return nil
}

// checkRotateOwnerToken runs rotateOwnerToken's refusals (Precheck runs
// them too) and returns the service and the new hash.
func (x *txn) checkRotateOwnerToken(op *rationv1.RotateOwnerTokenRequest) (*Service, []byte, error) {
	s, err := x.service(op.GetName())
	if err != nil {
		return nil, nil, err
	}
	hash, err := x.newOwnerTokenHash(true)
	if err != nil {
		return nil, nil, err
	}
	return s, hash, nil
}

func (x *txn) rotateOwnerToken(op *rationv1.RotateOwnerTokenRequest) (*rationv1.RotateOwnerTokenResponse, error) {
	s, hash, err := x.checkRotateOwnerToken(op)
	if err != nil {
		return nil, err
	}
	x.svc(s.Ordinal).OwnerTokenHash = hash
	x.record(&Activity{Action: ActRotateOwnerToken, Service: s.Name})
	return &rationv1.RotateOwnerTokenResponse{}, nil
}

func validateRotateOwnerToken(r *rationv1.RotateOwnerTokenRequest) error {
	return checkServiceName(r.GetName())
}
