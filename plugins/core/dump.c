/* dump.c: the `dump` stage — writes every message it receives, of any type, as one
 * line of JSON (see gptd/message-json.h) to standard output or to a file. */
#include "config.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>

#include <gptd/message-json.h>
#include <gptd/stage.h>
#include "core.h"

typedef struct {
  FILE *out;
  char *path;             /* NULL for standard output */
  gboolean all_fields;
  gboolean with_type;
  guint64 count;
} Dump;

static const GptdParamSpec dump_params[] = {
  { "path", GPTD_PARAM_PATH, NULL, 0, 0, NULL,
    "File to write (replaced); standard output when not given", 0 },
  { "all-fields", GPTD_PARAM_BOOL, "false", 0, 0, NULL,
    "Also print fields that hold their default value (0, \"\", false)", 0 },
  { "with-type", GPTD_PARAM_BOOL, "false", 0, 0, NULL,
    "Print {\"type\": \"gptd.Document\", \"message\": {...}} instead of the bare message", 0 },
  { NULL }
};

static const GptdPadSpec dump_inputs[] = {
  { "default", "*", 0 },
  { NULL }
};

static gpointer
dump_create (GptdStageContext *ctx, const GptdParams *params, GError **error)
{
  Dump *self = g_new0 (Dump, 1);
  self->all_fields = gptd_params_get_bool (params, "all-fields");
  self->with_type = gptd_params_get_bool (params, "with-type");
  const char *path = gptd_params_get_string (params, "path");
  if (path && *path)
    {
      self->path = g_strdup (path);
      self->out = fopen (path, "w");
      if (self->out == NULL)
        {
          int e = errno;
          g_set_error (error, GPTD_STAGE_ERROR, GPTD_STAGE_ERROR_IO, "cannot write %s: %s",
                       path, g_strerror (e));
          g_free (self->path);
          g_free (self);
          return NULL;
        }
    }
  else
    self->out = stdout;
  return self;
}

static gboolean
write_failed (Dump *self, GError **error)
{
  int e = errno;
  g_set_error (error, GPTD_STAGE_ERROR, GPTD_STAGE_ERROR_IO, "writing %s failed: %s",
               self->path ? self->path : "standard output", g_strerror (e));
  return FALSE;
}

static gboolean
dump_process (gpointer data, GptdStageContext *ctx, guint input, const ProtobufCMessage *msg,
              GError **error)
{
  Dump *self = data;
  g_autoptr (JsonNode) node = gptd_message_to_json (msg, self->all_fields);
  if (self->with_type)
    {
      JsonObject *wrap = json_object_new ();
      json_object_set_string_member (wrap, "type", msg->descriptor->name);
      json_object_set_member (wrap, "message", g_steal_pointer (&node));
      node = json_node_new (JSON_NODE_OBJECT);
      json_node_take_object (node, wrap);
    }
  g_autofree char *line = json_to_string (node, FALSE);
  if (fputs (line, self->out) == EOF || fputc ('\n', self->out) == EOF)
    return write_failed (self, error);
  self->count++;
  return TRUE;
}

static gboolean
dump_finish (gpointer data, GptdStageContext *ctx, GError **error)
{
  Dump *self = data;
  if (fflush (self->out) != 0)
    return write_failed (self, error);
  if (self->path)
    {
      FILE *f = g_steal_pointer (&self->out);
      if (fclose (f) != 0)
        return write_failed (self, error);
    }
  gptd_stage_log (ctx, G_LOG_LEVEL_INFO, "wrote %" G_GUINT64_FORMAT " message%s%s%s",
                  self->count, self->count == 1 ? "" : "s", self->path ? " to " : "",
                  self->path ? self->path : "");
  return TRUE;
}

static void
dump_destroy (gpointer data)
{
  Dump *self = data;
  if (self == NULL)
    return;
  if (self->out && self->path)
    fclose (self->out);
  else if (self->out)
    fflush (self->out);
  g_free (self->path);
  g_free (self);
}

const GptdStageType gptd__dump_type = {
  .name = "dump",
  .description = "Prints every message, of any type, as one JSON line to standard output "
                 "or a file",
  .params = dump_params,
  .inputs = dump_inputs,
  .outputs = NULL,
  .create = dump_create,
  .process = dump_process,
  .finish = dump_finish,
  .destroy = dump_destroy,
};
