/* gpt-trainer.c: the gpt-trainer stage (gptd.Batch -> gptd.Model), the book's
 * pretraining by next-token prediction: its parameters, the model it builds (a
 * preset or custom shape, GPT-2's or the book's initialisation, or init=), the loss
 * of a batch (cross-entropy at every position) and the greedy sample after each
 * epoch (generate_and_print_sample). The loop, evaluation, checkpoints and exact
 * resume are trainer.c's.
 */
#include "train-plugin.h"
#include "trainer.h"
#include <gptd/windows.h>

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <string.h>

#include <glib/gstdio.h>

#include <json-glib/json-glib.h>
#include <gptd/atomic-file.h>
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
    "GPT-2) instead of random weights", GPTD_PARAM_EXISTS },
  GPTD__TRAINER_COMMON_PARAMS ("1", "0.0004", "5"),
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

/* What gpt-trainer adds to the shared trainer. */
typedef struct {
  GptdTrainer t;
  gboolean dropout_set;
  char *start_context;
  int sample_tokens;
  gint32 *sample_ids;        /* room for the prompt plus the sample */
  gboolean samples_checked;  /* samples.jsonl was trimmed for this session */
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

  if (!gptd__trainer_check_params (params, error))
    return FALSE;
  const char *start = gptd_params_get_string (params, "start-context");
  if (gptd_params_get_int (params, "sample-tokens") > 0 && (start == NULL || *start == '\0'))
    {
      g_set_error (error, GPTD_STAGE_ERROR, GPTD_STAGE_ERROR_FAILED,
                   "start-context: empty; give a prompt or set sample-tokens=0");
      return FALSE;
    }
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

/* ---- The task ----------------------------------------------------------------------- */

static gboolean
gpt_check_batch (GptdTrainer *t, const Gptd__Batch *b, GError **error)
{
  int B = b->batch_size, T = b->seq_len;
  if (B < 1 || b->n_inputs != (gsize) B * T || b->n_targets != (gsize) B * T)
    {
      g_set_error (error, GPTD_STAGE_ERROR, GPTD_STAGE_ERROR_INPUT,
                   "batch %" G_GUINT64_FORMAT " of epoch %u is malformed: %d x %d with %"
                   G_GSIZE_FORMAT " inputs and %" G_GSIZE_FORMAT " targets", b->index,
                   b->epoch + 1, B, T, b->n_inputs, b->n_targets);
      return FALSE;
    }
  return TRUE;
}

/* Next-token cross-entropy at every position. */
static gboolean
gpt_forward (GptdTrainer *t, const Gptd__Batch *b, GptdGptForwardFlags flags, float *loss,
             guint64 *correct, guint64 *counted, GError **error)
{
  return gptd_gpt_forward (t->model, b->inputs, b->targets, b->batch_size, b->seq_len,
                           flags, loss, error);
}

/* Appends the sample to samples.jsonl in the run directory, one JSON object a line:
 * step (steps done), epoch (from 1, as the logs), prompt, text. The first sample of
 * a resumed session drops lines of steps after the one the session resumed from
 * (they were taken by the interrupted process and are taken again). */
static gboolean
write_sample_line (GptdTrainer *t, const char *prompt, const char *text, GError **error)
{
  g_autofree char *path = g_build_filename (t->run_dir, "samples.jsonl", NULL);
  GptTrainer *self = (GptTrainer *) t;
  if (!self->samples_checked)
    {
      self->samples_checked = TRUE;
      g_autofree char *old = NULL;
      if (t->session_first_step > 0 && g_file_get_contents (path, &old, NULL, NULL))
        {
          g_autoptr (GString) kept = g_string_new (NULL);
          g_auto (GStrv) lines = g_strsplit (old, "\n", -1);
          for (guint i = 0; lines[i]; i++)
            {
              g_autoptr (JsonParser) p = json_parser_new ();
              if (*lines[i] == '\0' || !json_parser_load_from_data (p, lines[i], -1, NULL))
                continue;
              JsonNode *root = json_parser_get_root (p);
              if (!JSON_NODE_HOLDS_OBJECT (root))
                continue;
              gint64 step = json_object_get_int_member_with_default (
                json_node_get_object (root), "step", G_MAXINT64);
              if (step <= t->session_first_step)
                g_string_append_printf (kept, "%s\n", lines[i]);
            }
          if (!gptd_atomic_file_set_contents (path, kept->str, kept->len, error))
            return FALSE;
        }
      else if (t->session_first_step == 0)
        g_unlink (path);
    }

  g_autoptr (JsonBuilder) b = json_builder_new ();
  json_builder_begin_object (b);
  json_builder_set_member_name (b, "step");
  json_builder_add_int_value (b, t->step);
  json_builder_set_member_name (b, "epoch");
  json_builder_add_int_value (b, (gint64) t->epoch + 1);
  json_builder_set_member_name (b, "prompt");
  json_builder_add_string_value (b, prompt);
  json_builder_set_member_name (b, "text");
  json_builder_add_string_value (b, text);
  json_builder_end_object (b);
  g_autoptr (JsonNode) root = json_builder_get_root (b);
  g_autofree char *json = json_to_string (root, FALSE);
  FILE *f = g_fopen (path, "a");
  if (f == NULL || fprintf (f, "%s\n", json) < 0 || fclose (f) != 0)
    {
      int e = errno;
      g_set_error (error, GPTD_STAGE_ERROR, GPTD_STAGE_ERROR_IO, "cannot write %s: %s", path,
                   g_strerror (e));
      return FALSE;
    }
  return TRUE;
}

/* The book's generate_and_print_sample: greedy tokens after start-context. */
static gboolean
gpt_epoch_end (GptdTrainer *t, GptdStageContext *ctx, GError **error)
{
  GptTrainer *self = (GptTrainer *) t;
  Gptd__Sample msg = GPTD__SAMPLE__INIT;
  g_autoptr (GArray) prompt = g_array_new (FALSE, FALSE, sizeof (guint32));
  g_autoptr (GString) text = g_string_new (NULL);
  int ctx_len = t->config.context_length;
  GptdRngState rng;

  if (self->sample_tokens <= 0 || t->bpe == NULL)
    return TRUE;
  GptdBpeEncodeOptions eo = { .special = GPTD_BPE_SPECIAL_ALLOWED };
  if (!gptd_bpe_encode (t->bpe, self->start_context, strlen (self->start_context),
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

  gptd_gpt_get_rng (t->model, &rng);
  for (int k = 0; k < self->sample_tokens; k++)
    {
      int T = MIN ((int) n, ctx_len);
      int V = 0;
      if (!gptd_gpt_forward (t->model, self->sample_ids + n - T, NULL, 1, T,
                             GPTD_GPT_FORWARD_LAST_ONLY, NULL, error))
        {
          gptd_gpt_set_rng (t->model, &rng);
          g_prefix_error (error, "sampling: ");
          return FALSE;
        }
      const float *logits = gptd_gpt_get_logits (t->model, NULL, NULL, &V);
      self->sample_ids[n++] = gptd_argmax (logits, V);
    }
  gptd_gpt_set_rng (t->model, &rng);

  g_autofree guint32 *gen = g_new (guint32, self->sample_tokens);
  for (int k = 0; k < self->sample_tokens; k++)
    gen[k] = (guint32) self->sample_ids[n_prompt + k];
  if (!gptd_bpe_decode (t->bpe, gen, self->sample_tokens, text, error))
    {
      g_prefix_error (error, "decoding the sample: ");
      return FALSE;
    }
  g_autofree char *valid = g_utf8_make_valid (text->str, text->len);

  msg.prompt = self->start_context;
  msg.text = valid;
  msg.ids = gen;
  msg.n_ids = self->sample_tokens;
  msg.seed = t->seed;
  msg.model = t->model_name;
  msg.step = t->step;
  msg.stop_reason = (char *) "length";
  gptd_stage_sample (ctx, &msg);
  if (!write_sample_line (t, self->start_context, valid, error))
    return FALSE;

  /* As the book prints it: prompt and continuation on one line. */
  g_autofree char *line = g_strconcat (self->start_context, valid, NULL);
  for (char *c = line; *c; c++)
    if (*c == '\n' || *c == '\r')
      *c = ' ';
  gptd_stage_log (ctx, G_LOG_LEVEL_MESSAGE, "sample (epoch %u): %s", t->epoch + 1, line);
  return TRUE;
}

static const GptdTrainerTask gpt_task = {
  .check_batch = gpt_check_batch,
  .forward = gpt_forward,
  .epoch_end = gpt_epoch_end,
};

/* ---- Creation ---------------------------------------------------------------------- */

static void
gpt_trainer_destroy (gpointer data)
{
  GptTrainer *self = data;
  if (self == NULL)
    return;
  gptd__trainer_clear (&self->t);
  g_free (self->sample_ids);
  g_free (self->start_context);
  g_free (self);
}

static gpointer
gpt_trainer_create (GptdStageContext *ctx, const GptdParams *params, GError **error)
{
  GptTrainer *self = g_new0 (GptTrainer, 1);
  GptdTrainer *t = &self->t;

  if (!gpt_trainer_check (params, error))
    goto fail;

  gptd__trainer_init (t, ctx, params, &gpt_task, self);
  self->dropout_set = gptd_params_is_set (params, "dropout");
  self->start_context = g_strdup (gptd_params_get_string (params, "start-context"));
  self->sample_tokens = gptd_params_get_int (params, "sample-tokens");

  if (t->init_dir == NULL && !build_config (params, &t->config, error))
    goto fail;

  if (gptd_stage_context_is_resume (ctx) && !gptd__trainer_resume (t, ctx, error))
    goto fail;

  if (t->model == NULL)
    {
      if (t->init_dir != NULL)
        {
          /* A LoRA run's checkpoint starts merged. */
          t->model = gptd_gpt_dir_load (t->init_dir, error);
          if (t->model == NULL || !gptd_gpt_merge_lora (t->model, error))
            {
              g_prefix_error (error, "init: ");
              goto fail;
            }
          t->config = *gptd_gpt_get_config (t->model);
          if (self->dropout_set
              && t->config.dropout != (float) gptd_params_get_double (params, "dropout"))
            {
              /* Same layout with another dropout: copy the parameters over. */
              GptdGptConfig c = t->config;
              c.dropout = gptd_params_get_double (params, "dropout");
              GptdGpt *m = gptd_gpt_new (&c, error);
              if (m == NULL)
                goto fail;
              memcpy (gptd_gpt_get_params (m), gptd_gpt_get_params (t->model),
                      gptd_gpt_n_params (m) * sizeof (float));
              gptd_gpt_free (t->model);
              t->model = m;
              t->config = c;
            }
        }
      else
        {
          t->model = gptd_gpt_new (&t->config, error);
          if (t->model == NULL)
            goto fail;
          if (g_str_equal (gptd_params_get_string (params, "weight-init"), "book"))
            init_weights_book (t->model, t->seed);
          else
            gptd_gpt_init_weights (t->model, t->seed);
        }
      if (!gptd__trainer_start (t, error))
        goto fail;
    }

  if (!gptd__trainer_setup_tokenizer (t, params, gptd_params_get_string (params, "vocab"),
                                      error))
    goto fail;
  if (t->bpe == NULL && self->sample_tokens > 0)
    gptd_stage_log (ctx, G_LOG_LEVEL_INFO, "no vocab= given: samples are shown as token ids");
  if (self->sample_tokens > 0)
    self->sample_ids = g_new (gint32, t->config.context_length + self->sample_tokens
                                        + 4096);
  return self;

fail:
  gpt_trainer_destroy (self);
  return NULL;
}

static gboolean
gpt_trainer_run (gpointer data, GptdStageContext *ctx, GError **error)
{
  GptTrainer *self = data;
  return gptd__trainer_run (&self->t, ctx, error);
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
