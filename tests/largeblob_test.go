package tests

import (
	"context"
	"crypto/sha256"
	"crypto/tls"
	"fmt"
	"hash"
	"io"
	"math/rand/v2"
	"net/http"
	"net/url"
	"os"
	"strconv"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"

	"github.com/flotilla-registry/flotilla/internal/testenv"
	"github.com/flotilla-registry/flotilla/tests/harness"
)

const (
	// largeBlobEnv must be 1 for TestLargeBlobStreaming to run.
	largeBlobEnv = "FLOTILLA_LARGE_BLOB"
	// largeBlobSize is above the 5 GiB limit of a single S3 PUT or
	// CopyObject, so the node has to use a multipart upload all the way.
	largeBlobSize = 5<<30 + 1<<20
	// largeBlobMaxRSS is the peak resident memory allowed for the node
	// while it streams the blob in and out.
	largeBlobMaxRSS = 256 << 20
	// largeBlobDisk is the free space needed: versitygw keeps the parts
	// of a multipart upload until it joins them into the object, so the
	// blob may be on disk twice, plus a margin.
	largeBlobDisk      = 2*largeBlobSize + 1<<30
	largeBlobTimeout   = 25 * time.Minute
	largeBlobLogPeriod = 1 << 30
)

// TestLargeBlobStreaming pushes a 5 GiB + 1 MiB layer through the OCI API
// in one streamed PATCH, the way docker push sends a layer, to a node on
// S3 storage. It checks that the node's peak RSS stays under 256 MiB, that
// HEAD reports the size, and that GET returns content with the pushed
// digest.
func TestLargeBlobStreaming(t *testing.T) {
	if os.Getenv(largeBlobEnv) != "1" {
		t.Skipf("set %s=1 to push a %d-byte layer (needs %d GiB of free disk and several minutes)",
			largeBlobEnv, largeBlobSize, largeBlobDisk>>30)
	}
	requireFreeDisk(t, os.TempDir(), largeBlobDisk)
	node := harness.StartNode(t, harness.NodeOptions{})
	ctx, cancel := context.WithTimeout(t.Context(), largeBlobTimeout)
	defer cancel()
	client := newBlobClient(t, node)
	const repo = "large/blob"

	start := time.Now()
	location := client.postUpload(ctx, repo)
	content := &progressReader{
		t:       t,
		node:    node,
		reader:  io.LimitReader(rand.NewChaCha8([32]byte{'f', 'l', 'o', 't', 'i', 'l', 'l', 'a'}), largeBlobSize),
		digest:  sha256.New(),
		started: start,
	}
	location = client.patchUpload(ctx, location, content)
	if content.count.Load() != largeBlobSize {
		t.Fatalf("PATCH sent %d bytes, want %d", content.count.Load(), largeBlobSize)
	}
	blobDigest := digest.NewDigest(digest.SHA256, content.digest)
	client.putUpload(ctx, location, blobDigest)
	t.Logf("pushed %s in %v; node peak RSS %d MiB", blobDigest, time.Since(start).Round(time.Second),
		node.PeakRSS()>>20)
	requireRSSBelow(t, node, "after the push")

	blobURL := node.URL + "/v2/" + repo + "/blobs/" + blobDigest.String()
	head := client.do(ctx, http.MethodHead, blobURL, nil)
	head.Body.Close()
	if head.StatusCode != http.StatusOK {
		t.Fatalf("HEAD blob: status %s, want 200", head.Status)
	}
	if got := head.Header.Get("Content-Length"); got != strconv.FormatInt(largeBlobSize, 10) {
		t.Errorf("HEAD blob: Content-Length %q, want %d", got, largeBlobSize)
	}
	if got := head.Header.Get("Docker-Content-Digest"); got != "" && got != blobDigest.String() {
		t.Errorf("HEAD blob: Docker-Content-Digest %q, want %s", got, blobDigest)
	}

	start = time.Now()
	resp := client.do(ctx, http.MethodGet, blobURL, nil)
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET blob: status %s, want 200", resp.Status)
	}
	verifier := blobDigest.Verifier()
	n, err := io.Copy(verifier, resp.Body)
	if err != nil {
		t.Fatalf("GET blob: read after %d bytes: %v", n, err)
	}
	if n != largeBlobSize {
		t.Errorf("GET blob returned %d bytes, want %d", n, largeBlobSize)
	}
	if !verifier.Verified() {
		t.Errorf("GET blob returned content that does not match %s", blobDigest)
	}
	t.Logf("read the blob back in %v; node peak RSS %d MiB", time.Since(start).Round(time.Second),
		node.PeakRSS()>>20)
	requireRSSBelow(t, node, "after the pull")
}

// blobClient sends authenticated blob requests to a node over HTTP/1.1,
// so a body of unknown length goes out with chunked transfer encoding.
type blobClient struct {
	t    *testing.T
	node *harness.Node
	http *http.Client
}

func newBlobClient(t *testing.T, node *harness.Node) blobClient {
	transport := node.Client().Transport.(*http.Transport).Clone()
	transport.ForceAttemptHTTP2 = false
	transport.TLSNextProto = map[string]func(string, *tls.Conn) http.RoundTripper{}
	if transport.TLSClientConfig != nil {
		transport.TLSClientConfig.NextProtos = []string{"http/1.1"}
	}
	t.Cleanup(transport.CloseIdleConnections)
	return blobClient{t: t, node: node, http: &http.Client{Transport: transport}}
}

// postUpload starts an upload session and returns its location.
func (c blobClient) postUpload(ctx context.Context, repo string) *url.URL {
	c.t.Helper()
	resp := c.do(ctx, http.MethodPost, c.node.URL+"/v2/"+repo+"/blobs/uploads/", nil)
	resp.Body.Close()
	if resp.StatusCode != http.StatusAccepted {
		c.t.Fatalf("POST upload: status %s, want 202", resp.Status)
	}
	return c.location(resp)
}

// patchUpload sends body in one PATCH with chunked transfer encoding and
// no Content-Range, as docker push does, and returns the next location.
func (c blobClient) patchUpload(ctx context.Context, location *url.URL, body io.Reader) *url.URL {
	c.t.Helper()
	resp := c.do(ctx, http.MethodPatch, location.String(), body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusAccepted {
		c.t.Fatalf("PATCH upload: status %s, want 202", resp.Status)
	}
	return c.location(resp)
}

// putUpload completes the upload with ?digest= and an empty body.
func (c blobClient) putUpload(ctx context.Context, location *url.URL, d digest.Digest) {
	c.t.Helper()
	u := *location
	query := u.Query()
	query.Set("digest", d.String())
	u.RawQuery = query.Encode()
	resp := c.do(ctx, http.MethodPut, u.String(), nil)
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 4<<10))
	resp.Body.Close()
	if resp.StatusCode != http.StatusCreated {
		c.t.Fatalf("PUT upload ?digest=%s: status %s, want 201: %s", d, resp.Status, body)
	}
	if got := resp.Header.Get("Docker-Content-Digest"); got != "" && got != d.String() {
		c.t.Errorf("PUT upload: Docker-Content-Digest %q, want %s", got, d)
	}
}

// location resolves the Location header of resp against the request URL,
// as registry clients do.
func (c blobClient) location(resp *http.Response) *url.URL {
	c.t.Helper()
	location, err := resp.Location()
	if err != nil {
		c.t.Fatalf("%s %s: no usable Location header: %v", resp.Request.Method, resp.Request.URL, err)
	}
	return location
}

// do sends an authenticated request. A nil body is sent with
// Content-Length 0, any other body with chunked encoding.
func (c blobClient) do(ctx context.Context, method, target string, body io.Reader) *http.Response {
	c.t.Helper()
	req, err := http.NewRequestWithContext(ctx, method, target, body)
	if err != nil {
		c.t.Fatalf("%s %s: %v", method, target, err)
	}
	if body != nil {
		req.ContentLength = -1
		req.Header.Set("Content-Type", "application/octet-stream")
	}
	// Identity encoding keeps the transport from decompressing anything,
	// so GET returns the stored bytes.
	req.Header.Set("Accept-Encoding", "identity")
	c.node.SetAuth(req)
	resp, err := c.http.Do(req)
	if err != nil {
		c.t.Fatalf("%s %s: %v", method, target, err)
	}
	return resp
}

// progressReader streams the layer, hashes what it passes on, and logs
// progress with the node's RSS every largeBlobLogPeriod bytes.
type progressReader struct {
	t       *testing.T
	node    *harness.Node
	reader  io.Reader
	digest  hash.Hash
	count   atomic.Int64
	started time.Time
}

func (r *progressReader) Read(p []byte) (int, error) {
	n, err := r.reader.Read(p)
	r.digest.Write(p[:n])
	before := r.count.Load()
	after := r.count.Add(int64(n))
	if before/largeBlobLogPeriod != after/largeBlobLogPeriod {
		r.t.Logf("sent %d GiB after %v; node peak RSS %d MiB", after>>30,
			time.Since(r.started).Round(time.Second), r.node.PeakRSS()>>20)
	}
	return n, err
}

func requireRSSBelow(t *testing.T, node *harness.Node, when string) {
	t.Helper()
	peak := node.PeakRSS()
	if peak == 0 {
		t.Errorf("node peak RSS %s is unknown: VmHWM could not be read from /proc/%d/status", when, node.PID())
	}
	if peak >= largeBlobMaxRSS {
		t.Errorf("node peak RSS %d MiB %s, want under %d MiB", peak>>20, when, largeBlobMaxRSS>>20)
	}
}

// requireFreeDisk skips the test, or fails it when FLOTILLA_REQUIRE_TOOLS
// is 1, if the filesystem of dir has less than need bytes free.
func requireFreeDisk(t *testing.T, dir string, need int64) {
	t.Helper()
	var stat syscall.Statfs_t
	if err := syscall.Statfs(dir, &stat); err != nil {
		t.Fatalf("statfs %s: %v", dir, err)
	}
	free := int64(stat.Bavail) * int64(stat.Bsize)
	if free >= need {
		return
	}
	msg := fmt.Sprintf("!!! only %d MiB free under %s, but the large blob test needs %d MiB",
		free>>20, dir, need>>20)
	if os.Getenv(testenv.RequireToolsEnv) == "1" {
		t.Fatal(msg)
	}
	t.Skip(msg + "; set TMPDIR to a larger filesystem")
}
