#!/bin/bash
# Makes /etc/nginx/nginx.conf from nginx.conf.template and the service's
# settings, then runs nginx in the foreground:
#
#   @BODY_LIMIT@    client_max_body_size: the service's own body limit for
#                   MAX_INPUT_BYTES (handlers/files.go bodyLimit: 1 MiB +
#                   64 KiB + 4/3 of MAX_INPUT_BYTES, base64), so that nginx
#                   refuses exactly what a replica would refuse;
#   @READ_TIMEOUT@  proxy_read_timeout: MAX_TIMEOUT_SECONDS + 70 s (container
#                   start and teardown, the service's write margin), at
#                   least 130 s.
#
# MAX_INPUT_BYTES takes the service's forms: 33554432, 32m, 32MiB, 1.5g.
set -euo pipefail

max_input="${MAX_INPUT_BYTES:-32m}"
max_timeout="${MAX_TIMEOUT_SECONDS:-60}"

bytes=$(awk -v v="$max_input" 'BEGIN {
	s = tolower(v); gsub(/[ \t]/, "", s)
	if (!match(s, /^[0-9]+(\.[0-9]+)?/)) exit 1
	n = substr(s, 1, RLENGTH) + 0; u = substr(s, RLENGTH + 1)
	sub(/i?b$/, "", u)
	if (u == "") m = 1; else if (u == "k") m = 1024; else if (u == "m") m = 1048576
	else if (u == "g") m = 1073741824; else if (u == "t") m = 1099511627776; else exit 1
	printf "%d\n", n * m
}') || { echo "nginx: MAX_INPUT_BYTES=$max_input is not a size (e.g. 32m)" >&2; exit 1; }
[[ "$max_timeout" =~ ^[0-9]+(\.[0-9]+)?$ ]] ||
	{ echo "nginx: MAX_TIMEOUT_SECONDS=$max_timeout is not a number of seconds" >&2; exit 1; }

body_limit=$(( (1 << 20) + (64 << 10) + (bytes + 2) / 3 * 4 ))
read_timeout=$(( ${max_timeout%.*} + 70 ))
(( read_timeout >= 130 )) || read_timeout=130

sed -e "s/@BODY_LIMIT@/$body_limit/g" -e "s/@READ_TIMEOUT@/$read_timeout/g" \
	/etc/nginx/nginx.conf.template >/etc/nginx/nginx.conf
echo "nginx: client_max_body_size $body_limit (MAX_INPUT_BYTES=$max_input), proxy_read_timeout ${read_timeout}s (MAX_TIMEOUT_SECONDS=$max_timeout)" >&2
nginx -t -q
exec nginx -g 'daemon off;'
