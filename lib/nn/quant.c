/* quant.c: bf16 and q8 weights for inference: format names, conversions,
 * the scalar reference kernels, the choice of kernels by CPUID and the
 * conversion of a model's linear layers (see quant-private.h for the
 * layouts).
 */
#include "config.h"

#include "nn/gpt2-private.h"
#include "nn/quant-private.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#ifdef GPTD_QUANT_X86
#include <cpuid.h>
#endif

G_DEFINE_QUARK (gptd-quant-error-quark, gptd_quant_error)

static const char *const format_names[] = {
#define GPTD__WEIGHT_FORMAT_NAME(name, str, bits) str,
  GPTD_WEIGHT_FORMAT_MAP (GPTD__WEIGHT_FORMAT_NAME)
#undef GPTD__WEIGHT_FORMAT_NAME
};

static const double format_bits[] = {
#define GPTD__WEIGHT_FORMAT_BITS(name, str, bits) bits,
  GPTD_WEIGHT_FORMAT_MAP (GPTD__WEIGHT_FORMAT_BITS)
#undef GPTD__WEIGHT_FORMAT_BITS
};

const char *
gptd_weight_format_to_string (GptdWeightFormat format)
{
  g_return_val_if_fail ((guint) format < G_N_ELEMENTS (format_names),
                        "unknown");
  return format_names[format];
}

gboolean
gptd_weight_format_from_string (const char *name, GptdWeightFormat *format,
                                GError **error)
{
  g_return_val_if_fail (name != NULL && format != NULL, FALSE);
  for (guint i = 0; i < G_N_ELEMENTS (format_names); i++)
    if (strcmp (name, format_names[i]) == 0)
      {
        *format = (GptdWeightFormat) i;
        return TRUE;
      }
  g_set_error (error, GPTD_QUANT_ERROR, GPTD_QUANT_ERROR_FORMAT,
               "unknown weight format \"%s\": expected fp32, bf16 or q8",
               name);
  return FALSE;
}

double
gptd_weight_format_bits (GptdWeightFormat format)
{
  g_return_val_if_fail ((guint) format < G_N_ELEMENTS (format_bits), 32);
  return format_bits[format];
}

/* ---- conversions -------------------------------------------------------- */

void
gptd__quant_to_bf16 (const float *x, size_t count, uint16_t *out)
{
  for (size_t i = 0; i < count; i++)
    out[i] = gptd__f32_to_bf16 (x[i]);
}

void
gptd__quant_from_bf16 (const uint16_t *x, size_t count, float *out)
{
  for (size_t i = 0; i < count; i++)
    out[i] = gptd__bf16_to_f32 (x[i]);
}

/* One block of q8 with the scale @d_out as float (before rounding to half):
 * d = amax / 127 and q = round-half-even (x / d), as llama.cpp's Q8_0. */
static float
quantize_block (const float *x, int8_t *q)
{
  float amax = 0.0f;
  for (int i = 0; i < GPTD_QUANT_BLOCK; i++)
    amax = fmaxf (amax, fabsf (x[i]));
  float d = amax / 127.0f;
  float id = d != 0.0f ? 1.0f / d : 0.0f;
  for (int i = 0; i < GPTD_QUANT_BLOCK; i++)
    {
      float v = nearbyintf (x[i] * id);
      q[i] = (int8_t) (v > 127.0f ? 127.0f : v < -127.0f ? -127.0f : v);
    }
  return d;
}

void
gptd__quant_to_q8 (const float *x, size_t count, int8_t *qs, uint16_t *d)
{
  for (size_t b = 0; b < count / GPTD_QUANT_BLOCK; b++)
    d[b] = gptd__f32_to_f16 (quantize_block (x + b * GPTD_QUANT_BLOCK,
                                             qs + b * GPTD_QUANT_BLOCK));
}

void
gptd__quant_from_q8 (const int8_t *qs, const uint16_t *d, size_t count,
                     float *out)
{
  for (size_t b = 0; b < count / GPTD_QUANT_BLOCK; b++)
    {
      float s = gptd__f16_to_f32 (d[b]);
      for (int i = 0; i < GPTD_QUANT_BLOCK; i++)
        out[b * GPTD_QUANT_BLOCK + i] = qs[b * GPTD_QUANT_BLOCK + i] * s;
    }
}

void
gptd__quant_prepare_bf16 (const float *x, size_t K, float *out)
{
  size_t whole = K / GPTD_QUANT_BLOCK * GPTD_QUANT_BLOCK;
  for (size_t b = 0; b < whole; b += GPTD_QUANT_BLOCK)
    for (int i = 0; i < GPTD_QUANT_BLOCK / 2; i++)
      {
        out[b + i] = x[b + 2 * i];
        out[b + GPTD_QUANT_BLOCK / 2 + i] = x[b + 2 * i + 1];
      }
  for (size_t k = whole; k < K; k++)
    out[k] = x[k];
}

/* ---- scalar kernels ----------------------------------------------------- */

static void
matmul_bf16_scalar (const uint16_t *W, size_t n, size_t K, const float *X,
                    size_t m, float *Y, size_t ldy)
{
  size_t whole = K / GPTD_QUANT_BLOCK * GPTD_QUANT_BLOCK;
  for (size_t i = 0; i < m; i++)
    {
      const float *x = X + i * K;
      for (size_t j = 0; j < n; j++)
        {
          const uint16_t *w = W + j * K;
          float s = 0.0f;
          for (size_t b = 0; b < whole; b += GPTD_QUANT_BLOCK)
            for (int r = 0; r < GPTD_QUANT_BLOCK; r++)
              s += gptd__bf16_to_f32 (w[b + r]) *
                   x[b + (r & 1) * (GPTD_QUANT_BLOCK / 2) + r / 2];
          for (size_t k = whole; k < K; k++)
            s += gptd__bf16_to_f32 (w[k]) * x[k];
          Y[i * ldy + j] = s;
        }
    }
}

static void
matmul_q8_scalar (const int8_t *Wq, const uint16_t *Wd, size_t n, size_t K,
                  const int8_t *Xq, const float *Xd, size_t m, float *Y,
                  size_t ldy)
{
  size_t nb = K / GPTD_QUANT_BLOCK;
  for (size_t i = 0; i < m; i++)
    for (size_t j = 0; j < n; j++)
      {
        float s = 0.0f;
        for (size_t b = 0; b < nb; b++)
          {
            const int8_t *w = Wq + j * K + b * GPTD_QUANT_BLOCK;
            const int8_t *x = Xq + i * K + b * GPTD_QUANT_BLOCK;
            int32_t acc = 0;
            for (int r = 0; r < GPTD_QUANT_BLOCK; r++)
              acc += (int32_t) w[r] * x[r];
            s += gptd__f16_to_f32 (Wd[j * nb + b]) * Xd[i * nb + b] *
                 (float) acc;
          }
        Y[i * ldy + j] = s;
      }
}

void
gptd__quant_row_q8 (const float *x, size_t K, int8_t *q, float *d)
{
  for (size_t b = 0; b < K / GPTD_QUANT_BLOCK; b++)
    d[b] = quantize_block (x + b * GPTD_QUANT_BLOCK, q + b * GPTD_QUANT_BLOCK);
}

const GptdQuantKernels gptd__quant_kernels_scalar = {
  "scalar", matmul_bf16_scalar, matmul_q8_scalar, gptd__quant_row_q8,
};

/* ---- choice by CPUID ---------------------------------------------------- */

#ifdef GPTD_QUANT_X86
/* F16C from CPUID leaf 1 (ECX bit 29): clang's __builtin_cpu_supports() does not
 * know "f16c". */
static gboolean
cpu_has_f16c (void)
{
  unsigned int a, b, c, d;
  return __get_cpuid (1, &a, &b, &c, &d) && (c & (1u << 29)) != 0;
}
#endif

const GptdQuantKernels *
gptd__quant_kernels_lookup (const char *name)
{
  if (strcmp (name, "scalar") == 0)
    return &gptd__quant_kernels_scalar;
#ifdef GPTD_QUANT_X86
  __builtin_cpu_init ();
  gboolean avx2 = __builtin_cpu_supports ("avx2") &&
                  __builtin_cpu_supports ("fma") &&
                  cpu_has_f16c ();
  gboolean avx512 = avx2 && __builtin_cpu_supports ("avx512f") &&
                    __builtin_cpu_supports ("avx512bw") &&
                    __builtin_cpu_supports ("avx512vl");
  if (strcmp (name, "avx2") == 0 && avx2)
    return &gptd__quant_kernels_avx2;
  if (strcmp (name, "avx512") == 0 && avx512)
    return &gptd__quant_kernels_avx512;
  if (strcmp (name, "avx512-vnni") == 0 && avx512 &&
      __builtin_cpu_supports ("avx512vnni"))
    return &gptd__quant_kernels_avx512_vnni;
#endif
  return NULL;
}

static gpointer
choose_kernels (gpointer data)
{
  (void) data;
  static const char *const order[] = { "avx512-vnni", "avx512", "avx2",
                                       "scalar" };
  const char *cap = g_getenv ("GPTD_QUANT_KERNELS");
  gboolean allowed = cap == NULL || *cap == '\0';
  for (guint i = 0; i < G_N_ELEMENTS (order); i++)
    {
      if (!allowed && strcmp (cap, order[i]) == 0)
        allowed = TRUE;
      if (!allowed)
        continue;
      const GptdQuantKernels *k = gptd__quant_kernels_lookup (order[i]);
      if (k != NULL)
        return (gpointer) k;
    }
  return (gpointer) &gptd__quant_kernels_scalar;
}

const GptdQuantKernels *
gptd__quant_kernels (void)
{
  static GOnce once = G_ONCE_INIT;
  return g_once (&once, choose_kernels, NULL);
}

const char *
gptd_quant_get_kernels_name (void)
{
  return gptd__quant_kernels ()->name;
}

/* ---- a model's matrices ------------------------------------------------- */

size_t
gptd__quant_matrix_bytes (GptdWeightFormat format, size_t n, size_t K)
{
  switch (format)
    {
    case GPTD_WEIGHT_FORMAT_BF16:
      return n * K * 2;
    case GPTD_WEIGHT_FORMAT_Q8:
      return n * K + n * (K / GPTD_QUANT_BLOCK) * 2;
    default:
      return n * K * 4;
    }
}

void
gptd__gpt_quant_free (GptdGptQuant *q)
{
  if (q == NULL)
    return;
  gptd__nn_free (q->mem, q->mem_bytes);
  g_free (q->attn);
  g_free (q->proj);
  g_free (q->fc);
  g_free (q->fcp);
  g_free (q);
}

/* Points @mat at its share of @q's memory at *@off (64-byte aligned parts). */
static void
place (GptdGptQuant *q, GptdQuantMatrix *mat, size_t n, size_t K,
       size_t *off)
{
  mat->format = q->format;
  mat->n = n;
  mat->K = K;
  char *base = q->mem;
  if (q->format == GPTD_WEIGHT_FORMAT_BF16)
    {
      mat->bf16 = base != NULL ? (uint16_t *) (base + *off) : NULL;
      *off += (n * K * 2 + 63) / 64 * 64;
    }
  else
    {
      mat->qs = base != NULL ? (int8_t *) (base + *off) : NULL;
      *off += (n * K + 63) / 64 * 64;
      mat->d = base != NULL ? (uint16_t *) (base + *off) : NULL;
      *off += (n * (K / GPTD_QUANT_BLOCK) * 2 + 63) / 64 * 64;
    }
}

GptdGptQuant *
gptd__gpt_quant_new (const GptdGpt *m, GptdWeightFormat format,
                     GError **error)
{
  const GptdGptConfig *cfg = &m->cfg;
  const size_t C = (size_t) cfg->n_embd;
  const int L = cfg->n_layer;
  if (format == GPTD_WEIGHT_FORMAT_Q8 && C % GPTD_QUANT_BLOCK != 0)
    {
      g_set_error (error, GPTD_QUANT_ERROR, GPTD_QUANT_ERROR_SHAPE,
                   "q8 weights need n_embd to be a multiple of %d; this "
                   "model's is %zu (use bf16)",
                   GPTD_QUANT_BLOCK, C);
      return NULL;
    }
  GptdGptQuant *q = g_new0 (GptdGptQuant, 1);
  q->format = format;
  q->n_layer = L;
  q->attn = g_new0 (GptdQuantMatrix, L);
  q->proj = g_new0 (GptdQuantMatrix, L);
  q->fc = g_new0 (GptdQuantMatrix, L);
  q->fcp = g_new0 (GptdQuantMatrix, L);
  /* Two passes: sizes, then pointers. */
  for (int pass = 0; pass < 2; pass++)
    {
      size_t off = 0;
      for (int l = 0; l < L; l++)
        {
          place (q, &q->attn[l], 3 * C, C, &off);
          place (q, &q->proj[l], C, C, &off);
          place (q, &q->fc[l], 4 * C, C, &off);
          place (q, &q->fcp[l], C, 4 * C, &off);
        }
      place (q, &q->head, (size_t) m->n_out, C, &off);
      if (pass == 0)
        {
          q->mem_bytes = off;
          q->mem = gptd__nn_alloc (off);
          if (q->mem == NULL)
            {
              g_set_error (error, GPTD_NN_ERROR, GPTD_NN_ERROR_NO_MEMORY,
                           "cannot allocate %zu bytes of %s weights", off,
                           gptd_weight_format_to_string (format));
              gptd__gpt_quant_free (q);
              return NULL;
            }
        }
    }
  return q;
}

/* Converts @src, (n, K) output-major when !@input_major, else (K, n), into
 * @mat; @tmp holds n * K floats.  FALSE when a value is not finite or a q8
 * scale overflows half precision. */
static gboolean
convert (GptdQuantMatrix *mat, const GptdNnTensor *src, gboolean input_major,
         float *tmp, GError **error)
{
  const size_t n = mat->n, K = mat->K;
  const float *w = src->data;
  if (input_major)
    {
      // tmp (n, K) = src (K, n)^T
      for (size_t k = 0; k < K; k++)
        for (size_t j = 0; j < n; j++)
          tmp[j * K + k] = w[k * n + j];
      w = tmp;
    }
  for (size_t i = 0; i < n * K; i++)
    if (!isfinite (w[i]))
      {
        g_set_error (error, GPTD_QUANT_ERROR, GPTD_QUANT_ERROR_VALUE,
                     "%s holds a value that is not finite (%g): it cannot be "
                     "converted to %s",
                     src->name, w[i], gptd_weight_format_to_string (mat->format));
        return FALSE;
      }
  if (mat->format == GPTD_WEIGHT_FORMAT_BF16)
    {
      gptd__quant_to_bf16 (w, n * K, mat->bf16);
      return TRUE;
    }
  gptd__quant_to_q8 (w, n * K, mat->qs, mat->d);
  for (size_t b = 0; b < n * K / GPTD_QUANT_BLOCK; b++)
    if ((mat->d[b] & 0x7c00u) == 0x7c00u)
      {
        g_set_error (error, GPTD_QUANT_ERROR, GPTD_QUANT_ERROR_VALUE,
                     "%s has a block of values too large for a q8 scale "
                     "(over 65504 * 127)",
                     src->name);
        return FALSE;
      }
  return TRUE;
}

gboolean
gptd_gpt_set_weight_format (GptdGpt *m, GptdWeightFormat format,
                            GError **error)
{
  g_return_val_if_fail (m != NULL, FALSE);
  g_return_val_if_fail ((guint) format < G_N_ELEMENTS (format_names), FALSE);
  if (format == GPTD_WEIGHT_FORMAT_FP32)
    {
      g_clear_pointer (&m->quant, gptd__gpt_quant_free);
      return TRUE;
    }
  GptdGptQuant *q = gptd__gpt_quant_new (m, format, error);
  if (q == NULL)
    return FALSE;
  const size_t C = (size_t) m->cfg.n_embd;
  size_t biggest = MAX (4 * C * C, (size_t) m->n_out * C);
  float *tmp = g_try_new (float, biggest);
  gboolean ok = tmp != NULL;
  if (!ok)
    g_set_error (error, GPTD_NN_ERROR, GPTD_NN_ERROR_NO_MEMORY,
                 "cannot allocate scratch to convert the weights");
  for (int l = 0; ok && l < m->cfg.n_layer; l++)
    {
      const Block *bl = &m->blocks[l];
      ok = convert (&q->attn[l], bl->attn_w, TRUE, tmp, error) &&
           convert (&q->proj[l], bl->proj_w, TRUE, tmp, error) &&
           convert (&q->fc[l], bl->fc_w, TRUE, tmp, error) &&
           convert (&q->fcp[l], bl->fcp_w, TRUE, tmp, error);
    }
  ok = ok && convert (&q->head, m->head_w, FALSE, tmp, error);
  g_free (tmp);
  if (!ok)
    {
      gptd__gpt_quant_free (q);
      return FALSE;
    }
  gptd__gpt_quant_free (m->quant);
  m->quant = q;
  return TRUE;
}

GptdWeightFormat
gptd_gpt_get_weight_format (const GptdGpt *m)
{
  g_return_val_if_fail (m != NULL, GPTD_WEIGHT_FORMAT_FP32);
  return m->quant != NULL ? m->quant->format : GPTD_WEIGHT_FORMAT_FP32;
}

size_t
gptd_gpt_get_weight_bytes (const GptdGpt *m)
{
  g_return_val_if_fail (m != NULL, 0);
  const GptdGptConfig *cfg = &m->cfg;
  const size_t C = (size_t) cfg->n_embd, L = (size_t) cfg->n_layer;
  GptdWeightFormat f = gptd_gpt_get_weight_format (m);
  size_t matrices = L * (gptd__quant_matrix_bytes (f, 3 * C, C) +
                         gptd__quant_matrix_bytes (f, C, C) +
                         gptd__quant_matrix_bytes (f, 4 * C, C) +
                         gptd__quant_matrix_bytes (f, C, 4 * C)) +
                    gptd__quant_matrix_bytes (f, (size_t) m->n_out, C);
  /* Layer norms, biases, ln_f, the head bias: every parameter that is not
   * a matrix or an embedding, and one row of each embedding. */
  size_t embed = (size_t) cfg->vocab_size * C + (size_t) cfg->context_length * C;
  size_t small = m->n_params - embed - L * 12 * C * C -
                 (cfg->tie_embeddings ? 0 : (size_t) m->n_out * C);
  return matrices + 4 * (small + 2 * C);
}
