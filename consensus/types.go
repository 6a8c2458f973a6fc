package consensus

import (
	"encoding/json"

	"github.com/opencontainers/go-digest"
)

// Blob records where the content of one digest is stored. Blobs are shared
// by every repository that links them.
type Blob struct {
	Digest digest.Digest `json:"digest"`
	Size   int64         `json:"size"`
	// Key is the object key in the blob store.
	Key         string `json:"key"`
	CreateIndex uint64 `json:"create_index"`
}

// Manifest is a manifest stored in one repository, with the fields the
// referrers API and the manifest checks need already parsed out.
type Manifest struct {
	Digest       digest.Digest     `json:"digest"`
	MediaType    string            `json:"media_type"`
	Content      []byte            `json:"content"`
	ArtifactType string            `json:"artifact_type,omitempty"`
	Subject      digest.Digest     `json:"subject,omitempty"`
	Annotations  map[string]string `json:"annotations,omitempty"`
	// Blobs and Children are the blobs (config, layers) and child
	// manifests that must exist in the repository when the manifest is put.
	Blobs       []digest.Digest `json:"blobs,omitempty"`
	Children    []digest.Digest `json:"children,omitempty"`
	CreateIndex uint64          `json:"create_index"`
	ModifyIndex uint64          `json:"modify_index"`
}

// Size returns the length of the manifest content in bytes.
func (m *Manifest) Size() int64 { return int64(len(m.Content)) }

// Upload is an upload session. State is the upload engine's own record
// (object key, multipart id, parts, hash state); the state machine stores it
// without reading it, so that any node can continue the session.
type Upload struct {
	ID   string `json:"id"`
	Repo string `json:"repo"`
	// Offset is the number of bytes received so far.
	Offset int64           `json:"offset"`
	State  json.RawMessage `json:"state"`
	// Started and Updated are Unix times in nanoseconds, chosen by the
	// node that proposed the change.
	Started     int64  `json:"started"`
	Updated     int64  `json:"updated"`
	CreateIndex uint64 `json:"create_index"`
	ModifyIndex uint64 `json:"modify_index"`
}

// User sources.
const (
	// SourceFile marks a user imported from the htpasswd file; the file
	// stays its source and the API cannot change it.
	SourceFile = "file"
	// SourceAPI marks a user managed through the admin API.
	SourceAPI = "api"
)

// User is a registry user with a bcrypt password hash.
type User struct {
	Name        string `json:"name"`
	Hash        string `json:"hash"`
	Admin       bool   `json:"admin,omitempty"`
	Source      string `json:"source"`
	ModifyIndex uint64 `json:"modify_index"`
}

// Descriptor describes a referrer of a manifest, as the referrers API
// lists it.
type Descriptor struct {
	MediaType    string            `json:"mediaType"`
	Digest       digest.Digest     `json:"digest"`
	Size         int64             `json:"size"`
	ArtifactType string            `json:"artifactType,omitempty"`
	Annotations  map[string]string `json:"annotations,omitempty"`
}
