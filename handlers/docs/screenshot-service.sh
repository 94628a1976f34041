#!/usr/bin/env bash
# Starts bin/pyexec on a free loopback port (no pool, no image build), takes
# screenshots of /docs and /redoc with screenshot.sh, and stops the service.
#
#   handlers/docs/screenshot-service.sh [OUT_DIR]
set -euo pipefail
cd "$(dirname "$0")/../.."
out=${1:-out/docs}
if ! command -v chromium >/dev/null 2>&1; then
	apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null
fi
port=$(/usr/bin/python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
log=$(mktemp)
PORT=$port POOL_SIZE=0 BUILD_IMAGE=false SERVICE_ID=docs-shot-$$ bin/pyexec >"$log" 2>&1 &
pid=$!
trap 'kill -TERM $pid 2>/dev/null; wait $pid 2>/dev/null; rm -f "$log"' EXIT
for _ in $(seq 1 100); do
	curl -fsS "http://127.0.0.1:$port/openapi.json" >/dev/null 2>&1 && break
	sleep 0.1
done
bash handlers/docs/screenshot.sh "http://127.0.0.1:$port" "$out"
echo "screenshots in $out"
