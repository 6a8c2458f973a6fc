package node

import (
	"net/http"
)

type catalog struct {
	Repositories []string `json:"repositories"`
}

// handleCatalog lists repositories in lexical order, a page at a time.
func (s *Server) handleCatalog(w http.ResponseWriter, r *http.Request) error {
	n, last, err := pageParams(r, defaultCatalogPageSize)
	if err != nil {
		return err
	}
	if err := s.readIndex(r.Context()); err != nil {
		return err
	}
	repos, more := s.raft.State().Repositories(last, n)
	if repos == nil {
		repos = []string{}
	}
	if more && len(repos) > 0 {
		setNextLink(w, s.location("/v2/_catalog"), n, repos[len(repos)-1])
	}
	return writeJSON(w, r, http.StatusOK, catalog{Repositories: repos})
}
