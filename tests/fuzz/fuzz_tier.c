/*
 * fuzz_tier.c - fuzz harness for the syncer's readers of Redis replies
 * (backends/tier.h): the XREAD reply shape, stream entries and stream ids,
 * i.e. what another host (or anyone who can write to Redis) controls in
 * the event stream.
 *
 * Each input is RESP bytes, parsed by hiredis's own reader (as the wire
 * layer does) into reply trees, which go to sc_tier_xread_entries(),
 * sc_tier_parse_event() (on the entries, and on every reply and element
 * whatever its shape) and sc_tier_parse_stream_id().  Beyond "no crash, no
 * overread" (ASan in scripts/test.sh), it checks what import relies on: an
 * accepted event has op P or D, an id of the format asked for (64
 * lowercase hex digits native; 1..256 bytes of 0x21..0x7e in the seed
 * format, copied whole and NUL-terminated), and "own" exactly when its
 * origin is ours; an accepted XREAD reply's entries are within the cap.
 * Every entry is parsed in both formats.
 *
 * libFuzzer (clang):
 *   clang -std=c11 -D_GNU_SOURCE -g -O1 -fsanitize=fuzzer,address,undefined \
 *         -Iinclude -Icore -Ibackends -I/usr/include/hiredis \
 *         $(find core shm backends -name '*.c') tests/fuzz/fuzz_tier.c \
 *         -lcrypto -lhiredis -ljansson -lm -o fuzz_tier
 * Standalone (-DSC_FUZZ_STANDALONE, what meson test runs): a seeded
 * mutational loop over valid XREAD replies:
 *   fuzz_tier [iterations [seed]]     (default 100000, seed 1)
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <hiredis.h>

#include "tier.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define CHECK(cond)                                                            \
	do {                                                                   \
		if (!(cond)) {                                                 \
			fprintf(stderr, "fuzz_tier: %s:%d: check failed: %s\n",  \
			        __FILE__, __LINE__, #cond);                    \
			abort();                                               \
		}                                                              \
	} while (0)

static const char ORIGIN[] = "0123456789abcdef0123456789abcdef";
static unsigned long long accepted_events, accepted_replies;

static unsigned long long accepted_seed;

static void check_event_fmt(const redisReply *e, enum sc_rformat fmt)
{
	struct sc_tier_event ev;
	memset(&ev, 0x5a, sizeof ev);
	if (sc_tier_parse_event(ORIGIN, fmt, e, &ev) != 0)
		return;
	accepted_events++;
	CHECK(ev.op == 'P' || ev.op == 'D');
	CHECK(ev.id_len <= SC_RID_SEED_MAX && ev.id[ev.id_len] == '\0' &&
	      strlen(ev.id) == ev.id_len);
	if (fmt == SC_RFMT_NATIVE) {
		CHECK(ev.id_len == 64);
		for (int i = 0; i < 64; i++)
			CHECK((ev.id[i] >= '0' && ev.id[i] <= '9') ||
			      (ev.id[i] >= 'a' && ev.id[i] <= 'f'));
	} else {
		accepted_seed++;
		CHECK(ev.id_len >= 1);
		for (size_t i = 0; i < ev.id_len; i++)
			CHECK(ev.id[i] >= 0x21 && ev.id[i] <= 0x7e);
	}
	/* own exactly when some "o" field equals ours */
	bool ours = false;
	const redisReply *f = e->element[1];
	for (size_t i = 0; i + 1 < f->elements; i += 2)
		if (f->element[i]->len == 1 && f->element[i]->str[0] == 'o')
			ours = f->element[i + 1]->len == 32 && !memcmp(f->element[i + 1]->str, ORIGIN, 32);
	CHECK(ev.own == ours);
}

static void check_event(const redisReply *e)
{
	check_event_fmt(e, SC_RFMT_NATIVE);
	check_event_fmt(e, SC_RFMT_SEED);
}

/* Every reply and element, whatever its shape, goes to every reader. */
static void walk(const redisReply *r, int depth)
{
	uint64_t ms, seq;
	if (!r || depth > 8)
		return;
	(void)sc_tier_parse_stream_id(r, &ms, &seq);
	check_event(r);
	const redisReply *entries = NULL;
	int shape = sc_tier_xread_entries(r, 256, &entries);
	if (shape == 0) {
		accepted_replies++;
		CHECK(entries && entries->type == REDIS_REPLY_ARRAY && entries->elements <= 256);
		for (size_t i = 0; i < entries->elements; i++)
			check_event(entries->element[i]);
	} else {
		CHECK(entries == NULL);
	}
	if (r->type == REDIS_REPLY_ARRAY)
		for (size_t i = 0; i < r->elements; i++)
			walk(r->element[i], depth + 1);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	redisReader *rd = redisReaderCreate();
	if (!rd)
		return 0;
	if (redisReaderFeed(rd, (const char *)data, size) == REDIS_OK) {
		for (int k = 0; k < 8; k++) {
			void *reply = NULL;
			if (redisReaderGetReply(rd, &reply) != REDIS_OK || !reply)
				break;
			walk(reply, 0);
			freeReplyObject(reply);
		}
	}
	redisReaderFree(rd);
	return 0;
}

#ifdef SC_FUZZ_STANDALONE
static uint64_t rng_state;
static uint64_t rnd(void)
{
	uint64_t x = rng_state;
	x ^= x << 13;
	x ^= x >> 7;
	x ^= x << 17;
	return rng_state = x;
}

static size_t bulk(char *out, const char *s, size_t n)
{
	size_t k = (size_t)sprintf(out, "$%zu\r\n", n);
	memcpy(out + k, s, n);
	memcpy(out + k + n, "\r\n", 2);
	return k + n + 2;
}

/* A valid XREAD reply of 1..4 entries, some ours, some not. */
static size_t valid_reply(char *out)
{
	size_t n = 0, k = 1 + rnd() % 4;
	n += (size_t)sprintf(out + n, "*1\r\n*2\r\n");
	n += bulk(out + n, "t:llm_cache_events", 18);
	n += (size_t)sprintf(out + n, "*%zu\r\n", k);
	for (size_t i = 0; i < k; i++) {
		char sid[48], hex[65];
		int l = sprintf(sid, "%llu-%llu", (unsigned long long)(1700000000000ull + rnd() % 1000),
		                (unsigned long long)(rnd() % 5));
		for (int j = 0; j < 64; j++)
			hex[j] = "0123456789abcdef"[rnd() % 16];
		n += (size_t)sprintf(out + n, "*2\r\n");
		n += bulk(out + n, sid, (size_t)l);
		n += (size_t)sprintf(out + n, "*6\r\n");
		n += bulk(out + n, "op", 2);
		n += bulk(out + n, rnd() % 2 ? "P" : "D", 1);
		n += bulk(out + n, "id", 2);
		if (rnd() % 2) {
			n += bulk(out + n, hex, 64);
		} else { /* a seed id: a key string, up to past the 256-byte cap */
			size_t kl = 1 + rnd() % 260;
			char key[260];
			for (size_t j = 0; j < kl; j++)
				key[j] = (char)(0x21 + rnd() % 94);
			n += bulk(out + n, key, kl);
		}
		n += bulk(out + n, "o", 1);
		n += bulk(out + n, rnd() % 2 ? ORIGIN : "ffffffffffffffffffffffffffffffff", 32);
	}
	return n;
}

int main(int argc, char **argv)
{
	unsigned long iters = argc > 1 ? strtoul(argv[1], NULL, 10) : 100000;
	rng_state = argc > 2 ? strtoull(argv[2], NULL, 10) : 1;
	if (!rng_state)
		rng_state = 1;
	static char buf[16384];
	for (unsigned long it = 0; it < iters; it++) {
		size_t n = valid_reply(buf);
		unsigned muts = (unsigned)(rnd() % 4);
		for (unsigned m = 0; m < muts && n; m++) {
			size_t at = rnd() % n;
			switch (rnd() % 5) {
			case 0: buf[at] = (char)rnd(); break;
			case 1: buf[at] ^= (char)(1u << (rnd() % 8)); break;
			case 2: n = at; break; /* truncate */
			case 3: /* a RESP type byte somewhere */
				buf[at] = "*$:+-_,#%~"[rnd() % 10];
				break;
			default: /* a digit changed: counts and lengths lie */
				buf[at] = (char)('0' + rnd() % 10);
			}
		}
		LLVMFuzzerTestOneInput((const uint8_t *)buf, n);
	}
	printf("fuzz_tier: %lu inputs, %llu XREAD replies and %llu events (%llu seed) accepted\n",
	       iters, accepted_replies, accepted_events, accepted_seed);
	/* the mutator must keep reaching the success paths */
	CHECK(accepted_replies > iters / 10 && accepted_events > iters / 10 &&
	      accepted_seed > iters / 20);
	return 0;
}
#endif
