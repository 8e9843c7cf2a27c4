/*
 * test_redis.c - the Redis tier's wire layer and codecs against a real
 * redis-server that each test starts itself (redis_fixture.h): pipelined
 * batches, total deadlines while the server is SIGSTOPped, reconnect with
 * backoff after SIGKILL and restart, refusals (password, ACL, OOM,
 * replica), protocol garbage from a fake server, hostile values planted in
 * the keys, and the seed format both ways with a Python writer and reader
 * (seed_fixture.py, Debian's python3-redis).
 *
 * Time bounds are generous on purpose: a deadline test asserts that a call
 * failed with -ETIMEDOUT and returned within five times its deadline,
 * never a precise duration.
 */
#include <criterion/criterion.h>
#include <errno.h>
#include <math.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include "codec.h"
#include "redis_codec.h"
#include "redis_conn.h"
#include "redis_fixture.h"
#include "semcache.h"

#define BAD SEMCACHE_EBADRECORD

static tr_server srv, srv2;

static void start_plain(void) { tr_start(&srv, NULL, NULL); }
static void stop_all(void)
{
	tr_stop(&srv);
	tr_stop(&srv2);
}

static sc_redis_config tcp_config(const tr_server *s, uint32_t timeout_ms)
{
	return (sc_redis_config){ .host = "127.0.0.1", .port = s->port,
	                          .connect_timeout_ms = timeout_ms,
	                          .command_timeout_ms = timeout_ms };
}

static sc_redis_conn *connect_ok(const sc_redis_config *cfg)
{
	sc_redis_conn *c = NULL;
	int rc = sc_redis_connect(cfg, &c);

	cr_assert_eq(rc, 0, "connect: %d (%s) %s", rc, sc_redis_class_name(rc),
	             sc_redis_last_error(c));
	return c;
}

/* argv of C strings */
static int cmd(sc_redis_conn *c, unsigned expect, redisReply **r, int argc, ...)
{
	const char *argv[16];
	va_list ap;

	va_start(ap, argc);
	for (int i = 0; i < argc && i < 16; i++)
		argv[i] = va_arg(ap, const char *);
	va_end(ap);
	return sc_redis_command(c, expect, r, argc, argv, NULL);
}

/* SET name value (binary-safe). */
static int set_raw(sc_redis_conn *c, const char *name, const void *v, size_t n)
{
	const char *argv[3] = { "SET", name, v };
	size_t len[3] = { 3, strlen(name), n };

	return sc_redis_command(c, SC_RT_STATUS, NULL, 3, argv, len);
}

static semcache_response response_for(const char *content)
{
	static const semcache_tool_call tc[] = { { "call_9", "search", "{\"q\":1}" } };
	return (semcache_response){ .content = content, .model = "gpt-test",
	                            .prompt_tokens = 11, .completion_tokens = 22,
	                            .tool_calls = tc, .n_tool_calls = 1, .latency_ms = 33 };
}

/* ------------------------------------------------------------------------
 * Pipelines, unix socket, SELECT
 * ---------------------------------------------------------------------- */

#define N_ENTRIES 200
#define DIM 8

Test(redis_wire, pipelined_batch_round_trips_native_entries, .init = start_plain,
     .fini = stop_all, .timeout = 60)
{
	sc_redis_config cfg = tcp_config(&srv, 2000);
	sc_redis_conn *c = connect_ok(&cfg);
	static char ids[N_ENTRIES][SC_RID_NATIVE_LEN + 1];
	static redisReply *rep[3 * N_ENTRIES + 1];
	static int rcs[3 * N_ENTRIES + 1];
	sc_buf key[N_ENTRIES] = { { 0 } }, ekey[N_ENTRIES] = { { 0 } }, idx = { 0 };
	sc_buf val[N_ENTRIES] = { { 0 } }, emb[N_ENTRIES] = { { 0 } }, rec = { 0 };
	size_t n = 0;

	cr_assert_eq(sc_rkey_build("t:", SC_RKEY_INDEX, SC_RFMT_NATIVE, NULL, 0, &idx), 0);
	for (int i = 0; i < N_ENTRIES; i++) {
		char k[32], content[64];
		float v[DIM];

		snprintf(k, sizeof k, "key-%d", i);
		snprintf(content, sizeof content, "answer number %d", i);
		semcache_response r = response_for(content);
		cr_assert_eq(sc_codec_encode("tenant", k, "scope", &r, 1u << 20, &rec), 0);
		sc_rentry e = { .ns = "tenant", .ns_len = 6, .key = k, .key_len = strlen(k),
		                .scope = "scope", .scope_len = 5, .created_ms = 1000 + i,
		                .exact_expiry_ms = 5000 + i, .semantic_expiry_ms = 9000 + i,
		                .hits = (uint64_t)i, .payload = rec.data, .payload_len = rec.len };
		cr_assert_eq(sc_rnative_encode(&e, 1u << 20, &val[i]), 0);
		for (int d = 0; d < DIM; d++)
			v[d] = (float)(i + 1) / (float)(d + 1);
		cr_assert_eq(sc_remb_encode(v, DIM, &emb[i]), 0);
		cr_assert_eq(sc_rid_native("tenant", k, ids[i]), 0);
		cr_assert_eq(sc_rkey_build("t:", SC_RKEY_ENTRY, SC_RFMT_NATIVE, ids[i],
		                           SC_RID_NATIVE_LEN, &key[i]), 0);
		cr_assert_eq(sc_rkey_build("t:", SC_RKEY_EMB, SC_RFMT_NATIVE, ids[i],
		                           SC_RID_NATIVE_LEN, &ekey[i]), 0);

		const char *set[5] = { "SET", key[i].data, val[i].data, "PX", "600000" };
		size_t setl[5] = { 3, key[i].len, val[i].len, 2, 6 };
		const char *sete[3] = { "SET", ekey[i].data, emb[i].data };
		size_t setel[3] = { 3, ekey[i].len, emb[i].len };
		const char *sadd[3] = { "SADD", idx.data, ids[i] };
		cr_assert_eq(sc_redis_append(c, SC_RT_STATUS, 5, set, setl), 0);
		cr_assert_eq(sc_redis_append(c, SC_RT_STATUS, 3, sete, setel), 0);
		cr_assert_eq(sc_redis_append(c, SC_RT_INTEGER, 3, sadd, NULL), 0);
	}
	cr_assert_eq(sc_redis_pending(c), 3 * N_ENTRIES);
	cr_assert_eq(sc_redis_exec(c, rep, rcs, &n), 0, "%s", sc_redis_last_error(c));
	cr_assert_eq(n, 3 * N_ENTRIES);
	for (size_t i = 0; i < n; i++)
		cr_assert_eq(rcs[i], 0);
	sc_redis_free_replies(rep, n);
	cr_assert_eq(sc_redis_pending(c), 0);

	/* Read everything back in one batch and decode it as an importer would. */
	for (int i = 0; i < N_ENTRIES; i++) {
		const char *get[2] = { "GET", key[i].data };
		const char *gete[2] = { "GET", ekey[i].data };
		cr_assert_eq(sc_redis_append(c, SC_RT_STRING, 2, get, NULL), 0);
		cr_assert_eq(sc_redis_append(c, SC_RT_STRING, 2, gete, NULL), 0);
	}
	const char *sm[2] = { "SMEMBERS", idx.data };
	cr_assert_eq(sc_redis_append(c, SC_RT_ARRAY, 2, sm, NULL), 0);
	cr_assert_eq(sc_redis_exec(c, rep, rcs, &n), 0, "%s", sc_redis_last_error(c));
	cr_assert_eq(n, 2 * N_ENTRIES + 1);
	for (int i = 0; i < N_ENTRIES; i++) {
		redisReply *r = rep[2 * i], *re = rep[2 * i + 1];
		semcache_response *resp = NULL;
		char want[64];
		float v[DIM];
		sc_rentry e;

		cr_assert_eq(sc_rnative_decode(r->str, r->len, ids[i], &e, &resp), 0, "entry %d", i);
		snprintf(want, sizeof want, "answer number %d", i);
		cr_assert_str_eq(resp->content, want);
		cr_assert_eq(e.hits, (uint64_t)i);
		cr_assert_eq(e.semantic_expiry_ms, 9000 + i);
		cr_assert_eq(sc_remb_decode(re->str, re->len, DIM, v), 0);
		cr_assert_float_eq(v[DIM - 1], (float)(i + 1) / DIM, 1e-6);
		semcache_response_free(resp);
	}
	redisReply *members = rep[2 * N_ENTRIES];
	cr_assert_eq(sc_redis_check_array(members, SC_RT_STRING, 100000), 0);
	cr_assert_eq(members->elements, N_ENTRIES);
	for (size_t i = 0; i < members->elements; i++)
		cr_assert_eq(sc_rid_check(SC_RFMT_NATIVE, members->element[i]->str,
		                          members->element[i]->len), 0);
	sc_redis_free_replies(rep, n);

	for (int i = 0; i < N_ENTRIES; i++) {
		free(key[i].data);
		free(ekey[i].data);
		free(val[i].data);
		free(emb[i].data);
	}
	free(idx.data);
	free(rec.data);
	sc_redis_close(c);
}

Test(redis_wire, unix_socket_and_select_reach_the_chosen_db, .init = start_plain,
     .fini = stop_all, .timeout = 60)
{
	sc_redis_config ucfg = { .unix_path = srv.sock, .db = 5, .connect_timeout_ms = 2000,
	                         .command_timeout_ms = 2000 };
	sc_redis_config tcfg = tcp_config(&srv, 2000);
	sc_redis_conn *u = connect_ok(&ucfg), *t0, *t5;
	redisReply *r = NULL;

	cr_assert_eq(cmd(u, SC_RT_STATUS, NULL, 3, "SET", "where", "db5"), 0);
	t0 = connect_ok(&tcfg);
	tcfg.db = 5;
	t5 = connect_ok(&tcfg);
	cr_assert_eq(cmd(t0, SC_RT_STRING | SC_RT_NIL, &r, 2, "GET", "where"), 0);
	cr_assert_eq(r->type, REDIS_REPLY_NIL, "db 0 must not see db 5's key");
	freeReplyObject(r);
	cr_assert_eq(cmd(t5, SC_RT_STRING | SC_RT_NIL, &r, 2, "GET", "where"), 0);
	cr_assert(r->type == REDIS_REPLY_STRING && strcmp(r->str, "db5") == 0);
	freeReplyObject(r);
	sc_redis_close(u);
	sc_redis_close(t0);
	sc_redis_close(t5);
}

/* ------------------------------------------------------------------------
 * Deadlines, crashes, reconnects
 * ---------------------------------------------------------------------- */

Test(redis_fail, deadline_holds_while_server_is_sigstopped, .init = start_plain,
     .fini = stop_all, .timeout = 60)
{
	const uint32_t deadline = 200;
	sc_redis_config cfg = tcp_config(&srv, deadline);
	sc_redis_conn *c = connect_ok(&cfg);
	static char big[256 << 10];
	long long t0, took;
	int rc;

	tr_signal(&srv, SIGSTOP);

	/* one command */
	t0 = tr_now_ms();
	rc = cmd(c, SC_RT_STATUS, NULL, 1, "PING");
	took = tr_now_ms() - t0;
	cr_assert_eq(rc, -ETIMEDOUT, "got %d (%s)", rc, sc_redis_class_name(rc));
	cr_assert_lt(took, 5 * deadline, "PING returned after %lld ms", took);
	cr_assert_not(sc_redis_connected(c), "a timed-out stream is dropped");

	/* a reconnect: the kernel still accepts the TCP connection, the
	 * handshake then waits for a server that cannot answer */
	t0 = tr_now_ms();
	rc = sc_redis_reconnect(c);
	took = tr_now_ms() - t0;
	cr_assert_eq(rc, -ETIMEDOUT, "got %d (%s)", rc, sc_redis_class_name(rc));
	cr_assert_lt(took, 5 * deadline, "reconnect returned after %lld ms", took);
	cr_assert(sc_redis_class_is_down(rc));

	/* a batch larger than the socket buffers: the send side must give up
	 * at the deadline too */
	tr_signal(&srv, SIGCONT);
	cr_assert_eq(sc_redis_reconnect(c), 0);
	tr_signal(&srv, SIGSTOP);
	memset(big, 'x', sizeof big);
	for (int i = 0; i < 64; i++) {
		const char *argv[3] = { "SET", "big", big };
		size_t len[3] = { 3, 3, sizeof big };
		cr_assert_eq(sc_redis_append(c, SC_RT_STATUS, 3, argv, len), 0);
	}
	{
		static redisReply *rep[64];
		size_t n;
		t0 = tr_now_ms();
		rc = sc_redis_exec(c, rep, NULL, &n);
		took = tr_now_ms() - t0;
		cr_assert_eq(rc, -ETIMEDOUT, "got %d (%s)", rc, sc_redis_class_name(rc));
		cr_assert_lt(took, 5 * deadline, "16 MB batch returned after %lld ms", took);
		cr_assert_eq(n, 64);
		for (size_t i = 0; i < n; i++)
			cr_assert_null(rep[i]);
	}

	/* continued: the same handle reconnects and works */
	tr_signal(&srv, SIGCONT);
	cr_assert_eq(sc_redis_reconnect(c), 0, "%s", sc_redis_last_error(c));
	cr_assert_eq(cmd(c, SC_RT_STATUS, NULL, 1, "PING"), 0);
	sc_redis_close(c);
}

Test(redis_fail, reconnects_with_backoff_after_sigkill_and_restart, .init = start_plain,
     .fini = stop_all, .timeout = 60)
{
	sc_redis_config cfg = tcp_config(&srv, 500);
	sc_redis_conn *c = connect_ok(&cfg);
	static char big[1 << 20];
	redisReply *r = NULL;
	sc_backoff b;
	int rc, attempts = 0, failures = 0;

	cr_assert_eq(cmd(c, SC_RT_STATUS, NULL, 3, "SET", "before", "crash"), 0);
	tr_kill9(&srv);

	/* 16 MB into a dead socket, more than the socket buffers take: the
	 * failure comes back as a value, at the first sign of the dead peer
	 * (sends use MSG_NOSIGNAL, so even a send after its reset could not
	 * raise SIGPIPE in the host process). */
	memset(big, 'y', sizeof big);
	for (int i = 0; i < 16; i++) {
		const char *argv[3] = { "SET", "after", big };
		size_t len[3] = { 3, 5, sizeof big };
		cr_assert_eq(sc_redis_append(c, SC_RT_STATUS, 3, argv, len), 0);
	}
	{
		static redisReply *rep[16];
		size_t n;
		rc = sc_redis_exec(c, rep, NULL, &n);
	}
	cr_assert_eq(rc, -ENOTCONN, "got %d (%s): %s", rc, sc_redis_class_name(rc),
	             sc_redis_last_error(c));
	cr_assert_str_eq(sc_redis_class_name(rc), "unreachable");

	/* Reconnect loop as the syncer will run it; the server comes back
	 * after the third failed attempt. */
	sc_backoff_init(&b, 5, 80, 99);
	for (attempts = 1; attempts <= 50; attempts++) {
		rc = sc_redis_reconnect(c);
		if (rc == 0)
			break;
		cr_assert_eq(rc, -ENOTCONN, "while down: %d (%s)", rc, sc_redis_class_name(rc));
		if (++failures == 3)
			cr_assert_eq(tr_restart(&srv), 0, "restart on port %d", srv.port);
		uint32_t d = sc_backoff_next(&b);
		cr_assert_leq(d, 80);
		tr_sleep_ms(d);
	}
	cr_assert_eq(rc, 0, "never reconnected: %s", sc_redis_last_error(c));
	cr_assert_geq(failures, 3);
	sc_backoff_reset(&b);

	/* A new server without persistence: the old key is gone, writes work. */
	cr_assert_eq(cmd(c, SC_RT_STRING | SC_RT_NIL, &r, 2, "GET", "before"), 0);
	cr_assert_eq(r->type, REDIS_REPLY_NIL);
	freeReplyObject(r);
	cr_assert_eq(set_raw(c, "after", big, sizeof big), 0);
	sc_redis_close(c);
}

Test(redis_fail, nothing_listening_is_unreachable)
{
	int port = tr_free_port();
	sc_redis_config cfg = { .host = "127.0.0.1", .port = port, .connect_timeout_ms = 500 };
	sc_redis_conn *c = NULL;
	int rc;

	cr_assert_gt(port, 0);
	rc = sc_redis_connect(&cfg, &c);
	cr_assert_eq(rc, -ENOTCONN, "got %d", rc);
	cr_assert_not_null(c, "a failed connect still hands back a handle to retry with");
	cr_assert_neq(sc_redis_last_error(c)[0], '\0');
	cr_assert_eq(cmd(c, SC_RT_STATUS, NULL, 1, "PING"), -ENOTCONN);

	/* A batch is capped, and one sent while down fails whole, each
	 * command with the transport's class. */
	const char *ping[1] = { "PING" };
	static redisReply *rep[SC_REDIS_MAX_BATCH];
	static int rcs[SC_REDIS_MAX_BATCH];
	size_t n = 0;
	for (unsigned i = 0; i < SC_REDIS_MAX_BATCH; i++)
		cr_assert_eq(sc_redis_append(c, SC_RT_STATUS, 1, ping, NULL), 0);
	cr_assert_eq(sc_redis_append(c, SC_RT_STATUS, 1, ping, NULL), -E2BIG);
	cr_assert_eq(cmd(c, SC_RT_STATUS, NULL, 1, "PING"), -EBUSY, "no command inside a batch");
	cr_assert_eq(sc_redis_exec(c, rep, rcs, &n), -ENOTCONN);
	cr_assert_eq(n, SC_REDIS_MAX_BATCH);
	for (size_t i = 0; i < n; i++)
		cr_assert(rep[i] == NULL && rcs[i] == -ENOTCONN);
	cr_assert_eq(sc_redis_pending(c), 0, "the queue is empty after exec, failed or not");
	sc_redis_close(c);
}

/* A listener that never accepts, its queue full: the kernel drops further
 * SYNs, so connect() itself hangs and hiredis's connect timeout has to
 * fire.  Its error is a text we read (redis_conn.c's connect_class), so
 * this is checked against each hiredis we build with. */
Test(redis_fail, connect_that_hangs_is_a_timeout, .timeout = 60)
{
	struct sockaddr_in a = { .sin_family = AF_INET };
	socklen_t l = sizeof a;
	int lfd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0), fill[4];

	a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	cr_assert_geq(lfd, 0);
	cr_assert_eq(bind(lfd, (struct sockaddr *)&a, sizeof a), 0);
	cr_assert_eq(listen(lfd, 0), 0);
	cr_assert_eq(getsockname(lfd, (struct sockaddr *)&a, &l), 0);
	for (int i = 0; i < 4; i++) {
		fill[i] = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
		cr_assert_geq(fill[i], 0);
		(void)connect(fill[i], (struct sockaddr *)&a, sizeof a);
	}
	tr_sleep_ms(50);

	const uint32_t deadline = 300;
	sc_redis_config cfg = { .host = "127.0.0.1", .port = ntohs(a.sin_port),
	                        .connect_timeout_ms = deadline };
	sc_redis_conn *c = NULL;
	long long t0 = tr_now_ms(), took;
	int rc = sc_redis_connect(&cfg, &c);

	took = tr_now_ms() - t0;
	cr_assert_eq(rc, -ETIMEDOUT, "got %d (%s), %s", rc, sc_redis_class_name(rc),
	             sc_redis_last_error(c));
	cr_assert_lt(took, 5 * deadline, "returned after %lld ms", took);
	cr_assert(strncmp(sc_redis_last_error(c), "connect: ", 9) == 0,
	          "hiredis's connect timed out, not our PING: %s", sc_redis_last_error(c));
	cr_assert_not(sc_redis_connected(c));
	sc_redis_close(c);
	for (int i = 0; i < 4; i++)
		close(fill[i]);
	close(lfd);
}

/* ------------------------------------------------------------------------
 * Refusals
 * ---------------------------------------------------------------------- */

static void start_with_password(void)
{
	static const char *const args[] = { "--requirepass", "adminpw", NULL };
	tr_start(&srv, args, "adminpw");
}

Test(redis_refused, wrong_or_missing_password_is_an_auth_failure,
     .init = start_with_password, .fini = stop_all, .timeout = 60)
{
	sc_redis_config cfg = tcp_config(&srv, 2000);
	sc_redis_conn *c = NULL;
	int rc;

	rc = sc_redis_connect(&cfg, &c);
	cr_assert_eq(rc, -EACCES, "no password: %d (%s)", rc, sc_redis_class_name(rc));
	cr_assert_not(sc_redis_connected(c));
	cr_assert(strstr(sc_redis_last_error(c), "NOAUTH"), "%s", sc_redis_last_error(c));
	sc_redis_close(c);

	cfg.password = "wrong";
	rc = sc_redis_connect(&cfg, &c);
	cr_assert_eq(rc, -EACCES, "wrong password: %d (%s)", rc, sc_redis_class_name(rc));
	cr_assert(sc_redis_class_is_down(rc));
	sc_redis_close(c);

	cfg.password = "adminpw";
	c = connect_ok(&cfg);
	sc_redis_close(c);
}

Test(redis_refused, acl_user_is_authenticated_and_confined,
     .init = start_with_password, .fini = stop_all, .timeout = 60)
{
	sc_redis_config cfg = tcp_config(&srv, 2000);
	sc_redis_conn *admin, *c = NULL;
	int rc;

	cfg.password = "adminpw";
	admin = connect_ok(&cfg);
	/* A user that may only touch the tier's keys, as an operator would
	 * set one up for the syncer. */
	cr_assert_eq(cmd(admin, SC_RT_STATUS, NULL, 8, "ACL", "SETUSER", "syncer", "on",
	                 ">syncpw", "~app:llm_cache*", "+@all", "-@dangerous"), 0,
	             "%s", sc_redis_last_error(admin));
	cr_assert_eq(cmd(admin, SC_RT_STATUS, NULL, 4, "ACL", "SETUSER", "gone", "off"), 0);

	cfg.username = "syncer";
	cfg.password = "nope";
	rc = sc_redis_connect(&cfg, &c);
	cr_assert_eq(rc, -EACCES, "wrong ACL password: %d (%s)", rc, sc_redis_class_name(rc));
	cr_assert(strstr(sc_redis_last_error(c), "WRONGPASS"), "%s", sc_redis_last_error(c));
	sc_redis_close(c);

	cfg.username = "gone";
	cfg.password = "x";
	rc = sc_redis_connect(&cfg, &c);
	cr_assert_eq(rc, -EACCES, "disabled user: %d", rc);
	sc_redis_close(c);

	cfg.username = "syncer";
	cfg.password = "syncpw";
	c = connect_ok(&cfg);
	cr_assert_eq(cmd(c, SC_RT_STATUS, NULL, 3, "SET", "app:llm_cache:q1", "v"), 0);
	/* Outside its keys: refused per command; the connection stays up. */
	rc = cmd(c, SC_RT_STATUS, NULL, 3, "SET", "other", "v");
	cr_assert_eq(rc, -EACCES, "NOPERM: %d (%s)", rc, sc_redis_class_name(rc));
	cr_assert(strstr(sc_redis_last_error(c), "NOPERM"), "%s", sc_redis_last_error(c));
	cr_assert(sc_redis_connected(c));
	cr_assert_eq(cmd(c, SC_RT_STATUS, NULL, 1, "PING"), 0);
	sc_redis_close(c);
	sc_redis_close(admin);
}

static void start_tiny_memory(void)
{
	static const char *const args[] = { "--maxmemory", "2mb", "--maxmemory-policy",
	                                    "noeviction", NULL };
	tr_start(&srv, args, NULL);
}

Test(redis_refused, oom_replies_are_classified_and_reads_go_on, .init = start_tiny_memory,
     .fini = stop_all, .timeout = 60)
{
	sc_redis_config cfg = tcp_config(&srv, 5000);
	sc_redis_conn *c = connect_ok(&cfg);
	static char val[32 << 10];
	static redisReply *rep[16];
	int rcs[16], rc = 0, batches;
	size_t n;

	memset(val, 'z', sizeof val);
	/* Fill 512 KB per batch until Redis says OOM; 2 MB cannot take 100. */
	for (batches = 0; batches < 100 && rc == 0; batches++) {
		for (int i = 0; i < 16; i++) {
			char k[32];
			snprintf(k, sizeof k, "fill:%d:%d", batches, i);
			const char *argv[3] = { "SET", k, val };
			size_t len[3] = { 3, strlen(k), sizeof val };
			cr_assert_eq(sc_redis_append(c, SC_RT_STATUS, 3, argv, len), 0);
		}
		rc = sc_redis_exec(c, rep, rcs, &n);
		if (rc) {
			bool saw_oom = false;
			for (size_t i = 0; i < n; i++) {
				cr_assert(rcs[i] == 0 || rcs[i] == -ENOSPC, "reply %zu: %d", i, rcs[i]);
				saw_oom |= rcs[i] == -ENOSPC;
			}
			cr_assert(saw_oom);
		}
		sc_redis_free_replies(rep, n);
	}
	cr_assert_eq(rc, -ENOSPC, "after %d batches: %d (%s)", batches, rc, sc_redis_class_name(rc));
	cr_assert_str_eq(sc_redis_class_name(rc), "oom");
	cr_assert(strstr(sc_redis_last_error(c), "OOM"), "%s", sc_redis_last_error(c));
	cr_assert(sc_redis_connected(c), "an error reply keeps the connection");
	cr_assert_eq(cmd(c, SC_RT_STRING, NULL, 2, "GET", "fill:0:0"), 0, "reads still served");
	sc_redis_close(c);
}

static void start_primary_and_replica(void)
{
	static char port[16];
	tr_start(&srv, NULL, NULL);
	snprintf(port, sizeof port, "%d", srv.port);
	const char *args[] = { "--replicaof", "127.0.0.1", port, NULL };
	tr_start(&srv2, args, NULL);
}

Test(redis_refused, writes_to_a_replica_are_readonly, .init = start_primary_and_replica,
     .fini = stop_all, .timeout = 60)
{
	sc_redis_config cfg = tcp_config(&srv2, 2000);
	sc_redis_conn *c = connect_ok(&cfg);
	int rc = cmd(c, SC_RT_STATUS, NULL, 3, "SET", "k", "v");

	cr_assert_eq(rc, -EROFS, "got %d (%s): %s", rc, sc_redis_class_name(rc),
	             sc_redis_last_error(c));
	cr_assert(sc_redis_class_is_down(rc));
	sc_redis_close(c);
}

/* ------------------------------------------------------------------------
 * Protocol garbage: a fake server of ours that answers every request with
 * canned bytes.  It serves one connection, then exits.
 * ---------------------------------------------------------------------- */

static pid_t fake_pid;

/* Listen on a free loopback port and fork the fake server: the child
 * accepts one connection and runs serve(c, arg) on it, then exits; dies
 * with the test.  Returns the port. */
static int fake_fork(void (*serve)(int c, const void *arg), const void *arg)
{
	struct sockaddr_in a = { .sin_family = AF_INET };
	socklen_t l = sizeof a;
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0), one = 1;

	a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	cr_assert_geq(fd, 0);
	setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
	cr_assert_eq(bind(fd, (struct sockaddr *)&a, sizeof a), 0);
	cr_assert_eq(listen(fd, 4), 0);
	cr_assert_eq(getsockname(fd, (struct sockaddr *)&a, &l), 0);
	fflush(NULL);
	fake_pid = fork();
	cr_assert_geq(fake_pid, 0);
	if (fake_pid == 0) {
		prctl(PR_SET_PDEATHSIG, SIGKILL);
		serve(accept(fd, NULL, NULL), arg);
		_exit(0);
	}
	close(fd);
	return ntohs(a.sin_port);
}

struct canned {
	const char *answer;
	size_t len;
	bool close_after;
};

/* answer the first read, then hang up or drain until the client leaves */
static void serve_canned(int c, const void *arg)
{
	const struct canned *k = arg;
	char buf[4096];

	if (c >= 0 && read(c, buf, sizeof buf) > 0 && k->len)
		(void)!write(c, k->answer, k->len);
	while (!k->close_after && c >= 0 && read(c, buf, sizeof buf) > 0)
		;
}

static int fake_server(const char *answer, size_t len, bool close_after)
{
	struct canned k = { answer, len, close_after };
	return fake_fork(serve_canned, &k);
}

static void fake_stop(void)
{
	if (fake_pid > 0) {
		kill(fake_pid, SIGKILL);
		waitpid(fake_pid, NULL, 0);
		fake_pid = 0;
	}
}

static int connect_to_fake(const char *answer, size_t len, bool close_after,
                           sc_redis_conn **c)
{
	sc_redis_config cfg = { .host = "127.0.0.1", .port = fake_server(answer, len, close_after),
	                        .connect_timeout_ms = 2000, .command_timeout_ms = 2000 };
	int rc = sc_redis_connect(&cfg, c);

	fake_stop();
	return rc;
}

Test(redis_garbage, protocol_garbage_is_classified_not_trusted, .fini = fake_stop,
     .timeout = 60)
{
	static const struct { const char *answer; bool hang_up; int rc; const char *why; } cases[] = {
		{ "hello world\r\n", false, -EPROTO, "not RESP at all" },
		{ "%1\r\n+a\r\n:1\r\n", false, -EPROTO, "a RESP3 map (garbage to hiredis 0.14; "
		                                        "an unexpected type to 1.x)" },
		{ ",3.14\r\n", false, -EPROTO, "a RESP3 double" },
		{ ":42\r\n", false, -EPROTO, "an integer where PING answers a status" },
		{ "+PONG\r\n+PONG\r\n", false, -EPROTO, "two replies to one command" },
		{ "+NOPE\r\n", false, -EPROTO, "a status that is not PONG" },
		{ "$5\r\nPO", true, -ENOTCONN, "a reply cut short by a closed connection" },
		{ "", true, -ENOTCONN, "a server that hangs up without a word" },
		{ "-NOAUTH Authentication required.\r\n", false, -EACCES, "a refusal" },
	};

	for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
		sc_redis_conn *c = NULL;
		int rc = connect_to_fake(cases[i].answer, strlen(cases[i].answer), cases[i].hang_up,
		                         &c);

		cr_assert_eq(rc, cases[i].rc, "%s: got %d (%s), %s", cases[i].why, rc,
		             sc_redis_class_name(rc), sc_redis_last_error(c));
		cr_assert_not(sc_redis_connected(c));
		sc_redis_close(c);
	}
}

/* A reply nested a million arrays deep, finished or not.  hiredis 0.14's
 * reader refuses nesting past 7 levels; 1.x's grows its stack without a
 * bound and builds the tree, which freeReplyObject() (recursive) would
 * then free a million frames deep.  Either way: -EPROTO, no crash. */
Test(redis_garbage, deeply_nested_reply_is_refused, .fini = fake_stop, .timeout = 60)
{
	const size_t levels = 1000000;
	char *deep = malloc(levels * 4 + 4);

	cr_assert_not_null(deep);
	for (size_t i = 0; i < levels; i++)
		memcpy(deep + 4 * i, "*1\r\n", 4);
	memcpy(deep + 4 * levels, ":1\r\n", 4);
	for (int finished = 0; finished < 2; finished++) {
		sc_redis_conn *c = NULL;
		int rc = connect_to_fake(deep, levels * 4 + (finished ? 4 : 0), false, &c);

		cr_assert_eq(rc, -EPROTO, "finished %d: got %d (%s), %s", finished, rc,
		             sc_redis_class_name(rc), sc_redis_last_error(c));
		cr_assert_not(sc_redis_connected(c));
		sc_redis_close(c);
	}
	free(deep);
}

/* A server that answers the handshake, then sends a reply one byte every
 * 20 ms without ever finishing it: each read() returns data, so a timeout
 * per system call (hiredis's SO_RCVTIMEO) would never fire.  Our deadline
 * is for the whole batch. */
static void serve_trickle(int c, const void *arg)
{
	char buf[4096];

	(void)arg;
	if (c < 0 || read(c, buf, sizeof buf) <= 0 || write(c, "+PONG\r\n", 7) != 7 ||
	    read(c, buf, sizeof buf) <= 0 || write(c, "$100000\r\n", 9) != 9)
		_exit(1);
	/* bounded: 100000 bytes at most, and the test kills us anyway */
	for (int i = 0; i < 100000 && send(c, "x", 1, MSG_NOSIGNAL) == 1; i++)
		tr_sleep_ms(20);
}

static int trickle_server(void)
{
	return fake_fork(serve_trickle, NULL);
}

Test(redis_fail, deadline_is_total_against_a_trickling_server, .fini = fake_stop,
     .timeout = 60)
{
	const uint32_t deadline = 300;
	sc_redis_config cfg = { .host = "127.0.0.1", .port = trickle_server(),
	                        .connect_timeout_ms = 2000, .command_timeout_ms = deadline };
	sc_redis_conn *c = connect_ok(&cfg);
	long long t0 = tr_now_ms(), took;
	int rc = cmd(c, SC_RT_STRING, NULL, 2, "GET", "slow");

	took = tr_now_ms() - t0;
	cr_assert_eq(rc, -ETIMEDOUT, "got %d (%s)", rc, sc_redis_class_name(rc));
	cr_assert_lt(took, 5 * deadline, "returned after %lld ms", took);
	cr_assert_not(sc_redis_connected(c));
	sc_redis_close(c);
}

Test(redis_refused, password_given_to_a_server_without_one_is_refused, .init = start_plain,
     .fini = stop_all, .timeout = 60)
{
	sc_redis_config cfg = tcp_config(&srv, 2000);
	sc_redis_conn *c = NULL;
	int rc;

	cfg.password = "unexpected";
	rc = sc_redis_connect(&cfg, &c);
	/* A configuration mismatch the operator must fix: reported as auth. */
	cr_assert_eq(rc, -EACCES, "got %d (%s): %s", rc, sc_redis_class_name(rc),
	             sc_redis_last_error(c));
	sc_redis_close(c);
}

Test(redis_wire, bad_configs_are_refused_before_any_io)
{
	const sc_redis_config bad[] = {
		{ .host = NULL, .port = 6379 },
		{ .host = "127.0.0.1", .port = 0 },
		{ .host = "127.0.0.1", .port = 70000 },
		{ .host = "127.0.0.1", .port = 1, .db = -1 },
		{ .host = "127.0.0.1", .port = 1, .username = "u" }, /* user without password */
	};
	sc_redis_conn *c = (sc_redis_conn *)1;

	for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
		cr_assert_eq(sc_redis_connect(&bad[i], &c), -EINVAL, "config %zu", i);
		cr_assert_null(c);
	}
	cr_assert_eq(sc_redis_connect(NULL, &c), -EINVAL);
	cr_assert_eq(sc_redis_exec(NULL, NULL, NULL, NULL), -EINVAL);
	cr_assert_eq(sc_redis_append(NULL, SC_RT_STATUS, 1, (const char *[]){ "PING" }, NULL),
	             -EINVAL);
}

Test(redis_garbage, unexpected_reply_type_keeps_the_stream, .init = start_plain,
     .fini = stop_all, .timeout = 60)
{
	sc_redis_config cfg = tcp_config(&srv, 2000);
	sc_redis_conn *c = connect_ok(&cfg);

	cr_assert_eq(cmd(c, SC_RT_STATUS, NULL, 2, "INCR", "n"), -EPROTO);
	cr_assert(sc_redis_connected(c), "a type mismatch leaves the stream in step");
	cr_assert_eq(cmd(c, SC_RT_INTEGER, NULL, 2, "INCR", "n"), 0);
	sc_redis_close(c);
}

/* ------------------------------------------------------------------------
 * Hostile values planted in the tier's keys
 * ---------------------------------------------------------------------- */

Test(redis_garbage, planted_values_are_rejected_by_the_decoders, .init = start_plain,
     .fini = stop_all, .timeout = 60)
{
	sc_redis_config cfg = tcp_config(&srv, 2000);
	sc_redis_conn *c = connect_ok(&cfg);
	char id[SC_RID_NATIVE_LEN + 1], other[SC_RID_NATIVE_LEN + 1];
	sc_buf key = { 0 }, ekey = { 0 }, rec = { 0 }, val = { 0 };
	semcache_response r = response_for("planted");
	static const uint8_t issue1013[] = { 0xdd, 0xff, 0xff, 0xff, 0xff };
	const uint8_t nan_emb[8] = { 0x00, 0x00, 0xc0, 0x7f, 0x00, 0x00, 0x80, 0x3f };
	const uint8_t zero_emb[8] = { 0 };
	redisReply *rep = NULL;
	sc_rentry e;
	float v[2];

	cr_assert_eq(sc_rid_native("tenant", "victim", id), 0);
	cr_assert_eq(sc_rid_native("tenant", "someone-else", other), 0);
	cr_assert_eq(sc_rkey_build("", SC_RKEY_ENTRY, SC_RFMT_NATIVE, id, 64, &key), 0);
	cr_assert_eq(sc_rkey_build("", SC_RKEY_EMB, SC_RFMT_NATIVE, id, 64, &ekey), 0);

	/* A valid entry, but for another id: planted under the victim's key. */
	cr_assert_eq(sc_codec_encode("tenant", "someone-else", "", &r, 1u << 20, &rec), 0);
	e = (sc_rentry){ .ns = "tenant", .ns_len = 6, .key = "someone-else", .key_len = 12,
	                 .scope = "", .payload = rec.data, .payload_len = rec.len };
	cr_assert_eq(sc_rnative_encode(&e, 1u << 20, &val), 0);

	const struct { const void *v; size_t n; int rc; } entries[] = {
		{ "garbage", 7, BAD },
		{ issue1013, sizeof issue1013, BAD },
		{ "{\"response\": {}}", 16, BAD },
		{ val.data, val.len / 2, BAD },
		{ val.data, val.len, BAD }, /* hashes to another id */
	};
	for (size_t i = 0; i < sizeof entries / sizeof entries[0]; i++) {
		cr_assert_eq(set_raw(c, key.data, entries[i].v, entries[i].n), 0);
		cr_assert_eq(cmd(c, SC_RT_STRING, &rep, 2, "GET", key.data), 0);
		cr_assert_eq(sc_rnative_decode(rep->str, rep->len, id, &e, NULL), entries[i].rc,
		             "planted entry %zu", i);
		cr_assert_eq(sc_rseed_decode(rep->str, rep->len, 1u << 16, 2, &(sc_rseed){ 0 }) != 0,
		             1, "and not as seed JSON either");
		freeReplyObject(rep);
	}
	/* The same valid entry under its own id is accepted: the rejection
	 * above was the id check, not the value. */
	cr_assert_eq(sc_rnative_decode(val.data, val.len, other, &e, NULL), 0);

	const struct { const void *v; size_t n; int rc; } embs[] = {
		{ "1234567", 7, SEMCACHE_EDIM },
		{ nan_emb, 8, SEMCACHE_EEMBEDDING },
		{ zero_emb, 8, SEMCACHE_EEMBEDDING },
		{ "[1.0, 2.0]", 10, SEMCACHE_EDIM },
	};
	for (size_t i = 0; i < sizeof embs / sizeof embs[0]; i++) {
		cr_assert_eq(set_raw(c, ekey.data, embs[i].v, embs[i].n), 0);
		cr_assert_eq(cmd(c, SC_RT_STRING, &rep, 2, "GET", ekey.data), 0);
		cr_assert_eq(sc_remb_decode(rep->str, rep->len, 2, v), embs[i].rc, "planted emb %zu", i);
		freeReplyObject(rep);
	}

	/* Index members: only well-formed ids pass. */
	static const char *const members[] = {
		"not-hex", "a b", "0123456789ABCDEF0123456789ABCDEF0123456789ABCDEF0123456789ABCDEF",
		"",
	};
	for (size_t i = 0; i < sizeof members / sizeof members[0]; i++)
		cr_assert_eq(cmd(c, SC_RT_INTEGER, NULL, 3, "SADD", "llm_cache_index", members[i]), 0);
	cr_assert_eq(cmd(c, SC_RT_INTEGER, NULL, 3, "SADD", "llm_cache_index", id), 0);
	cr_assert_eq(cmd(c, SC_RT_ARRAY, &rep, 2, "SMEMBERS", "llm_cache_index"), 0);
	cr_assert_eq(sc_redis_check_array(rep, SC_RT_STRING, 1000), 0);
	size_t valid = 0;
	for (size_t i = 0; i < rep->elements; i++)
		valid += sc_rid_check(SC_RFMT_NATIVE, rep->element[i]->str,
		                      rep->element[i]->len) == 0;
	cr_assert_eq(rep->elements, 5);
	cr_assert_eq(valid, 1);
	/* An array of arrays where strings are expected is refused whole. */
	cr_assert_eq(sc_redis_check_array(rep, SC_RT_INTEGER, 1000), -EPROTO);
	cr_assert_eq(sc_redis_check_array(rep, SC_RT_STRING, 4), -EPROTO, "over the cap");
	freeReplyObject(rep);

	free(key.data);
	free(ekey.data);
	free(rec.data);
	free(val.data);
	sc_redis_close(c);
}

/* ------------------------------------------------------------------------
 * Seed format with the reference design's Python side
 * ---------------------------------------------------------------------- */


Test(redis_seed, entries_written_by_python_are_imported, .init = start_plain,
     .fini = stop_all, .timeout = 60)
{
	static const struct {
		const char *id, *content, *model;
		uint32_t n_calls, latency, prompt;
		float emb0;
		int64_t created_ms;
		uint64_t hits;
	} want[] = {
		{ "seed-q1", "Paris is the capital of France.", "gpt-4o-mini", 0, 250, 12, 0.1f,
		  1712345678500, 3 },
		{ "seed-q2", "", "gpt-4o", 2, 813, 30, -1.0f, 1712345679250, 0 },
		{ "user:7/q#3", "Caf\xc3\xa9 \xe2\x98\x95 \"quoted\"\nsecond line", "m", 0, 0, 1,
		  1e-3f, 1712345680000, 41 },
	};
	char port[16];
	sc_redis_config cfg = tcp_config(&srv, 2000);
	sc_redis_conn *c = connect_ok(&cfg);
	redisReply *members = NULL;
	sc_buf key = { 0 }, ekey = { 0 };

	snprintf(port, sizeof port, "%d", srv.port);
	const char *args[] = { "write", port, "app:", NULL };
	cr_assert_eq(tr_run_python(args), 0, "seed_fixture.py write failed (python3-redis installed?)");

	cr_assert_eq(cmd(c, SC_RT_ARRAY, &members, 2, "SMEMBERS", "app:llm_cache_index"), 0);
	cr_assert_eq(sc_redis_check_array(members, SC_RT_STRING, 1000), 0);
	cr_assert_eq(members->elements, 3);
	for (size_t m = 0; m < members->elements; m++) {
		const redisReply *id = members->element[m];
		redisReply *rep = NULL;
		size_t w;
		sc_rseed s;
		float emb[4];

		cr_assert_eq(sc_rid_check(SC_RFMT_SEED, id->str, id->len), 0, "%s", id->str);
		for (w = 0; w < 3; w++)
			if (strlen(want[w].id) == id->len && memcmp(want[w].id, id->str, id->len) == 0)
				break;
		cr_assert_lt(w, 3, "unexpected id %s", id->str);
		cr_assert_eq(sc_rkey_build("app:", SC_RKEY_ENTRY, SC_RFMT_SEED, id->str, id->len,
		                           &key), 0);
		cr_assert_eq(sc_rkey_build("app:", SC_RKEY_EMB, SC_RFMT_SEED, id->str, id->len,
		                           &ekey), 0);
		cr_assert_eq(cmd(c, SC_RT_STRING, &rep, 2, "GET", key.data), 0);
		cr_assert_eq(sc_rseed_decode(rep->str, rep->len, 1u << 20, 4, &s), 0,
		             "entry %s: %.*s", id->str, (int)rep->len, rep->str);
		freeReplyObject(rep);
		cr_assert_str_eq(s.response->content, want[w].content);
		cr_assert_str_eq(s.response->model, want[w].model);
		cr_assert_eq(s.response->n_tool_calls, want[w].n_calls);
		cr_assert_eq(s.response->latency_ms, want[w].latency);
		cr_assert_eq(s.response->prompt_tokens, want[w].prompt);
		cr_assert_eq(s.created_ms, want[w].created_ms);
		cr_assert_eq(s.hit_count, want[w].hits);
		cr_assert_not_null(s.embedding);
		cr_assert_float_eq(s.embedding[0], want[w].emb0, 1e-7);
		if (want[w].n_calls) {
			cr_assert_str_eq(s.response->tool_calls[0].name, "get_weather");
			cr_assert_str_eq(s.response->tool_calls[0].arguments, "{\"city\":\"Paris\"}");
			cr_assert_str_eq(s.response->tool_calls[1].arguments, "{}");
		}
		cr_assert_eq(cmd(c, SC_RT_STRING, &rep, 2, "GET", ekey.data), 0);
		cr_assert_eq(sc_rseed_emb_decode(rep->str, rep->len, 4, emb), 0);
		cr_assert(memcmp(emb, s.embedding, sizeof emb) == 0, "embedding key = entry's");
		freeReplyObject(rep);
		sc_rseed_free(&s);
	}
	freeReplyObject(members);
	free(key.data);
	free(ekey.data);
	sc_redis_close(c);
}

Test(redis_seed, entries_exported_by_c_read_back_in_python, .init = start_plain,
     .fini = stop_all, .timeout = 60)
{
	static const char *const ids[] = { "c-q1", "c-q2", "tenant/key:3", "c-q4" };
	enum { N = 4, D = 6 };
	sc_redis_config cfg = tcp_config(&srv, 2000);
	sc_redis_conn *c = connect_ok(&cfg);
	sc_buf key[N] = { { 0 } }, ekey[N] = { { 0 } }, val[N] = { { 0 } }, emb[N] = { { 0 } };
	sc_buf idx = { 0 };
	static redisReply *rep[3 * N];
	float v[D];
	char port[16];
	size_t n;

	for (int d = 0; d < D; d++)
		v[d] = (float)(d + 1) / (D + 1);
	cr_assert_eq(sc_rkey_build("exp:", SC_RKEY_INDEX, SC_RFMT_SEED, NULL, 0, &idx), 0);
	for (int i = 0; i < N; i++) {
		char content[64];
		snprintf(content, sizeof content, "answer for %s", ids[i]);
		semcache_response r = response_for(content);
		r.n_tool_calls = (uint32_t)(i % 2); /* with and without tool calls */
		cr_assert_eq(sc_rseed_encode(&r, NULL, v, D, 1712345000123 + i, (uint64_t)i, 1u << 20,
		                             &val[i]), 0);
		cr_assert_eq(sc_rseed_emb_encode(v, D, &emb[i]), 0);
		cr_assert_eq(sc_rkey_build("exp:", SC_RKEY_ENTRY, SC_RFMT_SEED, ids[i],
		                           strlen(ids[i]), &key[i]), 0);
		cr_assert_eq(sc_rkey_build("exp:", SC_RKEY_EMB, SC_RFMT_SEED, ids[i],
		                           strlen(ids[i]), &ekey[i]), 0);
		const char *set[3] = { "SET", key[i].data, val[i].data };
		size_t setl[3] = { 3, key[i].len, val[i].len };
		const char *sete[3] = { "SET", ekey[i].data, emb[i].data };
		size_t setel[3] = { 3, ekey[i].len, emb[i].len };
		const char *sadd[3] = { "SADD", idx.data, ids[i] };
		cr_assert_eq(sc_redis_append(c, SC_RT_STATUS, 3, set, setl), 0);
		cr_assert_eq(sc_redis_append(c, SC_RT_STATUS, 3, sete, setel), 0);
		cr_assert_eq(sc_redis_append(c, SC_RT_INTEGER, 3, sadd, NULL), 0);
	}
	cr_assert_eq(sc_redis_exec(c, rep, NULL, &n), 0, "%s", sc_redis_last_error(c));
	sc_redis_free_replies(rep, n);

	snprintf(port, sizeof port, "%d", srv.port);
	char count[8], dim[8];
	snprintf(count, sizeof count, "%d", N);
	snprintf(dim, sizeof dim, "%d", D);
	const char *args[] = { "check", port, "exp:", count, dim, NULL };
	cr_assert_eq(tr_run_python(args), 0, "Python could not read our export (see stderr)");

	/* The checker is not a yes-machine: a broken entry makes it fail. */
	cr_assert_eq(set_raw(c, key[0].data, "{\"response\": 1}", 15), 0);
	cr_assert_neq(tr_run_python(args), 0, "the checker must refuse a broken entry");

	for (int i = 0; i < N; i++) {
		free(key[i].data);
		free(ekey[i].data);
		free(val[i].data);
		free(emb[i].data);
	}
	free(idx.data);
	sc_redis_close(c);
}
