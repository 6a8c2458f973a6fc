package harness

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/flotilla-registry/flotilla/internal/testenv"
)

// Storage selects where a node keeps blob content.
type Storage int

const (
	// StorageS3 keeps blobs in a versitygw bucket (REGISTRY_STORAGE=s3).
	StorageS3 Storage = iota
	// StorageFilesystem keeps blobs in the node's temporary folder.
	StorageFilesystem
)

func (s Storage) String() string {
	if s == StorageFilesystem {
		return "filesystem"
	}
	return "s3"
}

// Defaults of NodeOptions.
const (
	DefaultRealm        = "Flotilla Test Realm"
	DefaultLogLevel     = "info"
	DefaultReadyTimeout = 60 * time.Second
	DefaultStopTimeout  = 30 * time.Second
	// killTimeout bounds the wait for a process after SIGKILL.
	killTimeout = 10 * time.Second
	// startTries is how often StartNode picks new ports when another
	// process took one between the pick and the start.
	startTries = 3
	// bcryptCost keeps password checks fast (about 2 ms each at cost 5).
	bcryptCost = "5"
)

// NodeOptions configures StartNode. The zero value is a node with TLS,
// htpasswd authentication and its own S3 server.
type NodeOptions struct {
	Storage Storage
	// S3 is the server that StorageS3 uses. Nil starts a new one with
	// testenv.StartS3.
	S3 *testenv.S3Server
	// NoTLS serves plain HTTP instead of TLS.
	NoTLS bool
	// NoAuth turns authentication off.
	NoAuth bool
	// Realm is the htpasswd realm, DefaultRealm when empty.
	Realm string
	// Username and Password are the htpasswd user. Empty values are
	// replaced by a fixed user name and a random password.
	Username string
	Password string
	// Htpasswd, when not empty, is the content of the htpasswd file, and
	// must then contain a line for Username and Password. By default the
	// file has one line made by "flotilla htpasswd".
	Htpasswd string
	// LogLevel is REGISTRY_LOG_LEVEL, DefaultLogLevel when empty.
	LogLevel string
	// ConfigYAML, when not empty, is written to a file that is passed as
	// the CONFIG argument of serve. By default the node is configured by
	// REGISTRY_* environment variables only.
	ConfigYAML string
	// Env lists extra KEY=VALUE entries. They override the harness's
	// own setting of the same key.
	Env []string
	// ReadyTimeout bounds the wait for GET /v2/ after each start,
	// DefaultReadyTimeout when zero.
	ReadyTimeout time.Duration
	// StopTimeout bounds the wait after SIGTERM, DefaultStopTimeout when
	// zero.
	StopTimeout time.Duration
}

// Node is one "flotilla serve" child process and the files it uses. The
// methods that can fail the test (Kill, Restart, Client) must be called
// from the goroutine running the test.
type Node struct {
	// URL is the base URL of the API, such as https://127.0.0.1:41234.
	URL string
	// Host is the host:port of the API, as registry clients name it.
	Host string
	// CAFile is the PEM certificate that clients must trust. It is empty
	// when the node serves plain HTTP.
	CAFile string
	// CertDir contains the same certificate as ca.crt, the layout that
	// skopeo's --cert-dir and Docker's certs.d folders expect.
	CertDir string
	// Username, Password and Realm are the htpasswd user and realm.
	Username string
	Password string
	Realm    string
	// Dir is the node's folder: TLS files, htpasswd, data, Raft and log.
	Dir string
	// DataDir contains the filesystem store, and RaftDir the Raft data.
	DataDir string
	RaftDir string
	// LogFile receives the node's standard output and error, appended
	// across restarts.
	LogFile string
	// ConfigFile is the YAML file passed to serve, or empty.
	ConfigFile string
	// S3 is the node's S3 server, or nil with StorageFilesystem.
	S3 *testenv.S3Server

	t      testing.TB
	opts   NodeOptions
	bin    string
	args   []string
	env    []string // without the port settings
	ports  []string // the port settings of env
	client *http.Client

	mu     sync.Mutex
	proc   *process
	starts int
}

// StartNode starts a node and waits until it is ready: GET /v2/ returns
// 200, and with authentication on 401 without credentials and 200 with
// them. The node is stopped when the test ends, and its log is printed
// when the test has failed.
func StartNode(t testing.TB, opts NodeOptions) *Node {
	t.Helper()
	n := &Node{
		t:        t,
		opts:     opts,
		bin:      Binary(t),
		Dir:      t.TempDir(),
		Realm:    opts.Realm,
		Username: opts.Username,
		Password: opts.Password,
	}
	if n.Realm == "" {
		n.Realm = DefaultRealm
	}
	if n.Username == "" {
		n.Username = "flotilla-test"
	}
	if n.Password == "" {
		n.Password = RandomHex(t, 16)
	}
	n.DataDir = filepath.Join(n.Dir, "data")
	n.RaftDir = filepath.Join(n.Dir, "raft")
	n.LogFile = filepath.Join(n.Dir, "flotilla.log")
	if err := os.Mkdir(n.DataDir, 0o700); err != nil {
		t.Fatalf("create data folder: %v", err)
	}

	n.env = n.baseEnv(t)
	t.Cleanup(n.cleanup)

	var err error
	for try := 1; try <= startTries; try++ {
		apiPort, raftPort := FreePort(t), FreePort(t)
		n.Host = net.JoinHostPort("127.0.0.1", strconv.Itoa(apiPort))
		n.ports = []string{
			"REGISTRY_HTTP_ADDR=" + n.Host,
			"REGISTRY_CLUSTER_BIND=127.0.0.1:" + strconv.Itoa(raftPort),
		}
		if n.opts.NoTLS {
			n.URL = "http://" + n.Host
		} else {
			n.URL = "https://" + n.Host
		}
		err = n.start()
		if err == nil {
			return n
		}
		if !strings.Contains(n.LogTail(4096), "address already in use") {
			break
		}
		t.Logf("node start %d of %d: a port was taken, trying new ports: %v",
			try, startTries, err)
	}
	t.Fatalf("start flotilla node: %v\n%s", err, n.LogTail(32<<10))
	return nil
}

// baseEnv writes the node's TLS, htpasswd, storage and configuration files
// and returns the child's environment without the port settings.
func (n *Node) baseEnv(t testing.TB) []string {
	t.Helper()
	env := []string{
		"REGISTRY_LOG_LEVEL=" + orDefault(n.opts.LogLevel, DefaultLogLevel),
		"REGISTRY_CLUSTER_NODEID=node1",
		"REGISTRY_CLUSTER_DATADIR=" + n.RaftDir,
		"REGISTRY_STORAGE_DELETE_ENABLED=true",
	}
	if !n.opts.NoTLS {
		env = append(env, n.writeTLS(t)...)
	}
	if !n.opts.NoAuth {
		env = append(env, n.writeHtpasswd(t)...)
	}
	env = append(env, n.storageEnv(t)...)
	if n.opts.ConfigYAML != "" {
		n.ConfigFile = filepath.Join(n.Dir, "config.yml")
		if err := os.WriteFile(n.ConfigFile, []byte(n.opts.ConfigYAML), 0o600); err != nil {
			t.Fatalf("write configuration: %v", err)
		}
		n.args = []string{"serve", n.ConfigFile}
	} else {
		n.args = []string{"serve"}
	}
	return append(env, n.opts.Env...)
}

func (n *Node) writeTLS(t testing.TB) []string {
	t.Helper()
	tlsDir := filepath.Join(n.Dir, "tls")
	n.CertDir = filepath.Join(n.Dir, "certs.d")
	for _, dir := range []string{tlsDir, n.CertDir} {
		if err := os.Mkdir(dir, 0o700); err != nil {
			t.Fatalf("create %s: %v", dir, err)
		}
	}
	certFile, keyFile := testenv.WriteSelfSignedCert(t, tlsDir, "127.0.0.1")
	n.CAFile = certFile
	pem, err := os.ReadFile(certFile)
	if err != nil {
		t.Fatalf("read certificate: %v", err)
	}
	if err := os.WriteFile(filepath.Join(n.CertDir, "ca.crt"), pem, 0o644); err != nil {
		t.Fatalf("write ca.crt: %v", err)
	}
	return []string{
		"REGISTRY_HTTP_TLS_CERTIFICATE=" + certFile,
		"REGISTRY_HTTP_TLS_KEY=" + keyFile,
	}
}

// writeHtpasswd creates the user with "flotilla htpasswd -Bbn", as the
// registry:2 tutorial does with its htpasswd helper.
func (n *Node) writeHtpasswd(t testing.TB) []string {
	t.Helper()
	content := n.opts.Htpasswd
	if content == "" {
		content = HtpasswdLine(t, n.Username, n.Password, "-C", bcryptCost) + "\n"
	}
	path := filepath.Join(n.Dir, "htpasswd")
	if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
		t.Fatalf("write htpasswd: %v", err)
	}
	return []string{
		"REGISTRY_AUTH=htpasswd",
		"REGISTRY_AUTH_HTPASSWD_REALM=" + n.Realm,
		"REGISTRY_AUTH_HTPASSWD_PATH=" + path,
	}
}

func (n *Node) storageEnv(t testing.TB) []string {
	t.Helper()
	if n.opts.Storage == StorageFilesystem {
		return []string{
			"REGISTRY_STORAGE=filesystem",
			"REGISTRY_STORAGE_FILESYSTEM_ROOTDIRECTORY=" + n.DataDir,
		}
	}
	if n.opts.S3 != nil {
		n.S3 = n.opts.S3
	} else {
		s3 := testenv.StartS3(t)
		n.S3 = &s3
	}
	return []string{
		"REGISTRY_STORAGE=s3",
		// The filesystem root also decides the default Raft folder, so
		// it is set to the node's own folder even with S3 storage.
		"REGISTRY_STORAGE_FILESYSTEM_ROOTDIRECTORY=" + n.DataDir,
		"REGISTRY_STORAGE_S3_ACCESSKEY=" + n.S3.AccessKey,
		"REGISTRY_STORAGE_S3_SECRETKEY=" + n.S3.SecretKey,
		"REGISTRY_STORAGE_S3_REGION=" + n.S3.Region,
		"REGISTRY_STORAGE_S3_REGIONENDPOINT=" + n.S3.URL(),
		"REGISTRY_STORAGE_S3_BUCKET=" + n.S3.Bucket,
		"REGISTRY_STORAGE_S3_FORCEPATHSTYLE=true",
		"REGISTRY_STORAGE_S3_SECURE=" + strconv.FormatBool(n.S3.Secure),
		"REGISTRY_STORAGE_S3_ROOTDIRECTORY=/flotilla",
	}
}

// HtpasswdLine runs "flotilla htpasswd -Bbn [extra...] USER PASSWORD" and
// returns the line it prints, without the newline.
func HtpasswdLine(t testing.TB, user, password string, extra ...string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	args := append([]string{"htpasswd", "-Bbn"}, extra...)
	args = append(args, user, password)
	cmd := exec.CommandContext(ctx, Binary(t), args...)
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("flotilla htpasswd -Bbn %s %s ***: %v\n%s",
			strings.Join(extra, " "), user, err, stderr.String())
	}
	return strings.TrimRight(string(out), "\r\n")
}

// start starts the process and waits until it is ready.
func (n *Node) start() error {
	n.mu.Lock()
	n.starts++
	start := n.starts
	n.mu.Unlock()
	env := append(filterEnv(os.Environ(), "REGISTRY_"), n.ports...)
	env = append(env, n.env...)
	p, err := startProcess(n.bin, n.args, env, n.Dir, n.LogFile, start)
	if err != nil {
		return err
	}
	n.mu.Lock()
	n.proc = p
	n.mu.Unlock()
	if err := n.waitReady(p); err != nil {
		p.kill()
		return err
	}
	return nil
}

// waitReady polls GET /v2/ until the node is ready, the process exits, or
// the ready timeout passes. Without authentication, ready means 200. With
// it, ready means 401 without credentials and 200 with the user's, so a
// test does not start before the node has loaded its users.
func (n *Node) waitReady(p *process) error {
	timeout := orDefault(n.opts.ReadyTimeout, DefaultReadyTimeout)
	deadline := time.Now().Add(timeout)
	last := "no request sent"
	for time.Now().Before(deadline) {
		if p.exited() {
			return fmt.Errorf("flotilla exited before it was ready: %v", p.waitErr)
		}
		err := n.probe()
		if err == nil {
			return nil
		}
		last = err.Error()
		time.Sleep(100 * time.Millisecond)
	}
	return fmt.Errorf("node not ready within %v: %s", timeout, last)
}

// probe returns nil when GET /v2/ returns what a ready node returns.
func (n *Node) probe() error {
	if n.opts.NoAuth {
		return n.expectPing(false, http.StatusOK)
	}
	if err := n.expectPing(false, http.StatusUnauthorized); err != nil {
		return err
	}
	return n.expectPing(true, http.StatusOK)
}

func (n *Node) expectPing(withAuth bool, want int) error {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, n.URL+"/v2/", nil)
	if err != nil {
		return err
	}
	if withAuth {
		n.SetAuth(req)
	}
	resp, err := n.Client().Do(req)
	if err != nil {
		return err
	}
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 1<<16))
	resp.Body.Close()
	if resp.StatusCode != want {
		return fmt.Errorf("GET /v2/ (credentials sent: %t) returned %d, want %d",
			withAuth, resp.StatusCode, want)
	}
	return nil
}

// Client returns an HTTP client that trusts the node's certificate and
// no other. It sends no credentials by itself: see SetAuth.
func (n *Node) Client() *http.Client {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.client != nil {
		return n.client
	}
	transport := http.DefaultTransport.(*http.Transport).Clone()
	transport.Proxy = nil
	if n.CAFile != "" {
		pool := x509.NewCertPool()
		pem, err := os.ReadFile(n.CAFile)
		if err != nil || !pool.AppendCertsFromPEM(pem) {
			n.t.Fatalf("load CA %s: %v", n.CAFile, err)
		}
		transport.TLSClientConfig = &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}
	}
	n.client = &http.Client{Transport: transport}
	return n.client
}

// SetAuth adds the node user's Basic credentials to req.
func (n *Node) SetAuth(req *http.Request) {
	req.SetBasicAuth(n.Username, n.Password)
}

// Stop sends SIGTERM and waits for the process to exit. It returns an
// error when the process did not exit with status 0 within the stop
// timeout; it is then killed. Stopping a node that is not running does
// nothing.
func (n *Node) Stop() error {
	p := n.current()
	if p == nil || p.exited() {
		return nil
	}
	return p.stop(orDefault(n.opts.StopTimeout, DefaultStopTimeout))
}

// Kill sends SIGKILL and waits for the process to exit.
func (n *Node) Kill() {
	n.t.Helper()
	p := n.current()
	if p == nil {
		return
	}
	if err := p.kill(); err != nil {
		n.t.Fatalf("kill node: %v", err)
	}
}

// Restart starts the stopped or killed node again with the same ports,
// files and environment, and waits until it is ready.
func (n *Node) Restart() {
	n.t.Helper()
	if p := n.current(); p != nil && !p.exited() {
		n.t.Fatalf("restart: node is still running; call Stop or Kill first")
	}
	if err := n.start(); err != nil {
		n.t.Fatalf("restart node: %v\n%s", err, n.LogTail(32<<10))
	}
}

// Running reports whether the process is alive.
func (n *Node) Running() bool {
	p := n.current()
	return p != nil && !p.exited()
}

// PID returns the process id of the current or last process.
func (n *Node) PID() int {
	p := n.current()
	if p == nil {
		return 0
	}
	return p.cmd.Process.Pid
}

// PeakRSS returns the peak resident set size in bytes of the current
// process, or of the last one after it exited. While the process runs this
// is VmHWM from /proc/PID/status; after it exits, the larger of the last
// sample and the kernel's ru_maxrss.
func (n *Node) PeakRSS() int64 {
	p := n.current()
	if p == nil {
		return 0
	}
	return p.peakRSS()
}

// LogTail returns up to limit bytes from the end of the node's log.
func (n *Node) LogTail(limit int64) string {
	return tailFile(n.LogFile, limit)
}

func (n *Node) current() *process {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.proc
}

// cleanup stops the node when the test ends and prints its log when the
// test failed.
func (n *Node) cleanup() {
	if err := n.Stop(); err != nil {
		n.t.Logf("stop node at cleanup: %v", err)
	}
	if n.t.Failed() {
		n.t.Logf("flotilla log (%s), last 64 KiB:\n%s", n.LogFile, n.LogTail(64<<10))
	}
}

// FreePort returns a loopback TCP port that was free a moment ago.
func FreePort(t testing.TB) int {
	t.Helper()
	return testenv.FreePort(t, "127.0.0.1")
}

// RandomHex returns n random bytes, hex-encoded.
func RandomHex(t testing.TB, n int) string {
	t.Helper()
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		t.Fatalf("read random bytes: %v", err)
	}
	return hex.EncodeToString(b)
}

// filterEnv returns env without the entries whose key starts with prefix.
func filterEnv(env []string, prefix string) []string {
	out := make([]string, 0, len(env))
	for _, kv := range env {
		if !strings.HasPrefix(kv, prefix) {
			out = append(out, kv)
		}
	}
	return out
}

func orDefault[T comparable](v, def T) T {
	var zero T
	if v == zero {
		return def
	}
	return v
}

// tailFile returns up to limit bytes from the end of path, or a note that
// it cannot be read.
func tailFile(path string, limit int64) string {
	f, err := os.Open(path)
	if err != nil {
		return fmt.Sprintf("(cannot read %s: %v)", path, err)
	}
	defer f.Close()
	info, err := f.Stat()
	if err != nil {
		return fmt.Sprintf("(cannot stat %s: %v)", path, err)
	}
	offset := max(info.Size()-limit, 0)
	b := make([]byte, info.Size()-offset)
	if _, err := f.ReadAt(b, offset); err != nil && !errors.Is(err, io.EOF) {
		return fmt.Sprintf("(cannot read %s: %v)", path, err)
	}
	return string(b)
}
