package node

import (
	"net/http"
	"strings"
)

// The cluster admin API:
//
//	GET    /flotilla/v1/cluster                 status of the cluster
//	POST   /flotilla/v1/cluster/servers         {"id","address"} adds a voter
//	DELETE /flotilla/v1/cluster/servers/ID      removes a server

func (s *Server) handleClusterStatus(w http.ResponseWriter, r *http.Request) error {
	return writeJSON(w, r, http.StatusOK, s.raft.ClusterStatus(r.Context()))
}

func (s *Server) handleClusterJoin(w http.ResponseWriter, r *http.Request) error {
	var req struct {
		ID      string `json:"id"`
		Address string `json:"address"`
	}
	if err := readJSON(r, &req); err != nil {
		return err
	}
	if req.ID == "" || req.Address == "" {
		return &Error{Code: CodeUnsupported, Status: http.StatusBadRequest, Message: "id and address are required"}
	}
	if err := s.raft.AddVoter(r.Context(), req.ID, req.Address); err != nil {
		return err
	}
	w.WriteHeader(http.StatusNoContent)
	return nil
}

func (s *Server) handleClusterRemove(w http.ResponseWriter, r *http.Request) error {
	id := strings.TrimPrefix(r.URL.Path, adminPrefix+"cluster/servers/")
	if id == "" || strings.Contains(id, "/") {
		return &Error{Code: CodeUnsupported, Status: http.StatusBadRequest, Message: "server id is required"}
	}
	if err := s.raft.RemoveServer(r.Context(), id); err != nil {
		return err
	}
	w.WriteHeader(http.StatusNoContent)
	return nil
}
