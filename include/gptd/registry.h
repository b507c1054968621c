/* gptd/registry.h: finding and loading plugins; the table of stage types.
 *
 * A GptdRegistry scans the directories named in GPTD_PLUGIN_PATH (colon-separated,
 * searched in order) and then the installed plugin directory (GPTD_PLUGINDIR). Each
 * `*.so` found is opened with GModule (local binding) and its descriptor symbol
 * (GPTD_PLUGIN_SYMBOL, see plugin.h) is checked: a plugin built for another ABI major
 * version, for a newer minor version, without a descriptor or with a malformed one is
 * skipped with a warning that names the file. The registry does not log the warnings
 * itself (it is library code): it keeps them in a list that the caller prints, logs
 * or forwards to a client (gptd_registry_get_warnings()). Loaded plugins stay
 * resident for the life of the process.
 *
 * When two plugins register the same stage type name, the first one found wins and a
 * warning names both files.
 *
 * Scanning skips the files listed in GPTD_PLUGIN_EXCLUDE (colon-separated paths,
 * compared after resolving symbolic links, `.` and `..`), with a warning for each.
 * The daemon adds to it the plugins that crash while being loaded, so that neither
 * it nor its workers open them (see `gptd --probe-plugins`).
 *
 * The registry also converts its stage types to the control protocol's
 * Gptd__PluginList / Gptd__StageTypeInfo messages, and formats those messages as text
 * (the output of `gptd plugins` and `gptctl plugins`), so that the daemon's client
 * prints exactly what the one-shot command prints.
 */
#ifndef GPTD_REGISTRY_H
#define GPTD_REGISTRY_H

#include <glib.h>
#include <gptd/plugin.h>
#include <gptd.pb-c.h>

G_BEGIN_DECLS

/* The error domain of the plugin loader. */
#define GPTD_REGISTRY_ERROR (gptd_registry_error_quark ())
GQuark gptd_registry_error_quark (void);

/**
 * GptdRegistryError:
 * @GPTD_REGISTRY_ERROR_OPEN: the shared object could not be opened.
 * @GPTD_REGISTRY_ERROR_NO_DESCRIPTOR: the file exports no GPTD_PLUGIN_SYMBOL.
 * @GPTD_REGISTRY_ERROR_ABI: the plugin was built for an incompatible ABI.
 * @GPTD_REGISTRY_ERROR_INVALID: the descriptor or a stage type table is malformed.
 * @GPTD_REGISTRY_ERROR_DUPLICATE: a stage type name is already registered.
 * @GPTD_REGISTRY_ERROR_NOT_FOUND: no stage type has the name asked for.
 */
typedef enum {
  GPTD_REGISTRY_ERROR_OPEN,
  GPTD_REGISTRY_ERROR_NO_DESCRIPTOR,
  GPTD_REGISTRY_ERROR_ABI,
  GPTD_REGISTRY_ERROR_INVALID,
  GPTD_REGISTRY_ERROR_DUPLICATE,
  GPTD_REGISTRY_ERROR_NOT_FOUND,
} GptdRegistryError;

/**
 * GptdRegistry:
 *
 * The loaded plugins and the stage types they register; opaque. A registry is filled
 * from one thread (scan, add) and may then be read from any number of threads.
 */
typedef struct _GptdRegistry GptdRegistry;

/* The environment variable that lists plugin files scans must not open. */
#define GPTD_PLUGIN_EXCLUDE_ENV "GPTD_PLUGIN_EXCLUDE"

/**
 * GptdRegistryFileEvent:
 * @GPTD_REGISTRY_FILE_LOADING: a scan is about to open the file.
 * @GPTD_REGISTRY_FILE_LOADED: the file was loaded and its stage types registered.
 * @GPTD_REGISTRY_FILE_FAILED: the file was skipped; the error says why (it is the
 *   text that also goes to the warnings).
 */
typedef enum {
  GPTD_REGISTRY_FILE_LOADING,
  GPTD_REGISTRY_FILE_LOADED,
  GPTD_REGISTRY_FILE_FAILED,
} GptdRegistryFileEvent;

/**
 * GptdRegistryFileFunc:
 * @path: the plugin file, as found on the search path (directory + name)
 * @event: what happens to it
 * @error: (nullable): why it was skipped, for %GPTD_REGISTRY_FILE_FAILED
 * @user_data: the data given to gptd_registry_set_file_func()
 *
 * Told about each plugin file a scan opens, before it is opened and after.
 */
typedef void (*GptdRegistryFileFunc) (const char *path, GptdRegistryFileEvent event,
                                      const GError *error, gpointer user_data);

/**
 * gptd_registry_new:
 *
 * Returns: (transfer full): an empty registry. Fill it with gptd_registry_scan().
 */
GptdRegistry *gptd_registry_new (void);

/**
 * gptd_registry_free:
 * @registry: (nullable): a registry
 *
 * Frees the registry. The plugin modules themselves stay loaded (their code may
 * still be referenced by messages or threads).
 */
void gptd_registry_free (GptdRegistry *registry);
G_DEFINE_AUTOPTR_CLEANUP_FUNC (GptdRegistry, gptd_registry_free)

/**
 * gptd_registry_scan:
 * @registry: a registry
 * @error: return location for a #GError
 *
 * Loads every plugin in the directories of GPTD_PLUGIN_PATH (in order), then in the
 * compiled-in plugin directory GPTD_PLUGINDIR. Files are visited in name order within
 * a directory; a file met again (by its real path) is not opened again. Directories
 * that do not exist are ignored. A plugin that fails to load, or that
 * GPTD_PLUGIN_EXCLUDE lists, is skipped with a warning (see
 * gptd_registry_get_warnings()); it is not an error.
 *
 * Returns: %FALSE with @error set only when scanning itself failed (a directory that
 * exists cannot be read); %TRUE otherwise, even when no plugin was found.
 */
gboolean gptd_registry_scan (GptdRegistry *registry, GError **error);

/**
 * gptd_registry_scan_dir:
 * @registry: a registry
 * @dir: a directory
 * @error: return location for a #GError
 *
 * Loads every `*.so` in @dir as gptd_registry_scan() does for each directory of its
 * search path. A missing directory is not an error.
 *
 * Returns: %FALSE with @error set when @dir exists but cannot be read.
 */
gboolean gptd_registry_scan_dir (GptdRegistry *registry, const char *dir, GError **error);

/**
 * gptd_registry_set_file_func:
 * @registry: a registry
 * @func: (nullable): the function, or %NULL for none
 * @user_data: passed to @func
 *
 * Makes gptd_registry_scan() and gptd_registry_scan_dir() call @func for each file
 * they open: %GPTD_REGISTRY_FILE_LOADING just before opening it (its constructors
 * and descriptor run then), then %GPTD_REGISTRY_FILE_LOADED or
 * %GPTD_REGISTRY_FILE_FAILED. Files the scan does not open (already loaded or
 * skipped, or listed in GPTD_PLUGIN_EXCLUDE) are not reported. When a process dies
 * while loading plugins, the last file reported as loading without an outcome is
 * the one that killed it; `gptd --probe-plugins` prints these events for the daemon.
 */
void gptd_registry_set_file_func (GptdRegistry *registry, GptdRegistryFileFunc func,
                                  gpointer user_data);

/**
 * gptd_registry_load_file:
 * @registry: a registry
 * @path: a plugin shared object
 * @error: return location for a #GError
 *
 * Loads one plugin. On failure the same text that gptd_registry_scan() would add to
 * the warnings is returned in @error (and is *not* added to the warnings).
 * GPTD_PLUGIN_EXCLUDE does not apply: it only filters what a scan finds.
 *
 * Returns: %TRUE when the plugin was loaded and its stage types registered (stage
 * types whose names were already taken are skipped with a warning).
 */
gboolean gptd_registry_load_file (GptdRegistry *registry, const char *path, GError **error);

/**
 * gptd_registry_add_descriptor:
 * @registry: a registry
 * @descriptor: a plugin descriptor linked into the program
 * @origin: what to show as the plugin's file, e.g. "(built-in)"
 * @error: return location for a #GError
 *
 * Registers the stage types of a descriptor that is not in a shared object (a
 * program's own stages, or stages defined by a test). The descriptor is checked as a
 * loaded plugin's would be and must outlive the registry.
 *
 * Returns: %FALSE with @error when the descriptor is rejected.
 */
gboolean gptd_registry_add_descriptor (GptdRegistry *registry,
                                       const GptdPluginDescriptor *descriptor,
                                       const char *origin, GError **error);

/**
 * gptd_registry_lookup:
 * @registry: a registry
 * @type_name: a stage type name, e.g. "text-source"
 *
 * Returns: (transfer none) (nullable): the stage type, or %NULL when none has that name.
 */
const GptdStageType *gptd_registry_lookup (GptdRegistry *registry, const char *type_name);

/**
 * gptd_registry_lookup_plugin:
 * @registry: a registry
 * @type_name: a stage type name
 * @path: (out) (optional) (transfer none): the file the plugin was loaded from
 *
 * Returns: (transfer none) (nullable): the descriptor of the plugin that registered
 * @type_name, or %NULL.
 */
const GptdPluginDescriptor *gptd_registry_lookup_plugin (GptdRegistry *registry,
                                                         const char *type_name,
                                                         const char **path);

/**
 * gptd_registry_list:
 * @registry: a registry
 *
 * Returns: (transfer container) (element-type const GptdStageType): every registered
 * stage type, sorted by name. Free the array with g_ptr_array_unref().
 */
GPtrArray *gptd_registry_list (GptdRegistry *registry);

/**
 * gptd_registry_get_warnings:
 * @registry: a registry
 *
 * Returns: (transfer none) (element-type utf8): one message per plugin file skipped
 * or stage type ignored since the registry was created, each naming the file and
 * the reason.
 */
GPtrArray *gptd_registry_get_warnings (GptdRegistry *registry);

/**
 * gptd_registry_suggest:
 * @registry: a registry
 * @type_name: an unknown stage type name
 *
 * Returns: (transfer none) (nullable): the registered stage type name closest to
 * @type_name (edit distance), when one is close enough to be a likely typo.
 */
const char *gptd_registry_suggest (GptdRegistry *registry, const char *type_name);

/* ---- Control-protocol form ---------------------------------------------- */

/**
 * gptd_registry_describe:
 * @registry: a registry
 * @type_name: a stage type name
 * @error: return location for a #GError (GPTD_REGISTRY_ERROR_NOT_FOUND, with the
 *   closest name when there is one)
 *
 * Returns: (transfer full): everything `gptd plugins TYPE` shows about the stage type.
 * Free with gptd_stage_type_info_free().
 */
Gptd__StageTypeInfo *gptd_registry_describe (GptdRegistry *registry, const char *type_name,
                                             GError **error);

/**
 * gptd_registry_to_plugin_list:
 * @registry: a registry
 * @type_name: (nullable): a stage type name, or %NULL for all of them
 * @error: return location for a #GError
 *
 * Builds the answer to a PluginsRequest: every stage type (sorted by name), or only
 * @type_name, and the registry's warnings.
 *
 * Returns: (transfer full): the list; %NULL with @error when @type_name is unknown.
 * Free with gptd_plugin_list_free().
 */
Gptd__PluginList *gptd_registry_to_plugin_list (GptdRegistry *registry,
                                                const char *type_name, GError **error);

/* Frees a message built by gptd_registry_describe() (NULL-safe). */
void gptd_stage_type_info_free (Gptd__StageTypeInfo *info);
/* Frees a message built by gptd_registry_to_plugin_list() (NULL-safe). */
void gptd_plugin_list_free (Gptd__PluginList *list);

/**
 * gptd_plugin_list_format:
 * @list: a plugin list (from the registry, or unpacked from a Response)
 *
 * Formats a list as `gptd plugins` prints it: one line per stage type
 * ("plugin:  type: description"), then the warnings, then a count.
 *
 * Returns: (transfer full): the text, ending in a newline.
 */
char *gptd_plugin_list_format (const Gptd__PluginList *list);

/**
 * gptd_stage_type_info_format:
 * @info: one stage type
 *
 * Formats a stage type as `gptd plugins TYPE` prints it, as gst-inspect does: the
 * plugin (file, version, license), the inputs and outputs with their message types,
 * and each parameter with its type, default, range or choices, and help.
 *
 * Returns: (transfer full): the text, ending in a newline.
 */
char *gptd_stage_type_info_format (const Gptd__StageTypeInfo *info);

/**
 * gptd_param_type_to_string:
 * @type: a parameter type
 *
 * Returns: the name of the type as shown to users: "string", "path", "int",
 * "double", "bool", "enum", "double-list".
 */
const char *gptd_param_type_to_string (GptdParamType type);

/**
 * gptd_levenshtein:
 * @a: a string
 * @b: a string
 *
 * Returns: the edit distance (insertions, deletions, substitutions) between @a and @b,
 * counted in bytes.
 */
guint gptd_levenshtein (const char *a, const char *b);

G_END_DECLS

#endif /* GPTD_REGISTRY_H */
