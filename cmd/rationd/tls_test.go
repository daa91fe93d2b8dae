package main

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"connectrpc.com/connect"

	"github.com/rationhq/ration/api/client"
	rationv1 "github.com/rationhq/ration/api/ration/v1"
	"github.com/rationhq/ration/api/ration/v1/rationv1connect"
	"github.com/rationhq/ration/cluster/clustertest"
	"github.com/rationhq/ration/internal/testcerts"
	"github.com/rationhq/ration/server"
)

// pki is the certificates of one test: ca signs the nodes' API and peer
// certificates, clients the API clients'.
type pki struct {
	dir        string
	ca         *testcerts.CA
	caFile     string
	clients    *testcerts.CA
	clientsPEM string
}

func newPKI(t *testing.T) *pki {
	p := &pki{dir: t.TempDir(), ca: testcerts.NewCA(t, "ration"), clients: testcerts.NewCA(t, "clients")}
	p.caFile = p.ca.WriteFile(t, p.dir, "ca")
	p.clientsPEM = p.clients.WriteFile(t, p.dir, "clients")
	return p
}

// nodeArgs gives a node one certificate for its API and its peer traffic,
// signed by ca and trusting caFile as the peer CA.
func nodeArgs(t *testing.T, ca *testcerts.CA, caFile, dir, name string) []string {
	cert, key := ca.Localhost(t, name).WriteFiles(t, dir, name)
	return []string{"--node-id", name, "--election-timeout", "200ms",
		"--tls-cert", cert, "--tls-key", key,
		"--peer-tls-cert", cert, "--peer-tls-key", key, "--peer-tls-ca", caFile}
}

// tryMain runs a node and returns its error instead of failing the test.
func tryMain(t *testing.T, dir string, args ...string) (*Main, error) {
	t.Helper()
	m := NewMain()
	var log bytes.Buffer
	m.Stderr = &log
	base := []string{"--data-dir", dir, "--http-addr", "127.0.0.1:0", "--raft-addr", "127.0.0.1:0"}
	if err := m.ParseFlags(append(base, args...), func(string) string { return "" }); err != nil {
		return nil, err
	}
	if err := m.Run(context.Background()); err != nil {
		return nil, err
	}
	t.Cleanup(func() {
		m.Close()
		if t.Failed() {
			t.Logf("log of %s:\n%s", m.NodeID, log.String())
		}
	})
	return m, nil
}

// tlsClient trusts roots and presents cert (if any), speaking only HTTP/2
// or only HTTP/1.1.
func tlsClient(roots *x509.CertPool, cert *testcerts.Leaf, h2 bool) *http.Client {
	cfg := &tls.Config{RootCAs: roots}
	if cert != nil {
		cfg.Certificates = []tls.Certificate{cert.TLS}
	}
	var p http.Protocols
	p.SetHTTP1(!h2)
	p.SetHTTP2(h2)
	return &http.Client{Transport: &http.Transport{TLSClientConfig: cfg, Protocols: &p}}
}

func TestMain_TLSClusterForwardsOverMutualTLS(t *testing.T) {
	p := newPKI(t)
	dir := t.TempDir()
	withClientCA := func(name string, more ...string) []string {
		return append(append(nodeArgs(t, p.ca, p.caFile, p.dir, name), "--tls-client-ca", p.clientsPEM), more...)
	}
	m1 := startMain(t, filepath.Join(dir, "n1"), withClientCA("n1", "--bootstrap")...)
	m2 := startMain(t, filepath.Join(dir, "n2"), withClientCA("n2", "--join", m1.Addr())...)
	m3 := startMain(t, filepath.Join(dir, "n3"), withClientCA("n3", "--join", m2.Addr())...)
	clustertest.WaitFor(t, 10*time.Second, func() error {
		for _, m := range []*Main{m1, m2, m3} {
			if n := len(m.Node().Members()); n != 3 {
				return fmt.Errorf("%s sees %d members", m.NodeID, n)
			}
		}
		return nil
	})
	// m3 may not have applied the leader's API address yet.
	var leader string
	clustertest.WaitFor(t, 10*time.Second, func() (err error) {
		leader, _, err = m3.Node().Leader()
		return err
	})
	var follower *Main
	for _, m := range []*Main{m1, m2, m3} {
		if m.NodeID != leader {
			follower = m
		}
	}
	clientCert := p.clients.Localhost(t, "rationctl")

	// gRPC over HTTP/2 (ALPN): a write sent to a follower is forwarded to
	// the leader over HTTPS with the follower's peer certificate.
	grpc := rationv1connect.NewOwnerServiceClient(tlsClient(p.ca.Pool(), clientCert, true), "https://"+follower.Addr(), connect.WithGRPC())
	var res *connect.Response[rationv1.CreateServiceResponse]
	clustertest.WaitFor(t, 10*time.Second, func() (err error) {
		res, err = grpc.CreateService(context.Background(), connect.NewRequest(&rationv1.CreateServiceRequest{Name: "dm", Kind: "dmcheck", RequestId: "create-dm"}))
		return err
	})
	if got := res.Header().Get(server.ServedByHeader); got != leader {
		t.Fatalf("write on follower %s served by %q, want the leader %s", follower.NodeID, got, leader)
	}

	// Connect over HTTP/1.1: a linearizable read on the follower asks the
	// leader for its read index over HTTPS.
	h1 := rationv1connect.NewOwnerServiceClient(tlsClient(p.ca.Pool(), clientCert, false), "https://"+follower.Addr())
	got, err := h1.GetService(context.Background(), connect.NewRequest(&rationv1.GetServiceRequest{Name: "dm"}))
	if err != nil {
		t.Fatal(err)
	}
	if got.Msg.Read.ServedBy != follower.NodeID || got.Msg.Read.Consistency != rationv1.Consistency_CONSISTENCY_LINEARIZABLE {
		t.Fatalf("read: %v", got.Msg.Read)
	}
	// api/client takes the same *http.Client, with https addresses.
	cl, err := client.New(client.Config{Addrs: []string{"https://" + m1.Addr(), "https://" + m2.Addr(), "https://" + m3.Addr()},
		HTTPClient: tlsClient(p.ca.Pool(), clientCert, true), Options: []connect.ClientOption{connect.WithGRPC()}})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := cl.GetService(context.Background(), &rationv1.GetServiceRequest{Name: "dm"}); err != nil {
		t.Fatalf("api/client over TLS: %v", err)
	}

	for _, h2 := range []bool{true, false} {
		resp, err := tlsClient(p.ca.Pool(), clientCert, h2).Get("https://" + follower.Addr() + "/livez")
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if want := map[bool]int{true: 2, false: 1}[h2]; resp.ProtoMajor != want || resp.StatusCode != http.StatusOK {
			t.Fatalf("/livez: %s %d, want HTTP/%d 200", resp.Proto, resp.StatusCode, want)
		}
	}

	// A client without a certificate, or with one the client CA did not
	// sign, is refused in the TLS handshake; one that does not trust the
	// CA refuses the server. (With TLS 1.3 the server's refusal reaches
	// the client after its own handshake, so how a call fails varies; the
	// raw connection below reads the alert itself.)
	foreign := testcerts.NewCA(t, "other").Localhost(t, "x")
	for name, c := range map[string]*http.Client{
		"no client certificate":      tlsClient(p.ca.Pool(), nil, false),
		"foreign client certificate": tlsClient(p.ca.Pool(), foreign, true),
		"untrusted server":           tlsClient(x509.NewCertPool(), clientCert, true),
	} {
		oc := rationv1connect.NewOwnerServiceClient(c, "https://"+follower.Addr(), connect.WithGRPC())
		if _, err := oc.GetService(context.Background(), connect.NewRequest(&rationv1.GetServiceRequest{Name: "dm"})); err == nil {
			t.Fatalf("%s: call succeeded", name)
		}
	}
	for name, cert := range map[string]*testcerts.Leaf{"no client certificate": nil, "foreign client certificate": foreign} {
		cfg := &tls.Config{RootCAs: p.ca.Pool(), MinVersion: tls.VersionTLS13}
		if cert != nil {
			cfg.Certificates = []tls.Certificate{cert.TLS}
		}
		conn, err := tls.Dial("tcp", follower.Addr(), cfg)
		if err != nil {
			t.Fatalf("%s: handshake: %v", name, err)
		}
		conn.SetDeadline(time.Now().Add(5 * time.Second))
		_, err = conn.Read(make([]byte, 1))
		conn.Close()
		if err == nil || !strings.Contains(err.Error(), "certificate") {
			t.Fatalf("%s: read %v, want the server's certificate alert", name, err)
		}
	}
	_, err = tls.Dial("tcp", follower.Addr(), &tls.Config{RootCAs: x509.NewCertPool()})
	if err == nil || !strings.Contains(err.Error(), "certificate") {
		t.Fatalf("untrusted server: %v", err)
	}
}

func TestMain_TLSNodeWithForeignPeerCACannotJoin(t *testing.T) {
	p := newPKI(t)
	dir := t.TempDir()
	m1 := startMain(t, filepath.Join(dir, "n1"), append(nodeArgs(t, p.ca, p.caFile, p.dir, "n1"), "--bootstrap")...)
	clustertest.WaitFor(t, 10*time.Second, func() error {
		_, _, err := m1.Node().Leader()
		return err
	})

	other := testcerts.NewCA(t, "other")
	otherFile := other.WriteFile(t, p.dir, "other")
	args := append(nodeArgs(t, other, otherFile, p.dir, "rogue"), "--join", m1.Addr(), "--join-timeout", "1s")
	if _, err := tryMain(t, filepath.Join(dir, "rogue"), args...); err == nil || !strings.Contains(err.Error(), "certificate") {
		t.Fatalf("node with a foreign peer CA: %v, want a refused join over a certificate", err)
	}
	if ms := m1.Node().Members(); len(ms) != 1 || ms[0].ID != "n1" {
		t.Fatalf("members after the refused join: %+v", ms)
	}
}

func TestMain_TLSFlags(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"--tls-cert", "c.pem"}, "go together"},
		{[]string{"--tls-client-ca", "ca.pem"}, "needs --tls-cert"},
		{[]string{"--tls-cert", "c", "--tls-key", "k", "--peer-tls-cert", "p"}, "go together"},
		{[]string{"--peer-tls-cert", "p", "--peer-tls-key", "k", "--peer-tls-ca", "ca"}, "needs --tls-cert"},
		{[]string{"--tls-cert", "c", "--tls-key", "k", "--tls-client-ca", "ca", "--peer-tls-cert", "p", "--peer-tls-key", "k", "--peer-tls-ca", "ca"}, ""},
	} {
		m := NewMain()
		m.Stderr = &bytes.Buffer{}
		err := m.ParseFlags(tc.args, func(string) string { return "" })
		if tc.want == "" && err != nil || tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)) {
			t.Fatalf("%v: %v, want %q", tc.args, err, tc.want)
		}
	}
	// Files are read at start, and a bad one is named.
	m := NewMain()
	m.Stderr = &bytes.Buffer{}
	if err := m.ParseFlags([]string{"--data-dir", t.TempDir(), "--http-addr", "127.0.0.1:0", "--raft-addr", "127.0.0.1:0",
		"--tls-cert", "/nonexistent/c.pem", "--tls-key", "/nonexistent/k.pem"}, func(string) string { return "" }); err != nil {
		t.Fatal(err)
	}
	if err := m.Run(context.Background()); err == nil || !strings.Contains(err.Error(), "/nonexistent/c.pem") {
		m.Close()
		t.Fatalf("run with a missing certificate: %v", err)
	}
}
