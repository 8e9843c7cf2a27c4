/*
 * arena.c - the payload arena: fixed-size blocks, chained.
 *
 * A payload occupies a chain of blocks linked through the separate `next`
 * array (so block contents are pure payload and a chain walk touches one
 * compact array); every chain ends in SC_NIL.  Free blocks form one singly
 * linked list.  A chain unlinked from its slot is retired to limbo, never
 * straight back to the free list, because a zero-copy reference may still
 * be reading it.  Limbo is a list of whole chains, linked through
 * `lnext[head]`, and reclaiming frees every chain no block of which a live
 * process has published in a hazard word (shm/proc.c).  So one held, slow
 * or leaked reference keeps exactly its own chain in limbo; everything else
 * is reused as soon as a writer needs it, and a writer never waits.
 *
 * Everything here runs under the writer lock.  Readers walk chains without
 * it, so every link they follow is bounds-checked and the walk is bounded
 * by the chain length recorded in the slot (see sc_arena_read); a chain that
 * changed under a reader is caught by the slot's sequence word afterwards.
 * Why a lock and not a lock-free free list: a process killed between
 * popping a block and linking it anywhere would leak it with no record of
 * who held it; under the lock the next writer learns that the holder died
 * and rebuilds the lists from the slots and hazards (core/repair.c).
 * Writes are rare next to reads in an LLM cache (each put follows a model
 * call of seconds), so serialising them costs little.
 */
#include <stdlib.h>
#include <string.h>

#include "internal.h"

__attribute__((noinline)) void sc_seq_copy(void *dst, const void *src, size_t n)
{
	memcpy(dst, src, n);
}

uint32_t sc_blocks_for(const semcache *c, uint32_t len)
{
	uint32_t n = (len + c->block_size - 1) >> c->block_shift;
	return n ? n : 1;
}

static void damaged(semcache *c)
{
	/* The lists disagree with their counts: the next writer rebuilds them. */
	atomic_store_explicit(&c->hdr->needs_repair, 1, memory_order_relaxed);
}

uint32_t sc_arena_pop(semcache *c, uint32_t n)
{
	struct sc_header *h = c->hdr;
	uint32_t fc = atomic_load_explicit(&h->free_count, memory_order_relaxed);
	if (fc > c->nblocks)
		goto bad;
	if (n == 0 || fc < n)
		return SC_NIL;
	uint32_t head = atomic_load_explicit(&h->free_head, memory_order_relaxed);
	uint32_t b = head;
	if (head >= c->nblocks)
		goto bad;
	for (uint32_t i = 1; i < n; i++) {
		b = atomic_load_explicit(&c->next[b], memory_order_relaxed);
		if (b >= c->nblocks)
			goto bad;
	}
	uint32_t rest = atomic_load_explicit(&c->next[b], memory_order_relaxed);
	atomic_store_explicit(&c->next[b], SC_NIL, memory_order_relaxed);
	atomic_store_explicit(&h->free_head, rest, memory_order_relaxed);
	atomic_store_explicit(&h->free_count, fc - n, memory_order_relaxed);
	return head;
bad:
	damaged(c);
	return SC_NIL;
}

void sc_arena_retire(semcache *c, uint32_t head, uint32_t n)
{
	struct sc_header *h = c->hdr;
	if (head >= c->nblocks || n == 0 || n > c->nblocks)
		return; /* not a chain: left an orphan, repair collects it */
	atomic_store_explicit(&c->lnext[head], atomic_load_explicit(&h->limbo_head,
	                      memory_order_relaxed), memory_order_relaxed);
	atomic_store_explicit(&h->limbo_head, head, memory_order_relaxed);
	atomic_fetch_add_explicit(&h->limbo_blocks, n, memory_order_relaxed);
	atomic_fetch_add_explicit(&h->limbo_fresh, n, memory_order_relaxed);
}

static bool pinned(const uint32_t *hz, size_t n, uint32_t head)
{
	uint32_t v = head + 1;
	size_t lo = 0, hi = n;
	while (lo < hi) {
		size_t mid = (lo + hi) / 2;
		if (hz[mid] < v)
			lo = mid + 1;
		else
			hi = mid;
	}
	return lo < n && hz[lo] == v;
}

/* Snapshot the hazards of live processes into c->hz; false when memory for
 * it cannot be had (then nothing may be reused). */
static bool collect(semcache *c, size_t *n)
{
	for (int attempt = 0; attempt < 4; attempt++) {
		*n = sc_hazard_collect(&c->seg, c->hz, c->hz_cap);
		if (*n <= c->hz_cap)
			return true;
		size_t cap = *n + 64;
		uint32_t *p = realloc(c->hz, cap * sizeof *p);
		if (!p)
			return false;
		c->hz = p;
		c->hz_cap = cap;
	}
	return false;
}

void sc_arena_reclaim(semcache *c)
{
	struct sc_header *h = c->hdr;
	uint32_t cur = atomic_load_explicit(&h->limbo_head, memory_order_relaxed);
	if (cur == SC_NIL)
		return;
	size_t nhz;
	if (!collect(c, &nhz))
		return;
	uint32_t prev = SC_NIL;
	uint64_t budget = c->nblocks;
	uint32_t free_head = atomic_load_explicit(&h->free_head, memory_order_relaxed);
	uint32_t freed = 0;
	for (uint32_t steps = 0; cur != SC_NIL; steps++) {
		if (cur >= c->nblocks || steps >= c->nblocks) {
			damaged(c);
			break;
		}
		uint32_t nxt = atomic_load_explicit(&c->lnext[cur], memory_order_relaxed);
		/* Walk the chain to its tail; it stays if a hazard names any of its
		 * blocks (a reader's stale hazard may name an inner block; chains
		 * that repair rebuilt hold several references' blocks). */
		uint32_t tail = cur, k = 1;
		bool keep = pinned(c->hz, nhz, cur), bad = false;
		for (;;) {
			uint32_t b = atomic_load_explicit(&c->next[tail], memory_order_relaxed);
			if (b == SC_NIL)
				break;
			/* one budget for all chains: hostile links (shared tails,
			 * cycles) cost at most one pass over the arena */
			if (b >= c->nblocks || ++k > c->nblocks || budget-- == 0) {
				bad = true;
				break;
			}
			keep = keep || pinned(c->hz, nhz, b);
			tail = b;
		}
		if (bad) {
			damaged(c);
			break;
		}
		if (keep) {
			prev = cur;
			cur = nxt;
			continue;
		}
		if (prev == SC_NIL)
			atomic_store_explicit(&h->limbo_head, nxt, memory_order_relaxed);
		else
			atomic_store_explicit(&c->lnext[prev], nxt, memory_order_relaxed);
		atomic_store_explicit(&c->lnext[cur], SC_NIL, memory_order_relaxed);
		atomic_store_explicit(&c->next[tail], free_head, memory_order_relaxed);
		free_head = cur;
		freed += k;
		cur = nxt;
	}
	uint32_t lb = atomic_load_explicit(&h->limbo_blocks, memory_order_relaxed);
	atomic_store_explicit(&h->free_head, free_head, memory_order_relaxed);
	atomic_fetch_add_explicit(&h->free_count, freed, memory_order_relaxed);
	atomic_store_explicit(&h->limbo_blocks, lb >= freed ? lb - freed : 0, memory_order_relaxed);
	atomic_store_explicit(&h->limbo_fresh, 0, memory_order_relaxed);
}

void sc_arena_write(semcache *c, uint32_t head, const void *data, uint32_t len)
{
	const uint8_t *p = data;
	uint32_t b = head;
	while (len > 0 && b < c->nblocks) {
		uint32_t n = len < c->block_size ? len : c->block_size;
		sc_seq_copy(sc_block(c, b), p, n);
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
		sc_seq_copy(p, sc_block(c, b), n);
		p += n;
		len -= n;
		b = atomic_load_explicit(&c->next[b], memory_order_relaxed);
	}
	return 0;
}
