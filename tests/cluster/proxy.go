package cluster

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httputil"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// Limits of the proxy.
const (
	// proxyHealthInterval is how often the proxy polls each backend's
	// /readyz, as a load balancer's health check does.
	proxyHealthInterval = 200 * time.Millisecond
	// proxyReplayLimit is the largest request body that the proxy keeps
	// in memory, so it can send the request to another backend when the
	// connection to the first one cannot be opened.
	proxyReplayLimit = 16 << 20
	// proxyDialTimeout bounds connecting to a backend, TLS included.
	proxyDialTimeout = 3 * time.Second
	// ProxyErrorHeader marks the 502 responses that the proxy itself
	// writes when a backend failed after the request was sent.
	ProxyErrorHeader = "X-Cluster-Proxy-Error"
)

// Proxy is an HTTPS reverse proxy on 127.0.0.1 in front of the nodes,
// like the load balancer of a compose deployment. It terminates TLS with
// the cluster's API certificate and sends each request, not each
// connection, to the next ready backend in turn, over a new TLS
// connection. It keeps Host and Location headers as they are.
//
// A backend is skipped while its /readyz does not return 200. When the
// connection to a backend cannot be opened (refused, reset during the
// TLS handshake), the request goes to the next backend: no byte of it
// reached the first one. A backend that fails after the request was sent
// gets a 502 with ProxyErrorHeader, and the failure is counted.
type Proxy struct {
	// URL is https://HOST, and Host the host:port that clients name.
	URL  string
	Host string

	cluster   *Cluster
	server    *http.Server
	transport *http.Transport
	stop      chan struct{}
	wg        sync.WaitGroup

	mu       sync.Mutex
	backends []*backend
	next     int
	failures []string // the last backend failures, for messages

	requests      atomic.Int64
	dialRetries   atomic.Int64
	backendErrors atomic.Int64
}

// backend is one node behind the proxy.
type backend struct {
	node     *Node
	ready    atomic.Bool
	requests atomic.Int64
}

// ProxyStats counts what the proxy did.
type ProxyStats struct {
	// Requests is the number of requests received.
	Requests int64
	// DialRetries counts requests sent to another backend after a
	// failed connection attempt.
	DialRetries int64
	// BackendErrors counts requests that failed after they were sent:
	// the backend closed or reset the connection, or timed out.
	BackendErrors int64
	// PerBackend maps each node id to the requests sent to it.
	PerBackend map[string]int64
	// LastFailures lists the last backend failures.
	LastFailures []string
}

// dialError marks an error of opening a backend connection.
type dialError struct{ err error }

func (e *dialError) Error() string { return "connect to backend: " + e.err.Error() }
func (e *dialError) Unwrap() error { return e.err }

// StartProxy starts the proxy in front of nodes, or of every member when
// nodes is empty, and stops it when the test ends.
func StartProxy(t testing.TB, c *Cluster, nodes ...*Node) *Proxy {
	t.Helper()
	return startProxy(t, c, true, nodes...)
}

// startProxy starts the proxy, with or without health checks.
func startProxy(t testing.TB, c *Cluster, healthChecks bool, nodes ...*Node) *Proxy {
	t.Helper()
	if len(nodes) == 0 {
		nodes = c.Members()
	}
	cert, err := tls.LoadX509KeyPair(c.APICertFile, c.APIKeyFile)
	if err != nil {
		t.Fatalf("load proxy certificate: %v", err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("proxy listen: %v", err)
	}

	p := &Proxy{
		Host:    ln.Addr().String(),
		cluster: c,
		stop:    make(chan struct{}),
	}
	p.URL = "https://" + p.Host
	p.transport = p.newTransport()
	p.SetBackends(nodes...)

	rp := &httputil.ReverseProxy{
		Rewrite:      p.rewrite,
		Transport:    roundTripFunc(p.roundTrip),
		ErrorHandler: p.handleError,
	}
	p.server = &http.Server{
		Handler:           p.bufferBody(rp),
		TLSConfig:         &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12},
		ReadHeaderTimeout: 30 * time.Second,
	}

	tlsLn := tls.NewListener(ln, p.server.TLSConfig)
	p.wg.Go(func() { _ = p.server.Serve(tlsLn) })
	if healthChecks {
		p.wg.Go(p.checkHealth)
	}
	t.Cleanup(p.close)
	return p
}

// SetBackends replaces the nodes behind the proxy. A new backend counts
// as ready until its first health check reports otherwise.
func (p *Proxy) SetBackends(nodes ...*Node) {
	p.mu.Lock()
	defer p.mu.Unlock()
	old := map[*Node]*backend{}
	for _, b := range p.backends {
		old[b.node] = b
	}
	p.backends = nil
	for _, n := range nodes {
		b := old[n]
		if b == nil {
			b = &backend{node: n}
			b.ready.Store(true)
		}
		p.backends = append(p.backends, b)
	}
}

// Client returns a registry client for the proxy.
func (p *Proxy) Client() *Client {
	return p.cluster.ClientFor("proxy", p.URL)
}

// Stats returns the proxy's counters.
func (p *Proxy) Stats() ProxyStats {
	p.mu.Lock()
	defer p.mu.Unlock()
	st := ProxyStats{
		Requests:      p.requests.Load(),
		DialRetries:   p.dialRetries.Load(),
		BackendErrors: p.backendErrors.Load(),
		PerBackend:    map[string]int64{},
		LastFailures:  append([]string(nil), p.failures...),
	}
	for _, b := range p.backends {
		st.PerBackend[b.node.ID] = b.requests.Load()
	}
	return st
}

func (p *Proxy) newTransport() *http.Transport {
	tlsConfig := p.cluster.TLSConfig()
	tlsConfig.ClientSessionCache = tls.NewLRUClientSessionCache(64)
	dialer := &net.Dialer{Timeout: proxyDialTimeout}
	return &http.Transport{
		// A new connection per request: a request is then never written
		// onto a kept-alive connection that the backend is closing,
		// which would leave its fate unknown.
		DisableKeepAlives: true,
		DialTLSContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
			ctx, cancel := context.WithTimeout(ctx, proxyDialTimeout)
			defer cancel()
			raw, err := dialer.DialContext(ctx, network, addr)
			if err != nil {
				return nil, &dialError{err}
			}
			host, _, _ := net.SplitHostPort(addr)
			config := tlsConfig.Clone()
			config.ServerName = host
			conn := tls.Client(raw, config)
			if err := conn.HandshakeContext(ctx); err != nil {
				raw.Close()
				return nil, &dialError{err}
			}
			return conn, nil
		},
		ResponseHeaderTimeout: 2 * time.Minute,
	}
}

// bufferBody keeps request bodies up to proxyReplayLimit in memory, so
// roundTrip can send them again to another backend.
func (p *Proxy) bufferBody(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		p.requests.Add(1)
		if r.Body != nil && r.Body != http.NoBody {
			data, err := io.ReadAll(io.LimitReader(r.Body, proxyReplayLimit+1))
			if err != nil {
				http.Error(w, "proxy: read request body: "+err.Error(), http.StatusBadRequest)
				return
			}
			if len(data) <= proxyReplayLimit {
				r.Body = io.NopCloser(bytes.NewReader(data))
				r.GetBody = func() (io.ReadCloser, error) {
					return io.NopCloser(bytes.NewReader(data)), nil
				}
			} else {
				r.Body = readCloser{io.MultiReader(bytes.NewReader(data), r.Body), r.Body}
			}
		}
		next.ServeHTTP(w, r)
	})
}

// rewrite keeps the client's Host header and leaves the choice of the
// backend to roundTrip.
func (p *Proxy) rewrite(pr *httputil.ProxyRequest) {
	pr.Out.URL.Scheme = "https"
	pr.Out.Host = pr.In.Host
	if pr.In.GetBody != nil {
		pr.Out.GetBody = pr.In.GetBody
	}
}

// pick returns the next ready backend other than those in skip, or the
// next one of all when none is ready.
func (p *Proxy) pick(skip map[*backend]bool) *backend {
	p.mu.Lock()
	defer p.mu.Unlock()
	count := len(p.backends)
	for pass := range 2 {
		for i := range count {
			b := p.backends[(p.next+i)%count]
			if skip[b] || (pass == 0 && !b.ready.Load()) {
				continue
			}
			p.next = (p.next + i + 1) % count
			return b
		}
	}
	b := p.backends[p.next%count]
	p.next = (p.next + 1) % count
	return b
}

// roundTrip sends the request to the next ready backend, and to
// another one when the connection could not be opened and the body can
// be sent again.
func (p *Proxy) roundTrip(req *http.Request) (*http.Response, error) {
	tried := map[*backend]bool{}
	b := p.pick(tried)
	for {
		req.URL.Host = b.node.APIAddr
		b.requests.Add(1)
		resp, err := p.transport.RoundTrip(req)
		if err == nil {
			return resp, nil
		}
		err = fmt.Errorf("backend %s: %w", b.node.ID, err)
		var de *dialError
		if !errors.As(err, &de) {
			return nil, err
		}
		b.ready.Store(false)
		tried[b] = true
		if len(tried) >= p.backendCount() || (req.Body != nil && req.Body != http.NoBody && req.GetBody == nil) {
			return nil, err
		}
		if req.GetBody != nil {
			body, gerr := req.GetBody()
			if gerr != nil {
				return nil, err
			}
			req = req.Clone(req.Context())
			req.Body = body
		}
		b = p.pick(tried)
		p.dialRetries.Add(1)
	}
}

func (p *Proxy) backendCount() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return len(p.backends)
}

// handleError responds with 502 to a request that failed at the backend.
func (p *Proxy) handleError(w http.ResponseWriter, r *http.Request, err error) {
	var de *dialError
	if !errors.As(err, &de) {
		p.backendErrors.Add(1)
	}
	msg := fmt.Sprintf("%s %s %s: %v", time.Now().Format("15:04:05.000"), r.Method, r.URL.Path, err)
	p.mu.Lock()
	p.failures = append(p.failures, msg)
	if len(p.failures) > 20 {
		p.failures = p.failures[len(p.failures)-20:]
	}
	p.mu.Unlock()
	w.Header().Set(ProxyErrorHeader, "backend")
	http.Error(w, "proxy: "+err.Error(), http.StatusBadGateway)
}

// checkHealth polls every backend's /readyz until the proxy closes.
func (p *Proxy) checkHealth() {
	client := &http.Client{Transport: &http.Transport{TLSClientConfig: p.cluster.TLSConfig()}, Timeout: time.Second}
	defer client.CloseIdleConnections()
	ticker := time.NewTicker(proxyHealthInterval)
	defer ticker.Stop()
	for {
		p.mu.Lock()
		backends := append([]*backend(nil), p.backends...)
		p.mu.Unlock()
		for _, b := range backends {
			resp, err := client.Get(b.node.URL + "/readyz")
			ready := err == nil && resp.StatusCode == http.StatusOK
			if err == nil {
				_, _ = io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
			}
			b.ready.Store(ready)
		}
		select {
		case <-p.stop:
			return
		case <-ticker.C:
		}
	}
}

func (p *Proxy) close() {
	close(p.stop)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := p.server.Shutdown(ctx); err != nil {
		_ = p.server.Close()
	}
	p.wg.Wait()
	p.transport.CloseIdleConnections()
}

type roundTripFunc func(*http.Request) (*http.Response, error)

func (f roundTripFunc) RoundTrip(r *http.Request) (*http.Response, error) { return f(r) }

// readCloser reads from one reader and closes another.
type readCloser struct {
	io.Reader
	io.Closer
}
