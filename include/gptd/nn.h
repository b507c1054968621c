/* gptd/nn.h: the GPT-2 model (forward, backward, KV-cache inference),
 * cross-entropy, AdamW, gradient clipping, learning-rate schedules, parameter
 * freezing, seeded dropout and thread control.
 *
 * Numbers are float32 and row-major.  Every matrix product goes through
 * cblas_sgemm (cblas_sgemv for a single row, as in KV-cache decoding), run
 * single-threaded on slices inside the model's OpenMP team; the element-wise
 * work runs in OpenMP loops of the same team, so OpenBLAS threads and OpenMP
 * threads never compete for the cores.
 *
 * Parameters follow Hugging Face's GPT-2 names and layouts, so that OpenAI's
 * released weights can be copied in as they are:
 *
 *   wte.weight               [vocab_size, n_embd]
 *   wpe.weight               [context_length, n_embd]
 *   h.N.ln_1.weight/bias     [n_embd]
 *   h.N.attn.c_attn.weight   [n_embd, 3*n_embd]   (Conv1D: input-major)
 *   h.N.attn.c_attn.bias     [3*n_embd]           (only with qkv_bias)
 *   h.N.attn.c_proj.weight   [n_embd, n_embd]     (Conv1D: input-major)
 *   h.N.attn.c_proj.bias     [n_embd]
 *   h.N.ln_2.weight/bias     [n_embd]
 *   h.N.mlp.c_fc.weight      [n_embd, 4*n_embd]   (Conv1D: input-major)
 *   h.N.mlp.c_fc.bias        [4*n_embd]
 *   h.N.mlp.c_proj.weight    [4*n_embd, n_embd]   (Conv1D: input-major)
 *   h.N.mlp.c_proj.bias      [n_embd]
 *   ln_f.weight/bias         [n_embd]
 *   lm_head.weight           [n_out, n_embd]      (only when not tied;
 *                                                  nn.Linear: output-major)
 *   lm_head.bias             [n_out]              (only with head_bias)
 *
 * The c_attn output columns are ordered query, key, value, each split into
 * n_head heads of n_embd/n_head columns, as in Hugging Face's GPT-2.
 */
#pragma once

#include <glib.h>
#include <stddef.h>
#include <stdint.h>

G_BEGIN_DECLS

/* ------------------------------------------------------------------------ */
/* Errors                                                                   */

/**
 * GPTD_NN_ERROR:
 *
 * Error domain of the model code.  Errors in this domain use #GptdNnError.
 */
#define GPTD_NN_ERROR (gptd_nn_error_quark ())
GQuark gptd_nn_error_quark (void);

/**
 * GptdNnError:
 * @GPTD_NN_ERROR_CONFIG: a configuration value is out of range or
 *   inconsistent (the message names the key).
 * @GPTD_NN_ERROR_INPUT: a forward input is invalid (token id out of the
 *   vocabulary, sequence longer than the context, bad target).
 * @GPTD_NN_ERROR_NO_MEMORY: a buffer could not be allocated.
 * @GPTD_NN_ERROR_STATE: a call came in the wrong order (backward without a
 *   training forward, a full KV cache) or a state blob does not fit.
 *
 * Error codes of #GPTD_NN_ERROR.
 */
typedef enum {
  GPTD_NN_ERROR_CONFIG,
  GPTD_NN_ERROR_INPUT,
  GPTD_NN_ERROR_NO_MEMORY,
  GPTD_NN_ERROR_STATE,
} GptdNnError;

/**
 * GPTD_NN_IGNORE_INDEX:
 *
 * A target equal to this value does not count in the loss (PyTorch's
 * ignore_index default).
 */
#define GPTD_NN_IGNORE_INDEX (-100)

/* ------------------------------------------------------------------------ */
/* Threads                                                                  */

/**
 * gptd_nn_set_num_threads:
 * @n_threads: number of threads; 0 or less means the value of the
 *   environment variable GPTD_NN_THREADS when set, else one per online CPU.
 *
 * Sets how many threads both OpenBLAS and the element-wise loops use.  The
 * two never run at the same time, and idle loop threads do not spin while
 * OpenBLAS works.  Call it before creating models, from one thread.  Results
 * are bitwise reproducible for a given seed and thread count.
 */
void gptd_nn_set_num_threads (int n_threads);

/**
 * gptd_nn_get_num_threads:
 *
 * Returns: the thread count in use (set by gptd_nn_set_num_threads(), else
 *   GPTD_NN_THREADS or the number of online CPUs).
 */
int gptd_nn_get_num_threads (void);

/* ------------------------------------------------------------------------ */
/* Configuration                                                            */

/**
 * GptdGptConfig:
 * @n_layer: number of transformer blocks.
 * @n_head: attention heads per block; divides @n_embd.
 * @n_embd: embedding width.
 * @context_length: number of positions (Hugging Face's n_positions); the
 *   longest sequence a forward accepts and the rows of wpe.weight.
 * @vocab_size: number of token ids (rows of wte.weight).
 * @n_out: width of the output head; 0 means @vocab_size.  A classifier sets
 *   its number of classes here (which requires @tie_embeddings FALSE).
 * @qkv_bias: whether c_attn has a bias (FALSE in the book's from-scratch
 *   model, TRUE in OpenAI's GPT-2).
 * @tie_embeddings: whether the output head is wte.weight (GPT-2) or a separate
 *   lm_head.weight (the book's out_head).
 * @head_bias: whether the output head has a bias lm_head.bias (the book's
 *   classification head has one; the language-model head has none).
 * @dropout: drop probability of the embedding output, the attention weights
 *   and the two residual branches, in [0, 1).  Only applies to forwards with
 *   %GPTD_GPT_FORWARD_TRAIN.
 * @layer_norm_epsilon: LayerNorm epsilon (1e-5).
 *
 * Shape and options of a GPT-2 model.
 */
typedef struct {
  int n_layer;
  int n_head;
  int n_embd;
  int context_length;
  int vocab_size;
  int n_out;
  gboolean qkv_bias;
  gboolean tie_embeddings;
  gboolean head_bias;
  float dropout;
  float layer_norm_epsilon;
} GptdGptConfig;

/**
 * gptd_gpt_config_preset:
 * @name: "gpt2-small" (124M), "gpt2-medium" (355M), "gpt2-large" (774M) or
 *   "gpt2-xl" (1558M); "gpt2" is accepted for "gpt2-small".
 * @config: (out caller-allocates): filled in on success.
 * @error: return location for a #GError.
 *
 * Fills @config with the preset's sizes and OpenAI's options: context 1024,
 * vocabulary 50257, qkv_bias TRUE, tied embeddings, no head bias, dropout 0.1,
 * epsilon 1e-5.  Callers may then shorten context_length or change options.
 *
 * Returns: FALSE with %GPTD_NN_ERROR_CONFIG for an unknown name.
 */
gboolean gptd_gpt_config_preset (const char *name, GptdGptConfig *config,
                                 GError **error);

/**
 * gptd_gpt_config_validate:
 * @config: the configuration.
 * @error: return location for a #GError.
 *
 * Checks every field (positive sizes, n_head divides n_embd, dropout range,
 * n_out only with an untied head, sizes that fit the buffers).
 *
 * Returns: FALSE with %GPTD_NN_ERROR_CONFIG naming the bad field.
 */
gboolean gptd_gpt_config_validate (const GptdGptConfig *config, GError **error);

/**
 * gptd_gpt_config_n_params:
 * @config: a valid configuration.
 *
 * Returns: the number of float parameters the model has (wpe included).
 */
size_t gptd_gpt_config_n_params (const GptdGptConfig *config);

/* ------------------------------------------------------------------------ */
/* Named tensors                                                            */

/**
 * GptdNnTensor:
 * @name: Hugging Face name ("h.3.attn.c_attn.weight"), or for optimizer
 *   state the name with a prefix ("adamw.m.h.3.attn.c_attn.weight").
 * @ndim: number of dimensions, 1 or 2.
 * @shape: sizes of the @ndim dimensions; the rest are 0.
 * @numel: product of the shape.
 * @data: the values, @numel floats inside the owner's contiguous buffer.
 * @grad: the gradient (same layout), or NULL for optimizer state and for
 *   parameters that come before the first unfrozen one (which never get a
 *   gradient, see gptd_gpt_set_frozen()).
 * @frozen: TRUE when the parameter is excluded from gradients and updates.
 *
 * A view of one tensor inside a model or optimizer.  The pointers stay valid
 * until the owner is freed.  Writing through @data is how weights are loaded.
 */
typedef struct {
  const char *name;
  int ndim;
  size_t shape[4];
  size_t numel;
  float *data;
  float *grad;
  gboolean frozen;
} GptdNnTensor;

/* ------------------------------------------------------------------------ */
/* The model                                                                */

/**
 * GptdGpt:
 *
 * A GPT-2 model: one contiguous parameter buffer, a gradient buffer for the
 * parameters from the first unfrozen one to the end, and activation buffers
 * planned per (batch, context) and reused.
 * A model is not thread-safe; use one per thread.
 */
typedef struct _GptdGpt GptdGpt;

/**
 * gptd_gpt_new:
 * @config: the configuration (copied).
 * @error: return location for a #GError.
 *
 * Creates a model with all parameters zero (LayerNorm weights one).  Fill it
 * with gptd_gpt_init_weights() or by writing the tensors' data.
 *
 * Returns: (transfer full): the model, or NULL with %GPTD_NN_ERROR_CONFIG or
 *   %GPTD_NN_ERROR_NO_MEMORY.
 */
GptdGpt *gptd_gpt_new (const GptdGptConfig *config, GError **error);

/**
 * gptd_gpt_free:
 * @model: (nullable): a model.
 *
 * Frees the model and all its buffers.
 */
void gptd_gpt_free (GptdGpt *model);

/**
 * gptd_gpt_get_config:
 * @model: a model.
 *
 * Returns: (transfer none): the model's configuration.
 */
const GptdGptConfig *gptd_gpt_get_config (const GptdGpt *model);

/**
 * gptd_gpt_init_weights:
 * @model: a model.
 * @seed: random seed.
 *
 * GPT-2 initialisation: weights and embeddings normal(0, 0.02), the two
 * residual output projections normal(0, 0.02/sqrt(2 n_layer)), biases zero,
 * LayerNorm weight one and bias zero.  The same seed gives the same weights.
 */
void gptd_gpt_init_weights (GptdGpt *model, guint64 seed);

/**
 * gptd_gpt_n_params:
 * @model: a model.
 *
 * Returns: the number of float parameters (the length of the parameter and
 *   gradient buffers).
 */
size_t gptd_gpt_n_params (const GptdGpt *model);

/**
 * gptd_gpt_get_params:
 * @model: a model.
 *
 * Returns: (transfer none): the contiguous parameter buffer.
 */
float *gptd_gpt_get_params (GptdGpt *model);

/**
 * gptd_gpt_get_grads:
 * @model: a model.
 *
 * Returns: (transfer none) (nullable): the contiguous gradient buffer, laid
 *   out as the parameters from gptd_gpt_get_grads_offset() to the end (the
 *   whole parameter buffer when nothing is frozen); NULL only when it could
 *   not be allocated.
 */
float *gptd_gpt_get_grads (GptdGpt *model);

/**
 * gptd_gpt_get_grads_offset:
 * @model: a model.
 *
 * Returns: the parameter index the gradient buffer starts at: the offset of
 *   the first unfrozen tensor (0 when nothing is frozen; the number of
 *   parameters when everything is).
 */
size_t gptd_gpt_get_grads_offset (const GptdGpt *model);

/**
 * gptd_gpt_n_tensors:
 * @model: a model.
 *
 * Returns: the number of parameter tensors.
 */
guint gptd_gpt_n_tensors (const GptdGpt *model);

/**
 * gptd_gpt_get_tensor:
 * @model: a model.
 * @index: 0 <= @index < gptd_gpt_n_tensors().
 *
 * Tensors come in buffer order: wte, wpe, each block's tensors in the order of
 * the table at the top of this header, ln_f, then the head.
 *
 * Returns: (transfer none): a view of the tensor.
 */
const GptdNnTensor *gptd_gpt_get_tensor (const GptdGpt *model, guint index);

/**
 * gptd_gpt_lookup_tensor:
 * @model: a model.
 * @name: a Hugging Face name without the "transformer." prefix.
 *
 * Returns: (transfer none) (nullable): the tensor, or NULL if the model has
 *   no such tensor.
 */
const GptdNnTensor *gptd_gpt_lookup_tensor (const GptdGpt *model,
                                            const char *name);

/**
 * gptd_gpt_set_frozen:
 * @model: a model.
 * @pattern: a glob (GPatternSpec: `*` and `?`) matched against whole names,
 *   e.g. "*" or "h.11.*" or "ln_f.*".
 * @frozen: TRUE to freeze, FALSE to unfreeze.
 *
 * Frozen parameters get no gradient (backward skips their weight products)
 * and are left alone by AdamW and clipping.  Backward stops early below the
 * lowest block that still needs gradients, and forwards keep no activations
 * of the blocks below it (those share one scratch set).  Gradients exist only
 * from the first unfrozen tensor (in buffer order) to the end: when that
 * range changes the gradient buffer is replaced by a zeroed one.  Set the
 * frozen tensors before creating the optimizer (gptd_adamw_new() keeps
 * moments for the tensors unfrozen then) and before the forward whose
 * backward follows.  With a tied head, freezing wte.weight freezes the head
 * too.
 *
 * Returns: the number of tensors the pattern matched.
 */
guint gptd_gpt_set_frozen (GptdGpt *model, const char *pattern,
                           gboolean frozen);

/**
 * gptd_gpt_add_lora:
 * @model: a model without adapters, with float32 weights.
 * @rank: the adapters' rank r, 1 <= @rank <= n_embd.
 * @alpha: the adapters' alpha; their output is scaled by @alpha / @rank (as
 *   PEFT's LoRA does; the book's appendix E scales by alpha alone).
 * @seed: seed of the adapters' initial A.
 * @error: return location for a #GError.
 *
 * Adds a low-rank adapter (LoRA) to each of the four linear layers of every
 * block: "h.N.attn.c_attn", "h.N.attn.c_proj", "h.N.mlp.c_fc" and
 * "h.N.mlp.c_proj" get tensors "<layer>.lora_A" [in, r] and "<layer>.lora_B"
 * [r, out], after every base tensor in buffer order.  A linear layer then
 * computes x W + b + (alpha / r) (x A) B.  A starts uniform in
 * [-1/sqrt(r), 1/sqrt(r)] (torch's kaiming_uniform_ with a = sqrt(5) on a
 * [in, r] tensor, as in the book) and B at zero, so the model's outputs do
 * not change.  The adapters start unfrozen and the rest keeps its frozen
 * state: freeze the base with gptd_gpt_set_frozen() before creating the
 * optimizer.  Parameter and gradient buffers are replaced (pointers taken
 * before are stale).  KV-cache decoding refuses a model with adapters:
 * merge them first.
 *
 * Returns: FALSE with %GPTD_NN_ERROR_CONFIG for a bad rank or alpha,
 *   %GPTD_NN_ERROR_STATE when the model already has adapters or converted
 *   weights, %GPTD_NN_ERROR_NO_MEMORY.
 */
gboolean gptd_gpt_add_lora (GptdGpt *model, int rank, float alpha,
                            guint64 seed, GError **error);

/**
 * gptd_gpt_get_lora_rank:
 * @model: a model.
 *
 * Returns: the adapters' rank, 0 when the model has none.
 */
int gptd_gpt_get_lora_rank (const GptdGpt *model);

/**
 * gptd_gpt_get_lora_alpha:
 * @model: a model.
 *
 * Returns: the adapters' alpha, 0 when the model has none.
 */
float gptd_gpt_get_lora_alpha (const GptdGpt *model);

/**
 * gptd_gpt_merge_lora:
 * @model: a model.
 * @error: return location for a #GError.
 *
 * Folds each adapter into its base weight, W += (alpha / r) A B (W is
 * Conv1D's input-major [in, out], so no transpose), and removes the adapter
 * tensors: the model becomes a plain GPT-2 model with the same outputs (up
 * to rounding).  Buffers are replaced; an optimizer made before no longer
 * fits.  Nothing happens to a model without adapters.
 *
 * Returns: FALSE with %GPTD_NN_ERROR_NO_MEMORY.
 */
gboolean gptd_gpt_merge_lora (GptdGpt *model, GError **error);

/**
 * GptdGptForwardFlags:
 * @GPTD_GPT_FORWARD_NONE: evaluation: no dropout; activations needed by
 *   backward are still kept.
 * @GPTD_GPT_FORWARD_TRAIN: training: dropout on (when the config has it).
 * @GPTD_GPT_FORWARD_LAST_ONLY: compute the final LayerNorm, the head, the
 *   logits and the loss only at the last position of each sequence.  Logits
 *   are then (B, 1, n_out) and targets has B entries.
 *
 * Options of gptd_gpt_forward().
 */
typedef enum {
  GPTD_GPT_FORWARD_NONE = 0,
  GPTD_GPT_FORWARD_TRAIN = 1 << 0,
  GPTD_GPT_FORWARD_LAST_ONLY = 1 << 1,
} GptdGptForwardFlags;

/**
 * gptd_gpt_forward:
 * @model: a model.
 * @tokens: (B, T) token ids, row-major.
 * @targets: (nullable): (B, T) target ids, or (B) with
 *   %GPTD_GPT_FORWARD_LAST_ONLY; %GPTD_NN_IGNORE_INDEX leaves a position out
 *   of the loss.  NULL computes logits only.
 * @B: batch size, >= 1.
 * @T: sequence length, 1 <= @T <= context_length.
 * @flags: #GptdGptForwardFlags.
 * @loss: (out) (optional): mean cross-entropy over the counted positions
 *   (NaN when no position counts); untouched when @targets is NULL.
 * @error: return location for a #GError.
 *
 * Runs the model.  Buffers are planned for the largest (B, T) seen so far and
 * reused.  The logits stay readable through gptd_gpt_get_logits() until the
 * next forward or backward (backward reuses their memory for their gradient).
 *
 * Returns: FALSE with %GPTD_NN_ERROR_INPUT for a token or target out of range
 *   or a bad (B, T), %GPTD_NN_ERROR_NO_MEMORY when the buffers cannot grow.
 */
gboolean gptd_gpt_forward (GptdGpt *model, const gint32 *tokens,
                           const gint32 *targets, int B, int T,
                           GptdGptForwardFlags flags, float *loss,
                           GError **error);

/**
 * gptd_gpt_forward_pooled:
 * @model: a model.
 * @tokens: (B, T) token ids, row-major.
 * @positions: (B) the position of each row whose hidden state the head
 *   reads, 0 <= positions[b] < @T (the last real token of a padded row).
 * @targets: (nullable): (B) target ids; %GPTD_NN_IGNORE_INDEX leaves a row
 *   out of the loss.  NULL computes logits only.
 * @B: batch size, >= 1.
 * @T: sequence length, 1 <= @T <= context_length.
 * @flags: #GptdGptForwardFlags; %GPTD_GPT_FORWARD_LAST_ONLY is implied.
 * @loss: (out) (optional): mean cross-entropy over the counted rows.
 * @error: return location for a #GError.
 *
 * As gptd_gpt_forward() with %GPTD_GPT_FORWARD_LAST_ONLY, but the final
 * LayerNorm, the head and the loss of row b are computed at positions[b]
 * instead of at @T - 1; gptd_gpt_backward() follows the same positions.
 * This is a classifier's last-token pooling over right-padded rows.
 *
 * Returns: FALSE with %GPTD_NN_ERROR_INPUT for a position outside [0, @T)
 *   or any error of gptd_gpt_forward().
 */
gboolean gptd_gpt_forward_pooled (GptdGpt *model, const gint32 *tokens,
                                  const gint32 *positions,
                                  const gint32 *targets, int B, int T,
                                  GptdGptForwardFlags flags, float *loss,
                                  GError **error);

/**
 * gptd_gpt_get_logits:
 * @model: a model after gptd_gpt_forward().
 * @B: (out) (optional): batch size of that forward.
 * @T: (out) (optional): positions per sequence in the logits (T, or 1 with
 *   %GPTD_GPT_FORWARD_LAST_ONLY).
 * @V: (out) (optional): logits per position (n_out).
 *
 * Returns: (transfer none) (nullable): the (B, T, V) logits, or NULL when
 *   there was no forward or a backward has consumed them.
 */
const float *gptd_gpt_get_logits (const GptdGpt *model, int *B, int *T,
                                  int *V);

/**
 * gptd_gpt_backward:
 * @model: a model after a forward with targets.
 * @loss_scale: multiplies the gradient (1 for one batch; 1/k to average k
 *   accumulated micro-batches).
 * @error: return location for a #GError.
 *
 * Adds loss_scale * d(loss)/d(parameter) to the gradient buffer of every
 * parameter that is not frozen.  Call gptd_gpt_zero_grad() before the first
 * micro-batch of a step.
 *
 * Returns: FALSE with %GPTD_NN_ERROR_STATE when the last forward had no
 *   targets or no counted position, or when tensors below the lowest block
 *   that forward kept were unfrozen since; %GPTD_NN_ERROR_NO_MEMORY when the
 *   gradient buffer could not be allocated.
 */
gboolean gptd_gpt_backward (GptdGpt *model, float loss_scale, GError **error);

/**
 * GptdGptBackwardHook:
 * @model: the model whose backward is running.
 * @block: the block whose gradients are now final (n_layer - 1 down to the
 *   lowest trainable block), or -1 when the whole backward is done.
 * @user_data: the data given to gptd_gpt_set_backward_hook().
 *
 * Lets a caller start work on gradients that are ready while backward goes on
 * (a data-parallel trainer starts averaging a block's gradients across
 * processes).  The hook runs on the calling thread, between blocks.
 */
typedef void (*GptdGptBackwardHook) (GptdGpt *model, int block, gpointer user_data);

/**
 * gptd_gpt_set_backward_hook:
 * @model: a model.
 * @hook: (nullable): called after each block's backward and at the end.
 * @user_data: passed to @hook.
 *
 * Sets (or with NULL removes) the hook gptd_gpt_backward() calls.
 */
void gptd_gpt_set_backward_hook (GptdGpt *model, GptdGptBackwardHook hook,
                                 gpointer user_data);

/**
 * gptd_gpt_set_dropout_stream:
 * @model: a model.
 * @stream: 0 (the default) for the masks of the model's seed and counter; any
 *   other number for another, independent stream of masks from the same seed
 *   and counter.
 *
 * Data-parallel training gives each process (rank) its own stream, so that
 * the ranks' shares of a batch are not dropped out alike.  Not saved with the
 * model: the random state (gptd_gpt_get_rng()) stays the seed's.
 */
void gptd_gpt_set_dropout_stream (GptdGpt *model, guint64 stream);

/**
 * gptd_gpt_get_loss_count:
 * @model: a model after a forward with targets.
 *
 * Returns: the number of target positions the last forward's mean loss was
 *   taken over (those not ignored); 0 without targets.
 */
size_t gptd_gpt_get_loss_count (const GptdGpt *model);

/**
 * gptd_gpt_zero_grad:
 * @model: a model.
 *
 * Sets the whole gradient buffer (every gradient that exists) to zero.
 */
void gptd_gpt_zero_grad (GptdGpt *model);

/**
 * gptd_gpt_clip_grad_norm:
 * @model: a model.
 * @max_norm: largest allowed global L2 norm; <= 0 or infinity only measures.
 *
 * Scales the gradients of all unfrozen parameters by
 * max_norm / (norm + 1e-6) when their global L2 norm exceeds @max_norm, as
 * torch.nn.utils.clip_grad_norm_ does.
 *
 * Returns: the global norm before clipping.
 */
float gptd_gpt_clip_grad_norm (GptdGpt *model, float max_norm);

/**
 * GptdRngState:
 * @seed: the seed.
 * @counter: how many dropout masks have been drawn since seeding.
 *
 * The dropout random state.  Masks are a pure function of (seed, counter,
 * element index), so they do not depend on the thread count, and saving and
 * restoring these two integers resumes the same sequence.
 */
typedef struct {
  guint64 seed;
  guint64 counter;
} GptdRngState;

/**
 * gptd_gpt_get_rng:
 * @model: a model.
 * @state: (out caller-allocates): the current state.
 *
 * Reads the dropout random state.
 */
void gptd_gpt_get_rng (const GptdGpt *model, GptdRngState *state);

/**
 * gptd_gpt_set_rng:
 * @model: a model.
 * @state: a state from gptd_gpt_get_rng() or {seed, 0}.
 *
 * Sets the dropout random state.  New models start at {0, 0}.
 */
void gptd_gpt_set_rng (GptdGpt *model, const GptdRngState *state);

/* ------------------------------------------------------------------------ */
/* KV-cache inference                                                       */

/**
 * GptdGptKvCache:
 *
 * Keys and values of every layer for one sequence (batch 1), so that each
 * new token costs one position's work.
 */
typedef struct _GptdGptKvCache GptdGptKvCache;

/**
 * gptd_gpt_kv_cache_new:
 * @model: the model the cache serves.
 * @max_length: most positions it holds; 0 means context_length.
 * @error: return location for a #GError.
 *
 * Returns: (transfer full): an empty cache, or NULL with
 *   %GPTD_NN_ERROR_CONFIG when @max_length exceeds the context.
 */
GptdGptKvCache *gptd_gpt_kv_cache_new (GptdGpt *model, int max_length,
                                       GError **error);

/**
 * gptd_gpt_kv_cache_free:
 * @cache: (nullable): a cache.
 */
void gptd_gpt_kv_cache_free (GptdGptKvCache *cache);

/**
 * gptd_gpt_kv_cache_reset:
 * @cache: a cache.
 *
 * Empties the cache (a new sequence starts at position 0).
 */
void gptd_gpt_kv_cache_reset (GptdGptKvCache *cache);

/**
 * gptd_gpt_kv_cache_get_length:
 * @cache: a cache.
 *
 * Returns: the number of positions cached so far.
 */
int gptd_gpt_kv_cache_get_length (const GptdGptKvCache *cache);

/**
 * gptd_gpt_forward_cached:
 * @model: the model the cache was made for.
 * @cache: its cache.
 * @tokens: @n_tokens new token ids (a whole prompt, or one token).
 * @n_tokens: >= 1; the cache must have room for them.
 * @error: return location for a #GError.
 *
 * Appends the tokens to the sequence (positions continue from the cache
 * length) and returns the logits of the last new token, equal to those of a
 * full gptd_gpt_forward() over the whole sequence.  No dropout.  When the
 * cache is full, a generator that slides its window resets the cache and
 * feeds the last tokens again, since positions are absolute.
 *
 * Returns: (transfer none): n_out logits valid until the next call on this
 *   cache, or NULL with %GPTD_NN_ERROR_STATE (cache full) or
 *   %GPTD_NN_ERROR_INPUT (bad token).
 */
const float *gptd_gpt_forward_cached (GptdGpt *model, GptdGptKvCache *cache,
                                      const gint32 *tokens, int n_tokens,
                                      GError **error);

/**
 * GptdGptDecodeBatch:
 *
 * Scratch for decoding several sequences together: each step feeds one new
 * token of each of up to max_rows sequences, every sequence in a KV cache of
 * its own (its own position and length), reading each weight of the model once
 * for all of them.  Decoding is bound by the memory bandwidth of reading the
 * weights, so a step of several rows costs little more than one of one row.
 */
typedef struct _GptdGptDecodeBatch GptdGptDecodeBatch;

/**
 * gptd_gpt_decode_batch_new:
 * @model: the model (float32, bf16 or q8 weights); not owned, it must
 *   outlive the batch.
 * @max_rows: the most sequences one step takes, >= 1.
 * @error: return location for a #GError.
 *
 * Returns: (transfer full): scratch for gptd_gpt_forward_batch(), or NULL with
 *   %GPTD_NN_ERROR_CONFIG (bad @max_rows) or %GPTD_NN_ERROR_NO_MEMORY.
 */
GptdGptDecodeBatch *gptd_gpt_decode_batch_new (GptdGpt *model, int max_rows,
                                               GError **error);

/**
 * gptd_gpt_decode_batch_free:
 * @batch: (nullable): a batch.
 */
void gptd_gpt_decode_batch_free (GptdGptDecodeBatch *batch);

/**
 * gptd_gpt_forward_batch:
 * @batch: scratch made for the model of every cache.
 * @caches: (array length=n): @n distinct caches of that model, each with room
 *   for one more position.
 * @tokens: (array length=n): the next token of each cache's sequence.
 * @n: 1 to the batch's max_rows.
 * @error: return location for a #GError.
 *
 * One decoding step of @n sequences: appends tokens[i] to caches[i] and
 * computes its logits.  Row i's logits are bitwise those that
 * gptd_gpt_forward_cached() gives for the one token on caches[i] alone, with
 * the same number of threads: each output is summed in the same order whatever
 * the rows, so a sequence decodes to exactly the same tokens alone or in any
 * batch.
 *
 * Returns: (transfer none): (n, n_out) logits, row i for caches[i], valid
 *   until the next step on @batch; or NULL with %GPTD_NN_ERROR_STATE (a cache
 *   full, of another model or given twice), %GPTD_NN_ERROR_INPUT (a bad
 *   token), %GPTD_NN_ERROR_CONFIG (@n out of range) or
 *   %GPTD_NN_ERROR_NO_MEMORY.  Nothing is appended on error.
 */
const float *gptd_gpt_forward_batch (GptdGptDecodeBatch *batch,
                                     GptdGptKvCache *const *caches,
                                     const gint32 *tokens, int n,
                                     GError **error);

/* ------------------------------------------------------------------------ */
/* AdamW                                                                    */

/**
 * GptdAdamWParams:
 * @beta1: first-moment decay (0.9).
 * @beta2: second-moment decay (0.999).
 * @eps: denominator epsilon (1e-8).
 * @weight_decay: decoupled weight decay (0.1 in the book; PyTorch's default
 *   is 0.01).
 * @decay_1d: whether 1-D tensors (biases, LayerNorm) decay too.  TRUE
 *   matches torch.optim.AdamW(model.parameters()) as the book uses it.
 *
 * AdamW hyper-parameters.  The learning rate is passed to each step.
 */
typedef struct {
  float beta1;
  float beta2;
  float eps;
  float weight_decay;
  gboolean decay_1d;
} GptdAdamWParams;

/**
 * gptd_adamw_params_init:
 * @params: (out caller-allocates): filled with the defaults above.
 */
void gptd_adamw_params_init (GptdAdamWParams *params);

/**
 * GptdAdamW:
 *
 * AdamW state for one model: step count and first and second moments of the
 * parameters that were unfrozen when it was created (PyTorch keeps none for
 * parameters with requires_grad=False either).
 */
typedef struct _GptdAdamW GptdAdamW;

/**
 * gptd_adamw_new:
 * @model: the model it will update (its tensor list is used for names).
 * @params: hyper-parameters (copied).
 * @error: return location for a #GError.
 *
 * Moments are kept for the tensors that are unfrozen now; a tensor unfrozen
 * later is not updated by this optimizer.
 *
 * Returns: (transfer full): the optimizer with zero moments at step 0, or
 *   NULL with %GPTD_NN_ERROR_NO_MEMORY.
 */
GptdAdamW *gptd_adamw_new (GptdGpt *model, const GptdAdamWParams *params,
                           GError **error);

/**
 * gptd_adamw_free:
 * @opt: (nullable): an optimizer.
 */
void gptd_adamw_free (GptdAdamW *opt);

/**
 * gptd_adamw_get_params:
 * @opt: an optimizer.
 *
 * Returns: (transfer none): its hyper-parameters (writable: change them
 *   between steps if needed).
 */
GptdAdamWParams *gptd_adamw_get_params (GptdAdamW *opt);

/**
 * gptd_adamw_step:
 * @opt: an optimizer.
 * @model: the model it was made for.
 * @lr: learning rate of this step.
 *
 * Increments the step and, for every unfrozen parameter p with gradient g:
 * p -= lr*wd*p; m = b1 m + (1-b1) g; v = b2 v + (1-b2) g^2;
 * p -= lr * (m / (1-b1^t)) / (sqrt(v / (1-b2^t)) + eps), as torch.optim.AdamW.
 * The gradients are not cleared.
 */
void gptd_adamw_step (GptdAdamW *opt, GptdGpt *model, float lr);

/**
 * gptd_adamw_step_clipped:
 * @opt: an optimizer.
 * @model: the model it was made for.
 * @lr: learning rate of this step.
 * @max_norm: largest allowed global gradient norm (<= 0: no clipping).
 *
 * The same update as gptd_gpt_clip_grad_norm() followed by
 * gptd_adamw_step(), bit for bit, but the clipping factor is applied inside
 * the update, which saves a pass over the gradients.  The gradient buffer
 * keeps its unclipped values.
 *
 * Returns: the global gradient norm before clipping.
 */
float gptd_adamw_step_clipped (GptdAdamW *opt, GptdGpt *model, float lr,
                               float max_norm);

/**
 * gptd_adamw_new_shard:
 * @model: the model.
 * @params: hyperparameters (copied).
 * @begin: the first trainable parameter of the shard, counted over the
 *   trainable (unfrozen) tensors packed in order.
 * @end: one past its last.
 * @error: return location for a #GError.
 *
 * An optimizer that keeps the moments of the trainable parameters
 * @begin .. @end - 1 only and whose steps update only them (ZeRO-1: each
 * process of a data-parallel group updates its shard).  Each element is
 * updated bit for bit as a whole optimizer updates it.  A shard has no named
 * tensors and is not saved by itself: gather the moments into a whole
 * optimizer (gptd_adamw_get_moments()) to checkpoint.
 *
 * Returns: (transfer full) (nullable): the shard, or NULL with
 *   %GPTD_NN_ERROR_CONFIG when the range lies beyond the trainable parameters.
 */
GptdAdamW *gptd_adamw_new_shard (GptdGpt *model, const GptdAdamWParams *params,
                                 size_t begin, size_t end, GError **error);

/**
 * gptd_adamw_get_moments:
 * @opt: an optimizer.
 * @v: (out) (optional): the second moments.
 * @begin: (out) (optional): the packed position of the first moment (0 for a
 *   whole optimizer).
 * @n: (out) (optional): how many moments each buffer holds.
 *
 * Returns: (transfer none): the first moments.
 */
float *gptd_adamw_get_moments (GptdAdamW *opt, float **v, size_t *begin, size_t *n);

/**
 * gptd_adamw_get_step:
 * @opt: an optimizer.
 *
 * Returns: the number of steps taken.
 */
gint64 gptd_adamw_get_step (const GptdAdamW *opt);

/**
 * gptd_adamw_set_step:
 * @opt: an optimizer.
 * @step: steps taken (when restoring a training state).
 */
void gptd_adamw_set_step (GptdAdamW *opt, gint64 step);

/**
 * gptd_adamw_n_tensors:
 * @opt: an optimizer.
 *
 * Returns: the number of state tensors (two per parameter tensor that was
 *   unfrozen when the optimizer was created).
 */
guint gptd_adamw_n_tensors (const GptdAdamW *opt);

/**
 * gptd_adamw_get_tensor:
 * @opt: an optimizer.
 * @index: 0 <= @index < gptd_adamw_n_tensors().
 *
 * The first moments come first ("adamw.m." + parameter name), then the second
 * moments ("adamw.v." + name), in parameter order.  Writing their data is
 * how a saved state is restored.
 *
 * Returns: (transfer none): a view of the state tensor (grad is NULL).
 */
const GptdNnTensor *gptd_adamw_get_tensor (const GptdAdamW *opt, guint index);

/**
 * gptd_adamw_lookup_tensor:
 * @opt: an optimizer.
 * @name: a state tensor name such as "adamw.v.wte.weight".
 *
 * Returns: (transfer none) (nullable): the tensor or NULL.
 */
const GptdNnTensor *gptd_adamw_lookup_tensor (const GptdAdamW *opt,
                                              const char *name);

/* ------------------------------------------------------------------------ */
/* Learning-rate schedules                                                  */

/**
 * GptdLrScheduleKind:
 * @GPTD_LR_CONSTANT: peak_lr at every step.
 * @GPTD_LR_WARMUP_COSINE: linear warmup from initial_lr to peak_lr over
 *   warmup_steps, then cosine decay to min_lr at total_steps (the book's
 *   appendix D).
 *
 * Kinds of learning-rate schedule.
 */
typedef enum {
  GPTD_LR_CONSTANT,
  GPTD_LR_WARMUP_COSINE,
} GptdLrScheduleKind;

/**
 * GptdLrSchedule:
 * @kind: the kind.
 * @peak_lr: the learning rate after warmup.
 * @initial_lr: the learning rate at step 0 of the warmup.
 * @min_lr: the floor of the cosine decay.
 * @warmup_steps: warmup length in steps.
 * @total_steps: steps in the whole run.
 *
 * A learning-rate schedule.
 */
typedef struct {
  GptdLrScheduleKind kind;
  float peak_lr;
  float initial_lr;
  float min_lr;
  gint64 warmup_steps;
  gint64 total_steps;
} GptdLrSchedule;

/**
 * gptd_lr_schedule_get:
 * @schedule: a schedule.
 * @step: the step index, counted from 0.
 *
 * For warmup-cosine: step < warmup gives
 * initial + step * (peak - initial) / warmup; later steps give
 * min + (peak - min) * 0.5 * (1 + cos(pi * progress)) with
 * progress = (step - warmup) / (total - warmup), clamped to [0, 1].
 *
 * Returns: the learning rate for @step.
 */
float gptd_lr_schedule_get (const GptdLrSchedule *schedule, gint64 step);

G_DEFINE_AUTOPTR_CLEANUP_FUNC (GptdGpt, gptd_gpt_free)
G_DEFINE_AUTOPTR_CLEANUP_FUNC (GptdGptKvCache, gptd_gpt_kv_cache_free)
G_DEFINE_AUTOPTR_CLEANUP_FUNC (GptdGptDecodeBatch, gptd_gpt_decode_batch_free)
G_DEFINE_AUTOPTR_CLEANUP_FUNC (GptdAdamW, gptd_adamw_free)

G_END_DECLS
