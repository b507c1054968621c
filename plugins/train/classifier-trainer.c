/* classifier-trainer.c: the classifier-trainer stage (gptd.Batch with labels ->
 * gptd.Model), the book's classification fine-tuning (chapter 6): a GPT-2 whose
 * output head is replaced by a num-classes linear layer (with a bias, as the book's
 * torch.nn.Linear), everything frozen but the trainable part (the book: the last
 * block, the final LayerNorm and the head), the cross-entropy of the logits at one
 * position of each row: the last (pooling=last, the book's, padding included) or
 * the last real token (pooling=last-token, from the batch's lengths).
 *
 * The loop is trainer.c's; evaluations also measure accuracy (the book's
 * calc_accuracy_loader over eval-iter batches), each epoch ends with the train and
 * validation accuracies, and the run ends with the accuracies over the whole train,
 * validation and test splits, written to accuracy.json. The model directory is
 * Hugging Face's GPT2ForSequenceClassification layout (score.weight, score.bias,
 * id2label).
 */
#include "train-plugin.h"
#include "trainer.h"
#include <gptd/windows.h>

#include <math.h>
#include <string.h>

#include <gptd/atomic-file.h>
#include <gptd/gpt2-file.h>

static const char *const model_choices[] = {
  "gpt2-small", "gpt2-medium", "gpt2-large", "gpt2-xl", "custom", NULL
};

static const char *const pooling_choices[] = { "last", "last-token", NULL };

static const GptdParamSpec classifier_trainer_params[] = {
  { "init", GPTD_PARAM_PATH, NULL, 0, 0, NULL,
    "A GPT-2 model directory (e.g. OpenAI's, from tools/download-model.sh) whose head is "
    "replaced by a new classifier head, or a classifier directory whose head training "
    "continues", GPTD_PARAM_EXISTS },
  { "model", GPTD_PARAM_ENUM, NULL, 0, 0, model_choices,
    "Train from random weights instead of init=: a GPT-2 preset, or custom (gpt2-small's "
    "values as the base for the overrides below)", 0 },
  { "n-layer", GPTD_PARAM_INT, NULL, 1, 1024, NULL, "Transformer blocks (with model=)", 0 },
  { "n-head", GPTD_PARAM_INT, NULL, 1, 1024, NULL, "Attention heads (with model=)", 0 },
  { "n-embd", GPTD_PARAM_INT, NULL, 1, 65536, NULL, "Embedding width (with model=)", 0 },
  { "context-length", GPTD_PARAM_INT, NULL, 1, 1 << 20, NULL,
    "Positions of the model (with model=)", 0 },
  { "vocab-size", GPTD_PARAM_INT, NULL, 1, 1 << 24, NULL,
    "Token ids of the model (with model=)", 0 },
  { "qkv-bias", GPTD_PARAM_BOOL, NULL, 0, 0, NULL,
    "Bias in the query/key/value projection (with model=)", 0 },
  { "dropout", GPTD_PARAM_DOUBLE, NULL, 0, 1, NULL,
    "Dropout probability during training (default: the model's)", GPTD_PARAM_MAX_EXCLUSIVE },
  { "num-classes", GPTD_PARAM_INT, NULL, 1, 1 << 20, NULL,
    "Rows of the classifier head (default: the number of the input's class names)", 0 },
  { "trainable", GPTD_PARAM_STRING, "last-block", 0, 0, NULL,
    "What is trained: last-block (the book: the last block, the final LayerNorm and the "
    "head), last-N (the last N blocks, the final LayerNorm and the head), head, or all", 0 },
  { "pooling", GPTD_PARAM_ENUM, "last", 0, 0, pooling_choices,
    "Where the head reads each row: last (the last position, padding included, as the "
    "book) or last-token (the last real token, from the batch's lengths)", 0 },
  GPTD__TRAINER_COMMON_PARAMS ("5", "0.00005", "50"),
  { "checkpoint-every", GPTD_PARAM_INT, "0", 0, 1e15, NULL,
    "Write a checkpoint every this many steps (one is always written at the end and "
    "when the run is cancelled); 0 for none in between", 0 },
  { "keep-checkpoints", GPTD_PARAM_INT, "2", 1, 1000, NULL,
    "Checkpoints kept in the run directory (the newest)", 0 },
  { "vocab", GPTD_PARAM_STRING, NULL, 0, 0, NULL,
    "Tokenizer copied into the model directory: \"gpt2\" (from $GPTD_DATA_DIR), a "
    "directory with encoder.json + vocab.bpe or vocab.json + merges.txt; default: init='s "
    "own, else none", 0 },
  { "name", GPTD_PARAM_STRING, NULL, 0, 0, NULL,
    "Name of the trained model in the Model message (default: the stage name)", 0 },
  { NULL }
};

static const GptdPadSpec classifier_trainer_inputs[] = {
  { "default", "gptd.Batch", GPTD_PAD_EPOCHS },
  { NULL }
};

static const GptdPadSpec classifier_trainer_outputs[] = {
  { "default", "gptd.Model", 0 },
  { NULL }
};

/* Request seeds of the train-accuracy measurements at epoch ends. */
#define EPOCH_ACC_SALT G_GUINT64_CONSTANT (0x61636331)

/* What classifier-trainer adds to the shared trainer. */
typedef struct {
  GptdTrainer t;
  int num_classes;        /* 0: from the input's class names */
  int trainable_blocks;   /* -1: all parameters */
  gboolean last_token;
  gboolean dropout_set;
  float dropout;
  gint32 *positions;      /* (B) of the current batch */
  gsize n_positions;
} ClassifierTrainer;

/* ---- Parameters ----------------------------------------------------------------- */

/* Parses trainable=: the number of trainable blocks (0 for head, -1 for all). */
static gboolean
parse_trainable (const char *s, int *blocks, GError **error)
{
  if (g_str_equal (s, "head"))
    *blocks = 0;
  else if (g_str_equal (s, "all"))
    *blocks = -1;
  else if (g_str_equal (s, "last-block"))
    *blocks = 1;
  else if (g_str_has_prefix (s, "last-"))
    {
      char *end = NULL;
      gint64 n = g_ascii_strtoll (s + 5, &end, 10);
      if (end == s + 5 || *end != '\0' || n < 1 || n > 1 << 20)
        goto bad;
      *blocks = (int) n;
    }
  else
    goto bad;
  return TRUE;
bad:
  g_set_error (error, GPTD_STAGE_ERROR, GPTD_STAGE_ERROR_FAILED,
               "trainable: \"%s\" is not last-block, last-N (N >= 1 blocks), head or all", s);
  return FALSE;
}

static gboolean
build_config (const GptdParams *params, GptdGptConfig *config, GError **error)
{
  const char *model = gptd_params_get_string (params, "model");
  if (!gptd_gpt_config_preset (g_str_equal (model, "custom") ? "gpt2-small" : model, config,
                               error))
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
  if (gptd_params_is_set (params, "qkv-bias"))
    config->qkv_bias = gptd_params_get_bool (params, "qkv-bias");
  if (gptd_params_is_set (params, "dropout"))
    config->dropout = gptd_params_get_double (params, "dropout");
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
classifier_trainer_check (const GptdParams *params, GError **error)
{
  static const char *const shape_keys[] = {
    "n-layer", "n-head", "n-embd", "context-length", "vocab-size", "qkv-bias", NULL
  };
  gboolean init = gptd_params_is_set (params, "init");
  gboolean model = gptd_params_is_set (params, "model");
  int blocks;

  if (init == model)
    {
      g_set_error (error, GPTD_STAGE_ERROR, GPTD_STAGE_ERROR_FAILED,
                   init ? "model: give either init= or model=, not both"
                        : "init: give a GPT-2 model directory (init=) or a shape to train "
                          "from scratch (model=)");
      return FALSE;
    }
  for (guint i = 0; init && shape_keys[i]; i++)
    if (gptd_params_is_set (params, shape_keys[i]))
      {
        g_set_error (error, GPTD_STAGE_ERROR, GPTD_STAGE_ERROR_FAILED,
                     "%s: the shape of an init= model comes from its config.json; remove "
                     "%s (only dropout may be changed)", shape_keys[i], shape_keys[i]);
        return FALSE;
      }
  GptdGptConfig config;
  if (model && !build_config (params, &config, error))
    return FALSE;
  if (!parse_trainable (gptd_params_get_string (params, "trainable"), &blocks, error))
    return FALSE;
  if (gptd_params_get_int (params, "lora-rank") > 0 && gptd_params_is_set (params, "trainable"))
    {
      g_set_error (error, GPTD_STAGE_ERROR, GPTD_STAGE_ERROR_FAILED,
                   "trainable: with lora-rank the adapters and the head train; remove "
                   "trainable=");
      return FALSE;
    }
  return gptd__trainer_check_params (params, error);
}

/* ---- The task ----------------------------------------------------------------------- */

static gboolean
cls_check_batch (GptdTrainer *t, const Gptd__Batch *b, GError **error)
{
  ClassifierTrainer *self = t->task_data;
  int B = b->batch_size, T = b->seq_len;
  int n_out = t->config.n_out;

  if (B < 1 || b->n_inputs != (gsize) B * T || b->n_labels != (gsize) B
      || (self->last_token && b->n_lengths != (gsize) B))
    {
      g_set_error (error, GPTD_STAGE_ERROR, GPTD_STAGE_ERROR_INPUT,
                   "%s batch %" G_GUINT64_FORMAT " of epoch %u is malformed: %d x %d with %"
                   G_GSIZE_FORMAT " inputs, %" G_GSIZE_FORMAT " labels and %" G_GSIZE_FORMAT
                   " lengths (a classifier needs one label per row%s)", b->split, b->index,
                   b->epoch + 1, B, T, b->n_inputs, b->n_labels, b->n_lengths,
                   self->last_token ? " and, for pooling=last-token, one length" : "");
      return FALSE;
    }
  /* The length training rows are padded to, for the model directory: pooling=last
   * reads the last padded position, so inputs must be padded the same way. */
  if (b->split != NULL && g_str_equal (b->split, "train"))
    t->sequence_length = MAX (t->sequence_length, T);
  for (int i = 0; i < B; i++)
    {
      if (b->labels[i] < 0 || b->labels[i] >= n_out)
        {
          g_set_error (error, GPTD_STAGE_ERROR, GPTD_STAGE_ERROR_INPUT,
                       "%s batch %" G_GUINT64_FORMAT " of epoch %u: row %d has label %d, "
                       "outside the %d classes of the head (num-classes)", b->split,
                       b->index, b->epoch + 1, i, b->labels[i], n_out);
          return FALSE;
        }
      if (self->last_token && (b->lengths[i] < 1 || b->lengths[i] > (guint32) T))
        {
          g_set_error (error, GPTD_STAGE_ERROR, GPTD_STAGE_ERROR_INPUT,
                       "%s batch %" G_GUINT64_FORMAT " of epoch %u: row %d has length %u, "
                       "outside 1..%d", b->split, b->index, b->epoch + 1, i, b->lengths[i],
                       T);
          return FALSE;
        }
    }
  return TRUE;
}

/* The cross-entropy of the logits at each row's pooled position, and how many rows
 * the arg-max predicts right. */
static gboolean
cls_forward (GptdTrainer *t, const Gptd__Batch *b, GptdGptForwardFlags flags, float *loss,
             guint64 *correct, guint64 *counted, GError **error)
{
  ClassifierTrainer *self = t->task_data;
  int B = b->batch_size, T = b->seq_len;
  gboolean ok;

  if (self->last_token)
    {
      if (self->n_positions < (gsize) B)
        {
          self->positions = g_renew (gint32, self->positions, B);
          self->n_positions = B;
        }
      for (int i = 0; i < B; i++)
        self->positions[i] = (gint32) b->lengths[i] - 1;
      ok = gptd_gpt_forward_pooled (t->model, b->inputs, self->positions, b->labels, B, T,
                                    flags, loss, error);
    }
  else
    ok = gptd_gpt_forward (t->model, b->inputs, b->labels, B, T,
                           flags | GPTD_GPT_FORWARD_LAST_ONLY, loss, error);
  if (!ok || correct == NULL)
    return ok;
  int V = 0;
  const float *logits = gptd_gpt_get_logits (t->model, NULL, NULL, &V);
  for (int i = 0; i < B; i++)
    {
      int best = 0;
      for (int k = 1; k < V; k++)
        if (logits[(gsize) i * V + k] > logits[(gsize) i * V + best])
          best = k;
      *correct += best == b->labels[i];
    }
  *counted += B;
  return TRUE;
}

/* The book prints the accuracies over eval-iter batches after each epoch. */
static gboolean
cls_epoch_end (GptdTrainer *t, GptdStageContext *ctx, GError **error)
{
  double tl, vl, ta = NAN, va = NAN;
  GptdRngState rng;

  gptd_gpt_get_rng (t->model, &rng);
  gboolean ok = gptd__trainer_measure (t, ctx, "train", t->epoch, t->seed ^ EPOCH_ACC_SALT,
                                       TRUE, t->eval_iter, &tl, &ta, error)
                && gptd__trainer_measure (t, ctx, "validation", 0, 0, FALSE, t->eval_iter,
                                          &vl, &va, error);
  gptd_gpt_set_rng (t->model, &rng);
  if (!ok)
    return FALSE;
  gptd_stage_log (ctx, G_LOG_LEVEL_MESSAGE,
                  "Epoch %u: Training accuracy: %.2f%% | Validation accuracy: %.2f%%",
                  t->epoch + 1, ta * 100, va * 100);
  return TRUE;
}

static void
json_value (GString *s, double v)
{
  char buf[G_ASCII_DTOSTR_BUF_SIZE];
  if (isnan (v))
    g_string_append (s, "null");
  else
    g_string_append (s, g_ascii_formatd (buf, sizeof buf, "%.6f", v));
}

/* The accuracies over the whole train, validation and test splits. */
static gboolean
cls_finish (GptdTrainer *t, GptdStageContext *ctx, GError **error)
{
  static const char *const splits[] = { "train", "validation", "test" };
  double acc[3], loss[3];
  GptdRngState rng;

  gptd_gpt_get_rng (t->model, &rng);
  for (int i = 0; i < 3; i++)
    if (!gptd__trainer_measure (t, ctx, splits[i], 0, 0, FALSE, 0, &loss[i], &acc[i], error))
      {
        gptd_gpt_set_rng (t->model, &rng);
        return FALSE;
      }
  gptd_gpt_set_rng (t->model, &rng);

  g_autoptr (GString) s = g_string_new ("{\n");
  for (int i = 0; i < 3; i++)
    {
      g_string_append_printf (s, "  \"%s_accuracy\": ", splits[i]);
      json_value (s, acc[i]);
      g_string_append_printf (s, ",\n  \"%s_loss\": ", splits[i]);
      json_value (s, loss[i]);
      g_string_append (s, i < 2 ? ",\n" : "\n");
    }
  g_string_append (s, "}\n");
  g_autofree char *path = g_build_filename (t->run_dir, "accuracy.json", NULL);
  /* With several ranks (the accuracies are the group's), rank 0 writes. */
  if (t->rank != 0)
    return TRUE;
  if (!gptd_atomic_file_set_contents (path, s->str, s->len, error))
    return FALSE;
  if (t->saved_dir != NULL)
    {
      g_autofree char *copy = g_build_filename (t->saved_dir, "accuracy.json", NULL);
      if (!gptd_atomic_file_set_contents (copy, s->str, s->len, error))
        return FALSE;
    }
  /* As the book prints them. */
  gptd_stage_log (ctx, G_LOG_LEVEL_MESSAGE,
                  "Training accuracy: %.2f%%, Validation accuracy: %.2f%%, Test accuracy: "
                  "%.2f%%", acc[0] * 100, acc[1] * 100, acc[2] * 100);
  return TRUE;
}

static const GptdTrainerTask classifier_task = {
  .check_batch = cls_check_batch,
  .forward = cls_forward,
  .epoch_end = cls_epoch_end,
  .finish = cls_finish,
  .accuracy = TRUE,
};

/* ---- The model ---------------------------------------------------------------------- */

/* torch.nn.Linear's default initialisation of a new head: weight and bias uniform in
 * +-1/sqrt(n_embd), from a counter-based stream of @seed. */
static void
init_head (GptdGpt *model, guint64 seed)
{
  guint64 key = gptd__windows_shuffle_key (seed, G_GUINT64_CONSTANT (0x68656164), 0, 0);
  guint64 counter = 0;
  const char *names[] = { "lm_head.weight", "lm_head.bias" };
  double bound = 1.0 / sqrt ((double) gptd_gpt_get_config (model)->n_embd);

  for (guint i = 0; i < G_N_ELEMENTS (names); i++)
    {
      const GptdNnTensor *t = gptd_gpt_lookup_tensor (model, names[i]);
      for (size_t j = 0; t != NULL && j < t->numel; j++)
        {
          double u = (gptd__windows_random (key, counter++) >> 11) * 0x1.0p-53;
          t->data[j] = (float) ((2.0 * u - 1.0) * bound);
        }
    }
}

/* A copy of @base with a new head of @n_classes rows (and a bias). */
static GptdGpt *
replace_head (GptdGpt *base, int n_classes, guint64 seed, GError **error)
{
  GptdGptConfig c = *gptd_gpt_get_config (base);
  c.tie_embeddings = FALSE;
  c.head_bias = TRUE;
  c.n_out = n_classes;
  GptdGpt *m = gptd_gpt_new (&c, error);
  if (m == NULL)
    return NULL;
  for (guint i = 0; i < gptd_gpt_n_tensors (m); i++)
    {
      const GptdNnTensor *t = gptd_gpt_get_tensor (m, i);
      const GptdNnTensor *from = gptd_gpt_lookup_tensor (base, t->name);
      if (from != NULL && !g_str_has_prefix (t->name, "lm_head."))
        memcpy (t->data, from->data, t->numel * sizeof (float));
    }
  init_head (m, seed);
  return m;
}

/* Freezes what trainable= leaves out. */
static void
apply_trainable (ClassifierTrainer *self)
{
  GptdGpt *m = self->t.model;
  int L = self->t.config.n_layer;

  /* With LoRA the adapters and the head train (gptd__trainer_start()). */
  if (self->trainable_blocks < 0 || self->t.lora_rank > 0)
    return;
  gptd_gpt_set_frozen (m, "*", TRUE);
  gptd_gpt_set_frozen (m, "lm_head.*", FALSE);
  if (self->trainable_blocks == 0)
    return;
  gptd_gpt_set_frozen (m, "ln_f.*", FALSE);
  for (int l = MAX (0, L - self->trainable_blocks); l < L; l++)
    {
      g_autofree char *pattern = g_strdup_printf ("h.%d.*", l);
      gptd_gpt_set_frozen (m, pattern, FALSE);
    }
}

/* The class names of the input: the first batch of the train split. */
static gboolean
read_label_names (GptdTrainer *t, GptdStageContext *ctx, GError **error)
{
  Gptd__EpochRequest req = GPTD__EPOCH_REQUEST__INIT;

  req.split = (char *) "train";
  req.seed = t->seed;
  req.shuffle = TRUE;
  req.limit = 1;
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
                       "the input ended before its first batch");
          return FALSE;
        }
      if (r == GPTD_PULL_END_OF_EPOCH)
        {
          protobuf_c_message_free_unpacked (msg, NULL);
          return TRUE;
        }
      const Gptd__Batch *b = (const Gptd__Batch *) msg;
      if (t->labels == NULL && b->n_label_names > 0)
        {
          t->labels = g_new0 (char *, b->n_label_names + 1);
          for (gsize i = 0; i < b->n_label_names; i++)
            t->labels[i] = g_strdup (b->label_names[i]);
        }
      protobuf_c_message_free_unpacked (msg, NULL);
    }
}

/* Builds the model once the class names are known. */
static gboolean
build_model (ClassifierTrainer *self, GptdStageContext *ctx, GError **error)
{
  GptdTrainer *t = &self->t;
  guint n_labels = t->labels ? g_strv_length (t->labels) : 0;
  int n_classes = self->num_classes ? self->num_classes : (int) n_labels;

  if (n_classes == 0)
    {
      g_set_error (error, GPTD_STAGE_ERROR, GPTD_STAGE_ERROR_INPUT,
                   "num-classes: the input names no classes (its batches have no "
                   "label_names); give num-classes");
      return FALSE;
    }
  if (n_classes < (int) n_labels)
    {
      g_autofree char *names = g_strjoinv (", ", t->labels);
      g_set_error (error, GPTD_STAGE_ERROR, GPTD_STAGE_ERROR_FAILED,
                   "num-classes: %d is smaller than the %u classes of the input (%s)",
                   n_classes, n_labels, names);
      return FALSE;
    }

  g_autoptr (GptdGpt) base = NULL;
  if (t->init_dir != NULL)
    {
      /* A LoRA run's checkpoint starts merged. */
      base = gptd_gpt_dir_load (t->init_dir, error);
      if (base == NULL || !gptd_gpt_merge_lora (base, error))
        {
          g_prefix_error (error, "init: ");
          return FALSE;
        }
    }
  else
    {
      base = gptd_gpt_new (&t->config, error);
      if (base == NULL)
        return FALSE;
      gptd_gpt_init_weights (base, t->seed);
    }
  const GptdGptConfig *bc = gptd_gpt_get_config (base);
  gboolean is_classifier = bc->n_out != 0 && !bc->tie_embeddings;
  if (is_classifier && bc->n_out != n_classes)
    {
      g_set_error (error, GPTD_STAGE_ERROR, GPTD_STAGE_ERROR_FAILED,
                   "init: %s holds a classifier head of %d classes, but %d are wanted "
                   "(num-classes or the input's classes); start from a plain GPT-2 "
                   "directory to get a new head", t->init_dir, bc->n_out, n_classes);
      return FALSE;
    }
  GptdGptConfig c = *bc;
  if (self->dropout_set)
    c.dropout = self->dropout;
  if (is_classifier)
    {
      /* Training continues with the stored head. */
      t->model = gptd_gpt_new (&c, error);
      if (t->model == NULL)
        return FALSE;
      memcpy (gptd_gpt_get_params (t->model), gptd_gpt_get_params (base),
              gptd_gpt_n_params (base) * sizeof (float));
      gptd_stage_log (ctx, G_LOG_LEVEL_INFO, "init: %s is a classifier of %d classes; its "
                      "head is trained further", t->init_dir, n_classes);
    }
  else
    {
      GptdGpt *with_dropout = NULL;
      if (self->dropout_set && c.dropout != bc->dropout)
        {
          with_dropout = gptd_gpt_new (&c, error);
          if (with_dropout == NULL)
            return FALSE;
          memcpy (gptd_gpt_get_params (with_dropout), gptd_gpt_get_params (base),
                  gptd_gpt_n_params (base) * sizeof (float));
        }
      t->model = replace_head (with_dropout ? with_dropout : base, n_classes, t->seed, error);
      gptd_gpt_free (with_dropout);
      if (t->model == NULL)
        return FALSE;
    }
  t->config = *gptd_gpt_get_config (t->model);
  return gptd__trainer_start (t, error);
}

/* ---- Creation ---------------------------------------------------------------------- */

static void
classifier_trainer_destroy (gpointer data)
{
  ClassifierTrainer *self = data;
  if (self == NULL)
    return;
  gptd__trainer_clear (&self->t);
  g_free (self->positions);
  g_free (self);
}

static gpointer
classifier_trainer_create (GptdStageContext *ctx, const GptdParams *params, GError **error)
{
  ClassifierTrainer *self = g_new0 (ClassifierTrainer, 1);
  GptdTrainer *t = &self->t;

  if (!classifier_trainer_check (params, error))
    goto fail;
  gptd__trainer_init (t, ctx, params, &classifier_task, self);
  t->lora_train_head = TRUE;
  self->num_classes = gptd_params_is_set (params, "num-classes")
                        ? gptd_params_get_int (params, "num-classes") : 0;
  self->last_token = g_str_equal (gptd_params_get_string (params, "pooling"), "last-token");
  self->dropout_set = gptd_params_is_set (params, "dropout");
  self->dropout = self->dropout_set ? gptd_params_get_double (params, "dropout") : 0;
  parse_trainable (gptd_params_get_string (params, "trainable"), &self->trainable_blocks,
                   NULL);
  t->pooling = g_strdup (gptd_params_get_string (params, "pooling"));
  if (t->init_dir == NULL && !build_config (params, &t->config, error))
    goto fail;
  t->config.tie_embeddings = FALSE; /* as the checkpoint of a classifier */

  if (gptd_stage_context_is_resume (ctx) && !gptd__trainer_resume (t, ctx, error))
    goto fail;
  if (t->model != NULL && t->saved_dir != NULL)
    {
      g_autofree char *pooling = NULL;
      if (!gptd_gpt_dir_read_labels (t->saved_dir, &t->labels, &pooling, error))
        goto fail;
      apply_trainable (self);
    }
  if (!gptd__trainer_setup_tokenizer (t, params, gptd_params_get_string (params, "vocab"),
                                      error))
    goto fail;
  return self;

fail:
  classifier_trainer_destroy (self);
  return NULL;
}

static gboolean
classifier_trainer_run (gpointer data, GptdStageContext *ctx, GError **error)
{
  ClassifierTrainer *self = data;
  GptdTrainer *t = &self->t;

  if (t->model == NULL)
    {
      if (!read_label_names (t, ctx, error) || !build_model (self, ctx, error))
        return FALSE;
      apply_trainable (self);
    }
  size_t trainable = 0;
  for (guint i = 0; i < gptd_gpt_n_tensors (t->model); i++)
    {
      const GptdNnTensor *x = gptd_gpt_get_tensor (t->model, i);
      trainable += x->frozen ? 0 : x->numel;
    }
  g_autofree char *names = t->labels ? g_strjoinv (", ", t->labels) : g_strdup ("unnamed");
  gptd_stage_log (ctx, G_LOG_LEVEL_INFO,
                  "classifier: %d classes (%s), pooling %s, %.2fM of %.2fM parameters "
                  "trainable", t->config.n_out, names, t->pooling, trainable / 1e6,
                  gptd_gpt_n_params (t->model) / 1e6);
  return gptd__trainer_run (t, ctx, error);
}

const GptdStageType gptd__classifier_trainer_type = {
  .name = "classifier-trainer",
  .description = "Fine-tunes a GPT-2 model as a classifier: a new head on the last "
                 "position, the last block trainable, accuracy (the book's chapter 6)",
  .params = classifier_trainer_params,
  .inputs = classifier_trainer_inputs,
  .outputs = classifier_trainer_outputs,
  .check = classifier_trainer_check,
  .create = classifier_trainer_create,
  .run = classifier_trainer_run,
  .destroy = classifier_trainer_destroy,
};
