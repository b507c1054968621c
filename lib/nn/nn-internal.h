/* nn-internal.h: shared internals of lib/nn: the model structure, the
 * parallel matrix product and the element-wise kernels (nn-kernels.c).
 *
 * Threading model: OpenBLAS runs single-threaded and the model's own OpenMP
 * team splits every matrix product into one sgemm call per thread, so that
 * OpenBLAS threads and OpenMP threads never exist at the same time.
 */
#pragma once

#include <gptd/nn.h>

#include <stdint.h>
#include <stddef.h>

/* Multi-versioned hot loops: the library is built for the baseline ISA, so
 * the kernels that benefit from wide vectors carry AVX2 and AVX-512 clones
 * chosen at load time. */
#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__) && \
    !defined(__SANITIZE_ADDRESS__)
#define GPTD_NN_CLONES \
  __attribute__ ((target_clones ("avx512f", "avx2", "default")))
#else
#define GPTD_NN_CLONES
#endif

#if defined(_OPENMP)
#define GPTD_NN_PRAGMA(x) _Pragma (#x)
#else
#define GPTD_NN_PRAGMA(x)
#endif
#define GPTD_NN_SIMD GPTD_NN_PRAGMA (omp simd)

/* ---- threads (nn-threads.c) -------------------------------------------- */

/* Makes OpenBLAS single-threaded and fixes the team size; idempotent. */
void gptd__nn_threads_init (void);

/* Splits [0, n) into @parts nearly equal ranges aligned to @align and returns
 * part @i in *begin, *end. */
void gptd__nn_split (size_t n, int parts, int i, size_t align, size_t *begin,
                     size_t *end);

/* C = alpha * op(A) op(B) + beta * C, row-major, split over the team.  Each
 * thread runs one single-threaded sgemm on its slice of rows (or of columns
 * when there are few rows). */
void gptd__nn_sgemm (gboolean trans_a, gboolean trans_b, int M, int N, int K,
                     float alpha, const float *A, int lda, const float *B,
                     int ldb, float beta, float *C, int ldc);

/* The same product run on the calling thread only (inside a parallel
 * region). */
void gptd__nn_sgemm1 (gboolean trans_a, gboolean trans_b, int M, int N, int K,
                      float alpha, const float *A, int lda, const float *B,
                      int ldb, float beta, float *C, int ldc);

/* Allocates @bytes zeroed, 64-byte aligned (huge pages advised for large
 * buffers).  Returns NULL on failure.  Free with gptd__nn_free (ptr, bytes). */
void *gptd__nn_alloc (size_t bytes);
void gptd__nn_free (void *ptr, size_t bytes);

/* Resizes a buffer of gptd__nn_alloc(), keeping its first
 * MIN (old_bytes, new_bytes) bytes; added bytes are zero.  Large buffers are
 * remapped, not copied.  Returns NULL (and leaves @ptr alone) on failure. */
void *gptd__nn_realloc (void *ptr, size_t old_bytes, size_t new_bytes);

/* ---- dropout ------------------------------------------------------------ */

/* A dropout mask stream: element i is kept when hash(key, i) >= threshold. */
typedef struct {
  uint32_t key;
  uint32_t threshold; /* 0 means no dropout */
  float scale;        /* 1 / (1 - p) */
} GptdNnDropout;

/* The stream of dropout site @site in forward number @counter. */
GptdNnDropout gptd__nn_dropout_stream (guint64 seed, guint64 counter,
                                       guint site, float p);

static inline uint32_t
gptd__nn_hash32 (uint32_t key, uint32_t i)
{
  uint32_t h = i * 0x9E3779B1u ^ key;
  h ^= h >> 16;
  h *= 0x85EBCA6Bu;
  h ^= h >> 13;
  h *= 0xC2B2AE35u;
  h ^= h >> 16;
  return h;
}

/* Multiplier of element i: 0 or scale. */
static inline float
gptd__nn_dropout_mul (const GptdNnDropout *d, uint32_t i)
{
  return gptd__nn_hash32 (d->key, i) >= d->threshold ? d->scale : 0.0f;
}

/* ---- kernels (nn-kernels.c) -------------------------------------------- */

/* out[r] = LN(x[r]) for rows [0, rows), also storing mean and rstd. */
void gptd__nn_layernorm_rows (float *out, float *mean, float *rstd,
                              const float *x, const float *w, const float *b,
                              size_t rows, int C, float eps);

/* Parallel over rows: out = LN(x) with mean/rstd. */
void gptd__nn_layernorm_forward (float *out, float *mean, float *rstd,
                                 const float *x, const float *w,
                                 const float *b, size_t rows, int C,
                                 float eps);

/* Parallel over rows: res_out = res_in + drop(branch + bias) (bias may be
 * NULL; element index r*C+c for the mask), then, when @ln_out is not NULL,
 * ln_out = LN(res_out) with mean/rstd.  @res_out may equal @res_in. */
void gptd__nn_residual_layernorm (float *res_out, const float *res_in,
                                  const float *branch, const float *bias,
                                  const GptdNnDropout *drop, float *ln_out,
                                  float *mean, float *rstd, const float *w,
                                  const float *b, size_t rows, int C,
                                  float eps);

/* Parallel LayerNorm backward: dx += LN'(dout); dw, db accumulate (may be
 * NULL when frozen).  @scratch holds team-size * 2 * C floats. */
void gptd__nn_layernorm_backward (float *dx, float *dw, float *db,
                                  const float *dout, const float *x,
                                  const float *mean, const float *rstd,
                                  const float *w, size_t rows, int C,
                                  float *scratch);

/* Parallel: y = gelu(x) (tanh approximation). */
void gptd__nn_gelu_forward (float *y, const float *x, size_t n);
/* Serial (for callers already inside a parallel region): y = gelu(x) over
 * @n elements, bit-identical to gptd__nn_gelu_forward(). */
void gptd__nn_gelu_range (float *y, const float *x, size_t n);
/* Parallel: d = d * gelu'(x), in place. */
void gptd__nn_gelu_backward (float *d, const float *x, size_t n);

/* Parallel: each of @rows rows of @out (C wide, stride ldo) = bias. */
void gptd__nn_fill_bias (float *out, const float *bias, size_t rows, int C,
                         int ldo);

/* Parallel: db[c] += sum over rows of d[r*ld + c]. */
void gptd__nn_bias_backward (float *db, const float *d, size_t rows, int C,
                             int ld);

/* Parallel: out = d * dropout multiplier (element r*C+c). */
void gptd__nn_dropout_apply (float *out, const float *d,
                             const GptdNnDropout *drop, size_t n);

/* Parallel: out[b,t] = drop(wte[tok] + wpe[t]). */
void gptd__nn_embed_forward (float *out, const gint32 *tokens,
                             const float *wte, const float *wpe, int B, int T,
                             int C, const GptdNnDropout *drop);

/* Parallel: dwte[tok] += d, dwpe[t] += d (either may be NULL); @d already
 * carries the dropout. */
void gptd__nn_embed_backward (float *dwte, float *dwpe, const float *d,
                              const gint32 *tokens, int B, int T, int C);

/* Causal attention forward over the (B, n_head) pairs.  qkv (B,T,3C),
 * out (B,T,C), lse (B,nh,T).  @scratch: team-size * T*T floats. */
void gptd__nn_attention_forward (float *out, float *lse, const float *qkv,
                                 int B, int T, int C, int nh,
                                 const GptdNnDropout *drop, float *scratch);

/* Attention backward: dqkv (B,T,3C) is overwritten.  @scratch: team-size *
 * 3*T*T floats. */
void gptd__nn_attention_backward (float *dqkv, const float *dout,
                                  const float *out, const float *lse,
                                  const float *qkv, int B, int T, int C,
                                  int nh, const GptdNnDropout *drop,
                                  float *scratch);

/* Attention of @n new rows at positions p0.. against cached keys and values
 * kc, vc (p0 + n rows of C; the new rows already stored).  qkv (n,3C),
 * out (n,C).  @scratch: team-size * n * (p0 + n) floats. */
void gptd__nn_attention_cached (float *out, const float *qkv, const float *kc,
                                const float *vc, int n, int p0, int C, int nh,
                                float *scratch);

/* Serial (for callers already inside a parallel region): attention of one
 * query row @q (hd) of one head at position len - 1 against the cached keys
 * @kc and values @vc of that head (len rows, row stride @ld), written to
 * @out (hd).  @scratch: len floats. */
void gptd__nn_attention_row (float *out, const float *q, const float *kc,
                             const float *vc, int len, int hd, int ld,
                             float *scratch);

/* A low-rank adapter of one linear layer (LoRA): out += scale * (in A) B
 * with A (K, r) and B (r, N).  @u (rows, r) holds in A, computed by the
 * caller before the forward; @du (rows, r) holds scale * dout B^T, computed
 * by the caller before the backward, which adds du A^T to din. */
typedef struct {
  const float *A, *B;
  const float *u;
  const float *du;
  int r;
  float scale;
} GptdNnLora;

/* Epilogue of gptd__nn_linear_forward().  With @lora, the adapter's term is
 * added to out first.  With @res_out, the bias goes into
 * the residual: res_out = res_in + drop(out + bias), and when @ln_out is set
 * ln_out = LN(res_out); otherwise out gets the bias, and with @gelu_out
 * gelu_out = gelu(out). */
typedef struct {
  const GptdNnLora *lora;
  const float *bias;
  float *gelu_out;
  float *res_out;
  const float *res_in;
  GptdNnDropout drop;
  float *ln_out, *mean, *rstd;
  const float *ln_w, *ln_b;
  float eps;
} GptdNnLinearEpi;

/* One team region: out (rows, N) = in (rows, K) W (K, N) (Conv1D,
 * input-major W), then the epilogue @e (may be NULL). */
void gptd__nn_linear_forward (float *out, const float *in, const float *W,
                              size_t rows, int K, int N,
                              const GptdNnLinearEpi *e);

/* One team region: dW += in^T dout, db += colsum (dout), din = dout W^T
 * (each skipped when NULL), plus du A^T with @lora (may be NULL), and with
 * @gelu_x din *= gelu'(gelu_x). */
void gptd__nn_linear_backward (float *din, float *dW, float *db,
                               const float *dout, const float *in,
                               const float *W, size_t rows, int K, int N,
                               const float *gelu_x, const GptdNnLora *lora);

/* Cross-entropy forward over @rows rows of @V logits: stores each row's
 * log-sum-exp in lse and returns the summed loss over counted rows (targets
 * == GPTD_NN_IGNORE_INDEX skipped) in *sum and their number in *count. */
void gptd__nn_cross_entropy_forward (float *lse, const float *logits,
                                     const gint32 *targets, size_t rows, int V,
                                     double *sum, size_t *count);

/* Turns logits into their gradient in place: (softmax - onehot) * scale for
 * counted rows, 0 for ignored ones. */
void gptd__nn_cross_entropy_backward (float *logits, const float *lse,
                                      const gint32 *targets, size_t rows,
                                      int V, float scale);

/* Vectorisable exp for float (relative error about 2 ulp). Infinities clamp to
 * the range; NaN gives NaN, through the polynomial, while the exponent is taken
 * from 0 (converting NaN to an integer is undefined). */
static inline float
gptd__nn_expf (float x)
{
  x = x < -87.0f ? -87.0f : (x > 88.0f ? 88.0f : x);
  float n = __builtin_floorf (x * 1.44269504088896341f + 0.5f);
  n = n == n ? n : 0.0f;
  float r = x - n * 0.693359375f;
  r = r - n * -2.12194440e-4f;
  float p = 1.9875691500e-4f;
  p = p * r + 1.3981999507e-3f;
  p = p * r + 8.3334519073e-3f;
  p = p * r + 4.1665795894e-2f;
  p = p * r + 1.6666665459e-1f;
  p = p * r + 5.0000001201e-1f;
  p = p * r * r + r + 1.0f;
  union { float f; int32_t i; } u;
  u.i = ((int32_t) n + 127) << 23;
  return p * u.f;
}
