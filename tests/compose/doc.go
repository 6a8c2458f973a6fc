// Package compose contains the tests of the container image and of the
// cluster that docker-compose.yml starts. They run the failover drills of
// tests/drill/scenario, the Docker client against the load balancer under
// a name the engine verifies, and the registry:2 tutorial's "docker run"
// with Flotilla's image.
//
// The tests need root, the docker command and a running engine. They use
// the environment that .ci/compose sets:
//
//   - FLOTILLA_COMPOSE_PROJECT names a running cluster started by
//     scripts/compose-up.sh; the cluster tests skip without it.
//   - FLOTILLA_IMAGE is the image for the tutorial test, which skips
//     without it.
//   - FLOTILLA_DRILL_REPORTS, when set, is a folder for the drills' JSON
//     reports.
//
// To make the engine verify TLS, the tests add a line to /etc/hosts that
// points a name at a container's address, and put the CA under
// /etc/docker/certs.d/NAME:PORT/. Both are removed when the test ends;
// each line ends with hostsMarker and each folder holds markerFile, so
// .ci/compose can remove what a killed run left behind.
package compose
