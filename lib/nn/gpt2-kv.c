/* gpt2-kv.c: KV-cache inference: each call appends tokens to the cached
 * sequence, computing only the new positions against the keys and values kept
 * per layer, and returns the logits of the last new token; and the decoding
 * step of one new token for one or several sequences at once (batched
 * decoding, gpt2-kv-batch.c), with float32 weights.
 */
#include "nn/gpt2-kv-private.h"
#include "nn/matvec-private.h"

#include <cblas.h>
#include <string.h>
#ifdef _OPENMP
#include <omp.h>
#endif

GptdGptKvCache *
gptd_gpt_kv_cache_new (GptdGpt *model, int max_length, GError **error)
{
  g_return_val_if_fail (model != NULL, NULL);
  const GptdGptConfig *cfg = &model->cfg;
  if (max_length == 0)
    max_length = cfg->context_length;
  if (max_length < 1 || max_length > cfg->context_length)
    {
      g_set_error (error, GPTD_NN_ERROR, GPTD_NN_ERROR_CONFIG,
                   "KV cache length %d is outside [1, context_length %d]",
                   max_length, cfg->context_length);
      return NULL;
    }
  if (model->lora_rank > 0)
    {
      g_set_error (error, GPTD_NN_ERROR, GPTD_NN_ERROR_STATE,
                   "KV-cache decoding needs the LoRA adapters merged into the "
                   "weights first (gptd_gpt_merge_lora)");
      return NULL;
    }
  GptdGptKvCache *c = g_new0 (GptdGptKvCache, 1);
  c->model = model;
  c->max_len = max_length;
  c->kv_bytes = (size_t) cfg->n_layer * max_length * cfg->n_embd *
                sizeof (float);
  c->k = gptd__nn_alloc (c->kv_bytes);
  c->v = gptd__nn_alloc (c->kv_bytes);
  if (c->k == NULL || c->v == NULL)
    {
      g_set_error (error, GPTD_NN_ERROR, GPTD_NN_ERROR_NO_MEMORY,
                   "cannot allocate a KV cache of %d positions", max_length);
      gptd_gpt_kv_cache_free (c);
      return NULL;
    }
  return c;
}

void
gptd_gpt_kv_cache_free (GptdGptKvCache *c)
{
  if (c == NULL)
    return;
  gptd__nn_free (c->k, c->kv_bytes);
  gptd__nn_free (c->v, c->kv_bytes);
  gptd__nn_free (c->buf, c->buf_bytes);
  gptd__nn_free (c->qbuf, c->qbuf_bytes);
  g_free (c);
}

void
gptd_gpt_kv_cache_reset (GptdGptKvCache *c)
{
  g_return_if_fail (c != NULL);
  c->len = 0;
}

int
gptd_gpt_kv_cache_get_length (const GptdGptKvCache *c)
{
  g_return_val_if_fail (c != NULL, 0);
  return c->len;
}

gboolean
gptd__gpt_kv_reserve (GptdGptKvCache *c, int n, GError **error)
{
  size_t nt = (size_t) gptd_nn_get_num_threads ();
  if (n <= c->cap_n && nt <= c->cap_nt)
    return TRUE;
  n = MAX (n, c->cap_n);
  nt = MAX (nt, c->cap_nt);
  const GptdGpt *m = c->model;
  size_t C = (size_t) m->cfg.n_embd;
  size_t floats = (size_t) n * C * 4 + 2 * (size_t) n + (size_t) n * 3 * C +
                  (size_t) n * 4 * C + nt * n * c->max_len + (size_t) m->n_out +
                  nt * 4 * C + nt * C;
  gptd__nn_free (c->buf, c->buf_bytes);
  c->buf_bytes = floats * sizeof (float);
  c->buf = gptd__nn_alloc (c->buf_bytes);
  if (c->buf == NULL)
    {
      c->cap_n = 0;
      c->cap_nt = 0;
      c->buf_bytes = 0;
      g_set_error (error, GPTD_NN_ERROR, GPTD_NN_ERROR_NO_MEMORY,
                   "cannot allocate KV-cache scratch for %d tokens", n);
      return FALSE;
    }
  float *p = c->buf;
#define TAKE(k) (p += (k), p - (k))
  c->x = TAKE ((size_t) n * C);
  c->ln = TAKE ((size_t) n * C);
  c->atty = TAKE ((size_t) n * C);
  c->branch = TAKE ((size_t) n * C);
  c->mean = TAKE ((size_t) n);
  c->rstd = TAKE ((size_t) n);
  c->qkv = TAKE ((size_t) n * 3 * C);
  c->fch = TAKE ((size_t) n * 4 * C);
  c->att = TAKE (nt * n * c->max_len);
  c->logits = TAKE ((size_t) m->n_out);
  c->part = TAKE (nt * 4 * C);
  c->lnt = TAKE (nt * C);
#undef TAKE
  c->cap_n = n;
  c->cap_nt = nt;
  return TRUE;
}

/* Thread t's share of the logits of one row: logits[b:e] = head_w[b:e, :] lnf
 * + head_b[b:e] (head_w is (V, C) row-major, nn.Linear's output-major layout),
 * the V rows split over @nth threads.  The prefill's last row. */
static void
head_part (const GptdGpt *m, const float *lnf, float *logits, int t, int nth)
{
  const int V = m->n_out, C = m->cfg.n_embd;
  size_t b, e;
  gptd__nn_split ((size_t) V, nth, t, 16, &b, &e);
  if (e <= b)
    return;
  if (m->head_b != NULL)
    memcpy (logits + b, m->head_b->data + b, sizeof (float) * (e - b));
  cblas_sgemv (CblasRowMajor, CblasNoTrans, (int) (e - b), C, 1.0f,
               m->head_w->data + b * (size_t) C, C, lnf, 1,
               m->head_b != NULL ? 1.0f : 0.0f, logits + b, 1);
}

/* out (n, N) = in (n, K) W (K, N) + beta out, for several new rows. */
static void
kv_linear (const float *in, const float *W, int n, int K, int N, float beta,
           float *out)
{
  gptd__nn_sgemm (FALSE, FALSE, n, N, K, 1.0f, in, K, W, N, beta, out, N);
}

/* part[t] (n, N) = x[:, b:e] W[b:e, :] for this thread's block [b, e) of the
 * K rows of W (K, N, row-major: Conv1D, input-major) and the @n rows of x
 * (@ldx apart): the first half of a matrix-vector product split by rows, the
 * second being the sum of the partial products (part_sum()).  A one-row
 * sgemm would pack the whole weight matrix first; a matrix-vector product
 * reads each weight once, which is all a decoding step can afford (it is
 * bound by memory bandwidth), and uses it for every row.  Splitting the rows
 * lets each thread stream one contiguous block of whole rows; splitting the
 * columns instead has every thread read a part of each row, which the
 * hardware prefetchers follow far worse.  The kernel (matvec.c) sums each
 * output in one order whatever @n, and the split depends on the team only:
 * a row's result does not depend on the other rows. */
static void
matvec_part (const GptdMatvecKernels *mk, const float *x, size_t ldx, int n,
             const float *W, int K, int N, int t, int nth, float *part)
{
  size_t b, e;
  float *mine = part + (size_t) t * n * N;
  gptd__nn_split ((size_t) K, nth, t, 8, &b, &e);
  if (e > b)
    mk->matvec_kn (x + b, ldx, n, W + b * (size_t) N, (size_t) N, e - b,
                   (size_t) N, mine, (size_t) N);
  else
    memset (mine, 0, sizeof (float) * n * N);
}

/* The sum of the nth partial products at column j of row i (of n). */
static inline float
part_sum (const float *part, int nth, int n, int N, int i, size_t j)
{
  const size_t stride = (size_t) n * N;
  const float *p = part + (size_t) i * N + j;
  float s = p[0];
  for (int u = 1; u < nth; u++)
    s += p[(size_t) u * stride];
  return s;
}

/* The sum of partial products and @bias (may be NULL) over columns [b, e) of
 * row i of an N-wide output, into out[b:e]. */
static inline void
reduce_cols (float *out, const float *part, const float *bias, int nth, int n,
             int N, int i, size_t b, size_t e)
{
  for (size_t j = b; j < e; j++)
    out[j] = bias != NULL ? bias[j] + part_sum (part, nth, n, N, i, j)
                          : part_sum (part, nth, n, N, i, j);
}

/* The residual addition x[b:e] += (sum of partial products) + bias[b:e] of
 * row i of an N-wide output. */
static inline void
residual_cols (float *x, const float *part, const float *bias, int nth, int n,
               int N, int i, size_t b, size_t e)
{
  for (size_t j = b; j < e; j++)
    x[j] = x[j] + part_sum (part, nth, n, N, i, j) + bias[j];
}

/* One new token of each of @n sequences, at position caches[i]->len, s->x
 * holding their embeddings: the whole model in a single parallel region.
 * Decoding is bound by the memory bandwidth of reading the weights; what else
 * it does is small, but opening a parallel region for each small step (a
 * layer norm of a few rows, the GELU of 4C values) costs more than the step
 * itself, and so does every meeting of the threads.  Here the threads stay in
 * one region and meet at eight barriers per layer: the matrix-vector products
 * are split by rows of the weights (see matvec_part()), each weight read once
 * for all n rows; their sums with biases, GELU and residual additions by
 * columns; the qkv sums, the new keys and values and attention by heads, so
 * that a thread attends with what it summed itself (each row with its own
 * cache, position and length); and every thread computes the layer norms of
 * the rows on its own, into its own buffer, instead of waiting for one thread
 * to do it.  Nothing a row computes depends on the other rows. */
void
gptd__gpt_decode_rows (GptdGpt *m, GptdGptKvCache *const *caches, int n,
                       const GptdGptDecodeScratch *s)
{
  const GptdGptConfig *cfg = &m->cfg;
  const int L = cfg->n_layer, nh = cfg->n_head, C = cfg->n_embd;
  const int hd = C / nh, V = m->n_out;
  const float eps = cfg->layer_norm_epsilon;
  const GptdMatvecKernels *mk = gptd__matvec_kernels ();
  float *x = s->x, *qkv = s->qkv, *atty = s->atty;
  float *fch = s->fch, *part = s->part;

  GPTD_NN_PRAGMA (omp parallel num_threads (gptd_nn_get_num_threads ()))
  {
    int t = 0, nth = 1;
#ifdef _OPENMP
    t = omp_get_thread_num ();
    nth = omp_get_num_threads ();
#endif
    float *ln = s->lnt + (size_t) t * n * C;
    float *att = s->att + (size_t) t * s->att_len;
    size_t b, e;
    for (int l = 0; l < L; l++)
      {
        const Block *bl = &m->blocks[l];
        const float *attn_b = bl->attn_b != NULL ? bl->attn_b->data : NULL;
        gptd__nn_layernorm_rows (ln, NULL, NULL, x, bl->ln1_w->data,
                                 bl->ln1_b->data, (size_t) n, C, eps);
        // qkv (n, 3C) = ln (n, C) attn_w (C, 3C) + attn_b
        matvec_part (mk, ln, (size_t) C, n, bl->attn_w->data, C, 3 * C, t,
                     nth, part);
        GPTD_NN_PRAGMA (omp barrier)
        // Each thread sums the query, key and value of its heads, stores the
        // new key and value, and attends with them, for every row.
        gptd__nn_split ((size_t) nh, nth, t, 1, &b, &e);
        for (int i = 0; i < n; i++)
          {
            GptdGptKvCache *c = caches[i];
            const int p0 = c->len;
            float *kc = c->k + (size_t) l * c->max_len * C;
            float *vc = c->v + (size_t) l * c->max_len * C;
            float *q = qkv + (size_t) i * 3 * C;
            for (size_t h = b; h < e; h++)
              {
                for (int seg = 0; seg < 3; seg++)
                  {
                    size_t c0 = (size_t) seg * C + h * hd;
                    reduce_cols (q, part, attn_b, nth, n, 3 * C, i, c0,
                                 c0 + hd);
                  }
                memcpy (kc + (size_t) p0 * C + h * hd, q + C + h * hd,
                        sizeof (float) * hd);
                memcpy (vc + (size_t) p0 * C + h * hd, q + 2 * C + h * hd,
                        sizeof (float) * hd);
                gptd__nn_attention_row (atty + (size_t) i * C + h * hd,
                                        q + h * hd, kc + h * hd, vc + h * hd,
                                        p0 + 1, hd, C, att);
              }
          }
        GPTD_NN_PRAGMA (omp barrier)
        // x += atty (n, C) proj_w (C, C) + proj_b
        matvec_part (mk, atty, (size_t) C, n, bl->proj_w->data, C, C, t, nth,
                     part);
        GPTD_NN_PRAGMA (omp barrier)
        gptd__nn_split ((size_t) C, nth, t, 16, &b, &e);
        for (int i = 0; i < n; i++)
          residual_cols (x + (size_t) i * C, part, bl->proj_b->data, nth, n, C,
                         i, b, e);
        GPTD_NN_PRAGMA (omp barrier)
        gptd__nn_layernorm_rows (ln, NULL, NULL, x, bl->ln2_w->data,
                                 bl->ln2_b->data, (size_t) n, C, eps);
        // fch (n, 4C) = gelu (ln (n, C) fc_w (C, 4C) + fc_b)
        matvec_part (mk, ln, (size_t) C, n, bl->fc_w->data, C, 4 * C, t, nth,
                     part);
        GPTD_NN_PRAGMA (omp barrier)
        gptd__nn_split ((size_t) 4 * C, nth, t, 16, &b, &e);
        for (int i = 0; i < n; i++)
          {
            float *f = fch + (size_t) i * 4 * C;
            reduce_cols (f, part, bl->fc_b->data, nth, n, 4 * C, i, b, e);
            gptd__nn_gelu_range (f + b, f + b, e - b);
          }
        GPTD_NN_PRAGMA (omp barrier)
        // x += fch (n, 4C) fcp_w (4C, C) + fcp_b
        matvec_part (mk, fch, (size_t) 4 * C, n, bl->fcp_w->data, 4 * C, C, t,
                     nth, part);
        GPTD_NN_PRAGMA (omp barrier)
        gptd__nn_split ((size_t) C, nth, t, 16, &b, &e);
        for (int i = 0; i < n; i++)
          residual_cols (x + (size_t) i * C, part, bl->fcp_b->data, nth, n, C,
                         i, b, e);
        GPTD_NN_PRAGMA (omp barrier)
      }
    gptd__nn_layernorm_rows (ln, NULL, NULL, x, m->lnf_w->data,
                             m->lnf_b->data, (size_t) n, C, eps);
    // logits (n, V) = lnf (n, C) head (V, C)^T + head_b, split by head rows
    gptd__nn_split ((size_t) V, nth, t, 16, &b, &e);
    if (e > b)
      {
        mk->dot_rows (m->head_w->data + b * (size_t) C, (size_t) C, e - b,
                      (size_t) C, ln, (size_t) C, n, s->logits + b, (size_t) V);
        if (m->head_b != NULL)
          for (int i = 0; i < n; i++)
            for (size_t j = b; j < e; j++)
              s->logits[(size_t) i * V + j] += m->head_b->data[j];
      }
  }
  for (int i = 0; i < n; i++)
    caches[i]->len++;
}

const float *
gptd_gpt_forward_cached (GptdGpt *m, GptdGptKvCache *c, const gint32 *tokens,
                         int n, GError **error)
{
  g_return_val_if_fail (m != NULL && c != NULL && c->model == m, NULL);
  g_return_val_if_fail (tokens != NULL, NULL);
  g_return_val_if_fail (error == NULL || *error == NULL, NULL);
  const GptdGptConfig *cfg = &m->cfg;
  const int L = cfg->n_layer, nh = cfg->n_head;
  const int C = cfg->n_embd;
  const float eps = cfg->layer_norm_epsilon;
  const int p0 = c->len;
  const GptdNnDropout none = { 0, 0, 1.0f };

  if (n < 1 || n > c->max_len - p0)
    {
      g_set_error (error, GPTD_NN_ERROR, GPTD_NN_ERROR_STATE,
                   "KV cache holds %d of %d positions: no room for %d more",
                   p0, c->max_len, n);
      return NULL;
    }
  for (int i = 0; i < n; i++)
    if (tokens[i] < 0 || tokens[i] >= cfg->vocab_size)
      {
        g_set_error (error, GPTD_NN_ERROR, GPTD_NN_ERROR_INPUT,
                     "token id %d at index %d is outside the vocabulary "
                     "[0, %d)",
                     tokens[i], i, cfg->vocab_size);
        return NULL;
      }
  if (m->quant != NULL)
    return gptd__gpt_forward_cached_quant (m, c, tokens, n, error);
  if (!gptd__gpt_kv_reserve (c, n, error))
    return NULL;

  for (int i = 0; i < n; i++)
    {
      const float *te = m->wte->data + (size_t) tokens[i] * C;
      const float *pe = m->wpe->data + (size_t) (p0 + i) * C;
      for (int k = 0; k < C; k++)
        c->x[(size_t) i * C + k] = te[k] + pe[k];
    }
  if (n == 1)
    {
      GptdGptDecodeScratch s = {
        c->x, c->qkv, c->atty, c->fch, c->part, c->lnt, c->att,
        (size_t) c->max_len, c->logits, NULL, 0,
      };
      gptd__gpt_decode_rows (m, &c, 1, &s);
      return c->logits;
    }
  for (int l = 0; l < L; l++)
    {
      Block *bl = &m->blocks[l];
      float *kc = c->k + (size_t) l * c->max_len * C;
      float *vc = c->v + (size_t) l * c->max_len * C;
      gptd__nn_layernorm_forward (c->ln, c->mean, c->rstd, c->x,
                                  bl->ln1_w->data, bl->ln1_b->data, n, C,
                                  eps);
      if (bl->attn_b != NULL)
        gptd__nn_fill_bias (c->qkv, bl->attn_b->data, n, 3 * C, 3 * C);
      kv_linear (c->ln, bl->attn_w->data, n, C, 3 * C,
                 bl->attn_b ? 1.0f : 0.0f, c->qkv);
      for (int i = 0; i < n; i++)
        {
          memcpy (kc + (size_t) (p0 + i) * C, c->qkv + (size_t) i * 3 * C + C,
                  sizeof (float) * C);
          memcpy (vc + (size_t) (p0 + i) * C,
                  c->qkv + (size_t) i * 3 * C + 2 * C, sizeof (float) * C);
        }
      gptd__nn_attention_cached (c->atty, c->qkv, kc, vc, n, p0, C, nh,
                                 c->att);
      kv_linear (c->atty, bl->proj_w->data, n, C, C, 0.0f, c->branch);
      gptd__nn_residual_layernorm (c->x, c->x, c->branch, bl->proj_b->data,
                                   &none, c->ln, c->mean, c->rstd,
                                   bl->ln2_w->data, bl->ln2_b->data, n, C,
                                   eps);
      gptd__nn_fill_bias (c->fch, bl->fc_b->data, n, 4 * C, 4 * C);
      kv_linear (c->ln, bl->fc_w->data, n, C, 4 * C, 1.0f, c->fch);
      gptd__nn_gelu_forward (c->fch, c->fch, (size_t) n * 4 * C);
      kv_linear (c->fch, bl->fcp_w->data, n, 4 * C, C, 0.0f, c->branch);
      gptd__nn_residual_layernorm (c->x, c->x, c->branch, bl->fcp_b->data,
                                   &none, NULL, NULL, NULL, NULL, NULL, n, C,
                                   eps);
    }
  float *last = c->x + (size_t) (n - 1) * C;
  gptd__nn_layernorm_rows (c->ln, c->mean, c->rstd, last, m->lnf_w->data,
                           m->lnf_b->data, 1, C, eps);
  // logits (1, V) = lnf (1, C) head (V, C)^T + head_b
  GPTD_NN_PRAGMA (omp parallel num_threads (gptd_nn_get_num_threads ()))
  {
    int t = 0, nth = 1;
#ifdef _OPENMP
    t = omp_get_thread_num ();
    nth = omp_get_num_threads ();
#endif
    head_part (m, c->ln, c->logits, t, nth);
  }
  c->len = p0 + n;
  return c->logits;
}
