/* nn-kernels.c: the element-wise and attention kernels of the GPT-2 model:
 * LayerNorm, GELU (tanh), bias, residual with dropout, embeddings, causal
 * multi-head attention and cross-entropy, forward and backward.
 *
 * Each public kernel opens its own OpenMP team with a static split, so the
 * results depend on the thread count but never on timing.  Matrix products
 * inside attention are single-threaded sgemm calls, one (batch, head) pair
 * per thread at a time.
 */
/* Floating-point compares inside the kernels (clamps, maxima) must not stop
 * vectorisation: none of them may trap. */
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC optimize ("-fno-trapping-math")
#endif

#include "nn/nn-internal.h"

#include <math.h>
#include <string.h>
#ifdef _OPENMP
#include <omp.h>
#endif

/* Row block of the causal attention: products skip the blocks above the
 * diagonal. */
#define ATT_BLOCK 64

#ifdef _OPENMP
#define TEAM_BEGIN                                                           \
  int nt_ = gptd_nn_get_num_threads ();                                     \
  _Pragma ("omp parallel num_threads (nt_)")                                \
  {                                                                         \
    int tid = omp_get_thread_num ();                                        \
    int nth = omp_get_num_threads ();
#define TEAM_END }
#else
#define TEAM_BEGIN                                                           \
  {                                                                         \
    int tid = 0;                                                            \
    int nth = 1;
#define TEAM_END }
#endif

/* ---- LayerNorm ----------------------------------------------------------- */

GPTD_NN_CLONES static void
ln_row (float *restrict out, float *mean, float *rstd, const float *restrict x,
        const float *restrict w, const float *restrict b, int C, float eps)
{
  float sum = 0.0f;
  GPTD_NN_PRAGMA (omp simd reduction (+ : sum))
  for (int c = 0; c < C; c++)
    sum += x[c];
  float m = sum / (float) C;
  float var = 0.0f;
  GPTD_NN_PRAGMA (omp simd reduction (+ : var))
  for (int c = 0; c < C; c++)
    {
      float d = x[c] - m;
      var += d * d;
    }
  float rs = 1.0f / sqrtf (var / (float) C + eps);
  GPTD_NN_SIMD
  for (int c = 0; c < C; c++)
    out[c] = (x[c] - m) * rs * w[c] + b[c];
  if (mean != NULL)
    *mean = m;
  if (rstd != NULL)
    *rstd = rs;
}

void
gptd__nn_layernorm_rows (float *out, float *mean, float *rstd, const float *x,
                         const float *w, const float *b, size_t rows, int C,
                         float eps)
{
  for (size_t r = 0; r < rows; r++)
    ln_row (out + r * C, mean ? mean + r : NULL, rstd ? rstd + r : NULL,
            x + r * C, w, b, C, eps);
}

void
gptd__nn_layernorm_forward (float *out, float *mean, float *rstd,
                            const float *x, const float *w, const float *b,
                            size_t rows, int C, float eps)
{
  TEAM_BEGIN
  size_t r0, r1;
  gptd__nn_split (rows, nth, tid, 1, &r0, &r1);
  for (size_t r = r0; r < r1; r++)
    ln_row (out + r * C, mean + r, rstd + r, x + r * C, w, b, C, eps);
  TEAM_END
}

GPTD_NN_CLONES static void
residual_row (float *out, const float *in, const float *restrict br,
              const float *restrict bias, const GptdNnDropout *drop,
              uint32_t base, int C)
{
  if (drop->threshold != 0)
    {
      const uint32_t key = drop->key, th = drop->threshold;
      const float sc = drop->scale;
      if (bias != NULL)
        {
          GPTD_NN_SIMD
          for (int c = 0; c < C; c++)
            out[c] = in[c] + (gptd__nn_hash32 (key, base + (uint32_t) c) >= th
                                  ? sc : 0.0f) * (br[c] + bias[c]);
        }
      else
        {
          GPTD_NN_SIMD
          for (int c = 0; c < C; c++)
            out[c] = in[c] + (gptd__nn_hash32 (key, base + (uint32_t) c) >= th
                                  ? sc : 0.0f) * br[c];
        }
    }
  else if (bias != NULL)
    {
      GPTD_NN_SIMD
      for (int c = 0; c < C; c++)
        out[c] = in[c] + br[c] + bias[c];
    }
  else
    {
      GPTD_NN_SIMD
      for (int c = 0; c < C; c++)
        out[c] = in[c] + br[c];
    }
}

void
gptd__nn_residual_layernorm (float *res_out, const float *res_in,
                             const float *branch, const float *bias,
                             const GptdNnDropout *drop, float *ln_out,
                             float *mean, float *rstd, const float *w,
                             const float *b, size_t rows, int C, float eps)
{
  TEAM_BEGIN
  size_t r0, r1;
  gptd__nn_split (rows, nth, tid, 1, &r0, &r1);
  for (size_t r = r0; r < r1; r++)
    {
      float *o = res_out + r * C;
      residual_row (o, res_in + r * C, branch + r * C, bias, drop,
                    (uint32_t) (r * C), C);
      if (ln_out != NULL)
        ln_row (ln_out + r * C, mean + r, rstd + r, o, w, b, C, eps);
    }
  TEAM_END
}

GPTD_NN_CLONES static void
ln_backward_row (float *restrict dx, float *restrict dw, float *restrict db,
                 const float *restrict dout, const float *restrict x,
                 float mean, float rstd, const float *restrict w, int C)
{
  float s1 = 0.0f, s2 = 0.0f;
  GPTD_NN_PRAGMA (omp simd reduction (+ : s1, s2))
  for (int c = 0; c < C; c++)
    {
      float xh = (x[c] - mean) * rstd;
      float dn = dout[c] * w[c];
      s1 += dn;
      s2 += dn * xh;
    }
  s1 /= (float) C;
  s2 /= (float) C;
  GPTD_NN_SIMD
  for (int c = 0; c < C; c++)
    {
      float xh = (x[c] - mean) * rstd;
      float dn = dout[c] * w[c];
      dx[c] += (dn - s1 - xh * s2) * rstd;
      dw[c] += dout[c] * xh;
      db[c] += dout[c];
    }
}

void
gptd__nn_layernorm_backward (float *dx, float *dw, float *db,
                             const float *dout, const float *x,
                             const float *mean, const float *rstd,
                             const float *w, size_t rows, int C,
                             float *scratch)
{
  TEAM_BEGIN
  float *pw = scratch + (size_t) tid * 2 * C;
  float *pb = pw + C;
  memset (pw, 0, sizeof (float) * 2 * C);
  size_t r0, r1;
  gptd__nn_split (rows, nth, tid, 1, &r0, &r1);
  for (size_t r = r0; r < r1; r++)
    ln_backward_row (dx + r * C, pw, pb, dout + r * C, x + r * C, mean[r],
                     rstd[r], w, C);
  GPTD_NN_PRAGMA (omp barrier)
  size_t c0, c1;
  gptd__nn_split ((size_t) C, nth, tid, 16, &c0, &c1);
  for (int t = 0; t < nth; t++)
    {
      const float *sw = scratch + (size_t) t * 2 * C;
      const float *sb = sw + C;
      for (size_t c = c0; c < c1; c++)
        {
          if (dw != NULL)
            dw[c] += sw[c];
          if (db != NULL)
            db[c] += sb[c];
        }
    }
  TEAM_END
}

/* ---- GELU ------------------------------------------------------------------ */

#define GELU_K 0.7978845608028654f /* sqrt(2/pi) */
#define GELU_A 0.044715f

static inline float
tanh_approx (float u)
{
  /* tanh(u) = 1 - 2 / (exp(2u) + 1); exact to float rounding for |u| > 0.1
   * and within a few ulp of the result's magnitude below. */
  float e = gptd__nn_expf (2.0f * u);
  return 1.0f - 2.0f / (e + 1.0f);
}

GPTD_NN_CLONES static void
gelu_forward_range (float *y, const float *x, size_t n)
{
  GPTD_NN_SIMD
  for (size_t i = 0; i < n; i++)
    {
      float v = x[i];
      float t = tanh_approx (GELU_K * (v + GELU_A * v * v * v));
      y[i] = 0.5f * v * (1.0f + t);
    }
}

GPTD_NN_CLONES static void
gelu_backward_range (float *restrict d, const float *restrict x, size_t n)
{
  GPTD_NN_SIMD
  for (size_t i = 0; i < n; i++)
    {
      float v = x[i];
      float t = tanh_approx (GELU_K * (v + GELU_A * v * v * v));
      float g = 0.5f * (1.0f + t) +
                0.5f * v * (1.0f - t * t) * GELU_K *
                    (1.0f + 3.0f * GELU_A * v * v);
      d[i] *= g;
    }
}

void
gptd__nn_gelu_range (float *y, const float *x, size_t n)
{
  gelu_forward_range (y, x, n);
}

void
gptd__nn_gelu_forward (float *y, const float *x, size_t n)
{
  TEAM_BEGIN
  size_t b, e;
  gptd__nn_split (n, nth, tid, 16, &b, &e);
  gelu_forward_range (y + b, x + b, e - b);
  TEAM_END
}

void
gptd__nn_gelu_backward (float *d, const float *x, size_t n)
{
  TEAM_BEGIN
  size_t b, e;
  gptd__nn_split (n, nth, tid, 16, &b, &e);
  gelu_backward_range (d + b, x + b, e - b);
  TEAM_END
}

/* ---- bias, dropout, embeddings ------------------------------------------- */

void
gptd__nn_fill_bias (float *out, const float *bias, size_t rows, int C, int ldo)
{
  TEAM_BEGIN
  size_t r0, r1;
  gptd__nn_split (rows, nth, tid, 1, &r0, &r1);
  for (size_t r = r0; r < r1; r++)
    memcpy (out + r * ldo, bias, sizeof (float) * C);
  TEAM_END
}

GPTD_NN_CLONES static void
add_row (float *restrict acc, const float *restrict d, size_t n)
{
  GPTD_NN_SIMD
  for (size_t c = 0; c < n; c++)
    acc[c] += d[c];
}

void
gptd__nn_bias_backward (float *db, const float *d, size_t rows, int C, int ld)
{
  TEAM_BEGIN
  size_t c0, c1;
  gptd__nn_split ((size_t) C, nth, tid, 16, &c0, &c1);
  if (c1 > c0)
    {
      float *acc = g_new0 (float, c1 - c0);
      for (size_t r = 0; r < rows; r++)
        add_row (acc, d + r * ld + c0, c1 - c0);
      add_row (db + c0, acc, c1 - c0);
      g_free (acc);
    }
  TEAM_END
}

GPTD_NN_CLONES static void
dropout_range (float *out, const float *d, uint32_t key,
               uint32_t th, float sc, size_t begin, size_t end)
{
  GPTD_NN_SIMD
  for (size_t i = begin; i < end; i++)
    out[i] = d[i] * (gptd__nn_hash32 (key, (uint32_t) i) >= th ? sc : 0.0f);
}

void
gptd__nn_dropout_apply (float *out, const float *d, const GptdNnDropout *drop,
                        size_t n)
{
  TEAM_BEGIN
  size_t b, e;
  gptd__nn_split (n, nth, tid, 16, &b, &e);
  if (drop->threshold != 0)
    dropout_range (out, d, drop->key, drop->threshold, drop->scale, b, e);
  else if (out != d)
    memcpy (out + b, d + b, sizeof (float) * (e - b));
  TEAM_END
}

GPTD_NN_CLONES static void
embed_row (float *restrict out, const float *restrict te,
           const float *restrict pe, const GptdNnDropout *drop, uint32_t base,
           int C)
{
  if (drop->threshold != 0)
    {
      const uint32_t key = drop->key, th = drop->threshold;
      const float sc = drop->scale;
      GPTD_NN_SIMD
      for (int c = 0; c < C; c++)
        out[c] = (te[c] + pe[c]) *
                 (gptd__nn_hash32 (key, base + (uint32_t) c) >= th ? sc : 0.0f);
    }
  else
    {
      GPTD_NN_SIMD
      for (int c = 0; c < C; c++)
        out[c] = te[c] + pe[c];
    }
}

void
gptd__nn_embed_forward (float *out, const gint32 *tokens, const float *wte,
                        const float *wpe, int B, int T, int C,
                        const GptdNnDropout *drop)
{
  TEAM_BEGIN
  size_t r0, r1;
  gptd__nn_split ((size_t) B * T, nth, tid, 1, &r0, &r1);
  for (size_t r = r0; r < r1; r++)
    embed_row (out + r * C, wte + (size_t) tokens[r] * C,
               wpe + (size_t) (r % T) * C, drop, (uint32_t) (r * C), C);
  TEAM_END
}

void
gptd__nn_embed_backward (float *dwte, float *dwpe, const float *d,
                         const gint32 *tokens, int B, int T, int C)
{
  TEAM_BEGIN
  /* Each thread owns a slice of channels and walks all rows in order: no
   * races and a fixed summation order. */
  size_t c0, c1;
  gptd__nn_split ((size_t) C, nth, tid, 16, &c0, &c1);
  if (c1 > c0)
    for (size_t r = 0; r < (size_t) B * T; r++)
      {
        const float *dr = d + r * C + c0;
        if (dwte != NULL)
          add_row (dwte + (size_t) tokens[r] * C + c0, dr, c1 - c0);
        if (dwpe != NULL)
          add_row (dwpe + (r % T) * C + c0, dr, c1 - c0);
      }
  TEAM_END
}

/* ---- linear layers with fused epilogues ------------------------------------ */

void
gptd__nn_linear_forward (float *out, const float *in, const float *W,
                         size_t rows, int K, int N, const GptdNnLinearEpi *e)
{
  const gboolean residual = e != NULL && e->res_out != NULL;
  const float *bias = e != NULL ? e->bias : NULL;
  const gboolean fill = bias != NULL && !residual;
  const gboolean by_rows = rows >= (size_t) N;
  const GptdNnLora *lo = e != NULL ? e->lora : NULL;
  TEAM_BEGIN
  size_t b, en;
  if (by_rows)
    {
      gptd__nn_split (rows, nth, tid, 16, &b, &en);
      if (fill)
        for (size_t r = b; r < en; r++)
          memcpy (out + r * N, bias, sizeof (float) * N);
      // out[b:en] (rows, N) = in[b:en] (rows, K) W (K, N)
      gptd__nn_sgemm1 (FALSE, FALSE, (int) (en - b), N, K, 1.0f,
                       in + b * K, K, W, N, fill ? 1.0f : 0.0f, out + b * N,
                       N);
      // out[b:en] += scale * u[b:en] (rows, r) B (r, N)
      if (lo != NULL)
        gptd__nn_sgemm1 (FALSE, FALSE, (int) (en - b), N, lo->r, lo->scale,
                         lo->u + b * lo->r, lo->r, lo->B, N, 1.0f,
                         out + b * N, N);
      if (e != NULL && e->gelu_out != NULL)
        gelu_forward_range (e->gelu_out + b * N, out + b * N, (en - b) * N);
    }
  else
    {
      gptd__nn_split ((size_t) N, nth, tid, 16, &b, &en);
      if (fill)
        for (size_t r = 0; r < rows; r++)
          memcpy (out + r * N + b, bias + b, sizeof (float) * (en - b));
      gptd__nn_sgemm1 (FALSE, FALSE, (int) rows, (int) (en - b), K, 1.0f, in,
                       K, W + b, N, fill ? 1.0f : 0.0f, out + b, N);
      if (lo != NULL)
        gptd__nn_sgemm1 (FALSE, FALSE, (int) rows, (int) (en - b), lo->r,
                         lo->scale, lo->u, lo->r, lo->B + b, N, 1.0f, out + b,
                         N);
      if (e != NULL && e->gelu_out != NULL)
        for (size_t r = 0; r < rows; r++)
          gelu_forward_range (e->gelu_out + r * N + b, out + r * N + b,
                              en - b);
      if (residual)
        {
          GPTD_NN_PRAGMA (omp barrier)
        }
    }
  if (residual)
    {
      /* res_out = res_in + drop(out + bias), then LayerNorm, on own rows. */
      size_t r0, r1;
      if (by_rows)
        r0 = b, r1 = en;
      else
        gptd__nn_split (rows, nth, tid, 1, &r0, &r1);
      for (size_t r = r0; r < r1; r++)
        {
          float *o = e->res_out + r * N;
          residual_row (o, e->res_in + r * N, out + r * N, bias, &e->drop,
                        (uint32_t) (r * N), N);
          if (e->ln_out != NULL)
            ln_row (e->ln_out + r * N, e->mean + r, e->rstd + r, o, e->ln_w,
                    e->ln_b, N, e->eps);
        }
    }
  TEAM_END
}

void
gptd__nn_linear_backward (float *din, float *dW, float *db, const float *dout,
                          const float *in, const float *W, size_t rows, int K,
                          int N, const float *gelu_x, const GptdNnLora *lora)
{
  TEAM_BEGIN
  size_t b, e;
  if (dW != NULL)
    {
      // dW (K, N) += in^T (K, rows) dout (rows, N)
      if (K >= N)
        {
          gptd__nn_split ((size_t) K, nth, tid, 16, &b, &e);
          gptd__nn_sgemm1 (TRUE, FALSE, (int) (e - b), N, (int) rows, 1.0f,
                           in + b, K, dout, N, 1.0f, dW + b * N, N);
        }
      else
        {
          gptd__nn_split ((size_t) N, nth, tid, 16, &b, &e);
          gptd__nn_sgemm1 (TRUE, FALSE, K, (int) (e - b), (int) rows, 1.0f,
                           in, K, dout + b, N, 1.0f, dW + b, N);
        }
    }
  if (db != NULL)
    {
      gptd__nn_split ((size_t) N, nth, tid, 16, &b, &e);
      if (e > b)
        {
          float *acc = g_new0 (float, e - b);
          for (size_t r = 0; r < rows; r++)
            add_row (acc, dout + r * N + b, e - b);
          add_row (db + b, acc, e - b);
          g_free (acc);
        }
    }
  if (din != NULL)
    {
      // din (rows, K) = dout (rows, N) W (K, N)^T
      if (rows >= (size_t) K)
        {
          gptd__nn_split (rows, nth, tid, 16, &b, &e);
          gptd__nn_sgemm1 (FALSE, TRUE, (int) (e - b), K, N, 1.0f,
                           dout + b * N, N, W, N, 0.0f, din + b * K, K);
          // din[b:e] += du[b:e] (rows, r) A (K, r)^T
          if (lora != NULL)
            gptd__nn_sgemm1 (FALSE, TRUE, (int) (e - b), K, lora->r, 1.0f,
                             lora->du + b * lora->r, lora->r, lora->A,
                             lora->r, 1.0f, din + b * K, K);
          if (gelu_x != NULL)
            gelu_backward_range (din + b * K, gelu_x + b * K, (e - b) * K);
        }
      else
        {
          gptd__nn_split ((size_t) K, nth, tid, 16, &b, &e);
          gptd__nn_sgemm1 (FALSE, TRUE, (int) rows, (int) (e - b), N, 1.0f,
                           dout, N, W + b * N, N, 0.0f, din + b, K);
          if (lora != NULL)
            gptd__nn_sgemm1 (FALSE, TRUE, (int) rows, (int) (e - b), lora->r,
                             1.0f, lora->du, lora->r, lora->A + b * lora->r,
                             lora->r, 1.0f, din + b, K);
          if (gelu_x != NULL)
            for (size_t r = 0; r < rows; r++)
              gelu_backward_range (din + r * K + b, gelu_x + r * K + b,
                                   e - b);
        }
    }
  TEAM_END
}

/* ---- attention ------------------------------------------------------------- */

/* Softmax of row i (n = i + 1 valid entries, scaled scores already in row),
 * zeroing the masked entries up to @width; returns the log-sum-exp. */
GPTD_NN_CLONES static float
softmax_row (float *restrict row, int n, int width, const GptdNnDropout *drop,
             uint32_t base)
{
  float mx = -INFINITY;
  for (int j = 0; j < n; j++)
    mx = row[j] > mx ? row[j] : mx;
  float sum = 0.0f;
  GPTD_NN_PRAGMA (omp simd reduction (+ : sum))
  for (int j = 0; j < n; j++)
    {
      float e = gptd__nn_expf (row[j] - mx);
      row[j] = e;
      sum += e;
    }
  float inv = 1.0f / sum;
  if (drop->threshold != 0)
    {
      const uint32_t key = drop->key, th = drop->threshold;
      const float sc = drop->scale * inv;
      GPTD_NN_SIMD
      for (int j = 0; j < n; j++)
        row[j] *= gptd__nn_hash32 (key, base + (uint32_t) j) >= th ? sc : 0.0f;
    }
  else
    {
      GPTD_NN_SIMD
      for (int j = 0; j < n; j++)
        row[j] *= inv;
    }
  for (int j = n; j < width; j++)
    row[j] = 0.0f;
  return mx + logf (sum);
}

void
gptd__nn_attention_forward (float *out, float *lse, const float *qkv, int B,
                            int T, int C, int nh, const GptdNnDropout *drop,
                            float *scratch)
{
  const int hd = C / nh;
  const int ld = 3 * C;
  const float scale = 1.0f / sqrtf ((float) hd);
  TEAM_BEGIN
  float *S = scratch + (size_t) tid * T * T;
  size_t p0, p1;
  gptd__nn_split ((size_t) B * nh, nth, tid, 1, &p0, &p1);
  for (size_t p = p0; p < p1; p++)
    {
      int b = (int) (p / nh), h = (int) (p % nh);
      const float *q = qkv + (size_t) b * T * ld + (size_t) h * hd;
      const float *k = q + C;
      const float *v = q + 2 * C;
      float *y = out + (size_t) b * T * C + (size_t) h * hd;
      float *l = lse + p * T;
      for (int i0 = 0; i0 < T; i0 += ATT_BLOCK)
        {
          int i1 = i0 + ATT_BLOCK < T ? i0 + ATT_BLOCK : T;
          // S[i0:i1, 0:i1] = scale * q[i0:i1] k[0:i1]^T
          gptd__nn_sgemm1 (FALSE, TRUE, i1 - i0, i1, hd, scale,
                           q + (size_t) i0 * ld, ld, k, ld, 0.0f,
                           S + (size_t) i0 * T, T);
          for (int i = i0; i < i1; i++)
            l[i] = softmax_row (S + (size_t) i * T, i + 1, i1, drop,
                                (uint32_t) ((p * T + i) * T));
          // y[i0:i1] = P[i0:i1, 0:i1] v[0:i1]
          gptd__nn_sgemm1 (FALSE, FALSE, i1 - i0, hd, i1, 1.0f,
                           S + (size_t) i0 * T, T, v, ld, 0.0f,
                           y + (size_t) i0 * C, C);
        }
    }
  TEAM_END
}

void
gptd__nn_attention_cached (float *out, const float *qkv, const float *kc,
                           const float *vc, int n, int p0, int C, int nh,
                           float *scratch)
{
  const int hd = C / nh;
  const int ld = 3 * C;
  const int len = p0 + n;
  const float scale = 1.0f / sqrtf ((float) hd);
  const GptdNnDropout none = { 0, 0, 1.0f };
  TEAM_BEGIN
  float *S = scratch + (size_t) tid * n * len;
  size_t h0, h1;
  gptd__nn_split ((size_t) nh, nth, tid, 1, &h0, &h1);
  for (size_t h = h0; h < h1; h++)
    {
      const float *q = qkv + h * hd;
      // S (n, len) = scale * q (n, hd) K (len, hd)^T
      gptd__nn_sgemm1 (FALSE, TRUE, n, len, hd, scale, q, ld, kc + h * hd, C,
                       0.0f, S, len);
      for (int i = 0; i < n; i++)
        softmax_row (S + (size_t) i * len, p0 + i + 1, len, &none, 0);
      // out (n, hd) = P (n, len) V (len, hd)
      gptd__nn_sgemm1 (FALSE, FALSE, n, hd, len, 1.0f, S, len, vc + h * hd,
                       C, 0.0f, out + h * hd, C);
    }
  TEAM_END
}

GPTD_NN_CLONES static void
attention_row (float *restrict out, const float *restrict q,
               const float *restrict kc, const float *restrict vc, int len,
               int hd, int ld, float *restrict scratch)
{
  const float scale = 1.0f / sqrtf ((float) hd);
  const GptdNnDropout none = { 0, 0, 1.0f };
  for (int j = 0; j < len; j++)
    {
      // S[j] = scale * q . k_j
      const float *k = kc + (size_t) j * ld;
      float s = 0.0f;
      GPTD_NN_PRAGMA (omp simd reduction (+ : s))
      for (int d = 0; d < hd; d++)
        s += q[d] * k[d];
      scratch[j] = scale * s;
    }
  softmax_row (scratch, len, len, &none, 0);
  // out (hd) = P (len) V (len, hd)
  for (int d = 0; d < hd; d++)
    out[d] = 0.0f;
  for (int j = 0; j < len; j++)
    {
      const float *v = vc + (size_t) j * ld;
      const float p = scratch[j];
      GPTD_NN_SIMD
      for (int d = 0; d < hd; d++)
        out[d] += p * v[d];
    }
}

void
gptd__nn_attention_row (float *out, const float *q, const float *kc,
                        const float *vc, int len, int hd, int ld,
                        float *scratch)
{
  attention_row (out, q, kc, vc, len, hd, ld, scratch);
}

/* Recomputes P (and the dropped P~) of row i from the scaled scores and the
 * log-sum-exp, and turns dP~ into dS in place. */
GPTD_NN_CLONES static void
attention_backward_row (float *restrict P, float *restrict PD,
                        float *restrict dP, int n, int width, float lse,
                        float D, const GptdNnDropout *drop, uint32_t base)
{
  GPTD_NN_SIMD
  for (int j = 0; j < n; j++)
    P[j] = gptd__nn_expf (P[j] - lse);
  if (drop->threshold != 0)
    {
      const uint32_t key = drop->key, th = drop->threshold;
      const float sc = drop->scale;
      GPTD_NN_SIMD
      for (int j = 0; j < n; j++)
        {
          float m = gptd__nn_hash32 (key, base + (uint32_t) j) >= th ? sc : 0.0f;
          PD[j] = P[j] * m;
          dP[j] = P[j] * (dP[j] * m - D);
        }
      for (int j = n; j < width; j++)
        PD[j] = 0.0f;
    }
  else
    {
      GPTD_NN_SIMD
      for (int j = 0; j < n; j++)
        dP[j] = P[j] * (dP[j] - D);
    }
  for (int j = n; j < width; j++)
    {
      P[j] = 0.0f;
      dP[j] = 0.0f;
    }
}

GPTD_NN_CLONES static float
dot (const float *restrict a, const float *restrict b, int n)
{
  float s = 0.0f;
  GPTD_NN_PRAGMA (omp simd reduction (+ : s))
  for (int i = 0; i < n; i++)
    s += a[i] * b[i];
  return s;
}

void
gptd__nn_attention_backward (float *dqkv, const float *dout, const float *out,
                             const float *lse, const float *qkv, int B, int T,
                             int C, int nh, const GptdNnDropout *drop,
                             float *scratch)
{
  const int hd = C / nh;
  const int ld = 3 * C;
  const float scale = 1.0f / sqrtf ((float) hd);
  const gboolean dropping = drop->threshold != 0;
  TEAM_BEGIN
  float *P = scratch + (size_t) tid * 3 * T * T;
  float *dP = P + (size_t) T * T;
  float *PD = dropping ? dP + (size_t) T * T : P;
  size_t p0, p1;
  gptd__nn_split ((size_t) B * nh, nth, tid, 1, &p0, &p1);
  for (size_t p = p0; p < p1; p++)
    {
      int b = (int) (p / nh), h = (int) (p % nh);
      size_t off3 = (size_t) b * T * ld + (size_t) h * hd;
      size_t off1 = (size_t) b * T * C + (size_t) h * hd;
      const float *q = qkv + off3, *k = q + C, *v = q + 2 * C;
      float *dq = dqkv + off3, *dk = dq + C, *dv = dq + 2 * C;
      const float *dy = dout + off1, *y = out + off1;
      const float *l = lse + p * T;
      for (int i0 = 0; i0 < T; i0 += ATT_BLOCK)
        {
          int i1 = i0 + ATT_BLOCK < T ? i0 + ATT_BLOCK : T;
          gptd__nn_sgemm1 (FALSE, TRUE, i1 - i0, i1, hd, scale,
                           q + (size_t) i0 * ld, ld, k, ld, 0.0f,
                           P + (size_t) i0 * T, T);
          // dP~[i0:i1, 0:i1] = dy[i0:i1] v[0:i1]^T
          gptd__nn_sgemm1 (FALSE, TRUE, i1 - i0, i1, hd, 1.0f,
                           dy + (size_t) i0 * C, C, v, ld, 0.0f,
                           dP + (size_t) i0 * T, T);
          for (int i = i0; i < i1; i++)
            {
              float D = dot (dy + (size_t) i * C, y + (size_t) i * C, hd);
              attention_backward_row (P + (size_t) i * T, PD + (size_t) i * T,
                                      dP + (size_t) i * T, i + 1, i1, l[i], D,
                                      drop, (uint32_t) ((p * T + i) * T));
            }
          // dq[i0:i1] = scale * dS[i0:i1, 0:i1] k[0:i1]
          gptd__nn_sgemm1 (FALSE, FALSE, i1 - i0, hd, i1, scale,
                           dP + (size_t) i0 * T, T, k, ld, 0.0f,
                           dq + (size_t) i0 * ld, ld);
        }
      for (int j0 = 0; j0 < T; j0 += ATT_BLOCK)
        {
          int j1 = j0 + ATT_BLOCK < T ? j0 + ATT_BLOCK : T;
          // dk[j0:j1] = scale * dS[j0:T, j0:j1]^T q[j0:T]
          gptd__nn_sgemm1 (TRUE, FALSE, j1 - j0, hd, T - j0, scale,
                           dP + (size_t) j0 * T + j0, T, q + (size_t) j0 * ld,
                           ld, 0.0f, dk + (size_t) j0 * ld, ld);
          // dv[j0:j1] = P~[j0:T, j0:j1]^T dy[j0:T]
          gptd__nn_sgemm1 (TRUE, FALSE, j1 - j0, hd, T - j0, 1.0f,
                           PD + (size_t) j0 * T + j0, T, dy + (size_t) j0 * C,
                           C, 0.0f, dv + (size_t) j0 * ld, ld);
        }
    }
  TEAM_END
}

/* ---- cross-entropy ------------------------------------------------------- */

GPTD_NN_CLONES static float
logsumexp_row (const float *restrict row, int V)
{
  float mx = -INFINITY;
  GPTD_NN_PRAGMA (omp simd reduction (max : mx))
  for (int j = 0; j < V; j++)
    mx = row[j] > mx ? row[j] : mx;
  float sum = 0.0f;
  GPTD_NN_PRAGMA (omp simd reduction (+ : sum))
  for (int j = 0; j < V; j++)
    sum += gptd__nn_expf (row[j] - mx);
  return mx + logf (sum);
}

void
gptd__nn_cross_entropy_forward (float *lse, const float *logits,
                                const gint32 *targets, size_t rows, int V,
                                double *sum, size_t *count)
{
  int nt = gptd_nn_get_num_threads ();
  double *psum = g_new0 (double, nt);
  size_t *pcount = g_new0 (size_t, nt);
  TEAM_BEGIN
  size_t r0, r1;
  gptd__nn_split (rows, nth, tid, 1, &r0, &r1);
  double s = 0.0;
  size_t n = 0;
  for (size_t r = r0; r < r1; r++)
    {
      const float *row = logits + r * V;
      lse[r] = logsumexp_row (row, V);
      if (targets != NULL && targets[r] != GPTD_NN_IGNORE_INDEX)
        {
          s += (double) lse[r] - (double) row[targets[r]];
          n++;
        }
    }
  psum[tid] = s;
  pcount[tid] = n;
  TEAM_END
  *sum = 0.0;
  *count = 0;
  for (int t = 0; t < nt; t++)
    {
      *sum += psum[t];
      *count += pcount[t];
    }
  g_free (psum);
  g_free (pcount);
}

GPTD_NN_CLONES static void
softmax_grad_row (float *restrict row, int V, float lse, float scale)
{
  GPTD_NN_SIMD
  for (int j = 0; j < V; j++)
    row[j] = gptd__nn_expf (row[j] - lse) * scale;
}

void
gptd__nn_cross_entropy_backward (float *logits, const float *lse,
                                 const gint32 *targets, size_t rows, int V,
                                 float scale)
{
  TEAM_BEGIN
  size_t r0, r1;
  gptd__nn_split (rows, nth, tid, 1, &r0, &r1);
  for (size_t r = r0; r < r1; r++)
    {
      float *row = logits + r * V;
      if (targets[r] == GPTD_NN_IGNORE_INDEX)
        memset (row, 0, sizeof (float) * V);
      else
        {
          softmax_grad_row (row, V, lse[r], scale);
          row[targets[r]] -= scale;
        }
    }
  TEAM_END
}
