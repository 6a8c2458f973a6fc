package compose

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

// Markers of the host changes a test makes, for cleanup after a killed
// run: the comment at the end of an /etc/hosts line and the file in a
// certs.d folder.
const (
	hostsMarker = "# flotilla-compose-test"
	markerFile  = ".flotilla-compose-test"
	hostsFile   = "/etc/hosts"
	certsDir    = "/etc/docker/certs.d"
)

// hostsMu serializes edits of /etc/hosts within the test process.
var hostsMu sync.Mutex

// addHost appends "IP NAME" to /etc/hosts and removes the line when the
// test ends. The engine resolves registry names through the host's
// resolver, so this is how a name reaches a container's address.
func addHost(t *testing.T, name, ip string) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("editing /etc/hosts needs root")
	}
	line := fmt.Sprintf("%s %s %s", ip, name, hostsMarker)
	editHosts(t, func(lines []string) []string {
		for _, l := range lines {
			if fields := strings.Fields(l); len(fields) > 1 && fields[1] == name {
				t.Fatalf("/etc/hosts already maps %s (%q); remove that line first", name, l)
			}
		}
		return append(lines, line)
	})
	t.Cleanup(func() {
		editHosts(t, func(lines []string) []string {
			out := lines[:0]
			for _, l := range lines {
				if l != line {
					out = append(out, l)
				}
			}
			return out
		})
	})
}

// editHosts rewrites /etc/hosts in place, keeping its inode, because the
// file may be a bind mount that a rename cannot replace.
func editHosts(t *testing.T, edit func([]string) []string) {
	t.Helper()
	hostsMu.Lock()
	defer hostsMu.Unlock()
	data, err := os.ReadFile(hostsFile)
	if err != nil {
		t.Fatalf("read %s: %v", hostsFile, err)
	}
	lines := strings.Split(strings.TrimRight(string(data), "\n"), "\n")
	out := strings.Join(edit(lines), "\n") + "\n"
	if err := os.WriteFile(hostsFile, []byte(out), 0o644); err != nil {
		t.Fatalf("write %s: %v", hostsFile, err)
	}
}

// trustCA makes the engine trust caPEM for the registry at hostPort
// (NAME:PORT) and removes the folder, and certs.d when the test created
// it, when the test ends.
func trustCA(t *testing.T, hostPort string, caPEM []byte) {
	t.Helper()
	createdRoot := false
	if _, err := os.Stat(certsDir); errors.Is(err, fs.ErrNotExist) {
		createdRoot = true
	}
	dir := filepath.Join(certsDir, hostPort)
	if _, err := os.Stat(dir); err == nil {
		t.Fatalf("%s exists already; remove it first", dir)
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatalf("create %s: %v", dir, err)
	}
	t.Cleanup(func() {
		if err := os.RemoveAll(dir); err != nil {
			t.Errorf("remove %s: %v", dir, err)
		}
		if createdRoot {
			_ = os.Remove(certsDir) // only when empty
		}
	})
	for name, data := range map[string][]byte{"ca.crt": caPEM, markerFile: nil} {
		if err := os.WriteFile(filepath.Join(dir, name), data, 0o644); err != nil {
			t.Fatalf("write %s: %v", name, err)
		}
	}
}

// dockerCLI runs the docker command with a private DOCKER_CONFIG, so a
// login never touches the user's credentials.
type dockerCLI struct {
	t   *testing.T
	env []string
}

func newDockerCLI(t *testing.T) *dockerCLI {
	t.Helper()
	if _, err := exec.LookPath("docker"); err != nil {
		t.Skip("docker not in PATH")
	}
	env := append(os.Environ(), "DOCKER_CONFIG="+t.TempDir())
	return &dockerCLI{t: t, env: env}
}

// cliTimeout bounds one docker command; a push may wait for the engine's
// own retries.
const cliTimeout = 5 * time.Minute

// run executes docker with args and stdin, returning the combined output.
func (d *dockerCLI) run(stdin []byte, args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), cliTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, "docker", args...)
	cmd.Env = d.env
	if stdin != nil {
		cmd.Stdin = bytes.NewReader(stdin)
	}
	out, err := cmd.CombinedOutput()
	return string(out), err
}

// must runs docker and fails the test when it fails.
func (d *dockerCLI) must(stdin []byte, args ...string) string {
	d.t.Helper()
	out, err := d.run(stdin, args...)
	if err != nil {
		d.t.Fatalf("docker %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return out
}

// login runs docker login with the password on standard input, trying
// again for up to 15 s: the engine rereads /etc/hosts only every few
// seconds, so a name added just before may not resolve yet.
func (d *dockerCLI) login(registry, user, password string) {
	d.t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for {
		out, err := d.run([]byte(password), "login", "--username", user, "--password-stdin", registry)
		if err == nil {
			return
		}
		if time.Now().After(deadline) || !strings.Contains(out, "no such host") {
			d.t.Fatalf("docker login %s: %v\n%s", registry, err, out)
		}
		time.Sleep(time.Second)
	}
}
