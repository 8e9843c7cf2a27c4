/*
 * test_redis_codec.c - unit tests of the Redis tier's key names, ids and
 * value codecs (backends/redis_codec.c), of the error-reply classes and
 * of the reconnect backoff (backends/redis_conn.c).  No server needed.
 *
 * Hostile native entries are built with msgpack-c's packer from a table of
 * fields, so each test changes one thing of an otherwise valid entry and
 * the rejection it checks is that one thing's.
 */
#include <criterion/criterion.h>
#include <errno.h>
#include <float.h>
#include <jansson.h>
#include <math.h>
#include <msgpack.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "codec.h"
#include "redis_codec.h"
#include "redis_conn.h"
#include "semcache.h"

#define BAD SEMCACHE_EBADRECORD

/* ------------------------------------------------------------------------
 * Helpers
 * ---------------------------------------------------------------------- */

static const semcache_tool_call calls[] = {
	{ "call_1", "get_weather", "{\"city\":\"Paris\"}" },
	{ "call_2", "get_time", "{}" },
};

static semcache_response sample(void)
{
	return (semcache_response){
		.content = "The weather in Paris is sunny.",
		.model = "gpt-4o-mini",
		.prompt_tokens = 70000,
		.completion_tokens = 300,
		.tool_calls = calls,
		.n_tool_calls = 2,
		.latency_ms = 1234,
	};
}

static sc_buf record(const char *ns, const char *key, const char *scope)
{
	semcache_response r = sample();
	sc_buf b = { 0 };

	cr_assert_eq(sc_codec_encode(ns, key, scope, &r, 1u << 20, &b), 0);
	return b;
}

static sc_rentry entry_for(const sc_buf *payload)
{
	return (sc_rentry){
		.ns = "tenant", .ns_len = 6, .key = "k1", .key_len = 2,
		.scope = "gpt", .scope_len = 3,
		.created_ms = 1700000000000, .exact_expiry_ms = 1700003600000,
		.semantic_expiry_ms = INT64_MAX, .hits = 7,
		.payload = payload->data, .payload_len = payload->len,
	};
}

/* One field of a hand-built native entry: name, then how to write it. */
enum vk { V_UINT, V_INT, V_STR, V_BIN, V_NIL, V_RAW };
typedef struct field {
	const char *name;
	enum vk kind;
	int64_t i;
	const void *s;
	size_t n;
} field;

static int sbuf_write(void *data, const char *buf, size_t len)
{
	return msgpack_sbuffer_write(data, buf, len);
}

/* The valid entry as a field table; tests edit a copy. */
static size_t good_fields(field *f, const sc_buf *payload)
{
	size_t n = 0;

	f[n++] = (field){ "v", V_UINT, 1, NULL, 0 };
	f[n++] = (field){ "ns", V_STR, 0, "tenant", 6 };
	f[n++] = (field){ "key", V_STR, 0, "k1", 2 };
	f[n++] = (field){ "scope", V_STR, 0, "gpt", 3 };
	f[n++] = (field){ "created_ms", V_INT, 1000, NULL, 0 };
	f[n++] = (field){ "exact_expiry_ms", V_INT, 2000, NULL, 0 };
	f[n++] = (field){ "semantic_expiry_ms", V_INT, 3000, NULL, 0 };
	f[n++] = (field){ "hits", V_UINT, 5, NULL, 0 };
	f[n++] = (field){ "payload", V_BIN, 0, payload->data, payload->len };
	return n;
}

static msgpack_sbuffer pack_fields(const field *f, size_t n)
{
	msgpack_sbuffer sb;
	msgpack_packer pk;

	msgpack_sbuffer_init(&sb);
	msgpack_packer_init(&pk, &sb, sbuf_write);
	msgpack_pack_map(&pk, n);
	for (size_t i = 0; i < n; i++) {
		msgpack_pack_str_with_body(&pk, f[i].name, strlen(f[i].name));
		switch (f[i].kind) {
		case V_UINT: msgpack_pack_uint64(&pk, (uint64_t)f[i].i); break;
		case V_INT: msgpack_pack_int64(&pk, f[i].i); break;
		case V_STR: msgpack_pack_str_with_body(&pk, f[i].s, f[i].n); break;
		case V_BIN: msgpack_pack_bin_with_body(&pk, f[i].s, f[i].n); break;
		case V_NIL: msgpack_pack_nil(&pk); break;
		case V_RAW: msgpack_sbuffer_write(&sb, f[i].s, f[i].n); break;
		}
	}
	return sb;
}

static int decode_fields(const field *f, size_t n)
{
	msgpack_sbuffer sb = pack_fields(f, n);
	sc_rentry e;
	semcache_response *r = (semcache_response *)1;
	int rc = sc_rnative_decode(sb.data, sb.size, NULL, &e, &r);

	if (rc)
		cr_assert_null(r, "a failed decode hands out no response");
	semcache_response_free(r);
	msgpack_sbuffer_destroy(&sb);
	return rc;
}

/* ------------------------------------------------------------------------
 * Ids and key names
 * ---------------------------------------------------------------------- */

Test(redis_ids, native_id_is_hex_of_key_digest_and_separates_namespaces)
{
	char a[65], b[65], c[65];

	cr_assert_eq(sc_rid_native("ns1", "key", a), 0);
	cr_assert_eq(sc_rid_native("ns1", "key", b), 0);
	cr_assert_eq(sc_rid_native("ns2", "key", c), 0);
	cr_assert_eq(strlen(a), 64);
	cr_assert_eq(sc_rid_check(SC_RFMT_NATIVE, a, 64), 0);
	cr_assert_str_eq(a, b);
	cr_assert_str_neq(a, c);
}

Test(redis_ids, native_check_rejects_wrong_length_case_and_charset)
{
	char id[66];

	memset(id, 'a', sizeof id);
	cr_assert_eq(sc_rid_check(SC_RFMT_NATIVE, id, 64), 0);
	cr_assert_eq(sc_rid_check(SC_RFMT_NATIVE, id, 63), BAD);
	cr_assert_eq(sc_rid_check(SC_RFMT_NATIVE, id, 65), BAD);
	id[10] = 'A';
	cr_assert_eq(sc_rid_check(SC_RFMT_NATIVE, id, 64), BAD);
	id[10] = 'g';
	cr_assert_eq(sc_rid_check(SC_RFMT_NATIVE, id, 64), BAD);
	id[10] = '\0';
	cr_assert_eq(sc_rid_check(SC_RFMT_NATIVE, id, 64), BAD);
	cr_assert_eq(sc_rid_check(SC_RFMT_NATIVE, NULL, 64), BAD);
}

Test(redis_ids, seed_check_accepts_printable_and_rejects_the_rest)
{
	char longid[SC_RID_SEED_MAX + 2];

	cr_assert_eq(sc_rid_check(SC_RFMT_SEED, "user:42/q#1", 11), 0);
	cr_assert_eq(sc_rid_check(SC_RFMT_SEED, "", 0), BAD);
	cr_assert_eq(sc_rid_check(SC_RFMT_SEED, "a b", 3), BAD);
	cr_assert_eq(sc_rid_check(SC_RFMT_SEED, "a\nb", 3), BAD);
	cr_assert_eq(sc_rid_check(SC_RFMT_SEED, "a\x7f", 2), BAD);
	cr_assert_eq(sc_rid_check(SC_RFMT_SEED, "a\0b", 3), BAD);
	cr_assert_eq(sc_rid_check(SC_RFMT_SEED, "\xc3\xa9", 2), BAD);
	memset(longid, 'x', sizeof longid);
	cr_assert_eq(sc_rid_check(SC_RFMT_SEED, longid, SC_RID_SEED_MAX), 0);
	cr_assert_eq(sc_rid_check(SC_RFMT_SEED, longid, SC_RID_SEED_MAX + 1), BAD);
}

Test(redis_keys, build_and_parse_round_trip_every_kind)
{
	static const enum sc_rkey_kind kinds[] = { SC_RKEY_ENTRY, SC_RKEY_EMB, SC_RKEY_INDEX };
	static const char *const want[] = { "app1:llm_cache:q-1", "app1:llm_cache_emb:q-1",
	                                    "app1:llm_cache_index" };
	sc_buf b = { 0 };

	for (int i = 0; i < 3; i++) {
		enum sc_rkey_kind k;
		const char *id;
		size_t idl;

		cr_assert_eq(sc_rkey_build("app1:", kinds[i], SC_RFMT_SEED, "q-1", 3, &b), 0);
		cr_assert_str_eq(b.data, want[i]);
		cr_assert_eq(b.len, strlen(want[i]));
		cr_assert_eq(sc_rkey_parse("app1:", SC_RFMT_SEED, b.data, b.len, &k, &id, &idl), 0);
		cr_assert_eq(k, kinds[i]);
		if (kinds[i] == SC_RKEY_INDEX)
			cr_assert_null(id);
		else
			cr_assert(idl == 3 && memcmp(id, "q-1", 3) == 0);
	}
	/* The empty prefix is the reference design's default. */
	cr_assert_eq(sc_rkey_build("", SC_RKEY_INDEX, SC_RFMT_SEED, NULL, 0, &b), 0);
	cr_assert_str_eq(b.data, "llm_cache_index");
	free(b.data);
}

Test(redis_keys, parse_rejects_foreign_and_malformed_names)
{
	static const char *const bad[] = {
		"other:llm_cache:q",          /* another prefix */
		"app1:llm_cachex:q",          /* unknown kind */
		"app1:llm_cache:",            /* empty id */
		"app1:llm_cache:a b",         /* space in id */
		"app1:llm_cache_indexes",     /* index name with a tail */
		"app1:llm_cache_emb",         /* no separator */
		"app1:",
	};
	enum sc_rkey_kind k;
	const char *id;
	size_t idl;

	for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
		cr_assert_eq(sc_rkey_parse("app1:", SC_RFMT_SEED, bad[i], strlen(bad[i]), &k, &id,
		                           &idl), BAD, "%s", bad[i]);
	/* A seed-looking id under the native format is refused. */
	cr_assert_eq(sc_rkey_parse("", SC_RFMT_NATIVE, "llm_cache:q-1", 13, &k, &id, &idl), BAD);
}

Test(redis_keys, build_rejects_bad_prefix_and_id)
{
	char longp[SC_RPREFIX_MAX + 2];
	sc_buf b = { 0 };

	memset(longp, 'p', sizeof longp - 1);
	longp[sizeof longp - 1] = '\0';
	cr_assert_eq(sc_rkey_build("a b", SC_RKEY_INDEX, SC_RFMT_SEED, NULL, 0, &b), -EINVAL);
	cr_assert_eq(sc_rkey_build(longp, SC_RKEY_INDEX, SC_RFMT_SEED, NULL, 0, &b), -EINVAL);
	cr_assert_eq(sc_rkey_build("", SC_RKEY_ENTRY, SC_RFMT_SEED, "a\tb", 3, &b), -EINVAL);
	cr_assert_eq(sc_rkey_build("", SC_RKEY_ENTRY, SC_RFMT_NATIVE, "abc", 3, &b), -EINVAL);
	free(b.data);
}

/* ------------------------------------------------------------------------
 * Native entries
 * ---------------------------------------------------------------------- */

Test(redis_native, entry_round_trips_with_payload_and_id)
{
	sc_buf p = record("tenant", "k1", "gpt"), out = { 0 };
	sc_rentry e = entry_for(&p), d;
	semcache_response *r = NULL;
	char id[65];

	cr_assert_eq(sc_rnative_encode(&e, 1u << 20, &out), 0);
	cr_assert_eq(sc_rid_native("tenant", "k1", id), 0);
	cr_assert_eq(sc_rnative_decode(out.data, out.len, id, &d, &r), 0);
	cr_assert(d.ns_len == 6 && memcmp(d.ns, "tenant", 6) == 0);
	cr_assert(d.key_len == 2 && memcmp(d.key, "k1", 2) == 0);
	cr_assert(d.scope_len == 3 && memcmp(d.scope, "gpt", 3) == 0);
	cr_assert_eq(d.created_ms, e.created_ms);
	cr_assert_eq(d.exact_expiry_ms, e.exact_expiry_ms);
	cr_assert_eq(d.semantic_expiry_ms, INT64_MAX);
	cr_assert_eq(d.hits, 7);
	cr_assert(d.payload_len == p.len && memcmp(d.payload, p.data, p.len) == 0);
	cr_assert_not_null(r);
	cr_assert_str_eq(r->content, "The weather in Paris is sunny.");
	cr_assert_eq(r->n_tool_calls, 2);
	cr_assert_str_eq(r->tool_calls[0].arguments, "{\"city\":\"Paris\"}");
	semcache_response_free(r);
	free(out.data);
	free(p.data);
}

Test(redis_native, origin_is_optional_round_trips_and_is_bounded)
{
	sc_buf p = record("tenant", "k1", "gpt"), out = { 0 };
	sc_rentry e = entry_for(&p), d;
	char big[SC_RORIGIN_MAX + 2];

	/* without: decodes with none (values written before the field) */
	cr_assert_eq(sc_rnative_encode(&e, 1u << 20, &out), 0);
	cr_assert_eq(sc_rnative_decode(out.data, out.len, NULL, &d, NULL), 0);
	cr_assert_eq(d.origin_len, 0);
	cr_assert_null(d.origin);
	/* with: comes back as written */
	e.origin = "0123456789abcdef0123456789abcdef";
	e.origin_len = 32;
	cr_assert_eq(sc_rnative_encode(&e, 1u << 20, &out), 0);
	cr_assert_eq(sc_rnative_decode(out.data, out.len, NULL, &d, NULL), 0);
	cr_assert(d.origin_len == 32 && memcmp(d.origin, e.origin, 32) == 0);
	/* over the cap, or with a NUL: refused on both sides */
	memset(big, 'a', sizeof big);
	e.origin = big;
	e.origin_len = SC_RORIGIN_MAX + 1;
	cr_assert_eq(sc_rnative_encode(&e, 1u << 20, &out), -EINVAL);
	e.origin = "ab\0cd";
	e.origin_len = 5;
	cr_assert_eq(sc_rnative_encode(&e, 1u << 20, &out), -EINVAL);
	free(out.data);
	free(p.data);
}

Test(redis_native, entry_under_another_id_is_refused)
{
	sc_buf p = record("tenant", "k1", "gpt"), out = { 0 };
	sc_rentry e = entry_for(&p), d;
	char other[65];

	cr_assert_eq(sc_rnative_encode(&e, 1u << 20, &out), 0);
	cr_assert_eq(sc_rid_native("tenant", "k2", other), 0);
	cr_assert_eq(sc_rnative_decode(out.data, out.len, other, &d, NULL), BAD);
	free(out.data);
	free(p.data);
}

Test(redis_native, encode_refuses_mismatched_payload_bad_times_and_oversize)
{
	sc_buf p = record("tenant", "OTHER", "gpt"), q = record("tenant", "k1", "gpt"), out = { 0 };
	sc_rentry e = entry_for(&p);

	cr_assert_eq(sc_rnative_encode(&e, 1u << 20, &out), BAD);
	e = entry_for(&q);
	e.exact_expiry_ms = e.created_ms - 1;
	cr_assert_eq(sc_rnative_encode(&e, 1u << 20, &out), BAD);
	e = entry_for(&q);
	e.created_ms = -5;
	cr_assert_eq(sc_rnative_encode(&e, 1u << 20, &out), BAD);
	e = entry_for(&q);
	cr_assert_eq(sc_rnative_encode(&e, 16, &out), -E2BIG);
	cr_assert_eq(sc_rnative_encode(&e, q.len + 200, &out), 0, "room enough is accepted");
	free(out.data);
	free(p.data);
	free(q.data);
}

Test(redis_native, hand_built_valid_entry_decodes)
{
	sc_buf p = record("tenant", "k1", "gpt");
	field f[12];
	size_t n = good_fields(f, &p);

	cr_assert_eq(decode_fields(f, n), 0);
	/* Keys in another order, and an unknown key with a nested value, are
	 * what a later writer may send. */
	field t = f[0];
	f[0] = f[n - 1];
	f[n - 1] = t;
	static const uint8_t nested[] = { 0x81, 0xa1, 'x', 0x92, 0x01, 0xc0 };
	f[n] = (field){ "future", V_RAW, 0, nested, sizeof nested };
	cr_assert_eq(decode_fields(f, n + 1), 0);
	free(p.data);
}

Test(redis_native, every_missing_field_is_refused)
{
	sc_buf p = record("tenant", "k1", "gpt");
	field f[12], g[12];
	size_t n = good_fields(f, &p);

	for (size_t drop = 0; drop < n; drop++) {
		size_t m = 0;
		for (size_t i = 0; i < n; i++)
			if (i != drop)
				g[m++] = f[i];
		cr_assert_eq(decode_fields(g, m), BAD, "without %s", f[drop].name);
	}
	free(p.data);
}

Test(redis_native, duplicate_field_is_refused)
{
	sc_buf p = record("tenant", "k1", "gpt");
	field f[12];
	size_t n = good_fields(f, &p);

	f[n] = f[4]; /* created_ms twice, even with the same value */
	cr_assert_eq(decode_fields(f, n + 1), BAD);
	free(p.data);
}

Test(redis_native, wrong_types_and_values_are_refused)
{
	sc_buf p = record("tenant", "k1", "gpt"), other = record("tenant", "zz", "gpt");
	static const uint8_t junk[] = { 0x93, 0x01, 0x02 };
	struct { size_t at; field with; const char *why; } cases[] = {
		{ 0, { "v", V_UINT, 2, NULL, 0 }, "version 2" },
		{ 0, { "v", V_STR, 0, "1", 1 }, "version as text" },
		{ 1, { "ns", V_UINT, 1, NULL, 0 }, "ns not a string" },
		{ 1, { "ns", V_STR, 0, "ten\0ant", 7 }, "ns with NUL" },
		{ 1, { "ns", V_STR, 0, "tenanx", 6 }, "ns differs from the payload's" },
		{ 2, { "key", V_NIL, 0, NULL, 0 }, "key nil" },
		{ 3, { "scope", V_STR, 0, "other", 5 }, "scope differs from the payload's" },
		{ 4, { "created_ms", V_INT, -1, NULL, 0 }, "negative created" },
		{ 4, { "created_ms", V_STR, 0, "1", 1 }, "created as text" },
		{ 5, { "exact_expiry_ms", V_INT, 999, NULL, 0 }, "expiry before created" },
		{ 6, { "semantic_expiry_ms", V_INT, -3000, NULL, 0 }, "negative expiry" },
		{ 7, { "hits", V_INT, -5, NULL, 0 }, "negative hits" },
		{ 8, { "payload", V_STR, 0, p.data, p.len }, "payload as str, not bin" },
		{ 8, { "payload", V_BIN, 0, "", 0 }, "empty payload" },
		{ 8, { "payload", V_BIN, 0, junk, sizeof junk }, "payload not a record" },
		{ 8, { "payload", V_BIN, 0, other.data, other.len }, "payload of another key" },
	};

	for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
		field f[12];
		size_t n = good_fields(f, &p);

		f[cases[c].at] = cases[c].with;
		cr_assert_eq(decode_fields(f, n), BAD, "%s", cases[c].why);
	}
	free(p.data);
	free(other.data);
}

Test(redis_native, every_truncation_and_a_trailing_byte_are_refused)
{
	sc_buf p = record("tenant", "k1", "gpt"), out = { 0 };
	sc_rentry e = entry_for(&p), d;
	char *copy;

	cr_assert_eq(sc_rnative_encode(&e, 1u << 20, &out), 0);
	for (size_t len = 0; len < out.len; len++) {
		copy = malloc(len ? len : 1); /* exact size: ASan sees any overread */
		memcpy(copy, out.data, len);
		cr_assert_eq(sc_rnative_decode(copy, len, NULL, &d, NULL), BAD, "prefix %zu", len);
		free(copy);
	}
	copy = malloc(out.len + 1);
	memcpy(copy, out.data, out.len);
	copy[out.len] = 0x00;
	cr_assert_eq(sc_rnative_decode(copy, out.len + 1, NULL, &d, NULL), BAD);
	free(copy);
	free(out.data);
	free(p.data);
}

Test(redis_native, huge_declared_counts_cost_nothing)
{
	/* msgpack-c issue 1013's shape: a 5-byte array32 header claiming 2^32-1
	 * elements; and the same as map32, str32 and bin32 lengths. */
	static const uint8_t inputs[][6] = {
		{ 0xdd, 0xff, 0xff, 0xff, 0xff, 0 }, { 0xdf, 0xff, 0xff, 0xff, 0xff, 0 },
		{ 0x81, 0xdb, 0xff, 0xff, 0xff, 0xff }, { 0x81, 0xa1, 'v', 0xc6, 0xff, 0xff },
	};
	sc_rentry d;

	for (size_t i = 0; i < sizeof inputs / sizeof inputs[0]; i++)
		cr_assert_eq(sc_rnative_decode(inputs[i], 6, NULL, &d, NULL), BAD);
}

Test(redis_native, nesting_beyond_the_cap_is_refused)
{
	sc_buf p = record("tenant", "k1", "gpt");
	uint8_t deep[40];
	field f[12];
	size_t n = good_fields(f, &p);

	/* 20 nested one-element arrays around a nil, under an unknown key */
	memset(deep, 0x91, 20);
	deep[20] = 0xc0;
	f[n] = (field){ "deep", V_RAW, 0, deep, 21 };
	cr_assert_eq(decode_fields(f, n + 1), BAD);
	free(p.data);
}

/* ------------------------------------------------------------------------
 * Native embeddings
 * ---------------------------------------------------------------------- */

Test(redis_emb, raw_float32_round_trips_little_endian)
{
	float v[3] = { 1.0f, -0.5f, 3.25f }, w[3];
	sc_buf b = { 0 };

	cr_assert_eq(sc_remb_encode(v, 3, &b), 0);
	cr_assert_eq(b.len, 12);
	cr_assert(memcmp(b.data, "\x00\x00\x80\x3f", 4) == 0, "1.0f little-endian");
	cr_assert_eq(sc_remb_decode(b.data, b.len, 3, w), 0);
	cr_assert(memcmp(v, w, sizeof v) == 0);
	free(b.data);
}

Test(redis_emb, wrong_length_nonfinite_and_zero_are_refused)
{
	float v[2] = { 1.0f, 2.0f }, w[2];
	uint8_t raw[8];
	uint32_t nan_bits = 0x7fc00000u, inf_bits = 0x7f800000u;
	sc_buf b = { 0 };

	memset(raw, 0, sizeof raw);
	cr_assert_eq(sc_remb_decode(raw, 8, 2, w), SEMCACHE_EEMBEDDING, "zero norm");
	cr_assert_eq(sc_remb_decode(raw, 7, 2, w), SEMCACHE_EDIM);
	cr_assert_eq(sc_remb_decode(raw, 12, 2, w), SEMCACHE_EDIM);
	cr_assert_eq(sc_remb_decode(raw, 0, 2, w), SEMCACHE_EDIM);
	for (int i = 0; i < 4; i++)
		raw[i] = (uint8_t)(nan_bits >> (8 * i));
	raw[4] = 0;
	raw[7] = 0x3f;
	cr_assert_eq(sc_remb_decode(raw, 8, 2, w), SEMCACHE_EEMBEDDING, "NaN");
	for (int i = 0; i < 4; i++)
		raw[i] = (uint8_t)(inf_bits >> (8 * i));
	cr_assert_eq(sc_remb_decode(raw, 8, 2, w), SEMCACHE_EEMBEDDING, "Inf");
	cr_assert_eq(sc_remb_decode(raw, 8, 0, w), -EINVAL);
	v[0] = NAN;
	cr_assert_eq(sc_remb_encode(v, 2, &b), SEMCACHE_EEMBEDDING);
	free(b.data);
}

/* ------------------------------------------------------------------------
 * Seed-compatible JSON
 * ---------------------------------------------------------------------- */

static int seed_decode_str(const char *json, uint32_t dim, sc_rseed *s)
{
	int rc = sc_rseed_decode(json, strlen(json), 1u << 20, dim, s);

	if (rc)
		cr_assert(s->response == NULL && s->embedding == NULL, "failure owns nothing");
	return rc;
}

Test(redis_seed, entry_round_trips_through_our_encoder)
{
	semcache_response r = sample();
	float emb[4] = { 0.1f, -0.2f, 0.3f, 1e-7f };
	sc_buf b = { 0 };
	sc_rseed s;

	cr_assert_eq(sc_rseed_encode(&r, NULL, emb, 4, 1700000000123, 9, 1u << 20, &b), 0);
	cr_assert_eq(seed_decode_str(b.data, 4, &s), 0);
	cr_assert_str_eq(s.response->content, r.content);
	cr_assert_str_eq(s.response->model, r.model);
	cr_assert_eq(s.response->prompt_tokens, 70000);
	cr_assert_eq(s.response->completion_tokens, 300);
	cr_assert_eq(s.response->latency_ms, 1234);
	cr_assert_eq(s.response->n_tool_calls, 2);
	cr_assert_str_eq(s.response->tool_calls[1].name, "get_time");
	cr_assert_str_eq(s.response->tool_calls[0].arguments, "{\"city\":\"Paris\"}");
	cr_assert(memcmp(s.embedding, emb, sizeof emb) == 0, "9 digits carry a float32 exactly");
	cr_assert_eq(s.created_ms, 1700000000123);
	cr_assert_eq(s.hit_count, 9);
	sc_rseed_free(&s);
	free(b.data);
}

Test(redis_seed, encoded_entry_has_exactly_the_reference_schema)
{
	semcache_response r = sample();
	float emb[2] = { 0.5f, 0.25f };
	sc_buf b = { 0 };
	json_error_t err;
	json_t *j, *resp;

	cr_assert_eq(sc_rseed_encode(&r, NULL, emb, 2, 1500, 3, 1u << 20, &b), 0);
	j = json_loadb(b.data, b.len, 0, &err);
	cr_assert_not_null(j);
	cr_assert_eq(json_object_size(j), 4);
	resp = json_object_get(j, "response");
	cr_assert_eq(json_object_size(resp), 5);
	cr_assert(json_is_string(json_object_get(resp, "content")));
	cr_assert(json_is_string(json_object_get(resp, "model")));
	cr_assert(json_is_integer(json_object_get(json_object_get(resp, "usage"), "prompt_tokens")));
	cr_assert(json_is_integer(json_object_get(json_object_get(resp, "usage"),
	                                          "completion_tokens")));
	cr_assert_eq(json_array_size(json_object_get(resp, "tool_calls")), 2);
	cr_assert(json_is_integer(json_object_get(resp, "latency_ms")));
	cr_assert_eq(json_array_size(json_object_get(j, "query_embedding")), 2);
	cr_assert(json_is_real(json_object_get(j, "created_at")));
	cr_assert_float_eq(json_real_value(json_object_get(j, "created_at")), 1.5, 1e-9);
	cr_assert(json_is_integer(json_object_get(j, "hit_count")));
	json_decref(j);
	free(b.data);
}

Test(redis_seed, reference_writer_variants_are_accepted)
{
	/* What a Python writer produces: spaces, a float latency, content null
	 * beside tool calls, arguments kept as an object, no hit_count. */
	static const char json[] =
		"{\"response\": {\"content\": null, \"model\": \"gpt-4o\", \"usage\": "
		"{\"prompt_tokens\": 12, \"completion_tokens\": 0}, \"tool_calls\": [{\"id\": "
		"\"c1\", \"name\": \"f\", \"arguments\": {\"a\": [1, 2]}}], \"latency_ms\": 41.6, "
		"\"extra\": true}, \"query_embedding\": [1, 0.5, -2e-3], \"created_at\": "
		"1712345678.25}";
	sc_rseed s;

	cr_assert_eq(seed_decode_str(json, 3, &s), 0);
	cr_assert_str_eq(s.response->content, "");
	cr_assert_str_eq(s.response->tool_calls[0].arguments, "{\"a\":[1,2]}");
	cr_assert_eq(s.response->latency_ms, 42);
	cr_assert_eq(s.hit_count, 0);
	cr_assert_eq(s.created_ms, 1712345678250);
	cr_assert_float_eq(s.embedding[2], -2e-3f, 1e-9);
	sc_rseed_free(&s);
	/* dim 0: validated, not returned; an empty list: no embedding */
	cr_assert_eq(seed_decode_str(json, 0, &s), 0);
	cr_assert_null(s.embedding);
	sc_rseed_free(&s);
}

Test(redis_seed, hostile_entries_are_refused_with_their_code)
{
	/* A valid skeleton with one hole (%s) filled per case. */
#define E(resp, rest) "{\"response\": {" resp "}, " rest "}"
#define R "\"content\": \"x\", \"model\": \"m\""
#define QE "\"query_embedding\": [1, 2]"
#define CA "\"created_at\": 1.5"
	static const struct { const char *json; int rc; } cases[] = {
		{ "", BAD },
		{ "not json", BAD },
		{ "[1, 2]", BAD },
		{ "{\"response\": 1, " QE ", " CA "}", BAD },
		{ "{" QE ", " CA "}", BAD },
		{ E("\"content\": \"x\"", QE ", " CA), BAD },                /* no model */
		{ E("\"content\": 5, \"model\": \"m\"", QE ", " CA), BAD },
		{ E("\"content\": \"a\\u0000b\", \"model\": \"m\"", QE ", " CA), BAD },
		{ E("\"content\": \"\xff\xfe\", \"model\": \"m\"", QE ", " CA), BAD },
		{ E(R ", \"usage\": 3", QE ", " CA), BAD },
		{ E(R ", \"usage\": {\"prompt_tokens\": -1}", QE ", " CA), BAD },
		{ E(R ", \"usage\": {\"prompt_tokens\": 4294967296}", QE ", " CA), BAD },
		{ E(R ", \"usage\": {\"completion_tokens\": 1.5}", QE ", " CA), BAD },
		{ E(R ", \"tool_calls\": {}", QE ", " CA), BAD },
		{ E(R ", \"tool_calls\": [3]", QE ", " CA), BAD },
		{ E(R ", \"tool_calls\": [{\"id\": 1}]", QE ", " CA), BAD },
		{ E(R ", \"tool_calls\": [{\"arguments\": 2}]", QE ", " CA), BAD },
		{ E(R ", \"latency_ms\": -1", QE ", " CA), BAD },
		{ E(R ", \"latency_ms\": \"5\"", QE ", " CA), BAD },
		{ E(R ", \"latency_ms\": 1e300", QE ", " CA), BAD },
		{ E(R, CA), BAD },                                           /* no embedding */
		{ E(R, "\"query_embedding\": 1, " CA), BAD },
		{ E(R, "\"query_embedding\": [1], " CA), SEMCACHE_EDIM },
		{ E(R, "\"query_embedding\": [1, 2, 3], " CA), SEMCACHE_EDIM },
		{ E(R, "\"query_embedding\": [1, \"2\"], " CA), BAD },
		{ E(R, "\"query_embedding\": [0, 0.0], " CA), SEMCACHE_EEMBEDDING },
		{ E(R, "\"query_embedding\": [1, 1e39], " CA), SEMCACHE_EEMBEDDING },
		{ E(R, "\"query_embedding\": [1, NaN], " CA), BAD },
		{ E(R, QE), BAD },                                           /* no created_at */
		{ E(R, QE ", \"created_at\": \"1\""), BAD },
		{ E(R, QE ", \"created_at\": -1"), BAD },
		{ E(R, QE ", \"created_at\": 1e12"), BAD },
		{ E(R, QE ", " CA ", \"hit_count\": -2"), BAD },
		{ E(R, QE ", " CA ", \"hit_count\": 2.5"), BAD },
		{ E(R, QE ", " CA ", \"created_at\": 2"), BAD },            /* duplicate key */
		{ E(R, QE ", " CA) " x", BAD },                              /* trailing bytes */
		{ E(R, QE ", " CA) "{}", BAD },
	};
	sc_rseed s;

	for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++)
		cr_assert_eq(seed_decode_str(cases[i].json, 2, &s), cases[i].rc, "case %zu: %s", i,
		             cases[i].json);
	cr_assert_eq(seed_decode_str(E(R, QE ", " CA), 2, &s), 0, "the skeleton itself is valid");
	sc_rseed_free(&s);
#undef E
#undef R
#undef QE
#undef CA
}

Test(redis_seed, too_many_tool_calls_deep_nesting_and_oversize_are_refused)
{
	size_t cap = 64u << 10, n = 0;
	char *j = malloc(cap);
	sc_rseed s;

	/* 1025 tool calls: one over the core codec's cap */
	n += (size_t)snprintf(j + n, cap - n, "{\"response\": {\"content\": \"x\", \"model\": "
	                                      "\"m\", \"tool_calls\": [");
	for (int i = 0; i <= (int)SC_CODEC_MAX_TOOL_CALLS; i++)
		n += (size_t)snprintf(j + n, cap - n, "%s{}", i ? "," : "");
	n += (size_t)snprintf(j + n, cap - n, "]}, \"query_embedding\": [], \"created_at\": 1}");
	cr_assert_lt(n, cap);
	cr_assert_eq(sc_rseed_decode(j, n, cap, 2, &s), BAD);
	/* the same bytes over the caller's cap are refused before parsing */
	cr_assert_eq(sc_rseed_decode(j, n, n - 1, 2, &s), BAD);

	/* 30000 nested arrays under an unknown key: no stack overflow */
	n = (size_t)snprintf(j, cap, "{\"x\": ");
	memset(j + n, '[', 30000);
	n += 30000;
	memset(j + n, ']', 30000);
	n += 30000;
	n += (size_t)snprintf(j + n, cap - n, "}");
	cr_assert_eq(sc_rseed_decode(j, n, cap, 2, &s), BAD);
	free(j);
}

Test(redis_seed, encoder_refuses_what_json_cannot_carry)
{
	semcache_response r = sample();
	float emb[2] = { 1.0f, INFINITY };
	sc_buf b = { 0 };

	cr_assert_eq(sc_rseed_encode(&r, NULL, emb, 2, 0, 0, 1u << 20, &b), SEMCACHE_EEMBEDDING);
	r.content = "bad \xff utf-8";
	cr_assert_eq(sc_rseed_encode(&r, NULL, NULL, 0, 0, 0, 1u << 20, &b), BAD);
	r = sample();
	cr_assert_eq(sc_rseed_encode(&r, NULL, NULL, 0, 0, 0, 32, &b), -E2BIG);
	cr_assert_eq(sc_rseed_encode(&r, NULL, NULL, 0, -1, 0, 1u << 20, &b), -EINVAL);
	r.model = NULL;
	cr_assert_eq(sc_rseed_encode(&r, NULL, NULL, 0, 0, 0, 1u << 20, &b), BAD);
	free(b.data);
}

Test(redis_seed, embedding_list_round_trips_and_rejects_garbage)
{
	float v[3] = { 0.25f, -1.0f, 3e-5f }, w[3];
	sc_buf b = { 0 };

	cr_assert_eq(sc_rseed_emb_encode(v, 3, &b), 0);
	cr_assert_eq(b.data[0], '[');
	cr_assert_eq(sc_rseed_emb_decode(b.data, b.len, 3, w), 0);
	cr_assert(memcmp(v, w, sizeof v) == 0);
	cr_assert_eq(sc_rseed_emb_decode("[1,2]", 5, 3, w), SEMCACHE_EDIM);
	cr_assert_eq(sc_rseed_emb_decode("[]", 2, 3, w), SEMCACHE_EDIM);
	cr_assert_eq(sc_rseed_emb_decode("[1,2,\"3\"]", 9, 3, w), BAD);
	cr_assert_eq(sc_rseed_emb_decode("{\"a\":1}", 7, 3, w), BAD);
	cr_assert_eq(sc_rseed_emb_decode("[0,0,0]", 7, 3, w), SEMCACHE_EEMBEDDING);
	cr_assert_eq(sc_rseed_emb_decode("[1,2,3] [", 9, 3, w), BAD);
	/* far longer than 3 floats can need: refused unparsed */
	char big[400];
	memset(big, ' ', sizeof big);
	memcpy(big, "[1,2,3", 6);
	big[sizeof big - 1] = ']';
	cr_assert_eq(sc_rseed_emb_decode(big, sizeof big, 3, w), BAD);
	free(b.data);
}

/* ------------------------------------------------------------------------
 * Error classes and backoff (no server needed)
 * ---------------------------------------------------------------------- */

Test(redis_classes, error_replies_map_to_tier_states)
{
	static const struct { const char *s; int rc; } cases[] = {
		{ "OOM command not allowed when used memory > 'maxmemory'.", -ENOSPC },
		{ "READONLY You can't write against a read only replica.", -EROFS },
		{ "NOAUTH Authentication required.", -EACCES },
		{ "WRONGPASS invalid username-password pair or user is disabled.", -EACCES },
		{ "NOPERM this user has no permissions to run the 'set' command", -EACCES },
		{ "ERR invalid password", -EACCES },
		{ "ERR AUTH <password> called without any password configured", -EACCES },
		{ "LOADING Redis is loading the dataset in memory", -EAGAIN },
		{ "BUSY Redis is busy running a script.", -EAGAIN },
		{ "ERR unknown command 'FOO'", -EREMOTEIO },
		{ "OOMX not a word we know", -EREMOTEIO },
		{ "", -EREMOTEIO },
	};

	for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++)
		cr_assert_eq(sc_redis_classify_error(cases[i].s, strlen(cases[i].s)), cases[i].rc,
		             "%s", cases[i].s);
	cr_assert(sc_redis_class_is_down(-ENOSPC));
	cr_assert(sc_redis_class_is_down(-ETIMEDOUT));
	cr_assert_not(sc_redis_class_is_down(-EREMOTEIO));
	cr_assert_not(sc_redis_class_is_down(0));
	cr_assert_str_eq(sc_redis_class_name(-EACCES), "auth");
	cr_assert_str_eq(sc_redis_class_name(-ENOTCONN), "unreachable");
}

Test(redis_backoff, delays_double_with_jitter_up_to_the_cap)
{
	sc_backoff b, c;
	uint32_t nominal = 10;

	sc_backoff_init(&b, 10, 1000, 42);
	sc_backoff_init(&c, 10, 1000, 42);
	for (int k = 0; k < 40; k++) {
		uint32_t d = sc_backoff_next(&b);

		cr_assert(d >= nominal - nominal / 2 && d <= nominal, "attempt %d: %u not in [%u, %u]",
		          k, d, nominal - nominal / 2, nominal);
		cr_assert_eq(d, sc_backoff_next(&c), "same seed, same delays");
		nominal = nominal * 2 > 1000 ? 1000 : nominal * 2;
	}
	sc_backoff_reset(&b);
	cr_assert_leq(sc_backoff_next(&b), 10);
}

Test(redis_backoff, jitter_spreads_hosts_apart)
{
	uint32_t seen[64];
	int distinct = 0;

	/* 64 hosts at their 6th attempt (nominal 640 ms) should not all pick
	 * the same delay. */
	for (int h = 0; h < 64; h++) {
		sc_backoff b;
		sc_backoff_init(&b, 10, 100000, (uint64_t)h + 1);
		for (int k = 0; k < 6; k++)
			(void)sc_backoff_next(&b);
		seen[h] = sc_backoff_next(&b);
		int dup = 0;
		for (int i = 0; i < h; i++)
			dup |= seen[i] == seen[h];
		distinct += !dup;
	}
	cr_assert_gt(distinct, 32);
}
