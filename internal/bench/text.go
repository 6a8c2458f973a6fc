package bench

import (
	"fmt"
	"io"
	"slices"
	"strings"
)

// printReport writes a report as text, one block per result.
func printReport(w io.Writer, r *Report) {
	label := ""
	if r.Label != "" {
		label = " (" + r.Label + ")"
	}
	fmt.Fprintf(w, "%s against %s%s\n", r.Workload, r.URL, label)
	for _, res := range r.Results {
		fmt.Fprintf(w, "  %-11s %d %s in %.2f s: %.1f %s/s", res.Name, res.Ops, plural(res.Unit, res.Ops),
			res.Seconds, res.OpsPerSec, res.Unit)
		if res.Bytes > 0 {
			fmt.Fprintf(w, ", %.1f MiB/s", res.MiBPerSec)
		}
		l := res.Latency
		fmt.Fprintf(w, "; latency ms p50 %.1f p90 %.1f p99 %.1f max %.1f; errors %d\n", l.P50, l.P90, l.P99, l.Max, res.Errors)
		if res.S3 != nil {
			fmt.Fprintf(w, "  %-11s S3: %.1f requests per %s (%s)\n", "", res.S3.PerOp, res.Unit, formatOps(res.S3.ByOperation))
		}
		for _, n := range res.Notes {
			fmt.Fprintf(w, "  %-11s %s\n", "", n)
		}
		for _, e := range res.ErrorSamples {
			fmt.Fprintf(w, "  %-11s error: %s\n", "", e)
		}
	}
	if r.Error != "" {
		fmt.Fprintf(w, "  stopped: %s\n", r.Error)
	}
	fmt.Fprintf(w, "  client CPU %.1f s, load average %.2f before, %.2f after\n",
		r.ClientCPUSeconds, r.LoadAvgBefore[0], r.LoadAvgAfter[0])
}

// formatOps lists S3 operation counts, largest first.
func formatOps(ops map[string]int64) string {
	names := make([]string, 0, len(ops))
	for name := range ops {
		names = append(names, name)
	}
	slices.SortFunc(names, func(a, b string) int {
		if ops[a] != ops[b] {
			return int(ops[b] - ops[a])
		}
		return strings.Compare(a, b)
	})
	parts := make([]string, len(names))
	for i, name := range names {
		parts[i] = fmt.Sprintf("%s %d", name, ops[name])
	}
	if len(parts) == 0 {
		return "none"
	}
	return strings.Join(parts, ", ")
}

func plural(unit string, n int64) string {
	switch {
	case n == 1 || unit == "":
		return unit
	case strings.HasSuffix(unit, "y"):
		return strings.TrimSuffix(unit, "y") + "ies"
	default:
		return unit + "s"
	}
}
