/*
 * lock.c - the writer lock.
 *
 * A pthread robust mutex in the shared file would put its holder's
 * robust-list pointers there, where any process with write access can read
 * them, or plant an address for the holder's unlock to write to.  So the
 * lock is a plain word: (generation << 32) | (record + 1) of the holder,
 * 0 when free, taken by CAS.  Nothing in it is an address.
 *
 * Waiting: a taker that finds the word held sleeps on a separate futex word
 * (`wseq`, bumped by every release) with a short timeout, and on each wake
 * checks the holder: a holder whose record's OFD lock is gone, or whose
 * record has a newer generation, is dead, and the taker takes the word over
 * with a CAS from the exact value it judged (two takers cannot both win).
 * A dead holder may have left the structure half-changed, so taking over
 * sets needs_repair and returns SC_LOCK_REPAIR; the flag stays set until a
 * repair completes, so a repairer that dies (or fails) hands the job on.
 *
 * A hostile peer can scribble the word: a value naming no record, or a
 * dead one, is taken over (and repaired); one naming a live record makes
 * takers wait and then fail with SEMCACHE_EBUSY; a spurious 0 lets two
 * writers in at once, which every writer survives because every shared
 * field it reads is bounds-checked.  No value makes a taker fault.
 *
 * Threads of one process share its record, so they first serialise on a
 * process-local mutex: the word then names one writer.
 */
#include <errno.h>
#include <limits.h>
#include <linux/futex.h>
#include <sched.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include "lock.h"
#include "proc.h"

/* ThreadSanitizer cannot see that the word is a lock: tell it, so writers
 * of two handles in one process are known to be ordered. */
#if defined(__SANITIZE_THREAD__)
#include <sanitizer/tsan_interface.h>
#define TSAN_ACQUIRE(a) __tsan_acquire((void *)(a))
#define TSAN_RELEASE(a) __tsan_release((void *)(a))
#else
#define TSAN_ACQUIRE(a) ((void)(a))
#define TSAN_RELEASE(a) ((void)(a))
#endif

#define SC_LOCK_WAIT_MS   30000 /* no live writer holds it for more than milliseconds */
#define SC_LOCK_NAP_NS    5000000L /* re-check the holder's liveness this often */

static uint64_t my_word(const struct sc_seg *s)
{
	return ((uint64_t)s->me_gen << 32) | ((uint64_t)s->me_idx + 1);
}

void sc_futex_wait(_Atomic uint32_t *w, uint32_t val, long ns)
{
	struct timespec ts = { ns / 1000000000L, ns % 1000000000L };
	/* Not FUTEX_PRIVATE: the word is in a MAP_SHARED file mapping, shared
	 * with other processes. */
	(void)syscall(SYS_futex, (uint32_t *)w, FUTEX_WAIT, val, &ts, NULL, 0);
}

void sc_futex_wake_all(_Atomic uint32_t *w)
{
	(void)syscall(SYS_futex, (uint32_t *)w, FUTEX_WAKE, INT_MAX, NULL, NULL, 0);
}

/* Is the lock word v held by someone alive?  Bounds-checked: a value naming
 * no record is a dead holder. */
static bool holder_alive(struct sc_seg *s, uint64_t v)
{
	uint32_t idx = (uint32_t)v - 1, gen = (uint32_t)(v >> 32);
	if ((uint32_t)v == 0 || idx >= s->g.max_procs)
		return false;
	return sc_proc_owner_alive(s, idx, gen);
}

static int acquired(struct sc_seg *s, bool took_over)
{
	struct sc_header *h = s->hdr;
	TSAN_ACQUIRE(&h->wlock);
	if (took_over) {
		atomic_store_explicit(&h->needs_repair, 1, memory_order_relaxed);
		atomic_fetch_add_explicit(&h->repairs, 1, memory_order_relaxed);
	}
	atomic_store_explicit(&h->writer_pid, (int32_t)s->pid, memory_order_relaxed);
	return atomic_load_explicit(&h->needs_repair, memory_order_relaxed) ? SC_LOCK_REPAIR : 0;
}

int sc_lock_take(struct sc_seg *s, bool try_only)
{
	struct sc_header *h = s->hdr;
	if (!s->me)
		return SEMCACHE_EPROCFULL;
	if (try_only) {
		if (pthread_mutex_trylock(&s->wmu) != 0)
			return -EBUSY;
	} else {
		pthread_mutex_lock(&s->wmu);
	}
	uint64_t me = my_word(s);
	int64_t deadline = sc_mono_ms() + SC_LOCK_WAIT_MS;

	for (unsigned spin = 0;; spin++) {
		uint64_t v = 0;
		if (atomic_compare_exchange_strong_explicit(&h->wlock, &v, me, memory_order_acquire,
		                                            memory_order_relaxed))
			return acquired(s, false);
		/* Spin a little first: a live writer holds the lock for
		 * microseconds, and asking the kernel about liveness costs a
		 * system call. */
		if (spin < 64 && !try_only) {
			sched_yield();
			continue;
		}
		/* A word naming our record, whatever generation it shows, is not
		 * ours (we hold wmu, so no thread of this process holds the lock):
		 * a peer forged it.  Otherwise ask the kernel whether the holder
		 * lives. */
		if ((uint32_t)v - 1 == s->me_idx || !holder_alive(s, v)) {
			if (atomic_compare_exchange_strong_explicit(&h->wlock, &v, me,
			                                            memory_order_acquire,
			                                            memory_order_relaxed))
				return acquired(s, true);
			continue; /* someone else moved it; look again */
		}
		if (try_only || sc_mono_ms() > deadline)
			break;
		uint32_t seq = atomic_load_explicit(&h->wseq, memory_order_acquire);
		if (atomic_load_explicit(&h->wlock, memory_order_acquire) != v)
			continue;
		atomic_fetch_add_explicit(&h->wwaiters, 1, memory_order_seq_cst);
		sc_futex_wait(&h->wseq, seq, SC_LOCK_NAP_NS);
		atomic_fetch_sub_explicit(&h->wwaiters, 1, memory_order_relaxed);
	}
	pthread_mutex_unlock(&s->wmu);
	return try_only ? -EBUSY : SEMCACHE_EBUSY;
}

void sc_lock_drop(struct sc_seg *s)
{
	struct sc_header *h = s->hdr;
	atomic_store_explicit(&h->writer_pid, 0, memory_order_relaxed);
	/* Only our own word is cleared: if a peer scribbled it meanwhile, the
	 * value is theirs to answer for, and takers judge it on its merits. */
	uint64_t me = my_word(s);
	TSAN_RELEASE(&h->wlock);
	atomic_compare_exchange_strong_explicit(&h->wlock, &me, 0, memory_order_release,
	                                        memory_order_relaxed);
	atomic_fetch_add_explicit(&h->wseq, 1, memory_order_seq_cst);
	if (atomic_load_explicit(&h->wwaiters, memory_order_seq_cst))
		sc_futex_wake_all(&h->wseq);
	pthread_mutex_unlock(&s->wmu);
}
