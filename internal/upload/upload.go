// Package upload streams blob upload sessions into a blobstore.Store. The
// session's progress is a State value that the caller stores in the
// replicated Raft state after each call, so that any node can continue a
// session that another node started: no node keeps anything in memory
// between calls.
//
// Data is hashed with SHA-256 while it streams, and the hash state is
// saved in the State. Full parts are sent as parts of a multipart upload
// as soon as more data follows them, so at most one part is buffered. The
// bytes after the last part (the tail) are written as a plain object at
// the end of each Append, and the next call reads them back and continues.
//
// Store requests per session, with P the part size and N the blob size:
//
//   - N ≤ P, pushed as one PATCH and an empty PUT, or as one monolithic
//     PUT: 1 Put. The tail object is the finished blob, and no copy is made.
//   - N > P in one PATCH: 1 CreateMultipart, about N/P UploadParts, 1 Put of
//     the tail, then at Finish 1 Open of the tail, 1 UploadPart, 1
//     CompleteMultipart and 1 Delete. A tail of at least
//     blobstore.MinPartSize is sent as a part instead, which saves the
//     Put, the Open and the Delete.
//   - Each further Append with data: 1 Open of the previous tail (if any),
//     1 Put of the new tail and 1 Delete of the previous one, plus the
//     parts it fills.
//
// Digests other than SHA-256 cost one read of the finished blob.
package upload

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	_ "crypto/sha512" // registers SHA-384 and SHA-512 for go-digest
	"encoding"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"io"
	"log/slog"
	"time"

	"github.com/opencontainers/go-digest"

	"github.com/flotilla-registry/flotilla/blobstore"
)

// Errors returned by the Engine. Store errors pass through wrapped, so
// callers can also match blobstore.ErrNotFound and blobstore.ErrUnavailable.
var (
	// ErrDigestMismatch is returned by Finish when the content does not
	// match the expected digest; the session's objects are deleted.
	ErrDigestMismatch = errors.New("upload: digest does not match the content")
	// ErrInvalidDigest is returned by Finish for a malformed digest.
	ErrInvalidDigest = errors.New("upload: invalid digest")
	// ErrUnsupportedDigest is returned by Finish for a digest algorithm
	// other than sha256, sha384 and sha512.
	ErrUnsupportedDigest = errors.New("upload: unsupported digest algorithm")
	// ErrTooLarge is returned when the blob would need more than
	// blobstore.MaxParts parts.
	ErrTooLarge = errors.New("upload: blob too large")
	// ErrInvalidState is returned for a State whose fields are
	// inconsistent, or whose tail object does not have the recorded size.
	ErrInvalidState = errors.New("upload: invalid session state")
)

// DefaultPartSize is the part size of an Engine made without WithPartSize:
// with blobstore.MaxParts parts it allows blobs of up to about 78 GiB, and
// each upload in progress buffers at most this much.
const DefaultPartSize = 8 << 20

// cleanupTimeout bounds the requests that remove objects after a failure,
// which run even when the caller's context has ended.
const cleanupTimeout = 30 * time.Second

// Result describes a finished blob.
type Result struct {
	// Key is the object that holds the blob.
	Key string
	// Size is the blob's size in bytes.
	Size int64
	// Digest is the verified digest, the one given to Finish.
	Digest digest.Digest
}

// Engine runs upload sessions against one store. It is safe for concurrent
// use and keeps no per-session data between calls.
type Engine struct {
	store    blobstore.Store
	logger   *slog.Logger
	partSize int64
	maxParts int
	buffers  *bufferPool
}

// Option changes an Engine made by New.
type Option func(*Engine)

// WithPartSize sets the size of the parts sent to the store. Sizes are
// clamped to blobstore.MinPartSize..blobstore.MaxPartSize.
func WithPartSize(size int64) Option {
	return func(e *Engine) {
		e.partSize = min(max(size, blobstore.MinPartSize), blobstore.MaxPartSize)
	}
}

// New returns an engine that writes to store.
func New(store blobstore.Store, logger *slog.Logger, opts ...Option) *Engine {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	e := &Engine{
		store:    store,
		logger:   logger,
		partSize: DefaultPartSize,
		maxParts: blobstore.MaxParts,
	}
	for _, opt := range opts {
		opt(e)
	}
	e.buffers = newBufferPool(e.partSize)
	return e
}

// PartSize returns the size of the parts the engine sends.
func (e *Engine) PartSize() int64 { return e.partSize }

// Start returns the State of a new, empty session whose objects are named
// after key. It sends no request.
func (e *Engine) Start(key string) State {
	return State{Key: key}
}

// Append streams r to the store and returns the State after it. On error
// it returns st unchanged. After a failed read of r or an unavailable store
// the session can continue from st. An empty r sends no request.
//
// Append keeps the objects of st, so the caller can still continue from st
// when recording the new State fails. Once the new State is recorded, the
// caller calls Release to delete what it replaced.
func (e *Engine) Append(ctx context.Context, st State, r io.Reader) (State, error) {
	if err := st.validate(); err != nil {
		return st, err
	}
	r, ok, err := peek(r)
	if err != nil {
		return st, err
	}
	if !ok {
		return st, nil
	}
	w, err := e.newWriter(ctx, st)
	if err != nil {
		return st, err
	}
	defer w.release()
	next, err := w.appendData(ctx, r)
	if err != nil {
		w.discardNew(ctx)
		return st, err
	}
	return next, nil
}

// Release deletes the tail object of old when next, the State that Append
// returned, no longer uses it. A failure leaves an orphaned object behind
// and is logged.
func (e *Engine) Release(ctx context.Context, old, next State) {
	e.deleteReplaced(ctx, old.TailKey, next.TailKey)
}

// Finish streams r, which may be empty, as the last data of the session,
// writes the blob and checks it against want. SHA-256 comes from the saved
// hash state, and other algorithms read the finished blob back. On a
// mismatch it deletes the session's objects and returns ErrDigestMismatch.
// An invalid or unsupported digest leaves the session unchanged.
func (e *Engine) Finish(ctx context.Context, st State, r io.Reader, want digest.Digest) (Result, error) {
	if err := checkDigest(want); err != nil {
		return Result{}, err
	}
	if err := st.validate(); err != nil {
		return Result{}, err
	}
	r, ok, err := peek(r)
	if err != nil {
		return Result{}, err
	}
	if !ok && st.MultipartID == "" {
		return e.finishInPlace(ctx, st, want)
	}
	w, err := e.newWriter(ctx, st)
	if err != nil {
		return Result{}, err
	}
	defer w.release()
	if ok {
		if err := w.consume(ctx, r); err != nil {
			w.discardNew(ctx)
			return Result{}, err
		}
	}
	if w.st.MultipartID == "" {
		return e.finishSingle(ctx, w, st, want)
	}
	return e.finishMultipart(ctx, w, st, want)
}

// Abort deletes the session's tail object and aborts its multipart upload.
// Objects that are already gone are no error.
func (e *Engine) Abort(ctx context.Context, st State) error {
	if err := st.validate(); err != nil {
		return err
	}
	var errs []error
	if st.MultipartID != "" {
		err := e.store.AbortMultipart(ctx, st.Object, st.MultipartID)
		if err != nil && !errors.Is(err, blobstore.ErrNotFound) {
			errs = append(errs, fmt.Errorf("upload: abort multipart upload: %w", err))
		}
	}
	if st.TailKey != "" {
		if err := e.store.Delete(ctx, st.TailKey); err != nil {
			errs = append(errs, fmt.Errorf("upload: delete tail: %w", err))
		}
	}
	return errors.Join(errs...)
}

// finishInPlace finishes a session without a multipart upload and without
// new data: the tail object is the blob, so nothing is copied. An empty
// session writes an empty object.
func (e *Engine) finishInPlace(ctx context.Context, st State, want digest.Digest) (Result, error) {
	h, err := restoreHash(st)
	if err != nil {
		return Result{}, err
	}
	key := st.TailKey
	if st.Offset == 0 {
		key = newObjectKey(st.Key)
		if err := e.checkSHA256(h, want); err != nil {
			return Result{}, err
		}
		if err := e.store.Put(ctx, key, bytes.NewReader(nil), 0); err != nil {
			return Result{}, fmt.Errorf("upload: write empty blob: %w", err)
		}
	} else if err := e.checkSHA256(h, want); err != nil {
		e.deleteObject(ctx, key)
		return Result{}, err
	}
	return e.verify(ctx, key, st.Offset, want)
}

// finishSingle writes the buffered blob as one object. The digest is
// checked before the write when it is SHA-256, so a mismatched blob is
// never stored.
func (e *Engine) finishSingle(ctx context.Context, w *writer, old State, want digest.Digest) (Result, error) {
	if err := e.checkSHA256(w.hash, want); err != nil {
		e.deleteObject(ctx, old.TailKey)
		return Result{}, err
	}
	key := newObjectKey(w.st.Key)
	if err := e.store.Put(ctx, key, bytes.NewReader(w.buf), int64(len(w.buf))); err != nil {
		return Result{}, fmt.Errorf("upload: write blob: %w", err)
	}
	e.deleteReplaced(ctx, old.TailKey, "")
	return e.verify(ctx, key, w.st.Offset, want)
}

// finishMultipart sends the buffered bytes as the last part and completes
// the multipart upload. A SHA-256 mismatch aborts the upload instead.
func (e *Engine) finishMultipart(ctx context.Context, w *writer, old State, want digest.Digest) (Result, error) {
	if len(w.buf) > 0 {
		if len(w.st.Parts) >= e.maxParts {
			w.discardNew(ctx)
			return Result{}, fmt.Errorf("%w: more than %d parts of %d bytes", ErrTooLarge, e.maxParts, e.partSize)
		}
		if err := w.uploadPart(ctx); err != nil {
			w.discardNew(ctx)
			return Result{}, err
		}
	}
	if err := e.checkSHA256(w.hash, want); err != nil {
		e.abortMultipart(ctx, w.st)
		e.deleteObject(ctx, old.TailKey)
		return Result{}, err
	}
	err := e.store.CompleteMultipart(ctx, w.st.Object, w.st.MultipartID, w.st.Parts)
	if err != nil {
		return Result{}, fmt.Errorf("upload: complete multipart upload: %w", err)
	}
	e.deleteReplaced(ctx, old.TailKey, "")
	return e.verify(ctx, w.st.Object, w.st.Offset, want)
}

// checkSHA256 compares h with want when want is a SHA-256 digest.
func (e *Engine) checkSHA256(h hash.Hash, want digest.Digest) error {
	if want.Algorithm() != digest.SHA256 {
		return nil
	}
	got := digest.NewDigestFromBytes(digest.SHA256, h.Sum(nil))
	if got != want {
		return fmt.Errorf("%w: content is %s, expected %s", ErrDigestMismatch, got, want)
	}
	return nil
}

// verify returns the Result for the blob at key. For a digest other than
// SHA-256, which checkSHA256 has already compared, it reads the blob back,
// and deletes it when it does not match.
func (e *Engine) verify(ctx context.Context, key string, size int64, want digest.Digest) (Result, error) {
	result := Result{Key: key, Size: size, Digest: want}
	if want.Algorithm() == digest.SHA256 {
		return result, nil
	}
	rc, err := e.store.Open(ctx, key, 0, -1)
	if err != nil {
		return Result{}, fmt.Errorf("upload: read blob back to verify %s: %w", want.Algorithm(), err)
	}
	defer rc.Close()
	h := want.Algorithm().Hash()
	n, err := io.Copy(h, rc)
	if err != nil {
		return Result{}, fmt.Errorf("upload: read blob back to verify %s: %w", want.Algorithm(), err)
	}
	got := digest.NewDigest(want.Algorithm(), h)
	if got != want || n != size {
		e.deleteObject(ctx, key)
		return Result{}, fmt.Errorf("%w: content is %s (%d bytes), expected %s (%d bytes)",
			ErrDigestMismatch, got, n, want, size)
	}
	return result, nil
}

// deleteReplaced deletes the tail object old after a newer object has
// replaced it. A failure leaves an orphaned object behind and is logged.
func (e *Engine) deleteReplaced(ctx context.Context, old, current string) {
	if old != "" && old != current {
		e.deleteObject(ctx, old)
	}
}

// deleteObject removes an object that is no longer needed, also when ctx
// has ended, and logs a failure.
//
// NOTE: objects can still be orphaned: after a failed delete, after a
// write whose State the caller discarded, and for sessions that are never
// finished or aborted. They all start with a session's base key, but
// blobstore.Store cannot list keys, so removing them needs a collector
// outside this package.
func (e *Engine) deleteObject(ctx context.Context, key string) {
	if key == "" {
		return
	}
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), cleanupTimeout)
	defer cancel()
	if err := e.store.Delete(ctx, key); err != nil {
		e.logger.Warn("upload object delete failed, object left as an orphan", "key", key, "err", err)
	}
}

// abortMultipart aborts the multipart upload of st, also when ctx has
// ended, and logs a failure.
func (e *Engine) abortMultipart(ctx context.Context, st State) {
	if st.MultipartID == "" {
		return
	}
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), cleanupTimeout)
	defer cancel()
	err := e.store.AbortMultipart(ctx, st.Object, st.MultipartID)
	if err != nil && !errors.Is(err, blobstore.ErrNotFound) {
		e.logger.Warn("multipart upload abort failed, parts left as orphans", "key", st.Object, "err", err)
	}
}

// checkDigest returns ErrUnsupportedDigest or ErrInvalidDigest for a
// digest that Finish cannot verify.
func checkDigest(d digest.Digest) error {
	err := d.Validate()
	switch {
	case err == nil:
		return nil
	case errors.Is(err, digest.ErrDigestUnsupported):
		return fmt.Errorf("%w: %q", ErrUnsupportedDigest, d)
	default:
		return fmt.Errorf("%w: %q: %w", ErrInvalidDigest, d, err)
	}
}

// restoreHash returns the SHA-256 hash continued from st.Hash.
func restoreHash(st State) (hash.Hash, error) {
	h := sha256.New()
	if len(st.Hash) == 0 {
		return h, nil
	}
	if err := h.(encoding.BinaryUnmarshaler).UnmarshalBinary(st.Hash); err != nil {
		return nil, fmt.Errorf("%w: hash state: %w", ErrInvalidState, err)
	}
	return h, nil
}

// saveHash returns the state of h for State.Hash.
func saveHash(h hash.Hash) ([]byte, error) {
	b, err := h.(encoding.BinaryMarshaler).MarshalBinary()
	if err != nil {
		return nil, fmt.Errorf("upload: save hash state: %w", err)
	}
	return b, nil
}

// newObjectKey returns base + "." + 16 random hex digits.
func newObjectKey(base string) string {
	var b [8]byte
	_, _ = rand.Read(b[:]) // crypto/rand.Read never returns an error
	return base + "." + hex.EncodeToString(b[:])
}

// peek reads one byte of r and returns a reader of all of r and whether r
// has any data. A nil r is empty.
func peek(r io.Reader) (io.Reader, bool, error) {
	if r == nil {
		return nil, false, nil
	}
	first := make([]byte, 1)
	n, err := io.ReadFull(r, first)
	if n == 0 {
		if errors.Is(err, io.EOF) {
			return nil, false, nil
		}
		return nil, false, fmt.Errorf("upload: read request body: %w", err)
	}
	return io.MultiReader(bytes.NewReader(first), r), true, nil
}
