/*
 * test_faults.c - the fault model: liveness held by the kernel, pinning per
 * reference, repair that never hides an entry, and a lock word and process
 * table that a hostile peer may scribble over.
 *
 *  - A zero-copy reference held by a process in its own PID namespace
 *    (unshare --pid --fork --mount-proc; needs root, as CI is), or by one
 *    that attached with the last descriptor its fd limit allows: a peer
 *    invalidates and then fills the arena many times over with another
 *    namespace's entries; the holder is seen alive throughout and its
 *    referenced bytes never change.
 *  - A process that takes a reference and then exec()s pins nothing.
 *  - A process repairing the segment is SIGKILLed at random points; after
 *    every kill, before any other writer runs, every entry that
 *    semcache_foreach lists is found by semcache_get.
 *  - A peer scribbling random values over the writer lock and the process
 *    table while workers run crashes nobody; a repair afterwards leaves the
 *    segment consistent.
 *  - A peer flipping slot fields and block links while verify, invalidate
 *    and repair run crashes nothing and makes nothing read out of bounds
 *    (run under ASan in CI): every shared field is read once.
 * The holder program is tests/stress/holder.c ($SC_HOLDER).
 */
#include <criterion/criterion.h>
#include <errno.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <time.h>

#include "../common.h"
#include "internal.h" /* to force repairs and to scribble on purpose */

static char path[256];

static void setup(void) { test_path(path, sizeof path, "faults"); }
static void teardown(void) { unlink(path); }

TestSuite(faults, .init = setup, .fini = teardown, .timeout = 300);

static semcache_options small_options(void)
{
	semcache_options o = test_options(1024, 0);
	o.arena_bytes = 256 << 10; /* 1024 blocks of 256 B */
	o.max_payload = 32 << 10;
	return o;
}

static char *pattern(size_t n, char base, int seed)
{
	char *s = malloc(n + 1);
	for (size_t i = 0; i < n; i++)
		s[i] = (char)(base + (seed + i * 7) % 26);
	s[n] = 0;
	return s;
}

/* A child running argv with its stdin and stdout on pipes. */
struct child {
	pid_t pid;
	FILE *in, *out;
};

static void child_start(struct child *ch, char *const argv[])
{
	int to[2], from[2];
	cr_assert_eq(pipe(to), 0);
	cr_assert_eq(pipe(from), 0);
	ch->pid = fork();
	cr_assert_neq(ch->pid, -1);
	if (ch->pid == 0) {
		dup2(to[0], 0);
		dup2(from[1], 1);
		close(to[0]);
		close(to[1]);
		close(from[0]);
		close(from[1]);
		execvp(argv[0], argv);
		_exit(127);
	}
	close(to[0]);
	close(from[1]);
	ch->in = fdopen(to[1], "w");
	ch->out = fdopen(from[0], "r");
	setvbuf(ch->in, NULL, _IOLBF, 0);
}

static void child_expect(struct child *ch, const char *prefix, char *line, size_t len)
{
	cr_assert_not_null(fgets(line, (int)len, ch->out), "child said nothing (wanted %s)", prefix);
	cr_assert(strncmp(line, prefix, strlen(prefix)) == 0, "child said %s, wanted %s", line, prefix);
}

static int child_finish(struct child *ch)
{
	int st;
	fclose(ch->in);
	fclose(ch->out);
	cr_assert_eq(waitpid(ch->pid, &st, 0), ch->pid);
	return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
}

/* Live records other than ours, and the pins they hold. */
static int others_alive(semcache *c, uint32_t *pins)
{
	semcache_proc_info pi[16];
	size_t n = 0;
	cr_assert_eq(semcache_procs(c, pi, 16, &n), 0);
	int alive = 0;
	*pins = 0;
	for (size_t i = 0; i < n; i++) {
		if (pi[i].self)
			continue;
		alive += pi[i].alive;
		*pins += pi[i].pins;
	}
	return alive;
}

/* Invalidate everything, then fill the arena several times over with
 * another namespace's entries. */
static void churn_other_tenant(semcache *c)
{
	char key[32];
	char *other = pattern(2000, 'A', 3);
	cr_assert_eq(semcache_invalidate(c, NULL, NULL, NULL), 0);
	for (int i = 0; i < 700; i++) {
		snprintf(key, sizeof key, "b-%d", i);
		int rc = put_simple(c, "tenant-b", key, other);
		cr_assert_eq(rc, 0, "put %d: %s", i, semcache_strerror(rc));
	}
	free(other);
}

static void holder_keeps_its_bytes(const char *mode, bool own_pid_namespace)
{
	const char *holder = getenv("SC_HOLDER");
	cr_assert_not_null(holder, "SC_HOLDER is not set (run through meson test)");
	semcache *c;
	semcache_options o = small_options();
	cr_assert_eq(semcache_open(path, &o, &c), 0);
	char *secret = pattern(2000, 'a', 1);
	cr_assert_eq(put_simple(c, "tenant-a", "answer", secret), 0);

	char *argv_ns[] = { "unshare", "--pid", "--fork", "--mount-proc", (char *)holder, path,
	                    "tenant-a", "answer", (char *)mode, NULL };
	char *argv_plain[] = { (char *)holder, path, "tenant-a", "answer", (char *)mode, NULL };
	struct child ch;
	child_start(&ch, own_pid_namespace ? argv_ns : argv_plain);
	char line[128];
	child_expect(&ch, "ready 2000", line, sizeof line);

	uint32_t pins;
	cr_assert_eq(others_alive(c, &pins), 1, "the holder is not seen alive");
	cr_assert_eq(pins, 1);
	churn_other_tenant(c);
	cr_assert_eq(others_alive(c, &pins), 1, "the holder was judged dead while it held a reference");
	cr_assert_eq(pins, 1);

	fputs("check\n", ch.in);
	child_expect(&ch, "same", line, sizeof line);
	cr_assert_eq(child_finish(&ch), 0);
	semcache_close(c);
	free(secret);
}

Test(faults, holder_in_its_own_pid_namespace_keeps_its_bytes)
{
	holder_keeps_its_bytes("hold", true);
}

Test(faults, holder_at_its_fd_limit_keeps_its_bytes)
{
	holder_keeps_its_bytes("fdlimit", false);
}

Test(faults, a_reference_taken_before_exec_pins_nothing_after)
{
	const char *holder = getenv("SC_HOLDER");
	cr_assert_not_null(holder, "SC_HOLDER is not set (run through meson test)");
	semcache *c;
	semcache_options o = small_options();
	cr_assert_eq(semcache_open(path, &o, &c), 0);
	char *content = pattern(2000, 'a', 2);
	cr_assert_eq(put_simple(c, "ns", "k", content), 0);

	char *argv[] = { (char *)holder, path, "ns", "k", "exec", NULL };
	struct child ch;
	child_start(&ch, argv);
	char line[128];
	child_expect(&ch, "ready", line, sizeof line);
	child_expect(&ch, "execd", line, sizeof line);

	/* The same pid lives on, but the record's lock went with the exec. */
	uint32_t pins;
	cr_assert_eq(others_alive(c, &pins), 0, "a record survived exec()");
	semcache_stats st;
	cr_assert_eq(semcache_invalidate(c, NULL, NULL, NULL), 0);
	cr_assert_eq(semcache_stat(c, &st), 0);
	cr_assert_eq(st.blocks_limbo, 0, "%llu blocks still pinned after exec()",
	             (unsigned long long)st.blocks_limbo);
	cr_assert_eq(st.blocks_free, st.blocks_total);
	cr_assert_eq(child_finish(&ch), 0);
	semcache_close(c);
	free(content);
}

/* ------------------------------------------------------------------------
 * Repair killed at any point
 * ---------------------------------------------------------------------- */
static void writer_child(int repair_only, uint64_t seed)
{
	semcache *wc;
	if (semcache_open(path, NULL, &wc) != 0)
		_exit(3);
	char key[32], body[96], content[160];
	for (uint64_t i = 0;; i++) {
		if (repair_only) {
			/* what a taker does after finding a dead holder, over and over:
			 * the flag is set from taking the lock until the repair ends */
			if (sc_lock_take(&wc->seg, false) < 0)
				continue;
			atomic_store(&wc->hdr->needs_repair, 1);
			if (sc_repair(wc) == 0)
				atomic_store(&wc->hdr->needs_repair, 0);
			sc_lock_drop(&wc->seg);
			continue;
		}
		int k = (int)(test_rng(&seed) % 600);
		snprintf(key, sizeof key, "k%d", k);
		snprintf(body, sizeof body, "ns/%s/%llu", key, (unsigned long long)i);
		make_content(content, sizeof content, body);
		(void)put_simple(wc, "ns", key, content);
	}
}

Test(faults, a_repairer_killed_anywhere_hides_no_live_entry)
{
	semcache *c;
	semcache_options o = test_options(1024, 0);
	cr_assert_eq(semcache_open(path, &o, &c), 0);
	char key[32], body[64], content[128];
	for (int k = 0; k < 600; k++) {
		snprintf(key, sizeof key, "k%d", k);
		snprintf(body, sizeof body, "ns/%s/init", key);
		make_content(content, sizeof content, body);
		cr_assert_eq(put_simple(c, "ns", key, content), 0);
	}
	uint64_t seed = 7;
	unsigned rounds = 300, mid_repair = 0;
	size_t checked = 0;
	for (unsigned r = 0; r < rounds; r++) {
		/* alternate: kill a writer (its death leaves a repair to do), then
		 * kill the repairer at a random point */
		int repair_only = r % 2;
		pid_t p = fork();
		if (p == 0)
			writer_child(repair_only, test_rng(&seed));
		struct timespec ts = { 0, (long)(200 + test_rng(&seed) % 3000) * 1000L };
		nanosleep(&ts, NULL);
		kill(p, SIGKILL);
		waitpid(p, NULL, 0);
		/* A repairer that died inside the repair leaves the flag set. */
		mid_repair += repair_only && atomic_load(&c->hdr->needs_repair);
		/* No writer runs now: what foreach lists, get must find. */
		size_t listed = 0, missing = test_listed_but_missing(c, "ns", &listed);
		cr_assert_eq(missing, 0, "round %u: %zu of %zu listed entries not found by get", r,
		             missing, listed);
		checked += listed;
	}
	cr_log_info("repair kills: %u rounds, %u killed mid-repair, %zu lookups checked", rounds,
	            mid_repair, checked);
	cr_assert_gt(mid_repair, 0, "no kill landed inside a repair: the test proved nothing");
	cr_assert_gt(checked, 1000);
	char report[2048];
	cr_assert_eq(semcache_verify(c, report, sizeof report), 0, "%s", report);
	semcache_close(c);
}

/* ------------------------------------------------------------------------
 * A hostile peer scribbling the lock word and the process table
 * ---------------------------------------------------------------------- */
static double now_s(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + ts.tv_nsec / 1e9;
}

/* A hostile peer: the mapping, and no process record of its own. */
static semcache *open_as_peer(void)
{
	semcache *wc;
	semcache_options o;
	memset(&o, 0, sizeof o);
	o.flags = SEMCACHE_OPEN_NORECORD;
	if (semcache_open(path, &o, &wc) != 0)
		_exit(3);
	return wc;
}

static int known_code(int rc)
{
	return rc == 0 || rc == SEMCACHE_ENOTFOUND || rc == SEMCACHE_EFULL || rc == SEMCACHE_EBUSY ||
	       rc == SEMCACHE_ECORRUPT || rc == SEMCACHE_EPROCFULL || rc == -ENOMEM;
}

static void peer_worker(uint64_t seed, double seconds, _Atomic uint64_t *torn)
{
	semcache *wc;
	if (semcache_open(path, NULL, &wc) != 0)
		_exit(3);
	char key[32], body[96], content[160], expect[48];
	double t0 = now_s();
	for (uint64_t i = 0; now_s() - t0 < seconds; i++) {
		int k = (int)(test_rng(&seed) % 300), rc;
		snprintf(key, sizeof key, "k%d", k);
		switch (test_rng(&seed) % 4) {
		case 0:
			snprintf(body, sizeof body, "ns/%s/%llu", key, (unsigned long long)i);
			make_content(content, sizeof content, body);
			rc = put_simple(wc, "ns", key, content);
			break;
		case 1: {
			semcache_response *out = NULL;
			rc = semcache_get(wc, "ns", key, 0, &out);
			snprintf(expect, sizeof expect, "ns/%s/", key);
			if (rc == 0 && (!content_ok(out->content) ||
			                strncmp(out->content, expect, strlen(expect))))
				atomic_fetch_add(torn, 1);
			semcache_response_free(out);
			break;
		}
		case 2: {
			semcache_ref ref;
			rc = semcache_get_ref(wc, "ns", key, &ref);
			semcache_release(wc, &ref);
			break;
		}
		default:
			rc = semcache_invalidate(wc, "ns", key, NULL);
		}
		if (!known_code(rc))
			_exit(4);
	}
	semcache_close(wc);
	_exit(0);
}

static void scribbler(uint64_t seed, double seconds)
{
	semcache *wc = open_as_peer();
	double t0 = now_s();
	while (now_s() - t0 < seconds) {
		uint64_t r = test_rng(&seed);
		struct sc_proc *p = &wc->procs[(r >> 8) % wc->max_procs];
		switch (r % 8) {
		case 0: /* a lock word naming any record, any generation, or garbage */
			atomic_store(&wc->hdr->wlock, test_rng(&seed) % 4 ? ((r >> 16) % 8 + 1) |
			             ((uint64_t)(r >> 40) % 4 << 32) : test_rng(&seed));
			break;
		case 1:
			atomic_store(&wc->hdr->wlock, 0);
			break;
		case 2:
			atomic_store(&wc->hdr->wwaiters, (uint32_t)test_rng(&seed));
			atomic_store(&wc->hdr->wseq, (uint32_t)test_rng(&seed));
			break;
		case 3:
			atomic_store(&p->gen, (uint32_t)(r >> 32) % 4);
			break;
		case 4:
			atomic_store(&p->hazard[(r >> 20) % SC_HAZARDS], (uint32_t)test_rng(&seed));
			break;
		case 5:
			atomic_store(&wc->hdr->procs_hwm, (uint32_t)test_rng(&seed));
			break;
		case 6:
			atomic_store(&p->c.hits, test_rng(&seed));
			atomic_store(&p->pid, (int32_t)test_rng(&seed));
			break;
		default:
			atomic_store(&wc->hdr->needs_repair, (uint32_t)(r >> 33) & 1);
		}
		if (r % 64 == 0)
			usleep(100);
	}
	semcache_close(wc);
	_exit(0);
}

Test(faults, scribbled_lock_word_and_process_table_crash_nobody)
{
	semcache *c;
	semcache_options o = small_options();
	o.max_procs = 8;
	cr_assert_eq(semcache_open(path, &o, &c), 0);
	_Atomic uint64_t *torn = mmap(NULL, sizeof *torn, PROT_READ | PROT_WRITE,
	                              MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	cr_assert_neq(torn, MAP_FAILED);
	atomic_store(torn, 0);
	enum { W = 3 };
	pid_t kids[W + 1];
	for (int i = 0; i < W; i++)
		if ((kids[i] = fork()) == 0)
			peer_worker(0x77 + (uint64_t)i * 1000003, 3.0, torn);
	if ((kids[W] = fork()) == 0)
		scribbler(0xbad, 3.0);
	for (int i = 0; i <= W; i++) {
		int st;
		cr_assert_eq(waitpid(kids[i], &st, 0), kids[i]);
		cr_assert(WIFEXITED(st), "%s %d died of signal %d", i < W ? "worker" : "scribbler", i,
		          WIFSIGNALED(st) ? WTERMSIG(st) : 0);
		cr_assert_eq(WEXITSTATUS(st), 0, "%s %d: exit %d (4 = an unexpected return code)",
		             i < W ? "worker" : "scribbler", i, WEXITSTATUS(st));
	}
	cr_assert_eq(atomic_load(torn), 0, "a copying get returned another entry's bytes");
	/* Two writers may have run at once while the word was forged to 0:
	 * a repair puts everything right. */
	atomic_store(&c->hdr->needs_repair, 1);
	char report[2048];
	cr_assert_eq(semcache_verify(c, report, sizeof report), 0, "%s", report);
	munmap(torn, sizeof *torn);
	semcache_close(c);
}

/* ------------------------------------------------------------------------
 * A peer flipping slot fields under the writers' feet
 * ---------------------------------------------------------------------- */
static void slot_flipper(uint64_t seed, double seconds)
{
	semcache *wc = open_as_peer();
	double t0 = now_s();
	while (now_s() - t0 < seconds) {
		uint64_t r = test_rng(&seed);
		struct sc_slot *sl = &wc->slot[(r >> 8) % wc->slots];
		uint32_t v = (uint32_t)test_rng(&seed);
		if (r & 0x10000)
			v %= 4096; /* plausible values get further than absurd ones */
		switch (r % 7) {
		case 0: __atomic_store_n(&sl->len, v, __ATOMIC_RELAXED); break;
		case 1: __atomic_store_n(&sl->nblocks, v, __ATOMIC_RELAXED); break;
		case 2: __atomic_store_n(&sl->head, v, __ATOMIC_RELAXED); break;
		case 3: __atomic_store_n(&sl->flags, v & 7, __ATOMIC_RELAXED); break;
		case 4: __atomic_store_n(&sl->bucket, v, __ATOMIC_RELAXED); break;
		case 5: atomic_store(&wc->next[v % wc->nblocks], (uint32_t)test_rng(&seed) % (wc->nblocks + 2)); break;
		default: atomic_store(&sl->seq, v);
		}
	}
	semcache_close(wc);
	_exit(0);
}

Test(faults, slot_fields_flipped_during_verify_invalidate_and_repair_crash_nothing)
{
	semcache *c;
	semcache_options o = small_options();
	cr_assert_eq(semcache_open(path, &o, &c), 0);
	char key[32], body[64], content[128];
	pid_t flipper = fork();
	if (flipper == 0)
		slot_flipper(0xf1f1, 2.0);
	unsigned rounds = 0;
	for (int alive = 1; alive; rounds++) {
		for (int k = 0; k < 50; k++) {
			snprintf(key, sizeof key, "k%d", (int)(rounds * 50 + k) % 400);
			snprintf(body, sizeof body, "ns/%s", key);
			make_content(content, sizeof content, body);
			int rc = put_simple(c, "ns", key, content);
			cr_assert(known_code(rc), "put: %d %s", rc, semcache_strerror(rc));
		}
		char report[512];
		int rc = semcache_verify(c, report, sizeof report);
		cr_assert(rc == 0 || rc == SEMCACHE_ECORRUPT, "verify: %s", semcache_strerror(rc));
		rc = semcache_invalidate(c, "ns", rounds % 2 ? "k1" : NULL, NULL);
		cr_assert(known_code(rc), "invalidate: %s", semcache_strerror(rc));
		atomic_store(&c->hdr->needs_repair, 1); /* the next writer repairs */
		alive = waitpid(flipper, NULL, WNOHANG) == 0;
	}
	cr_log_info("flipped fields raced %u rounds of put, verify, invalidate and repair", rounds);
	cr_assert_gt(rounds, 3);
	/* once the flipping stops, a repair makes it whole again */
	atomic_store(&c->hdr->needs_repair, 1);
	char report[2048];
	cr_assert_eq(semcache_verify(c, report, sizeof report), 0, "%s", report);
	semcache_close(c);
}

/* ------------------------------------------------------------------------
 * A stale hazard on an inner block of a pinned chain, across a repair
 * ---------------------------------------------------------------------- */
static int put_fill(semcache *c, const char *k, char fill, int n)
{
	char *s = malloc((size_t)n + 1);
	memset(s, fill, (size_t)n);
	s[n] = 0;
	int rc = put_simple(c, "t", k, s);
	free(s);
	return rc;
}

/* A writer dies holding the lock; the next put takes it over and repairs. */
static void writer_dies_then_repair(semcache *c)
{
	pid_t p = fork();
	if (p == 0) {
		semcache *w;
		if (semcache_open(path, NULL, &w) == 0)
			(void)sc_lock_take(&w->seg, false);
		_exit(0);
	}
	waitpid(p, NULL, 0);
	semcache_stats st0, st1;
	cr_assert_eq(semcache_stat(c, &st0), 0);
	cr_assert_eq(put_fill(c, "Y", 'z', 10), 0);
	cr_assert_eq(semcache_stat(c, &st1), 0);
	cr_assert_eq(st1.repairs, st0.repairs + 1, "no repair ran");
}

/*
 * One reference held on a chain whose blocks are out of address order (the
 * free list hands chains out last-in first-out), then repairs with or
 * without a stale hazard on the chain's lowest inner block: the
 * reference's bytes never change, however the arena churns afterwards.
 */
static void pinned_chain_survives_repairs(bool stale, int repairs)
{
	semcache_options o = test_options(64, 0);
	o.block_size = 64;
	o.arena_bytes = 64 * 256;
	o.max_payload = 4096;
	semcache *c;
	unlink(path);
	cr_assert_eq(semcache_open(path, &o, &c), 0);
	/* Fragment the free list so the next chain wraps around to lower
	 * block numbers: retire B's then A's blocks and reclaim them. */
	cr_assert_eq(put_fill(c, "A", 'a', 60), 0);
	cr_assert_eq(put_fill(c, "B", 'b', 60), 0);
	cr_assert_eq(put_fill(c, "B", 'b', 61), 0);
	cr_assert_eq(put_fill(c, "A", 'a', 61), 0);
	cr_assert_eq(semcache_invalidate(c, "none", NULL, NULL), 0); /* reclaims */
	cr_assert_eq(put_fill(c, "X", 'x', 180), 0);
	semcache_ref ref;
	cr_assert_eq(semcache_get_ref(c, "t", "X", &ref), 0);
	char saved[4096];
	size_t off = 0;
	for (int i = 0; i < ref.iovcnt; i++) {
		memcpy(saved + off, ref.iov[i].iov_base, ref.iov[i].iov_len);
		off += ref.iov[i].iov_len;
	}
	uint32_t head = ref.pin_ - 1, low = UINT32_MAX;
	for (uint32_t b = atomic_load(&c->next[head]); b < c->nblocks; b = atomic_load(&c->next[b]))
		low = b < low ? b : low;
	cr_assert_lt(low, head, "setup: the chain does not wrap (head %u)", head);
	cr_assert_eq(put_fill(c, "X", 'y', 180), 0); /* the pinned chain goes to limbo */
	/* a reader paused between publishing a stale head and re-checking its
	 * slot names the lowest inner block */
	uint32_t hk = 0;
	if (stale)
		cr_assert_eq(sc_hazard_set(&c->seg, low + 1, &hk), 0);
	for (int r = 0; r < repairs; r++)
		writer_dies_then_repair(c);
	if (stale)
		sc_hazard_clear(&c->seg, hk, low + 1); /* the paused reader moves on */
	char k[16];
	for (int i = 0; i < 80; i++) {
		snprintf(k, sizeof k, "f%d", i);
		cr_assert_eq(put_fill(c, k, 'Q', 100), 0);
		if (i == 39)
			cr_assert_eq(semcache_invalidate(c, "none", NULL, NULL), 0);
	}
	off = 0;
	for (int i = 0; i < ref.iovcnt; i++) {
		cr_assert_eq(memcmp(saved + off, ref.iov[i].iov_base, ref.iov[i].iov_len), 0,
		             "the held reference's bytes changed (stale %d, repairs %d)", stale, repairs);
		off += ref.iov[i].iov_len;
	}
	cr_assert_eq(semcache_release(c, &ref), 0);
	char report[1024];
	cr_assert_eq(semcache_verify(c, report, sizeof report), 0, "%s", report);
	semcache_close(c);
}

Test(faults, a_stale_hazard_on_an_inner_block_never_frees_part_of_a_pinned_chain)
{
	pinned_chain_survives_repairs(true, 1);
	pinned_chain_survives_repairs(true, 2);
}

Test(faults, repeated_repairs_keep_a_pinned_chain_whole)
{
	pinned_chain_survives_repairs(false, 2);
	pinned_chain_survives_repairs(false, 3);
}
