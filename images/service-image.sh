#!/usr/bin/env bash
# Builds the service's own image (the top-level Dockerfile) from source:
# `make service-image`, the tests and the compose smoke use it.
#
# It passes the host's settings the build needs:
#   - EXTRA_CA_CERTS: the CAs this host trusts beyond Debian's list, i.e. the
#     certificates under /usr/local/share/ca-certificates (what
#     update-ca-certificates adds to Debian's bundle; a TLS-intercepting
#     egress proxy's CA lives there), so that the build container trusts the
#     same proxy; none when there are none;
#   - GOPROXY and GOSUMDB: `go env` when Go is installed, else the
#     environment, else the Dockerfile's defaults;
#   - HTTP_PROXY, HTTPS_PROXY, NO_PROXY when set (Docker's predefined build
#     args, left out of the image's history).
#
# Settings (environment):
#   PYEXEC_SERVICE_IMAGE  tag to build (default pyexec:latest)
#   PYEXEC_EXTRA_CA_DIR   directory of extra CA files (*.crt, *.pem), PEM
#                         (default /usr/local/share/ca-certificates); empty: none
#   PYEXEC_BUILD_NETWORK  network of the build's RUN steps (default host: a
#                         proxy on the host's loopback, e.g. HTTP_PROXY=
#                         http://127.0.0.1:3128, is reachable, and the build
#                         does not depend on the docker0 bridge); "default"
#                         for the engine's bridge
#   DOCKER_BUILDKIT       unset: the engine's default builder (legacy on 20.10,
#                         BuildKit on 23 and later); the Dockerfile builds
#                         with both
set -euo pipefail
cd "$(dirname "$0")/.."

tag="${PYEXEC_SERVICE_IMAGE:-pyexec:latest}"
cadir="${PYEXEC_EXTRA_CA_DIR-/usr/local/share/ca-certificates}"

args=(--network "${PYEXEC_BUILD_NETWORK:-host}")
ca=""
ncas=0
if [[ -n "$cadir" && -d "$cadir" ]]; then
	while IFS= read -r -d '' f; do
		if grep -q 'BEGIN CERTIFICATE' "$f"; then
			ca+="$(cat "$f")"$'\n'
			ncas=$((ncas + 1))
		else
			echo "service-image: $f is not a PEM certificate; skipped" >&2
		fi
	done < <(find -L "$cadir" -type f \( -name '*.crt' -o -name '*.pem' \) -print0 | sort -z)
fi
if [[ -n "$ca" ]]; then
	args+=(--build-arg "EXTRA_CA_CERTS=$ca")
fi

goenv() {
	if command -v go >/dev/null 2>&1; then
		go env "$1"
	elif [[ -x /usr/local/go/bin/go ]]; then
		/usr/local/go/bin/go env "$1"
	else
		printenv "$1" || true
	fi
}
goproxy="$(goenv GOPROXY)"
gosumdb="$(goenv GOSUMDB)"
[[ -n "$goproxy" ]] && args+=(--build-arg "GOPROXY=$goproxy")
[[ -n "$gosumdb" ]] && args+=(--build-arg "GOSUMDB=$gosumdb")
for v in HTTP_PROXY HTTPS_PROXY NO_PROXY http_proxy https_proxy no_proxy; do
	[[ -n "${!v:-}" ]] && args+=(--build-arg "$v")
done

echo "service-image: building $tag from source (extra CAs: $ncas from ${cadir:-none}; GOPROXY=${goproxy:-default})" >&2
start=$(date +%s)
docker build -t "$tag" "${args[@]}" .
end=$(date +%s)
size=$(docker image inspect -f '{{.Size}}' "$tag")
echo "service-image: built $tag in $((end - start))s, $size bytes ($((size / 1000000)) MB)" >&2
