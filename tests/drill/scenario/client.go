package scenario

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/opencontainers/go-digest"
)

// Limits of one request of the drill client.
const (
	// requestTimeout bounds one HTTP request, body included. A request
	// sent to a paused node hangs until it ends.
	requestTimeout = 20 * time.Second
	// maxBodyBytes bounds a response body the client reads.
	maxBodyBytes = 64 << 20
	// maxErrorBytes bounds the part of an error response kept in messages.
	maxErrorBytes = 512
)

// ErrNotFound is returned for a 404 response: the registry does not have
// the manifest or blob.
var ErrNotFound = errors.New("not found")

// slowRequest is the latency from which a request is listed as slow.
const slowRequest = time.Second

// maxSlowRequests is how many slow requests Counts keeps.
const maxSlowRequests = 10

// Counts are the HTTP requests sent and failed, shared by clients.
// A request failed when it got no response or a 5xx status; a request
// that the caller cancelled is sent but not failed.
type Counts struct {
	Sent   atomic.Int64
	Failed atomic.Int64

	mu   sync.Mutex
	slow []SlowRequest
}

// SlowRequest is one request that took slowRequest or longer.
type SlowRequest struct {
	// AtMS is when the request started, in milliseconds since the Unix
	// epoch; the report makes it relative to the drill's start.
	AtMS       int64  `json:"at_ms"`
	DurationMS int64  `json:"duration_ms"`
	Request    string `json:"request"`
	Outcome    string `json:"outcome"`
}

// noteSlow keeps the maxSlowRequests slowest requests.
func (c *Counts) noteSlow(r SlowRequest) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.slow = append(c.slow, r)
	sort.Slice(c.slow, func(i, j int) bool { return c.slow[i].DurationMS > c.slow[j].DurationMS })
	if len(c.slow) > maxSlowRequests {
		c.slow = c.slow[:maxSlowRequests]
	}
}

// Slow returns the slowest requests, slowest first.
func (c *Counts) Slow() []SlowRequest {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]SlowRequest(nil), c.slow...)
}

// Client speaks the OCI Distribution API to one address with Basic
// credentials.
type Client struct {
	base       *url.URL
	http       *http.Client
	user, pass string
	counts     *Counts
}

// NewClient returns a client of base (https://host:port) that verifies the
// server certificate against roots for serverName. A nil counts counts
// nothing.
func NewClient(base, serverName string, roots *x509.CertPool, user, pass string, counts *Counts) *Client {
	u, err := url.Parse(base)
	if err != nil {
		panic(fmt.Sprintf("drill client base URL %q: %v", base, err))
	}
	transport := &http.Transport{
		TLSClientConfig:     &tls.Config{RootCAs: roots, ServerName: serverName, MinVersion: tls.VersionTLS12},
		MaxIdleConnsPerHost: 8,
		IdleConnTimeout:     30 * time.Second,
		TLSHandshakeTimeout: 5 * time.Second,
		ForceAttemptHTTP2:   true,
	}
	return &Client{
		base:   u,
		http:   &http.Client{Transport: transport, Timeout: requestTimeout},
		user:   user,
		pass:   pass,
		counts: counts,
	}
}

// Close drops the client's idle connections.
func (c *Client) Close() { c.http.CloseIdleConnections() }

// request describes one API call.
type request struct {
	method string
	// target is a path, or a URL (an upload Location) that resolves
	// against the base.
	target string
	header http.Header
	body   []byte
	// expect lists the statuses that count as success.
	expect []int
}

// response is a successful response with its body read.
type response struct {
	status int
	header http.Header
	body   []byte
}

// do sends r and returns the response when its status is in r.expect. A
// 404 returns an error that matches ErrNotFound.
func (c *Client) do(ctx context.Context, r request) (*response, error) {
	ref, err := url.Parse(r.target)
	if err != nil {
		return nil, fmt.Errorf("invalid target %q: %w", r.target, err)
	}
	var body io.Reader
	if r.body != nil {
		body = bytes.NewReader(r.body)
	}
	req, err := http.NewRequestWithContext(ctx, r.method, c.base.ResolveReference(ref).String(), body)
	if err != nil {
		return nil, err
	}
	for k, v := range r.header {
		req.Header[k] = v
	}
	req.SetBasicAuth(c.user, c.pass)
	if c.counts != nil {
		c.counts.Sent.Add(1)
	}

	start := time.Now()
	resp, err := c.http.Do(req)
	var data []byte
	if err == nil {
		data, err = io.ReadAll(io.LimitReader(resp.Body, maxBodyBytes))
		resp.Body.Close()
	}
	c.observe(ctx, r.method+" "+ref.Path, start, resp, err)
	if err != nil {
		return nil, fmt.Errorf("%s %s: %w", r.method, ref.Path, err)
	}

	for _, s := range r.expect {
		if resp.StatusCode == s {
			return &response{status: resp.StatusCode, header: resp.Header, body: data}, nil
		}
	}
	msg := strings.TrimSpace(string(data[:min(len(data), maxErrorBytes)]))
	err = fmt.Errorf("%s %s: status %d: %s", r.method, ref.Path, resp.StatusCode, msg)
	if resp.StatusCode == http.StatusNotFound {
		err = fmt.Errorf("%w: %w", ErrNotFound, err)
	}
	return nil, err
}

// observe counts a finished request as failed when it got no complete
// answer or a 5xx status, unless the caller cancelled it, and notes it
// when it was slow.
func (c *Client) observe(ctx context.Context, request string, start time.Time, resp *http.Response, err error) {
	if c.counts == nil {
		return
	}
	outcome := ""
	switch {
	case err != nil && errors.Is(ctx.Err(), context.Canceled):
		return
	case err != nil:
		outcome = err.Error()
		c.counts.Failed.Add(1)
	case resp.StatusCode >= 500:
		outcome = resp.Status
		c.counts.Failed.Add(1)
	default:
		outcome = resp.Status
	}
	if took := time.Since(start); took >= slowRequest {
		c.counts.noteSlow(SlowRequest{
			AtMS: start.UnixMilli(), DurationMS: took.Milliseconds(), Request: request, Outcome: outcome,
		})
	}
}

// Probe sends an unauthenticated GET to path and returns the status.
func (c *Client) Probe(ctx context.Context, path string) (int, error) {
	ctx, cancel := context.WithTimeout(ctx, 3*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, c.base.JoinPath(path).String(), nil)
	if err != nil {
		return 0, err
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return 0, err
	}
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, maxErrorBytes))
	resp.Body.Close()
	return resp.StatusCode, nil
}

// PushBlob uploads data the way docker does: POST to open an upload
// session, one PATCH per chunk, then PUT with the digest and no body.
// Every request may reach another node behind the load balancer.
func (c *Client) PushBlob(ctx context.Context, repo string, data []byte, chunks int) (digest.Digest, error) {
	d := digest.FromBytes(data)
	resp, err := c.do(ctx, request{
		method: http.MethodPost,
		target: "/v2/" + repo + "/blobs/uploads/",
		expect: []int{http.StatusAccepted},
	})
	if err != nil {
		return "", err
	}
	location := resp.header.Get("Location")
	chunkSize := (len(data) + chunks - 1) / max(chunks, 1)
	for start := 0; start < len(data); start += chunkSize {
		end := min(start+chunkSize, len(data))
		h := http.Header{}
		h.Set("Content-Type", "application/octet-stream")
		if chunks > 1 {
			// docker sends one PATCH without a range; a chunked upload
			// names the range of each chunk.
			h.Set("Content-Range", fmt.Sprintf("%d-%d", start, end-1))
		}
		resp, err = c.do(ctx, request{
			method: http.MethodPatch, target: location, header: h,
			body: data[start:end], expect: []int{http.StatusAccepted},
		})
		if err != nil {
			return "", err
		}
		location = resp.header.Get("Location")
	}
	target, err := withQuery(location, "digest", d.String())
	if err != nil {
		return "", err
	}
	_, err = c.do(ctx, request{method: http.MethodPut, target: target, expect: []int{http.StatusCreated}})
	return d, err
}

// withQuery adds key=value to the query of the URL or path loc.
func withQuery(loc, key, value string) (string, error) {
	u, err := url.Parse(loc)
	if err != nil {
		return "", fmt.Errorf("invalid upload location %q: %w", loc, err)
	}
	q := u.Query()
	q.Set(key, value)
	u.RawQuery = q.Encode()
	return u.String(), nil
}

// PutManifest uploads a manifest under tag. Success means the registry
// acknowledged the push.
func (c *Client) PutManifest(ctx context.Context, repo, tag, mediaType string, body []byte) error {
	h := http.Header{}
	h.Set("Content-Type", mediaType)
	resp, err := c.do(ctx, request{
		method: http.MethodPut, target: "/v2/" + repo + "/manifests/" + tag,
		header: h, body: body, expect: []int{http.StatusCreated},
	})
	if err != nil {
		return err
	}
	if got, want := resp.header.Get("Docker-Content-Digest"), digest.FromBytes(body).String(); got != want {
		return fmt.Errorf("manifest %s:%s acknowledged with digest %q, want %s", repo, tag, got, want)
	}
	return nil
}

// GetManifest returns the manifest bytes stored under ref.
func (c *Client) GetManifest(ctx context.Context, repo, ref, mediaType string) ([]byte, error) {
	h := http.Header{}
	h.Set("Accept", mediaType)
	resp, err := c.do(ctx, request{
		method: http.MethodGet, target: "/v2/" + repo + "/manifests/" + ref,
		header: h, expect: []int{http.StatusOK},
	})
	if err != nil {
		return nil, err
	}
	return resp.body, nil
}

// GetBlob returns the content of a blob.
func (c *Client) GetBlob(ctx context.Context, repo string, d digest.Digest) ([]byte, error) {
	resp, err := c.do(ctx, request{
		method: http.MethodGet, target: "/v2/" + repo + "/blobs/" + d.String(),
		expect: []int{http.StatusOK},
	})
	if err != nil {
		return nil, err
	}
	return resp.body, nil
}
