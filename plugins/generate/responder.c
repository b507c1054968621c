/* responder.c: the `responder` stage: a response to every instruction record
 * (the book's chapter 7, "extracting and saving responses").
 *
 * The model is `model=` or comes as gptd.Model messages on the `model` input
 * (the last one is used), as for the generator.  Each gptd.Document of the
 * `prompts` input carries a prompt (its text; when prompt_bytes is set and
 * shorter than the text, the first prompt_bytes bytes) and the record it was
 * made from (Document.record, a JSON object).  For each, the stage generates
 * a continuation (greedy by default; stops at eos-id) and extracts the
 * response as the book does:
 *
 *     generated_text[len(input_text):].replace("### Response:", "").strip()
 *
 * It pushes a gptd.Document whose record is the input record with a
 * "model_response" member (replaced in place when the record has one already)
 * and whose text is the response, sends a sample event and a progress event,
 * and writes the records to `output=` as the book's
 * instruction-data-with-response.json (a JSON array, json.dump(..., indent=4))
 * or as JSON Lines.  The file is written atomically: it appears complete once
 * the last record is in, and a failed run leaves the old file as it was.
 */
#include "config.h"

#include <gptd/atomic-file.h>
#include <gptd/generate.h>
#include <gptd/nn.h>

#include <math.h>
#include <string.h>

#include "generate-plugin.h"
#include "record-json.h"
#include "response-text.h"

enum { INPUT_MODEL = 0, INPUT_PROMPTS = 1 };
enum { FORMAT_JSON = 0, FORMAT_JSONL = 1 };

static const char *const format_choices[] = { "json", "jsonl", NULL };

static const GptdParamSpec responder_params[] = {
  { "model", GPTD_PARAM_PATH, NULL, 0, 0, NULL,
    "model directory (config.json + model.safetensors); else link input.model", GPTD_PARAM_EXISTS },
  { "vocab", GPTD_PARAM_STRING, NULL, 0, 0, NULL,
    "tokenizer: a directory with vocab.json + merges.txt or encoder.json + "
    "vocab.bpe, or a name such as gpt2 ($GPTD_DATA_DIR); default: the model "
    "directory's own", 0 },
  { "max-new-tokens", GPTD_PARAM_INT, "256", 0, 1 << 20, NULL,
    "most tokens to generate per response", 0 },
  { "temperature", GPTD_PARAM_DOUBLE, "0", 0, 1e6, NULL,
    "0: greedy (argmax); else logits are divided by it before sampling", 0 },
  { "top-k", GPTD_PARAM_INT, "0", 0, G_MAXINT32, NULL,
    "sample among the k largest logits only; 0: all", 0 },
  { "top-p", GPTD_PARAM_DOUBLE, "1", 0, 1, NULL,
    "nucleus sampling threshold in (0, 1]", GPTD_PARAM_MIN_EXCLUSIVE },
  { "seed", GPTD_PARAM_INT, G_STRINGIFY (GPTD_GENERATE_DEFAULT_SEED), 0,
    (double) G_MAXINT64, NULL,
    "seed of the sampling random stream (each record starts from it)", 0 },
  { "eos-id", GPTD_PARAM_INT, "50256", -1, G_MAXINT32, NULL,
    "stop when this token is generated (<|endoftext|>); -1: never", 0 },
  { "context-length", GPTD_PARAM_INT, NULL, 1, G_MAXINT32, NULL,
    "window of tokens each step looks at (default: the model's context; "
    "longer prompts are truncated from the left)", 0 },
  { "kv-cache", GPTD_PARAM_BOOL, "true", 0, 0, NULL,
    "keep keys and values between steps (same output, much faster)", 0 },
  { "threads", GPTD_PARAM_INT, NULL, 1, 4096, NULL,
    "threads for the model (default: one per CPU)", 0 },
  { "output", GPTD_PARAM_PATH, NULL, 0, 0, NULL,
    "write the records with their responses here (default: "
    "instruction-data-with-response.json, or .jsonl, in the run directory)", 0 },
  { "format", GPTD_PARAM_ENUM, NULL, 0, 0, format_choices,
    "json: one array, indented as json.dump(..., indent=4); jsonl: a record "
    "per line (default: jsonl when output= ends in .jsonl, else json)", 0 },
  { NULL }
};

static const GptdPadSpec responder_inputs[] = {
  { "model", "gptd.Model", GPTD_PAD_OPTIONAL },
  { "prompts", "gptd.Document", 0 },
  { NULL }
};

static const GptdPadSpec responder_outputs[] = {
  { "default", "gptd.Document", 0 },
  { NULL }
};

typedef struct {
  GptdGenerateOptions options;
  char *vocab;
  int context_length;       /* 0: the model's */
  char *model_dir;
  GptdGenerator *generator; /* loaded when the first record needs it */
  int format;
  GptdAtomicFile *output;
  GString *doc;             /* chunks of the current document */
  char *doc_record;         /* its record, from the first chunk carrying one */
  char *doc_source;
  guint64 doc_index;
  guint64 doc_prompt_bytes;
  guint n_records;
} Responder;

static void
responder_destroy (gpointer data)
{
  Responder *self = data;
  if (self == NULL)
    return;
  gptd_generator_free (self->generator);
  gptd_atomic_file_free (self->output);
  g_free (self->vocab);
  g_free (self->model_dir);
  if (self->doc != NULL)
    g_string_free (self->doc, TRUE);
  g_free (self->doc_record);
  g_free (self->doc_source);
  g_free (self);
}

static gpointer
responder_create (GptdStageContext *ctx, const GptdParams *params, GError **error)
{
  Responder *self = g_new0 (Responder, 1);
  if (!gptd__generate_options_from_params (params, &self->options, error))
    {
      responder_destroy (self);
      return NULL;
    }
  if (gptd_params_is_set (params, "context-length"))
    self->context_length = (int) gptd_params_get_int (params, "context-length");
  if (gptd_params_is_set (params, "threads"))
    gptd_nn_set_num_threads ((int) gptd_params_get_int (params, "threads"));
  /* A path (relative to the pipeline file) or a name such as gpt2. */
  self->vocab = gptd_params_resolve_name_or_path (params, "vocab");
  self->model_dir = g_strdup (gptd_params_get_string (params, "model"));

  const char *output = gptd_params_get_string (params, "output");
  if (gptd_params_is_set (params, "format"))
    self->format = (int) gptd_params_get_int (params, "format");
  else
    self->format = output != NULL && g_str_has_suffix (output, ".jsonl")
                   ? FORMAT_JSONL : FORMAT_JSON;
  g_autofree char *path = NULL;
  if (output != NULL)
    path = g_strdup (output);
  else if (gptd_stage_context_get_run_dir (ctx) != NULL)
    path = g_build_filename (gptd_stage_context_get_run_dir (ctx),
                             self->format == FORMAT_JSONL
                             ? "instruction-data-with-response.jsonl"
                             : "instruction-data-with-response.json", NULL);
  if (path != NULL)
    {
      g_autoptr (GError) local = NULL;
      self->output = gptd_atomic_file_open (path, &local);
      if (self->output == NULL)
        {
          g_set_error (error, GPTD_STAGE_ERROR, GPTD_STAGE_ERROR_IO,
                       "cannot open output %s: %s", path, local->message);
          responder_destroy (self);
          return NULL;
        }
    }
  return self;
}

/* Loads the model named by model_dir. */
static gboolean
responder_load (Responder *self, GptdStageContext *ctx, GError **error)
{
  if (self->model_dir == NULL)
    {
      g_set_error (error, GPTD_STAGE_ERROR, GPTD_STAGE_ERROR_INPUT,
                   "no model: set model= or link input.model to a stage that "
                   "sends a model");
      return FALSE;
    }
  gint64 t0 = g_get_monotonic_time ();
  g_autoptr (GError) local = NULL;
  self->generator = gptd_generator_load (self->model_dir, self->vocab,
                                         self->context_length, &local);
  if (self->generator == NULL)
    {
      g_set_error (error, GPTD_STAGE_ERROR, GPTD_STAGE_ERROR_INPUT,
                   "cannot load the model %s: %s", self->model_dir, local->message);
      return FALSE;
    }
  const GptdGptConfig *cfg =
    gptd_gpt_get_config (gptd_generator_get_model (self->generator));
  gptd_stage_log (ctx, G_LOG_LEVEL_INFO,
                  "loaded %s (%d layers, width %d, window %d) in %.2f s",
                  self->model_dir, cfg->n_layer, cfg->n_embd,
                  gptd_generator_get_context_length (self->generator),
                  (g_get_monotonic_time () - t0) / 1e6);
  return TRUE;
}

/* Parses the record of the current document; an empty record becomes
 * {"prompt": the prompt}. */
static JsonNode *
parse_record (Responder *self, const char *prompt, GError **error)
{
  if (self->doc_record == NULL || self->doc_record[0] == '\0')
    {
      JsonObject *o = json_object_new ();
      json_object_set_string_member (o, "prompt", prompt);
      JsonNode *node = json_node_new (JSON_NODE_OBJECT);
      json_node_take_object (node, o);
      return node;
    }
  g_autoptr (JsonParser) parser = json_parser_new ();
  g_autoptr (GError) local = NULL;
  if (!json_parser_load_from_data (parser, self->doc_record, -1, &local))
    {
      g_set_error (error, GPTD_STAGE_ERROR, GPTD_STAGE_ERROR_INPUT,
                   "the record of document %" G_GUINT64_FORMAT " (%s) is not "
                   "valid JSON: %s", self->doc_index,
                   self->doc_source ? self->doc_source : "", local->message);
      return NULL;
    }
  JsonNode *root = json_parser_get_root (parser);
  if (root == NULL || !JSON_NODE_HOLDS_OBJECT (root))
    {
      g_set_error (error, GPTD_STAGE_ERROR, GPTD_STAGE_ERROR_INPUT,
                   "the record of document %" G_GUINT64_FORMAT " (%s) is not "
                   "a JSON object", self->doc_index,
                   self->doc_source ? self->doc_source : "");
      return NULL;
    }
  return json_node_copy (root);
}

/* Writes @record to the output file in the chosen format. */
static gboolean
write_record (Responder *self, JsonNode *record, GError **error)
{
  if (self->output == NULL)
    return TRUE;
  g_autoptr (GString) text = g_string_new (NULL);
  if (self->format == FORMAT_JSON)
    {
      /* "[\n    {...},\n    {...}\n]", as json.dump(list, indent=4). */
      g_string_append (text, self->n_records == 0 ? "[\n    " : ",\n    ");
      gptd__record_json_append (text, record, 4, 1);
    }
  else
    {
      gptd__record_json_append (text, record, -1, 0);
      g_string_append_c (text, '\n');
    }
  return gptd_atomic_file_write (self->output, text->str, text->len, error);
}

static gboolean
on_cancelled (gpointer user_data)
{
  return gptd_stage_context_is_cancelled (user_data);
}

/* Answers the current document. */
static gboolean
responder_answer (Responder *self, GptdStageContext *ctx, GError **error)
{
  if (self->generator == NULL && !responder_load (self, ctx, error))
    return FALSE;
  gsize prompt_len = self->doc->len;
  if (self->doc_prompt_bytes > 0 && self->doc_prompt_bytes < prompt_len)
    prompt_len = self->doc_prompt_bytes;
  g_autofree char *prompt = g_strndup (self->doc->str, prompt_len);
  g_autoptr (JsonNode) record = parse_record (self, prompt, error);
  if (record == NULL)
    return FALSE;

  GptdGenerateCallbacks cb = { NULL, on_cancelled, ctx };
  g_autoptr (GError) local = NULL;
  g_autoptr (GptdGenerateResult) res =
    gptd_generator_generate (self->generator, prompt, &self->options, &cb, &local);
  if (res == NULL)
    {
      g_set_error (error, GPTD_STAGE_ERROR, GPTD_STAGE_ERROR_INPUT,
                   "generating the response to document %" G_GUINT64_FORMAT
                   " (%s) failed: %s", self->doc_index,
                   self->doc_source ? self->doc_source : "", local->message);
      return FALSE;
    }
  if (res->stop == GPTD_GENERATE_STOP_CANCELLED)
    {
      g_set_error (error, G_IO_ERROR, G_IO_ERROR_CANCELLED, "generation cancelled");
      return FALSE;
    }
  g_autofree char *response = gptd__response_extract (res->text);
  json_object_set_string_member (json_node_get_object (record), "model_response",
                                 response);

  /* The record as compact JSON, for the next stage. */
  g_autoptr (JsonGenerator) gen = json_generator_new ();
  json_generator_set_root (gen, record);
  g_autofree char *record_text = json_generator_to_data (gen, NULL);

  double secs = res->prefill_s + res->decode_s;
  gptd_stage_log (ctx, G_LOG_LEVEL_INFO,
                  "record %u: %d prompt tokens%s, %d new (%s), %.1f tokens/s",
                  self->n_records, res->n_prompt,
                  res->n_prompt_dropped > 0 ? " (truncated from the left)" : "",
                  res->n_ids, gptd_generate_stop_to_string (res->stop),
                  secs > 0 ? res->n_ids / secs : 0.0);

  Gptd__Sample sample = GPTD__SAMPLE__INIT;
  sample.prompt = prompt;
  sample.text = response;
  sample.n_ids = res->n_ids;
  sample.ids = (uint32_t *) res->ids;
  sample.seed = self->options.seed;
  sample.model = self->model_dir;
  sample.stop_reason = (char *) gptd_generate_stop_to_string (res->stop);
  gptd_stage_sample (ctx, &sample);

  if (!write_record (self, record, error))
    return FALSE;
  self->n_records++;

  Gptd__Progress p = GPTD__PROGRESS__INIT;
  p.loss = p.val_loss = NAN;
  p.eta_s = -1;
  p.items = self->n_records;
  p.unit = (char *) "records";
  p.tokens_per_s = secs > 0 ? res->n_ids / secs : 0.0;
  gptd_stage_progress (ctx, &p);

  Gptd__Document d = GPTD__DOCUMENT__INIT;
  d.source = self->doc_source != NULL ? self->doc_source : (char *) "";
  d.index = self->doc_index;
  d.text.data = (guint8 *) response;
  d.text.len = strlen (response);
  d.last = TRUE;
  d.record = record_text;
  return gptd_stage_push (ctx, 0, &d.base, error);
}

/* Forgets the current document. */
static void
doc_clear (Responder *self)
{
  g_string_truncate (self->doc, 0);
  g_clear_pointer (&self->doc_record, g_free);
  g_clear_pointer (&self->doc_source, g_free);
  self->doc_prompt_bytes = 0;
}

static gboolean
responder_process (gpointer data, GptdStageContext *ctx, guint input,
                   const ProtobufCMessage *msg, GError **error)
{
  Responder *self = data;
  if (input == INPUT_MODEL)
    {
      const Gptd__Model *m = (const Gptd__Model *) msg;
      if (m->path == NULL || m->path[0] == '\0')
        {
          g_set_error (error, GPTD_STAGE_ERROR, GPTD_STAGE_ERROR_INPUT,
                       "a gptd.Model message on input model names no directory");
          return FALSE;
        }
      /* The last model wins; it is loaded when the first record needs it. */
      g_free (self->model_dir);
      self->model_dir = g_strdup (m->path);
      gptd_generator_free (self->generator);
      self->generator = NULL;
      return TRUE;
    }

  const Gptd__Document *d = (const Gptd__Document *) msg;
  if (self->doc == NULL)
    self->doc = g_string_new (NULL);
  if (self->doc_source == NULL)
    {
      self->doc_source = g_strdup (d->source);
      self->doc_index = d->index;
    }
  if (self->doc_record == NULL && d->record != NULL && d->record[0] != '\0')
    self->doc_record = g_strdup (d->record);
  if (d->prompt_bytes > 0 && self->doc_prompt_bytes == 0)
    self->doc_prompt_bytes = self->doc->len + d->prompt_bytes;
  g_string_append_len (self->doc, (const char *) d->text.data, d->text.len);
  if (!d->last)
    return TRUE;
  if (self->doc->len == 0)
    {
      g_set_error (error, GPTD_STAGE_ERROR, GPTD_STAGE_ERROR_INPUT,
                   "document %" G_GUINT64_FORMAT " (%s) has an empty prompt",
                   d->index, self->doc_source ? self->doc_source : "");
      return FALSE;
    }
  gboolean ok = responder_answer (self, ctx, error);
  doc_clear (self);
  return ok;
}

static gboolean
responder_finish (gpointer data, GptdStageContext *ctx, GError **error)
{
  Responder *self = data;
  if (self->doc != NULL && self->doc->len > 0)
    {
      /* A source whose last chunk never came: answer what arrived. */
      gboolean ok = responder_answer (self, ctx, error);
      doc_clear (self);
      if (!ok)
        return FALSE;
    }
  if (self->output == NULL)
    return TRUE;
  if (self->format == FORMAT_JSON)
    {
      const char *end = self->n_records == 0 ? "[]" : "\n]";
      if (!gptd_atomic_file_write (self->output, end, strlen (end), error))
        return FALSE;
    }
  if (!gptd_atomic_file_commit (self->output, error))
    return FALSE;
  gptd_stage_log (ctx, G_LOG_LEVEL_INFO, "%u records with responses written to %s",
                  self->n_records, gptd_atomic_file_get_path (self->output));
  return TRUE;
}

const GptdStageType gptd__responder_type = {
  .name = "responder",
  .description = "Generates a response for each instruction record and saves "
                 "the records with a model_response member (the book's "
                 "instruction-data-with-response.json)",
  .params = responder_params,
  .inputs = responder_inputs,
  .outputs = responder_outputs,
  .create = responder_create,
  .process = responder_process,
  .finish = responder_finish,
  .destroy = responder_destroy,
};
