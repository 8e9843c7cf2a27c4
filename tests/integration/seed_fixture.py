#!/usr/bin/env python3
"""seed_fixture.py - the reference design's side of the seed-format tests.

A Python service still on the reference cache writes and reads Redis with
redis-py and json; this script does the same, so the C side is tested
against what that service really produces and accepts (Debian's
python3-redis).  It only talks to the port it is given, which the C test
started itself on 127.0.0.1.

  seed_fixture.py write PORT PREFIX [TTL]
      Write the entries of ENTRIES below in the reference JSON, each with
      its embedding key, and add their ids to the index SET.  With TTL
      (seconds), as the reference service does: created_at is now and both
      keys expire after TTL (SET ex=TTL); without, the fixed created_at
      below and no expiry.
  seed_fixture.py check PORT PREFIX COUNT DIM
      Read every id of the index SET and check each entry and embedding
      against the reference schema, exactly: key sets, types, lengths, and
      the values the C test wrote ("answer for <id>", embedding (i+1)/(DIM+1),
      compared after normalising both, as semcache stores unit vectors).
      The reader is the reference reader: the four fields must be there,
      other top-level fields are ignored ("scope", which semcache adds,
      must be a string when present).
      Exit 0 when all COUNT entries pass, else 1 with the reasons.
"""
import json
import math
import sys
import time

import redis

# What the C test expects back (tests/integration/test_redis.c knows the
# same values).  They use what a Python writer really emits: spaces in
# the JSON, content None beside tool calls, arguments kept as a dict, a
# float latency, a created_at from time.time().
ENTRIES = {
    "seed-q1": {
        "response": {
            "content": "Paris is the capital of France.",
            "model": "gpt-4o-mini",
            "usage": {"prompt_tokens": 12, "completion_tokens": 7},
            "tool_calls": [],
            "latency_ms": 250,
        },
        "query_embedding": [0.1, 0.2, 0.3, 0.4],
        "created_at": 1712345678.5,
        "hit_count": 3,
    },
    "seed-q2": {
        "response": {
            "content": None,
            "model": "gpt-4o",
            "usage": {"prompt_tokens": 30, "completion_tokens": 0},
            "tool_calls": [
                {"id": "call_1", "name": "get_weather", "arguments": {"city": "Paris"}},
                {"id": "call_2", "name": "get_time", "arguments": "{}"},
            ],
            "latency_ms": 812.7,
        },
        "query_embedding": [-1.0, 0.0, 0.5, 2.0],
        "created_at": 1712345679.25,
        "hit_count": 0,
    },
    "user:7/q#3": {
        "response": {
            "content": "Caf\u00e9 \u2615 \"quoted\"\nsecond line",
            "model": "m",
            "usage": {"prompt_tokens": 1, "completion_tokens": 2},
            "tool_calls": [],
            "latency_ms": 0,
        },
        "query_embedding": [1e-3, -2.5e-4, 3.0, 1.0],
        "created_at": 1712345680.0,
        "hit_count": 41,
    },
}


def write(r, prefix, ttl=None):
    for key, entry in ENTRIES.items():
        if ttl is not None:
            entry = dict(entry, created_at=time.time())
        r.set(prefix + "llm_cache:" + key, json.dumps(entry), ex=ttl)
        r.set(prefix + "llm_cache_emb:" + key, json.dumps(entry["query_embedding"]), ex=ttl)
        r.sadd(prefix + "llm_cache_index", key)
    return 0


def unit(v):
    n = math.sqrt(sum(x * x for x in v)) or 1.0
    return [x / n for x in v]


def is_float_list(v, dim):
    return (isinstance(v, list) and len(v) == dim and
            all(isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x)
                for x in v))


def check_entry(key, raw, emb_raw, dim, problems):
    def bad(msg):
        problems.append("%s: %s" % (key, msg))

    try:
        e = json.loads(raw)
    except ValueError as exc:
        return bad("entry is not JSON: %s" % exc)
    # The reference reader takes these four and ignores anything else.
    if not isinstance(e, dict) or not {"response", "query_embedding", "created_at",
                                       "hit_count"} <= set(e):
        return bad("entry keys %s" % (sorted(e) if isinstance(e, dict) else e))
    if "scope" in e and not isinstance(e["scope"], str):
        bad("scope %r" % e["scope"])
    resp = e["response"]
    if not isinstance(resp, dict) or set(resp) != {"content", "model", "usage", "tool_calls",
                                                   "latency_ms"}:
        return bad("response keys %s" % (sorted(resp) if isinstance(resp, dict) else resp))
    if resp["content"] != "answer for " + key:
        bad("content %r" % resp["content"])
    if not isinstance(resp["model"], str) or not resp["model"]:
        bad("model %r" % resp["model"])
    usage = resp["usage"]
    if (not isinstance(usage, dict) or set(usage) != {"prompt_tokens", "completion_tokens"} or
            not all(isinstance(usage[k], int) and usage[k] >= 0 for k in usage)):
        bad("usage %r" % usage)
    calls = resp["tool_calls"]
    if not isinstance(calls, list):
        bad("tool_calls %r" % calls)
    else:
        for c in calls:
            if (not isinstance(c, dict) or set(c) != {"id", "name", "arguments"} or
                    not all(isinstance(c[k], str) for k in c)):
                bad("tool call %r" % c)
            else:
                json.loads(c["arguments"])  # arguments are JSON text
    if not isinstance(resp["latency_ms"], int) or resp["latency_ms"] < 0:
        bad("latency_ms %r" % resp["latency_ms"])
    want = unit([(i + 1) / (dim + 1) for i in range(dim)])
    q = e["query_embedding"]
    if not is_float_list(q, dim) or any(abs(a - b) > 1e-6 for a, b in zip(unit(q), want)):
        bad("query_embedding %r" % q)
    if not isinstance(e["created_at"], float) or not 1.6e9 < e["created_at"] < 7.3e9:
        bad("created_at %r" % e["created_at"])
    if not isinstance(e["hit_count"], int) or e["hit_count"] < 0:
        bad("hit_count %r" % e["hit_count"])
    try:
        emb = json.loads(emb_raw) if emb_raw is not None else None
    except ValueError as exc:
        return bad("embedding is not JSON: %s" % exc)
    if not is_float_list(emb, dim) or any(abs(a - b) > 1e-6 for a, b in zip(unit(emb), want)):
        bad("embedding key %r" % emb)


def check(r, prefix, count, dim):
    problems = []
    ids = sorted(m.decode() for m in r.smembers(prefix + "llm_cache_index"))
    if len(ids) != count:
        problems.append("index holds %d ids, expected %d" % (len(ids), count))
    for key in ids:
        raw = r.get(prefix + "llm_cache:" + key)
        if raw is None:
            problems.append("%s: no entry" % key)
            continue
        check_entry(key, raw, r.get(prefix + "llm_cache_emb:" + key), dim, problems)
    for p in problems:
        print("seed_fixture: " + p, file=sys.stderr)
    if not problems:
        print("seed_fixture: %d entries match the reference schema" % len(ids))
    return 1 if problems else 0


def main(argv):
    if len(argv) < 3 or argv[0] not in ("write", "check"):
        print(__doc__, file=sys.stderr)
        return 2
    r = redis.Redis(host="127.0.0.1", port=int(argv[1]), socket_timeout=10)
    if argv[0] == "write":
        return write(r, argv[2], int(argv[3]) if len(argv) > 3 else None)
    return check(r, argv[2], int(argv[3]), int(argv[4]))


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
