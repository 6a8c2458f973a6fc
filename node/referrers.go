package node

import (
	"encoding/json"
	"fmt"
	"net/http"

	v1 "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/flotilla-registry/flotilla/consensus"
)

type referrersIndex struct {
	SchemaVersion int                    `json:"schemaVersion"`
	MediaType     string                 `json:"mediaType"`
	Manifests     []consensus.Descriptor `json:"manifests"`
}

// handleReferrers lists the manifests whose subject is the given digest, as
// an OCI image index, filtered by artifactType when the query sets it.
func (s *Server) handleReferrers(w http.ResponseWriter, r *http.Request) error {
	rt := routeOf(r)
	d, err := parseDigest(rt.arg)
	if err != nil {
		return err
	}
	artifactType := r.URL.Query().Get("artifactType")
	if err := s.readIndex(r.Context()); err != nil {
		return err
	}
	refs := s.raft.State().Referrers(rt.repo, d, artifactType)
	if artifactType != "" {
		w.Header().Set("OCI-Filters-Applied", "artifactType")
	}
	body, err := json.Marshal(referrersIndex{SchemaVersion: 2, MediaType: v1.MediaTypeImageIndex, Manifests: refs})
	if err != nil {
		return fmt.Errorf("encode referrers: %w", err)
	}
	return writeBody(w, r, http.StatusOK, v1.MediaTypeImageIndex, body)
}
