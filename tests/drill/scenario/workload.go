package scenario

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"sync"
	"time"
)

// Bounds of the workload, whatever the drill's duration.
const (
	// maxOpsPerWorker caps the pushes or pulls of one worker.
	maxOpsPerWorker = 5000
	// opTimeout bounds one push or pull, all its requests together.
	opTimeout = 60 * time.Second
	// failurePause keeps a worker from spinning while the registry is
	// unavailable.
	failurePause = 100 * time.Millisecond
	// maxErrorSamples is how many distinct error messages a report keeps.
	maxErrorSamples = 10
)

// opKind is a push or a pull.
type opKind int

const (
	opPush opKind = iota
	opPull
)

// op is one finished push or pull.
type op struct {
	kind       opKind
	start, end time.Time
	ok         bool
}

// Workload pushes new images and pulls acknowledged ones through the load
// balancer while a drill runs.
type Workload struct {
	client  *Client
	repo    string
	pushers int
	pullers int
	seed    uint64

	mu       sync.Mutex
	ops      []op
	acked    []*Image
	errors   map[string]int
	lostRead []string // acknowledged images that a pull found missing or changed
	Counts   Counts
}

// NewWorkload returns a workload that pushes to repo with pushers
// workers and pulls with pullers workers. seed makes the image content
// reproducible.
func NewWorkload(repo string, pushers, pullers int, seed uint64) *Workload {
	return &Workload{
		repo: repo, pushers: pushers, pullers: pullers, seed: seed,
		errors: make(map[string]int),
	}
}

// Run drives traffic through client until ctx ends or every worker hit
// maxOpsPerWorker.
func (w *Workload) Run(ctx context.Context, client *Client) {
	w.client = client
	var wg sync.WaitGroup
	for i := range w.pushers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			w.pushLoop(ctx, i)
		}()
	}
	for i := range w.pullers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			w.pullLoop(ctx, i)
		}()
	}
	wg.Wait()
}

func (w *Workload) pushLoop(ctx context.Context, worker int) {
	rng := rand.New(rand.NewPCG(w.seed, uint64(worker)))
	for n := 0; n < maxOpsPerWorker && ctx.Err() == nil; n++ {
		img := newImage(rng, w.repo, fmt.Sprintf("w%d-%d", worker, n), n)
		if err := img.build(); err != nil {
			w.noteError(err)
			return
		}
		start := time.Now()
		opCtx, cancel := context.WithTimeout(ctx, opTimeout)
		err := img.push(opCtx, w.client)
		cancel()
		if ctx.Err() != nil && err != nil {
			// Cut off by the end of the drill, not by the registry.
			return
		}
		w.record(op{kind: opPush, start: start, end: time.Now(), ok: err == nil}, err)
		if err == nil {
			w.mu.Lock()
			w.acked = append(w.acked, img)
			w.mu.Unlock()
		} else {
			pause(ctx, failurePause)
		}
	}
}

func (w *Workload) pullLoop(ctx context.Context, worker int) {
	rng := rand.New(rand.NewPCG(w.seed^0x9e3779b97f4a7c15, uint64(worker)))
	for n := 0; n < maxOpsPerWorker && ctx.Err() == nil; n++ {
		img := w.randomAcked(rng)
		if img == nil {
			pause(ctx, failurePause)
			continue
		}
		start := time.Now()
		opCtx, cancel := context.WithTimeout(ctx, opTimeout)
		err := img.check(opCtx, w.client, false)
		cancel()
		if ctx.Err() != nil && err != nil {
			return
		}
		w.record(op{kind: opPull, start: start, end: time.Now(), ok: err == nil}, err)
		var mismatch *mismatchError
		if errors.Is(err, ErrNotFound) || errors.As(err, &mismatch) {
			w.mu.Lock()
			w.lostRead = append(w.lostRead, fmt.Sprintf("%s:%s: %v", img.Repo, img.Tag, err))
			w.mu.Unlock()
		}
		if err != nil {
			pause(ctx, failurePause)
		}
	}
}

func (w *Workload) randomAcked(rng *rand.Rand) *Image {
	w.mu.Lock()
	defer w.mu.Unlock()
	if len(w.acked) == 0 {
		return nil
	}
	return w.acked[rng.IntN(len(w.acked))]
}

func (w *Workload) record(o op, err error) {
	w.mu.Lock()
	w.ops = append(w.ops, o)
	w.mu.Unlock()
	if err != nil {
		w.noteError(err)
	}
}

func (w *Workload) noteError(err error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	msg := err.Error()
	if _, ok := w.errors[msg]; ok || len(w.errors) < maxErrorSamples {
		w.errors[msg]++
	}
}

// Acked returns the images whose push the registry acknowledged.
func (w *Workload) Acked() []*Image {
	w.mu.Lock()
	defer w.mu.Unlock()
	return append([]*Image(nil), w.acked...)
}

// snapshot returns the operations so far, for progress and the report.
func (w *Workload) snapshot() []op {
	w.mu.Lock()
	defer w.mu.Unlock()
	return append([]op(nil), w.ops...)
}

// tally counts operations by kind and outcome.
type tally struct {
	PushesOK     int `json:"pushes_ok"`
	PushesFailed int `json:"pushes_failed"`
	PullsOK      int `json:"pulls_ok"`
	PullsFailed  int `json:"pulls_failed"`
}

func count(ops []op) tally {
	var t tally
	for _, o := range ops {
		switch {
		case o.kind == opPush && o.ok:
			t.PushesOK++
		case o.kind == opPush:
			t.PushesFailed++
		case o.ok:
			t.PullsOK++
		default:
			t.PullsFailed++
		}
	}
	return t
}

// pause sleeps for d or until ctx ends.
func pause(ctx context.Context, d time.Duration) {
	select {
	case <-ctx.Done():
	case <-time.After(d):
	}
}
