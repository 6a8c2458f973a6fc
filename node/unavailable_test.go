package node

import (
	"context"
	"fmt"
	"io"
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
