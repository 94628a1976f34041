#!/usr/bin/env bash
# Screenshots of the API documentation pages of a running pyexec, to check
# that Swagger UI (/docs) and ReDoc (/redoc) render the API.
#
#   handlers/docs/screenshot.sh [BASE_URL] [OUT_DIR]
#
# BASE_URL defaults to http://127.0.0.1:8000 and OUT_DIR to the current
# directory; writes OUT_DIR/docs.png and OUT_DIR/redoc.png. It starts no
# service: run one first (make run). It uses Debian's headless chromium
# (apt-get install -y chromium) and makes every host but BASE_URL's
# unresolvable, so a page that needs the internet shows up broken.
#
# It fails when a page sent a request to another origin (from chromium's
# network log, OUT_DIR/<page>.netlog.json; chromium's own background
# traffic is not the page's and is ignored) and reports requests the page's
# Content-Security-Policy blocked before they were sent (from the console,
# OUT_DIR/<page>.chromium.log). Reading the network log needs python3.
set -euo pipefail

base=${1:-http://127.0.0.1:8000}
out=${2:-.}
base=${base%/}

chrome=$(command -v chromium || command -v chromium-browser || true)
if [[ -z $chrome ]]; then
	echo "screenshot.sh: chromium not found; install it with: apt-get install -y chromium" >&2
	exit 1
fi

hostport=${base#*://}
hostport=${hostport%%/*}
host=${hostport%:*}
mkdir -p "$out"
profile=$(mktemp -d)
trap 'rm -rf "$profile"' EXIT

py=$(command -v /usr/bin/python3 || command -v python3 || true)

sandbox=()
if [[ $(id -u) -eq 0 ]]; then
	sandbox=(--no-sandbox) # chromium's sandbox refuses to run as root
fi

status=0
for page in docs redoc; do
	png="$out/$page.png"
	netlog="$out/$page.netlog.json"
	rm -f "$png"
	# --virtual-time-budget lets the page's scripts run (5 s of page time)
	# before the shot; --host-resolver-rules makes every other host fail;
	# timeout because chromium hangs when the page itself fails to load.
	timeout 120 "$chrome" --headless "${sandbox[@]}" --disable-gpu --disable-quic --no-first-run \
		--disable-background-networking --disable-component-update --disable-sync \
		--disable-default-apps --disable-extensions --no-default-browser-check \
		--user-data-dir="$profile" --window-size=1280,1600 --virtual-time-budget=5000 \
		--host-resolver-rules="MAP * ~NOTFOUND, EXCLUDE $host" \
		--log-net-log="$netlog" --net-log-capture-mode=Default \
		--enable-logging=stderr --v=0 \
		--screenshot="$png" "$base/$page" >"$out/$page.chromium.log" 2>&1 || true
	if [[ ! -s $png ]]; then
		echo "screenshot.sh: no screenshot of $base/$page; see $out/$page.chromium.log" >&2
		status=1
		continue
	fi
	# Requests the page made (their initiator is the page's origin, or they
	# are the page itself) to anything but the page's origin.
	if [[ -n $py ]]; then
		others=$("$py" - "$netlog" "$base" <<'PY'
import json, sys
from urllib.parse import urlsplit
log, base = sys.argv[1], sys.argv[2]
origin = "{0.scheme}://{0.netloc}".format(urlsplit(base))
with open(log) as f:
    text = f.read()
try:
    d = json.loads(text)
except ValueError:  # chromium still writing: close the event list
    d = json.loads(text.rstrip().rstrip(",") + "]}")
kinds = {v: k for k, v in d["constants"]["logEventTypes"].items()}
for e in d.get("events", []):
    p = e.get("params") or {}
    if kinds.get(e["type"]) != "URL_REQUEST_START_JOB" or "url" not in p:
        continue
    url = p["url"]
    mine = p.get("initiator") == origin or url.startswith(base)
    u = urlsplit(url)
    if mine and "{0.scheme}://{0.netloc}".format(u) != origin and u.scheme not in ("data", "blob"):
        print(url)
PY
		)
	else
		others=""
		echo "screenshot.sh: python3 not found; not checking $page's requests" >&2
	fi
	if [[ -n $others ]]; then
		echo "screenshot.sh: $page sent requests to other origins:" >&2
		echo "$others" >&2
		status=1
	fi
	blocked=$(grep -oE "CONSOLE.*violates the following Content Security Policy[^,]*" "$out/$page.chromium.log" |
		sed -E 's/^CONSOLE[^"]*"//' || true)
	if [[ -n $blocked ]]; then
		echo "screenshot.sh: $page: blocked by its Content-Security-Policy (never sent):" >&2
		echo "$blocked" >&2
	fi
	echo "$png"
done
exit $status
