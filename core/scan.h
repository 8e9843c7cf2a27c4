/*
 * scan.h - brute-force semantic scan kernels, internal.
 *
 * The embedding matrix holds one L2-normalised float32 row per slot, each
 * row `stride` floats apart (stride is dim rounded up to 16, so every row
 * starts on a 64-byte boundary).  Beside it the scan-metadata array holds,
 * per row, the scope tag and the semantic expiry; a scan only scores rows
 * whose scope equals the caller's and whose expiry is after `now`
 * (expiry 0 marks an empty row).  Cosine similarity is then a dot product.
 *
 * Kernels (scalar, AVX2+FMA, AVX-512) are sibling files behind the table
 * below, chosen at run time from what the CPU has; the environment variable
 * SEMCACHE_KERNEL=scalar|avx2|avx512 forces a lower one (asking for one the
 * CPU lacks falls back to the best available).
 *
 * Rows may be rewritten by writers while a scan runs: kernels read them
 * without synchronisation and the caller re-validates the candidates it
 * keeps under each slot's sequence word.  So kernels must tolerate any bit
 * pattern in a row (NaN included: a NaN score never enters the top list).
 *
 * Two-stage scan: optionally the segment keeps a quantised copy of every
 * row, either int8 (row i: qstride bytes, value = round(x / scale[i] * 127)
 * with scale[i] = max |x| of the row) or sign bits (row i: qstride bytes,
 * bit j set when x_j >= 0).  A first pass over the quantised copy keeps the
 * best candidates by approximate score, which the caller re-scores exactly.
 */
#ifndef SC_SCAN_H
#define SC_SCAN_H

#include <stddef.h>
#include <stdint.h>

#include "../shm/layout.h" /* sc_scanmeta, row strides */

/* Does row m belong to scope and live at now?  Writers change metadata
 * while scans run (see layout.h): each field is one relaxed load, never
 * torn, and a stale answer only adds or drops a candidate that is
 * re-validated under its slot's sequence word anyway. */
static inline int sc_row_live(const sc_scanmeta *m, uint64_t scope, int64_t now)
{
	return __atomic_load_n(&m->scope, __ATOMIC_RELAXED) == scope &&
	       __atomic_load_n(&m->sem_expiry_ms, __ATOMIC_RELAXED) > now;
}

typedef struct sc_cand {
	uint32_t row;
	float score;
} sc_cand;

/* Top-k keeper shared by all kernels: top[0..*n) sorted by score, best
 * first, ties broken by the lower row (a total order, so kernels may visit
 * rows in any order and agree); k >= 1.  Inserts (row, score) when it beats
 * the worst kept or fewer than k are kept; ignores NaN.  Within one kernel,
 * scan_f32 scores equal dot() bit for bit, so a re-score of an unchanged
 * row reproduces the scan's score. */
void sc_topk_push(sc_cand *top, size_t *n, size_t k, uint32_t row, float score);

typedef struct sc_kernel {
	const char *name;  /* "scalar", "avx2", "avx512" */
	/* Dot product of two dim-float vectors. */
	float (*dot)(const float *a, const float *b, uint32_t dim);
	/*
	 * Score every row r < nrows with meta[r].scope == scope and
	 * meta[r].sem_expiry_ms > now against q (dim floats, normalised) and
	 * keep the best k (1..k) with score >= threshold in top (sorted, best
	 * first).  Returns how many were kept.
	 */
	size_t (*scan_f32)(const float *matrix, size_t stride, const sc_scanmeta *meta,
	                   size_t nrows, uint64_t scope, int64_t now, const float *q,
	                   uint32_t dim, float threshold, sc_cand *top, size_t k);
	/* int8 first pass: approximate score = dot(qrow, q8) * scale[r] * qscale
	 * / (127*127); same filtering; keeps best k regardless of threshold. */
	size_t (*scan_i8)(const int8_t *qmatrix, size_t qstride, const float *scale,
	                  const sc_scanmeta *meta, size_t nrows, uint64_t scope,
	                  int64_t now, const int8_t *q8, float qscale, uint32_t dim,
	                  sc_cand *top, size_t k);
	/* sign-bit first pass: score = dim - 2*hamming (higher is closer);
	 * same filtering; keeps best k. */
	size_t (*scan_bits)(const uint8_t *bits, size_t qstride, const sc_scanmeta *meta,
	                    size_t nrows, uint64_t scope, int64_t now, const uint8_t *qbits,
	                    uint32_t dim, sc_cand *top, size_t k);
} sc_kernel;

/* The kernel to use: the best the CPU has, lowered by SEMCACHE_KERNEL. */
const sc_kernel *sc_kernel_select(void);
/* A kernel by name if the CPU supports it, else NULL. */
const sc_kernel *sc_kernel_by_name(const char *name);
/* The kernel SEMCACHE_KERNEL=want would select (NULL = the best), uncached. */
const sc_kernel *sc_kernel_pick(const char *want);

/* Quantisation helpers (scalar, used at put time and for queries).
 * stride is in elements: int8 bytes for i8, bytes for bits. */
float sc_quant_i8(const float *x, uint32_t dim, int8_t *out, size_t qstride);
void sc_quant_bits(const float *x, uint32_t dim, uint8_t *out, size_t qstride);

#endif
