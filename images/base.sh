#!/usr/bin/env bash
# base.sh makes sure the base image of the analytics image (debian:trixie-slim)
# is in the local engine: it pulls it, and where no registry answers it builds
# an equivalent with debootstrap --variant=minbase and docker import. Idempotent.
set -euo pipefail

BASE=${PYEXEC_BASE_IMAGE:-debian:trixie-slim}
SUITE=${PYEXEC_BASE_SUITE:-trixie}
MIRROR=${PYEXEC_DEBIAN_MIRROR:-http://deb.debian.org/debian}

log() { printf 'base: %s\n' "$*" >&2; }

if docker image inspect "$BASE" >/dev/null 2>&1; then
	log "$BASE present"
	exit 0
fi
if timeout 60 docker pull -q "$BASE" >/dev/null 2>&1; then
	log "pulled $BASE"
	exit 0
fi

log "no registry: building $BASE with debootstrap ($SUITE)"
if ! command -v debootstrap >/dev/null 2>&1; then
	export DEBIAN_FRONTEND=noninteractive
	apt-get update -qq
	apt-get install -y -qq debootstrap >/dev/null
fi
root=$(mktemp -d /var/tmp/pyexec-base.XXXXXX)
trap 'rm -rf "$root"' EXIT
debootstrap --variant=minbase "$SUITE" "$root" "$MIRROR" >/dev/null
# Keep the image slim as the official one does.
rm -rf "$root"/var/lib/apt/lists/* "$root"/var/cache/apt/archives/*.deb
printf 'deb %s %s main\n' "$MIRROR" "$SUITE" >"$root/etc/apt/sources.list"
tar --numeric-owner -C "$root" -c . | docker import \
	--change 'CMD ["bash"]' \
	--change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
	- "$BASE" >/dev/null
log "imported $BASE"
