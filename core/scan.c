/*
 * scan.c - the kernel-independent half of the semantic scan: the top-k
 * keeper every kernel feeds, the run-time choice of kernel, and the scalar
 * quantisers used at put time and for queries.
 *
 * The kernels themselves (scan_scalar.c, scan_avx2.c, scan_avx512.c) each
 * define one sc_kernel table.  They are compiled with the project's generic
 * flags and get their instruction set from per-function target attributes,
 * so this file may only hand out a table after asking the CPU (and through
 * libgcc, the OS's saved-register state) whether it can run it.  The choice
 * is made once and cached: the environment is read on the first call only,
 * which keeps sc_kernel_select() cheap enough to call per query.
 */
#include "scan.h"

#include <math.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

/* The kernel tables, one per sibling file.  Deliberately not in scan.h:
 * callers must go through sc_kernel_select()/sc_kernel_by_name(), which
 * check the CPU first. */
extern const sc_kernel sc_kernel_scalar;
extern const sc_kernel sc_kernel_avx2;
extern const sc_kernel sc_kernel_avx512;

/* Not in scan.h: exposed for the unit test of the SEMCACHE_KERNEL parsing. */

/* ---------------------------------------------------------------- top-k */

/*
 * top[] is kept sorted best first, by score and, among equal scores, by
 * lower row: a total order, so what a scan keeps does not depend on the
 * order it visits rows in (kernels may walk several streams at once), and
 * the best-C prefix of a best-k list (C < k) is exactly what a scan with
 * k = C keeps, which the two-stage scan relies on to try several
 * candidate counts from one pass.
 */
static inline int sc_cand_before(float s, uint32_t row, const sc_cand *c)
{
	return s > c->score || (s == c->score && row < c->row);
}

void sc_topk_push(sc_cand *top, size_t *n, size_t k, uint32_t row, float score)
{
	size_t cnt = *n, lo = 0, hi;

	if (k == 0 || isnan(score))
		return;
	if (cnt > k)  /* a caller's bookkeeping error: never write past k */
		cnt = k;
	if (cnt == k) {
		if (!sc_cand_before(score, row, &top[k - 1]))
			return;
		cnt--;  /* the worst entry falls off */
	}
	/* Binary search for the first entry the newcomer goes before. */
	hi = cnt;
	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;
		if (sc_cand_before(score, row, &top[mid]))
			hi = mid;
		else
			lo = mid + 1;
	}
	memmove(&top[lo + 1], &top[lo], (cnt - lo) * sizeof top[0]);
	top[lo].row = row;
	top[lo].score = score;
	*n = cnt + 1;
}

/* ------------------------------------------------------- kernel choice */

/* Rank of each kernel; the environment can only lower the CPU's rank. */
enum { SC_K_SCALAR, SC_K_AVX2, SC_K_AVX512, SC_K_COUNT };

static const sc_kernel *const sc_kernels[SC_K_COUNT] = {
	[SC_K_SCALAR] = &sc_kernel_scalar,
	[SC_K_AVX2] = &sc_kernel_avx2,
	[SC_K_AVX512] = &sc_kernel_avx512,
};

/*
 * The avx512 kernel uses VNNI for int8, VPOPCNTDQ for sign bits and
 * 256-bit FMA (with VL masking) for floats, so it needs all of these (Ice
 * Lake, Zen 4 and later); a Skylake-X gets the avx2 kernel.
 * __builtin_cpu_supports() also checks that the OS saves the wide
 * registers (XCR0), so a hypervisor or valgrind that hides them is
 * honoured.
 */
static int sc_cpu_rank(void)
{
	int avx2;

	__builtin_cpu_init();
	avx2 = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") &&
	       __builtin_cpu_supports("popcnt");
	if (avx2 && __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
	    __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512vnni") &&
	    __builtin_cpu_supports("avx512vpopcntdq"))
		return SC_K_AVX512;
	return avx2 ? SC_K_AVX2 : SC_K_SCALAR;
}

/* ASCII case-insensitive equality; strcasecmp is not in C11. */
static int sc_name_eq(const char *a, const char *b)
{
	for (;; a++, b++) {
		int ca = (unsigned char)*a, cb = (unsigned char)*b;
		if (ca >= 'A' && ca <= 'Z')
			ca += 'a' - 'A';
		if (cb >= 'A' && cb <= 'Z')
			cb += 'a' - 'A';
		if (ca != cb)
			return 0;
		if (ca == 0)
			return 1;
	}
}

static int sc_rank_by_name(const char *name)
{
	if (name == NULL)
		return -1;
	for (int i = 0; i < SC_K_COUNT; i++)
		if (sc_name_eq(name, sc_kernels[i]->name))
			return i;
	return -1;
}

const sc_kernel *sc_kernel_by_name(const char *name)
{
	int r = sc_rank_by_name(name);

	if (r < 0 || r > sc_cpu_rank())
		return NULL;
	return sc_kernels[r];
}

/*
 * What SEMCACHE_KERNEL=want selects: the named kernel if the CPU can run
 * it, otherwise (unset, empty, unknown name, or a kernel above the CPU)
 * the best the CPU has.  A misspelt variable must not stop the cache, so
 * it is ignored rather than reported.
 */
const sc_kernel *sc_kernel_pick(const char *want)
{
	int cpu = sc_cpu_rank(), r = sc_rank_by_name(want);

	if (r < 0 || r > cpu)
		r = cpu;
	return sc_kernels[r];
}

/*
 * Threads racing through the first call compute the same answer, so the
 * cache needs no lock: relaxed ordering is enough because the tables it
 * points to are constant data, never written after load.
 */
static _Atomic(const sc_kernel *) sc_selected;

const sc_kernel *sc_kernel_select(void)
{
	const sc_kernel *k = atomic_load_explicit(&sc_selected, memory_order_relaxed);

	if (k == NULL) {
		k = sc_kernel_pick(getenv("SEMCACHE_KERNEL"));
		atomic_store_explicit(&sc_selected, k, memory_order_relaxed);
	}
	return k;
}

/* ----------------------------------------------------------- quantising */

/*
 * int8: value = round(x / scale * 127), scale = max |x| over the finite
 * elements.  The input comes from a caller's embedding, so it is not
 * trusted: NaN quantises to 0 and +-inf to +-127 instead of poisoning the
 * scale, and an all-zero (or all-NaN) row gets scale 0 and all-zero bytes,
 * which the first pass scores as 0.  Only min(dim, qstride) elements are
 * written if a caller passes a short stride; bytes from dim up to qstride
 * are zeroed so the kernels may read whole 64-byte blocks.
 */
float sc_quant_i8(const float *x, uint32_t dim, int8_t *out, size_t qstride)
{
	size_t n = dim < qstride ? dim : qstride;
	float scale = 0.0f;

	for (size_t i = 0; i < n; i++) {
		float a = fabsf(x[i]);
		if (isfinite(a) && a > scale)
			scale = a;
	}
	for (size_t i = 0; i < n; i++) {
		float v = x[i], q;
		if (isnan(v) || scale == 0.0f)
			q = 0.0f;
		else if (isinf(v))
			q = v > 0 ? 127.0f : -127.0f;
		else
			q = roundf(v / scale * 127.0f);
		if (q > 127.0f)
			q = 127.0f;
		if (q < -127.0f)
			q = -127.0f;
		out[i] = (int8_t)q;
	}
	if (qstride > n)
		memset(out + n, 0, qstride - n);
	return scale;
}

/*
 * Sign bits: bit j (byte j/8, bit j%8, least significant first) is set
 * when x_j >= 0.  NaN compares false and so gets a clear bit; -0.0 >= 0
 * holds, so it is set like +0.0.  Bits past dim and bytes up to qstride are
 * zero.
 */
void sc_quant_bits(const float *x, uint32_t dim, uint8_t *out, size_t qstride)
{
	size_t nbytes = ((size_t)dim + 7u) / 8u;

	if (nbytes > qstride)
		nbytes = qstride;
	memset(out, 0, qstride);
	for (size_t i = 0; i < (size_t)dim && i / 8u < nbytes; i++)
		if (x[i] >= 0.0f)
			out[i / 8u] |= (uint8_t)(1u << (i % 8u));
}
