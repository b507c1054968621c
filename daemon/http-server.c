/* daemon/http-server.c: the HTTP gateway's process, `gptd --http ADDR`: its
 * options, the SoupServer listening on ADDR (loopback unless told otherwise),
 * the optional bearer token (compared in constant time), the request-body limit
 * (checked from the headers, before the body is read, and as the body arrives),
 * routing, and the small endpoints: /health, /metrics, /v1/models. The model
 * endpoints are parsed in http-openai.c and forwarded to the daemon by
 * http-stream.c.
 */
#ifdef HAVE_CONFIG_H
#include "config.h"
#endif

#include "http.h"
#include "paths.h"

#include <glib-unix.h>
#include <errno.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/stat.h>

/* The body of a request, collected as it arrives (the message's own body is not
 * accumulated), up to the limit. */
typedef struct {
  GByteArray *data;
  gboolean too_large;
} Body;

#define BODY_KEY "gptd-http-body"

static void
body_free (gpointer data)
{
  Body *body = data;
  g_byte_array_unref (body->data);
  g_free (body);
}

/* ---- Addresses and the token --------------------------------------------------- */

GInetSocketAddress *
gptd__http_parse_address (const char *addr, gboolean *loopback, GError **error)
{
  g_autofree char *host = NULL;
  const char *port_text;
  if (addr[0] == '[')
    {
      const char *close = strchr (addr, ']');
      if (close == NULL || close[1] != ':')
        {
          g_set_error (error, G_IO_ERROR, G_IO_ERROR_INVALID_ARGUMENT,
                       "%s: write an IPv6 address as [ADDRESS]:PORT", addr);
          return NULL;
        }
      host = g_strndup (addr + 1, (gsize) (close - addr - 1));
      port_text = close + 2;
    }
  else
    {
      const char *colon = strrchr (addr, ':');
      if (colon == NULL)
        port_text = addr;
      else
        {
          host = g_strndup (addr, (gsize) (colon - addr));
          port_text = colon + 1;
        }
    }
  guint64 port = 0;
  if (!g_ascii_string_to_unsigned (port_text, 10, 0, 65535, &port, NULL))
    {
      g_set_error (error, G_IO_ERROR, G_IO_ERROR_INVALID_ARGUMENT,
                   "%s: the port must be a number from 0 to 65535 (HOST:PORT, [IPV6]:PORT "
                   "or PORT)", addr);
      return NULL;
    }
  g_autoptr (GInetAddress) inet = NULL;
  if (host == NULL || *host == '\0' || g_ascii_strcasecmp (host, "localhost") == 0)
    inet = g_inet_address_new_loopback (G_SOCKET_FAMILY_IPV4);
  else
    inet = g_inet_address_new_from_string (host);
  if (inet == NULL)
    {
      g_set_error (error, G_IO_ERROR, G_IO_ERROR_INVALID_ARGUMENT,
                   "%s: the host must be an IP address or localhost, not '%s'", addr, host);
      return NULL;
    }
  *loopback = g_inet_address_get_is_loopback (inet);
  return G_INET_SOCKET_ADDRESS (g_inet_socket_address_new (inet, (guint16) port));
}

static char *
read_token (const char *path, GError **error)
{
  g_autofree char *text = NULL;
  if (!g_file_get_contents (path, &text, NULL, error))
    {
      g_prefix_error (error, "the token file: ");
      return NULL;
    }
  g_strstrip (text);
  if (*text == '\0' || strchr (text, '\n') != NULL || !g_utf8_validate (text, -1, NULL))
    {
      g_set_error (error, G_FILE_ERROR, G_FILE_ERROR_INVAL,
                   "the token file %s must hold the token on one line", path);
      return NULL;
    }
  struct stat st;
  if (stat (path, &st) == 0 && (st.st_mode & 0007) != 0)
    g_warning ("The token file %s can be read by every user (mode %04o): make it 0600, "
               "or 0640 with the group of the user the gateway runs as", path,
               (unsigned) (st.st_mode & 07777));
  return g_steal_pointer (&text);
}

/* Whether @given equals @expected, in a time that does not depend on where they
 * differ: both are hashed and the digests compared in full. */
static gboolean
token_equal (const char *given, const char *expected)
{
  guint8 a[32], b[32];
  gsize la = sizeof a, lb = sizeof b;
  g_autoptr (GChecksum) ca = g_checksum_new (G_CHECKSUM_SHA256);
  g_autoptr (GChecksum) cb = g_checksum_new (G_CHECKSUM_SHA256);
  g_checksum_update (ca, (const guchar *) given, (gssize) strlen (given));
  g_checksum_update (cb, (const guchar *) expected, (gssize) strlen (expected));
  g_checksum_get_digest (ca, a, &la);
  g_checksum_get_digest (cb, b, &lb);
  guint8 diff = 0;
  for (gsize i = 0; i < sizeof a; i++)
    diff |= a[i] ^ b[i];
  return diff == 0;
}

static gboolean
authorized (GptdHttp *http, SoupServerMessage *msg)
{
  if (http->token == NULL)
    return TRUE;
  const char *auth = soup_message_headers_get_one (
    soup_server_message_get_request_headers (msg), "Authorization");
  if (auth == NULL || g_ascii_strncasecmp (auth, "Bearer ", 7) != 0)
    return FALSE;
  return token_equal (auth + 7, http->token);
}

static void
respond_unauthorized (SoupServerMessage *msg)
{
  soup_message_headers_replace (soup_server_message_get_response_headers (msg),
                                "WWW-Authenticate", "Bearer");
  gptd__http_respond_error (msg, SOUP_STATUS_UNAUTHORIZED, NULL, "invalid_api_key",
                            "Missing or wrong bearer token: send Authorization: Bearer TOKEN");
}

/* ---- Reading bodies ------------------------------------------------------------- */

static void
on_got_chunk (SoupServerMessage *msg, GBytes *chunk, gpointer data)
{
  GptdHttp *http = data;
  Body *body = g_object_get_data (G_OBJECT (msg), BODY_KEY);
  gsize n = g_bytes_get_size (chunk);
  if (body->too_large || body->data->len + n > http->max_body)
    {
      body->too_large = TRUE;
      g_byte_array_set_size (body->data, 0);
      return;
    }
  g_byte_array_append (body->data, g_bytes_get_data (chunk, NULL), (guint) n);
}

/* Runs once the headers are read, before the body: a request that is not
 * authorized, or announces a body over the limit, is answered now and its body
 * never read. */
static void
early_handler (SoupServer *server, SoupServerMessage *msg, const char *path,
               GHashTable *query, gpointer data)
{
  GptdHttp *http = data;
  if (strcmp (path, "/health") != 0 && !authorized (http, msg))
    {
      respond_unauthorized (msg);
      return;
    }
  SoupMessageHeaders *headers = soup_server_message_get_request_headers (msg);
  goffset length = soup_message_headers_get_content_length (headers);
  if (soup_message_headers_get_encoding (headers) == SOUP_ENCODING_CONTENT_LENGTH
      && length > (goffset) http->max_body)
    {
      gptd__http_respond_error (msg, SOUP_STATUS_REQUEST_ENTITY_TOO_LARGE, NULL,
                                "request_too_large",
                                "The request body is %" G_GOFFSET_FORMAT " bytes; the limit "
                                "is %" G_GSIZE_FORMAT " (--max-body)", length, http->max_body);
      soup_message_headers_replace (soup_server_message_get_response_headers (msg),
                                    "Connection", "close");
      return;
    }
  Body *body = g_new0 (Body, 1);
  body->data = g_byte_array_new ();
  g_object_set_data_full (G_OBJECT (msg), BODY_KEY, body, body_free);
  soup_message_body_set_accumulate (soup_server_message_get_request_body (msg), FALSE);
  g_signal_connect (msg, "got-chunk", G_CALLBACK (on_got_chunk), http);
}

/* ---- Endpoints ------------------------------------------------------------------- */

static void
handle_health (GptdHttp *http, SoupServerMessage *msg)
{
  g_autoptr (GError) error = NULL;
  g_autoptr (JsonBuilder) b = json_builder_new ();
  json_builder_begin_object (b);
  if (gptd__http_daemon_alive (http, &error))
    {
      json_builder_set_member_name (b, "status");
      json_builder_add_string_value (b, "ok");
      json_builder_end_object (b);
      g_autoptr (JsonNode) root = json_builder_get_root (b);
      gptd__http_respond_json (msg, SOUP_STATUS_OK, root);
      return;
    }
  json_builder_set_member_name (b, "status");
  json_builder_add_string_value (b, "unavailable");
  json_builder_set_member_name (b, "message");
  json_builder_add_string_value (b, error->message);
  json_builder_end_object (b);
  g_autoptr (JsonNode) root = json_builder_get_root (b);
  gptd__http_respond_json (msg, SOUP_STATUS_SERVICE_UNAVAILABLE, root);
}

static void
handle_metrics (GptdHttp *http, SoupServerMessage *msg)
{
  char *text = gptd__http_metrics_render (http->metrics);
  soup_server_message_set_status (msg, SOUP_STATUS_OK, NULL);
  soup_server_message_set_response (msg, "text/plain; version=0.0.4; charset=utf-8",
                                    SOUP_MEMORY_TAKE, text, strlen (text));
}

static void
add_model (JsonBuilder *b, const GptdHttpModel *model)
{
  json_builder_begin_object (b);
  json_builder_set_member_name (b, "id");
  json_builder_add_string_value (b, model->id);
  json_builder_set_member_name (b, "object");
  json_builder_add_string_value (b, "model");
  json_builder_set_member_name (b, "created");
  json_builder_add_int_value (b, model->created);
  json_builder_set_member_name (b, "owned_by");
  json_builder_add_string_value (b, "gptd");
  json_builder_set_member_name (b, "kind");
  json_builder_add_string_value (b, model->kind == GPTD_HTTP_MODEL_CLASSIFIER ? "classifier"
                                                                              : "language");
  json_builder_end_object (b);
}

static void
handle_models (GptdHttp *http, SoupServerMessage *msg, const char *path)
{
  g_autoptr (GError) error = NULL;
  g_autoptr (JsonBuilder) b = json_builder_new ();
  if (g_str_has_prefix (path, "/v1/models/"))
    {
      const char *id = path + strlen ("/v1/models/");
      g_autoptr (GptdHttpModel) model = gptd__http_model_find (http->models_dir, id, &error);
      if (model == NULL)
        {
          gptd__http_respond_error (msg, SOUP_STATUS_NOT_FOUND, "model", "model_not_found",
                                    "%s", error->message);
          return;
        }
      add_model (b, model);
    }
  else
    {
      g_autoptr (GPtrArray) models = gptd__http_models_list (http->models_dir, &error);
      if (models == NULL)
        {
          gptd__http_respond_error (msg, SOUP_STATUS_INTERNAL_SERVER_ERROR, NULL, NULL, "%s",
                                    error->message);
          return;
        }
      json_builder_begin_object (b);
      json_builder_set_member_name (b, "object");
      json_builder_add_string_value (b, "list");
      json_builder_set_member_name (b, "data");
      json_builder_begin_array (b);
      for (guint i = 0; i < models->len; i++)
        add_model (b, models->pdata[i]);
      json_builder_end_array (b);
      json_builder_end_object (b);
    }
  g_autoptr (JsonNode) root = json_builder_get_root (b);
  gptd__http_respond_json (msg, SOUP_STATUS_OK, root);
}

static void
handle_model_request (GptdHttp *http, SoupServerMessage *msg, GptdHttpEndpoint endpoint)
{
  Body *body = g_object_get_data (G_OBJECT (msg), BODY_KEY);
  if (body == NULL || body->too_large)
    {
      gptd__http_respond_error (msg, SOUP_STATUS_REQUEST_ENTITY_TOO_LARGE, NULL,
                                "request_too_large",
                                "The request body is over the limit of %" G_GSIZE_FORMAT
                                " bytes (--max-body)", http->max_body);
      return;
    }
  GptdHttpError err = { 0 };
  g_autoptr (GptdHttpRequest) req = NULL;
  if (!gptd__http_request_parse (endpoint, (const char *) body->data->data, body->data->len,
                                 &req, &err))
    {
      gptd__http_respond_error_struct (msg, &err);
      gptd__http_error_clear (&err);
      return;
    }
  g_autoptr (GError) error = NULL;
  g_autoptr (GptdHttpModel) model = gptd__http_model_find (http->models_dir, req->model, &error);
  if (model == NULL)
    {
      gboolean missing = g_error_matches (error, G_IO_ERROR, G_IO_ERROR_NOT_FOUND);
      gboolean bad = g_error_matches (error, G_IO_ERROR, G_IO_ERROR_INVALID_ARGUMENT);
      gptd__http_respond_error (msg, missing ? SOUP_STATUS_NOT_FOUND
                                     : bad ? SOUP_STATUS_BAD_REQUEST
                                           : SOUP_STATUS_INTERNAL_SERVER_ERROR,
                                "model", missing ? "model_not_found" : NULL, "%s",
                                error->message);
      return;
    }
  gboolean classifier = model->kind == GPTD_HTTP_MODEL_CLASSIFIER;
  if (classifier != (endpoint == GPTD_HTTP_CLASSIFY))
    {
      gptd__http_respond_error (msg, SOUP_STATUS_BAD_REQUEST, "model", "model_not_supported",
                                classifier ? "The model '%s' is a classifier: POST its texts "
                                             "to /v1/classify"
                                           : "The model '%s' is a language model: ask "
                                             "/v1/completions or /v1/chat/completions",
                                model->id);
      return;
    }
  if (endpoint == GPTD_HTTP_CHAT)
    {
      g_autoptr (GptdPromptTemplate) tmpl = gptd__http_model_template (model, &error);
      if (tmpl == NULL)
        {
          gptd__http_respond_error (msg, SOUP_STATUS_INTERNAL_SERVER_ERROR, NULL, NULL,
                                    "The chat template of the model '%s': %s", model->id,
                                    error->message);
          return;
        }
      if (!gptd__http_request_format_chat (req, tmpl, &err))
        {
          gptd__http_respond_error_struct (msg, &err);
          gptd__http_error_clear (&err);
          return;
        }
    }
  gptd__http_forward (http, msg, g_steal_pointer (&model), g_steal_pointer (&req));
}

static const struct {
  const char *path;
  const char *method;
} routes[] = {
  { "/health", "GET" },
  { "/metrics", "GET" },
  { "/v1/models", "GET" },
  { "/v1/completions", "POST" },
  { "/v1/chat/completions", "POST" },
  { "/v1/classify", "POST" },
};

static void
handler (SoupServer *server, SoupServerMessage *msg, const char *path, GHashTable *query,
         gpointer data)
{
  GptdHttp *http = data;
  if (soup_server_message_get_status (msg) != 0)
    return; /* answered by the early handler */
  const char *method = soup_server_message_get_method (msg);
  const char *want = NULL;
  for (gsize i = 0; i < G_N_ELEMENTS (routes); i++)
    if (strcmp (path, routes[i].path) == 0
        || (strcmp (routes[i].path, "/v1/models") == 0 && g_str_has_prefix (path, "/v1/models/")))
      want = routes[i].method;
  if (want == NULL)
    {
      gptd__http_respond_error (msg, SOUP_STATUS_NOT_FOUND, NULL, "unknown_url",
                                "Unknown path %s: see docs/http-api.md for the endpoints", path);
      return;
    }
  if (strcmp (method, want) != 0)
    {
      soup_message_headers_replace (soup_server_message_get_response_headers (msg), "Allow",
                                    want);
      gptd__http_respond_error (msg, SOUP_STATUS_METHOD_NOT_ALLOWED, NULL,
                                "method_not_allowed", "%s takes %s, not %s", path, want, method);
      return;
    }
  if (strcmp (path, "/health") == 0)
    handle_health (http, msg);
  else if (strcmp (path, "/metrics") == 0)
    handle_metrics (http, msg);
  else if (g_str_has_prefix (path, "/v1/models"))
    handle_models (http, msg, path);
  else if (strcmp (path, "/v1/completions") == 0)
    handle_model_request (http, msg, GPTD_HTTP_COMPLETIONS);
  else if (strcmp (path, "/v1/chat/completions") == 0)
    handle_model_request (http, msg, GPTD_HTTP_CHAT);
  else
    handle_model_request (http, msg, GPTD_HTTP_CLASSIFY);
}

static void
on_request_finished (SoupServer *server, SoupServerMessage *msg, gpointer data)
{
  GptdHttp *http = data;
  GUri *uri = soup_server_message_get_uri (msg);
  gptd__http_metrics_request (http->metrics, uri ? g_uri_get_path (uri) : NULL,
                              soup_server_message_get_status (msg));
}

/* A client that hung up before its answer was written: counted as 499, as
 * nginx does. */
static void
on_request_aborted (SoupServer *server, SoupServerMessage *msg, gpointer data)
{
  GptdHttp *http = data;
  GUri *uri = soup_server_message_get_uri (msg);
  gptd__http_metrics_request (http->metrics, uri ? g_uri_get_path (uri) : NULL, 499);
}

static gboolean
on_stop_signal (gpointer data)
{
  GptdHttp *http = data;
  g_message ("Stopping the HTTP gateway");
  g_main_loop_quit (http->loop);
  return G_SOURCE_CONTINUE;
}

/* ---- Main --------------------------------------------------------------------------- */

static const char http_description[] =
  "Serves the OpenAI-style HTTP API (docs/http-api.md) on ADDR: HOST:PORT,\n"
  "[IPV6]:PORT, or PORT alone for 127.0.0.1:PORT. It forwards the requests to the\n"
  "daemon over its control socket, as gptctl does. A non-loopback address needs a\n"
  "token (--token-file).\n"
  "\n"
  "Exit status: 0 after SIGTERM or SIGINT, 1 when it cannot listen (the port is\n"
  "taken), 2 on bad usage (a bad address, an unreadable token file, a public\n"
  "address without a token, listening not permitted).\n";

int
gptd__http_main (int argc, char **argv)
{
  /* Started by the daemon (server-http.c): end with it. */
  if (g_getenv ("GPTD_HTTP_SUPERVISED") != NULL)
    {
      prctl (PR_SET_PDEATHSIG, SIGTERM);
      g_unsetenv ("GPTD_HTTP_SUPERVISED");
    }
  g_autofree char *addr = NULL, *socket_path = NULL, *models_dir = NULL, *token_file = NULL;
  gint64 max_body = GPTD_HTTP_DEFAULT_MAX_BODY;
  GOptionEntry entries[] = {
    { "http", 0, 0, G_OPTION_ARG_STRING, &addr, "Listen on this address", "ADDR" },
    { "socket", 's', 0, G_OPTION_ARG_FILENAME, &socket_path,
      "The daemon's control socket (default: $GPTD_SOCKET, else the daemon's default)",
      "PATH" },
    { "models", 0, 0, G_OPTION_ARG_FILENAME, &models_dir,
      "The models directory: a subdirectory per model (default: STATE/models of the "
      "daemon's default state directory)", "DIR" },
    { "token-file", 0, 0, G_OPTION_ARG_FILENAME, &token_file,
      "Require Authorization: Bearer TOKEN, the token being this file's one line", "FILE" },
    { "max-body", 0, 0, G_OPTION_ARG_INT64, &max_body,
      "The largest request body in bytes (default 1 MiB)", "BYTES" },
    { NULL }
  };
  g_autoptr (GOptionContext) ctx = g_option_context_new ("- the HTTP gateway");
  g_option_context_add_main_entries (ctx, entries, NULL);
  g_option_context_set_description (ctx, http_description);
  g_autoptr (GError) error = NULL;
  if (!g_option_context_parse (ctx, &argc, &argv, &error))
    {
      g_printerr ("gptd: %s\nTry 'gptd --http ADDR --help'.\n", error->message);
      return 2;
    }
  if (addr == NULL || argc > 1)
    {
      g_printerr ("gptd: --http wants an address (gptd --http 127.0.0.1:8080) and no other "
                  "arguments\n");
      return 2;
    }
  if (max_body < 1024 || max_body > G_GINT64_CONSTANT (1) << 30)
    {
      g_printerr ("gptd: --max-body must be from 1024 to 1073741824 bytes\n");
      return 2;
    }
  gboolean loopback = FALSE;
  g_autoptr (GInetSocketAddress) address = gptd__http_parse_address (addr, &loopback, &error);
  if (address == NULL)
    {
      g_printerr ("gptd: --http %s\n", error->message);
      return 2;
    }

  GptdHttp http = { 0 };
  http.max_body = (gsize) max_body;
  if (token_file != NULL && (http.token = read_token (token_file, &error)) == NULL)
    {
      g_printerr ("gptd: --token-file: %s\n", error->message);
      return 2;
    }
  if (!loopback && http.token == NULL)
    {
      g_printerr ("gptd: --http %s is not a loopback address: anyone who reaches it could "
                  "use the models. Give a token (--token-file, http-token-file= in "
                  "gptd.conf) or listen on 127.0.0.1\n", addr);
      return 2;
    }
  http.socket_path = socket_path ? g_strdup (socket_path) : gptd__default_socket_path ();
  if (models_dir != NULL)
    http.models_dir = g_canonicalize_filename (models_dir, NULL);
  else
    {
      g_autofree char *state = gptd__default_state_dir ();
      http.models_dir = g_build_filename (state, "models", NULL);
    }
  http.metrics = gptd__http_metrics_new ();
  signal (SIGPIPE, SIG_IGN);

  http.server = soup_server_new ("server-header", "gptd/" PACKAGE_VERSION " ", NULL);
  soup_server_add_early_handler (http.server, NULL, early_handler, &http, NULL);
  soup_server_add_handler (http.server, NULL, handler, &http, NULL);
  g_signal_connect (http.server, "request-finished", G_CALLBACK (on_request_finished), &http);
  g_signal_connect (http.server, "request-aborted", G_CALLBACK (on_request_aborted), &http);
  int status = 0;
  if (!soup_server_listen (http.server, G_SOCKET_ADDRESS (address), 0, &error))
    {
      /* Not allowed to listen at all (a sandbox without AF_INET, a privileged
       * port) is a setting to change, not a state to wait out. */
      gboolean refused = g_error_matches (error, G_IO_ERROR, G_IO_ERROR_PERMISSION_DENIED)
                         || g_error_matches (error, G_IO_ERROR, G_IO_ERROR_NOT_SUPPORTED);
      g_printerr ("gptd: --http %s: cannot listen: %s%s\n", addr, error->message,
                  refused ? " (under the shipped gptd.service, allow TCP sockets first: see "
                            "docs/http-api.md)" : "");
      status = refused ? 2 : 1;
    }
  else
    {
      GSList *uris = soup_server_get_uris (http.server);
      g_autofree char *uri = uris ? g_uri_to_string (uris->data) : g_strdup (addr);
      g_slist_free_full (uris, (GDestroyNotify) g_uri_unref);
      g_message ("HTTP API listening on %s (daemon at %s, models in %s, %s)", uri,
                 http.socket_path, http.models_dir,
                 http.token ? "bearer token required" : "no token");
      http.loop = g_main_loop_new (NULL, FALSE);
      guint term = g_unix_signal_add (SIGTERM, on_stop_signal, &http);
      guint intr = g_unix_signal_add (SIGINT, on_stop_signal, &http);
      g_main_loop_run (http.loop);
      g_source_remove (term);
      g_source_remove (intr);
      g_main_loop_unref (http.loop);
      soup_server_disconnect (http.server);
    }
  /* Requests still forwarded end with the process: their connections close and
   * the daemon cancels their generations. */
  g_object_unref (http.server);
  gptd__http_metrics_free (http.metrics);
  g_free (http.socket_path);
  g_free (http.models_dir);
  if (http.token != NULL)
    explicit_bzero (http.token, strlen (http.token));
  g_free (http.token);
  return status;
}
