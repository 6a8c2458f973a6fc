// Package tests holds Flotilla's end-to-end tests. They build the flotilla
// binary, start nodes as child processes on loopback ports (see package
// harness), and drive them with real registry clients: the OCI
// distribution-spec conformance program, crane, oras, regctl and skopeo.
//
// The clients are found in PATH. A test whose client is missing is
// skipped, unless FLOTILLA_REQUIRE_TOOLS=1 is set, as in CI, which then
// fails it. The test that pushes a layer larger than 5 GiB runs only with
// FLOTILLA_LARGE_BLOB=1.
package tests
