#!/usr/bin/env python3
"""test_proxy.py - end-to-end tests of semcache-proxy against the fake upstream.

Usage: test_proxy.py PATH_TO_SEMCACHE_PROXY PATH_TO_SEMCACHE_TOOL

Starts tests/proxy/fake_upstream.py and the real semcache-proxy binary (two
workers, a private segment under /dev/shm, a config file) on free loopback
ports, then checks behaviour through HTTP only: exact and semantic hits,
namespaces (users, ACL hashes), caching-disabled knowledge bases, per-call
controls (no-cache, no-store, TTL; headers and the body's `cache` object),
what is and is not part of the key, streaming (pass-through of a miss,
replay of a hit, a cut stream never stored), upstream failures, malformed
input, metrics, the dimension check at startup, SIGHUP reload, a worker
SIGKILLed under load (restarted; requests not on it all succeed; `semcache
verify` clean) and the SIGTERM drain.

Output: "ok - name" / "not ok - name" lines with "# ..." diagnostics, then
"N passed, M failed"; exit status 1 if anything failed.  Every process it
starts is stopped and the segment removed on exit.
"""
import hashlib
import http.client
import json
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
PASS = 0
FAIL = 0
PROCS = []


def ok(name):
    global PASS
    PASS += 1
    print("ok - " + name, flush=True)


def not_ok(name, why):
    global FAIL
    FAIL += 1
    print("not ok - " + name, flush=True)
    for line in str(why).splitlines():
        print("# " + line, flush=True)


class Check(Exception):
    pass


def expect(cond, msg):
    if not cond:
        raise Check(msg)


def start(argv, banner, env=None):
    """Start a process that prints 'listening on 127.0.0.1:PORT'; return (proc, port)."""
    p = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=sys.stderr, text=True, env=env)
    PROCS.append(p)
    line = p.stdout.readline()
    if banner not in line:
        p.kill()
        raise RuntimeError("%s did not start: %r" % (argv[0], line))
    port = int(line.split("127.0.0.1:")[1].split(",")[0].split()[0])
    threading.Thread(target=p.stdout.read, daemon=True).start()
    return p, port


def request(port, method, path, body=None, headers=None, raw=None, timeout=30):
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    h = {"Content-Type": "application/json"}
    h.update(headers or {})
    data = raw if raw is not None else (json.dumps(body).encode() if body is not None else None)
    c.request(method, path, body=data, headers=h)
    r = c.getresponse()
    out = r.read()
    hdrs = {k.lower(): v for k, v in r.getheaders()}
    c.close()
    return r.status, hdrs, out


class Env:
    pass


E = Env()


def chat(body, headers=None, port=None):
    st, h, out = request(port or E.port, "POST", "/v1/chat/completions", body, headers)
    try:
        obj = json.loads(out) if not h.get("content-type", "").startswith("text/event-stream") else None
    except ValueError:
        obj = None
    return st, h, obj, out


def msg(text, user="alice", **extra):
    b = {"model": "gpt-test", "messages": [{"role": "user", "content": text}]}
    if user is not None:
        b["user"] = user
    b.update(extra)
    return b


def content(obj):
    return obj["choices"][0]["message"]["content"]


def upstream(path="/_stats", body=None):
    st, h, out = request(E.up_port, "POST" if body is not None else "GET", path, body)
    return json.loads(out)


def mode(m, **kw):
    upstream("/_control", dict(kw, mode=m))


def parse_sse(raw):
    """Events of an SSE body: list of data payloads (decoded JSON or '[DONE]')."""
    events = []
    for block in raw.decode().replace("\r\n", "\n").split("\n\n"):
        data = [l[5:].lstrip(" ") for l in block.split("\n") if l.startswith("data:")]
        if data:
            d = "\n".join(data)
            events.append(d if d == "[DONE]" else json.loads(d))
    return events


def sse_content(events):
    assert events and events[-1] == "[DONE]", "stream does not end with [DONE]"
    text = ""
    finish = None
    for e in events[:-1]:
        assert e["object"] == "chat.completion.chunk", e
        for ch in e["choices"]:
            text += ch["delta"].get("content") or ""
            finish = ch.get("finish_reason") or finish
    return text, finish


def metric(name):
    st, h, out = request(E.port, "GET", "/metrics")
    for line in out.decode().splitlines():
        if line.startswith(name + " "):
            return float(line.split()[-1])
    raise Check("metric %s missing" % name)


# ---------------------------------------------------------------------------
# Tests, in order (later ones rely on nothing earlier ones stored, each uses
# its own prompts).
# ---------------------------------------------------------------------------
def t_exact_hit_without_embedding_call():
    before = upstream()
    st, h, a, _ = chat(msg("How do I make sourdough bread at home?"))
    expect(st == 200 and h["x-semcache"] == "miss", (st, h))
    mid = upstream()
    st, h, b, _ = chat(msg("How do I make sourdough bread at home?"))
    after = upstream()
    expect(st == 200 and h["x-semcache"] == "hit-exact", h)
    expect(content(a) == content(b) == "Echo: How do I make sourdough bread at home?", (a, b))
    expect(after["chat"] == mid["chat"] == before["chat"] + 1, "upstream called on a hit")
    expect(after["embeddings"] == mid["embeddings"], "embedding call on an exact hit")
    expect(int(h["x-semcache-saved-tokens"]) == a["usage"]["total_tokens"], h)
    expect("x-semcache-saved-ms" in h, h)


def t_hit_returns_the_upstream_object():
    for text, model in [('Quote "this", a back\\slash, a tab\t, a newline\n and \u00e9\u2713\U0001F600', "gpt-test"),
                        ("The mark string as the model name", "\u0001semcache-content\u0001")]:
        body = msg(text)
        body["model"] = model
        st, h, a, _ = chat(body)
        expect(st == 200 and h["x-semcache"] == "miss", (st, h, a))
        st, h, b, _ = chat(body)
        expect(a == b, "answer differs from the upstream's:\n%s\n%s" % (a, b))
        if model != "gpt-test":
            # an answer holding the proxy's content mark is never stored
            expect(h["x-semcache"] == "miss", h)
            continue
        expect(h["x-semcache"] == "hit-exact", h)
        st, h, _, raw = chat(dict(body, stream=True))
        expect(sse_content(parse_sse(raw))[0] == content(a), raw[:300])


def t_authorization_passed_on():
    st, h, b, _ = chat(msg("Which language has the most speakers?"),
                       {"Authorization": "Bearer sk-from-client"})
    expect(st == 200 and upstream()["last_auth"] == "Bearer sk-from-client", upstream()["last_auth"])
    st, h, b, _ = chat(msg("Which language has the fewest speakers?"))
    expect(st == 200 and upstream()["last_auth"] == "Bearer sk-from-config", upstream()["last_auth"])


def t_semantic_hit_on_paraphrase():
    st, h, a, _ = chat(msg("What is the boiling point of water at sea level?"))
    expect(h["x-semcache"] == "miss", h)
    st, h, b, _ = chat(msg("Tell me the boiling point of water at sea level."))
    expect(st == 200 and h["x-semcache"] == "hit-semantic", h)
    expect(float(h["x-semcache-similarity"]) >= 0.87, h)
    expect(content(b) == content(a), (a, b))
    st, h, c, _ = chat(msg("Who painted the Mona Lisa?"))
    expect(h["x-semcache"] == "miss", "unrelated question hit: %s" % h)


def t_users_never_share():
    chat(msg("What is the tallest mountain in Europe?", user="alice"))
    st, h, b, _ = chat(msg("What is the tallest mountain in Europe?", user="bob"))
    expect(h["x-semcache"] == "miss", "bob got alice's exact entry: %s" % h)
    expect(b["system_fingerprint"] == "fp_bob", b)
    chat(msg("How many moons does Jupiter have?", user="alice"))
    st, h, b, _ = chat(msg("Tell me how many moons Jupiter has.", user="carol"))
    expect(h["x-semcache"] == "miss", "carol got alice's paraphrase: %s" % h)
    expect(b["system_fingerprint"] == "fp_carol", b)
    # the configured header names the user and wins over the body
    st, h, b, _ = chat(msg("How many moons does Jupiter have?", user="mallory"),
                       {"X-End-User": "alice"})
    expect(h["x-semcache"] == "hit-exact" and b["system_fingerprint"] == "fp_alice", h)
    # no user: one shared namespace, apart from every user
    st, h, b, _ = chat(msg("How many moons does Jupiter have?", user=None))
    expect(h["x-semcache"] == "miss", h)
    st, h, b, _ = chat(msg("How many moons does Jupiter have?", user=None))
    expect(h["x-semcache"] == "hit-exact", h)


def t_acl_hashes_never_share():
    q = "What does the quarterly report say about revenue?"
    chat(msg(q), {"X-Semcache-ACL": "acl-9f1e"})
    st, h, b, _ = chat(msg(q), {"X-Semcache-ACL": "acl-0000"})
    expect(h["x-semcache"] == "miss", "another ACL hash hit: %s" % h)
    st, h, b, _ = chat(msg("Tell me what the quarterly report says about revenue."),
                       {"X-Semcache-ACL": "acl-1234"})
    expect(h["x-semcache"] == "miss", "paraphrase crossed ACL hashes: %s" % h)
    st, h, b, _ = chat(msg(q))
    expect(h["x-semcache"] == "miss", "no ACL hit an ACL entry: %s" % h)
    st, h, b, _ = chat(msg(q), {"X-Semcache-ACL": "acl-9f1e"})
    expect(h["x-semcache"] == "hit-exact", h)
    st, h, b, _ = chat(msg(q), {"X-Semcache-ACL": "bad acl with spaces"})
    expect(st == 400 and b["error"]["type"] == "invalid_request_error", (st, b))


def t_disabled_kb_bypasses():
    q = "Summarise the secret merger memo."
    before = upstream()["chat"]
    for _ in range(2):
        st, h, b, _ = chat(msg(q), {"X-Semcache-KB": "other, secret-kb"})
        expect(st == 200 and h["x-semcache"] == "bypass", h)
    expect(upstream()["chat"] == before + 2, "disabled KB request not forwarded twice")
    st, h, b, _ = chat(msg(q), {"X-Semcache-KB": "public-kb"})
    expect(h["x-semcache"] == "miss", "disabled KB answer was stored: %s" % h)


def t_no_cache_and_no_store():
    q = "What is the speed of light in vacuum?"
    chat(msg(q))
    st, h, b, _ = chat(msg(q), {"Cache-Control": "no-cache"})
    expect(h["x-semcache"] == "bypass", "no-cache read the cache: %s" % h)
    st, h, b, _ = chat(msg(q, cache={"no-cache": True}))
    expect(h["x-semcache"] == "bypass", h)
    last = upstream()["last_chat"]
    expect("cache" not in last, "the cache object was forwarded: %s" % last)
    st, h, b, _ = chat(msg(q))
    expect(h["x-semcache"] == "hit-exact", h)
    # no-cache does not read but still stores
    q1 = "What is the speed of light in water?"
    st, h, b, _ = chat(msg(q1), {"Cache-Control": "no-cache"})
    expect(h["x-semcache"] == "bypass", h)
    st, h, b, _ = chat(msg(q1))
    expect(h["x-semcache"] == "hit-exact", "no-cache did not store: %s" % h)
    q2 = "What is the speed of sound in air?"
    chat(msg(q2), {"Cache-Control": "no-store"})
    st, h, b, _ = chat(msg(q2, cache={"no-store": True}))
    expect(h["x-semcache"] == "miss", "no-store stored: %s" % h)
    st, h, b, _ = chat(msg(q2))
    expect(h["x-semcache"] == "miss", "no-store stored: %s" % h)
    st, h, b, _ = chat(msg(q2))
    expect(h["x-semcache"] == "hit-exact", h)
    st, h, b, _ = chat(msg(q2, cache={"namespace": "x"}))
    expect(st == 400, "unsupported cache field accepted: %s" % b)


def t_ttl():
    q1, q2 = "What is the half-life of carbon-14?", "What is the half-life of uranium-238?"
    chat(msg(q1), {"X-Semcache-TTL": "1"})
    chat(msg(q2, cache={"ttl": 1}))
    st, h, b, _ = chat(msg(q1))
    expect(h["x-semcache"] == "hit-exact", h)
    time.sleep(2.2)
    for q in (q1, q2):
        st, h, b, _ = chat(msg(q))
        expect(h["x-semcache"] == "miss", "entry outlived its TTL: %s" % h)
    st, h, b, _ = chat(msg(q1), {"X-Semcache-TTL": "soon"})
    expect(st == 400, b)


def t_key_fields():
    base = msg("Name three primary colours.", temperature=1, max_tokens=50)
    chat(base)
    same = json.loads(json.dumps(base))
    same["temperature"] = 1.0  # normalised number
    same["metadata"] = {"trace": "x"}  # not answer-changing
    same["stream_options"] = None
    st, h, b, _ = chat(same)
    expect(h["x-semcache"] == "hit-exact", "equal request missed: %s" % h)
    # raw bytes in another key order and spacing
    raw = (b'{ "max_tokens" : 50 , "temperature": 1e0, "user": "alice", "messages": '
           b'[{"content": "Name three primary colours.", "role": "user"}], "model": "gpt-test"}')
    st, h, out = request(E.port, "POST", "/v1/chat/completions", raw=raw)
    expect(h["x-semcache"] == "hit-exact", "reordered request missed: %s" % h)
    for field, val in [("response_format", {"type": "json_object"}), ("seed", 7),
                       ("top_p", 0.5), ("stop", ["\n"]), ("max_tokens", 51),
                       ("presence_penalty", 0.5), ("logit_bias", {"50256": -100}),
                       ("some_future_field", True), ("temperature", 1.0000001)]:
        other = dict(base, **{field: val})
        st, h, b, _ = chat(other)
        expect(h["x-semcache"] == "miss", "%s did not change the key: %s" % (field, h))
    other = json.loads(json.dumps(base))
    other["messages"].insert(0, {"role": "system", "content": "Answer in French."})
    st, h, b, _ = chat(other)
    expect(h["x-semcache"] == "miss", "system message did not change key/scope: %s" % h)
    st, h, b, _ = chat(msg("Name three primary colors.", n=2))
    expect(h["x-semcache"] == "bypass", "n=2 was cached: %s" % h)


def t_tool_calls_replayed():
    tools = [{"type": "function", "function": {"name": "lookup", "parameters": {"type": "object"}}}]
    st, h, a, _ = chat(msg("Look up the weather in Oslo", tools=tools))
    expect(h["x-semcache"] == "miss" and a["choices"][0]["finish_reason"] == "tool_calls", a)
    st, h, b, _ = chat(msg("Look up the weather in Oslo", tools=tools))
    expect(h["x-semcache"] == "hit-exact", h)
    expect(b["choices"][0]["message"]["tool_calls"] == a["choices"][0]["message"]["tool_calls"], (a, b))
    expect(b["choices"][0]["message"]["content"] is None, b)
    st, h, c, _ = chat(msg("Look up the weather in Oslo"))
    expect(h["x-semcache"] == "miss", "tools did not change the key: %s" % h)


def t_streaming():
    q = "Explain how a refrigerator keeps food cold."
    st, h, _, raw = chat(msg(q, stream=True))
    expect(st == 200 and h["x-semcache"] == "miss", h)
    expect(h["content-type"].startswith("text/event-stream"), h)
    ev = parse_sse(raw)
    text1, fin1 = sse_content(ev)
    expect(text1 == "Echo: " + q and fin1 == "stop", text1)
    # the proxy asked the upstream for usage (to store token counts) but
    # does not pass on the usage chunk this client did not ask for
    expect(upstream()["last_chat"]["stream_options"] == {"include_usage": True}, "usage not asked")
    expect(not any(isinstance(e, dict) and e["choices"] == [] for e in ev), "usage chunk leaked")
    st, h, _, raw = chat(msg(q, stream=True))
    expect(h["x-semcache"] == "hit-exact", "completed stream not stored: %s" % h)
    expect(int(h["x-semcache-saved-tokens"]) > 0, "streamed entry stored without usage: %s" % h)
    ev = parse_sse(raw)
    text2, fin2 = sse_content(ev)
    expect(text2 == text1 and fin2 == "stop", (text1, text2))
    # usage: a stream that carried it (include_usage) replays it
    q3 = "Explain how a heat pump warms a house."
    st, h, _, raw = chat(msg(q3, stream=True, stream_options={"include_usage": True}))
    expect(h["x-semcache"] == "miss", h)
    st, h, _, raw = chat(msg(q3, stream=True, stream_options={"include_usage": True}))
    ev = parse_sse(raw)
    expect(h["x-semcache"] == "hit-exact" and sse_content(ev)[0] == "Echo: " + q3, h)
    usage = [e for e in ev if isinstance(e, dict) and e.get("usage") and e["choices"] == []]
    expect(len(usage) == 1 and usage[0]["usage"]["completion_tokens"] == len(("Echo: " + q3).split()), ev)
    expect(int(h["x-semcache-saved-tokens"]) == usage[0]["usage"]["total_tokens"], h)
    st, h, b, _ = chat(msg(q))
    expect(h["x-semcache"] == "hit-exact" and content(b) == text1, "stream flag is in the key")
    # a plain answer replayed as a stream, long enough for several chunks
    long_q = "Describe " + "the water cycle in detail, " * 8 + "please ünïcödé ✓."
    st, h, a, _ = chat(msg(long_q))
    st, h, _, raw = chat(msg(long_q, stream=True))
    ev = parse_sse(raw)
    text, fin = sse_content(ev)
    expect(h["x-semcache"] == "hit-exact" and text == content(a), (text, content(a)))
    expect(len(ev) > 4, "replay not chunked: %d events" % len(ev))


def t_stream_passes_through_as_it_arrives():
    q = "Tell a long story about a lighthouse keeper and a storm at sea."
    mode("ok", delay_ms=1500)
    try:
        c = http.client.HTTPConnection("127.0.0.1", E.port, timeout=30)
        t0 = time.time()
        c.request("POST", "/v1/chat/completions", json.dumps(msg(q, stream=True)),
                  {"Content-Type": "application/json"})
        r = c.getresponse()
        first = None
        raw = b""
        while True:
            line = r.readline()
            if not line:
                break
            if first is None and line.startswith(b"data:"):
                first = time.time() - t0
            raw += line
        total = time.time() - t0
        c.close()
    finally:
        mode("ok", delay_ms=0)
    expect(r.getheader("X-Semcache") == "miss", r.getheaders())
    expect(sse_content(parse_sse(raw))[0] == "Echo: " + q, raw[:300])
    expect(first is not None and first < 0.5 and total > 1.2,
           "first event after %.2fs of %.2fs: buffered, not passed through" % (first or -1, total))


def t_cut_stream_not_stored():
    q = "Write a limerick about a cat."
    mode("cut")
    try:
        st, h, _, raw = chat(msg(q, stream=True))
    finally:
        mode("ok")
    expect(b"[DONE]" not in raw, "cut stream had [DONE]")
    st, h, _, raw = chat(msg(q, stream=True))
    expect(h["x-semcache"] == "miss", "cut stream was stored: %s" % h)


def t_upstream_failures():
    q = "What is the population of Iceland?"
    mode("error")
    try:
        st, h, b, _ = chat(msg(q))
        expect(st == 500 and b["error"]["code"] == "fake_failure", (st, b))
        st, h, b, raw = chat(msg(q, stream=True))
        expect(st == 500 and json.loads(raw)["error"]["code"] == "fake_failure", (st, raw))
        mode("garbage")
        st, h, b, _ = chat(msg(q))
        expect(st == 502 and b["error"]["type"] == "upstream_error", (st, b))
        mode("down")
        st, h, b, _ = chat(msg(q))
        expect(st == 502 and b["error"]["code"] == "upstream_unavailable", (st, b))
        mode("slow", slow_ms=3000)
        t0 = time.time()
        st, h, b, _ = chat(msg(q))
        expect(st == 504 and b["error"]["code"] == "upstream_timeout", (st, b))
        expect(time.time() - t0 < 2.9, "timeout not applied")
        st, h, b, raw = chat(msg(q, stream=True))
        expect(st == 504 and json.loads(raw)["error"]["code"] == "upstream_timeout", (st, raw))
    finally:
        mode("ok")
    st, h, b, _ = chat(msg(q))
    expect(st == 200 and h["x-semcache"] == "miss", "an error was stored: %s" % h)
    expect(metric("semcache_proxy_upstream_errors_total") >= 5, "errors not counted")


def t_malformed_input():
    cases = [
        ("not json", b'{"model": "x", "messages": [', {}, 400, "invalid_json"),
        ("duplicate keys", b'{"model": "a", "model": "b", "messages": []}', {}, 400, "invalid_json"),
        ("not an object", b'[1, 2]', {}, 400, "invalid_request"),
        ("no messages", b'{"model": "x"}', {}, 400, "invalid_request"),
        ("empty messages", b'{"model": "x", "messages": []}', {}, 400, "invalid_request"),
        ("message without role", b'{"model": "x", "messages": [{"content": "hi"}]}', {}, 400,
         "invalid_request"),
        ("model not a string", b'{"model": 5, "messages": [{"role": "user", "content": "x"}]}', {},
         400, "invalid_request"),
        ("invalid utf-8", b'{"model": "x", "messages": [{"role": "user", "content": "\xff"}]}', {},
         400, "invalid_json"),
        ("wrong content type", b'{}', {"Content-Type": "text/plain"}, 415, "unsupported_media_type"),
        ("oversize body", b'{"model": "x", "pad": "' + b"a" * 70000 + b'"}', {}, 413,
         "request_too_large"),
    ]
    for name, raw, hdrs, want, code in cases:
        st, h, out = request(E.port, "POST", "/v1/chat/completions", raw=raw, headers=hdrs)
        obj = json.loads(out)
        expect(st == want and obj["error"]["code"] == code, "%s: %s %s" % (name, st, out[:200]))
    st, h, out = request(E.port, "GET", "/v2/nothing")
    expect(st == 404 and json.loads(out)["error"]["code"] == "unknown_url", (st, out))
    st, h, out = request(E.port, "GET", "/v1/chat/completions")
    expect(st == 405, (st, out))
    st, h, out = request(E.port, "GET", "/health")
    expect(st == 200 and json.loads(out)["status"] == "ok", out)


def t_metrics():
    st, h, out = request(E.port, "GET", "/metrics")
    text = out.decode()
    expect(st == 200 and h["content-type"].startswith("text/plain"), h)
    for kind in ("hit-exact", "hit-semantic", "miss", "bypass", "error"):
        line = 'semcache_proxy_requests_total{kind="%s"}' % kind
        expect(line in text, "no %s" % line)
        val = float(text.split(line)[1].split()[0])
        expect(val > 0, "%s is 0" % line)
    expect('semcache_proxy_upstream_latency_seconds_bucket{le="+Inf"}' in text, "no histogram")
    expect(metric("semcache_proxy_saved_tokens_total") > 0, "no saved tokens")
    expect(metric("semcache_segment_entries") > 0, "no occupancy")
    expect(metric("semcache_proxy_workers") == 2, "workers gauge")


def t_dimension_mismatch_is_startup_error():
    p = subprocess.run([E.proxy, "--listen", "127.0.0.1:0", "--upstream", E.up_url,
                        "--path", E.seg, "--embedding-dim", "128", "--workers", "1"],
                       capture_output=True, text=True, timeout=30)
    expect(p.returncode == 1 and "dimension 256" in p.stderr and "128" in p.stderr,
           "rc %d, stderr %s" % (p.returncode, p.stderr))
    p = subprocess.run([E.proxy, "--listen", "127.0.0.1:0", "--upstream", E.up_url,
                        "--path", E.seg + ".other", "--embedding-model", "e", "--workers", "1",
                        "--threshold", "2"], capture_output=True, text=True, timeout=30)
    expect(p.returncode == 2 and "threshold" in p.stderr, p.stderr)
    bad = E.conf + ".bad"
    with open(bad, "w") as f:
        f.write("# fine\nworkers = 2\nthreshhold = 0.9\n")
    p = subprocess.run([E.proxy, "--config", bad, "--listen", "127.0.0.1:0", "--upstream",
                        E.up_url], capture_output=True, text=True, timeout=30)
    expect(p.returncode == 2 and bad + ":3: unknown setting 'threshhold'" in p.stderr, p.stderr)


def t_upstream_down_502():
    # a second proxy whose upstream port has nobody listening
    import socket
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    dead = s.getsockname()[1]
    s.close()
    # no dimension to learn and no segment: no start
    r = subprocess.run([E.proxy, "--listen", "127.0.0.1:0", "--upstream",
                        "http://127.0.0.1:%d/v1" % dead, "--path", E.seg + ".new", "--workers", "1"],
                       capture_output=True, text=True, timeout=30)
    expect(r.returncode == 1 and "dimension is unknown" in r.stderr and not os.path.exists(E.seg + ".new"),
           r.stderr)
    # an existing segment: its dimension is used
    p, port = start([E.proxy, "--listen", "127.0.0.1:0", "--upstream",
                     "http://127.0.0.1:%d/v1" % dead, "--path", E.seg, "--workers", "1"],
                    "listening on")
    try:
        st, h, b, _ = chat(msg("Is anybody there?"), port=port)
        expect(st == 502 and b["error"]["code"] == "upstream_unavailable", (st, b))
        st, h, b, raw = chat(msg("Is anybody there?", stream=True), port=port)
        expect(st == 502, (st, raw))
    finally:
        p.send_signal(signal.SIGTERM)
        p.wait(timeout=30)
    expect(p.returncode == 0, "proxy exit %s" % p.returncode)


def worker_pids(master):
    try:
        with open("/proc/%d/task/%d/children" % (master, master)) as f:
            return [int(x) for x in f.read().split()]
    except OSError:
        return []


def t_sighup_reload():
    q = "What is the melting point of gold?"
    old = sorted(worker_pids(E.proxy_proc.pid))
    with open(E.conf, "a") as f:
        f.write("disable_kb = reloaded-kb\nanonymous = nocache\n")
    E.proxy_proc.send_signal(signal.SIGHUP)
    deadline = time.time() + 15
    while time.time() < deadline:
        pids = worker_pids(E.proxy_proc.pid)
        if len(pids) == 2 and not set(pids) & set(old):
            break
        time.sleep(0.1)
    expect(len(pids) == 2 and not set(pids) & set(old), "workers not replaced: %s -> %s" % (old, pids))
    chat(msg(q), {"X-Semcache-KB": "reloaded-kb"})
    st, h, b, _ = chat(msg(q), {"X-Semcache-KB": "reloaded-kb"})
    expect(h["x-semcache"] == "bypass", "reloaded disable_kb not applied: %s" % h)
    for _ in range(2):
        st, h, b, _ = chat(msg("An anonymous question after the reload", user=None))
        expect(st == 200 and h["x-semcache"] == "bypass", "anonymous = nocache not applied: %s" % h)
    st, h, b, _ = chat(msg("An anonymous question after the reload", user="dave"))
    expect(h["x-semcache"] == "miss", h)
    with open(E.conf, "a") as f:
        f.write("no_such_setting = 1\n")
    E.proxy_proc.send_signal(signal.SIGHUP)
    time.sleep(0.5)
    expect(sorted(worker_pids(E.proxy_proc.pid)) == sorted(pids), "a bad config replaced workers")
    st, h, b, _ = chat(msg(q), {"X-Semcache-KB": "reloaded-kb"})
    expect(st == 200 and h["x-semcache"] == "bypass", h)


def t_worker_killed_under_load():
    mode("ok", delay_ms=20)
    stop = threading.Event()
    results = []  # (start, end, ok, detail)
    lock = threading.Lock()

    def client(i):
        n = 0
        while not stop.is_set():
            n += 1
            # distinct hex words keep the questions apart semantically
            # (closest pair 0.66 with the fake embedder, threshold 0.87)
            q = "Load check %s" % hashlib.sha256(b"%d" % (n % 25)).hexdigest()[:10]
            t0 = time.time()
            try:
                st, h, b, _ = chat(msg(q, user="load%d" % i))
                good = st == 200 and content(b) == "Echo: " + q
                detail = st
            except Exception as e:  # connection reset by the kill
                good, detail = False, repr(e)
            with lock:
                results.append((t0, time.time(), good, detail))

    threads = [threading.Thread(target=client, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    time.sleep(1.5)
    victims = worker_pids(E.proxy_proc.pid)
    expect(len(victims) == 2, victims)
    kill_at = time.time()
    os.kill(victims[0], signal.SIGKILL)
    time.sleep(2.5)
    stop.set()
    for t in threads:
        t.join()
    mode("ok", delay_ms=0)
    after = worker_pids(E.proxy_proc.pid)
    expect(len(after) == 2 and victims[0] not in after, "not restarted: %s -> %s" % (victims, after))
    bad = [r for r in results if not r[2]]
    # only requests in flight on the killed worker may fail: they started
    # before the kill and there are at most as many as clients
    late = [r for r in bad if r[0] > kill_at + 0.05]
    expect(not late, "requests started after the kill failed: %s" % late[:5])
    expect(len(bad) <= 8, "%d failures" % len(bad))
    expect(len(results) > 100, "too little load: %d requests" % len(results))
    expect(metric("semcache_proxy_worker_restarts_total") >= 1, "restart not counted")
    p = subprocess.run([E.tool, "--path", E.seg, "verify"], capture_output=True, text=True)
    expect(p.returncode == 0, "verify: %s %s" % (p.stdout, p.stderr))
    print("# %d requests under load, %d failed in flight on the killed worker" % (len(results), len(bad)))


def t_sigterm_drains():
    mode("ok", delay_ms=1000)
    res = {}

    def slow():
        try:
            res["r"] = chat(msg("A slow question asked while draining"))
        except Exception as e:
            res["r"] = e

    t = threading.Thread(target=slow)
    t.start()
    time.sleep(0.5)
    E.proxy_proc.send_signal(signal.SIGTERM)
    t.join()
    E.proxy_proc.wait(timeout=30)
    mode("ok", delay_ms=0)
    r = res["r"]
    expect(not isinstance(r, Exception) and r[0] == 200, "in-flight request lost: %r" % (r,))
    expect(E.proxy_proc.returncode == 0, "exit status %s" % E.proxy_proc.returncode)


TESTS = [
    t_exact_hit_without_embedding_call, t_hit_returns_the_upstream_object, t_authorization_passed_on, t_semantic_hit_on_paraphrase, t_users_never_share,
    t_acl_hashes_never_share, t_disabled_kb_bypasses, t_no_cache_and_no_store, t_ttl,
    t_key_fields, t_tool_calls_replayed, t_streaming, t_stream_passes_through_as_it_arrives,
    t_cut_stream_not_stored,
    t_upstream_failures, t_malformed_input, t_metrics, t_dimension_mismatch_is_startup_error,
    t_upstream_down_502, t_sighup_reload, t_worker_killed_under_load, t_sigterm_drains,
]


def main():
    if len(sys.argv) != 3:
        print(__doc__.split("\n")[2], file=sys.stderr)
        return 2
    E.proxy, E.tool = os.path.abspath(sys.argv[1]), os.path.abspath(sys.argv[2])
    E.seg = "/dev/shm/semcache-proxytest.%d" % os.getpid()
    tmp = tempfile.mkdtemp(prefix="semcache-proxytest.")
    E.conf = os.path.join(tmp, "proxy.conf")
    with open(E.conf, "w") as f:
        f.write("# test configuration\n"
                "workers = 2\n"
                "user_header = X-End-User\n"
                "disable_kb = secret-kb\n"
                "max_body_bytes = 65536\n"
                "upstream_timeout_ms = 1500\n"
                "slots = 4096\n"
                "arena_mb = 16\n"
                "upstream_api_key = sk-from-config\n")
    try:
        up, E.up_port = start([sys.executable, os.path.join(HERE, "fake_upstream.py")],
                              "listening on")
        E.up_url = "http://127.0.0.1:%d/v1" % E.up_port
        E.proxy_proc, E.port = start([E.proxy, "--config", E.conf, "--listen", "127.0.0.1:0",
                                      "--upstream", E.up_url, "--path", E.seg], "listening on")
        for t in TESTS:
            name = t.__name__[2:].replace("_", " ")
            try:
                t()
                ok(name)
            except Exception as e:  # Check or anything unexpected
                not_ok(name, "%s: %s" % (type(e).__name__, e))
        if E.proxy_proc.poll() is None:
            not_ok("proxy stopped", "still running")
    finally:
        for p in PROCS:
            if p.poll() is None:
                p.kill()
                p.wait()
        for path in (E.seg, E.seg + ".other", E.seg + ".new"):
            try:
                os.unlink(path)
            except OSError:
                pass
        for name in os.listdir(tmp):
            os.unlink(os.path.join(tmp, name))
        os.rmdir(tmp)
    print("%d passed, %d failed" % (PASS, FAIL))
    return 1 if FAIL else 0


if __name__ == "__main__":
    sys.exit(main())
