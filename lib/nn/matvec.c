/* matvec.c: the float32 matrix-vector kernels of a decoding step for one to a
 * few activation rows (scalar reference, AVX2 + FMA, AVX-512), each output
 * summed in the one order matvec-private.h defines, and their choice by
 * CPUID.
 *
 * A decoding step reads every weight once and is bound by memory bandwidth;
 * with several rows (a batch of sequences) each weight loaded is used for
 * every row while it is in a register or in L1, so the step costs little more
 * than for one row.  matvec_kn walks W (K, N) in chunks of KC rows: each
 * chunk is read as KC sequential streams (the hardware prefetchers follow
 * them), and its column tiles are multiplied into every row's running sums,
 * which stay in Y between chunks (stored and loaded back exactly, so the
 * order of the sums does not change).
 */
#include "config.h"

#include "nn/matvec-private.h"
#include "nn/nn-internal.h"

#include <math.h>
#include <string.h>

/* Rows of W per chunk of matvec_kn. */
#define KC 8
/* The loops over a tile's rows and vectors, unrolled into registers. */
#define UNROLL _Pragma ("GCC unroll 8")

/* ---- scalar ------------------------------------------------------------- */

static void
matvec_kn_scalar (const float *X, size_t ldx, int B, const float *W,
                  size_t ldw, size_t K, size_t N, float *Y, size_t ldy)
{
  for (int r = 0; r < B; r++)
    {
      float *y = Y + (size_t) r * ldy;
      const float *x = X + (size_t) r * ldx;
      memset (y, 0, sizeof (float) * N);
      for (size_t k = 0; k < K; k++)
        {
          const float xk = x[k], *w = W + k * ldw;
          for (size_t j = 0; j < N; j++)
            y[j] = fmaf (xk, w[j], y[j]);
        }
    }
}

/* The fixed reduction of 16 partial sums (see matvec-private.h). */
static inline float
reduce16 (float *s)
{
  for (int l = 0; l < 8; l++)
    s[l] += s[l + 8];
  for (int l = 0; l < 4; l++)
    s[l] += s[l + 4];
  for (int l = 0; l < 2; l++)
    s[l] += s[l + 2];
  return s[0] + s[1];
}

static void
dot_rows_scalar (const float *W, size_t ldw, size_t n, size_t K,
                 const float *X, size_t ldx, int B, float *Y, size_t ldy)
{
  const size_t K16 = K / 16 * 16;
  for (size_t j = 0; j < n; j++)
    for (int r = 0; r < B; r++)
      {
        const float *w = W + j * ldw, *x = X + (size_t) r * ldx;
        float s[16] = { 0 };
        for (size_t k = 0; k < K16; k += 16)
          for (int l = 0; l < 16; l++)
            s[l] = fmaf (w[k + l], x[k + l], s[l]);
        float y = reduce16 (s);
        for (size_t k = K16; k < K; k++)
          y = fmaf (w[k], x[k], y);
        Y[(size_t) r * ldy + j] = y;
      }
}

static const GptdMatvecKernels kernels_scalar = {
  "scalar", matvec_kn_scalar, dot_rows_scalar,
};

#if defined(__x86_64__) && defined(__GNUC__)
#define MATVEC_X86 1
#include <immintrin.h>

#define TARGET_AVX2 __attribute__ ((target ("avx2,fma")))
#define TARGET_AVX512 __attribute__ ((target ("avx512f,avx2,fma")))

/* The columns of [j0, N) one at a time, for every row, over the chunk's rows
 * [k0, k1): the tail of matvec_kn that is not a whole vector. */
static inline void
matvec_kn_tail (const float *X, size_t ldx, int B, const float *W, size_t ldw,
                size_t k0, size_t k1, size_t j0, size_t N, float *Y,
                size_t ldy)
{
  for (size_t j = j0; j < N; j++)
    for (int r = 0; r < B; r++)
      {
        float *y = Y + (size_t) r * ldy + j;
        const float *x = X + (size_t) r * ldx;
        float acc = k0 == 0 ? 0.0f : *y;
        for (size_t k = k0; k < k1; k++)
          acc = fmaf (x[k], W[k * ldw + j], acc);
        *y = acc;
      }
}

/* ---- AVX2 --------------------------------------------------------------- */

/* Rows [0, R) of X against the chunk's @kn rows of W (starting at W) over
 * columns [j, j + 8 T): R x T independent sums in registers, each W vector
 * loaded once for the R rows.  R and T are constants where it is called, so
 * that everything unrolls into registers. */
TARGET_AVX2 static inline __attribute__ ((always_inline)) void
kn_tile_avx2 (const float *X, size_t ldx, const int R, const float *W,
              size_t ldw, size_t kn, size_t j, const int T, float *Y,
              size_t ldy, gboolean first)
{
  __m256 acc[4][8];
  UNROLL
  for (int r = 0; r < R; r++)
    UNROLL
    for (int t = 0; t < T; t++)
      acc[r][t] = first ? _mm256_setzero_ps ()
                        : _mm256_loadu_ps (Y + (size_t) r * ldy + j + 8 * t);
  for (size_t k = 0; k < kn; k++)
    {
      __m256 x[4];
      UNROLL
      for (int r = 0; r < R; r++)
        x[r] = _mm256_broadcast_ss (X + (size_t) r * ldx + k);
      UNROLL
      for (int t = 0; t < T; t++)
        {
          __m256 w = _mm256_loadu_ps (W + k * ldw + j + 8 * t);
          UNROLL
          for (int r = 0; r < R; r++)
            acc[r][t] = _mm256_fmadd_ps (x[r], w, acc[r][t]);
        }
    }
  UNROLL
  for (int r = 0; r < R; r++)
    UNROLL
    for (int t = 0; t < T; t++)
      _mm256_storeu_ps (Y + (size_t) r * ldy + j + 8 * t, acc[r][t]);
}

/* Rows [0, R) over the columns [0, N8) of one chunk: tiles of 8 T columns,
 * then single vectors. */
#define KN_ROWS_AVX2(R, T)                                                    \
  do                                                                          \
    {                                                                         \
      size_t j = 0;                                                           \
      for (; j + 8 * (T) <= N8; j += 8 * (T))                                 \
        kn_tile_avx2 (x, ldx, (R), w, ldw, kn, j, (T), y, ldy, first);        \
      for (; j < N8; j += 8)                                                  \
        kn_tile_avx2 (x, ldx, (R), w, ldw, kn, j, 1, y, ldy, first);          \
    }                                                                         \
  while (0)

TARGET_AVX2 static void
matvec_kn_avx2 (const float *X, size_t ldx, int B, const float *W, size_t ldw,
                size_t K, size_t N, float *Y, size_t ldy)
{
  const size_t N8 = N / 8 * 8;
  for (size_t k0 = 0; k0 < K; k0 += KC)
    {
      const size_t k1 = MIN (K, k0 + KC), kn = k1 - k0;
      const gboolean first = k0 == 0;
      const float *w = W + k0 * ldw;
      /* Rows in groups of up to four; enough independent sums in each tile
       * to hide the latency of the multiply-adds. */
      for (int r0 = 0; r0 < B; r0 += 4)
        {
          const float *x = X + (size_t) r0 * ldx + k0;
          float *y = Y + (size_t) r0 * ldy;
          switch (MIN (4, B - r0))
            {
            case 1: KN_ROWS_AVX2 (1, 8); break;
            case 2: KN_ROWS_AVX2 (2, 4); break;
            case 3: KN_ROWS_AVX2 (3, 2); break;
            default: KN_ROWS_AVX2 (4, 2); break;
            }
        }
      matvec_kn_tail (X, ldx, B, W, ldw, k0, k1, N8, N, Y, ldy);
    }
}

/* The sum of the 16 partial sums held in @a (lanes 0-7) and @b (lanes 8-15),
 * in the fixed order. */
TARGET_AVX2 static inline float
reduce16_avx2 (__m256 a, __m256 b)
{
  __m256 v = _mm256_add_ps (a, b);                       /* l + (l + 8) */
  __m128 s = _mm_add_ps (_mm256_castps256_ps128 (v),
                         _mm256_extractf128_ps (v, 1));  /* l + (l + 4) */
  s = _mm_add_ps (s, _mm_movehl_ps (s, s));              /* l + (l + 2) */
  s = _mm_add_ss (s, _mm_movehdup_ps (s));               /* 0 + 1 */
  return _mm_cvtss_f32 (s);
}

/* Rows j and j + 1 (when @two) of W against rows r and r + 1 (when @pair) of
 * X: up to four independent sums in flight. */
TARGET_AVX2 static inline __attribute__ ((always_inline)) void
dot_2x2_avx2 (const float *W, size_t ldw, gboolean two, size_t K,
              const float *X, size_t ldx, gboolean pair, float *Y, size_t ldy)
{
  const size_t K16 = K / 16 * 16;
  __m256 a[4], b[4];
  for (int i = 0; i < 4; i++)
    a[i] = b[i] = _mm256_setzero_ps ();
  const float *w0 = W, *w1 = W + ldw, *x0 = X, *x1 = X + ldx;
  for (size_t k = 0; k < K16; k += 16)
    {
      __m256 wa0 = _mm256_loadu_ps (w0 + k), wb0 = _mm256_loadu_ps (w0 + k + 8);
      __m256 xa0 = _mm256_loadu_ps (x0 + k), xb0 = _mm256_loadu_ps (x0 + k + 8);
      a[0] = _mm256_fmadd_ps (wa0, xa0, a[0]);
      b[0] = _mm256_fmadd_ps (wb0, xb0, b[0]);
      if (pair)
        {
          __m256 xa1 = _mm256_loadu_ps (x1 + k), xb1 = _mm256_loadu_ps (x1 + k + 8);
          a[1] = _mm256_fmadd_ps (wa0, xa1, a[1]);
          b[1] = _mm256_fmadd_ps (wb0, xb1, b[1]);
          if (two)
            {
              __m256 wa1 = _mm256_loadu_ps (w1 + k), wb1 = _mm256_loadu_ps (w1 + k + 8);
              a[2] = _mm256_fmadd_ps (wa1, xa0, a[2]);
              b[2] = _mm256_fmadd_ps (wb1, xb0, b[2]);
              a[3] = _mm256_fmadd_ps (wa1, xa1, a[3]);
              b[3] = _mm256_fmadd_ps (wb1, xb1, b[3]);
            }
        }
      else if (two)
        {
          __m256 wa1 = _mm256_loadu_ps (w1 + k), wb1 = _mm256_loadu_ps (w1 + k + 8);
          a[2] = _mm256_fmadd_ps (wa1, xa0, a[2]);
          b[2] = _mm256_fmadd_ps (wb1, xb0, b[2]);
        }
    }
  /* (W row, X row) of each sum. */
  static const int wr[4] = { 0, 0, 1, 1 }, xr[4] = { 0, 1, 0, 1 };
  for (int i = 0; i < 4; i++)
    {
      if ((wr[i] && !two) || (xr[i] && !pair))
        continue;
      const float *w = wr[i] ? w1 : w0, *x = xr[i] ? x1 : x0;
      float y = reduce16_avx2 (a[i], b[i]);
      for (size_t k = K16; k < K; k++)
        y = fmaf (w[k], x[k], y);
      Y[(size_t) xr[i] * ldy + wr[i]] = y;
    }
}

TARGET_AVX2 static void
dot_rows_avx2 (const float *W, size_t ldw, size_t n, size_t K, const float *X,
               size_t ldx, int B, float *Y, size_t ldy)
{
  for (size_t j = 0; j < n; j += 2)
    for (int r = 0; r < B; r += 2)
      dot_2x2_avx2 (W + j * ldw, ldw, j + 1 < n, K, X + (size_t) r * ldx, ldx,
                    r + 1 < B, Y + (size_t) r * ldy + j, ldy);
}

static const GptdMatvecKernels kernels_avx2 = {
  "avx2", matvec_kn_avx2, dot_rows_avx2,
};

/* ---- AVX-512 ------------------------------------------------------------ */

/* As kn_tile_avx2(), 16 columns to a vector. */
TARGET_AVX512 static inline __attribute__ ((always_inline)) void
kn_tile_avx512 (const float *X, size_t ldx, const int R, const float *W,
                size_t ldw, size_t kn, size_t j, const int T, float *Y,
                size_t ldy, gboolean first)
{
  __m512 acc[4][8];
  UNROLL
  for (int r = 0; r < R; r++)
    UNROLL
    for (int t = 0; t < T; t++)
      acc[r][t] = first ? _mm512_setzero_ps ()
                        : _mm512_loadu_ps (Y + (size_t) r * ldy + j + 16 * t);
  for (size_t k = 0; k < kn; k++)
    {
      __m512 x[4];
      UNROLL
      for (int r = 0; r < R; r++)
        x[r] = _mm512_set1_ps (X[(size_t) r * ldx + k]);
      UNROLL
      for (int t = 0; t < T; t++)
        {
          __m512 w = _mm512_loadu_ps (W + k * ldw + j + 16 * t);
          UNROLL
          for (int r = 0; r < R; r++)
            acc[r][t] = _mm512_fmadd_ps (x[r], w, acc[r][t]);
        }
    }
  UNROLL
  for (int r = 0; r < R; r++)
    UNROLL
    for (int t = 0; t < T; t++)
      _mm512_storeu_ps (Y + (size_t) r * ldy + j + 16 * t, acc[r][t]);
}

#define KN_ROWS_AVX512(R, T)                                                  \
  do                                                                          \
    {                                                                         \
      size_t j = 0;                                                           \
      for (; j + 16 * (T) <= N16; j += 16 * (T))                              \
        kn_tile_avx512 (x, ldx, (R), w, ldw, kn, j, (T), y, ldy, first);      \
      for (; j < N16; j += 16)                                                \
        kn_tile_avx512 (x, ldx, (R), w, ldw, kn, j, 1, y, ldy, first);        \
    }                                                                         \
  while (0)

TARGET_AVX512 static void
matvec_kn_avx512 (const float *X, size_t ldx, int B, const float *W,
                  size_t ldw, size_t K, size_t N, float *Y, size_t ldy)
{
  const size_t N16 = N / 16 * 16;
  for (size_t k0 = 0; k0 < K; k0 += KC)
    {
      const size_t k1 = MIN (K, k0 + KC), kn = k1 - k0;
      const gboolean first = k0 == 0;
      const float *w = W + k0 * ldw;
      for (int r0 = 0; r0 < B; r0 += 4)
        {
          const float *x = X + (size_t) r0 * ldx + k0;
          float *y = Y + (size_t) r0 * ldy;
          switch (MIN (4, B - r0))
            {
            case 1: KN_ROWS_AVX512 (1, 8); break;
            case 2: KN_ROWS_AVX512 (2, 4); break;
            case 3: KN_ROWS_AVX512 (3, 2); break;
            default: KN_ROWS_AVX512 (4, 2); break;
            }
        }
      matvec_kn_tail (X, ldx, B, W, ldw, k0, k1, N16, N, Y, ldy);
    }
}

/* The fixed-order sum of the 16 lanes of @v. */
TARGET_AVX512 static inline float
reduce16_avx512 (__m512 v)
{
  __m256 lo = _mm512_castps512_ps256 (v);
  __m256 hi = _mm256_castpd_ps (_mm512_extractf64x4_pd (_mm512_castps_pd (v), 1));
  __m256 s8 = _mm256_add_ps (lo, hi);                     /* l + (l + 8) */
  __m128 s = _mm_add_ps (_mm256_castps256_ps128 (s8),
                         _mm256_extractf128_ps (s8, 1));  /* l + (l + 4) */
  s = _mm_add_ps (s, _mm_movehl_ps (s, s));               /* l + (l + 2) */
  s = _mm_add_ss (s, _mm_movehdup_ps (s));                /* 0 + 1 */
  return _mm_cvtss_f32 (s);
}

TARGET_AVX512 static void
dot_rows_avx512 (const float *W, size_t ldw, size_t n, size_t K,
                 const float *X, size_t ldx, int B, float *Y, size_t ldy)
{
  const size_t K16 = K / 16 * 16;
  for (size_t j = 0; j < n; j += 2)
    {
      const int nw = j + 1 < n ? 2 : 1;
      for (int r0 = 0; r0 < B; r0 += 2)
        {
          const int nx = r0 + 1 < B ? 2 : 1;
          __m512 acc[2][2];
          for (int u = 0; u < 2; u++)
            acc[u][0] = acc[u][1] = _mm512_setzero_ps ();
          for (size_t k = 0; k < K16; k += 16)
            for (int u = 0; u < nw; u++)
              {
                __m512 w = _mm512_loadu_ps (W + (j + u) * ldw + k);
                for (int v = 0; v < nx; v++)
                  acc[u][v] = _mm512_fmadd_ps (
                    w, _mm512_loadu_ps (X + (size_t) (r0 + v) * ldx + k), acc[u][v]);
              }
          for (int u = 0; u < nw; u++)
            for (int v = 0; v < nx; v++)
              {
                const float *w = W + (j + u) * ldw, *x = X + (size_t) (r0 + v) * ldx;
                float y = reduce16_avx512 (acc[u][v]);
                for (size_t k = K16; k < K; k++)
                  y = fmaf (w[k], x[k], y);
                Y[(size_t) (r0 + v) * ldy + j + u] = y;
              }
        }
    }
}

static const GptdMatvecKernels kernels_avx512 = {
  "avx512", matvec_kn_avx512, dot_rows_avx512,
};
#endif /* x86-64 */

/* ---- choice by CPUID ---------------------------------------------------- */

const GptdMatvecKernels *
gptd__matvec_kernels_lookup (const char *name)
{
  if (strcmp (name, "scalar") == 0)
    return &kernels_scalar;
#ifdef MATVEC_X86
  __builtin_cpu_init ();
  gboolean avx2 = __builtin_cpu_supports ("avx2") && __builtin_cpu_supports ("fma");
  if (strcmp (name, "avx2") == 0 && avx2)
    return &kernels_avx2;
  if (strcmp (name, "avx512") == 0 && avx2 && __builtin_cpu_supports ("avx512f"))
    return &kernels_avx512;
#endif
  return NULL;
}

static gpointer
choose_kernels (gpointer data)
{
  (void) data;
  static const char *const order[] = { "avx512", "avx2", "scalar" };
  const char *cap = g_getenv ("GPTD_MATVEC_KERNELS");
  gboolean allowed = cap == NULL || *cap == '\0';
  for (guint i = 0; i < G_N_ELEMENTS (order); i++)
    {
      if (!allowed && strcmp (cap, order[i]) == 0)
        allowed = TRUE;
      if (!allowed)
        continue;
      const GptdMatvecKernels *k = gptd__matvec_kernels_lookup (order[i]);
      if (k != NULL)
        return (gpointer) k;
    }
  return (gpointer) &kernels_scalar;
}

const GptdMatvecKernels *
gptd__matvec_kernels (void)
{
  static GOnce once = G_ONCE_INIT;
  return g_once (&once, choose_kernels, NULL);
}
