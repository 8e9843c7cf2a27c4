/*
 * scan_avx2.c - the AVX2+FMA scan kernel, for x86-64 CPUs without a usable
 * AVX-512 (Haswell to Alder Lake, Zen 1-3, or AVX-512 parts lacking VNNI or
 * VPOPCNTDQ).
 *
 * Every function carries its instruction set in a target attribute, so the
 * file builds with the project's generic flags and nothing here runs unless
 * scan.c has checked the CPU.
 *
 * f32: the scan is bound by memory bandwidth, not arithmetic, so the inner
 * loop only has to keep enough loads in flight: four independent FMA
 * chains over 32 floats, then 8-float steps, then a masked load for the
 * last dim % 8 floats.  Rows are visited as two interleaved sequential
 * streams and without software prefetch, for the reasons measured in
 * scan_avx512.c.  The masked load matters for correctness, not just
 * speed: the padding floats between dim and the row stride are whatever a
 * writer left there and must not enter the sum.  scan_f32 scores a row
 * with the very same routine as dot(), so a re-score of a kept row
 * reproduces its scan score bit for bit.
 *
 * int8: vpmaddubsw multiplies unsigned by signed bytes and saturates its
 * 16-bit pair sums, so the operands are arranged as |q| (unsigned, <= 127
 * for a query from sc_quant_i8) times row*sign(q) (signed): the pair sum
 * is then at most 2*127*128 and cannot saturate.  vpmaddwd against ones
 * widens to 32-bit lanes.  The last dim % 32 bytes go through a zeroed
 * buffer since AVX2 has no byte-masked load.
 *
 * bits: 64-bit popcnt (every AVX2 CPU has it) with four counters; the last
 * partial word is masked to dim bits in both operands.
 */
#include "scan.h"

#include <immintrin.h>
#include <string.h>

#define SC_AVX2 __attribute__((target("avx2,fma,popcnt")))

/* How far ahead the quantised scans prefetch, in bytes of row data: the
 * row that starts about this far ahead is prefetched whole if it will be
 * scored.  See scan_avx512.c for why and for the measurements behind it. */
#ifndef SC_AVX2_PF_BYTES
#define SC_AVX2_PF_BYTES 4096u
#endif

/* Loaded from offset 8 - n, gives a mask of n leading all-ones lanes. */
static const int32_t sc_avx2_tailmask[16] = { -1, -1, -1, -1, -1, -1, -1, -1,
	                                      0,  0,  0,  0,  0,  0,  0,  0 };

SC_AVX2 static inline float sc_avx2_hsum(__m256 v)
{
	__m128 x = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
	x = _mm_add_ps(x, _mm_movehl_ps(x, x));
	x = _mm_add_ss(x, _mm_shuffle_ps(x, x, 1));
	return _mm_cvtss_f32(x);
}

SC_AVX2 static inline float sc_avx2_dot_row(const float *a, const float *b, uint32_t dim)
{
	__m256 s0 = _mm256_setzero_ps(), s1 = _mm256_setzero_ps();
	__m256 s2 = _mm256_setzero_ps(), s3 = _mm256_setzero_ps();
	size_t i = 0;

	for (; i + 32 <= dim; i += 32) {
		s0 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i), _mm256_loadu_ps(b + i), s0);
		s1 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i + 8), _mm256_loadu_ps(b + i + 8), s1);
		s2 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i + 16), _mm256_loadu_ps(b + i + 16), s2);
		s3 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i + 24), _mm256_loadu_ps(b + i + 24), s3);
	}
	for (; i + 8 <= dim; i += 8)
		s0 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i), _mm256_loadu_ps(b + i), s0);
	if (i < dim) {
		__m256i m = _mm256_loadu_si256((const __m256i *)(sc_avx2_tailmask + 8 - (dim - i)));
		s1 = _mm256_fmadd_ps(_mm256_maskload_ps(a + i, m), _mm256_maskload_ps(b + i, m), s1);
	}
	return sc_avx2_hsum(_mm256_add_ps(_mm256_add_ps(s0, s1), _mm256_add_ps(s2, s3)));
}

SC_AVX2 static float sc_avx2_dot(const float *a, const float *b, uint32_t dim)
{
	return sc_avx2_dot_row(a, b, dim);
}

/* Rows to look ahead so that about SC_AVX2_PF_BYTES are in flight. */
static inline size_t sc_pf_rows(size_t rowbytes)
{
	return rowbytes ? (SC_AVX2_PF_BYTES + rowbytes - 1) / rowbytes : 1;
}

/* Prefetch the first `bytes` bytes of a row, one request per cache line. */
SC_AVX2 static inline void sc_avx2_prefetch(const void *row, size_t bytes)
{
	const char *p = row, *end = p + bytes;

	for (; p < end; p += 64)
		_mm_prefetch(p, _MM_HINT_T0);
}

SC_AVX2 static size_t sc_avx2_scan_f32(const float *matrix, size_t stride,
                                       const sc_scanmeta *meta, size_t nrows, uint64_t scope,
                                       int64_t now, const float *q, uint32_t dim,
                                       float threshold, sc_cand *top, size_t k)
{
	size_t n = 0;

	if (k == 0 || nrows == 0)
		return 0;
	if (now < 0)
		now = 0;
	/* Two streams: row r of the first half, then row r of the second
	 * (see scan_avx512.c). */
	const size_t half = nrows - nrows / 2;
	for (size_t r = 0; r < half; r++) {
		for (size_t row = r; row < nrows; row += half) {
			float s;
			if (!sc_row_live(&meta[row], scope, now))
				continue;
			s = sc_avx2_dot_row(matrix + row * stride, q, dim);
			if (s >= threshold && (n < k || s >= top[k - 1].score))
				sc_topk_push(top, &n, k, (uint32_t)row, s);
		}
	}
	return n;
}

/* 32 products of |q| by row*sign(q), summed into eight 32-bit lanes. */
SC_AVX2 static inline __m256i sc_avx2_dot_i8_step(__m256i acc, __m256i row, __m256i q)
{
	__m256i p = _mm256_maddubs_epi16(_mm256_abs_epi8(q), _mm256_sign_epi8(row, q));
	return _mm256_add_epi32(acc, _mm256_madd_epi16(p, _mm256_set1_epi16(1)));
}

SC_AVX2 static size_t sc_avx2_scan_i8(const int8_t *qmatrix, size_t qstride, const float *scale,
                                      const sc_scanmeta *meta, size_t nrows, uint64_t scope,
                                      int64_t now, const int8_t *q8, float qscale, uint32_t dim,
                                      sc_cand *top, size_t k)
{
	const float qk = qscale / (127.0f * 127.0f);
	const size_t full = dim & ~(size_t)31, rem = dim - full;
	int8_t qtail[32] = { 0 };
	__m256i qt;
	size_t n = 0;

	if (k == 0 || nrows == 0)
		return 0;
	if (now < 0)
		now = 0;
	memcpy(qtail, q8 + full, rem);
	qt = _mm256_loadu_si256((const __m256i *)qtail);
	const size_t pf = sc_pf_rows(dim);
	for (size_t r = 0; r < nrows; r++) {
		const int8_t *row = qmatrix + r * qstride;
		__m256i a0 = _mm256_setzero_si256(), a1 = _mm256_setzero_si256(), w;
		__m128i x;
		size_t i = 0;
		float s;
		if (r + pf < nrows && sc_row_live(&meta[r + pf], scope, now))
			sc_avx2_prefetch(row + pf * qstride, dim);
		if (!sc_row_live(&meta[r], scope, now))
			continue;
		for (; i + 64 <= full; i += 64) {
			a0 = sc_avx2_dot_i8_step(a0, _mm256_loadu_si256((const __m256i *)(row + i)),
			                         _mm256_loadu_si256((const __m256i *)(q8 + i)));
			a1 = sc_avx2_dot_i8_step(a1, _mm256_loadu_si256((const __m256i *)(row + i + 32)),
			                         _mm256_loadu_si256((const __m256i *)(q8 + i + 32)));
		}
		if (i < full)
			a0 = sc_avx2_dot_i8_step(a0, _mm256_loadu_si256((const __m256i *)(row + i)),
			                         _mm256_loadu_si256((const __m256i *)(q8 + i)));
		if (rem) {
			int8_t rt[32] = { 0 };
			memcpy(rt, row + full, rem);
			a1 = sc_avx2_dot_i8_step(a1, _mm256_loadu_si256((const __m256i *)rt), qt);
		}
		a0 = _mm256_add_epi32(a0, a1);
		/* lanes summed in 64 bits: exact for any dim below 2^20 */
		w = _mm256_add_epi64(_mm256_cvtepi32_epi64(_mm256_castsi256_si128(a0)),
		                     _mm256_cvtepi32_epi64(_mm256_extracti128_si256(a0, 1)));
		x = _mm_add_epi64(_mm256_castsi256_si128(w), _mm256_extracti128_si256(w, 1));
		x = _mm_add_epi64(x, _mm_unpackhi_epi64(x, x));
		s = (float)_mm_cvtsi128_si64(x) * scale[r] * qk;
		if (n < k || s > top[k - 1].score)
			sc_topk_push(top, &n, k, (uint32_t)r, s);
	}
	return n;
}

SC_AVX2 static inline uint64_t sc_avx2_load64(const uint8_t *p)
{
	uint64_t w;
	memcpy(&w, p, sizeof w);  /* one unaligned mov; x86 is little-endian */
	return w;
}

SC_AVX2 static size_t sc_avx2_scan_bits(const uint8_t *bits, size_t qstride,
                                        const sc_scanmeta *meta, size_t nrows, uint64_t scope,
                                        int64_t now, const uint8_t *qbits, uint32_t dim,
                                        sc_cand *top, size_t k)
{
	const size_t nwords = dim / 64u, rembits = dim % 64u, rembytes = (rembits + 7u) / 8u;
	const uint64_t remmask = rembits ? (~(uint64_t)0 >> (64u - rembits)) : 0;
	uint64_t qtail = 0;
	size_t n = 0;

	if (k == 0 || nrows == 0)
		return 0;
	if (now < 0)
		now = 0;
	memcpy(&qtail, qbits + nwords * 8u, rembytes);
	qtail &= remmask;
	const size_t pf = sc_pf_rows(nwords * 8u + rembytes);
	for (size_t r = 0; r < nrows; r++) {
		const uint8_t *row = bits + r * qstride;
		uint64_t h0 = 0, h1 = 0, h2 = 0, h3 = 0, tail = 0;
		size_t w = 0;
		float s;
		if (r + pf < nrows && sc_row_live(&meta[r + pf], scope, now))
			sc_avx2_prefetch(row + pf * qstride, nwords * 8u + rembytes);
		if (!sc_row_live(&meta[r], scope, now))
			continue;
		for (; w + 4 <= nwords; w += 4) {
			h0 += (uint64_t)_mm_popcnt_u64(sc_avx2_load64(row + 8 * w) ^ sc_avx2_load64(qbits + 8 * w));
			h1 += (uint64_t)_mm_popcnt_u64(sc_avx2_load64(row + 8 * w + 8) ^ sc_avx2_load64(qbits + 8 * w + 8));
			h2 += (uint64_t)_mm_popcnt_u64(sc_avx2_load64(row + 8 * w + 16) ^ sc_avx2_load64(qbits + 8 * w + 16));
			h3 += (uint64_t)_mm_popcnt_u64(sc_avx2_load64(row + 8 * w + 24) ^ sc_avx2_load64(qbits + 8 * w + 24));
		}
		for (; w < nwords; w++)
			h0 += (uint64_t)_mm_popcnt_u64(sc_avx2_load64(row + 8 * w) ^ sc_avx2_load64(qbits + 8 * w));
		memcpy(&tail, row + nwords * 8u, rembytes);
		h1 += (uint64_t)_mm_popcnt_u64((tail & remmask) ^ qtail);
		s = (float)((int64_t)dim - 2 * (int64_t)((h0 + h1) + (h2 + h3)));
		if (n < k || s > top[k - 1].score)
			sc_topk_push(top, &n, k, (uint32_t)r, s);
	}
	return n;
}

/* Declared here rather than in scan.h: only scan.c, which checks the CPU
 * first, may hand this table out. */
extern const sc_kernel sc_kernel_avx2;
const sc_kernel sc_kernel_avx2 = {
	.name = "avx2",
	.dot = sc_avx2_dot,
	.scan_f32 = sc_avx2_scan_f32,
	.scan_i8 = sc_avx2_scan_i8,
	.scan_bits = sc_avx2_scan_bits,
};
