/* generator.c: the `generator` stage: text generation from a GPT-2 model
 * directory (the book's generate()), with greedy decoding or temperature,
 * top-k and top-p sampling, eos, left truncation and a KV cache.
 *
 * The model is `model=` (a directory, loaded when the run starts) or comes as
 * gptd.Model messages on the `model` input (each one replaces the current
 * model; the last one is used).  Prompts are `prompt=` and/or the documents of
 * the `prompts` input (chunks of one source are joined).  Documents are
 * answered as they arrive (the model input has ended by then); `prompt=` is
 * answered at the end, after the documents.  Each sample is pushed as a
 * gptd.Sample, sent to watchers as a sample event, streamed as text while it
 * is produced, and appended as a JSON line to `output=` (by default
 * samples.jsonl in the run directory).
 */
#include "config.h"

#include <gptd/generate.h>
#include <gptd/gpt2-file.h>
#include <gptd/message-json.h>
#include <gptd/nn.h>
#include <gptd/quant.h>

#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "generate-plugin.h"

enum { INPUT_MODEL = 0, INPUT_PROMPTS = 1 };

static const char *const weight_choices[] = { "stored", "fp32", "bf16", "q8",
                                              NULL };

static const GptdParamSpec generator_params[] = {
  { "model", GPTD_PARAM_PATH, NULL, 0, 0, NULL,
    "model directory (config.json + model.safetensors) or checkpoint root; "
    "else link input.model", GPTD_PARAM_EXISTS },
  { "prompt", GPTD_PARAM_STRING, NULL, 0, 0, NULL,
    "prompt text (answered after the documents of input.prompts, if any)", 0 },
  { "vocab", GPTD_PARAM_STRING, NULL, 0, 0, NULL,
    "tokenizer: a directory with vocab.json + merges.txt or encoder.json + "
    "vocab.bpe, or a name such as gpt2 ($GPTD_DATA_DIR); default: the model "
    "directory's own", 0 },
  { "max-new-tokens", GPTD_PARAM_INT, "50", 0, 1 << 20, NULL,
    "number of tokens to generate", 0 },
  { "temperature", GPTD_PARAM_DOUBLE, "0", 0, 1e6, NULL,
    "0: greedy (argmax); else logits are divided by it before sampling", 0 },
  { "top-k", GPTD_PARAM_INT, "0", 0, G_MAXINT32, NULL,
    "sample among the k largest logits only; 0: all", 0 },
  { "top-p", GPTD_PARAM_DOUBLE, "1", 0, 1, NULL,
    "nucleus sampling: keep the most likely tokens up to this cumulative "
    "probability, in (0, 1]", GPTD_PARAM_MIN_EXCLUSIVE },
  { "seed", GPTD_PARAM_INT, G_STRINGIFY (GPTD_GENERATE_DEFAULT_SEED), 0,
    (double) G_MAXINT64, NULL,
    "seed of the sampling random stream (each prompt starts from it)", 0 },
  { "eos-id", GPTD_PARAM_INT, "-1", -1, G_MAXINT32, NULL,
    "stop when this token is generated; -1: never", 0 },
  { "context-length", GPTD_PARAM_INT, NULL, 1, G_MAXINT32, NULL,
    "window of tokens each step looks at (default: the model's context; "
    "longer prompts are truncated from the left)", 0 },
  { "kv-cache", GPTD_PARAM_BOOL, "true", 0, 0, NULL,
    "keep keys and values between steps (same output, much faster)", 0 },
  { "threads", GPTD_PARAM_INT, NULL, 1, 4096, NULL,
    "threads for the model (default: one per CPU)", 0 },
  { "weights", GPTD_PARAM_ENUM, "stored", 0, 0, weight_choices,
    "weight format of the decoding path: fp32, bf16 or q8 (converted when "
    "the model is loaded), or stored: the model directory's own (fp32, or "
    "what gptd quantize wrote)", 0 },
  { "output", GPTD_PARAM_PATH, NULL, 0, 0, NULL,
    "write each sample to this file as a JSON line (default: "
    "samples.jsonl in the run directory)", 0 },
  { NULL }
};

static const GptdPadSpec generator_inputs[] = {
  { "model", "gptd.Model", GPTD_PAD_OPTIONAL },
  { "prompts", "gptd.Document", GPTD_PAD_OPTIONAL },
  { NULL }
};

static const GptdPadSpec generator_outputs[] = {
  { "default", "gptd.Sample", 0 },
  { NULL }
};

typedef struct {
  GptdGenerateOptions options;
  char *vocab;
  int context_length;       /* 0: the model's */
  int weights;              /* a GptdWeightFormat, or -1: the stored one */
  char *prompt;
  char *model_dir;          /* the model in use */
  guint64 model_step;       /* its training step, from a Model message */
  GptdGenerator *generator; /* loaded lazily for input models */
  FILE *output;
  char *output_path;
  GString *doc;             /* chunks of the current document */
  char *doc_source;
  guint n_samples;
} Generator;

/* Reads the context length of the model in @dir (a model directory or a
 * checkpoint root) from its config.json. */
static gboolean
read_model_context (const char *dir, int *context_length, GError **error)
{
  g_autofree char *latest = NULL;
  g_autofree char *config = g_build_filename (dir, GPTD_GPT_DIR_CONFIG, NULL);
  g_autofree char *index = g_build_filename (dir, GPTD_CHECKPOINT_INDEX, NULL);
  if (!g_file_test (config, G_FILE_TEST_EXISTS) &&
      g_file_test (index, G_FILE_TEST_EXISTS))
    {
      latest = gptd_checkpoint_get_latest (dir, error);
      if (latest == NULL)
        return FALSE;
      g_free (config);
      config = g_build_filename (latest, GPTD_GPT_DIR_CONFIG, NULL);
    }
  g_autofree char *text = NULL;
  gsize len = 0;
  if (!g_file_get_contents (config, &text, &len, error))
    return FALSE;
  GptdGptConfig cfg;
  if (!gptd_gpt_config_from_json (text, (gssize) len, config, &cfg, NULL, error))
    return FALSE;
  *context_length = cfg.context_length;
  return TRUE;
}

/* Load-time checks the parameter specs cannot express. */
static gboolean
generator_check (const GptdParams *params, GError **error)
{
  if (!gptd_params_is_set (params, "model") ||
      !gptd_params_is_set (params, "context-length"))
    return TRUE;
  const char *dir = gptd_params_get_string (params, "model");
  gint64 want = gptd_params_get_int (params, "context-length");
  int have = 0;
  g_autoptr (GError) local = NULL;
  if (!read_model_context (dir, &have, &local))
    {
      g_set_error (error, GPTD_STAGE_ERROR, GPTD_STAGE_ERROR_INPUT,
                   "cannot read the model's context length: %s",
                   local->message);
      return FALSE;
    }
  if (want > have)
    {
      g_set_error (error, GPTD_STAGE_ERROR, GPTD_STAGE_ERROR_INPUT,
                   "context-length %" G_GINT64_FORMAT " is longer than the "
                   "context of the model in %s (%d positions)",
                   want, dir, have);
      return FALSE;
    }
  return TRUE;
}

static void
generator_destroy (gpointer data)
{
  Generator *self = data;
  if (self == NULL)
    return;
  gptd_generator_free (self->generator);
  if (self->output != NULL)
    fclose (self->output);
  g_free (self->output_path);
  g_free (self->vocab);
  g_free (self->prompt);
  g_free (self->model_dir);
  if (self->doc != NULL)
    g_string_free (self->doc, TRUE);
  g_free (self->doc_source);
  g_free (self);
}

static gboolean
generator_load (Generator *self, GptdStageContext *ctx, GError **error)
{
  gptd_generator_free (self->generator);
  self->generator = NULL;
  gint64 t0 = g_get_monotonic_time ();
  g_autoptr (GError) local = NULL;
  GptdGeneratorLoadOptions lo;
  gptd_generator_load_options_init (&lo);
  lo.vocab = self->vocab;
  lo.context_length = self->context_length;
  lo.weights = self->weights;
  self->generator = gptd_generator_load_full (self->model_dir, &lo, &local);
  if (self->generator == NULL)
    {
      g_set_error (error, GPTD_STAGE_ERROR, GPTD_STAGE_ERROR_INPUT,
                   "cannot load the model %s: %s", self->model_dir,
                   local->message);
      return FALSE;
    }
  const GptdGptConfig *cfg =
    gptd_gpt_get_config (gptd_generator_get_model (self->generator));
  gptd_stage_log (ctx, G_LOG_LEVEL_INFO,
                  "loaded %s (%d layers, %d heads, width %d, vocabulary %d, "
                  "window %d, %s weights) in %.2f s",
                  self->model_dir, cfg->n_layer, cfg->n_head, cfg->n_embd,
                  cfg->vocab_size,
                  gptd_generator_get_context_length (self->generator),
                  gptd_weight_format_to_string (gptd_gpt_get_weight_format (
                    gptd_generator_get_model (self->generator))),
                  (g_get_monotonic_time () - t0) / 1e6);
  return TRUE;
}

gboolean
gptd__generate_options_from_params (const GptdParams *params, GptdGenerateOptions *o,
                                    GError **error)
{
  gptd_generate_options_init (o);
  o->max_new_tokens = (int) gptd_params_get_int (params, "max-new-tokens");
  o->temperature = gptd_params_get_double (params, "temperature");
  o->top_k = (int) gptd_params_get_int (params, "top-k");
  o->top_p = gptd_params_get_double (params, "top-p");
  o->seed = (guint64) gptd_params_get_int (params, "seed");
  o->eos_id = (int) gptd_params_get_int (params, "eos-id");
  o->use_kv_cache = gptd_params_get_bool (params, "kv-cache");
  return gptd_generate_options_validate (o, error);
}

static gpointer
generator_create (GptdStageContext *ctx, const GptdParams *params,
                  GError **error)
{
  Generator *self = g_new0 (Generator, 1);
  if (!gptd__generate_options_from_params (params, &self->options, error))
    {
      generator_destroy (self);
      return NULL;
    }
  if (gptd_params_is_set (params, "context-length"))
    self->context_length = (int) gptd_params_get_int (params, "context-length");
  self->weights = -1;
  const char *weights = gptd_params_get_string (params, "weights");
  if (weights != NULL && strcmp (weights, "stored") != 0)
    {
      GptdWeightFormat f;
      if (!gptd_weight_format_from_string (weights, &f, error))
        {
          generator_destroy (self);
          return NULL;
        }
      if (f != GPTD_WEIGHT_FORMAT_FP32 && !self->options.use_kv_cache)
        {
          g_set_error (error, GPTD_STAGE_ERROR, GPTD_STAGE_ERROR_INPUT,
                       "weights=%s needs kv-cache=true: converted weights "
                       "are used by the KV-cache path only",
                       weights);
          generator_destroy (self);
          return NULL;
        }
      self->weights = (int) f;
    }
  if (gptd_params_is_set (params, "threads"))
    gptd_nn_set_num_threads ((int) gptd_params_get_int (params, "threads"));
  /* A path (relative to the pipeline file) or a name such as gpt2. */
  self->vocab = gptd_params_resolve_name_or_path (params, "vocab");
  self->prompt = g_strdup (gptd_params_get_string (params, "prompt"));

  if (gptd_params_is_set (params, "output"))
    self->output_path = g_strdup (gptd_params_get_string (params, "output"));
  else if (gptd_stage_context_get_run_dir (ctx) != NULL)
    self->output_path = g_build_filename (gptd_stage_context_get_run_dir (ctx),
                                          "samples.jsonl", NULL);
  if (self->output_path != NULL)
    {
      self->output = fopen (self->output_path, "w");
      if (self->output == NULL)
        {
          int e = errno;
          g_set_error (error, GPTD_STAGE_ERROR, GPTD_STAGE_ERROR_IO,
                       "cannot open output %s: %s", self->output_path,
                       g_strerror (e));
          generator_destroy (self);
          return NULL;
        }
    }
  if (gptd_params_is_set (params, "model"))
    {
      self->model_dir = g_strdup (gptd_params_get_string (params, "model"));
      if (!generator_load (self, ctx, error))
        {
          generator_destroy (self);
          return NULL;
        }
    }
  return self;
}

typedef struct {
  GptdStageContext *ctx;
} StreamData;

static void
on_token (gint32 id, const char *text, gsize text_len, gpointer user_data)
{
  StreamData *sd = user_data;
  if (text_len > 0)
    gptd_stage_text (sd->ctx, text, FALSE);
}

static gboolean
on_cancelled (gpointer user_data)
{
  StreamData *sd = user_data;
  return gptd_stage_context_is_cancelled (sd->ctx);
}

/* Generates one sample from @prompt and sends it everywhere it goes. */
static gboolean
generator_answer (Generator *self, GptdStageContext *ctx, const char *prompt,
                  GError **error)
{
  if (self->model_dir == NULL)
    {
      g_set_error (error, GPTD_STAGE_ERROR, GPTD_STAGE_ERROR_INPUT,
                   "no model: set model= or link input.model to a stage that "
                   "sends a model");
      return FALSE;
    }
  if (self->generator == NULL && !generator_load (self, ctx, error))
    return FALSE;

  StreamData sd = { ctx };
  GptdGenerateCallbacks cb = { on_token, on_cancelled, &sd };
  g_autoptr (GError) local = NULL;
  g_autoptr (GptdGenerateResult) res =
    gptd_generator_generate (self->generator, prompt, &self->options, &cb,
                             &local);
  if (res == NULL)
    {
      g_set_error (error, GPTD_STAGE_ERROR, GPTD_STAGE_ERROR_INPUT,
                   "generating from prompt %u failed: %s", self->n_samples,
                   local->message);
      return FALSE;
    }
  gptd_stage_text (ctx, "", TRUE);

  Gptd__Sample sample = GPTD__SAMPLE__INIT;
  sample.prompt = (char *) prompt;
  sample.text = res->text;
  sample.n_ids = res->n_ids;
  sample.ids = (uint32_t *) res->ids;
  sample.seed = self->options.seed;
  sample.model = self->model_dir;
  sample.step = self->model_step;
  sample.stop_reason = (char *) gptd_generate_stop_to_string (res->stop);

  double secs = res->prefill_s + res->decode_s;
  gptd_stage_log (ctx, G_LOG_LEVEL_INFO,
                  "sample %u: %d prompt tokens%s, %d new (%s), %.1f tokens/s",
                  self->n_samples, res->n_prompt,
                  res->n_prompt_dropped > 0 ? " (truncated from the left)" : "",
                  res->n_ids, sample.stop_reason,
                  secs > 0 ? res->n_ids / secs : 0.0);
  gptd_stage_sample (ctx, &sample);
  if (self->output != NULL)
    {
      g_autofree char *line =
        gptd_message_to_json_string (&sample.base, TRUE, FALSE);
      if (fputs (line, self->output) == EOF ||
          fputc ('\n', self->output) == EOF || fflush (self->output) != 0)
        {
          int e = errno;
          g_set_error (error, GPTD_STAGE_ERROR, GPTD_STAGE_ERROR_IO,
                       "cannot write to output %s: %s", self->output_path,
                       g_strerror (e));
          return FALSE;
        }
    }
  self->n_samples++;
  if (!gptd_stage_push (ctx, 0, &sample.base, error))
    return FALSE;
  if (res->stop == GPTD_GENERATE_STOP_CANCELLED)
    {
      g_set_error (error, G_IO_ERROR, G_IO_ERROR_CANCELLED,
                   "generation cancelled");
      return FALSE;
    }
  return TRUE;
}

static gboolean
generator_process (gpointer data, GptdStageContext *ctx, guint input,
                   const ProtobufCMessage *msg, GError **error)
{
  Generator *self = data;
  if (input == INPUT_MODEL)
    {
      const Gptd__Model *m = (const Gptd__Model *) msg;
      if (m->path == NULL || m->path[0] == '\0')
        {
          g_set_error (error, GPTD_STAGE_ERROR, GPTD_STAGE_ERROR_INPUT,
                       "a gptd.Model message on input model names no directory");
          return FALSE;
        }
      /* The last model wins; it is loaded when the first prompt needs it. */
      g_free (self->model_dir);
      self->model_dir = g_strdup (m->path);
      self->model_step = m->step;
      gptd_generator_free (self->generator);
      self->generator = NULL;
      return TRUE;
    }

  const Gptd__Document *d = (const Gptd__Document *) msg;
  if (self->doc == NULL)
    self->doc = g_string_new (NULL);
  if (self->doc_source == NULL)
    self->doc_source = g_strdup (d->source);
  g_string_append_len (self->doc, (const char *) d->text.data, d->text.len);
  if (!d->last)
    return TRUE;
  if (self->doc->len == 0)
    {
      gptd_stage_log (ctx, G_LOG_LEVEL_WARNING,
                      "document %" G_GUINT64_FORMAT " (%s) is empty: no sample",
                      d->index, self->doc_source ? self->doc_source : "");
      g_clear_pointer (&self->doc_source, g_free);
      return TRUE;
    }
  gboolean ok = generator_answer (self, ctx, self->doc->str, error);
  g_string_truncate (self->doc, 0);
  g_clear_pointer (&self->doc_source, g_free);
  return ok;
}

static gboolean
generator_finish (gpointer data, GptdStageContext *ctx, GError **error)
{
  Generator *self = data;
  if (self->doc != NULL && self->doc->len > 0)
    {
      /* A source whose last chunk never came: answer what arrived. */
      if (!generator_answer (self, ctx, self->doc->str, error))
        return FALSE;
      g_string_truncate (self->doc, 0);
    }
  if (self->prompt != NULL)
    return generator_answer (self, ctx, self->prompt, error);
  if (self->n_samples == 0)
    gptd_stage_log (ctx, G_LOG_LEVEL_WARNING,
                    "no prompt: set prompt= or link input.prompts");
  return TRUE;
}

const GptdStageType gptd__generator_type = {
  .name = "generator",
  .description = "Generates text from a GPT-2 model: greedy or sampled "
                 "(temperature, top-k, top-p), with a KV cache",
  .params = generator_params,
  .inputs = generator_inputs,
  .outputs = generator_outputs,
  .check = generator_check,
  .create = generator_create,
  .process = generator_process,
  .finish = generator_finish,
  .destroy = generator_destroy,
};
