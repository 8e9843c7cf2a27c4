/*
 * http.c - what a worker answers: routes, the cached chat-completions call,
 * errors.
 *
 * Routes: POST /v1/chat/completions (the cache), GET /health, GET /metrics;
 * anything else is 404 (405 for a known path with another method).  Every
 * error is an OpenAI-style object {"error": {"message", "type", "param",
 * "code"}} so SDKs raise their usual exceptions: 400 malformed JSON or a
 * body that is not a chat request, 415 a Content-Type other than
 * application/json, 413 a body over max_body_bytes, 502 upstream down or
 * answering garbage, 504 upstream timeout; an upstream's own error answer
 * passes through with its status.  No error is ever stored.
 *
 * A chat request goes: parse (jansson, duplicate keys rejected: they would
 * make "the" value ambiguous) -> take the per-call controls (Cache-Control,
 * X-Semcache-TTL, the body's `cache` object, which is removed before
 * forwarding) -> key, scope, embedding text (canon.c) -> namespace (user
 * from the configured header or the body's `user`, plus X-Semcache-ACL) ->
 * policy (X-Semcache-KB naming a caching-disabled knowledge base, an
 * anonymous request under anonymous = nocache, or an uncacheable request
 * such as n > 1: bypass, nothing read or written) -> exact get -> embedding
 * and semantic search -> upstream.  The X-Semcache header says which:
 * hit-exact, hit-semantic, miss (looked, found nothing) or bypass (did not
 * look: disabled knowledge base, anonymous under nocache, uncacheable, or
 * Cache-Control: no-cache).
 *
 * Record format.  semcache stores the answer's text as the record's content
 * and the rest of the upstream's chat.completion object (id, created,
 * usage, tool_calls, refusal, logprobs, ...) as the record's metadata, as
 * compact JSON whose choices[0].message.content is a mark (PX_MARK_RAW).  A
 * plain exact or semantic hit splices the JSON-escaped content into that
 * text at the mark (no parse, no re-serialisation: the hit path's biggest
 * cost otherwise); a streamed hit parses it and replaces the mark.  Either
 * way the client gets the object the upstream sent.  An answer that itself
 * contains the mark string (a control-character string no model writes by
 * accident) is not stored: a hit could not tell where the content goes.  Records
 * written by other programs (no metadata) are served as a minimal
 * chat.completion built from the record's fields.
 *
 * Threads: MHD runs each connection on its own thread, so the handler may
 * block on the upstream; a streamed miss is passed through by a content
 * reader that drives the upstream transfer (upstream.c) from that thread.
 */
#include <ctype.h>
#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "proxy.h"

enum route { R_NONE, R_CHAT, R_HEALTH, R_METRICS };

typedef struct px_conn {
	enum route route;
	px_buf body;
	bool too_big;
	bool responded; /* an early response is queued: ignore the body */
} px_conn;

/* Everything a chat request carries from parsing to storing. */
typedef struct chat {
	px_worker_ctx *w;
	struct MHD_Connection *conn;
	json_t *body;
	char *fwd;          /* body as forwarded (without `cache`) */
	size_t fwd_len;
	px_canon canon;
	char ns[PX_NS_LEN];
	const char *auth;
	bool read, write;
	int64_t ttl_ms;     /* 0 = configured default */
	float *vec;         /* embedding of canon.embed_text, or NULL */
	uint32_t vec_dim;
	enum px_kind kind;
} chat;

/* The stored completion holds this string where the content goes, so an
 * exact hit can splice the content into the stored JSON text instead of
 * parsing and re-serialising it.  jansson writes it as PX_MARK_JSON; a
 * store checks it occurs exactly once (else the answer is not stored). */
#define PX_MARK_RAW  "\001semcache-content\001"
#define PX_MARK_JSON "\"\\u0001semcache-content\\u0001\""

/* ------------------------------------------------------------------------
 * Responses
 * ---------------------------------------------------------------------- */
static void count_status(px_worker_ctx *w, unsigned status)
{
	if (status >= 100 && status < 600)
		atomic_fetch_add_explicit(&w->metrics->status[status / 100], 1,
		                          memory_order_relaxed);
}

/* Queue a response owning buf (malloc'd, freed here on every path).
 * hdrs: NULL-terminated name/value pairs. */
static enum MHD_Result send_buf(px_worker_ctx *w, struct MHD_Connection *conn,
                                unsigned status, const char *ctype, char *buf, size_t len,
                                const char *const *hdrs)
{
	struct MHD_Response *r;
	enum MHD_Result ret;

	r = MHD_create_response_from_buffer(len, buf, MHD_RESPMEM_MUST_FREE);
	if (!r) {
		free(buf);
		return MHD_NO;
	}
	MHD_add_response_header(r, MHD_HTTP_HEADER_CONTENT_TYPE, ctype);
	for (; hdrs && hdrs[0]; hdrs += 2)
		if (hdrs[1])
			MHD_add_response_header(r, hdrs[0], hdrs[1]);
	ret = MHD_queue_response(conn, status, r);
	MHD_destroy_response(r);
	count_status(w, status);
	return ret;
}

static enum MHD_Result send_error(px_worker_ctx *w, struct MHD_Connection *conn,
                                  unsigned status, const char *type, const char *code,
                                  const char *const *hdrs, const char *fmt, ...)
	__attribute__((format(printf, 7, 8)));

static enum MHD_Result send_error(px_worker_ctx *w, struct MHD_Connection *conn,
                                  unsigned status, const char *type, const char *code,
                                  const char *const *hdrs, const char *fmt, ...)
{
	char msg[512];
	json_t *o;
	char *s;
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof msg, fmt, ap);
	va_end(ap);
	o = json_pack("{s:{s:s, s:s, s:n, s:s}}", "error", "message", msg, "type", type, "param",
	              "code", code);
	s = o ? json_dumps(o, JSON_COMPACT) : NULL;
	json_decref(o);
	if (!s)
		return MHD_NO;
	return send_buf(w, conn, status, "application/json", s, strlen(s), hdrs);
}

/* ------------------------------------------------------------------------
 * Request headers and per-call controls
 * ---------------------------------------------------------------------- */
static const char *hdr(struct MHD_Connection *c, const char *name)
{
	return MHD_lookup_connection_value(c, MHD_HEADER_KIND, name);
}

static bool is_json_ctype(const char *ct)
{
	size_t n = strlen("application/json");

	if (!ct || strncasecmp(ct, "application/json", n))
		return false;
	ct += n;
	while (*ct == ' ' || *ct == '\t')
		ct++;
	return *ct == '\0' || *ct == ';';
}

/* Does the comma-separated list contain token (case-insensitive)? */
static bool has_token(const char *list, const char *token)
{
	size_t tl = strlen(token);

	for (const char *p = list; p && *p;) {
		size_t n;

		while (*p == ' ' || *p == '\t' || *p == ',')
			p++;
		n = strcspn(p, ",");
		while (n && (p[n - 1] == ' ' || p[n - 1] == '\t'))
			n--;
		if (n == tl && !strncasecmp(p, token, n))
			return true;
		p += strcspn(p, ",");
	}
	return false;
}

/* Seconds as a TTL: an integer 1 .. 10 years. */
static bool parse_ttl(const char *s, int64_t *ms)
{
	char *end;
	unsigned long long v;

	if (!s || !isdigit((unsigned char)*s))
		return false;
	errno = 0;
	v = strtoull(s, &end, 10);
	if (errno || *end || v < 1 || v > 10ull * 365 * 86400)
		return false;
	*ms = (int64_t)v * 1000;
	return true;
}

/* The body's `cache` object (LiteLLM's spelling); removed from the body. */
static int take_cache_object(chat *q, bool *no_cache, bool *no_store, char *err, size_t len)
{
	json_t *c = json_object_get(q->body, "cache");
	const char *k;
	json_t *v;

	if (!c)
		return 0;
	if (!json_is_object(c)) {
		snprintf(err, len, "'cache' must be an object");
		return -EINVAL;
	}
	json_object_foreach(c, k, v) {
		if (!strcmp(k, "no-cache") || !strcmp(k, "no-store")) {
			if (!json_is_boolean(v)) {
				snprintf(err, len, "'cache.%s' must be a boolean", k);
				return -EINVAL;
			}
			if (json_is_true(v))
				*(k[3] == 'c' ? no_cache : no_store) = true;
		} else if (!strcmp(k, "ttl")) {
			double t = json_is_number(v) ? json_number_value(v) : -1;

			if (!(t >= 1 && t <= 10.0 * 365 * 86400) || t != floor(t)) {
				snprintf(err, len, "'cache.ttl' must be a whole number of seconds >= 1");
				return -EINVAL;
			}
			q->ttl_ms = (int64_t)t * 1000;
		} else {
			snprintf(err, len, "'cache.%s' is not supported (no-cache, no-store, ttl are)",
			         k);
			return -EINVAL;
		}
	}
	json_object_del(q->body, "cache");
	return 0;
}

static bool kb_disabled(const px_config *cfg, const char *list)
{
	char name[128];

	for (const char *p = list; p && *p;) {
		size_t n;

		while (*p == ' ' || *p == ',')
			p++;
		n = strcspn(p, ",");
		while (n && p[n - 1] == ' ')
			n--;
		if (n && n < sizeof name) {
			memcpy(name, p, n);
			name[n] = '\0';
			if (px_config_kb_disabled(cfg, name))
				return true;
		}
		p += strcspn(p, ",");
	}
	return false;
}

/* ------------------------------------------------------------------------
 * Records
 * ---------------------------------------------------------------------- */
/* The chat.completion a cached record stands for (new reference). */
static json_t *record_to_completion(const semcache_response *r)
{
	json_t *c = r->metadata ? json_loads(r->metadata, JSON_REJECT_DUPLICATES, NULL) : NULL;
	json_t *msg;

	if (!json_is_object(c) ||
	    !json_is_object(json_object_get(json_array_get(json_object_get(c, "choices"), 0),
	                                    "message"))) {
		json_decref(c);
		c = json_pack("{s:s, s:s, s:I, s:s, s:[{s:i, s:{s:s}, s:n, s:s}], "
		              "s:{s:i, s:i, s:i}}",
		              "id", "chatcmpl-semcache", "object", "chat.completion", "created",
		              (json_int_t)time(NULL), "model", r->model, "choices", "index", 0,
		              "message", "role", "assistant", "logprobs", "finish_reason",
		              r->finish_reason && *r->finish_reason ? r->finish_reason : "stop",
		              "usage", "prompt_tokens", (int)r->prompt_tokens,
		              "completion_tokens", (int)r->completion_tokens, "total_tokens",
		              (int)(r->prompt_tokens + r->completion_tokens));
		if (!c)
			return NULL;
	}
	msg = json_object_get(json_array_get(json_object_get(c, "choices"), 0), "message");
	if (!json_object_get(msg, "content") ||
	    (json_is_string(json_object_get(msg, "content")) &&
	     !strcmp(json_string_value(json_object_get(msg, "content")), PX_MARK_RAW)))
		json_object_set_new(msg, "content", json_string(r->content));
	return c;
}

/* Is this upstream answer one we can store and replay faithfully? */
static bool storable(const json_t *c)
{
	const json_t *choices = json_object_get(c, "choices");
	const json_t *ch = json_array_get(choices, 0);
	const json_t *msg = json_object_get(ch, "message");
	const json_t *content = json_object_get(msg, "content");

	return json_is_object(c) && json_array_size(choices) == 1 && json_is_object(msg) &&
	       (json_is_string(content) || json_is_null(content)) &&
	       json_is_string(json_object_get(ch, "finish_reason")) &&
	       !json_object_get(c, "error");
}

static uint32_t usage_of(const json_t *c, const char *field)
{
	const json_t *v = json_object_get(json_object_get(c, "usage"), field);
	json_int_t i = json_is_integer(v) ? json_integer_value(v) : 0;

	return i > 0 && i <= UINT32_MAX ? (uint32_t)i : 0;
}

static void store(chat *q, const json_t *completion, double seconds)
{
	const px_config *cfg = q->w->cfg;
	const json_t *ch = json_array_get(json_object_get(completion, "choices"), 0);
	const json_t *msg = json_object_get(ch, "message");
	const json_t *content = json_object_get(msg, "content");
	const json_t *tcs = json_object_get(msg, "tool_calls"), *tc;
	semcache_tool_call calls[64];
	semcache_response r = {0};
	semcache_put_args a = {0};
	json_t *meta = NULL, *mmsg;
	char *meta_s = NULL;
	size_t i, ncalls = 0;
	int rc = -ENOMEM;

	if (!storable(completion)) {
		px_log("answer not stored: not one choice with a message and a finish_reason");
		goto out;
	}
	meta = json_deep_copy(completion);
	if (!meta)
		goto out;
	mmsg = json_object_get(json_array_get(json_object_get(meta, "choices"), 0), "message");
	if (json_is_string(content))
		json_object_set_new(mmsg, "content", json_string(PX_MARK_RAW));
	meta_s = json_dumps(meta, JSON_COMPACT);
	if (!meta_s)
		goto out;
	if (json_is_string(content)) {
		const char *m = strstr(meta_s, PX_MARK_JSON);

		if (!m || strstr(m + 1, PX_MARK_JSON)) {
			/* the answer itself holds the mark string: a hit could not
			 * tell where the content goes, so this one is not stored */
			px_log("answer not stored: it contains the proxy's content mark");
			rc = -EINVAL;
			goto out;
		}
	}
	json_array_foreach(tcs, i, tc) {
		const json_t *fn = json_object_get(tc, "function");

		if (ncalls == sizeof calls / sizeof calls[0])
			break;
		calls[ncalls].id = json_string_value(json_object_get(tc, "id"));
		calls[ncalls].name = json_string_value(json_object_get(fn, "name"));
		calls[ncalls].arguments = json_string_value(json_object_get(fn, "arguments"));
		ncalls++;
	}
	r.content = json_is_string(content) ? json_string_value(content) : "";
	r.model = json_is_string(json_object_get(completion, "model")) ?
	                  json_string_value(json_object_get(completion, "model")) :
	                  json_string_value(json_object_get(q->body, "model"));
	r.prompt_tokens = usage_of(completion, "prompt_tokens");
	r.completion_tokens = usage_of(completion, "completion_tokens");
	r.tool_calls = ncalls ? calls : NULL;
	r.n_tool_calls = (uint32_t)ncalls;
	r.latency_ms = seconds * 1000 > UINT32_MAX ? UINT32_MAX : (uint32_t)(seconds * 1000);
	r.finish_reason = json_string_value(json_object_get(ch, "finish_reason"));
	r.metadata = meta_s;
	if ((rc = px_canon_scope(&q->canon)) < 0) {
		px_log("not stored: cannot build the semantic scope: %s", strerror(-rc));
		goto out;
	}
	a.ns = q->ns;
	a.key = q->canon.key;
	a.scope = q->canon.scope;
	a.response = &r;
	if (q->vec && q->vec_dim == q->w->dim) {
		a.embedding = q->vec;
		a.embedding_dim = q->vec_dim;
	}
	a.exact_ttl_ms = q->ttl_ms ? q->ttl_ms : cfg->exact_ttl_s * 1000;
	a.semantic_ttl_ms = q->ttl_ms ? q->ttl_ms : cfg->semantic_ttl_s * 1000;
	rc = semcache_put(q->w->cache, &a);
	if (rc)
		px_log("answer not stored: %s", semcache_strerror(rc));
out:
	if (rc)
		atomic_fetch_add_explicit(&q->w->metrics->store_failures, 1, memory_order_relaxed);
	free(meta_s);
	json_decref(meta);
}

/* ------------------------------------------------------------------------
 * Hits
 * ---------------------------------------------------------------------- */
/* JSON string of s (valid UTF-8: it came through jansson) into b. */
static int json_escape(px_buf *b, const char *s)
{
	int rc = px_buf_append(b, "\"", 1);
	const char *run = s;

	for (; !rc && *s; s++) {
		unsigned char ch = (unsigned char)*s;
		char esc[8];

		if (ch >= 0x20 && ch != '"' && ch != '\\')
			continue;
		rc = px_buf_append(b, run, (size_t)(s - run));
		if (!rc && (ch == '"' || ch == '\\')) {
			esc[0] = '\\';
			esc[1] = (char)ch;
			rc = px_buf_append(b, esc, 2);
		} else if (!rc) {
			snprintf(esc, sizeof esc, "\\u%04x", ch);
			rc = px_buf_append(b, esc, 6);
		}
		run = s + 1;
	}
	if (!rc)
		rc = px_buf_append(b, run, (size_t)(s - run));
	if (!rc)
		rc = px_buf_append(b, "\"", 1);
	return rc;
}

/* The stored completion's text with the content spliced in at the mark, or
 * NULL when the record has no (single) mark: then the caller parses. */
static char *splice_content(const semcache_response *r, size_t *len)
{
	const char *m = r->metadata ? strstr(r->metadata, PX_MARK_JSON) : NULL;
	px_buf b = {0};
	char *out;

	if (!m || strstr(m + 1, PX_MARK_JSON))
		return NULL;
	if (px_buf_append(&b, r->metadata, (size_t)(m - r->metadata)) ||
	    json_escape(&b, r->content) || px_buf_puts(&b, m + strlen(PX_MARK_JSON))) {
		px_buf_free(&b);
		return NULL;
	}
	out = px_buf_take(&b, len);
	return out;
}

static void count_saved(chat *q, const semcache_response *r)
{
	atomic_fetch_add_explicit(&q->w->metrics->saved_tokens,
	                          (uint64_t)r->prompt_tokens + r->completion_tokens,
	                          memory_order_relaxed);
	atomic_fetch_add_explicit(&q->w->metrics->saved_ms, r->latency_ms, memory_order_relaxed);
}

static enum MHD_Result send_hit(chat *q, semcache_response *r, float sim)
{
	json_t *c = NULL;
	char simb[32], tok[32], ms[32];
	const char *hdrs[] = {
		"X-Semcache", px_kind_name(q->kind), "X-Semcache-Similarity",
		q->kind == PX_HIT_SEMANTIC ? simb : NULL, "X-Semcache-Saved-Tokens", tok,
		"X-Semcache-Saved-Ms", ms, "X-Semcache-Key", q->canon.key,
		"Cache-Control", q->canon.stream ? "no-cache" : NULL, NULL,
	};
	px_buf b = {0};
	char *s;
	size_t len;
	enum MHD_Result ret;

	snprintf(simb, sizeof simb, "%.4f", sim);
	snprintf(tok, sizeof tok, "%" PRIu64,
	         (uint64_t)r->prompt_tokens + r->completion_tokens);
	snprintf(ms, sizeof ms, "%" PRIu32, r->latency_ms);
	if (!q->canon.stream && (s = splice_content(r, &len))) {
		count_saved(q, r);
		return send_buf(q->w, q->conn, 200, "application/json", s, len, hdrs);
	}
	c = record_to_completion(r);
	if (!c)
		return send_error(q->w, q->conn, 500, "server_error", "internal_error", NULL,
		                  "cannot rebuild the cached answer");
	count_saved(q, r);
	if (q->canon.stream) {
		if (px_sse_replay(c, q->canon.include_usage, &b)) {
			px_buf_free(&b);
			json_decref(c);
			return send_error(q->w, q->conn, 500, "server_error", "internal_error", NULL,
			                  "cannot replay the cached answer");
		}
		json_decref(c);
		s = px_buf_take(&b, NULL);
		if (!s)
			return MHD_NO;
		return send_buf(q->w, q->conn, 200, "text/event-stream", s, strlen(s), hdrs);
	}
	s = json_dumps(c, JSON_COMPACT);
	json_decref(c);
	if (!s)
		return MHD_NO;
	ret = send_buf(q->w, q->conn, 200, "application/json", s, strlen(s), hdrs);
	return ret;
}

/* ------------------------------------------------------------------------
 * Upstream answers
 * ---------------------------------------------------------------------- */
static enum MHD_Result send_upstream_failure(chat *q, px_up_outcome o, const char *why)
{
	const char *hdrs[] = {"X-Semcache", px_kind_name(q->kind), NULL};

	atomic_fetch_add_explicit(&q->w->metrics->upstream_errors, 1, memory_order_relaxed);
	if (o == PX_UP_TIMEOUT)
		return send_error(q->w, q->conn, 504, "upstream_error", "upstream_timeout", hdrs,
		                  "the upstream did not answer in time: %s", why);
	return send_error(q->w, q->conn, 502, "upstream_error", "upstream_unavailable", hdrs,
	                  "the upstream is unavailable: %s", why);
}

/* Pass an upstream's error answer on: its own error object if it sent one. */
static enum MHD_Result send_upstream_error(chat *q, long status, const char *body, size_t len)
{
	const char *hdrs[] = {"X-Semcache", px_kind_name(q->kind), NULL};
	json_t *o = json_loadb(body ? body : "", len, 0, NULL);
	char *s = NULL;
	unsigned st = status >= 400 && status <= 599 ? (unsigned)status : 502;

	atomic_fetch_add_explicit(&q->w->metrics->upstream_errors, 1, memory_order_relaxed);
	if (json_is_object(json_object_get(o, "error")))
		s = json_dumps(o, JSON_COMPACT);
	json_decref(o);
	if (s)
		return send_buf(q->w, q->conn, st, "application/json", s, strlen(s), hdrs);
	return send_error(q->w, q->conn, st, "upstream_error", "upstream_error", hdrs,
	                  "the upstream answered HTTP %ld: %.200s", status,
	                  body ? body : "");
}

static enum MHD_Result forward_plain(chat *q)
{
	const char *hdrs[] = {"X-Semcache", px_kind_name(q->kind), "X-Semcache-Key",
	                      q->canon.cacheable ? q->canon.key : NULL, NULL};
	px_up_result r;
	json_t *c = NULL;
	enum MHD_Result ret;
	char *s;
	size_t len;

	if (px_up_post(q->w->cfg, "/chat/completions", q->fwd, q->fwd_len, q->auth, &r))
		return send_error(q->w, q->conn, 500, "server_error", "internal_error", NULL,
		                  "out of memory");
	if (r.outcome != PX_UP_OK) {
		ret = send_upstream_failure(q, r.outcome, r.error);
		goto out;
	}
	px_metrics_observe(&q->w->metrics->upstream_chat, r.seconds);
	if (r.status != 200) {
		ret = send_upstream_error(q, r.status, r.body.p, r.body.len);
		goto out;
	}
	c = json_loadb(r.body.p ? r.body.p : "", r.body.len, 0, NULL);
	if (!json_is_object(c)) {
		ret = send_upstream_failure(q, PX_UP_DOWN, "its answer is not a JSON object");
		goto out;
	}
	if (q->write)
		store(q, c, r.seconds);
	s = px_buf_take(&r.body, &len);
	ret = s ? send_buf(q->w, q->conn, 200, "application/json", s, len, hdrs) : MHD_NO;
out:
	json_decref(c);
	px_up_result_free(&r);
	return ret;
}

/* A streamed miss: bytes go to the client as they arrive, a copy to the
 * reassembler; the answer is stored when the stream completed.
 *
 * To store a streamed answer with its token counts, the proxy asks the
 * upstream for stream_options.include_usage even when the client did not;
 * then the one event the client did not ask for (the usage chunk: no
 * choices, a usage object) is held back.  The pass-through therefore works
 * on whole events when it strips (lines are gathered until the blank line
 * that ends an event) and on raw bytes otherwise. */
typedef struct stream_ctx {
	chat q;             /* owns what the request owned */
	px_up_stream *up;
	px_sse_acc *acc;
	bool strip_usage;   /* drop the usage chunk the client did not ask for */
	bool up_done, up_ok, finished;
	px_buf line, ev;    /* the current line and event (strip mode) */
	px_buf outq;        /* bytes for the client */
	size_t outq_off;
} stream_ctx;

static void chat_free(chat *q);

/* Is this event (raw lines) the usage-only chunk? */
static bool is_usage_event(const px_buf *ev)
{
	const char *p = ev->p ? strstr(ev->p, "data:") : NULL;
	json_t *o;
	bool r;

	if (!p)
		return false;
	p += 5;
	o = json_loads(p, JSON_DISABLE_EOF_CHECK, NULL);
	r = json_is_array(json_object_get(o, "choices")) &&
	    json_array_size(json_object_get(o, "choices")) == 0 &&
	    json_is_object(json_object_get(o, "usage"));
	json_decref(o);
	return r;
}

static int strip_feed(stream_ctx *s, const char *p, size_t n)
{
	int rc = 0;

	for (size_t i = 0; !rc && i < n; i++) {
		rc = px_buf_append(&s->line, p + i, 1);
		if (rc || p[i] != '\n')
			continue;
		rc = px_buf_append(&s->ev, s->line.p, s->line.len);
		if (!rc && (s->line.len == 1 || (s->line.len == 2 && s->line.p[0] == '\r'))) {
			if (!is_usage_event(&s->ev))
				rc = px_buf_append(&s->outq, s->ev.p, s->ev.len);
			s->ev.len = 0;
		}
		s->line.len = 0;
	}
	return rc;
}

static ssize_t stream_read(void *cls, uint64_t pos, char *buf, size_t max)
{
	stream_ctx *s = cls;
	char tmp[16384];
	ssize_t n;
	size_t k;
	json_t *c;

	(void)pos;
	while (s->outq_off == s->outq.len && !s->up_done) {
		s->outq.len = s->outq_off = 0;
		n = px_up_stream_read(s->up, tmp, sizeof tmp);
		if (n <= 0) {
			s->up_done = true;
			s->up_ok = n == 0 && px_up_stream_ok(s->up);
			if (s->strip_usage) { /* pass on an unterminated last event as it is */
				px_buf_append(&s->outq, s->ev.p ? s->ev.p : "", s->ev.len);
				px_buf_append(&s->outq, s->line.p ? s->line.p : "", s->line.len);
			}
			break;
		}
		if (s->acc)
			px_sse_acc_feed(s->acc, tmp, (size_t)n);
		if (s->strip_usage ? strip_feed(s, tmp, (size_t)n) :
		                     px_buf_append(&s->outq, tmp, (size_t)n)) {
			s->up_done = true; /* out of memory: end the stream, store nothing */
			break;
		}
	}
	if (s->outq_off < s->outq.len) {
		k = s->outq.len - s->outq_off;
		if (k > max)
			k = max;
		memcpy(buf, s->outq.p + s->outq_off, k);
		s->outq_off += k;
		return (ssize_t)k;
	}
	if (s->finished)
		return MHD_CONTENT_READER_END_OF_STREAM;
	s->finished = true;
	px_metrics_observe(&s->q.w->metrics->upstream_chat, px_up_stream_seconds(s->up));
	if (!s->up_ok) {
		atomic_fetch_add_explicit(&s->q.w->metrics->upstream_errors, 1,
		                          memory_order_relaxed);
		return MHD_CONTENT_READER_END_WITH_ERROR;
	}
	if (s->acc && (c = px_sse_acc_result(s->acc))) {
		store(&s->q, c, px_up_stream_seconds(s->up));
		json_decref(c);
	} else if (s->acc) {
		px_log("streamed answer not stored: incomplete or not reassemblable");
	}
	return MHD_CONTENT_READER_END_OF_STREAM;
}

static void stream_free(void *cls)
{
	stream_ctx *s = cls;

	px_up_stream_free(s->up);
	px_sse_acc_free(s->acc);
	px_buf_free(&s->line);
	px_buf_free(&s->ev);
	px_buf_free(&s->outq);
	chat_free(&s->q);
	free(s);
}

/* Re-serialise the forwarded body with stream_options.include_usage. */
static int ask_usage(chat *q)
{
	json_t *so = json_object_get(q->body, "stream_options");
	char *fwd;

	if (so && !json_is_object(so) && !json_is_null(so))
		return -EINVAL; /* the upstream will judge it; leave it alone */
	if (!json_is_object(so)) {
		so = json_object();
		if (!so || json_object_set_new(q->body, "stream_options", so))
			return -ENOMEM;
	}
	if (json_object_set_new(so, "include_usage", json_true()))
		return -ENOMEM;
	fwd = json_dumps(q->body, JSON_COMPACT);
	if (!fwd)
		return -ENOMEM;
	free(q->fwd);
	q->fwd = fwd;
	q->fwd_len = strlen(fwd);
	return 0;
}

static enum MHD_Result forward_stream(chat *q)
{
	stream_ctx *s = calloc(1, sizeof *s);
	struct MHD_Response *resp;
	const char *ctype;
	px_buf err = {0};
	long status;
	px_up_outcome o;
	enum MHD_Result ret;

	if (!s)
		return MHD_NO;
	s->q = *q; /* the context takes over the request's resources */
	memset(q, 0, sizeof *q);
	q = &s->q;
	if (q->write && !q->canon.include_usage && ask_usage(q) == 0)
		s->strip_usage = true;
	if (px_up_stream_start(q->w->cfg, "/chat/completions", q->fwd, q->fwd_len, q->auth,
	                       &s->up)) {
		ret = send_error(q->w, q->conn, 500, "server_error", "internal_error", NULL,
		                 "out of memory");
		goto fail;
	}
	o = px_up_stream_outcome(s->up, &status, &ctype);
	if (o != PX_UP_OK) {
		ret = send_upstream_failure(q, o, "connection failed or timed out");
		goto fail;
	}
	if (status != 200) {
		px_up_stream_drain(s->up, &err);
		ret = send_upstream_error(q, status, err.p, err.len);
		px_buf_free(&err);
		goto fail;
	}
	if (q->write && px_sse_acc_new(&s->acc))
		s->acc = NULL;
	resp = MHD_create_response_from_callback(MHD_SIZE_UNKNOWN, 16384, stream_read, s,
	                                         stream_free);
	if (!resp) {
		ret = MHD_NO;
		goto fail;
	}
	MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE,
	                        *ctype ? ctype : "text/event-stream");
	MHD_add_response_header(resp, "Cache-Control", "no-cache");
	MHD_add_response_header(resp, "X-Semcache", px_kind_name(q->kind));
	if (q->canon.cacheable)
		MHD_add_response_header(resp, "X-Semcache-Key", q->canon.key);
	ret = MHD_queue_response(q->conn, 200, resp);
	MHD_destroy_response(resp); /* stream_free runs when MHD is done with it */
	count_status(q->w, 200);
	return ret;
fail:
	stream_free(s);
	return ret;
}

/* ------------------------------------------------------------------------
 * The chat-completions call
 * ---------------------------------------------------------------------- */
static void chat_free(chat *q)
{
	json_decref(q->body);
	free(q->fwd);
	free(q->vec);
	px_canon_free(&q->canon);
	q->body = NULL;
	q->fwd = NULL;
	q->vec = NULL;
}

static void embed(chat *q)
{
	char err[256];
	double secs = 0;
	int rc;

	if (q->vec || !q->w->dim || !q->canon.embed_text || !q->w->cfg->embedding_model[0])
		return;
	rc = px_up_embed(q->w->cfg, q->canon.embed_text, q->auth, &q->vec, &q->vec_dim, &secs,
	                 err, sizeof err);
	if (rc) {
		px_log("no semantic lookup for this request: %s", err);
		return;
	}
	px_metrics_observe(&q->w->metrics->upstream_embed, secs);
	if (q->vec_dim != q->w->dim) {
		px_log("embedding model answered %u dimensions, the segment has %u: semantic "
		       "lookup skipped", q->vec_dim, q->w->dim);
		free(q->vec);
		q->vec = NULL;
	}
}

static enum MHD_Result handle_chat(px_worker_ctx *w, struct MHD_Connection *conn, px_conn *pc)
{
	const px_config *cfg = w->cfg;
	chat q = {.w = w, .conn = conn, .kind = PX_BYPASS};
	bool no_cache = false, no_store = false, bypass = false;
	const char *cc = hdr(conn, "Cache-Control"), *user = NULL, *v;
	char err[512];
	json_error_t jerr;
	semcache_response *r = NULL;
	float sim = 0;
	enum MHD_Result ret;
	int rc;

	if (pc->too_big) {
		ret = send_error(w, conn, 413, "invalid_request_error", "request_too_large", NULL,
		                 "the request body is larger than %" PRIu64 " bytes",
		                 cfg->max_body_bytes);
		goto out_count;
	}
	q.body = json_loadb(pc->body.p ? pc->body.p : "", pc->body.len, JSON_REJECT_DUPLICATES,
	                    &jerr);
	if (!q.body) {
		ret = send_error(w, conn, 400, "invalid_request_error", "invalid_json", NULL,
		                 "the request body is not valid JSON: %s (line %d, column %d)",
		                 jerr.text, jerr.line, jerr.column);
		goto out_count;
	}
	if (!json_is_object(q.body)) {
		ret = send_error(w, conn, 400, "invalid_request_error", "invalid_request", NULL,
		                 "the request body must be a JSON object");
		goto out_count;
	}
	/* per-call controls */
	if (take_cache_object(&q, &no_cache, &no_store, err, sizeof err)) {
		ret = send_error(w, conn, 400, "invalid_request_error", "invalid_cache_control",
		                 NULL, "%s", err);
		goto out_count;
	}
	if (has_token(cc, "no-cache"))
		no_cache = true;
	if (has_token(cc, "no-store"))
		no_store = true;
	if ((v = hdr(conn, "X-Semcache-TTL")) && !parse_ttl(v, &q.ttl_ms)) {
		ret = send_error(w, conn, 400, "invalid_request_error", "invalid_cache_control",
		                 NULL, "X-Semcache-TTL must be a whole number of seconds >= 1");
		goto out_count;
	}
	err[0] = '\0';
	rc = px_canon_request(q.body, pc->body.p ? pc->body.p : "", pc->body.len, false, &q.canon,
	                      err, sizeof err);
	if (rc == -EINVAL) {
		ret = send_error(w, conn, 400, "invalid_request_error", "invalid_request", NULL,
		                 "%s", err);
		goto out_count;
	}
	if (rc) {
		ret = send_error(w, conn, 500, "server_error", "internal_error", NULL,
		                 "cannot build the cache key: %s", strerror(-rc));
		goto out_count;
	}
	/* namespace: the configured header wins over the body's user field */
	if (cfg->user_header[0])
		user = hdr(conn, cfg->user_header);
	if (!user || !*user) {
		const json_t *u = json_object_get(q.body, "user");

		if (u && !json_is_string(u) && !json_is_null(u)) {
			ret = send_error(w, conn, 400, "invalid_request_error", "invalid_request", NULL,
			                 "'user' must be a string");
			goto out_count;
		}
		user = json_string_value(u);
	}
	if (px_canon_namespace(user, hdr(conn, "X-Semcache-ACL"), q.ns)) {
		ret = send_error(w, conn, 400, "invalid_request_error", "invalid_acl", NULL,
		                 "X-Semcache-ACL must be 1..128 letters, digits or ._:+/=-");
		goto out_count;
	}
	q.fwd = json_dumps(q.body, JSON_COMPACT);
	if (!q.fwd) {
		ret = send_error(w, conn, 500, "server_error", "internal_error", NULL,
		                 "out of memory");
		goto out_count;
	}
	q.fwd_len = strlen(q.fwd);
	q.auth = hdr(conn, "Authorization");

	/* policy */
	if (!q.canon.cacheable || kb_disabled(cfg, hdr(conn, "X-Semcache-KB")) ||
	    ((!user || !*user) && cfg->anonymous == PX_ANON_NOCACHE))
		bypass = true;
	q.read = !bypass && !no_cache;
	q.write = !bypass && !no_store;
	q.kind = q.read ? PX_MISS : PX_BYPASS;

	if (q.read) {
		rc = semcache_get(w->cache, q.ns, q.canon.key, 0, &r);
		if (rc == 0) {
			q.kind = PX_HIT_EXACT;
			ret = send_hit(&q, r, 1.0f);
			goto out_count;
		}
		if (rc != SEMCACHE_ENOTFOUND)
			px_log("exact lookup failed: %s", semcache_strerror(rc));
		embed(&q);
		if (q.vec && (rc = px_canon_scope(&q.canon)) < 0)
			px_log("cannot build the semantic scope: %s", strerror(-rc));
		if (q.vec && q.canon.have_scope) {
			rc = semcache_search(w->cache, q.ns, q.canon.scope, q.vec, q.vec_dim,
			                     (float)cfg->threshold, &r, &sim);
			if (rc == 0) {
				q.kind = PX_HIT_SEMANTIC;
				ret = send_hit(&q, r, sim);
				goto out_count;
			}
			if (rc != SEMCACHE_ENOTFOUND)
				px_log("semantic lookup failed: %s", semcache_strerror(rc));
		}
	} else if (q.write) {
		embed(&q);
	}
	atomic_fetch_add_explicit(&w->metrics->requests[q.kind], 1, memory_order_relaxed);
	if (q.canon.stream)
		return forward_stream(&q); /* takes q over */
	ret = forward_plain(&q);
	chat_free(&q);
	return ret;

out_count:
	if (q.kind == PX_BYPASS && !q.fwd)
		q.kind = PX_ERROR; /* rejected before any cache decision */
	atomic_fetch_add_explicit(&w->metrics->requests[q.kind], 1, memory_order_relaxed);
	semcache_response_free(r);
	chat_free(&q);
	return ret;
}

/* ------------------------------------------------------------------------
 * Health and metrics
 * ---------------------------------------------------------------------- */
static enum MHD_Result handle_health(px_worker_ctx *w, struct MHD_Connection *conn)
{
	semcache_stats st;
	char *s;
	int rc = semcache_stat(w->cache, &st);

	if (rc)
		return send_error(w, conn, 503, "server_error", "segment_unavailable", NULL,
		                  "cannot read the segment: %s", semcache_strerror(rc));
	if (asprintf(&s, "{\"status\":\"ok\",\"entries\":%" PRIu64 ",\"slots\":%u,\"dim\":%u}",
	             st.entries, st.slots, st.dim) < 0)
		return MHD_NO;
	return send_buf(w, conn, 200, "application/json", s, strlen(s), NULL);
}

static enum MHD_Result handle_metrics(px_worker_ctx *w, struct MHD_Connection *conn)
{
	px_buf b = {0};
	size_t len;
	char *s;

	if (px_metrics_render(w->metrics, w->cache, &b)) {
		px_buf_free(&b);
		return MHD_NO;
	}
	s = px_buf_take(&b, &len);
	if (!s)
		return MHD_NO;
	return send_buf(w, conn, 200, "text/plain; version=0.0.4", s, len, NULL);
}

/* ------------------------------------------------------------------------
 * MHD callbacks
 * ---------------------------------------------------------------------- */
enum MHD_Result px_http_handle(void *cls, struct MHD_Connection *conn, const char *url,
                               const char *method, const char *version,
                               const char *upload_data, size_t *upload_data_size,
                               void **con_cls)
{
	px_worker_ctx *w = cls;
	px_conn *pc = *con_cls;
	const char *len_s;

	(void)version;
	if (!pc) {
		pc = calloc(1, sizeof *pc);
		if (!pc)
			return MHD_NO;
		*con_cls = pc;
		atomic_fetch_add(&w->in_flight, 1);
		pc->body.max = w->cfg->max_body_bytes;
		if (!strcmp(url, "/v1/chat/completions") || !strcmp(url, "/chat/completions"))
			pc->route = R_CHAT;
		else if (!strcmp(url, "/health"))
			pc->route = R_HEALTH;
		else if (!strcmp(url, "/metrics"))
			pc->route = R_METRICS;
		else {
			pc->responded = true;
			return send_error(w, conn, 404, "invalid_request_error", "unknown_url", NULL,
			                  "unknown path %.200s", url);
		}
		if ((pc->route == R_CHAT) != !strcmp(method, "POST") ||
		    (pc->route != R_CHAT && strcmp(method, "GET") && strcmp(method, "HEAD"))) {
			pc->responded = true;
			return send_error(w, conn, 405, "invalid_request_error", "method_not_allowed",
			                  NULL, "%s does not take %.20s", url, method);
		}
		if (pc->route == R_CHAT && !is_json_ctype(hdr(conn, "Content-Type"))) {
			pc->responded = true;
			atomic_fetch_add_explicit(&w->metrics->requests[PX_ERROR], 1,
			                          memory_order_relaxed);
			return send_error(w, conn, 415, "invalid_request_error",
			                  "unsupported_media_type", NULL,
			                  "Content-Type must be application/json");
		}
		len_s = hdr(conn, "Content-Length");
		if (pc->route == R_CHAT && len_s && strtoull(len_s, NULL, 10) > pc->body.max) {
			pc->responded = true;
			atomic_fetch_add_explicit(&w->metrics->requests[PX_ERROR], 1,
			                          memory_order_relaxed);
			return send_error(w, conn, 413, "invalid_request_error", "request_too_large",
			                  NULL, "the request body is larger than %" PRIu64 " bytes",
			                  w->cfg->max_body_bytes);
		}
		return MHD_YES;
	}
	if (*upload_data_size) {
		if (!pc->responded && !pc->too_big &&
		    px_buf_append(&pc->body, upload_data, *upload_data_size))
			pc->too_big = true;
		*upload_data_size = 0;
		return MHD_YES;
	}
	if (pc->responded)
		return MHD_YES;
	pc->responded = true;
	switch (pc->route) {
	case R_CHAT:
		return handle_chat(w, conn, pc);
	case R_HEALTH:
		return handle_health(w, conn);
	case R_METRICS:
		return handle_metrics(w, conn);
	default:
		return MHD_NO;
	}
}

void px_http_completed(void *cls, struct MHD_Connection *conn, void **con_cls,
                       enum MHD_RequestTerminationCode toe)
{
	px_worker_ctx *w = cls;
	px_conn *pc = *con_cls;

	(void)conn;
	(void)toe;
	if (!pc)
		return;
	px_buf_free(&pc->body);
	free(pc);
	*con_cls = NULL;
	atomic_fetch_sub(&w->in_flight, 1);
}
