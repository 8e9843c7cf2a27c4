#!/usr/bin/env bash
# test.sh - the README's test command: install what is missing, build with
# warnings as errors, run every suite (unit, stress with kill -9, tool), then
# build again with AddressSanitizer + UndefinedBehaviorSanitizer and run them
# all again, then run the multi-threaded test under ThreadSanitizer.  Ends
# with one line "N passed, M failed".
#   SEMCACHE_TORTURE_SECONDS  length of the kill -9 torture test (default 20)
set -euo pipefail
cd "$(dirname "$0")/.."

./scripts/deps.sh

export SEMCACHE_TORTURE_SECONDS=${SEMCACHE_TORTURE_SECONDS:-20}
passed=0
failed=0

run_suite() { # build-dir, meson setup args... [-- test names]
	local dir=$1
	shift
	local args=() only=()
	while (($#)) && [[ $1 != -- ]]; do args+=("$1"); shift; done
	(($#)) && shift && only=("$@")
	if [[ ! -f $dir/build.ninja ]]; then
		meson setup "$dir" "${args[@]}" >/dev/null
	else
		meson configure "$dir" "${args[@]}" >/dev/null
	fi
	# with test names, build only what they run
	local targets=()
	((${#only[@]})) && targets=(tests/tsan_threads tests/tsan_tier_threads)
	if ! ninja -C "$dir" "${targets[@]}" >/dev/null; then
		echo "build in $dir failed" >&2
		failed=$((failed + 1))
		return 1
	fi
	local rc=0
	meson test -C "$dir" --print-errorlogs --num-processes 1 --no-rebuild "${only[@]}" || rc=$?
	# count from meson's machine-readable log
	read -r p f < <(python3 - "$dir/meson-logs/testlog.json" <<'PY'
import json, sys
p = f = 0
for line in open(sys.argv[1]):
    r = json.loads(line)
    if r.get("result") in ("OK", "EXPECTEDFAIL", "SKIP"):
        p += 1
    else:
        f += 1
print(p, f)
PY
)
	passed=$((passed + p))
	failed=$((failed + f))
	return $rc
}

status=0
echo "== build and test (warnings as errors)"
run_suite build -Dwerror=true -Dbuildtype=debugoptimized || status=1
echo "== build and test under ASan + UBSan"
ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1 \
	run_suite build-asan -Dwerror=true -Db_sanitize=address,undefined -Db_lundef=false -Dbuildtype=debug || status=1

echo "== threads of one process under ThreadSanitizer (tests/tsan/tsan.supp names the intended races)"
run_suite build-tsan -Dwerror=true -Db_sanitize=thread -Db_lundef=false -Djemalloc=false -Dbuildtype=debug \
	-- threads tier-threads || status=1

echo "$passed passed, $failed failed"
exit $status
