/*
 * test_search.c - semantic lookup: thresholds, scope isolation (also under
 * concurrent writers), semantic TTL, top-k, rejected inputs, two-stage scan.
 * meson runs this suite once per kernel (SEMCACHE_KERNEL=scalar|avx2|avx512).
 */
#include <criterion/criterion.h>
#include <errno.h>
#include <math.h>
#include <signal.h>
#include <sys/wait.h>

#include "../common.h"

#define DIM 64

static char path[256];
static semcache *c;
static test_clock clk;

static void open_flags(uint32_t flags)
{
	test_path(path, sizeof path, "search");
	atomic_store(&clk.now, 1700000000000LL);
	semcache_options o = test_options(1024, DIM);
	o.flags = flags;
	o.clock_ms = test_clock_read;
	o.clock_arg = &clk;
	cr_assert_eq(semcache_open(path, &o, &c), 0);
}

static void setup(void) { open_flags(0); }

static void teardown(void)
{
	semcache_close(c);
	unlink(path);
}

static void vec(float *e, uint64_t seed)
{
	uint64_t s = seed * 0x9e3779b97f4a7c15ull + 12345;
	for (int i = 0; i < DIM; i++) {
		s ^= s << 13;
		s ^= s >> 7;
		s ^= s << 17;
		e[i] = (float)((s >> 11) * (1.0 / 9007199254740992.0)) - 0.5f;
	}
}

static int put_emb(const char *ns, const char *key, const char *scope, const float *e,
                   const char *content)
{
	semcache_response r = simple_response(content);
	semcache_put_args a = { .ns = ns, .key = key, .scope = scope, .response = &r,
	                        .embedding = e, .embedding_dim = DIM };
	return semcache_put(c, &a);
}

static int search(const char *ns, const char *scope, const float *q, float thr, char *content,
                  float *sim)
{
	semcache_response *out = NULL;
	int rc = semcache_search(c, ns, scope, q, DIM, thr, &out, sim);
	if (rc == 0) {
		snprintf(content, 256, "%s", out->content);
		semcache_response_free(out);
	}
	return rc;
}

TestSuite(search, .init = setup, .fini = teardown);

Test(search, identical_embedding_is_found_with_similarity_one)
{
	float e[DIM], sim = 0;
	char got[256];
	vec(e, 1);
	cr_assert_eq(put_emb("ns", "k1", "m", e, "one"), 0);
	for (int i = 0; i < DIM; i++)
		e[i] *= 3.5f; /* any norm */
	cr_assert_eq(search("ns", "m", e, 0.99f, got, &sim), 0);
	cr_assert_str_eq(got, "one");
	cr_assert_float_eq(sim, 1.0f, 1e-4);
}

Test(search, best_of_many_is_returned_and_threshold_respected)
{
	float e[DIM], q[DIM], sim;
	char key[16], got[256];
	for (int i = 0; i < 200; i++) {
		vec(e, (uint64_t)i + 100);
		snprintf(key, sizeof key, "k%d", i);
		cr_assert_eq(put_emb("ns", key, "m", e, key), 0);
	}
	vec(q, 137);
	for (int i = 0; i < DIM; i += 7)
		q[i] += 0.05f; /* a paraphrase of k37 */
	cr_assert_eq(search("ns", "m", q, 0.9f, got, &sim), 0);
	cr_assert_str_eq(got, "k37");
	cr_assert_lt(sim, 1.0f);
	cr_assert_eq(search("ns", "m", q, sim + 0.001f, got, NULL), SEMCACHE_ENOTFOUND);
}

Test(search, threshold_zero_is_a_real_threshold)
{
	float e[DIM], q[DIM];
	char got[256];
	vec(e, 5);
	cr_assert_eq(put_emb("ns", "k", "m", e, "v"), 0);
	for (int i = 0; i < DIM; i++)
		q[i] = -e[i]; /* cosine -1 */
	cr_assert_eq(search("ns", "m", q, 0.0f, got, NULL), SEMCACHE_ENOTFOUND);
	cr_assert_eq(search("ns", "m", q, -1.0f, got, NULL), 0);
}

Test(search, bad_queries_are_rejected)
{
	float q[DIM];
	semcache_response *out;
	vec(q, 1);
	cr_assert_eq(semcache_search(c, "ns", "m", q, DIM, 1.5f, &out, NULL), -EINVAL);
	cr_assert_eq(semcache_search(c, "ns", "m", q, DIM, -1.01f, &out, NULL), -EINVAL);
	cr_assert_eq(semcache_search(c, "ns", "m", q, DIM, INFINITY, &out, NULL), -EINVAL);
	cr_assert_eq(semcache_search(c, "ns", "m", q, DIM, -INFINITY, &out, NULL), -EINVAL);
	cr_assert_eq(semcache_search(c, "ns", "m", q, DIM, 0.5f, NULL, NULL), -EINVAL);
	cr_assert_eq(semcache_search_ex(c, "ns", "m", q, DIM, 0.5f, NULL), -EINVAL);
	cr_assert_eq(semcache_search_ex(NULL, "ns", "m", q, DIM, 0.5f, &(semcache_match){0}),
	             -EINVAL);
	cr_assert_eq(semcache_search(c, "ns", "m", q, DIM - 1, 0.5f, &out, NULL), SEMCACHE_EDIM);
	q[3] = NAN;
	cr_assert_eq(semcache_search(c, "ns", "m", q, DIM, 0.5f, &out, NULL), SEMCACHE_EEMBEDDING);
	memset(q, 0, sizeof q);
	cr_assert_eq(semcache_search(c, "ns", "m", q, DIM, 0.5f, &out, NULL), SEMCACHE_EEMBEDDING);
	cr_assert_eq(semcache_search(c, NULL, "m", q, DIM, 0.5f, &out, NULL), -EINVAL);
	semcache_match m[2];
	size_t n;
	vec(q, 1);
	cr_assert_eq(semcache_search_topk(c, "ns", "m", q, DIM, 0.5f, m, 0, &n), -EINVAL);
	cr_assert_eq(semcache_search_topk(c, "ns", "m", q, DIM, 0.5f, m, 65, &n), -EINVAL);
}

/* A unit vector at angle acos(cosine) from axis 0, in the plane of axes 0
 * and 1: its similarity to axis 0 is exactly `cosine` (up to float). */
static void at_cosine(float *q, float cosine)
{
	memset(q, 0, DIM * sizeof *q);
	q[0] = cosine;
	q[1] = sqrtf(1.0f - cosine * cosine);
}

Test(search, nan_threshold_uses_the_segments_default)
{
	float e[DIM], q[DIM], sim = 0;
	char got[256];
	semcache_stats st;
	cr_assert_eq(semcache_stat(c, &st), 0);
	cr_assert_float_eq(st.threshold, 0.92f, 1e-6); /* options_init's default */
	at_cosine(e, 1.0f);
	cr_assert_eq(put_emb("ns", "k", "m", e, "axis"), 0);

	at_cosine(q, 0.95f); /* above the default */
	cr_assert_eq(search("ns", "m", q, NAN, got, &sim), 0);
	cr_assert_str_eq(got, "axis");
	cr_assert_float_eq(sim, 0.95f, 1e-4);

	at_cosine(q, 0.90f); /* below it: a miss with NAN, a hit when asked for less */
	cr_assert_eq(search("ns", "m", q, NAN, got, NULL), SEMCACHE_ENOTFOUND);
	cr_assert_eq(search("ns", "m", q, 0.85f, got, NULL), 0);
	semcache_match m[1];
	size_t n = 9;
	cr_assert_eq(semcache_search_topk(c, "ns", "m", q, DIM, NAN, m, 1, &n), 0);
	cr_assert_eq(n, 0);
}

Test(search, nan_threshold_follows_a_non_default_segment_threshold)
{
	semcache_close(c);
	unlink(path);
	test_path(path, sizeof path, "search");
	semcache_options o = test_options(64, DIM);
	o.threshold = 0.5f;
	cr_assert_eq(semcache_open(path, &o, &c), 0);
	float e[DIM], q[DIM];
	char got[256];
	at_cosine(e, 1.0f);
	cr_assert_eq(put_emb("ns", "k", "m", e, "axis"), 0);
	at_cosine(q, 0.6f);
	cr_assert_eq(search("ns", "m", q, NAN, got, NULL), 0);
	at_cosine(q, 0.4f);
	cr_assert_eq(search("ns", "m", q, NAN, got, NULL), SEMCACHE_ENOTFOUND);
}

static int find_slot(const semcache_entry_info *e, void *arg)
{
	*(uint32_t *)arg = e->slot;
	return 1;
}

Test(search, search_ex_says_what_matched)
{
	float e[DIM], q[DIM];
	int64_t t0 = atomic_load(&clk.now);
	semcache_response r = simple_response("the answer");
	at_cosine(e, 1.0f);
	semcache_put_args a = { .ns = "tenant-7", .key = "user1:what is x", .scope = "gpt-4o|t0",
	                        .response = &r, .embedding = e, .embedding_dim = DIM,
	                        .exact_ttl_ms = 1000, .semantic_ttl_ms = 5000 };
	cr_assert_eq(semcache_put(c, &a), 0);
	uint32_t slot = UINT32_MAX;
	cr_assert_eq(semcache_foreach(c, "tenant-7", NULL, find_slot, &slot), 1);

	atomic_store(&clk.now, t0 + 2000); /* exact TTL over, semantic not */
	at_cosine(q, 0.97f);
	semcache_match m;
	cr_assert_eq(semcache_search_ex(c, "tenant-7", "gpt-4o|t0", q, DIM, 0.9f, &m), 0);
	cr_assert_str_eq(m.response->content, "the answer");
	cr_assert_str_eq(m.ns, "tenant-7");
	cr_assert_str_eq(m.key, "user1:what is x");
	cr_assert_str_eq(m.scope, "gpt-4o|t0");
	cr_assert_float_eq(m.similarity, 0.97f, 1e-4);
	cr_assert_eq(m.slot, slot);
	cr_assert_eq(m.created_ms, t0);
	cr_assert_eq(m.exact_expiry_ms, t0 + 1000);
	cr_assert_eq(m.semantic_expiry_ms, t0 + 5000);
	for (int i = 0; i < 4; i++)
		cr_assert_eq(m.reserved_[i], 0);
	/* The strings live in the response's allocation: one free releases all
	 * (the ASan run reports a leak or a double free otherwise). */
	cr_assert(m.ns > (const char *)m.response && m.key > (const char *)m.response);
	semcache_response_free(m.response);

	cr_assert_eq(semcache_search_ex(c, "tenant-7", "other", q, DIM, 0.9f, &m),
	             SEMCACHE_ENOTFOUND);
	cr_assert_null(m.response);
	cr_assert_null(m.key);
}

Test(search, topk_matches_each_name_their_entry)
{
	float e[DIM], q[DIM];
	at_cosine(e, 1.0f);
	cr_assert_eq(put_emb("ns", "near", "m", e, "near answer"), 0);
	at_cosine(e, 0.8f);
	cr_assert_eq(put_emb("ns", "far", "m", e, "far answer"), 0);
	at_cosine(e, 0.99f);
	cr_assert_eq(put_emb("other-ns", "near", "m", e, "not ours"), 0);
	at_cosine(q, 1.0f);
	semcache_match m[4];
	size_t n = 0;
	cr_assert_eq(semcache_search_topk(c, "ns", "m", q, DIM, 0.5f, m, 4, &n), 0);
	cr_assert_eq(n, 2);
	cr_assert_str_eq(m[0].key, "near");
	cr_assert_str_eq(m[0].response->content, "near answer");
	cr_assert_str_eq(m[1].key, "far");
	cr_assert_str_eq(m[1].response->content, "far answer");
	for (size_t i = 0; i < n; i++) {
		cr_assert_str_eq(m[i].ns, "ns");
		cr_assert_str_eq(m[i].scope, "m");
		cr_assert_neq(m[0].slot, m[1].slot);
		semcache_response_free(m[i].response);
	}
}

Test(search, other_namespace_or_model_never_answers)
{
	float e[DIM];
	char got[256];
	vec(e, 9);
	cr_assert_eq(put_emb("alice", "k", "model-a", e, "alice's"), 0);
	cr_assert_eq(put_emb("bob", "k2", "model-b", e, "bob's model-b"), 0);
	cr_assert_eq(search("bob", "model-a", e, -1.0f, got, NULL), SEMCACHE_ENOTFOUND);
	cr_assert_eq(search("alice", "model-b", e, -1.0f, got, NULL), SEMCACHE_ENOTFOUND);
	cr_assert_eq(search("carol", "model-a", e, -1.0f, got, NULL), SEMCACHE_ENOTFOUND);
	cr_assert_eq(search("alice", "model-a", e, 0.99f, got, NULL), 0);
	cr_assert_str_eq(got, "alice's");
	cr_assert_eq(search("bob", "model-b", e, 0.99f, got, NULL), 0);
	cr_assert_str_eq(got, "bob's model-b");
}

Test(search, semantic_ttl_is_separate_from_exact_ttl)
{
	float e[DIM];
	char got[256];
	vec(e, 3);
	semcache_response r = simple_response("v");
	semcache_put_args a = { .ns = "ns", .key = "k", .scope = "m", .response = &r, .embedding = e,
	                        .embedding_dim = DIM, .exact_ttl_ms = 1000, .semantic_ttl_ms = 5000 };
	cr_assert_eq(semcache_put(c, &a), 0);
	atomic_fetch_add(&clk.now, 2000);
	semcache_response *out;
	cr_assert_eq(semcache_get(c, "ns", "k", 0, &out), SEMCACHE_ENOTFOUND);
	cr_assert_eq(search("ns", "m", e, 0.9f, got, NULL), 0, "semantic TTL cut short");
	atomic_fetch_add(&clk.now, 3000);
	cr_assert_eq(search("ns", "m", e, 0.9f, got, NULL), SEMCACHE_ENOTFOUND);
}

Test(search, replace_without_embedding_keeps_the_old_one)
{
	float e[DIM];
	char got[256];
	vec(e, 4);
	cr_assert_eq(put_emb("ns", "k", "m", e, "first"), 0);
	cr_assert_eq(put_simple(c, "ns", "k", "second"), 0); /* no embedding, scope "" */
	semcache_response r = simple_response("third");
	semcache_put_args a = { .ns = "ns", .key = "k", .scope = "m", .response = &r };
	cr_assert_eq(semcache_put(c, &a), 0);
	cr_assert_eq(search("ns", "m", e, 0.99f, got, NULL), 0, "embedding lost on replace");
	cr_assert_str_eq(got, "third");
}

Test(search, topk_returns_best_first)
{
	float e[DIM], q[DIM];
	char key[16];
	vec(q, 777);
	for (int i = 0; i < 10; i++) {
		for (int j = 0; j < DIM; j++)
			e[j] = q[j] + (float)i * 0.03f * (float)((j % 3) - 1);
		snprintf(key, sizeof key, "k%d", i);
		cr_assert_eq(put_emb("ns", key, "m", e, key), 0);
	}
	semcache_match m[5];
	size_t n = 0;
	cr_assert_eq(semcache_search_topk(c, "ns", "m", q, DIM, 0.0f, m, 5, &n), 0);
	cr_assert_eq(n, 5);
	for (size_t i = 0; i < n; i++) {
		char expect[32];
		snprintf(expect, sizeof expect, "k%zu", i);
		cr_assert_str_eq(m[i].response->content, expect);
		if (i)
			cr_assert_geq(m[i - 1].similarity, m[i].similarity);
		semcache_response_free(m[i].response);
	}
}

Test(search, stats_count_semantic_hits_and_best_miss)
{
	float e[DIM], q[DIM];
	char got[256];
	vec(e, 11);
	cr_assert_eq(put_emb("ns", "k", "m", e, "v"), 0);
	cr_assert_eq(search("ns", "m", e, 0.9f, got, NULL), 0);
	vec(q, 12);
	float sim = 0;
	cr_assert_eq(search("ns", "m", q, 0.99f, got, &sim), SEMCACHE_ENOTFOUND);
	semcache_stats st;
	cr_assert_eq(semcache_stat(c, &st), 0);
	cr_assert_eq(st.total.sem_hits, 1);
	cr_assert_eq(st.total.sem_misses, 1);
	cr_assert_gt(st.total.sem_miss_best, -1.0f);
	cr_assert_lt(st.total.sem_miss_best, 0.99f);
}

Test(search, exact_only_segment_refuses_semantic_calls)
{
	teardown();
	test_path(path, sizeof path, "search0");
	semcache_options o = test_options(64, 0);
	cr_assert_eq(semcache_open(path, &o, &c), 0);
	float q[DIM];
	vec(q, 1);
	semcache_response *out;
	cr_assert_eq(semcache_search(c, "ns", "m", q, DIM, 0.5f, &out, NULL), SEMCACHE_ENOSEMANTIC);
	cr_assert_eq(put_emb("ns", "k", "m", q, "v"), SEMCACHE_ENOSEMANTIC);
}

static void two_stage_finds_best(uint32_t flag)
{
	teardown();
	open_flags(flag);
	float e[DIM], q[DIM];
	char key[16], got[256];
	for (int i = 0; i < 500; i++) {
		vec(e, (uint64_t)i + 1000);
		snprintf(key, sizeof key, "k%d", i);
		cr_assert_eq(put_emb("ns", key, "m", e, key), 0);
	}
	for (int t = 0; t < 50; t++) {
		vec(q, (uint64_t)t * 7 + 1000);
		for (int i = 0; i < DIM; i += 5)
			q[i] += 0.03f;
		float sim;
		cr_assert_eq(search("ns", "m", q, 0.5f, got, &sim), 0);
		snprintf(key, sizeof key, "k%d", t * 7);
		cr_assert_str_eq(got, key);
	}
}

Test(search, two_stage_int8_finds_the_best_row) { two_stage_finds_best(SEMCACHE_QUANT_INT8); }
Test(search, two_stage_bits_finds_the_best_row) { two_stage_finds_best(SEMCACHE_QUANT_BITS); }

/* Writers keep storing byte-identical embeddings under other namespaces and
 * scopes while this process searches: it must only ever see its own. */
Test(search, isolation_holds_under_concurrent_writers, .timeout = 120)
{
	float e[DIM];
	vec(e, 42);
	cr_assert_eq(put_emb("mine", "k", "m", e, "mine#ok"), 0);
	pid_t kids[2];
	for (int p = 0; p < 2; p++) {
		kids[p] = fork();
		if (kids[p] == 0) {
			char key[32];
			for (int i = 0;; i++) {
				snprintf(key, sizeof key, "k%d", i % 500);
				put_emb(p ? "theirs" : "mine", key, p ? "m" : "other-model", e, "FOREIGN");
			}
		}
	}
	int hits = 0;
	for (int i = 0; i < 20000; i++) {
		semcache_match m[8];
		size_t n = 0;
		cr_assert_eq(semcache_search_topk(c, "mine", "m", e, DIM, 0.5f, m, 8, &n), 0);
		for (size_t j = 0; j < n; j++) {
			cr_assert_str_eq(m[j].response->content, "mine#ok", "foreign row returned");
			semcache_response_free(m[j].response);
		}
		hits += n > 0;
	}
	for (int p = 0; p < 2; p++) {
		kill(kids[p], SIGKILL);
		waitpid(kids[p], NULL, 0);
	}
	cr_assert_gt(hits, 0);
}
