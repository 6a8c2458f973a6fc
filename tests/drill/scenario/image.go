package scenario

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"math/rand/v2"

	"github.com/opencontainers/go-digest"
	"github.com/opencontainers/image-spec/specs-go"
	v1 "github.com/opencontainers/image-spec/specs-go/v1"
)

// Layer sizes of the drill images. Small layers keep the push rate high.
// Every largeEvery-th image also carries a layer bigger than S3's 5 MiB
// minimum part size. It is pushed in two PATCH requests, so the upload
// session continues on whichever node the second request reaches.
const (
	minLayerBytes   = 1 << 10
	maxLayerBytes   = 64 << 10
	largeLayerBytes = 6 << 20
	largeEvery      = 10
)

// layer is one generated layer: its content is the seeded random stream,
// so the verification can regenerate it byte for byte instead of keeping
// it in memory.
type layer struct {
	Seed   uint64
	Size   int
	Digest digest.Digest
	Chunks int
}

// Image is one pushed image and everything needed to check it later.
type Image struct {
	Repo, Tag      string
	Manifest       []byte
	ManifestDigest digest.Digest
	Config         []byte
	ConfigDigest   digest.Digest
	Layers         []layer
}

// layerBytes regenerates a layer's content from its seed.
func layerBytes(seed uint64, size int) []byte {
	var key [32]byte
	binary.LittleEndian.PutUint64(key[:], seed)
	b := make([]byte, size)
	_, _ = rand.NewChaCha8(key).Read(b)
	return b
}

// newImage describes the n-th image of a worker: one or two small layers,
// plus a large one for every largeEvery-th image.
func newImage(rng *rand.Rand, repo, tag string, n int) *Image {
	img := &Image{Repo: repo, Tag: tag}
	count := 1 + rng.IntN(2)
	for range count {
		size := minLayerBytes + rng.IntN(maxLayerBytes-minLayerBytes)
		img.Layers = append(img.Layers, layer{Seed: rng.Uint64(), Size: size, Chunks: 1})
	}
	if n%largeEvery == largeEvery-1 {
		img.Layers = append(img.Layers, layer{Seed: rng.Uint64(), Size: largeLayerBytes, Chunks: 2})
	}
	for i := range img.Layers {
		l := &img.Layers[i]
		l.Digest = digest.FromBytes(layerBytes(l.Seed, l.Size))
	}
	return img
}

// build writes the config and manifest of img.
func (img *Image) build() error {
	config := v1.Image{
		Platform: v1.Platform{Architecture: "amd64", OS: "linux"},
		Config:   v1.ImageConfig{Labels: map[string]string{"drill.tag": img.Tag}},
		RootFS:   v1.RootFS{Type: "layers"},
	}
	for _, l := range img.Layers {
		config.RootFS.DiffIDs = append(config.RootFS.DiffIDs, l.Digest)
	}
	var err error
	if img.Config, err = json.Marshal(config); err != nil {
		return err
	}
	img.ConfigDigest = digest.FromBytes(img.Config)
	m := v1.Manifest{
		Versioned: specs.Versioned{SchemaVersion: 2},
		MediaType: v1.MediaTypeImageManifest,
		Config: v1.Descriptor{
			MediaType: v1.MediaTypeImageConfig, Digest: img.ConfigDigest, Size: int64(len(img.Config)),
		},
	}
	for _, l := range img.Layers {
		m.Layers = append(m.Layers, v1.Descriptor{
			MediaType: v1.MediaTypeImageLayer, Digest: l.Digest, Size: int64(l.Size),
		})
	}
	if img.Manifest, err = json.Marshal(m); err != nil {
		return err
	}
	img.ManifestDigest = digest.FromBytes(img.Manifest)
	return nil
}

// push uploads every blob and then the manifest. It returns nil only when
// the registry acknowledged the manifest.
func (img *Image) push(ctx context.Context, c *Client) error {
	for _, l := range img.Layers {
		if _, err := c.PushBlob(ctx, img.Repo, layerBytes(l.Seed, l.Size), l.Chunks); err != nil {
			return err
		}
	}
	if _, err := c.PushBlob(ctx, img.Repo, img.Config, 1); err != nil {
		return err
	}
	return c.PutManifest(ctx, img.Repo, img.Tag, v1.MediaTypeImageManifest, img.Manifest)
}

// mismatchError reports content that differs from what was pushed.
type mismatchError struct {
	// content names the manifest or blob.
	content string
}

func (e *mismatchError) Error() string { return e.content + " differs from what was pushed" }

// check pulls img from c and compares the manifest and every blob with
// what was pushed, byte for byte. With layers false it checks only the
// manifest and the config, which the workload's pulls do to stay cheap.
func (img *Image) check(ctx context.Context, c *Client, layers bool) error {
	got, err := c.GetManifest(ctx, img.Repo, img.Tag, v1.MediaTypeImageManifest)
	if err != nil {
		return err
	}
	if !bytes.Equal(got, img.Manifest) {
		return &mismatchError{fmt.Sprintf("manifest %s:%s", img.Repo, img.Tag)}
	}
	got, err = c.GetBlob(ctx, img.Repo, img.ConfigDigest)
	if err != nil {
		return err
	}
	if !bytes.Equal(got, img.Config) {
		return &mismatchError{"config blob " + img.ConfigDigest.String()}
	}
	if !layers {
		return nil
	}
	for _, l := range img.Layers {
		got, err := c.GetBlob(ctx, img.Repo, l.Digest)
		if err != nil {
			return err
		}
		if !bytes.Equal(got, layerBytes(l.Seed, l.Size)) {
			return &mismatchError{"layer " + l.Digest.String()}
		}
	}
	return nil
}
