/* gpt2-kv-quant.c: KV-cache inference with bf16 or q8 linear layers (the
 * model's m->quant, made by quant.c): the same computation as gpt2-kv.c with
 * every matrix product through the kernels of quant-private.h.
 *
 * The converted matrices are output-major, so a decoding step splits each
 * product by output rows: every thread streams its own contiguous block of
 * whole weight rows and writes finished outputs, with no partial sums to
 * add up afterwards.  That leaves five barriers per layer (after the qkv
 * product, after attention, after each residual addition and after the MLP's
 * first product).  Every thread prepares the activations it multiplies by
 * (bf16: permuted; q8: quantized in blocks of 32) into its own buffer, which
 * costs a few thousand values per product and saves a barrier.
 */
#include "config.h"

#include "nn/gpt2-kv-private.h"
#include "nn/quant-private.h"

#include <string.h>
#ifdef _OPENMP
#include <omp.h>
#endif

/* Activation rows prepared for one format: xp (bf16), or xq and xd (q8). */
typedef struct {
  float *xp;
  int8_t *xq;
  float *xd;
} Act;

/* Scratch of @rows prepared rows of up to 4C values for each of @nt
 * threads, or @rows rows in all for a prefill (the larger is kept). */
static gboolean
reserve_quant (GptdGptKvCache *c, int n, GError **error)
{
  size_t nt = (size_t) gptd_nn_get_num_threads ();
  if (n <= c->q_cap_n && nt <= c->q_cap_nt)
    return TRUE;
  n = MAX (n, c->q_cap_n);
  nt = MAX (nt, c->q_cap_nt);
  size_t rows = MAX ((size_t) n, nt);
  size_t width = 4 * (size_t) c->model->cfg.n_embd;
  size_t bytes = rows * width * (sizeof (float) + 1) +
                 rows * (width / GPTD_QUANT_BLOCK + 1) * sizeof (float) + 128;
  gptd__nn_free (c->qbuf, c->qbuf_bytes);
  c->qbuf = gptd__nn_alloc (bytes);
  c->qbuf_bytes = c->qbuf != NULL ? bytes : 0;
  if (c->qbuf == NULL)
    {
      c->q_cap_n = 0;
      c->q_cap_nt = 0;
      g_set_error (error, GPTD_NN_ERROR, GPTD_NN_ERROR_NO_MEMORY,
                   "cannot allocate KV-cache scratch for %d tokens", n);
      return FALSE;
    }
  c->q_cap_n = n;
  c->q_cap_nt = nt;
  return TRUE;
}

/* Row @i of the scratch (rows of 4C). */
static Act
act_row (GptdGptKvCache *c, size_t i)
{
  size_t width = 4 * (size_t) c->model->cfg.n_embd;
  size_t rows = MAX ((size_t) c->q_cap_n, c->q_cap_nt);
  char *p = c->qbuf;
  Act a;
  a.xp = (float *) p + i * width;
  p += rows * width * sizeof (float);
  a.xd = (float *) p + i * (width / GPTD_QUANT_BLOCK + 1);
  p += rows * (width / GPTD_QUANT_BLOCK + 1) * sizeof (float);
  a.xq = (int8_t *) p + i * width;
  return a;
}

/* Prepares @m rows of K activations at @x (@ldx apart) for @format into
 * @a, whose rows are then K apart (and their q8 scales K / 32 apart). */
static void
prepare (const GptdQuantKernels *k, GptdWeightFormat format, const float *x,
         size_t ldx, size_t m, size_t K, const Act *a)
{
  for (size_t i = 0; i < m; i++)
    {
      if (format == GPTD_WEIGHT_FORMAT_BF16)
        gptd__quant_prepare_bf16 (x + i * ldx, K, a->xp + i * K);
      else
        k->quantize_row_q8 (x + i * ldx, K, a->xq + i * K,
                            a->xd + i * (K / GPTD_QUANT_BLOCK));
    }
}

/* Y[i, j] (ldy apart) = act_i . W_j for rows j in [b, e) of @w and @m
 * activation rows prepared by prepare(). */
static void
product (const GptdQuantKernels *k, const GptdQuantMatrix *w, const Act *a,
         size_t m, size_t b, size_t e, float *Y, size_t ldy)
{
  if (e <= b)
    return;
  if (w->format == GPTD_WEIGHT_FORMAT_BF16)
    k->matmul_bf16 (w->bf16 + b * w->K, e - b, w->K, a->xp, m, Y + b, ldy);
  else
    k->matmul_q8 (w->qs + b * w->K, w->d + b * (w->K / GPTD_QUANT_BLOCK),
                  e - b, w->K, a->xq, a->xd, m, Y + b, ldy);
}

/* The embedding of @token at @pos into @x: a tied head's rows are the
 * quantized ones. */
static void
embed (const GptdGpt *m, gint32 token, int pos, float *x)
{
  const size_t C = (size_t) m->cfg.n_embd;
  const GptdQuantMatrix *h = &m->quant->head;
  const float *pe = m->wpe->data + (size_t) pos * C;
  if (!m->cfg.tie_embeddings)
    {
      const float *te = m->wte->data + (size_t) token * C;
      for (size_t k = 0; k < C; k++)
        x[k] = te[k] + pe[k];
      return;
    }
  if (h->format == GPTD_WEIGHT_FORMAT_BF16)
    gptd__quant_from_bf16 (h->bf16 + (size_t) token * C, C, x);
  else
    gptd__quant_from_q8 (h->qs + (size_t) token * C,
                         h->d + (size_t) token * (C / GPTD_QUANT_BLOCK), C, x);
  for (size_t k = 0; k < C; k++)
    x[k] += pe[k];
}

/* One new token at c->len, c->x holding its embedding (see the top of the
 * file for the scheme). */
static void
decode_one (GptdGpt *m, GptdGptKvCache *c, const GptdQuantKernels *k)
{
  const GptdGptConfig *cfg = &m->cfg;
  const GptdGptQuant *q = m->quant;
  const GptdWeightFormat f = q->format;
  const int L = cfg->n_layer, nh = cfg->n_head, C = cfg->n_embd;
  const int hd = C / nh, p0 = c->len;
  const size_t W4 = 4 * (size_t) C;
  const float eps = cfg->layer_norm_epsilon;
  float *x = c->x, *qkv = c->qkv, *atty = c->atty, *fch = c->fch;

  GPTD_NN_PRAGMA (omp parallel num_threads (gptd_nn_get_num_threads ()))
  {
    int t = 0, nth = 1;
#ifdef _OPENMP
    t = omp_get_thread_num ();
    nth = omp_get_num_threads ();
#endif
    float *ln = c->lnt + (size_t) t * C;
    float *out = c->part + (size_t) t * W4;
    Act a = act_row (c, (size_t) t);
    size_t b, e;
    for (int l = 0; l < L; l++)
      {
        const Block *bl = &m->blocks[l];
        float *kc = c->k + (size_t) l * c->max_len * C;
        float *vc = c->v + (size_t) l * c->max_len * C;
        gptd__nn_layernorm_rows (ln, NULL, NULL, x, bl->ln1_w->data,
                                 bl->ln1_b->data, 1, C, eps);
        prepare (k, f, ln, C, 1, C, &a);
        // qkv[b:e] (3C) = ln (C) attn (3C, C)^T + attn_b
        gptd__nn_split ((size_t) 3 * C, nth, t, 16, &b, &e);
        product (k, &q->attn[l], &a, 1, b, e, qkv, 0);
        if (bl->attn_b != NULL)
          for (size_t j = b; j < e; j++)
            qkv[j] += bl->attn_b->data[j];
        GPTD_NN_PRAGMA (omp barrier)
        gptd__nn_split ((size_t) nh, nth, t, 1, &b, &e);
        for (size_t h = b; h < e; h++)
          {
            memcpy (kc + (size_t) p0 * C + h * hd, qkv + C + h * hd,
                    sizeof (float) * hd);
            memcpy (vc + (size_t) p0 * C + h * hd, qkv + 2 * C + h * hd,
                    sizeof (float) * hd);
            gptd__nn_attention_row (atty + h * hd, qkv + h * hd, kc + h * hd,
                                    vc + h * hd, p0 + 1, hd, C,
                                    c->att + (size_t) t * c->max_len);
          }
        GPTD_NN_PRAGMA (omp barrier)
        // x[b:e] += atty (C) proj (C, C)^T + proj_b
        prepare (k, f, atty, C, 1, C, &a);
        gptd__nn_split ((size_t) C, nth, t, 16, &b, &e);
        product (k, &q->proj[l], &a, 1, b, e, out, 0);
        for (size_t j = b; j < e; j++)
          x[j] = x[j] + out[j] + bl->proj_b->data[j];
        GPTD_NN_PRAGMA (omp barrier)
        gptd__nn_layernorm_rows (ln, NULL, NULL, x, bl->ln2_w->data,
                                 bl->ln2_b->data, 1, C, eps);
        prepare (k, f, ln, C, 1, C, &a);
        // fch[b:e] (4C) = gelu (ln (C) fc (4C, C)^T + fc_b)
        gptd__nn_split (W4, nth, t, 16, &b, &e);
        product (k, &q->fc[l], &a, 1, b, e, fch, 0);
        for (size_t j = b; j < e; j++)
          fch[j] += bl->fc_b->data[j];
        gptd__nn_gelu_range (fch + b, fch + b, e - b);
        GPTD_NN_PRAGMA (omp barrier)
        // x[b:e] += fch (4C) fcp (C, 4C)^T + fcp_b
        prepare (k, f, fch, W4, 1, W4, &a);
        gptd__nn_split ((size_t) C, nth, t, 16, &b, &e);
        product (k, &q->fcp[l], &a, 1, b, e, out, 0);
        for (size_t j = b; j < e; j++)
          x[j] = x[j] + out[j] + bl->fcp_b->data[j];
        GPTD_NN_PRAGMA (omp barrier)
      }
    gptd__nn_layernorm_rows (ln, NULL, NULL, x, m->lnf_w->data,
                             m->lnf_b->data, 1, C, eps);
    prepare (k, f, ln, C, 1, C, &a);
    gptd__nn_split ((size_t) m->n_out, nth, t, 16, &b, &e);
    product (k, &q->head, &a, 1, b, e, c->logits, 0);
    if (m->head_b != NULL)
      for (size_t j = b; j < e; j++)
        c->logits[j] += m->head_b->data[j];
  }
  c->len = p0 + 1;
}

/* out (n, N) = act (n rows) W^T + bias (may be NULL), split over the team by
 * output rows. */
static void
linear (const GptdQuantKernels *k, const GptdQuantMatrix *w, const Act *a,
        size_t n, const GptdNnTensor *bias, float *out)
{
  const size_t N = w->n;
  GPTD_NN_PRAGMA (omp parallel num_threads (gptd_nn_get_num_threads ()))
  {
    int t = 0, nth = 1;
#ifdef _OPENMP
    t = omp_get_thread_num ();
    nth = omp_get_num_threads ();
#endif
    size_t b, e;
    gptd__nn_split (N, nth, t, 16, &b, &e);
    product (k, w, a, n, b, e, out, N);
    if (bias != NULL)
      for (size_t i = 0; i < n; i++)
        for (size_t j = b; j < e; j++)
          out[i * N + j] += bias->data[j];
  }
}

const float *
gptd__gpt_forward_cached_quant (GptdGpt *m, GptdGptKvCache *c,
                                const gint32 *tokens, int n, GError **error)
{
  const GptdGptConfig *cfg = &m->cfg;
  const GptdGptQuant *q = m->quant;
  const GptdWeightFormat f = q->format;
  const GptdQuantKernels *k = gptd__quant_kernels ();
  const int L = cfg->n_layer, nh = cfg->n_head, C = cfg->n_embd;
  const size_t W4 = 4 * (size_t) C;
  const float eps = cfg->layer_norm_epsilon;
  const int p0 = c->len;
  const GptdNnDropout none = { 0, 0, 1.0f };

  if (!gptd__gpt_kv_reserve (c, n, error) || !reserve_quant (c, n, error))
    return NULL;
  for (int i = 0; i < n; i++)
    embed (m, tokens[i], p0 + i, c->x + (size_t) i * C);
  if (n == 1)
    {
      decode_one (m, c, k);
      return c->logits;
    }

  Act a = act_row (c, 0);
  for (int l = 0; l < L; l++)
    {
      const Block *bl = &m->blocks[l];
      float *kc = c->k + (size_t) l * c->max_len * C;
      float *vc = c->v + (size_t) l * c->max_len * C;
      gptd__nn_layernorm_forward (c->ln, c->mean, c->rstd, c->x,
                                  bl->ln1_w->data, bl->ln1_b->data, n, C,
                                  eps);
      prepare (k, f, c->ln, C, n, C, &a);
      linear (k, &q->attn[l], &a, n, bl->attn_b, c->qkv);
      for (int i = 0; i < n; i++)
        {
          memcpy (kc + (size_t) (p0 + i) * C, c->qkv + (size_t) i * 3 * C + C,
                  sizeof (float) * C);
          memcpy (vc + (size_t) (p0 + i) * C,
                  c->qkv + (size_t) i * 3 * C + 2 * C, sizeof (float) * C);
        }
      gptd__nn_attention_cached (c->atty, c->qkv, kc, vc, n, p0, C, nh,
                                 c->att);
      prepare (k, f, c->atty, C, n, C, &a);
      linear (k, &q->proj[l], &a, n, NULL, c->branch);
      gptd__nn_residual_layernorm (c->x, c->x, c->branch, bl->proj_b->data,
                                   &none, c->ln, c->mean, c->rstd,
                                   bl->ln2_w->data, bl->ln2_b->data, n, C,
                                   eps);
      prepare (k, f, c->ln, C, n, C, &a);
      linear (k, &q->fc[l], &a, n, bl->fc_b, c->fch);
      gptd__nn_gelu_forward (c->fch, c->fch, (size_t) n * W4);
      prepare (k, f, c->fch, W4, n, W4, &a);
      linear (k, &q->fcp[l], &a, n, NULL, c->branch);
      gptd__nn_residual_layernorm (c->x, c->x, c->branch, bl->fcp_b->data,
                                   &none, NULL, NULL, NULL, NULL, NULL, n, C,
                                   eps);
    }
  float *last = c->x + (size_t) (n - 1) * C;
  gptd__nn_layernorm_rows (c->ln, c->mean, c->rstd, last, m->lnf_w->data,
                           m->lnf_b->data, 1, C, eps);
  prepare (k, f, c->ln, C, 1, C, &a);
  linear (k, &q->head, &a, 1, m->head_b, c->logits);
  c->len = p0 + n;
  return c->logits;
}
