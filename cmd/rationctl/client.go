package main

import (
	"net/http"

	"github.com/rationhq/ration/api/client"
)

// newHTTPClient returns the client every call goes through. The TLS flags
// set its Transport.TLSClientConfig (tls.go); an address given as
// https://host:port works with the system roots and no flag.
func newHTTPClient() *http.Client {
	t := http.DefaultTransport.(*http.Transport).Clone()
	return &http.Client{Transport: t}
}

// newAPIClient builds the api/client Client that makes every call but
// bench's: it owns failover, retries and backoff. --timeout 0 and
// --retry-for 0 mean no per-call limit and a single pass over --addr.
func (a *app) newAPIClient() (*client.Client, error) {
	cfg := client.Config{
		Addrs:        a.addrs,
		AdminToken:   a.token,
		WorkerSecret: a.workerSecret,
		HTTPClient:   a.httpClient,
		CallTimeout:  a.timeout,
		RetryFor:     a.retryFor,
	}
	if cfg.CallTimeout == 0 {
		cfg.CallTimeout = -1
	}
	if cfg.RetryFor <= 0 {
		cfg.RetryFor = -1
	}
	return client.New(cfg)
}

// requestID returns the --request-id given, or a fresh random one, so that a
// write that fails over to another node takes effect at most once.
func requestID(flag string) string {
	if flag != "" {
		return flag
	}
	return client.NewRequestID()
}
