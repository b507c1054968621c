/* gpt2-private.h: the GPT-2 model structure shared by gpt2.c (training
 * passes) and gpt2-kv.c (cached inference).
 */
#pragma once

#include "nn/nn-internal.h"

typedef struct {
  GptdNnTensor *ln1_w, *ln1_b, *attn_w, *attn_b, *proj_w, *proj_b;
  GptdNnTensor *ln2_w, *ln2_b, *fc_w, *fc_b, *fcp_w, *fcp_b;
  /* Low-rank adapters of the four linear layers, in the order c_attn,
   * attn.c_proj, c_fc, mlp.c_proj (NULL without LoRA). */
  GptdNnTensor *lora_A[4], *lora_B[4];
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
  guint64 dropout_stream;       /* mixed into the dropout masks' key; 0: none */

  /* LoRA (gpt2-lora.c): rank 0 without adapters.  The adapter tensors come
   * after the n_base_tensors base tensors, in the parameter buffer too. */
  int lora_rank;
  float lora_alpha;
  guint n_base_tensors;

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
  float *lora_act;              /* with LoRA: L*4 of (BT,r) in A, then du */
  size_t lora_act_bytes;

  /* Called after each block's backward and at its end (gptd_gpt_set_backward_hook). */
  GptdGptBackwardHook bw_hook;
  gpointer bw_hook_data;

  /* Last forward. */
  int fw_B, fw_T;
  GptdGptForwardFlags fw_flags;
  gboolean fw_train, fw_has_targets, logits_valid;
  guint64 fw_counter;
  size_t fw_count;
};

/* Frees the activation plan (gpt2.c); the next forward plans again. */
void gptd__gpt_plan_clear (GptdGpt *m);

/* Reallocates the gradient buffer for the current frozen set (gpt2.c). */
gboolean gptd__gpt_alloc_grads (GptdGpt *m);

/* The adapter of linear layer @k (0 c_attn, 1 attn.c_proj, 2 c_fc,
 * 3 mlp.c_proj) of block @l for a forward over @rows rows, or NULL without
 * LoRA (gpt2-lora.c).  Computes u = in A into the plan's LoRA buffer. */
const GptdNnLora *gptd__gpt_lora_forward (GptdGpt *m, GptdNnLora *lora, int l,
                                          int k, const float *in,
                                          size_t rows);

/* Before the backward of linear layer @k of block @l: dB += scale u^T dout,
 * du = scale dout B^T, dA += in^T du for the unfrozen adapter tensors.
 * Returns the adapter for gptd__nn_linear_backward(), NULL without LoRA. */
const GptdNnLora *gptd__gpt_lora_backward (GptdGpt *m, GptdNnLora *lora,
                                           int l, int k, const float *dout,
                                           const float *in, size_t rows);
