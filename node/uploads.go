package node

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/google/uuid"
	"github.com/opencontainers/go-digest"

	"github.com/flotilla-registry/flotilla/consensus"
	"github.com/flotilla-registry/flotilla/internal/upload"
)

// uploadKey is the object key an upload session writes to. The key stays
// the blob's key after the upload, and the index maps the digest to it, so
// finishing an upload needs no copy.
func uploadKey(id string) string { return "blobs/" + id }

func (s *Server) uploadPath(repo, id string) string {
	return s.location(fmt.Sprintf("/v2/%s/blobs/uploads/%s", repo, id))
}

func (s *Server) blobPath(repo string, d digest.Digest) string {
	return s.location(fmt.Sprintf("/v2/%s/blobs/%s", repo, d))
}

// handleUploadStart starts an upload session, mounts a blob from another
// repository (?mount=&from=), or takes a whole blob in one request
// (?digest=).
func (s *Server) handleUploadStart(w http.ResponseWriter, r *http.Request) error {
	rt := routeOf(r)
	q := r.URL.Query()
	if mount := q.Get("mount"); mount != "" {
		done, err := s.tryMount(w, r, rt.repo, mount, q.Get("from"), q.Has("from"))
		if done || err != nil {
			return err
		}
	}
	if ds := q.Get("digest"); ds != "" {
		d, err := parseDigest(ds)
		if err != nil {
			return err
		}
		return s.monolithicUpload(w, r, rt.repo, d)
	}

	id := uuid.NewString()
	st := s.uploads.Start(uploadKey(id))
	if err := s.createSession(r.Context(), rt.repo, id, st); err != nil {
		return err
	}
	writeUploadStatus(w, s.uploadPath(rt.repo, id), id, 0, http.StatusAccepted)
	return nil
}

// tryMount links a blob from another repository, or, without from, any
// stored blob of that digest. It reports done when the blob was mounted.
// A source without the blob falls back to a new upload session, as the
// OCI Distribution Specification allows.
//
// NOTE: every authenticated user may read every repository, so a mount
// without from reveals nothing a pull could not. Per-repository rights
// will have to check the user's access to some repository with the blob.
func (s *Server) tryMount(w http.ResponseWriter, r *http.Request, repo, mount, from string, hasFrom bool) (bool, error) {
	d, err := parseDigest(mount)
	if err != nil {
		return false, err
	}
	if hasFrom {
		if _, err := parseName(from); err != nil {
			return false, nil
		}
	}
	if err := s.readIndex(r.Context()); err != nil {
		return false, err
	}
	if hasFrom {
		if _, err := s.raft.State().LinkedBlob(from, d); err != nil {
			return false, nil
		}
	} else if _, ok := s.raft.State().Blob(d); !ok {
		return false, nil
	}
	_, err = s.apply(r.Context(), &consensus.Command{Op: consensus.OpBlobMount, Repo: repo, From: from, Digest: d})
	if err != nil {
		if classify(err).Code == CodeBlobUnknown {
			return false, nil
		}
		return false, err
	}
	writeCreated(w, s.blobPath(repo, d), d)
	return true, nil
}

func (s *Server) monolithicUpload(w http.ResponseWriter, r *http.Request, repo string, d digest.Digest) error {
	id := uuid.NewString()
	st := s.uploads.Start(uploadKey(id))
	body := &clientBody{r: r.Body}
	res, err := s.uploads.Finish(r.Context(), st, body, d)
	if err != nil {
		return uploadError(err, body)
	}
	return s.commitBlob(w, r, repo, "", res)
}

func (s *Server) createSession(ctx context.Context, repo, id string, st upload.State) error {
	raw, err := json.Marshal(st)
	if err != nil {
		return fmt.Errorf("encode upload state: %w", err)
	}
	now := time.Now().UnixNano()
	_, err = s.apply(ctx, &consensus.Command{Op: consensus.OpUploadCreate, Upload: &consensus.Upload{
		ID: id, Repo: repo, State: raw, Started: now, Updated: now,
	}})
	return err
}

// session returns the upload session named in the path. A session is bound
// to the repository it was started in.
func (s *Server) session(r *http.Request) (*consensus.Upload, upload.State, error) {
	rt := routeOf(r)
	var st upload.State
	if _, err := uuid.Parse(rt.arg); err != nil {
		return nil, st, apiErr(CodeBlobUploadUnknown, "blob upload unknown to registry")
	}
	if err := s.readIndex(r.Context()); err != nil {
		return nil, st, err
	}
	u, ok := s.raft.State().Upload(rt.arg)
	if !ok || u.Repo != rt.repo {
		return nil, st, apiErr(CodeBlobUploadUnknown, "blob upload unknown to registry")
	}
	if err := json.Unmarshal(u.State, &st); err != nil {
		return nil, st, fmt.Errorf("decode upload state %s: %w", u.ID, err)
	}
	return u, st, nil
}

// checkContentRange enforces that a chunk starts where the session ends.
// A chunk out of order, or one sent twice, gets 416 with the current
// Range and nothing is appended.
func checkContentRange(r *http.Request, offset int64) error {
	cr := r.Header.Get("Content-Range")
	if cr == "" {
		return nil
	}
	cr = strings.TrimPrefix(strings.TrimSpace(cr), "bytes ")
	first, last, ok := strings.Cut(cr, "-")
	start, err1 := strconv.ParseInt(first, 10, 64)
	end, err2 := strconv.ParseInt(strings.Split(last, "/")[0], 10, 64)
	if !ok || err1 != nil || err2 != nil || start < 0 || end < start {
		return &Error{Code: CodeBlobUploadInvalid, Message: "invalid Content-Range", Status: http.StatusRequestedRangeNotSatisfiable,
			Header: http.Header{"Range": {rangeHeader(offset)}}}
	}
	if start != offset {
		return &Error{Code: CodeBlobUploadInvalid, Message: fmt.Sprintf("chunk starts at %d, upload is at %d", start, offset),
			Status: http.StatusRequestedRangeNotSatisfiable, Header: http.Header{"Range": {rangeHeader(offset)}}}
	}
	if r.ContentLength >= 0 && r.ContentLength != end-start+1 {
		return &Error{Code: CodeSizeInvalid, Message: "Content-Length does not match Content-Range"}
	}
	return nil
}

// handleUploadPatch appends a chunk, or the whole streamed blob, to the
// session.
func (s *Server) handleUploadPatch(w http.ResponseWriter, r *http.Request) error {
	u, st, err := s.session(r)
	if err != nil {
		return err
	}
	if err := checkContentRange(r, u.Offset); err != nil {
		return err
	}
	body := &clientBody{r: r.Body}
	next, err := s.uploads.Append(r.Context(), st, body)
	if err != nil {
		return uploadError(err, body)
	}
	if err := s.saveSession(r.Context(), u, next); err != nil {
		return err
	}
	s.uploads.Release(r.Context(), st, next)
	writeUploadStatus(w, s.uploadPath(u.Repo, u.ID), u.ID, next.Offset, http.StatusAccepted)
	return nil
}

func (s *Server) saveSession(ctx context.Context, u *consensus.Upload, st upload.State) error {
	raw, err := json.Marshal(st)
	if err != nil {
		return fmt.Errorf("encode upload state: %w", err)
	}
	_, err = s.apply(ctx, &consensus.Command{
		Op:           consensus.OpUploadUpdate,
		Upload:       &consensus.Upload{ID: u.ID, Repo: u.Repo, Offset: st.Offset, State: raw, Updated: time.Now().UnixNano()},
		ExpectOffset: u.Offset,
	})
	return err
}

// handleUploadFinish completes the session with an optional last chunk and
// links the blob in the repository.
func (s *Server) handleUploadFinish(w http.ResponseWriter, r *http.Request) error {
	ds := r.URL.Query().Get("digest")
	if ds == "" {
		return apiErr(CodeDigestInvalid, "digest query parameter is required to finish an upload")
	}
	d, err := parseDigest(ds)
	if err != nil {
		return err
	}
	u, st, err := s.session(r)
	if err != nil {
		return err
	}
	if err := checkContentRange(r, u.Offset); err != nil {
		return err
	}
	body := &clientBody{r: r.Body}
	res, err := s.uploads.Finish(r.Context(), st, body, d)
	if err != nil {
		err = uploadError(err, body)
		if classify(err).Code == CodeDigestInvalid {
			// The engine removed the content, so the session cannot go on.
			_, _ = s.apply(r.Context(), &consensus.Command{Op: consensus.OpUploadDelete, UploadID: u.ID, Repo: u.Repo})
		}
		return err
	}
	return s.commitBlob(w, r, u.Repo, u.ID, res)
}

// commitBlob records a finished upload in the index. When the digest was
// already stored under another key, the new copy is deleted.
func (s *Server) commitBlob(w http.ResponseWriter, r *http.Request, repo, uploadID string, res upload.Result) error {
	out, err := s.apply(r.Context(), &consensus.Command{
		Op: consensus.OpBlobCommit, Repo: repo, UploadID: uploadID,
		Blob: &consensus.Blob{Digest: res.Digest, Size: res.Size, Key: res.Key},
	})
	if err != nil {
		if classify(err).Code == CodeBlobUploadUnknown {
			s.deleteObject(r.Context(), res.Key)
		}
		return err
	}
	if out.Blob != nil && out.Blob.Key != res.Key {
		s.deleteObject(r.Context(), res.Key)
	}
	writeCreated(w, s.blobPath(repo, res.Digest), res.Digest)
	return nil
}

// deleteObject removes an object that no index entry points to.
func (s *Server) deleteObject(ctx context.Context, key string) {
	if err := s.store.Delete(context.WithoutCancel(ctx), key); err != nil {
		s.logger.Warn("delete of unreferenced object failed", "key", key, "err", err,
			"request_id", requestID(ctx))
	}
}

// handleUploadStatus reports how much of the session was received.
func (s *Server) handleUploadStatus(w http.ResponseWriter, r *http.Request) error {
	u, _, err := s.session(r)
	if err != nil {
		return err
	}
	writeUploadStatus(w, s.uploadPath(u.Repo, u.ID), u.ID, u.Offset, http.StatusNoContent)
	return nil
}

// handleUploadCancel ends the session and discards what it stored.
func (s *Server) handleUploadCancel(w http.ResponseWriter, r *http.Request) error {
	u, st, err := s.session(r)
	if err != nil {
		return err
	}
	if _, err := s.apply(r.Context(), &consensus.Command{Op: consensus.OpUploadDelete, UploadID: u.ID, Repo: u.Repo}); err != nil {
		return err
	}
	if err := s.uploads.Abort(context.WithoutCancel(r.Context()), st); err != nil {
		s.logger.Warn("abort of cancelled upload failed", "upload_id", u.ID, "repo", u.Repo, "err", err)
	}
	w.Header().Set("Content-Length", "0")
	w.WriteHeader(http.StatusNoContent)
	return nil
}

// clientBody records the first error of reading the request body, so a
// failed upload can be blamed on the client (a dropped connection, a body
// shorter than its Content-Length) rather than on the server.
type clientBody struct {
	r   io.Reader
	err error
}

func (b *clientBody) Read(p []byte) (int, error) {
	n, err := b.r.Read(p)
	if err != nil && err != io.EOF && b.err == nil {
		b.err = err
	}
	return n, err
}

// uploadError turns a failure caused by the request body into
// BLOB_UPLOAD_INVALID; other errors pass through.
func uploadError(err error, body *clientBody) error {
	if body != nil && body.err != nil && classify(err).Code == CodeUnknown {
		return &Error{Code: CodeBlobUploadInvalid, Message: "reading the request body failed", Cause: err}
	}
	return err
}

func rangeHeader(offset int64) string {
	if offset <= 0 {
		return "0-0"
	}
	return fmt.Sprintf("0-%d", offset-1)
}

func writeUploadStatus(w http.ResponseWriter, location, id string, offset int64, status int) {
	h := w.Header()
	h.Set("Location", location)
	h.Set("Range", rangeHeader(offset))
	h.Set("Docker-Upload-UUID", id)
	h.Set("Content-Length", "0")
	w.WriteHeader(status)
}

func writeCreated(w http.ResponseWriter, location string, d digest.Digest) {
	h := w.Header()
	h.Set("Location", location)
	h.Set("Docker-Content-Digest", d.String())
	h.Set("Content-Length", "0")
	w.WriteHeader(http.StatusCreated)
}
