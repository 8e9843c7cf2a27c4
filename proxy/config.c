/*
 * config.c - semcache-proxy's configuration: defaults, file, command line.
 *
 * One table of settings serves both sources: the config file holds
 * "key = value" lines and the command line takes the same names as
 * --key value (dashes or underscores).  The master builds a configuration
 * as defaults, then the file, then the command line, so a flag always wins;
 * SIGHUP repeats exactly that and swaps the result in only if it is valid.
 *
 * File format (documented in README.md): UTF-8 text, one setting per line,
 * "key = value"; blank lines and lines starting with '#' are ignored;
 * leading and trailing blanks around key and value are dropped; no quoting
 * (a value is the rest of the line).  disable_kb may repeat and takes a
 * comma-separated list.  An unknown key or a bad value is an error naming
 * the file and line: a typo must not silently leave caching on.
 */
#include <ctype.h>
#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "proxy.h"

void px_config_defaults(px_config *c)
{
	memset(c, 0, sizeof *c);
	snprintf(c->path, sizeof c->path, "%s", SEMCACHE_DEFAULT_PATH);
	snprintf(c->embedding_model, sizeof c->embedding_model, "text-embedding-ada-002");
	c->threshold = 0.87;
	c->max_connections = 256;
	c->max_body_bytes = 4u << 20;
	c->upstream_timeout_ms = 120000;
	c->drain_timeout_ms = 30000;
	c->anonymous = PX_ANON_SHARE;
}

static int set_str(char *dst, size_t cap, const char *v, const char *key, char *err,
                   size_t errlen)
{
	if (strlen(v) >= cap) {
		snprintf(err, errlen, "%s: value longer than %zu bytes", key, cap - 1);
		return -EINVAL;
	}
	snprintf(dst, cap, "%s", v);
	return 0;
}

static int set_u64(uint64_t *dst, const char *v, uint64_t lo, uint64_t hi, const char *key,
                   char *err, size_t errlen)
{
	char *end;
	unsigned long long x;

	errno = 0;
	if (!isdigit((unsigned char)*v))
		goto bad;
	x = strtoull(v, &end, 10);
	if (errno || *end || x < lo || x > hi)
		goto bad;
	*dst = x;
	return 0;
bad:
	snprintf(err, errlen, "%s: want an integer in %" PRIu64 "..%" PRIu64 ", got '%s'", key,
	         lo, hi, v);
	return -EINVAL;
}

static int set_u32(uint32_t *dst, const char *v, uint32_t lo, uint32_t hi, const char *key,
                   char *err, size_t errlen)
{
	uint64_t x;
	int rc = set_u64(&x, v, lo, hi, key, err, errlen);

	if (!rc)
		*dst = (uint32_t)x;
	return rc;
}

static int add_kbs(px_config *c, const char *v, char *err, size_t errlen)
{
	const char *p = v;

	while (*p) {
		const char *q = strchr(p, ',');
		size_t n = q ? (size_t)(q - p) : strlen(p);

		while (n && isspace((unsigned char)*p)) {
			p++;
			n--;
		}
		while (n && isspace((unsigned char)p[n - 1]))
			n--;
		if (n) {
			if (c->n_kbs >= PX_MAX_KBS || n >= sizeof c->kbs[0]) {
				snprintf(err, errlen, "disable_kb: at most %d names of at most %zu bytes",
				         PX_MAX_KBS, sizeof c->kbs[0] - 1);
				return -EINVAL;
			}
			memcpy(c->kbs[c->n_kbs], p, n);
			c->kbs[c->n_kbs][n] = '\0';
			c->n_kbs++;
		}
		if (!q)
			break;
		p = q + 1;
	}
	return 0;
}

int px_config_set(px_config *c, const char *key, const char *v, char *err, size_t errlen)
{
	char k[64];
	size_t i;
	uint64_t x;
	int rc;

	if (strlen(key) >= sizeof k) {
		snprintf(err, errlen, "unknown setting '%.40s...'", key);
		return -EINVAL;
	}
	for (i = 0; key[i]; i++)
		k[i] = key[i] == '-' ? '_' : key[i];
	k[i] = '\0';

	if (!strcmp(k, "listen"))
		return set_str(c->listen, sizeof c->listen, v, k, err, errlen);
	if (!strcmp(k, "upstream"))
		return set_str(c->upstream, sizeof c->upstream, v, k, err, errlen);
	if (!strcmp(k, "path"))
		return set_str(c->path, sizeof c->path, v, k, err, errlen);
	if (!strcmp(k, "embedding_model"))
		return set_str(c->embedding_model, sizeof c->embedding_model, v, k, err, errlen);
	if (!strcmp(k, "user_header"))
		return set_str(c->user_header, sizeof c->user_header, v, k, err, errlen);
	if (!strcmp(k, "upstream_api_key"))
		return set_str(c->upstream_api_key, sizeof c->upstream_api_key, v, k, err, errlen);
	if (!strcmp(k, "embedding_dim"))
		return set_u32(&c->embedding_dim, v, 0, 4096, k, err, errlen);
	if (!strcmp(k, "workers"))
		return set_u32(&c->workers, v, 0, 128, k, err, errlen);
	if (!strcmp(k, "slots"))
		return set_u32(&c->slots, v, 0, 1u << 26, k, err, errlen);
	if (!strcmp(k, "arena_mb"))
		return set_u32(&c->arena_mb, v, 0, 1u << 20, k, err, errlen);
	if (!strcmp(k, "max_connections"))
		return set_u32(&c->max_connections, v, 1, 65536, k, err, errlen);
	if (!strcmp(k, "upstream_timeout_ms"))
		return set_u32(&c->upstream_timeout_ms, v, 1, 3600000, k, err, errlen);
	if (!strcmp(k, "drain_timeout_ms"))
		return set_u32(&c->drain_timeout_ms, v, 0, 3600000, k, err, errlen);
	if (!strcmp(k, "max_body_bytes"))
		return set_u64(&c->max_body_bytes, v, 1024, 1ull << 30, k, err, errlen);
	if (!strcmp(k, "exact_ttl") || !strcmp(k, "semantic_ttl")) {
		rc = set_u64(&x, v, 0, 100ull * 365 * 86400, k, err, errlen);
		if (!rc)
			*(k[0] == 'e' ? &c->exact_ttl_s : &c->semantic_ttl_s) = (int64_t)x;
		return rc;
	}
	if (!strcmp(k, "threshold")) {
		char *end;
		double t;

		errno = 0;
		t = strtod(v, &end);
		if (errno || end == v || *end || !isfinite(t) || t < -1 || t > 1) {
			snprintf(err, errlen, "threshold: want a number in [-1, 1], got '%s'", v);
			return -EINVAL;
		}
		c->threshold = t;
		return 0;
	}
	if (!strcmp(k, "anonymous")) {
		if (!strcmp(v, "share"))
			c->anonymous = PX_ANON_SHARE;
		else if (!strcmp(v, "nocache"))
			c->anonymous = PX_ANON_NOCACHE;
		else {
			snprintf(err, errlen, "anonymous: want 'share' or 'nocache', got '%s'", v);
			return -EINVAL;
		}
		return 0;
	}
	if (!strcmp(k, "disable_kb"))
		return add_kbs(c, v, err, errlen);
	snprintf(err, errlen, "unknown setting '%s'", key);
	return -EINVAL;
}

static char *trim(char *s)
{
	char *e;

	while (isspace((unsigned char)*s))
		s++;
	e = s + strlen(s);
	while (e > s && isspace((unsigned char)e[-1]))
		*--e = '\0';
	return s;
}

int px_config_load(px_config *c, const char *file, char *err, size_t errlen)
{
	FILE *f = fopen(file, "re");
	char *line = NULL;
	size_t cap = 0;
	unsigned lineno = 0;
	int rc = 0;

	if (!f) {
		rc = -errno;
		snprintf(err, errlen, "%s: %s", file, strerror(errno));
		return rc;
	}
	while (getline(&line, &cap, f) >= 0) {
		char *s, *eq, msg[256];

		lineno++;
		s = trim(line);
		if (!*s || *s == '#')
			continue;
		eq = strchr(s, '=');
		if (!eq) {
			snprintf(err, errlen, "%s:%u: want 'key = value'", file, lineno);
			rc = -EINVAL;
			goto out;
		}
		*eq = '\0';
		rc = px_config_set(c, trim(s), trim(eq + 1), msg, sizeof msg);
		if (rc) {
			snprintf(err, errlen, "%s:%u: %s", file, lineno, msg);
			goto out;
		}
	}
	if (ferror(f)) {
		rc = -EIO;
		snprintf(err, errlen, "%s: read error", file);
	}
out:
	free(line);
	fclose(f);
	return rc;
}

int px_config_check(const px_config *c, char *err, size_t errlen)
{
	if (!c->listen[0]) {
		snprintf(err, errlen, "no listen address (--listen HOST:PORT)");
		return -EINVAL;
	}
	if (!strrchr(c->listen, ':')) {
		snprintf(err, errlen, "listen: want HOST:PORT, got '%s'", c->listen);
		return -EINVAL;
	}
	if (!c->upstream[0]) {
		snprintf(err, errlen, "no upstream (--upstream URL)");
		return -EINVAL;
	}
	if (strncmp(c->upstream, "http://", 7) && strncmp(c->upstream, "https://", 8)) {
		snprintf(err, errlen, "upstream: want an http:// or https:// URL, got '%s'",
		         c->upstream);
		return -EINVAL;
	}
	return 0;
}

bool px_config_kb_disabled(const px_config *c, const char *kb)
{
	for (size_t i = 0; i < c->n_kbs; i++)
		if (!strcmp(c->kbs[i], kb))
			return true;
	return false;
}
