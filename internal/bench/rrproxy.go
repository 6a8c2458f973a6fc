package bench

import (
	"crypto/tls"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httputil"
	"net/url"
	"sync/atomic"
)

// RoundRobinProxy is an HTTP reverse proxy that sends each request to the
// next backend in turn, so consecutive requests of one client, even on
// one connection, land on different nodes. It keeps the client's Host
// header, as a load balancer in front of a registry does.
type RoundRobinProxy struct {
	backends []*url.URL
	next     atomic.Uint64
	proxy    *httputil.ReverseProxy
}

// NewRoundRobinProxy returns a proxy over the backend base URLs. For https
// backends, caCertFile names the CA to verify them against (empty uses
// the system roots).
func NewRoundRobinProxy(backends []string, caCertFile string, logger *slog.Logger) (*RoundRobinProxy, error) {
	if len(backends) == 0 {
		return nil, fmt.Errorf("no backends: pass --backends with the node URLs")
	}
	p := &RoundRobinProxy{}
	for _, b := range backends {
		u, err := url.Parse(b)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			return nil, fmt.Errorf("invalid backend URL %q: use https://HOST:PORT", b)
		}
		p.backends = append(p.backends, u)
	}
	transport := http.DefaultTransport.(*http.Transport).Clone()
	transport.Proxy = nil
	transport.MaxIdleConnsPerHost = 256
	if caCertFile != "" {
		pool, err := loadCertPool(caCertFile)
		if err != nil {
			return nil, err
		}
		transport.TLSClientConfig = &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}
	}
	p.proxy = &httputil.ReverseProxy{
		Rewrite: func(pr *httputil.ProxyRequest) {
			i := (p.next.Add(1) - 1) % uint64(len(p.backends))
			pr.SetURL(p.backends[i])
			pr.Out.Host = pr.In.Host
		},
		Transport: transport,
		// Blob downloads are streamed to the client as they arrive.
		FlushInterval: -1,
		ErrorLog:      slog.NewLogLogger(logger.Handler(), slog.LevelWarn),
	}
	return p, nil
}

// ServeHTTP forwards one request to the next backend.
func (p *RoundRobinProxy) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	p.proxy.ServeHTTP(w, r)
}
