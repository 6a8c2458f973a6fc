package compose

import (
	"archive/tar"
	"bytes"
	"crypto/rand"
	"crypto/rsa"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"math/big"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// tutorialName is the registry name of the tutorial test, another than
// the cluster tests' so both can leave their host entries side by side.
const tutorialName = "flotilla-tutorial.local"

// TestTutorialDockerRun runs Flotilla's image with the "docker run" of
// the registry:2 tutorial on basic authentication. Only the image and the
// container name differ. The setup is the tutorial's: a data folder
// bind-mounted from the host, a self-signed certificate whose key has mode
// 0600 and belongs to root, and an htpasswd file made with the image's
// htpasswd entry point. The test logs in through the engine under a
// verified name, pushes, pulls, restarts the container and pulls again.
func TestTutorialDockerRun(t *testing.T) {
	image := os.Getenv("FLOTILLA_IMAGE")
	if image == "" {
		t.Skip("FLOTILLA_IMAGE is not set: build the image (scripts/compose-up.sh) and set it")
	}
	if os.Geteuid() != 0 {
		t.Skip("the tutorial test edits /etc/hosts and needs root")
	}
	port := os.Getenv("FLOTILLA_TUTORIAL_PORT")
	if port == "" {
		port = "5000"
	}
	d := newDockerCLI(t)
	work := t.TempDir() // the tutorial's $(pwd)
	certPEM := writeTutorialCert(t, filepath.Join(work, "certs"))

	// docker run --entrypoint htpasswd IMAGE -Bbn moby DockerRules > auth/htpasswd
	line := d.must(nil, "run", "--rm", "--entrypoint", "htpasswd", image, "-Bbn", "moby", "DockerRules")
	if !strings.HasPrefix(line, "moby:$2y$") {
		t.Fatalf("htpasswd entry point printed %q, want a bcrypt line for moby", line)
	}
	writeFile(t, filepath.Join(work, "auth", "htpasswd"), []byte(line), 0o644)

	container := fmt.Sprintf("flotilla-tutorial-%d", os.Getpid())
	t.Cleanup(func() {
		if t.Failed() {
			out, _ := d.run(nil, "logs", "--tail", "40", container)
			t.Logf("log of %s:\n%s", container, out)
		}
		_, _ = d.run(nil, "rm", "-f", container)
	})
	d.must(nil, "run", "-d", "-p", port+":5000", "--name", container,
		"--restart", "unless-stopped",
		"-v", filepath.Join(work, "registry-data")+":/var/lib/registry",
		"-v", filepath.Join(work, "certs")+":/certs",
		"-v", filepath.Join(work, "auth")+":/auth",
		"-e", "REGISTRY_HTTP_TLS_CERTIFICATE=/certs/domain.crt",
		"-e", "REGISTRY_HTTP_TLS_KEY=/certs/domain.key",
		"-e", "REGISTRY_AUTH=htpasswd",
		"-e", "REGISTRY_AUTH_HTPASSWD_REALM=Registry Realm",
		"-e", "REGISTRY_AUTH_HTPASSWD_PATH=/auth/htpasswd",
		image)
	waitRegistry(t, port, certPEM)

	ip := strings.TrimSpace(d.must(nil, "inspect", "-f",
		"{{range .NetworkSettings.Networks}}{{.IPAddress}}{{end}}", container))
	addHost(t, tutorialName, ip)
	registry := tutorialName + ":5000"
	trustCA(t, registry, certPEM)
	ref := registry + "/labs/hello-world"
	importImage(t, d, ref)

	checkAnonymousPull(t, d, ref)
	out, err := d.run([]byte("wrong"), "login", "--username", "moby", "--password-stdin", registry)
	if err == nil || !strings.Contains(out, "401 Unauthorized") {
		t.Errorf("docker login with a wrong password: err %v, want a 401 message:\n%s", err, out)
	}
	d.login(registry, "moby", "DockerRules")
	want := imageID(t, d, ref)
	d.must(nil, "push", ref)
	pullFresh(t, d, ref, want)
	checkUnprivileged(t, d, container)

	d.must(nil, "restart", container)
	waitRegistry(t, port, certPEM)
	pullFresh(t, d, ref, want)
}

// writeTutorialCert writes the tutorial's certs/domain.crt and
// certs/domain.key for tutorialName: a self-signed RSA certificate, the
// key with mode 0600 and owned by root, as openssl leaves it.
func writeTutorialCert(t *testing.T, dir string) []byte {
	t.Helper()
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(time.Now().UnixNano()),
		Subject:               pkix.Name{CommonName: tutorialName},
		DNSNames:              []string{tutorialName},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(24 * time.Hour),
		KeyUsage:              x509.KeyUsageDigitalSignature | x509.KeyUsageKeyEncipherment | x509.KeyUsageCertSign,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		BasicConstraintsValid: true,
		IsCA:                  true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	certPEM := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	writeFile(t, filepath.Join(dir, "domain.crt"), certPEM, 0o644)
	writeFile(t, filepath.Join(dir, "domain.key"), pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER}), 0o600)
	return certPEM
}

func writeFile(t *testing.T, path string, data []byte, mode os.FileMode) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, data, mode); err != nil {
		t.Fatal(err)
	}
}

// waitRegistry polls /v2/ on the published port until the registry
// responds with 401, for up to a minute.
func waitRegistry(t *testing.T, port string, certPEM []byte) {
	t.Helper()
	roots := x509.NewCertPool()
	roots.AppendCertsFromPEM(certPEM)
	client := &http.Client{
		Timeout: 3 * time.Second,
		Transport: &http.Transport{TLSClientConfig: &tls.Config{
			RootCAs: roots, ServerName: tutorialName, MinVersion: tls.VersionTLS12,
		}},
	}
	defer client.CloseIdleConnections()
	deadline := time.Now().Add(time.Minute)
	for {
		resp, err := client.Get("https://127.0.0.1:" + port + "/v2/")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusUnauthorized {
				return
			}
			err = fmt.Errorf("status %s", resp.Status)
		}
		if time.Now().After(deadline) {
			t.Fatalf("registry on port %s not answering /v2/ with 401 within a minute: %v", port, err)
		}
		time.Sleep(500 * time.Millisecond)
	}
}

// importImage makes a one-layer image from a small tarball, as
// "docker import" does, and removes it when the test ends.
func importImage(t *testing.T, d *dockerCLI, ref string) {
	t.Helper()
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	body := []byte("Hello from Flotilla's tutorial test\n")
	if err := tw.WriteHeader(&tar.Header{Name: "hello.txt", Mode: 0o644, Size: int64(len(body))}); err != nil {
		t.Fatal(err)
	}
	_, _ = tw.Write(body)
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	d.must(buf.Bytes(), "import", "-", ref)
	t.Cleanup(func() { _, _ = d.run(nil, "rmi", "-f", ref) })
}

// checkAnonymousPull checks that a pull without login fails with the
// message Docker prints for a 401 challenge, for an existing and an
// unknown repository alike.
func checkAnonymousPull(t *testing.T, d *dockerCLI, ref string) {
	t.Helper()
	unknown := tutorialName + ":5000/labs/no-such-repository"
	for _, r := range []string{ref, unknown} {
		out, err := d.run(nil, "pull", r)
		if err == nil || !strings.Contains(out, "no basic auth credentials") {
			t.Errorf("anonymous docker pull %s: err %v, want \"no basic auth credentials\":\n%s", r, err, out)
		}
	}
}

// pullFresh removes the local image, pulls it and compares its id.
func pullFresh(t *testing.T, d *dockerCLI, ref, want string) {
	t.Helper()
	d.must(nil, "rmi", ref)
	d.must(nil, "pull", ref)
	if got := imageID(t, d, ref); got != want {
		t.Errorf("pulled %s has id %s, pushed %s", ref, got, want)
	}
}

// checkUnprivileged checks that the registry process in container runs
// with a user id other than 0.
func checkUnprivileged(t *testing.T, d *dockerCLI, container string) {
	t.Helper()
	pid := strings.TrimSpace(d.must(nil, "inspect", "-f", "{{.State.Pid}}", container))
	status, err := os.ReadFile(filepath.Join("/proc", pid, "status"))
	if err != nil {
		t.Fatalf("read status of the registry process: %v", err)
	}
	for _, line := range strings.Split(string(status), "\n") {
		if fields := strings.Fields(line); len(fields) > 1 && fields[0] == "Uid:" {
			if fields[1] == "0" {
				t.Errorf("the registry runs as root: %s", line)
			}
			t.Logf("registry process %s", line)
			return
		}
	}
	t.Errorf("no Uid line in /proc/%s/status", pid)
}
