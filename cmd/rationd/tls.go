package main

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"flag"
	"fmt"
	"net/http"
	"os"
	"time"
)

// TLS flags. The API's certificate (--tls-cert) secures clients' calls; the
// peer certificate (--peer-tls-*) secures what nodes say to each other:
// Raft under mutual TLS, and forwarded writes, read-index calls and joins,
// which go to other nodes' API over HTTPS presenting the peer certificate.
// With --tls-client-ca the API requires a client certificate signed by that
// CA or by the peer CA, so that other nodes get through.
func (m *Main) addTLSFlags(fs *flag.FlagSet) {
	fs.StringVar(&m.TLSCert, "tls-cert", "", "PEM certificate of the API: serve HTTPS (HTTP/2 and HTTP/1.1) instead of cleartext")
	fs.StringVar(&m.TLSKey, "tls-key", "", "PEM private key of --tls-cert")
	fs.StringVar(&m.TLSClientCA, "tls-client-ca", "", "PEM CA certificates: API clients must present a certificate one of them (or the peer CA) signed")
	fs.StringVar(&m.PeerTLSCert, "peer-tls-cert", "", "PEM certificate this node shows other nodes, as server and client: Raft, and calls to their API")
	fs.StringVar(&m.PeerTLSKey, "peer-tls-key", "", "PEM private key of --peer-tls-cert")
	fs.StringVar(&m.PeerTLSCA, "peer-tls-ca", "", "PEM CA certificates that sign every node's peer certificate; Raft accepts no other")
}

func (m *Main) checkTLSFlags() error {
	if (m.TLSCert == "") != (m.TLSKey == "") {
		return errors.New("--tls-cert and --tls-key go together")
	}
	if m.TLSClientCA != "" && m.TLSCert == "" {
		return errors.New("--tls-client-ca needs --tls-cert: client certificates are checked only over TLS")
	}
	peer := 0
	for _, f := range []string{m.PeerTLSCert, m.PeerTLSKey, m.PeerTLSCA} {
		if f != "" {
			peer++
		}
	}
	if peer != 0 && peer != 3 {
		return errors.New("--peer-tls-cert, --peer-tls-key and --peer-tls-ca go together")
	}
	if peer == 3 && m.TLSCert == "" {
		return errors.New("--peer-tls-cert needs --tls-cert: with peer TLS, nodes call each other's API over HTTPS")
	}
	return nil
}

// tlsSetup is what the TLS flags make.
type tlsSetup struct {
	api        *tls.Config // nil: cleartext API
	peer       *tls.Config // nil: Raft over plain TCP
	peerClient *http.Client
	peerScheme string
}

// loadTLS reads the certificates the flags name. The client other nodes
// are called with trusts the system roots and the peer CA, and presents the
// peer certificate.
func (m *Main) loadTLS() (*tlsSetup, error) {
	ts := &http.Transport{MaxIdleConnsPerHost: 64, IdleConnTimeout: time.Minute}
	s := &tlsSetup{peerClient: &http.Client{Transport: ts}, peerScheme: "http"}
	if m.TLSCert == "" {
		return s, nil
	}
	cert, err := tls.LoadX509KeyPair(m.TLSCert, m.TLSKey)
	if err != nil {
		return nil, fmt.Errorf("--tls-cert %s, --tls-key %s: %w", m.TLSCert, m.TLSKey, err)
	}
	s.api = &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12, NextProtos: []string{"h2", "http/1.1"}}
	roots, err := x509.SystemCertPool()
	if err != nil {
		roots = x509.NewCertPool()
	}
	s.peerScheme = "https"
	ts.TLSClientConfig = &tls.Config{RootCAs: roots, MinVersion: tls.VersionTLS12}
	ts.ForceAttemptHTTP2 = true
	var peerCA *x509.CertPool
	if m.PeerTLSCert != "" {
		pc, err := tls.LoadX509KeyPair(m.PeerTLSCert, m.PeerTLSKey)
		if err != nil {
			return nil, fmt.Errorf("--peer-tls-cert %s, --peer-tls-key %s: %w", m.PeerTLSCert, m.PeerTLSKey, err)
		}
		if peerCA, err = loadPool(nil, "--peer-tls-ca", m.PeerTLSCA); err != nil {
			return nil, err
		}
		if _, err := loadPool(roots, "--peer-tls-ca", m.PeerTLSCA); err != nil {
			return nil, err
		}
		s.peer = &tls.Config{Certificates: []tls.Certificate{pc}, RootCAs: peerCA, MinVersion: tls.VersionTLS12}
		ts.TLSClientConfig.Certificates = []tls.Certificate{pc}
	}
	if m.TLSClientCA != "" {
		clients, err := loadPool(nil, "--tls-client-ca", m.TLSClientCA)
		if err != nil {
			return nil, err
		}
		if m.PeerTLSCA != "" {
			if _, err := loadPool(clients, "--peer-tls-ca", m.PeerTLSCA); err != nil {
				return nil, err
			}
		}
		s.api.ClientAuth, s.api.ClientCAs = tls.RequireAndVerifyClientCert, clients
	}
	return s, nil
}

// loadPool adds the PEM certificates in file to pool (a new one if nil).
func loadPool(pool *x509.CertPool, flagName, file string) (*x509.CertPool, error) {
	data, err := os.ReadFile(file)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", flagName, err)
	}
	if pool == nil {
		pool = x509.NewCertPool()
	}
	if !pool.AppendCertsFromPEM(data) {
		return nil, fmt.Errorf("%s %s: no PEM certificate in it", flagName, file)
	}
	return pool, nil
}
