/* test-pipeline-util.h: helpers shared by the plugin, pipeline and runner tests —
 * a registry of the plugins in the build tree, and running a pipeline text while
 * recording its events. */
#ifndef GPTD_TEST_PIPELINE_UTIL_H
#define GPTD_TEST_PIPELINE_UTIL_H

#include <string.h>

#include <gio/gio.h>
#include <glib/gstdio.h>
#include <gptd/pipeline.h>
#include <gptd/registry.h>
#include <gptd/runner.h>

/* The registry every test uses: GPTD_PLUGIN_PATH as `make check` sets it (the core
 * plugin and the test plugins of the build tree). */
static inline GptdRegistry *
test_registry (void)
{
  GptdRegistry *r = gptd_registry_new ();
  g_autoptr (GError) error = NULL;
  if (g_getenv ("GPTD_PLUGIN_PATH") == NULL)
    {
      g_autofree char *tests = g_test_build_filename (G_TEST_BUILT, ".libs", NULL);
      g_autofree char *core = g_test_build_filename (G_TEST_BUILT, "..", "plugins", "core",
                                                     ".libs", NULL);
      g_assert_true (gptd_registry_scan_dir (r, core, &error));
      g_assert_true (gptd_registry_scan_dir (r, tests, &error));
    }
  else
    g_assert_true (gptd_registry_scan (r, &error));
  g_assert_no_error (error);
  g_assert_nonnull (gptd_registry_lookup (r, "test-counter"));
  g_assert_nonnull (gptd_registry_lookup (r, "text-source"));
  return r;
}

/* What a run produced. */
typedef struct {
  GMutex lock;
  GPtrArray *logs;        /* "stage: message" */
  GPtrArray *states;      /* GINT_TO_POINTER (Gptd__RunState) */
  guint progress;
  guint64 last_seq;
  gboolean seq_ok;        /* sequence numbers were 1, 2, 3, ... */
  GptdRunner *runner;     /* for callbacks that cancel */
  const char *cancel_on;  /* cancel when a log line equal to this arrives */
} TestEvents;

static inline void
test_events_init (TestEvents *ev)
{
  memset (ev, 0, sizeof *ev);
  g_mutex_init (&ev->lock);
  ev->logs = g_ptr_array_new_with_free_func (g_free);
  ev->states = g_ptr_array_new ();
  ev->seq_ok = TRUE;
}

static inline void
test_events_clear (TestEvents *ev)
{
  g_ptr_array_unref (ev->logs);
  g_ptr_array_unref (ev->states);
  g_mutex_clear (&ev->lock);
}

static inline void
test_on_event (const Gptd__Event *event, gpointer user_data)
{
  TestEvents *ev = user_data;
  g_mutex_lock (&ev->lock);
  if (event->seq != ev->last_seq + 1)
    ev->seq_ok = FALSE;
  ev->last_seq = event->seq;
  switch (event->body_case)
    {
    case GPTD__EVENT__BODY_LOG:
      g_ptr_array_add (ev->logs, g_strdup_printf ("%s: %s", event->log->stage,
                                                  event->log->message));
      if (ev->cancel_on && strcmp (event->log->message, ev->cancel_on) == 0)
        gptd_runner_cancel (ev->runner);
      break;
    case GPTD__EVENT__BODY_STATE:
      g_ptr_array_add (ev->states, GINT_TO_POINTER (event->state->state));
      break;
    case GPTD__EVENT__BODY_PROGRESS:
      ev->progress++;
      break;
    default:
      break;
    }
  g_mutex_unlock (&ev->lock);
}

/* Index of the first log line equal to @line, or -1. */
static inline int
test_events_find (TestEvents *ev, const char *line)
{
  for (guint i = 0; i < ev->logs->len; i++)
    if (strcmp (ev->logs->pdata[i], line) == 0)
      return (int) i;
  return -1;
}

/* Index of the first log line starting with @prefix, or -1. */
static inline int
test_events_find_prefix (TestEvents *ev, const char *prefix)
{
  for (guint i = 0; i < ev->logs->len; i++)
    if (g_str_has_prefix (ev->logs->pdata[i], prefix))
      return (int) i;
  return -1;
}

/* Loads @text (which must be valid) and runs it with links of @capacity messages
 * (0: the default) in a fresh temporary run directory. Returns what
 * gptd_runner_run() returned; the events land in @ev. */
static inline gboolean
test_run_pipeline (GptdRegistry *registry, const char *text, guint capacity, TestEvents *ev,
                   GError **error)
{
  g_autoptr (GError) load_error = NULL;
  g_autoptr (GptdPipeline) p = gptd_pipeline_load_data (registry, text, -1, "test.pipeline",
                                                        NULL, NULL, &load_error);
  g_assert_no_error (load_error);
  g_autofree char *dir = g_dir_make_tmp ("gptd-test-run-XXXXXX", NULL);
  g_assert_nonnull (dir);
  g_autoptr (GptdRunner) runner = gptd_runner_new (p, dir, test_on_event, ev);
  if (capacity)
    gptd_runner_set_link_capacity (runner, capacity);
  ev->runner = runner;
  gboolean ok = gptd_runner_run (runner, error);
  ev->runner = NULL;
  g_rmdir (dir);
  return ok;
}

#endif /* GPTD_TEST_PIPELINE_UTIL_H */
