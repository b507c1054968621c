/* lib/io/atomic-file.c: atomic, durable file replacement (temporary file in the
 * same directory, fsync, rename, fsync of the directory), with a fault
 * injection hook that tests use to interrupt a write at any step.
 */
#ifdef HAVE_CONFIG_H
#include "config.h"
#endif
#ifndef _GNU_SOURCE
#define _GNU_SOURCE 1
#endif

#include <gptd/atomic-file.h>

#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <glib/gstdio.h>

struct _GptdAtomicFile {
  char   *path;       /* final path */
  char   *tmp_path;   /* temporary file beside it */
  int     fd;         /* -1 once closed */
  guint64 offset;     /* bytes written */
  gboolean failed;    /* a step failed; the temporary file is gone (or kept after a simulated crash) */
  gboolean crashed;   /* a simulated crash: leave everything as it is */
  gboolean committed; /* renamed over the final path */
};

G_LOCK_DEFINE_STATIC (fault);
static GptdAtomicFileFaultFunc fault_func;
static gpointer fault_data;

void
gptd_atomic_file_set_fault_func (GptdAtomicFileFaultFunc func,
                                 gpointer                user_data)
{
  G_LOCK (fault);
  fault_func = func;
  fault_data = user_data;
  G_UNLOCK (fault);
}

/* Asks the fault hook about a step; returns 0, an errno value or
 * GPTD_ATOMIC_FILE_FAULT_CRASH. */
static int
fault_check (GptdAtomicFileOp op,
             const char      *path,
             guint64          offset,
             size_t          *length)
{
  GptdAtomicFileFaultFunc func;
  gpointer data;

  G_LOCK (fault);
  func = fault_func;
  data = fault_data;
  G_UNLOCK (fault);

  if (func == NULL)
    return 0;
  return func (op, path, offset, length, data);
}

static void
set_errno_error (GError    **error,
                 int         errsv,
                 const char *what,
                 const char *path)
{
  g_set_error (error, G_FILE_ERROR, g_file_error_from_errno (errsv),
               "%s “%s”: %s", what, path, g_strerror (errsv));
}

/* Closes and removes the temporary file after a failure (unless a crash is
 * being simulated, in which case it stays as a dead process would leave it). */
static void
discard_tmp (GptdAtomicFile *file)
{
  file->failed = TRUE;
  if (file->crashed)
    return;
  if (file->fd >= 0)
    {
      close (file->fd);
      file->fd = -1;
    }
  if (file->tmp_path != NULL && !file->committed)
    g_unlink (file->tmp_path);
}

/* Handles a fault reported by the hook; returns the errno to fail with. */
static int
fault_apply (GptdAtomicFile *file, int fault)
{
  if (fault == GPTD_ATOMIC_FILE_FAULT_CRASH)
    {
      file->crashed = TRUE;
      return EIO;
    }
  return fault;
}

gboolean
gptd_file_check_replaceable (const char *path, GError **error)
{
  g_return_val_if_fail (path != NULL, FALSE);

  struct stat st;
  if (lstat (path, &st) != 0)
    {
      int errsv = errno;
      if (errsv == ENOENT)
        return TRUE;
      set_errno_error (error, errsv, "Cannot examine", path);
      return FALSE;
    }
  if (S_ISREG (st.st_mode))
    return TRUE;
  const char *what = S_ISDIR (st.st_mode) ? "a directory"
                   : S_ISLNK (st.st_mode) ? "a symbolic link"
                   : S_ISCHR (st.st_mode) ? "a character device"
                   : S_ISBLK (st.st_mode) ? "a block device"
                   : S_ISFIFO (st.st_mode) ? "a FIFO"
                   : S_ISSOCK (st.st_mode) ? "a socket" : "not a regular file";
  g_set_error (error, G_FILE_ERROR,
               S_ISDIR (st.st_mode) ? G_FILE_ERROR_ISDIR : G_FILE_ERROR_FAILED,
               "Refusing to replace “%s”: it is %s, and only a regular file is "
               "replaced", path, what);
  return FALSE;
}

GptdAtomicFile *
gptd_atomic_file_open (const char *path, GError **error)
{
  g_return_val_if_fail (path != NULL && *path != '\0', NULL);
  g_return_val_if_fail (error == NULL || *error == NULL, NULL);

  if (!gptd_file_check_replaceable (path, error))
    return NULL;

  g_autofree char *dir = g_path_get_dirname (path);
  g_autofree char *base = g_path_get_basename (path);
  g_autofree char *tmpl_name = g_strdup_printf (".%s.tmp-XXXXXX", base);
  g_autofree char *tmp_path = g_build_filename (dir, tmpl_name, NULL);

  int fault = fault_check (GPTD_ATOMIC_FILE_OP_CREATE, path, 0, NULL);
  if (fault != 0)
    {
      set_errno_error (error, fault == GPTD_ATOMIC_FILE_FAULT_CRASH ? EIO : fault,
                       "Cannot create a temporary file to write", path);
      return NULL;
    }

  int fd = g_mkstemp_full (tmp_path, O_RDWR | O_CLOEXEC, 0666);
  if (fd < 0)
    {
      int errsv = errno;
      set_errno_error (error, errsv, "Cannot create a temporary file to write", path);
      return NULL;
    }

  GptdAtomicFile *file = g_new0 (GptdAtomicFile, 1);
  file->path = g_strdup (path);
  file->tmp_path = g_steal_pointer (&tmp_path);
  file->fd = fd;
  return file;
}

gboolean
gptd_atomic_file_write (GptdAtomicFile *file,
                        const void     *data,
                        size_t          length,
                        GError        **error)
{
  g_return_val_if_fail (file != NULL, FALSE);
  g_return_val_if_fail (data != NULL || length == 0, FALSE);
  g_return_val_if_fail (!file->committed, FALSE);
  g_return_val_if_fail (error == NULL || *error == NULL, FALSE);

  if (file->failed)
    {
      g_set_error (error, G_FILE_ERROR, G_FILE_ERROR_FAILED,
                   "Cannot write “%s”: an earlier write failed", file->path);
      return FALSE;
    }

  const char *p = data;
  while (length > 0)
    {
      /* Large writes go in pieces so that a write never exceeds what one
       * write() call may transfer, and so the hook sees realistic chunks. */
      size_t chunk = MIN (length, (size_t) 1 << 30);
      size_t allowed = chunk;
      int fault = fault_check (GPTD_ATOMIC_FILE_OP_WRITE, file->path, file->offset, &allowed);
      if (allowed > chunk)
        allowed = chunk;
      if (fault != 0)
        chunk = allowed;

      size_t done = 0;
      while (done < chunk)
        {
          ssize_t n = write (file->fd, p + done, chunk - done);
          if (n < 0)
            {
              int errsv = errno;
              if (errsv == EINTR)
                continue;
              discard_tmp (file);
              set_errno_error (error, errsv, "Cannot write", file->path);
              return FALSE;
            }
          done += (size_t) n;
          file->offset += (guint64) n;
        }

      if (fault != 0)
        {
          int errsv = fault_apply (file, fault);
          discard_tmp (file);
          set_errno_error (error, errsv, "Cannot write", file->path);
          return FALSE;
        }

      p += chunk;
      length -= chunk;
    }
  return TRUE;
}

guint64
gptd_atomic_file_get_offset (const GptdAtomicFile *file)
{
  g_return_val_if_fail (file != NULL, 0);
  return file->offset;
}

const char *
gptd_atomic_file_get_path (const GptdAtomicFile *file)
{
  g_return_val_if_fail (file != NULL, NULL);
  return file->path;
}

gboolean
gptd_fsync_directory (const char *path, GError **error)
{
  g_return_val_if_fail (path != NULL, FALSE);

  int fd = open (path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0)
    {
      int errsv = errno;
      set_errno_error (error, errsv, "Cannot open directory", path);
      return FALSE;
    }
  int rc;
  do
    rc = fsync (fd);
  while (rc < 0 && errno == EINTR);
  int errsv = errno;
  close (fd);
  if (rc < 0 && errsv != EINVAL && errsv != ENOTSUP)
    {
      set_errno_error (error, errsv, "Cannot flush directory", path);
      return FALSE;
    }
  return TRUE;
}

gboolean
gptd_atomic_file_commit (GptdAtomicFile *file, GError **error)
{
  g_return_val_if_fail (file != NULL, FALSE);
  g_return_val_if_fail (!file->committed, FALSE);
  g_return_val_if_fail (error == NULL || *error == NULL, FALSE);

  if (file->failed)
    {
      g_set_error (error, G_FILE_ERROR, G_FILE_ERROR_FAILED,
                   "Cannot commit “%s”: an earlier write failed", file->path);
      return FALSE;
    }

  /* 1. Make the content durable before it becomes visible. */
  int fault = fault_check (GPTD_ATOMIC_FILE_OP_FSYNC, file->path, file->offset, NULL);
  int rc = 0;
  int errsv = 0;
  if (fault != 0)
    {
      rc = -1;
      errsv = fault_apply (file, fault);
    }
  else
    {
      do
        rc = fsync (file->fd);
      while (rc < 0 && errno == EINTR);
      errsv = errno;
    }
  if (rc < 0)
    {
      discard_tmp (file);
      set_errno_error (error, errsv, "Cannot flush to disk", file->path);
      return FALSE;
    }
  if (close (file->fd) < 0 && errno != EINTR)
    {
      errsv = errno;
      file->fd = -1;
      discard_tmp (file);
      set_errno_error (error, errsv, "Cannot close", file->path);
      return FALSE;
    }
  file->fd = -1;

  /* 2. Replace the final path in one step (still a regular file, or none). */
  if (!gptd_file_check_replaceable (file->path, error))
    {
      discard_tmp (file);
      return FALSE;
    }
  fault = fault_check (GPTD_ATOMIC_FILE_OP_RENAME, file->path, file->offset, NULL);
  if (fault != 0)
    {
      rc = -1;
      errsv = fault_apply (file, fault);
    }
  else
    {
      rc = g_rename (file->tmp_path, file->path);
      errsv = errno;
    }
  if (rc < 0)
    {
      discard_tmp (file);
      set_errno_error (error, errsv, "Cannot rename the temporary file over", file->path);
      return FALSE;
    }
  file->committed = TRUE;

  /* 3. Make the rename durable. */
  fault = fault_check (GPTD_ATOMIC_FILE_OP_FSYNC_DIR, file->path, file->offset, NULL);
  if (fault != 0)
    {
      errsv = fault_apply (file, fault);
      file->failed = TRUE;
      set_errno_error (error, errsv, "Cannot flush the directory of", file->path);
      return FALSE;
    }
  g_autofree char *dir = g_path_get_dirname (file->path);
  if (!gptd_fsync_directory (dir, error))
    {
      file->failed = TRUE;
      return FALSE;
    }
  return TRUE;
}

void
gptd_atomic_file_free (GptdAtomicFile *file)
{
  if (file == NULL)
    return;
  if (file->fd >= 0)
    close (file->fd);
  /* An uncommitted write is aborted; after a failure the temporary file is
   * already gone, and after a simulated crash it stays. */
  if (!file->committed && !file->failed && !file->crashed)
    g_unlink (file->tmp_path);
  g_free (file->path);
  g_free (file->tmp_path);
  g_free (file);
}

gboolean
gptd_atomic_file_set_contents (const char *path,
                               const void *data,
                               size_t      length,
                               GError    **error)
{
  g_autoptr (GptdAtomicFile) file = gptd_atomic_file_open (path, error);
  if (file == NULL)
    return FALSE;
  if (!gptd_atomic_file_write (file, data, length, error))
    return FALSE;
  return gptd_atomic_file_commit (file, error);
}

gboolean
gptd_atomic_file_copy (const char *source,
                       const char *dest,
                       GError    **error)
{
  g_return_val_if_fail (source != NULL, FALSE);
  g_return_val_if_fail (dest != NULL, FALSE);

  int in = open (source, O_RDONLY | O_CLOEXEC);
  if (in < 0)
    {
      int errsv = errno;
      set_errno_error (error, errsv, "Cannot open", source);
      return FALSE;
    }

  g_autoptr (GptdAtomicFile) file = gptd_atomic_file_open (dest, error);
  if (file == NULL)
    {
      close (in);
      return FALSE;
    }

  g_autofree char *buf = g_malloc (1 << 20);
  for (;;)
    {
      ssize_t n = read (in, buf, 1 << 20);
      if (n < 0)
        {
          int errsv = errno;
          if (errsv == EINTR)
            continue;
          close (in);
          set_errno_error (error, errsv, "Cannot read", source);
          return FALSE;
        }
      if (n == 0)
        break;
      if (!gptd_atomic_file_write (file, buf, (size_t) n, error))
        {
          close (in);
          return FALSE;
        }
    }
  close (in);
  return gptd_atomic_file_commit (file, error);
}
