package cluster

import (
	"context"
	"time"

	statev1 "github.com/rationhq/ration/api/ration/state/v1"
	"github.com/rationhq/ration/internal/version"
)

// Members' builds travel on the read-index calls every node makes to the
// leader a few times a second (as clock offsets do): the caller names its
// release and protocol range, and the leader answers with every member's it
// has heard lately. A caller that names none runs a build from before
// versions were published, which applies protocol 1 only. The leader raises
// the cluster version to the lowest protocol every member applies; a member
// not heard from lately counts as protocol 1, so the version never rises
// past a member the leader cannot vouch for. (The Raft hello stays as it
// was: a node of the previous release refuses any other, so a rolling
// upgrade from it could not start.)

// MemberVersion is a member's build as a node heard of it.
type MemberVersion struct {
	Release, Commit          string
	MinProtocol, MaxProtocol uint32
	// At is when it was heard (monotonic).
	At time.Time
}

// versionFresh is how long a member's version counts without news.
const versionFresh = 5 * time.Second

// Legacy is the version of a member whose build does not say: one from
// before versions were published.
func Legacy() MemberVersion { return MemberVersion{MinProtocol: 1, MaxProtocol: 1} }

// OwnVersion is this build's version.
func OwnVersion() MemberVersion {
	v := version.Get()
	return MemberVersion{Release: v.Release, Commit: v.Commit, MinProtocol: v.MinProtocol, MaxProtocol: v.MaxProtocol, At: time.Now()}
}

// OwnVersion is this node's version: its build's, with the protocols it
// says it applies (Config.MaxProtocol).
func (n *Node) OwnVersion() MemberVersion {
	v := OwnVersion()
	if p := n.cfg.MaxProtocol; p > 0 && p < v.MaxProtocol {
		v.MaxProtocol = p
	}
	return v
}

// ObserveMemberVersion records a member's build, as just heard.
func (n *Node) ObserveMemberVersion(id string, v MemberVersion) {
	if id == "" || id == n.cfg.NodeID {
		return
	}
	v.At = time.Now()
	n.versions.Store(id, v)
}

// memberVersion is a member's build, if heard lately; this node's own is
// always known.
func (n *Node) memberVersion(id string) (MemberVersion, bool) {
	if id == n.cfg.NodeID {
		return n.OwnVersion(), true
	}
	v, ok := n.versions.Load(id)
	if !ok || time.Since(v.(MemberVersion).At) > versionFresh {
		return MemberVersion{}, false
	}
	return v.(MemberVersion), true
}

// EffectiveVersion is the highest cluster version every member applies:
// the lowest MaxProtocol over the members, counting one not heard from
// lately as protocol 1.
func (n *Node) EffectiveVersion() uint32 {
	members := n.Members()
	if len(members) == 0 {
		return 1
	}
	eff := uint32(1<<32 - 1)
	for _, m := range members {
		v := m.Version
		if !m.Known {
			v = Legacy()
		}
		eff = min(eff, max(v.MaxProtocol, 1))
	}
	return eff
}

// raiseClusterVersion, on the leader's tick, raises the cluster version to
// the effective version when that is higher.
func (n *Node) raiseClusterVersion(ctx context.Context) {
	cur, eff := n.fsm.State().ClusterVersion(), n.EffectiveVersion()
	if eff <= cur {
		return
	}
	n.log.Info("every member applies a newer protocol: raising the cluster version", "from", cur, "to", eff)
	cmd := &statev1.Command{Header: &statev1.CommandHeader{Actor: "system"},
		Op: &statev1.Command_SetClusterVersion{SetClusterVersion: &statev1.SetClusterVersion{Version: eff}}}
	if _, err := n.apply(ctx, cmd); err != nil {
		n.log.Warn("cannot raise the cluster version", "error", err)
	}
}
