package cluster

import (
	"bytes"
	"crypto/tls"
	"errors"
	"io"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/raft"

	"github.com/rationhq/ration/internal/testcerts"
)

// layer starts a stream layer whose identity lives in a fresh dir and
// serves accepted connections as Raft's transport would: it reads, which
// runs the TLS handshake and the hello. Each connection's first error goes
// to errs.
func layer(t *testing.T, peer *tls.Config, clusterID string) (*streamLayer, chan error) {
	t.Helper()
	id := &identity{path: t.TempDir() + "/" + IdentityFile, log: hclog.NewNullLogger(), rec: identityRecord{NodeID: "n", ClusterID: clusterID}}
	s, err := newStreamLayer("127.0.0.1:0", "", peer, id)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close(); s.drain(time.Second) })
	errs := make(chan error, 16)
	go func() {
		for {
			c, err := s.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				_, err := c.Read(make([]byte, 1))
				errs <- err
			}()
		}
	}()
	return s, errs
}

func dial(s *streamLayer, to *streamLayer) error {
	c, err := s.Dial(raft.ServerAddress(to.Addr().String()), 2*time.Second)
	if err == nil {
		c.Close()
	}
	return err
}

func acceptErr(t *testing.T, errs chan error) error {
	t.Helper()
	select {
	case err := <-errs:
		return err
	case <-time.After(5 * time.Second):
		t.Fatal("the listener never finished the connection")
		return nil
	}
}

func TestStreamLayer_MutualTLS(t *testing.T) {
	ca, other := testcerts.NewCA(t, "peers"), testcerts.NewCA(t, "other")
	srv, errs := layer(t, ca.PeerTLS(ca.Localhost(t, "srv")), "c1")

	good, _ := layer(t, ca.PeerTLS(ca.Localhost(t, "good")), "")
	if err := dial(good, srv); err != nil {
		t.Fatalf("member dialing a member: %v", err)
	}
	// The dialer hung up after the hello: the reader sees EOF.
	if err := acceptErr(t, errs); !errors.Is(err, io.EOF) {
		t.Fatalf("accepted side: %v", err)
	}
	if got := good.id.clusterID(); got != "c1" {
		t.Fatalf("dialer learned cluster id %q, want c1", got)
	}

	for _, tc := range []struct {
		name string
		tls  *tls.Config
		want string // in the listener's error
	}{
		{"foreign client certificate", &tls.Config{Certificates: []tls.Certificate{other.Localhost(t, "x").TLS}, RootCAs: ca.Pool()}, "certificate"},
		{"no client certificate", &tls.Config{RootCAs: ca.Pool()}, "certificate"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rogue, _ := layer(t, tc.tls, "")
			if err := dial(rogue, srv); err == nil {
				t.Fatal("dial succeeded")
			}
			if err := acceptErr(t, errs); err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("listener: %v, want an error about %q", err, tc.want)
			}
			if rogue.id.clusterID() != "" {
				t.Fatal("the rogue learned the cluster id")
			}
		})
	}

	t.Run("plain TCP", func(t *testing.T) {
		plain, _ := layer(t, nil, "c1")
		if err := dial(plain, srv); err == nil {
			t.Fatal("plain dial to a TLS listener succeeded")
		}
		if err := acceptErr(t, errs); err == nil {
			t.Fatal("listener accepted a plain connection")
		}
	})
}

func TestStreamLayer_HelloRefusesOtherCluster(t *testing.T) {
	a, aErrs := layer(t, nil, "cluster-a")
	b, _ := layer(t, nil, "cluster-b")
	err := dial(b, a)
	if !errors.Is(err, ErrOtherCluster) || !strings.Contains(err.Error(), "cluster-a") || !strings.Contains(err.Error(), "cluster-b") {
		t.Fatalf("dial: %v", err)
	}
	if err := acceptErr(t, aErrs); !errors.Is(err, ErrOtherCluster) {
		t.Fatalf("listener: %v", err)
	}
	if a.id.clusterID() != "cluster-a" || b.id.clusterID() != "cluster-b" {
		t.Fatal("a cluster id changed")
	}
	// A node that knows no cluster yet learns it from its first peer.
	fresh, _ := layer(t, nil, "")
	if err := dial(a, fresh); err != nil {
		t.Fatal(err)
	}
	if fresh.id.clusterID() != "cluster-a" {
		t.Fatalf("fresh node has cluster id %q", fresh.id.clusterID())
	}
	if !fresh.id.recorded() {
		t.Fatal("learned id not recorded")
	}
	// And a listener that is not a ration node (no hello) is refused.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		c, err := ln.Accept()
		if err == nil {
			c.Write([]byte("HTTP/1.1 400 Bad Request\r\n\r\n"))
			c.Close()
		}
	}()
	if _, err := a.Dial(raft.ServerAddress(ln.Addr().String()), 2*time.Second); err == nil || !strings.Contains(err.Error(), "hello") {
		t.Fatalf("dial to a non-ration listener: %v", err)
	}
}

func TestHello_ClusterIDLengthLimit(t *testing.T) {
	var buf bytes.Buffer
	max := strings.Repeat("a", maxClusterIDLen)
	if err := writeHello(&buf, max); err != nil {
		t.Fatal(err)
	}
	if got, err := readHello(&buf); err != nil || got != max {
		t.Fatalf("round trip of a %d-byte id: %q %v", maxClusterIDLen, got, err)
	}
	if err := writeHello(&buf, max+"a"); err == nil {
		t.Fatalf("wrote a %d-byte id", maxClusterIDLen+1)
	}
	over := append(append(helloMagic[:], maxClusterIDLen+1), max+"a"...)
	if _, err := readHello(bytes.NewReader(over)); err == nil {
		t.Fatalf("read a %d-byte id", maxClusterIDLen+1)
	}
}
