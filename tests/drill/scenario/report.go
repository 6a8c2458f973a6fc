package scenario

import (
	"fmt"
	"io"
	"sort"
	"strings"
	"text/tabwriter"
	"time"
)

// Report is the outcome of one drill, printed as text and as JSON.
type Report struct {
	Scenario string `json:"scenario"`
	Proves   string `json:"proves"`
	// Target names the node or service that the fault hit.
	Target     string    `json:"target"`
	Started    time.Time `json:"started"`
	DurationMS int64     `json:"duration_ms"`

	// RequestsSent and RequestsFailed count the workload's HTTP requests;
	// a request failed when it got no response or a 5xx status.
	RequestsSent   int64 `json:"requests_sent"`
	RequestsFailed int64 `json:"requests_failed"`
	Operations     tally `json:"operations"`
	// UnavailableMS is the longest stretch after the fault began in which
	// no push or pull succeeded.
	UnavailableMS int64 `json:"unavailable_ms"`
	// FirstFailureMS and LastFailureMS are the first and last failed
	// operation, relative to the fault's start; -1 when none failed.
	FirstFailureMS int64 `json:"first_failure_ms"`
	LastFailureMS  int64 `json:"last_failure_ms"`
	// RecoveryMS is the time from the healed fault until every node
	// responded to /readyz with 200.
	RecoveryMS int64 `json:"recovery_ms"`

	// Acknowledged counts pushes whose manifest PUT returned 201.
	Acknowledged int `json:"acknowledged_pushes"`
	// Lost counts acknowledged pushes missing or different on at least
	// one node.
	Lost int `json:"lost_pushes"`
	// ReadViolations are pulls during the drill that found an
	// acknowledged image missing or changed.
	ReadViolations []string      `json:"read_violations"`
	Nodes          []NodeCheck   `json:"nodes"`
	Errors         []ErrorSample `json:"errors"`
	// SlowRequests are the slowest requests of at least one second, with
	// AtMS relative to the drill's start.
	SlowRequests []SlowRequest `json:"slow_requests"`
	Events       []Event       `json:"events"`

	Passed  bool   `json:"passed"`
	Failure string `json:"failure,omitempty"`
}

// Event is one line of the drill's timeline.
type Event struct {
	// AtMS is the time since the drill started.
	AtMS int64  `json:"at_ms"`
	Text string `json:"text"`
}

// ErrorSample is one distinct error of the workload and how often it
// occurred.
type ErrorSample struct {
	Count   int    `json:"count"`
	Message string `json:"message"`
}

// fill copies the workload's numbers into r.
func (r *Report) fill(w *Workload, faultStart time.Time) {
	ops := w.snapshot()
	r.RequestsSent = w.Counts.Sent.Load()
	r.RequestsFailed = w.Counts.Failed.Load()
	r.Operations = count(ops)
	r.UnavailableMS = unavailability(ops, faultStart).Milliseconds()
	r.FirstFailureMS, r.LastFailureMS = -1, -1
	if first, last, ok := failureSpan(ops, faultStart); ok {
		r.FirstFailureMS, r.LastFailureMS = first.Milliseconds(), last.Milliseconds()
	}
	r.Acknowledged = len(w.Acked())
	r.SlowRequests = w.Counts.Slow()
	for i := range r.SlowRequests {
		r.SlowRequests[i].AtMS -= r.Started.UnixMilli()
	}
	w.mu.Lock()
	r.ReadViolations = append([]string{}, w.lostRead...)
	for msg, n := range w.errors {
		r.Errors = append(r.Errors, ErrorSample{Count: n, Message: msg})
	}
	w.mu.Unlock()
	sort.Slice(r.Errors, func(i, j int) bool { return r.Errors[i].Count > r.Errors[j].Count })
}

// judge sets Lost, Passed and Failure.
func (r *Report) judge(injectErr, readyErr, verifyErr error) {
	var problems []string
	if injectErr != nil {
		problems = append(problems, "fault injection failed: "+injectErr.Error())
	}
	if readyErr != nil {
		problems = append(problems, "cluster did not recover: "+readyErr.Error())
	}
	if verifyErr != nil {
		problems = append(problems, "verification failed: "+verifyErr.Error())
	}
	if r.Acknowledged == 0 {
		problems = append(problems, "no push was acknowledged")
	}
	for _, n := range r.Nodes {
		r.Lost = max(r.Lost, n.Missing+n.Mismatched)
		if !n.ok(r.Acknowledged) {
			problems = append(problems, fmt.Sprintf("%s: %d missing, %d different, %d not checkable of %d",
				n.Node, n.Missing, n.Mismatched, n.Errors+r.Acknowledged-n.Checked, r.Acknowledged))
		}
	}
	if readyErr == nil && verifyErr == nil && len(r.Nodes) != len(Nodes) {
		problems = append(problems, "not every node was verified")
	}
	if len(r.ReadViolations) > 0 {
		problems = append(problems, fmt.Sprintf("%d pulls found an acknowledged image missing or changed",
			len(r.ReadViolations)))
	}
	r.Passed = len(problems) == 0
	r.Failure = strings.Join(problems, "; ")
}

func (r *Report) verdict() string {
	if r.Passed {
		return fmt.Sprintf("PASS: %d acknowledged pushes present and equal on every node", r.Acknowledged)
	}
	return "FAIL: " + r.Failure
}

// WriteText writes the report for a person.
func (r *Report) WriteText(out io.Writer) error {
	tw := tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)

	fmt.Fprintf(tw, "drill\t%s (target %s)\n", r.Scenario, r.Target)
	fmt.Fprintf(tw, "proves\t%s\n", r.Proves)
	fmt.Fprintf(tw, "duration\t%s\n", ms(r.DurationMS))
	fmt.Fprintf(tw, "requests\t%d sent, %d failed\n", r.RequestsSent, r.RequestsFailed)
	o := r.Operations
	fmt.Fprintf(tw, "pushes\t%d acknowledged, %d failed\n", o.PushesOK, o.PushesFailed)
	fmt.Fprintf(tw, "pulls\t%d ok, %d failed\n", o.PullsOK, o.PullsFailed)
	fmt.Fprintf(tw, "unavailable\t%s (longest time without a successful push or pull after the fault began)\n",
		ms(r.UnavailableMS))
	if r.FirstFailureMS >= 0 {
		fmt.Fprintf(tw, "failures\tfrom %s to %s after the fault began\n", ms(r.FirstFailureMS), ms(r.LastFailureMS))
	} else {
		fmt.Fprintf(tw, "failures\tnone\n")
	}
	fmt.Fprintf(tw, "recovery\t%s from the healed fault until every node was ready\n", ms(r.RecoveryMS))

	for _, n := range r.Nodes {
		fmt.Fprintf(tw, "node %s\t%d of %d checked byte for byte: %d missing, %d different, %d errors\n",
			n.Node, n.Checked, r.Acknowledged, n.Missing, n.Mismatched, n.Errors)
		for _, s := range n.Samples {
			fmt.Fprintf(tw, "\t  %s\n", s)
		}
	}
	for _, v := range r.ReadViolations {
		fmt.Fprintf(tw, "read violation\t%s\n", v)
	}
	for _, s := range r.SlowRequests {
		fmt.Fprintf(tw, "slow request\t%s at %s took %s: %s\n", s.Request, ms(s.AtMS), ms(s.DurationMS), s.Outcome)
	}
	for _, e := range r.Errors {
		fmt.Fprintf(tw, "error ×%d\t%s\n", e.Count, e.Message)
	}
	fmt.Fprintf(tw, "result\t%s\n", r.verdict())
	return tw.Flush()
}

// ms formats milliseconds as seconds.
func ms(v int64) string {
	return fmt.Sprintf("%.3f s", float64(v)/1000)
}
