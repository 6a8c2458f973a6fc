package upload

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"

	"github.com/flotilla-registry/flotilla/blobstore"
	"github.com/flotilla-registry/flotilla/blobstore/storetest"
	"github.com/flotilla-registry/flotilla/internal/logging"
	"github.com/flotilla-registry/flotilla/internal/testenv"
)

const mib = 1 << 20

// backend opens stores on one storage. Each call of open returns a new
// store instance, as another node would have.
type backend struct {
	name string
	open func(t *testing.T) blobstore.Store
}

// forEachBackend runs fn in a subtest on the filesystem store and in one on
// the S3 store of a versitygw started for that subtest.
func forEachBackend(t *testing.T, fn func(t *testing.T, b backend)) {
	t.Helper()
	t.Run("filesystem", func(t *testing.T) {
		root := t.TempDir()
		fn(t, backend{name: "filesystem", open: func(t *testing.T) blobstore.Store {
			s, err := blobstore.NewFilesystem(root)
			if err != nil {
				t.Fatalf("NewFilesystem: %v", err)
			}
			return s
		}})
	})
	t.Run("s3", func(t *testing.T) {
		srv := testenv.StartS3(t)
		fn(t, backend{name: "s3", open: func(t *testing.T) blobstore.Store {
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			s, err := blobstore.NewS3(ctx, blobstore.S3Config{
				Endpoint:        srv.Endpoint,
				Region:          srv.Region,
				Bucket:          srv.Bucket,
				AccessKey:       srv.AccessKey,
				SecretKey:       srv.SecretKey,
				ForcePathStyle:  true,
				RootDirectory:   "registry",
				SkipBucketCheck: true,
			}, logging.Discard())
			if err != nil {
				t.Fatalf("NewS3: %v", err)
			}
			return s
		}})
	})
}

// countingStore counts the calls to a store by method name and records the
// keys written.
type countingStore struct {
	blobstore.Store
	mu      sync.Mutex
	calls   map[string]int
	written []string
}

func newCountingStore(s blobstore.Store) *countingStore {
	return &countingStore{Store: s, calls: map[string]int{}}
}

func (c *countingStore) count(method, key string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.calls[method]++
	if key != "" {
		c.written = append(c.written, key)
	}
}

func (c *countingStore) snapshot() map[string]int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return maps.Clone(c.calls)
}

func (c *countingStore) keys() []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return slices.Clone(c.written)
}

func (c *countingStore) Put(ctx context.Context, key string, r io.Reader, size int64) error {
	c.count("Put", key)
	return c.Store.Put(ctx, key, r, size)
}

func (c *countingStore) Open(ctx context.Context, key string, offset, length int64) (io.ReadCloser, error) {
	c.count("Open", "")
	return c.Store.Open(ctx, key, offset, length)
}

func (c *countingStore) Stat(ctx context.Context, key string) (blobstore.Info, error) {
	c.count("Stat", "")
	return c.Store.Stat(ctx, key)
}

func (c *countingStore) Delete(ctx context.Context, key string) error {
	c.count("Delete", "")
	return c.Store.Delete(ctx, key)
}

func (c *countingStore) CreateMultipart(ctx context.Context, key string) (string, error) {
	c.count("CreateMultipart", key)
	return c.Store.CreateMultipart(ctx, key)
}

func (c *countingStore) UploadPart(ctx context.Context, key, id string, n int, r io.Reader, size int64) (blobstore.Part, error) {
	c.count("UploadPart", "")
	return c.Store.UploadPart(ctx, key, id, n, r, size)
}

func (c *countingStore) CompleteMultipart(ctx context.Context, key, id string, parts []blobstore.Part) error {
	c.count("CompleteMultipart", "")
	return c.Store.CompleteMultipart(ctx, key, id, parts)
}

func (c *countingStore) AbortMultipart(ctx context.Context, key, id string) error {
	c.count("AbortMultipart", "")
	return c.Store.AbortMultipart(ctx, key, id)
}

var sessionCounter atomic.Int64

// newSessionKey returns a key that no other session of the test run uses.
func newSessionKey() string {
	return fmt.Sprintf("blobs/session-%d", sessionCounter.Add(1))
}

func newEngine(s blobstore.Store, opts ...Option) *Engine {
	return New(s, logging.Discard(), append([]Option{WithPartSize(blobstore.MinPartSize)}, opts...)...)
}

func testContext(t *testing.T) context.Context {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	t.Cleanup(cancel)
	return ctx
}

// roundTrip encodes st as JSON and decodes it, as storing it in the Raft
// state and reading it on another node does.
func roundTrip(t *testing.T, st State) State {
	t.Helper()
	b, err := json.Marshal(st)
	if err != nil {
		t.Fatalf("marshal state: %v", err)
	}
	var out State
	if err := json.Unmarshal(b, &out); err != nil {
		t.Fatalf("unmarshal state: %v", err)
	}
	return out
}

func checkBlob(t *testing.T, s blobstore.Store, res Result, want []byte) {
	t.Helper()
	if res.Size != int64(len(want)) {
		t.Errorf("Result.Size = %d, want %d", res.Size, len(want))
	}
	if res.Digest != digest.FromBytes(want) && res.Digest.Algorithm() == digest.SHA256 {
		t.Errorf("Result.Digest = %s, want %s", res.Digest, digest.FromBytes(want))
	}
	rc, err := s.Open(testContext(t), res.Key, 0, -1)
	if err != nil {
		t.Fatalf("Open(%s): %v", res.Key, err)
	}
	defer rc.Close()
	got, err := io.ReadAll(rc)
	if err != nil {
		t.Fatalf("read %s: %v", res.Key, err)
	}
	if !bytes.Equal(got, want) {
		t.Fatalf("blob %s has %d bytes that differ from the %d bytes sent", res.Key, len(got), len(want))
	}
}

func checkCalls(t *testing.T, got map[string]int, want map[string]int) {
	t.Helper()
	if !maps.Equal(got, want) {
		t.Errorf("store calls = %v, want %v", got, want)
	}
}

// checkS3Requests compares the HTTP requests an S3 store sent since before
// with want; other stores are not checked.
func checkS3Requests(t *testing.T, s blobstore.Store, before, want int64) {
	t.Helper()
	if s3, ok := s.(*blobstore.S3Store); ok {
		if got := s3.TotalRequests() - before; got != want {
			t.Errorf("S3 requests = %d (%v), want %d", got, s3.RequestCounts(), want)
		}
	}
}

func totalS3Requests(s blobstore.Store) int64 {
	if s3, ok := s.(*blobstore.S3Store); ok {
		return s3.TotalRequests()
	}
	return 0
}

func TestSmallBlobPatchThenPut(t *testing.T) {
	forEachBackend(t, func(t *testing.T, b backend) {
		raw := b.open(t)
		store := newCountingStore(raw)
		e := newEngine(store)
		data := storetest.Data(1, 1000)
		before := totalS3Requests(raw)

		st, err := e.Append(testContext(t), e.Start(newSessionKey()), bytes.NewReader(data))
		if err != nil {
			t.Fatalf("Append: %v", err)
		}
		res, err := e.Finish(testContext(t), roundTrip(t, st), emptyBody(), digest.FromBytes(data))
		if err != nil {
			t.Fatalf("Finish: %v", err)
		}
		checkCalls(t, store.snapshot(), map[string]int{"Put": 1})
		checkS3Requests(t, raw, before, 1)
		if res.Key != st.TailKey {
			t.Errorf("Result.Key = %s, want the tail object %s", res.Key, st.TailKey)
		}
		checkBlob(t, raw, res, data)
	})
}

// emptyBody returns an empty request body, as the final PUT of a docker push
// sends.
func emptyBody() io.Reader { return strings.NewReader("") }

func TestMonolithicPut(t *testing.T) {
	forEachBackend(t, func(t *testing.T, b backend) {
		raw := b.open(t)
		store := newCountingStore(raw)
		e := newEngine(store)
		data := storetest.Data(2, 300<<10)
		before := totalS3Requests(raw)

		res, err := e.Finish(testContext(t), e.Start(newSessionKey()), bytes.NewReader(data), digest.FromBytes(data))
		if err != nil {
			t.Fatalf("Finish: %v", err)
		}
		checkCalls(t, store.snapshot(), map[string]int{"Put": 1})
		checkS3Requests(t, raw, before, 1)
		checkBlob(t, raw, res, data)
	})
}

func TestEmptyBlob(t *testing.T) {
	forEachBackend(t, func(t *testing.T, b backend) {
		store := newCountingStore(b.open(t))
		e := newEngine(store)
		st, err := e.Append(testContext(t), e.Start(newSessionKey()), emptyBody())
		if err != nil {
			t.Fatalf("Append of an empty body: %v", err)
		}
		if len(store.snapshot()) != 0 {
			t.Errorf("Append of an empty body called the store: %v", store.snapshot())
		}
		res, err := e.Finish(testContext(t), st, nil, digest.FromBytes(nil))
		if err != nil {
			t.Fatalf("Finish: %v", err)
		}
		checkCalls(t, store.snapshot(), map[string]int{"Put": 1})
		checkBlob(t, store, res, nil)
	})
}

// TestOddSizedAppends continues the session on a new engine and store
// after each call, from a State that went through JSON, as a session whose
// requests land on different nodes does.
func TestOddSizedAppends(t *testing.T) {
	forEachBackend(t, func(t *testing.T, b backend) {
		sizes := []int{1, 3 * mib, 7 * mib, 1, 0, 2*mib + 5, blobstore.MinPartSize, 3}
		var all []byte
		st := State{Key: newSessionKey()}
		for i, size := range sizes {
			data := storetest.Data(uint64(10+i), size)
			all = append(all, data...)
			e := newEngine(b.open(t))
			next, err := e.Append(testContext(t), roundTrip(t, st), bytes.NewReader(data))
			if err != nil {
				t.Fatalf("Append %d of %d bytes: %v", i, size, err)
			}
			if next.Offset != int64(len(all)) {
				t.Fatalf("Append %d: offset %d, want %d", i, next.Offset, len(all))
			}
			if err := next.validate(); err != nil {
				t.Fatalf("Append %d returned an invalid state: %v", i, err)
			}
			st = next
		}
		if len(st.Parts) < 2 {
			t.Fatalf("session of %d bytes has %d parts, want at least 2", len(all), len(st.Parts))
		}
		last := storetest.Data(99, 12345)
		all = append(all, last...)
		e := newEngine(b.open(t))
		res, err := e.Finish(testContext(t), roundTrip(t, st), bytes.NewReader(last), digest.FromBytes(all))
		if err != nil {
			t.Fatalf("Finish: %v", err)
		}
		if res.Key != st.Object {
			t.Errorf("Result.Key = %s, want the multipart object %s", res.Key, st.Object)
		}
		checkBlob(t, b.open(t), res, all)
		if st.TailKey != "" {
			if _, err := e.store.Stat(testContext(t), st.TailKey); !errors.Is(err, blobstore.ErrNotFound) {
				t.Errorf("tail %s after Finish: %v, want ErrNotFound", st.TailKey, err)
			}
		}
	})
}

// TestThreePartsOneAppend checks the parts and the store calls of a blob
// larger than two parts sent in one PATCH.
func TestThreePartsOneAppend(t *testing.T) {
	forEachBackend(t, func(t *testing.T, b backend) {
		raw := b.open(t)
		store := newCountingStore(raw)
		e := newEngine(store)
		data := storetest.Data(3, 3*blobstore.MinPartSize+123)
		before := totalS3Requests(raw)

		st, err := e.Append(testContext(t), e.Start(newSessionKey()), bytes.NewReader(data))
		if err != nil {
			t.Fatalf("Append: %v", err)
		}

		if len(st.Parts) != 3 || st.Tail != 123 {
			t.Fatalf("state has %d parts and a tail of %d bytes, want 3 and 123", len(st.Parts), st.Tail)
		}
		res, err := e.Finish(testContext(t), roundTrip(t, st), emptyBody(), digest.FromBytes(data))
		if err != nil {
			t.Fatalf("Finish: %v", err)
		}
		checkCalls(t, store.snapshot(), map[string]int{
			"CreateMultipart": 1, "UploadPart": 4, "Put": 1,
			"Open": 1, "CompleteMultipart": 1, "Delete": 1,
		})
		checkS3Requests(t, raw, before, 9)
		checkBlob(t, raw, res, data)
	})
}

// TestLargeTailSentAsPart checks that a tail of at least MinPartSize after
// a part is sent as a part, so Finish only completes the upload.
func TestLargeTailSentAsPart(t *testing.T) {
	forEachBackend(t, func(t *testing.T, b backend) {
		store := newCountingStore(b.open(t))
		e := newEngine(store, WithPartSize(6*mib))
		data := storetest.Data(4, 6*mib+blobstore.MinPartSize+7)
		st, err := e.Append(testContext(t), e.Start(newSessionKey()), bytes.NewReader(data))
		if err != nil {
			t.Fatalf("Append: %v", err)
		}
		if len(st.Parts) != 2 || st.Tail != 0 {
			t.Fatalf("state has %d parts and a tail of %d bytes, want 2 and 0", len(st.Parts), st.Tail)
		}
		res, err := e.Finish(testContext(t), st, nil, digest.FromBytes(data))
		if err != nil {
			t.Fatalf("Finish: %v", err)
		}
		checkCalls(t, store.snapshot(), map[string]int{
			"CreateMultipart": 1, "UploadPart": 2, "CompleteMultipart": 1,
		})
		checkBlob(t, store, res, data)
	})
}

func TestDigests(t *testing.T) {
	data := storetest.Data(5, 5000)
	tests := []struct {
		name string
		want digest.Digest
		err  error
	}{
		{"sha256", digest.SHA256.FromBytes(data), nil},
		{"sha384", digest.SHA384.FromBytes(data), nil},
		{"sha512", digest.SHA512.FromBytes(data), nil},
		{"wrong sha256", digest.SHA256.FromBytes(data[1:]), ErrDigestMismatch},
		{"wrong sha512", digest.SHA512.FromBytes(data[1:]), ErrDigestMismatch},
		{"unsupported", digest.Digest("md5:" + strings.Repeat("0", 32)), ErrUnsupportedDigest},
		{"malformed", digest.Digest("sha256:xyz"), ErrInvalidDigest},
		{"empty", digest.Digest(""), ErrInvalidDigest},
	}
	forEachBackend(t, func(t *testing.T, b backend) {
		for _, tt := range tests {
			for _, split := range []bool{false, true} {
				t.Run(fmt.Sprintf("%s/split=%v", tt.name, split), func(t *testing.T) {
					store := newCountingStore(b.open(t))
					e := newEngine(store)
					st := e.Start(newSessionKey())
					body := io.Reader(bytes.NewReader(data))
					if split {
						var err error
						st, err = e.Append(testContext(t), st, body)
						if err != nil {
							t.Fatalf("Append: %v", err)
						}
						body = nil
					}
					res, err := e.Finish(testContext(t), st, body, tt.want)
					if !errors.Is(err, tt.err) {
						t.Fatalf("Finish: %v, want %v", err, tt.err)
					}
					if tt.err == nil {
						if res.Digest != tt.want {
							t.Errorf("Result.Digest = %s, want %s", res.Digest, tt.want)
						}
						checkBlob(t, store, res, data)
						return
					}
					if errors.Is(err, ErrDigestMismatch) {
						checkNoObjects(t, store)
						return
					}
					// A digest that cannot be checked leaves the session
					// as it was.
					res, err = e.Finish(testContext(t), st, bytes.NewReader(data[st.Offset:]), digest.FromBytes(data))
					if err != nil {
						t.Fatalf("Finish with a valid digest after %v: %v", tt.err, err)
					}
					checkBlob(t, store, res, data)
				})
			}
		}
	})
}

// checkNoObjects checks that none of the objects the store wrote exists.
func checkNoObjects(t *testing.T, store *countingStore) {
	t.Helper()
	for _, key := range store.keys() {
		if _, err := store.Store.Stat(testContext(t), key); !errors.Is(err, blobstore.ErrNotFound) {
			t.Errorf("object %s after a failed Finish: %v, want ErrNotFound", key, err)
		}
	}
}

func TestWrongDigestMultipart(t *testing.T) {
	for _, algorithm := range []digest.Algorithm{digest.SHA256, digest.SHA512} {
		t.Run(string(algorithm), func(t *testing.T) {
			forEachBackend(t, func(t *testing.T, b backend) {
				store := newCountingStore(b.open(t))
				e := newEngine(store)
				data := storetest.Data(6, blobstore.MinPartSize+100)
				st, err := e.Append(testContext(t), e.Start(newSessionKey()), bytes.NewReader(data))
				if err != nil {
					t.Fatalf("Append: %v", err)
				}
				_, err = e.Finish(testContext(t), st, nil, algorithm.FromBytes(data[:10]))
				if !errors.Is(err, ErrDigestMismatch) {
					t.Fatalf("Finish: %v, want ErrDigestMismatch", err)
				}
				checkNoObjects(t, store)
				if algorithm == digest.SHA256 {
					// The upload was aborted, not completed.
					err = store.Store.CompleteMultipart(testContext(t), st.Object, st.MultipartID, st.Parts)
					if !errors.Is(err, blobstore.ErrNotFound) {
						t.Errorf("CompleteMultipart after a mismatch: %v, want ErrNotFound", err)
					}
				}
			})
		})
	}
}

func TestAbort(t *testing.T) {
	forEachBackend(t, func(t *testing.T, b backend) {
		store := newCountingStore(b.open(t))
		e := newEngine(store)
		data := storetest.Data(7, blobstore.MinPartSize+100)
		st, err := e.Append(testContext(t), e.Start(newSessionKey()), bytes.NewReader(data))
		if err != nil {
			t.Fatalf("Append: %v", err)
		}
		if st.MultipartID == "" || st.TailKey == "" {
			t.Fatalf("state %+v has no multipart upload or no tail", st)
		}
		if err := e.Abort(testContext(t), roundTrip(t, st)); err != nil {
			t.Fatalf("Abort: %v", err)
		}
		checkNoObjects(t, store)
		_, err = store.Store.UploadPart(testContext(t), st.Object, st.MultipartID, 2, strings.NewReader("x"), 1)
		if !errors.Is(err, blobstore.ErrNotFound) {
			t.Errorf("UploadPart after Abort: %v, want ErrNotFound", err)
		}
		if err := e.Abort(testContext(t), st); err != nil {
			t.Errorf("second Abort: %v", err)
		}
		_, err = e.Append(testContext(t), st, strings.NewReader("more"))
		if !errors.Is(err, blobstore.ErrNotFound) {
			t.Errorf("Append after Abort: %v, want blobstore.ErrNotFound", err)
		}
	})
}

// TestStaleState continues the same State twice, as a client retry or two
// nodes racing would. Before Release, a retry from the old State works,
// because its commit may have been lost. After Release, the old State's
// tail is gone and a second writer fails rather than change the objects
// of the first.
func TestStaleState(t *testing.T) {
	forEachBackend(t, func(t *testing.T, b backend) {
		e := newEngine(b.open(t))
		first := storetest.Data(8, 1000)
		s0, err := e.Append(testContext(t), e.Start(newSessionKey()), bytes.NewReader(first))
		if err != nil {
			t.Fatalf("Append: %v", err)
		}
		second := storetest.Data(9, 2000)
		if _, err := e.Append(testContext(t), s0, strings.NewReader("lost commit")); err != nil {
			t.Fatalf("retry from an unreleased state: %v", err)
		}
		s1, err := e.Append(testContext(t), s0, bytes.NewReader(second))
		if err != nil {
			t.Fatalf("Append: %v", err)
		}
		e.Release(testContext(t), s0, s1)
		_, err = newEngine(b.open(t)).Append(testContext(t), s0, strings.NewReader("other data"))
		if !errors.Is(err, blobstore.ErrNotFound) {
			t.Errorf("Append from a released state: %v, want blobstore.ErrNotFound", err)
		}
		all := append(slices.Clone(first), second...)
		res, err := e.Finish(testContext(t), s1, nil, digest.FromBytes(all))
		if err != nil {
			t.Fatalf("Finish: %v", err)
		}
		checkBlob(t, b.open(t), res, all)
	})
}

func TestInvalidState(t *testing.T) {
	e := newEngine(nil)
	valid := State{
		Key:     "blobs/u",
		Offset:  10,
		Hash:    []byte("x"),
		TailKey: "blobs/u.0011",
		Tail:    10,
	}
	if err := valid.validate(); err != nil {
		t.Fatalf("validate of a valid state: %v", err)
	}
	part := blobstore.Part{Number: 1, ETag: "e", Size: 10}
	tests := []struct {
		name   string
		modify func(*State)
	}{
		{"invalid key", func(s *State) { s.Key = "../x" }},
		{"negative offset", func(s *State) { s.Offset = -1 }},
		{"tail past offset", func(s *State) { s.Tail = 11 }},
		{"tail without key", func(s *State) { s.TailKey = "" }},
		{"foreign tail key", func(s *State) { s.TailKey = "blobs/other" }},
		{"sizes do not add up", func(s *State) { s.Offset = 20 }},
		{"no hash", func(s *State) { s.Hash = nil }},
		{"parts without upload", func(s *State) { s.Parts = []blobstore.Part{part}; s.Offset = 20 }},
		{"upload without object", func(s *State) { s.MultipartID = "id" }},
		{"foreign object", func(s *State) { s.MultipartID, s.Object = "id", "other.1" }},
		{"part numbers", func(s *State) {
			s.MultipartID, s.Object, s.Offset = "id", "blobs/u.1", 20
			s.Parts = []blobstore.Part{{Number: 2, ETag: "e", Size: 10}}
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			st := valid
			tt.modify(&st)
			_, err := e.Append(context.Background(), st, strings.NewReader("x"))
			if !errors.Is(err, ErrInvalidState) {
				t.Errorf("Append: %v, want ErrInvalidState", err)
			}
			_, err = e.Finish(context.Background(), st, nil, digest.FromBytes(nil))
			if !errors.Is(err, ErrInvalidState) {
				t.Errorf("Finish: %v, want ErrInvalidState", err)
			}
			if err := e.Abort(context.Background(), st); !errors.Is(err, ErrInvalidState) {
				t.Errorf("Abort: %v, want ErrInvalidState", err)
			}
		})
	}
}

func TestTailSizeMismatch(t *testing.T) {
	forEachBackend(t, func(t *testing.T, b backend) {
		e := newEngine(b.open(t))
		st, err := e.Append(testContext(t), e.Start(newSessionKey()), strings.NewReader("0123456789"))
		if err != nil {
			t.Fatalf("Append: %v", err)
		}
		for _, delta := range []int64{-1, 1} {
			bad := st
			bad.Tail += delta
			bad.Offset += delta
			_, err = e.Append(testContext(t), bad, strings.NewReader("x"))
			if !errors.Is(err, ErrInvalidState) {
				t.Errorf("Append with tail size %d of a 10-byte tail: %v, want ErrInvalidState", bad.Tail, err)
			}
		}
	})
}

func TestTooLarge(t *testing.T) {
	forEachBackend(t, func(t *testing.T, b backend) {
		store := newCountingStore(b.open(t))
		e := newEngine(store)
		e.maxParts = 2
		tooLarge := storetest.Data(10, 2*blobstore.MinPartSize+1)
		_, err := e.Append(testContext(t), e.Start(newSessionKey()), bytes.NewReader(tooLarge))
		if !errors.Is(err, ErrTooLarge) {
			t.Fatalf("Append of 2 parts and 1 byte with 2 parts allowed: %v, want ErrTooLarge", err)
		}
		if calls := store.snapshot(); calls["AbortMultipart"] != 1 {
			t.Errorf("store calls after ErrTooLarge = %v, want one AbortMultipart", calls)
		}

		fits := tooLarge[:2*blobstore.MinPartSize]
		st, err := e.Append(testContext(t), e.Start(newSessionKey()), bytes.NewReader(fits))
		if err != nil {
			t.Fatalf("Append of 2 parts: %v", err)
		}
		_, err = e.Append(testContext(t), st, strings.NewReader("x"))
		if !errors.Is(err, ErrTooLarge) {
			t.Fatalf("Append after 2 parts with 2 parts allowed: %v, want ErrTooLarge", err)
		}
		res, err := e.Finish(testContext(t), st, nil, digest.FromBytes(fits))
		if err != nil {
			t.Fatalf("Finish: %v", err)
		}
		checkBlob(t, store, res, fits)
	})
}

// failingReader returns n bytes of data and then an error, like a client
// that disconnects during a PATCH.
type failingReader struct {
	data []byte
	n    int
}

var errClientGone = errors.New("client went away")

func (r *failingReader) Read(p []byte) (int, error) {
	if r.n >= len(r.data) {
		return 0, errClientGone
	}
	n := copy(p, r.data[r.n:])
	r.n += n
	return n, nil
}

func TestBodyReadError(t *testing.T) {
	forEachBackend(t, func(t *testing.T, b backend) {
		store := newCountingStore(b.open(t))
		e := newEngine(store)
		first := storetest.Data(11, 1000)
		st, err := e.Append(testContext(t), e.Start(newSessionKey()), bytes.NewReader(first))
		if err != nil {
			t.Fatalf("Append: %v", err)
		}
		broken := &failingReader{data: storetest.Data(12, blobstore.MinPartSize+10)}
		got, err := e.Append(testContext(t), st, broken)
		if !errors.Is(err, errClientGone) {
			t.Fatalf("Append with a failing body: %v, want the body's error", err)
		}
		if errors.Is(err, blobstore.ErrUnavailable) {
			t.Errorf("Append with a failing body: %v wraps ErrUnavailable", err)
		}
		if got.Offset != st.Offset || got.TailKey != st.TailKey {
			t.Errorf("Append with a failing body returned state %+v, want %+v", got, st)
		}
		if calls := store.snapshot(); calls["AbortMultipart"] != 1 {
			t.Errorf("store calls = %v, want the new multipart upload aborted", calls)
		}
		second := storetest.Data(13, 500)
		st, err = e.Append(testContext(t), st, bytes.NewReader(second))
		if err != nil {
			t.Fatalf("Append after a failed Append: %v", err)
		}
		all := append(slices.Clone(first), second...)
		res, err := e.Finish(testContext(t), st, nil, digest.FromBytes(all))
		if err != nil {
			t.Fatalf("Finish: %v", err)
		}
		checkBlob(t, store, res, all)
	})
}

func TestConcurrentSessions(t *testing.T) {
	forEachBackend(t, func(t *testing.T, b backend) {
		e := newEngine(b.open(t))
		const sessions = 4
		var wg sync.WaitGroup
		for i := range sessions {
			wg.Go(func() {
				data := storetest.Data(uint64(20+i), 100<<10+i)
				st, err := e.Append(testContext(t), e.Start(newSessionKey()), bytes.NewReader(data[:50000]))
				if err != nil {
					t.Errorf("session %d Append: %v", i, err)
					return
				}
				res, err := e.Finish(testContext(t), st, bytes.NewReader(data[50000:]), digest.FromBytes(data))
				if err != nil {
					t.Errorf("session %d Finish: %v", i, err)
					return
				}
				if res.Size != int64(len(data)) {
					t.Errorf("session %d size %d, want %d", i, res.Size, len(data))
				}
			})
		}
		wg.Wait()
	})
}
