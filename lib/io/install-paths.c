/* install-paths.c: gptd's plugin, data and pipeline directories, from the build
 * tree or the installed prefix (see install-paths.h).
 *
 * Relocation: the configured directories all lie below the configured prefix.
 * When the running executable sits in a bin/ or libexec/ directory whose parent is
 * not that prefix (a `make install DESTDIR=...` tree, a copied installation), the
 * prefix is replaced by that parent wherever the relocated directory exists. */
#include "config.h"

#include <string.h>

#include "io/install-paths.h"

#ifndef GPTD_PREFIX
#define GPTD_PREFIX "/usr/local"
#endif
#ifndef GPTD_PLUGINDIR
#define GPTD_PLUGINDIR GPTD_PREFIX "/lib/gptd/plugins"
#endif
#ifndef GPTD_DATADIR
#define GPTD_DATADIR GPTD_PREFIX "/share/gptd"
#endif

static char *
executable (void)
{
  return g_file_read_link ("/proc/self/exe", NULL);
}

gboolean
gptd__install_running_uninstalled (void)
{
#ifdef GPTD_ABS_BUILDDIR
  g_autofree char *exe = executable ();
  return exe != NULL && g_str_has_prefix (exe, GPTD_ABS_BUILDDIR "/");
#else
  return FALSE;
#endif
}

/* The prefix the running executable is installed under, when it differs from the
 * configured one; NULL otherwise. */
static char *
moved_prefix (void)
{
  g_autofree char *exe = executable ();
  if (exe == NULL)
    return NULL;
  g_autofree char *dir = g_path_get_dirname (exe);
  g_autofree char *base = g_path_get_basename (dir);
  if (strcmp (base, "bin") != 0 && strcmp (base, "sbin") != 0 && strcmp (base, "libexec") != 0)
    return NULL;
  char *prefix = g_path_get_dirname (dir);
  if (strcmp (prefix, GPTD_PREFIX) == 0)
    {
      g_free (prefix);
      return NULL;
    }
  return prefix;
}

/* @configured moved under the running executable's prefix, when it lies below the
 * configured prefix and the moved directory exists; else @configured. */
static char *
relocate (const char *configured)
{
  gsize n = strlen (GPTD_PREFIX);
  if (strncmp (configured, GPTD_PREFIX, n) != 0 || (configured[n] != '/' && configured[n]))
    return g_strdup (configured);
  g_autofree char *prefix = moved_prefix ();
  if (prefix == NULL)
    return g_strdup (configured);
  g_autofree char *moved = g_strconcat (prefix, configured + n, NULL);
  if (g_file_test (moved, G_FILE_TEST_IS_DIR))
    return g_steal_pointer (&moved);
  return g_strdup (configured);
}

const char *
gptd__install_plugindir (void)
{
  static char *dir;
  static gsize once;
  if (g_once_init_enter (&once))
    {
      dir = relocate (GPTD_PLUGINDIR);
      g_once_init_leave (&once, 1);
    }
  return dir;
}

const char *
gptd__install_datadir (void)
{
  static char *dir;
  static gsize once;
  if (g_once_init_enter (&once))
    {
      dir = relocate (GPTD_DATADIR);
      g_once_init_leave (&once, 1);
    }
  return dir;
}

const char *const *
gptd__install_pipeline_dirs (void)
{
  static char **dirs;
  static gsize once;
  if (g_once_init_enter (&once))
    {
      char **d = g_new0 (char *, 3);
#ifdef GPTD_ABS_SRCDIR
      if (gptd__install_running_uninstalled ())
        d[0] = g_canonicalize_filename (GPTD_ABS_SRCDIR "/pipelines", NULL);
      else
#endif
        d[0] = g_build_filename (gptd__install_datadir (), "pipelines", NULL);
      d[1] = g_get_current_dir ();
      dirs = d;
      g_once_init_leave (&once, 1);
    }
  return (const char *const *) dirs;
}

char *
gptd__install_find_pipeline (const char *arg, GError **error)
{
  if (g_file_test (arg, G_FILE_TEST_EXISTS) || strchr (arg, '/') != NULL || *arg == '\0')
    {
      if (!g_file_test (arg, G_FILE_TEST_EXISTS))
        {
          g_set_error (error, G_FILE_ERROR, G_FILE_ERROR_NOENT,
                       "%s: no such pipeline file", arg);
          return NULL;
        }
      return g_strdup (arg);
    }
  const char *const *dirs = gptd__install_pipeline_dirs ();
  g_autofree char *with_ext = g_str_has_suffix (arg, ".pipeline")
                                ? g_strdup (arg) : g_strconcat (arg, ".pipeline", NULL);
  for (guint i = 0; dirs[i]; i++)
    {
      g_autofree char *p = g_build_filename (dirs[i], with_ext, NULL);
      if (g_file_test (p, G_FILE_TEST_IS_REGULAR))
        return g_steal_pointer (&p);
    }
  g_autofree char *where = g_strjoinv (", ", (char **) dirs);
  g_set_error (error, G_FILE_ERROR, G_FILE_ERROR_NOENT,
               "no pipeline file %s and no pipeline named %s (looked for %s in %s)",
               arg, arg, with_ext, where);
  return NULL;
}
