package node

import (
	"context"
	"fmt"
	"io"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/flotilla-registry/flotilla/blobstore"
)

// failingStore wraps a real store and fails every call with
// blobstore.ErrUnavailable while down is set, as the S3 store does when
// the object store cannot be reached.
type failingStore struct {
	blobstore.Store
	down atomic.Bool
}

func (f *failingStore) err(op string) error {
	return fmt.Errorf("%s: %w: connection refused", op, blobstore.ErrUnavailable)
}

func (f *failingStore) Put(ctx context.Context, key string, r io.Reader, size int64) error {
	if f.down.Load() {
		return f.err("put")
	}
	return f.Store.Put(ctx, key, r, size)
}

func (f *failingStore) Open(ctx context.Context, key string, offset, length int64) (io.ReadCloser, error) {
	if f.down.Load() {
		return nil, f.err("open")
	}
	return f.Store.Open(ctx, key, offset, length)
}

func TestStoreOutageAnswers503(t *testing.T) {
	var fs *failingStore
	s := newTestServer(t, func(o *Options) {
		fs = &failingStore{Store: o.Store}
		o.Store = fs
		o.Uploads = uploadEngine(fs)
	})
	d := s.pushBlob("r", []byte("before the outage"))
	fs.down.Store(true)

	r := s.do(request{method: "GET", path: "/v2/r/blobs/" + d.String()})
	expect(t, r, 503, "UNAVAILABLE")
	if r.header.Get("Retry-After") == "" {
		t.Fatal("503 without Retry-After")
	}
	content := []byte("during the outage")
	r = s.do(request{method: "POST", path: "/v2/r/blobs/uploads/?digest=" + digestOf(content), body: content})
	expect(t, r, 503, "UNAVAILABLE")
	expect(t, s.do(request{method: "HEAD", path: "/v2/r/blobs/" + digestOf(content)}), 404, "")

	fs.down.Store(false)
	expect(t, s.do(request{method: "GET", path: "/v2/r/blobs/" + d.String()}), 200, "")
	r = s.do(request{method: "POST", path: "/v2/r/blobs/uploads/?digest=" + digestOf(content), body: content})
	expect(t, r, 201, "")
}

func TestStartingHandler(t *testing.T) {
	h := StartingHandler()
	for _, tc := range []struct {
		method, path string
		status       int
		body         string
	}{
		{"GET", "/healthz", 200, "starting\n"},
		{"GET", "/readyz", 503, `"UNAVAILABLE"`},
		{"GET", "/v2/", 503, `"UNAVAILABLE"`},
		{"PUT", "/v2/r/manifests/latest", 503, `"UNAVAILABLE"`},
		{"HEAD", "/v2/r/blobs/sha256:" + strings.Repeat("0", 64), 503, ""},
	} {
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, httptest.NewRequest(tc.method, tc.path, nil))
		if rec.Code != tc.status {
			t.Errorf("%s %s: status %d, want %d", tc.method, tc.path, rec.Code, tc.status)
		}
		if !strings.Contains(rec.Body.String(), tc.body) || (tc.body == "" && rec.Body.Len() != 0) {
			t.Errorf("%s %s: body %q, want it to contain %q", tc.method, tc.path, rec.Body.String(), tc.body)
		}
		if tc.status == 503 && rec.Header().Get("Retry-After") == "" {
			t.Errorf("%s %s: 503 without Retry-After", tc.method, tc.path)
		}
		api := strings.HasPrefix(tc.path, "/v2/")
		if got := rec.Header().Get("Docker-Distribution-API-Version"); api != (got == "registry/2.0") {
			t.Errorf("%s %s: Docker-Distribution-API-Version %q", tc.method, tc.path, got)
		}
	}
}
