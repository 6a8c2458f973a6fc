package bench

import (
	"context"
	"fmt"
	"time"
)

// TimedConfig configures the workloads that run for a duration.
type TimedConfig struct {
	Duration time.Duration
	// Name is the result's name; each workload has a default.
	Name string
}

// RunHead pushes one small image, then sends HEAD for its manifest by tag
// with o.Concurrency clients for cfg.Duration and checks the digest in
// every response. It returns one result, "head" unless cfg.Name is set.
func RunHead(ctx context.Context, o Options, cfg TimedConfig) ([]Result, error) {
	repo := o.runPrefix() + "/head"
	img, err := o.seedImage(ctx, repo, "latest")
	if err != nil {
		return nil, err
	}
	log := o.logger()
	log.Info("manifest HEAD starting", "repo", repo, "clients", o.Concurrency, "duration", cfg.Duration)
	rec := runFor(ctx, o.Concurrency, cfg.Duration, o.MaxOps, o.MaxErrors, o.OpTimeout,
		func(ctx context.Context, _ int, _ int64) (int64, error) {
			d, err := o.Client.HeadManifest(ctx, repo, "latest")
			if err != nil {
				return 0, err
			}
			if d != img.digest {
				return 0, fmt.Errorf("HEAD %s:latest: digest %q, want %s", repo, d, img.digest)
			}
			return 0, nil
		})
	res := rec.result(nameOr(cfg.Name, "head"), "request")
	log.Info("manifest HEAD done", "requests_per_sec", res.OpsPerSec, "errors", res.Errors)
	return []Result{res}, nil
}

// RunTagWrites pushes one small image, then PUTs its manifest under a new
// tag per request with o.Concurrency clients for cfg.Duration. Afterwards
// it lists the tags and counts every acknowledged tag that is missing as
// an error. It returns one result, "tag-write" unless cfg.Name is set.
func RunTagWrites(ctx context.Context, o Options, cfg TimedConfig) ([]Result, error) {
	repo := o.runPrefix() + "/tags"
	img, err := o.seedImage(ctx, repo, "latest")
	if err != nil {
		return nil, err
	}
	log := o.logger()
	log.Info("tag writes starting", "repo", repo, "clients", o.Concurrency, "duration", cfg.Duration)
	s3 := o.s3Before(ctx)
	rec := runFor(ctx, o.Concurrency, cfg.Duration, o.MaxOps, o.MaxErrors, o.OpTimeout,
		func(ctx context.Context, _ int, i int64) (int64, error) {
			return 0, o.Client.PutManifest(ctx, repo, tagName(i), img.manifest)
		})
	res := rec.result(nameOr(cfg.Name, "tag-write"), "tag")
	res.S3 = s3(res.Ops)
	log.Info("tag writes done", "tags_per_sec", res.OpsPerSec, "errors", res.Errors)

	verifyTags(ctx, o, repo, &res)
	return []Result{res}, nil
}

// verifyTags lists the repository's tags and records an error in res
// when fewer tags are listed than were acknowledged, plus the seed tag.
func verifyTags(ctx context.Context, o Options, repo string, res *Result) {
	ctx, cancel := withTimeout(ctx, 5*time.Minute)
	defer cancel()
	tags, pages, err := o.Client.ListTags(ctx, repo, 0)
	if err != nil {
		res.Errors++
		res.ErrorSamples = append(res.ErrorSamples, "list tags after the writes: "+err.Error())
		return
	}
	res.Notes = append(res.Notes, fmt.Sprintf("tag list after the writes: %d tags in %d pages", len(tags), pages))
	if want := res.Ops + 1; int64(len(tags)) < want {
		missing := want - int64(len(tags))
		res.Errors += missing
		res.ErrorSamples = append(res.ErrorSamples,
			fmt.Sprintf("%d acknowledged tags are missing from the tag list (%d listed, at least %d expected)",
				missing, len(tags), want))
	}
}

// tagName returns the tag of write i; tags sort in write order.
func tagName(i int64) string { return fmt.Sprintf("t%09d", i) }

func nameOr(name, def string) string {
	if name == "" {
		return def
	}
	return name
}
