/*
 * segment.h - the segment layer: create, attach, validate and detach one
 * shared segment file, and this process's place in it (its process record,
 * see proc.h, and the writer lock, see lock.h).
 *
 * This is the bottom layer: it knows the layout (layout.h) and the public
 * option and error definitions (semcache.h), and nothing of the cache built
 * on top of it (core/).
 */
#ifndef SC_SHM_SEGMENT_H
#define SC_SHM_SEGMENT_H

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

#include "semcache.h"
#include "layout.h"

/* Geometry and configuration, validated on attach and copied out of the
 * header: every bounds check uses these private copies, so a process that
 * later scribbles over the shared header cannot make another process index
 * outside its mapping. */
struct sc_geom {
	uint32_t slots, dim, row_stride, buckets, block_size, block_shift, nblocks;
	uint32_t max_procs, max_payload, quant, qstride;
	uint64_t off_procs, off_index, off_slots, off_lnext, off_meta, off_matrix;
	uint64_t off_qmatrix, off_qscale, off_next, off_outbox, off_arena, file_size;
	uint32_t outbox_cap;
	int64_t exact_ttl_ms, semantic_ttl_ms;
	float threshold;
	uint64_t secret[2];
};

/* Liveness verdicts about other records, kept by a writer between hazard
 * scans (see proc.c): a dead verdict holds for as long as the record's
 * generation is unchanged, a live one for a short while. */
struct sc_live {
	uint32_t gen;
	uint8_t state;     /* 0 unknown, 1 alive, 2 dead */
	int64_t until_ms;  /* monotonic: an alive verdict expires */
};

struct sc_seg {
	int fd;              /* our own open file description: flock(LOCK_SH) while
	                      * attached, and the OFD lock on our record's byte */
	char *path;
	dev_t dev;
	ino_t ino;
	uint8_t *base;
	size_t size;
	/* The arena mapped a second time, read-only: zero-copy references hand
	 * out addresses in it, so a caller's stray write through them faults
	 * instead of changing another tenant's answer. */
	const uint8_t *ro_arena;
	size_t ro_size;
	struct sc_header *hdr;
	struct sc_proc *procs;
	struct sc_geom g;

	/* this process's record; me == NULL when it holds none */
	uint32_t me_idx, me_gen;
	struct sc_proc *me;
	pid_t pid;
	bool lone;            /* we attached an existing segment nobody else had open */

	/* The caller's mutex (its fork handler takes it too): descriptors are
	 * opened, assigned to fd and closed only while holding it, so a fork
	 * in another thread never copies a descriptor that the child's
	 * handler does not know to close.  Never held across a wait. */
	pthread_mutex_t *fd_mu;

	pthread_mutex_t wmu;  /* threads of this process take the writer lock in turn */
	struct sc_live *live; /* max_procs verdicts, used under the writer lock */
};

/*
 * Open (creating if absent and allowed) the segment at path.  The caller
 * zeroes *s and sets s->fd = -1 and s->fd_mu first.  opts are the
 * caller's options as given (NULL = attach to anything, create with
 * defaults); create holds the options a new segment is made with (defaults
 * filled in).  Claims a process record unless SEMCACHE_OPEN_NORECORD.
 * Returns 0 or a negative code; on failure s holds nothing.
 */
int sc_seg_open(struct sc_seg *s, const char *path, const semcache_options *opts,
                const semcache_options *create);
void sc_seg_close(struct sc_seg *s);
int sc_seg_destroy(const char *path, int force);

/* In a child just forked (async-signal-safe): let go of the parent's file
 * description and record, which are the parent's, not ours. */
void sc_seg_fork_child(struct sc_seg *s);
/* Give a forked child its own file description (the same file: refused if
 * the path now names another) and, if claim, its own record.  Without one
 * (SEMCACHE_OPEN_NORECORD) the description still matters: it asks the
 * kernel who is alive and holds the shared flock that tells destroy the
 * segment is in use. */
int sc_seg_reattach(struct sc_seg *s, bool claim);

/* Geometry for new segments; shared with the tool's option checks. */
int sc_geom_from_options(const semcache_options *o, struct sc_geom *g);

int64_t sc_wall_ms(void);
int64_t sc_mono_ms(void);

#endif
