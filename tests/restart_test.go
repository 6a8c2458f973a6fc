package tests

import (
	"context"
	"fmt"
	"path/filepath"
	"testing"
	"time"

	"github.com/flotilla-registry/flotilla/tests/harness"
)

// TestRestartKeepsImages pushes images, stops the node with SIGTERM and
// starts it again on the same data, then pushes one more and kills the
// node with SIGKILL right after the push was acknowledged. After each
// restart every image must still pull byte for byte.
func TestRestartKeepsImages(t *testing.T) {
	for _, storage := range []harness.Storage{harness.StorageS3, harness.StorageFilesystem} {
		t.Run(storage.String(), func(t *testing.T) {
			testRestartKeepsImages(t, storage)
		})
	}
}

func testRestartKeepsImages(t *testing.T, storage harness.Storage) {
	ctx, cancel := context.WithTimeout(t.Context(), 5*time.Minute)
	defer cancel()
	node := harness.StartNode(t, harness.NodeOptions{Storage: storage})
	tools := harness.NewTools(t, node)
	tools.Run(ctx, "crane", "auth", "login", node.Host, "-u", node.Username, "-p", node.Password)

	pushed := map[string]*harness.Image{}
	push := func(repo string) {
		t.Helper()
		img := harness.RandomImage(t, harness.ImageOptions{Layers: 2, LayerSize: 64 << 10})
		layoutDir := filepath.Join(t.TempDir(), "layout")
		layout := harness.NewLayout()
		layout.AddImage("v1", img)
		layout.Write(t, layoutDir)
		tools.Run(ctx, "crane", "push", layoutDir, node.Host+"/"+repo+":v1")
		pushed[repo] = img
	}
	for i := range 3 {
		push(fmt.Sprintf("restart/image-%d", i))
	}
	// A copy mounts the blobs into another repository.
	tools.Run(ctx, "crane", "copy", node.Host+"/restart/image-0:v1", node.Host+"/restart/copy:v1")
	pushed["restart/copy"] = pushed["restart/image-0"]
	requirePulled(ctx, t, tools, node, pushed)

	if err := node.Stop(); err != nil {
		t.Errorf("stop with SIGTERM: %v", err)
	}
	node.Restart()
	t.Run("after SIGTERM", func(t *testing.T) {
		requirePulled(ctx, t, tools, node, pushed)
	})

	push("restart/acknowledged")
	node.Kill()
	node.Restart()
	t.Run("after SIGKILL", func(t *testing.T) {
		requirePulled(ctx, t, tools, node, pushed)
	})
}

// requirePulled checks that every image pushed as repo:v1 resolves to its
// digest, is the only tag of its repository, and pulls unchanged.
func requirePulled(ctx context.Context, t *testing.T, tools *harness.Tools, node *harness.Node,
	pushed map[string]*harness.Image) {
	t.Helper()
	tools = tools.For(t)
	for repo, img := range pushed {
		ref := node.Host + "/" + repo
		requireDigest(t, tools.Run(ctx, "crane", "digest", ref+":v1"), img.Manifest.Digest)
		requireTags(t, tools.Run(ctx, "crane", "ls", ref), "v1")
		pulled := filepath.Join(t.TempDir(), "pulled")
		tools.Run(ctx, "crane", "pull", "--format", "oci", ref+":v1", pulled)
		harness.RequireLayoutLists(t, pulled, img.Manifest.Digest)
		harness.RequireImageInLayout(t, pulled, img)
	}
}
