// Package bench measures an OCI registry through its HTTP API: image push
// and pull, one large streamed layer, manifest HEAD by tag, tag writes,
// and tag and catalog listing. It works against any registry that serves
// the OCI Distribution API, with Basic authentication and TLS, and talks
// to it with net/http directly, so every request is timed as sent.
//
// It also contains the other parts that bench/compare.sh needs. These are
// a raw S3 baseline with minio-go, a reverse proxy that counts the
// requests a registry sends to S3, and a round-robin proxy over several
// nodes. Smaller helpers write test certificates, read process figures
// from /proc, and build the comparison table.
//
// Every load loop is bounded by an operation count and, for timed phases,
// a duration. The command wrapper is cmd/flotilla-bench.
package bench
