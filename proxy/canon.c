/*
 * canon.c - canonical JSON, the cache key, the semantic scope and the
 * namespace of a chat-completions request.
 *
 * Key.  Two requests may share an answer only if every field that can
 * change the answer is equal, so the key is the SHA-256 of the canonical
 * JSON of the whole body minus the few top-level fields that provably
 * cannot change it (px_canon_excluded: stream, stream_options, user,
 * metadata, store, and the proxy's own `cache` object).  Everything else,
 * including fields this proxy has never heard of, is part of the key: an
 * unknown field costs at most a hit, a wrongly ignored one serves a wrong
 * answer.  The key string is "<model>:<64 hex>" like semcache_request_key()
 * makes, so `semcache invalidate --prefix "<model>:"` drops one model.
 *
 * Canonical JSON: object keys sorted bytewise, no whitespace, strings with
 * only '"', '\\' and control characters escaped (as \u00XX, other bytes as
 * they are: jansson has checked the UTF-8), and numbers normalised so one
 * value has one spelling: integers exactly, a real with an integral value
 * below 2^53 in magnitude as that integer (1, 1.0 and 1e0 are one number),
 * -0 as 0, any other real in the shortest "%.*g" form that reads back to the
 * same double.  (A real of 2^53 or more keeps its exponent form, so it keys
 * apart from the equal integer: a lost hit, never a shared key for two
 * different numbers.)
 *
 * Scope.  A semantic hit answers a request whose last user message is
 * worded differently, so everything else must match: the scope is the model,
 * a hash of the canonical body with the text of the last user message
 * blanked and temperature removed, and a temperature bucket (unset, 0,
 * <= 0.5, <= 1, > 1).  So the system prompt, the whole earlier conversation,
 * tools, response_format, max_tokens, seed, ... all have to be equal.
 *
 * Embedding text: the text of the last message when its role is "user" (a
 * string, or its "text" parts joined by newlines).  A request that ends
 * with another role (a tool result, an assistant prefill) gets exact
 * lookups only.
 */
#include <errno.h>
#include <math.h>
#include <openssl/evp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "proxy.h"

#define PX_MODEL_MAX 127 /* semcache_request_key()'s limit, kept for the key format */

static const char *const excluded_fields[] = {
	"stream", "stream_options", "user", "metadata", "store", "cache", NULL,
};

bool px_canon_excluded(const char *field)
{
	for (const char *const *f = excluded_fields; *f; f++)
		if (!strcmp(*f, field))
			return true;
	return false;
}

/* ------------------------------------------------------------------------
 * Canonical JSON
 * ---------------------------------------------------------------------- */
static int canon_string(const char *s, size_t n, px_buf *out)
{
	int rc = px_buf_append(out, "\"", 1);
	size_t run = 0;

	for (size_t i = 0; !rc && i < n; i++) {
		unsigned char ch = (unsigned char)s[i];
		char esc[8];

		if (ch >= 0x20 && ch != '"' && ch != '\\')
			continue;
		rc = px_buf_append(out, s + run, i - run);
		if (rc)
			break;
		if (ch == '"' || ch == '\\') {
			esc[0] = '\\';
			esc[1] = (char)ch;
			rc = px_buf_append(out, esc, 2);
		} else {
			snprintf(esc, sizeof esc, "\\u%04x", ch);
			rc = px_buf_append(out, esc, 6);
		}
		run = i + 1;
	}
	if (!rc)
		rc = px_buf_append(out, s + run, n - run);
	if (!rc)
		rc = px_buf_append(out, "\"", 1);
	return rc;
}

static int canon_real(double d, px_buf *out)
{
	char tmp[40];

	if (!isfinite(d))
		return -EINVAL; /* jansson never yields one; refuse rather than guess */
	if (d == 0)
		return px_buf_append(out, "0", 1);
	if (d == floor(d) && fabs(d) < 9007199254740992.0)
		return px_buf_printf(out, "%lld", (long long)d);
	for (int prec = 1; prec <= 17; prec++) {
		snprintf(tmp, sizeof tmp, "%.*g", prec, d);
		if (strtod(tmp, NULL) == d)
			break;
	}
	return px_buf_puts(out, tmp);
}

static int key_cmp(const void *a, const void *b)
{
	return strcmp(*(const char *const *)a, *(const char *const *)b);
}

/* top_skip: at the top level leave out excluded fields (the key's rule). */
static int canon_value(const json_t *v, px_buf *out, bool top_skip)
{
	int rc = 0;

	switch (json_typeof(v)) {
	case JSON_OBJECT: {
		size_t n = json_object_size(v), k = 0;
		const char **keys = NULL;
		const char *name;
		json_t *val;

		if (n) {
			keys = malloc(n * sizeof *keys);
			if (!keys)
				return -ENOMEM;
		}
		json_object_foreach((json_t *)v, name, val) {
			if (top_skip && px_canon_excluded(name))
				continue;
			keys[k++] = name;
		}
		if (k > 1)
			qsort(keys, k, sizeof *keys, key_cmp);
		rc = px_buf_append(out, "{", 1);
		for (size_t i = 0; !rc && i < k; i++) {
			if (i)
				rc = px_buf_append(out, ",", 1);
			if (!rc)
				rc = canon_string(keys[i], strlen(keys[i]), out);
			if (!rc)
				rc = px_buf_append(out, ":", 1);
			if (!rc)
				rc = canon_value(json_object_get(v, keys[i]), out, false);
		}
		if (!rc)
			rc = px_buf_append(out, "}", 1);
		free(keys);
		return rc;
	}
	case JSON_ARRAY:
		rc = px_buf_append(out, "[", 1);
		for (size_t i = 0; !rc && i < json_array_size(v); i++) {
			if (i)
				rc = px_buf_append(out, ",", 1);
			if (!rc)
				rc = canon_value(json_array_get(v, i), out, false);
		}
		if (!rc)
			rc = px_buf_append(out, "]", 1);
		return rc;
	case JSON_STRING:
		return canon_string(json_string_value(v), json_string_length(v), out);
	case JSON_INTEGER:
		/* Exact, always: rounding through a double would give two distinct
		 * large integers one spelling (one key). */
		return px_buf_printf(out, "%lld", (long long)json_integer_value(v));
	case JSON_REAL:
		return canon_real(json_real_value(v), out);
	case JSON_TRUE:
		return px_buf_append(out, "true", 4);
	case JSON_FALSE:
		return px_buf_append(out, "false", 5);
	case JSON_NULL:
		return px_buf_append(out, "null", 4);
	}
	return -EINVAL;
}

int px_canon_json(const json_t *v, px_buf *out)
{
	if (!v)
		return -EINVAL;
	return canon_value(v, out, false);
}

int px_sha256_hex(const void *data, size_t n, char out[65])
{
	unsigned char md[32];
	unsigned int mdlen = 0;

	if (!EVP_Digest(data, n, md, &mdlen, EVP_sha256(), NULL) || mdlen != 32)
		return -ENOMEM;
	for (int i = 0; i < 32; i++)
		snprintf(out + 2 * i, 3, "%02x", md[i]);
	return 0;
}

/* ------------------------------------------------------------------------
 * Request
 * ---------------------------------------------------------------------- */
static const char *temp_bucket(const json_t *t)
{
	double d;

	if (!t)
		return "unset";
	if (!json_is_number(t))
		return "other";
	d = json_number_value(t);
	if (d == 0)
		return "0";
	if (d <= 0.5)
		return "le0.5";
	if (d <= 1)
		return "le1";
	return "gt1";
}

/* The last message's text if it is a user message, else NULL (no error). */
static int last_user_text(const json_t *msgs, char **out)
{
	const json_t *m = json_array_get(msgs, json_array_size(msgs) - 1);
	const json_t *content = json_object_get(m, "content");
	px_buf b = {0};
	int rc = 0;

	*out = NULL;
	if (!json_is_string(json_object_get(m, "role")) ||
	    strcmp(json_string_value(json_object_get(m, "role")), "user"))
		return 0;
	if (json_is_string(content)) {
		rc = px_buf_append(&b, json_string_value(content), json_string_length(content));
	} else if (json_is_array(content)) {
		size_t i;
		json_t *part;

		json_array_foreach(content, i, part) {
			const json_t *text = json_object_get(part, "text");

			if (!json_is_string(json_object_get(part, "type")) ||
			    strcmp(json_string_value(json_object_get(part, "type")), "text") ||
			    !json_is_string(text))
				continue;
			if (b.len)
				rc = px_buf_append(&b, "\n", 1);
			if (!rc)
				rc = px_buf_append(&b, json_string_value(text), json_string_length(text));
			if (rc)
				break;
		}
	}
	if (!rc && b.len && !memchr(b.p, '\0', b.len))
		*out = px_buf_take(&b, NULL);
	px_buf_free(&b);
	return rc;
}

/* Blank the last user message's text in a copy of the body (for the scope). */
static void blank_last_user_text(json_t *body)
{
	json_t *msgs = json_object_get(body, "messages");
	json_t *m = json_array_get(msgs, json_array_size(msgs) - 1);
	json_t *content = json_object_get(m, "content");

	if (!json_is_string(json_object_get(m, "role")) ||
	    strcmp(json_string_value(json_object_get(m, "role")), "user"))
		return;
	if (json_is_string(content)) {
		json_object_set_new(m, "content", json_null());
	} else if (json_is_array(content)) {
		size_t i;
		json_t *part;

		json_array_foreach(content, i, part)
			if (json_is_string(json_object_get(part, "type")) &&
			    !strcmp(json_string_value(json_object_get(part, "type")), "text"))
				json_object_set_new(part, "text", json_null());
	}
}

static int hash_canonical(const json_t *v, bool top_skip, char hex[65])
{
	px_buf b = {0};
	int rc = canon_value(v, &b, top_skip);

	if (!rc)
		rc = px_sha256_hex(b.p, b.len, hex);
	px_buf_free(&b);
	return rc;
}

int px_canon_request(const json_t *body, px_canon *out, char *err, size_t errlen)
{
	const json_t *model, *msgs, *stream, *n;
	json_t *copy = NULL;
	char hex[65], shex[65];
	size_t i;
	json_t *m;
	int rc = -EINVAL;

	memset(out, 0, sizeof *out);
	if (!json_is_object(body)) {
		snprintf(err, errlen, "the request body must be a JSON object");
		goto out;
	}
	model = json_object_get(body, "model");
	msgs = json_object_get(body, "messages");
	if (!json_is_string(model) || !json_string_length(model)) {
		snprintf(err, errlen, "'model' must be a non-empty string");
		goto out;
	}
	if (!json_is_array(msgs) || !json_array_size(msgs)) {
		snprintf(err, errlen, "'messages' must be a non-empty array");
		goto out;
	}
	json_array_foreach(msgs, i, m) {
		if (!json_is_object(m) || !json_is_string(json_object_get(m, "role"))) {
			snprintf(err, errlen, "messages[%zu] must be an object with a string 'role'", i);
			goto out;
		}
	}
	stream = json_object_get(body, "stream");
	if (stream && !json_is_boolean(stream) && !json_is_null(stream)) {
		snprintf(err, errlen, "'stream' must be a boolean");
		goto out;
	}
	out->stream = json_is_true(stream);
	out->include_usage = json_is_true(
		json_object_get(json_object_get(body, "stream_options"), "include_usage"));
	out->cacheable = true;
	n = json_object_get(body, "n");
	if (n && !(json_is_integer(n) && json_integer_value(n) == 1) && !json_is_null(n)) {
		out->cacheable = false;
		out->reason = "n is not 1";
	}
	if (json_string_length(model) > PX_MODEL_MAX ||
	    memchr(json_string_value(model), '\0', json_string_length(model))) {
		out->cacheable = false;
		out->reason = "model name longer than 127 bytes";
	}
	if (!out->cacheable) {
		rc = 0;
		goto out;
	}

	rc = hash_canonical(body, true, hex);
	if (rc)
		goto out;
	snprintf(out->key, sizeof out->key, "%s:%s", json_string_value(model), hex);

	rc = -ENOMEM;
	copy = json_deep_copy(body);
	if (!copy)
		goto out;
	for (const char *const *f = excluded_fields; *f; f++)
		json_object_del(copy, *f);
	json_object_del(copy, "temperature");
	blank_last_user_text(copy);
	rc = hash_canonical(copy, false, shex);
	if (rc)
		goto out;
	shex[32] = '\0';
	snprintf(out->scope, sizeof out->scope, "%s|%s|t=%s", json_string_value(model), shex,
	         temp_bucket(json_object_get(body, "temperature")));
	rc = last_user_text(msgs, &out->embed_text);
out:
	json_decref(copy);
	if (rc)
		px_canon_free(out);
	return rc;
}

void px_canon_free(px_canon *c)
{
	free(c->embed_text);
	c->embed_text = NULL;
}

/* ------------------------------------------------------------------------
 * Namespace
 * ---------------------------------------------------------------------- */
static bool plain_token(const char *s, size_t max, const char *extra)
{
	size_t n = 0;

	for (; s[n]; n++) {
		unsigned char ch = (unsigned char)s[n];

		if (n >= max)
			return false;
		if (!((ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') ||
		      (ch >= '0' && ch <= '9') || strchr(extra, ch)))
			return false;
	}
	return n > 0;
}

/*
 * "shared" without a user; "user:<id>" when the id is a plain token
 * (letters, digits, "._@+-", at most 128 bytes), else "userhash:<sha256>"
 * so any bytes are safe and the two forms cannot collide.  With an ACL hash
 * "|acl:<acl>" follows; the ACL must be a plain token (at most 128 bytes of
 * letters, digits, "._:+/=-") so it cannot contain the separator.
 */
int px_canon_namespace(const char *user, const char *acl, char ns[PX_NS_LEN])
{
	char hex[65];
	int rc, n;

	if (acl && *acl && !plain_token(acl, 128, "._:+/=-"))
		return -EINVAL;
	if (!user || !*user) {
		n = snprintf(ns, PX_NS_LEN, "shared");
	} else if (plain_token(user, 128, "._@+-")) {
		n = snprintf(ns, PX_NS_LEN, "user:%s", user);
	} else {
		rc = px_sha256_hex(user, strlen(user), hex);
		if (rc)
			return rc;
		n = snprintf(ns, PX_NS_LEN, "userhash:%s", hex);
	}
	if (acl && *acl)
		n += snprintf(ns + n, PX_NS_LEN - (size_t)n, "|acl:%s", acl);
	return n < PX_NS_LEN ? 0 : -ENAMETOOLONG;
}
