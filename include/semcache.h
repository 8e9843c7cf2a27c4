/*
 * semcache.h - the one public header of semcache.
 *
 * semcache caches LLM responses in one shared-memory segment that many
 * worker processes attach at once.  A lookup is exact (same namespace and
 * key string) or semantic (the most similar stored query embedding of the
 * caller's scope, by cosine similarity).  Readers never take a lock and never
 * wait; writers serialise among themselves; a process killed at any
 * instruction harms nobody (see ../shared/DESIGN.md and shm/layout.h).
 *
 * Conventions
 *  - Every call returns 0 on success or a negative error code: a negative
 *    errno (-EINVAL, -ENOMEM, ...) or one of the SEMCACHE_E* codes below,
 *    which live in a reserved range.  semcache_strerror() names any code.
 *  - Every call that takes the writer lock (put, delete, invalidate, verify,
 *    get with SEMCACHE_GET_TOUCH, and open when it repairs) may also return
 *    SEMCACHE_EBUSY (a live process held the lock for 30 s, never -EBUSY),
 *    -ENOMEM (a repair after a writer died could not allocate its scratch;
 *    the structure stays marked for repair and the next writer tries again),
 *    SEMCACHE_ECORRUPT, or SEMCACHE_EPROCFULL when the handle holds no
 *    process record (SEMCACHE_OPEN_NORECORD, or a forked child that could not
 *    claim one): the lock names its holder's record.  Readers (get, get_ref,
 *    search, foreach, stat) never take it and never wait.
 *  - No call aborts on bad input.  Pointers documented as "may be NULL" may
 *    be; any other NULL pointer argument yields -EINVAL.
 *  - Strings are NUL-terminated UTF-8 (not checked: bytes are stored as
 *    given).  A namespace or key may be empty, never NULL.
 *  - Times are wall-clock milliseconds since the Unix epoch, so hosts that
 *    share entries through the second tier agree on expiry.
 *  - Thread safety: one handle may be used by many threads of a process at
 *    once, except semcache_close(), which must be the last call on it.
 *  - fork(): a handle opened before fork() keeps working in the child; the
 *    child gets its own process record automatically on its first call (a
 *    SEMCACHE_OPEN_NORECORD handle never takes one, in the child either).
 *  - -EBUSY and SEMCACHE_EBUSY are different codes.  SEMCACHE_EBUSY means
 *    "gave up after waiting" (a live process held the writer lock for 30 s,
 *    or semcache_open() saw the file replaced under it over and over);
 *    -EBUSY is returned by semcache_destroy() (the segment is in use);
 *    apart from an errno the file system itself gives open(), no other
 *    public call returns -EBUSY.
 *
 * Growing structs (the compatibility rule)
 *  - Structs the caller fills and passes in (semcache_options,
 *    semcache_put_args, semcache_response given to put, semcache_request)
 *    end in reserved_ words that must be zero: semcache_options_init(),
 *    designated initialisers and "= {0}" all do that.  A later version
 *    gives those words meaning, with zero meaning today's behaviour, so a
 *    caller built against this header works unchanged with later
 *    libraries; a library older than the caller's header refuses non-zero
 *    reserved words with -EINVAL instead of ignoring a request it does not
 *    understand.
 *  - Structs the library fills in caller memory (semcache_stats,
 *    semcache_counters, semcache_proc_info, semcache_match) keep their
 *    size: later fields take their reserved_ words.
 *  - semcache_entry_info (passed to a callback) and semcache_response
 *    returned by the library live in library memory and may grow at the
 *    end.  Array elements (semcache_tool_call, semcache_message) never
 *    change; a later version adds a new struct instead.
 *  - semcache_version() says which library is running; SEMCACHE_VERSION_*
 *    say which header the caller was built with.
 */
#ifndef SEMCACHE_H
#define SEMCACHE_H

#include <stddef.h>
#include <stdint.h>
#include <sys/uio.h>

#ifdef __cplusplus
extern "C" {
#endif

#if defined(__GNUC__) && defined(SEMCACHE_BUILDING)
#define SEMCACHE_API __attribute__((visibility("default")))
#else
#define SEMCACHE_API
#endif

#define SEMCACHE_VERSION_MAJOR 0
#define SEMCACHE_VERSION_MINOR 2
#define SEMCACHE_VERSION_PATCH 0
/* One comparable number: (major << 16) | (minor << 8) | patch. */
#define SEMCACHE_VERSION_NUMBER \
	((SEMCACHE_VERSION_MAJOR << 16) | (SEMCACHE_VERSION_MINOR << 8) | SEMCACHE_VERSION_PATCH)

/*
 * The running library's version, which may differ from the header's
 * SEMCACHE_VERSION_* when the shared library was upgraded under a built
 * program.  Returns "major.minor.patch" (static storage, never NULL) and
 * stores the three numbers in *major, *minor, *patch (each may be NULL).
 * Any thread, any time, no handle needed.
 */
SEMCACHE_API const char *semcache_version(int *major, int *minor, int *patch);

/* ------------------------------------------------------------------------
 * Error codes.  semcache's own codes occupy [-30099, -30000]; every other
 * negative value is a negated errno.
 * ---------------------------------------------------------------------- */
#define SEMCACHE_ERRBASE      (-30000)
#define SEMCACHE_ENOTFOUND    (-30000) /* no matching entry (a miss) */
#define SEMCACHE_ENOTSEMCACHE (-30001) /* file is not a semcache segment */
#define SEMCACHE_ETRUNCATED   (-30002) /* file shorter than its header needs */
#define SEMCACHE_EVERSION     (-30003) /* segment has another layout version */
#define SEMCACHE_ESIGNATURE   (-30004) /* segment built with another struct layout */
#define SEMCACHE_EGEOMETRY    (-30005) /* options contradict the stored geometry */
#define SEMCACHE_ECORRUPT     (-30006) /* segment fails validation or a consistency check */
#define SEMCACHE_EBADRECORD   (-30007) /* malformed or oversized response record */
#define SEMCACHE_EPROCFULL    (-30008) /* every process record is taken by a live process,
                                        * or this handle holds none */
#define SEMCACHE_EDIM         (-30009) /* embedding dimension differs from the segment's */
#define SEMCACHE_EEMBEDDING   (-30010) /* embedding has NaN/Inf or zero norm */
#define SEMCACHE_ENOSEMANTIC  (-30011) /* segment was created without embeddings (dim 0) */
#define SEMCACHE_EFULL        (-30012) /* no room: remaining space is held by readers */
#define SEMCACHE_EBUSY        (-30013) /* gave up waiting (not -EBUSY): the writer lock
                                        * stayed held by a live process for 30 s, or
                                        * open saw the file replaced over and over */
#define SEMCACHE_EUNSAFE      (-30014) /* segment file refused: a symbolic link, not a regular
                                        * file, owned by another user, or with permission bits
                                        * broader than asked */
#define SEMCACHE_ELAST        (-30014)

/* Name any return code: never NULL, static storage. */
SEMCACHE_API const char *semcache_strerror(int err);

/* ------------------------------------------------------------------------
 * Opening a segment
 * ---------------------------------------------------------------------- */
typedef struct semcache semcache; /* opaque */

#define SEMCACHE_DEFAULT_PATH "/dev/shm/semcache"

/* flags for semcache_options.flags */
#define SEMCACHE_OPEN_NOCREATE 0x01u /* fail with -ENOENT if the segment is absent */
#define SEMCACHE_OPEN_EXCL     0x02u /* fail with -EEXIST if the segment exists */
#define SEMCACHE_OPEN_GROUP    0x04u /* create with mode 0660 instead of 0600 */
#define SEMCACHE_OPEN_NORECORD 0x08u /* take no process record (inspection tools:
                                      * works when the table is full; such a handle
                                      * counts nothing, cannot semcache_get_ref and
                                      * cannot write: SEMCACHE_EPROCFULL), not even
                                      * in a child after fork() */
#define SEMCACHE_QUANT_INT8    0x10u /* keep an int8 copy of rows for a two-stage scan */
#define SEMCACHE_QUANT_BITS    0x20u /* keep a sign-bit copy of rows for a two-stage scan */

/* Bits of semcache_options.defaults: one per geometry field. */
#define SEMCACHE_GEOM_SLOTS       0x01u
#define SEMCACHE_GEOM_DIM         0x02u
#define SEMCACHE_GEOM_ARENA       0x04u /* arena_bytes */
#define SEMCACHE_GEOM_BLOCK_SIZE  0x08u
#define SEMCACHE_GEOM_MAX_PROCS   0x10u
#define SEMCACHE_GEOM_MAX_PAYLOAD 0x20u
#define SEMCACHE_GEOM_ALL         0x3fu

/*
 * Options for semcache_open().  Initialise with semcache_options_init(),
 * then change what you need.  Geometry fields (slots .. max_payload) and
 * configuration defaults (ttls, threshold, quantisation) are used when the
 * segment is created.  When attaching to an existing segment, the
 * configuration defaults are the segment's, and a geometry field is a
 * requirement (it must equal the segment's, else SEMCACHE_EGEOMETRY) only
 * when the caller chose it:
 *  - a field at 0 is never a requirement (it takes the segment's value);
 *  - a field whose bit is set in `defaults` and that still holds the value
 *    semcache_options_init() gave it is not a requirement either.
 *    semcache_options_init() sets every bit, so after it, open attaches to
 *    a segment of any geometry, and a field the caller changed (o.dim =
 *    768) must match;
 *  - to insist on a value that happens to equal the default (o.dim = 384
 *    when the embedder makes 384 floats), also clear its bit:
 *    o.defaults &= ~SEMCACHE_GEOM_DIM.
 * Options not made by semcache_options_init() (all zero, then filled in)
 * have defaults == 0: every non-zero geometry field is a requirement.
 * Quantisation asked for (SEMCACHE_QUANT_*) must match too; none asked for
 * takes the segment's.
 * Creation also requires: arena_bytes / block_size >= 2 and at least two
 * max_payload's worth of blocks, max_payload >= 64, TTLs > 0 (else -EINVAL).
 * SEMCACHE_OPEN_NOCREATE never writes a new header, not even into an empty
 * or abandoned file (SEMCACHE_ENOTSEMCACHE).
 */
typedef struct semcache_options {
	uint32_t slots;          /* entry capacity, 16 .. 2^26; default 65536 */
	uint32_t dim;            /* embedding dimension 1..4096, or 0 for none; default 384 */
	uint64_t arena_bytes;    /* payload arena; default 64 MiB */
	uint32_t block_size;     /* payload block, power of two 64..65536; default 256 */
	uint32_t max_procs;      /* process records, 1..4096; default 256 */
	uint32_t max_payload;    /* largest encoded record, 64 .. 1 GiB; default 1 MiB */
	uint32_t flags;          /* SEMCACHE_OPEN_*, SEMCACHE_QUANT_* */
	uint32_t defaults;       /* SEMCACHE_GEOM_* bits: which geometry fields are
	                          * defaults rather than requirements when attaching
	                          * (see above); options_init sets SEMCACHE_GEOM_ALL */
	int64_t exact_ttl_ms;    /* default exact TTL; default 3600 s */
	int64_t semantic_ttl_ms; /* default semantic TTL; default 86400 s */
	float threshold;         /* default similarity threshold; default 0.92 */
	/* Wall clock in ms, process-local; NULL = CLOCK_REALTIME.  Tests inject one. */
	int64_t (*clock_ms)(void *arg);
	void *clock_arg;
	uint64_t reserved_[6];   /* zero (see "Growing structs") */
} semcache_options;

/* Fill *o with the defaults above, defaults = SEMCACHE_GEOM_ALL, reserved
 * words zero.  Never fails; o may be NULL (no-op). */
SEMCACHE_API void semcache_options_init(semcache_options *o);

/*
 * Open (creating if absent) the segment at path (NULL = SEMCACHE_DEFAULT_PATH).
 * Creation happens under an exclusive flock, so processes racing to create
 * get one segment.  opts may be NULL (defaults).  On success *out is a
 * handle for semcache_close().  Errors: -errno from the file system,
 * SEMCACHE_ENOTSEMCACHE, SEMCACHE_ETRUNCATED, SEMCACHE_EVERSION,
 * SEMCACHE_ESIGNATURE, SEMCACHE_EGEOMETRY, SEMCACHE_ECORRUPT,
 * SEMCACHE_EPROCFULL (at once, never waiting, when every record is held by
 * a live process), -ENOLCK (the kernel has no OFD locks, so this process's
 * liveness could not be established), -EINVAL (bad options, unknown flags
 * or non-zero reserved words), SEMCACHE_EBUSY (the file at path was
 * replaced over and over while opening).  The first
 * process to open an existing segment nobody else has open repairs it in
 * place (after every user was killed, or a copied or damaged file).
 */
SEMCACHE_API int semcache_open(const char *path, const semcache_options *opts,
                               semcache **out);

/* Detach and free the handle.  c may be NULL.  Returns 0. */
SEMCACHE_API int semcache_close(semcache *c);

/*
 * Remove the segment file at path (NULL = default).  Refuses with -EBUSY
 * while any process has it open, unless force is non-zero.  Refuses a file
 * that is not a semcache segment (SEMCACHE_ENOTSEMCACHE), force or not:
 * it will not delete what it cannot recognise.
 */
SEMCACHE_API int semcache_destroy(const char *path, int force);

/* ------------------------------------------------------------------------
 * Response records
 * ---------------------------------------------------------------------- */
typedef struct semcache_tool_call {
	const char *id;
	const char *name;
	const char *arguments; /* usually JSON text */
} semcache_tool_call;

/*
 * One cached LLM response.  On input (semcache_put) NULL strings are stored
 * as absent; content and model may not be NULL; reserved_ must be zero.
 * On output content and model are never NULL, and finish_reason, reasoning
 * and metadata are NULL exactly when the stored record had none (absent,
 * not ""); tool_calls is NULL when n_tool_calls is 0.
 */
typedef struct semcache_response {
	const char *content;
	const char *model;
	uint32_t prompt_tokens;
	uint32_t completion_tokens;
	const semcache_tool_call *tool_calls;
	uint32_t n_tool_calls;    /* at most 1024 */
	uint32_t latency_ms;
	const char *finish_reason;
	const char *reasoning;    /* optional reasoning content */
	const char *metadata;     /* optional caller metadata (opaque text) */
	uint64_t reserved_[2];    /* zero on input; zero on output */
} semcache_response;

/* Free a response returned by get/search (one allocation).  r may be NULL. */
SEMCACHE_API void semcache_response_free(semcache_response *r);

/* ------------------------------------------------------------------------
 * Writing
 * ---------------------------------------------------------------------- */
typedef struct semcache_put_args {
	const char *ns;        /* namespace: tenant, user, ACL hash; never NULL */
	const char *key;       /* key string within ns; never NULL */
	const char *scope;     /* what may answer each other semantically within ns
	                        * (model + answer-changing params); NULL = "" */
	const semcache_response *response;
	const float *embedding; /* embedding_dim floats (any non-zero norm), or
	                         * NULL: when replacing, keep the old embedding;
	                         * when inserting, the entry has none */
	uint32_t embedding_dim; /* must equal the segment's dim (SEMCACHE_EDIM) */
	int64_t exact_ttl_ms;    /* 0 = segment default, > 0 = this entry's TTL */
	int64_t semantic_ttl_ms; /* 0 = segment default, > 0 = this entry's TTL */
	uint64_t reserved_[4];   /* zero (see "Growing structs") */
} semcache_put_args;

/*
 * Insert or replace the entry (ns, key).  Evicts by CLOCK (expired entries
 * first) when slots or arena run out.  TTLs saturate: INT64_MAX means
 * never.  Errors: -EINVAL (NULL ns/key/response, negative TTL, non-zero
 * reserved words in a or a->response),
 * SEMCACHE_EBADRECORD (response without content or model, over 1024 tool
 * calls), -E2BIG (encoded record larger than max_payload: nothing
 * changes), SEMCACHE_EDIM, SEMCACHE_EEMBEDDING, SEMCACHE_ENOSEMANTIC,
 * SEMCACHE_EFULL (the space left is pinned by zero-copy references).
 */
SEMCACHE_API int semcache_put(semcache *c, const semcache_put_args *a);

/* ------------------------------------------------------------------------
 * Reading
 * ---------------------------------------------------------------------- */
#define SEMCACHE_GET_TOUCH 0x01u /* a hit restarts the entry's TTLs (takes the writer lock) */

/*
 * Exact lookup of (ns, key).  On a hit *out gets a response to free with
 * semcache_response_free().  An entry past its exact TTL is a miss.  When
 * this handle runs a syncer started with read_through_ms > 0 and the tier
 * is up, a local miss asks Redis under that deadline and installs a hit
 * (see semcache_tier_options); otherwise no lookup touches the network.
 * Errors: SEMCACHE_ENOTFOUND (miss), -EINVAL, -ENOMEM.
 */
SEMCACHE_API int semcache_get(semcache *c, const char *ns, const char *key,
                              unsigned flags, semcache_response **out);

/*
 * Zero-copy exact lookup.  On a hit, ref->iov[0 .. ref->iovcnt) point at
 * the response's content bytes in place in the segment (ref->len bytes in
 * all, not NUL-terminated), ready for writev(), through a read-only mapping
 * (a stray write through them faults instead of changing the entry).  The
 * payload's checksum is verified first, as semcache_get does, so a damaged
 * entry is a miss.  They stay valid and
 * unchanged until semcache_release(c, ref), even if the entry is replaced,
 * evicted or invalidated meanwhile: the reference pins exactly its entry's
 * blocks (a hazard word in this process's record, see shm/proc.c), which
 * wait in limbo until it is released or this process dies.  A held, slow
 * or leaked reference costs those blocks and nothing else: puts evict
 * around it and never wait.  Every successful call must be paired with one
 * semcache_release(), from any thread of the same process (a reference
 * inherited through fork() is the parent's: releasing it in the child is a
 * no-op there).  A process has 32 hazard words; a reference taken while
 * all are in use, or to content spread over more than SEMCACHE_REF_IOV
 * runs of blocks, gets a private copy of the content, which pins nothing.
 * Errors: SEMCACHE_ENOTFOUND (miss; nothing to release), -EINVAL, -ENOMEM,
 * SEMCACHE_EPROCFULL (this handle has no process record).
 */
#define SEMCACHE_REF_IOV 16
typedef struct semcache_ref {
	struct iovec iov[SEMCACHE_REF_IOV]; /* iov[0 .. iovcnt): the content */
	int iovcnt;
	size_t len;
	/* private */
	void *owned_;              /* a private copy of the content, or NULL */
	uint64_t owned_id_;        /* its registration (see core/handle.c) */
	struct semcache *handle_;  /* the handle that took the pin */
	uint64_t ticket_;          /* 0: holds no pin */
	uint32_t rec_, gen_;       /* that handle's record and its generation */
	uint32_t word_, pin_;      /* the hazard word and its value */
} semcache_ref;

SEMCACHE_API int semcache_get_ref(semcache *c, const char *ns, const char *key,
                                  semcache_ref *ref);

/*
 * End a zero-copy reference: unpin its blocks (or free its private copy)
 * and clear *ref.  The reference may have been copied or returned by value
 * since it was taken (it holds no pointer into itself); release exactly one
 * of its copies.  c may be any open handle of the process that took it.
 * Returns 0; -EINVAL when ref is NULL, when the handle that took it was
 * closed or belongs to another process (a reference inherited through
 * fork(): the parent's pin is not the child's to clear), or when it was
 * released already; *ref is cleared in every case.  Safe on a ref from a
 * failed get_ref (returns 0).
 */
SEMCACHE_API int semcache_release(semcache *c, semcache_ref *ref);

/*
 * Semantic lookup: the best entry of (ns, scope) whose cosine similarity to
 * query (dim floats, dim equal to the segment's, any non-zero norm) is >=
 * threshold and whose semantic TTL has not passed.  threshold is in
 * [-1, 1] (0 is a real threshold), or NAN for the segment's configured
 * default (semcache_stats.threshold).  similarity may be NULL.
 * Errors: SEMCACHE_ENOTFOUND, SEMCACHE_EDIM, SEMCACHE_EEMBEDDING,
 * SEMCACHE_ENOSEMANTIC, -EINVAL (NULL arguments, threshold out of range or
 * infinite), -ENOMEM.
 */
SEMCACHE_API int semcache_search(semcache *c, const char *ns, const char *scope,
                                 const float *query, uint32_t dim, float threshold,
                                 semcache_response **out, float *similarity);

/*
 * One semantic match and what it matched, so a caller can verify the
 * candidate (right namespace, key, scope, fresh enough) before using it.
 * Ownership: one call frees everything, semcache_response_free(response);
 * ns, key and scope are NUL-terminated copies stored inside that same
 * allocation, valid exactly as long as response.
 */
typedef struct semcache_match {
	semcache_response *response; /* free with semcache_response_free() */
	float similarity;            /* cosine similarity, re-scored under the entry's
	                              * sequence word (not the scan's estimate) */
	uint32_t slot;               /* the entry's slot, as semcache_entry_info.slot */
	const char *ns;              /* the entry's namespace (== the ns searched) */
	const char *key;             /* the entry's key string */
	const char *scope;           /* the entry's scope (== the scope searched) */
	int64_t created_ms;          /* when it was stored */
	int64_t exact_expiry_ms;     /* its exact deadline (may be past: semantic
	                              * answers outlive exact ones by design) */
	int64_t semantic_expiry_ms;  /* its semantic deadline (in the future) */
	uint64_t reserved_[4];       /* zero; later versions fill these */
} semcache_match;

/*
 * semcache_search() with the match's identity and times: on a hit fills
 * *m (see semcache_match; free with semcache_response_free(m->response)).
 * Same threshold rule (NAN = the segment's default) and errors; on any
 * error *m is zeroed and holds nothing to free.
 */
SEMCACHE_API int semcache_search_ex(semcache *c, const char *ns, const char *scope,
                                    const float *query, uint32_t dim, float threshold,
                                    semcache_match *m);

/*
 * Top-k form of semcache_search(): up to k (1..64) matches, best first, in
 * matches[0 .. *n), each with its identity and times (semcache_match).
 * Returns 0 with *n == 0 when nothing passes threshold (NAN = the
 * segment's default).  Each match's response must be freed.
 */
SEMCACHE_API int semcache_search_topk(semcache *c, const char *ns, const char *scope,
                                      const float *query, uint32_t dim, float threshold,
                                      semcache_match *matches, size_t k, size_t *n);

/* ------------------------------------------------------------------------
 * Deletion and invalidation
 * ---------------------------------------------------------------------- */
/*
 * Remove exactly the entry (ns, key): the whole key string, not a prefix
 * (deleting "user1" leaves "user10:x").  Takes the writer lock.  Returns 0
 * when an entry was removed, SEMCACHE_ENOTFOUND when there was none (an
 * entry past both its TTLs counts as none: it is removed, counted as an
 * expiration, and the call returns SEMCACHE_ENOTFOUND).  A removal is
 * counted in semcache_counters.deletes, not in invalidations.  Zero-copy
 * references to the entry stay valid until released.  Errors: -EINVAL
 * (NULL c, ns or key), -ENOMEM, and the writer-lock errors (top of file).
 */
SEMCACHE_API int semcache_delete(semcache *c, const char *ns, const char *key);

/*
 * Remove entries.  ns NULL = every namespace; prefix NULL or "" = every key.
 * So (NULL, NULL) removes all, (ns, NULL) one namespace, (ns, "p") keys
 * starting with "p" in ns, (NULL, "p") such keys in every namespace.
 * *count (may be NULL) gets how many entries went.
 */
SEMCACHE_API int semcache_invalidate(semcache *c, const char *ns, const char *prefix,
                                     uint64_t *count);

/* ------------------------------------------------------------------------
 * Statistics and inspection
 * ---------------------------------------------------------------------- */
typedef struct semcache_counters {
	uint64_t hits, misses;          /* exact */
	uint64_t sem_hits, sem_misses;  /* semantic */
	uint64_t puts, evictions, expirations, invalidations;
	float sem_miss_best;            /* best similarity seen on a semantic miss, or -2 */
	uint64_t deletes;               /* entries removed by semcache_delete() */
	uint64_t reserved_[3];          /* zero; later versions fill these */
} semcache_counters;

typedef struct semcache_stats {
	/* geometry and configuration */
	uint32_t slots, dim, block_size, max_procs, max_payload;
	uint32_t quant;       /* 0 none, 1 int8, 2 sign bits (two-stage scan) */
	uint64_t arena_bytes, segment_bytes;
	int64_t exact_ttl_ms, semantic_ttl_ms;
	float threshold;
	uint64_t created_ms;
	/* state */
	uint64_t entries;
	uint64_t blocks_total, blocks_free, blocks_used, blocks_limbo;
	uint64_t bytes_used, bytes_free; /* arena bytes */
	uint32_t procs_attached;
	uint64_t repairs;     /* repairs after a writer died or damage was found */
	/* counters summed over every process, including departed ones: a
	 * process that exits or is killed, with or without semcache_close(),
	 * leaves its counts in the totals */
	semcache_counters total;
	uint64_t reserved_[4];          /* zero; later versions fill these */
} semcache_stats;

/* Geometry, occupancy and summed counters of the segment.  Lock-free; the
 * figures are each exact but not one snapshot while writers run. */
SEMCACHE_API int semcache_stat(semcache *c, semcache_stats *st);

typedef struct semcache_proc_info {
	uint32_t index;
	int32_t pid;          /* as the process sees itself: in another PID
	                       * namespace this is not a pid of the caller's */
	int64_t attached_ms;  /* wall clock when it claimed the record */
	int alive;            /* 1: the kernel holds its record lock (always 1 here) */
	int self;             /* 1 for the calling handle's own record */
	uint32_t pins;        /* zero-copy references it holds now */
	semcache_counters counters;
	uint64_t reserved_[2]; /* zero; later versions fill these */
} semcache_proc_info;

/* Process records of live processes into info[0 .. *n), at most cap of
 * them.  Liveness comes from the kernel (an OFD lock per record), so it is
 * right across PID namespaces and after exec(). */
SEMCACHE_API int semcache_procs(semcache *c, semcache_proc_info *info, size_t cap,
                                size_t *n);

typedef struct semcache_entry_info {
	const char *ns, *key, *scope; /* valid during the callback only */
	int64_t created_ms, exact_expiry_ms, semantic_expiry_ms;
	uint32_t hits;
	uint32_t size;        /* encoded record bytes */
	int has_embedding;
	uint32_t slot;
} semcache_entry_info;

/*
 * Call fn for every live entry (ns NULL = all, prefix NULL = all keys),
 * a consistent copy of each.  fn returns 0 to go on, non-zero to stop (that
 * value is returned).  Never blocks writers for long: entries changing under
 * the walk are skipped or seen once.
 */
SEMCACHE_API int semcache_foreach(semcache *c, const char *ns, const char *prefix,
                                  int (*fn)(const semcache_entry_info *e, void *arg),
                                  void *arg);

/*
 * Full consistency check (index, slots, arena accounting, process table),
 * taken under the writer lock.  0 when consistent; SEMCACHE_ECORRUPT with a
 * description in report (may be NULL) otherwise.
 */
SEMCACHE_API int semcache_verify(semcache *c, char *report, size_t report_len);

/* ------------------------------------------------------------------------
 * The second tier: Redis (backends/syncer.c)
 *
 * One syncer per segment, elected by a lease in the segment, copies this
 * host's writes to Redis and other hosts' writes from it.  Any process may
 * start one; the others wait and take over when the holder's process dies
 * (at once: the kernel drops its record lock; noticed within about 200 ms)
 * or hangs (its heartbeat is older than 3 s).  Requests never wait for the
 * network: put and invalidate append to an outbox in the segment (once any
 * process started a tier on it), which the syncer sends in pipelined
 * batches.  Keys, under the prefix: <prefix>llm_cache:<id> (the entry,
 * native msgpack, TTL = the longer remaining of its exact and semantic
 * TTLs), <prefix>llm_cache_emb:<id> (its embedding, raw float32, semantic
 * TTL), <prefix>llm_cache_index (SET of ids), <prefix>llm_cache_events (a
 * stream of "op id origin" events other hosts import from),
 * <prefix>llm_cache_fence:<origin> (the epoch of the newest holder: every
 * batch is a MULTI/EXEC under WATCH of it, so a holder that hung past a
 * takeover applies nothing); id = hex SHA-256 digest of (ns, key).
 *
 * The seed format (SEMCACHE_TIER_SEED) shares one Redis with services still
 * on the reference Python cache: the same keys hold the reference JSON
 * ({"response", "query_embedding", "created_at", "hit_count"} plus
 * "scope", semcache's scope, which the reference reader ignores; the
 * embedding key a JSON list of floats), and the id is the key string.
 * Only entries of seed_namespace whose key is 1..256 bytes of 0x21..0x7e
 * are exported (deletions too); others stay local, counted in
 * semcache_tier_stats.seed_skipped.  Entries are imported from events of
 * other semcache hosts and, since a reference service writes no events,
 * by walking the index SET (SSCAN, a bounded step per loop, a full pass
 * at most every second); an entry read back gets its expiry from the
 * keys' TTLs (a key without one: the segment's default TTLs from
 * created_at) and scope "" when the JSON has none.  Limits: a deletion
 * or a replacement made by a reference service is not seen while the
 * entry lives here (until it expires or is evicted); the exact TTL read
 * back is the entry key's, i.e. the longer of the exporter's two TTLs.
 * All hosts that share a prefix must use one format: a native host and a
 * seed host on one prefix reject each other's events and values.
 * ---------------------------------------------------------------------- */
typedef struct semcache_tier_options {
	const char *host;        /* Redis host (IP literal or name); NULL = "127.0.0.1" */
	int port;                /* TCP port; 0 = 6379 */
	const char *unix_path;   /* unix socket instead of TCP, or NULL */
	const char *username;    /* ACL user, or NULL */
	const char *password;    /* AUTH password, or NULL */
	int db;                  /* SELECT db when > 0 */
	const char *prefix;      /* key prefix, at most 64 bytes of 0x21..0x7e; NULL = "" */
	int format;              /* SEMCACHE_TIER_NATIVE (default) or SEMCACHE_TIER_SEED
	                          * (the reference design's JSON, see above); one
	                          * format per prefix across all hosts */
	uint32_t connect_timeout_ms; /* connect + AUTH + PING deadline; 0 = 1000 */
	uint32_t command_timeout_ms; /* each pipelined batch's deadline; 0 = 1000 */
	uint32_t batch;          /* outbox items per batch, 1..1024; 0 = 256 */
	uint32_t warmup;         /* events read back by a new segment's first syncer; 0 = 1000 */
	uint32_t backoff_base_ms, backoff_cap_ms; /* reconnect backoff; 0 = 50, 2000 */
	uint32_t read_through_ms; /* > 0: an exact miss of semcache_get() on this handle
	                           * asks Redis under this deadline (connecting too),
	                           * only while the tier is up, one request at a time
	                           * per handle (a concurrent miss does not wait: it
	                           * stays a miss); a hit there is installed locally.
	                           * 0 = off (default) */
	const char *seed_namespace; /* SEMCACHE_TIER_SEED: the namespace shared with
	                             * the reference service (its ids are this
	                             * namespace's keys); NULL = "" (the empty
	                             * namespace).  Ignored by the native format. */
	uint32_t index_pass_ms;  /* native format: a pass over the index SET (trimming
	                          * ids whose entry is gone; importing after a gap in
	                          * the event stream; resync after lost deletions)
	                          * starts at most this often; 0 = 30000.  The seed
	                          * format passes every second (its import needs it). */
} semcache_tier_options;

#define SEMCACHE_TIER_NATIVE 0
#define SEMCACHE_TIER_SEED   1

/* Fill *o with the defaults above.  Never fails. */
SEMCACHE_API void semcache_tier_options_init(semcache_tier_options *o);

/*
 * Start a syncer thread for c in the calling process (o NULL = defaults).
 * Returns at once, without touching the network: the thread takes the
 * lease when it can and connects.  From this call on, writers of the
 * segment enqueue for the tier (every process, even after the syncer
 * stops), and entries already in the segment are exported by a sweep.
 * Errors: -EINVAL (bad options, an unknown format), -EALREADY (this handle
 * runs one), SEMCACHE_EPROCFULL (no process record), -ENOMEM,
 * -errno from pthread_create.  Call from any thread but not concurrently
 * with semcache_close(c).
 */
SEMCACHE_API int semcache_tier_start(semcache *c, const semcache_tier_options *o);

/* Stop c's syncer and its doorbell thread (waits at most about one command
 * deadline plus 200 ms for a batch or a blocking read in flight) and give
 * the lease up so another process takes over at once.  0, or -ENOENT when
 * none runs.  semcache_close() does this too. */
SEMCACHE_API int semcache_tier_stop(semcache *c);

#define SEMCACHE_TIER_OFF        0 /* no live syncer holds the lease */
#define SEMCACHE_TIER_CONNECTING 1
#define SEMCACHE_TIER_UP         2
#define SEMCACHE_TIER_DEGRADED   3 /* Redis unreachable, hung or refusing: serving locally */

typedef struct semcache_tier_stats {
	int configured;            /* a tier was ever started on this segment */
	int state;                 /* SEMCACHE_TIER_*; OFF when the holder is gone */
	const char *state_name;    /* "off", "connecting", "up", "degraded" (static) */
	int64_t since_ms;          /* wall ms of the last state change (0 = never) */
	int64_t last_ok_ms;        /* wall ms of the last acknowledged batch */
	int64_t lag_ms;            /* enqueue-to-acknowledged time of the last item */
	int last_error;            /* class of the last failure (negative errno), 0 none */
	const char *last_error_class; /* "ok", "unreachable", "timeout", "auth", "oom", ... */
	int64_t last_error_ms;
	char last_error_text[128]; /* Redis's or the system's words, sanitised */
	int32_t syncer_pid;        /* as the holder sees itself; 0 when none */
	int syncer_alive;          /* holder's process lives and its heartbeat is fresh */
	uint64_t epoch;            /* lease takeovers so far + 1 per start */
	uint64_t outbox_depth, outbox_capacity;
	uint64_t exported, deleted;        /* entries and deletions sent to Redis */
	uint64_t imported, import_deleted; /* other hosts' entries installed / removed here */
	uint64_t import_rejected;  /* values from Redis refused by validation */
	uint64_t reconnects, takeovers, swept;
	uint64_t read_through;     /* exact misses answered from Redis */
	uint64_t dropped;          /* PUT items dropped on a full outbox (re-exported by a sweep) */
	uint64_t deletes_lost;     /* deletions that found the outbox full */
	int resync_needed;         /* a deletion was lost and no resync pass has started
	                            * since (native: the next index pass resyncs) */
	uint64_t seed_skipped;     /* seed format: entries and deletions kept local
	                            * (another namespace, a key that is no seed id) */
	uint64_t index_trimmed;    /* index SET members of entries gone from Redis, removed */
	uint64_t import_gaps;      /* times events were trimmed from the stream before this
	                            * segment read them (an import pass followed) */
	uint64_t resyncs;          /* resync passes completed */
	uint64_t resync_deleted;   /* entries this segment exported and no longer held,
	                            * deleted from Redis by resync passes */
} semcache_tier_stats;

/* The tier's state as the segment records it.  Lock-free, never waits. */
SEMCACHE_API int semcache_tier_stat(semcache *c, semcache_tier_stats *st);

/* ------------------------------------------------------------------------
 * Request layer: keys and scopes from an LLM request
 * ---------------------------------------------------------------------- */
typedef struct semcache_message {
	const char *role;    /* "system", "user", "assistant", "tool" */
	const char *content;
} semcache_message;

typedef struct semcache_request {
	const char *model;                 /* never NULL */
	const semcache_message *messages;  /* n_messages of them, 1..65536 */
	size_t n_messages;
	double temperature;                /* NAN = not given */
	int32_t max_tokens;                /* < 0 = not given */
	const char *tools;                 /* tool definitions (JSON text) or NULL */
	const char *tool_choice;           /* or NULL */
	uint64_t reserved_[4];             /* zero (see "Growing structs") */
} semcache_request;

#define SEMCACHE_KEY_LEN   (64 + 2 + 128) /* room for "<model>:<64 hex>" + NUL */
#define SEMCACHE_SCOPE_LEN 256

/*
 * Build the exact-match key and the semantic scope of a request.
 *  key   = "<model>:" + hex SHA-256 of a canonical, length-prefixed encoding
 *          of model, every message (role and content), temperature,
 *          max_tokens, tools and tool_choice.  Requests differing in any of
 *          them get different keys; the model prefix lets
 *          semcache_invalidate(ns, "<model>:") drop one model's entries
 *          (model names may contain ':', as "llama3:8b" does, so the prefix
 *          "llama3:" also matches "llama3:8b:..." keys; use the full name).
 *  scope = what may answer each other semantically: model, a hash of tools
 *          and tool_choice, a hash of the system/developer messages, and a
 *          temperature bucket (0, <=0.5, <=1, >1, unset), so an answer from
 *          another model, tool set or system prompt never comes back for a
 *          paraphrase.
 * The namespace is not part of either: pass it to put/get/search, which
 * mix it into the digest and the scope tag.
 * Errors: -EINVAL (NULL fields, model longer than 127 bytes, bad counts,
 * non-zero reserved words),
 * -ENAMETOOLONG (scope_len too small), -ENOMEM (libcrypto failure).
 */
SEMCACHE_API int semcache_request_key(const semcache_request *r, char key[SEMCACHE_KEY_LEN],
                                      char *scope, size_t scope_len);

/*
 * Key and scope of an OpenAI-style chat-completions request, from its JSON
 * body (len bytes; the text a client sends to /v1/chat/completions).  Every
 * field that can change the answer is part of the key - every message with
 * all of its parts, name, tool_calls and tool_call_id, tools, tool_choice,
 * response_format, temperature, top_p, seed, stop, n, max_tokens,
 * max_completion_tokens, the penalties, logit_bias, logprobs, and any field
 * not listed here - except stream, stream_options, user, metadata, store and
 * a LiteLLM-style `cache` object, which cannot.  key = "<model>:" + hex
 * SHA-256 of the body's canonical JSON (sorted keys, one spelling per
 * number), so formatting and key order never matter.  scope = the model, a
 * hash of the body with the last user message's text blanked and
 * temperature removed, and a temperature bucket: requests that differ only
 * in the wording of their last user message share it.  This is what
 * semcache-proxy uses; semcache_request_key() covers only the fields of
 * semcache_request.  scope may be NULL when scope_len is 0.
 * Errors: -EINVAL (not a JSON object, duplicate keys, no non-empty string
 * model of at most 127 bytes, no non-empty messages array of objects with a
 * string role), -ENAMETOOLONG (scope_len too small), -ENOMEM.
 */
SEMCACHE_API int semcache_request_key_json(const char *body, size_t len,
                                           char key[SEMCACHE_KEY_LEN], char *scope,
                                           size_t scope_len);

#ifdef __cplusplus
}
#endif
#endif /* SEMCACHE_H */
