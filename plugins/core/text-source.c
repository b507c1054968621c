/* text-source.c: the `text-source` stage — reads text files (one file, a glob, or a
 * comma-separated list of either) and emits them as gptd.Document messages, streaming
 * large files in chunks cut on UTF-8 character boundaries. Invalid UTF-8 is an error
 * naming the file and byte offset, or is replaced with U+FFFD (invalid=replace). */
#include "config.h"

#include <errno.h>
#include <math.h>
#include <glob.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

#include <gio/gio.h>
#include <gptd/stage.h>
#include "core.h"

typedef struct {
  GPtrArray *files;       /* absolute paths, in order */
  guint64 total_bytes;
  gsize chunk_size;
  gboolean replace;
  char *label;
} TextSource;

static const char *const invalid_choices[] = { "error", "replace", NULL };

static const GptdParamSpec text_source_params[] = {
  { "path", GPTD_PARAM_STRING, NULL, 0, 0, NULL,
    "The files to read: a file, a glob (*.txt) or a comma-separated list of them; "
    "relative to the pipeline file", GPTD_PARAM_REQUIRED },
  { "chunk-size", GPTD_PARAM_INT, "1048576", 16, 1073741824.0, NULL,
    "Largest Document in bytes: larger files are streamed in chunks of this size", 0 },
  { "invalid", GPTD_PARAM_ENUM, "error", 0, 0, invalid_choices,
    "What invalid UTF-8 does: error stops the run naming file and byte offset; replace "
    "puts U+FFFD in its place", 0 },
  { "label", GPTD_PARAM_STRING, NULL, 0, 0, NULL,
    "A class label given to every Document (classification data)", 0 },
  { NULL }
};

static const GptdPadSpec text_source_outputs[] = {
  { "default", "gptd.Document", 0 },
  { NULL }
};

static gboolean
has_glob_chars (const char *s)
{
  return strpbrk (s, "*?[") != NULL;
}

/* Expands the path list into files; every file must be a readable regular file. */
static gboolean
collect_files (const GptdParams *params, const char *spec, GPtrArray *files,
               guint64 *total, GError **error)
{
  g_auto (GStrv) items = g_strsplit (spec, ",", -1);
  for (guint i = 0; items[i]; i++)
    {
      char *item = g_strstrip (items[i]);
      if (*item == '\0')
        continue;
      g_autofree char *abs = gptd_params_resolve_path (params, item);
      g_autoptr (GPtrArray) found = g_ptr_array_new_with_free_func (g_free);
      if (has_glob_chars (item))
        {
          glob_t g;
          int rc = glob (abs, GLOB_ERR, NULL, &g);
          if (rc == GLOB_NOMATCH)
            {
              g_set_error (error, GPTD_STAGE_ERROR, GPTD_STAGE_ERROR_IO,
                           "no file matches %s", abs);
              return FALSE;
            }
          if (rc != 0)
            {
              g_set_error (error, GPTD_STAGE_ERROR, GPTD_STAGE_ERROR_IO,
                           "cannot expand %s: %s", abs, g_strerror (errno));
              return FALSE;
            }
          for (size_t k = 0; k < g.gl_pathc; k++)   /* glob() sorts its results */
            g_ptr_array_add (found, g_strdup (g.gl_pathv[k]));
          globfree (&g);
        }
      else
        g_ptr_array_add (found, g_steal_pointer (&abs));

      for (guint k = 0; k < found->len; k++)
        {
          const char *path = found->pdata[k];
          struct stat st;
          if (stat (path, &st) != 0)
            {
              int e = errno;
              g_set_error (error, GPTD_STAGE_ERROR, GPTD_STAGE_ERROR_IO, "%s: %s", path,
                           g_strerror (e));
              return FALSE;
            }
          if (S_ISDIR (st.st_mode))
            {
              if (has_glob_chars (item))
                continue;   /* a glob may match directories; skip them */
              g_set_error (error, GPTD_STAGE_ERROR, GPTD_STAGE_ERROR_IO,
                           "%s is a directory (use a glob such as %s/*.txt)", path, path);
              return FALSE;
            }
          *total += (guint64) st.st_size;
          g_ptr_array_add (files, g_strdup (path));
        }
    }
  if (files->len == 0)
    {
      g_set_error (error, GPTD_STAGE_ERROR, GPTD_STAGE_ERROR_IO,
                   "path '%s' names no file", spec);
      return FALSE;
    }
  return TRUE;
}

static gpointer
text_source_create (GptdStageContext *ctx, const GptdParams *params, GError **error)
{
  TextSource *self = g_new0 (TextSource, 1);
  self->files = g_ptr_array_new_with_free_func (g_free);
  self->chunk_size = (gsize) gptd_params_get_int (params, "chunk-size");
  self->replace = gptd_params_get_int (params, "invalid") == 1;
  self->label = g_strdup (gptd_params_get_string (params, "label"));
  if (!collect_files (params, gptd_params_get_string (params, "path"), self->files,
                      &self->total_bytes, error))
    {
      g_ptr_array_unref (self->files);
      g_free (self->label);
      g_free (self);
      return NULL;
    }
  return self;
}

static void
text_source_destroy (gpointer data)
{
  TextSource *self = data;
  if (self == NULL)
    return;
  g_ptr_array_unref (self->files);
  g_free (self->label);
  g_free (self);
}

/* The length of the longest prefix of buf[0..len) that does not end inside a
 * multi-byte character (a lead byte whose continuation bytes are not all there yet). */
static gsize
complete_prefix (const guint8 *buf, gsize len)
{
  gsize back = MIN (len, 4);
  for (gsize k = 1; k <= back; k++)
    {
      guint8 c = buf[len - k];
      if ((c & 0xC0) == 0x80)
        continue;               /* a continuation byte: keep looking for the lead */
      gsize need = c < 0x80 ? 1 : (c & 0xE0) == 0xC0 ? 2 : (c & 0xF0) == 0xE0 ? 3
                 : (c & 0xF8) == 0xF0 ? 4 : 1;
      return need > k ? len - k : len;
    }
  return len;
}

static gboolean
emit_chunk (TextSource *self, GptdStageContext *ctx, const char *path, guint64 index,
            guint64 offset, const guint8 *data, gsize len, gboolean last, GError **error)
{
  Gptd__Document doc = GPTD__DOCUMENT__INIT;
  g_autofree char *fixed = NULL;
  gsize fixed_len = 0;
  if (!gptd__core_check_utf8 (ctx, path, offset, data, len, self->replace, &fixed,
                              &fixed_len, error))
    return FALSE;
  if (fixed)
    {
      data = (const guint8 *) fixed;
      len = fixed_len;
    }
  doc.source = (char *) path;
  doc.text.data = (guint8 *) data;
  doc.text.len = len;
  doc.offset = offset;
  doc.last = last;
  doc.index = index;
  if (self->label)
    doc.label = self->label;
  return gptd_stage_push (ctx, 0, &doc.base, error);
}

static gboolean
read_file (TextSource *self, GptdStageContext *ctx, guint64 index, guint64 *done_bytes,
           gint64 *last_report, GError **error)
{
  const char *path = self->files->pdata[index];
  FILE *f = fopen (path, "rb");
  if (f == NULL)
    {
      int e = errno;
      g_set_error (error, GPTD_STAGE_ERROR, GPTD_STAGE_ERROR_IO, "%s: %s", path,
                   g_strerror (e));
      return FALSE;
    }
  /* The buffer holds up to 3 bytes carried from the last chunk plus a new read. */
  gsize cap = self->chunk_size + 4;
  g_autofree guint8 *buf = g_malloc (cap);
  gsize have = 0;
  guint64 offset = 0;           /* source offset of buf[0] */
  gboolean sent_any = FALSE, ok = TRUE;
  for (;;)
    {
      if (gptd_stage_context_is_cancelled (ctx))
        {
          g_set_error (error, G_IO_ERROR, G_IO_ERROR_CANCELLED, "the run was cancelled");
          ok = FALSE;
          break;
        }
      gsize want = self->chunk_size > have ? self->chunk_size - have : 1;
      gsize n = fread (buf + have, 1, want, f);
      if (n < want && ferror (f))
        {
          int e = errno;
          g_set_error (error, GPTD_STAGE_ERROR, GPTD_STAGE_ERROR_IO,
                       "%s: read failed at byte offset %" G_GUINT64_FORMAT ": %s", path,
                       offset + have, g_strerror (e));
          ok = FALSE;
          break;
        }
      have += n;
      /* Peek one byte to know whether this chunk is the last. */
      int next = n < want ? EOF : fgetc (f);
      gboolean eof = next == EOF;
      if (!eof)
        ungetc (next, f);
      if (have == 0 && sent_any)
        break;
      gsize cut = eof ? have : complete_prefix (buf, have);
      if (cut == 0)
        cut = have;   /* no boundary at all: let validation report it */
      if (!emit_chunk (self, ctx, path, index, offset, buf, cut, eof, error))
        {
          ok = FALSE;
          break;
        }
      sent_any = TRUE;
      *done_bytes += cut;
      memmove (buf, buf + cut, have - cut);
      offset += cut;
      have -= cut;

      gint64 now = g_get_monotonic_time ();
      if (eof || now - *last_report > G_USEC_PER_SEC / 4)
        {
          Gptd__Progress p = GPTD__PROGRESS__INIT;
          p.loss = p.val_loss = NAN;
          p.eta_s = -1;
          p.items = *done_bytes;
          p.total_items = MAX (self->total_bytes, *done_bytes);
          p.unit = (char *) "bytes";
          gptd_stage_progress (ctx, &p);
          *last_report = now;
        }
      if (eof)
        break;
    }
  fclose (f);
  return ok;
}

static gboolean
text_source_run (gpointer data, GptdStageContext *ctx, GError **error)
{
  TextSource *self = data;
  guint64 done = 0;
  gint64 last_report = 0;
  for (guint i = 0; i < self->files->len; i++)
    if (!read_file (self, ctx, i, &done, &last_report, error))
      return FALSE;
  gptd_stage_log (ctx, G_LOG_LEVEL_INFO, "read %u file%s, %" G_GUINT64_FORMAT " bytes",
                  self->files->len, self->files->len == 1 ? "" : "s", done);
  return TRUE;
}

/* Load-time check: the files exist and the globs match (the same expansion the run
 * does, so a pipeline that validates finds its files). */
static gboolean
text_source_check (const GptdParams *params, GError **error)
{
  const char *path = gptd_params_get_string (params, "path");
  if (path == NULL)
    return TRUE;   /* a missing path= is reported as such */
  g_autoptr (GPtrArray) files = g_ptr_array_new_with_free_func (g_free);
  guint64 total = 0;
  return collect_files (params, path, files, &total, error);
}

const GptdStageType gptd__text_source_type = {
  .name = "text-source",
  .description = "Reads text files (a file, a glob or a list) as Documents, streaming "
                 "large files in chunks",
  .params = text_source_params,
  .inputs = NULL,
  .outputs = text_source_outputs,
  .check = text_source_check,
  .create = text_source_create,
  .run = text_source_run,
  .destroy = text_source_destroy,
};
