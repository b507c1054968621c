/* test-example.c: unit tests of the example's stages with the SDK's test harness
 * (<gptd/harness.h>): each stage alone, fed Documents, its outputs, logs and
 * errors checked. Run by `make check` with GPTD_PLUGIN_PATH naming this directory. */
#include <string.h>

#include <gptd/harness.h>

static void
push_text (GptdHarness *h, const char *text)
{
  Gptd__Document doc = GPTD__DOCUMENT__INIT;
  doc.source = (char *) "test";
  doc.text.data = (guint8 *) text;
  doc.text.len = strlen (text);
  g_assert_true (gptd_harness_push (h, "default", &doc.base));
}

static char *
pull_text (GptdHarness *h)
{
  g_autoptr (GptdHarnessMessage) msg = gptd_harness_pull (h, "default");
  g_assert_nonnull (msg);
  g_assert_true (msg->descriptor == &gptd__document__descriptor);
  const Gptd__Document *doc = (const Gptd__Document *) msg;
  return g_strndup ((const char *) doc->text.data, doc->text.len);
}

static void
test_upper (void)
{
  g_autoptr (GError) error = NULL;
  g_autoptr (GptdHarness) h = gptd_harness_new ("upper", NULL, &error);
  g_assert_no_error (error);
  g_assert_cmpstr (gptd_harness_get_plugin (h)->name, ==, "example");
  push_text (h, "hello, world");
  push_text (h, "stra\xC3\x9F" "e");
  g_assert_true (gptd_harness_run (h, &error));
  g_assert_no_error (error);
  g_assert_cmpuint (gptd_harness_get_n_outputs (h, "default"), ==, 2);
  g_autofree char *one = pull_text (h);
  g_autofree char *two = pull_text (h);
  g_assert_cmpstr (one, ==, "HELLO, WORLD");
  g_assert_cmpstr (two, ==, "STRASSE");
  g_assert_null (gptd_harness_pull (h, "default"));
}

static void
test_upper_bad_utf8 (void)
{
  g_autoptr (GError) error = NULL;
  g_autoptr (GptdHarness) h = gptd_harness_new ("upper", NULL, &error);
  g_assert_no_error (error);
  push_text (h, "bad \xFF");
  g_assert_false (gptd_harness_run (h, &error));
  g_assert_error (error, GPTD_STAGE_ERROR, GPTD_STAGE_ERROR_INPUT);
  g_assert_cmpstr (error->message, ==, "test: the text at byte offset 0 is not UTF-8");
}

static void
test_word_count (void)
{
  g_autoptr (GError) error = NULL;
  const char *params[] = { "min-length=3", NULL };
  g_autoptr (GptdHarness) h = gptd_harness_new ("word-count", params, &error);
  g_assert_no_error (error);
  push_text (h, "a bb ccc dddd");
  push_text (h, "  \xC3\xA9t\xC3\xA9  was here\n");
  g_assert_true (gptd_harness_run (h, &error));
  g_autofree char *count = pull_text (h);
  g_assert_cmpstr (count, ==, "5 words in 2 documents");
  const char *const *logs = gptd_harness_get_logs (h);
  g_assert_cmpstr (logs[0], ==, "info: 5 words in 2 documents");
  g_assert_null (logs[1]);
}

static void
test_word_count_bad_key (void)
{
  g_autoptr (GError) error = NULL;
  const char *params[] = { "min-length=0", NULL };
  g_autoptr (GptdHarness) h = gptd_harness_new ("word-count", params, &error);
  g_assert_null (h);
  g_assert_nonnull (error);
  g_assert_nonnull (strstr (error->message, "min-length"));
}

int
main (int argc, char **argv)
{
  g_test_init (&argc, &argv, NULL);
  g_test_add_func ("/example/upper", test_upper);
  g_test_add_func ("/example/upper/bad-utf8", test_upper_bad_utf8);
  g_test_add_func ("/example/word-count", test_word_count);
  g_test_add_func ("/example/word-count/bad-key", test_word_count_bad_key);
  return g_test_run ();
}
