/*
 * redis_codec.h - what the second tier stores in Redis: key names, ids and
 * values, in the native format and in the reference design's JSON, internal.
 *
 * Key schema (the reference design's, under a configurable prefix):
 *   <prefix>llm_cache:<id>       an entry
 *   <prefix>llm_cache_emb:<id>   its embedding
 *   <prefix>llm_cache_index      a SET of ids
 *
 * Ids.
 *  - Native: the lowercase hex of the entry's 32-byte key digest
 *    (sc_key_digest(ns, key), SHA-256 over the length-prefixed namespace
 *    and key), so exactly 64 bytes of [0-9a-f].  The digest is what a slot
 *    already holds, it has a fixed length whatever the key, and two hosts
 *    derive the same id for the same (ns, key).  The entry's value carries
 *    ns and key in full, and the importer checks they hash to the id.
 *  - Seed: the reference design's ids are the caller's key strings; we
 *    accept 1..SC_RID_SEED_MAX bytes of printable ASCII without space
 *    (0x21..0x7e), which keeps ids safe to carry in pub/sub messages and
 *    logs.  Keys outside that set are neither exported nor imported.
 * Every id read back from Redis (SET members, pub/sub payloads, key names)
 * goes through sc_rid_check() / sc_rkey_parse() before use.
 *
 * Native values.
 *  - Entry: one msgpack map (written with msgpack-c's packer, read by the
 *    bounded reader in redis_codec.c, never by msgpack-c's unpacker, which
 *    sizes allocations from untrusted counts: msgpack-c issue 1013):
 *      "v" 1, "ns" str, "key" str, "scope" str, "created_ms" int,
 *      "exact_expiry_ms" int, "semantic_expiry_ms" int, "hits" uint,
 *      "payload" bin (the core codec's record, see core/codec.h),
 *      and optionally "origin" str (at most SC_RORIGIN_MAX bytes: the
 *      exporting segment's creation id in hex, so a resync can tell its
 *      own entries; values without it decode as before).
 *    Times are wall-clock ms since the epoch; INT64_MAX means never.
 *  - Embedding: dim little-endian IEEE-754 float32, no header: the length
 *    must be dim * 4, every value finite, the norm non-zero.
 *
 * Seed-compatible values (the reference design's JSON, through jansson):
 *   entry = {"response": {"content", "model", "usage": {"prompt_tokens",
 *   "completion_tokens"}, "tool_calls": [{"id", "name", "arguments"}],
 *   "latency_ms"}, "query_embedding": [floats], "created_at": unix
 *   seconds (float), "hit_count": int}, plus "scope": str when semcache
 *   wrote it; embedding = a JSON list of floats.
 *
 * Every decoder rejects what it does not accept with a code, never a crash:
 * SEMCACHE_EBADRECORD (malformed, over a cap, trailing bytes), SEMCACHE_EDIM
 * (wrong embedding length), SEMCACHE_EEMBEDDING (NaN/Inf or zero norm),
 * -ENOMEM.  Work and memory are linear in the input, which callers cap:
 * native decoding allocates nothing (a full response decode allocates its
 * one block); JSON decoding costs jansson's tree, a small multiple of the
 * input, whose length the seed decoders check against a cap before
 * parsing.  Every function is reentrant; none keeps state between calls.
 */
#ifndef SC_REDIS_CODEC_H
#define SC_REDIS_CODEC_H

#include <stddef.h>
#include <stdint.h>

#include "semcache.h"
#include "../core/codec.h"

#define SC_RCODEC_VERSION  1u
#define SC_RID_NATIVE_LEN  64u
#define SC_RID_SEED_MAX    256u
#define SC_RPREFIX_MAX     64u
#define SC_RCODEC_MAX_DIM  4096u   /* the segment's own cap */
#define SC_RORIGIN_MAX     64u

enum sc_rformat { SC_RFMT_NATIVE, SC_RFMT_SEED };
enum sc_rkey_kind { SC_RKEY_ENTRY, SC_RKEY_EMB, SC_RKEY_INDEX };

/* ---- ids and key names -------------------------------------------------- */

/* 0 when id[0..len) is a valid id of that format, else SEMCACHE_EBADRECORD. */
int sc_rid_check(enum sc_rformat fmt, const char *id, size_t len);

/* The native id of (ns, key): 64 hex digits and a NUL.  0, -ENOMEM or
 * -ENOSYS (no SHA-256 in libcrypto). */
int sc_rid_native(const char *ns, const char *key, char out[SC_RID_NATIVE_LEN + 1]);

/* A prefix: at most SC_RPREFIX_MAX bytes of 0x21..0x7e (may be empty). */
int sc_rprefix_check(const char *prefix);

/*
 * Build a key name into out (reset first; NUL-terminated, out->len
 * excludes the NUL).  id is ignored for SC_RKEY_INDEX.  -EINVAL for a bad
 * prefix or id (checked for fmt), -ENOMEM.
 */
int sc_rkey_build(const char *prefix, enum sc_rkey_kind kind, enum sc_rformat fmt,
                  const char *id, size_t id_len, sc_buf *out);

/*
 * Parse a key name read from Redis: it must be one of the three names under
 * prefix, with a valid id of format fmt.  *id points into name.
 * SEMCACHE_EBADRECORD otherwise.
 */
int sc_rkey_parse(const char *prefix, enum sc_rformat fmt, const char *name, size_t len,
                  enum sc_rkey_kind *kind, const char **id, size_t *id_len);

/* ---- native entry --------------------------------------------------------- */

typedef struct sc_rentry {
	const char *ns;    size_t ns_len;
	const char *key;   size_t key_len;
	const char *scope; size_t scope_len;
	int64_t created_ms, exact_expiry_ms, semantic_expiry_ms;
	uint64_t hits;
	const void *payload; size_t payload_len;   /* a core codec record */
	const char *origin; size_t origin_len;     /* optional (NULL, 0): who exported it */
} sc_rentry;

/*
 * Encode e into out (reset first), at most max bytes (-E2BIG beyond).
 * The payload must be a record whose identity is e's (checked with
 * sc_codec_peek_ids: SEMCACHE_EBADRECORD otherwise), times must satisfy
 * 0 <= created <= each expiry.  -EINVAL, -ENOMEM.
 */
int sc_rnative_encode(const sc_rentry *e, size_t max, sc_buf *out);

/*
 * Decode buf[0..len): e's strings and payload point into buf (not
 * NUL-terminated).  Checks the map's shape and types, the version, the
 * times, that ns/key/scope hold no NUL, and that the payload is a record
 * carrying the same identity.  With resp non-NULL the payload is also
 * decoded in full (*resp to free with semcache_response_free()).  With
 * id non-NULL, the entry must be the one that native id names (its ns and
 * key hash to it).  Unknown map keys are skipped (bounded), so a later
 * version can add fields.
 */
int sc_rnative_decode(const void *buf, size_t len, const char *id, sc_rentry *e,
                      semcache_response **resp);

/* ---- native embedding ------------------------------------------------------ */

/* dim floats as little-endian float32.  SEMCACHE_EEMBEDDING for NaN/Inf
 * or zero norm, -EINVAL for dim 0 or > SC_RCODEC_MAX_DIM. */
int sc_remb_encode(const float *v, uint32_t dim, sc_buf *out);

/* Into out[dim].  SEMCACHE_EDIM unless len == dim * 4; SEMCACHE_EEMBEDDING. */
int sc_remb_decode(const void *buf, size_t len, uint32_t dim, float *out);

/* ---- seed-compatible JSON ------------------------------------------------ */

#define SC_RSEED_SCOPE_MAX 4096u /* bytes of the "scope" field */

typedef struct sc_rseed {
	semcache_response *response; /* one block: semcache_response_free() */
	char *scope;                 /* the "scope" field (malloc'd, NUL-terminated),
	                              * or NULL when absent (a reference writer's
	                              * entry: read it as "") */
	float *embedding;            /* dim floats (malloc'd), or NULL when the
	                              * entry had none ([]) or dim was 0 */
	int64_t created_ms;
	uint64_t hit_count;
} sc_rseed;

/*
 * Encode an entry.  emb may be NULL (written as []); finish_reason,
 * reasoning and metadata have no place in the schema and are not written.
 * scope non-NULL is written as one extra top-level string field "scope"
 * (at most SC_RSEED_SCOPE_MAX bytes, else -E2BIG), which the reference
 * reader ignores as it ignores any unknown top-level field; NULL writes
 * the reference schema alone.  created_ms >= 0.  -E2BIG beyond max bytes, SEMCACHE_EBADRECORD for a
 * response the core codec would refuse, SEMCACHE_EEMBEDDING, -EINVAL.
 */
int sc_rseed_encode(const semcache_response *r, const char *scope, const float *emb, uint32_t dim,
                    int64_t created_ms, uint64_t hit_count, size_t max, sc_buf *out);

/*
 * Decode an entry of at most max bytes (longer: SEMCACHE_EBADRECORD before
 * parsing).  dim is the expected embedding length (0: query_embedding is
 * validated but not returned).  Accepts what the reference writer emits:
 * content null (a tool-call answer) reads as "", usage / tool_calls /
 * latency_ms / hit_count missing or null read as empty or 0, latency_ms
 * may be a float (rounded), a tool call's arguments may be a JSON object
 * (kept as its compact text); an optional "finish_reason" string is kept.
 * Rejects duplicate keys, wrong types, counts over the core codec's caps,
 * token counts outside uint32, non-finite or out-of-range numbers,
 * created_at outside [0, 7258118400] (year 2200), strings with NUL.
 * An optional top-level "scope" must be a string of at most
 * SC_RSEED_SCOPE_MAX bytes (semcache's scope; see the encoder); other
 * unknown top-level fields are ignored, as the reference reader does.
 * On failure *out is zeroed and owns nothing.
 */
int sc_rseed_decode(const void *buf, size_t len, size_t max, uint32_t dim, sc_rseed *out);
void sc_rseed_free(sc_rseed *s);

/* The embedding key's value: a JSON list of dim floats. */
int sc_rseed_emb_encode(const float *v, uint32_t dim, sc_buf *out);
int sc_rseed_emb_decode(const void *buf, size_t len, uint32_t dim, float *out);

#endif
