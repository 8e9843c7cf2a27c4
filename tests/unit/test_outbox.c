/*
 * test_outbox.c - the writers' side of the second tier: which writes enter
 * the outbox, what a full outbox drops and counts, the room kept for
 * deletions, and the import put (no enqueue, never over a newer entry).
 * No Redis here: the tier is marked configured directly, no syncer runs.
 */
#include <criterion/criterion.h>
#include <errno.h>

#include "../common.h"
#include "internal.h"

static char path[256];
static semcache *c;
static test_clock clk;

static void setup(void)
{
	semcache_options o = test_options(4096, 8);
	test_path(path, sizeof path, "outbox");
	atomic_store(&clk.now, 1700000000000LL);
	o.clock_ms = test_clock_read;
	o.clock_arg = &clk;
	int rc = semcache_open(path, &o, &c);
	cr_assert_eq(rc, 0, "open: %s", semcache_strerror(rc));
}

static void teardown(void)
{
	semcache_close(c);
	c = NULL;
	unlink(path);
}

static semcache_tier_stats tier(void)
{
	semcache_tier_stats st;
	cr_assert_eq(semcache_tier_stat(c, &st), 0);
	return st;
}

static void configure(void) { atomic_store(&c->hdr->tier.configured, 1); }

static void put_n(int from, int n)
{
	char key[32];
	for (int i = from; i < from + n; i++) {
		snprintf(key, sizeof key, "k%d", i);
		cr_assert_eq(put_simple(c, "ns", key, "v"), 0);
	}
}

TestSuite(outbox, .init = setup, .fini = teardown);

Test(outbox, nothing_enqueued_without_a_tier)
{
	put_n(0, 10);
	cr_assert_eq(semcache_invalidate(c, NULL, NULL, NULL), 0);
	semcache_tier_stats st = tier();
	cr_assert_eq(st.configured, 0);
	cr_assert_eq(st.outbox_depth, 0);
	cr_assert_eq(st.state, SEMCACHE_TIER_OFF);
	cr_assert_eq(st.outbox_capacity, 1024);
}

Test(outbox, puts_and_deletions_enqueue_in_order)
{
	configure();
	put_n(0, 3);
	uint64_t n;
	cr_assert_eq(semcache_invalidate(c, "ns", "k1", &n), 0);
	cr_assert_eq(n, 1);
	cr_assert_eq(tier().outbox_depth, 4);
	uint32_t ops[4];
	for (int i = 0; i < 4; i++) {
		cr_assert_eq(atomic_load(&c->outbox[i].seq), (uint64_t)i + 1);
		ops[i] = c->outbox[i].op;
	}
	cr_assert_eq(ops[0], SC_OB_PUT);
	cr_assert_eq(ops[2], SC_OB_PUT);
	cr_assert_eq(ops[3], SC_OB_DEL);
	/* the deletion names k1's digest */
	uint8_t d[32];
	cr_assert_eq(sc_key_digest("ns", "k1", d), 0);
	cr_assert_eq(memcmp(c->outbox[3].digest, d, 32), 0);
	cr_assert_eq(memcmp(c->outbox[1].digest, d, 32), 0);
}

Test(outbox, full_outbox_drops_puts_counted_and_keeps_room_for_deletions)
{
	configure();
	/* puts may fill three quarters of 1024 */
	put_n(0, 1000);
	semcache_tier_stats st = tier();
	cr_assert_eq(st.outbox_depth, 768);
	cr_assert_eq(st.dropped, 1000 - 768);
	cr_assert_eq(atomic_load(&c->hdr->tier.sweep_wanted), 1);
	/* every put kept DIRTY, so a sweep can find the dropped ones */
	uint32_t dirty = 0;
	for (uint32_t s = 0; s < c->slots; s++)
		if ((c->slot[s].flags & (SC_SLOT_USED | SC_SLOT_DIRTY)) == (SC_SLOT_USED | SC_SLOT_DIRTY))
			dirty++;
	cr_assert_eq(dirty, 1000);
	/* deletions still enter: 256 of them fit, the rest are counted lost */
	uint64_t n;
	cr_assert_eq(semcache_invalidate(c, "ns", NULL, &n), 0);
	cr_assert_eq(n, 1000);
	st = tier();
	cr_assert_eq(st.outbox_depth, 1024);
	cr_assert_eq(st.deletes_lost, 1000 - 256);
	cr_assert_eq(st.resync_needed, 1);
	/* the segment keeps serving and accepting puts */
	cr_assert_eq(put_simple(c, "ns", "after", "v"), 0);
	cr_assert_eq(tier().dropped, 1000 - 768 + 1);
}

Test(outbox, import_put_neither_enqueues_nor_replaces_newer)
{
	configure();
	semcache_response r = simple_response("remote");
	semcache_put_args a = { .ns = "ns", .key = "k", .response = &r };
	int64_t now = atomic_load(&clk.now);
	sc_put_import imp = { .created_ms = now - 1000, .exact_exp_ms = now + 5000,
	                      .sem_exp_ms = now - 1000 };
	cr_assert_eq(sc_put_import_entry(c, &a, &imp), 0);
	cr_assert_eq(imp.skipped, 0);
	cr_assert_eq(tier().outbox_depth, 0);
	semcache_response *out = NULL;
	cr_assert_eq(semcache_get(c, "ns", "k", 0, &out), 0);
	cr_assert_str_eq(out->content, "remote");
	semcache_response_free(out);
	/* not DIRTY: it came from Redis */
	for (uint32_t s = 0; s < c->slots; s++)
		if (c->slot[s].flags & SC_SLOT_USED)
			cr_assert_eq(c->slot[s].flags & SC_SLOT_DIRTY, 0);

	/* a local put is newer: an older import is skipped */
	cr_assert_eq(put_simple(c, "ns", "k", "local"), 0);
	imp.created_ms = now - 500;
	cr_assert_eq(sc_put_import_entry(c, &a, &imp), 0);
	cr_assert_eq(imp.skipped, 1);
	cr_assert_eq(semcache_get(c, "ns", "k", 0, &out), 0);
	cr_assert_str_eq(out->content, "local");
	semcache_response_free(out);
	/* applying the same import twice changes nothing */
	imp.created_ms = now + 1;
	imp.exact_exp_ms = now + 9000;
	cr_assert_eq(sc_put_import_entry(c, &a, &imp), 0);
	cr_assert_eq(imp.skipped, 0);
	cr_assert_eq(sc_put_import_entry(c, &a, &imp), 0);
	cr_assert_eq(imp.skipped, 1);
	cr_assert_eq(tier().outbox_depth, 1); /* only the local put */
}

Test(outbox, delete_by_digest_removes_without_enqueueing)
{
	configure();
	put_n(0, 2);
	uint8_t d[32];
	cr_assert_eq(sc_key_digest("ns", "k0", d), 0);
	cr_assert_eq(sc_delete_digest(c, d), 1);
	cr_assert_eq(sc_delete_digest(c, d), 0);
	semcache_response *out = NULL;
	cr_assert_eq(semcache_get(c, "ns", "k0", 0, &out), SEMCACHE_ENOTFOUND);
	cr_assert_eq(semcache_get(c, "ns", "k1", 0, &out), 0);
	semcache_response_free(out);
	cr_assert_eq(tier().outbox_depth, 2);
	char report[1024];
	cr_assert_eq(semcache_verify(c, report, sizeof report), 0, "%s", report);
}

Test(outbox, tier_start_refuses_bad_options)
{
	semcache_tier_options o;
	semcache_tier_options_init(&o);
	o.prefix = "has space";
	cr_assert_eq(semcache_tier_start(c, &o), -EINVAL);
	semcache_tier_options_init(&o);
	o.format = 7; /* no such format */
	cr_assert_eq(semcache_tier_start(c, &o), -EINVAL);
	cr_assert_eq(semcache_tier_stop(c), -ENOENT);
	cr_assert_eq(tier().configured, 0);
}

Test(outbox, deletion_item_carries_the_key)
{
	configure();
	semcache_response r = simple_response("v");
	char longkey[300];
	memset(longkey, 'x', sizeof longkey - 1);
	longkey[sizeof longkey - 1] = '\0';
	semcache_put_args a = { .ns = "ns", .key = "user:7/q#3", .response = &r };
	cr_assert_eq(semcache_put(c, &a), 0);
	a.key = longkey;
	cr_assert_eq(semcache_put(c, &a), 0);
	cr_assert_eq(semcache_delete(c, "ns", "user:7/q#3"), 0);
	uint64_t n = 0;
	cr_assert_eq(semcache_invalidate(c, "ns", NULL, &n), 0);
	cr_assert_eq(n, 1);
	struct sc_obitem *put = &c->outbox[0], *d1 = &c->outbox[2], *d2 = &c->outbox[3];
	cr_assert_eq(put->op, SC_OB_PUT);
	cr_assert_eq(put->key_len, 0, "a PUT reads its slot at export time");
	cr_assert_eq(d1->op, SC_OB_DEL);
	cr_assert_eq(d1->key_len, 10);
	cr_assert(memcmp(d1->key, "user:7/q#3", 10) == 0);
	cr_assert_eq(d2->op, SC_OB_DEL);
	cr_assert_eq(d2->key_len, 0, "a key over SC_OB_KEY_MAX is not captured");
}
