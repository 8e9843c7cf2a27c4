/*
 * sse.c - server-sent events, both ways.
 *
 * Replay: a cached answer is one chat.completion object; a client that asked
 * for stream: true gets it as the chunks an OpenAI server would send: a
 * first chunk with the role, the content in pieces of at most 48 bytes
 * (cut on UTF-8 character boundaries), one chunk per tool call, a last
 * chunk with the finish_reason, a usage chunk when the client asked for
 * stream_options.include_usage, then "data: [DONE]".
 *
 * Reassembly: on a miss the upstream's stream passes through to the client
 * untouched while a copy is fed here.  The parser follows the SSE framing
 * (lines; "data:" fields; an event ends at a blank line; CR LF or LF) and
 * folds the chunks of choice 0 back into one chat.completion: content and
 * refusal concatenated, tool calls merged by index (id and type set, name
 * and arguments concatenated), the finish_reason, and the usage if the
 * stream carried one.  The result exists only if the stream ended with
 * "[DONE]" after a finish_reason and every chunk was understood (valid
 * JSON, one choice, index 0, no logprobs): a stream cut short or one this
 * code cannot reproduce faithfully is never stored.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "proxy.h"

#define SSE_PIECE 48

/* ------------------------------------------------------------------------
 * Replay
 * ---------------------------------------------------------------------- */
static int emit(px_buf *out, json_t *chunk)
{
	char *s = chunk ? json_dumps(chunk, JSON_COMPACT) : NULL;
	int rc = -ENOMEM;

	if (s) {
		rc = px_buf_puts(out, "data: ");
		if (!rc)
			rc = px_buf_puts(out, s);
		if (!rc)
			rc = px_buf_puts(out, "\n\n");
	}
	free(s);
	json_decref(chunk);
	return rc;
}

/* A chunk with choice 0's delta (stolen) and finish_reason (or null). */
static json_t *chunk_of(const json_t *c, json_t *delta, const char *finish)
{
	json_t *ch = json_pack("{s:O?, s:s, s:O?, s:O?, s:[{s:i, s:o, s:n, s:o}]}",
	                       "id", json_object_get(c, "id"),
	                       "object", "chat.completion.chunk",
	                       "created", json_object_get(c, "created"),
	                       "model", json_object_get(c, "model"),
	                       "choices", "index", 0, "delta", delta, "logprobs",
	                       "finish_reason", finish ? json_string(finish) : json_null());
	const json_t *fp = json_object_get(c, "system_fingerprint");

	if (ch && fp)
		json_object_set(ch, "system_fingerprint", (json_t *)fp);
	return ch;
}

/* Length of the longest prefix of s[0..n) of at most max bytes that ends on
 * a UTF-8 character boundary (at least one character). */
static size_t utf8_cut(const char *s, size_t n, size_t max)
{
	size_t k;

	if (n <= max)
		return n;
	k = max;
	while (k > 0 && ((unsigned char)s[k] & 0xC0) == 0x80)
		k--;
	if (k == 0) { /* a character longer than max: take it whole */
		k = 1;
		while (k < n && ((unsigned char)s[k] & 0xC0) == 0x80)
			k++;
	}
	return k;
}

int px_sse_replay(const json_t *c, bool include_usage, px_buf *out)
{
	const json_t *choice = json_array_get(json_object_get(c, "choices"), 0);
	const json_t *msg = json_object_get(choice, "message");
	const json_t *content = json_object_get(msg, "content");
	const json_t *tcs = json_object_get(msg, "tool_calls");
	const json_t *refusal = json_object_get(msg, "refusal");
	const char *finish = json_string_value(json_object_get(choice, "finish_reason"));
	const json_t *tc;
	size_t i;
	int rc;

	if (!msg)
		return -EINVAL;
	rc = emit(out, chunk_of(c, json_pack("{s:s, s:o}", "role", "assistant", "content",
	                                     json_is_string(content) ? json_string("") :
	                                                               json_null()),
	                        NULL));
	if (json_is_string(content)) {
		const char *s = json_string_value(content);
		size_t n = json_string_length(content), off = 0;

		while (!rc && off < n) {
			size_t k = utf8_cut(s + off, n - off, SSE_PIECE);

			rc = emit(out, chunk_of(c, json_pack("{s:s%}", "content", s + off, k), NULL));
			off += k;
		}
	}
	if (!rc && json_is_string(refusal))
		rc = emit(out, chunk_of(c, json_pack("{s:O}", "refusal", refusal), NULL));
	json_array_foreach(tcs, i, tc) {
		json_t *d;

		if (rc)
			break;
		d = json_deep_copy(tc);
		if (!d) {
			rc = -ENOMEM;
			break;
		}
		json_object_set_new(d, "index", json_integer((json_int_t)i));
		rc = emit(out, chunk_of(c, json_pack("{s:[o]}", "tool_calls", d), NULL));
	}
	if (!rc)
		rc = emit(out, chunk_of(c, json_object(), finish ? finish : "stop"));
	if (!rc && include_usage && json_is_object(json_object_get(c, "usage"))) {
		json_t *u = chunk_of(c, json_object(), NULL);

		if (u) {
			json_object_set_new(u, "choices", json_array());
			json_object_set(u, "usage", json_object_get(c, "usage"));
		}
		rc = emit(out, u);
	}
	if (!rc)
		rc = px_buf_puts(out, "data: [DONE]\n\n");
	return rc;
}

/* ------------------------------------------------------------------------
 * Reassembly
 * ---------------------------------------------------------------------- */
struct px_sse_acc {
	px_buf line;        /* the current, incomplete line */
	px_buf data;        /* data fields of the current event */
	bool have_data;
	bool done, bad;
	json_t *head;       /* id, created, model, system_fingerprint of the first chunk */
	json_t *usage;
	json_t *tool_calls; /* array, by index */
	px_buf content, refusal;
	bool have_content, have_refusal;
	char finish[64];
};

int px_sse_acc_new(px_sse_acc **out)
{
	px_sse_acc *a = calloc(1, sizeof *a);

	*out = NULL;
	if (!a)
		return -ENOMEM;
	a->tool_calls = json_array();
	if (!a->tool_calls) {
		free(a);
		return -ENOMEM;
	}
	a->line.max = a->data.max = 16u << 20;
	*out = a;
	return 0;
}

static void append_str(json_t *obj, const char *field, const json_t *more)
{
	const json_t *old = json_object_get(obj, field);
	px_buf b = {0};

	if (!json_is_string(more))
		return;
	if (json_is_string(old))
		px_buf_append(&b, json_string_value(old), json_string_length(old));
	px_buf_append(&b, json_string_value(more), json_string_length(more));
	json_object_set_new(obj, field, json_stringn(b.p ? b.p : "", b.len));
	px_buf_free(&b);
}

static void merge_tool_call(px_sse_acc *a, const json_t *d)
{
	const json_t *idx = json_object_get(d, "index"), *fn = json_object_get(d, "function");
	json_t *tc, *tfn;
	json_int_t k;

	if (!json_is_integer(idx) || (k = json_integer_value(idx)) < 0 || k > 1023 ||
	    (size_t)k > json_array_size(a->tool_calls)) {
		a->bad = true;
		return;
	}
	if ((size_t)k == json_array_size(a->tool_calls))
		json_array_append_new(a->tool_calls,
		                      json_pack("{s:s, s:{}}", "type", "function", "function"));
	tc = json_array_get(a->tool_calls, (size_t)k);
	tfn = json_object_get(tc, "function");
	if (!tc || !tfn) {
		a->bad = true;
		return;
	}
	if (json_is_string(json_object_get(d, "id")))
		json_object_set(tc, "id", json_object_get(d, "id"));
	if (json_is_string(json_object_get(d, "type")))
		json_object_set(tc, "type", json_object_get(d, "type"));
	if (json_is_object(fn)) {
		append_str(tfn, "name", json_object_get(fn, "name"));
		append_str(tfn, "arguments", json_object_get(fn, "arguments"));
	}
}

static void on_event(px_sse_acc *a, const char *data, size_t n)
{
	json_t *ev, *choices, *ch, *delta, *tcs, *d;
	size_t i;

	if (a->done) { /* anything after [DONE] is not a stream we understand */
		a->bad = true;
		return;
	}
	if (n == 6 && !memcmp(data, "[DONE]", 6)) {
		a->done = true;
		return;
	}
	ev = json_loadb(data, n, JSON_REJECT_DUPLICATES, NULL);
	if (!json_is_object(ev)) {
		a->bad = true;
		goto out;
	}
	if (json_is_object(json_object_get(ev, "error"))) {
		a->bad = true;
		goto out;
	}
	if (!a->head) {
		a->head = json_object();
		if (!a->head) {
			a->bad = true;
			goto out;
		}
		for (const char *const *f = (const char *const[]){"id", "created", "model",
		                                                   "system_fingerprint", NULL};
		     *f; f++)
			if (json_object_get(ev, *f))
				json_object_set(a->head, *f, json_object_get(ev, *f));
	}
	if (json_is_object(json_object_get(ev, "usage"))) {
		json_decref(a->usage);
		a->usage = json_incref(json_object_get(ev, "usage"));
	}
	choices = json_object_get(ev, "choices");
	if (!json_is_array(choices) || json_array_size(choices) > 1) {
		a->bad = !json_is_array(choices) || json_array_size(choices) > 1;
		goto out;
	}
	ch = json_array_get(choices, 0);
	if (!ch)
		goto out; /* the usage chunk */
	if (!json_is_integer(json_object_get(ch, "index")) ||
	    json_integer_value(json_object_get(ch, "index")) != 0 ||
	    (json_object_get(ch, "logprobs") && !json_is_null(json_object_get(ch, "logprobs")))) {
		a->bad = true;
		goto out;
	}
	delta = json_object_get(ch, "delta");
	if (json_is_string(json_object_get(delta, "content"))) {
		const json_t *s = json_object_get(delta, "content");

		a->have_content = true;
		if (px_buf_append(&a->content, json_string_value(s), json_string_length(s)))
			a->bad = true;
	}
	if (json_is_string(json_object_get(delta, "refusal"))) {
		const json_t *s = json_object_get(delta, "refusal");

		a->have_refusal = true;
		if (px_buf_append(&a->refusal, json_string_value(s), json_string_length(s)))
			a->bad = true;
	}
	tcs = json_object_get(delta, "tool_calls");
	json_array_foreach(tcs, i, d)
		merge_tool_call(a, d);
	if (json_is_string(json_object_get(ch, "finish_reason")))
		snprintf(a->finish, sizeof a->finish, "%s",
		         json_string_value(json_object_get(ch, "finish_reason")));
out:
	json_decref(ev);
}

static void on_line(px_sse_acc *a, const char *l, size_t n)
{
	if (n == 0) { /* end of event */
		if (a->have_data)
			on_event(a, a->data.p ? a->data.p : "", a->data.len);
		a->data.len = 0;
		a->have_data = false;
		return;
	}
	if (n >= 5 && !memcmp(l, "data:", 5)) {
		l += 5;
		n -= 5;
		if (n && *l == ' ') {
			l++;
			n--;
		}
		if ((a->have_data && px_buf_append(&a->data, "\n", 1)) ||
		    px_buf_append(&a->data, l, n))
			a->bad = true;
		a->have_data = true;
	}
	/* other fields (event:, id:, retry:) and comments (":") carry nothing here */
}

int px_sse_acc_feed(px_sse_acc *a, const char *p, size_t n)
{
	for (size_t i = 0; i < n && !a->bad; i++) {
		if (p[i] == '\n') {
			size_t len = a->line.len;

			if (len && a->line.p[len - 1] == '\r')
				len--;
			on_line(a, a->line.p ? a->line.p : "", len);
			a->line.len = 0;
		} else if (px_buf_append(&a->line, p + i, 1)) {
			a->bad = true;
		}
	}
	return a->bad ? -EINVAL : 0;
}

json_t *px_sse_acc_result(px_sse_acc *a)
{
	json_t *msg, *c;

	if (a->bad || !a->done || !a->finish[0] || !a->head)
		return NULL;
	msg = json_pack("{s:s}", "role", "assistant");
	if (!msg)
		return NULL;
	if (a->have_content || !json_array_size(a->tool_calls))
		json_object_set_new(msg, "content",
		                    json_stringn(a->content.p ? a->content.p : "", a->content.len));
	else
		json_object_set_new(msg, "content", json_null());
	if (a->have_refusal)
		json_object_set_new(msg, "refusal",
		                    json_stringn(a->refusal.p ? a->refusal.p : "", a->refusal.len));
	if (json_array_size(a->tool_calls))
		json_object_set(msg, "tool_calls", a->tool_calls);
	c = json_deep_copy(a->head);
	if (!c) {
		json_decref(msg);
		return NULL;
	}
	json_object_set_new(c, "object", json_string("chat.completion"));
	json_object_set_new(c, "choices",
	                    json_pack("[{s:i, s:o, s:n, s:s}]", "index", 0, "message", msg,
	                              "logprobs", "finish_reason", a->finish));
	if (a->usage)
		json_object_set(c, "usage", a->usage);
	if (!json_object_get(c, "choices")) {
		json_decref(c);
		return NULL;
	}
	return c;
}

void px_sse_acc_free(px_sse_acc *a)
{
	if (!a)
		return;
	px_buf_free(&a->line);
	px_buf_free(&a->data);
	px_buf_free(&a->content);
	px_buf_free(&a->refusal);
	json_decref(a->head);
	json_decref(a->usage);
	json_decref(a->tool_calls);
	free(a);
}
