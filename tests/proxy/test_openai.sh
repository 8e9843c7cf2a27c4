#!/usr/bin/env bash
#
# test_openai.sh - the official `openai` npm package (a real third-party
# client) against semcache-proxy.
#
# Usage: test_openai.sh PATH_TO_SEMCACHE_PROXY WORK_DIR
# Installs the package exactly as package-lock.json pins it (npm ci) into
# WORK_DIR (a build directory; reused while the lockfile is unchanged),
# starts the fake upstream and the proxy on free loopback ports with a
# private segment, and runs test_openai.mjs.  Exit 77 (meson's "skipped")
# only when node/npm are missing or the package cannot be installed, with
# the reason printed.
set -u
HERE=$(cd "$(dirname "$0")" && pwd)
PROXY=$(cd "$(dirname "$1")" && pwd)/$(basename "$1")
WORK=$2
SEG=/dev/shm/semcache-openaitest.$$
PIDS=()
cleanup() {
	for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null; wait "$p" 2>/dev/null; done
	rm -f "$SEG"
}
trap cleanup EXIT

if ! command -v node >/dev/null || ! command -v npm >/dev/null; then
	echo "SKIP: node and npm are needed (apt-get install nodejs npm)"
	exit 77
fi
mkdir -p "$WORK"
if ! cmp -s "$HERE/package-lock.json" "$WORK/package-lock.json" || [ ! -d "$WORK/node_modules/openai" ]; then
	cp "$HERE/package.json" "$HERE/package-lock.json" "$WORK/"
	if ! (cd "$WORK" && npm ci --no-audit --no-fund --loglevel=error); then
		rm -f "$WORK/package-lock.json"
		echo "SKIP: npm ci could not install the openai package (no registry access?)"
		exit 77
	fi
fi
cp "$HERE/test_openai.mjs" "$WORK/"

# start NAME CMD...: run CMD, wait for its "listening on 127.0.0.1:PORT"
# line, set PORT (not in a subshell: the pid must reach PIDS)
start() {
	local name=$1 out=$WORK/$1.out
	shift
	"$@" >"$out" &
	PIDS+=($!)
	PORT=
	for _ in $(seq 100); do
		PORT=$(sed -n 's/.*listening on 127\.0\.0\.1:\([0-9]*\).*/\1/p' "$out" | head -1)
		[ -n "$PORT" ] && return 0
		sleep 0.1
	done
	echo "$name did not start"
	exit 1
}
start upstream python3 "$HERE/fake_upstream.py"
UP=$PORT
start proxy "$PROXY" --listen 127.0.0.1:0 --upstream "http://127.0.0.1:$UP/v1" \
	--path "$SEG" --workers 2
PROXY_URL="http://127.0.0.1:$PORT" node "$WORK/test_openai.mjs"
