/*
 * request_json.c - the cache key and semantic scope of an OpenAI-style
 * chat-completions request, from its JSON body (semcache_request_key_json).
 *
 * Key.  Two requests may share an answer only if every field that can
 * change the answer is equal, so the key is the SHA-256 of the canonical
 * JSON of the whole body minus the few top-level fields that provably
 * cannot change it (stream, stream_options, user, metadata, store, and the
 * LiteLLM-style `cache` control object).  Everything else - every message
 * with all its parts, name, tool_calls and tool_call_id, tools,
 * tool_choice, response_format, temperature, top_p, seed, stop, n,
 * max_tokens, max_completion_tokens, penalties, logit_bias, logprobs, and
 * fields not yet invented - is part of the key: an unknown field costs at
 * most a hit, a wrongly ignored one serves a wrong answer.  The key string
 * is "<model>:<64 hex>" like semcache_request_key() makes, so
 * invalidate(ns, "<model>:") drops one model.
 *
 * Canonical JSON: object keys sorted bytewise, no whitespace, strings with
 * only '"', '\\' and control characters escaped (as \u00XX; jansson has
 * checked the UTF-8), and numbers normalised so one value has one
 * spelling: integers exactly, a real with an integral value below 2^53 in
 * magnitude as that integer (1, 1.0 and 1e0 are one number), -0 as 0, any
 * other real in the shortest "%.*g" form that reads back to the same
 * double.  (A real of 2^53 or more keeps its exponent form, so it keys
 * apart from the equal integer: a lost hit, never a shared key for two
 * different numbers.)
 *
 * Scope.  A semantic hit answers a request whose last user message is
 * worded differently, so everything else must match: the scope is the
 * model, a hash of the canonical body with the text of the last user
 * message blanked and temperature removed, and a temperature bucket (unset,
 * 0, <= 0.5, <= 1, > 1).  So the system prompt, the earlier conversation,
 * tools, response_format, max_tokens, seed, ... all have to be equal.
 *
 * The body is untrusted: jansson parses it with duplicate keys refused and
 * a nesting limit; the canonical form is built in memory proportional to
 * the input.
 */
#include <errno.h>
#include <jansson.h>
#include <math.h>
#include <openssl/evp.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"

#define MODEL_MAX 127

static const char *const excluded_fields[] = {
	"stream", "stream_options", "user", "metadata", "store", "cache", NULL,
};

static bool excluded(const char *field)
{
	for (const char *const *f = excluded_fields; *f; f++)
		if (!strcmp(*f, field))
			return true;
	return false;
}

/* ------------------------------------------------------------------------
 * A growable buffer
 * ---------------------------------------------------------------------- */
struct cbuf {
	char *p;
	size_t len, cap;
};

static int put(struct cbuf *b, const void *data, size_t n)
{
	if (b->cap - b->len < n + 1) {
		size_t cap = b->cap ? b->cap : 256;
		while (cap - b->len < n + 1) {
			if (cap > SIZE_MAX / 2)
				return -ENOMEM;
			cap *= 2;
		}
		char *p = realloc(b->p, cap);
		if (!p)
			return -ENOMEM;
		b->p = p;
		b->cap = cap;
	}
	memcpy(b->p + b->len, data, n);
	b->len += n;
	b->p[b->len] = '\0';
	return 0;
}

static int puts_(struct cbuf *b, const char *s) { return put(b, s, strlen(s)); }

/* ------------------------------------------------------------------------
 * Canonical JSON
 * ---------------------------------------------------------------------- */
static int canon_string(const char *s, size_t n, struct cbuf *out)
{
	int rc = put(out, "\"", 1);
	size_t run = 0;
	for (size_t i = 0; !rc && i < n; i++) {
		unsigned char ch = (unsigned char)s[i];
		char esc[8];
		if (ch >= 0x20 && ch != '"' && ch != '\\')
			continue;
		rc = put(out, s + run, i - run);
		if (rc)
			break;
		if (ch == '"' || ch == '\\') {
			esc[0] = '\\';
			esc[1] = (char)ch;
			rc = put(out, esc, 2);
		} else {
			snprintf(esc, sizeof esc, "\\u%04x", ch);
			rc = put(out, esc, 6);
		}
		run = i + 1;
	}
	if (!rc)
		rc = put(out, s + run, n - run);
	if (!rc)
		rc = put(out, "\"", 1);
	return rc;
}

static int canon_real(double d, struct cbuf *out)
{
	char tmp[40];
	if (!isfinite(d))
		return -EINVAL; /* jansson never yields one; refuse rather than guess */
	if (d == 0)
		return put(out, "0", 1);
	if (d == floor(d) && fabs(d) < 9007199254740992.0) {
		snprintf(tmp, sizeof tmp, "%lld", (long long)d);
		return puts_(out, tmp);
	}
	for (int prec = 1; prec <= 17; prec++) {
		snprintf(tmp, sizeof tmp, "%.*g", prec, d);
		if (strtod(tmp, NULL) == d)
			break;
	}
	return puts_(out, tmp);
}

static int key_cmp(const void *a, const void *b)
{
	return strcmp(*(const char *const *)a, *(const char *const *)b);
}

/* top_skip: at the top level leave out the excluded fields (the key's rule). */
static int canon_value(const json_t *v, struct cbuf *out, bool top_skip)
{
	int rc = 0;
	switch (json_typeof(v)) {
	case JSON_OBJECT: {
		size_t n = json_object_size(v), k = 0;
		const char **keys = NULL;
		const char *name;
		json_t *val;
		if (n && !(keys = malloc(n * sizeof *keys)))
			return -ENOMEM;
		json_object_foreach((json_t *)v, name, val) {
			if (!(top_skip && excluded(name)))
				keys[k++] = name;
		}
		if (k > 1)
			qsort(keys, k, sizeof *keys, key_cmp);
		rc = put(out, "{", 1);
		for (size_t i = 0; !rc && i < k; i++) {
			if (i)
				rc = put(out, ",", 1);
			if (!rc)
				rc = canon_string(keys[i], strlen(keys[i]), out);
			if (!rc)
				rc = put(out, ":", 1);
			if (!rc)
				rc = canon_value(json_object_get(v, keys[i]), out, false);
		}
		if (!rc)
			rc = put(out, "}", 1);
		free(keys);
		return rc;
	}
	case JSON_ARRAY:
		rc = put(out, "[", 1);
		for (size_t i = 0; !rc && i < json_array_size(v); i++) {
			if (i)
				rc = put(out, ",", 1);
			if (!rc)
				rc = canon_value(json_array_get(v, i), out, false);
		}
		if (!rc)
			rc = put(out, "]", 1);
		return rc;
	case JSON_STRING:
		return canon_string(json_string_value(v), json_string_length(v), out);
	case JSON_INTEGER: {
		/* Exact, always: rounding through a double would give two
		 * distinct large integers one spelling (one key). */
		char tmp[32];
		snprintf(tmp, sizeof tmp, "%lld", (long long)json_integer_value(v));
		return puts_(out, tmp);
	}
	case JSON_REAL:
		return canon_real(json_real_value(v), out);
	case JSON_TRUE:
		return put(out, "true", 4);
	case JSON_FALSE:
		return put(out, "false", 5);
	case JSON_NULL:
		return put(out, "null", 4);
	}
	return -EINVAL;
}

int sc_canon_json(const void *json_value, char **out, size_t *len)
{
	struct cbuf b = { 0 };
	int rc = json_value ? canon_value(json_value, &b, false) : -EINVAL;
	if (rc == 0 && !b.p)
		rc = put(&b, "", 0);
	if (rc) {
		free(b.p);
		return rc;
	}
	*out = b.p;
	*len = b.len;
	return 0;
}

static int hash_canonical(const json_t *v, bool top_skip, char hex[65])
{
	struct cbuf b = { 0 };
	unsigned char md[32];
	unsigned int mdlen = 0;
	int rc = canon_value(v, &b, top_skip);
	if (!rc && (!EVP_Digest(b.p ? b.p : "", b.len, md, &mdlen, EVP_sha256(), NULL) ||
	            mdlen != 32))
		rc = -ENOMEM;
	if (!rc)
		sc_hex(md, 32, hex);
	free(b.p);
	return rc;
}

/* ------------------------------------------------------------------------
 * Key and scope
 * ---------------------------------------------------------------------- */
static const char *temp_bucket(const json_t *t)
{
	if (!t)
		return "unset";
	if (!json_is_number(t))
		return "other";
	double d = json_number_value(t);
	if (d == 0)
		return "0";
	if (d <= 0.5)
		return "le0.5";
	if (d <= 1)
		return "le1";
	return "gt1";
}

/* Blank the last message's text in a copy of the body when it is a user
 * message: a paraphrase may differ there and nowhere else. */
static void blank_last_user_text(json_t *body)
{
	json_t *msgs = json_object_get(body, "messages");
	json_t *m = json_array_get(msgs, json_array_size(msgs) - 1);
	json_t *content = json_object_get(m, "content");
	const char *role = json_string_value(json_object_get(m, "role"));
	if (!role || strcmp(role, "user"))
		return;
	if (json_is_string(content)) {
		json_object_set_new(m, "content", json_null());
	} else if (json_is_array(content)) {
		size_t i;
		json_t *part;
		json_array_foreach(content, i, part) {
			const char *type = json_string_value(json_object_get(part, "type"));
			if (type && !strcmp(type, "text"))
				json_object_set_new(part, "text", json_null());
		}
	}
}

int semcache_request_key_json(const char *body, size_t len, char key[SEMCACHE_KEY_LEN],
                              char *scope, size_t scope_len)
{
	json_t *v = NULL, *copy = NULL;
	char hex[65], shex[65];
	int rc = -EINVAL;

	if (!body || !key || (scope_len && !scope))
		return -EINVAL;
	v = json_loadb(body, len, JSON_REJECT_DUPLICATES, NULL);
	if (!json_is_object(v))
		goto out;
	const json_t *model = json_object_get(v, "model"), *msgs = json_object_get(v, "messages");
	if (!json_is_string(model) || !json_string_length(model) ||
	    json_string_length(model) > MODEL_MAX ||
	    memchr(json_string_value(model), '\0', json_string_length(model)))
		goto out;
	if (!json_is_array(msgs) || !json_array_size(msgs))
		goto out;
	size_t i;
	json_t *m;
	json_array_foreach(msgs, i, m) {
		if (!json_is_object(m) || !json_is_string(json_object_get(m, "role")))
			goto out;
	}
	if ((rc = hash_canonical(v, true, hex)) < 0)
		goto out;
	snprintf(key, SEMCACHE_KEY_LEN, "%s:%s", json_string_value(model), hex);
	if (scope_len) {
		rc = -ENOMEM;
		if (!(copy = json_deep_copy(v)))
			goto out;
		for (const char *const *f = excluded_fields; *f; f++)
			json_object_del(copy, *f);
		json_object_del(copy, "temperature");
		blank_last_user_text(copy);
		if ((rc = hash_canonical(copy, false, shex)) < 0)
			goto out;
		shex[32] = '\0';
		int n = snprintf(scope, scope_len, "%s|%s|t=%s", json_string_value(model), shex,
		                 temp_bucket(json_object_get(v, "temperature")));
		rc = n < 0 || (size_t)n >= scope_len ? -ENAMETOOLONG : 0;
	}
out:
	json_decref(copy);
	json_decref(v);
	return rc;
}
