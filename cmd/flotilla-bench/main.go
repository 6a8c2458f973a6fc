// Command flotilla-bench measures an OCI registry: push, pull, manifest
// HEAD, tag writes and listings, with the latency percentiles, errors and
// S3 requests of each phase. See docs/benchmarks.md and
// "flotilla-bench help".
package main

import (
	"os"

	"github.com/flotilla-registry/flotilla/internal/bench"
)

func main() {
	os.Exit(bench.Main(os.Args[1:], os.Stdout, os.Stderr))
}
