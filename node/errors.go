package node

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strconv"

	"github.com/flotilla-registry/flotilla/blobstore"
	"github.com/flotilla-registry/flotilla/consensus"
	"github.com/flotilla-registry/flotilla/internal/upload"
)

// ErrorCode is an error code of the OCI Distribution Specification, or one
// of the few that Flotilla adds (UNAVAILABLE, TOO_LARGE...).
type ErrorCode string

// The error codes and the HTTP status each one is sent with.
const (
	CodeBlobUnknown             ErrorCode = "BLOB_UNKNOWN"
	CodeBlobUploadInvalid       ErrorCode = "BLOB_UPLOAD_INVALID"
	CodeBlobUploadUnknown       ErrorCode = "BLOB_UPLOAD_UNKNOWN"
	CodeDigestInvalid           ErrorCode = "DIGEST_INVALID"
	CodeManifestBlobUnknown     ErrorCode = "MANIFEST_BLOB_UNKNOWN"
	CodeManifestInvalid         ErrorCode = "MANIFEST_INVALID"
	CodeManifestUnknown         ErrorCode = "MANIFEST_UNKNOWN"
	CodeNameInvalid             ErrorCode = "NAME_INVALID"
	CodeNameUnknown             ErrorCode = "NAME_UNKNOWN"
	CodeSizeInvalid             ErrorCode = "SIZE_INVALID"
	CodeUnauthorized            ErrorCode = "UNAUTHORIZED"
	CodeDenied                  ErrorCode = "DENIED"
	CodeUnsupported             ErrorCode = "UNSUPPORTED"
	CodeTooManyRequests         ErrorCode = "TOOMANYREQUESTS"
	CodePaginationNumberInvalid ErrorCode = "PAGINATION_NUMBER_INVALID"
	CodeRangeInvalid            ErrorCode = "RANGE_INVALID"
	CodeUnavailable             ErrorCode = "UNAVAILABLE"
	CodeUnknown                 ErrorCode = "UNKNOWN"
	CodeUserExists              ErrorCode = "USER_EXISTS"
	CodeUserUnknown             ErrorCode = "USER_UNKNOWN"
	CodeUserInvalid             ErrorCode = "USER_INVALID"
	CodePasswordInvalid         ErrorCode = "PASSWORD_INVALID"
)

// codeStatus is the one table of statuses. A handler that needs another
// status for a code (413 for an oversized manifest) sets Error.Status.
var codeStatus = map[ErrorCode]int{
	CodeBlobUnknown:             http.StatusNotFound,
	CodeBlobUploadInvalid:       http.StatusBadRequest,
	CodeBlobUploadUnknown:       http.StatusNotFound,
	CodeDigestInvalid:           http.StatusBadRequest,
	CodeManifestBlobUnknown:     http.StatusBadRequest,
	CodeManifestInvalid:         http.StatusBadRequest,
	CodeManifestUnknown:         http.StatusNotFound,
	CodeNameInvalid:             http.StatusBadRequest,
	CodeNameUnknown:             http.StatusNotFound,
	CodeSizeInvalid:             http.StatusBadRequest,
	CodeUnauthorized:            http.StatusUnauthorized,
	CodeDenied:                  http.StatusForbidden,
	CodeUnsupported:             http.StatusMethodNotAllowed,
	CodeTooManyRequests:         http.StatusTooManyRequests,
	CodePaginationNumberInvalid: http.StatusBadRequest,
	CodeRangeInvalid:            http.StatusRequestedRangeNotSatisfiable,
	CodeUnavailable:             http.StatusServiceUnavailable,
	CodeUnknown:                 http.StatusInternalServerError,
	CodeUserExists:              http.StatusConflict,
	CodeUserUnknown:             http.StatusNotFound,
	CodeUserInvalid:             http.StatusBadRequest,
	CodePasswordInvalid:         http.StatusBadRequest,
}

// retryAfterSeconds is sent with every UNAVAILABLE response. Raft elects a
// new leader in about a second, and S3 outages are retried by clients.
const retryAfterSeconds = 1

// Error is an API error: a code, a message for the client, and an optional
// cause that is logged but never sent.
type Error struct {
	Code    ErrorCode
	Message string
	Detail  any
	// Status overrides the table's status for Code when non-zero.
	Status int
	// Header holds extra response headers, such as Range on a 416.
	Header http.Header
	// Cause is the underlying error, for the log only.
	Cause error
}

func (e *Error) Error() string {
	if e.Cause != nil {
		return fmt.Sprintf("%s: %s: %v", e.Code, e.Message, e.Cause)
	}
	return fmt.Sprintf("%s: %s", e.Code, e.Message)
}

func (e *Error) Unwrap() error { return e.Cause }

func (e *Error) status() int {
	if e.Status != 0 {
		return e.Status
	}
	if s, ok := codeStatus[e.Code]; ok {
		return s
	}
	return http.StatusInternalServerError
}

// apiErr returns an Error with a formatted message.
func apiErr(code ErrorCode, format string, args ...any) *Error {
	return &Error{Code: code, Message: fmt.Sprintf(format, args...)}
}

type errorBody struct {
	Errors []errorEntry `json:"errors"`
}

type errorEntry struct {
	Code    ErrorCode `json:"code"`
	Message string    `json:"message"`
	Detail  any       `json:"detail,omitempty"`
}

// classify maps errors from the lower layers to API errors. Errors it does
// not know become 500 UNKNOWN with a generic message.
func classify(err error) *Error {
	var apiError *Error
	if errors.As(err, &apiError) {
		return apiError
	}
	wrap := func(code ErrorCode, msg string) *Error {
		return &Error{Code: code, Message: msg, Cause: err}
	}
	switch {
	case errors.Is(err, consensus.ErrNameUnknown):
		return wrap(CodeNameUnknown, "repository name not known to registry")
	case errors.Is(err, consensus.ErrBlobUnknown):
		return wrap(CodeBlobUnknown, "blob unknown to registry")
	case errors.Is(err, consensus.ErrManifestUnknown), errors.Is(err, consensus.ErrTagUnknown):
		return wrap(CodeManifestUnknown, "manifest unknown")
	case errors.Is(err, consensus.ErrManifestBlobUnknown):
		return wrap(CodeManifestBlobUnknown, "manifest references a blob or manifest that is not in the repository")
	case errors.Is(err, consensus.ErrUploadUnknown):
		return wrap(CodeBlobUploadUnknown, "blob upload unknown to registry")
	case errors.Is(err, consensus.ErrUploadConflict):
		return wrap(CodeBlobUploadInvalid, "upload changed by a concurrent request; retry from the current offset")
	case errors.Is(err, consensus.ErrUserExists):
		return wrap(CodeUserExists, "user already exists")
	case errors.Is(err, consensus.ErrUserUnknown):
		return wrap(CodeUserUnknown, "user not found")
	case errors.Is(err, consensus.ErrUserFileManaged):
		return wrap(CodeDenied, "user is managed by the htpasswd file; edit the file to change it")
	case errors.Is(err, upload.ErrDigestMismatch):
		return wrap(CodeDigestInvalid, "provided digest did not match uploaded content")
	case errors.Is(err, upload.ErrUnsupportedDigest):
		return wrap(CodeDigestInvalid, "digest algorithm not supported")
	case errors.Is(err, upload.ErrTooLarge):
		return wrap(CodeSizeInvalid, "upload exceeds the maximum blob size")
	case errors.Is(err, consensus.ErrNotLeader), errors.Is(err, consensus.ErrNoLeader),
		errors.Is(err, consensus.ErrShutdown):
		return wrap(CodeUnavailable, "registry index unavailable; retry")
	case errors.Is(err, blobstore.ErrUnavailable):
		return wrap(CodeUnavailable, "blob storage unavailable; retry")
	case errors.Is(err, blobstore.ErrNotFound):
		return wrap(CodeBlobUnknown, "blob content not found in storage")
	case errors.Is(err, context.DeadlineExceeded):
		return wrap(CodeUnavailable, "request timed out; retry")
	default:
		return wrap(CodeUnknown, "internal error")
	}
}

// writeError sends err as an OCI error body and logs it once. HEAD
// responses carry no body.
func (s *Server) writeError(w http.ResponseWriter, r *http.Request, err error) {
	e := classify(err)
	status := e.status()
	h := w.Header()
	for k, vs := range e.Header {
		h[k] = vs
	}
	if e.Code == CodeUnauthorized && s.realm != "" {
		h.Set("WWW-Authenticate", fmt.Sprintf("Basic realm=%q", s.realm))
	}
	if e.Code == CodeUnavailable {
		h.Set("Retry-After", strconv.Itoa(retryAfterSeconds))
	}
	body, _ := json.Marshal(errorBody{Errors: []errorEntry{{Code: e.Code, Message: e.Message, Detail: e.Detail}}})
	h.Set("Content-Type", "application/json")
	h.Set("Content-Length", strconv.Itoa(len(body)))
	w.WriteHeader(status)
	if r.Method != http.MethodHead {
		_, _ = w.Write(body)
	}
	s.logError(r, e, status)
}

func (s *Server) logError(r *http.Request, e *Error, status int) {
	attrs := []any{"method", r.Method, "path", r.URL.Path, "status", status, "code", string(e.Code)}
	if id := requestID(r.Context()); id != "" {
		attrs = append(attrs, "request_id", id)
	}
	if e.Cause != nil {
		attrs = append(attrs, "err", e.Cause.Error())
	}
	switch {
	case status >= 500:
		s.logger.Error("request failed", attrs...)
	case e.Code == CodeUnauthorized:
		s.logger.Debug("request unauthorized", attrs...)
	case status == http.StatusNotFound:
		// Clients probe for blobs and manifests before pushing them, so
		// not-found responses are routine.
		s.logger.Debug("request rejected", append(attrs, "msg_detail", e.Message)...)
	default:
		s.logger.Info("request rejected", append(attrs, "msg_detail", e.Message)...)
	}
}
