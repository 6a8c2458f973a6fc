package harness

import (
	"archive/tar"
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"
	specs "github.com/opencontainers/image-spec/specs-go"
	v1 "github.com/opencontainers/image-spec/specs-go/v1"
)

// Layout is an OCI image layout assembled in memory and written by Write.
// Clients read it as ocidir://DIR:TAG (regctl), oci:DIR:TAG (skopeo) or
// DIR (crane push).
type Layout struct {
	blobs     map[digest.Digest]Blob
	manifests []v1.Descriptor
}

// NewLayout returns an empty layout.
func NewLayout() *Layout {
	return &Layout{blobs: map[digest.Digest]Blob{}}
}

// AddImage adds img and names it tag.
func (l *Layout) AddImage(tag string, img *Image) {
	l.addBlobs(img)
	l.addRef(tag, img.Manifest)
}

// AddIndex adds the index and its images and names the index tag.
func (l *Layout) AddIndex(tag string, index *Index) {
	for _, img := range index.Images {
		l.addBlobs(img)
	}
	l.blobs[index.Manifest.Digest] = index.Manifest
	l.addRef(tag, index.Manifest)
}

func (l *Layout) addBlobs(img *Image) {
	for _, blob := range append(img.Blobs(), img.Manifest) {
		l.blobs[blob.Digest] = blob
	}
}

func (l *Layout) addRef(tag string, manifest Blob) {
	desc := manifest.Descriptor()
	desc.Annotations = map[string]string{v1.AnnotationRefName: tag}
	l.manifests = append(l.manifests, desc)
}

// Write writes the layout into dir, which is created if needed.
func (l *Layout) Write(t testing.TB, dir string) {
	t.Helper()
	blobDir := filepath.Join(dir, v1.ImageBlobsDir, string(digest.SHA256))
	if err := os.MkdirAll(blobDir, 0o755); err != nil {
		t.Fatalf("create layout: %v", err)
	}
	for d, blob := range l.blobs {
		writeFile(t, filepath.Join(blobDir, d.Encoded()), blob.Data)
	}
	layout := v1.ImageLayout{Version: v1.ImageLayoutVersion}
	writeFile(t, filepath.Join(dir, v1.ImageLayoutFile), mustJSON(t, layout))
	index := v1.Index{
		Versioned: specs.Versioned{SchemaVersion: 2},
		MediaType: v1.MediaTypeImageIndex,
		Manifests: l.manifests,
	}
	writeFile(t, filepath.Join(dir, v1.ImageIndexFile), mustJSON(t, index))
}

// VerifyLayout checks that every blob of the OCI layout in dir matches
// its digest and returns the layout's index.json.
func VerifyLayout(t testing.TB, dir string) v1.Index {
	t.Helper()
	if _, err := os.Stat(filepath.Join(dir, v1.ImageLayoutFile)); err != nil {
		t.Fatalf("no OCI layout in %s: %v", dir, err)
	}
	data, err := os.ReadFile(filepath.Join(dir, v1.ImageIndexFile))
	if err != nil {
		t.Fatalf("read layout index: %v", err)
	}
	files, err := filepath.Glob(filepath.Join(dir, v1.ImageBlobsDir, "*", "*"))
	if err != nil {
		t.Fatalf("list layout blobs: %v", err)
	}
	for _, file := range files {
		algorithm := filepath.Base(filepath.Dir(file))
		d := digest.NewDigestFromEncoded(digest.Algorithm(algorithm), filepath.Base(file))
		content, err := os.ReadFile(file)
		if err != nil {
			t.Fatalf("read blob %s: %v", d, err)
		}
		if err := d.Validate(); err != nil {
			t.Errorf("layout blob %s: invalid name: %v", file, err)
			continue
		}
		if got := d.Algorithm().FromBytes(content); got != d {
			t.Errorf("layout blob %s has content with digest %s", d, got)
		}
	}
	return ParseIndex(t, data)
}

// LayoutBlob returns the blob d of the OCI layout in dir.
func LayoutBlob(t testing.TB, dir string, d digest.Digest) []byte {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(dir, v1.ImageBlobsDir, d.Algorithm().String(), d.Encoded()))
	if err != nil {
		t.Fatalf("blob %s missing from layout %s: %v", d, dir, err)
	}
	if got := d.Algorithm().FromBytes(data); got != d {
		t.Fatalf("layout blob %s has content with digest %s", d, got)
	}
	return data
}

// RequireLayoutLists checks that index.json of the OCI layout in dir
// lists the manifest d, and that every blob of the layout matches its
// digest.
func RequireLayoutLists(t testing.TB, dir string, d digest.Digest) {
	t.Helper()
	index := VerifyLayout(t, dir)
	for _, desc := range index.Manifests {
		if desc.Digest == d {
			return
		}
	}
	t.Errorf("layout %s does not list manifest %s; index.json lists %v",
		dir, d, manifestDigests(index))
}

// RequireImageInLayout checks that the OCI layout in dir contains img's
// manifest, config and layers, byte for byte.
func RequireImageInLayout(t testing.TB, dir string, img *Image) {
	t.Helper()
	requireBlob(t, dir, img.Manifest, "manifest")
	requireBlob(t, dir, img.Config, "config")
	for i, layer := range img.Layers {
		requireBlob(t, dir, layer.Blob, fmt.Sprintf("layer %d", i))
	}
}

func requireBlob(t testing.TB, dir string, want Blob, label string) {
	t.Helper()
	got := LayoutBlob(t, dir, want.Digest)
	if !bytes.Equal(got, want.Data) {
		t.Errorf("%s %s: pulled %d bytes that differ from the %d pushed",
			label, want.Digest, len(got), len(want.Data))
	}
}

func manifestDigests(index v1.Index) []digest.Digest {
	var out []digest.Digest
	for _, desc := range index.Manifests {
		out = append(out, desc.Digest)
	}
	return out
}

// dockerArchiveEntry is one image in a docker-archive manifest.json.
type dockerArchiveEntry struct {
	Config   string
	RepoTags []string
	Layers   []string
}

// WriteDockerArchive writes img to path as a "docker save" tarball named
// repoTag, with uncompressed layers named by their diff IDs.
func WriteDockerArchive(t testing.TB, path, repoTag string, img *Image) {
	t.Helper()
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	entry := dockerArchiveEntry{
		Config:   img.Config.Digest.Encoded() + ".json",
		RepoTags: []string{repoTag},
	}
	addTarFile(t, tw, entry.Config, img.Config.Data)
	for _, layer := range img.Layers {
		name := layer.DiffID.Encoded() + "/layer.tar"
		addTarFile(t, tw, name, layer.Tar)
		entry.Layers = append(entry.Layers, name)
	}
	addTarFile(t, tw, "manifest.json", mustJSON(t, []dockerArchiveEntry{entry}))
	if err := tw.Close(); err != nil {
		t.Fatalf("close docker archive: %v", err)
	}
	writeFile(t, path, buf.Bytes())
}

func addTarFile(t testing.TB, tw *tar.Writer, name string, data []byte) {
	t.Helper()
	header := &tar.Header{
		Typeflag: tar.TypeReg,
		Name:     name,
		Mode:     0o644,
		Size:     int64(len(data)),
		ModTime:  time.Unix(0, 0),
	}
	if err := tw.WriteHeader(header); err != nil {
		t.Fatalf("write tar header %s: %v", name, err)
	}
	if _, err := tw.Write(data); err != nil {
		t.Fatalf("write tar entry %s: %v", name, err)
	}
}

func writeFile(t testing.TB, path string, data []byte) {
	t.Helper()
	if err := os.WriteFile(path, data, 0o644); err != nil {
		t.Fatalf("write %s: %v", path, err)
	}
}

// DecodeJSON decodes data into v and fails the test on error.
func DecodeJSON(t testing.TB, data []byte, v any) {
	t.Helper()
	if err := json.Unmarshal(data, v); err != nil {
		t.Fatalf("decode %T: %v\n%s", v, err, truncate(string(data), 4<<10))
	}
}
