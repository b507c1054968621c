/* test-responder.c: the `responder` stage and its helpers.
 *
 *  - record JSON: records are written byte for byte as Python's json.dump()
 *    writes them, with indent=4 and on one line (strings made by Python 3's
 *    json module for the same records);
 *  - extraction: the book's .replace("### Response:", "").strip() (strings
 *    made by Python);
 *  - the stage, on the tiny model of tests/golden/generate: each response is
 *    what gptd_generator_generate() continues the prompt with, extracted; the
 *    pushed records are the input records plus "model_response" (in place
 *    when the record had one); the output file is the JSON array of those
 *    records (or JSON Lines); prompt_bytes limits the prompt; a record that
 *    is not a JSON object fails the run naming the document and leaves the
 *    old output file as it was.
 *
 * The test defines its own stages (a model source, a record source and a
 * document recorder) and loads the generate plugin from the build tree.
 */
#include "config.h"

#include <string.h>
#include <glib.h>
#include <glib/gstdio.h>
#include <json-glib/json-glib.h>

#include <gptd/generate.h>
#include <gptd/pipeline.h>
#include <gptd/plugin.h>
#include <gptd/registry.h>
#include <gptd/runner.h>

#include "record-json.h"
#include "response-text.h"

static char *model_dir;

/* ---- Helpers checked against Python ------------------------------------------ */

/* A record with every kind of value (UTF-8 input), and what Python writes for
 * json.dump([record, record2], f, indent=4), json.dumps(record) and
 * json.dumps(record2). */
static const char record1[] =
  "{\"instruction\":\"Say \\\"hi\\\"\\\\n\",\"input\":\"\","
  "\"output\":\"caf\xc3\xa9 \xf0\x9f\x98\x80 tab\\t ctrl\\u0001 del\x7f /\","
  "\"n\":-3,\"x\":0.1,\"big\":1e16,\"mid\":1e15,\"small\":1e-05,\"tiny\":0.0001,"
  "\"f\":100.0,\"g\":1.5e300,\"h\":123456.789,\"t\":true,\"z\":null,"
  "\"arr\":[1,[],{},{\"a\":[false]}]}";
static const char record2[] = "{\"instruction\":\"Two\",\"model_response\":\"ok\"}";

static const char python_indent4[] =
  "[\n    {\n        \"instruction\": \"Say \\\"hi\\\"\\\\n\",\n        \"input\": \"\",\n"
  "        \"output\": \"caf\\u00e9 \\ud83d\\ude00 tab\\t ctrl\\u0001 del\\u007f /\",\n"
  "        \"n\": -3,\n        \"x\": 0.1,\n        \"big\": 1e+16,\n"
  "        \"mid\": 1000000000000000.0,\n        \"small\": 1e-05,\n"
  "        \"tiny\": 0.0001,\n        \"f\": 100.0,\n        \"g\": 1.5e+300,\n"
  "        \"h\": 123456.789,\n        \"t\": true,\n        \"z\": null,\n"
  "        \"arr\": [\n            1,\n            [],\n            {},\n"
  "            {\n                \"a\": [\n                    false\n"
  "                ]\n            }\n        ]\n    },\n    {\n"
  "        \"instruction\": \"Two\",\n        \"model_response\": \"ok\"\n    }\n]";
static const char python_line1[] =
  "{\"instruction\": \"Say \\\"hi\\\"\\\\n\", \"input\": \"\", "
  "\"output\": \"caf\\u00e9 \\ud83d\\ude00 tab\\t ctrl\\u0001 del\\u007f /\", "
  "\"n\": -3, \"x\": 0.1, \"big\": 1e+16, \"mid\": 1000000000000000.0, "
  "\"small\": 1e-05, \"tiny\": 0.0001, \"f\": 100.0, \"g\": 1.5e+300, "
  "\"h\": 123456.789, \"t\": true, \"z\": null, \"arr\": [1, [], {}, {\"a\": [false]}]}";
static const char python_line2[] = "{\"instruction\": \"Two\", \"model_response\": \"ok\"}";

static JsonNode *
parse_json (const char *text)
{
  g_autoptr (JsonParser) p = json_parser_new ();
  g_autoptr (GError) error = NULL;
  g_assert_true (json_parser_load_from_data (p, text, -1, &error));
  g_assert_no_error (error);
  return json_node_copy (json_parser_get_root (p));
}

static void
test_record_json (void)
{
  g_autoptr (JsonNode) r1 = parse_json (record1);
  g_autoptr (JsonNode) r2 = parse_json (record2);

  /* The array as the responder writes it: element by element at level 1. */
  g_autoptr (GString) out = g_string_new ("[\n    ");
  gptd__record_json_append (out, r1, 4, 1);
  g_string_append (out, ",\n    ");
  gptd__record_json_append (out, r2, 4, 1);
  g_string_append (out, "\n]");
  g_assert_cmpstr (out->str, ==, python_indent4);

  /* The same array as one value. */
  g_autoptr (JsonNode) arr = json_node_new (JSON_NODE_ARRAY);
  JsonArray *a = json_array_new ();
  json_array_add_element (a, json_node_copy (r1));
  json_array_add_element (a, json_node_copy (r2));
  json_node_take_array (arr, a);
  g_string_truncate (out, 0);
  gptd__record_json_append (out, arr, 4, 0);
  g_assert_cmpstr (out->str, ==, python_indent4);

  g_string_truncate (out, 0);
  gptd__record_json_append (out, r1, -1, 0);
  g_assert_cmpstr (out->str, ==, python_line1);
  g_string_truncate (out, 0);
  gptd__record_json_append (out, r2, -1, 0);
  g_assert_cmpstr (out->str, ==, python_line2);
}

static void
test_extract (void)
{
  /* (generated, Python's generated.replace("### Response:", "").strip()) */
  static const char *const cases[][2] = {
    { "\n\n### Response:\nThe sky is blue.\n\n### Response:  x \xc2\xa0\x1f",
      "The sky is blue.\n\n  x" },
    { "### Response:", "" },
    { "  a ### Response: b  ", "a  b" },
    { "\xe2\x80\x83Hi\xe3\x80\x80", "Hi" },
    { "no header\n", "no header" },
    { "", "" },
  };
  for (guint i = 0; i < G_N_ELEMENTS (cases); i++)
    {
      g_autofree char *got = gptd__response_extract (cases[i][0]);
      g_assert_cmpstr (got, ==, cases[i][1]);
    }
}

/* ---- Test stages ------------------------------------------------------------ */

/* test-model-source: one gptd.Model naming dir=. */
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

/* test-record-source: the documents of the global table below, each text in
 * two chunks (the record and prompt_bytes ride on the first). */
typedef struct {
  const char *text;
  const char *record;
  guint64 prompt_bytes;
} SourceDoc;

static const SourceDoc *source_docs;
static guint n_source_docs;

static const GptdPadSpec doc_out[] = { { "default", "gptd.Document", 0 }, { NULL } };

static gpointer
record_source_create (GptdStageContext *ctx, const GptdParams *params, GError **error)
{
  return g_new0 (int, 1);
}

static gboolean
record_source_run (gpointer self, GptdStageContext *ctx, GError **error)
{
  for (guint i = 0; i < n_source_docs; i++)
    {
      const SourceDoc *s = &source_docs[i];
      gsize len = strlen (s->text), half = len / 2;
      Gptd__Document d = GPTD__DOCUMENT__INIT;
      d.source = (char *) "records.json";
      d.index = i;
      d.record = (char *) s->record;
      d.prompt_bytes = s->prompt_bytes;
      d.text.data = (guint8 *) s->text;
      d.text.len = half;
      if (!gptd_stage_push (ctx, 0, &d.base, error))
        return FALSE;
      Gptd__Document d2 = GPTD__DOCUMENT__INIT;
      d2.source = (char *) "records.json";
      d2.index = i;
      d2.offset = half;
      d2.text.data = (guint8 *) s->text + half;
      d2.text.len = len - half;
      d2.last = TRUE;
      if (!gptd_stage_push (ctx, 0, &d2.base, error))
        return FALSE;
    }
  return TRUE;
}

static const GptdStageType record_source_type = {
  .name = "test-record-source",
  .description = "sends documents with records",
  .outputs = doc_out,
  .create = record_source_create,
  .run = record_source_run,
  .destroy = g_free,
};

/* test-doc-sink: keeps the documents it receives in a global list. */
static const GptdPadSpec doc_in[] = { { "default", "gptd.Document", 0 }, { NULL } };
static GPtrArray *sink_docs; /* Gptd__Document * */

static gpointer
sink_create (GptdStageContext *ctx, const GptdParams *params, GError **error)
{
  return g_new0 (int, 1);
}

static gboolean
sink_process (gpointer self, GptdStageContext *ctx, guint input,
              const ProtobufCMessage *msg, GError **error)
{
  gsize len = protobuf_c_message_get_packed_size (msg);
  g_autofree guint8 *buf = g_malloc (len);
  protobuf_c_message_pack (msg, buf);
  g_ptr_array_add (sink_docs, gptd__document__unpack (NULL, len, buf));
  return TRUE;
}

static const GptdStageType sink_type = {
  .name = "test-doc-sink",
  .description = "records documents",
  .inputs = doc_in,
  .create = sink_create,
  .process = sink_process,
  .destroy = g_free,
};

static const GptdPluginDescriptor test_plugin = {
  GPTD_PLUGIN_ABI_MAJOR, GPTD_PLUGIN_ABI_MINOR, "test-responder", "test stages", "1", "MIT",
  (const GptdStageType *const[]){ &model_source_type, &record_source_type, &sink_type,
                                  NULL },
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

static guint n_sample_events;

static void
on_event (const Gptd__Event *ev, gpointer data)
{
  if (ev->body_case == GPTD__EVENT__BODY_SAMPLE)
    n_sample_events++;
  else if (ev->body_case == GPTD__EVENT__BODY_LOG && g_test_verbose ())
    g_printerr ("# %s: %s\n", ev->log->stage, ev->log->message);
}

static gboolean
run_pipeline (const char *text, const char *run_dir, GError **error)
{
  g_autoptr (GptdPipeline) pipeline =
    gptd_pipeline_load_data (get_registry (), text, -1, "test.pipeline", NULL, NULL, error);
  if (pipeline == NULL)
    return FALSE;
  g_autoptr (GptdRunner) runner = gptd_runner_new (pipeline, run_dir, on_event, NULL);
  return gptd_runner_run (runner, error);
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

/* The book's response for @prompt: the library's greedy continuation with
 * @max_new tokens and eos 50256, extracted. */
static char *
expected_response (const char *prompt, int max_new)
{
  g_autoptr (GError) error = NULL;
  g_autoptr (GptdGenerator) g = gptd_generator_load (model_dir, NULL, 0, &error);
  g_assert_no_error (error);
  GptdGenerateOptions o;
  gptd_generate_options_init (&o);
  o.max_new_tokens = max_new;
  o.eos_id = 50256;
  g_autoptr (GptdGenerateResult) r = gptd_generator_generate (g, prompt, &o, NULL, &error);
  g_assert_no_error (error);
  return gptd__response_extract (r->text);
}

/* The record @record_text with "model_response" set to @response. */
static JsonNode *
expected_record (const char *record_text, const char *response)
{
  JsonNode *n = parse_json (record_text);
  json_object_set_string_member (json_node_get_object (n), "model_response", response);
  return n;
}

/* Prompts in the Alpaca shape.  The tiny model's window is 16 tokens: longer
 * prompts are truncated from the left, by the stage and the library alike. */
static const char prompt_a[] =
  "Below is an instruction that describes a task. Write a response that "
  "appropriately completes the request.\n\n### Instruction:\nName the cat."
  "\n\n### Response:\n";
static const char prompt_b[] =
  "Below is an instruction that describes a task. Write a response that "
  "appropriately completes the request.\n\n### Instruction:\nRewrite the sentence."
  "\n\n### Input:\nthe dog sat\n\n### Response:\n";

static void
test_stage_responses (void)
{
  g_autofree char *text_c = g_strconcat (prompt_a, "The cat is Tom.", NULL);
  const SourceDoc docs[] = {
    { prompt_a, "{\"instruction\":\"Name the cat.\",\"input\":\"\","
                "\"output\":\"The cat is Tom.\"}", 0 },
    { prompt_b, "{\"instruction\":\"Rewrite the sentence.\",\"input\":\"the dog sat\","
                "\"output\":\"The dog sat down.\",\"n\":7}", 0 },
    /* The record has a model_response already: replaced where it is.  The text
     * holds the expected output too; prompt_bytes says where the prompt ends. */
    { text_c, "{\"instruction\":\"Name the cat.\",\"model_response\":\"old\","
              "\"output\":\"The cat is Tom.\"}", sizeof prompt_a - 1 },
  };
  const char *prompts[] = { prompt_a, prompt_b, prompt_a };
  source_docs = docs;
  n_source_docs = G_N_ELEMENTS (docs);

  for (int fmt = 0; fmt < 2; fmt++)
    {
      g_autoptr (GError) error = NULL;
      g_autofree char *run_dir = g_dir_make_tmp ("gptd-resp-XXXXXX", &error);
      g_assert_no_error (error);
      g_autofree char *out = g_build_filename (run_dir, fmt ? "resp.jsonl" : "resp.json",
                                               NULL);
      /* jsonl: the model from input.model, the format from the file name;
       * json: model= and the default format. */
      g_autofree char *text = fmt
        ? g_strdup_printf ("[pipeline]\nname=r\n\n"
                           "[stage models]\ntype=test-model-source\ndir=%s\n\n"
                           "[stage recs]\ntype=test-record-source\n\n"
                           "[stage respond]\ntype=responder\ninput.model=models\n"
                           "input.prompts=recs\nmax-new-tokens=10\noutput=%s\n\n"
                           "[stage sink]\ntype=test-doc-sink\ninput=respond\n",
                           model_dir, out)
        : g_strdup_printf ("[pipeline]\nname=r\n\n"
                           "[stage recs]\ntype=test-record-source\n\n"
                           "[stage respond]\ntype=responder\nmodel=%s\n"
                           "input.prompts=recs\nmax-new-tokens=10\noutput=%s\n\n"
                           "[stage sink]\ntype=test-doc-sink\ninput=respond\n",
                           model_dir, out);
      sink_docs = g_ptr_array_new ();
      n_sample_events = 0;
      g_assert_true (run_pipeline (text, run_dir, &error));
      g_assert_no_error (error);

      g_assert_cmpuint (sink_docs->len, ==, G_N_ELEMENTS (docs));
      g_assert_cmpuint (n_sample_events, ==, G_N_ELEMENTS (docs));
      g_autoptr (GString) want_file = g_string_new (fmt ? "" : "[\n    ");
      for (guint i = 0; i < G_N_ELEMENTS (docs); i++)
        {
          Gptd__Document *d = sink_docs->pdata[i];
          g_autofree char *resp = expected_response (prompts[i], 10);
          g_autoptr (JsonNode) want = expected_record (docs[i].record, resp);
          g_autoptr (JsonNode) got = parse_json (d->record);
          if (!json_node_equal (want, got))
            g_error ("record %u: got %s", i, d->record);
          /* Same members in the same order. */
          g_autoptr (GList) wm = json_object_get_members (json_node_get_object (want));
          g_autoptr (GList) gm = json_object_get_members (json_node_get_object (got));
          for (GList *a = wm, *b = gm; a != NULL || b != NULL; a = a->next, b = b->next)
            {
              g_assert_true (a != NULL && b != NULL);
              g_assert_cmpstr (a->data, ==, b->data);
            }
          g_assert_cmpstr (g_list_last (gm)->data, ==,
                           i == 2 ? "output" : "model_response");
          g_assert_cmpuint (d->text.len, ==, strlen (resp));
          g_assert_true (memcmp (d->text.data, resp, d->text.len) == 0);
          g_assert_cmpuint (d->index, ==, i);
          g_assert_true (d->last);

          if (fmt)
            {
              gptd__record_json_append (want_file, want, -1, 0);
              g_string_append_c (want_file, '\n');
            }
          else
            {
              if (i > 0)
                g_string_append (want_file, ",\n    ");
              gptd__record_json_append (want_file, want, 4, 1);
            }
          gptd__document__free_unpacked (d, NULL);
        }
      if (!fmt)
        g_string_append (want_file, "\n]");
      g_autofree char *got_file = NULL;
      g_assert_true (g_file_get_contents (out, &got_file, NULL, &error));
      g_assert_cmpstr (got_file, ==, want_file->str);
      g_ptr_array_unref (sink_docs);
      remove_dir (run_dir);
    }
}

/* No records: the default output in the run directory is an empty array. */
static void
test_stage_empty (void)
{
  source_docs = NULL;
  n_source_docs = 0;
  g_autoptr (GError) error = NULL;
  g_autofree char *run_dir = g_dir_make_tmp ("gptd-resp-XXXXXX", &error);
  g_autofree char *text = g_strdup_printf (
    "[pipeline]\nname=r\n\n[stage recs]\ntype=test-record-source\n\n"
    "[stage respond]\ntype=responder\nmodel=%s\ninput.prompts=recs\n", model_dir);
  g_assert_true (run_pipeline (text, run_dir, &error));
  g_assert_no_error (error);
  g_autofree char *path = g_build_filename (run_dir, "instruction-data-with-response.json",
                                            NULL);
  g_autofree char *got = NULL;
  g_assert_true (g_file_get_contents (path, &got, NULL, &error));
  g_assert_cmpstr (got, ==, "[]");
  remove_dir (run_dir);
}

/* A record that is not a JSON object fails the run, naming the document; the
 * output file keeps its old content. */
static void
test_stage_bad_record (void)
{
  static const char *const bad[] = { "{\"instruction\": ", "[1, 2]" };
  for (guint k = 0; k < G_N_ELEMENTS (bad); k++)
    {
      const SourceDoc docs[] = {
        { prompt_a, "{\"instruction\":\"Name the cat.\",\"input\":\"\"}", 0 },
        { prompt_b, bad[k], 0 },
      };
      source_docs = docs;
      n_source_docs = G_N_ELEMENTS (docs);
      g_autoptr (GError) error = NULL;
      g_autofree char *run_dir = g_dir_make_tmp ("gptd-resp-XXXXXX", &error);
      g_autofree char *out = g_build_filename (run_dir, "resp.json", NULL);
      g_assert_true (g_file_set_contents (out, "old", -1, &error));
      g_autofree char *text = g_strdup_printf (
        "[pipeline]\nname=r\n\n[stage recs]\ntype=test-record-source\n\n"
        "[stage respond]\ntype=responder\nmodel=%s\ninput.prompts=recs\n"
        "max-new-tokens=3\noutput=%s\n", model_dir, out);
      g_assert_false (run_pipeline (text, run_dir, &error));
      g_assert_nonnull (error);
      if (g_test_verbose ())
        g_printerr ("# %s\n", error->message);
      g_assert_nonnull (strstr (error->message, "respond"));
      g_assert_nonnull (strstr (error->message, "document 1 (records.json)"));
      g_assert_nonnull (strstr (error->message, k == 0 ? "not valid JSON"
                                                       : "not a JSON object"));
      g_autofree char *got = NULL;
      g_assert_true (g_file_get_contents (out, &got, NULL, NULL));
      g_assert_cmpstr (got, ==, "old");
      remove_dir (run_dir);
    }
}

/* Without a model the run fails at the first record. */
static void
test_stage_no_model (void)
{
  const SourceDoc docs[] = { { prompt_a, "{\"instruction\":\"x\"}", 0 } };
  source_docs = docs;
  n_source_docs = 1;
  g_autoptr (GError) error = NULL;
  g_autofree char *run_dir = g_dir_make_tmp ("gptd-resp-XXXXXX", &error);
  g_assert_false (run_pipeline ("[pipeline]\nname=r\n\n[stage recs]\n"
                                "type=test-record-source\n\n[stage respond]\n"
                                "type=responder\ninput.prompts=recs\n", run_dir, &error));
  g_assert_nonnull (error);
  g_assert_nonnull (strstr (error->message, "no model"));
  remove_dir (run_dir);
}

int
main (int argc, char **argv)
{
  g_test_init (&argc, &argv, NULL);
  model_dir = g_test_build_filename (G_TEST_DIST, "golden", "generate", "model", NULL);
  g_test_add_func ("/responder/record-json", test_record_json);
  g_test_add_func ("/responder/extract", test_extract);
  g_test_add_func ("/responder/stage/responses", test_stage_responses);
  g_test_add_func ("/responder/stage/empty", test_stage_empty);
  g_test_add_func ("/responder/stage/bad-record", test_stage_bad_record);
  g_test_add_func ("/responder/stage/no-model", test_stage_no_model);
  int rc = g_test_run ();
  g_free (model_dir);
  return rc;
}
