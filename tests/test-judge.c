/* test-judge.c: the `judge` stage against a small Ollama-compatible server
 * run by the test (libsoup's SoupServer on 127.0.0.1, a random port, on a
 * thread of its own), which streams its replies as JSON lines:
 *
 *  - the scoring prompt and format_input() equal the book's text for a record
 *    with and without an input (strings made by Python from the book's code);
 *    scores are read as int() reads them, or as the one number of the reply;
 *  - the prompts the server receives are the book's, with the model and the
 *    options (seed 123, temperature 0, num_ctx 2048); scores are pushed as
 *    gptd.Score, written as JSON lines, and the average is logged;
 *  - a garbage reply, HTTP 500, a server that fails twice then answers, an
 *    HTTP 404 with Ollama's error message, a server that is down: a clear
 *    error naming the URL and the record, retries as asked, or skipped
 *    records (-1) with on-error=skip;
 *  - a record without model_response is an error naming the record.
 */
#include "config.h"

#include <string.h>
#include <glib.h>
#include <glib/gstdio.h>
#include <json-glib/json-glib.h>
#include <libsoup/soup.h>

#include <gptd/pipeline.h>
#include <gptd/plugin.h>
#include <gptd/registry.h>
#include <gptd/runner.h>

#include "judge-prompt.h"
#include "test-ollama-server.h"

/* ---- The book's text (made by Python with ch07's format_input) --------------- */

static const char rec_input[] =
  "{\"instruction\":\"Rewrite the sentence using a simile.\","
  "\"input\":\"The car is very fast.\",\"output\":\"The car is as fast as lightning.\","
  "\"model_response\":\"The car is as fast as a bullet.\"}";
static const char rec_no_input[] =
  "{\"instruction\":\"What type of cloud is typically associated with thunderstorms?\","
  "\"input\":\"\",\"output\":\"The type of cloud typically associated with "
  "thunderstorms is cumulonimbus.\",\"model_response\":\"The type of cloud "
  "associated with thunderstorms is a cumulus cloud.\"}";
static const char prompt_input[] =
  "Given the input `Below is an instruction that describes a task. Write a response "
  "that appropriately completes the request.\n\n### Instruction:\nRewrite the sentence "
  "using a simile.\n\n### Input:\nThe car is very fast.` and correct output `The car "
  "is as fast as lightning.`, score the model response `The car is as fast as a "
  "bullet.` on a scale from 0 to 100, where 100 is the best score. Respond with the "
  "integer number only.";
static const char prompt_no_input[] =
  "Given the input `Below is an instruction that describes a task. Write a response "
  "that appropriately completes the request.\n\n### Instruction:\nWhat type of cloud "
  "is typically associated with thunderstorms?` and correct output `The type of cloud "
  "typically associated with thunderstorms is cumulonimbus.`, score the model response "
  "`The type of cloud associated with thunderstorms is a cumulus cloud.` on a scale "
  "from 0 to 100, where 100 is the best score. Respond with the integer number only.";

static JsonObject *
parse_object (const char *text)
{
  g_autoptr (JsonParser) p = json_parser_new ();
  g_assert_true (json_parser_load_from_data (p, text, -1, NULL));
  return json_object_ref (json_node_get_object (json_parser_get_root (p)));
}

static void
test_prompt (void)
{
  g_autoptr (GError) error = NULL;
  g_autoptr (JsonObject) a = parse_object (rec_input);
  g_autoptr (JsonObject) b = parse_object (rec_no_input);
  g_autofree char *pa = gptd__judge_prompt (a, "model_response", &error);
  g_assert_no_error (error);
  g_assert_cmpstr (pa, ==, prompt_input);
  g_autofree char *pb = gptd__judge_prompt (b, "model_response", &error);
  g_assert_no_error (error);
  g_assert_cmpstr (pb, ==, prompt_no_input);

  /* A record without the response, or with a number for the output. */
  g_assert_null (gptd__judge_prompt (a, "response", &error));
  g_assert_error (error, GPTD_STAGE_ERROR, GPTD_STAGE_ERROR_INPUT);
  g_assert_nonnull (strstr (error->message, "\"response\""));
  g_clear_error (&error);
  g_autoptr (JsonObject) c = parse_object ("{\"instruction\":\"x\",\"output\":5,"
                                           "\"model_response\":\"y\"}");
  g_assert_null (gptd__judge_prompt (c, "model_response", &error));
  g_assert_nonnull (strstr (error->message, "\"output\" member is not a string"));
}

static void
test_parse_score (void)
{
  static const struct { const char *reply; int score; } cases[] = {
    { "85", 85 }, { " 90\n", 90 }, { "+7", 7 }, { "1_0", 10 }, { "0", 0 },
    { "100", 100 }, { "Score: 73", 73 }, { "I would give it 60.", 60 },
    /* Not a score: */
    { "", -1 }, { "great", -1 }, { "101", -1 }, { "-5", -1 }, { "85/100", -1 },
    { "between 70 and 80", -1 }, { "99999999999999999999999", -1 },
  };
  for (guint i = 0; i < G_N_ELEMENTS (cases); i++)
    {
      int s = -1;
      gboolean ok = gptd__judge_parse_score (cases[i].reply, &s);
      if (ok != (cases[i].score >= 0) || (ok && s != cases[i].score))
        g_error ("reply \"%s\": got %s %d", cases[i].reply, ok ? "score" : "no score", s);
    }
}

/* ---- The test server -------------------------------------------------------- */

/* A port where nothing listens. */
static guint
closed_port (void)
{
  g_autoptr (GSocket) s = g_socket_new (G_SOCKET_FAMILY_IPV4, G_SOCKET_TYPE_STREAM,
                                        G_SOCKET_PROTOCOL_TCP, NULL);
  g_autoptr (GInetAddress) lo = g_inet_address_new_loopback (G_SOCKET_FAMILY_IPV4);
  g_autoptr (GSocketAddress) a = g_inet_socket_address_new (lo, 0);
  g_assert_true (g_socket_bind (s, a, TRUE, NULL));
  g_autoptr (GSocketAddress) bound = g_socket_get_local_address (s, NULL);
  guint port = g_inet_socket_address_get_port (G_INET_SOCKET_ADDRESS (bound));
  g_socket_close (s, NULL);
  return port;
}

/* ---- Test stages and running ---------------------------------------------- */

/* test-records: the records of the global list as documents. */
static const char *const *source_records;

static const GptdPadSpec doc_out[] = { { "default", "gptd.Document", 0 }, { NULL } };

static gpointer
records_create (GptdStageContext *ctx, const GptdParams *params, GError **error)
{
  return g_new0 (int, 1);
}

static gboolean
records_run (gpointer self, GptdStageContext *ctx, GError **error)
{
  for (guint i = 0; source_records[i] != NULL; i++)
    {
      Gptd__Document d = GPTD__DOCUMENT__INIT;
      d.source = (char *) "responses.json";
      d.index = i;
      d.record = (char *) source_records[i];
      d.last = TRUE;
      if (!gptd_stage_push (ctx, 0, &d.base, error))
        return FALSE;
    }
  return TRUE;
}

static const GptdStageType records_type = {
  .name = "test-records",
  .description = "sends records",
  .outputs = doc_out,
  .create = records_create,
  .run = records_run,
  .destroy = g_free,
};

/* test-score-sink: keeps the scores it receives. */
static const GptdPadSpec score_in[] = { { "default", "gptd.Score", 0 }, { NULL } };
static GPtrArray *sink_scores; /* Gptd__Score * */

static gboolean
sink_process (gpointer self, GptdStageContext *ctx, guint input,
              const ProtobufCMessage *msg, GError **error)
{
  gsize len = protobuf_c_message_get_packed_size (msg);
  g_autofree guint8 *buf = g_malloc (len);
  protobuf_c_message_pack (msg, buf);
  g_ptr_array_add (sink_scores, gptd__score__unpack (NULL, len, buf));
  return TRUE;
}

static const GptdStageType sink_type = {
  .name = "test-score-sink",
  .description = "records scores",
  .inputs = score_in,
  .create = records_create,
  .process = sink_process,
  .destroy = g_free,
};

static const GptdPluginDescriptor test_plugin = {
  GPTD_PLUGIN_ABI_MAJOR, GPTD_PLUGIN_ABI_MINOR, "test-judge", "test stages", "1", "MIT",
  (const GptdStageType *const[]){ &records_type, &sink_type, NULL },
  { NULL }
};

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
      g_autofree char *so = g_build_filename (builddir, "plugins", "judge", ".libs",
                                              "judge.so", NULL);
      g_assert_true (gptd_registry_load_file (registry, so, &error));
      g_assert_no_error (error);
      g_assert_true (gptd_registry_add_descriptor (registry, &test_plugin, "(test)", &error));
      g_assert_no_error (error);
    }
  return registry;
}

static GPtrArray *logs; /* log messages of the run */

static void
on_event (const Gptd__Event *ev, gpointer data)
{
  if (ev->body_case == GPTD__EVENT__BODY_LOG)
    {
      g_ptr_array_add (logs, g_strdup (ev->log->message));
      if (g_test_verbose ())
        g_printerr ("# %s: %s\n", ev->log->stage, ev->log->message);
    }
}

static gboolean
has_log (const char *text)
{
  for (guint i = 0; i < logs->len; i++)
    if (strstr (logs->pdata[i], text) != NULL)
      return TRUE;
  return FALSE;
}

/* Runs records -> judge (with @keys) -> sink; the scores go to sink_scores. */
static gboolean
run_judge (const char *const *records, const char *url, const char *keys,
           const char *out, GError **error)
{
  source_records = records;
  g_autofree char *text = g_strdup_printf (
    "[pipeline]\nname=j\n\n[stage recs]\ntype=test-records\n\n"
    "[stage judge]\ntype=judge\ninput=recs\nurl=%s\nretry-delay=0.01\noutput=%s\n%s\n"
    "[stage sink]\ntype=test-score-sink\ninput=judge\n", url, out, keys);
  g_autoptr (GptdPipeline) pipeline =
    gptd_pipeline_load_data (get_registry (), text, -1, "test.pipeline", NULL, NULL, error);
  if (pipeline == NULL)
    return FALSE;
  g_autofree char *run_dir = g_dir_make_tmp ("gptd-judge-XXXXXX", NULL);
  g_ptr_array_set_size (sink_scores, 0);
  g_ptr_array_set_size (logs, 0);
  g_autoptr (GptdRunner) runner = gptd_runner_new (pipeline, run_dir, on_event, NULL);
  gboolean ok = gptd_runner_run (runner, error);
  g_autofree char *events = g_build_filename (run_dir, "events.jsonl", NULL);
  g_unlink (events);
  g_rmdir (run_dir);
  return ok;
}

static char *tmp_dir;

/* ---- Stage tests --------------------------------------------------------------- */

static void
test_stage_scores (void)
{
  static const char *const replies[] = { "85", " 90\n", "Score: 7", NULL };
  const char *records[] = { rec_input, rec_no_input, rec_input, NULL };
  test_ollama_reset (TEST_OLLAMA_OK, replies);
  g_autofree char *url = test_ollama_url ();
  g_autofree char *out = g_build_filename (tmp_dir, "scores.jsonl", NULL);
  g_autoptr (GError) error = NULL;
  g_assert_true (run_judge (records, url, "model=judge-model\n", out, &error));
  g_assert_no_error (error);

  /* What the server received: the book's prompt, the model and options. */
  g_assert_cmpuint (test_ollama_n_bodies (), ==, 3);
  for (guint i = 0; i < 3; i++)
    {
      g_autofree char *text = test_ollama_body (i);
      g_autoptr (JsonObject) body = parse_object (text);
      g_assert_cmpstr (json_object_get_string_member (body, "model"), ==, "judge-model");
      JsonArray *msgs = json_object_get_array_member (body, "messages");
      g_assert_cmpuint (json_array_get_length (msgs), ==, 1);
      JsonObject *m = json_array_get_object_element (msgs, 0);
      g_assert_cmpstr (json_object_get_string_member (m, "role"), ==, "user");
      g_assert_cmpstr (json_object_get_string_member (m, "content"), ==,
                       i == 1 ? prompt_no_input : prompt_input);
      JsonObject *o = json_object_get_object_member (body, "options");
      g_assert_cmpint (json_object_get_int_member (o, "seed"), ==, 123);
      g_assert_cmpfloat (json_object_get_double_member (o, "temperature"), ==, 0);
      g_assert_cmpint (json_object_get_int_member (o, "num_ctx"), ==, 2048);
    }

  /* The scores, pushed and written; the average as the book prints it. */
  static const int want[] = { 85, 90, 7 };
  g_assert_cmpuint (sink_scores->len, ==, 3);
  g_autofree char *file = NULL;
  g_assert_true (g_file_get_contents (out, &file, NULL, &error));
  g_auto (GStrv) lines = g_strsplit (file, "\n", -1);
  g_assert_cmpuint (g_strv_length (lines), ==, 4);
  g_assert_cmpstr (lines[3], ==, "");
  for (guint i = 0; i < 3; i++)
    {
      Gptd__Score *s = sink_scores->pdata[i];
      g_assert_cmpint (s->score, ==, want[i]);
      g_assert_cmpuint (s->index, ==, i);
      g_assert_cmpstr (s->source, ==, "responses.json");
      g_assert_cmpstr (s->record, ==, records[i]);
      g_assert_cmpstr (s->reply, ==, replies[i]);
      g_autoptr (JsonObject) line = parse_object (lines[i]);
      g_assert_cmpint (json_object_get_int_member (line, "score"), ==, want[i]);
      g_assert_cmpint (json_object_get_int_member (line, "index"), ==, i);
      g_assert_cmpstr (json_object_get_string_member (line, "reply"), ==, replies[i]);
      g_assert_cmpstr (json_object_get_string_member (line, "record"), ==, records[i]);
      gptd__score__free_unpacked (s, NULL);
    }
  g_ptr_array_set_size (sink_scores, 0);
  g_assert_true (has_log ("record 1: score 90"));
  g_assert_true (has_log ("Number of scores: 3 of 3"));
  g_assert_true (has_log ("Average score: 60.67"));
}

static void
free_scores (void)
{
  for (guint i = 0; i < sink_scores->len; i++)
    gptd__score__free_unpacked (sink_scores->pdata[i], NULL);
  g_ptr_array_set_size (sink_scores, 0);
}

static void
test_stage_garbage (void)
{
  const char *records[] = { rec_input, rec_no_input, NULL };
  g_autofree char *url = test_ollama_url ();
  g_autofree char *out = g_build_filename (tmp_dir, "garbage.jsonl", NULL);

  /* on-error=fail: the first record stops the run, with no retry. */
  test_ollama_reset (TEST_OLLAMA_GARBAGE, NULL);
  g_autoptr (GError) error = NULL;
  g_assert_false (run_judge (records, url, "", out, &error));
  g_assert_nonnull (error);
  g_assert_nonnull (strstr (error->message, "record 0 (responses.json)"));
  g_assert_nonnull (strstr (error->message, url));
  g_assert_nonnull (strstr (error->message, "not an integer from 0 to 100"));
  g_assert_nonnull (strstr (error->message, "I cannot judge this."));
  g_assert_cmpuint (test_ollama_n_requests (), ==, 1);
  g_assert_false (g_file_test (out, G_FILE_TEST_EXISTS));
  free_scores ();
  g_clear_error (&error);

  /* on-error=skip: both records get -1 and the reply. */
  test_ollama_reset (TEST_OLLAMA_GARBAGE, NULL);
  g_assert_true (run_judge (records, url, "on-error=skip\n", out, &error));
  g_assert_no_error (error);
  g_assert_cmpuint (sink_scores->len, ==, 2);
  for (guint i = 0; i < 2; i++)
    {
      Gptd__Score *s = sink_scores->pdata[i];
      g_assert_cmpint (s->score, ==, -1);
      g_assert_cmpstr (s->reply, ==, "I cannot judge this.");
    }
  g_assert_true (has_log ("Number of scores: 0 of 2"));
  g_assert_false (has_log ("Average score"));
  free_scores ();
}

static void
test_stage_http_error (void)
{
  const char *records[] = { rec_input, NULL };
  g_autofree char *url = test_ollama_url ();
  g_autofree char *out = g_build_filename (tmp_dir, "http.jsonl", NULL);
  g_autoptr (GError) error = NULL;

  /* HTTP 500 is retried: one attempt and two retries, then the error. */
  test_ollama_reset (TEST_OLLAMA_HTTP_500, NULL);
  g_assert_false (run_judge (records, url, "retries=2\n", out, &error));
  g_assert_nonnull (error);
  g_assert_nonnull (strstr (error->message, "record 0 (responses.json)"));
  g_assert_nonnull (strstr (error->message, "after 3 attempts"));
  g_assert_nonnull (strstr (error->message, "HTTP 500"));
  g_assert_nonnull (strstr (error->message, url));
  g_assert_cmpuint (test_ollama_n_requests (), ==, 3);
  g_assert_true (has_log ("retrying"));
  free_scores ();
  g_clear_error (&error);

  /* HTTP 404 is not retried; Ollama's message is shown. */
  test_ollama_reset (TEST_OLLAMA_NOT_FOUND, NULL);
  g_assert_false (run_judge (records, url, "retries=2\n", out, &error));
  g_assert_nonnull (strstr (error->message, "HTTP 404"));
  g_assert_nonnull (strstr (error->message, "model \"llama3\" not found"));
  g_assert_cmpuint (test_ollama_n_requests (), ==, 1);
  free_scores ();
}

static void
test_stage_flaky (void)
{
  static const char *const replies[] = { "42", NULL };
  const char *records[] = { rec_input, NULL };
  g_autofree char *url = test_ollama_url ();
  g_autofree char *out = g_build_filename (tmp_dir, "flaky.jsonl", NULL);
  g_autoptr (GError) error = NULL;

  /* Two failures, then an answer: retries=3 scores the record. */
  test_ollama_reset (TEST_OLLAMA_FLAKY, replies);
  g_assert_true (run_judge (records, url, "retries=3\n", out, &error));
  g_assert_no_error (error);
  g_assert_cmpuint (test_ollama_n_requests (), ==, 3);
  g_assert_cmpuint (sink_scores->len, ==, 1);
  g_assert_cmpint (((Gptd__Score *) sink_scores->pdata[0])->score, ==, 42);
  free_scores ();

  /* retries=1 is one too few. */
  test_ollama_reset (TEST_OLLAMA_FLAKY, replies);
  g_assert_false (run_judge (records, url, "retries=1\n", out, &error));
  g_assert_nonnull (strstr (error->message, "HTTP 500"));
  g_assert_cmpuint (test_ollama_n_requests (), ==, 2);
  free_scores ();
}

static void
test_stage_down (void)
{
  const char *records[] = { rec_input, rec_no_input, NULL };
  g_autofree char *url = g_strdup_printf ("http://127.0.0.1:%u/", closed_port ());
  g_autofree char *out = g_build_filename (tmp_dir, "down.jsonl", NULL);
  g_autoptr (GError) error = NULL;
  g_assert_false (run_judge (records, url, "retries=1\n", out, &error));
  g_assert_nonnull (error);
  if (g_test_verbose ())
    g_printerr ("# %s\n", error->message);
  g_assert_nonnull (strstr (error->message, "record 0 (responses.json)"));
  g_assert_nonnull (strstr (error->message, "cannot reach"));
  g_autofree char *endpoint = g_strdup_printf ("%sapi/chat", url);
  g_assert_nonnull (strstr (error->message, endpoint));
  free_scores ();
  g_clear_error (&error);

  g_assert_true (run_judge (records, url, "retries=0\non-error=skip\n", out, &error));
  g_assert_no_error (error);
  g_assert_cmpuint (sink_scores->len, ==, 2);
  g_assert_cmpint (((Gptd__Score *) sink_scores->pdata[1])->score, ==, -1);
  g_assert_true (has_log ("Number of scores: 0 of 2"));
  free_scores ();
}

static void
test_stage_bad_input (void)
{
  const char *records[] = {
    rec_input, "{\"instruction\":\"x\",\"input\":\"\",\"output\":\"y\"}", NULL
  };
  static const char *const replies[] = { "50", NULL };
  test_ollama_reset (TEST_OLLAMA_OK, replies);
  g_autofree char *url = test_ollama_url ();
  g_autofree char *out = g_build_filename (tmp_dir, "bad.jsonl", NULL);
  g_autoptr (GError) error = NULL;
  g_assert_false (run_judge (records, url, "on-error=skip\n", out, &error));
  g_assert_nonnull (strstr (error->message, "record 1 (responses.json)"));
  g_assert_nonnull (strstr (error->message, "no \"model_response\" member"));
  free_scores ();
  g_clear_error (&error);

  /* A URL that is not http: a load-time error naming the key. */
  g_assert_false (run_judge (records, "ftp://example.org", "", out, &error));
  g_assert_error (error, GPTD_PIPELINE_ERROR, GPTD_PIPELINE_ERROR_CHECK);
  g_assert_nonnull (strstr (error->message, "ftp://example.org"));
}

int
main (int argc, char **argv)
{
  g_test_init (&argc, &argv, NULL);
  /* The test server is on the loopback: never through a proxy. */
  g_unsetenv ("http_proxy");
  g_unsetenv ("HTTP_PROXY");
  g_setenv ("no_proxy", "127.0.0.1", TRUE);
  test_ollama_start ();
  sink_scores = g_ptr_array_new ();
  logs = g_ptr_array_new_with_free_func (g_free);
  tmp_dir = g_dir_make_tmp ("gptd-judge-XXXXXX", NULL);
  g_test_add_func ("/judge/prompt", test_prompt);
  g_test_add_func ("/judge/parse-score", test_parse_score);
  g_test_add_func ("/judge/stage/scores", test_stage_scores);
  g_test_add_func ("/judge/stage/garbage", test_stage_garbage);
  g_test_add_func ("/judge/stage/http-error", test_stage_http_error);
  g_test_add_func ("/judge/stage/flaky", test_stage_flaky);
  g_test_add_func ("/judge/stage/down", test_stage_down);
  g_test_add_func ("/judge/stage/bad-input", test_stage_bad_input);
  int rc = g_test_run ();
  test_ollama_stop ();
  const char *files[] = { "scores.jsonl", "garbage.jsonl", "http.jsonl", "flaky.jsonl",
                          "down.jsonl", "bad.jsonl" };
  for (guint i = 0; i < G_N_ELEMENTS (files); i++)
    {
      g_autofree char *p = g_build_filename (tmp_dir, files[i], NULL);
      g_unlink (p);
    }
  g_rmdir (tmp_dir);
  g_free (tmp_dir);
  g_ptr_array_unref (sink_scores);
  g_ptr_array_unref (logs);
  return rc;
}
