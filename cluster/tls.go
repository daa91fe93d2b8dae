package cluster

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
	"time"

	"github.com/hashicorp/raft"
)

// raftTimeout bounds a Raft connection's dial, hello and each RPC's I/O.
const raftTimeout = 10 * time.Second

// streamLayer is Raft's network: TCP, or mutual TLS when Config.PeerTLS is
// set, and on either a hello that both ends send first, carrying the
// cluster id, so that nodes of different clusters never exchange Raft
// messages (see datadir.go).
type streamLayer struct {
	ln        net.Listener
	advertise net.Addr
	client    *tls.Config // nil: plain TCP
	id        *identity

	mu       sync.Mutex
	conns    map[*helloConn]struct{} // accepted, not yet closed by their handler
	draining bool
}

var _ raft.StreamLayer = (*streamLayer)(nil)

// newStreamLayer listens on bind and advertises advertise, or bind
// resolved when advertise is empty. With peer set, it accepts only clients
// whose certificate the peer CA signed (peer.ClientCAs, or else
// peer.RootCAs), and dials with peer's certificate, verifying the server
// against peer.RootCAs and the dialed host.
func newStreamLayer(bind, advertise string, peer *tls.Config, id *identity) (*streamLayer, error) {
	addr, err := net.ResolveTCPAddr("tcp", bind)
	if err != nil {
		return nil, err
	}
	ln, err := net.Listen("tcp", bind)
	if err != nil {
		return nil, err
	}
	s := &streamLayer{ln: ln, advertise: addr, id: id, conns: map[*helloConn]struct{}{}}
	switch {
	case advertise != "":
		s.advertise = advertisedAddr(advertise)
	case addr.Port == 0:
		s.advertise = ln.Addr() // advertise the port the listener got
	}
	if a, ok := s.advertise.(*net.TCPAddr); ok && (a.IP == nil || a.IP.IsUnspecified()) {
		ln.Close()
		return nil, fmt.Errorf("raft address %s cannot be advertised: give a host other nodes can reach, or an address to advertise", bind)
	}
	if peer != nil {
		srv := peer.Clone()
		srv.ClientAuth = tls.RequireAndVerifyClientCert
		if srv.ClientCAs == nil {
			srv.ClientCAs = srv.RootCAs
		}
		s.ln = tls.NewListener(ln, srv)
		s.client = peer.Clone()
	}
	return s, nil
}

// Accept returns the next connection. Its TLS handshake and hello run on
// its first read or write, in the transport's goroutine for that
// connection, so a slow peer never holds up the others.
func (s *streamLayer) Accept() (net.Conn, error) {
	c, err := s.ln.Accept()
	if err != nil {
		return nil, err
	}
	hc := &helloConn{Conn: c, s: s}
	s.mu.Lock()
	s.conns[hc] = struct{}{}
	if s.draining {
		c.Close()
	}
	s.mu.Unlock()
	return hc, nil
}

// drain waits, up to timeout, until the transport's handler of every
// accepted connection has finished, cutting the connections so they do.
// Raft answers heartbeats in those handlers, outside its main loop and
// after Shutdown has returned, and a heartbeat may write the current term
// to the stable store: closing the store first makes Raft panic
// (hashicorp/raft#717).
func (s *streamLayer) drain(timeout time.Duration) bool {
	s.mu.Lock()
	s.draining = true
	for c := range s.conns {
		c.Conn.Close()
	}
	s.mu.Unlock()
	deadline := time.Now().Add(timeout)
	for {
		s.mu.Lock()
		n := len(s.conns)
		s.mu.Unlock()
		if n == 0 {
			return true
		}
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(time.Millisecond)
	}
}

// Close stops listening.
func (s *streamLayer) Close() error { return s.ln.Close() }

// advertisedAddr is an advertised address kept as given (a host name
// stays a name).
type advertisedAddr string

func (a advertisedAddr) Network() string { return "tcp" }
func (a advertisedAddr) String() string  { return string(a) }

// Addr is the advertised address.
func (s *streamLayer) Addr() net.Addr { return s.advertise }

// Dial connects to a peer and exchanges hellos: it fails when the TLS
// handshake does or the peer belongs to another cluster.
func (s *streamLayer) Dial(address raft.ServerAddress, timeout time.Duration) (net.Conn, error) {
	d := &net.Dialer{Timeout: timeout}
	var c net.Conn
	var err error
	if s.client != nil {
		c, err = (&tls.Dialer{NetDialer: d, Config: s.client}).Dial("tcp", string(address))
	} else {
		c, err = d.Dial("tcp", string(address))
	}
	if err != nil {
		return nil, err
	}
	c.SetDeadline(time.Now().Add(timeout))
	// The dialer speaks first.
	err = writeHello(c, s.id.clusterID())
	var theirs string
	if err == nil {
		theirs, err = readHello(c)
	}
	if err == nil {
		_, err = s.id.agree(theirs, string(address))
	}
	if err != nil {
		c.Close()
		return nil, fmt.Errorf("raft peer %s: %w", address, err)
	}
	c.SetDeadline(time.Time{})
	return c, nil
}

// probe dials a node about to join, at the address Raft will use, and
// hangs up: TLS and the hello must succeed before it becomes a member. A
// node that does not know its cluster yet learns it here.
func (n *Node) probe(ctx context.Context, id, raftAddr string) error {
	if n.stream == nil {
		return fmt.Errorf("%w: %s: an in-memory node has no network", ErrUnreachable, id)
	}
	addr := raftAddr
	if a, ok := n.cfg.PeerDialAddrs[id]; ok {
		addr = a
	}
	timeout := raftTimeout
	if d, ok := ctx.Deadline(); ok {
		timeout = min(timeout, time.Until(d))
	}
	c, err := n.stream.Dial(raft.ServerAddress(addr), timeout)
	if err != nil {
		return fmt.Errorf("%w: %s at %s: %w", ErrUnreachable, id, addr, err)
	}
	return c.Close()
}

// helloConn is an accepted connection that exchanges hellos before its
// first byte of Raft.
type helloConn struct {
	net.Conn
	s     *streamLayer
	once  sync.Once
	err   error
	close sync.Once
}

// Close closes the connection; the transport calls it as its handler ends.
func (c *helloConn) Close() error {
	c.close.Do(func() {
		c.s.mu.Lock()
		delete(c.s.conns, c)
		c.s.mu.Unlock()
	})
	return c.Conn.Close()
}

func (c *helloConn) hello() error {
	c.once.Do(func() {
		c.Conn.SetDeadline(time.Now().Add(raftTimeout))
		defer c.Conn.SetDeadline(time.Time{})
		peer := c.RemoteAddr().String()
		theirs, err := readHello(c.Conn)
		if err != nil {
			c.err = fmt.Errorf("raft hello from %s: %w", peer, err)
			return
		}
		ours, err := c.s.id.agree(theirs, peer)
		// The answer goes out even on a mismatch, so the dialer can say why.
		if werr := writeHello(c.Conn, ours); err == nil {
			err = werr
		}
		if err != nil {
			c.err = fmt.Errorf("raft peer %s: %w", peer, err)
		}
	})
	return c.err
}

func (c *helloConn) Read(p []byte) (int, error) {
	if err := c.hello(); err != nil {
		return 0, err
	}
	return c.Conn.Read(p)
}

func (c *helloConn) Write(p []byte) (int, error) {
	if err := c.hello(); err != nil {
		return 0, err
	}
	return c.Conn.Write(p)
}

// The hello: "RTN" and a version byte, then the cluster id's length in one
// byte and the id ("" when the sender does not know it yet).
var helloMagic = [4]byte{'R', 'T', 'N', 1}

const maxClusterIDLen = 64

func writeHello(w io.Writer, clusterID string) error {
	if len(clusterID) > maxClusterIDLen {
		return fmt.Errorf("cluster id of %d bytes", len(clusterID))
	}
	b := make([]byte, 0, len(helloMagic)+1+len(clusterID))
	b = append(append(append(b, helloMagic[:]...), byte(len(clusterID))), clusterID...)
	_, err := w.Write(b)
	return err
}

func readHello(r io.Reader) (string, error) {
	var h [5]byte
	if _, err := io.ReadFull(r, h[:]); err != nil {
		return "", err
	}
	if [4]byte(h[:4]) != helloMagic {
		return "", errors.New("not a ration Raft peer of this version (no hello)")
	}
	if int(h[4]) > maxClusterIDLen {
		return "", fmt.Errorf("cluster id of %d bytes", h[4])
	}
	id := make([]byte, h[4])
	if _, err := io.ReadFull(r, id); err != nil {
		return "", err
	}
	return string(id), nil
}
