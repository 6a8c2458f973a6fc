package bench

import (
	"context"
	"fmt"
	"sync/atomic"
	"time"
)

// ListConfig configures RunList.
type ListConfig struct {
	// Repos is the number of repositories to create, each with
	// TagsPerRepo tags (at least 1) of one manifest.
	Repos       int
	TagsPerRepo int
	// Tags is the number of tags to write into one more repository, the
	// one whose tag list is measured.
	Tags int
	// PageSize is the n parameter of each listing request; 0 leaves the
	// page size to the registry.
	PageSize int
	// Duration is how long each listing phase runs.
	Duration time.Duration
}

// RunList seeds the registry cheaply and then measures listings. It
// pushes one small image, writes cfg.Tags more tags of its manifest, and
// creates cfg.Repos repositories by mounting the image's blobs and
// putting the same manifest under cfg.TagsPerRepo tags each. Then it
// lists the tags of the first repository and the whole catalog, page by
// page, with o.Concurrency clients for cfg.Duration each, and checks the
// counts. It returns "seed-tags", "seed-repos", "list-tags" and
// "catalog", leaving out the phases whose count is zero.
func RunList(ctx context.Context, o Options, cfg ListConfig) ([]Result, error) {
	if cfg.Repos < 0 || cfg.Tags < 0 || cfg.PageSize < 0 {
		return nil, fmt.Errorf("invalid list workload: %d repositories, %d tags, page size %d", cfg.Repos, cfg.Tags, cfg.PageSize)
	}
	tagsPerRepo := max(cfg.TagsPerRepo, 1)
	prefix := o.runPrefix()
	base := prefix + "/base"
	img, err := o.seedImage(ctx, base, "base")
	if err != nil {
		return nil, err
	}
	log := o.logger()
	var results []Result

	if cfg.Tags > 0 {
		log.Info("tag seeding starting", "repo", base, "tags", cfg.Tags, "clients", o.Concurrency)
		rec := runCount(ctx, o.Concurrency, int64(cfg.Tags), o.MaxErrors, o.OpTimeout,
			func(ctx context.Context, _ int, i int64) (int64, error) {
				return 0, o.Client.PutManifest(ctx, base, tagName(i), img.manifest)
			})
		res := rec.result("seed-tags", "tag")
		log.Info("tag seeding done", "tags_per_sec", res.OpsPerSec, "errors", res.Errors)
		results = append(results, res)
	}

	if cfg.Repos > 0 {
		res := seedRepos(ctx, o, img, prefix, cfg.Repos, tagsPerRepo)
		results = append(results, res)
	}

	if cfg.Tags > 0 {
		want := cfg.Tags + 1
		var pages atomic.Int64
		rec := runFor(ctx, o.Concurrency, cfg.Duration, o.MaxOps, o.MaxErrors, o.OpTimeout,
			func(ctx context.Context, _ int, _ int64) (int64, error) {
				tags, p, err := o.Client.ListTags(ctx, base, cfg.PageSize)
				if err != nil {
					return 0, err
				}
				pages.Store(int64(p))
				if len(tags) != want {
					return 0, fmt.Errorf("tag list of %s: %d tags, want %d", base, len(tags), want)
				}
				return 0, nil
			})
		res := rec.result("list-tags", "listing")
		res.Notes = append(res.Notes, fmt.Sprintf("each listing: %d tags in %d pages (n=%d)", want, pages.Load(), cfg.PageSize))
		log.Info("tag listing done", "listings_per_sec", res.OpsPerSec, "errors", res.Errors)
		results = append(results, res)
	}

	if cfg.Repos > 0 {
		var listed, pages atomic.Int64
		rec := runFor(ctx, o.Concurrency, cfg.Duration, o.MaxOps, o.MaxErrors, o.OpTimeout,
			func(ctx context.Context, _ int, _ int64) (int64, error) {
				repos, p, err := o.Client.Catalog(ctx, cfg.PageSize)
				if err != nil {
					return 0, err
				}
				listed.Store(int64(len(repos)))
				pages.Store(int64(p))
				if len(repos) < cfg.Repos+1 {
					return 0, fmt.Errorf("catalog: %d repositories, want at least %d", len(repos), cfg.Repos+1)
				}
				return 0, nil
			})
		res := rec.result("catalog", "listing")
		res.Notes = append(res.Notes, fmt.Sprintf("each listing: %d repositories in %d pages (n=%d)",
			listed.Load(), pages.Load(), cfg.PageSize))
		log.Info("catalog listing done", "listings_per_sec", res.OpsPerSec, "errors", res.Errors)
		results = append(results, res)
	}
	return results, nil
}

// seedRepos creates count repositories under prefix, each with the
// image's blobs mounted from its repository and its manifest under
// tagsPerRepo tags. One operation is one repository.
func seedRepos(ctx context.Context, o Options, img *image, prefix string, count, tagsPerRepo int) Result {
	log := o.logger()
	log.Info("repository seeding starting", "repos", count, "tags_per_repo", tagsPerRepo, "clients", o.Concurrency)
	blobs := append([]Descriptor{img.config}, img.descs...)
	rec := runCount(ctx, o.Concurrency, int64(count), o.MaxErrors, o.OpTimeout,
		func(ctx context.Context, _ int, i int64) (int64, error) {
			repo := fmt.Sprintf("%s/repo-%07d", prefix, i)
			for _, b := range blobs {
				if err := o.Client.MountBlob(ctx, repo, img.repo, b.Digest); err != nil {
					return 0, err
				}
			}
			for t := range tagsPerRepo {
				if err := o.Client.PutManifest(ctx, repo, tagName(int64(t)), img.manifest); err != nil {
					return 0, err
				}
			}
			return 0, nil
		})
	res := rec.result("seed-repos", "repository")
	requests := int64(len(blobs) + tagsPerRepo)
	res.Notes = append(res.Notes,
		fmt.Sprintf("%d requests per repository (%d mounts, %d manifest PUTs): %.0f requests/s, %.0f tags/s",
			requests, len(blobs), tagsPerRepo, res.OpsPerSec*float64(requests), res.OpsPerSec*float64(tagsPerRepo)))
	log.Info("repository seeding done", "repos_per_sec", res.OpsPerSec, "errors", res.Errors)
	return res
}
