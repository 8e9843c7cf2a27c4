/*
 * tier.h - the syncer's readers of untrusted Redis replies, internal
 * (backends/syncer.c), exposed so tests/fuzz/fuzz_tier.c can feed them
 * hostile reply trees.
 *
 * Events are entries of the stream <prefix>llm_cache_events:
 *   [ "<ms>-<seq>", [ "op", "P"|"D", "id", <64 hex>, "o", <32 hex origin> ] ]
 * Field order is free and unknown fields are skipped (at most 16 pairs).
 * Nothing here allocates or keeps a pointer into the reply.
 */
#ifndef SC_TIER_H
#define SC_TIER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <hiredis.h>

#define SC_TIER_ORIGIN_LEN 32u  /* hex of the segment's 16-byte creation id */

struct sc_tier_event {
	uint64_t ms, seq;  /* stream id */
	char op;           /* 'P' or 'D' */
	char id[65];       /* native id: 64 lowercase hex digits */
	bool own;          /* written by the segment whose origin was given */
};

/* A stream id "<ms>-<seq>" (decimal, each fitting uint64): 0 or -1. */
int sc_tier_parse_stream_id(const redisReply *r, uint64_t *ms, uint64_t *seq);

/* One stream entry: 0 with *ev filled, -1 when malformed. */
int sc_tier_parse_event(const char origin[SC_TIER_ORIGIN_LEN], const redisReply *e,
                        struct sc_tier_event *ev);

/* An XREAD reply for one stream: 0 with *entries = its array of entries
 * (at most max of them), 1 for nil (nothing new), -1 malformed. */
int sc_tier_xread_entries(const redisReply *r, size_t max, const redisReply **entries);

#endif
