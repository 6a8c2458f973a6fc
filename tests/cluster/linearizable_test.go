package cluster

import (
	"context"
	"fmt"
	"math/rand/v2"
	"net/http"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/anishathalye/porcupine"

	"github.com/flotilla-registry/flotilla/tests/harness"
)

// Settings of the linearizability workload.
const (
	// opsPerTag caps the history of each tag, so the checker stays fast.
	opsPerTag = 500
	// workloadOpTimeout bounds one operation. It is longer than the
	// node's 10 s request timeout, so the client gives up first only on
	// a node that misses that timeout.
	workloadOpTimeout = 12 * time.Second
	// workloadPause is the pause of each worker between operations.
	workloadPause = 15 * time.Millisecond
	// checkTimeout bounds the linearizability check of one history. A
	// check that runs out of time fails the test.
	checkTimeout = 90 * time.Second
)

// tagWorkload writes and reads manifests by tag through several clients
// and records every operation in a History.
type tagWorkload struct {
	repo   string
	tags   []string
	config harness.Blob
	layer  harness.Blob
	// writeShare is the fraction of operations that are writes.
	writeShare float64
	history    *History

	mu        sync.Mutex
	manifests map[string]harness.Blob // digest -> manifest, every write
	// readsByClient counts the successful reads per client name.
	readsByClient map[string]int
}

func newTagWorkload(ctx context.Context, t *testing.T, seed *Client, repo string, tags ...string) *tagWorkload {
	t.Helper()
	config, layer := seedBlobs(ctx, t, seed, repo)
	return &tagWorkload{
		repo: repo, tags: tags, config: config, layer: layer, writeShare: 0.35,
		history:       NewHistory(opsPerTag),
		manifests:     map[string]harness.Blob{},
		readsByClient: map[string]int{},
	}
}

// workerSpec is one worker of a run: its client and what it does.
type workerSpec struct {
	client *Client
	reads  bool
	writes bool
}

// run starts the workers, which stop when stop is closed, every tag is
// full, or ctx ends. It returns a function that waits for them.
func (w *tagWorkload) run(ctx context.Context, t *testing.T, workers []workerSpec, stop <-chan struct{}) (wait func()) {
	var wg sync.WaitGroup
	for id, spec := range workers {
		// The manifests are made here, in the test's goroutine, since
		// making them may fail the test.
		var planned []harness.Blob
		if spec.writes {
			for i := range opsPerTag * len(w.tags) {
				planned = append(planned, tagManifest(t, w.config, w.layer, fmt.Sprintf("%s-c%d-%d", w.repo, id, i)))
			}
		}
		wg.Go(func() { w.work(ctx, id, spec, planned, stop) })
	}
	return wg.Wait
}

func (w *tagWorkload) work(ctx context.Context, id int, spec workerSpec, planned []harness.Blob, stop <-chan struct{}) {
	rng := rand.New(rand.NewPCG(uint64(id), uint64(time.Now().UnixNano())))
	for {
		select {
		case <-stop:
			return
		case <-ctx.Done():
			return
		default:
		}
		var open []string
		for _, tag := range w.tags {
			if !w.history.Full(tag) {
				open = append(open, tag)
			}
		}
		if len(open) == 0 {
			return
		}
		tag := open[rng.IntN(len(open))]
		write := spec.writes && (!spec.reads || rng.Float64() < w.writeShare)
		if write {
			if len(planned) == 0 {
				return
			}
			w.write(ctx, id, spec.client, tag, planned[0])
			planned = planned[1:]
		} else {
			w.read(ctx, id, spec.client, tag)
		}
		time.Sleep(workloadPause)
	}
}

func (w *tagWorkload) write(ctx context.Context, id int, c *Client, tag string, m harness.Blob) {
	w.mu.Lock()
	w.manifests[m.Digest.String()] = m
	w.mu.Unlock()
	opCtx, cancel := context.WithTimeout(ctx, workloadOpTimeout)
	defer cancel()
	call := w.history.Now()
	err := c.PutManifest(opCtx, w.repo, tag, m.MediaType, m.Data)
	ret := w.history.Now()
	if err != nil && IsDialError(err) {
		// The request never reached a node.
		w.history.Drop()
		time.Sleep(50 * time.Millisecond)
		return
	}
	w.history.AddWrite(id, c.Name, tag, m.Digest.String(), call, ret, err == nil)
}

func (w *tagWorkload) read(ctx context.Context, id int, c *Client, tag string) {
	opCtx, cancel := context.WithTimeout(ctx, workloadOpTimeout)
	defer cancel()
	call := w.history.Now()
	_, d, err := c.GetManifest(opCtx, w.repo, tag)
	ret := w.history.Now()
	switch {
	case err == nil:
		w.history.AddRead(id, c.Name, tag, d.String(), call, ret)
	case StatusOf(err) == http.StatusNotFound:
		w.history.AddRead(id, c.Name, tag, "", call, ret)
	default:
		// A failed read returns nothing, so it constrains nothing.
		w.history.Drop()
		if IsDialError(err) {
			time.Sleep(50 * time.Millisecond)
		}
		return
	}
	w.mu.Lock()
	w.readsByClient[c.Name]++
	w.mu.Unlock()
}

// check runs the checker, writes a visualization into the test's
// artifact folder when the history is not linearizable, and returns the
// result.
func (w *tagWorkload) check(t *testing.T) CheckResult {
	t.Helper()
	ops := w.history.Operations()
	res := CheckLinearizable(ops, checkTimeout)
	t.Logf("history: %d operations (%+v), reads per client %v; checker: %s in %v",
		len(ops), w.history.Stats(), w.readsByClient, res.Result, res.Elapsed.Round(time.Millisecond))
	if res.Result == porcupine.Illegal {
		for _, line := range ExplainStaleReads(ops, 5) {
			t.Log(line)
		}
		path := filepath.Join(t.ArtifactDir(), "linearizability.html")
		if err := porcupine.VisualizePath(TagModel, res.Info, path); err != nil {
			t.Logf("write visualization: %v", err)
		} else {
			t.Logf("visualization of the history: %s (kept with go test -artifacts)", path)
		}
	}
	return res
}

// everyNodeWorkers returns two workers per node that read and write.
func everyNodeWorkers(nodes []*Node) []workerSpec {
	var workers []workerSpec
	for _, n := range nodes {
		for i := range 2 {
			client := n.Client()
			if i == 1 {
				// A second client with its own connections.
				client = n.cluster.ClientFor(n.ID, n.URL)
			}
			workers = append(workers, workerSpec{client: client, reads: true, writes: true})
		}
	}
	return workers
}

// TestLinearizableTags checks with porcupine that tag writes and reads
// through every node form a linearizable history under four faults. The
// leader is killed and restarted, the leader or a follower is cut off
// by a partition and healed, and the leader is paused past the election
// timeout and resumed.
func TestLinearizableTags(t *testing.T) {
	c := Start(t, Options{})
	// hold is how long each fault lasts. A partition lasts longer than
	// the 10 s request timeout, so the cut-off node's requests fail
	// with 503 and their writes end with an unknown outcome. Shorter
	// faults stall requests that then finish after the heal.
	faults := []struct {
		name     string
		hold     time.Duration
		firewall bool
		inject   func(t *testing.T) (heal func())
	}{
		{"leader killed", 3 * time.Second, false, func(t *testing.T) func() {
			leader := c.WaitLeader(t)
			leader.Kill(t)
			return func() { leader.Restart(t) }
		}},
		{"leader partitioned", 12 * time.Second, true, func(t *testing.T) func() {
			leader := c.WaitLeader(t)
			c.Partition(t, leader)
			return func() { c.Heal(t, leader) }
		}},
		{"follower partitioned", 12 * time.Second, true, func(t *testing.T) func() {
			follower := c.Followers(c.WaitLeader(t))[0]
			c.Partition(t, follower)
			return func() { c.Heal(t, follower) }
		}},
		{"leader paused", 3 * time.Second, false, func(t *testing.T) func() {
			leader := c.WaitLeader(t)
			leader.Pause(t)
			return func() { leader.Resume(t) }
		}},
	}
	for i, fault := range faults {
		t.Run(fault.name, func(t *testing.T) {
			if fault.firewall {
				RequireFirewall(t)
			}
			ctx, cancel := context.WithTimeout(t.Context(), 3*time.Minute)
			defer cancel()
			c.WaitReady(t)
			leader := c.WaitLeader(t)
			repo := fmt.Sprintf("linear/phase%d", i)
			w := newTagWorkload(ctx, t, leader.Client(), repo, "a", "b", "c", "d", "e", "f")
			stop := make(chan struct{})
			wait := w.run(ctx, t, everyNodeWorkers(c.Members()), stop)

			time.Sleep(2 * time.Second)
			heal := fault.inject(t)
			time.Sleep(fault.hold)
			heal()
			time.Sleep(3 * time.Second)
			close(stop)
			wait()

			res := w.check(t)
			switch res.Result {
			case porcupine.Illegal:
				t.Errorf("history with %s is not linearizable", fault.name)
			case porcupine.Unknown:
				t.Errorf("linearizability checker timed out after %v", checkTimeout)
			}
			if st := w.history.Stats(); st.Writes-st.UnknownWrites == 0 || st.Reads == 0 {
				t.Errorf("history has %+v: too few completed operations to mean anything", st)
			}
			c.WaitReady(t)
		})
	}
}

// TestStaleReadsDetected is the negative control of the linearizability
// check. With REGISTRY_CLUSTER_READS=stale, a follower that is cut off
// keeps serving reads from its old state while writes go on through the
// majority. The checker must find that history not linearizable.
// Otherwise the checker or the workload cannot see stale reads, and the
// positive tests prove nothing.
func TestStaleReadsDetected(t *testing.T) {
	RequireFirewall(t)
	c := Start(t, Options{Reads: "stale"})
	ctx, cancel := context.WithTimeout(t.Context(), 3*time.Minute)
	defer cancel()
	leader := c.WaitLeader(t)
	follower := c.Followers(leader)[0]
	w := newTagWorkload(ctx, t, leader.Client(), "stale/control", "a", "b")

	workers := []workerSpec{
		{client: leader.Client(), writes: true},
		{client: c.ClientFor(leader.ID, leader.URL), writes: true},
		{client: follower.Client(), reads: true},
		{client: c.ClientFor(follower.ID, follower.URL), reads: true},
	}
	stop := make(chan struct{})
	wait := w.run(ctx, t, workers, stop)
	time.Sleep(time.Second)
	c.Partition(t, follower)
	time.Sleep(4 * time.Second)
	close(stop)
	wait()
	c.Heal(t, follower)

	res := w.check(t)
	if w.readsByClient[follower.ID] < 20 {
		t.Errorf("the partitioned follower served %d reads, want at least 20: "+
			"in stale mode it must keep serving them", w.readsByClient[follower.ID])
	}
	switch res.Result {
	case porcupine.Ok:
		t.Errorf("checker found the history linearizable, although %s served reads while cut off from the writes", follower.ID)
	case porcupine.Unknown:
		t.Errorf("linearizability checker timed out after %v", checkTimeout)
	}
}
