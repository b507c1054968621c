/* json-source.c: the json-source stage (-> gptd.Document), records read from a JSON
 * array of objects (the book's instruction-data.json) or from JSON Lines.
 *
 * Each record becomes one Document whose `record` is the object as compact JSON,
 * with empty text, source "PATH:N" and index N (0-based, in file order). An array
 * file is parsed whole; JSON Lines are read and parsed one line at a time, never
 * whole. Both go through gptd_json_load_bounded(): a file (or a line) larger than
 * max-bytes or nested deeper than GPTD_JSON_MAX_DEPTH is refused before json-glib
 * parses it. Malformed JSON and nesting too deep are errors naming the file, line
 * and column; a record without one of the required= fields is an error naming the
 * record.
 *
 * select= emits one split of the records only, cut as instruction-collator cuts
 * them (split=, split-order=, gptd__instruct_split_bounds()): select=test gives
 * the book's test_data = data[train_portion:train_portion + test_portion], the
 * prompts a responder answers. JSON Lines are then read twice, a first pass
 * counting the records.
 */
#include "instruct-plugin.h"
#include "collate.h"

#include <gptd/windows.h>

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <string.h>

#include <json-glib/json-glib.h>

#include <gptd/json-load.h>

static const char *const format_choices[] = { "auto", "array", "jsonl", NULL };
static const char *const select_choices[] = { "all", "train", "validation", "test", NULL };

static const GptdParamSpec json_source_params[] = {
  { "path", GPTD_PARAM_PATH, NULL, 0, 0, NULL,
    "The JSON file: an array of objects, or JSON Lines (one object per line)",
    GPTD_PARAM_REQUIRED | GPTD_PARAM_EXISTS },
  { "format", GPTD_PARAM_ENUM, "auto", 0, 0, format_choices,
    "array, jsonl, or auto: an array when the first character that is not white space "
    "is '[', else JSON Lines", 0 },
  { "required", GPTD_PARAM_STRING, "instruction,input,output", 0, 0, NULL,
    "Comma-separated fields every record must have (empty: none)", 0 },
  { "max-bytes", GPTD_PARAM_INT, "67108864", 2, (double) G_MAXINT32, NULL,
    "Largest array file, or line of JSON Lines, accepted (bytes)", 0 },
  { "limit", GPTD_PARAM_INT, "0", 0, (double) G_MAXINT64, NULL,
    "Read at most this many records; 0 for all (a split is cut from these)", 0 },
  { "select", GPTD_PARAM_ENUM, "all", 0, 0, select_choices,
    "all, or emit only this split of the records, cut as instruction-collator cuts "
    "them with the same split= and split-order= (test: the book's test_data)", 0 },
  { "split", GPTD_PARAM_DOUBLE_LIST, "0.85,0.1,0.05", 0, 1, NULL,
    "With select=: fractions of the records, in file order, for the splits of "
    "split-order (as instruction-collator's split=)", 0 },
  { "split-order", GPTD_PARAM_STRING, "train,test,validation", 0, 0, NULL,
    "With select=: which split each fraction of split= is, in file order", 0 },
  { NULL }
};

static const GptdPadSpec json_source_outputs[] = {
  { "default", "gptd.Document", 0 },
  { NULL }
};

typedef struct {
  char *path;
  int format;              /* index in format_choices */
  char **required;
  gsize max_bytes;
  guint64 limit;
  int select;              /* the selected split's position in split=, or -1: all */
  double fractions[GPTD__INSTRUCT_MAX_SPLITS];
  guint n_fractions;
  int split_of[GPTD__INSTRUCT_MAX_SPLITS];
  guint64 first, end;      /* the records emitted: [first, end) */
  guint64 n_records;       /* records read */
  guint64 n_emitted;
  gint64 last_report;
} JsonSource;

/* Checks select= against split= and split-order=; sets *position to the place
 * of the selected split in split= (-1 with select=all). */
static gboolean
check_select (const GptdParams *params, int *split_of, guint *n_fractions, int *position,
              GError **error)
{
  gsize n = 0;
  const double *fractions = gptd_params_get_double_list (params, "split", &n);
  const char *order = gptd_params_get_string (params, "split-order");
  gint64 select = gptd_params_get_int (params, "select");

  *position = -1;
  if (select == 0)
    return TRUE;
  if (!gptd__instruct_split_parse (order, fractions, n, split_of, n_fractions, error))
    return FALSE;
  int k = gptd__windows_split_lookup (select_choices[select]);
  for (guint i = 0; i < *n_fractions; i++)
    if (split_of[i] == k)
      *position = (int) i;
  if (*position < 0)
    {
      g_set_error (error, GPTD_STAGE_ERROR, GPTD_STAGE_ERROR_FAILED,
                   "select: split=%s with split-order=%s has no %s split",
                   gptd_params_get_string (params, "split"), order, select_choices[select]);
      return FALSE;
    }
  return TRUE;
}

static gboolean
json_source_check (const GptdParams *params, GError **error)
{
  int split_of[GPTD__INSTRUCT_MAX_SPLITS];
  guint n;
  int position;
  return check_select (params, split_of, &n, &position, error);
}

static void
json_source_destroy (gpointer data)
{
  JsonSource *self = data;
  if (self == NULL)
    return;
  g_free (self->path);
  g_strfreev (self->required);
  g_free (self);
}

static gpointer
json_source_create (GptdStageContext *ctx, const GptdParams *params, GError **error)
{
  JsonSource *self = g_new0 (JsonSource, 1);
  g_auto (GStrv) fields = g_strsplit (gptd_params_get_string (params, "required"), ",", -1);
  g_autoptr (GPtrArray) required = g_ptr_array_new ();

  self->path = g_strdup (gptd_params_get_string (params, "path"));
  self->format = (int) gptd_params_get_int (params, "format");
  self->max_bytes = (gsize) gptd_params_get_int (params, "max-bytes");
  self->limit = (guint64) gptd_params_get_int (params, "limit");
  self->select = -1;
  int position = -1;
  if (!check_select (params, self->split_of, &self->n_fractions, &position, error))
    {
      json_source_destroy (self);
      return NULL;
    }
  if (position >= 0)
    {
      gsize n = 0;
      const double *fractions = gptd_params_get_double_list (params, "split", &n);
      memcpy (self->fractions, fractions, n * sizeof (double));
      self->select = position;
    }
  for (guint i = 0; fields[i]; i++)
    {
      char *f = g_strstrip (fields[i]);
      if (*f)
        g_ptr_array_add (required, g_strdup (f));
    }
  g_ptr_array_add (required, NULL);
  self->required = (char **) g_ptr_array_free (g_steal_pointer (&required), FALSE);
  if (!g_file_test (self->path, G_FILE_TEST_IS_REGULAR))
    {
      g_set_error (error, GPTD_STAGE_ERROR, GPTD_STAGE_ERROR_IO,
                   "path: %s is not a readable file", self->path);
      json_source_destroy (self);
      return NULL;
    }
  return self;
}

/* Line and column (1-based, in bytes) of byte @offset of @text, whose first byte is
 * on line @first_line. */
static void
position_of (const char *text, gsize offset, guint64 first_line, guint64 *line,
             guint64 *col)
{
  const char *nl = NULL;
  *line = first_line;
  for (gsize i = 0; i < offset; i++)
    if (text[i] == '\n')
      {
        (*line)++;
        nl = text + i;
      }
  *col = nl ? (guint64) (text + offset - nl) : offset + 1;
}

/* Turns an error of gptd_json_load_bounded() on @text (@len bytes, starting on
 * line @first_line of @path; NULL when not at hand) into "PATH:LINE:COL: ...". */
static void
set_load_error (GError **error, const char *path, const char *text, gsize len,
                guint64 first_line, GError *err)
{
  g_autofree char *prefix = g_strdup_printf ("%s: not valid JSON: ", path);
  unsigned long line = 0, col = 0;
  gsize off = 0;
  int used = 0;

  if (g_error_matches (err, GPTD_JSON_ERROR, GPTD_JSON_ERROR_SYNTAX)
      && g_str_has_prefix (err->message, prefix)
      && sscanf (err->message + strlen (prefix), "%lu:%lu:%n", &line, &col, &used) == 2
      && used > 0)
    {
      const char *rest = err->message + strlen (prefix) + used;
      while (*rest == ' ')
        rest++;
      if (g_str_has_prefix (rest, "Parse error: "))
        rest += strlen ("Parse error: ");
      g_set_error (error, GPTD_STAGE_ERROR, GPTD_STAGE_ERROR_INPUT,
                   "%s:%" G_GUINT64_FORMAT ":%lu: malformed JSON: %s", path,
                   first_line + line - 1, col, rest);
    }
  else if (g_error_matches (err, GPTD_JSON_ERROR, GPTD_JSON_ERROR_TOO_DEEP) && text != NULL
           && !gptd_json_check_depth (text, len, GPTD_JSON_MAX_DEPTH, &off))
    {
      guint64 l, c;
      position_of (text, off, first_line, &l, &c);
      g_set_error (error, GPTD_STAGE_ERROR, GPTD_STAGE_ERROR_INPUT,
                   "%s:%" G_GUINT64_FORMAT ":%" G_GUINT64_FORMAT ": JSON nested deeper "
                   "than %u levels of arrays and objects", path, l, c,
                   (guint) GPTD_JSON_MAX_DEPTH);
    }
  else if (g_error_matches (err, GPTD_JSON_ERROR, GPTD_JSON_ERROR_TOO_LARGE))
    g_set_error (error, GPTD_STAGE_ERROR, GPTD_STAGE_ERROR_INPUT, "%s (max-bytes)",
                 err->message);
  else
    g_set_error (error, GPTD_STAGE_ERROR,
                 err->domain == G_FILE_ERROR ? GPTD_STAGE_ERROR_IO : GPTD_STAGE_ERROR_INPUT,
                 "%s", err->message);
}

/* Checks one record and pushes it. @line is its line in the file (0: unknown). */
static gboolean
emit_record (JsonSource *self, GptdStageContext *ctx, JsonNode *node, guint64 line,
             GError **error)
{
  g_autofree char *where = line > 0
      ? g_strdup_printf ("%s:%" G_GUINT64_FORMAT ": record %" G_GUINT64_FORMAT, self->path,
                         line, self->n_records)
      : g_strdup_printf ("%s: record %" G_GUINT64_FORMAT, self->path, self->n_records);

  if (!JSON_NODE_HOLDS_OBJECT (node))
    {
      g_set_error (error, GPTD_STAGE_ERROR, GPTD_STAGE_ERROR_INPUT,
                   "%s is a JSON %s, not an object", where, json_node_type_name (node));
      return FALSE;
    }
  JsonObject *obj = json_node_get_object (node);
  for (guint i = 0; self->required[i]; i++)
    if (!json_object_has_member (obj, self->required[i]))
      {
        g_autofree char *all = g_strjoinv (",", self->required);
        g_set_error (error, GPTD_STAGE_ERROR, GPTD_STAGE_ERROR_INPUT,
                     "%s has no \"%s\" (required=%s)", where, self->required[i], all);
        return FALSE;
      }

  if (self->n_records < self->first || self->n_records >= self->end)
    {
      self->n_records++;
      return TRUE;
    }
  g_autofree char *compact = json_to_string (node, FALSE);
  g_autofree char *source = g_strdup_printf ("%s:%" G_GUINT64_FORMAT, self->path,
                                             self->n_records);
  Gptd__Document doc = GPTD__DOCUMENT__INIT;
  doc.source = source;
  doc.record = compact;
  doc.index = self->n_records;
  doc.last = TRUE;
  if (!gptd_stage_push (ctx, 0, &doc.base, error))
    return FALSE;
  self->n_records++;
  self->n_emitted++;

  gint64 now = g_get_monotonic_time ();
  if (now - self->last_report > G_USEC_PER_SEC / 4)
    {
      Gptd__Progress pr = GPTD__PROGRESS__INIT;
      pr.loss = pr.val_loss = NAN;
      pr.eta_s = -1;
      pr.items = self->n_emitted;
      pr.unit = (char *) "records";
      gptd_stage_progress (ctx, &pr);
      self->last_report = now;
    }
  return TRUE;
}

static gboolean
limit_reached (JsonSource *self)
{
  return (self->limit > 0 && self->n_records >= self->limit) || self->n_records >= self->end;
}

/* Sets the range of records to emit, once the file is known to hold @n. */
static gboolean
set_range (JsonSource *self, guint64 n, GError **error)
{
  guint64 bounds[GPTD__INSTRUCT_MAX_SPLITS + 1];

  if (self->limit > 0)
    n = MIN (n, self->limit);
  self->first = 0;
  self->end = n;
  if (self->select < 0)
    return TRUE;
  gptd__instruct_split_bounds (n, self->fractions, self->n_fractions, bounds);
  self->first = bounds[self->select];
  self->end = bounds[self->select + 1];
  if (self->first == self->end)
    {
      g_set_error (error, GPTD_STAGE_ERROR, GPTD_STAGE_ERROR_INPUT,
                   "select: the %s split (fraction %g) gets none of the %" G_GUINT64_FORMAT
                   " records of %s", gptd__windows_split_name (self->split_of[self->select]),
                   self->fractions[self->select], n, self->path);
      return FALSE;
    }
  return TRUE;
}

/* Reads one line (without its end) into @buf, refusing one longer than
 * @max_bytes. Returns FALSE at the end of the file or on an error (*error set). */
static gboolean
read_line (FILE *f, GString *buf, gsize max_bytes, const char *path, guint64 lineno,
           gboolean *has_nul, GError **error)
{
  int c;
  g_string_truncate (buf, 0);
  *has_nul = FALSE;
  while ((c = getc (f)) != EOF && c != '\n')
    {
      if (buf->len >= max_bytes)
        {
          g_set_error (error, GPTD_STAGE_ERROR, GPTD_STAGE_ERROR_INPUT,
                       "%s:%" G_GUINT64_FORMAT ": a line longer than max-bytes=%"
                       G_GSIZE_FORMAT, path, lineno, max_bytes);
          return FALSE;
        }
      if (c == '\0')
        *has_nul = TRUE;
      g_string_append_c (buf, (char) c);
    }
  if (c == EOF && ferror (f))
    {
      int e = errno;
      g_set_error (error, GPTD_STAGE_ERROR, GPTD_STAGE_ERROR_IO,
                   "%s: read failed at line %" G_GUINT64_FORMAT ": %s", path, lineno,
                   g_strerror (e));
      return FALSE;
    }
  return c != EOF || buf->len > 0;
}

static gboolean
is_blank (const GString *buf)
{
  for (gsize i = 0; i < buf->len; i++)
    if (!(buf->str[i] == ' ' || buf->str[i] == '\t' || buf->str[i] == '\r'))
      return FALSE;
  return TRUE;
}

static gboolean
read_array (JsonSource *self, GptdStageContext *ctx, GError **error)
{
  g_autoptr (GError) err = NULL;
  g_autoptr (JsonParser) parser = gptd_json_load_file_bounded (self->path, self->max_bytes,
                                                               &err);
  if (parser == NULL)
    {
      /* Where the nesting went too deep: the file is within max-bytes, read it. */
      g_autofree char *text = NULL;
      gsize len = 0;
      if (g_error_matches (err, GPTD_JSON_ERROR, GPTD_JSON_ERROR_TOO_DEEP))
        g_file_get_contents (self->path, &text, &len, NULL);
      set_load_error (error, self->path, text, len, 1, err);
      return FALSE;
    }
  JsonNode *root = json_parser_get_root (parser);
  if (root == NULL || !JSON_NODE_HOLDS_ARRAY (root))
    {
      g_set_error (error, GPTD_STAGE_ERROR, GPTD_STAGE_ERROR_INPUT,
                   "%s: format=array needs a JSON array of objects at the top, not %s",
                   self->path, root ? json_node_type_name (root) : "nothing");
      return FALSE;
    }
  JsonArray *array = json_node_get_array (root);
  if (!set_range (self, json_array_get_length (array), error))
    return FALSE;
  for (guint i = 0; i < json_array_get_length (array) && !limit_reached (self); i++)
    {
      if (gptd_stage_context_is_cancelled (ctx))
        {
          g_set_error (error, G_IO_ERROR, G_IO_ERROR_CANCELLED, "the run was cancelled");
          return FALSE;
        }
      if (!emit_record (self, ctx, json_array_get_element (array, i), 0, error))
        return FALSE;
    }
  return TRUE;
}

static FILE *
open_file (const char *path, GError **error)
{
  FILE *f = fopen (path, "rb");
  if (f == NULL)
    {
      int e = errno;
      g_set_error (error, GPTD_STAGE_ERROR, GPTD_STAGE_ERROR_IO, "%s: %s", path,
                   g_strerror (e));
    }
  return f;
}

/* The first pass over JSON Lines with select=: the number of records (lines that
 * are not blank). */
static gboolean
count_lines (JsonSource *self, guint64 *n, GError **error)
{
  FILE *f = open_file (self->path, error);
  g_autoptr (GString) buf = g_string_new (NULL);
  g_autoptr (GError) err = NULL;
  guint64 lineno = 0;
  gboolean nul;

  if (f == NULL)
    return FALSE;
  *n = 0;
  while (read_line (f, buf, self->max_bytes, self->path, ++lineno, &nul, &err))
    if (!is_blank (buf))
      (*n)++;
  fclose (f);
  if (err != NULL)
    {
      g_propagate_error (error, g_steal_pointer (&err));
      return FALSE;
    }
  return TRUE;
}

static gboolean
read_lines (JsonSource *self, GptdStageContext *ctx, GError **error)
{
  g_autoptr (GString) buf = g_string_new (NULL);
  g_autoptr (GError) err = NULL;
  guint64 lineno = 0, n = G_MAXUINT64;
  gboolean nul;
  gboolean ok = TRUE;

  if (self->select >= 0 && !count_lines (self, &n, error))
    return FALSE;
  if (!set_range (self, n, error))
    return FALSE;
  FILE *f = open_file (self->path, error);
  if (f == NULL)
    return FALSE;
  while (ok && !limit_reached (self)
         && read_line (f, buf, self->max_bytes, self->path, ++lineno, &nul, &err))
    {
      if (is_blank (buf))
        continue;
      while (buf->len > 0 && buf->str[buf->len - 1] == '\r')
        g_string_truncate (buf, buf->len - 1);
      if (nul)
        {
          g_set_error (error, GPTD_STAGE_ERROR, GPTD_STAGE_ERROR_INPUT,
                       "%s:%" G_GUINT64_FORMAT ": a NUL byte in the line", self->path,
                       lineno);
          ok = FALSE;
          break;
        }
      if (gptd_stage_context_is_cancelled (ctx))
        {
          g_set_error (error, G_IO_ERROR, G_IO_ERROR_CANCELLED, "the run was cancelled");
          ok = FALSE;
          break;
        }
      g_autoptr (GError) lerr = NULL;
      g_autoptr (JsonParser) parser = gptd_json_load_bounded (buf->str, (gssize) buf->len,
                                                              self->path, self->max_bytes,
                                                              &lerr);
      if (parser == NULL)
        {
          set_load_error (error, self->path, buf->str, buf->len, lineno, lerr);
          ok = FALSE;
        }
      else
        ok = emit_record (self, ctx, json_parser_get_root (parser), lineno, error);
    }
  fclose (f);
  if (ok && err != NULL)
    {
      g_propagate_error (error, g_steal_pointer (&err));
      ok = FALSE;
    }
  return ok;
}

/* auto: '[' first (after white space and a UTF-8 byte order mark) means an array. */
static gboolean
sniff_array (const char *path, gboolean *is_array, GError **error)
{
  FILE *f = fopen (path, "rb");
  int c;
  if (f == NULL)
    {
      int e = errno;
      g_set_error (error, GPTD_STAGE_ERROR, GPTD_STAGE_ERROR_IO, "%s: %s", path,
                   g_strerror (e));
      return FALSE;
    }
  while ((c = fgetc (f)) != EOF && (c == ' ' || c == '\t' || c == '\r' || c == '\n'
                                    || c == 0xEF || c == 0xBB || c == 0xBF))
    ;
  fclose (f);
  *is_array = c == '[';
  return TRUE;
}

static gboolean
json_source_run (gpointer data, GptdStageContext *ctx, GError **error)
{
  JsonSource *self = data;
  gboolean is_array = self->format == 1;

  if (self->format == 0 && !sniff_array (self->path, &is_array, error))
    return FALSE;
  if (!(is_array ? read_array (self, ctx, error) : read_lines (self, ctx, error)))
    return FALSE;
  if (self->select >= 0)
    gptd_stage_log (ctx, G_LOG_LEVEL_INFO, "%s split: records %" G_GUINT64_FORMAT " to %"
                    G_GUINT64_FORMAT " of %s (%" G_GUINT64_FORMAT " record%s, %s)",
                    gptd__windows_split_name (self->split_of[self->select]), self->first,
                    self->end - 1, self->path, self->n_emitted,
                    self->n_emitted == 1 ? "" : "s", is_array ? "JSON array" : "JSON Lines");
  else
    gptd_stage_log (ctx, G_LOG_LEVEL_INFO, "read %" G_GUINT64_FORMAT " record%s from %s (%s)",
                    self->n_emitted, self->n_emitted == 1 ? "" : "s", self->path,
                    is_array ? "JSON array" : "JSON Lines");
  return TRUE;
}

const GptdStageType gptd__json_source_type = {
  .name = "json-source",
  .description = "Records of a JSON array of objects or of JSON Lines as Documents "
                 "carrying each record",
  .params = json_source_params,
  .outputs = json_source_outputs,
  .check = json_source_check,
  .create = json_source_create,
  .run = json_source_run,
  .destroy = json_source_destroy,
};
