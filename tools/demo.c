/*
 * demo.c - semcache-demo: prefork workers sharing one LLM response cache.
 *
 * What: a master creates a fresh segment, opens it once and forks N workers
 * that inherit the handle (the library gives each child its own process
 * record through pthread_atfork).  The workers replay a stream of LLM-style
 * requests from a JSONL file, split round-robin by line index, each worker
 * taking its share in file order.  Per request a worker builds the exact key
 * and the semantic scope with semcache_request_key(), embeds the prompt,
 * tries an exact semcache_get(), then a semantic semcache_search(), and only
 * then "calls the model": it sleeps the record's latency (scaled by
 * --time-scale) and stores the answer with semcache_put().  At the end the
 * master prints per-worker and total figures and runs `semcache stat`.
 *
 * How correctness is proved, not assumed: every record carries a topic id
 * and a namespace, and the demo stores "topic=<id> ns=<ns>" in the cached
 * response's metadata.  Any hit (exact or semantic) whose metadata names
 * another topic or another namespace is printed and counted as a WRONG hit,
 * and a wrong hit makes the demo exit non-zero.  The shipped data asks
 * tenant-b some prompts that tenant-a asks word for word; the cache keeps
 * namespaces apart, the counter shows it.
 *
 * Why the embedder is a toy: a real deployment embeds prompts with a model
 * (e.g. a 384-dimensional sentence encoder).  The demo must run anywhere,
 * offline, in seconds, so it hashes character 3-grams and content words into
 * 256 signed buckets (see "Demo embedder" below).  That is enough to match
 * reworded questions that keep their key words and to keep 60 unrelated
 * topics apart, which is all the demo needs to show.
 *
 * Exit status: 0 on success; 1 if a worker failed or any wrong hit
 * happened; 2 on bad options, bad data or a segment that cannot be created.
 */
#include <errno.h>
#include <getopt.h>
#include <math.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <jansson.h>

#include "semcache.h"

#ifndef SEMCACHE_DEMO_DATA
#define SEMCACHE_DEMO_DATA "data/demo_requests.jsonl"
#endif

#define DEMO_DIM         256u
#define DEMO_SLOTS       4096u
#define DEMO_ARENA       (16u << 20)
#define DEMO_MAX_PROCS   256u
#define DEMO_MAX_WORKERS 200u   /* leaves process records for the master and tools */
#define DEMO_PATH        "/dev/shm/semcache-demo"

/*
 * The semantic threshold suits the demo embedder, not a real model (whose
 * scale differs: the library's default is 0.92).  On the shipped data the
 * most similar pair of prompts from different topics scores 0.45, while
 * reworded questions mostly score 0.5 to 1.0 against their topic's other
 * prompts.  0.70 leaves a margin of 0.25 above the closest unrelated pair
 * and still lets about 70% of the paraphrases match, which is the trade a
 * cache should make: a miss costs one model call, a wrong hit costs a wrong
 * answer.
 */
#define DEMO_THRESHOLD   0.70f

/* ------------------------------------------------------------------------
 * Options and data
 * ---------------------------------------------------------------------- */
typedef struct demo_opts {
	const char *path;
	const char *data;
	unsigned workers;
	float threshold;
	double time_scale;
	bool keep;
} demo_opts;

/* One replayed request and the answer the "model" gives to it. */
typedef struct demo_rec {
	char *ns, *prompt, *response, *model;
	long topic;
	uint32_t latency_ms, prompt_tokens, completion_tokens;
} demo_rec;

typedef struct demo_data {
	demo_rec *v;
	size_t n;
	size_t n_ns, n_topics; /* distinct values, for the report */
} demo_data;

/* What one worker did; lives in a shared anonymous mapping the master reads
 * after the worker has exited (waitpid orders the accesses). */
typedef struct demo_result {
	int32_t pid;
	int started;
	uint64_t requests, exact, semantic, misses, wrong, cross_ns, errors;
	uint64_t saved_ms;  /* unscaled latency of the calls hits avoided */
	uint64_t called_ms; /* unscaled latency of the calls made */
	float sem_min;      /* lowest similarity of a correct semantic hit, or 2 */
} demo_result;

/* ------------------------------------------------------------------------
 * Demo embedder.
 *
 * A stand-in for a real embedding model, deterministic and dependency-free:
 * lowercase ASCII, turn punctuation into spaces, drop a short list of
 * question and function words ("what", "how", "the", ...), then for every
 * remaining word add the word itself (weight 1) and each character 3-gram of
 * " word " (weight 0.5) into one of dim buckets chosen by a 64-bit hash,
 * with the sign taken from another hash bit so that collisions cancel on
 * average instead of piling up.  The vector is then L2-normalised, so
 * cosine similarity is a dot product.  Words carry the topic; 3-grams let
 * "tire"/"tyre" or "boil"/"boiling" still overlap.
 * ---------------------------------------------------------------------- */
static const char *const emb_stopwords[] = {
	"a", "an", "the", "is", "are", "was", "be", "do", "does", "did", "i", "me",
	"my", "you", "your", "it", "its", "of", "to", "in", "on", "for", "with",
	"and", "or", "what", "whats", "which", "how", "why", "when", "who", "whom",
	"where", "can", "could", "should", "would", "there", "this", "that", "s",
	"t", "by", "at", "from", "into", "as", "so", "some", "any", "please",
	/* question framing that says nothing about the subject */
	"explain", "tell", "define", "describe", "difference", "differences",
	"between", "vs", "versus", "way", "steps", "tips", "meaning", "mean",
	NULL,
};

static bool emb_is_stopword(const char *w, size_t n)
{
	for (const char *const *s = emb_stopwords; *s; s++)
		if (strlen(*s) == n && memcmp(*s, w, n) == 0)
			return true;
	return false;
}

static uint64_t emb_hash(char kind, const char *s, size_t n)
{
	uint64_t h = 0xcbf29ce484222325ull; /* FNV-1a, then a 64-bit finaliser */

	h = (h ^ (unsigned char)kind) * 0x100000001b3ull;
	for (size_t i = 0; i < n; i++)
		h = (h ^ (unsigned char)s[i]) * 0x100000001b3ull;
	h ^= h >> 30;
	h *= 0xbf58476d1ce4e5b9ull;
	h ^= h >> 27;
	h *= 0x94d049bb133111ebull;
	h ^= h >> 31;
	return h;
}

static void emb_add(float *v, uint32_t dim, uint64_t h, float w)
{
	v[h % dim] += (h >> 63) ? -w : w;
}

static void emb_word(float *v, uint32_t dim, const char *w, size_t n)
{
	char padded[66];

	emb_add(v, dim, emb_hash('w', w, n), 1.0f);
	padded[0] = ' ';
	memcpy(padded + 1, w, n);
	padded[n + 1] = ' ';
	for (size_t i = 0; i + 3 <= n + 2; i++)
		emb_add(v, dim, emb_hash('g', padded + i, 3), 0.5f);
}

static void demo_embed(const char *text, float *v, uint32_t dim)
{
	char w[64];
	size_t n = 0;
	double norm = 0;

	memset(v, 0, dim * sizeof *v);
	for (const char *p = text;; p++) {
		unsigned char ch = (unsigned char)*p;
		bool wordch = ch >= 0x80 || (ch >= '0' && ch <= '9') ||
		              (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z');

		if (wordch) {
			if (n < sizeof w) /* longer words are cut, not dropped */
				w[n++] = (char)((ch >= 'A' && ch <= 'Z') ? ch + 32 : ch);
			continue;
		}
		if (n > 0 && !emb_is_stopword(w, n))
			emb_word(v, dim, w, n);
		n = 0;
		if (ch == '\0')
			break;
	}
	for (uint32_t i = 0; i < dim; i++)
		norm += (double)v[i] * v[i];
	if (norm == 0) {
		v[0] = 1.0f; /* nothing but stopwords: any fixed unit vector will do */
		return;
	}
	norm = sqrt(norm);
	for (uint32_t i = 0; i < dim; i++)
		v[i] = (float)(v[i] / norm);
}

/* ------------------------------------------------------------------------
 * Loading the JSONL stream
 * ---------------------------------------------------------------------- */
static char *json_str(json_t *o, const char *name)
{
	const char *s = json_string_value(json_object_get(o, name));

	return s ? strdup(s) : NULL;
}

static bool json_uint(json_t *o, const char *name, bool required, uint64_t max, uint64_t *out)
{
	json_t *j = json_object_get(o, name);

	*out = 0;
	if (!j)
		return !required;
	if (!json_is_integer(j) || json_integer_value(j) < 0 ||
	    (uint64_t)json_integer_value(j) > max)
		return false;
	*out = (uint64_t)json_integer_value(j);
	return true;
}

static void rec_free(demo_rec *r)
{
	free(r->ns);
	free(r->prompt);
	free(r->response);
	free(r->model);
}

/* Parse one line into r; NULL on success, else what is wrong. */
static const char *rec_parse(const char *line, demo_rec *r)
{
	json_error_t jerr;
	json_t *o = json_loads(line, 0, &jerr);
	const char *why = NULL;
	uint64_t topic, lat, pt, ct;

	memset(r, 0, sizeof *r);
	if (!o || !json_is_object(o)) {
		why = "not a JSON object";
		goto out;
	}
	r->ns = json_str(o, "ns");
	r->prompt = json_str(o, "prompt");
	r->response = json_str(o, "response");
	r->model = json_str(o, "model");
	if (!r->ns || !r->prompt || !r->response || !r->model)
		why = "ns, prompt, response and model must be strings";
	else if (strlen(r->model) > 127)
		why = "model longer than 127 bytes";
	else if (!json_uint(o, "topic", true, INT32_MAX, &topic))
		why = "topic must be a non-negative integer";
	else if (!json_uint(o, "latency_ms", true, 600000, &lat))
		why = "latency_ms must be an integer in 0..600000";
	else if (!json_uint(o, "prompt_tokens", false, UINT32_MAX, &pt) ||
	         !json_uint(o, "completion_tokens", false, UINT32_MAX, &ct))
		why = "token counts must be non-negative integers";
	if (why)
		goto out;
	r->topic = (long)topic;
	r->latency_ms = (uint32_t)lat;
	r->prompt_tokens = (uint32_t)pt;
	r->completion_tokens = (uint32_t)ct;
out:
	if (why)
		rec_free(r);
	json_decref(o);
	return why;
}

static int cmp_long(const void *a, const void *b)
{
	long x = *(const long *)a, y = *(const long *)b;

	return (x > y) - (x < y);
}

/* Distinct namespaces and topics, for the report only (0 if out of memory). */
static void data_count_distinct(demo_data *d)
{
	const char **ns = malloc(d->n * sizeof *ns);
	long *t = malloc(d->n * sizeof *t);

	d->n_ns = d->n_topics = 0;
	for (size_t i = 0; ns && i < d->n; i++) {
		size_t j = 0;

		while (j < d->n_ns && strcmp(ns[j], d->v[i].ns) != 0)
			j++;
		if (j == d->n_ns)
			ns[d->n_ns++] = d->v[i].ns;
	}
	for (size_t i = 0; t && i < d->n; i++)
		t[i] = d->v[i].topic;
	if (t)
		qsort(t, d->n, sizeof *t, cmp_long);
	for (size_t i = 0; t && i < d->n; i++)
		d->n_topics += (i == 0 || t[i] != t[i - 1]);
	free(ns);
	free(t);
}

static void data_free(demo_data *d)
{
	for (size_t i = 0; i < d->n; i++)
		rec_free(&d->v[i]);
	free(d->v);
	d->v = NULL;
	d->n = 0;
}

/* Load the whole file; 0 or -1 with a message printed. */
static int data_load(const char *path, demo_data *d)
{
	FILE *f = fopen(path, "r");
	char *line = NULL;
	size_t cap = 0, alloc = 0, lineno = 0;
	int rc = -1;

	memset(d, 0, sizeof *d);
	if (!f) {
		fprintf(stderr, "semcache-demo: %s: %s\n", path, strerror(errno));
		return -1;
	}
	while (getline(&line, &cap, f) >= 0) {
		const char *why;

		lineno++;
		if (line[strspn(line, " \t\r\n")] == '\0')
			continue;
		if (d->n == alloc) {
			size_t na = alloc ? 2 * alloc : 1024;
			demo_rec *nv = realloc(d->v, na * sizeof *nv);

			if (!nv) {
				fprintf(stderr, "semcache-demo: out of memory\n");
				goto out;
			}
			d->v = nv;
			alloc = na;
		}
		why = rec_parse(line, &d->v[d->n]);
		if (why) {
			fprintf(stderr, "semcache-demo: %s:%zu: %s\n", path, lineno, why);
			goto out;
		}
		d->n++;
	}
	if (ferror(f)) {
		fprintf(stderr, "semcache-demo: %s: read error\n", path);
		goto out;
	}
	if (d->n == 0) {
		fprintf(stderr, "semcache-demo: %s: no requests\n", path);
		goto out;
	}
	data_count_distinct(d);
	rc = 0;
out:
	free(line);
	fclose(f);
	if (rc < 0)
		data_free(d);
	return rc;
}

/* ------------------------------------------------------------------------
 * The worker
 * ---------------------------------------------------------------------- */
static void sleep_ms(double ms)
{
	if (!(ms > 0))
		return;
	int64_t ns = (int64_t)(ms * 1e6);
	struct timespec ts = { .tv_sec = (time_t)(ns / 1000000000), .tv_nsec = (long)(ns % 1000000000) };

	while (nanosleep(&ts, &ts) == -1 && errno == EINTR)
		;
}

static double now_s(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + ts.tv_nsec / 1e9;
}

/* Does a cached answer belong to request q?  Checks the metadata put()
 * stored: same topic and same namespace. */
static bool hit_is_right(const semcache_response *r, const demo_rec *q, bool *cross_ns)
{
	long topic;
	int off = -1;

	*cross_ns = false;
	if (!r->metadata || sscanf(r->metadata, "topic=%ld ns=%n", &topic, &off) != 1 || off < 0)
		return false;
	if (strcmp(r->metadata + off, q->ns) != 0) {
		*cross_ns = true;
		return false;
	}
	return topic == q->topic;
}

static void worker_error(unsigned w, size_t i, const char *what, int rc, demo_result *res)
{
	if (res->errors++ == 0)
		printf("worker %u (pid %d): request %zu: %s: %s\n", w, (int)getpid(), i + 1,
		       what, semcache_strerror(rc));
}

/* The model was not asked: check the answer and count the hit. */
static void count_hit(unsigned w, size_t i, const demo_rec *q, const semcache_response *r,
                      bool semantic, float sim, demo_result *res)
{
	bool cross;

	if (!hit_is_right(r, q, &cross)) {
		res->wrong++;
		res->cross_ns += cross;
		printf("WRONG %s hit: worker %u request %zu ns=%s topic=%ld \"%s\" got [%s]",
		       semantic ? "semantic" : "exact", w, i + 1, q->ns, q->topic, q->prompt,
		       r->metadata ? r->metadata : "no metadata");
		if (semantic)
			printf(" similarity %.3f", sim);
		printf("\n");
		fflush(stdout);
		return;
	}
	if (semantic) {
		res->semantic++;
		if (sim < res->sem_min)
			res->sem_min = sim;
	} else {
		res->exact++;
	}
	res->saved_ms += q->latency_ms;
}

static void serve(semcache *c, const demo_opts *o, unsigned w, size_t i, const demo_rec *q,
                  demo_result *res)
{
	char key[SEMCACHE_KEY_LEN], scope[SEMCACHE_SCOPE_LEN], meta[64 + 4096];
	float emb[DEMO_DIM], sim = 0;
	semcache_response *hit = NULL;
	semcache_message msg = { .role = "user", .content = q->prompt };
	semcache_request req = {
		.model = q->model, .messages = &msg, .n_messages = 1,
		.temperature = NAN, .max_tokens = -1, .tools = NULL, .tool_choice = NULL,
	};
	int rc;

	res->requests++;
	rc = semcache_request_key(&req, key, scope, sizeof scope);
	if (rc < 0) {
		worker_error(w, i, "semcache_request_key", rc, res);
		return;
	}
	demo_embed(q->prompt, emb, DEMO_DIM);

	rc = semcache_get(c, q->ns, key, 0, &hit);
	if (rc == 0) {
		count_hit(w, i, q, hit, false, 0, res);
		goto out;
	}
	if (rc != SEMCACHE_ENOTFOUND) {
		worker_error(w, i, "semcache_get", rc, res);
		return;
	}
	rc = semcache_search(c, q->ns, scope, emb, DEMO_DIM, o->threshold, &hit, &sim);
	if (rc == 0) {
		count_hit(w, i, q, hit, true, sim, res);
		goto out;
	}
	if (rc != SEMCACHE_ENOTFOUND) {
		worker_error(w, i, "semcache_search", rc, res);
		return;
	}

	/* A miss: pay for the model call, then share the answer. */
	res->misses++;
	res->called_ms += q->latency_ms;
	sleep_ms(q->latency_ms * o->time_scale);
	snprintf(meta, sizeof meta, "topic=%ld ns=%s", q->topic, q->ns);
	semcache_response resp = {
		.content = q->response, .model = q->model,
		.prompt_tokens = q->prompt_tokens, .completion_tokens = q->completion_tokens,
		.latency_ms = q->latency_ms, .finish_reason = "stop", .metadata = meta,
	};
	semcache_put_args pa = {
		.ns = q->ns, .key = key, .scope = scope, .response = &resp,
		.embedding = emb, .embedding_dim = DEMO_DIM,
	};
	rc = semcache_put(c, &pa);
	if (rc < 0)
		worker_error(w, i, "semcache_put", rc, res);
out:
	semcache_response_free(hit);
}

/* Runs in the child; returns its exit status. */
static int worker_main(semcache *c, const demo_opts *o, const demo_data *d, unsigned w,
                       int gate, volatile int *abort_all, demo_result *res)
{
	char b;

	memset(res, 0, sizeof *res);
	res->pid = (int32_t)getpid();
	res->sem_min = 2.0f;
	/* Wait until every worker exists, so they really run side by side. */
	while (read(gate, &b, 1) < 0 && errno == EINTR)
		;
	close(gate);
	if (*abort_all)
		return 1;
	res->started = 1;
	for (size_t i = w; i < d->n; i += o->workers)
		serve(c, o, w, i, &d->v[i], res);
	return res->errors ? 1 : 0;
}

/* ------------------------------------------------------------------------
 * Report and stats
 * ---------------------------------------------------------------------- */
static double pct(uint64_t part, uint64_t whole)
{
	return whole ? 100.0 * (double)part / (double)whole : 0.0;
}

static void report(const demo_opts *o, const demo_result *res, double wall)
{
	demo_result t = { .sem_min = 2.0f };

	printf("\nworker      pid  requests  exact  semantic  misses  wrong  saved_ms\n");
	for (unsigned w = 0; w < o->workers; w++) {
		const demo_result *r = &res[w];

		printf("%6u %8d %9lu %6lu %9lu %7lu %6lu %9lu\n", w, (int)r->pid,
		       (unsigned long)r->requests, (unsigned long)r->exact,
		       (unsigned long)r->semantic, (unsigned long)r->misses,
		       (unsigned long)r->wrong, (unsigned long)r->saved_ms);
		t.requests += r->requests;
		t.exact += r->exact;
		t.semantic += r->semantic;
		t.misses += r->misses;
		t.wrong += r->wrong;
		t.cross_ns += r->cross_ns;
		t.errors += r->errors;
		t.saved_ms += r->saved_ms;
		t.called_ms += r->called_ms;
		if (r->sem_min < t.sem_min)
			t.sem_min = r->sem_min;
	}
	printf("\ntotal: %lu requests: %.1f%% exact hits, %.1f%% semantic hits, %.1f%% misses "
	       "(%.1f%% served from cache)\n", (unsigned long)t.requests,
	       pct(t.exact, t.requests), pct(t.semantic, t.requests), pct(t.misses, t.requests),
	       pct(t.exact + t.semantic, t.requests));
	printf("wrong hits: %lu (of which cross-namespace: %lu); worker errors: %lu\n",
	       (unsigned long)t.wrong, (unsigned long)t.cross_ns, (unsigned long)t.errors);
	if (t.semantic)
		printf("semantic hits: lowest similarity %.3f (threshold %.2f)\n", t.sem_min,
		       o->threshold);
	else
		printf("semantic hits: none (threshold %.2f)\n", o->threshold);
	printf("time saved: %.1f s of model calls avoided, %.1f s paid (%.1f%% of model time "
	       "saved)\n", t.saved_ms / 1000.0, t.called_ms / 1000.0,
	       pct(t.saved_ms, t.saved_ms + t.called_ms));
	printf("throughput: %.0f requests/s (%.2f s wall, model calls slept at time scale %g)\n",
	       wall > 0 ? (double)t.requests / wall : 0.0, wall, o->time_scale);
}

static void print_stat(semcache *c)
{
	semcache_stats st;
	int rc = semcache_stat(c, &st);

	if (rc < 0) {
		printf("semcache_stat: %s\n", semcache_strerror(rc));
		return;
	}
	printf("segment: %lu entries of %u slots, dim %u, arena %lu of %lu bytes used, "
	       "processes attached: %u\n", (unsigned long)st.entries, st.slots, st.dim,
	       (unsigned long)st.bytes_used, (unsigned long)st.arena_bytes, st.procs_attached);
	printf("counters: exact %lu hits / %lu misses, semantic %lu hits / %lu misses, "
	       "%lu puts, %lu evictions\n", (unsigned long)st.total.hits,
	       (unsigned long)st.total.misses, (unsigned long)st.total.sem_hits,
	       (unsigned long)st.total.sem_misses, (unsigned long)st.total.puts,
	       (unsigned long)st.total.evictions);
}

/* `semcache --path P stat` if the tool was built next to us, else our own
 * summary of semcache_stat(). */
static void show_stats(semcache *c, const char *path)
{
	const char *tool = NULL;
	int status;
	pid_t pid;

#ifdef SEMCACHE_TOOL_PATH
	tool = SEMCACHE_TOOL_PATH;
#endif
	printf("\n");
	if (!tool || access(tool, X_OK) != 0) {
		print_stat(c);
		return;
	}
	printf("$ semcache --path %s stat\n", path);
	fflush(stdout);
	pid = fork();
	if (pid == 0) {
		execl(tool, "semcache", "--path", path, "stat", (char *)NULL);
		fprintf(stderr, "semcache-demo: exec %s: %s\n", tool, strerror(errno));
		_exit(127);
	}
	if (pid < 0 || waitpid(pid, &status, 0) < 0 || !WIFEXITED(status) ||
	    WEXITSTATUS(status) != 0) {
		printf("(%s failed; the library's own figures follow)\n", tool);
		print_stat(c);
	}
}

/* ------------------------------------------------------------------------
 * Master
 * ---------------------------------------------------------------------- */
static void usage(FILE *f)
{
	fprintf(f,
	        "usage: semcache-demo [options]\n"
	        "\n"
	        "Prefork workers share one semcache segment while replaying LLM requests:\n"
	        "exact hits, semantic hits (paraphrases) and misses that sleep like a model\n"
	        "call.  Every hit is checked against the request's topic and namespace.\n"
	        "\n"
	        "  --path P         segment file, re-created at start (default %s)\n"
	        "  --workers N      worker processes (default: online CPUs, at most %u)\n"
	        "  --data FILE      JSONL request stream (default %s)\n"
	        "  --threshold X    cosine similarity for a semantic hit, -1..1 (default %.2f)\n"
	        "  --time-scale S   sleep latency_ms * S per model call (default 0.01)\n"
	        "  --keep           leave the segment in place at exit\n"
	        "  --help           this text\n"
	        "\n"
	        "Exit status: 0 ok, 1 a worker failed or a hit was wrong, 2 usage/setup error.\n",
	        DEMO_PATH, DEMO_MAX_WORKERS, SEMCACHE_DEMO_DATA, DEMO_THRESHOLD);
}

static bool parse_double(const char *s, double lo, double hi, double *out)
{
	char *end;

	errno = 0;
	*out = strtod(s, &end);
	return errno == 0 && end != s && *end == '\0' && isfinite(*out) && *out >= lo && *out <= hi;
}

static int parse_opts(int argc, char **argv, demo_opts *o)
{
	static const struct option lopts[] = {
		{ "help", no_argument, NULL, 'h' },
		{ "path", required_argument, NULL, 'p' },
		{ "workers", required_argument, NULL, 'w' },
		{ "data", required_argument, NULL, 'd' },
		{ "threshold", required_argument, NULL, 't' },
		{ "time-scale", required_argument, NULL, 's' },
		{ "keep", no_argument, NULL, 'k' },
		{ NULL, 0, NULL, 0 },
	};
	long ncpu = sysconf(_SC_NPROCESSORS_ONLN);
	double v;
	int ch;

	o->path = DEMO_PATH;
	o->data = SEMCACHE_DEMO_DATA;
	o->workers = ncpu < 1 ? 1 : ncpu > (long)DEMO_MAX_WORKERS ? DEMO_MAX_WORKERS : (unsigned)ncpu;
	o->threshold = DEMO_THRESHOLD;
	o->time_scale = 0.01;
	o->keep = false;

	while ((ch = getopt_long(argc, argv, "", lopts, NULL)) != -1) {
		switch (ch) {
		case 'h':
			usage(stdout);
			exit(0);
		case 'p':
			o->path = optarg;
			break;
		case 'd':
			o->data = optarg;
			break;
		case 'w':
			if (!parse_double(optarg, 1, DEMO_MAX_WORKERS, &v) || v != (unsigned)v) {
				fprintf(stderr, "semcache-demo: --workers: an integer in 1..%u\n",
				        DEMO_MAX_WORKERS);
				return -1;
			}
			o->workers = (unsigned)v;
			break;
		case 't':
			if (!parse_double(optarg, -1, 1, &v)) {
				fprintf(stderr, "semcache-demo: --threshold: a number in -1..1\n");
				return -1;
			}
			o->threshold = (float)v;
			break;
		case 's':
			if (!parse_double(optarg, 0, 1000, &v)) {
				fprintf(stderr, "semcache-demo: --time-scale: a number in 0..1000\n");
				return -1;
			}
			o->time_scale = v;
			break;
		case 'k':
			o->keep = true;
			break;
		default:
			usage(stderr);
			return -1;
		}
	}
	if (optind < argc) {
		fprintf(stderr, "semcache-demo: unexpected argument '%s'\n", argv[optind]);
		return -1;
	}
	return 0;
}

/* Fork the workers, release them together, wait for all.  Returns how
 * many failed (a failed fork counts as one) and sets *wall. */
static unsigned run_workers(semcache *c, const demo_opts *o, const demo_data *d,
                            demo_result *res, volatile int *abort_all, double *wall)
{
	pid_t *pids = calloc(o->workers, sizeof *pids);
	unsigned failed = 0, forked = 0;
	int gate[2];
	double t0;

	if (!pids || pipe(gate) < 0) {
		fprintf(stderr, "semcache-demo: %s\n", strerror(errno));
		free(pids);
		return o->workers;
	}
	fflush(NULL); /* children must not inherit and repeat buffered output */
	for (unsigned w = 0; w < o->workers; w++) {
		pid_t pid = fork();

		if (pid == 0) {
			int st;

			close(gate[1]);
			st = worker_main(c, o, d, w, gate[0], abort_all, &res[w]);
			fflush(NULL);
			semcache_close(c);
			_exit(st);
		}
		if (pid < 0) {
			fprintf(stderr, "semcache-demo: fork: %s\n", strerror(errno));
			*abort_all = 1;
			failed++;
			break;
		}
		pids[forked++] = pid;
	}
	close(gate[0]);
	t0 = now_s();
	close(gate[1]); /* EOF on the gate: go */
	for (unsigned i = 0; i < forked; i++) {
		int status;

		while (waitpid(pids[i], &status, 0) < 0 && errno == EINTR)
			;
		if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
			failed++;
			if (WIFSIGNALED(status))
				printf("worker %u (pid %d) killed by signal %d\n", i, (int)pids[i],
				       WTERMSIG(status));
			else
				printf("worker %u (pid %d) failed\n", i, (int)pids[i]);
		}
	}
	*wall = now_s() - t0;
	free(pids);
	return failed;
}

int main(int argc, char **argv)
{
	demo_opts o;
	demo_data d;
	semcache_options so;
	semcache *c = NULL;
	demo_result *res = MAP_FAILED;
	unsigned failed;
	double wall = 0;
	uint64_t wrong = 0;
	int rc, status = 2;

	if (parse_opts(argc, argv, &o) < 0)
		return 2;
	if (data_load(o.data, &d) < 0)
		return 2;

	rc = semcache_destroy(o.path, 1);
	if (rc < 0 && rc != -ENOENT) {
		fprintf(stderr, "semcache-demo: remove %s: %s\n", o.path, semcache_strerror(rc));
		goto out;
	}
	semcache_options_init(&so);
	so.dim = DEMO_DIM;
	so.slots = DEMO_SLOTS;
	so.arena_bytes = DEMO_ARENA;
	so.max_procs = DEMO_MAX_PROCS;
	so.threshold = o.threshold;
	so.flags |= SEMCACHE_OPEN_EXCL;
	rc = semcache_open(o.path, &so, &c);
	if (rc < 0) {
		fprintf(stderr, "semcache-demo: open %s: %s\n", o.path, semcache_strerror(rc));
		goto out;
	}

	/* One result record per worker plus the abort flag, shared with the
	 * children. */
	size_t map_len = (o.workers + 1) * sizeof *res;
	res = mmap(NULL, map_len, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	if (res == MAP_FAILED) {
		fprintf(stderr, "semcache-demo: mmap: %s\n", strerror(errno));
		goto out;
	}
	memset(res, 0, map_len);
	volatile int *abort_all = &res[o.workers].started;

	printf("semcache-demo: %u workers replay %zu requests (%zu namespaces, %zu topics) "
	       "from %s\n", o.workers, d.n, d.n_ns, d.n_topics, o.data);
	printf("segment %s: dim %u, %u slots; semantic threshold %.2f; model calls sleep "
	       "latency x %g\n", o.path, DEMO_DIM, DEMO_SLOTS, o.threshold, o.time_scale);

	failed = run_workers(c, &o, &d, res, abort_all, &wall);
	report(&o, res, wall);
	for (unsigned w = 0; w < o.workers; w++)
		wrong += res[w].wrong;

	char vreport[512] = "";
	rc = semcache_verify(c, vreport, sizeof vreport);
	printf("verify: %s%s%s\n", rc == 0 ? "consistent" : semcache_strerror(rc),
	       vreport[0] ? ": " : "", vreport);

	show_stats(c, o.path);
	status = (failed || wrong || rc != 0) ? 1 : 0;
	if (failed)
		printf("\n%u worker(s) failed\n", failed);
out:
	semcache_close(c);
	if (c && !o.keep) {
		rc = semcache_destroy(o.path, 0);
		if (rc < 0)
			fprintf(stderr, "semcache-demo: remove %s: %s\n", o.path,
			        semcache_strerror(rc));
	}
	if (res != MAP_FAILED)
		munmap(res, (o.workers + 1) * sizeof *res);
	data_free(&d);
	return status;
}
