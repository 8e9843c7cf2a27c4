/*
 * index.c - the set-associative index from key digest to slot.
 *
 * Buckets are one cache line of SC_WAYS 64-bit entries, (tag << 32) |
 * (slot + 1), 0 meaning empty.  The bucket and the 32-bit tag both come
 * from SipHash of the key digest under the segment's secret, so collisions
 * cannot be aimed.  This is a cache: a full bucket evicts the entry that
 * CLOCK would evict first (dead first; sc_clock_rank in evict.c), so an
 * overflow never overrides the eviction order; it never chains.  A tag
 * match is only a hint: readers confirm the full digest in the slot under
 * its sequence word.
 *
 * Entries are written only under the writer mutex, with release stores
 * after the slot they point to is complete; readers load them with
 * acquire and treat any value as untrusted (slot bounds-checked).
 */
#include <string.h>

#include "internal.h"

void sc_hkey_make(const semcache *c, const uint8_t digest[32], sc_hkey *k)
{
	memcpy(k->digest, digest, 32);
	k->h = sc_siphash(c->secret, digest, 32);
}

uint32_t sc_index_bucket(const semcache *c, uint64_t h)
{
	return (uint32_t)h & (c->buckets - 1);
}

static inline uint64_t entry_make(uint64_t h, uint32_t slot)
{
	return (h & UINT64_C(0xffffffff00000000)) | ((uint64_t)slot + 1);
}

uint32_t sc_index_find_w(semcache *c, const sc_hkey *k)
{
	struct sc_bucket *b = &c->index[sc_index_bucket(c, k->h)];
	uint32_t tag = (uint32_t)(k->h >> 32);
	for (uint32_t w = 0; w < SC_WAYS; w++) {
		uint64_t e = atomic_load_explicit(&b->e[w], memory_order_relaxed);
		if (!e || (uint32_t)(e >> 32) != tag)
			continue;
		uint32_t s = (uint32_t)e - 1;
		if (s >= c->slots)
			continue;
		struct sc_slot *sl = &c->slot[s];
		if ((sl->flags & SC_SLOT_USED) && memcmp(sl->digest, k->digest, 32) == 0)
			return s;
	}
	return SC_NIL;
}

int sc_index_insert(semcache *c, const sc_hkey *k, uint32_t slot)
{
	uint32_t bi = sc_index_bucket(c, k->h);
	struct sc_bucket *b = &c->index[bi];
	uint32_t victim = 0;
	uint64_t best = UINT64_MAX;
	bool full = true;
	int64_t now = sc_now(c);

	for (uint32_t w = 0; w < SC_WAYS; w++) {
		uint64_t e = atomic_load_explicit(&b->e[w], memory_order_relaxed);
		if (!e) {
			victim = w;
			full = false;
			break;
		}
		uint64_t rank = sc_clock_rank(c, (uint32_t)e - 1, now);
		if (rank < best) {
			best = rank;
			victim = w;
		}
	}
	if (full) {
		/* Bucket full: CLOCK's next victim among the ways goes, with its slot. */
		uint64_t e = atomic_load_explicit(&b->e[victim], memory_order_relaxed);
		uint32_t s = (uint32_t)e - 1;
		if (s < c->slots && s != slot && (SC_GET(c->slot[s].flags) & SC_SLOT_USED)) {
			if (c->seg.me) {
				if (best == 0)
					atomic_fetch_add_explicit(&c->seg.me->c.expirations, 1, memory_order_relaxed);
				else
					atomic_fetch_add_explicit(&c->seg.me->c.evictions, 1, memory_order_relaxed);
			}
			/* The victim's slot goes odd before its way is cleared (an even
			 * used slot is always indexed: a writer killed here hides
			 * nothing live). */
			sc_slot_clear(c, s);
		}
		atomic_store_explicit(&b->e[victim], 0, memory_order_release);
	}
	c->slot[slot].bucket = bi;
	/* Publish: the slot (sealed with a release store of its sequence) is
	 * complete before a reader can reach it through this entry. */
	atomic_store_explicit(&b->e[victim], entry_make(k->h, slot), memory_order_release);
	return 0;
}

void sc_index_remove(semcache *c, uint32_t slot)
{
	uint32_t bi = c->slot[slot].bucket;
	if (bi >= c->buckets)
		return;
	struct sc_bucket *b = &c->index[bi];
	for (uint32_t w = 0; w < SC_WAYS; w++) {
		uint64_t e = atomic_load_explicit(&b->e[w], memory_order_relaxed);
		if (e && (uint32_t)e - 1 == slot)
			atomic_store_explicit(&b->e[w], 0, memory_order_release);
	}
}
