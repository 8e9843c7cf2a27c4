/*
 * test_multiproc.c - many processes on one segment, and processes killed
 * with SIGKILL at random instructions.
 *
 *  - mixed_ops_on_overlapping_keys: 4 forked processes, 200,000 operations
 *    each (put / get / zero-copy get / search / rare invalidate) over one
 *    small key space,
 *    every payload carrying a checksum of its body that readers verify.
 *  - kill9_torture: 4 workers doing the same while a supervisor SIGKILLs a
 *    random one every 50-100 ms and starts a replacement, for
 *    SEMCACHE_TORTURE_SECONDS (default 20).  After every kill, with the
 *    other workers stopped wherever they were, every entry semcache_foreach
 *    lists is found by semcache_get.  Afterwards: zero torn reads,
 *    the consistency check passes (no slot locked, index/slots/arena agree,
 *    free + used + limbo = total), and no record belongs to a dead process.
 */
#include <criterion/criterion.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <time.h>

#include "../common.h"

#define KEYS 2000
#define DIM  16

struct shared_counts {
	_Atomic uint64_t ops, hits, sem_hits, torn, errors, bad_rc;
	_Atomic int last_bad_rc;
};

static struct shared_counts *counts;
static char path[256];

static void key_embedding(int k, float *e)
{
	/* deterministic per key, so a semantic hit can be checked */
	uint64_t s = (uint64_t)k * 0x9e3779b97f4a7c15ull + 1;
	for (int i = 0; i < DIM; i++)
		e[i] = (float)((test_rng(&s) >> 11) * (1.0 / 9007199254740992.0)) - 0.5f;
}

/* Body names the key, so a reader can check it got the entry it asked for. */
static void worker_loop(semcache *c, uint64_t seed, long ops, volatile int *stop)
{
	char key[32], body[1200], content[1300];
	float e[DIM];
	uint64_t s = seed | 1;
	for (long i = 0; (ops < 0 || i < ops) && !(stop && *stop); i++) {
		uint64_t r = test_rng(&s);
		int k = (int)(r % KEYS);
		const char *ns = (r >> 20) & 1 ? "ns-a" : "ns-b";
		snprintf(key, sizeof key, "key-%d", k);
		int op = (int)((r >> 32) % 1000);
		int rc = 0;
		if (op < 300) {
			int pad = (int)((r >> 40) % 1000);
			int n = snprintf(body, sizeof body, "%s/%s/%d/%llu/", ns, key, (int)getpid(),
			                 (unsigned long long)i);
			memset(body + n, 'a' + (int)(r % 26), (size_t)pad);
			body[n + pad] = 0;
			make_content(content, sizeof content, body);
			semcache_response resp = simple_response(content);
			key_embedding(k, e);
			semcache_put_args a = { .ns = ns, .key = key, .scope = "m", .response = &resp,
			                        .embedding = (op % 2) ? e : NULL, .embedding_dim = DIM };
			rc = semcache_put(c, &a);
		} else if (op < 750) {
			semcache_response *out = NULL;
			rc = semcache_get(c, ns, key, 0, &out);
			if (rc == 0) {
				char expect[64];
				snprintf(expect, sizeof expect, "%s/%s/", ns, key);
				if (!content_ok(out->content) || strncmp(out->content, expect, strlen(expect)))
					atomic_fetch_add(&counts->torn, 1);
				atomic_fetch_add(&counts->hits, 1);
				semcache_response_free(out);
			}
		} else if (op < 900) {
			/* zero-copy: the bytes must stay intact while we hold them,
			 * whatever writers (or a SIGKILL of ours) do meanwhile */
			semcache_ref ref;
			rc = semcache_get_ref(c, ns, key, &ref);
			if (rc == 0) {
				char buf[1400], expect[64];
				size_t n = 0;
				for (int v = 0; v < ref.iovcnt && n + ref.iov[v].iov_len < sizeof buf; v++) {
					memcpy(buf + n, ref.iov[v].iov_base, ref.iov[v].iov_len);
					n += ref.iov[v].iov_len;
				}
				buf[n] = 0;
				snprintf(expect, sizeof expect, "%s/%s/", ns, key);
				if (n != ref.len || !content_ok(buf) || strncmp(buf, expect, strlen(expect)))
					atomic_fetch_add(&counts->torn, 1);
				atomic_fetch_add(&counts->hits, 1);
				semcache_release(c, &ref);
			}
		} else if (op < 998) {
			semcache_response *out = NULL;
			float sim = 0;
			key_embedding(k, e);
			rc = semcache_search(c, ns, "m", e, DIM, 0.999f, &out, &sim);
			if (rc == 0) {
				char expect[64];
				snprintf(expect, sizeof expect, "%s/%s/", ns, key);
				if (!content_ok(out->content) || strncmp(out->content, expect, strlen(expect)))
					atomic_fetch_add(&counts->torn, 1);
				atomic_fetch_add(&counts->sem_hits, 1);
				semcache_response_free(out);
			}
		} else {
			char pfx[32];
			snprintf(pfx, sizeof pfx, "key-%d", k % 10);
			rc = semcache_invalidate(c, ns, pfx, NULL);
		}
		if (rc < 0 && rc != SEMCACHE_ENOTFOUND) {
			atomic_fetch_add(&counts->bad_rc, 1);
			atomic_store(&counts->last_bad_rc, rc);
		}
		atomic_fetch_add_explicit(&counts->ops, 1, memory_order_relaxed);
	}
}

static semcache_options stress_options(void)
{
	semcache_options o = test_options(4096, DIM);
	o.arena_bytes = 2u << 20; /* small: eviction from the arena is exercised too */
	o.max_payload = 8192;
	return o;
}

static void setup(void)
{
	test_path(path, sizeof path, "stress");
	counts = mmap(NULL, sizeof *counts, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	cr_assert_neq(counts, MAP_FAILED);
	memset(counts, 0, sizeof *counts);
}

static void teardown(void)
{
	munmap(counts, sizeof *counts);
	unlink(path);
}

/*
 * The parent keeps its handle open for the whole test, so the final check
 * sees the segment exactly as the workers left it: a process that attaches
 * alone would repair first (as a lone opener does), hiding damage.
 */
static void check_final(semcache *c)
{
	char report[4096];
	int rc = semcache_verify(c, report, sizeof report);
	cr_assert_eq(rc, 0, "consistency check failed:\n%s", report);
	semcache_stats st;
	cr_assert_eq(semcache_stat(c, &st), 0);
	cr_assert_eq(st.blocks_free + st.blocks_used + st.blocks_limbo, st.blocks_total);
	semcache_proc_info pi[64];
	size_t n = 0;
	cr_assert_eq(semcache_procs(c, pi, 64, &n), 0);
	for (size_t i = 0; i < n; i++)
		cr_assert(pi[i].alive, "record %u belongs to dead pid %d", pi[i].index, pi[i].pid);
	semcache_close(c);
}

TestSuite(stress, .init = setup, .fini = teardown, .timeout = 600);

Test(stress, mixed_ops_on_overlapping_keys)
{
	enum { P = 4, OPS = 200000 };
	semcache *c;
	semcache_options o = stress_options();
	cr_assert_eq(semcache_open(path, &o, &c), 0);
	for (int p = 0; p < P; p++) {
		if (fork() == 0) {
			semcache *wc;
			if (semcache_open(path, NULL, &wc) != 0)
				_exit(3);
			worker_loop(wc, 0x1234567ull * (p + 1), OPS, NULL);
			semcache_close(wc);
			_exit(0);
		}
	}
	for (int p = 0; p < P; p++) {
		int st;
		cr_assert_neq(wait(&st), -1);
		cr_assert(WIFEXITED(st) && WEXITSTATUS(st) == 0, "worker failed: status %d", st);
	}
	cr_assert_eq(atomic_load(&counts->ops), (uint64_t)P * OPS);
	cr_assert_eq(atomic_load(&counts->torn), 0, "torn or foreign reads: %llu",
	             (unsigned long long)atomic_load(&counts->torn));
	cr_assert_eq(atomic_load(&counts->bad_rc), 0, "unexpected errors, last %s",
	             semcache_strerror(atomic_load(&counts->last_bad_rc)));
	cr_assert_gt(atomic_load(&counts->hits), 1000, "workload produced no hits");
	cr_assert_gt(atomic_load(&counts->sem_hits), 100, "workload produced no semantic hits");
	check_final(c);
}

static pid_t spawn_worker(uint64_t seed)
{
	pid_t p = fork();
	if (p == 0) {
		semcache *wc;
		int rc = semcache_open(path, NULL, &wc);
		if (rc != 0) {
			atomic_fetch_add(&counts->errors, 1);
			_exit(3);
		}
		worker_loop(wc, seed, -1, NULL);
		_exit(0);
	}
	return p;
}

static double now_s(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec + ts.tv_nsec / 1e9;
}

Test(stress, kill9_torture)
{
	enum { P = 4 };
	const char *env = getenv("SEMCACHE_TORTURE_SECONDS");
	double seconds = env ? atof(env) : 20;
	semcache *c;
	semcache_options o = stress_options();
	cr_assert_eq(semcache_open(path, &o, &c), 0);

	pid_t w[P];
	uint64_t seed = 42, kills = 0;
	size_t checked = 0;
	for (int i = 0; i < P; i++)
		w[i] = spawn_worker(test_rng(&seed));
	double end = now_s() + seconds;
	while (now_s() < end) {
		struct timespec ts = { 0, (long)(50 + test_rng(&seed) % 51) * 1000000L };
		nanosleep(&ts, NULL);
		int victim = (int)(test_rng(&seed) % P);
		kill(w[victim], SIGKILL);
		waitpid(w[victim], NULL, 0);
		kills++;
		/* Before any other writer runs (the others are stopped, wherever
		 * they were), every listed entry must be found by get. */
		for (int i = 0; i < P; i++)
			if (i != victim) {
				kill(w[i], SIGSTOP);
				waitpid(w[i], NULL, WUNTRACED);
			}
		for (int n = 0; n < 2; n++) {
			size_t listed = 0, missing = test_listed_but_missing(c, n ? "ns-b" : "ns-a", &listed);
			cr_assert_eq(missing, 0, "after kill %llu: %zu of %zu listed entries missed by get",
			             (unsigned long long)kills, missing, listed);
			checked += listed;
		}
		for (int i = 0; i < P; i++)
			if (i != victim)
				kill(w[i], SIGCONT);
		w[victim] = spawn_worker(test_rng(&seed));
	}
	for (int i = 0; i < P; i++) {
		kill(w[i], SIGKILL);
		waitpid(w[i], NULL, 0);
	}
	cr_log_info("torture: %llu kills, %zu listed entries checked, %llu ops, %llu hits, "
	            "%llu semantic hits", (unsigned long long)kills, checked,
	            (unsigned long long)atomic_load(&counts->ops),
	            (unsigned long long)atomic_load(&counts->hits),
	            (unsigned long long)atomic_load(&counts->sem_hits));
	cr_assert_gt(kills, 10);
	cr_assert_eq(atomic_load(&counts->errors), 0, "a replacement worker could not attach");
	cr_assert_eq(atomic_load(&counts->torn), 0, "torn reads: %llu",
	             (unsigned long long)atomic_load(&counts->torn));
	cr_assert_eq(atomic_load(&counts->bad_rc), 0, "unexpected errors, last %s",
	             semcache_strerror(atomic_load(&counts->last_bad_rc)));
	cr_assert_gt(atomic_load(&counts->hits), 100);
	check_final(c);
}
