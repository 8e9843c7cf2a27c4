/*
 * scan_scalar.c - the portable scan kernel: plain C that runs on any CPU.
 *
 * It is both the fallback for CPUs without AVX2 and the reference the SIMD
 * kernels are tested against, so it favours being obviously right over
 * being fast: the float dot product keeps eight partial sums (which lets
 * the compiler use whatever vector unit the baseline target has, without
 * -ffast-math) and the int8 dot accumulates in 64 bits so no dimension can
 * overflow it.
 *
 * Filtering is identical in every kernel: a row is scored only if its scope
 * matches and its expiry lies after max(now, 0), so an empty row (expiry 0)
 * is skipped even for a nonsensical negative `now`; rows that fail are not
 * touched at all.  Rows may be rewritten while we read them: any value is
 * tolerated, and NaN scores are kept out of top[] by the comparison with
 * threshold and by sc_topk_push().
 */
#include "scan.h"

static float sc_scalar_dot(const float *a, const float *b, uint32_t dim)
{
	float s[8] = { 0 }, t = 0.0f;
	size_t i = 0;

	for (; i + 8 <= dim; i += 8)
		for (size_t j = 0; j < 8; j++)
			s[j] += a[i + j] * b[i + j];
	for (; i < dim; i++)
		t += a[i] * b[i];
	return ((s[0] + s[4]) + (s[1] + s[5])) + ((s[2] + s[6]) + (s[3] + s[7])) + t;
}

static size_t sc_scalar_scan_f32(const float *matrix, size_t stride, const sc_scanmeta *meta,
                                 size_t nrows, uint64_t scope, int64_t now, const float *q,
                                 uint32_t dim, float threshold, sc_cand *top, size_t k)
{
	size_t n = 0;

	if (k == 0 || nrows == 0)
		return 0;
	if (now < 0)
		now = 0;
	for (size_t r = 0; r < nrows; r++) {
		float s;
		if (!sc_row_live(&meta[r], scope, now))
			continue;
		s = sc_scalar_dot(matrix + r * stride, q, dim);
		/* false for NaN, so NaN never reaches the keeper */
		if (s >= threshold && (n < k || s > top[k - 1].score))
			sc_topk_push(top, &n, k, (uint32_t)r, s);
	}
	return n;
}

static size_t sc_scalar_scan_i8(const int8_t *qmatrix, size_t qstride, const float *scale,
                                const sc_scanmeta *meta, size_t nrows, uint64_t scope,
                                int64_t now, const int8_t *q8, float qscale, uint32_t dim,
                                sc_cand *top, size_t k)
{
	/* Every kernel scales with the same expression, so they agree exactly. */
	const float qk = qscale / (127.0f * 127.0f);
	size_t n = 0;

	if (k == 0 || nrows == 0)
		return 0;
	if (now < 0)
		now = 0;
	for (size_t r = 0; r < nrows; r++) {
		const int8_t *row = qmatrix + r * qstride;
		int64_t d = 0;
		float s;
		if (!sc_row_live(&meta[r], scope, now))
			continue;
		for (size_t i = 0; i < dim; i++)
			d += (int32_t)row[i] * (int32_t)q8[i];
		s = (float)d * scale[r] * qk;
		if (n < k || s > top[k - 1].score)
			sc_topk_push(top, &n, k, (uint32_t)r, s);
	}
	return n;
}

/* Little-endian 64-bit word from possibly unaligned bytes. */
static inline uint64_t sc_load64(const uint8_t *p)
{
	uint64_t w = 0;
	for (unsigned i = 0; i < 8; i++)
		w |= (uint64_t)p[i] << (8 * i);
	return w;
}

static size_t sc_scalar_scan_bits(const uint8_t *bits, size_t qstride, const sc_scanmeta *meta,
                                  size_t nrows, uint64_t scope, int64_t now,
                                  const uint8_t *qbits, uint32_t dim, sc_cand *top, size_t k)
{
	/* Bits past dim are masked off in both operands, so a row's padding
	 * bits cannot shift its score whatever a writer left there. */
	const size_t nwords = dim / 64u, rembits = dim % 64u, rembytes = (rembits + 7u) / 8u;
	const uint64_t remmask = rembits ? (~(uint64_t)0 >> (64u - rembits)) : 0;
	uint64_t qtail = 0;
	size_t n = 0;

	if (k == 0 || nrows == 0)
		return 0;
	if (now < 0)
		now = 0;
	for (size_t i = 0; i < rembytes; i++)
		qtail |= (uint64_t)qbits[nwords * 8u + i] << (8 * i);
	qtail &= remmask;
	for (size_t r = 0; r < nrows; r++) {
		const uint8_t *row = bits + r * qstride;
		uint64_t ham = 0, tail = 0;
		float s;
		if (!sc_row_live(&meta[r], scope, now))
			continue;
		for (size_t w = 0; w < nwords; w++)
			ham += (uint64_t)__builtin_popcountll(sc_load64(row + 8 * w) ^
			                                      sc_load64(qbits + 8 * w));
		for (size_t i = 0; i < rembytes; i++)
			tail |= (uint64_t)row[nwords * 8u + i] << (8 * i);
		ham += (uint64_t)__builtin_popcountll((tail & remmask) ^ qtail);
		s = (float)((int64_t)dim - 2 * (int64_t)ham);
		if (n < k || s > top[k - 1].score)
			sc_topk_push(top, &n, k, (uint32_t)r, s);
	}
	return n;
}

/* Declared here rather than in scan.h: only scan.c, which checks the CPU
 * first, may hand this table out. */
extern const sc_kernel sc_kernel_scalar;
const sc_kernel sc_kernel_scalar = {
	.name = "scalar",
	.dot = sc_scalar_dot,
	.scan_f32 = sc_scalar_scan_f32,
	.scan_i8 = sc_scalar_scan_i8,
	.scan_bits = sc_scalar_scan_bits,
};
