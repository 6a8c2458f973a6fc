package bench

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/opencontainers/go-digest"
)

// ImagesConfig configures RunImages.
type ImagesConfig struct {
	// Images is the number of images, each in its own repository.
	Images int
	// Layers is the number of layers per image, each LayerSize bytes.
	Layers    int
	LayerSize int64
	// HeadFirst sends HEAD for every blob before uploading it, as docker
	// push does.
	HeadFirst bool
}

// RunImages pushes cfg.Images fresh random images with o.Concurrency
// clients, then pulls them all back and checks every digest. It returns
// the results "push" and "pull", one operation per image.
func RunImages(ctx context.Context, o Options, cfg ImagesConfig) ([]Result, error) {
	if cfg.Images <= 0 || cfg.Layers < 0 || cfg.LayerSize < 0 {
		return nil, fmt.Errorf("invalid images workload: %d images of %d layers of %d bytes", cfg.Images, cfg.Layers, cfg.LayerSize)
	}
	prefix := o.runPrefix()
	images := make([]*image, cfg.Images)
	for i := range images {
		images[i] = newImage(fmt.Sprintf("%s/image-%d", prefix, i), "v1", cfg.Layers, cfg.LayerSize)
	}
	log := o.logger()
	log.Info("push starting", "images", cfg.Images, "layers", cfg.Layers, "layer_bytes", cfg.LayerSize,
		"clients", o.Concurrency, "repo_prefix", prefix)

	s3 := o.s3Before(ctx)
	rec := runCount(ctx, o.Concurrency, int64(cfg.Images), o.MaxErrors, o.OpTimeout,
		func(ctx context.Context, _ int, i int64) (int64, error) {
			img := images[i]
			n, err := o.Client.pushImage(ctx, img, cfg.HeadFirst)
			if err != nil {
				img.digest = ""
				return n, fmt.Errorf("push %s: %w", img.repo, err)
			}
			return n, nil
		})
	push := rec.result("push", "image")
	push.S3 = s3(push.Ops)
	log.Info("push done", "images_per_sec", push.OpsPerSec, "errors", push.Errors)

	var pushed []*image
	for _, img := range images {
		if img.digest != "" {
			pushed = append(pushed, img)
		}
	}
	s3 = o.s3Before(ctx)
	rec = runCount(ctx, o.Concurrency, int64(len(pushed)), o.MaxErrors, o.OpTimeout,
		func(ctx context.Context, _ int, i int64) (int64, error) {
			img := pushed[i]
			n, err := o.Client.pullImage(ctx, img)
			if err != nil {
				return n, fmt.Errorf("pull %s:%s: %w", img.repo, img.tag, err)
			}
			return n, nil
		})
	pull := rec.result("pull", "image")
	pull.S3 = s3(pull.Ops)
	log.Info("pull done", "images_per_sec", pull.OpsPerSec, "errors", pull.Errors)
	return []Result{push, pull}, nil
}

// LargeConfig configures RunLarge.
type LargeConfig struct {
	// Size is the layer size in bytes.
	Size int64
	// Count is the number of layers, pushed and pulled one after the
	// other.
	Count int
	// Timeout bounds the push or pull of one layer.
	Timeout time.Duration
}

// RunLarge pushes cfg.Count layers of cfg.Size bytes one at a time, each
// streamed in one PATCH without being held in memory, then pulls them
// and checks their digests. It returns "large-push" and "large-pull".
func RunLarge(ctx context.Context, o Options, cfg LargeConfig) ([]Result, error) {
	if cfg.Size <= 0 || cfg.Count <= 0 {
		return nil, fmt.Errorf("invalid large workload: %d layers of %d bytes", cfg.Count, cfg.Size)
	}
	repo := o.runPrefix() + "/large"
	log := o.logger()
	log.Info("large layer push starting", "repo", repo, "bytes", cfg.Size, "count", cfg.Count)
	digests := make([]digest.Digest, cfg.Count)

	s3 := o.s3Before(ctx)
	rec := runCount(ctx, 1, int64(cfg.Count), o.MaxErrors, cfg.Timeout,
		func(ctx context.Context, _ int, i int64) (int64, error) {
			d, n, err := o.Client.PushBlob(ctx, repo, newBlobSpec(cfg.Size).reader())
			if err != nil {
				return n, fmt.Errorf("push large layer: %w", err)
			}
			if n != cfg.Size {
				return n, fmt.Errorf("push large layer: sent %d bytes, want %d", n, cfg.Size)
			}
			digests[i] = d
			return n, nil
		})
	push := rec.result("large-push", "layer")
	push.S3 = s3(push.Ops)
	log.Info("large layer push done", "mib_per_sec", push.MiBPerSec, "errors", push.Errors)

	s3 = o.s3Before(ctx)
	rec = runCount(ctx, 1, int64(cfg.Count), o.MaxErrors, cfg.Timeout,
		func(ctx context.Context, _ int, i int64) (int64, error) {
			if digests[i] == "" {
				return 0, errors.New("pull large layer: its push failed")
			}
			return o.Client.PullBlob(ctx, repo, digests[i], cfg.Size)
		})
	pull := rec.result("large-pull", "layer")
	pull.S3 = s3(pull.Ops)
	log.Info("large layer pull done", "mib_per_sec", pull.MiBPerSec, "errors", pull.Errors)
	return []Result{push, pull}, nil
}
