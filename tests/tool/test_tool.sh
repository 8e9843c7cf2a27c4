#!/usr/bin/env bash
#
# test_tool.sh - end-to-end test of the `semcache` operator tool.
#
# Runs the real binary (path in $1) against a private segment under
# /dev/shm, one subcommand after another, and checks outputs and exit codes
# (0 ok, 1 miss, 2 usage error, 3 runtime error), including damaged and
# missing segments, which must give a clear message and exit 3, never a
# crash.  Output is TAP-like: "ok - name" / "not ok - name" per check, with
# "# ..." diagnostics, then "N passed, M failed"; the exit status is 1 if
# anything failed.  The segment and scratch files are removed on exit.
#
# Why a shell script: it exercises exactly what an operator types, through
# argv, stdin, stdout, stderr and exit status, with no test harness between.

set -u

if [ $# -lt 1 ] || [ ! -x "$1" ]; then
	echo "usage: $0 PATH_TO_SEMCACHE_BINARY" >&2
	exit 2
fi
SC=$(cd "$(dirname "$1")" && pwd)/$(basename "$1")
unset SEMCACHE_PATH

SEG=/dev/shm/semcache-tooltest.$$.$RANDOM
TMP=$(mktemp -d "${TMPDIR:-/tmp}/semcache-tooltest.XXXXXX")
RPID=
SPID=
# the redis-server and the sync sidecar this script starts, by their pids
trap '[ -n "$SPID" ] && kill "$SPID" 2>/dev/null; [ -n "$RPID" ] && kill "$RPID" 2>/dev/null
rm -f "$SEG" "$SEG".*; rm -rf "$TMP"' EXIT

PASS=0
FAIL=0
ok() { PASS=$((PASS + 1)); echo "ok - $1"; }
not_ok() {
	FAIL=$((FAIL + 1))
	echo "not ok - $1"
	[ $# -gt 1 ] && printf '# %s\n' "$2"
	return 0
}

# run ARGS...: the tool with --path $SEG; stdout in $OUT, stderr in $ERR,
# exit status in $RC.  Stdin is inherited.
run() {
	"$SC" --path "$SEG" "$@" >"$TMP/out" 2>"$TMP/err"
	RC=$?
	OUT=$(cat "$TMP/out")
	ERR=$(cat "$TMP/err")
}

# expect WANT_RC NAME ARGS...: run and check the exit status; a status above
# 128 is a signal (crash) and always fails.
expect() {
	local want=$1 name=$2
	shift 2
	run "$@"
	if [ "$RC" -eq "$want" ]; then
		ok "$name"
	else
		not_ok "$name" "exit $RC, want $want; stderr: $ERR"
	fi
}

# check NAME CMD...: pass when CMD succeeds.
check() {
	local name=$1
	shift
	if "$@"; then ok "$name"; else not_ok "$name" "failed: $*; stdout: $OUT"; fi
}

# py EXPR-SCRIPT: run python3 on $OUT (as stdin) and succeed if it exits 0.
py() { printf '%s' "$OUT" | python3 -c "$1"; }

# ---------------------------------------------------------------- records
cat >"$TMP/rec1.json" <<'EOF'
{
  "content": "line one\nline two",
  "model": "gpt-test",
  "usage": {"prompt_tokens": 11, "completion_tokens": 22},
  "tool_calls": [{"id": "call_1", "name": "lookup", "arguments": {"q": "x", "n": 1}}],
  "latency_ms": 345,
  "finish_reason": "stop",
  "reasoning": "because",
  "metadata": {"tenant": "t1", "tags": [1, 2]}
}
EOF
echo '{"content": "second answer", "model": "gpt-test"}' >"$TMP/rec2.json"
echo '{"content": "plain", "model": "m"}' >"$TMP/rec3.json"
echo '  [1, 0, 0, 0]' >"$TMP/e1.json"
echo '[1, 0.5, 0, 0]' >"$TMP/e_mix.json"
echo '[0, 0, 1, 0]' >"$TMP/e_far.json"
echo '[1, 0, 0]' >"$TMP/e_short.json"
python3 -c 'import struct,sys; sys.stdout.buffer.write(struct.pack("<4f", 0, 1, 0, 0))' >"$TMP/e2.f32"
printf 'abcde' >"$TMP/e_odd.f32"

# ---------------------------------------------------------------- create
expect 0 "create" create --slots 256 --dim 4 --arena 1M --max-payload 64K --block-size 128 \
	--exact-ttl 600 --semantic-ttl 1200 --threshold 0.9 --quant int8
expect 3 "create refuses an existing segment" create --dim 4
check "create names the existing file" grep -q "exists" "$TMP/err"
expect 0 "create --force replaces it" create --slots 256 --dim 4 --arena 1M --max-payload 64K --force

# ---------------------------------------------------------------- put
expect 0 "put with JSON-array embedding" put ns1 k1 --embedding "$TMP/e1.json" <"$TMP/rec1.json"
expect 0 "put with raw float32 embedding" put ns1 k2 --embedding "$TMP/e2.f32" <"$TMP/rec2.json"
expect 0 "put without embedding, --scope" put ns2 pre:a --scope s1 <"$TMP/rec3.json"
expect 0 "put second prefixed key" put ns2 pre:b <"$TMP/rec3.json"
expect 0 "put third key in ns2" put ns2 other <"$TMP/rec3.json"

expect 2 "create --force with options the library refuses" create --force --arena 64K
check "the refusal is explained" grep -q "hint: the arena" "$TMP/err"
expect 0 "a refused create --force leaves the old segment alone" get ns1 k1

# ---------------------------------------------------------------- get
expect 0 "get hit" get ns1 k1
check "get prints the content" [ "$OUT" = "$(printf 'line one\nline two')" ]
expect 0 "get --json" get ns1 k1 --json
check "get --json fields match the record" py '
import json, sys
r = json.load(sys.stdin)
assert r["content"] == "line one\nline two", r
assert r["model"] == "gpt-test"
assert r["usage"] == {"prompt_tokens": 11, "completion_tokens": 22}
assert r["latency_ms"] == 345 and r["finish_reason"] == "stop" and r["reasoning"] == "because"
tc = r["tool_calls"]
assert len(tc) == 1 and tc[0]["id"] == "call_1" and tc[0]["name"] == "lookup"
assert json.loads(tc[0]["arguments"]) == {"q": "x", "n": 1}
assert json.loads(r["metadata"]) == {"tenant": "t1", "tags": [1, 2]}
'
expect 0 "get --json of a minimal record" get ns1 k2 --json
check "minimal record: optional fields null, no tool calls" py '
import json, sys
r = json.load(sys.stdin)
assert r["content"] == "second answer" and r["tool_calls"] == [] and r["metadata"] is None
'
"$SC" --path "$SEG" get ns1 k1 --json >"$TMP/copy.json" 2>/dev/null
expect 0 "get --json output is a record put accepts" put ns9 copy <"$TMP/copy.json"
expect 0 "get of the copy" get ns9 copy --json
check "the copy equals the original" py "
import json, sys
assert json.load(sys.stdin) == json.load(open('$TMP/copy.json'))
"
expect 0 "invalidate the copy" invalidate --ns ns9
check "invalidating the copy removed 1" [ "$OUT" = "1 entry invalidated" ]
expect 1 "get on a missing key is a miss" get ns1 nope
expect 1 "get in the wrong namespace is a miss" get ns2 k1
expect 0 "get --touch" get ns1 k1 --touch

# ---------------------------------------------------------------- search
expect 0 "search finds the identical embedding" search ns1 --embedding "$TMP/e1.json"
check "search: similarity ~1.0, the entry's identity and the right content" py '
import sys
lines = sys.stdin.read().splitlines()
assert lines[0].split("\t") == ["SIMILARITY", "NS", "KEY", "SCOPE", "AGE", "EXACT_TTL", "SEM_TTL", "CONTENT"], lines[0]
assert len(lines) == 2, lines
sim, ns, key, scope, age, ettl, sttl, content = lines[1].split("\t")
assert abs(float(sim) - 1.0) < 1e-4, sim
assert (ns, key, scope) == ("ns1", "k1", ""), lines[1]
assert ettl != "expired" and sttl != "expired", lines[1]
assert content == "line one\\nline two", content
'
expect 0 "search --top 2 --threshold 0.3" search ns1 --embedding "$TMP/e_mix.json" --threshold 0.3 --top 2
check "search --top 2: two matches, best first, each naming its key" py '
import sys
rows = [l.split("\t") for l in sys.stdin.read().splitlines()[1:]]
assert len(rows) == 2, rows
assert float(rows[0][0]) > float(rows[1][0]) and abs(float(rows[0][0]) - 0.894427) < 1e-3, rows
assert rows[0][2] == "k1" and rows[1][2] == "k2", rows
assert rows[0][7].startswith("line one") and rows[1][7] == "second answer", rows
'
expect 0 "search --json" search ns1 --embedding "$TMP/e2.f32" --json --top 5 --threshold 0.5
check "search --json: one parseable match with its identity and times" py '
import json, sys, time
rows = [json.loads(l) for l in sys.stdin.read().splitlines()]
assert len(rows) == 1 and rows[0]["rank"] == 1, rows
r = rows[0]
assert abs(r["similarity"] - 1.0) < 1e-4 and r["response"]["content"] == "second answer"
assert (r["ns"], r["key"], r["scope"]) == ("ns1", "k2", ""), r
now = time.time() * 1000
assert r["created_ms"] <= now + 1000 and r["created_ms"] > now - 600000, r
# the segment of create --force: default TTLs, 3600 s and 86400 s
assert r["exact_expiry_ms"] - r["created_ms"] == 3600000, r
assert r["semantic_expiry_ms"] - r["created_ms"] == 86400000, r
assert isinstance(r["slot"], int)
'
expect 1 "search with nothing similar enough is a miss" search ns1 --embedding "$TMP/e_far.json"
expect 1 "search in another scope is a miss" search ns1 --scope other --embedding "$TMP/e1.json"
expect 2 "search with the wrong dimension" search ns1 --embedding "$TMP/e_short.json"
check "wrong dimension is explained" grep -q "dim" "$TMP/err"

# ---------------------------------------------------------------- delete
expect 0 "put user1" put ns4 user1 <"$TMP/rec3.json"
expect 0 "put user10:x" put ns4 user10:x <"$TMP/rec3.json"
expect 0 "delete an exact key" delete ns4 user1
check "delete says what it did" [ "$OUT" = "1 entry deleted" ]
expect 1 "the deleted key is gone" get ns4 user1
expect 0 "a key it prefixes is not" get ns4 user10:x
expect 1 "delete of an absent key is a miss" delete ns4 user1
check "the miss names the key" grep -q "no entry for key 'user1' in namespace 'ns4'" "$TMP/err"
expect 2 "delete without KEY" delete ns4
expect 0 "stat --json counts the delete" stat --json
check "stat --json: deletes 1" py '
import json, sys
assert json.load(sys.stdin)["deletes"] == 1
'
expect 0 "delete the rest" delete ns4 user10:x

# ---------------------------------------------------------------- dump
expect 0 "dump" dump
check "dump lists 5 entries under a header" [ "$(printf '%s\n' "$OUT" | tail -n +2 | wc -l)" -eq 5 ]
check "dump shows '-' for no embedding" py '
import sys
rows = [l.split("\t") for l in sys.stdin.read().splitlines()[1:]]
by = {(r[0], r[1]): r for r in rows}
assert by[("ns2", "pre:a")][2] == "s1" and by[("ns2", "pre:a")][5] == "-", rows
assert by[("ns1", "k1")][5] != "-", rows
'
expect 0 "dump --json" dump --json
check "dump --json is JSONL with 5 entries" py '
import json, sys
rows = [json.loads(l) for l in sys.stdin.read().splitlines()]
assert len(rows) == 5
k1 = [r for r in rows if r["key"] == "k1"][0]
assert k1["ns"] == "ns1" and k1["has_embedding"] and k1["semantic_ttl_left_ms"] > 0
assert k1["hits"] >= 3 and k1["size"] > 0
assert [r for r in rows if r["key"] == "other"][0]["semantic_ttl_left_ms"] is None
'
expect 0 "dump --ns" dump --ns ns2 --json
check "dump --ns ns2 lists 3" [ "$(printf '%s\n' "$OUT" | wc -l)" -eq 3 ]
expect 0 "dump --ns --prefix" dump --ns ns2 --prefix pre: --json
check "dump --ns ns2 --prefix pre: lists 2" [ "$(printf '%s\n' "$OUT" | wc -l)" -eq 2 ]
expect 0 "dump --limit" dump --limit 1 --json
check "dump --limit 1 lists 1" [ "$(printf '%s\n' "$OUT" | wc -l)" -eq 1 ]

# ---------------------------------------------------------------- stat
expect 0 "stat" stat
check "stat shows the second tier line" grep -q "^second tier: none" "$TMP/out"
check "stat lists this process, marked *" grep -Eq '^ +[0-9]+ +[0-9]+\* +yes ' "$TMP/out"
expect 0 "stat --json" stat --json
HM0=$(py 'import json,sys; e = json.load(sys.stdin)["exact"]; print(e["hits"], e["misses"])')
"$SC" --path "$SEG" get ns1 k1 >/dev/null 2>&1
"$SC" --path "$SEG" get ns1 nope >/dev/null 2>&1
expect 0 "stat --json after one exact hit and one miss" stat --json
check "stat --json: entries, exact hits and misses" py "
import json, sys
h0, m0 = map(int, '$HM0'.split())
s = json.load(sys.stdin)
assert s['entries'] == 5, s['entries']
assert s['exact']['hits'] == h0 + 1 and s['exact']['misses'] == m0 + 1, (h0, m0, s['exact'])
assert s['semantic']['hits'] >= 3 and s['puts'] >= 5
assert s['geometry']['slots'] == 256 and s['geometry']['dim'] == 4
assert isinstance(s['procs'], list) and any(p['self'] for p in s['procs'])
assert s['second_tier'] is None
"
expect 0 "stat --prometheus" stat --prometheus
check "prometheus text has semcache_entries 5" grep -qx "semcache_entries 5" "$TMP/out"
check "prometheus counters end in _total" grep -q "^# TYPE semcache_exact_hits_total counter" "$TMP/out"
check "prometheus per-process metrics carry a pid label" grep -q '^semcache_process_alive{pid="' "$TMP/out"
expect 2 "stat --json --prometheus conflict" stat --json --prometheus
timeout 5 "$SC" --path "$SEG" stat --json --watch 0.2 >"$TMP/watch" 2>&1 &
WPID=$!
sleep 0.5
expect 3 "create --force refuses a segment in use" create --force --dim 4
check "in-use refusal is explained" grep -q "still have it open" "$TMP/err"
expect 3 "destroy refuses a segment in use" destroy
check "the segment in use is still there" [ -e "$SEG" ]
sleep 0.5
kill -INT "$WPID" 2>/dev/null
wait "$WPID"
WRC=$?
OUT=$(cat "$TMP/watch")
check "stat --watch repeats and stops cleanly on SIGINT" [ "$WRC" -eq 0 ]
check "stat --watch --json: one document per interval" py '
import json, sys
docs = [json.loads(l) for l in sys.stdin.read().splitlines()]
assert len(docs) >= 2, len(docs)
'

# ---------------------------------------------------------------- verify
expect 0 "verify" verify
check "verify says consistent" [ "$OUT" = "consistent" ]

# ---------------------------------------------------------------- global --path
OUT=$("$SC" stat --json --path "$SEG" 2>/dev/null) && RC=0 || RC=$?
check "--path after the subcommand" py 'import json,sys; assert json.load(sys.stdin)["entries"] == 5'
OUT=$(SEMCACHE_PATH=$SEG "$SC" stat --json 2>/dev/null)
check "SEMCACHE_PATH environment variable" py 'import json,sys; assert json.load(sys.stdin)["entries"] == 5'

# ---------------------------------------------------------------- TTL
expect 0 "put --ttl 1" put ns3 short --ttl 1 <"$TMP/rec3.json"
expect 0 "short-lived entry is there at first" get ns3 short
sleep 1.3
expect 1 "short-lived entry is gone after its TTL" get ns3 short

# ---------------------------------------------------------------- invalidate
expect 0 "invalidate --ns --prefix" invalidate --ns ns2 --prefix pre:
check "invalidate --ns ns2 --prefix pre: removed 2" [ "$OUT" = "2 entries invalidated" ]
expect 0 "invalidate --prefix across namespaces" invalidate --prefix oth
check "invalidate --prefix oth removed 1" [ "$OUT" = "1 entry invalidated" ]
expect 0 "invalidate --ns" invalidate --ns ns1
check "invalidate --ns ns1 removed 2" [ "$OUT" = "2 entries invalidated" ]
expect 0 "invalidate --all" invalidate --all
check "invalidate --all on an empty cache removed 0" [ "$OUT" = "0 entries invalidated" ]
expect 0 "dump after invalidation" dump --json
check "nothing left" [ -z "$OUT" ]
expect 0 "verify after invalidation" verify

# ---------------------------------------------------------------- usage errors
expect 2 "no subcommand" 
expect 2 "unknown subcommand" frobnicate
expect 2 "unknown option" stat --bogus
expect 2 "get without KEY" get ns1
expect 2 "get with too many arguments" get a b c
expect 2 "bad number" create --force --slots abc
expect 2 "negative number" create --force --slots -5
expect 2 "number out of range" create --force --slots 8
expect 2 "bad quant" create --force --quant fast
expect 2 "bad threshold" search ns1 --embedding "$TMP/e1.json" --threshold 2
expect 2 "bad --top" search ns1 --embedding "$TMP/e1.json" --top 0
expect 2 "search without --embedding" search ns1
expect 2 "option missing its value" dump --ns
expect 2 "invalidate without a selector" invalidate
expect 2 "invalidate --all with --ns" invalidate --all --ns x
expect 2 "bad JSON record" put ns1 k <<<'{"content": "x", "model": '
check "bad JSON is explained" grep -q "not valid JSON" "$TMP/err"
expect 2 "record without content" put ns1 k <<<'{"model": "m"}'
expect 2 "record with an unknown field" put ns1 k <<<'{"content": "x", "model": "m", "colour": 1}'
expect 2 "record with a negative token count" put ns1 k <<<'{"content": "x", "model": "m", "usage": {"prompt_tokens": -1}}'
expect 2 "record that is not an object" put ns1 k <<<'["x"]'
expect 2 "embedding '-' refused" put ns1 k --embedding - <"$TMP/rec3.json"
expect 2 "raw embedding not a multiple of 4 bytes" put ns1 k --embedding "$TMP/e_odd.f32" <"$TMP/rec3.json"
expect 2 "missing embedding file" put ns1 k --embedding "$TMP/nonexistent" <"$TMP/rec3.json"
expect 2 "bad --ttl" put ns1 k --ttl 0 <"$TMP/rec3.json"
expect 1 "nothing was stored by the failed puts" get ns1 k

# ---------------------------------------------------------------- help
for c in create destroy stat dump get put search delete invalidate verify version help; do
	expect 0 "$c --help" "$c" --help
	check "$c --help prints its usage" grep -q "^usage: semcache $c" "$TMP/out"
done
expect 0 "help get" help get
expect 0 "--help" --help
expect 0 "version" version
check "version prints a version" grep -Eq '^semcache [0-9]+\.[0-9]+\.[0-9]+$' "$TMP/out"
check "version is the library's" grep -q "^semcache $(sed -n "s/^  version : '\(.*\)',/\1/p" "$(dirname "$0")/../../meson.build")\$" "$TMP/out"

# ---------------------------------------------------------------- damaged segments
cp "$SEG" "$SEG.junk"
python3 -c 'import sys; f = open(sys.argv[1], "r+b"); f.write(bytes([0xa5]) * 4096)' "$SEG.junk"
REAL=$SEG
SEG=$SEG.junk
expect 3 "stat on a segment with a junk header" stat
check "junk header: the error names the problem" grep -q "not a semcache segment" "$TMP/err"
expect 3 "verify on a segment with a junk header" verify
expect 3 "get on a segment with a junk header" get ns1 k1
SEG=$REAL

cp "$SEG" "$SEG.zero"
dd if=/dev/zero of="$SEG.zero" bs=4096 count=1 conv=notrunc 2>/dev/null
SEG=$SEG.zero
SIZE_BEFORE=$(stat -c %s "$SEG")
expect 3 "stat on a segment with a zeroed header" stat
check "zeroed header: the file is left untouched" [ "$(stat -c %s "$SEG")" -eq "$SIZE_BEFORE" ] \
	&& [ -z "$(head -c 4096 "$SEG" | tr -d '\0')" ]
SEG=$REAL

cp "$SEG" "$SEG.short"
truncate -s $(( $(stat -c %s "$SEG") / 2 )) "$SEG.short"
SEG=$SEG.short
expect 3 "stat on a truncated segment" stat
check "truncated: a clear error" grep -Eqi "truncated|shorter|not a semcache|corrupt" "$TMP/err"
SEG=$REAL

cp "$SEG" "$SEG.tiny"
truncate -s 100 "$SEG.tiny"
SEG=$SEG.tiny
expect 3 "stat on a 100-byte segment" stat
SEG=$REAL

: >"$SEG.empty"
SEG=$SEG.empty
expect 3 "stat on an empty file" stat
check "empty file stays empty" [ ! -s "$SEG" ]
SEG=$REAL

SEG=$REAL.absent
expect 3 "stat on a non-existent path" stat
check "non-existent path creates nothing" [ ! -e "$SEG" ]
expect 3 "get on a non-existent path" get a b
expect 3 "destroy of a non-existent path" destroy
SEG=$REAL

# ------------------------------------------- group segments, a full table
SEG=$REAL.group
expect 0 "create --group" create --slots 64 --dim 4 --arena 256K --max-payload 16K --max-procs 1 --group
check "a group segment is mode 0660" [ "$(stat -c %a "$SEG")" = 660 ]
expect 3 "stat without --group refuses a 0660 segment" stat
check "the refusal names the reason" grep -qi "unsafe" "$TMP/err"
expect 0 "stat --group" stat --group
expect 0 "verify --group" verify --group
# the one process record taken by a watching tool: reads still work
"$SC" --path "$SEG" stat --group --watch 0.2 >/dev/null 2>&1 &
GPID=$!
sleep 0.5
expect 3 "put with every process record taken" put ns k --group <<<'{"content":"x","model":"m"}'
check "the refusal says the table is full" grep -qi "process table is full" "$TMP/err"
expect 0 "stat with every process record taken" stat --group
expect 1 "get with every process record taken (a miss, not an error)" get ns k --group
kill -INT "$GPID" 2>/dev/null
wait "$GPID" 2>/dev/null
expect 0 "destroy --group segment" destroy --group
SEG=$REAL

# ---------------------------------------------------------------- sync
expect 0 "sync --help" sync --help
check "sync --help names the options" grep -q -- "--password-env" "$TMP/out"
check "sync --help names --format and --seed-namespace" \
	grep -q -- "--format native|seed \[--seed-namespace NS\]" "$TMP/out"
expect 2 "sync --port 0 is a usage error" sync --port 0
expect 2 "sync --prefix with a space is a usage error" sync --prefix "a b"
expect 2 "sync --password-env naming an unset variable" sync --password-env SC_NO_SUCH_VAR_$$
# On a path with no segment: options are checked before the segment is
# opened, and an option accepted by mistake fails here with exit 3 instead
# of leaving a sidecar running.
SEG=$REAL.absent
expect 2 "sync --format with an unknown format is a usage error" sync --format json
check "the bad format is named" grep -q "'native' or 'seed', not 'json'" "$TMP/err"
expect 2 "sync --format is case-sensitive" sync --format SEED
expect 2 "sync --seed-namespace without --format is a usage error" sync --seed-namespace t
check "the refusal says what it needs" grep -q -- "--seed-namespace needs --format seed" "$TMP/err"
expect 2 "sync --seed-namespace with --format native is a usage error" \
	sync --format native --seed-namespace t
check "the refused syncs created nothing" [ ! -e "$SEG" ]
SEG=$REAL
# A private redis-server on a free loopback port, ours to stop by its pid.
expect 0 "put before sync" put ns1 before-sync <"$TMP/rec2.json"
RPORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
redis-server --port "$RPORT" --bind 127.0.0.1 --save "" --appendonly no \
	--dir "$TMP" --logfile "$TMP/redis.log" >/dev/null 2>&1 &
RPID=$!
for _ in $(seq 100); do redis-cli -p "$RPORT" ping 2>/dev/null | grep -q PONG && break; sleep 0.1; done
"$SC" --path "$SEG" sync --port "$RPORT" --prefix tooltest: 2>"$TMP/sync.err" &
SPID=$!
# wait until the syncer is up (bounded), then check what stat shows
for _ in $(seq 100); do
	"$SC" --path "$SEG" stat --json 2>/dev/null | python3 -c '
import json, sys
t = json.load(sys.stdin)["second_tier"]
sys.exit(0 if t and t["state"] == "up" and t["outbox_depth"] == 0 and t["exported"] >= 1 else 1)' && break
	sleep 0.1
done
expect 0 "stat --json with a syncer" stat --json
check "stat --json: second_tier up, entries exported, outbox empty" py "
import json, sys
t = json.load(sys.stdin)['second_tier']
assert t['state'] == 'up' and t['syncer_alive'] and t['syncer_pid'] == $SPID, t
assert t['exported'] >= 1 and t['outbox_depth'] == 0 and t['last_error'] is None, t
for k in ('index_trimmed', 'import_gaps', 'resyncs', 'resync_deleted'):
    assert isinstance(t[k], int) and t[k] == 0, (k, t)
"
check "the entries are in Redis" [ "$(redis-cli -p "$RPORT" scard tooltest:llm_cache_index)" -ge 1 ]
expect 0 "stat with a syncer" stat
check "stat text shows the tier up" grep -q "^  state  *up since" "$TMP/out"
check "stat text shows the outbox" grep -q "^  outbox  *0 of " "$TMP/out"
check "stat text shows the index pass" grep -q "^  index pass  *0 members trimmed" "$TMP/out"
expect 0 "stat --prometheus with a syncer" stat --prometheus
check "prometheus: tier state up" grep -qx 'semcache_tier_state{state="up"} 1' "$TMP/out"
check "prometheus: outbox depth" grep -qx 'semcache_tier_outbox_depth 0' "$TMP/out"
check "prometheus: index pass counters" sh -c 'grep -qx "semcache_tier_index_trimmed_total 0" "$1" && grep -qx "semcache_tier_resyncs_total 0" "$1"' _ "$TMP/out"
# Redis goes away: the tier says so, the segment keeps serving
kill "$RPID"; wait "$RPID" 2>/dev/null
RPID=
expect 0 "put while Redis is down" put ns1 during-outage <"$TMP/rec2.json"
for _ in $(seq 100); do
	"$SC" --path "$SEG" stat --json 2>/dev/null | python3 -c '
import json, sys
sys.exit(0 if json.load(sys.stdin)["second_tier"]["state"] == "degraded" else 1)' && break
	sleep 0.1
done
expect 0 "stat --json while Redis is down" stat --json
check "stat --json: degraded, unreachable, one item waiting" py "
import json, sys
t = json.load(sys.stdin)['second_tier']
assert t['state'] == 'degraded' and t['last_error'] == 'unreachable', t
assert t['outbox_depth'] == 1, t
"
expect 0 "get while Redis is down" get ns1 during-outage
kill -INT "$SPID" 2>/dev/null
wait "$SPID"
SRC=$?
SPID=
check "sync stops cleanly on SIGINT" [ "$SRC" -eq 0 ]
check "sync reported its state changes" grep -q "tier degraded (unreachable" "$TMP/sync.err"
expect 0 "stat after sync stopped" stat --json
check "stat --json: tier off once the syncer stopped" py "
import json, sys
t = json.load(sys.stdin)['second_tier']
assert t['state'] == 'off' and t['syncer_pid'] is None, t
"

# ---------------------------------------------------------------- sync --format seed
# A fresh segment and prefix, a new private redis-server (the one above was
# stopped) and a seed-format sidecar for namespace tenant-a.  A put there
# under a seed id must land in Redis as the reference JSON under that id;
# the same key in another namespace and a key that is no seed id stay local.
SEG=$REAL.seed
SKEY='q:what-is-2+2?'
expect 0 "create a segment for the seed sidecar" create --slots 64 --dim 4 --arena 256K --max-payload 16K
RPORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
redis-server --port "$RPORT" --bind 127.0.0.1 --save "" --appendonly no \
	--dir "$TMP" --logfile "$TMP/redis-seed.log" >/dev/null 2>&1 &
RPID=$!
for _ in $(seq 100); do
	[ "$(redis-cli -p "$RPORT" ping 2>/dev/null)" = PONG ] && break
	sleep 0.1
done
"$SC" --path "$SEG" sync --port "$RPORT" --prefix seedtest: --format seed \
	--seed-namespace tenant-a 2>"$TMP/seedsync.err" &
SPID=$!
UP=no
for _ in $(seq 100); do
	if "$SC" --path "$SEG" stat --json 2>/dev/null | python3 -c '
import json, sys
t = json.load(sys.stdin)["second_tier"]
sys.exit(0 if t and t["state"] == "up" else 1)'; then UP=yes; break; fi
	sleep 0.1
done
check "the seed sidecar brings the tier up" [ "$UP" = yes ]
expect 0 "put a seed id in the seed namespace" put tenant-a "$SKEY" --embedding "$TMP/e1.json" <"$TMP/rec2.json"
expect 0 "put the same key in another namespace" put tenant-b "$SKEY" <"$TMP/rec3.json"
expect 0 "put a key that is no seed id" put tenant-a "not a seed id" <"$TMP/rec3.json"
# until all three went through the outbox (bounded)
for _ in $(seq 100); do
	"$SC" --path "$SEG" stat --json 2>/dev/null | python3 -c '
import json, sys
t = json.load(sys.stdin)["second_tier"]
sys.exit(0 if t["outbox_depth"] == 0 and t["exported"] >= 1 and t["seed_skipped"] >= 2 else 1)' && break
	sleep 0.1
done
OUT=$(redis-cli -p "$RPORT" get "seedtest:llm_cache:$SKEY" 2>&1)
check "the entry is in Redis under its key, as the reference JSON" py '
import json, sys
v = json.loads(sys.stdin.read())
assert v["response"]["content"] == "second answer", v
e = v["query_embedding"]
assert isinstance(e, list) and len(e) == 4 and abs(e[0] - 1) < 1e-6 and not any(e[1:]), e
assert isinstance(v["created_at"], (int, float)) and v["created_at"] > 0, v
assert isinstance(v["hit_count"], int), v
'
OUT=$(redis-cli -p "$RPORT" sismember seedtest:llm_cache_index "$SKEY" 2>&1)
check "its key is in the index" [ "$OUT" = 1 ]
OUT=$(redis-cli -p "$RPORT" scard seedtest:llm_cache_index 2>&1)
check "nothing else was exported" [ "$OUT" = 1 ]
expect 0 "stat --json with the seed sidecar" stat --json
check "stat --json: two puts kept local (seed_skipped)" py '
import json, sys
t = json.load(sys.stdin)["second_tier"]
assert t["state"] == "up" and t["seed_skipped"] == 2 and t["outbox_depth"] == 0, t
'
kill -INT "$SPID" 2>/dev/null
wait "$SPID"
SRC=$?
SPID=
check "the seed sidecar stops cleanly on SIGINT" [ "$SRC" -eq 0 ]
kill "$RPID"; wait "$RPID" 2>/dev/null
RPID=
expect 0 "destroy the seed segment" destroy
SEG=$REAL

# ---------------------------------------------------------------- destroy
expect 0 "destroy" destroy
check "destroy removed the file" [ ! -e "$SEG" ]
expect 3 "stat after destroy" stat

echo "$PASS passed, $FAIL failed"
[ "$FAIL" -eq 0 ]
