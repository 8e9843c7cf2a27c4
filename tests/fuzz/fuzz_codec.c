/*
 * fuzz_codec.c - fuzz harness for the response record decoder.
 *
 * Feeds arbitrary bytes to sc_codec_decode(), sc_codec_peek_ids() and
 * sc_codec_content_span(), the entry points that read records other
 * processes and hosts wrote.
 * Beyond "no crash, no leak" it checks what callers rely on: a failure is
 * SEMCACHE_EBADRECORD with *out NULL; a success has every required string
 * non-NULL, at most SC_CODEC_MAX_TOOL_CALLS calls, ids inside the input,
 * peek agreeing with decode, and the record re-encoding to bytes that
 * decode to the same response (so decoder and encoder agree on the format).
 *
 * libFuzzer (clang):
 *   clang -std=c11 -D_GNU_SOURCE -g -O1 -fsanitize=fuzzer,address,undefined \
 *         -Iinclude -Icore core/codec.c tests/fuzz/fuzz_codec.c -o fuzz_codec
 *   ./fuzz_codec -max_len=4096 corpus/
 *
 * Standalone (any compiler, no libFuzzer): a seeded mutational loop over
 * valid encodings, each mutant passed to the same entry point:
 *   gcc -std=c11 -D_GNU_SOURCE -g -O1 -fsanitize=address,undefined \
 *       -DSC_FUZZ_STANDALONE -Iinclude -Icore core/codec.c \
 *       tests/fuzz/fuzz_codec.c -o fuzz_codec
 *   ./fuzz_codec [iterations [seed]]     (default 1000000, seed 1)
 */
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "codec.h"
#include "semcache.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* A violated property must stop the run loudly in both modes: abort() is
 * what libFuzzer and the sanitizers report as a crash with the input. */
#define CHECK(cond)                                                         \
	do {                                                                    \
		if (!(cond)) {                                                      \
			fprintf(stderr, "fuzz_codec: %s:%d: check failed: %s\n",       \
			        __FILE__, __LINE__, #cond);                             \
			abort();                                                        \
		}                                                                   \
	} while (0)

static int same_opt(const char *a, const char *b)
{
	return (!a && !b) || (a && b && strcmp(a, b) == 0);
}

static int same_response(const semcache_response *a, const semcache_response *b)
{
	if (strcmp(a->content, b->content) || strcmp(a->model, b->model) ||
	    a->prompt_tokens != b->prompt_tokens ||
	    a->completion_tokens != b->completion_tokens || a->latency_ms != b->latency_ms ||
	    !same_opt(a->finish_reason, b->finish_reason) ||
	    !same_opt(a->reasoning, b->reasoning) || !same_opt(a->metadata, b->metadata) ||
	    a->n_tool_calls != b->n_tool_calls)
		return 0;
	for (uint32_t i = 0; i < a->n_tool_calls; i++)
		if (strcmp(a->tool_calls[i].id, b->tool_calls[i].id) ||
		    strcmp(a->tool_calls[i].name, b->tool_calls[i].name) ||
		    strcmp(a->tool_calls[i].arguments, b->tool_calls[i].arguments))
			return 0;
	return 1;
}

/* Re-encode a decoded record and decode it again: it must survive intact. */
static void check_roundtrip(const semcache_response *r, const sc_ids *ids)
{
	char *ns = strndup(ids->ns, ids->ns_len);
	char *key = strndup(ids->key, ids->key_len);
	char *scope = strndup(ids->scope, ids->scope_len);
	semcache_response *again = NULL;
	sc_ids ids2;
	sc_buf b = { 0 };
	int rc;

	if (!ns || !key || !scope)
		goto out;
	rc = sc_codec_encode(ns, key, scope, r, SIZE_MAX, &b);
	if (rc == -ENOMEM)
		goto out;
	CHECK(rc == 0);
	rc = sc_codec_decode(b.data, b.len, &again, &ids2);
	if (rc == -ENOMEM)
		goto out;
	CHECK(rc == 0);
	CHECK(same_response(r, again));
	CHECK(ids2.ns_len == ids->ns_len && memcmp(ids2.ns, ids->ns, ids->ns_len) == 0);
	CHECK(ids2.key_len == ids->key_len && memcmp(ids2.key, ids->key, ids->key_len) == 0);
	CHECK(ids2.scope_len == ids->scope_len &&
	      memcmp(ids2.scope, ids->scope, ids->scope_len) == 0);
out:
	semcache_response_free(again);
	free(b.data);
	free(ns);
	free(key);
	free(scope);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static const uint8_t empty[1];
	semcache_response *r = NULL;
	sc_ids ids, peek;
	const char *lo, *hi;
	int rc;

	if (!data)
		data = empty; /* NULL buf is -EINVAL, not what we fuzz */
	lo = (const char *)data;
	hi = lo + size;

	rc = sc_codec_decode(data, size, &r, &ids);
	CHECK(rc == 0 || rc == SEMCACHE_EBADRECORD || rc == -ENOMEM);
	if (rc == 0) {
		CHECK(r && r->content && r->model);
		CHECK(r->n_tool_calls <= SC_CODEC_MAX_TOOL_CALLS);
		CHECK((r->n_tool_calls == 0) == (r->tool_calls == NULL));
		for (uint32_t i = 0; i < r->n_tool_calls; i++)
			CHECK(r->tool_calls[i].id && r->tool_calls[i].name &&
			      r->tool_calls[i].arguments);
		CHECK(ids.ns >= lo && ids.ns + ids.ns_len <= hi);
		CHECK(ids.key >= lo && ids.key + ids.key_len <= hi);
		CHECK(ids.scope >= lo && ids.scope + ids.scope_len <= hi);
		CHECK(sc_codec_peek_ids(data, size, &peek) == 0);
		CHECK(peek.ns == ids.ns && peek.key == ids.key && peek.scope == ids.scope);
		check_roundtrip(r, &ids);
	} else {
		CHECK(r == NULL);
		rc = sc_codec_peek_ids(data, size, &peek);
		CHECK(rc == 0 || rc == SEMCACHE_EBADRECORD);
		if (rc == 0)
			CHECK(peek.ns >= lo && peek.scope + peek.scope_len <= hi);
	}
	/* Zero-copy: whatever prefix of the record is at hand, the content span
	 * it reports lies inside the record, and on a record that decodes it is
	 * exactly the decoded content. */
	for (size_t plen = size < 64 ? size : 64;; plen = plen * 2 < size ? plen * 2 : size) {
		size_t off = 0, clen = 0;
		sc_ids zid;
		int zr = sc_codec_content_span(data, plen, size, &zid, &off, &clen);
		CHECK(zr == 0 || zr == SEMCACHE_EBADRECORD);
		if (zr == 0) {
			CHECK(off <= size && clen <= size - off);
			if (r)
				CHECK(clen == strlen(r->content) &&
				      memcmp(data + off, r->content, clen) == 0);
		}
		if (plen == size)
			break;
	}
	semcache_response_free(r);
	return 0;
}

#ifdef SC_FUZZ_STANDALONE
/* ------------------------------------------------------------------------
 * Standalone driver: mutate valid encodings with a seeded PRNG.  Mutants
 * stay within a fixed bound so each iteration costs about the same.
 * ---------------------------------------------------------------------- */
#define MAX_INPUT 8192

static uint64_t rng_state;

static uint64_t rng(void)
{
	/* xorshift64* */
	rng_state ^= rng_state >> 12;
	rng_state ^= rng_state << 25;
	rng_state ^= rng_state >> 27;
	return rng_state * 0x2545f4914f6cdd1dull;
}

/* Bytes that mean something to a msgpack reader: type tags whose lengths
 * or counts follow, limits of the fix forms, and all-ones. */
static const uint8_t interesting[] = {
	0x00, 0x01, 0x7f, 0x80, 0x8f, 0x90, 0x9f, 0xa0, 0xbf, 0xc0, 0xc1, 0xc4, 0xc6,
	0xc7, 0xc9, 0xca, 0xcb, 0xcf, 0xd3, 0xd4, 0xd8, 0xd9, 0xdb, 0xdc, 0xdd, 0xde,
	0xdf, 0xe0, 0xff,
};

static size_t mutate(uint8_t *m, size_t n)
{
	int rounds = 1 + (int)(rng() % 4);

	for (int i = 0; i < rounds && n > 0; i++) {
		size_t at = rng() % n, len;

		switch (rng() % 7) {
		case 0: /* flip one bit */
			m[at] ^= (uint8_t)(1u << (rng() % 8));
			break;
		case 1: /* random byte */
			m[at] = (uint8_t)rng();
			break;
		case 2: /* interesting byte */
			m[at] = interesting[rng() % sizeof(interesting)];
			break;
		case 3: /* truncate */
			n = at;
			break;
		case 4: /* delete a run */
			len = 1 + rng() % 8;
			if (len > n - at)
				len = n - at;
			memmove(m + at, m + at + len, n - at - len);
			n -= len;
			break;
		case 5: /* duplicate a run in place (repeats keys, values, headers) */
			len = 1 + rng() % 32;
			if (len > n - at)
				len = n - at;
			if (n + len > MAX_INPUT)
				break;
			memmove(m + at + len, m + at, n - at);
			n += len;
			break;
		default: /* big-endian length field set to an extreme value */
			if (at + 4 < n) {
				uint32_t v = (rng() & 1) ? 0xffffffffu : (uint32_t)rng() % 64;

				m[at + 1] = (uint8_t)(v >> 24);
				m[at + 2] = (uint8_t)(v >> 16);
				m[at + 3] = (uint8_t)(v >> 8);
				m[at + 4] = (uint8_t)v;
			}
			break;
		}
	}
	return n;
}

int main(int argc, char **argv)
{
	static const semcache_tool_call calls[] = {
		{ "call_1", "get_weather", "{\"city\":\"Paris\"}" },
		{ "call_2", "", "{}" },
	};
	const semcache_response seeds[] = {
		{ .content = "hi", .model = "m" },
		{ .content = "The weather in Paris is sunny.", .model = "gpt-4o-mini",
		  .prompt_tokens = 70000, .completion_tokens = 300, .tool_calls = calls,
		  .n_tool_calls = 2, .latency_ms = 1234, .finish_reason = "stop",
		  .reasoning = "asked about weather", .metadata = "{\"t\":1}" },
	};
	unsigned long long iters = argc > 1 ? strtoull(argv[1], NULL, 0) : 1000000ull;
	uint8_t *m = malloc(MAX_INPUT);
	sc_buf enc[2] = { { 0 }, { 0 } };
	int rc = 1;

	rng_state = argc > 2 ? strtoull(argv[2], NULL, 0) : 1;
	if (rng_state == 0)
		rng_state = 1; /* xorshift's one fixed point */
	if (!m)
		goto out;
	for (int i = 0; i < 2; i++)
		if (sc_codec_encode("tenant", "sha256:0123", i ? "scope" : NULL, &seeds[i],
		                    MAX_INPUT, &enc[i]) != 0)
			goto out;

	for (unsigned long long it = 0; it < iters; it++) {
		const sc_buf *s = &enc[rng() % 2];
		size_t n;
		uint8_t *in;

		memcpy(m, s->data, s->len);
		n = mutate(m, s->len);
		/* exact-size copy so ASan catches a read one past the input */
		in = malloc(n ? n : 1);
		if (!in)
			goto out;
		memcpy(in, m, n);
		LLVMFuzzerTestOneInput(in, n);
		free(in);
	}
	printf("fuzz_codec: %llu iterations, seed %llu: ok\n", iters,
	       argc > 2 ? strtoull(argv[2], NULL, 0) : 1ull);
	rc = 0;
out:
	free(enc[0].data);
	free(enc[1].data);
	free(m);
	return rc;
}
#endif
