package harness

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	v1 "github.com/opencontainers/image-spec/specs-go/v1"
)

// TestLayoutReadByClients checks the layouts and archives that the tests
// push with regctl and skopeo reading them from disk.
func TestLayoutReadByClients(t *testing.T) {
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
	defer cancel()
	tools := NewTools(t, nil)
	amd64 := RandomImage(t, ImageOptions{Layers: 2})
	arm64 := RandomImage(t, ImageOptions{Architecture: "arm64"})
	index := NewIndex(t, amd64, arm64)
	dir := filepath.Join(t.TempDir(), "layout")
	layout := NewLayout()
	layout.AddImage("amd64", amd64)
	layout.AddIndex("multi", index)
	layout.Write(t, dir)

	got := VerifyLayout(t, dir)
	if len(got.Manifests) != 2 {
		t.Fatalf("index.json lists %d manifests, want 2", len(got.Manifests))
	}
	RequireLayoutLists(t, dir, amd64.Manifest.Digest)
	RequireLayoutLists(t, dir, index.Manifest.Digest)
	RequireImageInLayout(t, dir, amd64)
	RequireImageInLayout(t, dir, arm64)

	raw := tools.Run(ctx, "regctl", "manifest", "get", "--format", "raw-body", "ocidir://"+dir+":multi")
	if raw != string(index.Manifest.Data) {
		t.Errorf("regctl read index %q, want %q", raw, index.Manifest.Data)
	}
	digest := strings.TrimSpace(tools.Run(ctx, "regctl", "image", "digest",
		"--platform", "linux/arm64", "ocidir://"+dir+":multi"))
	if digest != arm64.Manifest.Digest.String() {
		t.Errorf("regctl resolved linux/arm64 to %s, want %s", digest, arm64.Manifest.Digest)
	}

	raw = tools.Run(ctx, "skopeo", "inspect", "--raw", "oci:"+dir+":amd64")
	if raw != string(amd64.Manifest.Data) {
		t.Errorf("skopeo read manifest %q, want %q", raw, amd64.Manifest.Data)
	}

	archive := filepath.Join(t.TempDir(), "image.tar")
	WriteDockerArchive(t, archive, "flotilla/test:latest", amd64)
	out := tools.Run(ctx, "skopeo", "inspect", "--config", "docker-archive:"+archive)
	var config v1.Image
	if err := json.Unmarshal([]byte(out), &config); err != nil {
		t.Fatalf("decode config from skopeo: %v\n%s", err, out)
	}
	if len(config.RootFS.DiffIDs) != 2 || config.RootFS.DiffIDs[1] != amd64.Layers[1].DiffID {
		t.Errorf("docker archive config lists diff IDs %v, want %s and %s",
			config.RootFS.DiffIDs, amd64.Layers[0].DiffID, amd64.Layers[1].DiffID)
	}
	copied := filepath.Join(t.TempDir(), "copied")
	tools.Run(ctx, "skopeo", "copy", "docker-archive:"+archive, "oci:"+copied+":latest")
	copiedIndex := VerifyLayout(t, copied)
	if len(copiedIndex.Manifests) != 1 {
		t.Fatalf("skopeo wrote %d manifests, want 1", len(copiedIndex.Manifests))
	}
}

func TestRandomImagesDiffer(t *testing.T) {
	a := RandomImage(t, ImageOptions{})
	b := RandomImage(t, ImageOptions{})
	if a.Manifest.Digest == b.Manifest.Digest {
		t.Fatalf("two random images have the same digest %s", a.Manifest.Digest)
	}
	if UncompressedDigest(t, a.Layers[0].Data) != a.Layers[0].DiffID {
		t.Errorf("layer diff ID %s does not match its gunzipped content", a.Layers[0].DiffID)
	}
}

func TestReadStatusKiB(t *testing.T) {
	hwm, err := readStatusKiB(os.Getpid(), "VmHWM")
	if err != nil {
		t.Fatal(err)
	}
	if hwm <= 0 {
		t.Errorf("VmHWM of the test process is %d bytes, want > 0", hwm)
	}
}
