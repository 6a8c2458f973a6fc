package bench

import (
	"context"
	"errors"
	"math"
	"slices"
	"sync"
	"sync/atomic"
	"time"
)

// maxErrorSamples is how many error messages a Result keeps.
const maxErrorSamples = 5

const mib = 1 << 20

// Result is the outcome of one measured phase of a workload.
type Result struct {
	// Name identifies the phase, such as "push" or "head".
	Name string `json:"name"`
	// Unit is the name of one operation: "image", "request", "tag",
	// "listing".
	Unit string `json:"unit"`
	// Ops counts successful operations and Errors failed ones.
	Ops    int64 `json:"ops"`
	Errors int64 `json:"errors"`
	// ErrorSamples are the first error messages.
	ErrorSamples []string `json:"error_samples,omitempty"`
	// Seconds is the wall time of the phase.
	Seconds   float64 `json:"seconds"`
	OpsPerSec float64 `json:"ops_per_sec"`
	// Bytes is the blob content sent or received by successful
	// operations, and MiBPerSec the same over Seconds.
	Bytes     int64   `json:"bytes,omitempty"`
	MiBPerSec float64 `json:"mib_per_sec,omitempty"`
	// Latency is over successful operations, in milliseconds.
	Latency Latency `json:"latency_ms"`
	// S3 is the S3 traffic that the phase caused, when the run was
	// given an S3 request counter.
	S3 *S3Usage `json:"s3,omitempty"`
	// Notes hold facts of the phase that fit no field, such as the
	// number of tags a listing returned.
	Notes []string `json:"notes,omitempty"`
}

// Latency is a summary of operation times in milliseconds, with
// nearest-rank percentiles.
type Latency struct {
	Mean float64 `json:"mean"`
	P50  float64 `json:"p50"`
	P90  float64 `json:"p90"`
	P99  float64 `json:"p99"`
	Max  float64 `json:"max"`
}

// summarize returns the latency summary of samples; it sorts them.
func summarize(samples []time.Duration) Latency {
	if len(samples) == 0 {
		return Latency{}
	}
	slices.Sort(samples)
	var sum time.Duration
	for _, s := range samples {
		sum += s
	}
	ms := func(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }
	rank := func(q float64) float64 {
		i := int(math.Ceil(q*float64(len(samples)))) - 1
		return ms(samples[min(max(i, 0), len(samples)-1)])
	}
	return Latency{
		Mean: ms(sum) / float64(len(samples)),
		P50:  rank(0.50),
		P90:  rank(0.90),
		P99:  rank(0.99),
		Max:  ms(samples[len(samples)-1]),
	}
}

// recorder collects the operations of one phase from many goroutines.
type recorder struct {
	maxErrors int64
	cancel    context.CancelFunc

	mu        sync.Mutex
	latencies []time.Duration
	ops       int64
	bytes     int64
	samples   []string
	errors    atomic.Int64
	start     time.Time
	end       time.Time
}

// newRecorder returns a recorder that calls cancel once more than
// maxErrors operations have failed (maxErrors ≤ 0 never cancels).
func newRecorder(maxErrors int, cancel context.CancelFunc) *recorder {
	return &recorder{maxErrors: int64(maxErrors), cancel: cancel, start: time.Now()}
}

// record adds one operation that took d and moved n bytes, or failed
// with err.
func (r *recorder) record(d time.Duration, n int64, err error) {
	if err != nil {
		failed := r.errors.Add(1)
		r.mu.Lock()
		if len(r.samples) < maxErrorSamples {
			r.samples = append(r.samples, err.Error())
		}
		r.mu.Unlock()
		if r.maxErrors > 0 && failed > r.maxErrors && r.cancel != nil {
			r.cancel()
		}
		return
	}
	r.mu.Lock()
	r.latencies = append(r.latencies, d)
	r.ops++
	r.bytes += n
	r.mu.Unlock()
}

// finish stops the clock.
func (r *recorder) finish() { r.end = time.Now() }

// result returns the phase's Result.
func (r *recorder) result(name, unit string) Result {
	r.mu.Lock()
	defer r.mu.Unlock()
	end := r.end
	if end.IsZero() {
		end = time.Now()
	}
	secs := end.Sub(r.start).Seconds()
	res := Result{
		Name:         name,
		Unit:         unit,
		Ops:          r.ops,
		Errors:       r.errors.Load(),
		ErrorSamples: slices.Clone(r.samples),
		Seconds:      secs,
		Bytes:        r.bytes,
		Latency:      summarize(r.latencies),
	}
	if secs > 0 {
		res.OpsPerSec = float64(r.ops) / secs
		res.MiBPerSec = float64(r.bytes) / mib / secs
	}
	return res
}

// opFunc runs operation i on worker w and returns the bytes it moved.
type opFunc func(ctx context.Context, w int, i int64) (int64, error)

// runCount runs operations 0..n-1 on c workers and records them. It
// stops early when ctx ends or too many operations fail.
func runCount(ctx context.Context, c int, n int64, maxErrors int, opTimeout time.Duration, op opFunc) *recorder {
	return run(ctx, c, n, 0, maxErrors, opTimeout, op)
}

// runFor runs operations on c workers until d has passed or maxOps
// operations have started, whichever comes first.
func runFor(ctx context.Context, c int, d time.Duration, maxOps int64, maxErrors int, opTimeout time.Duration, op opFunc) *recorder {
	return run(ctx, c, maxOps, d, maxErrors, opTimeout, op)
}

func run(ctx context.Context, c int, n int64, d time.Duration, maxErrors int, opTimeout time.Duration, op opFunc) *recorder {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	rec := newRecorder(maxErrors, cancel)
	var deadline time.Time
	if d > 0 {
		deadline = rec.start.Add(d)
	}
	var next atomic.Int64
	var wg sync.WaitGroup
	for w := range max(c, 1) {
		wg.Go(func() {
			for ctx.Err() == nil {
				i := next.Add(1) - 1
				if i >= n || (!deadline.IsZero() && time.Now().After(deadline)) {
					return
				}
				opCtx, opCancel := withTimeout(ctx, opTimeout)
				start := time.Now()
				bytes, err := op(opCtx, w, i)
				elapsed := time.Since(start)
				opCancel()
				if err != nil && ctx.Err() != nil && errors.Is(err, context.Canceled) {
					// The phase was stopped; this operation was cut
					// short rather than failed.
					return
				}
				rec.record(elapsed, bytes, err)
			}
		})
	}
	wg.Wait()
	rec.finish()
	return rec
}
