package cluster

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/flotilla-registry/flotilla/tests/harness"
)

// TestLeaderKilledDuringPushes kills the leader with SIGKILL while 8
// clients push multi-layer images through the proxy, retrying failed
// steps. Every push that was acknowledged must be pullable from every
// surviving node, every client must finish, and the time until the
// cluster accepted writes again is printed.
func TestLeaderKilledDuringPushes(t *testing.T) {
	const (
		pushers         = 8
		imagesPerPusher = 4
		// killAfterAcks is how many pushes are acknowledged before the
		// kill, so the kill lands in the middle of the pushes.
		killAfterAcks = 6
	)
	c := Start(t, Options{})
	proxy := StartProxy(t, c)
	ctx, cancel := context.WithTimeout(t.Context(), 4*time.Minute)
	defer cancel()

	images := make([][]*harness.Image, pushers)
	for p := range images {
		for range imagesPerPusher {
			images[p] = append(images[p], harness.RandomImage(t, harness.ImageOptions{Layers: 3, LayerSize: 160 << 10}))
		}
	}
	probeConfig, probeLayer := seedBlobs(ctx, t, proxy.Client(), "failover/probe")

	var acked ackedSet
	var wg sync.WaitGroup
	outcomes := make([][]pushOutcome, pushers)
	for p := range pushers {
		client := proxy.Client()
		wg.Go(func() {
			for i, img := range images[p] {
				repo := fmt.Sprintf("failover/pusher%d", p)
				tag := fmt.Sprintf("v%d", i)
				out := pushWithRetries(ctx, client, repo, tag, img, 48<<10, defaultPushRetries)
				outcomes[p] = append(outcomes[p], out)
				if out.Acked {
					acked.add(repo, tag, img)
				}
			}
		})
	}

	waitUntil(t, 2*time.Minute, "pushes acknowledged before the kill", func() bool {
		return acked.len() >= killAfterAcks
	})
	leader := c.WaitLeader(t)
	probe := startWriteProbe(ctx, t, proxy.Client(), "failover/probe", probeConfig, probeLayer)
	killedAt := time.Now()
	leader.Kill(t)
	recovery := probe.waitRecovery(t, killedAt, time.Minute)
	newLeader := c.WaitNewLeader(t, leader)
	t.Logf("writes accepted again %v after the leader %s was killed; new leader %s",
		recovery.Round(time.Millisecond), leader.ID, newLeader.ID)
	fmt.Printf("cluster: leader %s killed during %d pushes; writes accepted again after %v\n",
		leader.ID, pushers, recovery.Round(time.Millisecond))

	wg.Wait()
	retries := 0
	for p, list := range outcomes {
		for i, out := range list {
			retries += out.Retries
			if !out.Acked {
				t.Errorf("pusher %d image %d did not finish after %d retries: %v",
					p, i, out.Retries, errors.Join(out.Errors...))
			}
		}
	}
	t.Logf("%d of %d pushes acknowledged, %d retried steps; proxy: %+v",
		acked.len(), pushers*imagesPerPusher, retries, proxy.Stats())

	survivors := c.Running()
	verifyAcked(ctx, t, survivors, acked.list(), true)

	// The killed node rejoins with its data and serves the same images.
	leader.Restart(t)
	verifyAcked(ctx, t, []*Node{leader}, acked.list(), true)
}

// writeProbe writes a new manifest under one tag through a client every
// few milliseconds and records when each write started and succeeded.
type writeProbe struct {
	mu        sync.Mutex
	successes []probeWrite
	stop      chan struct{}
	done      chan struct{}
	writes    atomic.Int64
}

type probeWrite struct{ start, end time.Time }

// probeInterval is the pause between two probe writes.
const probeInterval = 20 * time.Millisecond

func startWriteProbe(ctx context.Context, t *testing.T, c *Client, repo string, config, layer harness.Blob) *writeProbe {
	p := &writeProbe{stop: make(chan struct{}), done: make(chan struct{})}
	manifests := make([]harness.Blob, 2000)
	for i := range manifests {
		manifests[i] = tagManifest(t, config, layer, fmt.Sprintf("probe-%d", i))
	}
	go func() {
		defer close(p.done)
		for _, m := range manifests {
			select {
			case <-p.stop:
				return
			case <-ctx.Done():
				return
			default:
			}
			start := time.Now()
			reqCtx, cancel := context.WithTimeout(ctx, 15*time.Second)
			err := c.PutManifest(reqCtx, repo, "probe", m.MediaType, m.Data)
			cancel()
			p.writes.Add(1)
			if err == nil {
				p.mu.Lock()
				p.successes = append(p.successes, probeWrite{start, time.Now()})
				p.mu.Unlock()
			}
			time.Sleep(probeInterval)
		}
	}()
	t.Cleanup(p.halt)
	return p
}

func (p *writeProbe) halt() {
	select {
	case <-p.stop:
	default:
		close(p.stop)
	}
	<-p.done
}

// waitRecovery waits for the first successful write that started after
// since, stops the probe, and returns the time from since to that
// write's end.
func (p *writeProbe) waitRecovery(t *testing.T, since time.Time, timeout time.Duration) time.Duration {
	t.Helper()
	var recovered time.Duration
	waitUntil(t, timeout, "a write that started after the fault succeeds", func() bool {
		p.mu.Lock()
		defer p.mu.Unlock()
		for _, w := range p.successes {
			if w.start.After(since) {
				recovered = w.end.Sub(since)
				return true
			}
		}
		return false
	})
	p.halt()
	return recovered
}

// waitUntil polls cond every pollInterval until it returns true, and
// fails the test after timeout.
func waitUntil(t testing.TB, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting until %s", timeout, what)
		}
		time.Sleep(pollInterval)
	}
}
