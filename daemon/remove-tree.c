/* daemon/remove-tree.c: deleting a directory tree without following symbolic
 * links (see remove-tree.h).
 */
#ifdef HAVE_CONFIG_H
#include "config.h"
#endif
#ifndef _GNU_SOURCE
#define _GNU_SOURCE 1
#endif

#include "remove-tree.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* Directories nested deeper than this are not descended into (each level holds
 * a descriptor): the removal fails rather than run out of them. */
#define MAX_DEPTH 64

static gboolean
set_errno_error (GError **error, int err, const char *what, const char *path)
{
  g_set_error (error, G_FILE_ERROR, g_file_error_from_errno (err), "Cannot %s %s: %s", what,
               path, g_strerror (err));
  return FALSE;
}

/* Removes the entry @name of the directory @parent_fd (whose path is
 * @parent_path, for messages). */
static gboolean
remove_at (int parent_fd, const char *parent_path, const char *name, guint depth,
           GError **error)
{
  g_autofree char *path = g_build_filename (parent_path, name, NULL);
  struct stat st;
  if (fstatat (parent_fd, name, &st, AT_SYMLINK_NOFOLLOW) != 0)
    return errno == ENOENT ? TRUE : set_errno_error (error, errno, "examine", path);
  if (!S_ISDIR (st.st_mode))
    {
      if (unlinkat (parent_fd, name, 0) != 0 && errno != ENOENT)
        return set_errno_error (error, errno, "remove", path);
      return TRUE;
    }
  if (depth >= MAX_DEPTH)
    {
      g_set_error (error, G_FILE_ERROR, G_FILE_ERROR_FAILED,
                   "Cannot remove %s: directories nested more than %d deep", path, MAX_DEPTH);
      return FALSE;
    }
  int fd = openat (parent_fd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
  if (fd < 0)
    {
      /* Replaced by a link or a file since the fstatat(): removed as that. */
      if (errno == ELOOP || errno == ENOTDIR)
        {
          if (unlinkat (parent_fd, name, 0) != 0 && errno != ENOENT)
            return set_errno_error (error, errno, "remove", path);
          return TRUE;
        }
      return errno == ENOENT ? TRUE : set_errno_error (error, errno, "open", path);
    }
  DIR *dir = fdopendir (fd);
  if (dir == NULL)
    {
      int saved = errno;
      close (fd);
      return set_errno_error (error, saved, "read", path);
    }
  gboolean ok = TRUE;
  struct dirent *de;
  while (ok && (errno = 0, de = readdir (dir)) != NULL)
    {
      if (strcmp (de->d_name, ".") == 0 || strcmp (de->d_name, "..") == 0)
        continue;
      ok = remove_at (dirfd (dir), path, de->d_name, depth + 1, error);
    }
  if (ok && errno != 0)
    ok = set_errno_error (error, errno, "read", path);
  closedir (dir);
  if (!ok)
    return FALSE;
  if (unlinkat (parent_fd, name, AT_REMOVEDIR) != 0 && errno != ENOENT)
    return set_errno_error (error, errno, "remove", path);
  return TRUE;
}

gboolean
gptd__remove_tree (const char *path, GError **error)
{
  g_return_val_if_fail (path != NULL && *path != '\0', FALSE);
  g_autofree char *parent = g_path_get_dirname (path);
  g_autofree char *name = g_path_get_basename (path);
  int parent_fd = open (parent, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (parent_fd < 0)
    return errno == ENOENT ? TRUE : set_errno_error (error, errno, "open", parent);
  gboolean ok = remove_at (parent_fd, parent, name, 0, error);
  close (parent_fd);
  return ok;
}
