/*
 * proc.c - the process table: kernel-held liveness and zero-copy pinning.
 *
 * Liveness.  Record i belongs to whoever holds the OFD write lock on the
 * byte at off_procs + i * 256 of the segment file, taken through the
 * handle's own O_CLOEXEC descriptor.  The kernel releases it when the
 * process exits, is killed or exec()s, whatever PID namespace it lives in,
 * so a peer learns "dead" from F_OFD_GETLK and never from /proc or a pid
 * (pids mean nothing across namespaces, and a process that exec()s keeps
 * its pid).  A claimant takes a record by winning its byte lock
 * (F_OFD_SETLK, never waiting), then bumps the record's generation, so
 * anything naming (record, old generation) - the writer lock word, a
 * reference - is recognisably its predecessor's.  Counters a departed owner
 * left in the record are folded into the header's "departed" counters by
 * the next claimant, which alone holds the byte lock, so they are folded
 * once.
 *
 * Pinning.  liburcu tracks readers per process and cannot see other
 * processes, and grace periods over batches let one slow reference hold
 * back everything retired after it.  So a zero-copy reference pins exactly
 * what it reads, with hazard words in the style of Michael's hazard
 * pointers: it publishes head + 1 of its chain in one of its record's
 * SC_HAZARDS words (seq_cst CAS, then a full fence) and re-checks the slot
 * it came from.  A writer reuses a retired chain only after a full fence
 * and a scan in which no live record shows that chain's head:
 *
 *   reader: CAS hazard (seq_cst) ; fence ; re-read slot seq -> unchanged?
 *   writer: slot seq odd (unlinks chain) ; ... ; fence ; read hazards
 *
 * Either the writer sees the hazard, or the reader sees the slot changed
 * and drops the reference.  A held, slow or leaked reference therefore
 * costs its own blocks and nothing else, and its owner's death (its byte
 * lock gone) frees them.
 *
 * Copying readers (semcache_get, search) publish nothing: they validate
 * what they copied with the slot's sequence word.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "proc.h"

/* How long a writer trusts an "alive" verdict about a record holding
 * hazards before asking the kernel again.  A process that died meanwhile
 * keeps its chains at most this much longer. */
#define SC_LIVE_CACHE_MS 100

static off_t record_byte(const struct sc_seg *s, uint32_t idx)
{
	return (off_t)(s->g.off_procs + (uint64_t)idx * sizeof(struct sc_proc));
}

static int ofd_lock(int fd, off_t at, short type, int cmd, struct flock *out)
{
	struct flock fl;
	memset(&fl, 0, sizeof fl);
	fl.l_type = type;
	fl.l_whence = SEEK_SET;
	fl.l_start = at;
	fl.l_len = 1;
	fl.l_pid = 0; /* required for OFD locks */
	int r;
	do
		r = fcntl(fd, cmd, &fl);
	while (r < 0 && errno == EINTR);
	if (out)
		*out = fl;
	return r < 0 ? -errno : 0;
}

bool sc_proc_alive(struct sc_seg *s, uint32_t idx)
{
	if (idx >= s->g.max_procs)
		return false;
	if (s->me && idx == s->me_idx)
		return true; /* GETLK cannot see our own lock */
	if (s->fd < 0)
		return true; /* cannot ask: assume alive (conservative) */
	struct flock fl;
	if (ofd_lock(s->fd, record_byte(s, idx), F_WRLCK, F_OFD_GETLK, &fl) < 0)
		return true;
	return fl.l_type != F_UNLCK;
}

bool sc_proc_owner_alive(struct sc_seg *s, uint32_t idx, uint32_t gen)
{
	if (idx >= s->g.max_procs)
		return false;
	if (atomic_load_explicit(&s->procs[idx].gen, memory_order_acquire) != gen)
		return false;
	return sc_proc_alive(s, idx);
}

void sc_counters_add(struct sc_counters *to, struct sc_counters *from)
{
#define ADD(f) atomic_fetch_add_explicit(&to->f, \
		atomic_exchange_explicit(&from->f, 0, memory_order_relaxed), memory_order_relaxed)
	ADD(hits); ADD(misses); ADD(sem_hits); ADD(sem_misses);
	ADD(puts); ADD(evictions); ADD(expirations); ADD(invalidations); ADD(deletes);
#undef ADD
	uint32_t fb = atomic_exchange_explicit(&from->sem_miss_best, 0, memory_order_relaxed);
	if (fb) {
		float f;
		memcpy(&f, &fb, 4);
		sc_count_best_miss(to, f);
	}
}

/* Record the best similarity seen on a miss: float bits of values in
 * [-1, 1] are stored offset so that 0 means "none". */
void sc_count_best_miss(struct sc_counters *c, float sim)
{
	uint32_t cur = atomic_load_explicit(&c->sem_miss_best, memory_order_relaxed);
	for (;;) {
		if (cur) {
			float f;
			memcpy(&f, &cur, 4);
			if (f >= sim)
				return;
		}
		uint32_t nb;
		memcpy(&nb, &sim, 4);
		if (nb == 0)
			nb = 0x80000000u; /* -0.0f: same value, non-zero bits */
		if (atomic_compare_exchange_weak_explicit(&c->sem_miss_best, &cur, nb,
		                                          memory_order_relaxed, memory_order_relaxed))
			return;
	}
}

static void raise_hwm(struct sc_seg *s, uint32_t n)
{
	uint32_t hwm = atomic_load_explicit(&s->hdr->procs_hwm, memory_order_relaxed);
	while (hwm < n && !atomic_compare_exchange_weak_explicit(&s->hdr->procs_hwm, &hwm, n,
	                                                         memory_order_seq_cst,
	                                                         memory_order_relaxed))
		;
}

int sc_proc_claim(struct sc_seg *s)
{
	int rc = SEMCACHE_EPROCFULL;
	for (uint32_t i = 0; i < s->g.max_procs; i++) {
		int r = ofd_lock(s->fd, record_byte(s, i), F_WRLCK, F_OFD_SETLK, NULL);
		if (r == -EAGAIN || r == -EACCES)
			continue; /* held by a live process */
		if (r < 0)
			return r == -EINVAL ? -ENOLCK : r; /* no OFD locks: cannot attach */
		/* Raise the high-water mark before using the record, so scans that
		 * start after our first hazard see it. */
		raise_hwm(s, i + 1);
		struct sc_proc *p = &s->procs[i];
		for (int k = 0; k < SC_HAZARDS; k++)
			atomic_store_explicit(&p->hazard[k], 0, memory_order_relaxed);
		/* A predecessor's counters stay visible (stat sums every record)
		 * until folded here, exactly once: only the lock holder folds. */
		sc_counters_add(&s->hdr->departed, &p->c);
		uint32_t gen = atomic_load_explicit(&p->gen, memory_order_relaxed) + 1;
		if (gen == 0)
			gen = 1;
		/* release: the cleared hazards precede the new generation; a writer
		 * that sees our later hazards sees this generation too */
		atomic_store_explicit(&p->gen, gen, memory_order_release);
		atomic_store_explicit(&p->pid, (int32_t)s->pid, memory_order_relaxed);
		atomic_store_explicit(&p->attached_ms, sc_wall_ms(), memory_order_relaxed);
		s->me_idx = i;
		s->me_gen = gen;
		s->me = p;
		rc = 0;
		break;
	}
	return rc;
}

void sc_proc_release(struct sc_seg *s)
{
	struct sc_proc *p = s->me;
	if (!p)
		return;
	for (int k = 0; k < SC_HAZARDS; k++)
		atomic_store_explicit(&p->hazard[k], 0, memory_order_release);
	/* Counters stay in the record (stat still sums them) until the next
	 * claimant folds them into "departed". */
	if (s->fd >= 0)
		(void)ofd_lock(s->fd, record_byte(s, s->me_idx), F_UNLCK, F_OFD_SETLK, NULL);
	s->me = NULL;
}

/* ------------------------------------------------------------------------
 * Hazard words
 * ---------------------------------------------------------------------- */
/* Threads of one process start their search for a free word in different
 * places. */
static _Thread_local uint32_t hazard_hint = UINT32_MAX;

int sc_hazard_set(struct sc_seg *s, uint32_t value, uint32_t *k)
{
	struct sc_proc *p = s->me;
	if (!p)
		return SEMCACHE_EPROCFULL;
	if (hazard_hint == UINT32_MAX)
		hazard_hint = (uint32_t)((uintptr_t)&hazard_hint >> 6) % SC_HAZARDS;
	for (uint32_t i = 0; i < SC_HAZARDS; i++) {
		uint32_t w = (hazard_hint + i) % SC_HAZARDS;
		uint32_t expect = 0;
		if (atomic_load_explicit(&p->hazard[w], memory_order_relaxed) != 0)
			continue;
		if (atomic_compare_exchange_strong_explicit(&p->hazard[w], &expect, value,
		                                            memory_order_seq_cst,
		                                            memory_order_relaxed)) {
			/* Orders the publication before the caller's re-read of the
			 * slot (the reader half of the store-buffering pair). */
			atomic_thread_fence(memory_order_seq_cst);
			*k = w;
			return 0;
		}
	}
	return -EMFILE;
}

void sc_hazard_clear(struct sc_seg *s, uint32_t k, uint32_t value)
{
	if (!s->me || k >= SC_HAZARDS)
		return;
	/* release: our reads of the chain happen before a writer can see the
	 * word free and reuse the blocks */
	uint32_t expect = value;
	atomic_compare_exchange_strong_explicit(&s->me->hazard[k], &expect, 0,
	                                        memory_order_release, memory_order_relaxed);
}

static bool live_cached(struct sc_seg *s, uint32_t i, uint32_t gen, int64_t now)
{
	struct sc_live *l = s->live ? &s->live[i] : NULL;
	if (l && l->gen == gen && l->state == 2)
		return false;
	if (l && l->gen == gen && l->state == 1 && now < l->until_ms)
		return true;
	bool alive = sc_proc_alive(s, i);
	if (l) {
		l->gen = gen;
		l->state = alive ? 1 : 2;
		l->until_ms = now + SC_LIVE_CACHE_MS;
	}
	return alive;
}

static int cmp_u32(const void *a, const void *b)
{
	uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;
	return x < y ? -1 : x > y;
}

size_t sc_hazard_collect(struct sc_seg *s, uint32_t *out, size_t cap)
{
	/* The writer half of the store-buffering pair: the slot changes that
	 * unlinked the chains being reclaimed precede every hazard read. */
	atomic_thread_fence(memory_order_seq_cst);
	uint32_t hwm = atomic_load_explicit(&s->hdr->procs_hwm, memory_order_seq_cst);
	if (hwm > s->g.max_procs)
		hwm = s->g.max_procs;
	int64_t now = sc_mono_ms();
	size_t n = 0;
	for (uint32_t i = 0; i < hwm; i++) {
		struct sc_proc *p = &s->procs[i];
		uint32_t v[SC_HAZARDS];
		bool any = false;
		for (int k = 0; k < SC_HAZARDS; k++) {
			v[k] = atomic_load_explicit(&p->hazard[k], memory_order_seq_cst);
			any |= v[k] != 0;
		}
		if (!any)
			continue;
		/* A generation read after the hazards: a new owner's hazards come
		 * with its new generation (see sc_proc_claim). */
		uint32_t gen = atomic_load_explicit(&p->gen, memory_order_acquire);
		if (!live_cached(s, i, gen, now))
			continue;
		for (int k = 0; k < SC_HAZARDS; k++) {
			if (!v[k])
				continue;
			if (n < cap)
				out[n] = v[k];
			n++;
		}
	}
	if (n > 1 && n <= cap)
		qsort(out, n, sizeof *out, cmp_u32);
	return n;
}
