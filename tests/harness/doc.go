// Package harness runs Flotilla nodes as child processes for end-to-end
// tests, and drives real registry clients against them.
//
// Binary builds ./cmd/flotilla once per test process. StartNode starts
// "flotilla serve" on a loopback port picked at run time, with TLS from a
// self-signed certificate, htpasswd authentication and S3 or filesystem
// storage, all configured through REGISTRY_* environment variables and
// kept in the test's temporary folder. Tools runs crane, oras, regctl,
// skopeo and other clients with a private HOME that trusts the node's CA.
// The image helpers make random OCI images, write them as OCI layouts or
// docker-archive tarballs, and check what a client pulled.
//
// A package that uses the harness calls Main from its TestMain, so the
// binary built for the run is removed afterwards.
package harness
