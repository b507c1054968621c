/* token-reader.c: the `token-reader` stage — reads token files (llm.c shards, or
 * raw little-endian uint16/uint32 ids) and emits their ids as Tokens, so that
 * training can start from pre-tokenized data. A glob's matches are read in byte
 * order of their names (whatever the locale), so shards written by token-writer
 * come back in order. Every file is checked before use: magic, version and size
 * of an llm.c shard, whole ids in a raw file. */
#include "config.h"

#include <errno.h>
#include <glob.h>
#include <gio/gio.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include <glib/gstdio.h>

#include "bpe-plugin.h"

#define LLMC_MAGIC 20240520
#define LLMC_VERSION 1
#define LLMC_HEADER_BYTES 1024

enum { FORMAT_LLMC, FORMAT_U16, FORMAT_U32 };
static const char *const format_choices[] = { "llmc", "u16", "u32", NULL };

typedef struct {
  GPtrArray *files;
  int        format;
  gsize      chunk;
  guint32    vocab_size;
} Reader;

static const GptdParamSpec reader_params[] = {
  { "path", GPTD_PARAM_STRING, NULL, 0, 0, NULL,
    "The files to read: a file, a glob (train_*.bin, its matches in byte order of "
    "their names) or a comma-separated list of them; relative to the pipeline file",
    GPTD_PARAM_REQUIRED },
  { "format", GPTD_PARAM_ENUM, "llmc", 0, 0, format_choices,
    "llmc: llm.c's shard (256-int32 header, uint16 ids); u16 or u32: raw little-endian ids",
    0 },
  { "chunk-tokens", GPTD_PARAM_INT, "1048576", 1, 1073741824.0, NULL,
    "Most ids in one Tokens message", 0 },
  { "vocab-size", GPTD_PARAM_INT, "0", 0, 16777216, NULL,
    "The vocabulary size the ids belong to, passed on in Tokens (0: unknown); ids must "
    "be below it", 0 },
  { NULL }
};

static const GptdPadSpec reader_outputs[] = {
  { "default", "gptd.Tokens", 0 },
  { NULL }
};

static void
reader_destroy (gpointer data)
{
  Reader *r = data;
  if (!r)
    return;
  g_ptr_array_unref (r->files);
  g_free (r);
}

static int
compare_paths (const void *a, const void *b)
{
  return strcmp (*(char *const *) a, *(char *const *) b);
}

static gpointer
reader_create (GptdStageContext *ctx, const GptdParams *params, GError **error)
{
  Reader *r = g_new0 (Reader, 1);
  r->files = g_ptr_array_new_with_free_func (g_free);
  r->format = (int) gptd_params_get_int (params, "format");
  r->chunk = (gsize) gptd_params_get_int (params, "chunk-tokens");
  r->vocab_size = (guint32) gptd_params_get_int (params, "vocab-size");
  g_auto (GStrv) items = g_strsplit (gptd_params_get_string (params, "path"), ",", -1);
  for (guint i = 0; items[i]; i++)
    {
      char *item = g_strstrip (items[i]);
      if (!*item)
        continue;
      g_autofree char *abs = gptd_params_resolve_path (params, item);
      if (strpbrk (item, "*?["))
        {
          /* glob() sorts with strcoll(), which depends on the locale; the matches
           * are sorted by their bytes instead, so that shards named _000000,
           * _000001, ... are read in order everywhere. */
          glob_t g;
          if (glob (abs, GLOB_NOSORT, NULL, &g) != 0)
            {
              g_set_error (error, GPTD_STAGE_ERROR, GPTD_STAGE_ERROR_IO, "no file matches %s", abs);
              reader_destroy (r);
              return NULL;
            }
          qsort (g.gl_pathv, g.gl_pathc, sizeof (char *), compare_paths);
          for (size_t k = 0; k < g.gl_pathc; k++)
            g_ptr_array_add (r->files, g_strdup (g.gl_pathv[k]));
          globfree (&g);
        }
      else
        g_ptr_array_add (r->files, g_steal_pointer (&abs));
    }
  for (guint i = 0; i < r->files->len; i++)
    {
      /* Only regular files: a device such as /dev/zero is not a missing file, and
       * a FIFO would block the run. */
      const char *path = r->files->pdata[i];
      GStatBuf st;
      const char *problem = NULL;
      if (g_stat (path, &st) != 0)
        problem = g_strerror (errno);
      else if (!S_ISREG (st.st_mode))
        problem = S_ISDIR (st.st_mode) ? "a directory, not a token file"
                  : S_ISCHR (st.st_mode) ? "a character device, not a regular file"
                  : S_ISBLK (st.st_mode) ? "a block device, not a regular file"
                  : S_ISFIFO (st.st_mode) ? "a FIFO, not a regular file"
                  : "not a regular file";
      if (problem != NULL)
        {
          g_set_error (error, GPTD_STAGE_ERROR, GPTD_STAGE_ERROR_IO, "%s: %s", path, problem);
          reader_destroy (r);
          return NULL;
        }
    }
  if (r->files->len == 0)
    {
      g_set_error (error, GPTD_STAGE_ERROR, GPTD_STAGE_ERROR_IO, "path names no file");
      reader_destroy (r);
      return NULL;
    }
  return r;
}

static guint32
le32 (const guint8 *p)
{
  return p[0] | ((guint32) p[1] << 8) | ((guint32) p[2] << 16) | ((guint32) p[3] << 24);
}

static gboolean
read_one (Reader *r, GptdStageContext *ctx, guint index, guint64 *total, GError **error)
{
  const char *path = r->files->pdata[index];
  g_autoptr (GError) err = NULL;
  g_autoptr (GMappedFile) map = g_mapped_file_new (path, FALSE, &err);
  if (!map)
    {
      g_set_error (error, GPTD_STAGE_ERROR, GPTD_STAGE_ERROR_IO, "%s", err->message);
      return FALSE;
    }
  const guint8 *data = (const guint8 *) g_mapped_file_get_contents (map);
  gsize len = g_mapped_file_get_length (map);
  gsize width = r->format == FORMAT_U32 ? 4 : 2;
  gsize start = 0, n = 0;
  if (r->format == FORMAT_LLMC)
    {
      if (len < LLMC_HEADER_BYTES)
        {
          g_set_error (error, GPTD_STAGE_ERROR, GPTD_STAGE_ERROR_INPUT,
                       "%s: %" G_GSIZE_FORMAT " bytes, shorter than an llm.c shard header (1024)",
                       path, len);
          return FALSE;
        }
      guint32 magic = le32 (data), version = le32 (data + 4), count = le32 (data + 8);
      if (magic != LLMC_MAGIC)
        {
          g_set_error (error, GPTD_STAGE_ERROR, GPTD_STAGE_ERROR_INPUT,
                       "%s: not an llm.c token shard (magic %u, expected %u); for raw ids "
                       "set format=u16 or u32", path, magic, LLMC_MAGIC);
          return FALSE;
        }
      if (version != LLMC_VERSION)
        {
          g_set_error (error, GPTD_STAGE_ERROR, GPTD_STAGE_ERROR_INPUT,
                       "%s: llm.c shard version %u; only version %u (uint16 ids) is read",
                       path, version, LLMC_VERSION);
          return FALSE;
        }
      start = LLMC_HEADER_BYTES;
      n = count;
      if (len != start + (gsize) count * 2)
        {
          g_set_error (error, GPTD_STAGE_ERROR, GPTD_STAGE_ERROR_INPUT,
                       "%s: the header says %u tokens (%" G_GSIZE_FORMAT " bytes) but the "
                       "file has %" G_GSIZE_FORMAT " bytes%s", path, count,
                       start + (gsize) count * 2, len,
                       len < start + (gsize) count * 2 ? " (truncated?)" : "");
          return FALSE;
        }
    }
  else
    {
      if (len % width != 0)
        {
          g_set_error (error, GPTD_STAGE_ERROR, GPTD_STAGE_ERROR_INPUT,
                       "%s: %" G_GSIZE_FORMAT " bytes is not a whole number of %" G_GSIZE_FORMAT
                       "-byte ids (truncated?)", path, len, width);
          return FALSE;
        }
      n = len / width;
    }

  g_autofree guint32 *ids = g_new (guint32, MIN (n, r->chunk) + 1);
  gsize done = 0;
  do
    {
      if (gptd_stage_context_is_cancelled (ctx))
        {
          g_set_error (error, G_IO_ERROR, G_IO_ERROR_CANCELLED, "the run was cancelled");
          return FALSE;
        }
      gsize m = MIN (n - done, r->chunk);
      /* An empty file maps to no memory at all (data is NULL): no pointer
       * arithmetic on it. */
      const guint8 *p = m > 0 ? data + start + done * width : NULL;
      for (gsize i = 0; i < m; i++)
        {
          ids[i] = width == 2 ? (guint32) (p[2 * i] | (p[2 * i + 1] << 8)) : le32 (p + 4 * i);
          if (r->vocab_size && ids[i] >= r->vocab_size)
            {
              g_set_error (error, GPTD_STAGE_ERROR, GPTD_STAGE_ERROR_INPUT,
                           "%s: token %" G_GSIZE_FORMAT " is id %u, not below vocab-size %u",
                           path, done + i, ids[i], r->vocab_size);
              return FALSE;
            }
        }
      Gptd__Tokens msg = GPTD__TOKENS__INIT;
      msg.source = (char *) path;
      msg.ids = ids;
      msg.n_ids = m;
      msg.offset = start + done * width;
      msg.last = done + m == n;
      msg.index = index;
      msg.vocab_size = r->vocab_size;
      if (!gptd_stage_push (ctx, 0, &msg.base, error))
        return FALSE;
      done += m;
    }
  while (done < n);
  *total += n;
  return TRUE;
}

static gboolean
reader_run (gpointer data, GptdStageContext *ctx, GError **error)
{
  Reader *r = data;
  guint64 total = 0;
  for (guint i = 0; i < r->files->len; i++)
    if (!read_one (r, ctx, i, &total, error))
      return FALSE;
  gptd_stage_log (ctx, G_LOG_LEVEL_INFO, "read %" G_GUINT64_FORMAT " tokens from %u file%s",
                  total, r->files->len, r->files->len == 1 ? "" : "s");
  return TRUE;
}

const GptdStageType gptd__token_reader_type = {
  .name = "token-reader",
  .description = "Reads token files (llm.c shards or raw uint16/uint32 ids) as Tokens",
  .params = reader_params,
  .outputs = reader_outputs,
  .create = reader_create,
  .run = reader_run,
  .destroy = reader_destroy,
};
