/*
 * canon.c - the cache key, the semantic scope and the namespace of a
 * chat-completions request, and the text whose embedding is looked up.
 *
 * Key and scope are the library's (semcache_request_key_json(), documented
 * in include/semcache.h and core/request_json.c): the SHA-256 of the
 * canonical JSON of every answer-changing field, and the model, a hash of
 * everything but the last user message's wording, and a temperature
 * bucket.  One rule serves the proxy and every other client of the library.
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

int px_canon_request(const json_t *body, const char *raw, size_t raw_len, bool want_scope,
                     px_canon *out, char *err, size_t errlen)
{
	const json_t *model, *msgs, *stream, *n;
	char *text = NULL;
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

	/* Key and scope come from the library, which every other client of
	 * semcache can call too (semcache_request_key_json): one rule for what
	 * is part of the key. */
	if (!raw) {
		rc = -ENOMEM;
		text = json_dumps(body, JSON_COMPACT);
		if (!text)
			goto out;
		raw = text;
		raw_len = strlen(text);
	} else {
		/* kept for px_canon_scope(): the caller's buffer outlives *out */
		out->raw = raw;
		out->raw_len = raw_len;
	}
	rc = semcache_request_key_json(raw, raw_len, out->key, want_scope ? out->scope : NULL,
	                               want_scope ? sizeof out->scope : 0);
	out->have_scope = want_scope && rc == 0;
	if (rc == -EINVAL)
		snprintf(err, errlen, "the request body cannot be keyed");
	if (rc)
		goto out;
	rc = last_user_text(msgs, &out->embed_text);
out:
	free(text);
	if (rc)
		px_canon_free(out);
	return rc;
}

int px_canon_scope(px_canon *c)
{
	char key[SEMCACHE_KEY_LEN];
	int rc;
	if (c->have_scope)
		return 0;
	if (!c->raw)
		return -EINVAL;
	rc = semcache_request_key_json(c->raw, c->raw_len, key, c->scope, sizeof c->scope);
	c->have_scope = rc == 0;
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
