/*
 * segment.c - create, attach, validate and detach the shared segment.
 *
 * File locking protocol (flock on the segment file, separate from the OFD
 * byte locks that hold process records, see proc.c):
 *  - Every attached handle holds a shared flock for as long as it is
 *    attached, through its own open file description.
 *  - An opener first tries an exclusive flock without waiting.  Getting it
 *    means nobody else is attached: the opener may create or re-create the
 *    file if it is empty or was left half-initialised by a creator that
 *    died.  Then it downgrades to a shared lock.
 *  - Otherwise it waits for a shared lock (an initialiser holds the
 *    exclusive one only briefly) and validates what it finds.
 * The creator stores `magic` last (release), so a process that sees magic
 * sees a whole header.  Nothing about process records or the writer lock
 * needs resetting by a lone opener: the kernel dropped the byte locks of
 * every process that is gone, and a lock word naming one of them is taken
 * over by the next writer (lock.c).
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
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "hash.h"
#include "proc.h"
#include "segment.h"

/* Fixed key for the header checksum: it detects damage, not forgery. */
static const uint64_t geom_key[2] = { UINT64_C(0x5345474d454e5432), UINT64_C(0x6c61796f75742121) };

static size_t align_up(size_t v, size_t a) { return (v + a - 1) & ~(a - 1); }
static bool is_pow2(uint64_t v) { return v && !(v & (v - 1)); }

int64_t sc_wall_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

int64_t sc_mono_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* ------------------------------------------------------------------------
 * Geometry: one function computes every offset, used both to lay out a new
 * segment and to check an existing one, so the two can never disagree.
 * ---------------------------------------------------------------------- */
static int geom_layout(struct sc_geom *g)
{
	if (g->slots < SC_MIN_SLOTS || g->slots > SC_MAX_SLOTS || g->dim > SC_MAX_DIM ||
	    g->max_procs < 1 || g->max_procs > SC_MAX_PROCS || !is_pow2(g->block_size) ||
	    g->block_size < SC_MIN_BLOCK || g->block_size > SC_MAX_BLOCK ||
	    g->nblocks < 2 || g->nblocks > SC_MAX_NBLOCKS || g->quant > SC_QUANT_BITS ||
	    (g->quant && !g->dim) || g->max_payload < 64 || g->max_payload > (1u << 30))
		return -EINVAL;
	/* Room for at least two largest payloads, so one can be written while
	 * a reference pins another. */
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
	g->block_shift = (uint32_t)__builtin_ctz(g->block_size);
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
	g->off_next = off;    off = align_up(off + (uint64_t)g->nblocks * 4, SC_ALIGN);
	g->off_lnext = off;   off = align_up(off + (uint64_t)g->nblocks * 4, SC_ALIGN);
	/* Outbox: max(1024, slots / 8) items, rounded up to a power of two. */
	uint32_t ob = 1024;
	while (ob < g->slots / 8)
		ob <<= 1;
	g->outbox_cap = ob;
	g->off_outbox = off;  off = align_up(off + (uint64_t)ob * sizeof(struct sc_obitem), 4096);
	g->off_arena = off;   off = align_up(off + (uint64_t)g->nblocks * g->block_size, 4096);
	g->file_size = off;
	return 0;
}

static uint64_t header_sum(const struct sc_header *h)
{
	return sc_siphash(geom_key, (const uint8_t *)h + 8, offsetof(struct sc_header, geom_sum) - 8);
}

static void geom_from_header(const struct sc_header *h, struct sc_geom *g)
{
	memset(g, 0, sizeof *g);
	g->slots = h->slots;
	g->dim = h->dim;
	g->block_size = h->block_size;
	g->nblocks = h->nblocks;
	g->max_procs = h->max_procs;
	g->max_payload = h->max_payload;
	g->quant = h->quant;
	g->exact_ttl_ms = h->exact_ttl_ms;
	g->semantic_ttl_ms = h->semantic_ttl_ms;
	g->threshold = h->threshold;
	g->secret[0] = h->secret[0];
	g->secret[1] = h->secret[1];
}

static bool geom_matches_header(const struct sc_geom *g, const struct sc_header *h)
{
	return g->row_stride == h->row_stride && g->buckets == h->buckets &&
	       g->qstride == h->qstride && g->off_procs == h->off_procs &&
	       g->off_index == h->off_index && g->off_slots == h->off_slots &&
	       g->off_lnext == h->off_lnext && g->off_meta == h->off_meta &&
	       g->off_matrix == h->off_matrix && g->off_qmatrix == h->off_qmatrix &&
	       g->off_qscale == h->off_qscale && g->off_next == h->off_next &&
	       g->off_arena == h->off_arena && g->file_size == h->file_size &&
	       g->off_outbox == h->off_outbox && g->outbox_cap == h->outbox_cap;
}

int sc_geom_from_options(const semcache_options *o, struct sc_geom *g)
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
	g->exact_ttl_ms = o->exact_ttl_ms;
	g->semantic_ttl_ms = o->semantic_ttl_ms;
	g->threshold = o->threshold;
	return geom_layout(g);
}

/* Options name geometry explicitly (non-zero) only where the caller cares
 * (semcache_open() zeroes the fields that were only defaults).  An arena
 * size is compared in blocks of the segment's block size when the caller
 * left that to the segment.  h was validated, so h->block_size > 0. */
static int check_options_against(const semcache_options *o, const struct sc_header *h)
{
	if (!o)
		return 0;
	uint32_t bs = o->block_size ? o->block_size : h->block_size;
	if ((o->slots && o->slots != h->slots) || (o->dim && o->dim != h->dim) ||
	    (o->block_size && o->block_size != h->block_size) ||
	    (o->arena_bytes && o->arena_bytes / bs != h->nblocks) ||
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
 * Mapping
 * ---------------------------------------------------------------------- */
static int bind_regions(struct sc_seg *s)
{
	s->hdr = (struct sc_header *)s->base;
	s->procs = (struct sc_proc *)(s->base + s->g.off_procs);
	size_t len = (size_t)s->g.nblocks * s->g.block_size;
	/* off_arena is page-aligned by geom_layout */
	void *p = mmap(NULL, len, PROT_READ, MAP_SHARED, s->fd, (off_t)s->g.off_arena);
	if (p == MAP_FAILED)
		return -errno;
	s->ro_arena = p;
	s->ro_size = len;
	return 0;
}

static int map_file(struct sc_seg *s, size_t size)
{
	/* MAP_POPULATE: fault every page in now, so the first put or get of
	 * each page does not pay a page fault (measured: puts were 3x slower
	 * on a fresh segment without it). */
	void *p = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_POPULATE, s->fd, 0);
	if (p == MAP_FAILED)
		return -errno;
	/* Lookups touch random lines across the whole segment, so TLB misses
	 * matter: ask for huge pages (effective where tmpfs allows them, i.e.
	 * shmem_enabled=advise or a /dev/shm mounted with huge=within_size). */
	(void)madvise(p, size, MADV_HUGEPAGE);
	s->base = p;
	s->size = size;
	return 0;
}

static void unmap_file(struct sc_seg *s)
{
	if (s->base)
		munmap(s->base, s->size);
	if (s->ro_arena)
		munmap((void *)s->ro_arena, s->ro_size);
	s->base = NULL;
	s->size = 0;
	s->ro_arena = NULL;
	s->ro_size = 0;
}

/* Lay out a new segment in an empty (or abandoned) file; we hold LOCK_EX. */
static int create_segment(struct sc_seg *s, const semcache_options *o)
{
	struct sc_geom g;
	int rc = sc_geom_from_options(o, &g);
	if (rc < 0)
		return rc;
	if (ftruncate(s->fd, 0) < 0 || ftruncate(s->fd, (off_t)g.file_size) < 0)
		return -errno;
	/* Back the file now, so running out of /dev/shm is an error here and
	 * not a SIGBUS in some worker later. */
	rc = posix_fallocate(s->fd, 0, (off_t)g.file_size);
	if (rc && rc != EOPNOTSUPP && rc != EINVAL)
		return -rc;
	rc = map_file(s, g.file_size);
	if (rc < 0)
		return rc;

	struct sc_header *h = (struct sc_header *)s->base;
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
	h->off_lnext = g.off_lnext;
	h->off_meta = g.off_meta;
	h->off_matrix = g.off_matrix;
	h->off_qmatrix = g.off_qmatrix;
	h->off_qscale = g.off_qscale;
	h->off_next = g.off_next;
	h->off_arena = g.off_arena;
	h->off_outbox = g.off_outbox;
	h->outbox_cap = g.outbox_cap;
	h->created_ms = o->clock_ms ? o->clock_ms(o->clock_arg) : sc_wall_ms();
	h->geom_sum = header_sum(h);
	g.secret[0] = h->secret[0];
	g.secret[1] = h->secret[1];
	s->g = g;
	if ((rc = bind_regions(s)) < 0)
		return rc;

	/* Every block starts on the free list, in address order. */
	_Atomic uint32_t *next = (_Atomic uint32_t *)(s->base + g.off_next);
	_Atomic uint32_t *lnext = (_Atomic uint32_t *)(s->base + g.off_lnext);
	for (uint32_t b = 0; b < g.nblocks; b++) {
		atomic_store_explicit(&next[b], b + 1 < g.nblocks ? b + 1 : SC_NIL,
		                      memory_order_relaxed);
		atomic_store_explicit(&lnext[b], SC_NIL, memory_order_relaxed);
	}
	atomic_store_explicit(&h->free_head, 0, memory_order_relaxed);
	atomic_store_explicit(&h->free_count, g.nblocks, memory_order_relaxed);
	atomic_store_explicit(&h->limbo_head, SC_NIL, memory_order_relaxed);
	/* The file's other bytes are zero from ftruncate: a free writer lock,
	 * empty slots, empty buckets, unclaimed process records, empty rows. */
	if (msync(s->base, SC_HDR_SIZE, MS_SYNC) < 0 && errno != ENOMEM)
		return -errno;
	/* Publish: a process that reads magic reads a complete header. */
	atomic_store_explicit(&h->magic, SC_MAGIC, memory_order_release);
	return 0;
}

/* Validate an existing segment's header and map it whole. */
static int attach_segment(struct sc_seg *s, const semcache_options *o, off_t fsize)
{
	struct sc_header hcopy;
	struct sc_geom g;
	int rc;

	if ((size_t)fsize < sizeof hcopy) {
		uint64_t m = 0;
		if (fsize >= 8 && pread(s->fd, &m, 8, 0) == 8 && m == SC_MAGIC)
			return SEMCACHE_ETRUNCATED;
		return SEMCACHE_ENOTSEMCACHE;
	}
	if (pread(s->fd, &hcopy, sizeof hcopy, 0) != (ssize_t)sizeof hcopy)
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
	if ((rc = map_file(s, hcopy.file_size)) < 0)
		return rc;
	s->g = g;
	return bind_regions(s);
}

static void seg_close_fd(struct sc_seg *s);

static void seg_free(struct sc_seg *s)
{
	unmap_file(s);
	seg_close_fd(s);
	free(s->live);
	s->live = NULL;
	free(s->path);
	s->path = NULL;
	pthread_mutex_destroy(&s->wmu);
}

/* Is gid the caller's effective or a supplementary group? */
static bool in_our_groups(gid_t gid)
{
	if (gid == getegid())
		return true;
	gid_t groups[256];
	int n = getgroups(256, groups);
	for (int i = 0; i < n; i++)
		if (groups[i] == gid)
			return true;
	return false;
}

/*
 * Whoever can write the file can forge entries, and whoever can read it can
 * read every cached answer: refuse a file someone else planted or can
 * reach.  It must be a regular file owned by our effective uid with no
 * permission bits beyond 0600 (0660 with SEMCACHE_OPEN_GROUP).  With
 * SEMCACHE_OPEN_GROUP, a file of another user is accepted when its group
 * is one of ours and it gives others nothing: sharing with the group is
 * what the caller asked for.
 */
static int check_file(const struct stat *st, uint32_t flags)
{
	bool group = flags & SEMCACHE_OPEN_GROUP;
	mode_t allowed = group ? 0660 : 0600;
	if (!S_ISREG(st->st_mode))
		return SEMCACHE_EUNSAFE;
	if ((st->st_mode & 07777) & ~allowed)
		return SEMCACHE_EUNSAFE;
	if (st->st_uid != geteuid() && !(group && in_our_groups(st->st_gid)))
		return SEMCACHE_EUNSAFE;
	return 0;
}

static int open_existing(const char *path)
{
	int fd = open(path, O_RDWR | O_CLOEXEC | O_NOFOLLOW);
	if (fd < 0)
		return errno == ELOOP ? SEMCACHE_EUNSAFE : -errno; /* ELOOP: a symlink */
	return fd;
}

/* Descriptors of a handle come and go under s->fd_mu (see segment.h). */
static void fd_lock(struct sc_seg *s)
{
	if (s->fd_mu)
		pthread_mutex_lock(s->fd_mu);
}

static void fd_unlock(struct sc_seg *s)
{
	if (s->fd_mu)
		pthread_mutex_unlock(s->fd_mu);
}

/* s->fd = the segment at path, or a negative code (s->fd stays -1). */
static int seg_open_fd(struct sc_seg *s, const char *path)
{
	fd_lock(s);
	int fd = open_existing(path);
	if (fd >= 0)
		s->fd = fd;
	fd_unlock(s);
	return fd;
}

static void seg_close_fd(struct sc_seg *s)
{
	fd_lock(s);
	if (s->fd >= 0)
		close(s->fd);
	s->fd = -1;
	fd_unlock(s);
}

/*
 * A new segment is built in an anonymous file (O_TMPFILE in the path's
 * directory) and linked into place once complete: the path never names a
 * half-made segment, a creator killed half-way leaves nothing behind (the
 * kernel frees an unlinked inode), and linkat(), unlike rename(), fails
 * rather than replace a segment another process put there meanwhile
 * (-EEXIST: attach to theirs).  Linking an anonymous file needs
 * CAP_DAC_READ_SEARCH (AT_EMPTY_PATH) or /proc (/proc/self/fd/N); where
 * neither works, or the file system has no O_TMPFILE, the segment is built
 * under an unpredictable name instead (mkostemp: O_EXCL, so nothing planted
 * there is followed), link()ed, and that name unlinked in every case: only
 * a creator killed in that window leaves a "<path>.new-XXXXXX" behind.
 */
static int build_and_link(struct sc_seg *s, const char *path, const char *tmpname,
                          const semcache_options *co)
{
	int rc;
	/* the mode exactly as asked, whatever the umask */
	if (fchmod(s->fd, (co->flags & SEMCACHE_OPEN_GROUP) ? 0660 : 0600) < 0 ||
	    flock(s->fd, LOCK_EX) < 0)
		return -errno;
	if ((rc = create_segment(s, co)) < 0)
		return rc;
	if (tmpname)
		return link(tmpname, path) < 0 ? -errno : 0;
	if (linkat(s->fd, "", AT_FDCWD, path, AT_EMPTY_PATH) == 0)
		return 0;
	if (errno == EEXIST)
		return -EEXIST;
	char proc[64];
	snprintf(proc, sizeof proc, "/proc/self/fd/%d", s->fd);
	if (linkat(AT_FDCWD, proc, AT_FDCWD, path, AT_SYMLINK_FOLLOW) == 0)
		return 0;
	return errno == EEXIST ? -EEXIST : -ENOLINK; /* cannot name it: try a named temporary */
}

static void drop_new(struct sc_seg *s)
{
	unmap_file(s);
	seg_close_fd(s);
}

static int create_new(struct sc_seg *s, const char *path, const semcache_options *co)
{
	size_t len = strlen(path) + 16;
	char *tmp = malloc(len);
	int rc;
	if (!tmp)
		return -ENOMEM;
	/* the directory of path, for O_TMPFILE */
	snprintf(tmp, len, "%s", path);
	char *slash = strrchr(tmp, '/');
	if (!slash)
		snprintf(tmp, len, ".");
	else if (slash == tmp)
		tmp[1] = '\0';
	else
		*slash = '\0';
	fd_lock(s);
	s->fd = open(tmp, O_TMPFILE | O_RDWR | O_CLOEXEC, 0600);
	int open_errno = errno;
	fd_unlock(s);
	errno = open_errno;
	if (s->fd >= 0) {
		rc = build_and_link(s, path, NULL, co);
		if (rc != -ENOLINK) {
			if (rc < 0)
				drop_new(s);
			goto out;
		}
		drop_new(s);
	} else if (open_errno != EOPNOTSUPP && open_errno != EISDIR && open_errno != EINVAL) {
		rc = -open_errno;
		goto out;
	}
	snprintf(tmp, len, "%s.new-XXXXXX", path);
	fd_lock(s);
	s->fd = mkostemp(tmp, O_CLOEXEC);
	open_errno = errno;
	fd_unlock(s);
	errno = open_errno;
	if (s->fd < 0) {
		rc = -errno;
		goto out;
	}
	rc = build_and_link(s, path, tmp, co);
	unlink(tmp);
	if (rc < 0)
		drop_new(s);
out:
	free(tmp);
	return rc;
}

int sc_seg_open(struct sc_seg *s, const char *path, const semcache_options *opts,
                const semcache_options *co)
{
	int rc = 0, excl = 0;
	bool may_create = !(co->flags & SEMCACHE_OPEN_NOCREATE);

	s->pid = getpid();
	pthread_mutex_init(&s->wmu, NULL);
	if (!(s->path = strdup(path))) {
		rc = -ENOMEM;
		goto fail;
	}

	for (int attempt = 0;; attempt++) {
		if (attempt > 200) {
			rc = SEMCACHE_EBUSY;
			goto fail;
		}
		int ofd = seg_open_fd(s, path);
		if (ofd == -ENOENT && may_create) {
			rc = create_new(s, path, co);
			if (rc == -EEXIST && !(co->flags & SEMCACHE_OPEN_EXCL))
				continue; /* another process's segment arrived first */
			if (rc < 0)
				goto fail;
			excl = 1;
			s->lone = false;
			break;
		}
		if (ofd < 0) {
			rc = ofd;
			goto fail;
		}
		if (co->flags & SEMCACHE_OPEN_EXCL) {
			rc = -EEXIST;
			goto fail;
		}
		struct stat st;
		if (fstat(s->fd, &st) < 0) {
			rc = -errno;
			goto fail;
		}
		if ((rc = check_file(&st, co->flags)) < 0)
			goto fail;
		if (flock(s->fd, LOCK_EX | LOCK_NB) == 0) {
			excl = 1;
		} else if (errno == EWOULDBLOCK) {
			if (flock(s->fd, LOCK_SH) < 0) {
				rc = -errno;
				goto fail;
			}
			excl = 0;
		} else {
			rc = -errno;
			goto fail;
		}
		/* While we waited for the lock, the file may have been removed
		 * (destroy) and perhaps replaced: attaching to an unlinked inode
		 * would split the cache in two.  Start over. */
		struct stat pst;
		if (fstat(s->fd, &st) < 0 || st.st_nlink == 0 || lstat(path, &pst) < 0 ||
		    pst.st_ino != st.st_ino || pst.st_dev != st.st_dev) {
			seg_close_fd(s);
			continue;
		}
		if (st.st_size == 0) {
			/* An empty file of ours (created by hand, or by an older
			 * creator that died before writing anything): nothing to
			 * lose, so it is laid out in place, unless NOCREATE. */
			if (!may_create) {
				rc = SEMCACHE_ENOTSEMCACHE;
				goto fail;
			}
			if (!excl) {
				/* someone else holds it: they may be laying it out */
				seg_close_fd(s);
				usleep(5000);
				continue;
			}
			if ((rc = create_segment(s, co)) < 0)
				goto fail;
			s->dev = st.st_dev;
			s->ino = st.st_ino;
			break;
		}
		/* Anything else must be a valid segment: a file that is not one is
		 * never truncated or overwritten. */
		if ((rc = attach_segment(s, opts, st.st_size)) < 0)
			goto fail;
		s->dev = st.st_dev;
		s->ino = st.st_ino;
		s->lone = excl;
		break;
	}
	if (!s->ino) {
		struct stat st;
		if (fstat(s->fd, &st) < 0) {
			rc = -errno;
			goto fail;
		}
		s->dev = st.st_dev;
		s->ino = st.st_ino;
	}
	if (excl && flock(s->fd, LOCK_SH) < 0) {
		rc = -errno;
		goto fail;
	}
	if (!(s->live = calloc(s->g.max_procs, sizeof *s->live))) {
		rc = -ENOMEM;
		goto fail;
	}
	if (!(co->flags & SEMCACHE_OPEN_NORECORD) && (rc = sc_proc_claim(s)) < 0)
		goto fail;
	return 0;

fail:
	seg_free(s);
	return rc;
}

void sc_seg_close(struct sc_seg *s)
{
	sc_proc_release(s);
	seg_free(s);
}

void sc_seg_fork_child(struct sc_seg *s)
{
	/* The inherited descriptor shares the parent's open file description,
	 * and with it the parent's OFD lock: through it we would look like the
	 * parent (and keep the parent looking alive after it died).  Close our
	 * copy; the parent's stays. */
	if (s->fd >= 0)
		close(s->fd);
	s->fd = -1;
	s->me = NULL;
	s->pid = getpid();
	pthread_mutex_init(&s->wmu, NULL); /* a parent thread may have held it */
}

int sc_seg_reattach(struct sc_seg *s, bool claim)
{
	int fd = seg_open_fd(s, s->path);
	if (fd < 0)
		return fd;
	struct stat st;
	if (fstat(fd, &st) < 0 || st.st_dev != s->dev || st.st_ino != s->ino) {
		/* the path names another file now: this mapping's segment is gone */
		seg_close_fd(s);
		return SEMCACHE_ENOTSEMCACHE;
	}
	/* Never wait here (a reader's first call may land here): while a lone
	 * opener holds the exclusive flock for its repair, go on without the
	 * shared one; the record's OFD lock is what says we are alive. */
	if (flock(fd, LOCK_SH | LOCK_NB) < 0 && errno != EWOULDBLOCK) {
		int e = -errno;
		seg_close_fd(s);
		return e;
	}
	memset(s->live, 0, s->g.max_procs * sizeof *s->live);
	return claim ? sc_proc_claim(s) : 0;
}

int sc_seg_destroy(const char *path, int force)
{
	int rc = 0;
	int fd = open_existing(path);
	if (fd < 0)
		return fd;
	struct stat st, pst;
	if (fstat(fd, &st) < 0) {
		rc = -errno;
		goto out;
	}
	/* only the owner's own segment: a file of another user is refused
	 * here as on open, whatever its mode */
	if (!S_ISREG(st.st_mode) || st.st_uid != geteuid()) {
		rc = SEMCACHE_EUNSAFE;
		goto out;
	}
	if (!force && flock(fd, LOCK_EX | LOCK_NB) < 0) {
		rc = errno == EWOULDBLOCK ? -EBUSY : -errno;
		goto out;
	}
	uint64_t magic = 0;
	if (st.st_size > 0 && (pread(fd, &magic, 8, 0) != 8 || magic != SC_MAGIC)) {
		/* Refuse to delete something that is not ours. */
		rc = SEMCACHE_ENOTSEMCACHE;
		goto out;
	}
	/* the path must still name the file we checked */
	if (lstat(path, &pst) < 0 || pst.st_ino != st.st_ino || pst.st_dev != st.st_dev) {
		rc = -EAGAIN;
		goto out;
	}
	if (unlink(path) < 0)
		rc = -errno;
out:
	close(fd);
	return rc;
}
