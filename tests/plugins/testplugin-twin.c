/* testplugin-twin.c: a plugin that registers a stage type name (test-counter) that
 * testplugin-good already provides. It is found after testplugin-good (name order), so
 * the loader keeps the first and warns about this one. */
#include "config.h"

#include <gptd/plugin.h>

static gpointer
twin_create (GptdStageContext *ctx, const GptdParams *params, GError **error)
{
  g_set_error (error, GPTD_STAGE_ERROR, GPTD_STAGE_ERROR_FAILED, "the twin was used");
  return NULL;
}

static gboolean
twin_run (gpointer self, GptdStageContext *ctx, GError **error)
{
  return TRUE;
}

static const GptdStageType twin_type = {
  .name = "test-counter",
  .description = "A second test-counter, which must lose to the first",
  .create = twin_create,
  .run = twin_run,
};

GPTD_PLUGIN_DEFINE ("twin", "Registers a name taken already", "1.0", "MIT", &twin_type);
