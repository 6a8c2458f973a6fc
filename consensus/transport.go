package consensus

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"sync"
	"time"

	"github.com/hashicorp/raft"
)

// Every node-to-node connection starts, after the TLS handshake, with one
// byte that names its protocol, so Raft and Flotilla's own RPCs share one
// port.
const (
	protoRaft byte = 1
	protoRPC  byte = 2
)

// handshakeTimeout bounds the TLS handshake and the protocol byte of an
// accepted connection.
const handshakeTimeout = 10 * time.Second

// TLSFiles names the PEM files of a node's cluster identity.
type TLSFiles struct {
	Certificate string
	Key         string
	CA          string
}

// peerIdentity holds the host names and addresses a peer certificate
// names. A node is identified by the host of its advertise address.
type peerIdentity struct {
	hosts map[string]bool
}

func identityOf(cert *x509.Certificate) peerIdentity {
	id := peerIdentity{hosts: make(map[string]bool)}
	for _, n := range cert.DNSNames {
		id.hosts[n] = true
	}
	for _, ip := range cert.IPAddresses {
		id.hosts[ip.String()] = true
	}
	return id
}

// names reports whether the certificate names the host of addr.
func (p peerIdentity) names(addr string) bool {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		host = addr
	}
	if ip := net.ParseIP(host); ip != nil {
		host = ip.String()
	}
	return p.hosts[host]
}

// muxLayer is the node's cluster listener: mutual TLS on one TCP port,
// split by the protocol byte into Raft connections (returned by Accept, as
// raft.StreamLayer requires) and RPC connections (returned by the rpc
// listener).
type muxLayer struct {
	ln        net.Listener
	advertise net.Addr
	server    *tls.Config
	cert      tls.Certificate
	roots     *x509.CertPool
	localIP   net.IP
	logger    *slog.Logger
	// member reports whether a peer identity belongs to a cluster member
	// or configured peer; only those may open Raft connections.
	member func(peerIdentity) bool

	raftConns chan net.Conn
	rpc       *chanListener
	done      chan struct{}
	closeOnce sync.Once
}

func loadTLS(files TLSFiles) (tls.Certificate, *x509.CertPool, error) {
	cert, err := tls.LoadX509KeyPair(files.Certificate, files.Key)
	if err != nil {
		return tls.Certificate{}, nil, fmt.Errorf("load cluster certificate %s and key %s: %w", files.Certificate, files.Key, err)
	}
	pem, err := os.ReadFile(files.CA)
	if err != nil {
		return tls.Certificate{}, nil, fmt.Errorf("read cluster CA %s: %w", files.CA, err)
	}
	roots := x509.NewCertPool()
	if !roots.AppendCertsFromPEM(pem) {
		return tls.Certificate{}, nil, fmt.Errorf("cluster CA %s contains no PEM certificate", files.CA)
	}
	return cert, roots, nil
}

func newMuxLayer(bind, advertise string, files TLSFiles, logger *slog.Logger, member func(peerIdentity) bool) (*muxLayer, error) {
	cert, roots, err := loadTLS(files)
	if err != nil {
		return nil, err
	}
	if _, _, err := net.SplitHostPort(advertise); err != nil {
		return nil, fmt.Errorf("cluster advertise address %q: %w", advertise, err)
	}
	// The address stays as configured, not resolved: raft sends it to
	// the peers, which dial it and check that the certificate names its
	// host, and a certificate may name a DNS name only.
	adv := advertiseAddr(advertise)
	ln, err := net.Listen("tcp", bind)
	if err != nil {
		return nil, fmt.Errorf("listen on cluster address %s: %w", bind, err)
	}
	m := &muxLayer{
		ln:        ln,
		advertise: adv,
		cert:      cert,
		roots:     roots,
		logger:    logger,
		member:    member,
		raftConns: make(chan net.Conn),
		done:      make(chan struct{}),
	}
	m.rpc = &chanListener{conns: make(chan net.Conn), done: m.done, closed: make(chan struct{}), addr: ln.Addr()}
	if host, _, err := net.SplitHostPort(bind); err == nil {
		if ip := net.ParseIP(host); ip != nil && !ip.IsUnspecified() {
			m.localIP = ip
		}
	}
	m.server = &tls.Config{
		Certificates: []tls.Certificate{cert},
		ClientAuth:   tls.RequireAndVerifyClientCert,
		ClientCAs:    roots,
		MinVersion:   tls.VersionTLS12,
	}
	go m.acceptLoop()
	return m, nil
}

func (m *muxLayer) acceptLoop() {
	for {
		conn, err := m.ln.Accept()
		if err != nil {
			select {
			case <-m.done:
				return
			default:
			}
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				continue
			}
			m.logger.Error("cluster listener failed", "err", err)
			return
		}
		go m.route(conn)
	}
}

// route completes the TLS handshake, reads the protocol byte and hands the
// connection to Raft or to the RPC server. A Raft connection is accepted
// only from a certificate that names a cluster member or configured peer.
func (m *muxLayer) route(raw net.Conn) {
	conn := tls.Server(raw, m.server)
	_ = conn.SetDeadline(time.Now().Add(handshakeTimeout))
	if err := conn.Handshake(); err != nil {
		m.logger.Warn("cluster connection rejected", "remote", raw.RemoteAddr().String(), "err", err)
		raw.Close()
		return
	}
	var proto [1]byte
	if _, err := conn.Read(proto[:]); err != nil {
		conn.Close()
		return
	}
	_ = conn.SetDeadline(time.Time{})
	id := identityOf(conn.ConnectionState().PeerCertificates[0])
	var out chan net.Conn
	switch proto[0] {
	case protoRaft:
		if !m.member(id) {
			m.logger.Warn("raft connection rejected: certificate names no cluster member",
				"remote", raw.RemoteAddr().String(), "names", hostList(id))
			conn.Close()
			return
		}
		out = m.raftConns
	case protoRPC:
		out = m.rpc.conns
	default:
		m.logger.Warn("cluster connection rejected: unknown protocol", "remote", raw.RemoteAddr().String(), "protocol", proto[0])
		conn.Close()
		return
	}
	select {
	case out <- conn:
	case <-m.done:
		conn.Close()
	}
}

func hostList(id peerIdentity) []string {
	out := make([]string, 0, len(id.hosts))
	for h := range id.hosts {
		out = append(out, h)
	}
	return out
}

// dial opens a mutual TLS connection to a peer for the given protocol.
// The peer's certificate must name the dialed host.
func (m *muxLayer) dial(address string, timeout time.Duration, proto byte) (net.Conn, error) {
	host, _, err := net.SplitHostPort(address)
	if err != nil {
		return nil, fmt.Errorf("cluster address %q: %w", address, err)
	}
	d := net.Dialer{Timeout: timeout}
	if m.localIP != nil {
		d.LocalAddr = &net.TCPAddr{IP: m.localIP}
	}
	raw, err := d.Dial("tcp", address)
	if err != nil {
		return nil, err
	}
	conn := tls.Client(raw, &tls.Config{
		Certificates: []tls.Certificate{m.cert},
		RootCAs:      m.roots,
		ServerName:   host,
		MinVersion:   tls.VersionTLS12,
	})
	_ = conn.SetDeadline(time.Now().Add(timeout))
	if err := conn.Handshake(); err != nil {
		raw.Close()
		return nil, fmt.Errorf("tls handshake with %s: %w", address, err)
	}
	if _, err := conn.Write([]byte{proto}); err != nil {
		conn.Close()
		return nil, err
	}
	_ = conn.SetDeadline(time.Time{})
	return conn, nil
}

// Dial implements raft.StreamLayer.
func (m *muxLayer) Dial(address raft.ServerAddress, timeout time.Duration) (net.Conn, error) {
	return m.dial(string(address), timeout, protoRaft)
}

// Accept implements net.Listener for Raft.
func (m *muxLayer) Accept() (net.Conn, error) {
	select {
	case c := <-m.raftConns:
		return c, nil
	case <-m.done:
		return nil, net.ErrClosed
	}
}

// Close stops the listener; raft's transport calls it on shutdown.
func (m *muxLayer) Close() error {
	var err error
	m.closeOnce.Do(func() {
		close(m.done)
		err = m.ln.Close()
	})
	return err
}

// Addr returns the advertise address, which raft stores in its
// configuration for peers to dial.
func (m *muxLayer) Addr() net.Addr { return m.advertise }

// advertiseAddr is a net.Addr that keeps a host name unresolved.
type advertiseAddr string

func (a advertiseAddr) Network() string { return "tcp" }
func (a advertiseAddr) String() string  { return string(a) }

// chanListener is a net.Listener fed by the mux. It stops when the mux
// closes or when it is closed itself.
type chanListener struct {
	conns     chan net.Conn
	done      chan struct{}
	closed    chan struct{}
	closeOnce sync.Once
	addr      net.Addr
}

func (l *chanListener) Accept() (net.Conn, error) {
	select {
	case c := <-l.conns:
		return c, nil
	case <-l.done:
		return nil, net.ErrClosed
	case <-l.closed:
		return nil, net.ErrClosed
	}
}

func (l *chanListener) Close() error {
	l.closeOnce.Do(func() { close(l.closed) })
	return nil
}

func (l *chanListener) Addr() net.Addr { return l.addr }
