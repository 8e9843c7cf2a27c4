#!/usr/bin/env bash
# proxy_bench.sh - semcache-proxy's throughput and latency, with references
# measured in the same run.
#
#   bench/proxy_bench.sh [--seconds N] [--connections N] [--json FILE]
#
# What: on loopback only, it starts the fake upstream
# (tests/proxy/fake_upstream.py, no delay), semcache-proxy (one worker per
# CPU, a scratch segment) and nginx with proxy_cache keyed on the URI and
# the POST body, then measures with wrk:
#   - exact hits through semcache-proxy (one chat request, cached first)
#   - the same request through nginx's proxy_cache (a cache HIT, checked)
#   - the fake upstream alone (what every request would cost uncached)
# and, with one sequential client, the miss path: unique requests straight
# to the upstream and through the proxy, alternating so both see the same
# background load (the proxy adds the embedding call, the lookups and the
# store).  It prints one table of value, reference and
# ratio, and a JSON line with every figure.
#
# Needs wrk and nginx (Debian: apt-get install wrk nginx-light); a missing
# one makes its rows n/a.  Builds nothing: run after `ninja -C build`
# (SEMCACHE_BUILD_DIR picks another build directory).
# Why these references: nginx proxy_cache is the usual "put a cache in
# front of it" answer, and the upstream alone is what the cache saves.
set -uo pipefail
cd "$(dirname "$0")/.." || exit 2
B=${SEMCACHE_BUILD_DIR:-build}
secs=5
conns=32
json_out=
while [[ $# -gt 0 ]]; do
	case $1 in
	--seconds) secs=$2; shift ;;
	--connections) conns=$2; shift ;;
	--json) json_out=$2; shift ;;
	-h | --help) sed -n '2,/^set -uo/{/^set -uo/d;s/^# \{0,1\}//;p}' "$0"; exit 0 ;;
	*) echo "proxy_bench.sh: unknown argument '$1'" >&2; exit 2 ;;
	esac
	shift
done
[[ -x $B/proxy/semcache-proxy ]] || { echo "proxy_bench.sh: build $B first" >&2; exit 2; }

tmp=$(mktemp -d "${TMPDIR:-/tmp}/semcache-proxybench.XXXXXX") || exit 1
seg=/dev/shm/semcache-proxybench-$$
pids=()
cleanup() {
	for p in "${pids[@]}"; do kill -TERM "$p" 2>/dev/null; done
	for p in "${pids[@]}"; do wait "$p" 2>/dev/null; done
	rm -f "$seg"
	rm -rf "$tmp"
}
trap cleanup EXIT

# start NAME CMD...: run CMD in the background, wait for "listening on
# 127.0.0.1:PORT", set PORT
start() {
	local name=$1
	shift
	"$@" >"$tmp/$name.out" 2>"$tmp/$name.err" &
	pids+=($!)
	for _ in $(seq 100); do
		PORT=$(sed -n 's/.*listening on 127\.0\.0\.1:\([0-9]*\).*/\1/p' "$tmp/$name.out" | head -1)
		[[ -n $PORT ]] && return 0
		sleep 0.1
	done
	echo "proxy_bench.sh: $name did not start" >&2
	cat "$tmp/$name.err" >&2
	exit 1
}
free_port() {
	python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}

start upstream python3 tests/proxy/fake_upstream.py
UP=$PORT
start proxy "$B"/proxy/semcache-proxy --listen 127.0.0.1:0 --upstream "http://127.0.0.1:$UP/v1" \
	--path "$seg" --embedding-dim 256 --slots 4096 --arena-mb 16
PX=$PORT

body='{"model":"bench-model","user":"bench","messages":[{"role":"user","content":"What is the capital of Australia?"}]}'
cat >"$tmp/post.lua" <<EOF
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.body = '$body'
EOF

NG=
if command -v nginx >/dev/null; then
	NG=$(free_port)
	mkdir -p "$tmp/nginx/cache"
	# as root nginx's workers would switch to www-data, which cannot write
	# the private scratch directory: keep them as the invoking user
	run_as=
	[[ $(id -u) == 0 ]] && run_as="user root;"
	cat >"$tmp/nginx/nginx.conf" <<EOF
$run_as
worker_processes $(nproc);
daemon off;
pid $tmp/nginx/nginx.pid;
error_log $tmp/nginx/error.log;
events { worker_connections 1024; }
http {
    access_log off;
    client_body_temp_path $tmp/nginx/body;
    proxy_temp_path $tmp/nginx/proxy;
    fastcgi_temp_path $tmp/nginx/fastcgi;
    uwsgi_temp_path $tmp/nginx/uwsgi;
    scgi_temp_path $tmp/nginx/scgi;
    client_body_buffer_size 64k;
    proxy_cache_path $tmp/nginx/cache levels=1:2 keys_zone=llm:10m;
    upstream fake { server 127.0.0.1:$UP; keepalive 16; }
    server {
        listen 127.0.0.1:$NG;
        location / {
            proxy_pass http://fake;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_cache llm;
            proxy_cache_methods POST;
            proxy_cache_key "\$request_uri|\$request_body";
            proxy_cache_valid 200 10m;
            add_header X-Cache \$upstream_cache_status;
        }
    }
}
EOF
	nginx -p "$tmp/nginx" -c "$tmp/nginx/nginx.conf" 2>"$tmp/nginx.err" &
	pids+=($!)
	for _ in $(seq 50); do
		curl -s -o /dev/null "http://127.0.0.1:$NG/" && break
		sleep 0.1
	done
fi

post() { # URL -> headers and body on stdout
	curl -s -i -X POST -H 'Content-Type: application/json' --data "$body" "$1"
}
# warm both caches, and check that the requests wrk repeats really hit
post "http://127.0.0.1:$PX/v1/chat/completions" >/dev/null
post "http://127.0.0.1:$PX/v1/chat/completions" | grep -qi '^x-semcache: hit-exact' ||
	{ echo "proxy_bench.sh: the proxy does not hit" >&2; exit 1; }
nginx_ok=0
if [[ -n $NG ]]; then
	post "http://127.0.0.1:$NG/v1/chat/completions" >/dev/null
	post "http://127.0.0.1:$NG/v1/chat/completions" | grep -qi '^x-cache: HIT' && nginx_ok=1
	[[ $nginx_ok == 1 ]] || echo "proxy_bench.sh: nginx does not hit: its rows are n/a" >&2
fi

have_wrk=0
command -v wrk >/dev/null && have_wrk=1
threads=$(nproc)
((threads > 4)) && threads=4
bench() { # NAME URL
	if [[ $have_wrk == 1 ]]; then
		echo "proxy_bench.sh: wrk $1 ($secs s, $conns connections)" >&2
		wrk -t"$threads" -c"$conns" -d"${secs}s" --latency -s "$tmp/post.lua" "$2" >"$tmp/wrk-$1.txt" 2>&1
	fi
}
bench proxy "http://127.0.0.1:$PX/v1/chat/completions"
[[ $nginx_ok == 1 ]] && bench nginx "http://127.0.0.1:$NG/v1/chat/completions"
bench upstream "http://127.0.0.1:$UP/v1/chat/completions"

echo "proxy_bench.sh: miss path, 200 unique requests each way, alternating" >&2
python3 - "$tmp" "$PX" "$UP" "$secs" "$conns" "$json_out" <<'PY'
import http.client, json, os, random, re, statistics, string, sys, time

tmp, px, up, secs, conns, json_out = sys.argv[1:7]


def wrk(name):
    try:
        text = open(os.path.join(tmp, "wrk-%s.txt" % name)).read()
    except OSError:
        return None
    m = re.search(r"Requests/sec:\s*([\d.]+)", text)
    if not m:
        return None
    out = {"rps": float(m.group(1))}
    for q in ("50", "99"):
        m = re.search(r"^\s*%s%%\s+([\d.]+)(us|ms|s)\s*$" % q, text, re.M)
        if m:
            out["p" + q + "_ms"] = float(m.group(1)) * {"us": 1e-3, "ms": 1, "s": 1e3}[m.group(2)]
    m = re.search(r"Non-2xx or 3xx responses:\s*(\d+)", text)
    out["non2xx"] = int(m.group(1)) if m else 0
    return out


rng = random.Random(7)


def misses(n):
    """n unique requests each way, alternating direct and through the proxy
    so both see the same background load; medians in ms."""
    conns = {p: http.client.HTTPConnection("127.0.0.1", int(p), timeout=30) for p in (up, px)}
    lat = {up: [], px: []}
    for i in range(n):
        for p in (up, px):
            # random letters: no two requests are paraphrases of each other,
            # so each is a real miss (exact and semantic lookups, then the
            # upstream), not a semantic hit on the previous one
            text = "".join(rng.choice(string.ascii_lowercase + " ") for _ in range(80))
            body = json.dumps({"model": "bench-model", "user": "bench", "messages": [
                {"role": "user", "content": text}]})
            t0 = time.perf_counter()
            conns[p].request("POST", "/v1/chat/completions", body, {"Content-Type": "application/json"})
            r = conns[p].getresponse()
            r.read()
            lat[p].append((time.perf_counter() - t0) * 1e3)
            if r.status != 200 or (p == px and r.getheader("X-Semcache") != "miss"):
                raise SystemExit("miss-path request failed: %d %s" % (r.status, r.getheader("X-Semcache")))
    for c in conns.values():
        c.close()
    return statistics.median(lat[up]), statistics.median(lat[px])


res = {"proxy": wrk("proxy"), "nginx": wrk("nginx"), "upstream": wrk("upstream")}
direct, via = misses(200)
res["miss_direct_p50_ms"], res["miss_proxy_p50_ms"] = direct, via


def g(name, key):
    v = res.get(name)
    return v.get(key) if v else None


def fmt(v, unit):
    return "n/a" if v is None else ("%.0f %s" % (v, unit) if unit == "req/s" else "%.3f %s" % (v, unit))


def ratio(a, b):
    return "n/a" if a is None or not b else "%.2fx" % (a / b)


rows = [
    ("exact hit through semcache-proxy", g("proxy", "rps"), "req/s", "nginx proxy_cache HIT, same body", g("nginx", "rps")),
    ("", g("proxy", "rps"), "req/s", "fake upstream alone (no delay)", g("upstream", "rps")),
    ("exact hit p50 (lower is better)", g("proxy", "p50_ms"), "ms", "nginx proxy_cache HIT p50", g("nginx", "p50_ms")),
    ("exact hit p99 (lower is better)", g("proxy", "p99_ms"), "ms", "nginx proxy_cache HIT p99", g("nginx", "p99_ms")),
    ("miss through the proxy, p50", via, "ms", "straight to the upstream, p50", direct),
]
print("semcache-proxy on loopback: wrk %s s, %s connections; miss path: 200 requests each way"
      % (secs, conns))
print("%-36s %14s   %-34s %14s %8s" % ("measure", "value", "reference", "reference value", "ratio"))
for m, v, unit, ref, rv in rows:
    print("%-36s %14s   %-34s %14s %8s" % (m, fmt(v, unit) if m else "", ref, fmt(rv, unit), ratio(v, rv)))
print("miss path added latency: %.3f ms at p50 (an embedding call, the lookups and the store)"
      % (via - direct))
for name in ("proxy", "nginx", "upstream"):
    if res[name] and res[name]["non2xx"]:
        print("WARNING: %s answered %d non-2xx responses under wrk" % (name, res[name]["non2xx"]))
line = json.dumps(res)
print(line)
if json_out:
    with open(json_out, "w") as f:
        f.write(line + "\n")
PY
