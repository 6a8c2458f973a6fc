package compose

import (
	"bufio"
	"context"
	"crypto/rand"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/flotilla-registry/flotilla/tests/drill/scenario"
)

// registryName is the name under which the engine reaches the load
// balancer in the Docker client tests. It is not under 127.0.0.0/8 or
// localhost, which the engine treats as insecure and does not verify.
const registryName = "registry.local"

// openCluster returns the running compose cluster named by
// FLOTILLA_COMPOSE_PROJECT, or skips the test.
func openCluster(t *testing.T) *scenario.Cluster {
	t.Helper()
	project := os.Getenv("FLOTILLA_COMPOSE_PROJECT")
	if project == "" {
		t.Skip("FLOTILLA_COMPOSE_PROJECT is not set: start a cluster with scripts/compose-up.sh and set it")
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	c, err := scenario.Open(ctx, project)
	if err != nil {
		t.Fatalf("open compose project %s: %v", project, err)
	}
	if _, err := c.WaitReady(ctx, 50*time.Second); err != nil {
		t.Fatalf("cluster %s: %v", project, err)
	}
	return c
}

// clusterCA returns the compose CA certificate in PEM.
func clusterCA(t *testing.T, c *scenario.Cluster) []byte {
	t.Helper()
	pem, err := c.Docker.ReadFile(context.Background(), scenario.InitService, "/cluster-tls/ca.crt")
	if err != nil {
		t.Fatal(err)
	}
	return pem
}

// pointAtBalancer maps registryName to the load balancer's address on
// the compose network and returns "registry.local:5000".
func pointAtBalancer(t *testing.T, c *scenario.Cluster) string {
	t.Helper()
	ip, err := c.Docker.IPAddress(context.Background(), scenario.BalancerService)
	if err != nil {
		t.Fatal(err)
	}
	addHost(t, registryName, ip)
	return fmt.Sprintf("%s:%d", registryName, scenario.APIPort)
}

// buildImage builds an image FROM scratch with one layer of layerBytes
// random bytes per layer, tags it, and removes it when the test ends.
func buildImage(t *testing.T, d *dockerCLI, tag string, layers, layerBytes int) {
	t.Helper()
	dir := t.TempDir()
	var dockerfile strings.Builder
	dockerfile.WriteString("FROM scratch\n")
	for i := range layers {
		data := make([]byte, layerBytes)
		_, _ = rand.Read(data)
		name := fmt.Sprintf("layer%d", i)
		if err := os.WriteFile(filepath.Join(dir, name), data, 0o644); err != nil {
			t.Fatal(err)
		}
		fmt.Fprintf(&dockerfile, "COPY %s /%s\n", name, name)
	}
	if err := os.WriteFile(filepath.Join(dir, "Dockerfile"), []byte(dockerfile.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	d.must(nil, "build", "-q", "-t", tag, dir)
	t.Cleanup(func() { _, _ = d.run(nil, "rmi", "-f", tag) })
}

// imageID returns the local image id of ref.
func imageID(t *testing.T, d *dockerCLI, ref string) string {
	t.Helper()
	return strings.TrimSpace(d.must(nil, "image", "inspect", "-f", "{{.Id}}", ref))
}

// TestDockerClientUntrustedCA shows that the engine really verifies the
// registry's certificate under registryName: without the compose CA in
// certs.d, login and push fail on the certificate.
func TestDockerClientUntrustedCA(t *testing.T) {
	c := openCluster(t)
	d := newDockerCLI(t)
	registry := pointAtBalancer(t, c)
	ref := registry + "/compose-test/untrusted:1"
	buildImage(t, d, ref, 1, 1024)

	deadline := time.Now().Add(15 * time.Second)
	var out string
	var err error
	for {
		out, err = d.run([]byte(c.Password), "login", "--username", c.User, "--password-stdin", registry)
		if err != nil && strings.Contains(out, "no such host") && time.Now().Before(deadline) {
			time.Sleep(time.Second)
			continue
		}
		break
	}
	if err == nil {
		t.Fatalf("docker login %s succeeded although the CA is not trusted:\n%s", registry, out)
	}
	if !strings.Contains(out, "x509") && !strings.Contains(out, "certificate") {
		t.Errorf("docker login failed, but not on the certificate:\n%s", out)
	}
	t.Logf("docker login without the CA failed as expected:\n%s", out)
	out, err = d.run(nil, "push", ref)
	if err == nil {
		t.Fatalf("docker push %s succeeded although the CA is not trusted:\n%s", ref, out)
	}
	if !strings.Contains(out, "x509") && !strings.Contains(out, "certificate") {
		t.Errorf("docker push failed, but not on the certificate:\n%s", out)
	}
	t.Logf("docker push without the CA failed as expected:\n%s", out)
}

// TestDockerClient logs in, pushes and pulls with the Docker engine
// through the load balancer, under a name the engine verifies against the
// compose CA. Every request of a push may reach another node.
func TestDockerClient(t *testing.T) {
	c := openCluster(t)
	d := newDockerCLI(t)
	registry := pointAtBalancer(t, c)
	trustCA(t, registry, clusterCA(t, c))
	d.login(registry, c.User, c.Password)
	tag := fmt.Sprintf("%d", time.Now().UnixNano())

	t.Run("push and pull", func(t *testing.T) {
		ref := registry + "/compose-test/client:" + tag
		buildImage(t, d, ref, 4, 256<<10)
		want := imageID(t, d, ref)
		d.must(nil, "push", ref)
		d.must(nil, "rmi", ref)
		d.must(nil, "pull", ref)
		if got := imageID(t, d, ref); got != want {
			t.Errorf("pulled image id %s, pushed %s", got, want)
		}
	})

	t.Run("push while the leader is killed", func(t *testing.T) {
		ref := registry + "/compose-test/failover:" + tag
		buildImage(t, d, ref, 8, 4<<20)
		want := imageID(t, d, ref)
		killed := pushKillingLeader(t, c, d, ref)
		ctx := context.Background()
		if err := c.Docker.Start(ctx, killed); err != nil {
			t.Fatal(err)
		}
		if _, err := c.WaitReady(ctx, 90*time.Second); err != nil {
			t.Fatal(err)
		}
		d.must(nil, "rmi", ref)
		d.must(nil, "pull", ref)
		if got := imageID(t, d, ref); got != want {
			t.Errorf("pulled image id %s, pushed %s", got, want)
		}
	})
}

// pushKillingLeader runs docker push and kills the leader as soon as the
// first layer is reported pushed, while the others are still uploading.
// The push must succeed through the engine's own retries. It returns the
// killed node.
func pushKillingLeader(t *testing.T, c *scenario.Cluster, d *dockerCLI, ref string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), cliTimeout)
	defer cancel()
	leader, err := c.Leader(ctx)
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.CommandContext(ctx, "docker", "push", ref)
	cmd.Env = d.env
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = cmd.Stdout
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}

	var output strings.Builder
	killedAt := ""
	lines := bufio.NewScanner(stdout)
	for lines.Scan() {
		line := lines.Text()
		output.WriteString(line + "\n")
		if killedAt == "" && strings.HasSuffix(line, ": Pushed") {
			if err := c.Docker.Kill(ctx, leader); err != nil {
				t.Errorf("kill leader %s: %v", leader, err)
			}
			// Later tests need the node back even if this one fails.
			t.Cleanup(func() { _ = c.Docker.Start(context.Background(), leader) })
			killedAt = line
		}
	}

	err = cmd.Wait()
	t.Logf("leader %s killed after %q; push output:\n%s", leader, killedAt, output.String())
	if err != nil {
		t.Fatalf("docker push %s with the leader killed: %v", ref, err)
	}
	if killedAt == "" {
		t.Fatalf("docker push reported no pushed layer, so the leader was not killed during the push")
	}
	return leader
}
