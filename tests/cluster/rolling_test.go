package cluster

import (
	"context"
	"strings"
	"testing"
	"time"
)

// TestRollingRestart stops each node in turn with SIGTERM, restarts it
// and waits until it is ready, while clients push and pull through the
// proxy with one retry per request on connection errors only. A
// stopping node finishes its requests in flight and hands leadership
// over, so no request may fail: no 5xx, no cut connection, and every
// acknowledged push is on every node afterwards.
func TestRollingRestart(t *testing.T) {
	c := Start(t, Options{})
	proxy := StartProxy(t, c)
	ctx, cancel := context.WithTimeout(t.Context(), 4*time.Minute)
	defer cancel()

	client := proxy.Client()
	client.ConnRetries = 1
	load := newPushPullLoad(client, "rolling/images", 3, 1000, false)
	load.start(ctx)
	defer load.finish()

	time.Sleep(time.Second)
	for _, n := range c.Members() {
		start := time.Now()
		wasLeader := c.WaitLeader(t) == n
		if err := n.Stop(); err != nil {
			t.Errorf("stop %s: %v", n.ID, err)
		}
		stopped := time.Since(start)
		if wasLeader {
			requireHandover(t, c, n)
		}
		n.Restart(t)
		c.WaitLeader(t)
		t.Logf("%s (leader: %v) stopped in %v, ready again after %v; load so far: %s", n.ID, wasLeader,
			stopped.Round(time.Millisecond), time.Since(start).Round(time.Millisecond), &load.stats)
		// Some load between two restarts, as an operator would wait.
		time.Sleep(time.Second)
	}
	load.finish()

	st := proxy.Stats()
	t.Logf("load: %s; connection retries %d; proxy: %d requests, %d sent again after a refused connection, "+
		"%d failed at the backend, per node %v", &load.stats, client.Retries(), st.Requests, st.DialRetries,
		st.BackendErrors, st.PerBackend)
	if n := load.stats.Status5xx.Load(); n != 0 {
		t.Errorf("%d requests failed with a 5xx status, want 0", n)
	}
	if n := load.stats.FailedPushes.Load() + load.stats.FailedPulls.Load(); n != 0 {
		t.Errorf("%d pushes or pulls failed, want 0:\n%s", n, strings.Join(load.stats.errorList(), "\n"))
	}
	if st.BackendErrors != 0 {
		t.Errorf("a node cut %d requests in flight:\n%s", st.BackendErrors, strings.Join(st.LastFailures, "\n"))
	}
	if load.stats.Pushes.Load() == 0 {
		t.Error("no push was acknowledged during the restarts")
	}
	verifyAcked(ctx, t, c.Members(), load.acked.list(), false)
}

// handoverWindow bounds the time from a stopped leader's exit until the
// other nodes agree on a new leader. A leader that hands leadership over
// before it exits leaves a leader behind at once. Without a handover, an
// election starts only after the 500 ms election timeout.
const handoverWindow = 400 * time.Millisecond

// requireHandover checks that the running nodes agree on a leader other
// than old within handoverWindow after old exited.
func requireHandover(t *testing.T, c *Cluster, old *Node) {
	t.Helper()
	start := time.Now()
	last := ""
	for time.Since(start) < handoverWindow {
		leader, err := c.agreedLeader()
		switch {
		case err != nil:
			last = err.Error()
		case leader == old:
			last = "the stopped node is still named leader"
		default:
			t.Logf("leadership passed from %s to %s; the others agreed %v after the exit",
				old.ID, leader.ID, time.Since(start).Round(time.Millisecond))
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Errorf("no new leader within %v after the leader %s exited on SIGTERM (%s): "+
		"leadership was not handed over", handoverWindow, old.ID, last)
}
