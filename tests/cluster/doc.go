// Package cluster runs Flotilla clusters as child processes on loopback
// and tests them under faults.
//
// Start launches three nodes (or more) that share one S3 bucket, each on
// its own address 127.0.0.(k+1) with mutual TLS between nodes, and waits
// for a leader. Nodes can be killed, stopped, paused, restarted, wiped,
// added and cut off from each other with iptables rules (Partition).
// StartProxy puts a round-robin HTTPS reverse proxy in front of them, as a
// load balancer would be. Client is a small OCI Distribution client for
// chunked uploads and digest-checked pulls, and History with TagModel
// records tag reads and writes for a linearizability check with
// porcupine.
//
// The tests use the binary that package harness builds, and external
// tools found in PATH (versitygw, conformance, crane, oras, iptables). A
// missing tool skips a test, or fails it with FLOTILLA_REQUIRE_TOOLS=1.
package cluster
