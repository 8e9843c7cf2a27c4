/*
 * redis_fixture.h - a real redis-server for one integration test.
 *
 * Each server is ours alone: a fresh loopback port the kernel picked, a
 * private temporary directory (its unix socket and log live there), no
 * persistence (--save "" --appendonly no), and it is identified before
 * use by the pid INFO reports, so a server somebody else runs on the same
 * machine is never touched, written to or signalled.  Only the pid we
 * forked is ever signalled.
 *
 * It never outlives the test: tr_stop() (SIGCONT in case a test left it
 * stopped, SIGTERM, SIGKILL after 5 s, reap) runs from the tests' .fini,
 * which Criterion runs after a failed assertion too; and the child asks
 * the kernel for SIGKILL when the test process dies (PR_SET_PDEATHSIG),
 * which covers a crash or Criterion's timeout killing the test.
 *
 * Without redis-server the fixture fails the test with a message saying
 * to install it: these suites must never pass by skipping.
 * SEMCACHE_REDIS_SERVER names another binary.
 */
#ifndef SC_TEST_REDIS_FIXTURE_H
#define SC_TEST_REDIS_FIXTURE_H

#include <criterion/criterion.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <hiredis.h>

#define TR_MAX_ARGS 24

typedef struct tr_server {
	pid_t pid;                  /* 0 when not running */
	int port;
	char dir[64];               /* private temp dir */
	char sock[128];             /* unix socket inside it */
	const char *extra[TR_MAX_ARGS]; /* more redis-server arguments */
	const char *password;       /* what the fixture AUTHs with, if any */
	bool stopped;               /* SIGSTOPped by the test */
} tr_server;

static inline void tr_sleep_ms(long ms)
{
	struct timespec ts = { ms / 1000, (ms % 1000) * 1000000L };
	while (nanosleep(&ts, &ts) < 0 && errno == EINTR)
		;
}

static inline long long tr_now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* The redis-server to run: $SEMCACHE_REDIS_SERVER, else the first on PATH. */
static inline bool tr_find_server(char *out, size_t outsz)
{
	const char *given = getenv("SEMCACHE_REDIS_SERVER");
	const char *path = getenv("PATH");

	if (given && *given) {
		snprintf(out, outsz, "%s", given);
		return access(out, X_OK) == 0;
	}
	if (!path || !*path)
		path = "/usr/local/bin:/usr/bin:/bin";
	while (*path) {
		size_t n = strcspn(path, ":");
		if (n && (size_t)snprintf(out, outsz, "%.*s/redis-server", (int)n, path) < outsz &&
		    access(out, X_OK) == 0)
			return true;
		path += n + (path[n] == ':');
	}
	return false;
}

/* A loopback port nobody listens on now (the kernel's pick). */
static inline int tr_free_port(void)
{
	struct sockaddr_in a = { .sin_family = AF_INET };
	socklen_t l = sizeof a;
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0), port = -1;

	a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	if (fd >= 0 && bind(fd, (struct sockaddr *)&a, sizeof a) == 0 &&
	    getsockname(fd, (struct sockaddr *)&a, &l) == 0)
		port = ntohs(a.sin_port);
	if (fd >= 0)
		close(fd);
	return port;
}

static inline void tr_spawn(tr_server *s, const char *exe)
{
	char port[16], log[160];
	const char *argv[TR_MAX_ARGS + 32];
	int n = 0;
	pid_t parent = getpid();

	snprintf(port, sizeof port, "%d", s->port);
	snprintf(log, sizeof log, "%s/redis.log", s->dir);
	argv[n++] = exe;
	argv[n++] = "--port"; argv[n++] = port;
	argv[n++] = "--bind"; argv[n++] = "127.0.0.1";
	argv[n++] = "--save"; argv[n++] = "";
	argv[n++] = "--appendonly"; argv[n++] = "no";
	argv[n++] = "--daemonize"; argv[n++] = "no";
	argv[n++] = "--dir"; argv[n++] = s->dir;
	argv[n++] = "--unixsocket"; argv[n++] = s->sock;
	argv[n++] = "--unixsocketperm"; argv[n++] = "700";
	argv[n++] = "--logfile"; argv[n++] = log;
	argv[n++] = "--loglevel"; argv[n++] = "notice";
	for (int i = 0; i < TR_MAX_ARGS && s->extra[i]; i++)
		argv[n++] = s->extra[i];
	argv[n] = NULL;

	fflush(NULL);
	s->pid = fork();
	if (s->pid != 0)
		return;
	/* Die with the test process, whatever kills it; the getppid() check
	 * closes the race with a parent that died before prctl(). */
	if (prctl(PR_SET_PDEATHSIG, SIGKILL) < 0 || getppid() != parent)
		_exit(127);
	execv(exe, (char *const *)argv);
	_exit(127);
}

/* Is the server on s->port the child we forked?  INFO names its pid. */
static inline bool tr_is_ours(tr_server *s)
{
	struct timeval tv = { 0, 300000 };
	redisContext *c = redisConnectWithTimeout("127.0.0.1", s->port, tv);
	redisReply *r = NULL;
	bool ours = false;

	if (!c || c->err)
		goto out;
	redisSetTimeout(c, tv);
	if (s->password) {
		r = redisCommand(c, "AUTH %s", s->password);
		if (!r || r->type != REDIS_REPLY_STATUS)
			goto out;
		freeReplyObject(r);
	}
	r = redisCommand(c, "INFO server");
	if (r && r->type == REDIS_REPLY_STRING && r->str) {
		char want[32];
		snprintf(want, sizeof want, "\nprocess_id:%d\r", (int)s->pid);
		ours = strstr(r->str, want) != NULL;
	}
out:
	if (r)
		freeReplyObject(r);
	if (c)
		redisFree(c);
	return ours;
}

static inline bool tr_exited(tr_server *s)
{
	int st;
	pid_t r;

	while ((r = waitpid(s->pid, &st, WNOHANG)) < 0 && errno == EINTR)
		;
	if (r == s->pid || (r < 0 && errno == ECHILD)) {
		s->pid = 0;
		return true;
	}
	return false;
}

/* Start (or restart, on the same port) and wait until it answers as ours.
 * 0, or -1 with the reason printed. */
static inline int tr_launch(tr_server *s, bool same_port)
{
	char exe[PATH_MAX];

	if (!tr_find_server(exe, sizeof exe)) {
		fprintf(stderr, "redis-server not found (PATH or SEMCACHE_REDIS_SERVER): the Redis "
		                "integration tests need it; scripts/deps.sh installs it\n");
		return -1;
	}
	for (int attempt = 0; attempt < 3; attempt++) {
		if (!same_port && (s->port = tr_free_port()) <= 0)
			return -1;
		tr_spawn(s, exe);
		if (s->pid < 0) {
			s->pid = 0;
			return -1;
		}
		for (long long t0 = tr_now_ms(); tr_now_ms() - t0 < 10000; tr_sleep_ms(20)) {
			if (tr_exited(s))
				break;
			if (tr_is_ours(s))
				return 0;
		}
		if (s->pid) {
			kill(s->pid, SIGKILL);
			while (waitpid(s->pid, NULL, 0) < 0 && errno == EINTR)
				;
			s->pid = 0;
		}
		fprintf(stderr, "redis-server did not come up on port %d (see %s/redis.log)\n",
		        s->port, s->dir);
		if (same_port)
			tr_sleep_ms(200); /* the port may be free again in a moment */
	}
	return -1;
}

static inline void tr_stop(tr_server *s);

/* Start a server with extra arguments (NULL-terminated list, may be NULL);
 * fails the test if it cannot. */
static inline void tr_start(tr_server *s, const char *const *extra, const char *password)
{
	memset(s, 0, sizeof *s);
	for (int i = 0; extra && extra[i] && i < TR_MAX_ARGS - 1; i++)
		s->extra[i] = extra[i];
	s->password = password;
	snprintf(s->dir, sizeof s->dir, "/tmp/sc-redis-XXXXXX");
	cr_assert_not_null(mkdtemp(s->dir), "mkdtemp: %s", strerror(errno));
	snprintf(s->sock, sizeof s->sock, "%s/redis.sock", s->dir);
	if (tr_launch(s, false) != 0) {
		/* Criterion skips .fini when .init fails: clean up here. */
		tr_stop(s);
		cr_assert_fail("could not start redis-server (is it installed?)");
	}
}

static inline void tr_signal(tr_server *s, int sig)
{
	cr_assert_gt(s->pid, 0, "no server of ours to signal");
	kill(s->pid, sig);
	if (sig == SIGSTOP)
		s->stopped = true;
	if (sig == SIGCONT)
		s->stopped = false;
}

/* SIGKILL and reap: the crash the tier must survive. */
static inline void tr_kill9(tr_server *s)
{
	if (s->pid <= 0)
		return;
	kill(s->pid, SIGKILL);
	while (waitpid(s->pid, NULL, 0) < 0 && errno == EINTR)
		;
	s->pid = 0;
	s->stopped = false;
}

static inline int tr_restart(tr_server *s)
{
	unlink(s->sock);
	return tr_launch(s, true);
}

static inline void tr_stop(tr_server *s)
{
	char log[160];

	if (s->pid > 0) {
		if (s->stopped)
			kill(s->pid, SIGCONT);
		kill(s->pid, SIGTERM);
		for (int i = 0; i < 500 && !tr_exited(s); i++)
			tr_sleep_ms(10);
		if (s->pid > 0)
			tr_kill9(s);
	}
	if (s->dir[0]) {
		snprintf(log, sizeof log, "%s/redis.log", s->dir);
		unlink(log);
		unlink(s->sock);
		rmdir(s->dir);
		s->dir[0] = '\0';
	}
}

/* ------------------------------------------------------------------------
 * What the Redis suites share besides the server
 * ---------------------------------------------------------------------- */

/* Wait until cond holds, polling every 10 ms, at most TR_WAIT_MS; fail the
 * test with what was awaited if it never does (no timed assertion: the
 * bound is generous, only "never" fails). */
#define TR_WAIT_MS 20000
#define TR_AWAIT(cond, what)                                                           \
	do {                                                                           \
		long long t0_ = tr_now_ms();                                           \
		while (!(cond) && tr_now_ms() - t0_ < TR_WAIT_MS)                      \
			tr_sleep_ms(10);                                               \
		cr_assert((cond), "never: %s", what);                                  \
	} while (0)

#ifdef SEED_FIXTURE_PY
/* Run seed_fixture.py with args (NULL-terminated, at most 9): its exit
 * status, 128 when it did not exit.  Debian's python3-redis is installed
 * for /usr/bin/python3; SEMCACHE_TEST_PYTHON overrides. */
static inline int tr_run_python(const char *const *args)
{
	const char *py = getenv("SEMCACHE_TEST_PYTHON");
	const char *argv[12];
	int n = 0, st;
	pid_t pid;

	if (!py || !*py)
		py = access("/usr/bin/python3", X_OK) == 0 ? "/usr/bin/python3" : "python3";
	argv[n++] = py;
	argv[n++] = SEED_FIXTURE_PY;
	for (int i = 0; args[i] && n < 11; i++)
		argv[n++] = args[i];
	argv[n] = NULL;
	fflush(NULL);
	pid = fork();
	cr_assert_geq(pid, 0);
	if (pid == 0) {
		execvp(py, (char *const *)argv);
		_exit(127);
	}
	while (waitpid(pid, &st, 0) < 0 && errno == EINTR)
		;
	return WIFEXITED(st) ? WEXITSTATUS(st) : 128;
}
#endif

#endif
