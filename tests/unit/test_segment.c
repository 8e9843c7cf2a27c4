/*
 * test_segment.c - creating, attaching and validating segment files.
 */
#include <criterion/criterion.h>
#include <errno.h>
#include <fcntl.h>
#include <dirent.h>
#include <signal.h>
#include <time.h>
#include <sys/stat.h>
#include <sys/wait.h>

#include "../common.h"
#include "internal.h"

static char path[256];

static void setup(void) { test_path(path, sizeof path, "seg"); }
static void teardown(void) { unlink(path); }

TestSuite(segment, .init = setup, .fini = teardown);

static void make_segment(void)
{
	semcache *c;
	semcache_options o = test_options(64, 4);
	cr_assert_eq(semcache_open(path, &o, &c), 0);
	cr_assert_eq(put_simple(c, "ns", "k", "v"), 0);
	semcache_close(c);
}

static int open_plain(void)
{
	semcache *c = NULL;
	int rc = semcache_open(path, NULL, &c);
	semcache_close(c);
	return rc;
}

static void poke(off_t off, const void *bytes, size_t n)
{
	int fd = open(path, O_RDWR);
	cr_assert_geq(fd, 0);
	cr_assert_eq(pwrite(fd, bytes, n, off), (ssize_t)n);
	close(fd);
}

Test(segment, create_then_attach_sees_same_geometry_and_data)
{
	make_segment();
	semcache *c;
	cr_assert_eq(semcache_open(path, NULL, &c), 0);
	semcache_stats st;
	cr_assert_eq(semcache_stat(c, &st), 0);
	cr_assert_eq(st.slots, 64);
	cr_assert_eq(st.dim, 4);
	cr_assert_eq(st.entries, 1);
	semcache_response *out;
	cr_assert_eq(semcache_get(c, "ns", "k", 0, &out), 0);
	semcache_response_free(out);
	semcache_close(c);
}

Test(segment, file_mode_is_0600_unless_group_asked)
{
	make_segment();
	struct stat st;
	cr_assert_eq(stat(path, &st), 0);
	cr_assert_eq(st.st_mode & 0777, 0600);
	unlink(path);
	semcache *c;
	semcache_options o = test_options(64, 4);
	o.flags |= SEMCACHE_OPEN_GROUP;
	mode_t old = umask(0);
	cr_assert_eq(semcache_open(path, &o, &c), 0);
	umask(old);
	semcache_close(c);
	cr_assert_eq(stat(path, &st), 0);
	cr_assert_eq(st.st_mode & 0777, 0660);
}

Test(segment, not_a_segment_is_refused)
{
	char junk[8192];
	memset(junk, 'J', sizeof junk);
	int fd = open(path, O_RDWR | O_CREAT, 0600);
	cr_assert_eq(write(fd, junk, sizeof junk), (ssize_t)sizeof junk);
	close(fd);
	cr_assert_eq(open_plain(), SEMCACHE_ENOTSEMCACHE);
	/* and the file was left alone */
	struct stat st;
	cr_assert_eq(stat(path, &st), 0);
	cr_assert_eq(st.st_size, sizeof junk);
	cr_assert_eq(semcache_destroy(path, 0), SEMCACHE_ENOTSEMCACHE);
}

Test(segment, short_file_is_refused)
{
	int fd = open(path, O_RDWR | O_CREAT, 0600);
	cr_assert_eq(write(fd, "abc", 3), 3);
	close(fd);
	cr_assert_eq(open_plain(), SEMCACHE_ENOTSEMCACHE);
}

Test(segment, truncated_segment_is_refused)
{
	make_segment();
	struct stat st;
	cr_assert_eq(stat(path, &st), 0);
	cr_assert_eq(truncate(path, st.st_size / 2), 0);
	cr_assert_eq(open_plain(), SEMCACHE_ETRUNCATED);
	cr_assert_eq(truncate(path, 100), 0);
	cr_assert_eq(open_plain(), SEMCACHE_ETRUNCATED);
}

Test(segment, other_layout_version_is_refused)
{
	make_segment();
	uint32_t v = SC_LAYOUT_VERSION + 1;
	poke(offsetof(struct sc_header, version), &v, 4);
	cr_assert_eq(open_plain(), SEMCACHE_EVERSION);
}

Test(segment, other_format_signature_is_refused)
{
	make_segment();
	uint64_t sig = sc_layout_signature() ^ 1;
	poke(offsetof(struct sc_header, signature), &sig, 8);
	cr_assert_eq(open_plain(), SEMCACHE_ESIGNATURE);
}

Test(segment, damaged_geometry_is_refused)
{
	make_segment();
	uint32_t slots = 1 << 20;
	poke(offsetof(struct sc_header, slots), &slots, 4);
	cr_assert_eq(open_plain(), SEMCACHE_ECORRUPT);
}

Test(segment, options_contradicting_geometry_are_refused)
{
	make_segment();
	semcache *c = NULL;
	semcache_options o;
	memset(&o, 0, sizeof o);
	o.slots = 128;
	cr_assert_eq(semcache_open(path, &o, &c), SEMCACHE_EGEOMETRY);
	o.slots = 64;
	o.dim = 8;
	cr_assert_eq(semcache_open(path, &o, &c), SEMCACHE_EGEOMETRY);
	o.dim = 4;
	cr_assert_eq(semcache_open(path, &o, &c), 0, "matching geometry refused");
	semcache_close(c);
}

Test(segment, nocreate_and_excl_flags)
{
	semcache *c = NULL;
	semcache_options o = test_options(64, 4);
	o.flags = SEMCACHE_OPEN_NOCREATE;
	cr_assert_eq(semcache_open(path, &o, &c), -ENOENT);
	make_segment();
	o.flags = SEMCACHE_OPEN_EXCL;
	cr_assert_eq(semcache_open(path, &o, &c), -EEXIST);
}

Test(segment, invalid_options_are_einval_and_leave_no_file)
{
	semcache *c = NULL;
	semcache_options o = test_options(64, 4);
	o.slots = 5;
	cr_assert_eq(semcache_open(path, &o, &c), -EINVAL);
	cr_assert_neq(access(path, F_OK), 0, "failed create left a file");
	o = test_options(64, 5000);
	cr_assert_eq(semcache_open(path, &o, &c), -EINVAL);
	o = test_options(64, 4);
	o.block_size = 100;
	cr_assert_eq(semcache_open(path, &o, &c), -EINVAL);
	o = test_options(64, 4);
	o.threshold = 1.5f;
	cr_assert_eq(semcache_open(path, &o, &c), -EINVAL);
	o = test_options(64, 4);
	o.flags = 0x8000;
	cr_assert_eq(semcache_open(path, &o, &c), -EINVAL);
	cr_assert_eq(semcache_open(path, NULL, NULL), -EINVAL);
	cr_assert_eq(semcache_open("", NULL, &c), -EINVAL);
}

Test(segment, racing_creators_get_one_segment)
{
	enum { N = 8 };
	for (int i = 0; i < N; i++) {
		pid_t p = fork();
		if (p == 0) {
			semcache *c;
			semcache_options o = test_options(256, 4);
			if (semcache_open(path, &o, &c) != 0)
				_exit(1);
			char key[16];
			snprintf(key, sizeof key, "k%d", i);
			int rc = put_simple(c, "ns", key, key);
			semcache_close(c);
			_exit(rc == 0 ? 0 : 2);
		}
	}
	for (int i = 0; i < N; i++) {
		int st;
		cr_assert_neq(wait(&st), -1);
		cr_assert(WIFEXITED(st) && WEXITSTATUS(st) == 0);
	}
	semcache *c;
	cr_assert_eq(semcache_open(path, NULL, &c), 0);
	semcache_response *out;
	for (int i = 0; i < N; i++) {
		char key[16];
		snprintf(key, sizeof key, "k%d", i);
		cr_assert_eq(semcache_get(c, "ns", key, 0, &out), 0, "%s lost: two segments?", key);
		semcache_response_free(out);
	}
	semcache_close(c);
}

Test(segment, a_file_that_is_not_a_segment_is_never_overwritten)
{
	/* zeros (what an older creator that died left behind, or anyone's
	 * file) are not ours to take: refused, and left as they were */
	char hdr[SC_HDR_SIZE];
	memset(hdr, 0, sizeof hdr);
	int fd = open(path, O_RDWR | O_CREAT, 0600);
	cr_assert_eq(write(fd, hdr, sizeof hdr), (ssize_t)sizeof hdr);
	close(fd);
	semcache *c;
	semcache_options o = test_options(64, 4);
	cr_assert_eq(semcache_open(path, &o, &c), SEMCACHE_ENOTSEMCACHE);
	struct stat st;
	cr_assert_eq(stat(path, &st), 0);
	cr_assert_eq(st.st_size, SC_HDR_SIZE);
}

Test(segment, an_empty_file_of_ours_is_laid_out)
{
	int fd = open(path, O_RDWR | O_CREAT, 0600);
	close(fd);
	semcache *c;
	semcache_options o = test_options(64, 4);
	cr_assert_eq(semcache_open(path, &o, &c), 0);
	cr_assert_eq(put_simple(c, "ns", "k", "v"), 0);
	semcache_close(c);
}

Test(segment, creation_leaves_no_temporary_file_behind)
{
	make_segment();
	char *dir = strdup(path), *slash = strrchr(dir, '/');
	*slash = 0;
	const char *base = slash + 1;
	DIR *d = opendir(dir);
	cr_assert_not_null(d);
	struct dirent *e;
	while ((e = readdir(d)))
		cr_assert(strncmp(e->d_name, base, strlen(base)) != 0 || !strcmp(e->d_name, base),
		          "left behind: %s", e->d_name);
	closedir(d);
	free(dir);
}

Test(segment, a_symlink_at_the_path_is_refused_and_its_target_untouched)
{
	char target[300];
	snprintf(target, sizeof target, "%s.target", path);
	int fd = open(target, O_RDWR | O_CREAT | O_TRUNC, 0600);
	char bytes[4134];
	memset(bytes, 'x', sizeof bytes);
	cr_assert_eq(write(fd, bytes, sizeof bytes), (ssize_t)sizeof bytes);
	close(fd);
	cr_assert_eq(symlink(target, path), 0);
	semcache *c = NULL;
	semcache_options o = test_options(64, 4);
	cr_assert_eq(semcache_open(path, &o, &c), SEMCACHE_EUNSAFE);
	cr_assert_eq(semcache_destroy(path, 1), SEMCACHE_EUNSAFE);
	struct stat st;
	cr_assert_eq(stat(target, &st), 0);
	cr_assert_eq(st.st_size, sizeof bytes, "the symlink's target was changed");
	unlink(target);
}

/* A valid segment at path, then given to uid/gid with mode. */
static void segment_owned_by(uid_t uid, gid_t gid, mode_t mode)
{
	unlink(path);
	make_segment();
	cr_assert_eq(chown(path, uid, gid), 0);
	cr_assert_eq(chmod(path, mode), 0);
}

Test(segment, a_file_of_another_user_is_refused)
{
	if (geteuid() != 0)
		cr_skip_test("needs root to give a file to another user (CI runs as root)");
	/* planted by another user, readable by all: adopting it would let
	 * them read every cached answer */
	segment_owned_by(12345, 12345, 0666);
	cr_assert_eq(open_plain(), SEMCACHE_EUNSAFE);
	segment_owned_by(12345, 12345, 0600);
	cr_assert_eq(open_plain(), SEMCACHE_EUNSAFE);
	/* nor destroyed, forced or not */
	cr_assert_eq(semcache_destroy(path, 0), SEMCACHE_EUNSAFE);
	cr_assert_eq(semcache_destroy(path, 1), SEMCACHE_EUNSAFE);
	struct stat st;
	cr_assert_eq(stat(path, &st), 0, "another user's segment was deleted");
}

Test(segment, permission_bits_broader_than_asked_are_refused)
{
	segment_owned_by(geteuid(), getegid(), 0644);
	cr_assert_eq(open_plain(), SEMCACHE_EUNSAFE);
	segment_owned_by(geteuid(), getegid(), 0660);
	cr_assert_eq(open_plain(), SEMCACHE_EUNSAFE, "0660 without SEMCACHE_OPEN_GROUP");
	semcache *c;
	semcache_options o;
	memset(&o, 0, sizeof o);
	o.flags = SEMCACHE_OPEN_GROUP;
	cr_assert_eq(semcache_open(path, &o, &c), 0);
	semcache_close(c);
}

Test(segment, group_flag_accepts_a_group_members_file_and_nothing_wider)
{
	if (geteuid() != 0)
		cr_skip_test("needs root to give a file to another user (CI runs as root)");
	semcache *c;
	semcache_options o;
	memset(&o, 0, sizeof o);
	o.flags = SEMCACHE_OPEN_GROUP;
	segment_owned_by(12345, getegid(), 0660);
	cr_assert_eq(semcache_open(path, &o, &c), 0);
	semcache_close(c);
	segment_owned_by(12345, 12345, 0660); /* not our group */
	cr_assert_eq(semcache_open(path, &o, &c), SEMCACHE_EUNSAFE);
	segment_owned_by(12345, getegid(), 0664); /* others may read */
	cr_assert_eq(semcache_open(path, &o, &c), SEMCACHE_EUNSAFE);
}

Test(segment, another_user_cannot_open_a_private_segment)
{
	if (geteuid() != 0)
		cr_skip_test("needs root to switch users (CI runs as root)");
	make_segment();
	pid_t p = fork();
	if (p == 0) {
		if (setresgid(12345, 12345, 12345) < 0 || setresuid(12345, 12345, 12345) < 0)
			_exit(2);
		semcache *c;
		int rc = semcache_open(path, NULL, &c);
		_exit(rc == -EACCES ? 0 : 1);
	}
	int st;
	waitpid(p, &st, 0);
	cr_assert(WIFEXITED(st) && WEXITSTATUS(st) == 0, "another uid opened a 0600 segment");
}

Test(segment, destroy_refuses_while_attached)
{
	semcache *c;
	semcache_options o = test_options(64, 4);
	cr_assert_eq(semcache_open(path, &o, &c), 0);
	pid_t p = fork();
	if (p == 0)
		_exit(semcache_destroy(path, 0) == -EBUSY ? 0 : 1);
	int st;
	waitpid(p, &st, 0);
	cr_assert(WIFEXITED(st) && WEXITSTATUS(st) == 0, "destroy did not refuse");
	semcache_close(c);
	cr_assert_eq(semcache_destroy(path, 0), 0);
	cr_assert_neq(access(path, F_OK), 0);
	cr_assert_eq(semcache_destroy(path, 0), -ENOENT);
}

Test(segment, handle_opened_before_fork_works_in_children)
{
	semcache *c;
	semcache_options o = test_options(256, 4);
	cr_assert_eq(semcache_open(path, &o, &c), 0);
	enum { N = 4 };
	for (int i = 0; i < N; i++) {
		if (fork() == 0) {
			char key[16];
			snprintf(key, sizeof key, "child%d", i);
			int rc = put_simple(c, "ns", key, key);
			semcache_response *out;
			if (rc == 0)
				rc = semcache_get(c, "ns", key, 0, &out);
			if (rc == 0)
				semcache_response_free(out);
			semcache_proc_info pi[16];
			size_t n = 0;
			semcache_procs(c, pi, 16, &n);
			int mine = 0;
			for (size_t j = 0; j < n; j++)
				mine += pi[j].pid == getpid();
			_exit(rc == 0 && mine == 1 ? 0 : 1);
		}
	}
	for (int i = 0; i < N; i++) {
		int st;
		cr_assert_neq(wait(&st), -1);
		cr_assert(WIFEXITED(st) && WEXITSTATUS(st) == 0, "child failed");
	}
	semcache_response *out;
	for (int i = 0; i < N; i++) {
		char key[16];
		snprintf(key, sizeof key, "child%d", i);
		cr_assert_eq(semcache_get(c, "ns", key, 0, &out), 0, "parent misses %s", key);
		semcache_response_free(out);
	}
	semcache_stats st;
	cr_assert_eq(semcache_stat(c, &st), 0);
	cr_assert_eq(st.total.puts, N, "children's counters lost");
	semcache_close(c);
}

Test(segment, nocreate_never_initialises_an_empty_file)
{
	int fd = open(path, O_RDWR | O_CREAT, 0600);
	close(fd);
	semcache *c = NULL;
	semcache_options o;
	memset(&o, 0, sizeof o);
	o.flags = SEMCACHE_OPEN_NOCREATE;
	cr_assert_eq(semcache_open(path, &o, &c), SEMCACHE_ENOTSEMCACHE);
	struct stat st;
	cr_assert_eq(stat(path, &st), 0);
	cr_assert_eq(st.st_size, 0, "NOCREATE wrote a segment");
}

Test(segment, norecord_handle_inspects_without_a_process_record)
{
	make_segment();
	semcache *c;
	semcache_options o;
	memset(&o, 0, sizeof o);
	o.flags = SEMCACHE_OPEN_NORECORD;
	cr_assert_eq(semcache_open(path, &o, &c), 0);
	semcache_stats st;
	cr_assert_eq(semcache_stat(c, &st), 0);
	cr_assert_eq(st.procs_attached, 0);
	cr_assert_eq(st.entries, 1);
	semcache_ref ref;
	cr_assert_eq(semcache_get_ref(c, "ns", "k", &ref), SEMCACHE_EPROCFULL);
	semcache_close(c);
}

Test(segment, writer_finding_damage_marks_it_and_the_next_writer_repairs)
{
	semcache *c;
	semcache_options o = test_options(64, 4);
	cr_assert_eq(semcache_open(path, &o, &c), 0);
	cr_assert_eq(put_simple(c, "ns", "k", "v"), 0);
	/* scribble over the free list head while attached (no reset on open) */
	atomic_store(&c->hdr->free_head, 0xfffffff0u);
	int rc = put_simple(c, "ns", "k2", "v2");
	cr_assert(rc == 0 || rc == SEMCACHE_EFULL, "put on damage: %s", semcache_strerror(rc));
	cr_assert_eq(put_simple(c, "ns", "k3", "v3"), 0, "damage not repaired by the next writer");
	char report[1024];
	cr_assert_eq(semcache_verify(c, report, sizeof report), 0, "%s", report);
	semcache_response *out;
	cr_assert_eq(semcache_get(c, "ns", "k", 0, &out), 0, "repair dropped a good entry");
	semcache_response_free(out);
	semcache_close(c);
}

Test(segment, full_process_table_is_eprocfull_at_once)
{
	semcache *a, *b, *x = NULL;
	semcache_options o = test_options(64, 4);
	o.max_procs = 2;
	cr_assert_eq(semcache_open(path, &o, &a), 0);
	cr_assert_eq(semcache_open(path, NULL, &b), 0); /* each handle holds a record */
	cr_assert_eq(semcache_open(path, NULL, &x), SEMCACHE_EPROCFULL);
	cr_assert_null(x);
	/* a NORECORD handle still inspects, and its writes say why they fail */
	semcache_options n;
	memset(&n, 0, sizeof n);
	n.flags = SEMCACHE_OPEN_NORECORD;
	cr_assert_eq(semcache_open(path, &n, &x), 0);
	cr_assert_eq(put_simple(x, "ns", "k", "v"), SEMCACHE_EPROCFULL);
	semcache_close(x);
	/* a record given back is claimed again */
	semcache_close(b);
	cr_assert_eq(semcache_open(path, NULL, &b), 0);
	semcache_close(b);
	semcache_close(a);
}

Test(segment, a_lock_word_naming_a_dead_record_is_taken_over_and_repaired)
{
	semcache *c;
	semcache_options o = test_options(64, 4);
	cr_assert_eq(semcache_open(path, &o, &c), 0);
	cr_assert_eq(put_simple(c, "ns", "k", "v"), 0);
	/* record 5, never claimed: nobody holds its byte lock */
	atomic_store(&c->hdr->wlock, ((uint64_t)1 << 32) | 6);
	semcache_stats before, after;
	cr_assert_eq(semcache_stat(c, &before), 0);
	cr_assert_eq(put_simple(c, "ns", "k2", "v2"), 0);
	cr_assert_eq(semcache_stat(c, &after), 0);
	cr_assert_eq(after.repairs, before.repairs + 1);
	/* and a word forged to name ourselves is not trusted either */
	atomic_store(&c->hdr->wlock, ((uint64_t)c->seg.me_gen << 32) | (c->seg.me_idx + 1));
	cr_assert_eq(put_simple(c, "ns", "k3", "v3"), 0);
	char report[1024];
	cr_assert_eq(semcache_verify(c, report, sizeof report), 0, "%s", report);
	semcache_close(c);
}

Test(segment, a_creator_killed_half_way_leaves_nothing_behind)
{
	char *dir = strdup(path), *slash = strrchr(dir, '/');
	*slash = 0;
	const char *base = slash + 1;
	for (int delay_ms = 1; delay_ms <= 16; delay_ms *= 2) {
		unlink(path);
		pid_t p = fork();
		if (p == 0) {
			semcache *c;
			semcache_options o = test_options(1u << 16, 64);
			o.arena_bytes = 128u << 20; /* long enough to be killed inside */
			_exit(semcache_open(path, &o, &c) == 0 ? 0 : 1);
		}
		struct timespec ts = { 0, delay_ms * 1000000L };
		nanosleep(&ts, NULL);
		kill(p, SIGKILL);
		waitpid(p, NULL, 0);
		DIR *d = opendir(dir);
		cr_assert_not_null(d);
		struct dirent *e;
		while ((e = readdir(d)))
			cr_assert(strncmp(e->d_name, base, strlen(base)) != 0 || !strcmp(e->d_name, base),
			          "a killed creator left %s behind", e->d_name);
		closedir(d);
		/* and the path is either absent or a whole segment */
		semcache *c = NULL;
		semcache_options no;
		memset(&no, 0, sizeof no);
		no.flags = SEMCACHE_OPEN_NOCREATE;
		int rc = semcache_open(path, &no, &c);
		cr_assert(rc == 0 || rc == -ENOENT, "after a kill at %d ms: %s", delay_ms,
		          semcache_strerror(rc));
		semcache_close(c);
	}
	free(dir);
}

/* ------------------------------------------------------------------------
 * Attaching with semcache_options_init()'s geometry
 * ---------------------------------------------------------------------- */
/* A segment whose every geometry field differs from the defaults. */
static void make_odd_segment(void)
{
	semcache *c;
	semcache_options o;
	memset(&o, 0, sizeof o); /* defaults == 0: every field below is demanded */
	o.slots = 96;
	o.dim = 12;
	o.arena_bytes = 1u << 20;
	o.block_size = 128;
	o.max_procs = 8;
	o.max_payload = 16u << 10;
	o.exact_ttl_ms = 1000;
	o.semantic_ttl_ms = 2000;
	o.threshold = 0.5f;
	cr_assert_eq(semcache_open(path, &o, &c), 0);
	cr_assert_eq(put_simple(c, "ns", "k", "v"), 0);
	semcache_close(c);
}

Test(segment, options_init_attaches_to_a_segment_of_any_geometry)
{
	make_odd_segment();
	semcache *c = NULL;
	semcache_options o;
	semcache_options_init(&o);
	cr_assert_eq(o.defaults, SEMCACHE_GEOM_ALL);
	o.flags = SEMCACHE_OPEN_NOCREATE; /* assigning flags keeps the defaults */
	int rc = semcache_open(path, &o, &c);
	cr_assert_eq(rc, 0, "open: %s", semcache_strerror(rc));
	semcache_stats st;
	cr_assert_eq(semcache_stat(c, &st), 0);
	cr_assert_eq(st.slots, 96);
	cr_assert_eq(st.dim, 12);
	cr_assert_eq(st.block_size, 128);
	cr_assert_eq(st.arena_bytes, 1u << 20);
	cr_assert_eq(st.max_procs, 8);
	cr_assert_eq(st.max_payload, 16u << 10);
	cr_assert_eq(st.exact_ttl_ms, 1000, "attach took the caller's TTL, not the segment's");
	cr_assert_float_eq(st.threshold, 0.5f, 1e-6);
	cr_assert_eq(st.entries, 1);
	semcache_close(c);
}

Test(segment, explicit_geometry_must_still_match_after_options_init)
{
	make_odd_segment();
	semcache *c = NULL;
	semcache_options o;

	semcache_options_init(&o);
	o.slots = 128; /* a choice, not the default */
	cr_assert_eq(semcache_open(path, &o, &c), SEMCACHE_EGEOMETRY);
	semcache_options_init(&o);
	o.dim = 768;
	cr_assert_eq(semcache_open(path, &o, &c), SEMCACHE_EGEOMETRY);
	semcache_options_init(&o);
	o.arena_bytes = 2u << 20; /* in the segment's 128-byte blocks: 16384 != 8192 */
	cr_assert_eq(semcache_open(path, &o, &c), SEMCACHE_EGEOMETRY);
	semcache_options_init(&o);
	o.max_payload = 32u << 10;
	cr_assert_eq(semcache_open(path, &o, &c), SEMCACHE_EGEOMETRY);
	semcache_options_init(&o);
	o.flags = SEMCACHE_QUANT_INT8; /* quantisation asked for, segment has none */
	cr_assert_eq(semcache_open(path, &o, &c), SEMCACHE_EGEOMETRY);

	/* A value equal to the default is demanded once its bit is cleared. */
	semcache_options_init(&o);
	cr_assert_eq(o.dim, 384);
	o.defaults &= ~SEMCACHE_GEOM_DIM;
	cr_assert_eq(semcache_open(path, &o, &c), SEMCACHE_EGEOMETRY);

	/* Matching choices attach. */
	semcache_options_init(&o);
	o.slots = 96;
	o.dim = 12;
	o.arena_bytes = 1u << 20; /* counted in the segment's block size */
	o.defaults = 0;
	o.block_size = 128;
	o.max_procs = 8;
	o.max_payload = 16u << 10;
	cr_assert_eq(semcache_open(path, &o, &c), 0, "matching geometry refused");
	semcache_close(c);
}

Test(segment, default_valued_geometry_is_demanded_without_options_init)
{
	make_segment(); /* 64 slots, dim 4 */
	semcache *c = NULL;
	semcache_options o;
	memset(&o, 0, sizeof o);
	o.max_procs = 256; /* equal to the default, but defaults == 0: a demand */
	cr_assert_eq(semcache_open(path, &o, &c), SEMCACHE_EGEOMETRY);
}

Test(segment, options_init_still_creates_with_the_defaults)
{
	semcache *c = NULL;
	semcache_options o;
	semcache_options_init(&o);
	o.arena_bytes = 1u << 20;
	o.max_payload = 64u << 10;
	o.slots = 64;
	cr_assert_eq(semcache_open(path, &o, &c), 0);
	semcache_stats st;
	cr_assert_eq(semcache_stat(c, &st), 0);
	cr_assert_eq(st.dim, 384);
	cr_assert_eq(st.block_size, 256);
	cr_assert_eq(st.max_procs, 256);
	semcache_close(c);
}

Test(segment, unknown_option_bits_and_reserved_words_are_refused)
{
	semcache *c = NULL;
	semcache_options o = test_options(64, 4);
	o.defaults = 0x40;
	cr_assert_eq(semcache_open(path, &o, &c), -EINVAL);
	o = test_options(64, 4);
	o.reserved_[5] = 1;
	cr_assert_eq(semcache_open(path, &o, &c), -EINVAL);
	cr_assert_neq(access(path, F_OK), 0, "refused options left a file");
}

/* ------------------------------------------------------------------------
 * Process records across fork and exit
 * ---------------------------------------------------------------------- */
static size_t live_records(semcache *c)
{
	semcache_proc_info pi[64];
	size_t n = 0;
	cr_assert_eq(semcache_procs(c, pi, 64, &n), 0);
	return n;
}

Test(segment, norecord_handle_takes_no_record_after_fork)
{
	make_segment();
	semcache *watch, *nr;
	semcache_options o;
	memset(&o, 0, sizeof o);
	cr_assert_eq(semcache_open(path, &o, &watch), 0);
	o.flags = SEMCACHE_OPEN_NORECORD;
	cr_assert_eq(semcache_open(path, &o, &nr), 0);
	semcache *gone;
	memset(&o, 0, sizeof o);
	cr_assert_eq(semcache_open(path, &o, &gone), 0);
	semcache_close(gone); /* a dead record below the high-water mark */
	cr_assert_eq(live_records(watch), 1);

	int go[2], done[2];
	cr_assert_eq(pipe(go), 0);
	cr_assert_eq(pipe(done), 0);
	pid_t pid = fork();
	cr_assert_geq(pid, 0);
	if (pid == 0) {
		/* Only the parent writes `go`: its exit (even by a failed
		 * assertion) must end the wait below. */
		close(go[1]);
		close(done[0]);
		/* Use the NORECORD handle every way a reader can, and try to
		 * write through it: nothing may claim a record. */
		semcache_response *out = NULL;
		semcache_stats st;
		semcache_ref ref;
		semcache_proc_info pi[64];
		size_t n = 0;
		int bad = 0;
		bad |= semcache_get(nr, "ns", "k", 0, &out) != 0;
		semcache_response_free(out);
		bad |= semcache_stat(nr, &st) != 0;
		bad |= semcache_procs(nr, pi, 64, &n) != 0;
		bad |= n != 1 || pi[0].pid != getppid(); /* tells dead from alive */
		for (size_t i = 0; i < n; i++)
			bad |= pi[i].self;
		bad |= st.procs_attached != 1;
		bad |= semcache_get_ref(nr, "ns", "k", &ref) != SEMCACHE_EPROCFULL;
		bad |= put_simple(nr, "ns", "child", "v") != SEMCACHE_EPROCFULL;
		bad |= semcache_delete(nr, "ns", "k") != SEMCACHE_EPROCFULL;
		char b = (char)bad;
		(void)!write(done[1], &b, 1);
		(void)!read(go[0], &b, 1); /* stay alive while the parent looks */
		_exit(0);
	}
	close(go[0]);
	close(done[1]);
	char b = 1;
	cr_assert_eq(read(done[0], &b, 1), 1);
	cr_assert_eq(b, 0, "the child's NORECORD handle misbehaved");
	/* The child is alive now: a record it had claimed would be live. */
	cr_assert_eq(live_records(watch), 1, "the child claimed a record");
	semcache_stats st;
	cr_assert_eq(semcache_stat(watch, &st), 0);
	cr_assert_eq(st.procs_attached, 1);
	cr_assert_eq(write(go[1], &b, 1), 1);
	int ws;
	cr_assert_eq(waitpid(pid, &ws, 0), pid);
	cr_assert(WIFEXITED(ws) && WEXITSTATUS(ws) == 0);
	close(go[1]);
	close(done[0]);
	semcache_close(nr);
	semcache_close(watch);
}

/* A child that attaches, counts 3 puts, 2 hits, 1 miss and 1 delete, then
 * leaves with or without semcache_close(). */
static void counting_child(bool close_it)
{
	pid_t pid = fork();
	cr_assert_geq(pid, 0);
	if (pid == 0) {
		semcache *c;
		semcache_options o;
		memset(&o, 0, sizeof o);
		if (semcache_open(path, &o, &c) != 0)
			_exit(1);
		semcache_response *out = NULL;
		int bad = 0;
		for (int i = 0; i < 3; i++) {
			char key[16];
			snprintf(key, sizeof key, "c%d", i);
			bad |= put_simple(c, "ns", key, "v") != 0;
		}
		for (int i = 0; i < 2; i++) {
			bad |= semcache_get(c, "ns", "c0", 0, &out) != 0;
			semcache_response_free(out);
		}
		bad |= semcache_get(c, "ns", "absent", 0, &out) != SEMCACHE_ENOTFOUND;
		bad |= semcache_delete(c, "ns", "c2") != 0;
		if (close_it)
			semcache_close(c);
		_exit(bad); /* without close: the kernel drops the record's lock */
	}
	int ws;
	cr_assert_eq(waitpid(pid, &ws, 0), pid);
	cr_assert(WIFEXITED(ws) && WEXITSTATUS(ws) == 0, "counting child failed");
}

static void assert_counted(semcache *c, uint64_t times)
{
	semcache_stats st;
	cr_assert_eq(semcache_stat(c, &st), 0);
	cr_assert_eq(st.total.puts, 1 + 3 * times); /* make_segment's put too */
	cr_assert_eq(st.total.hits, 2 * times);
	cr_assert_eq(st.total.misses, times);
	cr_assert_eq(st.total.deletes, times);
}

static void departed_counters_survive(bool close_it)
{
	make_segment();
	semcache *watch;
	semcache_options o;
	memset(&o, 0, sizeof o);
	o.flags = SEMCACHE_OPEN_NORECORD; /* counts nothing itself */
	cr_assert_eq(semcache_open(path, &o, &watch), 0);
	counting_child(close_it);
	assert_counted(watch, 1);
	/* The next claimant of that record folds its counts into the departed
	 * totals: counted once, neither lost nor doubled. */
	counting_child(close_it);
	assert_counted(watch, 2);
	semcache *other;
	memset(&o, 0, sizeof o);
	cr_assert_eq(semcache_open(path, &o, &other), 0);
	assert_counted(watch, 2);
	semcache_close(other);
	assert_counted(watch, 2);
	semcache_close(watch);
}

Test(segment, departed_counters_survive_an_exit_without_close)
{
	departed_counters_survive(false);
}

Test(segment, departed_counters_survive_close)
{
	departed_counters_survive(true);
}
