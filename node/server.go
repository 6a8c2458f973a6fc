package node

import (
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"runtime/debug"
	"strings"
	"sync/atomic"
	"time"

	"github.com/google/uuid"

	"github.com/flotilla-registry/flotilla/blobstore"
	"github.com/flotilla-registry/flotilla/consensus"
	"github.com/flotilla-registry/flotilla/internal/auth"
	"github.com/flotilla-registry/flotilla/internal/logging"
	"github.com/flotilla-registry/flotilla/internal/upload"
)

// DefaultMaxManifestSize is the largest manifest accepted by default, the
// same 4 MiB limit as registry:2.
const DefaultMaxManifestSize = 4 << 20

// DefaultRequestTimeout bounds the index part of a request (Raft apply or
// read confirmation); blob transfers are bounded by the client instead.
const DefaultRequestTimeout = 10 * time.Second

// Options configures a Server.
type Options struct {
	Raft    *consensus.Node
	Store   blobstore.Store
	Uploads *upload.Engine
	// Auth checks Basic credentials; nil serves anonymous requests, as
	// registry:2 does without an auth section.
	Auth  *auth.Authenticator
	Realm string
	// AdminToken is the node's local credential for the admin API, sent
	// as "Authorization: Bearer TOKEN".
	AdminToken      string
	DeleteEnabled   bool
	MaxManifestSize int64
	// ExternalURL, when set, prefixes every Location header (for example
	// https://registry.example.com); otherwise Locations are relative.
	ExternalURL string
	// Prefix is the path under which the API is served, such as
	// "/registry/" (http.prefix in registry:2). The node then serves
	// /registry/v2/... and puts the prefix into Location headers. /healthz,
	// /readyz and the admin API stay at the root.
	Prefix string
	// ClientCertRequired denies API and admin requests whose TLS
	// connection carries no verified client certificate (http.tls.clientcas
	// in registry:2). The TLS listener verifies certificates that are
	// given; /healthz and /readyz need none, so health checks keep working.
	ClientCertRequired bool
	// StaleReads serves reads from this node's applied state without
	// confirming leadership first.
	StaleReads bool
	// PasswordCost is the bcrypt cost of passwords set through the admin
	// API.
	PasswordCost   int
	RequestTimeout time.Duration
	Logger         *slog.Logger
}

// Server is one node's HTTP API.
type Server struct {
	raft            *consensus.Node
	store           blobstore.Store
	uploads         *upload.Engine
	auth            *auth.Authenticator
	realm           string
	adminToken      string
	deleteEnabled   bool
	maxManifestSize int64
	externalURL     string
	prefix          string
	clientCert      bool
	staleReads      bool
	passwordCost    int
	requestTimeout  time.Duration
	logger          *slog.Logger
	ready           atomic.Bool
}

// New returns a Server.
func New(o Options) *Server {
	s := &Server{
		raft:            o.Raft,
		store:           o.Store,
		uploads:         o.Uploads,
		auth:            o.Auth,
		realm:           o.Realm,
		adminToken:      o.AdminToken,
		deleteEnabled:   o.DeleteEnabled,
		maxManifestSize: o.MaxManifestSize,
		externalURL:     strings.TrimSuffix(o.ExternalURL, "/"),
		prefix:          strings.TrimSuffix(o.Prefix, "/"),
		clientCert:      o.ClientCertRequired,
		staleReads:      o.StaleReads,
		passwordCost:    o.PasswordCost,
		requestTimeout:  o.RequestTimeout,
		logger:          o.Logger,
	}
	if s.maxManifestSize <= 0 {
		s.maxManifestSize = DefaultMaxManifestSize
	}
	if s.requestTimeout <= 0 {
		s.requestTimeout = DefaultRequestTimeout
	}
	if s.passwordCost == 0 {
		s.passwordCost = 10
	}
	if s.logger == nil {
		s.logger = logging.Discard()
	}
	if s.auth != nil && s.realm == "" {
		s.realm = "Registry Realm"
	}
	return s
}

// Handler returns the HTTP handler of the node.
func (s *Server) Handler() http.Handler {
	return http.HandlerFunc(s.serveHTTP)
}

type ctxKey int

const requestIDKey ctxKey = iota

func requestID(ctx context.Context) string {
	id, _ := ctx.Value(requestIDKey).(string)
	return id
}

// handlerFunc is the shape of every API handler: it writes a successful
// response itself and returns any failure for writeError.
type handlerFunc func(w http.ResponseWriter, r *http.Request) error

func (s *Server) serveHTTP(w http.ResponseWriter, r *http.Request) {
	id := uuid.NewString()
	r = r.WithContext(context.WithValue(r.Context(), requestIDKey, id))
	defer func() {
		if v := recover(); v != nil {
			if v == http.ErrAbortHandler {
				panic(v)
			}
			s.logger.Error("handler panicked", "request_id", id, "method", r.Method,
				"path", r.URL.Path, "panic", fmt.Sprint(v), "stack", string(debug.Stack()))
			s.writeError(w, r, apiErr(CodeUnknown, "internal error"))
		}
	}()

	path := r.URL.Path
	api := isAPIPath(path)
	if s.prefix != "" {
		// Only paths under the prefix reach the API.
		rest, ok := strings.CutPrefix(path, s.prefix)
		api = ok && isAPIPath(rest)
		if api {
			path = rest
			r.URL.Path = rest
			r.URL.RawPath = ""
		}
	}
	if s.clientCert && path != "/healthz" && path != "/readyz" &&
		(r.TLS == nil || len(r.TLS.VerifiedChains) == 0) {
		s.writeError(w, r, &Error{Code: CodeDenied, Message: "a client certificate is required",
			Status: http.StatusForbidden})
		return
	}
	switch {
	case path == "/healthz":
		s.handleHealthz(w, r)
		return
	case path == "/readyz":
		s.handleReadyz(w, r)
		return
	case strings.HasPrefix(path, adminPrefix):
		s.serveAdmin(w, r)
		return
	case api:
	default:
		// Outside the API, as in registry:2: a plain 404 without an OCI
		// error code, which would name a repository.
		http.NotFound(w, r)
		return
	}

	w.Header().Set("Docker-Distribution-API-Version", "registry/2.0")
	if _, err := s.authenticate(r); err != nil {
		s.writeError(w, r, err)
		return
	}
	h, err := s.route(r)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	if err := h(w, r); err != nil {
		s.writeError(w, r, err)
	}
}

// isAPIPath reports whether path is /v2 or below it.
func isAPIPath(path string) bool {
	return path == "/v2" || strings.HasPrefix(path, "/v2/")
}

// route picks the handler of an API request. Repository names contain
// slashes, so the path is read from its end: the last segments name the
// resource and everything before them is the repository.
func (s *Server) route(r *http.Request) (handlerFunc, error) {
	rest := strings.TrimPrefix(strings.TrimPrefix(r.URL.Path, "/v2"), "/")
	if rest == "" {
		return s.methods(r, map[string]handlerFunc{http.MethodGet: s.handleBase, http.MethodHead: s.handleBase})
	}
	if rest == "_catalog" {
		return s.methods(r, map[string]handlerFunc{http.MethodGet: s.handleCatalog})
	}
	segs := strings.Split(rest, "/")
	n := len(segs)
	at := func(i int) string { // i counts from the end, 1 is the last
		if n-i < 0 {
			return ""
		}
		return segs[n-i]
	}
	repoOf := func(drop int) (string, error) {
		if n-drop < 1 {
			return "", apiErr(CodeNameInvalid, "missing repository name")
		}
		return parseName(strings.Join(segs[:n-drop], "/"))
	}
	var (
		repo string
		err  error
		h    map[string]handlerFunc
		arg  string
	)
	switch {
	case n >= 3 && at(2) == "tags" && at(1) == "list":
		repo, err = repoOf(2)
		h = map[string]handlerFunc{http.MethodGet: s.handleTags}
	case n >= 3 && at(2) == "blobs" && at(1) == "uploads":
		repo, err = repoOf(2)
		h = map[string]handlerFunc{http.MethodPost: s.handleUploadStart}
	case n >= 4 && at(3) == "blobs" && at(2) == "uploads":
		repo, err = repoOf(3)
		arg = at(1)
		if arg == "" {
			h = map[string]handlerFunc{http.MethodPost: s.handleUploadStart}
			break
		}
		h = map[string]handlerFunc{
			http.MethodGet:    s.handleUploadStatus,
			http.MethodPatch:  s.handleUploadPatch,
			http.MethodPut:    s.handleUploadFinish,
			http.MethodDelete: s.handleUploadCancel,
		}
	case n >= 3 && at(2) == "blobs":
		repo, err = repoOf(2)
		arg = at(1)
		h = map[string]handlerFunc{
			http.MethodGet:    s.handleBlobGet,
			http.MethodHead:   s.handleBlobGet,
			http.MethodDelete: s.handleBlobDelete,
		}
	case n >= 3 && at(2) == "manifests":
		repo, err = repoOf(2)
		arg = at(1)
		h = map[string]handlerFunc{
			http.MethodGet:    s.handleManifestGet,
			http.MethodHead:   s.handleManifestGet,
			http.MethodPut:    s.handleManifestPut,
			http.MethodDelete: s.handleManifestDelete,
		}
	case n >= 3 && at(2) == "referrers":
		repo, err = repoOf(2)
		arg = at(1)
		h = map[string]handlerFunc{http.MethodGet: s.handleReferrers}
	default:
		return nil, &Error{Code: CodeNameUnknown, Message: "unknown API endpoint", Status: http.StatusNotFound}
	}
	if err != nil {
		return nil, err
	}
	handler, err := s.methods(r, h)
	if err != nil {
		return nil, err
	}
	return func(w http.ResponseWriter, r *http.Request) error {
		ctx := context.WithValue(r.Context(), routeKey{}, route{repo: repo, arg: arg})
		return handler(w, r.WithContext(ctx))
	}, nil
}

type routeKey struct{}

// route holds the parts of the path that the router parsed.
type route struct {
	repo string
	arg  string // digest, tag, reference or upload id
}

func routeOf(r *http.Request) route {
	rt, _ := r.Context().Value(routeKey{}).(route)
	return rt
}

func (s *Server) methods(r *http.Request, hs map[string]handlerFunc) (handlerFunc, error) {
	if h, ok := hs[r.Method]; ok {
		return h, nil
	}
	allowed := make([]string, 0, len(hs))
	for m := range hs {
		allowed = append(allowed, m)
	}
	return nil, &Error{Code: CodeUnsupported, Message: fmt.Sprintf("method %s not allowed here", r.Method),
		Header: http.Header{"Allow": {strings.Join(allowed, ", ")}}}
}

// location returns the Location header value for an API path.
func (s *Server) location(path string) string {
	return s.externalURL + s.prefix + path
}

// readIndex makes the index fresh enough for a linearizable read, unless
// the node serves stale reads.
func (s *Server) readIndex(ctx context.Context) error {
	if s.staleReads {
		return nil
	}
	ctx, cancel := context.WithTimeout(ctx, s.requestTimeout)
	defer cancel()
	return s.raft.ReadBarrier(ctx)
}

// apply proposes a command with the request timeout.
func (s *Server) apply(ctx context.Context, c *consensus.Command) (consensus.Result, error) {
	ctx, cancel := context.WithTimeout(ctx, s.requestTimeout)
	defer cancel()
	return s.raft.Apply(ctx, c)
}

// SetReady marks the node ready or not for /readyz, besides its Raft
// state; the process clears it when it begins to stop.
func (s *Server) SetReady(ready bool) { s.ready.Store(ready) }

func (s *Server) handleBase(w http.ResponseWriter, r *http.Request) error {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Content-Length", "2")
	w.WriteHeader(http.StatusOK)
	if r.Method != http.MethodHead {
		_, _ = w.Write([]byte("{}"))
	}
	return nil
}
