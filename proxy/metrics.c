/*
 * metrics.c - counters every worker updates and any worker reports.
 *
 * The master maps one px_metrics in a MAP_SHARED anonymous region before it
 * forks, so every worker (and every restarted worker) adds to the same
 * counters and GET /metrics on any worker shows the whole proxy.  Counters
 * are relaxed atomics: each is exact, a scrape is not one snapshot, which
 * Prometheus does not need.  The region lives as long as the master: a
 * worker's death loses none of its counts.
 *
 * Histogram buckets are stored per bucket (not cumulative) so an
 * observation is one increment; rendering sums them into Prometheus's
 * cumulative "le" form.
 */
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>

#include "proxy.h"

static const double bucket_le[PX_NBUCKETS] = {
	0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30,
};

static const char *const kind_names[PX_NKINDS] = {
	"hit-exact", "hit-semantic", "miss", "bypass", "error",
};

const char *px_kind_name(enum px_kind k)
{
	return (unsigned)k < PX_NKINDS ? kind_names[k] : "?";
}

px_metrics *px_metrics_map(void)
{
	void *p = mmap(NULL, sizeof(px_metrics), PROT_READ | PROT_WRITE,
	               MAP_SHARED | MAP_ANONYMOUS, -1, 0);

	return p == MAP_FAILED ? NULL : p; /* zero-filled: every counter 0 */
}

void px_metrics_observe(px_hist *h, double seconds)
{
	int i = 0;

	while (i < PX_NBUCKETS && seconds > bucket_le[i])
		i++;
	if (i < PX_NBUCKETS)
		atomic_fetch_add_explicit(&h->le[i], 1, memory_order_relaxed);
	atomic_fetch_add_explicit(&h->count, 1, memory_order_relaxed);
	atomic_fetch_add_explicit(&h->sum_us, (uint64_t)(seconds * 1e6), memory_order_relaxed);
}

#define LOAD(x) atomic_load_explicit(&(x), memory_order_relaxed)

static int render_hist(px_buf *o, const char *name, const char *help, const px_hist *h)
{
	uint64_t cum = 0;
	int rc = px_buf_printf(o, "# HELP %s %s\n# TYPE %s histogram\n", name, help, name);

	for (int i = 0; !rc && i < PX_NBUCKETS; i++) {
		cum += LOAD(h->le[i]);
		rc = px_buf_printf(o, "%s_bucket{le=\"%g\"} %llu\n", name, bucket_le[i],
		                   (unsigned long long)cum);
	}
	if (!rc)
		rc = px_buf_printf(o, "%s_bucket{le=\"+Inf\"} %llu\n%s_sum %.6f\n%s_count %llu\n",
		                   name, (unsigned long long)LOAD(h->count), name,
		                   (double)LOAD(h->sum_us) / 1e6, name,
		                   (unsigned long long)LOAD(h->count));
	return rc;
}

int px_metrics_render(const px_metrics *m, semcache *c, px_buf *o)
{
	semcache_stats st;
	int rc;

	rc = px_buf_puts(o, "# HELP semcache_proxy_requests_total Chat-completion requests by "
	                    "outcome.\n# TYPE semcache_proxy_requests_total counter\n");
	for (int k = 0; !rc && k < PX_NKINDS; k++)
		rc = px_buf_printf(o, "semcache_proxy_requests_total{kind=\"%s\"} %llu\n",
		                   kind_names[k], (unsigned long long)LOAD(m->requests[k]));
	if (!rc)
		rc = px_buf_puts(o, "# HELP semcache_proxy_responses_total HTTP responses by status "
		                    "class.\n# TYPE semcache_proxy_responses_total counter\n");
	for (int k = 1; !rc && k <= 5; k++)
		rc = px_buf_printf(o, "semcache_proxy_responses_total{code=\"%dxx\"} %llu\n", k,
		                   (unsigned long long)LOAD(m->status[k]));
	if (!rc)
		rc = px_buf_printf(o,
			"# HELP semcache_proxy_saved_tokens_total Prompt plus completion tokens "
			"of the answers served from the cache.\n"
			"# TYPE semcache_proxy_saved_tokens_total counter\n"
			"semcache_proxy_saved_tokens_total %llu\n"
			"# HELP semcache_proxy_saved_seconds_total Model latency the cache hits "
			"avoided (the stored answers' upstream latency).\n"
			"# TYPE semcache_proxy_saved_seconds_total counter\n"
			"semcache_proxy_saved_seconds_total %.3f\n"
			"# HELP semcache_proxy_upstream_errors_total Upstream failures and error "
			"answers passed back.\n"
			"# TYPE semcache_proxy_upstream_errors_total counter\n"
			"semcache_proxy_upstream_errors_total %llu\n"
			"# HELP semcache_proxy_store_failures_total Answers that could not be "
			"stored.\n# TYPE semcache_proxy_store_failures_total counter\n"
			"semcache_proxy_store_failures_total %llu\n"
			"# HELP semcache_proxy_worker_restarts_total Workers the master restarted "
			"after they died.\n# TYPE semcache_proxy_worker_restarts_total counter\n"
			"semcache_proxy_worker_restarts_total %llu\n"
			"# HELP semcache_proxy_workers Worker processes running.\n"
			"# TYPE semcache_proxy_workers gauge\nsemcache_proxy_workers %llu\n",
			(unsigned long long)LOAD(m->saved_tokens), (double)LOAD(m->saved_ms) / 1e3,
			(unsigned long long)LOAD(m->upstream_errors),
			(unsigned long long)LOAD(m->store_failures),
			(unsigned long long)LOAD(m->worker_restarts),
			(unsigned long long)LOAD(m->workers_alive));
	if (!rc)
		rc = render_hist(o, "semcache_proxy_upstream_latency_seconds",
		                 "Upstream chat-completion latency (to the last byte).",
		                 &m->upstream_chat);
	if (!rc)
		rc = render_hist(o, "semcache_proxy_embedding_latency_seconds",
		                 "Upstream embedding latency.", &m->upstream_embed);
	if (!rc && c && semcache_stat(c, &st) == 0)
		rc = px_buf_printf(o,
			"# HELP semcache_segment_entries Live entries in the segment.\n"
			"# TYPE semcache_segment_entries gauge\nsemcache_segment_entries %llu\n"
			"# HELP semcache_segment_slots Entry capacity of the segment.\n"
			"# TYPE semcache_segment_slots gauge\nsemcache_segment_slots %u\n"
			"# HELP semcache_segment_arena_bytes_used Payload arena bytes in use.\n"
			"# TYPE semcache_segment_arena_bytes_used gauge\n"
			"semcache_segment_arena_bytes_used %llu\n"
			"# HELP semcache_segment_arena_bytes Payload arena size.\n"
			"# TYPE semcache_segment_arena_bytes gauge\n"
			"semcache_segment_arena_bytes %llu\n"
			"# HELP semcache_segment_evictions_total Entries evicted (all processes).\n"
			"# TYPE semcache_segment_evictions_total counter\n"
			"semcache_segment_evictions_total %llu\n",
			(unsigned long long)st.entries, st.slots, (unsigned long long)st.bytes_used,
			(unsigned long long)st.arena_bytes, (unsigned long long)st.total.evictions);
	return rc;
}
