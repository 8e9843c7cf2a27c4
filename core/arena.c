/*
 * arena.c - the payload arena: fixed-size blocks, chained.
 *
 * A payload occupies a chain of blocks linked through the separate `next`
 * array (so block contents are pure payload and a chain walk touches one
 * compact array).  Free blocks form one singly linked list; blocks unlinked
 * from a slot go to limbo, never straight back to the free list, because a
 * zero-copy reader may still be looking at them.  Limbo has two lists:
 * `lcur` collects retirements; `lold` holds the previous batch, stamped
 * with the grace-period epoch at which it was closed.  Reclaiming moves
 * `lold` to the free list once every live reader has passed that epoch,
 * then closes `lcur` into `lold` by advancing the grace-period counter.
 *
 * Everything here runs under the writer mutex.  Readers walk chains without
 * it, so every link they follow is bounds-checked and the walk is bounded
 * by the chain length recorded in the slot (see sc_arena_read); a chain that
 * changed under a reader is caught by the slot's sequence word afterwards.
 * Why a mutex and not a lock-free free list: a process killed between
 * popping a block and linking it anywhere would leak it with no record of
 * who held it; under the robust mutex the next writer learns that the
 * holder died (EOWNERDEAD) and rebuilds the lists from the slots
 * (core/repair.c).  Writes are rare next to reads in an LLM cache (each
 * put follows a model call of seconds), so serialising them costs little.
 */
#include <sched.h>
#include <string.h>
#include <time.h>

#include "internal.h"

uint32_t sc_blocks_for(const semcache *c, uint32_t len)
{
	uint32_t n = (len + c->block_size - 1) >> c->block_shift;
	return n ? n : 1;
}

uint32_t sc_arena_pop(semcache *c, uint32_t n)
{
	struct sc_header *h = c->hdr;
	uint32_t fc = atomic_load_explicit(&h->free_count, memory_order_relaxed);
	if (n == 0 || fc < n)
		return SC_NIL;
	uint32_t head = atomic_load_explicit(&h->free_head, memory_order_relaxed);
	uint32_t b = head;
	if (head >= c->nblocks)
		goto damaged;
	for (uint32_t i = 1; i < n; i++) {
		b = atomic_load_explicit(&c->next[b], memory_order_relaxed);
		if (b >= c->nblocks)
			goto damaged;
	}
	uint32_t rest = atomic_load_explicit(&c->next[b], memory_order_relaxed);
	atomic_store_explicit(&c->next[b], SC_NIL, memory_order_relaxed);
	atomic_store_explicit(&h->free_head, rest, memory_order_relaxed);
	atomic_store_explicit(&h->free_count, fc - n, memory_order_relaxed);
	return head;
damaged:
	/* The free list disagrees with its count: the next writer rebuilds it. */
	atomic_store_explicit(&h->needs_repair, 1, memory_order_relaxed);
	return SC_NIL;
}

static uint32_t chain_tail(semcache *c, uint32_t head, uint32_t n)
{
	uint32_t b = head;
	for (uint32_t i = 1; i < n && b < c->nblocks; i++)
		b = atomic_load_explicit(&c->next[b], memory_order_relaxed);
	return b;
}

void sc_arena_retire(semcache *c, uint32_t head, uint32_t n)
{
	struct sc_header *h = c->hdr;
	if (head >= c->nblocks || n == 0)
		return;
	uint32_t tail = chain_tail(c, head, n);
	if (tail >= c->nblocks)
		return;
	if (h->lcur_head != SC_NIL && h->lcur_tail >= c->nblocks) {
		/* damaged limbo list: leave the chain an orphan, repair collects it */
		atomic_store_explicit(&h->needs_repair, 1, memory_order_relaxed);
		return;
	}
	atomic_store_explicit(&c->next[tail], SC_NIL, memory_order_relaxed);
	if (h->lcur_head == SC_NIL) {
		h->lcur_head = head;
	} else {
		atomic_store_explicit(&c->next[h->lcur_tail], head, memory_order_relaxed);
	}
	h->lcur_tail = tail;
	atomic_fetch_add_explicit(&h->lcur_count, n, memory_order_relaxed);
}

static void free_lold(semcache *c)
{
	struct sc_header *h = c->hdr;
	if (h->lold_tail >= c->nblocks || h->lold_head >= c->nblocks) {
		atomic_store_explicit(&h->needs_repair, 1, memory_order_relaxed);
		return;
	}
	atomic_store_explicit(&c->next[h->lold_tail],
	                      atomic_load_explicit(&h->free_head, memory_order_relaxed),
	                      memory_order_relaxed);
	atomic_store_explicit(&h->free_head, h->lold_head, memory_order_relaxed);
	atomic_fetch_add_explicit(&h->free_count,
	                          atomic_load_explicit(&h->lold_count, memory_order_relaxed),
	                          memory_order_relaxed);
	h->lold_head = h->lold_tail = SC_NIL;
	atomic_store_explicit(&h->lold_count, 0, memory_order_relaxed);
}

void sc_arena_reclaim(semcache *c)
{
	struct sc_header *h = c->hdr;
	if (h->lold_head != SC_NIL) {
		if (!sc_grace_passed(c, h->lold_epoch))
			return;
		free_lold(c);
		if (h->lold_head != SC_NIL)
			return; /* damaged: left for repair */
	}
	if (h->lcur_head == SC_NIL)
		return;
	h->lold_head = h->lcur_head;
	h->lold_tail = h->lcur_tail;
	atomic_store_explicit(&h->lold_count,
	                      atomic_load_explicit(&h->lcur_count, memory_order_relaxed),
	                      memory_order_relaxed);
	h->lcur_head = h->lcur_tail = SC_NIL;
	atomic_store_explicit(&h->lcur_count, 0, memory_order_relaxed);
	/* Close the batch: readers entering from now on read an epoch past
	 * lold_epoch, and they can no longer reach these blocks (they were
	 * unlinked from their slots before this RMW). */
	h->lold_epoch = atomic_fetch_add_explicit(&h->gp, 1, memory_order_seq_cst);
	if (sc_grace_passed(c, h->lold_epoch))
		free_lold(c);
}

void sc_arena_write(semcache *c, uint32_t head, const void *data, uint32_t len)
{
	const uint8_t *p = data;
	uint32_t b = head;
	while (len > 0 && b < c->nblocks) {
		uint32_t n = len < c->block_size ? len : c->block_size;
		memcpy(sc_block(c, b), p, n);
		p += n;
		len -= n;
		b = atomic_load_explicit(&c->next[b], memory_order_relaxed);
	}
}

int sc_arena_read(const semcache *c, uint32_t head, uint32_t nblocks, void *out,
                  uint32_t len)
{
	uint8_t *p = out;
	uint32_t b = head;
	if (nblocks != sc_blocks_for(c, len))
		return -1;
	for (uint32_t i = 0; i < nblocks; i++) {
		if (b >= c->nblocks)
			return -1;
		uint32_t n = len < c->block_size ? len : c->block_size;
		memcpy(p, sc_block(c, b), n);
		p += n;
		len -= n;
		b = atomic_load_explicit(&c->next[b], memory_order_relaxed);
	}
	return 0;
}

/*
 * Reclaim until `need` blocks are free, waiting for readers of the old
 * limbo batch to leave their read-side sections: zero-copy references are
 * normally held for microseconds, so the writer (never a reader) waits a
 * bounded time, as synchronize_rcu() would, before reporting the space as
 * held.  Returns true when need blocks are free.
 */
bool sc_arena_reclaim_wait(semcache *c, uint32_t need)
{
	struct sc_header *h = c->hdr;
	struct timespec t0, now;
	clock_gettime(CLOCK_MONOTONIC, &t0);
	for (unsigned i = 0;; i++) {
		sc_arena_reclaim(c);
		if (atomic_load_explicit(&h->free_count, memory_order_relaxed) >= need)
			return true;
		if (h->lold_head == SC_NIL && h->lcur_head == SC_NIL)
			return false; /* nothing left to wait for */
		if (h->lold_head == SC_NIL)
			continue; /* lcur was just closed; check its grace period */
		clock_gettime(CLOCK_MONOTONIC, &now);
		long us = (now.tv_sec - t0.tv_sec) * 1000000L + (now.tv_nsec - t0.tv_nsec) / 1000;
		if (us > SC_GRACE_WAIT_US)
			return false;
		if (i < 64) {
			sched_yield();
		} else {
			struct timespec d = { 0, 50000 };
			nanosleep(&d, NULL);
		}
	}
}
