package bench

import (
	"context"
	"errors"
	"fmt"
	"time"
)

// pollInterval is the pause between two readiness probes.
const pollInterval = 50 * time.Millisecond

// WaitConfig configures RunWait.
type WaitConfig struct {
	// Repo and Tag, when set, make readiness mean that HEAD of the
	// manifest returns 200. Otherwise GET /v2/ is sent.
	Repo string
	Tag  string
	// Status is the status of GET /v2/ that means ready, and 0 accepts
	// any response. With credentials, 200 means that the registry also
	// accepts them.
	Status int
	// Timeout bounds the wait.
	Timeout time.Duration
}

// RunWait polls the registry until it is ready and returns one result,
// "ready", whose Seconds is the time waited: after a restart, the time
// until the node serves its index again. A timeout is an error.
func RunWait(ctx context.Context, o Options, cfg WaitConfig) ([]Result, error) {
	rec := newRecorder(0, nil)
	ctx, cancel := withTimeout(ctx, cfg.Timeout)
	defer cancel()
	var last error
	for {
		probe, probeCancel := context.WithTimeout(ctx, 2*time.Second)
		last = probeOnce(probe, o.Client, cfg)
		probeCancel()
		if last == nil {
			rec.finish()
			rec.record(rec.end.Sub(rec.start), 0, nil)
			return []Result{rec.result("ready", "wait")}, nil
		}
		select {
		case <-ctx.Done():
			rec.finish()
			rec.record(0, 0, fmt.Errorf("not ready after %s: %w", cfg.Timeout, last))
			return []Result{rec.result("ready", "wait")}, nil
		case <-time.After(pollInterval):
		}
	}
}

func probeOnce(ctx context.Context, c *Client, cfg WaitConfig) error {
	if cfg.Repo == "" {
		status, err := c.Ping(ctx)
		if err == nil && cfg.Status != 0 && status != cfg.Status {
			return fmt.Errorf("GET /v2/: status %d, want %d", status, cfg.Status)
		}
		return err
	}
	_, err := c.HeadManifest(ctx, cfg.Repo, cfg.Tag)
	return err
}

// CheckCluster pushes a small image through the first client and checks
// that every other client sees its tag at once, with the same digest.
// With nodes that do not share one index, the error names the node that
// lacks the tag.
func CheckCluster(ctx context.Context, o Options, others []*Client) error {
	if len(others) == 0 {
		return errors.New("cluster check needs at least two URLs")
	}
	repo := o.runPrefix() + "/cluster-check"
	img, err := o.seedImage(ctx, repo, "check")
	if err != nil {
		return fmt.Errorf("push through %s: %w", o.Client.URL(), err)
	}
	for _, c := range others {
		ctx, cancel := withTimeout(ctx, o.OpTimeout)
		d, err := c.HeadManifest(ctx, repo, "check")
		cancel()
		if err != nil {
			return fmt.Errorf("tag %s:check written through %s is not readable through %s: %w",
				repo, o.Client.URL(), c.URL(), err)
		}
		if d != img.digest {
			return fmt.Errorf("tag %s:check through %s has digest %s, want %s", repo, c.URL(), d, img.digest)
		}
	}
	return nil
}
