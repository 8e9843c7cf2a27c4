/*
 * cache.c - the cache operations: put, get, search, invalidate, inspect.
 *
 * Writers (put, invalidate, expiry reclaim) run under the segment's writer
 * mutex and change a slot only between sc_slot_begin() and sc_slot_end(),
 * which make its sequence word odd and then even again.  Readers never take
 * the mutex: they copy a slot and its payload, then re-read the sequence
 * word; a change means the copy may be torn and is retried (a few times)
 * or counted as a miss.  Every index, block number and length a reader uses
 * is bounds-checked before use, and the payload checksum and the decoded
 * identity (namespace, key, scope) are verified before anything is
 * returned, so a damaged or hostile segment yields misses, never a wrong
 * answer or a fault.
 *
 * Semantic search scans the whole embedding matrix with the SIMD kernel
 * (filtered by scope tag and semantic expiry in the compact metadata
 * array), then re-reads its best candidates under their sequence words and
 * re-scores them: a row rewritten during the scan is never returned.
 */
#include <errno.h>
#include <math.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"

#define SC_READ_RETRIES 32
#define SC_SCAN_EXTRA   8    /* candidates kept beyond k, for rows lost to validation */
#define SC_TWOSTAGE_C   256  /* first-pass candidates re-scored exactly */

/* ------------------------------------------------------------------------
 * Per-thread scratch: encode buffer, payload copy, normalised embedding.
 * ---------------------------------------------------------------------- */
struct tls_scratch {
	sc_buf enc;
	uint8_t *rbuf;
	size_t rcap;
	float *emb;
	size_t ecap;
	uint8_t *qbuf;
	size_t qcap;
	char *ids;
	size_t icap;
};

static pthread_key_t tls_key;
static pthread_once_t tls_once = PTHREAD_ONCE_INIT;
static _Thread_local struct tls_scratch *tls;

static void tls_free(void *p)
{
	struct tls_scratch *t = p;
	free(t->enc.data);
	free(t->rbuf);
	free(t->emb);
	free(t->qbuf);
	free(t->ids);
	free(t);
}

static void tls_init(void) { (void)pthread_key_create(&tls_key, tls_free); }

static struct tls_scratch *scratch(void)
{
	if (SC_LIKELY(tls != NULL))
		return tls;
	pthread_once(&tls_once, tls_init);
	tls = calloc(1, sizeof *tls);
	if (tls)
		(void)pthread_setspecific(tls_key, tls);
	return tls;
}

static void *grow(void **p, size_t *cap, size_t need)
{
	if (*cap >= need)
		return *p;
	size_t n = *cap ? *cap : 4096;
	while (n < need)
		n *= 2;
	void *q = realloc(*p, n);
	if (!q)
		return NULL;
	*p = q;
	*cap = n;
	return q;
}

/* ------------------------------------------------------------------------
 * Slots
 * ---------------------------------------------------------------------- */
/* now + ttl, saturating: a TTL of INT64_MAX means "never" and must not wrap
 * into the past. */
static int64_t deadline(int64_t now, int64_t ttl)
{
	return ttl > INT64_MAX - now ? INT64_MAX : now + ttl;
}

/* An entry is dead once its exact TTL has passed and it can no longer
 * answer semantically either (no embedding, or semantic TTL passed too). */
static bool entry_dead(uint32_t flags, int64_t exact_exp, int64_t sem_exp, int64_t now)
{
	if (exact_exp > now)
		return false;
	return !(flags & SC_SLOT_EMB) || sem_exp <= now;
}

bool sc_slot_dead(const struct sc_slot *s, int64_t now)
{
	return entry_dead(s->flags, s->exact_exp_ms, s->sem_exp_ms, now);
}

void sc_slot_begin(struct sc_slot *s)
{
	uint32_t q = atomic_load_explicit(&s->seq, memory_order_relaxed);
	atomic_store_explicit(&s->seq, q | 1u, memory_order_relaxed);
	/* The odd sequence is visible before any field changes. */
	atomic_thread_fence(memory_order_release);
}

void sc_slot_end(struct sc_slot *s)
{
	uint32_t q = atomic_load_explicit(&s->seq, memory_order_relaxed);
	/* Every field write happens before the even sequence. */
	atomic_store_explicit(&s->seq, (q | 1u) + 1u, memory_order_release);
}

static void meta_set(semcache *c, uint32_t s, uint64_t scope, int64_t exp)
{
	__atomic_store_n(&c->meta[s].sem_expiry_ms, 0, __ATOMIC_RELAXED);
	__atomic_store_n(&c->meta[s].scope, scope, __ATOMIC_RELAXED);
	__atomic_store_n(&c->meta[s].sem_expiry_ms, exp, __ATOMIC_RELEASE);
}

void sc_slot_clear(semcache *c, uint32_t s)
{
	struct sc_slot *sl = &c->slot[s];
	if (!(sl->flags & SC_SLOT_USED))
		return;
	/* Odd first, then unindex: an even used slot is always indexed (see
	 * shm/layout.h), so a writer killed here hides nothing live. */
	sc_slot_begin(sl);
	sc_index_remove(c, s);
	uint32_t head = SC_GET(sl->head), n = SC_GET(sl->nblocks);
	SC_SET(sl->flags, 0);
	SC_SET(sl->head, SC_NIL);
	SC_SET(sl->len, 0);
	SC_SET(sl->nblocks, 0);
	if (c->dim)
		meta_set(c, s, 0, 0);
	atomic_store_explicit(&c->slot[s].hits, 0, memory_order_relaxed);
	sc_slot_end(sl);
	/* Retire only after the slot no longer reaches the blocks. */
	sc_arena_retire(c, head, n);
	atomic_fetch_sub_explicit(&c->hdr->entries, 1, memory_order_relaxed);
}

static void count(semcache *c, _Atomic uint64_t *field)
{
	(void)c;
	atomic_fetch_add_explicit(field, 1, memory_order_relaxed);
}
#define COUNT(c, f) do { if ((c)->seg.me) count((c), &(c)->seg.me->c.f); } while (0)

static void evict_slot(semcache *c, uint32_t s, int64_t now)
{
	struct sc_slot *sl = &c->slot[s];
	if (!(sl->flags & SC_SLOT_USED))
		return;
	if (sc_slot_dead(sl, now))
		COUNT(c, expirations);
	else
		COUNT(c, evictions);
	sc_slot_clear(c, s);
}

/* Entries that eviction could still remove (all but the one being replaced). */
static bool evictable(semcache *c, uint32_t exclude)
{
	uint32_t n = atomic_load_explicit(&c->hdr->entries, memory_order_relaxed);
	if (exclude != SC_NIL && (c->slot[exclude].flags & SC_SLOT_USED))
		n = n ? n - 1 : 0;
	return n > 0;
}

/*
 * Make `need` blocks free: reclaim limbo, evicting by CLOCK while short.
 * Victims' chains go to limbo and come back at the next reclaim unless a
 * zero-copy reference pins them, so a pinned chain costs only itself: the
 * loop evicts past it.  The hazard scan is paid once per batch of
 * evictions, not once per victim.  Never waits: when what is left is
 * pinned (or nothing is evictable), SEMCACHE_EFULL at once.
 */
static int ensure_blocks(semcache *c, uint32_t need, uint32_t exclude, int64_t now)
{
	struct sc_header *h = c->hdr;
	for (uint64_t guard = 0; guard < 2ull * c->slots + 8; guard++) {
		uint32_t fc = atomic_load_explicit(&h->free_count, memory_order_relaxed);
		if (fc >= need)
			return 0;
		uint32_t fresh = atomic_load_explicit(&h->limbo_fresh, memory_order_relaxed);
		bool can_evict = evictable(c, exclude);
		if (fresh && ((uint64_t)fc + fresh >= need || !can_evict)) {
			sc_arena_reclaim(c);
			continue;
		}
		if (!can_evict)
			return SEMCACHE_EFULL;
		uint32_t v = sc_clock_victim(c, exclude, now, true);
		if (v == SC_NIL)
			return SEMCACHE_EFULL;
		evict_slot(c, v, now);
	}
	return SEMCACHE_EFULL;
}

/* ------------------------------------------------------------------------
 * Embeddings
 * ---------------------------------------------------------------------- */
static int normalise(const semcache *c, const float *in, float *out)
{
	double ss = 0;
	for (uint32_t i = 0; i < c->dim; i++) {
		if (!isfinite(in[i]))
			return SEMCACHE_EEMBEDDING;
		ss += (double)in[i] * in[i];
	}
	if (!(ss > 0) || !isfinite(ss))
		return SEMCACHE_EEMBEDDING;
	double inv = 1.0 / sqrt(ss);
	for (uint32_t i = 0; i < c->dim; i++)
		out[i] = (float)(in[i] * inv);
	return 0;
}

static void write_row(semcache *c, uint32_t s, const float *emb, const uint8_t *q, float qscale)
{
	sc_seq_copy(c->matrix + (size_t)s * c->row_stride, emb, (size_t)c->dim * 4);
	if (c->quant)
		sc_seq_copy(c->qmatrix + (size_t)s * c->qstride, q, c->qstride);
	if (c->quant == SC_QUANT_INT8)
		c->qscale[s] = qscale;
}

/* ------------------------------------------------------------------------
 * put
 * ---------------------------------------------------------------------- */
/* Set only around an import put of the tier's importer (this thread). */
static _Thread_local sc_put_import *put_import;

int sc_put_import_entry(semcache *c, const semcache_put_args *a, sc_put_import *imp)
{
	imp->skipped = 0;
	put_import = imp;
	int rc = semcache_put(c, a);
	put_import = NULL;
	return rc;
}

int semcache_put(semcache *c, const semcache_put_args *a)
{
	sc_put_import *imp = put_import;
	struct tls_scratch *t;
	uint8_t digest[32];
	sc_hkey hk;
	float qscale = 0;
	int rc;

	if (c)
		sc_ensure_record(c);
	if (!c || !a || !a->ns || !a->key || !a->response || a->exact_ttl_ms < 0 ||
	    a->semantic_ttl_ms < 0 || !SC_RESERVED_ZERO(a) || !SC_RESERVED_ZERO(a->response))
		return -EINVAL;
	if (!(t = scratch()))
		return -ENOMEM;
	if (a->embedding && !c->dim)
		return SEMCACHE_ENOSEMANTIC;
	if (a->embedding && a->embedding_dim != c->dim)
		return SEMCACHE_EDIM;

	/* Everything that can fail on the caller's input fails here, before
	 * the lock and before anything in the segment changes. */
	rc = sc_codec_encode(a->ns, a->key, a->scope, a->response, c->max_payload, &t->enc);
	if (rc < 0)
		return rc;
	if (a->embedding) {
		if (!grow((void **)&t->emb, &t->ecap, (size_t)c->dim * 4))
			return -ENOMEM;
		if ((rc = normalise(c, a->embedding, t->emb)) < 0)
			return rc;
		if (c->quant) {
			if (!grow((void **)&t->qbuf, &t->qcap, c->qstride))
				return -ENOMEM;
			if (c->quant == SC_QUANT_INT8)
				qscale = sc_quant_i8(t->emb, c->dim, (int8_t *)t->qbuf, c->qstride);
			else
				sc_quant_bits(t->emb, c->dim, t->qbuf, c->qstride);
		}
	}
	if ((rc = sc_key_digest(a->ns, a->key, digest)) < 0)
		return rc;
	sc_hkey_make(c, digest, &hk);
	size_t ns_len = strlen(a->ns);
	const char *scope = a->scope ? a->scope : "";
	uint64_t tag = sc_scope_tag(c, a->ns, ns_len, scope, strlen(scope));
	uint64_t nsh = sc_ns_hash(c, a->ns, ns_len);
	uint32_t len = (uint32_t)t->enc.len;
	uint32_t csum = sc_checksum(t->enc.data, len);
	uint32_t need = sc_blocks_for(c, len);
	int64_t ettl = a->exact_ttl_ms ? a->exact_ttl_ms : c->exact_ttl_ms;
	int64_t sttl = a->semantic_ttl_ms ? a->semantic_ttl_ms : c->semantic_ttl_ms;

	if ((rc = sc_wlock(c)) < 0)
		return rc;
	int64_t now = sc_now(c);
	uint32_t s = sc_index_find_w(c, &hk);
	if (imp && s != SC_NIL && SC_GET(c->slot[s].created_ms) >= imp->created_ms) {
		imp->skipped = 1; /* never replace a newer local entry */
		rc = 0;
		goto out;
	}
	if ((rc = ensure_blocks(c, need, s, now)) < 0)
		goto out;
	/* ensure_blocks never evicts s (it is excluded); re-check anyway, as
	 * the code below must not write into a slot that was emptied */
	if (s != SC_NIL && !(c->slot[s].flags & SC_SLOT_USED))
		s = SC_NIL;
	uint32_t head = sc_arena_pop(c, need);
	if (head == SC_NIL) {
		rc = SEMCACHE_EFULL;
		goto out;
	}
	sc_arena_write(c, head, t->enc.data, len);

	bool fresh = s == SC_NIL;
	if (fresh) {
		s = sc_clock_victim(c, SC_NIL, now, false);
		if (s == SC_NIL) {
			sc_arena_retire(c, head, need);
			rc = SEMCACHE_EFULL;
			goto out;
		}
		evict_slot(c, s, now);
	}
	struct sc_slot *sl = &c->slot[s];
	uint32_t old_head = SC_GET(sl->head), old_n = SC_GET(sl->nblocks);
	bool keep_row = !fresh && !a->embedding && (SC_GET(sl->flags) & SC_SLOT_EMB);
	uint32_t flags = (imp ? SC_SLOT_USED : SC_SLOT_USED | SC_SLOT_DIRTY) |
	                 ((a->embedding || keep_row) ? SC_SLOT_EMB : 0);
	int64_t sem_exp = imp ? imp->sem_exp_ms : deadline(now, sttl);

	sc_slot_begin(sl);
	if (c->dim)
		__atomic_store_n(&c->meta[s].sem_expiry_ms, 0, __ATOMIC_RELAXED);
	sc_seq_copy(sl->digest, digest, 32);
	SC_SET(sl->scope_tag, tag);
	SC_SET(sl->ns_hash, nsh);
	SC_SET(sl->created_ms, imp ? imp->created_ms : now);
	SC_SET(sl->exact_exp_ms, imp ? imp->exact_exp_ms : deadline(now, ettl));
	SC_SET(sl->sem_exp_ms, sem_exp);
	SC_SET(sl->head, head);
	SC_SET(sl->len, len);
	SC_SET(sl->nblocks, need);
	SC_SET(sl->checksum, csum);
	SC_SET(sl->flags, flags);
	if (a->embedding)
		write_row(c, s, t->emb, t->qbuf, qscale);
	if (flags & SC_SLOT_EMB)
		meta_set(c, s, tag, sem_exp);
	else if (c->dim)
		meta_set(c, s, 0, 0);
	if (fresh) {
		atomic_store_explicit(&sl->ref, 0, memory_order_relaxed);
		atomic_store_explicit(&c->slot[s].hits, 0, memory_order_relaxed);
		/* Indexed while still odd: readers that reach it wait for the
		 * even sequence, and a writer killed before that leaves no live
		 * slot unindexed. */
		sc_index_insert(c, &hk, s);
		atomic_fetch_add_explicit(&c->hdr->entries, 1, memory_order_relaxed);
	}
	sc_slot_end(sl);
	if (!imp)
		sc_outbox_put(c, s);
	if (!fresh)
		sc_arena_retire(c, old_head, old_n);
	if (atomic_load_explicit(&c->hdr->limbo_fresh, memory_order_relaxed) >= SC_RECLAIM_BATCH)
		sc_arena_reclaim(c);
	COUNT(c, puts);
	rc = 0;
out:
	sc_wunlock(c);
	return rc;
}

/* ------------------------------------------------------------------------
 * Reading a slot
 * ---------------------------------------------------------------------- */
struct slot_view {
	uint32_t flags, len, checksum, hits;
	uint64_t scope_tag, ns_hash;
	int64_t created_ms, exact_exp_ms, sem_exp_ms;
	uint8_t digest[32];
	float score; /* search: re-scored similarity */
};

static bool view_dead(const struct slot_view *v, int64_t now)
{
	return entry_dead(v->flags, v->exact_exp_ms, v->sem_exp_ms, now);
}

enum { READ_OK = 0, READ_EMPTY = 1, READ_RETRY = 2, READ_BAD = 3, READ_STOP = 4 };

/*
 * Copy slot s and its payload (into t->rbuf) consistently.  `digest`, when
 * given, must match or READ_EMPTY is returned without copying the payload;
 * `q`, when given, re-scores the slot's row under the same sequence window.
 */
static int read_slot(semcache *c, struct tls_scratch *t, uint32_t s, const uint8_t *digest,
                     const float *q, struct slot_view *v)
{
	struct sc_slot *sl = &c->slot[s];
	uint32_t s1 = atomic_load_explicit(&sl->seq, memory_order_acquire);
	if (s1 & 1u)
		return READ_RETRY;
	v->flags = __atomic_load_n(&sl->flags, __ATOMIC_RELAXED);
	if (!(v->flags & SC_SLOT_USED))
		goto empty;
	if (digest) {
		uint8_t d[32];
		sc_seq_copy(d, sl->digest, 32);
		if (memcmp(d, digest, 32) != 0)
			goto empty;
	}
	sc_seq_copy(v->digest, sl->digest, 32);
	v->scope_tag = __atomic_load_n(&sl->scope_tag, __ATOMIC_RELAXED);
	v->ns_hash = __atomic_load_n(&sl->ns_hash, __ATOMIC_RELAXED);
	v->created_ms = __atomic_load_n(&sl->created_ms, __ATOMIC_RELAXED);
	v->exact_exp_ms = __atomic_load_n(&sl->exact_exp_ms, __ATOMIC_RELAXED);
	v->sem_exp_ms = __atomic_load_n(&sl->sem_exp_ms, __ATOMIC_RELAXED);
	v->checksum = __atomic_load_n(&sl->checksum, __ATOMIC_RELAXED);
	v->len = __atomic_load_n(&sl->len, __ATOMIC_RELAXED);
	uint32_t head = __atomic_load_n(&sl->head, __ATOMIC_RELAXED);
	uint32_t nb = __atomic_load_n(&sl->nblocks, __ATOMIC_RELAXED);
	if (v->len == 0 || v->len > c->max_payload)
		goto torn_or_bad;
	if (!grow((void **)&t->rbuf, &t->rcap, v->len))
		return -ENOMEM;
	if (sc_arena_read(c, head, nb, t->rbuf, v->len) < 0)
		goto torn_or_bad;
	if (q) {
		if (!(v->flags & SC_SLOT_EMB))
			goto empty_checked;
		v->score = c->kernel->dot(c->matrix + (size_t)s * c->row_stride, q, c->dim);
	}
	v->hits = atomic_load_explicit(&sl->hits, memory_order_relaxed);
	atomic_thread_fence(memory_order_acquire);
	if (atomic_load_explicit(&sl->seq, memory_order_relaxed) != s1)
		return READ_RETRY;
	if (sc_checksum(t->rbuf, v->len) != v->checksum)
		return READ_BAD;
	return READ_OK;

torn_or_bad:
	atomic_thread_fence(memory_order_acquire);
	return atomic_load_explicit(&sl->seq, memory_order_relaxed) != s1 ? READ_RETRY : READ_BAD;
empty_checked:
empty:
	atomic_thread_fence(memory_order_acquire);
	return atomic_load_explicit(&sl->seq, memory_order_relaxed) != s1 ? READ_RETRY : READ_EMPTY;
}

static void mark_referenced(semcache *c, uint32_t s)
{
	struct sc_slot *sl = &c->slot[s];
	/* Write the shared line only when the bit is clear. */
	if (!atomic_load_explicit(&sl->ref, memory_order_relaxed))
		atomic_store_explicit(&sl->ref, 1, memory_order_relaxed);
	/* in the slot's own line, which the reader just loaded: no extra miss */
	atomic_fetch_add_explicit(&sl->hits, 1, memory_order_relaxed);
}

static bool ids_equal(const char *a, size_t alen, const char *b)
{
	return strlen(b) == alen && memcmp(a, b, alen) == 0;
}

static int touch_entry(semcache *c, const uint8_t digest[32], const sc_hkey *hk)
{
	int rc = sc_wlock(c);
	if (rc < 0)
		return rc;
	uint32_t s = sc_index_find_w(c, hk);
	if (s != SC_NIL && memcmp(c->slot[s].digest, digest, 32) == 0) {
		struct sc_slot *sl = &c->slot[s];
		int64_t now = sc_now(c);
		int64_t created = SC_GET(sl->created_ms);
		int64_t ettl = SC_GET(sl->exact_exp_ms) - created;
		int64_t sttl = SC_GET(sl->sem_exp_ms) - created;
		int64_t sem_exp = deadline(now, sttl > 0 ? sttl : c->semantic_ttl_ms);
		sc_slot_begin(sl);
		SC_SET(sl->exact_exp_ms, deadline(now, ettl > 0 ? ettl : c->exact_ttl_ms));
		SC_SET(sl->sem_exp_ms, sem_exp);
		SC_SET(sl->created_ms, now);
		if (SC_GET(sl->flags) & SC_SLOT_EMB)
			meta_set(c, s, SC_GET(sl->scope_tag), sem_exp);
		sc_slot_end(sl);
	}
	sc_wunlock(c);
	return 0;
}

/*
 * Walk the ways of the key's bucket, handing each slot whose tag matches to
 * try(), and walk the bucket again (a bounded number of times) when one was
 * being written.  try() returns READ_OK (found), READ_STOP (a definite
 * miss), READ_RETRY, another READ_* (not this slot) or -errno.
 */
typedef int (*slot_try_fn)(semcache *c, uint32_t s, void *arg);

static int lookup(semcache *c, const sc_hkey *hk, slot_try_fn try_slot, void *arg)
{
	struct sc_bucket *b = &c->index[sc_index_bucket(c, hk->h)];
	uint32_t tag = (uint32_t)(hk->h >> 32);
	for (int attempt = 0; attempt < SC_READ_RETRIES; attempt++) {
		int retry = 0;
		for (uint32_t w = 0; w < SC_WAYS; w++) {
			uint64_t e = atomic_load_explicit(&b->e[w], memory_order_acquire);
			if (!e || (uint32_t)(e >> 32) != tag)
				continue;
			uint32_t s = (uint32_t)e - 1;
			if (s >= c->slots)
				continue;
			int r = try_slot(c, s, arg);
			if (r < 0 || r == READ_OK || r == READ_STOP)
				return r;
			retry |= r == READ_RETRY;
		}
		if (!retry)
			break;
		if (attempt > 4)
			sched_yield();
	}
	return READ_EMPTY;
}

/* sc_present_digest's callback: arg is {digest, now}. */
struct present {
	struct tls_scratch *t;
	const uint8_t *digest;
	int64_t now;
};

static int present_try_slot(semcache *c, uint32_t s, void *arg)
{
	struct present *p = arg;
	struct slot_view v;
	int r = read_slot(c, p->t, s, p->digest, NULL, &v);
	if (r != READ_OK)
		return r;
	return view_dead(&v, p->now) ? READ_STOP : READ_OK;
}

int sc_present_digest(semcache *c, const uint8_t digest[32])
{
	struct present p = { .t = scratch(), .digest = digest, .now = sc_now(c) };
	sc_hkey hk;

	if (!p.t)
		return -ENOMEM;
	sc_hkey_make(c, digest, &hk);
	int rc = lookup(c, &hk, present_try_slot, &p);
	return rc < 0 ? rc : rc == READ_OK;
}

/* What a lookup callback needs, and what it found (out or ref). */
struct find {
	struct tls_scratch *t;
	const uint8_t *digest;
	const char *ns, *key;
	int64_t now;
	semcache_response *out;  /* get */
	semcache_ref *ref;       /* get_ref */
	bool pin;                /* get_ref: pin the chain with a hazard word */
	uint32_t slot;
};

static int get_try_slot(semcache *c, uint32_t s, void *arg)
{
	struct find *g = arg;
	struct slot_view v;
	int r = read_slot(c, g->t, s, g->digest, NULL, &v);
	if (r != READ_OK)
		return r;
	if (v.exact_exp_ms <= g->now)
		return READ_STOP; /* expired: left to writers, readers never lock */
	sc_ids ids;
	int rc = sc_codec_decode(g->t->rbuf, v.len, &g->out, &ids);
	if (rc == -ENOMEM)
		return rc;
	if (rc < 0 || !ids_equal(ids.ns, ids.ns_len, g->ns) || !ids_equal(ids.key, ids.key_len, g->key)) {
		semcache_response_free(g->out);
		g->out = NULL;
		return READ_BAD; /* damaged or colliding record: not ours */
	}
	g->slot = s;
	return READ_OK;
}

int semcache_get(semcache *c, const char *ns, const char *key, unsigned flags,
                 semcache_response **out)
{
	uint8_t digest[32];
	sc_hkey hk;
	int rc;

	if (c)
		sc_ensure_record(c);
	if (!c || !ns || !key || !out || (flags & ~SEMCACHE_GET_TOUCH))
		return -EINVAL;
	*out = NULL;
	struct find g = { .t = scratch(), .digest = digest, .ns = ns, .key = key };
	if (!g.t)
		return -ENOMEM;
	if ((rc = sc_key_digest(ns, key, digest)) < 0)
		return rc;
	sc_hkey_make(c, digest, &hk);
	g.now = sc_now(c);

	rc = lookup(c, &hk, get_try_slot, &g);
	if (rc < 0)
		return rc;
	if (rc != READ_OK) {
		/* read-through: only where this handle runs a syncer that asked
		 * for it, under its short deadline (backends/syncer.c) */
		if (atomic_load_explicit(&c->hdr->tier.configured, memory_order_relaxed) &&
		    sc_tier_read_through(c, ns, key, digest, out) == 0) {
			COUNT(c, hits);
			return 0;
		}
		COUNT(c, misses);
		return SEMCACHE_ENOTFOUND;
	}
	mark_referenced(c, g.slot);
	COUNT(c, hits);
	if (flags & SEMCACHE_GET_TOUCH)
		(void)touch_entry(c, digest, &hk);
	*out = g.out;
	return 0;
}

/* ------------------------------------------------------------------------
 * Zero-copy get
 *
 * The reference pins its entry's chain with a hazard word (shm/proc.c):
 * published, then the slot re-checked, so a writer that retires the chain
 * afterwards keeps it in limbo until semcache_release().  The content's
 * byte range is found by parsing a short prefix of the record (the identity
 * and the content string header come first), the whole payload's checksum
 * is verified in place, and the iovecs point into the read-only mapping of
 * the arena, adjacent blocks merged.  A record whose content header lies
 * beyond the prefix (a huge namespace or key), whose content spans more
 * than SEMCACHE_REF_IOV runs of blocks, or a reference taken while every
 * hazard word of this process is in use, gets a private copy instead.
 * The iovecs live inside the reference (no pointer into itself), so it may
 * be copied or returned by value.
 * ---------------------------------------------------------------------- */
#define SC_REF_PREFIX 4096u
enum { READ_TOO_MANY_RUNS = 5 };

/* iovecs over record bytes [off, off + clen) of the chain at head, in the
 * read-only mapping. */
static int ref_build(semcache *c, uint32_t head, uint32_t nb, size_t off, size_t clen,
                     semcache_ref *ref)
{
	size_t pos = 0, end = off + clen, got = 0;
	uint32_t b = head;
	int k = 0;
	for (uint32_t i = 0; i < nb && pos < end; i++) {
		if (b >= c->nblocks)
			return READ_BAD;
		size_t lo = pos > off ? pos : off, hi = pos + c->block_size < end ? pos + c->block_size : end;
		if (lo < hi) {
			const uint8_t *p = c->ro_arena + ((size_t)b << c->block_shift) + (lo - pos);
			if (k > 0 && (const uint8_t *)ref->iov[k - 1].iov_base + ref->iov[k - 1].iov_len == p) {
				ref->iov[k - 1].iov_len += hi - lo;
			} else {
				if (k == SEMCACHE_REF_IOV)
					return READ_TOO_MANY_RUNS;
				ref->iov[k].iov_base = (void *)p;
				ref->iov[k].iov_len = hi - lo;
				k++;
			}
			got += hi - lo;
		}
		pos += c->block_size;
		b = atomic_load_explicit(&c->next[b], memory_order_relaxed);
	}
	ref->iovcnt = k;
	return got == clen ? READ_OK : READ_BAD;
}

/* The checksum of the chain's len bytes, read in place. */
static bool chain_checksum_ok(semcache *c, uint32_t head, uint32_t nb, uint32_t len,
                              uint32_t want)
{
	sc_csum st;
	sc_csum_init(&st, len);
	uint32_t b = head;
	for (uint32_t i = 0; i < nb; i++) {
		if (b >= c->nblocks)
			return false;
		const uint8_t *p = c->ro_arena + ((size_t)b << c->block_shift);
		if (i + 1 == nb)
			return sc_csum_final(&st, p, len) == want;
		sc_csum_strides(&st, p, c->block_size);
		len -= c->block_size;
		b = atomic_load_explicit(&c->next[b], memory_order_relaxed);
	}
	return false;
}

/* Clear *ref, freeing its private copy if it is still registered; false
 * when it had one that was not (released already, through a copy). */
static bool ref_reset(semcache_ref *ref)
{
	bool ok = true;
	if (ref->owned_) {
		ok = sc_owned_take(ref->owned_, ref->owned_id_);
		if (ok)
			free(ref->owned_);
	}
	memset(ref, 0, sizeof *ref);
	return ok;
}

/* Copy the content into memory the reference owns. */
static int ref_copy(semcache_ref *ref, const uint8_t *rec, size_t off, size_t clen)
{
	uint8_t *bytes = malloc(clen + 1);
	if (!bytes)
		return -ENOMEM;
	uint64_t id = sc_owned_add(bytes);
	if (!id) {
		free(bytes);
		return -ENOMEM;
	}
	memcpy(bytes, rec + off, clen);
	if (ref->owned_ && sc_owned_take(ref->owned_, ref->owned_id_))
		free(ref->owned_);
	ref->owned_ = bytes;
	ref->owned_id_ = id;
	ref->iov[0].iov_base = bytes;
	ref->iov[0].iov_len = clen;
	ref->iovcnt = 1;
	return READ_OK;
}

/* One attempt at slot s: READ_OK with ref filled (and, when pinned, its
 * hazard word held), or READ_* / -errno with nothing held. */
static int ref_slot(semcache *c, struct find *f, uint32_t s, bool pin)
{
	struct tls_scratch *t = f->t;
	semcache_ref *ref = f->ref;
	struct sc_slot *sl = &c->slot[s];
	uint32_t s1 = atomic_load_explicit(&sl->seq, memory_order_acquire);
	if (s1 & 1u)
		return READ_RETRY;
	uint32_t flags = SC_GET(sl->flags);
	uint8_t d[32];
	sc_seq_copy(d, sl->digest, 32);
	int64_t exp = SC_GET(sl->exact_exp_ms);
	uint32_t len = SC_GET(sl->len);
	uint32_t head = SC_GET(sl->head);
	uint32_t nb = SC_GET(sl->nblocks);
	uint32_t csum = SC_GET(sl->checksum);
	int r = READ_OK;
	if (!(flags & SC_SLOT_USED) || memcmp(d, f->digest, 32) != 0 || exp <= f->now)
		r = READ_EMPTY;
	else if (len == 0 || len > c->max_payload || nb != sc_blocks_for(c, len) ||
	         head >= c->nblocks)
		r = READ_BAD;
	if (r != READ_OK) {
		atomic_thread_fence(memory_order_acquire);
		return atomic_load_explicit(&sl->seq, memory_order_relaxed) != s1 ? READ_RETRY : r;
	}

	/* Pin the chain: publish its head, then check the slot still names it.
	 * From then on no writer reuses the chain until the hazard is cleared.
	 * With every hazard word of this process busy, the content is copied
	 * instead: the copy pins nothing. */
	uint32_t hk = 0, hval = head + 1;
	bool pinned = false, copy = false;
	if (pin) {
		int hr = sc_hazard_set(&c->seg, hval, &hk);
		if (hr == 0)
			pinned = true;
		else if (hr == -EMFILE)
			copy = true;
		else
			return hr;
		if (pinned && atomic_load_explicit(&sl->seq, memory_order_relaxed) != s1) {
			sc_hazard_clear(&c->seg, hk, hval);
			return READ_RETRY;
		}
	}
	if (!grow((void **)&t->rbuf, &t->rcap, len)) {
		r = -ENOMEM;
		goto out;
	}
	/* The identity and the content header sit at the front: parse the
	 * first block, then (rarely: long namespace or key) a 4 KB prefix. */
	uint32_t plen = copy ? len : len < c->block_size ? len : c->block_size;
	sc_ids ids;
	size_t off = 0, clen = 0;
	int sr = -1;
	if (sc_arena_read(c, head, sc_blocks_for(c, plen), t->rbuf, plen) == 0)
		sr = sc_codec_content_span(t->rbuf, plen, len, &ids, &off, &clen);
	if (sr < 0 && plen < len) {
		plen = len < SC_REF_PREFIX ? len : SC_REF_PREFIX;
		if (sc_arena_read(c, head, sc_blocks_for(c, plen), t->rbuf, plen) == 0)
			sr = sc_codec_content_span(t->rbuf, plen, len, &ids, &off, &clen);
	}
	if (sr < 0 && plen < len) {
		/* content header beyond the prefix: copy it all */
		copy = true;
		plen = len;
		if (sc_arena_read(c, head, nb, t->rbuf, len) == 0)
			sr = sc_codec_content_span(t->rbuf, len, len, &ids, &off, &clen);
	}
	if (sr < 0)
		r = READ_BAD;
	else if (!ids_equal(ids.ns, ids.ns_len, f->ns) || !ids_equal(ids.key, ids.key_len, f->key))
		r = READ_EMPTY;
	else if (copy)
		r = sc_checksum(t->rbuf, len) == csum ? ref_copy(ref, t->rbuf, off, clen) : READ_BAD;
	else if (!chain_checksum_ok(c, head, nb, len, csum))
		r = READ_BAD; /* a damaged payload is a miss, as for a copying get */
	else if ((r = ref_build(c, head, nb, off, clen, ref)) == READ_TOO_MANY_RUNS) {
		/* too fragmented for SEMCACHE_REF_IOV iovecs: a private copy,
		 * which pins nothing (the hazard goes once the copy is made) */
		r = sc_arena_read(c, head, nb, t->rbuf, len) == 0 ? ref_copy(ref, t->rbuf, off, clen)
		                                                  : READ_BAD;
		copy = true;
	}
	if (r == READ_OK)
		ref->len = clen;
	if (r >= 0) {
		atomic_thread_fence(memory_order_acquire);
		if (atomic_load_explicit(&sl->seq, memory_order_relaxed) != s1)
			r = READ_RETRY;
	}
out:
	if (r != READ_OK || copy) {
		if (pinned)
			sc_hazard_clear(&c->seg, hk, hval);
		pinned = false;
	}
	if (r != READ_OK) {
		ref_reset(ref);
		return r;
	}
	ref->handle_ = c;
	if (pinned) {
		uint64_t ticket = atomic_fetch_add_explicit(&c->ticket_seq, 1, memory_order_relaxed) + 1;
		atomic_store_explicit(&c->ref_ticket[hk], ticket, memory_order_relaxed);
		ref->ticket_ = ticket;
		ref->rec_ = c->seg.me_idx;
		ref->gen_ = c->seg.me_gen;
		ref->word_ = hk;
		ref->pin_ = hval;
	}
	return READ_OK;
}

static int ref_try_slot(semcache *c, uint32_t s, void *arg)
{
	struct find *f = arg;
	int rc = ref_slot(c, f, s, f->pin);
	if (rc == READ_OK)
		f->slot = s;
	return rc;
}

int sc_get_ref(semcache *c, const char *ns, const char *key, semcache_ref *ref, bool pin)
{
	struct tls_scratch *t;
	uint8_t digest[32];
	sc_hkey hk;
	int rc;

	if (c)
		sc_ensure_record(c);
	if (!ref)
		return -EINVAL;
	memset(ref, 0, sizeof *ref);
	if (!c || !ns || !key)
		return -EINVAL;
	if (pin && !c->seg.me)
		return SEMCACHE_EPROCFULL;
	if (!(t = scratch()))
		return -ENOMEM;
	if ((rc = sc_key_digest(ns, key, digest)) < 0)
		return rc;
	sc_hkey_make(c, digest, &hk);

	struct find f = { .t = t, .digest = digest, .ns = ns, .key = key, .now = sc_now(c),
	                  .ref = ref, .pin = pin };
	rc = lookup(c, &hk, ref_try_slot, &f);
	if (rc < 0)
		return rc;
	if (rc == READ_OK) {
		mark_referenced(c, f.slot);
		COUNT(c, hits);
		return 0;
	}
	COUNT(c, misses);
	return SEMCACHE_ENOTFOUND;
}

int semcache_get_ref(semcache *c, const char *ns, const char *key, semcache_ref *ref)
{
	return sc_get_ref(c, ns, key, ref, true);
}

int semcache_release(semcache *c, semcache_ref *ref)
{
	if (!ref)
		return -EINVAL;
	int rc = 0;
	if (ref->ticket_) {
		/* The handle that took it does the unpinning, whichever handle
		 * of this process is passed in, provided it is still open and
		 * still has the record (a child after fork() has its own: the
		 * parent's pin is not its to clear). */
		semcache *h = ref->handle_;
		uint32_t k = ref->word_;
		uint64_t ticket = ref->ticket_;
		if (!h || (h != c && !sc_handle_is_open(h)) || k >= SC_HAZARDS || !h->seg.me ||
		    h->seg.me_idx != ref->rec_ || h->seg.me_gen != ref->gen_)
			rc = -EINVAL;
		else if (atomic_compare_exchange_strong_explicit(&h->ref_ticket[k], &ticket, 0,
		                                                 memory_order_acq_rel,
		                                                 memory_order_relaxed))
			sc_hazard_clear(&h->seg, k, ref->pin_);
		else
			rc = -EINVAL; /* released already (through a copy of it) */
	}
	if (!ref_reset(ref))
		rc = -EINVAL; /* its private copy was released already */
	return rc;
}

/* ------------------------------------------------------------------------
 * search
 * ---------------------------------------------------------------------- */
/* Validate the query and normalise it into t->emb; *threshold NAN becomes
 * the segment's default (validated on attach, so in [-1, 1]). */
static int check_query(semcache *c, struct tls_scratch *t, const float *query, uint32_t dim,
                       float *threshold)
{
	if (!c->dim)
		return SEMCACHE_ENOSEMANTIC;
	if (dim != c->dim)
		return SEMCACHE_EDIM;
	if (isnan(*threshold))
		*threshold = c->threshold;
	if (!isfinite(*threshold) || *threshold < -1.0f || *threshold > 1.0f)
		return -EINVAL;
	if (!grow((void **)&t->emb, &t->ecap, (size_t)c->dim * 4))
		return -ENOMEM;
	return normalise(c, query, t->emb);
}

/* First pass: candidates by approximate score, re-scored exactly. */
static size_t scan_candidates(semcache *c, struct tls_scratch *t, uint64_t tag, int64_t now,
                              sc_cand *cand, size_t want)
{
	const sc_kernel *k = c->kernel;
	const float *q = t->emb;
	if (!c->quant)
		return k->scan_f32(c->matrix, c->row_stride, c->meta, c->slots, tag, now, q,
		                   c->dim, -2.0f, cand, want);

	sc_cand first[SC_TWOSTAGE_C];
	size_t n;
	if (!grow((void **)&t->qbuf, &t->qcap, c->qstride))
		return 0;
	if (c->quant == SC_QUANT_INT8) {
		float qs = sc_quant_i8(q, c->dim, (int8_t *)t->qbuf, c->qstride);
		n = k->scan_i8((const int8_t *)c->qmatrix, c->qstride, c->qscale, c->meta, c->slots,
		               tag, now, (const int8_t *)t->qbuf, qs, c->dim, first, SC_TWOSTAGE_C);
	} else {
		sc_quant_bits(q, c->dim, t->qbuf, c->qstride);
		n = k->scan_bits(c->qmatrix, c->qstride, c->meta, c->slots, tag, now, t->qbuf,
		                 c->dim, first, SC_TWOSTAGE_C);
	}
	size_t kept = 0;
	for (size_t i = 0; i < n; i++) {
		uint32_t r = first[i].row;
		if (r >= c->slots)
			continue;
		float sc = k->dot(c->matrix + (size_t)r * c->row_stride, q, c->dim);
		sc_topk_push(cand, &kept, want, r, sc);
	}
	return kept;
}

int semcache_search_topk(semcache *c, const char *ns, const char *scope, const float *query,
                         uint32_t dim, float threshold, semcache_match *matches, size_t k, size_t *n)
{
	struct tls_scratch *t;
	int rc;

	if (c)
		sc_ensure_record(c);
	if (!c || !ns || !query || !matches || !n || k == 0 || k > 64)
		return -EINVAL;
	*n = 0;
	if (!(t = scratch()))
		return -ENOMEM;
	if ((rc = check_query(c, t, query, dim, &threshold)) < 0)
		return rc;
	if (!scope)
		scope = "";
	uint64_t tag = sc_scope_tag(c, ns, strlen(ns), scope, strlen(scope));
	int64_t now = sc_now(c);

	sc_cand cand[64 + SC_SCAN_EXTRA];
	size_t want = k + SC_SCAN_EXTRA, got = 0;
	float best_seen = -2.0f;

	size_t nc = scan_candidates(c, t, tag, now, cand, want);
	for (size_t i = 0; i < nc && got < k; i++) {
		uint32_t s = cand[i].row;
		struct slot_view v;
		int r = READ_RETRY;
		for (int a = 0; a < SC_READ_RETRIES && r == READ_RETRY; a++)
			r = read_slot(c, t, s, NULL, t->emb, &v);
		if (r < 0) {
			rc = r;
			goto fail;
		}
		/* Re-validated under the sequence word: same scope, alive, and
		 * the score of the row as it is now, not as the scan saw it. */
		if (r != READ_OK || v.scope_tag != tag || v.sem_exp_ms <= now ||
		    !(v.flags & SC_SLOT_EMB) || !(v.score == v.score))
			continue;
		if (v.score > best_seen)
			best_seen = v.score;
		if (v.score < threshold)
			continue;
		/* The identity is copied into the response's own allocation, so
		 * the caller can check the candidate and frees one thing. */
		semcache_match m = { .similarity = v.score, .slot = s, .created_ms = v.created_ms,
		                     .exact_expiry_ms = v.exact_exp_ms,
		                     .semantic_expiry_ms = v.sem_exp_ms };
		rc = sc_codec_decode_with_ids(t->rbuf, v.len, &m.response, &m.ns, &m.key, &m.scope);
		if (rc == -ENOMEM)
			goto fail;
		/* Absolute isolation: the record itself must name the caller's
		 * namespace and scope, whatever the 64-bit tag said.  Stored
		 * strings hold no NUL (the codec refuses them), so strcmp is exact. */
		if (rc < 0 || strcmp(m.ns, ns) != 0 || strcmp(m.scope, scope) != 0) {
			semcache_response_free(m.response);
			continue;
		}
		mark_referenced(c, s);
		/* keep best first even if re-scoring reordered */
		size_t j = got++;
		while (j > 0 && matches[j - 1].similarity < v.score) {
			matches[j] = matches[j - 1];
			j--;
		}
		matches[j] = m;
	}
	*n = got;
	if (got) {
		COUNT(c, sem_hits);
	} else {
		COUNT(c, sem_misses);
		if (c->seg.me && best_seen > -2.0f)
			sc_count_best_miss(&c->seg.me->c, best_seen);
	}
	return 0;
fail:
	for (size_t i = 0; i < got; i++)
		semcache_response_free(matches[i].response);
	*n = 0;
	return rc;
}

int semcache_search_ex(semcache *c, const char *ns, const char *scope, const float *query,
                       uint32_t dim, float threshold, semcache_match *m)
{
	size_t n = 0;
	if (!m)
		return -EINVAL;
	memset(m, 0, sizeof *m);
	int rc = semcache_search_topk(c, ns, scope, query, dim, threshold, m, 1, &n);
	if (rc == 0 && n == 1)
		return 0;
	/* topk freed whatever it had placed: leave nothing that looks owned */
	memset(m, 0, sizeof *m);
	return rc < 0 ? rc : SEMCACHE_ENOTFOUND;
}

int semcache_search(semcache *c, const char *ns, const char *scope, const float *query,
                    uint32_t dim, float threshold, semcache_response **out, float *similarity)
{
	semcache_match m;
	if (!out)
		return -EINVAL;
	*out = NULL;
	int rc = semcache_search_ex(c, ns, scope, query, dim, threshold, &m);
	if (rc < 0)
		return rc;
	*out = m.response;
	if (similarity)
		*similarity = m.similarity;
	return 0;
}

/* ------------------------------------------------------------------------
 * delete
 * ---------------------------------------------------------------------- */
/*
 * One entry, found through the index by its digest (the SHA-256 of the
 * exact namespace and key, so no prefix or hash collision can widen it),
 * removed by sc_slot_clear(), which keeps the writer invariant.
 */
int semcache_delete(semcache *c, const char *ns, const char *key)
{
	uint8_t digest[32];
	sc_hkey hk;
	int rc;

	if (c)
		sc_ensure_record(c);
	if (!c || !ns || !key)
		return -EINVAL;
	if ((rc = sc_key_digest(ns, key, digest)) < 0)
		return rc;
	sc_hkey_make(c, digest, &hk);

	if ((rc = sc_wlock(c)) < 0)
		return rc;
	rc = SEMCACHE_ENOTFOUND;
	uint32_t s = sc_index_find_w(c, &hk);
	if (s != SC_NIL) {
		/* An entry past both deadlines was already gone for readers:
		 * removing it is reclaiming an expired entry, not a delete. */
		if (sc_slot_dead(&c->slot[s], sc_now(c))) {
			COUNT(c, expirations);
		} else {
			COUNT(c, deletes);
			rc = 0;
		}
		sc_outbox_del(c, s); /* other hosts drop it too (second tier) */
		sc_slot_clear(c, s);
		if (atomic_load_explicit(&c->hdr->limbo_fresh, memory_order_relaxed) >=
		    SC_RECLAIM_BATCH)
			sc_arena_reclaim(c);
	}
	sc_wunlock(c);
	return rc;
}

/* Under wlock: copy the key string of the entry slot s holds into out
 * (cap bytes, not NUL-terminated), read from its record in the arena.  The
 * key's length, or -1 when the record is unreadable, over-long for cap, or
 * memory is short (the outbox then carries no key: see outbox.c). */
int sc_slot_key(semcache *c, uint32_t s, char *out, size_t cap)
{
	struct tls_scratch *t = scratch();
	struct sc_slot *sl = &c->slot[s];
	sc_ids ids;
	uint32_t len = __atomic_load_n(&sl->len, __ATOMIC_RELAXED);
	uint32_t head = __atomic_load_n(&sl->head, __ATOMIC_RELAXED);
	uint32_t nb = __atomic_load_n(&sl->nblocks, __ATOMIC_RELAXED);

	if (!t || len == 0 || len > c->max_payload || !grow((void **)&t->rbuf, &t->rcap, len) ||
	    sc_arena_read(c, head, nb, t->rbuf, len) < 0 ||
	    sc_codec_peek_ids(t->rbuf, len, &ids) < 0 || ids.key_len > cap)
		return -1;
	memcpy(out, ids.key, ids.key_len);
	return (int)ids.key_len;
}

/* ------------------------------------------------------------------------
 * invalidate
 * ---------------------------------------------------------------------- */
int semcache_invalidate(semcache *c, const char *ns, const char *prefix, uint64_t *count_out)
{
	struct tls_scratch *t;
	uint64_t n = 0;
	int rc;

	if (c)
		sc_ensure_record(c);
	if (count_out)
		*count_out = 0;
	if (!c)
		return -EINVAL;
	if (!(t = scratch()))
		return -ENOMEM;
	if (prefix && !*prefix)
		prefix = NULL;
	size_t ns_len = ns ? strlen(ns) : 0, pfx_len = prefix ? strlen(prefix) : 0;
	uint64_t nsh = ns ? sc_ns_hash(c, ns, ns_len) : 0;

	if ((rc = sc_wlock(c)) < 0)
		return rc;
	int64_t now = sc_now(c);
	for (uint32_t s = 0; s < c->slots; s++) {
		struct sc_slot *sl = &c->slot[s];
		if (!(sl->flags & SC_SLOT_USED))
			continue;
		if (ns && sl->ns_hash != nsh)
			continue;
		if (ns || prefix) {
			/* Confirm with the record itself (the hash only filters).
			 * Each shared field is read once: a peer flipping them can
			 * only make the check fail. */
			sc_ids ids;
			uint32_t len = __atomic_load_n(&sl->len, __ATOMIC_RELAXED);
			uint32_t head = __atomic_load_n(&sl->head, __ATOMIC_RELAXED);
			uint32_t nb = __atomic_load_n(&sl->nblocks, __ATOMIC_RELAXED);
			if (len == 0 || len > c->max_payload || !grow((void **)&t->rbuf, &t->rcap, len) ||
			    sc_arena_read(c, head, nb, t->rbuf, len) < 0 ||
			    sc_codec_peek_ids(t->rbuf, len, &ids) < 0)
				continue; /* unreadable: verify reports it, repair drops it */
			if (ns && (ids.ns_len != ns_len || memcmp(ids.ns, ns, ns_len) != 0))
				continue;
			if (prefix && (ids.key_len < pfx_len || memcmp(ids.key, prefix, pfx_len) != 0))
				continue;
		}
		/* An expired entry goes too, counted as what it is. */
		if (sc_slot_dead(sl, now)) {
			COUNT(c, expirations);
		} else {
			n++;
		}
		sc_outbox_del(c, s);
		sc_slot_clear(c, s);
	}
	if (c->seg.me)
		atomic_fetch_add_explicit(&c->seg.me->c.invalidations, n, memory_order_relaxed);
	sc_arena_reclaim(c);
	sc_wunlock(c);
	if (count_out)
		*count_out = n;
	return 0;
}

/* ------------------------------------------------------------------------
 * Inspection
 * ---------------------------------------------------------------------- */
static void counters_load(semcache_counters *o, struct sc_counters *s)
{
	o->hits += atomic_load_explicit(&s->hits, memory_order_relaxed);
	o->misses += atomic_load_explicit(&s->misses, memory_order_relaxed);
	o->sem_hits += atomic_load_explicit(&s->sem_hits, memory_order_relaxed);
	o->sem_misses += atomic_load_explicit(&s->sem_misses, memory_order_relaxed);
	o->puts += atomic_load_explicit(&s->puts, memory_order_relaxed);
	o->evictions += atomic_load_explicit(&s->evictions, memory_order_relaxed);
	o->expirations += atomic_load_explicit(&s->expirations, memory_order_relaxed);
	o->invalidations += atomic_load_explicit(&s->invalidations, memory_order_relaxed);
	o->deletes += atomic_load_explicit(&s->deletes, memory_order_relaxed);
	uint32_t b = atomic_load_explicit(&s->sem_miss_best, memory_order_relaxed);
	if (b) {
		float f;
		memcpy(&f, &b, 4);
		if (f > o->sem_miss_best)
			o->sem_miss_best = f;
	}
}

int semcache_stat(semcache *c, semcache_stats *st)
{
	if (!c || !st)
		return -EINVAL;
	struct sc_header *h = c->hdr;
	memset(st, 0, sizeof *st);
	st->slots = c->slots;
	st->dim = c->dim;
	st->block_size = c->block_size;
	st->max_procs = c->max_procs;
	st->max_payload = c->max_payload;
	st->quant = c->quant;
	st->arena_bytes = (uint64_t)c->nblocks * c->block_size;
	st->segment_bytes = c->seg.size;
	st->exact_ttl_ms = c->exact_ttl_ms;
	st->semantic_ttl_ms = c->semantic_ttl_ms;
	st->threshold = c->threshold;
	st->created_ms = (uint64_t)h->created_ms;
	st->entries = atomic_load_explicit(&h->entries, memory_order_relaxed);
	st->blocks_total = c->nblocks;
	st->blocks_free = atomic_load_explicit(&h->free_count, memory_order_relaxed);
	st->blocks_limbo = atomic_load_explicit(&h->limbo_blocks, memory_order_relaxed);
	if (st->blocks_free + st->blocks_limbo > st->blocks_total)
		st->blocks_limbo = st->blocks_total - st->blocks_free; /* racing a writer */
	st->blocks_used = st->blocks_total - st->blocks_free - st->blocks_limbo;
	st->bytes_used = st->blocks_used * c->block_size;
	st->bytes_free = st->blocks_free * c->block_size;
	st->repairs = atomic_load_explicit(&h->repairs, memory_order_relaxed);
	st->total.sem_miss_best = -2.0f;
	counters_load(&st->total, &h->departed);
	/* Every record's counters count, live or not: a departed owner's stay
	 * in its record until the next claimant folds them into "departed". */
	uint32_t hwm = atomic_load_explicit(&h->procs_hwm, memory_order_relaxed);
	for (uint32_t i = 0; i < hwm && i < c->max_procs; i++) {
		counters_load(&st->total, &c->procs[i].c);
		if (sc_proc_alive(&c->seg, i))
			st->procs_attached++;
	}
	return 0;
}

int semcache_procs(semcache *c, semcache_proc_info *info, size_t cap, size_t *n)
{
	if (c)
		sc_ensure_record(c);
	if (!c || !n || (cap && !info))
		return -EINVAL;
	*n = 0;
	uint32_t hwm = atomic_load_explicit(&c->hdr->procs_hwm, memory_order_relaxed);
	for (uint32_t i = 0; i < hwm && i < c->max_procs && *n < cap; i++) {
		struct sc_proc *p = &c->procs[i];
		if (!sc_proc_alive(&c->seg, i))
			continue;
		semcache_proc_info *pi = &info[(*n)++];
		memset(pi, 0, sizeof *pi);
		pi->index = i;
		pi->pid = atomic_load_explicit(&p->pid, memory_order_relaxed);
		pi->attached_ms = atomic_load_explicit(&p->attached_ms, memory_order_relaxed);
		pi->alive = 1;
		pi->self = c->seg.me && i == c->seg.me_idx;
		for (int k = 0; k < SC_HAZARDS; k++)
			pi->pins += atomic_load_explicit(&p->hazard[k], memory_order_relaxed) != 0;
		pi->counters.sem_miss_best = -2.0f;
		counters_load(&pi->counters, &p->c);
	}
	return 0;
}

static char *ids_copy(struct tls_scratch *t, const sc_ids *ids)
{
	size_t need = ids->ns_len + ids->key_len + ids->scope_len + 3;
	if (!grow((void **)&t->ids, &t->icap, need))
		return NULL;
	char *p = t->ids;
	memcpy(p, ids->ns, ids->ns_len);
	p[ids->ns_len] = 0;
	memcpy(p + ids->ns_len + 1, ids->key, ids->key_len);
	p[ids->ns_len + 1 + ids->key_len] = 0;
	memcpy(p + ids->ns_len + ids->key_len + 2, ids->scope, ids->scope_len);
	p[need - 1] = 0;
	return p;
}

int semcache_foreach(semcache *c, const char *ns, const char *prefix,
                     int (*fn)(const semcache_entry_info *e, void *arg), void *arg)
{
	struct tls_scratch *t;
	if (!c || !fn)
		return -EINVAL;
	if (!(t = scratch()))
		return -ENOMEM;
	size_t ns_len = ns ? strlen(ns) : 0, pfx_len = prefix ? strlen(prefix) : 0;
	int64_t now = sc_now(c);

	for (uint32_t s = 0; s < c->slots; s++) {
		struct slot_view v;
		int r = READ_RETRY;
		for (int a = 0; a < SC_READ_RETRIES && r == READ_RETRY; a++)
			r = read_slot(c, t, s, NULL, NULL, &v);
		if (r < 0)
			return r;
		if (r != READ_OK || view_dead(&v, now))
			continue;
		sc_ids ids;
		if (sc_codec_peek_ids(t->rbuf, v.len, &ids) < 0)
			continue;
		if (ns && (ids.ns_len != ns_len || memcmp(ids.ns, ns, ns_len) != 0))
			continue;
		if (prefix && (ids.key_len < pfx_len || memcmp(ids.key, prefix, pfx_len) != 0))
			continue;
		char *p = ids_copy(t, &ids);
		if (!p)
			return -ENOMEM;
		semcache_entry_info e = {
			.ns = p,
			.key = p + ids.ns_len + 1,
			.scope = p + ids.ns_len + ids.key_len + 2,
			.created_ms = v.created_ms,
			.exact_expiry_ms = v.exact_exp_ms,
			.semantic_expiry_ms = (v.flags & SC_SLOT_EMB) ? v.sem_exp_ms : 0,
			.hits = v.hits,
			.size = v.len,
			.has_embedding = !!(v.flags & SC_SLOT_EMB),
			.slot = s,
		};
		int r2 = fn(&e, arg);
		if (r2)
			return r2;
	}
	return 0;
}

int semcache_verify(semcache *c, char *report, size_t report_len)
{
	if (!c)
		return -EINVAL;
	if (report && report_len)
		report[0] = '\0';
	if (c)
		sc_ensure_record(c);
	int rc = sc_wlock(c);
	if (rc < 0)
		return rc;
	rc = sc_check(c, report, report_len);
	sc_wunlock(c);
	return rc;
}
