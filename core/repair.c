/*
 * repair.c - repair in place after a dead writer, and the consistency check.
 *
 * The slots are the source of truth; the rest (index, free list, limbo,
 * scan metadata, entry count) is derived state that a writer may have left
 * half-changed when it died.  sc_repair() runs under the writer lock, when
 * the lock was taken over from a dead holder or a writer found damage
 * (needs_repair), and fixes things in place, never clearing anything that
 * reaches a live entry, so readers during a repair, and after a repairer
 * killed at any instruction, still find every live entry:
 *
 *  1. a slot whose sequence word is odd (its writer died in the middle) or
 *     whose fields, payload chain, checksum or identity do not validate is
 *     emptied: it reverts to "no entry", never a half-written one;
 *  2. index ways that do not reach a valid slot of their bucket and tag (or
 *     reach one twice) are cleared; valid ways are left as they are;
 *  3. a valid slot the index does not reach (only a hostile peer makes one:
 *     writers index a slot before it turns even) is indexed;
 *  4. the free list and limbo are rebuilt: blocks of valid slots are used,
 *     chains that a live process's hazard word names stay in limbo, every
 *     other block is free (readers never read the free list);
 *  5. counts and scan metadata are recomputed.
 *
 * It is idempotent, and dying inside it is harmless: needs_repair stays set
 * until it completes, so the next taker starts over from the slots.  Every
 * shared field is read once into a local copy before it is checked and
 * used, so a peer flipping fields meanwhile can only make a check fail.
 *
 * sc_check() verifies the same invariants without changing anything and
 * describes the first problems it finds.
 */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"

enum { B_UNKNOWN = 0, B_SLOT = 1, B_WALK = 2, B_FREE = 3, B_LIMBO = 4, B_KEPT = 5 };

/* A slot's fields, read once. */
struct slot_copy {
	uint32_t seq, flags, head, len, nblocks, checksum, bucket;
	uint8_t digest[32];
	uint64_t scope_tag, ns_hash;
	int64_t sem_exp_ms;
};

static void slot_snapshot(const struct sc_slot *sl, struct slot_copy *o)
{
	o->seq = atomic_load_explicit(&sl->seq, memory_order_acquire);
	o->flags = __atomic_load_n(&sl->flags, __ATOMIC_RELAXED);
	o->head = __atomic_load_n(&sl->head, __ATOMIC_RELAXED);
	o->len = __atomic_load_n(&sl->len, __ATOMIC_RELAXED);
	o->nblocks = __atomic_load_n(&sl->nblocks, __ATOMIC_RELAXED);
	o->checksum = __atomic_load_n(&sl->checksum, __ATOMIC_RELAXED);
	o->bucket = __atomic_load_n(&sl->bucket, __ATOMIC_RELAXED);
	sc_seq_copy(o->digest, sl->digest, 32);
	o->scope_tag = __atomic_load_n(&sl->scope_tag, __ATOMIC_RELAXED);
	o->ns_hash = __atomic_load_n(&sl->ns_hash, __ATOMIC_RELAXED);
	o->sem_exp_ms = __atomic_load_n(&sl->sem_exp_ms, __ATOMIC_RELAXED);
}

/* Mark the chain of a slot copy as B_SLOT if it is valid and owns its
 * blocks alone; otherwise leave the marks as they were and return false. */
static bool claim_chain(semcache *c, const struct slot_copy *sl, uint8_t *state)
{
	if (sl->len == 0 || sl->len > c->max_payload || sl->nblocks != sc_blocks_for(c, sl->len))
		return false;
	uint32_t b = sl->head, i;
	for (i = 0; i < sl->nblocks; i++) {
		if (b >= c->nblocks || state[b] != B_UNKNOWN)
			break;
		state[b] = B_WALK;
		b = atomic_load_explicit(&c->next[b], memory_order_relaxed);
	}
	bool ok = i == sl->nblocks;
	/* Walk again to set the final marks: the links are re-read, but only
	 * through blocks marked B_WALK, so a link flipped meanwhile ends the
	 * walk instead of marking a block we did not claim. */
	b = sl->head;
	for (uint32_t j = 0; j < i && b < c->nblocks && state[b] == B_WALK; j++) {
		state[b] = ok ? B_SLOT : B_UNKNOWN;
		b = atomic_load_explicit(&c->next[b], memory_order_relaxed);
	}
	return ok;
}

static void unclaim_chain(semcache *c, const struct slot_copy *sl, uint8_t *state)
{
	uint32_t b = sl->head;
	for (uint32_t i = 0; i < sl->nblocks && b < c->nblocks && state[b] == B_SLOT; i++) {
		state[b] = B_UNKNOWN;
		b = atomic_load_explicit(&c->next[b], memory_order_relaxed);
	}
}

static void empty_slot(semcache *c, uint32_t s)
{
	struct sc_slot *sl = &c->slot[s];
	uint32_t q = atomic_load_explicit(&sl->seq, memory_order_relaxed);
	atomic_store_explicit(&sl->seq, q | 1u, memory_order_relaxed);
	atomic_thread_fence(memory_order_release);
	__atomic_store_n(&sl->flags, 0, __ATOMIC_RELAXED);
	__atomic_store_n(&sl->head, SC_NIL, __ATOMIC_RELAXED);
	__atomic_store_n(&sl->len, 0, __ATOMIC_RELAXED);
	__atomic_store_n(&sl->nblocks, 0, __ATOMIC_RELAXED);
	if (c->dim) {
		__atomic_store_n(&c->meta[s].sem_expiry_ms, 0, __ATOMIC_RELAXED);
		__atomic_store_n(&c->meta[s].scope, 0, __ATOMIC_RELAXED);
	}
	atomic_store_explicit(&sl->hits, 0, memory_order_relaxed);
	atomic_store_explicit(&sl->seq, (q | 1u) + 1u, memory_order_release);
}

/*
 * What is wrong with the slot's payload, or NULL: it must read back whole
 * (buf holds at least sl->len bytes), match its checksum, and name the
 * identity the slot claims (digest of namespace and key, namespace hash,
 * scope tag).  A slot failing this can only give wrong answers.  Shared by
 * repair (which drops such slots) and the check (which reports them).
 */
static const char *slot_problem(semcache *c, const struct slot_copy *sl, uint8_t *buf)
{
	if (sc_arena_read(c, sl->head, sl->nblocks, buf, sl->len) < 0 ||
	    sc_checksum(buf, sl->len) != sl->checksum)
		return "payload checksum mismatch";
	sc_ids ids;
	if (sc_codec_peek_ids(buf, sl->len, &ids) < 0)
		return "record does not decode";
	if (sc_ns_hash(c, ids.ns, ids.ns_len) != sl->ns_hash)
		return "namespace hash mismatch";
	if (sc_scope_tag(c, ids.ns, ids.ns_len, ids.scope, ids.scope_len) != sl->scope_tag)
		return "scope tag mismatch";
	const char *why = NULL;
	char *ns = strndup(ids.ns, ids.ns_len), *key = strndup(ids.key, ids.key_len);
	uint8_t d[32];
	if (!ns || !key)
		why = NULL; /* cannot tell: keep it, readers check again */
	else if (sc_key_digest(ns, key, d) == 0 && memcmp(d, sl->digest, 32) != 0)
		why = "digest does not match its namespace and key";
	free(ns);
	free(key);
	return why;
}

static bool slot_flags_ok(const semcache *c, uint32_t flags)
{
	return (flags & SC_SLOT_USED) && !(flags & ~SC_SLOT_FLAGS) &&
	       (!(flags & SC_SLOT_EMB) || c->dim);
}

/* Does index entry e of bucket bi reach slot s with the right bucket and
 * tag for the digest d? */
static bool way_matches(semcache *c, uint64_t e, uint32_t bi, const uint8_t d[32])
{
	sc_hkey hk;
	sc_hkey_make(c, d, &hk);
	return sc_index_bucket(c, hk.h) == bi && (uint32_t)(hk.h >> 32) == (uint32_t)(e >> 32);
}

/*
 * Blocks a live process's hazard word names that neither a slot nor a kept
 * limbo chain holds (a chain a writer died retiring, or stale hazards):
 * kept in limbo too.  A hazard may be stale (a
 * reader that has not yet re-checked its slot) and name a block in the
 * middle of another reference's chain, or the head of a garbage run that
 * leads into one, so chains are not told apart: every block reachable from
 * a hazard (through unowned blocks, at most a payload's worth per walk) is
 * pinned, and each connected group of pinned blocks becomes ONE limbo
 * chain, relinked in block order.  Reclaim frees a chain only when no
 * hazard names any of its blocks (core/arena.c), so a group stays whole
 * until every reference in it is released.  Relinking is safe: a reader
 * follows a chain's links only before its final sequence check, which
 * fails once the chain has left its slot.
 */
static uint32_t find_root(uint32_t *rep, uint32_t b)
{
	while (rep[b] != b) {
		rep[b] = rep[rep[b]]; /* path halving: hostile hazards cannot make it slow */
		b = rep[b];
	}
	return b;
}

/*
 * The limbo chains writers left are kept whole, exactly as they are: they
 * are what reclaim knows, and a reference reads its chain in its own
 * order (a chain that an earlier repair relinked is one group now, and
 * must stay one).  A chain that does not validate (out of range, shared
 * with a slot or another chain, longer than the arena) is dropped; its
 * blocks are judged by the hazards below.
 */
static void keep_limbo(semcache *c, uint8_t *state, uint32_t *limbo_head, uint32_t *limbo_n)
{
	uint32_t cur = atomic_load_explicit(&c->hdr->limbo_head, memory_order_relaxed);
	uint64_t budget = c->nblocks; /* blocks walked, over all chains */
	for (uint32_t chains = 0; cur < c->nblocks && chains < c->nblocks; chains++) {
		uint32_t nxt = atomic_load_explicit(&c->lnext[cur], memory_order_relaxed);
		uint32_t b = cur, k = 0;
		while (b < c->nblocks && state[b] == B_UNKNOWN && budget > 0) {
			state[b] = B_WALK;
			k++;
			budget--;
			b = atomic_load_explicit(&c->next[b], memory_order_relaxed);
		}
		bool ok = b == SC_NIL;
		/* the links are re-read: a peer may have changed them, so the
		 * second walk is bounded by what the first one marked */
		uint32_t w = cur;
		for (uint32_t i = 0; i < k && w < c->nblocks && state[w] == B_WALK; i++) {
			uint32_t nx = atomic_load_explicit(&c->next[w], memory_order_relaxed);
			state[w] = ok ? B_KEPT : B_UNKNOWN;
			w = nx;
		}
		if (ok) {
			atomic_store_explicit(&c->lnext[cur], *limbo_head, memory_order_relaxed);
			*limbo_head = cur;
			*limbo_n += k;
		}
		if (budget == 0)
			break;
		cur = nxt;
	}
	/* marks a diverted second walk left behind (a peer changing links) */
	for (uint32_t b = 0; b < c->nblocks; b++)
		if (state[b] == B_WALK)
			state[b] = B_UNKNOWN;
}

static int keep_pinned(semcache *c, uint8_t *state, uint32_t *limbo_head, uint32_t *limbo_n)
{
	size_t n = sc_hazard_collect(&c->seg, c->hz, c->hz_cap);
	if (n > c->hz_cap) {
		uint32_t *p = realloc(c->hz, (n + 64) * sizeof *p);
		if (!p)
			return -ENOMEM;
		c->hz = p;
		c->hz_cap = n + 64;
		n = sc_hazard_collect(&c->seg, c->hz, c->hz_cap);
		if (n > c->hz_cap)
			return -EAGAIN; /* records appeared meanwhile: repair again */
	}
	uint32_t *rep = malloc((size_t)c->nblocks * sizeof *rep);
	uint32_t *first = malloc((size_t)c->nblocks * sizeof *first);
	if (!rep || !first) {
		free(rep);
		free(first);
		return -ENOMEM;
	}
	uint32_t maxchain = sc_blocks_for(c, c->max_payload);
	/* 1. pin every hazard's whole chain (from its own head, through
	 * already pinned blocks too), joining whatever it meets into one
	 * group (union-find: rep[] points towards the group's root) */
	for (uint32_t b = 0; b < c->nblocks; b++)
		rep[b] = SC_NIL;
	for (size_t i = 0; i < n; i++) {
		uint32_t h = c->hz[i] - 1, root;
		if (h >= c->nblocks || (state[h] != B_UNKNOWN && state[h] != B_LIMBO))
			continue; /* owned by a live slot: not in limbo */
		if (state[h] == B_LIMBO) {
			root = find_root(rep, h);
		} else {
			state[h] = B_LIMBO;
			rep[h] = root = h;
		}
		uint32_t b = atomic_load_explicit(&c->next[h], memory_order_relaxed);
		for (uint32_t k = 1; b < c->nblocks && k < maxchain; k++) {
			if (state[b] == B_LIMBO) {
				uint32_t r = find_root(rep, b);
				if (r != root)
					rep[r] = root; /* two groups meet: one group */
			} else if (state[b] == B_UNKNOWN) {
				state[b] = B_LIMBO;
				rep[b] = root;
			} else {
				break; /* an owned block: a stale hazard's walk ends */
			}
			b = atomic_load_explicit(&c->next[b], memory_order_relaxed);
		}
	}
	/* 2. one chain per group, relinked in block order */
	for (uint32_t b = 0; b < c->nblocks; b++)
		first[b] = SC_NIL;
	for (uint32_t b = c->nblocks; b-- > 0;) {
		if (state[b] != B_LIMBO)
			continue;
		uint32_t r = find_root(rep, b);
		atomic_store_explicit(&c->next[b], first[r], memory_order_relaxed);
		first[r] = b;
		(*limbo_n)++;
	}
	for (uint32_t r = 0; r < c->nblocks; r++) {
		uint32_t h = first[r];
		if (h == SC_NIL)
			continue;
		atomic_store_explicit(&c->lnext[h], *limbo_head, memory_order_relaxed);
		*limbo_head = h;
	}
	free(rep);
	free(first);
	return 0;
}

int sc_repair(semcache *c)
{
	struct sc_header *h = c->hdr;
	uint8_t *state = calloc(c->nblocks, 1);
	uint8_t *seen = calloc(c->slots, 1);
	uint8_t *buf = NULL;
	size_t cap = 0;
	int rc = 0;

	if (!state || !seen) {
		rc = -ENOMEM;
		goto out;
	}

	/* 1. slots */
	for (uint32_t s = 0; s < c->slots; s++) {
		struct slot_copy sl;
		slot_snapshot(&c->slot[s], &sl);
		if (!(sl.flags & SC_SLOT_USED)) {
			if ((sl.seq & 1u) || (c->dim && c->meta[s].sem_expiry_ms != 0))
				empty_slot(c, s);
			continue;
		}
		bool ok = !(sl.seq & 1u) && slot_flags_ok(c, sl.flags) && claim_chain(c, &sl, state);
		if (ok) {
			if (cap < sl.len) {
				uint8_t *nb = realloc(buf, sl.len);
				if (!nb) {
					rc = -ENOMEM;
					goto out;
				}
				buf = nb;
				cap = sl.len;
			}
			if (slot_problem(c, &sl, buf)) {
				unclaim_chain(c, &sl, state);
				ok = false;
			}
		}
		if (!ok) {
			empty_slot(c, s);
			continue;
		}
		if (c->dim) {
			bool emb = sl.flags & SC_SLOT_EMB;
			__atomic_store_n(&c->meta[s].scope, emb ? sl.scope_tag : 0, __ATOMIC_RELAXED);
			__atomic_store_n(&c->meta[s].sem_expiry_ms, emb ? sl.sem_exp_ms : 0,
			                 __ATOMIC_RELEASE);
		}
	}

	/* 2. index ways that reach no valid slot, or reach one twice */
	for (uint32_t bi = 0; bi < c->buckets; bi++) {
		struct sc_bucket *b = &c->index[bi];
		for (uint32_t w = 0; w < SC_WAYS; w++) {
			uint64_t e = atomic_load_explicit(&b->e[w], memory_order_relaxed);
			if (!e)
				continue;
			uint32_t s = (uint32_t)e - 1;
			struct slot_copy sl;
			bool keep = s < c->slots && !seen[s];
			if (keep) {
				slot_snapshot(&c->slot[s], &sl);
				keep = (sl.flags & SC_SLOT_USED) && way_matches(c, e, bi, sl.digest);
			}
			/* the same key twice in a bucket (hostile): the later way goes */
			for (uint32_t x = 0; keep && x < w; x++) {
				uint64_t o = atomic_load_explicit(&b->e[x], memory_order_relaxed);
				uint32_t os = (uint32_t)o - 1;
				if (o && os < c->slots && os != s &&
				    memcmp(c->slot[os].digest, sl.digest, 32) == 0) {
					unclaim_chain(c, &sl, state);
					empty_slot(c, s);
					keep = false;
				}
			}
			if (!keep) {
				atomic_store_explicit(&b->e[w], 0, memory_order_release);
				continue;
			}
			seen[s] = 1;
			__atomic_store_n(&c->slot[s].bucket, bi, __ATOMIC_RELAXED);
		}
	}

	/* 3. valid slots the index does not reach (only a peer scribbling the
	 * index makes one): indexed in a free way of their bucket, or, with
	 * the bucket full, emptied, their blocks left to step 4.  Nothing is
	 * evicted here: eviction would retire blocks into a limbo that step 4
	 * is about to rebuild. */
	for (uint32_t s = 0; s < c->slots; s++) {
		struct slot_copy sl;
		if (seen[s])
			continue;
		slot_snapshot(&c->slot[s], &sl);
		if (!(sl.flags & SC_SLOT_USED))
			continue;
		sc_hkey hk;
		sc_hkey_make(c, sl.digest, &hk);
		uint32_t bi = sc_index_bucket(c, hk.h), w;
		struct sc_bucket *b = &c->index[bi];
		for (w = 0; w < SC_WAYS; w++)
			if (!atomic_load_explicit(&b->e[w], memory_order_relaxed))
				break;
		if (w == SC_WAYS) {
			unclaim_chain(c, &sl, state);
			empty_slot(c, s);
			continue;
		}
		__atomic_store_n(&c->slot[s].bucket, bi, __ATOMIC_RELAXED);
		atomic_store_explicit(&b->e[w], (hk.h & UINT64_C(0xffffffff00000000)) | ((uint64_t)s + 1),
		                      memory_order_release);
	}

	/* 4. blocks: used by slots (marked in 1), pinned, or free */
	uint32_t limbo_head = SC_NIL, limbo_n = 0;
	keep_limbo(c, state, &limbo_head, &limbo_n);
	if ((rc = keep_pinned(c, state, &limbo_head, &limbo_n)) < 0)
		goto out; /* nothing rebuilt yet: needs_repair stays set */
	uint32_t free_head = SC_NIL, free_n = 0;
	for (uint32_t i = c->nblocks; i-- > 0;) {
		if (state[i] != B_UNKNOWN)
			continue;
		atomic_store_explicit(&c->next[i], free_head, memory_order_relaxed);
		atomic_store_explicit(&c->lnext[i], SC_NIL, memory_order_relaxed);
		free_head = i;
		free_n++;
	}
	atomic_store_explicit(&h->free_head, free_head, memory_order_relaxed);
	atomic_store_explicit(&h->free_count, free_n, memory_order_relaxed);
	atomic_store_explicit(&h->limbo_head, limbo_head, memory_order_relaxed);
	atomic_store_explicit(&h->limbo_blocks, limbo_n, memory_order_relaxed);
	atomic_store_explicit(&h->limbo_fresh, 0, memory_order_relaxed);

	/* 5. counts, after 2 and 3 may have emptied slots */
	uint32_t used = 0;
	for (uint32_t s = 0; s < c->slots; s++)
		used += (__atomic_load_n(&c->slot[s].flags, __ATOMIC_RELAXED) & SC_SLOT_USED) != 0;
	atomic_store_explicit(&h->entries, used, memory_order_relaxed);
	atomic_store_explicit(&h->clock_hand,
	                      atomic_load_explicit(&h->clock_hand, memory_order_relaxed) % c->slots,
	                      memory_order_relaxed);
out:
	free(buf);
	free(seen);
	free(state);
	return rc;
}

/* ------------------------------------------------------------------------
 * Consistency check
 * ---------------------------------------------------------------------- */
struct report {
	char *buf;
	size_t len, used;
	unsigned problems;
};

__attribute__((format(printf, 2, 3)))
static void problem(struct report *r, const char *fmt, ...)
{
	r->problems++;
	if (!r->buf || r->len == 0 || r->problems > 8)
		return;
	va_list ap;
	va_start(ap, fmt);
	if (r->used < r->len) {
		int n = vsnprintf(r->buf + r->used, r->len - r->used, fmt, ap);
		if (n > 0)
			r->used += (size_t)n;
		if (r->used < r->len) {
			int m = snprintf(r->buf + r->used, r->len - r->used, "\n");
			if (m > 0)
				r->used += (size_t)m;
		}
	}
	va_end(ap);
}

/* Walk a block list (free list, or one limbo chain), marking its blocks;
 * returns the length walked. */
static uint32_t walk_list(semcache *c, uint32_t head, uint8_t *state, uint8_t mark,
                          const char *name, struct report *r)
{
	uint32_t b = head, n = 0;
	while (b != SC_NIL) {
		if (b >= c->nblocks) {
			problem(r, "%s: block %u out of range", name, b);
			break;
		}
		if (state[b] != B_UNKNOWN) {
			problem(r, "%s: block %u already owned (state %u)", name, b, state[b]);
			break;
		}
		state[b] = mark;
		n++;
		b = atomic_load_explicit(&c->next[b], memory_order_relaxed);
	}
	return n;
}

int sc_check(semcache *c, char *report, size_t report_len)
{
	struct sc_header *h = c->hdr;
	struct report r = { report, report_len, 0, 0 };
	uint8_t *state = calloc(c->nblocks, 1);
	uint8_t *idx_count = calloc(c->slots, 1);
	uint8_t *buf = malloc(c->max_payload);
	uint32_t used = 0, used_blocks = 0;
	int rc = 0;

	if (!state || !idx_count || !buf) {
		rc = -ENOMEM;
		goto out;
	}
	for (uint32_t s = 0; s < c->slots; s++) {
		struct slot_copy sl;
		slot_snapshot(&c->slot[s], &sl);
		int64_t mexp = c->dim ? __atomic_load_n(&c->meta[s].sem_expiry_ms, __ATOMIC_RELAXED) : 0;
		uint64_t mscope = c->dim ? __atomic_load_n(&c->meta[s].scope, __ATOMIC_RELAXED) : 0;
		if (sl.seq & 1u)
			problem(&r, "slot %u: locked with no writer", s);
		if (!(sl.flags & SC_SLOT_USED)) {
			if (mexp != 0)
				problem(&r, "slot %u: empty but its scan row is live", s);
			continue;
		}
		used++;
		if (!slot_flags_ok(c, sl.flags)) {
			problem(&r, "slot %u: bad flags %#x", s, sl.flags);
			continue;
		}
		if (!claim_chain(c, &sl, state)) {
			problem(&r, "slot %u: payload chain invalid or shared", s);
			continue;
		}
		used_blocks += sl.nblocks;
		const char *why = slot_problem(c, &sl, buf);
		if (why) {
			problem(&r, "slot %u: %s", s, why);
			continue;
		}
		if (c->dim) {
			bool emb = sl.flags & SC_SLOT_EMB;
			if (emb && (mscope != sl.scope_tag || mexp != sl.sem_exp_ms))
				problem(&r, "slot %u: scan metadata disagrees with slot", s);
			if (!emb && mexp != 0)
				problem(&r, "slot %u: scan row live without an embedding", s);
		}
	}
	if (used != atomic_load_explicit(&h->entries, memory_order_relaxed))
		problem(&r, "entry count %u, slots in use %u",
		        atomic_load_explicit(&h->entries, memory_order_relaxed), used);

	for (uint32_t bi = 0; bi < c->buckets; bi++) {
		for (uint32_t w = 0; w < SC_WAYS; w++) {
			uint64_t e = atomic_load_explicit(&c->index[bi].e[w], memory_order_relaxed);
			if (!e)
				continue;
			uint32_t s = (uint32_t)e - 1;
			struct slot_copy sl;
			if (s < c->slots)
				slot_snapshot(&c->slot[s], &sl);
			if (s >= c->slots || !(sl.flags & SC_SLOT_USED)) {
				problem(&r, "bucket %u way %u: points to no entry", bi, w);
				continue;
			}
			if (!way_matches(c, e, bi, sl.digest) || sl.bucket != bi)
				problem(&r, "bucket %u way %u: entry for slot %u misplaced", bi, w, s);
			if (idx_count[s] < 255)
				idx_count[s]++;
		}
	}
	for (uint32_t s = 0; s < c->slots; s++)
		if ((__atomic_load_n(&c->slot[s].flags, __ATOMIC_RELAXED) & SC_SLOT_USED) &&
		    idx_count[s] != 1)
			problem(&r, "slot %u: %u index entries", s, idx_count[s]);

	uint32_t nfree = walk_list(c, atomic_load_explicit(&h->free_head, memory_order_relaxed),
	                           state, B_FREE, "free list", &r);
	uint32_t nlimbo = 0, chains = 0;
	uint32_t lh = atomic_load_explicit(&h->limbo_head, memory_order_relaxed);
	while (lh != SC_NIL && chains <= c->nblocks) {
		if (lh >= c->nblocks) {
			problem(&r, "limbo: chain head %u out of range", lh);
			break;
		}
		nlimbo += walk_list(c, lh, state, B_LIMBO, "limbo", &r);
		chains++;
		lh = atomic_load_explicit(&c->lnext[lh], memory_order_relaxed);
	}
	if (nfree != atomic_load_explicit(&h->free_count, memory_order_relaxed))
		problem(&r, "free count %u, free list holds %u",
		        atomic_load_explicit(&h->free_count, memory_order_relaxed), nfree);
	if (nlimbo != atomic_load_explicit(&h->limbo_blocks, memory_order_relaxed))
		problem(&r, "limbo count %u, limbo holds %u",
		        atomic_load_explicit(&h->limbo_blocks, memory_order_relaxed), nlimbo);
	if ((uint64_t)used_blocks + nfree + nlimbo != c->nblocks)
		problem(&r, "blocks: %u used + %u free + %u limbo != %u total", used_blocks, nfree,
		        nlimbo, c->nblocks);
	if (r.problems) {
		if (r.problems > 8 && r.buf && r.used < r.len)
			snprintf(r.buf + r.used, r.len - r.used, "... %u problems in all\n", r.problems);
		rc = SEMCACHE_ECORRUPT;
	}
out:
	free(state);
	free(idx_count);
	free(buf);
	return rc;
}
