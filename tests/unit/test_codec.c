/*
 * test_codec.c - unit tests of the response record codec (core/codec.c).
 *
 * Round trips check the encoder and decoder against each other; hostile
 * inputs are built independently with msgpack-c's packer (or by hand where
 * a test needs a form the packer would not choose), so a bug the encoder
 * and decoder share cannot hide.  msgpack-c's unpacker is only used on our
 * own encoder's output, which is trusted, to check the wire format.
 */
#include <criterion/criterion.h>
#include <errno.h>
#include <malloc.h>
#include <msgpack.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "codec.h"
#include "semcache.h"

/* ------------------------------------------------------------------------
 * Helpers
 * ---------------------------------------------------------------------- */

static const semcache_tool_call two_calls[] = {
	{ "call_1", "get_weather", "{\"city\":\"Paris\"}" },
	{ "call_2", "get_time", "{}" },
};

static semcache_response full_record(void)
{
	return (semcache_response){
		.content = "The weather in Paris is sunny.",
		.model = "gpt-4o-mini",
		.prompt_tokens = 70000,
		.completion_tokens = 300,
		.tool_calls = two_calls,
		.n_tool_calls = 2,
		.latency_ms = 1234567,
		.finish_reason = "stop",
		.reasoning = "The user asked about weather.",
		.metadata = "{\"trace\":\"abc\"}",
	};
}

static semcache_response minimal_record(void)
{
	return (semcache_response){ .content = "hi", .model = "m" };
}

/* Encode with a generous max; the buffer is the caller's to free. */
static sc_buf encode_ok(const char *ns, const char *key, const char *scope,
                        const semcache_response *r)
{
	sc_buf b = { 0 };

	cr_assert_eq(sc_codec_encode(ns, key, scope, r, 1u << 24, &b), 0);
	cr_assert_gt(b.len, 0);
	return b;
}

static void assert_str_eq_or_null(const char *got, const char *want)
{
	if (!want)
		cr_assert_null(got);
	else {
		cr_assert_not_null(got);
		cr_assert_str_eq(got, want);
	}
}

static void assert_ids(const sc_ids *ids, const char *ns, const char *key, const char *scope)
{
	cr_assert_eq(ids->ns_len, strlen(ns));
	cr_assert_eq(memcmp(ids->ns, ns, ids->ns_len), 0);
	cr_assert_eq(ids->key_len, strlen(key));
	cr_assert_eq(memcmp(ids->key, key, ids->key_len), 0);
	cr_assert_eq(ids->scope_len, strlen(scope));
	cr_assert_eq(memcmp(ids->scope, scope, ids->scope_len), 0);
}

/* Every pointer of r lies inside the one block r was allocated as. */
static void assert_one_block(const semcache_response *r)
{
	const char *lo = (const char *)r, *hi = lo + malloc_usable_size((void *)r);
#define INSIDE(p) cr_assert((const char *)(p) >= lo && (const char *)(p) < hi, #p " outside block")
	INSIDE(r->content);
	INSIDE(r->model);
	if (r->finish_reason) INSIDE(r->finish_reason);
	if (r->reasoning) INSIDE(r->reasoning);
	if (r->metadata) INSIDE(r->metadata);
	if (r->n_tool_calls) INSIDE(r->tool_calls + r->n_tool_calls - 1);
	for (uint32_t i = 0; i < r->n_tool_calls; i++) {
		INSIDE(r->tool_calls[i].id);
		INSIDE(r->tool_calls[i].name);
		INSIDE(r->tool_calls[i].arguments);
	}
#undef INSIDE
}

static void assert_same_response(const semcache_response *got, const semcache_response *want)
{
	cr_assert_str_eq(got->content, want->content);
	cr_assert_str_eq(got->model, want->model);
	cr_assert_eq(got->prompt_tokens, want->prompt_tokens);
	cr_assert_eq(got->completion_tokens, want->completion_tokens);
	cr_assert_eq(got->latency_ms, want->latency_ms);
	assert_str_eq_or_null(got->finish_reason, want->finish_reason);
	assert_str_eq_or_null(got->reasoning, want->reasoning);
	assert_str_eq_or_null(got->metadata, want->metadata);
	cr_assert_eq(got->n_tool_calls, want->n_tool_calls);
	if (!want->n_tool_calls)
		cr_assert_null(got->tool_calls);
	for (uint32_t i = 0; i < want->n_tool_calls; i++) {
		const semcache_tool_call *w = &want->tool_calls[i];

		assert_str_eq_or_null(got->tool_calls[i].id, w->id ? w->id : "");
		assert_str_eq_or_null(got->tool_calls[i].name, w->name ? w->name : "");
		assert_str_eq_or_null(got->tool_calls[i].arguments, w->arguments ? w->arguments : "");
	}
	assert_one_block(got);
}

static int decode_rc(const void *buf, size_t len)
{
	semcache_response *r = (semcache_response *)1; /* must be reset to NULL on failure */
	int rc = sc_codec_decode(buf, len, &r, NULL);

	if (rc)
		cr_assert_null(r, "failed decode left *out set");
	semcache_response_free(r);
	return rc;
}

/* --- independent record builder on msgpack-c's packer ------------------ */

typedef void (*pack_fn)(msgpack_packer *pk);

typedef struct entry {
	const char *key;
	pack_fn val;
} entry;

static void pk_cstr(msgpack_packer *pk, const char *s)
{
	msgpack_pack_str_with_body(pk, s, strlen(s));
}

static void v_one(msgpack_packer *pk) { msgpack_pack_uint64(pk, 1); }
static void v_two(msgpack_packer *pk) { msgpack_pack_uint64(pk, 2); }
static void v_ns(msgpack_packer *pk) { pk_cstr(pk, "tenant"); }
static void v_key(msgpack_packer *pk) { pk_cstr(pk, "k1"); }
static void v_scope(msgpack_packer *pk) { pk_cstr(pk, "sc"); }
static void v_content(msgpack_packer *pk) { pk_cstr(pk, "hello"); }
static void v_model(msgpack_packer *pk) { pk_cstr(pk, "m"); }
static void v_nil(msgpack_packer *pk) { msgpack_pack_nil(pk); }
static void v_true(msgpack_packer *pk) { msgpack_pack_true(pk); }
static void v_bin(msgpack_packer *pk) { msgpack_pack_bin_with_body(pk, "abc", 3); }
static void v_ext(msgpack_packer *pk) { msgpack_pack_ext_with_body(pk, "abcdefg", 7, 5); }
static void v_fixext(msgpack_packer *pk) { msgpack_pack_ext_with_body(pk, "abcd", 4, -3); }
static void v_float(msgpack_packer *pk) { msgpack_pack_float(pk, 1.0f); }
static void v_double(msgpack_packer *pk) { msgpack_pack_double(pk, 1.0); }
static void v_neg(msgpack_packer *pk) { msgpack_pack_int64(pk, -1); }
static void v_neg_big(msgpack_packer *pk) { msgpack_pack_int64(pk, -100000); }
static void v_neg_int8(msgpack_packer *pk) { msgpack_pack_int64(pk, -100); }      /* d0 */
static void v_neg_int16(msgpack_packer *pk) { msgpack_pack_int64(pk, -1000); }     /* d1 */
static void v_neg_int64(msgpack_packer *pk) { msgpack_pack_int64(pk, INT64_MIN); } /* d3 */
static void v_u33(msgpack_packer *pk) { msgpack_pack_uint64(pk, (uint64_t)UINT32_MAX + 1); }
static void v_u32max(msgpack_packer *pk) { msgpack_pack_uint64(pk, UINT32_MAX); }
static void v_str_nul(msgpack_packer *pk) { msgpack_pack_str_with_body(pk, "a\0b", 3); }
static void v_empty_str(msgpack_packer *pk) { pk_cstr(pk, ""); }
static void v_empty_array(msgpack_packer *pk) { msgpack_pack_array(pk, 0); }
static void v_empty_map(msgpack_packer *pk) { msgpack_pack_map(pk, 0); }

static void v_usage_ok(msgpack_packer *pk)
{
	msgpack_pack_map(pk, 2);
	pk_cstr(pk, "prompt");
	msgpack_pack_uint64(pk, 11);
	pk_cstr(pk, "completion");
	msgpack_pack_uint64(pk, 22);
}

static void v_usage_u33(msgpack_packer *pk)
{
	msgpack_pack_map(pk, 1);
	pk_cstr(pk, "prompt");
	msgpack_pack_uint64(pk, (uint64_t)UINT32_MAX + 1);
}

static void v_usage_neg(msgpack_packer *pk)
{
	msgpack_pack_map(pk, 1);
	pk_cstr(pk, "completion");
	msgpack_pack_int64(pk, -5);
}

static void v_usage_dup(msgpack_packer *pk)
{
	msgpack_pack_map(pk, 2);
	pk_cstr(pk, "prompt");
	msgpack_pack_uint64(pk, 1);
	pk_cstr(pk, "prompt");
	msgpack_pack_uint64(pk, 2);
}

static void v_usage_str(msgpack_packer *pk)
{
	msgpack_pack_map(pk, 1);
	pk_cstr(pk, "prompt");
	pk_cstr(pk, "12");
}

static void v_usage_unknown(msgpack_packer *pk)
{
	msgpack_pack_map(pk, 3);
	pk_cstr(pk, "cached");
	msgpack_pack_array(pk, 2);
	msgpack_pack_double(pk, 0.5);
	msgpack_pack_nil(pk);
	pk_cstr(pk, "prompt");
	msgpack_pack_uint64(pk, 7);
	pk_cstr(pk, "completion");
	msgpack_pack_uint64(pk, 8);
}

/* One of every msgpack type and width, for skipping inside unknown keys:
 * a wrong size for any of them misaligns everything after it. */
static void v_every_type(msgpack_packer *pk)
{
	static const size_t ext_sizes[] = { 1, 2, 4, 8, 16, 3, 300, 70000 };
	static const size_t raw_sizes[] = { 3, 300, 70000 };
	static char body[70000 + 40];

	memset(body, 0xdf, sizeof(body)); /* looks like map32 headers if misread */
	msgpack_pack_array(pk, 8 + 3 + 3 + 15);
	for (size_t i = 0; i < 8; i++)
		msgpack_pack_ext_with_body(pk, body, ext_sizes[i], 1);
	for (size_t i = 0; i < 3; i++)
		msgpack_pack_bin_with_body(pk, body, raw_sizes[i]);
	for (size_t i = 0; i < 3; i++)
		msgpack_pack_str_with_body(pk, body, raw_sizes[i] + 40);
	msgpack_pack_float(pk, 1.5f);
	msgpack_pack_double(pk, 2.5);
	msgpack_pack_int64(pk, -1);
	msgpack_pack_int64(pk, -100);
	msgpack_pack_int64(pk, -1000);
	msgpack_pack_int64(pk, -100000);
	msgpack_pack_int64(pk, INT64_MIN);
	msgpack_pack_uint64(pk, 200);
	msgpack_pack_uint64(pk, 60000);
	msgpack_pack_uint64(pk, 4000000000u);
	msgpack_pack_uint64(pk, UINT64_MAX);
	msgpack_pack_nil(pk);
	msgpack_pack_true(pk);
	msgpack_pack_false(pk);
	msgpack_pack_map(pk, 20);
	for (int i = 0; i < 20; i++) {
		msgpack_pack_int64(pk, i); /* non-string keys are fine in unknown values */
		msgpack_pack_array(pk, 0);
	}
}

static void v_calls_unknown_and_missing(msgpack_packer *pk)
{
	msgpack_pack_array(pk, 2);
	msgpack_pack_map(pk, 3);
	pk_cstr(pk, "type");
	pk_cstr(pk, "function");
	pk_cstr(pk, "name");
	pk_cstr(pk, "f");
	pk_cstr(pk, "extra");
	msgpack_pack_map(pk, 1);
	pk_cstr(pk, "x");
	msgpack_pack_bin_with_body(pk, "\0\1", 2);
	msgpack_pack_map(pk, 0);
}

static void v_calls_dup(msgpack_packer *pk)
{
	msgpack_pack_array(pk, 1);
	msgpack_pack_map(pk, 2);
	pk_cstr(pk, "id");
	pk_cstr(pk, "a");
	pk_cstr(pk, "id");
	pk_cstr(pk, "b");
}

static void v_calls_nul(msgpack_packer *pk)
{
	msgpack_pack_array(pk, 1);
	msgpack_pack_map(pk, 1);
	pk_cstr(pk, "name");
	msgpack_pack_str_with_body(pk, "f\0", 2);
}

static void v_calls_not_map(msgpack_packer *pk)
{
	msgpack_pack_array(pk, 1);
	pk_cstr(pk, "call");
}

static void v_calls_int_id(msgpack_packer *pk)
{
	msgpack_pack_array(pk, 1);
	msgpack_pack_map(pk, 1);
	pk_cstr(pk, "id");
	msgpack_pack_uint64(pk, 3);
}

static void v_calls_1024(msgpack_packer *pk)
{
	msgpack_pack_array(pk, 1024);
	for (int i = 0; i < 1024; i++)
		msgpack_pack_map(pk, 0);
}

static void v_calls_1025(msgpack_packer *pk)
{
	msgpack_pack_array(pk, 1025);
	for (int i = 0; i < 1025; i++)
		msgpack_pack_map(pk, 0);
}

/* The six required fields, in a non-default order (the decoder must not
 * depend on the encoder's order). */
static const entry base[] = {
	{ "model", v_model }, { "content", v_content }, { "scope", v_scope },
	{ "key", v_key }, { "ns", v_ns }, { "v", v_one },
};
#define NBASE (sizeof(base) / sizeof(base[0]))

/* Pack base with field `replace` given value rv (rv NULL = omit it), then
 * the extra entries.  Returns the buffer; free its data. */
static msgpack_sbuffer build(const char *replace, pack_fn rv, const entry *extra, size_t n_extra)
{
	msgpack_sbuffer sb;
	msgpack_packer pk;
	size_t n = 0;

	msgpack_sbuffer_init(&sb);
	msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
	for (size_t i = 0; i < NBASE; i++)
		n += !(replace && strcmp(base[i].key, replace) == 0 && !rv);
	msgpack_pack_map(&pk, (uint32_t)(n + n_extra));
	for (size_t i = 0; i < NBASE; i++) {
		pack_fn f = base[i].val;

		if (replace && strcmp(base[i].key, replace) == 0) {
			if (!rv)
				continue;
			f = rv;
		}
		pk_cstr(&pk, base[i].key);
		f(&pk);
	}
	for (size_t i = 0; i < n_extra; i++) {
		pk_cstr(&pk, extra[i].key);
		extra[i].val(&pk);
	}
	return sb;
}

static int decode_built(const char *replace, pack_fn rv, const entry *extra, size_t n_extra)
{
	msgpack_sbuffer sb = build(replace, rv, extra, n_extra);
	int rc = decode_rc(sb.data, sb.size);

	msgpack_sbuffer_destroy(&sb);
	return rc;
}

static int decode_with_extra(const char *key, pack_fn val)
{
	entry e = { key, val };

	return decode_built(NULL, NULL, &e, 1);
}

/* ------------------------------------------------------------------------
 * Encoding and round trips
 * ---------------------------------------------------------------------- */

Test(codec, roundtrip_full_record)
{
	semcache_response in = full_record(), *out = NULL;
	sc_buf b = encode_ok("tenant-42", "sha256:abcdef", "gpt-4o-mini|t0", &in);
	sc_ids ids;

	cr_assert_eq(sc_codec_decode(b.data, b.len, &out, &ids), 0);
	assert_same_response(out, &in);
	assert_ids(&ids, "tenant-42", "sha256:abcdef", "gpt-4o-mini|t0");
	/* ids point into the encoded bytes, not into the response */
	cr_assert(ids.ns >= b.data && ids.ns + ids.ns_len <= b.data + b.len);
	semcache_response_free(out);
	free(b.data);
}

Test(codec, roundtrip_without_optional_fields)
{
	semcache_response in = minimal_record(), *out = NULL;
	sc_buf b = encode_ok("", "", NULL, &in);
	sc_ids ids;

	cr_assert_eq(sc_codec_decode(b.data, b.len, &out, &ids), 0);
	assert_same_response(out, &in);
	cr_assert_null(out->finish_reason);
	cr_assert_null(out->reasoning);
	cr_assert_null(out->metadata);
	cr_assert_null(out->tool_calls);
	cr_assert_eq(out->n_tool_calls, 0);
	assert_ids(&ids, "", "", ""); /* NULL scope is "" */
	semcache_response_free(out);
	free(b.data);
}

Test(codec, roundtrip_empty_optional_strings_stay_present)
{
	semcache_response in = minimal_record(), *out = NULL;
	in.content = "";
	in.finish_reason = "";
	in.reasoning = "";
	in.metadata = "";
	sc_buf b = encode_ok("n", "k", "s", &in);

	cr_assert_eq(sc_codec_decode(b.data, b.len, &out, NULL), 0);
	assert_same_response(out, &in);
	semcache_response_free(out);
	free(b.data);
}

Test(codec, roundtrip_long_strings_and_extreme_numbers)
{
	/* sizes straddling every str width: fixstr, str8, str16, str32 */
	static const size_t sizes[] = { 31, 32, 255, 256, 65535, 65536, 300000 };
	static const uint32_t nums[] = { 0, 127, 128, 255, 256, 65535, 65536, UINT32_MAX };

	for (size_t i = 0; i < sizeof(sizes) / sizeof(sizes[0]); i++) {
		char *s = malloc(sizes[i] + 1);
		semcache_response in = minimal_record(), *out = NULL;

		memset(s, 'a' + (int)(i % 26), sizes[i]);
		s[sizes[i]] = '\0';
		in.content = s;
		in.metadata = s;
		in.prompt_tokens = nums[i % 8];
		in.completion_tokens = nums[(i + 3) % 8];
		in.latency_ms = nums[7 - i % 8];
		sc_buf b = encode_ok(s, "k", s, &in);
		sc_ids ids;

		cr_assert_eq(sc_codec_decode(b.data, b.len, &out, &ids), 0, "size %zu", sizes[i]);
		assert_same_response(out, &in);
		assert_ids(&ids, s, "k", s);
		semcache_response_free(out);
		free(b.data);
		free(s);
	}
}

Test(codec, tool_calls_roundtrip)
{
	semcache_tool_call calls[SC_CODEC_MAX_TOOL_CALLS];
	char ids[SC_CODEC_MAX_TOOL_CALLS][16];
	semcache_response in = full_record(), *out = NULL;

	for (uint32_t i = 0; i < SC_CODEC_MAX_TOOL_CALLS; i++) {
		snprintf(ids[i], sizeof(ids[i]), "call_%u", i);
		calls[i] = (semcache_tool_call){ ids[i], i % 3 ? "fn" : NULL,
		                                 i % 5 ? "{\"a\":1}" : NULL };
	}
	calls[7].id = NULL;
	in.tool_calls = calls;
	in.n_tool_calls = SC_CODEC_MAX_TOOL_CALLS;
	sc_buf b = encode_ok("n", "k", "s", &in);

	cr_assert_eq(sc_codec_decode(b.data, b.len, &out, NULL), 0);
	assert_same_response(out, &in); /* NULL strings in a call come back "" */
	cr_assert_str_eq(out->tool_calls[7].id, "");
	cr_assert_str_eq(out->tool_calls[0].name, "");
	cr_assert_str_eq(out->tool_calls[1023].id, "call_1023");
	semcache_response_free(out);
	free(b.data);

	/* one tool call */
	in.n_tool_calls = 1;
	b = encode_ok("n", "k", "s", &in);
	cr_assert_eq(sc_codec_decode(b.data, b.len, &out, NULL), 0);
	assert_same_response(out, &in);
	semcache_response_free(out);
	free(b.data);
}

Test(codec, encode_rejects_bad_records)
{
	semcache_tool_call calls[SC_CODEC_MAX_TOOL_CALLS + 1] = { 0 };
	semcache_response r = minimal_record();
	sc_buf b = { 0 };

	r.content = NULL;
	cr_assert_eq(sc_codec_encode("n", "k", "s", &r, 4096, &b), SEMCACHE_EBADRECORD);
	r = minimal_record();
	r.model = NULL;
	cr_assert_eq(sc_codec_encode("n", "k", "s", &r, 4096, &b), SEMCACHE_EBADRECORD);
	r = minimal_record();
	r.n_tool_calls = 1;
	cr_assert_eq(sc_codec_encode("n", "k", "s", &r, 4096, &b), SEMCACHE_EBADRECORD);
	r.tool_calls = calls;
	r.n_tool_calls = SC_CODEC_MAX_TOOL_CALLS + 1;
	cr_assert_eq(sc_codec_encode("n", "k", "s", &r, 1u << 20, &b), SEMCACHE_EBADRECORD);

	r = minimal_record();
	cr_assert_eq(sc_codec_encode(NULL, "k", "s", &r, 4096, &b), -EINVAL);
	cr_assert_eq(sc_codec_encode("n", NULL, "s", &r, 4096, &b), -EINVAL);
	cr_assert_eq(sc_codec_encode("n", "k", "s", NULL, 4096, &b), -EINVAL);
	cr_assert_eq(sc_codec_encode("n", "k", "s", &r, 4096, NULL), -EINVAL);
	free(b.data);
}

Test(codec, encode_respects_max_e2big)
{
	semcache_response in = full_record();
	sc_buf b = encode_ok("ns", "key", "scope", &in);
	size_t exact = b.len;

	/* exactly max fits; one byte less does not, at every buffer state */
	free(b.data);
	b = (sc_buf){ 0 };
	cr_assert_eq(sc_codec_encode("ns", "key", "scope", &in, exact, &b), 0);
	cr_assert_eq(b.len, exact);
	cr_assert_eq(sc_codec_encode("ns", "key", "scope", &in, exact - 1, &b), -E2BIG);
	free(b.data);
	b = (sc_buf){ 0 };
	cr_assert_eq(sc_codec_encode("ns", "key", "scope", &in, exact - 1, &b), -E2BIG);
	cr_assert_leq(b.cap, exact - 1);
	cr_assert_eq(sc_codec_encode("ns", "key", "scope", &in, 0, &b), -E2BIG);
	free(b.data);

	/* a 16 MiB content against a 1000-byte max never grows the buffer past max */
	size_t big = 16u << 20;
	char *s = malloc(big + 1);
	memset(s, 'x', big);
	s[big] = '\0';
	in.content = s;
	b = (sc_buf){ 0 };
	cr_assert_eq(sc_codec_encode("ns", "key", "scope", &in, 1000, &b), -E2BIG);
	cr_assert_leq(b.cap, 1000);
	free(b.data);
	free(s);
}

Test(codec, encode_reuses_buffer)
{
	semcache_response in = full_record(), small = minimal_record(), *out = NULL;
	sc_buf b = encode_ok("n", "k", "s", &in);
	char *data = b.data;

	cr_assert_eq(sc_codec_encode("n", "k", "s", &small, 4096, &b), 0);
	cr_assert_eq(b.data, data, "smaller record should reuse the buffer");
	cr_assert_eq(sc_codec_decode(b.data, b.len, &out, NULL), 0);
	assert_same_response(out, &small);
	semcache_response_free(out);
	free(b.data);
}

Test(codec, encoding_is_msgpack_with_identity_first)
{
	static const char *order[] = { "v", "ns", "key", "scope", "content", "model", "usage",
	                               "tool_calls", "latency_ms", "finish_reason",
	                               "reasoning", "metadata" };
	semcache_response in = full_record();
	sc_buf b = encode_ok("tenant", "k", "s", &in);
	msgpack_unpacked u;
	size_t off = 0;

	/* our own output is trusted, so msgpack-c may parse it */
	msgpack_unpacked_init(&u);
	cr_assert_eq(msgpack_unpack_next(&u, b.data, b.len, &off), MSGPACK_UNPACK_SUCCESS);
	cr_assert_eq(off, b.len);
	cr_assert_eq(u.data.type, MSGPACK_OBJECT_MAP);
	cr_assert_eq(u.data.via.map.size, 12);
	for (uint32_t i = 0; i < 12; i++) {
		msgpack_object_kv *kv = &u.data.via.map.ptr[i];

		cr_assert_eq(kv->key.type, MSGPACK_OBJECT_STR);
		cr_assert_eq(kv->key.via.str.size, strlen(order[i]));
		cr_assert_eq(memcmp(kv->key.via.str.ptr, order[i], strlen(order[i])), 0,
		             "entry %u is not %s", i, order[i]);
	}
	cr_assert_eq(u.data.via.map.ptr[0].val.type, MSGPACK_OBJECT_POSITIVE_INTEGER);
	cr_assert_eq(u.data.via.map.ptr[0].val.via.u64, 1);
	cr_assert_eq(u.data.via.map.ptr[6].val.type, MSGPACK_OBJECT_MAP);
	cr_assert_eq(u.data.via.map.ptr[6].val.via.map.ptr[0].val.via.u64, 70000);
	cr_assert_eq(u.data.via.map.ptr[7].val.type, MSGPACK_OBJECT_ARRAY);
	cr_assert_eq(u.data.via.map.ptr[7].val.via.array.size, 2);
	msgpack_unpacked_destroy(&u);

	/* without optional fields only the eight mandatory entries remain */
	semcache_response min = minimal_record();
	cr_assert_eq(sc_codec_encode("n", "k", NULL, &min, 4096, &b), 0);
	cr_assert_eq((uint8_t)b.data[0], 0x88);
	free(b.data);
}

/* ------------------------------------------------------------------------
 * Accepting other writers' encodings
 * ---------------------------------------------------------------------- */

Test(codec, accepts_every_integer_string_and_container_width)
{
	/* Hand-built: map32 of 6 entries; v as int64; ns as str32; key as
	 * str16; scope as str8; content fixstr; model str8; then the same
	 * with usage values as uint16/uint32/int8/int16/int32 and tool_calls
	 * as array16 and array32. */
	static const uint8_t rec[] = {
		0xdf, 0, 0, 0, 9,
		0xa1, 'v', 0xd3, 0, 0, 0, 0, 0, 0, 0, 1,
		0xa2, 'n', 's', 0xdb, 0, 0, 0, 2, 'N', 'S',
		0xa3, 'k', 'e', 'y', 0xda, 0, 1, 'K',
		0xa5, 's', 'c', 'o', 'p', 'e', 0xd9, 0,
		0xa7, 'c', 'o', 'n', 't', 'e', 'n', 't', 0xa2, 'h', 'i',
		0xa5, 'm', 'o', 'd', 'e', 'l', 0xd9, 1, 'm',
		0xa5, 'u', 's', 'a', 'g', 'e', 0xde, 0, 2,
		0xa6, 'p', 'r', 'o', 'm', 'p', 't', 0xd2, 0, 1, 0, 0,
		0xaa, 'c', 'o', 'm', 'p', 'l', 'e', 't', 'i', 'o', 'n', 0xcf, 0, 0, 0, 0, 0xff, 0xff, 0xff, 0xff,
		0xaa, 't', 'o', 'o', 'l', '_', 'c', 'a', 'l', 'l', 's', 0xdd, 0, 0, 0, 1,
		0xdf, 0, 0, 0, 1, 0xa2, 'i', 'd', 0xa1, 'x',
		0xaa, 'l', 'a', 't', 'e', 'n', 'c', 'y', '_', 'm', 's', 0xd1, 0x01, 0x00,
	};
	semcache_response *out = NULL;
	sc_ids ids;

	cr_assert_eq(sc_codec_decode(rec, sizeof(rec), &out, &ids), 0);
	assert_ids(&ids, "NS", "K", "");
	cr_assert_str_eq(out->content, "hi");
	cr_assert_str_eq(out->model, "m");
	cr_assert_eq(out->prompt_tokens, 65536);
	cr_assert_eq(out->completion_tokens, UINT32_MAX);
	cr_assert_eq(out->latency_ms, 256);
	cr_assert_eq(out->n_tool_calls, 1);
	cr_assert_str_eq(out->tool_calls[0].id, "x");
	cr_assert_str_eq(out->tool_calls[0].name, "");
	cr_assert_str_eq(out->tool_calls[0].arguments, "");
	assert_one_block(out);
	semcache_response_free(out);

	cr_assert_eq(sc_codec_peek_ids(rec, sizeof(rec), &ids), 0);
	assert_ids(&ids, "NS", "K", "");
}

Test(codec, accepts_nil_and_empty_for_optional_fields)
{
	entry nils[] = { { "finish_reason", v_nil }, { "reasoning", v_nil },
	                 { "metadata", v_nil }, { "tool_calls", v_nil } };
	msgpack_sbuffer sb = build(NULL, NULL, nils, 4);
	semcache_response *out = NULL;

	cr_assert_eq(sc_codec_decode(sb.data, sb.size, &out, NULL), 0);
	cr_assert_null(out->finish_reason);
	cr_assert_null(out->reasoning);
	cr_assert_null(out->metadata);
	cr_assert_null(out->tool_calls);
	cr_assert_eq(out->n_tool_calls, 0);
	cr_assert_eq(out->prompt_tokens, 0);
	cr_assert_eq(out->latency_ms, 0);
	semcache_response_free(out);
	msgpack_sbuffer_destroy(&sb);

	cr_assert_eq(decode_with_extra("tool_calls", v_empty_array), 0);
	cr_assert_eq(decode_with_extra("usage", v_empty_map), 0);
	cr_assert_eq(decode_with_extra("finish_reason", v_empty_str), 0);
	cr_assert_eq(decode_with_extra("latency_ms", v_u32max), 0);
}

Test(codec, skips_unknown_keys)
{
	entry extra[] = {
		{ "future_bin", v_bin }, { "future_ext", v_ext }, { "future_fixext", v_fixext },
		{ "future_float", v_float }, { "future_double", v_double },
		{ "future_neg", v_neg_big }, { "future_bool", v_true }, { "future_nil", v_nil },
		{ "future_map", v_usage_unknown }, { "future_arr", v_calls_unknown_and_missing },
		{ "future_all", v_every_type },
		{ "usage", v_usage_unknown }, { "tool_calls", v_calls_unknown_and_missing },
		{ "", v_u33 },
	};
	msgpack_sbuffer sb = build(NULL, NULL, extra, sizeof(extra) / sizeof(extra[0]));
	semcache_response *out = NULL;
	sc_ids ids;

	cr_assert_eq(sc_codec_decode(sb.data, sb.size, &out, &ids), 0);
	assert_ids(&ids, "tenant", "k1", "sc");
	cr_assert_str_eq(out->content, "hello");
	cr_assert_eq(out->prompt_tokens, 7);
	cr_assert_eq(out->completion_tokens, 8);
	cr_assert_eq(out->n_tool_calls, 2);
	cr_assert_str_eq(out->tool_calls[0].name, "f");
	cr_assert_str_eq(out->tool_calls[0].id, "");
	cr_assert_str_eq(out->tool_calls[1].arguments, "");
	assert_one_block(out);
	semcache_response_free(out);

	/* an unknown key whose value is truncated still fails */
	cr_assert_eq(decode_rc(sb.data, sb.size - 1), SEMCACHE_EBADRECORD);
	msgpack_sbuffer_destroy(&sb);
}

/* ------------------------------------------------------------------------
 * Rejecting malformed input
 * ---------------------------------------------------------------------- */

Test(codec, rejects_truncated_at_every_length)
{
	semcache_response in = full_record();
	sc_buf b = encode_ok("tenant", "key", "scope", &in);

	cr_assert_eq(decode_rc(b.data, b.len), 0);
	for (size_t n = 0; n < b.len; n++) {
		/* copy so ASan sees any read past the prefix */
		char *p = malloc(n ? n : 1);

		memcpy(p, b.data, n);
		cr_assert_eq(decode_rc(p, n), SEMCACHE_EBADRECORD, "prefix of %zu bytes", n);
		free(p);
	}
	free(b.data);
}

Test(codec, rejects_huge_array_count_in_5_bytes)
{
	static const uint8_t map32[] = { 0xdf, 0xff, 0xff, 0xff, 0xff };
	static const uint8_t arr32[] = { 0xdd, 0xff, 0xff, 0xff, 0xff };
	static const uint8_t str32[] = { 0xdb, 0xff, 0xff, 0xff, 0xff };
	static const uint8_t bin32[] = { 0xc6, 0xff, 0xff, 0xff, 0xff };
	/* a plausible record prefix whose tool_calls claims 2^32-1 calls */
	static const uint8_t calls[] = {
		0x87, 0xa1, 'v', 0x01, 0xa2, 'n', 's', 0xa0, 0xa3, 'k', 'e', 'y', 0xa0,
		0xa5, 's', 'c', 'o', 'p', 'e', 0xa0,
		0xaa, 't', 'o', 'o', 'l', '_', 'c', 'a', 'l', 'l', 's', 0xdd, 0xff, 0xff, 0xff, 0xff,
		0x80, 0x80,
	};
	/* an unknown key whose map claims 2^32-1 entries */
	static const uint8_t unknown[] = { 0x81, 0xa1, 'x', 0xdf, 0xff, 0xff, 0xff, 0xff, 0xc0, 0xc0 };
	/* peek stops once it has the identity, so it never sees the bad
	 * count of `calls` (it need not validate the rest) */
	const struct { const uint8_t *p; size_t n; int peek_rc; } cases[] = {
		{ map32, sizeof(map32), SEMCACHE_EBADRECORD },
		{ arr32, sizeof(arr32), SEMCACHE_EBADRECORD },
		{ str32, sizeof(str32), SEMCACHE_EBADRECORD },
		{ bin32, sizeof(bin32), SEMCACHE_EBADRECORD },
		{ calls, sizeof(calls), 0 },
		{ unknown, sizeof(unknown), SEMCACHE_EBADRECORD },
	};
	sc_ids ids;

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		/* -ENOMEM would mean the decoder tried to allocate by the count */
		cr_assert_eq(decode_rc(cases[i].p, cases[i].n), SEMCACHE_EBADRECORD, "case %zu", i);
		cr_assert_eq(sc_codec_peek_ids(cases[i].p, cases[i].n, &ids), cases[i].peek_rc,
		             "peek case %zu", i);
	}

	/* a count that fits the bytes left but exceeds the tool-call cap */
	cr_assert_eq(decode_with_extra("tool_calls", v_calls_1024), 0);
	cr_assert_eq(decode_with_extra("tool_calls", v_calls_1025), SEMCACHE_EBADRECORD);
}

/* A record with one unknown key holding `levels` nested one-element arrays. */
static int decode_nested(size_t levels)
{
	msgpack_sbuffer sb;
	msgpack_packer pk;
	int rc;

	msgpack_sbuffer_init(&sb);
	msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
	msgpack_pack_map(&pk, NBASE + 1);
	for (size_t i = 0; i < NBASE; i++) {
		pk_cstr(&pk, base[i].key);
		base[i].val(&pk);
	}
	pk_cstr(&pk, "deep");
	for (size_t i = 0; i < levels; i++)
		msgpack_pack_array(&pk, 1);
	msgpack_pack_nil(&pk);
	rc = decode_rc(sb.data, sb.size);
	msgpack_sbuffer_destroy(&sb);
	return rc;
}

Test(codec, rejects_deep_nesting)
{
	/* the record's map is level 1, so 7 nested arrays reach the cap of 8 */
	cr_assert_eq(SC_CODEC_MAX_DEPTH, 8);
	cr_assert_eq(decode_nested(7), 0);
	cr_assert_eq(decode_nested(8), SEMCACHE_EBADRECORD);
	/* far deeper than any stack could recurse */
	cr_assert_eq(decode_nested(1000000), SEMCACHE_EBADRECORD);
}

Test(codec, rejects_trailing_bytes)
{
	semcache_response in = full_record();
	sc_buf b = encode_ok("n", "k", "s", &in);
	char *p = malloc(b.len + 1);

	memcpy(p, b.data, b.len);
	p[b.len] = (char)0xc0;
	cr_assert_eq(decode_rc(p, b.len), 0);
	cr_assert_eq(decode_rc(p, b.len + 1), SEMCACHE_EBADRECORD);
	/* a second full record after the first is trailing bytes too */
	cr_assert_eq(sc_codec_encode("n", "k", "s", &in, 1u << 20, &b), 0);
	p = realloc(p, 2 * b.len);
	memcpy(p, b.data, b.len);
	memcpy(p + b.len, b.data, b.len);
	cr_assert_eq(decode_rc(p, 2 * b.len), SEMCACHE_EBADRECORD);
	free(p);
	free(b.data);
}

Test(codec, rejects_wrong_types)
{
	const struct { const char *key; pack_fn val; } repl[] = {
		{ "v", v_two }, { "v", v_neg }, { "v", v_content }, { "v", v_float }, { "v", v_nil },
		{ "v", v_neg_int8 }, { "v", v_u33 },
		{ "ns", v_bin }, { "ns", v_one }, { "ns", v_nil }, { "ns", v_empty_array },
		{ "key", v_ext }, { "key", v_fixext }, { "scope", v_true },
		{ "content", v_bin }, { "content", v_double }, { "content", v_nil },
		{ "model", v_empty_map }, { "model", v_neg_big },
	};
	const struct { const char *key; pack_fn val; } extra[] = {
		{ "usage", v_u33 }, { "usage", v_usage_u33 }, { "usage", v_usage_neg },
		{ "usage", v_usage_str }, { "usage", v_empty_array }, { "usage", v_nil },
		{ "latency_ms", v_neg }, { "latency_ms", v_u33 }, { "latency_ms", v_float },
		{ "latency_ms", v_neg_int8 }, { "latency_ms", v_neg_int16 },
		{ "latency_ms", v_neg_int64 }, { "latency_ms", v_neg_big },
		{ "latency_ms", v_content },
		{ "finish_reason", v_bin }, { "reasoning", v_one }, { "metadata", v_empty_map },
		{ "tool_calls", v_empty_map }, { "tool_calls", v_content },
		{ "tool_calls", v_calls_not_map }, { "tool_calls", v_calls_int_id },
	};
	static const uint8_t not_map[] = { 0x96, 0xa1, 'v', 1, 0xc0, 0xc0, 0xc0 };
	static const uint8_t int_key[] = { 0x81, 0x01, 0x01 };
	static const uint8_t reserved_c1[] = { 0x81, 0xa1, 'x', 0xc1 };

	for (size_t i = 0; i < sizeof(repl) / sizeof(repl[0]); i++)
		cr_assert_eq(decode_built(repl[i].key, repl[i].val, NULL, 0), SEMCACHE_EBADRECORD,
		             "%s replaced, case %zu", repl[i].key, i);
	for (size_t i = 0; i < sizeof(extra) / sizeof(extra[0]); i++)
		cr_assert_eq(decode_with_extra(extra[i].key, extra[i].val), SEMCACHE_EBADRECORD,
		             "%s, case %zu", extra[i].key, i);
	cr_assert_eq(decode_rc(not_map, sizeof(not_map)), SEMCACHE_EBADRECORD);
	cr_assert_eq(decode_rc(int_key, sizeof(int_key)), SEMCACHE_EBADRECORD);
	cr_assert_eq(decode_rc(reserved_c1, sizeof(reserved_c1)), SEMCACHE_EBADRECORD);
}

Test(codec, rejects_missing_required_fields)
{
	for (size_t i = 0; i < NBASE; i++)
		cr_assert_eq(decode_built(base[i].key, NULL, NULL, 0), SEMCACHE_EBADRECORD,
		             "without %s", base[i].key);
	cr_assert_eq(decode_built(NULL, NULL, NULL, 0), 0, "the base record itself is valid");
}

Test(codec, rejects_nul_in_string)
{
	static const char *fields[] = { "ns", "key", "scope", "content", "model" };

	for (size_t i = 0; i < sizeof(fields) / sizeof(fields[0]); i++)
		cr_assert_eq(decode_built(fields[i], v_str_nul, NULL, 0), SEMCACHE_EBADRECORD,
		             "NUL in %s", fields[i]);
	cr_assert_eq(decode_with_extra("finish_reason", v_str_nul), SEMCACHE_EBADRECORD);
	cr_assert_eq(decode_with_extra("reasoning", v_str_nul), SEMCACHE_EBADRECORD);
	cr_assert_eq(decode_with_extra("metadata", v_str_nul), SEMCACHE_EBADRECORD);
	cr_assert_eq(decode_with_extra("tool_calls", v_calls_nul), SEMCACHE_EBADRECORD);
	/* but a NUL inside an unknown key's value does not matter */
	cr_assert_eq(decode_with_extra("other", v_str_nul), 0);
}

Test(codec, rejects_duplicate_keys)
{
	const struct { const char *key; pack_fn val; } dup[] = {
		{ "v", v_one }, { "ns", v_ns }, { "key", v_key }, { "scope", v_scope },
		{ "content", v_content }, { "model", v_model },
	};
	entry twice[] = { { "metadata", v_content }, { "metadata", v_content } };
	entry nil_then_value[] = { { "reasoning", v_nil }, { "reasoning", v_content } };
	entry usage_twice[] = { { "usage", v_usage_ok }, { "usage", v_usage_ok } };
	entry unknown_twice[] = { { "x", v_one }, { "x", v_one } };

	for (size_t i = 0; i < sizeof(dup) / sizeof(dup[0]); i++)
		cr_assert_eq(decode_with_extra(dup[i].key, dup[i].val), SEMCACHE_EBADRECORD,
		             "%s twice", dup[i].key);
	cr_assert_eq(decode_built(NULL, NULL, twice, 2), SEMCACHE_EBADRECORD);
	cr_assert_eq(decode_built(NULL, NULL, nil_then_value, 2), SEMCACHE_EBADRECORD);
	cr_assert_eq(decode_built(NULL, NULL, usage_twice, 2), SEMCACHE_EBADRECORD);
	cr_assert_eq(decode_with_extra("usage", v_usage_dup), SEMCACHE_EBADRECORD);
	cr_assert_eq(decode_with_extra("tool_calls", v_calls_dup), SEMCACHE_EBADRECORD);
	/* unknown keys are not ours to police */
	cr_assert_eq(decode_built(NULL, NULL, unknown_twice, 2), 0);
}

Test(codec, rejects_bad_arguments)
{
	semcache_response *out = (semcache_response *)1;
	sc_ids ids;
	uint8_t b = 0x80;

	cr_assert_eq(sc_codec_decode(&b, 1, NULL, NULL), -EINVAL);
	cr_assert_eq(sc_codec_decode(NULL, 0, &out, NULL), -EINVAL);
	cr_assert_null(out);
	cr_assert_eq(sc_codec_peek_ids(NULL, 0, &ids), -EINVAL);
	cr_assert_eq(sc_codec_peek_ids(&b, 1, NULL), -EINVAL);
	cr_assert_eq(decode_rc(&b, 0), SEMCACHE_EBADRECORD);
	cr_assert_eq(decode_rc(&b, 1), SEMCACHE_EBADRECORD); /* empty map: nothing required */
	semcache_response_free(NULL);
}

/* ------------------------------------------------------------------------
 * peek_ids
 * ---------------------------------------------------------------------- */

Test(codec, peek_ids_matches_decode)
{
	semcache_response in = full_record(), *out = NULL;
	sc_buf b = encode_ok("tenant/7", "sha256:00ff", "model=x;t=0.7", &in);
	sc_ids peek, dec;

	cr_assert_eq(sc_codec_peek_ids(b.data, b.len, &peek), 0);
	cr_assert_eq(sc_codec_decode(b.data, b.len, &out, &dec), 0);
	cr_assert_eq(peek.ns, dec.ns);
	cr_assert_eq(peek.ns_len, dec.ns_len);
	cr_assert_eq(peek.key, dec.key);
	cr_assert_eq(peek.key_len, dec.key_len);
	cr_assert_eq(peek.scope, dec.scope);
	cr_assert_eq(peek.scope_len, dec.scope_len);
	assert_ids(&peek, "tenant/7", "sha256:00ff", "model=x;t=0.7");
	semcache_response_free(out);

	/* identity comes first, so peek needs only the bytes up to "scope" */
	size_t need = 1 + 2 + 1 + 3 + 9 + 4 + 12 + 6 + 14;
	cr_assert_eq(sc_codec_peek_ids(b.data, need, &peek), 0);
	assert_ids(&peek, "tenant/7", "sha256:00ff", "model=x;t=0.7");
	cr_assert_eq(sc_codec_peek_ids(b.data, need - 1, &peek), SEMCACHE_EBADRECORD);
	free(b.data);
}

Test(codec, peek_ids_validates_what_it_reads)
{
	msgpack_sbuffer sb = build(NULL, NULL, NULL, 0);
	sc_ids ids;

	/* another writer's order: identity last */
	cr_assert_eq(sc_codec_peek_ids(sb.data, sb.size, &ids), 0);
	assert_ids(&ids, "tenant", "k1", "sc");
	msgpack_sbuffer_destroy(&sb);

	const struct { const char *key; pack_fn val; } bad[] = {
		{ "v", v_two }, { "v", NULL }, { "ns", v_str_nul }, { "key", v_bin },
		{ "scope", NULL }, { "ns", v_one },
	};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		sb = build(bad[i].key, bad[i].val, NULL, 0);
		cr_assert_eq(sc_codec_peek_ids(sb.data, sb.size, &ids), SEMCACHE_EBADRECORD,
		             "case %zu", i);
		msgpack_sbuffer_destroy(&sb);
	}

	/* a duplicate before the identity is complete */
	static const uint8_t rec[] = { 0x84, 0xa2, 'n', 's', 0xa0, 0xa2, 'n', 's', 0xa0,
	                               0xa1, 'v', 0x01, 0xa3, 'k', 'e', 'y', 0xa0 };
	cr_assert_eq(sc_codec_peek_ids(rec, sizeof(rec), &ids), SEMCACHE_EBADRECORD);
}

/* ------------------------------------------------------------------------
 * Robustness
 * ---------------------------------------------------------------------- */

static uint64_t rng_state = 0x9e3779b97f4a7c15ull;

static uint64_t rng(void)
{
	/* xorshift64*: fixed seed, so a failure reproduces */
	rng_state ^= rng_state >> 12;
	rng_state ^= rng_state << 25;
	rng_state ^= rng_state >> 27;
	return rng_state * 0x2545f4914f6cdd1dull;
}

static void assert_well_formed(const semcache_response *r)
{
	cr_assert_not_null(r->content);
	cr_assert_not_null(r->model);
	cr_assert_leq(r->n_tool_calls, SC_CODEC_MAX_TOOL_CALLS);
	cr_assert_eq(r->n_tool_calls == 0, r->tool_calls == NULL);
	for (uint32_t i = 0; i < r->n_tool_calls; i++) {
		cr_assert_not_null(r->tool_calls[i].id);
		cr_assert_not_null(r->tool_calls[i].name);
		cr_assert_not_null(r->tool_calls[i].arguments);
	}
	assert_one_block(r);
}

Test(codec, random_bitflips_never_crash)
{
	semcache_response in = full_record();
	sc_buf b = encode_ok("tenant", "key", "scope", &in);
	uint8_t *m = malloc(b.len);
	size_t ok = 0, bad = 0;

	for (int iter = 0; iter < 100000; iter++) {
		semcache_response *out = NULL;
		sc_ids ids;
		int flips = 1 + (int)(rng() % 4), rc;

		memcpy(m, b.data, b.len);
		for (int f = 0; f < flips; f++) {
			size_t at = rng() % b.len;

			if (rng() & 1)
				m[at] ^= (uint8_t)(1u << (rng() % 8));
			else
				m[at] = (uint8_t)rng();
		}
		rc = sc_codec_decode(m, b.len, &out, &ids);
		cr_assert(rc == 0 || rc == SEMCACHE_EBADRECORD, "iteration %d: rc %d", iter, rc);
		if (rc == 0) {
			ok++;
			assert_well_formed(out);
			cr_assert(ids.ns >= (char *)m && ids.scope + ids.scope_len <= (char *)m + b.len);
			cr_assert_eq(sc_codec_peek_ids(m, b.len, &ids), 0,
			             "peek must accept what decode accepts");
		} else {
			bad++;
			cr_assert_null(out);
		}
		semcache_response_free(out);
	}
	/* both outcomes must actually occur, or the test proves nothing */
	cr_assert_gt(ok, 0);
	cr_assert_gt(bad, 0);
	free(m);
	free(b.data);
}
