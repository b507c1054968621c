/* json-source.c: the json-source stage (-> gptd.Document), records read from a JSON
 * array of objects (the book's instruction-data.json) or from JSON Lines.
 *
 * Each record becomes one Document whose `record` is the object as compact JSON,
 * with empty text, source "PATH:N" and index N (0-based, in file order). An array
 * file is parsed whole; JSON Lines are read and parsed one line at a time, never
 * whole. Malformed JSON is an error naming the file, line and column; input nested
 * deeper than max-depth is refused before it is parsed (the parser recurses); a
 * record without one of the required= fields is an error naming the record.
 */
#include "instruct-plugin.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <string.h>

#include <json-glib/json-glib.h>

static const char *const format_choices[] = { "auto", "array", "jsonl", NULL };

static const GptdParamSpec json_source_params[] = {
  { "path", GPTD_PARAM_PATH, NULL, 0, 0, NULL,
    "The JSON file: an array of objects, or JSON Lines (one object per line)",
    GPTD_PARAM_REQUIRED | GPTD_PARAM_EXISTS },
  { "format", GPTD_PARAM_ENUM, "auto", 0, 0, format_choices,
    "array, jsonl, or auto: an array when the first character that is not white space "
    "is '[', else JSON Lines", 0 },
  { "required", GPTD_PARAM_STRING, "instruction,input,output", 0, 0, NULL,
    "Comma-separated fields every record must have (empty: none)", 0 },
  { "max-depth", GPTD_PARAM_INT, "64", 2, 100000, NULL,
    "Deepest nesting of arrays and objects accepted (the records' own nesting plus "
    "the array around them)", 0 },
  { "limit", GPTD_PARAM_INT, "0", 0, (double) G_MAXINT64, NULL,
    "Read at most this many records; 0 for all", 0 },
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
  gint64 max_depth;
  guint64 limit;
  guint64 n_records;
  gint64 last_report;
} JsonSource;

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
  self->max_depth = gptd_params_get_int (params, "max-depth");
  self->limit = (guint64) gptd_params_get_int (params, "limit");
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

/* Checks that @text nests arrays and objects at most @max_depth deep. @line is the
 * file line of text[0] (1-based). On failure, names the file, line and column. */
static gboolean
check_depth (const char *path, const char *text, gsize len, guint64 line,
             gint64 max_depth, GError **error)
{
  gint64 depth = 0;
  gboolean in_string = FALSE;
  guint64 col = 1;

  for (gsize i = 0; i < len; i++, col++)
    {
      char c = text[i];
      if (c == '\n')
        {
          line++;
          col = 0;
          continue;
        }
      if (in_string)
        {
          if (c == '\\')
            i++, col++;
          else if (c == '"')
            in_string = FALSE;
          continue;
        }
      if (c == '"')
        in_string = TRUE;
      else if (c == '[' || c == '{')
        {
          if (++depth > max_depth)
            {
              g_set_error (error, GPTD_STAGE_ERROR, GPTD_STAGE_ERROR_INPUT,
                           "%s:%" G_GUINT64_FORMAT ":%" G_GUINT64_FORMAT ": JSON nested "
                           "deeper than max-depth=%" G_GINT64_FORMAT, path, line, col,
                           max_depth);
              return FALSE;
            }
        }
      else if (c == ']' || c == '}')
        depth--;
    }
  return TRUE;
}

/* Turns json-glib's "<data>:LINE:COL: Parse error: ..." into "PATH:LINE:COL: ...",
 * its line counted from @first_line. */
static void
set_parse_error (GError **error, const char *path, guint64 first_line, const GError *err)
{
  const char *msg = err->message;
  unsigned long line = 0, col = 0;
  const char *p = strstr (msg, ":");
  if (p && sscanf (p, ":%lu:%lu:", &line, &col) == 2)
    {
      const char *rest = p + 1;
      rest = strchr (rest, ':') + 1;
      rest = strchr (rest, ':') + 1;
      while (*rest == ' ')
        rest++;
      if (g_str_has_prefix (rest, "Parse error: "))
        rest += strlen ("Parse error: ");
      g_set_error (error, GPTD_STAGE_ERROR, GPTD_STAGE_ERROR_INPUT,
                   "%s:%" G_GUINT64_FORMAT ":%lu: malformed JSON: %s", path,
                   first_line + line - 1, col, rest);
    }
  else
    g_set_error (error, GPTD_STAGE_ERROR, GPTD_STAGE_ERROR_INPUT,
                 "%s:%" G_GUINT64_FORMAT ": malformed JSON: %s", path, first_line, msg);
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

  gint64 now = g_get_monotonic_time ();
  if (now - self->last_report > G_USEC_PER_SEC / 4)
    {
      Gptd__Progress pr = GPTD__PROGRESS__INIT;
      pr.loss = pr.val_loss = NAN;
      pr.eta_s = -1;
      pr.items = self->n_records;
      pr.unit = (char *) "records";
      gptd_stage_progress (ctx, &pr);
      self->last_report = now;
    }
  return TRUE;
}

static gboolean
limit_reached (JsonSource *self)
{
  return self->limit > 0 && self->n_records >= self->limit;
}

static gboolean
read_array (JsonSource *self, GptdStageContext *ctx, GError **error)
{
  g_autofree char *text = NULL;
  gsize len = 0;
  g_autoptr (GError) err = NULL;
  g_autoptr (JsonParser) parser = json_parser_new_immutable ();

  if (!g_file_get_contents (self->path, &text, &len, error))
    return FALSE;
  if (!check_depth (self->path, text, len, 1, self->max_depth, error))
    return FALSE;
  if (!json_parser_load_from_data (parser, text, (gssize) len, &err))
    {
      set_parse_error (error, self->path, 1, err);
      return FALSE;
    }
  g_clear_pointer (&text, g_free);
  JsonNode *root = json_parser_get_root (parser);
  if (root == NULL || !JSON_NODE_HOLDS_ARRAY (root))
    {
      g_set_error (error, GPTD_STAGE_ERROR, GPTD_STAGE_ERROR_INPUT,
                   "%s: format=array needs a JSON array of objects at the top, not %s",
                   self->path, root ? json_node_type_name (root) : "nothing");
      return FALSE;
    }
  JsonArray *array = json_node_get_array (root);
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

static gboolean
read_lines (JsonSource *self, GptdStageContext *ctx, GError **error)
{
  FILE *f = fopen (self->path, "rb");
  char *line = NULL;
  size_t cap = 0;
  ssize_t n;
  guint64 lineno = 0;
  gboolean ok = TRUE;

  if (f == NULL)
    {
      int e = errno;
      g_set_error (error, GPTD_STAGE_ERROR, GPTD_STAGE_ERROR_IO, "%s: %s", self->path,
                   g_strerror (e));
      return FALSE;
    }
  while (ok && !limit_reached (self) && (n = getline (&line, &cap, f)) >= 0)
    {
      lineno++;
      const char *s = line;
      while (*s == ' ' || *s == '\t' || *s == '\r' || *s == '\n')
        s++;
      if (*s == '\0')
        continue;   /* a blank line */
      while (n > 0 && (line[n - 1] == '\n' || line[n - 1] == '\r'))
        line[--n] = '\0';
      if ((size_t) n != strlen (line))
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
      g_autoptr (JsonParser) parser = json_parser_new_immutable ();
      g_autoptr (GError) err = NULL;
      if (!check_depth (self->path, line, (gsize) n, lineno, self->max_depth, error))
        ok = FALSE;
      else if (!json_parser_load_from_data (parser, line, n, &err))
        {
          set_parse_error (error, self->path, lineno, err);
          ok = FALSE;
        }
      else
        ok = emit_record (self, ctx, json_parser_get_root (parser), lineno, error);
    }
  if (ok && ferror (f))
    {
      int e = errno;
      g_set_error (error, GPTD_STAGE_ERROR, GPTD_STAGE_ERROR_IO,
                   "%s: read failed after line %" G_GUINT64_FORMAT ": %s", self->path,
                   lineno, g_strerror (e));
      ok = FALSE;
    }
  free (line);
  fclose (f);
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
  gptd_stage_log (ctx, G_LOG_LEVEL_INFO, "read %" G_GUINT64_FORMAT " record%s from %s (%s)",
                  self->n_records, self->n_records == 1 ? "" : "s", self->path,
                  is_array ? "JSON array" : "JSON Lines");
  return TRUE;
}

const GptdStageType gptd__json_source_type = {
  .name = "json-source",
  .description = "Records of a JSON array of objects or of JSON Lines as Documents "
                 "carrying each record",
  .params = json_source_params,
  .outputs = json_source_outputs,
  .create = json_source_create,
  .run = json_source_run,
  .destroy = json_source_destroy,
};
