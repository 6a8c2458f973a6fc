// Command drill runs failover drills against the compose cluster while it
// pushes and pulls images. For each drill it reports the requests sent and
// failed, the unavailability window, and whether every acknowledged push is
// still on every node, byte for byte. See docs/drills.md.
//
//	go run ./tests/drill -scenario kill-leader
//	go run ./tests/drill -scenario all -json reports.json
//
// It exits 0 when every drill passed, 1 when one failed and 2 on a usage
// error.
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/flotilla-registry/flotilla/tests/drill/scenario"
)

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

func run(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("drill", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var names []string
	for _, s := range scenario.Scenarios {
		names = append(names, s.Name)
	}
	name := fs.String("scenario", "", "drill to run: "+strings.Join(names, ", ")+", or all")
	project := fs.String("project", envOr("FLOTILLA_COMPOSE_PROJECT", "flotilla"),
		"compose project `NAME` of the cluster (env FLOTILLA_COMPOSE_PROJECT)")
	jsonPath := fs.String("json", "", "write the reports as a JSON array to `FILE` (- for standard output)")
	quiet := fs.Bool("quiet", false, "print only the reports, no progress")
	var opts scenario.Options
	fs.DurationVar(&opts.Hold, "hold", 10*time.Second, "how long each fault lasts")
	fs.DurationVar(&opts.Warmup, "warmup", 3*time.Second, "traffic before the fault")
	fs.DurationVar(&opts.Cooldown, "cooldown", 3*time.Second, "traffic after the cluster is ready again")
	fs.IntVar(&opts.Pushers, "pushers", 2, "concurrent pushing workers")
	fs.IntVar(&opts.Pullers, "pullers", 1, "concurrent pulling workers")
	timeout := fs.Duration("timeout", 10*time.Minute, "upper bound of the whole run")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if *name == "" || fs.NArg() > 0 {
		fmt.Fprintln(stderr, "drill: -scenario is required and no other arguments are accepted")
		fs.Usage()
		return 2
	}
	selected := scenario.Scenarios
	if *name != "all" {
		s, err := scenario.Find(*name)
		if err != nil {
			fmt.Fprintf(stderr, "drill: %v\n", err)
			return 2
		}
		selected = []scenario.Scenario{s}
	}
	if !*quiet {
		opts.Progress = stderr
	}

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	ctx, cancel := context.WithTimeout(ctx, *timeout)
	defer cancel()
	cluster, err := scenario.Open(ctx, *project)
	if err != nil {
		fmt.Fprintf(stderr, "drill: %v\n", err)
		return 1
	}
	var reports []*scenario.Report
	failed := false
	for _, s := range selected {
		fmt.Fprintf(stderr, "== drill %s\n", s.Name)
		r, err := scenario.Run(ctx, cluster, s, opts)
		if err != nil {
			fmt.Fprintf(stderr, "drill %s: %v\n", s.Name, err)
			failed = true
			continue
		}
		reports = append(reports, r)
		failed = failed || !r.Passed
		fmt.Fprintln(stdout)
		_ = r.WriteText(stdout)
	}
	if *jsonPath != "" {
		if err := writeJSON(*jsonPath, stdout, reports); err != nil {
			fmt.Fprintf(stderr, "drill: %v\n", err)
			return 1
		}
	}
	if failed {
		return 1
	}
	return 0
}

func writeJSON(path string, stdout io.Writer, reports []*scenario.Report) error {
	data, err := json.MarshalIndent(reports, "", "  ")
	if err != nil {
		return err
	}
	data = append(data, '\n')
	if path == "-" {
		_, err = stdout.Write(data)
		return err
	}
	return os.WriteFile(path, data, 0o644)
}

func envOr(key, def string) string {
	if v := os.Getenv(key); v != "" {
		return v
	}
	return def
}
