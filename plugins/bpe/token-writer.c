/* token-writer.c: the `token-writer` stage — writes the ids of the Tokens it
 * receives to one file: format=llmc is llm.c's shard layout (a header of 256
 * little-endian int32: magic 20240520, version 1, token count; then uint16 ids),
 * u16 and u32 are raw little-endian ids. The file is written under a temporary
 * name, synced and renamed at the end, so a failed run leaves no partial file. */
#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include <glib/gstdio.h>

#include "bpe-plugin.h"

#define LLMC_MAGIC 20240520
#define LLMC_VERSION 1
#define LLMC_HEADER_INTS 256

enum { FORMAT_LLMC, FORMAT_U16, FORMAT_U32 };
static const char *const format_choices[] = { "llmc", "u16", "u32", NULL };

typedef struct {
  char    *path;
  char    *tmp_path;
  int      fd;
  int      format;
  guint64  count;
  guint8  *buf;
  gsize    buf_len;
  gboolean committed;
} Writer;

#define BUF_SIZE (1u << 20)

static const GptdParamSpec writer_params[] = {
  { "path", GPTD_PARAM_PATH, NULL, 0, 0, NULL, "The file to write (replaced at the end)",
    GPTD_PARAM_REQUIRED },
  { "format", GPTD_PARAM_ENUM, "llmc", 0, 0, format_choices,
    "llmc: llm.c's shard (256-int32 header, uint16 ids); u16 or u32: raw little-endian ids",
    0 },
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
  g_set_error (error, GPTD_STAGE_ERROR, GPTD_STAGE_ERROR_IO, "%s %s: %s", what, w->path,
               g_strerror (e));
  return FALSE;
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

static void
writer_destroy (gpointer data)
{
  Writer *w = data;
  if (!w)
    return;
  if (w->fd >= 0)
    close (w->fd);
  if (w->tmp_path && !w->committed)
    g_unlink (w->tmp_path);
  g_free (w->path);
  g_free (w->tmp_path);
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
  g_autofree char *dir = g_path_get_dirname (w->path);
  g_autofree char *base = g_path_get_basename (w->path);
  w->tmp_path = g_strdup_printf ("%s/.%s.tmp-XXXXXX", dir, base);
  w->fd = g_mkstemp_full (w->tmp_path, O_WRONLY | O_CLOEXEC, 0644);
  if (w->fd < 0)
    {
      int e = errno;
      g_set_error (error, GPTD_STAGE_ERROR, GPTD_STAGE_ERROR_IO, "cannot create a file beside %s: %s",
                   w->path, g_strerror (e));
      g_clear_pointer (&w->tmp_path, g_free);
      writer_destroy (w);
      return NULL;
    }
  w->buf = g_malloc (BUF_SIZE);
  if (w->format == FORMAT_LLMC)
    {
      /* The header, with the count filled in at the end. */
      gint32 header[LLMC_HEADER_INTS] = { 0 };
      if (!write_all (w, header, sizeof header, error))
        {
          writer_destroy (w);
          return NULL;
        }
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
      if (width == 2 && id > G_MAXUINT16)
        {
          g_set_error (error, GPTD_STAGE_ERROR, GPTD_STAGE_ERROR_INPUT,
                       "%s: token id %u (token %" G_GUINT64_FORMAT " of the file) does not fit "
                       "in 16 bits; use format=u32", w->path, id, w->count);
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
    }
  return TRUE;
}

static gboolean
writer_finish (gpointer data, GptdStageContext *ctx, GError **error)
{
  Writer *w = data;
  if (!flush_buf (w, error))
    return FALSE;
  if (w->format == FORMAT_LLMC)
    {
      if (w->count > G_MAXINT32)
        {
          g_set_error (error, GPTD_STAGE_ERROR, GPTD_STAGE_ERROR_INPUT,
                       "%s: %" G_GUINT64_FORMAT " tokens do not fit in an llm.c shard "
                       "(at most %d)", w->path, w->count, G_MAXINT32);
          return FALSE;
        }
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
  if (g_rename (w->tmp_path, w->path) != 0)
    return io_error (w, "cannot rename the temporary file to", error);
  w->committed = TRUE;
  g_autofree char *dir = g_path_get_dirname (w->path);
  int dfd = open (dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (dfd >= 0)
    {
      fsync (dfd);
      close (dfd);
    }
  gptd_stage_log (ctx, G_LOG_LEVEL_INFO, "wrote %" G_GUINT64_FORMAT " tokens to %s (%s)",
                  w->count, w->path, format_choices[w->format]);
  return TRUE;
}

const GptdStageType gptd_token_writer_type = {
  .name = "token-writer",
  .description = "Writes token ids to a file: an llm.c shard (format=llmc) or raw "
                 "little-endian uint16/uint32",
  .params = writer_params,
  .inputs = writer_inputs,
  .outputs = NULL,
  .create = writer_create,
  .process = writer_process,
  .finish = writer_finish,
  .destroy = writer_destroy,
};
