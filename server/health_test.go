package server_test

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"connectrpc.com/connect"
	"connectrpc.com/grpchealth"

	"github.com/rationhq/ration/api/ration/v1/rationv1connect"
	"github.com/rationhq/ration/cluster"
	"github.com/rationhq/ration/cluster/clustertest"
	"github.com/rationhq/ration/server"
)

// TestServer_ReadyzFollowsLeadership: every node of a healthy cluster is
// ready; a node whose peers are gone has no leader and says so with a 503,
// while /livez stays 200. No admin token is needed for either.
func TestServer_ReadyzFollowsLeadership(t *testing.T) {
	c := newTestCluster(t, 3, "health-admin-token")
	for _, addr := range c.addrs {
		clustertest.WaitFor(t, 10*time.Second, func() error {
			return wantProbe(addr, "/readyz", http.StatusOK, "ok")
		})
		if err := wantProbe(addr, "/livez", http.StatusOK, "ok"); err != nil {
			t.Fatal(err)
		}
	}
	c.Kill(1)
	c.Kill(2)
	clustertest.WaitFor(t, 10*time.Second, func() error {
		return wantProbe(c.addrs[0], "/readyz", http.StatusServiceUnavailable, "no leader known")
	})
	if err := wantProbe(c.addrs[0], "/livez", http.StatusOK, "ok"); err != nil {
		t.Fatal(err)
	}
}

// wantProbe checks that GET path on addr answers code with a body that
// contains text.
func wantProbe(addr, path string, code int, text string) error {
	resp, err := http.Get("http://" + addr + path)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return err
	}
	if resp.StatusCode != code || !strings.Contains(string(body), text) {
		return fmt.Errorf("GET %s on %s: %d %q, want %d with %q", path, addr, resp.StatusCode, body, code, text)
	}
	return nil
}

// statusStore is a Store that reports a status and answers read indexes
// as the leader would (leaderCommit, or err); /readyz needs no more.
type statusStore struct {
	server.Store
	st           cluster.Status
	leaderCommit uint64
	err          error
	clock        string // ClockProblem
}

func (s statusStore) ClockProblem() string                      { return s.clock }
func (s statusStore) ID() string                                { return "n1" }
func (s statusStore) Status() cluster.Status                    { return s.st }
func (s statusStore) IsLeader() bool                            { return true }
func (s statusStore) LeaderChanged() <-chan struct{}            { return nil }
func (s statusStore) ReadIndex(context.Context) (uint64, error) { return s.leaderCommit, s.err }

// TestServer_ReadyzRule checks each reason /readyz gives, and the lag bound,
// which counts from the leader's commit index, not the node's own.
func TestServer_ReadyzRule(t *testing.T) {
	status := func(state, leader string, commit, applied uint64) cluster.Status {
		return cluster.Status{NodeID: "n1", State: state, LeaderID: leader, Term: 3, CommitIndex: commit, AppliedIndex: applied}
	}
	lag := uint64(server.DefaultReadyMaxLag)
	tests := []struct {
		name   string
		maxLag uint64
		store  statusStore
		code   int
		text   string
	}{
		{"leader", 0, statusStore{st: status("Leader", "n1", 50, 50), leaderCommit: 50}, 200, "ok"},
		{"follower in step", 0, statusStore{st: status("Follower", "n2", 50, 49), leaderCommit: 50}, 200, "ok"},
		{"default bound, at it", 0, statusStore{st: status("Follower", "n2", 1000, 1000), leaderCommit: 1000 + lag}, 200, "ok"},
		{"default bound, past it", 0, statusStore{st: status("Follower", "n2", 1000, 1000), leaderCommit: 1001 + lag}, 503,
			"applied index 1000 is 1001 entries behind the leader's commit index 2001 (limit 1000)"},
		{"own commit index caught up, the leader's far ahead", 0, statusStore{st: status("Follower", "n2", 1216, 1216), leaderCommit: 5752}, 503,
			"4536 entries behind the leader's commit index 5752"},
		{"own bound, past it", 10, statusStore{st: status("Follower", "n2", 100, 100), leaderCommit: 111}, 503, "behind the leader's commit index 111 (limit 10)"},
		{"leader unreachable", 0, statusStore{st: status("Follower", "n2", 50, 50), err: cluster.ErrNotReady}, 503,
			"no commit index from the leader n2 lately (never asked it yet; last error: leader not ready yet)"},
		{"clock too far off", 0, statusStore{st: status("Follower", "n2", 50, 50), leaderCommit: 50, clock: "this node's clock is 3h0m0s off the majority's (limit 1s)"}, 503,
			"this node's clock is 3h0m0s off the majority's (limit 1s)"},
		{"no leader", 0, statusStore{st: status("Candidate", "", 50, 50)}, 503, "no leader known (node n1 is Candidate in term 3)"},
		{"shutdown", 0, statusStore{st: status("Shutdown", "", 50, 50)}, 503, "shutting down"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv := server.New(tt.store, server.Config{ReadyMaxLag: tt.maxLag, LeaderWait: 50 * time.Millisecond})
			t.Cleanup(srv.Close)
			h := srv.Handler()
			// The first probe of the leader runs as the server starts.
			clustertest.WaitFor(t, 5*time.Second, func() error {
				for _, p := range []struct {
					path string
					code int
					text string
				}{{"/readyz", tt.code, tt.text}, {"/livez", 200, "ok"}} {
					rec := httptest.NewRecorder()
					h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, p.path, nil))
					if rec.Code != p.code || !strings.Contains(rec.Body.String(), p.text) {
						return fmt.Errorf("GET %s: %d %q, want %d with %q", p.path, rec.Code, rec.Body.String(), p.code, p.text)
					}
				}
				return nil
			})
			// gRPC health says the same, for the process and each service.
			ts := httptest.NewServer(h)
			defer ts.Close()
			hc := grpchealth.NewClient(ts.Client(), ts.URL)
			want := grpchealth.StatusServing
			if tt.code != http.StatusOK {
				want = grpchealth.StatusNotServing
			}
			for _, svc := range []string{"", rationv1connect.WorkerServiceName} {
				res, err := hc.Check(context.Background(), &grpchealth.CheckRequest{Service: svc})
				if err != nil || res.Status != want {
					t.Errorf("gRPC health of %q: %v %v, want %v", svc, res, err, want)
				}
			}
			if _, err := hc.Check(context.Background(), &grpchealth.CheckRequest{Service: "no.such.Service"}); connect.CodeOf(err) != connect.CodeNotFound {
				t.Errorf("gRPC health of an unknown service: %v, want not_found", err)
			}
		})
	}
}
