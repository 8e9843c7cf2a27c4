/*
 * codec.c - the response record codec: a msgpack writer and a bounded
 * msgpack reader, both written for this one record shape.
 *
 * Format.  A record is one msgpack map.  The encoder writes the identity
 * first, "v" (format version, 1), "ns", "key", "scope", so that
 * sc_codec_peek_ids() finds it in the first few bytes, then "content",
 * "model", "usage" {"prompt", "completion"}, "tool_calls" [{"id", "name",
 * "arguments"}...] (omitted when there are none), "latency_ms", and the
 * optional "finish_reason", "reasoning", "metadata" (omitted when NULL).
 * Integers and lengths use the shortest msgpack form.
 *
 * The decoder accepts any msgpack a different writer could reasonably
 * produce for that shape: keys in any order, every integer form (signed
 * forms holding a non-negative value included), every str/array/map
 * width, unknown keys with any value (skipped, for forward compatibility,
 * but still walked and bounds-checked), and nil for the optional fields.
 * Missing "usage"/"latency_ms" read as 0; a tool call missing one of its
 * strings reads it as "".  It rejects, with SEMCACHE_EBADRECORD, anything
 * else: duplicate known keys, wrong types, version != 1, strings holding a
 * NUL byte (the API hands out NUL-terminated strings), numbers that do not
 * fit the uint32 fields, more than SC_CODEC_MAX_TOOL_CALLS tool calls,
 * nesting deeper than SC_CODEC_MAX_DEPTH (the record's map is level 1, so
 * usage and tool_calls are level 2 and each tool call is level 3),
 * truncation and trailing bytes.  sc_codec_peek_ids() reads entries only
 * until it holds v, ns, key and scope, validating each entry it passes; with
 * this encoder's order that is the first four.
 *
 * Why not msgpack-c's unpacker: the bytes come from a shared segment or
 * from Redis, and msgpack-c sizes its allocations from the counts it reads
 * before it has seen the elements (issue 1013: 5 bytes that claim 2^32
 * elements cost gigabytes).  Here every length is checked against the bytes
 * left before it is used, and a container's count against the bytes left
 * (every element needs at least one byte), so the work done and memory
 * allocated are both linear in the input length.
 *
 * Decoding is on every cache hit, so it makes two cheap passes and one
 * allocation.  Pass 1 walks and validates the whole buffer, remembering
 * where each string is, and computes the exact size of the result.  Pass 2
 * fills one malloc'd block: the semcache_response, then the tool-call
 * array, then every string NUL-terminated (which is why
 * semcache_response_free() is a plain free()).  Only the tool calls are
 * walked twice; the other strings are copied from where pass 1 saw them.
 */
#include "codec.h"

#include <errno.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#define SC_CODEC_VERSION 1u
#define BAD SEMCACHE_EBADRECORD

/* ------------------------------------------------------------------------
 * Field names
 *
 * Each lookup is a switch on the key's length with constant-size compares,
 * which compilers turn into one or two integer comparisons: key matching
 * is most of the decoder's work, so it is kept out of memcmp() calls and
 * byte loops.  A name we do not know yields -1.
 * ---------------------------------------------------------------------- */

/* Top-level fields; the enum doubles as the bit index in "seen" masks and
 * as the index into the scan's string table. */
enum {
	F_V, F_NS, F_KEY, F_SCOPE, F_CONTENT, F_MODEL, F_USAGE, F_TOOL_CALLS,
	F_LATENCY, F_FINISH, F_REASONING, F_METADATA, F_COUNT
};
enum { U_PROMPT, U_COMPLETION, U_COUNT };
enum { T_ID, T_NAME, T_ARGUMENTS, T_COUNT };

#define IDS_MASK      ((1u << F_V) | (1u << F_NS) | (1u << F_KEY) | (1u << F_SCOPE))
#define REQUIRED_MASK (IDS_MASK | (1u << F_CONTENT) | (1u << F_MODEL))
/* Optional strings, whose absence a nil may also say (as for tool_calls). */
#define NILLABLE_MASK ((1u << F_FINISH) | (1u << F_REASONING) | (1u << F_METADATA))

#define IS(s, lit) (memcmp((s), (lit), sizeof(lit) - 1) == 0)

static int top_field(const uint8_t *s, size_t n)
{
	switch (n) {
	case 1:  return IS(s, "v") ? F_V : -1;
	case 2:  return IS(s, "ns") ? F_NS : -1;
	case 3:  return IS(s, "key") ? F_KEY : -1;
	case 5:  return IS(s, "scope") ? F_SCOPE : IS(s, "model") ? F_MODEL :
	                IS(s, "usage") ? F_USAGE : -1;
	case 7:  return IS(s, "content") ? F_CONTENT : -1;
	case 8:  return IS(s, "metadata") ? F_METADATA : -1;
	case 9:  return IS(s, "reasoning") ? F_REASONING : -1;
	case 10: return IS(s, "tool_calls") ? F_TOOL_CALLS :
	                IS(s, "latency_ms") ? F_LATENCY : -1;
	case 13: return IS(s, "finish_reason") ? F_FINISH : -1;
	default: return -1;
	}
}

static int usage_field(const uint8_t *s, size_t n)
{
	if (n == 6 && IS(s, "prompt"))
		return U_PROMPT;
	if (n == 10 && IS(s, "completion"))
		return U_COMPLETION;
	return -1;
}

static int tool_field(const uint8_t *s, size_t n)
{
	if (n == 2 && IS(s, "id"))
		return T_ID;
	if (n == 4 && IS(s, "name"))
		return T_NAME;
	if (n == 9 && IS(s, "arguments"))
		return T_ARGUMENTS;
	return -1;
}

/* ------------------------------------------------------------------------
 * Encoder
 *
 * Appends to out with a sticky error: the first failure is kept in rc and
 * every later write is a no-op, so sc_codec_encode() reads as the record's
 * layout.  The buffer grows geometrically but never past max, so a record
 * too large costs at most max bytes before -E2BIG.
 * ---------------------------------------------------------------------- */
typedef struct sc_enc {
	sc_buf *out;
	size_t max;
	int rc;
} sc_enc;

static uint8_t *enc_room(sc_enc *e, size_t n)
{
	sc_buf *b = e->out;
	uint8_t *p;

	if (e->rc)
		return NULL;
	if (n > e->max || b->len > e->max - n) {
		e->rc = -E2BIG;
		return NULL;
	}
	if (b->len + n > b->cap) {
		size_t need = b->len + n, cap = b->cap < 256 ? 256 : b->cap;
		char *d;

		while (cap < need)
			cap = cap > e->max / 2 ? e->max : cap * 2;
		if (cap > e->max)
			cap = e->max; /* still >= need, which is <= max */
		d = realloc(b->data, cap);
		if (!d) {
			e->rc = -ENOMEM;
			return NULL;
		}
		b->data = d;
		b->cap = cap;
	}
	p = (uint8_t *)b->data + b->len;
	b->len += n;
	return p;
}

static void st16(uint8_t *p, uint32_t v)
{
	p[0] = (uint8_t)(v >> 8);
	p[1] = (uint8_t)v;
}

static void st32(uint8_t *p, uint32_t v)
{
	p[0] = (uint8_t)(v >> 24);
	p[1] = (uint8_t)(v >> 16);
	p[2] = (uint8_t)(v >> 8);
	p[3] = (uint8_t)v;
}

/* Header of a container: fix form below 16, else the 16- or 32-bit form.
 * fix is 0x80 (map) or 0x90 (array); wide is 0xde (map16) or 0xdc (array16),
 * and wide + 1 the 32-bit form. */
static void enc_head(sc_enc *e, uint8_t fix, uint8_t wide, uint32_t n)
{
	uint8_t *p;

	if (n < 16) {
		if ((p = enc_room(e, 1)))
			p[0] = (uint8_t)(fix | n);
	} else if (n <= 0xffff) {
		if ((p = enc_room(e, 3))) {
			p[0] = wide;
			st16(p + 1, n);
		}
	} else if ((p = enc_room(e, 5))) {
		p[0] = (uint8_t)(wide + 1);
		st32(p + 1, n);
	}
}

static void enc_uint(sc_enc *e, uint32_t v)
{
	uint8_t *p;

	if (v < 0x80) {
		if ((p = enc_room(e, 1)))
			p[0] = (uint8_t)v;
	} else if (v <= 0xff) {
		if ((p = enc_room(e, 2))) {
			p[0] = 0xcc;
			p[1] = (uint8_t)v;
		}
	} else if (v <= 0xffff) {
		if ((p = enc_room(e, 3))) {
			p[0] = 0xcd;
			st16(p + 1, v);
		}
	} else if ((p = enc_room(e, 5))) {
		p[0] = 0xce;
		st32(p + 1, v);
	}
}

static void enc_str(sc_enc *e, const char *s, size_t n)
{
	uint8_t *p;
	size_t hdr = n < 32 ? 1 : n <= 0xff ? 2 : n <= 0xffff ? 3 : 5;

	/* msgpack cannot say longer than 2^32-1 (no sane max allows it anyway);
	 * the second test keeps hdr + n from wrapping where size_t is 32 bits. */
	if (n > UINT32_MAX || n > SIZE_MAX - hdr) {
		if (!e->rc)
			e->rc = -E2BIG;
		return;
	}
	if (!(p = enc_room(e, hdr + n)))
		return;
	switch (hdr) {
	case 1: p[0] = (uint8_t)(0xa0 | n); break;
	case 2: p[0] = 0xd9; p[1] = (uint8_t)n; break;
	case 3: p[0] = 0xda; st16(p + 1, (uint32_t)n); break;
	default: p[0] = 0xdb; st32(p + 1, (uint32_t)n); break;
	}
	if (n)
		memcpy(p + hdr, s, n);
}

/* NULL encodes as "" (scope, strings inside a tool call). */
static void enc_cstr(sc_enc *e, const char *s)
{
	if (!s)
		s = "";
	enc_str(e, s, strlen(s));
}

#define ENC_KEY(e, lit) enc_str((e), (lit), sizeof(lit) - 1)

int sc_codec_encode(const char *ns, const char *key, const char *scope,
                    const semcache_response *r, size_t max, sc_buf *out)
{
	sc_enc e = { out, max, 0 };
	uint32_t n;

	if (!ns || !key || !r || !out)
		return -EINVAL;
	if (!r->content || !r->model)
		return BAD;
	if (r->n_tool_calls > SC_CODEC_MAX_TOOL_CALLS || (r->n_tool_calls && !r->tool_calls))
		return BAD;

	out->len = 0;
	n = 8u + (r->n_tool_calls > 0) + (r->finish_reason != NULL) +
	    (r->reasoning != NULL) + (r->metadata != NULL);
	enc_head(&e, 0x80, 0xde, n);

	ENC_KEY(&e, "v");
	enc_uint(&e, SC_CODEC_VERSION);
	ENC_KEY(&e, "ns");
	enc_cstr(&e, ns);
	ENC_KEY(&e, "key");
	enc_cstr(&e, key);
	ENC_KEY(&e, "scope");
	enc_cstr(&e, scope);

	ENC_KEY(&e, "content");
	enc_cstr(&e, r->content);
	ENC_KEY(&e, "model");
	enc_cstr(&e, r->model);
	ENC_KEY(&e, "usage");
	enc_head(&e, 0x80, 0xde, 2);
	ENC_KEY(&e, "prompt");
	enc_uint(&e, r->prompt_tokens);
	ENC_KEY(&e, "completion");
	enc_uint(&e, r->completion_tokens);

	if (r->n_tool_calls) {
		ENC_KEY(&e, "tool_calls");
		enc_head(&e, 0x90, 0xdc, r->n_tool_calls);
		for (uint32_t i = 0; i < r->n_tool_calls && !e.rc; i++) {
			const semcache_tool_call *tc = &r->tool_calls[i];

			enc_head(&e, 0x80, 0xde, 3);
			ENC_KEY(&e, "id");
			enc_cstr(&e, tc->id);
			ENC_KEY(&e, "name");
			enc_cstr(&e, tc->name);
			ENC_KEY(&e, "arguments");
			enc_cstr(&e, tc->arguments);
		}
	}

	ENC_KEY(&e, "latency_ms");
	enc_uint(&e, r->latency_ms);
	if (r->finish_reason) {
		ENC_KEY(&e, "finish_reason");
		enc_cstr(&e, r->finish_reason);
	}
	if (r->reasoning) {
		ENC_KEY(&e, "reasoning");
		enc_cstr(&e, r->reasoning);
	}
	if (r->metadata) {
		ENC_KEY(&e, "metadata");
		enc_cstr(&e, r->metadata);
	}
	return e.rc;
}

/* ------------------------------------------------------------------------
 * Bounded reader
 *
 * sc_rd_item() classifies the next msgpack item and steps over its header and,
 * for str/bin/ext, its payload; for a container it stops at the first
 * element.  It checks every length and count against the bytes left before
 * returning it, so callers may trust them.  rd_str(), rd_u32() and rd_nil()
 * are fast paths for the common tags that keep the same checks; everything
 * else is built on these four.
 * ---------------------------------------------------------------------- */
/* Tags 0xc0..0xdf: kind, header bytes (tag included; for fixext the whole
 * item) and the width of the big-endian length or value after the tag. */
static const struct { uint8_t kind, hdr, w; } tags[32] = {
	{ K_NIL, 1, 0 },   { K_BAD, 1, 0 },   { K_BOOL, 1, 0 },  { K_BOOL, 1, 0 },   /* c0 */
	{ K_BIN, 2, 1 },   { K_BIN, 3, 2 },   { K_BIN, 5, 4 },                      /* c4 */
	{ K_EXT, 3, 1 },   { K_EXT, 4, 2 },   { K_EXT, 6, 4 },                      /* c7: len, type */
	{ K_FLOAT, 5, 0 }, { K_FLOAT, 9, 0 },                                       /* ca */
	{ K_UINT, 2, 1 },  { K_UINT, 3, 2 },  { K_UINT, 5, 4 },  { K_UINT, 9, 8 },  /* cc */
	{ K_SINT, 2, 1 },  { K_SINT, 3, 2 },  { K_SINT, 5, 4 },  { K_SINT, 9, 8 },  /* d0 */
	{ K_EXT, 3, 0 },   { K_EXT, 4, 0 },   { K_EXT, 6, 0 },   { K_EXT, 10, 0 },  /* d4: fixext */
	{ K_EXT, 18, 0 },
	{ K_STR, 2, 1 },   { K_STR, 3, 2 },   { K_STR, 5, 4 },                      /* d9 */
	{ K_ARRAY, 3, 2 }, { K_ARRAY, 5, 4 },                                       /* dc */
	{ K_MAP, 3, 2 },   { K_MAP, 5, 4 },                                         /* de */
};

static uint64_t ld_be(const uint8_t *p, unsigned w)
{
	switch (w) {
	case 1: return p[0];
	case 2: return (uint64_t)p[0] << 8 | p[1];
	case 4: return (uint64_t)p[0] << 24 | (uint64_t)p[1] << 16 | (uint64_t)p[2] << 8 | p[3];
	case 8: return ld_be(p, 4) << 32 | ld_be(p + 4, 4);
	default: return 0;
	}
}

int sc_rd_item(sc_rd *r, sc_item *it)
{
	const uint8_t *p = r->p;
	size_t left = (size_t)(r->end - p), hdr = 1, body = 0;
	uint8_t t;

	if (left == 0)
		return BAD;
	t = p[0];
	it->u = 0;
	if (t <= 0x7f) {
		it->kind = K_UINT;
		it->u = t;
	} else if (t <= 0x8f) {
		it->kind = K_MAP;
		it->u = t & 0x0f;
	} else if (t <= 0x9f) {
		it->kind = K_ARRAY;
		it->u = t & 0x0f;
	} else if (t <= 0xbf) {
		it->kind = K_STR;
		body = t & 0x1f;
	} else if (t >= 0xe0) {
		it->kind = K_NINT;
	} else {
		uint64_t v;

		it->kind = tags[t - 0xc0].kind;
		hdr = tags[t - 0xc0].hdr;
		if (it->kind == K_BAD || hdr > left)
			return BAD;
		v = ld_be(p + 1, tags[t - 0xc0].w);
		switch (it->kind) {
		case K_UINT:
			it->u = v;
			break;
		case K_SINT:
			/* Only the sign matters: a negative value is never accepted
			 * where we read integers, and skipping needs no value. */
			if (p[1] & 0x80) {
				it->kind = K_NINT;
			} else {
				it->kind = K_UINT;
				it->u = v;
			}
			break;
		case K_STR: case K_BIN: case K_EXT:
			body = v;
			break;
		case K_ARRAY: case K_MAP:
			it->u = v;
			break;
		default:
			break;
		}
	}
	left -= hdr;
	if (body > left)
		return BAD;
	if (body)
		it->u = body;
	if (it->kind == K_ARRAY && it->u > left)
		return BAD;
	if (it->kind == K_MAP && it->u > left / 2)
		return BAD;
	it->s = p + hdr;
	r->p = p + hdr + body;
	return 0;
}

/* Step over one item of any type.  depth is the nesting level a container
 * here would have (the record's map is level 1); recursion stops at
 * SC_CODEC_MAX_DEPTH, so the stack stays small whatever the input says. */
int sc_rd_skip(sc_rd *r, unsigned depth)
{
	sc_item it;
	uint64_t n;

	if (sc_rd_item(r, &it))
		return BAD;
	if (it.kind != K_ARRAY && it.kind != K_MAP)
		return 0;
	if (depth > SC_CODEC_MAX_DEPTH)
		return BAD;
	n = it.kind == K_MAP ? it.u * 2 : it.u;
	for (uint64_t i = 0; i < n; i++)
		if (sc_rd_skip(r, depth + 1))
			return BAD;
	return 0;
}

/* A string; the same checks as sc_rd_item() without the general dispatch,
 * since strings are most of what a record holds.  Map keys are read with
 * it directly: a key we do not know may hold any bytes. */
static inline int rd_str(sc_rd *r, const uint8_t **s, size_t *n)
{
	const uint8_t *p = r->p;
	size_t left = (size_t)(r->end - p), hdr, len;

	if (left == 0)
		return BAD;
	if ((p[0] & 0xe0) == 0xa0) {
		hdr = 1;
		len = p[0] & 0x1f;
	} else if (p[0] >= 0xd9 && p[0] <= 0xdb) {
		unsigned w = 1u << (p[0] - 0xd9);

		hdr = 1 + w;
		if (hdr > left)
			return BAD;
		len = (size_t)ld_be(p + 1, w);
	} else {
		return BAD;
	}
	if (len > left - hdr)
		return BAD;
	*s = p + hdr;
	*n = len;
	r->p = p + hdr + len;
	return 0;
}

/* A string value handed to the caller: no NUL inside.  *s is never NULL,
 * even for "", so callers can tell present from absent by the pointer. */
static int rd_text(sc_rd *r, const uint8_t **s, size_t *n)
{
	if (rd_str(r, s, n) || memchr(*s, 0, *n))
		return BAD;
	return 0;
}

static int rd_u32(sc_rd *r, uint32_t *v)
{
	sc_item it;

	if (r->p < r->end && r->p[0] <= 0x7f) { /* positive fixint, the usual case */
		*v = *r->p++;
		return 0;
	}
	if (sc_rd_item(r, &it) || it.kind != K_UINT || it.u > UINT32_MAX)
		return BAD;
	*v = (uint32_t)it.u;
	return 0;
}

/* A nil where an optional field may say "absent"; consumes it. */
static bool rd_nil(sc_rd *r)
{
	if (r->p < r->end && r->p[0] == 0xc0) {
		r->p++;
		return true;
	}
	return false;
}

/* ------------------------------------------------------------------------
 * Record walk (shared by both decode passes and peek)
 * ---------------------------------------------------------------------- */

/* One tool call map (nesting level 3).  s[i] stays NULL for a missing
 * string, which the caller turns into "". */
static int rd_tool_call(sc_rd *r, const uint8_t *s[T_COUNT], size_t n[T_COUNT])
{
	sc_item it;
	unsigned seen = 0;

	for (int i = 0; i < T_COUNT; i++) {
		s[i] = NULL;
		n[i] = 0;
	}
	if (sc_rd_item(r, &it) || it.kind != K_MAP)
		return BAD;
	for (uint64_t i = 0; i < it.u; i++) {
		const uint8_t *k;
		size_t kn;
		int f;

		if (rd_str(r, &k, &kn))
			return BAD;
		f = tool_field(k, kn);
		if (f < 0) {
			if (sc_rd_skip(r, 4))
				return BAD;
			continue;
		}
		if (seen & (1u << f))
			return BAD;
		seen |= 1u << f;
		if (rd_text(r, &s[f], &n[f]))
			return BAD;
	}
	return 0;
}

/* The usage map (nesting level 2); missing counts stay 0. */
static int rd_usage(sc_rd *r, uint32_t v[U_COUNT])
{
	sc_item it;
	unsigned seen = 0;

	if (sc_rd_item(r, &it) || it.kind != K_MAP)
		return BAD;
	for (uint64_t i = 0; i < it.u; i++) {
		const uint8_t *k;
		size_t kn;
		int f;

		if (rd_str(r, &k, &kn))
			return BAD;
		f = usage_field(k, kn);
		if (f < 0) {
			if (sc_rd_skip(r, 3))
				return BAD;
			continue;
		}
		if (seen & (1u << f))
			return BAD;
		seen |= 1u << f;
		if (rd_u32(r, &v[f]))
			return BAD;
	}
	return 0;
}

/* What pass 1 learns: where every top-level string is (NULL = absent),
 * the numbers, where the tool-call array's elements start, and how many
 * bytes the result block needs. */
typedef struct sc_scan {
	const uint8_t *str[F_COUNT];
	size_t len[F_COUNT];
	uint32_t usage[U_COUNT];
	uint32_t latency;
	const uint8_t *tc;
	uint32_t n_tc;
	size_t size;
} sc_scan;

/* Read the value of top-level field f.  On return the reader is past it. */
static int rd_field(sc_rd *r, int f, sc_scan *sc)
{
	uint32_t v;
	sc_item it;

	switch (f) {
	case F_V:
		if (rd_u32(r, &v) || v != SC_CODEC_VERSION)
			return BAD;
		return 0;
	case F_NS: case F_KEY: case F_SCOPE: case F_CONTENT: case F_MODEL:
	case F_FINISH: case F_REASONING: case F_METADATA:
		if ((NILLABLE_MASK & (1u << f)) && rd_nil(r))
			return 0;
		return rd_text(r, &sc->str[f], &sc->len[f]);
	case F_USAGE:
		return rd_usage(r, sc->usage);
	case F_LATENCY:
		return rd_u32(r, &sc->latency);
	case F_TOOL_CALLS:
		if (rd_nil(r))
			return 0;
		if (sc_rd_item(r, &it) || it.kind != K_ARRAY || it.u > SC_CODEC_MAX_TOOL_CALLS)
			return BAD;
		sc->tc = r->p;
		sc->n_tc = (uint32_t)it.u;
		for (uint32_t i = 0; i < sc->n_tc; i++) {
			const uint8_t *s[T_COUNT];
			size_t n[T_COUNT];

			if (rd_tool_call(r, s, n))
				return BAD;
			sc->size += n[T_ID] + n[T_NAME] + n[T_ARGUMENTS] + 3;
		}
		sc->size += (size_t)sc->n_tc * sizeof(semcache_tool_call);
		return 0;
	default:
		return BAD;
	}
}

/* How far scan_record() goes: the whole record (decode), the identity only
 * (peek), or up to the "content" key with the identity before it (zero-copy:
 * *content_at is then where the content's str header starts). */
enum scan_mode { SCAN_ALL, SCAN_IDS, SCAN_TO_CONTENT };

/* Pass 1: validate buf and fill sc, as far as mode asks, walking (and
 * validating) everything before that point. */
static int scan_record(const void *buf, size_t len, sc_scan *sc, enum scan_mode mode,
                       const uint8_t **content_at)
{
	sc_rd r = { buf, (const uint8_t *)buf + len };
	sc_item it;
	unsigned seen = 0;
	bool ids_only = mode != SCAN_ALL;

	memset(sc, 0, sizeof(*sc));
	if (sc_rd_item(&r, &it) || it.kind != K_MAP)
		return BAD;
	for (uint64_t i = 0; i < it.u; i++) {
		const uint8_t *k;
		size_t kn;
		int f;

		if (mode == SCAN_IDS && seen == IDS_MASK)
			return 0;
		if (rd_str(&r, &k, &kn))
			return BAD;
		f = top_field(k, kn);
		if (mode == SCAN_TO_CONTENT && f == F_CONTENT) {
			if (seen != IDS_MASK)
				return BAD;
			*content_at = r.p;
			return 0;
		}
		if (f < 0 || (ids_only && !(IDS_MASK & (1u << f)))) {
			if (sc_rd_skip(&r, 2))
				return BAD;
			continue;
		}
		if (seen & (1u << f))
			return BAD;
		seen |= 1u << f;
		if (rd_field(&r, f, sc))
			return BAD;
	}
	if (mode == SCAN_IDS)
		return (seen & IDS_MASK) == IDS_MASK ? 0 : BAD;
	if (mode == SCAN_TO_CONTENT || (seen & REQUIRED_MASK) != REQUIRED_MASK || r.p != r.end)
		return BAD;
	return 0;
}

static void fill_ids(const sc_scan *sc, sc_ids *ids)
{
	ids->ns = (const char *)sc->str[F_NS];
	ids->ns_len = sc->len[F_NS];
	ids->key = (const char *)sc->str[F_KEY];
	ids->key_len = sc->len[F_KEY];
	ids->scope = (const char *)sc->str[F_SCOPE];
	ids->scope_len = sc->len[F_SCOPE];
}

/* Copy n bytes of s to *sp as a C string and step *sp past its NUL. */
static const char *put_str(char **sp, const uint8_t *s, size_t n)
{
	char *d = *sp;

	if (n)
		memcpy(d, s, n);
	d[n] = '\0';
	*sp = d + n + 1;
	return d;
}

/* ------------------------------------------------------------------------
 * Public entry points
 * ---------------------------------------------------------------------- */
/* idcopy, when given, receives copies of ns, key and scope made inside the
 * one allocation (see sc_codec_decode_with_ids). */
static int decode(const void *buf, size_t len, semcache_response **out, sc_ids *ids,
                  const char *idcopy[3])
{
	static const int texts[] = { F_CONTENT, F_MODEL, F_FINISH, F_REASONING, F_METADATA };
	const char *txt[F_COUNT] = { 0 };
	semcache_response *res = NULL;
	semcache_tool_call *tc;
	sc_scan sc;
	size_t head;
	char *sp;
	int rc;

	if (!out)
		return -EINVAL;
	*out = NULL;
	if (!buf)
		return -EINVAL;

	rc = scan_record(buf, len, &sc, SCAN_ALL, NULL);
	if (rc)
		goto out;

	/* The tool-call array starts right after the struct, rounded up to its
	 * alignment; pass 1 already counted the array and the tool-call strings
	 * into sc.size. */
	head = (sizeof(semcache_response) + _Alignof(semcache_tool_call) - 1) &
	       ~(size_t)(_Alignof(semcache_tool_call) - 1);
	sc.size += head;
	for (size_t i = 0; i < sizeof(texts) / sizeof(texts[0]); i++)
		if (sc.str[texts[i]])
			sc.size += sc.len[texts[i]] + 1;
	if (idcopy)
		sc.size += sc.len[F_NS] + sc.len[F_KEY] + sc.len[F_SCOPE] + 3;

	res = malloc(sc.size);
	if (!res) {
		rc = -ENOMEM;
		goto out;
	}
	tc = (semcache_tool_call *)(void *)((char *)res + head); /* head is aligned */
	sp = (char *)(tc + sc.n_tc);

	for (size_t i = 0; i < sizeof(texts) / sizeof(texts[0]); i++)
		if (sc.str[texts[i]])
			txt[texts[i]] = put_str(&sp, sc.str[texts[i]], sc.len[texts[i]]);
	if (idcopy) {
		/* scan_record() saw all three (REQUIRED_MASK includes them) */
		idcopy[0] = put_str(&sp, sc.str[F_NS], sc.len[F_NS]);
		idcopy[1] = put_str(&sp, sc.str[F_KEY], sc.len[F_KEY]);
		idcopy[2] = put_str(&sp, sc.str[F_SCOPE], sc.len[F_SCOPE]);
	}

	/* Pass 2 over the tool calls only: pass 1 validated them, so a failure
	 * here would mean a bug, and it is still reported rather than trusted. */
	if (sc.n_tc) {
		sc_rd r = { sc.tc, (const uint8_t *)buf + len };

		for (uint32_t i = 0; i < sc.n_tc; i++) {
			const uint8_t *s[T_COUNT];
			size_t n[T_COUNT];

			rc = rd_tool_call(&r, s, n);
			if (rc)
				goto out;
			tc[i].id = put_str(&sp, s[T_ID], n[T_ID]);
			tc[i].name = put_str(&sp, s[T_NAME], n[T_NAME]);
			tc[i].arguments = put_str(&sp, s[T_ARGUMENTS], n[T_ARGUMENTS]);
		}
	}

	*res = (semcache_response){
		.content = txt[F_CONTENT],
		.model = txt[F_MODEL],
		.prompt_tokens = sc.usage[U_PROMPT],
		.completion_tokens = sc.usage[U_COMPLETION],
		.tool_calls = sc.n_tc ? tc : NULL,
		.n_tool_calls = sc.n_tc,
		.latency_ms = sc.latency,
		.finish_reason = txt[F_FINISH],
		.reasoning = txt[F_REASONING],
		.metadata = txt[F_METADATA],
	};
	if (ids)
		fill_ids(&sc, ids);
	*out = res;
	res = NULL;
	rc = 0;
out:
	free(res);
	return rc;
}

int sc_codec_decode(const void *buf, size_t len, semcache_response **out, sc_ids *ids)
{
	return decode(buf, len, out, ids, NULL);
}

int sc_codec_decode_with_ids(const void *buf, size_t len, semcache_response **out,
                             const char **ns, const char **key, const char **scope)
{
	const char *idcopy[3] = { NULL, NULL, NULL };

	if (!ns || !key || !scope)
		return -EINVAL;
	int rc = decode(buf, len, out, NULL, idcopy);
	*ns = idcopy[0];
	*key = idcopy[1];
	*scope = idcopy[2];
	return rc;
}

int sc_codec_peek_ids(const void *buf, size_t len, sc_ids *ids)
{
	sc_scan sc;
	int rc;

	if (!buf || !ids)
		return -EINVAL;
	rc = scan_record(buf, len, &sc, SCAN_IDS, NULL);
	if (rc == 0)
		fill_ids(&sc, ids);
	return rc;
}

/* Every decoded response is one block from sc_codec_decode(). */
SEMCACHE_API void semcache_response_free(semcache_response *r)
{
	free(r);
}

/*
 * Zero-copy support: find the identity and where the content string's bytes
 * lie, reading only a prefix of the record (the content bytes themselves
 * may lie beyond it, in blocks the caller hands out in place).  Walks the
 * entries in order, validating each one it passes as peek does, until the
 * "content" key; the identity must come before it (this encoder's order).
 */
int sc_codec_content_span(const void *prefix, size_t prefix_len, size_t total_len,
                          sc_ids *ids, size_t *off, size_t *clen)
{
	const uint8_t *p = NULL, *end = (const uint8_t *)prefix + prefix_len;
	sc_scan sc;
	size_t hdr, n;

	if (!prefix || !ids || !off || !clen || prefix_len > total_len)
		return -EINVAL;
	if (scan_record(prefix, prefix_len, &sc, SCAN_TO_CONTENT, &p) || p >= end)
		return BAD;
	/* The str header only (its bytes may lie beyond the prefix): fixstr,
	 * str8, str16, str32. */
	if ((*p & 0xe0) == 0xa0) {
		hdr = 1;
		n = *p & 0x1f;
	} else if (*p >= 0xd9 && *p <= 0xdb) {
		unsigned w = 1u << (*p - 0xd9);
		hdr = 1 + w;
		if ((size_t)(end - p) < hdr)
			return BAD;
		n = (size_t)ld_be(p + 1, w);
	} else {
		return BAD;
	}
	size_t start = (size_t)(p - (const uint8_t *)prefix) + hdr;
	if (start > total_len || n > total_len - start)
		return BAD;
	fill_ids(&sc, ids);
	*off = start;
	*clen = n;
	return 0;
}
