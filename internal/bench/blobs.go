package bench

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/url"

	"github.com/opencontainers/go-digest"
)

// copyBufferSize is the buffer of streamed blob reads and writes.
const copyBufferSize = 256 << 10

// BlobExists sends HEAD for a blob, as docker does before it uploads a
// layer, and reports whether the registry has it.
func (c *Client) BlobExists(ctx context.Context, repo string, d digest.Digest) (bool, error) {
	resp, err := c.send(ctx, request{
		method: http.MethodHead,
		path:   fmt.Sprintf("/v2/%s/blobs/%s", repo, d),
		want:   []int{http.StatusOK, http.StatusNotFound},
	})
	if err != nil {
		return false, err
	}
	drain(resp)
	return resp.StatusCode == http.StatusOK, nil
}

// PushBlob uploads content the way docker push does: POST to start an
// upload, one PATCH that streams the whole blob with chunked transfer
// encoding, then PUT ?digest= with an empty body. The digest is computed
// while the content streams, so the content is never held in memory. It
// returns the digest and the number of bytes sent.
func (c *Client) PushBlob(ctx context.Context, repo string, content io.Reader) (digest.Digest, int64, error) {
	resp, err := c.send(ctx, request{
		method: http.MethodPost,
		path:   fmt.Sprintf("/v2/%s/blobs/uploads/", repo),
		want:   []int{http.StatusAccepted},
	})
	if err != nil {
		return "", 0, err
	}
	drain(resp)
	loc, err := location(resp)
	if err != nil {
		return "", 0, err
	}

	digester := digest.Canonical.Digester()
	counter := &countingReader{r: io.TeeReader(content, digester.Hash())}
	resp, err = c.send(ctx, request{
		method: http.MethodPatch,
		url:    loc.String(),
		body:   counter,
		length: -1,
		header: http.Header{"Content-Type": {"application/octet-stream"}},
		want:   []int{http.StatusAccepted, http.StatusNoContent},
	})
	if err != nil {
		return "", counter.n, err
	}
	drain(resp)
	loc, err = location(resp)
	if err != nil {
		return "", counter.n, err
	}

	d := digester.Digest()
	q := loc.Query()
	q.Set("digest", d.String())
	loc.RawQuery = q.Encode()
	resp, err = c.send(ctx, request{
		method: http.MethodPut,
		url:    loc.String(),
		want:   []int{http.StatusCreated},
	})
	if err != nil {
		return "", counter.n, err
	}
	drain(resp)
	if got := resp.Header.Get("Docker-Content-Digest"); got != "" && got != d.String() {
		return "", counter.n, fmt.Errorf("PUT %s: Docker-Content-Digest %s, want %s", loc.Path, got, d)
	}
	return d, counter.n, nil
}

// location returns the response's Location resolved against its request.
func location(resp *http.Response) (*url.URL, error) {
	loc := resp.Header.Get("Location")
	if loc == "" {
		return nil, fmt.Errorf("%s %s: status %d without a Location header",
			resp.Request.Method, resp.Request.URL.Path, resp.StatusCode)
	}
	return resolve(resp.Request.URL, loc)
}

// MountBlob links a blob of repository from into repo with POST
// ?mount=&from=. A 202 response (a new upload instead of a mount) is
// returned as an error.
func (c *Client) MountBlob(ctx context.Context, repo, from string, d digest.Digest) error {
	q := url.Values{"mount": {d.String()}, "from": {from}}
	resp, err := c.send(ctx, request{
		method: http.MethodPost,
		path:   fmt.Sprintf("/v2/%s/blobs/uploads/?%s", repo, q.Encode()),
		want:   []int{http.StatusCreated, http.StatusAccepted},
	})
	if err != nil {
		return err
	}
	drain(resp)
	if resp.StatusCode != http.StatusCreated {
		return fmt.Errorf("mount of %s from %s into %s: status %d, the registry started an upload instead",
			d, from, repo, resp.StatusCode)
	}
	return nil
}

// PullBlob downloads a blob and checks its digest and size. It returns
// the number of bytes received.
func (c *Client) PullBlob(ctx context.Context, repo string, d digest.Digest, size int64) (int64, error) {
	resp, err := c.send(ctx, request{
		method: http.MethodGet,
		path:   fmt.Sprintf("/v2/%s/blobs/%s", repo, d),
		want:   []int{http.StatusOK},
	})
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	verifier := d.Verifier()
	buf := make([]byte, copyBufferSize)
	n, err := io.CopyBuffer(verifier, resp.Body, buf)
	if err != nil {
		return n, fmt.Errorf("GET blob %s after %d bytes: %w", d, n, err)
	}
	if size >= 0 && n != size {
		return n, fmt.Errorf("GET blob %s: %d bytes, want %d", d, n, size)
	}
	if !verifier.Verified() {
		return n, fmt.Errorf("GET blob %s: content does not match the digest", d)
	}
	return n, nil
}

// countingReader counts the bytes read through it.
type countingReader struct {
	r io.Reader
	n int64
}

func (c *countingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n += int64(n)
	return n, err
}
