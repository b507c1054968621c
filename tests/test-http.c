/* test-http.c: the HTTP gateway's request bodies, chat formatting, model ids
 * and models directory, and metrics text (daemon/http-openai.c,
 * http-models.c, http-metrics.c), without a server.
 */
#include "config.h"

#include <string.h>
#include <glib/gstdio.h>

#include "http.h"

static GptdHttpRequest *
parse_ok (GptdHttpEndpoint endpoint, const char *body)
{
  GptdHttpRequest *req = NULL;
  GptdHttpError err = { 0 };
  if (!gptd__http_request_parse (endpoint, body, strlen (body), &req, &err))
    g_error ("%s: %s", body, err.message);
  return req;
}

static void
test_parse_defaults (void)
{
  g_autoptr (GptdHttpRequest) req =
    parse_ok (GPTD_HTTP_COMPLETIONS, "{\"model\":\"m\",\"prompt\":\"hello\"}");
  g_assert_cmpstr (req->model, ==, "m");
  g_assert_cmpuint (req->prompts->len, ==, 1);
  g_assert_cmpstr (req->prompts->pdata[0], ==, "hello");
  g_assert_cmpuint (req->max_tokens, ==, 16);
  g_assert_cmpfloat (req->temperature, ==, 1.0);
  g_assert_cmpfloat (req->top_p, ==, 1.0);
  g_assert_cmpuint (req->top_k, ==, 0);
  g_assert_false (req->has_seed);
  g_assert_false (req->stream);
  g_assert_cmpuint (req->stop->len, ==, 0);
  g_assert_null (req->weights);
}

static void
test_parse_fields (void)
{
  g_autoptr (GptdHttpRequest) req =
    parse_ok (GPTD_HTTP_COMPLETIONS,
              "{\"model\":\"m\",\"prompt\":[\"a\",\"b\"],\"max_tokens\":7,\"temperature\":0,"
              "\"top_p\":0.5,\"top_k\":40,\"seed\":12,\"stop\":[\"\\n\",\"###\"],"
              "\"weights\":\"q8\",\"n\":1,\"frequency_penalty\":0,\"ignore_eos\":true}");
  g_assert_cmpuint (req->prompts->len, ==, 2);
  g_assert_cmpuint (req->max_tokens, ==, 7);
  g_assert_cmpfloat (req->temperature, ==, 0.0);
  g_assert_cmpfloat (req->top_p, ==, 0.5);
  g_assert_cmpuint (req->top_k, ==, 40);
  g_assert_true (req->has_seed);
  g_assert_cmpuint (req->seed, ==, 12);
  g_assert_cmpuint (req->stop->len, ==, 2);
  g_assert_cmpstr (req->stop->pdata[1], ==, "###");
  g_assert_cmpstr (req->weights, ==, "q8");
  g_assert_true (req->ignore_eos);

  g_autoptr (GptdHttpRequest) one =
    parse_ok (GPTD_HTTP_CHAT, "{\"model\":\"m\",\"messages\":[{\"role\":\"user\",\"content\":"
                              "\"x\"}],\"stop\":\"END\",\"stream\":true}");
  g_assert_cmpuint (one->stop->len, ==, 1);
  g_assert_true (one->stream);
  g_assert_cmpuint (one->max_tokens, ==, 256);

  g_autoptr (GptdHttpRequest) clf =
    parse_ok (GPTD_HTTP_CLASSIFY, "{\"model\":\"c\",\"input\":\"some text\"}");
  g_assert_cmpuint (clf->prompts->len, ==, 1);
}

/* Bad bodies: each is refused with 400 naming the field (NULL: the body). */
static const struct {
  GptdHttpEndpoint endpoint;
  const char *body;
  const char *param;
  const char *code;
} bad[] = {
  { GPTD_HTTP_COMPLETIONS, "", NULL, "invalid_json" },
  { GPTD_HTTP_COMPLETIONS, "{\"model\":", NULL, "invalid_json" },
  { GPTD_HTTP_COMPLETIONS, "[]", NULL, "invalid_json" },
  { GPTD_HTTP_COMPLETIONS, "{\"prompt\":\"x\"}", "model", "missing_field" },
  { GPTD_HTTP_COMPLETIONS, "{\"model\":3,\"prompt\":\"x\"}", "model", "invalid_type" },
  { GPTD_HTTP_COMPLETIONS, "{\"model\":\"m\"}", "prompt", "missing_field" },
  { GPTD_HTTP_COMPLETIONS, "{\"model\":\"m\",\"prompt\":[1,2]}", "prompt", "invalid_type" },
  { GPTD_HTTP_COMPLETIONS, "{\"model\":\"m\",\"prompt\":[]}", "prompt", "invalid_value" },
  { GPTD_HTTP_COMPLETIONS, "{\"model\":\"m\",\"prompt\":\"\"}", "prompt", "invalid_value" },
  /* a streamed completion takes one prompt */
  { GPTD_HTTP_COMPLETIONS, "{\"model\":\"m\",\"prompt\":[\"a\",\"b\"],\"stream\":true}",
    "prompt", "invalid_value" },
  { GPTD_HTTP_COMPLETIONS, "{\"model\":\"m\",\"prompt\":\"x\",\"max_tokens\":0}", "max_tokens",
    "invalid_value" },
  { GPTD_HTTP_COMPLETIONS, "{\"model\":\"m\",\"prompt\":\"x\",\"max_tokens\":2.5}", "max_tokens",
    "invalid_type" },
  { GPTD_HTTP_COMPLETIONS, "{\"model\":\"m\",\"prompt\":\"x\",\"max_tokens\":2000000}",
    "max_tokens", "invalid_value" },
  { GPTD_HTTP_COMPLETIONS, "{\"model\":\"m\",\"prompt\":\"x\",\"temperature\":-1}", "temperature",
    "invalid_value" },
  { GPTD_HTTP_COMPLETIONS, "{\"model\":\"m\",\"prompt\":\"x\",\"temperature\":\"0\"}",
    "temperature", "invalid_type" },
  { GPTD_HTTP_COMPLETIONS, "{\"model\":\"m\",\"prompt\":\"x\",\"top_p\":0}", "top_p",
    "invalid_value" },
  { GPTD_HTTP_COMPLETIONS, "{\"model\":\"m\",\"prompt\":\"x\",\"top_k\":-3}", "top_k",
    "invalid_value" },
  { GPTD_HTTP_COMPLETIONS, "{\"model\":\"m\",\"prompt\":\"x\",\"seed\":-1}", "seed",
    "invalid_value" },
  { GPTD_HTTP_COMPLETIONS, "{\"model\":\"m\",\"prompt\":\"x\",\"stop\":[\"a\",\"b\",\"c\",\"d\","
                           "\"e\"]}", "stop", "invalid_value" },
  { GPTD_HTTP_COMPLETIONS, "{\"model\":\"m\",\"prompt\":\"x\",\"stop\":5}", "stop",
    "invalid_type" },
  { GPTD_HTTP_COMPLETIONS, "{\"model\":\"m\",\"prompt\":\"x\",\"stream\":\"yes\"}", "stream",
    "invalid_type" },
  { GPTD_HTTP_COMPLETIONS, "{\"model\":\"m\",\"prompt\":\"x\",\"n\":2}", "n", "invalid_value" },
  { GPTD_HTTP_COMPLETIONS, "{\"model\":\"m\",\"prompt\":\"x\",\"ignore_eos\":1}", "ignore_eos",
    "invalid_type" },
  { GPTD_HTTP_COMPLETIONS, "{\"model\":\"m\",\"prompt\":\"x\",\"weights\":\"fp16\"}", "weights",
    "invalid_value" },
  { GPTD_HTTP_CHAT, "{\"model\":\"m\"}", "messages", "missing_field" },
  { GPTD_HTTP_CHAT, "{\"model\":\"m\",\"messages\":[]}", "messages", "invalid_value" },
  { GPTD_HTTP_CHAT, "{\"model\":\"m\",\"messages\":[\"hi\"]}", "messages[0]", "invalid_type" },
  { GPTD_HTTP_CHAT, "{\"model\":\"m\",\"messages\":[{\"role\":\"tool\",\"content\":\"x\"}]}",
    "messages[0]", "invalid_value" },
  { GPTD_HTTP_CHAT, "{\"model\":\"m\",\"messages\":[{\"role\":\"user\",\"content\":[1]}]}",
    "messages[0]", "invalid_type" },
  { GPTD_HTTP_CLASSIFY, "{\"model\":\"c\"}", "input", "missing_field" },
  { GPTD_HTTP_CLASSIFY, "{\"model\":\"c\",\"input\":[\"a\",\"\"]}", "input", "invalid_value" },
};

static void
test_parse_bad (void)
{
  for (gsize i = 0; i < G_N_ELEMENTS (bad); i++)
    {
      GptdHttpRequest *req = NULL;
      GptdHttpError err = { 0 };
      gboolean ok = gptd__http_request_parse (bad[i].endpoint, bad[i].body,
                                              strlen (bad[i].body), &req, &err);
      if (ok)
        g_error ("accepted: %s", bad[i].body);
      g_test_message ("%s -> %s", bad[i].body, err.message);
      g_assert_null (req);
      g_assert_cmpuint (err.status, ==, 400);
      g_assert_cmpstr (err.param, ==, bad[i].param);
      g_assert_cmpstr (err.code, ==, bad[i].code);
      g_assert_nonnull (err.message);
      if (bad[i].param != NULL)
        g_assert_nonnull (strstr (err.message, bad[i].param));
      gptd__http_error_clear (&err);
    }
}

/* A body nested a hundred thousand deep is refused as bad JSON, naming the
 * nesting, instead of crashing the gateway (json-glib recurses per level). */
static void
test_parse_deep (void)
{
  const gsize depth = 100000;
  GString *body = g_string_new ("{\"model\":\"m\",\"prompt\":");
  for (gsize i = 0; i < depth; i++)
    g_string_append_c (body, '[');
  for (gsize i = 0; i < depth; i++)
    g_string_append_c (body, ']');
  g_string_append_c (body, '}');
  GptdHttpRequest *req = NULL;
  GptdHttpError err = { 0 };
  g_assert_false (gptd__http_request_parse (GPTD_HTTP_COMPLETIONS, body->str, body->len,
                                            &req, &err));
  g_test_message ("%s", err.message);
  g_assert_null (req);
  g_assert_cmpuint (err.status, ==, 400);
  g_assert_cmpstr (err.code, ==, "invalid_json");
  g_assert_nonnull (strstr (err.message, "nested"));
  gptd__http_error_clear (&err);
  g_string_free (body, TRUE);
}

/* The book's format_input (chapter 7), then the response header. */
static void
test_chat_alpaca (void)
{
  g_autoptr (GptdPromptTemplate) alpaca = gptd__prompt_template_builtin ("alpaca");
  g_autoptr (GptdHttpRequest) req =
    parse_ok (GPTD_HTTP_CHAT, "{\"model\":\"m\",\"messages\":[{\"role\":\"user\",\"content\":"
                              "\"Rewrite the sentence.\"}]}");
  GptdHttpError err = { 0 };
  g_assert_true (gptd__http_request_format_chat (req, alpaca, &err));
  g_assert_cmpstr (req->prompts->pdata[0], ==,
                   "Below is an instruction that describes a task. Write a response that "
                   "appropriately completes the request.\n\n### Instruction:\nRewrite the "
                   "sentence.\n\n### Response:\n");

  g_autoptr (GptdHttpRequest) multi =
    parse_ok (GPTD_HTTP_CHAT,
              "{\"model\":\"m\",\"messages\":[{\"role\":\"system\",\"content\":\"S\"},"
              "{\"role\":\"user\",\"content\":\"A\"},{\"role\":\"assistant\",\"content\":\"B\"},"
              "{\"role\":\"user\",\"content\":\"C\"}]}");
  g_assert_true (gptd__http_request_format_chat (multi, alpaca, &err));
  const char *pre = "Below is an instruction that describes a task. Write a response that "
                    "appropriately completes the request.\n\n### Instruction:\n";
  g_autofree char *want = g_strconcat ("S\n\n", pre, "A\n\n### Response:\nB\n\n", pre,
                                       "C\n\n### Response:\n", NULL);
  g_assert_cmpstr (multi->prompts->pdata[0], ==, want);

  /* Conversations the template cannot take. */
  const char *const refused[] = {
    "[{\"role\":\"assistant\",\"content\":\"B\"}]",
    "[{\"role\":\"user\",\"content\":\"A\"},{\"role\":\"user\",\"content\":\"B\"}]",
    "[{\"role\":\"user\",\"content\":\"A\"},{\"role\":\"assistant\",\"content\":\"B\"}]",
    "[{\"role\":\"user\",\"content\":\"A\"},{\"role\":\"system\",\"content\":\"S\"}]",
  };
  for (gsize i = 0; i < G_N_ELEMENTS (refused); i++)
    {
      g_autofree char *body = g_strdup_printf ("{\"model\":\"m\",\"messages\":%s}", refused[i]);
      g_autoptr (GptdHttpRequest) r = parse_ok (GPTD_HTTP_CHAT, body);
      GptdHttpError e = { 0 };
      g_assert_false (gptd__http_request_format_chat (r, alpaca, &e));
      g_assert_cmpuint (e.status, ==, 400);
      g_assert_cmpuint (r->prompts->len, ==, 0);
      gptd__http_error_clear (&e);
    }
}

static void
test_model_ids (void)
{
  g_assert_true (gptd__http_model_id_valid ("gpt2-small"));
  g_assert_true (gptd__http_model_id_valid ("spam.v2"));
  g_assert_true (gptd__http_model_id_valid ("modèle"));
  const char *const invalid[] = { "", ".", "..", "a/b", "../x", "/etc", "a\\b", "a\nb",
                                  "a\tb", "\x7f" };
  for (gsize i = 0; i < G_N_ELEMENTS (invalid); i++)
    g_assert_false (gptd__http_model_id_valid (invalid[i]));
  g_autofree char *longer = g_strnfill (256, 'a');
  g_assert_false (gptd__http_model_id_valid (longer));
}

static void
write_file (const char *dir, const char *name, const char *text)
{
  g_autofree char *path = g_build_filename (dir, name, NULL);
  g_assert_true (g_file_set_contents (path, text, -1, NULL));
}

static void
test_models_dir (void)
{
  g_autofree char *root = g_dir_make_tmp ("gptd-http-XXXXXX", NULL);
  g_assert_nonnull (root);
  g_autofree char *lm = g_build_filename (root, "lm", NULL);
  g_autofree char *clf = g_build_filename (root, "clf", NULL);
  g_autofree char *empty = g_build_filename (root, "empty", NULL);
  g_assert_cmpint (g_mkdir (lm, 0755), ==, 0);
  g_assert_cmpint (g_mkdir (clf, 0755), ==, 0);
  g_assert_cmpint (g_mkdir (empty, 0755), ==, 0);
  write_file (lm, "config.json", "{\"architectures\":[\"GPT2LMHeadModel\"],\"eos_token_id\":50256}");
  write_file (lm, "prompt-template", "phi3\n");
  write_file (clf, "config.json",
              "{\"architectures\":[\"GPT2ForSequenceClassification\"],\"num_labels\":2}");
  /* A config.json nested 100,000 deep: left out of the list and refused by
   * name, not a crash of the gateway. */
  g_autofree char *deep = g_build_filename (root, "deep", NULL);
  g_assert_cmpint (g_mkdir (deep, 0755), ==, 0);
  {
    g_autoptr (GString) nest = g_string_new (NULL);
    for (int i = 0; i < 100000; i++)
      g_string_append_c (nest, '[');
    write_file (deep, "config.json", nest->str);
  }

  g_autoptr (GError) error = NULL;
  g_autoptr (GPtrArray) models = gptd__http_models_list (root, &error);
  g_assert_no_error (error);
  g_assert_cmpuint (models->len, ==, 2);  /* "empty" has no config.json */
  const GptdHttpModel *m0 = models->pdata[0], *m1 = models->pdata[1];
  g_assert_cmpstr (m0->id, ==, "clf");
  g_assert_cmpint (m0->kind, ==, GPTD_HTTP_MODEL_CLASSIFIER);
  g_assert_cmpint (m0->eos_id, ==, -1);
  g_assert_cmpstr (m1->id, ==, "lm");
  g_assert_cmpint (m1->kind, ==, GPTD_HTTP_MODEL_LANGUAGE);
  g_assert_cmpint (m1->eos_id, ==, 50256);

  g_autoptr (GptdHttpModel) found = gptd__http_model_find (root, "lm", &error);
  g_assert_no_error (error);
  g_autoptr (GptdPromptTemplate) tmpl = gptd__http_model_template (found, &error);
  g_assert_no_error (error);
  g_autoptr (GString) text = g_string_new (NULL);
  gsize n;
  gptd__prompt_template_render (tmpl, "hi", NULL, "", text, &n);
  g_assert_cmpstr (text->str, ==, "<|user|>\nhi\n<|assistant|>:\n");

  g_assert_null (gptd__http_model_find (root, "deep", &error));
  g_assert_nonnull (error);
  g_assert_nonnull (strstr (error->message, "nested deeper than"));
  g_clear_error (&error);
  g_assert_null (gptd__http_model_find (root, "empty", &error));
  g_assert_error (error, G_IO_ERROR, G_IO_ERROR_NOT_FOUND);
  g_clear_error (&error);
  g_assert_null (gptd__http_model_find (root, "../lm", &error));
  g_assert_error (error, G_IO_ERROR, G_IO_ERROR_INVALID_ARGUMENT);
  g_clear_error (&error);

  g_autofree char *missing = g_build_filename (root, "nothing", NULL);
  g_autoptr (GPtrArray) none = gptd__http_models_list (missing, &error);
  g_assert_no_error (error);
  g_assert_cmpuint (none->len, ==, 0);

  g_autofree char *p1 = g_build_filename (lm, "config.json", NULL);
  g_autofree char *p2 = g_build_filename (lm, "prompt-template", NULL);
  g_autofree char *p3 = g_build_filename (clf, "config.json", NULL);
  g_remove (p1);
  g_remove (p2);
  g_remove (p3);
  g_autofree char *p4 = g_build_filename (deep, "config.json", NULL);
  g_remove (p4);
  g_rmdir (deep);
  g_rmdir (lm);
  g_rmdir (clf);
  g_rmdir (empty);
  g_rmdir (root);
}

static void
test_metrics (void)
{
  GptdHttpMetrics *m = gptd__http_metrics_new ();
  gptd__http_metrics_request (m, "/v1/completions", 200);
  gptd__http_metrics_request (m, "/v1/completions", 200);
  gptd__http_metrics_request (m, "/v1/models/x", 404);
  gptd__http_metrics_request (m, "/secret/path", 404);
  gptd__http_metrics_prompt_tokens (m, 7);
  gptd__http_metrics_generated_tokens (m, 120);
  gptd__http_metrics_in_flight (m, 2);
  gptd__http_metrics_waiting (m, 1);
  g_autofree char *text = gptd__http_metrics_render (m);
  g_test_message ("%s", text);
  g_assert_nonnull (strstr (text, "\ngptd_http_requests_total{endpoint=\"/v1/completions\","
                                  "code=\"200\"} 2\n"));
  g_assert_nonnull (strstr (text, "\ngptd_http_requests_total{endpoint=\"/v1/models\","
                                  "code=\"404\"} 1\n"));
  /* Paths are not labels: anything else is "other". */
  g_assert_nonnull (strstr (text, "{endpoint=\"other\",code=\"404\"} 1\n"));
  g_assert_null (strstr (text, "secret"));
  g_assert_nonnull (strstr (text, "\ngptd_http_prompt_tokens_total 7\n"));
  g_assert_nonnull (strstr (text, "\ngptd_http_generated_tokens_total 120\n"));
  g_assert_nonnull (strstr (text, "\ngptd_http_requests_in_flight 2\n"));
  g_assert_nonnull (strstr (text, "\ngptd_http_queue_depth 1\n"));
  g_assert_nonnull (strstr (text, "\ngptd_http_tokens_per_second 2.000\n"));
  g_assert_nonnull (strstr (text, "# TYPE gptd_http_generated_tokens_total counter\n"));
  g_assert_true (g_str_has_prefix (text, "# HELP gptd_http_requests_total "));
  gptd__http_metrics_free (m);
}

int
main (int argc, char **argv)
{
  g_test_init (&argc, &argv, NULL);
  g_test_add_func ("/http/parse/defaults", test_parse_defaults);
  g_test_add_func ("/http/parse/fields", test_parse_fields);
  g_test_add_func ("/http/parse/bad", test_parse_bad);
  g_test_add_func ("/http/parse/deep", test_parse_deep);
  g_test_add_func ("/http/chat/alpaca", test_chat_alpaca);
  g_test_add_func ("/http/models/ids", test_model_ids);
  g_test_add_func ("/http/models/dir", test_models_dir);
  g_test_add_func ("/http/metrics", test_metrics);
  return g_test_run ();
}
