/*
 * test_tier_seed.c - the syncer in the seed format (SEMCACHE_TIER_SEED):
 * segments sharing one real redis-server (redis_fixture.h) with the
 * reference design's Python side (seed_fixture.py, Debian's python3-redis).
 *
 * What the issue asks: entries a Python redis client writes in the
 * reference JSON reach a segment unasked (exact get and search), and what
 * a segment exports reads back in that schema; deletions and puts travel
 * between seed-mode segments; garbage is counted, never installed; entries
 * outside the seed namespace or with keys that are no seed id stay local.
 *
 * No timed assertions: conditions are awaited with a generous bound.
 */
#include <criterion/criterion.h>
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "../common.h"
#include "internal.h"
#include "redis_codec.h"
#include "redis_conn.h"
#include "redis_fixture.h"

#define WAIT_MS TR_WAIT_MS
#define DIM 4 /* seed_fixture.py's embeddings */
#define NS "seedns"
#define PFX "s:"

static tr_server srv;
static char pa[256], pb[256];
static semcache *A, *B;
static sc_redis_conn *rc_;

static semcache *open_seg(char *path, const char *tag)
{
	semcache *c = NULL;
	semcache_options o = test_options(4096, DIM);
	o.arena_bytes = 16u << 20;
	test_path(path, 256, tag);
	int rc = semcache_open(path, &o, &c);
	cr_assert_eq(rc, 0, "open: %s", semcache_strerror(rc));
	return c;
}

static void start_seed(semcache *c, uint32_t read_through_ms)
{
	semcache_tier_options o;
	semcache_tier_options_init(&o);
	o.port = srv.port;
	o.prefix = PFX;
	o.format = SEMCACHE_TIER_SEED;
	o.seed_namespace = NS;
	o.connect_timeout_ms = 300;
	o.command_timeout_ms = 300;
	o.backoff_base_ms = 20;
	o.backoff_cap_ms = 200;
	o.read_through_ms = read_through_ms;
	int rc = semcache_tier_start(c, &o);
	cr_assert_eq(rc, 0, "tier_start: %s", semcache_strerror(rc));
}

static void setup(void)
{
	tr_start(&srv, NULL, NULL);
	A = open_seg(pa, "seedA");
	B = open_seg(pb, "seedB");
	sc_redis_config cfg = { .host = "127.0.0.1", .port = srv.port, .connect_timeout_ms = 2000,
	                        .command_timeout_ms = 2000 };
	cr_assert_eq(sc_redis_connect(&cfg, &rc_), 0);
}

static void teardown(void)
{
	semcache_close(A);
	semcache_close(B);
	A = B = NULL;
	sc_redis_close(rc_);
	rc_ = NULL;
	unlink(pa);
	unlink(pb);
	tr_stop(&srv);
}

static semcache_tier_stats tstat(semcache *c)
{
	semcache_tier_stats st;
	cr_assert_eq(semcache_tier_stat(c, &st), 0);
	return st;
}

#define AWAIT TR_AWAIT


/* An integer reply of one command (EXISTS, SISMEMBER, SCARD). */
static long long redis_int(int argc, const char **argv)
{
	redisReply *r = NULL;
	cr_assert_eq(sc_redis_command(rc_, SC_RT_INTEGER, &r, argc, argv, NULL), 0, "%s",
	             sc_redis_last_error(rc_));
	long long v = r->integer;
	freeReplyObject(r);
	return v;
}

static void redis_ok(int argc, const char **argv)
{
	cr_assert_eq(sc_redis_command(rc_, SC_RT_STATUS | SC_RT_INTEGER, NULL, argc, argv, NULL), 0,
	             "%s", sc_redis_last_error(rc_));
}

static bool in_index(const char *key)
{
	const char *a[3] = { "SISMEMBER", PFX "llm_cache_index", key };
	return redis_int(3, a) == 1;
}

static long long keys_of(const char *key)
{
	char k1[512], k2[512];
	snprintf(k1, sizeof k1, PFX "llm_cache:%s", key);
	snprintf(k2, sizeof k2, PFX "llm_cache_emb:%s", key);
	const char *a[3] = { "EXISTS", k1, k2 };
	return redis_int(3, a);
}

static void want_emb(float *v)
{
	for (int d = 0; d < DIM; d++)
		v[d] = (float)(d + 1) / (DIM + 1);
}

/* Put "answer for <key>" under (ns, key) with seed_fixture.py's embedding. */
static int put_answer(semcache *c, const char *ns, const char *key, const char *scope)
{
	char content[320];
	float v[DIM];
	snprintf(content, sizeof content, "answer for %s", key);
	semcache_response r = simple_response(content);
	want_emb(v);
	semcache_put_args a = { .ns = ns, .key = key, .scope = scope, .response = &r,
	                        .embedding = v, .embedding_dim = DIM };
	return semcache_put(c, &a);
}

/* 1 found with "answer for <key>", 0 absent, -1 other content */
static int has_answer(semcache *c, const char *key)
{
	char content[320];
	semcache_response *out = NULL;
	snprintf(content, sizeof content, "answer for %s", key);
	if (semcache_get(c, NS, key, 0, &out) != 0)
		return 0;
	int ok = strcmp(out->content, content) == 0 ? 1 : -1;
	semcache_response_free(out);
	return ok;
}

static bool has_key(semcache *c, const char *key)
{
	semcache_response *out = NULL;
	if (semcache_get(c, NS, key, 0, &out) != 0)
		return false;
	semcache_response_free(out);
	return true;
}

/* ------------------------------------------------------------------------ */

Test(tier_seed, python_entries_are_imported_unasked, .init = setup, .fini = teardown,
     .timeout = 120)
{
	char port[16];
	snprintf(port, sizeof port, "%d", srv.port);
	const char *args[] = { "write", port, PFX, "600", NULL };
	cr_assert_eq(tr_run_python(args), 0, "seed_fixture.py write failed (python3-redis installed?)");

	start_seed(A, 0); /* no read-through: only the syncer may bring them */
	AWAIT(has_key(A, "seed-q1") && has_key(A, "seed-q2") && has_key(A, "user:7/q#3"),
	      "the Python entries in A");
	semcache_response *out = NULL;
	cr_assert_eq(semcache_get(A, NS, "seed-q2", 0, &out), 0);
	cr_assert_str_eq(out->content, "");
	cr_assert_str_eq(out->model, "gpt-4o");
	cr_assert_eq(out->n_tool_calls, 2);
	cr_assert_str_eq(out->tool_calls[0].arguments, "{\"city\":\"Paris\"}");
	semcache_response_free(out);

	/* by embedding too, in scope "" (the reference JSON has no scope) */
	float q[DIM] = { 0.1f, 0.2f, 0.3f, 0.4f };
	float sim = 0;
	cr_assert_eq(semcache_search(A, NS, "", q, DIM, 0.99f, &out, &sim), 0);
	cr_assert_str_eq(out->content, "Paris is the capital of France.");
	semcache_response_free(out);
	/* another scope never sees them */
	cr_assert_eq(semcache_search(A, NS, "gpt-4o", q, DIM, 0.99f, &out, &sim),
	             SEMCACHE_ENOTFOUND);

	semcache_tier_stats st = tstat(A);
	cr_assert_eq(st.imported, 3);
	cr_assert_eq(st.import_rejected, 0);
	cr_assert_eq(st.exported, 0, "imported entries are not exported back");
	char report[1024];
	cr_assert_eq(semcache_verify(A, report, sizeof report), 0, "%s", report);
}

Test(tier_seed, put_reads_back_in_the_reference_schema, .init = setup, .fini = teardown,
     .timeout = 120)
{
	static const char *const keys[] = { "c-q1", "tenant/key:3", "c-q3" };
	start_seed(A, 0);
	AWAIT(tstat(A).state == SEMCACHE_TIER_UP, "up");
	for (int i = 0; i < 3; i++)
		cr_assert_eq(put_answer(A, NS, keys[i], i ? "gpt-4o|tools:0" : ""), 0);
	AWAIT(tstat(A).exported == 3, "exported");

	char port[16];
	snprintf(port, sizeof port, "%d", srv.port);
	const char *args[] = { "check", port, PFX, "3", "4", NULL };
	cr_assert_eq(tr_run_python(args), 0, "Python could not read our export (see stderr)");

	/* the scope travels as the extra top-level field */
	redisReply *r = NULL;
	const char *g[2] = { "GET", PFX "llm_cache:tenant/key:3" };
	cr_assert_eq(sc_redis_command(rc_, SC_RT_STRING, &r, 2, g, NULL), 0);
	sc_rseed s;
	cr_assert_eq(sc_rseed_decode(r->str, r->len, 1u << 20, DIM, &s), 0);
	cr_assert_str_eq(s.scope, "gpt-4o|tools:0");
	sc_rseed_free(&s);
	freeReplyObject(r);
	/* the entry key expires (the longer TTL), the embedding key too */
	const char *t[2] = { "PTTL", PFX "llm_cache:c-q1" };
	cr_assert_gt(redis_int(2, t), 0);
}

Test(tier_seed, delete_on_a_removes_keys_index_and_entry_on_b, .init = setup, .fini = teardown,
     .timeout = 120)
{
	start_seed(A, 0);
	start_seed(B, 0);
	AWAIT(tstat(A).state == SEMCACHE_TIER_UP && tstat(B).state == SEMCACHE_TIER_UP, "up");
	cr_assert_eq(put_answer(A, NS, "gone-soon", "m"), 0);
	AWAIT(has_answer(B, "gone-soon") == 1, "entry on B");
	cr_assert(in_index("gone-soon"));
	cr_assert_eq(keys_of("gone-soon"), 2);

	cr_assert_eq(semcache_delete(A, NS, "gone-soon"), 0);
	AWAIT(has_answer(B, "gone-soon") == 0, "deleted on B");
	AWAIT(tstat(A).outbox_depth == 0, "A drained");
	cr_assert_eq(keys_of("gone-soon"), 0, "entry and embedding keys deleted");
	cr_assert(!in_index("gone-soon"), "index member removed");
	cr_assert_eq(tstat(A).deleted, 1);
	cr_assert_eq(tstat(B).import_deleted, 1);
	/* and the scan does not bring it back */
	tr_sleep_ms(2500);
	cr_assert_eq(has_answer(B, "gone-soon"), 0);
	cr_assert_eq(has_answer(A, "gone-soon"), 0);
}

Test(tier_seed, two_segments_exchange_puts, .init = setup, .fini = teardown, .timeout = 120)
{
	start_seed(A, 0);
	start_seed(B, 0);
	AWAIT(tstat(A).state == SEMCACHE_TIER_UP && tstat(B).state == SEMCACHE_TIER_UP, "up");
	for (int i = 0; i < 20; i++) {
		char k[32];
		snprintf(k, sizeof k, "from-%c-%d", i % 2 ? 'b' : 'a', i);
		cr_assert_eq(put_answer(i % 2 ? B : A, NS, k, "m"), 0);
	}
	for (int i = 0; i < 20; i++) {
		char k[32];
		snprintf(k, sizeof k, "from-%c-%d", i % 2 ? 'b' : 'a', i);
		AWAIT(has_answer(i % 2 ? A : B, k) == 1, k);
	}
	/* a search on B finds A's entry in its scope */
	float q[DIM];
	want_emb(q);
	semcache_response *out = NULL;
	float sim = 0;
	cr_assert_eq(semcache_search(B, NS, "m", q, DIM, 0.99f, &out, &sim), 0);
	semcache_response_free(out);
	AWAIT(tstat(A).outbox_depth == 0 && tstat(B).outbox_depth == 0, "drained");
	cr_assert_eq(tstat(A).exported, 10);
	cr_assert_eq(tstat(B).exported, 10);
	cr_assert_eq(tstat(A).import_rejected, 0);
	cr_assert_eq(tstat(B).import_rejected, 0);
	const char *sc[2] = { "SCARD", PFX "llm_cache_index" };
	cr_assert_eq(redis_int(2, sc), 20);
}

Test(tier_seed, garbage_is_rejected_once_and_nothing_crashes, .init = setup, .fini = teardown,
     .timeout = 120)
{
	static const char *const bad[][2] = {
		{ "bad-json", "{not json" },
		{ "bad-type", "{\"response\": 1, \"query_embedding\": [], \"created_at\": 1.0}" },
		{ "bad-scope", "{\"response\": {\"content\": \"x\", \"model\": \"m\"}, "
		               "\"query_embedding\": [], \"created_at\": 1.0, \"scope\": 7}" },
	};
	for (int i = 0; i < 3; i++) {
		char k[64];
		snprintf(k, sizeof k, PFX "llm_cache:%s", bad[i][0]);
		const char *set[5] = { "SET", k, bad[i][1], "EX", "600" };
		redis_ok(5, set);
		const char *sadd[3] = { "SADD", PFX "llm_cache_index", bad[i][0] };
		redis_ok(3, sadd);
	}
	/* a member that is no seed id */
	const char *sadd[3] = { "SADD", PFX "llm_cache_index", "has space" };
	redis_ok(3, sadd);
	/* a good entry whose embedding key holds a list (WRONGTYPE) */
	semcache_response r = simple_response("answer for c-q1");
	float v[DIM];
	want_emb(v);
	sc_buf val = { 0 };
	cr_assert_eq(sc_rseed_encode(&r, NULL, v, DIM, (int64_t)time(NULL) * 1000, 0, 1u << 20, &val),
	             0);
	const char *set[5] = { "SET", PFX "llm_cache:c-q1", val.data, "EX", "600" };
	redis_ok(5, set);
	free(val.data);
	const char *lp[3] = { "LPUSH", PFX "llm_cache_emb:c-q1", "x" };
	redis_ok(3, lp);
	const char *sadd2[3] = { "SADD", PFX "llm_cache_index", "c-q1" };
	redis_ok(3, sadd2);

	start_seed(A, 0);
	AWAIT(tstat(A).import_rejected >= 5, "rejections counted");
	/* one more full pass: the same ids are not fetched again */
	tr_sleep_ms(2500);
	semcache_tier_stats st = tstat(A);
	cr_assert_eq(st.import_rejected, 5, "rejected %llu", (unsigned long long)st.import_rejected);
	cr_assert_eq(st.imported, 0);
	cr_assert(!has_key(A, "bad-json") && !has_key(A, "bad-type") && !has_key(A, "bad-scope") &&
	          !has_key(A, "c-q1"));
	/* the segment serves and exports */
	cr_assert_eq(put_answer(A, NS, "after", "m"), 0);
	AWAIT(in_index("after"), "export goes on");
	char report[1024];
	cr_assert_eq(semcache_verify(A, report, sizeof report), 0, "%s", report);
}

Test(tier_seed, other_namespace_and_non_seed_keys_stay_local, .init = setup, .fini = teardown,
     .timeout = 120)
{
	start_seed(A, 0);
	AWAIT(tstat(A).state == SEMCACHE_TIER_UP, "up");
	cr_assert_eq(put_answer(A, "other", "k1", "m"), 0);
	cr_assert_eq(put_answer(A, NS, "has space", "m"), 0);
	cr_assert_eq(put_answer(A, NS, "shared", "m"), 0);
	AWAIT(tstat(A).exported == 1 && tstat(A).seed_skipped == 2, "one exported, two skipped");
	cr_assert(in_index("shared"));
	const char *sc[2] = { "SCARD", PFX "llm_cache_index" };
	cr_assert_eq(redis_int(2, sc), 1);
	/* their deletions stay local too */
	cr_assert_eq(semcache_delete(A, "other", "k1"), 0);
	cr_assert_eq(semcache_delete(A, NS, "has space"), 0);
	AWAIT(tstat(A).seed_skipped == 4, "two deletions skipped");
	cr_assert_eq(tstat(A).deleted, 0);
	cr_assert(in_index("shared"));
	/* a sweep does not find them DIRTY again */
	cr_assert_eq(tstat(A).swept, 0);
}

Test(tier_seed, read_through_finds_a_key_no_index_names, .init = setup, .fini = teardown,
     .timeout = 120)
{
	/* written with no index member and no event: only read-through can
	 * find it */
	semcache_response r = simple_response("answer for hidden");
	float v[DIM];
	want_emb(v);
	sc_buf val = { 0 };
	cr_assert_eq(sc_rseed_encode(&r, NULL, v, DIM, (int64_t)time(NULL) * 1000, 0, 1u << 20, &val),
	             0);
	const char *set[5] = { "SET", PFX "llm_cache:hidden", val.data, "EX", "600" };
	redis_ok(5, set);
	free(val.data);

	start_seed(A, 500);
	AWAIT(tstat(A).state == SEMCACHE_TIER_UP, "up");
	AWAIT(has_answer(A, "hidden") == 1, "read-through");
	cr_assert_geq(tstat(A).read_through, 1);
	/* another namespace's miss does not ask Redis by that key */
	semcache_response *out = NULL;
	cr_assert_eq(semcache_get(A, "other", "hidden", 0, &out), SEMCACHE_ENOTFOUND);
}
