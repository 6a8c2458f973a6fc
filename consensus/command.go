package consensus

import (
	"encoding/json"
	"fmt"

	"github.com/opencontainers/go-digest"
)

// commandVersion is the first byte of every encoded command. A node that
// reads a version it does not know stops rather than diverge.
const commandVersion byte = 1

// Op names a state change.
type Op string

// The operations of the state machine.
const (
	OpBlobCommit     Op = "blob.commit"
	OpBlobMount      Op = "blob.mount"
	OpBlobUnlink     Op = "blob.unlink"
	OpManifestPut    Op = "manifest.put"
	OpManifestDelete Op = "manifest.delete"
	OpTagDelete      Op = "tag.delete"
	// OpTagPut points Tag and Tags at the manifest Digest, which must be
	// in the repository already. A manifest pushed again under a new tag
	// needs only this small entry instead of the whole manifest.
	OpTagPut        Op = "tag.put"
	OpUploadCreate  Op = "upload.create"
	OpUploadUpdate  Op = "upload.update"
	OpUploadDelete  Op = "upload.delete"
	OpUserCreate    Op = "user.create"
	OpUserPassword  Op = "user.password"
	OpUserDelete    Op = "user.delete"
	OpUsersSyncFile Op = "users.syncfile"
)

// Command is one replicated change. ID is chosen by the proposer and makes
// a retried command apply once: the state machine remembers the results of
// the most recent ids and returns the remembered result for a repeat. Time
// is the proposer's clock in Unix nanoseconds, so Apply never reads a clock.
type Command struct {
	Op   Op     `json:"op"`
	ID   string `json:"id"`
	Time int64  `json:"time"`

	Repo   string        `json:"repo,omitempty"`
	Digest digest.Digest `json:"digest,omitempty"`
	Tag    string        `json:"tag,omitempty"`
	// Tags are further tags that OpManifestPut points at the manifest.
	Tags []string `json:"tags,omitempty"`

	// From is the source repository of OpBlobMount. Empty means any
	// repository: the blob only has to be stored.
	From string `json:"from,omitempty"`
	// Blob is the committed blob of OpBlobCommit.
	Blob *Blob `json:"blob,omitempty"`
	// Manifest is the manifest of OpManifestPut.
	Manifest *Manifest `json:"manifest,omitempty"`
	// Upload is the session of the upload operations. OpUploadUpdate
	// applies only when the stored offset equals ExpectOffset.
	Upload       *Upload `json:"upload,omitempty"`
	ExpectOffset int64   `json:"expect_offset,omitempty"`
	// UploadID names the session that OpBlobCommit ends.
	UploadID string `json:"upload_id,omitempty"`
	// User is the user of OpUserCreate and OpUserPassword; Users is the
	// whole file-managed set of OpUsersSyncFile.
	User  *User  `json:"user,omitempty"`
	Users []User `json:"users,omitempty"`
}

// Result is the outcome of applying a command. Code is empty on success.
type Result struct {
	Code   Code   `json:"code,omitempty"`
	Detail string `json:"detail,omitempty"`
	// Blob is the stored blob after OpBlobCommit. Its key differs from
	// the committed one when the digest was already stored, and the
	// proposer may then delete its own copy.
	Blob *Blob `json:"blob,omitempty"`
	// Index is the Raft index at which the command was applied.
	Index uint64 `json:"index,omitempty"`
	// Deleted is the number of users removed by OpUsersSyncFile, or of
	// tags removed with a manifest.
	Deleted int `json:"deleted,omitempty"`
}

// Encode returns the wire form of c: the version byte, then JSON.
func (c *Command) Encode() ([]byte, error) {
	body, err := json.Marshal(c)
	if err != nil {
		return nil, fmt.Errorf("encode command %s: %w", c.Op, err)
	}
	return append([]byte{commandVersion}, body...), nil
}

// DecodeCommand parses the wire form written by Encode.
func DecodeCommand(data []byte) (*Command, error) {
	if len(data) == 0 {
		return nil, fmt.Errorf("decode command: empty entry")
	}
	if data[0] != commandVersion {
		return nil, fmt.Errorf("decode command: unknown encoding version %d", data[0])
	}
	var c Command
	if err := json.Unmarshal(data[1:], &c); err != nil {
		return nil, fmt.Errorf("decode command: %w", err)
	}
	return &c, nil
}
