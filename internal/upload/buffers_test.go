package upload

import (
	"bytes"
	"runtime"
	"testing"

	"github.com/flotilla-registry/flotilla/blobstore"
	"github.com/flotilla-registry/flotilla/blobstore/storetest"
	"github.com/flotilla-registry/flotilla/internal/logging"
)

func TestBufferPoolCapacities(t *testing.T) {
	p := newBufferPool(DefaultPartSize)
	for _, tc := range []struct{ need, want int }{
		{0, minBuffer},
		{minBuffer, minBuffer},
		{minBuffer + 1, 4 * minBuffer},
		{5 << 20, DefaultPartSize},
		{DefaultPartSize + 1, DefaultPartSize},
	} {
		b := p.get(tc.need)
		if cap(*b) != tc.want || len(*b) != 0 {
			t.Errorf("get(%d): len %d cap %d, want len 0 cap %d", tc.need, len(*b), cap(*b), tc.want)
		}
		p.put(b)
	}
	odd := make([]byte, 3, 1000)
	p.put(&odd) // another capacity: dropped, not pooled
	if b := p.get(0); cap(*b) != minBuffer {
		t.Errorf("get(0) after putting a foreign buffer: cap %d, want %d", cap(*b), minBuffer)
	}
}

// TestSmallBlobAllocatesLittle checks that a small blob does not take a
// buffer of the whole part size: a 100 KiB upload allocates well under
// the 8 MiB part.
func TestSmallBlobAllocatesLittle(t *testing.T) {
	store, err := blobstore.NewFilesystem(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	e := New(store, logging.Discard())
	data := storetest.Data(7, 100<<10)
	ctx := testContext(t)

	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	if _, err := e.Append(ctx, e.Start(newSessionKey()), bytes.NewReader(data)); err != nil {
		t.Fatalf("Append: %v", err)
	}
	runtime.ReadMemStats(&after)
	if n := after.TotalAlloc - before.TotalAlloc; n > 2<<20 {
		t.Errorf("a 100 KiB upload allocated %d bytes, want at most 2 MiB", n)
	}
}

// TestGrowingBufferParts streams a blob of several parts through the
// growing buffer and checks the part sizes: every part but the last is
// exactly the part size.
func TestGrowingBufferParts(t *testing.T) {
	raw, err := blobstore.NewFilesystem(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	e := New(raw, logging.Discard())
	data := storetest.Data(8, 2*DefaultPartSize+minBuffer+5)
	st, err := e.Append(testContext(t), e.Start(newSessionKey()), bytes.NewReader(data))
	if err != nil {
		t.Fatalf("Append: %v", err)
	}
	if len(st.Parts) != 2 || st.Tail != minBuffer+5 {
		t.Fatalf("%d parts and a tail of %d bytes, want 2 and %d", len(st.Parts), st.Tail, minBuffer+5)
	}
	for i, p := range st.Parts {
		if p.Size != DefaultPartSize {
			t.Errorf("part %d has %d bytes, want %d", i+1, p.Size, DefaultPartSize)
		}
	}
}
