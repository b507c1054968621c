/* quant-private.h: the in-memory layout of bf16 and q8 weights, the number
 * conversions they need and the table of matrix kernels chosen by CPUID
 * (quant.c, quant-kernels-avx2.c, quant-kernels-avx512.c).
 *
 * A quantized matrix is stored output-major, (n, K) row-major, so that each
 * output is one dot product along a contiguous row (Conv1D weights, which are
 * input-major, are transposed when quantized; the output head already is
 * output-major).
 *
 *  - bf16: n * K values, each the upper half of the float32 rounded to
 *    nearest even.
 *  - q8 (llama.cpp's Q8_0): every row cut into K / 32 blocks of 32 values;
 *    block b of row j has one scale d (IEEE half precision) and 32 int8
 *    values q, the weights being q * d.  qs holds the n * K int8 values,
 *    d the n * K / 32 scales, both row-major.  d = amax / 127 over the block
 *    (rounded to half), q = round (w * 127 / amax).
 *
 * Activations stay float32 for bf16.  For q8 the activation row is quantized
 * in the same blocks of 32 (scale float32, q = round (x * 127 / amax)) and the
 * products are integer dot products per block, scaled by both scales and
 * summed in float32, as llama.cpp's Q8_0 x Q8_0 dot product.
 *
 * bf16 activations are passed permuted ("prepared", gptd__quant_prepare_bf16):
 * within each whole block of 32 values, the 16 even-indexed values come first,
 * then the 16 odd ones; the tail past the last whole block is left in order.
 * A vector kernel then widens the bf16 pairs it loads with one shift (even)
 * and one mask (odd) instead of an unpack.
 */
#pragma once

#include "nn/nn-internal.h"

#include <gptd/quant.h>

#include <stdint.h>
#include <string.h>

#define GPTD_QUANT_BLOCK 32

/* One quantized matrix, (n, K) output-major. */
typedef struct {
  GptdWeightFormat format;
  size_t n, K;
  uint16_t *bf16; /* (n, K) with bf16 */
  int8_t *qs;     /* (n, K) with q8 */
  uint16_t *d;    /* (n, K / 32) half-precision scales with q8 */
} GptdQuantMatrix;

/* The quantized linear layers of a model. */
typedef struct _GptdGptQuant {
  GptdWeightFormat format;
  int n_layer;
  GptdQuantMatrix *attn, *proj, *fc, *fcp; /* n_layer each */
  GptdQuantMatrix head;                    /* (n_out, C) */
  void *mem;                               /* every matrix's values */
  size_t mem_bytes;
} GptdGptQuant;

/* Lays out every matrix of @m in @format in one allocation (values not yet
 * set); q8 needs n_embd a multiple of 32. */
GptdGptQuant *gptd__gpt_quant_new (const GptdGpt *m, GptdWeightFormat format,
                                   GError **error);
void gptd__gpt_quant_free (GptdGptQuant *q);

/* Bytes of one matrix's values and scales in @format. */
size_t gptd__quant_matrix_bytes (GptdWeightFormat format, size_t n, size_t K);

/* ---- kernels ------------------------------------------------------------ */

/* Up to this many activation rows, a kernel may take them as a small batch
 * (a batched decoding step): each weight row loaded once for all of them.
 * Every (row, output) dot product is computed in the same order whatever m,
 * so a row's results never depend on the other rows. */
#define GPTD_QUANT_SMALL_BATCH 16

/* Y[i * ldy + j] = sum_k W[j, k] X[i, k] for activation rows i < m and
 * weight rows j < n.  X rows are K apart.  bf16: X prepared; q8: Xq (m, K)
 * int8 and Xd (m, K / 32) float scales. */
typedef void (*GptdQuantMatmulBf16) (const uint16_t *W, size_t n, size_t K,
                                     const float *X, size_t m, float *Y,
                                     size_t ldy);
typedef void (*GptdQuantMatmulQ8) (const int8_t *Wq, const uint16_t *Wd,
                                   size_t n, size_t K, const int8_t *Xq,
                                   const float *Xd, size_t m, float *Y,
                                   size_t ldy);
/* Quantizes one row of K (a multiple of 32) floats to q8 with float
 * scales. */
typedef void (*GptdQuantRowQ8) (const float *x, size_t K, int8_t *q,
                                float *d);

typedef struct {
  const char *name;
  GptdQuantMatmulBf16 matmul_bf16;
  GptdQuantMatmulQ8 matmul_q8;
  GptdQuantRowQ8 quantize_row_q8;
} GptdQuantKernels;

/* The scalar row quantization, shared by every table (the activation rows
 * are a small part of the work; one function keeps them bit-identical). */
void gptd__quant_row_q8 (const float *x, size_t K, int8_t *q, float *d);

/* The scalar reference kernels. */
extern const GptdQuantKernels gptd__quant_kernels_scalar;
#if defined(__x86_64__) && defined(__GNUC__)
#define GPTD_QUANT_X86 1
/* AVX2 + FMA + F16C. */
extern const GptdQuantKernels gptd__quant_kernels_avx2;
/* AVX-512 F + BW (+ VL). */
extern const GptdQuantKernels gptd__quant_kernels_avx512;
/* AVX-512 F + BW + VNNI. */
extern const GptdQuantKernels gptd__quant_kernels_avx512_vnni;
#endif

/* The best kernels this CPU runs (the first call decides; the environment
 * variable GPTD_QUANT_KERNELS=scalar|avx2|avx512|avx512-vnni caps the
 * choice). */
const GptdQuantKernels *gptd__quant_kernels (void);

/* The kernels of @name if this CPU runs them, else NULL. */
const GptdQuantKernels *gptd__quant_kernels_lookup (const char *name);

/* Permutes a row of K activations into the bf16 kernels' order (see the top
 * of this file); @out and @x must not overlap. */
void gptd__quant_prepare_bf16 (const float *x, size_t K, float *out);

/* Rows of floats to the formats: @n rows of K (q8: K a multiple of 32). */
void gptd__quant_to_bf16 (const float *x, size_t count, uint16_t *out);
void gptd__quant_to_q8 (const float *x, size_t count, int8_t *qs,
                        uint16_t *d);
/* Back to floats. */
void gptd__quant_from_bf16 (const uint16_t *x, size_t count, float *out);
void gptd__quant_from_q8 (const int8_t *qs, const uint16_t *d, size_t count,
                          float *out);

/* ---- numbers ------------------------------------------------------------ */

static inline uint16_t
gptd__f32_to_bf16 (float f)
{
  uint32_t u;
  memcpy (&u, &f, 4);
  if ((u & 0x7fffffffu) > 0x7f800000u)
    return (uint16_t) ((u >> 16) | 0x40); /* quiet NaN */
  u += 0x7fffu + ((u >> 16) & 1u);
  return (uint16_t) (u >> 16);
}

static inline float
gptd__bf16_to_f32 (uint16_t h)
{
  uint32_t u = (uint32_t) h << 16;
  float f;
  memcpy (&f, &u, 4);
  return f;
}

/* IEEE half to float, exactly (normals, subnormals, infinities, NaN). */
static inline float
gptd__f16_to_f32 (uint16_t h)
{
  uint32_t sign = (uint32_t) (h & 0x8000u) << 16;
  uint32_t exp = (h >> 10) & 0x1fu, man = h & 0x3ffu, u;
  if (exp == 0x1f)
    u = sign | 0x7f800000u | (man << 13);
  else if (exp != 0)
    u = sign | ((exp + 112) << 23) | (man << 13);
  else if (man == 0)
    u = sign;
  else
    {
      /* Subnormal: normalise. */
      int e = -1;
      do
        {
          man <<= 1;
          e++;
        }
      while (!(man & 0x400u));
      u = sign | ((uint32_t) (112 - e) << 23) | ((man & 0x3ffu) << 13);
    }
  float f;
  memcpy (&f, &u, 4);
  return f;
}

/* Float to IEEE half, rounded to nearest even; values past the half range
 * become infinities. */
static inline uint16_t
gptd__f32_to_f16 (float f)
{
  uint32_t u;
  memcpy (&u, &f, 4);
  uint16_t sign = (uint16_t) ((u >> 16) & 0x8000u);
  uint32_t a = u & 0x7fffffffu;
  if (a > 0x7f800000u)
    return sign | 0x7e00u;
  if (a >= 0x47800000u) /* >= 65536: past the largest half */
    {
      /* 65520 and above round to infinity; below, to 65504. */
      return a >= 0x477ff000u ? (sign | 0x7c00u) : (sign | 0x7bffu);
    }
  if (a < 0x38800000u) /* below the smallest normal half: subnormal */
    {
      if (a < 0x33000000u) /* below half of the smallest subnormal */
        return sign;
      uint32_t e = a >> 23, man = (a & 0x7fffffu) | 0x800000u;
      uint32_t shift = 126 - e; /* 14..24 */
      uint32_t r = man >> shift, rem = man & ((1u << shift) - 1);
      uint32_t half = 1u << (shift - 1);
      if (rem > half || (rem == half && (r & 1u)))
        r++;
      return sign | (uint16_t) r;
    }
  uint32_t r = a - 0x38000000u; /* rebias 127 -> 15 */
  uint32_t rem = r & 0x1fffu, out = r >> 13;
  if (rem > 0x1000u || (rem == 0x1000u && (out & 1u)))
    out++;
  return sign | (uint16_t) out;
}
