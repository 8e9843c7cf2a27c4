#!/usr/bin/env python3
"""fake_upstream.py - a deterministic local stand-in for an OpenAI-compatible API.

What: serves POST /v1/chat/completions (plain JSON and streaming SSE) and
POST /v1/embeddings on 127.0.0.1, for semcache-proxy's tests, demo and
benchmarks.  Nothing leaves the machine and every answer is a function of the
request, so tests can say exactly what the right answer is.

Answers.  The content is the answer listed for the last user message in
--answers FILE (JSONL with "prompt" and "response", like
data/demo_requests.jsonl), else "Echo: <last user message>".  With "tools" in
the request it answers with one tool call of the first tool instead.
system_fingerprint is "fp_<user>" (the request's `user` field, or "none"), so
a client can tell whose request an answer was made for: the demo counts a hit
carrying another user's fingerprint as a cross-user hit.  usage counts words.

Delay.  Each chat answer waits --delay-ms, or, for a prompt in the answers
file that has latency_ms, latency_ms * --time-scale.  A streamed answer
spreads that delay over its chunks.

Embeddings.  Like the library demo's embedder: lowercase words minus a short
stopword list, each word and each character 3-gram of " word " hashed (FNV-1a
plus a 64-bit finaliser) into --dim signed buckets, L2-normalised.  Reworded
questions that keep their content words land close; unrelated ones do not.

Failure switches (POST /_control with a JSON object; GET /_stats gives the
call counters, the last chat request body as received and its
Authorization header):
  {"mode": "ok"}       normal answers (the default)
  {"mode": "error"}    500 with an OpenAI-style error object
  {"mode": "garbage"}  200 with a body that is not JSON
  {"mode": "slow", "slow_ms": N}  wait N ms before answering
  {"mode": "cut"}      a stream stops half-way, without [DONE]
  {"mode": "down"}     close the connection without answering
  {"delay_ms": N}      change the chat delay
Modes apply to chat completions only; embeddings always answer.

Usage: fake_upstream.py [--port P] [--dim N] [--delay-ms N] [--answers FILE]
                        [--time-scale X]
Prints "fake-upstream: listening on 127.0.0.1:PORT" once it accepts.
"""
import argparse
import json
import math
import socket
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

STOPWORDS = set("""a an the is are was be do does did i me my you your it its of to in on
for with and or what whats which how why when who whom where can could should would
there this that s t by at from into as so some any please explain tell define describe
difference differences between vs versus way steps tips meaning mean""".split())

M64 = (1 << 64) - 1


def h64(kind, data):
    h = 0xcbf29ce484222325
    h = ((h ^ ord(kind)) * 0x100000001b3) & M64
    for b in data:
        h = ((h ^ b) * 0x100000001b3) & M64
    h ^= h >> 30
    h = (h * 0xbf58476d1ce4e5b9) & M64
    h ^= h >> 27
    h = (h * 0x94d049bb133111eb) & M64
    h ^= h >> 31
    return h


def embed(text, dim):
    v = [0.0] * dim

    def add(h, w):
        v[h % dim] += -w if h >> 63 else w

    words, cur = [], []
    for ch in text:
        o = ord(ch)
        if o >= 0x80 or ch.isascii() and ch.isalnum():
            cur.append(ch.lower() if ch.isascii() else ch)
        else:
            if cur:
                words.append("".join(cur))
            cur = []
    if cur:
        words.append("".join(cur))
    for w in words:
        wb = w.encode()[:64]
        if w in STOPWORDS:
            continue
        add(h64("w", wb), 1.0)
        padded = b" " + wb + b" "
        for i in range(len(padded) - 2):
            add(h64("g", padded[i:i + 3]), 0.5)
    norm = math.sqrt(sum(x * x for x in v))
    if norm == 0:
        v[0] = 1.0
        return v
    return [x / norm for x in v]


class State:
    def __init__(self, args):
        self.lock = threading.Lock()
        self.mode = "ok"
        self.slow_ms = 0
        self.delay_ms = args.delay_ms
        self.dim = args.dim
        self.time_scale = args.time_scale
        self.answers = {}
        self.counts = {"chat": 0, "embeddings": 0}
        self.last_chat = None
        self.last_auth = None
        if args.answers:
            with open(args.answers) as f:
                for line in f:
                    if line.strip():
                        r = json.loads(line)
                        self.answers[r["prompt"]] = (r["response"], r.get("latency_ms"))


def last_user_text(messages):
    if not messages or not isinstance(messages[-1], dict):
        return ""
    m = messages[-1]
    c = m.get("content")
    if isinstance(c, str):
        return c
    if isinstance(c, list):
        return "\n".join(p.get("text", "") for p in c if isinstance(p, dict) and p.get("type") == "text")
    return ""


def words(s):
    return len(s.split())


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "fake-upstream/1"
    # headers and body leave in one write, with no Nagle delay: otherwise a
    # client's delayed ACK adds 40 ms to every answer and skews timings
    wbufsize = 1 << 16
    disable_nagle_algorithm = True

    def log_message(self, fmt, *args):  # quiet
        pass

    def send_json(self, status, obj, close=False):
        body = json.dumps(obj).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        if close:
            self.send_header("Connection", "close")
        self.end_headers()
        self.wfile.write(body)

    def read_body(self):
        n = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(n) if n else b""
        try:
            return json.loads(raw or b"{}")
        except ValueError:
            return None

    def do_GET(self):
        st = self.server.state
        if self.path == "/_stats":
            with st.lock:
                self.send_json(200, dict(st.counts, mode=st.mode, last_chat=st.last_chat,
                                         last_auth=st.last_auth))
        else:
            self.send_json(404, {"error": {"message": "not found", "type": "invalid_request_error"}})

    def do_POST(self):
        st = self.server.state
        req = self.read_body()
        if self.path == "/_control":
            with st.lock:
                if isinstance(req, dict):
                    st.mode = req.get("mode", st.mode)
                    st.slow_ms = req.get("slow_ms", st.slow_ms)
                    st.delay_ms = req.get("delay_ms", st.delay_ms)
            self.send_json(200, {"ok": True})
            return
        if req is None:
            self.send_json(400, {"error": {"message": "bad json", "type": "invalid_request_error"}})
            return
        if self.path.endswith("/embeddings"):
            with st.lock:
                st.counts["embeddings"] += 1
            inp = req.get("input", "")
            inputs = inp if isinstance(inp, list) else [inp]
            data = [{"object": "embedding", "index": i, "embedding": embed(str(t), st.dim)}
                    for i, t in enumerate(inputs)]
            self.send_json(200, {"object": "list", "data": data, "model": req.get("model"),
                                 "usage": {"prompt_tokens": 1, "total_tokens": 1}})
            return
        if not self.path.endswith("/chat/completions"):
            self.send_json(404, {"error": {"message": "unknown path", "type": "invalid_request_error"}})
            return
        with st.lock:
            st.counts["chat"] += 1
            st.last_chat = req
            st.last_auth = self.headers.get("Authorization")
            mode, slow_ms, delay_ms = st.mode, st.slow_ms, st.delay_ms
        if mode == "down":
            self.close_connection = True
            self.connection.shutdown(socket.SHUT_RDWR)
            return
        if mode == "slow":
            time.sleep(slow_ms / 1000.0)
        if mode == "error":
            self.send_json(500, {"error": {"message": "the fake upstream failed on purpose",
                                           "type": "server_error", "param": None, "code": "fake_failure"}})
            return
        if mode == "garbage":
            body = b"<html>not json</html>"
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
            return
        msgs = req.get("messages") or []
        text = last_user_text(msgs)
        answer, lat = st.answers.get(text, (None, None))
        if lat is not None:
            delay_ms = lat * st.time_scale
        content = answer if answer is not None else "Echo: " + text
        tool_calls = None
        finish = "stop"
        if req.get("tools"):
            fn = req["tools"][0].get("function", {}).get("name", "tool")
            tool_calls = [{"id": "call_%08x" % (h64("c", text.encode()) & 0xffffffff), "type": "function",
                           "function": {"name": fn, "arguments": json.dumps({"q": text})}}]
            content = None
            finish = "tool_calls"
        model = req.get("model", "fake-model")
        user = req.get("user") or "none"
        created = 1700000000
        cid = "chatcmpl-fake%08x" % (h64("i", json.dumps(req, sort_keys=True).encode()) & 0xffffffff)
        prompt_tokens = sum(words(m.get("content")) for m in msgs
                            if isinstance(m, dict) and isinstance(m.get("content"), str))
        usage = {"prompt_tokens": prompt_tokens, "completion_tokens": words(content or ""),
                 "total_tokens": prompt_tokens + words(content or "")}
        base = {"id": cid, "created": created, "model": model, "system_fingerprint": "fp_" + user}
        if req.get("stream"):
            self.stream(base, content, tool_calls, finish, usage, delay_ms, mode == "cut",
                        bool((req.get("stream_options") or {}).get("include_usage")))
            return
        time.sleep(delay_ms / 1000.0)
        msg = {"role": "assistant", "content": content, "refusal": None}
        if tool_calls:
            msg["tool_calls"] = tool_calls
        self.send_json(200, dict(base, object="chat.completion",
                                 choices=[{"index": 0, "message": msg, "logprobs": None,
                                           "finish_reason": finish}], usage=usage))

    def stream(self, base, content, tool_calls, finish, usage, delay_ms, cut, include_usage):
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.send_header("Cache-Control", "no-cache")
        self.send_header("Connection", "close")
        self.end_headers()
        self.close_connection = True

        def chunk(delta, fin=None, **extra):
            obj = dict(base, object="chat.completion.chunk",
                       choices=[{"index": 0, "delta": delta, "logprobs": None, "finish_reason": fin}], **extra)
            self.wfile.write(b"data: " + json.dumps(obj).encode() + b"\n\n")
            self.wfile.flush()

        pieces = []
        if content is not None:
            ws = content.split(" ")
            pieces = [w + (" " if i + 1 < len(ws) else "") for i, w in enumerate(ws)]
        step = delay_ms / 1000.0 / max(1, len(pieces) + 1)
        chunk({"role": "assistant", "content": "" if content is not None else None})
        for i, p in enumerate(pieces):
            if cut and i >= len(pieces) // 2:
                return
            time.sleep(step)
            chunk({"content": p})
        for i, tc in enumerate(tool_calls or []):
            chunk({"tool_calls": [dict(tc, index=i)]})
        time.sleep(step)
        chunk({}, finish)
        if include_usage:
            obj = dict(base, object="chat.completion.chunk", choices=[], usage=usage)
            self.wfile.write(b"data: " + json.dumps(obj).encode() + b"\n\n")
        self.wfile.write(b"data: [DONE]\n\n")
        self.wfile.flush()


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--port", type=int, default=0)
    ap.add_argument("--dim", type=int, default=256)
    ap.add_argument("--delay-ms", type=float, default=0)
    ap.add_argument("--answers")
    ap.add_argument("--time-scale", type=float, default=1.0)
    args = ap.parse_args()
    srv = ThreadingHTTPServer(("127.0.0.1", args.port), Handler)
    srv.daemon_threads = True
    srv.request_queue_size = 256
    srv.state = State(args)
    print("fake-upstream: listening on 127.0.0.1:%d" % srv.server_address[1], flush=True)
    try:
        srv.serve_forever()
    except KeyboardInterrupt:
        pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
