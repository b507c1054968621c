/* install-paths.h: where gptd finds its plugins, data and pipelines — in the build
 * tree when the program runs from it, else in the installed prefix, relocated when
 * the installation was moved (installed with DESTDIR, or a prefix copied
 * elsewhere). Private to libgptd and the gptd programs. */
#pragma once

#include <glib.h>

G_BEGIN_DECLS

/* TRUE when the running program was built in gptd's build tree and runs from it
 * (e.g. daemon/gptd straight after `make`). */
gboolean gptd__install_running_uninstalled (void);

/* The installed plugin directory ($(libdir)/gptd/plugins), relocated. */
const char *gptd__install_plugindir (void);

/* The installed data directory ($(datadir)/gptd), relocated. */
const char *gptd__install_datadir (void);

/* The directories searched for a pipeline given by name (`gptd run quickstart`),
 * in order: the source tree's pipelines/ for a program run from the build tree,
 * else the installed $(datadir)/gptd/pipelines; then the current directory.
 * NULL-terminated; owned by the library. */
const char *const *gptd__install_pipeline_dirs (void);

/* Finds the pipeline @arg names: an existing file as it is; else, for a bare
 * name, NAME or NAME.pipeline in gptd__install_pipeline_dirs(). Returns the path,
 * or NULL with an error naming the places searched. */
char *gptd__install_find_pipeline (const char *arg, GError **error);

G_END_DECLS
