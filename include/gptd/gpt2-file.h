/* gptd/gpt2-file.h: GPT-2 model directories, training state files and
 * crash-safe checkpoints.
 *
 * A model directory is laid out as Hugging Face lays out GPT-2, so that
 * OpenAI's released weights load as they are and gptd's own models can be
 * read by other tools:
 *
 *   config.json        GPT2Config keys (n_layer, n_head, n_embd, n_positions,
 *                      vocab_size, layer_norm_epsilon, ...) plus gptd's own
 *                      (qkv_bias, head_bias, n_out, dropout)
 *   model.safetensors  the parameters under Hugging Face's GPT-2 names (see
 *                      gptd/nn.h), F32 (F16, BF16 and F64 are converted on load)
 *   vocab.json         the tokenizer's vocabulary (GPT-2's encoder.json)
 *   merges.txt         its merges (GPT-2's vocab.bpe)
 *
 * Training state goes to a second file, training_state.safetensors: the AdamW
 * moments under the optimizer's tensor names ("adamw.m.NAME", "adamw.v.NAME")
 * and, as "__metadata__" strings, the step, the dropout RNG state, the data
 * position, the AdamW hyper-parameters and any caller hyper-parameters.
 *
 * A checkpoint root holds one complete model directory per saved step and a
 * small checkpoint.json naming the latest complete one; see
 * gptd_checkpoint_save() for why a crash at any moment leaves either the old
 * or the new checkpoint loadable.
 *
 * Every file is written atomically and durably (gptd/atomic-file.h) and every
 * file read is validated before use; errors name the file, the key or the
 * tensor.
 */
#pragma once

#include <glib.h>
#include <gptd/nn.h>
#include <json-glib/json-glib.h>

G_BEGIN_DECLS

/**
 * GPTD_GPT_FILE_ERROR:
 *
 * Error domain of model directories, training state and checkpoints. Errors
 * from reading safetensors files come in %GPTD_SAFETENSORS_ERROR, errors from
 * writing files in %G_FILE_ERROR and errors from the model configuration in
 * %GPTD_NN_ERROR.
 */
#define GPTD_GPT_FILE_ERROR (gptd_gpt_file_error_quark ())

/**
 * gptd_gpt_file_error_quark:
 *
 * Returns: the quark of %GPTD_GPT_FILE_ERROR.
 */
GQuark gptd_gpt_file_error_quark (void);

/**
 * GptdGptFileError:
 * @GPTD_GPT_FILE_ERROR_IO: a file or directory cannot be read or created
 * @GPTD_GPT_FILE_ERROR_CONFIG: config.json is not valid JSON, lacks a
 *   required key, has a key of the wrong type, or describes a model gptd
 *   cannot run (the message names the key)
 * @GPTD_GPT_FILE_ERROR_MISSING: a tensor the configuration needs is not stored
 * @GPTD_GPT_FILE_ERROR_UNEXPECTED: a stored tensor is not part of the model
 * @GPTD_GPT_FILE_ERROR_SHAPE: a stored tensor's shape differs from the one the
 *   configuration gives it
 * @GPTD_GPT_FILE_ERROR_STATE: a training state file does not fit the model
 *   or optimizer, or its metadata is missing or malformed
 * @GPTD_GPT_FILE_ERROR_CHECKPOINT: checkpoint.json is missing or malformed,
 *   or names a directory that does not exist
 * @GPTD_GPT_FILE_ERROR_NOT_FINITE: a stored parameter is NaN or infinite
 *
 * Error codes of %GPTD_GPT_FILE_ERROR.
 */
typedef enum {
  GPTD_GPT_FILE_ERROR_IO,
  GPTD_GPT_FILE_ERROR_CONFIG,
  GPTD_GPT_FILE_ERROR_MISSING,
  GPTD_GPT_FILE_ERROR_UNEXPECTED,
  GPTD_GPT_FILE_ERROR_SHAPE,
  GPTD_GPT_FILE_ERROR_STATE,
  GPTD_GPT_FILE_ERROR_CHECKPOINT,
  GPTD_GPT_FILE_ERROR_NOT_FINITE,
} GptdGptFileError;

/** GPTD_GPT_DIR_CONFIG: the configuration file of a model directory. */
#define GPTD_GPT_DIR_CONFIG "config.json"
/** GPTD_GPT_DIR_WEIGHTS: the parameter file of a model directory. */
#define GPTD_GPT_DIR_WEIGHTS "model.safetensors"
/** GPTD_GPT_DIR_VOCAB: the tokenizer vocabulary (GPT-2's encoder.json). */
#define GPTD_GPT_DIR_VOCAB "vocab.json"
/** GPTD_GPT_DIR_MERGES: the tokenizer merges (GPT-2's vocab.bpe). */
#define GPTD_GPT_DIR_MERGES "merges.txt"
/** GPTD_GPT_DIR_TRAINING_STATE: the training state beside a model. */
#define GPTD_GPT_DIR_TRAINING_STATE "training_state.safetensors"
/** GPTD_GPT_DIR_ADAPTER_CONFIG: a LoRA adapter directory's PEFT config. */
#define GPTD_GPT_DIR_ADAPTER_CONFIG "adapter_config.json"
/** GPTD_GPT_DIR_ADAPTER_WEIGHTS: a LoRA adapter directory's tensors. */
#define GPTD_GPT_DIR_ADAPTER_WEIGHTS "adapter_model.safetensors"
/** GPTD_CHECKPOINT_INDEX: the file naming the latest checkpoint of a root. */
#define GPTD_CHECKPOINT_INDEX "checkpoint.json"

/* ------------------------------------------------------------------------ */
/* config.json                                                              */

/**
 * GptdGptConfigExplicit:
 * @GPTD_GPT_CONFIG_EXPLICIT_QKV_BIAS: config.json has "qkv_bias"
 * @GPTD_GPT_CONFIG_EXPLICIT_TIE: config.json has "tie_word_embeddings"
 * @GPTD_GPT_CONFIG_EXPLICIT_HEAD_BIAS: config.json has "head_bias"
 *
 * Which model options a config.json states rather than leaves to defaults
 * (gptd_gpt_dir_load() infers those from the stored tensors).
 */
typedef enum {
  GPTD_GPT_CONFIG_EXPLICIT_QKV_BIAS = 1 << 0,
  GPTD_GPT_CONFIG_EXPLICIT_TIE = 1 << 1,
  GPTD_GPT_CONFIG_EXPLICIT_HEAD_BIAS = 1 << 2,
} GptdGptConfigExplicit;

/**
 * gptd_gpt_config_is_classifier:
 * @config: a parsed config.json (its root object)
 *
 * Whether @config describes a sequence classifier: its architectures name
 * GPT2ForSequenceClassification, or it has num_labels. The loaders, the
 * serving worker and the HTTP gateway all tell the two kinds apart by it.
 *
 * Returns: %TRUE for a classifier, %FALSE for a language model
 */
gboolean gptd_gpt_config_is_classifier (JsonObject *config);

/**
 * gptd_gpt_config_from_json:
 * @json: the text of a config.json
 * @length: its length, or -1 when NUL-terminated
 * @filename: (nullable): the file name to put in error messages
 * @config: (out caller-allocates): the configuration
 * @explicit_flags: (out) (optional): the #GptdGptConfigExplicit flags of
 *   the options the file states; the others got their defaults
 * @error: return location for a #GError
 *
 * Parses Hugging Face GPT2Config keys: n_layer, n_head, n_embd, vocab_size
 * (required), n_positions (or n_ctx; required), layer_norm_epsilon (default
 * 1e-5), tie_word_embeddings (default true), n_inner (null or 4 * n_embd),
 * activation_function (a tanh GELU: "gelu_new", "gelu_pytorch_tanh" or
 * "gelu_fast"), model_type ("gpt2") and resid_pdrop / embd_pdrop / attn_pdrop;
 * and gptd's keys qkv_bias (default true, as GPT-2), head_bias (default
 * false), n_out (default vocab_size) and dropout (default resid_pdrop, else
 * 0.1). Other keys are ignored. The result is checked with
 * gptd_gpt_config_validate().
 *
 * Returns: %TRUE on success; %GPTD_GPT_FILE_ERROR_CONFIG naming the key, or
 *   %GPTD_NN_ERROR_CONFIG from the validation
 */
gboolean gptd_gpt_config_from_json (const char    *json,
                                    gssize         length,
                                    const char    *filename,
                                    GptdGptConfig *config,
                                    guint         *explicit_flags,
                                    GError       **error);

/**
 * gptd_gpt_config_to_json:
 * @config: a configuration
 *
 * Formats @config as a config.json that both gptd and Hugging Face
 * transformers read (model_type "gpt2", architectures, the GPT2Config keys
 * and gptd's keys).
 *
 * Returns: (transfer full): the JSON text, ending in a newline
 */
char *gptd_gpt_config_to_json (const GptdGptConfig *config);

/**
 * gptd_gpt_config_to_json_classifier:
 * @config: a configuration
 * @labels: (nullable) (array zero-terminated=1): the class names, one per
 *   head row; NULL or a list of another length names them LABEL_i
 * @pooling: (nullable): the pooling the classifier was trained with ("last"
 *   or "last-token"), stored as "pooling"
 * @sequence_length: the length its training rows were padded to, stored as
 *   "sequence_length" (a classifier with pooling "last" must see inputs
 *   padded to it); 0 when unknown, not stored
 *
 * As gptd_gpt_config_to_json(), but a configuration with a separate head of
 * n_out != vocab_size rows is written as Hugging Face's
 * GPT2ForSequenceClassification: architectures, num_labels, id2label and
 * label2id, and gptd's "pooling" (with pad_token_id 50256 for
 * "last-token", which is how Hugging Face pools). Any other configuration
 * gives gptd_gpt_config_to_json()'s text.
 *
 * Returns: (transfer full): the JSON text, ending in a newline
 */
char *gptd_gpt_config_to_json_classifier (const GptdGptConfig *config,
                                          const char *const   *labels,
                                          const char          *pooling,
                                          int                  sequence_length);

/* ------------------------------------------------------------------------ */
/* Model directories                                                        */

/**
 * gptd_gpt_dir_load:
 * @dir: a model directory, or a checkpoint root (a directory with a
 *   checkpoint.json and no config.json), whose latest checkpoint is loaded
 * @error: return location for a #GError
 *
 * Loads a model directory as Hugging Face writes it. config.json gives the
 * shape; model.safetensors must hold exactly the model's tensors. A
 * "transformer." prefix on names is accepted, the "h.N.attn.bias" and
 * "h.N.attn.masked_bias" buffers are ignored, and when config.json does not
 * say tie_word_embeddings the head is tied exactly when no lm_head.weight is
 * stored (likewise qkv_bias follows h.0.attn.c_attn.bias and head_bias
 * lm_head.bias). Everything is checked before any value is copied: a missing
 * tensor, an unexpected one, a wrong shape or a dtype that is not a float
 * each give their own error naming the file and the tensors.
 *
 * A config.json with "lora_rank" and "lora_alpha" (a checkpoint of a LoRA
 * run) gives a model with LoRA adapters (gptd_gpt_add_lora()), whose tensors
 * model.safetensors must hold too.  An adapter directory (adapter_config.json
 * and no model.safetensors, see gptd_gpt_dir_save_adapter()) loads its base
 * model, adds the adapters and the other stored tensors, and merges them: the
 * result is a plain model.
 *
 * Returns: (transfer full): the model, or %NULL with @error set
 */
GptdGpt *gptd_gpt_dir_load (const char *dir, GError **error);

/**
 * gptd_gpt_dir_load_weights:
 * @model: a model
 * @path: a safetensors file
 * @error: return location for a #GError
 *
 * Loads @path into an existing model with the same rules as
 * gptd_gpt_dir_load() (the model's configuration decides whether the head is
 * tied; a stored lm_head.weight equal to wte.weight is accepted for a tied
 * model). On failure @model is unchanged.
 *
 * Returns: %TRUE on success
 */
gboolean gptd_gpt_dir_load_weights (GptdGpt    *model,
                                    const char *path,
                                    GError    **error);

/**
 * gptd_gpt_dir_save:
 * @model: a model
 * @dir: the directory to write (created with its parents if needed)
 * @vocab_json: (nullable): a tokenizer vocabulary (GPT-2's encoder.json) to
 *   copy to vocab.json
 * @merges_txt: (nullable): the tokenizer merges (GPT-2's vocab.bpe) to copy
 *   to merges.txt
 * @error: return location for a #GError
 *
 * Writes model.safetensors (F32, Hugging Face names without a prefix, no
 * lm_head.weight when the head is tied, metadata format "pt"), then
 * config.json, then the tokenizer files, each atomically and durably. A crash
 * during this leaves each file either old or new; use gptd_checkpoint_save()
 * when a whole directory must change at once.
 *
 * Returns: %TRUE on success
 */
gboolean gptd_gpt_dir_save (GptdGpt    *model,
                            const char *dir,
                            const char *vocab_json,
                            const char *merges_txt,
                            GError    **error);

/**
 * gptd_gpt_dir_save_classifier:
 * @model: a model
 * @dir: the directory to write
 * @vocab_json: (nullable): as gptd_gpt_dir_save()
 * @merges_txt: (nullable): as gptd_gpt_dir_save()
 * @labels: (nullable) (array zero-terminated=1): the class names
 * @pooling: (nullable): the pooling, as gptd_gpt_config_to_json_classifier()
 * @sequence_length: the padded training length, as
 *   gptd_gpt_config_to_json_classifier(); 0 when unknown
 * @error: return location for a #GError
 *
 * gptd_gpt_dir_save() for a sequence classifier (a separate head of n_out
 * != vocab_size rows): the head is stored as Hugging Face's score.weight
 * (and score.bias, the book's head bias, which Hugging Face's loader skips
 * with a warning) and config.json is
 * gptd_gpt_config_to_json_classifier()'s. gptd_gpt_dir_load() maps them back.
 * For any other model this is gptd_gpt_dir_save().
 *
 * Returns: %TRUE on success
 */
gboolean gptd_gpt_dir_save_classifier (GptdGpt           *model,
                                       const char        *dir,
                                       const char        *vocab_json,
                                       const char        *merges_txt,
                                       const char *const *labels,
                                       const char        *pooling,
                                       int                sequence_length,
                                       GError           **error);

/**
 * gptd_gpt_dir_save_adapter:
 * @model: a model with LoRA adapters (gptd_gpt_add_lora())
 * @dir: the directory to write (created if needed)
 * @base_dir: the model directory the adapters were trained on, stored as
 *   base_model_name_or_path (relative paths are taken from @dir on loading)
 * @vocab_json: (nullable): a tokenizer vocabulary to copy in
 * @merges_txt: (nullable): tokenizer merges to copy in
 * @labels: (nullable): a classifier's class names (see
 *   gptd_gpt_config_to_json_classifier())
 * @pooling: (nullable): a classifier's pooling
 * @sequence_length: a classifier's padded length, or 0
 * @error: return location for a #GError
 *
 * Writes an adapter directory in PEFT's layout: adapter_config.json (r,
 * lora_alpha, target_modules c_attn/c_proj/c_fc, fan_in_fan_out,
 * base_model_name_or_path), adapter_model.safetensors with each adapter as
 * "base_model.model.transformer.h.N.<layer>.lora_A.weight" [r, in] and
 * "...lora_B.weight" [out, r] plus every unfrozen tensor that is not an
 * adapter (a classifier's new head as "base_model.model.score.weight"), and
 * the adapted model's config.json.  Note that gptd scales by lora_alpha / r
 * as PEFT does.  gptd_gpt_dir_load() reads it back merged.
 *
 * Returns: %TRUE on success; %GPTD_GPT_FILE_ERROR_STATE when @model has no
 *   adapters, %GPTD_GPT_FILE_ERROR_IO or a writer error
 */
gboolean gptd_gpt_dir_save_adapter (GptdGpt           *model,
                                    const char        *dir,
                                    const char        *base_dir,
                                    const char        *vocab_json,
                                    const char        *merges_txt,
                                    const char *const *labels,
                                    const char        *pooling,
                                    int                sequence_length,
                                    GError           **error);

/**
 * gptd_gpt_dir_read_labels:
 * @dir: a model directory
 * @labels: (out) (transfer full) (nullable): the class names in id order
 *   (from id2label), or NULL when config.json has none
 * @pooling: (out) (transfer full) (nullable): config.json's "pooling", or
 *   NULL
 * @error: return location for a #GError
 *
 * Reads a classifier's class names and pooling from @dir's config.json.
 *
 * Returns: %TRUE on success (also when the keys are absent); FALSE with
 *   %GPTD_GPT_FILE_ERROR_CONFIG for an unreadable file or id2label keys
 *   that are not 0..n-1
 */
gboolean gptd_gpt_dir_read_labels (const char *dir,
                                   char     ***labels,
                                   char      **pooling,
                                   GError    **error);

/* ------------------------------------------------------------------------ */
/* Training state                                                           */

/**
 * GptdTrainingInfo:
 * @step: optimizer steps taken in the run
 * @epoch: the epoch of the data position
 * @batch_index: the next batch to read within @epoch
 * @rng: the model's dropout RNG state
 * @hparams: (nullable): further string key/value pairs the caller wants to
 *   keep (learning-rate schedule, batch size, data shuffle seed, ...); on
 *   load, a new table is created when this is %NULL
 *
 * Where a training run stands, beside the model and optimizer tensors.
 * Release with gptd_training_info_clear().
 */
typedef struct {
  gint64       step;
  gint64       epoch;
  gint64       batch_index;
  GptdRngState rng;
  GHashTable  *hparams;
} GptdTrainingInfo;

/**
 * gptd_training_info_clear:
 * @info: a #GptdTrainingInfo
 *
 * Frees the hparams table of @info and zeroes it.
 */
void gptd_training_info_clear (GptdTrainingInfo *info);

/**
 * gptd_training_state_save:
 * @path: the file to write (training_state.safetensors)
 * @model: the model being trained (its RNG is not read; @info carries it)
 * @opt: its optimizer
 * @info: the run's position and hyper-parameters
 * @error: return location for a #GError
 *
 * Writes every AdamW moment tensor under its optimizer name, and as metadata:
 * format "gptd-training-state", version, step, epoch, batch_index, rng_seed,
 * rng_counter, adamw.step, adamw.beta1, adamw.beta2, adamw.eps,
 * adamw.weight_decay, adamw.decay_1d and each hparams entry as
 * "hparams.KEY". Numbers are decimal strings that read back exactly.
 *
 * Returns: %TRUE on success
 */
gboolean gptd_training_state_save (const char             *path,
                                   GptdGpt                *model,
                                   GptdAdamW              *opt,
                                   const GptdTrainingInfo *info,
                                   GError                **error);

/**
 * gptd_training_state_load:
 * @path: a file written by gptd_training_state_save()
 * @model: the model (already loaded); its dropout RNG is restored
 * @opt: (nullable): an optimizer made for @model; its moments, step and
 *   hyper-parameters are restored
 * @info: (out caller-allocates) (optional): the run's position; release with
 *   gptd_training_info_clear()
 * @error: return location for a #GError
 *
 * Validates the file completely (every optimizer tensor present with the
 * parameter's shape, no unexpected tensor, every metadata key present,
 * well-formed and in range: step, epoch, batch_index and adamw.step not
 * negative, epoch below 2^31, beta1 and beta2 in [0, 1), eps positive,
 * weight_decay not negative) before restoring anything. The moments are
 * checked as they are restored (finite; the second moments not negative): on
 * that failure @opt holds part of the file and is not to be used.
 *
 * Returns: %TRUE on success
 */
gboolean gptd_training_state_load (const char       *path,
                                   GptdGpt          *model,
                                   GptdAdamW        *opt,
                                   GptdTrainingInfo *info,
                                   GError          **error);

/* ------------------------------------------------------------------------ */
/* Checkpoints                                                              */

/**
 * GptdCheckpointOptions:
 * @vocab_json: (nullable): tokenizer vocabulary to copy into each checkpoint
 * @merges_txt: (nullable): tokenizer merges to copy into each checkpoint
 * @keep: how many complete checkpoints to keep (the newest ones); 0 means 2
 * @labels: (nullable): a classifier's class names, written as
 *   gptd_gpt_dir_save_classifier() does
 * @pooling: (nullable): a classifier's pooling
 * @sequence_length: a classifier's padded training length (0: unknown)
 *
 * Options of gptd_checkpoint_save().
 */
typedef struct {
  const char *vocab_json;
  const char *merges_txt;
  guint       keep;
  const char *const *labels;
  const char *pooling;
  int         sequence_length;
} GptdCheckpointOptions;

/**
 * gptd_checkpoint_save:
 * @root: the checkpoint root directory (created if needed)
 * @model: the model
 * @opt: (nullable): its optimizer; without it no training state is written
 * @info: the run's position (its step names the checkpoint)
 * @options: (nullable): options
 * @saved_dir: (out) (optional) (transfer full): the directory written
 * @error: return location for a #GError
 *
 * Saves a complete checkpoint and makes it the latest:
 *
 * 1. A new directory ROOT/step-NNNNNNNN (with a ".K" suffix if a checkpoint
 *    of that step is the latest already) is created and the root fsynced.
 *    A directory of that name that checkpoint.json does not name is the
 *    remainder of an interrupted save; it is emptied first.
 * 2. model.safetensors, config.json, training_state.safetensors and the
 *    tokenizer files are written into it, each atomically and durably.
 * 3. ROOT/checkpoint.json is replaced atomically and durably by one naming
 *    the new directory. This rename is the commit point.
 * 4. Checkpoint directories beyond the newest @keep are removed.
 *
 * The latest checkpoint's files are never written to, so until step 3
 * completes checkpoint.json names the old, untouched checkpoint, and from then
 * on the new one, whose files and directory entries were all made durable
 * before. A crash anywhere leaves one of the two loadable; leftover temporary
 * files or a half-written directory are ignored by loading and cleaned up by
 * the next save. Only one process may save into a root at a time.
 *
 * Pruning orders checkpoint directories by step number (then suffix); the
 * latest one is always kept.
 *
 * Returns: %TRUE on success
 */
gboolean gptd_checkpoint_save (const char                  *root,
                               GptdGpt                     *model,
                               GptdAdamW                   *opt,
                               const GptdTrainingInfo      *info,
                               const GptdCheckpointOptions *options,
                               char                       **saved_dir,
                               GError                     **error);

/**
 * gptd_checkpoint_get_latest:
 * @root: a checkpoint root
 * @error: return location for a #GError
 *
 * Reads ROOT/checkpoint.json and checks the directory it names.
 *
 * Returns: (transfer full): the path of the latest checkpoint directory, or
 *   %NULL with %GPTD_GPT_FILE_ERROR_CHECKPOINT
 */
char *gptd_checkpoint_get_latest (const char *root, GError **error);

/**
 * gptd_checkpoint_load:
 * @root: a checkpoint root
 * @opt_out: (out) (optional) (transfer full): an optimizer for the model,
 *   restored from the training state (moments, step, hyper-parameters)
 * @info: (out caller-allocates) (optional): the run's position; release with
 *   gptd_training_info_clear()
 * @error: return location for a #GError
 *
 * Loads the latest checkpoint of @root: its model and, when @opt_out or @info
 * is given, its training state (which must then exist). With @opt_out, the
 * parameters whose moments the state does not hold (frozen when it was saved)
 * are frozen in the model, and the optimizer keeps moments for the others. The model's dropout
 * RNG is restored whenever a training state is loaded.
 *
 * Returns: (transfer full): the model, or %NULL with @error set
 */
GptdGpt *gptd_checkpoint_load (const char        *root,
                               GptdAdamW        **opt_out,
                               GptdTrainingInfo  *info,
                               GError           **error);

G_END_DECLS
