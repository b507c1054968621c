/* plugin.h: the descriptor every gptd plugin exports.
 *
 * A plugin is a shared object that exports one constant GptdPluginDescriptor under
 * the symbol GPTD_PLUGIN_SYMBOL. The descriptor names the plugin and lists the stage
 * types it provides (see stage.h). The loader checks the ABI version before it looks
 * at anything else: a plugin built for another major version, or for a newer minor
 * version than the host provides, is skipped with a warning naming its file.
 *
 * A minimal plugin:
 *
 *   #include <gptd/plugin.h>
 *   extern const GptdStageType my_source_type;
 *   GPTD_PLUGIN_DEFINE ("example", "An example stage", "1.0", "MIT", &my_source_type);
 */
#ifndef GPTD_PLUGIN_H
#define GPTD_PLUGIN_H

#include <glib.h>
#include <gmodule.h>
#include <gptd/stage.h>

G_BEGIN_DECLS

/* The ABI of the descriptor, the stage table and the host functions in stage.h.
 * The major version changes when anything existing changes layout or meaning; the
 * minor version when something is added at the end. */
#define GPTD_PLUGIN_ABI_MAJOR 1
#define GPTD_PLUGIN_ABI_MINOR 0

/* The symbol the loader looks up in each plugin. */
#define GPTD_PLUGIN_SYMBOL "gptd_plugin_descriptor"

/**
 * GptdPluginDescriptor:
 * @abi_major: GPTD_PLUGIN_ABI_MAJOR the plugin was built with.
 * @abi_minor: GPTD_PLUGIN_ABI_MINOR the plugin was built with.
 * @name: short unique plugin name, e.g. "core".
 * @description: one line saying what the plugin provides.
 * @version: the plugin's own version.
 * @license: SPDX license identifier.
 * @stage_types: NULL-terminated array of the stage types the plugin registers.
 *
 * Exported (constant) by every plugin as `gptd_plugin_descriptor`.
 */
typedef struct {
  guint32 abi_major;
  guint32 abi_minor;
  const char *name;
  const char *description;
  const char *version;
  const char *license;
  const GptdStageType *const *stage_types;
  /*< private >*/
  gpointer reserved[8];
} GptdPluginDescriptor;

/**
 * GPTD_PLUGIN_DEFINE:
 * @name: plugin name (string literal).
 * @description: one-line description.
 * @version: plugin version string.
 * @license: SPDX identifier.
 * @...: pointers to the GptdStageType values the plugin provides.
 *
 * Defines and exports the plugin's descriptor.
 */
#define GPTD_PLUGIN_DEFINE(name, description, version, license, ...)                \
  G_MODULE_EXPORT const GptdPluginDescriptor gptd_plugin_descriptor = {              \
    GPTD_PLUGIN_ABI_MAJOR, GPTD_PLUGIN_ABI_MINOR, (name), (description), (version), \
    (license), (const GptdStageType *const[]){ __VA_ARGS__, NULL }, { NULL }         \
  }

G_END_DECLS

#endif /* GPTD_PLUGIN_H */
