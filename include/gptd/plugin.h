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

/* The ABI of the descriptor, the stage table, the specs and the host functions of
 * the SDK's headers (plugin.h, stage.h, harness.h, bpe.h, message-json.h and the
 * generated gptd/gptd.pb-c.h).
 *
 * Growing the ABI. Every table a plugin hands the host (GptdPluginDescriptor,
 * GptdStageType, GptdParamSpec, GptdPadSpec) ends with reserved room, and arrays of
 * them end with an entry whose name is NULL; their sizes never change within a
 * major version. The rules:
 *
 *  - A new member takes the first reserved slot(s) of its table (the reserved
 *    array shrinks by as much), and GPTD_PLUGIN_ABI_MINOR grows by one. A zero
 *    value of the new member must mean what the host did before it existed.
 *  - The host reads a member added in minor version N only from a plugin whose
 *    descriptor says abi_minor >= N; for older plugins it takes the zero meaning,
 *    whatever their reserved room holds.
 *  - New host functions are added (never changed) and also grow the minor version;
 *    the library exports them under the symbol version of the release (GPTD_1,
 *    then GPTD_1.1, ...), so a plugin that uses one does not load into an older host.
 *  - Anything else (a member's type, meaning or place; a removed function; a new
 *    table size) is a new GPTD_PLUGIN_ABI_MAJOR, and the library's soname changes.
 *
 * The loader refuses a plugin built for another major version, or for a newer minor
 * version than its own, and names the file and both versions. `make check` compares
 * the library with the ABI recorded in abi/libgptd.abi (see abi/README.md). */
#define GPTD_PLUGIN_ABI_MAJOR 2
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
