package main

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net/http"
	"os"
	"strings"
)

// setupTLS applies --tls-ca, --tls-cert and --tls-key: any of them makes
// plain host:port addresses HTTPS. --tls-ca replaces the system roots as
// the CAs that may sign the nodes' API certificates; --tls-cert and
// --tls-key are the client certificate a node started with --tls-client-ca
// asks for.
func (a *app) setupTLS() error {
	if a.tlsCA == "" && a.tlsCert == "" && a.tlsKey == "" {
		return nil
	}
	if (a.tlsCert == "") != (a.tlsKey == "") {
		return errors.New("--tls-cert and --tls-key go together")
	}
	cfg := &tls.Config{MinVersion: tls.VersionTLS12}
	if a.tlsCA != "" {
		data, err := os.ReadFile(a.tlsCA)
		if err != nil {
			return fmt.Errorf("--tls-ca: %w", err)
		}
		cfg.RootCAs = x509.NewCertPool()
		if !cfg.RootCAs.AppendCertsFromPEM(data) {
			return fmt.Errorf("--tls-ca %s: no PEM certificate in it", a.tlsCA)
		}
	}
	if a.tlsCert != "" {
		cert, err := tls.LoadX509KeyPair(a.tlsCert, a.tlsKey)
		if err != nil {
			return fmt.Errorf("--tls-cert %s, --tls-key %s: %w", a.tlsCert, a.tlsKey, err)
		}
		cfg.Certificates = []tls.Certificate{cert}
	}
	t, ok := a.httpClient.Transport.(*http.Transport)
	if !ok {
		return errors.New("TLS flags need an *http.Transport")
	}
	t.TLSClientConfig = cfg
	t.ForceAttemptHTTP2 = true
	for i, addr := range a.addrs {
		if !strings.Contains(addr, "://") {
			a.addrs[i] = "https://" + addr
		}
	}
	return nil
}
