/*
 * test_scan.c - unit tests of the scan kernels (core/scan*.c).
 *
 * The scalar kernel is the reference: every kernel this CPU can run must
 * agree with it (float scores within 1e-4, quantised scores exactly, since
 * those are integer dot products scaled by one shared expression), and the
 * scalar kernel itself is checked against brute force written here.  Rows
 * carry garbage (NaN, set bits) in their padding, so a kernel that reads
 * past dim fails loudly instead of by a rounding error.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE  /* setenv, mmap flags under -std=c11 */
#endif
#include <criterion/criterion.h>

#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "scan.h"

/* Not in scan.h; see scan.c. */

static const char *const kernel_names[] = { "scalar", "avx2", "avx512" };
#define NKERNELS 3

static const uint32_t test_dims[] = { 1, 3, 15, 16, 17, 100, 384, 768, 1536, 3072, 4096 };
#define NDIMS (sizeof test_dims / sizeof test_dims[0])

/* Quantised kernels also branch on 64-byte and 512-bit block edges. */
static const uint32_t q_dims[] = { 1, 3, 15, 16, 17, 63, 64, 65, 100, 127, 128, 129,
	                           384, 511, 512, 513, 768, 1000, 1536 };
#define NQDIMS (sizeof q_dims / sizeof q_dims[0])

#define SCOPE 42u
#define NOW 1000

/* ---------------------------------------------------------------- helpers */

static uint64_t rng_state = 0x9e3779b97f4a7c15ull;

static uint64_t rnd(void)
{
	/* xorshift64*: deterministic, good enough for test data */
	rng_state ^= rng_state >> 12;
	rng_state ^= rng_state << 25;
	rng_state ^= rng_state >> 27;
	return rng_state * 0x2545f4914f6cdd1dull;
}

static float rndf(void)
{
	return (float)((double)(rnd() >> 11) * 0x1p-53 * 2.0 - 1.0);
}

static void normalise(float *x, uint32_t dim)
{
	double ss = 0;
	for (uint32_t i = 0; i < dim; i++)
		ss += (double)x[i] * x[i];
	for (uint32_t i = 0; i < dim; i++)
		x[i] = (float)(x[i] / sqrt(ss));
}

static double ref_dot(const float *a, const float *b, uint32_t dim)
{
	double s = 0;
	for (uint32_t i = 0; i < dim; i++)
		s += (double)a[i] * b[i];
	return s;
}

/* A matrix of random normalised rows whose padding holds NaN. */
static float *make_matrix(size_t rows, uint32_t dim)
{
	size_t stride = sc_row_stride(dim);
	float *m = aligned_alloc(64, rows * stride * sizeof(float));

	cr_assert_not_null(m);
	for (size_t r = 0; r < rows; r++) {
		float *row = m + r * stride;
		for (uint32_t i = 0; i < dim; i++)
			row[i] = rndf();
		normalise(row, dim);
		for (size_t i = dim; i < stride; i++)
			row[i] = NAN;
	}
	return m;
}

static sc_scanmeta *make_meta(size_t rows)
{
	sc_scanmeta *meta = calloc(rows, sizeof *meta);

	cr_assert_not_null(meta);
	for (size_t r = 0; r < rows; r++) {
		meta[r].scope = SCOPE;
		meta[r].sem_expiry_ms = NOW + 1 + (int64_t)r;
	}
	return meta;
}

static float *make_query(uint32_t dim)
{
	float *q = aligned_alloc(64, sc_row_stride(dim) * sizeof(float));

	cr_assert_not_null(q);
	for (uint32_t i = 0; i < dim; i++)
		q[i] = rndf();
	normalise(q, dim);
	return q;
}

static const sc_kernel *scalar(void)
{
	const sc_kernel *k = sc_kernel_by_name("scalar");
	cr_assert_not_null(k);
	return k;
}

/* --------------------------------------------------------------- top-k */

Test(topk, push_keeps_best_k_sorted)
{
	sc_cand top[8];
	float all[200];
	size_t n = 0;

	for (uint32_t i = 0; i < 200; i++) {
		all[i] = rndf();
		sc_topk_push(top, &n, 8, i, all[i]);
	}
	cr_assert_eq(n, 8);
	for (size_t j = 0; j < 8; j++) {
		size_t better = 0;
		for (size_t i = 0; i < 200; i++)
			if (all[i] > top[j].score)
				better++;
		cr_assert_eq(better, j, "entry %zu has %zu better rows", j, better);
		cr_assert_eq(all[top[j].row], top[j].score);
	}
}

Test(topk, push_ignores_nan)
{
	sc_cand top[4];
	size_t n = 0;

	sc_topk_push(top, &n, 4, 1, NAN);
	cr_assert_eq(n, 0);
	sc_topk_push(top, &n, 4, 2, 0.5f);
	sc_topk_push(top, &n, 4, 3, -NAN);
	cr_assert_eq(n, 1);
	cr_assert_eq(top[0].row, 2);
}

/* Equal scores are ordered by row, so the result does not depend on the
 * order a kernel visits rows in. */
Test(topk, push_breaks_ties_by_lower_row)
{
	sc_cand top[2];
	size_t n = 0;

	sc_topk_push(top, &n, 2, 5, 0.5f);
	sc_topk_push(top, &n, 2, 2, 0.5f);
	sc_topk_push(top, &n, 2, 9, 0.5f);  /* equal score, higher row: out */
	cr_assert_eq(n, 2);
	cr_assert_eq(top[0].row, 2);
	cr_assert_eq(top[1].row, 5);
	sc_topk_push(top, &n, 2, 1, 0.5f);  /* equal score, lower row: in */
	cr_assert_eq(top[0].row, 1);
	cr_assert_eq(top[1].row, 2);
	sc_topk_push(top, &n, 2, 4, 0.75f);
	cr_assert_eq(top[0].row, 4);
	cr_assert_eq(top[1].row, 1);
}

Test(topk, push_with_zero_k_keeps_nothing)
{
	sc_cand top[1] = { { 99, 9.0f } };
	size_t n = 0;

	sc_topk_push(top, &n, 0, 1, 1.0f);
	cr_assert_eq(n, 0);
	cr_assert_eq(top[0].row, 99);
}

/* ------------------------------------------------------ kernel choice */

Test(kernel, scalar_is_always_available)
{
	const sc_kernel *k = sc_kernel_by_name("scalar");
	cr_assert_not_null(k);
	cr_assert_str_eq(k->name, "scalar");
}

Test(kernel, by_name_returns_the_named_kernel_or_null)
{
	for (int i = 0; i < NKERNELS; i++) {
		const sc_kernel *k = sc_kernel_by_name(kernel_names[i]);
		if (k)
			cr_assert_str_eq(k->name, kernel_names[i]);
	}
	/* A CPU with AVX-512 in this project's sense has AVX2 too. */
	if (sc_kernel_by_name("avx512"))
		cr_assert_not_null(sc_kernel_by_name("avx2"));
}

Test(kernel, unsupported_name_returns_null)
{
	cr_assert_null(sc_kernel_by_name("avx1024"));
	cr_assert_null(sc_kernel_by_name(""));
	cr_assert_null(sc_kernel_by_name(NULL));
}

Test(kernel, env_value_can_only_lower_the_choice)
{
	const sc_kernel *best = sc_kernel_pick(NULL);

	cr_assert_not_null(best);
	cr_assert_eq(sc_kernel_by_name(best->name), best);
	cr_assert_eq(sc_kernel_pick("scalar"), sc_kernel_by_name("scalar"));
	cr_assert_eq(sc_kernel_pick("SCALAR"), sc_kernel_by_name("scalar"));
	for (int i = 0; i < NKERNELS; i++) {
		const sc_kernel *k = sc_kernel_by_name(kernel_names[i]);
		/* a supported name is honoured, an unsupported one falls back */
		cr_assert_eq(sc_kernel_pick(kernel_names[i]), k ? k : best);
	}
	cr_assert_eq(sc_kernel_pick(""), best);
	cr_assert_eq(sc_kernel_pick("bogus"), best);
}

Test(kernel, select_is_cached_and_follows_env)
{
	const sc_kernel *k = sc_kernel_select();

	cr_assert_not_null(k);
	cr_assert_eq(sc_kernel_select(), k);
	cr_assert_eq(k, sc_kernel_pick(getenv("SEMCACHE_KERNEL")));
}

/* Criterion forks every test, so this one's setenv reaches a fresh cache. */
Test(kernel, env_forces_scalar_before_first_select)
{
	setenv("SEMCACHE_KERNEL", "scalar", 1);
	cr_assert_str_eq(sc_kernel_select()->name, "scalar");
}

/* -------------------------------------------------------- f32 kernels */

Test(f32, every_kernel_agrees_with_scalar_on_dot)
{
	for (size_t d = 0; d < NDIMS; d++) {
		uint32_t dim = test_dims[d];
		/* odd offsets: dot() must not assume alignment */
		float *a = malloc((dim + 1) * sizeof(float)), *b = malloc((dim + 1) * sizeof(float));
		for (uint32_t i = 0; i <= dim; i++) {
			a[i] = rndf();
			b[i] = rndf();
		}
		normalise(a + 1, dim);
		normalise(b + 1, dim);
		double ref = ref_dot(a + 1, b + 1, dim);
		float s = scalar()->dot(a + 1, b + 1, dim);
		cr_assert(fabs(s - ref) <= 1e-5, "scalar dim %u: %f vs %f", dim, s, ref);
		for (int ki = 0; ki < NKERNELS; ki++) {
			const sc_kernel *k = sc_kernel_by_name(kernel_names[ki]);
			if (!k)
				continue;
			float v = k->dot(a + 1, b + 1, dim);
			cr_assert(fabsf(v - s) <= 1e-4f, "%s dim %u: %f vs scalar %f", k->name, dim, v, s);
		}
		free(a);
		free(b);
	}
}

Test(f32, every_kernel_agrees_with_scalar_on_scan)
{
	const size_t rows = 300, k = 10;

	for (size_t d = 0; d < NDIMS; d++) {
		uint32_t dim = test_dims[d];
		float *m = make_matrix(rows, dim), *q = make_query(dim);
		sc_scanmeta *meta = make_meta(rows);
		sc_cand ref[10], got[10];
		size_t nref;

		/* every third row is of another scope, every fifth expired */
		for (size_t r = 0; r < rows; r++) {
			if (r % 3 == 0)
				meta[r].scope = SCOPE + 1;
			if (r % 5 == 0)
				meta[r].sem_expiry_ms = NOW;
		}
		nref = scalar()->scan_f32(m, sc_row_stride(dim), meta, rows, SCOPE, NOW, q, dim, -1.0f,
		                          ref, k);
		cr_assert_eq(nref, k, "dim %u", dim);
		for (int ki = 0; ki < NKERNELS; ki++) {
			const sc_kernel *kern = sc_kernel_by_name(kernel_names[ki]);
			if (!kern)
				continue;
			size_t n = kern->scan_f32(m, sc_row_stride(dim), meta, rows, SCOPE, NOW, q, dim,
			                          -1.0f, got, k);
			cr_assert_eq(n, nref, "%s dim %u", kern->name, dim);
			for (size_t j = 0; j < n; j++) {
				cr_assert_eq(got[j].row, ref[j].row, "%s dim %u rank %zu", kern->name, dim, j);
				cr_assert(fabsf(got[j].score - ref[j].score) <= 1e-4f);
				/* a kept row re-scores to the very same value */
				cr_assert_eq(kern->dot(m + got[j].row * sc_row_stride(dim), q, dim), got[j].score);
			}
		}
		free(m);
		free(q);
		free(meta);
	}
}

Test(f32, scan_matches_brute_force_top_k)
{
	const uint32_t dim = 100;
	const size_t rows = 500;
	float *m = make_matrix(rows, dim), *q = make_query(dim);
	sc_scanmeta *meta = make_meta(rows);
	double score[500];

	for (size_t r = 0; r < rows; r++)
		score[r] = ref_dot(m + r * sc_row_stride(dim), q, dim);
	for (int ki = 0; ki < NKERNELS; ki++) {
		const sc_kernel *k = sc_kernel_by_name(kernel_names[ki]);
		sc_cand top[7];
		if (!k)
			continue;
		size_t n = k->scan_f32(m, sc_row_stride(dim), meta, rows, SCOPE, NOW, q, dim, -1.0f,
		                       top, 7);
		cr_assert_eq(n, 7, "%s: capped at k", k->name);
		for (size_t j = 0; j < n; j++) {
			size_t better = 0;
			if (j > 0)
				cr_assert(top[j - 1].score >= top[j].score, "%s: sorted", k->name);
			for (size_t r = 0; r < rows; r++)
				if (score[r] > score[top[j].row])
					better++;
			cr_assert_eq(better, j, "%s: rank %zu", k->name, j);
		}
	}
	free(m);
	free(q);
	free(meta);
}

Test(f32, equal_scores_keep_the_lowest_rows_in_every_kernel)
{
	const uint32_t dim = 33;
	const size_t rows = 101, stride = sc_row_stride(dim);
	float *m = make_matrix(rows, dim), *q = make_query(dim);
	sc_scanmeta *meta = make_meta(rows);

	/* Every row is the same vector: all scores tie exactly. */
	for (size_t r = 1; r < rows; r++)
		memcpy(m + r * stride, m, dim * sizeof(float));
	for (int ki = 0; ki < NKERNELS; ki++) {
		const sc_kernel *k = sc_kernel_by_name(kernel_names[ki]);
		sc_cand top[4];
		if (!k)
			continue;
		size_t n = k->scan_f32(m, stride, meta, rows, SCOPE, NOW, q, dim, -1.0f, top, 4);
		cr_assert_eq(n, 4);
		for (size_t j = 0; j < n; j++)
			cr_assert_eq(top[j].row, j, "%s rank %zu: row %u", k->name, j, top[j].row);
	}
	free(m);
	free(q);
	free(meta);
}

Test(f32, other_scope_never_returned_even_if_identical)
{
	const uint32_t dim = 768;
	const size_t rows = 64, stride = sc_row_stride(dim);
	float *m = make_matrix(rows, dim), *q = make_query(dim);
	sc_scanmeta *meta = make_meta(rows);

	/* Even rows are exact copies of the query but belong to another scope. */
	for (size_t r = 0; r < rows; r += 2) {
		memcpy(m + r * stride, q, dim * sizeof(float));
		meta[r].scope = SCOPE + 1;
	}
	for (int ki = 0; ki < NKERNELS; ki++) {
		const sc_kernel *k = sc_kernel_by_name(kernel_names[ki]);
		sc_cand top[64];
		if (!k)
			continue;
		size_t n = k->scan_f32(m, stride, meta, rows, SCOPE, NOW, q, dim, -1.0f, top, 64);
		cr_assert_eq(n, rows / 2, "%s", k->name);
		for (size_t j = 0; j < n; j++)
			cr_assert(top[j].row % 2 == 1, "%s returned row %u", k->name, top[j].row);
		/* and the other scope sees only its copies */
		n = k->scan_f32(m, stride, meta, rows, SCOPE + 1, NOW, q, dim, 0.99f, top, 64);
		cr_assert_eq(n, rows / 2, "%s", k->name);
	}
	free(m);
	free(q);
	free(meta);
}

Test(f32, expired_and_empty_rows_skipped)
{
	const uint32_t dim = 17;
	const size_t rows = 40, stride = sc_row_stride(dim);
	float *m = make_matrix(rows, dim), *q = make_query(dim);
	sc_scanmeta *meta = make_meta(rows);

	for (size_t r = 0; r < rows; r++) {
		memcpy(m + r * stride, q, dim * sizeof(float));
		if (r % 4 == 0)
			meta[r].sem_expiry_ms = 0;          /* empty */
		else if (r % 4 == 1)
			meta[r].sem_expiry_ms = NOW;        /* expires exactly now */
		else if (r % 4 == 2)
			meta[r].sem_expiry_ms = NOW - 500;  /* long gone */
	}
	for (int ki = 0; ki < NKERNELS; ki++) {
		const sc_kernel *k = sc_kernel_by_name(kernel_names[ki]);
		sc_cand top[40];
		if (!k)
			continue;
		size_t n = k->scan_f32(m, stride, meta, rows, SCOPE, NOW, q, dim, -1.0f, top, 40);
		cr_assert_eq(n, rows / 4, "%s", k->name);
		for (size_t j = 0; j < n; j++)
			cr_assert_eq(top[j].row % 4, 3, "%s returned row %u", k->name, top[j].row);
		/* an empty row stays empty even for a nonsensical negative now */
		n = k->scan_f32(m, stride, meta, rows, SCOPE, -5, q, dim, -1.0f, top, 40);
		for (size_t j = 0; j < n; j++)
			cr_assert_neq(top[j].row % 4, 0, "%s returned empty row %u", k->name, top[j].row);
		cr_assert_eq(n, 3 * rows / 4, "%s", k->name);
	}
	free(m);
	free(q);
	free(meta);
}

Test(f32, threshold_respected)
{
	const uint32_t dim = 16;
	const size_t rows = 400, stride = sc_row_stride(dim);
	float *m = make_matrix(rows, dim), *q = make_query(dim);
	sc_scanmeta *meta = make_meta(rows);
	const float thr = 0.3f;
	size_t want = 0;

	for (size_t r = 0; r < rows; r++)
		if (scalar()->dot(m + r * stride, q, dim) >= thr)
			want++;
	cr_assert(want > 0 && want < rows);
	for (int ki = 0; ki < NKERNELS; ki++) {
		const sc_kernel *k = sc_kernel_by_name(kernel_names[ki]);
		sc_cand top[400];
		if (!k)
			continue;
		size_t n = k->scan_f32(m, stride, meta, rows, SCOPE, NOW, q, dim, thr, top, rows);
		cr_assert_eq(n, want, "%s", k->name);
		for (size_t j = 0; j < n; j++)
			cr_assert(top[j].score >= thr);
	}
	free(m);
	free(q);
	free(meta);
}

Test(f32, threshold_zero_excludes_negative_scores)
{
	const uint32_t dim = 3;
	const size_t rows = 4, stride = sc_row_stride(dim);
	float *m = make_matrix(rows, dim);
	float q[3] = { 1, 0, 0 };
	const float xs[4] = { 0.5f, -0.25f, 0.0f, -1.0f };
	sc_scanmeta *meta = make_meta(rows);

	for (size_t r = 0; r < rows; r++) {
		m[r * stride + 0] = xs[r];
		m[r * stride + 1] = sqrtf(1 - xs[r] * xs[r]);
		m[r * stride + 2] = 0;
	}
	for (int ki = 0; ki < NKERNELS; ki++) {
		const sc_kernel *k = sc_kernel_by_name(kernel_names[ki]);
		sc_cand top[4];
		if (!k)
			continue;
		size_t n = k->scan_f32(m, stride, meta, rows, SCOPE, NOW, q, dim, 0.0f, top, 4);
		cr_assert_eq(n, 2, "%s kept %zu", k->name, n);
		cr_assert_eq(top[0].row, 0);
		cr_assert_eq(top[1].row, 2);  /* a score of exactly 0 meets threshold 0 */
	}
	free(m);
	free(meta);
}

Test(f32, nan_rows_never_returned)
{
	const uint32_t dims[] = { 5, 16, 33, 768 };

	for (size_t d = 0; d < 4; d++) {
		uint32_t dim = dims[d];
		const size_t rows = 32, stride = sc_row_stride(dim);
		float *m = make_matrix(rows, dim), *q = make_query(dim);
		sc_scanmeta *meta = make_meta(rows);

		/* Poison even rows at varying positions, including the tail
		 * block a masked load handles. */
		for (size_t r = 0; r < rows; r += 2) {
			memcpy(m + r * stride, q, dim * sizeof(float));
			m[r * stride + (r * 7) % dim] = (r % 4) ? NAN : -NAN;
		}
		m[6 * stride + dim - 1] = INFINITY;  /* inf * x summed with -inf below */
		m[6 * stride] = -INFINITY;
		m[6 * stride + (dim > 1 ? 1 : 0)] = NAN;
		for (int ki = 0; ki < NKERNELS; ki++) {
			const sc_kernel *k = sc_kernel_by_name(kernel_names[ki]);
			sc_cand top[32];
			if (!k)
				continue;
			size_t n = k->scan_f32(m, stride, meta, rows, SCOPE, NOW, q, dim, -INFINITY, top, 32);
			cr_assert_eq(n, rows / 2, "%s dim %u kept %zu", k->name, dim, n);
			for (size_t j = 0; j < n; j++) {
				cr_assert_eq(top[j].row % 2, 1, "%s dim %u", k->name, dim);
				cr_assert(!isnan(top[j].score));
			}
		}
		free(m);
		free(q);
		free(meta);
	}
}

Test(f32, zero_k_or_rows_returns_nothing)
{
	const uint32_t dim = 16;
	float *m = make_matrix(4, dim), *q = make_query(dim);
	sc_scanmeta *meta = make_meta(4);

	for (int ki = 0; ki < NKERNELS; ki++) {
		const sc_kernel *k = sc_kernel_by_name(kernel_names[ki]);
		sc_cand top[1] = { { 77, 7.0f } };
		if (!k)
			continue;
		cr_assert_eq(k->scan_f32(m, 16, meta, 4, SCOPE, NOW, q, dim, -1.0f, top, 0), 0);
		cr_assert_eq(top[0].row, 77);
		cr_assert_eq(k->scan_f32(m, 16, meta, 0, SCOPE, NOW, q, dim, -1.0f, top, 1), 0);
		cr_assert_eq(k->scan_i8(NULL, 64, NULL, meta, 0, SCOPE, NOW, NULL, 1.0f, dim, top, 1), 0);
		cr_assert_eq(k->scan_bits(NULL, 64, meta, 0, SCOPE, NOW, NULL, dim, top, 1), 0);
	}
	free(m);
	free(q);
	free(meta);
}

/* --------------------------------------------------------- quantising */

Test(quant, i8_scales_by_max_abs_and_zero_fills)
{
	const float x[5] = { 0.5f, -1.0f, 0.25f, 0.0f, -0.125f };
	int8_t out[64];

	memset(out, 0x55, sizeof out);
	float scale = sc_quant_i8(x, 5, out, 64);
	cr_assert_eq(scale, 1.0f);
	cr_assert_eq(out[0], 64);   /* round(63.5) */
	cr_assert_eq(out[1], -127);
	cr_assert_eq(out[2], 32);   /* round(31.75) */
	cr_assert_eq(out[3], 0);
	cr_assert_eq(out[4], -16);  /* round(-15.875) */
	for (size_t i = 5; i < 64; i++)
		cr_assert_eq(out[i], 0, "padding byte %zu", i);
}

Test(quant, i8_tolerates_zero_and_non_finite_input)
{
	const float zero[3] = { 0, 0, 0 };
	const float bad[4] = { NAN, INFINITY, -INFINITY, 0.5f };
	int8_t out[64];

	cr_assert_eq(sc_quant_i8(zero, 3, out, 64), 0.0f);
	for (size_t i = 0; i < 64; i++)
		cr_assert_eq(out[i], 0);
	cr_assert_eq(sc_quant_i8(bad, 4, out, 64), 0.5f);
	cr_assert_eq(out[0], 0);
	cr_assert_eq(out[1], 127);
	cr_assert_eq(out[2], -127);
	cr_assert_eq(out[3], 127);
}

Test(quant, bits_follow_sign_and_zero_fill)
{
	float x[11];
	uint8_t out[64];

	for (int i = 0; i < 11; i++)
		x[i] = (i % 3 == 0) ? -1.0f : 1.0f;
	x[1] = 0.0f;   /* >= 0: set */
	x[2] = -0.0f;  /* -0.0 >= 0 holds too */
	memset(out, 0xaa, sizeof out);
	sc_quant_bits(x, 11, out, 64);
	/* i: 0- 1+ 2+ 3- 4+ 5+ 6- 7+ | 8+ 9- 10+ */
	cr_assert_eq(out[0], 0xb6, "got %#x", out[0]);
	cr_assert_eq(out[1], 0x05, "got %#x", out[1]);
	for (size_t i = 2; i < 64; i++)
		cr_assert_eq(out[i], 0, "padding byte %zu", i);
}

/* ---------------------------------------------------- quantised scans */

struct qset {
	uint32_t dim;
	size_t rows, qs8, qsb;
	float *m, *scale, *q;
	int8_t *m8, *q8;
	uint8_t *mb, *qb;
	float qscale;
	sc_scanmeta *meta;
};

/*
 * Easy data: random rows, and a query that is row `target` plus a little
 * noise, so the true best row is unambiguous even after quantisation.
 * Padding bytes of the quantised rows are then overwritten with garbage,
 * which the kernels must not count.
 */
static void qset_make(struct qset *s, uint32_t dim, size_t rows, size_t target)
{
	size_t stride = sc_row_stride(dim);

	s->dim = dim;
	s->rows = rows;
	s->qs8 = sc_i8_stride(dim);
	s->qsb = sc_bits_stride(dim);
	s->m = make_matrix(rows, dim);
	s->q = make_query(dim);
	s->meta = make_meta(rows);
	s->scale = malloc(rows * sizeof(float));
	s->m8 = aligned_alloc(64, rows * s->qs8);
	s->mb = aligned_alloc(64, rows * s->qsb);
	s->q8 = aligned_alloc(64, s->qs8);
	s->qb = aligned_alloc(64, s->qsb);
	for (uint32_t i = 0; i < dim; i++)
		s->q[i] = s->m[target * stride + i] + 0.1f * rndf() / sqrtf((float)dim);
	normalise(s->q, dim);
	for (size_t r = 0; r < rows; r++) {
		s->scale[r] = sc_quant_i8(s->m + r * stride, dim, s->m8 + r * s->qs8, s->qs8);
		sc_quant_bits(s->m + r * stride, dim, s->mb + r * s->qsb, s->qsb);
		memset(s->m8 + r * s->qs8 + dim, 0x81, s->qs8 - dim);
		if (dim % 8)
			s->mb[r * s->qsb + dim / 8] |= (uint8_t)(0xffu << (dim % 8));
		memset(s->mb + r * s->qsb + (dim + 7) / 8, 0xff, s->qsb - (dim + 7) / 8);
	}
	s->qscale = sc_quant_i8(s->q, dim, s->q8, s->qs8);
	sc_quant_bits(s->q, dim, s->qb, s->qsb);
}

static void qset_free(struct qset *s)
{
	free(s->m); free(s->q); free(s->meta); free(s->scale);
	free(s->m8); free(s->mb); free(s->q8); free(s->qb);
}

static double ref_i8_score(const struct qset *s, size_t r)
{
	int64_t d = 0;
	for (uint32_t i = 0; i < s->dim; i++)
		d += (int64_t)s->m8[r * s->qs8 + i] * s->q8[i];
	return (double)d * s->scale[r] * s->qscale / (127.0 * 127.0);
}

static int ref_bits_score(const struct qset *s, size_t r)
{
	int ham = 0;
	for (uint32_t i = 0; i < s->dim; i++)
		ham += ((s->mb[r * s->qsb + i / 8] ^ s->qb[i / 8]) >> (i % 8)) & 1;
	return (int)s->dim - 2 * ham;
}

Test(quant, i8_scan_finds_true_best_and_kernels_agree)
{
	for (size_t d = 0; d < NQDIMS; d++) {
		struct qset s;
		const size_t target = 37;
		sc_cand ref[5], got[5];

		qset_make(&s, q_dims[d], 200, target);
		size_t nref = scalar()->scan_i8(s.m8, s.qs8, s.scale, s.meta, s.rows, SCOPE, NOW, s.q8,
		                                s.qscale, s.dim, ref, 5);
		cr_assert_eq(nref, 5);
		for (size_t j = 0; j < nref; j++)
			cr_assert(fabs(ref[j].score - ref_i8_score(&s, ref[j].row)) <= 1e-5,
			          "dim %u: scalar score %f vs %f", s.dim, ref[j].score,
			          ref_i8_score(&s, ref[j].row));
		if (s.dim >= 16)  /* tiny dims are not "easy": too few components */
			cr_assert_eq(ref[0].row, target, "dim %u: best %u", s.dim, ref[0].row);
		for (int ki = 0; ki < NKERNELS; ki++) {
			const sc_kernel *k = sc_kernel_by_name(kernel_names[ki]);
			if (!k)
				continue;
			size_t n = k->scan_i8(s.m8, s.qs8, s.scale, s.meta, s.rows, SCOPE, NOW, s.q8,
			                      s.qscale, s.dim, got, 5);
			cr_assert_eq(n, nref, "%s dim %u", k->name, s.dim);
			for (size_t j = 0; j < n; j++) {
				cr_assert_eq(got[j].row, ref[j].row, "%s dim %u rank %zu", k->name, s.dim, j);
				cr_assert_eq(got[j].score, ref[j].score, "%s dim %u rank %zu", k->name, s.dim, j);
			}
		}
		qset_free(&s);
	}
}

Test(quant, bits_scan_finds_true_best_and_kernels_agree)
{
	for (size_t d = 0; d < NQDIMS; d++) {
		struct qset s;
		const size_t target = 123;
		sc_cand ref[5], got[5];

		qset_make(&s, q_dims[d], 200, target);
		size_t nref = scalar()->scan_bits(s.mb, s.qsb, s.meta, s.rows, SCOPE, NOW, s.qb, s.dim,
		                                  ref, 5);
		cr_assert_eq(nref, 5);
		for (size_t j = 0; j < nref; j++)
			cr_assert_eq((int)ref[j].score, ref_bits_score(&s, ref[j].row), "dim %u", s.dim);
		if (s.dim >= 64)
			cr_assert_eq(ref[0].row, target, "dim %u: best %u", s.dim, ref[0].row);
		for (int ki = 0; ki < NKERNELS; ki++) {
			const sc_kernel *k = sc_kernel_by_name(kernel_names[ki]);
			if (!k)
				continue;
			size_t n = k->scan_bits(s.mb, s.qsb, s.meta, s.rows, SCOPE, NOW, s.qb, s.dim, got, 5);
			cr_assert_eq(n, nref, "%s dim %u", k->name, s.dim);
			for (size_t j = 0; j < n; j++) {
				cr_assert_eq(got[j].row, ref[j].row, "%s dim %u rank %zu", k->name, s.dim, j);
				cr_assert_eq(got[j].score, ref[j].score, "%s dim %u rank %zu", k->name, s.dim, j);
			}
		}
		qset_free(&s);
	}
}

Test(quant, quantised_scans_apply_the_filter)
{
	struct qset s;
	const size_t target = 10;

	qset_make(&s, 384, 50, target);
	/* The target and its exact copies are all invisible to this scope. */
	s.meta[target].scope = SCOPE + 1;
	s.meta[11].sem_expiry_ms = 0;
	s.meta[12].sem_expiry_ms = NOW;
	memcpy(s.m8 + 11 * s.qs8, s.m8 + target * s.qs8, s.qs8);
	memcpy(s.m8 + 12 * s.qs8, s.m8 + target * s.qs8, s.qs8);
	memcpy(s.mb + 11 * s.qsb, s.mb + target * s.qsb, s.qsb);
	memcpy(s.mb + 12 * s.qsb, s.mb + target * s.qsb, s.qsb);
	s.scale[11] = s.scale[12] = s.scale[target];
	for (int ki = 0; ki < NKERNELS; ki++) {
		const sc_kernel *k = sc_kernel_by_name(kernel_names[ki]);
		sc_cand top[50];
		size_t n;
		if (!k)
			continue;
		n = k->scan_i8(s.m8, s.qs8, s.scale, s.meta, s.rows, SCOPE, NOW, s.q8, s.qscale, s.dim,
		               top, 50);
		cr_assert_eq(n, 47, "%s i8", k->name);
		for (size_t j = 0; j < n; j++)
			cr_assert(top[j].row < 10 || top[j].row > 12, "%s i8 row %u", k->name, top[j].row);
		n = k->scan_bits(s.mb, s.qsb, s.meta, s.rows, SCOPE, NOW, s.qb, s.dim, top, 50);
		cr_assert_eq(n, 47, "%s bits", k->name);
		for (size_t j = 0; j < n; j++)
			cr_assert(top[j].row < 10 || top[j].row > 12, "%s bits row %u", k->name, top[j].row);
	}
	qset_free(&s);
}

Test(quant, i8_nan_scale_never_returned)
{
	struct qset s;

	qset_make(&s, 64, 20, 3);
	s.scale[3] = NAN;  /* a torn write may leave anything in the scale */
	for (int ki = 0; ki < NKERNELS; ki++) {
		const sc_kernel *k = sc_kernel_by_name(kernel_names[ki]);
		sc_cand top[20];
		if (!k)
			continue;
		size_t n = k->scan_i8(s.m8, s.qs8, s.scale, s.meta, s.rows, SCOPE, NOW, s.q8, s.qscale,
		                      s.dim, top, 20);
		cr_assert_eq(n, 19, "%s", k->name);
		for (size_t j = 0; j < n; j++)
			cr_assert_neq(top[j].row, 3);
	}
	qset_free(&s);
}

/* At 70000 dims the biased VNNI sum, 255 * 127 * dim, no longer fits in 32
 * bits: the kernels must still return the exact dot. */
Test(quant, i8_dot_exact_at_large_dims)
{
	const uint32_t dim = 70000;
	const size_t qs = sc_i8_stride(dim);
	float *x = malloc(dim * sizeof(float));
	int8_t *m8 = aligned_alloc(64, 2 * qs), *q8 = aligned_alloc(64, qs);
	float scale[2], qscale;
	sc_scanmeta *meta = make_meta(2);

	for (uint32_t i = 0; i < dim; i++)
		x[i] = 1.0f;
	scale[0] = sc_quant_i8(x, dim, m8, qs);
	qscale = sc_quant_i8(x, dim, q8, qs);
	for (uint32_t i = 0; i < dim; i++)
		x[i] = (i % 2) ? 1.0f : -1.0f;
	scale[1] = sc_quant_i8(x, dim, m8 + qs, qs);
	for (int ki = 0; ki < NKERNELS; ki++) {
		const sc_kernel *k = sc_kernel_by_name(kernel_names[ki]);
		sc_cand top[2];
		if (!k)
			continue;
		size_t n = k->scan_i8(m8, qs, scale, meta, 2, SCOPE, NOW, q8, qscale, dim, top, 2);
		cr_assert_eq(n, 2, "%s", k->name);
		cr_assert_eq(top[0].row, 0, "%s", k->name);
		cr_assert(fabsf(top[0].score - 70000.0f) < 1.0f, "%s: %f", k->name, top[0].score);
		cr_assert(fabsf(top[1].score) < 1.0f, "%s: %f", k->name, top[1].score);
	}
	free(x);
	free(m8);
	free(q8);
	free(meta);
}

/*
 * Rows that fail the filter must not be read at all: a writer may be in
 * the middle of them, and reading costs bandwidth.  Each row here sits on
 * its own page and every filtered-out row's page is inaccessible, so a
 * kernel that touches one crashes the test.  (Prefetches never fault, so
 * this checks demand loads only, which is the promise.)
 */
Test(filter, filtered_rows_are_never_read)
{
	const size_t page = (size_t)sysconf(_SC_PAGESIZE), rows = 12;
	const uint32_t dim = 100;
	uint8_t *mem = mmap(NULL, rows * page, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS,
	                    -1, 0);
	sc_scanmeta *meta = make_meta(rows);
	float *q = make_query(dim), scale[12];
	int8_t q8[128];
	uint8_t qb[64];
	float qscale;

	cr_assert(mem != MAP_FAILED);
	qscale = sc_quant_i8(q, dim, q8, sizeof q8);
	sc_quant_bits(q, dim, qb, sizeof qb);
	for (size_t r = 0; r < rows; r++) {
		float *row = (float *)(mem + r * page);
		for (uint32_t i = 0; i < dim; i++)
			row[i] = rndf();
		normalise(row, dim);
		scale[r] = 1.0f;
		switch (r % 4) {
		case 0: meta[r].scope = SCOPE + 1; break;       /* other scope */
		case 1: meta[r].sem_expiry_ms = NOW; break;     /* expired */
		case 2: meta[r].sem_expiry_ms = 0; break;       /* empty */
		default: continue;                              /* live */
		}
		cr_assert_eq(mprotect(mem + r * page, page, PROT_NONE), 0);
	}
	for (int ki = 0; ki < NKERNELS; ki++) {
		const sc_kernel *k = sc_kernel_by_name(kernel_names[ki]);
		sc_cand top[12];
		if (!k)
			continue;
		/* The same pages serve as f32, int8 and bit rows: any bytes do. */
		cr_assert_eq(k->scan_f32((const float *)mem, page / sizeof(float), meta, rows, SCOPE,
		                         NOW, q, dim, -2.0f, top, 12), 3, "%s f32", k->name);
		cr_assert_eq(k->scan_i8((const int8_t *)mem, page, scale, meta, rows, SCOPE, NOW, q8,
		                        qscale, dim, top, 12), 3, "%s i8", k->name);
		cr_assert_eq(k->scan_bits(mem, page, meta, rows, SCOPE, NOW, qb, dim, top, 12), 3,
		             "%s bits", k->name);
	}
	munmap(mem, rows * page);
	free(meta);
	free(q);
}
