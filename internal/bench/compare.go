package bench

import (
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
)

// Labels that bench/compare.sh gives the systems it measures, and that
// the comparison table looks for.
const (
	LabelFlotilla  = "flotilla"  // one Flotilla node
	LabelCluster   = "cluster"   // three nodes behind rrproxy
	LabelReference = "reference" // distribution's registry
	LabelS3        = "s3"        // raw S3 with minio-go
	LabelScale     = "scale"     // one Flotilla node with a large index

	// Controls that separate the round-robin proxy's cost from the nodes'.
	LabelFlotillaProxy = "flotilla-rrproxy" // one node behind rrproxy
	LabelClusterDirect = "cluster-direct"   // three nodes, the client taking turns
)

// Results is the content of a results folder: the JSON records that the
// workloads, procstat and sysinfo wrote, and skipped-LABEL.txt files
// that explain a section that did not run.
type Results struct {
	Reports   []*Report
	Snapshots []ProcessSnapshot
	Systems   []SystemInfo
	// Skipped maps a label to the reason its section did not run.
	Skipped map[string]string
}

// LoadResults reads every *.json and skipped-*.txt file of dir.
func LoadResults(dir string) (*Results, error) {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil, fmt.Errorf("read results folder: %w", err)
	}
	res := &Results{Skipped: map[string]string{}}
	for _, e := range entries {
		name := e.Name()
		path := filepath.Join(dir, name)
		switch {
		case strings.HasPrefix(name, "skipped-") && strings.HasSuffix(name, ".txt"):
			b, err := os.ReadFile(path)
			if err != nil {
				return nil, err
			}
			label := strings.TrimSuffix(strings.TrimPrefix(name, "skipped-"), ".txt")
			res.Skipped[label] = strings.TrimSpace(string(b))
		case strings.HasSuffix(name, ".json"):
			if err := res.add(path); err != nil {
				return nil, err
			}
		}
	}
	slices.SortFunc(res.Reports, func(a, b *Report) int { return a.Started.Compare(b.Started) })
	slices.SortFunc(res.Snapshots, func(a, b ProcessSnapshot) int { return a.Time.Compare(b.Time) })
	slices.SortFunc(res.Systems, func(a, b SystemInfo) int { return a.Time.Compare(b.Time) })
	return res, nil
}

// add reads one JSON record and files it by its kind.
func (r *Results) add(path string) error {
	b, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	var head struct {
		Kind string `json:"kind"`
	}
	if err := json.Unmarshal(b, &head); err != nil {
		return fmt.Errorf("%s: %w", path, err)
	}
	switch head.Kind {
	case "workload":
		var rep Report
		if err := json.Unmarshal(b, &rep); err != nil {
			return fmt.Errorf("%s: %w", path, err)
		}
		r.Reports = append(r.Reports, &rep)
	case "processes":
		var s ProcessSnapshot
		if err := json.Unmarshal(b, &s); err != nil {
			return fmt.Errorf("%s: %w", path, err)
		}
		r.Snapshots = append(r.Snapshots, s)
	case "system":
		var s SystemInfo
		if err := json.Unmarshal(b, &s); err != nil {
			return fmt.Errorf("%s: %w", path, err)
		}
		r.Systems = append(r.Systems, s)
	}
	return nil
}

// result returns the latest result called name of a report with label.
func (r *Results) result(label, name string) (Result, *Report, bool) {
	for i := len(r.Reports) - 1; i >= 0; i-- {
		rep := r.Reports[i]
		if rep.Label != label {
			continue
		}
		for _, res := range rep.Results {
			if res.Name == name {
				return res, rep, true
			}
		}
	}
	return Result{}, nil, false
}

// metric returns a figure of one result when the result exists and had
// successful operations.
func (r *Results) metric(label, name string, get func(Result) (float64, bool)) (float64, bool) {
	res, _, ok := r.result(label, name)
	if !ok || res.Ops == 0 {
		return 0, false
	}
	return get(res)
}

func opsPerSec(r Result) (float64, bool) { return r.OpsPerSec, true }
func mibPerSec(r Result) (float64, bool) { return r.MiBPerSec, true }
func p99(r Result) (float64, bool)       { return r.Latency.P99, true }
func seconds(r Result) (float64, bool)   { return r.Seconds, true }

func s3PerOp(r Result) (float64, bool) {
	if r.S3 == nil {
		return 0, false
	}
	return r.S3.PerOp, true
}

// peakNodeRSS returns the highest peak RSS in MiB of the processes named
// node* in the snapshots with label.
func (r *Results) peakNodeRSS(label string) (float64, bool) {
	peak, found := int64(0), false
	for _, s := range r.Snapshots {
		if s.Label != label {
			continue
		}
		for _, p := range s.Processes {
			if strings.HasPrefix(p.Name, "node") || p.Name == "registry" {
				peak, found = max(peak, p.PeakRSS), true
			}
		}
	}
	return float64(peak) / mib, found
}

// nodeRSS returns the current RSS in MiB of the first node* process in
// the latest snapshot with label.
func (r *Results) nodeRSS(label string) (float64, bool) {
	for i := len(r.Snapshots) - 1; i >= 0; i-- {
		s := r.Snapshots[i]
		if s.Label != label {
			continue
		}
		for _, p := range s.Processes {
			if strings.HasPrefix(p.Name, "node") {
				return float64(p.RSS) / mib, true
			}
		}
	}
	return 0, false
}

// scaleTags returns the tags and repositories that the scale run created.
func (r *Results) scaleTags() (tags, repos int64) {
	res, rep, ok := r.result(LabelScale, "seed-repos")
	if ok {
		perRepo, _ := strconv.ParseInt(rep.Params["tags-per-repo"], 10, 64)
		repos = res.Ops
		tags = res.Ops * max(perRepo, 1)
	}
	if res, _, ok := r.result(LabelScale, "seed-tags"); ok {
		tags += res.Ops
	}
	return tags, repos
}

// row is one line of the comparison table. The value is measured, or
// measured divided by baseline when baseline is set.
type row struct {
	metric   string
	system   string
	unit     string
	measured func(*Results) (float64, bool)
	baseline func(*Results) (float64, bool)
	// op is ">=", "<=" or "" for a line without a target.
	op     string
	target float64
	// note is added to the status, for example the size a target
	// applies to.
	note string
}

func from(label, name string, get func(Result) (float64, bool)) func(*Results) (float64, bool) {
	return func(r *Results) (float64, bool) { return r.metric(label, name, get) }
}

// comparisonRows returns the lines of the table, targets first.
func comparisonRows(r *Results) []row {
	rows := []row{
		{metric: "Large layer push vs raw S3 PUT, one node", system: LabelFlotilla, unit: "MiB/s",
			measured: from(LabelFlotilla, "large-push", mibPerSec), baseline: from(LabelS3, "large-put", mibPerSec),
			op: ">=", target: 0.8},
		{metric: "Large layer pull vs raw S3 GET, one node", system: LabelFlotilla, unit: "MiB/s",
			measured: from(LabelFlotilla, "large-pull", mibPerSec), baseline: from(LabelS3, "large-get", mibPerSec),
			op: ">=", target: 0.8},
		{metric: "Small images push vs reference, one node", system: LabelFlotilla, unit: "images/s",
			measured: from(LabelFlotilla, "push", opsPerSec), baseline: from(LabelReference, "push", opsPerSec),
			op: ">=", target: 3},
		{metric: "Small images pull vs reference, one node", system: LabelFlotilla, unit: "images/s",
			measured: from(LabelFlotilla, "pull", opsPerSec), baseline: from(LabelReference, "pull", opsPerSec),
			op: ">=", target: 2},
		{metric: "Manifest HEAD by tag vs reference, one node, bcrypt cost 5", system: LabelFlotilla, unit: "req/s",
			measured: from(LabelFlotilla, "head", opsPerSec), baseline: from(LabelReference, "head", opsPerSec),
			op: ">=", target: 20},
		{metric: "Manifest HEAD by tag vs reference, three nodes, bcrypt cost 5", system: LabelCluster, unit: "req/s",
			measured: from(LabelCluster, "head", opsPerSec), baseline: from(LabelReference, "head", opsPerSec),
			op: ">=", target: 10},
		{metric: "Manifest HEAD by tag vs reference, one node, bcrypt cost 10", system: LabelFlotilla, unit: "req/s",
			measured: from(LabelFlotilla, "head-cost10", opsPerSec), baseline: from(LabelReference, "head-cost10", opsPerSec),
			op: ">=", target: 20},
		{metric: "Manifest HEAD by tag vs reference, three nodes, bcrypt cost 10", system: LabelCluster, unit: "req/s",
			measured: from(LabelCluster, "head-cost10", opsPerSec), baseline: from(LabelReference, "head-cost10", opsPerSec),
			op: ">=", target: 10},
		{metric: "S3 requests per pushed image of three layers, one node", system: LabelFlotilla, unit: "requests",
			measured: from(LabelFlotilla, "push", s3PerOp), op: "<=", target: 15},
		{metric: "S3 requests per pushed image of three layers, three nodes", system: LabelCluster, unit: "requests",
			measured: from(LabelCluster, "push", s3PerOp), op: "<=", target: 15},
		{metric: "Tag writes through three nodes", system: LabelCluster, unit: "tags/s",
			measured: from(LabelCluster, "tag-write", opsPerSec), op: ">=", target: 1000},
		{metric: "Tag write p99 latency through three nodes", system: LabelCluster, unit: "ms",
			measured: from(LabelCluster, "tag-write", p99), op: "<=", target: 50},
		{metric: "Peak RSS per node, one node", system: LabelFlotilla, unit: "MiB",
			measured: func(r *Results) (float64, bool) { return r.peakNodeRSS(LabelFlotilla) }, op: "<=", target: 128},
		{metric: "Peak RSS per node, three nodes (highest node)", system: LabelCluster, unit: "MiB",
			measured: func(r *Results) (float64, bool) { return r.peakNodeRSS(LabelCluster) }, op: "<=", target: 128},
	}
	tags, repos := r.scaleTags()
	size := fmt.Sprintf("at %d tags in %d repositories; the target is for 1,000,000 tags in 100,000", tags, repos)
	scaleOp := "<="
	if tags < 1_000_000 {
		scaleOp = ""
	}
	rows = append(rows,
		row{metric: "Index RSS after seeding, one node", system: LabelScale, unit: "MiB",
			measured: func(r *Results) (float64, bool) { return r.nodeRSS(LabelScale + "-seeded") },
			op:       scaleOp, target: 1536, note: size},
		row{metric: "Restart until a tag is readable, one node", system: LabelScale, unit: "s",
			measured: from(LabelScale+"-restart", "ready", seconds), op: "<=", target: 10, note: size},
	)
	return append(rows, informationRows()...)
}

// informationRows are comparisons without a target.
func informationRows() []row {
	return []row{
		{metric: "Large layer push vs raw S3 PUT, three nodes", system: LabelCluster, unit: "MiB/s",
			measured: from(LabelCluster, "large-push", mibPerSec), baseline: from(LabelS3, "large-put", mibPerSec)},
		{metric: "Large layer pull vs raw S3 GET, three nodes", system: LabelCluster, unit: "MiB/s",
			measured: from(LabelCluster, "large-pull", mibPerSec), baseline: from(LabelS3, "large-get", mibPerSec)},
		{metric: "Large layer push vs raw S3 PUT, reference", system: LabelReference, unit: "MiB/s",
			measured: from(LabelReference, "large-push", mibPerSec), baseline: from(LabelS3, "large-put", mibPerSec)},
		{metric: "Large layer pull vs raw S3 GET, reference", system: LabelReference, unit: "MiB/s",
			measured: from(LabelReference, "large-pull", mibPerSec), baseline: from(LabelS3, "large-get", mibPerSec)},
		{metric: "Small images push vs reference, three nodes", system: LabelCluster, unit: "images/s",
			measured: from(LabelCluster, "push", opsPerSec), baseline: from(LabelReference, "push", opsPerSec)},
		{metric: "Small images pull vs reference, three nodes", system: LabelCluster, unit: "images/s",
			measured: from(LabelCluster, "pull", opsPerSec), baseline: from(LabelReference, "pull", opsPerSec)},
		{metric: "S3 requests per pushed image of three layers, reference", system: LabelReference, unit: "requests",
			measured: from(LabelReference, "push", s3PerOp)},
		{metric: "Tag writes vs reference, one node", system: LabelFlotilla, unit: "tags/s",
			measured: from(LabelFlotilla, "tag-write", opsPerSec), baseline: from(LabelReference, "tag-write", opsPerSec)},
		{metric: "Tag list vs reference, one node", system: LabelFlotilla, unit: "listings/s",
			measured: from(LabelFlotilla, "list-tags", opsPerSec), baseline: from(LabelReference, "list-tags", opsPerSec)},
		{metric: "Catalog vs reference, one node", system: LabelFlotilla, unit: "listings/s",
			measured: from(LabelFlotilla, "catalog", opsPerSec), baseline: from(LabelReference, "catalog", opsPerSec)},
		{metric: "Manifest HEAD by tag, one node through rrproxy vs direct", system: LabelFlotillaProxy, unit: "req/s",
			measured: from(LabelFlotillaProxy, "head", opsPerSec), baseline: from(LabelFlotilla, "head", opsPerSec)},
		{metric: "Manifest HEAD by tag vs reference, three nodes without rrproxy", system: LabelClusterDirect, unit: "req/s",
			measured: from(LabelClusterDirect, "head", opsPerSec), baseline: from(LabelReference, "head", opsPerSec)},
		{metric: "Tag writes to three nodes without rrproxy", system: LabelClusterDirect, unit: "tags/s",
			measured: from(LabelClusterDirect, "tag-write", opsPerSec)},
		{metric: "Tag write p99 latency, three nodes without rrproxy", system: LabelClusterDirect, unit: "ms",
			measured: from(LabelClusterDirect, "tag-write", p99)},
		{metric: "Peak RSS, reference", system: LabelReference, unit: "MiB",
			measured: func(r *Results) (float64, bool) { return r.peakNodeRSS(LabelReference) }},
	}
}

// evaluate returns the measured, baseline and compared values of a row
// as text, and its status.
func (row row) evaluate(r *Results) (measured, baseline, value, status string) {
	m, ok := row.measured(r)
	if !ok {
		return "—", "—", "—", r.missing(row.system)
	}
	measured = fmt.Sprintf("%s %s", formatNumber(m), row.unit)
	baseline, value = "—", measured
	v := m
	if row.baseline != nil {
		b, ok := row.baseline(r)
		if !ok || b == 0 {
			return measured, "—", "—", "no baseline: " + r.missing(baselineLabel(row))
		}
		baseline = fmt.Sprintf("%s %s", formatNumber(b), row.unit)
		v = m / b
		value = fmt.Sprintf("%.2f×", v)
	}
	switch row.op {
	case ">=":
		if v >= row.target {
			status = "met"
		} else {
			status = fmt.Sprintf("**missed**: %.0f%% below the target", 100*(row.target-v)/row.target)
		}
	case "<=":
		if v <= row.target {
			status = "met"
		} else {
			status = fmt.Sprintf("**missed**: %.0f%% above the target", 100*(v-row.target)/row.target)
		}
	default:
		status = "no target"
	}
	if row.note != "" {
		status += " (" + row.note + ")"
	}
	return measured, baseline, value, status
}

func baselineLabel(row row) string {
	if strings.Contains(row.metric, "raw S3") {
		return LabelS3
	}
	return LabelReference
}

// missing explains why a system has no figure.
func (r *Results) missing(label string) string {
	if reason, ok := r.Skipped[label]; ok {
		return "skipped: " + reason
	}
	return "no data"
}

// targetText returns the target column of a row.
func (row row) targetText() string {
	if row.op == "" {
		return "—"
	}
	op := map[string]string{">=": "≥", "<=": "≤"}[row.op]
	if row.baseline != nil {
		return fmt.Sprintf("%s %s×", op, formatNumber(row.target))
	}
	return fmt.Sprintf("%s %s %s", op, formatNumber(row.target), row.unit)
}

func formatNumber(v float64) string {
	switch {
	case v >= 100:
		return strconv.FormatFloat(v, 'f', 0, 64)
	case v >= 10:
		return strconv.FormatFloat(v, 'f', 1, 64)
	default:
		return strconv.FormatFloat(v, 'f', 2, 64)
	}
}

// WriteComparison writes the comparison as Markdown: the targets, every
// result, the processes and the machine.
func WriteComparison(w io.Writer, r *Results) {
	fmt.Fprintln(w, "## Targets")
	fmt.Fprintln(w)
	fmt.Fprintln(w, "| Metric | Measured | Baseline | Value | Target | Status |")
	fmt.Fprintln(w, "|---|---|---|---|---|---|")
	for _, row := range comparisonRows(r) {
		m, b, v, status := row.evaluate(r)
		fmt.Fprintf(w, "| %s | %s | %s | %s | %s | %s |\n", row.metric, m, b, v, row.targetText(), status)
	}
	if len(r.Skipped) > 0 {
		fmt.Fprintln(w)
		labels := make([]string, 0, len(r.Skipped))
		for label := range r.Skipped {
			labels = append(labels, label)
		}
		slices.Sort(labels)
		for _, label := range labels {
			fmt.Fprintf(w, "- Section %s skipped: %s\n", label, r.Skipped[label])
		}
	}
	writeResultsTable(w, r)
	writeProcessTable(w, r)
	writeMachine(w, r)
}

func writeResultsTable(w io.Writer, r *Results) {
	fmt.Fprintln(w)
	fmt.Fprintln(w, "## All results")
	fmt.Fprintln(w)
	fmt.Fprintln(w, "| System | Phase | Ops | Errors | Ops/s | MiB/s | p50 ms | p90 ms | p99 ms | S3 req/op | Client CPU s | Load before → after |")
	fmt.Fprintln(w, "|---|---|---|---|---|---|---|---|---|---|---|---|")
	for _, rep := range r.Reports {
		for _, res := range rep.Results {
			s3 := "—"
			if res.S3 != nil {
				s3 = formatNumber(res.S3.PerOp)
			}
			mibs := "—"
			if res.Bytes > 0 {
				mibs = formatNumber(res.MiBPerSec)
			}
			fmt.Fprintf(w, "| %s | %s | %d %s | %d | %s | %s | %s | %s | %s | %s | %.1f | %.2f → %.2f |\n",
				rep.Label, res.Name, res.Ops, plural(res.Unit, res.Ops), res.Errors, formatNumber(res.OpsPerSec), mibs,
				formatNumber(res.Latency.P50), formatNumber(res.Latency.P90), formatNumber(res.Latency.P99), s3,
				rep.ClientCPUSeconds, rep.LoadAvgBefore[0], rep.LoadAvgAfter[0])
		}
		if rep.Error != "" {
			fmt.Fprintf(w, "| %s | %s | stopped: %s | | | | | | | | | |\n", rep.Label, rep.Workload, rep.Error)
		}
	}
	var notes []string
	for _, rep := range r.Reports {
		for _, res := range rep.Results {
			for _, e := range res.ErrorSamples {
				notes = append(notes, fmt.Sprintf("- %s %s error: %s", rep.Label, res.Name, e))
			}
			if res.S3 != nil && len(res.S3.ByOperation) > 0 {
				notes = append(notes, fmt.Sprintf("- %s %s S3 requests: %s", rep.Label, res.Name, formatOps(res.S3.ByOperation)))
			}
			for _, n := range res.Notes {
				notes = append(notes, fmt.Sprintf("- %s %s: %s", rep.Label, res.Name, n))
			}
		}
	}
	if len(notes) > 0 {
		fmt.Fprintln(w)
		for _, n := range notes {
			fmt.Fprintln(w, n)
		}
	}
}

// writeProcessTable lists each snapshot's processes. CPU time is the
// increase since the previous snapshot of the same process, because the
// S3 server and its proxy run through every section.
func writeProcessTable(w io.Writer, r *Results) {
	if len(r.Snapshots) == 0 {
		return
	}
	fmt.Fprintln(w)
	fmt.Fprintln(w, "## Processes")
	fmt.Fprintln(w)
	fmt.Fprintln(w, "| Section | Process | Peak RSS MiB | RSS MiB | anonymous MiB | file MiB | CPU s in section | Load average |")
	fmt.Fprintln(w, "|---|---|---|---|---|---|---|---|")
	lastCPU := map[int]float64{}
	for _, s := range r.Snapshots {
		for _, p := range s.Processes {
			cpu := p.CPUSeconds - lastCPU[p.PID]
			lastCPU[p.PID] = p.CPUSeconds
			fmt.Fprintf(w, "| %s | %s | %.1f | %.1f | %.1f | %.1f | %.1f | %.2f |\n",
				s.Label, p.Name, float64(p.PeakRSS)/mib, float64(p.RSS)/mib,
				float64(p.RSSAnon)/mib, float64(p.RSSFile)/mib, cpu, s.LoadAvg[0])
		}
	}
}

func writeMachine(w io.Writer, r *Results) {
	if len(r.Systems) == 0 {
		return
	}
	fmt.Fprintln(w)
	fmt.Fprintln(w, "## Machine")
	fmt.Fprintln(w)
	first := r.Systems[0]
	fmt.Fprintf(w, "%d CPUs (%s), %.1f GiB memory, Linux %s, %s.\n",
		first.CPUs, first.CPUModel, float64(first.MemTotal)/(1<<30), first.Kernel, first.GoVersion)
	for _, s := range r.Systems {
		fmt.Fprintf(w, "- %s %s: load average %.2f %.2f %.2f\n",
			s.Label, s.Time.Format("2006-01-02 15:04:05 UTC"), s.LoadAvg[0], s.LoadAvg[1], s.LoadAvg[2])
	}
}

// runReport writes the comparison of a results folder.
func runReport(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("report", flag.ContinueOnError)
	fs.SetOutput(stderr)
	dir := fs.String("dir", "", "results `folder` with the JSON records of one comparison")
	out := fs.String("out", "", "write the Markdown table to this `file` too")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if *dir == "" {
		return exitStatus("report", fmt.Errorf("%w: missing --dir", errUsage), stderr)
	}
	results, err := LoadResults(*dir)
	if err != nil {
		return exitStatus("report", err, stderr)
	}
	var sb strings.Builder
	WriteComparison(&sb, results)
	fmt.Fprint(stdout, sb.String())
	if *out != "" {
		if err := writeFileAtomic(*out, []byte(sb.String())); err != nil {
			return exitStatus("report", err, stderr)
		}
	}
	return 0
}
