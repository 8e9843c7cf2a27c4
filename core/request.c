/*
 * request.c - exact keys and semantic scopes built from an LLM request.
 *
 * The key is "<model>:" followed by the hex SHA-256 of a canonical encoding
 * of everything that can change the answer.  The encoding is a domain
 * string and then, in a fixed order, every field written so that a reader
 * could parse it back without ambiguity:
 *
 *   "semcache/request/v1\0"
 *   model              u64le length, bytes
 *   messages           u64le count, then per message:
 *                        role    u64le length, bytes
 *                        content u64le length, bytes
 *   temperature        u8 presence; if 1: u64le IEEE-754 bits (-0.0 as 0.0)
 *   max_tokens         u8 presence; if 1: u64le value
 *   tools              u8 presence; if 1: u64le length, bytes
 *   tool_choice        u8 presence; if 1: u64le length, bytes
 *
 * Because every variable-length field carries its length and every optional
 * one a presence byte, the encoding is injective: ["ab","c"] and ["a","bc"]
 * differ in their lengths, an unset temperature differs from 0.0 in its
 * presence byte, and an empty tools string differs from absent tools.  The
 * encoding is hashed as a stream, so the size of a request costs no memory.
 *
 * The scope is "m=<model>;t=<h(tools)>;c=<h(tool_choice)>;s=<h(system)>;
 * T=<bucket>", where h() is the first 16 hex digits (64 bits) of SHA-256 of
 * the text, or "-" when the field is absent; "system" is every message
 * whose role is "system" or "developer", length-prefixed in order (a system
 * prompt changes the answer as much as the model does, so a paraphrase
 * under another system prompt must not be answered); and the temperature
 * bucket is one of "0",
 * "le0.5", "le1", "gt1" or "-" (unset).  The model comes first and is not
 * escaped: everything after it has a fixed shape with no ';' in its values,
 * so reading from the right splits any scope back into its parts and two
 * different (model, tools, tool_choice, bucket) tuples never share a scope.
 * 64 bits of hash keep tool sets apart far beyond the number of distinct tool
 * sets any deployment has; a collision would only let two tool sets answer
 * each other's paraphrases, never break the exact key.
 *
 * Why here and not in the caller: every worker of every language binding
 * must build the same key for the same request, or the shared cache stops
 * being shared.  The namespace is deliberately absent: put/get/search mix it
 * into the digest and the scope tag, so one key string serves every tenant
 * without leaking between them.
 *
 * Errors are values: bad input is -EINVAL, a short scope buffer is
 * -ENAMETOOLONG, and a libcrypto failure (no SHA-256 provider, no memory)
 * is -ENOMEM.  Nothing is written to key or scope unless the call succeeds.
 */
#include <errno.h>
#include <math.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <openssl/evp.h>

#include "semcache.h"
#include "../shm/hash.h"

#define REQ_MODEL_MAX    127u   /* bytes; SEMCACHE_KEY_LEN leaves room for this */
#define REQ_MESSAGES_MAX 65536u
#define REQ_SCOPE_HASH   16u    /* hex digits of a tools/tool_choice hash */

static const char req_domain[] = "semcache/request/v1";

/* ------------------------------------------------------------------------
 * SHA-256.  Fetching the algorithm is a provider lookup under a lock; do it
 * once per process.  A failed fetch stays failed (req_md NULL -> -ENOMEM).
 * ---------------------------------------------------------------------- */
static pthread_once_t req_md_once = PTHREAD_ONCE_INIT;
static EVP_MD *req_md;

static void req_md_init(void) { req_md = EVP_MD_fetch(NULL, "SHA256", NULL); }

static const EVP_MD *req_sha256(void)
{
	(void)pthread_once(&req_md_once, req_md_init);
	return req_md;
}

/* ------------------------------------------------------------------------
 * Canonical encoding, streamed into a digest context.  Each helper returns
 * true on success so the caller can chain them and test once.
 * ---------------------------------------------------------------------- */
static bool put_bytes(EVP_MD_CTX *ctx, const void *p, size_t n)
{
	return n == 0 || EVP_DigestUpdate(ctx, p, n) == 1;
}

static bool put_u64(EVP_MD_CTX *ctx, uint64_t v)
{
	unsigned char b[8];

	for (int i = 0; i < 8; i++)
		b[i] = (unsigned char)(v >> (8 * i));
	return put_bytes(ctx, b, sizeof b);
}

static bool put_u8(EVP_MD_CTX *ctx, unsigned v)
{
	unsigned char b = (unsigned char)v;

	return put_bytes(ctx, &b, 1);
}

static bool put_str(EVP_MD_CTX *ctx, const char *s)
{
	size_t n = strlen(s);

	return put_u64(ctx, n) && put_bytes(ctx, s, n);
}

/* An optional string: presence byte, then the string if present. */
static bool put_opt_str(EVP_MD_CTX *ctx, const char *s)
{
	if (!s)
		return put_u8(ctx, 0);
	return put_u8(ctx, 1) && put_str(ctx, s);
}

static bool temperature_given(double t) { return !isnan(t); }

static uint64_t temperature_bits(double t)
{
	uint64_t bits;

	if (t == 0.0)
		t = 0.0; /* -0.0 compares equal to 0.0 and must encode the same */
	memcpy(&bits, &t, sizeof bits);
	return bits;
}

static const char *temperature_bucket(double t)
{
	if (!temperature_given(t))
		return "-";
	if (t == 0.0)
		return "0";
	if (t <= 0.5)
		return "le0.5";
	if (t <= 1.0)
		return "le1";
	return "gt1";
}

/* ------------------------------------------------------------------------
 * Validation: everything is checked before anything is hashed or written.
 * ---------------------------------------------------------------------- */
static int request_check(const semcache_request *r)
{
	if (!r->model || strnlen(r->model, REQ_MODEL_MAX + 1) > REQ_MODEL_MAX)
		return -EINVAL;
	if (!r->messages || r->n_messages < 1 || r->n_messages > REQ_MESSAGES_MAX)
		return -EINVAL;
	for (size_t i = 0; i < r->n_messages; i++)
		if (!r->messages[i].role || !r->messages[i].content)
			return -EINVAL;
	/* NaN means "not given"; anything else must be a finite, non-negative
	 * temperature (-0.0 counts as 0). */
	if (temperature_given(r->temperature) &&
	    (isinf(r->temperature) || r->temperature < 0.0))
		return -EINVAL;
	/* Reserved words are for later versions: refuse what we cannot honour. */
	for (size_t i = 0; i < sizeof r->reserved_ / sizeof r->reserved_[0]; i++)
		if (r->reserved_[i])
			return -EINVAL;
	return 0;
}

/* ------------------------------------------------------------------------
 * The digest of the canonical encoding, as 64 hex digits.
 * ---------------------------------------------------------------------- */
static int request_digest(const EVP_MD *md, const semcache_request *r, char hex[65])
{
	unsigned char d[EVP_MAX_MD_SIZE];
	unsigned int dlen = 0;
	int rc = -ENOMEM;
	EVP_MD_CTX *ctx = EVP_MD_CTX_new();

	if (!ctx || EVP_DigestInit_ex2(ctx, md, NULL) != 1)
		goto out;

	bool ok = put_bytes(ctx, req_domain, sizeof req_domain) && /* with its NUL */
	          put_str(ctx, r->model) &&
	          put_u64(ctx, r->n_messages);
	for (size_t i = 0; ok && i < r->n_messages; i++)
		ok = put_str(ctx, r->messages[i].role) &&
		     put_str(ctx, r->messages[i].content);

	if (ok && temperature_given(r->temperature))
		ok = put_u8(ctx, 1) && put_u64(ctx, temperature_bits(r->temperature));
	else if (ok)
		ok = put_u8(ctx, 0);

	if (ok && r->max_tokens >= 0)
		ok = put_u8(ctx, 1) && put_u64(ctx, (uint64_t)r->max_tokens);
	else if (ok)
		ok = put_u8(ctx, 0);

	ok = ok && put_opt_str(ctx, r->tools) && put_opt_str(ctx, r->tool_choice);

	if (!ok || EVP_DigestFinal_ex(ctx, d, &dlen) != 1 || dlen != 32)
		goto out;
	sc_hex(d, 32, hex);
	rc = 0;
out:
	EVP_MD_CTX_free(ctx);
	return rc;
}

/* REQ_SCOPE_HASH hex digits of SHA-256(s), or "-" when s is absent. */
static int scope_hash(const EVP_MD *md, const char *s, char out[REQ_SCOPE_HASH + 1])
{
	unsigned char d[EVP_MAX_MD_SIZE];
	unsigned int dlen = 0;

	if (!s) {
		out[0] = '-';
		out[1] = '\0';
		return 0;
	}
	if (EVP_Digest(s, strlen(s), d, &dlen, md, NULL) != 1 || dlen < REQ_SCOPE_HASH / 2)
		return -ENOMEM;
	sc_hex(d, REQ_SCOPE_HASH / 2, out);
	return 0;
}

/* REQ_SCOPE_HASH hex digits over the system/developer messages, or "-". */
static int system_hash(const EVP_MD *md, const semcache_request *r, char out[REQ_SCOPE_HASH + 1])
{
	unsigned char d[EVP_MAX_MD_SIZE];
	unsigned int dlen = 0;
	bool any = false;
	int rc = -ENOMEM;
	EVP_MD_CTX *ctx = EVP_MD_CTX_new();

	if (!ctx || EVP_DigestInit_ex2(ctx, md, NULL) != 1)
		goto out;
	for (size_t i = 0; i < r->n_messages; i++) {
		const char *role = r->messages[i].role;
		if (strcmp(role, "system") != 0 && strcmp(role, "developer") != 0)
			continue;
		any = true;
		if (!put_str(ctx, role) || !put_str(ctx, r->messages[i].content))
			goto out;
	}
	if (!any) {
		out[0] = '-';
		out[1] = '\0';
		rc = 0;
		goto out;
	}
	if (EVP_DigestFinal_ex(ctx, d, &dlen) != 1 || dlen < REQ_SCOPE_HASH / 2)
		goto out;
	sc_hex(d, REQ_SCOPE_HASH / 2, out);
	rc = 0;
out:
	EVP_MD_CTX_free(ctx);
	return rc;
}

/* ------------------------------------------------------------------------
 * Public entry point
 * ---------------------------------------------------------------------- */
SEMCACHE_API int semcache_request_key(const semcache_request *r, char key[SEMCACHE_KEY_LEN],
                                      char *scope, size_t scope_len)
{
	char digest[65], th[REQ_SCOPE_HASH + 1], ch[REQ_SCOPE_HASH + 1], sh[REQ_SCOPE_HASH + 1];
	const EVP_MD *md;
	int rc, n;

	if (!r || !key || !scope)
		return -EINVAL;
	rc = request_check(r);
	if (rc < 0)
		return rc;

	/* Size the scope before any work, so a short buffer costs no hashing
	 * of a long conversation. */
	const char *bucket = temperature_bucket(r->temperature);
	bool has_system = false;
	for (size_t i = 0; i < r->n_messages; i++)
		has_system |= !strcmp(r->messages[i].role, "system") ||
		              !strcmp(r->messages[i].role, "developer");
	size_t need = strlen("m=;t=;c=;s=;T=") + strlen(r->model) +
	              (has_system ? REQ_SCOPE_HASH : 1) +
	              (r->tools ? REQ_SCOPE_HASH : 1) +
	              (r->tool_choice ? REQ_SCOPE_HASH : 1) + strlen(bucket) + 1;
	if (scope_len < need)
		return -ENAMETOOLONG;

	md = req_sha256();
	if (!md)
		return -ENOMEM;
	rc = scope_hash(md, r->tools, th);
	if (rc == 0)
		rc = scope_hash(md, r->tool_choice, ch);
	if (rc == 0)
		rc = system_hash(md, r, sh);
	if (rc == 0)
		rc = request_digest(md, r, digest);
	if (rc < 0)
		return rc;

	/* model <= 127 bytes + ':' + 64 hex + NUL fits SEMCACHE_KEY_LEN. */
	n = snprintf(key, SEMCACHE_KEY_LEN, "%s:%s", r->model, digest);
	if (n < 0 || (size_t)n >= SEMCACHE_KEY_LEN)
		return -EINVAL; /* unreachable after request_check() */
	n = snprintf(scope, scope_len, "m=%s;t=%s;c=%s;s=%s;T=%s", r->model, th, ch, sh, bucket);
	if (n < 0 || (size_t)n + 1 != need)
		return -EINVAL; /* unreachable: need was computed from the same parts */
	return 0;
}
