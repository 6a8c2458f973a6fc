package node

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"strconv"
	"strings"

	"github.com/opencontainers/go-digest"
	v1 "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/flotilla-registry/flotilla/consensus"
)

// Media types of manifests that Flotilla stores.
const (
	mediaTypeDockerManifest     = "application/vnd.docker.distribution.manifest.v2+json"
	mediaTypeDockerManifestList = "application/vnd.docker.distribution.manifest.list.v2+json"
	mediaTypeDockerSchema1      = "application/vnd.docker.distribution.manifest.v1+json"
	mediaTypeDockerSchema1JWS   = "application/vnd.docker.distribution.manifest.v1+prettyjws"
	mediaTypeDockerForeignLayer = "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip"
)

// manifestDocument holds the fields of all four manifest formats (OCI image
// manifest and index, Docker schema2 manifest and manifest list) that the
// checks and the referrers API read.
type manifestDocument struct {
	SchemaVersion int               `json:"schemaVersion"`
	MediaType     string            `json:"mediaType"`
	ArtifactType  string            `json:"artifactType"`
	Config        *v1.Descriptor    `json:"config"`
	Layers        []v1.Descriptor   `json:"layers"`
	Manifests     []v1.Descriptor   `json:"manifests"`
	Subject       *v1.Descriptor    `json:"subject"`
	Annotations   map[string]string `json:"annotations"`
	FSLayers      json.RawMessage   `json:"fsLayers"`
}

// handleManifestGet serves HEAD and GET of a manifest by tag or digest.
func (s *Server) handleManifestGet(w http.ResponseWriter, r *http.Request) error {
	rt := routeOf(r)
	tag, d, err := parseReference(rt.arg)
	if err != nil {
		return err
	}
	if err := s.readIndex(r.Context()); err != nil {
		return err
	}
	var m *consensus.Manifest
	if tag != "" {
		m, err = s.raft.State().ManifestByTag(rt.repo, tag)
	} else {
		m, err = s.raft.State().ManifestByDigest(rt.repo, d)
	}
	if err != nil {
		if errors.Is(err, consensus.ErrNameUnknown) {
			return apiErr(CodeManifestUnknown, "manifest unknown")
		}
		return err
	}
	if !accepts(r.Header.Values("Accept"), m.MediaType) {
		return &Error{Code: CodeManifestUnknown, Message: fmt.Sprintf("manifest is of type %s, which the Accept header excludes", m.MediaType)}
	}
	h := w.Header()
	h.Set("Content-Type", m.MediaType)
	h.Set("Content-Length", strconv.FormatInt(m.Size(), 10))
	h.Set("Docker-Content-Digest", m.Digest.String())
	h.Set("Etag", `"`+m.Digest.String()+`"`)
	w.WriteHeader(http.StatusOK)
	if r.Method != http.MethodHead {
		_, _ = w.Write(m.Content)
	}
	return nil
}

// accepts reports whether an Accept header admits the media type. No
// header, a wildcard, or a list that names the type admits it.
func accepts(values []string, mediaType string) bool {
	listed := false
	for _, v := range values {
		for _, part := range strings.Split(v, ",") {
			t, _, err := mime.ParseMediaType(strings.TrimSpace(part))
			if err != nil {
				continue
			}
			listed = true
			if t == mediaType || t == "*/*" || t == "application/*" {
				return true
			}
		}
	}
	return !listed
}

// handleManifestPut stores a manifest after checking its format, its
// digest and that everything it references is in the repository.
func (s *Server) handleManifestPut(w http.ResponseWriter, r *http.Request) error {
	rt := routeOf(r)
	tag, refDigest, err := parseReference(rt.arg)
	if err != nil {
		return err
	}
	tags, err := tagParams(r)
	if err != nil {
		return err
	}
	content, err := s.readManifestBody(r)
	if err != nil {
		return err
	}
	m, err := parseManifest(content, r.Header.Get("Content-Type"))
	if err != nil {
		return err
	}
	if refDigest != "" {
		if got := refDigest.Algorithm().FromBytes(content); got != refDigest {
			return &Error{Code: CodeDigestInvalid, Message: "manifest content does not match the digest in the path",
				Detail: map[string]string{"expected": refDigest.String(), "actual": got.String()}}
		}
		m.Digest = refDigest
	} else {
		m.Digest = digest.FromBytes(content)
	}

	if err := s.putManifest(r.Context(), rt.repo, tag, tags, m); err != nil {
		return err
	}
	h := w.Header()
	if m.Subject != "" {
		h.Set("OCI-Subject", m.Subject.String())
	}
	for _, t := range tags {
		h.Add("OCI-Tag", t)
	}
	writeCreated(w, s.location(fmt.Sprintf("/v2/%s/manifests/%s", rt.repo, m.Digest)), m.Digest)
	return nil
}

// putManifest stores m and points the tags at it. An image pushed again
// under a new tag sends a manifest that this node's state already holds.
// Then a tag command without the manifest comes first, so the Raft log
// stays small. The state machine checks that the manifest is still there;
// if it was deleted in between, the whole manifest is put.
func (s *Server) putManifest(ctx context.Context, repo, tag string, tags []string, m *consensus.Manifest) error {
	if tag != "" || len(tags) > 0 {
		if _, err := s.raft.State().ManifestByDigest(repo, m.Digest); err == nil {
			c := &consensus.Command{Op: consensus.OpTagPut, Repo: repo, Digest: m.Digest, Tag: tag, Tags: tags}
			_, err := s.apply(ctx, c)
			if !errors.Is(err, consensus.ErrManifestUnknown) {
				return err
			}
		}
	}
	c := &consensus.Command{Op: consensus.OpManifestPut, Repo: repo, Tag: tag, Tags: tags, Manifest: m}
	_, err := s.apply(ctx, c)
	return err
}

// maxTagParams bounds the tag query parameters of one manifest PUT.
const maxTagParams = 100

// tagParams returns the tags of the ?tag= query parameters, which point
// further tags at a manifest pushed by digest.
func tagParams(r *http.Request) ([]string, error) {
	tags := r.URL.Query()["tag"]
	if len(tags) > maxTagParams {
		return nil, apiErr(CodeManifestInvalid, "at most %d tag parameters", maxTagParams)
	}
	for _, t := range tags {
		if !tagRegexp.MatchString(t) {
			return nil, &Error{Code: CodeManifestInvalid, Message: "invalid tag parameter", Detail: map[string]string{"tag": truncate(t, 200)}}
		}
	}
	return tags, nil
}

// readManifestBody reads at most the configured manifest size; a larger
// body gets 413 without being read further.
func (s *Server) readManifestBody(r *http.Request) ([]byte, error) {
	tooLarge := &Error{Code: CodeSizeInvalid, Status: http.StatusRequestEntityTooLarge,
		Message: fmt.Sprintf("manifest larger than %d bytes", s.maxManifestSize)}
	if r.ContentLength > s.maxManifestSize {
		return nil, tooLarge
	}
	var buf bytes.Buffer
	n, err := io.Copy(&buf, io.LimitReader(r.Body, s.maxManifestSize+1))
	if err != nil {
		return nil, &Error{Code: CodeManifestInvalid, Message: "reading the manifest failed", Cause: err}
	}
	if n > s.maxManifestSize {
		return nil, tooLarge
	}
	if n == 0 {
		return nil, apiErr(CodeManifestInvalid, "empty manifest")
	}
	return buf.Bytes(), nil
}

// parseManifest checks a manifest's format and extracts what the index
// stores. contentType is the request's Content-Type header.
func parseManifest(content []byte, contentType string) (*consensus.Manifest, error) {
	var doc manifestDocument
	if err := json.Unmarshal(content, &doc); err != nil {
		return nil, &Error{Code: CodeManifestInvalid, Message: "manifest is not valid JSON", Cause: err}
	}
	mediaType, err := manifestMediaType(doc, contentType)
	if err != nil {
		return nil, err
	}
	m := &consensus.Manifest{MediaType: mediaType, Content: content, Annotations: doc.Annotations}
	if doc.Subject != nil {
		if err := checkDescriptor(*doc.Subject, "subject"); err != nil {
			return nil, err
		}
		m.Subject = doc.Subject.Digest
	}
	switch mediaType {
	case v1.MediaTypeImageManifest, mediaTypeDockerManifest:
		if doc.Config == nil {
			return nil, apiErr(CodeManifestInvalid, "image manifest without config")
		}
		if err := checkDescriptor(*doc.Config, "config"); err != nil {
			return nil, err
		}
		m.Blobs = append(m.Blobs, doc.Config.Digest)
		for i, l := range doc.Layers {
			if err := checkDescriptor(l, fmt.Sprintf("layers[%d]", i)); err != nil {
				return nil, err
			}
			// Layers with URLs are not distributable: the registry
			// need not hold them.
			if len(l.URLs) > 0 || l.MediaType == mediaTypeDockerForeignLayer {
				continue
			}
			m.Blobs = append(m.Blobs, l.Digest)
		}
		m.ArtifactType = doc.ArtifactType
		if m.ArtifactType == "" && mediaType == v1.MediaTypeImageManifest {
			m.ArtifactType = doc.Config.MediaType
		}
	case v1.MediaTypeImageIndex, mediaTypeDockerManifestList:
		for i, c := range doc.Manifests {
			if err := checkDescriptor(c, fmt.Sprintf("manifests[%d]", i)); err != nil {
				return nil, err
			}
			m.Children = append(m.Children, c.Digest)
		}
		m.ArtifactType = doc.ArtifactType
	}
	return m, nil
}

// manifestMediaType decides the manifest's type from the Content-Type
// header and the document's own mediaType field, which must agree.
func manifestMediaType(doc manifestDocument, contentType string) (string, error) {
	header := ""
	if contentType != "" {
		t, _, err := mime.ParseMediaType(contentType)
		if err == nil {
			header = t
		}
	}
	if header == mediaTypeDockerSchema1 || header == mediaTypeDockerSchema1JWS ||
		doc.MediaType == mediaTypeDockerSchema1 || doc.MediaType == mediaTypeDockerSchema1JWS ||
		doc.SchemaVersion == 1 || len(doc.FSLayers) > 0 {
		return "", &Error{Code: CodeUnsupported, Status: http.StatusUnsupportedMediaType,
			Message: "Docker schema1 manifests are not supported; push with a current client to get a schema2 or OCI manifest"}
	}
	if doc.SchemaVersion != 2 {
		return "", apiErr(CodeManifestInvalid, "schemaVersion must be 2")
	}
	mediaType := doc.MediaType
	switch {
	case mediaType == "" && (header == "" || header == "application/json"):
		if doc.Manifests != nil {
			mediaType = v1.MediaTypeImageIndex
		} else {
			mediaType = v1.MediaTypeImageManifest
		}
	case mediaType == "":
		mediaType = header
	case header != "" && header != "application/json" && header != mediaType:
		return "", &Error{Code: CodeManifestInvalid, Message: "Content-Type does not match the manifest's mediaType",
			Detail: map[string]string{"contentType": header, "mediaType": mediaType}}
	}
	switch mediaType {
	case v1.MediaTypeImageManifest, mediaTypeDockerManifest:
		if doc.Manifests != nil {
			return "", apiErr(CodeManifestInvalid, "image manifest with a manifests list")
		}
	case v1.MediaTypeImageIndex, mediaTypeDockerManifestList:
		if doc.Config != nil || doc.Layers != nil {
			return "", apiErr(CodeManifestInvalid, "index with config or layers")
		}
	default:
		return "", &Error{Code: CodeManifestInvalid, Message: fmt.Sprintf("unsupported manifest media type %q", mediaType)}
	}
	return mediaType, nil
}

func checkDescriptor(d v1.Descriptor, field string) error {
	if err := d.Digest.Validate(); err != nil {
		return &Error{Code: CodeManifestInvalid, Message: fmt.Sprintf("%s: invalid digest", field), Cause: err}
	}
	if d.Size < 0 {
		return apiErr(CodeManifestInvalid, "%s: negative size", field)
	}
	if d.MediaType == "" {
		return apiErr(CodeManifestInvalid, "%s: missing mediaType", field)
	}
	return nil
}

// handleManifestDelete deletes one tag (only that tag) when the reference
// is a tag, or the manifest and every tag pointing to it when it is a
// digest.
func (s *Server) handleManifestDelete(w http.ResponseWriter, r *http.Request) error {
	if !s.deleteEnabled {
		return apiErr(CodeUnsupported, "deletion is disabled; set storage.delete.enabled")
	}
	rt := routeOf(r)
	tag, d, err := parseReference(rt.arg)
	if err != nil {
		return err
	}
	c := &consensus.Command{Op: consensus.OpManifestDelete, Repo: rt.repo, Digest: d}
	if tag != "" {
		c = &consensus.Command{Op: consensus.OpTagDelete, Repo: rt.repo, Tag: tag}
	}
	if _, err := s.apply(r.Context(), c); err != nil {
		return err
	}
	w.Header().Set("Content-Length", "0")
	w.WriteHeader(http.StatusAccepted)
	return nil
}
