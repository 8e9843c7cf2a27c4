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
	/* Geometry filled in here is a default for creation, not a demand on
	 * a segment that exists: without this, options_init() + open() failed
	 * with SEMCACHE_EGEOMETRY on any segment made with other sizes. */
	o->defaults = SEMCACHE_GEOM_ALL;
}

const char *semcache_version(int *major, int *minor, int *patch)
{
	if (major)
		*major = SEMCACHE_VERSION_MAJOR;
	if (minor)
		*minor = SEMCACHE_VERSION_MINOR;
	if (patch)
		*patch = SEMCACHE_VERSION_PATCH;
#define SC_STR_(x) #x
#define SC_STR(x) SC_STR_(x)
	return SC_STR(SEMCACHE_VERSION_MAJOR) "." SC_STR(SEMCACHE_VERSION_MINOR) "."
	       SC_STR(SEMCACHE_VERSION_PATCH);
#undef SC_STR
#undef SC_STR_
}

/*
 * What the caller demands of an existing segment: the geometry fields that
 * are requirements (see semcache_options in semcache.h), the others zeroed,
 * which the segment layer reads as "take the segment's".  A field is a
 * default when its bit is set in o->defaults and it still holds the value
 * semcache_options_init() gives it.
 */
static semcache_options attach_requirements(const semcache_options *o)
{
	semcache_options d, r = *o;
	semcache_options_init(&d);
#define SC_DEFAULTED(field, bit) ((o->defaults & (bit)) && o->field == d.field)
	if (SC_DEFAULTED(slots, SEMCACHE_GEOM_SLOTS))
		r.slots = 0;
	if (SC_DEFAULTED(dim, SEMCACHE_GEOM_DIM))
		r.dim = 0;
	if (SC_DEFAULTED(arena_bytes, SEMCACHE_GEOM_ARENA))
		r.arena_bytes = 0;
	if (SC_DEFAULTED(block_size, SEMCACHE_GEOM_BLOCK_SIZE))
		r.block_size = 0;
	if (SC_DEFAULTED(max_procs, SEMCACHE_GEOM_MAX_PROCS))
		r.max_procs = 0;
	if (SC_DEFAULTED(max_payload, SEMCACHE_GEOM_MAX_PAYLOAD))
		r.max_payload = 0;
#undef SC_DEFAULTED
	return r;
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
static pthread_mutex_t owned_mu = PTHREAD_MUTEX_INITIALIZER; /* see sc_owned_add */
static semcache *reg_head;
static pthread_once_t reg_once = PTHREAD_ONCE_INIT;

/* A handle is on the list from before its descriptor exists until after it
 * is closed, and descriptors are opened and closed under reg_mu (the
 * segment layer takes it through seg.fd_mu, never across a wait): a fork
 * in another thread never copies a descriptor the child's handler does
 * not close. */
static void fork_prepare(void)
{
	pthread_mutex_lock(&reg_mu);
	pthread_mutex_lock(&owned_mu);
}

static void fork_parent(void)
{
	pthread_mutex_unlock(&owned_mu);
	pthread_mutex_unlock(&reg_mu);
}

static void fork_child(void)
{
	/* The child must not speak through the parent's record or file
	 * description: it claims its own on its first call (sc_ensure_record),
	 * so a child that only exec()s claims nothing. */
	pthread_mutex_init(&reg_mu, NULL);
	pthread_mutex_init(&owned_mu, NULL);
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

/* ------------------------------------------------------------------------
 * Private copies handed out by zero-copy references (see core/cache.c):
 * every live one is registered here with an id, so a release frees a copy
 * once, and a second release (of a copy of the reference) is told apart
 * instead of freeing it twice - or freeing another reference's copy that
 * malloc placed at the same address.  A sorted array: few copies are
 * outstanding at once.
 * ---------------------------------------------------------------------- */
struct owned_copy {
	void *p;
	uint64_t id; /* unique for the process's lifetime: a freed address that
	              * malloc hands out again gets another id */
};
static struct owned_copy *owned;
static size_t owned_n, owned_cap;
static uint64_t owned_seq;

static size_t owned_pos(const void *p)
{
	size_t lo = 0, hi = owned_n;
	while (lo < hi) {
		size_t mid = (lo + hi) / 2;
		if ((uintptr_t)owned[mid].p < (uintptr_t)p)
			lo = mid + 1;
		else
			hi = mid;
	}
	return lo;
}

uint64_t sc_owned_add(void *p)
{
	uint64_t id = 0;
	pthread_mutex_lock(&owned_mu);
	if (owned_n == owned_cap) {
		size_t cap = owned_cap ? owned_cap * 2 : 64;
		struct owned_copy *n = realloc(owned, cap * sizeof *n);
		if (!n)
			goto out;
		owned = n;
		owned_cap = cap;
	}
	size_t i = owned_pos(p);
	memmove(owned + i + 1, owned + i, (owned_n - i) * sizeof *owned);
	id = ++owned_seq;
	owned[i].p = p;
	owned[i].id = id;
	owned_n++;
out:
	pthread_mutex_unlock(&owned_mu);
	return id;
}

bool sc_owned_take(void *p, uint64_t id)
{
	bool found = false;
	pthread_mutex_lock(&owned_mu);
	size_t i = owned_pos(p);
	if (i < owned_n && owned[i].p == p && owned[i].id == id) {
		memmove(owned + i, owned + i + 1, (owned_n - i - 1) * sizeof *owned);
		owned_n--;
		found = true;
	}
	pthread_mutex_unlock(&owned_mu);
	return found;
}

/* Every thread of a forked child that uses the handle first waits here
 * until one of them has claimed the child's record.  A child that cannot
 * claim one (table full, segment file replaced) keeps a handle for copying
 * reads; calls that need a record return SEMCACHE_EPROCFULL. */
void sc_ensure_record_slow(semcache *c)
{
	pthread_mutex_lock(&c->rec_mu);
	if (atomic_load_explicit(&c->need_record, memory_order_relaxed)) {
		/* A NORECORD handle takes no record here either, but gets its own
		 * file description back, or it could not tell live records from
		 * dead ones (sc_proc_alive would answer "alive" for all). */
		(void)sc_seg_reattach(&c->seg, !c->norecord);
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
	semcache_options co = defaults, req;
	if (opts) {
		if (!SC_RESERVED_ZERO(opts) || (opts->defaults & ~SEMCACHE_GEOM_ALL))
			return -EINVAL;
		req = attach_requirements(opts);
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
	pthread_mutex_init(&c->tier_mu, NULL);
	c->clock_ms = co.clock_ms;
	c->clock_arg = co.clock_arg;
	c->norecord = (co.flags & SEMCACHE_OPEN_NORECORD) != 0;
	pthread_once(&reg_once, reg_init);
	c->seg.fd = -1;
	c->seg.fd_mu = &reg_mu;
	reg_add(c);
	if ((rc = sc_seg_open(&c->seg, path, opts ? &req : NULL, &co)) < 0)
		goto fail;
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
			goto fail;
		}
		sc_wunlock(c);
	}
	*out = c;
	return 0;
fail:
	reg_remove(c);
	pthread_mutex_destroy(&c->rec_mu);
	pthread_mutex_destroy(&c->tier_mu);
	free(c->hz);
	free(c);
	return rc;
}

int semcache_close(semcache *c)
{
	if (!c)
		return 0;
	sc_tier_close(c);
	sc_seg_close(&c->seg); /* its descriptor closes under reg_mu */
	reg_remove(c);
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
