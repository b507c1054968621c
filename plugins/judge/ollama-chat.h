/* ollama-chat.h: one chat request to an Ollama-compatible HTTP server
 * (POST URL/api/chat, the reply streamed as JSON lines), as the book's
 * query_model() sends it.
 */
#pragma once

#include <gio/gio.h>
#include <glib.h>

G_BEGIN_DECLS

/**
 * GPTD_OLLAMA_ERROR:
 *
 * Error domain of the chat client; the codes are #GptdOllamaError.
 */
#define GPTD_OLLAMA_ERROR (gptd__ollama_error_quark ())
GQuark gptd__ollama_error_quark (void);

/**
 * GptdOllamaError:
 * @GPTD_OLLAMA_ERROR_UNREACHABLE: no connection, a broken connection or a
 *   timeout (worth retrying).
 * @GPTD_OLLAMA_ERROR_SERVER: HTTP 5xx or 429 (worth retrying).
 * @GPTD_OLLAMA_ERROR_REQUEST: any other HTTP status but 200 (an unknown
 *   model, a bad request: retrying does not help).
 * @GPTD_OLLAMA_ERROR_REPLY: the reply is not a stream of JSON objects with
 *   message.content, or reports an error.
 *
 * Error codes of %GPTD_OLLAMA_ERROR.  Messages name the URL.
 */
typedef enum {
  GPTD_OLLAMA_ERROR_UNREACHABLE,
  GPTD_OLLAMA_ERROR_SERVER,
  GPTD_OLLAMA_ERROR_REQUEST,
  GPTD_OLLAMA_ERROR_REPLY,
} GptdOllamaError;

/**
 * GptdOllamaOptions:
 * @model: the model name ("llama3").
 * @seed: options.seed.
 * @temperature: options.temperature.
 * @num_ctx: options.num_ctx.
 *
 * What goes into each request besides the prompt.
 */
typedef struct {
  const char *model;
  gint64 seed;
  double temperature;
  gint64 num_ctx;
} GptdOllamaOptions;

/**
 * GptdOllamaClient:
 *
 * A connection pool for one server.  Use it from one thread.
 */
typedef struct _GptdOllamaClient GptdOllamaClient;

/**
 * gptd__ollama_client_new:
 * @url: the server ("http://localhost:11434") or its chat endpoint (a URL
 *   ending in /api/chat).
 * @timeout_s: seconds a request may wait for the server to connect or send
 *   more of its reply; 0 for no limit.
 * @error: return location for a #GError.
 *
 * Returns: (transfer full): the client, or NULL with G_IO_ERROR_INVALID_ARGUMENT
 *   for a URL that is not http or https.
 */
GptdOllamaClient *gptd__ollama_client_new (const char *url, double timeout_s,
                                           GError **error);

/**
 * gptd__ollama_client_get_url:
 *
 * Returns: (transfer none): the chat endpoint's URL.
 */
const char *gptd__ollama_client_get_url (GptdOllamaClient *client);

/**
 * gptd__ollama_client_free:
 * @client: (nullable): a client.
 */
void gptd__ollama_client_free (GptdOllamaClient *client);

/**
 * gptd__ollama_chat:
 * @client: a client.
 * @options: the model and its options.
 * @prompt: the user message.
 * @cancellable: (nullable): cancels a request in flight.
 * @error: return location for a #GError.
 *
 * Sends {"model", "messages": [{"role": "user", "content": @prompt}],
 * "options": {"seed", "temperature", "num_ctx"}} and joins message.content of
 * every line of the reply up to the one with "done": true.
 *
 * Returns: (transfer full): the reply text, or NULL with a
 *   %GPTD_OLLAMA_ERROR or G_IO_ERROR_CANCELLED.
 */
char *gptd__ollama_chat (GptdOllamaClient *client, const GptdOllamaOptions *options,
                         const char *prompt, GCancellable *cancellable, GError **error);

G_DEFINE_AUTOPTR_CLEANUP_FUNC (GptdOllamaClient, gptd__ollama_client_free)

G_END_DECLS
