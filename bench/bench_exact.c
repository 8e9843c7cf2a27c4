/*
 * bench_exact.c - exact-path benchmark: puts and get hits of 1 KB responses
 * over 100,000 entries, in one process and in two.
 *
 * Reference measured in the same run: the "floor" of a get, i.e. copying a
 * 1 KB record from a random place in a buffer as large as the arena (the
 * memory traffic no cache can avoid), so each figure is printed as a ratio.
 * Latencies are per operation from clock_gettime, minus the timer's own
 * cost measured here.  The zero-copy get is measured twice, with its
 * hazard-word pin (the real API) and without (unsafe, bench only), so the
 * difference is what liveness and pinning cost per read.  Replacing puts
 * are measured with one zero-copy reference held for the whole round and
 * with none, alternating, so the ratio says what a held reference costs
 * writers (the fault model's promise: nothing but its own blocks).  Ends
 * with one JSON line.
 *
 *   bench_exact [--entries N] [--gets N] [--path P]
 */
#include <inttypes.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "bench_util.h"

#include "semcache.h"
#include "internal.h" /* sc_get_ref(): zero-copy without a pin, to price pinning */

#define now_ns bench_now_ns

/* Keys are formatted once, so the loops time the cache, not snprintf. */
static char (*keys)[16];

static uint64_t timer_cost(void)
{
	uint64_t t0 = now_ns();
	for (int i = 0; i < 100000; i++)
		(void)now_ns();
	return (now_ns() - t0) / 100000;
}

/* Random 1 KB copies out of a buffer the size of the data set. */
static double reference_copy_per_s(size_t bytes, long n)
{
	uint8_t *buf = malloc(bytes), out[1024];
	if (!buf)
		return 0;
	memset(buf, 1, bytes);
	uint64_t s = 7, sum = 0;
	size_t items = bytes / 1024;
	uint64_t t0 = now_ns();
	for (long i = 0; i < n; i++) {
		memcpy(out, buf + (xs(&s) % items) * 1024, sizeof out);
		sum += out[i & 1023];
	}
	double secs = (now_ns() - t0) / 1e9;
	free(buf);
	if (sum == 42)
		puts("");
	return n / secs;
}

static double ref_loop(semcache *c, int entries, long n, uint64_t seed, bool pin)
{
	long hits = 0;
	uint64_t t0 = now_ns();
	for (long i = 0; i < n; i++) {
		const char *key = keys[xs(&seed) % (uint64_t)entries];
		semcache_ref ref;
		if (sc_get_ref(c, "bench", key, &ref, pin) == 0) {
			hits += ((const char *)ref.iov[0].iov_base)[0] == 'r';
			semcache_release(c, &ref);
		}
	}
	double per_s = n / ((now_ns() - t0) / 1e9);
	return hits > n * 99 / 100 ? per_s : 0; /* a bucket overflow may drop a few keys */
}

/*
 * Gets in `procs` forked children at once, on the inherited handle.  Each
 * child times itself between a common start signal and its last get, so
 * fork and exit are outside the measured window, and counts its hits;
 * throughput = all gets / (last end - first start).  The 1-process figure
 * for the scaling ratio is measured by this same function.
 */
struct par_slot {
	_Atomic int ready;
	_Atomic int go;
	uint64_t start[8], end[8];
	long hits[8];
};

static long get_loop(semcache *c, int entries, long n, uint64_t seed, uint32_t *lat, uint64_t tcost);

static double par_gets(semcache *c, int entries, long n, int procs, long *hits)
{
	struct par_slot *ps = mmap(NULL, sizeof *ps, PROT_READ | PROT_WRITE,
	                           MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	if (ps == MAP_FAILED)
		return 0;
	memset(ps, 0, sizeof *ps);
	for (int p = 0; p < procs; p++) {
		if (fork() == 0) {
			get_loop(c, entries, n / 10, 900 + (uint64_t)p, NULL, 0); /* warm */
			atomic_fetch_add(&ps->ready, 1);
			while (!atomic_load(&ps->go))
				;
			ps->start[p] = now_ns();
			ps->hits[p] = get_loop(c, entries, n, 500 + (uint64_t)p, NULL, 0);
			ps->end[p] = now_ns();
			_exit(0);
		}
	}
	while (atomic_load(&ps->ready) < procs)
		;
	atomic_store(&ps->go, 1);
	while (wait(NULL) > 0)
		;
	uint64_t first = UINT64_MAX, last = 0;
	*hits = 0;
	for (int p = 0; p < procs; p++) {
		first = ps->start[p] < first ? ps->start[p] : first;
		last = ps->end[p] > last ? ps->end[p] : last;
		*hits += ps->hits[p];
	}
	munmap(ps, sizeof *ps);
	return (double)n * procs / ((last - first) / 1e9);
}

static long get_loop(semcache *c, int entries, long n, uint64_t seed, uint32_t *lat, uint64_t tcost)
{
	long hits = 0;
	for (long i = 0; i < n; i++) {
		const char *key = keys[xs(&seed) % (uint64_t)entries];
		semcache_response *r;
		uint64_t t0 = lat ? now_ns() : 0;
		if (semcache_get(c, "bench", key, 0, &r) == 0) {
			hits++;
			semcache_response_free(r);
		}
		if (lat) {
			uint64_t d = now_ns() - t0;
			lat[i] = (uint32_t)(d > tcost ? d - tcost : 0);
		}
	}
	return hits;
}

int main(int argc, char **argv)
{
	int entries = 100000;
	long gets = 2000000;
	const char *path = "/dev/shm/semcache-bench-exact";
	for (int i = 1; i < argc; i++) {
		if (!strcmp(argv[i], "--entries") && i + 1 < argc)
			entries = atoi(argv[++i]);
		else if (!strcmp(argv[i], "--gets") && i + 1 < argc)
			gets = atol(argv[++i]);
		else if (!strcmp(argv[i], "--path") && i + 1 < argc)
			path = argv[++i];
		else {
			fprintf(stderr, "usage: %s [--entries N] [--gets N] [--path P]\n", argv[0]);
			return 2;
		}
	}
	if (entries < 1 || gets < 1)
		return 2;

	semcache_destroy(path, 1);
	semcache_options o;
	semcache_options_init(&o);
	o.slots = (uint32_t)(entries + entries / 4);
	o.dim = 0;
	o.arena_bytes = (uint64_t)entries * 1536 + (64u << 20);
	semcache *c;
	int rc = semcache_open(path, &o, &c);
	if (rc < 0) {
		fprintf(stderr, "open %s: %s\n", path, semcache_strerror(rc));
		return 1;
	}

	char content[1025];
	keys = malloc(sizeof *keys * (size_t)entries);
	if (!keys)
		return 1;
	for (int i = 0; i < entries; i++)
		snprintf(keys[i], sizeof keys[i], "key-%08d", i);
	memset(content, 'r', 1024);
	content[1024] = 0;
	semcache_response resp = { .content = content, .model = "bench-model", .prompt_tokens = 100,
	                           .completion_tokens = 250, .latency_ms = 800,
	                           .finish_reason = "stop" };
	uint64_t tcost = timer_cost();

	/* puts: fill an empty cache, then replace random existing entries
	 * (the steady state: every put retires the old payload to limbo) */
	uint64_t t0 = now_ns();
	for (int i = 0; i < entries; i++) {
		semcache_put_args a = { .ns = "bench", .key = keys[i], .response = &resp };
		if ((rc = semcache_put(c, &a)) < 0) {
			fprintf(stderr, "put: %s\n", semcache_strerror(rc));
			return 1;
		}
	}
	double fill_s = entries / ((now_ns() - t0) / 1e9);
	uint64_t ps_seed = 4242;
	t0 = now_ns();
	for (int i = 0; i < entries; i++) {
		semcache_put_args a = { .ns = "bench", .key = keys[xs(&ps_seed) % (uint64_t)entries],
		                        .response = &resp };
		if ((rc = semcache_put(c, &a)) < 0) {
			fprintf(stderr, "put: %s\n", semcache_strerror(rc));
			return 1;
		}
	}
	double put_s = entries / ((now_ns() - t0) / 1e9);

	/* replacing puts with one zero-copy reference held for the whole round,
	 * against rounds with none, alternating; best round of each */
	double put_free = 0, put_held = 0;
	for (int round = 0; round < 6; round++) {
		bool hold = round & 1;
		semcache_ref held;
		if (hold && semcache_get_ref(c, "bench", keys[round % entries], &held) < 0) {
			fprintf(stderr, "get_ref for the held reference failed\n");
			return 1;
		}
		t0 = now_ns();
		for (int i = 0; i < entries / 2; i++) {
			semcache_put_args a = { .ns = "bench",
			                        .key = keys[xs(&ps_seed) % (uint64_t)entries],
			                        .response = &resp };
			if ((rc = semcache_put(c, &a)) < 0) {
				fprintf(stderr, "put (reference %s): %s\n", hold ? "held" : "none",
				        semcache_strerror(rc));
				return 1;
			}
		}
		double r = entries / 2 / ((now_ns() - t0) / 1e9);
		if (hold) {
			put_held = r > put_held ? r : put_held;
			semcache_release(c, &held);
		} else {
			put_free = r > put_free ? r : put_free;
		}
	}

	/* gets, one process, with per-op latency */
	uint32_t *lat = malloc(sizeof *lat * (size_t)gets);
	if (!lat)
		return 1;
	get_loop(c, entries, gets / 10, 1, NULL, 0); /* warm */
	t0 = now_ns();
	long hits = get_loop(c, entries, gets, 99, NULL, 0);
	double get_s = gets / ((now_ns() - t0) / 1e9);
	get_loop(c, entries, gets, 1234, lat, tcost);
	qsort(lat, (size_t)gets, sizeof *lat, cmp_u32);
	uint32_t p50 = lat[gets / 2], p99 = lat[gets * 99 / 100];
	free(lat);

	/* zero-copy gets, with and without the pin: rounds
	 * alternate between the two over the same keys, and the best round of
	 * each is kept, so drift in machine load does not land on one side */
	ref_loop(c, entries, gets / 10, 3, true);
	double ref_gp = 0, ref_nogp = 0;
	for (int round = 0; round < 8; round++) {
		double a = ref_loop(c, entries, gets / 4, 77 + (uint64_t)round, round & 1);
		double b = ref_loop(c, entries, gets / 4, 77 + (uint64_t)round, !(round & 1));
		double g = (round & 1) ? a : b, ng = (round & 1) ? b : a;
		ref_gp = g > ref_gp ? g : ref_gp;
		ref_nogp = ng > ref_nogp ? ng : ref_nogp;
	}
	double gp_ns = 1e9 / ref_gp - 1e9 / ref_nogp;

	/* gets in 1 and in 2 processes, timed the same way */
	long hits1 = 0, hits2 = 0;
	double get1p_s = par_gets(c, entries, gets, 1, &hits1);
	double get2_s = par_gets(c, entries, gets, 2, &hits2);

	double ref = reference_copy_per_s(o.arena_bytes, gets);

	printf("semcache exact path: %d entries of 1 KB, %ld gets per run\n", entries, gets);
	printf("%-34s %14s %10s\n", "measure", "value", "ratio");
	printf("%-34s %12.0f/s %10s\n", "reference: random 1 KB copies", ref, "1.00");
	printf("%-34s %12.0f/s %10.2f\n", "put, filling (1 proc)", fill_s, fill_s / ref);
	printf("%-34s %12.0f/s %10.2f\n", "put, replacing (1 proc)", put_s, put_s / ref);
	printf("%-34s %12.0f/s %10.2f\n", "get hit (1 proc)", get_s, get_s / ref);
	printf("%-34s %12.0f/s %10.2f  (x%.2f of 1 child, %.0f/s)\n", "get hit (2 procs)", get2_s,
	       get2_s / ref, get2_s / get1p_s, get1p_s);
	printf("%-34s %12.0f/s %10.2f  (x%.2f of copying get)\n", "zero-copy get (1 proc)", ref_gp,
	       ref_gp / ref, ref_gp / get_s);
	printf("%-34s %12.0f/s %10.2f\n", "zero-copy get, no pin", ref_nogp,
	       ref_nogp / ref);
	printf("%-34s %12.1f ns per read\n", "liveness and pinning cost", gp_ns);
	printf("%-34s %12.0f/s %10.2f  (x%.2f of none held, %.0f/s)\n",
	       "put, one reference held", put_held, put_held / ref, put_held / put_free, put_free);
	printf("%-34s %12u ns\n", "get p50 latency", p50);
	printf("%-34s %12u ns\n", "get p99 latency", p99);
	printf("hits %ld of %ld (1 proc), %ld of %ld (2 procs); timer cost %" PRIu64
	       " ns subtracted from latencies\n", hits, gets, hits2, 2 * gets, tcost);
	printf("{\"entries\":%d,\"get_ops_per_s\":%.0f,\"put_ops_per_s\":%.0f,\"get_p50_ns\":%u,"
	       "\"get_p99_ns\":%u,\"get_ops_per_s_2proc\":%.0f,\"scaling_2proc\":%.3f,"
	       "\"ref_copy_per_s\":%.0f,\"get_ratio_ref\":%.3f,\"zerocopy_get_ops_per_s\":%.0f,"
	       "\"zerocopy_nopin_ops_per_s\":%.0f,\"pin_cost_ns\":%.1f,\"put_fill_ops_per_s\":%.0f,"
	       "\"get_ops_per_s_1child\":%.0f,\"put_none_held_ops_per_s\":%.0f,"
	       "\"put_one_held_ops_per_s\":%.0f}\n",
	       entries, get_s, put_s, p50, p99, get2_s, get2_s / get1p_s, ref, get_s / ref, ref_gp,
	       ref_nogp, gp_ns, fill_s, get1p_s, put_free, put_held);
	semcache_close(c);
	semcache_destroy(path, 1);
	return hits > gets * 99 / 100 && hits2 > 2 * gets * 99 / 100 ? 0 : 1;
}
