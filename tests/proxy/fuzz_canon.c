/*
 * fuzz_canon.c - fuzz harness for semcache-proxy's canonicaliser (proxy/canon.c).
 *
 * Feeds arbitrary bytes through what the proxy does with a request body:
 * jansson parses it (as http.c does, duplicate keys rejected), then
 * the library's canonical JSON (sc_canon_json, behind
 * semcache_request_key_json), px_canon_request() and px_canon_namespace()
 * run on it.
 * Beyond "no crash, no leak, no undefined behaviour" it checks the
 * properties the cache's correctness rests on:
 *  - canonical JSON is valid JSON and a fixed point: canonicalising its own
 *    parse gives the same bytes;
 *  - the key and scope do not depend on formatting: the same document
 *    re-serialised with indentation and without sorted keys gets the same
 *    key and scope;
 *  - the excluded fields really are excluded: setting stream, user,
 *    metadata and store changes neither key nor scope;
 *  - the key names its model and 64 hex digits; the scope names its model;
 *  - a namespace always fits and an invalid ACL is refused, never truncated.
 *
 * libFuzzer (clang):
 *   clang -std=c11 -D_GNU_SOURCE -g -O1 -fsanitize=fuzzer,address,undefined \
 *         -Iinclude -Iproxy proxy/canon.c proxy/buf.c tests/proxy/fuzz_canon.c \
 *         -ljansson -lcrypto -o fuzz_canon
 *   ./fuzz_canon -max_len=4096 corpus/
 *
 * Standalone (any compiler, no libFuzzer; this is what `meson test` runs):
 * a seeded mutational loop over valid chat requests, each mutant passed to
 * the same entry point:
 *   ./fuzz_canon [iterations [seed]]     (default 100000, seed 1)
 */
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "proxy.h"
#include "internal.h" /* sc_canon_json */

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define CHECK(cond)                                                          \
	do {                                                                     \
		if (!(cond)) {                                                       \
			fprintf(stderr, "fuzz_canon: %s:%d: check failed: %s\n",        \
			        __FILE__, __LINE__, #cond);                              \
			abort();                                                         \
		}                                                                    \
	} while (0)

/* canon.c logs nothing, but proxy.h declares px_log for the others */
void px_log(const char *fmt, ...)
{
	(void)fmt;
}

static void check_canonical_fixed_point(const json_t *v)
{
	char *a = NULL, *b = NULL;
	size_t alen = 0, blen = 0;
	json_t *back;

	if (sc_canon_json(v, &a, &alen) == -ENOMEM)
		goto out;
	CHECK(a != NULL);
	back = json_loadb(a, alen, JSON_REJECT_DUPLICATES | JSON_DECODE_ANY, NULL);
	CHECK(back != NULL);
	CHECK(sc_canon_json(back, &b, &blen) == 0);
	CHECK(alen == blen && memcmp(a, b, alen) == 0);
	json_decref(back);
out:
	free(a);
	free(b);
}

static void check_request(json_t *v)
{
	px_canon c1, c2, c3;
	char err[256];
	json_t *re = NULL, *with = NULL;
	const char *model;
	char *text;
	size_t ml;

	if (px_canon_request(v, NULL, 0, true, &c1, err, sizeof err) != 0)
		return;
	model = json_string_value(json_object_get(v, "model"));
	CHECK(model != NULL);
	if (c1.cacheable) {
		ml = strlen(model);
		CHECK(strncmp(c1.key, model, ml) == 0 && c1.key[ml] == ':');
		CHECK(strlen(c1.key + ml + 1) == 64);
		CHECK(strspn(c1.key + ml + 1, "0123456789abcdef") == 64);
		CHECK(strncmp(c1.scope, model, ml) == 0 && c1.scope[ml] == '|');
	}
	/* formatting does not matter */
	text = json_dumps(v, JSON_INDENT(3) | JSON_PRESERVE_ORDER);
	if (text) {
		re = json_loads(text, JSON_REJECT_DUPLICATES, NULL);
		free(text);
	}
	if (re && px_canon_request(re, NULL, 0, true, &c2, err, sizeof err) == 0) {
		CHECK(c2.cacheable == c1.cacheable);
		if (c1.cacheable) {
			CHECK(strcmp(c1.key, c2.key) == 0);
			CHECK(strcmp(c1.scope, c2.scope) == 0);
		}
		CHECK((c1.embed_text == NULL) == (c2.embed_text == NULL));
		CHECK(!c1.embed_text || strcmp(c1.embed_text, c2.embed_text) == 0);
		px_canon_free(&c2);
	}
	/* excluded fields are excluded */
	with = json_deep_copy(v);
	if (with && !json_object_get(v, "stream")) {
		json_object_set_new(with, "stream", json_false());
		json_object_set_new(with, "user", json_string("someone"));
		json_object_set_new(with, "metadata", json_pack("{s:i}", "x", 1));
		json_object_set_new(with, "store", json_true());
		if (px_canon_request(with, NULL, 0, true, &c3, err, sizeof err) == 0) {
			if (c1.cacheable && c3.cacheable) {
				CHECK(strcmp(c1.key, c3.key) == 0);
				CHECK(strcmp(c1.scope, c3.scope) == 0);
			}
			px_canon_free(&c3);
		}
	}
	json_decref(with);
	json_decref(re);
	px_canon_free(&c1);
}

static void check_namespace(const uint8_t *data, size_t size)
{
	char user[200], acl[200], ns[PX_NS_LEN];
	size_t half = size / 2, un = half < sizeof user - 1 ? half : sizeof user - 1;
	size_t an = size - half < sizeof acl - 1 ? size - half : sizeof acl - 1;
	int rc;

	memcpy(user, data, un);
	user[un] = '\0';
	memcpy(acl, data + half, an);
	acl[an] = '\0';
	rc = px_canon_namespace(user, acl, ns);
	CHECK(rc == 0 || rc == -EINVAL);
	if (rc == 0) {
		CHECK(strlen(ns) < PX_NS_LEN);
		CHECK(!*acl || strstr(ns, "|acl:") != NULL);
	}
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	json_t *v = json_loadb((const char *)data, size, JSON_REJECT_DUPLICATES | JSON_DECODE_ANY,
	                       NULL);

	check_namespace(data, size);
	if (!v)
		return 0;
	check_canonical_fixed_point(v);
	check_request(v);
	json_decref(v);
	return 0;
}

#ifdef SC_FUZZ_STANDALONE
static const char *const seeds[] = {
	"{\"model\":\"gpt-4o\",\"messages\":[{\"role\":\"system\",\"content\":\"Be brief.\"},"
	"{\"role\":\"user\",\"content\":\"What is 2+2?\"}],\"temperature\":0.2,\"seed\":7}",
	"{\"model\":\"m\",\"messages\":[{\"role\":\"user\",\"content\":[{\"type\":\"text\","
	"\"text\":\"Describe\"},{\"type\":\"image_url\",\"image_url\":{\"url\":\"data:x\"}}]}],"
	"\"max_tokens\":1e2,\"top_p\":1.0,\"stop\":[\"\\n\",\"END\"],\"n\":1}",
	"{\"model\":\"m\",\"messages\":[{\"role\":\"user\",\"content\":\"hi\"},{\"role\":"
	"\"assistant\",\"content\":null,\"tool_calls\":[{\"id\":\"c1\",\"type\":\"function\","
	"\"function\":{\"name\":\"f\",\"arguments\":\"{}\"}}]},{\"role\":\"tool\","
	"\"tool_call_id\":\"c1\",\"content\":\"42\"}],\"tools\":[{\"type\":\"function\","
	"\"function\":{\"name\":\"f\",\"parameters\":{\"type\":\"object\"}}}],"
	"\"tool_choice\":\"auto\",\"stream\":true,\"stream_options\":{\"include_usage\":true}}",
	"{\"model\":\"m\",\"messages\":[{\"role\":\"user\",\"content\":\"\\u00e9\\u0001\\\"\"}],"
	"\"response_format\":{\"type\":\"json_schema\",\"json_schema\":{\"name\":\"s\","
	"\"schema\":{\"type\":\"object\",\"properties\":{\"a\":{\"type\":\"number\"}}}}},"
	"\"logit_bias\":{\"50256\":-100},\"presence_penalty\":-0.0,\"frequency_penalty\":1e-7,"
	"\"user\":\"alice\",\"metadata\":{\"k\":\"v\"},\"cache\":{\"ttl\":60}}",
	"[1,-0,1.5e300,12345678901234567,-9.25,true,false,null,\"x\",{},[]]",
};

static const char *const tokens[] = {
	"{", "}", "[", "]", ",", ":", "\"", "1e308", "-0", "0.1", "1.0", "\\u0000", "\\ud800",
	"null", "true", "\"messages\"", "\"role\"", "\"user\"", "\"content\"", "\"model\"",
	"\"stream\"", "9007199254740993", "\xc3\xa9", "\xff",
};

static uint64_t rng_state;

static uint64_t rnd(void)
{
	uint64_t x = rng_state;

	x ^= x << 13;
	x ^= x >> 7;
	x ^= x << 17;
	return rng_state = x;
}

static size_t mutate(uint8_t *buf, size_t len, size_t cap)
{
	int rounds = 1 + (int)(rnd() % 4);

	while (rounds--) {
		size_t pos = len ? rnd() % (len + 1) : 0;

		switch (rnd() % 5) {
		case 0: /* flip a byte */
			if (len)
				buf[pos % len] ^= (uint8_t)(1u << (rnd() % 8));
			break;
		case 1: /* delete a span */
			if (len) {
				size_t n = 1 + rnd() % 8;

				pos %= len;
				if (n > len - pos)
					n = len - pos;
				memmove(buf + pos, buf + pos + n, len - pos - n);
				len -= n;
			}
			break;
		case 2: { /* insert a token */
			const char *t = tokens[rnd() % (sizeof tokens / sizeof tokens[0])];
			size_t n = strlen(t);

			if (len + n <= cap) {
				memmove(buf + pos + n, buf + pos, len - pos);
				memcpy(buf + pos, t, n);
				len += n;
			}
			break;
		}
		case 3: /* duplicate a span */
			if (len) {
				size_t from = rnd() % len, n = 1 + rnd() % 32;

				if (n > len - from)
					n = len - from;
				if (len + n <= cap) {
					memmove(buf + pos + n, buf + pos, len - pos);
					/* the source may overlap the gap just opened */
					memmove(buf + pos, buf + (from < pos ? from : from + n), n);
					len += n;
				}
			}
			break;
		default: /* random byte */
			if (len < cap) {
				memmove(buf + pos + 1, buf + pos, len - pos);
				buf[pos] = (uint8_t)rnd();
				len++;
			}
		}
	}
	return len;
}

int main(int argc, char **argv)
{
	unsigned long iters = argc > 1 ? strtoul(argv[1], NULL, 10) : 100000;
	unsigned long seed = argc > 2 ? strtoul(argv[2], NULL, 10) : 1;
	size_t nseeds = sizeof seeds / sizeof seeds[0];
	uint8_t buf[8192];

	rng_state = seed * 0x9E3779B97F4A7C15ull + 1;
	for (size_t i = 0; i < nseeds; i++)
		LLVMFuzzerTestOneInput((const uint8_t *)seeds[i], strlen(seeds[i]));
	for (unsigned long i = 0; i < iters; i++) {
		const char *s = seeds[rnd() % nseeds];
		size_t len = strlen(s);

		memcpy(buf, s, len);
		len = mutate(buf, len, sizeof buf);
		LLVMFuzzerTestOneInput(buf, len);
	}
	printf("fuzz_canon: %lu inputs, seed %lu, no property violated\n", iters, seed);
	return 0;
}
#endif
