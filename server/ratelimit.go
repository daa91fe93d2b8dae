package server

import (
	"container/list"
	"fmt"
	"math"
	"strconv"
	"strings"
	"sync"
	"time"
)

// RateLimit is a token bucket: up to Burst calls at once, refilled at Rate
// calls a second. A zero Rate disables it. As a flag it reads and prints
// "RATE,BURST" (e.g. "20,40"), or "0" for off.
type RateLimit struct {
	Rate  float64
	Burst int
}

// On reports whether the limit is enabled.
func (r RateLimit) On() bool { return r.Rate > 0 }

// String formats r as Set reads it.
func (r RateLimit) String() string {
	if !r.On() {
		return "0"
	}
	return strconv.FormatFloat(r.Rate, 'g', -1, 64) + "," + strconv.Itoa(r.Burst)
}

// Set parses "RATE,BURST" (calls a second, calls at once), "RATE" (a burst
// of RATE rounded up, at least 1) or "0" (off).
func (r *RateLimit) Set(s string) error {
	rs, bs, hasBurst := strings.Cut(strings.TrimSpace(s), ",")
	rate, err := strconv.ParseFloat(strings.TrimSpace(rs), 64)
	if err != nil || math.IsNaN(rate) || rate != 0 && (rate < 0.001 || rate > 1e9) {
		return fmt.Errorf("rate limit %q: want RATE[,BURST] with RATE 0.001 to 1e9 calls a second, or 0 for off", s)
	}
	burst := int(math.Ceil(rate))
	if hasBurst {
		if burst, err = strconv.Atoi(strings.TrimSpace(bs)); err != nil || burst < 1 || burst > 1e6 {
			return fmt.Errorf("rate limit %q: BURST must be a whole number of calls, 1 to 1e6", s)
		}
	}
	*r = RateLimit{Rate: rate, Burst: min(max(burst, 1), 1e6)}
	if rate == 0 {
		*r = RateLimit{}
	}
	return nil
}

// interval is the time one call's token takes to refill, in ns.
func (r RateLimit) interval() int64 { return max(1, int64(math.Round(1e9/r.Rate))) }

// tokenBucket is one key's bucket, kept as the generic cell rate
// algorithm keeps it: the time at which the bucket will be full again
// (integer nanoseconds, so no rounding drifts). A call at now is allowed if
// full-now leaves room for one more call within the burst.
type tokenBucket struct {
	key  uint64
	full int64 // when the bucket is full again, Unix ns
}

// idle reports whether b is full at now: no different from no bucket.
func (b *tokenBucket) idle(now int64) bool { return b.full <= now }

// take spends a token at now, or returns how long until one refills.
func (b *tokenBucket) take(now int64, r RateLimit) (bool, time.Duration) {
	t := r.interval()
	full := max(b.full, now) + t
	if over := full - now - int64(max(r.Burst, 1))*t; over > 0 {
		return false, time.Duration(over)
	}
	b.full = full
	return true, 0
}

// keyedLimiter keeps one token bucket per key, for at most max keys. A full
// bucket is the same as none, so idle keys are dropped as calls pass by;
// when the table is full anyway, the least recently used key goes (its
// caller starts again with a full bucket: eviction can only ever allow,
// never refuse, and memory stays bounded). Safe for concurrent use.
type keyedLimiter struct {
	limit RateLimit
	max   int

	mu   sync.Mutex
	keys map[uint64]*list.Element
	lru  list.List // of *tokenBucket, most recently used at the front
}

func newKeyedLimiter(limit RateLimit, maxKeys int) *keyedLimiter {
	return &keyedLimiter{limit: limit, max: maxKeys, keys: map[uint64]*list.Element{}}
}

// take spends one token of key's bucket at now. When none is left it
// returns false and how long until one will be.
func (l *keyedLimiter) take(key uint64, now time.Time) (bool, time.Duration) {
	ns := now.UnixNano()
	l.mu.Lock()
	defer l.mu.Unlock()
	l.dropIdle(ns, 2)
	e, ok := l.keys[key]
	if ok {
		l.lru.MoveToFront(e)
	} else {
		for len(l.keys) >= l.max {
			l.remove(l.lru.Back())
		}
		e = l.lru.PushFront(&tokenBucket{key: key})
		l.keys[key] = e
	}
	return e.Value.(*tokenBucket).take(ns, l.limit)
}

// dropIdle removes up to n full buckets from the least recently used end.
func (l *keyedLimiter) dropIdle(now int64, n int) {
	for ; n > 0; n-- {
		e := l.lru.Back()
		if e == nil || !e.Value.(*tokenBucket).idle(now) {
			return
		}
		l.remove(e)
	}
}

func (l *keyedLimiter) remove(e *list.Element) {
	delete(l.keys, e.Value.(*tokenBucket).key)
	l.lru.Remove(e)
}

// len is the number of keys tracked.
func (l *keyedLimiter) len() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.keys)
}
