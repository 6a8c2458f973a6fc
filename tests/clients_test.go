package tests

import (
	"context"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"
	v1 "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/flotilla-registry/flotilla/tests/harness"
)

// clientTestTimeout bounds each client round trip.
const clientTestTimeout = 5 * time.Minute

// startClientNode starts a node with TLS, authentication and S3 storage,
// and the tools to reach it.
func startClientNode(t *testing.T) (*harness.Node, *harness.Tools, context.Context) {
	t.Helper()
	node := harness.StartNode(t, harness.NodeOptions{})
	ctx, cancel := context.WithTimeout(t.Context(), clientTestTimeout)
	t.Cleanup(cancel)
	return node, harness.NewTools(t, node), ctx
}

// TestCraneRoundTrip pushes an OCI layout and a crane-built image, pulls,
// copies, tags, lists and deletes them with crane.
func TestCraneRoundTrip(t *testing.T) {
	node, tools, ctx := startClientNode(t)
	repo := node.Host + "/clients/crane"
	copyRepo := node.Host + "/clients/crane-copy"
	tools.Run(ctx, "crane", "auth", "login", node.Host, "-u", node.Username, "-p", node.Password)

	img := harness.RandomImage(t, harness.ImageOptions{Layers: 2, LayerSize: 256 << 10})
	layoutDir := filepath.Join(t.TempDir(), "layout")
	layout := harness.NewLayout()
	layout.AddImage("v1", img)
	layout.Write(t, layoutDir)

	pushed := strings.TrimSpace(tools.Run(ctx, "crane", "push", layoutDir, repo+":v1"))
	if want := repo + "@" + img.Manifest.Digest.String(); pushed != want {
		t.Errorf("crane push printed %q, want %q", pushed, want)
	}
	requireDigest(t, tools.Run(ctx, "crane", "digest", repo+":v1"), img.Manifest.Digest)
	if got := tools.Run(ctx, "crane", "manifest", repo+":v1"); got != string(img.Manifest.Data) {
		t.Errorf("crane manifest returned %q, want the pushed %q", got, img.Manifest.Data)
	}
	for i, layer := range img.Layers {
		got := tools.Run(ctx, "crane", "blob", repo+"@"+layer.Digest.String())
		if got != string(layer.Data) {
			t.Errorf("crane blob of layer %d (%s): %d bytes that differ from the %d pushed",
				i, layer.Digest, len(got), len(layer.Data))
		}
	}
	pulled := filepath.Join(t.TempDir(), "pulled")
	tools.Run(ctx, "crane", "pull", "--format", "oci", repo+":v1", pulled)
	harness.RequireLayoutLists(t, pulled, img.Manifest.Digest)
	harness.RequireImageInLayout(t, pulled, img)

	// crane append builds the image itself and compresses the layer.
	layer := harness.RandomLayer(t, 128<<10)
	tarFile := filepath.Join(t.TempDir(), "layer.tar")
	writeTestFile(t, tarFile, layer.Tar)
	tools.Run(ctx, "crane", "append", "--oci-empty-base", "-f", tarFile, "-t", repo+":appended")
	appended := parseDigest(t, tools.Run(ctx, "crane", "digest", repo+":appended"))
	var config v1.Image
	harness.DecodeJSON(t, []byte(tools.Run(ctx, "crane", "config", repo+":appended")), &config)
	if !slices.Equal(config.RootFS.DiffIDs, []digest.Digest{layer.DiffID}) {
		t.Errorf("appended image has diff IDs %v, want [%s]", config.RootFS.DiffIDs, layer.DiffID)
	}
	manifest := harness.ParseManifest(t, []byte(tools.Run(ctx, "crane", "manifest", repo+"@"+appended.String())))
	if len(manifest.Layers) != 1 {
		t.Fatalf("appended manifest has %d layers, want 1", len(manifest.Layers))
	}
	compressed := tools.Run(ctx, "crane", "blob", repo+"@"+manifest.Layers[0].Digest.String())
	requireDigest(t, string(digest.FromString(compressed)), manifest.Layers[0].Digest)
	if got := harness.UncompressedDigest(t, []byte(compressed)); got != layer.DiffID {
		t.Errorf("appended layer unpacks to %s, want %s", got, layer.DiffID)
	}

	// crane copy between repositories of the same node mounts the blobs.
	tools.Run(ctx, "crane", "copy", repo+":v1", copyRepo+":v1")
	requireDigest(t, tools.Run(ctx, "crane", "digest", copyRepo+":v1"), img.Manifest.Digest)

	tools.Run(ctx, "crane", "tag", repo+":v1", "v1-alias")
	requireTags(t, tools.Run(ctx, "crane", "ls", repo), "appended", "v1", "v1-alias")

	// Deleting by digest removes the manifest and the tag that named it.
	tools.Run(ctx, "crane", "delete", repo+"@"+appended.String())
	requireManifestUnknown(t, tools.Try(ctx, "crane", "manifest", repo+"@"+appended.String()))
	requireManifestUnknown(t, tools.Try(ctx, "crane", "manifest", repo+":appended"))
	requireTags(t, tools.Run(ctx, "crane", "ls", repo), "v1", "v1-alias")

	// Deleting by tag removes only the tag.
	tools.Run(ctx, "crane", "delete", repo+":v1-alias")
	requireTags(t, tools.Run(ctx, "crane", "ls", repo), "v1")
	requireDigest(t, tools.Run(ctx, "crane", "digest", repo+":v1"), img.Manifest.Digest)
	requireDigest(t, tools.Run(ctx, "crane", "digest", copyRepo+":v1"), img.Manifest.Digest)
}

// orasDescriptor is a descriptor in the JSON that oras prints.
type orasDescriptor struct {
	MediaType    string        `json:"mediaType"`
	Digest       digest.Digest `json:"digest"`
	Size         int64         `json:"size"`
	ArtifactType string        `json:"artifactType"`
}

// TestOrasArtifactAndReferrer pushes an artifact with a custom type,
// attaches a referrer, discovers, pulls and deletes them with oras.
func TestOrasArtifactAndReferrer(t *testing.T) {
	node, tools, ctx := startClientNode(t)
	repo := node.Host + "/clients/oras"
	const (
		artifactType  = "application/vnd.flotilla.test.artifact.v1"
		payloadType   = "application/vnd.flotilla.test.payload.v1"
		signatureType = "application/vnd.flotilla.test.signature.v1"
	)
	// oras reads and writes files relative to its working folder, the
	// tools' HOME.
	payload := harness.RandomBytes(t, 300<<10)
	signature := []byte("signed by flotilla tests " + harness.RandomHex(t, 8) + "\n")
	writeTestFile(t, filepath.Join(tools.Home, "payload.bin"), payload)
	writeTestFile(t, filepath.Join(tools.Home, "signature.txt"), signature)
	remote := []string{"--ca-file", node.CAFile, "-u", node.Username, "-p", node.Password}
	referrersAPI := []string{"--distribution-spec", "v1.1-referrers-api"}

	tools.Run(ctx, "oras", cmd("push", remote, "--artifact-type", artifactType,
		"--export-manifest", "artifact.json", repo+":v1", "payload.bin:"+payloadType)...)
	artifactJSON := readTestFile(t, filepath.Join(tools.Home, "artifact.json"))
	artifact := harness.ParseManifest(t, artifactJSON)
	artifactDigest := digest.FromBytes(artifactJSON)
	if artifact.ArtifactType != artifactType {
		t.Errorf("pushed manifest has artifactType %q, want %q", artifact.ArtifactType, artifactType)
	}
	if len(artifact.Layers) != 1 || artifact.Layers[0].Digest != digest.FromBytes(payload) {
		t.Fatalf("pushed manifest layers %+v, want one with digest %s", artifact.Layers, digest.FromBytes(payload))
	}
	var fetched orasDescriptor
	harness.DecodeJSON(t, []byte(tools.Run(ctx, "oras", cmd("manifest fetch", remote,
		"--descriptor", repo+":v1")...)), &fetched)
	if fetched.Digest != artifactDigest || fetched.MediaType != v1.MediaTypeImageManifest {
		t.Errorf("oras manifest fetch: %s of type %q, want %s of type %q",
			fetched.Digest, fetched.MediaType, artifactDigest, v1.MediaTypeImageManifest)
	}
	if got := tools.Run(ctx, "oras", cmd("manifest fetch", remote, repo+":v1")...); got != string(artifactJSON) {
		t.Errorf("oras manifest fetch returned %q, want the pushed %q", got, artifactJSON)
	}

	tools.Run(ctx, "oras", cmd("attach", join(remote, referrersAPI...), "--artifact-type", signatureType,
		"--export-manifest", "referrer.json", repo+":v1", "signature.txt:text/plain")...)
	referrerDigest := digest.FromBytes(readTestFile(t, filepath.Join(tools.Home, "referrer.json")))
	referrers := orasDiscover(ctx, t, tools, join(remote, referrersAPI...), repo+":v1")
	if len(referrers) != 1 {
		t.Fatalf("oras discover found %d referrers, want 1: %+v", len(referrers), referrers)
	}
	if referrers[0].Digest != referrerDigest || referrers[0].ArtifactType != signatureType {
		t.Errorf("referrer %s of type %q, want %s of type %q", referrers[0].Digest,
			referrers[0].ArtifactType, referrerDigest, signatureType)
	}

	tools.Run(ctx, "oras", cmd("pull", remote, "-o", "pulled", repo+":v1")...)
	requireFileContent(t, filepath.Join(tools.Home, "pulled", "payload.bin"), payload)
	tools.Run(ctx, "oras", cmd("pull", remote, "-o", "pulled-referrer", repo+"@"+referrerDigest.String())...)
	requireFileContent(t, filepath.Join(tools.Home, "pulled-referrer", "signature.txt"), signature)

	// --force only skips the confirmation prompt here; the fetches below
	// check that each manifest is gone.
	tools.Run(ctx, "oras", cmd("manifest delete", remote, "--force", repo+"@"+referrerDigest.String())...)
	requireManifestUnknown(t, tools.Try(ctx, "oras", cmd("manifest fetch", remote,
		repo+"@"+referrerDigest.String())...))
	if referrers := orasDiscover(ctx, t, tools, join(remote, referrersAPI...), repo+":v1"); len(referrers) != 0 {
		t.Errorf("oras discover after delete found %+v, want no referrers", referrers)
	}
	tools.Run(ctx, "oras", cmd("manifest delete", remote, "--force", repo+":v1")...)
	requireManifestUnknown(t, tools.Try(ctx, "oras", cmd("manifest fetch", remote,
		repo+"@"+artifactDigest.String())...))
}

// orasDiscover returns the referrers that oras discover lists for ref.
// oras 1.2 and later print them as "referrers", older versions as
// "manifests".
func orasDiscover(ctx context.Context, t *testing.T, tools *harness.Tools, flags []string, ref string) []orasDescriptor {
	t.Helper()
	var out struct {
		Referrers []orasDescriptor `json:"referrers"`
		Manifests []orasDescriptor `json:"manifests"`
	}
	harness.DecodeJSON(t, []byte(tools.Run(ctx, "oras", cmd("discover", flags, "--format", "json", ref)...)), &out)
	return append(out.Referrers, out.Manifests...)
}

// TestRegctlIndexRoundTrip copies two single-platform images with regctl,
// builds an index of both, inspects each platform, copies the index to
// another repository and back to disk, and lists and deletes tags.
func TestRegctlIndexRoundTrip(t *testing.T) {
	node, tools, ctx := startClientNode(t)
	repo := node.Host + "/clients/regctl"
	copyRepo := node.Host + "/clients/regctl-copy"
	ca := string(readTestFile(t, node.CAFile))
	// --skip-check: the check would ping the node before the login below.
	tools.Run(ctx, "regctl", "registry", "set", node.Host, "--tls", "enabled", "--cacert", ca, "--skip-check")
	tools.Run(ctx, "regctl", "registry", "login", node.Host, "-u", node.Username, "-p", node.Password)

	amd64 := harness.RandomImage(t, harness.ImageOptions{Architecture: "amd64", Layers: 2})
	arm64 := harness.RandomImage(t, harness.ImageOptions{Architecture: "arm64", Layers: 2})
	layoutDir := filepath.Join(t.TempDir(), "layout")
	layout := harness.NewLayout()
	layout.AddImage("amd64", amd64)
	layout.AddImage("arm64", arm64)
	layout.Write(t, layoutDir)
	for _, img := range []*harness.Image{amd64, arm64} {
		tag := img.Platform.Architecture
		tools.Run(ctx, "regctl", "image", "copy", "ocidir://"+layoutDir+":"+tag, repo+":"+tag)
		requireDigest(t, tools.Run(ctx, "regctl", "image", "digest", repo+":"+tag), img.Manifest.Digest)
	}

	tools.Run(ctx, "regctl", "index", "create", repo+":multi", "--ref", repo+":amd64")
	tools.Run(ctx, "regctl", "index", "add", repo+":multi", "--ref", repo+":arm64")
	indexJSON := tools.Run(ctx, "regctl", "manifest", "get", "--format", "raw-body", repo+":multi")
	indexDigest := digest.FromString(indexJSON)
	requireDigest(t, tools.Run(ctx, "regctl", "image", "digest", repo+":multi"), indexDigest)
	index := harness.ParseIndex(t, []byte(indexJSON))
	if len(index.Manifests) != 2 {
		t.Fatalf("index lists %d manifests, want 2:\n%s", len(index.Manifests), indexJSON)
	}
	for _, img := range []*harness.Image{amd64, arm64} {
		platform := "linux/" + img.Platform.Architecture
		requireDigest(t, tools.Run(ctx, "regctl", "image", "digest", "--platform", platform, repo+":multi"),
			img.Manifest.Digest)
		var config v1.Image
		harness.DecodeJSON(t, []byte(tools.Run(ctx, "regctl", "image", "inspect",
			"--platform", platform, repo+":multi")), &config)
		if config.Architecture != img.Platform.Architecture {
			t.Errorf("%s config has architecture %q", platform, config.Architecture)
		}
		if !slices.Equal(config.RootFS.DiffIDs, []digest.Digest{img.Layers[0].DiffID, img.Layers[1].DiffID}) {
			t.Errorf("%s config has diff IDs %v, want those of the pushed layers", platform, config.RootFS.DiffIDs)
		}
	}

	tools.Run(ctx, "regctl", "image", "copy", repo+":multi", copyRepo+":multi")
	requireDigest(t, tools.Run(ctx, "regctl", "image", "digest", copyRepo+":multi"), indexDigest)
	pulled := filepath.Join(t.TempDir(), "pulled")
	tools.Run(ctx, "regctl", "image", "copy", copyRepo+":multi", "ocidir://"+pulled+":multi")
	harness.RequireLayoutLists(t, pulled, indexDigest)
	harness.RequireImageInLayout(t, pulled, amd64)
	harness.RequireImageInLayout(t, pulled, arm64)

	requireTags(t, tools.Run(ctx, "regctl", "tag", "ls", repo), "amd64", "arm64", "multi")
	tools.Run(ctx, "regctl", "tag", "delete", repo+":amd64")
	requireTags(t, tools.Run(ctx, "regctl", "tag", "ls", repo), "arm64", "multi")
	// The index still holds the amd64 manifest that the deleted tag named.
	requireDigest(t, tools.Run(ctx, "regctl", "image", "digest", "--platform", "linux/amd64", repo+":multi"),
		amd64.Manifest.Digest)
	tools.Run(ctx, "regctl", "manifest", "head", repo+"@"+amd64.Manifest.Digest.String())
}

// TestSkopeoRoundTrip copies a docker-archive tarball and an OCI layout to
// the node with skopeo, copies them back, inspects and deletes them.
func TestSkopeoRoundTrip(t *testing.T) {
	node, tools, ctx := startClientNode(t)
	repo := "docker://" + node.Host + "/clients/skopeo"
	creds := node.Username + ":" + node.Password
	src := []string{"--src-cert-dir", node.CertDir, "--src-creds", creds}
	dest := []string{"--dest-cert-dir", node.CertDir, "--dest-creds", creds}
	remote := []string{"--cert-dir", node.CertDir, "--creds", creds}

	// A docker-archive has uncompressed layers, which skopeo compresses
	// on the way to the registry: the config and diff IDs stay the same.
	img := harness.RandomImage(t, harness.ImageOptions{Layers: 2, LayerSize: 128 << 10})
	archive := filepath.Join(t.TempDir(), "image.tar")
	harness.WriteDockerArchive(t, archive, "flotilla/skopeo:v1", img)
	tools.Run(ctx, "skopeo", cmd("copy", dest, "docker-archive:"+archive, repo+":archive")...)
	var inspected struct {
		Digest digest.Digest
		Layers []digest.Digest
	}
	harness.DecodeJSON(t, []byte(tools.Run(ctx, "skopeo", cmd("inspect", remote, repo+":archive")...)), &inspected)
	if len(inspected.Layers) != len(img.Layers) {
		t.Errorf("skopeo inspect lists %d layers, want %d", len(inspected.Layers), len(img.Layers))
	}
	if got := tools.Run(ctx, "skopeo", cmd("inspect", remote, "--raw", "--config", repo+":archive")...); got != string(img.Config.Data) {
		t.Errorf("config read back %q, want %q", got, img.Config.Data)
	}
	pulled := filepath.Join(t.TempDir(), "pulled")
	tools.Run(ctx, "skopeo", cmd("copy", src, repo+":archive", "oci:"+pulled+":archive")...)
	index := harness.VerifyLayout(t, pulled)
	if len(index.Manifests) != 1 {
		t.Fatalf("pulled layout lists %d manifests, want 1", len(index.Manifests))
	}
	manifest := harness.ParseManifest(t, harness.LayoutBlob(t, pulled, index.Manifests[0].Digest))
	if manifest.Config.Digest != img.Config.Digest {
		t.Errorf("pulled config %s, want %s", manifest.Config.Digest, img.Config.Digest)
	}
	if len(manifest.Layers) != len(img.Layers) {
		t.Fatalf("pulled manifest has %d layers, want %d", len(manifest.Layers), len(img.Layers))
	}
	for i, layer := range manifest.Layers {
		diffID := harness.UncompressedDigest(t, harness.LayoutBlob(t, pulled, layer.Digest))
		if diffID != img.Layers[i].DiffID {
			t.Errorf("pulled layer %d unpacks to %s, want %s", i, diffID, img.Layers[i].DiffID)
		}
	}

	// An OCI layout already has compressed layers, so the digests stay.
	ociImage := harness.RandomImage(t, harness.ImageOptions{Layers: 2})
	layoutDir := filepath.Join(t.TempDir(), "layout")
	layout := harness.NewLayout()
	layout.AddImage("v1", ociImage)
	layout.Write(t, layoutDir)
	tools.Run(ctx, "skopeo", cmd("copy", dest, "--preserve-digests", "oci:"+layoutDir+":v1", repo+":oci")...)
	if got := tools.Run(ctx, "skopeo", cmd("inspect", remote, "--raw", repo+":oci")...); got != string(ociImage.Manifest.Data) {
		t.Errorf("manifest read back %q, want %q", got, ociImage.Manifest.Data)
	}
	pulledOCI := filepath.Join(t.TempDir(), "pulled-oci")
	tools.Run(ctx, "skopeo", cmd("copy", src, "--preserve-digests", repo+":oci", "oci:"+pulledOCI+":v1")...)
	harness.RequireLayoutLists(t, pulledOCI, ociImage.Manifest.Digest)
	harness.RequireImageInLayout(t, pulledOCI, ociImage)

	tools.Run(ctx, "skopeo", cmd("delete", remote, repo+":archive")...)
	requireManifestUnknown(t, tools.Try(ctx, "skopeo", cmd("inspect", remote, "--raw",
		repo+"@"+inspected.Digest.String())...))
	if got := tools.Run(ctx, "skopeo", cmd("inspect", remote, "--raw", repo+":oci")...); got != string(ociImage.Manifest.Data) {
		t.Errorf("after deleting another image, manifest read back %q, want %q", got, ociImage.Manifest.Data)
	}
}

// requireDigest checks that output, trimmed, is the digest want.
func requireDigest(t *testing.T, output string, want digest.Digest) {
	t.Helper()
	if got := strings.TrimSpace(output); got != want.String() {
		t.Errorf("digest %q, want %s", got, want)
	}
}

func parseDigest(t *testing.T, output string) digest.Digest {
	t.Helper()
	d, err := digest.Parse(strings.TrimSpace(output))
	if err != nil {
		t.Fatalf("parse digest %q: %v", output, err)
	}
	return d
}

// requireTags checks that output lists exactly the tags want, one per
// line, in any order.
func requireTags(t *testing.T, output string, want ...string) {
	t.Helper()
	got := strings.Fields(output)
	slices.Sort(got)
	slices.Sort(want)
	if !slices.Equal(got, want) {
		t.Errorf("tags %q, want %q", got, want)
	}
}

// requireManifestUnknown checks that a client failed to get a manifest
// because the registry reported that it does not exist.
func requireManifestUnknown(t *testing.T, res harness.ToolResult) {
	t.Helper()
	if res.Err == nil {
		t.Errorf("fetch of a deleted manifest succeeded:\n%s", res.Stdout)
		return
	}
	text := strings.ToLower(res.Stderr + res.Stdout)
	if !strings.Contains(text, "manifest_unknown") && !strings.Contains(text, "manifest unknown") &&
		!strings.Contains(text, "not found") {
		t.Errorf("fetch of a deleted manifest failed for another reason than a missing manifest:\n%s", res.Stderr)
	}
}

func requireFileContent(t *testing.T, path string, want []byte) {
	t.Helper()
	got := readTestFile(t, path)
	if digest.FromBytes(got) != digest.FromBytes(want) {
		t.Errorf("%s: %d bytes with digest %s, want %d bytes with digest %s",
			path, len(got), digest.FromBytes(got), len(want), digest.FromBytes(want))
	}
}

func writeTestFile(t *testing.T, path string, data []byte) {
	t.Helper()
	if err := os.WriteFile(path, data, 0o644); err != nil {
		t.Fatalf("write %s: %v", path, err)
	}
}

func readTestFile(t *testing.T, path string) []byte {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("read %s: %v", path, err)
	}
	return data
}

// cmd returns the words of subcommand (such as "manifest fetch") followed
// by flags and then args, the order in which subcommand flags are read.
func cmd(subcommand string, flags []string, args ...string) []string {
	return join(join(strings.Fields(subcommand), flags...), args...)
}

// join returns a new slice of base followed by more.
func join(base []string, more ...string) []string {
	return append(slices.Clone(base), more...)
}
