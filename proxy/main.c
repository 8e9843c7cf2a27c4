/*
 * main.c - semcache-proxy's master process: options, the segment check,
 * the listening socket, prefork workers.
 *
 * What: an OpenAI-compatible caching proxy.  Clients send chat-completion
 * requests here instead of to the model's API; answers come from the
 * shared semcache segment when an equal (exact) or close enough (semantic)
 * request of the same namespace and scope was answered before, else from
 * the upstream, and are stored for the next caller (see http.c).
 *
 * How: the master builds the configuration (config.c), learns the
 * embedding dimension (configured, else by one embedding call to the
 * upstream), opens or creates the segment and refuses one whose dimension
 * differs, binds the listening socket, maps the shared metrics and forks N
 * workers (worker.c) that all accept on that socket.  Then it only waits
 * for signals, synchronously (sigtimedwait on a blocked set: no handler
 * runs at a random point):
 *   SIGCHLD  reap; a worker of the current generation that died is
 *            replaced (after 1 s if it died within 1 s of starting, so a
 *            worker that cannot start does not spin the machine)
 *   SIGHUP   rebuild the configuration from the same file and flags; if it
 *            is valid, fork a new generation of workers and SIGTERM the old
 *            ones (they drain); listen, path, geometry and embedding
 *            settings need a restart and keep their old values
 *   SIGTERM, SIGINT  SIGTERM every worker, wait until they drained (at most
 *            drain_timeout_ms + 5 s, then SIGKILL), exit 0
 * Why prefork: a worker that crashes takes only its own connections; the
 * segment was designed for many processes, and the master holds nothing a
 * crash could corrupt.
 */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <netdb.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "proxy.h"

#define MAX_WORKERS 128
#define MAX_CLI 64

static const char *const cli_keys[] = {
	"listen", "upstream", "path", "workers", "embedding-model", "embedding-dim",
	"threshold", "user-header", "anonymous", "disable-kb", "max-body-bytes",
	"upstream-timeout-ms", "drain-timeout-ms", "exact-ttl", "semantic-ttl", "slots",
	"arena-mb", "max-connections", "upstream-api-key", NULL,
};

static const char usage_text[] =
	"usage: semcache-proxy --listen HOST:PORT --upstream URL [--config FILE]\n"
	"                      [--workers N] [--path SEGMENT] [--KEY VALUE ...]\n"
	"\n"
	"An OpenAI-compatible caching proxy: POST /v1/chat/completions is answered\n"
	"from the shared semcache segment (exact, then semantic) or forwarded to the\n"
	"upstream and stored.  GET /metrics (Prometheus), GET /health.\n"
	"\n"
	"  --listen HOST:PORT       address to serve (port 0: any free port, printed)\n"
	"  --upstream URL           upstream API base, e.g. http://127.0.0.1:9000/v1\n"
	"  --config FILE            'key = value' settings (same names as the flags)\n"
	"  --workers N              worker processes (default: one per CPU)\n"
	"  --path SEGMENT           segment file (default " SEMCACHE_DEFAULT_PATH ")\n"
	"  --embedding-model NAME   embedding model (default text-embedding-ada-002;\n"
	"                           empty: exact lookups only)\n"
	"  --embedding-dim N        its dimension (default: ask the upstream once)\n"
	"  --threshold X            semantic similarity threshold (default 0.87)\n"
	"  --user-header NAME       header naming the user (wins over the body's user)\n"
	"  --anonymous share|nocache  requests without a user: one shared namespace\n"
	"                           (default) or no caching\n"
	"  --disable-kb A,B         knowledge bases (X-Semcache-KB) never cached\n"
	"  --max-body-bytes N       largest request body (default 4194304)\n"
	"  --upstream-timeout-ms N  upstream call timeout (default 120000)\n"
	"  --drain-timeout-ms N     how long SIGTERM waits for requests (default 30000)\n"
	"  --exact-ttl S, --semantic-ttl S  TTLs in seconds for stored answers\n"
	"                           (default: the segment's)\n"
	"  --slots N, --arena-mb N  geometry of a segment this proxy creates\n"
	"  --max-connections N      per worker (default 256)\n"
	"  --upstream-api-key KEY   Authorization sent when the client sends none\n"
	"Signals: SIGTERM/SIGINT drain and exit; SIGHUP reloads the configuration.\n";

typedef struct cli_pair {
	const char *key, *value;
} cli_pair;

static cli_pair g_cli[MAX_CLI];
static size_t g_ncli;
static char g_config_file[512];

void px_log(const char *fmt, ...)
{
	char line[1024];
	va_list ap;
	int n;

	n = snprintf(line, sizeof line, "semcache-proxy[%d]: ", (int)getpid());
	va_start(ap, fmt);
	vsnprintf(line + n, sizeof line - (size_t)n, fmt, ap);
	va_end(ap);
	fprintf(stderr, "%s\n", line);
}

/* defaults, then the file, then the flags */
static int build_config(px_config *c, char *err, size_t errlen)
{
	int rc;

	px_config_defaults(c);
	if (g_config_file[0]) {
		snprintf(c->config_file, sizeof c->config_file, "%s", g_config_file);
		rc = px_config_load(c, g_config_file, err, errlen);
		if (rc)
			return rc;
	}
	for (size_t i = 0; i < g_ncli; i++) {
		rc = px_config_set(c, g_cli[i].key, g_cli[i].value, err, errlen);
		if (rc)
			return rc;
	}
	return px_config_check(c, err, errlen);
}

static int parse_args(int argc, char **argv)
{
	struct option opts[32];
	size_t n = 0;
	int ch, idx;

	for (; cli_keys[n]; n++)
		opts[n] = (struct option){cli_keys[n], required_argument, NULL, 'k'};
	opts[n++] = (struct option){"config", required_argument, NULL, 'c'};
	opts[n++] = (struct option){"help", no_argument, NULL, 'h'};
	opts[n] = (struct option){0};
	while ((ch = getopt_long(argc, argv, "h", opts, &idx)) != -1) {
		switch (ch) {
		case 'k':
			if (g_ncli == MAX_CLI) {
				fprintf(stderr, "semcache-proxy: too many options\n");
				return 2;
			}
			g_cli[g_ncli++] = (cli_pair){opts[idx].name, optarg};
			break;
		case 'c':
			if (strlen(optarg) >= sizeof g_config_file) {
				fprintf(stderr, "semcache-proxy: --config: path too long\n");
				return 2;
			}
			snprintf(g_config_file, sizeof g_config_file, "%s", optarg);
			break;
		case 'h':
			fputs(usage_text, stdout);
			return 1;
		default:
			fputs(usage_text, stderr);
			return 2;
		}
	}
	if (optind < argc) {
		fprintf(stderr, "semcache-proxy: unexpected argument '%s'\n", argv[optind]);
		return 2;
	}
	return 0;
}

/* ------------------------------------------------------------------------
 * Segment and embedding dimension
 * ---------------------------------------------------------------------- */
/* The segment's dimension after checking it against the embedding model's:
 * -EINVAL (message printed) on a mismatch. */
static int check_segment(const px_config *cfg, uint32_t *seg_dim)
{
	semcache_options o;
	semcache_stats st;
	semcache *c = NULL;
	uint32_t want = cfg->embedding_dim;
	bool learned = false;
	char err[256];
	int rc;

	if (cfg->embedding_model[0] && !want) {
		float *v = NULL;
		double secs;

		rc = px_up_embed(cfg, "semcache-proxy dimension probe", NULL, &v, &want, &secs, err,
		                 sizeof err);
		free(v);
		if (rc) {
			px_log("cannot learn the embedding dimension of %s from the upstream: %s",
			       cfg->embedding_model, err);
			want = 0;
		} else {
			learned = true;
		}
	}
	semcache_options_init(&o);
	o.slots = o.dim = o.block_size = o.max_procs = o.max_payload = 0;
	o.arena_bytes = 0;
	o.flags = SEMCACHE_OPEN_NOCREATE;
	rc = semcache_open(cfg->path, &o, &c);
	if (rc == -ENOENT) {
		if (cfg->embedding_model[0] && !want) {
			px_log("segment %s does not exist and the embedding dimension is unknown: "
			       "start the upstream or set embedding_dim", cfg->path);
			return -EINVAL;
		}
		semcache_options_init(&o);
		if (cfg->slots)
			o.slots = cfg->slots;
		if (cfg->arena_mb)
			o.arena_bytes = (uint64_t)cfg->arena_mb << 20;
		o.dim = cfg->embedding_model[0] ? want : 0;
		o.threshold = (float)cfg->threshold; /* what `semcache stat` shows */
		if (cfg->exact_ttl_s)
			o.exact_ttl_ms = cfg->exact_ttl_s * 1000;
		if (cfg->semantic_ttl_s)
			o.semantic_ttl_ms = cfg->semantic_ttl_s * 1000;
		rc = semcache_open(cfg->path, &o, &c);
		if (rc) {
			px_log("cannot create segment %s: %s", cfg->path, semcache_strerror(rc));
			return rc;
		}
		px_log("created segment %s (embedding dimension %u)", cfg->path, o.dim);
	} else if (rc) {
		px_log("cannot open segment %s: %s", cfg->path, semcache_strerror(rc));
		return rc;
	}
	rc = semcache_stat(c, &st);
	if (rc) {
		px_log("cannot read segment %s: %s", cfg->path, semcache_strerror(rc));
		goto out;
	}
	if (cfg->embedding_model[0] && want && st.dim != want) {
		px_log("segment %s has embedding dimension %u, but the embedding model %s %s %u: "
		       "use another --path, or remove the segment (semcache destroy) to start "
		       "afresh", cfg->path, st.dim, cfg->embedding_model,
		       learned ? "gives" : "is configured with", want);
		rc = -EINVAL;
		goto out;
	}
	if (cfg->embedding_model[0] && !want)
		px_log("embedding dimension unknown: using the segment's (%u); each request's "
		       "embedding is checked against it", st.dim);
	*seg_dim = cfg->embedding_model[0] ? st.dim : 0;
out:
	semcache_close(c);
	return rc;
}

/* ------------------------------------------------------------------------
 * Listening socket
 * ---------------------------------------------------------------------- */
static int open_listener(const char *hostport, char *shown, size_t shown_len)
{
	char host[256], port[16], hbuf[NI_MAXHOST], pbuf[NI_MAXSERV];
	struct addrinfo hints = {0}, *ai = NULL, *p;
	struct sockaddr_storage ss;
	socklen_t sl = sizeof ss;
	const char *colon = strrchr(hostport, ':');
	size_t hl;
	int fd = -1, one = 1, rc;

	hl = (size_t)(colon - hostport);
	if (hl >= sizeof host || strlen(colon + 1) >= sizeof port || !colon[1])
		return -EINVAL;
	memcpy(host, hostport, hl);
	host[hl] = '\0';
	if (hl >= 2 && host[0] == '[' && host[hl - 1] == ']') { /* [::1]:8080 */
		memmove(host, host + 1, hl - 2);
		host[hl - 2] = '\0';
	}
	snprintf(port, sizeof port, "%s", colon + 1);
	hints.ai_family = AF_UNSPEC;
	hints.ai_socktype = SOCK_STREAM;
	hints.ai_flags = AI_PASSIVE;
	rc = getaddrinfo(host[0] ? host : NULL, port, &hints, &ai);
	if (rc) {
		px_log("listen %s: %s", hostport, gai_strerror(rc));
		return -EINVAL;
	}
	rc = -EADDRNOTAVAIL;
	for (p = ai; p; p = p->ai_next) {
		fd = socket(p->ai_family, p->ai_socktype | SOCK_NONBLOCK, p->ai_protocol);
		if (fd < 0)
			continue;
		setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
		if (bind(fd, p->ai_addr, p->ai_addrlen) == 0 && listen(fd, 1024) == 0)
			break;
		rc = -errno;
		close(fd);
		fd = -1;
	}
	freeaddrinfo(ai);
	if (fd < 0) {
		px_log("cannot listen on %s: %s", hostport, strerror(-rc));
		return rc;
	}
	if (getsockname(fd, (struct sockaddr *)&ss, &sl) == 0 &&
	    getnameinfo((struct sockaddr *)&ss, sl, hbuf, sizeof hbuf, pbuf, sizeof pbuf,
	                NI_NUMERICHOST | NI_NUMERICSERV) == 0)
		snprintf(shown, shown_len, "%s%s%s:%s", strchr(hbuf, ':') ? "[" : "", hbuf,
		         strchr(hbuf, ':') ? "]" : "", pbuf);
	else
		snprintf(shown, shown_len, "%s", hostport);
	return fd;
}

/* ------------------------------------------------------------------------
 * Workers
 * ---------------------------------------------------------------------- */
typedef struct worker {
	pid_t pid;       /* 0 = free */
	unsigned gen;
	double started;
} worker;

static worker g_workers[2 * MAX_WORKERS];

static double mono_s(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static int spawn(const px_config *cfg, int fd, px_metrics *m, uint32_t dim, unsigned gen)
{
	size_t i;
	pid_t pid;

	for (i = 0; i < sizeof g_workers / sizeof g_workers[0]; i++)
		if (!g_workers[i].pid)
			break;
	if (i == sizeof g_workers / sizeof g_workers[0])
		return -ENOSPC;
	fflush(NULL);
	pid = fork();
	if (pid < 0) {
		px_log("fork: %s", strerror(errno));
		return -errno;
	}
	if (pid == 0)
		px_worker_run(cfg, fd, m, dim);
	g_workers[i] = (worker){pid, gen, mono_s()};
	atomic_fetch_add(&m->workers_alive, 1);
	return 0;
}

static size_t count_gen(unsigned gen)
{
	size_t n = 0;

	for (size_t i = 0; i < sizeof g_workers / sizeof g_workers[0]; i++)
		n += g_workers[i].pid && g_workers[i].gen == gen;
	return n;
}

static size_t count_all(void)
{
	size_t n = 0;

	for (size_t i = 0; i < sizeof g_workers / sizeof g_workers[0]; i++)
		n += g_workers[i].pid != 0;
	return n;
}

static void signal_all(int sig, bool only_old, unsigned gen)
{
	for (size_t i = 0; i < sizeof g_workers / sizeof g_workers[0]; i++)
		if (g_workers[i].pid && (!only_old || g_workers[i].gen != gen))
			kill(g_workers[i].pid, sig);
}

/* Reap dead workers; returns how many of generation gen died too young. */
static void reap(px_metrics *m, unsigned gen, bool draining, size_t *young_deaths)
{
	int status;
	pid_t pid;

	while ((pid = waitpid(-1, &status, WNOHANG)) > 0) {
		for (size_t i = 0; i < sizeof g_workers / sizeof g_workers[0]; i++) {
			worker *w = &g_workers[i];

			if (w->pid != pid)
				continue;
			atomic_fetch_sub(&m->workers_alive, 1);
			if (w->gen == gen && !draining) {
				if (WIFSIGNALED(status))
					px_log("worker %d killed by signal %d; restarting", (int)pid,
					       WTERMSIG(status));
				else
					px_log("worker %d exited with status %d; restarting", (int)pid,
					       WEXITSTATUS(status));
				if (mono_s() - w->started < 1.0)
					(*young_deaths)++;
				else
					*young_deaths = 0;
			}
			w->pid = 0;
		}
	}
}

/* Settings a running proxy cannot change: keep the running values. */
static void keep_fixed(const px_config *old, px_config *nu)
{
	if (strcmp(old->listen, nu->listen) || strcmp(old->path, nu->path) ||
	    old->slots != nu->slots || old->arena_mb != nu->arena_mb ||
	    strcmp(old->embedding_model, nu->embedding_model) ||
	    old->embedding_dim != nu->embedding_dim)
		px_log("reload: listen, path, slots, arena_mb, embedding_model and embedding_dim "
		       "need a restart; keeping the running values");
	memcpy(nu->listen, old->listen, sizeof nu->listen);
	memcpy(nu->path, old->path, sizeof nu->path);
	nu->slots = old->slots;
	nu->arena_mb = old->arena_mb;
	memcpy(nu->embedding_model, old->embedding_model, sizeof nu->embedding_model);
	nu->embedding_dim = old->embedding_dim;
}

static uint32_t n_workers(const px_config *c)
{
	long n = c->workers ? (long)c->workers : sysconf(_SC_NPROCESSORS_ONLN);

	return n < 1 ? 1 : n > MAX_WORKERS ? MAX_WORKERS : (uint32_t)n;
}

int main(int argc, char **argv)
{
	static px_config cfg, next;
	char err[512], shown[NI_MAXHOST + 48];
	px_metrics *m;
	sigset_t set;
	siginfo_t si;
	struct timespec tick = {1, 0};
	uint32_t dim = 0;
	unsigned gen = 1;
	size_t young = 0;
	bool draining = false;
	double drain_deadline = 0;
	int fd, rc;

	rc = parse_args(argc, argv);
	if (rc)
		return rc == 1 ? 0 : 2;
	if (build_config(&cfg, err, sizeof err)) {
		fprintf(stderr, "semcache-proxy: %s\n", err);
		return 2;
	}
	signal(SIGPIPE, SIG_IGN);
	if (px_up_global_init()) {
		px_log("cannot initialise libcurl");
		return 1;
	}
	rc = check_segment(&cfg, &dim);
	px_up_global_cleanup(); /* workers make their own pool */
	if (rc)
		return 1;
	fd = open_listener(cfg.listen, shown, sizeof shown);
	if (fd < 0)
		return 1;
	m = px_metrics_map();
	if (!m) {
		px_log("cannot map the metrics: %s", strerror(errno));
		return 1;
	}
	sigemptyset(&set);
	sigaddset(&set, SIGCHLD);
	sigaddset(&set, SIGTERM);
	sigaddset(&set, SIGINT);
	sigaddset(&set, SIGHUP);
	sigprocmask(SIG_BLOCK, &set, NULL);

	for (uint32_t i = 0; i < n_workers(&cfg); i++)
		if (spawn(&cfg, fd, m, dim, gen))
			return 1;
	printf("semcache-proxy: listening on %s, %u workers, upstream %s, segment %s\n", shown,
	       n_workers(&cfg), cfg.upstream, cfg.path);
	fflush(stdout);

	for (;;) {
		int sig = sigtimedwait(&set, &si, &tick);

		if (sig == SIGTERM || sig == SIGINT) {
			if (!draining) {
				px_log("draining");
				draining = true;
				drain_deadline = mono_s() + cfg.drain_timeout_ms / 1e3 + 5;
				signal_all(SIGTERM, false, gen);
			}
		} else if (sig == SIGHUP && !draining) {
			if (build_config(&next, err, sizeof err)) {
				px_log("reload refused, keeping the running configuration: %s", err);
			} else {
				keep_fixed(&cfg, &next);
				cfg = next;
				gen++;
				px_log("reloaded %s: starting %u workers of generation %u",
				       cfg.config_file[0] ? cfg.config_file : "(flags only)",
				       n_workers(&cfg), gen);
				for (uint32_t i = 0; i < n_workers(&cfg); i++)
					spawn(&cfg, fd, m, dim, gen);
				signal_all(SIGTERM, true, gen);
			}
		}
		reap(m, gen, draining, &young);
		if (draining) {
			if (count_all() == 0)
				break;
			if (mono_s() > drain_deadline) {
				px_log("workers still running after the drain timeout: SIGKILL");
				signal_all(SIGKILL, false, gen);
				drain_deadline = mono_s() + 3600;
			}
			continue;
		}
		if (young > 5)
			sleep(1); /* workers die at start: do not spin */
		while (count_gen(gen) < n_workers(&cfg)) {
			if (spawn(&cfg, fd, m, dim, gen))
				break;
			atomic_fetch_add(&m->worker_restarts, 1);
		}
	}
	close(fd);
	px_log("stopped");
	return 0;
}
