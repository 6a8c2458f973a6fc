package harness

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"crypto/rand"
	"encoding/json"
	"fmt"
	"io"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"
	specs "github.com/opencontainers/image-spec/specs-go"
	v1 "github.com/opencontainers/image-spec/specs-go/v1"
)

// Blob is content with its media type and sha256 digest.
type Blob struct {
	MediaType string
	Data      []byte
	Digest    digest.Digest
}

// NewBlob wraps data and computes its digest.
func NewBlob(mediaType string, data []byte) Blob {
	return Blob{MediaType: mediaType, Data: data, Digest: digest.FromBytes(data)}
}

// Descriptor returns the OCI descriptor of b.
func (b Blob) Descriptor() v1.Descriptor {
	return v1.Descriptor{MediaType: b.MediaType, Digest: b.Digest, Size: int64(len(b.Data))}
}

// Layer is a gzip-compressed tar layer that contains one file.
type Layer struct {
	// Blob is the compressed layer, as pushed.
	Blob
	// Tar is the uncompressed tar, and DiffID its digest.
	Tar    []byte
	DiffID digest.Digest
	// FileName and FileData are the file inside the tar.
	FileName string
	FileData []byte
}

// Image is a single-platform OCI image.
type Image struct {
	Platform v1.Platform
	Config   Blob
	Layers   []Layer
	Manifest Blob
}

// ImageOptions configures RandomImage.
type ImageOptions struct {
	// OS and Architecture default to linux and amd64.
	OS           string
	Architecture string
	// Layers is the number of layers, 1 when zero.
	Layers int
	// LayerSize is the size of the random file in each layer, 4 KiB
	// when zero.
	LayerSize int
}

// RandomImage returns an OCI image whose layers contain random files, so
// its digests differ from those of every other image.
func RandomImage(t testing.TB, opts ImageOptions) *Image {
	t.Helper()
	img := &Image{Platform: v1.Platform{
		OS:           orDefault(opts.OS, "linux"),
		Architecture: orDefault(opts.Architecture, "amd64"),
	}}
	config := v1.Image{
		Platform: img.Platform,
		Config:   v1.ImageConfig{Cmd: []string{"/flotilla-test"}},
		RootFS:   v1.RootFS{Type: "layers"},
	}
	for range orDefault(opts.Layers, 1) {
		layer := RandomLayer(t, orDefault(opts.LayerSize, 4<<10))
		img.Layers = append(img.Layers, layer)
		config.RootFS.DiffIDs = append(config.RootFS.DiffIDs, layer.DiffID)
	}
	img.Config = NewBlob(v1.MediaTypeImageConfig, mustJSON(t, config))
	manifest := v1.Manifest{
		Versioned: specs.Versioned{SchemaVersion: 2},
		MediaType: v1.MediaTypeImageManifest,
		Config:    img.Config.Descriptor(),
		Layers:    []v1.Descriptor{},
	}
	for _, layer := range img.Layers {
		manifest.Layers = append(manifest.Layers, layer.Descriptor())
	}
	img.Manifest = NewBlob(v1.MediaTypeImageManifest, mustJSON(t, manifest))
	return img
}

// Blobs returns the config and layers of img, without the manifest.
func (img *Image) Blobs() []Blob {
	blobs := []Blob{img.Config}
	for _, layer := range img.Layers {
		blobs = append(blobs, layer.Blob)
	}
	return blobs
}

// RandomLayer returns a layer with one file of size random bytes.
func RandomLayer(t testing.TB, size int) Layer {
	t.Helper()
	layer := Layer{
		FileName: "flotilla-test/" + RandomHex(t, 8) + ".bin",
		FileData: RandomBytes(t, size),
	}
	var tarBuf bytes.Buffer
	tw := tar.NewWriter(&tarBuf)
	header := &tar.Header{
		Typeflag: tar.TypeReg,
		Name:     layer.FileName,
		Mode:     0o644,
		Size:     int64(size),
		ModTime:  time.Unix(0, 0),
	}
	if err := tw.WriteHeader(header); err != nil {
		t.Fatalf("write tar header: %v", err)
	}
	if _, err := tw.Write(layer.FileData); err != nil {
		t.Fatalf("write tar: %v", err)
	}
	if err := tw.Close(); err != nil {
		t.Fatalf("close tar: %v", err)
	}
	layer.Tar = tarBuf.Bytes()
	layer.DiffID = digest.FromBytes(layer.Tar)

	var gzBuf bytes.Buffer
	zw := gzip.NewWriter(&gzBuf)
	if _, err := zw.Write(layer.Tar); err != nil {
		t.Fatalf("gzip layer: %v", err)
	}
	if err := zw.Close(); err != nil {
		t.Fatalf("gzip layer: %v", err)
	}
	layer.Blob = NewBlob(v1.MediaTypeImageLayerGzip, gzBuf.Bytes())
	return layer
}

// RandomBytes returns n bytes from crypto/rand.
func RandomBytes(t testing.TB, n int) []byte {
	t.Helper()
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		t.Fatalf("read random bytes: %v", err)
	}
	return b
}

// Index is an OCI image index of single-platform images.
type Index struct {
	Images   []*Image
	Manifest Blob
}

// NewIndex returns an index that lists images with their platforms.
func NewIndex(t testing.TB, images ...*Image) *Index {
	t.Helper()
	index := v1.Index{
		Versioned: specs.Versioned{SchemaVersion: 2},
		MediaType: v1.MediaTypeImageIndex,
	}
	for _, img := range images {
		desc := img.Manifest.Descriptor()
		platform := img.Platform
		desc.Platform = &platform
		index.Manifests = append(index.Manifests, desc)
	}
	return &Index{
		Images:   images,
		Manifest: NewBlob(v1.MediaTypeImageIndex, mustJSON(t, index)),
	}
}

// UncompressedDigest returns the digest of the gunzipped data, the diff ID
// of a gzip layer.
func UncompressedDigest(t testing.TB, data []byte) digest.Digest {
	t.Helper()
	zr, err := gzip.NewReader(bytes.NewReader(data))
	if err != nil {
		t.Fatalf("open gzip layer: %v", err)
	}
	digester := digest.Canonical.Digester()
	if _, err := io.Copy(digester.Hash(), zr); err != nil {
		t.Fatalf("gunzip layer: %v", err)
	}
	return digester.Digest()
}

// ParseManifest decodes an OCI or Docker image manifest.
func ParseManifest(t testing.TB, data []byte) v1.Manifest {
	t.Helper()
	var m v1.Manifest
	if err := json.Unmarshal(data, &m); err != nil {
		t.Fatalf("decode manifest: %v\n%s", err, truncate(string(data), 4<<10))
	}
	return m
}

// ParseIndex decodes an OCI image index or Docker manifest list.
func ParseIndex(t testing.TB, data []byte) v1.Index {
	t.Helper()
	var index v1.Index
	if err := json.Unmarshal(data, &index); err != nil {
		t.Fatalf("decode index: %v\n%s", err, truncate(string(data), 4<<10))
	}
	return index
}

func mustJSON(t testing.TB, v any) []byte {
	t.Helper()
	data, err := json.Marshal(v)
	if err != nil {
		t.Fatalf("encode %T: %v", v, err)
	}
	return data
}

// String returns a short description for failure messages.
func (img *Image) String() string {
	return fmt.Sprintf("image %s (%s/%s, %d layers)",
		img.Manifest.Digest, img.Platform.OS, img.Platform.Architecture, len(img.Layers))
}
