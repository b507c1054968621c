/* test-runner.c: the pipeline runner with the test plugin's stages — end-of-stream,
 * back-pressure on bounded links, errors cancelling the run and naming their stage,
 * cancellation from another thread, epoch requests, fan-out, several outputs,
 * named inputs, early ends; and the progress and event formatters. */
#include "config.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "test-pipeline-util.h"

static GptdRegistry *registry;

#define HEAD "[pipeline]\nname=t\n"

static int
count_prefix (TestEvents *ev, const char *prefix)
{
  int n = 0;
  for (guint i = 0; i < ev->logs->len; i++)
    n += g_str_has_prefix (ev->logs->pdata[i], prefix);
  return n;
}

static Gptd__RunState
last_state (TestEvents *ev)
{
  g_assert_cmpuint (ev->states->len, >, 0);
  return GPOINTER_TO_INT (ev->states->pdata[ev->states->len - 1]);
}

/* ---- End of stream ------------------------------------------------------------ */

static void
test_simple (void)
{
  TestEvents ev;
  test_events_init (&ev);
  g_autoptr (GError) error = NULL;
  gboolean ok = test_run_pipeline (registry,
                                   HEAD "[stage c]\ntype=test-counter\ncount=5\n"
                                   "[stage s]\ntype=test-sink\ninput=c\n", 0, &ev, &error);
  g_assert_no_error (error);
  g_assert_true (ok);
  for (int i = 0; i < 5; i++)
    {
      g_autofree char *got = g_strdup_printf ("s: got %d", i);
      g_autofree char *pushed = g_strdup_printf ("c: pushed %d", i);
      g_assert_cmpint (test_events_find (&ev, got), >=, 0);
      g_assert_cmpint (test_events_find (&ev, pushed), >=, 0);
    }
  /* End-of-stream reached the sink after the last message. */
  g_assert_cmpint (test_events_find (&ev, "s: end of stream after 5"), >,
                   test_events_find (&ev, "s: got 4"));
  g_assert_cmpuint (ev.states->len, ==, 2);
  g_assert_cmpint (GPOINTER_TO_INT (ev.states->pdata[0]), ==, GPTD__RUN_STATE__RUN_STATE_RUNNING);
  g_assert_cmpint (last_state (&ev), ==, GPTD__RUN_STATE__RUN_STATE_SUCCEEDED);
  g_assert_true (ev.seq_ok);
  test_events_clear (&ev);
}

/* ---- Back-pressure -------------------------------------------------------------- */

/* A fast producer feeding a slow sink through a link of 4 messages never gets more
 * than the link's capacity ahead (plus the one message the sink holds). */
static void
test_back_pressure (void)
{
  const guint capacity = 4;
  TestEvents ev;
  test_events_init (&ev);
  g_autoptr (GError) error = NULL;
  gboolean ok = test_run_pipeline (registry,
                                   HEAD "[stage c]\ntype=test-counter\ncount=60\n"
                                   "[stage s]\ntype=test-sink\ninput=c\ndelay-ms=2\n",
                                   capacity, &ev, &error);
  g_assert_no_error (error);
  g_assert_true (ok);
  int pushed = 0, got = 0, max_lead = 0;
  for (guint i = 0; i < ev.logs->len; i++)
    {
      const char *line = ev.logs->pdata[i];
      if (g_str_has_prefix (line, "c: pushed "))
        pushed++;
      else if (g_str_has_prefix (line, "s: got "))
        got++;
      max_lead = MAX (max_lead, pushed - got);
    }
  g_assert_cmpint (pushed, ==, 60);
  g_assert_cmpint (got, ==, 60);
  g_test_message ("the producer was at most %d messages ahead", max_lead);
  g_assert_cmpint (max_lead, <=, (int) capacity + 1);
  /* It did run ahead as far as the link allows: the bound above is the link's. */
  g_assert_cmpint (max_lead, >=, (int) capacity);
  test_events_clear (&ev);
}

/* ---- Errors ------------------------------------------------------------------------ */

/* An endless source, a stage that fails on message 50 and a sink: the failure ends
 * the run (the source only stops when cancelled) and is reported with its stage. */
static void
test_error_cancels (void)
{
  TestEvents ev;
  test_events_init (&ev);
  g_autoptr (GError) error = NULL;
  gboolean ok = test_run_pipeline (registry,
                                   HEAD "[stage src]\ntype=test-endless\n"
                                   "[stage f]\ntype=test-fail\ninput=src\nfail-at=50\n"
                                   "[stage s]\ntype=test-sink\ninput=f\n", 0, &ev, &error);
  g_assert_false (ok);
  g_assert_error (error, GPTD_STAGE_ERROR, GPTD_STAGE_ERROR_INPUT);
  g_assert_cmpstr (error->message, ==, "stage f: bad document 50");
  g_assert_cmpint (last_state (&ev), ==, GPTD__RUN_STATE__RUN_STATE_FAILED);
  /* The sink may have seen some of what came before the failure (the run stops at
   * once, dropping what is queued), never the failed message or the end of stream. */
  g_assert_cmpint (test_events_find (&ev, "s: got 50"), <, 0);
  g_assert_cmpint (test_events_find_prefix (&ev, "s: end of stream"), <, 0);
  test_events_clear (&ev);
}

static void
run_failing (const char *text, const char *want_message, Gptd__RunState *states, guint n_states)
{
  TestEvents ev;
  test_events_init (&ev);
  g_autoptr (GError) error = NULL;
  g_autoptr (GptdPipeline) p =
    gptd_pipeline_load_data (registry, text, -1, "test.pipeline", NULL, NULL, &error);
  g_assert_no_error (error);
  g_autofree char *dir = g_dir_make_tmp ("gptd-test-run-XXXXXX", NULL);
  g_autoptr (GptdRunner) runner = gptd_runner_new (p, dir, test_on_event, &ev);
  g_assert_cmpint (gptd_runner_get_state (runner), ==, GPTD__RUN_STATE__RUN_STATE_UNKNOWN);
  g_assert_false (gptd_runner_run (runner, &error));
  g_assert_nonnull (error);
  g_assert_cmpstr (error->message, ==, want_message);
  g_assert_cmpint (gptd_runner_get_state (runner), ==, GPTD__RUN_STATE__RUN_STATE_FAILED);
  g_assert_cmpstr (gptd_runner_get_error_stage (runner), ==, "f");
  g_assert_nonnull (strstr (want_message, gptd_runner_get_error_message (runner)));
  g_assert_cmpuint (ev.states->len, ==, n_states);
  for (guint i = 0; i < n_states; i++)
    g_assert_cmpint (GPOINTER_TO_INT (ev.states->pdata[i]), ==, states[i]);
  g_rmdir (dir);
  test_events_clear (&ev);
}

/* A stage that cannot be created stops the run before any thread starts. */
static void
test_error_in_create (void)
{
  Gptd__RunState states[] = { GPTD__RUN_STATE__RUN_STATE_FAILED };
  run_failing (HEAD "[stage c]\ntype=test-counter\n[stage f]\ntype=test-fail\ninput=c\n"
               "fail-in=create\n[stage s]\ntype=test-sink\ninput=f\n",
               "stage f: cannot open the test file", states, 1);
}

static void
test_error_in_finish (void)
{
  Gptd__RunState states[] = { GPTD__RUN_STATE__RUN_STATE_RUNNING,
                              GPTD__RUN_STATE__RUN_STATE_FAILED };
  run_failing (HEAD "[stage c]\ntype=test-counter\n[stage f]\ntype=test-fail\ninput=c\n"
               "fail-in=finish\n[stage s]\ntype=test-sink\ninput=f\n",
               "stage f: finish failed", states, 2);
}

/* ---- Cancellation ----------------------------------------------------------------- */

static gpointer
cancel_later (gpointer data)
{
  g_usleep (50 * 1000);
  gptd_runner_cancel (data);
  return NULL;
}

/* An endless source and a slow sink, cancelled from another thread mid-run: every
 * blocked push and pull wakes up and the run ends as cancelled. */
static void
test_cancel (void)
{
  TestEvents ev;
  test_events_init (&ev);
  g_autoptr (GError) error = NULL;
  g_autoptr (GptdPipeline) p =
    gptd_pipeline_load_data (registry,
                             HEAD "[stage src]\ntype=test-endless\n"
                             "[stage mid]\ntype=test-pass\ninput=src\n"
                             "[stage s]\ntype=test-sink\ninput=mid\ndelay-ms=1\n",
                             -1, "test.pipeline", NULL, NULL, &error);
  g_assert_no_error (error);
  g_autofree char *dir = g_dir_make_tmp ("gptd-test-run-XXXXXX", NULL);
  g_autoptr (GptdRunner) runner = gptd_runner_new (p, dir, test_on_event, &ev);
  GThread *canceller = g_thread_new ("cancel", cancel_later, runner);
  g_assert_false (gptd_runner_run (runner, &error));
  g_thread_join (canceller);
  g_assert_error (error, G_IO_ERROR, G_IO_ERROR_CANCELLED);
  g_assert_true (gptd_runner_is_cancelled (runner));
  g_assert_cmpint (gptd_runner_get_state (runner), ==, GPTD__RUN_STATE__RUN_STATE_CANCELLED);
  g_assert_null (gptd_runner_get_error_stage (runner));
  g_assert_cmpint (last_state (&ev), ==, GPTD__RUN_STATE__RUN_STATE_CANCELLED);
  g_assert_cmpint (test_events_find_prefix (&ev, "s: got "), >=, 0);
  g_assert_cmpint (test_events_find_prefix (&ev, "s: end of stream"), <, 0);
  /* Cancelling again, after the run, is harmless. */
  gptd_runner_cancel (runner);
  g_rmdir (dir);
  test_events_clear (&ev);
}

/* A stage's own event (seen by the callback) may cancel the run. */
static void
test_cancel_from_callback (void)
{
  TestEvents ev;
  test_events_init (&ev);
  ev.cancel_on = "pushed 100";
  g_autoptr (GError) error = NULL;
  gboolean ok = test_run_pipeline (registry,
                                   HEAD "[stage src]\ntype=test-endless\n"
                                   "[stage s]\ntype=test-sink\ninput=src\n", 0, &ev, &error);
  g_assert_false (ok);
  g_assert_error (error, G_IO_ERROR, G_IO_ERROR_CANCELLED);
  test_events_clear (&ev);
}

static void
test_cancel_before_run (void)
{
  TestEvents ev;
  test_events_init (&ev);
  g_autoptr (GError) error = NULL;
  g_autoptr (GptdPipeline) p =
    gptd_pipeline_load_data (registry, HEAD "[stage src]\ntype=test-endless\n"
                             "[stage s]\ntype=test-sink\ninput=src\n",
                             -1, "test.pipeline", NULL, NULL, &error);
  g_autofree char *dir = g_dir_make_tmp ("gptd-test-run-XXXXXX", NULL);
  g_autoptr (GptdRunner) runner = gptd_runner_new (p, dir, test_on_event, &ev);
  gptd_runner_cancel (runner);
  g_assert_false (gptd_runner_run (runner, &error));
  g_assert_error (error, G_IO_ERROR, G_IO_ERROR_CANCELLED);
  g_assert_cmpuint (ev.states->len, ==, 1);
  g_assert_cmpint (last_state (&ev), ==, GPTD__RUN_STATE__RUN_STATE_CANCELLED);
  g_rmdir (dir);
  test_events_clear (&ev);
}

/* A consumer that stops early ends an endless producer cleanly: the run succeeds. */
static void
test_early_close (void)
{
  TestEvents ev;
  test_events_init (&ev);
  g_autoptr (GError) error = NULL;
  gboolean ok = test_run_pipeline (registry,
                                   HEAD "[stage src]\ntype=test-endless\n"
                                   "[stage mid]\ntype=test-pass\ninput=src\n"
                                   "[stage s]\ntype=test-sink\ninput=mid\nlimit=10\n",
                                   0, &ev, &error);
  g_assert_no_error (error);
  g_assert_true (ok);
  g_assert_cmpint (test_events_find (&ev, "s: stopping after 10"), >=, 0);
  g_assert_cmpint (last_state (&ev), ==, GPTD__RUN_STATE__RUN_STATE_SUCCEEDED);
  test_events_clear (&ev);
}

/* ---- Epochs ---------------------------------------------------------------------- */

static void
run_ok (const char *text, TestEvents *ev)
{
  test_events_init (ev);
  g_autoptr (GError) error = NULL;
  gboolean ok = test_run_pipeline (registry, text, 0, ev, &error);
  g_assert_no_error (error);
  g_assert_true (ok);
  for (guint i = 0; i < ev->logs->len; i++)
    g_test_message ("%s", (const char *) ev->logs->pdata[i]);
}

#define BATCHER HEAD "[stage c]\ntype=test-counter\ncount=5\nlog=false\n" \
  "[stage b]\ntype=test-batcher\ninput=c\nbatch-size=2\n"

static void
test_epochs (void)
{
  TestEvents ev;
  run_ok (BATCHER "[stage t]\ntype=test-trainer\ninput=b\nepochs=3\n", &ev);
  for (int e = 0; e < 3; e++)
    {
      g_autofree char *want =
        g_strdup_printf ("t: epoch %d: 3 batches, end says 3 of 0: 0 1 2 3 4", e);
      g_assert_cmpint (test_events_find (&ev, want), >=, 0);
    }
  test_events_clear (&ev);
}

/* Shuffled epochs differ from each other, and are the same on every run. */
static void
test_epochs_shuffle (void)
{
  const char *text = BATCHER "[stage t]\ntype=test-trainer\ninput=b\nepochs=2\nshuffle=true\n";
  TestEvents a, b;
  run_ok (text, &a);
  run_ok (text, &b);
  int e0 = test_events_find_prefix (&a, "t: epoch 0:");
  int e1 = test_events_find_prefix (&a, "t: epoch 1:");
  g_assert_cmpint (e0, >=, 0);
  g_assert_cmpint (e1, >=, 0);
  const char *l0 = a.logs->pdata[e0], *l1 = a.logs->pdata[e1];
  g_assert_cmpstr (strrchr (l0, ':'), !=, strrchr (l1, ':'));
  g_assert_cmpint (test_events_find (&b, l0), >=, 0);
  g_assert_cmpint (test_events_find (&b, l1), >=, 0);
  test_events_clear (&a);
  test_events_clear (&b);
}

/* start and limit select part of an epoch (resume, evaluation). */
static void
test_epochs_start_limit (void)
{
  TestEvents ev;
  run_ok (BATCHER "[stage t]\ntype=test-trainer\ninput=b\nepochs=1\nstart=1\nlimit=1\n", &ev);
  g_assert_cmpint (test_events_find (&ev, "t: epoch 0: 1 batches, end says 1 of 0: 2 3"), >=, 0);
  test_events_clear (&ev);
}

/* A stage may send its own EndOfEpoch, with the epoch's total. */
static void
test_epochs_own_end (void)
{
  TestEvents ev;
  run_ok (BATCHER "[stage t]\ntype=test-trainer\ninput=b\nepochs=2\nsplit=total\nlimit=2\n",
          &ev);
  g_assert_cmpint (test_events_find (&ev, "t: epoch 1: 2 batches, end says 2 of 3: 0 1 2 3"),
                   >=, 0);
  test_events_clear (&ev);
}

/* A consumer that does not ask for epochs gets one, then end-of-stream. */
static void
test_epochs_default_request (void)
{
  TestEvents ev;
  run_ok (BATCHER "[stage s]\ntype=test-sink\ninput=b\n", &ev);
  g_assert_cmpint (count_prefix (&ev, "s: got a gptd.Batch"), ==, 3);
  g_assert_cmpint (count_prefix (&ev, "s: got "), ==, 3);
  g_assert_cmpint (test_events_find (&ev, "s: end of stream after 3"), >=, 0);
  test_events_clear (&ev);
}

/* Two consumers of one batcher: each gets its own epochs. */
static void
test_epochs_two_consumers (void)
{
  TestEvents ev;
  run_ok (BATCHER "[stage t]\ntype=test-trainer\ninput=b\nepochs=2\n"
          "[stage u]\ntype=test-trainer\ninput=b\nepochs=1\nlimit=1\n"
          "[stage s]\ntype=test-sink\ninput=b\n", &ev);
  g_assert_cmpint (test_events_find (&ev, "t: epoch 1: 3 batches, end says 3 of 0: 0 1 2 3 4"),
                   >=, 0);
  g_assert_cmpint (test_events_find (&ev, "u: epoch 0: 1 batches, end says 1 of 0: 0 1"), >=, 0);
  g_assert_cmpint (test_events_find (&ev, "s: end of stream after 3"), >=, 0);
  test_events_clear (&ev);
}

static void
test_epochs_pull_without_request (void)
{
  TestEvents ev;
  test_events_init (&ev);
  g_autoptr (GError) error = NULL;
  gboolean ok = test_run_pipeline (registry, BATCHER "[stage t]\ntype=test-trainer\ninput=b\n"
                                   "pull-first=true\n", 0, &ev, &error);
  g_assert_false (ok);
  g_assert_error (error, GPTD_STAGE_ERROR, GPTD_STAGE_ERROR_FAILED);
  g_assert_true (g_str_has_prefix (error->message, "stage t: pull on input 'default' without"));
  test_events_clear (&ev);
}

/* ---- Graph shapes ----------------------------------------------------------------- */

/* One output linked to two consumers: each gets every message. */
static void
test_fan_out (void)
{
  TestEvents ev;
  run_ok (HEAD "[stage c]\ntype=test-counter\ncount=20\n"
          "[stage s1]\ntype=test-sink\ninput=c\n"
          "[stage s2]\ntype=test-sink\ninput=c\ndelay-ms=1\n", &ev);
  g_assert_cmpint (test_events_find (&ev, "s1: end of stream after 20"), >=, 0);
  g_assert_cmpint (test_events_find (&ev, "s2: end of stream after 20"), >=, 0);
  g_assert_cmpint (count_prefix (&ev, "s1: got "), ==, 20);
  test_events_clear (&ev);
}

/* A stage with two outputs, each read by its own consumer. */
static void
test_two_outputs (void)
{
  TestEvents ev;
  run_ok (HEAD "[stage c]\ntype=test-counter\ncount=10\nlog=false\n"
          "[stage sp]\ntype=test-split\ninput=c\n"
          "[stage even]\ntype=test-sink\ninput=sp.even\n"
          "[stage odd]\ntype=test-sink\ninput=sp.odd\n", &ev);
  g_assert_cmpint (test_events_find (&ev, "even: end of stream after 5"), >=, 0);
  g_assert_cmpint (test_events_find (&ev, "odd: end of stream after 5"), >=, 0);
  for (int i = 0; i < 10; i++)
    {
      g_autofree char *line = g_strdup_printf ("%s: got %d", i % 2 ? "odd" : "even", i);
      g_assert_cmpint (test_events_find (&ev, line), >=, 0);
    }
  test_events_clear (&ev);
}

/* Named inputs are served in order: all of the first, then the second. */
static void
test_named_inputs (void)
{
  TestEvents ev;
  run_ok (HEAD "[stage a]\ntype=test-counter\ncount=3\nlog=false\n"
          "[stage b]\ntype=test-counter\ncount=2\nlog=false\n"
          "[stage j]\ntype=test-join\ninput.right=b\ninput.left=a\n"
          "[stage s]\ntype=test-sink\ninput=j\n", &ev);
  g_assert_cmpint (count_prefix (&ev, "j: input 0: "), ==, 3);
  g_assert_cmpint (count_prefix (&ev, "j: input 1: "), ==, 2);
  g_assert_cmpint (test_events_find (&ev, "j: input 0: 2"), <,
                   test_events_find (&ev, "j: input 1: 0"));
  g_assert_cmpint (test_events_find (&ev, "s: end of stream after 5"), >=, 0);
  test_events_clear (&ev);
}

/* A diamond: one source read by a stage's later input directly and by its
 * first input through another stage.  The stage reads its first input to the
 * end before the second, so the second's link must hold far more than a
 * link's capacity (16) without blocking the source; the run would otherwise
 * deadlock, which the subprocess's time limit turns into a failure. */
static void
test_diamond (void)
{
  if (g_test_subprocess ())
    {
      TestEvents ev;
      run_ok (HEAD "[stage c]\ntype=test-counter\ncount=200\nlog=false\n"
              "[stage p]\ntype=test-pass\ninput=c\n"
              "[stage j]\ntype=test-join\ninput.left=p\ninput.right=c\n"
              "[stage s]\ntype=test-sink\ninput=j\n", &ev);
      g_assert_cmpint (count_prefix (&ev, "j: input 0: "), ==, 200);
      g_assert_cmpint (count_prefix (&ev, "j: input 1: "), ==, 200);
      g_assert_cmpint (test_events_find (&ev, "j: input 0: 199"), <,
                       test_events_find (&ev, "j: input 1: 0"));
      g_assert_cmpint (test_events_find (&ev, "s: end of stream after 400"), >=, 0);
      test_events_clear (&ev);
      return;
    }
  g_test_trap_subprocess (NULL, 60 * G_USEC_PER_SEC, G_TEST_SUBPROCESS_DEFAULT);
  g_test_trap_assert_passed ();
}

/* An output nobody reads, and an optional input nobody feeds. */
static void
test_unlinked (void)
{
  TestEvents ev;
  run_ok (HEAD "[stage a]\ntype=test-counter\ncount=3\n"
          "[stage j]\ntype=test-join\ninput.left=a\n", &ev);
  g_assert_cmpint (count_prefix (&ev, "j: input 0: "), ==, 3);
  test_events_clear (&ev);
}

/* ---- Formatting ------------------------------------------------------------------- */

static void
test_format_progress (void)
{
  Gptd__Progress p = GPTD__PROGRESS__INIT;
  p.stage = (char *) "train";
  p.step = 120;
  p.total_steps = 480;
  p.epoch = 2;
  p.total_epochs = 10;
  p.loss = 4.8123;
  p.val_loss = NAN;
  p.tokens_per_s = 1830.4;
  p.eta_s = 723;
  g_autofree char *line = gptd_progress_format (&p, 0);
  g_assert_cmpstr (line, ==,
                   "train  step 120/480  epoch 2/10  loss 4.812  1830 tok/s  ETA 12m03s");
  g_autofree char *bar = gptd_progress_format (&p, 8);
  g_assert_true (g_str_has_suffix (bar, "  [##......]  25%"));

  Gptd__Progress q = GPTD__PROGRESS__INIT;
  q.stage = (char *) "read";
  q.items = 50;
  q.total_items = 200;
  q.unit = (char *) "bytes";
  q.loss = q.val_loss = NAN;
  q.eta_s = -1;
  g_autofree char *items = gptd_progress_format (&q, 4);
  g_assert_cmpstr (items, ==, "read  50/200 bytes  [#...]  25%");
}

static void
test_format_event (void)
{
  Gptd__LogLine log = GPTD__LOG_LINE__INIT;
  log.stage = (char *) "corpus";
  log.level = GPTD__LOG_LEVEL__LOG_LEVEL_WARNING;
  log.message = (char *) "short file";
  Gptd__Event ev = GPTD__EVENT__INIT;
  ev.time = 0;
  ev.body_case = GPTD__EVENT__BODY_LOG;
  ev.log = &log;
  g_autofree char *line = gptd_event_format (&ev);
  g_assert_true (g_str_has_suffix (line, " corpus: warning: short file"));

  Gptd__StateChange sc = GPTD__STATE_CHANGE__INIT;
  sc.state = GPTD__RUN_STATE__RUN_STATE_FAILED;
  sc.stage = (char *) "train";
  sc.error = (char *) "out of memory";
  ev.body_case = GPTD__EVENT__BODY_STATE;
  ev.state = &sc;
  g_autofree char *state = gptd_event_format (&ev);
  g_assert_true (g_str_has_suffix (state, " run failed: stage train: out of memory"));
  g_assert_cmpstr (gptd_run_state_to_string (GPTD__RUN_STATE__RUN_STATE_INTERRUPTED), ==,
                   "interrupted");
}

int
main (int argc, char **argv)
{
  g_test_init (&argc, &argv, NULL);
  registry = test_registry ();
  g_test_add_func ("/runner/end-of-stream", test_simple);
  g_test_add_func ("/runner/back-pressure", test_back_pressure);
  g_test_add_func ("/runner/error/cancels-the-others", test_error_cancels);
  g_test_add_func ("/runner/error/in-create", test_error_in_create);
  g_test_add_func ("/runner/error/in-finish", test_error_in_finish);
  g_test_add_func ("/runner/cancel/from-another-thread", test_cancel);
  g_test_add_func ("/runner/cancel/from-the-callback", test_cancel_from_callback);
  g_test_add_func ("/runner/cancel/before-run", test_cancel_before_run);
  g_test_add_func ("/runner/early-close", test_early_close);
  g_test_add_func ("/runner/epochs/requests", test_epochs);
  g_test_add_func ("/runner/epochs/shuffle", test_epochs_shuffle);
  g_test_add_func ("/runner/epochs/start-limit", test_epochs_start_limit);
  g_test_add_func ("/runner/epochs/own-end-of-epoch", test_epochs_own_end);
  g_test_add_func ("/runner/epochs/default-request", test_epochs_default_request);
  g_test_add_func ("/runner/epochs/two-consumers", test_epochs_two_consumers);
  g_test_add_func ("/runner/epochs/pull-without-request", test_epochs_pull_without_request);
  g_test_add_func ("/runner/fan-out", test_fan_out);
  g_test_add_func ("/runner/two-outputs", test_two_outputs);
  g_test_add_func ("/runner/named-inputs", test_named_inputs);
  g_test_add_func ("/runner/unlinked", test_unlinked);
  g_test_add_func ("/runner/diamond", test_diamond);
  g_test_add_func ("/runner/format/progress", test_format_progress);
  g_test_add_func ("/runner/format/event", test_format_event);
  int rc = g_test_run ();
  gptd_registry_free (registry);
  return rc;
}
