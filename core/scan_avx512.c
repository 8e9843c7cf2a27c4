/*
 * scan_avx512.c - the AVX-512 scan kernel (F, BW, VL, VNNI, VPOPCNTDQ:
 * Ice Lake, Sapphire Rapids, Zen 4 and later).
 *
 * Every function carries its instruction set in a target attribute, so the
 * file builds with the project's generic flags; scan.c hands this table
 * out only after checking all five extensions.
 *
 * f32: at 768 dims a row is 3 KiB and a 100k-row matrix 300 MB, far past
 * any cache, so the scan runs at whatever rate one core can pull lines
 * from DRAM; arithmetic is a small part of the budget.  Two measured
 * surprises shape the loop (Zen 5, 100k rows, 384..1536 dims, ratio to a
 * plain read loop in the same run):
 *  - 512-bit FMAs over the rows reach only 0.73-0.90 once the per-row
 *    filter and top-k bookkeeping surround them, while the same loop on
 *    256-bit vectors reaches 0.94-1.07.  The demand loads of the wider loop
 *    appear to run into the hardware prefetcher's stream instead of
 *    trailing it.  So f32 uses ymm registers, with AVX-512VL's masked
 *    loads for the tail.
 *  - Software prefetch of rows ahead did not help the dense f32 stream
 *    (it cost up to 10% at 768 and 1536 dims), so there is none here; the
 *    short quantised rows below are another matter.  What does help is
 *    reading two streams: the hardware prefetchers track several, and a
 *    plain read loop over two halves of a buffer beats one over the whole
 *    by 5-15%.  So the scan visits row r of the first half, then row r of
 *    the second half: +4-12% over one stream.  The top-k order is total
 *    (score, then lower row), so the visiting order cannot change what is
 *    kept.
 * Four independent FMA chains over 32 floats, 8-float steps, then a
 * masked load for the last dim % 8 floats: the padding up to the stride
 * holds whatever a writer left there, NaN included, and masked lanes are
 * neither summed nor faulted on.  scan_f32 scores with the very routine
 * dot() uses, so a re-score of a kept row matches its scan score bit for
 * bit.
 *
 * int8: vpdpbusd multiplies unsigned by signed bytes.  Rather than keeping
 * a per-row sum to undo a bias, the row is made unsigned by flipping its
 * sign bit (r ^ 0x80 == r + 128 as an unsigned byte) and the query stays
 * signed, so the bias is 128 * sum(q), one constant per query.  Masked-off
 * tail bytes of the query load as 0, which zeroes their products whatever
 * the row holds.  Each 32-bit lane gathers dim/16 products of at most
 * 255 * 128, and lanes are summed in 64 bits, so the dot is exact for any
 * dim below 2^20.
 *
 * bits: XOR, then vpopcntq into 64-bit lanes; the last partial block is
 * masked to dim bits in both operands.
 */
#include "scan.h"

#include <immintrin.h>
#include <string.h>

#define SC_AVX512 \
	__attribute__((target("avx2,fma,avx512f,avx512bw,avx512vl,avx512vnni,avx512vpopcntdq")))

/*
 * How far ahead the quantised scans prefetch, in bytes of row data.  A
 * sign-bit row is 96 bytes at 768 dims; without help the scan pulled such
 * rows from DRAM at 10 GB/s, well under half the read bandwidth.  Asking
 * for the row about 4 KiB ahead (if it will be scored) lifts that to
 * 25-33 GB/s; 1-2 KiB is too short to cover DRAM latency and 8 KiB gains
 * nothing more.
 */
#ifndef SC_AVX512_PF_BYTES
#define SC_AVX512_PF_BYTES 4096u
#endif

/* n (< 64) low bits set. */
static inline uint64_t sc_low_bits(size_t n)
{
	return n ? ~(uint64_t)0 >> (64u - n) : 0;
}

SC_AVX512 static inline float sc_avx512_dot_row(const float *a, const float *b, uint32_t dim)
{
	__m256 s0 = _mm256_setzero_ps(), s1 = _mm256_setzero_ps();
	__m256 s2 = _mm256_setzero_ps(), s3 = _mm256_setzero_ps();
	__m128 x;
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
		__mmask8 m = (__mmask8)sc_low_bits(dim - i);
		s1 = _mm256_fmadd_ps(_mm256_maskz_loadu_ps(m, a + i), _mm256_maskz_loadu_ps(m, b + i), s1);
	}
	s0 = _mm256_add_ps(_mm256_add_ps(s0, s1), _mm256_add_ps(s2, s3));
	x = _mm_add_ps(_mm256_castps256_ps128(s0), _mm256_extractf128_ps(s0, 1));
	x = _mm_add_ps(x, _mm_movehl_ps(x, x));
	x = _mm_add_ss(x, _mm_shuffle_ps(x, x, 1));
	return _mm_cvtss_f32(x);
}

SC_AVX512 static float sc_avx512_dot(const float *a, const float *b, uint32_t dim)
{
	return sc_avx512_dot_row(a, b, dim);
}

/* Rows to look ahead so that about SC_AVX512_PF_BYTES are in flight. */
static inline size_t sc_pf_rows(size_t rowbytes)
{
	return rowbytes ? (SC_AVX512_PF_BYTES + rowbytes - 1) / rowbytes : 1;
}

/* Prefetch the first `bytes` bytes of a row, one request per cache line. */
SC_AVX512 static inline void sc_avx512_prefetch(const void *row, size_t bytes)
{
	const char *p = row, *end = p + bytes;

	for (; p < end; p += 64)
		_mm_prefetch(p, _MM_HINT_T0);
}

SC_AVX512 static size_t sc_avx512_scan_f32(const float *matrix, size_t stride,
                                           const sc_scanmeta *meta, size_t nrows,
                                           uint64_t scope, int64_t now, const float *q,
                                           uint32_t dim, float threshold, sc_cand *top, size_t k)
{
	size_t n = 0;

	if (k == 0 || nrows == 0)
		return 0;
	if (now < 0)
		now = 0;
	/* Two streams: row r of the first half, then row r of the second. */
	const size_t half = nrows - nrows / 2;
	for (size_t r = 0; r < half; r++) {
		for (size_t row = r; row < nrows; row += half) {
			float s;
			if (!sc_row_live(&meta[row], scope, now))
				continue;
			s = sc_avx512_dot_row(matrix + row * stride, q, dim);
			if (s >= threshold && (n < k || s >= top[k - 1].score))
				sc_topk_push(top, &n, k, (uint32_t)row, s);
		}
	}
	return n;
}

SC_AVX512 static size_t sc_avx512_scan_i8(const int8_t *qmatrix, size_t qstride,
                                          const float *scale, const sc_scanmeta *meta,
                                          size_t nrows, uint64_t scope, int64_t now,
                                          const int8_t *q8, float qscale, uint32_t dim,
                                          sc_cand *top, size_t k)
{
	const float qk = qscale / (127.0f * 127.0f);
	const size_t full = dim & ~(size_t)63;
	const __mmask64 km = sc_low_bits(dim - full);
	const __m512i flip = _mm512_set1_epi8((char)0x80);
	__m512i qt;
	int64_t bias = 0;
	size_t n = 0;

	if (k == 0 || nrows == 0)
		return 0;
	if (now < 0)
		now = 0;
	for (size_t i = 0; i < dim; i++)
		bias += 128 * (int64_t)q8[i];
	qt = _mm512_maskz_loadu_epi8(km, q8 + full);
	const size_t pf = sc_pf_rows(dim);
	for (size_t r = 0; r < nrows; r++) {
		const int8_t *row = qmatrix + r * qstride;
		__m512i a0 = _mm512_setzero_si512(), a1 = _mm512_setzero_si512();
		size_t i = 0;
		int64_t d;
		float s;
		if (r + pf < nrows && sc_row_live(&meta[r + pf], scope, now))
			sc_avx512_prefetch(row + pf * qstride, dim);
		if (!sc_row_live(&meta[r], scope, now))
			continue;
		for (; i + 128 <= full; i += 128) {
			a0 = _mm512_dpbusd_epi32(a0, _mm512_xor_si512(_mm512_loadu_si512(row + i), flip),
			                         _mm512_loadu_si512(q8 + i));
			a1 = _mm512_dpbusd_epi32(a1, _mm512_xor_si512(_mm512_loadu_si512(row + i + 64), flip),
			                         _mm512_loadu_si512(q8 + i + 64));
		}
		if (i < full)
			a0 = _mm512_dpbusd_epi32(a0, _mm512_xor_si512(_mm512_loadu_si512(row + i), flip),
			                         _mm512_loadu_si512(q8 + i));
		if (km)
			a1 = _mm512_dpbusd_epi32(a1, _mm512_xor_si512(_mm512_maskz_loadu_epi8(km, row + full), flip),
			                         qt);
		a0 = _mm512_add_epi32(a0, a1);
		d = _mm512_reduce_add_epi64(_mm512_add_epi64(
			_mm512_cvtepi32_epi64(_mm512_castsi512_si256(a0)),
			_mm512_cvtepi32_epi64(_mm512_extracti64x4_epi64(a0, 1)))) - bias;
		s = (float)d * scale[r] * qk;
		if (n < k || s > top[k - 1].score)
			sc_topk_push(top, &n, k, (uint32_t)r, s);
	}
	return n;
}

SC_AVX512 static size_t sc_avx512_scan_bits(const uint8_t *bits, size_t qstride,
                                            const sc_scanmeta *meta, size_t nrows,
                                            uint64_t scope, int64_t now, const uint8_t *qbits,
                                            uint32_t dim, sc_cand *top, size_t k)
{
	/* Whole 64-byte blocks lie entirely below dim bits; the tail block is
	 * loaded under a byte mask and ANDed with a bit mask for a partial
	 * last byte, so padding bits a writer left set are not counted. */
	const size_t full = (dim / 512u) * 64u, tailbits = dim % 512u;
	const size_t tailbytes = (tailbits + 7u) / 8u;
	const __mmask64 km = sc_low_bits(tailbytes);
	uint8_t tm[64] = { 0 };
	__m512i tmask, qt;
	size_t n = 0, pf;

	if (k == 0 || nrows == 0)
		return 0;
	if (now < 0)
		now = 0;
	memset(tm, 0xff, tailbytes);
	if (tailbits % 8u)
		tm[tailbytes - 1] = (uint8_t)((1u << (tailbits % 8u)) - 1u);
	tmask = _mm512_loadu_si512(tm);
	qt = _mm512_and_si512(_mm512_maskz_loadu_epi8(km, qbits + full), tmask);
	pf = sc_pf_rows(full + tailbytes);
	for (size_t r = 0; r < nrows; r++) {
		const uint8_t *row = bits + r * qstride;
		__m512i h0 = _mm512_setzero_si512(), h1 = _mm512_setzero_si512();
		size_t i = 0;
		float s;
		if (r + pf < nrows && sc_row_live(&meta[r + pf], scope, now))
			sc_avx512_prefetch(row + pf * qstride, full + tailbytes);
		if (!sc_row_live(&meta[r], scope, now))
			continue;
		for (; i + 128 <= full; i += 128) {
			h0 = _mm512_add_epi64(h0, _mm512_popcnt_epi64(_mm512_xor_si512(
				_mm512_loadu_si512(row + i), _mm512_loadu_si512(qbits + i))));
			h1 = _mm512_add_epi64(h1, _mm512_popcnt_epi64(_mm512_xor_si512(
				_mm512_loadu_si512(row + i + 64), _mm512_loadu_si512(qbits + i + 64))));
		}
		if (i < full)
			h0 = _mm512_add_epi64(h0, _mm512_popcnt_epi64(_mm512_xor_si512(
				_mm512_loadu_si512(row + i), _mm512_loadu_si512(qbits + i))));
		if (km)
			h1 = _mm512_add_epi64(h1, _mm512_popcnt_epi64(_mm512_xor_si512(
				_mm512_and_si512(_mm512_maskz_loadu_epi8(km, row + full), tmask), qt)));
		s = (float)((int64_t)dim - 2 * (int64_t)_mm512_reduce_add_epi64(_mm512_add_epi64(h0, h1)));
		if (n < k || s > top[k - 1].score)
			sc_topk_push(top, &n, k, (uint32_t)r, s);
	}
	return n;
}

/* Declared here rather than in scan.h: only scan.c, which checks the CPU
 * first, may hand this table out. */
extern const sc_kernel sc_kernel_avx512;
const sc_kernel sc_kernel_avx512 = {
	.name = "avx512",
	.dot = sc_avx512_dot,
	.scan_f32 = sc_avx512_scan_f32,
	.scan_i8 = sc_avx512_scan_i8,
	.scan_bits = sc_avx512_scan_bits,
};
