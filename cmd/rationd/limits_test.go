package main

import (
	"bytes"
	"context"
	"net/http"
	"net/netip"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"connectrpc.com/connect"

	"github.com/rationhq/ration/api/client"
	rationv1 "github.com/rationhq/ration/api/ration/v1"
	"github.com/rationhq/ration/api/ration/v1/rationv1connect"
	"github.com/rationhq/ration/cluster/clustertest"
	"github.com/rationhq/ration/server"
)

func TestMain_LimitFlags(t *testing.T) {
	parse := func(args ...string) (*Main, error) {
		m := NewMain()
		m.Stderr = &bytes.Buffer{}
		return m, m.ParseFlags(args, func(string) string { return "" })
	}
	m, err := parse()
	if err != nil || !reflect.DeepEqual(m.Limits, server.DefaultLimits()) {
		t.Fatalf("defaults: %+v, %v; want %+v", m.Limits, err, server.DefaultLimits())
	}
	m, err = parse("--rate-register-worker", "1,2", "--rate-acquire-worker", "0", "--rate-register-addr", "3",
		"--rate-acquire-addr", "0.5,4", "--rate-exempt", "10.0.0.0/8, 192.168.1.1,::1", "--max-streams-per-addr", "0")
	want := server.Limits{
		RegisterPerWorker: server.RateLimit{Rate: 1, Burst: 2},
		RegisterPerAddr:   server.RateLimit{Rate: 3, Burst: 3},
		AcquirePerAddr:    server.RateLimit{Rate: 0.5, Burst: 4},
		ExemptAddrs: []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8"), netip.MustParsePrefix("192.168.1.1/32"),
			netip.MustParsePrefix("::1/128")},
	}
	if err != nil || !reflect.DeepEqual(m.Limits, want) {
		t.Fatalf("set: %+v, %v; want %+v", m.Limits, err, want)
	}
	if m, err = parse("--rate-exempt", ""); err != nil || len(m.Limits.ExemptAddrs) != 0 {
		t.Fatalf("--rate-exempt '': %v, %v", m.Limits.ExemptAddrs, err)
	}
	for _, bad := range [][]string{
		{"--rate-acquire-addr", "fast"},
		{"--rate-register-worker", "1,0"},
		{"--rate-exempt", "10.0.0.0/33"},
		{"--rate-exempt", "somehost"},
		{"--max-streams-per-addr", "-1"},
	} {
		if _, err := parse(bad...); err == nil {
			t.Errorf("%v accepted", bad)
		}
	}
}

// TestMain_LimitFlagsApply runs a node with tight limits and no
// exemptions: the flags reach the server.
func TestMain_LimitFlagsApply(t *testing.T) {
	m := startMain(t, filepath.Join(t.TempDir(), "data"), "--rate-register-worker", "1,2", "--rate-register-addr", "0.001,4", "--rate-exempt", "")
	clustertest.WaitFor(t, 10*time.Second, func() error {
		_, err := owner(m.Addr()).CreateService(context.Background(), connect.NewRequest(&rationv1.CreateServiceRequest{Name: "dm", Kind: "dmcheck", RequestId: "create"}))
		return err
	})
	w := rationv1connect.NewWorkerServiceClient(http.DefaultClient, "http://"+m.Addr(), connect.WithInterceptors(client.Bearer("a-secret-for-the-limits-test")))
	register := func(id string) error {
		_, err := w.Register(context.Background(), connect.NewRequest(&rationv1.RegisterRequest{Service: "dm", WorkerId: id}))
		return err
	}
	// a's burst of 2, and b: 3 of the address's 4.
	for _, id := range []string{"a", "a", "b"} {
		if err := register(id); err != nil {
			t.Fatalf("register %s: %v", id, err)
		}
	}
	// a's 3rd: over --rate-register-worker (the address's 4th).
	if err := register("a"); client.Reason(err) != "RATE_LIMITED" || !strings.Contains(err.Error(), "--rate-register-worker") {
		t.Fatalf("a's 3rd register: %v, want RATE_LIMITED by --rate-register-worker", err)
	}
	// The address's 5th, loopback or not: over --rate-register-addr.
	if err := register("c"); client.Reason(err) != "RATE_LIMITED" || !strings.Contains(err.Error(), "--rate-register-addr") {
		t.Fatalf("the address's 5th register: %v, want RATE_LIMITED by --rate-register-addr", err)
	}
}
