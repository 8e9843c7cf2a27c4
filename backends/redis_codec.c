/*
 * redis_codec.c - key names, ids and values of the Redis tier (see
 * redis_codec.h for the formats).
 *
 * Native entries are written with msgpack-c's packer (through a write
 * callback that appends to an sc_buf and refuses to grow past the caller's
 * cap) and read by the small bounded reader below.  msgpack-c's unpacker
 * never sees these bytes: they come from a Redis that other hosts write, and
 * it allocates from the counts it reads before it has seen the elements
 * (issue 1013: five bytes claiming 2^32 elements cost gigabytes).  The
 * reader checks every length against the bytes left before using it and
 * every container count against the bytes left (each element needs at
 * least one byte), and allocates nothing, so a decode costs time linear
 * in the input and no memory.  The payload inside an entry is the core
 * codec's record and is validated by the core codec.
 *
 * Seed-compatible JSON goes through jansson, linked by the library for
 * this: a maintained parser with duplicate-key rejection, UTF-8 and
 * \u0000 checks, integer and real overflow checks, and a nesting limit,
 * whose memory use is linear in its input (it allocates per value seen,
 * never from a declared count).  The decoder caps the input length before
 * parsing, so the memory a hostile value can cost is bounded by the
 * caller.  The decoded response is rebuilt through the core codec
 * (encode, then decode), which applies the core's caps and hands back the
 * same one-block response every other path returns.
 */
#include "redis_codec.h"

#include <errno.h>
#include <float.h>
#include <math.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>
#include <msgpack.h>

#include "../core/internal.h"

#define BAD SEMCACHE_EBADRECORD

/* created_at's upper bound, 2200-01-01 in unix seconds: later is not a
 * time any writer meant, and it keeps created_ms far from overflow. */
#define SEED_MAX_CREATED_S 7258118400.0

/* ------------------------------------------------------------------------
 * Ids and key names
 * ---------------------------------------------------------------------- */

static const char *const kind_names[] = {
	[SC_RKEY_ENTRY] = "llm_cache:",
	[SC_RKEY_EMB] = "llm_cache_emb:",
	[SC_RKEY_INDEX] = "llm_cache_index",
};

static bool graph_ascii(const char *s, size_t n)
{
	for (size_t i = 0; i < n; i++)
		if ((unsigned char)s[i] < 0x21 || (unsigned char)s[i] > 0x7e)
			return false;
	return true;
}

int sc_rid_check(enum sc_rformat fmt, const char *id, size_t len)
{
	if (!id)
		return BAD;
	if (fmt == SC_RFMT_NATIVE) {
		if (len != SC_RID_NATIVE_LEN)
			return BAD;
		for (size_t i = 0; i < len; i++)
			if (!((id[i] >= '0' && id[i] <= '9') || (id[i] >= 'a' && id[i] <= 'f')))
				return BAD;
		return 0;
	}
	if (fmt == SC_RFMT_SEED)
		return len >= 1 && len <= SC_RID_SEED_MAX && graph_ascii(id, len) ? 0 : BAD;
	return BAD;
}

int sc_rid_native(const char *ns, const char *key, char out[SC_RID_NATIVE_LEN + 1])
{
	uint8_t d[32];
	int rc;

	if (!ns || !key || !out)
		return -EINVAL;
	rc = sc_key_digest(ns, key, d);
	if (rc)
		return rc;
	sc_hex(d, 32, out);
	return 0;
}

int sc_rprefix_check(const char *prefix)
{
	size_t n;

	if (!prefix)
		return -EINVAL;
	n = strnlen(prefix, SC_RPREFIX_MAX + 1);
	return n <= SC_RPREFIX_MAX && graph_ascii(prefix, n) ? 0 : -EINVAL;
}

/* Append n bytes to b, growing it; -ENOMEM. */
static int buf_add(sc_buf *b, const void *s, size_t n)
{
	if (n > SIZE_MAX - b->len - 1)
		return -ENOMEM;
	if (b->len + n + 1 > b->cap) {
		size_t cap = b->cap ? b->cap : 64;
		char *d;

		while (cap < b->len + n + 1)
			cap = cap > SIZE_MAX / 2 ? SIZE_MAX : cap * 2;
		d = realloc(b->data, cap);
		if (!d)
			return -ENOMEM;
		b->data = d;
		b->cap = cap;
	}
	if (n)
		memcpy(b->data + b->len, s, n);
	b->len += n;
	b->data[b->len] = '\0'; /* keeps key names usable as C strings */
	return 0;
}

int sc_rkey_build(const char *prefix, enum sc_rkey_kind kind, enum sc_rformat fmt,
                  const char *id, size_t id_len, sc_buf *out)
{
	const char *k;
	int rc;

	if (!out || sc_rprefix_check(prefix) || (unsigned)kind > SC_RKEY_INDEX)
		return -EINVAL;
	if (kind != SC_RKEY_INDEX && sc_rid_check(fmt, id, id_len))
		return -EINVAL;
	k = kind_names[kind];
	out->len = 0;
	if ((rc = buf_add(out, prefix, strlen(prefix))) ||
	    (rc = buf_add(out, k, strlen(k))))
		return rc;
	if (kind != SC_RKEY_INDEX)
		rc = buf_add(out, id, id_len);
	return rc;
}

int sc_rkey_parse(const char *prefix, enum sc_rformat fmt, const char *name, size_t len,
                  enum sc_rkey_kind *kind, const char **id, size_t *id_len)
{
	size_t pl;

	if (!prefix || !name || !kind || !id || !id_len || sc_rprefix_check(prefix))
		return BAD;
	pl = strlen(prefix);
	if (len < pl || memcmp(name, prefix, pl) != 0)
		return BAD;
	name += pl;
	len -= pl;
	/* "llm_cache_emb:" first: "llm_cache:" is not its prefix, but the
	 * index name "llm_cache_index" must be matched whole. */
	for (int k = SC_RKEY_INDEX; k >= SC_RKEY_ENTRY; k--) {
		size_t kl = strlen(kind_names[k]);

		if (len < kl || memcmp(name, kind_names[k], kl) != 0)
			continue;
		if (k == SC_RKEY_INDEX) {
			if (len != kl)
				return BAD;
			*id = NULL;
			*id_len = 0;
		} else {
			if (sc_rid_check(fmt, name + kl, len - kl))
				return BAD;
			*id = name + kl;
			*id_len = len - kl;
		}
		*kind = (enum sc_rkey_kind)k;
		return 0;
	}
	return BAD;
}

/* ------------------------------------------------------------------------
 * Native entry: writer
 * ---------------------------------------------------------------------- */

typedef struct sc_wctx {
	sc_buf *out;
	size_t max;
	int rc;
} sc_wctx;

/* msgpack-c's write callback: append, never past max.  A failure sticks
 * in rc (the packer only learns "-1"). */
static int w_append(void *data, const char *buf, size_t len)
{
	sc_wctx *w = data;
	int rc;

	if (w->rc)
		return -1;
	if (len > w->max || w->out->len > w->max - len) {
		w->rc = -E2BIG;
		return -1;
	}
	rc = buf_add(w->out, buf, len);
	if (rc) {
		w->rc = rc;
		return -1;
	}
	return 0;
}

static void pk_str(msgpack_packer *pk, const char *s, size_t n)
{
	if (msgpack_pack_str(pk, n) == 0 && n)
		msgpack_pack_str_body(pk, s, n);
}

#define PK_KEY(pk, lit) pk_str((pk), (lit), sizeof(lit) - 1)

static bool same_bytes(const char *a, size_t an, const char *b, size_t bn)
{
	return an == bn && (an == 0 || memcmp(a, b, an) == 0);
}

/* The payload's identity is the entry's. */
static int payload_matches(const sc_rentry *e)
{
	sc_ids ids;

	if (sc_codec_peek_ids(e->payload, e->payload_len, &ids))
		return BAD;
	if (!same_bytes(ids.ns, ids.ns_len, e->ns, e->ns_len) ||
	    !same_bytes(ids.key, ids.key_len, e->key, e->key_len) ||
	    !same_bytes(ids.scope, ids.scope_len, e->scope, e->scope_len))
		return BAD;
	return 0;
}

static bool times_ok(int64_t created, int64_t exact, int64_t semantic)
{
	return created >= 0 && exact >= created && semantic >= created;
}

int sc_rnative_encode(const sc_rentry *e, size_t max, sc_buf *out)
{
	sc_wctx w = { out, max, 0 };
	msgpack_packer pk;

	if (!e || !out || !e->ns || !e->key || !e->scope || !e->payload ||
	    e->payload_len > UINT32_MAX)
		return -EINVAL;
	if (!times_ok(e->created_ms, e->exact_expiry_ms, e->semantic_expiry_ms) ||
	    memchr(e->ns, 0, e->ns_len) || memchr(e->key, 0, e->key_len) ||
	    memchr(e->scope, 0, e->scope_len) || payload_matches(e))
		return BAD;
	if (e->origin_len > SC_RORIGIN_MAX || (e->origin_len && !e->origin) ||
	    (e->origin && memchr(e->origin, 0, e->origin_len)))
		return -EINVAL;
	out->len = 0;
	msgpack_packer_init(&pk, &w, w_append);
	msgpack_pack_map(&pk, e->origin_len ? 10 : 9);
	PK_KEY(&pk, "v");
	msgpack_pack_uint32(&pk, SC_RCODEC_VERSION);
	PK_KEY(&pk, "ns");
	pk_str(&pk, e->ns, e->ns_len);
	PK_KEY(&pk, "key");
	pk_str(&pk, e->key, e->key_len);
	PK_KEY(&pk, "scope");
	pk_str(&pk, e->scope, e->scope_len);
	PK_KEY(&pk, "created_ms");
	msgpack_pack_int64(&pk, e->created_ms);
	PK_KEY(&pk, "exact_expiry_ms");
	msgpack_pack_int64(&pk, e->exact_expiry_ms);
	PK_KEY(&pk, "semantic_expiry_ms");
	msgpack_pack_int64(&pk, e->semantic_expiry_ms);
	PK_KEY(&pk, "hits");
	msgpack_pack_uint64(&pk, e->hits);
	PK_KEY(&pk, "payload");
	if (msgpack_pack_bin(&pk, e->payload_len) == 0)
		msgpack_pack_bin_body(&pk, e->payload, e->payload_len);
	if (e->origin_len) {
		PK_KEY(&pk, "origin");
		pk_str(&pk, e->origin, e->origin_len);
	}
	return w.rc;
}

/* ------------------------------------------------------------------------
 * Native entry: decoded with the core codec's bounded reader (sc_rd_item,
 * core/codec.h), never msgpack-c's unpacker
 * ---------------------------------------------------------------------- */

/* A non-negative integer that fits int64 (times). */
static int m_time(sc_rd *r, int64_t *v)
{
	sc_item it;

	if (sc_rd_item(r, &it) || it.kind != K_UINT || it.u > INT64_MAX)
		return BAD;
	*v = (int64_t)it.u;
	return 0;
}

enum { N_V, N_NS, N_KEY, N_SCOPE, N_CREATED, N_EXACT, N_SEMANTIC, N_HITS, N_PAYLOAD, N_ORIGIN,
       N_COUNT };
/* every field but the origin (optional: values written before it existed) */
#define N_REQUIRED (((1u << N_COUNT) - 1) & ~(1u << N_ORIGIN))

static int native_field(const uint8_t *s, size_t n)
{
	static const char *const names[N_COUNT] = {
		"v", "ns", "key", "scope", "created_ms", "exact_expiry_ms",
		"semantic_expiry_ms", "hits", "payload", "origin",
	};

	for (int i = 0; i < N_COUNT; i++)
		if (strlen(names[i]) == n && memcmp(names[i], s, n) == 0)
			return i;
	return -1;
}

/* ns and key as C strings for sc_rid_native; they hold no NUL (checked). */
static int id_matches(const sc_rentry *e, const char *id)
{
	char *ns = strndup(e->ns, e->ns_len), *key = strndup(e->key, e->key_len);
	char want[SC_RID_NATIVE_LEN + 1];
	int rc = -ENOMEM;

	if (!ns || !key)
		goto out;
	rc = sc_rid_native(ns, key, want);
	if (rc)
		goto out;
	rc = strlen(id) == SC_RID_NATIVE_LEN && memcmp(id, want, SC_RID_NATIVE_LEN) == 0 ? 0 : BAD;
out:
	free(ns);
	free(key);
	return rc;
}

int sc_rnative_decode(const void *buf, size_t len, const char *id, sc_rentry *e,
                      semcache_response **resp)
{
	sc_rd r = { buf, (const uint8_t *)buf + len };
	sc_item it;
	unsigned seen = 0;
	uint32_t v = 0;
	sc_rentry d;
	int rc = BAD;

	if (resp)
		*resp = NULL;
	if (!buf || !e)
		return -EINVAL;
	memset(&d, 0, sizeof d);
	if (sc_rd_item(&r, &it) || it.kind != K_MAP)
		goto out;
	for (uint64_t i = 0; i < it.u; i++) {
		sc_item k, val;
		int f;

		if (sc_rd_item(&r, &k) || k.kind != K_STR)
			goto out;
		f = native_field(k.s, (size_t)k.u);
		if (f < 0) {
			if (sc_rd_skip(&r, 2) /* a container here is level 2 */)
				goto out;
			continue;
		}
		if (seen & (1u << f))
			goto out;
		seen |= 1u << f;
		switch (f) {
		case N_CREATED:
			if (m_time(&r, &d.created_ms))
				goto out;
			continue;
		case N_EXACT:
			if (m_time(&r, &d.exact_expiry_ms))
				goto out;
			continue;
		case N_SEMANTIC:
			if (m_time(&r, &d.semantic_expiry_ms))
				goto out;
			continue;
		default:
			break;
		}
		if (sc_rd_item(&r, &val))
			goto out;
		switch (f) {
		case N_V:
			if (val.kind != K_UINT || val.u != SC_RCODEC_VERSION)
				goto out;
			v = (uint32_t)val.u;
			break;
		case N_HITS:
			if (val.kind != K_UINT)
				goto out;
			d.hits = val.u;
			break;
		case N_PAYLOAD:
			if (val.kind != K_BIN || val.u == 0)
				goto out;
			d.payload = val.s;
			d.payload_len = (size_t)val.u;
			break;
		case N_ORIGIN:
			if (val.kind != K_STR || val.u > SC_RORIGIN_MAX ||
			    memchr(val.s, 0, (size_t)val.u))
				goto out;
			d.origin = (const char *)val.s;
			d.origin_len = (size_t)val.u;
			break;
		default: /* ns, key, scope */
			if (val.kind != K_STR || memchr(val.s, 0, (size_t)val.u))
				goto out;
			if (f == N_NS) {
				d.ns = (const char *)val.s;
				d.ns_len = (size_t)val.u;
			} else if (f == N_KEY) {
				d.key = (const char *)val.s;
				d.key_len = (size_t)val.u;
			} else {
				d.scope = (const char *)val.s;
				d.scope_len = (size_t)val.u;
			}
			break;
		}
	}
	if ((seen & N_REQUIRED) != N_REQUIRED || r.p != r.end || v != SC_RCODEC_VERSION ||
	    !times_ok(d.created_ms, d.exact_expiry_ms, d.semantic_expiry_ms) ||
	    payload_matches(&d))
		goto out;
	if (id && (rc = id_matches(&d, id)) != 0)
		goto out;
	if (resp && (rc = sc_codec_decode(d.payload, d.payload_len, resp, NULL)) != 0)
		goto out;
	*e = d;
	rc = 0;
out:
	return rc;
}

/* ------------------------------------------------------------------------
 * Native embedding
 * ---------------------------------------------------------------------- */

/* NaN/Inf anywhere or an all-zero vector is no embedding. */
static int emb_check(const float *v, uint32_t dim)
{
	double norm = 0;

	for (uint32_t i = 0; i < dim; i++) {
		if (!isfinite(v[i]))
			return SEMCACHE_EEMBEDDING;
		norm += (double)v[i] * v[i];
	}
	return norm > 0 ? 0 : SEMCACHE_EEMBEDDING;
}

int sc_remb_encode(const float *v, uint32_t dim, sc_buf *out)
{
	int rc;

	if (!v || !out || dim == 0 || dim > SC_RCODEC_MAX_DIM)
		return -EINVAL;
	if ((rc = emb_check(v, dim)))
		return rc;
	out->len = 0;
	for (uint32_t i = 0; i < dim; i++) {
		uint32_t u;
		uint8_t b[4];

		memcpy(&u, &v[i], 4);
		b[0] = (uint8_t)u;
		b[1] = (uint8_t)(u >> 8);
		b[2] = (uint8_t)(u >> 16);
		b[3] = (uint8_t)(u >> 24);
		if ((rc = buf_add(out, b, 4)))
			return rc;
	}
	return 0;
}

int sc_remb_decode(const void *buf, size_t len, uint32_t dim, float *out)
{
	const uint8_t *p = buf;

	if (!buf || !out || dim == 0 || dim > SC_RCODEC_MAX_DIM)
		return -EINVAL;
	if (len != (size_t)dim * 4)
		return SEMCACHE_EDIM;
	for (uint32_t i = 0; i < dim; i++, p += 4) {
		uint32_t u = (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 |
		             (uint32_t)p[3] << 24;
		memcpy(&out[i], &u, 4);
	}
	return emb_check(out, dim);
}

/* ------------------------------------------------------------------------
 * Seed-compatible JSON: writer
 * ---------------------------------------------------------------------- */

/* jansson's string constructors refuse invalid UTF-8 and fail on memory
 * alike; tell them apart so the caller gets the right code. */
static int j_str(json_t *obj, const char *k, const char *s, int *rc)
{
	size_t n;
	json_t *v;

	if (*rc)
		return *rc;
	if (!s)
		s = "";
	n = strlen(s);
	v = json_stringn(s, n);
	if (!v) {
		v = json_stringn_nocheck(s, n);
		*rc = v ? BAD : -ENOMEM; /* not UTF-8: JSON cannot carry it */
		json_decref(v);
		return *rc;
	}
	if (json_object_set_new(obj, k, v))
		*rc = -ENOMEM;
	return *rc;
}

static int j_set(json_t *obj, const char *k, json_t *v, int *rc)
{
	if (*rc) {
		json_decref(v);
		return *rc;
	}
	if (!v || json_object_set_new(obj, k, v))
		*rc = -ENOMEM;
	return *rc;
}

static json_t *j_floats(const float *v, uint32_t dim)
{
	json_t *a = json_array();

	for (uint32_t i = 0; a && v && i < dim; i++)
		if (json_array_append_new(a, json_real(v[i]))) {
			json_decref(a);
			return NULL;
		}
	return a;
}

static int j_dump_cb(const char *buf, size_t len, void *data)
{
	return w_append(data, buf, len);
}

/* Serialise j into out, at most max bytes, with reals to digits
 * significant digits: 9 carry a float32 exactly (an embedding list near
 * 5 KB for 384 floats); an entry needs 17 so created_at keeps its
 * milliseconds (13 digits today). */
static int j_dump(const json_t *j, int digits, size_t max, sc_buf *out)
{
	sc_wctx w = { out, max, 0 };

	out->len = 0;
	if (json_dump_callback(j, j_dump_cb, &w, JSON_COMPACT | JSON_REAL_PRECISION(digits)) != 0)
		return w.rc ? w.rc : -ENOMEM;
	return 0;
}

int sc_rseed_encode(const semcache_response *r, const char *scope, const float *emb, uint32_t dim,
                    int64_t created_ms, uint64_t hit_count, size_t max, sc_buf *out)
{
	json_t *root = NULL, *resp = NULL, *usage = NULL, *tcs = NULL;
	int rc = 0;

	if (!r || !out || created_ms < 0 || (emb && (dim == 0 || dim > SC_RCODEC_MAX_DIM)) ||
	    hit_count > (uint64_t)INT64_MAX)
		return -EINVAL;
	if (!r->content || !r->model || r->n_tool_calls > SC_CODEC_MAX_TOOL_CALLS ||
	    (r->n_tool_calls && !r->tool_calls))
		return BAD;
	if (emb && (rc = emb_check(emb, dim)))
		return rc;
	if (scope && strnlen(scope, SC_RSEED_SCOPE_MAX + 1) > SC_RSEED_SCOPE_MAX)
		return -E2BIG;
	root = json_object();
	resp = json_object();
	usage = json_object();
	tcs = json_array();
	if (!root || !resp || !usage || !tcs) {
		rc = -ENOMEM;
		goto out;
	}
	j_str(resp, "content", r->content, &rc);
	j_str(resp, "model", r->model, &rc);
	j_set(usage, "prompt_tokens", json_integer(r->prompt_tokens), &rc);
	j_set(usage, "completion_tokens", json_integer(r->completion_tokens), &rc);
	for (uint32_t i = 0; i < r->n_tool_calls && !rc; i++) {
		json_t *tc = json_object();

		if (!tc || json_array_append_new(tcs, tc)) {
			rc = -ENOMEM;
			break;
		}
		j_str(tc, "id", r->tool_calls[i].id, &rc);
		j_str(tc, "name", r->tool_calls[i].name, &rc);
		j_str(tc, "arguments", r->tool_calls[i].arguments, &rc);
	}
	j_set(resp, "usage", usage, &rc);
	usage = NULL;
	j_set(resp, "tool_calls", tcs, &rc);
	tcs = NULL;
	j_set(resp, "latency_ms", json_integer(r->latency_ms), &rc);
	j_set(root, "response", resp, &rc);
	resp = NULL;
	j_set(root, "query_embedding", j_floats(emb, emb ? dim : 0), &rc);
	j_set(root, "created_at", json_real((double)created_ms / 1000.0), &rc);
	j_set(root, "hit_count", json_integer((json_int_t)hit_count), &rc);
	if (scope)
		j_str(root, "scope", scope, &rc);
	if (!rc)
		rc = j_dump(root, 17, max, out);
out:
	json_decref(usage);
	json_decref(tcs);
	json_decref(resp);
	json_decref(root);
	return rc;
}

int sc_rseed_emb_encode(const float *v, uint32_t dim, sc_buf *out)
{
	json_t *a;
	int rc;

	if (!v || !out || dim == 0 || dim > SC_RCODEC_MAX_DIM)
		return -EINVAL;
	if ((rc = emb_check(v, dim)))
		return rc;
	a = j_floats(v, dim);
	if (!a)
		return -ENOMEM;
	rc = j_dump(a, 9, SIZE_MAX, out);
	json_decref(a);
	return rc;
}

/* ------------------------------------------------------------------------
 * Seed-compatible JSON: reader
 * ---------------------------------------------------------------------- */

/* Parse at most max bytes as one JSON value of the given type. */
static json_t *j_load(const void *buf, size_t len, size_t max, json_type type)
{
	json_error_t err;
	json_t *j;

	if (!buf || len > max)
		return NULL;
	/* Duplicate keys would let two readers see two different values. */
	j = json_loadb(buf, len, JSON_REJECT_DUPLICATES, &err);
	if (j && json_typeof(j) != type) {
		json_decref(j);
		j = NULL;
	}
	return j;
}

/* A list of floats: every element a finite number that fits a float.
 * out may be NULL (validate only).  Checks the count before anything. */
static int j_read_floats(const json_t *a, uint32_t dim, float *out)
{
	size_t n = json_array_size(a);
	double norm = 0;

	if (!json_is_array(a) || n > SC_RCODEC_MAX_DIM)
		return json_is_array(a) ? SEMCACHE_EDIM : BAD;
	if (dim && n != dim)
		return SEMCACHE_EDIM;
	for (size_t i = 0; i < n; i++) {
		const json_t *x = json_array_get(a, i);
		double d;
		float f;

		if (!json_is_number(x))
			return BAD;
		d = json_number_value(x);
		f = (float)d;
		if (!isfinite(d) || !isfinite(f))
			return SEMCACHE_EEMBEDDING;
		if (out)
			out[i] = f;
		norm += (double)f * f;
	}
	return n == 0 || norm > 0 ? 0 : SEMCACHE_EEMBEDDING;
}

int sc_rseed_emb_decode(const void *buf, size_t len, uint32_t dim, float *out)
{
	/* dim floats of at most ~40 bytes each is all a sane writer needs. */
	size_t max = (size_t)dim * 48 + 64;
	json_t *a;
	int rc;

	if (!buf || !out || dim == 0 || dim > SC_RCODEC_MAX_DIM)
		return -EINVAL;
	a = j_load(buf, len, max, JSON_ARRAY);
	if (!a)
		return BAD;
	rc = json_array_size(a) == 0 ? SEMCACHE_EDIM : j_read_floats(a, dim, out);
	json_decref(a);
	return rc;
}

/* Optional unsigned integer: missing or null is 0. */
static int j_u32(const json_t *obj, const char *k, uint32_t *v)
{
	const json_t *x = json_object_get(obj, k);

	*v = 0;
	if (!x || json_is_null(x))
		return 0;
	if (!json_is_integer(x) || json_integer_value(x) < 0 ||
	    json_integer_value(x) > (json_int_t)UINT32_MAX)
		return BAD;
	*v = (uint32_t)json_integer_value(x);
	return 0;
}

/* A string field; missing or null reads as "" when nullable, else BAD. */
static int j_text(const json_t *obj, const char *k, bool nullable, const char **s)
{
	const json_t *x = json_object_get(obj, k);

	if (!x || json_is_null(x)) {
		*s = "";
		return nullable ? 0 : BAD;
	}
	if (!json_is_string(x))
		return BAD;
	*s = json_string_value(x); /* jansson refused \u0000 when parsing */
	return 0;
}

int sc_rseed_decode(const void *buf, size_t len, size_t max, uint32_t dim, sc_rseed *out)
{
	semcache_response r = { 0 };
	semcache_tool_call *tc = NULL;
	char **dumped = NULL;
	json_t *root = NULL;
	const json_t *resp, *x, *calls;
	sc_buf rec = { 0 };
	size_t ncalls = 0;
	double lat = 0, created;
	int rc = BAD;

	if (!out)
		return -EINVAL;
	memset(out, 0, sizeof *out);
	if (!buf || dim > SC_RCODEC_MAX_DIM)
		return -EINVAL;
	root = j_load(buf, len, max, JSON_OBJECT);
	if (!root)
		goto out;

	resp = json_object_get(root, "response");
	if (!json_is_object(resp))
		goto out;
	if (j_text(resp, "content", true, &r.content) || j_text(resp, "model", false, &r.model) ||
	    j_text(resp, "finish_reason", true, &r.finish_reason))
		goto out;
	if (!json_object_get(resp, "finish_reason") ||
	    json_is_null(json_object_get(resp, "finish_reason")))
		r.finish_reason = NULL;
	x = json_object_get(resp, "usage");
	if (x && !json_is_null(x)) {
		if (!json_is_object(x) || j_u32(x, "prompt_tokens", &r.prompt_tokens) ||
		    j_u32(x, "completion_tokens", &r.completion_tokens))
			goto out;
	}
	x = json_object_get(resp, "latency_ms");
	if (x && !json_is_null(x)) {
		if (!json_is_number(x))
			goto out;
		lat = json_number_value(x);
		if (!isfinite(lat) || lat < 0 || lat > (double)UINT32_MAX)
			goto out;
		r.latency_ms = (uint32_t)llround(lat);
	}

	calls = json_object_get(resp, "tool_calls");
	if (calls && !json_is_null(calls)) {
		if (!json_is_array(calls) || json_array_size(calls) > SC_CODEC_MAX_TOOL_CALLS)
			goto out;
		ncalls = json_array_size(calls);
	}
	if (ncalls) {
		tc = calloc(ncalls, sizeof *tc);
		dumped = calloc(ncalls, sizeof *dumped);
		if (!tc || !dumped) {
			rc = -ENOMEM;
			goto out;
		}
		for (size_t i = 0; i < ncalls; i++) {
			const json_t *c = json_array_get(calls, i), *args;

			if (!json_is_object(c) || j_text(c, "id", true, &tc[i].id) ||
			    j_text(c, "name", true, &tc[i].name))
				goto out;
			args = json_object_get(c, "arguments");
			if (json_is_object(args) || json_is_array(args)) {
				/* The reference writer may keep parsed arguments;
				 * semcache keeps the text, as the API returns it. */
				dumped[i] = json_dumps(args, JSON_COMPACT | JSON_REAL_PRECISION(17));
				if (!dumped[i]) {
					rc = -ENOMEM;
					goto out;
				}
				tc[i].arguments = dumped[i];
			} else if (j_text(c, "arguments", true, &tc[i].arguments)) {
				goto out;
			}
		}
		r.tool_calls = tc;
		r.n_tool_calls = (uint32_t)ncalls;
	}

	x = json_object_get(root, "created_at");
	if (!json_is_number(x))
		goto out;
	created = json_number_value(x);
	if (!isfinite(created) || created < 0 || created > SEED_MAX_CREATED_S)
		goto out;
	out->created_ms = (int64_t)llround(created * 1000.0);

	x = json_object_get(root, "hit_count");
	if (x && !json_is_null(x)) {
		if (!json_is_integer(x) || json_integer_value(x) < 0)
			goto out;
		out->hit_count = (uint64_t)json_integer_value(x);
	}

	/* semcache's scope (see the encoder); absent in a reference entry */
	x = json_object_get(root, "scope");
	if (x) {
		if (!json_is_string(x) || json_string_length(x) > SC_RSEED_SCOPE_MAX ||
		    memchr(json_string_value(x), 0, json_string_length(x)))
			goto out;
		if (!(out->scope = strdup(json_string_value(x)))) {
			rc = -ENOMEM;
			goto out;
		}
	}

	x = json_object_get(root, "query_embedding");
	if (!json_is_array(x))
		goto out;
	if (dim && json_array_size(x)) {
		out->embedding = malloc((size_t)dim * sizeof(float));
		if (!out->embedding) {
			rc = -ENOMEM;
			goto out;
		}
	}
	rc = j_read_floats(x, json_array_size(x) ? dim : 0, out->embedding);
	if (rc)
		goto out;

	/* Through the core codec: its caps apply, and the result is the one
	 * block every read path returns. */
	rc = sc_codec_encode("", "", NULL, &r, SIZE_MAX, &rec);
	if (rc == -E2BIG)
		rc = BAD;
	if (rc == 0)
		rc = sc_codec_decode(rec.data, rec.len, &out->response, NULL);
out:
	if (ncalls && dumped)
		for (size_t i = 0; i < ncalls; i++)
			free(dumped[i]);
	free(dumped);
	free(tc);
	free(rec.data);
	json_decref(root);
	if (rc) {
		sc_rseed_free(out);
		if (rc != -ENOMEM && rc != SEMCACHE_EDIM && rc != SEMCACHE_EEMBEDDING)
			rc = BAD;
	}
	return rc;
}

void sc_rseed_free(sc_rseed *s)
{
	if (!s)
		return;
	semcache_response_free(s->response);
	free(s->scope);
	free(s->embedding);
	memset(s, 0, sizeof *s);
}
