package node

import (
	"context"
	"encoding/json"
	"net/http"
	"strconv"
	"strings"
	"time"
)

// readyTimeout bounds the read-index check of /readyz, below the usual
// health-check timeouts of load balancers.
const readyTimeout = 2 * time.Second

// handleHealthz responds 200 while the process serves HTTP.
func (s *Server) handleHealthz(w http.ResponseWriter, r *http.Request) {
	_ = writeBody(w, r, http.StatusOK, "text/plain; charset=utf-8", []byte("ok\n"))
}

// handleReadyz responds 200 when the node has a leader and has applied
// every committed entry, so a load balancer sends it traffic.
func (s *Server) handleReadyz(w http.ResponseWriter, r *http.Request) {
	if !s.ready.Load() {
		_ = writeBody(w, r, http.StatusServiceUnavailable, "text/plain; charset=utf-8", []byte("stopping\n"))
		return
	}
	if addr, _ := s.raft.Leader(); addr == "" {
		_ = writeBody(w, r, http.StatusServiceUnavailable, "text/plain; charset=utf-8", []byte("no leader\n"))
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), readyTimeout)
	defer cancel()
	if !s.raft.CaughtUp(ctx) {
		_ = writeBody(w, r, http.StatusServiceUnavailable, "text/plain; charset=utf-8", []byte("catching up\n"))
		return
	}
	_ = writeBody(w, r, http.StatusOK, "text/plain; charset=utf-8", []byte("ok\n"))
}

// StartingHandler responds to requests that arrive while the node is still
// starting: /healthz responds 200, since the process is alive, and
// every other path responds 503 UNAVAILABLE with Retry-After.
func StartingHandler() http.Handler {
	body, _ := json.Marshal(errorBody{Errors: []errorEntry{{Code: CodeUnavailable, Message: "node is starting; retry"}}})
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/healthz" {
			_ = writeBody(w, r, http.StatusOK, "text/plain; charset=utf-8", []byte("starting\n"))
			return
		}
		if r.URL.Path == "/v2" || strings.HasPrefix(r.URL.Path, "/v2/") {
			w.Header().Set("Docker-Distribution-API-Version", "registry/2.0")
		}
		w.Header().Set("Retry-After", strconv.Itoa(retryAfterSeconds))
		_ = writeBody(w, r, http.StatusServiceUnavailable, "application/json", body)
	})
}
