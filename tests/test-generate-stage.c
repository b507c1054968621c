/* test-generate-stage.c: the `generator` stage through the pipeline loader
 * and the runner, on the tiny model directory of tests/golden/generate:
 *
 *  - bad parameters (top-p 0 or 1.5, a context longer than the model's, a
 *    model directory without a config) are load-time errors naming the stage
 *    and the key;
 *  - model= and prompt= give the library's continuation, as a JSON line in
 *    output= (or samples.jsonl in the run directory) and as a sample event;
 *  - kv-cache=false gives the same samples;
 *  - a Model message on input.model and Documents on input.prompts (chunked)
 *    give one sample per document, pushed as gptd.Sample messages.
 *
 * The test defines two stages of its own (a model/prompt source and a sample
 * recorder) and loads the generate plugin from the build tree.
 */
#include "config.h"

#include <string.h>
#include <glib.h>
#include <glib/gstdio.h>
#include <json-glib/json-glib.h>

#include <gptd/generate.h>
#include <gptd/quant.h>
#include <gptd/pipeline.h>
#include <gptd/plugin.h>
#include <gptd/registry.h>
#include <gptd/runner.h>

static char *model_dir;

/* ---- Test stages ------------------------------------------------------------ */

/* test-model-source: one gptd.Model naming model-dir. */
static const GptdParamSpec model_source_params[] = {
  { "dir", GPTD_PARAM_PATH, NULL, 0, 0, NULL, "model directory", GPTD_PARAM_REQUIRED },
  { NULL }
};
static const GptdPadSpec model_out[] = { { "default", "gptd.Model", 0 }, { NULL } };

static gpointer
model_source_create (GptdStageContext *ctx, const GptdParams *params, GError **error)
{
  return g_strdup (gptd_params_get_string (params, "dir"));
}

static gboolean
model_source_run (gpointer self, GptdStageContext *ctx, GError **error)
{
  Gptd__Model m = GPTD__MODEL__INIT;
  m.path = self;
  m.step = 42;
  return gptd_stage_push (ctx, 0, &m.base, error);
}

static const GptdStageType model_source_type = {
  .name = "test-model-source",
  .description = "sends one model",
  .params = model_source_params,
  .outputs = model_out,
  .create = model_source_create,
  .run = model_source_run,
  .destroy = g_free,
};

/* test-doc-source: each `|`-separated text as a document in 3-byte chunks. */
static const GptdParamSpec doc_source_params[] = {
  { "texts", GPTD_PARAM_STRING, NULL, 0, 0, NULL, "texts separated by |", GPTD_PARAM_REQUIRED },
  { NULL }
};
static const GptdPadSpec doc_out[] = { { "default", "gptd.Document", 0 }, { NULL } };

static gpointer
doc_source_create (GptdStageContext *ctx, const GptdParams *params, GError **error)
{
  return g_strsplit (gptd_params_get_string (params, "texts"), "|", -1);
}

static gboolean
doc_source_run (gpointer self, GptdStageContext *ctx, GError **error)
{
  char **texts = self;
  for (guint i = 0; texts[i] != NULL; i++)
    {
      gsize len = strlen (texts[i]);
      for (gsize off = 0; off < len; off += 3)
        {
          Gptd__Document d = GPTD__DOCUMENT__INIT;
          d.source = (char *) "test";
          d.index = i;
          d.offset = off;
          d.text.data = (guint8 *) texts[i] + off;
          d.text.len = MIN (3, len - off);
          d.last = off + 3 >= len;
          if (!gptd_stage_push (ctx, 0, &d.base, error))
            return FALSE;
        }
    }
  return TRUE;
}

static void
strv_free (gpointer p)
{
  g_strfreev (p);
}

static const GptdStageType doc_source_type = {
  .name = "test-doc-source",
  .description = "sends documents",
  .params = doc_source_params,
  .outputs = doc_out,
  .create = doc_source_create,
  .run = doc_source_run,
  .destroy = strv_free,
};

/* test-sample-sink: keeps the samples it receives (packed) in a global list. */
static const GptdPadSpec sample_in[] = { { "default", "gptd.Sample", 0 }, { NULL } };
static GPtrArray *sink_samples; /* Gptd__Sample * */

static gpointer
sink_create (GptdStageContext *ctx, const GptdParams *params, GError **error)
{
  return g_new0 (int, 1);
}

static gboolean
sink_process (gpointer self, GptdStageContext *ctx, guint input,
              const ProtobufCMessage *msg, GError **error)
{
  guint8 buf[65536];
  gsize len = protobuf_c_message_pack (msg, buf);
  g_ptr_array_add (sink_samples, gptd__sample__unpack (NULL, len, buf));
  return TRUE;
}

static const GptdStageType sink_type = {
  .name = "test-sample-sink",
  .description = "records samples",
  .inputs = sample_in,
  .create = sink_create,
  .process = sink_process,
  .destroy = g_free,
};

static const GptdPluginDescriptor test_plugin = {
  GPTD_PLUGIN_ABI_MAJOR, GPTD_PLUGIN_ABI_MINOR, "test-generate", "test stages", "1", "MIT",
  (const GptdStageType *const[]){ &model_source_type, &doc_source_type, &sink_type, NULL },
  { NULL }
};

/* ---- Running pipelines -------------------------------------------------------- */

static GptdRegistry *registry;

static GptdRegistry *
get_registry (void)
{
  if (registry == NULL)
    {
      g_autoptr (GError) error = NULL;
      const char *builddir = g_getenv ("GPTD_BUILDDIR");
      g_assert_nonnull (builddir);
      registry = gptd_registry_new ();
      g_autofree char *so = g_build_filename (builddir, "plugins", "generate", ".libs",
                                              "generate.so", NULL);
      g_assert_true (gptd_registry_load_file (registry, so, &error));
      g_assert_no_error (error);
      g_assert_true (gptd_registry_add_descriptor (registry, &test_plugin, "(test)", &error));
      g_assert_no_error (error);
    }
  return registry;
}

typedef struct {
  GPtrArray *samples; /* texts of sample events */
  GString *streamed;
  int text_done;
} Events;

static void
on_event (const Gptd__Event *ev, gpointer data)
{
  Events *e = data;
  if (ev->body_case == GPTD__EVENT__BODY_SAMPLE)
    g_ptr_array_add (e->samples, g_strdup (ev->sample->text));
  else if (ev->body_case == GPTD__EVENT__BODY_TEXT)
    {
      g_string_append (e->streamed, ev->text->text);
      e->text_done += ev->text->done;
    }
  else if (ev->body_case == GPTD__EVENT__BODY_LOG && g_test_verbose ())
    g_printerr ("# %s: %s\n", ev->log->stage, ev->log->message);
}

static gboolean
run_pipeline (const char *text, const char *run_dir, Events *events, GError **error)
{
  g_autoptr (GptdPipeline) pipeline =
    gptd_pipeline_load_data (get_registry (), text, -1, "test.pipeline", NULL, NULL, error);
  if (pipeline == NULL)
    return FALSE;
  g_autoptr (GptdRunner) runner = gptd_runner_new (pipeline, run_dir, on_event, events);
  return gptd_runner_run (runner, error);
}

static void
events_init (Events *e)
{
  e->samples = g_ptr_array_new_with_free_func (g_free);
  e->streamed = g_string_new (NULL);
  e->text_done = 0;
}

static void
events_clear (Events *e)
{
  g_ptr_array_unref (e->samples);
  g_string_free (e->streamed, TRUE);
}

/* Removes a flat temporary directory. */
static void
remove_dir (const char *dir)
{
  GDir *d = g_dir_open (dir, 0, NULL);
  const char *name;
  while (d != NULL && (name = g_dir_read_name (d)) != NULL)
    {
      g_autofree char *p = g_build_filename (dir, name, NULL);
      g_unlink (p);
    }
  if (d != NULL)
    g_dir_close (d);
  g_rmdir (dir);
}

/* What the library generates for @prompt with @o. */
static GptdGenerateResult *
library_result (const char *prompt, const GptdGenerateOptions *o)
{
  g_autoptr (GError) error = NULL;
  g_autoptr (GptdGenerator) g = gptd_generator_load (model_dir, NULL, 0, &error);
  g_assert_no_error (error);
  GptdGenerateResult *r = gptd_generator_generate (g, prompt, o, NULL, &error);
  g_assert_no_error (error);
  return r;
}

/* ---- Tests ------------------------------------------------------------------- */

typedef struct {
  const char *keys;   /* lines added to the generator's group */
  const char *key;    /* the key the error must name */
  GptdPipelineError code;
} BadCase;

static void
test_bad_params (void)
{
  const BadCase cases[] = {
    /* top-p must be in (0, 1]. */
    { "top-p=0\n", "top-p", GPTD_PIPELINE_ERROR_BAD_VALUE },
    { "top-p=1.5\n", "top-p", GPTD_PIPELINE_ERROR_BAD_VALUE },
    { "top-p=-0.5\n", "top-p", GPTD_PIPELINE_ERROR_BAD_VALUE },
    /* Temperature, top-k, eos-id and max-new-tokens ranges. */
    { "temperature=-1\n", "temperature", GPTD_PIPELINE_ERROR_BAD_VALUE },
    { "top-k=-3\n", "top-k", GPTD_PIPELINE_ERROR_BAD_VALUE },
    { "eos-id=-2\n", "eos-id", GPTD_PIPELINE_ERROR_BAD_VALUE },
    { "max-new-tokens=-1\n", "max-new-tokens", GPTD_PIPELINE_ERROR_BAD_VALUE },
    { "kv-cache=maybe\n", "kv-cache", GPTD_PIPELINE_ERROR_BAD_VALUE },
    /* Weight formats are a choice. */
    { "weights=q4\n", "weights", GPTD_PIPELINE_ERROR_BAD_VALUE },
    /* The model's context is 16 positions. */
    { "context-length=17\n", "context-length", GPTD_PIPELINE_ERROR_CHECK },
    { "context-length=0\n", "context-length", GPTD_PIPELINE_ERROR_BAD_VALUE },
    /* A misspelt key gets the closest name. */
    { "top_p=0.5\n", "top-p", GPTD_PIPELINE_ERROR_NO_SUCH_KEY },
  };
  for (guint i = 0; i < G_N_ELEMENTS (cases); i++)
    {
      g_autofree char *text = g_strdup_printf (
        "[pipeline]\nname=bad\n\n[stage gen]\ntype=generator\nmodel=%s\nprompt=hi\n%s",
        model_dir, cases[i].keys);
      g_autoptr (GError) error = NULL;
      g_autoptr (GptdPipeline) p =
        gptd_pipeline_load_data (get_registry (), text, -1, "bad.pipeline", NULL, NULL, &error);
      g_assert_null (p);
      if (!g_error_matches (error, GPTD_PIPELINE_ERROR, cases[i].code))
        g_error ("case %s: %s", cases[i].keys, error ? error->message : "no error");
      g_assert_nonnull (strstr (error->message, "gen"));
      g_assert_nonnull (strstr (error->message, cases[i].key));
    }

  /* context-length up to the model's is fine. */
  g_autofree char *ok = g_strdup_printf (
    "[pipeline]\nname=ok\n\n[stage gen]\ntype=generator\nmodel=%s\nprompt=hi\n"
    "context-length=16\ntop-p=1\n", model_dir);
  g_autoptr (GError) error = NULL;
  g_autoptr (GptdPipeline) p =
    gptd_pipeline_load_data (get_registry (), ok, -1, "ok.pipeline", NULL, NULL, &error);
  g_assert_no_error (error);

  /* A directory without config.json: the context cannot be checked. */
  g_autofree char *tmp = g_dir_make_tmp ("gptd-gen-XXXXXX", &error);
  g_assert_no_error (error);
  g_autofree char *missing = g_strdup_printf (
    "[pipeline]\nname=bad\n\n[stage gen]\ntype=generator\nmodel=%s\nprompt=hi\n"
    "context-length=8\n", tmp);
  g_autoptr (GptdPipeline) q =
    gptd_pipeline_load_data (get_registry (), missing, -1, "bad.pipeline", NULL, NULL, &error);
  g_assert_null (q);
  g_assert_error (error, GPTD_PIPELINE_ERROR, GPTD_PIPELINE_ERROR_CHECK);
  g_assert_nonnull (strstr (error->message, "config.json"));
  g_rmdir (tmp);
}

/* Reads the JSON lines of @path. */
static GPtrArray *
read_json_lines (const char *path)
{
  g_autofree char *text = NULL;
  g_autoptr (GError) error = NULL;
  g_assert_true (g_file_get_contents (path, &text, NULL, &error));
  GPtrArray *out = g_ptr_array_new_with_free_func (g_object_unref);
  g_auto (GStrv) lines = g_strsplit (text, "\n", -1);
  for (guint i = 0; lines[i] != NULL; i++)
    {
      if (lines[i][0] == '\0')
        continue;
      JsonParser *p = json_parser_new ();
      g_assert_true (json_parser_load_from_data (p, lines[i], -1, &error));
      g_assert_no_error (error);
      g_ptr_array_add (out, p);
    }
  return out;
}

static void
assert_json_sample (JsonParser *p, const char *prompt, const GptdGenerateResult *r,
                    guint64 seed)
{
  JsonObject *o = json_node_get_object (json_parser_get_root (p));
  g_assert_cmpstr (json_object_get_string_member (o, "prompt"), ==, prompt);
  g_assert_cmpstr (json_object_get_string_member (o, "text"), ==, r->text);
  g_assert_cmpstr (json_object_get_string_member (o, "stop_reason"), ==, "length");
  g_assert_cmpint (json_object_get_int_member (o, "seed"), ==, (gint64) seed);
  g_assert_cmpstr (json_object_get_string_member (o, "model"), ==, model_dir);
  JsonArray *ids = json_object_get_array_member (o, "ids");
  g_assert_cmpint ((int) json_array_get_length (ids), ==, r->n_ids);
  for (int i = 0; i < r->n_ids; i++)
    g_assert_cmpint (json_array_get_int_element (ids, i), ==, r->ids[i]);
}

static void
test_run_model_param (void)
{
  const char *prompt = "the cat and the dog";
  GptdGenerateOptions o;
  gptd_generate_options_init (&o);
  o.max_new_tokens = 20;
  o.temperature = 0.9;
  o.top_k = 40;
  o.top_p = 0.95;
  o.seed = 7;
  g_autoptr (GptdGenerateResult) expect = library_result (prompt, &o);

  for (int kv = 0; kv < 2; kv++)
    {
      g_autoptr (GError) error = NULL;
      g_autofree char *run_dir = g_dir_make_tmp ("gptd-gen-XXXXXX", &error);
      g_assert_no_error (error);
      g_autofree char *out = g_build_filename (run_dir, "out.jsonl", NULL);
      g_autofree char *text = g_strdup_printf (
        "[pipeline]\nname=gen\n\n[stage gen]\ntype=generator\nmodel=%s\nprompt=%s\n"
        "max-new-tokens=20\ntemperature=0.9\ntop-k=40\ntop-p=0.95\nseed=7\n"
        "kv-cache=%s\n%s%s\n",
        model_dir, prompt, kv ? "true" : "false", kv ? "output=" : "", kv ? out : "");
      Events ev;
      events_init (&ev);
      g_assert_true (run_pipeline (text, run_dir, &ev, &error));
      g_assert_no_error (error);

      /* output= when given, else samples.jsonl in the run directory. */
      g_autofree char *path = kv ? g_strdup (out)
                                 : g_build_filename (run_dir, "samples.jsonl", NULL);
      g_autoptr (GPtrArray) lines = read_json_lines (path);
      g_assert_cmpuint (lines->len, ==, 1);
      assert_json_sample (lines->pdata[0], prompt, expect, 7);

      g_assert_cmpuint (ev.samples->len, ==, 1);
      g_assert_cmpstr (ev.samples->pdata[0], ==, expect->text);
      g_assert_cmpstr (ev.streamed->str, ==, expect->text);
      g_assert_cmpint (ev.text_done, ==, 1);
      events_clear (&ev);
      remove_dir (run_dir);
    }
}

/* weights=q8 generates what the library does with q8 weights; converted
 * weights need the KV cache. */
static void
test_run_weights (void)
{
  const char *prompt = "the cat and the dog";
  GptdGenerateOptions o;
  gptd_generate_options_init (&o);
  o.max_new_tokens = 20;
  g_autoptr (GError) error = NULL;
  GptdGeneratorLoadOptions lo;
  gptd_generator_load_options_init (&lo);
  lo.weights = GPTD_WEIGHT_FORMAT_Q8;
  g_autoptr (GptdGenerator) g = gptd_generator_load_full (model_dir, &lo, &error);
  g_assert_no_error (error);
  g_autoptr (GptdGenerateResult) expect =
    gptd_generator_generate (g, prompt, &o, NULL, &error);
  g_assert_no_error (error);

  g_autofree char *run_dir = g_dir_make_tmp ("gptd-gen-XXXXXX", &error);
  g_assert_no_error (error);
  g_autofree char *text = g_strdup_printf (
    "[pipeline]\nname=gen\n\n[stage gen]\ntype=generator\nmodel=%s\nprompt=%s\n"
    "max-new-tokens=20\nweights=q8\n", model_dir, prompt);
  Events ev;
  events_init (&ev);
  g_assert_true (run_pipeline (text, run_dir, &ev, &error));
  g_assert_no_error (error);
  g_assert_cmpuint (ev.samples->len, ==, 1);
  g_assert_cmpstr (ev.samples->pdata[0], ==, expect->text);
  events_clear (&ev);

  g_autofree char *nocache = g_strdup_printf (
    "[pipeline]\nname=gen\n\n[stage gen]\ntype=generator\nmodel=%s\nprompt=%s\n"
    "weights=bf16\nkv-cache=false\n", model_dir, prompt);
  events_init (&ev);
  g_assert_false (run_pipeline (nocache, run_dir, &ev, &error));
  g_assert_nonnull (error);
  g_assert_nonnull (strstr (error->message, "kv-cache"));
  events_clear (&ev);
  remove_dir (run_dir);
}

static void
test_run_inputs (void)
{
  const char *texts[] = { "the cat", "and the dog sat", "caf\xc3\xa9", NULL };
  const guint n_texts = G_N_ELEMENTS (texts) - 1;
  GptdGenerateOptions o;
  gptd_generate_options_init (&o);
  o.max_new_tokens = 9;

  g_autoptr (GError) error = NULL;
  g_autofree char *run_dir = g_dir_make_tmp ("gptd-gen-XXXXXX", &error);
  g_autofree char *joined = g_strjoinv ("|", (char **) texts);
  g_autofree char *text = g_strdup_printf (
    "[pipeline]\nname=gen\n\n"
    "[stage models]\ntype=test-model-source\ndir=%s\n\n"
    "[stage docs]\ntype=test-doc-source\ntexts=%s\n\n"
    "[stage gen]\ntype=generator\ninput.model=models\ninput.prompts=docs\n"
    "max-new-tokens=9\n\n"
    "[stage sink]\ntype=test-sample-sink\ninput=gen\n",
    model_dir, joined);
  sink_samples = g_ptr_array_new ();
  Events ev;
  events_init (&ev);
  g_assert_true (run_pipeline (text, run_dir, &ev, &error));
  g_assert_no_error (error);
  g_assert_cmpuint (sink_samples->len, ==, n_texts);
  for (guint i = 0; i < n_texts; i++)
    {
      Gptd__Sample *s = sink_samples->pdata[i];
      g_autoptr (GptdGenerateResult) r = library_result (texts[i], &o);
      g_assert_cmpstr (s->prompt, ==, texts[i]);
      g_assert_cmpstr (s->text, ==, r->text);
      g_assert_cmpstr (s->model, ==, model_dir);
      g_assert_cmpuint (s->step, ==, 42);
      g_assert_cmpuint (s->n_ids, ==, (guint) r->n_ids);
      for (int k = 0; k < r->n_ids; k++)
        g_assert_cmpuint (s->ids[k], ==, (guint) r->ids[k]);
      gptd__sample__free_unpacked (s, NULL);
    }
  g_ptr_array_unref (sink_samples);
  events_clear (&ev);
  remove_dir (run_dir);
}

/* Without a model the run fails when a prompt needs one. */
static void
test_run_no_model (void)
{
  g_autoptr (GError) error = NULL;
  g_autofree char *run_dir = g_dir_make_tmp ("gptd-gen-XXXXXX", &error);
  Events ev;
  events_init (&ev);
  g_assert_false (run_pipeline ("[pipeline]\nname=gen\n\n[stage gen]\ntype=generator\n"
                                "prompt=hello\n", run_dir, &ev, &error));
  g_assert_nonnull (error);
  g_assert_nonnull (strstr (error->message, "no model"));
  events_clear (&ev);
  remove_dir (run_dir);
}

int
main (int argc, char **argv)
{
  g_test_init (&argc, &argv, NULL);
  model_dir = g_test_build_filename (G_TEST_DIST, "golden", "generate", "model", NULL);
  g_test_add_func ("/generate/stage/bad-params", test_bad_params);
  g_test_add_func ("/generate/stage/model-param", test_run_model_param);
  g_test_add_func ("/generate/stage/weights", test_run_weights);
  g_test_add_func ("/generate/stage/inputs", test_run_inputs);
  g_test_add_func ("/generate/stage/no-model", test_run_no_model);
  int rc = g_test_run ();
  g_free (model_dir);
  return rc;
}
