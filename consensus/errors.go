package consensus

import (
	"errors"
	"fmt"
)

// Application errors returned by Apply. They travel inside a Result as a
// Code, so a command applied on another node yields the same error here.
var (
	ErrNameUnknown         = errors.New("repository not found")
	ErrBlobUnknown         = errors.New("blob not found in repository")
	ErrManifestUnknown     = errors.New("manifest not found")
	ErrManifestBlobUnknown = errors.New("manifest references a blob or manifest missing from the repository")
	ErrTagUnknown          = errors.New("tag not found")
	ErrUploadUnknown       = errors.New("upload session not found")
	ErrUploadConflict      = errors.New("upload session changed concurrently")
	ErrUserExists          = errors.New("user already exists")
	ErrUserUnknown         = errors.New("user not found")
	ErrUserFileManaged     = errors.New("user is managed by the htpasswd file")
)

// Errors of the replication layer.
var (
	// ErrNotLeader is returned when this node cannot apply commands because
	// another node leads; the caller forwards or retries.
	ErrNotLeader = errors.New("not the raft leader")
	// ErrNoLeader is returned when no leader is known within the deadline.
	ErrNoLeader = errors.New("no raft leader")
	// ErrShutdown is returned after Shutdown.
	ErrShutdown = errors.New("raft node is shut down")
)

// Code is the wire form of an application error.
type Code string

const (
	codeOK                  Code = ""
	codeNameUnknown         Code = "NAME_UNKNOWN"
	codeBlobUnknown         Code = "BLOB_UNKNOWN"
	codeManifestUnknown     Code = "MANIFEST_UNKNOWN"
	codeManifestBlobUnknown Code = "MANIFEST_BLOB_UNKNOWN"
	codeTagUnknown          Code = "TAG_UNKNOWN"
	codeUploadUnknown       Code = "BLOB_UPLOAD_UNKNOWN"
	codeUploadConflict      Code = "UPLOAD_CONFLICT"
	codeUserExists          Code = "USER_EXISTS"
	codeUserUnknown         Code = "USER_UNKNOWN"
	codeUserFileManaged     Code = "USER_FILE_MANAGED"
)

var codeErrors = map[Code]error{
	codeNameUnknown:         ErrNameUnknown,
	codeBlobUnknown:         ErrBlobUnknown,
	codeManifestUnknown:     ErrManifestUnknown,
	codeManifestBlobUnknown: ErrManifestBlobUnknown,
	codeTagUnknown:          ErrTagUnknown,
	codeUploadUnknown:       ErrUploadUnknown,
	codeUploadConflict:      ErrUploadConflict,
	codeUserExists:          ErrUserExists,
	codeUserUnknown:         ErrUserUnknown,
	codeUserFileManaged:     ErrUserFileManaged,
}

// Err returns the Go error for a result, wrapping the sentinel with the
// detail the state machine recorded.
func (r Result) Err() error {
	if r.Code == codeOK {
		return nil
	}
	base, ok := codeErrors[r.Code]
	if !ok {
		return fmt.Errorf("unknown result code %q: %s", r.Code, r.Detail)
	}
	if r.Detail == "" {
		return base
	}
	return fmt.Errorf("%w: %s", base, r.Detail)
}

func fail(code Code, format string, args ...any) Result {
	return Result{Code: code, Detail: fmt.Sprintf(format, args...)}
}
