package server

import (
	"context"
	"fmt"
	"net/http"
	"time"

	"connectrpc.com/connect"
	"connectrpc.com/grpchealth"
	"github.com/hashicorp/raft"
)

// DefaultReadyMaxLag is how many entries behind the leader's commit index
// a node may be and still be ready (Config.ReadyMaxLag). Applying is in memory and
// fast; what lags is a follower catching up after a restart or a partition.
// A thousand entries is about one second of writes at the leader's
// sequential rate (~1 ms per entry with BoltDB): a node that far behind
// serves stale reads and slow linearizable ones, so a load balancer should
// send clients elsewhere until it catches up.
const DefaultReadyMaxLag = 1000

// livez answers 200 while the process serves HTTP: a liveness probe, which
// must not fail for the cluster's sake (no leader is not a reason to restart).
func (s *Server) livez(w http.ResponseWriter, _ *http.Request) {
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	fmt.Fprintln(w, "ok")
}

// readyz answers 200 when this node can serve: it knows a leader, has
// learned the leader's commit index lately (it asks every ProbeInterval),
// and has applied that index, give or take Config.ReadyMaxLag entries.
// Otherwise 503 with the reason in plain text.
func (s *Server) readyz(w http.ResponseWriter, _ *http.Request) {
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	if reason := s.notReady(); reason != "" {
		w.WriteHeader(http.StatusServiceUnavailable)
		fmt.Fprintln(w, reason)
		return
	}
	fmt.Fprintln(w, "ok")
}

// notReady returns why the node is not ready, or "" when it is.
func (s *Server) notReady() string {
	st := s.store.Status()
	maxLag := s.cfg.ReadyMaxLag
	if maxLag == 0 {
		maxLag = DefaultReadyMaxLag
	}
	if st.State == raft.Shutdown.String() {
		return "node is shutting down"
	}
	if st.LeaderID == "" {
		return fmt.Sprintf("no leader known (node %s is %s in term %d)", st.NodeID, st.State, st.Term)
	}
	if problem := s.store.ClockProblem(); problem != "" {
		return problem
	}
	p, ok := s.fresh.latest()
	if age := time.Since(p.at); !ok || age > s.readyProbeAge() {
		why := "never asked it yet"
		if ok {
			why = fmt.Sprintf("last learned it %s ago", age.Round(time.Millisecond))
		}
		if e := s.fresh.lastErr.Load(); e != nil {
			why += "; last error: " + *e
		}
		return fmt.Sprintf("cannot tell how far behind it is: no commit index from the leader %s lately (%s)", st.LeaderID, why)
	}
	if applied := st.AppliedIndex; p.index > applied && p.index-applied > maxLag {
		return fmt.Sprintf("applied index %d is %d entries behind the leader's commit index %d (limit %d)",
			applied, p.index-applied, p.index, maxLag)
	}
	return ""
}

// readyProbeAge is how old the newest probe may be for /readyz to trust it.
func (s *Server) readyProbeAge() time.Duration {
	return max(8*s.cfg.ProbeInterval, 2*time.Second)
}

// readyChecker answers gRPC health checks by the rule of /readyz, for the
// whole process ("") and for each ration service: NOT_SERVING while the
// node is not ready, so that a load balancer or a Kubernetes gRPC probe
// sends clients elsewhere.
type readyChecker struct {
	s        *Server
	services map[string]bool
}

func (c *readyChecker) Check(_ context.Context, req *grpchealth.CheckRequest) (*grpchealth.CheckResponse, error) {
	if req.Service != "" && !c.services[req.Service] {
		return nil, connect.NewError(connect.CodeNotFound, fmt.Errorf("unknown service %q", req.Service))
	}
	if c.s.notReady() != "" {
		return &grpchealth.CheckResponse{Status: grpchealth.StatusNotServing}, nil
	}
	return &grpchealth.CheckResponse{Status: grpchealth.StatusServing}, nil
}
