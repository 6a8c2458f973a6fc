// Package storetest is the test suite that every blobstore.Store passes.
// A store's own test calls Run with a constructor:
//
//	func TestFilesystem(t *testing.T) {
//		storetest.Run(t, func(t *testing.T) blobstore.Store { ... })
//	}
//
// The suite writes about 18 MiB in total, most of it in the multipart test.
package storetest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/flotilla-registry/flotilla/blobstore"
)

// testTimeout bounds every store call of the suite.
const testTimeout = 2 * time.Minute

// Run runs the suite. newStore is called once per subtest and must return
// a store in which the suite's keys ("storetest/…") do not exist yet.
func Run(t *testing.T, newStore func(t *testing.T) blobstore.Store) {
	tests := []struct {
		name string
		fn   func(t *testing.T, s blobstore.Store)
	}{
		{"PutOpen", testPutOpen},
		{"PutOverwrite", testPutOverwrite},
		{"PutShortReader", testPutShortReader},
		{"OpenRange", testOpenRange},
		{"OpenRangeEmpty", testOpenRangeEmpty},
		{"Stat", testStat},
		{"Delete", testDelete},
		{"NotFound", testNotFound},
		{"KeyValidation", testKeyValidation},
		{"Multipart", testMultipart},
		{"MultipartReplacePart", testMultipartReplacePart},
		{"MultipartStaleETag", testMultipartStaleETag},
		{"MultipartSmallPart", testMultipartSmallPart},
		{"MultipartAbort", testMultipartAbort},
		{"MultipartUnknownUpload", testMultipartUnknownUpload},
		{"ConcurrentPuts", testConcurrentPuts},
		{"ReadDuringOverwrite", testReadDuringOverwrite},
		{"CanceledContext", testCanceledContext},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tt.fn(t, newStore(t))
		})
	}
}

// Data returns n bytes that depend on seed, so different seeds give
// different contents.
func Data(seed uint64, n int) []byte {
	var key [32]byte
	key[0], key[1] = byte(seed), byte(seed>>8)
	key[2], key[3] = byte(seed>>16), byte(seed>>24)
	b := make([]byte, n)
	_, _ = rand.NewChaCha8(key).Read(b)
	return b
}

func testContext(t *testing.T) context.Context {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
	t.Cleanup(cancel)
	return ctx
}

func put(t *testing.T, s blobstore.Store, key string, data []byte) {
	t.Helper()
	if err := s.Put(testContext(t), key, bytes.NewReader(data), int64(len(data))); err != nil {
		t.Fatalf("Put(%s, %d bytes): %v", key, len(data), err)
	}
}

// read returns the bytes of Open(key, offset, length).
func read(t *testing.T, s blobstore.Store, key string, offset, length int64) ([]byte, error) {
	t.Helper()
	rc, err := s.Open(testContext(t), key, offset, length)
	if err != nil {
		return nil, err
	}
	defer rc.Close()
	return io.ReadAll(rc)
}

func checkContent(t *testing.T, s blobstore.Store, key string, want []byte) {
	t.Helper()
	got, err := read(t, s, key, 0, -1)
	if err != nil {
		t.Fatalf("Open(%s): %v", key, err)
	}
	if !bytes.Equal(got, want) {
		t.Fatalf("Open(%s) read %d bytes, want %d bytes of the content written", key, len(got), len(want))
	}
}

func testPutOpen(t *testing.T, s blobstore.Store) {
	for _, size := range []int{0, 1, 4096, 300 << 10} {
		t.Run(fmt.Sprint(size), func(t *testing.T) {
			key := fmt.Sprintf("storetest/put/%d", size)
			data := Data(uint64(size), size)
			put(t, s, key, data)
			checkContent(t, s, key, data)
		})
	}
}

func testPutOverwrite(t *testing.T, s blobstore.Store) {
	key := "storetest/overwrite"
	put(t, s, key, Data(1, 2000))
	second := Data(2, 1000)
	put(t, s, key, second)
	checkContent(t, s, key, second)
}

func testPutShortReader(t *testing.T, s blobstore.Store) {
	key := "storetest/short"
	err := s.Put(testContext(t), key, bytes.NewReader(Data(3, 10)), 20)
	if err == nil {
		t.Fatal("Put with a reader shorter than size returned no error")
	}
	_, err = s.Stat(testContext(t), key)
	if !errors.Is(err, blobstore.ErrNotFound) {
		t.Fatalf("Stat after failed Put: %v, want ErrNotFound", err)
	}
}

func testOpenRange(t *testing.T, s blobstore.Store) {
	key := "storetest/range"
	data := Data(4, 1000)
	put(t, s, key, data)
	tests := []struct {
		name           string
		offset, length int64
		want           []byte
		err            error
	}{
		{"whole", 0, -1, data, nil},
		{"from offset", 10, -1, data[10:], nil},
		{"inner", 10, 20, data[10:30], nil},
		{"prefix", 0, 5, data[:5], nil},
		{"last byte", 999, 1, data[999:], nil},
		{"length past end", 990, 100, data[990:], nil},
		{"zero length", 10, 0, []byte{}, nil},
		{"offset at end", 1000, -1, nil, blobstore.ErrInvalidRange},
		{"offset past end", 2000, 10, nil, blobstore.ErrInvalidRange},
		{"negative offset", -1, 10, nil, blobstore.ErrInvalidRange},
		{"negative length", 0, -2, nil, blobstore.ErrInvalidRange},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := read(t, s, key, tt.offset, tt.length)
			if tt.err != nil {
				if !errors.Is(err, tt.err) {
					t.Fatalf("Open(%d, %d) error %v, want %v", tt.offset, tt.length, err, tt.err)
				}
				return
			}
			if err != nil {
				t.Fatalf("Open(%d, %d): %v", tt.offset, tt.length, err)
			}
			if !bytes.Equal(got, tt.want) {
				t.Fatalf("Open(%d, %d) read %d bytes, want %d", tt.offset, tt.length, len(got), len(tt.want))
			}
		})
	}
}

func testOpenRangeEmpty(t *testing.T, s blobstore.Store) {
	key := "storetest/empty"
	put(t, s, key, nil)
	tests := []struct {
		name           string
		offset, length int64
		err            error
	}{
		{"whole", 0, -1, nil},
		{"prefix", 0, 10, nil},
		{"zero length", 0, 0, nil},
		{"offset past end", 1, -1, blobstore.ErrInvalidRange},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := read(t, s, key, tt.offset, tt.length)
			if tt.err != nil {
				if !errors.Is(err, tt.err) {
					t.Fatalf("Open(%d, %d) error %v, want %v", tt.offset, tt.length, err, tt.err)
				}
				return
			}
			if err != nil {
				t.Fatalf("Open(%d, %d): %v", tt.offset, tt.length, err)
			}
			if len(got) != 0 {
				t.Fatalf("Open(%d, %d) read %d bytes of an empty object", tt.offset, tt.length, len(got))
			}
		})
	}
}

func testStat(t *testing.T, s blobstore.Store) {
	key := "storetest/stat/a"
	put(t, s, key, Data(5, 1234))
	info, err := s.Stat(testContext(t), key)
	if err != nil {
		t.Fatalf("Stat: %v", err)
	}
	if info.Size != 1234 {
		t.Errorf("Stat size = %d, want 1234", info.Size)
	}
	if info.Key != key {
		t.Errorf("Stat key = %q, want %q", info.Key, key)
	}
	// A prefix of an existing key is no object.
	_, err = s.Stat(testContext(t), "storetest/stat")
	if !errors.Is(err, blobstore.ErrNotFound) {
		t.Errorf("Stat of a key prefix: %v, want ErrNotFound", err)
	}
}

func testDelete(t *testing.T, s blobstore.Store) {
	key := "storetest/delete"
	put(t, s, key, Data(6, 10))
	if err := s.Delete(testContext(t), key); err != nil {
		t.Fatalf("Delete: %v", err)
	}
	if _, err := s.Stat(testContext(t), key); !errors.Is(err, blobstore.ErrNotFound) {
		t.Fatalf("Stat after Delete: %v, want ErrNotFound", err)
	}
	if err := s.Delete(testContext(t), key); err != nil {
		t.Fatalf("Delete of a deleted object: %v, want nil", err)
	}
	if err := s.Delete(testContext(t), "storetest/never-written"); err != nil {
		t.Fatalf("Delete of a missing object: %v, want nil", err)
	}
}

func testNotFound(t *testing.T, s blobstore.Store) {
	key := "storetest/missing/object"
	ctx := testContext(t)
	if _, err := s.Stat(ctx, key); !errors.Is(err, blobstore.ErrNotFound) {
		t.Errorf("Stat: %v, want ErrNotFound", err)
	}
	for _, r := range [][2]int64{{0, -1}, {5, 10}, {0, 0}} {
		rc, err := s.Open(ctx, key, r[0], r[1])
		if err == nil {
			rc.Close()
		}
		if !errors.Is(err, blobstore.ErrNotFound) {
			t.Errorf("Open(%d, %d): %v, want ErrNotFound", r[0], r[1], err)
		}
	}
}

func testKeyValidation(t *testing.T, s blobstore.Store) {
	keys := []string{
		"",
		"/storetest/absolute",
		"storetest/../escape",
		"..",
		"storetest/./dot",
		"storetest//empty",
		"storetest/trailing/",
		".hidden",
		"storetest/.hidden",
		`storetest\backslash`,
		"storetest/nul\x00byte",
		"storetest/newline\n",
		"storetest/" + strings.Repeat("a", blobstore.MaxKeyLength),
		"storetest/\xff",
	}
	for _, key := range keys {
		t.Run(fmt.Sprintf("%.20q", key), func(t *testing.T) {
			ctx := testContext(t)
			checkInvalid := func(op string, err error) {
				t.Helper()
				if !errors.Is(err, blobstore.ErrInvalidKey) {
					t.Errorf("%s(%q): %v, want ErrInvalidKey", op, key, err)
				}
			}
			checkInvalid("ValidateKey", blobstore.ValidateKey(key))
			checkInvalid("Put", s.Put(ctx, key, strings.NewReader("x"), 1))
			rc, err := s.Open(ctx, key, 0, -1)
			if err == nil {
				rc.Close()
			}
			checkInvalid("Open", err)
			_, err = s.Stat(ctx, key)
			checkInvalid("Stat", err)
			checkInvalid("Delete", s.Delete(ctx, key))
			_, err = s.CreateMultipart(ctx, key)
			checkInvalid("CreateMultipart", err)
		})
	}
	if err := blobstore.ValidateKey("blobs/sha256/ab/ab01_x-y.z"); err != nil {
		t.Errorf("ValidateKey of a valid key: %v", err)
	}
}

func uploadPart(t *testing.T, s blobstore.Store, key, id string, n int, data []byte) blobstore.Part {
	t.Helper()
	p, err := s.UploadPart(testContext(t), key, id, n, bytes.NewReader(data), int64(len(data)))
	if err != nil {
		t.Fatalf("UploadPart(%d, %d bytes): %v", n, len(data), err)
	}
	if p.Number != n || p.Size != int64(len(data)) || p.ETag == "" {
		t.Fatalf("UploadPart(%d, %d bytes) = %+v", n, len(data), p)
	}
	return p
}

func createMultipart(t *testing.T, s blobstore.Store, key string) string {
	t.Helper()
	id, err := s.CreateMultipart(testContext(t), key)
	if err != nil {
		t.Fatalf("CreateMultipart(%s): %v", key, err)
	}
	if id == "" {
		t.Fatalf("CreateMultipart(%s) returned an empty id", key)
	}
	return id
}

func testMultipart(t *testing.T, s blobstore.Store) {
	key := "storetest/multipart"
	sizes := []int{blobstore.MinPartSize, blobstore.MinPartSize, 1<<20 + 3}
	id := createMultipart(t, s, key)
	var parts []blobstore.Part
	var all []byte
	for i, size := range sizes {
		data := Data(uint64(100+i), size)
		all = append(all, data...)
		parts = append(parts, uploadPart(t, s, key, id, i+1, data))
	}

	if _, err := s.Stat(testContext(t), key); !errors.Is(err, blobstore.ErrNotFound) {
		t.Fatalf("Stat before CompleteMultipart: %v, want ErrNotFound", err)
	}
	if err := s.CompleteMultipart(testContext(t), key, id, parts); err != nil {
		t.Fatalf("CompleteMultipart: %v", err)
	}
	info, err := s.Stat(testContext(t), key)
	if err != nil {
		t.Fatalf("Stat: %v", err)
	}
	if info.Size != int64(len(all)) {
		t.Fatalf("Stat size = %d, want %d", info.Size, len(all))
	}
	checkContent(t, s, key, all)

	got, err := read(t, s, key, blobstore.MinPartSize-5, 10)
	if err != nil {
		t.Fatalf("Open across a part boundary: %v", err)
	}
	if !bytes.Equal(got, all[blobstore.MinPartSize-5:blobstore.MinPartSize+5]) {
		t.Fatal("Open across a part boundary read other bytes")
	}

	err = s.CompleteMultipart(testContext(t), key, id, parts)
	if err == nil {
		t.Log("a second CompleteMultipart succeeded, as Amazon S3 allows for a short time")
	} else if !errors.Is(err, blobstore.ErrNotFound) {
		t.Fatalf("second CompleteMultipart: %v, want nil or ErrNotFound", err)
	}
}

func testMultipartReplacePart(t *testing.T, s blobstore.Store) {
	key := "storetest/replace-part"
	id := createMultipart(t, s, key)
	uploadPart(t, s, key, id, 1, Data(10, 1000))
	second := Data(11, 500)
	p := uploadPart(t, s, key, id, 1, second)
	if err := s.CompleteMultipart(testContext(t), key, id, []blobstore.Part{p}); err != nil {
		t.Fatalf("CompleteMultipart: %v", err)
	}
	checkContent(t, s, key, second)
}

func testMultipartStaleETag(t *testing.T, s blobstore.Store) {
	key := "storetest/stale-etag"
	id := createMultipart(t, s, key)
	old := uploadPart(t, s, key, id, 1, Data(12, 1000))
	uploadPart(t, s, key, id, 1, Data(13, 1000))
	err := s.CompleteMultipart(testContext(t), key, id, []blobstore.Part{old})
	if !errors.Is(err, blobstore.ErrInvalidPart) {
		t.Fatalf("CompleteMultipart with a replaced part's ETag: %v, want ErrInvalidPart", err)
	}
	if err := s.AbortMultipart(testContext(t), key, id); err != nil {
		t.Fatalf("AbortMultipart: %v", err)
	}
}

func testMultipartSmallPart(t *testing.T, s blobstore.Store) {
	key := "storetest/small-part"
	id := createMultipart(t, s, key)
	parts := []blobstore.Part{
		uploadPart(t, s, key, id, 1, Data(14, 100)),
		uploadPart(t, s, key, id, 2, Data(15, 100)),
	}
	err := s.CompleteMultipart(testContext(t), key, id, parts)
	if !errors.Is(err, blobstore.ErrInvalidPart) {
		t.Fatalf("CompleteMultipart with a small first part: %v, want ErrInvalidPart", err)
	}
	if err := s.AbortMultipart(testContext(t), key, id); err != nil {
		t.Fatalf("AbortMultipart: %v", err)
	}
}

func testMultipartAbort(t *testing.T, s blobstore.Store) {
	key := "storetest/abort"
	id := createMultipart(t, s, key)
	p := uploadPart(t, s, key, id, 1, Data(16, 1000))
	if err := s.AbortMultipart(testContext(t), key, id); err != nil {
		t.Fatalf("AbortMultipart: %v", err)
	}
	ctx := testContext(t)
	_, err := s.UploadPart(ctx, key, id, 2, strings.NewReader("x"), 1)
	if !errors.Is(err, blobstore.ErrNotFound) {
		t.Errorf("UploadPart after abort: %v, want ErrNotFound", err)
	}
	err = s.CompleteMultipart(ctx, key, id, []blobstore.Part{p})
	if !errors.Is(err, blobstore.ErrNotFound) {
		t.Errorf("CompleteMultipart after abort: %v, want ErrNotFound", err)
	}
	if _, err := s.Stat(ctx, key); !errors.Is(err, blobstore.ErrNotFound) {
		t.Errorf("Stat after abort: %v, want ErrNotFound", err)
	}
	err = s.AbortMultipart(ctx, key, id)
	if err != nil && !errors.Is(err, blobstore.ErrNotFound) {
		t.Errorf("second AbortMultipart: %v, want nil or ErrNotFound", err)
	}
}

func testMultipartUnknownUpload(t *testing.T, s blobstore.Store) {
	key := "storetest/unknown-upload"
	other := createMultipart(t, s, "storetest/unknown-upload-other")
	t.Cleanup(func() {
		_ = s.AbortMultipart(context.Background(), "storetest/unknown-upload-other", other)
	})
	part := []blobstore.Part{{Number: 1, ETag: "0123456789abcdef0123456789abcdef", Size: 1}}
	ids := map[string]string{
		"made up":      "0123456789abcdef0123456789abcdef",
		"empty":        "",
		"path":         "../../x",
		"other key's":  other,
		"uuid-like id": "6a1f3c52-0d4e-4b8a-9f11-2c7d9e0a5b34",
	}
	for name, id := range ids {
		t.Run(name, func(t *testing.T) {
			ctx := testContext(t)
			err := s.CompleteMultipart(ctx, key, id, part)
			if !errors.Is(err, blobstore.ErrNotFound) {
				t.Errorf("CompleteMultipart: %v, want ErrNotFound", err)
			}
			_, err = s.UploadPart(ctx, key, id, 1, strings.NewReader("x"), 1)
			if !errors.Is(err, blobstore.ErrNotFound) {
				t.Errorf("UploadPart: %v, want ErrNotFound", err)
			}
			err = s.AbortMultipart(ctx, key, id)
			if !errors.Is(err, blobstore.ErrNotFound) {
				t.Errorf("AbortMultipart: %v, want ErrNotFound", err)
			}
		})
	}
}

func testConcurrentPuts(t *testing.T, s blobstore.Store) {
	const writers = 8
	const size = 64 << 10
	shared := "storetest/concurrent/shared"
	var wg sync.WaitGroup
	errs := make(chan error, 2*writers)
	for i := range writers {
		wg.Go(func() {
			ctx := testContext(t)
			own := Data(uint64(200+i), size)
			key := fmt.Sprintf("storetest/concurrent/%d", i)
			if err := s.Put(ctx, key, bytes.NewReader(own), size); err != nil {
				errs <- fmt.Errorf("Put(%s): %w", key, err)
			}
			if err := s.Put(ctx, shared, bytes.NewReader(own), size); err != nil {
				errs <- fmt.Errorf("Put(%s): %w", shared, err)
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}

	for i := range writers {
		checkContent(t, s, fmt.Sprintf("storetest/concurrent/%d", i), Data(uint64(200+i), size))
	}

	got, err := read(t, s, shared, 0, -1)
	if err != nil {
		t.Fatalf("Open(%s): %v", shared, err)
	}
	for i := range writers {
		if bytes.Equal(got, Data(uint64(200+i), size)) {
			return
		}
	}
	t.Fatalf("%s has %d bytes that match none of the %d writers", shared, len(got), writers)
}

// testReadDuringOverwrite checks that a reader sees either the old or the
// new content, never a mix or a partly written object.
func testReadDuringOverwrite(t *testing.T, s blobstore.Store) {
	const rounds = 20
	const size = 256 << 10
	key := "storetest/overwrite-race"
	versions := [][]byte{Data(300, size), Data(301, size)}
	put(t, s, key, versions[0])
	done := make(chan struct{})
	var wg sync.WaitGroup
	wg.Go(func() {
		defer close(done)
		for i := range rounds {
			data := versions[(i+1)%2]
			if err := s.Put(testContext(t), key, bytes.NewReader(data), size); err != nil {
				t.Errorf("Put round %d: %v", i, err)
				return
			}
		}
	})
	for reads := 0; reads < 10*rounds && !isClosed(done); reads++ {
		got, err := read(t, s, key, 0, -1)
		if err != nil {
			t.Errorf("Open during overwrite: %v", err)
			break
		}
		if !bytes.Equal(got, versions[0]) && !bytes.Equal(got, versions[1]) {
			t.Errorf("read %d bytes that are neither the old nor the new object", len(got))
			break
		}
	}
	wg.Wait()
}

func isClosed(ch <-chan struct{}) bool {
	select {
	case <-ch:
		return true
	default:
		return false
	}
}

func testCanceledContext(t *testing.T, s blobstore.Store) {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	key := "storetest/canceled"
	if err := s.Put(ctx, key, bytes.NewReader(Data(17, 100)), 100); err == nil {
		t.Error("Put with a canceled context returned no error")
	}
	if _, err := s.Stat(ctx, key); err == nil {
		t.Error("Stat with a canceled context returned no error")
	}
	if _, err := s.Stat(testContext(t), key); !errors.Is(err, blobstore.ErrNotFound) {
		t.Errorf("Stat after a canceled Put: %v, want ErrNotFound", err)
	}
}
