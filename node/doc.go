// Package node serves one node's HTTP API: the OCI Distribution API with
// the Docker Registry HTTP API V2 behaviour that docker relies on, the user
// admin API, and health checks.
//
// Every handler parses its request, calls one lower-level function of the
// consensus or blobstore packages, and either writes the response or returns
// an error. One function, writeError, turns every error into a status and
// an OCI error body, so no handler picks a status for a failure itself.
package node
