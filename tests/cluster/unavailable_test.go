package cluster

import (
	"context"
	"net/http"
	"sync"
	"testing"
	"time"
)

// nodeRequestTimeout is the node's request timeout: a request that
// cannot be served without a majority gets its 503 within 10 s.
// unavailableSlack adds time for process scheduling on a loaded machine.
const (
	nodeRequestTimeout = 10 * time.Second
	unavailableSlack   = 1500 * time.Millisecond
)

// TestPartitionedNodeUnavailable cuts a follower, then the leader, off
// from the other nodes. The cut-off node must respond to a manifest PUT
// and a manifest GET (a linearizable read) with 503, code UNAVAILABLE
// and a Retry-After header within the request timeout. This is checked
// right after the cut, and again once the node reports not ready.
func TestPartitionedNodeUnavailable(t *testing.T) {
	RequireFirewall(t)
	c := Start(t, Options{})
	ctx, cancel := context.WithTimeout(t.Context(), 4*time.Minute)
	defer cancel()
	leader := c.WaitLeader(t)
	const repo = "unavailable/repo"
	config, layer := seedBlobs(ctx, t, leader.Client(), repo)
	base := tagManifest(t, config, layer, "base")
	if err := leader.Client().PutManifest(ctx, repo, "base", base.MediaType, base.Data); err != nil {
		t.Fatalf("write the base tag: %v", err)
	}

	for _, role := range []string{"follower", "leader"} {
		t.Run(role, func(t *testing.T) {
			c.WaitReady(t)
			leader := c.WaitLeader(t)
			n := leader
			if role == "follower" {
				n = c.Followers(leader)[0]
			}
			c.Partition(t, n)
			healed := false
			defer func() {
				if !healed {
					c.Heal(t, n)
				}
			}()

			m := tagManifest(t, config, layer, role+"-right-after")
			requireUnavailable(ctx, t, n, repo, "right after the cut", m.MediaType, m.Data)

			waitUntil(t, nodeRequestTimeout+unavailableSlack, n.ID+" reports not ready", func() bool {
				probeCtx, cancel := context.WithTimeout(ctx, probeTimeout)
				defer cancel()
				status, err := n.Get(probeCtx, "/readyz")
				return err == nil && status == http.StatusServiceUnavailable
			})
			healthCtx, cancelHealth := context.WithTimeout(ctx, probeTimeout)
			status, err := n.Get(healthCtx, "/healthz")
			cancelHealth()
			if err != nil || status != http.StatusOK {
				t.Errorf("GET /healthz on the cut-off %s returned %d, %v; want 200: the process is alive", n.ID, status, err)
			}
			m = tagManifest(t, config, layer, role+"-noticed")
			requireUnavailable(ctx, t, n, repo, "after it noticed", m.MediaType, m.Data)

			c.Heal(t, n)
			healed = true
			c.WaitReady(t, n)
			c.WaitLeader(t)
			m = tagManifest(t, config, layer, role+"-healed")
			if err := n.Client().PutManifest(ctx, repo, "healed-"+role, m.MediaType, m.Data); err != nil {
				t.Errorf("write through %s after healing: %v", n.ID, err)
			}
		})
	}
}

// requireUnavailable sends a manifest PUT and a manifest GET to n at
// the same time and checks that both return 503 UNAVAILABLE with
// Retry-After in time.
func requireUnavailable(ctx context.Context, t *testing.T, n *Node, repo, when, mediaType string, manifest []byte) {
	t.Helper()
	type result struct {
		what    string
		resp    *Response
		err     error
		elapsed time.Duration
	}
	header := http.Header{"Content-Type": {mediaType}}
	requests := []struct {
		what, method, path string
		header             http.Header
		body               []byte
	}{
		{"manifest PUT", http.MethodPut, "/v2/" + repo + "/manifests/cut", header, manifest},
		{"manifest GET", http.MethodGet, "/v2/" + repo + "/manifests/base", http.Header{"Accept": {manifestAccept}}, nil},
	}
	results := make([]result, len(requests))
	var wg sync.WaitGroup
	for i, r := range requests {
		wg.Go(func() {
			reqCtx, cancel := context.WithTimeout(ctx, nodeRequestTimeout+10*time.Second)
			defer cancel()
			start := time.Now()
			resp, err := n.Client().Do(reqCtx, r.method, r.path, r.header, r.body)
			results[i] = result{r.what, resp, err, time.Since(start)}
		})
	}
	wg.Wait()
	client := n.Client()
	for i, res := range results {
		t.Logf("%s on cut-off %s %s: %v", res.what, n.ID, when, res.elapsed.Round(time.Millisecond))
		if res.err != nil {
			t.Errorf("%s on cut-off %s %s: %v after %v", res.what, n.ID, when, res.err, res.elapsed)
			continue
		}
		if res.elapsed > nodeRequestTimeout+unavailableSlack {
			t.Errorf("%s on cut-off %s %s took %v, want at most the %v request timeout",
				res.what, n.ID, when, res.elapsed, nodeRequestTimeout)
		}
		se := client.statusError(requests[i].method, requests[i].path, res.resp)
		if se.Status != http.StatusServiceUnavailable {
			t.Errorf("%s on cut-off %s %s: %v, want 503 UNAVAILABLE", res.what, n.ID, when, se)
			continue
		}
		if se.Code != "UNAVAILABLE" {
			t.Errorf("%s on cut-off %s %s: 503 with code %q, want UNAVAILABLE; body %s",
				res.what, n.ID, when, se.Code, truncate(se.Body, 512))
		}
		if _, ok := retryAfterSeconds(se.RetryAfter); !ok {
			t.Errorf("%s on cut-off %s %s: Retry-After %q, want a number of seconds",
				res.what, n.ID, when, se.RetryAfter)
		}
	}
}
