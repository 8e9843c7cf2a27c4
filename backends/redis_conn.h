/*
 * redis_conn.h - the Redis wire layer of the second tier, internal.
 *
 * One blocking-style connection (TCP host:port or a unix socket) with two
 * deadlines: one for connecting (TCP connect + AUTH + SELECT + PING, sent
 * as one pipelined batch) and one for each batch of commands.  The
 * deadline is total, not per system call: every read and write waits in
 * poll() for what is left of it, so a server that is SIGSTOPped, or that
 * dribbles one byte at a time, makes a call fail with -ETIMEDOUT in about
 * the deadline, never hang.  After a transport failure (timeout, reset,
 * protocol garbage) the stream is desynchronised, so the connection is
 * dropped and sc_redis_reconnect() must be called; sc_backoff spaces those
 * attempts.
 *
 * Failures are classified into a few negative errno values, which is what
 * the syncer maps to tier state:
 *   -ENOTCONN    unreachable: refused, reset, closed, or no connection now
 *   -ETIMEDOUT   the deadline passed (hung server, SIGSTOP, lost packets)
 *   -EACCES      Redis refused us: NOAUTH, WRONGPASS, NOPERM, bad AUTH
 *   -ENOSPC      -OOM: Redis is at maxmemory with a no-eviction policy
 *   -EROFS       -READONLY: we are talking to a replica; -MISCONF: Redis
 *                refuses writes while it cannot persist
 *   -EAGAIN      transient server state: LOADING, BUSY, MASTERDOWN, TRYAGAIN
 *   -EPROTO      protocol garbage, or a reply of a type the command never
 *                returns (RESP3 types of hiredis 1.x included)
 *   -EREMOTEIO   any other error reply (a bug of ours or a foreign server)
 *   -ENOMEM      local allocation failed
 *   -EINVAL      bad arguments
 * The first five are connection-wide (sc_redis_class_is_down() says which
 * mean "the tier is down"); error replies are per command and leave the
 * connection usable.
 *
 * Thread safety: a connection belongs to one thread at a time (the syncer).
 * Nothing here touches signal dispositions: writes use send(MSG_NOSIGNAL),
 * so a closed socket is an error value, not a SIGPIPE in the host process.
 *
 * Written to hiredis 0.14 (Debian 12) and kept compiling against 1.x by
 * HIREDIS_MAJOR checks in redis_conn.c (built and tested against 1.2.0 by
 * hand: scripts/check-hiredis.sh).  hiredis only connects and parses
 * replies here; commands are formatted by redisFormatCommandArgv() into
 * our own buffer and written by us, so the deadline covers every byte.
 */
#ifndef SC_REDIS_CONN_H
#define SC_REDIS_CONN_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <hiredis.h>

/* Where and how to connect.  Strings are copied by sc_redis_connect(). */
typedef struct sc_redis_config {
	const char *host;          /* IP literal or name (names resolve outside the deadline) */
	int port;                  /* 1..65535, used when unix_path is NULL */
	const char *unix_path;     /* unix socket path, or NULL for TCP */
	const char *username;      /* ACL user, or NULL for the default user */
	const char *password;      /* NULL: no AUTH */
	int db;                    /* SELECT db when > 0 */
	uint32_t connect_timeout_ms;  /* connect + AUTH + SELECT + PING; 0 = 1000 */
	uint32_t command_timeout_ms;  /* each batch; 0 = 1000 */
} sc_redis_config;

typedef struct sc_redis_conn sc_redis_conn;

/* Reply types a command may be expected to return (bits). */
#define SC_RT_STRING  0x01u
#define SC_RT_STATUS  0x02u
#define SC_RT_INTEGER 0x04u
#define SC_RT_NIL     0x08u
#define SC_RT_ARRAY   0x10u

/* Longest batch; a caller with more splits it. */
#define SC_REDIS_MAX_BATCH 8192u

/*
 * Create a connection and connect it.  On success *out is a connected
 * handle.  On a connect failure (-ENOTCONN, -ETIMEDOUT, -EACCES, ...)
 * *out is still a handle, disconnected, holding the config and the error
 * (sc_redis_last_error), ready for sc_redis_reconnect(); only -EINVAL and
 * -ENOMEM leave *out NULL.  Free it with sc_redis_close().
 */
int sc_redis_connect(const sc_redis_config *cfg, sc_redis_conn **out);

/* Drop the connection, if any, and connect again with the same config. */
int sc_redis_reconnect(sc_redis_conn *c);

/* Drop the connection and forget what is queued (server-side state such
 * as WATCH or MULTI goes with it); sc_redis_reconnect() comes back. */
void sc_redis_drop(sc_redis_conn *c);

/* Free c (may be NULL). */
void sc_redis_close(sc_redis_conn *c);

bool sc_redis_connected(const sc_redis_conn *c);

/* Text of the last failure, sanitised (printable ASCII, at most 127
 * bytes): never NULL, "" when none. */
const char *sc_redis_last_error(const sc_redis_conn *c);

/*
 * Pipelining.  sc_redis_append() queues one command (binary-safe argv)
 * with the reply types it may return; sc_redis_exec() sends the queue
 * and reads one reply per command, all under one command deadline.
 *
 * exec returns 0 when every reply came back with an expected type; a
 * transport failure (-ENOTCONN, -ETIMEDOUT, -EPROTO from the reader) which
 * drops the connection; or, the transport being fine, the class of the
 * first command whose reply was an error or of an unexpected type.  In
 * every case replies[i] / rcs[i] (arrays of at least the queued count; rcs
 * may be NULL) get each command's reply and class (NULL / the transport
 * error for replies never read); free them with sc_redis_free_replies().
 * *n receives the number of commands the batch held.  The queue is empty
 * afterwards either way.
 */
int sc_redis_append(sc_redis_conn *c, unsigned expect, int argc, const char **argv,
                    const size_t *argvlen);
int sc_redis_exec(sc_redis_conn *c, redisReply **replies, int *rcs, size_t *n);
void sc_redis_free_replies(redisReply **replies, size_t n);

/* One command: append + exec.  *reply (may be NULL to discard) is the
 * reply on success, NULL otherwise.  -EBUSY while a batch is queued (a
 * command must not interleave with it). */
int sc_redis_command(sc_redis_conn *c, unsigned expect, redisReply **reply, int argc,
                     const char **argv, const size_t *argvlen);

/* Number of commands queued and not yet sent. */
size_t sc_redis_pending(const sc_redis_conn *c);

/* 0 when r is of a type in expect (SC_RT_* bits); an error reply's class
 * (as sc_redis_classify_error); -EPROTO for any other type.  For replies
 * nested in another (EXEC's array). */
int sc_redis_reply_class(const redisReply *r, unsigned expect);

/* An array reply of at most max elements, each of a type in elem_mask
 * (SC_RT_* bits).  0 or -EPROTO. */
int sc_redis_check_array(const redisReply *r, unsigned elem_mask, size_t max);

/* Class of an error reply's text (its first word): -ENOSPC, -EROFS,
 * -EACCES, -EAGAIN or -EREMOTEIO.  Exposed for the tests. */
int sc_redis_classify_error(const char *s, size_t len);

/* True for the classes that mean the tier cannot serve now (the syncer
 * marks the segment degraded and backs off): unreachable, timeout, auth,
 * OOM, readonly, protocol garbage, transient busy. */
bool sc_redis_class_is_down(int rc);

/* Short stable name of a class for `semcache stat`: "ok", "unreachable",
 * "timeout", "auth", "oom", "readonly", "busy", "protocol", "error-reply",
 * "nomem", "invalid", "other". */
const char *sc_redis_class_name(int rc);

/* ------------------------------------------------------------------------
 * Reconnect backoff: exponential with "equal jitter", capped.  Attempt k
 * (from 0) waits a uniformly random time in [d/2, d] where
 * d = min(cap, base * 2^k): never less than half the nominal delay (so a
 * dead server is not hammered) and spread over the other half (so hosts
 * that lost Redis together do not reconnect in lockstep).
 * ---------------------------------------------------------------------- */
typedef struct sc_backoff {
	uint32_t base_ms, cap_ms;
	uint32_t attempt;
	uint64_t rng;
} sc_backoff;

/* seed 0 picks one from the clock and the pid. */
void sc_backoff_init(sc_backoff *b, uint32_t base_ms, uint32_t cap_ms, uint64_t seed);
/* The delay before the next attempt, and count the attempt. */
uint32_t sc_backoff_next(sc_backoff *b);
/* After a success: the next failure starts again from base. */
void sc_backoff_reset(sc_backoff *b);

#endif
