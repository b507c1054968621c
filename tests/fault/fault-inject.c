/* tests/fault/fault-inject.c: an LD_PRELOAD shim that makes one chosen file operation
 * fail, for tests of what gptd leaves behind when a disk fills up, a device
 * errs or the process dies at a commit point. It wraps write(), pwrite(),
 * fsync(), fdatasync(), rename() and renameat(), and fflush() of a stream (whose
 * writes glibc makes internally), knowing each descriptor's path from open(),
 * openat(), creat() and fopen() (mkstemp and GLib's temporary files open through
 * them).
 *
 * Configured by the environment:
 *   GPTD_FAULT_PATTERN  an fnmatch() pattern; an operation matches when the path
 *                       of its file (for a rename, either path) matches it, or
 *                       only its last component does (pattern without '/')
 *   GPTD_FAULT_OP       write (write and pwrite), fsync (fsync and fdatasync) or
 *                       rename
 *   GPTD_FAULT_NTH      which matching operation fails, from 1; 0 only counts
 *   GPTD_FAULT_ERRNO    ENOSPC (default) or EIO: the error it fails with
 *   GPTD_FAULT_ACTION   errno (default): fail it; kill: SIGKILL the process
 *                       just before it (a crash at that point)
 *   GPTD_FAULT_LOG      a file that gets one line per matching operation:
 *                       "N OP PATH" and, for the chosen one, " FAULT"
 * Operations of one process are counted together, across threads. */
#define _GNU_SOURCE 1

#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <fnmatch.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/types.h>
#include <unistd.h>

#define MAX_FDS 65536
#define MIN_INT(a, b) ((a) < (b) ? (a) : (b))

static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static char *fd_path[MAX_FDS];
static unsigned long counter;
static int configured;
static const char *pattern, *op_name, *log_path;
static unsigned long nth;
static int fault_errno = ENOSPC, kill_action;

static void
configure (void)
{
  if (configured)
    return;
  configured = 1;
  pattern = getenv ("GPTD_FAULT_PATTERN");
  op_name = getenv ("GPTD_FAULT_OP");
  log_path = getenv ("GPTD_FAULT_LOG");
  const char *n = getenv ("GPTD_FAULT_NTH");
  nth = n ? strtoul (n, NULL, 10) : 0;
  const char *e = getenv ("GPTD_FAULT_ERRNO");
  if (e && strcmp (e, "EIO") == 0)
    fault_errno = EIO;
  const char *a = getenv ("GPTD_FAULT_ACTION");
  kill_action = a && strcmp (a, "kill") == 0;
}

static int
matches (const char *path)
{
  if (!pattern || !path)
    return 0;
  if (fnmatch (pattern, path, 0) == 0)
    return 1;
  const char *base = strrchr (path, '/');
  return strchr (pattern, '/') == NULL && base && fnmatch (pattern, base + 1, 0) == 0;
}

/* Whether this operation (@op, on @path or @path2) is the one to fail; counts and
 * logs the matching ones. Kills the process when that is the action. */
static int
should_fail (const char *op, const char *path, const char *path2)
{
  configure ();
  if (!op_name || strcmp (op, op_name) != 0 || !(matches (path) || matches (path2)))
    return 0;
  pthread_mutex_lock (&lock);
  unsigned long k = ++counter;
  int fail = nth != 0 && k == nth;
  pthread_mutex_unlock (&lock);
  if (log_path)
    {
      /* Through the real calls: the wrappers would count and lock again. */
      static int (*o) (const char *, int, ...);
      static ssize_t (*w) (int, const void *, size_t);
      static int (*c) (int);
      if (!o)
        {
          o = (int (*) (const char *, int, ...)) dlsym (RTLD_NEXT, "open");
          w = (ssize_t (*) (int, const void *, size_t)) dlsym (RTLD_NEXT, "write");
          c = (int (*) (int)) dlsym (RTLD_NEXT, "close");
        }
      char line[8192];
      int len = snprintf (line, sizeof line, "%lu %s %s%s\n", k, op,
                          path2 && matches (path2) ? path2 : path, fail ? " FAULT" : "");
      int fd = o (log_path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0644);
      if (fd >= 0)
        {
          if (w (fd, line, (size_t) MIN_INT (len, (int) sizeof line - 1)) < 0)
            {
              /* Nothing to do: the log is for the test's information. */
            }
          c (fd);
        }
    }
  if (fail && kill_action)
    raise (SIGKILL);
  return fail;
}

static void
remember (int fd, const char *path)
{
  if (fd < 0 || fd >= MAX_FDS)
    return;
  pthread_mutex_lock (&lock);
  free (fd_path[fd]);
  fd_path[fd] = path ? strdup (path) : NULL;
  pthread_mutex_unlock (&lock);
}

/* The path of @fd, copied into @buf (empty when unknown). */
static const char *
path_of (int fd, char *buf, size_t size)
{
  buf[0] = '\0';
  if (fd < 0 || fd >= MAX_FDS)
    return buf;
  pthread_mutex_lock (&lock);
  if (fd_path[fd])
    snprintf (buf, size, "%s", fd_path[fd]);
  pthread_mutex_unlock (&lock);
  return buf;
}

#define REAL(ret, name, ...)                                                       \
  static ret (*real_##name) (__VA_ARGS__);                                         \
  if (!real_##name)                                                                \
    real_##name = (ret (*) (__VA_ARGS__)) dlsym (RTLD_NEXT, #name)

int
open (const char *path, int flags, ...)
{
  REAL (int, open, const char *, int, ...);
  mode_t mode = 0;
  if (flags & (O_CREAT | O_TMPFILE))
    {
      va_list ap;
      va_start (ap, flags);
      mode = va_arg (ap, mode_t);
      va_end (ap);
    }
  int fd = real_open (path, flags, mode);
  remember (fd, path);
  return fd;
}

int
open64 (const char *path, int flags, ...)
{
  REAL (int, open64, const char *, int, ...);
  mode_t mode = 0;
  if (flags & (O_CREAT | O_TMPFILE))
    {
      va_list ap;
      va_start (ap, flags);
      mode = va_arg (ap, mode_t);
      va_end (ap);
    }
  int fd = real_open64 (path, flags, mode);
  remember (fd, path);
  return fd;
}

int
openat (int dirfd, const char *path, int flags, ...)
{
  REAL (int, openat, int, const char *, int, ...);
  mode_t mode = 0;
  if (flags & (O_CREAT | O_TMPFILE))
    {
      va_list ap;
      va_start (ap, flags);
      mode = va_arg (ap, mode_t);
      va_end (ap);
    }
  int fd = real_openat (dirfd, path, flags, mode);
  remember (fd, path);
  return fd;
}

int
openat64 (int dirfd, const char *path, int flags, ...)
{
  REAL (int, openat64, int, const char *, int, ...);
  mode_t mode = 0;
  if (flags & (O_CREAT | O_TMPFILE))
    {
      va_list ap;
      va_start (ap, flags);
      mode = va_arg (ap, mode_t);
      va_end (ap);
    }
  int fd = real_openat64 (dirfd, path, flags, mode);
  remember (fd, path);
  return fd;
}

int
creat (const char *path, mode_t mode)
{
  REAL (int, creat, const char *, mode_t);
  int fd = real_creat (path, mode);
  remember (fd, path);
  return fd;
}

int
close (int fd)
{
  REAL (int, close, int);
  remember (fd, NULL);
  return real_close (fd);
}

ssize_t
write (int fd, const void *buf, size_t n)
{
  REAL (ssize_t, write, int, const void *, size_t);
  char p[4096];
  if (should_fail ("write", path_of (fd, p, sizeof p), NULL))
    {
      errno = fault_errno;
      return -1;
    }
  return real_write (fd, buf, n);
}

ssize_t
pwrite (int fd, const void *buf, size_t n, off_t off)
{
  REAL (ssize_t, pwrite, int, const void *, size_t, off_t);
  char p[4096];
  if (should_fail ("write", path_of (fd, p, sizeof p), NULL))
    {
      errno = fault_errno;
      return -1;
    }
  return real_pwrite (fd, buf, n, off);
}

ssize_t
pwrite64 (int fd, const void *buf, size_t n, off_t off)
{
  REAL (ssize_t, pwrite64, int, const void *, size_t, off_t);
  char p[4096];
  if (should_fail ("write", path_of (fd, p, sizeof p), NULL))
    {
      errno = fault_errno;
      return -1;
    }
  return real_pwrite64 (fd, buf, n, off);
}

int
fsync (int fd)
{
  REAL (int, fsync, int);
  char p[4096];
  if (should_fail ("fsync", path_of (fd, p, sizeof p), NULL))
    {
      errno = fault_errno;
      return -1;
    }
  return real_fsync (fd);
}

int
fdatasync (int fd)
{
  REAL (int, fdatasync, int);
  char p[4096];
  if (should_fail ("fsync", path_of (fd, p, sizeof p), NULL))
    {
      errno = fault_errno;
      return -1;
    }
  return real_fdatasync (fd);
}

int
rename (const char *from, const char *to)
{
  REAL (int, rename, const char *, const char *);
  if (should_fail ("rename", from, to))
    {
      errno = fault_errno;
      return -1;
    }
  return real_rename (from, to);
}

int
renameat (int fromfd, const char *from, int tofd, const char *to)
{
  REAL (int, renameat, int, const char *, int, const char *);
  if (should_fail ("rename", from, to))
    {
      errno = fault_errno;
      return -1;
    }
  return real_renameat (fromfd, from, tofd, to);
}

FILE *
fopen (const char *path, const char *mode)
{
  REAL (FILE *, fopen, const char *, const char *);
  FILE *f = real_fopen (path, mode);
  if (f)
    remember (fileno (f), path);
  return f;
}

FILE *
fopen64 (const char *path, const char *mode)
{
  REAL (FILE *, fopen64, const char *, const char *);
  FILE *f = real_fopen64 (path, mode);
  if (f)
    remember (fileno (f), path);
  return f;
}

/* A stream's buffered writes reach the file in glibc's own write calls: they are
 * made to fail at the flush that would write them. */
int
fflush (FILE *f)
{
  REAL (int, fflush, FILE *);
  char p[4096];
  if (f && should_fail ("write", path_of (fileno (f), p, sizeof p), NULL))
    {
      errno = fault_errno;
      return EOF;
    }
  return real_fflush (f);
}

int
fclose (FILE *f)
{
  REAL (int, fclose, FILE *);
  if (f)
    remember (fileno (f), NULL);
  return real_fclose (f);
}
