// Package blobstore stores blob content: in S3-compatible object storage
// through minio-go, or in a local folder. It knows nothing of Raft or HTTP;
// the index that maps a digest to its object lives in the consensus package.
//
// Objects are written either whole (Put) or as a multipart upload whose
// parts are numbered from 1. A multipart upload id outlives the process that
// created it, so any node that knows the id and the parts can add parts,
// complete or abort it.
//
// Both stores stream: neither holds a whole object in memory.
package blobstore

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"unicode/utf8"
)

// Errors returned by every Store. Callers match them with errors.Is.
var (
	// ErrNotFound is returned when the object or multipart upload does not
	// exist.
	ErrNotFound = errors.New("blobstore: not found")
	// ErrUnavailable wraps failures that a retry may cure: a network error,
	// a time-out, or a 5xx response or SlowDown error from the object store.
	ErrUnavailable = errors.New("blobstore: unavailable")
	// ErrInvalidRange is returned by Open when offset is at or past the end
	// of the object (offset 0 is valid for an empty object), or when offset
	// or length is negative.
	ErrInvalidRange = errors.New("blobstore: invalid range")
	// ErrInvalidKey is returned for a key that ValidateKey rejects.
	ErrInvalidKey = errors.New("blobstore: invalid key")
	// ErrInvalidPart is returned by CompleteMultipart when a part is missing,
	// its ETag does not match, the parts are out of order, or a part other
	// than the last is smaller than MinPartSize.
	ErrInvalidPart = errors.New("blobstore: invalid part")
)

// MinPartSize is the smallest size of every part but the last of a
// multipart upload (S3 rejects smaller ones when the upload completes).
const MinPartSize = 5 << 20

// MaxPartSize is the largest part S3 accepts.
const MaxPartSize = 5 << 30

// MaxParts is the highest part number S3 accepts.
const MaxParts = 10000

// MaxKeyLength is the longest key in bytes, the S3 limit.
const MaxKeyLength = 1024

// Part identifies one uploaded part of a multipart upload.
type Part struct {
	Number int    `json:"n"`
	ETag   string `json:"etag"`
	Size   int64  `json:"size"`
}

// Info describes a stored object.
type Info struct {
	Key  string
	Size int64
}

// Store is implemented by the S3 store and the filesystem store. Keys are
// slash-separated relative paths such as "blobs/3f/3f9c…" that ValidateKey
// accepts; a store may add its own root prefix.
type Store interface {
	// Put writes an object of size bytes from r in one request. It reads
	// exactly size bytes and fails if r ends early. A reader never sees a
	// partly written object.
	Put(ctx context.Context, key string, r io.Reader, size int64) error
	// Open returns a reader of length bytes from offset. Length -1 reads
	// to the end, and a range past the end stops at the end.
	Open(ctx context.Context, key string, offset, length int64) (io.ReadCloser, error)
	// Stat returns the size of an object.
	Stat(ctx context.Context, key string) (Info, error)
	// Delete removes an object; deleting a missing object is no error.
	Delete(ctx context.Context, key string) error

	// CreateMultipart starts a multipart upload to key and returns its id.
	CreateMultipart(ctx context.Context, key string) (string, error)
	// UploadPart stores part number n (1-based) of size bytes from r. Uploading
	// a number again replaces that part.
	UploadPart(ctx context.Context, key, uploadID string, n int, r io.Reader, size int64) (Part, error)
	// CompleteMultipart joins the parts, in order, into the object at key
	// and ends the upload. It returns ErrNotFound for an unknown upload and
	// ErrInvalidPart for parts that do not match the uploaded ones.
	CompleteMultipart(ctx context.Context, key, uploadID string, parts []Part) error
	// AbortMultipart discards a multipart upload and its parts. It returns
	// ErrNotFound for an unknown upload.
	AbortMultipart(ctx context.Context, key, uploadID string) error
}

// ValidateKey returns an error wrapping ErrInvalidKey unless key is a
// relative slash-separated path of valid UTF-8 of at most MaxKeyLength
// bytes, without empty segments, without control characters or
// backslashes, and without segments that start with a dot. The last rule
// excludes "." and "..", and it leaves names starting with a dot to the
// stores' own bookkeeping.
func ValidateKey(key string) error {
	switch {
	case key == "":
		return fmt.Errorf("%w: empty key", ErrInvalidKey)
	case len(key) > MaxKeyLength:
		return fmt.Errorf("%w: key of %d bytes is longer than %d", ErrInvalidKey, len(key), MaxKeyLength)
	case !utf8.ValidString(key):
		return fmt.Errorf("%w: key %q is not valid UTF-8", ErrInvalidKey, key)
	}
	for _, c := range key {
		if c < 0x20 || c == 0x7f || c == '\\' {
			return fmt.Errorf("%w: key %q contains a control character or backslash", ErrInvalidKey, key)
		}
	}
	for segment := range strings.SplitSeq(key, "/") {
		if segment == "" {
			return fmt.Errorf("%w: key %q has an empty segment or a leading or trailing slash", ErrInvalidKey, key)
		}
		if segment[0] == '.' {
			return fmt.Errorf("%w: key %q has a segment starting with a dot", ErrInvalidKey, key)
		}
	}
	return nil
}
