/*
 * holder.c - a process that holds one zero-copy reference, for the fault
 * tests (test_faults.c), which run it in places the old /proc liveness got
 * wrong: its own PID namespace, at its fd limit, and across exec().
 *
 *   sc_holder PATH NS KEY hold     take the reference, print "ready LEN",
 *                                  wait for a line on stdin, then print
 *                                  "same" if the referenced bytes are what
 *                                  they were, else "changed"
 *   sc_holder PATH NS KEY fdlimit  the same, after lowering RLIMIT_NOFILE
 *                                  so that opening the segment takes the
 *                                  last descriptor it may have
 *   sc_holder PATH NS KEY exec     take the reference, print "ready LEN",
 *                                  then exec() itself as "sc_holder - - -
 *                                  wait", which prints "execd" and waits
 *                                  for a line on stdin
 * Exit status 0 when all went as described, 1 otherwise.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>

#include "semcache.h"

static char *gather(const semcache_ref *ref)
{
	char *out = malloc(ref->len + 1), *p = out;
	if (!out)
		return NULL;
	for (int i = 0; i < ref->iovcnt; i++) {
		memcpy(p, ref->iov[i].iov_base, ref->iov[i].iov_len);
		p += ref->iov[i].iov_len;
	}
	*p = 0;
	return out;
}

int main(int argc, char **argv)
{
	if (argc != 5)
		return 1;
	const char *mode = argv[4];
	char line[64];
	setvbuf(stdout, NULL, _IOLBF, 0);
	if (!strcmp(mode, "wait")) {
		printf("execd\n");
		(void)fgets(line, sizeof line, stdin); /* a line or EOF ends the wait */
		return 0;
	}
	if (!strcmp(mode, "fdlimit")) {
		/* the lowest free descriptor is the only one left to take */
		int fd = dup(0);
		if (fd < 0)
			return 1;
		close(fd);
		struct rlimit rl = { (rlim_t)fd + 1, (rlim_t)fd + 1 };
		if (setrlimit(RLIMIT_NOFILE, &rl) < 0)
			return 1;
	}
	semcache *c;
	int rc = semcache_open(argv[1], NULL, &c);
	if (rc < 0) {
		printf("open: %s\n", semcache_strerror(rc));
		return 1;
	}
	semcache_ref ref;
	if ((rc = semcache_get_ref(c, argv[2], argv[3], &ref)) < 0) {
		printf("get_ref: %s\n", semcache_strerror(rc));
		return 1;
	}
	char *before = gather(&ref);
	if (!before)
		return 1;
	printf("ready %zu\n", ref.len);
	if (!strcmp(mode, "exec")) {
		execl(argv[0], argv[0], "-", "-", "-", "wait", (char *)NULL);
		return 1;
	}
	if (!fgets(line, sizeof line, stdin))
		return 1;
	char *after = gather(&ref);
	int same = after && strcmp(before, after) == 0;
	printf("%s\n", same ? "same" : "changed");
	semcache_release(c, &ref);
	semcache_close(c);
	free(before);
	free(after);
	return same ? 0 : 1;
}
