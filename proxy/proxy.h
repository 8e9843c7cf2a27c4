/*
 * proxy.h - internal interfaces of semcache-proxy (not installed).
 *
 * semcache-proxy is an OpenAI-compatible caching HTTP proxy built on the
 * public semcache API only.  Its parts, one concept per file:
 *   main.c      the master: options, segment check, listening socket,
 *               prefork workers, restarts, SIGTERM drain, SIGHUP reload
 *   worker.c    one worker: attaches the segment, serves HTTP until told
 *               to drain
 *   config.c    the configuration (defaults, config file, command line)
 *   http.c      request handling: routes, chat completions, errors
 *   canon.c     canonical JSON, cache key, semantic scope, namespace
 *   upstream.c  the libcurl client for the upstream API
 *   sse.c       server-sent events: replay of cached answers, and
 *               reassembly of an upstream stream for storing
 *   metrics.c   counters shared by all workers, Prometheus text
 *   buf.c       a growable byte buffer
 * Every function returns 0 or a negative errno unless it says otherwise.
 */
#ifndef SEMCACHE_PROXY_H
#define SEMCACHE_PROXY_H

#include <jansson.h>
#include <microhttpd.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "semcache.h"

/* ------------------------------------------------------------------------
 * buf.c: growable byte buffer, always NUL-terminated when non-empty
 * ---------------------------------------------------------------------- */
typedef struct px_buf {
	char *p;
	size_t len, cap;
	size_t max; /* 0 = unbounded; appending past it fails with -E2BIG */
} px_buf;

int px_buf_append(px_buf *b, const void *data, size_t n);
int px_buf_puts(px_buf *b, const char *s);
int px_buf_printf(px_buf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void px_buf_free(px_buf *b);
/* Hand the bytes over (caller frees); the buffer is empty afterwards.  Never
 * NULL on success: an empty buffer yields "". */
char *px_buf_take(px_buf *b, size_t *len);

/* ------------------------------------------------------------------------
 * config.c
 * ---------------------------------------------------------------------- */
#define PX_MAX_KBS 64

typedef enum { PX_ANON_SHARE = 0, PX_ANON_NOCACHE = 1 } px_anon_policy;

typedef struct px_config {
	char listen[256];            /* HOST:PORT */
	char upstream[512];          /* base URL, e.g. http://127.0.0.1:9000/v1 */
	char path[512];              /* segment path */
	char config_file[512];       /* "" = none */
	char embedding_model[128];   /* "" = no semantic lookup */
	char user_header[128];       /* "" = only the body's `user` field */
	char upstream_api_key[256];  /* used when the client sends no Authorization */
	uint32_t embedding_dim;      /* 0 = learn from the upstream */
	uint32_t workers;            /* 0 = one per online CPU */
	uint32_t slots;              /* segment geometry on creation (0 = library default) */
	uint32_t arena_mb;
	uint32_t max_connections;    /* per worker */
	uint64_t max_body_bytes;
	uint32_t upstream_timeout_ms;
	uint32_t drain_timeout_ms;
	int64_t exact_ttl_s;         /* 0 = segment default */
	int64_t semantic_ttl_s;
	double threshold;
	px_anon_policy anonymous;
	size_t n_kbs;
	char kbs[PX_MAX_KBS][128];   /* knowledge bases with caching disabled */
} px_config;

void px_config_defaults(px_config *c);
/* Apply one "key = value" setting (the config file's and --KEY's names).
 * -EINVAL with a message in err on an unknown key or a bad value. */
int px_config_set(px_config *c, const char *key, const char *value, char *err, size_t errlen);
/* Load a config file over c.  Same error convention. */
int px_config_load(px_config *c, const char *file, char *err, size_t errlen);
/* Final checks (listen and upstream given, ...). */
int px_config_check(const px_config *c, char *err, size_t errlen);
bool px_config_kb_disabled(const px_config *c, const char *kb);

/* ------------------------------------------------------------------------
 * canon.c: canonical JSON, key, scope, namespace
 * ---------------------------------------------------------------------- */
#define PX_NS_LEN 512


typedef struct px_canon {
	char key[SEMCACHE_KEY_LEN];
	char scope[SEMCACHE_SCOPE_LEN];
	char *embed_text;   /* the last user message's text, or NULL: free() it */
	bool cacheable;     /* false: bypass (reason says why) */
	const char *reason;
	bool stream, include_usage;
	bool have_scope;    /* scope is filled in (else px_canon_scope() does it) */
	const char *raw;    /* the body as received, when the caller passed it */
	size_t raw_len;
} px_canon;

/* Key, scope (when want_scope; else later, from raw) and embedding text of a
 * parsed chat-completions body; raw is the body as received (its `cache`
 * object does not change the key), or NULL (then body is serialised).  -EINVAL with a message in err when the body is not a
 * chat-completions request (missing model or messages, wrong types). */
int px_canon_request(const json_t *body, const char *raw, size_t raw_len, bool want_scope,
                     px_canon *out, char *err, size_t errlen);
/* The semantic scope, computed on first use (an exact hit never needs it). */
int px_canon_scope(px_canon *c);
void px_canon_free(px_canon *c);
/* Namespace from the user id (may be NULL) and the ACL hash (may be NULL).
 * -EINVAL when the ACL is not a short printable token. */
int px_canon_namespace(const char *user, const char *acl, char ns[PX_NS_LEN]);
/* Lowercase hex SHA-256 of data (65 bytes with NUL). */
int px_sha256_hex(const void *data, size_t n, char out[65]);

/* ------------------------------------------------------------------------
 * metrics.c: counters in a MAP_SHARED region the master maps before fork
 * ---------------------------------------------------------------------- */
enum px_kind { PX_HIT_EXACT, PX_HIT_SEMANTIC, PX_MISS, PX_BYPASS, PX_ERROR, PX_NKINDS };
#define PX_NBUCKETS 14

typedef struct px_hist {
	_Atomic uint64_t le[PX_NBUCKETS]; /* not cumulative; summed on output */
	_Atomic uint64_t count;
	_Atomic uint64_t sum_us;
} px_hist;

typedef struct px_metrics {
	_Atomic uint64_t requests[PX_NKINDS];
	_Atomic uint64_t status[6];       /* by class: index 1..5 = 1xx..5xx */
	_Atomic uint64_t saved_tokens;
	_Atomic uint64_t saved_ms;
	_Atomic uint64_t upstream_errors;
	_Atomic uint64_t store_failures;
	_Atomic uint64_t worker_restarts;
	_Atomic uint64_t workers_alive;
	px_hist upstream_chat;
	px_hist upstream_embed;
} px_metrics;

px_metrics *px_metrics_map(void);
void px_metrics_observe(px_hist *h, double seconds);
const char *px_kind_name(enum px_kind k);
int px_metrics_render(const px_metrics *m, semcache *c, px_buf *out);

/* ------------------------------------------------------------------------
 * upstream.c: libcurl client
 * ---------------------------------------------------------------------- */
typedef enum {
	PX_UP_OK = 0,       /* an HTTP answer (any status) */
	PX_UP_DOWN = 1,     /* could not connect / transport failure: 502 */
	PX_UP_TIMEOUT = 2,  /* timed out: 504 */
	PX_UP_TOOBIG = 3,   /* answer over the size limit: 502 */
} px_up_outcome;

typedef struct px_up_result {
	px_up_outcome outcome;
	long status;
	px_buf body;
	char content_type[128];
	double seconds;
	char error[256];    /* transport error text */
} px_up_result;

int px_up_global_init(void);
/* Drop the connection pool (the master does before forking workers). */
void px_up_global_cleanup(void);
/* POST body to upstream + path ("/chat/completions").  auth: the client's
 * Authorization header value or NULL.  Returns 0 with out->outcome set, or
 * -ENOMEM. */
int px_up_post(const px_config *cfg, const char *path, const char *body, size_t len,
               const char *auth, px_up_result *out);
void px_up_result_free(px_up_result *r);

/* Streaming POST: started until the status is known. */
typedef struct px_up_stream px_up_stream;
int px_up_stream_start(const px_config *cfg, const char *path, const char *body, size_t len,
                       const char *auth, px_up_stream **out);
px_up_outcome px_up_stream_outcome(const px_up_stream *s, long *status, const char **ctype);
/* Blocking read of the next bytes: > 0 bytes, 0 end of transfer, < 0 error. */
ssize_t px_up_stream_read(px_up_stream *s, char *buf, size_t max);
/* After the end: 1 if the transfer completed cleanly. */
bool px_up_stream_ok(const px_up_stream *s);
double px_up_stream_seconds(const px_up_stream *s);
/* Rest of the body of a non-200 answer (for the error object). */
int px_up_stream_drain(px_up_stream *s, px_buf *out);
void px_up_stream_free(px_up_stream *s);

/* Embedding of text with cfg->embedding_model.  *vec malloc'd, *dim set.
 * -EIO on an upstream failure (message in err). */
int px_up_embed(const px_config *cfg, const char *text, const char *auth, float **vec,
                uint32_t *dim, double *seconds, char *err, size_t errlen);

/* ------------------------------------------------------------------------
 * sse.c
 * ---------------------------------------------------------------------- */
/* Replay a cached completion (JSON object, see http.c's record format) as
 * chat.completion.chunk events then "data: [DONE]". */
int px_sse_replay(const json_t *completion, bool include_usage, px_buf *out);

/* Reassembles an upstream SSE stream into one chat.completion object. */
typedef struct px_sse_acc px_sse_acc;
int px_sse_acc_new(px_sse_acc **out);
/* Feed raw stream bytes, any split. */
int px_sse_acc_feed(px_sse_acc *a, const char *data, size_t n);
/* The completion once "[DONE]" and a finish_reason were seen, else NULL
 * (new reference). */
json_t *px_sse_acc_result(px_sse_acc *a);
void px_sse_acc_free(px_sse_acc *a);

/* ------------------------------------------------------------------------
 * http.c / worker.c
 * ---------------------------------------------------------------------- */
typedef struct px_worker_ctx {
	const px_config *cfg;
	semcache *cache;
	px_metrics *metrics;
	uint32_t dim;       /* segment's embedding dimension, 0 = none */
	_Atomic int in_flight; /* requests being served (drain waits for 0) */
} px_worker_ctx;

/* The MHD access handler and completion callback (cls = px_worker_ctx). */
enum MHD_Result px_http_handle(void *cls, struct MHD_Connection *conn, const char *url,
                               const char *method, const char *version,
                               const char *upload_data, size_t *upload_data_size,
                               void **con_cls);
void px_http_completed(void *cls, struct MHD_Connection *conn, void **con_cls,
                       enum MHD_RequestTerminationCode toe);

/* Run one worker on the listening socket fd until SIGTERM; never returns. */
void px_worker_run(const px_config *cfg, int listen_fd, px_metrics *m, uint32_t dim)
	__attribute__((noreturn));

void px_log(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

#endif /* SEMCACHE_PROXY_H */
