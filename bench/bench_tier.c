/*
 * bench_tier.c - the Redis tier: export rate, cross-host lag, and the
 * request path's p99 while Redis is stopped, each next to a reference
 * measured in the same run.
 *
 * What, and against what:
 *  - export rate: entries per second the syncer writes into Redis
 *    (pipelined batches from the outbox), against the reference design's
 *    way, one pipeline (SET entry, SET embedding, SADD index) per put,
 *    with values of the same sizes, on the same server.
 *  - cross-host lag: from a put on segment A to the entry being found by
 *    an exact get on segment B (each with its own syncer), p50 and p99,
 *    against one loopback round trip (PING).  A put wakes A's syncer
 *    and B's doorbell (XREAD BLOCK) wakes B's, so the lag is a few round
 *    trips plus thread wake-ups, not the 20 ms idle poll.
 *  - request path while Redis is SIGSTOPped: p99 of put and get on a
 *    segment whose tier is configured and whose syncer is degraded,
 *    against the same on a segment with no tier (goal: ratio <= 1.2).
 *
 * How: it starts its own redis-server on a free loopback port with
 * persistence off (PR_SET_PDEATHSIG, stopped and reaped on every way out;
 * identified by the pid INFO reports before use), and its own segments
 * under /dev/shm, removed at exit.  Without redis-server it prints
 * {"tier":"unavailable"} and exits 0.
 *
 * The last line is one JSON object:
 *   {"tier_export_per_s":..,"tier_ref_export_per_s":..,"tier_lag_p50_ns":..,
 *    "tier_lag_p99_ns":..,"tier_rtt_p50_ns":..,"tier_put_p99_ns":..,
 *    "tier_put_p99_ref_ns":..,"tier_get_p99_ns":..,"tier_get_p99_ref_ns":..}
 *
 *   bench_tier [--entries N]
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "bench_util.h"
#include "internal.h"
#include "redis_conn.h"
#include "semcache.h"

#define DIM 64
#define VALUE_BYTES 1024

static pid_t server_pid;
static int server_port;
static char seg_paths[3][128];

static void sleep_ms(long ms)
{
	struct timespec ts = { ms / 1000, (ms % 1000) * 1000000L };
	while (nanosleep(&ts, &ts) < 0 && errno == EINTR)
		;
}

static void server_stop(void)
{
	if (server_pid <= 0)
		return;
	kill(server_pid, SIGCONT);
	kill(server_pid, SIGTERM);
	for (int i = 0; i < 500; i++) {
		if (waitpid(server_pid, NULL, WNOHANG) == server_pid) {
			server_pid = 0;
			return;
		}
		sleep_ms(10);
	}
	kill(server_pid, SIGKILL);
	waitpid(server_pid, NULL, 0);
	server_pid = 0;
}

static void cleanup(void)
{
	server_stop();
	for (int i = 0; i < 3; i++)
		if (seg_paths[i][0])
			unlink(seg_paths[i]);
}

static int free_port(void)
{
	struct sockaddr_in a = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
	socklen_t len = sizeof a;
	int fd = socket(AF_INET, SOCK_STREAM, 0), port = -1;
	if (fd < 0)
		return -1;
	if (bind(fd, (struct sockaddr *)&a, sizeof a) == 0 &&
	    getsockname(fd, (struct sockaddr *)&a, &len) == 0)
		port = ntohs(a.sin_port);
	close(fd);
	return port;
}

static sc_redis_config cfg_for(uint32_t ms)
{
	return (sc_redis_config){ .host = "127.0.0.1", .port = server_port,
	                          .connect_timeout_ms = ms, .command_timeout_ms = ms };
}

/* Start our server; 0, or -1 when redis-server cannot be run. */
static int server_start(sc_redis_conn **out)
{
	char port[16];
	if ((server_port = free_port()) <= 0)
		return -1;
	snprintf(port, sizeof port, "%d", server_port);
	pid_t parent = getpid();
	server_pid = fork();
	if (server_pid < 0)
		return -1;
	if (server_pid == 0) {
		prctl(PR_SET_PDEATHSIG, SIGTERM);
		if (getppid() != parent)
			_exit(127);
		int devnull = open("/dev/null", O_WRONLY);
		if (devnull >= 0)
			dup2(devnull, STDOUT_FILENO);
		const char *exe = getenv("SEMCACHE_REDIS_SERVER");
		execlp(exe ? exe : "redis-server", "redis-server", "--port", port, "--bind",
		       "127.0.0.1", "--save", "", "--appendonly", "no", (char *)NULL);
		_exit(127);
	}
	sc_redis_config cfg = cfg_for(2000);
	for (int i = 0; i < 500; i++) {
		int st;
		if (waitpid(server_pid, &st, WNOHANG) == server_pid) {
			server_pid = 0;
			return -1;
		}
		sc_redis_conn *c = NULL;
		if (sc_redis_connect(&cfg, &c) == 0) {
			/* ours: INFO names the pid we started */
			redisReply *r = NULL;
			const char *argv[2] = { "INFO", "server" };
			char want[32];
			snprintf(want, sizeof want, "process_id:%d\r", (int)server_pid);
			if (sc_redis_command(c, SC_RT_STRING, &r, 2, argv, NULL) == 0 && r->str &&
			    strstr(r->str, want)) {
				freeReplyObject(r);
				*out = c;
				return 0;
			}
			freeReplyObject(r);
			sc_redis_close(c);
			return -1;
		}
		sc_redis_close(c);
		sleep_ms(10);
	}
	return -1;
}

static semcache *open_seg(int i, uint32_t slots)
{
	semcache_options o;
	semcache *c = NULL;
	semcache_options_init(&o);
	o.slots = slots;
	o.dim = DIM;
	o.arena_bytes = (uint64_t)slots * 2048;
	snprintf(seg_paths[i], sizeof seg_paths[i], "/dev/shm/semcache-bench-tier%d-%d", i,
	         (int)getpid());
	unlink(seg_paths[i]);
	if (semcache_open(seg_paths[i], &o, &c) != 0) {
		fprintf(stderr, "bench_tier: cannot open %s\n", seg_paths[i]);
		exit(1);
	}
	return c;
}

static char content[VALUE_BYTES + 1];

static int put_one(semcache *c, long i)
{
	char key[32];
	float v[DIM];
	semcache_response r;
	memset(&r, 0, sizeof r);
	r.content = content;
	r.model = "bench-model";
	snprintf(key, sizeof key, "key-%08ld", i);
	for (int d = 0; d < DIM; d++)
		v[d] = (float)((i * 31 + d * 7) % 97) + 1.0f;
	semcache_put_args a = { .ns = "ns", .key = key, .scope = "m", .response = &r,
	                        .embedding = v, .embedding_dim = DIM };
	return semcache_put(c, &a);
}

static int get_one(semcache *c, long i)
{
	char key[32];
	semcache_response *out = NULL;
	snprintf(key, sizeof key, "key-%08ld", i);
	int rc = semcache_get(c, "ns", key, 0, &out);
	semcache_response_free(out);
	return rc;
}

static semcache_tier_stats tstat(semcache *c)
{
	semcache_tier_stats st;
	semcache_tier_stat(c, &st);
	return st;
}

static int start_tier(semcache *c)
{
	semcache_tier_options o;
	semcache_tier_options_init(&o);
	o.port = server_port;
	o.prefix = "bench:";
	o.command_timeout_ms = 200;
	o.connect_timeout_ms = 200;
	return semcache_tier_start(c, &o);
}

static uint32_t pct(uint32_t *v, size_t n, double p)
{
	qsort(v, n, sizeof *v, cmp_u32);
	size_t k = (size_t)(p * (double)(n - 1));
	return v[k];
}

int main(int argc, char **argv)
{
	long n = 20000;
	sc_redis_conn *rc = NULL;

	for (int i = 1; i < argc; i++) {
		if (!strcmp(argv[i], "--entries") && i + 1 < argc) {
			n = strtol(argv[++i], NULL, 10);
			if (n < 100 || n > 1000000) {
				fprintf(stderr, "bench_tier: --entries 100..1000000\n");
				return 2;
			}
		} else {
			fprintf(stderr, "usage: bench_tier [--entries N]\n");
			return 2;
		}
	}
	memset(content, 'c', VALUE_BYTES);
	atexit(cleanup);
	if (server_start(&rc) < 0) {
		printf("{\"tier\":\"unavailable\"}\n");
		return 0;
	}
	uint32_t slots = 1;
	while (slots < (uint32_t)n * 2)
		slots <<= 1;

	/* ---- export rate: puts first (no network), then the syncer drains */
	semcache *a = open_seg(0, slots);
	for (long i = 0; i < n; i++)
		if (put_one(a, i) != 0)
			return 1;
	uint64_t t0 = bench_now_ns();
	if (start_tier(a) != 0)
		return 1;
	while (tstat(a).exported < (uint64_t)n)
		sleep_ms(1);
	double export_per_s = (double)n / ((double)(bench_now_ns() - t0) / 1e9);

	/* the reference: one pipeline per entry, values of the same sizes */
	char id[65], key[128], ekey[128];
	uint8_t d[32];
	sc_key_digest("ns", "key-00000000", d);
	for (int i = 0; i < 32; i++)
		snprintf(id + 2 * i, 3, "%02x", d[i]);
	snprintf(key, sizeof key, "bench:llm_cache:%s", id);
	redisReply *r = NULL;
	const char *get[2] = { "GET", key };
	if (sc_redis_command(rc, SC_RT_STRING, &r, 2, get, NULL) != 0)
		return 1;
	size_t vlen = r->len;
	freeReplyObject(r);
	char *val = malloc(vlen), emb[DIM * 4];
	if (!val)
		return 1;
	memset(val, 'v', vlen);
	memset(emb, 1, sizeof emb);
	t0 = bench_now_ns();
	for (long i = 0; i < n; i++) {
		snprintf(key, sizeof key, "ref:llm_cache:%064ld", i);
		snprintf(ekey, sizeof ekey, "ref:llm_cache_emb:%064ld", i);
		const char *s1[5] = { "SET", key, val, "PX", "3600000" };
		size_t l1[5] = { 3, strlen(key), vlen, 2, 7 };
		const char *s2[5] = { "SET", ekey, emb, "PX", "86400000" };
		size_t l2[5] = { 3, strlen(ekey), sizeof emb, 2, 8 };
		const char *s3[3] = { "SADD", "ref:llm_cache_index", key + 14 };
		redisReply *rep[3];
		size_t got = 0;
		if (sc_redis_append(rc, SC_RT_STATUS, 5, s1, l1) || sc_redis_append(rc, SC_RT_STATUS, 5, s2, l2) ||
		    sc_redis_append(rc, SC_RT_INTEGER, 3, s3, NULL) || sc_redis_exec(rc, rep, NULL, &got))
			return 1;
		sc_redis_free_replies(rep, got);
	}
	double ref_export_per_s = (double)n / ((double)(bench_now_ns() - t0) / 1e9);
	free(val);

	/* ---- cross-host lag, and the loopback round trip */
	semcache *b = open_seg(1, slots);
	if (start_tier(b) != 0)
		return 1;
	while (tstat(b).state != SEMCACHE_TIER_UP || tstat(b).imported < (uint64_t)(n < 1000 ? n : 1000))
		sleep_ms(5);
	enum { LAG_SAMPLES = 200 };
	uint32_t lag[LAG_SAMPLES], rtt[LAG_SAMPLES];
	for (int k = 0; k < LAG_SAMPLES; k++) {
		long i = n + k;
		t0 = bench_now_ns();
		if (put_one(a, i) != 0)
			return 1;
		while (get_one(b, i) != 0)
			usleep(50);
		uint64_t dt = bench_now_ns() - t0;
		lag[k] = dt > UINT32_MAX ? UINT32_MAX : (uint32_t)dt;
		const char *ping[1] = { "PING" };
		t0 = bench_now_ns();
		if (sc_redis_command(rc, SC_RT_STATUS, NULL, 1, ping, NULL) != 0)
			return 1;
		rtt[k] = (uint32_t)(bench_now_ns() - t0);
	}
	uint32_t lag50 = pct(lag, LAG_SAMPLES, 0.5), lag99 = pct(lag, LAG_SAMPLES, 0.99);
	uint32_t rtt50 = pct(rtt, LAG_SAMPLES, 0.5);
	semcache_tier_stop(b);
	semcache_close(b);

	/* ---- request path while Redis is stopped, against no tier at all */
	semcache *plain = open_seg(2, slots);
	long ops = n < 20000 ? n : 20000;
	uint32_t *lp = malloc(sizeof(uint32_t) * (size_t)ops * 4);
	if (!lp)
		return 1;
	uint32_t *put_ref = lp, *get_ref = lp + ops, *put_t = lp + 2 * ops, *get_t = lp + 3 * ops;
	for (long i = 0; i < ops; i++) {
		t0 = bench_now_ns();
		if (put_one(plain, 2 * n + i) != 0)
			return 1;
		put_ref[i] = (uint32_t)(bench_now_ns() - t0);
		t0 = bench_now_ns();
		if (get_one(plain, 2 * n + i) != 0)
			return 1;
		get_ref[i] = (uint32_t)(bench_now_ns() - t0);
	}
	kill(server_pid, SIGSTOP);
	for (long i = 0; i < ops; i++) {
		t0 = bench_now_ns();
		if (put_one(a, 2 * n + i) != 0)
			return 1;
		put_t[i] = (uint32_t)(bench_now_ns() - t0);
		t0 = bench_now_ns();
		if (get_one(a, 2 * n + i) != 0)
			return 1;
		get_t[i] = (uint32_t)(bench_now_ns() - t0);
	}
	uint32_t p99_put = pct(put_t, (size_t)ops, 0.99), p99_put_ref = pct(put_ref, (size_t)ops, 0.99);
	uint32_t p99_get = pct(get_t, (size_t)ops, 0.99), p99_get_ref = pct(get_ref, (size_t)ops, 0.99);
	kill(server_pid, SIGCONT);
	free(lp);
	semcache_tier_stop(a);
	semcache_close(a);
	semcache_close(plain);
	sc_redis_close(rc);

	printf("export %.0f entries/s (reference, one pipeline per put: %.0f/s)\n", export_per_s,
	       ref_export_per_s);
	printf("cross-host lag p50 %u ns, p99 %u ns (loopback round trip p50 %u ns)\n", lag50, lag99,
	       rtt50);
	printf("while Redis is stopped: put p99 %u ns (no tier %u), get p99 %u ns (no tier %u)\n",
	       p99_put, p99_put_ref, p99_get, p99_get_ref);
	printf("{\"tier_export_per_s\":%.0f,\"tier_ref_export_per_s\":%.0f,\"tier_lag_p50_ns\":%u,"
	       "\"tier_lag_p99_ns\":%u,\"tier_rtt_p50_ns\":%u,\"tier_put_p99_ns\":%u,"
	       "\"tier_put_p99_ref_ns\":%u,\"tier_get_p99_ns\":%u,\"tier_get_p99_ref_ns\":%u}\n",
	       export_per_s, ref_export_per_s, lag50, lag99, rtt50, p99_put, p99_put_ref, p99_get,
	       p99_get_ref);
	return 0;
}
