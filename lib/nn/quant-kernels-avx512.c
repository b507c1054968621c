/* quant-kernels-avx512.c: the bf16 and q8 matrix kernels for AVX-512 (F, BW,
 * VL), and the q8 kernel with VNNI's dpbusd where the CPU has it
 * (quant-private.h describes the layouts).  Each function carries its own
 * target attribute, so the file builds for any x86-64 and the code runs only
 * where gptd__quant_kernels() found the features.
 *
 * Same scheme as the AVX2 kernels: one weight row at a time, prefetched
 * ahead (the distances were measured on an AVX2 machine), in panels of 16; a 512-bit register holds one whole block
 * of 32 bf16 values, or two blocks of 32 int8 values whose sums are scaled by
 * a vector holding each block's scale in its half.
 */
#include "config.h"

#include "nn/quant-private.h"

#ifdef GPTD_QUANT_X86

#include <immintrin.h>

#define TARGET \
  __attribute__ ((target ("avx512f,avx512bw,avx512vl,avx2,fma,f16c")))
#define TARGET_VNNI \
  __attribute__ ((target ("avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma,f16c")))
#define PANEL 16
#define PREFETCH_BF16 4096
#define PREFETCH_Q8 2048

/* ---- bf16 --------------------------------------------------------------- */

/* y[r] = W[r] . x for @rows (1 to 4) rows of W, @ldw apart; x prepared. */
TARGET static inline __attribute__ ((always_inline)) void
dot_bf16 (const uint16_t *W, size_t ldw, int rows, size_t K, const float *x,
          float *y)
{
  const __m512i hi = _mm512_set1_epi32 ((int) 0xffff0000u);
  __m512 a[4], b[4];
  for (int r = 0; r < 4; r++)
    a[r] = b[r] = _mm512_setzero_ps ();
  size_t whole = K / GPTD_QUANT_BLOCK * GPTD_QUANT_BLOCK, k;
  for (k = 0; k < whole; k += GPTD_QUANT_BLOCK)
    {
      __m512 xe = _mm512_loadu_ps (x + k), xo = _mm512_loadu_ps (x + k + 16);
      for (int r = 0; r < 4; r++)
        {
          if (r >= rows)
            break;
          _mm_prefetch ((const char *) (W + r * ldw + k) + PREFETCH_BF16,
                        _MM_HINT_T0);
          __m512i v = _mm512_loadu_si512 ((const void *) (W + r * ldw + k));
          a[r] = _mm512_fmadd_ps (
            _mm512_castsi512_ps (_mm512_slli_epi32 (v, 16)), xe, a[r]);
          b[r] = _mm512_fmadd_ps (
            _mm512_castsi512_ps (_mm512_and_si512 (v, hi)), xo, b[r]);
        }
    }
  for (int r = 0; r < rows; r++)
    {
      float s = _mm512_reduce_add_ps (_mm512_add_ps (a[r], b[r]));
      for (size_t t = whole; t < K; t++)
        s += gptd__bf16_to_f32 (W[r * ldw + t]) * x[t];
      y[r] = s;
    }
}

TARGET static void
matmul_bf16_avx512 (const uint16_t *W, size_t n, size_t K, const float *X,
                    size_t m, float *Y, size_t ldy)
{
  for (size_t j0 = 0; j0 < n; j0 += PANEL)
    {
      size_t j1 = MIN (n, j0 + PANEL);
      for (size_t i = 0; i < m; i++)
        for (size_t j = j0; j < j1; j++)
          dot_bf16 (W + j * K, K, 1, K, X + i * K, Y + i * ldy + j);
    }
}

/* ---- q8 ----------------------------------------------------------------- */

/* The q8 dot products of @rows (1 to 4) weight rows with one activation
 * row: pairs of blocks in 512-bit registers, a last odd block in 256 bits.
 * @VNNI picks dpbusd over maddubs + madd. */
#define DOT_Q8_BODY(VNNI)                                                     \
  const size_t nb = K / GPTD_QUANT_BLOCK;                                     \
  __m512 acc[4];                                                              \
  __m256 acc1[4];                                                             \
  for (int r = 0; r < 4; r++)                                                 \
    {                                                                         \
      acc[r] = _mm512_setzero_ps ();                                          \
      acc1[r] = _mm256_setzero_ps ();                                         \
    }                                                                         \
  size_t b = 0;                                                               \
  for (; b + 2 <= nb; b += 2)                                                 \
    {                                                                         \
      __m512i x = _mm512_loadu_si512 ((const void *) (xq + b * 32));          \
      __m512i ax = _mm512_abs_epi8 (x);                                       \
      __mmask64 neg = _mm512_movepi8_mask (x);                                \
      for (int r = 0; r < 4; r++)                                             \
        {                                                                     \
          if (r >= rows)                                                      \
            break;                                                            \
          _mm_prefetch ((const char *) (Wq + r * K + b * 32) + PREFETCH_Q8,   \
                        _MM_HINT_T0);                                         \
          __m512i w = _mm512_loadu_si512 ((const void *) (Wq + r * K + b * 32)); \
          /* w with the sign of x, so that |x| (unsigned) times it is x w. */ \
          __m512i sw = _mm512_mask_sub_epi8 (w, neg, _mm512_setzero_si512 (), \
                                             w);                              \
          __m512i p32;                                                        \
          if (VNNI)                                                           \
            p32 = _mm512_dpbusd_epi32 (_mm512_setzero_si512 (), ax, sw);      \
          else                                                                \
            p32 = _mm512_madd_epi16 (_mm512_maddubs_epi16 (ax, sw),           \
                                     _mm512_set1_epi16 (1));                  \
          __m512 d = _mm512_mask_blend_ps (                                   \
            0xff00, _mm512_set1_ps (_cvtsh_ss (Wd[r * nb + b]) * xd[b]),     \
            _mm512_set1_ps (_cvtsh_ss (Wd[r * nb + b + 1]) * xd[b + 1]));    \
          acc[r] = _mm512_fmadd_ps (d, _mm512_cvtepi32_ps (p32), acc[r]);    \
        }                                                                     \
    }                                                                         \
  if (b < nb)                                                                 \
    {                                                                         \
      __m256i x = _mm256_loadu_si256 ((const __m256i *) (xq + b * 32));       \
      __m256i ax = _mm256_sign_epi8 (x, x);                                   \
      for (int r = 0; r < rows; r++)                                          \
        {                                                                     \
          __m256i w =                                                         \
            _mm256_loadu_si256 ((const __m256i *) (Wq + r * K + b * 32));     \
          __m256i p32 = _mm256_madd_epi16 (                                   \
            _mm256_maddubs_epi16 (ax, _mm256_sign_epi8 (w, x)),               \
            _mm256_set1_epi16 (1));                                           \
          __m256 d = _mm256_set1_ps (_cvtsh_ss (Wd[r * nb + b]) * xd[b]);     \
          acc1[r] = _mm256_fmadd_ps (d, _mm256_cvtepi32_ps (p32), acc1[r]);  \
        }                                                                     \
    }                                                                         \
  for (int r = 0; r < rows; r++)                                              \
    {                                                                         \
      __m128 s = _mm_add_ps (_mm256_castps256_ps128 (acc1[r]),               \
                             _mm256_extractf128_ps (acc1[r], 1));             \
      s = _mm_hadd_ps (s, s);                                                 \
      s = _mm_hadd_ps (s, s);                                                 \
      y[r] = _mm512_reduce_add_ps (acc[r]) + _mm_cvtss_f32 (s);              \
    }

TARGET static inline __attribute__ ((always_inline)) void
dot_q8 (const int8_t *Wq, const uint16_t *Wd, size_t K, int rows,
        const int8_t *xq, const float *xd, float *y)
{
  DOT_Q8_BODY (0)
}

TARGET_VNNI static inline __attribute__ ((always_inline)) void
dot_q8_vnni (const int8_t *Wq, const uint16_t *Wd, size_t K, int rows,
             const int8_t *xq, const float *xd, float *y)
{
  DOT_Q8_BODY (1)
}

#define MATMUL_Q8(DOT)                                                        \
  const size_t nb = K / GPTD_QUANT_BLOCK;                                     \
  for (size_t j0 = 0; j0 < n; j0 += PANEL)                                    \
    {                                                                         \
      size_t j1 = MIN (n, j0 + PANEL);                                        \
      for (size_t i = 0; i < m; i++)                                          \
        for (size_t j = j0; j < j1; j++)                                      \
          DOT (Wq + j * K, Wd + j * nb, K, 1, Xq + i * K, Xd + i * nb,        \
               Y + i * ldy + j);                                              \
    }

TARGET static void
matmul_q8_avx512 (const int8_t *Wq, const uint16_t *Wd, size_t n, size_t K,
                  const int8_t *Xq, const float *Xd, size_t m, float *Y,
                  size_t ldy)
{
  MATMUL_Q8 (dot_q8)
}

TARGET_VNNI static void
matmul_q8_avx512_vnni (const int8_t *Wq, const uint16_t *Wd, size_t n,
                       size_t K, const int8_t *Xq, const float *Xd, size_t m,
                       float *Y, size_t ldy)
{
  MATMUL_Q8 (dot_q8_vnni)
}

const GptdQuantKernels gptd__quant_kernels_avx512 = {
  "avx512", matmul_bf16_avx512, matmul_q8_avx512, gptd__quant_row_q8,
};

const GptdQuantKernels gptd__quant_kernels_avx512_vnni = {
  "avx512-vnni", matmul_bf16_avx512, matmul_q8_avx512_vnni,
  gptd__quant_row_q8,
};

#endif /* GPTD_QUANT_X86 */
