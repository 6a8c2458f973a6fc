package harness

import (
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/flotilla-registry/flotilla/internal/testenv"
)

// DefaultToolTimeout bounds one run of a client tool.
const DefaultToolTimeout = 3 * time.Minute

// Tools runs registry clients (crane, oras, regctl, skopeo, ...) against
// one node. Each Tools has its own HOME, DOCKER_CONFIG and XDG folders,
// and SSL_CERT_FILE set to the node's CA, so no client reads the user's
// configuration or trusts any other certificate.
type Tools struct {
	// Home is the HOME of the tools, a temporary folder.
	Home string
	// Timeout bounds each run, DefaultToolTimeout unless changed.
	Timeout time.Duration

	t       testing.TB
	env     []string
	secrets []string
}

// ToolResult is the output of one tool run.
type ToolResult struct {
	Stdout string
	Stderr string
	// Err is nil when the tool exited with status 0.
	Err error
}

// NewTools prepares a private environment for tools that talk to n. With
// a nil n the tools trust no extra CA, for work on local files.
func NewTools(t testing.TB, n *Node) *Tools {
	t.Helper()
	home := t.TempDir()
	env := filterEnv(os.Environ(), "HOME=")
	for _, key := range []string{
		"DOCKER_CONFIG=", "SSL_CERT_FILE=", "SSL_CERT_DIR=", "XDG_CONFIG_HOME=",
		"XDG_RUNTIME_DIR=", "REGISTRY_AUTH_FILE=", "REGCTL_CONFIG=",
	} {
		env = filterEnv(env, key)
	}
	env = append(env,
		"HOME="+home,
		"DOCKER_CONFIG="+filepath.Join(home, ".docker"),
		"XDG_CONFIG_HOME="+filepath.Join(home, ".config"),
		"XDG_RUNTIME_DIR="+filepath.Join(home, "run"),
	)
	var secrets []string
	if n != nil {
		secrets = append(secrets, n.Password)
		if n.CAFile != "" {
			env = append(env, "SSL_CERT_FILE="+n.CAFile)
		}
	}
	for _, dir := range []string{".docker", ".config", "run"} {
		if err := os.MkdirAll(filepath.Join(home, dir), 0o700); err != nil {
			t.Fatalf("create tool folder: %v", err)
		}
	}
	return &Tools{
		Home:    home,
		Timeout: DefaultToolTimeout,
		t:       t,
		env:     env,
		secrets: secrets,
	}
}

// For returns Tools that share c's environment but report to t, for use
// inside a subtest: a test may only be failed from its own goroutine.
func (c *Tools) For(t testing.TB) *Tools {
	clone := *c
	clone.t = t
	return &clone
}

// Run runs the tool name with args and returns its standard output. It
// fails the test with the tool's standard error when the tool fails.
func (c *Tools) Run(ctx context.Context, name string, args ...string) string {
	c.t.Helper()
	res := c.Try(ctx, name, args...)
	if res.Err != nil {
		c.t.Fatalf("%s failed: %v\nstderr:\n%s\nstdout:\n%s",
			c.redact(name+" "+strings.Join(args, " ")), res.Err,
			truncate(res.Stderr, 8<<10), truncate(res.Stdout, 8<<10))
	}
	return res.Stdout
}

// Try runs the tool name with args and returns its output and exit error,
// for runs that are expected to fail.
func (c *Tools) Try(ctx context.Context, name string, args ...string) ToolResult {
	c.t.Helper()
	path := testenv.Tool(c.t, name)
	ctx, cancel := context.WithTimeout(ctx, c.Timeout)
	defer cancel()
	c.t.Logf("$ %s", c.redact(name+" "+strings.Join(args, " ")))
	cmd := exec.CommandContext(ctx, path, args...)
	cmd.Env = c.env
	cmd.Dir = c.Home
	cmd.WaitDelay = 5 * time.Second
	var stdout, stderr strings.Builder
	cmd.Stdout = &stdout
	cmd.Stderr = &stderr
	err := cmd.Run()
	if errors.Is(ctx.Err(), context.DeadlineExceeded) {
		err = errors.Join(err, errors.New("timed out after "+c.Timeout.String()))
	}
	return ToolResult{Stdout: stdout.String(), Stderr: stderr.String(), Err: err}
}

// redact replaces the node's password in s.
func (c *Tools) redact(s string) string {
	for _, secret := range c.secrets {
		if secret != "" {
			s = strings.ReplaceAll(s, secret, "***")
		}
	}
	return s
}

// truncate shortens s to at most limit bytes, keeping its end.
func truncate(s string, limit int) string {
	if len(s) <= limit {
		return s
	}
	return "[...]" + s[len(s)-limit:]
}
