package cluster

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

// Node is one "flotilla serve" process of a Cluster and its files.
type Node struct {
	// ID is REGISTRY_CLUSTER_NODEID, such as n1.
	ID string
	// IP is the node's own loopback address, such as 127.0.0.2.
	IP string
	// APIAddr is the host:port of the API, and URL its base URL.
	APIAddr string
	URL     string
	// ClusterAddr is the bind and advertise address of the cluster port.
	ClusterAddr string
	// Peers are the cluster addresses in REGISTRY_CLUSTER_PEERS.
	Peers []string
	// CertFile and KeyFile are the node's cluster certificate and key.
	CertFile string
	KeyFile  string
	// Dir is the node's folder. DataDir (REGISTRY_CLUSTER_DATADIR)
	// contains the Raft data and the admin token, and LogFile the
	// process output of every start.
	Dir     string
	DataDir string
	LogFile string
	// ExtraEnv lists KEY=VALUE entries that override the cluster's
	// settings for this node only, and UnsetEnv the keys to leave out;
	// see Cluster.Reconfigure.
	ExtraEnv []string
	UnsetEnv []string

	cluster *Cluster
	env     []string
	removed bool // guarded by cluster.mu
	rogue   bool // guarded by cluster.mu

	mu     sync.Mutex
	proc   *process
	starts int
	client *Client
}

// Start starts the process without waiting for it to be ready. Starting
// a running node is an error.
func (n *Node) Start() error {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.proc != nil && !n.proc.exited() {
		return fmt.Errorf("%s is still running", n.ID)
	}
	n.starts++
	p, err := startProcess(n.cluster.bin, []string{"serve"}, n.env, n.LogFile,
		fmt.Sprintf("%s start %d", n.ID, n.starts))
	if err != nil {
		return err
	}
	n.proc = p
	return nil
}

// Restart starts the stopped or killed node with the same ports, files
// and environment, and waits until it is ready.
func (n *Node) Restart(t testing.TB) {
	t.Helper()
	if err := n.Start(); err != nil {
		t.Fatalf("restart %s: %v", n.ID, err)
	}
	n.cluster.WaitReady(t, n)
}

// Stop sends SIGTERM and waits for the exit. It returns an error when
// the process did not exit with status 0 within DefaultStopTimeout; it
// is then killed. Stopping a node that does not run does nothing.
func (n *Node) Stop() error {
	return n.stop(DefaultStopTimeout)
}

func (n *Node) stop(timeout time.Duration) error {
	p := n.current()
	if p == nil || p.exited() {
		return nil
	}
	return p.stop(timeout)
}

// Kill sends SIGKILL and waits for the exit.
func (n *Node) Kill(t testing.TB) {
	t.Helper()
	p := n.current()
	if p == nil || p.exited() {
		return
	}
	if err := p.kill(); err != nil {
		t.Fatalf("kill %s: %v", n.ID, err)
	}
	t.Logf("killed %s (SIGKILL)", n.ID)
}

// Pause stops the process with SIGSTOP, and Resume continues it.
func (n *Node) Pause(t testing.TB) {
	t.Helper()
	p := n.current()
	if p == nil || p.exited() {
		t.Fatalf("pause %s: the node does not run", n.ID)
	}
	if err := p.pause(); err != nil {
		t.Fatalf("pause %s: %v", n.ID, err)
	}
	t.Logf("paused %s (SIGSTOP)", n.ID)
}

// Resume sends SIGCONT to a paused node.
func (n *Node) Resume(t testing.TB) {
	t.Helper()
	p := n.current()
	if p == nil {
		return
	}
	if err := p.resume(); err != nil {
		t.Fatalf("resume %s: %v", n.ID, err)
	}
	t.Logf("resumed %s (SIGCONT)", n.ID)
}

// Wipe deletes the node's data folder (Raft log, snapshots, admin
// token). The node must not run.
func (n *Node) Wipe(t testing.TB) {
	t.Helper()
	if n.Running() {
		t.Fatalf("wipe %s: the node still runs", n.ID)
	}
	if err := os.RemoveAll(n.DataDir); err != nil {
		t.Fatalf("wipe %s: %v", n.ID, err)
	}
	if err := os.Mkdir(n.DataDir, 0o700); err != nil {
		t.Fatalf("wipe %s: %v", n.ID, err)
	}
}

// Running reports whether the process is alive (also when paused).
func (n *Node) Running() bool {
	p := n.current()
	return p != nil && !p.exited()
}

// Paused reports whether the process is stopped by Pause.
func (n *Node) Paused() bool {
	p := n.current()
	if p == nil {
		return false
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.paused
}

// ExitError returns the wait error of the last process once it exited.
func (n *Node) ExitError() (exited bool, err error) {
	p := n.current()
	if p == nil || !p.exited() {
		return false, nil
	}
	return true, p.waitErr
}

func (n *Node) current() *process {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.proc
}

// LogTail returns up to limit bytes from the end of the node's log.
func (n *Node) LogTail(limit int64) string {
	return tailFile(n.LogFile, limit)
}

// Client returns the registry client of the node's API, with the
// cluster's user.
func (n *Node) Client() *Client {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.client == nil {
		n.client = n.cluster.ClientFor(n.ID, n.URL)
	}
	return n.client
}

// AdminToken returns the node's local admin token from its data folder.
func (n *Node) AdminToken() (string, error) {
	data, err := os.ReadFile(filepath.Join(n.DataDir, "admin-token"))
	if err != nil {
		return "", fmt.Errorf("read admin token of %s: %w", n.ID, err)
	}
	token := strings.TrimSpace(string(data))
	if token == "" {
		return "", fmt.Errorf("admin token of %s is empty", n.ID)
	}
	return token, nil
}

// Status returns the node's GET /flotilla/v1/cluster, authenticated with
// its admin token.
func (n *Node) Status(ctx context.Context) (Status, error) {
	token, err := n.AdminToken()
	if err != nil {
		return Status{}, err
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, n.URL+"/flotilla/v1/cluster", nil)
	if err != nil {
		return Status{}, err
	}
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := n.Client().HTTP.Do(req)
	if err != nil {
		return Status{}, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		body, _ := io.ReadAll(io.LimitReader(resp.Body, 4<<10))
		return Status{}, fmt.Errorf("GET /flotilla/v1/cluster returned %d: %s", resp.StatusCode, body)
	}
	return readStatus(resp.Body)
}

// Get sends an unauthenticated GET for path, such as /readyz, and
// returns the status code.
func (n *Node) Get(ctx context.Context, path string) (int, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, n.URL+path, nil)
	if err != nil {
		return 0, err
	}
	resp, err := n.Client().HTTP.Do(req)
	if err != nil {
		return 0, err
	}
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	resp.Body.Close()
	return resp.StatusCode, nil
}

// WaitReady polls GET /readyz until it returns 200, the process exits,
// or timeout passes.
func (n *Node) WaitReady(timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	last := "no request sent"
	for time.Now().Before(deadline) {
		if exited, err := n.ExitError(); exited {
			return fmt.Errorf("process exited: %v", err)
		}
		ctx, cancel := context.WithTimeout(context.Background(), probeTimeout)
		status, err := n.Get(ctx, "/readyz")
		cancel()
		switch {
		case err != nil:
			last = err.Error()
		case status == http.StatusOK:
			return nil
		default:
			last = fmt.Sprintf("GET /readyz returned %d", status)
		}
		time.Sleep(pollInterval)
	}
	return fmt.Errorf("not ready within %v: %s", timeout, last)
}

// tailFile returns up to limit bytes from the end of path, or a note
// that it cannot be read.
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
