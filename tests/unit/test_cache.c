/*
 * test_cache.c - the exact-match cache: put, get, TTLs, eviction,
 * invalidation, statistics, argument validation.
 */
#include <criterion/criterion.h>
#include <errno.h>
#include <math.h>

#include "../common.h"

static char path[256];
static semcache *c;
static test_clock clk;

static void open_with(semcache_options o)
{
	test_path(path, sizeof path, "cache");
	atomic_store(&clk.now, 1700000000000LL);
	o.clock_ms = test_clock_read;
	o.clock_arg = &clk;
	int rc = semcache_open(path, &o, &c);
	cr_assert_eq(rc, 0, "open: %s", semcache_strerror(rc));
}

static void setup(void) { open_with(test_options(256, 8)); }

static void teardown(void)
{
	semcache_close(c);
	c = NULL;
	unlink(path);
}

static void assert_consistent(void)
{
	char report[2048];
	int rc = semcache_verify(c, report, sizeof report);
	cr_assert_eq(rc, 0, "verify: %s", report);
}

static uint64_t entries(void)
{
	semcache_stats st;
	cr_assert_eq(semcache_stat(c, &st), 0);
	return st.entries;
}

static semcache_counters totals(void)
{
	semcache_stats st;
	cr_assert_eq(semcache_stat(c, &st), 0);
	return st.total;
}

TestSuite(cache, .init = setup, .fini = teardown);

Test(cache, put_then_get_returns_the_record)
{
	semcache_tool_call tc[2] = { { "call_1", "lookup", "{\"q\":1}" }, { "call_2", "sum", "[1,2]" } };
	semcache_response r = simple_response("hello world");
	r.tool_calls = tc;
	r.n_tool_calls = 2;
	r.reasoning = "because";
	r.metadata = "{\"user\":7}";
	semcache_put_args a = { .ns = "tenant-a", .key = "k1", .scope = "gpt", .response = &r };
	cr_assert_eq(semcache_put(c, &a), 0);

	semcache_response *out = NULL;
	cr_assert_eq(semcache_get(c, "tenant-a", "k1", 0, &out), 0);
	cr_assert_str_eq(out->content, "hello world");
	cr_assert_str_eq(out->model, "test-model");
	cr_assert_eq(out->prompt_tokens, 10);
	cr_assert_eq(out->completion_tokens, 20);
	cr_assert_eq(out->latency_ms, 123);
	cr_assert_str_eq(out->finish_reason, "stop");
	cr_assert_str_eq(out->reasoning, "because");
	cr_assert_str_eq(out->metadata, "{\"user\":7}");
	cr_assert_eq(out->n_tool_calls, 2);
	cr_assert_str_eq(out->tool_calls[1].name, "sum");
	cr_assert_str_eq(out->tool_calls[1].arguments, "[1,2]");
	semcache_response_free(out);
	assert_consistent();
}

Test(cache, get_of_absent_key_is_a_miss)
{
	semcache_response *out = (void *)1;
	cr_assert_eq(semcache_get(c, "ns", "nope", 0, &out), SEMCACHE_ENOTFOUND);
	cr_assert_null(out);
	cr_assert_eq(totals().misses, 1);
}

Test(cache, replace_keeps_a_single_entry)
{
	cr_assert_eq(put_simple(c, "ns", "k", "v1"), 0);
	cr_assert_eq(put_simple(c, "ns", "k", "v2"), 0);
	cr_assert_eq(entries(), 1);
	semcache_response *out;
	cr_assert_eq(semcache_get(c, "ns", "k", 0, &out), 0);
	cr_assert_str_eq(out->content, "v2");
	semcache_response_free(out);
	assert_consistent();
}

Test(cache, namespaces_never_share_a_key)
{
	cr_assert_eq(put_simple(c, "alice", "same-key", "for alice"), 0);
	semcache_response *out;
	cr_assert_eq(semcache_get(c, "bob", "same-key", 0, &out), SEMCACHE_ENOTFOUND);
	cr_assert_eq(put_simple(c, "bob", "same-key", "for bob"), 0);
	cr_assert_eq(semcache_get(c, "alice", "same-key", 0, &out), 0);
	cr_assert_str_eq(out->content, "for alice");
	semcache_response_free(out);
	/* length-prefixed encoding: ("a","bc") is not ("ab","c") */
	cr_assert_eq(put_simple(c, "a", "bc", "x"), 0);
	cr_assert_eq(semcache_get(c, "ab", "c", 0, &out), SEMCACHE_ENOTFOUND);
}

Test(cache, exact_ttl_expires_with_the_clock)
{
	cr_assert_eq(put_simple(c, "ns", "k", "v"), 0);
	semcache_response *out;
	atomic_fetch_add(&clk.now, 3600 * 1000 - 1);
	cr_assert_eq(semcache_get(c, "ns", "k", 0, &out), 0);
	semcache_response_free(out);
	atomic_fetch_add(&clk.now, 1);
	cr_assert_eq(semcache_get(c, "ns", "k", 0, &out), SEMCACHE_ENOTFOUND);
}

Test(cache, expired_entry_is_a_miss_and_left_to_writers)
{
	cr_assert_eq(put_simple(c, "ns", "k", "v"), 0);
	cr_assert_eq(entries(), 1);
	atomic_fetch_add(&clk.now, 3600 * 1000);
	semcache_response *out;
	/* a reader never takes the writer lock, so it removes nothing */
	cr_assert_eq(semcache_get(c, "ns", "k", 0, &out), SEMCACHE_ENOTFOUND);
	cr_assert_eq(entries(), 1);
	/* a writer removes it, counted as an expiration, not an invalidation */
	uint64_t n = 99;
	cr_assert_eq(semcache_invalidate(c, NULL, NULL, &n), 0);
	cr_assert_eq(n, 0);
	cr_assert_eq(entries(), 0);
	cr_assert_eq(totals().expirations, 1);
	assert_consistent();
}

Test(cache, per_entry_ttl_overrides_default)
{
	semcache_response r = simple_response("short");
	semcache_put_args a = { .ns = "ns", .key = "k", .response = &r, .exact_ttl_ms = 1000 };
	cr_assert_eq(semcache_put(c, &a), 0);
	semcache_response *out;
	atomic_fetch_add(&clk.now, 999);
	cr_assert_eq(semcache_get(c, "ns", "k", 0, &out), 0);
	semcache_response_free(out);
	atomic_fetch_add(&clk.now, 1);
	cr_assert_eq(semcache_get(c, "ns", "k", 0, &out), SEMCACHE_ENOTFOUND);
}

Test(cache, huge_ttl_saturates_instead_of_wrapping)
{
	semcache_response r = simple_response("forever");
	semcache_put_args a = { .ns = "ns", .key = "k", .response = &r, .exact_ttl_ms = INT64_MAX,
	                        .semantic_ttl_ms = INT64_MAX };
	cr_assert_eq(semcache_put(c, &a), 0);
	atomic_fetch_add(&clk.now, 100LL * 365 * 86400 * 1000);
	semcache_response *out;
	cr_assert_eq(semcache_get(c, "ns", "k", SEMCACHE_GET_TOUCH, &out), 0);
	semcache_response_free(out);
	cr_assert_eq(semcache_get(c, "ns", "k", 0, &out), 0);
	semcache_response_free(out);
}

Test(cache, hits_do_not_extend_ttl_unless_touch)
{
	semcache_response r = simple_response("v");
	semcache_put_args a = { .ns = "ns", .key = "k", .response = &r, .exact_ttl_ms = 1000 };
	cr_assert_eq(semcache_put(c, &a), 0);
	a.key = "t";
	cr_assert_eq(semcache_put(c, &a), 0);
	semcache_response *out;
	atomic_fetch_add(&clk.now, 900);
	cr_assert_eq(semcache_get(c, "ns", "k", 0, &out), 0);
	semcache_response_free(out);
	cr_assert_eq(semcache_get(c, "ns", "t", SEMCACHE_GET_TOUCH, &out), 0);
	semcache_response_free(out);
	atomic_fetch_add(&clk.now, 200);
	cr_assert_eq(semcache_get(c, "ns", "k", 0, &out), SEMCACHE_ENOTFOUND, "plain hit extended the TTL");
	cr_assert_eq(semcache_get(c, "ns", "t", 0, &out), 0, "touch did not extend the TTL");
	semcache_response_free(out);
}

Test(cache, full_slot_table_evicts_by_clock)
{
	char key[32];
	for (int i = 0; i < 1000; i++) {
		snprintf(key, sizeof key, "k%d", i);
		cr_assert_eq(put_simple(c, "ns", key, key), 0);
	}
	cr_assert_leq(entries(), 256);
	cr_assert_geq(totals().evictions, 1000 - 256);
	semcache_response *out;
	cr_assert_eq(semcache_get(c, "ns", "k999", 0, &out), 0, "newest entry evicted");
	semcache_response_free(out);
	assert_consistent();
}

Test(cache, referenced_entries_survive_a_clock_pass)
{
	/* 16 slots, 8 buckets of 8 ways: bucket overflow is out of the picture
	 * (it needs 9 of 16 keys in one bucket), only CLOCK decides. */
	semcache_close(c);
	unlink(path);
	open_with(test_options(16, 0));
	char key[32];
	for (int i = 0; i < 16; i++) {
		snprintf(key, sizeof key, "k%d", i);
		cr_assert_eq(put_simple(c, "ns", key, key), 0);
	}
	semcache_response *out;
	cr_assert_eq(semcache_get(c, "ns", "k5", 0, &out), 0);
	semcache_response_free(out);
	for (int i = 0; i < 15; i++) {
		snprintf(key, sizeof key, "n%d", i);
		cr_assert_eq(put_simple(c, "ns", key, key), 0);
	}
	cr_assert_eq(semcache_get(c, "ns", "k5", 0, &out), 0, "referenced entry evicted");
	semcache_response_free(out);
	/* The 15 unreferenced old entries made room for the 15 new ones.  (A
	 * rare bucket overflow, about 0.4% of runs at this size, may drop a
	 * new entry instead of an old one: allow one.) */
	int kept = 0;
	for (int i = 0; i < 16; i++) {
		if (i == 5)
			continue;
		snprintf(key, sizeof key, "k%d", i);
		if (semcache_get(c, "ns", key, 0, &out) == 0) {
			kept++;
			semcache_response_free(out);
		}
	}
	cr_assert_leq(kept, 1, "%d unreferenced entries kept over newer ones", kept);
	cr_assert_geq(totals().evictions, 14);
}

Test(cache, expired_entries_are_evicted_before_live_ones)
{
	/* small table: no bucket can overflow, so only CLOCK picks victims */
	semcache_close(c);
	unlink(path);
	open_with(test_options(16, 0));
	char key[32];
	semcache_response r = simple_response("short-lived");
	for (int i = 0; i < 4; i++) {
		snprintf(key, sizeof key, "short%d", i);
		semcache_put_args a = { .ns = "ns", .key = key, .response = &r,
		                        .exact_ttl_ms = 10, .semantic_ttl_ms = 10 };
		cr_assert_eq(semcache_put(c, &a), 0);
	}
	for (int i = 0; i < 4; i++) {
		snprintf(key, sizeof key, "long%d", i);
		cr_assert_eq(put_simple(c, "ns", key, key), 0);
	}
	/* fill the rest of the table so new puts must evict something */
	for (int i = 0; i < 8; i++) {
		snprintf(key, sizeof key, "fill%d", i);
		cr_assert_eq(put_simple(c, "ns", key, key), 0);
	}
	atomic_fetch_add(&clk.now, 100);
	for (int i = 0; i < 4; i++) {
		snprintf(key, sizeof key, "new%d", i);
		cr_assert_eq(put_simple(c, "ns", key, key), 0);
	}
	semcache_response *out;
	for (int i = 0; i < 4; i++) {
		snprintf(key, sizeof key, "long%d", i);
		cr_assert_eq(semcache_get(c, "ns", key, 0, &out), 0, "live %s evicted before expired", key);
		semcache_response_free(out);
	}
	cr_assert_eq(totals().evictions, 0, "evictions %llu expirations %llu", (unsigned long long)totals().evictions, (unsigned long long)totals().expirations);
	cr_assert_geq(totals().expirations, 4);
}

Test(cache, full_arena_evicts_to_make_room)
{
	semcache_close(c);
	unlink(path);
	semcache_options o = test_options(1024, 0);
	o.arena_bytes = 256 << 10; /* 1024 blocks of 256 B */
	o.max_payload = 16 << 10;
	open_with(o);
	static char big[8000];
	memset(big, 'x', sizeof big - 1);
	char key[32];
	for (int i = 0; i < 200; i++) {
		snprintf(key, sizeof key, "big%d", i);
		int rc = semcache_put(c, &(semcache_put_args){ .ns = "ns", .key = key,
		                          .response = &(semcache_response){ .content = big, .model = "m" } });
		cr_assert_eq(rc, 0, "put %d: %s", i, semcache_strerror(rc));
	}
	semcache_stats st;
	cr_assert_eq(semcache_stat(c, &st), 0);
	cr_assert_lt(st.entries, 40);
	cr_assert_gt(st.total.evictions, 150);
	semcache_response *out;
	cr_assert_eq(semcache_get(c, "ns", "big199", 0, &out), 0);
	cr_assert_eq(strlen(out->content), sizeof big - 1);
	semcache_response_free(out);
	assert_consistent();
}

Test(cache, oversized_payload_is_e2big_and_changes_nothing)
{
	cr_assert_eq(put_simple(c, "ns", "k", "old"), 0);
	size_t n = 70 << 10;
	char *big = malloc(n + 1);
	memset(big, 'y', n);
	big[n] = 0;
	cr_assert_eq(put_simple(c, "ns", "k", big), -E2BIG);
	free(big);
	semcache_response *out;
	cr_assert_eq(semcache_get(c, "ns", "k", 0, &out), 0);
	cr_assert_str_eq(out->content, "old");
	semcache_response_free(out);
	cr_assert_eq(entries(), 1);
	cr_assert_eq(totals().puts, 1);
}

Test(cache, invalidate_all)
{
	for (int i = 0; i < 10; i++) {
		char key[16];
		snprintf(key, sizeof key, "k%d", i);
		cr_assert_eq(put_simple(c, i % 2 ? "a" : "b", key, "v"), 0);
	}
	uint64_t n = 0;
	cr_assert_eq(semcache_invalidate(c, NULL, NULL, &n), 0);
	cr_assert_eq(n, 10);
	cr_assert_eq(entries(), 0);
	assert_consistent();
}

Test(cache, invalidate_namespace_leaves_others)
{
	cr_assert_eq(put_simple(c, "a", "k1", "v"), 0);
	cr_assert_eq(put_simple(c, "a", "k2", "v"), 0);
	cr_assert_eq(put_simple(c, "b", "k1", "v"), 0);
	uint64_t n = 0;
	cr_assert_eq(semcache_invalidate(c, "a", NULL, &n), 0);
	cr_assert_eq(n, 2);
	semcache_response *out;
	cr_assert_eq(semcache_get(c, "a", "k1", 0, &out), SEMCACHE_ENOTFOUND);
	cr_assert_eq(semcache_get(c, "b", "k1", 0, &out), 0);
	semcache_response_free(out);
	assert_consistent();
}

Test(cache, invalidate_prefix_within_and_across_namespaces)
{
	cr_assert_eq(put_simple(c, "a", "user:1:q", "v"), 0);
	cr_assert_eq(put_simple(c, "a", "user:2:q", "v"), 0);
	cr_assert_eq(put_simple(c, "a", "other", "v"), 0);
	cr_assert_eq(put_simple(c, "b", "user:1:q", "v"), 0);
	uint64_t n = 0;
	cr_assert_eq(semcache_invalidate(c, "a", "user:1", &n), 0);
	cr_assert_eq(n, 1);
	cr_assert_eq(semcache_invalidate(c, NULL, "user:", &n), 0);
	cr_assert_eq(n, 2);
	semcache_response *out;
	cr_assert_eq(semcache_get(c, "a", "other", 0, &out), 0);
	semcache_response_free(out);
	cr_assert_eq(entries(), 1);
	cr_assert_eq(totals().invalidations, 3);
}

Test(cache, stats_count_hits_misses_puts)
{
	cr_assert_eq(put_simple(c, "ns", "k", "v"), 0);
	semcache_response *out;
	for (int i = 0; i < 3; i++) {
		cr_assert_eq(semcache_get(c, "ns", "k", 0, &out), 0);
		semcache_response_free(out);
	}
	cr_assert_eq(semcache_get(c, "ns", "x", 0, &out), SEMCACHE_ENOTFOUND);
	semcache_counters t = totals();
	cr_assert_eq(t.hits, 3);
	cr_assert_eq(t.misses, 1);
	cr_assert_eq(t.puts, 1);
	semcache_stats st;
	cr_assert_eq(semcache_stat(c, &st), 0);
	cr_assert_eq(st.slots, 256);
	cr_assert_eq(st.dim, 8);
	cr_assert_eq(st.procs_attached, 1);
	cr_assert_eq(st.blocks_used + st.blocks_free + st.blocks_limbo, st.blocks_total);
	cr_assert_gt(st.bytes_used, 0);
	semcache_proc_info pi[4];
	size_t n = 0;
	cr_assert_eq(semcache_procs(c, pi, 4, &n), 0);
	cr_assert_eq(n, 1);
	cr_assert_eq(pi[0].pid, getpid());
	cr_assert_eq(pi[0].alive, 1);
	cr_assert_eq(pi[0].counters.hits, 3);
}

Test(cache, bad_arguments_are_einval)
{
	semcache_response r = simple_response("v");
	semcache_response *out;
	cr_assert_eq(semcache_put(NULL, &(semcache_put_args){ .ns = "a", .key = "b", .response = &r }), -EINVAL);
	cr_assert_eq(semcache_put(c, NULL), -EINVAL);
	cr_assert_eq(semcache_put(c, &(semcache_put_args){ .key = "b", .response = &r }), -EINVAL);
	cr_assert_eq(semcache_put(c, &(semcache_put_args){ .ns = "a", .response = &r }), -EINVAL);
	cr_assert_eq(semcache_put(c, &(semcache_put_args){ .ns = "a", .key = "b" }), -EINVAL);
	cr_assert_eq(semcache_put(c, &(semcache_put_args){ .ns = "a", .key = "b", .response = &r,
	                                                  .exact_ttl_ms = -5 }), -EINVAL);
	semcache_response nocontent = r;
	nocontent.content = NULL;
	cr_assert_eq(semcache_put(c, &(semcache_put_args){ .ns = "a", .key = "b", .response = &nocontent }),
	             SEMCACHE_EBADRECORD);
	cr_assert_eq(semcache_get(c, NULL, "k", 0, &out), -EINVAL);
	cr_assert_eq(semcache_get(c, "n", NULL, 0, &out), -EINVAL);
	cr_assert_eq(semcache_get(c, "n", "k", 0, NULL), -EINVAL);
	cr_assert_eq(semcache_get(c, "n", "k", 0x80, &out), -EINVAL);
	cr_assert_eq(semcache_stat(c, NULL), -EINVAL);
	cr_assert_eq(entries(), 0);
}

Test(cache, bad_embeddings_are_rejected_and_change_nothing)
{
	float e[8] = { 1, 0, 0, 0, 0, 0, 0, 0 };
	semcache_response r = simple_response("v");
	semcache_put_args a = { .ns = "n", .key = "k", .response = &r, .embedding = e, .embedding_dim = 7 };
	cr_assert_eq(semcache_put(c, &a), SEMCACHE_EDIM);
	a.embedding_dim = 8;
	e[3] = NAN;
	cr_assert_eq(semcache_put(c, &a), SEMCACHE_EEMBEDDING);
	e[3] = INFINITY;
	cr_assert_eq(semcache_put(c, &a), SEMCACHE_EEMBEDDING);
	memset(e, 0, sizeof e);
	cr_assert_eq(semcache_put(c, &a), SEMCACHE_EEMBEDDING);
	cr_assert_eq(entries(), 0);
	cr_assert_eq(totals().puts, 0);
}

static int collect(const semcache_entry_info *e, void *arg)
{
	int *n = arg;
	cr_assert_str_eq(e->ns, "a");
	cr_assert(strncmp(e->key, "p", 1) == 0);
	cr_assert_gt(e->size, 0);
	(*n)++;
	return 0;
}

Test(cache, foreach_filters_by_namespace_and_prefix)
{
	cr_assert_eq(put_simple(c, "a", "p1", "v"), 0);
	cr_assert_eq(put_simple(c, "a", "p2", "v"), 0);
	cr_assert_eq(put_simple(c, "a", "q1", "v"), 0);
	cr_assert_eq(put_simple(c, "b", "p1", "v"), 0);
	int n = 0;
	cr_assert_eq(semcache_foreach(c, "a", "p", collect, &n), 0);
	cr_assert_eq(n, 2);
}

Test(cache, strerror_names_every_code)
{
	for (int e = SEMCACHE_ERRBASE; e >= SEMCACHE_ELAST; e--) {
		const char *s = semcache_strerror(e);
		cr_assert_not_null(s);
		cr_assert_str_neq(s, "unknown semcache error", "code %d unnamed", e);
	}
	cr_assert_str_eq(semcache_strerror(-EINVAL), strerror(EINVAL));
	/* The two "busy" codes are different codes with different names. */
	cr_assert_neq(SEMCACHE_EBUSY, -EBUSY);
	cr_assert_str_neq(semcache_strerror(SEMCACHE_EBUSY), semcache_strerror(-EBUSY));
	cr_assert_not_null(semcache_strerror(12345));
	cr_assert_not_null(semcache_strerror(-30099));
}

/* ------------------------------------------------------------------------
 * delete
 * ---------------------------------------------------------------------- */
static int get_ok(const char *ns, const char *key)
{
	semcache_response *out = NULL;
	int rc = semcache_get(c, ns, key, 0, &out);
	semcache_response_free(out);
	return rc == 0;
}

Test(cache, delete_removes_exactly_one_key_not_a_prefix)
{
	cr_assert_eq(put_simple(c, "ns", "user1", "a"), 0);
	cr_assert_eq(put_simple(c, "ns", "user10:x", "b"), 0);
	cr_assert_eq(put_simple(c, "ns", "user1:y", "c"), 0);
	cr_assert_eq(put_simple(c, "other", "user1", "d"), 0);

	cr_assert_eq(semcache_delete(c, "ns", "user1"), 0);
	cr_assert_not(get_ok("ns", "user1"));
	cr_assert(get_ok("ns", "user10:x"), "delete widened to a prefix");
	cr_assert(get_ok("ns", "user1:y"), "delete widened to a prefix");
	cr_assert(get_ok("other", "user1"), "delete crossed namespaces");
	cr_assert_eq(entries(), 3);
	assert_consistent();
}

Test(cache, delete_of_an_absent_key_is_enotfound_and_changes_nothing)
{
	cr_assert_eq(put_simple(c, "ns", "k", "v"), 0);
	cr_assert_eq(semcache_delete(c, "ns", "nope"), SEMCACHE_ENOTFOUND);
	cr_assert_eq(semcache_delete(c, "other", "k"), SEMCACHE_ENOTFOUND);
	cr_assert_eq(semcache_delete(c, "ns", "k"), 0);
	cr_assert_eq(semcache_delete(c, "ns", "k"), SEMCACHE_ENOTFOUND, "deleted twice");
	cr_assert_eq(entries(), 0);
	semcache_counters t = totals();
	cr_assert_eq(t.deletes, 1);
	cr_assert_eq(t.invalidations, 0, "a delete is not an invalidation");
	assert_consistent();
}

Test(cache, delete_of_an_expired_entry_reclaims_it_as_an_expiration)
{
	semcache_response r = simple_response("v");
	semcache_put_args a = { .ns = "ns", .key = "k", .response = &r, .exact_ttl_ms = 1000 };
	cr_assert_eq(semcache_put(c, &a), 0);
	atomic_fetch_add(&clk.now, 5000);
	cr_assert_eq(semcache_delete(c, "ns", "k"), SEMCACHE_ENOTFOUND);
	cr_assert_eq(entries(), 0, "the expired entry stayed");
	semcache_counters t = totals();
	cr_assert_eq(t.deletes, 0);
	cr_assert_eq(t.expirations, 1);
	assert_consistent();
}

Test(cache, deleted_key_can_be_stored_again_and_space_is_reused)
{
	/* More put/delete rounds than the arena holds: the deleted entries'
	 * blocks must come back. */
	char body[2048];
	memset(body, 'x', sizeof body - 1);
	body[sizeof body - 1] = 0;
	for (int i = 0; i < 4000; i++) {
		cr_assert_eq(put_simple(c, "ns", "k", body), 0, "round %d", i);
		cr_assert_eq(semcache_delete(c, "ns", "k"), 0, "round %d", i);
	}
	cr_assert_eq(entries(), 0);
	cr_assert_eq(totals().evictions, 0, "deleted space was not reused");
	cr_assert_eq(totals().deletes, 4000);
	cr_assert_eq(put_simple(c, "ns", "k", "again"), 0);
	cr_assert(get_ok("ns", "k"));
	assert_consistent();
}

Test(cache, delete_validates_arguments)
{
	cr_assert_eq(semcache_delete(NULL, "ns", "k"), -EINVAL);
	cr_assert_eq(semcache_delete(c, NULL, "k"), -EINVAL);
	cr_assert_eq(semcache_delete(c, "ns", NULL), -EINVAL);
	cr_assert_eq(put_simple(c, "", "", "empty ns and key are allowed"), 0);
	cr_assert_eq(semcache_delete(c, "", ""), 0);
}

/* ------------------------------------------------------------------------
 * Small promises of the header
 * ---------------------------------------------------------------------- */
Test(cache, absent_optional_strings_come_back_null)
{
	semcache_response r = simple_response("v");
	r.finish_reason = NULL;
	semcache_put_args a = { .ns = "ns", .key = "k", .response = &r };
	cr_assert_eq(semcache_put(c, &a), 0);
	semcache_response *out = NULL;
	cr_assert_eq(semcache_get(c, "ns", "k", 0, &out), 0);
	cr_assert_null(out->finish_reason);
	cr_assert_null(out->reasoning);
	cr_assert_null(out->metadata);
	cr_assert_null(out->tool_calls);
	cr_assert_eq(out->n_tool_calls, 0);
	cr_assert_eq(out->reserved_[0] | out->reserved_[1], 0);
	semcache_response_free(out);

	r.finish_reason = ""; /* present but empty is not absent */
	cr_assert_eq(semcache_put(c, &a), 0);
	cr_assert_eq(semcache_get(c, "ns", "k", 0, &out), 0);
	cr_assert_not_null(out->finish_reason);
	cr_assert_str_eq(out->finish_reason, "");
	semcache_response_free(out);
}

Test(cache, non_zero_reserved_words_are_refused)
{
	semcache_response r = simple_response("v");
	semcache_put_args a = { .ns = "ns", .key = "k", .response = &r };
	a.reserved_[3] = 1;
	cr_assert_eq(semcache_put(c, &a), -EINVAL);
	a.reserved_[3] = 0;
	r.reserved_[1] = 7;
	cr_assert_eq(semcache_put(c, &a), -EINVAL);
	r.reserved_[1] = 0;
	cr_assert_eq(semcache_put(c, &a), 0);
	cr_assert_eq(entries(), 1);
}

Test(cache, version_reports_the_library)
{
	int major = -1, minor = -1, patch = -1;
	const char *v = semcache_version(&major, &minor, &patch);
	cr_assert_not_null(v);
	cr_assert_eq(major, SEMCACHE_VERSION_MAJOR);
	cr_assert_eq(minor, SEMCACHE_VERSION_MINOR);
	cr_assert_eq(patch, SEMCACHE_VERSION_PATCH);
	char expect[32];
	snprintf(expect, sizeof expect, "%d.%d.%d", major, minor, patch);
	cr_assert_str_eq(v, expect);
	cr_assert_eq(semcache_version(NULL, NULL, NULL), v);
	cr_assert_eq((major << 16) | (minor << 8) | patch, SEMCACHE_VERSION_NUMBER);
}

Test(cache, zero_copy_reference_outlives_a_delete_of_its_entry)
{
	cr_assert_eq(put_simple(c, "ns", "k", "pinned content"), 0);
	semcache_ref ref;
	cr_assert_eq(semcache_get_ref(c, "ns", "k", &ref), 0);
	cr_assert_eq(semcache_delete(c, "ns", "k"), 0);
	/* Churn the arena so that unpinned blocks would be reused. */
	char key[16];
	for (int i = 0; i < 2000; i++) {
		snprintf(key, sizeof key, "churn%d", i % 200);
		cr_assert_eq(put_simple(c, "ns", key, "some other content entirely"), 0);
	}
	char got[64] = { 0 };
	size_t off = 0;
	for (int i = 0; i < ref.iovcnt; i++) {
		cr_assert_leq(off + ref.iov[i].iov_len, sizeof got - 1);
		memcpy(got + off, ref.iov[i].iov_base, ref.iov[i].iov_len);
		off += ref.iov[i].iov_len;
	}
	cr_assert_eq(off, ref.len);
	cr_assert_str_eq(got, "pinned content");
	semcache_release(c, &ref);
	cr_assert_not(get_ok("ns", "k"));
	assert_consistent();
}
