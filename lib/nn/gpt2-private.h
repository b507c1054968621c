/* gpt2-private.h: the GPT-2 model structure shared by gpt2.c (training
 * passes) and gpt2-kv.c (cached inference).
 */
#pragma once

#include "nn/nn-internal.h"

typedef struct {
  GptdNnTensor *ln1_w, *ln1_b, *attn_w, *attn_b, *proj_w, *proj_b;
  GptdNnTensor *ln2_w, *ln2_b, *fc_w, *fc_b, *fcp_w, *fcp_b;
} Block;

/* Per-layer activations kept for backward.  Blocks below the lowest one that
 * backward reaches share one set, overwritten block by block. */
typedef struct {
  float *ln1, *ln1_mean, *ln1_rstd; /* (BT,C), (BT), (BT) */
  float *qkv;                       /* (BT,3C) */
  float *atty;                      /* (BT,C) */
  float *att_lse;                   /* (B,nh,T) */
  float *mid;                       /* (BT,C) */
  float *ln2, *ln2_mean, *ln2_rstd; /* (BT,C), (BT), (BT) */
  float *fch, *fchg;                /* (BT,4C) */
} Acts;

/* Frees a model's converted weights (quant.c; NULL is ignored). */
struct _GptdGptQuant;
void gptd__gpt_quant_free (struct _GptdGptQuant *q);

struct _GptdGpt {
  GptdGptConfig cfg;
  int n_out;
  size_t n_params;
  float *params;
  /* Gradients of parameters grad_base .. n_params only: from the first
   * unfrozen tensor to the end (nothing below gets a gradient). */
  float *grads;
  size_t grad_base;

  GptdNnTensor *tensors;
  guint n_tensors;
  GHashTable *by_name;
  GptdNnTensor *wte, *wpe, *lnf_w, *lnf_b, *head_w, *head_b;
  Block *blocks;

  GptdRngState rng;

  /* The linear layers in another format for the KV-cache path (quant.c);
   * NULL for float32. */
  struct _GptdGptQuant *quant;

  /* Activation plan for up to plan_bt rows and plan_t positions. */
  size_t plan_bt;
  int plan_t;
  int plan_nt; /* team size the scratch was sized for */
  int plan_keep; /* the lowest block whose activations are kept */
  float *act;
  size_t act_bytes;
  float *big; /* logits, later backward scratch */
  size_t big_bytes;
  float *scratch; /* attention and LayerNorm scratch */
  size_t scratch_bytes;
  Acts *acts;
  float **res;                  /* L+1 of (BT,C); those below plan_keep
                                 * alternate between two buffers */
  float *lnf, *lnf_mean, *lnf_rstd;
  float *branch;                /* (BT,C) */
  float *ce_lse;                /* (BT) */
  gint32 *tokens, *targets;     /* (BT) */
  gint32 *pool_pos;             /* (B): the head's position per row */

  /* Last forward. */
  int fw_B, fw_T;
  GptdGptForwardFlags fw_flags;
  gboolean fw_train, fw_has_targets, logits_valid;
  guint64 fw_counter;
  size_t fw_count;
};
