#!/usr/bin/env python3
"""proxy_demo.py - the README's main job: semcache-proxy in front of a model API.

What: starts the fake upstream (tests/proxy/fake_upstream.py, a deterministic
local stand-in for an OpenAI-compatible API that answers each prompt of
data/demo_requests.jsonl with that record's response, after the record's
latency times --time-scale), starts semcache-proxy with several prefork
workers on the default segment, and replays the data file through HTTP from
several concurrent clients, as any OpenAI client would send it: POST
/v1/chat/completions with the record's namespace as the `user`.  Then it
prints hit ratios and latency percentiles by kind (hit-exact, hit-semantic,
miss), the model time and tokens the hits saved, the proof counters, and
`semcache stat` of the segment.

How correctness is proved, not assumed: each record names its topic and the
right answer; a response whose content is not the record's answer is a WRONG
hit.  The fake upstream stamps every answer with system_fingerprint
"fp_<user>", and the proxy replays stored answers as they were, so a hit
stamped with another user's name is a CROSS-USER hit.  tenant-b asks some of
tenant-a's prompts word for word: the namespaces keep them apart, and the
counters show it.  Either counter above 0 makes the demo exit 1.

Why threshold 0.70: the fake embedder (hashed words and 3-grams) is a toy;
on this data its most similar pair of prompts from different topics scores
0.45 and about half of the reworded pairs score 0.70 or more.  A real
embedding model has another scale (the proxy's default is 0.87).

Usage: proxy_demo.py --proxy BIN --tool BIN [--clients N] [--workers N]
                     [--time-scale X] [--path SEGMENT] [--keep]
"""
import argparse
import http.client
import json
import os
import signal
import subprocess
import sys
import threading
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def start(argv):
    p = subprocess.Popen(argv, stdout=subprocess.PIPE, text=True)
    line = p.stdout.readline()
    if "listening on 127.0.0.1:" not in line:
        p.kill()
        sys.exit("demo: %s did not start" % os.path.basename(argv[0]))
    threading.Thread(target=p.stdout.read, daemon=True).start()
    return p, int(line.split("127.0.0.1:")[1].split(",")[0].split()[0])


def pct(v, q):
    if not v:
        return float("nan")
    v = sorted(v)
    return v[min(len(v) - 1, int(q * (len(v) - 1) + 0.5))]


def main():
    ap = argparse.ArgumentParser(description="semcache-proxy demo")
    ap.add_argument("--proxy", required=True)
    ap.add_argument("--tool", required=True)
    ap.add_argument("--data", default=os.path.join(ROOT, "data", "demo_requests.jsonl"))
    ap.add_argument("--clients", type=int, default=8)
    ap.add_argument("--workers", type=int, default=4)
    ap.add_argument("--time-scale", type=float, default=0.05,
                    help="upstream latency = record latency x this (default 0.05)")
    ap.add_argument("--path", default="/dev/shm/semcache", help="segment (default: the default)")
    ap.add_argument("--keep", action="store_true", help="keep an existing segment (its entries "
                    "count as hits)")
    a = ap.parse_args()
    if a.workers < 2 or a.clients < 1:
        sys.exit("demo: --workers must be >= 2 and --clients >= 1")

    recs = [json.loads(l) for l in open(a.data) if l.strip()]
    if os.path.exists(a.path) and not a.keep:
        print("demo: removing the previous segment %s (semcache destroy) for a cold start" % a.path)
        r = subprocess.run([a.tool, "--path", a.path, "destroy"], capture_output=True, text=True)
        if r.returncode:
            sys.exit("demo: cannot remove %s: %s" % (a.path, r.stderr.strip()))

    up, up_port = start([sys.executable, os.path.join(ROOT, "tests", "proxy", "fake_upstream.py"),
                         "--answers", a.data, "--time-scale", str(a.time_scale)])
    px = None
    try:
        px, port = start([a.proxy, "--listen", "127.0.0.1:0",
                          "--upstream", "http://127.0.0.1:%d/v1" % up_port,
                          "--workers", str(a.workers), "--path", a.path,
                          "--embedding-model", "fake-embedding", "--threshold", "0.70",
                          "--slots", "8192", "--arena-mb", "32"])
        print("demo: fake upstream on 127.0.0.1:%d, semcache-proxy on 127.0.0.1:%d with %d "
              "workers, segment %s" % (up_port, port, a.workers, a.path))
        print("demo: replaying %d requests from %s with %d concurrent clients"
              % (len(recs), os.path.relpath(a.data, ROOT), a.clients))
        results = [None] * len(recs)

        def client(k):
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
            for i in range(k, len(recs), a.clients):
                r = recs[i]
                body = json.dumps({"model": r["model"], "user": r["ns"],
                                   "messages": [{"role": "user", "content": r["prompt"]}]})
                t0 = time.perf_counter()
                conn.request("POST", "/v1/chat/completions", body,
                             {"Content-Type": "application/json"})
                resp = conn.getresponse()
                raw = resp.read()
                ms = (time.perf_counter() - t0) * 1e3
                obj = json.loads(raw)
                if resp.status != 200:
                    results[i] = ("error", ms, False, False, 0, 0, None)
                    continue
                kind = resp.getheader("X-Semcache")
                content = obj["choices"][0]["message"]["content"]
                wrong = content != r["response"]
                cross = obj.get("system_fingerprint") != "fp_" + r["ns"]
                results[i] = (kind, ms, wrong, cross,
                              int(resp.getheader("X-Semcache-Saved-Ms") or 0),
                              int(resp.getheader("X-Semcache-Saved-Tokens") or 0),
                              resp.getheader("X-Semcache-Similarity"))
            conn.close()

        t0 = time.perf_counter()
        threads = [threading.Thread(target=client, args=(k,)) for k in range(a.clients)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        wall = time.perf_counter() - t0

        kinds = ["hit-exact", "hit-semantic", "miss", "error"]
        print()
        print("%-13s %6s %7s %9s %9s %9s" % ("kind", "count", "ratio", "p50 ms", "p95 ms", "p99 ms"))
        for k in kinds:
            lat = [r[1] for r in results if r and r[0] == k]
            if not lat and k == "error":
                continue
            print("%-13s %6d %6.1f%% %9.2f %9.2f %9.2f" % (k, len(lat), 100.0 * len(lat) / len(recs),
                                                         pct(lat, .5), pct(lat, .95), pct(lat, .99)))
        hits = [r for r in results if r and r[0].startswith("hit")]
        wrong = sum(1 for r in results if r and r[2])
        cross = sum(1 for r in results if r and r[3])
        missing = sum(1 for r in results if r is None)
        saved_ms = sum(r[4] for r in hits)
        saved_tok = sum(r[5] for r in hits)
        sims = [float(r[6]) for r in hits if r[6]]
        miss_lat = [r[1] for r in results if r and r[0] == "miss"]
        print()
        print("hit ratio          %.1f%% (%d of %d)" % (100.0 * len(hits) / len(recs), len(hits), len(recs)))
        print("wrong hits         %d" % wrong)
        print("cross-user hits    %d" % cross)
        if sims:
            print("semantic hits      similarity %.3f .. %.3f (threshold 0.70)" % (min(sims), max(sims)))
        print("model time saved   %.1f s at demo speed (x%.2f), %.0f s at the data's latencies"
              % (saved_ms / 1e3, a.time_scale, saved_ms / 1e3 / a.time_scale))
        print("tokens saved       %d" % saved_tok)
        print("wall time          %.2f s for %d requests (%.0f requests/s); a miss took %.0f ms at p50"
              % (wall, len(recs), len(recs) / wall, pct(miss_lat, .5)))
        errors = sum(1 for r in results if r and r[0] == "error") + missing
        print()
        print("$ semcache --path %s stat" % a.path)
        sys.stdout.flush()
        subprocess.run([a.tool, "--path", a.path, "stat"])
        return 1 if wrong or cross or errors else 0
    finally:
        for p in (px, up):
            if p and p.poll() is None:
                p.send_signal(signal.SIGTERM)
                try:
                    p.wait(timeout=40)
                except subprocess.TimeoutExpired:
                    p.kill()


if __name__ == "__main__":
    sys.exit(main())
