/*
 * proc.c - the process table and grace periods across processes.
 *
 * liburcu tracks readers per process and cannot see other processes, so the
 * segment carries its own grace periods in the same style.  Each attached
 * process owns one record with SC_READER_SLOTS reader words; a zero-copy
 * reference takes a free one and writes (epoch << 16) | 1 into it, epoch
 * being the grace-period counter it read at entry, and clears it on release.
 * A word per reference (not per process) matters: with one shared word,
 * two threads whose references keep overlapping would never let it drop to
 * zero and its first epoch would block every later grace period.  A writer
 * that retired blocks at epoch E may reuse them once every live record's
 * words are 0 or show an epoch > E.  The Dekker-style pairing that makes
 * this sound:
 *
 *   reader: CAS record (seq_cst) ; fence ; read slot -> blocks
 *   writer: unlink blocks from slot ; gp++ (seq_cst) ; read records
 *
 * Either the writer sees the reader's record, or the reader sees the
 * unlinked slot (and so never reaches the retired blocks).
 *
 * Process identity is pid plus start time (from /proc/PID/stat), so a
 * recycled pid never keeps a dead process's record alive.  A record whose
 * owner is gone is released by whoever notices (a writer whose grace period
 * it blocks, an opener looking for a free record, verify), and its counters
 * are folded into the header's "departed" counters under the writer lock.
 *
 * Copying readers (semcache_get, search) do not enter read-side sections at
 * all: they validate what they copied with the slot's sequence word, which
 * changes before any block of the slot is retired, so a copy of a reused
 * block is always detected and discarded.
 */
#include <errno.h>
#include <pthread.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "../core/internal.h"

#define READER_COUNT_MASK UINT64_C(0xffff)

/*
 * Field 22 of /proc/PID/stat (start time), after the parenthesised command
 * name (which may itself contain spaces and parentheses: parse from the
 * last ')').  Returns 1 and fills *start and *zombie, or 0 when the file
 * cannot be read (no such process, or /proc hidden from us: hidepid).
 */
static int read_stat(int32_t pid, uint64_t *start, bool *zombie)
{
	char path[64], buf[1024];
	snprintf(path, sizeof path, "/proc/%d/stat", (int)pid);
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return 0;
	ssize_t n = read(fd, buf, sizeof buf - 1);
	close(fd);
	if (n <= 0)
		return 0;
	buf[n] = '\0';
	char *p = strrchr(buf, ')');
	if (!p)
		return 0;
	int field = 2;
	char state = 0;
	*start = 0;
	for (char *q = p + 1; *q && field < 22; q++) {
		if (*q == ' ') {
			field++;
			if (field == 3)
				state = q[1];
			if (field == 22)
				*start = strtoull(q + 1, NULL, 10);
		}
	}
	*zombie = state == 'Z' || state == 'X';
	return 1;
}

uint64_t sc_proc_start_time(int32_t pid)
{
	uint64_t st = 0;
	bool zombie = false;
	if (!read_stat(pid, &st, &zombie) || zombie)
		return 0;
	return st;
}

static uint64_t owner_word(int32_t pid, uint64_t start)
{
	return (uint32_t)pid | ((start & 0xffffffffu) << 32);
}

/*
 * 1 alive, 0 dead.  When in doubt, alive: releasing the record of a live
 * process would unpin its zero-copy references, while keeping a dead one
 * only delays reclamation until the doubt clears.  A process that exists
 * (kill succeeds or says EPERM) but whose /proc entry we cannot read (a
 * /proc mounted with hidepid) is alive.  Processes sharing a segment must
 * share a pid namespace: pids from another namespace mean nothing here.
 */
int sc_proc_alive(int32_t pid, uint64_t start_time)
{
	if (pid <= 0)
		return 0;
	if (kill(pid, 0) < 0 && errno == ESRCH)
		return 0;
	uint64_t now = 0;
	bool zombie = false;
	if (!read_stat(pid, &now, &zombie)) {
		/* vanished between the two checks, or hidden from us */
		return !(kill(pid, 0) < 0 && errno == ESRCH);
	}
	if (zombie)
		return 0;
	return (now & 0xffffffffu) == (start_time & 0xffffffffu);
}

static int owner_alive(uint64_t owner)
{
	return sc_proc_alive((int32_t)(owner & 0xffffffffu), owner >> 32);
}

void sc_counters_add(struct sc_counters *to, struct sc_counters *from)
{
#define ADD(f) atomic_fetch_add_explicit(&to->f, \
		atomic_load_explicit(&from->f, memory_order_relaxed), memory_order_relaxed)
	ADD(hits); ADD(misses); ADD(sem_hits); ADD(sem_misses);
	ADD(puts); ADD(evictions); ADD(expirations); ADD(invalidations);
#undef ADD
	uint32_t fb = atomic_load_explicit(&from->sem_miss_best, memory_order_relaxed);
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

/* Release a dead owner's record: fold its counters into "departed" and free
 * it.  Under wlock, so the fold happens once. */
static void release_record(semcache *c, struct sc_proc *p, uint64_t owner)
{
	sc_counters_add(&c->hdr->departed, &p->c);
	memset(&p->c, 0, sizeof p->c);
	for (int i = 0; i < SC_READER_SLOTS; i++)
		atomic_store_explicit(&p->reader[i], 0, memory_order_relaxed);
	/* Only the exact dead owner is replaced: if someone else already
	 * reclaimed and reused the record, leave it alone. */
	atomic_compare_exchange_strong_explicit(&p->owner, &owner, 0,
	                                        memory_order_release, memory_order_relaxed);
}

uint32_t sc_procs_reap(semcache *c)
{
	uint32_t n = 0, hwm = atomic_load_explicit(&c->hdr->procs_hwm, memory_order_acquire);
	if (hwm > c->max_procs)
		hwm = c->max_procs;
	for (uint32_t i = 0; i < hwm; i++) {
		struct sc_proc *p = &c->procs[i];
		uint64_t o = atomic_load_explicit(&p->owner, memory_order_acquire);
		if (o && !owner_alive(o)) {
			release_record(c, p, o);
			n++;
		}
	}
	return n;
}

int sc_proc_attach(semcache *c)
{
	uint64_t start = sc_proc_start_time(c->pid);
	uint64_t mine = owner_word(c->pid, start);
	int reaped = 0;

	for (;;) {
		for (uint32_t i = 0; i < c->max_procs; i++) {
			struct sc_proc *p = &c->procs[i];
			uint64_t expect = 0;
			if (atomic_load_explicit(&p->owner, memory_order_relaxed) != 0)
				continue;
			/* Raise the high-water mark before claiming, so a process
			 * that dies right after its claim is still inside the range
			 * that reaping and grace checks scan. */
			uint32_t hwm = atomic_load_explicit(&c->hdr->procs_hwm, memory_order_relaxed);
			while (hwm < i + 1 &&
			       !atomic_compare_exchange_weak_explicit(&c->hdr->procs_hwm, &hwm, i + 1,
			                                              memory_order_seq_cst,
			                                              memory_order_relaxed))
				;
			if (!atomic_compare_exchange_strong_explicit(&p->owner, &expect, mine,
			                                             memory_order_acq_rel,
			                                             memory_order_relaxed))
				continue;
			p->start_time = start;
			for (int r = 0; r < SC_READER_SLOTS; r++)
				atomic_store_explicit(&p->reader[r], 0, memory_order_relaxed);
			memset(&p->c, 0, sizeof p->c);
			c->proc_idx = i;
			c->me = p;
			return 0;
		}
		if (reaped)
			return SEMCACHE_EPROCFULL;
		/* Full: release records of dead processes and try once more. */
		int rc = sc_wlock(c);
		if (rc < 0)
			return rc;
		sc_procs_reap(c);
		sc_wunlock(c);
		reaped = 1;
	}
}

void sc_proc_detach(semcache *c)
{
	struct sc_proc *p = c->me;
	if (!p)
		return;
	uint64_t o = atomic_load_explicit(&p->owner, memory_order_relaxed);
	if (sc_wlock(c) == 0) {
		release_record(c, p, o);
		sc_wunlock(c);
	} else {
		for (int r = 0; r < SC_READER_SLOTS; r++)
			atomic_store_explicit(&p->reader[r], 0, memory_order_relaxed);
		atomic_compare_exchange_strong(&p->owner, &o, 0);
	}
	c->me = NULL;
}

/* ------------------------------------------------------------------------
 * Grace periods
 * ---------------------------------------------------------------------- */
bool sc_grace_passed(semcache *c, uint64_t epoch)
{
	/* Pairs with the seq_cst CAS in sc_read_enter (see the file comment);
	 * the record count is read after the fence too, so a record claimed
	 * just before it is seen. */
	atomic_thread_fence(memory_order_seq_cst);
	uint32_t hwm = atomic_load_explicit(&c->hdr->procs_hwm, memory_order_acquire);
	if (hwm > c->max_procs)
		hwm = c->max_procs;
	for (uint32_t i = 0; i < hwm; i++) {
		struct sc_proc *p = &c->procs[i];
		for (int k = 0; k < SC_READER_SLOTS; k++) {
			uint64_t r = atomic_load_explicit(&p->reader[k], memory_order_seq_cst);
			if (r == 0 || (r >> 16) > epoch)
				continue;
			uint64_t o = atomic_load_explicit(&p->owner, memory_order_acquire);
			if (!o)
				break; /* released record with stale reader words */
			if (!owner_alive(o)) {
				release_record(c, p, o);
				break;
			}
			return false;
		}
	}
	return true;
}

/* A hint so threads of one process start their search for a free reader
 * word in different places. */
static _Thread_local uint32_t reader_hint = UINT32_MAX;

int sc_read_enter(semcache *c, uint32_t *slot)
{
	struct sc_proc *p = c->me;
	if (!p)
		return SEMCACHE_EPROCFULL;
	if (reader_hint == UINT32_MAX)
		reader_hint = (uint32_t)((uintptr_t)&reader_hint >> 6) % SC_READER_SLOTS;
	uint64_t gp = atomic_load_explicit(&c->hdr->gp, memory_order_seq_cst) & ((UINT64_C(1) << 48) - 1);
	uint64_t fresh = (gp << 16) | 1;
	uint32_t best = 0;
	uint64_t best_epoch = 0;
	for (uint32_t i = 0; i < SC_READER_SLOTS; i++) {
		uint32_t k = (reader_hint + i) % SC_READER_SLOTS;
		uint64_t expect = 0;
		if (atomic_compare_exchange_strong_explicit(&p->reader[k], &expect, fresh,
		                                            memory_order_seq_cst,
		                                            memory_order_relaxed)) {
			*slot = k;
			goto entered;
		}
		if ((expect >> 16) >= best_epoch && (expect & READER_COUNT_MASK) < READER_COUNT_MASK) {
			best_epoch = expect >> 16;
			best = k;
		}
	}
	/* Every word busy: share the newest one (its epoch is at most ours,
	 * so the sharing is conservative, never unsafe). */
	for (;;) {
		uint64_t cur = atomic_load_explicit(&p->reader[best], memory_order_relaxed);
		uint64_t nw = (cur & READER_COUNT_MASK) == 0 ? fresh
		            : (cur & READER_COUNT_MASK) == READER_COUNT_MASK ? 0 : cur + 1;
		if (!nw)
			return -EMFILE; /* 16 x 65535 references held at once */
		if (atomic_compare_exchange_weak_explicit(&p->reader[best], &cur, nw,
		                                          memory_order_seq_cst,
		                                          memory_order_relaxed))
			break;
	}
	*slot = best;
entered:
	atomic_thread_fence(memory_order_seq_cst);
	return 0;
}

void sc_read_exit(semcache *c, uint32_t rec, uint32_t slot)
{
	if (rec >= c->max_procs || slot >= SC_READER_SLOTS)
		return;
	_Atomic uint64_t *w = &c->procs[rec].reader[slot];
	uint64_t cur = atomic_load_explicit(w, memory_order_relaxed);
	for (;;) {
		if ((cur & READER_COUNT_MASK) == 0)
			return; /* unbalanced release: ignore rather than underflow */
		uint64_t nw = (cur & READER_COUNT_MASK) == 1 ? 0 : cur - 1;
		/* release: our reads of the blocks happen before the writer can
		 * see us quiescent and reuse them */
		if (atomic_compare_exchange_weak_explicit(w, &cur, nw, memory_order_release,
		                                          memory_order_relaxed))
			return;
	}
}

/* Every thread of a forked child that uses the handle first waits here
 * until one of them has claimed the child's record, so none runs on with
 * me == NULL meanwhile. */
void sc_ensure_record_slow(semcache *c)
{
	pthread_mutex_lock(&c->rec_mu);
	if (atomic_load_explicit(&c->need_record, memory_order_relaxed)) {
		(void)sc_proc_attach(c);
		atomic_store_explicit(&c->need_record, 0, memory_order_release);
	}
	pthread_mutex_unlock(&c->rec_mu);
}
