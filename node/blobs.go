package node

import (
	_ "crypto/sha256" // registers sha256 with go-digest
	_ "crypto/sha512" // registers sha512 with go-digest
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"

	"github.com/flotilla-registry/flotilla/consensus"
)

// handleBlobGet serves HEAD and GET of a blob linked in the repository,
// with a single byte range when the request has a Range header.
func (s *Server) handleBlobGet(w http.ResponseWriter, r *http.Request) error {
	rt := routeOf(r)
	d, err := parseDigest(rt.arg)
	if err != nil {
		return err
	}
	if err := s.readIndex(r.Context()); err != nil {
		return err
	}
	b, err := s.raft.State().LinkedBlob(rt.repo, d)
	if err != nil {
		return err
	}

	offset, length, partial, err := parseRange(r.Header.Get("Range"), b.Size)
	if err != nil {
		return err
	}
	h := w.Header()
	h.Set("Docker-Content-Digest", d.String())
	h.Set("Etag", `"`+d.String()+`"`)
	h.Set("Accept-Ranges", "bytes")
	h.Set("Content-Type", "application/octet-stream")
	h.Set("Content-Length", strconv.FormatInt(length, 10))
	if r.Method == http.MethodHead {
		w.WriteHeader(http.StatusOK)
		return nil
	}
	if length == 0 {
		w.WriteHeader(http.StatusOK)
		return nil
	}
	body, err := s.store.Open(r.Context(), b.Key, offset, length)
	if err != nil {
		h.Del("Content-Length")
		return err
	}
	defer body.Close()
	status := http.StatusOK
	if partial {
		status = http.StatusPartialContent
		h.Set("Content-Range", fmt.Sprintf("bytes %d-%d/%d", offset, offset+length-1, b.Size))
	}
	w.WriteHeader(status)
	n, err := io.Copy(w, body)
	if err != nil {
		// The status is sent; the client sees a short body.
		s.logger.Warn("blob read failed", "repo", rt.repo, "digest", d, "key", b.Key,
			"sent", n, "err", err, "request_id", requestID(r.Context()))
	}
	return nil
}

// parseRange parses "bytes=a-b", "bytes=a-" and "bytes=-n" against a blob of
// the given size. Without a header it returns the whole blob.
func parseRange(header string, size int64) (offset, length int64, partial bool, err error) {
	if header == "" {
		return 0, size, false, nil
	}
	invalid := &Error{Code: CodeRangeInvalid, Message: "invalid or unsatisfiable range",
		Header: http.Header{"Content-Range": {fmt.Sprintf("bytes */%d", size)}}}
	spec, ok := strings.CutPrefix(header, "bytes=")
	if !ok || strings.Contains(spec, ",") {
		return 0, 0, false, invalid
	}
	first, last, ok := strings.Cut(strings.TrimSpace(spec), "-")
	if !ok {
		return 0, 0, false, invalid
	}
	switch {
	case first == "":
		n, perr := strconv.ParseInt(last, 10, 64)
		if perr != nil || n <= 0 {
			return 0, 0, false, invalid
		}
		if n > size {
			n = size
		}
		return size - n, n, true, nil
	default:
		start, perr := strconv.ParseInt(first, 10, 64)
		if perr != nil || start < 0 || start >= size {
			return 0, 0, false, invalid
		}
		end := size - 1
		if last != "" {
			e, perr := strconv.ParseInt(last, 10, 64)
			if perr != nil || e < start {
				return 0, 0, false, invalid
			}
			if e < end {
				end = e
			}
		}
		return start, end - start + 1, true, nil
	}
}

// handleBlobDelete removes the blob's link from the repository. The
// content stays in storage for other repositories that link it.
func (s *Server) handleBlobDelete(w http.ResponseWriter, r *http.Request) error {
	if !s.deleteEnabled {
		return apiErr(CodeUnsupported, "deletion is disabled; set storage.delete.enabled")
	}
	rt := routeOf(r)
	d, err := parseDigest(rt.arg)
	if err != nil {
		return err
	}
	if _, err := s.apply(r.Context(), &consensus.Command{Op: consensus.OpBlobUnlink, Repo: rt.repo, Digest: d}); err != nil {
		return err
	}
	w.Header().Set("Docker-Content-Digest", d.String())
	w.Header().Set("Content-Length", "0")
	w.WriteHeader(http.StatusAccepted)
	return nil
}
