/* ranks.c: the mpirun command line that starts a gptd command as a rank group
 * (see ranks.h). The mpirun is the one configure found (GPTD_MPIRUN). */
#include "config.h"

#include "ranks.h"

#include <unistd.h>

#include <gptd/dist.h>

char **
gptd__ranks_mpirun_argv (guint ranks, const char *hosts, const char *const *command,
                         GError **error)
{
#ifdef HAVE_MPI
  g_autoptr (GPtrArray) args = g_ptr_array_new_with_free_func (g_free);
  g_ptr_array_add (args, g_strdup (GPTD_MPIRUN));
  g_ptr_array_add (args, g_strdup ("-np"));
  g_ptr_array_add (args, g_strdup_printf ("%u", ranks));
  if (hosts != NULL && *hosts != '\0')
    {
      g_ptr_array_add (args, g_strdup ("--host"));
      g_ptr_array_add (args, g_strdup (hosts));
    }
  /* mpirun binds a rank to one core by default: gptd's threads need them all. */
  g_ptr_array_add (args, g_strdup ("--bind-to"));
  g_ptr_array_add (args, g_strdup ("none"));
  if (geteuid () == 0)
    g_ptr_array_add (args, g_strdup ("--allow-run-as-root"));
  const char *extra = g_getenv ("GPTD_MPIRUN_ARGS");
  if (extra != NULL && *extra != '\0')
    {
      g_auto (GStrv) words = NULL;
      if (!g_shell_parse_argv (extra, NULL, &words, error))
        {
          g_prefix_error (error, "GPTD_MPIRUN_ARGS: ");
          return NULL;
        }
      for (guint i = 0; words[i]; i++)
        g_ptr_array_add (args, g_strdup (words[i]));
    }
  for (guint i = 0; command[i]; i++)
    g_ptr_array_add (args, g_strdup (command[i]));
  g_ptr_array_add (args, NULL);
  return (char **) g_ptr_array_free (g_steal_pointer (&args), FALSE);
#else
  (void) hosts;
  (void) command;
  g_set_error (error, GPTD_DIST_ERROR, GPTD_DIST_ERROR_UNSUPPORTED,
               "%u ranks need a gptd built with MPI (configure --with-mpi, with Open "
               "MPI's libopenmpi-dev); this one runs a pipeline in one process only", ranks);
  return NULL;
#endif
}
