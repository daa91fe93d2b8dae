package fsm

import (
	"crypto/subtle"
	"fmt"

	rationv1 "github.com/rationhq/ration/api/ration/v1"
)

// authenticate checks that credential is the hash bound to worker id.
func (x *txn) authenticate(id string, credential []byte) (*Worker, error) {
	if err := checkID("worker_id", id); err != nil {
		return nil, err
	}
	if len(credential) == 0 {
		return nil, fmt.Errorf("worker %q: %w", id, ErrNoCredential)
	}
	w, ok := x.t.worker(id)
	if !ok {
		return nil, fmt.Errorf("worker %q has never registered: %w", id, ErrWorkerNotFound)
	}
	if subtle.ConstantTimeCompare(w.SecretHash, credential) != 1 {
		return nil, fmt.Errorf("worker %q: %w", id, ErrBadCredential)
	}
	return w, nil
}

// activeWorker checks that worker may work for s: authenticated, registered
// and active. It returns the registration, ready to change.
func (x *txn) activeWorker(s *Service, id string, credential []byte) (*Registration, error) {
	if _, err := x.authenticate(id, credential); err != nil {
		return nil, err
	}
	r := x.reg(s.Ordinal, id)
	if r == nil {
		return nil, fmt.Errorf("worker %q in service %q: %w", id, s.Name, ErrNotRegistered)
	}
	if !r.Active() {
		if r.Blocked {
			return nil, fmt.Errorf("worker %q in service %q (%s): %w", id, s.Name, r.Reason, ErrWorkerDeactivated)
		}
		return nil, fmt.Errorf("worker %q in service %q is %s; register again: %w", id, s.Name, r.Reason, ErrWorkerInactive)
	}
	return r, nil
}

// registered finds a worker's registration for a service, ready to change.
func (x *txn) registered(service, worker string) (*Service, *Registration, error) {
	s, err := x.service(service)
	if err != nil {
		return nil, nil, err
	}
	if err := checkID("worker_id", worker); err != nil {
		return nil, nil, err
	}
	r := x.reg(s.Ordinal, worker)
	if r == nil {
		return nil, nil, fmt.Errorf("worker %q in service %q: %w", worker, s.Name, ErrNotRegistered)
	}
	return s, r, nil
}

// checkRegister runs register's refusals (Precheck runs them too). It
// returns the service, whether the worker id is bound already, and the
// registration if there is one.
func (x *txn) checkRegister(op *rationv1.RegisterRequest) (*Service, bool, *Registration, error) {
	id := op.GetWorkerId()
	if err := checkID("worker_id", id); err != nil {
		return nil, false, nil, err
	}
	if err := checkText("name", op.GetName()); err != nil {
		return nil, false, nil, err
	}
	cred := x.hdr.GetCredential()
	if len(cred) != SecretHashLength {
		return nil, false, nil, fmt.Errorf("worker %q: %w", id, ErrNoCredential)
	}
	s, err := x.activeService(op.GetService())
	if err != nil {
		return nil, false, nil, err
	}
	w, known := x.t.worker(id)
	if known && subtle.ConstantTimeCompare(w.SecretHash, cred) != 1 {
		return nil, false, nil, fmt.Errorf("worker %q is bound to another secret: %w", id, ErrBadCredential)
	}
	r := x.reg(s.Ordinal, id)
	if r != nil && r.Blocked {
		return nil, false, nil, fmt.Errorf("worker %q in service %q (%s): %w", id, s.Name, r.Reason, ErrWorkerDeactivated)
	}
	return s, known, r, nil
}

func (x *txn) register(op *rationv1.RegisterRequest) (*rationv1.RegisterResponse, error) {
	s, known, r, err := x.checkRegister(op)
	if err != nil {
		return nil, err
	}
	id, cred := op.GetWorkerId(), x.hdr.GetCredential()
	if !known {
		x.t.workers.Set(&Worker{ID: id, SecretHash: append([]byte(nil), cred...), CreatedAt: x.now})
	}
	changed := false
	switch {
	case r == nil:
		r = &Registration{Service: s.Ordinal, Worker: id, Name: op.GetName(), State: workerActive,
			RegisteredAt: x.now, ChangedAt: x.now}
		x.newReg(r)
		changed = true
	case !r.Active():
		r.State, r.Reason, r.ChangedAt = workerActive, "", x.now
		changed = true
	}
	r.LastSeen = x.now
	msg := "unchanged"
	if changed {
		msg = "active"
	}
	x.record(&Activity{Action: ActRegister, Service: s.Name, Worker: id, Actor: id, Message: msg})
	return &rationv1.RegisterResponse{Changed: changed}, nil
}

// checkUnregister runs unregister's refusals (Precheck runs them too).
func (x *txn) checkUnregister(op *rationv1.UnregisterRequest) (*Service, *Registration, error) {
	s, err := x.service(op.GetService())
	if err != nil {
		return nil, nil, err
	}
	id := op.GetWorkerId()
	if _, err := x.authenticate(id, x.hdr.GetCredential()); err != nil {
		return nil, nil, err
	}
	r := x.reg(s.Ordinal, id)
	if r == nil {
		return nil, nil, fmt.Errorf("worker %q in service %q: %w", id, s.Name, ErrNotRegistered)
	}
	return s, r, nil
}

func (x *txn) unregister(op *rationv1.UnregisterRequest) (*rationv1.UnregisterResponse, error) {
	s, r, err := x.checkUnregister(op)
	if err != nil {
		return nil, err
	}
	id := r.Worker
	n := 0
	if r.Active() {
		r.State, r.Reason, r.ChangedAt = workerInactive, "unregistered", x.now
		n = x.endLeases(s.Ordinal, id)
	}
	x.record(&Activity{Action: ActUnregister, Service: s.Name, Worker: id, Actor: id, Count: uint64(n)})
	return &rationv1.UnregisterResponse{LeasesEnded: uint32(n)}, nil
}

// checkDeactivate runs deactivateWorker's refusals (Precheck runs them too).
func (x *txn) checkDeactivate(op *rationv1.DeactivateWorkerRequest) (*Service, *Registration, error) {
	if err := checkText("reason", op.GetReason()); err != nil {
		return nil, nil, err
	}
	return x.registered(op.GetService(), op.GetWorkerId())
}

func (x *txn) deactivateWorker(op *rationv1.DeactivateWorkerRequest) (*rationv1.DeactivateWorkerResponse, error) {
	s, r, err := x.checkDeactivate(op)
	if err != nil {
		return nil, err
	}
	id := r.Worker
	reason := "deactivated by owner"
	if op.GetReason() != "" {
		reason += ": " + op.GetReason()
	}
	r.State, r.Reason, r.Blocked, r.ChangedAt = workerInactive, reason, true, x.now
	n := x.endLeases(s.Ordinal, id)
	x.record(&Activity{Action: ActDeactivate, Service: s.Name, Worker: id, Count: uint64(n), Message: op.GetReason()})
	return &rationv1.DeactivateWorkerResponse{LeasesEnded: uint32(n)}, nil
}

func (x *txn) reactivateWorker(op *rationv1.ReactivateWorkerRequest) (*rationv1.ReactivateWorkerResponse, error) {
	s, r, err := x.registered(op.GetService(), op.GetWorkerId())
	if err != nil {
		return nil, err
	}
	id := r.Worker
	if !r.Active() {
		r.State, r.Reason, r.Blocked, r.ChangedAt = workerActive, "", false, x.now
		r.LastSeen = x.now
	}
	x.record(&Activity{Action: ActReactivate, Service: s.Name, Worker: id})
	return &rationv1.ReactivateWorkerResponse{}, nil
}

func validateRegister(r *rationv1.RegisterRequest) error {
	return firstErr(checkServiceName(r.GetService()), checkID("worker_id", r.GetWorkerId()), checkText("name", r.GetName()))
}

func validateUnregister(r *rationv1.UnregisterRequest) error {
	return firstErr(checkServiceName(r.GetService()), checkID("worker_id", r.GetWorkerId()))
}

func validateDeactivateWorker(r *rationv1.DeactivateWorkerRequest) error {
	return firstErr(checkServiceName(r.GetService()), checkID("worker_id", r.GetWorkerId()), checkText("reason", r.GetReason()))
}

func validateReactivateWorker(r *rationv1.ReactivateWorkerRequest) error {
	return firstErr(checkServiceName(r.GetService()), checkID("worker_id", r.GetWorkerId()))
}
