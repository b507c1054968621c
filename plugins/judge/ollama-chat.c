/* ollama-chat.c: one chat request to an Ollama-compatible server over
 * libsoup 3, read as a stream of JSON lines (see ollama-chat.h).
 */
#include "config.h"

#include <gptd/json-load.h>
#include <json-glib/json-glib.h>
#include <libsoup/soup.h>
#include <math.h>
#include <string.h>

#include "ollama-chat.h"

/* The most of an error reply's body that is read for its message. */
#define ERROR_BODY_MAX 4096

G_DEFINE_QUARK (gptd-ollama-error-quark, gptd__ollama_error)

struct _GptdOllamaClient {
  SoupSession *session;
  char *url; /* the chat endpoint */
};

GptdOllamaClient *
gptd__ollama_client_new (const char *url, double timeout_s, GError **error)
{
  g_return_val_if_fail (url != NULL, NULL);
  g_autoptr (GError) local = NULL;
  g_autoptr (GUri) uri = g_uri_parse (url, SOUP_HTTP_URI_FLAGS, &local);
  if (uri == NULL || (g_strcmp0 (g_uri_get_scheme (uri), "http") != 0 &&
                      g_strcmp0 (g_uri_get_scheme (uri), "https") != 0) ||
      g_uri_get_host (uri) == NULL || g_uri_get_host (uri)[0] == '\0')
    {
      g_set_error (error, G_IO_ERROR, G_IO_ERROR_INVALID_ARGUMENT,
                   "%s is not an http:// or https:// URL%s%s", url,
                   local != NULL ? ": " : "", local != NULL ? local->message : "");
      return NULL;
    }
  GptdOllamaClient *client = g_new0 (GptdOllamaClient, 1);
  if (g_str_has_suffix (url, "/api/chat"))
    client->url = g_strdup (url);
  else
    {
      gsize n = strlen (url);
      while (n > 0 && url[n - 1] == '/')
        n--;
      client->url = g_strdup_printf ("%.*s/api/chat", (int) n, url);
    }
  guint timeout = timeout_s > 0 ? (guint) MIN (ceil (timeout_s), G_MAXUINT) : 0;
  client->session = soup_session_new_with_options ("timeout", timeout,
                                                   "user-agent", "gptd/" PACKAGE_VERSION,
                                                   NULL);
  return client;
}

const char *
gptd__ollama_client_get_url (GptdOllamaClient *client)
{
  return client->url;
}

void
gptd__ollama_client_free (GptdOllamaClient *client)
{
  if (client == NULL)
    return;
  g_clear_object (&client->session);
  g_free (client->url);
  g_free (client);
}

/* The request body. */
static char *
build_payload (const GptdOllamaOptions *o, const char *prompt, gsize *len)
{
  g_autoptr (JsonBuilder) b = json_builder_new ();
  json_builder_begin_object (b);
  json_builder_set_member_name (b, "model");
  json_builder_add_string_value (b, o->model);
  json_builder_set_member_name (b, "messages");
  json_builder_begin_array (b);
  json_builder_begin_object (b);
  json_builder_set_member_name (b, "role");
  json_builder_add_string_value (b, "user");
  json_builder_set_member_name (b, "content");
  json_builder_add_string_value (b, prompt);
  json_builder_end_object (b);
  json_builder_end_array (b);
  json_builder_set_member_name (b, "options");
  json_builder_begin_object (b);
  json_builder_set_member_name (b, "seed");
  json_builder_add_int_value (b, o->seed);
  json_builder_set_member_name (b, "temperature");
  if (o->temperature == floor (o->temperature) && fabs (o->temperature) < 1e15)
    json_builder_add_int_value (b, (gint64) o->temperature);
  else
    json_builder_add_double_value (b, o->temperature);
  json_builder_set_member_name (b, "num_ctx");
  json_builder_add_int_value (b, o->num_ctx);
  json_builder_end_object (b);
  json_builder_end_object (b);
  g_autoptr (JsonNode) root = json_builder_get_root (b);
  g_autoptr (JsonGenerator) gen = json_generator_new ();
  json_generator_set_root (gen, root);
  return json_generator_to_data (gen, len);
}

/* The "error" member of the JSON object @text, if it is one. */
static char *
error_member (const char *text, gssize len)
{
  g_autoptr (JsonParser) p = gptd_json_load_bounded (text, len, "the reply", 0, NULL);
  if (p == NULL)
    return NULL;
  JsonNode *root = json_parser_get_root (p);
  if (root == NULL || !JSON_NODE_HOLDS_OBJECT (root))
    return NULL;
  JsonNode *e = json_object_get_member (json_node_get_object (root), "error");
  if (e == NULL || !JSON_NODE_HOLDS_VALUE (e) ||
      json_node_get_value_type (e) != G_TYPE_STRING)
    return NULL;
  return g_strdup (json_node_get_string (e));
}

/* Fails for a status other than 200, with the server's own message. */
static gboolean
check_status (GptdOllamaClient *client, SoupMessage *msg, GInputStream *in,
              GCancellable *cancellable, GError **error)
{
  guint status = soup_message_get_status (msg);
  if (status == SOUP_STATUS_OK)
    return TRUE;
  g_autofree char *body = g_malloc (ERROR_BODY_MAX + 1);
  gsize n = 0;
  g_input_stream_read_all (in, body, ERROR_BODY_MAX, &n, cancellable, NULL);
  body[n] = '\0';
  g_autofree char *message = error_member (body, (gssize) n);
  const char *reason = soup_message_get_reason_phrase (msg);
  g_set_error (error, GPTD_OLLAMA_ERROR,
               status >= 500 || status == 429
               ? GPTD_OLLAMA_ERROR_SERVER : GPTD_OLLAMA_ERROR_REQUEST,
               "%s answered HTTP %u%s%s%s%s", client->url, status,
               reason != NULL && reason[0] != '\0' ? " " : "", reason ? reason : "",
               message != NULL ? ": " : "", message != NULL ? message : "");
  return FALSE;
}

/* Adds the message.content of one reply line to @reply; sets @done. */
static gboolean
read_line (GptdOllamaClient *client, const char *line, guint lineno, GString *reply,
           gboolean *done, GError **error)
{
  g_autoptr (GError) local = NULL;
  g_autoptr (JsonParser) p = gptd_json_load_bounded (line, -1, "the line", 0, &local);
  if (p == NULL || !JSON_NODE_HOLDS_OBJECT (json_parser_get_root (p)))
    {
      g_set_error (error, GPTD_OLLAMA_ERROR, GPTD_OLLAMA_ERROR_REPLY,
                   "line %u of the reply from %s is not a JSON object%s%s", lineno,
                   client->url, local != NULL ? ": " : "",
                   local != NULL ? local->message : "");
      return FALSE;
    }
  JsonObject *o = json_node_get_object (json_parser_get_root (p));
  if (json_object_has_member (o, "error"))
    {
      g_autofree char *message = error_member (line, -1);
      g_set_error (error, GPTD_OLLAMA_ERROR, GPTD_OLLAMA_ERROR_REPLY,
                   "%s reported an error: %s", client->url,
                   message != NULL ? message : line);
      return FALSE;
    }
  JsonNode *d = json_object_get_member (o, "done");
  *done = d != NULL && JSON_NODE_HOLDS_VALUE (d) &&
          json_node_get_value_type (d) == G_TYPE_BOOLEAN && json_node_get_boolean (d);
  JsonNode *m = json_object_get_member (o, "message");
  JsonNode *c = m != NULL && JSON_NODE_HOLDS_OBJECT (m)
                ? json_object_get_member (json_node_get_object (m), "content") : NULL;
  if (c != NULL && JSON_NODE_HOLDS_VALUE (c) &&
      json_node_get_value_type (c) == G_TYPE_STRING)
    g_string_append (reply, json_node_get_string (c));
  else if (!*done)
    {
      g_set_error (error, GPTD_OLLAMA_ERROR, GPTD_OLLAMA_ERROR_REPLY,
                   "line %u of the reply from %s has no message.content", lineno,
                   client->url);
      return FALSE;
    }
  return TRUE;
}

char *
gptd__ollama_chat (GptdOllamaClient *client, const GptdOllamaOptions *options,
                   const char *prompt, GCancellable *cancellable, GError **error)
{
  g_return_val_if_fail (client != NULL && options != NULL && prompt != NULL, NULL);
  gsize len = 0;
  char *payload = build_payload (options, prompt, &len);
  g_autoptr (GBytes) body = g_bytes_new_take (payload, len);
  g_autoptr (SoupMessage) msg = soup_message_new ("POST", client->url);
  soup_message_set_request_body_from_bytes (msg, "application/json", body);

  g_autoptr (GError) local = NULL;
  g_autoptr (GInputStream) in = soup_session_send (client->session, msg, cancellable,
                                                   &local);
  if (in == NULL)
    {
      if (g_error_matches (local, G_IO_ERROR, G_IO_ERROR_CANCELLED))
        g_propagate_error (error, g_steal_pointer (&local));
      else
        g_set_error (error, GPTD_OLLAMA_ERROR, GPTD_OLLAMA_ERROR_UNREACHABLE,
                     "cannot reach %s: %s", client->url, local->message);
      return NULL;
    }
  if (!check_status (client, msg, in, cancellable, error))
    return NULL;

  g_autoptr (GDataInputStream) data = g_data_input_stream_new (in);
  g_autoptr (GString) reply = g_string_new (NULL);
  guint lineno = 0, n_objects = 0;
  gboolean done = FALSE;
  while (!done)
    {
      gsize n = 0;
      g_autofree char *line = g_data_input_stream_read_line_utf8 (data, &n, cancellable,
                                                                  &local);
      lineno++;
      if (local != NULL)
        {
          if (g_error_matches (local, G_IO_ERROR, G_IO_ERROR_CANCELLED))
            g_propagate_error (error, g_steal_pointer (&local));
          else if (g_error_matches (local, G_CONVERT_ERROR,
                                    G_CONVERT_ERROR_ILLEGAL_SEQUENCE))
            g_set_error (error, GPTD_OLLAMA_ERROR, GPTD_OLLAMA_ERROR_REPLY,
                         "line %u of the reply from %s is not UTF-8", lineno,
                         client->url);
          else
            g_set_error (error, GPTD_OLLAMA_ERROR, GPTD_OLLAMA_ERROR_UNREACHABLE,
                         "the reply from %s broke off: %s", client->url, local->message);
          return NULL;
        }
      if (line == NULL)
        break; /* The end of the reply (a server that sends no "done"). */
      g_strstrip (line);
      if (line[0] == '\0')
        continue;
      if (!read_line (client, line, lineno, reply, &done, error))
        return NULL;
      n_objects++;
    }
  g_input_stream_close (G_INPUT_STREAM (data), NULL, NULL);
  if (n_objects == 0)
    {
      g_set_error (error, GPTD_OLLAMA_ERROR, GPTD_OLLAMA_ERROR_REPLY,
                   "the reply from %s is empty", client->url);
      return NULL;
    }
  return g_string_free (g_steal_pointer (&reply), FALSE);
}
