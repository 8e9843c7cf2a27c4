/*
 * bench_redis.c - the Redis reference for the exact path: GET and SET of
 * 1 KB values through hiredis on loopback, one round trip per operation.
 *
 * What: semcache's exact lookup claims to beat a cache server because it
 * has no server hop.  The honest yardstick is that hop measured on this
 * machine in the same run, so this program is a reference, not a result:
 * it prints absolute figures and bench/run.sh divides semcache's by them.
 *
 * How: it finds a free loopback port (binds 127.0.0.1 port 0 and reads the
 * port back), starts its own redis-server there with persistence off, and
 * waits until PING answers and INFO names the pid it started, so a server
 * someone else runs is never benchmarked or written to.  It then SETs N
 * keys to 1 KB values (the fill) and GETs random keys, one request at a
 * time like a cache lookup, timing each operation (clock_gettime around
 * the call; its ~20 ns cost is noise next to a round trip).  Keys are
 * bench_exact's ("key-%08d") and values are 1024 bytes, the size of its
 * responses' content.  Every reply is checked for type and length, and a
 * GET's bytes against the value stored, before it counts; a bad reply
 * fails the run.
 *
 * Failure semantics: the server is ours and never outlives us.  It gets
 * SIGTERM and is reaped (SIGKILL after five seconds) on every path out of
 * main, and PR_SET_PDEATHSIG hands it SIGTERM if this process dies first.
 * Its log goes to stderr, so stdout carries only our report.  Without
 * redis-server the program says so, prints {"redis":"unavailable"} and
 * exits 0: the suite still runs on machines without Redis.
 *
 * The last line of output is one JSON object:
 *   {"redis_get_ops_per_s":..,"redis_set_ops_per_s":..,
 *    "redis_get_p50_ns":..,"redis_get_p99_ns":..}
 *
 *   bench_redis [--keys N] [--gets N] [--server PATH]
 *
 * Builds against hiredis 0.14 and 1.x; HIREDIS_MAJOR selects the connect
 * call where their APIs differ.
 */
#include <errno.h>
#include <limits.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "bench_util.h"
#ifdef __linux__
#include <sys/prctl.h>
#endif

#include <hiredis.h>

#define VALUE_BYTES     1024
#define KEY_BYTES       12           /* "key-%08d" */
#define START_ATTEMPTS  3            /* fresh port each time: another process may take ours */
#define START_WAIT_MS   10000        /* for PING to answer */
#define STOP_WAIT_MS    5000         /* after SIGTERM, before SIGKILL */
#define COMMAND_TIMEOUT_MS 5000      /* a stuck server fails the run, never hangs it */

struct opts {
	long keys;
	long gets;
	const char *server;  /* NULL: search $PATH for redis-server */
};

/* The one server this process started; pid 0 when there is none. */
struct server {
	pid_t pid;
	int port;
	char version[32];
};

/* ---------------------------------------------------------------- helpers */

static uint64_t now_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static void sleep_ms(long ms)
{
	struct timespec ts = { ms / 1000, (ms % 1000) * 1000000L };
	while (nanosleep(&ts, &ts) < 0 && errno == EINTR)
		;
}

static struct timeval tv_ms(long ms)
{
	struct timeval tv = { ms / 1000, (ms % 1000) * 1000 };
	return tv;
}

/* i < 10^8 (parse() caps --keys), so the key is always KEY_BYTES long. */
static void make_key(char key[KEY_BYTES + 1], long i)
{
	snprintf(key, KEY_BYTES + 1, "key-%08u", (unsigned)(i % 100000000));
}

/* A value is its key (12 bytes) followed by a fixed filler, so a GET
 * answered with another key's value is caught, and checking a reply costs
 * two memcmp()s rather than rebuilding a kilobyte per operation. */
static uint8_t filler[VALUE_BYTES];

static void filler_init(void)
{
	for (size_t j = 0; j < VALUE_BYTES; j++)
		filler[j] = (uint8_t)('a' + j % 26);
}

static bool value_matches(const redisReply *r, const char key[KEY_BYTES + 1])
{
	return r->len == VALUE_BYTES && r->str && memcmp(r->str, key, KEY_BYTES) == 0 &&
	       memcmp(r->str + KEY_BYTES, filler + KEY_BYTES, VALUE_BYTES - KEY_BYTES) == 0;
}

/* Reply text is the server's, not ours: print at most 80 bytes of it, and
 * only printable ASCII. */
static void print_reply_text(FILE *f, const redisReply *r)
{
	size_t n = r->str ? r->len : 0;
	for (size_t i = 0; i < n && i < 80; i++) {
		unsigned char ch = (unsigned char)r->str[i];
		fputc(ch >= 0x20 && ch < 0x7f ? ch : '?', f);
	}
}

/* The reply exists, has this type and exactly this many bytes. */
static bool reply_is(const redisReply *r, int type, size_t len)
{
	return r && r->type == type && r->len == len && (len == 0 || r->str);
}

static bool reply_is_status(const redisReply *r, const char *text)
{
	size_t n = strlen(text);
	return reply_is(r, REDIS_REPLY_STATUS, n) && memcmp(r->str, text, n) == 0;
}

/* Why a reply was refused, on stderr. */
static void complain(const char *what, const redisContext *c, const redisReply *r)
{
	fprintf(stderr, "bench_redis: %s: ", what);
	if (!r)
		fprintf(stderr, "no reply (%s)\n", c && c->err ? c->errstr : "connection lost");
	else if (r->type == REDIS_REPLY_ERROR) {
		fprintf(stderr, "error reply \"");
		print_reply_text(stderr, r);
		fprintf(stderr, "\"\n");
	} else
		fprintf(stderr, "unexpected reply (type %d, %zu bytes)\n", r->type,
		        r->str ? r->len : (size_t)0);
}

/* --------------------------------------------------------- the server */

/* An executable redis-server: the --server argument, else the first on
 * $PATH.  Returns false if there is none. */
static bool find_server(const char *given, char *out, size_t outsz)
{
	if (given) {
		snprintf(out, outsz, "%s", given);
		return access(out, X_OK) == 0;
	}
	const char *path = getenv("PATH");
	if (!path || !*path)
		path = "/usr/local/bin:/usr/bin:/bin";
	for (const char *p = path; *p;) {
		const char *end = strchr(p, ':');
		size_t n = end ? (size_t)(end - p) : strlen(p);
		if (n > 0 && n + sizeof "/redis-server" <= outsz) {
			memcpy(out, p, n);
			memcpy(out + n, "/redis-server", sizeof "/redis-server");
			if (access(out, X_OK) == 0)
				return true;
		}
		p += n;
		if (*p == ':')
			p++;
	}
	return false;
}

/* A loopback TCP port nobody listens on right now.  The kernel picks it;
 * another process could still take it before redis-server binds it, which
 * server_start() detects and retries. */
static int free_loopback_port(int *port)
{
	struct sockaddr_in a;
	socklen_t alen = sizeof a;
	int rc = 0, fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);

	if (fd < 0)
		return -errno;
	memset(&a, 0, sizeof a);
	a.sin_family = AF_INET;
	a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	a.sin_port = 0;
	if (bind(fd, (struct sockaddr *)&a, sizeof a) < 0 ||
	    getsockname(fd, (struct sockaddr *)&a, &alen) < 0) {
		rc = -errno;
		goto out;
	}
	*port = ntohs(a.sin_port);
	if (*port == 0)
		rc = -EADDRNOTAVAIL;
out:
	close(fd);
	return rc;
}

/* Connect to our port with both a connect and a command timeout. */
static redisContext *connect_loopback(int port, long connect_ms)
{
	struct timeval ctv = tv_ms(connect_ms), cmdtv = tv_ms(COMMAND_TIMEOUT_MS);
	redisContext *c;

#if HIREDIS_MAJOR >= 1
	/* 1.x takes both timeouts at once. */
	redisOptions o;
	memset(&o, 0, sizeof o);
	REDIS_OPTIONS_SET_TCP(&o, "127.0.0.1", port);
	o.connect_timeout = &ctv;
	o.command_timeout = &cmdtv;
	c = redisConnectWithOptions(&o);
#else
	/* 0.14: the connect timeout stays on the socket until replaced. */
	c = redisConnectWithTimeout("127.0.0.1", port, ctv);
	if (c && !c->err && redisSetTimeout(c, cmdtv) != REDIS_OK) {
		redisFree(c);
		c = NULL;
	}
#endif
	if (c && c->err) {
		redisFree(c);
		c = NULL;
	}
	return c;
}

/* Reap our server if it has exited; true if it has (pid is then 0). */
static bool server_exited(struct server *s, int *status)
{
	pid_t r;
	while ((r = waitpid(s->pid, status, WNOHANG)) < 0 && errno == EINTR)
		;
	if (r == s->pid || (r < 0 && errno == ECHILD)) {
		s->pid = 0;
		return true;
	}
	return false;
}

/* SIGTERM, wait, SIGKILL if it lingers, reap.  Only ever our child. */
static void server_stop(struct server *s)
{
	int status;

	if (s->pid <= 0)
		return;
	kill(s->pid, SIGTERM);
	for (long waited = 0; waited < STOP_WAIT_MS; waited += 10) {
		if (server_exited(s, &status))
			return;
		sleep_ms(10);
	}
	fprintf(stderr, "bench_redis: redis-server (pid %d) ignored SIGTERM; killing it\n",
	        (int)s->pid);
	kill(s->pid, SIGKILL);
	while (waitpid(s->pid, &status, 0) < 0 && errno == EINTR)
		;
	s->pid = 0;
}

static void server_spawn(const char *exe, int port, struct server *s)
{
	char portbuf[16];
	const char *argv[] = { exe, "--port", portbuf, "--bind", "127.0.0.1", "--save", "",
	                       "--appendonly", "no", "--daemonize", "no", "--loglevel", "warning",
	                       NULL };
	pid_t parent = getpid();

	snprintf(portbuf, sizeof portbuf, "%d", port);
	fflush(stdout);
	fflush(stderr);
	s->pid = fork();
	if (s->pid != 0)
		return;  /* parent, or fork failed (-1) */
#ifdef __linux__
	/* If we die without stopping it, the kernel sends it SIGTERM; the
	 * getppid() check closes the race with a parent dying before prctl. */
	if (prctl(PR_SET_PDEATHSIG, SIGTERM) < 0 || getppid() != parent)
		_exit(127);
#else
	(void)parent;
#endif
	signal(SIGPIPE, SIG_DFL);
	dup2(STDERR_FILENO, STDOUT_FILENO);  /* its log must not mix with our JSON */
	execv(exe, (char *const *)argv);
	fprintf(stderr, "bench_redis: exec %s: %s\n", exe, strerror(errno));
	_exit(127);
}

/*
 * Is the server answering on s->port the one we started?  INFO server
 * carries "process_id:<pid>"; anything else means another process owns
 * the port (our child then fails to bind and exits).
 */
static int server_check_identity(redisContext *c, struct server *s)
{
	redisReply *r = redisCommand(c, "INFO server");
	char buf[16384];  /* INFO server is about 1.5 KB */
	const char *p;
	long pid;
	int rc = -EPROTO;

	if (!r || r->type != REDIS_REPLY_STRING || !r->str || r->len == 0 ||
	    r->len >= sizeof buf) {
		complain("INFO server", c, r);
		goto out;
	}
	/* Length-counted bytes: copy and terminate before searching them. */
	memcpy(buf, r->str, r->len);
	buf[r->len] = 0;
	p = strstr(buf, "\nprocess_id:");
	pid = p ? strtol(p + 12, NULL, 10) : -1;
	if (pid != (long)s->pid) {
		rc = -EADDRINUSE;
		goto out;
	}
	p = strstr(buf, "redis_version:");
	if (p) {
		size_t n = strcspn(p + 14, "\r\n");
		snprintf(s->version, sizeof s->version, "%.*s", (int)(n < 31 ? n : 31), p + 14);
	}
	rc = 0;
out:
	if (r)
		freeReplyObject(r);
	return rc;
}

/*
 * Start redis-server on a free port and return a connection to it once it
 * answers PING.  On failure nothing of ours is left running.
 */
static int server_start(const char *exe, struct server *s, redisContext **out)
{
	int rc = -ETIMEDOUT, status = 0;
	redisContext *c = NULL;

	for (int attempt = 0; attempt < START_ATTEMPTS; attempt++) {
		if ((rc = free_loopback_port(&s->port)) < 0)
			return rc;
		server_spawn(exe, s->port, s);
		if (s->pid < 0) {
			rc = -errno;
			s->pid = 0;
			return rc;
		}
		rc = -ETIMEDOUT;
		for (long waited = 0; waited < START_WAIT_MS; waited += 20) {
			if (server_exited(s, &status)) {
				rc = -ECHILD;
				break;
			}
			c = connect_loopback(s->port, 200);
			if (c) {
				redisReply *r = redisCommand(c, "PING");
				bool pong = reply_is_status(r, "PONG");
				if (r)
					freeReplyObject(r);
				if (pong) {
					rc = server_check_identity(c, s);
					break;
				}
				redisFree(c);
				c = NULL;
			}
			sleep_ms(20);
		}
		if (rc == 0) {
			*out = c;
			return 0;
		}
		if (c)
			redisFree(c);
		c = NULL;
		if (rc == -ECHILD && WIFEXITED(status) && WEXITSTATUS(status) == 127)
			return rc;  /* could not exec: another port will not help */
		server_stop(s);
		fprintf(stderr, "bench_redis: port %d: %s; %s\n", s->port,
		        rc == -ECHILD ? "redis-server exited during start-up" :
		        rc == -EADDRINUSE ? "another server answers there" :
		        "redis-server did not answer PING",
		        attempt + 1 < START_ATTEMPTS ? "retrying on another port" : "giving up");
	}
	return rc;
}

/* ------------------------------------------------------------ the runs */

/* SET keys 0..n-1, timing each; 0 or -EPROTO on a bad reply. */
static int run_sets(redisContext *c, long n, uint32_t *lat, double *per_s)
{
	char key[KEY_BYTES + 1];
	uint8_t value[VALUE_BYTES];
	const char *argv[3] = { "SET", key, (const char *)value };
	const size_t argl[3] = { 3, KEY_BYTES, VALUE_BYTES };
	uint64_t start = now_ns();

	memcpy(value, filler, VALUE_BYTES);
	for (long i = 0; i < n; i++) {
		make_key(key, i);
		memcpy(value, key, KEY_BYTES);
		uint64_t t0 = now_ns();
		redisReply *r = redisCommandArgv(c, 3, argv, argl);
		uint64_t d = now_ns() - t0;
		lat[i] = d > UINT32_MAX ? UINT32_MAX : (uint32_t)d;
		bool ok = reply_is_status(r, "OK");
		if (!ok)
			complain("SET", c, r);
		if (r)
			freeReplyObject(r);
		if (!ok)
			return -EPROTO;
	}
	*per_s = (double)n / ((double)(now_ns() - start) / 1e9);
	return 0;
}

/* GET n random keys of 0..keys-1; every reply must be that key's value. */
static int run_gets(redisContext *c, long keys, long n, uint64_t seed, uint32_t *lat,
                    double *per_s)
{
	char key[KEY_BYTES + 1];
	const char *argv[2] = { "GET", key };
	const size_t argl[2] = { 3, KEY_BYTES };
	uint64_t start = now_ns();

	for (long i = 0; i < n; i++) {
		long k = (long)(xs(&seed) % (uint64_t)keys);
		make_key(key, k);
		uint64_t t0 = now_ns();
		redisReply *r = redisCommandArgv(c, 2, argv, argl);
		uint64_t d = now_ns() - t0;
		if (lat)
			lat[i] = d > UINT32_MAX ? UINT32_MAX : (uint32_t)d;
		bool ok = reply_is(r, REDIS_REPLY_STRING, VALUE_BYTES) && value_matches(r, key);
		if (!ok) {
			if (reply_is(r, REDIS_REPLY_STRING, VALUE_BYTES))
				fprintf(stderr, "bench_redis: GET %s: wrong value\n", key);
			else
				complain("GET", c, r);
		}
		if (r)
			freeReplyObject(r);
		if (!ok)
			return -EPROTO;
	}
	if (per_s)
		*per_s = (double)n / ((double)(now_ns() - start) / 1e9);
	return 0;
}

/* ------------------------------------------------------------- driver */

static void usage(FILE *f)
{
	fprintf(f,
	        "usage: bench_redis [--keys N] [--gets N] [--server PATH]\n"
	        "  --keys N       keys SET to 1 KB values (default 100000)\n"
	        "  --gets N       GETs of random keys, timed (default 200000)\n"
	        "  --server PATH  redis-server to start (default: the first on $PATH)\n"
	        "Starts its own redis-server on a free 127.0.0.1 port, measures one\n"
	        "round trip per operation, stops the server, and ends with one JSON line.\n");
}

static bool parse_count(const char *s, long max, long *out)
{
	char *end;
	errno = 0;
	long v = strtol(s, &end, 10);
	if (errno || end == s || *end || v < 1 || v > max)
		return false;
	*out = v;
	return true;
}

static int parse(int argc, char **argv, struct opts *o)
{
	o->keys = 100000;
	o->gets = 200000;
	o->server = NULL;
	for (int i = 1; i < argc; i++) {
		const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
		if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
			usage(stdout);
			exit(0);
		}
		if (!v)
			goto bad;
		i++;
		if (!strcmp(a, "--keys")) {
			if (!parse_count(v, 99999999, &o->keys))  /* keys have 8 digits */
				goto bad;
		} else if (!strcmp(a, "--gets")) {
			if (!parse_count(v, 1000000000, &o->gets))
				goto bad;
		} else if (!strcmp(a, "--server")) {
			o->server = v;
		} else {
			goto bad;
		}
	}
	return 0;
bad:
	usage(stderr);
	return -1;
}

int main(int argc, char **argv)
{
	struct opts o;
	struct server srv = { 0 };
	redisContext *c = NULL;
	uint32_t *lat = NULL;
	char exe[PATH_MAX];
	double set_s = 0, get_s = 0;
	uint32_t set_p50, set_p99, get_p50, get_p99;
	int rc, status = 1;

	if (parse(argc, argv, &o) < 0)
		return 2;
	if (!find_server(o.server, exe, sizeof exe)) {
		printf("bench_redis: redis-server %s; the Redis reference is skipped "
		       "(install redis-server to measure it)\n",
		       o.server ? "is not an executable file" : "not installed (not on $PATH)");
		printf("{\"redis\":\"unavailable\"}\n");
		return 0;
	}
	/* A server that goes away mid-write must fail the run, not kill it
	 * before it can report and reap. */
	signal(SIGPIPE, SIG_IGN);

	size_t nlat = (size_t)(o.keys > o.gets ? o.keys : o.gets);
	lat = malloc(nlat * sizeof *lat);
	if (!lat) {
		fprintf(stderr, "bench_redis: out of memory\n");
		goto out;
	}
	filler_init();
	if ((rc = server_start(exe, &srv, &c)) < 0) {
		fprintf(stderr, "bench_redis: could not start %s: %s\n", exe,
		        rc == -ECHILD ? "it exited (see its log above)" : strerror(-rc));
		goto out;
	}

	if (run_sets(c, o.keys, lat, &set_s) < 0)
		goto out;
	qsort(lat, (size_t)o.keys, sizeof *lat, cmp_u32);
	set_p50 = lat[o.keys / 2];
	set_p99 = lat[o.keys * 99 / 100];

	/* Warm the connection and the server's structures, then time. */
	if (run_gets(c, o.keys, o.gets / 10 < 10000 ? o.gets / 10 : 10000, 3, NULL, NULL) < 0 ||
	    run_gets(c, o.keys, o.gets, 1234, lat, &get_s) < 0)
		goto out;
	qsort(lat, (size_t)o.gets, sizeof *lat, cmp_u32);
	get_p50 = lat[o.gets / 2];
	get_p99 = lat[o.gets * 99 / 100];

	printf("redis reference: redis-server %s (pid %d) on 127.0.0.1:%d, hiredis %d.%d\n",
	       srv.version[0] ? srv.version : "?", (int)srv.pid, srv.port, HIREDIS_MAJOR,
	       HIREDIS_MINOR);
	printf("%ld keys of %d B; %ld GETs of random keys; one request per round trip\n", o.keys,
	       VALUE_BYTES, o.gets);
	printf("%-24s %12s %12s %12s\n", "measure", "ops/s", "p50 ns", "p99 ns");
	printf("%-24s %12.0f %12u %12u\n", "SET 1 KB (fill)", set_s, set_p50, set_p99);
	printf("%-24s %12.0f %12u %12u\n", "GET 1 KB hit", get_s, get_p50, get_p99);
	printf("{\"redis_get_ops_per_s\":%.0f,\"redis_set_ops_per_s\":%.0f,"
	       "\"redis_get_p50_ns\":%u,\"redis_get_p99_ns\":%u}\n",
	       get_s, set_s, get_p50, get_p99);
	status = 0;
out:
	if (c)
		redisFree(c);
	server_stop(&srv);
	free(lat);
	return status;
}
