/*
 * test_evict.c - the eviction policy (core/evict.c): exact second-chance
 * CLOCK when slots run out, when the arena runs out (several victims for
 * one put), and when an index bucket overflows.
 *
 * The scenario the policy is judged by: fill the cache to capacity, hit
 * exactly half of the keys, insert half a capacity of new keys.  Textbook
 * CLOCK (like LRU) then keeps every hit key and every new key and none of
 * the others.  Keys are chosen with the segment's own bucket hash so that
 * no index bucket ever holds more than SC_WAYS of them: every eviction in
 * those tests is then the hand's decision.  The bucket tests overflow one
 * bucket on purpose instead.
 */
#include <criterion/criterion.h>

#include "../common.h"
#include "internal.h"

typedef char key_t32[32];

static char path[256];
static semcache *c;
static test_clock clk;
static uint8_t *bucket_load; /* keys handed out per index bucket */

static void open_with(semcache_options o)
{
	test_path(path, sizeof path, "evict");
	atomic_store(&clk.now, 1700000000000LL);
	o.clock_ms = test_clock_read;
	o.clock_arg = &clk;
	int rc = semcache_open(path, &o, &c);
	cr_assert_eq(rc, 0, "open: %s", semcache_strerror(rc));
	free(bucket_load);
	bucket_load = calloc(c->buckets, 1);
	cr_assert_not_null(bucket_load);
}

static void teardown(void)
{
	semcache_close(c);
	c = NULL;
	unlink(path);
	free(bucket_load);
	bucket_load = NULL;
}

TestSuite(evict, .fini = teardown);

static uint32_t bucket_of(const char *key)
{
	uint8_t d[32];
	sc_hkey hk;
	cr_assert_eq(sc_key_digest("ns", key, d), 0);
	sc_hkey_make(c, d, &hk);
	return sc_index_bucket(c, hk.h);
}

/* n keys "<prefix><i>", skipping any whose bucket already holds SC_WAYS of
 * the keys this test handed out. */
static key_t32 *make_keys(const char *prefix, uint32_t n)
{
	key_t32 *k = calloc(n, sizeof *k);
	cr_assert_not_null(k);
	for (uint32_t i = 0, j = 0; i < n; j++) {
		snprintf(k[i], sizeof k[i], "%s%u", prefix, j);
		uint32_t b = bucket_of(k[i]);
		if (bucket_load[b] < SC_WAYS) {
			bucket_load[b]++;
			i++;
		}
	}
	return k;
}

/* Keys of one chosen bucket, for overflowing it. */
static void keys_in_bucket(uint32_t bucket, const char *prefix, key_t32 *k, uint32_t n)
{
	for (uint32_t i = 0, j = 0; i < n; j++) {
		snprintf(k[i], sizeof k[i], "%s%u", prefix, j);
		if (bucket_of(k[i]) == bucket)
			i++;
	}
}

static const char *body_of(const char *key, size_t len)
{
	static char body[8192];
	cr_assert_lt(len, sizeof body);
	memset(body, 'a' + (int)(strlen(key) % 26), len);
	body[len] = 0;
	return body;
}

/* A lean record: content and a one-letter model. */
static semcache_response lean(const char *key, size_t content_len)
{
	semcache_response r;
	memset(&r, 0, sizeof r);
	r.content = body_of(key, content_len);
	r.model = "m";
	return r;
}

static void put_sized(const char *key, size_t content_len)
{
	semcache_response r = lean(key, content_len);
	semcache_put_args a = { .ns = "ns", .key = key, .response = &r };
	int rc = semcache_put(c, &a);
	cr_assert_eq(rc, 0, "put %s: %s", key, semcache_strerror(rc));
}

static size_t encoded_len(const char *key, size_t content_len)
{
	semcache_response r = lean(key, content_len);
	sc_buf b = { 0 };
	cr_assert_eq(sc_codec_encode("ns", key, NULL, &r, SIZE_MAX, &b), 0);
	free(b.data);
	return b.len;
}

/* Block size of the arena tests: a record's framing (field names, model)
 * fits in one. */
#define ABLOCK 128u

/* Put a record of exactly `blocks` arena blocks of ABLOCK bytes: the content
 * is sized from the codec's own framing. */
static void put_blocks(const char *key, uint32_t blocks)
{
	size_t target = (size_t)blocks * ABLOCK, frame = encoded_len(key, 0);
	cr_assert_lt(frame, target, "record framing exceeds %u blocks", blocks);
	size_t len = target - frame;
	while (len > 0 && encoded_len(key, len) > target)
		len--;
	size_t enc = encoded_len(key, len);
	cr_assert(enc > target - ABLOCK && enc <= target, "%s: %zu bytes for %u blocks", key, enc, blocks);
	put_sized(key, len);
}

static bool present(const char *key)
{
	semcache_response *out = NULL;
	int rc = semcache_get(c, "ns", key, 0, &out);
	cr_assert(rc == 0 || rc == SEMCACHE_ENOTFOUND, "get %s: %s", key, semcache_strerror(rc));
	semcache_response_free(out);
	return rc == 0;
}

/* Without counting as a hit: the survival checks must not set references. */
static bool resident(const char *key)
{
	uint8_t d[32];
	sc_hkey hk;
	cr_assert_eq(sc_key_digest("ns", key, d), 0);
	sc_hkey_make(c, d, &hk);
	cr_assert_eq(sc_wlock(c), 0);
	uint32_t s = sc_index_find_w(c, &hk);
	sc_wunlock(c);
	return s != SC_NIL;
}

static semcache_stats stats(void)
{
	semcache_stats st;
	cr_assert_eq(semcache_stat(c, &st), 0);
	return st;
}

static void assert_consistent(void)
{
	char report[2048];
	int rc = semcache_verify(c, report, sizeof report);
	cr_assert_eq(rc, 0, "verify: %s", report);
}

/* A random half of n, exactly n/2 of them (Fisher-Yates on indices). */
static bool *random_half(uint32_t n, uint64_t seed)
{
	uint32_t *perm = malloc(n * sizeof *perm);
	bool *half = calloc(n, sizeof *half);
	cr_assert(perm && half);
	for (uint32_t i = 0; i < n; i++)
		perm[i] = i;
	uint64_t s = seed * UINT64_C(0x9e3779b97f4a7c15) | 1;
	for (uint32_t i = n - 1; i > 0; i--) {
		uint32_t j = (uint32_t)(test_rng(&s) % (i + 1)), t = perm[i];
		perm[i] = perm[j];
		perm[j] = t;
	}
	for (uint32_t i = 0; i < n / 2; i++)
		half[perm[i]] = true;
	free(perm);
	return half;
}

struct survival {
	uint32_t hit_kept, hit_total, unhit_kept, unhit_total, new_kept, new_total;
};

static struct survival survey(key_t32 *old, const bool *hit, uint32_t n_old, key_t32 *fresh,
                              uint32_t n_new)
{
	struct survival sv = { 0 };
	for (uint32_t i = 0; i < n_old; i++) {
		bool r = resident(old[i]);
		if (hit[i]) {
			sv.hit_total++;
			sv.hit_kept += r;
		} else {
			sv.unhit_total++;
			sv.unhit_kept += r;
		}
	}
	for (uint32_t i = 0; i < n_new; i++) {
		sv.new_total++;
		sv.new_kept += resident(fresh[i]);
	}
	return sv;
}

/* ---------------------------------------------------------------- slots */

static void slot_limited_scenario(uint32_t n, uint64_t seed)
{
	/* Arena for four times the entries: only the slot count limits. */
	semcache_options o = test_options(n, 0);
	o.arena_bytes = (uint64_t)n * 1024;
	open_with(o);
	key_t32 *old = make_keys("old", n), *fresh = make_keys("new", n / 2);
	for (uint32_t i = 0; i < n; i++)
		put_sized(old[i], 16);
	cr_assert_eq(stats().entries, n);
	cr_assert_eq(stats().total.evictions, 0);

	bool *hit = random_half(n, seed);
	for (uint32_t i = 0; i < n; i++)
		if (hit[i])
			cr_assert(present(old[i]), "%s missing before the inserts", old[i]);
	for (uint32_t i = 0; i < n / 2; i++)
		put_sized(fresh[i], 16);

	struct survival sv = survey(old, hit, n, fresh, n / 2);
	cr_assert_eq(sv.hit_kept, sv.hit_total, "n=%u seed=%llu: %u of %u hit keys kept", n,
	             (unsigned long long)seed, sv.hit_kept, sv.hit_total);
	cr_assert_eq(sv.unhit_kept, 0, "n=%u seed=%llu: %u of %u keys never hit kept", n,
	             (unsigned long long)seed, sv.unhit_kept, sv.unhit_total);
	cr_assert_eq(sv.new_kept, sv.new_total, "n=%u seed=%llu: %u of %u new keys kept", n,
	             (unsigned long long)seed, sv.new_kept, sv.new_total);
	cr_assert_eq(stats().total.evictions, n / 2);
	assert_consistent();
	free(hit);
	free(old);
	free(fresh);
	teardown();
}

Test(evict, full_slots_keep_every_hit_key_and_every_new_key_and_no_other)
{
	const uint32_t sizes[] = { 1024, 256, 1000 };
	for (size_t z = 0; z < sizeof sizes / sizeof sizes[0]; z++)
		for (uint64_t seed = 1; seed <= 6; seed++)
			slot_limited_scenario(sizes[z], seed);
}

Test(evict, without_hits_entries_leave_in_insertion_order)
{
	/* A new entry sits right behind the hand: it outlives every entry
	 * older than it, and goes only after `slots` newer ones came in. */
	const uint32_t n = 512;
	semcache_options o = test_options(n, 0);
	o.arena_bytes = (uint64_t)n * 1024;
	open_with(o);
	key_t32 *k = make_keys("k", 3 * n);
	for (uint32_t i = 0; i < 3 * n; i++) {
		put_sized(k[i], 16);
		if (i >= n) {
			cr_assert(!resident(k[i - n]), "%s outlived %u newer entries", k[i - n], n);
			cr_assert(resident(k[i - n + 1]), "%s gone after %u newer entries", k[i - n + 1],
			          n - 1);
		}
	}
	free(k);
}

Test(evict, a_hit_buys_exactly_one_lap_of_the_hand)
{
	/* old0 sits at the hand and is hit once: the hand clears its reference
	 * and evicts the n - 1 others first; with no new hit, old0 is the
	 * victim of the n-th insert, where an entry never hit is the first. */
	const uint32_t n = 256;
	semcache_options o = test_options(n, 0);
	o.arena_bytes = (uint64_t)n * 1024;
	open_with(o);
	key_t32 *old = make_keys("old", n), *fresh = make_keys("new", n);
	for (uint32_t i = 0; i < n; i++)
		put_sized(old[i], 16);
	cr_assert(present(old[0]));
	for (uint32_t i = 0; i < n - 1; i++) {
		put_sized(fresh[i], 16);
		cr_assert(resident(old[0]), "hit key gone after %u inserts", i + 1);
		cr_assert(!resident(old[i + 1]), "%s, never hit, outlived the hit key", old[i + 1]);
	}
	put_sized(fresh[n - 1], 16);
	cr_assert(!resident(old[0]), "hit key outlived a second lap with no new hit");
	free(old);
	free(fresh);
}

Test(evict, dead_entries_go_first_even_when_referenced)
{
	open_with(test_options(16, 0));
	key_t32 *k = make_keys("k", 17);
	semcache_response r = simple_response("short-lived");
	semcache_put_args a = { .ns = "ns", .key = k[0], .response = &r, .exact_ttl_ms = 10,
	                        .semantic_ttl_ms = 10 };
	cr_assert_eq(semcache_put(c, &a), 0); /* slot 0: the hand's next stop */
	for (uint32_t i = 1; i < 16; i++)
		put_sized(k[i], 16);
	cr_assert(present(k[0])); /* referenced while alive */
	atomic_fetch_add(&clk.now, 100);
	put_sized(k[16], 16);
	/* Without expiry first, the hand would pass the referenced k0 and take
	 * k1, the oldest unreferenced entry. */
	cr_assert(resident(k[1]), "a live entry went while a dead one was in the way");
	cr_assert(resident(k[16]));
	cr_assert(!resident(k[0]));
	cr_assert_eq(stats().total.evictions, 0);
	cr_assert_eq(stats().total.expirations, 1);
	free(k);
}

/* ---------------------------------------------------------------- arena */

/*
 * Fill the arena (not the slots) with entries of `blocks` blocks, hit half,
 * then put new entries `mult` times as large, half a capacity's worth of
 * bytes.  Returns the survival and (*cap_out) the capacity in old entries.
 */
static struct survival arena_limited_scenario(uint32_t nblocks, uint32_t blocks, uint32_t mult,
                                              uint64_t seed, uint32_t *cap_out)
{
	semcache_options o = test_options(4096, 0);
	o.block_size = ABLOCK;
	o.arena_bytes = (uint64_t)nblocks * ABLOCK;
	o.max_payload = 2048;
	open_with(o);
	uint32_t cap = nblocks / blocks;
	key_t32 *old = make_keys("old", cap);
	for (uint32_t i = 0; i < cap; i++)
		put_blocks(old[i], blocks);
	cr_assert_eq(stats().entries, cap);
	cr_assert_eq(stats().total.evictions, 0);

	bool *hit = random_half(cap, seed);
	for (uint32_t i = 0; i < cap; i++)
		if (hit[i])
			cr_assert(present(old[i]));
	uint32_t n_new = cap / 2 / mult;
	key_t32 *fresh = make_keys("new", n_new);
	for (uint32_t i = 0; i < n_new; i++)
		put_blocks(fresh[i], blocks * mult);
	struct survival sv = survey(old, hit, cap, fresh, n_new);
	assert_consistent();
	*cap_out = cap;
	free(hit);
	free(old);
	free(fresh);
	return sv;
}

Test(evict, full_arena_keeps_every_hit_key_and_every_new_key_and_no_other)
{
	/* Under 64 blocks, ensure_blocks evicts no batch beyond the need
	 * (its slack is nblocks / 64), so the outcome is exact; each new entry
	 * is twice the size of an old one and takes two victims. */
	for (uint64_t seed = 1; seed <= 6; seed++) {
		uint32_t cap;
		struct survival sv = arena_limited_scenario(60, 3, 2, seed, &cap);
		cr_assert_eq(cap, 20);
		cr_assert_eq(sv.hit_kept, sv.hit_total, "seed %llu: %u of %u hit keys kept",
		             (unsigned long long)seed, sv.hit_kept, sv.hit_total);
		cr_assert_eq(sv.unhit_kept, 0, "seed %llu: %u of %u keys never hit kept",
		             (unsigned long long)seed, sv.unhit_kept, sv.unhit_total);
		cr_assert_eq(sv.new_kept, sv.new_total, "seed %llu: %u of %u new keys kept",
		             (unsigned long long)seed, sv.new_kept, sv.new_total);
		cr_assert_eq(stats().total.evictions, cap / 2, "a put evicted more than its bytes need");
		teardown();
	}
}

Test(evict, large_arena_evicts_in_clock_order_with_one_batch_of_slack)
{
	/* With 4096 blocks ensure_blocks frees up to nblocks / 64 = 64 blocks
	 * beyond the need per batch, taken in CLOCK order: every key never hit
	 * goes first, and the batch reaches at most a few entries beyond. */
	for (uint64_t seed = 1; seed <= 3; seed++) {
		uint32_t cap;
		struct survival sv = arena_limited_scenario(4096, 4, 2, seed, &cap);
		uint32_t slack_entries = (4096 / 64 + 2 * 4) / 4 + 1;
		cr_assert_eq(sv.unhit_kept, 0, "seed %llu: %u of %u keys never hit kept",
		             (unsigned long long)seed, sv.unhit_kept, sv.unhit_total);
		uint32_t lost = (sv.hit_total - sv.hit_kept) + (sv.new_total - sv.new_kept);
		cr_assert_leq(lost, slack_entries, "seed %llu: %u hit or new entries lost (batch %u)",
		              (unsigned long long)seed, lost, slack_entries);
		cr_assert_geq(sv.hit_kept + sv.new_kept, sv.hit_total + sv.new_total - slack_entries);
		teardown();
	}
}

struct slot_of { const char *key; uint32_t slot; };

static int find_slot(const semcache_entry_info *e, void *arg)
{
	struct slot_of *so = arg;
	if (strcmp(e->key, so->key) == 0)
		so->slot = e->slot;
	return 0;
}

Test(evict, blocks_victims_give_their_slot_to_the_put)
{
	/* Slots to spare, arena full of one-block entries: a four-block put
	 * evicts exactly four (the first unreferenced ones from the hand) and
	 * moves into the last one's slot, instead of sweeping on for a fifth
	 * victim or a far empty slot. */
	semcache_options o = test_options(128, 0);
	o.block_size = ABLOCK;
	o.arena_bytes = 63 * ABLOCK;
	o.max_payload = 2048;
	open_with(o);
	key_t32 *k = make_keys("k", 63), *big = make_keys("big", 1);
	for (uint32_t i = 0; i < 63; i++)
		put_blocks(k[i], 1);
	cr_assert_eq(stats().blocks_used, 63);
	const uint32_t unhit[] = { 3, 10, 11, 40, 41, 50 };
	for (uint32_t i = 0, u = 0; i < 63; i++) {
		if (u < 6 && unhit[u] == i)
			u++;
		else
			cr_assert(present(k[i]));
	}
	struct slot_of last = { .key = k[40], .slot = UINT32_MAX };
	cr_assert_eq(semcache_foreach(c, "ns", NULL, find_slot, &last), 0);
	put_blocks(big[0], 4);
	cr_assert_eq(stats().total.evictions, 4);
	for (uint32_t u = 0; u < 6; u++)
		cr_assert_eq(resident(k[unhit[u]]), u >= 4, "%s", k[unhit[u]]);
	for (uint32_t i = 0; i < 63; i++)
		if (i != 3 && i != 10 && i != 11 && i != 40 && i != 41 && i != 50)
			cr_assert(resident(k[i]), "hit %s evicted", k[i]);
	struct slot_of now = { .key = big[0], .slot = UINT32_MAX };
	cr_assert_eq(semcache_foreach(c, "ns", NULL, find_slot, &now), 0);
	cr_assert_eq(now.slot, last.slot, "the put took slot %u, not its last victim's %u", now.slot,
	             last.slot);
	assert_consistent();
	free(k);
	free(big);
}

/* ---------------------------------------------------------------- index */

Test(evict, full_bucket_spares_the_entry_just_inserted)
{
	/* x0 in slot 0, fillers, then x1..x7 at the end: the hand (back at
	 * slot 0) evicts x0 for x8, which takes x0's way.  x9 then overflows
	 * the bucket: CLOCK's next victim in it is x1 (nearest ahead of the
	 * hand), never x8, which the hand has only just left. */
	const uint32_t n = 64;
	open_with(test_options(n, 0));
	key_t32 x[10];
	keys_in_bucket(bucket_of("x-probe"), "x", x, 10);
	bucket_load[bucket_of(x[0])] = SC_WAYS; /* keep fillers out of it */
	key_t32 *fill = make_keys("f", n - 8);
	put_sized(x[0], 16);
	for (uint32_t i = 0; i < n - 8; i++)
		put_sized(fill[i], 16);
	for (uint32_t i = 1; i < 8; i++)
		put_sized(x[i], 16);
	cr_assert_eq(stats().entries, n);
	put_sized(x[8], 16);
	cr_assert(!resident(x[0]));
	put_sized(x[9], 16);
	cr_assert(resident(x[8]), "bucket overflow evicted the entry inserted just before");
	cr_assert(resident(x[9]));
	cr_assert(!resident(x[1]), "bucket overflow did not take CLOCK's next victim");
	for (uint32_t i = 2; i < 8; i++)
		cr_assert(resident(x[i]), "%s", x[i]);
	assert_consistent();
	free(fill);
}

Test(evict, full_bucket_spares_referenced_entries_while_others_remain)
{
	const uint32_t n = 64;
	open_with(test_options(n, 0));
	key_t32 x[9];
	keys_in_bucket(bucket_of("y-probe"), "y", x, 9);
	for (uint32_t i = 0; i < 8; i++)
		put_sized(x[i], 16);
	/* all referenced but x5 */
	for (uint32_t i = 0; i < 8; i++)
		if (i != 5)
			cr_assert(present(x[i]));
	put_sized(x[8], 16);
	for (uint32_t i = 0; i < 9; i++)
		cr_assert_eq(resident(x[i]), i != 5, "%s", x[i]);
	cr_assert_eq(stats().total.evictions, 1);
}
