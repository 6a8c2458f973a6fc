package cluster

import (
	"fmt"
	"math"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/anishathalye/porcupine"
)

// TagInput is an operation on one tag: a write of a manifest digest (a
// manifest PUT by tag) or a read (a manifest GET by tag).
type TagInput struct {
	Write  bool
	Tag    string
	Digest string // the digest written; empty for a read
}

// TagOutput is the result of a tag operation.
type TagOutput struct {
	// Digest is what a read returned, empty for "tag not found".
	Digest string
	// Unknown marks a write whose outcome the client does not know: it
	// failed or timed out after the request was sent, so the write may
	// have been applied, later or never.
	Unknown bool
}

// TagModel is the sequential specification of the tag index: each tag is
// a register that holds a manifest digest, or nothing before the first
// write. The history is partitioned by tag, since tags are independent.
//
// A write with an unknown outcome is recorded with an infinite return
// time, so the checker may place it anywhere after its call, including
// after every other operation, which is the same as never applying it.
var TagModel = porcupine.Model{
	Partition: partitionByTag,
	Init:      func() any { return "" },
	Step: func(state, input, output any) (bool, any) {
		in := input.(TagInput)
		if in.Write {
			return true, in.Digest
		}
		out := output.(TagOutput)
		return out.Digest == state.(string), state
	},
	Equal: func(a, b any) bool { return a.(string) == b.(string) },
	DescribeOperation: func(input, output any) string {
		in := input.(TagInput)
		out := output.(TagOutput)
		if in.Write {
			if out.Unknown {
				return fmt.Sprintf("put %s=%s (outcome unknown)", in.Tag, short(in.Digest))
			}
			return fmt.Sprintf("put %s=%s", in.Tag, short(in.Digest))
		}
		return fmt.Sprintf("get %s -> %s", in.Tag, short(out.Digest))
	},
	DescribeState: func(state any) string { return short(state.(string)) },
}

func partitionByTag(history []porcupine.Operation) [][]porcupine.Operation {
	byTag := map[string][]porcupine.Operation{}
	var tags []string
	for _, op := range history {
		tag := op.Input.(TagInput).Tag
		if _, ok := byTag[tag]; !ok {
			tags = append(tags, tag)
		}
		byTag[tag] = append(byTag[tag], op)
	}
	sort.Strings(tags)
	out := make([][]porcupine.Operation, 0, len(tags))
	for _, tag := range tags {
		out = append(out, byTag[tag])
	}
	return out
}

// short returns the start of a digest's hex part, or "(none)".
func short(d string) string {
	if d == "" {
		return "(none)"
	}
	if _, hex, ok := strings.Cut(d, ":"); ok && len(hex) > 12 {
		return hex[:12]
	}
	return d
}

// History records tag operations with their call and return times, for
// TagModel. It is safe for concurrent use. The number of operations per
// tag is capped so the check stays fast: Full reports when a tag's
// quota is used up.
type History struct {
	start  time.Time
	perTag int

	mu     sync.Mutex
	ops    []porcupine.Operation
	counts map[string]int
	stats  HistoryStats
}

// HistoryStats counts the operations of a History by outcome.
type HistoryStats struct {
	Writes        int
	UnknownWrites int
	Reads         int
	// Dropped counts operations that were not recorded: reads that
	// failed, and requests that never reached a node.
	Dropped int
}

// NewHistory returns an empty history with a cap of perTag operations
// per tag.
func NewHistory(perTag int) *History {
	return &History{start: time.Now(), perTag: perTag, counts: map[string]int{}}
}

// Now returns the time since the history began, in nanoseconds on the
// monotonic clock.
func (h *History) Now() int64 {
	return time.Since(h.start).Nanoseconds()
}

// Full reports whether tag has reached the cap.
func (h *History) Full(tag string) bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.counts[tag] >= h.perTag
}

// AddWrite records a write of digest to tag by client, sent to the
// node named target. A write that did not return 201 is recorded with an
// unknown outcome and an infinite return time.
func (h *History) AddWrite(client int, target, tag, digest string, call, ret int64, ok bool) {
	op := porcupine.Operation{
		ClientId: client,
		Metadata: target,
		Input:    TagInput{Write: true, Tag: tag, Digest: digest},
		Call:     call,
		Output:   TagOutput{Unknown: !ok},
		Return:   ret,
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	if !ok {
		op.Return = math.MaxInt64
		h.stats.UnknownWrites++
	}
	h.stats.Writes++
	h.add(op)
}

// AddRead records a read of tag by client from the node named target
// that returned digest (empty for 404).
func (h *History) AddRead(client int, target, tag, digest string, call, ret int64) {
	op := porcupine.Operation{
		ClientId: client,
		Metadata: target,
		Input:    TagInput{Tag: tag},
		Call:     call,
		Output:   TagOutput{Digest: digest},
		Return:   ret,
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	h.stats.Reads++
	h.add(op)
}

// Drop counts an operation that is left out of the history.
func (h *History) Drop() {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.stats.Dropped++
}

func (h *History) add(op porcupine.Operation) {
	h.ops = append(h.ops, op)
	h.counts[op.Input.(TagInput).Tag]++
}

// Operations returns a copy of the recorded operations.
func (h *History) Operations() []porcupine.Operation {
	h.mu.Lock()
	defer h.mu.Unlock()
	return append([]porcupine.Operation(nil), h.ops...)
}

// Stats returns the counters.
func (h *History) Stats() HistoryStats {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.stats
}

// CheckResult is the outcome of CheckLinearizable.
type CheckResult struct {
	Result porcupine.CheckResult
	Info   porcupine.LinearizationInfo
	// Elapsed is how long the checker ran.
	Elapsed time.Duration
}

// CheckLinearizable checks ops against TagModel within timeout. A
// result of porcupine.Unknown means the checker ran out of time.
func CheckLinearizable(ops []porcupine.Operation, timeout time.Duration) CheckResult {
	start := time.Now()
	result, info := porcupine.CheckOperationsVerbose(TagModel, ops, timeout)
	return CheckResult{Result: result, Info: info, Elapsed: time.Since(start)}
}

// ExplainStaleReads describes up to limit reads of ops that no order can
// explain, each with the writes that prove it. Such a read returned the
// value of a write w1, or the initial state, although another write w2
// completed after w1 completed and before the read began. Only this
// simple pattern is found, so the list may be empty for an illegal
// history: the checker's result is the verdict.
func ExplainStaleReads(ops []porcupine.Operation, limit int) []string {
	writes := map[string][]porcupine.Operation{} // tag -> completed writes
	byDigest := map[string]porcupine.Operation{}
	for _, op := range ops {
		in := op.Input.(TagInput)
		if in.Write {
			byDigest[in.Digest] = op
			if !op.Output.(TagOutput).Unknown {
				writes[in.Tag] = append(writes[in.Tag], op)
			}
		}
	}
	var out []string
	for _, r := range ops {
		in := r.Input.(TagInput)
		if in.Write {
			continue
		}
		got := r.Output.(TagOutput).Digest
		source, known := byDigest[got]
		if got != "" && !known {
			out = append(out, fmt.Sprintf("read of %s on %v at %s returned %s, which no client wrote",
				in.Tag, r.Metadata, ms(r.Call), short(got)))
		}
		for _, w2 := range writes[in.Tag] {
			w2Digest := w2.Input.(TagInput).Digest
			if w2Digest == got || w2.Return >= r.Call {
				continue
			}
			if got != "" && (!known || source.Return >= w2.Call) {
				continue
			}
			what := "the initial state (no tag)"
			if got != "" {
				what = fmt.Sprintf("%s, written on %v from %s to %s", short(got), source.Metadata,
					ms(source.Call), ms(source.Return))
			}
			out = append(out, fmt.Sprintf("read of %s on %v from %s to %s returned %s; "+
				"but %s was written on %v from %s to %s, after that and before the read",
				in.Tag, r.Metadata, ms(r.Call), ms(r.Return), what, short(w2Digest), w2.Metadata,
				ms(w2.Call), ms(w2.Return)))
			break
		}
		if len(out) >= limit {
			break
		}
	}
	return out
}

// ms formats a history time in milliseconds.
func ms(ns int64) string {
	return fmt.Sprintf("%.1fms", float64(ns)/1e6)
}
