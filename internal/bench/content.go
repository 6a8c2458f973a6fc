package bench

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	mathrand "math/rand/v2"

	"github.com/opencontainers/go-digest"
)

// blobSpec is the content of one blob: size bytes of a ChaCha8 stream.
// The same spec always yields the same bytes, so a blob can be streamed
// twice (once for its digest, once to the registry) without being held in
// memory.
type blobSpec struct {
	seed [32]byte
	size int64
}

// newBlobSpec returns a spec with a fresh random seed, so every run
// pushes content that no registry has seen before.
func newBlobSpec(size int64) blobSpec {
	var b blobSpec
	_, _ = rand.Read(b.seed[:]) // crypto/rand.Read never returns an error
	b.size = size
	return b
}

// reader returns the blob's content.
func (b blobSpec) reader() io.Reader {
	return &randomReader{rng: mathrand.NewChaCha8(b.seed), left: b.size}
}

// digest reads the content once and returns its SHA-256 digest.
func (b blobSpec) digest() digest.Digest {
	digester := digest.Canonical.Digester()
	buf := make([]byte, copyBufferSize)
	_, _ = io.CopyBuffer(digester.Hash(), b.reader(), buf)
	return digester.Digest()
}

// randomReader returns left bytes from rng, then io.EOF.
type randomReader struct {
	rng  *mathrand.ChaCha8
	left int64
}

func (r *randomReader) Read(p []byte) (int, error) {
	if r.left <= 0 {
		return 0, io.EOF
	}
	if int64(len(p)) > r.left {
		p = p[:r.left]
	}
	n, _ := r.rng.Read(p) // ChaCha8.Read always fills p
	r.left -= int64(n)
	return n, nil
}

// randomHex returns n random bytes, hex-encoded.
func randomHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// image is one OCI image that a workload pushes and pulls.
type image struct {
	repo string
	tag  string
	// layers are the layer contents; config is made from their digests
	// when the image is pushed.
	layers []blobSpec

	// Set by push.
	config   Descriptor
	descs    []Descriptor
	manifest []byte
	digest   digest.Digest
}

// newImage returns an image of count fresh random layers of size bytes.
func newImage(repo, tag string, count int, size int64) *image {
	img := &image{repo: repo, tag: tag}
	for range count {
		img.layers = append(img.layers, newBlobSpec(size))
	}
	return img
}

// configFor returns an image configuration whose diff_ids are the
// layers' digests (the layers are uncompressed) and whose label holds a
// random value, so that every image has its own config blob.
func configFor(layers []Descriptor) []byte {
	diffIDs := make([]digest.Digest, len(layers))
	for i, l := range layers {
		diffIDs[i] = l.Digest
	}
	type rootFS struct {
		Type    string          `json:"type"`
		DiffIDs []digest.Digest `json:"diff_ids"`
	}
	type imageConfig struct {
		Labels map[string]string `json:"Labels"`
	}
	cfg := struct {
		Architecture string      `json:"architecture"`
		OS           string      `json:"os"`
		Config       imageConfig `json:"config"`
		RootFS       rootFS      `json:"rootfs"`
	}{
		Architecture: "amd64",
		OS:           "linux",
		Config:       imageConfig{Labels: map[string]string{"flotilla.bench.nonce": randomHex(16)}},
		RootFS:       rootFS{Type: "layers", DiffIDs: diffIDs},
	}
	b, err := json.Marshal(cfg)
	if err != nil {
		panic(fmt.Sprintf("bench: encode image config: %v", err))
	}
	return b
}

// pushImage uploads the layers, the config and the manifest under the
// image's tag. With headFirst, every blob is checked with HEAD before it
// is uploaded, as docker does, which costs one extra pass over each layer
// to compute its digest. It returns the bytes of blob content sent.
func (c *Client) pushImage(ctx context.Context, img *image, headFirst bool) (int64, error) {
	var sent int64
	img.descs = img.descs[:0]
	for i, layer := range img.layers {
		d, n, err := c.pushBlobSpec(ctx, img.repo, layer, headFirst)
		sent += n
		if err != nil {
			return sent, fmt.Errorf("layer %d: %w", i, err)
		}
		img.descs = append(img.descs, Descriptor{MediaType: mediaTypeLayer, Digest: d, Size: layer.size})
	}

	config := configFor(img.descs)
	img.config = Descriptor{MediaType: mediaTypeConfig, Digest: digest.FromBytes(config), Size: int64(len(config))}
	if headFirst {
		found, err := c.BlobExists(ctx, img.repo, img.config.Digest)
		if err != nil {
			return sent, fmt.Errorf("config: %w", err)
		}
		if found {
			return sent, fmt.Errorf("config %s exists before it was pushed", img.config.Digest)
		}
	}
	if _, n, err := c.PushBlob(ctx, img.repo, bytes.NewReader(config)); err != nil {
		return sent + n, fmt.Errorf("config: %w", err)
	}
	sent += int64(len(config))

	img.manifest = encodeManifest(img.config, img.descs)
	img.digest = digest.FromBytes(img.manifest)
	if err := c.PutManifest(ctx, img.repo, img.tag, img.manifest); err != nil {
		return sent, fmt.Errorf("manifest: %w", err)
	}
	return sent, nil
}

// pushBlobSpec uploads one layer and returns its digest and the bytes
// sent.
func (c *Client) pushBlobSpec(ctx context.Context, repo string, b blobSpec, headFirst bool) (digest.Digest, int64, error) {
	var want digest.Digest
	if headFirst {
		want = b.digest()
		found, err := c.BlobExists(ctx, repo, want)
		if err != nil {
			return "", 0, err
		}
		if found {
			return "", 0, fmt.Errorf("blob %s exists before it was pushed", want)
		}
	}
	d, n, err := c.PushBlob(ctx, repo, b.reader())
	if err != nil {
		return "", n, err
	}
	if want != "" && d != want {
		return "", n, fmt.Errorf("streamed digest %s differs from the precomputed %s", d, want)
	}
	return d, n, nil
}

// pullImage downloads the manifest by tag and every blob, and checks
// each digest. It returns the bytes of blob content received.
func (c *Client) pullImage(ctx context.Context, img *image) (int64, error) {
	content, err := c.GetManifest(ctx, img.repo, img.tag, img.digest)
	if err != nil {
		return 0, err
	}
	var m manifest
	if err := json.Unmarshal(content, &m); err != nil {
		return 0, fmt.Errorf("manifest of %s:%s: %w", img.repo, img.tag, err)
	}
	var received int64
	for _, d := range append([]Descriptor{m.Config}, m.Layers...) {
		n, err := c.PullBlob(ctx, img.repo, d.Digest, d.Size)
		received += n
		if err != nil {
			return received, err
		}
	}
	return received, nil
}
