/* testplugin-crash.c: a plugin whose loading crashes the process (its constructor
 * raises SIGSEGV) when GPTD_TEST_CRASH_ON_LOAD=1 is set, for the tests of the
 * daemon's plugin probe. Without it, it registers one harmless stage type,
 * test-idle, so that the other tests scanning tests/.libs load it quietly. Its
 * names are short enough not to widen the columns of `gptd plugins`, which
 * test-plugin compares exactly.
 */
#include "config.h"

#include <signal.h>
#include <sys/prctl.h>

#include <gptd/plugin.h>

__attribute__ ((constructor)) static void
crash_on_load (void)
{
  if (g_strcmp0 (g_getenv ("GPTD_TEST_CRASH_ON_LOAD"), "1") != 0)
    return;
  /* A crash on purpose: no core file. */
  prctl (PR_SET_DUMPABLE, 0);
  raise (SIGSEGV);
}

static gpointer
idle_create (GptdStageContext *ctx, const GptdParams *params, GError **error)
{
  return GINT_TO_POINTER (1);
}

static gboolean
idle_run (gpointer self, GptdStageContext *ctx, GError **error)
{
  return TRUE;
}

static const GptdStageType idle_type = {
  .name = "test-idle",
  .description = "Does nothing; its plugin crashes on load when GPTD_TEST_CRASH_ON_LOAD=1",
  .create = idle_create,
  .run = idle_run,
};

GPTD_PLUGIN_DEFINE ("boom", "Crashes while loading on request", "1.0", "MIT", &idle_type);
