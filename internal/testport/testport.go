// Package testport picks loopback ports for processes a test starts.
package testport

import (
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"strconv"
	"strings"
	"testing"
)

// Free returns a loopback address nobody listens on right now, for a
// process to listen on a moment later. The port is picked below the
// kernel's ephemeral range: a port from that range, once closed, may be
// handed to any socket that binds port 0 or connects out (a proxy, another
// test package, a client's next connection) before the process binds it,
// or binds it again after a restart.
func Free(t testing.TB) string {
	t.Helper()
	lo, hi := 20000, ephemeralLow()
	for range 200 {
		addr := fmt.Sprintf("127.0.0.1:%d", lo+rand.IntN(hi-lo))
		ln, err := net.Listen("tcp", addr)
		if err != nil {
			continue
		}
		ln.Close()
		return addr
	}
	t.Fatalf("no free port in %d-%d", lo, hi)
	return ""
}

// ephemeralLow returns the first port of the kernel's ephemeral range.
func ephemeralLow() int {
	b, err := os.ReadFile("/proc/sys/net/ipv4/ip_local_port_range")
	if err == nil {
		if f := strings.Fields(string(b)); len(f) == 2 {
			if n, err := strconv.Atoi(f[0]); err == nil && n > 21000 {
				return n
			}
		}
	}
	return 32768
}
