package cluster

import (
	"context"
	cryptorand "crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"
	specs "github.com/opencontainers/image-spec/specs-go"
	v1 "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/flotilla-registry/flotilla/tests/harness"
)

// pushRetryLimits bounds the retries of one push.
type pushRetryLimits struct {
	// Attempts bounds the tries of each blob and of the manifest.
	Attempts int
	// Backoff is the pause before a retry.
	Backoff time.Duration
}

var defaultPushRetries = pushRetryLimits{Attempts: 20, Backoff: 250 * time.Millisecond}

// pushOutcome is what a retrying push did.
type pushOutcome struct {
	// Acked is true when the manifest PUT returned 201.
	Acked bool
	// Retries counts the requests sequences that were started again.
	Retries int
	// Errors lists the failures that caused the retries, and the last
	// failure when the push gave up.
	Errors []error
}

// retryable reports whether a failed push step may be started again
// after a connection error, a 5xx response, or a 404 or 416 for an
// upload session whose node died. Another 4xx is a client or server bug
// that a retry would hide.
func retryable(err error) bool {
	if IsConnectionError(err) {
		return true
	}
	status := StatusOf(err)
	return status >= 500 || status == http.StatusNotFound || status == http.StatusRequestedRangeNotSatisfiable
}

// pushWithRetries pushes img like Client.PushImage, but starts a failed
// blob upload or manifest PUT again, within limits.
func pushWithRetries(ctx context.Context, c *Client, repo, tag string, img *harness.Image, chunkSize int,
	limits pushRetryLimits) pushOutcome {
	var out pushOutcome
	try := func(step func() error) bool {
		for attempt := 1; attempt <= limits.Attempts; attempt++ {
			err := step()
			if err == nil {
				return true
			}
			out.Errors = append(out.Errors, err)
			if !retryable(err) || attempt == limits.Attempts || ctx.Err() != nil {
				return false
			}
			out.Retries++
			select {
			case <-ctx.Done():
				return false
			case <-time.After(limits.Backoff):
			}
		}
		return false
	}
	for _, blob := range img.Blobs() {
		ok := try(func() error {
			exists, err := c.BlobExists(ctx, repo, blob.Digest)
			if err != nil || exists {
				return err
			}
			_, err = c.PushBlob(ctx, repo, blob.Data, chunkSize)
			return err
		})
		if !ok {
			return out
		}
	}
	out.Acked = try(func() error {
		return c.PutManifest(ctx, repo, tag, img.Manifest.MediaType, img.Manifest.Data)
	})
	return out
}

// ackedImage is an image whose manifest PUT returned 201.
type ackedImage struct {
	Repo string
	Tag  string
	Img  *harness.Image
}

// ackedSet collects acknowledged pushes from several goroutines.
type ackedSet struct {
	mu     sync.Mutex
	images []ackedImage
}

func (s *ackedSet) add(repo, tag string, img *harness.Image) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.images = append(s.images, ackedImage{repo, tag, img})
}

func (s *ackedSet) list() []ackedImage {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]ackedImage(nil), s.images...)
}

func (s *ackedSet) len() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.images)
}

// verifyAcked pulls every acknowledged image from every node directly
// and reports each missing or different one. In full mode, each node
// must serve each image by tag and by digest with all its blobs.
// Otherwise each node must serve the manifest by tag, and one node per
// image, chosen in turn, must also serve the blobs.
func verifyAcked(ctx context.Context, t *testing.T, nodes []*Node, acked []ackedImage, full bool) {
	t.Helper()
	failures := 0
	fail := func(format string, args ...any) {
		t.Helper()
		failures++
		if failures <= 20 {
			t.Errorf(format, args...)
		}
	}
	for i, a := range acked {
		for j, n := range nodes {
			client := n.Client()
			if full || i%len(nodes) == j {
				for _, ref := range []string{a.Tag, a.Img.Manifest.Digest.String()} {
					if err := client.VerifyImage(ctx, a.Repo, ref, a.Img); err != nil {
						fail("acknowledged push %s:%s not pullable from %s: %v", a.Repo, ref, n.ID, err)
					}
				}
				continue
			}
			_, d, err := client.GetManifest(ctx, a.Repo, a.Tag)
			switch {
			case err != nil:
				fail("acknowledged push %s:%s not pullable from %s: %v", a.Repo, a.Tag, n.ID, err)
			case d != a.Img.Manifest.Digest:
				fail("%s:%s on %s is %s, want the acknowledged %s", a.Repo, a.Tag, n.ID, d, a.Img.Manifest.Digest)
			}
		}
	}
	if failures > 20 {
		t.Errorf("%d pulls of acknowledged pushes failed in all", failures)
	}
}

// seedBlobs uploads a config and a layer into repo and returns them, so
// that manifests referring to both can be written by tag.
func seedBlobs(ctx context.Context, t *testing.T, c *Client, repo string) (config, layer harness.Blob) {
	t.Helper()
	img := harness.RandomImage(t, harness.ImageOptions{LayerSize: 1 << 10})
	out := pushWithRetries(ctx, c, repo, "seed", img, 0, defaultPushRetries)
	if !out.Acked {
		t.Fatalf("seed %s: %v", repo, errors.Join(out.Errors...))
	}
	return img.Config, img.Layers[0].Blob
}

// tagManifest returns a small image manifest over config and layer whose
// annotation note makes its digest unique.
func tagManifest(t testing.TB, config, layer harness.Blob, note string) harness.Blob {
	t.Helper()
	m := v1.Manifest{
		Versioned:   specs.Versioned{SchemaVersion: 2},
		MediaType:   v1.MediaTypeImageManifest,
		Config:      config.Descriptor(),
		Layers:      []v1.Descriptor{layer.Descriptor()},
		Annotations: map[string]string{"org.flotilla.test.write": note},
	}
	data, err := json.Marshal(m)
	if err != nil {
		t.Fatalf("encode manifest: %v", err)
	}
	return harness.NewBlob(v1.MediaTypeImageManifest, data)
}

// loadStats counts the requests of a pushPullLoad.
type loadStats struct {
	Pushes       atomic.Int64 // acknowledged
	Pulls        atomic.Int64 // verified
	FailedPushes atomic.Int64 // gave up after retries
	FailedPulls  atomic.Int64
	Status5xx    atomic.Int64 // failed steps that ended in a 5xx
	ConnErrors   atomic.Int64 // failed steps that ended in a connection error
	Retries      atomic.Int64
	mu           sync.Mutex
	errors       []string
}

func (s *loadStats) record(err error) {
	switch {
	case StatusOf(err) >= 500:
		s.Status5xx.Add(1)
	case IsConnectionError(err):
		s.ConnErrors.Add(1)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.errors) < 30 {
		s.errors = append(s.errors, time.Now().Format("15:04:05.000")+" "+err.Error())
	}
}

func (s *loadStats) String() string {
	return fmt.Sprintf("%d pushes acknowledged, %d pulls verified, %d pushes and %d pulls failed, "+
		"%d failures with 5xx, %d with connection errors, %d retried sequences",
		s.Pushes.Load(), s.Pulls.Load(), s.FailedPushes.Load(), s.FailedPulls.Load(),
		s.Status5xx.Load(), s.ConnErrors.Load(), s.Retries.Load())
}

func (s *loadStats) errorList() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]string(nil), s.errors...)
}

// pushPullLoad runs workers goroutines that each push a small image
// through client and pull it back, until finish is called, maxRounds
// rounds are done, or ctx ends. With retries, a failed push is started
// again within defaultPushRetries; without, each failure counts.
type pushPullLoad struct {
	client  *Client
	repo    string
	workers int
	// maxRounds bounds the pushes of each worker.
	maxRounds int
	retries   bool
	// pause is the wait of each worker between two rounds.
	pause time.Duration

	stop     chan struct{}
	stopOnce sync.Once
	wg       sync.WaitGroup
	stats    loadStats
	acked    ackedSet
}

func newPushPullLoad(client *Client, repo string, workers, maxRounds int, retries bool) *pushPullLoad {
	return &pushPullLoad{
		client: client, repo: repo, workers: workers, maxRounds: maxRounds,
		retries: retries, pause: 50 * time.Millisecond, stop: make(chan struct{}),
	}
}

func (l *pushPullLoad) start(ctx context.Context) {
	for w := range l.workers {
		l.wg.Go(func() { l.work(ctx, w) })
	}
}

func (l *pushPullLoad) work(ctx context.Context, worker int) {
	limits := pushRetryLimits{Attempts: 1}
	if l.retries {
		limits = defaultPushRetries
	}
	for round := range l.maxRounds {
		select {
		case <-l.stop:
			return
		case <-ctx.Done():
			return
		case <-time.After(l.pause):
		}
		img, err := smallImage(fmt.Sprintf("%s w%d r%d", l.repo, worker, round))
		if err != nil {
			l.stats.record(err)
			return
		}
		tag := fmt.Sprintf("w%d-r%d", worker, round)
		out := pushWithRetries(ctx, l.client, l.repo, tag, img, 16<<10, limits)
		l.stats.Retries.Add(int64(out.Retries))
		for _, err := range out.Errors {
			l.stats.record(err)
		}
		if !out.Acked {
			l.stats.FailedPushes.Add(1)
			continue
		}
		l.stats.Pushes.Add(1)
		l.acked.add(l.repo, tag, img)
		if err := l.client.VerifyImage(ctx, l.repo, tag, img); err != nil {
			l.stats.FailedPulls.Add(1)
			l.stats.record(err)
			continue
		}
		l.stats.Pulls.Add(1)
	}
}

// finish stops the workers and waits for them. It may be called more
// than once.
func (l *pushPullLoad) finish() {
	l.stopOnce.Do(func() { close(l.stop) })
	l.wg.Wait()
}

// smallImage returns an image with a config naming it and one layer of
// 40 KiB of random bytes (not a real tar: the registry does not look
// inside layers), for load that runs outside the test's goroutine.
func smallImage(name string) (*harness.Image, error) {
	data := make([]byte, 40<<10)
	if _, err := cryptorand.Read(data); err != nil {
		return nil, err
	}
	img := &harness.Image{Platform: v1.Platform{OS: "linux", Architecture: "amd64"}}
	img.Layers = []harness.Layer{{Blob: harness.NewBlob(v1.MediaTypeImageLayerGzip, data)}}
	config, err := json.Marshal(v1.Image{
		Platform: img.Platform,
		Config:   v1.ImageConfig{Labels: map[string]string{"org.flotilla.test.name": name}},
		RootFS:   v1.RootFS{Type: "layers", DiffIDs: []digest.Digest{img.Layers[0].Digest}},
	})
	if err != nil {
		return nil, err
	}
	img.Config = harness.NewBlob(v1.MediaTypeImageConfig, config)
	manifest, err := json.Marshal(v1.Manifest{
		Versioned: specs.Versioned{SchemaVersion: 2},
		MediaType: v1.MediaTypeImageManifest,
		Config:    img.Config.Descriptor(),
		Layers:    []v1.Descriptor{img.Layers[0].Descriptor()},
	})
	if err != nil {
		return nil, err
	}
	img.Manifest = harness.NewBlob(v1.MediaTypeImageManifest, manifest)
	return img, nil
}
