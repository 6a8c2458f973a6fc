#!/usr/bin/env bash
# Starts the compose cluster from images built on this machine, for hosts
# that cannot pull images: builds Flotilla, versitygw and Caddy as static
# Go binaries (CGO_ENABLED=0), packs each into an image FROM scratch
# (flotilla:local, versitygw:local, caddy:local), and runs
# "compose up -d" with those images. It waits until the load balancer
# responds and prints how to log in.
#
#   scripts/compose-up.sh               # keeps the volumes of an earlier run
#   scripts/compose-up.sh --fresh       # removes them first: new CA, user, data
#   scripts/compose-up.sh --build-only  # builds the images, starts nothing
#
# Environment: FLOTILLA_COMPOSE_PROJECT (default flotilla) names the
# compose project; FLOTILLA_PORT (default 5000) is the load balancer's port
# on the host; FLOTILLA_TOOLS_CACHE (default ~/.cache/flotilla-tools) keeps
# the versitygw and Caddy binaries between runs, since Caddy takes minutes
# to compile.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."

VERSITYGW_VERSION=v1.8.0
CADDY_VERSION=v2.11.9
PROJECT="${FLOTILLA_COMPOSE_PROJECT:-flotilla}"
PORT="${FLOTILLA_PORT:-5000}"
TOOLS_CACHE="${FLOTILLA_TOOLS_CACHE:-${HOME}/.cache/flotilla-tools}"
READY_TIMEOUT=180

fresh=0
build_only=0
for arg in "$@"; do
	case "${arg}" in
	--fresh) fresh=1 ;;
	--build-only) build_only=1 ;;
	-h | --help)
		sed -n '2,17p' "$0" | sed 's/^# \{0,1\}//'
		exit 0
		;;
	*)
		echo "compose-up.sh: unknown argument ${arg}; use --fresh, --build-only or --help" >&2
		exit 2
		;;
	esac
done

# compose runs "docker compose" where the plugin exists, else the
# standalone docker-compose.
compose() {
	if docker compose version >/dev/null 2>&1; then
		docker compose -p "${PROJECT}" "$@"
	else
		docker-compose -p "${PROJECT}" "$@"
	fi
}

# static_tool NAME PACKAGE VERSION prints the path of a static build of
# PACKAGE@VERSION in the cache, building it first when it is missing.
static_tool() {
	local name=$1 package=$2 version=$3
	local dir="${TOOLS_CACHE}/static/${name}/${version}"
	# .ci/run installs some tools to NAME/VERSION/bin; such a binary is
	# reused when it is a static build.
	local installed="${TOOLS_CACHE}/${name}/${version}/bin/${name}"
	if [[ ! -x "${dir}/${name}" && -x "${installed}" ]] &&
		go version -m "${installed}" | grep -q 'CGO_ENABLED=0'; then
		echo "${installed}"
		return
	fi
	if [[ ! -x "${dir}/${name}" ]]; then
		echo "building ${package}@${version} (static)" >&2
		local tmp
		mkdir -p "${dir}"
		tmp=$(mktemp -d "${dir}/.build.XXXXXX")
		CGO_ENABLED=0 GOBIN="${tmp}" GOFLAGS=-buildvcs=false \
			go install -trimpath -ldflags "-s -w" "${package}@${version}" >&2
		mv "${tmp}/${name}" "${dir}/${name}"
		rm -rf "${tmp}"
	fi
	echo "${dir}/${name}"
}

# check_static fails unless the binary was built with CGO_ENABLED=0, the
# only kind that runs in an image FROM scratch.
check_static() {
	if ! go version -m "$1" | grep -q 'CGO_ENABLED=0'; then
		echo "compose-up.sh: $1 is not a static build (CGO_ENABLED=0)" >&2
		return 1
	fi
}

stage=$(mktemp -d)
trap 'rm -rf "${stage}"' EXIT
rootfs="${stage}/flotilla/rootfs"

build_images() {
	mkdir -p "${rootfs}/usr/bin" "${rootfs}/etc/docker/registry" "${rootfs}/var/lib/registry"
	mkdir -m 1777 "${rootfs}/tmp"
	echo "building flotilla (static)"
	CGO_ENABLED=0 GOFLAGS=-buildvcs=false go build -trimpath \
		-ldflags "-s -w -X main.version=$(git describe --always --dirty 2>/dev/null || echo dev)" \
		-o "${rootfs}/usr/bin/flotilla" ./cmd/flotilla
	ln -s flotilla "${rootfs}/usr/bin/htpasswd"
	install -m 0644 deploy/config.yml "${rootfs}/etc/docker/registry/config.yml"
	check_static "${rootfs}/usr/bin/flotilla"

	mkdir -p "${stage}/versitygw" "${stage}/caddy"
	cp "$(static_tool versitygw github.com/versity/versitygw/cmd/versitygw "${VERSITYGW_VERSION}")" \
		"${stage}/versitygw/versitygw"
	cp "$(static_tool caddy github.com/caddyserver/caddy/v2/cmd/caddy "${CADDY_VERSION}")" \
		"${stage}/caddy/caddy"
	check_static "${stage}/versitygw/versitygw"
	check_static "${stage}/caddy/caddy"

	# flotilla:latest is the compose file's default, so that
	# "compose run init ..." works without FLOTILLA_IMAGE.
	build_image flotilla:local deploy/Dockerfile.local "${stage}/flotilla" flotilla:latest
	build_image versitygw:local deploy/versitygw.Dockerfile "${stage}/versitygw"
	build_image caddy:local deploy/caddy.Dockerfile "${stage}/caddy"
}

# build_image TAG DOCKERFILE CONTEXT [TAG...] builds the image, gives it
# every TAG, and removes the image that the first TAG named before, unless
# a container or another tag still uses it.
build_image() {
	local tag=$1 dockerfile=$2 context=$3 old new extra
	shift 3
	old=$(docker image inspect -f '{{.Id}}' "${tag}" 2>/dev/null || true)
	new=$(docker build -q -t "${tag}" -f "${dockerfile}" "${context}")
	for extra in "$@"; do
		docker tag "${tag}" "${extra}"
	done
	if [[ -n "${old}" && "${old}" != "${new}" ]]; then
		docker rmi "${old}" >/dev/null 2>&1 || true
	fi
}

# wait_ready polls /readyz through the load balancer until a node responds
# with 200, and fails after READY_TIMEOUT seconds.
wait_ready() {
	local deadline=$((SECONDS + READY_TIMEOUT))
	while ((SECONDS < deadline)); do
		if "${rootfs}/usr/bin/flotilla" healthcheck "https://127.0.0.1:${PORT}/readyz" >/dev/null 2>&1; then
			return 0
		fi
		sleep 2
	done
	echo "compose-up.sh: the load balancer did not report a ready node within ${READY_TIMEOUT} s" >&2
	compose ps >&2
	compose logs --tail 30 >&2
	return 1
}

start=${SECONDS}
build_images
if ((build_only)); then
	echo "images flotilla:local (also flotilla:latest), versitygw:local and caddy:local built in $((SECONDS - start)) s"
	exit 0
fi
export FLOTILLA_IMAGE=flotilla:local VERSITYGW_IMAGE=versitygw:local CADDY_IMAGE=caddy:local
export FLOTILLA_PORT="${PORT}"

# docker-compose 1.29 fails on newer engines when it recreates a
# container, so the old containers are always removed first.
if ((fresh)); then
	compose down -v --remove-orphans
else
	compose down --remove-orphans
fi
compose up -d
wait_ready
echo "cluster ${PROJECT} ready at https://localhost:${PORT} after $((SECONDS - start)) s"
echo "user:      ${FLOTILLA_FIRST_USER:-flotilla} (if init created it)"
echo "password:  docker-compose -p ${PROJECT} run --rm --no-deps -T init show-password"
echo "CA:        docker-compose -p ${PROJECT} run --rm --no-deps -T init show-ca > flotilla-ca.crt"
