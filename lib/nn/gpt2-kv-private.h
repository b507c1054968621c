/* gpt2-kv-private.h: the KV cache shared by gpt2-kv.c (float32 weights) and
 * gpt2-kv-quant.c (bf16 and q8 weights).
 */
#pragma once

#include "nn/gpt2-private.h"

struct _GptdGptKvCache {
  GptdGpt *model;
  int max_len;
  int len;
  float *k, *v; /* (L, max_len, C) each */
  size_t kv_bytes;
  /* Scratch for up to cap_n new rows. */
  int cap_n;
  size_t cap_nt;
  float *buf;
  size_t buf_bytes;
  float *x, *ln, *mean, *rstd, *qkv, *atty, *branch, *fch, *att, *logits;
  float *part; /* (cap_nt, 4C): per-thread partial products of one row */
  float *lnt;  /* (cap_nt, C): per-thread layer norm of one row */
  /* Scratch of the converted-weights path (gpt2-kv-quant.c). */
  void *qbuf;
  size_t qbuf_bytes;
  int q_cap_n;
  size_t q_cap_nt;
};

/* Where a decoding step of @n rows (one new token of each of n sequences)
 * works: the cache's own scratch for one row (gpt2-kv.c), a
 * GptdGptDecodeBatch's for several (gpt2-kv-batch.c). */
typedef struct {
  float *x;      /* (n, C): the rows' embeddings, then their residual streams */
  float *qkv;    /* (n, 3C) */
  float *atty;   /* (n, C) */
  float *fch;    /* (n, 4C) */
  float *part;   /* (nt, n, 4C): each thread's partial products */
  float *lnt;    /* (nt, n, C): each thread's layer norms of the rows */
  float *att;    /* (nt, att_len): each thread's attention weights */
  size_t att_len;
  float *logits; /* (n, n_out) */
  /* bf16 and q8: act_rows rows of 4C prepared activations (gpt2-kv-quant.c
   * lays them out), n for each thread. */
  void *qbuf;
  size_t act_rows;
} GptdGptDecodeScratch;

/* One decoding step of @n rows: row i is the next token of the sequence in
 * caches[i], its embedding already in s->x; each cache then holds one
 * position more and s->logits has the rows' logits.  Row i's logits are
 * bitwise the same whatever the other rows and however many there are. */
void gptd__gpt_decode_rows (GptdGpt *m, GptdGptKvCache *const *caches, int n,
                            const GptdGptDecodeScratch *s);
void gptd__gpt_decode_rows_quant (GptdGpt *m, GptdGptKvCache *const *caches,
                                  int n, const GptdGptDecodeScratch *s);

/* The bytes of prepared activations gpt2-kv-quant.c needs for @rows rows of a
 * model of width @C. */
size_t gptd__gpt_quant_act_bytes (size_t rows, size_t C);

/* The embedding of @token at @pos into @x, from the converted head when the
 * model ties it. */
void gptd__gpt_quant_embed (const GptdGpt *m, gint32 token, int pos, float *x);

/* Makes the cache's float scratch hold @n new rows for the current team
 * size. */
gboolean gptd__gpt_kv_reserve (GptdGptKvCache *c, int n, GError **error);

/* gptd_gpt_forward_cached() for a model with converted weights (m->quant),
 * the arguments already checked. */
const float *gptd__gpt_forward_cached_quant (GptdGpt *m, GptdGptKvCache *c,
                                             const gint32 *tokens, int n,
                                             GError **error);
