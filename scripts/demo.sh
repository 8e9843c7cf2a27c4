#!/usr/bin/env bash
# demo.sh - the README's main-job command: install what is missing, build,
# and run the semcache-proxy demo: a fake model API, the caching proxy with
# prefork workers on the default segment, the demo requests replayed through
# HTTP by concurrent clients (scripts/proxy_demo.py; no Redis needed).
# Arguments are passed to proxy_demo.py (try --help).
#   ./scripts/demo.sh --library [ARGS]   the library's prefork demo instead
#                                        (semcache-demo; try --library --help)
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/deps.sh
if [[ ! -f build/build.ninja ]]; then
	meson setup build -Dbuildtype=release >/dev/null
fi
ninja -C build >/dev/null
if [[ ${1:-} == --library ]]; then
	shift
	exec build/tools/semcache-demo "$@"
fi
exec python3 scripts/proxy_demo.py --proxy build/proxy/semcache-proxy --tool build/tools/semcache "$@"
