package client

import (
	"errors"
	"strconv"
	"time"

	"connectrpc.com/connect"
)

// Headers of a rate-limited answer (server.RetryAfterMsHeader and
// server.RetryAfterHeader; this package imports nothing of the server).
const (
	retryAfterMsHeader = "Ration-Retry-After-Ms"
	retryAfterHeader   = "Retry-After"
)

// RetryAfter returns how long to wait before trying a refused call again,
// when the refusal says: a rate limit's answer (ResourceExhausted, reason
// RATE_LIMITED) carries the wait in milliseconds, or in seconds in HTTP's
// Retry-After. Calls made through a Client wait and retry by themselves,
// within RetryFor.
func RetryAfter(err error) (time.Duration, bool) {
	var ce *connect.Error
	if !errors.As(err, &ce) || ce.Code() != connect.CodeResourceExhausted {
		return 0, false
	}
	if ms, err := strconv.ParseInt(ce.Meta().Get(retryAfterMsHeader), 10, 64); err == nil && ms >= 0 {
		return time.Duration(ms) * time.Millisecond, true
	}
	if s, err := strconv.ParseInt(ce.Meta().Get(retryAfterHeader), 10, 64); err == nil && s >= 0 {
		return time.Duration(s) * time.Second, true
	}
	return 0, false
}
