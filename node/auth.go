package node

import (
	"crypto/subtle"
	"net/http"
	"strings"

	"github.com/flotilla-registry/flotilla/internal/auth"
)

// principal is the authenticated caller of a request.
type principal struct {
	name  string
	admin bool
	// local marks the node's own credential (the admin token).
	local bool
}

// authenticate checks the request's Basic credentials. Every failure,
// whether the user is unknown, the password wrong or the header missing,
// returns the same UNAUTHORIZED error, and the response does not depend on
// whether the requested repository exists because it comes before routing.
func (s *Server) authenticate(r *http.Request) (principal, error) {
	if s.auth == nil {
		return principal{name: "anonymous"}, nil
	}
	unauthorized := &Error{Code: CodeUnauthorized, Message: "authentication required"}
	name, password, ok := auth.ParseBasic(r.Header.Get("Authorization"))
	if !ok {
		return principal{}, unauthorized
	}
	u, err := s.auth.Authenticate(name, password)
	if err != nil {
		return principal{}, unauthorized
	}
	return principal{name: u.Name, admin: u.Admin}, nil
}

// authenticateAdmin accepts the node's local admin token or the Basic
// credentials of a user with the admin role.
func (s *Server) authenticateAdmin(r *http.Request) (principal, error) {
	if token, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer "); ok {
		if s.adminToken != "" && subtle.ConstantTimeCompare([]byte(token), []byte(s.adminToken)) == 1 {
			return principal{name: "local-admin", admin: true, local: true}, nil
		}
		return principal{}, &Error{Code: CodeUnauthorized, Message: "invalid admin token"}
	}
	if s.auth == nil {
		return principal{}, &Error{Code: CodeDenied, Message: "the admin API needs authentication; use the node's local admin token"}
	}
	p, err := s.authenticate(r)
	if err != nil {
		return principal{}, err
	}
	if !p.admin {
		return principal{}, &Error{Code: CodeDenied, Message: "the admin role is required"}
	}
	return p, nil
}
