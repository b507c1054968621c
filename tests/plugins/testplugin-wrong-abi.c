/* testplugin-wrong-abi.c: a plugin built for ABI major version 99, which the loader
 * must skip with a warning naming this file (and never call into). */
#include "config.h"

#include <gptd/plugin.h>

static gpointer
never_create (GptdStageContext *ctx, const GptdParams *params, GError **error)
{
  g_error ("a plugin with the wrong ABI was used");
  return NULL;
}

static const GptdStageType future_type = {
  .name = "test-from-the-future",
  .description = "Must never be registered",
  .create = never_create,
};

G_MODULE_EXPORT const GptdPluginDescriptor gptd_plugin_descriptor = {
  99, 0, "wrong-abi", "A plugin for another ABI", "1.0", "MIT",
  (const GptdStageType *const[]){ &future_type, NULL }, { NULL }
};
