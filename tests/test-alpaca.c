/* test-alpaca.c: the book's chapter 7 flow as one pipeline: the shipped
 * pipelines/alpaca-small.pipeline run shortened (3 training steps, 3 new tokens per
 * response) on the book's instruction-data.json (skipped when GPTD_DATA_DIR is
 * not set), its judge pointed at the test's Ollama-compatible server
 * (test-ollama-server.c):
 *
 *  - the collator cuts the book's 935/110/55 records and the trainer trains;
 *  - the trained model reaches the responder, whose prompts are json-source's
 *    select=test records: instruction-data-with-response.json in the run
 *    directory is a JSON array of the book's test_data (records 935 to 1044, in
 *    order, their fields unchanged) each with a stripped model_response;
 *  - the judge sends the book's scoring prompt of every record with its response,
 *    and scores.jsonl holds the server's scores; the average is logged.
 */
#include "config.h"

#include <string.h>

#include <glib.h>
#include <json-glib/json-glib.h>

#include "test-ollama-server.h"
#include "test-pipeline-util.h"

static const char preamble[] =
  "Below is an instruction that describes a task. Write a response that "
  "appropriately completes the request.";

/* The book's format_input(entry). */
static char *
format_input (JsonObject *entry)
{
  const char *input = json_object_get_string_member (entry, "input");
  return g_strdup_printf ("%s\n\n### Instruction:\n%s%s%s", preamble,
                          json_object_get_string_member (entry, "instruction"),
                          *input ? "\n\n### Input:\n" : "", input);
}

static JsonNode *
load_json (const char *path)
{
  g_autoptr (JsonParser) p = json_parser_new ();
  g_autoptr (GError) error = NULL;
  g_assert_true (json_parser_load_from_file (p, path, &error));
  g_assert_no_error (error);
  return json_node_copy (json_parser_get_root (p));
}

static void
rm_rf (const char *dir)
{
  g_autofree char *cmd = g_strdup_printf ("rm -rf '%s'", dir);
  g_assert_cmpint (system (cmd), ==, 0);
}

static void
test_alpaca_small (void)
{
  const char *data = g_getenv ("GPTD_DATA_DIR");
  if (data == NULL)
    {
      g_test_skip ("GPTD_DATA_DIR is not set (instruction-data.json)");
      return;
    }
  static const char *const replies[] = { "85", "Score: 60", " 7\n", NULL };
  test_ollama_reset (TEST_OLLAMA_OK, replies);

  g_autofree char *url = test_ollama_url ();
  g_autofree char *url_setting = g_strdup_printf ("ollama_url=%s", url);
  const char *settings[] = { "train.max-steps=3", "train.eval-freq=2", "train.eval-iter=1",
                             "train.sample-tokens=0", "respond.max-new-tokens=3",
                             url_setting, NULL };
  g_autofree char *path = g_build_filename (g_getenv ("GPTD_SRCDIR"), "pipelines",
                                            "alpaca-small.pipeline", NULL);
  g_autoptr (GptdRegistry) registry = test_registry ();
  g_autoptr (GError) error = NULL;
  g_autoptr (GptdPipeline) p = gptd_pipeline_load_file (registry, path, settings, NULL,
                                                        &error);
  g_assert_no_error (error);
  g_autofree char *dir = g_dir_make_tmp ("gptd-alpaca-XXXXXX", NULL);
  TestEvents ev;
  test_events_init (&ev);
  g_autoptr (GptdRunner) runner = gptd_runner_new (p, dir, test_on_event, &ev);
  gboolean ok = gptd_runner_run (runner, &error);
  if (g_test_verbose () || !ok)
    for (guint i = 0; i < ev.logs->len; i++)
      g_printerr ("  %s\n", (char *) ev.logs->pdata[i]);
  g_assert_no_error (error);
  g_assert_true (ok);

  /* The book's split, and json-source cutting the same test split. */
  g_assert_cmpint (test_events_find (&ev, "batches: train: 935 records, 116 batches"), >=, 0);
  g_assert_cmpint (test_events_find (&ev, "batches: test: 110 records, 14 batches"), >=, 0);
  g_assert_cmpint (test_events_find (&ev, "batches: validation: 55 records, 7 batches"), >=, 0);
  g_assert_cmpint (test_events_find_prefix (&ev, "test-records: test split: records 935 to "
                                            "1044 of "), >=, 0);

  /* Evaluated twice in 3 steps (eval-freq=2, and at the end). */
  g_autofree char *eval_path = g_build_filename (dir, "eval.csv", NULL);
  g_autofree char *csv = NULL;
  g_assert_true (g_file_get_contents (eval_path, &csv, NULL, NULL));
  g_auto (GStrv) rows = g_strsplit (g_strstrip (csv), "\n", -1);
  g_assert_cmpuint (g_strv_length (rows), ==, 3);

  /* The responses: the book's test_data with model_response, in order. */
  g_autofree char *data_path = g_build_filename (data, "instruction-data.json", NULL);
  g_autoptr (JsonNode) all = load_json (data_path);
  JsonArray *records = json_node_get_array (all);
  g_assert_cmpuint (json_array_get_length (records), ==, 1100);
  g_autofree char *resp_path = g_build_filename (dir, "instruction-data-with-response.json",
                                                 NULL);
  g_autoptr (JsonNode) got = load_json (resp_path);
  g_assert_true (JSON_NODE_HOLDS_ARRAY (got));
  JsonArray *answered = json_node_get_array (got);
  g_assert_cmpuint (json_array_get_length (answered), ==, 110);
  for (guint i = 0; i < 110; i++)
    {
      JsonObject *want = json_array_get_object_element (records, 935 + i);
      JsonObject *rec = json_array_get_object_element (answered, i);
      g_autoptr (GList) members = json_object_get_members (rec);
      static const char *const keys[] = { "instruction", "input", "output",
                                          "model_response" };
      g_assert_cmpuint (g_list_length (members), ==, G_N_ELEMENTS (keys));
      guint k = 0;
      for (GList *m = members; m; m = m->next, k++)
        {
          g_assert_cmpstr (m->data, ==, keys[k]);
          if (k < 3)
            g_assert_cmpstr (json_object_get_string_member (rec, keys[k]), ==,
                             json_object_get_string_member (want, keys[k]));
        }
      const char *response = json_object_get_string_member (rec, "model_response");
      g_autofree char *stripped = g_strstrip (g_strdup (response));
      g_assert_cmpstr (response, ==, stripped);
      g_assert_null (strstr (response, "### Response:"));
    }

  /* The judge: the book's prompt of each record with its response, the scores. */
  static const int scores[] = { 85, 60, 7 };
  g_assert_cmpuint (test_ollama_n_bodies (), ==, 110);
  for (guint i = 0; i < 110; i += 37)
    {
      JsonObject *rec = json_array_get_object_element (answered, i);
      g_autofree char *formatted = format_input (rec);
      g_autofree char *want = g_strdup_printf (
          "Given the input `%s` and correct output `%s`, score the model response `%s` on "
          "a scale from 0 to 100, where 100 is the best score. Respond with the integer "
          "number only.", formatted, json_object_get_string_member (rec, "output"),
          json_object_get_string_member (rec, "model_response"));
      g_autofree char *body_text = test_ollama_body (i);
      g_autoptr (JsonParser) bp = json_parser_new ();
      g_assert_true (json_parser_load_from_data (bp, body_text, -1, NULL));
      JsonObject *body = json_node_get_object (json_parser_get_root (bp));
      g_assert_cmpstr (json_object_get_string_member (body, "model"), ==, "llama3");
      JsonObject *msg = json_array_get_object_element (
          json_object_get_array_member (body, "messages"), 0);
      g_assert_cmpstr (json_object_get_string_member (msg, "content"), ==, want);
    }
  g_autofree char *scores_path = g_build_filename (dir, "scores.jsonl", NULL);
  g_autofree char *lines_text = NULL;
  g_assert_true (g_file_get_contents (scores_path, &lines_text, NULL, NULL));
  g_auto (GStrv) lines = g_strsplit (g_strstrip (lines_text), "\n", -1);
  g_assert_cmpuint (g_strv_length (lines), ==, 110);
  long sum = 0;
  for (guint i = 0; i < 110; i++)
    {
      g_autoptr (JsonParser) lp = json_parser_new ();
      g_assert_true (json_parser_load_from_data (lp, lines[i], -1, NULL));
      JsonObject *s = json_node_get_object (json_parser_get_root (lp));
      g_assert_cmpint (json_object_get_int_member (s, "score"), ==, scores[i % 3]);
      g_assert_cmpint (json_object_get_int_member (s, "index"), ==, 935 + i);
      sum += scores[i % 3];
    }
  g_autofree char *average = g_strdup_printf ("judge: Average score: %.2f", sum / 110.0);
  g_assert_cmpint (test_events_find (&ev, average), >=, 0);
  test_events_clear (&ev);
  rm_rf (dir);
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
  g_test_add_func ("/alpaca/small-pipeline", test_alpaca_small);
  int rc = g_test_run ();
  test_ollama_stop ();
  return rc;
}
