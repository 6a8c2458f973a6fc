package scenario

import (
	"context"
	"fmt"
	"io"
	"sort"
	"sync"
	"time"
)

// Options tune a drill. The zero value of a field means its default.
type Options struct {
	// Hold is how long the fault lasts (default 10 s).
	Hold time.Duration
	// Warmup is the traffic before the fault (default 3 s), Cooldown the
	// traffic after the cluster is ready again (default 3 s).
	Warmup, Cooldown time.Duration
	// ReadyTimeout bounds each wait for the cluster to be ready
	// (default 90 s).
	ReadyTimeout time.Duration
	// Pushers and Pullers are the workload's workers (default 2 and 1).
	Pushers, Pullers int
	// Progress receives a status line every second and the timeline
	// events; nil shows nothing.
	Progress io.Writer
}

func (o Options) withDefaults() Options {
	def := func(d *time.Duration, v time.Duration) {
		if *d <= 0 {
			*d = v
		}
	}
	def(&o.Hold, 10*time.Second)
	def(&o.Warmup, 3*time.Second)
	def(&o.Cooldown, 3*time.Second)
	def(&o.ReadyTimeout, 90*time.Second)
	if o.Pushers <= 0 {
		o.Pushers = 2
	}
	if o.Pullers <= 0 {
		o.Pullers = 1
	}
	if o.Progress == nil {
		o.Progress = io.Discard
	}
	return o
}

// Run runs one drill: traffic through the load balancer, the fault, the
// wait until every node is ready, more traffic, and the verification of
// every acknowledged push on every node. The error reports a drill that
// could not run. A drill that ran and lost data returns a report whose
// Passed is false.
func Run(ctx context.Context, c *Cluster, s Scenario, opts Options) (*Report, error) {
	opts = opts.withDefaults()
	r := &Report{Scenario: s.Name, Proves: s.Proves, Started: time.Now()}
	var mu sync.Mutex
	event := func(format string, args ...any) {
		e := Event{AtMS: time.Since(r.Started).Milliseconds(), Text: fmt.Sprintf(format, args...)}
		mu.Lock()
		r.Events = append(r.Events, e)
		mu.Unlock()
		fmt.Fprintf(opts.Progress, "%6.1fs  %s\n", float64(e.AtMS)/1000, e.Text)
	}

	event("waiting for every node to be ready")
	if _, err := c.WaitReady(ctx, opts.ReadyTimeout); err != nil {
		return nil, err
	}
	w := NewWorkload(fmt.Sprintf("drill/%s-%d", s.Name, r.Started.Unix()),
		opts.Pushers, opts.Pullers, uint64(r.Started.UnixNano()))
	client, err := c.BalancerClient(ctx, &w.Counts)
	if err != nil {
		return nil, err
	}
	defer client.Close()

	trafficCtx, stopTraffic := context.WithCancel(ctx)
	defer stopTraffic()
	trafficDone := make(chan struct{})
	go func() {
		defer close(trafficDone)
		w.Run(trafficCtx, client)
	}()
	stopProgress := showProgress(opts.Progress, w, r.Started)
	defer stopProgress()

	event("traffic started: %d pushers, %d pullers through the load balancer", opts.Pushers, opts.Pullers)
	pause(ctx, opts.Warmup)
	f := &fault{cluster: c, hold: opts.Hold, readyTimeout: opts.ReadyTimeout, event: event}
	faultStart := time.Now()
	injectErr := s.inject(ctx, f)
	healed := time.Now()
	r.Target = f.target
	if injectErr != nil {
		event("fault injection failed: %v", injectErr)
	}
	took, readyErr := c.WaitReady(ctx, opts.ReadyTimeout)
	r.RecoveryMS = took.Milliseconds()
	if readyErr == nil {
		event("every node ready %s after the fault was healed", time.Since(healed).Round(time.Millisecond))
		pause(ctx, opts.Cooldown)
	} else {
		event("%v", readyErr)
	}
	stopTraffic()
	<-trafficDone
	stopProgress()
	event("traffic stopped")

	r.fill(w, faultStart)
	if readyErr == nil {
		event("verifying %d acknowledged pushes on every node", r.Acknowledged)
		r.Nodes, err = verify(ctx, c, w.Acked())
		if err != nil {
			event("verification failed: %v", err)
		}
	}
	r.judge(injectErr, readyErr, err)
	r.DurationMS = time.Since(r.Started).Milliseconds()
	event("done: %s", r.verdict())
	return r, nil
}

// showProgress prints a status line every second until the returned
// function is called; calling it again does nothing.
func showProgress(out io.Writer, w *Workload, start time.Time) (stop func()) {
	done := make(chan struct{})
	var once sync.Once
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		tick := time.NewTicker(time.Second)
		defer tick.Stop()
		for {
			select {
			case <-done:
				return
			case <-tick.C:
				t := count(w.snapshot())
				fmt.Fprintf(out, "%6.1fs    push ok %d failed %d | pull ok %d failed %d | requests %d failed %d\n",
					time.Since(start).Seconds(), t.PushesOK, t.PushesFailed, t.PullsOK, t.PullsFailed,
					w.Counts.Sent.Load(), w.Counts.Failed.Load())
			}
		}
	}()
	return func() {
		once.Do(func() { close(done) })
		wg.Wait()
	}
}

// unavailability returns the longest stretch after faultStart without a
// successful operation, measured from faultStart or from one success to
// the next success. With no success after faultStart, it is the time from
// faultStart to the last operation's end.
func unavailability(ops []op, faultStart time.Time) time.Duration {
	var ends []time.Time
	var last time.Time
	for _, o := range ops {
		if o.end.After(last) {
			last = o.end
		}
		if o.ok && o.end.After(faultStart) {
			ends = append(ends, o.end)
		}
	}
	if len(ends) == 0 {
		return last.Sub(faultStart)
	}
	sort.Slice(ends, func(i, j int) bool { return ends[i].Before(ends[j]) })
	longest := ends[0].Sub(faultStart)
	for i := 1; i < len(ends); i++ {
		longest = max(longest, ends[i].Sub(ends[i-1]))
	}
	return longest
}

// failureSpan returns the first and last failed operation's end relative
// to faultStart, or false when none failed after it.
func failureSpan(ops []op, faultStart time.Time) (first, last time.Duration, ok bool) {
	for _, o := range ops {
		if o.ok || o.end.Before(faultStart) {
			continue
		}
		at := o.end.Sub(faultStart)
		if !ok || at < first {
			first = at
		}
		if !ok || at > last {
			last = at
		}
		ok = true
	}
	return first, last, ok
}
