#!/usr/bin/env bash
# bench.sh: start bin/pyexec on a free loopback port with its own SERVICE_ID,
# wait until it is healthy with a full pool, run pyexec-bench against it,
# stop it with SIGTERM, and check that it left no container behind.
#
#   cmd/pyexec-bench/bench.sh [pyexec-bench flags...]
#   MAX_WORKERS=2 POOL_SIZE=2 cmd/pyexec-bench/bench.sh -duration 10s -json out/bench.json
#
# The service's settings come from the environment as usual (MAX_WORKERS,
# MAX_QUEUE, POOL_SIZE, ...); PORT and SERVICE_ID are chosen here. Set
# PYEXEC_BIN to use another binary, BENCH_PORT to force the port,
# BENCH_READY_TIMEOUT for the first start (it may build the image).
# Exit status: the bench tool's (0 ok, 1 threshold or leak, 2 could not run),
# or 3 when the service fails to start, stop, or leaves containers.
set -euo pipefail

cd "$(dirname "$0")/../.."
export PATH="$PATH:/usr/local/go/bin"

bin=${PYEXEC_BIN:-bin/pyexec}
ready_timeout=${BENCH_READY_TIMEOUT:-15m}
stop_timeout=${BENCH_STOP_TIMEOUT:-120} # seconds; the service's own bound is MAX_TIMEOUT_SECONDS+30
service_id="bench-$$"

if [[ ! -x "$bin" ]]; then
	echo "bench.sh: $bin missing, building it" >&2
	go build -o "$bin" ./cmd/pyexec
fi
work=$(mktemp -d "${TMPDIR:-/tmp}/pyexec-bench.XXXXXX")
go build -o "$work/pyexec-bench" ./cmd/pyexec-bench

# timeout_seconds 15m|90s|120: a duration in whole seconds.
timeout_seconds() {
	case $1 in
	*m) echo $((${1%m} * 60)) ;;
	*s) echo "${1%s}" ;;
	*) echo "$1" ;;
	esac
}

# port_free PORT: nothing accepts connections on 127.0.0.1:PORT.
port_free() { ! (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

port=${BENCH_PORT:-}
if [[ -z "$port" ]]; then
	for _ in $(seq 1 200); do
		p=$((20000 + RANDOM % 20000))
		if port_free "$p"; then
			port=$p
			break
		fi
	done
fi
if [[ -z "$port" ]]; then
	echo "bench.sh: no free port found" >&2
	exit 3
fi

log="$work/pyexec.log"
echo "bench.sh: starting $bin on 127.0.0.1:$port as SERVICE_ID=$service_id (log $log)" >&2
PORT=$port SERVICE_ID=$service_id "$bin" >"$log" 2>&1 &
svc_pid=$!

status=0
stopped=0

# stop_service: SIGTERM, wait (bounded), SIGKILL as a last resort.
stop_service() {
	[[ $stopped == 1 ]] && return 0
	stopped=1
	if kill -0 "$svc_pid" 2>/dev/null; then
		kill -TERM "$svc_pid" 2>/dev/null || true
		for _ in $(seq 1 $((stop_timeout * 10))); do
			kill -0 "$svc_pid" 2>/dev/null || break
			sleep 0.1
		done
		if kill -0 "$svc_pid" 2>/dev/null; then
			echo "bench.sh: service did not exit ${stop_timeout}s after SIGTERM; killing it" >&2
			kill -KILL "$svc_pid" 2>/dev/null || true
			status=3
		fi
	fi
	local rc=0
	wait "$svc_pid" 2>/dev/null || rc=$?
	if [[ $rc != 0 ]]; then
		echo "bench.sh: service exited with status $rc" >&2
		[[ $status == 0 ]] && status=3
	fi
}

# check_leftovers: no container with our SERVICE_ID may remain after exit.
check_leftovers() {
	local left
	left=$(timeout 30 docker ps -aq --filter "label=io.pyexec.owner=$service_id" || echo "?")
	if [[ -n "$left" ]]; then
		echo "bench.sh: containers left by SERVICE_ID=$service_id after shutdown:" >&2
		timeout 30 docker ps -a --filter "label=io.pyexec.owner=$service_id" >&2 || true
		if [[ "$left" != "?" ]]; then
			# shellcheck disable=SC2086
			timeout 60 docker rm -f $left >/dev/null 2>&1 || true
		fi
		status=3
	fi
}

cleanup() {
	stop_service
	check_leftovers
	local warns errs
	warns=$(grep -c '"level":"warning"' "$log" || true)
	errs=$(grep -c '"level":"error"' "$log" || true)
	echo "bench.sh: service log: $warns warning and $errs error lines ($log)" >&2
	if [[ $status != 0 ]]; then
		echo "bench.sh: last service log lines:" >&2
		tail -n 20 "$log" >&2 || true
	fi
	rm -f "$work/pyexec-bench"
}
trap 'cleanup; exit $status' EXIT
trap 'status=130; exit' INT TERM

url="http://127.0.0.1:$port"
# Wait for /health 200 and a full pool in short rounds, so a service that
# dies while starting (port taken, bad setting) is noticed at once.
deadline=$((SECONDS + $(timeout_seconds "$ready_timeout")))
until "$work/pyexec-bench" -quiet -url "$url" -ready-only -ready-timeout 5s 2>/dev/null; do
	if ! kill -0 "$svc_pid" 2>/dev/null; then
		echo "bench.sh: service exited before it was ready" >&2
		status=3
		exit
	fi
	if ((SECONDS >= deadline)); then
		echo "bench.sh: service not ready after $ready_timeout" >&2
		"$work/pyexec-bench" -url "$url" -ready-only -ready-timeout 1s || true
		status=3
		exit
	fi
done
echo "bench.sh: service ready" >&2
rc=0
"$work/pyexec-bench" -url "$url" -pid "$svc_pid" "$@" || rc=$?
status=$rc
exit
