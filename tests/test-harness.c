/* tests/test-harness.c: GptdHarness, one stage under test — outputs collected in
 * order from named outputs; named and optional inputs; epochs asked for as a
 * trainer does (batches, then the EndOfEpoch) or, without requests, one epoch of
 * everything; a stage's error (in process or in create) returned as it raised it,
 * without the pipeline's stage prefix; logs and progress; keys checked as the loader checks them;
 * an unknown type named with the closest one; pushes to a missing input or of the
 * wrong type refused; a stage type given directly (and a malformed one refused);
 * the temporary run directory removed, a given one kept. Uses the test plugins. */
#include "config.h"

#include <string.h>

#include <gio/gio.h>
#include <glib/gstdio.h>
#include <gptd/harness.h>
#include <gptd/pipeline.h>
#include <gptd/registry.h>

static void
push_doc (GptdHarness *h, const char *input, guint64 index)
{
  Gptd__Document doc = GPTD__DOCUMENT__INIT;
  doc.source = (char *) "test";
  doc.index = index;
  doc.last = TRUE;
  g_assert_true (gptd_harness_push (h, input, &doc.base));
}

static const Gptd__Batch *
as_batch (const GptdHarnessMessage *msg)
{
  g_assert_nonnull (msg);
  g_assert_true (msg->descriptor == &gptd__batch__descriptor);
  return (const Gptd__Batch *) msg;
}

/* Two requested epochs of test-batcher: each epoch's batches, then its EndOfEpoch;
 * the first in order, the second shuffled (every input once). */
static void
test_epochs (void)
{
  g_autoptr (GError) error = NULL;
  const char *params[] = { "batch-size=2", NULL };
  g_autoptr (GptdHarness) h = gptd_harness_new ("test-batcher", params, &error);
  g_assert_no_error (error);
  for (guint i = 0; i < 5; i++)
    push_doc (h, "default", i);
  Gptd__EpochRequest req = GPTD__EPOCH_REQUEST__INIT;
  req.split = (char *) "train";
  gptd_harness_request_epoch (h, "default", &req);
  req.epoch = 1;
  req.shuffle = TRUE;
  req.seed = 7;
  gptd_harness_request_epoch (h, "default", &req);
  g_assert_true (gptd_harness_run (h, &error));
  g_assert_no_error (error);
  g_assert_cmpuint (gptd_harness_get_n_outputs (h, "default"), ==, 8);

  static const gint32 first[3][2] = { { 0, 1 }, { 2, 3 }, { 4, -1 } };
  for (guint b = 0; b < 3; b++)
    {
      g_autoptr (GptdHarnessMessage) msg = gptd_harness_pull (h, "default");
      const Gptd__Batch *batch = as_batch (msg);
      g_assert_cmpuint (batch->epoch, ==, 0);
      g_assert_cmpuint (batch->index, ==, b);
      g_assert_cmpuint (batch->n_inputs, ==, b < 2 ? 2 : 1);
      for (guint i = 0; i < batch->n_inputs; i++)
        g_assert_cmpint (batch->inputs[i], ==, first[b][i]);
    }
  g_autoptr (GptdHarnessMessage) eoe0 = gptd_harness_pull (h, "default");
  g_assert_true (eoe0->descriptor == &gptd__end_of_epoch__descriptor);
  g_assert_cmpuint (((Gptd__EndOfEpoch *) eoe0)->batches, ==, 3);

  guint seen = 0;
  gboolean in_order = TRUE;
  gint32 expect = 0;
  for (guint b = 0; b < 3; b++)
    {
      g_autoptr (GptdHarnessMessage) msg = gptd_harness_pull (h, "default");
      const Gptd__Batch *batch = as_batch (msg);
      g_assert_cmpuint (batch->epoch, ==, 1);
      for (guint i = 0; i < batch->n_inputs; i++)
        {
          seen |= 1u << batch->inputs[i];
          in_order &= batch->inputs[i] == expect++;
        }
    }
  g_assert_cmpuint (seen, ==, 0x1f);
  g_assert_false (in_order);
  g_autoptr (GptdHarnessMessage) eoe1 = gptd_harness_pull (h, "default");
  g_assert_true (eoe1->descriptor == &gptd__end_of_epoch__descriptor);
  g_assert_cmpuint (((Gptd__EndOfEpoch *) eoe1)->epoch, ==, 1);
  g_assert_null (gptd_harness_pull (h, "default"));
}

/* Without requests, the collector reads one epoch of everything, with no
 * EndOfEpoch, as a plain consumer in a pipeline does. */
static void
test_default_epoch (void)
{
  g_autoptr (GError) error = NULL;
  g_autoptr (GptdHarness) h = gptd_harness_new ("test-batcher", NULL, &error);
  g_assert_no_error (error);
  for (guint i = 0; i < 3; i++)
    push_doc (h, "default", i);
  g_assert_true (gptd_harness_run (h, &error));
  g_assert_cmpuint (gptd_harness_get_n_outputs (h, "default"), ==, 2);
  g_autoptr (GptdHarnessMessage) a = gptd_harness_pull (h, "default");
  g_autoptr (GptdHarnessMessage) b = gptd_harness_pull (h, "default");
  g_assert_cmpuint (as_batch (a)->n_inputs, ==, 2);
  g_assert_cmpuint (as_batch (b)->n_inputs, ==, 1);
}

/* Named inputs are served in order (all of left, then right); an optional input
 * with nothing pushed is left unlinked. Debug log lines are kept with their level. */
static void
test_named_inputs (void)
{
  g_autoptr (GError) error = NULL;
  g_autoptr (GptdHarness) h = gptd_harness_new ("test-join", NULL, &error);
  g_assert_no_error (error);
  push_doc (h, "right", 10);
  push_doc (h, "left", 1);
  push_doc (h, "left", 2);
  g_assert_true (gptd_harness_run (h, &error));
  static const guint64 order[] = { 1, 2, 10 };
  for (guint i = 0; i < 3; i++)
    {
      g_autoptr (GptdHarnessMessage) msg = gptd_harness_pull (h, "default");
      g_assert_cmpuint (((Gptd__Document *) msg)->index, ==, order[i]);
    }
  const char *const *logs = gptd_harness_get_logs (h);
  g_assert_cmpstr (logs[0], ==, "debug: input 0: 1");
  g_assert_cmpstr (logs[2], ==, "debug: input 1: 10");
  g_assert_null (logs[3]);

  g_autoptr (GptdHarness) alone = gptd_harness_new ("test-join", NULL, &error);
  push_doc (alone, "left", 5);
  g_assert_true (gptd_harness_run (alone, &error));
  g_assert_no_error (error);
  g_assert_cmpuint (gptd_harness_get_n_outputs (alone, "default"), ==, 1);
}

/* Two outputs, collected apart. */
static void
test_two_outputs (void)
{
  g_autoptr (GError) error = NULL;
  g_autoptr (GptdHarness) h = gptd_harness_new ("test-split", NULL, &error);
  g_assert_no_error (error);
  for (guint i = 0; i < 5; i++)
    push_doc (h, "default", i);
  g_assert_true (gptd_harness_run (h, &error));
  g_assert_cmpuint (gptd_harness_get_n_outputs (h, "even"), ==, 3);
  g_assert_cmpuint (gptd_harness_get_n_outputs (h, "odd"), ==, 2);
  g_autoptr (GptdHarnessMessage) odd = gptd_harness_pull (h, "odd");
  g_assert_cmpuint (((Gptd__Document *) odd)->index, ==, 1);
}

/* The stage's error, as it raised it. What it sent before may or may not have
 * been collected (the error cancels the run), but nothing after. */
static void
test_error (void)
{
  g_autoptr (GError) error = NULL;
  const char *params[] = { "fail-at=2", NULL };
  g_autoptr (GptdHarness) h = gptd_harness_new ("test-fail", params, &error);
  g_assert_no_error (error);
  for (guint i = 0; i < 4; i++)
    push_doc (h, "default", i);
  g_assert_false (gptd_harness_run (h, &error));
  g_assert_error (error, GPTD_STAGE_ERROR, GPTD_STAGE_ERROR_INPUT);
  g_assert_cmpstr (error->message, ==, "bad document 2");
  g_assert_cmpuint (gptd_harness_get_n_outputs (h, "default"), <=, 2);
  g_clear_error (&error);

  const char *in_create[] = { "fail-in=create", NULL };
  g_autoptr (GptdHarness) c = gptd_harness_new ("test-fail", in_create, &error);
  g_assert_no_error (error);
  g_assert_false (gptd_harness_run (c, &error));
  g_assert_error (error, GPTD_STAGE_ERROR, GPTD_STAGE_ERROR_IO);
  g_assert_cmpstr (error->message, ==, "cannot open the test file");
}

/* Keys are checked as a pipeline's are; an unknown type names the closest one. */
static void
test_bad_keys_and_types (void)
{
  g_autoptr (GError) error = NULL;
  g_autoptr (GptdHarness) h = gptd_harness_new ("test-params", NULL, &error);
  g_assert_null (h);
  g_assert_error (error, GPTD_PIPELINE_ERROR, GPTD_PIPELINE_ERROR_MISSING_KEY);
  g_assert_nonnull (strstr (error->message, "key size"));
  g_clear_error (&error);

  const char *out_of_range[] = { "size=101", NULL };
  h = gptd_harness_new ("test-params", out_of_range, &error);
  g_assert_null (h);
  g_assert_nonnull (strstr (error->message, "size"));
  g_clear_error (&error);

  const char *unknown[] = { "size=1", "sizes=2", NULL };
  h = gptd_harness_new ("test-params", unknown, &error);
  g_assert_null (h);
  g_assert_nonnull (strstr (error->message, "sizes"));
  g_clear_error (&error);

  h = gptd_harness_new ("test-countr", NULL, &error);
  g_assert_null (h);
  g_assert_error (error, GPTD_REGISTRY_ERROR, GPTD_REGISTRY_ERROR_NOT_FOUND);
  g_assert_nonnull (strstr (error->message, "did you mean 'test-counter'?"));
}

/* Pushing to an input the type lacks, or a message of another type, is a
 * programming error: a critical naming both, and nothing queued. (Run in
 * subprocesses: criticals are fatal under make check.) */
static void
test_bad_push (void)
{
  if (g_test_subprocess ())
    {
      g_log_set_always_fatal (G_LOG_FATAL_MASK);
      g_autoptr (GError) error = NULL;
      g_autoptr (GptdHarness) h = gptd_harness_new ("test-join", NULL, &error);
      g_assert_no_error (error);
      Gptd__Document doc = GPTD__DOCUMENT__INIT;
      Gptd__Tokens tokens = GPTD__TOKENS__INIT;
      g_assert_false (gptd_harness_push (h, "nope", &doc.base));
      g_assert_false (gptd_harness_push (h, "left", &tokens.base));
      /* Nothing was queued: the run sees no input at all. */
      g_assert_true (gptd_harness_run (h, &error));
      g_assert_cmpuint (gptd_harness_get_n_outputs (h, "default"), ==, 0);
      return;
    }
  g_test_trap_subprocess (NULL, 0, G_TEST_SUBPROCESS_DEFAULT);
  g_test_trap_assert_passed ();
  g_test_trap_assert_stderr ("*CRITICAL*stage type test-join has no input 'nope'*"
                             "*CRITICAL*input 'left' of stage type test-join takes "
                             "gptd.Document, not gptd.Tokens*");
}

/* ---- A stage type given directly ---------------------------------------------- */

static const GptdParamSpec count_params[] = {
  { "count", GPTD_PARAM_INT, "3", 0, 100, NULL, "Documents to send" },
  { NULL }
};
static const GptdPadSpec doc_out[] = { { "default", "gptd.Document", 0 }, { NULL } };

static gpointer
count_create (GptdStageContext *ctx, const GptdParams *params, GError **error)
{
  gint64 *n = g_new (gint64, 1);
  *n = gptd_params_get_int (params, "count");
  return n;
}

static gboolean
count_run (gpointer self, GptdStageContext *ctx, GError **error)
{
  gint64 n = *(gint64 *) self;
  const char *dir = gptd_stage_context_get_run_dir (ctx);
  g_autofree char *mark = g_build_filename (dir, "ran", NULL);
  if (!g_file_set_contents (mark, "yes", -1, error))
    return FALSE;
  for (gint64 i = 0; i < n; i++)
    {
      Gptd__Document doc = GPTD__DOCUMENT__INIT;
      doc.index = (guint64) i;
      if (!gptd_stage_push (ctx, 0, &doc.base, error))
        return FALSE;
      Gptd__Progress p = GPTD__PROGRESS__INIT;
      p.items = (guint64) i + 1;
      p.total_items = (guint64) n;
      gptd_stage_progress (ctx, &p);
    }
  gptd_stage_log (ctx, G_LOG_LEVEL_WARNING, "sent %" G_GINT64_FORMAT "%s", n,
                  gptd_stage_context_is_resume (ctx) ? " (resumed)" : "");
  return TRUE;
}

static const GptdStageType count_type = {
  .name = "harness-count",
  .description = "Sends count Documents",
  .params = count_params,
  .outputs = doc_out,
  .create = count_create,
  .run = count_run,
  .destroy = g_free,
};

static const GptdStageType no_create_type = {
  .name = "harness-broken",
  .description = "Has no create()",
  .outputs = doc_out,
  .run = count_run,
};

static void
test_for_type (void)
{
  g_autoptr (GError) error = NULL;
  const char *params[] = { "count=4", NULL };
  g_autoptr (GptdHarness) h = gptd_harness_new_for_type (&count_type, params, &error);
  g_assert_no_error (error);
  g_assert_cmpstr (gptd_harness_get_plugin (h)->name, ==, "test");
  gptd_harness_set_resume (h, TRUE);
  g_autofree char *dir = g_strdup (gptd_harness_get_run_dir (h));
  g_assert_true (g_file_test (dir, G_FILE_TEST_IS_DIR));
  g_assert_true (gptd_harness_run (h, &error));
  g_assert_no_error (error);
  g_assert_cmpuint (gptd_harness_get_n_outputs (h, "default"), ==, 4);
  g_assert_cmpuint (gptd_harness_get_n_progress (h), ==, 4);
  g_assert_cmpuint (gptd_harness_get_last_progress (h)->items, ==, 4);
  g_assert_cmpstr (gptd_harness_get_logs (h)[0], ==, "warning: sent 4 (resumed)");
  g_autofree char *mark = g_build_filename (dir, "ran", NULL);
  g_assert_true (g_file_test (mark, G_FILE_TEST_EXISTS));
  /* The temporary run directory goes with the harness. */
  g_clear_pointer (&h, gptd_harness_free);
  g_assert_false (g_file_test (dir, G_FILE_TEST_EXISTS));

  h = gptd_harness_new_for_type (&no_create_type, NULL, &error);
  g_assert_null (h);
  g_assert_error (error, GPTD_REGISTRY_ERROR, GPTD_REGISTRY_ERROR_INVALID);
}

/* A run directory given is used and kept. */
static void
test_run_dir (void)
{
  g_autofree char *dir = g_dir_make_tmp ("gptd-test-harness-XXXXXX", NULL);
  g_autoptr (GError) error = NULL;
  g_autoptr (GptdHarness) h = gptd_harness_new_for_type (&count_type, NULL, &error);
  gptd_harness_set_run_dir (h, dir);
  g_assert_cmpstr (gptd_harness_get_run_dir (h), ==, dir);
  g_assert_true (gptd_harness_run (h, &error));
  g_assert_cmpstr (gptd_harness_get_logs (h)[0], ==, "warning: sent 3");
  g_clear_pointer (&h, gptd_harness_free);
  g_autofree char *mark = g_build_filename (dir, "ran", NULL);
  g_assert_true (g_file_test (mark, G_FILE_TEST_EXISTS));
  g_unlink (mark);
  g_rmdir (dir);
}

int
main (int argc, char **argv)
{
  g_test_init (&argc, &argv, NULL);
  g_test_add_func ("/harness/epochs/requested", test_epochs);
  g_test_add_func ("/harness/epochs/default", test_default_epoch);
  g_test_add_func ("/harness/inputs/named", test_named_inputs);
  g_test_add_func ("/harness/outputs/two", test_two_outputs);
  g_test_add_func ("/harness/error", test_error);
  g_test_add_func ("/harness/bad/keys-and-types", test_bad_keys_and_types);
  g_test_add_func ("/harness/bad/push", test_bad_push);
  g_test_add_func ("/harness/for-type", test_for_type);
  g_test_add_func ("/harness/run-dir", test_run_dir);
  return g_test_run ();
}
