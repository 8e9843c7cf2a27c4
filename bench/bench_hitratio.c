/*
 * bench_hitratio.c - hit ratio of semcache's eviction next to an exact LRU
 * (the reference design's policy) and SIEVE, on the same synthetic traces.
 *
 * Every request of a trace is a get and, on a miss, a put of the same key,
 * as a caching client does.  The same request sequence goes through:
 *   semcache  the real library through its public API: a segment whose slot
 *             count is the cache size and whose arena holds twice as many
 *             records, so slots are the limit (CLOCK, plus what the index
 *             drops when one of its buckets overflows)
 *   LRU       an exact LRU list of the same capacity, simulated here
 *   SIEVE     SIEVE (Zhang et al., NSDI '24) of the same capacity, simulated
 *   CLOCK     textbook second-chance CLOCK, simulated: what semcache should
 *             match exactly but for the index's bucket overflows
 * Traces over K keys: "zipf", Zipf(0.99) popularity; "scan", half of the
 * requests uniform over a hot set of 5% of the keys and half a sequential
 * scan over the other keys (no scan key comes back within the trace's
 * reach of any cache here).  Cache sizes: 1% and 10% of K.  The first
 * quarter of each run warms the cache and is not counted.
 *
 * Why this reference: LRU is what the reference design uses, so the ratio
 * semcache / LRU, both measured on the same requests in this run, says
 * whether moving to shared memory cost hit ratio.  SIEVE is a simple
 * modern policy known to beat LRU on skewed traces: the bar above.
 *
 *   bench_hitratio [--keys K] [--requests R] [--path P] [--quick]
 *
 * Prints a table, then one JSON line.  Exit status 1 if the cache failed.
 */
#include <inttypes.h>
#include <math.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "bench_util.h"

#include "semcache.h"

/* ------------------------------------------------------------ traces */

enum { TRACE_ZIPF, TRACE_SCAN, NTRACES };
static const char *const trace_name[NTRACES] = { "zipf", "scan" };

static double uniform01(uint64_t *s)
{
	return (double)(xs(s) >> 11) * 0x1.0p-53;
}

/* Zipf(theta) over ranks 0..k-1 by inverting the cumulative distribution
 * (binary search): exact, and cheap enough for a few million draws. */
static double *zipf_cdf(uint32_t k, double theta)
{
	double *cdf = malloc((size_t)k * sizeof *cdf);
	if (!cdf)
		return NULL;
	double sum = 0;
	for (uint32_t i = 0; i < k; i++)
		cdf[i] = sum += 1.0 / pow((double)i + 1, theta);
	for (uint32_t i = 0; i < k; i++)
		cdf[i] /= sum;
	return cdf;
}

static uint32_t zipf_draw(const double *cdf, uint32_t k, uint64_t *s)
{
	double u = uniform01(s);
	uint32_t lo = 0, hi = k - 1;
	while (lo < hi) {
		uint32_t mid = lo + (hi - lo) / 2;
		if (cdf[mid] < u)
			lo = mid + 1;
		else
			hi = mid;
	}
	return lo;
}

/* The whole request sequence, built once and replayed to every policy.
 * Zipf ranks are scattered over key ids so that the popular keys are not
 * neighbours in any structure ordered by id. */
static uint32_t *make_trace(int kind, uint32_t k, uint32_t r, uint64_t seed)
{
	uint32_t *t = malloc((size_t)r * sizeof *t);
	if (!t)
		return NULL;
	uint64_t s = seed;
	if (kind == TRACE_ZIPF) {
		double *cdf = zipf_cdf(k, 0.99);
		uint32_t *perm = malloc((size_t)k * sizeof *perm);
		if (!cdf || !perm) {
			free(cdf);
			free(perm);
			free(t);
			return NULL;
		}
		for (uint32_t i = 0; i < k; i++)
			perm[i] = i;
		for (uint32_t i = k - 1; i > 0; i--) {
			uint32_t j = (uint32_t)(xs(&s) % (i + 1)), x = perm[i];
			perm[i] = perm[j];
			perm[j] = x;
		}
		for (uint32_t i = 0; i < r; i++)
			t[i] = perm[zipf_draw(cdf, k, &s)];
		free(cdf);
		free(perm);
	} else {
		uint32_t hot = k / 20, cursor = 0;
		for (uint32_t i = 0; i < r; i++) {
			if (xs(&s) & 1) {
				t[i] = (uint32_t)(xs(&s) % hot);
			} else {
				t[i] = hot + cursor;
				cursor = cursor + 1 == k - hot ? 0 : cursor + 1;
			}
		}
	}
	return t;
}

/* ------------------------------------------------------------ LRU, SIEVE */

/*
 * Both keep their entries in one doubly linked list of nodes 0..cap-1
 * (head = newest) and a key -> node map (an array over the key space).
 */
struct list {
	uint32_t cap, used, head, tail;
	uint32_t *prev, *next, *key;
	uint8_t *visited;   /* SIEVE only */
	uint32_t hand;      /* SIEVE only: NIL = start from the tail */
	uint32_t *where;    /* key -> node, NIL if absent */
};
#define NIL UINT32_MAX

static int list_init(struct list *l, uint32_t cap, uint32_t keys)
{
	memset(l, 0, sizeof *l);
	l->cap = cap;
	l->head = l->tail = l->hand = NIL;
	l->prev = malloc(cap * sizeof *l->prev);
	l->next = malloc(cap * sizeof *l->next);
	l->key = malloc(cap * sizeof *l->key);
	l->visited = calloc(cap, 1);
	l->where = malloc((size_t)keys * sizeof *l->where);
	if (!l->prev || !l->next || !l->key || !l->visited || !l->where)
		return -1;
	memset(l->where, 0xff, (size_t)keys * sizeof *l->where);
	return 0;
}

static void list_free(struct list *l)
{
	free(l->prev);
	free(l->next);
	free(l->key);
	free(l->visited);
	free(l->where);
}

static void unlink_node(struct list *l, uint32_t n)
{
	if (l->prev[n] != NIL)
		l->next[l->prev[n]] = l->next[n];
	else
		l->head = l->next[n];
	if (l->next[n] != NIL)
		l->prev[l->next[n]] = l->prev[n];
	else
		l->tail = l->prev[n];
}

static void push_head(struct list *l, uint32_t n)
{
	l->prev[n] = NIL;
	l->next[n] = l->head;
	if (l->head != NIL)
		l->prev[l->head] = n;
	l->head = n;
	if (l->tail == NIL)
		l->tail = n;
}

/* A node for a new key: a never-used one, or the victim's. */
static uint32_t take_node(struct list *l, uint32_t victim)
{
	if (l->used < l->cap)
		return l->used++;
	unlink_node(l, victim);
	l->where[l->key[victim]] = NIL;
	return victim;
}

static bool lru_access(struct list *l, uint32_t key)
{
	uint32_t n = l->where[key];
	if (n != NIL) {
		unlink_node(l, n);
		push_head(l, n);
		return true;
	}
	n = take_node(l, l->tail);
	l->key[n] = key;
	l->where[key] = n;
	push_head(l, n);
	return false;
}

/* SIEVE: a hit only marks the entry; new entries go in at the head
 * unmarked; the hand walks from the tail toward the head, unmarking marked
 * entries and evicting the first unmarked one, and stays where it stopped. */
static bool sieve_access(struct list *l, uint32_t key)
{
	uint32_t n = l->where[key];
	if (n != NIL) {
		l->visited[n] = 1;
		return true;
	}
	uint32_t victim = NIL;
	if (l->used == l->cap) {
		uint32_t h = l->hand != NIL ? l->hand : l->tail;
		while (l->visited[h]) {
			l->visited[h] = 0;
			h = l->prev[h] != NIL ? l->prev[h] : l->tail;
		}
		victim = h;
		l->hand = l->prev[h]; /* NIL: start again from the tail */
	}
	n = take_node(l, victim);
	l->key[n] = key;
	l->visited[n] = 0;
	l->where[key] = n;
	push_head(l, n);
	return false;
}

/* Textbook CLOCK over `cap` frames: a hit sets the frame's bit; a miss
 * takes the first free frame, else the first frame with a clear bit from the
 * hand, clearing set bits on the way; the new key starts with a clear bit. */
struct clock {
	uint32_t cap, used, hand;
	uint32_t *key;
	uint8_t *ref;
	uint32_t *where;
};

static int clock_init(struct clock *k, uint32_t cap, uint32_t keys)
{
	memset(k, 0, sizeof *k);
	k->cap = cap;
	k->key = malloc(cap * sizeof *k->key);
	k->ref = calloc(cap, 1);
	k->where = malloc((size_t)keys * sizeof *k->where);
	if (!k->key || !k->ref || !k->where)
		return -1;
	memset(k->where, 0xff, (size_t)keys * sizeof *k->where);
	return 0;
}

static void clock_free(struct clock *k)
{
	free(k->key);
	free(k->ref);
	free(k->where);
}

static bool clock_access(struct clock *k, uint32_t key)
{
	uint32_t f = k->where[key];
	if (f != NIL) {
		k->ref[f] = 1;
		return true;
	}
	if (k->used < k->cap) {
		f = k->used++;
	} else {
		while (k->ref[k->hand]) {
			k->ref[k->hand] = 0;
			k->hand = k->hand + 1 == k->cap ? 0 : k->hand + 1;
		}
		f = k->hand;
		k->hand = k->hand + 1 == k->cap ? 0 : k->hand + 1;
		k->where[k->key[f]] = NIL;
	}
	k->key[f] = key;
	k->ref[f] = 0;
	k->where[key] = f;
	return false;
}

/* ------------------------------------------------------------ semcache */

static const char *seg_path;

/* Hits of the counted part of the trace, or -1 if the cache failed. */
static long semcache_run(const uint32_t *t, uint32_t r, uint32_t warm, uint32_t cap,
                         uint64_t *evictions)
{
	semcache_options o;
	semcache_options_init(&o);
	o.slots = cap;
	o.dim = 0;
	o.block_size = 128;
	o.max_payload = 1024;
	/* Two blocks per slot: payload space never limits, slots do. */
	o.arena_bytes = (uint64_t)cap * 2 * o.block_size;
	if (o.arena_bytes < 2ull * o.max_payload)
		o.arena_bytes = 2ull * o.max_payload;
	o.max_procs = 8;
	unlink(seg_path);
	semcache *c;
	int rc = semcache_open(seg_path, &o, &c);
	if (rc < 0) {
		fprintf(stderr, "bench_hitratio: open %s: %s\n", seg_path, semcache_strerror(rc));
		return -1;
	}
	long hits = 0;
	char key[16], content[16];
	semcache_response resp = { .content = content, .model = "m" };
	semcache_put_args put = { .ns = "bench", .key = key, .response = &resp };
	for (uint32_t i = 0; i < r; i++) {
		snprintf(key, sizeof key, "k%" PRIu32, t[i]);
		semcache_response *out = NULL;
		rc = semcache_get(c, "bench", key, 0, &out);
		if (rc == 0) {
			/* a hit must be the key's own record */
			if (strcmp(out->content, key + 1) != 0) {
				fprintf(stderr, "bench_hitratio: %s returned '%s'\n", key, out->content);
				semcache_response_free(out);
				hits = -1;
				break;
			}
			semcache_response_free(out);
			hits += i >= warm;
			continue;
		}
		if (rc != SEMCACHE_ENOTFOUND) {
			fprintf(stderr, "bench_hitratio: get: %s\n", semcache_strerror(rc));
			hits = -1;
			break;
		}
		snprintf(content, sizeof content, "%" PRIu32, t[i]);
		if ((rc = semcache_put(c, &put)) < 0) {
			fprintf(stderr, "bench_hitratio: put: %s\n", semcache_strerror(rc));
			hits = -1;
			break;
		}
	}
	semcache_stats st;
	*evictions = semcache_stat(c, &st) == 0 ? st.total.evictions : 0;
	semcache_close(c);
	unlink(seg_path);
	return hits;
}

/* ------------------------------------------------------------ main */

static void usage(FILE *f)
{
	fprintf(f, "usage: bench_hitratio [--keys K] [--requests R] [--path P] [--quick]\n"
	           "  hit ratio of semcache, exact LRU, SIEVE and CLOCK on Zipf(0.99) and scan+hot\n"
	           "  traces over K keys (default 100000; --quick 20000), R requests each\n"
	           "  (default 1000000; --quick 200000), cache sizes 1%% and 10%% of K\n");
}

int main(int argc, char **argv)
{
	uint32_t keys = 100000, requests = 1000000;
	char default_path[64];
	snprintf(default_path, sizeof default_path, "/dev/shm/semcache-bench-hit-%d", (int)getpid());
	seg_path = default_path;
	for (int i = 1; i < argc; i++) {
		if (!strcmp(argv[i], "--quick")) {
			keys = 20000;
			requests = 200000;
		} else if (!strcmp(argv[i], "--keys") && i + 1 < argc) {
			keys = (uint32_t)strtoul(argv[++i], NULL, 10);
		} else if (!strcmp(argv[i], "--requests") && i + 1 < argc) {
			requests = (uint32_t)strtoul(argv[++i], NULL, 10);
		} else if (!strcmp(argv[i], "--path") && i + 1 < argc) {
			seg_path = argv[++i];
		} else if (!strcmp(argv[i], "-h") || !strcmp(argv[i], "--help")) {
			usage(stdout);
			return 0;
		} else {
			usage(stderr);
			return 2;
		}
	}
	/* 1% of the keys must still be a legal slot count (16) */
	if (keys < 1600 || requests < 1000) {
		fprintf(stderr, "bench_hitratio: need --keys >= 1600 and --requests >= 1000\n");
		return 2;
	}
	const uint32_t pct[2] = { 1, 10 };
	const uint32_t warm = requests / 4;
	double ratio[NTRACES][2][4]; /* semcache, lru, sieve, clock */
	uint32_t cap[2];
	uint64_t evictions[NTRACES][2];
	int status = 0;

	printf("bench_hitratio: %" PRIu32 " keys, %" PRIu32 " requests per run (first %" PRIu32
	       " warm the cache, not counted); get, and put on a miss\n\n", keys, requests, warm);
	printf("%-6s %6s %9s %10s %10s %10s %10s %14s %11s\n", "trace", "cache", "capacity",
	       "semcache", "LRU", "SIEVE", "CLOCK sim", "semcache/LRU", "SIEVE/LRU");
	for (int tr = 0; tr < NTRACES; tr++) {
		uint32_t *t = make_trace(tr, keys, requests, 0x5eed0000u + (uint64_t)tr);
		if (!t) {
			fprintf(stderr, "bench_hitratio: out of memory\n");
			return 1;
		}
		for (int z = 0; z < 2; z++) {
			cap[z] = keys / 100 * pct[z];
			struct list lru, sieve;
			struct clock clk;
			if (list_init(&lru, cap[z], keys) < 0 || list_init(&sieve, cap[z], keys) < 0 ||
			    clock_init(&clk, cap[z], keys) < 0) {
				fprintf(stderr, "bench_hitratio: out of memory\n");
				return 1;
			}
			long hl = 0, hs = 0, hk = 0;
			for (uint32_t i = 0; i < requests; i++) {
				bool a = lru_access(&lru, t[i]), b = sieve_access(&sieve, t[i]);
				bool d = clock_access(&clk, t[i]);
				hl += a && i >= warm;
				hs += b && i >= warm;
				hk += d && i >= warm;
			}
			list_free(&lru);
			list_free(&sieve);
			clock_free(&clk);
			long hc = semcache_run(t, requests, warm, cap[z], &evictions[tr][z]);
			double counted = requests - warm;
			ratio[tr][z][0] = hc < 0 ? -1 : hc / counted;
			ratio[tr][z][1] = hl / counted;
			ratio[tr][z][2] = hs / counted;
			ratio[tr][z][3] = hk / counted;
			if (hc < 0)
				status = 1;
			printf("%-6s %5" PRIu32 "%% %9" PRIu32 " %10.4f %10.4f %10.4f %10.4f %14.4f %11.4f\n",
			       trace_name[tr], pct[z], cap[z], ratio[tr][z][0], ratio[tr][z][1],
			       ratio[tr][z][2], ratio[tr][z][3], ratio[tr][z][0] / ratio[tr][z][1],
			       ratio[tr][z][2] / ratio[tr][z][1]);
			fflush(stdout);
		}
		free(t);
	}
	printf("\n{\"bench\":\"hitratio\",\"keys\":%" PRIu32 ",\"requests\":%" PRIu32
	       ",\"warmup\":%" PRIu32 ",\"traces\":{", keys, requests, warm);
	for (int tr = 0; tr < NTRACES; tr++) {
		printf("%s\"%s\":{", tr ? "," : "", trace_name[tr]);
		for (int z = 0; z < 2; z++)
			printf("%s\"%" PRIu32 "pct\":{\"capacity\":%" PRIu32 ",\"semcache\":%.6f,"
			       "\"lru\":%.6f,\"sieve\":%.6f,\"clock_sim\":%.6f,"
			       "\"semcache_evictions\":%" PRIu64 "}",
			       z ? "," : "", pct[z], cap[z], ratio[tr][z][0], ratio[tr][z][1],
			       ratio[tr][z][2], ratio[tr][z][3], evictions[tr][z]);
		printf("}");
	}
	printf("}}\n");
	return status;
}
