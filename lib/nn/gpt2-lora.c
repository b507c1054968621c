/* gpt2-lora.c: low-rank adapters (LoRA, the book's appendix E) on the four
 * linear layers of every block: adding them to a model, their share of the
 * forward and backward passes, and merging them into the base weights.
 *
 * A linear layer y = x W + b (W input-major, K x N) becomes
 *   y = x W + b + scale * (x A) B,   A (K, r), B (r, N), scale = alpha / r.
 * The adapter tensors follow every base tensor in the parameter buffer, so
 * that with the base frozen the gradient buffer and the AdamW moments (both
 * kept from the first unfrozen tensor on) cover only the adapters and
 * whatever comes after the last frozen tensor.
 */
#include "nn/gpt2-private.h"

#include <math.h>
#include <string.h>

static const char *const lora_site[4] = {
  "attn.c_attn", "attn.c_proj", "mlp.c_fc", "mlp.c_proj"
};

static GptdNnTensor *
base_weight (Block *bl, int k)
{
  GptdNnTensor *w[4] = { bl->attn_w, bl->proj_w, bl->fc_w, bl->fcp_w };
  return w[k];
}

/* splitmix64, for the adapters' initial A. */
static guint64
splitmix64 (guint64 *state)
{
  guint64 z = (*state += 0x9E3779B97F4A7C15ull);
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  return z ^ (z >> 31);
}

/* Points every tensor of @m into @params, the parameter buffer resized by
 * gptd__nn_realloc() (m->params is no longer valid memory, only an origin). */
static void
move_params (GptdGpt *m, float *params, size_t n_params)
{
  for (guint i = 0; i < m->n_tensors; i++)
    m->tensors[i].data = params + (m->tensors[i].data - m->params);
  m->params = params;
  m->n_params = n_params;
}

/* Drops the gradient buffer; the next gptd__gpt_alloc_grads() makes a
 * zeroed one for the new parameter count. */
static void
drop_grads (GptdGpt *m)
{
  gptd__nn_free (m->grads, (m->n_params - m->grad_base) * sizeof (float));
  m->grads = NULL;
  m->grad_base = 0;
  for (guint i = 0; i < m->n_tensors; i++)
    m->tensors[i].grad = NULL;
}

gboolean
gptd_gpt_add_lora (GptdGpt *m, int rank, float alpha, guint64 seed,
                   GError **error)
{
  g_return_val_if_fail (m != NULL, FALSE);
  g_return_val_if_fail (error == NULL || *error == NULL, FALSE);
  const int L = m->cfg.n_layer;
  const size_t C = (size_t) m->cfg.n_embd;
  if (m->lora_rank > 0)
    {
      g_set_error (error, GPTD_NN_ERROR, GPTD_NN_ERROR_STATE,
                   "the model already has LoRA adapters of rank %d",
                   m->lora_rank);
      return FALSE;
    }
  if (rank < 1 || (size_t) rank > C)
    {
      g_set_error (error, GPTD_NN_ERROR, GPTD_NN_ERROR_CONFIG,
                   "lora-rank must be in [1, n_embd %zu], not %d", C, rank);
      return FALSE;
    }
  if (!(alpha > 0.0f) || !isfinite (alpha))
    {
      g_set_error (error, GPTD_NN_ERROR, GPTD_NN_ERROR_CONFIG,
                   "lora-alpha must be positive and finite, not %g",
                   (double) alpha);
      return FALSE;
    }
  if (m->quant != NULL)
    {
      g_set_error (error, GPTD_NN_ERROR, GPTD_NN_ERROR_STATE,
                   "LoRA needs float32 weights, not converted ones");
      return FALSE;
    }

  const size_t r = (size_t) rank;
  /* Per block: A (K, r) and B (r, N) for K x N = C x 3C, C x C, C x 4C,
   * 4C x C. */
  size_t per_block = r * (C + 3 * C) + r * (C + C) + r * (C + 4 * C) +
                     r * (4 * C + C);
  size_t extra = per_block * (size_t) L;
  size_t n_params = m->n_params + extra;
  drop_grads (m);
  gptd__gpt_plan_clear (m);
  float *params = gptd__nn_realloc (m->params, m->n_params * sizeof (float),
                                    n_params * sizeof (float));
  if (params == NULL)
    {
      g_set_error (error, GPTD_NN_ERROR, GPTD_NN_ERROR_NO_MEMORY,
                   "cannot allocate %zu parameters for LoRA adapters",
                   n_params);
      gptd__gpt_alloc_grads (m);
      return FALSE;
    }
  size_t off = m->n_params;
  move_params (m, params, n_params);

  /* A ~ U(-1/sqrt(r), 1/sqrt(r)): torch's kaiming_uniform_(a=sqrt(5)) on a
   * (K, r) tensor, whose fan-in is r, as the book initialises it; B = 0. */
  guint64 state = seed ^ 0x4C6F5241ull;
  const double bound = 1.0 / sqrt ((double) rank);
  for (int l = 0; l < L; l++)
    {
      Block *bl = &m->blocks[l];
      for (int k = 0; k < 4; k++)
        {
          const GptdNnTensor *w = base_weight (bl, k);
          size_t K = w->shape[0], N = w->shape[1];
          for (int ab = 0; ab < 2; ab++)
            {
              GptdNnTensor *t = &m->tensors[m->n_tensors++];
              t->name = g_strdup_printf ("h.%d.%s.lora_%c", l, lora_site[k],
                                         ab == 0 ? 'A' : 'B');
              t->ndim = 2;
              t->shape[0] = ab == 0 ? K : r;
              t->shape[1] = ab == 0 ? r : N;
              t->numel = t->shape[0] * t->shape[1];
              t->data = m->params + off;
              t->grad = NULL;
              t->frozen = FALSE;
              off += t->numel;
              if (ab == 0)
                for (size_t i = 0; i < t->numel; i++)
                  {
                    double u = (splitmix64 (&state) >> 11) * 0x1.0p-53;
                    t->data[i] = (float) ((2.0 * u - 1.0) * bound);
                  }
              g_hash_table_insert (m->by_name, (gpointer) t->name, t);
              if (ab == 0)
                bl->lora_A[k] = t;
              else
                bl->lora_B[k] = t;
            }
        }
    }
  g_assert (off == m->n_params);
  m->lora_rank = rank;
  m->lora_alpha = alpha;
  if (!gptd__gpt_alloc_grads (m))
    {
      g_set_error (error, GPTD_NN_ERROR, GPTD_NN_ERROR_NO_MEMORY,
                   "cannot allocate gradients for %zu parameters", m->n_params);
      return FALSE;
    }
  return TRUE;
}

int
gptd_gpt_get_lora_rank (const GptdGpt *m)
{
  g_return_val_if_fail (m != NULL, 0);
  return m->lora_rank;
}

float
gptd_gpt_get_lora_alpha (const GptdGpt *m)
{
  g_return_val_if_fail (m != NULL, 0.0f);
  return m->lora_alpha;
}

gboolean
gptd_gpt_merge_lora (GptdGpt *m, GError **error)
{
  g_return_val_if_fail (m != NULL, FALSE);
  g_return_val_if_fail (error == NULL || *error == NULL, FALSE);
  if (m->lora_rank == 0)
    return TRUE;
  size_t n_base = (size_t) (m->tensors[m->n_base_tensors].data - m->params);
  const float scale = m->lora_alpha / (float) m->lora_rank;
  const int r = m->lora_rank;
  for (int l = 0; l < m->cfg.n_layer; l++)
    {
      Block *bl = &m->blocks[l];
      for (int k = 0; k < 4; k++)
        {
          GptdNnTensor *w = base_weight (bl, k);
          int K = (int) w->shape[0], N = (int) w->shape[1];
          // W (K, N) += scale * A (K, r) B (r, N)
          gptd__nn_sgemm (FALSE, FALSE, K, N, r, scale, bl->lora_A[k]->data,
                          r, bl->lora_B[k]->data, N, 1.0f, w->data, N);
          bl->lora_A[k] = bl->lora_B[k] = NULL;
        }
    }
  drop_grads (m);
  for (guint i = m->n_base_tensors; i < m->n_tensors; i++)
    {
      g_hash_table_remove (m->by_name, m->tensors[i].name);
      g_free ((char *) m->tensors[i].name);
      memset (&m->tensors[i], 0, sizeof m->tensors[i]);
    }
  m->n_tensors = m->n_base_tensors;
  /* Shrinking: a failure keeps the larger buffer, which still holds the
   * merged base at its start. */
  float *params = gptd__nn_realloc (m->params, m->n_params * sizeof (float),
                                    n_base * sizeof (float));
  if (params != NULL)
    move_params (m, params, n_base);
  else
    m->n_params = n_base; /* a failed shrink leaks the tail rather than fail a
                           * merge already done */
  gptd__gpt_plan_clear (m);
  m->lora_rank = 0;
  m->lora_alpha = 0.0f;
  /* A failed allocation is reported by the next backward. */
  gptd__gpt_alloc_grads (m);
  return TRUE;
}

static float *
lora_u (GptdGpt *m, int l, int k)
{
  return m->lora_act + ((size_t) l * 4 + (size_t) k) * m->plan_bt *
                           (size_t) m->lora_rank;
}

const GptdNnLora *
gptd__gpt_lora_forward (GptdGpt *m, GptdNnLora *lora, int l, int k,
                        const float *in, size_t rows)
{
  if (m->lora_rank == 0)
    return NULL;
  const Block *bl = &m->blocks[l];
  const int r = m->lora_rank, K = (int) bl->lora_A[k]->shape[0];
  float *u = lora_u (m, l, k);
  // u (rows, r) = in (rows, K) A (K, r)
  gptd__nn_sgemm (FALSE, FALSE, (int) rows, r, K, 1.0f, in, K,
                  bl->lora_A[k]->data, r, 0.0f, u, r);
  *lora = (GptdNnLora){
    .A = bl->lora_A[k]->data, .B = bl->lora_B[k]->data, .u = u, .r = r,
    .scale = m->lora_alpha / (float) r,
  };
  return lora;
}

const GptdNnLora *
gptd__gpt_lora_backward (GptdGpt *m, GptdNnLora *lora, int l, int k,
                         const float *dout, const float *in, size_t rows)
{
  if (m->lora_rank == 0)
    return NULL;
  const Block *bl = &m->blocks[l];
  const GptdNnTensor *A = bl->lora_A[k], *Bt = bl->lora_B[k];
  const int r = m->lora_rank, K = (int) A->shape[0], N = (int) Bt->shape[1];
  const float scale = m->lora_alpha / (float) r;
  const float *u = lora_u (m, l, k);
  float *du = m->lora_act + (size_t) m->cfg.n_layer * 4 * m->plan_bt *
                                (size_t) r;
  // dB (r, N) += scale * u^T (r, rows) dout (rows, N)
  if (!Bt->frozen && Bt->grad != NULL)
    gptd__nn_sgemm (TRUE, FALSE, r, N, (int) rows, scale, u, r, dout, N, 1.0f,
                    Bt->grad, N);
  // du (rows, r) = scale * dout (rows, N) B^T (N, r)
  gptd__nn_sgemm (FALSE, TRUE, (int) rows, r, N, scale, dout, N, Bt->data, N,
                  0.0f, du, r);
  // dA (K, r) += in^T (K, rows) du (rows, r)
  if (!A->frozen && A->grad != NULL)
    gptd__nn_sgemm (TRUE, FALSE, K, r, (int) rows, 1.0f, in, K, du, r, 1.0f,
                    A->grad, r);
  *lora = (GptdNnLora){
    .A = A->data, .B = Bt->data, .u = u, .du = du, .r = r, .scale = scale,
  };
  return lora;
}
