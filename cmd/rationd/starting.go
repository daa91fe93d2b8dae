package main

import (
	"errors"
	"fmt"
	"net/http"
	"sync/atomic"

	"connectrpc.com/connect"

	rationv1 "github.com/rationhq/ration/api/ration/v1"
)

// startingHandler serves the API port from the moment it is open, while
// the node opens its data dir and restores its newest snapshot (seconds,
// with millions of items): /livez says 200, since the process is alive and
// a liveness probe must not kill it for being slow to start; /readyz says
// 503; every RPC is refused, in the caller's protocol, as unavailable with
// the reason STARTING (safe to retry). Once the node is up, every request
// goes to the API.
type startingHandler struct {
	node string
	api  atomic.Pointer[http.Handler]
	errs *connect.ErrorWriter
}

func newStartingHandler(node string) *startingHandler {
	return &startingHandler{node: node, errs: connect.NewErrorWriter()}
}

// serve hands every request from now on to h.
func (s *startingHandler) serve(h http.Handler) { s.api.Store(&h) }

func (s *startingHandler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if h := s.api.Load(); h != nil {
		(*h).ServeHTTP(w, r)
		return
	}
	const why = "starting: opening the data dir and restoring the newest snapshot"
	w.Header().Set("Cache-Control", "no-store")
	switch r.URL.Path {
	case "/livez":
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		fmt.Fprintln(w, "ok")
		return
	case "/readyz":
		http.Error(w, why, http.StatusServiceUnavailable)
		return
	}
	if !s.errs.IsSupported(r) {
		http.Error(w, why, http.StatusServiceUnavailable)
		return
	}
	e := connect.NewError(connect.CodeUnavailable, errors.New(why))
	if d, err := connect.NewErrorDetail(&rationv1.ErrorDetail{Reason: "STARTING", ServedBy: s.node}); err == nil {
		e.AddDetail(d)
	}
	_ = s.errs.Write(w, r, e)
}
