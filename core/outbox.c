/*
 * outbox.c - the writers' side of the second tier: the outbox ring in the
 * segment (layout.h, "Second tier") and the local deletion an import
 * applies.
 *
 * Writers (put, invalidate) already hold the writer lock when they call in,
 * so the ring needs no lock of its own: the head is theirs, the tail the
 * syncer's.  Nothing here waits or fails: when the ring is full a PUT item
 * is dropped, because the slot keeps its DIRTY flag and the syncer's sweep
 * finds and exports it later (we drop the newest, not the oldest: the
 * oldest items may be deletions, and dropping the newest costs nothing the
 * sweep does not recover).  A deletion cannot be recovered that way (its
 * slot is gone), so the last quarter of the ring is kept for deletions;
 * a deletion that finds even that full is counted and marks `resync`,
 * which `semcache stat` reports.
 *
 * A deletion item carries the entry's key string as well as its digest
 * (up to SC_OB_KEY_MAX bytes; longer keys, which are no seed id, or an
 * unreadable record leave it empty): the seed format names entries in
 * Redis by key, and once the slot is cleared nothing else remembers it.
 */
#include <errno.h>
#include <stdatomic.h>
#include <string.h>

#include "internal.h"

static bool tier_on(const semcache *c)
{
	return atomic_load_explicit(&c->hdr->tier.configured, memory_order_relaxed) != 0;
}

/* Room for one more item of this kind?  PUTs may fill three quarters. */
static bool room(const semcache *c, uint64_t head, uint64_t tail, bool del)
{
	uint64_t used = head - tail;
	uint64_t cap = c->outbox_cap;
	/* a scribbled tail (ahead of head) reads as a full ring */
	if (tail > head)
		return false;
	return del ? used < cap : used < cap - cap / 4;
}

static void enqueue(semcache *c, uint32_t op, uint32_t s)
{
	struct sc_tier *t = &c->hdr->tier;
	struct sc_slot *sl = &c->slot[s];
	uint64_t head = atomic_load_explicit(&t->ob_head, memory_order_relaxed);
	/* acquire: the syncer finished reading the items before the tail */
	uint64_t tail = atomic_load_explicit(&t->ob_tail, memory_order_acquire);

	if (!room(c, head, tail, op == SC_OB_DEL)) {
		if (op == SC_OB_PUT) {
			atomic_fetch_add_explicit(&t->dropped, 1, memory_order_relaxed);
			atomic_store_explicit(&t->sweep_wanted, 1, memory_order_relaxed);
		} else {
			atomic_fetch_add_explicit(&t->del_overflow, 1, memory_order_relaxed);
			atomic_store_explicit(&t->resync, 1, memory_order_relaxed);
		}
		return;
	}
	struct sc_obitem *it = &c->outbox[head & (c->outbox_cap - 1)];
	/* Mark the item incomplete first, so a syncer that finds a stale
	 * position here (a writer died between the item and the head) cannot
	 * mistake it for a finished one. */
	atomic_store_explicit(&it->seq, 0, memory_order_relaxed);
	SC_SET(it->op, op);
	SC_SET(it->slot, s);
	SC_SET(it->slot_seq, atomic_load_explicit(&sl->seq, memory_order_relaxed));
	SC_SET(it->enq_ms, sc_now(c));
	sc_seq_copy(it->digest, sl->digest, 32);
	/* A deletion names its key too, read while the slot still holds the
	 * entry (the caller clears it next): the seed format's ids are keys. */
	int kl = op == SC_OB_DEL ? sc_slot_key(c, s, it->key, SC_OB_KEY_MAX) : -1;
	SC_SET(it->key_len, kl > 0 ? (uint32_t)kl : 0u);
	/* release: the item's fields before its sequence, which the syncer
	 * loads (acquire) before reading them */
	atomic_store_explicit(&it->seq, head + 1, memory_order_release);
	/* release: the complete item before the head that exposes it */
	atomic_store_explicit(&t->ob_head, head + 1, memory_order_release);
	/* Wake an idle holder, so export starts now and not at its next poll.
	 * seq_cst on both sides (the holder: store ob_sleep, load ob_head):
	 * either it sees our head or we see its flag.  A put pays the syscall
	 * only when the holder is asleep, once per nap. */
	atomic_thread_fence(memory_order_seq_cst);
	if (atomic_load_explicit(&t->ob_sleep, memory_order_relaxed) &&
	    atomic_exchange_explicit(&t->ob_sleep, 0, memory_order_relaxed)) {
		atomic_fetch_add_explicit(&t->ob_wake, 1, memory_order_relaxed);
		sc_futex_wake_all(&t->ob_wake);
	}
}

void sc_outbox_put(semcache *c, uint32_t s)
{
	if (tier_on(c))
		enqueue(c, SC_OB_PUT, s);
}

void sc_outbox_del(semcache *c, uint32_t s)
{
	if (tier_on(c) && (c->slot[s].flags & SC_SLOT_USED))
		enqueue(c, SC_OB_DEL, s);
}

/* Under the writer lock: is an entry of digest held (expired or not)?
 * With del, remove it (no outbox item).  1, 0, or a lock error. */
static int held(semcache *c, const uint8_t digest[32], bool del)
{
	sc_hkey hk;
	int rc;

	sc_hkey_make(c, digest, &hk);
	if ((rc = sc_wlock(c)) < 0)
		return rc;
	uint32_t s = sc_index_find_w(c, &hk);
	rc = 0;
	if (s != SC_NIL && (c->slot[s].flags & SC_SLOT_USED)) {
		if (del) {
			sc_slot_clear(c, s);
			sc_arena_reclaim(c);
		}
		rc = 1;
	}
	sc_wunlock(c);
	return rc;
}

int sc_delete_digest(semcache *c, const uint8_t digest[32])
{
	return held(c, digest, true);
}

int sc_held_digest(semcache *c, const uint8_t digest[32])
{
	return held(c, digest, false);
}
