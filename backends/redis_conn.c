/*
 * redis_conn.c - the Redis wire layer: connect, pipelined batches under a
 * total deadline, failure classes, reconnect backoff.
 *
 * How it works.  hiredis does two things here and no more: it opens the
 * socket (its connect calls take a timeout in 0.14 and 1.x alike) and it
 * parses replies (a redisReader of our own, fed with bytes we read).  We
 * put the socket in non-blocking mode, format commands into our own
 * buffer with redisFormatCommandArgv(), and move bytes ourselves: send()
 * with MSG_NOSIGNAL (a library must not raise SIGPIPE in its host) and
 * read(), each after a poll() bounded by what is left of the batch's
 * deadline.  So the deadline is total: hiredis's own blocking I/O applies
 * SO_RCVTIMEO per system call, which a server trickling bytes could
 * stretch without bound.  While sending a large batch we also drain
 * replies as they arrive, so neither side's socket buffer can fill and
 * stall the other.
 *
 * Why a dropped connection after any transport failure: once a deadline
 * passes mid-batch, replies to commands we gave up on may still arrive
 * and would be taken for the next batch's.  Closing is the only way to
 * resynchronise; the caller reconnects (with sc_backoff between tries).
 *
 * Untrusted replies: every reply's type is checked against what its
 * command may return; anything else, including the RESP3 types hiredis
 * 1.x can parse (DOUBLE, BOOL, MAP, SET, PUSH, ...) is -EPROTO, never
 * dereferenced as something it is not.  Reader errors (garbage bytes) are
 * -EPROTO and drop the connection, and so is a reply nested deeper than
 * 0.14's reader allows (1.x's has no bound of its own).
 */
#include "redis_conn.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define DEFAULT_TIMEOUT_MS 1000u
#define SC_REDIS_MAX_ELEMENTS (1u << 20)   /* largest array reply we accept */
/* Deepest nesting of arrays in a reply: what hiredis 0.14's reader
 * supports (an array at its ninth level is a protocol error there).  1.x's
 * reader grows its stack without a bound and builds whatever tree the
 * server describes; freeReplyObject() frees it recursively, so a reply
 * nested a million deep (4 MB of "*1\r\n") would overflow the stack. */
#define SC_REDIS_MAX_DEPTH 8

struct sc_redis_conn {
	redisContext *ctx;       /* NULL while disconnected */
	redisReader *reader;     /* our own; recreated on every connect */

	/* config, owned copies */
	char *host, *unix_path, *username, *password;
	int port, db;
	uint32_t connect_ms, command_ms;

	/* queued commands: formatted bytes and each one's expected types */
	char *out;
	size_t out_len, out_cap;
	unsigned *expect;
	size_t nq, capq;

	char err[128];
};

/* ------------------------------------------------------------------------
 * Small helpers
 * ---------------------------------------------------------------------- */

static uint64_t mono_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

/* Keep only printable ASCII of text that came from the server (or from
 * strerror): it ends up in `semcache stat` output and logs. */
static void set_err(sc_redis_conn *c, const char *what, const char *s, size_t n)
{
	size_t o = 0, wl = what ? strlen(what) : 0;

	for (size_t i = 0; i < wl && o + 1 < sizeof c->err; i++)
		c->err[o++] = what[i];
	if (wl && s && o + 2 < sizeof c->err) {
		c->err[o++] = ':';
		c->err[o++] = ' ';
	}
	for (size_t i = 0; s && i < n && o + 1 < sizeof c->err; i++) {
		unsigned char ch = (unsigned char)s[i];
		c->err[o++] = ch >= 0x20 && ch < 0x7f ? (char)ch : '?';
	}
	c->err[o] = '\0';
}

static char *dup_opt(const char *s, int *fail)
{
	char *d;

	if (!s)
		return NULL;
	d = strdup(s);
	if (!d)
		*fail = 1;
	return d;
}

/* ------------------------------------------------------------------------
 * Classification
 * ---------------------------------------------------------------------- */

/* The first word of an error reply names its kind (Redis's convention
 * since 2.6: "-OOM command not allowed...", "-WRONGPASS invalid...").
 * Pre-6 servers said "-ERR invalid password" and "-ERR AUTH <password>
 * called without any password configured", both refusals of our AUTH. */
int sc_redis_classify_error(const char *s, size_t len)
{
	static const struct { const char *word; int rc; } words[] = {
		{ "OOM", -ENOSPC },       { "READONLY", -EROFS },
		{ "MISCONF", -EROFS },  /* writes refused: persistence is failing */
		{ "NOAUTH", -EACCES },    { "WRONGPASS", -EACCES },
		{ "NOPERM", -EACCES },    { "LOADING", -EAGAIN },
		{ "BUSY", -EAGAIN },      { "MASTERDOWN", -EAGAIN },
		{ "TRYAGAIN", -EAGAIN },  { "CLUSTERDOWN", -EAGAIN },
	};
	size_t w = 0;

	if (!s)
		return -EREMOTEIO;
	while (w < len && s[w] != ' ')
		w++;
	for (size_t i = 0; i < sizeof words / sizeof words[0]; i++)
		if (strlen(words[i].word) == w && memcmp(s, words[i].word, w) == 0)
			return words[i].rc;
	if ((len >= 20 && memcmp(s, "ERR invalid password", 20) == 0) ||
	    (len >= 8 && memcmp(s, "ERR AUTH", 8) == 0) ||
	    (len >= 33 && memcmp(s, "ERR invalid username-password pair", 33) == 0))
		return -EACCES;
	return -EREMOTEIO;
}

bool sc_redis_class_is_down(int rc)
{
	switch (rc) {
	case -ENOTCONN: case -ETIMEDOUT: case -EACCES: case -ENOSPC: case -EROFS:
	case -EPROTO: case -EAGAIN:
		return true;
	default:
		return false;
	}
}

const char *sc_redis_class_name(int rc)
{
	switch (rc) {
	case 0:           return "ok";
	case -ENOTCONN:   return "unreachable";
	case -ETIMEDOUT:  return "timeout";
	case -EACCES:     return "auth";
	case -ENOSPC:     return "oom";
	case -EROFS:      return "readonly";
	case -EAGAIN:     return "busy";
	case -EPROTO:     return "protocol";
	case -EREMOTEIO:  return "error-reply";
	case -ENOMEM:     return "nomem";
	case -EINVAL:     return "invalid";
	default:          return "other";
	}
}

/* 0 when r is of a type in expect; an error reply's class; -EPROTO for
 * anything else (unknown types included). */
static int reply_class(const redisReply *r, unsigned expect)
{
	unsigned bit;

	if (!r)
		return -EPROTO;
	switch (r->type) {
	case REDIS_REPLY_ERROR:
		return sc_redis_classify_error(r->str, r->str ? r->len : 0);
	case REDIS_REPLY_STRING:
		if (r->len && !r->str)
			return -EPROTO;
		bit = SC_RT_STRING;
		break;
	case REDIS_REPLY_STATUS:
		if (r->len && !r->str)
			return -EPROTO;
		bit = SC_RT_STATUS;
		break;
	case REDIS_REPLY_INTEGER:
		bit = SC_RT_INTEGER;
		break;
	case REDIS_REPLY_NIL:
		bit = SC_RT_NIL;
		break;
	case REDIS_REPLY_ARRAY:
		if (r->elements && !r->element)
			return -EPROTO;
		bit = SC_RT_ARRAY;
		break;
	default:
		/* hiredis 1.x's RESP3 types, or anything a later one adds: we
		 * never ask for RESP3 (no HELLO 3), so such a reply is garbage. */
		return -EPROTO;
	}
	return (expect & bit) ? 0 : -EPROTO;
}

int sc_redis_reply_class(const redisReply *r, unsigned expect)
{
	return reply_class(r, expect);
}

/* True when r nests an array (or, in 1.x, any aggregate) more than
 * levels deep below its top.  The recursion is bounded by levels. */
static bool nests_deeper(const redisReply *r, int levels)
{
	if (!r || (r->type != REDIS_REPLY_ARRAY && !r->element))
		return false; /* not an aggregate */
	if (levels == 0)
		return true;
	for (size_t i = 0; r->element && i < r->elements; i++)
		if (nests_deeper(r->element[i], levels - 1))
			return true;
	return false;
}

int sc_redis_check_array(const redisReply *r, unsigned elem_mask, size_t max)
{
	if (reply_class(r, SC_RT_ARRAY) || r->elements > max)
		return -EPROTO;
	for (size_t i = 0; i < r->elements; i++)
		if (reply_class(r->element[i], elem_mask))
			return -EPROTO;
	return 0;
}

/* ------------------------------------------------------------------------
 * Connection
 * ---------------------------------------------------------------------- */

static void drop(sc_redis_conn *c)
{
	if (c->ctx)
		redisFree(c->ctx);
	c->ctx = NULL;
	if (c->reader)
		redisReaderFree(c->reader);
	c->reader = NULL;
}

static void clear_queue(sc_redis_conn *c)
{
	c->out_len = 0;
	c->nq = 0;
}

/* Wait until fd is ready for events or the deadline passes. */
static int wait_fd(int fd, short events, uint64_t deadline, short *revents)
{
	for (;;) {
		uint64_t now = mono_ns();
		struct pollfd p = { .fd = fd, .events = events };
		int ms, n;

		if (now >= deadline)
			return -ETIMEDOUT;
		/* Round up, so a sub-millisecond remainder still waits. */
		ms = (int)((deadline - now + 999999u) / 1000000u);
		n = poll(&p, 1, ms);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return -errno;
		if (n > 0) {
			*revents = p.revents;
			return 0;
		}
	}
}

/* Read what the socket has into the reader.  0, or -ENOTCONN on EOF or a
 * socket error. */
static int read_some(sc_redis_conn *c)
{
	char buf[16384];
	ssize_t n;

	for (;;) {
		n = read(c->ctx->fd, buf, sizeof buf);
		if (n > 0)
			break;
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
			return 0; /* woken for nothing: wait again */
		if (n == 0) {
			set_err(c, "connection closed by server", NULL, 0);
		} else {
			const char *e = strerror(errno);
			set_err(c, "read", e, strlen(e));
		}
		return -ENOTCONN;
	}
	if (redisReaderFeed(c->reader, buf, (size_t)n) != REDIS_OK)
		return -ENOMEM;
	return 0;
}

/*
 * Send the queue and read its replies before deadline.  Fills replies and
 * rcs for the commands read; returns the transport result (0, -ETIMEDOUT,
 * -ENOTCONN, -EPROTO, -ENOMEM) and leaves per-reply classes in rcs.
 */
static int transfer(sc_redis_conn *c, uint64_t deadline, redisReply **replies, int *rcs,
                    size_t n)
{
	size_t sent = 0, got = 0;
	int rc = 0;

	while (got < n) {
		short ev = 0, want = POLLIN;
		void *r = NULL;

		/* Parse whatever the reader already holds first. */
		if (redisReaderGetReply(c->reader, &r) != REDIS_OK) {
			set_err(c, "protocol", c->reader->errstr, strlen(c->reader->errstr));
			rc = c->reader->err == REDIS_ERR_OOM ? -ENOMEM : -EPROTO;
			break;
		}
		/* Nesting is checked as the reader goes (its task index is
		 * the depth it is at) and on every finished reply, so what we
		 * ever hold (and free) is at most one read's worth deeper than
		 * the bound: a 16 KB read nests 4096 levels at most. */
		if (r && nests_deeper(r, SC_REDIS_MAX_DEPTH)) {
			replies[got] = r;
			rcs[got++] = -EPROTO;
			r = NULL;
			rc = -EPROTO;
		} else if (!r && c->reader->ridx > SC_REDIS_MAX_DEPTH) {
			rc = -EPROTO;
		}
		if (rc) {
			set_err(c, "protocol: reply nested too deep", NULL, 0);
			break;
		}
		if (r) {
			replies[got] = r;
			rcs[got] = reply_class(r, c->expect[got]);
			got++;
			continue;
		}
		if (sent < c->out_len)
			want |= POLLOUT;
		rc = wait_fd(c->ctx->fd, want, deadline, &ev);
		if (rc) {
			if (rc == -ETIMEDOUT)
				set_err(c, "deadline passed", NULL, 0);
			break;
		}
		if ((ev & POLLOUT) && sent < c->out_len) {
			ssize_t w = send(c->ctx->fd, c->out + sent, c->out_len - sent, MSG_NOSIGNAL);

			if (w > 0) {
				sent += (size_t)w;
			} else if (w < 0 && errno != EINTR && errno != EAGAIN && errno != EWOULDBLOCK) {
				const char *e = strerror(errno);
				set_err(c, "send", e, strlen(e));
				rc = -ENOTCONN;
				break;
			}
		}
		/* POLLHUP/POLLERR: read() reports the EOF or the error. */
		if (ev & (POLLIN | POLLHUP | POLLERR)) {
			rc = read_some(c);
			if (rc)
				break;
		}
	}
	/* A server that answered more than we asked, or before it had the
	 * whole batch, is out of step with us: what it says next would be
	 * taken for the next batch's replies. */
	if (rc == 0 && (sent < c->out_len || c->reader->pos < c->reader->len)) {
		set_err(c, "protocol: replies out of step with commands", NULL, 0);
		rc = -EPROTO;
	}
	for (size_t i = got; i < n; i++) {
		replies[i] = NULL;
		rcs[i] = rc;
	}
	return rc;
}

/* Run the queue under deadline; the common body of exec and connect. */
static int run(sc_redis_conn *c, uint64_t deadline, redisReply **replies, int *rcs, size_t *np)
{
	size_t n = c->nq;
	int rc = 0;

	*np = n;
	if (!c->ctx) {
		for (size_t i = 0; i < n; i++) {
			replies[i] = NULL;
			rcs[i] = -ENOTCONN;
		}
		rc = -ENOTCONN;
		if (!c->err[0])
			set_err(c, "not connected", NULL, 0);
		goto out;
	}
	rc = transfer(c, deadline, replies, rcs, n);
	if (rc) {
		drop(c);
		goto out;
	}
	for (size_t i = 0; i < n; i++)
		if (rcs[i]) {
			rc = rcs[i];
			if (replies[i] && replies[i]->type == REDIS_REPLY_ERROR)
				set_err(c, NULL, replies[i]->str, replies[i]->len);
			else
				set_err(c, "unexpected reply type", NULL, 0);
			break;
		}
out:
	clear_queue(c);
	return rc;
}

/* hiredis's own connect failure: a timeout, else unreachable. */
static int connect_class(const redisContext *ctx)
{
#ifdef REDIS_ERR_TIMEOUT
	if (ctx->err == REDIS_ERR_TIMEOUT) /* hiredis >= 1.0.1 */
		return -ETIMEDOUT;
#endif
	if (ctx->err == REDIS_ERR_OOM)
		return -ENOMEM;
	if (ctx->err == REDIS_ERR_IO &&
	    (strstr(ctx->errstr, "timed out") || strstr(ctx->errstr, "Timeout")))
		return -ETIMEDOUT;
	return -ENOTCONN;
}

static struct timeval tv_ms(uint32_t ms)
{
	struct timeval tv = { (time_t)(ms / 1000u), (suseconds_t)(ms % 1000u) * 1000 };
	return tv;
}

static int do_connect(sc_redis_conn *c)
{
	uint64_t deadline = mono_ns() + (uint64_t)c->connect_ms * 1000000u;
	struct timeval ctv = tv_ms(c->connect_ms);
	redisReply *rep[3] = { NULL, NULL, NULL };
	int rcs[3], rc, fl;
	size_t n = 0;
	char dbs[16];

	drop(c);
	clear_queue(c);
	c->err[0] = '\0';

#if HIREDIS_MAJOR >= 1
	redisOptions o;
	memset(&o, 0, sizeof o);
	/* Braces: in 1.0.0 these macros are bare statement lists. */
	if (c->unix_path) {
		REDIS_OPTIONS_SET_UNIX(&o, c->unix_path);
	} else {
		REDIS_OPTIONS_SET_TCP(&o, c->host, c->port);
	}
	o.connect_timeout = &ctv;
	c->ctx = redisConnectWithOptions(&o);
#else
	c->ctx = c->unix_path ? redisConnectUnixWithTimeout(c->unix_path, ctv)
	                      : redisConnectWithTimeout(c->host, c->port, ctv);
#endif
	if (!c->ctx) {
		set_err(c, "connect: out of memory", NULL, 0);
		return -ENOMEM;
	}
	if (c->ctx->err) {
		rc = connect_class(c->ctx);
		set_err(c, "connect", c->ctx->errstr, strlen(c->ctx->errstr));
		drop(c);
		return rc;
	}
	c->reader = redisReaderCreate();
#if HIREDIS_MAJOR > 1 || (HIREDIS_MAJOR == 1 && (HIREDIS_MINOR > 0 || HIREDIS_PATCH >= 1))
	/* 1.0.1 caps the element count a reply may declare before the reader
	 * allocates for it; 0.14 has no such cap and allocates what the
	 * server claims (the server is the one we configured, the values in
	 * it are what we do not trust). */
	if (c->reader)
		c->reader->maxelements = SC_REDIS_MAX_ELEMENTS;
#endif
	fl = fcntl(c->ctx->fd, F_GETFL);
	if (!c->reader || fl < 0 || fcntl(c->ctx->fd, F_SETFL, fl | O_NONBLOCK) < 0) {
		rc = c->reader ? -errno : -ENOMEM;
		set_err(c, "connect: setting up the socket failed", NULL, 0);
		drop(c);
		return rc;
	}

	/* The handshake is one pipelined batch: AUTH, SELECT, then PING, which
	 * proves the server talks to us (a password-protected server answers
	 * -NOAUTH to a client that has none). */
	if (c->password) {
		const char *av[3] = { "AUTH", c->username ? c->username : c->password, c->password };
		rc = sc_redis_append(c, SC_RT_STATUS, c->username ? 3 : 2, av, NULL);
		if (rc)
			goto fail;
	}
	if (c->db > 0) {
		const char *av[2] = { "SELECT", dbs };
		snprintf(dbs, sizeof dbs, "%d", c->db);
		rc = sc_redis_append(c, SC_RT_STATUS, 2, av, NULL);
		if (rc)
			goto fail;
	}
	{
		const char *av[1] = { "PING" };
		rc = sc_redis_append(c, SC_RT_STATUS, 1, av, NULL);
		if (rc)
			goto fail;
	}
	rc = run(c, deadline, rep, rcs, &n);
	if (rc == 0 && (rep[n - 1]->len != 4 || memcmp(rep[n - 1]->str, "PONG", 4) != 0)) {
		set_err(c, "PING answered something other than PONG", NULL, 0);
		rc = -EPROTO;
	}
	sc_redis_free_replies(rep, n);
	if (rc)
		goto fail;
	return 0;
fail:
	clear_queue(c);
	drop(c);
	return rc;
}

int sc_redis_connect(const sc_redis_config *cfg, sc_redis_conn **out)
{
	sc_redis_conn *c;
	int fail = 0;

	if (!out)
		return -EINVAL;
	*out = NULL;
	if (!cfg || (!cfg->unix_path && (!cfg->host || cfg->port <= 0 || cfg->port > 65535)) ||
	    cfg->db < 0 || (cfg->username && !cfg->password))
		return -EINVAL;
	c = calloc(1, sizeof *c);
	if (!c)
		return -ENOMEM;
	c->host = dup_opt(cfg->host, &fail);
	c->unix_path = dup_opt(cfg->unix_path, &fail);
	c->username = dup_opt(cfg->username, &fail);
	c->password = dup_opt(cfg->password, &fail);
	if (fail) {
		sc_redis_close(c);
		return -ENOMEM;
	}
	c->port = cfg->port;
	c->db = cfg->db;
	c->connect_ms = cfg->connect_timeout_ms ? cfg->connect_timeout_ms : DEFAULT_TIMEOUT_MS;
	c->command_ms = cfg->command_timeout_ms ? cfg->command_timeout_ms : DEFAULT_TIMEOUT_MS;
	*out = c;
	return do_connect(c);
}

void sc_redis_drop(sc_redis_conn *c)
{
	if (!c)
		return;
	drop(c);
	clear_queue(c); /* the last error stays: it says why */
}

int sc_redis_reconnect(sc_redis_conn *c)
{
	if (!c)
		return -EINVAL;
	return do_connect(c);
}

void sc_redis_close(sc_redis_conn *c)
{
	if (!c)
		return;
	drop(c);
	free(c->host);
	free(c->unix_path);
	free(c->username);
	if (c->password) {
		/* Do not leave the secret in freed heap memory. */
		explicit_bzero(c->password, strlen(c->password));
		free(c->password);
	}
	free(c->out);
	free(c->expect);
	free(c);
}

bool sc_redis_connected(const sc_redis_conn *c)
{
	return c && c->ctx;
}

const char *sc_redis_last_error(const sc_redis_conn *c)
{
	return c ? c->err : "";
}

/* ------------------------------------------------------------------------
 * Batches
 * ---------------------------------------------------------------------- */

int sc_redis_append(sc_redis_conn *c, unsigned expect, int argc, const char **argv,
                    const size_t *argvlen)
{
	char *cmd = NULL;
	long long len; /* int in 0.14, long long in 1.x */

	if (!c || argc <= 0 || !argv || !expect)
		return -EINVAL;
	if (c->nq >= SC_REDIS_MAX_BATCH)
		return -E2BIG;
	if (c->nq == c->capq) {
		size_t cap = c->capq ? c->capq * 2 : 16;
		unsigned *e = realloc(c->expect, cap * sizeof *e);

		if (!e)
			return -ENOMEM;
		c->expect = e;
		c->capq = cap;
	}
	/* argvlen NULL: every argument is a C string (hiredis uses strlen). */
	len = redisFormatCommandArgv(&cmd, argc, argv, argvlen);
	if (len < 0 || !cmd)
		return -ENOMEM;
	if ((unsigned long long)len > SIZE_MAX - c->out_len) {
		redisFreeCommand(cmd);
		return -E2BIG;
	}
	if (c->out_len + (size_t)len > c->out_cap) {
		size_t cap = c->out_cap ? c->out_cap : 4096;
		char *o;

		while (cap < c->out_len + (size_t)len)
			cap *= 2;
		o = realloc(c->out, cap);
		if (!o) {
			redisFreeCommand(cmd);
			return -ENOMEM;
		}
		c->out = o;
		c->out_cap = cap;
	}
	memcpy(c->out + c->out_len, cmd, (size_t)len);
	c->out_len += (size_t)len;
	redisFreeCommand(cmd);
	c->expect[c->nq++] = expect;
	return 0;
}

size_t sc_redis_pending(const sc_redis_conn *c)
{
	return c ? c->nq : 0;
}

int sc_redis_exec(sc_redis_conn *c, redisReply **replies, int *rcs, size_t *n)
{
	int *tmp = NULL, rc;
	size_t dummy;

	if (!n)
		n = &dummy;
	*n = 0;
	if (!c || !replies)
		return -EINVAL;
	if (!rcs) {
		tmp = malloc((c->nq ? c->nq : 1) * sizeof *tmp);
		if (!tmp) {
			/* the whole connection, not just the queue: a WATCH or
			 * MULTI sent before must not stay on it */
			drop(c);
			clear_queue(c);
			set_err(c, "out of memory", NULL, 0);
			return -ENOMEM;
		}
		rcs = tmp;
	}
	rc = run(c, mono_ns() + (uint64_t)c->command_ms * 1000000u, replies, rcs, n);
	free(tmp);
	return rc;
}

void sc_redis_free_replies(redisReply **replies, size_t n)
{
	for (size_t i = 0; replies && i < n; i++) {
		if (replies[i])
			freeReplyObject(replies[i]);
		replies[i] = NULL;
	}
}

int sc_redis_command(sc_redis_conn *c, unsigned expect, redisReply **reply, int argc,
                     const char **argv, const size_t *argvlen)
{
	redisReply *r = NULL;
	size_t n = 0;
	int rcs[1], rc;

	if (reply)
		*reply = NULL;
	if (!c)
		return -EINVAL;
	if (c->nq)
		return -EBUSY; /* a batch is being built: do not interleave */
	rc = sc_redis_append(c, expect, argc, argv, argvlen);
	if (rc)
		return rc;
	rc = sc_redis_exec(c, &r, rcs, &n);
	if (rc == 0 && reply)
		*reply = r;
	else
		sc_redis_free_replies(&r, n);
	return rc;
}

/* ------------------------------------------------------------------------
 * Backoff
 * ---------------------------------------------------------------------- */

static uint64_t splitmix(uint64_t *s)
{
	uint64_t z = (*s += 0x9e3779b97f4a7c15ull);

	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
	return z ^ (z >> 31);
}

void sc_backoff_init(sc_backoff *b, uint32_t base_ms, uint32_t cap_ms, uint64_t seed)
{
	if (!seed)
		seed = mono_ns() ^ ((uint64_t)getpid() << 32);
	b->base_ms = base_ms ? base_ms : 1;
	b->cap_ms = cap_ms < b->base_ms ? b->base_ms : cap_ms;
	b->attempt = 0;
	b->rng = seed;
}

uint32_t sc_backoff_next(sc_backoff *b)
{
	uint64_t d = b->base_ms;

	/* Doubling stops at the cap, so the shift never overflows. */
	for (uint32_t i = 0; i < b->attempt && d < b->cap_ms; i++)
		d *= 2;
	if (d > b->cap_ms)
		d = b->cap_ms;
	if (b->attempt < UINT32_MAX)
		b->attempt++;
	return (uint32_t)(d - d / 2 + splitmix(&b->rng) % (d / 2 + 1));
}

void sc_backoff_reset(sc_backoff *b)
{
	b->attempt = 0;
}
