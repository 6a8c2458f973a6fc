package cluster

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"

	"github.com/flotilla-registry/flotilla/tests/harness"
)

// clientsTimeout bounds the client round trips of one test.
const clientsTimeout = 5 * time.Minute

// TestClientsPushThroughProxy pushes with crane, oras and a chunked Go
// client through the proxy, so the requests of one upload land on
// different nodes, and pulls everything from every node directly right
// after the push returned, digest-verified.
func TestClientsPushThroughProxy(t *testing.T) {
	c := Start(t, Options{})
	proxy := StartProxy(t, c)
	ctx, cancel := context.WithTimeout(t.Context(), clientsTimeout)
	defer cancel()
	tools := c.ToolsFor(t)
	for _, host := range append([]string{proxy.Host}, apiHosts(c.Members())...) {
		tools.Run(ctx, "crane", "auth", "login", host, "-u", c.Username, "-p", c.Password)
	}

	// crane sends each layer in one streamed PATCH.
	craneImg := harness.RandomImage(t, harness.ImageOptions{Layers: 3, LayerSize: 512 << 10})
	layoutDir := filepath.Join(t.TempDir(), "layout")
	layout := harness.NewLayout()
	layout.AddImage("v1", craneImg)
	layout.Write(t, layoutDir)
	tools.Run(ctx, "crane", "push", layoutDir, proxy.Host+"/clients/crane:v1")

	// oras pushes a file as an artifact.
	payload := harness.RandomBytes(t, 700<<10)
	if err := os.WriteFile(filepath.Join(tools.Home, "payload.bin"), payload, 0o600); err != nil {
		t.Fatalf("write payload: %v", err)
	}
	oras := []string{"--ca-file", c.APICertFile, "-u", c.Username, "-p", c.Password}
	tools.Run(ctx, "oras", append([]string{"push"}, append(oras,
		proxy.Host+"/clients/oras:v1", "payload.bin:application/vnd.flotilla.test.payload")...)...)

	// The Go client sends 64 KiB chunks with Content-Range, so one
	// layer's upload session is continued by every node in turn.
	chunkedImg := harness.RandomImage(t, harness.ImageOptions{Layers: 3, LayerSize: 300 << 10})
	if err := proxy.Client().PushImage(ctx, "clients/chunked", "v1", chunkedImg, 64<<10); err != nil {
		t.Fatalf("chunked push through the proxy: %v", err)
	}

	// One session explicitly spread over the nodes: four chunks, so the
	// POST goes to n1, the PATCHes to n2, n3, n1 and n2, the PUT to n3.
	members := c.Members()
	var clients []*Client
	for _, n := range members {
		clients = append(clients, n.Client())
	}
	spread := harness.RandomBytes(t, 200<<10)
	spreadDigest, err := PushBlobVia(ctx, clients, "clients/spread", spread, 64<<10)
	if err != nil {
		t.Fatalf("upload continued across nodes: %v", err)
	}

	// Pull from every node directly, with no wait after the pushes.
	for _, n := range members {
		client := n.Client()
		if err := client.VerifyImage(ctx, "clients/crane", "v1", craneImg); err != nil {
			t.Errorf("crane-pushed image on %s: %v", n.ID, err)
		}
		if err := client.VerifyImage(ctx, "clients/chunked", "v1", chunkedImg); err != nil {
			t.Errorf("chunked image on %s: %v", n.ID, err)
		}
		if got, err := client.GetBlob(ctx, "clients/spread", spreadDigest); err != nil {
			t.Errorf("spread blob on %s: %v", n.ID, err)
		} else if !bytes.Equal(got, spread) {
			t.Errorf("spread blob on %s differs from the upload", n.ID)
		}

		pulled := filepath.Join(t.TempDir(), "crane-"+n.ID)
		tools.Run(ctx, "crane", "pull", "--format", "oci", n.APIAddr+"/clients/crane:v1", pulled)
		harness.RequireLayoutLists(t, pulled, craneImg.Manifest.Digest)
		harness.RequireImageInLayout(t, pulled, craneImg)

		out := "oras-" + n.ID
		tools.Run(ctx, "oras", append([]string{"pull"}, append(oras, "-o", out, n.APIAddr+"/clients/oras:v1")...)...)
		got, err := os.ReadFile(filepath.Join(tools.Home, out, "payload.bin"))
		if err != nil {
			t.Errorf("oras pull from %s: %v", n.ID, err)
		} else if digest.FromBytes(got) != digest.FromBytes(payload) {
			t.Errorf("oras pull from %s: payload with digest %s, want %s", n.ID,
				digest.FromBytes(got), digest.FromBytes(payload))
		}
	}
	st := proxy.Stats()
	t.Logf("proxy: %d requests, per node %v", st.Requests, st.PerBackend)
	if st.BackendErrors != 0 {
		t.Errorf("proxy saw %d backend errors: %s", st.BackendErrors, strings.Join(st.LastFailures, "\n"))
	}
}

func apiHosts(nodes []*Node) []string {
	var hosts []string
	for _, n := range nodes {
		hosts = append(hosts, n.APIAddr)
	}
	return hosts
}
