/* daemon/remove-tree.h: deleting a directory tree the daemon does not trust
 * (a run directory, which the run's owner writes into) without following a
 * symbolic link out of it.
 */
#pragma once

#include <glib.h>

G_BEGIN_DECLS

/**
 * gptd__remove_tree:
 * @path: a directory
 * @error: return location for a #GError
 *
 * Deletes @path and everything below it. Every directory is opened relative to
 * its parent's descriptor with O_NOFOLLOW, and entries are removed with
 * unlinkat(): a symbolic link anywhere in the tree (or @path itself being one)
 * is removed as a link, never followed, so nothing outside the tree is touched
 * however its contents change meanwhile. A missing @path is not an error.
 *
 * Returns: %TRUE when the tree is gone; %FALSE with @error naming the file that
 *   could not be removed (what could be is removed)
 */
gboolean gptd__remove_tree (const char *path, GError **error);

G_END_DECLS
