/* registry.c: the plugin loader — finding plugin shared objects on the search path,
 * skipping those listed in GPTD_PLUGIN_EXCLUDE, opening the others with GModule,
 * checking their descriptors (ABI version, fields, stage type tables, parameter
 * defaults) and registering their stage types by name. */
#include "config.h"

#include <stdlib.h>
#include <string.h>

#include <gptd/registry.h>
#include "io/install-paths.h"
#include "pipeline/params-private.h"

typedef struct {
  char *path;                         /* the file, or the origin for built-ins */
  const GptdPluginDescriptor *desc;
} Plugin;

typedef struct {
  const GptdStageType *type;
  Plugin *plugin;
} Entry;

struct _GptdRegistry {
  GPtrArray *plugins;                 /* Plugin* */
  GHashTable *types;                  /* type name -> Entry* */
  GHashTable *files;                  /* canonical paths already loaded */
  GHashTable *failed;                 /* canonical paths skipped while scanning */
  GPtrArray *warnings;                /* char* */
  GptdRegistryFileFunc file_func;     /* told about each file a scan opens */
  gpointer file_func_data;
};

G_DEFINE_QUARK (gptd-registry-error-quark, gptd_registry_error)

static void
plugin_free (gpointer data)
{
  Plugin *p = data;
  g_free (p->path);
  g_free (p);
}

GptdRegistry *
gptd_registry_new (void)
{
  GptdRegistry *r = g_new0 (GptdRegistry, 1);
  r->plugins = g_ptr_array_new_with_free_func (plugin_free);
  r->types = g_hash_table_new_full (g_str_hash, g_str_equal, NULL, g_free);
  r->files = g_hash_table_new_full (g_str_hash, g_str_equal, g_free, NULL);
  r->failed = g_hash_table_new_full (g_str_hash, g_str_equal, g_free, NULL);
  r->warnings = g_ptr_array_new_with_free_func (g_free);
  return r;
}

void
gptd_registry_free (GptdRegistry *registry)
{
  if (registry == NULL)
    return;
  g_hash_table_unref (registry->types);
  g_hash_table_unref (registry->files);
  g_hash_table_unref (registry->failed);
  g_ptr_array_unref (registry->plugins);
  g_ptr_array_unref (registry->warnings);
  g_free (registry);
}

/* ---- Checking descriptors ---------------------------------------------- */

static gboolean
valid_name (const char *name)
{
  if (name == NULL || *name == '\0')
    return FALSE;
  for (const char *c = name; *c; c++)
    if (!g_ascii_isalnum (*c) && *c != '-' && *c != '_')
      return FALSE;
  return TRUE;
}

static gboolean
check_pads (const GptdStageType *t, const GptdPadSpec *pads, const char *what,
            GError **error)
{
  for (guint i = 0; pads && pads[i].name; i++)
    {
      if (!valid_name (pads[i].name) || pads[i].message_type == NULL ||
          *pads[i].message_type == '\0')
        {
          g_set_error (error, GPTD_REGISTRY_ERROR, GPTD_REGISTRY_ERROR_INVALID,
                       "stage type %s: %s %u has no valid name or message type", t->name,
                       what, i);
          return FALSE;
        }
      for (guint j = 0; j < i; j++)
        if (strcmp (pads[i].name, pads[j].name) == 0)
          {
            g_set_error (error, GPTD_REGISTRY_ERROR, GPTD_REGISTRY_ERROR_INVALID,
                         "stage type %s: two %ss are called '%s'", t->name, what,
                         pads[i].name);
            return FALSE;
          }
    }
  return TRUE;
}

static gboolean
check_stage_type (const GptdStageType *t, GError **error)
{
  if (!valid_name (t->name))
    {
      g_set_error (error, GPTD_REGISTRY_ERROR, GPTD_REGISTRY_ERROR_INVALID,
                   "a stage type has no valid name (letters, digits, '-' and '_')");
      return FALSE;
    }
  if (t->create == NULL)
    {
      g_set_error (error, GPTD_REGISTRY_ERROR, GPTD_REGISTRY_ERROR_INVALID,
                   "stage type %s has no create function", t->name);
      return FALSE;
    }
  if (t->inputs && t->inputs[0].name && t->run == NULL && t->process == NULL)
    {
      g_set_error (error, GPTD_REGISTRY_ERROR, GPTD_REGISTRY_ERROR_INVALID,
                   "stage type %s has inputs but neither run nor process", t->name);
      return FALSE;
    }
  if (!check_pads (t, t->inputs, "input", error) || !check_pads (t, t->outputs, "output", error))
    return FALSE;
  for (const GptdParamSpec *p = t->params; p && p->name; p++)
    {
      if (!valid_name (p->name) || strcmp (p->name, "type") == 0 ||
          g_str_has_prefix (p->name, "input"))
        {
          g_set_error (error, GPTD_REGISTRY_ERROR, GPTD_REGISTRY_ERROR_INVALID,
                       "stage type %s: parameter name '%s' is not allowed", t->name,
                       p->name ? p->name : "");
          return FALSE;
        }
      if ((guint) p->type > GPTD_PARAM_DOUBLE_LIST)
        {
          g_set_error (error, GPTD_REGISTRY_ERROR, GPTD_REGISTRY_ERROR_INVALID,
                       "stage type %s: parameter %s has an unknown type %d", t->name,
                       p->name, (int) p->type);
          return FALSE;
        }
      if (p->type == GPTD_PARAM_ENUM && (p->choices == NULL || p->choices[0] == NULL))
        {
          g_set_error (error, GPTD_REGISTRY_ERROR, GPTD_REGISTRY_ERROR_INVALID,
                       "stage type %s: enum parameter %s has no choices", t->name, p->name);
          return FALSE;
        }
      g_autoptr (GError) local = NULL;
      if (p->default_value && !gptd__param_check (p, p->default_value, &local))
        {
          g_set_error (error, GPTD_REGISTRY_ERROR, GPTD_REGISTRY_ERROR_INVALID,
                       "stage type %s: the default of parameter %s is invalid: %s",
                       t->name, p->name, local->message);
          return FALSE;
        }
      for (const GptdParamSpec *q = t->params; q != p; q++)
        if (strcmp (q->name, p->name) == 0)
          {
            g_set_error (error, GPTD_REGISTRY_ERROR, GPTD_REGISTRY_ERROR_INVALID,
                         "stage type %s declares parameter %s twice", t->name, p->name);
            return FALSE;
          }
    }
  return TRUE;
}

static gboolean
check_descriptor (const GptdPluginDescriptor *d, GError **error)
{
  if (d->abi_major == GPTD_PLUGIN_ABI_MAJOR && d->abi_minor > GPTD_PLUGIN_ABI_MINOR)
    {
      g_set_error (error, GPTD_REGISTRY_ERROR, GPTD_REGISTRY_ERROR_ABI,
                   "built for plugin ABI %u.%u, newer than this gptd's %d.%d: it may use "
                   "what this gptd lacks; upgrade gptd, or rebuild the plugin against "
                   "this gptd's SDK", d->abi_major, d->abi_minor, GPTD_PLUGIN_ABI_MAJOR,
                   GPTD_PLUGIN_ABI_MINOR);
      return FALSE;
    }
  if (d->abi_major != GPTD_PLUGIN_ABI_MAJOR)
    {
      g_set_error (error, GPTD_REGISTRY_ERROR, GPTD_REGISTRY_ERROR_ABI,
                   "built for plugin ABI %u.%u, but this gptd provides %d.%d; rebuild "
                   "the plugin against this gptd's SDK",
                   d->abi_major, d->abi_minor, GPTD_PLUGIN_ABI_MAJOR, GPTD_PLUGIN_ABI_MINOR);
      return FALSE;
    }
  if (!valid_name (d->name) || d->version == NULL || d->license == NULL ||
      d->stage_types == NULL)
    {
      g_set_error (error, GPTD_REGISTRY_ERROR, GPTD_REGISTRY_ERROR_INVALID,
                   "the plugin descriptor lacks a valid name, version, license or "
                   "stage type list");
      return FALSE;
    }
  for (guint i = 0; d->stage_types[i]; i++)
    {
      g_autoptr (GError) local = NULL;
      if (!check_stage_type (d->stage_types[i], &local))
        {
          g_set_error (error, GPTD_REGISTRY_ERROR, GPTD_REGISTRY_ERROR_INVALID,
                       "plugin %s: %s", d->name, local->message);
          return FALSE;
        }
    }
  return TRUE;
}

static void
register_plugin (GptdRegistry *r, const GptdPluginDescriptor *desc, const char *path)
{
  Plugin *p = g_new0 (Plugin, 1);
  p->path = g_strdup (path);
  p->desc = desc;
  g_ptr_array_add (r->plugins, p);
  for (guint i = 0; desc->stage_types[i]; i++)
    {
      const GptdStageType *t = desc->stage_types[i];
      Entry *old = g_hash_table_lookup (r->types, t->name);
      if (old)
        {
          g_ptr_array_add (r->warnings,
                           g_strdup_printf ("%s: stage type %s is already provided by %s; "
                                            "the first one found is used",
                                            path, t->name, old->plugin->path));
          continue;
        }
      Entry *e = g_new0 (Entry, 1);
      e->type = t;
      e->plugin = p;
      g_hash_table_insert (r->types, (gpointer) t->name, e);
    }
}

/* ---- Loading ----------------------------------------------------------- */

/* The key a file is known by: its real path when it exists. */
static char *
file_key (const char *path)
{
  g_autofree char *canon = g_canonicalize_filename (path, NULL);
  char *real = realpath (canon, NULL);
  if (real == NULL)
    return g_steal_pointer (&canon);
  char *key = g_strdup (real);
  free (real);
  return key;
}

gboolean
gptd_registry_load_file (GptdRegistry *registry, const char *path, GError **error)
{
  g_return_val_if_fail (registry != NULL && path != NULL, FALSE);

  g_autofree char *key = file_key (path);
  if (g_hash_table_contains (registry->files, key))
    return TRUE;

  GModule *module = g_module_open (path, G_MODULE_BIND_LOCAL | G_MODULE_BIND_LAZY);
  if (module == NULL)
    {
      g_set_error (error, GPTD_REGISTRY_ERROR, GPTD_REGISTRY_ERROR_OPEN,
                   "%s: skipped: cannot be opened as a plugin: %s", path,
                   g_module_error ());
      return FALSE;
    }
  gpointer symbol = NULL;
  if (!g_module_symbol (module, GPTD_PLUGIN_SYMBOL, &symbol) || symbol == NULL)
    {
      g_set_error (error, GPTD_REGISTRY_ERROR, GPTD_REGISTRY_ERROR_NO_DESCRIPTOR,
                   "%s: skipped: not a gptd plugin (it exports no %s)", path,
                   GPTD_PLUGIN_SYMBOL);
      g_module_close (module);
      return FALSE;
    }
  const GptdPluginDescriptor *desc = symbol;
  g_autoptr (GError) local = NULL;
  if (!check_descriptor (desc, &local))
    {
      g_set_error (error, GPTD_REGISTRY_ERROR, local->code, "%s: skipped: %s", path,
                   local->message);
      g_module_close (module);
      return FALSE;
    }
  /* Stage code may be referenced by threads and messages until the process ends. */
  g_module_make_resident (module);
  g_hash_table_add (registry->files, g_strdup (key));
  register_plugin (registry, desc, path);
  return TRUE;
}

gboolean
gptd_registry_add_descriptor (GptdRegistry *registry, const GptdPluginDescriptor *descriptor,
                              const char *origin, GError **error)
{
  g_return_val_if_fail (registry != NULL && descriptor != NULL, FALSE);
  if (origin == NULL)
    origin = "(built-in)";
  g_autoptr (GError) local = NULL;
  if (!check_descriptor (descriptor, &local))
    {
      g_set_error (error, GPTD_REGISTRY_ERROR, local->code, "%s: %s", origin, local->message);
      return FALSE;
    }
  register_plugin (registry, descriptor, origin);
  return TRUE;
}

static int
compare_strings (gconstpointer a, gconstpointer b)
{
  return strcmp (*(char *const *) a, *(char *const *) b);
}

void
gptd_registry_set_file_func (GptdRegistry *registry, GptdRegistryFileFunc func,
                             gpointer user_data)
{
  g_return_if_fail (registry != NULL);
  registry->file_func = func;
  registry->file_func_data = user_data;
}

/* The files GPTD_PLUGIN_EXCLUDE lists, by their keys (see file_key()); NULL when
 * it lists none. */
static GHashTable *
excluded_files (void)
{
  const char *env = g_getenv (GPTD_PLUGIN_EXCLUDE_ENV);
  if (env == NULL || *env == '\0')
    return NULL;
  GHashTable *set = g_hash_table_new_full (g_str_hash, g_str_equal, g_free, NULL);
  g_auto (GStrv) paths = g_strsplit (env, G_SEARCHPATH_SEPARATOR_S, -1);
  for (guint i = 0; paths[i]; i++)
    if (*paths[i])
      g_hash_table_add (set, file_key (paths[i]));
  return set;
}

gboolean
gptd_registry_scan_dir (GptdRegistry *registry, const char *dir, GError **error)
{
  g_return_val_if_fail (registry != NULL && dir != NULL, FALSE);
  if (!g_file_test (dir, G_FILE_TEST_IS_DIR))
    return TRUE;
  GError *local = NULL;
  g_autoptr (GDir) d = g_dir_open (dir, 0, &local);
  if (d == NULL)
    {
      g_propagate_prefixed_error (error, local, "cannot read plugin directory %s: ", dir);
      return FALSE;
    }
  g_autoptr (GPtrArray) names = g_ptr_array_new_with_free_func (g_free);
  const char *name;
  while ((name = g_dir_read_name (d)) != NULL)
    if (g_str_has_suffix (name, "." G_MODULE_SUFFIX))
      g_ptr_array_add (names, g_strdup (name));
  g_ptr_array_sort (names, compare_strings);
  g_autoptr (GHashTable) excluded = excluded_files ();
  for (guint i = 0; i < names->len; i++)
    {
      g_autofree char *path = g_build_filename (dir, names->pdata[i], NULL);
      g_autofree char *key = file_key (path);
      if (g_hash_table_contains (registry->failed, key))
        continue;   /* warned about already */
      if (g_hash_table_contains (registry->files, key))
        continue;   /* loaded already, from another directory of the path */
      if (excluded && g_hash_table_contains (excluded, key))
        {
          g_ptr_array_add (registry->warnings,
                           g_strdup_printf ("%s: skipped: listed in %s", path,
                                            GPTD_PLUGIN_EXCLUDE_ENV));
          g_hash_table_add (registry->failed, g_steal_pointer (&key));
          continue;
        }
      if (registry->file_func)
        registry->file_func (path, GPTD_REGISTRY_FILE_LOADING, NULL,
                             registry->file_func_data);
      g_autoptr (GError) err = NULL;
      if (!gptd_registry_load_file (registry, path, &err))
        {
          if (registry->file_func)
            registry->file_func (path, GPTD_REGISTRY_FILE_FAILED, err,
                                 registry->file_func_data);
          g_ptr_array_add (registry->warnings, g_strdup (err->message));
          g_hash_table_add (registry->failed, g_steal_pointer (&key));
        }
      else if (registry->file_func)
        registry->file_func (path, GPTD_REGISTRY_FILE_LOADED, NULL, registry->file_func_data);
    }
  return TRUE;
}

static gboolean
scan_path (GptdRegistry *registry, const char *path, GError **error)
{
  g_auto (GStrv) dirs = g_strsplit (path, G_SEARCHPATH_SEPARATOR_S, -1);
  for (guint i = 0; dirs[i]; i++)
    if (*dirs[i] && !gptd_registry_scan_dir (registry, dirs[i], error))
      return FALSE;
  return TRUE;
}

gboolean
gptd_registry_scan (GptdRegistry *registry, GError **error)
{
  g_return_val_if_fail (registry != NULL, FALSE);
  const char *env = g_getenv ("GPTD_PLUGIN_PATH");
  if (env && *env)
    {
      if (!scan_path (registry, env, error))
        return FALSE;
    }
#ifdef GPTD_BUILD_PLUGIN_PATH
  /* A program run from the build tree uses the plugins built beside it, not
   * those of an installed gptd. */
  else if (gptd__install_running_uninstalled ())
    return scan_path (registry, GPTD_BUILD_PLUGIN_PATH, error);
#endif
  return gptd_registry_scan_dir (registry, gptd__install_plugindir (), error);
}

/* ---- Queries ----------------------------------------------------------- */

const GptdStageType *
gptd_registry_lookup (GptdRegistry *registry, const char *type_name)
{
  g_return_val_if_fail (registry != NULL && type_name != NULL, NULL);
  Entry *e = g_hash_table_lookup (registry->types, type_name);
  return e ? e->type : NULL;
}

const GptdPluginDescriptor *
gptd_registry_lookup_plugin (GptdRegistry *registry, const char *type_name, const char **path)
{
  g_return_val_if_fail (registry != NULL && type_name != NULL, NULL);
  Entry *e = g_hash_table_lookup (registry->types, type_name);
  if (path)
    *path = e ? e->plugin->path : NULL;
  return e ? e->plugin->desc : NULL;
}

static int
compare_types (gconstpointer a, gconstpointer b)
{
  const GptdStageType *ta = *(const GptdStageType *const *) a;
  const GptdStageType *tb = *(const GptdStageType *const *) b;
  return strcmp (ta->name, tb->name);
}

GPtrArray *
gptd_registry_list (GptdRegistry *registry)
{
  g_return_val_if_fail (registry != NULL, NULL);
  GPtrArray *list = g_ptr_array_new ();
  GHashTableIter it;
  gpointer value;
  g_hash_table_iter_init (&it, registry->types);
  while (g_hash_table_iter_next (&it, NULL, &value))
    g_ptr_array_add (list, (gpointer) ((Entry *) value)->type);
  g_ptr_array_sort (list, compare_types);
  return list;
}

GPtrArray *
gptd_registry_get_warnings (GptdRegistry *registry)
{
  g_return_val_if_fail (registry != NULL, NULL);
  return registry->warnings;
}

guint
gptd_levenshtein (const char *a, const char *b)
{
  gsize la = strlen (a), lb = strlen (b);
  g_autofree guint *row = g_new (guint, lb + 1);
  for (gsize j = 0; j <= lb; j++)
    row[j] = j;
  for (gsize i = 1; i <= la; i++)
    {
      guint diag = row[0];
      row[0] = i;
      for (gsize j = 1; j <= lb; j++)
        {
          guint up = row[j];
          guint cost = a[i - 1] == b[j - 1] ? 0 : 1;
          guint best = MIN (row[j] + 1, row[j - 1] + 1);
          row[j] = MIN (best, diag + cost);
          diag = up;
        }
    }
  return row[lb];
}

const char *
gptd_registry_suggest (GptdRegistry *registry, const char *type_name)
{
  g_return_val_if_fail (registry != NULL && type_name != NULL, NULL);
  const char *best = NULL;
  guint best_d = G_MAXUINT;
  g_autoptr (GPtrArray) list = gptd_registry_list (registry);
  for (guint i = 0; i < list->len; i++)
    {
      const GptdStageType *t = list->pdata[i];
      guint d = gptd_levenshtein (type_name, t->name);
      if (d < best_d)
        best_d = d, best = t->name;
    }
  guint limit = MAX (2, (guint) strlen (type_name) / 3);
  return best_d <= limit ? best : NULL;
}
