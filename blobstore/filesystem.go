package blobstore

import (
	"context"
	"crypto/md5"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// Names of the filesystem store's own folders under its root. ValidateKey
// rejects segments that start with a dot, so no key can reach them.
const (
	fsTempDir      = ".tmp"
	fsMultipartDir = ".multipart"
	fsUploadKey    = "key"
)

// fsStaleTemp is the age after which NewFilesystem removes a leftover
// temporary file, which only a crashed write leaves behind.
const fsStaleTemp = 24 * time.Hour

// FSStore is a Store on a local folder, the default for a single node. An
// object is the file root/<key>. Every write goes to a temporary file in
// root/.tmp, is synced, and is then renamed into place, so a reader sees
// either the old object or the whole new one. A multipart upload is the
// folder root/.multipart/<upload id> with one file per part and a file
// that records the target key.
//
// Keys that are prefixes of each other ("a" and "a/b") cannot both exist,
// because "a" cannot be both a file and a folder.
type FSStore struct {
	root string
}

var _ Store = (*FSStore)(nil)

// NewFilesystem returns a store rooted at the folder root, creating it if
// needed, and removes temporary files that crashed writes left behind more
// than a day ago.
func NewFilesystem(root string) (*FSStore, error) {
	abs, err := filepath.Abs(root)
	if err != nil {
		return nil, fmt.Errorf("blobstore: resolve root %q: %w", root, err)
	}
	for _, dir := range []string{abs, filepath.Join(abs, fsTempDir), filepath.Join(abs, fsMultipartDir)} {
		if err := os.MkdirAll(dir, 0o700); err != nil {
			return nil, fmt.Errorf("blobstore: create folder: %w", err)
		}
	}
	s := &FSStore{root: abs}
	s.removeStaleTemp(time.Now().Add(-fsStaleTemp))
	return s, nil
}

// Root returns the absolute path of the store's folder.
func (s *FSStore) Root() string { return s.root }

// Put writes the object through a synced temporary file and a rename.
func (s *FSStore) Put(ctx context.Context, key string, r io.Reader, size int64) error {
	if err := ValidateKey(key); err != nil {
		return err
	}
	if size < 0 {
		return fmt.Errorf("blobstore: put %s: negative size %d", key, size)
	}
	tmp, err := s.writeTemp(ctx, "put-*", r, size, nil)
	if err != nil {
		return fmt.Errorf("blobstore: put %s: %w", key, err)
	}
	if err := s.publish(tmp, s.path(key)); err != nil {
		return fmt.Errorf("blobstore: put %s: %w", key, err)
	}
	return nil
}

// Open returns a reader of the file's byte range.
func (s *FSStore) Open(ctx context.Context, key string, offset, length int64) (io.ReadCloser, error) {
	if err := ValidateKey(key); err != nil {
		return nil, err
	}
	if offset < 0 || length < -1 {
		return nil, fmt.Errorf("%w: offset %d, length %d for %s", ErrInvalidRange, offset, length, key)
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}

	f, err := os.Open(s.path(key))
	if err != nil {
		return nil, fsError("open", key, err)
	}
	fi, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, fsError("open", key, err)
	}
	if fi.IsDir() {
		f.Close()
		return nil, fmt.Errorf("%w: %s", ErrNotFound, key)
	}
	if offset > 0 && offset >= fi.Size() {
		f.Close()
		return nil, fmt.Errorf("%w: offset %d of %s, which has %d bytes", ErrInvalidRange, offset, key, fi.Size())
	}

	remaining := fi.Size() - offset
	if length >= 0 && length < remaining {
		remaining = length
	}
	return &fsReader{
		Reader: io.NewSectionReader(f, offset, remaining),
		file:   f,
		ctx:    ctx,
	}, nil
}

// Stat returns the size of the file.
func (s *FSStore) Stat(ctx context.Context, key string) (Info, error) {
	if err := ValidateKey(key); err != nil {
		return Info{}, err
	}
	if err := ctx.Err(); err != nil {
		return Info{}, err
	}
	fi, err := os.Stat(s.path(key))
	if err != nil {
		return Info{}, fsError("stat", key, err)
	}
	if fi.IsDir() {
		return Info{}, fmt.Errorf("%w: %s", ErrNotFound, key)
	}
	return Info{Key: key, Size: fi.Size()}, nil
}

// Delete removes the file. Folders that become empty stay, because
// removing them could race with a Put that has just created them.
func (s *FSStore) Delete(ctx context.Context, key string) error {
	if err := ValidateKey(key); err != nil {
		return err
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	p := s.path(key)
	fi, err := os.Lstat(p)
	if err != nil {
		if isNotExist(err) {
			return nil
		}
		return fsError("delete", key, err)
	}
	if fi.IsDir() {
		return nil
	}
	if err := os.Remove(p); err != nil && !isNotExist(err) {
		return fsError("delete", key, err)
	}
	return nil
}

// CreateMultipart creates the upload's folder under a random id.
func (s *FSStore) CreateMultipart(ctx context.Context, key string) (string, error) {
	if err := ValidateKey(key); err != nil {
		return "", err
	}
	if err := ctx.Err(); err != nil {
		return "", err
	}
	var b [16]byte
	if _, err := rand.Read(b[:]); err != nil {
		return "", fmt.Errorf("blobstore: create upload id: %w", err)
	}
	id := hex.EncodeToString(b[:])
	dir := filepath.Join(s.root, fsMultipartDir, id)
	if err := os.Mkdir(dir, 0o700); err != nil {
		return "", fmt.Errorf("blobstore: create multipart upload for %s: %w", key, err)
	}
	if err := os.WriteFile(filepath.Join(dir, fsUploadKey), []byte(key), 0o600); err != nil {
		os.RemoveAll(dir)
		return "", fmt.Errorf("blobstore: create multipart upload for %s: %w", key, err)
	}
	return id, nil
}

// UploadPart writes the part to a temporary file and renames it into the
// upload's folder. Its ETag is the hex MD5 of its content, as S3's is.
func (s *FSStore) UploadPart(ctx context.Context, key, uploadID string, n int, r io.Reader, size int64) (Part, error) {
	dir, err := s.uploadDir(key, uploadID)
	if err != nil {
		return Part{}, err
	}
	if n < 1 || n > MaxParts {
		return Part{}, fmt.Errorf("%w: part number %d is outside 1..%d", ErrInvalidPart, n, MaxParts)
	}
	if size < 0 {
		return Part{}, fmt.Errorf("blobstore: upload part %d of %s: negative size %d", n, key, size)
	}
	sum := md5.New()
	tmp, err := s.writeTemp(ctx, "part-*", r, size, sum)
	if err != nil {
		return Part{}, fmt.Errorf("blobstore: upload part %d of %s: %w", n, key, err)
	}
	if err := os.Rename(tmp, filepath.Join(dir, strconv.Itoa(n))); err != nil {
		os.Remove(tmp)
		return Part{}, fsError("upload part of", key, err)
	}
	return Part{Number: n, ETag: hex.EncodeToString(sum.Sum(nil)), Size: size}, nil
}

// CompleteMultipart concatenates the parts into a temporary file, checking
// each part's ETag on the way, renames it to the key and removes the
// upload's folder.
func (s *FSStore) CompleteMultipart(ctx context.Context, key, uploadID string, parts []Part) error {
	dir, err := s.uploadDir(key, uploadID)
	if err != nil {
		return err
	}
	files, err := s.checkParts(dir, key, parts)
	if err != nil {
		return err
	}

	f, err := os.CreateTemp(filepath.Join(s.root, fsTempDir), "complete-*")
	if err != nil {
		return fmt.Errorf("blobstore: complete %s: %w", key, err)
	}
	tmp := f.Name()
	err = concatParts(ctx, f, files, parts)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		os.Remove(tmp)
		return fmt.Errorf("blobstore: complete %s: %w", key, err)
	}

	if err := s.publish(tmp, s.path(key)); err != nil {
		return fmt.Errorf("blobstore: complete %s: %w", key, err)
	}
	if err := os.RemoveAll(dir); err != nil {
		return fmt.Errorf("blobstore: remove parts of completed upload %s: %w", key, err)
	}
	return nil
}

// AbortMultipart removes the upload's folder.
func (s *FSStore) AbortMultipart(ctx context.Context, key, uploadID string) error {
	dir, err := s.uploadDir(key, uploadID)
	if err != nil {
		return err
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	if err := os.RemoveAll(dir); err != nil {
		return fmt.Errorf("blobstore: abort %s: %w", key, err)
	}
	return nil
}

// checkParts returns the part files in order after checking that the
// numbers ascend and that every part but the last has MinPartSize bytes.
func (s *FSStore) checkParts(dir, key string, parts []Part) ([]string, error) {
	if len(parts) == 0 {
		return nil, fmt.Errorf("%w: no parts to complete %s", ErrInvalidPart, key)
	}
	files := make([]string, len(parts))
	for i, p := range parts {
		if i > 0 && p.Number <= parts[i-1].Number {
			return nil, fmt.Errorf("%w: part %d follows part %d of %s", ErrInvalidPart, p.Number, parts[i-1].Number, key)
		}
		files[i] = filepath.Join(dir, strconv.Itoa(p.Number))
		fi, err := os.Stat(files[i])
		if err != nil {
			if isNotExist(err) {
				return nil, fmt.Errorf("%w: part %d of %s was not uploaded", ErrInvalidPart, p.Number, key)
			}
			return nil, fmt.Errorf("blobstore: complete %s: %w", key, err)
		}
		if i < len(parts)-1 && fi.Size() < MinPartSize {
			return nil, fmt.Errorf("%w: part %d of %s has %d bytes, fewer than %d", ErrInvalidPart, p.Number, key, fi.Size(), MinPartSize)
		}
	}
	return files, nil
}

// concatParts copies the part files to dst and checks each ETag.
func concatParts(ctx context.Context, dst io.Writer, files []string, parts []Part) error {
	for i, name := range files {
		src, err := os.Open(name)
		if err != nil {
			return err
		}
		sum := md5.New()
		_, err = io.Copy(io.MultiWriter(dst, sum), &ctxReader{ctx: ctx, r: src})
		src.Close()
		if err != nil {
			return err
		}
		etag := hex.EncodeToString(sum.Sum(nil))
		if !strings.EqualFold(etag, strings.Trim(parts[i].ETag, `"`)) {
			return fmt.Errorf("%w: ETag of part %d does not match", ErrInvalidPart, parts[i].Number)
		}
	}
	return nil
}

// uploadDir returns the folder of an upload after checking that it exists
// and targets key.
func (s *FSStore) uploadDir(key, uploadID string) (string, error) {
	if err := ValidateKey(key); err != nil {
		return "", err
	}
	if len(uploadID) != 32 || strings.Trim(uploadID, "0123456789abcdef") != "" {
		return "", fmt.Errorf("%w: upload %q of %s", ErrNotFound, uploadID, key)
	}
	dir := filepath.Join(s.root, fsMultipartDir, uploadID)
	target, err := os.ReadFile(filepath.Join(dir, fsUploadKey))
	if err != nil {
		if isNotExist(err) {
			return "", fmt.Errorf("%w: upload %s of %s", ErrNotFound, uploadID, key)
		}
		return "", fmt.Errorf("blobstore: read upload %s: %w", uploadID, err)
	}
	if string(target) != key {
		return "", fmt.Errorf("%w: upload %s of %s", ErrNotFound, uploadID, key)
	}
	return dir, nil
}

// writeTemp copies exactly size bytes of r to a synced temporary file,
// also into sum when it is not nil, and returns the file's path.
func (s *FSStore) writeTemp(ctx context.Context, pattern string, r io.Reader, size int64, sum io.Writer) (string, error) {
	f, err := os.CreateTemp(filepath.Join(s.root, fsTempDir), pattern)
	if err != nil {
		return "", err
	}
	var dst io.Writer = f
	if sum != nil {
		dst = io.MultiWriter(f, sum)
	}
	_, err = io.CopyN(dst, &ctxReader{ctx: ctx, r: r}, size)
	if errors.Is(err, io.EOF) {
		err = fmt.Errorf("reader ended before %d bytes: %w", size, io.ErrUnexpectedEOF)
	}
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		os.Remove(f.Name())
		return "", err
	}
	return f.Name(), nil
}

// publish renames the temporary file tmp to path, creating the folders
// on the way, and syncs the folder so the rename survives a crash.
func (s *FSStore) publish(tmp, path string) error {
	dir := filepath.Dir(path)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		os.Remove(tmp)
		return err
	}
	if err := os.Rename(tmp, path); err != nil {
		os.Remove(tmp)
		return err
	}
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}

func (s *FSStore) path(key string) string {
	return filepath.Join(s.root, filepath.FromSlash(key))
}

func (s *FSStore) removeStaleTemp(before time.Time) {
	dir := filepath.Join(s.root, fsTempDir)
	entries, err := os.ReadDir(dir)
	if err != nil {
		return
	}
	for _, e := range entries {
		info, err := e.Info()
		if err == nil && info.ModTime().Before(before) {
			os.Remove(filepath.Join(dir, e.Name()))
		}
	}
}

// fsError translates a filesystem error: a missing file, or a path through
// a file where a folder was expected, becomes ErrNotFound.
func fsError(op, key string, err error) error {
	if isNotExist(err) {
		return fmt.Errorf("%w: %s", ErrNotFound, key)
	}
	return fmt.Errorf("blobstore: %s %s: %w", op, key, err)
}

func isNotExist(err error) bool {
	return errors.Is(err, fs.ErrNotExist) || errors.Is(err, syscall.ENOTDIR)
}

// fsReader closes the file under a section reader and stops reading once
// the caller's context ends.
type fsReader struct {
	io.Reader
	file *os.File
	ctx  context.Context
}

func (r *fsReader) Read(p []byte) (int, error) {
	if err := r.ctx.Err(); err != nil {
		return 0, err
	}
	return r.Reader.Read(p)
}

func (r *fsReader) Close() error { return r.file.Close() }

// ctxReader stops a copy once its context ends.
type ctxReader struct {
	ctx context.Context
	r   io.Reader
}

func (r *ctxReader) Read(p []byte) (int, error) {
	if err := r.ctx.Err(); err != nil {
		return 0, err
	}
	return r.r.Read(p)
}
