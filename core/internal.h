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
#include "scan.h"
#include "codec.h"

#define SC_LIKELY(x)   __builtin_expect(!!(x), 1)
#define SC_UNLIKELY(x) __builtin_expect(!!(x), 0)

/*
 * A process's view of one segment.  Geometry is copied out of the header at
 * attach, after validation, and every bounds check uses these private
 * copies: a process that later scribbles over the shared header cannot make
 * another process index outside the mapping.
 */
struct semcache {
	int fd;
	char *path;
	uint8_t *base;
	size_t size;

	/* validated geometry (private copies) */
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
	uint8_t *arena;

	/* this process's record; a forked child claims its own on first use */
	uint32_t proc_idx;
	struct sc_proc *me;
	pid_t pid;
	_Atomic int need_record;
	pthread_mutex_t rec_mu;   /* serialises the lazy claim among threads */

	const sc_kernel *kernel;
	int64_t (*clock_ms)(void *arg);
	void *clock_arg;

	/* list of open handles, for the fork handler */
	struct semcache *reg_next, *reg_prev;
};

/* ---- key.c: digests, keyed hashes, checksums ---- */
int sc_key_digest(const char *ns, const char *key, uint8_t out[32]);
uint64_t sc_siphash(const uint64_t k[2], const void *data, size_t len);
uint64_t sc_ns_hash(const semcache *c, const char *ns, size_t ns_len);
uint64_t sc_scope_tag(const semcache *c, const char *ns, size_t ns_len,
                      const char *scope, size_t scope_len);
uint32_t sc_checksum(const void *data, size_t len);
int sc_random_bytes(void *buf, size_t len);

/* ---- shm/segment.c ---- */
int64_t sc_now(const semcache *c);
int sc_wlock(semcache *c);       /* 0, or error; repairs after a dead holder */
int sc_wtrylock(semcache *c);    /* 0, -EBUSY, or error */
void sc_wunlock(semcache *c);

/* ---- shm/proc.c: process table and grace periods ---- */

int sc_proc_attach(semcache *c);
void sc_proc_detach(semcache *c);
int sc_proc_alive(int32_t pid, uint64_t start_time);
uint64_t sc_proc_start_time(int32_t pid);
uint32_t sc_procs_reap(semcache *c);            /* release dead records; under wlock */
bool sc_grace_passed(semcache *c, uint64_t epoch); /* under wlock */
int sc_read_enter(semcache *c, uint32_t *slot);
void sc_read_exit(semcache *c, uint32_t rec, uint32_t slot);
void sc_counters_add(struct sc_counters *to, struct sc_counters *from);
void sc_count_best_miss(struct sc_counters *c, float sim);
/* A child forked with an open handle claims its record on its first call,
 * not in the fork handler: a child that only exec()s claims nothing. */
void sc_ensure_record_slow(semcache *c);
static inline void sc_ensure_record(semcache *c)
{
	/* acquire: a thread that sees 0 also sees the record (c->me) claimed */
	if (SC_UNLIKELY(atomic_load_explicit(&c->need_record, memory_order_acquire)))
		sc_ensure_record_slow(c);
}

/* ---- core/arena.c: payload blocks (all under wlock) ---- */
static inline uint8_t *sc_block(const semcache *c, uint32_t b)
{
	return c->arena + ((size_t)b << c->block_shift);
}
uint32_t sc_blocks_for(const semcache *c, uint32_t len);
uint32_t sc_arena_pop(semcache *c, uint32_t n);      /* chain of n blocks, or SC_NIL */
void sc_arena_retire(semcache *c, uint32_t head, uint32_t n);
void sc_arena_reclaim(semcache *c);
#define SC_GRACE_WAIT_US 100000 /* longest a writer waits for zero-copy readers */
bool sc_arena_reclaim_wait(semcache *c, uint32_t need);
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

/* Zero-copy get; grace=false skips the read-side section and exists only
 * so the benchmark can price grace-period tracking (unsafe otherwise). */
int sc_get_ref(semcache *c, const char *ns, const char *key, semcache_ref *ref, bool grace);

/* ---- core/repair.c ---- */
int sc_repair(semcache *c);   /* under wlock: rebuild derived state from slots */
int sc_check(semcache *c, char *report, size_t len); /* under wlock */

#endif
