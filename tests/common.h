/*
 * common.h - helpers shared by the test suites: temporary segment paths,
 * an injectable clock, response records carrying a checksum.
 */
#ifndef SC_TEST_COMMON_H
#define SC_TEST_COMMON_H

#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "semcache.h"

/* xorshift64: a tiny deterministic generator for test workloads. */
static inline uint64_t test_rng(uint64_t *s)
{
	uint64_t x = *s;
	x ^= x << 13;
	x ^= x >> 7;
	x ^= x << 17;
	return *s = x;
}

/* A fresh path under /dev/shm (or TMPDIR) unique to this process and call. */
static inline void test_path(char *buf, size_t len, const char *tag)
{
	static int seq;
	const char *dir = access("/dev/shm", W_OK) == 0 ? "/dev/shm" : "/tmp";
	snprintf(buf, len, "%s/sctest-%s-%d-%d", dir, tag, (int)getpid(), seq++);
	unlink(buf);
}

/* Fake wall clock shared by forked children when placed in shared memory. */
typedef struct test_clock {
	_Atomic int64_t now;
} test_clock;

static inline int64_t test_clock_read(void *arg)
{
	return atomic_load(&((test_clock *)arg)->now);
}

static inline semcache_options test_options(uint32_t slots, uint32_t dim)
{
	semcache_options o;
	semcache_options_init(&o);
	o.slots = slots;
	o.dim = dim;
	o.arena_bytes = 4u << 20;
	o.max_payload = 64u << 10;
	o.max_procs = 64;
	return o;
}

static inline uint64_t fnv64(const char *s)
{
	uint64_t h = 1469598103934665603ull;
	for (; *s; s++) {
		h ^= (unsigned char)*s;
		h *= 1099511628211ull;
	}
	return h;
}

/* content = "<body>#<checksum of body>" so any reader can verify it. */
static inline void make_content(char *buf, size_t len, const char *body)
{
	snprintf(buf, len, "%s#%016llx", body, (unsigned long long)fnv64(body));
}

static inline int content_ok(const char *content)
{
	const char *hash = strrchr(content, '#');
	if (!hash || strlen(hash) != 17)
		return 0;
	char body[65536];
	size_t n = (size_t)(hash - content);
	if (n >= sizeof body)
		return 0;
	memcpy(body, content, n);
	body[n] = 0;
	char expect[32];
	snprintf(expect, sizeof expect, "#%016llx", (unsigned long long)fnv64(body));
	return strcmp(hash, expect) == 0;
}

static inline semcache_response simple_response(const char *content)
{
	semcache_response r;
	memset(&r, 0, sizeof r);
	r.content = content;
	r.model = "test-model";
	r.prompt_tokens = 10;
	r.completion_tokens = 20;
	r.latency_ms = 123;
	r.finish_reason = "stop";
	return r;
}

static inline int put_simple(semcache *c, const char *ns, const char *key, const char *content)
{
	semcache_response r = simple_response(content);
	semcache_put_args a = { .ns = ns, .key = key, .response = &r };
	return semcache_put(c, &a);
}

/*
 * What users feel after a crash: every entry semcache_foreach lists (live,
 * not being written) must be found by semcache_get, with intact content.
 * Returns how many listed entries were NOT found; *listed (may be NULL)
 * gets how many were listed.  Call it while no writer runs.
 */
struct test_listed {
	char (*keys)[64];
	size_t n, cap;
};

static inline int test_collect_key(const semcache_entry_info *e, void *arg)
{
	struct test_listed *l = arg;
	if (l->n < l->cap)
		snprintf(l->keys[l->n++], 64, "%s", e->key);
	return 0;
}

static inline size_t test_listed_but_missing(semcache *c, const char *ns, size_t *listed)
{
	struct test_listed l = { calloc(65536, 64), 0, 65536 };
	size_t missing = 0;
	if (!l.keys || semcache_foreach(c, ns, NULL, test_collect_key, &l) != 0) {
		free(l.keys);
		return SIZE_MAX;
	}
	for (size_t i = 0; i < l.n; i++) {
		semcache_response *out = NULL;
		if (semcache_get(c, ns, l.keys[i], 0, &out) != 0 || !content_ok(out->content))
			missing++;
		semcache_response_free(out);
	}
	if (listed)
		*listed = l.n;
	free(l.keys);
	return missing;
}

#endif
