/* trainer.c: the training loop shared by gpt-trainer and classifier-trainer (see
 * trainer.h), the book's train_model_simple with checkpoints and exact resume.
 *
 * For each epoch and each batch of it: zero the gradients, compute the task's loss,
 * backward, clip (optionally), one AdamW step at the scheduled learning rate,
 * tokens_seen += batch numel, global_step += 1. After every eval-freq-th step
 * (global steps 0, eval-freq, 2 eval-freq, ... as in the book) the train and
 * validation losses (and a classifier's accuracies) are the means over eval-iter
 * batches of each split, without dropout (evaluate_model); after each epoch the
 * task's hook runs (a sample, or the accuracies).
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
 *
 * Under mpirun every rank runs this loop on its share of each batch (the input
 * stage cuts it, gptd/dist.h): each rank's loss is scaled by its share of the
 * batch's counted targets, the gradients are summed across the ranks while
 * backward runs, and every rank takes the same step, so the group trains as one
 * process on the whole batch would. The losses reported are the group's, and
 * rank 0 alone writes metrics, plots and checkpoints (gathering the AdamW shards
 * first with zero=1).
 */
#include "trainer.h"

#include <math.h>
#include <string.h>

#include <gio/gio.h>
#include <gptd/gpt2-file.h>

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


/* ---- Helpers ----------------------------------------------------------------------- */

static double
now_elapsed (GptdTrainer *self)
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
set_batches_per_epoch (GptdTrainer *self, guint64 n, GError **error)
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
emit_progress (GptdTrainer *self, GptdStageContext *ctx, double loss, double val_loss,
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

/* Writes a checkpoint on rank 0. @collective: every rank calls this at the same
 * point (a periodic or final checkpoint: the ZeRO shards are gathered and the
 * other ranks learn the directory); otherwise rank 0 writes alone (a cancel). */
static gboolean
save_checkpoint (GptdTrainer *self, GptdStageContext *ctx, const char *why,
                 gboolean collective, GError **error)
{
  GptdTrainingInfo info = { 0 };
  GptdCheckpointOptions options = {
    .vocab_json = self->vocab_json,
    .merges_txt = self->merges_txt,
    .keep = self->keep_checkpoints,
    .labels = (const char *const *) self->labels,
    .pooling = self->pooling,
    .sequence_length = self->sequence_length,
  };
  char buf[64];
  gboolean ok;

  if (self->saved_step == self->step && self->saved_dir != NULL)
    return TRUE;

  /* With zero=1 rank 0 gathers the whole AdamW state from the shards. */
  g_autoptr (GptdAdamW) whole = NULL;
  GptdAdamW *opt = self->opt;
  if (self->zero)
    {
      if (!collective)
        {
          gptd_stage_log (ctx, G_LOG_LEVEL_WARNING, "no %s checkpoint: with zero=1 the "
                          "optimizer state is spread over the ranks; the run resumes "
                          "from its last periodic checkpoint", why);
          return TRUE;
        }
      whole = gptd_dist_zero_gather_optimizer (self->model, self->opt, error);
      if (self->rank == 0 && whole == NULL)
        return FALSE;
      opt = whole;
    }
  if (self->rank != 0)
    {
      if (!collective)
        return TRUE;
      g_free (self->saved_dir);
      self->saved_dir = gptd_dist_broadcast_string (NULL, 0);
      self->saved_step = self->step;
      return TRUE;
    }

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
  ok = gptd_checkpoint_save (self->ckpt_root, self->model, opt, &info, &options,
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
  if (collective && self->size > 1)
    g_free (gptd_dist_broadcast_string (self->saved_dir, 0));
  return TRUE;
}

/* Reads the integer hparams.@key of a checkpoint's training state into @out
 * (@fallback when absent); it must lie in [@min, @max]. */
static gboolean
hparam_int (GHashTable *hp, const char *key, gint64 fallback, gint64 min, gint64 max,
            const char *where, gint64 *out, GError **error)
{
  const char *v = hp ? g_hash_table_lookup (hp, key) : NULL;
  if (v == NULL)
    {
      *out = fallback;
      return TRUE;
    }
  if (!g_ascii_string_to_signed (v, 10, min, max, out, NULL))
    {
      g_set_error (error, GPTD_STAGE_ERROR, GPTD_STAGE_ERROR_INPUT,
                   "resume: the training state in %s has hparams.%s “%s”, not an integer "
                   "in [%" G_GINT64_FORMAT ", %" G_GINT64_FORMAT "]", where, key, v, min, max);
      return FALSE;
    }
  return TRUE;
}

/* Reads the number hparams.@key into @out (@fallback when absent): finite and
 * not negative, or with @nan_ok also NaN (a loss not measured yet). */
static gboolean
hparam_double (GHashTable *hp, const char *key, double fallback, gboolean nan_ok,
               const char *where, double *out, GError **error)
{
  const char *v = hp ? g_hash_table_lookup (hp, key) : NULL;
  if (v == NULL)
    {
      *out = fallback;
      return TRUE;
    }
  char *end = NULL;
  *out = g_ascii_strtod (v, &end);
  if (*v == '\0' || *end != '\0' || (isnan (*out) ? !nan_ok : !isfinite (*out) || *out < 0))
    {
      g_set_error (error, GPTD_STAGE_ERROR, GPTD_STAGE_ERROR_INPUT,
                   "resume: the training state in %s has hparams.%s “%s”, not a finite "
                   "number of at least 0%s", where, key, v, nan_ok ? " (or nan)" : "");
      return FALSE;
    }
  return TRUE;
}

/* Loads the latest checkpoint of the run directory. Returns FALSE with @error on a
 * damaged checkpoint; TRUE with self->model still NULL when there is none. */
gboolean
gptd__trainer_resume (GptdTrainer *self, GptdStageContext *ctx, GError **error)
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
  /* Every value read back is range-checked (the state's own fields were, by
   * gptd_checkpoint_load()): a damaged or forged one stops the run by name. */
  g_autofree char *where = gptd_checkpoint_get_latest (self->ckpt_root, NULL);
  if (where == NULL)
    where = g_strdup (self->ckpt_root);
  GHashTable *hp = info.hparams;
  gint64 tokens_seen, batches_per_epoch, total_steps, threads;
  double train_loss, val_loss;
  gboolean ok =
    hparam_int (hp, HP_TOKENS_SEEN, 0, 0, G_MAXINT64, where, &tokens_seen, error)
    && hparam_double (hp, HP_ELAPSED, 0, FALSE, where, &self->elapsed_before, error)
    && hparam_int (hp, HP_BATCHES_PER_EPOCH, 0, 0, G_MAXINT64, where, &batches_per_epoch, error)
    && hparam_int (hp, HP_TOTAL_STEPS, 0, 0, G_MAXINT64, where, &total_steps, error)
    && hparam_double (hp, HP_TRAIN_LOSS, NAN, TRUE, where, &train_loss, error)
    && hparam_double (hp, HP_VAL_LOSS, NAN, TRUE, where, &val_loss, error)
    && hparam_int (hp, HP_THREADS, 0, 0, G_MAXINT32, where, &threads, error);
  if (ok && batches_per_epoch > 0 && info.batch_index > batches_per_epoch)
    {
      g_set_error (error, GPTD_STAGE_ERROR, GPTD_STAGE_ERROR_INPUT,
                   "resume: the training state in %s has batch_index %" G_GINT64_FORMAT
                   ", beyond the %" G_GINT64_FORMAT " batches of an epoch", where,
                   info.batch_index, batches_per_epoch);
      ok = FALSE;
    }
  gboolean pending = ok && hp != NULL && g_hash_table_contains (hp, HP_PENDING_LOSS)
                     && info.step > 0;
  double p_loss = NAN;
  if (pending)
    ok = hparam_double (hp, HP_PENDING_LOSS, NAN, TRUE, where, &p_loss, error)
         && hparam_double (hp, HP_PENDING_LR, 0, FALSE, where, &self->p_lr, error)
         && hparam_double (hp, HP_PENDING_TOKENS, 0, FALSE, where, &self->p_tokens, error)
         && hparam_double (hp, HP_PENDING_TIME, 0, FALSE, where, &self->p_time, error);
  if (!ok)
    {
      gptd_training_info_clear (&info);
      return FALSE;
    }
  self->config = *c;
  self->step = info.step;
  self->epoch = (guint32) info.epoch;
  self->batch_index = (guint64) info.batch_index;
  self->tokens_seen = (guint64) tokens_seen;
  self->batches_per_epoch = (guint64) batches_per_epoch;
  self->total_steps = total_steps;
  self->last_train_loss = train_loss;
  self->last_val_loss = val_loss;
  self->schedule.total_steps = self->total_steps;
  if (pending)
    {
      /* Cancelled before the last step's evaluation: it is done first. */
      self->pending = TRUE;
      self->p_loss = (float) p_loss;
    }
  if (threads != 0 && threads != gptd_nn_get_num_threads ())
    gptd_stage_log (ctx, G_LOG_LEVEL_WARNING,
                    "resume: the checkpoint was trained with %" G_GINT64_FORMAT " threads, "
                    "this run uses %d: the losses will differ in the last bits from an "
                    "uninterrupted run", threads, gptd_nn_get_num_threads ());
  /* The pipeline's optimizer settings apply from here on. */
  gptd_adamw_get_params (self->opt)->weight_decay = self->weight_decay;
  if (self->zero)
    {
      /* Every rank loaded the whole state: it keeps its shard. */
      GptdAdamW *shard = gptd_dist_zero_new_optimizer (self->model,
                                                       gptd_adamw_get_params (self->opt),
                                                       self->opt, error);
      if (shard == NULL)
        {
          gptd_training_info_clear (&info);
          return FALSE;
        }
      gptd_adamw_free (self->opt);
      self->opt = shard;
    }
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


/* The tokenizer is saved into the run directory, whence every checkpoint gets a copy
 * (vocab.json + merges.txt). */
gboolean
gptd__trainer_setup_tokenizer (GptdTrainer *self, const GptdParams *params,
                               const char *vocab, GError **error)
{
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
    return TRUE;
  self->bpe = gptd_bpe_load (vocab, error);
  if (self->bpe == NULL)
    {
      g_prefix_error (error, "vocab: ");
      return FALSE;
    }
  if (gptd_bpe_get_n_vocab (self->bpe) > (guint) self->config.vocab_size)
    g_warning ("the vocabulary %s has %u tokens, more than the model's %d",
                    gptd_bpe_get_source (self->bpe), gptd_bpe_get_n_vocab (self->bpe),
                    self->config.vocab_size);
  g_autofree char *dir = g_build_filename (self->run_dir, "vocab", NULL);
  if (self->rank == 0 && !gptd_bpe_save (self->bpe, dir, error))
    return FALSE;
  self->vocab_json = g_build_filename (dir, "encoder.json", NULL);
  self->merges_txt = g_build_filename (dir, "vocab.bpe", NULL);
  return TRUE;
}


/* ---- Evaluation -------------------------------------------------------- */

gboolean
gptd__trainer_measure (GptdTrainer *self, GptdStageContext *ctx, const char *split,
                       guint32 epoch, guint64 seed, gboolean shuffle, gint64 n,
                       double *out, double *accuracy, GError **error)
{
  Gptd__EpochRequest req = GPTD__EPOCH_REQUEST__INIT;
  double total = 0;
  gint64 count = 0;
  guint64 correct = 0, counted = 0;

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
      guint64 c = 0, k = 0;
      /* A rank's share of a last, partial batch may be empty. */
      gboolean empty = b->batch_size == 0 && self->size > 1;
      gboolean ok = empty
                    || (self->task->check_batch (self, b, error)
                        && self->task->forward (self, b, GPTD_GPT_FORWARD_NONE, &loss,
                                                accuracy ? &c : NULL,
                                                accuracy ? &k : NULL, error));
      protobuf_c_message_free_unpacked (msg, NULL);
      if (!ok)
        {
          g_prefix_error (error, "evaluating the %s split: ", split);
          return FALSE;
        }
      if (self->size > 1)
        {
          /* The batch's loss is the group's: the mean over all its targets. */
          double tn = empty ? 0 : (double) gptd_gpt_get_loss_count (self->model);
          double sums[4] = { tn > 0 ? loss * tn : 0, tn, (double) c, (double) k };
          gptd_dist_sum (sums, 4);
          loss = (float) (sums[0] / sums[1]);
          c = (guint64) sums[2];
          k = (guint64) sums[3];
        }
      correct += c;
      counted += k;
      total += loss;
      count++;
    }
  *out = count > 0 ? total / count : NAN;
  if (accuracy != NULL)
    *accuracy = counted > 0 ? (double) correct / (double) counted : NAN;
  return TRUE;
}

/* The book's evaluate_model: train and validation loss (and accuracy) over eval-iter
 * batches. The dropout RNG is left as it was, so evaluating never changes the
 * training. */
static gboolean
evaluate (GptdTrainer *self, GptdStageContext *ctx, gint64 global_step,
          double *train_loss, double *val_loss, double *train_acc, double *val_acc,
          GError **error)
{
  GptdRngState rng;
  gboolean ok;
  gboolean acc = self->task->accuracy;

  gptd_gpt_get_rng (self->model, &rng);
  ok = gptd__trainer_measure (self, ctx, "train", (guint32) global_step,
                              self->seed ^ GPTD__TRAINER_EVAL_SEED_SALT, TRUE,
                              self->eval_iter, train_loss, acc ? train_acc : NULL, error)
       && gptd__trainer_measure (self, ctx, "validation", 0, 0, FALSE, self->eval_iter,
                                 val_loss, acc ? val_acc : NULL, error);
  gptd_gpt_set_rng (self->model, &rng);
  return ok;
}


/* ---- Training ------------------------------------------------------------------------ */

/* Steps (from the current one) that can be trained before the trainer must stop
 * pulling batches to evaluate or checkpoint: the next such step is the last of the
 * chunk. 0 means no such step. */
static guint64
chunk_limit (GptdTrainer *self)
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
finished (GptdTrainer *self)
{
  return (self->max_steps > 0 && self->step >= self->max_steps)
         || (self->epochs > 0 && self->epoch >= self->epochs);
}

/* Whether global step @g is evaluated after it is taken. */
static gboolean
eval_due (GptdTrainer *self, gint64 g)
{
  return self->eval_freq > 0 && g >= 0 && g % self->eval_freq == 0;
}

/* After the step just taken (global step g = self->step - 1): evaluation (unless
 * @can_evaluate is FALSE), the metrics row, progress and a periodic checkpoint.
 * When the evaluation fails (a cancel), the step stays pending: nothing of it has
 * been written. */
static gboolean
after_step_full (GptdTrainer *self, GptdStageContext *ctx, gboolean can_evaluate,
                 GError **error)
{
  gint64 g = self->step - 1;
  double val = NAN, tr_acc = NAN, val_acc = NAN;
  double loss = self->p_loss, lr = self->p_lr;
  gboolean evaluated = FALSE;
  GptdTrainMetricsRow row;

  if (can_evaluate && eval_due (self, g))
    {
      double tr = NAN;
      if (!evaluate (self, ctx, g, &tr, &val, &tr_acc, &val_acc, error))
        return FALSE;
      evaluated = TRUE;
      self->last_eval_train_loss = tr;
      self->last_val_loss = val;
      GptdTrainEval e = { g, self->epoch, self->tokens_seen, tr, val, tr_acc, val_acc };
      if (self->metrics != NULL
          && (!gptd__train_metrics_add_eval (self->metrics, &e, error)
              || !gptd__train_metrics_write_plot (self->metrics, error)))
        return FALSE;
      /* As the book prints it. */
      gptd_stage_log (ctx, G_LOG_LEVEL_MESSAGE,
                      "Ep %u (Step %06" G_GINT64_FORMAT "): Train loss %.3f, Val loss %.3f",
                      self->epoch + 1, g, tr, val);
      if (self->task->accuracy)
        gptd_stage_log (ctx, G_LOG_LEVEL_INFO,
                        "Ep %u (Step %06" G_GINT64_FORMAT "): Train accuracy %.2f%%, "
                        "Val accuracy %.2f%%", self->epoch + 1, g, tr_acc * 100,
                        val_acc * 100);
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
  row.train_acc = tr_acc;
  row.val_acc = val_acc;
  if (self->metrics != NULL && !gptd__train_metrics_append (self->metrics, &row, error))
    return FALSE;

  double since = g_timer_elapsed (self->timer, NULL) - self->last_progress_time;
  if (evaluated || since >= 0.5 || self->step == self->total_steps)
    emit_progress (self, ctx, loss, val, lr, row.tokens_per_s);

  if (can_evaluate && self->checkpoint_every > 0 && self->step % self->checkpoint_every == 0)
    return save_checkpoint (self, ctx, "periodic", TRUE, error);
  return TRUE;
}

static gboolean
after_step (GptdTrainer *self, GptdStageContext *ctx, GError **error)
{
  return after_step_full (self, ctx, TRUE, error);
}

/* One optimizer step on @b: the book's inner loop. */
static gboolean
train_step (GptdTrainer *self, const Gptd__Batch *b, GError **error)
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
  /* A rank's share of a partial batch may be empty: it adds no gradient. */
  gboolean empty = B == 0 && self->size > 1;
  if (!empty && !self->task->check_batch (self, b, error))
    return FALSE;

  gptd_gpt_zero_grad (self->model);
  gboolean forward_ok = empty
    || self->task->forward (self, b, GPTD_GPT_FORWARD_TRAIN, &loss, NULL, NULL, error);
  float loss_scale = 1.0f;
  double rows = B;
  if (forward_ok && self->size > 1)
    {
      /* The group's loss is the mean over all the batch's counted targets, so
       * each rank's gradient counts by its share of them; the sums of the
       * scaled gradients are the whole batch's gradient. */
      double n = empty ? 0 : (double) gptd_gpt_get_loss_count (self->model);
      double sums[3] = { n > 0 ? loss * n : 0, n, B };
      gptd_dist_sum (sums, 3);
      loss_scale = (float) (n / sums[1]);
      loss = (float) (sums[0] / sums[1]);
      rows = sums[2];
    }
  if (forward_ok && !isfinite (loss))
    {
      /* Diverged (a learning rate far too high, ...): the weights are not
       * updated with it, and the run stops; the last checkpoint is as it was. */
      g_set_error (error, GPTD_STAGE_ERROR, GPTD_STAGE_ERROR_FAILED,
                   "the training loss is %s, not a finite number: training has diverged "
                   "(a lower lr may help); the weights were not updated at this step",
                   isnan (loss) ? "NaN" : loss > 0 ? "infinite" : "-infinite");
      g_prefix_error (error, "step %" G_GINT64_FORMAT " (epoch %u, batch %" G_GUINT64_FORMAT
                      "): ", self->step, self->epoch + 1, b->index);
      return FALSE;
    }
  if (!forward_ok || (!empty && !gptd_gpt_backward (self->model, loss_scale, error)))
    {
      g_prefix_error (error, "step %" G_GINT64_FORMAT " (epoch %u, batch %" G_GUINT64_FORMAT
                      "): ", self->step, self->epoch + 1, b->index);
      return FALSE;
    }
  self->comm_wait += gptd_dist_grads_wait (self->grads);
  if (self->clip > 0)
    gptd_gpt_clip_grad_norm (self->model, self->clip);
  float lr = gptd_lr_schedule_get (&self->schedule, self->step);
  gptd_adamw_step (self->opt, self->model, lr);
  if (self->zero)
    gptd_dist_zero_gather_weights (self->model);

  self->tokens_seen += (guint64) rows * T;
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
train_chunk (GptdTrainer *self, GptdStageContext *ctx, gboolean *epoch_done, GError **error)
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
          guint64 seen = self->tokens_seen;
          ok = train_step (self, b, error);
          self->p_tokens = (double) (self->tokens_seen - seen);
          self->p_time = g_timer_elapsed (self->timer, NULL) - t0;
        }
      protobuf_c_message_free_unpacked (msg, NULL);
      if (!ok)
        return FALSE;
    }
}

/* The model a LoRA run delivers, beside its checkpoints (which keep the
 * adapters apart, for exact resume): the adapters merged into a plain model
 * directory, or an adapter directory naming init= as its base.  saved_dir
 * then names it. */
static gboolean
export_lora (GptdTrainer *self, GptdStageContext *ctx, GError **error)
{
  g_autofree char *dir = NULL;
  const char *const *labels = (const char *const *) self->labels;
  if (self->lora_save_adapter)
    {
      dir = g_build_filename (self->run_dir, "adapter", NULL);
      g_autofree char *base = g_canonicalize_filename (self->init_dir, NULL);
      if (!gptd_gpt_dir_save_adapter (self->model, dir, base, self->vocab_json,
                                      self->merges_txt, labels, self->pooling,
                                      self->sequence_length, error))
        return FALSE;
    }
  else
    {
      /* Training is over: the model itself is merged. */
      dir = g_build_filename (self->run_dir, "merged", NULL);
      if (!gptd_gpt_merge_lora (self->model, error)
          || !gptd_gpt_dir_save_classifier (self->model, dir, self->vocab_json,
                                            self->merges_txt, labels, self->pooling,
                                            self->sequence_length, error))
        return FALSE;
    }
  gptd_stage_log (ctx, G_LOG_LEVEL_INFO, "LoRA: %s model in %s",
                  self->lora_save_adapter ? "adapter" : "merged", dir);
  g_free (self->saved_dir);
  self->saved_dir = g_steal_pointer (&dir);
  return TRUE;
}

static gboolean
finish_run (GptdTrainer *self, GptdStageContext *ctx, GError **error)
{
  Gptd__Model out = GPTD__MODEL__INIT;

  if (!save_checkpoint (self, ctx, "final", TRUE, error))
    return FALSE;
  if (self->metrics != NULL && !gptd__train_metrics_write_plot (self->metrics, error))
    return FALSE;
  if (self->task->finish != NULL && !self->task->finish (self, ctx, error))
    return FALSE;
  if (gptd_gpt_get_lora_rank (self->model) > 0)
    {
      /* Rank 0 writes it; the others name it once it is there. */
      char *dir = NULL;
      if (self->rank == 0 && !export_lora (self, ctx, error))
        return FALSE;
      if (self->size > 1)
        {
          dir = gptd_dist_broadcast_string (self->rank == 0 ? self->saved_dir : NULL, 0);
          g_free (self->saved_dir);
          self->saved_dir = dir;
        }
    }
  if (self->size > 1)
    gptd_stage_log (ctx, G_LOG_LEVEL_INFO,
                    "%d ranks: %.1f s of this session waiting for gradient sums (%.1f%%)",
                    self->size, self->comm_wait,
                    100 * self->comm_wait / MAX (g_timer_elapsed (self->timer, NULL), 1e-9));
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

gboolean
gptd__trainer_run (GptdTrainer *self, GptdStageContext *ctx, GError **error)
{
  g_autoptr (GError) local = NULL;

  /* A pending step (its evaluation was cancelled) has no rows yet: drop any. */
  if (self->rank == 0)
    {
      self->metrics = gptd__train_metrics_open_full (self->run_dir, self->step > 0,
                                                     self->step - (self->pending ? 1 : 0),
                                                     self->task->accuracy, error);
      if (self->metrics == NULL)
        return FALSE;
    }
  self->grads = gptd_dist_grads_new (self->model);
  /* Each rank drops out its own rows with masks of its own. */
  gptd_gpt_set_dropout_stream (self->model, (guint64) self->rank);
  self->timer = g_timer_new ();
  self->session_first_step = self->step;
  self->last_progress_time = -1;

  g_autofree char *size = g_strdup_printf ("%.1fM", gptd_gpt_n_params (self->model) / 1e6);
  gptd_stage_log (ctx, G_LOG_LEVEL_INFO,
                  "model: %s parameters, %d layers, %d heads, width %d, context %d, "
                  "vocabulary %d, dropout %g; %d threads", size, self->config.n_layer,
                  self->config.n_head, self->config.n_embd, self->config.context_length,
                  self->config.vocab_size, self->config.dropout, gptd_nn_get_num_threads ());
  if (self->size > 1)
    {
      size_t moments = 0;
      gptd_adamw_get_moments (self->opt, NULL, NULL, &moments);
      g_autofree char *shard = self->zero
        ? g_strdup_printf ("; AdamW state sharded (zero=1): %.2fM of %.2fM moments per rank",
                           2 * moments / 1e6,
                           2 * (gptd_gpt_n_params (self->model)
                                - gptd_gpt_get_grads_offset (self->model)) / 1e6)
        : g_strdup ("");
      gptd_stage_log (ctx, G_LOG_LEVEL_INFO,
                      "data-parallel over %d ranks: each trains on its share of every "
                      "batch%s", self->size, shard);
    }

  /* The checkpoint's last step, when a cancel interrupted its evaluation. */
  if (!self->pending || after_step (self, ctx, &local))
    while (!finished (self))
      {
        gboolean epoch_done = FALSE;
        if (!train_chunk (self, ctx, &epoch_done, &local))
          break;
        if (epoch_done)
          {
            if (self->task->epoch_end != NULL
                && !self->task->epoch_end (self, ctx, &local))
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
          if (self->step > 0
              && !save_checkpoint (self, ctx, "cancelled", self->size == 1, &save_error))
            gptd_stage_log (ctx, G_LOG_LEVEL_WARNING, "cannot write a checkpoint: %s",
                            save_error->message);
          if (self->metrics != NULL)
            gptd__train_metrics_write_plot (self->metrics, NULL);
        }
      g_propagate_error (error, g_steal_pointer (&local));
      return FALSE;
    }
  emit_progress (self, ctx, self->last_train_loss, self->last_val_loss,
                 gptd_lr_schedule_get (&self->schedule, MAX (self->step - 1, 0)), 0);
  return finish_run (self, ctx, error);
}


/* ---- Setting up ------------------------------------------------------------------- */

const char *const gptd__trainer_lora_save_choices[] = { "merged", "adapter", NULL };

gboolean
gptd__trainer_check_params (const GptdParams *params, GError **error)
{
  gboolean lora = gptd_params_get_int (params, "lora-rank") > 0;
  if (!lora && (gptd_params_is_set (params, "lora-alpha")
                || gptd_params_is_set (params, "lora-save")))
    {
      g_set_error (error, GPTD_STAGE_ERROR, GPTD_STAGE_ERROR_FAILED,
                   "%s: needs lora-rank (1 or more)",
                   gptd_params_is_set (params, "lora-alpha") ? "lora-alpha" : "lora-save");
      return FALSE;
    }
  if (lora && g_str_equal (gptd_params_get_string (params, "lora-save"), "adapter")
      && !gptd_params_is_set (params, "init"))
    {
      g_set_error (error, GPTD_STAGE_ERROR, GPTD_STAGE_ERROR_FAILED,
                   "lora-save: adapter needs init= (the base model directory the "
                   "adapters are saved against)");
      return FALSE;
    }
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
  return TRUE;
}

void
gptd__trainer_init (GptdTrainer *self, GptdStageContext *ctx, const GptdParams *params,
                    const GptdTrainerTask *task, gpointer task_data)
{
  self->task = task;
  self->task_data = task_data;
  self->stage_name = g_strdup (gptd_stage_context_get_name (ctx));
  self->model_name = g_strdup (gptd_params_has (params, "name")
                                 ? gptd_params_get_string (params, "name")
                                 : self->stage_name);
  self->init_dir = g_strdup (gptd_params_get_string (params, "init"));
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
  self->checkpoint_every = gptd_params_get_int (params, "checkpoint-every");
  self->keep_checkpoints = gptd_params_get_int (params, "keep-checkpoints");
  self->lora_rank = gptd_params_get_int (params, "lora-rank");
  self->lora_alpha = gptd_params_is_set (params, "lora-alpha")
                       ? (float) gptd_params_get_double (params, "lora-alpha")
                       : (float) self->lora_rank;
  self->lora_save_adapter = g_str_equal (gptd_params_get_string (params, "lora-save"),
                                         "adapter");
  self->rank = gptd_dist_rank ();
  self->size = gptd_dist_size ();
  self->zero = self->size > 1 && gptd_params_get_int (params, "zero") == 1;
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
}

gboolean
gptd__trainer_start (GptdTrainer *self, GError **error)
{
  GptdRngState rng = { self->seed, 0 };
  gptd_gpt_set_rng (self->model, &rng);
  if (self->lora_rank > 0)
    {
      /* Adapters on the frozen model: the gradients and the AdamW moments,
       * kept from the first unfrozen tensor on, cover the adapters (and a
       * classifier's head) only. */
      g_autoptr (GError) local = NULL;
      if (!gptd_gpt_add_lora (self->model, self->lora_rank, self->lora_alpha, self->seed,
                              &local))
        {
          g_set_error (error, GPTD_STAGE_ERROR, GPTD_STAGE_ERROR_FAILED, "lora-rank: %s",
                       local->message);
          return FALSE;
        }
      gptd_gpt_set_frozen (self->model, "*", TRUE);
      gptd_gpt_set_frozen (self->model, "*.lora_?", FALSE);
      if (self->lora_train_head)
        gptd_gpt_set_frozen (self->model, "lm_head.*", FALSE);
    }
  GptdAdamWParams ap;
  gptd_adamw_params_init (&ap);
  ap.weight_decay = self->weight_decay;
  self->opt = self->zero ? gptd_dist_zero_new_optimizer (self->model, &ap, NULL, error)
                         : gptd_adamw_new (self->model, &ap, error);
  return self->opt != NULL;
}

void
gptd__trainer_clear (GptdTrainer *self)
{
  gptd__train_metrics_free (self->metrics);
  gptd_dist_grads_free (self->grads);
  gptd_adamw_free (self->opt);
  gptd_gpt_free (self->model);
  if (self->bpe)
    gptd_bpe_unref (self->bpe);
  if (self->timer)
    g_timer_destroy (self->timer);
  g_free (self->stage_name);
  g_free (self->model_name);
  g_free (self->init_dir);
  g_strfreev (self->labels);
  g_free (self->pooling);
  g_free (self->run_dir);
  g_free (self->ckpt_root);
  g_free (self->vocab_json);
  g_free (self->merges_txt);
  g_free (self->saved_dir);
  memset (self, 0, sizeof *self);
}
