/* test-instruct.c: json-source, prompt-format, bpe-tokenizer and instruction-collator
 * end to end, through the runner, with the byte-level vocabulary of pipelines/vocab
 * (and GPT-2's when GPTD_DATA_DIR is set):
 *
 *  - records from a JSON array and from JSON Lines reach the tokenizer as the book's
 *    Alpaca text, with their record and the token count of their prompt;
 *  - the collator's train, test and validation batches are the book's split and
 *    custom_collate_fn of those tokens (with the prompt masked), the same for both
 *    file formats;
 *  - gpt-trainer trains on the collated batches (targets with -100) and its
 *    validation loss falls;
 *  - the shipped alpaca pipelines load, and alpaca-small runs a few steps on the
 *    book's data when GPTD_DATA_DIR is set;
 *  - bad input stops the run with an error naming what and where: malformed JSON
 *    (file:line:column), a record without "instruction", nesting past max-depth, an
 *    empty split, a template without {instruction}.
 */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include <glib.h>
#include <glib/gstdio.h>
#include <json-glib/json-glib.h>

#include <gptd/bpe.h>
#include <gptd/plugin.h>

#include "test-pipeline-util.h"

/* ---- Test stages -------------------------------------------------------------------- */

/* Writes one line per Tokens message: "index prompt_tokens n_ids record". */
static const GptdParamSpec out_params[] = {
  { "output", GPTD_PARAM_STRING, NULL, 0, 0, NULL, "file", GPTD_PARAM_REQUIRED },
  { "requests", GPTD_PARAM_STRING, "", 0, 0, NULL, "epoch requests", 0 },
  { NULL }
};
static const GptdPadSpec tokens_in[] = { { "default", "gptd.Tokens", 0 }, { NULL } };

typedef struct {
  char *output;
  char *requests;
  GString *text;
} Sink;

static gpointer
sink_create (GptdStageContext *ctx, const GptdParams *p, GError **error)
{
  Sink *s = g_new0 (Sink, 1);
  s->output = g_strdup (gptd_params_get_string (p, "output"));
  s->requests = g_strdup (gptd_params_get_string (p, "requests"));
  s->text = g_string_new (NULL);
  return s;
}

static void
sink_destroy (gpointer data)
{
  Sink *s = data;
  g_free (s->output);
  g_free (s->requests);
  g_string_free (s->text, TRUE);
  g_free (s);
}

static gboolean
tokens_sink_process (gpointer data, GptdStageContext *ctx, guint input,
                     const ProtobufCMessage *msg, GError **error)
{
  Sink *s = data;
  const Gptd__Tokens *t = (const Gptd__Tokens *) msg;
  g_string_append_printf (s->text, "%" G_GUINT64_FORMAT " %u %" G_GSIZE_FORMAT " %s\n",
                          t->index, t->prompt_tokens, t->n_ids, t->record);
  return TRUE;
}

static gboolean
sink_finish (gpointer data, GptdStageContext *ctx, GError **error)
{
  Sink *s = data;
  return g_file_set_contents (s->output, s->text->str, s->text->len, error);
}

static const GptdStageType tokens_sink_type = {
  .name = "test-tokens-sink",
  .description = "records Tokens",
  .params = out_params,
  .inputs = tokens_in,
  .create = sink_create,
  .process = tokens_sink_process,
  .finish = sink_finish,
  .destroy = sink_destroy,
};

/* Asks for the epochs of requests= ("split:epoch:seed:shuffle;...") and writes one
 * line per batch: "split index batch_size seq_len | inputs | targets". */
static const GptdPadSpec batch_in[] = { { "default", "gptd.Batch", GPTD_PAD_EPOCHS }, { NULL } };

static gboolean
batch_sink_run (gpointer data, GptdStageContext *ctx, GError **error)
{
  Sink *s = data;
  g_auto (GStrv) reqs = g_strsplit (s->requests, ";", -1);
  for (guint r = 0; reqs[r]; r++)
    {
      g_auto (GStrv) f = g_strsplit (reqs[r], ":", -1);
      g_assert_cmpuint (g_strv_length (f), ==, 4);
      Gptd__EpochRequest req = GPTD__EPOCH_REQUEST__INIT;
      req.split = f[0];
      req.epoch = atoi (f[1]);
      req.seed = atoi (f[2]);
      req.shuffle = atoi (f[3]);
      if (!gptd_stage_request_epoch (ctx, 0, &req, error))
        return FALSE;
      for (;;)
        {
          ProtobufCMessage *msg = NULL;
          GptdPullResult res = gptd_stage_pull (ctx, 0, &msg, error);
          if (res == GPTD_PULL_ERROR)
            return FALSE;
          g_assert_cmpint (res, !=, GPTD_PULL_END_OF_STREAM);
          if (res == GPTD_PULL_END_OF_EPOCH)
            {
              protobuf_c_message_free_unpacked (msg, NULL);
              break;
            }
          const Gptd__Batch *b = (const Gptd__Batch *) msg;
          g_string_append_printf (s->text, "%s %" G_GUINT64_FORMAT " %u %u |", b->split,
                                  b->index, b->batch_size, b->seq_len);
          for (gsize i = 0; i < b->n_inputs; i++)
            g_string_append_printf (s->text, " %d", b->inputs[i]);
          g_string_append (s->text, " |");
          for (gsize i = 0; i < b->n_targets; i++)
            g_string_append_printf (s->text, " %d", b->targets[i]);
          g_string_append_c (s->text, '\n');
          protobuf_c_message_free_unpacked (msg, NULL);
        }
    }
  return sink_finish (s, ctx, error);
}

static const GptdStageType batch_sink_type = {
  .name = "test-batch-sink",
  .description = "records batches",
  .params = out_params,
  .inputs = batch_in,
  .create = sink_create,
  .run = batch_sink_run,
  .destroy = sink_destroy,
};

/* Keeps the path of the last Model it receives. */
static const GptdPadSpec model_in[] = { { "default", "gptd.Model", 0 }, { NULL } };
static char *last_model_path;

static gboolean
model_sink_process (gpointer data, GptdStageContext *ctx, guint input,
                    const ProtobufCMessage *msg, GError **error)
{
  g_free (last_model_path);
  last_model_path = g_strdup (((const Gptd__Model *) msg)->path);
  return TRUE;
}

static gpointer
model_sink_create (GptdStageContext *ctx, const GptdParams *p, GError **error)
{
  return g_new0 (char, 1);
}

static const GptdStageType model_sink_type = {
  .name = "test-model-sink",
  .description = "takes models",
  .inputs = model_in,
  .create = model_sink_create,
  .process = model_sink_process,
  .destroy = g_free,
};

static const GptdPluginDescriptor test_plugin = {
  GPTD_PLUGIN_ABI_MAJOR, GPTD_PLUGIN_ABI_MINOR, "test-instruct", "test stages", "1", "MIT",
  (const GptdStageType *const[]){ &tokens_sink_type, &batch_sink_type, &model_sink_type,
                                  NULL },
  { NULL }
};

/* ---- Helpers ------------------------------------------------------------------------- */

static GptdRegistry *registry;

static GptdRegistry *
get_registry (void)
{
  if (registry == NULL)
    {
      g_autoptr (GError) error = NULL;
      registry = test_registry ();
      g_assert_nonnull (gptd_registry_lookup (registry, "instruction-collator"));
      g_assert_true (gptd_registry_add_descriptor (registry, &test_plugin, "(test)", &error));
      g_assert_no_error (error);
    }
  return registry;
}

static char *
bytes_vocab (void)
{
  const char *src = g_getenv ("GPTD_SRCDIR");
  g_assert_nonnull (src);
  return g_build_filename (src, "pipelines", "vocab", "bytes", NULL);
}

/* Made-up records (not the book's data): with and without input, non-ASCII text. */
static const char *const records[][3] = {
  { "Name the color of the sky.", "", "Blue." },
  { "Rewrite the sentence in the past tense.", "I walk home.", "I walked home." },
  { "Translate to French.", "good night", "bonne nuit" },
  { "Spell \u00e9t\u00e9 backwards.", "", "\u00e9t\u00e9" },
  { "Add the numbers.", "2 and 3", "5" },
};

static char *
records_json (gboolean jsonl)
{
  g_autoptr (GString) s = g_string_new (jsonl ? "" : "[\n");
  for (guint i = 0; i < G_N_ELEMENTS (records); i++)
    {
      g_autoptr (JsonBuilder) b = json_builder_new ();
      json_builder_begin_object (b);
      json_builder_set_member_name (b, "instruction");
      json_builder_add_string_value (b, records[i][0]);
      json_builder_set_member_name (b, "input");
      json_builder_add_string_value (b, records[i][1]);
      json_builder_set_member_name (b, "output");
      json_builder_add_string_value (b, records[i][2]);
      json_builder_end_object (b);
      g_autoptr (JsonNode) n = json_builder_get_root (b);
      g_autofree char *text = json_to_string (n, FALSE);
      g_string_append (s, text);
      if (!jsonl && i + 1 < G_N_ELEMENTS (records))
        g_string_append_c (s, ',');
      g_string_append_c (s, '\n');
    }
  if (!jsonl)
    g_string_append (s, "]\n");
  return g_string_free (g_steal_pointer (&s), FALSE);
}

/* The book's format_input(entry) and the training text. */
static char *
alpaca (guint i, gboolean with_response)
{
  GString *s = g_string_new ("Below is an instruction that describes a task. Write a "
                             "response that appropriately completes the request.\n\n"
                             "### Instruction:\n");
  g_string_append (s, records[i][0]);
  if (*records[i][1])
    g_string_append_printf (s, "\n\n### Input:\n%s", records[i][1]);
  if (with_response)
    g_string_append_printf (s, "\n\n### Response:\n%s", records[i][2]);
  return g_string_free (s, FALSE);
}

static char *
write_file (const char *dir, const char *name, const char *text)
{
  char *path = g_build_filename (dir, name, NULL);
  g_assert_true (g_file_set_contents (path, text, -1, NULL));
  return path;
}

/* Runs @text (a pipeline) in a run directory under @dir; returns the result. */
static gboolean
run_text (const char *text, const char *dir, GError **error)
{
  g_autoptr (GptdPipeline) p = gptd_pipeline_load_data (get_registry (), text, -1,
                                                        "test.pipeline", NULL, NULL, error);
  if (p == NULL)
    return FALSE;
  g_autofree char *run_dir = g_build_filename (dir, "run", NULL);
  g_mkdir_with_parents (run_dir, 0700);
  TestEvents ev;
  test_events_init (&ev);
  g_autoptr (GptdRunner) runner = gptd_runner_new (p, run_dir, test_on_event, &ev);
  gboolean ok = gptd_runner_run (runner, error);
  if (g_test_verbose ())
    for (guint i = 0; i < ev.logs->len; i++)
      g_printerr ("  %s\n", (char *) ev.logs->pdata[i]);
  test_events_clear (&ev);
  return ok;
}

static char *
front (const char *dir, const char *path, const char *vocab, const char *extra)
{
  return g_strdup_printf ("[pipeline]\nname=t\n\n"
                          "[stage records]\ntype=json-source\npath=%s\n%s\n"
                          "[stage prompts]\ntype=prompt-format\ninput=records\n\n"
                          "[stage tokens]\ntype=bpe-tokenizer\ninput=prompts\nvocab=%s\n\n",
                          path, extra ? extra : "", vocab);
}

static void
rm_rf (const char *dir)
{
  g_autofree char *cmd = g_strdup_printf ("rm -rf '%s'", dir);
  g_assert_cmpint (system (cmd), ==, 0);
}

/* ---- Tests ---------------------------------------------------------------------------- */

static void
check_tokens (const char *vocab_dir)
{
  g_autofree char *dir = g_dir_make_tmp ("gptd-instruct-XXXXXX", NULL);
  g_autofree char *json = records_json (FALSE);
  g_autofree char *path = write_file (dir, "records.json", json);
  g_autofree char *out = g_build_filename (dir, "tokens.txt", NULL);
  g_autofree char *head = front (dir, path, vocab_dir, NULL);
  g_autofree char *text = g_strdup_printf ("%s[stage sink]\ntype=test-tokens-sink\n"
                                           "input=tokens\noutput=%s\n", head, out);
  g_autoptr (GError) error = NULL;
  g_autoptr (GptdBpe) bpe = gptd_bpe_load (vocab_dir, &error);
  g_assert_no_error (error);

  g_assert_true (run_text (text, dir, &error));
  g_assert_no_error (error);
  g_autofree char *got = NULL;
  g_assert_true (g_file_get_contents (out, &got, NULL, NULL));
  g_auto (GStrv) lines = g_strsplit (got, "\n", -1);
  g_assert_cmpuint (g_strv_length (lines), ==, G_N_ELEMENTS (records) + 1);
  for (guint i = 0; i < G_N_ELEMENTS (records); i++)
    {
      /* The prompt's tokens: format_input(entry) encoded alone, as the book counts
       * them; the ids: the whole Alpaca text. */
      g_autofree char *prompt = alpaca (i, FALSE);
      g_autofree char *full = alpaca (i, TRUE);
      g_autoptr (GArray) pids = g_array_new (FALSE, FALSE, sizeof (guint32));
      g_autoptr (GArray) fids = g_array_new (FALSE, FALSE, sizeof (guint32));
      GptdBpeEncodeOptions eo = { 0 };
      g_assert_true (gptd_bpe_encode (bpe, prompt, strlen (prompt), &eo, pids, NULL));
      g_assert_true (gptd_bpe_encode (bpe, full, strlen (full), &eo, fids, NULL));
      guint64 index;
      guint ptok;
      gsize n;
      int off = 0;
      g_assert_cmpint (sscanf (lines[i], "%" G_GUINT64_FORMAT " %u %zu %n", &index, &ptok,
                               &n, &off), ==, 3);
      g_assert_cmpuint (index, ==, i);
      g_assert_cmpuint (ptok, ==, pids->len);
      g_assert_cmpuint (n, ==, fids->len);
      /* The record travels along, as compact JSON. */
      g_autoptr (JsonParser) p = json_parser_new ();
      g_assert_true (json_parser_load_from_data (p, lines[i] + off, -1, NULL));
      JsonObject *o = json_node_get_object (json_parser_get_root (p));
      g_assert_cmpstr (json_object_get_string_member (o, "instruction"), ==, records[i][0]);
      g_assert_cmpstr (json_object_get_string_member (o, "output"), ==, records[i][2]);
    }
  rm_rf (dir);
}

static void
test_tokens_bytes (void)
{
  g_autofree char *vocab = bytes_vocab ();
  check_tokens (vocab);
}

static void
test_tokens_gpt2 (void)
{
  const char *data = g_getenv ("GPTD_DATA_DIR");
  if (data == NULL)
    {
      g_test_skip ("GPTD_DATA_DIR is not set (GPT-2's vocabulary)");
      return;
    }
  g_autofree char *vocab = g_build_filename (data, "gpt2", NULL);
  check_tokens (vocab);
}

/* Runs records -> collator (split 0.6/0.2/0.2, batches of 2, prompt masked) ->
 * batch sink, from a JSON array or JSON Lines; returns the sink's lines. */
static char *
collate_records (gboolean jsonl, const char *vocab)
{
  g_autofree char *dir = g_dir_make_tmp ("gptd-instruct-XXXXXX", NULL);
  g_autofree char *json = records_json (jsonl);
  g_autofree char *path = write_file (dir, jsonl ? "records.jsonl" : "records.json", json);
  g_autofree char *out = g_build_filename (dir, "batches.txt", NULL);
  g_autofree char *head = front (dir, path, vocab, NULL);
  g_autofree char *text = g_strdup_printf (
      "%s[stage batches]\ntype=instruction-collator\ninput=tokens\nsplit=0.6,0.2,0.2\n"
      "batch-size=2\npad-id=256\nmask-prompt=true\n\n"
      "[stage sink]\ntype=test-batch-sink\ninput=batches\noutput=%s\n"
      "requests=train:0:0:0;test:0:0:0;validation:0:0:0;train:1:5:1\n", head, out);
  g_autoptr (GError) error = NULL;
  g_assert_true (run_text (text, dir, &error));
  g_assert_no_error (error);
  char *got = NULL;
  g_assert_true (g_file_get_contents (out, &got, NULL, NULL));
  rm_rf (dir);
  return got;
}

/* "split index rows T | inputs | targets" of one record alone, prompt masked. */
static char *
expected_single (const GptdBpe *bpe, const char *split, guint i)
{
  g_autofree char *prompt = alpaca (i, FALSE);
  g_autofree char *full = alpaca (i, TRUE);
  g_autoptr (GArray) pids = g_array_new (FALSE, FALSE, sizeof (guint32));
  g_autoptr (GArray) ids = g_array_new (FALSE, FALSE, sizeof (guint32));
  GptdBpeEncodeOptions eo = { 0 };
  g_assert_true (gptd_bpe_encode (bpe, prompt, strlen (prompt), &eo, pids, NULL));
  g_assert_true (gptd_bpe_encode (bpe, full, strlen (full), &eo, ids, NULL));
  GString *s = g_string_new (NULL);
  g_string_append_printf (s, "%s 0 1 %u |", split, ids->len);
  for (guint j = 0; j < ids->len; j++)
    g_string_append_printf (s, " %u", g_array_index (ids, guint32, j));
  g_string_append (s, " |");
  /* targets: the ids shifted by one, then the end-of-text; the prompt's ignored. */
  for (guint j = 0; j < ids->len; j++)
    {
      gint32 t = j + 1 < ids->len ? (gint32) g_array_index (ids, guint32, j + 1) : 256;
      if (j + 1 < pids->len)
        t = -100;
      g_string_append_printf (s, " %d", t);
    }
  return g_string_free (s, FALSE);
}

static void
test_batches (void)
{
  g_autofree char *vocab = bytes_vocab ();
  g_autofree char *array = collate_records (FALSE, vocab);
  g_autofree char *lines = collate_records (TRUE, vocab);
  g_autoptr (GptdBpe) bpe = gptd_bpe_load (vocab, NULL);
  g_assert_nonnull (bpe);

  /* Both formats give the same batches. */
  g_assert_cmpstr (array, ==, lines);
  g_auto (GStrv) got = g_strsplit (array, "\n", -1);
  /* 5 records: train int(5 * 0.6) = 3 (one batch of 2, the last dropped), test
   * int(5 * 0.2) = 1 (record 3), validation the rest (record 4); then a shuffled
   * train epoch. */
  g_assert_cmpuint (g_strv_length (got), ==, 5);
  g_assert_true (g_str_has_prefix (got[0], "train 0 2 "));
  g_autofree char *test = expected_single (bpe, "test", 3);
  g_autofree char *val = expected_single (bpe, "validation", 4);
  g_assert_cmpstr (got[1], ==, test);
  g_assert_cmpstr (got[2], ==, val);
  /* The first train batch, records 0 and 1, padded to the longer (record 1). */
  g_autofree char *r1 = alpaca (1, TRUE);
  g_autofree char *want_head = g_strdup_printf ("train 0 2 %zu |", strlen (r1));
  g_assert_true (g_str_has_prefix (got[0], want_head));
  g_assert_true (g_str_has_prefix (got[3], want_head) || g_str_has_prefix (got[3], "train 0 2"));
}

/* The validation losses of eval.csv in the run directory under @dir. */
static GArray *
val_losses (const char *dir)
{
  g_autofree char *eval_path = g_build_filename (dir, "run", "eval.csv", NULL);
  g_autofree char *csv = NULL;
  GArray *out = g_array_new (FALSE, FALSE, sizeof (double));
  g_assert_true (g_file_get_contents (eval_path, &csv, NULL, NULL));
  g_auto (GStrv) rows = g_strsplit (g_strstrip (csv), "\n", -1);
  for (guint i = 1; rows[i]; i++)
    {
      g_auto (GStrv) cells = g_strsplit (rows[i], ",", -1);
      double v = g_ascii_strtod (cells[4], NULL);
      g_assert_true (isfinite (v));
      g_array_append_val (out, v);
    }
  return out;
}

/* gpt-trainer on collated batches (targets with -100): synthetic records it can
 * learn, a tiny model; the validation loss falls. Then a second run from init= the
 * first one's model directory starts where the first ended. */
static void
test_train (void)
{
  g_autofree char *dir = g_dir_make_tmp ("gptd-instruct-XXXXXX", NULL);
  g_autofree char *dir2 = g_dir_make_tmp ("gptd-instruct-XXXXXX", NULL);
  g_autofree char *vocab = bytes_vocab ();
  g_autoptr (GString) json = g_string_new (NULL);
  for (guint i = 0; i < 60; i++)
    g_string_append_printf (json, "{\"instruction\": \"Repeat the word.\", \"input\": "
                            "\"w%u\", \"output\": \"w%u w%u\"}\n", i % 7, i % 7, i % 7);
  g_autofree char *path = write_file (dir, "records.jsonl", json->str);
  g_autofree char *head = front (dir, path, vocab, NULL);
  static const char train_fmt[] =
      "%s[stage batches]\ntype=instruction-collator\ninput=tokens\nbatch-size=4\n"
      "pad-id=256\nallowed-max-length=160\n\n"
      "[stage train]\ntype=gpt-trainer\ninput=batches\n%s\ndropout=0\n"
      "lr=%s\nmax-steps=24\neval-freq=6\neval-iter=2\nsample-tokens=0\nthreads=1\n\n"
      "[stage models]\ntype=test-model-sink\ninput=train\n";
  static const char shape[] = "model=custom\nn-layer=1\nn-head=2\nn-embd=32\n"
                              "context-length=160\nvocab-size=257";
  g_autofree char *text = g_strdup_printf (train_fmt, head, shape, "0.005");
  g_autoptr (GError) error = NULL;
  g_assert_true (run_text (text, dir, &error));
  g_assert_no_error (error);
  g_autoptr (GArray) v = val_losses (dir);
  g_assert_cmpuint (v->len, >=, 4);
  double v0 = g_array_index (v, double, 0), v1 = g_array_index (v, double, v->len - 1);
  if (g_test_verbose ())
    g_printerr ("validation loss %g -> %g\n", v0, v1);
  g_assert_cmpfloat (v1, <, 0.7 * v0);
  g_assert_nonnull (last_model_path);

  /* From init= the trained model (after its last step, past its last evaluation),
   * at a tiny learning rate: the first evaluation is at least as good as the first
   * run's last one, far below a fresh model's. */
  g_autofree char *init = g_strdup_printf ("init=%s", last_model_path);
  g_autofree char *text2 = g_strdup_printf (train_fmt, head, init, "0.00001");
  gboolean ok = run_text (text2, dir2, &error);
  g_assert_no_error (error);
  g_assert_true (ok);
  g_autoptr (GArray) w = val_losses (dir2);
  double w0 = g_array_index (w, double, 0);
  if (g_test_verbose ())
    g_printerr ("from init=: validation loss %g\n", w0);
  g_assert_cmpfloat (w0, <, v1 + 0.05);
  g_assert_cmpfloat (w0, <, 0.5 * v0);
  rm_rf (dir);
  rm_rf (dir2);
}

/* A run that must fail with an error containing @want. */
static void
expect_failure (const char *file_name, const char *contents, const char *extra_source,
                const char *collator, const char *want)
{
  g_autofree char *dir = g_dir_make_tmp ("gptd-instruct-XXXXXX", NULL);
  g_autofree char *vocab = bytes_vocab ();
  g_autofree char *path = write_file (dir, file_name, contents);
  g_autofree char *head = front (dir, path, vocab, extra_source);
  g_autofree char *text = g_strdup_printf (
      "%s[stage batches]\ntype=instruction-collator\ninput=tokens\npad-id=256\n%s\n"
      "[stage sink]\ntype=test-batch-sink\ninput=batches\noutput=%s/out\n"
      "requests=train:0:0:0\n", head, collator ? collator : "", dir);
  g_autoptr (GError) error = NULL;
  g_assert_false (run_text (text, dir, &error));
  g_assert_nonnull (error);
  if (strstr (error->message, want) == NULL)
    g_error ("got \"%s\", want \"%s\" in it", error->message, want);
  rm_rf (dir);
}

static const char good[] = "{\"instruction\": \"a\", \"input\": \"\", \"output\": \"b\"}";

static void
test_bad_input (void)
{
  /* Malformed JSON in an array: the file, line and column. */
  g_autofree char *bad_array = g_strdup_printf ("[\n%s,\n {\"instruction\": \"c\" \"input\"}\n]\n",
                                                good);
  expect_failure ("records.json", bad_array, NULL, NULL, "records.json:3:");
  /* Malformed JSON Lines: the line of the file. */
  g_autofree char *bad_lines = g_strdup_printf ("%s\n\n%s\n{\"instruction\": \n", good, good);
  expect_failure ("records.jsonl", bad_lines, NULL, NULL, "records.jsonl:4:");
  /* A record without "instruction": the record named. */
  g_autofree char *missing = g_strdup_printf (
      "[%s, {\"input\": \"\", \"output\": \"x\"}]", good);
  expect_failure ("records.json", missing, NULL, NULL,
                  "records.json: record 1 has no \"instruction\"");
  /* ... and with required= emptied, prompt-format names it. */
  expect_failure ("records.json", missing, "required=\n", NULL,
                  "records.json:1 (record 1): the record has no \"instruction\"");
  /* A field that is not a string. */
  expect_failure ("records.json", "[{\"instruction\": 5, \"input\": \"\", \"output\": \"\"}]",
                  NULL, NULL, "\"instruction\" is a JSON Integer, not a string");
  /* Nesting past max-depth, refused before parsing. */
  g_autoptr (GString) deep = g_string_new ("[{\"instruction\": \"a\", \"input\": \"\", "
                                           "\"output\": \"b\", \"x\": ");
  for (int i = 0; i < 100; i++)
    g_string_append_c (deep, '[');
  for (int i = 0; i < 100; i++)
    g_string_append_c (deep, ']');
  g_string_append (deep, "}]");
  expect_failure ("records.json", deep->str, NULL, NULL, "records.json:1:");
  expect_failure ("records.json", deep->str, NULL, NULL, "deeper than max-depth=64");
  /* An array of something else than objects. */
  expect_failure ("records.json", "[1, 2]", NULL, NULL,
                  "records.json: record 0 is a JSON Integer, not an object");
  /* An empty split: 3 records leave the test split (int(3 * 0.1) = 0) empty. */
  g_autofree char *three = g_strdup_printf ("[%s, %s, %s]", good, good, good);
  expect_failure ("records.json", three, NULL, NULL,
                  "split: the test split (fraction 0.1) gets none of the 3 records");
}

/* Load-time errors: a template without {instruction}; a bad split-order. */
static void
test_bad_pipeline (void)
{
  g_autofree char *dir = g_dir_make_tmp ("gptd-instruct-XXXXXX", NULL);
  g_autofree char *tmpl = write_file (dir, "t.txt", "Q: {input}\nA: {output}\n");
  static const struct { const char *prompt_key; const char *collator_key; const char *want; }
  cases[] = {
    { "template=t.txt", "", "a template needs {instruction} and {output}" },
    { "template=missing.txt", "", "template: " },
    { "", "split-order=train,dev", "split-order: \"dev\" is not one of" },
    { "", "split=0.5,0.6", "the fractions sum to 1.1" },
    { "", "split=0.5,0.2,0.2\nsplit-order=test,validation", "give one to 2 fractions" },
  };
  for (guint i = 0; i < G_N_ELEMENTS (cases); i++)
    {
      g_autofree char *text = g_strdup_printf (
          "[pipeline]\nname=t\n\n[stage records]\ntype=json-source\npath=%s\n\n"
          "[stage prompts]\ntype=prompt-format\ninput=records\n%s\n\n"
          "[stage tokens]\ntype=bpe-tokenizer\ninput=prompts\n\n"
          "[stage batches]\ntype=instruction-collator\ninput=tokens\n%s\n",
          tmpl, cases[i].prompt_key, cases[i].collator_key);
      g_autofree char *pfile = write_file (dir, "test.pipeline", text);
      g_autoptr (GError) error = NULL;
      g_autoptr (GptdPipeline) p = gptd_pipeline_load_file (get_registry (), pfile, NULL,
                                                            NULL, &error);
      g_assert_null (p);
      g_assert_nonnull (error);
      if (strstr (error->message, cases[i].want) == NULL)
        g_error ("case %u: got \"%s\", want \"%s\" in it", i, error->message,
                 cases[i].want);
    }
  rm_rf (dir);
}

/* The shipped pipelines load; with GPTD_DATA_DIR, a few steps of alpaca-small run
 * on the book's data and the trainer sees its 116 batches per epoch. */
static void
test_shipped_pipelines (void)
{
  const char *names[] = { "alpaca-small.pipeline", "alpaca-finetune.pipeline" };
  const char *data = g_getenv ("GPTD_DATA_DIR");
  for (guint i = 0; data != NULL && i < G_N_ELEMENTS (names); i++)
    {
      g_autoptr (GError) error = NULL;
      g_autofree char *path = g_build_filename (g_getenv ("GPTD_SRCDIR"), "pipelines",
                                                names[i], NULL);
      /* Files must exist when a pipeline loads: the data, and (for the fine-tuning
       * run) a model directory, for which any directory stands in here. */
      g_autofree char *set = g_strdup_printf ("data=%s", data);
      const char *settings[] = { set, i == 1 ? "gpt2_medium=/" : NULL, NULL };
      g_autoptr (GptdPipeline) p = gptd_pipeline_load_file (get_registry (), path, settings,
                                                            NULL, &error);
      g_assert_no_error (error);
    }
  if (g_getenv ("GPTD_DATA_DIR") == NULL)
    {
      g_test_skip ("GPTD_DATA_DIR is not set (instruction-data.json)");
      return;
    }
  g_autofree char *dir = g_dir_make_tmp ("gptd-instruct-XXXXXX", NULL);
  g_autofree char *run_dir = g_build_filename (dir, "run", NULL);
  g_autofree char *path = g_build_filename (g_getenv ("GPTD_SRCDIR"), "pipelines",
                                            "alpaca-small.pipeline", NULL);
  const char *settings[] = { "train.max-steps=3", "train.eval-freq=2", "train.eval-iter=1",
                             "train.sample-tokens=0", NULL };
  g_autoptr (GError) error = NULL;
  g_autoptr (GptdPipeline) p = gptd_pipeline_load_file (get_registry (), path, settings, NULL,
                                                        &error);
  g_assert_no_error (error);
  g_mkdir_with_parents (run_dir, 0700);
  TestEvents ev;
  test_events_init (&ev);
  g_autoptr (GptdRunner) runner = gptd_runner_new (p, run_dir, test_on_event, &ev);
  gboolean ok = gptd_runner_run (runner, &error);
  g_assert_no_error (error);
  g_assert_true (ok);
  g_assert_cmpint (test_events_find (&ev, "batches: train: 935 records, 116 batches"), >=, 0);
  g_assert_cmpint (test_events_find (&ev, "batches: test: 110 records, 14 batches"), >=, 0);
  g_assert_cmpint (test_events_find (&ev, "batches: validation: 55 records, 7 batches"), >=, 0);
  test_events_clear (&ev);
  g_autoptr (GArray) v = val_losses (dir);
  g_assert_cmpuint (v->len, ==, 2);
  rm_rf (dir);
}

int
main (int argc, char **argv)
{
  g_test_init (&argc, &argv, G_TEST_OPTION_ISOLATE_DIRS, NULL);
  g_test_add_func ("/instruct/e2e/tokens-bytes", test_tokens_bytes);
  g_test_add_func ("/instruct/e2e/tokens-gpt2", test_tokens_gpt2);
  g_test_add_func ("/instruct/e2e/batches", test_batches);
  g_test_add_func ("/instruct/e2e/train", test_train);
  g_test_add_func ("/instruct/e2e/bad-input", test_bad_input);
  g_test_add_func ("/instruct/e2e/bad-pipeline", test_bad_pipeline);
  g_test_add_func ("/instruct/e2e/shipped-pipelines", test_shipped_pipelines);
  return g_test_run ();
}
