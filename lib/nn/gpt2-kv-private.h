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

/* Makes the cache's float scratch hold @n new rows for the current team
 * size. */
gboolean gptd__gpt_kv_reserve (GptdGptKvCache *c, int n, GError **error);

/* gptd_gpt_forward_cached() for a model with converted weights (m->quant),
 * the arguments already checked. */
const float *gptd__gpt_forward_cached_quant (GptdGpt *m, GptdGptKvCache *c,
                                             const gint32 *tokens, int n,
                                             GError **error);
