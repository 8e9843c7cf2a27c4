/*
 * tier.h - the syncer's readers of untrusted Redis replies, internal
 * (backends/syncer.c), exposed so tests/fuzz/fuzz_tier.c can feed them
 * hostile reply trees.
 *
 * Events are entries of the stream <prefix>llm_cache_events:
 *   [ "<ms>-<seq>", [ "op", "P"|"D", "id", <id>, "o", <32 hex origin> ] ]
 * where <id> is an id of the tier's format (redis_codec.h: 64 hex digits
 * in the native format, the key string in the seed format).
 * Field order is free and unknown fields are skipped (at most 16 pairs).
 * Nothing here allocates or keeps a pointer into the reply.
 */
#ifndef SC_TIER_H
#define SC_TIER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <hiredis.h>

#include "redis_codec.h"

#define SC_TIER_ORIGIN_LEN 32u  /* hex of the segment's 16-byte creation id */

struct sc_tier_event {
	uint64_t ms, seq;  /* stream id */
	char op;           /* 'P' or 'D' */
	char id[SC_RID_SEED_MAX + 1]; /* an id of the format asked for, NUL-terminated */
	size_t id_len;
	bool own;          /* written by the segment whose origin was given */
};

/* A stream id "<ms>-<seq>" (decimal, each fitting uint64): 0 or -1. */
int sc_tier_parse_stream_id(const redisReply *r, uint64_t *ms, uint64_t *seq);

/* One stream entry whose id is of format fmt: 0 with *ev filled, -1 when
 * malformed. */
int sc_tier_parse_event(const char origin[SC_TIER_ORIGIN_LEN], enum sc_rformat fmt,
                        const redisReply *e, struct sc_tier_event *ev);

/* An XREAD reply for one stream: 0 with *entries = its array of entries
 * (at most max of them), 1 for nil (nothing new), -1 malformed. */
int sc_tier_xread_entries(const redisReply *r, size_t max, const redisReply **entries);

#endif
