/* matvec-private.h: the float32 matrix-vector kernels of a decoding step, for
 * one to a few activation rows at once (lib/nn/matvec.c).
 *
 * Every output is a sum taken in one fixed order, whatever the number of rows
 * and whichever kernel computes it (scalar, AVX2, AVX-512): the rows of a
 * batch then get bitwise the logits they get alone.  Products use fused
 * multiply-adds (fmaf() in the scalar kernels, one rounding each, as the
 * vector instructions).
 *
 *  - matvec_kn: Y[r, j] = sum_k X[r, k] W[k, j] for W (K, N) row-major (the
 *    Conv1D layout, input-major): for each j, y = 0 then y = fma (X[r, k],
 *    W[k, j], y) for k = 0, 1, ..., K - 1.  Vectors run along j, so the
 *    order along k is the same in every lane and every kernel.
 *  - dot_rows: Y[r, j] = W[j, :] . X[r, :] for W (n, K) row-major (output-
 *    major, the head): 16 partial sums s[l] over k = l (mod 16) of the first
 *    K - K % 16 values, each in increasing k by fma; then s[l] += s[l + 8],
 *    s[l] += s[l + 4], s[l] += s[l + 2], s = s[0] + s[1] (l from 0); then the
 *    remaining k in order by fma.  An AVX2 kernel holds the 16 sums in two
 *    registers, an AVX-512 one in one.
 */
#pragma once

#include <stddef.h>

typedef void (*GptdMatvecKn) (const float *X, size_t ldx, int B,
                              const float *W, size_t ldw, size_t K, size_t N,
                              float *Y, size_t ldy);
typedef void (*GptdDotRows) (const float *W, size_t ldw, size_t n, size_t K,
                             const float *X, size_t ldx, int B, float *Y,
                             size_t ldy);

typedef struct {
  const char *name;
  GptdMatvecKn matvec_kn;
  GptdDotRows dot_rows;
} GptdMatvecKernels;

/* The kernels of @name ("scalar", "avx2", "avx512") if this CPU runs them,
 * else NULL. */
const GptdMatvecKernels *gptd__matvec_kernels_lookup (const char *name);

/* The best kernels this CPU runs (the first call decides; the environment
 * variable GPTD_MATVEC_KERNELS=scalar|avx2|avx512 caps the choice). */
const GptdMatvecKernels *gptd__matvec_kernels (void);
