package fsm

import (
	"fmt"

	rationv1 "github.com/rationhq/ration/api/ration/v1"
	"github.com/rationhq/ration/fsm/kind"
)

// checkCreateService runs createService's refusals (Precheck runs them
// too) and returns the kind and the config with defaults.
func (x *txn) checkCreateService(op *rationv1.CreateServiceRequest) (kind.Kind, Config, error) {
	if err := checkServiceName(op.GetName()); err != nil {
		return nil, Config{}, err
	}
	k, ok := kind.Lookup(op.GetKind())
	if !ok {
		return nil, Config{}, fmt.Errorf("kind %q (known: %v): %w", op.GetKind(), kind.Names(), ErrUnknownKind)
	}
	cfg, err := configFromProto(k, x.gateConfig(op.GetConfig()))
	if err != nil {
		return nil, Config{}, err
	}
	if _, ok := x.t.serviceByName(op.GetName()); ok {
		return nil, Config{}, fmt.Errorf("service %q: %w", op.GetName(), ErrServiceExists)
	}
	if _, err := x.newOwnerTokenHash(false); err != nil {
		return nil, Config{}, err
	}
	return k, cfg, nil
}

func (x *txn) createService(op *rationv1.CreateServiceRequest) (*rationv1.CreateServiceResponse, error) {
	k, cfg, err := x.checkCreateService(op)
	if err != nil {
		return nil, err
	}
	hash, err := x.newOwnerTokenHash(false)
	if err != nil {
		return nil, err
	}
	s := &Service{
		Ordinal:        x.t.meta.nextService,
		Name:           op.GetName(),
		Kind:           k.Name(),
		Config:         cfg,
		State:          serviceActive,
		CreatedAt:      x.now,
		UpdatedAt:      x.now,
		OwnerTokenHash: hash,
	}
	x.t.meta.nextService++
	x.t.putService(s)
	x.record(&Activity{Action: ActCreateService, Service: s.Name, Message: "kind " + s.Kind})
	return &rationv1.CreateServiceResponse{Config: cfg.Proto()}, nil
}

// service finds a service by name for an operation.
func (x *txn) service(name string) (*Service, error) {
	s, ok := x.t.serviceByName(name)
	if !ok {
		if err := checkServiceName(name); err != nil {
			return nil, err
		}
		return nil, fmt.Errorf("service %q: %w", name, ErrServiceNotFound)
	}
	return x.peekSvc(s.Ordinal), nil
}

// activeService finds a service that accepts work.
func (x *txn) activeService(name string) (*Service, error) {
	s, err := x.service(name)
	if err != nil {
		return nil, err
	}
	if !s.Active() {
		return nil, fmt.Errorf("service %q is revoked (%s): %w", name, s.Reason, ErrServiceRevoked)
	}
	return s, nil
}

// checkUpdateService runs updateService's refusals (Precheck runs them
// too) and returns the service and its new config.
func (x *txn) checkUpdateService(op *rationv1.UpdateServiceRequest) (*Service, Config, error) {
	s, err := x.service(op.GetName())
	if err != nil {
		return nil, Config{}, err
	}
	k, ok := kind.Lookup(s.Kind)
	if !ok {
		panic(fmt.Sprintf("fsm: service %q has unregistered kind %q", s.Name, s.Kind))
	}
	cfg, err := configFromProto(k, x.gateConfig(op.GetConfig()))
	if err != nil {
		return nil, Config{}, err
	}
	return s, cfg, nil
}

func (x *txn) updateService(op *rationv1.UpdateServiceRequest) (*rationv1.UpdateServiceResponse, error) {
	s, cfg, err := x.checkUpdateService(op)
	if err != nil {
		return nil, err
	}
	old := s.Config
	if cfg.PriorityAging != old.PriorityAging {
		// The ready index orders by a score that depends on the aging step.
		var ids []uint64
		x.t.ready.Ascend(readyKey{service: s.Ordinal, score: 1<<63 - 1}, func(k readyKey) bool {
			if k.service != s.Ordinal {
				return false
			}
			ids = append(ids, k.id)
			return true
		})
		for _, id := range ids {
			b, _ := x.t.bucket(id)
			x.t.ready.Delete(readyKeyOf(b, int64(old.PriorityAging)))
			x.t.ready.Set(readyKeyOf(b, int64(cfg.PriorityAging)))
		}
	}
	ms := x.svc(s.Ordinal)
	ms.Config = cfg
	ms.UpdatedAt = x.now
	if cfg.WorkerInactiveAfter != old.WorkerInactiveAfter {
		// Registrations' idle deadlines move with the setting; flush re-keys them.
		x.t.regs.Ascend(&Registration{Service: s.Ordinal}, func(r *Registration) bool {
			if r.Service != s.Ordinal {
				return false
			}
			if r.Active() {
				x.reg(r.Service, r.Worker)
			}
			return true
		})
	}
	x.record(&Activity{Action: ActUpdateService, Service: s.Name})
	return &rationv1.UpdateServiceResponse{Config: cfg.Proto()}, nil
}

// checkRevokeService runs revokeService's refusals (Precheck runs them too).
func (x *txn) checkRevokeService(op *rationv1.RevokeServiceRequest) (*Service, error) {
	s, err := x.service(op.GetName())
	if err != nil {
		return nil, err
	}
	if err := checkText("reason", op.GetReason()); err != nil {
		return nil, err
	}
	return s, nil
}

func (x *txn) revokeService(op *rationv1.RevokeServiceRequest) (*rationv1.RevokeServiceResponse, error) {
	s, err := x.checkRevokeService(op)
	if err != nil {
		return nil, err
	}
	if !s.Active() {
		// Already revoked: nothing to do, and saying so is not an error.
		x.record(&Activity{Action: ActRevokeService, Service: s.Name, Message: "already revoked"})
		return &rationv1.RevokeServiceResponse{}, nil
	}
	ms := x.svc(s.Ordinal)
	ms.State = serviceRevoked
	ms.Reason = op.GetReason()
	ms.UpdatedAt = x.now
	n := x.endLeases(s.Ordinal, "")
	x.record(&Activity{Action: ActRevokeService, Service: s.Name, Count: uint64(n), Message: op.GetReason()})
	return &rationv1.RevokeServiceResponse{LeasesEnded: uint32(n)}, nil
}

func (x *txn) reinstateService(op *rationv1.ReinstateServiceRequest) (*rationv1.ReinstateServiceResponse, error) {
	s, err := x.service(op.GetName())
	if err != nil {
		return nil, err
	}
	if !s.Active() {
		ms := x.svc(s.Ordinal)
		ms.State = serviceActive
		ms.Reason = ""
		ms.UpdatedAt = x.now
	}
	x.record(&Activity{Action: ActReinstateService, Service: s.Name})
	return &rationv1.ReinstateServiceResponse{}, nil
}

// validateCreateService runs CreateService's checks that need no state.
func validateCreateService(r *rationv1.CreateServiceRequest) error {
	if err := checkServiceName(r.GetName()); err != nil {
		return err
	}
	k, ok := kind.Lookup(r.GetKind())
	if !ok {
		return fmt.Errorf("kind %q (known: %v): %w", r.GetKind(), kind.Names(), ErrUnknownKind)
	}
	_, err := configFromProto(k, r.GetConfig())
	return err
}

// validateUpdateService runs UpdateService's checks that need no state: the
// limits of every setting, before the service's kind is known.
func validateUpdateService(r *rationv1.UpdateServiceRequest) error {
	if err := checkServiceName(r.GetName()); err != nil {
		return err
	}
	_, err := configFromProto(anyKind{}, r.GetConfig())
	return err
}

func validateRevokeService(r *rationv1.RevokeServiceRequest) error {
	return firstErr(checkServiceName(r.GetName()), checkText("reason", r.GetReason()))
}

func validateReinstateService(r *rationv1.ReinstateServiceRequest) error {
	return checkServiceName(r.GetName())
}
