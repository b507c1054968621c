/* quant-kernels-avx2.c: the bf16 and q8 matrix kernels for AVX2 with FMA and
 * F16C (quant-private.h describes the layouts).  Each function carries its
 * own target attribute, so the file builds for any x86-64 and the code runs
 * only where gptd__quant_kernels() found the features.
 *
 * Both kernels stream one weight row at a time, prefetching a few KiB ahead:
 * decoding is bound by reading the weights, and one sequential stream per
 * thread is read faster than four interleaved rows (measured here, from
 * memory, on 245 MB of weights: bf16 8.4 to 9.3 GB/s against 5.1, q8 5.8 to
 * 6.0 against 2.6 for four rows without prefetching).  The dot product can
 * still take up to four rows (sharing the activation loads), which is faster
 * when the weights are in cache.  Weight rows are taken in panels of 16 so
 * that several activation rows (prefill) find a panel in cache.
 */
#include "config.h"

#include "nn/quant-private.h"

#ifdef GPTD_QUANT_X86

#include <immintrin.h>

#define TARGET __attribute__ ((target ("avx2,fma,f16c")))
#define PANEL 16
/* How far ahead of the row being read to prefetch, in bytes. */
#define PREFETCH_BF16 4096
#define PREFETCH_Q8 2048

TARGET static inline float
hsum (__m256 v)
{
  __m128 s = _mm_add_ps (_mm256_castps256_ps128 (v),
                         _mm256_extractf128_ps (v, 1));
  s = _mm_add_ps (s, _mm_movehl_ps (s, s));
  s = _mm_add_ss (s, _mm_movehdup_ps (s));
  return _mm_cvtss_f32 (s);
}

/* ---- bf16 --------------------------------------------------------------- */

/* The even-indexed (shift) and odd-indexed (mask) halves of 8 bf16 pairs. */
#define BF16_EVEN(v) _mm256_castsi256_ps (_mm256_slli_epi32 ((v), 16))
#define BF16_ODD(v) _mm256_castsi256_ps (_mm256_and_si256 ((v), hi))

/* y[r] = W[r] . x for @rows (1 to 4) rows of W, @ldw apart; x prepared. */
TARGET static inline __attribute__ ((always_inline)) void
dot_bf16 (const uint16_t *W, size_t ldw, int rows, size_t K, const float *x,
          float *y)
{
  const __m256i hi = _mm256_set1_epi32 ((int) 0xffff0000u);
  __m256 a[4], b[4];
  for (int r = 0; r < 4; r++)
    a[r] = b[r] = _mm256_setzero_ps ();
  size_t whole = K / GPTD_QUANT_BLOCK * GPTD_QUANT_BLOCK, k;
  for (k = 0; k < whole; k += GPTD_QUANT_BLOCK)
    {
      __m256 xe0 = _mm256_loadu_ps (x + k), xe1 = _mm256_loadu_ps (x + k + 8);
      __m256 xo0 = _mm256_loadu_ps (x + k + 16);
      __m256 xo1 = _mm256_loadu_ps (x + k + 24);
      for (int r = 0; r < 4; r++)
        {
          if (r >= rows)
            break;
          const uint16_t *w = W + r * ldw + k;
          _mm_prefetch ((const char *) w + PREFETCH_BF16, _MM_HINT_T0);
          __m256i v0 = _mm256_loadu_si256 ((const __m256i *) w);
          __m256i v1 = _mm256_loadu_si256 ((const __m256i *) (w + 16));
          a[r] = _mm256_fmadd_ps (BF16_EVEN (v0), xe0, a[r]);
          b[r] = _mm256_fmadd_ps (BF16_EVEN (v1), xe1, b[r]);
          a[r] = _mm256_fmadd_ps (BF16_ODD (v0), xo0, a[r]);
          b[r] = _mm256_fmadd_ps (BF16_ODD (v1), xo1, b[r]);
        }
    }
  for (int r = 0; r < rows; r++)
    {
      float s = hsum (_mm256_add_ps (a[r], b[r]));
      for (size_t t = whole; t < K; t++)
        s += gptd__bf16_to_f32 (W[r * ldw + t]) * x[t];
      y[r] = s;
    }
}

/* y[r * ldy] = w . X[r] for @rows (1 to 4) activation rows, K apart, and one
 * weight row: the small-batch product of a batched decoding step, each weight
 * vector loaded and widened once for every row.  Each row's sums are taken in
 * exactly the order dot_bf16() takes them for that row alone. */
TARGET static inline __attribute__ ((always_inline)) void
dot_bf16_xrows (const uint16_t *w, size_t K, const float *X, int rows, float *y,
                size_t ldy)
{
  const __m256i hi = _mm256_set1_epi32 ((int) 0xffff0000u);
  __m256 a[4], b[4];
  for (int r = 0; r < 4; r++)
    a[r] = b[r] = _mm256_setzero_ps ();
  size_t whole = K / GPTD_QUANT_BLOCK * GPTD_QUANT_BLOCK, k;
  for (k = 0; k < whole; k += GPTD_QUANT_BLOCK)
    {
      _mm_prefetch ((const char *) (w + k) + PREFETCH_BF16, _MM_HINT_T0);
      __m256i v0 = _mm256_loadu_si256 ((const __m256i *) (w + k));
      __m256i v1 = _mm256_loadu_si256 ((const __m256i *) (w + k + 16));
      __m256 e0 = BF16_EVEN (v0), e1 = BF16_EVEN (v1);
      __m256 o0 = BF16_ODD (v0), o1 = BF16_ODD (v1);
      for (int r = 0; r < 4; r++)
        {
          if (r >= rows)
            break;
          const float *x = X + r * K + k;
          a[r] = _mm256_fmadd_ps (e0, _mm256_loadu_ps (x), a[r]);
          b[r] = _mm256_fmadd_ps (e1, _mm256_loadu_ps (x + 8), b[r]);
          a[r] = _mm256_fmadd_ps (o0, _mm256_loadu_ps (x + 16), a[r]);
          b[r] = _mm256_fmadd_ps (o1, _mm256_loadu_ps (x + 24), b[r]);
        }
    }
  for (int r = 0; r < rows; r++)
    {
      float s = hsum (_mm256_add_ps (a[r], b[r]));
      for (size_t t = whole; t < K; t++)
        s += gptd__bf16_to_f32 (w[t]) * X[r * K + t];
      y[r * ldy] = s;
    }
}

TARGET static void
matmul_bf16_avx2 (const uint16_t *W, size_t n, size_t K, const float *X,
                  size_t m, float *Y, size_t ldy)
{
  if (m > 1 && m <= GPTD_QUANT_SMALL_BATCH)
    {
      /* A batched decoding step: each weight row once for every row. */
      for (size_t j = 0; j < n; j++)
        for (size_t i = 0; i < m; i += 4)
          dot_bf16_xrows (W + j * K, K, X + i * K, (int) MIN (4, m - i),
                          Y + i * ldy + j, ldy);
      return;
    }
  for (size_t j0 = 0; j0 < n; j0 += PANEL)
    {
      size_t j1 = MIN (n, j0 + PANEL);
      for (size_t i = 0; i < m; i++)
        for (size_t j = j0; j < j1; j++)
          dot_bf16 (W + j * K, K, 1, K, X + i * K, Y + i * ldy + j);
    }
}

/* ---- q8 ----------------------------------------------------------------- */

/* The 8 int32 sums of 4 products of 32 int8 pairs, as floats: |x| times y
 * with x's sign, so that maddubs (unsigned by signed) applies. */
TARGET static inline __m256
dot_i8 (__m256i ax, __m256i w, __m256i x)
{
  __m256i sw = _mm256_sign_epi8 (w, x);
  __m256i p16 = _mm256_maddubs_epi16 (ax, sw);
  __m256i p32 = _mm256_madd_epi16 (p16, _mm256_set1_epi16 (1));
  return _mm256_cvtepi32_ps (p32);
}

/* y[r] = W[r] . x for @rows (1 to 4) rows; K a multiple of 32.  The scales
 * of eight blocks are converted and multiplied as one vector, and each
 * block's is taken from it with a permute. */
TARGET static inline __attribute__ ((always_inline)) void
dot_q8 (const int8_t *Wq, const uint16_t *Wd, size_t K, int rows,
        const int8_t *xq, const float *xd, float *y)
{
  const size_t nb = K / GPTD_QUANT_BLOCK;
  __m256 acc[4], d8[4];
  for (int r = 0; r < 4; r++)
    acc[r] = d8[r] = _mm256_setzero_ps ();
  size_t b = 0;
  for (; b + 8 <= nb; b += 8)
    {
      __m256 dx = _mm256_loadu_ps (xd + b);
      for (int r = 0; r < 4; r++)
        {
          if (r >= rows)
            break;
          __m128i h = _mm_loadu_si128 ((const __m128i *) (Wd + r * nb + b));
          d8[r] = _mm256_mul_ps (_mm256_cvtph_ps (h), dx);
        }
      for (int u = 0; u < 8; u++)
        {
          const size_t o = (b + u) * 32;
          __m256i x = _mm256_loadu_si256 ((const __m256i *) (xq + o));
          __m256i ax = _mm256_sign_epi8 (x, x);
          __m256i sel = _mm256_set1_epi32 (u);
          for (int r = 0; r < 4; r++)
            {
              if (r >= rows)
                break;
              if ((u & 1) == 0) /* one prefetch per 64-byte line */
                _mm_prefetch ((const char *) (Wq + r * K + o) + PREFETCH_Q8,
                              _MM_HINT_T0);
              __m256i w = _mm256_loadu_si256 ((const __m256i *) (Wq + r * K + o));
              __m256 d = _mm256_permutevar8x32_ps (d8[r], sel);
              acc[r] = _mm256_fmadd_ps (d, dot_i8 (ax, w, x), acc[r]);
            }
        }
    }
  for (; b < nb; b++)
    {
      __m256i x = _mm256_loadu_si256 ((const __m256i *) (xq + b * 32));
      __m256i ax = _mm256_sign_epi8 (x, x);
      float dx = xd[b];
      for (int r = 0; r < 4; r++)
        {
          if (r >= rows)
            break;
          __m256i w = _mm256_loadu_si256 (
            (const __m256i *) (Wq + r * K + b * 32));
          __m256 d = _mm256_set1_ps (_cvtsh_ss (Wd[r * nb + b]) * dx);
          acc[r] = _mm256_fmadd_ps (d, dot_i8 (ax, w, x), acc[r]);
        }
    }
  for (int r = 0; r < rows; r++)
    y[r] = hsum (acc[r]);
}

/* y[r * ldy] = w . X[r] for @rows (1 to 4) quantized activation rows and one
 * weight row, each weight block loaded once for every row; each row's sums in
 * exactly the order of dot_q8() for that row alone. */
TARGET static inline __attribute__ ((always_inline)) void
dot_q8_xrows (const int8_t *wq, const uint16_t *wd, size_t K, const int8_t *Xq,
              const float *Xd, int rows, float *y, size_t ldy)
{
  const size_t nb = K / GPTD_QUANT_BLOCK;
  __m256 acc[4], d8[4];
  for (int r = 0; r < 4; r++)
    acc[r] = d8[r] = _mm256_setzero_ps ();
  size_t b = 0;
  for (; b + 8 <= nb; b += 8)
    {
      __m256 wd8 = _mm256_cvtph_ps (_mm_loadu_si128 ((const __m128i *) (wd + b)));
      for (int r = 0; r < 4; r++)
        {
          if (r >= rows)
            break;
          d8[r] = _mm256_mul_ps (wd8, _mm256_loadu_ps (Xd + r * nb + b));
        }
      for (int u = 0; u < 8; u++)
        {
          const size_t o = (b + u) * 32;
          if ((u & 1) == 0)
            _mm_prefetch ((const char *) (wq + o) + PREFETCH_Q8, _MM_HINT_T0);
          __m256i w = _mm256_loadu_si256 ((const __m256i *) (wq + o));
          __m256i sel = _mm256_set1_epi32 (u);
          for (int r = 0; r < 4; r++)
            {
              if (r >= rows)
                break;
              __m256i x = _mm256_loadu_si256 ((const __m256i *) (Xq + r * K + o));
              __m256i ax = _mm256_sign_epi8 (x, x);
              __m256 d = _mm256_permutevar8x32_ps (d8[r], sel);
              acc[r] = _mm256_fmadd_ps (d, dot_i8 (ax, w, x), acc[r]);
            }
        }
    }
  for (; b < nb; b++)
    {
      __m256i w = _mm256_loadu_si256 ((const __m256i *) (wq + b * 32));
      for (int r = 0; r < 4; r++)
        {
          if (r >= rows)
            break;
          __m256i x = _mm256_loadu_si256 ((const __m256i *) (Xq + r * K + b * 32));
          __m256i ax = _mm256_sign_epi8 (x, x);
          __m256 d = _mm256_set1_ps (_cvtsh_ss (wd[b]) * Xd[r * nb + b]);
          acc[r] = _mm256_fmadd_ps (d, dot_i8 (ax, w, x), acc[r]);
        }
    }
  for (int r = 0; r < rows; r++)
    y[r * ldy] = hsum (acc[r]);
}

TARGET static void
matmul_q8_avx2 (const int8_t *Wq, const uint16_t *Wd, size_t n, size_t K,
                const int8_t *Xq, const float *Xd, size_t m, float *Y,
                size_t ldy)
{
  const size_t nb = K / GPTD_QUANT_BLOCK;
  if (m > 1 && m <= GPTD_QUANT_SMALL_BATCH)
    {
      /* A batched decoding step: each weight row once for every row. */
      for (size_t j = 0; j < n; j++)
        for (size_t i = 0; i < m; i += 4)
          dot_q8_xrows (Wq + j * K, Wd + j * nb, K, Xq + i * K, Xd + i * nb,
                        (int) MIN (4, m - i), Y + i * ldy + j, ldy);
      return;
    }
  for (size_t j0 = 0; j0 < n; j0 += PANEL)
    {
      size_t j1 = MIN (n, j0 + PANEL);
      for (size_t i = 0; i < m; i++)
        for (size_t j = j0; j < j1; j++)
          dot_q8 (Wq + j * K, Wd + j * nb, K, 1, Xq + i * K, Xd + i * nb,
                  Y + i * ldy + j);
    }
}

/* Quantizing an activation row is a small part of the work (a few thousand
 * values per matrix of millions of weights); the scalar code does it, which
 * also keeps it bit-identical on every path. */
const GptdQuantKernels gptd__quant_kernels_avx2 = {
  "avx2", matmul_bf16_avx2, matmul_q8_avx2, gptd__quant_row_q8,
};

#endif /* GPTD_QUANT_X86 */
