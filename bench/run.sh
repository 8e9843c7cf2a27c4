#!/usr/bin/env bash
# run.sh - run every semcache benchmark and print one table of ratios.
#
#   bench/run.sh [--quick] [--json FILE]
#
# What: one command for the whole suite.  It builds first if needed
# (`meson setup build -Dbuildtype=release` when there is no build
# directory, then `ninja -C build`), runs, one after the other so they
# never compete for the cores:
#   build/bench/bench_exact     exact path: put, get, zero-copy get, pinning cost
#   build/bench/bench_redis     Redis GET/SET on loopback (own server, own port)
#   build/bench/bench_scan      semantic scan kernels, two-stage scan
#   build/bench/bench_hitratio  eviction: hit ratio against exact LRU and SIEVE
#   build/bench/bench_tier      the Redis tier: export rate, cross-host lag,
#                               request p99 while Redis is stopped (own server)
#   build/tools/semcache-demo   the prefork demo
#   bench/proxy_bench.sh        semcache-proxy under wrk, next to nginx's
#                               proxy_cache and the fake upstream (own table)
# collects the JSON line each benchmark ends with, and prints one table in
# which every row has its value, the reference it is measured against and
# the ratio value / reference.  The references are measured in the same run
# on the same machine (single-core memory read bandwidth, a naive scan
# loop, random 1 KB copies, Redis on loopback, LRU and SIEVE replaying the
# same requests), never taken from elsewhere.
#
# Why: one machine's absolute numbers say little about another's; ratios to
# a yardstick measured alongside them travel (see ../shared/STYLE.md).
#
# Options:
#   --quick      smaller sizes, for a check that the suite works (< 30 s)
#   --json FILE  also write the combined results (every benchmark's JSON,
#                the demo's figures and the table rows) to FILE
#   -h, --help   this text
#
# Environment: SEMCACHE_BUILD_DIR=DIR uses (or sets up) another build
# directory than ./build, e.g. a release build beside a debug one.
#
# The full run takes about two minutes on a 2-core machine.  Segments go to
# /dev/shm/semcache-bench-*-<pid> and are removed at exit.  Logs of a run
# in which something failed are kept and their directory is printed.
# Exit status: 0 if every benchmark ran and reported (Redis may be absent),
# 1 if one failed, 2 on a usage error.
set -uo pipefail
B=${SEMCACHE_BUILD_DIR:-build}

usage() { sed -n '2,/^set -uo/{/^set -uo/d;s/^# \{0,1\}//;p}' "$0"; }

quick=0
json_out=
while [[ $# -gt 0 ]]; do
	case $1 in
	--quick) quick=1 ;;
	--json)
		[[ $# -ge 2 && -n $2 ]] || { echo "run.sh: --json needs a file name" >&2; exit 2; }
		json_out=$2
		shift ;;
	--json=*) json_out=${1#--json=} ;;
	-h | --help) usage; exit 0 ;;
	*) echo "run.sh: unknown argument '$1' (try --help)" >&2; exit 2 ;;
	esac
	shift
done
if [[ -n $json_out ]]; then
	# Resolve before the cd below, so a relative name means what the caller meant.
	case $json_out in /*) ;; *) json_out=$PWD/$json_out ;; esac
fi

cd "$(dirname "$0")/.." || exit 2
command -v python3 >/dev/null || { echo "run.sh: python3 is needed to collect the results" >&2; exit 2; }

# ---------------------------------------------------------------- setup
logs=$(mktemp -d "${TMPDIR:-/tmp}/semcache-bench.XXXXXX") || exit 1
seg_exact=/dev/shm/semcache-bench-exact-$$
seg_demo=/dev/shm/semcache-bench-demo-$$
seg_hit=/dev/shm/semcache-bench-hit-$$
current=  # pid of the benchmark running now: the only process we ever signal
keep_logs=0

# shellcheck disable=SC2317  # both are reached through trap
cleanup() {
	rm -f "$seg_exact" "$seg_demo" "$seg_hit"
	if [[ $keep_logs == 1 ]]; then
		echo "run.sh: logs kept in $logs" >&2
	else
		rm -rf "$logs"
	fi
}
# shellcheck disable=SC2317
on_signal() {
	[[ -n $current ]] && kill -TERM "$current" 2>/dev/null && wait "$current" 2>/dev/null
	keep_logs=1
	exit 130
}
trap cleanup EXIT
trap on_signal INT TERM

# ---------------------------------------------------------------- build
if [[ ! -f "$B"/build.ninja ]]; then
	echo "run.sh: no build directory: meson setup $B -Dbuildtype=release" >&2
	if ! meson setup "$B" -Dbuildtype=release >"$logs/build.log" 2>&1; then
		tail -n 20 "$logs/build.log" >&2
		exit 1
	fi
fi
echo "run.sh: ninja -C $B" >&2
if ! ninja -C "$B" >"$logs/build.log" 2>&1; then
	tail -n 20 "$logs/build.log" >&2
	echo "run.sh: build failed" >&2
	exit 1
fi

# ---------------------------------------------------------------- runs

# run NAME PROGRAM [ARGS...]: stdout to $logs/NAME.out, stderr to .err, status to .rc
run() {
	local name=$1
	shift
	if [[ ! -x $1 ]]; then
		echo "run.sh: $1 not built" >&2
		echo 127 >"$logs/$name.rc"
		return
	fi
	echo "run.sh: running $name ..." >&2
	local t0=$SECONDS
	"$@" >"$logs/$name.out" 2>"$logs/$name.err" &
	current=$!
	wait "$current"
	echo $? >"$logs/$name.rc"
	current=
	echo "run.sh:   $name done in $((SECONDS - t0)) s" >&2
}

if [[ $quick == 1 ]]; then
	exact_args=(--entries 20000 --gets 200000)
	redis_args=(--keys 20000 --gets 20000)
	# 50000 rows of 768 floats (154 MB): the matrix must stay larger than
	# the last-level cache, or the scan "beats" memory bandwidth.
	scan_args=(--rows 50000 --dims 768 --reps 2 --queries 200)
	hit_args=(--quick)
	tier_args=(--entries 5000)
else
	exact_args=(--entries 100000 --gets 2000000)
	redis_args=(--keys 100000 --gets 200000)
	scan_args=(--rows 100000 --dims "384,768,1536" --reps 5 --queries 1000)
	hit_args=()
	tier_args=(--entries 20000)
fi
load_before=$(cut -d' ' -f1-3 /proc/loadavg 2>/dev/null || echo "?")

run exact "$B"/bench/bench_exact "${exact_args[@]}" --path "$seg_exact"
run redis "$B"/bench/bench_redis "${redis_args[@]}"
run scan "$B"/bench/bench_scan "${scan_args[@]}" --json-dim 768
run hitratio "$B"/bench/bench_hitratio "${hit_args[@]}" --path "$seg_hit"
run demo "$B"/tools/semcache-demo --path "$seg_demo"
run tier "$B"/bench/bench_tier "${tier_args[@]}"

load_after=$(cut -d' ' -f1-3 /proc/loadavg 2>/dev/null || echo "?")
buildtype=$(meson introspect "$B" --buildoptions 2>/dev/null |
	python3 -c 'import json,sys; print(next((o["value"] for o in json.load(sys.stdin) if o["name"] == "buildtype"), "?"))' 2>/dev/null || echo "?")
cpu=$(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo 2>/dev/null | head -n1)
family=$(sed -n 's/^cpu family[[:space:]]*: //p' /proc/cpuinfo 2>/dev/null | head -n1)
[[ -n $family ]] && cpu="$cpu (family $family)"
# What was measured: the commit, and whether the tree had uncommitted edits.
source=$(git rev-parse --short HEAD 2>/dev/null || echo "?")
[[ -n $(git status --porcelain --untracked-files=no 2>/dev/null) ]] && source="$source + uncommitted changes"

# ---------------------------------------------------------------- table
python3 - "$logs" "$quick" "$json_out" "$(nproc)" "${cpu:-?}" "$load_before" "$load_after" \
	"$buildtype" "$source" <<'PY'
import json, math, os, re, sys, time

logs, quick, json_out, ncpu, cpu, load0, load1, buildtype, source = sys.argv[1:10]
quick = quick == "1"


def slurp(name, ext):
    try:
        with open(os.path.join(logs, name + "." + ext), errors="replace") as f:
            return f.read()
    except OSError:
        return ""


def status(name):
    try:
        return int(slurp(name, "rc").strip())
    except ValueError:
        return None


def last_json(name):
    """The benchmark's last line that parses as a JSON object, else None."""
    for line in reversed(slurp(name, "out").splitlines()):
        line = line.strip()
        if line.startswith("{"):
            try:
                obj = json.loads(line)
            except ValueError:
                return None
            return obj if isinstance(obj, dict) else None
    return None


def num(obj, *path):
    """A finite number at obj[path...], else None: never trust a field."""
    for key in path:
        if not isinstance(obj, dict) or key not in obj:
            return None
        obj = obj[key]
    if isinstance(obj, bool) or not isinstance(obj, (int, float)):
        return None
    return float(obj) if math.isfinite(obj) else None


failed = []  # (benchmark, why)


def collect(name, prog):
    rc, js = status(name), last_json(name)
    if rc == 127 and js is None:
        failed.append((prog, "not built"))
    elif js is None:
        failed.append((prog, "exit %s, no JSON line" % rc))
    elif rc != 0:
        failed.append((prog, "exit %s" % rc))
    return js or {}


exact = collect("exact", "bench_exact")
scan = collect("scan", "bench_scan")
redis = collect("redis", "bench_redis")
tier = collect("tier", "bench_tier")
hit = collect("hitratio", "bench_hitratio")

# The demo prints text, not JSON: take its figures from the report lines.
demo_out = slurp("demo", "out")
demo = {}
m = re.search(r"^semcache-demo: (\d+) workers replay (\d+) requests", demo_out, re.M)
if m:
    demo["workers"], demo["requests"] = int(m.group(1)), int(m.group(2))
m = re.search(r"^time saved: ([\d.]+) s of model calls avoided, ([\d.]+) s paid", demo_out, re.M)
if m:
    demo["model_s_avoided"], demo["model_s_paid"] = float(m.group(1)), float(m.group(2))
m = re.search(r"^throughput: ([\d.]+) requests/s \(([\d.]+) s wall, model calls slept at "
              r"time scale ([\d.eE+-]+)\)", demo_out, re.M)
if m:
    demo["requests_per_s"], demo["wall_s"], demo["time_scale"] = map(float, m.groups())
m = re.search(r"^total: \d+ requests: ([\d.]+)% exact hits, ([\d.]+)% semantic hits", demo_out, re.M)
if m:
    demo["exact_hit_pct"], demo["semantic_hit_pct"] = float(m.group(1)), float(m.group(2))
m = re.search(r"^wrong hits: (\d+)", demo_out, re.M)
if m:
    demo["wrong_hits"] = int(m.group(1))
demo_rc = status("demo")
if demo_rc == 127 and not demo:
    failed.append(("semcache-demo", "not built"))
elif "requests_per_s" not in demo:
    failed.append(("semcache-demo", "exit %s, no throughput line" % demo_rc))
elif demo_rc != 0:
    failed.append(("semcache-demo", "exit %s" % demo_rc))
# Reference: the same replay with no cache, every request a model call.  Its
# time is the model time this run recorded (avoided + paid), slept at the same
# time scale and split evenly over the workers: an ideal no-cache run with no
# overhead at all, so the ratio understates what the cache saves, if anything.
if all(k in demo for k in ("requests", "workers", "model_s_avoided", "model_s_paid", "time_scale")):
    t = (demo["model_s_avoided"] + demo["model_s_paid"]) * demo["time_scale"] / max(demo["workers"], 1)
    demo["no_cache_requests_per_s"] = demo["requests"] / t if t > 0 else None

# ------------------------------------------------------------ formatting


def f_rate(v, unit="ops/s"):
    if v is None:
        return None
    for div, pre in ((1e9, "G"), (1e6, "M"), (1e3, "k")):
        if abs(v) >= div:
            return "%.2f %s%s" % (v / div, pre, unit)
    return "%.1f %s" % (v, unit)


def f_ns(v):
    if v is None:
        return None
    if abs(v) >= 1e6:
        return "%.2f ms" % (v / 1e6)
    if abs(v) >= 1e4:
        return "%.1f us" % (v / 1e3)
    return "%.0f ns" % v if abs(v) >= 100 else "%.1f ns" % v


def f_gbps(v):
    return None if v is None else "%.2f GB/s" % v


def f_plain(v, fmt="%.3f"):
    return None if v is None else fmt % v


def f_ratio(r):
    if r is None:
        return "n/a"
    if abs(r) >= 100:
        return "%.0fx" % r
    if abs(r) >= 10:
        return "%.1fx" % r
    if abs(r) >= 0.1:
        return "%.2fx" % r
    return "%.3fx" % r


def ratio(a, b):
    return a / b if a is not None and b not in (None, 0) else None


rows = []   # what the table prints and --json writes
sections = []


def section(title):
    sections.append((len(rows), title))


def row(measure, value, vtext, ref, rvalue, rtext, r="auto", note=""):
    if r == "auto":
        r = ratio(value, rvalue)
    rows.append({"measure": measure, "value": value,
                 "value_text": vtext if vtext is not None else "n/a",
                 "reference": ref, "reference_value": rvalue,
                 "reference_text": rtext if rtext is not None else "n/a",
                 "ratio": r, "note": note})


def also(ref, rvalue, rtext, value, r="auto", note=""):
    """A second reference for the row above, on its own line."""
    row("", value, "", ref, rvalue, rtext, r, note)


def reason(prog):
    for p, why in failed:
        if p == prog:
            return "n/a: %s %s" % (prog, why)
    return "n/a"


# Redis: absent, failed, or measured.
redis_state = "ok"
if redis.get("redis") == "unavailable":
    redis_state = "n/a: redis-server not installed"
elif num(redis, "redis_get_ops_per_s") is None:
    redis_state = reason("bench_redis")
r_get, r_set = num(redis, "redis_get_ops_per_s"), num(redis, "redis_set_ops_per_s")
r_p50, r_p99 = num(redis, "redis_get_p50_ns"), num(redis, "redis_get_p99_ns")


def redis_text(t):
    return t if redis_state == "ok" else redis_state


e_get, e_get2 = num(exact, "get_ops_per_s"), num(exact, "get_ops_per_s_2proc")
# the 2-process figure is timed inside forked children; compare it with one
# child timed the same way (older bench_exact builds lack it: fall back)
e_get1c = num(exact, "get_ops_per_s_1child") or e_get
e_put, e_copy = num(exact, "put_ops_per_s"), num(exact, "ref_copy_per_s")
e_p50, e_p99 = num(exact, "get_p50_ns"), num(exact, "get_p99_ns")
e_zc, e_zcn = num(exact, "zerocopy_get_ops_per_s"), num(exact, "zerocopy_nopin_ops_per_s")
e_gp = num(exact, "pin_cost_ns")
e_pheld, e_pfree = num(exact, "put_one_held_ops_per_s"), num(exact, "put_none_held_ops_per_s")
e_n = num(exact, "entries")

section("exact path (bench_exact: %s entries of 1 KB; Redis: bench_redis, same value size)%s"
        % ("%d" % e_n if e_n else "?", "" if exact else " - " + reason("bench_exact")))
row("exact get hit, 1 proc (copying)", e_get, f_rate(e_get),
    "random 1 KB copy, 1 proc", e_copy, f_rate(e_copy, "/s"))
also("Redis GET, loopback", r_get, redis_text(f_rate(r_get)), e_get)
row("exact get p50 latency (lower is better)", e_p50, f_ns(e_p50),
    "Redis GET p50, loopback", r_p50, redis_text(f_ns(r_p50)))
row("exact get p99 latency (lower is better)", e_p99, f_ns(e_p99),
    "Redis GET p99, loopback", r_p99, redis_text(f_ns(r_p99)))
row("exact get hit, 2 procs (total)", e_get2, f_rate(e_get2),
    "same, 1 child process (ideal: 2.00x)", e_get1c, f_rate(e_get1c))
also("Redis GET, loopback", r_get, redis_text(f_rate(r_get)), e_get2)
row("put 1 KB replacing, 1 proc", e_put, f_rate(e_put),
    "Redis SET, loopback", r_set, redis_text(f_rate(r_set)))
also("random 1 KB copy, 1 proc", e_copy, f_rate(e_copy, "/s"), e_put)
row("zero-copy get hit, 1 proc", e_zc, f_rate(e_zc),
    "exact get hit, 1 proc (copying)", e_get, f_rate(e_get))
also("random 1 KB copy, 1 proc", e_copy, f_rate(e_copy, "/s"), e_zc)
nogp_ns = 1e9 / e_zcn if e_zcn else None
row("liveness + pinning cost per read (lower is better)", e_gp, f_ns(e_gp),
    "zero-copy read without a pin", nogp_ns, f_ns(nogp_ns),
    note="negative: below this run's noise" if e_gp is not None and e_gp < 0 else "")
row("put replacing, 1 zero-copy ref held", e_pheld, f_rate(e_pheld),
    "same rounds, no reference held (goal >= 0.9x)", e_pfree, f_rate(e_pfree))

dim = num(scan, "dim")
dim_s = "%d" % dim if dim else "?"
membw, naive = num(scan, "membw_gbps"), num(scan, "naive_gbps")
sel = scan.get("kernel") if isinstance(scan.get("kernel"), str) else None
section("semantic scan at %s dims (bench_scan: %s rows; float32 matrix streamed once per query)%s"
        % (dim_s, "%d" % num(scan, "rows") if num(scan, "rows") else "?",
           "" if scan else " - " + reason("bench_scan")))
for k in ("avx512", "avx2", "scalar"):
    g = num(scan, "kernels", k, "gbps")
    if scan and g is None:
        row("scan kernel %s" % k, None, "n/a: not supported by this CPU", "", None, "", r=None)
        continue
    row("scan kernel %s%s" % (k, " (selected)" if k == sel else ""), g, f_gbps(g),
        "single-core memory read bandwidth", membw, f_gbps(membw))
    if k == sel:
        also("naive scan loop", naive, f_gbps(naive), g)
ts_sp, ts_rec = num(scan, "twostage_speedup"), num(scan, "twostage_recall_at1")
ts_c, exact_ms = num(scan, "twostage_candidates"), num(scan, "exact_ms")
ts_type = scan.get("twostage_first_pass") if isinstance(scan.get("twostage_first_pass"), str) else "?"
q_exact = 1e3 / exact_ms if exact_ms else None
q_two = q_exact * ts_sp if q_exact and ts_sp else None
what = "%s first pass, C=%d" % (ts_type, ts_c) if ts_c else ts_type
row("two-stage scan (%s)" % what, q_two, f_rate(q_two, "queries/s"),
    "exact float scan, selected kernel", q_exact, f_rate(q_exact, "queries/s"))
row("two-stage recall@1", ts_rec, f_plain(ts_rec),
    "exact float scan's best row", 1.0 if scan else None, "1.000" if scan else None)

hk, hr = num(hit, "keys"), num(hit, "requests")
section("eviction: hit ratio, get + put on a miss (bench_hitratio: %s keys, %s requests per run, "
        "cache = 1%% / 10%% of the keys)%s"
        % ("%d" % hk if hk else "?", "%d" % hr if hr else "?",
           "" if hit else " - " + reason("bench_hitratio")))
for tr, what in (("zipf", "Zipf 0.99"), ("scan", "scan + 5% hot set")):
    for pct in ("1", "10"):
        v = num(hit, "traces", tr, pct + "pct", "semcache")
        if v is not None and v < 0:
            v = None  # the run failed: the JSON carries -1
        lru = num(hit, "traces", tr, pct + "pct", "lru")
        sieve = num(hit, "traces", tr, pct + "pct", "sieve")
        clk = num(hit, "traces", tr, pct + "pct", "clock_sim")
        row("hit ratio, %s, cache %s%%" % (what, pct), v, f_plain(v),
            "exact LRU, same requests", lru, f_plain(lru))
        also("SIEVE, same requests", sieve, f_plain(sieve), v)
        also("textbook CLOCK, same requests", clk, f_plain(clk), v)

section("prefork demo (semcache-demo: %s workers, %s requests, model calls slept x %s)%s"
        % (demo.get("workers", "?"), demo.get("requests", "?"),
           "%g" % demo["time_scale"] if "time_scale" in demo else "?",
           "" if "requests_per_s" in demo else " - " + reason("semcache-demo")))
d_rps, d_ref = demo.get("requests_per_s"), demo.get("no_cache_requests_per_s")
row("demo throughput", d_rps, f_rate(d_rps, "req/s"),
    "no cache: every request a model call", d_ref, f_rate(d_ref, "req/s"))

section("Redis tier (bench_tier: its own redis-server on loopback)%s"
        % ("" if num(tier, "tier_export_per_s") is not None else
           " - n/a: redis-server not installed" if tier.get("tier") == "unavailable"
           else " - " + reason("bench_tier")))
t_exp, t_ref = num(tier, "tier_export_per_s"), num(tier, "tier_ref_export_per_s")
row("export into Redis (pipelined batches from the outbox)", t_exp, f_rate(t_exp, "entries/s"),
    "one pipeline per put (reference design), same sizes", t_ref, f_rate(t_ref, "entries/s"))
t_l50, t_l99, t_rtt = num(tier, "tier_lag_p50_ns"), num(tier, "tier_lag_p99_ns"), num(tier, "tier_rtt_p50_ns")
row("cross-host lag p50, put on A to get on B (lower is better)", t_l50, f_ns(t_l50),
    "loopback round trip p50", t_rtt, f_ns(t_rtt), note="syncers poll every 20 ms when idle")
row("cross-host lag p99 (lower is better)", t_l99, f_ns(t_l99),
    "loopback round trip p50", t_rtt, f_ns(t_rtt))
t_pp, t_ppr = num(tier, "tier_put_p99_ns"), num(tier, "tier_put_p99_ref_ns")
row("put p99 while Redis is SIGSTOPped (lower is better)", t_pp, f_ns(t_pp),
    "put p99, no tier configured", t_ppr, f_ns(t_ppr), note="goal <= 1.2x")
t_gp, t_gpr = num(tier, "tier_get_p99_ns"), num(tier, "tier_get_p99_ref_ns")
row("get p99 while Redis is SIGSTOPped (lower is better)", t_gp, f_ns(t_gp),
    "get p99, no tier configured", t_gpr, f_ns(t_gpr), note="goal <= 1.2x")

section("references, measured in this run")
row("single-core memory read bandwidth", membw, f_gbps(membw), "(is the reference)", membw,
    "", r=1.0 if membw else None)
row("naive scan loop", naive, f_gbps(naive), "single-core memory read bandwidth", membw,
    f_gbps(membw))
copy_gbps = e_copy * 1024 / 1e9 if e_copy else None
row("random 1 KB copy, 1 proc", e_copy, f_rate(e_copy, "/s"), "(is the reference)", e_copy, "",
    r=1.0 if e_copy else None)
also("single-core memory read bandwidth", membw, f_gbps(membw), copy_gbps,
     note="as %s" % f_gbps(copy_gbps) if copy_gbps else "")
row("Redis GET 1 KB, loopback", r_get, redis_text(f_rate(r_get)), "(is the reference)", r_get,
    "", r=1.0 if r_get else None)
row("Redis SET 1 KB, loopback", r_set, redis_text(f_rate(r_set)), "(is the reference)", r_set,
    "", r=1.0 if r_set else None)

# ------------------------------------------------------------ print
W = (44, 16, 37, 15, 7)
title = "semcache benchmarks%s - %s" % (" (--quick)" if quick else "",
                                        time.strftime("%Y-%m-%d %H:%M %Z"))
print(title)
print("machine: %s, %s cores; load average %s before, %s after" % (cpu, ncpu, load0, load1))
print("source: %s; build: %s" % (source, buildtype))
print("ratio = value / reference, both measured in this run\n")
hdr = ("measure", "value", "reference", "ref value", "ratio")
print("%-*s %*s  %-*s %*s %*s" % (W[0], hdr[0], W[1], hdr[1], W[2], hdr[2], W[3], hdr[3], W[4], hdr[4]))
sec = dict(sections)
for i, r in enumerate(rows):
    if i in sec:
        print("\n" + sec[i])
    measure = ("  " + r["measure"]) if r["measure"] else ""
    rtext = "" if r["reference"] == "(is the reference)" else r["reference_text"]
    if r["value_text"].startswith("n/a") or r["reference_text"].startswith("n/a"):
        ratio_text = ""
    else:
        ratio_text = f_ratio(r["ratio"])
    line = "%-*s %*s  %-*s %*s %*s" % (W[0], measure, W[1], r["value_text"] if r["measure"] else "",
                                      W[2], ("  " if not r["measure"] else "") + r["reference"],
                                      W[3], rtext, W[4], ratio_text)
    if r["note"]:
        line += "  (" + r["note"] + ")"
    print(line.rstrip())
if failed:
    print("\nFAILED: " + "; ".join("%s: %s" % f for f in failed))

if json_out:
    combined = {"time": int(time.time()), "quick": quick,
                "machine": {"cpu": cpu, "cores": int(ncpu) if ncpu.isdigit() else None,
                            "load_before": load0, "load_after": load1},
                "source": source, "buildtype": buildtype,
                "bench_exact": exact or None, "bench_scan": scan or None,
                "bench_redis": redis or None, "bench_hitratio": hit or None,
                "demo": demo or None,
                "rows": [r for r in rows], "failed": [list(f) for f in failed]}
    tmp = json_out + ".tmp"
    with open(tmp, "w") as f:
        json.dump(combined, f, indent=1)
        f.write("\n")
    os.replace(tmp, json_out)
    print("\nresults written to %s" % json_out)
sys.exit(1 if failed else 0)
PY
status=$?

# semcache-proxy: its own table (exact hits against nginx proxy_cache and
# the fake upstream alone, the miss path's added latency), measured now.
echo
proxy_secs=5
[[ $quick == 1 ]] && proxy_secs=2
SEMCACHE_BUILD_DIR=$B bench/proxy_bench.sh --seconds "$proxy_secs" || status=1
[[ $status -ne 0 ]] && keep_logs=1
exit "$status"
