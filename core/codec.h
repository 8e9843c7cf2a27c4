/*
 * codec.h - the response record codec (msgpack), internal.
 *
 * A stored entry is one msgpack map holding the caller's response record
 * plus the identity needed for invalidation and verification (namespace,
 * key string, scope string).  The bytes come back from a shared segment or
 * from Redis, both shared with other processes and hosts, so the decoder
 * trusts nothing: every length and count is checked against the bytes left
 * before anything is allocated, nesting depth and sizes are capped, and the
 * result is one allocation the caller frees with semcache_response_free().
 */
#ifndef SC_CODEC_H
#define SC_CODEC_H

#include <stddef.h>
#include <stdint.h>
#include "semcache.h"

/* Caps enforced by encoder and decoder alike. */
#define SC_CODEC_MAX_TOOL_CALLS 1024u
#define SC_CODEC_MAX_DEPTH      8u

/*
 * The bounded msgpack reader (core/codec.c), shared with the Redis tier's
 * decoders (backends/redis_codec.c): nothing that reads untrusted msgpack
 * goes through msgpack-c's unpacker (msgpack-c issue 1013).
 * sc_rd_item() classifies the next item and steps over its header and, for
 * str/bin/ext, its payload; for a container it stops at the first element.
 * Every length and count is checked against the bytes left first, so the
 * caller may trust them.  sc_rd_skip() steps over one item of any type;
 * depth is the nesting level a container there would have, and containers
 * deeper than SC_CODEC_MAX_DEPTH are refused.  Both return 0 or
 * SEMCACHE_EBADRECORD.
 */
typedef struct sc_rd {
	const uint8_t *p, *end;
} sc_rd;

enum { K_BAD, K_NIL, K_BOOL, K_UINT, K_SINT, K_NINT, K_FLOAT, K_STR, K_BIN,
       K_EXT, K_ARRAY, K_MAP };

typedef struct sc_item {
	uint8_t kind;      /* K_*; K_SINT is folded into K_UINT or K_NINT */
	uint64_t u;        /* integer value, str/bin/ext payload length, or element count */
	const uint8_t *s;  /* str/bin/ext payload */
} sc_item;

int sc_rd_item(sc_rd *r, sc_item *it);
int sc_rd_skip(sc_rd *r, unsigned depth);

/* Growable output buffer; free data with free(). */
typedef struct sc_buf {
	char *data;
	size_t len, cap;
} sc_buf;

/* The identity fields of an encoded record, pointing into the encoded bytes
 * (not NUL-terminated). */
typedef struct sc_ids {
	const char *ns;    size_t ns_len;
	const char *key;   size_t key_len;
	const char *scope; size_t scope_len;
} sc_ids;

/*
 * Encode (ns, key, scope, r) into out (out->len reset to 0 first; the buffer
 * is reused and grown as needed).  scope NULL is encoded as "".  Fails with
 * -E2BIG when the encoding would exceed max bytes, SEMCACHE_EBADRECORD for
 * a record that breaks the caps or lacks content/model, -EINVAL for NULL
 * ns/key/r, -ENOMEM.  On failure out->len is unspecified.
 */
int sc_codec_encode(const char *ns, const char *key, const char *scope,
                    const semcache_response *r, size_t max, sc_buf *out);

/*
 * Decode buf[0..len) into one malloc'd semcache_response (strings included).
 * ids (may be NULL) receives the identity fields.  SEMCACHE_EBADRECORD for
 * anything malformed, truncated, over the caps or with trailing bytes;
 * -ENOMEM.
 */
int sc_codec_decode(const void *buf, size_t len, semcache_response **out, sc_ids *ids);

/*
 * sc_codec_decode() that also copies the identity (namespace, key, scope)
 * into the same allocation as NUL-terminated strings, *ns, *key, *scope:
 * freed with the response, so a caller that hands them out has one thing
 * to free.
 */
int sc_codec_decode_with_ids(const void *buf, size_t len, semcache_response **out,
                             const char **ns, const char **key, const char **scope);

/*
 * Read only the identity fields, allocating nothing.  Same validation of
 * the bytes it reads as sc_codec_decode (it need not validate the rest).
 */
int sc_codec_peek_ids(const void *buf, size_t len, sc_ids *ids);

/*
 * For zero-copy reads: from a prefix of an encoded record (total_len bytes
 * in all), the identity and the content string's byte range [*off, *off +
 * *clen) within the record.  SEMCACHE_EBADRECORD when the prefix is too
 * short to tell or the record is malformed; the caller then falls back to
 * copying the whole record.
 */
int sc_codec_content_span(const void *prefix, size_t prefix_len, size_t total_len,
                          sc_ids *ids, size_t *off, size_t *clen);

#endif
