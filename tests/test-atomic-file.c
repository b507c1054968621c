/* tests/test-atomic-file.c: atomic durable writes, including writes
 * interrupted at every step by the fault injection hook.
 */
#include <gptd/atomic-file.h>

#include <errno.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <glib/gstdio.h>

/* A fresh temporary directory, removed with its files at the end. */
typedef struct {
  char *dir;
} Fixture;

static void
fixture_setup (Fixture *f, gconstpointer data)
{
  g_autoptr (GError) error = NULL;
  f->dir = g_dir_make_tmp ("gptd-atomic-XXXXXX", &error);
  g_assert_no_error (error);
}

static void
fixture_teardown (Fixture *f, gconstpointer data)
{
  gptd_atomic_file_set_fault_func (NULL, NULL);
  g_autoptr (GDir) d = g_dir_open (f->dir, 0, NULL);
  const char *name;
  while (d != NULL && (name = g_dir_read_name (d)) != NULL)
    {
      g_autofree char *p = g_build_filename (f->dir, name, NULL);
      g_unlink (p);
    }
  g_rmdir (f->dir);
  g_free (f->dir);
}

/* Number of entries in the directory (to see leftover temporary files). */
static guint
count_entries (const char *dir)
{
  g_autoptr (GDir) d = g_dir_open (dir, 0, NULL);
  guint n = 0;
  while (d != NULL && g_dir_read_name (d) != NULL)
    n++;
  return n;
}

static void
assert_content (const char *path, const char *expected)
{
  g_autofree char *content = NULL;
  gsize len;
  g_autoptr (GError) error = NULL;
  g_assert_true (g_file_get_contents (path, &content, &len, &error));
  g_assert_no_error (error);
  g_assert_cmpuint (len, ==, strlen (expected));
  g_assert_cmpstr (content, ==, expected);
}

static void
test_set_contents (Fixture *f, gconstpointer data)
{
  g_autofree char *path = g_build_filename (f->dir, "a.txt", NULL);
  g_autoptr (GError) error = NULL;

  g_assert_true (gptd_atomic_file_set_contents (path, "first", 5, &error));
  g_assert_no_error (error);
  assert_content (path, "first");
  g_assert_true (gptd_atomic_file_set_contents (path, "second!", 7, &error));
  g_assert_no_error (error);
  assert_content (path, "second!");
  g_assert_true (gptd_atomic_file_set_contents (path, "", 0, &error));
  assert_content (path, "");
  g_assert_cmpuint (count_entries (f->dir), ==, 1);
}

static void
test_stream (Fixture *f, gconstpointer data)
{
  g_autofree char *path = g_build_filename (f->dir, "s.txt", NULL);
  g_autoptr (GError) error = NULL;

  g_assert_true (gptd_atomic_file_set_contents (path, "old", 3, &error));
  g_autoptr (GptdAtomicFile) file = gptd_atomic_file_open (path, &error);
  g_assert_no_error (error);
  g_assert_cmpstr (gptd_atomic_file_get_path (file), ==, path);
  for (int i = 0; i < 3; i++)
    g_assert_true (gptd_atomic_file_write (file, "chunk", 5, &error));
  g_assert_cmpuint (gptd_atomic_file_get_offset (file), ==, 15);
  /* Before the commit the old content is still there, and the temporary file
   * sits beside it. */
  assert_content (path, "old");
  g_assert_cmpuint (count_entries (f->dir), ==, 2);
  g_assert_true (gptd_atomic_file_commit (file, &error));
  g_assert_no_error (error);
  assert_content (path, "chunkchunkchunk");
  g_assert_cmpuint (count_entries (f->dir), ==, 1);
}

static void
test_abort (Fixture *f, gconstpointer data)
{
  g_autofree char *path = g_build_filename (f->dir, "b.txt", NULL);
  g_autoptr (GError) error = NULL;

  g_assert_true (gptd_atomic_file_set_contents (path, "keep", 4, &error));
  GptdAtomicFile *file = gptd_atomic_file_open (path, &error);
  g_assert_nonnull (file);
  g_assert_true (gptd_atomic_file_write (file, "lost", 4, &error));
  gptd_atomic_file_free (file);
  assert_content (path, "keep");
  g_assert_cmpuint (count_entries (f->dir), ==, 1);
}

/* Fault hook: fail one step with an errno value (or a simulated crash),
 * letting @prefix bytes of a failing write through first. */
typedef struct {
  GptdAtomicFileOp op;
  guint64 fail_at;   /* for writes: fail the write that would cross this offset */
  size_t prefix;     /* bytes of the failing write to let through */
  int result;
  guint calls;
} Fault;

static int
fault_func (GptdAtomicFileOp op, const char *path, guint64 offset,
            size_t *length, gpointer user_data)
{
  Fault *fault = user_data;
  fault->calls++;
  if (op != fault->op)
    return 0;
  if (op == GPTD_ATOMIC_FILE_OP_WRITE)
    {
      if (offset + *length <= fault->fail_at)
        return 0;
      *length = MIN (*length, fault->prefix);
    }
  return fault->result;
}

static void
check_fault (Fixture *f, GptdAtomicFileOp op, int result, gboolean old_survives,
             guint expected_entries)
{
  g_autofree char *path = g_build_filename (f->dir, "c.txt", NULL);
  g_autoptr (GError) error = NULL;

  g_assert_true (gptd_atomic_file_set_contents (path, "previous", 8, &error));
  Fault fault = { op, 6, 3, result, 0 };
  gptd_atomic_file_set_fault_func (fault_func, &fault);

  g_autoptr (GptdAtomicFile) file = gptd_atomic_file_open (path, &error);
  gboolean ok = file != NULL;
  if (ok)
    ok = gptd_atomic_file_write (file, "new ", 4, &error);
  if (ok)
    ok = gptd_atomic_file_write (file, "content", 7, &error);
  if (ok)
    ok = gptd_atomic_file_commit (file, &error);
  gptd_atomic_file_set_fault_func (NULL, NULL);

  g_assert_false (ok);
  g_assert_nonnull (error);
  g_assert_true (error->domain == G_FILE_ERROR);
  if (result == ENOSPC)
    g_assert_cmpint (error->code, ==, G_FILE_ERROR_NOSPC);
  /* The message names the file. */
  g_assert_nonnull (strstr (error->message, path));
  g_assert_cmpuint (fault.calls, >, 0);

  /* A write after a failure fails too (unless the file was already renamed
   * into place, after which writing is a programming error). */
  if (file != NULL && op != GPTD_ATOMIC_FILE_OP_FSYNC_DIR)
    {
      g_autoptr (GError) again = NULL;
      g_assert_false (gptd_atomic_file_write (file, "x", 1, &again));
      g_assert_nonnull (again);
    }
  g_clear_pointer (&file, gptd_atomic_file_free);

  assert_content (path, old_survives ? "previous" : "new content");
  g_assert_cmpuint (count_entries (f->dir), ==, expected_entries);
}

static void
test_fault_create (Fixture *f, gconstpointer data)
{
  check_fault (f, GPTD_ATOMIC_FILE_OP_CREATE, EACCES, TRUE, 1);
}

static void
test_fault_enospc (Fixture *f, gconstpointer data)
{
  /* The disk fills up in the middle of the second write. */
  check_fault (f, GPTD_ATOMIC_FILE_OP_WRITE, ENOSPC, TRUE, 1);
}

static void
test_fault_fsync (Fixture *f, gconstpointer data)
{
  check_fault (f, GPTD_ATOMIC_FILE_OP_FSYNC, EIO, TRUE, 1);
}

static void
test_fault_rename (Fixture *f, gconstpointer data)
{
  check_fault (f, GPTD_ATOMIC_FILE_OP_RENAME, EXDEV, TRUE, 1);
}

static void
test_fault_fsync_dir (Fixture *f, gconstpointer data)
{
  /* The rename has happened: the new content is in place, but the caller is
   * told that it may not be durable. */
  check_fault (f, GPTD_ATOMIC_FILE_OP_FSYNC_DIR, EIO, FALSE, 1);
}

static void
test_fault_crash (Fixture *f, gconstpointer data)
{
  /* A process dying in the middle of a write leaves its temporary file, but
   * the final path is untouched. */
  check_fault (f, GPTD_ATOMIC_FILE_OP_WRITE, GPTD_ATOMIC_FILE_FAULT_CRASH, TRUE, 2);
}

static void
test_fault_crash_before_rename (Fixture *f, gconstpointer data)
{
  check_fault (f, GPTD_ATOMIC_FILE_OP_RENAME, GPTD_ATOMIC_FILE_FAULT_CRASH, TRUE, 2);
}

static void
test_open_missing_dir (Fixture *f, gconstpointer data)
{
  g_autofree char *path = g_build_filename (f->dir, "no-such-dir", "x", NULL);
  g_autoptr (GError) error = NULL;
  g_assert_false (gptd_atomic_file_set_contents (path, "x", 1, &error));
  g_assert_error (error, G_FILE_ERROR, G_FILE_ERROR_NOENT);
  g_assert_nonnull (strstr (error->message, path));
}

static void
test_copy (Fixture *f, gconstpointer data)
{
  g_autofree char *src = g_build_filename (f->dir, "src", NULL);
  g_autofree char *dst = g_build_filename (f->dir, "dst", NULL);
  g_autofree char *missing = g_build_filename (f->dir, "missing", NULL);
  g_autoptr (GError) error = NULL;

  /* Bigger than the copy buffer. */
  GString *big = g_string_new (NULL);
  for (int i = 0; i < 300000; i++)
    g_string_append_printf (big, "%d,", i);
  g_assert_true (gptd_atomic_file_set_contents (src, big->str, big->len, &error));
  g_assert_true (gptd_atomic_file_copy (src, dst, &error));
  g_assert_no_error (error);
  assert_content (dst, big->str);
  g_string_free (big, TRUE);

  g_assert_false (gptd_atomic_file_copy (missing, dst, &error));
  g_assert_error (error, G_FILE_ERROR, G_FILE_ERROR_NOENT);
  g_assert_nonnull (strstr (error->message, missing));
  g_assert_cmpuint (count_entries (f->dir), ==, 2);
}

/* Only a regular file is replaced: a FIFO, a symbolic link or a directory at the
 * path is refused with an error naming it, both when the file is opened and when
 * one appears there before the commit, and it is left as it was. */
static void
test_not_regular (Fixture *f, gconstpointer data)
{
  g_autofree char *fifo = g_build_filename (f->dir, "fifo", NULL);
  g_autofree char *link = g_build_filename (f->dir, "link", NULL);
  g_autofree char *late = g_build_filename (f->dir, "late", NULL);
  g_assert_cmpint (mkfifo (fifo, 0600), ==, 0);
  g_assert_cmpint (symlink ("fifo", link), ==, 0);
  g_autoptr (GError) error = NULL;

  g_assert_false (gptd_atomic_file_set_contents (fifo, "x", 1, &error));
  g_assert_error (error, G_FILE_ERROR, G_FILE_ERROR_FAILED);
  g_autofree char *want = g_strdup_printf ("“%s”: it is a FIFO", fifo);
  g_assert_nonnull (strstr (error->message, want));
  g_clear_error (&error);
  g_assert_false (gptd_atomic_file_set_contents (link, "x", 1, &error));
  g_assert_nonnull (strstr (error->message, "it is a symbolic link"));
  g_clear_error (&error);
  g_assert_false (gptd_atomic_file_set_contents (f->dir, "x", 1, &error));
  g_assert_error (error, G_FILE_ERROR, G_FILE_ERROR_ISDIR);
  g_clear_error (&error);

  g_autoptr (GptdAtomicFile) file = gptd_atomic_file_open (late, &error);
  g_assert_no_error (error);
  g_assert_true (gptd_atomic_file_write (file, "x", 1, &error));
  g_assert_cmpint (mkfifo (late, 0600), ==, 0);
  g_assert_false (gptd_atomic_file_commit (file, &error));
  g_assert_nonnull (strstr (error->message, "it is a FIFO"));

  GStatBuf st;
  g_assert_cmpint (lstat (fifo, &st), ==, 0);
  g_assert_true (S_ISFIFO (st.st_mode));
  g_assert_cmpint (lstat (late, &st), ==, 0);
  g_assert_true (S_ISFIFO (st.st_mode));
  g_assert_cmpint (lstat (link, &st), ==, 0);
  g_assert_true (S_ISLNK (st.st_mode));
  /* No temporary file is left: fifo, link and late only. */
  g_assert_cmpuint (count_entries (f->dir), ==, 3);
}

static void
test_fsync_directory (Fixture *f, gconstpointer data)
{
  g_autoptr (GError) error = NULL;
  g_autofree char *missing = g_build_filename (f->dir, "none", NULL);
  g_assert_true (gptd_fsync_directory (f->dir, &error));
  g_assert_no_error (error);
  g_assert_false (gptd_fsync_directory (missing, &error));
  g_assert_error (error, G_FILE_ERROR, G_FILE_ERROR_NOENT);
}

int
main (int argc, char **argv)
{
  g_test_init (&argc, &argv, NULL);
#define ADD(path, func) \
  g_test_add ("/io/atomic-file/" path, Fixture, NULL, fixture_setup, func, fixture_teardown)
  ADD ("set-contents", test_set_contents);
  ADD ("stream", test_stream);
  ADD ("abort", test_abort);
  ADD ("fault/create", test_fault_create);
  ADD ("fault/enospc", test_fault_enospc);
  ADD ("fault/fsync", test_fault_fsync);
  ADD ("fault/rename", test_fault_rename);
  ADD ("fault/fsync-dir", test_fault_fsync_dir);
  ADD ("fault/crash", test_fault_crash);
  ADD ("fault/crash-before-rename", test_fault_crash_before_rename);
  ADD ("missing-dir", test_open_missing_dir);
  ADD ("copy", test_copy);
  ADD ("fsync-directory", test_fsync_directory);
  ADD ("not-regular", test_not_regular);
#undef ADD
  return g_test_run ();
}
