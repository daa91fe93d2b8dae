package server

import (
	"testing"
	"time"
)

func TestKeyedLimiter_BurstThenRate(t *testing.T) {
	l := newKeyedLimiter(RateLimit{Rate: 2, Burst: 5}, 10)
	now := time.Unix(1000, 0)
	for i := range 5 {
		if ok, _ := l.take(1, now); !ok {
			t.Fatalf("call %d of a burst of 5 refused", i+1)
		}
	}
	ok, wait := l.take(1, now)
	if ok || wait != 500*time.Millisecond {
		t.Fatalf("call 6: ok %v, wait %v; want refused, 500ms", ok, wait)
	}
	// Another key has its own bucket.
	if ok, _ := l.take(2, now); !ok {
		t.Fatal("another key refused")
	}
	now = now.Add(499 * time.Millisecond)
	if ok, wait := l.take(1, now); ok || wait != time.Millisecond {
		t.Fatalf("1ms early: ok %v, wait %v; want refused, 1ms", ok, wait)
	}
	now = now.Add(time.Millisecond)
	if ok, _ := l.take(1, now); !ok {
		t.Fatal("refused once a token had refilled")
	}
	if ok, _ := l.take(1, now); ok {
		t.Fatal("a second call on one refilled token allowed")
	}
	// A clock that steps back refills nothing and breaks nothing.
	if ok, _ := l.take(1, now.Add(-time.Hour)); ok {
		t.Fatal("allowed after the clock stepped back")
	}
}

func TestKeyedLimiter_BoundedKeys(t *testing.T) {
	const maxKeys = 1000
	l := newKeyedLimiter(RateLimit{Rate: 1, Burst: 1}, maxKeys)
	now := time.Unix(1000, 0)
	// A flood of distinct keys, each spending its bucket.
	for k := range uint64(100_000) {
		l.take(k, now)
		if n := len(l.keys); n > maxKeys || l.lru.Len() != n {
			t.Fatalf("after %d keys: %d tracked (%d in the LRU), limit %d", k+1, n, l.lru.Len(), maxKeys)
		}
	}
	// The most recent keys are tracked, still empty.
	if ok, _ := l.take(99_999, now); ok {
		t.Fatal("a recent key's empty bucket was forgotten")
	}
	// Once buckets are full again they are dropped as calls pass by.
	now = now.Add(time.Second)
	for range maxKeys {
		l.take(7, now)
	}
	if n := l.len(); n != 1 {
		t.Fatalf("%d keys tracked once all but one were idle, want 1", n)
	}
}

func TestRateLimit_Flag(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want RateLimit
		out  string
	}{
		{"20,40", RateLimit{20, 40}, "20,40"},
		{" 2.5 , 5 ", RateLimit{2.5, 5}, "2.5,5"},
		{"0.5", RateLimit{0.5, 1}, "0.5,1"},
		{"7", RateLimit{7, 7}, "7,7"},
		{"0", RateLimit{}, "0"},
		{"0,10", RateLimit{}, "0"},
	} {
		var r RateLimit
		if err := r.Set(tc.in); err != nil || r != tc.want || r.String() != tc.out {
			t.Errorf("Set(%q) = %+v (%q), %v; want %+v (%q)", tc.in, r, r.String(), err, tc.want, tc.out)
		}
	}
	for _, bad := range []string{"", "x", "-1", "1,0", "1,x", "1,-2", "NaN", "+Inf", "0.0001", "2e9", "1,2000000"} {
		var r RateLimit
		if err := r.Set(bad); err == nil {
			t.Errorf("Set(%q) accepted: %+v", bad, r)
		}
	}
}

func TestLimits_ClientAddress(t *testing.T) {
	for in, want := range map[string]string{
		"203.0.113.7:5000":               "203.0.113.7",
		"[::ffff:203.0.113.7]:5000":      "203.0.113.7",
		"[2001:db8:1:2:3:4:5:6]:443":     "2001:db8:1:2::/64",
		"[2001:db8:1:2:ffff::1]:443":     "2001:db8:1:2::/64",
		"[2001:db8:1:3:3:4:5:6]:443":     "2001:db8:1:3::/64",
		"[fe80::1%eth0]:80":              "fe80::/64",
		"127.0.0.2:1":                    "127.0.0.2",
		"unix-socket-has-no-address:abc": "",
	} {
		got := ""
		if ip, ok := peerIP(in); ok {
			got = addrName(addrKey(ip))
		}
		if got != want {
			t.Errorf("%q counts as %q, want %q", in, got, want)
		}
	}
	// Exemptions see the address itself, not its /64.
	l := newLimiter(nil, &Limits{ExemptAddrs: DefaultLimits().ExemptAddrs})
	for in, want := range map[string]bool{"127.9.9.9:1": true, "[::1]:80": true, "[::ffff:127.0.0.1]:80": true,
		"128.0.0.1:1": false, "[::2]:80": false, "[2001:db8::1]:80": false} {
		if ip, _ := peerIP(in); l.exempt(ip) != want {
			t.Errorf("%s exempt: %v, want %v", in, !want, want)
		}
	}
}
