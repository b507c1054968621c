/* daemon/paths.c: the default control socket and state directory (see paths.h). */
#ifdef HAVE_CONFIG_H
#include "config.h"
#endif

#include "paths.h"

#include <unistd.h>

char *
gptd__default_socket_path (void)
{
  const char *env = g_getenv ("GPTD_SOCKET");
  if (env != NULL && *env)
    return g_strdup (env);
  if (geteuid () == 0)
    return g_strdup ("/run/gptd/gptd.sock");
  /* g_get_user_runtime_dir() falls back to the cache directory when
   * XDG_RUNTIME_DIR is unset. */
  return g_build_filename (g_get_user_runtime_dir (), "gptd", "gptd.sock", NULL);
}

char *
gptd__client_socket_path (void)
{
  char *own = gptd__default_socket_path ();
  if (g_getenv ("GPTD_SOCKET") != NULL && *g_getenv ("GPTD_SOCKET"))
    return own;
  if (!g_file_test (own, G_FILE_TEST_EXISTS)
      && g_file_test ("/run/gptd/gptd.sock", G_FILE_TEST_EXISTS))
    {
      g_free (own);
      return g_strdup ("/run/gptd/gptd.sock");
    }
  return own;
}

char *
gptd__default_state_dir (void)
{
  const char *env = g_getenv ("GPTD_STATE_DIR");
  if (env != NULL && *env)
    return g_strdup (env);
  if (geteuid () == 0)
    return g_strdup ("/var/lib/gptd");
  const char *xdg = g_getenv ("XDG_STATE_HOME");
  if (xdg != NULL && g_path_is_absolute (xdg))
    return g_build_filename (xdg, "gptd", NULL);
  return g_build_filename (g_get_home_dir (), ".local", "state", "gptd", NULL);
}
