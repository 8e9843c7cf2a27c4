#!/usr/bin/env bash
# demo.sh - the README's main-job command: install what is missing, build,
# and run the prefork demo on the shared-memory default (no Redis needed).
# Arguments are passed to semcache-demo (try --help).
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/deps.sh
if [[ ! -f build/build.ninja ]]; then
	meson setup build -Dbuildtype=release >/dev/null
fi
ninja -C build >/dev/null
exec build/tools/semcache-demo "$@"
