/*
 * errors.c - names for every return code.
 *
 * semcache returns 0 or a negative code: its own codes in the reserved
 * range [-30099, -30000], anything else a negated errno, named here by the
 * C library.  The strings are static, so the call is thread-safe.
 */
#include <string.h>

#include "internal.h"

static const char *const own[] = {
	[0]  = "no matching entry",
	[1]  = "not a semcache segment",
	[2]  = "segment file is truncated",
	[3]  = "segment has another layout version",
	[4]  = "segment built with another struct layout (format signature differs)",
	[5]  = "options contradict the segment's stored geometry",
	[6]  = "segment is corrupt or inconsistent",
	[7]  = "malformed or oversized response record",
	[8]  = "process table is full (or this handle holds no process record)",
	[9]  = "embedding dimension differs from the segment's",
	[10] = "embedding has NaN/Inf values or zero norm",
	[11] = "segment was created without embeddings",
	[12] = "no room: the remaining space is held by readers",
	/* not -EBUSY ("Device or resource busy"): this one means we waited */
	[13] = "gave up waiting: the writer lock stayed held by a live process, "
	       "or the segment file kept being replaced",
	[14] = "unsafe segment file: a symbolic link, not a regular file, another user's, "
	       "or readable or writable beyond the mode asked for",
};

const char *semcache_strerror(int err)
{
	if (err == 0)
		return "success";
	if (err <= SEMCACHE_ERRBASE && err >= SEMCACHE_ERRBASE - 99) {
		int i = SEMCACHE_ERRBASE - err;
		if (i < (int)(sizeof own / sizeof own[0]) && own[i])
			return own[i];
		return "unknown semcache error";
	}
	if (err < 0 && err > -4096) {
		/* strerror() may use a shared buffer only for unknown values,
		 * which -4096 < err < 0 excludes on glibc. */
		return strerror(-err);
	}
	return "unknown error";
}
