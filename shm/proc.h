/*
 * proc.h - the process table: records owned through OFD byte locks, their
 * counters, and the hazard words that pin zero-copy references
 * (shm/proc.c).
 */
#ifndef SC_SHM_PROC_H
#define SC_SHM_PROC_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "segment.h"

/* Claim a free record (one whose OFD lock nobody holds) for s.  0,
 * SEMCACHE_EPROCFULL at once when every record is held, or -errno when
 * liveness cannot be established (no OFD locks: the process must not
 * attach, as nobody could tell whether it is alive). */
int sc_proc_claim(struct sc_seg *s);
/* Give the record back: clear its hazards, drop its OFD lock. */
void sc_proc_release(struct sc_seg *s);

/* Is record idx owned by a live process now?  Ours counts as alive.
 * Asks the kernel (F_OFD_GETLK); no cache. */
bool sc_proc_alive(struct sc_seg *s, uint32_t idx);
/* Is (idx, gen) a live owner: the record is held and still has that
 * generation? */
bool sc_proc_owner_alive(struct sc_seg *s, uint32_t idx, uint32_t gen);

/* Pin: publish value (head block + 1) in a free hazard word of our record,
 * then a full fence.  0 with *k set, -EMFILE when all SC_HAZARDS are busy,
 * SEMCACHE_EPROCFULL without a record. */
int sc_hazard_set(struct sc_seg *s, uint32_t value, uint32_t *k);
/* Unpin word k of our record if it still holds value (release). */
void sc_hazard_clear(struct sc_seg *s, uint32_t k, uint32_t value);
/*
 * After a full fence, collect the hazard values of live records into
 * out[0 .. cap), sorted.  Returns how many there are; a return > cap means
 * out was too small and nothing may be reused.  Under the writer lock
 * (uses s->live).
 */
size_t sc_hazard_collect(struct sc_seg *s, uint32_t *out, size_t cap);

void sc_counters_add(struct sc_counters *to, struct sc_counters *from);
void sc_count_best_miss(struct sc_counters *c, float sim);

#endif
