/*
 * upstream.c - the HTTP client for the upstream OpenAI-compatible API.
 *
 * One libcurl easy handle per call (workers serve each connection on its
 * own thread, and a handle must not be shared between threads).  The
 * upstream URL is a base like OpenAI's ("http://host:port/v1"): paths such
 * as "/chat/completions" and "/embeddings" are appended.  The client's
 * Authorization header is passed on; when the client sent none, the
 * configured upstream_api_key is used.
 *
 * Outcomes are classified once, here, so callers map them to statuses
 * without looking at curl: an HTTP answer of any status is PX_UP_OK (the
 * caller passes errors through), a refused or broken connection is
 * PX_UP_DOWN (502), a timeout PX_UP_TIMEOUT (504), an answer over 64 MiB
 * PX_UP_TOOBIG (502).
 *
 * Timeouts: a plain call must complete within upstream_timeout_ms; a stream
 * must send its status within it and never fall silent for longer (curl's
 * low-speed limit, in whole seconds, at least 1), however long it lasts.
 *
 * Streaming uses the multi interface on one easy handle: start drives the
 * transfer until the status line and headers are in (so the caller can
 * still choose the HTTP status it answers with), then each read drives it
 * until some body bytes are buffered or the transfer ends.  The caller's
 * thread blocks in curl_multi_poll meanwhile, which is how the proxy passes
 * a stream through as it arrives without a thread of its own.
 */
#include <curl/curl.h>
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "proxy.h"

#define UP_MAX_ANSWER (64u << 20)

/* One connection pool per process, shared by every call's easy handle, so
 * calls reuse kept-alive upstream connections instead of paying a TCP (and
 * TLS) handshake each.  libcurl serialises access through these locks, one
 * mutex per kind of shared data. */
static CURLSH *g_share;
static pthread_mutex_t g_share_locks[CURL_LOCK_DATA_LAST];

static void share_lock(CURL *e, curl_lock_data d, curl_lock_access a, void *arg)
{
	(void)e;
	(void)a;
	(void)arg;
	if ((unsigned)d < CURL_LOCK_DATA_LAST)
		pthread_mutex_lock(&g_share_locks[d]);
}

static void share_unlock(CURL *e, curl_lock_data d, void *arg)
{
	(void)e;
	(void)arg;
	if ((unsigned)d < CURL_LOCK_DATA_LAST)
		pthread_mutex_unlock(&g_share_locks[d]);
}

void px_up_global_cleanup(void)
{
	if (g_share)
		curl_share_cleanup(g_share);
	g_share = NULL;
	curl_global_cleanup();
}

/* Call once per process, before any thread makes calls (a worker calls it
 * after fork: a pool inherited from the master would share its sockets). */
int px_up_global_init(void)
{
	if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK)
		return -ENOMEM;
	for (int i = 0; i < CURL_LOCK_DATA_LAST; i++)
		pthread_mutex_init(&g_share_locks[i], NULL);
	g_share = curl_share_init();
	if (!g_share)
		return -ENOMEM;
	if (curl_share_setopt(g_share, CURLSHOPT_LOCKFUNC, share_lock) != CURLSHE_OK ||
	    curl_share_setopt(g_share, CURLSHOPT_UNLOCKFUNC, share_unlock) != CURLSHE_OK ||
	    curl_share_setopt(g_share, CURLSHOPT_SHARE, CURL_LOCK_DATA_CONNECT) != CURLSHE_OK ||
	    curl_share_setopt(g_share, CURLSHOPT_SHARE, CURL_LOCK_DATA_DNS) != CURLSHE_OK) {
		curl_share_cleanup(g_share);
		g_share = NULL; /* calls still work, each on its own connection */
	}
	return 0;
}

static double now_s(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static size_t on_body(char *p, size_t size, size_t n, void *arg)
{
	px_buf *b = arg;

	if (px_buf_append(b, p, size * n))
		return 0; /* makes curl fail with CURLE_WRITE_ERROR */
	return size * n;
}

static px_up_outcome classify(CURLcode cc)
{
	switch (cc) {
	case CURLE_OK:
		return PX_UP_OK;
	case CURLE_OPERATION_TIMEDOUT:
		return PX_UP_TIMEOUT;
	case CURLE_WRITE_ERROR:
		return PX_UP_TOOBIG;
	default:
		return PX_UP_DOWN;
	}
}

/* A configured easy handle for POST base+path; *hdrs to free. */
static CURL *make_handle(const px_config *cfg, const char *path, const char *body, size_t len,
                         const char *auth, struct curl_slist **hdrs, char *errbuf)
{
	char url[1024], authz[600];
	struct curl_slist *h = NULL, *t;
	size_t blen = strlen(cfg->upstream);
	CURL *e;

	if (blen && cfg->upstream[blen - 1] == '/')
		blen--;
	if ((size_t)snprintf(url, sizeof url, "%.*s%s", (int)blen, cfg->upstream, path) >=
	    sizeof url)
		return NULL;
	e = curl_easy_init();
	if (!e)
		return NULL;
	t = curl_slist_append(h, "Content-Type: application/json");
	if (t)
		h = t;
	t = t ? curl_slist_append(h, "Expect:") : NULL; /* no 100-continue round trip */
	if (t)
		h = t;
	if (t && auth && *auth) {
		snprintf(authz, sizeof authz, "Authorization: %s", auth);
		t = curl_slist_append(h, authz);
	} else if (t && cfg->upstream_api_key[0]) {
		snprintf(authz, sizeof authz, "Authorization: Bearer %s", cfg->upstream_api_key);
		t = curl_slist_append(h, authz);
	}
	if (!t) {
		curl_slist_free_all(h);
		curl_easy_cleanup(e);
		return NULL;
	}
	h = t;
	curl_easy_setopt(e, CURLOPT_URL, url);
	curl_easy_setopt(e, CURLOPT_POST, 1L);
	curl_easy_setopt(e, CURLOPT_POSTFIELDS, body);
	curl_easy_setopt(e, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)len);
	curl_easy_setopt(e, CURLOPT_HTTPHEADER, h);
	curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L);
	curl_easy_setopt(e, CURLOPT_TIMEOUT_MS, (long)cfg->upstream_timeout_ms);
	curl_easy_setopt(e, CURLOPT_CONNECTTIMEOUT_MS,
	                 (long)(cfg->upstream_timeout_ms < 10000 ? cfg->upstream_timeout_ms : 10000));
	curl_easy_setopt(e, CURLOPT_ERRORBUFFER, errbuf);
	curl_easy_setopt(e, CURLOPT_PROTOCOLS_STR, "http,https");
	curl_easy_setopt(e, CURLOPT_FOLLOWLOCATION, 0L);
	curl_easy_setopt(e, CURLOPT_USERAGENT, "semcache-proxy/" "0.1");
	if (g_share)
		curl_easy_setopt(e, CURLOPT_SHARE, g_share);
	*hdrs = h;
	return e;
}

static void read_ctype(CURL *e, char *dst, size_t cap)
{
	char *ct = NULL;

	dst[0] = '\0';
	if (curl_easy_getinfo(e, CURLINFO_CONTENT_TYPE, &ct) == CURLE_OK && ct)
		snprintf(dst, cap, "%s", ct);
}

int px_up_post(const px_config *cfg, const char *path, const char *body, size_t len,
               const char *auth, px_up_result *out)
{
	struct curl_slist *hdrs = NULL;
	char errbuf[CURL_ERROR_SIZE] = "";
	double t0 = now_s();
	CURLcode cc;
	CURL *e;

	memset(out, 0, sizeof *out);
	out->body.max = UP_MAX_ANSWER;
	e = make_handle(cfg, path, body, len, auth, &hdrs, errbuf);
	if (!e)
		return -ENOMEM;
	curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, on_body);
	curl_easy_setopt(e, CURLOPT_WRITEDATA, &out->body);
	cc = curl_easy_perform(e);
	out->seconds = now_s() - t0;
	out->outcome = classify(cc);
	if (cc == CURLE_OK) {
		curl_easy_getinfo(e, CURLINFO_RESPONSE_CODE, &out->status);
		read_ctype(e, out->content_type, sizeof out->content_type);
	} else {
		snprintf(out->error, sizeof out->error, "%s",
		         errbuf[0] ? errbuf : curl_easy_strerror(cc));
	}
	curl_slist_free_all(hdrs);
	curl_easy_cleanup(e);
	return 0;
}

void px_up_result_free(px_up_result *r)
{
	px_buf_free(&r->body);
}

/* ------------------------------------------------------------------------
 * Streaming
 * ---------------------------------------------------------------------- */
struct px_up_stream {
	CURLM *multi;
	CURL *easy;
	struct curl_slist *hdrs;
	px_buf data;        /* received, not yet read */
	size_t off;         /* read position in data */
	bool headers_done, done;
	CURLcode result;
	long status;
	char ctype[128];
	char errbuf[CURL_ERROR_SIZE];
	double t0, t1;
	double header_deadline; /* the status must arrive before this */
};

static size_t on_header(char *p, size_t size, size_t n, void *arg)
{
	px_up_stream *s = arg;
	size_t len = size * n;

	if (len <= 2 && (len == 0 || p[0] == '\r' || p[0] == '\n')) {
		long code = 0;

		curl_easy_getinfo(s->easy, CURLINFO_RESPONSE_CODE, &code);
		if (code >= 200) /* not the blank line after a 100 Continue */
			s->headers_done = true;
	}
	return len;
}

static size_t on_stream_body(char *p, size_t size, size_t n, void *arg)
{
	px_up_stream *s = arg;

	s->headers_done = true;
	if (s->off == s->data.len) { /* all read: restart at the front */
		s->off = 0;
		s->data.len = 0;
	}
	if (px_buf_append(&s->data, p, size * n))
		return 0;
	return size * n;
}

/* Run the transfer until stop(s) or the end. */
static void drive(px_up_stream *s, bool (*stop)(const px_up_stream *))
{
	while (!s->done && !stop(s)) {
		int running = 0, left = 0;
		CURLMsg *msg;

		if (curl_multi_perform(s->multi, &running) != CURLM_OK) {
			s->done = true;
			s->result = CURLE_FAILED_INIT;
			break;
		}
		while ((msg = curl_multi_info_read(s->multi, &left)))
			if (msg->msg == CURLMSG_DONE) {
				s->done = true;
				s->result = msg->data.result;
			}
		if (s->done || stop(s))
			break;
		if (!s->headers_done && now_s() > s->header_deadline) {
			s->done = true;
			s->result = CURLE_OPERATION_TIMEDOUT;
			snprintf(s->errbuf, sizeof s->errbuf, "no answer within the timeout");
			break;
		}
		curl_multi_poll(s->multi, NULL, 0, 100, NULL);
	}
	if (s->done && !s->t1)
		s->t1 = now_s();
}

static bool have_headers(const px_up_stream *s)
{
	return s->headers_done;
}

static bool have_data(const px_up_stream *s)
{
	return s->off < s->data.len;
}

int px_up_stream_start(const px_config *cfg, const char *path, const char *body, size_t len,
                       const char *auth, px_up_stream **out)
{
	px_up_stream *s = calloc(1, sizeof *s);
	int rc = -ENOMEM;

	*out = NULL;
	if (!s)
		return -ENOMEM;
	s->data.max = UP_MAX_ANSWER;
	s->t0 = now_s();
	s->multi = curl_multi_init();
	s->easy = make_handle(cfg, path, body, len, auth, &s->hdrs, s->errbuf);
	if (!s->multi || !s->easy)
		goto out;
	/* A stream may rightly last longer than any total timeout: bound the
	 * wait for the status instead, and each silence between bytes. */
	s->header_deadline = s->t0 + cfg->upstream_timeout_ms / 1e3;
	curl_easy_setopt(s->easy, CURLOPT_TIMEOUT_MS, 0L);
	curl_easy_setopt(s->easy, CURLOPT_LOW_SPEED_LIMIT, 1L);
	curl_easy_setopt(s->easy, CURLOPT_LOW_SPEED_TIME,
	                 (long)(cfg->upstream_timeout_ms < 1000 ? 1 : cfg->upstream_timeout_ms / 1000));
	curl_easy_setopt(s->easy, CURLOPT_WRITEFUNCTION, on_stream_body);
	curl_easy_setopt(s->easy, CURLOPT_WRITEDATA, s);
	curl_easy_setopt(s->easy, CURLOPT_HEADERFUNCTION, on_header);
	curl_easy_setopt(s->easy, CURLOPT_HEADERDATA, s);
	if (curl_multi_add_handle(s->multi, s->easy) != CURLM_OK)
		goto out;
	drive(s, have_headers);
	if (s->headers_done || s->result == CURLE_OK) {
		curl_easy_getinfo(s->easy, CURLINFO_RESPONSE_CODE, &s->status);
		read_ctype(s->easy, s->ctype, sizeof s->ctype);
	}
	*out = s;
	s = NULL;
	rc = 0;
out:
	px_up_stream_free(s);
	return rc;
}

px_up_outcome px_up_stream_outcome(const px_up_stream *s, long *status, const char **ctype)
{
	*status = s->status;
	*ctype = s->ctype;
	if (s->headers_done)
		return PX_UP_OK;
	return classify(s->result == CURLE_OK ? CURLE_RECV_ERROR : s->result);
}

ssize_t px_up_stream_read(px_up_stream *s, char *buf, size_t max)
{
	size_t n;

	drive(s, have_data);
	if (!have_data(s))
		return s->result == CURLE_OK ? 0 : -EIO;
	n = s->data.len - s->off;
	if (n > max)
		n = max;
	memcpy(buf, s->data.p + s->off, n);
	s->off += n;
	return (ssize_t)n;
}

bool px_up_stream_ok(const px_up_stream *s)
{
	return s->done && s->result == CURLE_OK;
}

double px_up_stream_seconds(const px_up_stream *s)
{
	return (s->t1 ? s->t1 : now_s()) - s->t0;
}

int px_up_stream_drain(px_up_stream *s, px_buf *out)
{
	char tmp[4096];
	ssize_t n;
	int rc = 0;

	while (!rc && (n = px_up_stream_read(s, tmp, sizeof tmp)) > 0)
		rc = px_buf_append(out, tmp, (size_t)n);
	return rc;
}

void px_up_stream_free(px_up_stream *s)
{
	if (!s)
		return;
	if (s->multi && s->easy)
		curl_multi_remove_handle(s->multi, s->easy);
	if (s->easy)
		curl_easy_cleanup(s->easy);
	if (s->multi)
		curl_multi_cleanup(s->multi);
	curl_slist_free_all(s->hdrs);
	px_buf_free(&s->data);
	free(s);
}

/* ------------------------------------------------------------------------
 * Embeddings
 * ---------------------------------------------------------------------- */
int px_up_embed(const px_config *cfg, const char *text, const char *auth, float **vec,
                uint32_t *dim, double *seconds, char *err, size_t errlen)
{
	json_t *req = NULL, *resp = NULL, *emb, *x;
	px_up_result r = {0};
	char *body = NULL;
	float *v = NULL;
	size_t i, n;
	int rc = -ENOMEM;

	*vec = NULL;
	*dim = 0;
	req = json_pack("{s:s, s:s}", "model", cfg->embedding_model, "input", text);
	if (!req)
		goto out;
	body = json_dumps(req, JSON_COMPACT);
	if (!body)
		goto out;
	rc = px_up_post(cfg, "/embeddings", body, strlen(body), auth, &r);
	if (rc)
		goto out;
	*seconds = r.seconds;
	rc = -EIO;
	if (r.outcome != PX_UP_OK) {
		snprintf(err, errlen, "embedding call failed: %s", r.error);
		goto out;
	}
	if (r.status != 200) {
		snprintf(err, errlen, "embedding call answered HTTP %ld", r.status);
		goto out;
	}
	resp = json_loadb(r.body.p ? r.body.p : "", r.body.len, 0, NULL);
	emb = json_object_get(json_array_get(json_object_get(resp, "data"), 0), "embedding");
	n = json_array_size(emb);
	if (!json_is_array(emb) || n == 0 || n > 4096) {
		snprintf(err, errlen, "embedding answer has no data[0].embedding of 1..4096 numbers");
		goto out;
	}
	v = malloc(n * sizeof *v);
	if (!v) {
		rc = -ENOMEM;
		goto out;
	}
	json_array_foreach(emb, i, x) {
		if (!json_is_number(x)) {
			snprintf(err, errlen, "embedding answer holds a non-number");
			goto out;
		}
		v[i] = (float)json_number_value(x);
	}
	*vec = v;
	*dim = (uint32_t)n;
	v = NULL;
	rc = 0;
out:
	free(v);
	free(body);
	json_decref(req);
	json_decref(resp);
	px_up_result_free(&r);
	return rc;
}
