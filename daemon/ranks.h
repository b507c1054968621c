/* ranks.h: the mpirun command line that starts a gptd command as a rank group
 * (data-parallel training), for gptd run --ranks / ranks= and the daemon's run
 * workers. */
#pragma once

#include <glib.h>

G_BEGIN_DECLS

/* mpirun's argv (NULL-terminated) for @ranks processes of @command (argv of the
 * program to run, NULL-terminated) on @hosts (mpirun's --host list, or NULL):
 * threads unbound (each rank runs its own threads), --allow-run-as-root for
 * root, and the words of $GPTD_MPIRUN_ARGS last (transports, --oversubscribe,
 * ...). NULL with @error when this gptd has no MPI. */
char **gptd__ranks_mpirun_argv (guint ranks, const char *hosts,
                                const char *const *command, GError **error);

G_END_DECLS
