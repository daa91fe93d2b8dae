package main

import (
	"flag"
	"fmt"
	"net/netip"
	"strings"
)

// addLimitFlags defines the flags of the per-client limits (server.Limits);
// their defaults are m.Limits'.
func (m *Main) addLimitFlags(fs *flag.FlagSet) {
	l := &m.Limits
	fs.Var(&l.RegisterPerWorker, "rate-register-worker", "Register calls a second and burst per worker id and secret, as RATE,BURST (0: no limit)")
	fs.Var(&l.AcquirePerWorker, "rate-acquire-worker", "Acquire calls a second and burst per worker id and secret, as RATE,BURST (0: no limit)")
	fs.Var(&l.RegisterPerAddr, "rate-register-addr", "Register calls a second and burst per client IP address (IPv6: /64), as RATE,BURST (0: no limit)")
	fs.Var(&l.AcquirePerAddr, "rate-acquire-addr", "Acquire calls a second and burst per client IP address (IPv6: /64), as RATE,BURST (0: no limit)")
	fs.Var((*prefixes)(&l.ExemptAddrs), "rate-exempt", `comma-separated addresses or CIDR prefixes the per-address rate limits skip ("" for none; behind a proxy on this host, use "")`)
	fs.IntVar(&l.MaxStreamsPerAddr, "max-streams-per-addr", l.MaxStreamsPerAddr, "server streams (WatchActivity, ExportResults, SaveSnapshot) one client IP address may hold open at once (0: no limit)")
}

// checkLimitFlags reports a limit flag out of range.
func (m *Main) checkLimitFlags() error {
	if m.Limits.MaxStreamsPerAddr < 0 {
		return fmt.Errorf("--max-streams-per-addr %d: want 0 (no limit) or more", m.Limits.MaxStreamsPerAddr)
	}
	return nil
}

// prefixes is a flag of comma-separated IP addresses and CIDR prefixes.
type prefixes []netip.Prefix

func (p *prefixes) String() string {
	s := make([]string, len(*p))
	for i, x := range *p {
		s[i] = x.String()
	}
	return strings.Join(s, ",")
}

func (p *prefixes) Set(v string) error {
	var out []netip.Prefix
	for _, f := range strings.Split(v, ",") {
		if f = strings.TrimSpace(f); f == "" {
			continue
		}
		x, err := netip.ParsePrefix(f)
		if err != nil {
			a, aerr := netip.ParseAddr(f)
			if aerr != nil {
				return fmt.Errorf("%q is neither an IP address nor a CIDR prefix", f)
			}
			x = netip.PrefixFrom(a, a.BitLen())
		}
		out = append(out, x.Masked())
	}
	*p = out
	return nil
}
