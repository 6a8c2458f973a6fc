package bench

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"strings"
	"sync/atomic"
	"time"
)

// userAgent is sent with every request, so registry logs show the bench.
const userAgent = "flotilla-bench/1"

// maxErrorBody is how much of an error response is read for its message.
const maxErrorBody = 4 << 10

// ClientConfig configures a Client.
type ClientConfig struct {
	// URL is the registry's base URL, such as https://127.0.0.1:5000. A
	// path, if any, is the prefix before /v2/. Several comma-separated
	// URLs (the nodes of one cluster) are used in turn, one per request
	// that does not follow a Location or Link header.
	URL string
	// Username and Password are sent as Basic credentials with every
	// request. Both empty sends none.
	Username string
	Password string
	// CACertFile is a PEM file of the CA that the registry's certificate
	// is verified against. Empty uses the system roots.
	CACertFile string
	// Connections is the maximum number of idle connections kept open to
	// the registry, usually the number of concurrent clients.
	Connections int
	// HTTP2 allows HTTP/2 over TLS. By default every client uses its own
	// HTTP/1.1 connection, as separate docker processes do.
	HTTP2 bool
}

// Client sends OCI Distribution API requests. It is safe for concurrent
// use.
type Client struct {
	bases    []*url.URL
	next     atomic.Uint64
	username string
	password string
	http     *http.Client
}

// StatusError is an unexpected HTTP status from the registry.
type StatusError struct {
	Method string
	Path   string
	Status int
	// Code and Message are the first error of the OCI error body, if any.
	Code    string
	Message string
}

func (e *StatusError) Error() string {
	msg := fmt.Sprintf("%s %s: status %d", e.Method, e.Path, e.Status)
	if e.Code != "" {
		msg += " " + e.Code
	}
	if e.Message != "" {
		msg += ": " + e.Message
	}
	return msg
}

// NewClient returns a client for the registry at cfg.URL.
func NewClient(cfg ClientConfig) (*Client, error) {
	var bases []*url.URL
	for _, raw := range strings.Split(cfg.URL, ",") {
		base, err := parseBaseURL(strings.TrimSpace(raw))
		if err != nil {
			return nil, err
		}
		bases = append(bases, base)
	}
	transport := http.DefaultTransport.(*http.Transport).Clone()
	transport.Proxy = nil
	transport.MaxIdleConns = 0
	transport.MaxIdleConnsPerHost = max(cfg.Connections, 2)
	transport.ForceAttemptHTTP2 = cfg.HTTP2
	if cfg.CACertFile != "" {
		pool, err := loadCertPool(cfg.CACertFile)
		if err != nil {
			return nil, err
		}
		transport.TLSClientConfig = &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}
	}
	return &Client{
		bases:    bases,
		username: cfg.Username,
		password: cfg.Password,
		http:     &http.Client{Transport: transport},
	}, nil
}

// parseBaseURL checks that raw is an http or https URL without
// credentials, query or fragment.
func parseBaseURL(raw string) (*url.URL, error) {
	if raw == "" {
		return nil, errors.New("missing registry URL: set --url, for example https://127.0.0.1:5000")
	}
	u, err := url.Parse(raw)
	if err != nil {
		return nil, fmt.Errorf("invalid registry URL %q: %w", raw, err)
	}
	switch {
	case u.Scheme != "http" && u.Scheme != "https":
		return nil, fmt.Errorf("invalid registry URL %q: the scheme must be http or https", raw)
	case u.Host == "":
		return nil, fmt.Errorf("invalid registry URL %q: missing host", raw)
	case u.User != nil:
		return nil, fmt.Errorf("invalid registry URL: it contains credentials; pass them with --username and --password")
	case u.RawQuery != "" || u.Fragment != "":
		return nil, fmt.Errorf("invalid registry URL %q: remove the query or fragment", raw)
	}
	u.Path = strings.TrimSuffix(u.Path, "/")
	return u, nil
}

// loadCertPool returns a pool with the certificates of a PEM file.
func loadCertPool(path string) (*x509.CertPool, error) {
	pem, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read CA certificate: %w", err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pem) {
		return nil, fmt.Errorf("CA certificate %s contains no PEM certificate", path)
	}
	return pool, nil
}

// URL returns the registry's base URLs, comma-separated.
func (c *Client) URL() string {
	urls := make([]string, len(c.bases))
	for i, b := range c.bases {
		urls[i] = b.String()
	}
	return strings.Join(urls, ",")
}

// apiURL returns the absolute URL of an API path such as "/v2/" on the
// next base URL.
func (c *Client) apiURL(path string) string {
	base := c.bases[0]
	if len(c.bases) > 1 {
		base = c.bases[(c.next.Add(1)-1)%uint64(len(c.bases))]
	}
	return base.Scheme + "://" + base.Host + base.Path + path
}

// resolve returns the absolute URL of a Location or Link target, which
// may be relative to the request that returned it.
func resolve(from *url.URL, ref string) (*url.URL, error) {
	u, err := url.Parse(ref)
	if err != nil {
		return nil, fmt.Errorf("invalid Location %q: %w", ref, err)
	}
	return from.ResolveReference(u), nil
}

// request describes one API call.
type request struct {
	method string
	// url is absolute; path names the call in errors and is used when
	// url is empty.
	url    string
	path   string
	body   io.Reader
	length int64 // -1 sends the body chunked
	header http.Header
	// want lists the statuses that count as success.
	want []int
}

// send performs r and returns the response when its status is one of
// r.want. Otherwise it reads the OCI error and returns a *StatusError.
// The caller closes the body of a returned response.
func (c *Client) send(ctx context.Context, r request) (*http.Response, error) {
	target := r.url
	if target == "" {
		target = c.apiURL(r.path)
	}
	req, err := http.NewRequestWithContext(ctx, r.method, target, r.body)
	if err != nil {
		return nil, err
	}

	req.ContentLength = r.length
	if r.body == nil {
		req.ContentLength = 0
	}
	for k, vs := range r.header {
		req.Header[k] = vs
	}
	req.Header.Set("User-Agent", userAgent)
	if c.username != "" || c.password != "" {
		req.SetBasicAuth(c.username, c.password)
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return nil, err
	}

	for _, s := range r.want {
		if resp.StatusCode == s {
			return resp, nil
		}
	}
	defer resp.Body.Close()
	return nil, readStatusError(r.method, req.URL.Path, resp)
}

// readStatusError builds a *StatusError from an unexpected response.
func readStatusError(method, path string, resp *http.Response) error {
	body, _ := io.ReadAll(io.LimitReader(resp.Body, maxErrorBody))
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 1<<20))
	e := &StatusError{Method: method, Path: path, Status: resp.StatusCode}
	var oci struct {
		Errors []struct {
			Code    string `json:"code"`
			Message string `json:"message"`
		} `json:"errors"`
	}
	if json.Unmarshal(body, &oci) == nil && len(oci.Errors) > 0 {
		e.Code, e.Message = oci.Errors[0].Code, oci.Errors[0].Message
	}
	return e
}

// drain reads what is left of a response body and closes it, so the
// connection can be reused.
func drain(resp *http.Response) {
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 1<<20))
	resp.Body.Close()
}

// Ping sends GET /v2/ and returns the HTTP status. Any status is a
// successful ping; only a transport error is returned as an error.
func (c *Client) Ping(ctx context.Context) (int, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, c.apiURL("/v2/"), nil)
	if err != nil {
		return 0, err
	}
	req.Header.Set("User-Agent", userAgent)
	if c.username != "" || c.password != "" {
		req.SetBasicAuth(c.username, c.password)
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return 0, err
	}
	drain(resp)
	return resp.StatusCode, nil
}

// CloseIdle closes the idle connections to the registry.
func (c *Client) CloseIdle() { c.http.CloseIdleConnections() }

// withTimeout returns ctx bounded by d, or ctx itself when d is zero.
func withTimeout(ctx context.Context, d time.Duration) (context.Context, context.CancelFunc) {
	if d <= 0 {
		return context.WithCancel(ctx)
	}
	return context.WithTimeout(ctx, d)
}
