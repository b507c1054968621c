/* test-ollama-server.c: a small Ollama-compatible server for the tests (see
 * test-ollama-server.h): libsoup's SoupServer on 127.0.0.1, a random port, on a
 * thread of its own, answering POST /api/chat with replies streamed as JSON
 * lines, one character per line, as a model streams its tokens.
 */
#include "config.h"

#include <string.h>
#include <json-glib/json-glib.h>
#include <libsoup/soup.h>

#include "test-ollama-server.h"

static GMutex server_lock;
static TestOllamaMode server_mode;
static const char *const *server_replies;
static guint server_n_requests;
static GPtrArray *server_bodies; /* the request bodies received */
static GMainLoop *server_loop;
static GThread *server_thread;
static guint server_port;
static GMutex ready_lock;
static GCond ready_cond;

static void
append_line (SoupMessageBody *body, const char *content, gboolean done)
{
  g_autoptr (JsonBuilder) b = json_builder_new ();
  json_builder_begin_object (b);
  json_builder_set_member_name (b, "model");
  json_builder_add_string_value (b, "test");
  json_builder_set_member_name (b, "message");
  json_builder_begin_object (b);
  json_builder_set_member_name (b, "role");
  json_builder_add_string_value (b, "assistant");
  json_builder_set_member_name (b, "content");
  json_builder_add_string_value (b, content);
  json_builder_end_object (b);
  json_builder_set_member_name (b, "done");
  json_builder_add_boolean_value (b, done);
  json_builder_end_object (b);
  g_autoptr (JsonNode) root = json_builder_get_root (b);
  g_autofree char *text = json_to_string (root, FALSE);
  char *line = g_strconcat (text, "\n", NULL);
  soup_message_body_append (body, SOUP_MEMORY_TAKE, line, strlen (line));
}

static void
chat_handler (SoupServer *server, SoupServerMessage *msg, const char *path,
              GHashTable *query, gpointer data)
{
  SoupMessageBody *req = soup_server_message_get_request_body (msg);
  g_mutex_lock (&server_lock);
  guint n = server_n_requests++;
  g_ptr_array_add (server_bodies, g_strndup (req->data, req->length));
  TestOllamaMode mode = server_mode;
  const char *reply = NULL;
  if (mode == TEST_OLLAMA_FLAKY && n >= 2)
    mode = TEST_OLLAMA_OK;
  if (mode == TEST_OLLAMA_OK)
    {
      guint k = 0;
      while (server_replies[k] != NULL)
        k++;
      reply = server_replies[server_mode == TEST_OLLAMA_FLAKY ? 0 : n % k];
    }
  g_mutex_unlock (&server_lock);

  SoupMessageHeaders *h = soup_server_message_get_response_headers (msg);
  SoupMessageBody *body = soup_server_message_get_response_body (msg);
  if (mode == TEST_OLLAMA_HTTP_500 || mode == TEST_OLLAMA_FLAKY)
    {
      soup_server_message_set_status (msg, 500, NULL);
      soup_server_message_set_response (msg, "text/plain", SOUP_MEMORY_STATIC, "oops", 4);
      return;
    }
  if (mode == TEST_OLLAMA_NOT_FOUND)
    {
      static const char e[] = "{\"error\":\"model \\\"llama3\\\" not found, try pulling it first\"}";
      soup_server_message_set_status (msg, 404, NULL);
      soup_server_message_set_response (msg, "application/json", SOUP_MEMORY_STATIC,
                                        e, strlen (e));
      return;
    }
  soup_server_message_set_status (msg, 200, NULL);
  soup_message_headers_set_content_type (h, "application/x-ndjson", NULL);
  soup_message_headers_set_encoding (h, SOUP_ENCODING_CHUNKED);
  if (mode == TEST_OLLAMA_GARBAGE)
    append_line (body, "I cannot judge this.", FALSE);
  else
    {
      /* One character per line, as a model streams its tokens. */
      for (const char *p = reply; *p != '\0'; p++)
        {
          char one[2] = { *p, '\0' };
          append_line (body, one, FALSE);
        }
    }
  append_line (body, "", TRUE);
  soup_message_body_complete (body);
}

static gpointer
server_main (gpointer data)
{
  GMainContext *mc = g_main_context_new ();
  g_main_context_push_thread_default (mc);
  SoupServer *server = soup_server_new (NULL, NULL);
  soup_server_add_handler (server, "/api/chat", chat_handler, NULL, NULL);
  g_autoptr (GError) error = NULL;
  g_assert_true (soup_server_listen_local (server, 0, SOUP_SERVER_LISTEN_IPV4_ONLY,
                                           &error));
  g_assert_no_error (error);
  GSList *uris = soup_server_get_uris (server);
  g_mutex_lock (&ready_lock);
  server_port = g_uri_get_port (uris->data);
  server_loop = g_main_loop_new (mc, FALSE);
  g_cond_signal (&ready_cond);
  g_mutex_unlock (&ready_lock);
  g_slist_free_full (uris, (GDestroyNotify) g_uri_unref);
  g_main_loop_run (server_loop);
  soup_server_disconnect (server);
  g_object_unref (server);
  g_main_loop_unref (server_loop);
  g_main_context_pop_thread_default (mc);
  g_main_context_unref (mc);
  return NULL;
}

void
test_ollama_start (void)
{
  server_bodies = g_ptr_array_new_with_free_func (g_free);
  g_mutex_lock (&ready_lock);
  server_thread = g_thread_new ("test-server", server_main, NULL);
  while (server_port == 0)
    g_cond_wait (&ready_cond, &ready_lock);
  g_mutex_unlock (&ready_lock);
}

static gboolean
quit_loop (gpointer data)
{
  g_main_loop_quit (server_loop);
  return G_SOURCE_REMOVE;
}

void
test_ollama_stop (void)
{
  GSource *s = g_idle_source_new ();
  g_source_set_callback (s, quit_loop, NULL, NULL);
  g_source_attach (s, g_main_loop_get_context (server_loop));
  g_source_unref (s);
  g_thread_join (server_thread);
  g_ptr_array_unref (server_bodies);
  server_port = 0;
}

void
test_ollama_reset (TestOllamaMode mode, const char *const *replies)
{
  g_mutex_lock (&server_lock);
  server_mode = mode;
  server_replies = replies;
  server_n_requests = 0;
  g_ptr_array_set_size (server_bodies, 0);
  g_mutex_unlock (&server_lock);
}

char *
test_ollama_url (void)
{
  return g_strdup_printf ("http://127.0.0.1:%u", server_port);
}

guint
test_ollama_n_requests (void)
{
  g_mutex_lock (&server_lock);
  guint n = server_n_requests;
  g_mutex_unlock (&server_lock);
  return n;
}

guint
test_ollama_n_bodies (void)
{
  g_mutex_lock (&server_lock);
  guint n = server_bodies->len;
  g_mutex_unlock (&server_lock);
  return n;
}

char *
test_ollama_body (guint i)
{
  g_mutex_lock (&server_lock);
  char *body = i < server_bodies->len ? g_strdup (server_bodies->pdata[i]) : NULL;
  g_mutex_unlock (&server_lock);
  return body;
}
