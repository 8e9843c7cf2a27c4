/*
 * evict.c - CLOCK eviction over the slot table: which entry goes when a put
 * needs a slot or payload blocks, and in which order a full index bucket
 * gives up its entries.
 *
 * How it works: the textbook second-chance CLOCK.  The hand (header word
 * clock_hand, written under the writer lock) visits slots in order.  A slot
 * it visits is taken if it is empty or its entry is dead (expired exactly
 * and semantically: "expired first", for free, whenever the hand meets
 * one), or if its reference word is clear; a set reference word is cleared
 * and the hand moves on.  The hand never moves past a slot it did not
 * examine, so every entry gets exactly one pass of grace per hit: after a
 * lap, an entry hit since the previous lap is still there and one that was
 * not is gone.  Readers set the reference word (cache.c, mark_referenced)
 * without the lock; the hand clears it under the lock.
 *
 * Why a fresh entry starts unreferenced: it is written into the slot the
 * hand has just left, the last slot the hand will reach again, so it
 * survives a full lap of evictions (as a new key at the head of an LRU list
 * survives `slots - 1` insertions).  Starting it referenced would give a key
 * that is never read again two laps instead of one, which is what makes
 * CLOCK lose to LRU on scans; it is also what SIEVE does.
 *
 * Payload space: when the arena rather than the slot count is short, a put
 * may need several victims (ensure_blocks), and then a slot.  A victim taken
 * for its blocks leaves the hand on its slot, which the eviction has just
 * emptied: the slot search of the same put starts there and takes it, so the
 * new entry again sits right behind the hand, and a put costs the victims
 * its bytes need, not one more for the slot.  The other emptied slots are
 * taken when the hand meets them on its next lap.
 *
 * The index (index.c) has buckets of SC_WAYS entries and drops one when a
 * bucket is full.  It asks sc_clock_rank() which of them CLOCK would evict
 * first (dead, then unreferenced nearest ahead of the hand, then referenced
 * nearest ahead), so a bucket overflow takes the entry the hand would take
 * soonest anyway, and never a just-inserted entry (it sits right behind the
 * hand, ranked last among the unreferenced) or one hit since the hand's
 * last pass while an unreferenced one is there.
 */
#include "internal.h"

/*
 * Two laps always find a victim when nobody reads meanwhile: the first
 * clears every reference word it passes.  Readers set those words without
 * the lock, so in principle they could keep every slot referenced; a third
 * lap then takes the first eligible slot whatever its word says, so a put
 * never fails because the cache is popular.  SC_NIL only when no slot is
 * eligible at all (every slot excluded, or empty while blocks are wanted).
 */
uint32_t sc_clock_victim(semcache *c, uint32_t exclude, int64_t now, bool for_blocks)
{
	struct sc_header *h = c->hdr;
	const uint32_t n = c->slots;
	/* The shared hand is only a position: reduced modulo the private slot
	 * count, a scribbled value can cost fairness, never a bound. */
	uint32_t hand = atomic_load_explicit(&h->clock_hand, memory_order_relaxed) % n;
	uint32_t victim = SC_NIL;

	for (uint64_t i = 0; i < 3ull * n; i++) {
		uint32_t s = hand;
		hand = hand + 1 == n ? 0 : hand + 1;
		/* The entry being replaced by this put: it cannot give up its
		 * slot or blocks to itself.  Passed over as if referenced, except
		 * that its word is left for the put to keep. */
		if (s == exclude)
			continue;
		struct sc_slot *sl = &c->slot[s];
		uint32_t flags = __atomic_load_n(&sl->flags, __ATOMIC_RELAXED);
		if (!(flags & SC_SLOT_USED)) {
			if (for_blocks)
				continue; /* holds no blocks to give back */
			victim = s;
			break;
		}
		if (sc_slot_dead(sl, now) || i >= 2ull * n) {
			victim = s;
			break;
		}
		if (atomic_load_explicit(&sl->ref, memory_order_relaxed)) {
			atomic_store_explicit(&sl->ref, 0, memory_order_relaxed);
			continue;
		}
		victim = s;
		break;
	}
	if (victim != SC_NIL && for_blocks)
		hand = victim; /* emptied by the caller: this put's slot (see top) */
	atomic_store_explicit(&h->clock_hand, hand, memory_order_relaxed);
	return victim;
}

/*
 * The order in which CLOCK would evict slot s, as seen from the hand now:
 * lower goes first.  0 for an empty or dead slot (or an out-of-range one,
 * which the caller must not touch); 1..slots for an unreferenced entry, by
 * distance ahead of the hand; slots+1..2*slots for a referenced one, which
 * the hand would pass once before taking.
 */
uint64_t sc_clock_rank(const semcache *c, uint32_t s, int64_t now)
{
	const uint32_t n = c->slots;
	if (s >= n)
		return 0;
	const struct sc_slot *sl = &c->slot[s];
	uint32_t flags = __atomic_load_n(&sl->flags, __ATOMIC_RELAXED);
	if (!(flags & SC_SLOT_USED) || sc_slot_dead(sl, now))
		return 0;
	uint32_t hand = atomic_load_explicit(&c->hdr->clock_hand, memory_order_relaxed) % n;
	uint64_t ahead = (uint64_t)(s >= hand ? s - hand : s + (n - hand)) + 1;
	return atomic_load_explicit(&sl->ref, memory_order_relaxed) ? ahead + n : ahead;
}
