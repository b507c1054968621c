/* token-writer.c: the `token-writer` stage — writes the ids of the Tokens it
 * receives to one file, or with shard-tokens=N to consecutive shards of at most N
 * tokens each, named by inserting _000000, _000001, ... before the path's
 * extension (train.bin -> train_000000.bin, train_000001.bin, ...). format=llmc
 * is llm.c's shard layout (a header of 256 little-endian int32: magic 20240520,
 * version 1, token count; then uint16 ids), u16 and u32 are raw little-endian ids.
 *
 * Each file is written under a temporary name beside it, synced and renamed into
 * place (then its directory synced), a shard as soon as it is full and the last
 * one at the end; a failed run keeps the shards it completed and leaves no partial
 * file. An empty input writes one empty file (shard _000000 when sharded), so a
 * reader always finds something. After a sharded run, shards of an earlier run
 * that follow the last one written (consecutive numbers from there on) are
 * removed, so that a glob over the shards reads only this run's tokens. */
#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include <glib/gstdio.h>
#include <gptd/atomic-file.h>

#include "bpe-plugin.h"

#define LLMC_MAGIC 20240520
#define LLMC_VERSION 1
#define LLMC_HEADER_INTS 256

/* Shard numbers have six digits, so that the names sort in numeric order. */
#define MAX_SHARDS 1000000u

enum { FORMAT_LLMC, FORMAT_U16, FORMAT_U32 };
static const char *const format_choices[] = { "llmc", "u16", "u32", NULL };

typedef struct {
  char    *path;          /* the path parameter */
  guint64  shard_tokens;  /* most tokens in one shard; 0: everything in one file */
  int      format;
  /* The file being written: fd >= 0 while one is open (none between a full shard
   * and the next token). tmp_path is NULL once the file is renamed into place. */
  char    *file_path;
  char    *tmp_path;
  int      fd;
  guint64  count;         /* tokens in the open file */
  guint    n_files;       /* files committed */
  guint64  total;         /* tokens in the committed files */
  char    *first_path;    /* the first committed file */
  guint8  *buf;
  gsize    buf_len;
} Writer;

#define BUF_SIZE (1u << 20)

static const GptdParamSpec writer_params[] = {
  { "path", GPTD_PARAM_PATH, NULL, 0, 0, NULL,
    "The file to write (replaced at the end); with shard-tokens, the shards are named "
    "by inserting _000000, _000001, ... before its extension", GPTD_PARAM_REQUIRED },
  { "format", GPTD_PARAM_ENUM, "llmc", 0, 0, format_choices,
    "llmc: llm.c's shard (256-int32 header, uint16 ids); u16 or u32: raw little-endian ids",
    0 },
  { "shard-tokens", GPTD_PARAM_INT, "0", 0, G_MAXINT32, NULL,
    "Most tokens in one shard; each is committed when full, and later shards of an "
    "earlier run are removed at the end (0: one file)", 0 },
  { NULL }
};

static const GptdPadSpec writer_inputs[] = {
  { "default", "gptd.Tokens", 0 },
  { NULL }
};

static gboolean
io_error (Writer *w, const char *what, GError **error)
{
  int e = errno;
  g_set_error (error, GPTD_STAGE_ERROR, GPTD_STAGE_ERROR_IO, "%s %s: %s", what,
               w->file_path ? w->file_path : w->path, g_strerror (e));
  return FALSE;
}

/* The name of shard @index of @path: _NNNNNN inserted before the extension of the
 * last component (a leading dot does not start an extension), or appended. */
static char *
shard_path (const char *path, guint index)
{
  const char *slash = strrchr (path, G_DIR_SEPARATOR);
  const char *base = slash ? slash + 1 : path;
  const char *dot = strrchr (base, '.');
  if (!dot || dot == base)
    return g_strdup_printf ("%s_%06u", path, index);
  return g_strdup_printf ("%.*s_%06u%s", (int) (dot - path), path, index, dot);
}

static gboolean
write_all (Writer *w, const void *data, gsize len, GError **error)
{
  const guint8 *p = data;
  while (len > 0)
    {
      ssize_t n = write (w->fd, p, len);
      if (n < 0 && errno == EINTR)
        continue;
      if (n < 0)
        return io_error (w, "cannot write", error);
      p += n;
      len -= (gsize) n;
    }
  return TRUE;
}

static gboolean
flush_buf (Writer *w, GError **error)
{
  gboolean ok = write_all (w, w->buf, w->buf_len, error);
  w->buf_len = 0;
  return ok;
}

/* Flushes the directory entries of @path's directory, best effort (a failure
 * there leaves the file written, only its entry perhaps not yet durable). */
static void
sync_dir_of (const char *path)
{
  g_autofree char *dir = g_path_get_dirname (path);
  gptd_fsync_directory (dir, NULL);
}

/* Refuses to rename over anything but a regular file (a device, a FIFO, a
 * directory or a symbolic link at @path). */
static gboolean
check_target (const char *path, GError **error)
{
  GError *local = NULL;
  if (gptd_file_check_replaceable (path, &local))
    return TRUE;
  g_set_error_literal (error, GPTD_STAGE_ERROR, GPTD_STAGE_ERROR_IO, local->message);
  g_error_free (local);
  return FALSE;
}

/* Starts the next file: shard n_files, or the one file. */
static gboolean
open_file (Writer *w, GError **error)
{
  g_clear_pointer (&w->file_path, g_free);
  if (w->shard_tokens > 0)
    {
      if (w->n_files >= MAX_SHARDS)
        {
          g_set_error (error, GPTD_STAGE_ERROR, GPTD_STAGE_ERROR_INPUT,
                       "%s: more than %u shards of %" G_GUINT64_FORMAT " tokens; raise "
                       "shard-tokens", w->path, MAX_SHARDS, w->shard_tokens);
          return FALSE;
        }
      w->file_path = shard_path (w->path, w->n_files);
    }
  else
    w->file_path = g_strdup (w->path);
  if (!check_target (w->file_path, error))
    return FALSE;
  g_autofree char *dir = g_path_get_dirname (w->file_path);
  g_autofree char *base = g_path_get_basename (w->file_path);
  w->tmp_path = g_strdup_printf ("%s/.%s.tmp-XXXXXX", dir, base);
  w->fd = g_mkstemp_full (w->tmp_path, O_WRONLY | O_CLOEXEC, 0644);
  if (w->fd < 0)
    {
      int e = errno;
      g_set_error (error, GPTD_STAGE_ERROR, GPTD_STAGE_ERROR_IO,
                   "cannot create a file beside %s: %s", w->file_path, g_strerror (e));
      g_clear_pointer (&w->tmp_path, g_free);
      return FALSE;
    }
  w->count = 0;
  if (w->format == FORMAT_LLMC)
    {
      /* The header, with the count filled in when the file is complete. */
      gint32 header[LLMC_HEADER_INTS] = { 0 };
      if (!write_all (w, header, sizeof header, error))
        return FALSE;
    }
  return TRUE;
}

/* Completes the open file: header count, sync, rename into place, sync of the
 * directory. On failure the temporary file stays for writer_destroy() to remove. */
static gboolean
commit_file (Writer *w, GError **error)
{
  if (!flush_buf (w, error))
    return FALSE;
  if (w->format == FORMAT_LLMC)
    {
      guint8 head[12];
      const guint32 vals[3] = { LLMC_MAGIC, LLMC_VERSION, (guint32) w->count };
      for (int k = 0; k < 3; k++)
        for (int b = 0; b < 4; b++)
          head[k * 4 + b] = (guint8) (vals[k] >> (8 * b));
      if (pwrite (w->fd, head, sizeof head, 0) != (ssize_t) sizeof head)
        return io_error (w, "cannot write the header of", error);
    }
  if (fsync (w->fd) != 0)
    return io_error (w, "cannot sync", error);
  int fd = w->fd;
  w->fd = -1;
  if (close (fd) != 0)
    return io_error (w, "cannot close", error);
  if (!check_target (w->file_path, error))
    return FALSE;
  if (g_rename (w->tmp_path, w->file_path) != 0)
    return io_error (w, "cannot rename the temporary file to", error);
  g_clear_pointer (&w->tmp_path, g_free);
  sync_dir_of (w->file_path);
  if (w->n_files == 0)
    w->first_path = g_strdup (w->file_path);
  w->n_files++;
  w->total += w->count;
  return TRUE;
}

static void
writer_destroy (gpointer data)
{
  Writer *w = data;
  if (!w)
    return;
  if (w->fd >= 0)
    close (w->fd);
  if (w->tmp_path)
    g_unlink (w->tmp_path);
  g_free (w->path);
  g_free (w->file_path);
  g_free (w->tmp_path);
  g_free (w->first_path);
  g_free (w->buf);
  g_free (w);
}

static gpointer
writer_create (GptdStageContext *ctx, const GptdParams *params, GError **error)
{
  Writer *w = g_new0 (Writer, 1);
  w->fd = -1;
  w->path = g_strdup (gptd_params_get_string (params, "path"));
  w->format = (int) gptd_params_get_int (params, "format");
  w->shard_tokens = (guint64) gptd_params_get_int (params, "shard-tokens");
  w->buf = g_malloc (BUF_SIZE);
  /* The first file is opened now, so that an unwritable place fails the run early. */
  if (!open_file (w, error))
    {
      writer_destroy (w);
      return NULL;
    }
  return w;
}

static gboolean
writer_process (gpointer data, GptdStageContext *ctx, guint input, const ProtobufCMessage *msg,
                GError **error)
{
  Writer *w = data;
  const Gptd__Tokens *t = (const Gptd__Tokens *) msg;
  gsize width = w->format == FORMAT_U32 ? 4 : 2;
  for (gsize i = 0; i < t->n_ids; i++)
    {
      guint32 id = t->ids[i];
      if (w->fd < 0 && !open_file (w, error))
        return FALSE;
      if (width == 2 && id > G_MAXUINT16)
        {
          g_set_error (error, GPTD_STAGE_ERROR, GPTD_STAGE_ERROR_INPUT,
                       "%s: token id %u (token %" G_GUINT64_FORMAT " of the file) does not fit "
                       "in 16 bits; use format=u32", w->file_path, id, w->count);
          return FALSE;
        }
      if (w->format == FORMAT_LLMC && w->count == G_MAXINT32)
        {
          /* Only without shard-tokens, whose maximum is G_MAXINT32. */
          g_set_error (error, GPTD_STAGE_ERROR, GPTD_STAGE_ERROR_INPUT,
                       "%s: more than %d tokens do not fit in an llm.c shard; set "
                       "shard-tokens (e.g. 100000000) to write consecutive shards",
                       w->file_path, G_MAXINT32);
          return FALSE;
        }
      if (w->buf_len + width > BUF_SIZE && !flush_buf (w, error))
        return FALSE;
      guint8 *p = w->buf + w->buf_len;
      p[0] = (guint8) id;
      p[1] = (guint8) (id >> 8);
      if (width == 4)
        {
          p[2] = (guint8) (id >> 16);
          p[3] = (guint8) (id >> 24);
        }
      w->buf_len += width;
      w->count++;
      if (w->count == w->shard_tokens && !commit_file (w, error))
        return FALSE;
    }
  return TRUE;
}

/* Removes the shards of an earlier run numbered from n_files on, up to the first
 * number that is not a regular file. */
static void
remove_stale_shards (Writer *w, GptdStageContext *ctx)
{
  guint removed = 0;
  for (guint i = w->n_files; i < MAX_SHARDS; i++)
    {
      g_autofree char *stale = shard_path (w->path, i);
      if (!g_file_test (stale, G_FILE_TEST_IS_REGULAR) ||
          g_file_test (stale, G_FILE_TEST_IS_SYMLINK))
        break;
      if (g_unlink (stale) != 0)
        {
          int e = errno;
          gptd_stage_log (ctx, G_LOG_LEVEL_WARNING,
                          "cannot remove %s, a shard of an earlier run: %s", stale,
                          g_strerror (e));
          break;
        }
      removed++;
    }
  if (removed > 0)
    {
      sync_dir_of (w->path);
      gptd_stage_log (ctx, G_LOG_LEVEL_INFO, "removed %u shard%s of an earlier run after %s",
                      removed, removed == 1 ? "" : "s", w->file_path);
    }
}

static gboolean
writer_finish (gpointer data, GptdStageContext *ctx, GError **error)
{
  Writer *w = data;
  if (w->fd >= 0 && !commit_file (w, error))
    return FALSE;
  if (w->shard_tokens > 0)
    remove_stale_shards (w, ctx);
  if (w->n_files == 1)
    gptd_stage_log (ctx, G_LOG_LEVEL_INFO, "wrote %" G_GUINT64_FORMAT " tokens in 1 shard (%s, %s)",
                    w->total, w->file_path, format_choices[w->format]);
  else
    gptd_stage_log (ctx, G_LOG_LEVEL_INFO,
                    "wrote %" G_GUINT64_FORMAT " tokens in %u shards (%s to %s, %s)", w->total,
                    w->n_files, w->first_path, w->file_path, format_choices[w->format]);
  return TRUE;
}

const GptdStageType gptd__token_writer_type = {
  .name = "token-writer",
  .description = "Writes token ids to a file or to consecutive shards: llm.c shards "
                 "(format=llmc) or raw little-endian uint16/uint32",
  .params = writer_params,
  .inputs = writer_inputs,
  .outputs = NULL,
  .create = writer_create,
  .process = writer_process,
  .finish = writer_finish,
  .destroy = writer_destroy,
};
