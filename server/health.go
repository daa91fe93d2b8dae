package server

import (
	"fmt"
	"net/http"

	"github.com/hashicorp/raft"
)

// DefaultReadyMaxLag is how many committed entries a node may have left to
// apply and still be ready (Config.ReadyMaxLag). Applying is in memory and
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

// readyz answers 200 when this node can serve: it knows a leader and has
// applied the commit index it knows, give or take Config.ReadyMaxLag
// entries. Otherwise 503 with the reason in plain text.
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
	switch {
	case st.State == raft.Shutdown.String():
		return "node is shutting down"
	case st.LeaderID == "":
		return fmt.Sprintf("no leader known (node %s is %s in term %d)", st.NodeID, st.State, st.Term)
	case st.CommitIndex > st.AppliedIndex && st.CommitIndex-st.AppliedIndex > maxLag:
		return fmt.Sprintf("applied index %d is %d entries behind commit index %d (limit %d)",
			st.AppliedIndex, st.CommitIndex-st.AppliedIndex, st.CommitIndex, maxLag)
	}
	return ""
}
