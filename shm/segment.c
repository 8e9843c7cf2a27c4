/*
 * segment.c - create, attach, validate and detach the shared segment.
 *
 * File locking protocol (flock on the segment file):
 *  - Every attached process holds a shared lock for as long as it is
 *    attached (forked children share it through the inherited descriptor).
 *  - An opener first tries an exclusive lock without waiting.  Getting it
 *    means nobody else is attached: the opener creates or (re)initialises
 *    the file if it is empty or was left half-initialised, and otherwise
 *    "resets the lock table" as LMDB does: it re-initialises the writer
 *    mutex, releases every process record (all their owners are gone) and
 *    repairs the structure, so a segment whose users all died mid-write, or
 *    a copied or corrupted file, starts consistent.  Then it downgrades to a
 *    shared lock.
 *  - Otherwise it waits for a shared lock (an initialiser holds the
 *    exclusive one only briefly) and validates what it finds.
 * The creator stores `magic` last (release), so a process that sees magic
 * sees a whole header.
 *
 * Validation refuses, with a specific code and without touching anything:
 * a file that is not a segment, one shorter than its header says, another
 * layout version, another struct layout (format signature), a header whose
 * immutable part fails its keyed checksum, and options contradicting the
 * stored geometry.
 */
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <pthread.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "../core/internal.h"

/* Fixed key for the header checksum: it detects damage, not forgery. */
static const uint64_t geom_key[2] = { UINT64_C(0x5345474d454e5431), UINT64_C(0x6c61796f75742121) };

static size_t align_up(size_t v, size_t a) { return (v + a - 1) & ~(a - 1); }
static bool is_pow2(uint64_t v) { return v && !(v & (v - 1)); }

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
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* ------------------------------------------------------------------------
 * Geometry: one function computes every offset, used both to lay out a new
 * segment and to check an existing one, so the two can never disagree.
 * ---------------------------------------------------------------------- */
struct geom {
	uint32_t slots, dim, row_stride, buckets, block_size, nblocks;
	uint32_t max_procs, max_payload, quant, qstride;
	uint64_t off_procs, off_index, off_slots, off_meta, off_matrix;
	uint64_t off_qmatrix, off_qscale, off_next, off_arena, file_size;
};

static int geom_layout(struct geom *g)
{
	if (g->slots < SC_MIN_SLOTS || g->slots > SC_MAX_SLOTS || g->dim > SC_MAX_DIM ||
	    g->max_procs < 1 || g->max_procs > SC_MAX_PROCS || !is_pow2(g->block_size) ||
	    g->block_size < SC_MIN_BLOCK || g->block_size > SC_MAX_BLOCK ||
	    g->nblocks < 2 || g->nblocks > SC_MAX_NBLOCKS || g->quant > SC_QUANT_BITS ||
	    (g->quant && !g->dim) || g->max_payload < 64 || g->max_payload > (1u << 30))
		return -EINVAL;
	/* Room for at least two largest payloads, so one can be written while
	 * another waits in limbo. */
	if ((uint64_t)g->nblocks * g->block_size < 2 * (uint64_t)g->max_payload)
		return -EINVAL;
	/* Index sized for 25% occupancy of its ways when every slot is used:
	 * a bucket then overflows (dropping an entry) with Poisson(2) odds of
	 * about 2.4e-4, a few entries in a full 65536-slot cache. */
	uint64_t b = ((uint64_t)g->slots * 4 + SC_WAYS - 1) / SC_WAYS;
	uint64_t buckets = 1;
	while (buckets < b)
		buckets <<= 1;
	g->buckets = (uint32_t)buckets;
	g->row_stride = g->dim ? (uint32_t)sc_row_stride(g->dim) : 0;
	g->qstride = g->quant == SC_QUANT_INT8 ? (uint32_t)sc_i8_stride(g->dim)
	           : g->quant == SC_QUANT_BITS ? (uint32_t)sc_bits_stride(g->dim) : 0;

	uint64_t off = SC_HDR_SIZE;
	g->off_procs = off;   off = align_up(off + (uint64_t)g->max_procs * sizeof(struct sc_proc), SC_ALIGN);
	g->off_index = off;   off = align_up(off + (uint64_t)g->buckets * sizeof(struct sc_bucket), SC_ALIGN);
	g->off_slots = off;   off = align_up(off + (uint64_t)g->slots * sizeof(struct sc_slot), SC_ALIGN);
	g->off_meta = off;    off = align_up(off + (uint64_t)g->slots * sizeof(sc_scanmeta), 4096);
	g->off_matrix = off;  off = align_up(off + (uint64_t)g->slots * g->row_stride * 4, SC_ALIGN);
	g->off_qmatrix = off; off = align_up(off + (uint64_t)g->slots * g->qstride, SC_ALIGN);
	g->off_qscale = off;  off = align_up(off + (g->quant == SC_QUANT_INT8 ? (uint64_t)g->slots * 4 : 0), SC_ALIGN);
	g->off_next = off;    off = align_up(off + (uint64_t)g->nblocks * 4, 4096);
	g->off_arena = off;   off = align_up(off + (uint64_t)g->nblocks * g->block_size, 4096);
	g->file_size = off;
	return 0;
}

static uint64_t header_sum(const struct sc_header *h)
{
	return sc_siphash(geom_key, (const uint8_t *)h + 8, offsetof(struct sc_header, geom_sum) - 8);
}

static void geom_from_header(const struct sc_header *h, struct geom *g)
{
	memset(g, 0, sizeof *g);
	g->slots = h->slots;
	g->dim = h->dim;
	g->block_size = h->block_size;
	g->nblocks = h->nblocks;
	g->max_procs = h->max_procs;
	g->max_payload = h->max_payload;
	g->quant = h->quant;
}

static bool geom_matches_header(const struct geom *g, const struct sc_header *h)
{
	return g->row_stride == h->row_stride && g->buckets == h->buckets &&
	       g->qstride == h->qstride && g->off_procs == h->off_procs &&
	       g->off_index == h->off_index && g->off_slots == h->off_slots &&
	       g->off_meta == h->off_meta &&
	       g->off_matrix == h->off_matrix && g->off_qmatrix == h->off_qmatrix &&
	       g->off_qscale == h->off_qscale && g->off_next == h->off_next &&
	       g->off_arena == h->off_arena && g->file_size == h->file_size;
}

static int geom_from_options(const semcache_options *o, struct geom *g)
{
	memset(g, 0, sizeof *g);
	if (o->block_size == 0 || o->arena_bytes / o->block_size > SC_MAX_NBLOCKS)
		return -EINVAL;
	g->slots = o->slots;
	g->dim = o->dim;
	g->block_size = o->block_size;
	g->nblocks = (uint32_t)(o->arena_bytes / o->block_size);
	g->max_procs = o->max_procs;
	g->max_payload = o->max_payload;
	g->quant = (o->flags & SEMCACHE_QUANT_BITS) ? SC_QUANT_BITS
	         : (o->flags & SEMCACHE_QUANT_INT8) ? SC_QUANT_INT8 : SC_QUANT_NONE;
	if ((o->flags & SEMCACHE_QUANT_BITS) && (o->flags & SEMCACHE_QUANT_INT8))
		return -EINVAL;
	if (o->exact_ttl_ms <= 0 || o->semantic_ttl_ms <= 0 || !isfinite(o->threshold) ||
	    o->threshold < -1.0f || o->threshold > 1.0f)
		return -EINVAL;
	return geom_layout(g);
}

/* Options name geometry explicitly (non-zero) only where the caller cares. */
static int check_options_against(const semcache_options *o, const struct sc_header *h)
{
	if (!o)
		return 0;
	if ((o->slots && o->slots != h->slots) || (o->dim && o->dim != h->dim) ||
	    (o->block_size && o->block_size != h->block_size) ||
	    (o->arena_bytes && o->block_size &&
	     o->arena_bytes / o->block_size != h->nblocks) ||
	    (o->max_procs && o->max_procs != h->max_procs) ||
	    (o->max_payload && o->max_payload != h->max_payload))
		return SEMCACHE_EGEOMETRY;
	uint32_t q = (o->flags & SEMCACHE_QUANT_BITS) ? SC_QUANT_BITS
	           : (o->flags & SEMCACHE_QUANT_INT8) ? SC_QUANT_INT8 : SC_QUANT_NONE;
	if (q && q != h->quant)
		return SEMCACHE_EGEOMETRY;
	return 0;
}

/* ------------------------------------------------------------------------
 * Writer mutex
 * ---------------------------------------------------------------------- */
static int wlock_init(pthread_mutex_t *m)
{
	pthread_mutexattr_t a;
	int r = pthread_mutexattr_init(&a);
	if (r)
		return -r;
	r = pthread_mutexattr_setpshared(&a, PTHREAD_PROCESS_SHARED);
	if (!r)
		r = pthread_mutexattr_setrobust(&a, PTHREAD_MUTEX_ROBUST);
	if (!r)
		r = pthread_mutex_init(m, &a);
	pthread_mutexattr_destroy(&a);
	return -r;
}

static int wlock_acquired(semcache *c, int r)
{
	if (r == EOWNERDEAD) {
		/* The holder died inside a write.  Record that the structure needs
		 * repair before making the mutex usable again: if the repair below
		 * fails (or we die in it), the next holder sees the flag and
		 * repairs, instead of trusting a half-changed structure. */
		atomic_store_explicit(&c->hdr->needs_repair, 1, memory_order_relaxed);
		pthread_mutex_consistent(&c->hdr->wlock);
		atomic_fetch_add_explicit(&c->hdr->repairs, 1, memory_order_relaxed);
		r = 0;
	}
	if (r == 0) {
		if (atomic_load_explicit(&c->hdr->needs_repair, memory_order_relaxed)) {
			int rr = sc_repair(c);
			if (rr < 0) {
				pthread_mutex_unlock(&c->hdr->wlock);
				return rr;
			}
			atomic_store_explicit(&c->hdr->needs_repair, 0, memory_order_relaxed);
		}
		c->hdr->writer_pid = c->pid;
		return 0;
	}
	if (r == ENOTRECOVERABLE)
		return SEMCACHE_ECORRUPT;
	return -r;
}

int sc_wlock(semcache *c)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	ts.tv_sec += 30; /* no live writer holds it for more than milliseconds */
	int r = pthread_mutex_clocklock(&c->hdr->wlock, CLOCK_MONOTONIC, &ts);
	if (r == ETIMEDOUT)
		return SEMCACHE_EBUSY;
	return wlock_acquired(c, r);
}

int sc_wtrylock(semcache *c)
{
	int r = pthread_mutex_trylock(&c->hdr->wlock);
	if (r == EBUSY)
		return -EBUSY;
	return wlock_acquired(c, r);
}

void sc_wunlock(semcache *c)
{
	c->hdr->writer_pid = 0;
	pthread_mutex_unlock(&c->hdr->wlock);
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
	/* The child inherits the mapping and the flock (shared descriptor) but
	 * must not speak through the parent's process record: it claims its
	 * own on its first call (sc_ensure_record), so a child that only
	 * exec()s another program holds no record.  A handle whose record
	 * cannot be claimed keeps working for copying reads and writes and
	 * counts into no record (me == NULL). */
	pthread_mutex_init(&reg_mu, NULL);
	for (semcache *c = reg_head; c; c = c->reg_next) {
		c->pid = getpid();
		c->me = NULL;
		pthread_mutex_init(&c->rec_mu, NULL); /* a parent thread may have held it */
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
 * Create / attach
 * ---------------------------------------------------------------------- */
static void bind_regions(semcache *c, const struct sc_header *h)
{
	c->slots = h->slots;
	c->dim = h->dim;
	c->row_stride = h->row_stride;
	c->buckets = h->buckets;
	c->block_size = h->block_size;
	c->block_shift = (uint32_t)__builtin_ctz(h->block_size);
	c->nblocks = h->nblocks;
	c->max_procs = h->max_procs;
	c->max_payload = h->max_payload;
	c->quant = h->quant;
	c->qstride = h->qstride;
	c->exact_ttl_ms = h->exact_ttl_ms;
	c->semantic_ttl_ms = h->semantic_ttl_ms;
	c->threshold = h->threshold;
	c->secret[0] = h->secret[0];
	c->secret[1] = h->secret[1];
	c->hdr = (struct sc_header *)c->base;
	c->procs = (struct sc_proc *)(c->base + h->off_procs);
	c->index = (struct sc_bucket *)(c->base + h->off_index);
	c->slot = (struct sc_slot *)(c->base + h->off_slots);
	c->meta = (sc_scanmeta *)(c->base + h->off_meta);
	c->matrix = (float *)(c->base + h->off_matrix);
	c->qmatrix = c->base + h->off_qmatrix;
	c->qscale = (float *)(c->base + h->off_qscale);
	c->next = (_Atomic uint32_t *)(c->base + h->off_next);
	c->arena = c->base + h->off_arena;
}

static int map_file(semcache *c, size_t size)
{
	/* MAP_POPULATE: fault every page in now, so the first put or get of
	 * each page does not pay a page fault (measured: puts were 3x slower
	 * on a fresh segment without it). */
	void *p = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_POPULATE, c->fd, 0);
	if (p == MAP_FAILED)
		return -errno;
	/* Lookups touch random lines across the whole segment, so TLB misses
	 * matter: ask for huge pages (effective where tmpfs allows them, i.e.
	 * shmem_enabled=advise or a /dev/shm mounted with huge=within_size). */
	(void)madvise(p, size, MADV_HUGEPAGE);
	c->base = p;
	c->size = size;
	return 0;
}

static void unmap_file(semcache *c)
{
	if (c->base)
		munmap(c->base, c->size);
	c->base = NULL;
	c->size = 0;
}

/* Lay out a new segment in an empty (or abandoned) file; we hold LOCK_EX. */
static int create_segment(semcache *c, const semcache_options *o)
{
	struct geom g;
	int rc = geom_from_options(o, &g);
	if (rc < 0)
		return rc;
	if (ftruncate(c->fd, 0) < 0 || ftruncate(c->fd, (off_t)g.file_size) < 0)
		return -errno;
	/* Back the file now, so running out of /dev/shm is an error here and
	 * not a SIGBUS in some worker later. */
	rc = posix_fallocate(c->fd, 0, (off_t)g.file_size);
	if (rc && rc != EOPNOTSUPP && rc != EINVAL)
		return -rc;
	rc = map_file(c, g.file_size);
	if (rc < 0)
		return rc;

	struct sc_header *h = (struct sc_header *)c->base;
	h->version = SC_LAYOUT_VERSION;
	h->hdr_size = SC_HDR_SIZE;
	h->signature = sc_layout_signature();
	if ((rc = sc_random_bytes(h->creation_id, sizeof h->creation_id)) < 0 ||
	    (rc = sc_random_bytes(h->secret, sizeof h->secret)) < 0)
		return rc;
	h->file_size = g.file_size;
	h->slots = g.slots;
	h->dim = g.dim;
	h->row_stride = g.row_stride;
	h->buckets = g.buckets;
	h->block_size = g.block_size;
	h->nblocks = g.nblocks;
	h->max_procs = g.max_procs;
	h->max_payload = g.max_payload;
	h->quant = g.quant;
	h->qstride = g.qstride;
	h->exact_ttl_ms = o->exact_ttl_ms;
	h->semantic_ttl_ms = o->semantic_ttl_ms;
	h->threshold = o->threshold;
	h->flags = o->flags & SEMCACHE_OPEN_GROUP;
	h->off_procs = g.off_procs;
	h->off_index = g.off_index;
	h->off_slots = g.off_slots;
	h->off_meta = g.off_meta;
	h->off_matrix = g.off_matrix;
	h->off_qmatrix = g.off_qmatrix;
	h->off_qscale = g.off_qscale;
	h->off_next = g.off_next;
	h->off_arena = g.off_arena;
	bind_regions(c, h);
	h->created_ms = sc_now(c);
	h->geom_sum = header_sum(h);

	if ((rc = wlock_init(&h->wlock)) < 0)
		return rc;
	/* Every block starts on the free list, in address order. */
	for (uint32_t b = 0; b < g.nblocks; b++)
		atomic_store_explicit(&c->next[b], b + 1 < g.nblocks ? b + 1 : SC_NIL,
		                      memory_order_relaxed);
	atomic_store_explicit(&h->free_head, 0, memory_order_relaxed);
	atomic_store_explicit(&h->free_count, g.nblocks, memory_order_relaxed);
	h->lcur_head = h->lcur_tail = h->lold_head = h->lold_tail = SC_NIL;
	atomic_store_explicit(&h->gp, 1, memory_order_relaxed);
	/* The file's other bytes are zero from ftruncate: empty slots, empty
	 * buckets, free process records, empty scan rows. */
	if (msync(c->base, SC_HDR_SIZE, MS_SYNC) < 0 && errno != ENOMEM)
		return -errno;
	/* Publish: a process that reads magic reads a complete header. */
	atomic_store_explicit(&h->magic, SC_MAGIC, memory_order_release);
	return 0;
}

/* Validate an existing segment's header and map it whole. */
static int attach_segment(semcache *c, const semcache_options *o, off_t fsize)
{
	struct sc_header hcopy;
	struct geom g;
	int rc;

	if ((size_t)fsize < sizeof hcopy) {
		uint64_t m = 0;
		if (fsize >= 8 && pread(c->fd, &m, 8, 0) == 8 && m == SC_MAGIC)
			return SEMCACHE_ETRUNCATED;
		return SEMCACHE_ENOTSEMCACHE;
	}
	if (pread(c->fd, &hcopy, sizeof hcopy, 0) != (ssize_t)sizeof hcopy)
		return -EIO;
	if (atomic_load_explicit(&hcopy.magic, memory_order_relaxed) != SC_MAGIC)
		return SEMCACHE_ENOTSEMCACHE;
	if (hcopy.version != SC_LAYOUT_VERSION)
		return SEMCACHE_EVERSION;
	if (hcopy.hdr_size != SC_HDR_SIZE || hcopy.signature != sc_layout_signature())
		return SEMCACHE_ESIGNATURE;
	if (hcopy.geom_sum != header_sum(&hcopy))
		return SEMCACHE_ECORRUPT;
	geom_from_header(&hcopy, &g);
	if (geom_layout(&g) < 0 || !geom_matches_header(&g, &hcopy) ||
	    hcopy.exact_ttl_ms <= 0 || hcopy.semantic_ttl_ms <= 0 ||
	    !isfinite(hcopy.threshold) || fabsf(hcopy.threshold) > 1.0f)
		return SEMCACHE_ECORRUPT;
	if ((uint64_t)fsize < hcopy.file_size)
		return SEMCACHE_ETRUNCATED;
	if ((rc = check_options_against(o, &hcopy)) < 0)
		return rc;
	if ((rc = map_file(c, hcopy.file_size)) < 0)
		return rc;
	bind_regions(c, &hcopy);
	return 0;
}

/*
 * We are the only process attached (we hold LOCK_EX on an existing,
 * validated segment): whatever the lock table says is left over from
 * processes that are gone.
 */
static int reset_lock_table(semcache *c)
{
	/* The flock says nobody is attached, but a process that closed every
	 * descriptor after fork() still maps the segment without holding it.
	 * If any record's owner (or the last writer) is alive, keep the lock
	 * table: only records of dead owners go, through the normal path. */
	bool live = false;
	for (uint32_t i = 0; i < c->max_procs && !live; i++) {
		uint64_t o = atomic_load_explicit(&c->procs[i].owner, memory_order_relaxed);
		live = o && sc_proc_alive((int32_t)(o & 0xffffffffu), o >> 32);
	}
	int32_t wp = c->hdr->writer_pid;
	live = live || (wp > 0 && wp != c->pid && kill(wp, 0) == 0);
	if (live) {
		int rc = sc_wlock(c);
		if (rc < 0)
			return rc;
		sc_procs_reap(c);
		sc_wunlock(c);
		return 0;
	}
	int rc = wlock_init(&c->hdr->wlock);
	if (rc < 0)
		return rc;
	for (uint32_t i = 0; i < c->max_procs; i++) {
		struct sc_proc *p = &c->procs[i];
		if (atomic_load_explicit(&p->owner, memory_order_relaxed) != 0) {
			sc_counters_add(&c->hdr->departed, &p->c);
			memset(&p->c, 0, sizeof p->c);
		}
		for (int k = 0; k < SC_READER_SLOTS; k++)
			atomic_store_explicit(&p->reader[k], 0, memory_order_relaxed);
		atomic_store_explicit(&p->owner, 0, memory_order_relaxed);
	}
	atomic_store_explicit(&c->hdr->procs_hwm, 0, memory_order_relaxed);
	/* No reader word is set any more, so the counter may restart: this
	 * also undoes a hostile value near the 48 bits the words keep. */
	atomic_store_explicit(&c->hdr->gp, 1, memory_order_relaxed);
	atomic_store_explicit(&c->hdr->needs_repair, 1, memory_order_relaxed);
	if ((rc = sc_wlock(c)) < 0) /* repairs, as needs_repair is set */
		return rc;
	sc_wunlock(c);
	return 0;
}

int semcache_open(const char *path, const semcache_options *opts, semcache **out)
{
	semcache_options defaults;
	semcache *c = NULL;
	int rc = 0, excl = 0;

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
	c->fd = -1;
	c->pid = getpid();
	pthread_mutex_init(&c->rec_mu, NULL);
	c->clock_ms = co.clock_ms;
	c->clock_arg = co.clock_arg;
	c->path = strdup(path);
	if (!c->path) {
		rc = -ENOMEM;
		goto fail;
	}

	int oflags = O_RDWR | O_CLOEXEC;
	if (!(co.flags & SEMCACHE_OPEN_NOCREATE))
		oflags |= O_CREAT;
	if (co.flags & SEMCACHE_OPEN_EXCL)
		oflags |= O_EXCL;
	mode_t mode = (co.flags & SEMCACHE_OPEN_GROUP) ? 0660 : 0600;
	c->fd = open(path, oflags, mode);
	if (c->fd < 0) {
		rc = -errno;
		goto fail;
	}

	for (int attempt = 0;; attempt++) {
		struct stat st;
		if (flock(c->fd, LOCK_EX | LOCK_NB) == 0) {
			excl = 1;
		} else if (errno == EWOULDBLOCK) {
			if (flock(c->fd, LOCK_SH) < 0) {
				rc = -errno;
				goto fail;
			}
			excl = 0;
		} else {
			rc = -errno;
			goto fail;
		}
		if (fstat(c->fd, &st) < 0) {
			rc = -errno;
			goto fail;
		}
		/* While we waited for the lock, the file may have been removed
		 * (destroy, a failed creator) and perhaps replaced: attaching to an
		 * unlinked inode would split the cache in two.  Start over. */
		struct stat pst;
		if (st.st_nlink == 0 || stat(path, &pst) < 0 || pst.st_ino != st.st_ino ||
		    pst.st_dev != st.st_dev) {
			flock(c->fd, LOCK_UN);
			close(c->fd);
			c->fd = open(path, oflags, mode);
			if (c->fd < 0 || attempt > 200) {
				rc = c->fd < 0 ? -errno : SEMCACHE_EBUSY;
				goto fail;
			}
			continue;
		}
		uint64_t magic = 0;
		if (st.st_size >= 8 && pread(c->fd, &magic, 8, 0) != 8)
			magic = 0;
		bool blank = st.st_size == 0;
		if (!blank && magic == 0 && st.st_size >= (off_t)SC_HDR_SIZE) {
			/* A creator that died before publishing magic leaves either
			 * an all-zero header or one with our version words set and
			 * magic still 0.  Anything else is not ours to overwrite. */
			uint8_t probe[SC_HDR_SIZE];
			uint32_t words[2] = { 0, 0 };
			if (pread(c->fd, probe, sizeof probe, 0) == (ssize_t)sizeof probe) {
				memcpy(words, probe + 8, sizeof words);
				blank = words[0] == SC_LAYOUT_VERSION && words[1] == SC_HDR_SIZE;
				bool zero = true;
				for (size_t i = 0; zero && i < sizeof probe; i++)
					zero = probe[i] == 0;
				blank = blank || zero;
			}
		}
		if (blank && (co.flags & SEMCACHE_OPEN_NOCREATE)) {
			/* An empty or abandoned file is not a segment yet, and
			 * NOCREATE means we never make one. */
			rc = SEMCACHE_ENOTSEMCACHE;
			goto fail;
		}
		if (blank) {
			if (!excl) {
				/* Someone else holds the file and it is still blank:
				 * they are creating it; wait and look again. */
				flock(c->fd, LOCK_UN);
				if (attempt > 200) {
					rc = SEMCACHE_ENOTSEMCACHE;
					goto fail;
				}
				usleep(5000);
				continue;
			}
			rc = create_segment(c, &co);
			if (rc < 0) {
				unmap_file(c);
				struct stat now_st;
				if (st.st_size == 0 && ftruncate(c->fd, 0) == 0 && (oflags & O_CREAT) &&
				    stat(path, &now_st) == 0 && now_st.st_ino == st.st_ino &&
				    now_st.st_dev == st.st_dev)
					unlink(path); /* do not leave a broken file behind (ours only) */
				goto fail;
			}
			break;
		}
		rc = attach_segment(c, opts, st.st_size);
		if (rc < 0)
			goto fail;
		if (excl && (rc = reset_lock_table(c)) < 0)
			goto fail;
		break;
	}
	if (excl && flock(c->fd, LOCK_SH) < 0) {
		rc = -errno;
		goto fail;
	}

	c->kernel = sc_kernel_select();
	if (!(co.flags & SEMCACHE_OPEN_NORECORD) && (rc = sc_proc_attach(c)) < 0)
		goto fail;
	reg_add(c);
	*out = c;
	return 0;

fail:
	unmap_file(c);
	if (c->fd >= 0)
		close(c->fd);
	pthread_mutex_destroy(&c->rec_mu);
	free(c->path);
	free(c);
	return rc;
}

int semcache_close(semcache *c)
{
	if (!c)
		return 0;
	reg_remove(c);
	sc_proc_detach(c);
	unmap_file(c);
	if (c->fd >= 0)
		close(c->fd);
	pthread_mutex_destroy(&c->rec_mu);
	free(c->path);
	free(c);
	return 0;
}

int semcache_destroy(const char *path, int force)
{
	int rc = 0;
	if (!path)
		path = SEMCACHE_DEFAULT_PATH;
	int fd = open(path, O_RDWR | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	if (!force && flock(fd, LOCK_EX | LOCK_NB) < 0) {
		rc = errno == EWOULDBLOCK ? -EBUSY : -errno;
		goto out;
	}
	uint64_t magic = 0;
	struct stat st;
	if (fstat(fd, &st) == 0 && st.st_size > 0 &&
	    (pread(fd, &magic, 8, 0) != 8 || magic != SC_MAGIC)) {
		/* Refuse to delete something that is not ours. */
		rc = SEMCACHE_ENOTSEMCACHE;
		goto out;
	}
	if (unlink(path) < 0)
		rc = -errno;
out:
	close(fd);
	return rc;
}
