/* daemon/http-openai.c: the HTTP gateway's request bodies and answers in the
 * OpenAI API's shapes: /v1/completions, /v1/chat/completions and gptd's
 * /v1/classify bodies parsed and checked field by field (a bad one is a 400
 * naming the field), chat messages formatted with a prompt template, and the
 * error object {"error": {"message", "type", "param", "code"}}.
 */
#ifdef HAVE_CONFIG_H
#include "config.h"
#endif

#include "http.h"

#include <gptd/json-load.h>

#include <math.h>
#include <stdarg.h>
#include <string.h>

/* The largest max_tokens, as the daemon's max_new_tokens. */
#define MAX_TOKENS_LIMIT 1048576
/* Defaults when a request does not say. */
#define DEFAULT_COMPLETION_TOKENS 16
#define DEFAULT_CHAT_TOKENS 256
#define MAX_STOP 4

void
gptd__http_request_free (GptdHttpRequest *req)
{
  if (req == NULL)
    return;
  g_free (req->model);
  if (req->prompts != NULL)
    g_ptr_array_unref (req->prompts);
  if (req->stop != NULL)
    g_ptr_array_unref (req->stop);
  g_free (req->weights);
  if (req->messages != NULL)
    json_array_unref (req->messages);
  g_free (req);
}

void
gptd__http_error_clear (GptdHttpError *err)
{
  g_clear_pointer (&err->message, g_free);
  g_clear_pointer (&err->param, g_free);
}

static gboolean G_GNUC_PRINTF (4, 5)
fail (GptdHttpError *err, const char *param, const char *code, const char *format, ...)
{
  va_list ap;
  va_start (ap, format);
  err->status = SOUP_STATUS_BAD_REQUEST;
  err->message = g_strdup_vprintf (format, ap);
  err->param = g_strdup (param);
  err->code = code;
  va_end (ap);
  return FALSE;
}

static gboolean
node_is (JsonNode *node, GType type)
{
  return node != NULL && JSON_NODE_HOLDS_VALUE (node) && json_node_get_value_type (node) == type;
}

/* A JSON number (integer or not) in @node. */
static gboolean
node_number (JsonNode *node, double *value)
{
  if (node_is (node, G_TYPE_INT64))
    *value = (double) json_node_get_int (node);
  else if (node_is (node, G_TYPE_DOUBLE))
    *value = json_node_get_double (node);
  else
    return FALSE;
  return TRUE;
}

/* A string, or an array of strings (at least one; at most @max unless 0), into
 * @out. */
static gboolean
parse_strings (JsonObject *obj, const char *field, guint max, gboolean allow_empty,
               GPtrArray *out, GptdHttpError *err)
{
  JsonNode *node = json_object_get_member (obj, field);
  if (node_is (node, G_TYPE_STRING))
    g_ptr_array_add (out, g_strdup (json_node_get_string (node)));
  else if (node != NULL && JSON_NODE_HOLDS_ARRAY (node))
    {
      JsonArray *a = json_node_get_array (node);
      for (guint i = 0; i < json_array_get_length (a); i++)
        {
          JsonNode *e = json_array_get_element (a, i);
          if (!node_is (e, G_TYPE_STRING))
            return fail (err, field, "invalid_type", "%s[%u] must be a string", field, i);
          g_ptr_array_add (out, g_strdup (json_node_get_string (e)));
        }
      if (out->len == 0)
        return fail (err, field, "invalid_value", "%s must not be an empty array", field);
    }
  else
    return fail (err, field, "invalid_type", "%s must be a string or an array of strings",
                 field);
  if (max > 0 && out->len > max)
    return fail (err, field, "invalid_value", "%s holds %u strings; at most %u are allowed",
                 field, out->len, max);
  for (guint i = 0; i < out->len; i++)
    if (!allow_empty && *(const char *) out->pdata[i] == '\0')
      return fail (err, field, "invalid_value", "%s must not be empty", field);
  return TRUE;
}

static gboolean
parse_sampling (JsonObject *obj, GptdHttpRequest *req, GptdHttpError *err)
{
  JsonNode *node;
  double v;

  req->max_tokens = req->endpoint == GPTD_HTTP_CHAT ? DEFAULT_CHAT_TOKENS
                                                    : DEFAULT_COMPLETION_TOKENS;
  /* OpenAI's newer name for chat, max_completion_tokens, is taken too. */
  const char *max_field = "max_tokens";
  node = json_object_get_member (obj, "max_tokens");
  if ((node == NULL || JSON_NODE_HOLDS_NULL (node))
      && json_object_has_member (obj, "max_completion_tokens"))
    {
      max_field = "max_completion_tokens";
      node = json_object_get_member (obj, max_field);
    }
  if (node != NULL && !JSON_NODE_HOLDS_NULL (node))
    {
      if (!node_is (node, G_TYPE_INT64))
        return fail (err, max_field, "invalid_type", "%s must be an integer", max_field);
      gint64 n = json_node_get_int (node);
      if (n < 1 || n > MAX_TOKENS_LIMIT)
        return fail (err, max_field, "invalid_value",
                     "%s must be from 1 to %d, not %" G_GINT64_FORMAT, max_field,
                     MAX_TOKENS_LIMIT, n);
      req->max_tokens = (guint) n;
    }

  req->temperature = 1.0;
  node = json_object_get_member (obj, "temperature");
  if (node != NULL && !JSON_NODE_HOLDS_NULL (node))
    {
      if (!node_number (node, &v))
        return fail (err, "temperature", "invalid_type", "temperature must be a number");
      if (!(v >= 0 && v <= 100) || !isfinite (v))
        return fail (err, "temperature", "invalid_value",
                     "temperature must be from 0 (greedy) to 100, not %g", v);
      req->temperature = v;
    }

  req->top_p = 1.0;
  node = json_object_get_member (obj, "top_p");
  if (node != NULL && !JSON_NODE_HOLDS_NULL (node))
    {
      if (!node_number (node, &v))
        return fail (err, "top_p", "invalid_type", "top_p must be a number");
      if (!(v > 0 && v <= 1))
        return fail (err, "top_p", "invalid_value", "top_p must be in (0, 1], not %g", v);
      req->top_p = v;
    }

  node = json_object_get_member (obj, "top_k");
  if (node != NULL && !JSON_NODE_HOLDS_NULL (node))
    {
      if (!node_is (node, G_TYPE_INT64))
        return fail (err, "top_k", "invalid_type", "top_k must be an integer");
      gint64 k = json_node_get_int (node);
      if (k < 0 || k > G_MAXINT32)
        return fail (err, "top_k", "invalid_value",
                     "top_k must be 0 (all tokens) or more, not %" G_GINT64_FORMAT, k);
      req->top_k = (guint) k;
    }

  node = json_object_get_member (obj, "seed");
  if (node != NULL && !JSON_NODE_HOLDS_NULL (node))
    {
      if (!node_is (node, G_TYPE_INT64))
        return fail (err, "seed", "invalid_type", "seed must be an integer");
      gint64 s = json_node_get_int (node);
      if (s < 0)
        return fail (err, "seed", "invalid_value",
                     "seed must be 0 or more, not %" G_GINT64_FORMAT, s);
      req->seed = (guint64) s;
      req->has_seed = TRUE;
    }

  req->stop = g_ptr_array_new_with_free_func (g_free);
  node = json_object_get_member (obj, "stop");
  if (node != NULL && !JSON_NODE_HOLDS_NULL (node)
      && !parse_strings (obj, "stop", MAX_STOP, FALSE, req->stop, err))
    return FALSE;

  node = json_object_get_member (obj, "ignore_eos");
  if (node != NULL && !JSON_NODE_HOLDS_NULL (node))
    {
      if (!node_is (node, G_TYPE_BOOLEAN))
        return fail (err, "ignore_eos", "invalid_type", "ignore_eos must be true or false");
      req->ignore_eos = json_node_get_boolean (node);
    }

  node = json_object_get_member (obj, "n");
  if (node != NULL && !JSON_NODE_HOLDS_NULL (node)
      && (!node_is (node, G_TYPE_INT64) || json_node_get_int (node) != 1))
    return fail (err, "n", "invalid_value", "n must be 1: one choice per prompt is generated");
  return TRUE;
}

gboolean
gptd__http_request_parse (GptdHttpEndpoint endpoint, const char *body, gsize length,
                          GptdHttpRequest **out, GptdHttpError *err)
{
  g_autoptr (GError) error = NULL;
  if (length == 0)
    return fail (err, NULL, "invalid_json", "The request body is empty: send a JSON object");
  if (memchr (body, '\0', length) != NULL || !g_utf8_validate (body, (gssize) length, NULL))
    return fail (err, NULL, "invalid_json", "The request body is not UTF-8 JSON text");
  /* Bounded: json-glib recurses once per nesting level, so a body of a few
   * hundred kilobytes of '[' would crash the gateway (the size is the
   * gateway's body limit, checked before). */
  g_autoptr (JsonParser) parser = gptd_json_load_bounded (body, (gssize) length,
                                                          "the request body", length, &error);
  if (parser == NULL)
    return fail (err, NULL, "invalid_json", "The request body is not valid JSON: %s",
                 error->message);
  JsonNode *root = json_parser_get_root (parser);
  if (root == NULL || !JSON_NODE_HOLDS_OBJECT (root))
    return fail (err, NULL, "invalid_json", "The request body must be a JSON object");
  JsonObject *obj = json_node_get_object (root);

  g_autoptr (GptdHttpRequest) req = g_new0 (GptdHttpRequest, 1);
  req->endpoint = endpoint;
  req->prompts = g_ptr_array_new_with_free_func (g_free);

  JsonNode *node = json_object_get_member (obj, "model");
  if (node == NULL || JSON_NODE_HOLDS_NULL (node))
    return fail (err, "model", "missing_field", "model is missing: name one of GET /v1/models");
  if (!node_is (node, G_TYPE_STRING))
    return fail (err, "model", "invalid_type", "model must be a string");
  req->model = g_strdup (json_node_get_string (node));

  node = json_object_get_member (obj, "weights");
  if (node != NULL && !JSON_NODE_HOLDS_NULL (node))
    {
      const char *w = node_is (node, G_TYPE_STRING) ? json_node_get_string (node) : NULL;
      if (w == NULL || (strcmp (w, "fp32") != 0 && strcmp (w, "bf16") != 0
                        && strcmp (w, "q8") != 0))
        return fail (err, "weights", "invalid_value", "weights must be \"fp32\", \"bf16\" or "
                     "\"q8\"");
      req->weights = g_strdup (w);
    }

  if (endpoint == GPTD_HTTP_CLASSIFY)
    {
      if (!json_object_has_member (obj, "input"))
        return fail (err, "input", "missing_field", "input is missing: give the text to "
                     "classify, or an array of texts");
      if (!parse_strings (obj, "input", 0, FALSE, req->prompts, err))
        return FALSE;
      *out = g_steal_pointer (&req);
      return TRUE;
    }

  node = json_object_get_member (obj, "stream");
  if (node != NULL && !JSON_NODE_HOLDS_NULL (node))
    {
      if (!node_is (node, G_TYPE_BOOLEAN))
        return fail (err, "stream", "invalid_type", "stream must be true or false");
      req->stream = json_node_get_boolean (node);
    }

  if (endpoint == GPTD_HTTP_COMPLETIONS)
    {
      if (!json_object_has_member (obj, "prompt"))
        return fail (err, "prompt", "missing_field", "prompt is missing");
      if (!parse_strings (obj, "prompt", 0, FALSE, req->prompts, err))
        return FALSE;
      if (req->stream && req->prompts->len > 1)
        return fail (err, "prompt", "invalid_value",
                     "A streamed completion takes one prompt, not %u", req->prompts->len);
    }
  else
    {
      node = json_object_get_member (obj, "messages");
      if (node == NULL || !JSON_NODE_HOLDS_ARRAY (node))
        return fail (err, "messages", node == NULL ? "missing_field" : "invalid_type",
                     "messages must be an array of {\"role\", \"content\"} objects");
      JsonArray *a = json_node_get_array (node);
      guint n = json_array_get_length (a);
      if (n == 0)
        return fail (err, "messages", "invalid_value", "messages must not be empty");
      for (guint i = 0; i < n; i++)
        {
          JsonNode *e = json_array_get_element (a, i);
          g_autofree char *param = g_strdup_printf ("messages[%u]", i);
          if (!JSON_NODE_HOLDS_OBJECT (e))
            return fail (err, param, "invalid_type", "%s must be an object", param);
          JsonObject *m = json_node_get_object (e);
          JsonNode *role = json_object_get_member (m, "role");
          JsonNode *content = json_object_get_member (m, "content");
          const char *r = node_is (role, G_TYPE_STRING) ? json_node_get_string (role) : NULL;
          if (r == NULL || (strcmp (r, "system") != 0 && strcmp (r, "user") != 0
                            && strcmp (r, "assistant") != 0))
            return fail (err, param, "invalid_value",
                         "%s.role must be \"system\", \"user\" or \"assistant\"", param);
          if (!node_is (content, G_TYPE_STRING))
            return fail (err, param, "invalid_type", "%s.content must be a string", param);
        }
      req->messages = json_array_ref (a);
    }

  if (!parse_sampling (obj, req, err))
    return FALSE;
  *out = g_steal_pointer (&req);
  return TRUE;
}

/* Alpaca has no system role and no turns: a system message's content comes
 * first, then a blank line; each earlier user message is rendered as an
 * instruction with the assistant message after it as its response, then a
 * blank line; the last user message is the instruction whose response the
 * model writes. */
gboolean
gptd__http_request_format_chat (GptdHttpRequest *req, const GptdPromptTemplate *tmpl,
                                GptdHttpError *err)
{
  guint n = json_array_get_length (req->messages);
  g_autoptr (GString) text = g_string_new (NULL);
  const char *pending = NULL;   /* a user message waiting for its response */
  for (guint i = 0; i < n; i++)
    {
      JsonObject *m = json_array_get_object_element (req->messages, i);
      const char *role = json_object_get_string_member (m, "role");
      const char *content = json_object_get_string_member (m, "content");
      g_autofree char *param = g_strdup_printf ("messages[%u]", i);
      gsize prompt_bytes;
      if (strcmp (role, "system") == 0)
        {
          if (text->len > 0 || pending != NULL)
            return fail (err, param, "invalid_value",
                         "%s: a system message must come before the others", param);
          g_string_append (text, content);
          g_string_append (text, "\n\n");
        }
      else if (strcmp (role, "user") == 0)
        {
          if (pending != NULL)
            return fail (err, param, "invalid_value",
                         "%s: two user messages in a row; the template takes one "
                         "instruction per response", param);
          pending = content;
        }
      else
        {
          if (pending == NULL)
            return fail (err, param, "invalid_value",
                         "%s: an assistant message must answer a user message", param);
          gptd__prompt_template_render (tmpl, pending, NULL, content, text, &prompt_bytes);
          g_string_append (text, "\n\n");
          pending = NULL;
        }
    }
  if (pending == NULL)
    return fail (err, "messages", "invalid_value",
                 "messages must end with a user message, for the model to answer");
  /* The last instruction with an empty response: the prompt ends with the
   * template's response header ("\n\n### Response:\n"), so that what the model
   * writes is the response itself, ready to stream (the book generates from
   * format_input alone and strips "### Response:" from the output). */
  gsize prompt_bytes;
  gptd__prompt_template_render (tmpl, pending, NULL, "", text, &prompt_bytes);
  g_ptr_array_add (req->prompts, g_string_free (g_steal_pointer (&text), FALSE));
  return TRUE;
}

/* ---- Answers ----------------------------------------------------------------------- */

static const char *
error_type (guint status)
{
  switch (status)
    {
    case SOUP_STATUS_BAD_REQUEST:
    case SOUP_STATUS_REQUEST_ENTITY_TOO_LARGE:
    case SOUP_STATUS_METHOD_NOT_ALLOWED:
      return "invalid_request_error";
    case SOUP_STATUS_UNAUTHORIZED:
      return "authentication_error";
    case SOUP_STATUS_FORBIDDEN:
      return "permission_error";
    case SOUP_STATUS_NOT_FOUND:
      return "not_found_error";
    case SOUP_STATUS_SERVICE_UNAVAILABLE:
      return "service_unavailable_error";
    default:
      return "server_error";
    }
}

char *
gptd__http_error_json (guint status, const char *param, const char *code, const char *message)
{
  g_autoptr (JsonBuilder) b = json_builder_new ();
  json_builder_begin_object (b);
  json_builder_set_member_name (b, "error");
  json_builder_begin_object (b);
  json_builder_set_member_name (b, "message");
  json_builder_add_string_value (b, message);
  json_builder_set_member_name (b, "type");
  json_builder_add_string_value (b, error_type (status));
  json_builder_set_member_name (b, "param");
  if (param != NULL)
    json_builder_add_string_value (b, param);
  else
    json_builder_add_null_value (b);
  json_builder_set_member_name (b, "code");
  if (code != NULL)
    json_builder_add_string_value (b, code);
  else
    json_builder_add_null_value (b);
  json_builder_end_object (b);
  json_builder_end_object (b);
  g_autoptr (JsonNode) root = json_builder_get_root (b);
  return json_to_string (root, FALSE);
}

void
gptd__http_respond_json (SoupServerMessage *msg, guint status, JsonNode *node)
{
  char *text = json_to_string (node, FALSE);
  char *line = g_strconcat (text, "\n", NULL);
  g_free (text);
  soup_server_message_set_status (msg, status, NULL);
  soup_server_message_set_response (msg, "application/json", SOUP_MEMORY_TAKE, line,
                                    strlen (line));
}

void
gptd__http_respond_error (SoupServerMessage *msg, guint status, const char *param,
                          const char *code, const char *format, ...)
{
  va_list ap;
  va_start (ap, format);
  g_autofree char *message = g_strdup_vprintf (format, ap);
  va_end (ap);
  char *json = gptd__http_error_json (status, param, code, message);
  char *line = g_strconcat (json, "\n", NULL);
  g_free (json);
  soup_server_message_set_status (msg, status, NULL);
  soup_server_message_set_response (msg, "application/json", SOUP_MEMORY_TAKE, line,
                                    strlen (line));
}

void
gptd__http_respond_error_struct (SoupServerMessage *msg, const GptdHttpError *err)
{
  gptd__http_respond_error (msg, err->status, err->param, err->code, "%s", err->message);
}
