package cluster

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync/atomic"

	"github.com/opencontainers/go-digest"
	v1 "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/flotilla-registry/flotilla/tests/harness"
)

// maxResponseBody bounds the body that Client reads into memory.
const maxResponseBody = 64 << 20

// manifestAccept is the Accept header of a manifest GET, the list a
// Docker pull sends.
var manifestAccept = strings.Join([]string{
	v1.MediaTypeImageManifest,
	v1.MediaTypeImageIndex,
	"application/vnd.docker.distribution.manifest.v2+json",
	"application/vnd.docker.distribution.manifest.list.v2+json",
}, ", ")

// Client is a small OCI Distribution client for one base URL, a node or
// the proxy. It reads every response body into memory and never retries:
// the tests decide what a failure means.
type Client struct {
	// Name labels the target in messages, such as n1 or proxy.
	Name    string
	BaseURL string
	HTTP    *http.Client
	// Username and Password are sent as Basic credentials unless the
	// request already has an Authorization header or Username is empty.
	Username string
	Password string
	// ConnRetries is how often a request is sent again after a
	// connection error (see IsConnectionError), 0 by default. A 5xx
	// response is never retried.
	ConnRetries int

	retries atomic.Int64
}

// Response is a complete HTTP response.
type Response struct {
	Status int
	Header http.Header
	Body   []byte
}

// StatusError is a response with an unexpected status.
type StatusError struct {
	Target string // client name
	Method string
	Path   string
	Status int
	// Code and Message are the first entry of the OCI error body, if
	// any.
	Code       string
	Message    string
	RetryAfter string
	Body       string
}

func (e *StatusError) Error() string {
	msg := fmt.Sprintf("%s %s on %s returned %d", e.Method, e.Path, e.Target, e.Status)
	if e.Code != "" {
		msg += " " + e.Code
	}
	if e.Message != "" {
		msg += ": " + e.Message
	}
	if e.Code == "" && e.Body != "" {
		msg += ": " + truncate(e.Body, 256)
	}
	return msg
}

// ociErrors is the error body of the OCI Distribution API.
type ociErrors struct {
	Errors []struct {
		Code    string `json:"code"`
		Message string `json:"message"`
	} `json:"errors"`
}

// Do sends one request. target is a path, or a Location header value
// (relative or absolute), resolved against BaseURL.
func (c *Client) Do(ctx context.Context, method, target string, header http.Header, body []byte) (*Response, error) {
	u, err := c.resolve(target)
	if err != nil {
		return nil, err
	}
	resp, err := c.roundTrip(ctx, method, u, header, body)
	for retry := 0; err != nil && retry < c.ConnRetries && IsConnectionError(err) && ctx.Err() == nil; retry++ {
		c.retries.Add(1)
		resp, err = c.roundTrip(ctx, method, u, header, body)
	}
	if err != nil {
		return nil, fmt.Errorf("%s %s on %s: %w", method, u.Path, c.Name, err)
	}
	return resp, nil
}

// Retries returns how many requests were sent again after a connection
// error.
func (c *Client) Retries() int64 {
	return c.retries.Load()
}

func (c *Client) roundTrip(ctx context.Context, method string, u *url.URL, header http.Header, body []byte) (*Response, error) {
	var reader io.Reader
	if body != nil {
		reader = bytes.NewReader(body)
	}
	req, err := http.NewRequestWithContext(ctx, method, u.String(), reader)
	if err != nil {
		return nil, err
	}
	for key, values := range header {
		req.Header[key] = values
	}
	if c.Username != "" && req.Header.Get("Authorization") == "" {
		req.SetBasicAuth(c.Username, c.Password)
	}
	resp, err := c.HTTP.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, maxResponseBody))
	if err != nil {
		return nil, fmt.Errorf("read body: %w", err)
	}
	return &Response{Status: resp.StatusCode, Header: resp.Header, Body: data}, nil
}

// expect returns a StatusError unless resp has one of the statuses.
func (c *Client) expect(method, target string, resp *Response, statuses ...int) error {
	for _, s := range statuses {
		if resp.Status == s {
			return nil
		}
	}
	return c.statusError(method, target, resp)
}

// statusError describes resp, with the first entry of its OCI error
// body.
func (c *Client) statusError(method, target string, resp *Response) *StatusError {
	e := &StatusError{
		Target:     c.Name,
		Method:     method,
		Path:       pathOf(target),
		Status:     resp.Status,
		RetryAfter: resp.Header.Get("Retry-After"),
		Body:       string(resp.Body),
	}
	var body ociErrors
	if json.Unmarshal(resp.Body, &body) == nil && len(body.Errors) > 0 {
		e.Code = body.Errors[0].Code
		e.Message = body.Errors[0].Message
	}
	return e
}

// send is Do followed by expect.
func (c *Client) send(ctx context.Context, method, target string, header http.Header, body []byte, statuses ...int) (*Response, error) {
	resp, err := c.Do(ctx, method, target, header, body)
	if err != nil {
		return nil, err
	}
	return resp, c.expect(method, target, resp, statuses...)
}

func (c *Client) resolve(target string) (*url.URL, error) {
	base, err := url.Parse(c.BaseURL)
	if err != nil {
		return nil, fmt.Errorf("invalid base URL %q: %w", c.BaseURL, err)
	}
	ref, err := url.Parse(target)
	if err != nil {
		return nil, fmt.Errorf("invalid target %q: %w", target, err)
	}
	return base.ResolveReference(ref), nil
}

// PushBlob uploads data into repo in chunks of chunkSize bytes (one
// chunk when chunkSize is 0): POST, one PATCH per chunk with
// Content-Range, then PUT with the digest.
func (c *Client) PushBlob(ctx context.Context, repo string, data []byte, chunkSize int) (digest.Digest, error) {
	return PushBlobVia(ctx, []*Client{c}, repo, data, chunkSize)
}

// PushBlobVia uploads data like PushBlob, with step i of the upload
// (POST, the PATCHes, the PUT) sent through clients[i%len(clients)], so
// one upload session is continued on several nodes. The session's
// Location is taken from each response and resolved against the next
// client's base URL.
func PushBlobVia(ctx context.Context, clients []*Client, repo string, data []byte, chunkSize int) (digest.Digest, error) {
	d := digest.FromBytes(data)
	step := 0
	next := func() *Client {
		c := clients[step%len(clients)]
		step++
		return c
	}

	c := next()
	resp, err := c.send(ctx, http.MethodPost, "/v2/"+repo+"/blobs/uploads/", nil, nil, http.StatusAccepted)
	if err != nil {
		return d, err
	}
	location, err := uploadLocation(c, resp)
	if err != nil {
		return d, err
	}

	if chunkSize <= 0 {
		chunkSize = max(len(data), 1)
	}
	for offset := 0; offset < len(data); offset += chunkSize {
		end := min(offset+chunkSize, len(data))
		header := http.Header{
			"Content-Type":  {"application/octet-stream"},
			"Content-Range": {fmt.Sprintf("%d-%d", offset, end-1)},
		}
		c = next()
		resp, err := c.send(ctx, http.MethodPatch, location, header, data[offset:end], http.StatusAccepted)
		if err != nil {
			return d, err
		}
		if got, want := resp.Header.Get("Range"), fmt.Sprintf("0-%d", end-1); got != want {
			return d, fmt.Errorf("PATCH on %s returned Range %q, want %q", c.Name, got, want)
		}
		if location, err = uploadLocation(c, resp); err != nil {
			return d, err
		}
	}

	c = next()
	resp, err = c.send(ctx, http.MethodPut, withQuery(location, "digest", d.String()), nil, nil, http.StatusCreated)
	if err != nil {
		return d, err
	}
	if got := resp.Header.Get("Docker-Content-Digest"); got != d.String() {
		return d, fmt.Errorf("PUT upload on %s returned Docker-Content-Digest %q, want %s", c.Name, got, d)
	}
	return d, nil
}

// uploadLocation returns the path and query of an upload's Location, so
// the next step can go to another node.
func uploadLocation(c *Client, resp *Response) (string, error) {
	loc := resp.Header.Get("Location")
	if loc == "" {
		return "", fmt.Errorf("upload response from %s has no Location", c.Name)
	}
	u, err := url.Parse(loc)
	if err != nil {
		return "", fmt.Errorf("upload Location %q from %s: %w", loc, c.Name, err)
	}
	return u.RequestURI(), nil
}

func withQuery(target, key, value string) string {
	sep := "?"
	if strings.Contains(target, "?") {
		sep = "&"
	}
	return target + sep + url.QueryEscape(key) + "=" + url.QueryEscape(value)
}

// BlobExists sends HEAD for the blob and reports whether it returned
// 200.
func (c *Client) BlobExists(ctx context.Context, repo string, d digest.Digest) (bool, error) {
	resp, err := c.Do(ctx, http.MethodHead, "/v2/"+repo+"/blobs/"+d.String(), nil, nil)
	if err != nil {
		return false, err
	}
	switch resp.Status {
	case http.StatusOK:
		return true, nil
	case http.StatusNotFound:
		return false, nil
	}
	return false, c.expect(http.MethodHead, "/v2/"+repo+"/blobs/"+d.String(), resp, http.StatusOK)
}

// GetBlob downloads the blob and checks its digest.
func (c *Client) GetBlob(ctx context.Context, repo string, d digest.Digest) ([]byte, error) {
	resp, err := c.send(ctx, http.MethodGet, "/v2/"+repo+"/blobs/"+d.String(), nil, nil, http.StatusOK)
	if err != nil {
		return nil, err
	}
	if got := d.Algorithm().FromBytes(resp.Body); got != d {
		return nil, fmt.Errorf("blob %s from %s has content with digest %s", d, c.Name, got)
	}
	return resp.Body, nil
}

// PutManifest uploads a manifest under ref (a tag or digest) and checks
// the Docker-Content-Digest of the 201 response.
func (c *Client) PutManifest(ctx context.Context, repo, ref, mediaType string, data []byte) error {
	header := http.Header{"Content-Type": {mediaType}}
	resp, err := c.send(ctx, http.MethodPut, "/v2/"+repo+"/manifests/"+ref, header, data, http.StatusCreated)
	if err != nil {
		return err
	}
	if got, want := resp.Header.Get("Docker-Content-Digest"), digest.FromBytes(data).String(); got != want {
		return fmt.Errorf("PUT manifest %s:%s on %s returned Docker-Content-Digest %q, want %s",
			repo, ref, c.Name, got, want)
	}
	return nil
}

// GetManifest downloads a manifest by tag or digest. It returns the
// body and the digest of the body, after checking that the
// Docker-Content-Digest header, when present, matches.
func (c *Client) GetManifest(ctx context.Context, repo, ref string) ([]byte, digest.Digest, error) {
	header := http.Header{"Accept": {manifestAccept}}
	resp, err := c.send(ctx, http.MethodGet, "/v2/"+repo+"/manifests/"+ref, header, nil, http.StatusOK)
	if err != nil {
		return nil, "", err
	}
	d := digest.FromBytes(resp.Body)
	if got := resp.Header.Get("Docker-Content-Digest"); got != "" && got != d.String() {
		return nil, "", fmt.Errorf("GET manifest %s:%s on %s returned Docker-Content-Digest %s for a body with digest %s",
			repo, ref, c.Name, got, d)
	}
	return resp.Body, d, nil
}

// PushImage uploads the blobs of img that the repository lacks, in
// chunks of chunkSize bytes, then its manifest under tag.
func (c *Client) PushImage(ctx context.Context, repo, tag string, img *harness.Image, chunkSize int) error {
	for _, blob := range img.Blobs() {
		exists, err := c.BlobExists(ctx, repo, blob.Digest)
		if err != nil {
			return err
		}
		if exists {
			continue
		}
		if _, err := c.PushBlob(ctx, repo, blob.Data, chunkSize); err != nil {
			return err
		}
	}
	return c.PutManifest(ctx, repo, tag, img.Manifest.MediaType, img.Manifest.Data)
}

// VerifyImage pulls ref (a tag or the digest) and checks that the
// manifest and every blob are img's, byte for byte.
func (c *Client) VerifyImage(ctx context.Context, repo, ref string, img *harness.Image) error {
	data, d, err := c.GetManifest(ctx, repo, ref)
	if err != nil {
		return err
	}
	if d != img.Manifest.Digest || !bytes.Equal(data, img.Manifest.Data) {
		return fmt.Errorf("%s:%s on %s is manifest %s, want %s", repo, ref, c.Name, d, img.Manifest.Digest)
	}
	for _, blob := range img.Blobs() {
		got, err := c.GetBlob(ctx, repo, blob.Digest)
		if err != nil {
			return err
		}
		if !bytes.Equal(got, blob.Data) {
			return fmt.Errorf("blob %s on %s differs from the pushed one", blob.Digest, c.Name)
		}
	}
	return nil
}

// Ping sends GET /v2/ and returns the status.
func (c *Client) Ping(ctx context.Context) (int, error) {
	resp, err := c.Do(ctx, http.MethodGet, "/v2/", nil, nil)
	if err != nil {
		return 0, err
	}
	return resp.Status, nil
}

// IsConnectionError reports whether err is a failure to reach the
// server or a connection that broke, not an HTTP response.
func IsConnectionError(err error) bool {
	var netErr net.Error
	var opErr *net.OpError
	return errors.As(err, &opErr) || errors.As(err, &netErr) ||
		errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF)
}

// IsDialError reports whether err happened while connecting, before any
// byte of the request was sent, so the server cannot have acted on it.
func IsDialError(err error) bool {
	var opErr *net.OpError
	return errors.As(err, &opErr) && opErr.Op == "dial"
}

// StatusOf returns the HTTP status of a StatusError, or 0.
func StatusOf(err error) int {
	var se *StatusError
	if errors.As(err, &se) {
		return se.Status
	}
	return 0
}

func pathOf(target string) string {
	if u, err := url.Parse(target); err == nil {
		return u.Path
	}
	return target
}

// retryAfterSeconds parses a Retry-After header in seconds.
func retryAfterSeconds(value string) (int, bool) {
	n, err := strconv.Atoi(strings.TrimSpace(value))
	return n, err == nil && n >= 0
}
