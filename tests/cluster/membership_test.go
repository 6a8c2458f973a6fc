package cluster

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/flotilla-registry/flotilla/tests/harness"
)

// cliTimeout bounds one run of the flotilla CLI.
const cliTimeout = 30 * time.Second

// Raft settings of TestWipedNodeRejoins: every node takes a snapshot
// after a few entries and keeps almost no log behind it, so a node that
// starts empty can only catch up from a snapshot.
var snapshotEnv = []string{
	"REGISTRY_CLUSTER_SNAPSHOTTHRESHOLD=16",
	"REGISTRY_CLUSTER_SNAPSHOTINTERVAL=200ms",
	"REGISTRY_CLUSTER_TRAILINGLOGS=4",
}

// TestWipedNodeRejoins deletes a follower's data folder and restarts it
// with the same id and address after the leader compacted its log: the
// follower must rejoin, catch up from the leader's snapshot and serve
// the same tags as before.
func TestWipedNodeRejoins(t *testing.T) {
	c := Start(t, Options{Env: snapshotEnv})
	ctx, cancel := context.WithTimeout(t.Context(), 3*time.Minute)
	defer cancel()
	leader := c.WaitLeader(t)
	var acked ackedSet
	for i := range 6 {
		img := harness.RandomImage(t, harness.ImageOptions{Layers: 2, LayerSize: 64 << 10})
		repo, tag := fmt.Sprintf("wiped/repo%d", i%2), fmt.Sprintf("v%d", i)
		if err := leader.Client().PushImage(ctx, repo, tag, img, 0); err != nil {
			t.Fatalf("push %s:%s: %v", repo, tag, err)
		}
		acked.add(repo, tag, img)
	}
	st := waitCompacted(ctx, t, leader)
	t.Logf("leader %s: snapshot index %d, first log index %d, commit index %d",
		leader.ID, st.SnapshotIndex, st.FirstLogIndex, st.CommitIndex)

	f := c.Followers(leader)[0]
	f.Kill(t)
	f.Wipe(t)
	f.Restart(t)
	verifyAcked(ctx, t, []*Node{f}, acked.list(), true)
	requireServers(ctx, t, c.Members(), "n1", "n2", "n3")
	// Raft logs this line on a follower that restored a snapshot sent by
	// the leader; the log since the restart must hold it.
	logData, err := os.ReadFile(f.LogFile)
	if err != nil {
		t.Fatal(err)
	}
	sinceRestart := string(logData)
	if i := strings.LastIndex(sinceRestart, "=== cluster harness: "+f.ID+" start"); i >= 0 {
		sinceRestart = sinceRestart[i:]
	}
	if !strings.Contains(sinceRestart, "Installed remote snapshot") {
		t.Errorf("%s caught up without installing the leader's snapshot; its log since the restart:\n%s",
			f.ID, truncate(sinceRestart, 8<<10))
	}
	if _, err := os.Stat(f.DataDir + "/admin-token"); err != nil {
		t.Errorf("the wiped node wrote no new admin token: %v", err)
	}
}

// waitCompacted waits until n has a snapshot and has dropped the first
// log entry, so a peer that needs index 1 must get the snapshot.
func waitCompacted(ctx context.Context, t *testing.T, n *Node) Status {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		st, err := n.Status(ctx)
		if err == nil && st.SnapshotIndex > 0 && st.FirstLogIndex > 1 {
			return st
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s compacted no log within 30 s: status %+v, err %v", n.ID, st, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// TestMembershipChangeUnderLoad adds a fourth node, started with an
// empty data folder and the others as peers, removes n1 with "flotilla
// cluster remove", and adds n1 back, wiped, with "flotilla cluster
// join", while clients push and pull through the proxy. Every
// acknowledged push must be on every member afterwards.
func TestMembershipChangeUnderLoad(t *testing.T) {
	c := Start(t, Options{})
	proxy := StartProxy(t, c)
	ctx, cancel := context.WithTimeout(t.Context(), 4*time.Minute)
	defer cancel()
	n1, n2 := c.Node("n1"), c.Node("n2")

	load := newPushPullLoad(proxy.Client(), "membership/images", 3, 1000, true)
	load.start(ctx)
	defer load.finish()
	time.Sleep(time.Second)

	n4 := c.AddNode(t, "n4", c.Members()...)
	c.WaitReady(t, n4)
	requireServers(ctx, t, c.Members(), "n1", "n2", "n3", "n4")
	proxy.SetBackends(c.Members()...)
	t.Logf("n4 joined; load so far: %s", &load.stats)
	time.Sleep(time.Second)

	// An operator takes the node out of the load balancer first.
	proxy.SetBackends(c.Node("n2"), c.Node("n3"), n4)
	runCLI(ctx, t, "cluster", "remove", "--url", n2.URL, "--cacert", c.APICertFile, "--datadir", n2.DataDir, "n1")
	c.MarkRemoved(n1)
	requireServers(ctx, t, c.Members(), "n2", "n3", "n4")
	if err := n1.Stop(); err != nil {
		t.Errorf("stop the removed n1: %v", err)
	}
	c.WaitLeader(t)
	t.Logf("n1 removed; load so far: %s", &load.stats)

	out := runCLI(ctx, t, "cluster", "status", "--url", n4.URL, "--cacert", c.APICertFile,
		"--datadir", n4.DataDir, "--json")
	st, err := readStatus(strings.NewReader(out))
	if err != nil {
		t.Errorf("flotilla cluster status --json: %v", err)
	} else if ids := sortedIDs(st); !slices.Equal(ids, []string{"n2", "n3", "n4"}) {
		t.Errorf("flotilla cluster status lists %v, want [n2 n3 n4]", ids)
	}

	// n1 comes back empty, added by the operator before it starts.
	n1.Wipe(t)
	runCLI(ctx, t, "cluster", "join", "--url", n4.URL, "--cacert", c.APICertFile, "--datadir", n4.DataDir,
		"n1", n1.ClusterAddr)
	c.mu.Lock()
	n1.removed = false
	c.mu.Unlock()
	n1.Peers = []string{n2.ClusterAddr, c.Node("n3").ClusterAddr, n4.ClusterAddr}
	c.Reconfigure(n1)
	n1.Restart(t)
	requireServers(ctx, t, c.Members(), "n1", "n2", "n3", "n4")
	proxy.SetBackends(c.Members()...)
	time.Sleep(time.Second)

	load.finish()
	st2 := proxy.Stats()
	t.Logf("load: %s; proxy: %d requests, per node %v, %d failed at the backend",
		&load.stats, st2.Requests, st2.PerBackend, st2.BackendErrors)
	if n := load.stats.FailedPushes.Load() + load.stats.FailedPulls.Load(); n != 0 {
		t.Errorf("%d pushes or pulls failed after retries, want 0:\n%s", n, strings.Join(load.stats.errorList(), "\n"))
	}
	if load.stats.Pushes.Load() == 0 {
		t.Error("no push was acknowledged during the membership changes")
	}
	verifyAcked(ctx, t, c.Members(), load.acked.list(), false)
}

// requireServers waits until every one of nodes lists exactly the ids
// as voters in its cluster status.
func requireServers(ctx context.Context, t *testing.T, nodes []*Node, ids ...string) {
	t.Helper()
	want := slices.Clone(ids)
	slices.Sort(want)
	deadline := time.Now().Add(30 * time.Second)
	for _, n := range nodes {
		for {
			probeCtx, cancel := context.WithTimeout(ctx, probeTimeout)
			st, err := n.Status(probeCtx)
			cancel()
			var problem string
			switch {
			case err != nil:
				problem = err.Error()
			case !slices.Equal(sortedIDs(st), want):
				problem = fmt.Sprintf("servers %v", sortedIDs(st))
			default:
				for _, srv := range st.Servers {
					if srv.Suffrage != "" && !strings.EqualFold(srv.Suffrage, "voter") {
						problem = fmt.Sprintf("%s has suffrage %q", srv.ID, srv.Suffrage)
					}
				}
			}
			if problem == "" {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("%s: %s, want voters %v", n.ID, problem, want)
			}
			time.Sleep(pollInterval)
		}
	}
}

func sortedIDs(st Status) []string {
	ids := st.ServerIDs()
	slices.Sort(ids)
	return ids
}

// runCLI runs the flotilla binary with args and returns its standard
// output, failing the test when it fails.
func runCLI(ctx context.Context, t *testing.T, args ...string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(ctx, cliTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, harness.Binary(t), args...)
	cmd.Env = filterEnv(filterEnv(os.Environ(), "REGISTRY_"), "FLOTILLA_")
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	t.Logf("$ flotilla %s", strings.Join(args, " "))
	if err != nil {
		t.Fatalf("flotilla %s: %v\nstderr:\n%s\nstdout:\n%s", strings.Join(args, " "), err, stderr.String(), out)
	}
	return string(out)
}
