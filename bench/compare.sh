#!/usr/bin/env bash
# Compares Flotilla with the reference registry (distribution v3.1.2) and
# with raw S3, on one machine, and writes the comparison table.
#
# It builds flotilla and flotilla-bench, installs versitygw v1.8.0 and the
# reference registry into the tools cache when they are missing, starts
# one versitygw S3 server behind a request-counting proxy, and runs the
# same workloads against:
#   s3         raw S3 PUT and GET with minio-go (the baseline for large layers)
#   flotilla   one Flotilla node
#   cluster    three Flotilla nodes behind a round-robin proxy (skipped,
#              with the reason, when the nodes do not form one cluster)
#   reference  distribution's registry v3.1.2
#   scale      one Flotilla node with a large index: seeding, RSS, restart
# Everything listens on 127.0.0.1 on ports picked at run time, and every
# process it started is stopped when it exits.
#
# Usage: bench/compare.sh [--quick] [--full] [--out DIR] [--skip LIST] [--keep]
# See docs/benchmarks.md for the method and the last results.
set -euo pipefail
# The work folder contains the S3 secret, the htpasswd file and the keys.
umask 077

REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
TOOLS_CACHE="${FLOTILLA_TOOLS_CACHE:-/root/.cache/flotilla-tools}"
VERSITYGW_VERSION=v1.8.0
REGISTRY_VERSION=v3.1.2

# Workload sizes. --quick and --full change them, and each has a flag.
IMAGES=50
LAYERS=3
LAYER_SIZE=1MiB
CLIENTS=8
LARGE_SIZE=1GiB
HEAD_DURATION=15s
TAG_DURATION=15s
TAG_CLIENTS=16
LIST_REPOS=500
LIST_TAGS=2000
LIST_DURATION=10s
SCALE_REPOS=10000
SCALE_TAGS_PER_REPO=10
SCALE_CLIENTS=16
OUT=""
SKIP=""
KEEP=0
PROFILE=1

usage() {
	cat <<EOF
usage: bench/compare.sh [FLAGS]

  --quick              tiny sizes, to check that the script works (about 2 minutes)
  --full               seed 1,000,000 tags in 100,000 repositories in the scale section (about 6 minutes more)
  --out DIR            results folder (default: \$TMPDIR/flotilla-bench-DATE)
  --skip LIST          comma-separated sections to leave out: s3,flotilla,cluster,reference,scale
  --keep               keep the work folder (logs, data) after the run
  --no-profile         do not record CPU and heap profiles of the Flotilla nodes
  --images N           images of the push and pull workload (default ${IMAGES})
  --layer-size SIZE    bytes per layer of those images (default ${LAYER_SIZE})
  --large-size SIZE    size of the large layer (default ${LARGE_SIZE})
  --duration D         duration in whole seconds of the HEAD and tag write phases (default ${HEAD_DURATION})
  --scale-repos N      repositories of the scale section, ${SCALE_TAGS_PER_REPO} tags each (default ${SCALE_REPOS})
EOF
}

while [[ $# -gt 0 ]]; do
	case "$1" in
	--quick)
		IMAGES=6 LAYER_SIZE=64KiB LARGE_SIZE=16MiB HEAD_DURATION=2s TAG_DURATION=2s
		LIST_REPOS=20 LIST_TAGS=50 LIST_DURATION=2s SCALE_REPOS=100 SCALE_TAGS_PER_REPO=3
		;;
	--full) SCALE_REPOS=100000 ;;
	--out) OUT=$2; shift ;;
	--skip) SKIP=$2; shift ;;
	--keep) KEEP=1 ;;
	--no-profile) PROFILE=0 ;;
	--images) IMAGES=$2; shift ;;
	--layer-size) LAYER_SIZE=$2; shift ;;
	--large-size) LARGE_SIZE=$2; shift ;;
	--duration) HEAD_DURATION=$2 TAG_DURATION=$2; shift ;;
	--scale-repos) SCALE_REPOS=$2; shift ;;
	-h | --help) usage; exit 0 ;;
	*) echo "compare.sh: unknown flag $1" >&2; usage >&2; exit 2 ;;
	esac
	shift
done

WORK=$(mktemp -d "${TMPDIR:-/tmp}/flotilla-compare.XXXXXX")
OUT=${OUT:-${TMPDIR:-/tmp}/flotilla-bench-$(date -u +%Y%m%d-%H%M%S)}
mkdir -p "${OUT}"
OUT=$(cd "${OUT}" && pwd)
BIN="${WORK}/bin"
mkdir -p "${BIN}"

# PIDS maps a name to the PID of every server this script started, and
# DEBUG_ADDR a Flotilla node's name to its debug listener (pprof).
declare -A PIDS=()
declare -A DEBUG_ADDR=()

cleanup() {
	local name
	for name in "${!PIDS[@]}"; do
		kill -TERM "${PIDS[$name]}" 2>/dev/null || true
	done
	for name in "${!PIDS[@]}"; do
		wait_exit "${PIDS[$name]}" 10 || kill -KILL "${PIDS[$name]}" 2>/dev/null || true
	done
	if [[ "${KEEP}" == 1 ]]; then
		echo "work folder kept: ${WORK}"
	else
		rm -rf "${WORK}"
	fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

log() { printf '\n=== %s: %s\n' "$(date -u +%H:%M:%S)" "$*"; }

# skipped SECTION reports whether --skip lists the section, and records
# that for the table.
skipped() {
	if [[ ",${SKIP}," == *",$1,"* ]]; then
		echo "left out with --skip" >"${OUT}/skipped-$1.txt"
		return 0
	fi
	return 1
}

# wait_exit PID SECONDS waits for PID to exit; it fails on time-out.
wait_exit() {
	local pid=$1 limit=$2 i
	for ((i = 0; i < limit * 10; i++)); do
		kill -0 "${pid}" 2>/dev/null || return 0
		sleep 0.1
	done
	return 1
}

# start NAME LOGFILE COMMAND... starts a server in the background.
start() {
	local name=$1 logfile=$2
	shift 2
	"$@" >>"${logfile}" 2>&1 &
	PIDS[${name}]=$!
}

# stop NAME sends SIGTERM and waits, then SIGKILL after 30 s.
stop() {
	local name=$1 pid=${PIDS[$1]:-}
	[[ -n "${pid}" ]] || return 0
	kill -TERM "${pid}" 2>/dev/null || true
	if ! wait_exit "${pid}" 30; then
		echo "${name} did not stop within 30 s after SIGTERM; killing it"
		kill -KILL "${pid}" 2>/dev/null || true
	fi
	wait "${pid}" 2>/dev/null || true
	unset "PIDS[${name}]"
}

running() { kill -0 "${PIDS[$1]}" 2>/dev/null; }

bench() { "${BIN}/flotilla-bench" "$@"; }

# run_bench runs a workload and keeps going when it reports errors; the
# table shows them.
run_bench() {
	if ! bench "$@"; then
		echo "!!! flotilla-bench $1 reported errors (see the table)"
	fi
}

# wait_file FILE waits up to 30 s for a file that a proxy writes once it
# listens.
wait_file() {
	local i
	for ((i = 0; i < 300; i++)); do
		[[ -s "$1" ]] && return 0
		sleep 0.1
	done
	echo "!!! $1 was not written within 30 s" >&2
	return 1
}

# install_tool NAME PACKAGE VERSION sets TOOL to the binary, building it
# into the tools cache when it is missing or another version.
install_tool() {
	local name=$1 package=$2 version=$3
	local bin="${TOOLS_CACHE}/${name}/bin/${name}"
	if [[ -x "${bin}" ]] && go version -m "${bin}" | awk '$1 == "mod" { print $3 }' | grep -qxF "${version}"; then
		TOOL=${bin}
		return
	fi
	if [[ -x "${bin}" ]]; then
		bin="${TOOLS_CACHE}/${name}/${version}/bin/${name}"
	fi
	if [[ ! -x "${bin}" ]]; then
		log "installing ${package}@${version}"
		mkdir -p "$(dirname "${bin}")"
		GOBIN="$(dirname "${bin}")" GOFLAGS= go install "${package}@${version}"
	fi
	TOOL=${bin}
}

log "building flotilla and flotilla-bench"
(cd "${REPO_ROOT}" && go build -o "${BIN}/flotilla" ./cmd/flotilla && go build -o "${BIN}/flotilla-bench" ./cmd/flotilla-bench)
install_tool versitygw github.com/versity/versitygw/cmd/versitygw "${VERSITYGW_VERSION}"
VERSITYGW=${TOOL}
install_tool registry github.com/distribution/distribution/v3/cmd/registry "${REGISTRY_VERSION}"
REFERENCE=${TOOL}

bench sysinfo --label before --json "${OUT}/sysinfo-before.json"

# Certificates, users and the S3 server shared by every section.
mkdir -p "${WORK}/tls"
bench gencert --dir "${WORK}/tls" >/dev/null
CA="${WORK}/tls/ca.pem" CERT="${WORK}/tls/cert.pem" KEY="${WORK}/tls/key.pem"
USER5=bench5 USER10=bench10
PASS5=$(head -c 16 /dev/urandom | od -An -tx1 | tr -d ' \n')
PASS10=$(head -c 16 /dev/urandom | od -An -tx1 | tr -d ' \n')
{
	"${BIN}/flotilla" htpasswd -Bbn -C 5 "${USER5}" "${PASS5}"
	"${BIN}/flotilla" htpasswd -Bbn -C 10 "${USER10}" "${PASS10}"
} >"${WORK}/htpasswd"
S3_ACCESS=flotillabench
S3_SECRET=$(head -c 20 /dev/urandom | od -An -tx1 | tr -d ' \n')
export FLOTILLA_BENCH_S3_SECRET_KEY=${S3_SECRET}

log "starting versitygw ${VERSITYGW_VERSION} and the counting S3 proxy"
mkdir -p "${WORK}/s3root"
S3_PORT=$(bench freeport)
start versitygw "${WORK}/versitygw.log" "${VERSITYGW}" --access "${S3_ACCESS}" --secret "${S3_SECRET}" \
	--region us-east-1 --port "127.0.0.1:${S3_PORT}" --keep-alive --quiet posix "${WORK}/s3root"
for ((i = 0; i < 150; i++)); do
	curl -s -o /dev/null "http://127.0.0.1:${S3_PORT}/" && break
	running versitygw || { cat "${WORK}/versitygw.log"; exit 1; }
	sleep 0.1
done
start s3proxy "${WORK}/s3proxy.log" "${BIN}/flotilla-bench" s3proxy --target "http://127.0.0.1:${S3_PORT}" \
	--addr-file "${WORK}/s3proxy.addr" --stats-addr-file "${WORK}/s3proxy-stats.addr"
wait_file "${WORK}/s3proxy.addr"
wait_file "${WORK}/s3proxy-stats.addr"
S3_PROXY=$(cat "${WORK}/s3proxy.addr")
S3_STATS="http://$(cat "${WORK}/s3proxy-stats.addr")/"
for bucket in raw flotilla cluster reference scale; do
	bench mkbucket --s3-endpoint "http://${S3_PROXY}" --s3-access-key "${S3_ACCESS}" --s3-bucket "${bucket}" >/dev/null
done

# s3_env BUCKET prints the REGISTRY_* settings of Flotilla's S3 store.
s3_env() {
	printf '%s\n' REGISTRY_STORAGE=s3 \
		"REGISTRY_STORAGE_S3_ACCESSKEY=${S3_ACCESS}" "REGISTRY_STORAGE_S3_SECRETKEY=${S3_SECRET}" \
		REGISTRY_STORAGE_S3_REGION=us-east-1 "REGISTRY_STORAGE_S3_REGIONENDPOINT=http://${S3_PROXY}" \
		"REGISTRY_STORAGE_S3_BUCKET=$1" REGISTRY_STORAGE_S3_FORCEPATHSTYLE=true REGISTRY_STORAGE_S3_SECURE=false
}

# start_node NAME BUCKET HTTP_PORT RAFT_PORT DEBUG_PORT [EXTRA_ENV...]
# starts a Flotilla node with TLS, htpasswd auth and S3 storage in a
# clean environment, with its debug listener (pprof) on DEBUG_PORT.
start_node() {
	local name=$1 bucket=$2 http_port=$3 raft_port=$4
	DEBUG_ADDR[${name}]="127.0.0.1:$5"
	shift 5
	local dir="${WORK}/${name}"
	mkdir -p "${dir}"
	local -a env_vars
	mapfile -t env_vars < <(s3_env "${bucket}")
	env_vars+=(
		"REGISTRY_HTTP_ADDR=127.0.0.1:${http_port}"
		"REGISTRY_HTTP_TLS_CERTIFICATE=${CERT}" "REGISTRY_HTTP_TLS_KEY=${KEY}"
		REGISTRY_AUTH=htpasswd REGISTRY_AUTH_HTPASSWD_REALM=flotilla-bench
		"REGISTRY_AUTH_HTPASSWD_PATH=${WORK}/htpasswd"
		REGISTRY_STORAGE_DELETE_ENABLED=true
		"REGISTRY_STORAGE_FILESYSTEM_ROOTDIRECTORY=${dir}"
		"REGISTRY_CLUSTER_DATADIR=${dir}/raft"
		"REGISTRY_CLUSTER_NODEID=${name%%-*}"
		"REGISTRY_CLUSTER_BIND=127.0.0.1:${raft_port}"
		"REGISTRY_HTTP_DEBUG_ADDR=${DEBUG_ADDR[${name}]}"
		"$@"
	)
	start "${name}" "${dir}/flotilla.log" env -i "PATH=${PATH}" "HOME=${HOME}" "TMPDIR=${TMPDIR:-/tmp}" \
		"${env_vars[@]}" "${BIN}/flotilla" serve
}

# wait_ready URL NAME... waits about a minute until the registry at URL
# accepts the bench user's credentials (GET /v2/ returns 200), and fails
# when one of the named processes exits first.
wait_ready() {
	local url=$1 name
	shift
	for ((i = 0; i < 60; i++)); do
		for name in "$@"; do
			running "${name}" || return 1
		done
		FLOTILLA_BENCH_PASSWORD=${PASS5} bench wait --url "${url}" --cacert "${CA}" --username "${USER5}" \
			--status 200 --timeout 1s --quiet >/dev/null 2>&1 && return 0
		sleep 0.1
	done
	return 1
}

# profile_start LABEL PHASE SECONDS NODE... records a CPU profile of each
# Flotilla node in the background; profile_wait waits for them.
PROFILERS=()
profile_start() {
	local label=$1 phase=$2 seconds=$3 node
	shift 3
	[[ "${PROFILE}" == 1 ]] || return 0
	mkdir -p "${OUT}/profiles"
	for node in "$@"; do
		curl -s --max-time $((seconds + 15)) -o "${OUT}/profiles/${label}-${phase}-${node%%-*}.cpu.pprof" \
			"http://${DEBUG_ADDR[${node}]}/debug/pprof/profile?seconds=${seconds}" &
		PROFILERS+=($!)
	done
}
profile_wait() {
	local pid
	for pid in "${PROFILERS[@]}"; do
		wait "${pid}" || echo "a profile download failed"
	done
	PROFILERS=()
}

# heap_profile LABEL NODE saves a heap profile of a Flotilla node.
heap_profile() {
	[[ "${PROFILE}" == 1 ]] || return 0
	mkdir -p "${OUT}/profiles"
	curl -s --max-time 30 -o "${OUT}/profiles/$1-${2%%-*}.heap.pprof" \
		"http://${DEBUG_ADDR[$2]}/debug/pprof/heap" || echo "heap profile of $2 failed"
}

# seconds_of DURATION prints the whole seconds of a duration such as 15s.
seconds_of() { echo "${1%s}"; }

# workloads LABEL URL [NODE...] runs the registry workloads against URL,
# recording CPU profiles of the named Flotilla nodes during the large
# layer push, the HEAD phase and the tag writes.
workloads() {
	local label=$1 url=$2
	shift 2
	local -a nodes=("$@")
	local head_seconds tag_seconds
	head_seconds=$(seconds_of "${HEAD_DURATION}")
	tag_seconds=$(seconds_of "${TAG_DURATION}")
	local -a common=(--url "${url}" --cacert "${CA}" --username "${USER5}" --label "${label}" --quiet)
	export FLOTILLA_BENCH_PASSWORD=${PASS5}

	log "${label}: ${IMAGES} images of ${LAYERS} x ${LAYER_SIZE}, ${CLIENTS} clients"
	run_bench images "${common[@]}" --s3-requests-url "${S3_STATS}" --images "${IMAGES}" --layers "${LAYERS}" \
		--layer-size "${LAYER_SIZE}" --concurrency "${CLIENTS}" --json "${OUT}/${label}-images.json"
	log "${label}: one ${LARGE_SIZE} layer"
	profile_start "${label}" large-push 5 "${nodes[@]}"
	run_bench large "${common[@]}" --s3-requests-url "${S3_STATS}" --size "${LARGE_SIZE}" \
		--json "${OUT}/${label}-large.json"
	profile_wait
	log "${label}: manifest HEAD by tag, bcrypt cost 5, ${HEAD_DURATION}"
	profile_start "${label}" head $((head_seconds > 3 ? head_seconds - 2 : 1)) "${nodes[@]}"
	run_bench head "${common[@]}" --concurrency "${CLIENTS}" --duration "${HEAD_DURATION}" \
		--json "${OUT}/${label}-head.json"
	profile_wait

	log "${label}: manifest HEAD by tag, bcrypt cost 10, ${HEAD_DURATION}"
	FLOTILLA_BENCH_PASSWORD=${PASS10} run_bench head "${common[@]}" --username "${USER10}" --name head-cost10 \
		--concurrency "${CLIENTS}" --duration "${HEAD_DURATION}" --json "${OUT}/${label}-head-cost10.json"
	log "${label}: tag writes, ${TAG_CLIENTS} clients, ${TAG_DURATION}"
	profile_start "${label}" tag-write $((tag_seconds > 3 ? tag_seconds - 2 : 1)) "${nodes[@]}"
	run_bench tags "${common[@]}" --s3-requests-url "${S3_STATS}" --concurrency "${TAG_CLIENTS}" \
		--duration "${TAG_DURATION}" --json "${OUT}/${label}-tags.json"
	profile_wait

	log "${label}: listing, ${LIST_REPOS} repositories and ${LIST_TAGS} tags"
	run_bench list "${common[@]}" --concurrency "${CLIENTS}" --repos "${LIST_REPOS}" --tags "${LIST_TAGS}" \
		--duration "${LIST_DURATION}" --json "${OUT}/${label}-list.json"
}

# s3_stats LABEL records the S3 server's and the proxy's figures.
s3_stats() {
	bench procstat --label "$1" --json "${OUT}/procstat-$1-s3.json" \
		"versitygw=${PIDS[versitygw]}" "s3proxy=${PIDS[s3proxy]}" >/dev/null || true
}

if ! skipped s3; then
	log "s3: raw S3 PUT and GET with minio-go through the counting proxy"
	run_bench s3raw --label s3 --quiet --s3-endpoint "http://${S3_PROXY}" --s3-access-key "${S3_ACCESS}" \
		--s3-bucket raw --s3-requests-url "${S3_STATS}" --large-size "${LARGE_SIZE}" \
		--objects $((IMAGES * LAYERS)) --object-size "${LAYER_SIZE}" --concurrency "${CLIENTS}" \
		--json "${OUT}/s3-s3raw.json"
	s3_stats s3
fi

if ! skipped flotilla; then
	read -r HTTP_PORT RAFT_PORT DEBUG_PORT <<<"$(bench freeport --count 3 | tr '\n' ' ')"
	log "flotilla: one node on 127.0.0.1:${HTTP_PORT}"
	start_node node1-single flotilla "${HTTP_PORT}" "${RAFT_PORT}" "${DEBUG_PORT}"
	if wait_ready "https://127.0.0.1:${HTTP_PORT}" node1-single; then
		workloads flotilla "https://127.0.0.1:${HTTP_PORT}" node1-single
		bench procstat --label flotilla --json "${OUT}/procstat-flotilla.json" "node1=${PIDS[node1-single]}" || true
		# A control: the same HEAD load through rrproxy with this node as
		# its only backend shows what the proxy costs.
		log "flotilla: manifest HEAD by tag through rrproxy, ${HEAD_DURATION}"
		rm -f "${WORK}/rrproxy.addr"
		start rrproxy "${WORK}/rrproxy-single.log" "${BIN}/flotilla-bench" rrproxy \
			--backends "https://127.0.0.1:${HTTP_PORT}" --cert "${CERT}" --key "${KEY}" --cacert "${CA}" \
			--addr-file "${WORK}/rrproxy.addr"
		wait_file "${WORK}/rrproxy.addr"
		FLOTILLA_BENCH_PASSWORD=${PASS5} run_bench head --url "https://$(cat "${WORK}/rrproxy.addr")" \
			--cacert "${CA}" --username "${USER5}" --label flotilla-rrproxy --quiet --concurrency "${CLIENTS}" \
			--duration "${HEAD_DURATION}" --json "${OUT}/flotilla-rrproxy-head.json"
		stop rrproxy
	else
		echo "flotilla node did not start; its log:"
		tail -n 40 "${WORK}/node1-single/flotilla.log"
		echo "the node did not start: $(grep -m1 -iE 'error|invalid' "${WORK}/node1-single/flotilla.log" || echo 'see its log')" \
			>"${OUT}/skipped-flotilla.txt"
	fi
	stop node1-single
	s3_stats flotilla
fi

# cluster_reason prints why the cluster section cannot run, or nothing.
cluster_reason() {
	local n
	for n in 1 2 3; do
		if ! running "node${n}-cluster"; then
			local line
			line=$(grep -m1 -iE 'invalid|error|not available' "${WORK}/node${n}-cluster/flotilla.log" || true)
			echo "flotilla serve rejected the cluster settings: node${n} exited: ${line:-see its log}"
			return
		fi
	done
}

if ! skipped cluster; then
	log "cluster: three nodes with mutual TLS behind a round-robin proxy"
	# Three ports per node, all picked at once so that none repeats:
	# API, Raft and debug.
	mapfile -t P < <(bench freeport --count 9)
	for n in 1 2 3; do
		http=${P[$(((n - 1) * 3))]} raft=${P[$(((n - 1) * 3 + 1))]} debug=${P[$(((n - 1) * 3 + 2))]}
		peers=()
		for m in 1 2 3; do
			[[ ${m} == "${n}" ]] || peers+=("127.0.0.1:${P[$(((m - 1) * 3 + 1))]}")
		done
		start_node "node${n}-cluster" cluster "${http}" "${raft}" "${debug}" \
			"REGISTRY_CLUSTER_ADVERTISE=127.0.0.1:${raft}" "REGISTRY_CLUSTER_PEERS=$(IFS=,; echo "${peers[*]}")" \
			REGISTRY_CLUSTER_BOOTSTRAPEXPECT=3 "REGISTRY_CLUSTER_TLS_CERTIFICATE=${CERT}" \
			"REGISTRY_CLUSTER_TLS_KEY=${KEY}" "REGISTRY_CLUSTER_TLS_CA=${CA}"
	done
	URLS=("https://127.0.0.1:${P[0]}" "https://127.0.0.1:${P[3]}" "https://127.0.0.1:${P[6]}")
	reason=""
	for n in 1 2 3; do
		if ! wait_ready "${URLS[$((n - 1))]}" "node${n}-cluster"; then
			reason=$(cluster_reason)
			reason=${reason:-node${n} did not answer within 60 s}
			break
		fi
	done
	if [[ -z "${reason}" ]]; then
		check=$(FLOTILLA_BENCH_PASSWORD=${PASS5} bench clustercheck --url "${URLS[0]}" --cacert "${CA}" \
			--username "${USER5}" --others "${URLS[1]},${URLS[2]}" 2>&1) ||
			reason="the three nodes do not share one index: ${check}"
	fi
	if [[ -n "${reason}" ]]; then
		echo "!!! SKIPPED section cluster: ${reason}"
		echo "${reason}" >"${OUT}/skipped-cluster.txt"
	else
		rm -f "${WORK}/rrproxy.addr"
		start rrproxy "${WORK}/rrproxy.log" "${BIN}/flotilla-bench" rrproxy --backends "$(IFS=,; echo "${URLS[*]}")" \
			--cert "${CERT}" --key "${KEY}" --cacert "${CA}" --addr-file "${WORK}/rrproxy.addr"
		wait_file "${WORK}/rrproxy.addr"
		workloads cluster "https://$(cat "${WORK}/rrproxy.addr")" node1-cluster node2-cluster node3-cluster
		bench procstat --label cluster --json "${OUT}/procstat-cluster.json" "node1=${PIDS[node1-cluster]}" \
			"node2=${PIDS[node2-cluster]}" "node3=${PIDS[node3-cluster]}" "rrproxy=${PIDS[rrproxy]}" || true
		stop rrproxy
		# Controls without the proxy: the client sends each request to
		# the next node itself.
		direct=$(IFS=,; echo "${URLS[*]}")
		export FLOTILLA_BENCH_PASSWORD=${PASS5}
		log "cluster-direct: manifest HEAD by tag without rrproxy, ${HEAD_DURATION}"
		run_bench head --url "${direct}" --cacert "${CA}" --username "${USER5}" --label cluster-direct --quiet \
			--concurrency "${CLIENTS}" --duration "${HEAD_DURATION}" --json "${OUT}/cluster-direct-head.json"
		log "cluster-direct: tag writes without rrproxy, ${TAG_CLIENTS} clients, ${TAG_DURATION}"
		run_bench tags --url "${direct}" --cacert "${CA}" --username "${USER5}" --label cluster-direct --quiet \
			--concurrency "${TAG_CLIENTS}" --duration "${TAG_DURATION}" --json "${OUT}/cluster-direct-tags.json"
	fi
	for n in 1 2 3; do stop "node${n}-cluster"; done
	s3_stats cluster
fi

if ! skipped reference; then
	HTTP_PORT=$(bench freeport)
	log "reference: distribution registry ${REGISTRY_VERSION} on 127.0.0.1:${HTTP_PORT}"
	mkdir -p "${WORK}/reference"
	cat >"${WORK}/reference/config.yml" <<EOF
version: 0.1
log:
  level: warn
  accesslog:
    disabled: true
storage:
  s3:
    accesskey: ${S3_ACCESS}
    secretkey: ${S3_SECRET}
    region: us-east-1
    regionendpoint: http://${S3_PROXY}
    bucket: reference
    forcepathstyle: true
    secure: false
    rootdirectory: /reference
  delete:
    enabled: true
  redirect:
    disable: true
  cache:
    blobdescriptor: inmemory
http:
  addr: 127.0.0.1:${HTTP_PORT}
  secret: $(head -c 16 /dev/urandom | od -An -tx1 | tr -d ' \n')
  tls:
    certificate: ${CERT}
    key: ${KEY}
auth:
  htpasswd:
    realm: flotilla-bench
    path: ${WORK}/htpasswd
EOF
	start registry "${WORK}/reference/registry.log" env -i "PATH=${PATH}" "HOME=${HOME}" \
		OTEL_TRACES_EXPORTER=none "${REFERENCE}" serve "${WORK}/reference/config.yml"
	if wait_ready "https://127.0.0.1:${HTTP_PORT}" registry; then
		workloads reference "https://127.0.0.1:${HTTP_PORT}"
		bench procstat --label reference --json "${OUT}/procstat-reference.json" "registry=${PIDS[registry]}" || true
	else
		tail -n 40 "${WORK}/reference/registry.log"
		echo "the reference registry did not start" >"${OUT}/skipped-reference.txt"
	fi
	stop registry
	s3_stats reference
fi

if ! skipped scale; then
	read -r HTTP_PORT RAFT_PORT DEBUG_PORT <<<"$(bench freeport --count 3 | tr '\n' ' ')"
	url="https://127.0.0.1:${HTTP_PORT}"
	tags=$((SCALE_REPOS * SCALE_TAGS_PER_REPO))
	log "scale: one node, ${tags} tags in ${SCALE_REPOS} repositories"
	start_node node1-scale scale "${HTTP_PORT}" "${RAFT_PORT}" "${DEBUG_PORT}"
	if wait_ready "${url}" node1-scale; then
		export FLOTILLA_BENCH_PASSWORD=${PASS5}
		run_bench list --url "${url}" --cacert "${CA}" --username "${USER5}" --label scale --quiet \
			--run-id scale --concurrency "${SCALE_CLIENTS}" --repos "${SCALE_REPOS}" \
			--tags-per-repo "${SCALE_TAGS_PER_REPO}" --tags 0 --duration "${LIST_DURATION}" \
			--json "${OUT}/scale-list.json"
		bench procstat --label scale-seeded --json "${OUT}/procstat-scale-seeded.json" "node1=${PIDS[node1-scale]}" || true
		heap_profile scale-seeded node1-scale
		log "scale: restart with the index"
		stop node1-scale
		start_node node1-scale scale "${HTTP_PORT}" "${RAFT_PORT}" "${DEBUG_PORT}"
		last_repo=$(printf 'bench/scale/repo-%07d' $((SCALE_REPOS - 1)))
		run_bench wait --url "${url}" --cacert "${CA}" --username "${USER5}" --label scale-restart --quiet \
			--repo "${last_repo}" --tag t000000000 --timeout 5m --json "${OUT}/scale-restart.json"
		bench procstat --label scale-restarted --json "${OUT}/procstat-scale-restarted.json" \
			"node1=${PIDS[node1-scale]}" || true
		du -sh "${WORK}/node1-scale/raft" | sed 's/^/raft data folder: /'
	else
		tail -n 40 "${WORK}/node1-scale/flotilla.log"
		echo "the node did not start" >"${OUT}/skipped-scale.txt"
	fi
	stop node1-scale
	s3_stats scale
fi

bench sysinfo --label after --json "${OUT}/sysinfo-after.json"
log "comparison"
bench report --dir "${OUT}" --out "${OUT}/comparison.md"
echo
echo "results: ${OUT} (comparison.md and one JSON file per run)"
