/* prompt-format.c: the prompt-format stage (gptd.Document -> gptd.Document), the
 * book's format_input: each record (Document.record, from json-source) becomes the
 * text of an instruction prompt and, unless include-response=false, its expected
 * response; prompt_bytes tells where the prompt ends.
 *
 * template=alpaca is the book's format (the preamble, "### Instruction:", the
 * "### Input:" section only when the input is not empty, "### Response:" and the
 * output), phi3 the "<|user|>"/"<|assistant|>" format of its exercise 7.1, and any
 * other value a template file (see include/gptd/prompt-template.h). With include-response=false the
 * text is the prompt alone, format_input(entry), which is what the book hands to
 * generate().
 */
#include "instruct-plugin.h"
#include <gptd/prompt-template.h>

#include <string.h>

#include <json-glib/json-glib.h>

static const GptdParamSpec prompt_format_params[] = {
  { "template", GPTD_PARAM_STRING, "alpaca", 0, 0, NULL,
    "alpaca (the book's format_input), phi3, or a template file with {instruction}, "
    "{input}, {output}, {response} and a {?input}...{/input} section; relative to the "
    "pipeline file", 0 },
  { "include-response", GPTD_PARAM_BOOL, "true", 0, 0, NULL,
    "Append the response (training data); false gives the prompt alone (generation "
    "prompts)", 0 },
  { NULL }
};

static const GptdPadSpec prompt_format_inputs[] = {
  { "default", "gptd.Document", 0 },
  { NULL }
};

static const GptdPadSpec prompt_format_outputs[] = {
  { "default", "gptd.Document", 0 },
  { NULL }
};

typedef struct {
  GptdPromptTemplate *tmpl;
  gboolean include_response;
  guint64 n_records;
} PromptFormat;

static GptdPromptTemplate *
template_from (const GptdParams *params, GError **error)
{
  const char *name = gptd_params_get_string (params, "template");
  GptdPromptTemplate *tmpl = gptd__prompt_template_builtin (name);
  if (tmpl)
    return tmpl;
  g_autofree char *path = gptd_params_resolve_path (params, name);
  tmpl = gptd__prompt_template_load (path, error);
  if (tmpl == NULL)
    g_prefix_error (error, "template: ");
  return tmpl;
}

static gboolean
prompt_format_check (const GptdParams *params, GError **error)
{
  g_autoptr (GptdPromptTemplate) tmpl = template_from (params, error);
  return tmpl != NULL;
}

static void
prompt_format_destroy (gpointer data)
{
  PromptFormat *self = data;
  if (self == NULL)
    return;
  gptd__prompt_template_free (self->tmpl);
  g_free (self);
}

static gpointer
prompt_format_create (GptdStageContext *ctx, const GptdParams *params, GError **error)
{
  g_autoptr (GptdPromptTemplate) tmpl = template_from (params, error);
  if (tmpl == NULL)
    return NULL;
  PromptFormat *self = g_new0 (PromptFormat, 1);
  self->tmpl = g_steal_pointer (&tmpl);
  self->include_response = gptd_params_get_bool (params, "include-response");
  return self;
}

/* The string field @name of @obj: NULL with @error when it is missing (and
 * @required) or not a string; "" when missing and not required. */
static const char *
get_field (JsonObject *obj, const char *name, gboolean required, const char *where,
           GError **error)
{
  JsonNode *node = json_object_get_member (obj, name);
  if (node == NULL)
    {
      if (!required)
        return "";
      g_set_error (error, GPTD_STAGE_ERROR, GPTD_STAGE_ERROR_INPUT,
                   "%s: the record has no \"%s\"", where, name);
      return NULL;
    }
  if (JSON_NODE_HOLDS_NULL (node) && !required)
    return "";
  if (!JSON_NODE_HOLDS_VALUE (node) || json_node_get_value_type (node) != G_TYPE_STRING)
    {
      g_set_error (error, GPTD_STAGE_ERROR, GPTD_STAGE_ERROR_INPUT,
                   "%s: \"%s\" is a JSON %s, not a string", where, name,
                   json_node_type_name (node));
      return NULL;
    }
  return json_node_get_string (node);
}

static gboolean
prompt_format_process (gpointer data, GptdStageContext *ctx, guint input,
                       const ProtobufCMessage *msg, GError **error)
{
  PromptFormat *self = data;
  const Gptd__Document *in = (const Gptd__Document *) msg;
  g_autofree char *where = g_strdup_printf ("%s (record %" G_GUINT64_FORMAT ")",
                                            in->source && *in->source ? in->source : "?",
                                            in->index);
  g_autoptr (JsonParser) parser = json_parser_new_immutable ();
  g_autoptr (GError) err = NULL;
  g_autoptr (GString) text = g_string_new (NULL);
  const char *instruction, *input_text, *output = NULL;
  gsize prompt_bytes = 0;

  if (in->record == NULL || *in->record == '\0')
    {
      g_set_error (error, GPTD_STAGE_ERROR, GPTD_STAGE_ERROR_INPUT,
                   "%s: the Document carries no record (prompt-format reads the records "
                   "of json-source)", where);
      return FALSE;
    }
  if (!json_parser_load_from_data (parser, in->record, -1, &err)
      || !JSON_NODE_HOLDS_OBJECT (json_parser_get_root (parser)))
    {
      g_set_error (error, GPTD_STAGE_ERROR, GPTD_STAGE_ERROR_INPUT,
                   "%s: the record is not a JSON object%s%s", where, err ? ": " : "",
                   err ? err->message : "");
      return FALSE;
    }
  JsonObject *obj = json_node_get_object (json_parser_get_root (parser));
  if (!(instruction = get_field (obj, "instruction", TRUE, where, error))
      || !(input_text = get_field (obj, "input", FALSE, where, error)))
    return FALSE;
  if (self->include_response && !(output = get_field (obj, "output", TRUE, where, error)))
    return FALSE;

  gptd__prompt_template_render (self->tmpl, instruction, input_text, output, text,
                                &prompt_bytes);
  Gptd__Document out = GPTD__DOCUMENT__INIT;
  out.source = in->source;
  out.text.data = (guint8 *) text->str;
  out.text.len = text->len;
  out.last = TRUE;
  out.index = in->index;
  out.label = in->label;
  out.record = in->record;
  out.prompt_bytes = prompt_bytes;
  self->n_records++;
  return gptd_stage_push (ctx, 0, &out.base, error);
}

static gboolean
prompt_format_finish (gpointer data, GptdStageContext *ctx, GError **error)
{
  PromptFormat *self = data;
  gptd_stage_log (ctx, G_LOG_LEVEL_INFO, "formatted %" G_GUINT64_FORMAT " record%s",
                  self->n_records, self->n_records == 1 ? "" : "s");
  return TRUE;
}

const GptdStageType gptd__prompt_format_type = {
  .name = "prompt-format",
  .description = "Instruction prompts from records (the book's Alpaca format_input, "
                 "Phi-3, or a template file), with the prompt's length",
  .params = prompt_format_params,
  .inputs = prompt_format_inputs,
  .outputs = prompt_format_outputs,
  .check = prompt_format_check,
  .create = prompt_format_create,
  .process = prompt_format_process,
  .finish = prompt_format_finish,
  .destroy = prompt_format_destroy,
};
