/*
 * test_hostile.c - damaged segment files.
 *
 * Copies of a populated segment get random bytes flipped (in the header and
 * anywhere in the body) and are then attached and used.  The result must be
 * a specific error on attach, or correct operation: the consistency check
 * passes (the first process to attach a segment nobody has open repairs
 * it), every hit carries an intact record of the key asked for, and no call
 * crashes or returns an unexpected code.  Run under ASan in CI.
 * SEMCACHE_HOSTILE_ROUNDS sets the number of damaged copies (default 1000).
 */
#include <criterion/criterion.h>
#include <errno.h>
#include <fcntl.h>
#include <sys/stat.h>

#include "../common.h"

#define DIM 16

static char path[256], copy[300];

static void emb(int k, float *e)
{
	uint64_t s = (uint64_t)k * 7919 + 3;
	for (int i = 0; i < DIM; i++)
		e[i] = (float)(test_rng(&s) % 1000) / 1000.0f - 0.5f;
}

static semcache_options hostile_options(void)
{
	semcache_options o = test_options(512, DIM);
	o.arena_bytes = 1u << 20;
	o.max_payload = 8192;
	return o;
}

static void populate(void)
{
	semcache *c;
	semcache_options o = hostile_options();
	cr_assert_eq(semcache_open(path, &o, &c), 0);
	char key[32], body[600], content[700];
	float e[DIM];
	for (int i = 0; i < 400; i++) {
		snprintf(key, sizeof key, "key-%d", i);
		snprintf(body, sizeof body, "ns/%s/%0*d", key, 100 + (i * 37) % 400, i);
		make_content(content, sizeof content, body);
		semcache_response r = simple_response(content);
		emb(i, e);
		semcache_put_args a = { .ns = "ns", .key = key, .scope = "m", .response = &r,
		                        .embedding = (i % 3) ? e : NULL, .embedding_dim = DIM };
		cr_assert_eq(semcache_put(c, &a), 0);
	}
	cr_assert_eq(semcache_invalidate(c, "ns", "key-1", NULL), 0);
	semcache_close(c);
}

static int allowed_open_error(int rc)
{
	return rc == SEMCACHE_ENOTSEMCACHE || rc == SEMCACHE_ETRUNCATED || rc == SEMCACHE_EVERSION ||
	       rc == SEMCACHE_ESIGNATURE || rc == SEMCACHE_ECORRUPT;
}

static void use_segment(semcache *c, uint64_t *s)
{
	char key[32], expect[48], report[1024];
	float e[DIM];
	int rc = semcache_verify(c, report, sizeof report);
	cr_assert_eq(rc, 0, "damaged copy not repaired on attach:\n%s", report);
	for (int i = 0; i < 300; i++) {
		int k = (int)(test_rng(s) % 450);
		snprintf(key, sizeof key, "key-%d", k);
		snprintf(expect, sizeof expect, "ns/%s/", key);
		semcache_response *out = NULL;
		switch (test_rng(s) % 5) {
		case 0:
		case 1:
			rc = semcache_get(c, "ns", key, 0, &out);
			cr_assert(rc == 0 || rc == SEMCACHE_ENOTFOUND, "get: %s", semcache_strerror(rc));
			if (rc == 0) {
				cr_assert(content_ok(out->content), "damaged content returned");
				cr_assert(strncmp(out->content, expect, strlen(expect)) == 0,
				          "another key's content returned");
			}
			break;
		case 2: {
			float sim;
			emb(k, e);
			rc = semcache_search(c, "ns", "m", e, DIM, 0.999f, &out, &sim);
			cr_assert(rc == 0 || rc == SEMCACHE_ENOTFOUND, "search: %s", semcache_strerror(rc));
			if (rc == 0)
				cr_assert(content_ok(out->content), "damaged content from search");
			break;
		}
		case 3: {
			char body[64], content[128];
			snprintf(body, sizeof body, "ns/%s/new", key);
			make_content(content, sizeof content, body);
			cr_assert_eq(put_simple(c, "ns", key, content), 0);
			break;
		}
		default:
			cr_assert_eq(semcache_invalidate(c, "ns", key, NULL), 0);
		}
		semcache_response_free(out);
	}
	rc = semcache_verify(c, report, sizeof report);
	cr_assert_eq(rc, 0, "inconsistent after use:\n%s", report);
}

Test(hostile, flipped_bytes_give_an_error_or_correct_operation, .timeout = 600)
{
	test_path(path, sizeof path, "hostile");
	snprintf(copy, sizeof copy, "%s.copy", path);
	populate();
	int fd = open(path, O_RDONLY);
	struct stat st;
	cr_assert_eq(fstat(fd, &st), 0);
	size_t size = (size_t)st.st_size;
	uint8_t *orig = malloc(size), *buf = malloc(size);
	cr_assert_eq(pread(fd, orig, size, 0), (ssize_t)size);
	close(fd);

	const char *env = getenv("SEMCACHE_HOSTILE_ROUNDS");
	int rounds = env ? atoi(env) : 1000, opened = 0, refused = 0;
	uint64_t s = 0x5eed;
	for (int r = 0; r < rounds; r++) {
		memcpy(buf, orig, size);
		int flips = 1 + (int)(test_rng(&s) % 32);
		for (int f = 0; f < flips; f++) {
			/* half in the header (immutable and mutable parts), half anywhere */
			size_t at = (test_rng(&s) & 1) ? test_rng(&s) % 4096 : test_rng(&s) % size;
			buf[at] ^= (uint8_t)(1u << (test_rng(&s) % 8));
		}
		fd = open(copy, O_RDWR | O_CREAT | O_TRUNC, 0600);
		cr_assert_eq(write(fd, buf, size), (ssize_t)size);
		close(fd);
		semcache *c = NULL;
		int rc = semcache_open(copy, NULL, &c);
		if (rc == 0) {
			opened++;
			use_segment(c, &s);
			semcache_close(c);
		} else {
			refused++;
			cr_assert(allowed_open_error(rc), "round %d: unexpected open error %d (%s)", r, rc,
			          semcache_strerror(rc));
		}
		unlink(copy);
	}
	cr_log_info("hostile: %d damaged copies attached and used, %d refused", opened, refused);
	cr_assert_gt(opened, rounds / 10, "almost every damaged copy refused: the body was not exercised");
	cr_assert_gt(refused, 0, "no damaged header was ever refused");
	free(orig);
	free(buf);
	unlink(path);
}
