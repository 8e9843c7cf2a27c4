/*
 * semcache.c - the operator's command-line tool for a semcache segment.
 *
 * One binary, one subcommand per operation: create and destroy a segment;
 * inspect it (stat as a table, JSON or Prometheus text, once or every few
 * seconds; dump of every entry); read and write single entries (get, put,
 * search, delete); maintain it (invalidate, verify).
 *
 * How it works.  main() takes the global options, picks the subcommand and
 * hands it the rest of argv; each subcommand parses its own options with
 * the small table-driven parser below (which also accepts the global
 * --path anywhere), validates every argument before it touches the segment,
 * and then talks to the segment through include/semcache.h only.  Using
 * nothing but the public API is deliberate: the tool is also the proof that
 * the API is enough to operate a cache.
 *
 * Why the rules below.  Scripts must tell a miss from a mistake from a
 * broken segment, so every outcome maps to one of four exit codes:
 *   0 success; 1 miss, nothing matched, or verify found damage;
 *   2 usage error (bad option, argument or input, including input the
 *     segment rejects such as a wrong embedding dimension);
 *   3 runtime error (cannot open, not a segment, corrupt, out of memory).
 * Every command but `create` attaches with SEMCACHE_OPEN_NOCREATE, so a typo
 * in --path never leaves a fresh segment behind.  Namespaces, keys and
 * scopes are caller bytes: human output escapes control characters (a key
 * must not drive the operator's terminal) and JSON output replaces invalid
 * UTF-8 with U+FFFD (the library stores bytes unchecked; JSON cannot carry
 * them).
 */
#include <semcache.h>

#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <float.h>
#include <inttypes.h>
#include <jansson.h>
#include <math.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

enum { RC_OK = 0, RC_MISS = 1, RC_USAGE = 2, RC_RUNTIME = 3 };

#define STR_(x) #x
#define STR(x) STR_(x)
#define TOOL_VERSION STR(SEMCACHE_VERSION_MAJOR) "." STR(SEMCACHE_VERSION_MINOR) "." \
	STR(SEMCACHE_VERSION_PATCH)

/* Seven significant digits print every float-derived figure (similarity,
 * threshold, ratios) without the float's binary noise. */
#define JSON_ONE_LINE (JSON_COMPACT | JSON_REAL_PRECISION(7))
#define JSON_PRETTY   (JSON_INDENT(2) | JSON_REAL_PRECISION(7))

#define MAX_TOP       64               /* semcache_search_topk()'s k limit */
#define MAX_TOOLCALLS 1024             /* semcache_response.n_tool_calls limit */
#define MAX_EMB_FILE  (64u << 20)      /* an embedding file larger than this is a mistake */
#define REPORT_LEN    65536            /* verify report buffer */

static const char *g_path;             /* --path, else $SEMCACHE_PATH, else the default */
static bool g_group;                   /* --group: a 0660 segment (or a group member's) is fine */
static const char *g_cmd = "";         /* running subcommand, named in messages */
static volatile sig_atomic_t g_stop;   /* set by SIGINT/SIGTERM during stat --watch */

/* ------------------------------------------------------------------------
 * Messages and exit codes
 * ---------------------------------------------------------------------- */
static void vmsg(const char *fmt, va_list ap)
{
	fprintf(stderr, "semcache%s%s: ", *g_cmd ? " " : "", g_cmd);
	vfprintf(stderr, fmt, ap);
	fputc('\n', stderr);
}

__attribute__((format(printf, 1, 2)))
static void msg(const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	vmsg(fmt, ap);
	va_end(ap);
}

/* Print the complaint and where to read more; returns RC_USAGE. */
__attribute__((format(printf, 1, 2)))
static int usage_error(const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	vmsg(fmt, ap);
	va_end(ap);
	fprintf(stderr, "Try 'semcache %s%s--help'.\n", g_cmd, *g_cmd ? " " : "");
	return RC_USAGE;
}

/*
 * Exit code of a library error.  Errors that mean "the caller's input does
 * not fit this segment" are usage errors; a miss is 1; the rest (file
 * system, corrupt or foreign segment, no room, contention) are runtime.
 */
static int rc_for(int err)
{
	switch (err) {
	case 0:
		return RC_OK;
	case SEMCACHE_ENOTFOUND:
		return RC_MISS;
	case -EINVAL:
	case -E2BIG:
	case SEMCACHE_EDIM:
	case SEMCACHE_EEMBEDDING:
	case SEMCACHE_ENOSEMANTIC:
	case SEMCACHE_EBADRECORD:
		return RC_USAGE;
	default:
		return RC_RUNTIME;
	}
}

/* "<what>: <semcache_strerror(err)>" on stderr; returns rc_for(err). */
__attribute__((format(printf, 2, 3)))
static int lib_error(int err, const char *fmt, ...)
{
	va_list ap;
	fprintf(stderr, "semcache%s%s: ", *g_cmd ? " " : "", g_cmd);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fprintf(stderr, ": %s\n", semcache_strerror(err));
	return rc_for(err);
}

/* ------------------------------------------------------------------------
 * Option parsing
 *
 * Long options only, as "--name value" or "--name=value", anywhere on the
 * line; "--" ends options (for a key that starts with '-'); -h/--help asks
 * for the subcommand's help; --path is global and accepted everywhere.  A
 * repeated option keeps its last value.
 * ---------------------------------------------------------------------- */
struct opt {
	const char *name;  /* without the leading "--" */
	bool has_arg;
	bool seen;
	const char *arg;   /* value of the last occurrence */
};

#define OPT(name_, has_arg_) { .name = (name_), .has_arg = (has_arg_) }

enum { PARSE_OK, PARSE_HELP, PARSE_ERROR };

static int set_path(const char *p)
{
	if (!*p)
		return usage_error("--path must not be empty");
	g_path = p;
	return 0;
}

/* argv[0] is the subcommand; positionals go to pos[0 .. *npos), at most cap. */
static int parse_opts(int argc, char **argv, struct opt *opts, size_t nopts,
                      const char **pos, size_t cap, size_t *npos)
{
	bool only_pos = false;
	*npos = 0;
	for (int i = 1; i < argc; i++) {
		const char *a = argv[i];
		if (only_pos || a[0] != '-' || a[1] == '\0') {
			if (*npos == cap) {
				usage_error("unexpected argument '%s'", a);
				return PARSE_ERROR;
			}
			pos[(*npos)++] = a;
			continue;
		}
		if (!strcmp(a, "--")) {
			only_pos = true;
			continue;
		}
		if (!strcmp(a, "-h") || !strcmp(a, "--help"))
			return PARSE_HELP;
		if (a[1] != '-') {
			usage_error("unknown option '%s'", a);
			return PARSE_ERROR;
		}
		const char *name = a + 2, *eq = strchr(name, '=');
		int len = eq ? (int)(eq - name) : (int)strlen(name);
		const char *val = eq ? eq + 1 : NULL;
		bool is_path = len == 4 && !strncmp(name, "path", 4);
		if (len == 5 && !strncmp(name, "group", 5) && !val) {
			g_group = true; /* global: accepted by every command */
			bool local = false;
			for (size_t k = 0; k < nopts; k++)
				local |= !strcmp(opts[k].name, "group");
			if (!local)
				continue;
		}
		struct opt *o = NULL;
		for (size_t k = 0; !is_path && k < nopts; k++)
			if ((int)strlen(opts[k].name) == len && !strncmp(opts[k].name, name, (size_t)len))
				o = &opts[k];
		if (!is_path && !o) {
			usage_error("unknown option '--%.*s'", len, name);
			return PARSE_ERROR;
		}
		bool has_arg = is_path || o->has_arg;
		if (has_arg && !val) {
			if (i + 1 >= argc) {
				usage_error("option '--%.*s' needs a value", len, name);
				return PARSE_ERROR;
			}
			val = argv[++i];
		} else if (!has_arg && val) {
			usage_error("option '--%.*s' takes no value", len, name);
			return PARSE_ERROR;
		}
		if (is_path) {
			if (set_path(val))
				return PARSE_ERROR;
		} else {
			o->seen = true;
			o->arg = val;
		}
	}
	return PARSE_OK;
}

static void show_help(const char *cmd, FILE *f);

/* What a subcommand returns when parse_opts() did not say PARSE_OK. */
static int parse_result(int pr)
{
	if (pr == PARSE_HELP) {
		show_help(g_cmd, stdout);
		return RC_OK;
	}
	return RC_USAGE;
}

/* ------------------------------------------------------------------------
 * Strict number parsing: the whole string, no sign, no spaces; errors name
 * the option.  Each returns 0 or RC_USAGE.
 * ---------------------------------------------------------------------- */

/* Decimal integer in [min, max]; with `sizes`, an optional binary suffix
 * K, M, G or T (optionally followed by "B" or "iB"), case-insensitive. */
static int parse_u64(const char *opt, const char *s, bool sizes, uint64_t min, uint64_t max,
                     uint64_t *out)
{
	char *end;
	unsigned long long v;
	if (!isdigit((unsigned char)s[0]))
		goto bad;
	errno = 0;
	v = strtoull(s, &end, 10);
	if (errno == ERANGE)
		goto range;
	if (sizes && *end) {
		unsigned shift;
		switch (*end) {
		case 'k': case 'K': shift = 10; break;
		case 'm': case 'M': shift = 20; break;
		case 'g': case 'G': shift = 30; break;
		case 't': case 'T': shift = 40; break;
		default: goto bad;
		}
		end++;
		if (!strcmp(end, "B") || !strcmp(end, "iB"))
			end += strlen(end);
		if (v > (UINT64_MAX >> shift))
			goto range;
		v <<= shift;
	}
	if (*end)
		goto bad;
	if (v < min || v > max)
		goto range;
	*out = v;
	return 0;
bad:
	return usage_error("--%s: '%s' is not a%s number", opt, s,
	                   sizes ? " size (digits with optional K, M, G suffix)" : "n integer");
range:
	return usage_error("--%s: %s is out of range %" PRIu64 "..%" PRIu64, opt, s, min, max);
}

/* A plain decimal real: digits, '.', exponent; no hex, inf or nan. */
static int parse_real(const char *opt, const char *s, double *out)
{
	char *end;
	if (!*s || strspn(s, "0123456789.eE+-") != strlen(s))
		goto bad;
	errno = 0;
	double v = strtod(s, &end);
	if (end == s || *end || errno == ERANGE || !isfinite(v))
		goto bad;
	*out = v;
	return 0;
bad:
	return usage_error("--%s: '%s' is not a number", opt, s);
}

/* Seconds (fractions allowed) > 0, as milliseconds, at most ~31700 years. */
static int parse_seconds(const char *opt, const char *s, int64_t *ms)
{
	double v;
	int rc = parse_real(opt, s, &v);
	if (rc)
		return rc;
	if (!(v >= 0.001) || v > 1e12)
		return usage_error("--%s: %s is out of range (0.001 .. 1e12 seconds)", opt, s);
	*ms = (int64_t)llround(v * 1000.0);
	return 0;
}

static int parse_threshold(const char *opt, const char *s, float *out)
{
	double v;
	int rc = parse_real(opt, s, &v);
	if (rc)
		return rc;
	if (v < -1.0 || v > 1.0)
		return usage_error("--%s: %s is out of range -1..1", opt, s);
	*out = (float)v;
	return 0;
}

/* ------------------------------------------------------------------------
 * Output helpers
 * ---------------------------------------------------------------------- */
static int64_t now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Caller bytes for a terminal: backslash escapes for C0 and C1 controls. */
static void put_esc(FILE *f, const char *s)
{
	for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
		unsigned c = *p;
		if (c == '\\')
			fputs("\\\\", f);
		else if (c == '\n')
			fputs("\\n", f);
		else if (c == '\t')
			fputs("\\t", f);
		else if (c == '\r')
			fputs("\\r", f);
		else if (c < 0x20 || c == 0x7f)
			fprintf(f, "\\x%02x", c);
		else if (c == 0xc2 && p[1] >= 0x80 && p[1] <= 0x9f)
			fprintf(f, "\\u%04x", (unsigned)*++p);
		else
			fputc((int)c, f);
	}
}

static const char *fmt_bytes(uint64_t b, char buf[32])
{
	static const char *const unit[] = { "KiB", "MiB", "GiB", "TiB" };
	if (b < 1024) {
		snprintf(buf, 32, "%" PRIu64 " B", b);
		return buf;
	}
	double v = (double)b / 1024;
	int u = 0;
	while (v >= 1024 && u < 3) {
		v /= 1024;
		u++;
	}
	snprintf(buf, 32, "%.1f %s", v, unit[u]);
	return buf;
}

/* A duration for humans: 850ms, 42s, 5m03s, 2h10m, 3d04h. */
static const char *fmt_dur(int64_t ms, char buf[32])
{
	const char *sign = ms < 0 ? "-" : "";
	long long a = ms < 0 ? -(long long)ms : (long long)ms, s = a / 1000;
	if (a < 1000)
		snprintf(buf, 32, "%s%lldms", sign, a);
	else if (s < 60)
		snprintf(buf, 32, "%s%llds", sign, s);
	else if (s < 3600)
		snprintf(buf, 32, "%s%lldm%02llds", sign, s / 60, s % 60);
	else if (s < 86400)
		snprintf(buf, 32, "%s%lldh%02lldm", sign, s / 3600, s % 3600 / 60);
	else
		snprintf(buf, 32, "%s%lldd%02lldh", sign, s / 86400, s % 86400 / 3600);
	return buf;
}

static const char *fmt_utc(int64_t ms, char buf[32])
{
	time_t t = (time_t)(ms / 1000);
	struct tm tm;
	if (!gmtime_r(&t, &tm) || !strftime(buf, 32, "%Y-%m-%dT%H:%M:%SZ", &tm))
		snprintf(buf, 32, "%lld ms", (long long)ms);
	return buf;
}

/* hits / (hits + misses), or -1 when there were no lookups. */
static double ratio(uint64_t hits, uint64_t misses)
{
	return hits + misses ? (double)hits / (double)(hits + misses) : -1.0;
}

/*
 * semcache_stats.quant is not documented in the header.  The library fills
 * it with its internal encoding (0 none, 1 int8, 2 bits); the SEMCACHE_QUANT_*
 * flag values are accepted too in case the header later settles on those.
 */
static const char *quant_name(uint32_t q)
{
	if (q == 0)
		return "none";
	if (q == 1 || q == SEMCACHE_QUANT_INT8)
		return "int8";
	if (q == 2 || q == SEMCACHE_QUANT_BITS)
		return "bits";
	return "unknown";
}

/* ------------------------------------------------------------------------
 * JSON helpers (jansson).  Builders return NULL on allocation failure.
 * ---------------------------------------------------------------------- */

/* Bytes as valid UTF-8: each byte that does not start a well-formed
 * sequence (overlong, surrogate, > U+10FFFF, truncated) becomes U+FFFD. */
static char *utf8_repair(const char *s)
{
	size_t n = strlen(s), o = 0;
	char *out = malloc(n * 3 + 1);
	if (!out)
		return NULL;
	const unsigned char *p = (const unsigned char *)s;
	for (size_t i = 0; i < n;) {
		unsigned c = p[i];
		size_t len = c < 0x80 ? 1 : c >= 0xc2 && c <= 0xdf ? 2 : c >= 0xe0 && c <= 0xef ? 3
		           : c >= 0xf0 && c <= 0xf4 ? 4 : 0;
		bool ok = len > 0 && i + len <= n;
		for (size_t k = 1; ok && k < len; k++) {
			unsigned lo = 0x80, hi = 0xbf;
			if (k == 1 && c == 0xe0) lo = 0xa0;
			if (k == 1 && c == 0xed) hi = 0x9f;
			if (k == 1 && c == 0xf0) lo = 0x90;
			if (k == 1 && c == 0xf4) hi = 0x8f;
			ok = p[i + k] >= lo && p[i + k] <= hi;
		}
		if (ok) {
			memcpy(out + o, p + i, len);
			o += len;
			i += len;
		} else {
			memcpy(out + o, "\xef\xbf\xbd", 3);
			o += 3;
			i++;
		}
	}
	out[o] = '\0';
	return out;
}

/* A JSON string of caller bytes, or null for NULL. */
static json_t *jstr(const char *s)
{
	if (!s)
		return json_null();
	json_t *j = json_string(s);
	if (!j) { /* invalid UTF-8 (or no memory: the retry fails too) */
		char *fixed = utf8_repair(s);
		if (fixed)
			j = json_string(fixed);
		free(fixed);
	}
	return j;
}

static json_t *jint(uint64_t v)
{
	return json_integer(v > (uint64_t)INT64_MAX ? INT64_MAX : (json_int_t)v);
}

/* A real, or null when v is below `none` (used for "no value yet"). */
static json_t *jreal_or_null(double v, double none)
{
	return v < none || !isfinite(v) ? json_null() : json_real(v);
}

/* json_object_set_new() that reports a NULL value as failure: callers OR
 * the results and check once. */
static int jput(json_t *o, const char *k, json_t *v)
{
	if (!v)
		return -1;
	return json_object_set_new(o, k, v) ? -1 : 0;
}

static int print_json(json_t *j, size_t flags)
{
	if (!j || json_dumpf(j, stdout, flags) < 0) {
		msg("cannot format JSON output: %s", semcache_strerror(-ENOMEM));
		return RC_RUNTIME;
	}
	fputc('\n', stdout);
	return RC_OK;
}

/* The record in put's input format, so `get --json | put` copies it. */
static json_t *response_json(const semcache_response *r)
{
	json_t *o = json_object(), *usage = json_object(), *calls = json_array();
	int bad = !o || !usage || !calls;
	for (uint32_t i = 0; !bad && i < r->n_tool_calls; i++) {
		const semcache_tool_call *tc = &r->tool_calls[i];
		json_t *c = json_object();
		bad |= !c;
		if (c) {
			bad |= jput(c, "id", jstr(tc->id ? tc->id : ""));
			bad |= jput(c, "name", jstr(tc->name ? tc->name : ""));
			bad |= jput(c, "arguments", jstr(tc->arguments ? tc->arguments : ""));
			bad |= json_array_append_new(calls, c);
		}
	}
	if (!bad) {
		bad |= jput(usage, "prompt_tokens", jint(r->prompt_tokens));
		bad |= jput(usage, "completion_tokens", jint(r->completion_tokens));
		bad |= jput(o, "content", jstr(r->content ? r->content : ""));
		bad |= jput(o, "model", jstr(r->model ? r->model : ""));
		bad |= jput(o, "usage", usage);
		bad |= jput(o, "tool_calls", calls);
		usage = calls = NULL;
		bad |= jput(o, "latency_ms", jint(r->latency_ms));
		bad |= jput(o, "finish_reason", jstr(r->finish_reason));
		bad |= jput(o, "reasoning", jstr(r->reasoning));
		bad |= jput(o, "metadata", jstr(r->metadata));
	}
	json_decref(usage);
	json_decref(calls);
	if (bad) {
		json_decref(o);
		return NULL;
	}
	return o;
}

/* ------------------------------------------------------------------------
 * Attaching
 * ---------------------------------------------------------------------- */

/*
 * Refuse a file with no header at all: empty, or a first page of zeros.
 * The library treats such a file as a creation a dead creator left behind
 * and initialises it, even under SEMCACHE_OPEN_NOCREATE (with default or
 * zero geometry); an inspection tool must never rewrite a file, so it says
 * so and stops.  A creation in progress looks the same for a moment and
 * gets the same answer: try again.
 */
static int refuse_blank(void)
{
	unsigned char page[4096];
	struct stat sb;
	ssize_t n;
	int fd = open(g_path, O_RDONLY | O_CLOEXEC), rc = RC_OK;
	if (fd < 0)
		return RC_OK; /* semcache_open() reports it */
	if (fstat(fd, &sb) == 0 && S_ISREG(sb.st_mode)) {
		n = sb.st_size ? pread(fd, page, sizeof page, 0) : 0;
		bool blank = n >= 0;
		for (ssize_t i = 0; blank && i < n; i++)
			blank = page[i] == 0;
		if (blank) {
			msg("cannot open %s: %s (%s; perhaps one being created: not touching it)",
			    g_path, semcache_strerror(SEMCACHE_ENOTSEMCACHE),
			    sb.st_size ? "its first page is all zeros" : "empty file");
			rc = RC_RUNTIME;
		}
	}
	close(fd);
	return rc;
}

/* Attach to an existing segment, whatever its geometry: options_init()'s
 * geometry is only a default, never a demand on an existing segment. */
/* inspect: the command only reads (stat, dump, get, search): when every
 * process record is taken, it goes on without one (it then counts nothing
 * and is not listed among the processes). */
static int open_segment(semcache **out, bool inspect)
{
	semcache_options o;
	int rc = refuse_blank();
	if (rc)
		return rc;
	semcache_options_init(&o);
	o.flags = SEMCACHE_OPEN_NOCREATE | (g_group ? SEMCACHE_OPEN_GROUP : 0);
	int err = semcache_open(g_path, &o, out);
	if (err == SEMCACHE_EPROCFULL && inspect) {
		o.flags |= SEMCACHE_OPEN_NORECORD;
		err = semcache_open(g_path, &o, out);
	}
	if (err == -ENOENT) {
		msg("cannot open %s: %s (make one with 'semcache create')", g_path,
		    semcache_strerror(err));
		return RC_RUNTIME;
	}
	if (err) {
		lib_error(err, "cannot open %s", g_path);
		return RC_RUNTIME;
	}
	return RC_OK;
}

/* ------------------------------------------------------------------------
 * Inputs: embedding files and response records
 * ---------------------------------------------------------------------- */
static int read_file(const char *path, size_t max, char **buf, size_t *len)
{
	FILE *f = fopen(path, "rb");
	char *b = NULL;
	size_t n = 0, cap = 0;
	int rc = RC_OK, e;
	if (!f) {
		e = errno;
		msg("cannot read %s: %s", path, semcache_strerror(-e));
		return e == ENOMEM ? RC_RUNTIME : RC_USAGE;
	}
	for (;;) {
		if (n == cap) {
			size_t ncap = cap ? cap * 2 : 65536;
			if (ncap > max) {
				msg("%s is larger than %zu bytes", path, max);
				rc = RC_USAGE;
				goto out;
			}
			char *nb = realloc(b, ncap + 1);
			if (!nb) {
				msg("cannot read %s: %s", path, semcache_strerror(-ENOMEM));
				rc = RC_RUNTIME;
				goto out;
			}
			b = nb;
			cap = ncap;
		}
		errno = 0;
		size_t got = fread(b + n, 1, cap - n, f);
		n += got;
		if (got == 0)
			break;
	}
	if (ferror(f)) {
		e = errno ? errno : EIO;
		msg("cannot read %s: %s", path, semcache_strerror(-e));
		rc = e == EISDIR ? RC_USAGE : RC_RUNTIME;
		goto out;
	}
	b[n] = '\0';
	*buf = b;
	*len = n;
	b = NULL;
out:
	free(b);
	fclose(f);
	return rc;
}

/*
 * Load an embedding: a JSON array of numbers if the file starts with '['
 * (after white space), else raw little-endian float32.  Every value must be
 * a finite float; the dimension is checked against the segment later.
 */
static int read_embedding(const char *opt, const char *path, float **vec, uint32_t *dim)
{
	char *buf = NULL;
	size_t len = 0, skip = 0;
	float *v = NULL;
	json_t *arr = NULL;
	int rc;

	if (!strcmp(path, "-"))
		return usage_error("--%s: '-' is not allowed (stdin is not available for it)", opt);
	if ((rc = read_file(path, MAX_EMB_FILE, &buf, &len)))
		return rc;
	while (skip < len && isspace((unsigned char)buf[skip]))
		skip++;
	rc = RC_USAGE;
	if (skip < len && buf[skip] == '[') {
		json_error_t je;
		arr = json_loadb(buf, len, 0, &je);
		if (!arr || !json_is_array(arr)) {
			msg("%s: not a JSON array of numbers: %s (line %d, column %d)", path,
			    arr ? "not an array" : je.text, je.line, je.column);
			goto out;
		}
		size_t n = json_array_size(arr);
		if (n == 0 || n > 65536) {
			msg("%s: embedding has %zu values", path, n);
			goto out;
		}
		if (!(v = malloc(n * sizeof *v))) {
			rc = RC_RUNTIME;
			msg("%s: %s", path, semcache_strerror(-ENOMEM));
			goto out;
		}
		for (size_t i = 0; i < n; i++) {
			json_t *x = json_array_get(arr, i);
			double d = json_is_number(x) ? json_number_value(x) : NAN;
			if (!isfinite(d) || fabs(d) > FLT_MAX) {
				msg("%s: element %zu is not a finite float", path, i);
				goto out;
			}
			v[i] = (float)d;
		}
		*dim = (uint32_t)n;
	} else {
		if (len == 0 || len % 4 || len / 4 > 65536) {
			msg("%s: raw float32 embedding must be a non-empty multiple of 4 bytes "
			    "(got %zu bytes)", path, len);
			goto out;
		}
		size_t n = len / 4;
		if (!(v = malloc(n * sizeof *v))) {
			rc = RC_RUNTIME;
			msg("%s: %s", path, semcache_strerror(-ENOMEM));
			goto out;
		}
		const unsigned char *p = (const unsigned char *)buf;
		for (size_t i = 0; i < n; i++) {
			uint32_t w = (uint32_t)p[4 * i] | (uint32_t)p[4 * i + 1] << 8 |
			             (uint32_t)p[4 * i + 2] << 16 | (uint32_t)p[4 * i + 3] << 24;
			memcpy(&v[i], &w, sizeof w);
			if (!isfinite(v[i])) {
				msg("%s: element %zu is not finite", path, i);
				goto out;
			}
		}
		*dim = (uint32_t)n;
	}
	*vec = v;
	v = NULL;
	rc = RC_OK;
out:
	free(v);
	free(buf);
	json_decref(arr);
	return rc;
}

/* The embedding must match the segment; say exactly why not. */
static int check_dim(semcache *c, uint32_t n)
{
	semcache_stats st;
	int err = semcache_stat(c, &st);
	if (err) {
		lib_error(err, "cannot read the segment's geometry");
		return RC_RUNTIME;
	}
	if (st.dim == 0) {
		msg("%s was created without embeddings (dim 0): %s", g_path,
		    semcache_strerror(SEMCACHE_ENOSEMANTIC));
		return RC_USAGE;
	}
	if (n != st.dim) {
		msg("embedding has %" PRIu32 " values, the segment's dim is %" PRIu32 ": %s", n,
		    st.dim, semcache_strerror(SEMCACHE_EDIM));
		return RC_USAGE;
	}
	return RC_OK;
}

/* A response record parsed from put's stdin.  Every string points into
 * `root`, which holds the normalised record until record_free(). */
struct record {
	json_t *root;
	semcache_response resp;
	semcache_tool_call *calls;
};

static void record_free(struct record *r)
{
	json_decref(r->root);
	free(r->calls);
}

static int bad_field(const char *field, const char *want)
{
	msg("record on stdin: \"%s\" %s", field, want);
	return RC_USAGE;
}

/* Non-string JSON (object, array, number, bool) becomes its compact text. */
static int stringify_in_place(json_t *obj, const char *key)
{
	json_t *v = json_object_get(obj, key);
	if (!v || json_is_string(v) || json_is_null(v))
		return 0;
	char *s = json_dumps(v, JSON_COMPACT | JSON_ENCODE_ANY);
	int rc = s ? json_object_set_new(obj, key, json_string(s)) : -1;
	free(s);
	return rc;
}

static int get_u32(json_t *obj, const char *key, const char *field, uint32_t *out)
{
	json_t *v = json_object_get(obj, key);
	*out = 0;
	if (!v || json_is_null(v))
		return RC_OK;
	if (!json_is_integer(v) || json_integer_value(v) < 0 ||
	    json_integer_value(v) > (json_int_t)UINT32_MAX)
		return bad_field(field, "must be an integer in 0..4294967295");
	*out = (uint32_t)json_integer_value(v);
	return RC_OK;
}

/* A string field: absent or null gives NULL; anything else is an error. */
static int get_str(json_t *obj, const char *key, const char *field, bool required,
                   const char **out)
{
	json_t *v = json_object_get(obj, key);
	*out = NULL;
	if (!v || json_is_null(v))
		return required ? bad_field(field, "is required (a string)") : RC_OK;
	if (!json_is_string(v))
		return bad_field(field, "must be a string");
	*out = json_string_value(v);
	return RC_OK;
}

static bool key_in(const char *key, const char *const *names)
{
	for (; *names; names++)
		if (!strcmp(key, *names))
			return true;
	return false;
}

static int unknown_fields(json_t *obj, const char *where, const char *const *names)
{
	const char *key;
	json_t *v;
	json_object_foreach(obj, key, v) {
		(void)v;
		if (!key_in(key, names)) {
			msg("record on stdin: unknown field \"%s%s%s\"", where, *where ? "." : "", key);
			return RC_USAGE;
		}
	}
	return RC_OK;
}

static int record_read(FILE *in, struct record *rec)
{
	static const char *const top_keys[] = { "content", "model", "usage", "tool_calls",
		"latency_ms", "finish_reason", "reasoning", "metadata", NULL };
	static const char *const usage_keys[] = { "prompt_tokens", "completion_tokens",
		"total_tokens", NULL };
	static const char *const call_keys[] = { "id", "name", "arguments", NULL };
	json_error_t je;
	json_t *root, *v;
	int rc;
	char field[64];

	memset(rec, 0, sizeof *rec);
	root = rec->root = json_loadf(in, JSON_REJECT_DUPLICATES, &je);
	if (!root) {
		msg("record on stdin is not valid JSON: %s (line %d, column %d)", je.text, je.line,
		    je.column);
		return RC_USAGE;
	}
	if (!json_is_object(root))
		return bad_field("(record)", "must be a JSON object");
	if ((rc = unknown_fields(root, "", top_keys)))
		return rc;

	/* Normalise first: replacing a value invalidates pointers into it. */
	if (stringify_in_place(root, "metadata"))
		goto nomem;
	v = json_object_get(root, "tool_calls");
	if (v && !json_is_null(v)) {
		size_t n = json_array_size(v);
		if (!json_is_array(v))
			return bad_field("tool_calls", "must be an array");
		if (n > MAX_TOOLCALLS)
			return bad_field("tool_calls", "has more than 1024 elements");
		for (size_t i = 0; i < n; i++) {
			json_t *tc = json_array_get(v, i);
			snprintf(field, sizeof field, "tool_calls[%zu]", i);
			if (!json_is_object(tc))
				return bad_field(field, "must be an object {id, name, arguments}");
			if ((rc = unknown_fields(tc, field, call_keys)))
				return rc;
			if (stringify_in_place(tc, "arguments"))
				goto nomem;
		}
		if (n && !(rec->calls = calloc(n, sizeof *rec->calls)))
			goto nomem;
		for (size_t i = 0; i < n; i++) {
			json_t *tc = json_array_get(v, i);
			semcache_tool_call *c = &rec->calls[i];
			snprintf(field, sizeof field, "tool_calls[%zu].id", i);
			if ((rc = get_str(tc, "id", field, false, &c->id)))
				return rc;
			snprintf(field, sizeof field, "tool_calls[%zu].name", i);
			if ((rc = get_str(tc, "name", field, false, &c->name)))
				return rc;
			snprintf(field, sizeof field, "tool_calls[%zu].arguments", i);
			if ((rc = get_str(tc, "arguments", field, false, &c->arguments)))
				return rc;
			if (!c->id) c->id = "";
			if (!c->name) c->name = "";
			if (!c->arguments) c->arguments = "";
		}
		rec->resp.tool_calls = rec->calls;
		rec->resp.n_tool_calls = (uint32_t)n;
	}

	if ((rc = get_str(root, "content", "content", true, &rec->resp.content)) ||
	    (rc = get_str(root, "model", "model", true, &rec->resp.model)) ||
	    (rc = get_str(root, "finish_reason", "finish_reason", false, &rec->resp.finish_reason)) ||
	    (rc = get_str(root, "reasoning", "reasoning", false, &rec->resp.reasoning)) ||
	    (rc = get_str(root, "metadata", "metadata", false, &rec->resp.metadata)) ||
	    (rc = get_u32(root, "latency_ms", "latency_ms", &rec->resp.latency_ms)))
		return rc;

	v = json_object_get(root, "usage");
	if (v && !json_is_null(v)) {
		uint32_t total;
		if (!json_is_object(v))
			return bad_field("usage", "must be an object {prompt_tokens, completion_tokens}");
		if ((rc = unknown_fields(v, "usage", usage_keys)) ||
		    (rc = get_u32(v, "prompt_tokens", "usage.prompt_tokens", &rec->resp.prompt_tokens)) ||
		    (rc = get_u32(v, "completion_tokens", "usage.completion_tokens",
		                  &rec->resp.completion_tokens)) ||
		    (rc = get_u32(v, "total_tokens", "usage.total_tokens", &total)))
			return rc;
	}
	return RC_OK;
nomem:
	msg("reading the record: %s", semcache_strerror(-ENOMEM));
	return RC_RUNTIME;
}

/* ------------------------------------------------------------------------
 * create / destroy
 * ---------------------------------------------------------------------- */
/* Create a segment at path (SEMCACHE_OPEN_EXCL in so), explaining refusals. */
static int create_at(const char *path, const semcache_options *so, semcache **c)
{
	char b1[32], b2[32];
	int err = semcache_open(path, so, c);
	if (err == -EEXIST) {
		msg("%s already exists: %s (--force replaces it)", path, semcache_strerror(err));
		return RC_RUNTIME;
	}
	if (err == -EINVAL) {
		/* The header does not list every rule; name the likely one. */
		lib_error(err, "the library refused these options");
		if (so->arena_bytes < 2 * (uint64_t)so->max_payload)
			fprintf(stderr, "hint: the arena (%s) must hold two records of --max-payload "
			        "(%s): raise --arena or lower --max-payload\n",
			        fmt_bytes(so->arena_bytes, b1), fmt_bytes(so->max_payload, b2));
		else if (so->max_payload < 64)
			fputs("hint: --max-payload must be at least 64 bytes\n", stderr);
		fputs("Try 'semcache create --help'.\n", stderr);
		return RC_USAGE;
	}
	if (err) {
		lib_error(err, "cannot create %s", path);
		return RC_RUNTIME;
	}
	return RC_OK;
}

/*
 * create --force.  The new segment is built beside the old one first, so
 * options the library refuses never cost the old segment; the old one is
 * then removed (refused while in use) and the new one linked into place.
 * link(2), unlike rename(2), fails instead of clobbering a segment another
 * process created at the path in between.
 */
static int replace_segment(const semcache_options *so, semcache **c)
{
	size_t len = strlen(g_path) + 32;
	char *tmp = malloc(len);
	int rc, err;
	if (!tmp) {
		msg("%s", semcache_strerror(-ENOMEM));
		return RC_RUNTIME;
	}
	/* an unpredictable name: nothing another user planted is reused (and
	 * the library refuses a symlink there anyway) */
	uint64_t r = 0;
	if (getrandom(&r, sizeof r, 0) != (ssize_t)sizeof r)
		r = (uint64_t)getpid() * 0x9e3779b97f4a7c15ull ^ (uint64_t)time(NULL);
	snprintf(tmp, len, "%s.new.%016llx", g_path, (unsigned long long)r);
	if ((rc = create_at(tmp, so, c)))
		goto out;
	semcache_close(*c);
	*c = NULL;
	rc = RC_RUNTIME;
	err = semcache_destroy(g_path, 0);
	if (err == -EBUSY) {
		msg("cannot replace %s: %s: processes still have it open "
		    "('semcache destroy --force' removes it regardless)", g_path,
		    semcache_strerror(err));
		goto drop;
	}
	if (err && err != -ENOENT) {
		lib_error(err, "cannot remove the existing %s", g_path);
		goto drop;
	}
	if (link(tmp, g_path) < 0) {
		err = -errno;
		lib_error(err, "cannot put the new segment in place at %s%s", g_path,
		          err == -EEXIST ? " (another process created one meanwhile)" : "");
		goto drop;
	}
	unlink(tmp);
	rc = open_segment(c, false);
	goto out;
drop:
	unlink(tmp);
out:
	free(tmp);
	return rc;
}

static int cmd_create(int argc, char **argv)
{
	enum { O_SLOTS, O_DIM, O_ARENA, O_BLOCK, O_PROCS, O_PAYLOAD, O_ETTL, O_STTL, O_THR,
	       O_QUANT, O_GROUP, O_FORCE, O_N };
	struct opt o[O_N] = {
		[O_SLOTS] = OPT("slots", true), [O_DIM] = OPT("dim", true),
		[O_ARENA] = OPT("arena", true), [O_BLOCK] = OPT("block-size", true),
		[O_PROCS] = OPT("max-procs", true), [O_PAYLOAD] = OPT("max-payload", true),
		[O_ETTL] = OPT("exact-ttl", true), [O_STTL] = OPT("semantic-ttl", true),
		[O_THR] = OPT("threshold", true), [O_QUANT] = OPT("quant", true),
		[O_GROUP] = OPT("group", false), [O_FORCE] = OPT("force", false),
	};
	const char *pos[1];
	size_t npos;
	semcache_options so;
	semcache_stats st;
	semcache *c = NULL;
	uint64_t v;
	int rc, err;
	char b1[32], b2[32];

	int pr = parse_opts(argc, argv, o, O_N, pos, 0, &npos);
	if (pr != PARSE_OK)
		return parse_result(pr);
	semcache_options_init(&so);
	if (o[O_SLOTS].seen) {
		if ((rc = parse_u64("slots", o[O_SLOTS].arg, false, 16, 1u << 26, &v)))
			return rc;
		so.slots = (uint32_t)v;
	}
	if (o[O_DIM].seen) {
		if ((rc = parse_u64("dim", o[O_DIM].arg, false, 0, 4096, &v)))
			return rc;
		so.dim = (uint32_t)v;
	}
	if (o[O_ARENA].seen) {
		if ((rc = parse_u64("arena", o[O_ARENA].arg, true, 1, UINT64_MAX, &v)))
			return rc;
		so.arena_bytes = v;
	}
	if (o[O_BLOCK].seen) {
		if ((rc = parse_u64("block-size", o[O_BLOCK].arg, true, 64, 65536, &v)))
			return rc;
		if (v & (v - 1))
			return usage_error("--block-size: %" PRIu64 " is not a power of two", v);
		so.block_size = (uint32_t)v;
	}
	if (o[O_PROCS].seen) {
		if ((rc = parse_u64("max-procs", o[O_PROCS].arg, false, 1, 4096, &v)))
			return rc;
		so.max_procs = (uint32_t)v;
	}
	if (o[O_PAYLOAD].seen) {
		if ((rc = parse_u64("max-payload", o[O_PAYLOAD].arg, true, 1, UINT32_MAX, &v)))
			return rc;
		so.max_payload = (uint32_t)v;
	}
	if (o[O_ETTL].seen && (rc = parse_seconds("exact-ttl", o[O_ETTL].arg, &so.exact_ttl_ms)))
		return rc;
	if (o[O_STTL].seen &&
	    (rc = parse_seconds("semantic-ttl", o[O_STTL].arg, &so.semantic_ttl_ms)))
		return rc;
	if (o[O_THR].seen && (rc = parse_threshold("threshold", o[O_THR].arg, &so.threshold)))
		return rc;
	if (o[O_QUANT].seen) {
		const char *q = o[O_QUANT].arg;
		if (!strcmp(q, "int8"))
			so.flags |= SEMCACHE_QUANT_INT8;
		else if (!strcmp(q, "bits"))
			so.flags |= SEMCACHE_QUANT_BITS;
		else if (strcmp(q, "none"))
			return usage_error("--quant: '%s' is not one of none, int8, bits", q);
		if (so.dim == 0 && strcmp(q, "none"))
			return usage_error("--quant %s needs embeddings (--dim > 0)", q);
	}
	if (so.arena_bytes < so.block_size)
		return usage_error("--arena must hold at least one block (%" PRIu32 " bytes)",
		                   so.block_size);
	if (o[O_GROUP].seen) {
		so.flags |= SEMCACHE_OPEN_GROUP;
		g_group = true;
	}
	so.flags |= SEMCACHE_OPEN_EXCL;

	if (!o[O_FORCE].seen) {
		if ((rc = create_at(g_path, &so, &c)))
			return rc;
	} else if ((rc = replace_segment(&so, &c))) {
		return rc;
	}
	rc = RC_OK;
	if ((err = semcache_stat(c, &st)) == 0) {
		printf("created %s: %" PRIu32 " slots, dim %" PRIu32 ", arena %s, segment %s, "
		       "quant %s\n", g_path, st.slots, st.dim, fmt_bytes(st.arena_bytes, b1),
		       fmt_bytes(st.segment_bytes, b2), quant_name(st.quant));
	} else {
		lib_error(err, "created %s, but cannot read it back", g_path);
		rc = RC_RUNTIME;
	}
	semcache_close(c);
	return rc;
}

static int cmd_destroy(int argc, char **argv)
{
	struct opt o[] = { OPT("force", false) };
	const char *pos[1];
	size_t npos;
	int pr = parse_opts(argc, argv, o, 1, pos, 0, &npos);
	if (pr != PARSE_OK)
		return parse_result(pr);
	int err = semcache_destroy(g_path, o[0].seen);
	if (err == -EBUSY) {
		msg("%s: %s: processes have it open (--force removes it anyway; they keep "
		    "their mapping until they detach)", g_path, semcache_strerror(err));
		return RC_RUNTIME;
	}
	if (err) {
		lib_error(err, "cannot destroy %s", g_path);
		return RC_RUNTIME;
	}
	printf("destroyed %s\n", g_path);
	return RC_OK;
}

/* ------------------------------------------------------------------------
 * stat
 * ---------------------------------------------------------------------- */
struct snapshot {
	semcache_stats st;
	semcache_tier_stats tier;
	semcache_proc_info *procs;
	size_t nprocs, cap;
	int64_t taken_ms;
};

static int take_snapshot(semcache *c, struct snapshot *s)
{
	int err = semcache_stat(c, &s->st);
	if (err) {
		lib_error(err, "cannot read statistics of %s", g_path);
		return RC_RUNTIME;
	}
	if (s->cap < s->st.max_procs) {
		free(s->procs);
		s->cap = 0;
		if (!(s->procs = calloc(s->st.max_procs, sizeof *s->procs))) {
			msg("%s", semcache_strerror(-ENOMEM));
			return RC_RUNTIME;
		}
		s->cap = s->st.max_procs;
	}
	err = semcache_procs(c, s->procs, s->cap, &s->nprocs);
	if (err) {
		lib_error(err, "cannot read the process table of %s", g_path);
		return RC_RUNTIME;
	}
	if ((err = semcache_tier_stat(c, &s->tier))) {
		lib_error(err, "cannot read the second tier's state of %s", g_path);
		return RC_RUNTIME;
	}
	s->taken_ms = now_ms();
	return RC_OK;
}

static void pct(FILE *f, double r)
{
	if (r < 0)
		fputs("-", f);
	else
		fprintf(f, "%.1f %%", r * 100.0);
}

static void print_tier_text(FILE *f, const semcache_tier_stats *t)
{
	char a[32];
#define TROW(label, ...) (fprintf(f, "  %-22s", label), fprintf(f, __VA_ARGS__), fputc('\n', f))
	if (!t->configured) {
		fputs("second tier: none (no tier was started on this segment)\n", f);
		return;
	}
	fputs("second tier (Redis)\n", f);
	if (t->since_ms)
		TROW("state", "%s since %s", t->state_name, fmt_utc(t->since_ms, a));
	else
		TROW("state", "%s", t->state_name);
	if (t->syncer_pid)
		TROW("syncer", "pid %" PRId32 "%s, lease epoch %" PRIu64, t->syncer_pid,
		     t->syncer_alive ? "" : " (heartbeat stale)", t->epoch);
	else
		TROW("syncer", "none running (lease epoch %" PRIu64 ")", t->epoch);
	if (t->last_error) {
		fprintf(f, "  %-22s%s at %s: ", "last error", t->last_error_class,
		        fmt_utc(t->last_error_ms, a));
		put_esc(f, t->last_error_text);
		fputc('\n', f);
	} else {
		TROW("last error", "-");
	}
	TROW("last acknowledged", "%s", t->last_ok_ms ? fmt_utc(t->last_ok_ms, a) : "never");
	TROW("lag", "%" PRId64 " ms (enqueue to acknowledged, last item)", t->lag_ms);
	TROW("outbox", "%" PRIu64 " of %" PRIu64 " items waiting", t->outbox_depth,
	     t->outbox_capacity);
	TROW("dropped", "%" PRIu64 " puts (re-exported by a sweep), %" PRIu64 " deletions lost%s",
	     t->dropped, t->deletes_lost, t->resync_needed ? " (RESYNC NEEDED)" : "");
	TROW("exported", "%" PRIu64 " entries (%" PRIu64 " by sweeps), %" PRIu64 " deletions",
	     t->exported, t->swept, t->deleted);
	TROW("imported", "%" PRIu64 " entries (%" PRIu64 " by read-through), %" PRIu64
	     " deletions, %" PRIu64 " rejected", t->imported, t->read_through, t->import_deleted,
	     t->import_rejected);
	TROW("seed skipped", "%" PRIu64 " entries and deletions kept local (seed format)",
	     t->seed_skipped);
	TROW("index pass", "%" PRIu64 " members trimmed, %" PRIu64 " gaps in the events, %" PRIu64
	     " resyncs deleting %" PRIu64 " entries", t->index_trimmed, t->import_gaps, t->resyncs,
	     t->resync_deleted);
	TROW("reconnects", "%" PRIu64 ", takeovers %" PRIu64, t->reconnects, t->takeovers);
#undef TROW
}

static void print_stat_text(FILE *f, const struct snapshot *s)
{
	const semcache_stats *st = &s->st;
	const semcache_counters *t = &st->total;
	char a[32], b[32];
#define ROW(label, ...) (fprintf(f, "  %-22s", label), fprintf(f, __VA_ARGS__), fputc('\n', f))

	fputs("segment\n", f);
	fprintf(f, "  %-22s", "path");
	put_esc(f, g_path);
	fputc('\n', f);
	ROW("created", "%s (%s ago)", fmt_utc((int64_t)st->created_ms, a),
	    fmt_dur(s->taken_ms - (int64_t)st->created_ms, b));
	fputs("geometry\n", f);
	ROW("slots", "%" PRIu32, st->slots);
	ROW("dim", "%" PRIu32 "%s", st->dim, st->dim ? "" : " (no embeddings)");
	ROW("block size", "%" PRIu32 " B", st->block_size);
	ROW("arena", "%s (%" PRIu64 " B)", fmt_bytes(st->arena_bytes, a), st->arena_bytes);
	ROW("segment", "%s (%" PRIu64 " B)", fmt_bytes(st->segment_bytes, a), st->segment_bytes);
	ROW("max procs", "%" PRIu32, st->max_procs);
	ROW("max payload", "%s", fmt_bytes(st->max_payload, a));
	ROW("quantisation", "%s", quant_name(st->quant));
	fputs("config\n", f);
	ROW("exact ttl", "%s", fmt_dur(st->exact_ttl_ms, a));
	ROW("semantic ttl", "%s", fmt_dur(st->semantic_ttl_ms, a));
	ROW("threshold", "%.4g", (double)st->threshold);
	fputs("memory\n", f);
	ROW("blocks", "%" PRIu64 " used, %" PRIu64 " free, %" PRIu64 " limbo, %" PRIu64 " total",
	    st->blocks_used, st->blocks_free, st->blocks_limbo, st->blocks_total);
	ROW("bytes", "%s used, %s free", fmt_bytes(st->bytes_used, a),
	    fmt_bytes(st->bytes_free, b));
	fputs("entries\n", f);
	ROW("entries / slots", "%" PRIu64 " / %" PRIu32 " (%.1f %%)", st->entries, st->slots,
	    st->slots ? 100.0 * (double)st->entries / st->slots : 0.0);
	fputs("lookups\n", f);
	fprintf(f, "  %-22s%" PRIu64 " hits, %" PRIu64 " misses, hit ratio ", "exact", t->hits,
	        t->misses);
	pct(f, ratio(t->hits, t->misses));
	fprintf(f, "\n  %-22s%" PRIu64 " hits, %" PRIu64 " misses, hit ratio ", "semantic",
	        t->sem_hits, t->sem_misses);
	pct(f, ratio(t->sem_hits, t->sem_misses));
	fputc('\n', f);
	if (t->sem_miss_best < -1.5f)
		ROW("best miss similarity", "-");
	else
		ROW("best miss similarity", "%.4f", (double)t->sem_miss_best);
	fputs("writes\n", f);
	ROW("puts", "%" PRIu64, t->puts);
	ROW("evictions", "%" PRIu64, t->evictions);
	ROW("expirations", "%" PRIu64, t->expirations);
	ROW("invalidations", "%" PRIu64, t->invalidations);
	ROW("deletes", "%" PRIu64, t->deletes);
	ROW("repairs", "%" PRIu64, st->repairs);
	print_tier_text(f, &s->tier);
#undef ROW

	fprintf(f, "processes (%zu attached of %" PRIu32 ", * = this command)\n", s->nprocs,
	        st->max_procs);
	fprintf(f, "  %5s %-10s %-5s %-7s %12s %12s %12s %12s\n", "INDEX", "PID", "ALIVE", "PINS",
	        "HITS", "MISSES", "SEM_HITS", "PUTS");
	for (size_t i = 0; i < s->nprocs; i++) {
		const semcache_proc_info *p = &s->procs[i];
		char pid[24];
		snprintf(pid, sizeof pid, "%" PRId32 "%s", p->pid, p->self ? "*" : "");
		fprintf(f, "  %5" PRIu32 " %-10s %-5s %-7" PRIu32 " %12" PRIu64 " %12" PRIu64 " %12" PRIu64
		        " %12" PRIu64 "\n", p->index, pid, p->alive ? "yes" : "no",
		        p->pins, p->counters.hits, p->counters.misses,
		        p->counters.sem_hits, p->counters.puts);
	}
}

static json_t *lookups_json(uint64_t hits, uint64_t misses)
{
	json_t *o = json_object();
	if (!o)
		return NULL;
	int bad = jput(o, "hits", jint(hits)) | jput(o, "misses", jint(misses)) |
	          jput(o, "hit_ratio", jreal_or_null(ratio(hits, misses), 0.0));
	if (bad) {
		json_decref(o);
		return NULL;
	}
	return o;
}

static json_t *tier_json(const semcache_tier_stats *t);

static json_t *stat_json(const struct snapshot *s)
{
	const semcache_stats *st = &s->st;
	const semcache_counters *t = &st->total;
	json_t *o = json_object(), *geo = json_object(), *cfg = json_object(),
	       *mem = json_object(), *procs = json_array(), *sem = NULL;
	int bad = !o || !geo || !cfg || !mem || !procs;
	if (bad)
		goto out;
	bad |= jput(geo, "slots", jint(st->slots));
	bad |= jput(geo, "dim", jint(st->dim));
	bad |= jput(geo, "block_size", jint(st->block_size));
	bad |= jput(geo, "arena_bytes", jint(st->arena_bytes));
	bad |= jput(geo, "segment_bytes", jint(st->segment_bytes));
	bad |= jput(geo, "max_procs", jint(st->max_procs));
	bad |= jput(geo, "max_payload", jint(st->max_payload));
	bad |= jput(geo, "quant", jstr(quant_name(st->quant)));
	bad |= jput(cfg, "exact_ttl_ms", json_integer(st->exact_ttl_ms));
	bad |= jput(cfg, "semantic_ttl_ms", json_integer(st->semantic_ttl_ms));
	bad |= jput(cfg, "threshold", json_real(st->threshold));
	bad |= jput(mem, "blocks_total", jint(st->blocks_total));
	bad |= jput(mem, "blocks_used", jint(st->blocks_used));
	bad |= jput(mem, "blocks_free", jint(st->blocks_free));
	bad |= jput(mem, "blocks_limbo", jint(st->blocks_limbo));
	bad |= jput(mem, "bytes_used", jint(st->bytes_used));
	bad |= jput(mem, "bytes_free", jint(st->bytes_free));
	for (size_t i = 0; !bad && i < s->nprocs; i++) {
		const semcache_proc_info *p = &s->procs[i];
		json_t *j = json_object();
		bad |= !j;
		if (!j)
			break;
		bad |= jput(j, "index", jint(p->index));
		bad |= jput(j, "pid", json_integer(p->pid));
		bad |= jput(j, "self", json_boolean(p->self));
		bad |= jput(j, "attached_ms", json_integer(p->attached_ms));
		bad |= jput(j, "alive", json_boolean(p->alive));
		bad |= jput(j, "pins", jint(p->pins));
		bad |= jput(j, "hits", jint(p->counters.hits));
		bad |= jput(j, "misses", jint(p->counters.misses));
		bad |= jput(j, "sem_hits", jint(p->counters.sem_hits));
		bad |= jput(j, "sem_misses", jint(p->counters.sem_misses));
		bad |= jput(j, "puts", jint(p->counters.puts));
		bad |= jput(j, "evictions", jint(p->counters.evictions));
		bad |= jput(j, "expirations", jint(p->counters.expirations));
		bad |= jput(j, "invalidations", jint(p->counters.invalidations));
		bad |= jput(j, "deletes", jint(p->counters.deletes));
		bad |= json_array_append_new(procs, j);
	}
	sem = lookups_json(t->sem_hits, t->sem_misses);
	if (sem)
		bad |= jput(sem, "best_miss_similarity",
		            jreal_or_null(t->sem_miss_best, -1.5));
	bad |= jput(o, "path", jstr(g_path));
	bad |= jput(o, "version", jstr(semcache_version(NULL, NULL, NULL)));
	bad |= jput(o, "time_ms", json_integer(s->taken_ms));
	bad |= jput(o, "created_ms", jint(st->created_ms));
	bad |= jput(o, "geometry", geo);
	bad |= jput(o, "config", cfg);
	bad |= jput(o, "memory", mem);
	geo = cfg = mem = NULL;
	bad |= jput(o, "entries", jint(st->entries));
	bad |= jput(o, "slots", jint(st->slots));
	bad |= jput(o, "exact", lookups_json(t->hits, t->misses));
	bad |= jput(o, "semantic", sem);
	bad |= jput(o, "puts", jint(t->puts));
	bad |= jput(o, "evictions", jint(t->evictions));
	bad |= jput(o, "expirations", jint(t->expirations));
	bad |= jput(o, "invalidations", jint(t->invalidations));
	bad |= jput(o, "deletes", jint(t->deletes));
	bad |= jput(o, "repairs", jint(st->repairs));
	bad |= jput(o, "procs_attached", jint(st->procs_attached));
	bad |= jput(o, "procs", procs);
	procs = NULL;
	bad |= jput(o, "second_tier", tier_json(&s->tier));
out:
	json_decref(geo);
	json_decref(cfg);
	json_decref(mem);
	json_decref(procs);
	if (bad) {
		json_decref(o);
		return NULL;
	}
	return o;
}

static json_t *tier_json(const semcache_tier_stats *t)
{
	if (!t->configured)
		return json_null();
	json_t *o = json_object();
	if (!o)
		return NULL;
	int bad = 0;
	bad |= jput(o, "state", jstr(t->state_name));
	bad |= jput(o, "since_ms", json_integer(t->since_ms));
	bad |= jput(o, "syncer_pid", t->syncer_pid ? json_integer(t->syncer_pid) : json_null());
	bad |= jput(o, "syncer_alive", json_boolean(t->syncer_alive));
	bad |= jput(o, "epoch", jint(t->epoch));
	bad |= jput(o, "last_error", t->last_error ? jstr(t->last_error_class) : json_null());
	bad |= jput(o, "last_error_text", jstr(t->last_error_text));
	bad |= jput(o, "last_error_ms", json_integer(t->last_error_ms));
	bad |= jput(o, "last_ok_ms", json_integer(t->last_ok_ms));
	bad |= jput(o, "lag_ms", json_integer(t->lag_ms));
	bad |= jput(o, "outbox_depth", jint(t->outbox_depth));
	bad |= jput(o, "outbox_capacity", jint(t->outbox_capacity));
	bad |= jput(o, "dropped", jint(t->dropped));
	bad |= jput(o, "deletes_lost", jint(t->deletes_lost));
	bad |= jput(o, "resync_needed", json_boolean(t->resync_needed));
	bad |= jput(o, "exported", jint(t->exported));
	bad |= jput(o, "swept", jint(t->swept));
	bad |= jput(o, "deleted", jint(t->deleted));
	bad |= jput(o, "imported", jint(t->imported));
	bad |= jput(o, "import_deleted", jint(t->import_deleted));
	bad |= jput(o, "import_rejected", jint(t->import_rejected));
	bad |= jput(o, "read_through", jint(t->read_through));
	bad |= jput(o, "seed_skipped", jint(t->seed_skipped));
	bad |= jput(o, "index_trimmed", jint(t->index_trimmed));
	bad |= jput(o, "import_gaps", jint(t->import_gaps));
	bad |= jput(o, "resyncs", jint(t->resyncs));
	bad |= jput(o, "resync_deleted", jint(t->resync_deleted));
	bad |= jput(o, "reconnects", jint(t->reconnects));
	bad |= jput(o, "takeovers", jint(t->takeovers));
	if (bad) {
		json_decref(o);
		return NULL;
	}
	return o;
}

/* Prometheus text exposition format, version 0.0.4. */
static void prom_family(FILE *f, const char *name, const char *type, const char *help)
{
	fprintf(f, "# HELP semcache_%s %s\n# TYPE semcache_%s %s\n", name, help, name, type);
}

static void prom_u64(FILE *f, const char *name, const char *type, const char *help, uint64_t v)
{
	prom_family(f, name, type, help);
	fprintf(f, "semcache_%s %" PRIu64 "\n", name, v);
}

static void prom_real(FILE *f, const char *name, const char *help, double v)
{
	prom_family(f, name, "gauge", help);
	if (isfinite(v))
		fprintf(f, "semcache_%s %.9g\n", name, v);
	else
		fprintf(f, "semcache_%s NaN\n", name);
}

static void prom_label_value(FILE *f, const char *s)
{
	for (; *s; s++) {
		if (*s == '\\' || *s == '"')
			fprintf(f, "\\%c", *s);
		else if (*s == '\n')
			fputs("\\n", f);
		else
			fputc(*s, f);
	}
}

static void print_stat_prom(FILE *f, const struct snapshot *s)
{
	const semcache_stats *st = &s->st;
	const semcache_counters *t = &st->total;

	prom_family(f, "info", "gauge", "Segment identity; the value is always 1.");
	fputs("semcache_info{path=\"", f);
	prom_label_value(f, g_path);
	fprintf(f, "\",version=\"%s\",quant=\"%s\"} 1\n", semcache_version(NULL, NULL, NULL),
	        quant_name(st->quant));
	prom_u64(f, "slots", "gauge", "Entry capacity of the segment.", st->slots);
	prom_u64(f, "dim", "gauge", "Embedding dimension (0 = no embeddings).", st->dim);
	prom_u64(f, "block_size_bytes", "gauge", "Payload block size.", st->block_size);
	prom_u64(f, "arena_bytes", "gauge", "Payload arena size.", st->arena_bytes);
	prom_u64(f, "segment_bytes", "gauge", "Size of the segment file.", st->segment_bytes);
	prom_u64(f, "max_procs", "gauge", "Process records in the segment.", st->max_procs);
	prom_u64(f, "max_payload_bytes", "gauge", "Largest encoded record accepted.",
	         st->max_payload);
	prom_real(f, "exact_ttl_seconds", "Default exact TTL.", (double)st->exact_ttl_ms / 1000.0);
	prom_real(f, "semantic_ttl_seconds", "Default semantic TTL.",
	          (double)st->semantic_ttl_ms / 1000.0);
	prom_real(f, "threshold", "Default similarity threshold.", st->threshold);
	prom_real(f, "created_timestamp_seconds", "When the segment was created.",
	          (double)st->created_ms / 1000.0);
	prom_u64(f, "entries", "gauge", "Live entries.", st->entries);
	prom_family(f, "arena_blocks", "gauge", "Payload blocks by state.");
	fprintf(f, "semcache_arena_blocks{state=\"used\"} %" PRIu64 "\n", st->blocks_used);
	fprintf(f, "semcache_arena_blocks{state=\"free\"} %" PRIu64 "\n", st->blocks_free);
	fprintf(f, "semcache_arena_blocks{state=\"limbo\"} %" PRIu64 "\n", st->blocks_limbo);
	prom_u64(f, "arena_used_bytes", "gauge", "Arena bytes holding records.", st->bytes_used);
	prom_u64(f, "arena_free_bytes", "gauge", "Arena bytes free.", st->bytes_free);
	prom_u64(f, "procs_attached", "gauge", "Process records in use.", st->procs_attached);
	prom_u64(f, "repairs_total", "counter", "Repairs after a writer died or damage was found.",
	         st->repairs);
	prom_u64(f, "exact_hits_total", "counter", "Exact lookups that hit.", t->hits);
	prom_u64(f, "exact_misses_total", "counter", "Exact lookups that missed.", t->misses);
	prom_u64(f, "semantic_hits_total", "counter", "Semantic lookups that hit.", t->sem_hits);
	prom_u64(f, "semantic_misses_total", "counter", "Semantic lookups that missed.",
	         t->sem_misses);
	prom_u64(f, "puts_total", "counter", "Entries stored.", t->puts);
	prom_u64(f, "evictions_total", "counter", "Entries evicted for room.", t->evictions);
	prom_u64(f, "expirations_total", "counter", "Entries reclaimed after their TTLs.",
	         t->expirations);
	prom_u64(f, "invalidations_total", "counter", "Entries removed by invalidation.",
	         t->invalidations);
	prom_u64(f, "deletes_total", "counter", "Entries removed one by one (delete).",
	         t->deletes);
	prom_real(f, "semantic_miss_best_similarity",
	          "Best similarity seen on a semantic miss (NaN = none yet).",
	          t->sem_miss_best < -1.5f ? NAN : (double)t->sem_miss_best);

	const semcache_tier_stats *tt = &s->tier;
	prom_family(f, "tier_state", "gauge", "Second tier state; 1 on the current one.");
	static const char *const states[] = { "off", "connecting", "up", "degraded" };
	for (int i = 0; i < 4; i++)
		fprintf(f, "semcache_tier_state{state=\"%s\"} %d\n", states[i], tt->state == i);
	prom_u64(f, "tier_configured", "gauge", "1 once a tier was started on the segment.",
	         (uint64_t)tt->configured);
	prom_real(f, "tier_state_since_timestamp_seconds", "When the tier entered its state.",
	          (double)tt->since_ms / 1000.0);
	prom_real(f, "tier_last_ok_timestamp_seconds", "Last batch Redis acknowledged.",
	          (double)tt->last_ok_ms / 1000.0);
	prom_real(f, "tier_lag_seconds", "Enqueue-to-acknowledged time of the last item.",
	          (double)tt->lag_ms / 1000.0);
	prom_u64(f, "tier_outbox_depth", "gauge", "Outbox items waiting for Redis.",
	         tt->outbox_depth);
	prom_u64(f, "tier_outbox_capacity", "gauge", "Outbox items the segment holds.",
	         tt->outbox_capacity);
	prom_u64(f, "tier_dropped_total", "counter", "Puts dropped on a full outbox.", tt->dropped);
	prom_u64(f, "tier_deletes_lost_total", "counter", "Deletions that found the outbox full.",
	         tt->deletes_lost);
	prom_u64(f, "tier_exported_total", "counter", "Entries written to Redis.", tt->exported);
	prom_u64(f, "tier_deleted_total", "counter", "Deletions written to Redis.", tt->deleted);
	prom_u64(f, "tier_imported_total", "counter", "Other hosts' entries installed.",
	         tt->imported);
	prom_u64(f, "tier_import_rejected_total", "counter", "Values from Redis refused.",
	         tt->import_rejected);
	prom_u64(f, "tier_reconnects_total", "counter", "Reconnections to Redis.", tt->reconnects);
	prom_u64(f, "tier_read_through_total", "counter", "Exact misses answered from Redis.",
	         tt->read_through);
	prom_u64(f, "tier_seed_skipped_total", "counter",
	         "Seed format: entries and deletions kept local.", tt->seed_skipped);
	prom_u64(f, "tier_index_trimmed_total", "counter",
	         "Index members of entries gone from Redis, removed.", tt->index_trimmed);
	prom_u64(f, "tier_import_gaps_total", "counter",
	         "Events trimmed from the stream before they were read.", tt->import_gaps);
	prom_u64(f, "tier_resyncs_total", "counter", "Resync passes completed.", tt->resyncs);
	prom_u64(f, "tier_resync_deleted_total", "counter",
	         "Entries deleted from Redis by resync passes.", tt->resync_deleted);
	prom_family(f, "tier_last_error", "gauge", "Class of the last tier failure (value 1).");
	fprintf(f, "semcache_tier_last_error{class=\"%s\"} 1\n", tt->last_error_class);

	static const struct {
		const char *name, *type, *help;
	} per[] = {
		{ "process_alive", "gauge", "1 if the process owning the record exists." },
		{ "process_pins", "gauge", "Zero-copy references the process holds." },
		{ "process_exact_hits_total", "counter", "Exact hits of the process." },
		{ "process_exact_misses_total", "counter", "Exact misses of the process." },
		{ "process_semantic_hits_total", "counter", "Semantic hits of the process." },
		{ "process_semantic_misses_total", "counter", "Semantic misses of the process." },
		{ "process_puts_total", "counter", "Puts of the process." },
	};
	for (size_t m = 0; m < sizeof per / sizeof per[0]; m++) {
		prom_family(f, per[m].name, per[m].type, per[m].help);
		for (size_t i = 0; i < s->nprocs; i++) {
			const semcache_proc_info *p = &s->procs[i];
			const semcache_counters *pc = &p->counters;
			uint64_t v = m == 0 ? (uint64_t)(p->alive != 0)
			           : m == 1 ? (uint64_t)p->pins
			           : m == 2 ? pc->hits : m == 3 ? pc->misses : m == 4 ? pc->sem_hits
			           : m == 5 ? pc->sem_misses : pc->puts;
			fprintf(f, "semcache_%s{pid=\"%" PRId32 "\",index=\"%" PRIu32 "\"} %" PRIu64 "\n",
			        per[m].name, p->pid, p->index, v);
		}
	}
}

static void on_signal(int sig)
{
	(void)sig;
	g_stop = 1;
}

/* Sleep ms, returning early when a signal asks to stop. */
static void nap(int64_t ms)
{
	struct timespec ts = { (time_t)(ms / 1000), (long)(ms % 1000) * 1000000L };
	while (!g_stop && nanosleep(&ts, &ts) < 0 && errno == EINTR)
		;
}

static int cmd_stat(int argc, char **argv)
{
	enum { O_JSON, O_PROM, O_WATCH, O_N };
	struct opt o[O_N] = {
		[O_JSON] = OPT("json", false), [O_PROM] = OPT("prometheus", false),
		[O_WATCH] = OPT("watch", true),
	};
	const char *pos[1];
	size_t npos;
	int64_t every = 0;
	struct snapshot snap = { 0 };
	semcache *c = NULL;
	int rc;
	bool tty = isatty(STDOUT_FILENO);

	int pr = parse_opts(argc, argv, o, O_N, pos, 0, &npos);
	if (pr != PARSE_OK)
		return parse_result(pr);
	if (o[O_JSON].seen && o[O_PROM].seen)
		return usage_error("--json and --prometheus exclude each other");
	if (o[O_WATCH].seen && (rc = parse_seconds("watch", o[O_WATCH].arg, &every)))
		return rc;
	if (every) {
		struct sigaction sa;
		memset(&sa, 0, sizeof sa);
		sa.sa_handler = on_signal; /* no SA_RESTART: the nap must end */
		sigemptyset(&sa.sa_mask);
		sigaction(SIGINT, &sa, NULL);
		sigaction(SIGTERM, &sa, NULL);
	}
	if ((rc = open_segment(&c, true)))
		return rc;
	for (;;) {
		if ((rc = take_snapshot(c, &snap)))
			break;
		if (every && tty)
			fputs("\033[H\033[2J", stdout);
		if (o[O_JSON].seen) {
			json_t *j = stat_json(&snap);
			rc = print_json(j, every ? JSON_ONE_LINE : JSON_PRETTY);
			json_decref(j);
			if (rc)
				break;
		} else if (o[O_PROM].seen) {
			print_stat_prom(stdout, &snap);
		} else {
			char when[32];
			if (every)
				printf("semcache stat, %s, every %.3gs (interrupt to stop)\n",
				       fmt_utc(snap.taken_ms, when), (double)every / 1000.0);
			print_stat_text(stdout, &snap);
			if (every && !tty)
				fputc('\n', stdout);
		}
		fflush(stdout);
		if (!every || g_stop)
			break;
		nap(every);
		if (g_stop)
			break;
	}
	free(snap.procs);
	semcache_close(c);
	return rc;
}

/* ------------------------------------------------------------------------
 * sync: the tier's syncer as a sidecar process
 * ---------------------------------------------------------------------- */
/* A deadline option in seconds, if given, as 1..600000 ms (0 would mean
 * the library's default, so a tiny one rounds up to 1 ms). */
static int parse_deadline(const struct opt *o, uint32_t *ms_out)
{
	int64_t ms;
	int rc;

	if (!o->seen)
		return 0;
	if ((rc = parse_seconds(o->name, o->arg, &ms)))
		return rc;
	*ms_out = ms > 600000 ? 600000 : (uint32_t)(ms ? ms : 1);
	return 0;
}

static int cmd_sync(int argc, char **argv)
{
	enum { O_HOST, O_PORT, O_UNIX, O_USER, O_PASS, O_DB, O_PREFIX, O_CTO, O_TO, O_BATCH,
	       O_WARM, O_FORMAT, O_SEEDNS, O_N };
	struct opt o[O_N] = {
		[O_HOST] = OPT("host", true), [O_PORT] = OPT("port", true),
		[O_UNIX] = OPT("unix", true), [O_USER] = OPT("user", true),
		[O_PASS] = OPT("password-env", true), [O_DB] = OPT("db", true),
		[O_PREFIX] = OPT("prefix", true), [O_CTO] = OPT("connect-timeout", true),
		[O_TO] = OPT("command-timeout", true), [O_BATCH] = OPT("batch", true),
		[O_WARM] = OPT("warmup", true), [O_FORMAT] = OPT("format", true),
		[O_SEEDNS] = OPT("seed-namespace", true),
	};
	const char *pos[1];
	size_t npos;
	semcache_tier_options to;
	semcache *c = NULL;
	uint64_t v;
	int rc, err;

	int pr = parse_opts(argc, argv, o, O_N, pos, 0, &npos);
	if (pr != PARSE_OK)
		return parse_result(pr);
	semcache_tier_options_init(&to);
	to.host = o[O_HOST].seen ? o[O_HOST].arg : NULL;
	to.unix_path = o[O_UNIX].seen ? o[O_UNIX].arg : NULL;
	to.username = o[O_USER].seen ? o[O_USER].arg : NULL;
	to.prefix = o[O_PREFIX].seen ? o[O_PREFIX].arg : NULL;
	if (o[O_PASS].seen) {
		/* from the environment, so it is not in the process list */
		to.password = getenv(o[O_PASS].arg);
		if (!to.password)
			return usage_error("--password-env: %s is not set", o[O_PASS].arg);
	}
	if (o[O_PORT].seen) {
		if ((rc = parse_u64("port", o[O_PORT].arg, false, 1, 65535, &v)))
			return rc;
		to.port = (int)v;
	}
	if (o[O_DB].seen) {
		if ((rc = parse_u64("db", o[O_DB].arg, false, 0, 65535, &v)))
			return rc;
		to.db = (int)v;
	}
	if (o[O_BATCH].seen) {
		if ((rc = parse_u64("batch", o[O_BATCH].arg, false, 1, 1024, &v)))
			return rc;
		to.batch = (uint32_t)v;
	}
	if (o[O_WARM].seen) {
		if ((rc = parse_u64("warmup", o[O_WARM].arg, false, 1, 100000, &v)))
			return rc;
		to.warmup = (uint32_t)v;
	}
	if ((rc = parse_deadline(&o[O_CTO], &to.connect_timeout_ms)) ||
	    (rc = parse_deadline(&o[O_TO], &to.command_timeout_ms)))
		return rc;
	if (to.prefix && (strlen(to.prefix) > 64 || strpbrk(to.prefix, " \t\r\n")))
		return usage_error("--prefix: at most 64 printable bytes without space");
	if (o[O_FORMAT].seen) {
		if (!strcmp(o[O_FORMAT].arg, "native"))
			to.format = SEMCACHE_TIER_NATIVE;
		else if (!strcmp(o[O_FORMAT].arg, "seed"))
			to.format = SEMCACHE_TIER_SEED;
		else
			return usage_error("--format: 'native' or 'seed', not '%s'", o[O_FORMAT].arg);
	}
	if (o[O_SEEDNS].seen) {
		/* Any string is a namespace to the library (the empty one too),
		 * so there is nothing more to check; the native format would
		 * silently ignore it, which would hide a mistake. */
		if (to.format != SEMCACHE_TIER_SEED)
			return usage_error("--seed-namespace needs --format seed");
		to.seed_namespace = o[O_SEEDNS].arg;
	}

	struct sigaction sa;
	memset(&sa, 0, sizeof sa);
	sa.sa_handler = on_signal; /* no SA_RESTART: the nap must end */
	sigemptyset(&sa.sa_mask);
	sigaction(SIGINT, &sa, NULL);
	sigaction(SIGTERM, &sa, NULL);
	if ((rc = open_segment(&c, false)))
		return rc;
	if ((err = semcache_tier_start(c, &to))) {
		semcache_close(c);
		if (err == -EINVAL)
			return usage_error("bad tier options (see 'semcache help sync')");
		lib_error(err, "cannot start the syncer on %s", g_path);
		return RC_RUNTIME;
	}
	msg("syncing %s with Redis (interrupt to stop)", g_path);
	int last = -1;
	while (!g_stop) {
		semcache_tier_stats st;
		if (semcache_tier_stat(c, &st) == 0 && st.state != last) {
			char a[32];
			if (st.state == SEMCACHE_TIER_DEGRADED)
				msg("%s: tier %s (%s: %s)", fmt_utc(now_ms(), a), st.state_name,
				    st.last_error_class, st.last_error_text);
			else
				msg("%s: tier %s", fmt_utc(now_ms(), a), st.state_name);
			last = st.state;
		}
		nap(200);
	}
	semcache_tier_stop(c);
	semcache_close(c);
	msg("stopped");
	return RC_OK;
}

/* ------------------------------------------------------------------------
 * dump
 * ---------------------------------------------------------------------- */
struct dump_ctx {
	bool json;
	uint64_t limit, shown;
	int64_t now;
	int err;
};

static json_t *entry_json(const semcache_entry_info *e, int64_t now)
{
	json_t *o = json_object();
	if (!o)
		return NULL;
	int bad = 0;
	bad |= jput(o, "ns", jstr(e->ns));
	bad |= jput(o, "key", jstr(e->key));
	bad |= jput(o, "scope", jstr(e->scope));
	bad |= jput(o, "slot", jint(e->slot));
	bad |= jput(o, "created_ms", json_integer(e->created_ms));
	bad |= jput(o, "age_ms", json_integer(now - e->created_ms));
	bad |= jput(o, "exact_expiry_ms", json_integer(e->exact_expiry_ms));
	bad |= jput(o, "exact_ttl_left_ms",
	            json_integer(e->exact_expiry_ms > now ? e->exact_expiry_ms - now : 0));
	bad |= jput(o, "has_embedding", json_boolean(e->has_embedding));
	bad |= jput(o, "semantic_expiry_ms",
	            e->has_embedding ? json_integer(e->semantic_expiry_ms) : json_null());
	bad |= jput(o, "semantic_ttl_left_ms",
	            !e->has_embedding ? json_null()
	            : json_integer(e->semantic_expiry_ms > now ? e->semantic_expiry_ms - now : 0));
	bad |= jput(o, "hits", jint(e->hits));
	bad |= jput(o, "size", jint(e->size));
	if (bad) {
		json_decref(o);
		return NULL;
	}
	return o;
}

static int dump_one(const semcache_entry_info *e, void *arg)
{
	struct dump_ctx *d = arg;
	char a[32], b[32], c[32];
	if (d->json) {
		json_t *o = entry_json(e, d->now);
		char *line = o ? json_dumps(o, JSON_ONE_LINE) : NULL;
		json_decref(o);
		if (!line) {
			d->err = -ENOMEM;
			return 1;
		}
		puts(line);
		free(line);
	} else {
		put_esc(stdout, e->ns);
		fputc('\t', stdout);
		put_esc(stdout, e->key);
		fputc('\t', stdout);
		put_esc(stdout, e->scope);
		printf("\t%s\t%s\t%s\t%" PRIu32 "\t%" PRIu32 "\n", fmt_dur(d->now - e->created_ms, a),
		       e->exact_expiry_ms > d->now ? fmt_dur(e->exact_expiry_ms - d->now, b)
		                                   : "expired",
		       !e->has_embedding ? "-"
		       : e->semantic_expiry_ms > d->now ? fmt_dur(e->semantic_expiry_ms - d->now, c)
		                                        : "expired",
		       e->hits, e->size);
	}
	d->shown++;
	return d->limit && d->shown >= d->limit;
}

static int cmd_dump(int argc, char **argv)
{
	enum { O_NS, O_PREFIX, O_JSON, O_LIMIT, O_N };
	struct opt o[O_N] = {
		[O_NS] = OPT("ns", true), [O_PREFIX] = OPT("prefix", true),
		[O_JSON] = OPT("json", false), [O_LIMIT] = OPT("limit", true),
	};
	const char *pos[1];
	size_t npos;
	struct dump_ctx d = { 0 };
	semcache *c = NULL;
	int rc;

	int pr = parse_opts(argc, argv, o, O_N, pos, 0, &npos);
	if (pr != PARSE_OK)
		return parse_result(pr);
	if (o[O_LIMIT].seen && (rc = parse_u64("limit", o[O_LIMIT].arg, false, 1, UINT64_MAX,
	                                       &d.limit)))
		return rc;
	d.json = o[O_JSON].seen;
	if ((rc = open_segment(&c, true)))
		return rc;
	if (!d.json)
		puts("NS\tKEY\tSCOPE\tAGE\tEXACT_TTL\tSEM_TTL\tHITS\tSIZE");
	d.now = now_ms();
	int err = semcache_foreach(c, o[O_NS].seen ? o[O_NS].arg : NULL,
	                           o[O_PREFIX].seen ? o[O_PREFIX].arg : NULL, dump_one, &d);
	if (err < 0 || d.err) {
		lib_error(err < 0 ? err : d.err, "walking the entries of %s", g_path);
		rc = RC_RUNTIME;
	}
	semcache_close(c);
	return rc;
}

/* ------------------------------------------------------------------------
 * get / put / search
 * ---------------------------------------------------------------------- */
static int cmd_get(int argc, char **argv)
{
	enum { O_TOUCH, O_JSON, O_N };
	struct opt o[O_N] = { [O_TOUCH] = OPT("touch", false), [O_JSON] = OPT("json", false) };
	const char *pos[2];
	size_t npos;
	semcache *c = NULL;
	semcache_response *r = NULL;
	int rc;

	int pr = parse_opts(argc, argv, o, O_N, pos, 2, &npos);
	if (pr != PARSE_OK)
		return parse_result(pr);
	if (npos != 2)
		return usage_error("expected NS and KEY");
	if ((rc = open_segment(&c, !o[O_TOUCH].seen)))
		return rc;
	int err = semcache_get(c, pos[0], pos[1], o[O_TOUCH].seen ? SEMCACHE_GET_TOUCH : 0, &r);
	if (err == SEMCACHE_ENOTFOUND) {
		fputs("semcache get: no entry for key '", stderr);
		put_esc(stderr, pos[1]);
		fputs("' in namespace '", stderr);
		put_esc(stderr, pos[0]);
		fputs("'\n", stderr);
		rc = RC_MISS;
	} else if (err) {
		rc = lib_error(err, "lookup failed");
		if (rc == RC_USAGE)
			rc = RC_RUNTIME; /* NS and KEY are always valid input */
	} else if (o[O_JSON].seen) {
		json_t *j = response_json(r);
		rc = print_json(j, JSON_PRETTY);
		json_decref(j);
	} else {
		const char *s = r->content ? r->content : "";
		size_t n = strlen(s);
		fwrite(s, 1, n, stdout);
		if (!n || s[n - 1] != '\n')
			fputc('\n', stdout);
	}
	semcache_response_free(r);
	semcache_close(c);
	return rc;
}

static int cmd_put(int argc, char **argv)
{
	enum { O_SCOPE, O_EMB, O_TTL, O_STTL, O_N };
	struct opt o[O_N] = {
		[O_SCOPE] = OPT("scope", true), [O_EMB] = OPT("embedding", true),
		[O_TTL] = OPT("ttl", true), [O_STTL] = OPT("semantic-ttl", true),
	};
	const char *pos[2];
	size_t npos;
	semcache_put_args a;
	struct record rec = { 0 };
	semcache_stats st;
	float *emb = NULL;
	uint32_t dim = 0;
	semcache *c = NULL;
	int rc, err;

	int pr = parse_opts(argc, argv, o, O_N, pos, 2, &npos);
	if (pr != PARSE_OK)
		return parse_result(pr);
	if (npos != 2)
		return usage_error("expected NS and KEY (the record comes on stdin)");
	memset(&a, 0, sizeof a);
	a.ns = pos[0];
	a.key = pos[1];
	a.scope = o[O_SCOPE].seen ? o[O_SCOPE].arg : "";
	if (o[O_TTL].seen && (rc = parse_seconds("ttl", o[O_TTL].arg, &a.exact_ttl_ms)))
		return rc;
	if (o[O_STTL].seen &&
	    (rc = parse_seconds("semantic-ttl", o[O_STTL].arg, &a.semantic_ttl_ms)))
		return rc;
	if (o[O_EMB].seen && (rc = read_embedding("embedding", o[O_EMB].arg, &emb, &dim)))
		return rc;
	if (isatty(STDIN_FILENO))
		fputs("semcache put: reading the record (JSON) from stdin; end with Ctrl-D\n", stderr);
	if ((rc = record_read(stdin, &rec)))
		goto out;
	a.response = &rec.resp;
	a.embedding = emb;
	a.embedding_dim = dim;
	if ((rc = open_segment(&c, false)))
		goto out;
	if (emb && (rc = check_dim(c, dim)))
		goto out;
	err = semcache_put(c, &a);
	if (err == -E2BIG && semcache_stat(c, &st) == 0) {
		msg("record is larger than the segment's max payload (%" PRIu32 " bytes): %s",
		    st.max_payload, semcache_strerror(err));
		rc = RC_USAGE;
	} else if (err) {
		rc = lib_error(err, "cannot store the entry");
	}
out:
	semcache_close(c);
	record_free(&rec);
	free(emb);
	return rc;
}

static int cmd_search(int argc, char **argv)
{
	enum { O_SCOPE, O_EMB, O_THR, O_TOP, O_JSON, O_N };
	struct opt o[O_N] = {
		[O_SCOPE] = OPT("scope", true), [O_EMB] = OPT("embedding", true),
		[O_THR] = OPT("threshold", true), [O_TOP] = OPT("top", true),
		[O_JSON] = OPT("json", false),
	};
	const char *pos[1];
	size_t npos, n = 0;
	semcache_stats st;
	semcache_match *m = NULL;
	float *emb = NULL, thr = 0;
	uint32_t dim = 0;
	uint64_t top = 1;
	semcache *c = NULL;
	int rc, err;

	int pr = parse_opts(argc, argv, o, O_N, pos, 1, &npos);
	if (pr != PARSE_OK)
		return parse_result(pr);
	if (npos != 1)
		return usage_error("expected NS");
	if (!o[O_EMB].seen)
		return usage_error("--embedding FILE is required");
	if (o[O_THR].seen && (rc = parse_threshold("threshold", o[O_THR].arg, &thr)))
		return rc;
	if (o[O_TOP].seen && (rc = parse_u64("top", o[O_TOP].arg, false, 1, MAX_TOP, &top)))
		return rc;
	if ((rc = read_embedding("embedding", o[O_EMB].arg, &emb, &dim)))
		return rc;
	if (!(m = calloc(top, sizeof *m))) {
		msg("%s", semcache_strerror(-ENOMEM));
		rc = RC_RUNTIME;
		goto out;
	}
	if ((rc = open_segment(&c, true)) || (rc = check_dim(c, dim)))
		goto out;
	if (!o[O_THR].seen) {
		if ((err = semcache_stat(c, &st))) {
			lib_error(err, "cannot read the segment's threshold");
			rc = RC_RUNTIME;
			goto out;
		}
		thr = st.threshold;
	}
	err = semcache_search_topk(c, pos[0], o[O_SCOPE].seen ? o[O_SCOPE].arg : "", emb, dim,
	                           thr, m, top, &n);
	if (err) {
		rc = lib_error(err, "search failed");
		goto out;
	}
	if (n == 0) {
		msg("nothing matches at threshold %.4g", (double)thr);
		rc = RC_MISS;
		goto out;
	}
	/* Each match says which entry it is, so an operator can tell why it
	 * answered and check it with get, dump or delete. */
	int64_t now = now_ms();
	if (!o[O_JSON].seen)
		puts("SIMILARITY\tNS\tKEY\tSCOPE\tAGE\tEXACT_TTL\tSEM_TTL\tCONTENT");
	for (size_t i = 0; i < n && !rc; i++) {
		const semcache_match *x = &m[i];
		if (o[O_JSON].seen) {
			json_t *j = json_object();
			if (j && (jput(j, "rank", jint(i + 1)) |
			          jput(j, "similarity", json_real(x->similarity)) |
			          jput(j, "ns", jstr(x->ns)) | jput(j, "key", jstr(x->key)) |
			          jput(j, "scope", jstr(x->scope)) | jput(j, "slot", jint(x->slot)) |
			          jput(j, "created_ms", json_integer(x->created_ms)) |
			          jput(j, "exact_expiry_ms", json_integer(x->exact_expiry_ms)) |
			          jput(j, "semantic_expiry_ms", json_integer(x->semantic_expiry_ms)) |
			          jput(j, "response", response_json(x->response)))) {
				json_decref(j);
				j = NULL;
			}
			rc = print_json(j, JSON_ONE_LINE);
			json_decref(j);
		} else {
			char a[32], b[32], d[32];
			printf("%.6f\t", (double)x->similarity);
			put_esc(stdout, x->ns);
			fputc('\t', stdout);
			put_esc(stdout, x->key);
			fputc('\t', stdout);
			put_esc(stdout, x->scope);
			printf("\t%s\t%s\t%s\t", fmt_dur(now - x->created_ms, a),
			       x->exact_expiry_ms > now ? fmt_dur(x->exact_expiry_ms - now, b) : "expired",
			       x->semantic_expiry_ms > now ? fmt_dur(x->semantic_expiry_ms - now, d)
			                                   : "expired");
			put_esc(stdout, x->response->content ? x->response->content : "");
			fputc('\n', stdout);
		}
	}
out:
	for (size_t i = 0; m && i < n; i++)
		semcache_response_free(m[i].response);
	free(m);
	free(emb);
	semcache_close(c);
	return rc;
}

/* ------------------------------------------------------------------------
 * delete / invalidate / verify
 * ---------------------------------------------------------------------- */
static int cmd_delete(int argc, char **argv)
{
	const char *pos[2];
	size_t npos;
	semcache *c = NULL;
	int rc;

	int pr = parse_opts(argc, argv, NULL, 0, pos, 2, &npos);
	if (pr != PARSE_OK)
		return parse_result(pr);
	if (npos != 2)
		return usage_error("expected NS and KEY");
	if ((rc = open_segment(&c, false)))
		return rc;
	int err = semcache_delete(c, pos[0], pos[1]);
	if (err == SEMCACHE_ENOTFOUND) {
		fputs("semcache delete: no entry for key '", stderr);
		put_esc(stderr, pos[1]);
		fputs("' in namespace '", stderr);
		put_esc(stderr, pos[0]);
		fputs("'\n", stderr);
		rc = RC_MISS;
	} else if (err) {
		rc = lib_error(err, "deletion failed");
		if (rc == RC_USAGE)
			rc = RC_RUNTIME; /* NS and KEY are always valid input */
	} else {
		puts("1 entry deleted");
	}
	semcache_close(c);
	return rc;
}

static int cmd_invalidate(int argc, char **argv)
{
	enum { O_ALL, O_NS, O_PREFIX, O_N };
	struct opt o[O_N] = {
		[O_ALL] = OPT("all", false), [O_NS] = OPT("ns", true), [O_PREFIX] = OPT("prefix", true),
	};
	const char *pos[1];
	size_t npos;
	uint64_t count = 0;
	semcache *c = NULL;
	int rc;

	int pr = parse_opts(argc, argv, o, O_N, pos, 0, &npos);
	if (pr != PARSE_OK)
		return parse_result(pr);
	if (o[O_ALL].seen && (o[O_NS].seen || o[O_PREFIX].seen))
		return usage_error("--all excludes --ns and --prefix");
	if (!o[O_ALL].seen && !o[O_NS].seen && !o[O_PREFIX].seen)
		return usage_error("say what to remove: --all, --ns NS [--prefix P] or --prefix P");
	if (o[O_PREFIX].seen && !*o[O_PREFIX].arg)
		return usage_error("--prefix must not be empty (use --ns NS or --all)");
	if ((rc = open_segment(&c, false)))
		return rc;
	int err = semcache_invalidate(c, o[O_NS].seen ? o[O_NS].arg : NULL,
	                              o[O_PREFIX].seen ? o[O_PREFIX].arg : NULL, &count);
	if (err) {
		lib_error(err, "invalidation failed");
		rc = RC_RUNTIME;
	} else {
		printf("%" PRIu64 " %s invalidated\n", count, count == 1 ? "entry" : "entries");
	}
	semcache_close(c);
	return rc;
}

static int cmd_verify(int argc, char **argv)
{
	const char *pos[1];
	size_t npos;
	semcache *c = NULL;
	char *report = NULL;
	int rc;

	int pr = parse_opts(argc, argv, NULL, 0, pos, 0, &npos);
	if (pr != PARSE_OK)
		return parse_result(pr);
	if (!(report = malloc(REPORT_LEN))) {
		msg("%s", semcache_strerror(-ENOMEM));
		return RC_RUNTIME;
	}
	if ((rc = open_segment(&c, false)))
		goto out;
	int err = semcache_verify(c, report, REPORT_LEN);
	if (err == 0) {
		puts("consistent");
	} else if (err == SEMCACHE_ECORRUPT) {
		printf("%s: %s\n", semcache_strerror(err), report[0] ? report : "(no details)");
		rc = RC_MISS;
	} else {
		lib_error(err, "cannot verify %s", g_path);
		rc = RC_RUNTIME;
	}
out:
	semcache_close(c);
	free(report);
	return rc;
}

/* ------------------------------------------------------------------------
 * version / help, and the command table
 * ---------------------------------------------------------------------- */
/* The running library's version (semcache_version()), and the header's
 * when a shared library was swapped under the tool. */
static void print_version(void)
{
	const char *lib = semcache_version(NULL, NULL, NULL);
	if (strcmp(lib, TOOL_VERSION) != 0)
		printf("semcache %s (built with %s)\n", lib, TOOL_VERSION);
	else
		printf("semcache %s\n", lib);
}

static int cmd_version(int argc, char **argv)
{
	const char *pos[1];
	size_t npos;
	int pr = parse_opts(argc, argv, NULL, 0, pos, 0, &npos);
	if (pr != PARSE_OK)
		return parse_result(pr);
	print_version();
	return RC_OK;
}

static int cmd_help(int argc, char **argv);

static void help_create(FILE *f)
{
	semcache_options d;
	char a[32], b[32];
	semcache_options_init(&d);
	fprintf(f,
	    "usage: semcache create [OPTIONS]\n"
	    "\n"
	    "Create a segment at --path.  Refuses if one exists, unless --force.\n"
	    "\n"
	    "  --slots N               entry capacity, 16..67108864 (default %" PRIu32 ")\n"
	    "  --dim N                 embedding dimension, 0..4096, 0 = exact only (default %" PRIu32 ")\n"
	    "  --arena BYTES           payload arena, K/M/G suffixes (default %s)\n"
	    "  --block-size BYTES      payload block, power of two 64..65536 (default %" PRIu32 ")\n"
	    "  --max-procs N           process records, 1..4096 (default %" PRIu32 ")\n"
	    "  --max-payload BYTES     largest encoded record (default %s)\n"
	    "  --exact-ttl SECONDS     default exact TTL (default %lld)\n"
	    "  --semantic-ttl SECONDS  default semantic TTL (default %lld)\n"
	    "  --threshold T           default similarity threshold, -1..1 (default %.2f)\n"
	    "  --quant none|int8|bits  quantised copy of the rows for a two-stage scan\n"
	    "  --group                 file mode 0660 instead of 0600\n"
	    "  --force                 replace an existing segment (refused while it is in use;\n"
	    "                          options are checked before the old one goes)\n",
	    d.slots, d.dim, fmt_bytes(d.arena_bytes, a), d.block_size, d.max_procs,
	    fmt_bytes(d.max_payload, b), (long long)(d.exact_ttl_ms / 1000),
	    (long long)(d.semantic_ttl_ms / 1000), (double)d.threshold);
}

static const char help_destroy[] =
	"usage: semcache destroy [--force]\n"
	"\n"
	"Remove the segment file.  Refuses while any process has it open, unless\n"
	"--force (attached processes keep their mapping until they detach).\n";

static const char help_stat[] =
	"usage: semcache stat [--json | --prometheus] [--watch SECONDS]\n"
	"\n"
	"Show geometry, configuration, memory use, counters and the process table.\n"
	"\n"
	"  --json            one JSON object (one line per document with --watch)\n"
	"  --prometheus      Prometheus text exposition format\n"
	"  --watch SECONDS   repeat every SECONDS until interrupted\n";

static const char help_dump[] =
	"usage: semcache dump [--ns NS] [--prefix P] [--json] [--limit N]\n"
	"\n"
	"List live entries: namespace, key, scope, age, exact and semantic TTL left\n"
	"('-' without embedding), hits, record size.  Tab-separated with a header\n"
	"line; control characters are escaped.\n"
	"\n"
	"  --ns NS       only namespace NS\n"
	"  --prefix P    only keys starting with P\n"
	"  --json        one JSON object per line (JSONL), times in ms\n"
	"  --limit N     stop after N entries\n";

static const char help_get[] =
	"usage: semcache get NS KEY [--touch] [--json]\n"
	"\n"
	"Exact lookup.  Prints the content (plus a newline if it lacks one); exit 1\n"
	"on a miss.\n"
	"\n"
	"  --touch   a hit restarts the entry's TTLs\n"
	"  --json    print the whole record, in the format put reads\n";

static const char help_put[] =
	"usage: semcache put NS KEY [--scope S] [--embedding FILE] [--ttl SECONDS]\n"
	"                    [--semantic-ttl SECONDS] < record.json\n"
	"\n"
	"Store an entry.  The record comes as one JSON object on stdin:\n"
	"  {\"content\": str, \"model\": str,                 (required)\n"
	"   \"usage\": {\"prompt_tokens\": n, \"completion_tokens\": n},\n"
	"   \"tool_calls\": [{\"id\": str, \"name\": str, \"arguments\": str|json}],\n"
	"   \"latency_ms\": n, \"finish_reason\": str, \"reasoning\": str,\n"
	"   \"metadata\": str|json}\n"
	"Non-string arguments and metadata are stored as their compact JSON text.\n"
	"\n"
	"  --scope S              what may answer each other semantically (default \"\")\n"
	"  --embedding FILE       JSON array of numbers if it starts with '[',\n"
	"                         else raw little-endian float32; '-' is not allowed\n"
	"  --ttl SECONDS          exact TTL of this entry (default: the segment's)\n"
	"  --semantic-ttl SECONDS semantic TTL of this entry (default: the segment's)\n";

static const char help_search[] =
	"usage: semcache search NS --embedding FILE [--scope S] [--threshold T]\n"
	"                       [--top K] [--json]\n"
	"\n"
	"Semantic lookup.  Prints each match, best first, after a header line:\n"
	"similarity, the entry's namespace, key and scope, age, exact and semantic\n"
	"TTL left, and the content (tab-separated, escaped, one line per match);\n"
	"exit 1 when nothing matches.\n"
	"\n"
	"  --embedding FILE  query embedding, same formats as put\n"
	"  --scope S         scope to search (default \"\")\n"
	"  --threshold T     minimum similarity, -1..1 (default: the segment's)\n"
	"  --top K           up to K matches, 1..64 (default 1)\n"
	"  --json            one JSON object per match and line: rank, similarity,\n"
	"                    ns, key, scope, slot, created_ms, exact_expiry_ms,\n"
	"                    semantic_expiry_ms, response\n";

static const char help_delete[] =
	"usage: semcache delete NS KEY\n"
	"\n"
	"Remove the one entry with exactly this namespace and key (not a prefix:\n"
	"see invalidate for that).  Prints \"1 entry deleted\" and exits 0, or\n"
	"exits 1 when there is no such entry.\n";

static const char help_invalidate[] =
	"usage: semcache invalidate --all | --ns NS [--prefix P] | --prefix P\n"
	"\n"
	"Remove entries: all, one namespace, keys starting with P in one namespace,\n"
	"or keys starting with P in every namespace.  Prints how many went.\n";

static const char help_verify[] =
	"usage: semcache verify\n"
	"\n"
	"Full consistency check under the writer lock.  Prints \"consistent\" and\n"
	"exits 0, or the report and exits 1.\n";

static const char help_sync[] =
	"usage: semcache sync [--host H] [--port P | --unix PATH] [--user U]\n"
	"                     [--password-env VAR] [--db N] [--prefix P]\n"
	"                     [--connect-timeout S] [--command-timeout S]\n"
	"                     [--batch N] [--warmup N]\n"
	"                     [--format native|seed [--seed-namespace NS]]\n"
	"\n"
	"Run the segment's Redis syncer in this process until SIGINT or SIGTERM\n"
	"(a sidecar for services that do not start one themselves).  One syncer\n"
	"per segment holds a lease; a second 'sync' waits and takes over when the\n"
	"first dies (within about 0.2 s) or hangs (within about 3 s).  Prints\n"
	"state changes on stderr.  Exit 0 after a signal.\n"
	"\n"
	"  --host H               Redis host (default 127.0.0.1)\n"
	"  --port P               Redis port (default 6379)\n"
	"  --unix PATH            Redis unix socket instead of TCP\n"
	"  --user U               ACL user\n"
	"  --password-env VAR     read the password from environment variable VAR\n"
	"  --db N                 SELECT database N\n"
	"  --prefix P             key prefix (at most 64 bytes, no space)\n"
	"  --connect-timeout S    connect + AUTH deadline (default 1)\n"
	"  --command-timeout S    deadline of each pipelined batch (default 1)\n"
	"  --batch N              outbox items per batch, 1..1024 (default 256)\n"
	"  --warmup N             events a new segment reads back (default 1000)\n"
	"  --format F             'native' (default) or 'seed': the reference\n"
	"                         service's JSON, to share Redis with it; every\n"
	"                         host on one prefix must use the same format\n"
	"  --seed-namespace NS    with --format seed: the namespace shared with the\n"
	"                         reference service, whose keys are its ids\n"
	"                         (default: the empty namespace)\n";

static const char help_version[] = "usage: semcache version\n";
static const char help_help[] = "usage: semcache help [COMMAND]\n";

static const struct command {
	const char *name;
	int (*run)(int argc, char **argv);
	const char *summary;
	const char *help;             /* static help text, or NULL ... */
	void (*help_fn)(FILE *f);     /* ... when it is computed */
} commands[] = {
	{ "create", cmd_create, "create a segment", NULL, help_create },
	{ "destroy", cmd_destroy, "remove a segment", help_destroy, NULL },
	{ "stat", cmd_stat, "geometry, memory, counters, processes", help_stat, NULL },
	{ "dump", cmd_dump, "list entries", help_dump, NULL },
	{ "get", cmd_get, "exact lookup", help_get, NULL },
	{ "put", cmd_put, "store an entry (record as JSON on stdin)", help_put, NULL },
	{ "search", cmd_search, "semantic lookup by embedding", help_search, NULL },
	{ "delete", cmd_delete, "remove one entry (exact key)", help_delete, NULL },
	{ "invalidate", cmd_invalidate, "remove entries by namespace or key prefix",
	  help_invalidate, NULL },
	{ "verify", cmd_verify, "check the segment's consistency", help_verify, NULL },
	{ "sync", cmd_sync, "run the Redis syncer until interrupted", help_sync, NULL },
	{ "version", cmd_version, "print the version", help_version, NULL },
	{ "help", cmd_help, "help on a command", help_help, NULL },
};
#define NCOMMANDS (sizeof commands / sizeof commands[0])

static const struct command *find_command(const char *name)
{
	for (size_t i = 0; i < NCOMMANDS; i++)
		if (!strcmp(commands[i].name, name))
			return &commands[i];
	return NULL;
}

static void main_help(FILE *f)
{
	fputs("usage: semcache [--path PATH] COMMAND [--group] [OPTIONS] [ARGS]\n"
	      "\n"
	      "Operate a semcache shared-memory LLM response cache.\n"
	      "\n"
	      "Commands:\n", f);
	for (size_t i = 0; i < NCOMMANDS; i++)
		fprintf(f, "  %-12s %s\n", commands[i].name, commands[i].summary);
	fputs("\n"
	      "Global options (--path before or after the command):\n"
	      "  --path PATH  segment file (default $SEMCACHE_PATH, else " SEMCACHE_DEFAULT_PATH ")\n"
	      "  --group      accept a group-shared segment (mode 0660); after the command\n"
	      "  -h, --help   help (after a command: that command's help)\n"
	      "\n"
	      "Exit status: 0 ok; 1 miss, no match or verify found damage; 2 usage error;\n"
	      "3 runtime error (cannot open, not a segment, corrupt, ...).\n", f);
}

static void show_help(const char *cmd, FILE *f)
{
	const struct command *c = find_command(cmd);
	if (!c)
		main_help(f);
	else if (c->help_fn)
		c->help_fn(f);
	else
		fputs(c->help, f);
}

static int cmd_help(int argc, char **argv)
{
	const char *pos[1];
	size_t npos;
	int pr = parse_opts(argc, argv, NULL, 0, pos, 1, &npos);
	if (pr != PARSE_OK)
		return parse_result(pr);
	if (npos && !find_command(pos[0]))
		return usage_error("unknown command '%s'", pos[0]);
	show_help(npos ? pos[0] : "", stdout);
	return RC_OK;
}

int main(int argc, char **argv)
{
	const struct command *cmd;
	int i, rc;

	g_path = getenv("SEMCACHE_PATH");
	if (!g_path || !*g_path)
		g_path = SEMCACHE_DEFAULT_PATH;
	for (i = 1; i < argc && argv[i][0] == '-' && argv[i][1]; i++) {
		const char *a = argv[i];
		if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
			main_help(stdout);
			return RC_OK;
		}
		if (!strcmp(a, "--version")) {
			print_version();
			return RC_OK;
		}
		if (!strcmp(a, "--path")) {
			if (i + 1 >= argc)
				return usage_error("option '--path' needs a value");
			if (set_path(argv[++i]))
				return RC_USAGE;
		} else if (!strncmp(a, "--path=", 7)) {
			if (set_path(a + 7))
				return RC_USAGE;
		} else {
			return usage_error("unknown option '%s'", a);
		}
	}
	if (i == argc) {
		main_help(stderr);
		return RC_USAGE;
	}
	if (!(cmd = find_command(argv[i])))
		return usage_error("unknown command '%s'", argv[i]);
	g_cmd = cmd->name;
	rc = cmd->run(argc - i, argv + i);
	if (fflush(stdout) || ferror(stdout)) {
		msg("error writing to stdout");
		if (rc == RC_OK)
			rc = RC_RUNTIME;
	}
	return rc;
}
