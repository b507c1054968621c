/* gpt2-kv-batch.c: batched decoding: one step feeds the next token of each
 * of several sequences, every one in its own KV cache, through the model
 * together (gptd__gpt_decode_rows() in gpt2-kv.c for float32 weights,
 * gptd__gpt_decode_rows_quant() in gpt2-kv-quant.c for bf16 and q8), with
 * scratch for up to max_rows rows kept here.
 */
#include "config.h"

#include "nn/gpt2-kv-private.h"

#include <string.h>

struct _GptdGptDecodeBatch {
  GptdGpt *model;
  int max_rows;
  size_t nt;           /* the team size the scratch was made for */
  float *buf;
  size_t buf_bytes;
  void *qbuf;
  size_t qbuf_bytes;
  GptdGptDecodeScratch s;
};

/* Makes the scratch fit max_rows rows for the current team size. */
static gboolean
batch_reserve (GptdGptDecodeBatch *b, GError **error)
{
  size_t nt = (size_t) gptd_nn_get_num_threads ();
  if (b->buf != NULL && nt <= b->nt)
    return TRUE;
  nt = MAX (nt, b->nt);
  const GptdGpt *m = b->model;
  const size_t C = (size_t) m->cfg.n_embd, n = (size_t) b->max_rows;
  const size_t att_len = (size_t) m->cfg.context_length;
  size_t floats = n * C + n * 3 * C + n * C + n * 4 * C + nt * n * 4 * C +
                  nt * n * C + nt * att_len + n * (size_t) m->n_out;
  gptd__nn_free (b->buf, b->buf_bytes);
  gptd__nn_free (b->qbuf, b->qbuf_bytes);
  b->buf = NULL;
  b->qbuf = NULL;
  b->buf_bytes = floats * sizeof (float);
  b->buf = gptd__nn_alloc (b->buf_bytes);
  b->qbuf_bytes = m->quant != NULL ? gptd__gpt_quant_act_bytes (nt * n, C) : 0;
  if (b->qbuf_bytes > 0)
    b->qbuf = gptd__nn_alloc (b->qbuf_bytes);
  if (b->buf == NULL || (b->qbuf_bytes > 0 && b->qbuf == NULL))
    {
      gptd__nn_free (b->buf, b->buf_bytes);
      gptd__nn_free (b->qbuf, b->qbuf_bytes);
      b->buf = NULL;
      b->qbuf = NULL;
      b->nt = 0;
      g_set_error (error, GPTD_NN_ERROR, GPTD_NN_ERROR_NO_MEMORY,
                   "cannot allocate decoding scratch for %d sequences",
                   b->max_rows);
      return FALSE;
    }
  float *p = b->buf;
#define TAKE(k) (p += (k), p - (k))
  b->s.x = TAKE (n * C);
  b->s.qkv = TAKE (n * 3 * C);
  b->s.atty = TAKE (n * C);
  b->s.fch = TAKE (n * 4 * C);
  b->s.part = TAKE (nt * n * 4 * C);
  b->s.lnt = TAKE (nt * n * C);
  b->s.att = TAKE (nt * att_len);
  b->s.logits = TAKE (n * (size_t) m->n_out);
#undef TAKE
  b->s.att_len = att_len;
  b->s.qbuf = b->qbuf;
  b->s.act_rows = nt * n;
  b->nt = nt;
  return TRUE;
}

GptdGptDecodeBatch *
gptd_gpt_decode_batch_new (GptdGpt *model, int max_rows, GError **error)
{
  g_return_val_if_fail (model != NULL, NULL);
  if (max_rows < 1 || max_rows > 4096)
    {
      g_set_error (error, GPTD_NN_ERROR, GPTD_NN_ERROR_CONFIG,
                   "a decoding batch of %d sequences: it must be 1 to 4096",
                   max_rows);
      return NULL;
    }
  GptdGptDecodeBatch *b = g_new0 (GptdGptDecodeBatch, 1);
  b->model = model;
  b->max_rows = max_rows;
  if (!batch_reserve (b, error))
    {
      gptd_gpt_decode_batch_free (b);
      return NULL;
    }
  return b;
}

void
gptd_gpt_decode_batch_free (GptdGptDecodeBatch *batch)
{
  if (batch == NULL)
    return;
  gptd__nn_free (batch->buf, batch->buf_bytes);
  gptd__nn_free (batch->qbuf, batch->qbuf_bytes);
  g_free (batch);
}

const float *
gptd_gpt_forward_batch (GptdGptDecodeBatch *batch,
                        GptdGptKvCache *const *caches, const gint32 *tokens,
                        int n, GError **error)
{
  g_return_val_if_fail (batch != NULL, NULL);
  g_return_val_if_fail (caches != NULL && tokens != NULL, NULL);
  g_return_val_if_fail (error == NULL || *error == NULL, NULL);
  GptdGpt *m = batch->model;
  const GptdGptConfig *cfg = &m->cfg;
  const size_t C = (size_t) cfg->n_embd;

  if (n < 1 || n > batch->max_rows)
    {
      g_set_error (error, GPTD_NN_ERROR, GPTD_NN_ERROR_CONFIG,
                   "a decoding step of %d sequences in a batch of at most %d",
                   n, batch->max_rows);
      return NULL;
    }
  if (m->lora_rank > 0)
    {
      g_set_error (error, GPTD_NN_ERROR, GPTD_NN_ERROR_STATE,
                   "KV-cache decoding needs the LoRA adapters merged into the "
                   "weights first (gptd_gpt_merge_lora)");
      return NULL;
    }
  for (int i = 0; i < n; i++)
    {
      const GptdGptKvCache *c = caches[i];
      if (c == NULL || c->model != m)
        {
          g_set_error (error, GPTD_NN_ERROR, GPTD_NN_ERROR_STATE,
                       "sequence %d of the decoding step has %s", i,
                       c == NULL ? "no KV cache" : "a KV cache of another model");
          return NULL;
        }
      if (c->len >= c->max_len)
        {
          g_set_error (error, GPTD_NN_ERROR, GPTD_NN_ERROR_STATE,
                       "sequence %d of the decoding step: its KV cache holds "
                       "%d of %d positions, no room for one more",
                       i, c->len, c->max_len);
          return NULL;
        }
      for (int j = 0; j < i; j++)
        if (caches[j] == c)
          {
            g_set_error (error, GPTD_NN_ERROR, GPTD_NN_ERROR_STATE,
                         "sequences %d and %d of the decoding step share one "
                         "KV cache", j, i);
            return NULL;
          }
      if (tokens[i] < 0 || tokens[i] >= cfg->vocab_size)
        {
          g_set_error (error, GPTD_NN_ERROR, GPTD_NN_ERROR_INPUT,
                       "token id %d of sequence %d is outside the vocabulary "
                       "[0, %d)", tokens[i], i, cfg->vocab_size);
          return NULL;
        }
    }
  if (!batch_reserve (batch, error))
    return NULL;

  const GptdGptDecodeScratch *s = &batch->s;
  for (int i = 0; i < n; i++)
    {
      float *x = s->x + (size_t) i * C;
      const int pos = caches[i]->len;
      if (m->quant != NULL)
        gptd__gpt_quant_embed (m, tokens[i], pos, x);
      else
        {
          const float *te = m->wte->data + (size_t) tokens[i] * C;
          const float *pe = m->wpe->data + (size_t) pos * C;
          for (size_t k = 0; k < C; k++)
            x[k] = te[k] + pe[k];
        }
    }
  if (m->quant != NULL)
    gptd__gpt_decode_rows_quant (m, caches, n, s);
  else
    gptd__gpt_decode_rows (m, caches, n, s);
  return s->logits;
}
