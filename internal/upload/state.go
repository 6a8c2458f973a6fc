package upload

import (
	"fmt"
	"strings"

	"github.com/flotilla-registry/flotilla/blobstore"
)

// State is an upload session's progress as a plain value. The caller stores
// it (in the replicated Raft state) after every call, so that any node can
// continue the session with the last stored State. It encodes to JSON.
//
// Every object that a session writes is named Key + "." + a random suffix.
// Two nodes that continue the same State at the same time therefore never
// overwrite each other's objects, and the State that the caller stores
// names the objects that belong to the session. The caller must store a
// returned State only while the State it passed in is still the session's
// current one (a compare-and-swap), and discard it otherwise.
type State struct {
	// Key is the base key of the session's objects, such as
	// "blobs/<upload id>".
	Key string `json:"key"`
	// Object is the key of the multipart upload's target, set together
	// with MultipartID.
	Object string `json:"object,omitempty"`
	// MultipartID is the multipart upload id, "" until the first part is
	// flushed.
	MultipartID string `json:"multipart_id,omitempty"`
	// Parts are the flushed parts, numbered from 1.
	Parts []blobstore.Part `json:"parts,omitempty"`
	// Offset is the number of bytes received so far.
	Offset int64 `json:"offset"`
	// Hash is the SHA-256 state of the Offset bytes received, from the
	// encoding.BinaryMarshaler of crypto/sha256.
	Hash []byte `json:"hash,omitempty"`
	// TailKey is the object that contains the bytes received after the
	// last part, "" when Tail is 0.
	TailKey string `json:"tail_key,omitempty"`
	// Tail is the size of the TailKey object.
	Tail int64 `json:"tail,omitempty"`
}

// validate returns an error wrapping ErrInvalidState unless the fields are
// consistent with each other: the part and tail sizes add up to Offset, the
// parts are numbered 1, 2, …, and every object is named after Key.
func (st State) validate() error {
	if err := blobstore.ValidateKey(st.Key); err != nil {
		return fmt.Errorf("%w: %w", ErrInvalidState, err)
	}
	invalid := func(format string, args ...any) error {
		return fmt.Errorf("%w: session %s: %s", ErrInvalidState, st.Key, fmt.Sprintf(format, args...))
	}
	switch {
	case st.Offset < 0 || st.Tail < 0 || st.Tail > st.Offset:
		return invalid("offset %d and tail %d are inconsistent", st.Offset, st.Tail)
	case (st.Tail > 0) != (st.TailKey != ""):
		return invalid("tail of %d bytes with tail key %q", st.Tail, st.TailKey)
	case st.TailKey != "" && !st.ownsKey(st.TailKey):
		return invalid("tail key %q is not named after the session", st.TailKey)
	case (st.MultipartID != "") != (st.Object != ""):
		return invalid("multipart upload id and object must be set together")
	case st.Object != "" && !st.ownsKey(st.Object):
		return invalid("object %q is not named after the session", st.Object)
	case st.MultipartID == "" && len(st.Parts) > 0:
		return invalid("%d parts without a multipart upload", len(st.Parts))
	case len(st.Parts) > blobstore.MaxParts:
		return invalid("%d parts, more than %d", len(st.Parts), blobstore.MaxParts)
	case st.Offset > 0 && len(st.Hash) == 0:
		return invalid("no hash state after %d bytes", st.Offset)
	}
	sum := st.Tail
	for i, p := range st.Parts {
		if p.Number != i+1 || p.Size <= 0 || p.ETag == "" {
			return invalid("part %d is %+v", i+1, p)
		}
		sum += p.Size
	}
	if sum != st.Offset {
		return invalid("parts and tail hold %d bytes, offset is %d", sum, st.Offset)
	}
	return nil
}

// ownsKey reports whether key is one of the session's object names.
func (st State) ownsKey(key string) bool {
	return strings.HasPrefix(key, st.Key+".") && blobstore.ValidateKey(key) == nil
}
