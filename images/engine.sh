#!/usr/bin/env bash
# engine.sh makes sure a Docker engine answers on this machine: it installs
# Debian's docker.io when dockerd is absent and starts dockerd by hand when it
# is not running (no systemd here). Idempotent; run as root.
set -euo pipefail

log() { printf 'engine: %s\n' "$*" >&2; }

engine_up() { docker version --format '{{.Server.Version}}' >/dev/null 2>&1; }

# dockerd_running ignores a dockerd that has exited but is not yet reaped (a
# zombie): after a stop, init may take a while to reap it.
dockerd_running() {
	local p
	for p in $(pgrep -x dockerd); do
		[[ "$(awk '{print $3}' "/proc/$p/stat" 2>/dev/null)" =~ ^[^ZX]$ ]] && return 0
	done
	return 1
}

if engine_up; then
	log "engine already running ($(docker version --format '{{.Server.Version}}'))"
	exit 0
fi

if ! command -v dockerd >/dev/null 2>&1; then
	log "installing docker.io"
	export DEBIAN_FRONTEND=noninteractive
	apt-get update -qq
	apt-get install -y -qq docker.io >/dev/null
fi

if ! dockerd_running; then
	log "starting dockerd"
	mkdir -p /var/log
	# Leftover pid files from a dockerd killed with its session block a new start.
	rm -f /var/run/docker.pid /var/run/docker/containerd/containerd.pid
	nohup dockerd --storage-driver=overlay2 >>/var/log/pyexec-dockerd.log 2>&1 </dev/null &
fi

for _ in $(seq 1 60); do
	if engine_up; then
		log "engine up ($(docker version --format '{{.Server.Version}}'))"
		exit 0
	fi
	sleep 1
done
log "engine did not come up; last log lines:"
tail -n 30 /var/log/pyexec-dockerd.log >&2 || true
exit 1
