/*
 * test_tier.c - the Redis tier wired into the cache, against real
 * redis-servers each test starts (redis_fixture.h).  Two (or three)
 * segments on different paths, each with its own syncer, stand for hosts
 * sharing one Redis.
 *
 * No timed assertions: a condition is awaited by polling with a generous
 * bound (WAIT_MS), and a test fails only when it never becomes true.
 */
#include <criterion/criterion.h>
#include <errno.h>
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "../common.h"
#include "internal.h"
#include "redis_codec.h"
#include "redis_conn.h"
#include "redis_fixture.h"

#define WAIT_MS TR_WAIT_MS
#define DIM 8

static tr_server srv;
static char pa[256], pb[256], pc[256];
static semcache *A, *B, *C;
/* children a test forked (a syncer, the relay): killed by stop_all even
 * when an assertion ended the test early */
static pid_t kids[4];

static void kid_add(pid_t p)
{
	for (int i = 0; i < 4; i++)
		if (kids[i] <= 0) {
			kids[i] = p;
			return;
		}
}

static semcache *open_seg(char *path, const char *tag, uint32_t slots)
{
	semcache *c = NULL;
	semcache_options o = test_options(slots, DIM);
	o.arena_bytes = 16u << 20;
	test_path(path, 256, tag);
	int rc = semcache_open(path, &o, &c);
	cr_assert_eq(rc, 0, "open: %s", semcache_strerror(rc));
	return c;
}

static semcache_tier_options topts(const char *password)
{
	semcache_tier_options o;
	semcache_tier_options_init(&o);
	o.port = srv.port;
	o.prefix = "t:";
	o.password = password;
	o.connect_timeout_ms = 300;
	o.command_timeout_ms = 300;
	o.backoff_base_ms = 20;
	o.backoff_cap_ms = 200;
	return o;
}

static void start_tier(semcache *c)
{
	semcache_tier_options o = topts(NULL);
	int rc = semcache_tier_start(c, &o);
	cr_assert_eq(rc, 0, "tier_start: %s", semcache_strerror(rc));
}

static void start_two(void)
{
	tr_start(&srv, NULL, NULL);
	/* 4096 slots: 1000 entries never overflow an index bucket (which
	 * would evict one); the outbox still holds 1024 items */
	A = open_seg(pa, "tierA", 4096);
	B = open_seg(pb, "tierB", 4096);
}

static void stop_all(void)
{
	for (int i = 0; i < 4; i++) {
		/* only a child not yet reaped (waitpid refuses anything else) */
		if (kids[i] > 0 && waitpid(kids[i], NULL, WNOHANG) == 0) {
			kill(kids[i], SIGKILL);
			waitpid(kids[i], NULL, 0);
		}
		kids[i] = 0;
	}
	semcache_close(A);
	semcache_close(B);
	semcache_close(C);
	A = B = C = NULL;
	unlink(pa);
	unlink(pb);
	unlink(pc);
	tr_stop(&srv);
}

static semcache_tier_stats tstat(semcache *c)
{
	semcache_tier_stats st;
	cr_assert_eq(semcache_tier_stat(c, &st), 0);
	return st;
}

static void emb_for(int i, float *v)
{
	for (int d = 0; d < DIM; d++)
		v[d] = (float)((i * 7 + d * 3) % 11) + 0.5f * (float)(d == i % DIM);
}

static int put_i(semcache *c, int i, const char *content)
{
	char key[32];
	float v[DIM];
	semcache_response r = simple_response(content);
	snprintf(key, sizeof key, "key-%d;", i);
	emb_for(i, v);
	semcache_put_args a = { .ns = "ns", .key = key, .scope = "m", .response = &r,
	                        .embedding = v, .embedding_dim = DIM };
	return semcache_put(c, &a);
}

/* 1 found with that content, 0 absent, -1 found with other content */
static int has_i(semcache *c, int i, const char *content)
{
	char key[32];
	semcache_response *out = NULL;
	snprintf(key, sizeof key, "key-%d;", i);
	if (semcache_get(c, "ns", key, 0, &out) != 0)
		return 0;
	int ok = strcmp(out->content, content) == 0 ? 1 : -1;
	semcache_response_free(out);
	return ok;
}

#define AWAIT TR_AWAIT

static int count_present(semcache *c, int from, int to, const char *content)
{
	int n = 0;
	for (int i = from; i < to; i++)
		n += has_i(c, i, content) == 1;
	return n;
}

static uint64_t evictions(semcache *c)
{
	semcache_stats st;
	cr_assert_eq(semcache_stat(c, &st), 0);
	return st.total.evictions;
}

/* Entries of A (in [from, to)) that B does not hold. */
static uint64_t missing_on_b(int from, int to, const char *content)
{
	uint64_t n = 0;
	for (int i = from; i < to; i++)
		n += has_i(A, i, content) == 1 && has_i(B, i, content) != 1;
	return n;
}

/* ------------------------------------------------------------------------ */

Test(tier, put_on_a_is_found_on_b_by_get_and_search, .init = start_two, .fini = stop_all,
     .timeout = 120)
{
	start_tier(A);
	start_tier(B);
	AWAIT(tstat(A).state == SEMCACHE_TIER_UP && tstat(B).state == SEMCACHE_TIER_UP, "up");
	cr_assert_eq(put_i(A, 1, "one"), 0);
	AWAIT(has_i(B, 1, "one") == 1, "entry on B");

	float q[DIM];
	emb_for(1, q);
	semcache_response *out = NULL;
	float sim = 0;
	cr_assert_eq(semcache_search(B, "ns", "m", q, DIM, 0.99f, &out, &sim), 0);
	cr_assert_str_eq(out->content, "one");
	semcache_response_free(out);

	/* invalidate on A removes it on B; A's own event does not echo back */
	uint64_t n = 0;
	cr_assert_eq(semcache_invalidate(A, "ns", "key-1;", &n), 0);
	cr_assert_eq(n, 1);
	AWAIT(has_i(B, 1, "one") == 0, "deleted on B");
	cr_assert_eq(semcache_search(B, "ns", "m", q, DIM, 0.99f, &out, &sim), SEMCACHE_ENOTFOUND);
	AWAIT(tstat(A).outbox_depth == 0, "A drained");
	semcache_tier_stats sa = tstat(A), sb = tstat(B);
	cr_assert_eq(sa.exported, 1);
	cr_assert_eq(sa.deleted, 1);
	cr_assert_eq(sb.imported, 1);
	cr_assert_eq(sb.import_deleted, 1);
	cr_assert_eq(sa.imported, 0, "A imported its own event");
	cr_assert_eq(sb.import_rejected, 0);
	cr_assert_eq(sb.import_gaps, 0, "a gap where none was");
	char report[1024];
	cr_assert_eq(semcache_verify(B, report, sizeof report), 0, "%s", report);
}

Test(tier, entries_before_the_tier_are_swept_and_a_new_segment_warms_up, .init = start_two,
     .fini = stop_all, .timeout = 120)
{
	for (int i = 0; i < 50; i++)
		cr_assert_eq(put_i(A, i, "early"), 0);
	start_tier(A);
	AWAIT(tstat(A).swept == 50, "sweep of A's entries");
	/* B starts later: it reads the newest events back and installs them */
	start_tier(B);
	AWAIT(count_present(B, 0, 50, "early") == 50, "B warmed up");
	C = open_seg(pc, "tierC", 1024);
	semcache_tier_options o = topts(NULL);
	o.warmup = 10;
	cr_assert_eq(semcache_tier_start(C, &o), 0);
	AWAIT(tstat(C).imported == 10, "C warmed with 10");
	/* the 10 most recent */
	cr_assert_eq(count_present(C, 0, 50, "early"), 10);
	/* already-clean entries are not exported again */
	cr_assert_eq(tstat(A).exported, 50);
}

Test(tier, redis_killed_mid_sync_loses_nothing_within_capacity, .init = start_two,
     .fini = stop_all, .timeout = 180)
{
	start_tier(A);
	start_tier(B);
	AWAIT(tstat(A).state == SEMCACHE_TIER_UP && tstat(B).state == SEMCACHE_TIER_UP, "up");
	for (int i = 0; i < 100; i++)
		cr_assert_eq(put_i(A, i, "before"), 0);
	AWAIT(count_present(B, 0, 100, "before") == 100, "first 100 on B");

	/* mid-sync: a batch in flight when the server dies */
	for (int i = 100; i < 200; i++)
		cr_assert_eq(put_i(A, i, "during"), 0);
	tr_kill9(&srv);
	AWAIT(tstat(A).state == SEMCACHE_TIER_DEGRADED, "A degraded");
	semcache_tier_stats st = tstat(A);
	cr_assert(strcmp(st.last_error_class, "unreachable") == 0 ||
	          strcmp(st.last_error_class, "timeout") == 0, "class %s", st.last_error_class);
	/* what was still unacknowledged when it died (a put wakes the syncer,
	 * so part of 100..199 may have gone out already) */
	uint64_t depth0 = st.outbox_depth;
	/* the outage: 800 more puts (the ring takes 768 puts in all), and
	 * deletions of 0..19, which must not come back */
	for (int i = 200; i < 1000; i++)
		cr_assert_eq(put_i(A, i, "during"), 0);
	uint64_t n = 0;
	for (int i = 0; i < 20; i++) {
		char key[32];
		snprintf(key, sizeof key, "key-%d;", i);
		cr_assert_eq(semcache_invalidate(A, "ns", key, &n), 0);
		cr_assert_eq(n, 1);
	}
	st = tstat(A);
	/* items left unacknowledged when Redis died plus the outage's, capped:
	 * every put beyond the 768 PUT places was counted, deletions all got in */
	cr_assert_eq(st.deletes_lost, 0);
	cr_assert_eq(st.resync_needed, 0);
	/* nothing drains during the outage: every put beyond the PUT places
	 * is a drop, counted exactly */
	cr_assert_eq(st.dropped, depth0 + 800 > 768 ? depth0 + 800 - 768 : 0, "depth0 %llu",
	             (unsigned long long)depth0);
	cr_assert_eq(st.outbox_depth + st.dropped + st.exported, 1000 + 20 - st.deleted,
	             "depth %llu dropped %llu exported %llu",
	             (unsigned long long)st.outbox_depth, (unsigned long long)st.dropped,
	             (unsigned long long)st.exported);
	/* A served all along */
	cr_assert_eq(count_present(A, 100, 1000, "during") + count_present(A, 20, 100, "before") +
	             evictions(A), 980);

	cr_assert_eq(tr_restart(&srv), 0);
	AWAIT(tstat(A).outbox_depth == 0 && tstat(A).state == SEMCACHE_TIER_UP, "A drained");
	/* Puts made during the outage all reach B (the dropped ones through the
	 * sweep).  Of those made just before the kill, the ones Redis had
	 * acknowledged died with it (no persistence): B may or may not have
	 * read them first, so they are not counted here. */
	{
		long long t0 = tr_now_ms();
		while (missing_on_b(200, 1000, "during") > evictions(B) && tr_now_ms() - t0 < WAIT_MS)
			tr_sleep_ms(10);
		semcache_tier_stats sa = tstat(A), sb = tstat(B);
		cr_assert_leq(missing_on_b(200, 1000, "during"), evictions(B),
		             "B has %d; A exp %llu del %llu drop %llu sw %llu depth %llu err %s %s; B imp %llu rej %llu st %s err %s %s",
		             count_present(B, 200, 1000, "during"), (unsigned long long)sa.exported,
		             (unsigned long long)sa.deleted, (unsigned long long)sa.dropped,
		             (unsigned long long)sa.swept, (unsigned long long)sa.outbox_depth,
		             sa.last_error_class, sa.last_error_text,
		             (unsigned long long)sb.imported, (unsigned long long)sb.import_rejected,
		             sb.state_name, sb.last_error_class, sb.last_error_text);
	}
	for (int i = 0; i < 20; i++)
		cr_assert_eq(has_i(B, i, "before"), 0, "key-%d came back", i);
	cr_assert_eq(count_present(B, 20, 100, "before"), 80);
	cr_assert_geq(tstat(A).reconnects, 1);
	cr_assert_gt(tstat(A).swept, 0);
	/* and nothing deleted comes back later either */
	tr_sleep_ms(300);
	for (int i = 0; i < 20; i++)
		cr_assert_eq(has_i(B, i, "before"), 0);
}

Test(tier, redis_stopped_puts_and_gets_do_not_wait, .init = start_two, .fini = stop_all,
     .timeout = 180)
{
	semcache_close(A);
	semcache_close(B);
	unlink(pa);
	unlink(pb);
	A = open_seg(pa, "tierA", 16384);
	B = open_seg(pb, "tierB", 16384);
	start_tier(A);
	start_tier(B);
	AWAIT(tstat(A).state == SEMCACHE_TIER_UP && tstat(B).state == SEMCACHE_TIER_UP, "up");
	tr_signal(&srv, SIGSTOP);
	for (int i = 0; i < 10000; i++) {
		cr_assert_eq(put_i(A, i, "stopped"), 0);
		cr_assert_eq(has_i(A, i, "stopped"), 1);
	}
	/* all of that completed with Redis stopped: nothing waited on it */
	cr_assert_eq(srv.stopped, true);
	AWAIT(tstat(A).state == SEMCACHE_TIER_DEGRADED, "A degraded while stopped");
	cr_assert_str_eq(tstat(A).last_error_class, "timeout");
	tr_signal(&srv, SIGCONT);
	AWAIT(tstat(A).outbox_depth == 0 && tstat(A).state == SEMCACHE_TIER_UP, "drained");
	/* Every entry A still holds reaches B, except those B's own full
	 * index buckets evicted (counted); A's own bucket evictions are not
	 * A's to export. */
	AWAIT(missing_on_b(0, 10000, "stopped") <= evictions(B), "all of A's entries on B");
	cr_assert_geq(count_present(B, 0, 10000, "stopped"), 9900);
}

/* A child process that runs A's syncer (talking to Redis at port),
 * holds the lease and waits to be killed or stopped; returns once its
 * tier is up. */
static pid_t syncer_in_child_at(int port)
{
	int go[2];
	cr_assert_eq(pipe(go), 0);
	pid_t child = fork();
	cr_assert_geq(child, 0);
	kid_add(child);
	if (child == 0) {
		semcache *a = NULL;
		if (semcache_open(pa, NULL, &a) != 0)
			_exit(2);
		semcache_tier_options o = topts(NULL);
		o.port = port;
		if (semcache_tier_start(a, &o) != 0)
			_exit(3);
		while (tstat(a).state != SEMCACHE_TIER_UP)
			tr_sleep_ms(5);
		char ch = 1;
		if (write(go[1], &ch, 1) != 1)
			_exit(4);
		for (;;)
			pause();
	}
	char ch;
	cr_assert_eq(read(go[0], &ch, 1), 1);
	close(go[0]);
	close(go[1]);
	return child;
}

static pid_t syncer_in_child(void)
{
	return syncer_in_child_at(srv.port);
}

/* The syncer's process dies: a syncer of another process takes over. */
Test(tier, syncer_killed_another_takes_over_and_replay_changes_nothing, .init = start_two,
     .fini = stop_all, .timeout = 180)
{
	/* fork before this process has threads: a child forked while a tier
	 * thread holds an allocator lock (ASan's, say) inherits it locked */
	pid_t child = syncer_in_child();
	start_tier(B);
	semcache_tier_stats st = tstat(A);
	cr_assert_eq(st.syncer_pid, child);
	/* ours waits for the lease */
	start_tier(A);
	for (int i = 0; i < 50; i++)
		cr_assert_eq(put_i(A, i, "v1"), 0);
	AWAIT(count_present(B, 0, 50, "v1") == 50, "exported by the child");
	/* stop Redis so items wait in the outbox, then kill the holder */
	tr_signal(&srv, SIGSTOP);
	for (int i = 50; i < 100; i++)
		cr_assert_eq(put_i(A, i, "v1"), 0);
	for (int i = 0; i < 10; i++) {
		char key[32];
		snprintf(key, sizeof key, "key-%d;", i);
		cr_assert_eq(semcache_invalidate(A, "ns", key, NULL), 0);
	}
	kill(child, SIGKILL);
	cr_assert_eq(waitpid(child, NULL, 0), child);
	tr_signal(&srv, SIGCONT);
	AWAIT(tstat(A).syncer_pid == getpid() && tstat(A).outbox_depth == 0, "taken over");
	cr_assert_geq(tstat(A).takeovers, 1);
	{
		long long t0 = tr_now_ms();
		while (count_present(B, 10, 100, "v1") != 90 && tr_now_ms() - t0 < WAIT_MS)
			tr_sleep_ms(10);
		semcache_tier_stats sa = tstat(A), sb = tstat(B);
		cr_assert_eq(count_present(B, 10, 100, "v1"), 90,
		             "outbox lost: B has %d; A exp %llu del %llu drop %llu sw %llu err %s %s; B imp %llu st %s err %s %s",
		             count_present(B, 10, 100, "v1"), (unsigned long long)sa.exported,
		             (unsigned long long)sa.deleted, (unsigned long long)sa.dropped,
		             (unsigned long long)sa.swept, sa.last_error_class, sa.last_error_text,
		             (unsigned long long)sb.imported, sb.state_name, sb.last_error_class,
		             sb.last_error_text);
	}
	/* the deletions were enqueued after those puts: B applies them next */
	AWAIT(count_present(B, 0, 10, "v1") == 0, "deletions on B");

	/* replay the whole ring: same result */
	cr_assert_eq(semcache_tier_stop(A), 0);
	uint64_t head = atomic_load(&A->hdr->tier.ob_head);
	atomic_store(&A->hdr->tier.ob_tail, 0);
	start_tier(A);
	AWAIT(tstat(A).outbox_depth == 0, "replayed");
	cr_assert_eq(atomic_load(&A->hdr->tier.ob_head), head);
	tr_sleep_ms(300); /* B reads the replayed events */
	AWAIT(tstat(B).outbox_depth == 0, "B idle");
	cr_assert_eq(count_present(B, 10, 100, "v1"), 90);
	cr_assert_eq(count_present(B, 0, 10, "v1"), 0, "a replayed put resurrected a deletion");
	/* Redis's index holds exactly the live ids */
	sc_redis_config cfg = { .host = "127.0.0.1", .port = srv.port, .connect_timeout_ms = 2000,
	                        .command_timeout_ms = 2000 };
	sc_redis_conn *rc = NULL;
	cr_assert_eq(sc_redis_connect(&cfg, &rc), 0);
	redisReply *r = NULL;
	const char *argv[2] = { "SCARD", "t:llm_cache_index" };
	cr_assert_eq(sc_redis_command(rc, SC_RT_INTEGER, &r, 2, argv, NULL), 0);
	cr_assert_eq(r->integer, 90);
	freeReplyObject(r);
	sc_redis_close(rc);
}

static void start_with_password(void)
{
	static const char *const args[] = { "--requirepass", "right", NULL };
	tr_start(&srv, args, "right");
	A = open_seg(pa, "tierA", 1024);
}

Test(tier_refused, wrong_password_is_shown_and_the_segment_serves, .init = start_with_password,
     .fini = stop_all, .timeout = 60)
{
	semcache_tier_options o = topts("wrong");
	cr_assert_eq(semcache_tier_start(A, &o), 0);
	AWAIT(tstat(A).state == SEMCACHE_TIER_DEGRADED, "degraded");
	semcache_tier_stats st = tstat(A);
	cr_assert_str_eq(st.last_error_class, "auth");
	cr_assert_eq(st.last_error, -EACCES);
	cr_assert_neq(st.last_error_text[0], '\0');
	cr_assert_eq(put_i(A, 1, "x"), 0);
	cr_assert_eq(has_i(A, 1, "x"), 1);
	cr_assert_eq(tstat(A).outbox_depth, 1);
	cr_assert_eq(semcache_tier_stop(A), 0);
	cr_assert_eq(tstat(A).state, SEMCACHE_TIER_OFF);
}

static void start_tiny(void)
{
	static const char *const args[] = { "--maxmemory", "2mb", "--maxmemory-policy",
	                                    "noeviction", NULL };
	tr_start(&srv, args, NULL);
	A = open_seg(pa, "tierA", 4096);
}

Test(tier_refused, oom_is_shown_and_the_segment_serves, .init = start_tiny, .fini = stop_all,
     .timeout = 120)
{
	start_tier(A);
	AWAIT(tstat(A).state == SEMCACHE_TIER_UP, "up");
	static char big[16 << 10];
	memset(big, 'q', sizeof big - 1);
	for (int i = 0; i < 400; i++)
		cr_assert_eq(put_i(A, i, big), 0);
	AWAIT(tstat(A).last_error == -ENOSPC, "oom seen");
	AWAIT(tstat(A).state == SEMCACHE_TIER_DEGRADED, "degraded");
	cr_assert_str_eq(tstat(A).last_error_class, "oom");
	cr_assert_eq(count_present(A, 0, 400, big), 400);
	cr_assert_gt(tstat(A).outbox_depth, 0);
}

Test(tier_refused, garbage_values_are_rejected_and_counted, .init = start_two, .fini = stop_all,
     .timeout = 60)
{
	start_tier(B);
	AWAIT(tstat(B).state == SEMCACHE_TIER_UP, "up");
	sc_redis_config cfg = { .host = "127.0.0.1", .port = srv.port, .connect_timeout_ms = 2000,
	                        .command_timeout_ms = 2000 };
	sc_redis_conn *rc = NULL;
	cr_assert_eq(sc_redis_connect(&cfg, &rc), 0);
	char id[65], key[128], emb[128];
	uint8_t d[32];
	cr_assert_eq(sc_key_digest("ns", "key-1;", d), 0);
	for (int i = 0; i < 32; i++)
		snprintf(id + 2 * i, 3, "%02x", d[i]);
	snprintf(key, sizeof key, "t:llm_cache:%s", id);
	snprintf(emb, sizeof emb, "t:llm_cache_emb:%s", id);
	const char *set1[3] = { "SET", key, "\x85garbage-not-msgpack" };
	const char *set2[3] = { "SET", emb, "short" };
	cr_assert_eq(sc_redis_command(rc, SC_RT_STATUS, NULL, 3, set1, NULL), 0);
	cr_assert_eq(sc_redis_command(rc, SC_RT_STATUS, NULL, 3, set2, NULL), 0);
	/* an event for it, malformed events, and a hostile id */
	const char *x1[9] = { "XADD", "t:llm_cache_events", "*", "op", "P", "id", id, "o",
	                      "0123456789abcdef0123456789abcdef" };
	const char *x2[5] = { "XADD", "t:llm_cache_events", "*", "op", "Z" };
	const char *x3[9] = { "XADD", "t:llm_cache_events", "*", "op", "P", "id", "../../etc",
	                      "o", "x" };
	cr_assert_eq(sc_redis_command(rc, SC_RT_STRING, NULL, 9, x1, NULL), 0);
	cr_assert_eq(sc_redis_command(rc, SC_RT_STRING, NULL, 5, x2, NULL), 0);
	cr_assert_eq(sc_redis_command(rc, SC_RT_STRING, NULL, 9, x3, NULL), 0);
	AWAIT(tstat(B).import_rejected == 3, "three rejected");
	cr_assert_eq(has_i(B, 1, "x"), 0);
	cr_assert_eq(tstat(B).imported, 0);
	cr_assert_eq(tstat(B).state, SEMCACHE_TIER_UP);
	char report[1024];
	cr_assert_eq(semcache_verify(B, report, sizeof report), 0, "%s", report);
	sc_redis_close(rc);
}

/* Read-through: an entry in Redis that no event announced is found by an
 * exact miss on a handle whose syncer has read-through on, and installed;
 * never while the tier is degraded. */
Test(tier, read_through_finds_unannounced_entries_only_while_up, .init = start_two,
     .fini = stop_all, .timeout = 120)
{
	start_tier(A);
	AWAIT(tstat(A).state == SEMCACHE_TIER_UP, "A up");
	for (int i = 0; i < 3; i++)
		cr_assert_eq(put_i(A, i, "rt"), 0);
	AWAIT(tstat(A).exported == 3 && tstat(A).outbox_depth == 0, "exported");
	/* forget the events: B can only find them by asking */
	sc_redis_config cfg = { .host = "127.0.0.1", .port = srv.port, .connect_timeout_ms = 2000,
	                        .command_timeout_ms = 2000 };
	sc_redis_conn *rc = NULL;
	cr_assert_eq(sc_redis_connect(&cfg, &rc), 0);
	const char *trim[4] = { "XTRIM", "t:llm_cache_events", "MAXLEN", "0" };
	cr_assert_eq(sc_redis_command(rc, SC_RT_INTEGER, NULL, 4, trim, NULL), 0);
	sc_redis_close(rc);

	semcache_tier_options o = topts(NULL);
	o.read_through_ms = 500;
	cr_assert_eq(semcache_tier_start(B, &o), 0);
	AWAIT(tstat(B).state == SEMCACHE_TIER_UP && atomic_load(&B->hdr->tier.stream_init), "B up");
	cr_assert_eq(tstat(B).imported, 0);
	cr_assert_eq(has_i(B, 0, "rt"), 1, "read-through");
	cr_assert_eq(tstat(B).read_through, 1);
	cr_assert_eq(tstat(B).imported, 1);
	/* installed: found again without asking */
	cr_assert_eq(has_i(B, 0, "rt"), 1);
	cr_assert_eq(tstat(B).read_through, 1);
	/* a key Redis does not have stays a miss */
	cr_assert_eq(has_i(B, 77, "rt"), 0);

	tr_signal(&srv, SIGSTOP);
	/* before the syncer notices, a read-through may still try: bounded by
	 * its deadline; once degraded, none is tried */
	AWAIT(tstat(B).state == SEMCACHE_TIER_DEGRADED, "B degraded");
	cr_assert_eq(has_i(B, 1, "rt"), 0);
	cr_assert_eq(tstat(B).read_through, 1);
	tr_signal(&srv, SIGCONT);
	AWAIT(tstat(B).state == SEMCACHE_TIER_UP, "B up again");
	AWAIT(has_i(B, 2, "rt") == 1, "read-through after recovery");
}

/* A foreign value where the event stream should be: import says so and
 * retries, export goes on (entries and index are written). */
Test(tier_refused, foreign_value_at_the_events_key_does_not_stop_export, .init = start_two,
     .fini = stop_all, .timeout = 60)
{
	sc_redis_config cfg = { .host = "127.0.0.1", .port = srv.port, .connect_timeout_ms = 2000,
	                        .command_timeout_ms = 2000 };
	sc_redis_conn *rc = NULL;
	cr_assert_eq(sc_redis_connect(&cfg, &rc), 0);
	const char *set[3] = { "SET", "t:llm_cache_events", "not a stream" };
	cr_assert_eq(sc_redis_command(rc, SC_RT_STATUS, NULL, 3, set, NULL), 0);
	start_tier(A);
	for (int i = 0; i < 5; i++)
		cr_assert_eq(put_i(A, i, "x"), 0);
	/* (a sweep and the outbox may both send an entry put while the
	 * first sweep runs: what counts is what Redis holds) */
	AWAIT(tstat(A).outbox_depth == 0 && tstat(A).exported >= 5, "exported");
	redisReply *r = NULL;
	const char *scard[2] = { "SCARD", "t:llm_cache_index" };
	cr_assert_eq(sc_redis_command(rc, SC_RT_INTEGER, &r, 2, scard, NULL), 0);
	cr_assert_eq(r->integer, 5);
	freeReplyObject(r);
	semcache_tier_stats st = tstat(A);
	cr_assert_str_eq(st.last_error_class, "error-reply");
	cr_assert(strstr(st.last_error_text, "WRONGTYPE") != NULL, "%s", st.last_error_text);
	cr_assert_eq(st.state, SEMCACHE_TIER_UP);
	sc_redis_close(rc);
}

/* The syncer's process hangs (SIGSTOP): after its heartbeat went stale,
 * another process's syncer takes the lease; the stopped one, continued,
 * sees it lost the lease and does not take it back. */
Test(tier, hung_syncer_is_replaced_and_does_not_come_back, .init = start_two, .fini = stop_all,
     .timeout = 180)
{
	pid_t child = syncer_in_child(); /* before any thread here (see above) */
	start_tier(B);
	cr_assert_eq(tstat(A).syncer_pid, child);
	start_tier(A);
	kill(child, SIGSTOP);
	for (int i = 0; i < 20; i++)
		cr_assert_eq(put_i(A, i, "hung"), 0);
	/* SC_TIER_LEASE_MS (3 s) + a poll later, within WAIT_MS */
	AWAIT(tstat(A).syncer_pid == getpid(), "taken over from the hung syncer");
	cr_assert_geq(tstat(A).takeovers, 1);
	AWAIT(count_present(B, 0, 20, "hung") == 20, "exported by the new holder");
	kill(child, SIGCONT);
	for (int i = 20; i < 40; i++)
		cr_assert_eq(put_i(A, i, "hung"), 0);
	AWAIT(count_present(B, 20, 40, "hung") == 20, "still exported");
	/* the continued syncer did not take the lease back */
	tr_sleep_ms(500);
	cr_assert_eq(tstat(A).syncer_pid, getpid());
	kill(child, SIGKILL);
	cr_assert_eq(waitpid(child, NULL, 0), child);
}

/* ------------------------------------------------------------------------
 * Fencing.  A loopback TCP relay in a child process stands between a
 * syncer and Redis.  Told 'A' (arm) on its control pipe, it holds back the
 * first chunk a client sends that writes an entry key ("llm_cache:") and
 * everything after it on that connection, and answers 'H' ('W' arms it
 * for the first chunk with a WATCH instead); told 'R', it
 * lets the held bytes through and answers 'F' once Redis replied to them.
 * So a batch can be caught on the wire, exactly as a holder hung in the
 * middle of sending it, and delivered after another holder took over.
 * ---------------------------------------------------------------------- */
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>

#define RELAY_MAX 8

struct relay_pair {
	int cl, sv;
	char *held;
	size_t nheld;
	bool holding, released;
};

static void relay_loop(int lfd, int port, int ctl_in, int ctl_out)
{
	struct relay_pair p[RELAY_MAX];
	int np = 0;
	bool armed = false;
	const char *pattern = "llm_cache:";

	for (;;) {
		struct pollfd f[2 + 2 * RELAY_MAX];
		int nf = 0;
		f[nf++] = (struct pollfd){ .fd = lfd, .events = POLLIN };
		f[nf++] = (struct pollfd){ .fd = ctl_in, .events = POLLIN };
		for (int i = 0; i < np; i++) {
			f[nf++] = (struct pollfd){ .fd = p[i].cl, .events = POLLIN };
			f[nf++] = (struct pollfd){ .fd = p[i].sv, .events = POLLIN };
		}
		if (poll(f, (nfds_t)nf, 1000) < 0)
			_exit(10);
		if (f[1].revents) {
			char cmd;
			if (read(ctl_in, &cmd, 1) != 1)
				_exit(0); /* the test went away */
			if (cmd == 'A' || cmd == 'W') {
				armed = true;
				pattern = cmd == 'A' ? "llm_cache:" : "WATCH";
			}
			for (int i = 0; cmd == 'R' && i < np; i++) {
				if (!p[i].holding)
					continue;
				if (p[i].nheld && write(p[i].sv, p[i].held, p[i].nheld) != (ssize_t)p[i].nheld)
					_exit(11);
				p[i].holding = false;
				p[i].released = true;
			}
		}
		if ((f[0].revents & POLLIN) && np < RELAY_MAX) {
			int cl = accept(lfd, NULL, NULL);
			struct sockaddr_in a = { .sin_family = AF_INET, .sin_port = htons((uint16_t)port) };
			a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
			int sv = socket(AF_INET, SOCK_STREAM, 0);
			if (cl < 0 || sv < 0 || connect(sv, (struct sockaddr *)&a, sizeof a) != 0)
				_exit(12);
			p[np++] = (struct relay_pair){ .cl = cl, .sv = sv };
		}
		for (int i = 0; i < np; i++) {
			char buf[65536];
			struct pollfd *fc = &f[2 + 2 * i], *fs = &f[3 + 2 * i];
			bool closed = false;
			if (fc->revents) {
				ssize_t n = read(p[i].cl, buf, sizeof buf);
				if (n <= 0) {
					closed = true;
				} else {
					if (armed && !p[i].holding && !p[i].released &&
					    memmem(buf, (size_t)n, pattern, strlen(pattern))) {
						armed = false;
						p[i].holding = true;
						if (write(ctl_out, "H", 1) != 1)
							_exit(13);
					}
					if (p[i].holding) {
						p[i].held = realloc(p[i].held, p[i].nheld + (size_t)n);
						memcpy(p[i].held + p[i].nheld, buf, (size_t)n);
						p[i].nheld += (size_t)n;
					} else if (write(p[i].sv, buf, (size_t)n) != n) {
						closed = true;
					}
				}
			}
			if (fs->revents) {
				ssize_t n = read(p[i].sv, buf, sizeof buf);
				if (n <= 0) {
					closed = true;
				} else {
					if (p[i].released) {
						p[i].released = false;
						if (write(ctl_out, "F", 1) != 1)
							_exit(14);
					}
					(void)!write(p[i].cl, buf, (size_t)n);
				}
			}
			/* a client gone while its bytes are held: they still go
			 * to Redis when released (the wire delivers what was sent) */
			if (closed && !p[i].holding) {
				close(p[i].cl);
				close(p[i].sv);
				free(p[i].held);
				p[i--] = p[--np];
			} else if (closed) {
				shutdown(p[i].cl, SHUT_RDWR);
			}
		}
	}
}

struct relay {
	pid_t pid;
	int port, to, from;
};

static struct relay relay_start(int target_port)
{
	int c2r[2], r2c[2];
	struct relay r = { 0 };
	struct sockaddr_in a = { .sin_family = AF_INET };
	socklen_t l = sizeof a;
	a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	int lfd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	cr_assert_geq(lfd, 0);
	cr_assert_eq(bind(lfd, (struct sockaddr *)&a, sizeof a), 0);
	cr_assert_eq(listen(lfd, 8), 0);
	cr_assert_eq(getsockname(lfd, (struct sockaddr *)&a, &l), 0);
	cr_assert_eq(pipe(c2r), 0);
	cr_assert_eq(pipe(r2c), 0);
	r.port = ntohs(a.sin_port);
	r.pid = fork();
	cr_assert_geq(r.pid, 0);
	kid_add(r.pid);
	if (r.pid == 0) {
		close(c2r[1]);
		close(r2c[0]);
		relay_loop(lfd, target_port, c2r[0], r2c[1]);
		_exit(0);
	}
	close(lfd);
	close(c2r[0]);
	close(r2c[1]);
	r.to = c2r[1];
	r.from = r2c[0];
	return r;
}

static void relay_say(struct relay *r, char cmd)
{
	cr_assert_eq(write(r->to, &cmd, 1), 1);
}

static void relay_await(struct relay *r, char want)
{
	struct pollfd f = { .fd = r->from, .events = POLLIN };
	char ch = 0;
	cr_assert_eq(poll(&f, 1, WAIT_MS), 1, "relay never said %c", want);
	cr_assert_eq(read(r->from, &ch, 1), 1);
	cr_assert_eq(ch, want);
}

static void relay_stop(struct relay *r)
{
	close(r->to);
	close(r->from);
	kill(r->pid, SIGKILL);
	waitpid(r->pid, NULL, 0);
}

/* One command on a fresh connection to srv; its integer reply (or 0 for a
 * status reply). */
static long long redis_do(int argc, const char **argv)
{
	sc_redis_config cfg = { .host = "127.0.0.1", .port = srv.port, .connect_timeout_ms = 2000,
	                        .command_timeout_ms = 2000 };
	sc_redis_conn *rc = NULL;
	redisReply *r = NULL;
	cr_assert_eq(sc_redis_connect(&cfg, &rc), 0);
	int e = sc_redis_command(rc, SC_RT_INTEGER | SC_RT_STATUS, &r, argc, argv, NULL);
	cr_assert_eq(e, 0, "%s: %s", argv[0], sc_redis_last_error(rc));
	long long v = r->type == REDIS_REPLY_INTEGER ? r->integer : 0;
	freeReplyObject(r);
	sc_redis_close(rc);
	return v;
}

static long long redis_exists(const char *key)
{
	const char *argv[2] = { "EXISTS", key };
	return redis_do(2, argv);
}

/*
 * A holder hangs with a put on the wire; another takes over, and the entry
 * is deleted.  When the stale bytes finally reach Redis, nothing of the
 * stale batch may be applied: the deleted entry does not come back, in
 * Redis or on B.  arm: where the relay catches the holder ('A': its
 * MULTI ... EXEC, after it read the fence; 'W': its WATCH and GET of the
 * fence, before).  drop_fence: the fence key is deleted meanwhile (as by
 * expiry, eviction or a Redis that kept no data).
 */
static void stale_holder_round(char arm, bool drop_fence)
{
	struct relay rl = relay_start(srv.port);
	char id[SC_RID_NATIVE_LEN + 1], key[160], fence[160], origin[33];
	cr_assert_eq(sc_rid_native("ns", "key-1;", id), 0);
	snprintf(key, sizeof key, "t:llm_cache:%s", id);
	for (int i = 0; i < 16; i++)
		snprintf(origin + 2 * i, 3, "%02x", A->hdr->creation_id[i]);
	snprintf(fence, sizeof fence, "t:llm_cache_fence:%s", origin);

	pid_t child = syncer_in_child_at(rl.port); /* before any thread here */
	start_tier(B);
	cr_assert_eq(tstat(A).syncer_pid, child);
	start_tier(A); /* ours waits for the lease */

	relay_say(&rl, arm);
	cr_assert_eq(put_i(A, 1, "stale"), 0);
	relay_await(&rl, 'H'); /* the child's bytes are on the wire, held */
	kill(child, SIGSTOP);
	AWAIT(tstat(A).syncer_pid == getpid(), "taken over from the hung syncer");
	/* the new holder replays the put, then the deletion */
	AWAIT(has_i(B, 1, "stale") == 1, "exported by the new holder");
	cr_assert_eq(semcache_invalidate(A, "ns", "key-1;", NULL), 0);
	AWAIT(tstat(A).outbox_depth == 0 && redis_exists(key) == 0, "deleted in Redis");
	AWAIT(has_i(B, 1, "stale") == 0, "deleted on B");
	if (drop_fence) {
		const char *del[2] = { "DEL", fence };
		cr_assert_eq(redis_do(2, del), 1, "the fence key was there");
	}

	/* the hung holder's bytes arrive now, and it runs again */
	relay_say(&rl, 'R');
	relay_await(&rl, 'F');
	kill(child, SIGCONT);
	for (int i = 0; i < 40; i++) {
		cr_assert_eq(redis_exists(key), 0, "the stale put brought the entry back in Redis");
		tr_sleep_ms(25);
	}
	cr_assert_eq(has_i(B, 1, "stale"), 0, "the stale put reached B");
	cr_assert_eq(tstat(A).syncer_pid, getpid());
	relay_stop(&rl);
}

/* Caught with its transaction on the wire: the WATCH voids its EXEC. */
Test(tier, a_stale_holders_batch_is_fenced_out, .init = start_two, .fini = stop_all,
     .timeout = 180)
{
	stale_holder_round('A', false);
}

/* Caught before it read the fence, and the key gone meanwhile: the
 * segment's epoch still tells it that it is stale. */
Test(tier, a_stale_holder_is_fenced_out_when_the_fence_key_is_gone, .init = start_two,
     .fini = stop_all, .timeout = 180)
{
	stale_holder_round('W', true);
}

/* ------------------------------------------------------------------------
 * The index pass: trimming, gaps in the event stream, resync
 * ---------------------------------------------------------------------- */


static long long index_size(void)
{
	const char *argv[2] = { "SCARD", "t:llm_cache_index" };
	return redis_do(2, argv);
}

static void entry_key(int i, char *out, size_t n)
{
	char key[32], id[SC_RID_NATIVE_LEN + 1];
	snprintf(key, sizeof key, "key-%d;", i);
	cr_assert_eq(sc_rid_native("ns", key, id), 0);
	snprintf(out, n, "t:llm_cache:%s", id);
}

static void start_tier_pass(semcache *c, uint32_t pass_ms)
{
	semcache_tier_options o = topts(NULL);
	o.index_pass_ms = pass_ms;
	int rc = semcache_tier_start(c, &o);
	cr_assert_eq(rc, 0, "tier_start: %s", semcache_strerror(rc));
}

/* Entries that left Redis (expired, or deleted by a host that could not
 * SREM) leave the index SET too; live ones stay. */
Test(tier_index, members_of_gone_entries_are_trimmed, .init = start_two, .fini = stop_all,
     .timeout = 120)
{
	start_tier_pass(A, 100);
	for (int i = 0; i < 20; i++)
		cr_assert_eq(put_i(A, i, "t"), 0);
	AWAIT(tstat(A).exported == 20 && tstat(A).outbox_depth == 0, "exported");
	cr_assert_eq(index_size(), 20);
	for (int i = 0; i < 5; i++) {
		char k[160];
		entry_key(i, k, sizeof k);
		const char *argv[2] = { "DEL", k };
		cr_assert_eq(redis_do(2, argv), 1);
	}
	AWAIT(index_size() == 15, "trimmed to the live ids");
	AWAIT(tstat(A).index_trimmed == 5, "counted");
	/* and stays so: live members are never trimmed */
	tr_sleep_ms(400);
	cr_assert_eq(index_size(), 15);
	cr_assert_eq(tstat(A).index_trimmed, 5);
}

/* B's syncer was away while the stream lost events it had not read (as
 * when more than the stream's cap is written meanwhile): B notices the gap
 * and an index pass brings the entries the events named. */
Test(tier_index, events_trimmed_before_they_were_read_are_filled_by_a_pass, .init = start_two,
     .fini = stop_all, .timeout = 120)
{
	start_tier(A);
	start_tier_pass(B, 100);
	AWAIT(tstat(A).state == SEMCACHE_TIER_UP && tstat(B).state == SEMCACHE_TIER_UP, "up");
	cr_assert_eq(put_i(A, 100, "first"), 0);
	AWAIT(has_i(B, 100, "first") == 1, "B reads events");
	cr_assert_eq(tstat(B).import_gaps, 0);
	cr_assert_eq(semcache_tier_stop(B), 0);
	for (int i = 0; i < 30; i++)
		cr_assert_eq(put_i(A, i, "gap"), 0);
	AWAIT(tstat(A).exported == 31 && tstat(A).outbox_depth == 0, "exported");
	const char *trim[4] = { "XTRIM", "t:llm_cache_events", "MAXLEN", "0" };
	cr_assert_geq(redis_do(4, trim), 30);
	start_tier_pass(B, 100);
	AWAIT(count_present(B, 0, 30, "gap") == 30, "B filled the gap");
	cr_assert_eq(tstat(B).import_gaps, 1);
	cr_assert_eq(tstat(B).import_rejected, 0);
}

/* Deletions that found the outbox full are not lost for good: the next
 * index pass deletes what this segment exported and no longer holds, with
 * events, so the other hosts drop those entries too. */
Test(tier_index, deletions_lost_to_a_full_outbox_are_resynced, .init = start_two,
     .fini = stop_all, .timeout = 180)
{
	start_tier_pass(A, 100);
	start_tier(B);
	AWAIT(tstat(A).state == SEMCACHE_TIER_UP && tstat(B).state == SEMCACHE_TIER_UP, "up");
	for (int i = 0; i < 300; i++)
		cr_assert_eq(put_i(A, i, "r"), 0);
	AWAIT(count_present(B, 0, 300, "r") == 300 && tstat(A).outbox_depth == 0, "on B");
	tr_signal(&srv, SIGSTOP);
	/* the ring (1024) takes 768 puts, then 256 deletions: 44 are lost */
	for (int i = 300; i < 1068; i++)
		cr_assert_eq(put_i(A, i, "r"), 0);
	for (int i = 0; i < 300; i++) {
		char key[32];
		snprintf(key, sizeof key, "key-%d;", i);
		cr_assert_eq(semcache_invalidate(A, "ns", key, NULL), 0);
	}
	semcache_tier_stats st = tstat(A);
	cr_assert_eq(st.dropped, 0);
	cr_assert_eq(st.deletes_lost, 44);
	cr_assert_eq(st.resync_needed, 1);
	tr_signal(&srv, SIGCONT);
	AWAIT(tstat(A).resyncs >= 1 && tstat(A).outbox_depth == 0, "a resync pass");
	AWAIT(count_present(B, 0, 300, "r") == 0, "every deletion reached B");
	for (int i = 0; i < 300; i++) {
		char k[160];
		entry_key(i, k, sizeof k);
		cr_assert_eq(redis_exists(k), 0, "key-%d; is still in Redis", i);
	}
	st = tstat(A);
	cr_assert_eq(st.resync_needed, 0);
	cr_assert_geq(st.resync_deleted, 44);
	cr_assert_leq(st.resync_deleted, 300);
	/* what A still holds was not touched */
	cr_assert_eq(count_present(A, 300, 1068, "r"), 768);
	AWAIT(count_present(B, 300, 1068, "r") == 768, "the puts on B");
	cr_assert_eq(index_size(), 768);
}


/* A foreign value of another type at the fence key (GET answers
 * WRONGTYPE) is replaced by the first batch, not a reason to stop. */
Test(tier_refused, a_foreign_type_at_the_fence_key_does_not_stop_export, .init = start_two,
     .fini = stop_all, .timeout = 60)
{
	char fence[160], origin[33];
	for (int i = 0; i < 16; i++)
		snprintf(origin + 2 * i, 3, "%02x", A->hdr->creation_id[i]);
	snprintf(fence, sizeof fence, "t:llm_cache_fence:%s", origin);
	const char *push[3] = { "RPUSH", fence, "not a token" };
	cr_assert_eq(redis_do(3, push), 1);
	start_tier(A);
	for (int i = 0; i < 5; i++)
		cr_assert_eq(put_i(A, i, "x"), 0);
	AWAIT(tstat(A).outbox_depth == 0 && tstat(A).exported == 5, "exported");
	cr_assert_eq(index_size(), 5);
	cr_assert_eq(redis_exists(fence), 1, "the fence is ours now");
}

/* One expired entry, alone in the index: the trim's transaction replies
 * (three) outnumber the step's reads (two); once wrote past its array. */
Test(tier_index, a_single_gone_member_is_trimmed, .init = start_two, .fini = stop_all,
     .timeout = 60)
{
	start_tier_pass(A, 100);
	cr_assert_eq(put_i(A, 1, "t"), 0);
	AWAIT(tstat(A).exported == 1 && tstat(A).outbox_depth == 0, "exported");
	char k[160];
	entry_key(1, k, sizeof k);
	const char *argv[2] = { "DEL", k };
	cr_assert_eq(redis_do(2, argv), 1);
	AWAIT(index_size() == 0 && tstat(A).index_trimmed == 1, "trimmed");
}

/* The largest batch the options allow fits one pipeline, in export and in
 * the sweep. */
Test(tier, the_largest_batch_exports_and_sweeps, .init = start_two, .fini = stop_all,
     .timeout = 120)
{
	semcache_close(A);
	unlink(pa);
	A = open_seg(pa, "tierA", 16384); /* an outbox of 2048 */
	for (int i = 0; i < 1100; i++)
		cr_assert_eq(put_i(A, i, "big"), 0); /* swept: no tier yet */
	semcache_tier_options o = topts(NULL);
	o.batch = 1024;
	cr_assert_eq(semcache_tier_start(A, &o), 0);
	AWAIT(tstat(A).swept == 1100, "swept in batches of 1024");
	for (int i = 1100; i < 2200; i++)
		cr_assert_eq(put_i(A, i, "big"), 0);
	AWAIT(tstat(A).exported == 2200 && tstat(A).outbox_depth == 0, "exported");
	cr_assert_eq(index_size(), 2200);
}

/* A warm-up larger than one pipeline holds is fetched in slices. */
Test(tier, a_large_warmup_is_fetched_in_slices, .init = start_two, .fini = stop_all,
     .timeout = 120)
{
	start_tier(A);
	for (int i = 0; i < 2100; i++)
		cr_assert_eq(put_i(A, i, "w"), 0);
	AWAIT(tstat(A).exported == 2100 && tstat(A).outbox_depth == 0, "exported");
	semcache_tier_options o = topts(NULL);
	o.warmup = 3000;
	cr_assert_eq(semcache_tier_start(B, &o), 0);
	AWAIT(tstat(B).imported == 2100, "B warmed up with all of them");
	cr_assert_eq(put_i(A, 5000, "after"), 0);
	AWAIT(has_i(B, 5000, "after") == 1, "and imports after");
}

static void start_no_xadd(void)
{
	static const char *const args[] = { "--rename-command", "XADD", "", NULL };
	tr_start(&srv, args, NULL);
	A = open_seg(pa, "tierA", 1024);
}

/* Redis refuses the whole transaction (EXECABORT: here XADD is renamed
 * away): nothing was applied, so the entries stay DIRTY, and a Redis that
 * accepts them gets them all. */
Test(tier_refused, a_voided_sweep_keeps_its_entries_dirty, .init = start_no_xadd,
     .fini = stop_all, .timeout = 60)
{
	for (int i = 0; i < 10; i++)
		cr_assert_eq(put_i(A, i, "v"), 0);
	start_tier(A);
	AWAIT(tstat(A).last_error != 0, "refused");
	cr_assert_eq(index_size(), 0);
	tr_kill9(&srv);
	srv.extra[0] = NULL; /* the same port, XADD back */
	cr_assert_eq(tr_restart(&srv), 0);
	AWAIT(index_size() == 10, "every entry reached Redis");
}
