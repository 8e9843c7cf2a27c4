/*
 * tier_threads.c - the Redis tier's threads under ThreadSanitizer: two
 * segments, each with its syncer and its doorbell thread, writers putting
 * and invalidating on one, readers (with read-through) and tier_stat on
 * the other, then both tiers stopped and started again while the writers
 * run.  A plain program like threads.c (Criterion does not run under
 * TSan): it starts its own redis-server on a free loopback port (no
 * persistence, killed with us by PR_SET_PDEATHSIG), and exits 0 when the
 * entries written on A were found on B, 1 otherwise.  Also run in the
 * normal build as a smoke test.
 *
 *   tsan_tier_threads [SECONDS]
 */
#include <netinet/in.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "../common.h"
#include "redis_conn.h"

#define DIM 8

static char pa[256], pb[256];
static semcache *A, *B;
static int port;
static _Atomic int stop;
static _Atomic long puts_done, found;

static void emb(int k, float *e)
{
	for (int i = 0; i < DIM; i++)
		e[i] = (float)((k * 31 + i * 7) % 13) - 6.0f + (i == k % DIM ? 20.0f : 0.0f);
}

static void *writer(void *arg)
{
	uint64_t s = (uintptr_t)arg + 5;
	char key[32], content[64];
	float e[DIM];
	for (long i = 0; !atomic_load(&stop); i++) {
		int k = (int)(test_rng(&s) % 300);
		snprintf(key, sizeof key, "k%d", k);
		if (test_rng(&s) % 40 == 0) {
			(void)semcache_invalidate(A, "ns", key, NULL);
			continue;
		}
		snprintf(content, sizeof content, "v%d", k);
		semcache_response r = simple_response(content);
		emb(k, e);
		semcache_put_args a = { .ns = "ns", .key = key, .scope = "m", .response = &r,
		                        .embedding = e, .embedding_dim = DIM };
		if (semcache_put(A, &a) == 0)
			atomic_fetch_add(&puts_done, 1);
		if (i % 64 == 0)
			usleep(1000);
	}
	return NULL;
}

static void *reader(void *arg)
{
	uint64_t s = (uintptr_t)arg + 17;
	char key[32], want[64];
	while (!atomic_load(&stop)) {
		int k = (int)(test_rng(&s) % 300);
		semcache_response *out = NULL;
		snprintf(key, sizeof key, "k%d", k);
		if (semcache_get(B, "ns", key, 0, &out) == 0) {
			snprintf(want, sizeof want, "v%d", k);
			if (strcmp(out->content, want) == 0)
				atomic_fetch_add(&found, 1);
			semcache_response_free(out);
		}
		semcache_tier_stats st;
		(void)semcache_tier_stat(B, &st);
		(void)semcache_tier_stat(A, &st);
	}
	return NULL;
}

static int free_port(void)
{
	struct sockaddr_in a = { .sin_family = AF_INET };
	socklen_t l = sizeof a;
	int fd = socket(AF_INET, SOCK_STREAM, 0), p = -1;
	a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	if (fd >= 0 && bind(fd, (struct sockaddr *)&a, sizeof a) == 0 &&
	    getsockname(fd, (struct sockaddr *)&a, &l) == 0)
		p = ntohs(a.sin_port);
	if (fd >= 0)
		close(fd);
	return p;
}

static pid_t start_redis(void)
{
	char ps[16];
	pid_t parent = getpid();
	snprintf(ps, sizeof ps, "%d", port);
	pid_t pid = fork();
	if (pid != 0)
		return pid;
	if (prctl(PR_SET_PDEATHSIG, SIGKILL) < 0 || getppid() != parent)
		_exit(127);
	execlp("redis-server", "redis-server", "--port", ps, "--bind", "127.0.0.1", "--save", "",
	       "--appendonly", "no", "--daemonize", "no", "--logfile", "/dev/null", (char *)NULL);
	_exit(127);
}

static bool redis_up(void)
{
	sc_redis_config cfg = { .host = "127.0.0.1", .port = port, .connect_timeout_ms = 500,
	                        .command_timeout_ms = 500 };
	sc_redis_conn *c = NULL;
	int rc = sc_redis_connect(&cfg, &c);
	sc_redis_close(c);
	return rc == 0;
}

static int start_tiers(void)
{
	semcache_tier_options o;
	semcache_tier_options_init(&o);
	o.port = port;
	o.prefix = "tsan:";
	o.index_pass_ms = 200;
	o.command_timeout_ms = 2000;
	int rc = semcache_tier_start(A, &o);
	o.read_through_ms = 50;
	return rc ? rc : semcache_tier_start(B, &o);
}

int main(int argc, char **argv)
{
	int secs = argc > 1 ? atoi(argv[1]) : 3;
	pthread_t w[2], r[2];
	int status = 1;

	port = free_port();
	pid_t rp = start_redis();
	if (port < 0 || rp < 0)
		return 1;
	for (int i = 0; i < 200 && !redis_up(); i++)
		usleep(20000);
	if (!redis_up()) {
		fprintf(stderr, "tier_threads: redis-server did not come up (installed?)\n");
		goto out;
	}
	semcache_options so = test_options(4096, DIM);
	so.arena_bytes = 16u << 20;
	test_path(pa, sizeof pa, "tsan-tierA");
	test_path(pb, sizeof pb, "tsan-tierB");
	if (semcache_open(pa, &so, &A) || semcache_open(pb, &so, &B) || start_tiers())
		goto out;
	for (uintptr_t i = 0; i < 2; i++) {
		pthread_create(&w[i], NULL, writer, (void *)i);
		pthread_create(&r[i], NULL, reader, (void *)i);
	}
	/* half way, both tiers stop and start again under load */
	struct timespec half = { secs / 2, (secs % 2) * 500000000L };
	nanosleep(&half, NULL);
	if (semcache_tier_stop(A) || semcache_tier_stop(B) || start_tiers())
		fprintf(stderr, "tier_threads: restart failed\n");
	nanosleep(&half, NULL);
	atomic_store(&stop, 1);
	for (int i = 0; i < 2; i++) {
		pthread_join(w[i], NULL);
		pthread_join(r[i], NULL);
	}
	semcache_tier_stats sa, sb;
	semcache_tier_stat(A, &sa);
	semcache_tier_stat(B, &sb);
	printf("tier_threads: %ld puts on A, %ld hits on B, A exported %llu, B imported %llu "
	       "(read-through %llu)\n",
	       atomic_load(&puts_done), atomic_load(&found), (unsigned long long)sa.exported,
	       (unsigned long long)sb.imported, (unsigned long long)sb.read_through);
	status = atomic_load(&puts_done) > 0 && atomic_load(&found) > 0 && sb.imported > 0 ? 0 : 1;
out:
	semcache_close(A);
	semcache_close(B);
	unlink(pa);
	unlink(pb);
	kill(rp, SIGKILL);
	waitpid(rp, NULL, 0);
	return status;
}
