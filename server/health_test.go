package server_test

import (
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

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

// statusStore is a Store that only reports a status; /readyz needs no more.
type statusStore struct {
	server.Store
	st cluster.Status
}

func (s statusStore) Status() cluster.Status { return s.st }

// TestServer_ReadyzRule checks each reason /readyz gives, and the lag bound.
func TestServer_ReadyzRule(t *testing.T) {
	status := func(state, leader string, commit, applied uint64) cluster.Status {
		return cluster.Status{NodeID: "n1", State: state, LeaderID: leader, Term: 3, CommitIndex: commit, AppliedIndex: applied}
	}
	tests := []struct {
		name   string
		maxLag uint64
		st     cluster.Status
		code   int
		text   string
	}{
		{"leader", 0, status("Leader", "n1", 50, 50), 200, "ok"},
		{"follower in step", 0, status("Follower", "n2", 50, 49), 200, "ok"},
		{"applied ahead of a stale commit index", 0, status("Follower", "n2", 10, 50), 200, "ok"},
		{"default bound, at it", 0, status("Follower", "n2", 1000+server.DefaultReadyMaxLag, 1000), 200, "ok"},
		{"default bound, past it", 0, status("Follower", "n2", 1001+server.DefaultReadyMaxLag, 1000), 503, "1001 entries behind"},
		{"own bound, past it", 10, status("Follower", "n2", 111, 100), 503, "behind commit index 111 (limit 10)"},
		{"no leader", 0, status("Candidate", "", 50, 50), 503, "no leader known (node n1 is Candidate in term 3)"},
		{"shutdown", 0, status("Shutdown", "", 50, 50), 503, "shutting down"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := server.New(statusStore{st: tt.st}, server.Config{ReadyMaxLag: tt.maxLag}).Handler()
			for _, p := range []struct {
				path string
				code int
				text string
			}{{"/readyz", tt.code, tt.text}, {"/livez", 200, "ok"}} {
				rec := httptest.NewRecorder()
				h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, p.path, nil))
				if rec.Code != p.code || !strings.Contains(rec.Body.String(), p.text) {
					t.Errorf("GET %s: %d %q, want %d with %q", p.path, rec.Code, rec.Body.String(), p.code, p.text)
				}
			}
		})
	}
}
