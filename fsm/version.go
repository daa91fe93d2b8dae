package fsm

import (
	"fmt"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/emptypb"

	statev1 "github.com/rationhq/ration/api/ration/state/v1"
	rationv1 "github.com/rationhq/ration/api/ration/v1"
)

// The log protocol is what a build's state machine applies. Protocol 1 is
// the log of every release before versions existed; protocol 2 adds
// validation (ServiceConfig.validation, AddCanaries) and SetClusterVersion.
// The cluster version is the protocol every member applies: the leader
// raises it, through the log, once every member supports the next one, and
// never lowers it. A feature that needs a higher version is refused at the
// API's edge until then (RequiredVersion), so no member ever meets an
// entry it cannot apply: etcd's cluster-version rule.
const (
	// MinProtocol and MaxProtocol bound the protocols this build applies.
	MinProtocol = 1
	MaxProtocol = 2
	// ValidationProtocol is the protocol validation needs.
	ValidationProtocol = 2
)

// ClusterVersion returns the cluster version: the protocol every member
// applies.
func (s *State) ClusterVersion() uint32 { return s.t.clusterVersion() }

// clusterVersion is the cluster version; meta keeps 0 for 1.
func (t *tables) clusterVersion() uint32 { return max(t.meta.clusterVersion, 1) }

// RequiredVersion returns the cluster version a request needs and the
// feature that needs it; 1 for what every protocol has.
func RequiredVersion(req proto.Message) (uint32, string) {
	switch r := req.(type) {
	case *rationv1.AddCanariesRequest:
		return ValidationProtocol, "AddCanaries"
	case *rationv1.CreateServiceRequest:
		if r.GetConfig().GetValidation() != nil {
			return ValidationProtocol, "config.validation"
		}
	case *rationv1.UpdateServiceRequest:
		if r.GetConfig().GetValidation() != nil {
			return ValidationProtocol, "config.validation"
		}
	}
	return 1, ""
}

// CheckVersion refuses a request that needs a cluster version above v
// (CLUSTER_VERSION), saying what it needs and why it is not there yet.
func CheckVersion(v uint32, req proto.Message) error {
	need, feature := RequiredVersion(req)
	if need <= v {
		return nil
	}
	return fmt.Errorf("%s needs cluster version %d; the cluster runs %d until every member runs a build that applies protocol %d "+
		"(ClusterService.Status shows each member's): %w", feature, need, v, need, ErrClusterVersion)
}

// checkSetClusterVersion runs setClusterVersion's refusals.
func checkSetClusterVersion(op *statev1.SetClusterVersion) error {
	if op.GetVersion() < 1 {
		return fmt.Errorf("version is 0: %w", ErrInvalidArgument)
	}
	return nil
}

// setClusterVersion raises the cluster version. A version this build cannot
// apply stops the node, as an unknown operation does: it must not go on
// applying a log it does not understand.
func (x *txn) setClusterVersion(op *statev1.SetClusterVersion) (*emptypb.Empty, error) {
	if err := checkSetClusterVersion(op); err != nil {
		return nil, err
	}
	v := op.GetVersion()
	if v > MaxProtocol {
		panic(fmt.Sprintf("fsm: the cluster version is now %d, and this build applies protocols %d to %d: "+
			"run a build that applies protocol %d on this node", v, MinProtocol, MaxProtocol, v))
	}
	old := x.t.clusterVersion()
	if v <= old {
		return nil, nil
	}
	x.t.meta.clusterVersion = v
	x.record(&Activity{Action: ActSetClusterVersion, Actor: "system", Message: fmt.Sprintf("cluster version %d -> %d", old, v)})
	return nil, nil
}

// gateConfig drops what a service config holds beyond the cluster version,
// as a member of that version, which does not know it, would: a command an
// older leader proposed applies alike on every member. The API's edge
// refuses such a config before it reaches the log (CheckVersion).
func (x *txn) gateConfig(c *rationv1.ServiceConfig) *rationv1.ServiceConfig {
	if c.GetValidation() == nil || x.t.clusterVersion() >= ValidationProtocol {
		return c
	}
	c = proto.CloneOf(c)
	c.Validation = nil
	return c
}
