/*
 * buf.c - a growable byte buffer for bodies, canonical JSON and responses.
 *
 * Capacity doubles, so appending is amortised O(1); an optional maximum
 * turns "the client or the upstream sent too much" into -E2BIG instead of
 * unbounded memory.  The contents are kept NUL-terminated so text can be
 * handed to string functions without a copy.
 */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "proxy.h"

static int buf_reserve(px_buf *b, size_t extra)
{
	size_t need, cap;
	char *p;

	if (extra > SIZE_MAX - b->len - 1)
		return -E2BIG;
	need = b->len + extra + 1;
	if (b->max && b->len + extra > b->max)
		return -E2BIG;
	if (need <= b->cap)
		return 0;
	cap = b->cap ? b->cap : 256;
	while (cap < need)
		cap = cap > SIZE_MAX / 2 ? need : cap * 2;
	p = realloc(b->p, cap);
	if (!p)
		return -ENOMEM;
	b->p = p;
	b->cap = cap;
	return 0;
}

int px_buf_append(px_buf *b, const void *data, size_t n)
{
	int rc = buf_reserve(b, n);

	if (rc)
		return rc;
	if (n)
		memcpy(b->p + b->len, data, n);
	b->len += n;
	b->p[b->len] = '\0';
	return 0;
}

int px_buf_puts(px_buf *b, const char *s)
{
	return px_buf_append(b, s, strlen(s));
}

int px_buf_printf(px_buf *b, const char *fmt, ...)
{
	va_list ap;
	int n, rc;

	va_start(ap, fmt);
	n = vsnprintf(NULL, 0, fmt, ap);
	va_end(ap);
	if (n < 0)
		return -EINVAL;
	rc = buf_reserve(b, (size_t)n);
	if (rc)
		return rc;
	va_start(ap, fmt);
	vsnprintf(b->p + b->len, (size_t)n + 1, fmt, ap);
	va_end(ap);
	b->len += (size_t)n;
	return 0;
}

void px_buf_free(px_buf *b)
{
	free(b->p);
	b->p = NULL;
	b->len = b->cap = 0;
}

char *px_buf_take(px_buf *b, size_t *len)
{
	char *p;

	if (!b->p && px_buf_append(b, "", 0))
		return NULL;
	p = b->p;
	if (len)
		*len = b->len;
	b->p = NULL;
	b->len = b->cap = 0;
	return p;
}
