package bench

import (
	"context"
	"fmt"
	"log/slog"
	"time"
)

// Options are the settings that every registry workload shares.
type Options struct {
	Client *Client
	// Concurrency is the number of clients that run at once.
	Concurrency int
	// RepoPrefix starts every repository name, and RunID follows it.
	// An empty RunID is replaced by a random one, so that runs against
	// the same registry do not share repositories.
	RepoPrefix string
	RunID      string
	// S3 reads the counting S3 proxy in front of the registry's store.
	// Nil leaves the S3 figures out.
	S3 *S3StatsClient
	// MaxErrors stops a phase once more operations than this have
	// failed. Zero or less never stops early.
	MaxErrors int
	// OpTimeout bounds one operation (one image, one request), but not
	// the transfer of a large layer.
	OpTimeout time.Duration
	// MaxOps bounds the operations of a phase that runs for a duration.
	MaxOps int64
	Logger *slog.Logger
}

// runPrefix returns the repository prefix of one run.
func (o Options) runPrefix() string {
	id := o.RunID
	if id == "" {
		id = randomHex(4)
	}
	return o.RepoPrefix + "/" + id
}

func (o Options) logger() *slog.Logger {
	if o.Logger == nil {
		return slog.New(slog.DiscardHandler)
	}
	return o.Logger
}

// s3Before reads the S3 counters at the start of a phase. The returned
// function computes the phase's S3 usage per operation. Without an S3
// counter, or when a read fails, it returns nil and the failure is
// logged.
func (o Options) s3Before(ctx context.Context) func(ops int64) *S3Usage {
	if o.S3 == nil {
		return func(int64) *S3Usage { return nil }
	}
	before, err := o.S3.Read(ctx)
	if err != nil {
		o.logger().Warn("S3 request counters unavailable", "err", err)
		return func(int64) *S3Usage { return nil }
	}
	return func(ops int64) *S3Usage {
		after, err := o.S3.Read(ctx)
		if err != nil {
			o.logger().Warn("S3 request counters unavailable", "err", err)
			return nil
		}
		return after.usageSince(before, ops)
	}
}

// seedImage pushes one small image (one 1 KiB layer) under repo:tag for
// the workloads that only need a manifest to exist.
func (o Options) seedImage(ctx context.Context, repo, tag string) (*image, error) {
	img := newImage(repo, tag, 1, 1<<10)
	ctx, cancel := withTimeout(ctx, o.OpTimeout)
	defer cancel()
	if _, err := o.Client.pushImage(ctx, img, false); err != nil {
		return nil, fmt.Errorf("seed image %s:%s: %w", repo, tag, err)
	}
	return img, nil
}

// Report is the kind "workload" record of one bench run, written as JSON
// with --json.
type Report struct {
	Kind     string    `json:"kind"`
	Label    string    `json:"label"`
	Workload string    `json:"workload"`
	URL      string    `json:"url,omitempty"`
	Started  time.Time `json:"started"`
	// Params are the workload's settings as given on the command line.
	Params  map[string]string `json:"params"`
	Results []Result          `json:"results"`
	// ClientCPUSeconds is the CPU time of the bench process itself,
	// which shares the machine with the servers it measures.
	ClientCPUSeconds float64    `json:"client_cpu_seconds"`
	LoadAvgBefore    [3]float64 `json:"load_avg_before"`
	LoadAvgAfter     [3]float64 `json:"load_avg_after"`
	// Error is set when the workload could not run to its end, for
	// example because seeding failed.
	Error string `json:"error,omitempty"`
}

// Failed reports whether the workload stopped with an error or any
// result has errors.
func (r *Report) Failed() bool {
	if r.Error != "" {
		return true
	}
	for _, res := range r.Results {
		if res.Errors > 0 {
			return true
		}
	}
	return false
}
