/*
 * syncer.c - the second tier's background thread: lease, export, import,
 * degrade and recover (issue 10).
 *
 * How it works.  semcache_tier_start() starts one thread per handle.  The
 * thread first takes the segment's lease (layout.h, "Second tier"): a CAS
 * of the word naming its process record and generation, from 0 or from a
 * holder that is dead (its OFD record lock is gone: known at once) or hung
 * (heartbeat older than SC_TIER_LEASE_MS).  Waiters poll every
 * SC_TIER_POLL_MS, so a dead holder is replaced within about that, a hung
 * one within SC_TIER_LEASE_MS + SC_TIER_POLL_MS.  The holder beats every
 * loop (a loop is at most one command deadline) and re-reads the lease
 * before every batch; it advances the outbox tail by CAS, so a holder that
 * lost the lease while stopped cannot move the tail back or forward twice.
 *
 * Export: the outbox holds positions of puts and deletions in the order the
 * writer lock saw them.  The holder reads up to `batch` items, turns each
 * into commands (a PUT reads the slot's current entry, if it still holds
 * the same key, under the slot's sequence word; a DEL deletes the keys),
 * sends them as one pipeline and, once Redis acknowledged every reply,
 * moves the tail and clears DIRTY on the slots whose sequence did not move
 * since they were read.  Every command is idempotent and items are applied
 * in order, so replaying a batch (after a crash or a failed reply) changes
 * nothing, and an older put can never follow a newer deletion.
 *
 * Events: each applied item also XADDs "op id origin" to a capped stream
 * (<prefix>llm_cache_events), which other hosts' holders read with XREAD
 * from the position they keep in their segment.  We chose a stream over
 * PUBLISH: pub/sub forgets what a subscriber misses while disconnected,
 * a stream lets it resume where it was (and gives warm-up an order: the
 * newest events), with one request/response connection and no second
 * socket in push mode.
 *
 * Import: PUT events are fetched (GET entry + embedding, pipelined),
 * validated by the codecs (redis_codec.c) and installed with an import put
 * that neither enqueues again nor replaces a newer local entry; DEL events
 * remove the local entry.  Our own events (origin = this segment's
 * creation id) are skipped.
 *
 * Degrade: a failure of a "down" class (sc_redis_class_is_down) marks the
 * segment degraded with the error's class and text, and the holder backs
 * off (sc_backoff) before reconnecting or retrying; the outbox keeps
 * filling meanwhile (puts never wait), and draining resumes in order.
 *
 * liburcu is not used: the only hand-over is between processes (the ring
 * in the segment, where RCU's per-process grace periods do not reach), and
 * export and import run on this one thread, so there is no in-process
 * queue to protect.
 */
#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "../core/internal.h"
#include "redis_codec.h"
#include "redis_conn.h"
#include "tier.h"

#define SC_TIER_POLL_MS   200   /* a waiter's lease check */
#define SC_TIER_IDLE_MS   20    /* an idle holder's pause between polls */
#define SC_BELL_BLOCK     200u  /* the doorbell's XREAD BLOCK (ms): also its stop latency */
#define SC_TIER_STREAM_MAX "100000" /* events kept in the stream (approximately) */
#define SC_TIER_IMPORT_MAX 256u /* events read per XREAD */
#define SC_TIER_VALUE_SLACK (64u * 1024u) /* entry value beyond max_payload */
/* Seed format: discovery through the index SET (see "Seed format" above). */
#define SC_SEED_SCAN_COUNT "128"  /* SSCAN COUNT per loop */
#define SC_SEED_SCAN_MAX   1024u  /* members accepted in one SSCAN reply */
#define SC_SEED_PASS_MS    1000   /* seed: a full pass of the SET starts at most this often */
#define SC_INDEX_PASS_MS   30000  /* native: the same (trimming only, unless a gap or a
                                   * resync asks for more); option index_pass_ms */
#define SC_SEED_SEEN       4096u  /* ids remembered as fetched by the scan */
#define SC_SEED_SEEN_MS    60000  /* ... for this long */
#define FETCH_N(rt) ((rt)->fmt == SC_RFMT_SEED ? 4u : 2u) /* replies per fetched entry */
/* What one pipeline may hold: a batch of 1024 puts (4 commands each, plus
 * MULTI, the fence's SET and EXEC), a slice of events or a scan step's
 * fetches (4 commands each in the seed format), a resync's deletions (3
 * each) of a scan step's members. */
_Static_assert(4u * 1024u + 3u <= SC_REDIS_MAX_BATCH, "a batch fits a pipeline");
_Static_assert(4u * SC_TIER_IMPORT_MAX <= SC_REDIS_MAX_BATCH, "an event slice fits");
_Static_assert(4u * SC_SEED_SCAN_MAX + 3u <= SC_REDIS_MAX_BATCH, "a scan step fits");

struct seen { uint64_t h; int64_t until; };

struct sc_tier_rt {
	semcache *c;
	pthread_t th;
	pthread_t bell;       /* the doorbell thread (see "The doorbell") */
	sc_redis_config bcfg; /* its connection's: a deadline past its BLOCK */
	pthread_mutex_t mu;
	pthread_cond_t cv;
	bool stop;

	sc_redis_config cfg;
	char *host, *unix_path, *username, *password, *prefix;
	enum sc_rformat fmt;
	char *seed_ns;        /* seed format: the namespace that is shared */
	char scan_cursor[24]; /* SSCAN position in the index SET */
	int64_t scan_next;    /* mono ms before which no new pass starts */
	int64_t pass_ms;      /* a pass starts at most this often */
	struct seen *seen;    /* ids the scan fetched lately */
	bool pass_import;     /* this pass fetches members not live here */
	bool pass_resync;     /* this pass deletes our own entries we no longer hold */
	bool gap_check;       /* ask Redis whether events we had not read were trimmed */
	bool gap_pending;     /* they were: the next pass imports */
	uint32_t batch, warmup;
	sc_redis_conn *conn;
	sc_backoff bo;
	int64_t next_try;     /* mono ms before which we do not retry after a failure */
	int64_t import_next;  /* mono ms before which import does not retry (see run) */
	bool ever_connected;

	uint64_t mine;        /* our lease word */
	uint64_t my_epoch;    /* the epoch our lease take made: our fencing token */
	bool holder;
	char origin[33];      /* hex of the segment's creation id */

	/* read-through (application threads, one at a time: rt_mu) */
	uint32_t read_through_ms;
	pthread_mutex_t rt_mu;
	sc_redis_conn *rconn;
	sc_redis_config rcfg;
	sc_backoff rbo;
	int64_t rnext_try;
	sc_buf rkentry, rkemb;
	float *rrow;

	/* fencing (see "Fencing") */
	sc_buf kfence;        /* <prefix>llm_cache_fence:<origin> */
	bool tx;              /* a MULTI is queued on conn, under WATCH of kfence */
	unsigned *texp;       /* the queued commands' own reply types, for EXEC's array */
	size_t tn, tcap;
	char etext[SC_TIER_ERRLEN]; /* an error inside EXEC's array, for stat */
	bool tx_void;         /* the last commit applied nothing (EXECABORT, nil) */

	/* scratch */
	sc_buf kentry, kemb, kindex, kstream, val, emb, payload;
	float *row;
	uint32_t *dslot, *dseq;  /* slots exported in the batch, to clear DIRTY */
	uint8_t *qbits;          /* sweep: slots with an item waiting in the outbox */
	size_t ndirty;
};

/* ------------------------------------------------------------------------
 * Shared state (the holder writes it)
 * ---------------------------------------------------------------------- */
static struct sc_tier *T(struct sc_tier_rt *rt) { return &rt->c->hdr->tier; }
static bool stopping(struct sc_tier_rt *rt);

static void set_state(struct sc_tier_rt *rt, uint32_t st)
{
	struct sc_tier *t = T(rt);
	if (atomic_load_explicit(&t->state, memory_order_relaxed) != st) {
		atomic_store_explicit(&t->since_ms, sc_now(rt->c), memory_order_relaxed);
		atomic_store_explicit(&t->state, st, memory_order_relaxed);
	}
}

static void set_error(struct sc_tier_rt *rt, int cls, const char *text)
{
	struct sc_tier *t = T(rt);
	char buf[SC_TIER_ERRLEN];
	size_t i = 0;

	memset(buf, 0, sizeof buf);
	for (; text && text[i] && i < sizeof buf - 1; i++)
		buf[i] = (text[i] >= 0x20 && text[i] < 0x7f) ? text[i] : '?';
	uint32_t q = atomic_load_explicit(&t->err_seq, memory_order_relaxed);
	atomic_store_explicit(&t->err_seq, q | 1u, memory_order_relaxed);
	/* the odd sequence before the text changes (readers retry) */
	atomic_thread_fence(memory_order_release);
	sc_seq_copy(t->err_text, buf, sizeof buf);
	atomic_store_explicit(&t->err_class, cls, memory_order_relaxed);
	atomic_store_explicit(&t->err_ms, sc_now(rt->c), memory_order_relaxed);
	/* the text before the even sequence */
	atomic_store_explicit(&t->err_seq, (q | 1u) + 1u, memory_order_release);
}

static void count(_Atomic uint64_t *f, uint64_t n)
{
	atomic_fetch_add_explicit(f, n, memory_order_relaxed);
}

/* ------------------------------------------------------------------------
 * Lease
 * ---------------------------------------------------------------------- */
static bool lease_try(struct sc_tier_rt *rt)
{
	semcache *c = rt->c;
	struct sc_tier *t = T(rt);
	/* acquire: a lease we take follows the previous holder's last tail */
	uint64_t cur = atomic_load_explicit(&t->lease, memory_order_acquire);

	if (cur == rt->mine) {
		/* still ours; if the epoch moved without a takeover (a peer
		 * scribbled it), take a new token rather than stay fenced out */
		if (atomic_load_explicit(&t->epoch, memory_order_relaxed) != rt->my_epoch)
			rt->my_epoch = atomic_fetch_add_explicit(&t->epoch, 1, memory_order_relaxed) + 1;
		return true;
	}
	if (cur != 0) {
		uint32_t idx = (uint32_t)cur - 1, gen = (uint32_t)(cur >> 32);
		bool alive = idx < c->max_procs && sc_proc_owner_alive(&c->seg, idx, gen);
		int64_t hb = atomic_load_explicit(&t->heartbeat_ms, memory_order_relaxed);
		if (alive && sc_mono_ms() - hb < SC_TIER_LEASE_MS)
			return false;
	}
	if (!atomic_compare_exchange_strong_explicit(&t->lease, &cur, rt->mine,
	                                             memory_order_acq_rel, memory_order_acquire))
		return false;
	atomic_store_explicit(&t->heartbeat_ms, sc_mono_ms(), memory_order_relaxed);
	rt->my_epoch = atomic_fetch_add_explicit(&t->epoch, 1, memory_order_relaxed) + 1;
	rt->gap_check = true; /* the lease may have been free for long */
	atomic_store_explicit(&t->holder_pid, (int32_t)c->seg.pid, memory_order_relaxed);
	if (cur != 0)
		count(&t->takeovers, 1);
	set_state(rt, SC_TIER_CONNECTING);
	return true;
}

static bool lease_held(struct sc_tier_rt *rt)
{
	if (atomic_load_explicit(&T(rt)->lease, memory_order_acquire) != rt->mine)
		return false;
	atomic_store_explicit(&T(rt)->heartbeat_ms, sc_mono_ms(), memory_order_relaxed);
	return true;
}

static void lease_release(struct sc_tier_rt *rt)
{
	uint64_t mine = rt->mine;
	if (atomic_load_explicit(&T(rt)->lease, memory_order_relaxed) == mine) {
		set_state(rt, SC_TIER_OFF);
		atomic_store_explicit(&T(rt)->holder_pid, 0, memory_order_relaxed);
	}
	/* release: our tail and state before the lease another process takes */
	atomic_compare_exchange_strong_explicit(&T(rt)->lease, &mine, 0, memory_order_release,
	                                        memory_order_relaxed);
}

/* ------------------------------------------------------------------------
 * Failures
 * ---------------------------------------------------------------------- */
/* The words of the last failure: an error inside EXEC's array (flush), or
 * the connection's. */
static const char *last_err(struct sc_tier_rt *rt)
{
	return rt->etext[0] ? rt->etext : sc_redis_last_error(rt->conn);
}

static void failed(struct sc_tier_rt *rt, int rc)
{
	const char *text = last_err(rt);
	set_error(rt, rc, text[0] ? text : strerror(-rc));
	if (sc_redis_class_is_down(rc))
		set_state(rt, SC_TIER_DEGRADED);
	rt->next_try = sc_mono_ms() + sc_backoff_next(&rt->bo);
}

static void succeeded(struct sc_tier_rt *rt)
{
	sc_backoff_reset(&rt->bo);
	set_state(rt, SC_TIER_UP);
	atomic_store_explicit(&T(rt)->last_ok_ms, sc_now(rt->c), memory_order_relaxed);
}

static int ensure_connected(struct sc_tier_rt *rt)
{
	int rc;

	if (sc_redis_connected(rt->conn))
		return 0;
	if (sc_mono_ms() < rt->next_try)
		return -EAGAIN;
	if (!rt->conn)
		rc = sc_redis_connect(&rt->cfg, &rt->conn);
	else
		rc = sc_redis_reconnect(rt->conn);
	if (rc < 0) {
		if (!rt->conn)
			return rc; /* -EINVAL / -ENOMEM: nothing to retry with */
		failed(rt, rc);
		return rc;
	}
	if (rt->ever_connected)
		count(&T(rt)->reconnects, 1);
	rt->ever_connected = true;
	succeeded(rt);
	return 0;
}

/* ------------------------------------------------------------------------
 * Ids and keys
 * ---------------------------------------------------------------------- */
static int unhex_id(const char *s, size_t n, uint8_t d[32])
{
	if (n != 64)
		return -1;
	for (int i = 0; i < 32; i++) {
		int v = 0;
		for (int j = 0; j < 2; j++) {
			char ch = s[2 * i + j];
			int x = ch >= '0' && ch <= '9' ? ch - '0' : ch >= 'a' && ch <= 'f' ? ch - 'a' + 10 : -1;
			if (x < 0)
				return -1;
			v = v * 16 + x;
		}
		d[i] = (uint8_t)v;
	}
	return 0;
}

/* The entry and embedding key names of id (NUL-terminated, of the tier's
 * format) into ke and km. */
static int keys_into(struct sc_tier_rt *rt, const char *id, sc_buf *ke, sc_buf *km)
{
	size_t n = strlen(id);
	int rc;
	if ((rc = sc_rkey_build(rt->prefix, SC_RKEY_ENTRY, rt->fmt, id, n, ke)) < 0 ||
	    (rc = sc_rkey_build(rt->prefix, SC_RKEY_EMB, rt->fmt, id, n, km)) < 0)
		return rc;
	return 0;
}

/* ------------------------------------------------------------------------
 * Fencing
 *
 * The lease lives in the segment, but a holder that hung (SIGSTOP, a
 * stalled VM) after reading a batch may wake after another process took
 * the lease over and sent later items, a deletion say; its stale put
 * would then bring the entry back in Redis.  So every batch that writes
 * is one MULTI/EXEC under WATCH of a fence key, <prefix>llm_cache_fence:
 * <origin>, which holds the epoch (the fencing token) of the newest
 * holder that wrote:
 *   WATCH fence; GET fence            one round trip, then
 *   MULTI; [SET fence <ours>]; the batch; EXEC
 * A holder that reads a newer epoch than its own stops being the holder
 * (-ESTALE) and sends nothing; one whose token is overtaken between its
 * WATCH and its EXEC gets a nil EXEC from Redis, so nothing of the batch
 * is applied.  The token only ever grows: a holder writes its own only
 * over an older one.  The key expires after a day of no takeover (one
 * key per segment ever synced, not forever).
 * ---------------------------------------------------------------------- */
#define SC_FENCE_TTL_MS "86400000"

/* Queue one command of the open transaction: Redis answers QUEUED now and
 * the command's own reply in EXEC's array, checked against expect there. */
static int q_raw(struct sc_tier_rt *rt, unsigned expect, int argc, const char **argv,
                 const size_t *lens)
{
	if (rt->tn == rt->tcap) {
		size_t cap = rt->tcap ? rt->tcap * 2 : 64;
		unsigned *e = realloc(rt->texp, cap * sizeof *e);
		if (!e)
			return -ENOMEM;
		rt->texp = e;
		rt->tcap = cap;
	}
	int rc = sc_redis_append(rt->conn, SC_RT_STATUS, argc, argv, lens);
	if (rc == 0)
		rt->texp[rt->tn++] = expect;
	return rc;
}

/* Send what is queued and drop the replies (the queue is empty after). */
static void send_drop(struct sc_tier_rt *rt)
{
	size_t n = sc_redis_pending(rt->conn), got = 0;
	redisReply **rep = calloc(n ? n : 1, sizeof *rep);
	if (!rep) {
		/* exec needs room for the replies; without it, forget the
		 * connection (a reconnect empties everything) */
		sc_redis_drop(rt->conn);
		return;
	}
	(void)sc_redis_exec(rt->conn, rep, NULL, &got);
	sc_redis_free_replies(rep, got);
	free(rep);
}

static uint64_t parse_token(const redisReply *r)
{
	uint64_t v = 0;
	if (!r || r->type != REDIS_REPLY_STRING || !r->str || r->len == 0 || r->len > 19)
		return 0; /* absent or foreign: ours is written over it */
	for (size_t i = 0; i < r->len; i++) {
		if (r->str[i] < '0' || r->str[i] > '9')
			return 0;
		v = v * 10 + (uint64_t)(r->str[i] - '0');
	}
	return v;
}

/* WATCH and read the fence, then open the transaction.  0, -ESTALE when
 * a newer holder fenced us out, or a failure class. */
static int fence_begin(struct sc_tier_rt *rt)
{
	redisReply *rep[2] = { NULL, NULL };
	size_t got = 0;
	const char *w[2] = { "WATCH", rt->kfence.data };
	const char *g[2] = { "GET", rt->kfence.data };
	const char *m[1] = { "MULTI" };
	int rc;

	if ((rc = sc_redis_append(rt->conn, SC_RT_STATUS, 2, w, NULL)) < 0 ||
	    (rc = sc_redis_append(rt->conn, SC_RT_STRING | SC_RT_NIL, 2, g, NULL)) < 0) {
		sc_redis_drop(rt->conn); /* never a WATCH without its transaction */
		return rc;
	}
	rc = sc_redis_exec(rt->conn, rep, NULL, &got);
	/* GET's error reply (a foreign value of another type at our key) is
	 * a foreign token: ours replaces it, whatever its type */
	uint64_t f = rc == 0 ? parse_token(rep[1]) : 0;
	bool watched = got > 0 && rep[0] && rep[0]->type == REDIS_REPLY_STATUS;
	sc_redis_free_replies(rep, got);
	if (rc < 0 && (sc_redis_class_is_down(rc) || !watched)) {
		sc_redis_drop(rt->conn);
		return rc;
	}
	/* The segment is the judge: if anybody took the lease since ours, we
	 * are stale, whatever the key says (it may have expired, been
	 * evicted, or died with a Redis that kept no data).  A takeover after
	 * this look bumps the key before its first write, and our WATCH then
	 * voids our EXEC. */
	if (atomic_load_explicit(&T(rt)->epoch, memory_order_relaxed) != rt->my_epoch) {
		sc_redis_drop(rt->conn);
		return -ESTALE;
	}
	/* (a token above ours while the segment says we are the newest is
	 * nobody's: a foreign write; ours replaces it) */
	if ((rc = sc_redis_append(rt->conn, SC_RT_STATUS, 1, m, NULL)) < 0) {
		sc_redis_drop(rt->conn);
		return rc;
	}
	rt->tx = true;
	rt->tn = 0;
	if (f != rt->my_epoch) {
		char e[24];
		snprintf(e, sizeof e, "%" PRIu64, rt->my_epoch);
		const char *set[5] = { "SET", rt->kfence.data, e, "PX", SC_FENCE_TTL_MS };
		rc = q_raw(rt, SC_RT_STATUS, 5, set, NULL);
	}
	return rc;
}

/* Queue a command that writes: the first one of a batch opens the fenced
 * transaction. */
static int q_append(struct sc_tier_rt *rt, unsigned expect, int argc, const char **argv,
                    const size_t *lens)
{
	int rc;
	if (!rt->tx && (rc = fence_begin(rt)) < 0)
		return rc;
	return q_raw(rt, expect, argc, argv, lens);
}

/* EXEC the open transaction.  0 when every command's reply is one it may
 * return; -ESTALE when a newer holder fenced us out, -EINTR when a
 * watched key changed while we are still the holder (in both, nothing
 * was applied); the class of the first failure otherwise (its words in
 * rt->etext when it came inside EXEC's array). */
static int tx_commit(struct sc_tier_rt *rt)
{
	const char *x[1] = { "EXEC" };
	size_t got = 0;
	int rc;

	rt->tx = false;
	rt->tx_void = true; /* until EXEC's array says otherwise */
	if ((rc = sc_redis_append(rt->conn, SC_RT_ARRAY | SC_RT_NIL, 1, x, NULL)) < 0) {
		/* nothing of the MULTI was sent: forget it with the connection
		 * (and its WATCH) rather than send half a transaction */
		sc_redis_drop(rt->conn);
		return rc;
	}
	size_t n = sc_redis_pending(rt->conn);
	redisReply **rep = calloc(n, sizeof *rep);
	if (!rep) {
		sc_redis_drop(rt->conn); /* the queue goes with it, MULTI unsent */
		return -ENOMEM;
	}
	rc = sc_redis_exec(rt->conn, rep, NULL, &got);
	/* a refused queueing voids the whole transaction (EXEC answers
	 * EXECABORT); an error inside EXEC's array leaves the others applied */
	rt->tx_void = rc != 0 && (got < n || !rep[n - 1] || rep[n - 1]->type != REDIS_REPLY_ARRAY);
	if (rc == 0) {
		const redisReply *ex = rep[n - 1];
		if (ex->type == REDIS_REPLY_NIL) {
			bool ours = atomic_load_explicit(&T(rt)->epoch, memory_order_relaxed) ==
			            rt->my_epoch;
			/* ours: a watched key changed (the fence written by a
			 * foreign client, or an entry a resync watches); nothing
			 * was applied, and it is tried again */
			rc = ours ? -EINTR : -ESTALE;
			if (ours)
				snprintf(rt->etext, sizeof rt->etext,
				         "transaction voided: a watched key changed (fence %s)",
				         rt->kfence.data);
		} else if (ex->elements != rt->tn) {
			rc = -EPROTO;
			snprintf(rt->etext, sizeof rt->etext, "EXEC returned %zu replies for %zu",
			         ex->elements, rt->tn);
		} else {
			for (size_t i = 0; i < rt->tn && rc == 0; i++) {
				const redisReply *e = ex->element[i];
				rc = sc_redis_reply_class(e, rt->texp[i]);
				if (rc && e && e->type == REDIS_REPLY_ERROR && e->str)
					snprintf(rt->etext, sizeof rt->etext, "%.*s",
					         (int)(e->len < 120 ? e->len : 120), e->str);
				else if (rc)
					snprintf(rt->etext, sizeof rt->etext, "unexpected reply type in EXEC");
			}
		}
	}
	sc_redis_free_replies(rep, got);
	free(rep);
	return rc;
}

static int keys_for(struct sc_tier_rt *rt, const char *id)
{
	return keys_into(rt, id, &rt->kentry, &rt->kemb);
}

/* Seed format: the digest of (seed namespace, id), i.e. of the local entry
 * that id names.  0 or a negative code. */
static int seed_digest(struct sc_tier_rt *rt, const char *id, uint8_t d[32])
{
	return sc_key_digest(rt->seed_ns, id, d);
}

/* The largest seed entry value either side accepts: JSON may escape a
 * payload byte into six, and carries the embedding as text. */
static size_t seed_value_max(const semcache *c)
{
	return (size_t)c->max_payload * 6 + (size_t)c->dim * 48 + SC_TIER_VALUE_SLACK;
}

/* XADD <stream> MAXLEN ~ N * op <op> id <id> o <origin> */
static int append_event(struct sc_tier_rt *rt, const char *op, const char *id)
{
	const char *argv[] = { "XADD", rt->kstream.data, "MAXLEN", "~", SC_TIER_STREAM_MAX, "*",
	                       "op", op, "id", id, "o", rt->origin };
	return q_append(rt, SC_RT_STRING, 12, argv, NULL);
}

/* ------------------------------------------------------------------------
 * Export
 * ---------------------------------------------------------------------- */
struct snap {
	uint32_t seq, flags, len, hits;
	int64_t created, exact, sem;
};

/* Copy slot s's entry if it holds `digest`: 0, or 1 when it does not (any
 * more), or is being written, or does not verify. */
static int snap_slot(struct sc_tier_rt *rt, uint32_t s, const uint8_t digest[32], struct snap *o)
{
	semcache *c = rt->c;
	struct sc_slot *sl = &c->slot[s];
	uint8_t d[32];

	for (int attempt = 0; attempt < 8; attempt++) {
		uint32_t q = atomic_load_explicit(&sl->seq, memory_order_acquire);
		if (q & 1u)
			continue;
		o->seq = q;
		o->flags = SC_GET(sl->flags);
		sc_seq_copy(d, sl->digest, 32);
		o->created = SC_GET(sl->created_ms);
		o->exact = SC_GET(sl->exact_exp_ms);
		o->sem = SC_GET(sl->sem_exp_ms);
		uint32_t head = SC_GET(sl->head), nb = SC_GET(sl->nblocks), csum = SC_GET(sl->checksum);
		o->len = SC_GET(sl->len);
		o->hits = atomic_load_explicit(&sl->hits, memory_order_relaxed);
		if (!(o->flags & SC_SLOT_USED) || memcmp(d, digest, 32) != 0)
			goto check_gone;
		if (o->len == 0 || o->len > c->max_payload)
			goto check_gone;
		if (rt->payload.cap < o->len) {
			char *p = realloc(rt->payload.data, o->len);
			if (!p) {
				/* skipped for now; the entry stays DIRTY for a sweep */
				atomic_store_explicit(&T(rt)->sweep_wanted, 1, memory_order_relaxed);
				return 1;
			}
			rt->payload.data = p;
			rt->payload.cap = o->len;
		}
		if (sc_arena_read(c, head, nb, rt->payload.data, o->len) < 0)
			goto check_gone;
		if ((o->flags & SC_SLOT_EMB) && c->dim)
			sc_seq_copy(rt->row, c->matrix + (size_t)s * c->row_stride, (size_t)c->dim * 4);
		/* acquire: the copies above before the re-check */
		atomic_thread_fence(memory_order_acquire);
		if (atomic_load_explicit(&sl->seq, memory_order_relaxed) != q)
			continue;
		rt->payload.len = o->len;
		return sc_checksum(rt->payload.data, o->len) == csum ? 0 : 1;
	check_gone:
		atomic_thread_fence(memory_order_acquire);
		if (atomic_load_explicit(&sl->seq, memory_order_relaxed) == q)
			return 1;
	}
	return 1;
}

/* Seed format: an entry that stays local (another namespace, a key that
 * is no seed id) is counted, and its DIRTY flag goes with the batch's, so
 * a sweep does not find it again. */
static int seed_skip(struct sc_tier_rt *rt, uint32_t s, uint32_t seq)
{
	count(&T(rt)->seed_skipped, 1);
	rt->dslot[rt->ndirty] = s;
	rt->dseq[rt->ndirty] = seq;
	rt->ndirty++;
	return 1;
}

/* Seed format: the reference JSON of the snapshot (rt->payload, rt->row)
 * into rt->val and rt->emb, its id (the key) into id[].  0, 1 when the
 * entry stays local (counted) or cannot be written, or -ENOMEM. */
static int seed_value(struct sc_tier_rt *rt, uint32_t s, const struct snap *sn,
                      const sc_ids *ids, bool *emb, char id[SC_RID_SEED_MAX + 1])
{
	semcache *c = rt->c;
	semcache_response *resp = NULL;
	char *scope = NULL;
	int rc;

	if (ids->ns_len != strlen(rt->seed_ns) || memcmp(ids->ns, rt->seed_ns, ids->ns_len) != 0 ||
	    sc_rid_check(SC_RFMT_SEED, ids->key, ids->key_len) != 0)
		return seed_skip(rt, s, sn->seq);
	memcpy(id, ids->key, ids->key_len);
	id[ids->key_len] = '\0';
	if ((rc = sc_codec_decode(rt->payload.data, rt->payload.len, &resp, NULL)) < 0) {
		rc = rc == -ENOMEM ? rc : 1;
		goto out;
	}
	if (!(scope = strndup(ids->scope, ids->scope_len))) {
		rc = -ENOMEM;
		goto out;
	}
	rc = sc_rseed_encode(resp, scope, *emb ? rt->row : NULL, c->dim, sn->created, sn->hits,
	                     seed_value_max(c), &rt->val);
	if (rc == -E2BIG || rc == SEMCACHE_EBADRECORD || rc == -EINVAL) {
		/* not representable in the schema (content that is not UTF-8,
		 * an over-long scope): it stays local, said by the counter */
		rc = seed_skip(rt, s, sn->seq);
		goto out;
	}
	if (rc == SEMCACHE_EEMBEDDING) { /* a row we cannot write: no embedding */
		*emb = false;
		rc = sc_rseed_encode(resp, scope, NULL, c->dim, sn->created, sn->hits,
		                     seed_value_max(c), &rt->val);
	}
	if (rc < 0) {
		rc = rc == -ENOMEM ? rc : 1;
		goto out;
	}
	if (*emb && sc_rseed_emb_encode(rt->row, c->dim, &rt->emb) < 0)
		*emb = false;
out:
	free(scope);
	semcache_response_free(resp);
	return rc;
}

/* Queue the commands exporting slot s's entry (id: the native one; the
 * seed format names it by its key instead); 1 when there is nothing to
 * export (gone, expired, unreadable, kept local), 0 queued, < 0 failure. */
static int queue_put(struct sc_tier_rt *rt, uint32_t s, const uint8_t digest[32], const char *id)
{
	semcache *c = rt->c;
	struct snap sn;
	sc_ids ids;
	char sid[SC_RID_SEED_MAX + 1];
	int rc;

	if (s >= c->slots || snap_slot(rt, s, digest, &sn))
		return 1;
	int64_t now = sc_now(c);
	bool emb = (sn.flags & SC_SLOT_EMB) && c->dim && sn.sem > now;
	int64_t exp = sn.exact > sn.sem || !(sn.flags & SC_SLOT_EMB) ? sn.exact : sn.sem;
	if (exp <= now)
		return 1;
	if (sc_codec_peek_ids(rt->payload.data, rt->payload.len, &ids) < 0)
		return 1;
	if (rt->fmt == SC_RFMT_SEED) {
		if ((rc = seed_value(rt, s, &sn, &ids, &emb, sid)) != 0)
			return rc;
		id = sid;
	} else {
		sc_rentry e = {
			.ns = ids.ns, .ns_len = ids.ns_len, .key = ids.key, .key_len = ids.key_len,
			.scope = ids.scope, .scope_len = ids.scope_len,
			.created_ms = sn.created, .exact_expiry_ms = sn.exact,
			.semantic_expiry_ms = sn.sem < sn.created ? sn.created : sn.sem,
			.hits = sn.hits, .payload = rt->payload.data, .payload_len = rt->payload.len,
			.origin = rt->origin, .origin_len = SC_TIER_ORIGIN_LEN,
		};
		if (e.exact_expiry_ms < e.created_ms)
			e.exact_expiry_ms = e.created_ms;
		if ((rc = sc_rnative_encode(&e, (size_t)c->max_payload + SC_TIER_VALUE_SLACK,
		                            &rt->val)) < 0)
			return rc == -ENOMEM ? rc : 1;
		if (emb && (rc = sc_remb_encode(rt->row, c->dim, &rt->emb)) < 0)
			emb = false;
	}
	if ((rc = keys_for(rt, id)) < 0)
		return rc;

	char ttl[24], sttl[24];
	snprintf(ttl, sizeof ttl, "%" PRId64, exp - now);
	snprintf(sttl, sizeof sttl, "%" PRId64, sn.sem - now);
	const char *set[5] = { "SET", rt->kentry.data, rt->val.data, "PX", ttl };
	size_t setl[5] = { 3, rt->kentry.len, rt->val.len, 2, strlen(ttl) };
	int n = exp == INT64_MAX ? 3 : 5;
	if ((rc = q_append(rt, SC_RT_STATUS, n, set, setl)) < 0)
		return rc;
	if (emb) {
		const char *se[5] = { "SET", rt->kemb.data, rt->emb.data, "PX", sttl };
		size_t sel[5] = { 3, rt->kemb.len, rt->emb.len, 2, strlen(sttl) };
		if ((rc = q_append(rt, SC_RT_STATUS, sn.sem == INT64_MAX ? 3 : 5, se,
		                          sel)) < 0)
			return rc;
	}
	const char *sadd[3] = { "SADD", rt->kindex.data, id };
	if ((rc = q_append(rt, SC_RT_INTEGER, 3, sadd, NULL)) < 0 ||
	    (rc = append_event(rt, "P", id)) < 0)
		return rc;
	rt->dslot[rt->ndirty] = s;
	rt->dseq[rt->ndirty] = sn.seq;
	rt->ndirty++;
	return 0;
}

/* Queue a deletion of the item's entry (id: its native id).  The seed
 * format names it by the key the item carries, and only when the entry
 * was of the seed namespace (the item's digest is that of (seed
 * namespace, key)); anything else stayed local and is counted.  1 when
 * nothing is sent, 0 queued, < 0 failure. */
static int queue_del_id(struct sc_tier_rt *rt, const char *id);

static int queue_del(struct sc_tier_rt *rt, const uint8_t digest[32], const char *id,
                     const struct sc_obitem *it)
{
	char sid[SC_RID_SEED_MAX + 1];

	if (rt->fmt == SC_RFMT_SEED) {
		uint32_t kl = SC_GET(it->key_len);
		uint8_t d[32];
		if (kl == 0 || kl > SC_OB_KEY_MAX) {
			count(&T(rt)->seed_skipped, 1);
			return 1;
		}
		sc_seq_copy(sid, it->key, kl);
		sid[kl] = '\0';
		if (sc_rid_check(SC_RFMT_SEED, sid, kl) != 0 || seed_digest(rt, sid, d) < 0 ||
		    memcmp(d, digest, 32) != 0) {
			count(&T(rt)->seed_skipped, 1);
			return 1;
		}
		id = sid;
	}
	return queue_del_id(rt, id);
}

/* Queue the deletion of id (of the tier's format): its keys, its index
 * member, and the event that tells the other hosts. */
static int queue_del_id(struct sc_tier_rt *rt, const char *id)
{
	int rc;
	if ((rc = keys_for(rt, id)) < 0)
		return rc;
	const char *del[3] = { "DEL", rt->kentry.data, rt->kemb.data };
	const char *srem[3] = { "SREM", rt->kindex.data, id };
	if ((rc = q_append(rt, SC_RT_INTEGER, 3, del, NULL)) < 0 ||
	    (rc = q_append(rt, SC_RT_INTEGER, 3, srem, NULL)) < 0)
		return rc;
	return append_event(rt, "D", id);
}

/* Send what is queued (a fenced transaction, or plain reads); every reply
 * must be the expected one. */
static int flush(struct sc_tier_rt *rt)
{
	rt->etext[0] = '\0';
	if (rt->tx)
		return tx_commit(rt);
	size_t n = sc_redis_pending(rt->conn);
	if (n == 0)
		return 0;
	redisReply **rep = calloc(n, sizeof *rep);
	if (!rep)
		return -ENOMEM;
	size_t got = 0;
	int rc = sc_redis_exec(rt->conn, rep, NULL, &got);
	sc_redis_free_replies(rep, got);
	free(rep);
	return rc;
}

/* After a failure while queueing: nothing half-queued may go out later
 * (exec empties the queue whatever happens; its replies are dropped). */
static void discard(struct sc_tier_rt *rt)
{
	if (rt->tx) {
		/* MULTI and the batch were never sent, the fence is WATCHed:
		 * forget both with the connection (a failure path; the next
		 * loop reconnects) */
		rt->tx = false;
		sc_redis_drop(rt->conn);
		return;
	}
	if (sc_redis_pending(rt->conn))
		send_drop(rt);
}

/* Clear DIRTY on the slots just exported, where nothing changed since. */
static void clear_dirty(struct sc_tier_rt *rt)
{
	semcache *c = rt->c;
	if (rt->ndirty == 0 || sc_wlock(c) < 0) {
		rt->ndirty = 0;
		return;
	}
	for (size_t i = 0; i < rt->ndirty; i++) {
		struct sc_slot *sl = &c->slot[rt->dslot[i]];
		if (atomic_load_explicit(&sl->seq, memory_order_relaxed) != rt->dseq[i] ||
		    !(sl->flags & SC_SLOT_DIRTY))
			continue;
		sc_slot_begin(sl);
		SC_SET(sl->flags, sl->flags & ~SC_SLOT_DIRTY);
		sc_slot_end(sl);
	}
	sc_wunlock(c);
	rt->ndirty = 0;
}

/* One batch from the outbox: > 0 items done, 0 nothing to do, < 0 failure. */
static int export_batch(struct sc_tier_rt *rt)
{
	semcache *c = rt->c;
	struct sc_tier *t = T(rt);
	/* acquire: the items before the head that exposes them */
	uint64_t head = atomic_load_explicit(&t->ob_head, memory_order_acquire);
	uint64_t tail = atomic_load_explicit(&t->ob_tail, memory_order_relaxed);
	uint64_t puts = 0, dels = 0;
	int64_t last_enq = 0;
	int rc = 0;

	if (head == tail)
		return 0;
	if (tail > head || head - tail > c->outbox_cap) {
		/* scribbled words: skip what cannot be trusted, say so */
		set_error(rt, -EPROTO, "outbox head/tail inconsistent; skipped to head");
		atomic_store_explicit(&t->resync, 1, memory_order_relaxed);
		atomic_store_explicit(&t->sweep_wanted, 1, memory_order_relaxed); /* the puts */
		atomic_store_explicit(&t->ob_tail, head, memory_order_release);
		return 1;
	}
	uint64_t n = head - tail;
	if (n > rt->batch)
		n = rt->batch;
	rt->ndirty = 0;
	for (uint64_t i = 0; i < n; i++) {
		uint64_t pos = tail + i;
		struct sc_obitem *it = &c->outbox[pos & (c->outbox_cap - 1)];
		uint8_t d[32];
		char id[65];
		/* acquire: the item's fields after its sequence */
		if (atomic_load_explicit(&it->seq, memory_order_acquire) != pos + 1)
			continue; /* never completed (its writer died): nothing to send */
		uint32_t op = SC_GET(it->op), s = SC_GET(it->slot);
		int64_t enq = SC_GET(it->enq_ms);
		sc_seq_copy(d, it->digest, 32);
		sc_hex(d, 32, id);
		if (enq > last_enq)
			last_enq = enq;
		if (op == SC_OB_PUT) {
			rc = queue_put(rt, s, d, id);
			if (rc == 0)
				puts++;
		} else if (op == SC_OB_DEL) {
			rc = queue_del(rt, d, id, it);
			if (rc == 0)
				dels++;
		} else {
			rc = 1;
		}
		if (rc < 0)
			goto fail;
	}
	if ((rc = flush(rt)) < 0 &&
	    (sc_redis_class_is_down(rc) || rc == -ESTALE || rc == -EINTR))
		goto fail;
	if (rc < 0) {
		/* an error reply of another kind: one poisoned item must not stop
		 * the outbox forever; said in stat, the batch is not retried.
		 * When Redis voided the whole transaction (EXECABORT), its puts
		 * stay DIRTY for a sweep and its deletions are left to a resync
		 * pass; an error inside EXEC's array left the rest applied. */
		set_error(rt, rc, last_err(rt));
		if (rt->tx_void) {
			rt->ndirty = 0;
			if (puts)
				atomic_store_explicit(&t->sweep_wanted, 1, memory_order_relaxed);
			if (dels)
				atomic_store_explicit(&t->resync, 1, memory_order_relaxed);
		}
	}
	if (!atomic_compare_exchange_strong_explicit(&t->ob_tail, &tail, tail + n,
	                                             memory_order_release, memory_order_relaxed)) {
		rt->holder = false; /* another holder moved it: we lost the lease */
		rt->ndirty = 0;
		return 0;
	}
	count(&t->exported, puts);
	count(&t->deleted, dels);
	if (last_enq)
		atomic_store_explicit(&t->lag_ms, sc_now(c) - last_enq, memory_order_relaxed);
	if (rc == 0)
		succeeded(rt);
	clear_dirty(rt);
	return (int)n;
fail:
	rt->ndirty = 0;
	discard(rt);
	if (rc == -ESTALE) {
		rt->holder = false; /* a newer holder fenced us out: it has the outbox */
		return 0;
	}
	if (rc == -EINTR) {
		/* voided by a foreign write to the fence: said, tried again */
		set_error(rt, rc, last_err(rt));
		rt->next_try = sc_mono_ms() + sc_backoff_next(&rt->bo);
		return rc;
	}
	failed(rt, rc);
	return rc;
}

/* Re-export every DIRTY entry (after drops, and when a tier is first
 * configured on a segment with entries).  Only with an empty outbox, so
 * nothing older is still waiting to be applied after what it sends. */
/* Send a sweep's queued batch; a non-down error reply is said in stat and
 * passed over, as in export_batch.  0 or a down class. */
static int sweep_flush(struct sc_tier_rt *rt, uint64_t *n)
{
	int rc = flush(rt);
	if (rc < 0 && (sc_redis_class_is_down(rc) || rc == -ESTALE || rc == -EINTR))
		return rc;
	if (rc < 0 && rt->tx_void) {
		/* Redis voided the whole batch (EXECABORT): nothing was applied,
		 * the entries stay DIRTY; the sweep is tried again after a
		 * backoff, not at once (the cause may last) */
		set_error(rt, rc, last_err(rt));
		rt->ndirty = 0;
		*n = 0;
		return rc;
	}
	if (rc < 0)
		set_error(rt, rc, last_err(rt));
	clear_dirty(rt);
	count(&T(rt)->swept, *n);
	count(&T(rt)->exported, *n);
	*n = 0;
	return 0;
}

static int sweep(struct sc_tier_rt *rt)
{
	semcache *c = rt->c;
	struct sc_tier *t = T(rt);
	uint64_t n = 0;
	int rc = 0;

	atomic_store_explicit(&t->sweep_wanted, 0, memory_order_relaxed);
	rt->ndirty = 0;
	/* Slots with an item waiting in the outbox are left to it: writers
	 * keep putting while we sweep, and their entries are DIRTY too.  The
	 * items from the tail on stay in the ring until this thread moves the
	 * tail, so marking their slots as the head advances is exact enough:
	 * an item for an older entry of the slot marks it too, and if the
	 * newer entry's own item was dropped, its drop asks for the next
	 * sweep, which starts from an empty outbox. */
	uint64_t mark = atomic_load_explicit(&t->ob_tail, memory_order_relaxed);
	memset(rt->qbits, 0, ((size_t)c->slots + 7) / 8);
	for (uint32_t s = 0; s < c->slots; s++) {
		struct sc_slot *sl = &c->slot[s];
		uint32_t f = SC_GET(sl->flags);
		uint8_t d[32];
		char id[65];
		if ((f & (SC_SLOT_USED | SC_SLOT_DIRTY)) != (SC_SLOT_USED | SC_SLOT_DIRTY))
			continue;
		/* acquire: the items before the head that exposes them */
		uint64_t head = atomic_load_explicit(&t->ob_head, memory_order_acquire);
		for (; mark < head && head - mark <= c->outbox_cap; mark++) {
			struct sc_obitem *it = &c->outbox[mark & (c->outbox_cap - 1)];
			uint32_t qs = SC_GET(it->slot);
			if (atomic_load_explicit(&it->seq, memory_order_acquire) == mark + 1 &&
			    qs < c->slots)
				rt->qbits[qs / 8] |= (uint8_t)(1u << (qs % 8));
		}
		if (rt->qbits[s / 8] & (1u << (s % 8)))
			continue;
		sc_seq_copy(d, sl->digest, 32);
		sc_hex(d, 32, id);
		if ((rc = queue_put(rt, s, d, id)) < 0)
			goto fail;
		if (rc == 0)
			n++;
		if (rt->ndirty >= rt->batch) {
			if ((rc = sweep_flush(rt, &n)) < 0)
				goto fail;
			/* a long sweep beats too, and stops if the lease went or
			 * semcache_tier_stop() is waiting for us */
			bool lost = !lease_held(rt);
			if (lost || stopping(rt)) {
				rt->holder = !lost;
				atomic_store_explicit(&t->sweep_wanted, 1, memory_order_relaxed);
				return 0;
			}
		}
	}
	if ((rc = sweep_flush(rt, &n)) < 0)
		goto fail;
	return 0;
fail:
	rt->ndirty = 0;
	atomic_store_explicit(&t->sweep_wanted, 1, memory_order_relaxed);
	discard(rt); /* the sweep runs again */
	if (rc == -ESTALE) {
		rt->holder = false;
		return 0;
	}
	failed(rt, rc);
	return rc;
}

/* ------------------------------------------------------------------------
 * Import
 * ---------------------------------------------------------------------- */
#define event sc_tier_event

static bool is_str(const redisReply *r)
{
	return r && (r->type == REDIS_REPLY_STRING || r->type == REDIS_REPLY_STATUS) && r->str;
}

int sc_tier_parse_stream_id(const redisReply *r, uint64_t *ms, uint64_t *seq)
{
	if (!is_str(r) || r->len == 0 || r->len > 41)
		return -1;
	char b[48];
	memcpy(b, r->str, r->len);
	b[r->len] = '\0';
	char *dash = strchr(b, '-'), *end;
	if (!dash || dash == b || !dash[1])
		return -1;
	*dash = '\0';
	for (char *p = b; *p; p++)
		if (*p < '0' || *p > '9')
			return -1;
	for (char *p = dash + 1; *p; p++)
		if (*p < '0' || *p > '9')
			return -1;
	errno = 0;
	*ms = strtoull(b, &end, 10);
	if (errno)
		return -1;
	*seq = strtoull(dash + 1, &end, 10);
	return errno ? -1 : 0;
}

int sc_tier_parse_event(const char origin[SC_TIER_ORIGIN_LEN], enum sc_rformat fmt,
                        const redisReply *e, struct sc_tier_event *ev)
{
	const redisReply *op = NULL, *id = NULL, *o = NULL;

	if (!e || e->type != REDIS_REPLY_ARRAY || e->elements != 2)
		return -1;
	if (sc_tier_parse_stream_id(e->element[0], &ev->ms, &ev->seq) < 0)
		return -1;
	const redisReply *f = e->element[1];
	if (!f || f->type != REDIS_REPLY_ARRAY || f->elements % 2 || f->elements > 32)
		return -1;
	for (size_t i = 0; i < f->elements; i += 2) {
		const redisReply *k = f->element[i], *v = f->element[i + 1];
		if (!is_str(k) || !is_str(v))
			return -1;
		if (k->len == 2 && !memcmp(k->str, "op", 2))
			op = v;
		else if (k->len == 2 && !memcmp(k->str, "id", 2))
			id = v;
		else if (k->len == 1 && k->str[0] == 'o')
			o = v;
	}
	if (!op || !id || !o || op->len != 1 || (op->str[0] != 'P' && op->str[0] != 'D'))
		return -1;
	if (sc_rid_check(fmt, id->str, id->len) != 0)
		return -1;
	ev->op = op->str[0];
	memcpy(ev->id, id->str, id->len);
	ev->id[id->len] = '\0';
	ev->id_len = id->len;
	ev->own = o->len == SC_TIER_ORIGIN_LEN && !memcmp(o->str, origin, SC_TIER_ORIGIN_LEN);
	return 0;
}

int sc_tier_xread_entries(const redisReply *r, size_t max, const redisReply **entries)
{
	*entries = NULL;
	if (!r || r->type == REDIS_REPLY_NIL)
		return 1;
	/* [[stream, [entries...]]] */
	if (sc_redis_check_array(r, SC_RT_ARRAY, 1) < 0 || r->elements != 1 ||
	    r->element[0]->elements != 2 || !is_str(r->element[0]->element[0]) ||
	    sc_redis_check_array(r->element[0]->element[1], SC_RT_ARRAY, max) < 0)
		return -1;
	*entries = r->element[0]->element[1];
	return 0;
}

/* Queue the reads of entry id on conn: GET of the entry and of its
 * embedding and, in the seed format, whose JSON has no expiry, PTTL of
 * both (FETCH_N(rt) replies in all).  ke, km: key name scratch. */
static int queue_fetch(struct sc_tier_rt *rt, sc_redis_conn *conn, const char *id, sc_buf *ke,
                       sc_buf *km)
{
	int rc;
	if ((rc = keys_into(rt, id, ke, km)) < 0)
		return rc;
	const char *g1[2] = { "GET", ke->data }, *g2[2] = { "GET", km->data };
	const char *t1[2] = { "PTTL", ke->data }, *t2[2] = { "PTTL", km->data };
	if ((rc = sc_redis_append(conn, SC_RT_STRING | SC_RT_NIL, 2, g1, NULL)) < 0 ||
	    (rc = sc_redis_append(conn, SC_RT_STRING | SC_RT_NIL, 2, g2, NULL)) < 0)
		return rc;
	if (rt->fmt == SC_RFMT_SEED &&
	    ((rc = sc_redis_append(conn, SC_RT_INTEGER, 2, t1, NULL)) < 0 ||
	     (rc = sc_redis_append(conn, SC_RT_INTEGER, 2, t2, NULL)) < 0))
		return rc;
	return 0;
}

/* An entry fetched from Redis and validated, ready for the import put. */
struct fetched {
	sc_rentry e;              /* identity (not NUL-terminated) and times */
	semcache_response *resp;  /* owned */
	bool has_emb;             /* row holds its embedding */
	sc_rseed seed;            /* seed format: owns the scope */
};

/* Native format: rep = GET entry, GET embedding.  0 valid, 1 gone, -1
 * rejected. */
static int decode_native(struct sc_tier_rt *rt, const char *id, const redisReply *const *rep,
                         float *row, struct fetched *f)
{
	semcache *c = rt->c;
	const redisReply *ve = rep[0], *vm = rep[1];

	if (!ve || ve->type == REDIS_REPLY_NIL)
		return 1; /* expired or deleted since the event */
	if (ve->type != REDIS_REPLY_STRING || ve->len > (size_t)c->max_payload + SC_TIER_VALUE_SLACK ||
	    sc_rnative_decode(ve->str, ve->len, id, &f->e, &f->resp) < 0)
		return -1;
	if (c->dim && vm && vm->type == REDIS_REPLY_STRING) {
		if (sc_remb_decode(vm->str, vm->len, c->dim, row) < 0)
			return -1;
		f->has_emb = true;
	} else if (vm && vm->type != REDIS_REPLY_NIL && vm->type != REDIS_REPLY_STRING) {
		return -1;
	}
	return 0;
}

/* now + ms, saturating */
static int64_t after(int64_t t, int64_t ms)
{
	return ms > INT64_MAX - t ? INT64_MAX : t + ms;
}

/*
 * Seed format: rep = GET entry, GET embedding, PTTL entry, PTTL embedding.
 * The entry is (seed namespace, id) with the JSON's "scope" ("" when a
 * reference writer left it out).  Expiry comes from the keys' TTLs: the
 * exact one from the entry key's (the longer of the two on a semcache
 * exporter, the only one a reference writer sets), the semantic one from
 * the embedding key's (the entry's when only query_embedding is there); a
 * key without TTL gets the segment's default TTL from created_at.
 */
static int decode_seed(struct sc_tier_rt *rt, const char *id, const redisReply *const *rep,
                       float *row, struct fetched *f)
{
	semcache *c = rt->c;
	const redisReply *ve = rep[0], *vm = rep[1], *te = rep[2], *tm = rep[3];

	if (!ve || ve->type == REDIS_REPLY_NIL)
		return 1;
	if (ve->type != REDIS_REPLY_STRING || !te || te->type != REDIS_REPLY_INTEGER ||
	    !tm || tm->type != REDIS_REPLY_INTEGER || te->integer < -2 || tm->integer < -2 ||
	    sc_rseed_decode(ve->str, ve->len, seed_value_max(c), c->dim, &f->seed) < 0)
		return -1;
	if (te->integer == -2)
		return 1; /* expired between the GET and the PTTL */
	if (c->dim && vm && vm->type == REDIS_REPLY_STRING) {
		if (sc_rseed_emb_decode(vm->str, vm->len, c->dim, row) < 0)
			return -1;
		f->has_emb = true;
	} else if (vm && vm->type != REDIS_REPLY_NIL && vm->type != REDIS_REPLY_STRING) {
		return -1;
	} else if (f->seed.embedding) {
		memcpy(row, f->seed.embedding, (size_t)c->dim * sizeof(float));
		f->has_emb = true;
	}
	int64_t now = sc_now(c), created = f->seed.created_ms;
	if (created > now)
		created = now; /* another host's clock ahead: never newer than now */
	int64_t exact = te->integer >= 0 ? after(now, te->integer) : after(created, c->exact_ttl_ms);
	int64_t sem = exact;
	if (vm && vm->type == REDIS_REPLY_STRING)
		sem = tm->integer >= 0 ? after(now, tm->integer) : after(created, c->semantic_ttl_ms);
	else if (te->integer < 0)
		sem = after(created, c->semantic_ttl_ms);
	const char *scope = f->seed.scope ? f->seed.scope : "";
	f->e = (sc_rentry){
		.ns = rt->seed_ns, .ns_len = strlen(rt->seed_ns), .key = id, .key_len = strlen(id),
		.scope = scope, .scope_len = strlen(scope), .created_ms = created,
		.exact_expiry_ms = exact < created ? created : exact,
		.semantic_expiry_ms = sem < created ? created : sem,
	};
	f->resp = f->seed.response;
	f->seed.response = NULL;
	return 0;
}

/* Install one fetched entry (FETCH_N(rt) replies in rep, any of them NULL
 * when never read); row holds dim floats of scratch.  With keep non-NULL,
 * the decoded response is handed over there when the entry was valid and
 * live (installed or not).  1 installed, 0 nothing to install (gone,
 * expired, older than ours, no room), -1 rejected (counted); with
 * skip_own, 2 for a valid entry this segment exported (not installed). */
#define INSTALL_SKIP_OWN 1u  /* an entry this segment exported is not installed: 2 */
#define INSTALL_OWN_ONLY 2u  /* nor any other: only tell ours (2) from the rest (0) */

static int install(struct sc_tier_rt *rt, const char *id, const redisReply *const *rep,
                   float *row, semcache_response **keep, unsigned how)
{
	semcache *c = rt->c;
	struct sc_tier *t = T(rt);
	struct fetched f;
	char *ns = NULL, *key = NULL, *scope = NULL;
	int res = 0;

	memset(&f, 0, sizeof f);
	int d = rt->fmt == SC_RFMT_SEED ? decode_seed(rt, id, rep, row, &f)
	                                : decode_native(rt, id, rep, row, &f);
	if (d > 0)
		goto out;
	if (d < 0)
		goto reject;
	sc_rentry e = f.e;
	bool has_emb = f.has_emb;
	if ((how & INSTALL_SKIP_OWN) && e.origin_len == SC_TIER_ORIGIN_LEN &&
	    memcmp(e.origin, rt->origin, SC_TIER_ORIGIN_LEN) == 0) {
		res = 2; /* ours, and not live here: we deleted or evicted it */
		goto out;
	}
	if (how & INSTALL_OWN_ONLY)
		goto out;
	int64_t now = sc_now(c);
	if (e.exact_expiry_ms <= now && (!has_emb || e.semantic_expiry_ms <= now))
		goto out;
	ns = strndup(e.ns, e.ns_len);
	key = strndup(e.key, e.key_len);
	scope = strndup(e.scope, e.scope_len);
	if (!ns || !key || !scope)
		goto out;
	semcache_put_args a = {
		.ns = ns, .key = key, .scope = scope, .response = f.resp,
		.embedding = has_emb ? row : NULL, .embedding_dim = has_emb ? c->dim : 0,
	};
	sc_put_import imp = { .created_ms = e.created_ms, .exact_exp_ms = e.exact_expiry_ms,
	                      .sem_exp_ms = has_emb ? e.semantic_expiry_ms : e.created_ms };
	int rc = sc_put_import_entry(c, &a, &imp);
	if (rc == 0 && !imp.skipped) {
		count(&t->imported, 1);
		res = 1;
	} else if (rc < 0 && rc != -ENOMEM && rc != SEMCACHE_EFULL && rc != SEMCACHE_EBUSY) {
		goto reject;
	}
	if (keep && e.exact_expiry_ms > now) {
		*keep = f.resp;
		f.resp = NULL;
	}
	goto out;
reject:
	count(&t->import_rejected, 1);
	res = -1;
out:
	free(ns);
	free(key);
	free(scope);
	semcache_response_free(f.resp);
	sc_rseed_free(&f.seed);
	return res;
}

/* Apply events in order: fetch the PUTs' values in one pipeline, then
 * apply PUTs and DELs in stream order. */
static int apply_events(struct sc_tier_rt *rt, struct event *ev, size_t n)
{
	semcache *c = rt->c;
	struct sc_tier *t = T(rt);
	redisReply **rep = NULL;
	size_t nq = 0, got = 0;
	int rc = 0;

	for (size_t i = 0; i < n; i++) {
		if (ev[i].own || ev[i].op != 'P')
			continue;
		if ((rc = queue_fetch(rt, rt->conn, ev[i].id, &rt->kentry, &rt->kemb)) < 0) {
			discard(rt);
			goto out;
		}
		nq += FETCH_N(rt);
	}
	if (nq) {
		if (!(rep = calloc(nq, sizeof *rep))) {
			rc = -ENOMEM;
			sc_redis_drop(rt->conn); /* the queued reads go with it */
			goto out;
		}
		rc = sc_redis_exec(rt->conn, rep, NULL, &got);
		if (rc < 0 && sc_redis_class_is_down(rc))
			goto out;
		rc = 0; /* a bad reply type is a rejected value below */
	}
	size_t k = 0;
	for (size_t i = 0; i < n; i++) {
		if (!ev[i].own && ev[i].op == 'P') {
			const redisReply *v[4] = { NULL, NULL, NULL, NULL };
			for (size_t j = 0; j < FETCH_N(rt); j++)
				v[j] = k + j < got ? rep[k + j] : NULL;
			k += FETCH_N(rt);
			install(rt, ev[i].id, v, rt->row, NULL, 0);
		} else if (!ev[i].own && ev[i].op == 'D') {
			uint8_t d[32];
			int r = rt->fmt == SC_RFMT_SEED ? seed_digest(rt, ev[i].id, d)
			                                : unhex_id(ev[i].id, 64, d);
			if (r == 0 && sc_delete_digest(c, d) == 1)
				count(&t->import_deleted, 1);
		}
		atomic_store_explicit(&t->stream_ms, ev[i].ms, memory_order_relaxed);
		atomic_store_explicit(&t->stream_seq, ev[i].seq, memory_order_relaxed);
	}
out:
	if (rep)
		sc_redis_free_replies(rep, got);
	free(rep);
	return rc;
}

/* Parse an array of stream entries into ev (at most cap); malformed
 * entries are counted and skipped. */
static size_t parse_entries(struct sc_tier_rt *rt, const redisReply *arr, struct event *ev,
                            size_t cap, bool reverse)
{
	size_t n = 0;
	for (size_t i = 0; i < arr->elements && n < cap; i++) {
		const redisReply *e = arr->element[reverse ? arr->elements - 1 - i : i];
		int r = sc_tier_parse_event(rt->origin, rt->fmt, e, &ev[n]);
		if (r == 0)
			n++;
		else
			count(&T(rt)->import_rejected, 1);
	}
	return n;
}

/* The importer's stream position becomes entry e's id ([id, fields]), if
 * e has that shape; an entry that is not one leaves the position as it is. */
static void set_position(struct sc_tier *t, const redisReply *e)
{
	uint64_t ms, seq;
	if (e && e->type == REDIS_REPLY_ARRAY && e->elements == 2 &&
	    sc_tier_parse_stream_id(e->element[0], &ms, &seq) == 0) {
		atomic_store_explicit(&t->stream_ms, ms, memory_order_relaxed);
		atomic_store_explicit(&t->stream_seq, seq, memory_order_relaxed);
	}
}

static int count_at_position(struct sc_tier_rt *rt);

/* A new segment's first look: the newest `warmup` events, oldest first. */
static int warm_up(struct sc_tier_rt *rt)
{
	struct sc_tier *t = T(rt);
	char cnt[16];
	redisReply *r = NULL;
	struct event *ev = NULL;
	int rc;

	snprintf(cnt, sizeof cnt, "%u", rt->warmup);
	const char *argv[6] = { "XREVRANGE", rt->kstream.data, "+", "-", "COUNT", cnt };
	if ((rc = sc_redis_command(rt->conn, SC_RT_ARRAY, &r, 6, argv, NULL)) < 0)
		return rc;
	if (sc_redis_check_array(r, SC_RT_ARRAY, rt->warmup) == 0 && r->elements) {
		if (!(ev = calloc(r->elements, sizeof *ev))) {
			rc = -ENOMEM;
			goto out;
		}
		size_t n = parse_entries(rt, r, ev, r->elements, true);
		/* in slices, so one pipeline never outgrows SC_REDIS_MAX_BATCH */
		for (size_t i = 0; i < n; i += SC_TIER_IMPORT_MAX) {
			size_t k = n - i < SC_TIER_IMPORT_MAX ? n - i : SC_TIER_IMPORT_MAX;
			if ((rc = apply_events(rt, ev + i, k)) < 0)
				goto out;
			if (!lease_held(rt)) { /* a long warm-up beats, and stops if it lost */
				rt->holder = false;
				goto out;
			}
		}
		/* the newest event is our position even when it did not parse */
		set_position(t, r->element[0]);
	}
	if ((rc = count_at_position(rt)) < 0)
		goto out;
	atomic_store_explicit(&t->stream_init, 1, memory_order_relaxed);
out:
	free(ev);
	freeReplyObject(r);
	return rc;
}

/*
 * Gaps.  Did the stream lose events after our position before we read
 * them (the holder was away while more than the stream's cap was
 * written)?  Trimming says nothing about itself (Redis 7 moves
 * max-deleted-entry-id only on XDEL), so we count: stream_added is the
 * stream's entries-added at our position (set at warm-up, advanced by
 * every entry XREAD returns).  When the oldest entry left is newer than
 * our position, every entry the stream still has is one we have not read;
 * if fewer than were added since our position, the rest were trimmed
 * unread: a gap, which the next index pass fills (the entries; deletions
 * in a gap are left to expiry).  XDEL by a foreign client counts as a
 * gap too: a pass that finds nothing missing costs only reads.  An older
 * Redis (no entries-added or recorded-first-entry-id) gives no verdict.
 */
struct xinfo {
	long long length, added;
	uint64_t first_ms, first_seq, last_ms, last_seq;
	bool ok;
	bool absent;  /* no stream at all (nothing was ever added, or it was deleted) */
};

static int stream_info(struct sc_tier_rt *rt, struct xinfo *xi)
{
	redisReply *r = NULL;
	const char *argv[3] = { "XINFO", "STREAM", rt->kstream.data };
	int rc = sc_redis_command(rt->conn, SC_RT_ARRAY, &r, 3, argv, NULL);
	unsigned seen = 0;

	memset(xi, 0, sizeof *xi);
	if (rc < 0) {
		xi->absent = strstr(sc_redis_last_error(rt->conn), "no such key") != NULL;
		return sc_redis_class_is_down(rc) ? rc : 0;
	}
	for (size_t i = 0; i + 1 < r->elements && i < 64; i += 2) {
		const redisReply *k = r->element[i], *v = r->element[i + 1];
		if (!is_str(k))
			break;
		if (k->len == 6 && !memcmp(k->str, "length", 6) && v->type == REDIS_REPLY_INTEGER &&
		    v->integer >= 0) {
			xi->length = v->integer;
			seen |= 1;
		} else if (k->len == 13 && !memcmp(k->str, "entries-added", 13) &&
		           v->type == REDIS_REPLY_INTEGER && v->integer >= 0) {
			xi->added = v->integer;
			seen |= 2;
		} else if (k->len == 23 && !memcmp(k->str, "recorded-first-entry-id", 23) &&
		           sc_tier_parse_stream_id(v, &xi->first_ms, &xi->first_seq) == 0) {
			seen |= 4;
		} else if (k->len == 17 && !memcmp(k->str, "last-generated-id", 17) &&
		           sc_tier_parse_stream_id(v, &xi->last_ms, &xi->last_seq) == 0) {
			seen |= 8;
		}
	}
	xi->ok = seen == 15 && xi->length <= xi->added;
	freeReplyObject(r);
	return 0;
}

/* The count at our position is known: added. */
static void set_count(struct sc_tier *t, uint64_t added)
{
	atomic_store_explicit(&t->stream_added, added, memory_order_relaxed);
	atomic_store_explicit(&t->stream_counted, 1, memory_order_relaxed);
}

static bool id_after(uint64_t ams, uint64_t aseq, uint64_t bms, uint64_t bseq)
{
	return ams > bms || (ams == bms && aseq > bseq);
}

/* At warm-up, positioned on the newest entry (or on nothing: an empty
 * stream): the count there, when the stream says it unambiguously. */
static int count_at_position(struct sc_tier_rt *rt)
{
	struct sc_tier *t = T(rt);
	struct xinfo xi;
	int rc = stream_info(rt, &xi);
	uint64_t pm = atomic_load_explicit(&t->stream_ms, memory_order_relaxed);
	uint64_t ps = atomic_load_explicit(&t->stream_seq, memory_order_relaxed);

	atomic_store_explicit(&t->stream_counted, 0, memory_order_relaxed);
	if (rc == 0 && xi.absent) {
		/* nothing yet: every entry the stream will hold is ours to read */
		set_count(t, 0);
	}
	if (rc < 0 || !xi.ok)
		return rc;
	/* our position is the newest id (nobody added since we read), or
	 * the stream is empty and all it ever had is behind us */
	if ((xi.last_ms == pm && xi.last_seq == ps) || xi.length == 0) {
		set_count(t, (uint64_t)xi.added);
	}
	return 0;
}

static int check_gap(struct sc_tier_rt *rt)
{
	struct sc_tier *t = T(rt);
	struct xinfo xi;
	int rc = stream_info(rt, &xi);
	uint64_t pm = atomic_load_explicit(&t->stream_ms, memory_order_relaxed);
	uint64_t ps = atomic_load_explicit(&t->stream_seq, memory_order_relaxed);

	rt->gap_check = false;
	if (rc < 0 || !xi.ok)
		return rc;
	if (id_after(pm, ps, xi.last_ms, xi.last_seq)) {
		/* our position is past all the stream ever had (a scribbled
		 * position, or a new stream on a Redis whose clock is behind):
		 * XREAD would wait there for ever.  Back to the newest id, and
		 * a pass looks for what we may have missed. */
		atomic_store_explicit(&t->stream_ms, xi.last_ms, memory_order_relaxed);
		atomic_store_explicit(&t->stream_seq, xi.last_seq, memory_order_relaxed);
		set_count(t, (uint64_t)xi.added);
		count(&t->import_gaps, 1);
		rt->gap_pending = true;
		return 0;
	}
	bool counted = atomic_load_explicit(&t->stream_counted, memory_order_relaxed);
	uint64_t at = atomic_load_explicit(&t->stream_added, memory_order_relaxed);
	if (xi.length == 0 ? id_after(xi.last_ms, xi.last_seq, pm, ps)
	                   : id_after(xi.first_ms, xi.first_seq, pm, ps)) {
		/* all the stream holds (maybe nothing) is unread, and something
		 * was added after our position; unless we know the count at our
		 * position, no verdict (a false gap costs a pass, but a pass at
		 * every start would be waste) */
		if (counted && ((uint64_t)xi.added < at ||
		                (uint64_t)xi.added - at > (uint64_t)xi.length)) {
			count(&t->import_gaps, 1);
			rt->gap_pending = true;
		}
		/* from here on: as if just before the oldest entry left */
		set_count(t, (uint64_t)(xi.added - xi.length));
	} else if (!counted && xi.last_ms == pm && xi.last_seq == ps) {
		set_count(t, (uint64_t)xi.added);
	}
	return 0;
}

/* Read and apply what other hosts wrote since our position. */
static int import_events(struct sc_tier_rt *rt)
{
	struct sc_tier *t = T(rt);
	char pos[48], cnt[16];
	redisReply *r = NULL;
	struct event *ev = NULL;
	int rc;

	if (!atomic_load_explicit(&t->stream_init, memory_order_relaxed))
		return warm_up(rt);
	if (rt->gap_check && (rc = check_gap(rt)) < 0)
		return rc;
	snprintf(pos, sizeof pos, "%" PRIu64 "-%" PRIu64,
	         (uint64_t)atomic_load_explicit(&t->stream_ms, memory_order_relaxed),
	         (uint64_t)atomic_load_explicit(&t->stream_seq, memory_order_relaxed));
	snprintf(cnt, sizeof cnt, "%u", SC_TIER_IMPORT_MAX);
	const char *argv[6] = { "XREAD", "COUNT", cnt, "STREAMS", rt->kstream.data, pos };
	if ((rc = sc_redis_command(rt->conn, SC_RT_ARRAY | SC_RT_NIL, &r, 6, argv, NULL)) < 0)
		return rc;
	const redisReply *arr;
	int shape = sc_tier_xread_entries(r, SC_TIER_IMPORT_MAX, &arr);
	if (shape > 0)
		goto out;
	if (shape < 0) {
		count(&t->import_rejected, 1);
		rc = 0;
		goto out;
	}
	if (!arr->elements)
		goto out;
	if (!(ev = calloc(arr->elements, sizeof *ev))) {
		rc = -ENOMEM;
		goto out;
	}
	size_t n = parse_entries(rt, arr, ev, arr->elements, false);
	if ((rc = apply_events(rt, ev, n)) < 0)
		goto out;
	/* past malformed trailing entries too, so they are not read forever */
	set_position(t, arr->element[arr->elements - 1]);
	atomic_fetch_add_explicit(&t->stream_added, arr->elements, memory_order_relaxed);
	/* a full read: we are behind, maybe beyond what the stream keeps */
	if (arr->elements >= SC_TIER_IMPORT_MAX)
		rt->gap_check = true;
	rc = (int)n;
out:
	free(ev);
	freeReplyObject(r);
	return rc;
}

/* ------------------------------------------------------------------------
 * The index pass
 *
 * The holder walks <prefix>llm_cache_index with SSCAN, one call (COUNT
 * SC_SEED_SCAN_COUNT) per loop, keeping the cursor across loops; a pass
 * that reached the end starts again after pass_ms at the earliest (seed
 * format: SC_SEED_PASS_MS; native: index_pass_ms, SC_INDEX_PASS_MS by
 * default).  Each step does three things with the members it got:
 *  - Trim.  Members whose entry key is gone (expired, or deleted by a host
 *    whose SREM did not happen) are removed from the SET, so the index
 *    does not grow forever: WATCH their entry keys, EXISTS each, then
 *    MULTI / SREM the gone ones / EXEC.  An entry written again meanwhile
 *    changes a watched key and the EXEC does nothing (the next pass looks
 *    again).
 *  - Import.  In the seed format always (a reference service writes no
 *    events), in the native one for one pass after a gap in the event
 *    stream (see gap_check): a member that is not live here and was not
 *    fetched by the scan in the last SC_SEED_SEEN_MS is fetched and
 *    installed (the seed format also reads PTTLs).  An entry whose value
 *    names this segment as its exporter (native "origin") is not
 *    installed: not live here means we deleted or evicted it.
 *  - Resync (native).  When deletions were lost to a full outbox (writers
 *    set `resync`), the next pass deletes, with their events so that the
 *    other hosts drop them too, the entries in Redis that this segment
 *    exported and no longer holds: the lost deletions are among them (so
 *    are entries it evicted, which then leave Redis too: a cost paid only
 *    after an overflow).
 * The "fetched lately" memory is a direct-mapped table of SC_SEED_SEEN
 * digests: it keeps a value that failed validation from being fetched at
 * every pass, and an entry this segment evicted from coming back at once
 * (a collision only costs a fetch).  A member that is no id of the
 * format counts as rejected (once per SC_SEED_SEEN_MS as well).
 * ---------------------------------------------------------------------- */
static bool seen_lately(struct sc_tier_rt *rt, const uint8_t d[32], int64_t now, bool mark)
{
	uint64_t h;
	memcpy(&h, d, sizeof h);
	struct seen *e = &rt->seen[h % SC_SEED_SEEN];
	if (mark) {
		e->h = h;
		e->until = now + SC_SEED_SEEN_MS;
		return true;
	}
	return e->h == h && e->until > now;
}

/* The digest of the local entry that member m names: 0, or -1 when m is
 * no id of the tier's format (counted as rejected, once a while). */
static int member_digest(struct sc_tier_rt *rt, const redisReply *m, int64_t now, uint8_t d[32])
{
	if (sc_rid_check(rt->fmt, m->str, m->len) == 0 &&
	    (rt->fmt == SC_RFMT_SEED ? seed_digest(rt, m->str, d) : unhex_id(m->str, m->len, d)) == 0)
		return 0;
	/* remembered too (by a digest in a namespace no id shares), so it is
	 * counted once, not at every pass */
	if (sc_key_digest("\x01not-an-id", m->str, d) == 0 && !seen_lately(rt, d, now, false)) {
		seen_lately(rt, d, now, true);
		count(&T(rt)->import_rejected, 1);
	}
	return -1;
}

/* WATCH the entry keys of ids[0..n) and read each with cmd (EXISTS or
 * GET, replies of type expect), in one round trip: rep[0] is the WATCH's
 * reply, rep[1 + i] the read of ids[i] (rep holds n + 1).  A failure to
 * queue drops the connection, so no WATCH stays behind; after a failed
 * exec the caller ends the WATCH (when the connection is still there). */
static int watch_read(struct sc_tier_rt *rt, const char *const *ids, size_t n, const char *cmd,
                      unsigned expect, redisReply **rep, size_t *got)
{
	sc_buf *keys = calloc(n, sizeof *keys), scratch = { 0 };
	const char **argv = calloc(n + 1, sizeof *argv);
	int rc = -ENOMEM;

	*got = 0;
	if (!keys || !argv)
		goto out;
	argv[0] = "WATCH";
	for (size_t i = 0; i < n; i++) {
		if ((rc = keys_into(rt, ids[i], &keys[i], &scratch)) < 0)
			goto out;
		argv[1 + i] = keys[i].data;
	}
	rc = sc_redis_append(rt->conn, SC_RT_STATUS, (int)n + 1, argv, NULL);
	for (size_t i = 0; i < n && rc == 0; i++) {
		const char *a[2] = { cmd, keys[i].data };
		rc = sc_redis_append(rt->conn, expect, 2, a, NULL);
	}
	if (rc < 0) {
		sc_redis_drop(rt->conn);
		goto out;
	}
	rc = sc_redis_exec(rt->conn, rep, NULL, got);
out:
	for (size_t i = 0; keys && i < n; i++)
		free(keys[i].data);
	free(scratch.data);
	free(keys);
	free(argv);
	return rc;
}

/* Trim: remove the members (valid ids, ok[i]) whose entry key is gone.
 * 0, or a failure class. */
static int trim_members(struct sc_tier_rt *rt, const redisReply *mem, const bool *ok)
{
	size_t n = 0, got = 0, nk = 0;
	const char **ids = calloc(mem->elements, sizeof *ids);
	const char **argv = calloc(mem->elements + 2, sizeof *argv);
	/* room for WATCH + one read a member, and for MULTI / SREM / EXEC
	 * (3, more than 1 + 1 when a step has a single member) */
	redisReply **rep = calloc(mem->elements + 3, sizeof *rep);
	int rc = -ENOMEM;

	if (!ids || !argv || !rep)
		goto out;
	for (size_t i = 0; i < mem->elements; i++)
		if (ok[i])
			ids[nk++] = mem->element[i]->str;
	rc = 0;
	if (!nk)
		goto out;
	if ((rc = watch_read(rt, ids, nk, "EXISTS", SC_RT_INTEGER, rep, &got)) < 0)
		goto unwatch;
	/* SREM the gone ones */
	argv[0] = "SREM";
	argv[1] = rt->kindex.data;
	n = 2;
	for (size_t k = 0; k < nk; k++)
		if (rep[1 + k]->integer == 0)
			argv[n++] = ids[k];
	sc_redis_free_replies(rep, got);
	got = 0;
	if (n == 2)
		goto unwatch;
	const char *m[1] = { "MULTI" }, *x[1] = { "EXEC" };
	if ((rc = sc_redis_append(rt->conn, SC_RT_STATUS, 1, m, NULL)) < 0 ||
	    (rc = sc_redis_append(rt->conn, SC_RT_STATUS, (int)n, argv, NULL)) < 0 ||
	    (rc = sc_redis_append(rt->conn, SC_RT_ARRAY | SC_RT_NIL, 1, x, NULL)) < 0) {
		/* only complete transactions go out: drop the connection instead */
		sc_redis_drop(rt->conn);
		goto out;
	}
	rc = sc_redis_exec(rt->conn, rep, NULL, &got);
	if (rc == 0 && rep[2]->type == REDIS_REPLY_ARRAY && rep[2]->elements == 1 &&
	    rep[2]->element[0] && rep[2]->element[0]->type == REDIS_REPLY_INTEGER &&
	    rep[2]->element[0]->integer > 0)
		count(&T(rt)->index_trimmed, (uint64_t)rep[2]->element[0]->integer);
	goto out; /* EXEC (or a failure that dropped the connection) ended the WATCH */
unwatch:
	if (sc_redis_connected(rt->conn)) {
		const char *u[1] = { "UNWATCH" };
		(void)sc_redis_command(rt->conn, SC_RT_STATUS, NULL, 1, u, NULL);
	}
out:
	if (rep)
		sc_redis_free_replies(rep, got);
	free(ids);
	free(argv);
	free(rep);
	return rc < 0 && !sc_redis_class_is_down(rc) ? 0 : rc;
}

/*
 * Resync: delete (fenced, with events) the fetched entries that were ours.
 * Between the fetch and the deletion another host may have put the same
 * key again: so WATCH the entry keys and read them once more, keep only
 * what is still ours and still not live here, and delete in the fenced
 * transaction, which those WATCHes void if any of them changes after.
 * 0, -EINTR (voided: the pass runs again), or a failure class.
 */
static int resync_delete(struct sc_tier_rt *rt, const char **own, size_t n)
{
	if (!n)
		return 0;
	const char **keep = calloc(n, sizeof *keep);
	redisReply **rep = calloc(n + 1, sizeof *rep);
	size_t got = 0, nk = 0;
	int rc = -ENOMEM;

	if (!keep || !rep)
		goto out;
	if ((rc = watch_read(rt, own, n, "GET", SC_RT_STRING | SC_RT_NIL, rep, &got)) < 0) {
		/* a foreign type at an entry key (WRONGTYPE) is no entry of ours:
		 * leave the lot to the next pass */
		sc_redis_drop(rt->conn);
		if (!sc_redis_class_is_down(rc))
			rc = -EINTR;
		goto out;
	}
	for (size_t i = 0; i < n; i++) {
		const redisReply *v = rep[1 + i];
		sc_rentry e;
		uint8_t d[32];
		if (v->type == REDIS_REPLY_STRING &&
		    v->len <= (size_t)rt->c->max_payload + SC_TIER_VALUE_SLACK &&
		    sc_rnative_decode(v->str, v->len, own[i], &e, NULL) == 0 &&
		    e.origin_len == SC_TIER_ORIGIN_LEN &&
		    memcmp(e.origin, rt->origin, SC_TIER_ORIGIN_LEN) == 0 &&
		    unhex_id(own[i], strlen(own[i]), d) == 0 && sc_held_digest(rt->c, d) == 0)
			keep[nk++] = own[i];
	}
	sc_redis_free_replies(rep, got);
	got = 0;
	rc = 0;
	for (size_t i = 0; i < nk && rc == 0; i++)
		rc = queue_del_id(rt, keep[i]);
	if (rc == 0)
		rc = nk ? flush(rt) : 0;
	if (rc < 0) {
		discard(rt);
		sc_redis_drop(rt->conn); /* the entry WATCHes go with it */
		goto out;
	}
	if (!nk) {
		const char *u[1] = { "UNWATCH" };
		(void)sc_redis_command(rt->conn, SC_RT_STATUS, NULL, 1, u, NULL);
		goto out;
	}
	count(&T(rt)->resync_deleted, nk);
out:
	if (rep)
		sc_redis_free_replies(rep, got);
	free(keep);
	free(rep);
	return rc;
}

/* One SSCAN step: > 0 entries installed, 0 none, < 0 a failure of the
 * connection's kind (as import_events), or -ESTALE (fenced out). */
static int scan_step(struct sc_tier_rt *rt)
{
	struct sc_tier *t = T(rt);
	redisReply *r = NULL, **rep = NULL;
	const redisReply **ids = NULL;
	const char **own = NULL;
	bool *ok = NULL;
	size_t nq = 0, nids = 0, nown = 0, got = 0;
	int64_t now = sc_mono_ms();
	int rc, installed = 0;

	if (!strcmp(rt->scan_cursor, "0")) {
		/* a pass is due, or has a duty that should not wait */
		if (now < rt->scan_next && !rt->gap_pending &&
		    !(rt->fmt == SC_RFMT_NATIVE && atomic_load_explicit(&t->resync, memory_order_relaxed)))
			return 0;
		/* a new pass: what it does besides trimming.  A resync pass
		 * imports nothing: an import evicting our live entries would
		 * make them look deleted to the same pass (a gap waits) */
		rt->pass_resync = rt->fmt == SC_RFMT_NATIVE &&
		                  atomic_exchange_explicit(&t->resync, 0, memory_order_relaxed);
		rt->pass_import = !rt->pass_resync && (rt->fmt == SC_RFMT_SEED || rt->gap_pending);
		if (rt->pass_import)
			rt->gap_pending = false;
		rt->gap_check = true; /* and the stream is looked at once a pass */
	}
	const char *argv[5] = { "SSCAN", rt->kindex.data, rt->scan_cursor, "COUNT",
	                        SC_SEED_SCAN_COUNT };
	if ((rc = sc_redis_command(rt->conn, SC_RT_ARRAY, &r, 5, argv, NULL)) < 0)
		goto fail;
	/* [cursor, [members...]] */
	const redisReply *cur = r->elements == 2 ? r->element[0] : NULL;
	const redisReply *mem = r->elements == 2 ? r->element[1] : NULL;
	if (!is_str(cur) || cur->len == 0 || cur->len >= sizeof rt->scan_cursor ||
	    strspn(cur->str, "0123456789") != cur->len ||
	    sc_redis_check_array(mem, SC_RT_STRING, SC_SEED_SCAN_MAX) < 0) {
		count(&t->import_rejected, 1);
		strcpy(rt->scan_cursor, "0"); /* start over, after the pause */
		rt->scan_next = now + rt->pass_ms;
		rc = 0;
		goto out;
	}
	memcpy(rt->scan_cursor, cur->str, cur->len);
	rt->scan_cursor[cur->len] = '\0';
	if (!strcmp(rt->scan_cursor, "0")) {
		rt->scan_next = now + rt->pass_ms;
		if (rt->pass_resync)
			count(&t->resyncs, 1);
	}
	if (!mem->elements)
		goto out;
	ids = calloc(mem->elements, sizeof *ids);
	own = calloc(mem->elements, sizeof *own);
	ok = calloc(mem->elements, sizeof *ok);
	if (!ids || !own || !ok) {
		rc = -ENOMEM;
		goto out;
	}
	bool fetch = rt->pass_import || rt->pass_resync;
	for (size_t i = 0; i < mem->elements; i++) {
		const redisReply *m = mem->element[i];
		uint8_t d[32];

		if (member_digest(rt, m, now, d) < 0)
			continue;
		ok[i] = true;
		if (!fetch || sc_present_digest(rt->c, d) != 0 ||
		    (!rt->pass_resync && seen_lately(rt, d, now, false)))
			continue;
		/* remembered as fetched, except for a resync, which must see
		 * every one of ours */
		if (!rt->pass_resync)
			seen_lately(rt, d, now, true);
		ids[nids++] = m;
	}
	if ((rc = trim_members(rt, mem, ok)) < 0)
		goto fail;
	if (!lease_held(rt)) {
		rt->holder = false;
		rc = 0;
		goto fail; /* the pass starts over under the next holder */
	}
	for (size_t i = 0; i < nids; i++) {
		if ((rc = queue_fetch(rt, rt->conn, ids[i]->str, &rt->kentry, &rt->kemb)) < 0) {
			discard(rt);
			goto out;
		}
		nq += FETCH_N(rt);
	}
	if (!nq)
		goto out;
	if (!(rep = calloc(nq, sizeof *rep))) {
		rc = -ENOMEM;
		discard(rt);
		goto out;
	}
	rc = sc_redis_exec(rt->conn, rep, NULL, &got);
	if (rc < 0 && sc_redis_class_is_down(rc))
		goto fail;
	for (size_t i = 0; i < nids; i++) {
		const redisReply *v[4] = { NULL, NULL, NULL, NULL };
		for (size_t j = 0; j < 4; j++)
			v[j] = FETCH_N(rt) * i + j < got && j < FETCH_N(rt) ? rep[FETCH_N(rt) * i + j]
			                                                     : NULL;
		int res = install(rt, ids[i]->str, v, rt->row, NULL,
		                  INSTALL_SKIP_OWN | (rt->pass_import ? 0 : INSTALL_OWN_ONLY));
		if (res == 1 && rt->pass_import)
			installed++;
		else if (res == 2 && rt->pass_resync)
			own[nown++] = ids[i]->str;
	}
	if (nown && !lease_held(rt)) {
		rt->holder = false;
		rc = 0;
		goto fail;
	}
	if ((rc = resync_delete(rt, own, nown)) < 0)
		goto fail;
	rc = installed;
	goto out;
fail:
	if (rc == -ESTALE) {
		rt->holder = false; /* fenced out by a newer holder: its pass now */
		rc = 0;
	}
	/* the pass runs again from the start, with the same duties */
	if (rt->pass_resync)
		atomic_store_explicit(&t->resync, 1, memory_order_relaxed);
	if (rt->pass_import && rt->fmt == SC_RFMT_NATIVE)
		rt->gap_pending = true;
	if (rc == -EINTR)
		rc = 0; /* voided by a concurrent write: not a failure of Redis */
	strcpy(rt->scan_cursor, "0");
	rt->scan_next = 0;
out:
	if (rep)
		sc_redis_free_replies(rep, got);
	free(rep);
	free(ids);
	free(own);
	free(ok);
	freeReplyObject(r);
	return rc;
}

/* What other hosts wrote: the event stream, then a step of the index
 * pass.  > 0 work done, 0 none, < 0 failure. */
static int import_poll(struct sc_tier_rt *rt)
{
	int rc = import_events(rt);
	if (rc < 0 || !atomic_load_explicit(&T(rt)->stream_init, memory_order_relaxed))
		return rc;
	/* each step may take a command deadline: beat between them, and stop
	 * when the lease went (a heartbeat older than the lease is a takeover) */
	if (!lease_held(rt)) {
		rt->holder = false;
		return rc;
	}
	int rs = scan_step(rt);
	return rs < 0 ? rs : rc + rs;
}

/* ------------------------------------------------------------------------
 * The thread
 * ---------------------------------------------------------------------- */
static bool pause_ms(struct sc_tier_rt *rt, int64_t ms)
{
	struct timespec ts;
	bool stop;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	ts.tv_sec += ms / 1000;
	ts.tv_nsec += (ms % 1000) * 1000000L;
	if (ts.tv_nsec >= 1000000000L) {
		ts.tv_sec++;
		ts.tv_nsec -= 1000000000L;
	}
	pthread_mutex_lock(&rt->mu);
	while (!rt->stop && pthread_cond_timedwait(&rt->cv, &rt->mu, &ts) == 0)
		;
	stop = rt->stop;
	pthread_mutex_unlock(&rt->mu);
	return !stop;
}

/* The idle holder's nap: until a writer pushes to the outbox (it wakes us
 * through ob_wake, outbox.c), the doorbell rings, semcache_tier_stop()
 * wakes us, or ms pass (the next import poll).  w is ob_wake as read
 * before this loop's work, so a ring during that work ends the nap at
 * once. */
static void idle_wait(struct sc_tier_rt *rt, int64_t ms, uint32_t w)
{
	struct sc_tier *t = T(rt);

	atomic_store_explicit(&t->ob_sleep, 1, memory_order_relaxed);
	/* seq_cst: our flag before our look at the head; the writer's head
	 * before its look at the flag (outbox.c) */
	atomic_thread_fence(memory_order_seq_cst);
	if (atomic_load_explicit(&t->ob_head, memory_order_relaxed) ==
	            atomic_load_explicit(&t->ob_tail, memory_order_relaxed) &&
	    !stopping(rt))
		sc_futex_wait(&t->ob_wake, w, (long)ms * 1000000L);
	atomic_store_explicit(&t->ob_sleep, 0, memory_order_relaxed);
}

static bool stopping(struct sc_tier_rt *rt)
{
	pthread_mutex_lock(&rt->mu);
	bool s = rt->stop;
	pthread_mutex_unlock(&rt->mu);
	return s;
}

static void *run(void *arg)
{
	struct sc_tier_rt *rt = arg;
	struct sc_tier *t = T(rt);

	while (!stopping(rt)) {
		if (!rt->holder) {
			rt->holder = lease_try(rt);
			if (!rt->holder) {
				pause_ms(rt, SC_TIER_POLL_MS);
				continue;
			}
		}
		if (!lease_held(rt)) {
			rt->holder = false;
			continue;
		}
		int rc = ensure_connected(rt);
		if (rc < 0) {
			pause_ms(rt, SC_TIER_IDLE_MS);
			continue;
		}
		if (sc_mono_ms() < rt->next_try) {
			pause_ms(rt, SC_TIER_IDLE_MS);
			continue;
		}
		/* a ring (a put here, the doorbell) from now on ends the nap below */
		uint32_t bell = atomic_load_explicit(&t->ob_wake, memory_order_relaxed);
		rc = export_batch(rt);
		if (rc < 0 || !rt->holder)
			continue;
		bool busy = rc > 0;
		if (!busy && atomic_load_explicit(&t->sweep_wanted, memory_order_relaxed) &&
		    lease_held(rt) && sweep(rt) < 0)
			continue;
		if (!lease_held(rt))
			continue;
		rc = sc_mono_ms() < rt->import_next ? 0 : import_poll(rt);
		if (rc < 0) {
			if (sc_redis_class_is_down(rc)) {
				failed(rt, rc);
			} else {
				/* Redis refuses this import only (say, a foreign value at
				 * the events key: WRONGTYPE): export goes on, import
				 * retries after a pause */
				set_error(rt, rc, last_err(rt));
				rt->import_next = sc_mono_ms() + 1000;
				pause_ms(rt, SC_TIER_IDLE_MS);
			}
			continue;
		}
		if (!busy && rc == 0)
			idle_wait(rt, SC_TIER_IDLE_MS, bell);
	}
	if (rt->holder)
		lease_release(rt);
	return NULL;
}

/* ------------------------------------------------------------------------
 * The doorbell
 *
 * The holder's idle nap ends when a writer of this segment pushes to the
 * outbox (the futex word ob_wake), but other hosts' events would wait for
 * its next poll (SC_TIER_IDLE_MS).  So a second thread, while this
 * process holds the lease, blocks in XREAD BLOCK on a connection of its
 * own for events newer than the last it saw, and rings ob_wake when some
 * arrive: the syncer wakes and imports them at once.  The doorbell applies
 * nothing and touches no tier state (a failure only pauses it, and the
 * syncer's poll covers the pause), so it shares nothing with the syncer
 * thread but that word and the stop flag.
 * ---------------------------------------------------------------------- */
static void *bell_run(void *arg)
{
	struct sc_tier_rt *rt = arg;
	struct sc_tier *t = T(rt);
	sc_redis_conn *conn = NULL;
	char last[48] = "$", block[16], cnt[16];

	snprintf(block, sizeof block, "%u", SC_BELL_BLOCK);
	snprintf(cnt, sizeof cnt, "%u", SC_TIER_IMPORT_MAX);
	while (!stopping(rt)) {
		if (atomic_load_explicit(&t->lease, memory_order_relaxed) != rt->mine) {
			strcpy(last, "$");
			pause_ms(rt, SC_TIER_POLL_MS);
			continue;
		}
		if (!sc_redis_connected(conn)) {
			int rc = conn ? sc_redis_reconnect(conn) : sc_redis_connect(&rt->bcfg, &conn);
			if (rc < 0) {
				pause_ms(rt, 1000);
				continue;
			}
			strcpy(last, "$");
		}
		redisReply *r = NULL;
		const char *argv[8] = { "XREAD", "BLOCK", block, "COUNT", cnt, "STREAMS",
		                        rt->kstream.data, last };
		if (sc_redis_command(conn, SC_RT_ARRAY | SC_RT_NIL, &r, 8, argv, NULL) < 0) {
			strcpy(last, "$"); /* an id the server refused is not retried */
			pause_ms(rt, 1000);
			continue;
		}
		const redisReply *arr;
		if (sc_tier_xread_entries(r, SC_TIER_IMPORT_MAX, &arr) == 0 && arr->elements) {
			/* from the newest we were given on; "$" if it has no id */
			const redisReply *e = arr->element[arr->elements - 1];
			const redisReply *id = e->elements == 2 ? e->element[0] : NULL;
			if (is_str(id) && id->len < sizeof last) {
				memcpy(last, id->str, id->len);
				last[id->len] = '\0';
			} else {
				strcpy(last, "$");
			}
			atomic_fetch_add_explicit(&t->ob_wake, 1, memory_order_relaxed);
			sc_futex_wake_all(&t->ob_wake);
		}
		freeReplyObject(r);
	}
	sc_redis_close(conn);
	return NULL;
}

/* ------------------------------------------------------------------------
 * Read-through (application threads)
 * ---------------------------------------------------------------------- */
/* id: the entry's id in the tier's format (the native digest's hex, or
 * the key in the seed format). */
static int read_through(struct sc_tier_rt *rt, const char *id, semcache_response **out)
{
	redisReply *rep[4] = { NULL, NULL, NULL, NULL };
	size_t got = 0;
	int rc;

	if (atomic_load_explicit(&T(rt)->state, memory_order_relaxed) != SC_TIER_UP)
		return SEMCACHE_ENOTFOUND;
	if (!sc_redis_connected(rt->rconn)) {
		if (sc_mono_ms() < rt->rnext_try)
			return SEMCACHE_ENOTFOUND;
		rc = rt->rconn ? sc_redis_reconnect(rt->rconn) : sc_redis_connect(&rt->rcfg, &rt->rconn);
		if (rc < 0) {
			rt->rnext_try = sc_mono_ms() + sc_backoff_next(&rt->rbo);
			return SEMCACHE_ENOTFOUND;
		}
	}
	if (queue_fetch(rt, rt->rconn, id, &rt->rkentry, &rt->rkemb) < 0) {
		size_t n = 0;
		(void)sc_redis_exec(rt->rconn, rep, NULL, &n); /* empty the queue */
		sc_redis_free_replies(rep, n);
		return SEMCACHE_ENOTFOUND;
	}
	rc = sc_redis_exec(rt->rconn, rep, NULL, &got);
	if (rc < 0 && sc_redis_class_is_down(rc)) {
		rt->rnext_try = sc_mono_ms() + sc_backoff_next(&rt->rbo);
		sc_redis_free_replies(rep, got);
		return SEMCACHE_ENOTFOUND;
	}
	sc_backoff_reset(&rt->rbo);
	*out = NULL;
	const redisReply *v[4];
	for (size_t j = 0; j < 4; j++)
		v[j] = j < got ? rep[j] : NULL;
	install(rt, id, v, rt->rrow, out, 0);
	sc_redis_free_replies(rep, got);
	if (!*out)
		return SEMCACHE_ENOTFOUND;
	count(&T(rt)->read_through, 1);
	return 0;
}

int sc_tier_read_through(semcache *c, const char *ns, const char *key, const uint8_t digest[32],
                         semcache_response **out)
{
	int rc = SEMCACHE_ENOTFOUND;

	/* never wait: a handle stopping its tier, or another thread's
	 * read-through, makes this a plain miss */
	if (pthread_mutex_trylock(&c->tier_mu) != 0)
		return rc;
	struct sc_tier_rt *rt = c->tier_rt;
	if (rt && rt->read_through_ms && pthread_mutex_trylock(&rt->rt_mu) == 0) {
		char id[65];
		if (rt->fmt == SC_RFMT_NATIVE) {
			sc_hex(digest, 32, id);
			rc = read_through(rt, id, out);
		} else if (!strcmp(ns, rt->seed_ns) &&
		           sc_rid_check(SC_RFMT_SEED, key, strlen(key)) == 0) {
			/* the seed format shares only its namespace's entries,
			 * named by key */
			rc = read_through(rt, key, out);
		}
		pthread_mutex_unlock(&rt->rt_mu);
	}
	pthread_mutex_unlock(&c->tier_mu);
	return rc;
}

/* ------------------------------------------------------------------------
 * Public calls
 * ---------------------------------------------------------------------- */
void semcache_tier_options_init(semcache_tier_options *o)
{
	if (!o)
		return;
	memset(o, 0, sizeof *o);
	o->format = SEMCACHE_TIER_NATIVE;
}

static void rt_free(struct sc_tier_rt *rt)
{
	if (!rt)
		return;
	sc_redis_close(rt->conn);
	sc_redis_close(rt->rconn);
	free(rt->rkentry.data);
	free(rt->rkemb.data);
	free(rt->rrow);
	pthread_mutex_destroy(&rt->rt_mu);
	free(rt->host);
	free(rt->unix_path);
	free(rt->username);
	free(rt->password);
	free(rt->prefix);
	free(rt->seed_ns);
	free(rt->seen);
	free(rt->kentry.data);
	free(rt->kemb.data);
	free(rt->kindex.data);
	free(rt->kstream.data);
	free(rt->kfence.data);
	free(rt->texp);
	free(rt->val.data);
	free(rt->emb.data);
	free(rt->payload.data);
	free(rt->row);
	free(rt->dslot);
	free(rt->dseq);
	free(rt->qbits);
	pthread_mutex_destroy(&rt->mu);
	pthread_cond_destroy(&rt->cv);
	free(rt);
}

static char *dup_or_null(const char *s, bool *fail)
{
	if (!s)
		return NULL;
	char *d = strdup(s);
	if (!d)
		*fail = true;
	return d;
}

int semcache_tier_start(semcache *c, const semcache_tier_options *opts)
{
	semcache_tier_options o;
	struct sc_tier_rt *rt = NULL;
	bool fail = false;
	int rc;

	if (!c)
		return -EINVAL;
	sc_ensure_record(c);
	if (opts)
		o = *opts;
	else
		semcache_tier_options_init(&o);
	if ((o.format != SEMCACHE_TIER_NATIVE && o.format != SEMCACHE_TIER_SEED) || o.port < 0 || o.port > 65535 || o.db < 0 ||
	    o.batch > 1024 || sc_rprefix_check(o.prefix ? o.prefix : "") != 0)
		return -EINVAL;
	if (!c->seg.me)
		return SEMCACHE_EPROCFULL;

	if (!(rt = calloc(1, sizeof *rt)))
		return -ENOMEM;
	pthread_mutex_init(&rt->mu, NULL);
	pthread_mutex_init(&rt->rt_mu, NULL);
	pthread_condattr_t ca;
	pthread_condattr_init(&ca);
	pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
	pthread_cond_init(&rt->cv, &ca);
	pthread_condattr_destroy(&ca);
	rt->c = c;
	rt->host = dup_or_null(o.host ? o.host : "127.0.0.1", &fail);
	rt->unix_path = dup_or_null(o.unix_path, &fail);
	rt->username = dup_or_null(o.username, &fail);
	rt->password = dup_or_null(o.password, &fail);
	rt->prefix = dup_or_null(o.prefix ? o.prefix : "", &fail);
	rt->fmt = o.format == SEMCACHE_TIER_SEED ? SC_RFMT_SEED : SC_RFMT_NATIVE;
	rt->seed_ns = dup_or_null(o.seed_namespace ? o.seed_namespace : "", &fail);
	strcpy(rt->scan_cursor, "0");
	rt->pass_ms = rt->fmt == SC_RFMT_SEED ? SC_SEED_PASS_MS
	            : o.index_pass_ms ? o.index_pass_ms : SC_INDEX_PASS_MS;
	/* the first pass after a start comes at once in the seed format (its
	 * import), after one period in the native one */
	rt->scan_next = rt->fmt == SC_RFMT_SEED ? 0 : sc_mono_ms() + rt->pass_ms;
	if (!(rt->seen = calloc(SC_SEED_SEEN, sizeof *rt->seen)))
		fail = true;
	rt->batch = o.batch ? o.batch : 256;
	rt->warmup = o.warmup ? o.warmup : 1000;
	if (rt->warmup > 100000)
		rt->warmup = 100000;
	rt->cfg = (sc_redis_config){
		.host = rt->host, .port = o.port ? o.port : 6379, .unix_path = rt->unix_path,
		.username = rt->username, .password = rt->password, .db = o.db,
		.connect_timeout_ms = o.connect_timeout_ms ? o.connect_timeout_ms : 1000,
		.command_timeout_ms = o.command_timeout_ms ? o.command_timeout_ms : 1000,
	};
	sc_backoff_init(&rt->bo, o.backoff_base_ms ? o.backoff_base_ms : 50,
	                o.backoff_cap_ms ? o.backoff_cap_ms : 2000, 0);
	rt->read_through_ms = o.read_through_ms;
	rt->rcfg = rt->cfg;
	rt->bcfg = rt->cfg;
	rt->bcfg.command_timeout_ms = rt->cfg.command_timeout_ms + SC_BELL_BLOCK;
	rt->rcfg.connect_timeout_ms = o.read_through_ms ? o.read_through_ms : 1;
	rt->rcfg.command_timeout_ms = o.read_through_ms ? o.read_through_ms : 1;
	sc_backoff_init(&rt->rbo, o.backoff_base_ms ? o.backoff_base_ms : 50,
	                o.backoff_cap_ms ? o.backoff_cap_ms : 2000, 0);
	rt->mine = ((uint64_t)c->seg.me_gen << 32) | ((uint64_t)c->seg.me_idx + 1);
	sc_hex(c->hdr->creation_id, 16, rt->origin);
	rt->row = calloc(c->dim ? c->dim : 1, sizeof(float));
	rt->rrow = calloc(c->dim ? c->dim : 1, sizeof(float));
	rt->dslot = calloc(rt->batch + 1, sizeof(uint32_t));
	rt->dseq = calloc(rt->batch + 1, sizeof(uint32_t));
	rt->qbits = calloc(((size_t)c->slots + 7) / 8, 1);
	if (fail || !rt->row || !rt->rrow || !rt->dslot || !rt->dseq || !rt->qbits ||
	    sc_rkey_build(rt->prefix, SC_RKEY_INDEX, SC_RFMT_NATIVE, NULL, 0, &rt->kindex) < 0) {
		rc = -ENOMEM;
		goto fail;
	}
	/* the event stream's name: <prefix>llm_cache_events */
	rt->kstream.data = malloc(strlen(rt->prefix) + 17);
	if (!rt->kstream.data) {
		rc = -ENOMEM;
		goto fail;
	}
	rt->kstream.len = (size_t)sprintf(rt->kstream.data, "%sllm_cache_events", rt->prefix);
	/* and the fence's: <prefix>llm_cache_fence:<origin> */
	rt->kfence.data = malloc(strlen(rt->prefix) + 16 + SC_TIER_ORIGIN_LEN + 1);
	if (!rt->kfence.data) {
		rc = -ENOMEM;
		goto fail;
	}
	rt->kfence.len = (size_t)sprintf(rt->kfence.data, "%sllm_cache_fence:%s", rt->prefix,
	                                 rt->origin);

	pthread_mutex_lock(&c->tier_mu);
	if (c->tier_rt) {
		pthread_mutex_unlock(&c->tier_mu);
		rc = -EALREADY;
		goto fail;
	}
	/* From now on writers enqueue; what the segment already holds is
	 * DIRTY (puts set it) and goes out with the first sweep. */
	uint32_t zero = 0;
	if (atomic_compare_exchange_strong_explicit(&c->hdr->tier.configured, &zero, 1,
	                                            memory_order_relaxed, memory_order_relaxed))
		atomic_store_explicit(&c->hdr->tier.sweep_wanted, 1, memory_order_relaxed);
	if ((rc = pthread_create(&rt->th, NULL, run, rt)) != 0) {
		pthread_mutex_unlock(&c->tier_mu);
		rc = -rc;
		goto fail;
	}
	if ((rc = pthread_create(&rt->bell, NULL, bell_run, rt)) != 0) {
		pthread_mutex_lock(&rt->mu);
		rt->stop = true;
		pthread_cond_broadcast(&rt->cv);
		pthread_mutex_unlock(&rt->mu);
		atomic_fetch_add_explicit(&c->hdr->tier.ob_wake, 1, memory_order_relaxed);
		sc_futex_wake_all(&c->hdr->tier.ob_wake);
		pthread_join(rt->th, NULL);
		pthread_mutex_unlock(&c->tier_mu);
		rc = -rc;
		goto fail;
	}
	c->tier_rt = rt;
	pthread_mutex_unlock(&c->tier_mu);
	return 0;
fail:
	rt_free(rt);
	return rc;
}

int semcache_tier_stop(semcache *c)
{
	if (!c)
		return -EINVAL;
	pthread_mutex_lock(&c->tier_mu);
	struct sc_tier_rt *rt = c->tier_rt;
	c->tier_rt = NULL;
	pthread_mutex_unlock(&c->tier_mu);
	if (!rt)
		return -ENOENT;
	pthread_mutex_lock(&rt->mu);
	rt->stop = true;
	pthread_cond_broadcast(&rt->cv); /* both threads may nap on it */
	pthread_mutex_unlock(&rt->mu);
	/* and out of idle_wait (a spurious wake for nobody else: only the
	 * holder sleeps there, and it re-checks) */
	atomic_fetch_add_explicit(&c->hdr->tier.ob_wake, 1, memory_order_relaxed);
	sc_futex_wake_all(&c->hdr->tier.ob_wake);
	pthread_join(rt->th, NULL);
	pthread_join(rt->bell, NULL); /* within one BLOCK (200 ms) */
	rt_free(rt);
	return 0;
}

void sc_tier_close(semcache *c)
{
	(void)semcache_tier_stop(c);
}

static const char *state_names[] = { "off", "connecting", "up", "degraded" };

int semcache_tier_stat(semcache *c, semcache_tier_stats *st)
{
	if (!c || !st)
		return -EINVAL;
	struct sc_tier *t = &c->hdr->tier;
	memset(st, 0, sizeof *st);
	st->configured = atomic_load_explicit(&t->configured, memory_order_relaxed) != 0;
	uint64_t lease = atomic_load_explicit(&t->lease, memory_order_acquire);
	bool alive = false;
	if (lease) {
		uint32_t idx = (uint32_t)lease - 1, gen = (uint32_t)(lease >> 32);
		alive = idx < c->max_procs && sc_proc_owner_alive(&c->seg, idx, gen);
	}
	int64_t hb = atomic_load_explicit(&t->heartbeat_ms, memory_order_relaxed);
	st->syncer_alive = alive && sc_mono_ms() - hb < SC_TIER_LEASE_MS;
	uint32_t s = atomic_load_explicit(&t->state, memory_order_relaxed);
	st->state = alive && s <= SC_TIER_DEGRADED ? (int)s : SEMCACHE_TIER_OFF;
	st->state_name = state_names[st->state];
	st->syncer_pid = alive ? atomic_load_explicit(&t->holder_pid, memory_order_relaxed) : 0;
	st->since_ms = atomic_load_explicit(&t->since_ms, memory_order_relaxed);
	st->last_ok_ms = atomic_load_explicit(&t->last_ok_ms, memory_order_relaxed);
	st->lag_ms = atomic_load_explicit(&t->lag_ms, memory_order_relaxed);
	st->epoch = atomic_load_explicit(&t->epoch, memory_order_relaxed);
	for (int attempt = 0; attempt < 100; attempt++) {
		uint32_t q = atomic_load_explicit(&t->err_seq, memory_order_acquire);
		if (q & 1u)
			continue;
		st->last_error = atomic_load_explicit(&t->err_class, memory_order_relaxed);
		st->last_error_ms = atomic_load_explicit(&t->err_ms, memory_order_relaxed);
		sc_seq_copy(st->last_error_text, t->err_text, sizeof st->last_error_text);
		/* acquire: the copy before the re-check */
		atomic_thread_fence(memory_order_acquire);
		if (atomic_load_explicit(&t->err_seq, memory_order_relaxed) == q)
			break;
	}
	st->last_error_text[sizeof st->last_error_text - 1] = '\0';
	for (size_t i = 0; st->last_error_text[i]; i++) /* the shared bytes are anybody's */
		if (st->last_error_text[i] < 0x20 || st->last_error_text[i] > 0x7e)
			st->last_error_text[i] = '?';
	st->last_error_class = sc_redis_class_name(st->last_error);
	uint64_t head = atomic_load_explicit(&t->ob_head, memory_order_relaxed);
	uint64_t tail = atomic_load_explicit(&t->ob_tail, memory_order_relaxed);
	st->outbox_depth = head >= tail ? head - tail : 0;
	st->outbox_capacity = c->outbox_cap;
	st->exported = atomic_load_explicit(&t->exported, memory_order_relaxed);
	st->deleted = atomic_load_explicit(&t->deleted, memory_order_relaxed);
	st->imported = atomic_load_explicit(&t->imported, memory_order_relaxed);
	st->import_deleted = atomic_load_explicit(&t->import_deleted, memory_order_relaxed);
	st->import_rejected = atomic_load_explicit(&t->import_rejected, memory_order_relaxed);
	st->reconnects = atomic_load_explicit(&t->reconnects, memory_order_relaxed);
	st->takeovers = atomic_load_explicit(&t->takeovers, memory_order_relaxed);
	st->swept = atomic_load_explicit(&t->swept, memory_order_relaxed);
	st->read_through = atomic_load_explicit(&t->read_through, memory_order_relaxed);
	st->seed_skipped = atomic_load_explicit(&t->seed_skipped, memory_order_relaxed);
	st->dropped = atomic_load_explicit(&t->dropped, memory_order_relaxed);
	st->deletes_lost = atomic_load_explicit(&t->del_overflow, memory_order_relaxed);
	st->resync_needed = atomic_load_explicit(&t->resync, memory_order_relaxed) != 0;
	st->index_trimmed = atomic_load_explicit(&t->index_trimmed, memory_order_relaxed);
	st->import_gaps = atomic_load_explicit(&t->import_gaps, memory_order_relaxed);
	st->resyncs = atomic_load_explicit(&t->resyncs, memory_order_relaxed);
	st->resync_deleted = atomic_load_explicit(&t->resync_deleted, memory_order_relaxed);
	return 0;
}
