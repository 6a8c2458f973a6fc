package upload

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"hash"
	"io"
	"slices"

	"github.com/flotilla-registry/flotilla/blobstore"
)

// writer carries one Append or Finish call: a working copy of the State,
// the running hash, and a buffer of at most one part that starts with the
// tail read back from the store.
type writer struct {
	e    *Engine
	st   State
	hash hash.Hash
	buf  []byte
	// pooled is the buffer from the engine's pool, nil when the buffer was
	// made larger than the part size for a larger tail.
	pooled *[]byte
	// created is true when this call created the multipart upload.
	created bool
}

// newWriter restores the hash of st and reads its tail into the buffer.
func (e *Engine) newWriter(ctx context.Context, st State) (*writer, error) {
	h, err := restoreHash(st)
	if err != nil {
		return nil, err
	}
	w := &writer{e: e, st: st, hash: h}
	w.st.Parts = slices.Clone(st.Parts)
	if st.Tail > e.partSize {
		// A node with a larger part size wrote this tail.
		w.buf = make([]byte, 0, st.Tail)
	} else {
		w.pooled = e.buffers.get(int(st.Tail))
		w.buf = (*w.pooled)[:0]
	}
	if st.Tail > 0 {
		if err := w.readTail(ctx); err != nil {
			w.release()
			return nil, err
		}
	}
	return w, nil
}

// release returns the buffer to the pool.
func (w *writer) release() {
	if w.pooled != nil {
		*w.pooled = w.buf[:0]
		w.e.buffers.put(w.pooled)
		w.pooled = nil
	}
	w.buf = nil
}

// grow moves the buffer's content into a pooled buffer of the next
// larger capacity. It returns false when the buffer already has the
// part size or more.
func (w *writer) grow() bool {
	if w.pooled == nil || cap(w.buf) >= w.e.buffers.largest() {
		return false
	}
	next := w.e.buffers.get(cap(w.buf) + 1)
	*next = append((*next)[:0], w.buf...)
	*w.pooled = w.buf[:0]
	w.e.buffers.put(w.pooled)
	w.pooled, w.buf = next, *next
	return true
}

// readTail reads the tail object into the buffer and checks that it has
// exactly st.Tail bytes.
func (w *writer) readTail(ctx context.Context) error {
	rc, err := w.e.store.Open(ctx, w.st.TailKey, 0, -1)
	if err != nil {
		return fmt.Errorf("upload: read tail of session %s: %w", w.st.Key, err)
	}
	defer rc.Close()
	w.buf = w.buf[:w.st.Tail]
	if _, err := io.ReadFull(rc, w.buf); err != nil {
		if errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, io.EOF) {
			return fmt.Errorf("%w: tail %s is shorter than %d bytes", ErrInvalidState, w.st.TailKey, w.st.Tail)
		}
		return fmt.Errorf("upload: read tail of session %s: %w", w.st.Key, err)
	}
	var extra [1]byte
	if n, _ := io.ReadFull(rc, extra[:]); n > 0 {
		return fmt.Errorf("%w: tail %s is longer than %d bytes", ErrInvalidState, w.st.TailKey, w.st.Tail)
	}
	return nil
}

// appendData consumes r and stores what remains in the buffer: as a part
// when a multipart upload exists and the buffer is large enough, else as a
// new tail object. It returns the State after the call.
func (w *writer) appendData(ctx context.Context, r io.Reader) (State, error) {
	if err := w.consume(ctx, r); err != nil {
		return State{}, err
	}
	w.st.TailKey, w.st.Tail = "", 0
	switch {
	case len(w.buf) == 0:
	case w.st.MultipartID != "" && len(w.buf) >= blobstore.MinPartSize && len(w.st.Parts)+1 < w.e.maxParts:
		if err := w.uploadPart(ctx); err != nil {
			return State{}, err
		}
	default:
		key := newObjectKey(w.st.Key)
		if err := w.e.store.Put(ctx, key, bytes.NewReader(w.buf), int64(len(w.buf))); err != nil {
			return State{}, fmt.Errorf("upload: write tail of session %s: %w", w.st.Key, err)
		}
		w.st.TailKey, w.st.Tail = key, int64(len(w.buf))
	}
	h, err := saveHash(w.hash)
	if err != nil {
		return State{}, err
	}
	w.st.Hash = h
	return w.st, nil
}

// consume reads r to its end through the hash into the buffer. A full
// buffer is sent as a part only when more data follows it. The bytes after
// the last part therefore always stay in the buffer, ready to be stored as
// the tail or sent as the final part.
func (w *writer) consume(ctx context.Context, r io.Reader) error {
	src := &countingReader{r: io.TeeReader(r, w.hash)}
	defer func() { w.st.Offset += src.n }()
	for {
		n, err := io.ReadFull(src, w.buf[len(w.buf):cap(w.buf)])
		w.buf = w.buf[:len(w.buf)+n]
		if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
			return nil
		}
		if err != nil {
			return fmt.Errorf("upload: read request body: %w", err)
		}
		if w.grow() {
			continue
		}
		var next [1]byte
		n, err = io.ReadFull(src, next[:])
		if n == 0 {
			if errors.Is(err, io.EOF) {
				return nil
			}
			return fmt.Errorf("upload: read request body: %w", err)
		}
		// The part after this one must still fit in maxParts.
		if len(w.st.Parts)+1 >= w.e.maxParts {
			return fmt.Errorf("%w: more than %d parts of %d bytes", ErrTooLarge, w.e.maxParts, w.e.partSize)
		}
		if err := w.uploadPart(ctx); err != nil {
			return err
		}
		w.buf = append(w.buf, next[0])
	}
}

// uploadPart sends the buffer as the next part, creating the multipart
// upload first if needed, and empties the buffer.
func (w *writer) uploadPart(ctx context.Context) error {
	if w.st.MultipartID == "" {
		object := newObjectKey(w.st.Key)
		id, err := w.e.store.CreateMultipart(ctx, object)
		if err != nil {
			return fmt.Errorf("upload: create multipart upload for session %s: %w", w.st.Key, err)
		}
		w.st.Object, w.st.MultipartID, w.created = object, id, true
	}
	n := len(w.st.Parts) + 1
	part, err := w.e.store.UploadPart(ctx, w.st.Object, w.st.MultipartID, n,
		bytes.NewReader(w.buf), int64(len(w.buf)))
	if err != nil {
		return fmt.Errorf("upload: send part %d of session %s: %w", n, w.st.Key, err)
	}
	w.st.Parts = append(w.st.Parts, part)
	w.buf = w.buf[:0]
	return nil
}

// discardNew aborts a multipart upload that this call created, after the
// call failed. Parts sent to an older multipart upload stay: the State the
// caller keeps does not list them, and later parts with the same numbers
// replace them.
func (w *writer) discardNew(ctx context.Context) {
	if w.created {
		w.e.abortMultipart(ctx, w.st)
	}
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
