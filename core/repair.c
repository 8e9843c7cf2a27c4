/*
 * repair.c - rebuild after a dead writer, and the consistency check.
 *
 * The slots are the source of truth; everything else (index, free list,
 * limbo, scan metadata, entry count) is derived state that a writer may
 * have left half-changed when it died.  sc_repair() runs under the writer
 * mutex, right after pthread_mutex_lock() reported EOWNERDEAD (or when the
 * first process attaches a segment nobody else has open), and:
 *
 *  1. empties every slot whose sequence word is odd (its writer died in the
 *     middle: the slot reverts to "no entry", never a half-written one) or
 *     whose fields, payload chain, checksum or identity (the record must
 *     hash to the slot's digest, namespace hash and scope tag) do not
 *     validate;
 *  2. rebuilds the index from the surviving slots;
 *  3. keeps the free list as far as it validates, and sends every other
 *     block that no slot owns (blocks the dead writer had popped, blocks in
 *     limbo, blocks of emptied slots) to limbo, so a zero-copy reader that
 *     still looks at one is waited for before it is reused;
 *  4. recomputes counts and scan metadata.
 *
 * It is idempotent, and dying inside it is harmless: the next locker gets
 * EOWNERDEAD again and starts over from the slots.
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

enum { B_UNKNOWN = 0, B_SLOT = 1, B_WALK = 2, B_FREE = 3, B_LIMBO = 4 };

/* Mark the chain of slot sl as B_SLOT if it is valid and owns its blocks
 * alone; otherwise leave the marks as they were and return false. */
static bool claim_chain(semcache *c, const struct sc_slot *sl, uint8_t *state)
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
	uint32_t m = ok ? B_SLOT : B_UNKNOWN;
	b = sl->head;
	for (uint32_t j = 0; j < i; j++) {
		state[b] = (uint8_t)m;
		b = atomic_load_explicit(&c->next[b], memory_order_relaxed);
	}
	return ok;
}

static void unclaim_chain(semcache *c, const struct sc_slot *sl, uint8_t *state)
{
	uint32_t b = sl->head;
	for (uint32_t i = 0; i < sl->nblocks && b < c->nblocks; i++) {
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
	sl->flags = 0;
	sl->head = SC_NIL;
	sl->len = 0;
	sl->nblocks = 0;
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
static const char *slot_problem(semcache *c, const struct sc_slot *sl, uint8_t *buf)
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
	if (ns && key && sc_key_digest(ns, key, d) == 0 && memcmp(d, sl->digest, 32) != 0)
		why = "digest does not match its namespace and key";
	free(ns);
	free(key);
	return why;
}

static bool payload_ok(semcache *c, const struct sc_slot *sl, uint8_t **buf, size_t *cap)
{
	if (*cap < sl->len) {
		uint8_t *n = realloc(*buf, sl->len);
		if (!n)
			return true; /* cannot tell: keep it, readers check again */
		*buf = n;
		*cap = sl->len;
	}
	return slot_problem(c, sl, *buf) == NULL;
}

int sc_repair(semcache *c)
{
	struct sc_header *h = c->hdr;
	uint8_t *state = calloc(c->nblocks, 1);
	uint8_t *buf = NULL;
	size_t cap = 0;
	uint32_t entries = 0;

	if (!state)
		return -ENOMEM;

	/* 1. slots */
	for (uint32_t s = 0; s < c->slots; s++) {
		struct sc_slot *sl = &c->slot[s];
		uint32_t q = atomic_load_explicit(&sl->seq, memory_order_relaxed);
		if ((q & 1u) || !(sl->flags & SC_SLOT_USED) ||
		    (sl->flags & ~(SC_SLOT_USED | SC_SLOT_EMB | SC_SLOT_DIRTY)) ||
		    ((sl->flags & SC_SLOT_EMB) && !c->dim) ||
		    !claim_chain(c, sl, state)) {
			empty_slot(c, s);
			continue;
		}
		if (!payload_ok(c, sl, &buf, &cap)) {
			unclaim_chain(c, sl, state);
			empty_slot(c, s);
			continue;
		}
		entries++;
	}

	/* 2. index */
	for (uint32_t bi = 0; bi < c->buckets; bi++)
		for (uint32_t w = 0; w < SC_WAYS; w++)
			atomic_store_explicit(&c->index[bi].e[w], 0, memory_order_release);
	for (uint32_t s = 0; s < c->slots; s++) {
		struct sc_slot *sl = &c->slot[s];
		if (!(sl->flags & SC_SLOT_USED))
			continue;
		sc_hkey hk;
		sc_hkey_make(c, sl->digest, &hk);
		uint32_t bi = sc_index_bucket(c, hk.h);
		struct sc_bucket *b = &c->index[bi];
		uint32_t w;
		for (w = 0; w < SC_WAYS; w++)
			if (!atomic_load_explicit(&b->e[w], memory_order_relaxed))
				break;
		bool dup = false;
		for (uint32_t x = 0; x < w; x++) {
			uint32_t o = (uint32_t)atomic_load_explicit(&b->e[x], memory_order_relaxed) - 1;
			if (o < c->slots && memcmp(c->slot[o].digest, sl->digest, 32) == 0)
				dup = true;
		}
		if (w == SC_WAYS || dup) {
			/* no room, or the same key twice: this copy goes */
			unclaim_chain(c, sl, state);
			empty_slot(c, s);
			entries--;
			continue;
		}
		sl->bucket = bi;
		if (c->dim) {
			bool emb = sl->flags & SC_SLOT_EMB;
			__atomic_store_n(&c->meta[s].scope, emb ? sl->scope_tag : 0, __ATOMIC_RELAXED);
			__atomic_store_n(&c->meta[s].sem_expiry_ms, emb ? sl->sem_exp_ms : 0,
			                 __ATOMIC_RELEASE);
		}
		atomic_store_explicit(&b->e[w],
		                      (hk.h & UINT64_C(0xffffffff00000000)) | ((uint64_t)s + 1),
		                      memory_order_release);
	}

	/* 3. blocks: keep what validates of the free list, the rest to limbo */
	uint32_t b = atomic_load_explicit(&h->free_head, memory_order_relaxed);
	for (uint32_t i = 0; i < c->nblocks && b < c->nblocks && state[b] == B_UNKNOWN; i++) {
		state[b] = B_FREE;
		b = atomic_load_explicit(&c->next[b], memory_order_relaxed);
	}
	uint32_t free_head = SC_NIL, free_n = 0, limbo_head = SC_NIL, limbo_tail = SC_NIL, limbo_n = 0;
	for (uint32_t i = c->nblocks; i-- > 0;) {
		if (state[i] == B_FREE) {
			atomic_store_explicit(&c->next[i], free_head, memory_order_relaxed);
			free_head = i;
			free_n++;
		} else if (state[i] == B_UNKNOWN) {
			atomic_store_explicit(&c->next[i], limbo_head, memory_order_relaxed);
			if (limbo_head == SC_NIL)
				limbo_tail = i;
			limbo_head = i;
			limbo_n++;
		}
	}
	atomic_store_explicit(&h->free_head, free_head, memory_order_relaxed);
	atomic_store_explicit(&h->free_count, free_n, memory_order_relaxed);
	h->lcur_head = limbo_head;
	h->lcur_tail = limbo_tail;
	atomic_store_explicit(&h->lcur_count, limbo_n, memory_order_relaxed);
	h->lold_head = h->lold_tail = SC_NIL;
	atomic_store_explicit(&h->lold_count, 0, memory_order_relaxed);
	h->lold_epoch = 0;

	/* 4. counts */
	atomic_store_explicit(&h->entries, entries, memory_order_relaxed);
	h->clock_hand %= c->slots;
	if (atomic_load_explicit(&h->gp, memory_order_relaxed) == 0)
		atomic_store_explicit(&h->gp, 1, memory_order_relaxed);
	sc_procs_reap(c);
	free(buf);
	free(state);
	return 0;
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

/* Walk a block list, marking its blocks; returns the length walked. */
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
		struct sc_slot *sl = &c->slot[s];
		if (atomic_load_explicit(&sl->seq, memory_order_relaxed) & 1u)
			problem(&r, "slot %u: locked with no writer", s);
		if (!(sl->flags & SC_SLOT_USED)) {
			if (c->dim && c->meta[s].sem_expiry_ms != 0)
				problem(&r, "slot %u: empty but its scan row is live", s);
			continue;
		}
		used++;
		if (!claim_chain(c, sl, state)) {
			problem(&r, "slot %u: payload chain invalid or shared", s);
			continue;
		}
		used_blocks += sl->nblocks;
		const char *why = slot_problem(c, sl, buf);
		if (why) {
			problem(&r, "slot %u: %s", s, why);
			continue;
		}
		if (c->dim) {
			bool emb = sl->flags & SC_SLOT_EMB;
			if (emb && (c->meta[s].scope != sl->scope_tag ||
			            c->meta[s].sem_expiry_ms != sl->sem_exp_ms))
				problem(&r, "slot %u: scan metadata disagrees with slot", s);
			if (!emb && c->meta[s].sem_expiry_ms != 0)
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
			if (s >= c->slots || !(c->slot[s].flags & SC_SLOT_USED)) {
				problem(&r, "bucket %u way %u: points to no entry", bi, w);
				continue;
			}
			sc_hkey hk;
			sc_hkey_make(c, c->slot[s].digest, &hk);
			if (sc_index_bucket(c, hk.h) != bi || (uint32_t)(hk.h >> 32) != (uint32_t)(e >> 32) ||
			    c->slot[s].bucket != bi)
				problem(&r, "bucket %u way %u: entry for slot %u misplaced", bi, w, s);
			if (idx_count[s] < 255)
				idx_count[s]++;
		}
	}
	for (uint32_t s = 0; s < c->slots; s++)
		if ((c->slot[s].flags & SC_SLOT_USED) && idx_count[s] != 1)
			problem(&r, "slot %u: %u index entries", s, idx_count[s]);

	uint32_t nfree = walk_list(c, atomic_load_explicit(&h->free_head, memory_order_relaxed),
	                           state, B_FREE, "free list", &r);
	uint32_t ncur = walk_list(c, h->lcur_head, state, B_LIMBO, "limbo (current)", &r);
	uint32_t nold = walk_list(c, h->lold_head, state, B_LIMBO, "limbo (old)", &r);
	if (nfree != atomic_load_explicit(&h->free_count, memory_order_relaxed))
		problem(&r, "free count %u, free list holds %u",
		        atomic_load_explicit(&h->free_count, memory_order_relaxed), nfree);
	if (ncur != atomic_load_explicit(&h->lcur_count, memory_order_relaxed) ||
	    nold != atomic_load_explicit(&h->lold_count, memory_order_relaxed))
		problem(&r, "limbo counts %u+%u, lists hold %u+%u",
		        atomic_load_explicit(&h->lcur_count, memory_order_relaxed),
		        atomic_load_explicit(&h->lold_count, memory_order_relaxed), ncur, nold);
	if ((uint64_t)used_blocks + nfree + ncur + nold != c->nblocks)
		problem(&r, "blocks: %u used + %u free + %u limbo != %u total", used_blocks, nfree,
		        ncur + nold, c->nblocks);

	uint32_t hwm = atomic_load_explicit(&h->procs_hwm, memory_order_relaxed);
	for (uint32_t i = 0; i < hwm && i < c->max_procs; i++) {
		uint64_t o = atomic_load_explicit(&c->procs[i].owner, memory_order_relaxed);
		if (o && !sc_proc_alive((int32_t)(o & 0xffffffffu), o >> 32))
			problem(&r, "process record %u: owner pid %u is dead", i, (unsigned)(o & 0xffffffffu));
	}
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
