// Package scenario runs failover drills against the cluster that
// docker-compose.yml starts. A drill pushes and pulls images through the
// load balancer with its own OCI client. Meanwhile it injects one fault
// with the docker command line (kill, stop, pause, network disconnect),
// heals it and waits until every node is ready. Then it pulls every
// acknowledged push from every node directly and compares manifests and
// blobs byte for byte.
//
// The drills find the containers by the labels that both compose
// implementations set (com.docker.compose.project and .service), read the
// CA and the first user's password out of the init container, and reach
// the nodes through their API ports published on 127.0.0.1.
package scenario
