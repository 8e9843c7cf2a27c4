/*
 * fuzz_redis.c - fuzz harness for the Redis tier's import decoders.
 *
 * Every input goes to each decoder that reads what other hosts wrote into
 * Redis: the native entry (sc_rnative_decode), the native embedding
 * (sc_remb_decode), the seed JSON entry and embedding (sc_rseed_decode,
 * sc_rseed_emb_decode) and key names / ids (sc_rkey_parse, sc_rid_check).
 * Beyond "no crash, no leak, no overread" it checks what the syncer will
 * rely on: a failure is one of the documented codes and owns nothing; a
 * success points only inside the input, carries a usable response, and
 * re-encodes to bytes that decode to the same thing (so writer and reader
 * agree on the format).
 *
 * libFuzzer (clang):
 *   clang -std=c11 -D_GNU_SOURCE -g -O1 -fsanitize=fuzzer,address,undefined \
 *         -Iinclude -Icore -Ibackends -I/usr/include/hiredis \
 *         $(find core shm backends -name '*.c') tests/fuzz/fuzz_redis.c -lcrypto -lhiredis -ljansson -lm \
 *         -o fuzz_redis
 *   ./fuzz_redis -max_len=16384 corpus/
 *
 * Standalone (-DSC_FUZZ_STANDALONE, what meson test runs): a seeded
 * mutational loop over valid values of each format:
 *   fuzz_redis [iterations [seed]]     (default 100000, seed 1)
 */
#include <errno.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "codec.h"
#include "redis_codec.h"
#include "semcache.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define FUZZ_DIM  3u

/* How many inputs each decoder accepted: the standalone run prints them,
 * so a mutator that never reaches a success path shows. */
static unsigned long long accepted[4];
#define SEED_MAX  (64u << 10)

#define CHECK(cond)                                                         \
	do {                                                                    \
		if (!(cond)) {                                                      \
			fprintf(stderr, "fuzz_redis: %s:%d: check failed: %s\n",       \
			        __FILE__, __LINE__, #cond);                             \
			abort();                                                        \
		}                                                                   \
	} while (0)

static int inside(const void *p, size_t n, const uint8_t *lo, size_t size)
{
	const uint8_t *q = p;
	return q >= lo && n <= size && q - lo <= (ptrdiff_t)(size - n);
}

static int same_str(const char *a, const char *b)
{
	return strcmp(a, b) == 0;
}

static int same_response(const semcache_response *a, const semcache_response *b)
{
	if (!same_str(a->content, b->content) || !same_str(a->model, b->model) ||
	    a->prompt_tokens != b->prompt_tokens || a->completion_tokens != b->completion_tokens ||
	    a->latency_ms != b->latency_ms || a->n_tool_calls != b->n_tool_calls)
		return 0;
	for (uint32_t i = 0; i < a->n_tool_calls; i++)
		if (!same_str(a->tool_calls[i].id, b->tool_calls[i].id) ||
		    !same_str(a->tool_calls[i].name, b->tool_calls[i].name) ||
		    !same_str(a->tool_calls[i].arguments, b->tool_calls[i].arguments))
			return 0;
	return 1;
}

static void fuzz_native(const uint8_t *data, size_t size)
{
	semcache_response *r = NULL, *r2 = NULL;
	sc_rentry e, e2;
	sc_buf b = { 0 };
	int rc = sc_rnative_decode(data, size, NULL, &e, &r);

	CHECK(rc == 0 || rc == SEMCACHE_EBADRECORD || rc == -ENOMEM);
	if (rc) {
		CHECK(r == NULL);
		return;
	}
	accepted[0]++;
	CHECK(r && r->content && r->model);
	CHECK(inside(e.ns, e.ns_len, data, size) && inside(e.key, e.key_len, data, size) &&
	      inside(e.scope, e.scope_len, data, size) &&
	      inside(e.payload, e.payload_len, data, size));
	CHECK(e.created_ms >= 0 && e.exact_expiry_ms >= e.created_ms &&
	      e.semantic_expiry_ms >= e.created_ms);
	rc = sc_rnative_encode(&e, SIZE_MAX, &b);
	if (rc != -ENOMEM) {
		CHECK(rc == 0);
		rc = sc_rnative_decode(b.data, b.len, NULL, &e2, &r2);
		CHECK(rc == 0 || rc == -ENOMEM);
		if (rc == 0) {
			CHECK(same_response(r, r2));
			CHECK(e2.created_ms == e.created_ms && e2.hits == e.hits &&
			      e2.exact_expiry_ms == e.exact_expiry_ms &&
			      e2.semantic_expiry_ms == e.semantic_expiry_ms &&
			      e2.payload_len == e.payload_len &&
			      memcmp(e2.payload, e.payload, e.payload_len) == 0);
		}
	}
	semcache_response_free(r2);
	semcache_response_free(r);
	free(b.data);
}

static void fuzz_raw_embedding(const uint8_t *data, size_t size)
{
	uint32_t dim = (uint32_t)(size / 4);
	float v[SC_RCODEC_MAX_DIM];
	sc_buf b = { 0 };
	int rc;

	if (dim == 0 || dim > SC_RCODEC_MAX_DIM)
		return;
	rc = sc_remb_decode(data, size, dim, v);
	if (size % 4) {
		CHECK(rc == SEMCACHE_EDIM);
		return;
	}
	CHECK(rc == 0 || rc == SEMCACHE_EEMBEDDING);
	if (rc == 0) {
		accepted[1]++;
		for (uint32_t i = 0; i < dim; i++)
			CHECK(isfinite(v[i]));
		rc = sc_remb_encode(v, dim, &b);
		CHECK(rc == 0 || rc == -ENOMEM);
		if (rc == 0)
			CHECK(b.len == size && memcmp(b.data, data, size) == 0);
	}
	free(b.data);
}

static void fuzz_seed(const uint8_t *data, size_t size)
{
	sc_rseed s, s2;
	sc_buf b = { 0 };
	float v[FUZZ_DIM];
	int rc = sc_rseed_decode(data, size, SEED_MAX, FUZZ_DIM, &s);

	CHECK(rc == 0 || rc == SEMCACHE_EBADRECORD || rc == SEMCACHE_EDIM ||
	      rc == SEMCACHE_EEMBEDDING || rc == -ENOMEM);
	if (rc) {
		CHECK(s.response == NULL && s.embedding == NULL && s.scope == NULL);
	} else {
		accepted[2]++;
		CHECK(s.response && s.response->content && s.response->model);
		CHECK(s.created_ms >= 0);
		CHECK(!s.scope || strlen(s.scope) <= SC_RSEED_SCOPE_MAX);
		if (s.embedding)
			for (uint32_t i = 0; i < FUZZ_DIM; i++)
				CHECK(isfinite(s.embedding[i]));
		rc = sc_rseed_encode(s.response, s.scope, s.embedding, FUZZ_DIM, s.created_ms, s.hit_count,
		                     SIZE_MAX, &b);
		CHECK(rc == 0 || rc == -ENOMEM);
		if (rc == 0) {
			rc = sc_rseed_decode(b.data, b.len, SIZE_MAX, FUZZ_DIM, &s2);
			CHECK(rc == 0 || rc == -ENOMEM);
			if (rc == 0) {
				CHECK(same_response(s.response, s2.response));
				CHECK(s2.created_ms == s.created_ms && s2.hit_count == s.hit_count);
				CHECK(!s.embedding == !s2.embedding);
				CHECK(!s.scope == !s2.scope && (!s.scope || !strcmp(s.scope, s2.scope)));
				if (s.embedding)
					CHECK(memcmp(s.embedding, s2.embedding, FUZZ_DIM * sizeof(float)) == 0);
				sc_rseed_free(&s2);
			}
		}
		sc_rseed_free(&s);
	}
	free(b.data);

	rc = sc_rseed_emb_decode(data, size, FUZZ_DIM, v);
	CHECK(rc == 0 || rc == SEMCACHE_EBADRECORD || rc == SEMCACHE_EDIM ||
	      rc == SEMCACHE_EEMBEDDING || rc == -ENOMEM);
	if (rc == 0) {
		accepted[3]++;
		for (uint32_t i = 0; i < FUZZ_DIM; i++)
			CHECK(isfinite(v[i]));
	}
}

static void fuzz_names(const uint8_t *data, size_t size)
{
	static const enum sc_rformat fmts[] = { SC_RFMT_NATIVE, SC_RFMT_SEED };

	for (int f = 0; f < 2; f++) {
		enum sc_rkey_kind kind;
		const char *id;
		size_t idl;
		int rc = sc_rkey_parse("p:", fmts[f], (const char *)data, size, &kind, &id, &idl);

		CHECK(rc == 0 || rc == SEMCACHE_EBADRECORD);
		if (rc == 0 && kind != SC_RKEY_INDEX) {
			CHECK(inside(id, idl, data, size));
			CHECK(sc_rid_check(fmts[f], id, idl) == 0);
		}
		rc = sc_rid_check(fmts[f], (const char *)data, size);
		CHECK(rc == 0 || rc == SEMCACHE_EBADRECORD);
	}
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static const uint8_t empty[1];

	if (!data)
		data = empty;
	fuzz_native(data, size);
	fuzz_raw_embedding(data, size);
	fuzz_seed(data, size);
	fuzz_names(data, size);
	return 0;
}

#ifdef SC_FUZZ_STANDALONE
/* ------------------------------------------------------------------------
 * Standalone driver: mutants of one valid value of each format.
 * ---------------------------------------------------------------------- */
#define MAX_INPUT 16384

static uint64_t state;

static uint64_t next(void)
{
	/* splitmix64: any seed, including 0, gives a full-period stream */
	uint64_t z = (state += 0x9e3779b97f4a7c15ull);
	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
	return z ^ (z >> 31);
}

/* Bytes with a meaning to one of the decoders: msgpack tags and limits,
 * JSON punctuation and number syntax, and the key names' separators. */
static const char tokens[] =
	"\x00\x7f\x80\x8f\x90\x9f\xa0\xbf\xc0\xc1\xc4\xc6\xca\xcb\xcf\xd0\xd3\xd9"
	"\xdb\xdc\xdd\xde\xdf\xe0\xff"
	"{}[]\",:\\-+.eE019ntfu :_";

/* Whole JSON fragments spliced in: literals, extremes, escapes. */
static const char *const splices[] = {
	"null", "true", "1e308", "-1", "4294967296", "1.5", "NaN", "\"\\u0000\"",
	"\"\\ud800\"", "[[[[[[[[", "{\"a\":", "\"created_at\":", "[]", "{}", "0.0",
	"18446744073709551616", "\xc3\x28",
};

static size_t mutate(uint8_t *m, size_t n)
{
	int rounds = 1 + (int)(next() % 4);

	for (int k = 0; k < rounds; k++) {
		size_t at = n ? next() % n : 0, len;
		const char *sp;

		switch (next() % 8) {
		case 0:
			if (n)
				m[at] ^= (uint8_t)(1u << (next() % 8));
			break;
		case 1:
			if (n)
				m[at] = (uint8_t)next();
			break;
		case 2:
			if (n)
				m[at] = (uint8_t)tokens[next() % (sizeof tokens - 1)];
			break;
		case 3: /* cut the tail */
			n = at;
			break;
		case 4: /* remove a run */
			len = 1 + next() % 16;
			if (len > n - at)
				len = n - at;
			memmove(m + at, m + at + len, n - at - len);
			n -= len;
			break;
		case 5: /* repeat a run */
			len = 1 + next() % 32;
			if (len > n - at)
				len = n - at;
			if (n + len <= MAX_INPUT) {
				memmove(m + at + len, m + at, n - at);
				n += len;
			}
			break;
		case 6: /* splice a fragment */
			sp = splices[next() % (sizeof splices / sizeof splices[0])];
			len = strlen(sp);
			if (n + len <= MAX_INPUT) {
				memmove(m + at + len, m + at, n - at);
				memcpy(m + at, sp, len);
				n += len;
			}
			break;
		default: /* a big-endian length set to an extreme */
			if (at + 4 < n) {
				uint32_t v = (next() & 1) ? 0xffffffffu : (uint32_t)(next() % 128);
				for (int i = 0; i < 4; i++)
					m[at + 1 + i] = (uint8_t)(v >> (24 - 8 * i));
			}
			break;
		}
	}
	return n;
}

int main(int argc, char **argv)
{
	static const semcache_tool_call tc[] = { { "call_1", "lookup", "{\"q\":\"x\"}" } };
	const semcache_response resp = {
		.content = "Paris is the capital of France.", .model = "gpt-4o-mini",
		.prompt_tokens = 12, .completion_tokens = 7, .tool_calls = tc, .n_tool_calls = 1,
		.latency_ms = 250,
	};
	const float emb[FUZZ_DIM] = { 0.5f, -0.25f, 1.0f };
	unsigned long long iters = argc > 1 ? strtoull(argv[1], NULL, 0) : 100000ull;
	unsigned long long seed = argc > 2 ? strtoull(argv[2], NULL, 0) : 1ull;
	sc_buf seeds[5] = { { 0 } }, rec = { 0 };
	char id[SC_RID_NATIVE_LEN + 1];
	uint8_t *m = malloc(MAX_INPUT);
	int rc = 1;

	state = seed;
	if (!m || sc_codec_encode("tenant", "k", "s", &resp, MAX_INPUT, &rec))
		goto out;
	sc_rentry e = {
		.ns = "tenant", .ns_len = 6, .key = "k", .key_len = 1, .scope = "s", .scope_len = 1,
		.created_ms = 1700000000000, .exact_expiry_ms = 1700000360000,
		.semantic_expiry_ms = INT64_MAX, .hits = 3, .payload = rec.data,
		.payload_len = rec.len,
	};
	if (sc_rnative_encode(&e, MAX_INPUT, &seeds[0]) || sc_remb_encode(emb, FUZZ_DIM, &seeds[1]) ||
	    sc_rseed_encode(&resp, "gpt-4o|tools:0", emb, FUZZ_DIM, 1700000000500, 4, MAX_INPUT, &seeds[2]) ||
	    sc_rseed_emb_encode(emb, FUZZ_DIM, &seeds[3]) || sc_rid_native("tenant", "k", id) ||
	    sc_rkey_build("p:", SC_RKEY_ENTRY, SC_RFMT_NATIVE, id, SC_RID_NATIVE_LEN, &seeds[4]))
		goto out;

	for (unsigned long long i = 0; i < iters; i++) {
		const sc_buf *s = &seeds[next() % 5];
		size_t n;
		uint8_t *in;

		memcpy(m, s->data, s->len);
		n = mutate(m, s->len);
		in = malloc(n ? n : 1); /* exact size: ASan catches a read past it */
		if (!in)
			goto out;
		memcpy(in, m, n);
		LLVMFuzzerTestOneInput(in, n);
		free(in);
	}
	printf("fuzz_redis: %llu iterations, seed %llu: ok (accepted: native entry %llu, "
	       "raw embedding %llu, seed entry %llu, seed embedding %llu)\n",
	       iters, seed, accepted[0], accepted[1], accepted[2], accepted[3]);
	rc = 0;
out:
	for (int i = 0; i < 5; i++)
		free(seeds[i].data);
	free(rec.data);
	free(m);
	return rc;
}
#endif
