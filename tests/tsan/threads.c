/*
 * threads.c - many threads of one process on one segment, through one
 * handle and through two, for ThreadSanitizer (Criterion itself does not
 * run under TSan, so this is a plain program: exit 0 when every hit was the
 * entry asked for, 1 otherwise).  The seqlock's payload and row copies are
 * the only intended races; tsan.supp names them, and everything else TSan
 * reports is a bug.  Also run in the normal build as a smoke test.
 *
 *   tsan_threads [SECONDS]
 */
#include <pthread.h>
#include <stdatomic.h>
#include <time.h>

#include "../common.h"

#define DIM 8

static char path[256];
static semcache *h1, *h2;
static _Atomic int stop;
static _Atomic long bad, hits, ops;

static void emb(int k, float *e)
{
	for (int i = 0; i < DIM; i++)
		e[i] = (float)((k * 31 + i * 7) % 13) - 6.0f + (i == k % DIM ? 20.0f : 0.0f);
}

static void *writer(void *arg)
{
	semcache *c = arg == NULL ? h1 : h2;
	uint64_t s = (uintptr_t)arg + 11;
	char key[32], body[96], content[160];
	float e[DIM];
	for (long i = 0; !atomic_load(&stop); i++) {
		int k = (int)(test_rng(&s) % 200);
		snprintf(key, sizeof key, "k%d", k);
		if (test_rng(&s) % 50 == 0) {
			(void)semcache_invalidate(c, "ns", key, NULL);
			continue;
		}
		snprintf(body, sizeof body, "ns/%s/%ld", key, i);
		make_content(content, sizeof content, body);
		semcache_response r = simple_response(content);
		emb(k, e);
		semcache_put_args a = { .ns = "ns", .key = key, .scope = "m", .response = &r,
		                        .embedding = e, .embedding_dim = DIM };
		(void)semcache_put(c, &a);
		atomic_fetch_add(&ops, 1);
	}
	return NULL;
}

static void *reader(void *arg)
{
	semcache *c = (uintptr_t)arg & 1 ? h2 : h1;
	uint64_t s = (uintptr_t)arg + 77;
	char key[32], expect[48];
	float e[DIM];
	while (!atomic_load(&stop)) {
		int k = (int)(test_rng(&s) % 200);
		snprintf(key, sizeof key, "k%d", k);
		snprintf(expect, sizeof expect, "ns/%s/", key);
		semcache_response *out = NULL;
		switch (test_rng(&s) % 3) {
		case 0:
			if (semcache_get(c, "ns", key, 0, &out) == 0) {
				atomic_fetch_add(&hits, 1);
				if (!content_ok(out->content) || strncmp(out->content, expect, strlen(expect)))
					atomic_fetch_add(&bad, 1);
			}
			break;
		case 1: {
			semcache_ref ref;
			if (semcache_get_ref(c, "ns", key, &ref) == 0) {
				char buf[256];
				size_t n = 0;
				for (int v = 0; v < ref.iovcnt && n + ref.iov[v].iov_len < sizeof buf; v++) {
					memcpy(buf + n, ref.iov[v].iov_base, ref.iov[v].iov_len);
					n += ref.iov[v].iov_len;
				}
				buf[n] = 0;
				atomic_fetch_add(&hits, 1);
				if (!content_ok(buf) || strncmp(buf, expect, strlen(expect)))
					atomic_fetch_add(&bad, 1);
				semcache_release(c, &ref);
			}
			break;
		}
		default: {
			float sim;
			emb(k, e);
			if (semcache_search(c, "ns", "m", e, DIM, 0.999f, &out, &sim) == 0) {
				atomic_fetch_add(&hits, 1);
				if (!content_ok(out->content))
					atomic_fetch_add(&bad, 1);
			}
		}
		}
		semcache_response_free(out);
		atomic_fetch_add(&ops, 1);
	}
	return NULL;
}

int main(int argc, char **argv)
{
	double seconds = argc > 1 ? atof(argv[1]) : 2.0;
	test_path(path, sizeof path, "tsan");
	semcache_options o = test_options(512, DIM);
	o.arena_bytes = 256 << 10;
	if (semcache_open(path, &o, &h1) != 0 || semcache_open(path, NULL, &h2) != 0)
		return 2;
	pthread_t t[6];
	pthread_create(&t[0], NULL, writer, NULL);
	pthread_create(&t[1], NULL, writer, (void *)1);
	for (uintptr_t i = 0; i < 4; i++)
		pthread_create(&t[2 + i], NULL, reader, (void *)i);
	struct timespec ts = { (time_t)seconds, (long)((seconds - (time_t)seconds) * 1e9) };
	nanosleep(&ts, NULL);
	atomic_store(&stop, 1);
	for (int i = 0; i < 6; i++)
		pthread_join(t[i], NULL);
	char report[1024];
	int vr = semcache_verify(h1, report, sizeof report);
	semcache_close(h2);
	semcache_close(h1);
	unlink(path);
	printf("%ld operations, %ld hits, %ld wrong, verify %s\n", atomic_load(&ops),
	       atomic_load(&hits), atomic_load(&bad), vr == 0 ? "consistent" : report);
	return atomic_load(&bad) == 0 && atomic_load(&hits) > 0 && vr == 0 ? 0 : 1;
}
