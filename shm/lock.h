/*
 * lock.h - the writer lock: one word in the header naming its holder's
 * process record and generation, a futex word to sleep on, and takeover
 * from a holder the kernel says is gone (shm/lock.c).
 */
#ifndef SC_SHM_LOCK_H
#define SC_SHM_LOCK_H

#include <stdbool.h>

#include "segment.h"

#define SC_LOCK_REPAIR 1 /* taken; the structure must be repaired first */

/*
 * Take the writer lock.  Returns 0 (taken), SC_LOCK_REPAIR (taken, and a
 * previous holder died or a writer found damage: repair before writing;
 * needs_repair stays set until the repair completes), -EBUSY (try only:
 * held by a live process), SEMCACHE_EBUSY (held by a live process for 30 s),
 * SEMCACHE_EPROCFULL (this handle holds no process record, so it has no
 * identity to lock with).
 */
int sc_lock_take(struct sc_seg *s, bool try_only);
void sc_lock_drop(struct sc_seg *s);

/* A futex word in the shared mapping (not FUTEX_PRIVATE): sleep while *w
 * == val, at most ns (spurious and early returns are the caller's to
 * handle); wake every sleeper. */
void sc_futex_wait(_Atomic uint32_t *w, uint32_t val, long ns);
void sc_futex_wake_all(_Atomic uint32_t *w);

#endif
