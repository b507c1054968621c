/* table-source.c: the `table-source` stage — reads a delimited text file (TSV, or
 * CSV with RFC 4180 quoting) and emits one gptd.Document per row: the text column
 * as the text, the label column as the label (classification data sets such as the
 * SMS Spam Collection, `label<TAB>text`). Columns are chosen by 1-based index or,
 * with a header line, by name. Rows are checked as they are read: a row with too
 * few columns, an empty text or label, or a label outside labels= is an error naming
 * the file and line; invalid UTF-8 is handled as text-source does. */
#include "config.h"

#include <math.h>
#include <string.h>

#include <gio/gio.h>
#include <gptd/stage.h>
#include "core.h"

typedef struct {
  char *path;
  gboolean csv;
  gboolean header;
  gboolean replace;
  char *label_column;       /* as given: a 1-based index or a header name */
  char *text_column;
  GPtrArray *labels;        /* labels=, or NULL for any label */
} TableSource;

static const char *const format_choices[] = { "tsv", "csv", NULL };
static const char *const invalid_choices[] = { "error", "replace", NULL };

static const GptdParamSpec table_source_params[] = {
  { "path", GPTD_PARAM_PATH, NULL, 0, 0, NULL,
    "The file to read; relative to the pipeline file", GPTD_PARAM_REQUIRED | GPTD_PARAM_EXISTS },
  { "format", GPTD_PARAM_ENUM, "tsv", 0, 0, format_choices,
    "tsv: fields split on tabs, no quoting; csv: comma-separated with RFC 4180 quoting "
    "(\"...\" fields, \"\" for a quote, newlines inside quotes)", 0 },
  { "header", GPTD_PARAM_BOOL, "false", 0, 0, NULL,
    "The first line names the columns (and is not a row)", 0 },
  { "label-column", GPTD_PARAM_STRING, "1", 0, 0, NULL,
    "The label's column: a 1-based index (as cut and awk count) or, with header=true, "
    "a column name", 0 },
  { "text-column", GPTD_PARAM_STRING, "2", 0, 0, NULL,
    "The text's column: a 1-based index or, with header=true, a column name", 0 },
  { "labels", GPTD_PARAM_STRING, NULL, 0, 0, NULL,
    "The class names, comma-separated (e.g. ham,spam): a row whose label is not one of "
    "them is an error naming file and line; any label when not given", 0 },
  { "invalid", GPTD_PARAM_ENUM, "error", 0, 0, invalid_choices,
    "What invalid UTF-8 does: error stops the run naming file, line and byte offset; "
    "replace puts U+FFFD in its place", 0 },
  { NULL }
};

static const GptdPadSpec table_source_outputs[] = {
  { "default", "gptd.Document", 0 },
  { NULL }
};

/* Parses labels= into its names (trimmed); FALSE for an empty or repeated name. */
static GPtrArray *
parse_labels (const char *spec, GError **error)
{
  g_autoptr (GPtrArray) names = g_ptr_array_new_with_free_func (g_free);
  g_auto (GStrv) items = g_strsplit (spec, ",", -1);
  for (guint i = 0; items[i]; i++)
    {
      const char *name = g_strstrip (items[i]);
      if (*name == '\0')
        {
          g_set_error (error, GPTD_STAGE_ERROR, GPTD_STAGE_ERROR_FAILED,
                       "labels: name %u of \"%s\" is empty", i + 1, spec);
          return NULL;
        }
      for (guint k = 0; k < names->len; k++)
        if (g_str_equal (names->pdata[k], name))
          {
            g_set_error (error, GPTD_STAGE_ERROR, GPTD_STAGE_ERROR_FAILED,
                         "labels: \"%s\" is given twice", name);
            return NULL;
          }
      g_ptr_array_add (names, g_strdup (name));
    }
  return g_steal_pointer (&names);
}

/* A column given as a number: sets *index (0-based). FALSE when @spec is a name. */
static gboolean
column_index (const char *spec, guint *index)
{
  guint64 v = 0;
  if (!g_ascii_string_to_unsigned (spec, 10, 0, G_MAXUINT, &v, NULL))
    return FALSE;
  *index = v == 0 ? G_MAXUINT : (guint) v - 1;
  return TRUE;
}

static gboolean
table_source_check (const GptdParams *params, GError **error)
{
  static const char *const keys[] = { "label-column", "text-column" };
  gboolean header = gptd_params_get_bool (params, "header");
  guint idx[2];
  gboolean numeric[2];

  for (guint k = 0; k < 2; k++)
    {
      const char *spec = gptd_params_get_string (params, keys[k]);
      numeric[k] = column_index (spec, &idx[k]);
      if (numeric[k] && idx[k] == G_MAXUINT)
        {
          g_set_error (error, GPTD_STAGE_ERROR, GPTD_STAGE_ERROR_FAILED,
                       "%s: columns count from 1", keys[k]);
          return FALSE;
        }
      if (!numeric[k] && *spec == '\0')
        {
          g_set_error (error, GPTD_STAGE_ERROR, GPTD_STAGE_ERROR_FAILED,
                       "%s: give a 1-based column index or a column name", keys[k]);
          return FALSE;
        }
      if (!numeric[k] && !header)
        {
          g_set_error (error, GPTD_STAGE_ERROR, GPTD_STAGE_ERROR_FAILED,
                       "%s: \"%s\" is a column name, which needs header=true (or give "
                       "the column's 1-based index)", keys[k], spec);
          return FALSE;
        }
    }
  if (numeric[0] == numeric[1]
      && (numeric[0] ? idx[0] == idx[1]
                     : g_str_equal (gptd_params_get_string (params, keys[0]),
                                    gptd_params_get_string (params, keys[1]))))
    {
      g_set_error (error, GPTD_STAGE_ERROR, GPTD_STAGE_ERROR_FAILED,
                   "label-column and text-column name the same column");
      return FALSE;
    }
  if (gptd_params_has (params, "labels"))
    {
      g_autoptr (GPtrArray) names = parse_labels (gptd_params_get_string (params, "labels"),
                                                  error);
      if (names == NULL)
        return FALSE;
    }
  return TRUE;
}

static void
table_source_destroy (gpointer data)
{
  TableSource *self = data;
  if (self == NULL)
    return;
  g_free (self->path);
  g_free (self->label_column);
  g_free (self->text_column);
  if (self->labels)
    g_ptr_array_unref (self->labels);
  g_free (self);
}

static gpointer
table_source_create (GptdStageContext *ctx, const GptdParams *params, GError **error)
{
  if (!table_source_check (params, error))
    return NULL;
  TableSource *self = g_new0 (TableSource, 1);
  self->path = g_strdup (gptd_params_get_string (params, "path"));
  self->csv = gptd_params_get_int (params, "format") == 1;
  self->header = gptd_params_get_bool (params, "header");
  self->replace = gptd_params_get_int (params, "invalid") == 1;
  self->label_column = g_strdup (gptd_params_get_string (params, "label-column"));
  self->text_column = g_strdup (gptd_params_get_string (params, "text-column"));
  if (gptd_params_has (params, "labels"))
    self->labels = parse_labels (gptd_params_get_string (params, "labels"), NULL);
  if (!g_file_test (self->path, G_FILE_TEST_IS_REGULAR))
    {
      g_set_error (error, GPTD_STAGE_ERROR, GPTD_STAGE_ERROR_IO,
                   "%s: %s", self->path,
                   g_file_test (self->path, G_FILE_TEST_EXISTS) ? "not a regular file"
                                                                : "no such file");
      table_source_destroy (self);
      return NULL;
    }
  return self;
}

/* ---- Reading records ----------------------------------------------------------- */

/* Parses the record at buf[*pos..len) into @fields (unescaped, NUL-terminated),
 * advancing *pos past its line end and *line by the lines it spans. *blank is set
 * for an empty line. @where_path names the file in errors. */
static gboolean
parse_record (const char *buf, gsize len, gsize *pos, guint64 *line, gboolean csv,
              GPtrArray *fields, gboolean *blank, const char *where_path, GError **error)
{
  gsize p = *pos;
  gboolean any_quoted = FALSE;

  g_ptr_array_set_size (fields, 0);
  for (;;)
    {
      GString *field = g_string_new (NULL);
      gboolean end_of_record = FALSE;

      if (csv && p < len && buf[p] == '"')
        {
          guint64 quote_line = *line;
          any_quoted = TRUE;
          p++;
          for (;;)
            {
              if (p >= len)
                {
                  g_string_free (field, TRUE);
                  g_set_error (error, GPTD_STAGE_ERROR, GPTD_STAGE_ERROR_INPUT,
                               "%s:%" G_GUINT64_FORMAT ": a quoted field is not closed "
                               "before the end of the file", where_path, quote_line);
                  return FALSE;
                }
              if (buf[p] == '"')
                {
                  if (p + 1 < len && buf[p + 1] == '"')
                    {
                      g_string_append_c (field, '"');
                      p += 2;
                      continue;
                    }
                  p++;
                  break;
                }
              if (buf[p] == '\n')
                (*line)++;
              g_string_append_c (field, buf[p++]);
            }
          if (p >= len)
            end_of_record = TRUE;
          else if (buf[p] == ',')
            p++;
          else if (buf[p] == '\n' || (buf[p] == '\r' && p + 1 < len && buf[p + 1] == '\n'))
            {
              p += buf[p] == '\r' ? 2 : 1;
              (*line)++;
              end_of_record = TRUE;
            }
          else
            {
              g_string_free (field, TRUE);
              g_set_error (error, GPTD_STAGE_ERROR, GPTD_STAGE_ERROR_INPUT,
                           "%s:%" G_GUINT64_FORMAT ": '%c' after the closing quote of a "
                           "field (a quoted field ends at a comma or the end of the line)",
                           where_path, *line, g_ascii_isprint (buf[p]) ? buf[p] : '?');
              return FALSE;
            }
        }
      else
        {
          char sep = csv ? ',' : '\t';
          gsize s = p;
          while (p < len && buf[p] != sep && buf[p] != '\n')
            p++;
          gsize e = p;
          if (p < len && buf[p] == '\n' && e > s && buf[e - 1] == '\r')
            e--;
          g_string_append_len (field, buf + s, (gssize) (e - s));
          if (p >= len)
            end_of_record = TRUE;
          else if (buf[p] == sep)
            p++;
          else
            {
              p++;
              (*line)++;
              end_of_record = TRUE;
            }
        }
      g_ptr_array_add (fields, g_string_free (field, FALSE));
      if (end_of_record)
        break;
    }
  *pos = p;
  *blank = fields->len == 1 && !any_quoted && ((char *) fields->pdata[0])[0] == '\0';
  return TRUE;
}

typedef struct {
  const char *buf;
  gsize len;
  gsize pos;
  guint64 line;           /* the line at pos, 1-based */
} Reader;

/* Reads the next non-blank record into @fields, checking its UTF-8 first; sets
 * *line to the line where it starts. FALSE with *eof at the end of the file. */
static gboolean
next_record (TableSource *self, GptdStageContext *ctx, Reader *r, GPtrArray *fields,
             guint64 *line, gboolean *eof, GError **error)
{
  *eof = FALSE;
  for (;;)
    {
      gboolean blank = FALSE;
      if (r->pos >= r->len)
        {
          *eof = TRUE;
          return FALSE;
        }
      gsize start = r->pos;
      *line = r->line;
      if (!parse_record (r->buf, r->len, &r->pos, &r->line, self->csv, fields, &blank,
                         self->path, error))
        return FALSE;
      g_autofree char *where = g_strdup_printf ("%s:%" G_GUINT64_FORMAT, self->path, *line);
      g_autofree char *fixed = NULL;
      gsize fixed_len = 0;
      if (!gptd__core_check_utf8 (ctx, where, start, (const guint8 *) r->buf + start,
                                  r->pos - start, self->replace, &fixed, &fixed_len, error))
        return FALSE;
      if (fixed)
        {
          /* Parse the repaired record again: U+FFFD is neither a quote, a separator
           * nor a line end, so it splits as the raw bytes did. */
          gsize p = 0;
          guint64 l = *line;
          if (!parse_record (fixed, fixed_len, &p, &l, self->csv, fields, &blank,
                             self->path, error))
            return FALSE;
        }
      if (!blank)
        return TRUE;
    }
}

/* Resolves a column spec to a 0-based index, by name through @header. */
static gboolean
resolve_column (TableSource *self, const char *key, const char *spec, GPtrArray *header,
                guint64 header_line, guint *index, GError **error)
{
  if (column_index (spec, index))
    return TRUE;
  for (guint k = 0; header && k < header->len; k++)
    if (g_str_equal (header->pdata[k], spec))
      {
        *index = k;
        return TRUE;
      }
  g_autoptr (GString) names = g_string_new (NULL);
  for (guint k = 0; header && k < header->len; k++)
    g_string_append_printf (names, "%s\"%s\"", k ? ", " : "", (char *) header->pdata[k]);
  g_set_error (error, GPTD_STAGE_ERROR, GPTD_STAGE_ERROR_INPUT,
               "%s:%" G_GUINT64_FORMAT ": %s: no column is named \"%s\" (the header "
               "names %s)", self->path, header_line, key, spec, names->str);
  return FALSE;
}

static void
report (GptdStageContext *ctx, guint64 done, guint64 total)
{
  Gptd__Progress p = GPTD__PROGRESS__INIT;
  p.loss = p.val_loss = NAN;
  p.eta_s = -1;
  p.items = done;
  p.total_items = total;
  p.unit = (char *) "bytes";
  gptd_stage_progress (ctx, &p);
}

static gboolean
table_source_run (gpointer data, GptdStageContext *ctx, GError **error)
{
  TableSource *self = data;
  g_autoptr (GError) local = NULL;
  g_autoptr (GMappedFile) mapped = g_mapped_file_new (self->path, FALSE, &local);
  if (mapped == NULL)
    {
      g_set_error (error, GPTD_STAGE_ERROR, GPTD_STAGE_ERROR_IO, "%s", local->message);
      return FALSE;
    }
  Reader r = { g_mapped_file_get_contents (mapped), g_mapped_file_get_length (mapped), 0, 1 };
  if (r.len >= 3 && memcmp (r.buf, "\xEF\xBB\xBF", 3) == 0)
    r.pos = 3;   /* a byte-order mark */

  g_autoptr (GPtrArray) fields = g_ptr_array_new_with_free_func (g_free);
  g_autoptr (GPtrArray) header = NULL;
  guint64 line = 0, header_line = 0;
  gboolean eof = FALSE;
  if (self->header)
    {
      if (!next_record (self, ctx, &r, fields, &header_line, &eof, error))
        {
          if (eof)
            g_set_error (error, GPTD_STAGE_ERROR, GPTD_STAGE_ERROR_INPUT,
                         "%s: the file is empty (header=true expects a header line)",
                         self->path);
          return FALSE;
        }
      header = g_steal_pointer (&fields);
      fields = g_ptr_array_new_with_free_func (g_free);
    }
  guint label_col, text_col;
  if (!resolve_column (self, "label-column", self->label_column, header, header_line,
                       &label_col, error)
      || !resolve_column (self, "text-column", self->text_column, header, header_line,
                          &text_col, error))
    return FALSE;
  if (label_col == text_col)
    {
      g_set_error (error, GPTD_STAGE_ERROR, GPTD_STAGE_ERROR_INPUT,
                   "%s: label-column and text-column are both column %u", self->path,
                   label_col + 1);
      return FALSE;
    }
  guint need = MAX (label_col, text_col) + 1;

  /* Rows per label, in labels= order or in order of first appearance. */
  g_autoptr (GPtrArray) names = g_ptr_array_new_with_free_func (g_free);
  g_autoptr (GArray) counts = g_array_new (FALSE, TRUE, sizeof (guint64));
  if (self->labels)
    for (guint k = 0; k < self->labels->len; k++)
      g_ptr_array_add (names, g_strdup (self->labels->pdata[k]));
  g_array_set_size (counts, names->len);

  guint64 rows = 0;
  gint64 last_report = g_get_monotonic_time ();
  while (next_record (self, ctx, &r, fields, &line, &eof, error))
    {
      if (gptd_stage_context_is_cancelled (ctx))
        {
          g_set_error (error, G_IO_ERROR, G_IO_ERROR_CANCELLED, "the run was cancelled");
          return FALSE;
        }
      if (fields->len < need)
        {
          g_set_error (error, GPTD_STAGE_ERROR, GPTD_STAGE_ERROR_INPUT,
                       "%s:%" G_GUINT64_FORMAT ": %u column%s (%s), but the label is "
                       "column %u and the text column %u", self->path, line, fields->len,
                       fields->len == 1 ? "" : "s",
                       self->csv ? "comma-separated" : "tab-separated",
                       label_col + 1, text_col + 1);
          return FALSE;
        }
      const char *label = fields->pdata[label_col];
      const char *text = fields->pdata[text_col];
      if (*label == '\0')
        {
          g_set_error (error, GPTD_STAGE_ERROR, GPTD_STAGE_ERROR_INPUT,
                       "%s:%" G_GUINT64_FORMAT ": the label (column %u) is empty",
                       self->path, line, label_col + 1);
          return FALSE;
        }
      guint id = 0;
      while (id < names->len && !g_str_equal (names->pdata[id], label))
        id++;
      if (id == names->len)
        {
          if (self->labels)
            {
              g_autoptr (GString) list = g_string_new (NULL);
              for (guint k = 0; k < self->labels->len; k++)
                g_string_append_printf (list, "%s%s", k ? "," : "",
                                        (char *) self->labels->pdata[k]);
              g_set_error (error, GPTD_STAGE_ERROR, GPTD_STAGE_ERROR_INPUT,
                           "%s:%" G_GUINT64_FORMAT ": label \"%s\" is not one of "
                           "labels=%s", self->path, line, label, list->str);
              return FALSE;
            }
          g_ptr_array_add (names, g_strdup (label));
          g_array_set_size (counts, names->len);
        }
      if (*text == '\0')
        {
          g_set_error (error, GPTD_STAGE_ERROR, GPTD_STAGE_ERROR_INPUT,
                       "%s:%" G_GUINT64_FORMAT ": the text (column %u) is empty",
                       self->path, line, text_col + 1);
          return FALSE;
        }
      g_array_index (counts, guint64, id)++;

      g_autofree char *source = g_strdup_printf ("%s:%" G_GUINT64_FORMAT, self->path, line);
      Gptd__Document doc = GPTD__DOCUMENT__INIT;
      doc.source = source;
      doc.text.data = (guint8 *) text;
      doc.text.len = strlen (text);
      doc.last = TRUE;
      doc.index = rows++;
      doc.label = (char *) label;
      if (!gptd_stage_push (ctx, 0, &doc.base, error))
        return FALSE;

      gint64 now = g_get_monotonic_time ();
      if (now - last_report > G_USEC_PER_SEC / 4)
        {
          report (ctx, r.pos, r.len);
          last_report = now;
        }
    }
  if (!eof)
    return FALSE;
  report (ctx, r.len, r.len);

  g_autoptr (GString) per_label = g_string_new (NULL);
  for (guint k = 0; k < names->len; k++)
    g_string_append_printf (per_label, "%s%s %" G_GUINT64_FORMAT, k ? ", " : "",
                            (char *) names->pdata[k], g_array_index (counts, guint64, k));
  gptd_stage_log (ctx, G_LOG_LEVEL_INFO, "read %" G_GUINT64_FORMAT " row%s from %s: %s",
                  rows, rows == 1 ? "" : "s", self->path, per_label->str);
  return TRUE;
}

const GptdStageType gptd__table_source_type = {
  .name = "table-source",
  .description = "Reads a TSV or CSV file as labelled Documents, one per row "
                 "(classification data sets)",
  .params = table_source_params,
  .inputs = NULL,
  .outputs = table_source_outputs,
  .check = table_source_check,
  .create = table_source_create,
  .run = table_source_run,
  .destroy = table_source_destroy,
};
