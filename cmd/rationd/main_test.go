package main

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"connectrpc.com/connect"

	"github.com/rationhq/ration/api/client"
	rationv1 "github.com/rationhq/ration/api/ration/v1"
	"github.com/rationhq/ration/api/ration/v1/rationv1connect"
	"github.com/rationhq/ration/cluster/clustertest"
)

func startMain(t *testing.T, dir string, args ...string) *Main {
	t.Helper()
	m := NewMain()
	var log bytes.Buffer
	m.Stderr = &log
	base := []string{"--data-dir", dir, "--http-addr", "127.0.0.1:0", "--raft-addr", "127.0.0.1:0"}
	if err := m.ParseFlags(append(base, args...), func(string) string { return "" }); err != nil {
		t.Fatal(err)
	}
	if err := m.Run(context.Background()); err != nil {
		t.Fatalf("run: %v\n%s", err, log.String())
	}
	t.Cleanup(func() {
		m.Close()
		if t.Failed() {
			t.Logf("log of %s:\n%s", m.NodeID, log.String())
		}
	})
	return m
}

func owner(addr string) rationv1connect.OwnerServiceClient {
	return rationv1connect.NewOwnerServiceClient(http.DefaultClient, "http://"+addr)
}

func TestMain_LoneNodeServes(t *testing.T) {
	m := startMain(t, filepath.Join(t.TempDir(), "data"))
	clustertest.WaitFor(t, 10*time.Second, func() error {
		_, err := owner(m.Addr()).CreateService(context.Background(), connect.NewRequest(&rationv1.CreateServiceRequest{Name: "dm", Kind: "dmcheck"}))
		return err
	})
}

func TestMain_ThreeNodesJoinAndRestart(t *testing.T) {
	dir := t.TempDir()
	m1 := startMain(t, filepath.Join(dir, "n1"), "--node-id", "n1", "--bootstrap")
	m2 := startMain(t, filepath.Join(dir, "n2"), "--node-id", "n2", "--join", m1.Addr())
	m3 := startMain(t, filepath.Join(dir, "n3"), "--node-id", "n3", "--join", "127.0.0.1:1,"+m2.Addr())
	clustertest.WaitFor(t, 10*time.Second, func() error {
		if n := len(m3.Node().Members()); n != 3 {
			return fmt.Errorf("%d members", n)
		}
		_, err := owner(m3.Addr()).CreateService(context.Background(), connect.NewRequest(&rationv1.CreateServiceRequest{Name: "dm", Kind: "dmcheck", RequestId: "create-dm"}))
		return err
	})
	// n2 restarts from its data dir on the same addresses and rejoins.
	raftAddr, httpAddr := m2.Node().RaftAddr(), m2.Addr()
	if err := m2.Close(); err != nil {
		t.Fatal(err)
	}
	m2 = startMain(t, filepath.Join(dir, "n2"), "--node-id", "n2", "--raft-addr", raftAddr, "--http-addr", httpAddr, "--join", m1.Addr())
	clustertest.WaitFor(t, 20*time.Second, func() error {
		r, err := owner(m2.Addr()).GetService(context.Background(), connect.NewRequest(&rationv1.GetServiceRequest{Name: "dm"}))
		if err != nil {
			return err
		}
		if r.Msg.Read.ServedBy != "n2" {
			return fmt.Errorf("served by %s", r.Msg.Read.ServedBy)
		}
		return nil
	})
}

func TestMain_Flags(t *testing.T) {
	m := NewMain()
	m.Stderr = &bytes.Buffer{}
	err := m.ParseFlags([]string{"--bootstrap", "--join", "a:1"}, func(string) string { return "" })
	if err == nil || !strings.Contains(err.Error(), "exclude") {
		t.Fatalf("--bootstrap with --join: %v", err)
	}
	m = NewMain()
	if err := m.ParseFlags(nil, func(k string) string { return map[string]string{"RATION_ADMIN_TOKEN": "tok"}[k] }); err != nil || m.AdminToken != "tok" {
		t.Fatalf("token from env: %q %v", m.AdminToken, err)
	}
	if m.DataDir != "ration-data" || m.HTTPAddr != "127.0.0.1:7070" || m.RaftAddr != "127.0.0.1:7071" {
		t.Fatalf("defaults: %+v", m)
	}
	m = NewMain()
	m.Stderr = &bytes.Buffer{}
	if err := m.ParseFlags([]string{"--log-format", "xml"}, func(string) string { return "" }); err == nil {
		t.Fatal("accepted --log-format xml")
	}
	// A node reachable from other machines needs a token, or --insecure.
	for _, tc := range []struct {
		args []string
		ok   bool
	}{
		{[]string{"--http-addr", "0.0.0.0:7070"}, false},
		{[]string{"--http-addr", ":7070"}, false},
		{[]string{"--http-addr", "10.1.2.3:7070"}, false},
		{[]string{"--http-addr", "0.0.0.0:7070", "--advertise-http", "n1:7070", "--admin-token", "t"}, true},
		{[]string{"--http-addr", "0.0.0.0:7070", "--advertise-http", "n1:7070", "--insecure"}, true},
		{[]string{"--http-addr", "[::1]:7070"}, true},
		{[]string{"--http-addr", "localhost:7070"}, true},
	} {
		m = NewMain()
		m.Stderr = &bytes.Buffer{}
		err := m.ParseFlags(tc.args, func(string) string { return "" })
		if (err == nil) != tc.ok {
			t.Fatalf("%v: %v", tc.args, err)
		}
	}
}

// TestStartingHandler: while the node starts, the port says alive but not
// ready, and refuses RPCs as unavailable with the reason STARTING and the
// node's id, in the caller's protocol; then it serves the API.
func TestStartingHandler(t *testing.T) {
	h := newStartingHandler("n1")
	ts := httptest.NewServer(h)
	t.Cleanup(ts.Close)
	for path, want := range map[string]int{"/livez": 200, "/readyz": 503} {
		res, err := http.Get(ts.URL + path)
		if err != nil {
			t.Fatal(err)
		}
		res.Body.Close()
		if res.StatusCode != want {
			t.Errorf("GET %s while starting: %d, want %d", path, res.StatusCode, want)
		}
	}
	for _, opts := range [][]connect.ClientOption{nil, {connect.WithGRPCWeb()}} {
		cl := rationv1connect.NewClusterServiceClient(ts.Client(), ts.URL, opts...)
		_, err := cl.Status(context.Background(), connect.NewRequest(&rationv1.StatusRequest{}))
		if d := client.Detail(err); connect.CodeOf(err) != connect.CodeUnavailable || d.GetReason() != "STARTING" || d.GetServedBy() != "n1" {
			t.Errorf("an RPC while starting: %v (detail %v), want unavailable STARTING from n1", err, d)
		}
	}
	h.serve(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(http.StatusTeapot) }))
	res, err := http.Get(ts.URL + "/readyz")
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	if res.StatusCode != http.StatusTeapot {
		t.Errorf("after the node started: %d, want the API's answer", res.StatusCode)
	}
}

// TestClockFlags: the offset limit must be positive, and the test clock
// is refused without the flag that allows test-only flags.
func TestClockFlags(t *testing.T) {
	for _, tt := range []struct {
		args []string
		want string
	}{
		{[]string{"--max-clock-offset", "0s"}, "--max-clock-offset 0s: must be positive"},
		{[]string{"--test-clock-offset-file", "x"}, "needs --enable-test-flags"},
		{[]string{"--test-clock-offset-file", "x", "--enable-test-flags"}, ""},
		{[]string{"--max-clock-offset", "250ms"}, ""},
	} {
		m := NewMain()
		m.Stderr = io.Discard
		err := m.ParseFlags(tt.args, func(string) string { return "" })
		if tt.want == "" && err != nil || tt.want != "" && (err == nil || !strings.Contains(err.Error(), tt.want)) {
			t.Errorf("%v: %v, want %q", tt.args, err, tt.want)
		}
	}
}

// TestTestClock: the test clock follows its file, and keeps its offset
// when the file is missing or unreadable.
func TestTestClock(t *testing.T) {
	path := filepath.Join(t.TempDir(), "offset")
	if err := os.WriteFile(path, []byte("3h\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	c := startTestClock(path)
	defer c.close()
	if d := time.Until(c.Now()); d < 3*time.Hour-time.Minute || d > 3*time.Hour+time.Minute {
		t.Fatalf("offset %s, want 3h", d)
	}
	os.WriteFile(path, []byte("-90s"), 0o644)
	clustertest.WaitFor(t, 2*time.Second, func() error {
		if d := time.Until(c.Now()); d > -89*time.Second || d < -91*time.Second {
			return fmt.Errorf("offset %s, want -90s", d)
		}
		return nil
	})
	os.WriteFile(path, []byte("not a duration"), 0o644)
	time.Sleep(3 * testClockPoll)
	if d := time.Until(c.Now()); d > -89*time.Second {
		t.Fatalf("an unreadable file moved the offset to %s", d)
	}
}

// TestMain_AdvertiseRaft: --advertise-raft (and --advertise-http) is
// checked, is needed when Raft (the API) listens on every interface, and is
// the address a node joins under.
func TestMain_AdvertiseRaft(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"--raft-addr", "0.0.0.0:7071"}, "give --advertise-raft"},
		{[]string{"--raft-addr", ":7071"}, "give --advertise-raft"},
		{[]string{"--raft-addr", "0.0.0.0:7071", "--advertise-raft", "n1:7071"}, ""},
		{[]string{"--advertise-raft", "0.0.0.0:7071"}, "give a host"},
		{[]string{"--advertise-raft", "n1"}, "missing port"},
		{[]string{"--http-addr", "0.0.0.0:7070", "--insecure"}, "give --advertise-http"},
		{[]string{"--http-addr", "[::]:7070", "--insecure", "--advertise-http", "n1:7070"}, ""},
		{[]string{"--advertise-http", "0.0.0.0:7070"}, "give a host"},
	} {
		m := NewMain()
		m.Stderr = io.Discard
		err := m.ParseFlags(tc.args, func(string) string { return "" })
		if tc.want == "" && err != nil || tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)) {
			t.Errorf("%v: %v, want %q", tc.args, err, tc.want)
		}
	}
	port := func() string {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		defer ln.Close()
		_, p, _ := net.SplitHostPort(ln.Addr().String())
		return p
	}
	p1, p2 := port(), port()
	dir := t.TempDir()
	m1 := startMain(t, filepath.Join(dir, "n1"), "--node-id", "n1", "--bootstrap",
		"--raft-addr", "127.0.0.1:"+p1, "--advertise-raft", "localhost:"+p1)
	startMain(t, filepath.Join(dir, "n2"), "--node-id", "n2", "--join", m1.Addr(),
		"--raft-addr", "127.0.0.1:"+p2, "--advertise-raft", "localhost:"+p2)
	want := "n1=localhost:" + p1 + " n2=localhost:" + p2
	clustertest.WaitFor(t, 10*time.Second, func() error {
		var got []string
		for _, mb := range m1.Node().Members() {
			got = append(got, mb.ID+"="+mb.RaftAddress)
		}
		if strings.Join(got, " ") != want {
			return fmt.Errorf("members %v, want %s", got, want)
		}
		return nil
	})
}
