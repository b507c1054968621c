/* gptd/atomic-file.h: atomic, durable file replacement.
 *
 * A file is written under a temporary name in the same directory as its final
 * path, flushed to disk with fsync(), renamed over the final path and the
 * directory is fsynced, so that after a crash the path holds either its old
 * content or its complete new content, never a torn mixture. On any failure the
 * temporary file is removed and the old file stays as it was.
 *
 * Two forms: gptd_atomic_file_set_contents() writes one buffer; the streaming
 * form opens a GptdAtomicFile, writes chunks and then commits (or frees it
 * without committing, which aborts and removes the temporary file).
 *
 * Errors are reported in the G_FILE_ERROR domain, with the code derived from
 * errno (G_FILE_ERROR_NOSPC for a full disk, ...) and a message naming the path.
 */
#pragma once

#include <glib.h>
#include <stddef.h>

G_BEGIN_DECLS

/**
 * GptdAtomicFile:
 *
 * A file being written under a temporary name; opaque.
 */
typedef struct _GptdAtomicFile GptdAtomicFile;

/**
 * gptd_atomic_file_open:
 * @path: the final path of the file
 * @error: return location for a #GError
 *
 * Creates a temporary file beside @path (in the same directory, named
 * `.BASENAME.tmp-XXXXXX`) to receive the new content. @path itself is not
 * touched until gptd_atomic_file_commit().
 *
 * Returns: (transfer full): a new #GptdAtomicFile, or %NULL with @error set
 */
GptdAtomicFile *gptd_atomic_file_open (const char *path, GError **error);

/**
 * gptd_atomic_file_write:
 * @file: an open #GptdAtomicFile
 * @data: bytes to append
 * @length: number of bytes in @data
 * @error: return location for a #GError
 *
 * Appends @length bytes to the temporary file, retrying short writes and
 * EINTR. On failure the temporary file is removed and every later write or
 * commit on @file fails.
 *
 * Returns: %TRUE on success
 */
gboolean gptd_atomic_file_write (GptdAtomicFile *file,
                                 const void     *data,
                                 size_t          length,
                                 GError        **error);

/**
 * gptd_atomic_file_get_offset:
 * @file: a #GptdAtomicFile
 *
 * Returns: the number of bytes written so far.
 */
guint64 gptd_atomic_file_get_offset (const GptdAtomicFile *file);

/**
 * gptd_atomic_file_get_path:
 * @file: a #GptdAtomicFile
 *
 * Returns: (transfer none): the final path given to gptd_atomic_file_open().
 */
const char *gptd_atomic_file_get_path (const GptdAtomicFile *file);

/**
 * gptd_atomic_file_commit:
 * @file: an open #GptdAtomicFile
 * @error: return location for a #GError
 *
 * Makes the written content durable and visible at the final path: fsync()
 * the temporary file, close it, rename() it over the final path and fsync()
 * the directory. On failure before the rename the temporary file is removed
 * and the final path keeps its old content. @file must still be freed with
 * gptd_atomic_file_free().
 *
 * Returns: %TRUE on success
 */
gboolean gptd_atomic_file_commit (GptdAtomicFile *file, GError **error);

/**
 * gptd_atomic_file_free:
 * @file: (nullable): a #GptdAtomicFile
 *
 * Frees @file. If it was not committed, the write is aborted: the temporary
 * file is closed and removed, and the final path is left as it was.
 */
void gptd_atomic_file_free (GptdAtomicFile *file);

/**
 * gptd_atomic_file_set_contents:
 * @path: the final path
 * @data: the new content
 * @length: number of bytes in @data
 * @error: return location for a #GError
 *
 * Atomically and durably replaces the content of @path with @data.
 *
 * Returns: %TRUE on success
 */
gboolean gptd_atomic_file_set_contents (const char *path,
                                        const void *data,
                                        size_t      length,
                                        GError    **error);

/**
 * gptd_atomic_file_copy:
 * @source: the file to copy
 * @dest: the destination path
 * @error: return location for a #GError
 *
 * Copies the content of @source to @dest, atomically and durably replacing
 * @dest. Errors name @source when it cannot be read and @dest when it cannot
 * be written.
 *
 * Returns: %TRUE on success
 */
gboolean gptd_atomic_file_copy (const char *source,
                                const char *dest,
                                GError    **error);

/**
 * gptd_fsync_directory:
 * @path: a directory
 * @error: return location for a #GError
 *
 * Flushes the directory entry changes of @path (created, renamed or removed
 * entries) to disk. File systems that cannot fsync a directory (EINVAL) are
 * treated as success.
 *
 * Returns: %TRUE on success
 */
gboolean gptd_fsync_directory (const char *path, GError **error);

/**
 * gptd_file_check_replaceable:
 * @path: a path about to be replaced by renaming a new file over it
 * @error: return location for a #GError
 *
 * Checks that @path is absent or a regular file, so that a writer never renames
 * a new file over a device, a FIFO, a socket, a directory or a symbolic link
 * (which would replace the link, not write where it points). The error names
 * @path and what it is; its code is %G_FILE_ERROR_ISDIR for a directory and
 * %G_FILE_ERROR_FAILED otherwise.
 *
 * Returns: %TRUE when @path may be replaced
 */
gboolean gptd_file_check_replaceable (const char *path, GError **error);

/**
 * GptdAtomicFileOp:
 * @GPTD_ATOMIC_FILE_OP_CREATE: creating the temporary file
 * @GPTD_ATOMIC_FILE_OP_WRITE: one write() call to the temporary file
 * @GPTD_ATOMIC_FILE_OP_FSYNC: fsync() of the temporary file
 * @GPTD_ATOMIC_FILE_OP_RENAME: rename() over the final path
 * @GPTD_ATOMIC_FILE_OP_FSYNC_DIR: fsync() of the directory after the rename
 *
 * The steps of an atomic write at which a fault can be injected.
 */
typedef enum {
  GPTD_ATOMIC_FILE_OP_CREATE,
  GPTD_ATOMIC_FILE_OP_WRITE,
  GPTD_ATOMIC_FILE_OP_FSYNC,
  GPTD_ATOMIC_FILE_OP_RENAME,
  GPTD_ATOMIC_FILE_OP_FSYNC_DIR,
} GptdAtomicFileOp;

/**
 * GPTD_ATOMIC_FILE_FAULT_CRASH:
 *
 * A value a #GptdAtomicFileFaultFunc returns to simulate the process dying at
 * that point: the operation fails with EIO, but the temporary file is left
 * behind, as a real crash would leave it, and every later operation on the
 * same #GptdAtomicFile fails without cleaning up.
 */
#define GPTD_ATOMIC_FILE_FAULT_CRASH (-1)

/**
 * GptdAtomicFileFaultFunc:
 * @op: the step about to be performed
 * @path: the final path of the file being written
 * @offset: for %GPTD_ATOMIC_FILE_OP_WRITE, the offset of the write; else the
 *   total number of bytes written
 * @length: (inout): for %GPTD_ATOMIC_FILE_OP_WRITE, the number of bytes about to
 *   be written; the function may lower it to write only a prefix before the
 *   fault (a short write followed by an error, as on a disk that fills up)
 * @user_data: the data given to gptd_atomic_file_set_fault_func()
 *
 * A fault injection hook for tests.
 *
 * Returns: 0 to let the step proceed, an errno value (such as ENOSPC) to make
 *   it fail with that error, or %GPTD_ATOMIC_FILE_FAULT_CRASH.
 */
typedef int (*GptdAtomicFileFaultFunc) (GptdAtomicFileOp op,
                                        const char      *path,
                                        guint64          offset,
                                        size_t          *length,
                                        gpointer         user_data);

/**
 * gptd_atomic_file_set_fault_func:
 * @func: (nullable): the hook, or %NULL to remove it
 * @user_data: data passed to @func
 *
 * Installs a process-wide fault injection hook called before every step of
 * every atomic write. Meant for tests that check what an interrupted write
 * leaves behind; production code never sets it.
 */
void gptd_atomic_file_set_fault_func (GptdAtomicFileFaultFunc func,
                                      gpointer                user_data);

G_DEFINE_AUTOPTR_CLEANUP_FUNC (GptdAtomicFile, gptd_atomic_file_free)

G_END_DECLS
