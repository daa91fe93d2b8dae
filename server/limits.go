package server

import (
	"context"
	"errors"
	"fmt"
	"hash/maphash"
	"math"
	"net"
	"net/http"
	"net/netip"
	"strconv"
	"sync"
	"time"

	"connectrpc.com/connect"

	rationv1 "github.com/rationhq/ration/api/ration/v1"
	"github.com/rationhq/ration/fsm"
	"github.com/rationhq/ration/fsm/kind"
)

// Limits on one request. Each is inclusive: a request at the limit is
// served; one past it is refused by the node that receives it, before it
// is forwarded or reaches Raft.
const (
	// MaxRequestBytes bounds one request message, after decompression, on
	// every procedure but Restore (MaxRestoreBytes): 16 MiB less 64 KiB, so
	// that a request at the limit still fits, with its command header, in
	// one log entry (cluster.Config.MaxCommandBytes, 16 MiB). Legal
	// requests come close: a Submit of a default followers bucket, 180
	// results of up to 64 KiB, is 11.3 MiB. Over it: ResourceExhausted.
	MaxRequestBytes = 16<<20 - 64<<10
	// MaxItemsPerAdd bounds the ids of one AddItems, whatever the
	// service's max_items_per_add says. Over it: InvalidArgument.
	MaxItemsPerAdd = fsm.MaxItemsPerAddLimit
	// MaxResultsPerSubmit bounds the results of one Submit: a bucket's
	// largest size. Over it: InvalidArgument.
	MaxResultsPerSubmit = fsm.MaxBucketSize
	// MaxPayloadBytes bounds one result's payload, whatever the service's
	// max_payload_bytes says. Over it: InvalidArgument.
	MaxPayloadBytes = kind.MaxPayloadLimit
	// MaxIDBytes bounds a worker or item id. Over it: InvalidArgument.
	MaxIDBytes = fsm.MaxIDLength
)

// Defaults of Limits.
const (
	// DefaultMaxStreamsPerAddr is how many server streams (WatchActivity,
	// ExportResults, SaveSnapshot) one client address may hold open on a
	// node at once.
	DefaultMaxStreamsPerAddr = 16
	// DefaultMaxRateKeys is how many keys (worker ids, addresses) each rate
	// limiter tracks at most; about 100 bytes each.
	DefaultMaxRateKeys = 65536
)

// Headers of a rate-limited answer: when to try again.
const (
	// RetryAfterHeader is HTTP's Retry-After, in whole seconds (rounded up).
	RetryAfterHeader = "Retry-After"
	// RetryAfterMsHeader is the same hint in milliseconds (rounded up).
	RetryAfterMsHeader = "Ration-Retry-After-Ms"
)

// Limits are the per-client limits a node enforces on the calls it
// receives. The zero value enforces none; DefaultLimits returns the
// documented defaults.
//
// Rate limits apply to WorkerService.Register and Acquire, on the node the
// client called, before the call is validated or forwarded, so followers
// shield the leader. Per worker, the key is the worker id together with
// the secret presented, so a caller without a worker's secret cannot use
// up that worker's budget; every node applies it, the leader to every
// call it serves. Per address, the key is the client's IP address (an IPv6
// /64), taken from the connection (never from headers such as
// X-Forwarded-For); only the first node applies it: the leader skips it
// for a call that carries the forwarding header AND comes from a member's
// address (API or Raft host), so a client cannot dodge it by setting the
// header. A refusal is ResourceExhausted with reason RATE_LIMITED, a
// Retry-After hint in its message and headers (RetryAfterHeader,
// RetryAfterMsHeader), which api/client honours.
type Limits struct {
	// RegisterPerWorker and AcquirePerWorker limit one worker (id and
	// secret).
	RegisterPerWorker RateLimit
	AcquirePerWorker  RateLimit
	// RegisterPerAddr and AcquirePerAddr limit one client address.
	RegisterPerAddr RateLimit
	AcquirePerAddr  RateLimit
	// ExemptAddrs are client addresses the per-address limits skip.
	// DefaultLimits exempts loopback: benchmarks run hundreds of workers
	// from 127.0.0.1. WARNING: behind a reverse proxy on the same host,
	// every client comes from loopback, so set this to none (and let the
	// proxy limit by address) or the per-address limits do nothing.
	ExemptAddrs []netip.Prefix
	// MaxStreamsPerAddr bounds the server streams one client address
	// holds open at once, exempt addresses included; 0 is no limit.
	MaxStreamsPerAddr int
	// MaxKeys bounds the keys each rate limiter tracks; 0 means
	// DefaultMaxRateKeys.
	MaxKeys int
	// Now is the clock; nil means time.Now.
	Now func() time.Time
}

// DefaultLimits returns the limits a node enforces unless configured
// otherwise. A worker registers once per process start and acquires once
// per bucket it works on, for seconds to minutes, so real workers stay far
// below the per-worker budgets. Benchmarks cycle flat out: at 16 to 256
// workers each stays well below them too, but one worker alone against a
// 3-node cluster on loopback reaches about the Acquire budget (some 200 a
// second on 2 cores), which is the most one id should take of a cluster
// that size. Per address, Register allows a burst of 100 (a hundred workers
// behind one NAT restarting at once) and Acquire five workers cycling flat
// out; loopback is exempt (see ExemptAddrs), since benchmarks run hundreds
// of workers from 127.0.0.1.
func DefaultLimits() Limits {
	return Limits{
		RegisterPerWorker: RateLimit{Rate: 5, Burst: 20},
		AcquirePerWorker:  RateLimit{Rate: 200, Burst: 400},
		RegisterPerAddr:   RateLimit{Rate: 20, Burst: 100},
		AcquirePerAddr:    RateLimit{Rate: 1000, Burst: 2000},
		ExemptAddrs:       []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8"), netip.MustParsePrefix("::1/128")},
		MaxStreamsPerAddr: DefaultMaxStreamsPerAddr,
	}
}

// limitedOp names the rate limits a procedure is under.
type limitedOp int

const (
	noLimit limitedOp = iota
	limitRegister
	limitAcquire
)

var limitedOps = [...]struct{ name, workerFlag, addrFlag string }{
	noLimit:       {},
	limitRegister: {"Register", "--rate-register-worker", "--rate-register-addr"},
	limitAcquire:  {"Acquire", "--rate-acquire-worker", "--rate-acquire-addr"},
}

// limiter enforces a server's Limits.
type limiter struct {
	cfg      Limits
	store    Store
	seed     maphash.Seed
	byWorker [len(limitedOps)]*keyedLimiter // nil when off, and for noLimit
	byAddr   [len(limitedOps)]*keyedLimiter

	streamMu sync.Mutex
	streams  map[netip.Addr]int // open streams by client address

	memberMu  sync.Mutex
	memberIPs map[netip.Addr]bool
	memberAt  time.Time
}

// memberIPsTTL is how long the members' resolved addresses are kept.
const memberIPsTTL = 10 * time.Second

func newLimiter(store Store, lim *Limits) *limiter {
	cfg := DefaultLimits()
	if lim != nil {
		cfg = *lim
	}
	if cfg.MaxKeys <= 0 {
		cfg.MaxKeys = DefaultMaxRateKeys
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	l := &limiter{cfg: cfg, store: store, seed: maphash.MakeSeed(), streams: map[netip.Addr]int{}}
	keyed := func(rl RateLimit) *keyedLimiter {
		if !rl.On() {
			return nil
		}
		return newKeyedLimiter(rl, cfg.MaxKeys)
	}
	l.byWorker[limitRegister], l.byAddr[limitRegister] = keyed(cfg.RegisterPerWorker), keyed(cfg.RegisterPerAddr)
	l.byWorker[limitAcquire], l.byAddr[limitAcquire] = keyed(cfg.AcquirePerWorker), keyed(cfg.AcquirePerAddr)
	return l
}

// peerIP returns the IP address of a peer's host:port.
func peerIP(peer string) (netip.Addr, bool) {
	ap, err := netip.ParseAddrPort(peer)
	if err != nil {
		return netip.Addr{}, false
	}
	return ap.Addr().Unmap().WithZone(""), true
}

// addrKey is what the per-address limits count a client address under:
// the address, or for IPv6 its /64, which one host usually has to itself.
func addrKey(a netip.Addr) netip.Addr {
	if a.Is6() {
		p, _ := a.Prefix(64)
		return p.Addr()
	}
	return a
}

// addrName names an address key in messages.
func addrName(k netip.Addr) string {
	if k.Is6() {
		return k.String() + "/64"
	}
	return k.String()
}

func (l *limiter) exempt(a netip.Addr) bool {
	for _, p := range l.cfg.ExemptAddrs {
		if p.Contains(a) {
			return true
		}
	}
	return false
}

// allow applies op's rate limits to a call from peer for worker id with the
// secret hash cred: per address first, then per worker. It returns the
// refusal, or nil.
func (l *limiter) allow(op limitedOp, peer string, h http.Header, id string, cred []byte, node string) error {
	now := l.cfg.Now()
	if kl := l.byAddr[op]; kl != nil {
		if ip, ok := peerIP(peer); ok && !l.exempt(ip) && !(h.Get(forwardedHeader) != "" && l.isMember(ip)) {
			k := addrKey(ip)
			if ok, wait := kl.take(maphash.Comparable(l.seed, k), now); !ok {
				return rateLimited(node, wait, fmt.Sprintf("%s rate limit for client address %s", limitedOps[op].name, addrName(k)), kl.limit, limitedOps[op].addrFlag)
			}
		}
	}
	if kl := l.byWorker[op]; kl != nil {
		var hh maphash.Hash
		hh.SetSeed(l.seed)
		hh.WriteString(id)
		hh.WriteByte(0)
		hh.Write(cred)
		if ok, wait := kl.take(hh.Sum64(), now); !ok {
			return rateLimited(node, wait, fmt.Sprintf("%s rate limit for worker %q", limitedOps[op].name, id), kl.limit, limitedOps[op].workerFlag)
		}
	}
	return nil
}

func rateLimited(node string, wait time.Duration, what string, rl RateLimit, flag string) error {
	wait = max(wait, time.Millisecond)
	ms := (wait + time.Millisecond - 1) / time.Millisecond
	e := withDetail(connect.NewError(connect.CodeResourceExhausted,
		fmt.Errorf("%s: %g a second, burst %d (%s); retry after %dms", what, rl.Rate, rl.Burst, flag, ms)), "RATE_LIMITED", node)
	e.Meta().Set(RetryAfterHeader, strconv.Itoa(int(math.Ceil(wait.Seconds()))))
	e.Meta().Set(RetryAfterMsHeader, strconv.FormatInt(int64(ms), 10))
	return e
}

// isMember reports whether a is the host of a member's API or Raft address:
// only members forward calls. The addresses are resolved at most every
// memberIPsTTL, a host name for at most a second, while calls from
// non-exempt addresses that carry the forwarding header wait.
func (l *limiter) isMember(a netip.Addr) bool {
	l.memberMu.Lock()
	defer l.memberMu.Unlock()
	if now := time.Now(); l.memberIPs == nil || now.Sub(l.memberAt) > memberIPsTTL {
		ips := map[netip.Addr]bool{}
		for _, m := range l.store.Status().Members {
			for _, hp := range []string{m.APIAddress, m.RaftAddress} {
				for _, ip := range resolveHost(hp) {
					ips[ip.Unmap().WithZone("")] = true
				}
			}
		}
		l.memberIPs, l.memberAt = ips, now
	}
	return l.memberIPs[a]
}

// resolveHost returns the IP addresses of host:port's host.
func resolveHost(hostport string) []netip.Addr {
	host, _, err := net.SplitHostPort(hostport)
	if err != nil {
		return nil
	}
	if ip, err := netip.ParseAddr(host); err == nil {
		return []netip.Addr{ip}
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	ips, _ := net.DefaultResolver.LookupNetIP(ctx, "ip", host)
	return ips
}

// openStream takes one of a's stream slots; release gives it back.
func (l *limiter) openStream(a netip.Addr, node string) (release func(), err error) {
	l.streamMu.Lock()
	defer l.streamMu.Unlock()
	if n := l.streams[a]; n >= l.cfg.MaxStreamsPerAddr {
		return nil, withDetail(connect.NewError(connect.CodeResourceExhausted,
			fmt.Errorf("client address %s has %d streams open on this node, the limit (--max-streams-per-addr); close one first", addrName(a), n)), "TOO_MANY_STREAMS", node)
	}
	l.streams[a]++
	return func() {
		l.streamMu.Lock()
		defer l.streamMu.Unlock()
		if l.streams[a]--; l.streams[a] <= 0 {
			delete(l.streams, a)
		}
	}, nil
}

// limitInterceptor bounds the server streams one client address holds
// open, and gives every unary refusal its answer headers (answerHeaders).
type limitInterceptor struct {
	l *limiter
	s *Server
}

func (s limitInterceptor) WrapUnary(next connect.UnaryFunc) connect.UnaryFunc {
	return func(ctx context.Context, req connect.AnyRequest) (connect.AnyResponse, error) {
		res, err := next(ctx, req)
		return res, answerHeaders(err, s.s.store.ID())
	}
}

// answerHeaders gives a refusal the headers an answer has: Ration-Served-By,
// naming the node its detail names (the leader, for a refusal forwarded
// from it), and a rate limit's retry hints. Connect sends no metadata of an
// error that came from another server, so such an error is rebuilt.
func answerHeaders(err error, self string) error {
	var ce *connect.Error
	if !errors.As(err, &ce) {
		return err
	}
	served := self
	for _, d := range ce.Details() {
		if m, derr := d.Value(); derr == nil {
			if ed, ok := m.(*rationv1.ErrorDetail); ok && ed.GetServedBy() != "" {
				served = ed.GetServedBy()
			}
		}
	}
	e := ce
	if connect.IsWireError(ce) {
		e = connect.NewError(ce.Code(), errors.New(ce.Message()))
		for _, d := range ce.Details() {
			e.AddDetail(d)
		}
		for _, h := range []string{RetryAfterHeader, RetryAfterMsHeader} {
			if v := ce.Meta().Get(h); v != "" {
				e.Meta().Set(h, v)
			}
		}
	}
	e.Meta().Set(ServedByHeader, served)
	return e
}

func (s limitInterceptor) WrapStreamingClient(next connect.StreamingClientFunc) connect.StreamingClientFunc {
	return next
}

func (s limitInterceptor) WrapStreamingHandler(next connect.StreamingHandlerFunc) connect.StreamingHandlerFunc {
	return func(ctx context.Context, conn connect.StreamingHandlerConn) error {
		if s.l.cfg.MaxStreamsPerAddr <= 0 || conn.Spec().StreamType != connect.StreamTypeServer {
			return next(ctx, conn)
		}
		ip, ok := peerIP(conn.Peer().Addr)
		if !ok {
			return next(ctx, conn)
		}
		release, err := s.l.openStream(addrKey(ip), s.s.store.ID())
		if err != nil {
			return err
		}
		defer release()
		return next(ctx, conn)
	}
}

// limitOptions are the handler options that enforce the limits: the
// request size and the stream count. The write path applies the rate
// limits of the procedures table.
func (s *Server) limitOptions() connect.HandlerOption {
	return connect.WithHandlerOptions(connect.WithReadMaxBytes(MaxRequestBytes),
		connect.WithInterceptors(limitInterceptor{l: s.limits, s: s}))
}
