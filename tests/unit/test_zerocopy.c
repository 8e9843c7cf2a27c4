/*
 * test_zerocopy.c - semcache_get_ref(): content handed out in place, and
 * per-reference pinning keeping it intact while the entry is replaced or
 * evicted, at the cost of its own blocks only.
 */
#include <criterion/criterion.h>
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <sys/wait.h>

#include "../common.h"
#include "internal.h" /* to damage a block on purpose */

static char path[256];
static semcache *c;

static void setup(void)
{
	test_path(path, sizeof path, "zc");
	semcache_options o = test_options(256, 0);
	o.arena_bytes = 256 << 10; /* 1024 blocks of 256 B */
	o.max_payload = 32 << 10;
	cr_assert_eq(semcache_open(path, &o, &c), 0);
}

static void teardown(void)
{
	semcache_close(c);
	unlink(path);
}

TestSuite(zerocopy, .init = setup, .fini = teardown);

static char *gather(const semcache_ref *ref)
{
	char *out = malloc(ref->len + 1), *p = out;
	size_t total = 0;
	for (int i = 0; i < ref->iovcnt; i++) {
		memcpy(p, ref->iov[i].iov_base, ref->iov[i].iov_len);
		p += ref->iov[i].iov_len;
		total += ref->iov[i].iov_len;
	}
	cr_assert_eq(total, ref->len, "iovecs cover %zu of %zu bytes", total, ref->len);
	*p = 0;
	return out;
}

static char *pattern(size_t n, char seed)
{
	char *s = malloc(n + 1);
	for (size_t i = 0; i < n; i++)
		s[i] = (char)('a' + (seed + i * 7) % 26);
	s[n] = 0;
	return s;
}

Test(zerocopy, content_is_handed_out_in_place)
{
	char *content = pattern(5000, 1);
	cr_assert_eq(put_simple(c, "ns", "k", content), 0);
	semcache_ref ref;
	cr_assert_eq(semcache_get_ref(c, "ns", "k", &ref), 0);
	cr_assert_eq(ref.len, 5000);
	cr_assert_geq(ref.iovcnt, 1);
	char *got = gather(&ref);
	cr_assert_str_eq(got, content);
	semcache_proc_info pi[4];
	size_t n;
	cr_assert_eq(semcache_procs(c, pi, 4, &n), 0);
	cr_assert_eq(pi[0].pins, 1);
	semcache_release(c, &ref);
	cr_assert_eq(semcache_procs(c, pi, 4, &n), 0);
	cr_assert_eq(pi[0].pins, 0);
	free(got);
	free(content);
}

Test(zerocopy, miss_is_notfound_and_release_is_harmless)
{
	semcache_ref ref;
	cr_assert_eq(semcache_get_ref(c, "ns", "absent", &ref), SEMCACHE_ENOTFOUND);
	cr_assert_eq(ref.iovcnt, 0);
	semcache_release(c, &ref);
	semcache_release(c, &ref);
	cr_assert_eq(semcache_get_ref(c, NULL, "k", &ref), -EINVAL);
	cr_assert_eq(semcache_get_ref(c, "ns", "k", NULL), -EINVAL);
	semcache_proc_info pi[4];
	size_t n;
	cr_assert_eq(semcache_procs(c, pi, 4, &n), 0);
	cr_assert_eq(pi[0].pins, 0, "a miss left a pin behind");
}

static int record_size(const semcache_entry_info *e, void *arg)
{
	*(uint32_t *)arg = e->size;
	return 0;
}

Test(zerocopy, bytes_stay_intact_and_pin_only_their_own_blocks)
{
	char *content = pattern(3000, 2);
	cr_assert_eq(put_simple(c, "ns", "k", content), 0);
	uint32_t size = 0;
	cr_assert_eq(semcache_foreach(c, "ns", "k", record_size, &size), 0);
	uint64_t own = (size + 255) / 256; /* the blocks of the referenced record */
	semcache_ref ref;
	cr_assert_eq(semcache_get_ref(c, "ns", "k", &ref), 0);
	/* replace it, then churn the arena many times over */
	char *other = pattern(3000, 9);
	cr_assert_eq(put_simple(c, "ns", "k", other), 0);
	char key[32];
	/* The arena is 1024 blocks: 2000 rounds of 12-block entries go round
	 * it many times.  The held reference pins its own 12 blocks and no
	 * more, so every put succeeds, and the pinned bytes never change. */
	for (int i = 0; i < 2000; i++) {
		snprintf(key, sizeof key, "churn%d", i);
		int rc = put_simple(c, "ns", key, other);
		cr_assert_eq(rc, 0, "put %d: %s", i, semcache_strerror(rc));
		cr_assert_eq(semcache_invalidate(c, "ns", "churn", NULL), 0);
	}
	semcache_stats st;
	cr_assert_eq(semcache_stat(c, &st), 0);
	cr_assert_leq(st.blocks_limbo, own, "%llu blocks held back by one reference of %llu",
	              (unsigned long long)st.blocks_limbo, (unsigned long long)own);
	char *got = gather(&ref);
	cr_assert_str_eq(got, content, "referenced bytes were reused");
	semcache_release(c, &ref);
	/* once released, the pinned blocks come back */
	for (int i = 0; i < 200; i++) {
		snprintf(key, sizeof key, "after%d", i);
		cr_assert_eq(put_simple(c, "ns", key, other), 0);
	}
	char report[1024];
	cr_assert_eq(semcache_verify(c, report, sizeof report), 0, "%s", report);
	free(got);
	free(content);
	free(other);
}

Test(zerocopy, a_dead_holder_does_not_pin_blocks_forever)
{
	char *content = pattern(3000, 3);
	cr_assert_eq(put_simple(c, "ns", "k", content), 0);
	pid_t p = fork();
	if (p == 0) {
		semcache_ref ref;
		if (semcache_get_ref(c, "ns", "k", &ref) != 0)
			_exit(1);
		_exit(0); /* dies holding the reference */
	}
	int st;
	waitpid(p, &st, 0);
	cr_assert(WIFEXITED(st) && WEXITSTATUS(st) == 0);
	char key[32];
	for (int i = 0; i < 3000; i++) {
		snprintf(key, sizeof key, "k%d", i);
		int rc = put_simple(c, "ns", key, content);
		cr_assert_eq(rc, 0, "put %d: %s (dead reader still pins blocks?)", i, semcache_strerror(rc));
	}
	free(content);
}

Test(zerocopy, huge_key_falls_back_to_an_owned_copy)
{
	char *key = pattern(6000, 4), *content = pattern(700, 5);
	cr_assert_eq(put_simple(c, "ns", key, content), 0);
	semcache_ref ref;
	cr_assert_eq(semcache_get_ref(c, "ns", key, &ref), 0);
	char *got = gather(&ref);
	cr_assert_str_eq(got, content);
	semcache_release(c, &ref);
	free(got);
	free(key);
	free(content);
}

Test(zerocopy, empty_content)
{
	cr_assert_eq(put_simple(c, "ns", "k", ""), 0);
	semcache_ref ref;
	cr_assert_eq(semcache_get_ref(c, "ns", "k", &ref), 0);
	cr_assert_eq(ref.len, 0);
	semcache_release(c, &ref);
}

/* Two threads keep overlapping references (one always held while the other
 * is re-taken).  With one reader word per process its first epoch would
 * never drop and every later batch of retired blocks would be stuck. */
struct overlap_arg {
	_Atomic int stop;
	_Atomic int hits;
};

static void *overlap_reader(void *p)
{
	struct overlap_arg *a = p;
	while (!atomic_load(&a->stop)) {
		semcache_ref ref;
		if (semcache_get_ref(c, "ns", "hot", &ref) == 0) {
			atomic_fetch_add(&a->hits, 1);
			usleep(200);
			semcache_release(c, &ref);
		}
	}
	return NULL;
}

Test(zerocopy, overlapping_references_of_two_threads_do_not_stall_reclamation, .timeout = 60)
{
	char *content = pattern(2000, 6);
	cr_assert_eq(put_simple(c, "ns", "hot", content), 0);
	struct overlap_arg a = { 0, 0 };
	pthread_t t[2];
	for (int i = 0; i < 2; i++)
		pthread_create(&t[i], NULL, overlap_reader, &a);
	char key[32];
	int efull = 0;
	/* at least 400 puts, and on until the readers have taken 200 references */
	for (int i = 0; i < 400 || (atomic_load(&a.hits) < 200 && i < 200000); i++) {
		snprintf(key, sizeof key, "churn%d", i % 1000);
		int rc = put_simple(c, "ns", i % 8 ? key : "hot", content);
		efull += rc == SEMCACHE_EFULL;
		cr_assert(rc == 0 || rc == SEMCACHE_EFULL, "put: %s", semcache_strerror(rc));
	}
	atomic_store(&a.stop, 1);
	for (int i = 0; i < 2; i++)
		pthread_join(t[i], NULL);
	cr_assert_geq(atomic_load(&a.hits), 200, "readers never overlapped the writer");
	cr_assert_eq(efull, 0, "%d puts found the arena held by short-lived references", efull);
	free(content);
}

Test(zerocopy, releasing_an_inherited_reference_leaves_the_childs_own_pinned)
{
	char *content = pattern(2000, 7), *other = pattern(2000, 8);
	cr_assert_eq(put_simple(c, "ns", "a", content), 0);
	cr_assert_eq(put_simple(c, "ns", "b", content), 0);
	semcache_ref parent_ref;
	cr_assert_eq(semcache_get_ref(c, "ns", "a", &parent_ref), 0);
	int fds[2];
	cr_assert_eq(pipe(fds), 0);
	pid_t p = fork();
	if (p == 0) {
		semcache_ref own;
		if (semcache_get_ref(c, "ns", "b", &own) != 0)
			_exit(2);
		/* the parent's: must not unpin ours, and says so */
		if (semcache_release(c, &parent_ref) != -EINVAL)
			_exit(4);
		semcache_proc_info pi[8];
		size_t n = 0;
		semcache_procs(c, pi, 8, &n);
		int pinned = 0;
		for (size_t i = 0; i < n; i++)
			if (pi[i].self)
				pinned = (int)pi[i].pins;
		char ok = pinned ? 'y' : 'n';
		if (write(fds[1], &ok, 1) != 1)
			_exit(3);
		_exit(0);
	}
	char ok = 0;
	cr_assert_eq(read(fds[0], &ok, 1), 1);
	int st;
	waitpid(p, &st, 0);
	cr_assert(WIFEXITED(st) && WEXITSTATUS(st) == 0);
	cr_assert_eq(ok, 'y', "child's own reference was unpinned by releasing the parent's");
	char *got = gather(&parent_ref);
	cr_assert_str_eq(got, content);
	semcache_release(c, &parent_ref);
	(void)other;
	free(got);
	free(content);
	free(other);
}

Test(zerocopy, a_held_reference_never_makes_a_full_arena_refuse_puts)
{
	/* fill the arena with entries of about 8 blocks */
	char *content = pattern(1900, 3), key[32];
	int i;
	for (i = 0; i < 140; i++) { /* 140 x 8 blocks > 1024: evicting already */
		snprintf(key, sizeof key, "fill%d", i);
		cr_assert_eq(put_simple(c, "ns", key, content), 0);
	}
	semcache_stats st;
	cr_assert_eq(semcache_stat(c, &st), 0);
	cr_assert_lt(st.blocks_free, 16, "the arena is not full yet");
	semcache_ref ref;
	cr_assert_eq(semcache_get_ref(c, "ns", "fill139", &ref), 0);
	char *held = gather(&ref);
	/* new keys keep coming: others are evicted, none is refused */
	for (int j = 0; j < 1000; j++, i++) {
		snprintf(key, sizeof key, "new%d", i);
		int rc = put_simple(c, "ns", key, content);
		cr_assert_eq(rc, 0, "put %d with one reference held: %s", j, semcache_strerror(rc));
	}
	char *now = gather(&ref);
	cr_assert_str_eq(now, held);
	semcache_release(c, &ref);
	char report[1024];
	cr_assert_eq(semcache_verify(c, report, sizeof report), 0, "%s", report);
	free(now);
	free(held);
	free(content);
}

static int slot_of(const semcache_entry_info *e, void *arg)
{
	*(uint32_t *)arg = e->slot;
	return 0;
}

Test(zerocopy, a_damaged_payload_is_a_miss_for_get_ref_as_for_get)
{
	char *content = pattern(3000, 11);
	cr_assert_eq(put_simple(c, "ns", "k", content), 0);
	uint32_t s = UINT32_MAX;
	cr_assert_eq(semcache_foreach(c, "ns", "k", slot_of, &s), 0);
	cr_assert_lt(s, c->slots);
	/* flip one byte in the entry's second block */
	uint32_t second = atomic_load(&c->next[c->slot[s].head]);
	cr_assert_lt(second, c->nblocks);
	c->arena[(size_t)second * c->block_size + 17] ^= 0x20;
	semcache_response *out = NULL;
	cr_assert_eq(semcache_get(c, "ns", "k", 0, &out), SEMCACHE_ENOTFOUND);
	semcache_ref ref;
	cr_assert_eq(semcache_get_ref(c, "ns", "k", &ref), SEMCACHE_ENOTFOUND,
	             "get_ref handed out damaged bytes");
	semcache_release(c, &ref);
	free(content);
}

static void on_segv(int sig)
{
	(void)sig;
	_exit(42);
}

Test(zerocopy, a_write_through_a_reference_faults_and_changes_nothing)
{
	char *content = pattern(1500, 12);
	cr_assert_eq(put_simple(c, "ns", "k", content), 0);
	pid_t p = fork();
	if (p == 0) {
		/* our own handler, so the fault is seen the same way with or
		 * without a sanitizer's handler installed */
		struct sigaction sa;
		memset(&sa, 0, sizeof sa);
		sa.sa_handler = on_segv;
		sigaction(SIGSEGV, &sa, NULL);
		semcache_ref ref;
		if (semcache_get_ref(c, "ns", "k", &ref) != 0)
			_exit(2);
		((volatile char *)ref.iov[0].iov_base)[0] = '!'; /* a caller's stray write */
		_exit(0);
	}
	int st;
	cr_assert_eq(waitpid(p, &st, 0), p);
	cr_assert(WIFEXITED(st) && WEXITSTATUS(st) == 42,
	          "a write through a reference did not fault (status %d)", st);
	semcache_response *out;
	cr_assert_eq(semcache_get(c, "ns", "k", 0, &out), 0);
	cr_assert_str_eq(out->content, content);
	semcache_response_free(out);
	free(content);
}

/* Returned by value, as a server would keep it in its connection struct. */
static semcache_ref take(const char *key)
{
	semcache_ref ref;
	cr_assert_eq(semcache_get_ref(c, "ns", key, &ref), 0);
	return ref;
}

static uint32_t my_pins(semcache *h)
{
	semcache_proc_info pi[8];
	size_t n = 0;
	cr_assert_eq(semcache_procs(h, pi, 8, &n), 0);
	for (size_t i = 0; i < n; i++)
		if (pi[i].self)
			return pi[i].pins;
	return UINT32_MAX;
}

Test(zerocopy, a_reference_copied_by_value_stays_valid_and_releases_once)
{
	char *content = pattern(2500, 13);
	cr_assert_eq(put_simple(c, "ns", "k", content), 0);
	semcache_ref a = take("k"), b = a, stale = a;
	memset(&a, 0x5a, sizeof a); /* the original's storage is reused */
	char *got = gather(&b);
	cr_assert_str_eq(got, content);
	cr_assert_eq(my_pins(c), 1);
	cr_assert_eq(semcache_release(c, &b), 0);
	cr_assert_eq(my_pins(c), 0);
	/* a second copy of a released reference unpins nothing */
	semcache_ref other = take("k");
	cr_assert_eq(semcache_release(c, &stale), -EINVAL);
	cr_assert_eq(my_pins(c), 1, "releasing a stale copy unpinned another reference");
	cr_assert_eq(semcache_release(c, &other), 0);
	free(got);
	free(content);
}

Test(zerocopy, release_through_another_handle_of_the_process_unpins)
{
	char *content = pattern(800, 14);
	cr_assert_eq(put_simple(c, "ns", "k", content), 0);
	semcache *c2;
	cr_assert_eq(semcache_open(path, NULL, &c2), 0);
	semcache_ref ref = take("k");
	cr_assert_eq(semcache_release(c2, &ref), 0);
	cr_assert_eq(my_pins(c), 0, "a release through another handle leaked the pin");
	/* a reference whose handle was closed: an error, nothing touched */
	cr_assert_eq(semcache_get_ref(c2, "ns", "k", &ref), 0);
	cr_assert_eq(semcache_close(c2), 0);
	cr_assert_eq(semcache_release(c, &ref), -EINVAL);
	cr_assert_eq(ref.iovcnt, 0);
	free(content);
}

Test(zerocopy, a_private_copy_pins_nothing_and_is_freed_once)
{
	char *content = pattern(600, 15);
	cr_assert_eq(put_simple(c, "ns", "k", content), 0);
	/* every hazard word of this process in use: the next reference is a
	 * private copy */
	semcache_ref held[32];
	for (int i = 0; i < 32; i++)
		held[i] = take("k");
	cr_assert_eq(my_pins(c), 32);
	semcache_ref copy = take("k"), dup = copy;
	cr_assert_eq(my_pins(c), 32, "the private copy pins a chain");
	char *got = gather(&dup);
	cr_assert_str_eq(got, content);
	cr_assert_eq(semcache_release(c, &copy), 0);
	cr_assert_eq(semcache_release(c, &dup), -EINVAL, "a copy released twice");
	for (int i = 0; i < 32; i++)
		cr_assert_eq(semcache_release(c, &held[i]), 0);
	cr_assert_eq(my_pins(c), 0);
	/* a record whose content header lies beyond the prefix: copied, unpinned */
	char *key = pattern(6000, 16);
	cr_assert_eq(put_simple(c, "ns", key, content), 0);
	semcache_ref big;
	cr_assert_eq(semcache_get_ref(c, "ns", key, &big), 0);
	cr_assert_eq(my_pins(c), 0, "a copied reference kept its pin");
	cr_assert_eq(semcache_release(c, &big), 0);
	free(key);
	free(got);
	free(content);
}

Test(zerocopy, a_stale_copy_never_frees_a_newer_copy_at_the_same_address)
{
	char *content = pattern(600, 17), *other = pattern(600, 18);
	cr_assert_eq(put_simple(c, "ns", "k", content), 0);
	cr_assert_eq(put_simple(c, "ns", "j", other), 0);
	semcache_ref held[32];
	for (int i = 0; i < 32; i++)
		held[i] = take("k");
	semcache_ref r1 = take("k"), stale = r1; /* private copies from here */
	cr_assert_eq(semcache_release(c, &r1), 0);
	semcache_ref r2 = take("j"); /* malloc may well reuse r1's address */
	cr_assert_eq(semcache_release(c, &stale), -EINVAL);
	char *got = gather(&r2);
	cr_assert_str_eq(got, other, "a stale release freed or changed a newer copy");
	cr_assert_eq(semcache_release(c, &r2), 0);
	for (int i = 0; i < 32; i++)
		cr_assert_eq(semcache_release(c, &held[i]), 0);
	free(got);
	free(content);
	free(other);
}
