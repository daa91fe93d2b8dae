package main

import (
	"crypto/tls"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/rationhq/ration/api/ration/v1/rationv1connect"
	"github.com/rationhq/ration/internal/testcerts"
)

// startTLSFake serves f over TLS with a certificate from ca, requiring a
// client certificate from clients.
func startTLSFake(t *testing.T, f *fakeServer, ca, clients *testcerts.CA) string {
	t.Helper()
	mux := http.NewServeMux()
	mux.Handle(rationv1connect.NewClusterServiceHandler(f))
	srv := httptest.NewUnstartedServer(mux)
	srv.EnableHTTP2 = true
	srv.TLS = &tls.Config{Certificates: []tls.Certificate{ca.Localhost(t, "node").TLS},
		ClientAuth: tls.RequireAndVerifyClientCert, ClientCAs: clients.Pool()}
	srv.StartTLS()
	t.Cleanup(srv.Close)
	return strings.TrimPrefix(srv.URL, "https://")
}

func TestTLS_FlagsReachTheServer(t *testing.T) {
	dir := t.TempDir()
	ca, clients := testcerts.NewCA(t, "ration"), testcerts.NewCA(t, "clients")
	caFile := ca.WriteFile(t, dir, "ca")
	cert, key := clients.Localhost(t, "ctl").WriteFiles(t, dir, "ctl")
	f := &fakeServer{}
	addr := startTLSFake(t, f, ca, clients)

	out := mustRun(t, nil, "", "--addr", addr, "--tls-ca", caFile, "--tls-cert", cert, "--tls-key", key, "cluster", "status")
	if !strings.Contains(out, "n1") {
		t.Fatalf("status over TLS: calls %v, output:\n%s", f.auth, out)
	}
	// An explicit https:// address takes the same flags.
	mustRun(t, nil, "", "--addr", "https://"+addr, "--tls-ca", caFile, "--tls-cert", cert, "--tls-key", key, "cluster", "status")

	for _, tc := range []struct {
		name string
		args []string
		want string
	}{
		// How a refused client certificate surfaces varies with TLS 1.3
		// and HTTP/2; the count of answered calls below is the check.
		{"no client certificate", []string{"--tls-ca", caFile}, ""},
		{"server not trusted", []string{"--tls-cert", cert, "--tls-key", key}, "certificate"},
		{"cleartext", nil, ""},
		{"key without certificate", []string{"--tls-key", key}, "go together"},
		{"missing CA file", []string{"--tls-ca", dir + "/nope.pem"}, "nope.pem"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			args := append(append([]string{"--addr", addr, "--retry-for", "0"}, tc.args...), "cluster", "status")
			r := runCLI(t, nil, "", args...)
			if r.code == 0 || !strings.Contains(r.stderr, tc.want) {
				t.Fatalf("exit %d, stderr %q; want a failure saying %q", r.code, r.stderr, tc.want)
			}
		})
	}
	answered := 0
	for _, calls := range f.auth {
		answered += len(calls)
	}
	if answered != 2 {
		t.Fatalf("the server answered %d calls, want only the 2 with a client certificate", answered)
	}
}
