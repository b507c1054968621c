/* tests/e2e/e2e-plugin.c: a plugin for the end-to-end tests of the daemon. Its one
 * stage type, `e2e-ticker`, is a source that emits a Document per tick at a set
 * pace, with progress, so a run lasts as long as a test needs; it can log every
 * tick (a flood of events for lag tests), fail at a given tick, kill its own
 * process (a worker that dies without reporting), or ignore being cancelled (a
 * worker that does not stop when told to).
 */
#include <gptd/plugin.h>
#include <gptd/stage.h>
#include <gio/gio.h>

#include <math.h>
#include <signal.h>
#include <string.h>
#include <unistd.h>

typedef struct {
  gint64 count;
  gint64 interval_ms;
  gint64 fail_at;
  gint64 die_at;
  gboolean log;
  gint64 log_bytes;
  gboolean stubborn;
} Ticker;

static const GptdParamSpec ticker_params[] = {
  { "count", GPTD_PARAM_INT, "10", 0, 1e9, NULL, "Ticks to emit", 0 },
  { "interval-ms", GPTD_PARAM_INT, "100", 0, 60000, NULL, "Pause after each tick", 0 },
  { "fail-at", GPTD_PARAM_INT, "-1", -1, 1e9, NULL,
    "Fail with an error at this tick (-1: never)", 0 },
  { "die-at", GPTD_PARAM_INT, "-1", -1, 1e9, NULL,
    "Kill the worker process with SIGKILL at this tick (-1: never)", 0 },
  { "log", GPTD_PARAM_BOOL, "false", 0, 0, NULL, "Log a line per tick", 0 },
  { "log-bytes", GPTD_PARAM_INT, "16", 1, 1e6, NULL, "Length of each logged line", 0 },
  { "stubborn", GPTD_PARAM_BOOL, "false", 0, 0, NULL,
    "Once cancelled, go on sleeping for count * interval-ms instead of stopping", 0 },
  { "check-delay-ms", GPTD_PARAM_INT, "0", 0, 60000, NULL,
    "Take this long to check the parameters (a slow pipeline to load)", 0 },
  { NULL }
};

static const GptdPadSpec ticker_outputs[] = {
  { "default", "gptd.Document", 0 },
  { NULL }
};

static gpointer
ticker_create (GptdStageContext *ctx, const GptdParams *params, GError **error)
{
  Ticker *t = g_new0 (Ticker, 1);
  t->count = gptd_params_get_int (params, "count");
  t->interval_ms = gptd_params_get_int (params, "interval-ms");
  t->fail_at = gptd_params_get_int (params, "fail-at");
  t->die_at = gptd_params_get_int (params, "die-at");
  t->log = gptd_params_get_bool (params, "log");
  t->log_bytes = gptd_params_get_int (params, "log-bytes");
  t->stubborn = gptd_params_get_bool (params, "stubborn");
  return t;
}

static gboolean
ticker_check (const GptdParams *params, GError **error)
{
  g_usleep ((gulong) gptd_params_get_int (params, "check-delay-ms") * 1000);
  return TRUE;
}

static gboolean
ticker_run (gpointer self, GptdStageContext *ctx, GError **error)
{
  Ticker *t = self;
  g_autofree char *padding = g_strnfill ((gsize) t->log_bytes, 'x');
  for (gint64 i = 0; i < t->count; i++)
    {
      if (gptd_stage_context_is_cancelled (ctx))
        {
          if (t->stubborn)
            g_usleep ((gulong) (t->count * t->interval_ms) * 1000);
          g_set_error_literal (error, G_IO_ERROR, G_IO_ERROR_CANCELLED, "cancelled");
          return FALSE;
        }
      if (i == t->fail_at)
        {
          g_set_error (error, GPTD_STAGE_ERROR, GPTD_STAGE_ERROR_FAILED,
                       "failing at tick %" G_GINT64_FORMAT " as asked", i);
          return FALSE;
        }
      if (i == t->die_at)
        kill (getpid (), SIGKILL);

      g_autofree char *text = g_strdup_printf ("tick %" G_GINT64_FORMAT "\n", i);
      Gptd__Document doc = GPTD__DOCUMENT__INIT;
      doc.source = (char *) "ticker";
      doc.text.data = (guint8 *) text;
      doc.text.len = strlen (text);
      doc.index = (guint64) i;
      doc.last = TRUE;
      if (!gptd_stage_push (ctx, 0, &doc.base, error))
        return FALSE;

      Gptd__Progress p = GPTD__PROGRESS__INIT;
      p.items = (guint64) i + 1;
      p.total_items = (guint64) t->count;
      p.unit = (char *) "ticks";
      p.loss = NAN;
      p.val_loss = NAN;
      p.eta_s = -1;
      gptd_stage_progress (ctx, &p);
      if (t->log)
        gptd_stage_log (ctx, G_LOG_LEVEL_INFO, "tick %" G_GINT64_FORMAT " %s", i, padding);

      /* Sleep in slices so a cancel is seen quickly. */
      for (gint64 slept = 0; slept < t->interval_ms && !gptd_stage_context_is_cancelled (ctx);
           slept += 10)
        g_usleep (MIN (10, t->interval_ms - slept) * 1000);
    }
  return TRUE;
}

static void
ticker_destroy (gpointer self)
{
  g_free (self);
}

static const GptdStageType e2e_ticker_type = {
  .name = "e2e-ticker",
  .description = "Emits a Document per tick at a set pace (end-to-end tests)",
  .params = ticker_params,
  .outputs = ticker_outputs,
  .check = ticker_check,
  .create = ticker_create,
  .run = ticker_run,
  .destroy = ticker_destroy,
};

/* A slow plugin to load, for the SIGHUP test (tests/e2e/probe.sh): while the file
 * $GPTD_E2E_SLOW_LOAD names exists, loading this plugin takes 1.5 s. */
__attribute__ ((constructor)) static void
e2e_slow_load (void)
{
  const char *flag = g_getenv ("GPTD_E2E_SLOW_LOAD");
  if (flag != NULL && g_file_test (flag, G_FILE_TEST_EXISTS))
    g_usleep (1500 * 1000);
}

GPTD_PLUGIN_DEFINE ("e2e", "Stages for the daemon's end-to-end tests", "1.0", "MIT",
                    &e2e_ticker_type);
