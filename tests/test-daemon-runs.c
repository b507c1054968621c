/* tests/test-daemon-runs.c: unit tests of the daemon's run table (daemon/runs.c):
 * run directories and status files, the framed event log and its readers, the
 * state directory lock, and what a restart finds after the daemon died: running
 * runs marked interrupted, a torn last event cut off, IDs carried on; removing
 * a run (its directory deleted without following links, its ID never given
 * again) and a cancelled run's checkpoints.
 */
#include "runs.h"

#include <gptd/atomic-file.h>
#include <gptd/frame.h>
#include <gptd/json-load.h>

#include <errno.h>
#include <math.h>
#include <string.h>
#include <unistd.h>

#include <glib/gstdio.h>

typedef struct {
  char *dir;
} Fixture;

static void
fixture_setup (Fixture *f, gconstpointer data)
{
  f->dir = g_dir_make_tmp ("gptd-runs-XXXXXX", NULL);
  g_assert_nonnull (f->dir);
}

static void
remove_tree (const char *path)
{
  g_autoptr (GDir) d = g_dir_open (path, 0, NULL);
  const char *name;
  while (d && (name = g_dir_read_name (d)) != NULL)
    {
      g_autofree char *p = g_build_filename (path, name, NULL);
      if (g_file_test (p, G_FILE_TEST_IS_DIR))
        remove_tree (p);
      else
        g_unlink (p);
    }
  g_rmdir (path);
}

static void
fixture_teardown (Fixture *f, gconstpointer data)
{
  remove_tree (f->dir);
  g_free (f->dir);
}

static void
record_state (GptdRun *run, Gptd__RunState state, const char *stage, const char *error)
{
  Gptd__Event ev = GPTD__EVENT__INIT;
  Gptd__StateChange change = GPTD__STATE_CHANGE__INIT;
  change.state = state;
  change.stage = (char *) (stage ? stage : "");
  change.error = (char *) (error ? error : "");
  ev.run_id = (char *) "ignored";
  ev.body_case = GPTD__EVENT__BODY_STATE;
  ev.state = &change;
  g_assert_true (gptd__run_record_event (run, &ev));
  /* The caller's strings are given back. */
  g_assert_cmpstr (ev.run_id, ==, "ignored");
}

static void
record_progress (GptdRun *run, guint64 items)
{
  Gptd__Event ev = GPTD__EVENT__INIT;
  Gptd__Progress p = GPTD__PROGRESS__INIT;
  p.stage = (char *) "ticks";
  p.items = items;
  p.total_items = 100;
  p.unit = (char *) "ticks";
  p.loss = NAN;
  p.val_loss = 2.5;
  ev.body_case = GPTD__EVENT__BODY_PROGRESS;
  ev.progress = &p;
  g_assert_true (gptd__run_record_event (run, &ev));
}

static GptdRun *
create_run (GptdRunTable *table)
{
  const char *settings[] = { "ticks.count=3", "var=x", NULL };
  g_autoptr (GError) error = NULL;
  GptdRun *run = gptd__run_table_create (table, "demo", "[pipeline]\nname=demo\n",
                                         "/somewhere/demo.pipeline", "/somewhere",
                                         settings, NULL, &error);
  g_assert_no_error (error);
  g_assert_nonnull (run);
  return run;
}

typedef struct {
  guint calls;
  guint64 last_seq;
} Seen;

static void
count_events (GptdRun *run, const Gptd__Event *event, gpointer user_data)
{
  Seen *seen = user_data;
  seen->calls++;
  seen->last_seq = event->seq;
  g_assert_cmpstr (event->run_id, ==, run->id);
}

static void
test_lifecycle (Fixture *f, gconstpointer data)
{
  g_autoptr (GError) error = NULL;
  GptdRunTable *table = gptd__run_table_open (f->dir, &error);
  g_assert_no_error (error);
  Seen seen = { 0 };
  gptd__run_table_set_event_func (table, count_events, &seen);

  GptdRun *run = create_run (table);
  g_assert_cmpstr (run->id, ==, "1");
  g_assert_cmpint (run->state, ==, GPTD__RUN_STATE__RUN_STATE_QUEUED);
  g_assert_true (gptd__run_table_lookup (table, "1") == run);
  g_assert_null (gptd__run_table_lookup (table, "2"));

  /* What the worker reads back. */
  g_autofree char *text = NULL, *filename = NULL, *workdir = NULL;
  g_auto (GStrv) settings = NULL;
  g_assert_true (gptd__run_dir_read_request (run->dir, &text, &filename, &workdir, &settings,
                                             &error));
  g_assert_no_error (error);
  g_assert_cmpstr (text, ==, "[pipeline]\nname=demo\n");
  g_assert_cmpstr (filename, ==, "/somewhere/demo.pipeline");
  g_assert_cmpstr (workdir, ==, "/somewhere");
  g_assert_cmpuint (g_strv_length (settings), ==, 2);
  g_assert_cmpstr (settings[1], ==, "var=x");

  record_state (run, GPTD__RUN_STATE__RUN_STATE_RUNNING, NULL, NULL);
  g_assert_cmpint (run->state, ==, GPTD__RUN_STATE__RUN_STATE_RUNNING);
  g_assert_cmpfloat (run->started, >, 0);
  record_progress (run, 10);
  record_progress (run, 20);
  g_assert_cmpuint (run->progress->items, ==, 20);
  record_state (run, GPTD__RUN_STATE__RUN_STATE_FAILED, "ticks", "it broke");
  g_assert_true (gptd__run_is_finished (run));
  g_assert_cmpstr (run->error, ==, "it broke");
  g_assert_cmpstr (run->error_stage, ==, "ticks");
  g_assert_cmpuint (seen.calls, ==, 4);
  g_assert_cmpuint (seen.last_seq, ==, 4);

  /* A finished run takes no more events. */
  Gptd__Event late = GPTD__EVENT__INIT;
  g_assert_false (gptd__run_record_event (run, &late));
  g_assert_cmpuint (seen.calls, ==, 4);

  g_autoptr (GPtrArray) all = gptd__run_read_log (run, FALSE, &error);
  g_assert_no_error (error);
  g_assert_cmpuint (all->len, ==, 4);
  for (guint i = 0; i < all->len; i++)
    {
      Gptd__Event *ev = all->pdata[i];
      g_assert_cmpuint (ev->seq, ==, i + 1);
      g_assert_cmpstr (ev->run_id, ==, "1");
    }
  g_autoptr (GPtrArray) logs = gptd__run_read_log (run, TRUE, &error);
  g_assert_cmpuint (logs->len, ==, 2);

  gptd__run_table_free (table);

  /* Reopened: the finished run is as it was, progress included. */
  table = gptd__run_table_open (f->dir, &error);
  g_assert_no_error (error);
  run = gptd__run_table_lookup (table, "1");
  g_assert_nonnull (run);
  g_assert_cmpint (run->state, ==, GPTD__RUN_STATE__RUN_STATE_FAILED);
  g_assert_cmpstr (run->name, ==, "demo");
  g_assert_cmpstr (run->error, ==, "it broke");
  g_assert_cmpstr (run->error_stage, ==, "ticks");
  g_assert_nonnull (run->progress);
  g_assert_cmpuint (run->progress->items, ==, 20);
  g_assert_true (isnan (run->progress->loss));
  g_assert_cmpfloat (run->progress->val_loss, ==, 2.5);
  /* IDs go on. */
  GptdRun *second = create_run (table);
  g_assert_cmpstr (second->id, ==, "2");
  gptd__run_table_free (table);
}

static void
test_interrupted (Fixture *f, gconstpointer data)
{
  g_autoptr (GError) error = NULL;
  GptdRunTable *table = gptd__run_table_open (f->dir, &error);
  g_assert_no_error (error);
  GptdRun *queued = create_run (table);
  GptdRun *running = create_run (table);
  record_state (running, GPTD__RUN_STATE__RUN_STATE_RUNNING, NULL, NULL);
  record_progress (running, 5);
  /* A pid that is not a worker of this run. */
  gptd__run_set_pid (running, getpid ());
  g_autofree char *log_path = g_build_filename (running->dir, GPTD_RUN_EVENTS_FILE, NULL);
  g_autofree char *json_path = g_build_filename (running->dir, GPTD_RUN_EVENTS_JSON_FILE, NULL);
  g_autofree char *queued_id = g_strdup (queued->id);
  g_autofree char *running_id = g_strdup (running->id);
  /* The daemon dies here, in the middle of writing an event. */
  gptd__run_table_free (table);
  g_autofree char *before = NULL;
  gsize before_len = 0;
  g_assert_true (g_file_get_contents (log_path, &before, &before_len, NULL));
  FILE *fp = fopen (log_path, "ab");
  const guint8 torn[] = { 0, 0, 0, 40, 0x0a, 0x01 };
  fwrite (torn, 1, sizeof torn, fp);
  fclose (fp);
  fp = fopen (json_path, "ab");
  fputs ("{\"run_id\":\"2\",\"se", fp);
  fclose (fp);

  table = gptd__run_table_open (f->dir, &error);
  g_assert_no_error (error);
  GptdRun *r = gptd__run_table_lookup (table, running_id);
  g_assert_cmpint (r->state, ==, GPTD__RUN_STATE__RUN_STATE_INTERRUPTED);
  g_assert_cmpint (r->pid, ==, 0);
  g_assert_nonnull (strstr (r->error, "gptd stopped while the run was running"));
  g_assert_cmpfloat (r->finished, >, 0);
  GptdRun *q = gptd__run_table_lookup (table, queued_id);
  g_assert_cmpint (q->state, ==, GPTD__RUN_STATE__RUN_STATE_INTERRUPTED);

  /* The torn frame is gone and the interruption follows the whole events. */
  g_autoptr (GPtrArray) events = gptd__run_read_log (r, FALSE, &error);
  g_assert_no_error (error);
  g_assert_cmpuint (events->len, ==, 3);
  Gptd__Event *last = events->pdata[2];
  g_assert_cmpuint (last->seq, ==, 3);
  g_assert_cmpint (last->body_case, ==, GPTD__EVENT__BODY_STATE);
  g_assert_cmpint (last->state->state, ==, GPTD__RUN_STATE__RUN_STATE_INTERRUPTED);
  g_autofree char *after = NULL;
  gsize after_len = 0;
  g_assert_true (g_file_get_contents (log_path, &after, &after_len, NULL));
  g_assert_cmpuint (after_len, >, before_len);
  g_assert_cmpmem (after, before_len, before, before_len);
  /* events.jsonl: the same three events, one whole JSON object per line. */
  g_autofree char *json = NULL;
  g_assert_true (g_file_get_contents (json_path, &json, NULL, NULL));
  g_auto (GStrv) lines = g_strsplit (json, "\n", -1);
  g_assert_cmpuint (g_strv_length (lines), ==, 4);
  g_assert_cmpstr (lines[3], ==, "");
  for (guint i = 0; i < 3; i++)
    {
      g_autofree char *seq = g_strdup_printf ("\"seq\":%u,", i + 1);
      g_assert_nonnull (strstr (lines[i], seq));
      g_assert_true (g_str_has_prefix (lines[i], "{") && g_str_has_suffix (lines[i], "}"));
    }
  g_assert_nonnull (strstr (lines[2], "\"interrupted\""));
  gptd__run_table_free (table);

  /* Written back: a third start finds it interrupted on disk, unchanged. */
  table = gptd__run_table_open (f->dir, &error);
  g_assert_no_error (error);
  r = gptd__run_table_lookup (table, running_id);
  g_assert_cmpint (r->state, ==, GPTD__RUN_STATE__RUN_STATE_INTERRUPTED);
  g_autoptr (GPtrArray) again = gptd__run_read_log (r, FALSE, &error);
  g_assert_cmpuint (again->len, ==, 3);
  gptd__run_table_free (table);
}

/* Fails writes of status.json with ENOSPC: all of them while *remaining is
 * negative, else the next *remaining attempts. */
static int
status_fault (GptdAtomicFileOp op, const char *path, guint64 offset, size_t *length,
              gpointer user_data)
{
  int *remaining = user_data;
  if (op != GPTD_ATOMIC_FILE_OP_CREATE || !g_str_has_suffix (path, "/" GPTD_RUN_STATUS_FILE))
    return 0;
  if (*remaining < 0)
    return ENOSPC;
  if (*remaining == 0)
    return 0;
  (*remaining)--;
  return ENOSPC;
}

static Gptd__RunState
state_on_disk (GptdRun *run)
{
  g_autofree char *path = g_build_filename (run->dir, GPTD_RUN_STATUS_FILE, NULL);
  g_autofree char *text = NULL;
  g_assert_true (g_file_get_contents (path, &text, NULL, NULL));
  if (strstr (text, "\"failed\""))
    return GPTD__RUN_STATE__RUN_STATE_FAILED;
  if (strstr (text, "\"running\""))
    return GPTD__RUN_STATE__RUN_STATE_RUNNING;
  if (strstr (text, "\"interrupted\""))
    return GPTD__RUN_STATE__RUN_STATE_INTERRUPTED;
  return GPTD__RUN_STATE__RUN_STATE_QUEUED;
}

/* A run that fails while status.json cannot be written (a full disk): a short
 * outage is retried away; a lasting one leaves the FAILED event in the log, and
 * the next start rebuilds the status from it — the run failed, with its error and
 * stage, and was not "interrupted". */
static void
test_status_write_fails (Fixture *f, gconstpointer data)
{
  g_autoptr (GError) error = NULL;
  GptdRunTable *table = gptd__run_table_open (f->dir, &error);
  g_assert_no_error (error);
  int remaining = 0;
  gptd_atomic_file_set_fault_func (status_fault, &remaining);
  /* The failed writes are warned about: expected here. */
  GLogLevelFlags fatal = g_log_set_always_fatal (G_LOG_FATAL_MASK | G_LOG_LEVEL_CRITICAL);

  /* Two failed attempts: the third succeeds. */
  GptdRun *brief = create_run (table);
  remaining = 2;
  record_state (brief, GPTD__RUN_STATE__RUN_STATE_RUNNING, NULL, NULL);
  g_assert_cmpint (remaining, ==, 0);
  g_assert_cmpint (state_on_disk (brief), ==, GPTD__RUN_STATE__RUN_STATE_RUNNING);
  g_assert_false (brief->status_stale);

  /* Every attempt fails. */
  GptdRun *run = create_run (table);
  g_autofree char *id = g_strdup (run->id);
  record_state (run, GPTD__RUN_STATE__RUN_STATE_RUNNING, NULL, NULL);
  record_progress (run, 7);
  remaining = -1;
  record_state (run, GPTD__RUN_STATE__RUN_STATE_FAILED, "ticks", "No space left on device");
  g_assert_true (run->status_stale);
  g_assert_cmpint (state_on_disk (run), ==, GPTD__RUN_STATE__RUN_STATE_RUNNING);
  gptd__run_table_free (table);

  /* The disk has room again; the daemon starts. */
  gptd_atomic_file_set_fault_func (NULL, NULL);
  table = gptd__run_table_open (f->dir, &error);
  g_assert_no_error (error);
  GptdRun *r = gptd__run_table_lookup (table, id);
  g_assert_cmpint (r->state, ==, GPTD__RUN_STATE__RUN_STATE_FAILED);
  g_assert_cmpstr (r->error, ==, "No space left on device");
  g_assert_cmpstr (r->error_stage, ==, "ticks");
  g_assert_cmpfloat (r->finished, >, 0);
  g_assert_nonnull (r->progress);
  g_assert_cmpuint (r->progress->items, ==, 7);
  g_assert_cmpint (state_on_disk (r), ==, GPTD__RUN_STATE__RUN_STATE_FAILED);
  /* Nothing was added to its log: it ends with the failure. */
  g_autoptr (GPtrArray) events = gptd__run_read_log (r, FALSE, &error);
  g_assert_no_error (error);
  Gptd__Event *last = events->pdata[events->len - 1];
  g_assert_cmpint (last->body_case, ==, GPTD__EVENT__BODY_STATE);
  g_assert_cmpint (last->state->state, ==, GPTD__RUN_STATE__RUN_STATE_FAILED);
  gptd__run_table_free (table);
  g_log_set_always_fatal (fatal);
}

/* A status.json with counts that do not fit their fields (negative, too large)
 * leaves them out instead of wrapping them around. */
static void
test_status_out_of_range (Fixture *f, gconstpointer data)
{
  g_autoptr (GError) error = NULL;
  GptdRunTable *table = gptd__run_table_open (f->dir, &error);
  GptdRun *run = create_run (table);
  record_state (run, GPTD__RUN_STATE__RUN_STATE_RUNNING, NULL, NULL);
  record_progress (run, 9);
  record_state (run, GPTD__RUN_STATE__RUN_STATE_SUCCEEDED, NULL, NULL);
  g_autofree char *id = g_strdup (run->id);
  g_autofree char *path = g_build_filename (run->dir, GPTD_RUN_STATUS_FILE, NULL);
  gptd__run_table_free (table);
  g_autofree char *text = NULL;
  g_assert_true (g_file_get_contents (path, &text, NULL, NULL));
  g_autoptr (GString) s = g_string_new (text);
  g_assert_cmpint (g_string_replace (s, "\"items\" : 9", "\"items\" : -5", 1), ==, 1);
  g_assert_cmpint (g_string_replace (s, "\"pid\" : 0", "\"pid\" : 99999999999", 1), ==, 1);
  g_assert_true (g_file_set_contents (path, s->str, (gssize) s->len, NULL));

  table = gptd__run_table_open (f->dir, &error);
  GptdRun *r = gptd__run_table_lookup (table, id);
  g_assert_nonnull (r);
  g_assert_cmpuint (r->progress->items, ==, 0);
  g_assert_cmpint (r->pid, ==, 0);
  gptd__run_table_free (table);
}

/* A paused run rests: it takes no events, survives a restart paused (not
 * interrupted), and resumes; its owner and environment are recorded. */
static void
test_paused_owner (Fixture *f, gconstpointer data)
{
  g_autoptr (GError) error = NULL;
  GptdRunTable *table = gptd__run_table_open (f->dir, &error);
  g_assert_no_error (error);
  const char *env[] = { "E2E_TICKS=3", NULL };
  GptdRun *run = gptd__run_table_create (table, "demo", "[pipeline]\nname=demo\n",
                                         "/somewhere/demo.pipeline", "/somewhere", NULL, env,
                                         &error);
  g_assert_no_error (error);
  g_assert_true (gptd__run_set_owner (run, (guint) getuid (), (guint) getgid (), &error));
  g_assert_no_error (error);
  g_assert_nonnull (run->owner);
  g_auto (GStrv) read_env = gptd__run_dir_read_environment (run->dir);
  g_assert_nonnull (read_env);
  g_assert_cmpstr (read_env[0], ==, "E2E_TICKS=3");
  g_assert_null (read_env[1]);

  gptd__run_finish (run, GPTD__RUN_STATE__RUN_STATE_PAUSED, NULL, NULL);
  g_assert_cmpint (run->state, ==, GPTD__RUN_STATE__RUN_STATE_PAUSED);
  g_assert_true (gptd__run_is_finished (run));
  g_autofree char *dir = g_strdup (run->dir);
  gptd__run_table_free (table);

  table = gptd__run_table_open (f->dir, &error);
  g_assert_no_error (error);
  run = gptd__run_table_lookup (table, "1");
  g_assert_nonnull (run);
  g_assert_cmpint (run->state, ==, GPTD__RUN_STATE__RUN_STATE_PAUSED);
  g_assert_cmpuint (run->owner_uid, ==, (guint) getuid ());
  gptd__run_reopen (run, NULL);
  g_assert_cmpint (run->state, ==, GPTD__RUN_STATE__RUN_STATE_QUEUED);
  g_autoptr (GPtrArray) events = gptd__run_read_log (run, TRUE, &error);
  g_assert_no_error (error);
  gboolean said = FALSE;
  for (guint i = 0; i < events->len; i++)
    {
      Gptd__Event *ev = events->pdata[i];
      if (ev->body_case == GPTD__EVENT__BODY_LOG
          && strstr (ev->log->message, "(the run had been paused)") != NULL)
        said = TRUE;
    }
  g_assert_true (said);
  gptd__run_table_free (table);

  /* A run without a recorded environment (gptd run) reads none back. */
  g_autofree char *rpath = g_build_filename (dir, GPTD_RUN_REQUEST_FILE, NULL);
  g_assert_true (g_file_set_contents (rpath, "{\"filename\": \"/x.pipeline\"}\n", -1, NULL));
  g_assert_null (gptd__run_dir_read_environment (dir));
}

static void
test_lock (Fixture *f, gconstpointer data)
{
  g_autoptr (GError) error = NULL;
  GptdRunTable *table = gptd__run_table_open (f->dir, &error);
  g_assert_no_error (error);
  GptdRunTable *second = gptd__run_table_open (f->dir, &error);
  g_assert_null (second);
  g_assert_error (error, G_FILE_ERROR, G_FILE_ERROR_EXIST);
  g_assert_nonnull (strstr (error->message, "Another gptd is using the state directory"));
  g_clear_error (&error);
  gptd__run_table_free (table);
  second = gptd__run_table_open (f->dir, &error);
  g_assert_no_error (error);
  gptd__run_table_free (second);
}

static void
test_reader_follows (Fixture *f, gconstpointer data)
{
  g_autoptr (GError) error = NULL;
  GptdRunTable *table = gptd__run_table_open (f->dir, &error);
  GptdRun *run = create_run (table);
  record_state (run, GPTD__RUN_STATE__RUN_STATE_RUNNING, NULL, NULL);

  g_autoptr (GptdRunLogReader) reader = gptd__run_log_reader_new (run, &error);
  g_assert_no_error (error);
  Gptd__Event *ev = gptd__run_log_reader_next (reader, &error);
  g_assert_nonnull (ev);
  g_assert_cmpuint (ev->seq, ==, 1);
  protobuf_c_message_free_unpacked (&ev->base, NULL);
  g_assert_null (gptd__run_log_reader_next (reader, &error));
  g_assert_no_error (error);

  /* Events appended later are read on. */
  record_progress (run, 1);
  record_progress (run, 2);
  for (guint64 seq = 2; seq <= 3; seq++)
    {
      ev = gptd__run_log_reader_next (reader, &error);
      g_assert_no_error (error);
      g_assert_nonnull (ev);
      g_assert_cmpuint (ev->seq, ==, seq);
      protobuf_c_message_free_unpacked (&ev->base, NULL);
    }
  g_assert_null (gptd__run_log_reader_next (reader, &error));
  g_assert_no_error (error);
  gptd__run_table_free (table);
}

static void
test_bad_run_dirs (Fixture *f, gconstpointer data)
{
  /* A run directory without a readable status is skipped (with a warning), and
   * its ID is not given again. */
  g_autofree char *bad = g_build_filename (f->dir, "runs", "7", NULL);
  g_assert_cmpint (g_mkdir_with_parents (bad, 0750), ==, 0);
  g_autofree char *status = g_build_filename (bad, GPTD_RUN_STATUS_FILE, NULL);
  g_assert_true (g_file_set_contents (status, "{ not json", -1, NULL));
  g_autofree char *other = g_build_filename (f->dir, "runs", "not-a-run", NULL);
  g_assert_cmpint (g_mkdir_with_parents (other, 0750), ==, 0);
  /* A status nested deep enough to overflow json-glib's recursion: skipped too. */
  g_autofree char *deep_dir = g_build_filename (f->dir, "runs", "6", NULL);
  g_assert_cmpint (g_mkdir_with_parents (deep_dir, 0750), ==, 0);
  g_autofree char *deep_status = g_build_filename (deep_dir, GPTD_RUN_STATUS_FILE, NULL);
  g_autofree char *deep = g_strnfill (100000, '[');
  g_assert_true (g_file_set_contents (deep_status, deep, -1, NULL));

  if (!g_test_subprocess ())
    {
      /* The warning is checked in a subprocess, where it is not fatal. */
      g_test_trap_subprocess (NULL, 0, G_TEST_SUBPROCESS_DEFAULT);
      g_test_trap_assert_passed ();
      g_test_trap_assert_stderr ("*Skipping run 7:*status.json*");
      g_test_trap_assert_stderr ("*Skipping run 6:*status.json*deeper than 64*");
      return;
    }
  g_log_set_always_fatal (G_LOG_FATAL_MASK);
  g_autoptr (GError) error = NULL;
  GptdRunTable *table = gptd__run_table_open (f->dir, &error);
  g_assert_no_error (error);
  g_autoptr (GPtrArray) list = gptd__run_table_list (table);
  g_assert_cmpuint (list->len, ==, 0);
  GptdRun *run = create_run (table);
  g_assert_cmpstr (run->id, ==, "8");

  /* A deeply nested request file: an error naming it, no crash. */
  g_autofree char *request = g_build_filename (run->dir, GPTD_RUN_REQUEST_FILE, NULL);
  g_assert_true (g_file_set_contents (request, deep, -1, NULL));
  g_autofree char *text = NULL, *filename = NULL, *workdir = NULL;
  g_auto (GStrv) settings = NULL;
  g_assert_false (gptd__run_dir_read_request (run->dir, &text, &filename, &workdir, &settings,
                                              &error));
  g_assert_error (error, GPTD_JSON_ERROR, GPTD_JSON_ERROR_TOO_DEEP);
  g_assert_nonnull (strstr (error->message, request));
  gptd__run_table_free (table);
}

static void
test_remove (Fixture *f, gconstpointer data)
{
  g_autoptr (GError) error = NULL;
  GptdRunTable *table = gptd__run_table_open (f->dir, &error);
  g_assert_no_error (error);
  GptdRun *a = create_run (table);
  GptdRun *b = create_run (table);
  record_state (a, GPTD__RUN_STATE__RUN_STATE_SUCCEEDED, NULL, NULL);
  record_state (b, GPTD__RUN_STATE__RUN_STATE_CANCELLED, NULL, NULL);
  g_autofree char *a_dir = g_strdup (a->dir);
  g_autofree char *b_id = g_strdup (b->id);

  /* Outside the run directory, reached through links in it (and in a
   * subdirectory). */
  g_autofree char *outside = g_build_filename (f->dir, "outside", NULL);
  g_autofree char *keep = g_build_filename (outside, "keep", NULL);
  g_assert_cmpint (g_mkdir (outside, 0700), ==, 0);
  g_assert_true (g_file_set_contents (keep, "keep", -1, NULL));
  g_autofree char *sub = g_build_filename (a_dir, "checkpoint", NULL);
  g_assert_cmpint (g_mkdir (sub, 0700), ==, 0);
  g_autofree char *l1 = g_build_filename (a_dir, "dir-link", NULL);
  g_autofree char *l2 = g_build_filename (sub, "file-link", NULL);
  g_assert_cmpint (symlink (outside, l1), ==, 0);
  g_assert_cmpint (symlink (keep, l2), ==, 0);

  g_assert_true (gptd__run_table_remove (table, a, &error));
  g_assert_no_error (error);
  g_assert_false (g_file_test (a_dir, G_FILE_TEST_EXISTS));
  g_assert_true (g_file_test (keep, G_FILE_TEST_IS_REGULAR));
  g_autoptr (GPtrArray) list = gptd__run_table_list (table);
  g_assert_cmpuint (list->len, ==, 1);
  g_assert_true (list->pdata[0] == b);

  /* A cancelled run's checkpoints: gone, and marked so. */
  g_autofree char *ckpt = g_build_filename (b->dir, GPTD_RUN_CHECKPOINT_DIR, NULL);
  g_autofree char *ckpt_file = g_build_filename (ckpt, "checkpoint.json", NULL);
  g_assert_cmpint (g_mkdir (ckpt, 0700), ==, 0);
  g_assert_true (g_file_set_contents (ckpt_file, "{}", -1, NULL));
  g_assert_false (gptd__run_checkpoint_removed (b));
  g_assert_true (gptd__run_remove_checkpoint (b, &error));
  g_assert_no_error (error);
  g_assert_false (g_file_test (ckpt, G_FILE_TEST_EXISTS));
  g_assert_true (gptd__run_checkpoint_removed (b));
  gptd__run_table_free (table);

  /* After a restart: the mark is still there; the highest ID, removed, is
   * not given again. */
  table = gptd__run_table_open (f->dir, &error);
  g_assert_no_error (error);
  GptdRun *b2 = gptd__run_table_lookup (table, b_id);
  g_assert_nonnull (b2);
  g_assert_true (gptd__run_checkpoint_removed (b2));
  g_assert_true (gptd__run_table_remove (table, b2, &error));
  gptd__run_table_free (table);
  table = gptd__run_table_open (f->dir, &error);
  g_assert_no_error (error);
  GptdRun *c = create_run (table);
  g_assert_cmpstr (c->id, ==, "3");
  gptd__run_table_free (table);
}

int
main (int argc, char **argv)
{
  g_test_init (&argc, &argv, NULL);
  g_test_add ("/daemon/runs/lifecycle", Fixture, NULL, fixture_setup, test_lifecycle,
              fixture_teardown);
  g_test_add ("/daemon/runs/interrupted", Fixture, NULL, fixture_setup, test_interrupted,
              fixture_teardown);
  g_test_add ("/daemon/runs/remove", Fixture, NULL, fixture_setup, test_remove,
              fixture_teardown);
  g_test_add ("/daemon/runs/lock", Fixture, NULL, fixture_setup, test_lock, fixture_teardown);
  g_test_add ("/daemon/runs/paused-owner", Fixture, NULL, fixture_setup, test_paused_owner,
              fixture_teardown);
  g_test_add ("/daemon/runs/status-write-fails", Fixture, NULL, fixture_setup,
              test_status_write_fails, fixture_teardown);
  g_test_add ("/daemon/runs/status-out-of-range", Fixture, NULL, fixture_setup,
              test_status_out_of_range, fixture_teardown);
  g_test_add ("/daemon/runs/reader-follows", Fixture, NULL, fixture_setup,
              test_reader_follows, fixture_teardown);
  g_test_add ("/daemon/runs/bad-run-dirs", Fixture, NULL, fixture_setup, test_bad_run_dirs,
              fixture_teardown);
  return g_test_run ();
}
