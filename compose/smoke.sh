#!/usr/bin/env bash
# smoke.sh brings up compose/docker-compose.yml for real, under its own project
# name, SERVICE_IDs and port, and checks it end to end through nginx:
#
#   1. build and start the stack (up -d --build);
#   2. wait (bounded) until the three replicas are healthy, i.e. the analytics
#      image is present (replica 1 builds it when missing, ~2 minutes);
#   3. GET /health through nginx answers 200 "ok";
#   4. POST /execute print("Hello World") answers 200, status success;
#   5. 12 more executions; each replica's log holds some of their request IDs;
#      a request without X-Request-ID gets nginx's ID, seen by a replica;
#      a body over 1 MiB gets nginx's JSON 413;
#   6. down -v, then no container of the stack and no execution container
#      (label io.pyexec.managed=1) owned by its SERVICE_IDs remains.
#
# The stack is always torn down (trap), also on failure or Ctrl-C. Exits
# non-zero on any failure. Run as a user who can use the Docker socket.
#
# Environment:
#   PYEXEC_COMPOSE      compose command (default: "docker compose" when the
#                       plugin exists, else "docker-compose")
#   PYEXEC_BINARY       auto (default: host when Go is installed, else source),
#                       host (build bin/pyexec-compose here, copy it in), or
#                       source (compile inside Docker; needs the Go proxy)
#   PYEXEC_SMOKE_PORT   port nginx publishes on 127.0.0.1 (default: a free one)
#   PYEXEC_SMOKE_WAIT   seconds to wait for health (default 900)
#   PYEXEC_SMOKE_RMI    1: remove the two images the smoke built at the end
#                       (default: keep pyexec:smoke and pyexec-nginx:smoke as
#                       the build cache of the next run; the ones they replace
#                       are removed)
set -euo pipefail

cd "$(dirname "$0")/.."
export PATH="$PATH:/usr/local/go/bin"

log() { printf 'smoke: %s\n' "$*" >&2; }
fail() { log "FAIL: $*"; exit 1; }
now() { date +%s; }

if [[ -n "${PYEXEC_COMPOSE:-}" ]]; then
	read -r -a COMPOSE_CMD <<<"$PYEXEC_COMPOSE"
elif docker compose version >/dev/null 2>&1; then
	COMPOSE_CMD=(docker compose)
elif command -v docker-compose >/dev/null 2>&1; then
	COMPOSE_CMD=(docker-compose)
else
	fail "no compose tool: install docker-compose (Debian) or the compose plugin"
fi

# Names of this run: nothing here may touch another stack on the engine.
RUN_ID="$$"
export COMPOSE_PROJECT_NAME="pyexecsmoke${RUN_ID}"
export PYEXEC_SERVICE_ID_PREFIX="pyexec-smoke-${RUN_ID}"
export PYEXEC_BIND=127.0.0.1
if [[ -z "${PYEXEC_SMOKE_PORT:-}" ]]; then
	# A port free right now (another process may still take it before nginx).
	PYEXEC_SMOKE_PORT=$(/usr/bin/python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
fi
export PYEXEC_PORT="$PYEXEC_SMOKE_PORT"
export PYEXEC_IMAGE="${PYEXEC_IMAGE:-pyexec:smoke}"
export PYEXEC_NGINX_IMAGE="${PYEXEC_NGINX_IMAGE:-pyexec-nginx:smoke}"
WAIT="${PYEXEC_SMOKE_WAIT:-900}"
BASE="http://127.0.0.1:${PYEXEC_PORT}"
REPLICAS=(python-executor-1 python-executor-2 python-executor-3)
compose() { "${COMPOSE_CMD[@]}" -f compose/docker-compose.yml "$@"; }
PY=/usr/bin/python3

mode="${PYEXEC_BINARY:-auto}"
if [[ "$mode" == auto ]]; then
	if command -v go >/dev/null 2>&1; then mode=host; else mode=source; fi
fi
export PYEXEC_BINARY="$mode"
if [[ "$mode" == host ]]; then
	export PYEXEC_HOST_BINARY=bin/pyexec-compose
	log "building $PYEXEC_HOST_BINARY on the host ($(go version | awk '{print $3}'))"
	CGO_ENABLED=0 GOFLAGS="${GOFLAGS:--mod=mod}" go build -trimpath -ldflags='-s -w' \
		-o "$PYEXEC_HOST_BINARY" ./cmd/pyexec
fi

if ss -ltn 2>/dev/null | awk '{print $4}' | grep -qE "[:.]${PYEXEC_PORT}\$"; then
	fail "port $PYEXEC_PORT is in use; set PYEXEC_SMOKE_PORT"
fi

started=0
tmp=$(mktemp -d)
old_images=()
for i in "$PYEXEC_IMAGE" "$PYEXEC_NGINX_IMAGE"; do
	id=$(docker image inspect -f '{{.Id}}' "$i" 2>/dev/null) && old_images+=("$id")
done
owners=()
for s in "${REPLICAS[@]}"; do owners+=("${PYEXEC_SERVICE_ID_PREFIX}-$s"); done

# leftovers: fails when a container or network of the stack, or an execution
# container owned by one of its SERVICE_IDs, still exists.
leftovers() {
	local left o
	left=$(docker ps -aq --filter "label=com.docker.compose.project=$COMPOSE_PROJECT_NAME")
	[[ -z "$left" ]] || { log "containers of the stack remain: $left"; return 1; }
	left=$(docker network ls -q --filter "label=com.docker.compose.project=$COMPOSE_PROJECT_NAME")
	[[ -z "$left" ]] || { log "networks of the stack remain: $left"; return 1; }
	for o in "${owners[@]}"; do
		left=$(docker ps -aq --filter label=io.pyexec.managed=1 --filter "label=io.pyexec.owner=$o")
		[[ -z "$left" ]] || { log "execution containers of $o remain: $left"; return 1; }
	done
}

teardown() {
	local rc=$?
	trap - EXIT INT TERM
	rm -rf "$tmp"
	if ((started)); then
		if ((rc != 0)); then
			log "last log lines of the stack:"
			compose logs --no-color --tail=20 >&2 2>&1 || true
		fi
		log "tearing down $COMPOSE_PROJECT_NAME"
		compose down -v --remove-orphans -t 30 >&2 2>&1 || rc=1
		leftovers || rc=1
	fi
	# The images this run's tags pointed to before, now untagged by the rebuild.
	local id
	for id in "${old_images[@]}"; do
		[[ "$(docker image inspect -f '{{len .RepoTags}}' "$id" 2>/dev/null)" == 0 ]] &&
			docker image rm "$id" >/dev/null 2>&1 || true
	done
	if [[ "${PYEXEC_SMOKE_RMI:-0}" == 1 ]]; then
		docker image rm "$PYEXEC_IMAGE" "$PYEXEC_NGINX_IMAGE" >/dev/null 2>&1 || true
	fi
	if ((rc == 0)); then log "PASS"; else log "FAILED (exit $rc)"; fi
	exit "$rc"
}
trap teardown EXIT
trap 'exit 130' INT TERM

log "compose: ${COMPOSE_CMD[*]} ($("${COMPOSE_CMD[@]}" version --short 2>/dev/null || echo '?')), project $COMPOSE_PROJECT_NAME, binary mode $mode, port $PYEXEC_PORT"
t0=$(now)
started=1
compose up -d --build >&2
t_up=$(($(now) - t0))
log "up -d --build took ${t_up}s"

# container ID of a service
cid() { compose ps -q "$1"; }

log "waiting up to ${WAIT}s for the replicas to be healthy (replica 1 builds the analytics image if missing)"
t1=$(now)
while :; do
	all=1 states=()
	for s in "${REPLICAS[@]}" nginx; do
		id=$(cid "$s")
		[[ -n "$id" ]] || fail "no container for $s"
		st=$(docker inspect -f '{{.State.Status}} {{if .State.Health}}{{.State.Health.Status}}{{end}} {{.RestartCount}}' "$id")
		read -r status health restarts <<<"$st"
		[[ "$status" == running ]] || fail "$s is $status"
		((restarts == 0)) || fail "$s restarted $restarts times"
		[[ "$health" == healthy ]] || all=0
		states+=("$s=$health")
	done
	((all)) && break
	(($(now) - t1 < WAIT)) || fail "not healthy after ${WAIT}s: ${states[*]}"
	sleep 5
done
t_health=$(($(now) - t1))
log "all healthy after ${t_health}s"

# request METHOD PATH [curl args...]: prints "<status> <body file> <headers file>"
request() {
	local method=$1 path=$2 code b h
	shift 2
	b=$(mktemp -p "$tmp" body.XXXXXX) h=$(mktemp -p "$tmp" head.XXXXXX)
	code=$(curl -sS -o "$b" -D "$h" -w '%{http_code}' --max-time 150 \
		-X "$method" "$BASE$path" "$@") || code=000
	echo "$code $b $h"
}
jfield() { "$PY" -c 'import json,sys; d=json.load(open(sys.argv[1])); print(eval(sys.argv[2], {}, {"d": d}))' "$@"; }

read -r code body _ < <(request GET /health)
[[ "$code" == 200 ]] || fail "GET /health through nginx: $code $(head -c 300 "$body")"
[[ "$(jfield "$body" 'd["status"]')" == ok ]] || fail "GET /health: $(head -c 300 "$body")"
log "GET /health through nginx: 200 ok"

hello='{"code": "print(\"Hello World\")", "timeout": 30}'
t2=$(now)
read -r code body _ < <(request POST /execute -H 'Content-Type: application/json' -H "X-Request-ID: smoke-${RUN_ID}-hello" -d "$hello")
[[ "$code" == 200 ]] || fail "POST /execute: $code $(head -c 300 "$body")"
st=$(jfield "$body" 'd["status"]')
out=$(jfield "$body" 'repr(d["output"]["stdout"])')
[[ "$st" == success && "$out" == "'Hello World\\n'" ]] || fail "POST /execute: status=$st stdout=$out"
log "POST /execute Hello World: 200, status success, stdout $out, request_id $(jfield "$body" 'd["request_id"]')"

# 12 executions, 4 at a time, each with an ID this run can find in the logs.
N=12
export BASE RUN_ID tmp
seq 1 "$N" | xargs -P 4 -I{} bash -c '
	code=$(curl -sS -o "$tmp/exec.{}" -w "%{http_code}" --max-time 150 -X POST "$BASE/execute" \
		-H "Content-Type: application/json" -H "X-Request-ID: smoke-$RUN_ID-{}" \
		-d "{\"code\": \"n = {}\\nprint(sum(range(n)))\"}") || code=000
	echo "$code" >"$tmp/code.{}"'
bad=0
for i in $(seq 1 "$N"); do
	c=$(cat "$tmp/code.$i")
	s=$(jfield "$tmp/exec.$i" 'd.get("status")' 2>/dev/null || echo '?')
	if [[ "$c" != 200 || "$s" != success ]]; then
		log "request $i: HTTP $c status $s: $(head -c 300 "$tmp/exec.$i")"
		bad=$((bad + 1))
	fi
done
((bad == 0)) || fail "$bad of $N executions failed"
t_req=$(($(now) - t2))
log "$N executions: all 200 success (with Hello World: $((N + 1)) in ${t_req}s)"

# A request without X-Request-ID gets nginx's $request_id (32 hex digits).
read -r code body head < <(request GET /health)
[[ "$code" == 200 ]] || fail "GET /health: $code"
gen=$(awk 'tolower($1)=="x-request-id:" {print $2}' "$head" | tr -d '\r')
[[ "$gen" =~ ^[0-9a-f]{32}$ ]] || fail "nginx did not generate an X-Request-ID (got '$gen')"

# A body over 1 MiB is refused by nginx with the service's error shape.
head -c 1100000 /dev/zero | tr '\0' 'x' >"$tmp/big"
read -r code body _ < <(request POST /execute -H 'Content-Type: application/json' --data-binary @"$tmp/big")
[[ "$code" == 413 && "$(jfield "$body" 'd["error"]["code"]')" == body_too_large ]] ||
	fail "oversized body: $code $(head -c 300 "$body")"
log "oversized body: 413 body_too_large from nginx"

# Which replica served what, from each replica's own JSON request log lines.
sleep 1
total=0 report=() gen_seen=0
for s in "${REPLICAS[@]}"; do
	logs=$(docker logs "$(cid "$s")" 2>&1)
	c=$(grep '"msg":"request"' <<<"$logs" | grep -c "\"request_id\":\"smoke-${RUN_ID}-[0-9]*\"" || true)
	grep -q "\"request_id\":\"$gen\"" <<<"$logs" && gen_seen=1
	report+=("$s=$c")
	total=$((total + c))
	((c > 0)) || fail "$s served none of the $N executions (${report[*]})"
done
((total == N)) || fail "replicas logged $total of the $N executions (${report[*]})"
((gen_seen)) || fail "no replica logged nginx's request ID $gen"
log "executions per replica: ${report[*]}; nginx-generated request ID $gen seen upstream"

log "down -v"
t3=$(now)
started=0
compose down -v --remove-orphans -t 30 >&2
log "down took $(($(now) - t3))s"

leftovers || fail "leftovers after down"
log "no container, network or execution container of the stack remains"
log "timings: up ${t_up}s, healthy after ${t_health}s, $((N + 1)) executions ${t_req}s"
