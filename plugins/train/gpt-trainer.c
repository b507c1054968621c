/* gpt-trainer.c: the gpt-trainer stage (gptd.Batch -> gptd.Model), the book's
 * train_model_simple with checkpoints and exact resume.
 *
 * For each epoch and each batch of it: zero the gradients, compute the loss,
 * backward, clip (optionally), one AdamW step at the scheduled learning rate,
 * tokens_seen += batch numel, global_step += 1. After every eval-freq-th step
 * (global steps 0, eval-freq, 2 eval-freq, ... as in the book) the train and
 * validation losses are the means over eval-iter batches of each split, without
 * dropout (evaluate_model); after each epoch a greedy 50-token sample continues
 * start-context (generate_and_print_sample).
 *
 * Batches come from the input stage by epoch requests: the trainer asks for the
 * train split of epoch e from batch b, at most up to the next step where it must
 * evaluate or checkpoint (one request is outstanding at a time, and evaluation is
 * itself a request). A checkpoint (model directory + training state: AdamW
 * moments, step, dropout RNG, data position, elapsed time) is written every
 * checkpoint-every steps, at the end and when the run is cancelled. A resumed run
 * loads it and asks for the epoch from the next batch, so it computes exactly
 * the losses of an uninterrupted run. A cancel that lands while the last step's
 * evaluation is still due (it is itself a request, which a cancelled run cannot
 * make) leaves that step's evaluation and metrics row to the resumed run: the
 * checkpoint carries the step's loss and learning rate for it.
 */
#include "train-plugin.h"
#include "metrics.h"
#include "windows.h"

#include <math.h>
#include <string.h>

#include <gio/gio.h>
#include <gptd/bpe.h>
#include <gptd/generate.h>
#include <gptd/gpt2-file.h>
#include <gptd/nn.h>

static const char *const weight_init_choices[] = { "gpt2", "book", NULL };

static const char *const model_choices[] = {
  "gpt2-small", "gpt2-medium", "gpt2-large", "gpt2-xl", "custom", NULL
};

static const GptdParamSpec gpt_trainer_params[] = {
  { "model", GPTD_PARAM_ENUM, "gpt2-small", 0, 0, model_choices,
    "Model shape: a GPT-2 preset, or custom (gpt2-small's values as the base for the "
    "overrides below)", 0 },
  { "n-layer", GPTD_PARAM_INT, NULL, 1, 1024, NULL, "Transformer blocks (overrides the preset)", 0 },
  { "n-head", GPTD_PARAM_INT, NULL, 1, 1024, NULL, "Attention heads (overrides the preset)", 0 },
  { "n-embd", GPTD_PARAM_INT, NULL, 1, 65536, NULL, "Embedding width (overrides the preset)", 0 },
  { "context-length", GPTD_PARAM_INT, NULL, 1, 1 << 20, NULL,
    "Positions of the model (overrides the preset's 1024)", 0 },
  { "vocab-size", GPTD_PARAM_INT, NULL, 1, 1 << 24, NULL,
    "Token ids of the model (overrides the preset's 50257)", 0 },
  { "dropout", GPTD_PARAM_DOUBLE, NULL, 0, 1, NULL,
    "Dropout probability during training (overrides the preset's 0.1; also applies "
    "to an init= model)", GPTD_PARAM_MAX_EXCLUSIVE },
  { "qkv-bias", GPTD_PARAM_BOOL, NULL, 0, 0, NULL,
    "Bias in the query/key/value projection (the presets have one)", 0 },
  { "tie-embeddings", GPTD_PARAM_BOOL, NULL, 0, 0, NULL,
    "Output head shares the token embedding (the presets do)", 0 },
  { "weight-init", GPTD_PARAM_ENUM, "gpt2", 0, 0, weight_init_choices,
    "Random weights: gpt2 (normal 0.02, GPT-2's scheme) or book (PyTorch's defaults, "
    "as the book's GPTModel: embeddings normal 0/1, linear layers uniform "
    "+-1/sqrt(fan_in)), which memorises a small text much sooner", 0 },
  { "init", GPTD_PARAM_PATH, NULL, 0, 0, NULL,
    "Start from this model directory (config.json + model.safetensors, e.g. OpenAI's "
    "GPT-2) instead of random weights", 0 },
  { "epochs", GPTD_PARAM_INT, "1", 1, 1e9, NULL,
    "Passes over the train split (unlimited when only max-steps is given)", 0 },
  { "max-steps", GPTD_PARAM_INT, "0", 0, 1e15, NULL,
    "Stop after this many optimizer steps; 0 for no limit", 0 },
  { "lr", GPTD_PARAM_DOUBLE, "0.0004", 0, 10, NULL, "Peak learning rate", GPTD_PARAM_MIN_EXCLUSIVE },
  { "initial-lr", GPTD_PARAM_DOUBLE, "0", 0, 10, NULL,
    "Learning rate at the start of the warmup", 0 },
  { "min-lr", GPTD_PARAM_DOUBLE, NULL, 0, 10, NULL,
    "Decay the learning rate after the warmup to this value along a cosine "
    "(the book's appendix D); absent: constant after the warmup", 0 },
  { "warmup-steps", GPTD_PARAM_INT, "0", 0, 1e15, NULL,
    "Steps of linear warmup from initial-lr to lr", 0 },
  { "weight-decay", GPTD_PARAM_DOUBLE, "0.1", 0, 10, NULL, "AdamW weight decay", 0 },
  { "clip", GPTD_PARAM_DOUBLE, "0", 0, 1e9, NULL,
    "Clip the global gradient norm to this value; 0 for no clipping", 0 },
  { "seed", GPTD_PARAM_INT, "123", 0, (double) G_MAXINT64, NULL,
    "Seed of the weights, dropout and data shuffling", 0 },
  { "threads", GPTD_PARAM_INT, "0", 0, 4096, NULL,
    "Threads for the model; 0 for one per CPU. Resume with the same count for "
    "bitwise identical losses", 0 },
  { "eval-freq", GPTD_PARAM_INT, "5", 0, 1e15, NULL,
    "Evaluate after every this many steps (steps 0, N, 2N, ...); 0 never", 0 },
  { "eval-iter", GPTD_PARAM_INT, "5", 1, 1e9, NULL,
    "Batches of each split an evaluation averages", 0 },
  { "start-context", GPTD_PARAM_STRING, "Every effort moves you", 0, 0, NULL,
    "Prompt of the sample generated after each epoch", 0 },
  { "sample-tokens", GPTD_PARAM_INT, "50", 0, 100000, NULL,
    "Tokens generated (greedily) for each sample; 0 for no samples", 0 },
  { "checkpoint-every", GPTD_PARAM_INT, "0", 0, 1e15, NULL,
    "Write a checkpoint every this many steps (one is always written at the end and "
    "when the run is cancelled); 0 for none in between", 0 },
  { "keep-checkpoints", GPTD_PARAM_INT, "2", 1, 1000, NULL,
    "Checkpoints kept in the run directory (the newest)", 0 },
  { "vocab", GPTD_PARAM_STRING, NULL, 0, 0, NULL,
    "Tokenizer for samples and the model directory: \"gpt2\" (from $GPTD_DATA_DIR), a "
    "directory with encoder.json + vocab.bpe or vocab.json + merges.txt, or a "
    ".tiktoken file; default: init='s own, else none (samples show token ids)", 0 },
  { "name", GPTD_PARAM_STRING, NULL, 0, 0, NULL,
    "Name of the trained model in the Model message (default: the stage name)", 0 },
  { NULL }
};

static const GptdPadSpec gpt_trainer_inputs[] = {
  { "default", "gptd.Batch", GPTD_PAD_EPOCHS },
  { NULL }
};

static const GptdPadSpec gpt_trainer_outputs[] = {
  { "default", "gptd.Model", 0 },
  { NULL }
};

/* The metadata keys of the trainer's own state in the checkpoint. */
#define HP_TOKENS_SEEN "tokens_seen"
#define HP_ELAPSED "elapsed_s"
#define HP_BATCHES_PER_EPOCH "batches_per_epoch"
#define HP_TOTAL_STEPS "total_steps"
#define HP_THREADS "threads"
#define HP_SEED "seed"
#define HP_TRAIN_LOSS "train_loss"
#define HP_VAL_LOSS "val_loss"
/* The last step's metrics row, present when its evaluation is still to be done. */
#define HP_PENDING_LOSS "pending_train_loss"
#define HP_PENDING_LR "pending_lr"
#define HP_PENDING_TOKENS "pending_tokens"
#define HP_PENDING_TIME "pending_time_s"

/* Request seeds of the train split's epochs and of the train-loss evaluations. */
#define EVAL_SEED_SALT G_GUINT64_CONSTANT (0x65766131)

typedef struct {
  char *stage_name;
  char *model_name;
  GptdGptConfig config;
  char *init_dir;
  gboolean dropout_set;
  gint64 epochs;          /* 0: unlimited */
  gint64 max_steps;       /* 0: unlimited */
  GptdLrSchedule schedule;
  double weight_decay;
  double clip;
  guint64 seed;
  int threads;
  gint64 eval_freq;
  gint64 eval_iter;
  char *start_context;
  int sample_tokens;
  gint64 checkpoint_every;
  guint keep_checkpoints;

  GptdGpt *model;
  GptdAdamW *opt;
  GptdBpe *bpe;
  char *run_dir;
  char *ckpt_root;
  char *vocab_json;       /* the tokenizer's files copied into checkpoints */
  char *merges_txt;
  GptdTrainMetrics *metrics;

  /* Where training stands: steps done and the next batch. */
  gint64 step;
  guint32 epoch;
  guint64 batch_index;
  guint64 tokens_seen;
  guint64 batches_per_epoch; /* 0 until known */
  gint64 total_steps;        /* 0 until known */
  double elapsed_before;     /* seconds of earlier sessions of this run */
  gint64 saved_step;         /* step of the newest checkpoint, -1 for none */
  char *saved_dir;
  double last_train_loss;
  double last_val_loss;
  double last_eval_train_loss;

  /* This session's clocks. */
  GTimer *timer;
  gint64 session_first_step;
  double last_progress_time;
  double step_start;
  gint32 *sample_ids;        /* room for the prompt plus the sample */

  /* The last step's bookkeeping, done once the input is free again (evaluation
   * needs it, and it is busy until the end of the chunk being pulled). Set until
   * the step's metrics row is written, so also while its evaluation runs. */
  gboolean pending;
  float p_loss;
  double p_lr;
  double p_tokens;
  double p_time;
} GptTrainer;

/* ---- Parameters ----------------------------------------------------------------- */

static gboolean
build_config (const GptdParams *params, GptdGptConfig *config, GError **error)
{
  const char *model = gptd_params_get_string (params, "model");
  if (!gptd_gpt_config_preset (g_str_equal (model, "custom") ? "gpt2-small" : model,
                               config, error))
    return FALSE;
  if (gptd_params_is_set (params, "n-layer"))
    config->n_layer = gptd_params_get_int (params, "n-layer");
  if (gptd_params_is_set (params, "n-head"))
    config->n_head = gptd_params_get_int (params, "n-head");
  if (gptd_params_is_set (params, "n-embd"))
    config->n_embd = gptd_params_get_int (params, "n-embd");
  if (gptd_params_is_set (params, "context-length"))
    config->context_length = gptd_params_get_int (params, "context-length");
  if (gptd_params_is_set (params, "vocab-size"))
    config->vocab_size = gptd_params_get_int (params, "vocab-size");
  if (gptd_params_is_set (params, "dropout"))
    config->dropout = gptd_params_get_double (params, "dropout");
  if (gptd_params_is_set (params, "qkv-bias"))
    config->qkv_bias = gptd_params_get_bool (params, "qkv-bias");
  if (gptd_params_is_set (params, "tie-embeddings"))
    config->tie_embeddings = gptd_params_get_bool (params, "tie-embeddings");
  if (config->n_embd % config->n_head != 0)
    {
      g_set_error (error, GPTD_STAGE_ERROR, GPTD_STAGE_ERROR_FAILED,
                   "n-head: n-embd (%d) is not a multiple of n-head (%d)", config->n_embd,
                   config->n_head);
      return FALSE;
    }
  if (!gptd_gpt_config_validate (config, error))
    {
      g_prefix_error (error, "model: ");
      return FALSE;
    }
  return TRUE;
}

static gboolean
gpt_trainer_check (const GptdParams *params, GError **error)
{
  GptdGptConfig config;
  static const char *const shape_keys[] = {
    "n-layer", "n-head", "n-embd", "context-length", "vocab-size", "qkv-bias",
    "tie-embeddings", NULL
  };

  if (gptd_params_is_set (params, "init"))
    {
      for (guint i = 0; shape_keys[i]; i++)
        if (gptd_params_is_set (params, shape_keys[i]))
          {
            g_set_error (error, GPTD_STAGE_ERROR, GPTD_STAGE_ERROR_FAILED,
                         "%s: the shape of an init= model comes from its config.json; "
                         "remove %s (only dropout may be changed)",
                         shape_keys[i], shape_keys[i]);
            return FALSE;
          }
      if (gptd_params_is_set (params, "model"))
        {
          g_set_error (error, GPTD_STAGE_ERROR, GPTD_STAGE_ERROR_FAILED,
                       "model: give either model= or init=, not both");
          return FALSE;
        }
    }
  else if (!build_config (params, &config, error))
    return FALSE;

  if (gptd_params_is_set (params, "min-lr")
      && gptd_params_get_double (params, "min-lr") > gptd_params_get_double (params, "lr"))
    {
      g_set_error (error, GPTD_STAGE_ERROR, GPTD_STAGE_ERROR_FAILED,
                   "min-lr: %g is above lr (%g)", gptd_params_get_double (params, "min-lr"),
                   gptd_params_get_double (params, "lr"));
      return FALSE;
    }
  if (gptd_params_get_double (params, "initial-lr") > gptd_params_get_double (params, "lr"))
    {
      g_set_error (error, GPTD_STAGE_ERROR, GPTD_STAGE_ERROR_FAILED,
                   "initial-lr: %g is above lr (%g)",
                   gptd_params_get_double (params, "initial-lr"),
                   gptd_params_get_double (params, "lr"));
      return FALSE;
    }
  const char *start = gptd_params_get_string (params, "start-context");
  if (gptd_params_get_int (params, "sample-tokens") > 0 && (start == NULL || *start == '\0'))
    {
      g_set_error (error, GPTD_STAGE_ERROR, GPTD_STAGE_ERROR_FAILED,
                   "start-context: empty; give a prompt or set sample-tokens=0");
      return FALSE;
    }
  return TRUE;
}

/* ---- Helpers ----------------------------------------------------------------------- */

static double
now_elapsed (GptTrainer *self)
{
  return self->elapsed_before + g_timer_elapsed (self->timer, NULL);
}

static char *
format_duration (double s)
{
  if (s < 60)
    return g_strdup_printf ("%.1f s", s);
  if (s < 3600)
    return g_strdup_printf ("%.1f min", s / 60);
  return g_strdup_printf ("%.2f h", s / 3600);
}

/* Uses the batches per epoch (known from the first batch or end of epoch) to fix the
 * run's length and the learning-rate schedule. */
static gboolean
set_batches_per_epoch (GptTrainer *self, guint64 n, GError **error)
{
  if (n == 0 || self->batches_per_epoch == n)
    return TRUE;
  if (self->batches_per_epoch != 0)
    {
      g_set_error (error, GPTD_STAGE_ERROR, GPTD_STAGE_ERROR_INPUT,
                   "the train split has %" G_GUINT64_FORMAT " batches per epoch, but "
                   "%" G_GUINT64_FORMAT " when training began (was the input data "
                   "changed before resuming?)", n, self->batches_per_epoch);
      return FALSE;
    }
  self->batches_per_epoch = n;
  if (self->total_steps == 0)
    {
      gint64 total = self->epochs > 0 ? self->epochs * (gint64) n : 0;
      if (self->max_steps > 0 && (total == 0 || self->max_steps < total))
        total = self->max_steps;
      self->total_steps = total;
    }
  self->schedule.total_steps = self->total_steps;
  return TRUE;
}

static void
emit_progress (GptTrainer *self, GptdStageContext *ctx, double loss, double val_loss,
               double lr, double tokens_per_s)
{
  Gptd__Progress p = GPTD__PROGRESS__INIT;
  double session = g_timer_elapsed (self->timer, NULL);
  gint64 done = self->step - self->session_first_step;

  p.step = self->step;
  p.total_steps = self->total_steps;
  p.epoch = self->epochs > 0 ? MIN (self->epoch + 1, (guint32) self->epochs)
                             : self->epoch + 1;
  p.total_epochs = self->epochs;
  p.loss = loss;
  p.val_loss = val_loss;
  p.lr = lr;
  p.tokens_per_s = tokens_per_s;
  p.tokens_seen = self->tokens_seen;
  p.eta_s = -1;
  if (self->total_steps > 0 && done > 0)
    p.eta_s = (self->total_steps - self->step) * (session / done);
  p.unit = (char *) "steps";
  gptd_stage_progress (ctx, &p);
  self->last_progress_time = session;
}

/* ---- Checkpoints ------------------------------------------------------------------ */

static gboolean
save_checkpoint (GptTrainer *self, GptdStageContext *ctx, const char *why, GError **error)
{
  GptdTrainingInfo info = { 0 };
  GptdCheckpointOptions options = {
    .vocab_json = self->vocab_json,
    .merges_txt = self->merges_txt,
    .keep = self->keep_checkpoints,
  };
  char buf[64];
  gboolean ok;

  if (self->saved_step == self->step && self->saved_dir != NULL)
    return TRUE;

  info.step = self->step;
  info.epoch = self->epoch;
  info.batch_index = self->batch_index;
  gptd_gpt_get_rng (self->model, &info.rng);
  info.hparams = g_hash_table_new_full (g_str_hash, g_str_equal, NULL, g_free);
  g_hash_table_insert (info.hparams, HP_TOKENS_SEEN,
                       g_strdup_printf ("%" G_GUINT64_FORMAT, self->tokens_seen));
  g_hash_table_insert (info.hparams, HP_ELAPSED,
                       g_strdup (g_ascii_dtostr (buf, sizeof buf, now_elapsed (self))));
  g_hash_table_insert (info.hparams, HP_BATCHES_PER_EPOCH,
                       g_strdup_printf ("%" G_GUINT64_FORMAT, self->batches_per_epoch));
  g_hash_table_insert (info.hparams, HP_TOTAL_STEPS,
                       g_strdup_printf ("%" G_GINT64_FORMAT, self->total_steps));
  g_hash_table_insert (info.hparams, HP_THREADS,
                       g_strdup_printf ("%d", gptd_nn_get_num_threads ()));
  g_hash_table_insert (info.hparams, HP_SEED,
                       g_strdup_printf ("%" G_GUINT64_FORMAT, self->seed));
  g_hash_table_insert (info.hparams, HP_TRAIN_LOSS,
                       g_strdup (g_ascii_dtostr (buf, sizeof buf, self->last_train_loss)));
  g_hash_table_insert (info.hparams, HP_VAL_LOSS,
                       g_strdup (g_ascii_dtostr (buf, sizeof buf, self->last_val_loss)));
  if (self->pending)
    {
      /* The last step's evaluation and row are left to the resumed run. */
      g_hash_table_insert (info.hparams, HP_PENDING_LOSS,
                           g_strdup (g_ascii_dtostr (buf, sizeof buf, self->p_loss)));
      g_hash_table_insert (info.hparams, HP_PENDING_LR,
                           g_strdup (g_ascii_dtostr (buf, sizeof buf, self->p_lr)));
      g_hash_table_insert (info.hparams, HP_PENDING_TOKENS,
                           g_strdup (g_ascii_dtostr (buf, sizeof buf, self->p_tokens)));
      g_hash_table_insert (info.hparams, HP_PENDING_TIME,
                           g_strdup (g_ascii_dtostr (buf, sizeof buf, self->p_time)));
    }

  g_autofree char *dir = NULL;
  g_autoptr (GTimer) t = g_timer_new ();
  ok = gptd_checkpoint_save (self->ckpt_root, self->model, self->opt, &info, &options,
                             &dir, error);
  g_hash_table_unref (info.hparams);
  if (!ok)
    return FALSE;
  g_autofree char *where = self->batch_index == 0 && self->epoch > 0
    ? g_strdup_printf ("end of epoch %u", self->epoch)
    : g_strdup_printf ("epoch %u, batch %" G_GUINT64_FORMAT, self->epoch + 1,
                       self->batch_index);
  gptd_stage_log (ctx, G_LOG_LEVEL_INFO, "checkpoint (%s) at step %" G_GINT64_FORMAT
                  " (%s): %s (%.1f s)", why, self->step, where, dir,
                  g_timer_elapsed (t, NULL));
  g_free (self->saved_dir);
  self->saved_dir = g_steal_pointer (&dir);
  self->saved_step = self->step;
  return TRUE;
}

static gint64
hparam_int (GHashTable *hp, const char *key, gint64 fallback)
{
  const char *v = hp ? g_hash_table_lookup (hp, key) : NULL;
  return v ? g_ascii_strtoll (v, NULL, 10) : fallback;
}

static double
hparam_double (GHashTable *hp, const char *key, double fallback)
{
  const char *v = hp ? g_hash_table_lookup (hp, key) : NULL;
  return v ? g_ascii_strtod (v, NULL) : fallback;
}

/* Loads the latest checkpoint of the run directory. Returns FALSE with @error on a
 * damaged checkpoint; TRUE with self->model still NULL when there is none. */
static gboolean
resume_from_checkpoint (GptTrainer *self, GptdStageContext *ctx, GError **error)
{
  g_autofree char *index = g_build_filename (self->ckpt_root, GPTD_CHECKPOINT_INDEX, NULL);
  GptdTrainingInfo info = { 0 };

  if (!g_file_test (index, G_FILE_TEST_EXISTS))
    {
      gptd_stage_log (ctx, G_LOG_LEVEL_WARNING,
                      "resume: %s has no checkpoint yet; training starts from the "
                      "beginning", self->ckpt_root);
      return TRUE;
    }
  self->model = gptd_checkpoint_load (self->ckpt_root, &self->opt, &info, error);
  if (self->model == NULL)
    return FALSE;

  /* The pipeline must still describe the checkpoint's model. */
  const GptdGptConfig *c = gptd_gpt_get_config (self->model);
  if (self->init_dir == NULL
      && (c->n_layer != self->config.n_layer || c->n_head != self->config.n_head
          || c->n_embd != self->config.n_embd
          || c->context_length != self->config.context_length
          || c->vocab_size != self->config.vocab_size
          || c->qkv_bias != self->config.qkv_bias
          || c->tie_embeddings != self->config.tie_embeddings))
    {
      g_set_error (error, GPTD_STAGE_ERROR, GPTD_STAGE_ERROR_INPUT,
                   "resume: the checkpoint in %s is a model of %d layers, %d heads, "
                   "width %d, context %d, vocabulary %d, but the pipeline asks for %d, "
                   "%d, %d, %d, %d", self->ckpt_root, c->n_layer, c->n_head, c->n_embd,
                   c->context_length, c->vocab_size, self->config.n_layer,
                   self->config.n_head, self->config.n_embd, self->config.context_length,
                   self->config.vocab_size);
      gptd_training_info_clear (&info);
      return FALSE;
    }
  self->config = *c;
  self->step = info.step;
  self->epoch = (guint32) info.epoch;
  self->batch_index = (guint64) info.batch_index;
  self->tokens_seen = (guint64) hparam_int (info.hparams, HP_TOKENS_SEEN, 0);
  self->elapsed_before = hparam_double (info.hparams, HP_ELAPSED, 0);
  self->batches_per_epoch = (guint64) hparam_int (info.hparams, HP_BATCHES_PER_EPOCH, 0);
  self->total_steps = hparam_int (info.hparams, HP_TOTAL_STEPS, 0);
  self->last_train_loss = hparam_double (info.hparams, HP_TRAIN_LOSS, NAN);
  self->last_val_loss = hparam_double (info.hparams, HP_VAL_LOSS, NAN);
  self->schedule.total_steps = self->total_steps;
  if (info.hparams != NULL && g_hash_table_contains (info.hparams, HP_PENDING_LOSS)
      && self->step > 0)
    {
      /* Cancelled before the last step's evaluation: it is done first. */
      self->pending = TRUE;
      self->p_loss = (float) hparam_double (info.hparams, HP_PENDING_LOSS, NAN);
      self->p_lr = hparam_double (info.hparams, HP_PENDING_LR, NAN);
      self->p_tokens = hparam_double (info.hparams, HP_PENDING_TOKENS, 0);
      self->p_time = hparam_double (info.hparams, HP_PENDING_TIME, 0);
    }
  gint64 threads = hparam_int (info.hparams, HP_THREADS, 0);
  if (threads != 0 && threads != gptd_nn_get_num_threads ())
    gptd_stage_log (ctx, G_LOG_LEVEL_WARNING,
                    "resume: the checkpoint was trained with %" G_GINT64_FORMAT " threads, "
                    "this run uses %d: the losses will differ in the last bits from an "
                    "uninterrupted run", threads, gptd_nn_get_num_threads ());
  /* The pipeline's optimizer settings apply from here on. */
  gptd_adamw_get_params (self->opt)->weight_decay = self->weight_decay;
  self->saved_step = self->step;
  self->saved_dir = gptd_checkpoint_get_latest (self->ckpt_root, NULL);
  gptd_stage_log (ctx, G_LOG_LEVEL_INFO,
                  "resumed from %s: step %" G_GINT64_FORMAT ", epoch %u, batch %"
                  G_GUINT64_FORMAT ", %" G_GUINT64_FORMAT " tokens seen",
                  self->saved_dir ? self->saved_dir : self->ckpt_root, self->step,
                  self->epoch + 1, self->batch_index, self->tokens_seen);
  if (self->pending)
    gptd_stage_log (ctx, G_LOG_LEVEL_INFO,
                    "the run was cancelled during the evaluation after step %" G_GINT64_FORMAT
                    ": it is done first", self->step - 1);
  gptd_training_info_clear (&info);
  return TRUE;
}

/* PyTorch's default initialisation, which the book's GPTModel gets: nn.Embedding
 * normal(0, 1), nn.Linear weight and bias uniform(-1/sqrt(fan_in), 1/sqrt(fan_in)),
 * LayerNorm weight 1 and bias 0 (as gptd_gpt_new() leaves them). The numbers come
 * from a counter-based stream of @seed, so the same seed gives the same weights. */
static void
init_weights_book (GptdGpt *model, guint64 seed)
{
  guint64 key = gptd__windows_shuffle_key (seed, G_GUINT64_CONSTANT (0x626f6f6b), 0, 0);
  guint64 counter = 0;

  for (guint i = 0; i < gptd_gpt_n_tensors (model); i++)
    {
      const GptdNnTensor *t = gptd_gpt_get_tensor (model, i);
      if (strstr (t->name, "ln_") != NULL)
        continue;
      if (g_str_has_prefix (t->name, "wte.") || g_str_has_prefix (t->name, "wpe."))
        {
          for (size_t j = 0; j < t->numel; j++)
            {
              /* Box-Muller with two uniforms in (0, 1]. */
              double u1 = ((gptd__windows_random (key, counter++) >> 11) + 1) * 0x1.0p-53;
              double u2 = (gptd__windows_random (key, counter++) >> 11) * 0x1.0p-53;
              t->data[j] = (float) (sqrt (-2.0 * log (u1)) * cos (2.0 * G_PI * u2));
            }
          continue;
        }
      /* The fan-in of the weight the tensor belongs to: Conv1D weights are stored
       * input-major (in, out), the head output-major (out, in). */
      g_autofree char *wname = g_str_has_suffix (t->name, ".bias")
        ? g_strdup_printf ("%.*sweight", (int) strlen (t->name) - 4, t->name)
        : g_strdup (t->name);
      const GptdNnTensor *w = gptd_gpt_lookup_tensor (model, wname);
      size_t fan_in = w == NULL ? t->shape[0]
                      : g_str_has_prefix (wname, "lm_head.") ? w->shape[1] : w->shape[0];
      double bound = 1.0 / sqrt ((double) fan_in);
      for (size_t j = 0; j < t->numel; j++)
        {
          double u = (gptd__windows_random (key, counter++) >> 11) * 0x1.0p-53;
          t->data[j] = (float) ((2.0 * u - 1.0) * bound);
        }
    }
}

/* ---- Creation ---------------------------------------------------------------------- */

static void
gpt_trainer_destroy (gpointer data)
{
  GptTrainer *self = data;
  if (self == NULL)
    return;
  gptd__train_metrics_free (self->metrics);
  gptd_adamw_free (self->opt);
  gptd_gpt_free (self->model);
  if (self->bpe)
    gptd_bpe_unref (self->bpe);
  if (self->timer)
    g_timer_destroy (self->timer);
  g_free (self->sample_ids);
  g_free (self->stage_name);
  g_free (self->model_name);
  g_free (self->init_dir);
  g_free (self->start_context);
  g_free (self->run_dir);
  g_free (self->ckpt_root);
  g_free (self->vocab_json);
  g_free (self->merges_txt);
  g_free (self->saved_dir);
  g_free (self);
}

/* Loads the tokenizer for samples and saves it into the run directory, whence every
 * checkpoint gets a copy (vocab.json + merges.txt). */
static gboolean
setup_tokenizer (GptTrainer *self, GptdStageContext *ctx, const GptdParams *params,
                 GError **error)
{
  const char *vocab = gptd_params_get_string (params, "vocab");
  g_autofree char *vocab_path = NULL;

  if (vocab != NULL)
    {
      /* A path (relative to the pipeline file) or a name such as gpt2. */
      vocab_path = gptd_params_resolve_path (params, vocab);
      if (strchr (vocab, '/') != NULL || g_file_test (vocab_path, G_FILE_TEST_EXISTS))
        vocab = vocab_path;
    }
  if (vocab == NULL && self->init_dir != NULL)
    {
      g_autofree char *v = g_build_filename (self->init_dir, GPTD_GPT_DIR_VOCAB, NULL);
      g_autofree char *e = g_build_filename (self->init_dir, "encoder.json", NULL);
      if (g_file_test (v, G_FILE_TEST_EXISTS) || g_file_test (e, G_FILE_TEST_EXISTS))
        vocab = self->init_dir;
    }
  if (vocab == NULL)
    {
      if (self->sample_tokens > 0)
        gptd_stage_log (ctx, G_LOG_LEVEL_INFO,
                        "no vocab= given: samples are shown as token ids");
      return TRUE;
    }
  self->bpe = gptd_bpe_load (vocab, error);
  if (self->bpe == NULL)
    {
      g_prefix_error (error, "vocab: ");
      return FALSE;
    }
  if (gptd_bpe_get_n_vocab (self->bpe) > (guint) self->config.vocab_size)
    gptd_stage_log (ctx, G_LOG_LEVEL_WARNING,
                    "the vocabulary %s has %u tokens, more than the model's %d",
                    gptd_bpe_get_source (self->bpe), gptd_bpe_get_n_vocab (self->bpe),
                    self->config.vocab_size);
  g_autofree char *dir = g_build_filename (self->run_dir, "vocab", NULL);
  if (!gptd_bpe_save (self->bpe, dir, error))
    return FALSE;
  self->vocab_json = g_build_filename (dir, "encoder.json", NULL);
  self->merges_txt = g_build_filename (dir, "vocab.bpe", NULL);
  return TRUE;
}

static gpointer
gpt_trainer_create (GptdStageContext *ctx, const GptdParams *params, GError **error)
{
  GptTrainer *self = g_new0 (GptTrainer, 1);

  if (!gpt_trainer_check (params, error))
    goto fail;

  self->stage_name = g_strdup (gptd_stage_context_get_name (ctx));
  self->model_name = g_strdup (gptd_params_has (params, "name")
                                 ? gptd_params_get_string (params, "name")
                                 : self->stage_name);
  self->init_dir = g_strdup (gptd_params_get_string (params, "init"));
  self->dropout_set = gptd_params_is_set (params, "dropout");
  self->epochs = gptd_params_get_int (params, "epochs");
  self->max_steps = gptd_params_get_int (params, "max-steps");
  if (self->max_steps > 0 && !gptd_params_is_set (params, "epochs"))
    self->epochs = 0;
  self->weight_decay = gptd_params_get_double (params, "weight-decay");
  self->clip = gptd_params_get_double (params, "clip");
  self->seed = gptd_params_get_int (params, "seed");
  self->threads = gptd_params_get_int (params, "threads");
  self->eval_freq = gptd_params_get_int (params, "eval-freq");
  self->eval_iter = gptd_params_get_int (params, "eval-iter");
  self->start_context = g_strdup (gptd_params_get_string (params, "start-context"));
  self->sample_tokens = gptd_params_get_int (params, "sample-tokens");
  self->checkpoint_every = gptd_params_get_int (params, "checkpoint-every");
  self->keep_checkpoints = gptd_params_get_int (params, "keep-checkpoints");
  self->run_dir = g_strdup (gptd_stage_context_get_run_dir (ctx));
  self->ckpt_root = g_build_filename (self->run_dir, "checkpoint", NULL);
  self->saved_step = -1;
  self->last_train_loss = self->last_val_loss = self->last_eval_train_loss = NAN;

  self->schedule.peak_lr = gptd_params_get_double (params, "lr");
  self->schedule.initial_lr = gptd_params_get_double (params, "initial-lr");
  self->schedule.warmup_steps = gptd_params_get_int (params, "warmup-steps");
  if (gptd_params_is_set (params, "min-lr") || self->schedule.warmup_steps > 0)
    {
      self->schedule.kind = GPTD_LR_WARMUP_COSINE;
      self->schedule.min_lr = gptd_params_is_set (params, "min-lr")
                                ? gptd_params_get_double (params, "min-lr")
                                : self->schedule.peak_lr;
    }
  else
    {
      self->schedule.kind = GPTD_LR_CONSTANT;
      self->schedule.min_lr = self->schedule.peak_lr;
    }

  gptd_nn_set_num_threads (self->threads);

  if (self->init_dir == NULL && !build_config (params, &self->config, error))
    goto fail;

  if (gptd_stage_context_is_resume (ctx) && !resume_from_checkpoint (self, ctx, error))
    goto fail;

  if (self->model == NULL)
    {
      if (self->init_dir != NULL)
        {
          self->model = gptd_gpt_dir_load (self->init_dir, error);
          if (self->model == NULL)
            {
              g_prefix_error (error, "init: ");
              goto fail;
            }
          self->config = *gptd_gpt_get_config (self->model);
          if (self->dropout_set
              && self->config.dropout != (float) gptd_params_get_double (params, "dropout"))
            {
              /* Same layout with another dropout: copy the parameters over. */
              GptdGptConfig c = self->config;
              c.dropout = gptd_params_get_double (params, "dropout");
              GptdGpt *m = gptd_gpt_new (&c, error);
              if (m == NULL)
                goto fail;
              memcpy (gptd_gpt_get_params (m), gptd_gpt_get_params (self->model),
                      gptd_gpt_n_params (m) * sizeof (float));
              gptd_gpt_free (self->model);
              self->model = m;
              self->config = c;
            }
        }
      else
        {
          self->model = gptd_gpt_new (&self->config, error);
          if (self->model == NULL)
            goto fail;
          if (g_str_equal (gptd_params_get_string (params, "weight-init"), "book"))
            init_weights_book (self->model, self->seed);
          else
            gptd_gpt_init_weights (self->model, self->seed);
        }
      GptdRngState rng = { self->seed, 0 };
      gptd_gpt_set_rng (self->model, &rng);
      GptdAdamWParams ap;
      gptd_adamw_params_init (&ap);
      ap.weight_decay = self->weight_decay;
      self->opt = gptd_adamw_new (self->model, &ap, error);
      if (self->opt == NULL)
        goto fail;
    }

  if (!setup_tokenizer (self, ctx, params, error))
    goto fail;
  if (self->sample_tokens > 0)
    self->sample_ids = g_new (gint32, self->config.context_length + self->sample_tokens
                                        + 4096);
  return self;

fail:
  gpt_trainer_destroy (self);
  return NULL;
}

/* ---- Evaluation and samples -------------------------------------------------------- */

/* The mean loss over up to @n batches of @split (NaN when it has none), without
 * dropout: the book's calc_loss_loader. */
static gboolean
calc_loss (GptTrainer *self, GptdStageContext *ctx, const char *split, guint32 epoch,
           guint64 seed, gboolean shuffle, gint64 n, double *out, GError **error)
{
  Gptd__EpochRequest req = GPTD__EPOCH_REQUEST__INIT;
  double total = 0;
  gint64 count = 0;

  req.split = (char *) split;
  req.epoch = epoch;
  req.seed = seed;
  req.shuffle = shuffle;
  req.limit = n;
  if (!gptd_stage_request_epoch (ctx, 0, &req, error))
    return FALSE;
  for (;;)
    {
      ProtobufCMessage *msg = NULL;
      GptdPullResult r = gptd_stage_pull (ctx, 0, &msg, error);
      if (r == GPTD_PULL_ERROR)
        return FALSE;
      if (r == GPTD_PULL_END_OF_STREAM)
        {
          g_set_error (error, GPTD_STAGE_ERROR, GPTD_STAGE_ERROR_INPUT,
                       "the input ended while the %s split was being evaluated", split);
          return FALSE;
        }
      if (r == GPTD_PULL_END_OF_EPOCH)
        {
          protobuf_c_message_free_unpacked (msg, NULL);
          break;
        }
      const Gptd__Batch *b = (const Gptd__Batch *) msg;
      float loss = NAN;
      gboolean ok = gptd_gpt_forward (self->model, b->inputs, b->targets, b->batch_size,
                                      b->seq_len, GPTD_GPT_FORWARD_NONE, &loss, error);
      protobuf_c_message_free_unpacked (msg, NULL);
      if (!ok)
        {
          g_prefix_error (error, "evaluating the %s split: ", split);
          return FALSE;
        }
      total += loss;
      count++;
    }
  *out = count > 0 ? total / count : NAN;
  return TRUE;
}

/* The book's evaluate_model: train and validation loss over eval-iter batches. The
 * dropout RNG is left as it was, so evaluating never changes the training. */
static gboolean
evaluate (GptTrainer *self, GptdStageContext *ctx, gint64 global_step,
          double *train_loss, double *val_loss, GError **error)
{
  GptdRngState rng;
  gboolean ok;

  gptd_gpt_get_rng (self->model, &rng);
  ok = calc_loss (self, ctx, "train", (guint32) global_step, self->seed ^ EVAL_SEED_SALT,
                  TRUE, self->eval_iter, train_loss, error)
       && calc_loss (self, ctx, "validation", 0, 0, FALSE, self->eval_iter, val_loss,
                     error);
  gptd_gpt_set_rng (self->model, &rng);
  return ok;
}

/* The book's generate_and_print_sample: greedy tokens after start-context. */
static gboolean
sample (GptTrainer *self, GptdStageContext *ctx, GError **error)
{
  Gptd__Sample msg = GPTD__SAMPLE__INIT;
  g_autoptr (GArray) prompt = g_array_new (FALSE, FALSE, sizeof (guint32));
  g_autoptr (GString) text = g_string_new (NULL);
  int ctx_len = self->config.context_length;
  GptdRngState rng;

  if (self->sample_tokens <= 0 || self->bpe == NULL)
    return TRUE;
  GptdBpeEncodeOptions eo = { .special = GPTD_BPE_SPECIAL_ALLOWED };
  if (!gptd_bpe_encode (self->bpe, self->start_context, strlen (self->start_context),
                        &eo, prompt, error))
    {
      g_prefix_error (error, "start-context: ");
      return FALSE;
    }
  if (prompt->len == 0)
    return TRUE;

  gsize n_prompt = MIN (prompt->len, (gsize) ctx_len + 4096);
  gsize n = n_prompt;
  const guint32 *p = (const guint32 *) prompt->data + (prompt->len - n_prompt);
  for (gsize i = 0; i < n_prompt; i++)
    self->sample_ids[i] = (gint32) p[i];

  gptd_gpt_get_rng (self->model, &rng);
  for (int k = 0; k < self->sample_tokens; k++)
    {
      int T = MIN ((int) n, ctx_len);
      int V = 0;
      if (!gptd_gpt_forward (self->model, self->sample_ids + n - T, NULL, 1, T,
                             GPTD_GPT_FORWARD_LAST_ONLY, NULL, error))
        {
          gptd_gpt_set_rng (self->model, &rng);
          g_prefix_error (error, "sampling: ");
          return FALSE;
        }
      const float *logits = gptd_gpt_get_logits (self->model, NULL, NULL, &V);
      self->sample_ids[n++] = gptd_argmax (logits, V);
    }
  gptd_gpt_set_rng (self->model, &rng);

  g_autofree guint32 *gen = g_new (guint32, self->sample_tokens);
  for (int k = 0; k < self->sample_tokens; k++)
    gen[k] = (guint32) self->sample_ids[n_prompt + k];
  if (!gptd_bpe_decode (self->bpe, gen, self->sample_tokens, text, error))
    {
      g_prefix_error (error, "decoding the sample: ");
      return FALSE;
    }
  g_autofree char *valid = g_utf8_make_valid (text->str, text->len);

  msg.prompt = self->start_context;
  msg.text = valid;
  msg.ids = gen;
  msg.n_ids = self->sample_tokens;
  msg.seed = self->seed;
  msg.model = self->model_name;
  msg.step = self->step;
  msg.stop_reason = (char *) "length";
  gptd_stage_sample (ctx, &msg);

  /* As the book prints it: prompt and continuation on one line. */
  g_autofree char *line = g_strconcat (self->start_context, valid, NULL);
  for (char *c = line; *c; c++)
    if (*c == '\n' || *c == '\r')
      *c = ' ';
  gptd_stage_log (ctx, G_LOG_LEVEL_MESSAGE, "sample (epoch %u): %s", self->epoch + 1, line);
  return TRUE;
}

/* ---- Training ------------------------------------------------------------------------ */

/* Steps (from the current one) that can be trained before the trainer must stop
 * pulling batches to evaluate or checkpoint: the next such step is the last of the
 * chunk. 0 means no such step. */
static guint64
chunk_limit (GptTrainer *self)
{
  guint64 limit = 0;
  gint64 g = self->step; /* the global step of the next batch */

#define CAP(n) do { guint64 n_ = (n); if (limit == 0 || n_ < limit) limit = n_; } while (0)
  if (self->eval_freq > 0)
    CAP ((guint64) (((g + self->eval_freq - 1) / self->eval_freq) * self->eval_freq - g + 1));
  if (self->checkpoint_every > 0)
    CAP ((guint64) (((g + self->checkpoint_every) / self->checkpoint_every)
                    * self->checkpoint_every - g));
  if (self->max_steps > 0)
    CAP ((guint64) (self->max_steps - g));
#undef CAP
  return limit;
}

static gboolean
finished (GptTrainer *self)
{
  return (self->max_steps > 0 && self->step >= self->max_steps)
         || (self->epochs > 0 && self->epoch >= self->epochs);
}

/* Whether global step @g is evaluated after it is taken. */
static gboolean
eval_due (GptTrainer *self, gint64 g)
{
  return self->eval_freq > 0 && g >= 0 && g % self->eval_freq == 0;
}

/* After the step just taken (global step g = self->step - 1): evaluation (unless
 * @can_evaluate is FALSE), the metrics row, progress and a periodic checkpoint.
 * When the evaluation fails (a cancel), the step stays pending: nothing of it has
 * been written. */
static gboolean
after_step_full (GptTrainer *self, GptdStageContext *ctx, gboolean can_evaluate,
                 GError **error)
{
  gint64 g = self->step - 1;
  double val = NAN;
  double loss = self->p_loss, lr = self->p_lr;
  gboolean evaluated = FALSE;
  GptdTrainMetricsRow row;

  if (can_evaluate && eval_due (self, g))
    {
      double tr = NAN;
      if (!evaluate (self, ctx, g, &tr, &val, error))
        return FALSE;
      evaluated = TRUE;
      self->last_eval_train_loss = tr;
      self->last_val_loss = val;
      GptdTrainEval e = { g, self->epoch, self->tokens_seen, tr, val };
      if (!gptd__train_metrics_add_eval (self->metrics, &e, error)
          || !gptd__train_metrics_write_plot (self->metrics, error))
        return FALSE;
      /* As the book prints it. */
      gptd_stage_log (ctx, G_LOG_LEVEL_MESSAGE,
                      "Ep %u (Step %06" G_GINT64_FORMAT "): Train loss %.3f, Val loss %.3f",
                      self->epoch + 1, g, tr, val);
    }

  self->pending = FALSE;
  row.step = g;
  row.epoch = self->epoch;
  row.tokens_seen = self->tokens_seen;
  row.train_loss = loss;
  row.val_loss = val;
  row.lr = lr;
  row.tokens_per_s = self->p_time > 0 ? self->p_tokens / self->p_time : -1;
  row.elapsed_s = now_elapsed (self);
  if (!gptd__train_metrics_append (self->metrics, &row, error))
    return FALSE;

  double since = g_timer_elapsed (self->timer, NULL) - self->last_progress_time;
  if (evaluated || since >= 0.5 || self->step == self->total_steps)
    emit_progress (self, ctx, loss, val, lr, row.tokens_per_s);

  if (can_evaluate && self->checkpoint_every > 0 && self->step % self->checkpoint_every == 0)
    return save_checkpoint (self, ctx, "periodic", error);
  return TRUE;
}

static gboolean
after_step (GptTrainer *self, GptdStageContext *ctx, GError **error)
{
  return after_step_full (self, ctx, TRUE, error);
}

/* One optimizer step on @b: the book's inner loop. */
static gboolean
train_step (GptTrainer *self, const Gptd__Batch *b, GError **error)
{
  float loss = NAN;
  int B = b->batch_size, T = b->seq_len;

  if (T < 1 || T > self->config.context_length)
    {
      g_set_error (error, GPTD_STAGE_ERROR, GPTD_STAGE_ERROR_INPUT,
                   "batch %" G_GUINT64_FORMAT " of epoch %u has sequences of %d tokens, "
                   "but the model's context is %d; lower the input's context-length",
                   b->index, b->epoch + 1, T, self->config.context_length);
      return FALSE;
    }
  if (B < 1 || b->n_inputs != (gsize) B * T || b->n_targets != (gsize) B * T)
    {
      g_set_error (error, GPTD_STAGE_ERROR, GPTD_STAGE_ERROR_INPUT,
                   "batch %" G_GUINT64_FORMAT " of epoch %u is malformed: %d x %d with %"
                   G_GSIZE_FORMAT " inputs and %" G_GSIZE_FORMAT " targets", b->index,
                   b->epoch + 1, B, T, b->n_inputs, b->n_targets);
      return FALSE;
    }

  gptd_gpt_zero_grad (self->model);
  if (!gptd_gpt_forward (self->model, b->inputs, b->targets, B, T, GPTD_GPT_FORWARD_TRAIN,
                         &loss, error)
      || !gptd_gpt_backward (self->model, 1.0f, error))
    {
      g_prefix_error (error, "step %" G_GINT64_FORMAT " (epoch %u, batch %" G_GUINT64_FORMAT
                      "): ", self->step, self->epoch + 1, b->index);
      return FALSE;
    }
  if (self->clip > 0)
    gptd_gpt_clip_grad_norm (self->model, self->clip);
  float lr = gptd_lr_schedule_get (&self->schedule, self->step);
  gptd_adamw_step (self->opt, self->model, lr);

  self->tokens_seen += (guint64) B * T;
  self->step++;
  self->batch_index = b->index + 1;
  self->last_train_loss = loss;
  self->p_loss = loss;
  self->p_lr = lr;
  self->pending = TRUE;
  return TRUE;
}

/* Trains on the batches of one request (a chunk of the current epoch). Sets
 * *epoch_done when the epoch has no batch left. */
static gboolean
train_chunk (GptTrainer *self, GptdStageContext *ctx, gboolean *epoch_done, GError **error)
{
  Gptd__EpochRequest req = GPTD__EPOCH_REQUEST__INIT;

  req.split = (char *) "train";
  req.epoch = self->epoch;
  req.seed = self->seed;
  req.shuffle = TRUE;
  req.start = self->batch_index;
  req.limit = chunk_limit (self);
  if (!gptd_stage_request_epoch (ctx, 0, &req, error))
    return FALSE;

  *epoch_done = FALSE;
  guint64 received = 0;
  for (;;)
    {
      ProtobufCMessage *msg = NULL;
      GptdPullResult r = gptd_stage_pull (ctx, 0, &msg, error);
      if (r == GPTD_PULL_ERROR)
        return FALSE;
      if (r == GPTD_PULL_END_OF_STREAM)
        {
          g_set_error (error, GPTD_STAGE_ERROR, GPTD_STAGE_ERROR_INPUT,
                       "the input ended in the middle of epoch %u", self->epoch + 1);
          return FALSE;
        }
      if (r == GPTD_PULL_END_OF_EPOCH)
        {
          const Gptd__EndOfEpoch *eoe = (const Gptd__EndOfEpoch *) msg;
          guint64 total = eoe->total;
          protobuf_c_message_free_unpacked (msg, NULL);
          /* The epoch's size, when the producer says it; else the epoch ends when a
           * request gets fewer batches than it asked for. */
          if (total > 0)
            {
              if (!set_batches_per_epoch (self, total, error))
                return FALSE;
              *epoch_done = self->batch_index >= total;
            }
          else
            *epoch_done = req.limit == 0 || received < req.limit;
          if (*epoch_done && self->batch_index == 0)
            {
              g_set_error (error, GPTD_STAGE_ERROR, GPTD_STAGE_ERROR_INPUT,
                           "the train split has no batch: give more text, or a shorter "
                           "context-length or batch-size to the input");
              return FALSE;
            }
          return !self->pending || after_step (self, ctx, error);
        }

      received++;
      const Gptd__Batch *b = (const Gptd__Batch *) msg;
      gboolean ok = TRUE;
      /* A batch after a pending step: that step was not the chunk's last, so it
       * does not evaluate (chunks end at every evaluation step). */
      if (self->pending)
        ok = after_step (self, ctx, error);
      if (ok)
        ok = set_batches_per_epoch (self, b->batches, error);
      if (ok && b->index != self->batch_index)
        {
          g_set_error (error, GPTD_STAGE_ERROR, GPTD_STAGE_ERROR_INPUT,
                       "expected batch %" G_GUINT64_FORMAT " of epoch %u, got batch %"
                       G_GUINT64_FORMAT, self->batch_index, self->epoch + 1, b->index);
          ok = FALSE;
        }
      if (ok)
        {
          double t0 = g_timer_elapsed (self->timer, NULL);
          ok = train_step (self, b, error);
          self->p_tokens = (double) b->batch_size * b->seq_len;
          self->p_time = g_timer_elapsed (self->timer, NULL) - t0;
        }
      protobuf_c_message_free_unpacked (msg, NULL);
      if (!ok)
        return FALSE;
    }
}

static gboolean
finish_run (GptTrainer *self, GptdStageContext *ctx, GError **error)
{
  Gptd__Model out = GPTD__MODEL__INIT;

  if (!save_checkpoint (self, ctx, "final", error))
    return FALSE;
  if (!gptd__train_metrics_write_plot (self->metrics, error))
    return FALSE;
  g_autofree char *took = format_duration (now_elapsed (self));
  gptd_stage_log (ctx, G_LOG_LEVEL_MESSAGE,
                  "training finished: %" G_GINT64_FORMAT " steps, %" G_GUINT64_FORMAT
                  " tokens seen, in %s; model in %s", self->step, self->tokens_seen, took,
                  self->saved_dir);
  out.path = self->saved_dir;
  out.name = self->model_name;
  out.step = self->step;
  out.epoch = MIN (self->epoch, self->epochs > 0 ? self->epochs : self->epoch);
  out.train_loss = isnan (self->last_eval_train_loss) ? self->last_train_loss
                                                      : self->last_eval_train_loss;
  out.val_loss = self->last_val_loss;
  out.tokens_seen = self->tokens_seen;
  return gptd_stage_push (ctx, 0, &out.base, error);
}

static gboolean
gpt_trainer_run (gpointer data, GptdStageContext *ctx, GError **error)
{
  GptTrainer *self = data;
  g_autoptr (GError) local = NULL;

  /* A pending step (its evaluation was cancelled) has no rows yet: drop any. */
  self->metrics = gptd__train_metrics_open (self->run_dir, self->step > 0,
                                            self->step - (self->pending ? 1 : 0), error);
  if (self->metrics == NULL)
    return FALSE;
  self->timer = g_timer_new ();
  self->session_first_step = self->step;
  self->last_progress_time = -1;

  g_autofree char *size = g_strdup_printf ("%.1fM", gptd_gpt_n_params (self->model) / 1e6);
  gptd_stage_log (ctx, G_LOG_LEVEL_INFO,
                  "model: %s parameters, %d layers, %d heads, width %d, context %d, "
                  "vocabulary %d, dropout %g; %d threads", size, self->config.n_layer,
                  self->config.n_head, self->config.n_embd, self->config.context_length,
                  self->config.vocab_size, self->config.dropout, gptd_nn_get_num_threads ());

  /* The checkpoint's last step, when a cancel interrupted its evaluation. */
  if (!self->pending || after_step (self, ctx, &local))
    while (!finished (self))
      {
        gboolean epoch_done = FALSE;
        if (!train_chunk (self, ctx, &epoch_done, &local))
          break;
        if (epoch_done)
          {
            if (!sample (self, ctx, &local))
              break;
            self->epoch++;
            self->batch_index = 0;
          }
      }

  if (local != NULL)
    {
      if (g_error_matches (local, G_IO_ERROR, G_IO_ERROR_CANCELLED)
          || gptd_stage_context_is_cancelled (ctx))
        {
          /* Keep the work done: the run can be resumed from here. The last step's
           * row is written now unless it is to be evaluated: then the checkpoint
           * keeps it pending for the resumed run, which evaluates exactly as an
           * uninterrupted run would have. */
          g_autoptr (GError) save_error = NULL;
          if (self->pending && !eval_due (self, self->step - 1))
            after_step_full (self, ctx, FALSE, NULL);
          if (self->step > 0 && !save_checkpoint (self, ctx, "cancelled", &save_error))
            gptd_stage_log (ctx, G_LOG_LEVEL_WARNING, "cannot write a checkpoint: %s",
                            save_error->message);
          gptd__train_metrics_write_plot (self->metrics, NULL);
        }
      g_propagate_error (error, g_steal_pointer (&local));
      return FALSE;
    }
  emit_progress (self, ctx, self->last_train_loss, self->last_val_loss,
                 gptd_lr_schedule_get (&self->schedule, MAX (self->step - 1, 0)), 0);
  return finish_run (self, ctx, error);
}

const GptdStageType gptd__gpt_trainer_type = {
  .name = "gpt-trainer",
  .description = "Pretrains a GPT-2 model by next-token prediction (AdamW, evaluation, "
                 "samples, checkpoints, exact resume)",
  .params = gpt_trainer_params,
  .inputs = gpt_trainer_inputs,
  .outputs = gpt_trainer_outputs,
  .check = gpt_trainer_check,
  .create = gpt_trainer_create,
  .run = gpt_trainer_run,
  .destroy = gpt_trainer_destroy,
};
