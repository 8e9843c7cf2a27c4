/*
 * internal.h - the handle and the internal interfaces between files.
 *
 * Nothing here is exported: the library is built with hidden visibility and
 * only the semcache_* calls of include/semcache.h are public.  Internal
 * symbols carry the sc_ prefix.
 */
#ifndef SC_INTERNAL_H
#define SC_INTERNAL_H

#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "semcache.h"
#include "../shm/layout.h"
#include "../shm/segment.h"
#include "../shm/proc.h"
#include "../shm/lock.h"
#include "../shm/hash.h"
#include "scan.h"
#include "codec.h"

/* Slot fields readers copy under the seqlock are written and read as
 * relaxed atomics: each access is one load or store, never torn or
 * re-read by the compiler, and race detectors see the intent. */
#define SC_SET(field, v) __atomic_store_n(&(field), (v), __ATOMIC_RELAXED)
#define SC_GET(field)    __atomic_load_n(&(field), __ATOMIC_RELAXED)

/* Copies of shared bytes that the seqlock (or a hazard word) validates
 * afterwards: payload blocks, digests, embedding rows.  These are the
 * library's only intended data races; tests/tsan/tsan.supp names this one
 * function, so ThreadSanitizer still reports any other race. */
void sc_seq_copy(void *dst, const void *src, size_t n);

#define SC_LIKELY(x)   __builtin_expect(!!(x), 1)
#define SC_UNLIKELY(x) __builtin_expect(!!(x), 0)

/*
 * A process's view of one segment: the segment layer's part (file, mapping,
 * validated geometry, process record, see shm/segment.h) plus pointers to
 * the regions the cache uses, computed once from the validated geometry.
 */
struct semcache {
	struct sc_seg seg;

	/* validated geometry (private copies, from seg.g) */
	uint32_t slots, dim, row_stride, buckets, block_size, block_shift, nblocks;
	uint32_t max_procs, max_payload, quant, qstride;
	int64_t exact_ttl_ms, semantic_ttl_ms;
	float threshold;
	uint64_t secret[2];

	/* regions */
	struct sc_header *hdr;
	struct sc_proc *procs;
	struct sc_bucket *index;
	struct sc_slot *slot;
	sc_scanmeta *meta;
	float *matrix;
	uint8_t *qmatrix;
	float *qscale;
	_Atomic uint32_t *next;
	_Atomic uint32_t *lnext;
	uint8_t *arena;
	const uint8_t *ro_arena; /* the same blocks, mapped read-only (zero-copy) */
	struct sc_obitem *outbox; /* second-tier outbox ring, outbox_cap items */
	uint32_t outbox_cap;

	/* This process's syncer on this handle (backends/syncer.c), or NULL;
	 * set and cleared by semcache_tier_start/stop under tier_mu. */
	struct sc_tier_rt *tier_rt;
	pthread_mutex_t tier_mu;

	/* Outstanding zero-copy references of this handle, one ticket per
	 * hazard word: a release clears the word only with the ticket it was
	 * given, so releasing one reference twice (or a copy of it as well)
	 * cannot unpin another reference that reused the word. */
	_Atomic uint64_t ref_ticket[SC_HAZARDS];
	_Atomic uint64_t ticket_seq;

	/* A child forked with an open handle claims its own record on its first
	 * call (see sc_ensure_record); norecord handles never do. */
	_Atomic int need_record;
	bool norecord;
	pthread_mutex_t rec_mu;   /* serialises the lazy claim among threads */

	/* writer scratch (under the writer lock): hazard snapshot */
	uint32_t *hz;
	size_t hz_cap;

	const sc_kernel *kernel;
	int64_t (*clock_ms)(void *arg);
	void *clock_arg;

	/* list of open handles, for the fork handler */
	struct semcache *reg_next, *reg_prev;
};

/* ---- key.c: digests, keyed hashes, checksums ---- */
int sc_key_digest(const char *ns, const char *key, uint8_t out[32]);
uint64_t sc_ns_hash(const semcache *c, const char *ns, size_t ns_len);
uint64_t sc_scope_tag(const semcache *c, const char *ns, size_t ns_len,
                      const char *scope, size_t scope_len);
uint32_t sc_checksum(const void *data, size_t len);
/* The same checksum over a chain of blocks, in place (see key.c). */
typedef struct sc_csum { uint64_t a, b, c, d; } sc_csum;
void sc_csum_init(sc_csum *st, size_t total_len);
void sc_csum_strides(sc_csum *st, const void *data, size_t len); /* len % 32 == 0 */
uint32_t sc_csum_final(sc_csum *st, const void *data, size_t len);

/* ---- core/handle.c: the handle, fork, the writer lock with repair ---- */
int64_t sc_now(const semcache *c);
int sc_wlock(semcache *c);       /* 0, or error; repairs after a dead holder */
bool sc_handle_is_open(const semcache *h); /* h is an open handle of this process */
uint64_t sc_owned_add(void *p);          /* register a private copy: its id, 0 on ENOMEM */
bool sc_owned_take(void *p, uint64_t id); /* unregister: true if (p, id) was registered */
void sc_wunlock(semcache *c);
/* A child forked with an open handle claims its record on its first call,
 * not in the fork handler: a child that only exec()s claims nothing. */
void sc_ensure_record_slow(semcache *c);
static inline void sc_ensure_record(semcache *c)
{
	/* acquire: a thread that sees 0 also sees the record claimed */
	if (SC_UNLIKELY(atomic_load_explicit(&c->need_record, memory_order_acquire)))
		sc_ensure_record_slow(c);
}
#define SC_COUNTERS(c) ((c)->seg.me ? &(c)->seg.me->c : NULL)

/* The reserved_ words of a caller's struct are all zero ("Growing structs"
 * in semcache.h): a non-zero one is a request from a newer header that
 * this library cannot honour, refused rather than ignored. */
static inline bool sc_reserved_zero(const uint64_t *w, size_t n)
{
	uint64_t any = 0;
	for (size_t i = 0; i < n; i++)
		any |= w[i];
	return any == 0;
}
#define SC_RESERVED_ZERO(p) \
	sc_reserved_zero((p)->reserved_, sizeof (p)->reserved_ / sizeof (p)->reserved_[0])

/* ---- core/arena.c: payload blocks (all under wlock) ---- */
static inline uint8_t *sc_block(const semcache *c, uint32_t b)
{
	return c->arena + ((size_t)b << c->block_shift);
}
uint32_t sc_blocks_for(const semcache *c, uint32_t len);
uint32_t sc_arena_pop(semcache *c, uint32_t n);      /* chain of n blocks, or SC_NIL */
void sc_arena_retire(semcache *c, uint32_t head, uint32_t n);
void sc_arena_reclaim(semcache *c);
#define SC_RECLAIM_BATCH 64 /* retired blocks that make a writer reclaim unasked */
void sc_arena_write(semcache *c, uint32_t head, const void *data, uint32_t len);
/* Copy a chain out without trusting it: returns 0, or -1 on a bad link. */
int sc_arena_read(const semcache *c, uint32_t head, uint32_t nblocks, void *out,
                  uint32_t len);

/* ---- core/index.c ---- */
typedef struct sc_hkey {
	uint8_t digest[32];
	uint64_t h;       /* keyed hash of digest: bucket = low bits, tag = high 32 */
} sc_hkey;
void sc_hkey_make(const semcache *c, const uint8_t digest[32], sc_hkey *k);
uint32_t sc_index_bucket(const semcache *c, uint64_t h);
uint32_t sc_index_find_w(semcache *c, const sc_hkey *k);      /* under wlock */
int sc_index_insert(semcache *c, const sc_hkey *k, uint32_t slot); /* under wlock */
void sc_index_remove(semcache *c, uint32_t slot);                /* under wlock */

/* ---- core/evict.c: CLOCK (under wlock) ---- */
/* The next victim from the hand, which it advances: a slot for a new entry,
 * or (for_blocks) an entry whose payload blocks are wanted; never `exclude`.
 * The caller evicts it.  SC_NIL if no slot qualifies. */
uint32_t sc_clock_victim(semcache *c, uint32_t exclude, int64_t now, bool for_blocks);
/* CLOCK's eviction order of slot s from the hand now: lower goes first. */
uint64_t sc_clock_rank(const semcache *c, uint32_t s, int64_t now);

/* ---- core/cache.c ---- */
void sc_slot_clear(semcache *c, uint32_t s);   /* under wlock: retire, unindex, empty */
bool sc_slot_dead(const struct sc_slot *s, int64_t now);
void sc_slot_begin(struct sc_slot *s);
void sc_slot_end(struct sc_slot *s);

/* Zero-copy get; pin=false publishes no hazard and exists only so the
 * benchmark can price pinning (unsafe otherwise). */
int sc_get_ref(semcache *c, const char *ns, const char *key, semcache_ref *ref, bool pin);

/* ---- core/request_json.c ---- */
/* Canonical JSON of a jansson value (json_t *): sorted keys, no white
 * space, one spelling per number; *out is malloc'd (free it). */
int sc_canon_json(const void *json_value, char **out, size_t *len);
/* ---- core/cache.c: the tier's import put ---- */
/* An entry from another host: put with the given absolute times, without
 * DIRTY and without enqueueing it again; skipped (*skipped = 1, returns 0)
 * when the local entry of that key was created at or after created_ms. */
typedef struct sc_put_import {
	int64_t created_ms, exact_exp_ms, sem_exp_ms;
	int skipped;
} sc_put_import;
int sc_put_import_entry(semcache *c, const semcache_put_args *a, sc_put_import *imp);

/* ---- core/outbox.c: the second tier's outbox (writers, under wlock) ---- */
/* Enqueue a PUT of slot s (just written, sequence even) / a deletion of the
 * entry slot s holds (before it is cleared).  No-ops unless a tier was
 * configured for the segment; never fail, never block: a full ring drops
 * the PUT (counted) or, for a deletion past its reserve, counts and marks
 * resync. */
void sc_outbox_put(semcache *c, uint32_t s);
void sc_outbox_del(semcache *c, uint32_t s);
/* core/cache.c, under wlock: the key string of slot s's entry into out[cap]
 * (no NUL); its length, or -1 (unreadable record, longer than cap). */
int sc_slot_key(semcache *c, uint32_t s, char *out, size_t cap);
/* core/cache.c, lock-free: 1 when an entry of this digest is live (its
 * semantic or exact TTL not passed), 0 when not, or a negative code. */
int sc_present_digest(semcache *c, const uint8_t digest[32]);
/* Remove the local entry with this digest (an import of another host's
 * deletion): no outbox item.  Takes the writer lock.  1 removed, 0 absent,
 * or a negative code. */
int sc_delete_digest(semcache *c, const uint8_t digest[32]);
/* Does the segment hold an entry (expired or not) under digest?  Asked
 * under the writer lock, so a reader's retries running out cannot make a
 * live entry look absent (what the resync needs before it deletes).
 * 1, 0, or a lock error. */
int sc_held_digest(semcache *c, const uint8_t digest[32]);
/* backends/syncer.c: an exact miss asks Redis, when this handle's syncer
 * has read-through on and the tier is up; never waits for another thread
 * (a read-through already running on the handle makes this one a miss).
 * 0 with *out on a hit (installed locally), SEMCACHE_ENOTFOUND otherwise. */
int sc_tier_read_through(semcache *c, const char *ns, const char *key,
                         const uint8_t digest[32], semcache_response **out);
/* Stop this handle's syncer, if any (semcache_close). */
void sc_tier_close(semcache *c);

/* ---- core/repair.c ---- */
int sc_repair(semcache *c);   /* under wlock: fix derived state in place from the slots */
int sc_check(semcache *c, char *report, size_t len); /* under wlock */

#endif
