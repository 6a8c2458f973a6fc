package main

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/flotilla-registry/flotilla/blobstore"
	"github.com/flotilla-registry/flotilla/consensus"
	"github.com/flotilla-registry/flotilla/internal/auth"
	"github.com/flotilla-registry/flotilla/internal/config"
	"github.com/flotilla-registry/flotilla/internal/htpasswd"
	"github.com/flotilla-registry/flotilla/internal/logging"
	"github.com/flotilla-registry/flotilla/internal/upload"
	"github.com/flotilla-registry/flotilla/node"
)

// Limits of the API listener.
const (
	maxHeaderBytes    = 64 << 10
	readHeaderTimeout = 30 * time.Second
	idleTimeout       = 2 * time.Minute
	// defaultDrain is how long a stopping node waits for requests in
	// flight when http.draintimeout is not set.
	defaultDrain = 30 * time.Second
	// htpasswdPoll is how often the htpasswd file is checked for changes.
	htpasswdPoll = 5 * time.Second
	// unreadyDelay is how long a stopping node keeps serving after /readyz
	// turned 503, longer than the health-check interval of the load
	// balancer in the compose file (1 s).
	unreadyDelay = 2 * time.Second
	// usersWait is how long the start waits for the first htpasswd
	// import before it logs a warning; it goes on waiting after that.
	usersWait = 30 * time.Second
	// uploadMaxAge is how long an untouched upload session lives, the
	// same week as registry:2's upload purging.
	uploadMaxAge = 7 * 24 * time.Hour
	// uploadSweep is how often the leader looks for expired sessions.
	uploadSweep = time.Hour
)

func runServe(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("serve", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprintln(stderr, "usage: flotilla serve [CONFIG]")
		fmt.Fprintln(stderr, "Runs one registry node from a registry:2-style config.yml, REGISTRY_* environment variables, or both.")
	}
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if fs.NArg() > 1 {
		fs.Usage()
		return 2
	}
	path := fs.Arg(0)
	if path == "" {
		path = os.Getenv(config.EnvConfigPath)
	}
	cfg, warnings, err := config.Load(path, os.Environ())
	if err != nil {
		fmt.Fprintf(stderr, "flotilla: %v\n", err)
		return 1
	}
	logger, err := logging.New(stderr, cfg.Log.Level, cfg.Log.Formatter)
	if err != nil {
		fmt.Fprintf(stderr, "flotilla: %v\n", err)
		return 1
	}
	for _, w := range warnings {
		logger.Warn("configuration key ignored", "key", w.Key, "reason", w.Message)
	}
	if err := dropPrivileges(cfg, logger); err != nil {
		logger.Error("privilege drop failed", "err", err)
		return 1
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	if err := serve(ctx, cfg, logger); err != nil {
		logger.Error("node stopped with an error", "err", err)
		return 1
	}
	return 0
}

// serve runs a node until ctx ends, then stops it gracefully.
func serve(ctx context.Context, cfg *config.Config, logger *slog.Logger) error {
	logger.Info("node starting", "config", cfg)
	// The API port is bound before Raft starts: Raft dials its peers
	// from the node's own address, and one of those connections could
	// otherwise take the API port first. Until the node is built, every
	// request gets 503 UNAVAILABLE.
	api, err := startAPI(cfg, logger)
	if err != nil {
		return err
	}
	defer api.close()
	store, err := openStore(ctx, cfg, logger)
	if err != nil {
		return err
	}
	nodeID, err := nodeID(cfg)
	if err != nil {
		return err
	}
	cc := cfg.Cluster
	rn, err := consensus.Open(consensus.Config{
		NodeID:            nodeID,
		DataDir:           cc.DataDir,
		Bind:              cc.Bind,
		Advertise:         cc.Advertise,
		Peers:             cc.Peers,
		BootstrapExpect:   cc.BootstrapExpect,
		TLS:               consensus.TLSFiles{Certificate: cc.TLS.Certificate, Key: cc.TLS.Key, CA: cc.TLS.CA},
		SnapshotThreshold: cc.SnapshotThreshold,
		SnapshotInterval:  cc.SnapshotInterval,
		TrailingLogs:      cc.TrailingLogs,
		Logger:            logger,
	})
	if err != nil {
		return err
	}
	defer rn.Shutdown()
	logger = logger.With("node_id", nodeID)

	adminToken, err := loadAdminToken(cfg.Cluster.DataDir)
	if err != nil {
		return err
	}
	var authn *auth.Authenticator
	realm := ""
	if h := cfg.Auth.Htpasswd; h != nil {
		realm = h.Realm
		authn, err = startUsers(ctx, rn, h.Path, logger)
		if err != nil {
			if ctx.Err() != nil {
				logger.Info("node stopped while starting")
				return nil
			}
			return err
		}
	} else {
		logger.Warn("authentication is off: every client can push and pull; set auth.htpasswd to require a login")
	}

	srv := node.New(node.Options{
		Raft:               rn,
		Store:              store,
		Uploads:            upload.New(store, logger, uploadOptions(cfg)...),
		Auth:               authn,
		Realm:              realm,
		AdminToken:         adminToken,
		DeleteEnabled:      cfg.Storage.Delete.Enabled,
		MaxManifestSize:    cfg.HTTP.MaxManifestSize,
		ExternalURL:        externalURL(cfg),
		Prefix:             cfg.HTTP.Prefix,
		ClientCertRequired: cfg.HTTP.TLS.Enabled() && len(cfg.HTTP.TLS.ClientCAs) > 0,
		StaleReads:         cfg.Cluster.Reads == config.ReadsStale,
		Logger:             logger,
	})
	go srv.RunUploadExpiry(ctx, uploadMaxAge, uploadSweep)
	if cfg.HTTP.Debug.Addr != "" {
		startDebug(ctx, cfg.HTTP.Debug.Addr, store, logger)
	}
	if err := api.serve(ctx, srv); err != nil {
		return err
	}
	// Requests in flight are done; hand leadership over before Raft
	// stops, so the cluster does not wait an election timeout.
	if err := rn.TransferLeadership(); err != nil {
		logger.Warn("leadership transfer before stop failed", "err", err)
	}
	return nil
}

func openStore(ctx context.Context, cfg *config.Config, logger *slog.Logger) (blobstore.Store, error) {
	switch cfg.Storage.Driver {
	case config.DriverS3:
		s := cfg.Storage.S3
		return blobstore.NewS3(ctx, blobstore.S3Config{
			Endpoint:       s.RegionEndpoint,
			Region:         s.Region,
			Bucket:         s.Bucket,
			AccessKey:      s.AccessKey,
			SecretKey:      s.SecretKey,
			Secure:         s.Secure,
			SkipVerify:     s.SkipVerify,
			ForcePathStyle: s.ForcePathStyle,
			RootDirectory:  s.RootDirectory,
		}, logger)
	default:
		return blobstore.NewFilesystem(cfg.Storage.Filesystem.RootDirectory)
	}
}

// uploadOptions applies storage.s3.chunksize, the part size of multipart
// uploads, to the S3 store when it differs from registry:2's 10 MiB
// default. Otherwise the engine's 8 MiB parts stay: a large upload in
// progress buffers up to one part in memory.
func uploadOptions(cfg *config.Config) []upload.Option {
	s3 := cfg.Storage.S3
	if cfg.Storage.Driver == config.DriverS3 && s3.ChunkSize > 0 && s3.ChunkSize != config.DefaultS3ChunkSize {
		return []upload.Option{upload.WithPartSize(s3.ChunkSize)}
	}
	return nil
}

// nodeID returns the configured Raft id, or the one stored in the data
// folder, or a new one derived from the host name and stored there, so a
// restarted node keeps its identity.
func nodeID(cfg *config.Config) (string, error) {
	if cfg.Cluster.NodeID != "" {
		return cfg.Cluster.NodeID, nil
	}
	path := filepath.Join(cfg.Cluster.DataDir, "node-id")
	if b, err := os.ReadFile(path); err == nil {
		if id := strings.TrimSpace(string(b)); id != "" {
			return id, nil
		}
	}
	host, _ := os.Hostname()
	if host == "" {
		host = "node"
	}
	id := host + "-" + randomHex(4)
	if err := os.MkdirAll(cfg.Cluster.DataDir, 0o700); err != nil {
		return "", fmt.Errorf("create data folder: %w", err)
	}
	if err := os.WriteFile(path, []byte(id+"\n"), 0o600); err != nil {
		return "", fmt.Errorf("store node id: %w", err)
	}
	return id, nil
}

// loadAdminToken returns the node's local admin credential from
// DATADIR/admin-token, creating it with mode 0600 on first start.
func loadAdminToken(dataDir string) (string, error) {
	path := filepath.Join(dataDir, "admin-token")
	if b, err := os.ReadFile(path); err == nil {
		if t := strings.TrimSpace(string(b)); t != "" {
			return t, nil
		}
	}
	token := randomHex(32)
	if err := os.WriteFile(path, []byte(token+"\n"), 0o600); err != nil {
		return "", fmt.Errorf("write admin token: %w", err)
	}
	return token, nil
}

func randomHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// startUsers imports the htpasswd file into the replicated user set, keeps
// it in sync while the node runs, and returns the authenticator. A
// malformed file stops the start.
func startUsers(ctx context.Context, rn *consensus.Node, path string, logger *slog.Logger) (*auth.Authenticator, error) {
	file, err := htpasswd.Load(path)
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return nil, fmt.Errorf("htpasswd file %s not found: create it with `flotilla htpasswd -Bbn USER PASSWORD > %s`", path, path)
		}
		return nil, err
	}
	// The import goes through Raft, which may have no leader yet while a
	// cluster forms, so it runs in the background and is retried. The
	// node waits for the first import before it serves, so that a
	// client's first login right after a start succeeds.
	imported := make(chan struct{})
	go func() {
		for attempt := 1; ; attempt++ {
			err := syncUsers(ctx, rn, file, path, logger)
			if err == nil {
				close(imported)
				break
			}
			if attempt == 1 || attempt%50 == 0 {
				logger.Warn("htpasswd import failed, retrying", "path", path, "attempt", attempt, "err", err)
			}
			select {
			case <-ctx.Done():
				return
			case <-time.After(200 * time.Millisecond):
			}
		}
		htpasswd.WatchAfter(ctx, path, htpasswdPoll, logger, file, func(f *htpasswd.File) error {
			return syncUsers(ctx, rn, f, path, logger)
		})
	}()
	// Until the import is through, the starting handler responds 503, so
	// a user is never refused for a password the node has not seen yet.
	select {
	case <-imported:
	case <-ctx.Done():
	case <-time.After(usersWait):
		logger.Warn("still waiting for the htpasswd import: no raft leader yet", "waited", usersWait)
		select {
		case <-imported:
		case <-ctx.Done():
		}
	}
	// A stop wins over an import that finished at the same moment.
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	lookup := func(name string) (auth.User, bool) {
		u, ok := rn.State().User(name)
		if !ok {
			return auth.User{}, false
		}
		return auth.User{Name: u.Name, Hash: u.Hash, Admin: u.Admin, Version: u.ModifyIndex}, true
	}
	return auth.New(lookup, auth.Options{Logger: logger}), nil
}

func syncUsers(ctx context.Context, rn *consensus.Node, f *htpasswd.File, path string, logger *slog.Logger) error {
	f.LogRejected(logger, path)
	users := make([]consensus.User, 0, len(f.Entries))
	for _, e := range f.Entries {
		users = append(users, consensus.User{Name: e.User, Hash: e.Hash})
	}
	ctx, cancel := context.WithTimeout(ctx, node.DefaultRequestTimeout)
	defer cancel()
	res, err := rn.Apply(ctx, &consensus.Command{Op: consensus.OpUsersSyncFile, Users: users})
	if err != nil {
		return fmt.Errorf("import htpasswd users: %w", err)
	}
	logger.Info("htpasswd users imported", "path", path, "users", len(users),
		"rejected", len(f.Rejected), "removed", res.Deleted)
	return nil
}

func externalURL(cfg *config.Config) string {
	if cfg.HTTP.RelativeURLs {
		return ""
	}
	return cfg.HTTP.Host
}

// apiServer is the node's API listener. It is bound at start, responds
// 503 until the node is built, then serves the registry.
type apiServer struct {
	hs      *http.Server
	ln      net.Listener
	handler atomic.Pointer[http.Handler]
	errc    chan error
	cfg     *config.Config
	logger  *slog.Logger
	tlsOn   bool
}

// startAPI binds the API address and starts serving node.StartingHandler.
func startAPI(cfg *config.Config, logger *slog.Logger) (*apiServer, error) {
	a := &apiServer{cfg: cfg, logger: logger, errc: make(chan error, 1), tlsOn: cfg.HTTP.TLS.Enabled()}
	starting := node.StartingHandler()
	a.handler.Store(&starting)
	a.hs = &http.Server{
		Addr: cfg.HTTP.Addr,
		Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			(*a.handler.Load()).ServeHTTP(w, r)
		}),
		MaxHeaderBytes:    maxHeaderBytes,
		ReadHeaderTimeout: readHeaderTimeout,
		IdleTimeout:       idleTimeout,
		ErrorLog:          slog.NewLogLogger(logger.Handler(), slog.LevelWarn),
	}
	if a.tlsOn {
		tc, err := tlsConfig(cfg.HTTP.TLS)
		if err != nil {
			return nil, err
		}
		a.hs.TLSConfig = tc
	} else {
		logger.Warn("TLS is off: set http.tls.certificate and http.tls.key to serve HTTPS")
	}
	ln, err := net.Listen("tcp", cfg.HTTP.Addr)
	if err != nil {
		return nil, fmt.Errorf("listen on %s: %w", cfg.HTTP.Addr, err)
	}
	a.ln = ln
	go func() {
		if a.tlsOn {
			a.errc <- a.hs.ServeTLS(ln, "", "")
		} else {
			a.errc <- a.hs.Serve(ln)
		}
	}()
	logger.Info("node listening", "addr", ln.Addr().String(), "tls", a.tlsOn)
	return a, nil
}

// close stops the listener at once; after serve returned it does nothing.
func (a *apiServer) close() {
	_ = a.hs.Close()
}

// serve hands requests to srv until ctx ends, then drains requests in
// flight.
func (a *apiServer) serve(ctx context.Context, srv *node.Server) error {
	h := srv.Handler()
	a.handler.Store(&h)
	srv.SetReady(true)
	a.logger.Info("node serving", "addr", a.ln.Addr().String())

	select {
	case err := <-a.errc:
		return fmt.Errorf("serve: %w", err)
	case <-ctx.Done():
	}
	// /readyz fails first, while the listener still serves, so load
	// balancers stop sending requests before the listener closes: a
	// request that reaches a closing listener gets no response.
	srv.SetReady(false)
	a.logger.Info("node stopping: not ready, still serving", "delay", unreadyDelay)
	time.Sleep(unreadyDelay)
	a.logger.Info("node stopping: draining requests in flight")
	drain := a.cfg.HTTP.DrainTimeout
	if drain <= 0 {
		drain = defaultDrain
	}
	sctx, cancel := context.WithTimeout(context.Background(), drain)
	defer cancel()
	if err := a.hs.Shutdown(sctx); err != nil {
		a.logger.Warn("drain ended before every request finished", "err", err)
	}
	a.logger.Info("node stopped")
	return nil
}

func tlsConfig(t config.TLS) (*tls.Config, error) {
	cert, err := tls.LoadX509KeyPair(t.Certificate, t.Key)
	if err != nil {
		return nil, fmt.Errorf("load TLS certificate %s and key %s: %w", t.Certificate, t.Key, err)
	}
	min := uint16(tls.VersionTLS12)
	if t.MinimumTLS == "tls1.3" {
		min = tls.VersionTLS13
	}
	tc := &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: min}
	if len(t.ClientCAs) > 0 {
		// As in registry:2, API clients must then present a certificate
		// signed by one of these CAs. The handshake verifies a certificate
		// that is given; the node denies API requests without one, so that
		// health checks need none.
		pool := x509.NewCertPool()
		for _, f := range t.ClientCAs {
			pem, err := os.ReadFile(f)
			if err != nil {
				return nil, fmt.Errorf("read TLS client CA: %w", err)
			}
			if !pool.AppendCertsFromPEM(pem) {
				return nil, fmt.Errorf("TLS client CA file %s contains no PEM certificate", f)
			}
		}
		tc.ClientCAs = pool
		tc.ClientAuth = tls.VerifyClientCertIfGiven
	}
	return tc, nil
}
