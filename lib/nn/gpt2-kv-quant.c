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
  size_t bytes = gptd__gpt_quant_act_bytes (rows, (size_t) c->model->cfg.n_embd);
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

size_t
gptd__gpt_quant_act_bytes (size_t rows, size_t C)
{
  size_t width = 4 * C;
  return rows * width * (sizeof (float) + 1) +
         rows * (width / GPTD_QUANT_BLOCK + 1) * sizeof (float) + 128;
}

/* Row @i of @rows rows of 4C prepared activations at @buf. */
static Act
act_row_in (void *buf, size_t rows, size_t C, size_t i)
{
  size_t width = 4 * C;
  char *p = buf;
  Act a;
  a.xp = (float *) p + i * width;
  p += rows * width * sizeof (float);
  a.xd = (float *) p + i * (width / GPTD_QUANT_BLOCK + 1);
  p += rows * (width / GPTD_QUANT_BLOCK + 1) * sizeof (float);
  a.xq = (int8_t *) p + i * width;
  return a;
}

/* Row @i of the cache's scratch. */
static Act
act_row (GptdGptKvCache *c, size_t i)
{
  return act_row_in (c->qbuf, MAX ((size_t) c->q_cap_n, c->q_cap_nt),
                     (size_t) c->model->cfg.n_embd, i);
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

void
gptd__gpt_quant_embed (const GptdGpt *m, gint32 token, int pos, float *x)
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

/* One new token of each of @n sequences at caches[i]->len, s->x holding
 * their embeddings (see the top of the file for the scheme).  Each product
 * takes the n prepared rows at once: the kernels compute every (row, output)
 * dot product the same way whatever the number of rows, so a row's logits do
 * not depend on the others. */
void
gptd__gpt_decode_rows_quant (GptdGpt *m, GptdGptKvCache *const *caches, int n,
                             const GptdGptDecodeScratch *s)
{
  const GptdGptConfig *cfg = &m->cfg;
  const GptdGptQuant *q = m->quant;
  const GptdWeightFormat f = q->format;
  const GptdQuantKernels *k = gptd__quant_kernels ();
  const int L = cfg->n_layer, nh = cfg->n_head, C = cfg->n_embd;
  const int hd = C / nh;
  const size_t W4 = 4 * (size_t) C, V = (size_t) m->n_out;
  const float eps = cfg->layer_norm_epsilon;
  float *x = s->x, *qkv = s->qkv, *atty = s->atty, *fch = s->fch;
  /* Products added to the residual stream: (n, C), each thread writing its
   * own columns. */
  float *out = s->part;

  GPTD_NN_PRAGMA (omp parallel num_threads (gptd_nn_get_num_threads ()))
  {
    int t = 0, nth = 1;
#ifdef _OPENMP
    t = omp_get_thread_num ();
    nth = omp_get_num_threads ();
#endif
    float *ln = s->lnt + (size_t) t * n * C;
    float *att = s->att + (size_t) t * s->att_len;
    Act a = act_row_in (s->qbuf, s->act_rows, (size_t) C, (size_t) t * n);
    size_t b, e;
    for (int l = 0; l < L; l++)
      {
        const Block *bl = &m->blocks[l];
        gptd__nn_layernorm_rows (ln, NULL, NULL, x, bl->ln1_w->data,
                                 bl->ln1_b->data, (size_t) n, C, eps);
        prepare (k, f, ln, C, (size_t) n, C, &a);
        // qkv[:, b:e] (n, 3C) = ln (n, C) attn (3C, C)^T + attn_b
        gptd__nn_split ((size_t) 3 * C, nth, t, 16, &b, &e);
        product (k, &q->attn[l], &a, (size_t) n, b, e, qkv, 3 * (size_t) C);
        if (bl->attn_b != NULL)
          for (int i = 0; i < n; i++)
            for (size_t j = b; j < e; j++)
              qkv[(size_t) i * 3 * C + j] += bl->attn_b->data[j];
        GPTD_NN_PRAGMA (omp barrier)
        gptd__nn_split ((size_t) nh, nth, t, 1, &b, &e);
        for (int i = 0; i < n; i++)
          {
            GptdGptKvCache *c = caches[i];
            const int p0 = c->len;
            float *kc = c->k + (size_t) l * c->max_len * C;
            float *vc = c->v + (size_t) l * c->max_len * C;
            const float *qi = qkv + (size_t) i * 3 * C;
            for (size_t h = b; h < e; h++)
              {
                memcpy (kc + (size_t) p0 * C + h * hd, qi + C + h * hd,
                        sizeof (float) * hd);
                memcpy (vc + (size_t) p0 * C + h * hd, qi + 2 * C + h * hd,
                        sizeof (float) * hd);
                gptd__nn_attention_row (atty + (size_t) i * C + h * hd,
                                        qi + h * hd, kc + h * hd, vc + h * hd,
                                        p0 + 1, hd, C, att);
              }
          }
        GPTD_NN_PRAGMA (omp barrier)
        // x[:, b:e] += atty (n, C) proj (C, C)^T + proj_b
        prepare (k, f, atty, C, (size_t) n, C, &a);
        gptd__nn_split ((size_t) C, nth, t, 16, &b, &e);
        product (k, &q->proj[l], &a, (size_t) n, b, e, out, (size_t) C);
        for (int i = 0; i < n; i++)
          for (size_t j = b; j < e; j++)
            x[(size_t) i * C + j] = x[(size_t) i * C + j] + out[(size_t) i * C + j] +
                                    bl->proj_b->data[j];
        GPTD_NN_PRAGMA (omp barrier)
        gptd__nn_layernorm_rows (ln, NULL, NULL, x, bl->ln2_w->data,
                                 bl->ln2_b->data, (size_t) n, C, eps);
        prepare (k, f, ln, C, (size_t) n, C, &a);
        // fch[:, b:e] (n, 4C) = gelu (ln (n, C) fc (4C, C)^T + fc_b)
        gptd__nn_split (W4, nth, t, 16, &b, &e);
        product (k, &q->fc[l], &a, (size_t) n, b, e, fch, W4);
        for (int i = 0; i < n; i++)
          {
            float *fi = fch + (size_t) i * W4;
            for (size_t j = b; j < e; j++)
              fi[j] += bl->fc_b->data[j];
            gptd__nn_gelu_range (fi + b, fi + b, e - b);
          }
        GPTD_NN_PRAGMA (omp barrier)
        // x[:, b:e] += fch (n, 4C) fcp (C, 4C)^T + fcp_b
        prepare (k, f, fch, W4, (size_t) n, W4, &a);
        gptd__nn_split ((size_t) C, nth, t, 16, &b, &e);
        product (k, &q->fcp[l], &a, (size_t) n, b, e, out, (size_t) C);
        for (int i = 0; i < n; i++)
          for (size_t j = b; j < e; j++)
            x[(size_t) i * C + j] = x[(size_t) i * C + j] + out[(size_t) i * C + j] +
                                    bl->fcp_b->data[j];
        GPTD_NN_PRAGMA (omp barrier)
      }
    gptd__nn_layernorm_rows (ln, NULL, NULL, x, m->lnf_w->data,
                             m->lnf_b->data, (size_t) n, C, eps);
    prepare (k, f, ln, C, (size_t) n, C, &a);
    gptd__nn_split (V, nth, t, 16, &b, &e);
    product (k, &q->head, &a, (size_t) n, b, e, s->logits, V);
    if (m->head_b != NULL)
      for (int i = 0; i < n; i++)
        for (size_t j = b; j < e; j++)
          s->logits[(size_t) i * V + j] += m->head_b->data[j];
  }
  for (int i = 0; i < n; i++)
    caches[i]->len++;
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
    gptd__gpt_quant_embed (m, tokens[i], p0 + i, c->x + (size_t) i * C);
  if (n == 1)
    {
      GptdGptDecodeScratch s = {
        c->x, c->qkv, c->atty, c->fch, c->part, c->lnt, c->att,
        (size_t) c->max_len, c->logits, c->qbuf,
        MAX ((size_t) c->q_cap_n, c->q_cap_nt),
      };
      gptd__gpt_decode_rows_quant (m, &c, 1, &s);
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
