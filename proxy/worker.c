/*
 * worker.c - one prefork worker: attach the segment, serve, drain.
 *
 * The master forks a worker with every signal blocked; the worker keeps
 * them blocked (so libmicrohttpd's threads, which inherit the mask, never
 * take one) and its main thread waits for SIGTERM or SIGINT in sigwait().
 * It attaches the segment itself, after fork, with its own handle and
 * process record (SEMCACHE_OPEN_NOCREATE: the master created and checked the
 * segment; a worker never makes one with other geometry), then runs
 * libmicrohttpd with a thread per connection on the listening socket it
 * shares with the other workers: the kernel hands each connection to one
 * of the processes waiting in accept(), and the socket is non-blocking, so
 * the ones that lose the race go back to waiting.
 *
 * Draining: on SIGTERM the worker stops accepting (MHD_quiesce_daemon), waits
 * until the requests it is serving have been answered (at most
 * drain_timeout_ms), then stops the daemon, which also closes idle
 * keep-alive connections, and exits 0.  A worker whose master died gets
 * SIGTERM from the kernel (PR_SET_PDEATHSIG) and drains the same way.
 */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <time.h>
#include <unistd.h>

#include "proxy.h"

static double mono_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec / 1e6;
}

void px_worker_run(const px_config *cfg, int listen_fd, px_metrics *m, uint32_t dim)
{
	px_worker_ctx ctx = {.cfg = cfg, .metrics = m, .dim = dim};
	semcache_options o;
	struct MHD_Daemon *d = NULL;
	sigset_t set;
	int rc, sig = 0, status = 1;
	double deadline;

	prctl(PR_SET_PDEATHSIG, SIGTERM);
	if (getppid() == 1)
		_exit(1); /* the master is already gone */
	semcache_options_init(&o);
	o.slots = 0;
	o.dim = 0;
	o.arena_bytes = 0;
	o.block_size = 0;
	o.max_procs = 0;
	o.max_payload = 0;
	o.flags = SEMCACHE_OPEN_NOCREATE;
	rc = semcache_open(cfg->path, &o, &ctx.cache);
	if (rc) {
		px_log("cannot attach %s: %s", cfg->path, semcache_strerror(rc));
		goto out;
	}
	if (px_up_global_init()) {
		px_log("cannot initialise libcurl");
		goto out;
	}
	d = MHD_start_daemon(MHD_USE_THREAD_PER_CONNECTION | MHD_USE_INTERNAL_POLLING_THREAD |
	                             MHD_USE_ITC | MHD_USE_ERROR_LOG,
	                     0, NULL, NULL, px_http_handle, &ctx,
	                     MHD_OPTION_LISTEN_SOCKET, listen_fd,
	                     MHD_OPTION_NOTIFY_COMPLETED, px_http_completed, &ctx,
	                     MHD_OPTION_CONNECTION_LIMIT, (unsigned int)cfg->max_connections,
	                     MHD_OPTION_CONNECTION_TIMEOUT, (unsigned int)120,
	                     MHD_OPTION_END);
	if (!d) {
		px_log("cannot start the HTTP server");
		goto out;
	}
	sigemptyset(&set);
	sigaddset(&set, SIGTERM);
	sigaddset(&set, SIGINT);
	while (sigwait(&set, &sig) != 0 || (sig != SIGTERM && sig != SIGINT))
		;
	MHD_quiesce_daemon(d); /* the listening socket stays open in the master */
	deadline = mono_ms() + cfg->drain_timeout_ms;
	while (atomic_load(&ctx.in_flight) > 0 && mono_ms() < deadline)
		usleep(20000);
	if (atomic_load(&ctx.in_flight) > 0) {
		/* MHD_stop_daemon would wait for the stuck threads: just go */
		px_log("drain timeout with %d requests in flight", atomic_load(&ctx.in_flight));
		_exit(1);
	}
	MHD_stop_daemon(d);
	d = NULL;
	status = 0;
	px_up_global_cleanup();
out:
	semcache_close(ctx.cache);
	exit(status);
}
