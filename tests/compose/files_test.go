package compose

import (
	"archive/tar"
	"bytes"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"

	"github.com/flotilla-registry/flotilla/tests/drill/scenario"
)

// repoRoot returns the repository root, two folders above this file.
func repoRoot(t *testing.T) string {
	t.Helper()
	_, file, _, ok := runtime.Caller(0)
	if !ok {
		t.Fatal("cannot locate the test file")
	}
	return filepath.Join(filepath.Dir(file), "..", "..")
}

// finalStage returns the instructions from the last FROM on, without
// comments and blank lines.
func finalStage(t *testing.T, path string) []string {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var stage []string
	for _, line := range strings.Split(string(data), "\n") {
		line = strings.TrimSpace(line)
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		if strings.HasPrefix(line, "FROM ") {
			stage = nil
		}
		stage = append(stage, line)
	}
	return stage
}

// TestDockerfilesMatch checks that the image built from source and the
// one built from host binaries get the same settings: everything after
// the COPY of the root file system must be equal.
func TestDockerfilesMatch(t *testing.T) {
	root := repoRoot(t)
	source := finalStage(t, filepath.Join(root, "Dockerfile"))
	local := finalStage(t, filepath.Join(root, "deploy", "Dockerfile.local"))
	if len(source) < 2 || len(local) < 2 {
		t.Fatalf("final stages too short: %q and %q", source, local)
	}
	if source[0] != "FROM scratch" || local[0] != "FROM scratch" {
		t.Errorf("final stages start with %q and %q, want FROM scratch", source[0], local[0])
	}
	a, b := strings.Join(source[2:], "\n"), strings.Join(local[2:], "\n")
	if a != b {
		t.Errorf("Dockerfile and deploy/Dockerfile.local differ after the COPY:\n%s\n---\n%s", a, b)
	}
}

// TestComposeConfig checks that every installed compose implementation
// accepts docker-compose.yml.
func TestComposeConfig(t *testing.T) {
	root := repoRoot(t)
	tools := map[string][]string{
		"docker-compose": {"docker-compose"},
		"docker compose": {"docker", "compose"},
	}
	ran := 0
	for name, argv := range tools {
		if _, err := exec.LookPath(argv[0]); err != nil {
			continue
		}
		if len(argv) > 1 {
			if err := exec.Command(argv[0], append(argv[1:], "version")...).Run(); err != nil {
				continue
			}
		}
		ran++
		cmd := exec.Command(argv[0], append(argv[1:], "-f", filepath.Join(root, "docker-compose.yml"), "config", "-q")...)
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Errorf("%s config: %v\n%s", name, err, out)
		}
	}
	if ran == 0 {
		t.Skip("neither docker-compose nor docker compose is installed")
	}
}

// TestInitKeepsSecretsOutOfLogs checks that no container of the cluster
// logged the generated password, that the init log shows how to print it,
// and that the password file is readable by root only.
func TestInitKeepsSecretsOutOfLogs(t *testing.T) {
	c := openCluster(t)
	ctx := context.Background()
	services := append([]string{scenario.InitService, scenario.StoreService, scenario.BalancerService}, scenario.Nodes...)
	for _, s := range services {
		id, err := c.Docker.Container(ctx, s)
		if err != nil {
			t.Fatal(err)
		}
		out, err := exec.Command("docker", "logs", id).CombinedOutput()
		if err != nil {
			t.Fatalf("docker logs %s: %v", s, err)
		}
		if bytes.Contains(out, []byte(c.Password)) {
			t.Errorf("the log of %s contains the generated password", s)
		}
		if s == scenario.InitService && !bytes.Contains(out, []byte("show-password")) {
			t.Errorf("the init log does not say how to print the password:\n%s", out)
		}
	}
	mode := fileMode(t, c, "/secrets/password")
	if mode != 0o600 {
		t.Errorf("password file has mode %o, want 600", mode)
	}
}

// fileMode returns the permission bits of a file in the init container,
// read from the tar header that docker cp writes.
func fileMode(t *testing.T, c *scenario.Cluster, path string) int64 {
	t.Helper()
	id, err := c.Docker.Container(context.Background(), scenario.InitService)
	if err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command("docker", "cp", id+":"+path, "-").Output()
	if err != nil {
		t.Fatalf("docker cp %s: %v", path, err)
	}
	h, err := tar.NewReader(bytes.NewReader(out)).Next()
	if err != nil {
		t.Fatalf("read tar of %s: %v", path, err)
	}
	return h.Mode & 0o777
}
