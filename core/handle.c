/*
 * handle.c - the cache handle: open and close on top of the segment layer,
 * fork, and the writer lock with repair.
 *
 * A handle is the segment layer's view (shm/segment.h: file, mapping,
 * validated geometry, process record) plus pointers to the cache's regions.
 * Handles are kept on a list so that a fork() child lets go of its parent's
 * file description and record (sc_seg_fork_child) and claims its own on
 * its first call.
 *
 * The writer lock (shm/lock.c) reports a previous holder that died; this
 * file is where the cache answers that, by repairing (core/repair.c) before
 * the caller writes anything.  Who repairs after a writer dies, and why:
 * the next lock taker (a put, delete, invalidate, verify, or the tool).
 * Writers keep an invariant at every instruction - a live (even, used)
 * slot is reachable from the index - so a dead writer hides at most the
 * entry it was writing (its slot is left odd: not listed, not found), and
 * readers meanwhile need nothing repaired.  Only writer-side state (free
 * list, limbo, counts) waits for the repair, and only writers use it.
 */
#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "internal.h"

void semcache_options_init(semcache_options *o)
{
	if (!o)
		return;
	memset(o, 0, sizeof *o);
	o->slots = 65536;
	o->dim = 384;
	o->arena_bytes = UINT64_C(64) << 20;
	o->block_size = 256;
	o->max_procs = 256;
	o->max_payload = 1u << 20;
	o->exact_ttl_ms = INT64_C(3600) * 1000;
	o->semantic_ttl_ms = INT64_C(86400) * 1000;
	o->threshold = 0.92f;
}

int64_t sc_now(const semcache *c)
{
	if (c->clock_ms)
		return c->clock_ms(c->clock_arg);
	return sc_wall_ms();
}

/* ------------------------------------------------------------------------
 * Writer lock
 * ---------------------------------------------------------------------- */
int sc_wlock(semcache *c)
{
	int r = sc_lock_take(&c->seg, false);
	if (r < 0)
		return r;
	if (r == SC_LOCK_REPAIR) {
		int rr = sc_repair(c);
		if (rr < 0) {
			/* needs_repair stays set: the next taker tries again */
			sc_lock_drop(&c->seg);
			return rr;
		}
		atomic_store_explicit(&c->hdr->needs_repair, 0, memory_order_relaxed);
	}
	return 0;
}

void sc_wunlock(semcache *c)
{
	sc_lock_drop(&c->seg);
}

/* ------------------------------------------------------------------------
 * Registry of open handles, so a forked child can re-register each one.
 * ---------------------------------------------------------------------- */
static pthread_mutex_t reg_mu = PTHREAD_MUTEX_INITIALIZER;
static semcache *reg_head;
static pthread_once_t reg_once = PTHREAD_ONCE_INIT;

static void fork_prepare(void) { pthread_mutex_lock(&reg_mu); }
static void fork_parent(void) { pthread_mutex_unlock(&reg_mu); }

static void fork_child(void)
{
	/* The child must not speak through the parent's record or file
	 * description: it claims its own on its first call (sc_ensure_record),
	 * so a child that only exec()s claims nothing. */
	pthread_mutex_init(&reg_mu, NULL);
	for (semcache *c = reg_head; c; c = c->reg_next) {
		sc_seg_fork_child(&c->seg);
		/* the parent's references are not ours to release */
		for (int k = 0; k < SC_HAZARDS; k++)
			atomic_store_explicit(&c->ref_ticket[k], 0, memory_order_relaxed);
		pthread_mutex_init(&c->rec_mu, NULL); /* a parent thread may have held it */
		/* the parent's syncer thread did not come along */
		c->tier_rt = NULL;
		pthread_mutex_init(&c->tier_mu, NULL);
		atomic_store_explicit(&c->need_record, 1, memory_order_relaxed);
	}
}

static void reg_init(void) { pthread_atfork(fork_prepare, fork_parent, fork_child); }

static void reg_add(semcache *c)
{
	pthread_once(&reg_once, reg_init);
	pthread_mutex_lock(&reg_mu);
	c->reg_prev = NULL;
	c->reg_next = reg_head;
	if (reg_head)
		reg_head->reg_prev = c;
	reg_head = c;
	pthread_mutex_unlock(&reg_mu);
}

bool sc_handle_is_open(const semcache *h)
{
	bool found = false;
	pthread_mutex_lock(&reg_mu);
	for (semcache *c = reg_head; c && !found; c = c->reg_next)
		found = c == h;
	pthread_mutex_unlock(&reg_mu);
	return found;
}

static void reg_remove(semcache *c)
{
	pthread_mutex_lock(&reg_mu);
	if (c->reg_prev)
		c->reg_prev->reg_next = c->reg_next;
	else if (reg_head == c)
		reg_head = c->reg_next;
	if (c->reg_next)
		c->reg_next->reg_prev = c->reg_prev;
	pthread_mutex_unlock(&reg_mu);
}

/* Every thread of a forked child that uses the handle first waits here
 * until one of them has claimed the child's record.  A child that cannot
 * claim one (table full, segment file replaced) keeps a handle for copying
 * reads; calls that need a record return SEMCACHE_EPROCFULL. */
void sc_ensure_record_slow(semcache *c)
{
	pthread_mutex_lock(&c->rec_mu);
	if (atomic_load_explicit(&c->need_record, memory_order_relaxed)) {
		if (!c->norecord)
			(void)sc_seg_reattach(&c->seg);
		atomic_store_explicit(&c->need_record, 0, memory_order_release);
	}
	pthread_mutex_unlock(&c->rec_mu);
}

/* ------------------------------------------------------------------------
 * Open / close
 * ---------------------------------------------------------------------- */
static void bind_regions(semcache *c)
{
	const struct sc_geom *g = &c->seg.g;
	uint8_t *base = c->seg.base;
	c->slots = g->slots;
	c->dim = g->dim;
	c->row_stride = g->row_stride;
	c->buckets = g->buckets;
	c->block_size = g->block_size;
	c->block_shift = g->block_shift;
	c->nblocks = g->nblocks;
	c->max_procs = g->max_procs;
	c->max_payload = g->max_payload;
	c->quant = g->quant;
	c->qstride = g->qstride;
	c->exact_ttl_ms = g->exact_ttl_ms;
	c->semantic_ttl_ms = g->semantic_ttl_ms;
	c->threshold = g->threshold;
	c->secret[0] = g->secret[0];
	c->secret[1] = g->secret[1];
	c->hdr = c->seg.hdr;
	c->procs = c->seg.procs;
	c->index = (struct sc_bucket *)(base + g->off_index);
	c->slot = (struct sc_slot *)(base + g->off_slots);
	c->meta = (sc_scanmeta *)(base + g->off_meta);
	c->matrix = (float *)(base + g->off_matrix);
	c->qmatrix = base + g->off_qmatrix;
	c->qscale = (float *)(base + g->off_qscale);
	c->next = (_Atomic uint32_t *)(base + g->off_next);
	c->lnext = (_Atomic uint32_t *)(base + g->off_lnext);
	c->arena = base + g->off_arena;
	c->ro_arena = c->seg.ro_arena;
	c->outbox = (struct sc_obitem *)(base + g->off_outbox);
	c->outbox_cap = g->outbox_cap;
}

int semcache_open(const char *path, const semcache_options *opts, semcache **out)
{
	semcache_options defaults;
	semcache *c = NULL;
	int rc;

	if (!out)
		return -EINVAL;
	*out = NULL;
	semcache_options_init(&defaults);
	if (!path)
		path = SEMCACHE_DEFAULT_PATH;
	if (!*path)
		return -EINVAL;

	/* Creation takes the caller's geometry where given, defaults elsewhere. */
	semcache_options co = defaults;
	if (opts) {
		co = *opts;
		if (!co.slots) co.slots = defaults.slots;
		if (!co.arena_bytes) co.arena_bytes = defaults.arena_bytes;
		if (!co.block_size) co.block_size = defaults.block_size;
		if (!co.max_procs) co.max_procs = defaults.max_procs;
		if (!co.max_payload) co.max_payload = defaults.max_payload;
		if (!co.exact_ttl_ms) co.exact_ttl_ms = defaults.exact_ttl_ms;
		if (!co.semantic_ttl_ms) co.semantic_ttl_ms = defaults.semantic_ttl_ms;
		if (co.flags & ~(SEMCACHE_OPEN_NOCREATE | SEMCACHE_OPEN_EXCL | SEMCACHE_OPEN_GROUP |
		                 SEMCACHE_OPEN_NORECORD | SEMCACHE_QUANT_INT8 | SEMCACHE_QUANT_BITS))
			return -EINVAL;
	}

	c = calloc(1, sizeof *c);
	if (!c)
		return -ENOMEM;
	pthread_mutex_init(&c->rec_mu, NULL);
	c->clock_ms = co.clock_ms;
	c->clock_arg = co.clock_arg;
	c->norecord = (co.flags & SEMCACHE_OPEN_NORECORD) != 0;
	if ((rc = sc_seg_open(&c->seg, path, opts, &co)) < 0) {
		pthread_mutex_destroy(&c->rec_mu);
		free(c);
		return rc;
	}
	bind_regions(c);
	c->kernel = sc_kernel_select();
	if (c->seg.lone && c->seg.me) {
		/* Nobody else has it open: whatever happened before (every user
		 * killed mid-write, a copied or damaged file) is checked and
		 * repaired now, in place, as LMDB recovers its lock file on a
		 * first open. */
		atomic_store_explicit(&c->hdr->needs_repair, 1, memory_order_relaxed);
		if ((rc = sc_wlock(c)) < 0) {
			sc_seg_close(&c->seg);
			pthread_mutex_destroy(&c->rec_mu);
			free(c->hz);
			free(c);
			return rc;
		}
		sc_wunlock(c);
	}
	pthread_mutex_init(&c->tier_mu, NULL);
	reg_add(c);
	*out = c;
	return 0;
}

int semcache_close(semcache *c)
{
	if (!c)
		return 0;
	sc_tier_close(c);
	reg_remove(c);
	sc_seg_close(&c->seg);
	pthread_mutex_destroy(&c->rec_mu);
	pthread_mutex_destroy(&c->tier_mu);
	free(c->hz);
	free(c);
	return 0;
}

int semcache_destroy(const char *path, int force)
{
	return sc_seg_destroy(path ? path : SEMCACHE_DEFAULT_PATH, force);
}
