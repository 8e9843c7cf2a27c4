/*
 * layout.h - the shared segment, byte by byte.
 *
 * One file, mapped MAP_SHARED by every attached process, at possibly
 * different addresses: it holds offsets and indices, never pointers (not
 * even inside a lock: the writer lock is a word naming a process record).
 * Every region starts on a 64-byte boundary.
 *
 *   offset            region
 *   0                 header (SC_HDR_SIZE bytes)
 *     0     ..  255     immutable part, written once at creation, covered by
 *                       geom_sum (a keyed hash), so a flipped geometry byte
 *                       is refused on attach rather than trusted
 *     256   ..  319     writer lock: owner word, futex word, repair flag
 *     320   ..  447     writer state (free list, CLOCK hand, limbo)
 *     448   ..  511     reserved
 *     512   ..  639     counters of departed processes (80 bytes used)
 *     640   ..  1151    second tier (struct sc_tier): syncer lease,
 *                       tier state, tier counters, outbox head and tail
 *     1152  ..  4095    reserved
 *   off_procs         process table: max_procs x struct sc_proc (256 B)
 *   off_index         index: buckets x struct sc_bucket (64 B, 8 ways)
 *   off_slots         slot table: slots x struct sc_slot (128 B)
 *   off_meta          scan metadata: slots x struct sc_scanmeta (16 B)
 *   off_matrix        embeddings: slots x row_stride float32 (row = 64 B multiple)
 *   off_qmatrix       quantised rows (int8 or sign bits): slots x qstride bytes
 *   off_qscale        int8 row scales: slots x float32
 *   off_next          block chain links: nblocks x u32
 *   off_lnext         limbo links, one per block, used at chain heads: nblocks x u32
 *   off_outbox        second-tier outbox ring: outbox_cap x struct sc_obitem (320 B)
 *   off_arena         payload blocks: nblocks x block_size bytes
 *   file_size         end
 *
 * Liveness (who is attached) is held by the kernel, not by the file: the
 * owner of process record i holds an OFD write lock (F_OFD_SETLK) on the
 * one byte at file offset off_procs + i * sizeof(struct sc_proc), taken
 * through a descriptor opened O_CLOEXEC.  The kernel drops it when the
 * owner exits, is killed or exec()s, in whatever PID namespace it runs;
 * a peer asks with F_OFD_GETLK.  Nothing here depends on /proc or on pids
 * (the pid stored in a record is for display only).
 *
 * Who writes what (the concurrency contract):
 *  - Immutable header part: the creator, once, before it publishes `magic`
 *    (release); attachers validate it under the flock, so nobody reads a
 *    half-initialised header.
 *  - Writer lock (`wlock`): guards everything written by put, delete,
 *    invalidate, eviction and repair: writer state, index entries, slot
 *    fields, scan metadata, rows, block links and block contents.  The
 *    word holds (generation << 32) | (record + 1) of its holder, 0 when
 *    free; a taker that finds it held by a record whose OFD lock is gone
 *    (or whose generation moved on) takes it over and repairs.
 *  - Writer invariant, kept at every instruction so a writer killed
 *    anywhere hides no entry: a slot whose sequence word is even and whose
 *    flags say USED is reachable from its index bucket.  Writers insert the
 *    index entry while the slot is still odd and remove it only after
 *    making the slot odd.  Readers never see a half-written slot as live,
 *    and repair (core/repair.c) fixes things in place, never clearing the
 *    index.
 *  - Readers take no lock.  They read slots under the slot's sequence word
 *    (seqlock: odd = being written), copy what they need and re-check the
 *    sequence; they bounds-check every index and offset, so a stale or
 *    hostile value can only fail validation.  The only shared words readers
 *    write are: the slot's CLOCK reference word (set only when clear), its
 *    hit counter, and their own process record.
 *  - Process records: the owner (holder of the record's OFD lock) writes
 *    its record: generation at claim, counters (relaxed), hazard words.
 *  - Hazard words (zero-copy pinning): a reference publishes the head
 *    block + 1 of the chain it reads (seq_cst RMW, then a full fence) and
 *    re-checks the slot's sequence word.  A writer retires a chain only
 *    after the slot stopped reaching it; to reuse a retired chain it issues
 *    a full fence and scans the hazard words of live records.  Either the
 *    writer sees the hazard, or the reader sees the slot changed and drops
 *    the reference (store-buffering with a fence on both sides).  So a
 *    reference pins exactly its own chain.
 *  - Scan metadata (off_meta): per row {scope, sem_expiry}; written under
 *    wlock inside the slot's seq window: expiry stored 0 first (row off),
 *    then scope, then the new expiry with release.  Scanners read both
 *    without synchronisation and re-validate candidates under the slot seq.
 *  - Matrix and quantised rows: written under wlock inside the slot's seq
 *    window; scanned without synchronisation (same re-validation).
 *  - Block links (off_next), limbo links (off_lnext) and block contents:
 *    written under wlock while the blocks belong to no slot and no
 *    reference (popped, not yet published; or free).  Readers follow links
 *    only for chains they reached through a slot, bounded by the slot's
 *    block count.
 *  - Hit counters (in each slot): relaxed fetch-add by readers, in the
 *    line they already loaded; reset under wlock when the slot gets a new
 *    entry.  Not covered by the seqlock: a count, not part of the entry.
 *  - Second tier (struct sc_tier, backends/syncer.c, core/outbox.c):
 *     . `configured`: set (relaxed, never cleared) by the first
 *       semcache_tier_start(); from then on writers enqueue.
 *     . lease word, heartbeat, epoch: the lease is taken by CAS (acq_rel)
 *       from 0, or from a holder whose record's OFD lock is gone or whose
 *       heartbeat (CLOCK_MONOTONIC ms, one clock per host) is older than
 *       SC_TIER_LEASE_MS; every takeover bumps epoch.  Only the holder
 *       writes the heartbeat (relaxed), the state block, the counters it
 *       owns and the outbox tail.
 *     . state block: lease holder only; relaxed stores, read by `semcache
 *       stat` field by field; the error text sits under its own seqlock
 *       (err_seq odd while it is written).
 *     . outbox ring: items and `ob_head` written by writers under wlock
 *       (item fields first, then the item's `seq` = position + 1 with
 *       release, then `ob_head` with release); `ob_tail` advanced (release)
 *       only by the lease holder after Redis acknowledged every item
 *       before it.  Items in [tail, head) are never overwritten: a writer
 *       finding the ring full drops a PUT (counted; the slot keeps DIRTY,
 *       so the syncer's sweep re-exports it) and lets a deletion use the
 *       last quarter kept for deletions; a deletion finding even that full
 *       is counted and marks `resync` (it is then reported, not applied).
 *     . drop counters: writers, under wlock (relaxed).
 *     . importer position (stream id): lease holder only.
 *
 * Assumptions stated outright: aligned 32- and 64-bit loads and stores are
 * single-copy atomic (x86-64, AArch64); the float format is IEEE-754
 * binary32; little-endian; the segment is used by processes of one
 * architecture and ABI (the format signature encodes the struct sizes and
 * offsets below); the kernel has OFD locks (Linux 3.15+).
 */
#ifndef SC_LAYOUT_H
#define SC_LAYOUT_H

#include <stdalign.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

#define SC_MAGIC          UINT64_C(0x3148434143534d53) /* "SMSCACH1" little-endian */
#define SC_LAYOUT_VERSION 5u /* 3: sc_counters.deletes; 4: the second tier's block;
                                * 5: the outbox wake word, keyed deletions */
#define SC_HDR_SIZE       4096u
#define SC_ALIGN          64u
#define SC_NIL            UINT32_MAX /* end of a block chain / no block */
#define SC_WAYS           8u

#define SC_QUANT_NONE 0u
#define SC_QUANT_INT8 1u
#define SC_QUANT_BITS 2u

/* Limits on geometry accepted at creation and on attach. */
#define SC_MIN_SLOTS     16u
#define SC_MAX_SLOTS     (1u << 26)
#define SC_MAX_DIM       4096u
#define SC_MAX_PROCS     4096u
#define SC_MIN_BLOCK     64u
#define SC_MAX_BLOCK     65536u
#define SC_MAX_NBLOCKS   (1u << 30)

/* Counters kept per process (and for departed processes in the header). */
struct sc_counters {
	_Atomic uint64_t hits, misses, sem_hits, sem_misses;
	_Atomic uint64_t puts, evictions, expirations, invalidations;
	_Atomic uint32_t sem_miss_best; /* float bits of the best miss similarity; 0 = none */
	uint32_t pad_;
	_Atomic uint64_t deletes;       /* semcache_delete() removals (layout version 3) */
};


/* Tier states (sc_tier.state) */
#define SC_TIER_OFF        0u  /* no syncer holds the lease */
#define SC_TIER_CONNECTING 1u  /* a syncer holds it and has not reached Redis yet */
#define SC_TIER_UP         2u
#define SC_TIER_DEGRADED   3u  /* Redis unreachable, hung or refusing: serving locally */

/* Outbox item ops */
#define SC_OB_PUT 1u
#define SC_OB_DEL 2u

/* A syncer whose heartbeat is older than this may be replaced (ms). */
#define SC_TIER_LEASE_MS 3000

#define SC_TIER_ERRLEN 128u

/* The second tier's shared block, header bytes 640..1151. */
struct sc_tier {
	/* lease (640..703) */
	alignas(64) _Atomic uint64_t lease;  /*  +0: (gen << 32) | (record + 1) of the syncer; 0 = free */
	_Atomic int64_t heartbeat_ms;        /*  +8: holder's CLOCK_MONOTONIC ms */
	_Atomic uint64_t epoch;              /* +16: bumped by every takeover (fencing token) */
	_Atomic uint32_t configured;         /* +24: 1 once a tier was started: writers enqueue */
	_Atomic int32_t holder_pid;          /* +28: display */
	uint8_t pad0_[32];                   /* +32 */
	/* state (704..895): the lease holder */
	alignas(64) _Atomic uint32_t state;  /* +64: SC_TIER_* */
	_Atomic int32_t err_class;           /* +68: last failure (negative errno class), 0 none */
	_Atomic int64_t since_ms;            /* +72: wall ms of the last state change */
	_Atomic int64_t last_ok_ms;          /* +80: wall ms of the last acknowledged batch */
	_Atomic int64_t lag_ms;              /* +88: enqueue-to-acknowledged of the last item */
	_Atomic int64_t err_ms;              /* +96: wall ms of the last failure */
	_Atomic uint32_t err_seq;            /* +104: seqlock of err_text, odd while written */
	uint32_t pad1_;                      /* +108 */
	char err_text[SC_TIER_ERRLEN];       /* +112: printable ASCII, NUL-terminated */
	uint8_t pad2_[16];                   /* +240 */
	/* counters (896..1023) */
	alignas(64) _Atomic uint64_t exported;  /* +256: entries written to Redis (holder) */
	_Atomic uint64_t deleted;            /* +264: deletions written to Redis (holder) */
	_Atomic uint64_t imported;           /* +272: entries installed from Redis (holder) */
	_Atomic uint64_t import_deleted;     /* +280: local entries removed by other hosts (holder) */
	_Atomic uint64_t import_rejected;    /* +288: values refused by validation (holder) */
	_Atomic uint64_t reconnects;         /* +296: successful reconnections (holder) */
	_Atomic uint64_t dropped;            /* +304: PUT items dropped, ring full (writers) */
	_Atomic uint64_t del_overflow;       /* +312: deletions not enqueued (writers) */
	_Atomic uint64_t swept;              /* +320: entries re-exported by a sweep (holder) */
	_Atomic uint64_t takeovers;          /* +328: leases taken from a dead or stale holder */
	_Atomic uint32_t resync;             /* +336: a deletion was lost (writers set; the
	                                      *       holder clears it when a resync pass starts) */
	_Atomic uint32_t sweep_wanted;       /* +340: writers set after a drop; the holder clears */
	_Atomic uint64_t read_through;       /* +344: misses answered from Redis (any process) */
	_Atomic uint64_t seed_skipped;       /* +352: seed format: entries and deletions kept
	                                      *       local (other namespace, key not a seed
	                                      *       id) (holder) */
	_Atomic uint64_t index_trimmed;      /* +360: index members of gone entries removed (holder) */
	_Atomic uint64_t import_gaps;        /* +368: events trimmed before we read them (holder) */
	_Atomic uint64_t resync_deleted;     /* +376: our entries deleted by resync passes (holder) */
	/* outbox control: head line 1024..1087, tail line 1088..1151 */
	alignas(64) _Atomic uint64_t ob_head;   /* +384: next position; writers under wlock */
	uint8_t pad4_[56];
	alignas(64) _Atomic uint64_t ob_tail;   /* +448: first unacknowledged; lease holder */
	_Atomic uint64_t stream_ms;          /* +456: importer position in the event stream */
	_Atomic uint64_t stream_seq;         /* +464 */
	_Atomic uint32_t stream_init;        /* +472: 1 once warmed up and positioned */
	_Atomic uint32_t ob_wake;            /* +476: futex word: writers bump it after a push
	                                      *       while ob_sleep is set (the idle holder) */
	_Atomic uint32_t ob_sleep;           /* +480: 1 while the holder sleeps on ob_wake */
	_Atomic uint32_t stream_counted;     /* +484: 1 while stream_added is known */
	_Atomic uint64_t resyncs;            /* +488: resync passes completed (holder) */
	_Atomic uint64_t stream_added;       /* +496: the stream's entries-added count at our
	                                      *       position (gap detection) */
	uint8_t pad5_[8];                    /* +504 */
};

/* One outbox item: 320 bytes (five lines).  Written under wlock before `seq`.
 * A deletion also carries the entry's key string (the seed format names
 * entries by key, and the slot is cleared right after the item is
 * written); a PUT reads its slot at export time and leaves key empty. */
#define SC_OB_KEY_MAX 256u /* = SC_RID_SEED_MAX: longer keys are no seed id */
struct sc_obitem {
	_Atomic uint64_t seq;   /*  0: ring position + 1 once complete (release) */
	uint32_t op;            /*  8: SC_OB_* */
	uint32_t slot;          /* 12: the slot at enqueue time */
	uint32_t slot_seq;      /* 16: its (even) sequence word after the put */
	uint32_t key_len;       /* 20: DEL: bytes of key; 0 = not captured (PUT, a
	                         *     key over SC_OB_KEY_MAX, an unreadable record) */
	int64_t enq_ms;         /* 24: wall ms */
	uint8_t digest[32];     /* 32: the entry's key digest (its native id) */
	char key[SC_OB_KEY_MAX]; /* 64: DEL: the key string (not NUL-terminated) */
};

struct sc_header {
	/* ---- immutable after creation (bytes 0..255) ---- */
	_Atomic uint64_t magic;       /*   0: SC_MAGIC, stored last at creation */
	uint32_t version;             /*   8: SC_LAYOUT_VERSION */
	uint32_t hdr_size;            /*  12: SC_HDR_SIZE */
	uint64_t signature;           /*  16: sc_layout_signature() */
	uint8_t creation_id[16];      /*  24: random, distinguishes re-created segments */
	int64_t created_ms;           /*  40 */
	uint64_t file_size;           /*  48 */
	uint32_t slots;               /*  56 */
	uint32_t dim;                 /*  60: 0 = no embeddings */
	uint32_t row_stride;          /*  64: floats per matrix row */
	uint32_t buckets;             /*  68: power of two */
	uint32_t block_size;          /*  72: power of two */
	uint32_t nblocks;             /*  76 */
	uint32_t max_procs;           /*  80 */
	uint32_t max_payload;         /*  84 */
	uint32_t quant;               /*  88: SC_QUANT_* */
	uint32_t qstride;             /*  92: bytes per quantised row */
	int64_t exact_ttl_ms;         /*  96 */
	int64_t semantic_ttl_ms;      /* 104 */
	float threshold;              /* 112 */
	uint32_t flags;               /* 116: creation flags (SEMCACHE_OPEN_GROUP...) */
	uint64_t secret[2];           /* 120: SipHash key for bucket choice and tags */
	uint64_t off_procs;           /* 136 */
	uint64_t off_index;           /* 144 */
	uint64_t off_slots;           /* 152 */
	uint64_t off_lnext;           /* 160 */
	uint64_t off_meta;            /* 168 */
	uint64_t off_matrix;          /* 176 */
	uint64_t off_qmatrix;         /* 184 */
	uint64_t off_qscale;          /* 192 */
	uint64_t off_next;            /* 200 */
	uint64_t off_arena;           /* 208 */
	uint64_t geom_sum;            /* 216: keyed hash of bytes 8..215 */
	uint64_t off_outbox;          /* 224: derived from slots, checked on attach */
	uint32_t outbox_cap;          /* 232: items, a power of two, derived from slots */
	uint8_t reserved0[20];        /* 236 */

	/* ---- writer lock (256..319) ---- */
	alignas(64) _Atomic uint64_t wlock; /* 256: (gen << 32) | (record + 1); 0 = free.
	                                     * CAS acquire to take, release store to drop */
	_Atomic uint32_t wseq;        /* 264: futex word, bumped after each release */
	_Atomic uint32_t wwaiters;    /* 268: takers asleep on wseq (a hint for waking) */
	_Atomic uint32_t needs_repair;/* 272: set when a taker finds a dead holder or a
	                               * writer finds damage; cleared only by a repair
	                               * that completed; under wlock */
	_Atomic uint32_t repairs;     /* 276: repairs done */
	_Atomic int32_t writer_pid;   /* 280: holder's pid as it sees itself (display) */
	uint8_t reserved1[36];        /* 284 */

	/* ---- writer state (320..447): written only under wlock ---- */
	alignas(64) _Atomic uint32_t free_head; /* 320: first free block or SC_NIL */
	_Atomic uint32_t free_count;  /* 324 */
	_Atomic uint32_t clock_hand;  /* 328 */
	_Atomic uint32_t entries;     /* 332: slots in use */
	_Atomic uint32_t limbo_head;  /* 336: first retired chain (chains linked through
	                               * lnext[head], blocks through next[]); SC_NIL */
	_Atomic uint32_t limbo_blocks;/* 340: blocks in limbo */
	_Atomic uint32_t limbo_fresh; /* 344: of those, retired since the last hazard scan */
	_Atomic uint32_t procs_hwm;   /* 348: records at or above this were never claimed;
	                               * CAS-raised (seq_cst) by claimants, any time */
	uint8_t reserved2[96];        /* 352 */

	/* ---- reserved (448..511) ---- */
	alignas(64) uint8_t reserved3[64];

	/* ---- departed processes' counters (512..639); relaxed atomics, folded
	 * in by whoever claims a record whose owner is gone ---- */
	alignas(64) struct sc_counters departed;

	/* ---- second tier (640..1151): see "Second tier" above ---- */
	alignas(64) struct sc_tier tier;
};

/*
 * Process record.  Owned by whoever holds its OFD byte lock (see the top of
 * this file); `gen` is bumped by every new owner right after it takes the
 * lock, so a lock word or a reference naming (record, old gen) is known to
 * belong to a previous owner.  Hazard words: SC_HAZARDS per record, one per
 * zero-copy reference the process holds, value head block + 1, 0 = free.
 */
#define SC_HAZARDS 32
struct sc_proc { /* 256 bytes, 64-aligned: no two processes share a line */
	_Atomic uint32_t gen;       /*   0: owner generation */
	_Atomic int32_t pid;        /*   4: owner's pid in its own namespace (display) */
	_Atomic int64_t attached_ms;/*   8: wall clock at claim (display) */
	struct sc_counters c;       /*  16: written by the owner only (relaxed) */
	uint8_t pad0_[32];          /*  96 */
	_Atomic uint32_t hazard[SC_HAZARDS]; /* 128: owner's threads, seq_cst CAS */
};

/* Slot flags */
#define SC_SLOT_USED  0x1u
#define SC_SLOT_EMB   0x2u  /* row holds this entry's embedding */
#define SC_SLOT_DIRTY 0x4u  /* not yet written to the second tier */
#define SC_SLOT_FLAGS (SC_SLOT_USED | SC_SLOT_EMB | SC_SLOT_DIRTY)

/* Every slot field but seq, ref and hits is written under wlock between the
 * odd and even sequence stores (relaxed atomic stores), and read by
 * lock-free readers only through the seqlock protocol (each field loaded
 * once, validated afterwards, bounds-checked before use). */
struct sc_slot {
	_Atomic uint32_t seq;       /*   0: even = stable, odd = being written; wlock.
	                             * odd store + release fence before field writes,
	                             * release store of the next even value after them;
	                             * readers: acquire load, copy, acquire fence, reload */
	uint32_t flags;             /*   4: SC_SLOT_*; wlock, inside the seq window */
	uint8_t digest[32];         /*   8: SHA-256 key digest */
	uint64_t scope_tag;         /*  40 */
	uint64_t ns_hash;           /*  48 */
	int64_t created_ms;         /*  56 */
	int64_t exact_exp_ms;       /*  64 */
	int64_t sem_exp_ms;         /*  72 */
	uint32_t head;              /*  80: first payload block */
	uint32_t len;               /*  84: payload bytes */
	uint32_t nblocks;           /*  88 */
	uint32_t checksum;          /*  92: sc_checksum of the payload */
	uint32_t bucket;            /*  96: index bucket of this slot's entry */
	_Atomic uint32_t ref;       /* 100: CLOCK reference; readers store 1 (relaxed) when
	                             * they see 0, the CLOCK hand stores 0 under wlock */
	_Atomic uint32_t hits;      /* 104: hit count; readers fetch-add (relaxed) */
	uint8_t reserved[20];       /* 108 */
};

/* Index bucket: one cache line of entries (tag << 32) | (slot + 1); 0 = empty.
 * Written under wlock with release stores; readers load acquire and confirm
 * the digest in the slot under its sequence word. */
struct sc_bucket {
	_Atomic uint64_t e[SC_WAYS];
};

/* Scan metadata, one per row, beside the matrix. */
typedef struct sc_scanmeta {
	uint64_t scope;         /* scope tag of the row's entry */
	int64_t sem_expiry_ms;  /* semantic expiry; 0 = empty row */
} sc_scanmeta;

/* Row strides: matrix rows in floats (64-byte multiples), quantised rows in
 * bytes. */
static inline size_t sc_row_stride(uint32_t dim) { return ((size_t)dim + 15u) & ~(size_t)15u; }
static inline size_t sc_i8_stride(uint32_t dim) { return ((size_t)dim + 63u) & ~(size_t)63u; }
static inline size_t sc_bits_stride(uint32_t dim) { return (((size_t)dim + 7u) / 8u + 63u) & ~(size_t)63u; }

_Static_assert(offsetof(struct sc_header, version) == 8, "layout");
_Static_assert(offsetof(struct sc_header, geom_sum) == 216, "layout");
_Static_assert(offsetof(struct sc_header, wlock) == 256, "layout");
_Static_assert(offsetof(struct sc_header, writer_pid) == 280, "layout");
_Static_assert(offsetof(struct sc_header, free_head) == 320, "layout");
_Static_assert(offsetof(struct sc_header, procs_hwm) == 348, "layout");
_Static_assert(offsetof(struct sc_header, reserved3) == 448, "layout");
_Static_assert(offsetof(struct sc_header, departed) == 512, "layout");
_Static_assert(sizeof(struct sc_counters) == 80, "layout");
_Static_assert(sizeof(struct sc_header) <= SC_HDR_SIZE, "layout");
_Static_assert(sizeof(struct sc_proc) == 256, "layout");
_Static_assert(offsetof(struct sc_proc, c) == 16, "layout");
_Static_assert(offsetof(struct sc_proc, hazard) == 128, "layout");
_Static_assert(sizeof(struct sc_slot) == 128, "layout");
_Static_assert(offsetof(struct sc_slot, head) == 80, "layout");
_Static_assert(offsetof(struct sc_slot, ref) == 100, "layout");
_Static_assert(offsetof(struct sc_slot, hits) == 104, "layout");
_Static_assert(sizeof(struct sc_bucket) == 64, "layout");
_Static_assert(sizeof(struct sc_scanmeta) == 16, "layout");
_Static_assert(offsetof(struct sc_header, off_outbox) == 224, "layout");
_Static_assert(offsetof(struct sc_header, outbox_cap) == 232, "layout");
_Static_assert(offsetof(struct sc_header, tier) == 640, "layout");
_Static_assert(sizeof(struct sc_tier) == 512, "layout");
_Static_assert(offsetof(struct sc_tier, state) == 64, "layout");
_Static_assert(offsetof(struct sc_tier, err_text) == 112, "layout");
_Static_assert(offsetof(struct sc_tier, exported) == 256, "layout");
_Static_assert(offsetof(struct sc_tier, ob_head) == 384, "layout");
_Static_assert(offsetof(struct sc_tier, ob_tail) == 448, "layout");
_Static_assert(sizeof(struct sc_obitem) == 320, "layout");
_Static_assert(offsetof(struct sc_obitem, key) == 64, "layout");
_Static_assert(offsetof(struct sc_tier, seed_skipped) == 352, "layout");
_Static_assert(offsetof(struct sc_tier, resync_deleted) == 376, "layout");
_Static_assert(offsetof(struct sc_tier, resyncs) == 488, "layout");
_Static_assert(sizeof(_Atomic uint64_t) == 8 && sizeof(_Atomic uint32_t) == 4, "layout");

/*
 * The format signature: sizes and offsets that two builds must agree on to
 * share a segment.  A build whose structs differ gets SEMCACHE_ESIGNATURE
 * on attach instead of reading fields at the wrong place.
 */
static inline uint64_t sc_layout_signature(void)
{
	uint64_t v[] = {
		sizeof(struct sc_header), offsetof(struct sc_header, wlock),
		offsetof(struct sc_header, free_head), offsetof(struct sc_header, departed),
		sizeof(struct sc_proc), offsetof(struct sc_proc, hazard), SC_HAZARDS,
		sizeof(struct sc_slot), sizeof(struct sc_bucket),
		offsetof(struct sc_slot, head), offsetof(struct sc_slot, hits),
		sizeof(struct sc_counters), SC_WAYS, sizeof(struct sc_scanmeta),
		offsetof(struct sc_header, off_outbox), offsetof(struct sc_header, tier),
		sizeof(struct sc_tier), offsetof(struct sc_tier, ob_head),
		offsetof(struct sc_tier, ob_tail), sizeof(struct sc_obitem), SC_TIER_ERRLEN,
		offsetof(struct sc_obitem, key), SC_OB_KEY_MAX, offsetof(struct sc_tier, seed_skipped),
		offsetof(struct sc_tier, resync_deleted), offsetof(struct sc_tier, resyncs),
	};
	uint64_t h = UINT64_C(1469598103934665603);
	for (size_t i = 0; i < sizeof v / sizeof v[0]; i++) {
		h ^= v[i];
		h *= UINT64_C(1099511628211);
	}
	return h;
}

#endif
