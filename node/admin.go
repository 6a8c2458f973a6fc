package node

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"

	"golang.org/x/crypto/bcrypt"

	"github.com/flotilla-registry/flotilla/consensus"
)

// adminPrefix is the path of Flotilla's own administration API.
const adminPrefix = "/flotilla/v1/"

// maxPasswordBytes is the bcrypt limit: bytes past it are ignored, so a
// longer password is rejected rather than silently cut.
const maxPasswordBytes = 72

// maxAdminBody bounds admin request bodies.
const maxAdminBody = 64 << 10

type userInfo struct {
	Name   string `json:"name"`
	Admin  bool   `json:"admin"`
	Source string `json:"source"`
}

type userRequest struct {
	Name     string `json:"name"`
	Password string `json:"password"`
	Admin    bool   `json:"admin"`
}

// serveAdmin routes the admin API: the cluster endpoints (cluster.go) and
// the user endpoints:
//
//	GET    /flotilla/v1/users
//	POST   /flotilla/v1/users                  {"name","password","admin"}
//	PUT    /flotilla/v1/users/NAME/password    {"password"}
//	DELETE /flotilla/v1/users/NAME
func (s *Server) serveAdmin(w http.ResponseWriter, r *http.Request) {
	p, err := s.authenticateAdmin(r)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	rest := strings.TrimPrefix(r.URL.Path, adminPrefix)
	segs := strings.Split(rest, "/")
	var h handlerFunc
	switch {
	case rest == "users" && r.Method == http.MethodGet:
		h = s.handleUserList
	case rest == "users" && r.Method == http.MethodPost:
		h = s.handleUserCreate
	case len(segs) == 3 && segs[0] == "users" && segs[2] == "password" && r.Method == http.MethodPut:
		h = s.handleUserPassword
	case len(segs) == 2 && segs[0] == "users" && r.Method == http.MethodDelete:
		h = s.handleUserDelete
	case rest == "cluster" && r.Method == http.MethodGet:
		h = s.handleClusterStatus
	case rest == "cluster/servers" && r.Method == http.MethodPost:
		h = s.handleClusterJoin
	case len(segs) == 3 && segs[0] == "cluster" && segs[1] == "servers" && r.Method == http.MethodDelete:
		h = s.handleClusterRemove
	default:
		s.writeError(w, r, &Error{Code: CodeUnsupported, Message: "unknown admin endpoint", Status: http.StatusNotFound})
		return
	}
	if err := h(w, r); err != nil {
		s.writeError(w, r, err)
		return
	}
	s.logger.Info("admin request done", "method", r.Method, "path", r.URL.Path, "user", p.name,
		"request_id", requestID(r.Context()))
}

func (s *Server) handleUserList(w http.ResponseWriter, r *http.Request) error {
	if err := s.readIndex(r.Context()); err != nil {
		return err
	}
	users := s.raft.State().Users()
	out := struct {
		Users []userInfo `json:"users"`
	}{Users: make([]userInfo, 0, len(users))}
	for _, u := range users {
		out.Users = append(out.Users, userInfo{Name: u.Name, Admin: u.Admin, Source: u.Source})
	}
	return writeJSON(w, r, http.StatusOK, out)
}

func (s *Server) handleUserCreate(w http.ResponseWriter, r *http.Request) error {
	var req userRequest
	if err := readJSON(r, &req); err != nil {
		return err
	}
	if err := checkUserName(req.Name); err != nil {
		return err
	}
	hash, err := s.hashPassword(req.Password)
	if err != nil {
		return err
	}
	_, err = s.apply(r.Context(), &consensus.Command{Op: consensus.OpUserCreate,
		User: &consensus.User{Name: req.Name, Hash: hash, Admin: req.Admin}})
	if err != nil {
		return err
	}
	s.logger.Info("user created", "user", req.Name, "admin", req.Admin)
	return writeJSON(w, r, http.StatusCreated, userInfo{Name: req.Name, Admin: req.Admin, Source: consensus.SourceAPI})
}

func (s *Server) handleUserPassword(w http.ResponseWriter, r *http.Request) error {
	name := strings.Split(strings.TrimPrefix(r.URL.Path, adminPrefix), "/")[1]
	var req userRequest
	if err := readJSON(r, &req); err != nil {
		return err
	}
	hash, err := s.hashPassword(req.Password)
	if err != nil {
		return err
	}
	_, err = s.apply(r.Context(), &consensus.Command{Op: consensus.OpUserPassword,
		User: &consensus.User{Name: name, Hash: hash}})
	if err != nil {
		return err
	}
	s.logger.Info("user password changed", "user", name)
	w.WriteHeader(http.StatusNoContent)
	return nil
}

func (s *Server) handleUserDelete(w http.ResponseWriter, r *http.Request) error {
	name := strings.Split(strings.TrimPrefix(r.URL.Path, adminPrefix), "/")[1]
	_, err := s.apply(r.Context(), &consensus.Command{Op: consensus.OpUserDelete, User: &consensus.User{Name: name}})
	if err != nil {
		return err
	}
	s.logger.Info("user deleted", "user", name)
	w.WriteHeader(http.StatusNoContent)
	return nil
}

func checkUserName(name string) error {
	if name == "" || len(name) > 255 || strings.ContainsAny(name, ": \t\r\n") {
		return apiErr(CodeUserInvalid, "user name must be 1 to 255 characters without ':' or whitespace")
	}
	for _, c := range name {
		if c < 0x20 || c == 0x7f {
			return apiErr(CodeUserInvalid, "user name contains a control character")
		}
	}
	return nil
}

func (s *Server) hashPassword(password string) (string, error) {
	if password == "" {
		return "", apiErr(CodePasswordInvalid, "empty password")
	}
	if len(password) > maxPasswordBytes {
		return "", apiErr(CodePasswordInvalid, "password longer than %d bytes; bcrypt ignores the rest", maxPasswordBytes)
	}
	hash, err := bcrypt.GenerateFromPassword([]byte(password), s.passwordCost)
	if err != nil {
		return "", fmt.Errorf("hash password: %w", err)
	}
	return string(hash), nil
}

func readJSON(r *http.Request, v any) error {
	body, err := io.ReadAll(io.LimitReader(r.Body, maxAdminBody+1))
	if err != nil {
		return &Error{Code: CodeUnsupported, Status: http.StatusBadRequest, Message: "reading the request body failed", Cause: err}
	}
	if len(body) > maxAdminBody {
		return &Error{Code: CodeSizeInvalid, Status: http.StatusRequestEntityTooLarge, Message: "request body too large"}
	}
	if err := json.Unmarshal(body, v); err != nil {
		var syn *json.SyntaxError
		msg := "request body is not valid JSON"
		if errors.As(err, &syn) {
			msg = fmt.Sprintf("request body is not valid JSON at byte %d", syn.Offset)
		}
		return &Error{Code: CodeUnsupported, Status: http.StatusBadRequest, Message: msg}
	}
	return nil
}
