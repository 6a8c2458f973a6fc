package bench

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"net/http"
	"net/http/httputil"
	"net/url"
	"strings"
	"sync"
	"time"
)

// S3Stats are the counters of an S3CountingProxy since it started.
type S3Stats struct {
	// Requests is the number of requests forwarded, failed ones included.
	Requests int64 `json:"requests"`
	// ByOperation counts requests per S3 operation name, as
	// s3Operation derives it from the method, path and query.
	ByOperation map[string]int64 `json:"by_operation"`
	// BytesIn is request body bytes sent to S3, BytesOut response body
	// bytes returned from it.
	BytesIn  int64 `json:"bytes_in"`
	BytesOut int64 `json:"bytes_out"`
}

// S3Usage is the S3 traffic of one phase: the difference of two S3Stats.
type S3Usage struct {
	Requests int64 `json:"requests"`
	// PerOp is Requests divided by the phase's operations (images,
	// blobs, tags).
	PerOp       float64          `json:"per_op"`
	ByOperation map[string]int64 `json:"by_operation"`
	BytesIn     int64            `json:"bytes_in"`
	BytesOut    int64            `json:"bytes_out"`
}

// usageSince returns the traffic between before and s, per op operations.
func (s S3Stats) usageSince(before S3Stats, ops int64) *S3Usage {
	u := &S3Usage{
		Requests:    s.Requests - before.Requests,
		ByOperation: map[string]int64{},
		BytesIn:     s.BytesIn - before.BytesIn,
		BytesOut:    s.BytesOut - before.BytesOut,
	}
	for op, n := range s.ByOperation {
		if d := n - before.ByOperation[op]; d != 0 {
			u.ByOperation[op] = d
		}
	}
	if ops > 0 {
		u.PerOp = float64(u.Requests) / float64(ops)
	}
	return u
}

// S3CountingProxy is an HTTP reverse proxy in front of an S3 server that
// counts the requests passing through it. It keeps the client's Host
// header, so AWS Signature Version 4 signatures made for the proxy's
// address stay valid at the server.
type S3CountingProxy struct {
	proxy *httputil.ReverseProxy

	mu    sync.Mutex
	stats S3Stats
}

// NewS3CountingProxy returns a proxy that forwards to target, an
// http:// or https:// URL of the S3 server.
func NewS3CountingProxy(target string, logger *slog.Logger) (*S3CountingProxy, error) {
	u, err := url.Parse(target)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, fmt.Errorf("invalid S3 target URL %q: use http://HOST:PORT", target)
	}
	p := &S3CountingProxy{stats: S3Stats{ByOperation: map[string]int64{}}}
	transport := http.DefaultTransport.(*http.Transport).Clone()
	transport.Proxy = nil
	transport.MaxIdleConnsPerHost = 256
	p.proxy = &httputil.ReverseProxy{
		Rewrite: func(pr *httputil.ProxyRequest) {
			pr.SetURL(u)
			pr.Out.Host = pr.In.Host
		},
		Transport: transport,
		ErrorLog:  slog.NewLogLogger(logger.Handler(), slog.LevelWarn),
	}
	return p, nil
}

// ServeHTTP counts and forwards one request. The request is counted
// before it is forwarded: a client may see the whole response before
// this handler returns, and a count taken right after its last request
// must include that request. Bytes are added when the handler returns.
func (p *S3CountingProxy) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	op := s3Operation(r)
	p.mu.Lock()
	p.stats.Requests++
	p.stats.ByOperation[op]++
	p.mu.Unlock()
	body := &countingReadCloser{rc: r.Body}
	if r.Body != nil && r.Body != http.NoBody {
		r.Body = body
	}
	cw := &countingWriter{ResponseWriter: w}
	p.proxy.ServeHTTP(cw, r)
	p.mu.Lock()
	p.stats.BytesIn += body.n
	p.stats.BytesOut += cw.n
	p.mu.Unlock()
}

// Stats returns a copy of the counters.
func (p *S3CountingProxy) Stats() S3Stats {
	p.mu.Lock()
	defer p.mu.Unlock()
	s := p.stats
	s.ByOperation = maps.Clone(p.stats.ByOperation)
	return s
}

// StatsHandler serves the counters as JSON on GET.
func (p *S3CountingProxy) StatsHandler() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(p.Stats())
	})
}

// s3Operation names the S3 API operation of a path-style request.
func s3Operation(r *http.Request) string {
	q := r.URL.Query()
	path := strings.Trim(r.URL.Path, "/")
	bucketOnly := path != "" && !strings.Contains(path, "/")
	has := func(key string) bool { _, ok := q[key]; return ok }
	copySource := r.Header.Get("X-Amz-Copy-Source") != ""
	switch r.Method {
	case http.MethodGet:
		switch {
		case path == "":
			return "ListBuckets"
		case has("uploadId"):
			return "ListParts"
		case has("uploads"):
			return "ListMultipartUploads"
		case bucketOnly && has("location"):
			return "GetBucketLocation"
		case bucketOnly:
			return "ListObjects"
		default:
			return "GetObject"
		}
	case http.MethodHead:
		if bucketOnly {
			return "HeadBucket"
		}
		return "HeadObject"
	case http.MethodPut:
		switch {
		case has("partNumber") && copySource:
			return "UploadPartCopy"
		case has("partNumber"):
			return "UploadPart"
		case copySource:
			return "CopyObject"
		case bucketOnly:
			return "CreateBucket"
		default:
			return "PutObject"
		}
	case http.MethodPost:
		switch {
		case has("uploads"):
			return "CreateMultipartUpload"
		case has("uploadId"):
			return "CompleteMultipartUpload"
		case has("delete"):
			return "DeleteObjects"
		}
	case http.MethodDelete:
		switch {
		case has("uploadId"):
			return "AbortMultipartUpload"
		case bucketOnly:
			return "DeleteBucket"
		default:
			return "DeleteObject"
		}
	}
	return "Other"
}

type countingReadCloser struct {
	rc io.ReadCloser
	n  int64
}

func (c *countingReadCloser) Read(p []byte) (int, error) {
	n, err := c.rc.Read(p)
	c.n += int64(n)
	return n, err
}

func (c *countingReadCloser) Close() error { return c.rc.Close() }

// countingWriter counts the response body bytes. It keeps http.Flusher
// working through Unwrap, which ReverseProxy's ResponseController uses.
type countingWriter struct {
	http.ResponseWriter
	n int64
}

func (c *countingWriter) Write(p []byte) (int, error) {
	n, err := c.ResponseWriter.Write(p)
	c.n += int64(n)
	return n, err
}

func (c *countingWriter) Unwrap() http.ResponseWriter { return c.ResponseWriter }

// S3StatsClient reads the counters of an S3CountingProxy.
type S3StatsClient struct {
	url  string
	http *http.Client
}

// NewS3StatsClient returns a client for the stats URL of a proxy.
func NewS3StatsClient(statsURL string) *S3StatsClient {
	return &S3StatsClient{url: statsURL, http: &http.Client{
		Timeout:   10 * time.Second,
		Transport: &http.Transport{Proxy: nil},
	}}
}

// Read returns the proxy's current counters.
func (c *S3StatsClient) Read(ctx context.Context) (S3Stats, error) {
	var s S3Stats
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, c.url, nil)
	if err != nil {
		return s, err
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return s, fmt.Errorf("read S3 request counters: %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return s, fmt.Errorf("read S3 request counters from %s: status %d", c.url, resp.StatusCode)
	}
	if err := json.NewDecoder(resp.Body).Decode(&s); err != nil {
		return s, fmt.Errorf("read S3 request counters from %s: %w", c.url, err)
	}
	return s, nil
}
