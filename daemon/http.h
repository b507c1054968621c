/* daemon/http.h: what the parts of the HTTP gateway share (`gptd --http ADDR`).
 *
 * The gateway is a process of its own: a GMainLoop running a libsoup 3
 * SoupServer that speaks the OpenAI-style API (docs/http-api.md) and is a client
 * of the daemon's control socket, as gptctl is. Generation and classification run
 * in the daemon's serving workers; each HTTP request that needs one has a thread
 * here that sends the request on a connection of its own and reads the answers,
 * handing them to the main loop, which alone touches libsoup.
 *
 *   http-server.c   options, listening, the bearer token, routing, /health
 *   http-models.c   the models directory: ids, kinds, chat templates
 *   http-openai.c   request bodies parsed and checked, JSON answers and errors
 *   http-stream.c   requests forwarded to the daemon, answered whole or as
 *                   server-sent events; a client that hangs up cancels
 *   http-metrics.c  the counters /metrics shows (Prometheus text)
 */
#pragma once

#include <glib.h>
#include <json-glib/json-glib.h>
#include <libsoup/soup.h>

#include <gptd/prompt-template.h>

G_BEGIN_DECLS

/* Defaults of the gateway's options. */
#define GPTD_HTTP_DEFAULT_MAX_BODY (1024 * 1024)
#define GPTD_HTTP_DEFAULT_PORT 8080

typedef struct _GptdHttpMetrics GptdHttpMetrics;

/* The gateway: its settings and state, on the main loop's thread. */
typedef struct {
  SoupServer *server;
  GMainLoop *loop;
  char *socket_path;      /* the daemon's control socket */
  char *models_dir;       /* a subdirectory per model */
  char *token;            /* the bearer token, NULL for none */
  gsize max_body;         /* bytes of the largest request body */
  GptdHttpMetrics *metrics;
  guint64 next_id;        /* for response ids */
  guint n_jobs;           /* requests being forwarded to the daemon */
} GptdHttp;

/* ---- http-server.c ---- */

/* gptd --http ADDR [OPTIONS]: runs the gateway until SIGTERM or SIGINT. */
int gptd__http_main (int argc, char **argv);

/* Parses ADDR ("HOST:PORT", "[IPV6]:PORT", ":PORT" or "PORT"; no host means
 * 127.0.0.1) into an address to listen on; *loopback says whether it is one.
 * A host must be an IP address or "localhost". */
GInetSocketAddress *gptd__http_parse_address (const char *addr, gboolean *loopback,
                                              GError **error);

/* ---- http-models.c ---- */

typedef enum {
  GPTD_HTTP_MODEL_LANGUAGE,
  GPTD_HTTP_MODEL_CLASSIFIER,
} GptdHttpModelKind;

/* A model: a subdirectory of the models directory holding config.json. */
typedef struct {
  char *id;               /* the directory's name */
  char *dir;              /* its absolute path */
  char *files_dir;        /* where config.json and the tokenizer are: dir, or a
                           * checkpoint root's latest checkpoint */
  GptdHttpModelKind kind;
  gint64 created;         /* config.json's modification time (Unix seconds) */
  int eos_id;             /* config.json's eos_token_id, else -1 */
} GptdHttpModel;

void gptd__http_model_free (GptdHttpModel *model);
G_DEFINE_AUTOPTR_CLEANUP_FUNC (GptdHttpModel, gptd__http_model_free)

/* Whether @id may name a model: not empty, at most 255 bytes of UTF-8, no '/',
 * not "." or "..", no control characters. */
gboolean gptd__http_model_id_valid (const char *id);

/* The models in @models_dir, sorted by id (GptdHttpModel*); a missing directory
 * has none. Subdirectories without a readable config.json are left out. */
GPtrArray *gptd__http_models_list (const char *models_dir, GError **error);

/* The model @id. G_IO_ERROR_NOT_FOUND when there is none, G_IO_ERROR_INVALID_ARGUMENT
 * for an id that cannot name one. */
GptdHttpModel *gptd__http_model_find (const char *models_dir, const char *id, GError **error);

/* The chat template of @model: the file `prompt-template` in its directory (a
 * built-in template's name, "alpaca" or "phi3", or a template in the
 * prompt-format stage's syntax), else Alpaca. */
GptdPromptTemplate *gptd__http_model_template (const GptdHttpModel *model, GError **error);

/* The number of tokens @text encodes to with @model's tokenizer (cached per
 * directory; thread-safe), or -1 when the tokenizer cannot be read. */
gint64 gptd__http_model_count_tokens (const GptdHttpModel *model, const char *text);

/* The token generation stops at: config.json's eos_token_id, else the
 * tokenizer's <|endoftext|> (GPT-2's 50256; gptd's trainers do not write
 * eos_token_id), else -1 for none. Thread-safe. */
int gptd__http_model_eos_id (const GptdHttpModel *model);

/* ---- http-openai.c ---- */

typedef enum {
  GPTD_HTTP_COMPLETIONS,
  GPTD_HTTP_CHAT,
  GPTD_HTTP_CLASSIFY,
} GptdHttpEndpoint;

/* A parsed and checked request body. */
typedef struct {
  GptdHttpEndpoint endpoint;
  char *model;            /* the model id */
  GPtrArray *prompts;     /* completions: each prompt (a choice each); chat: the
                           * formatted conversation; classify: the texts */
  guint max_tokens;
  double temperature;
  double top_p;
  guint top_k;
  guint64 seed;
  gboolean has_seed;
  GPtrArray *stop;        /* stop strings */
  gboolean stream;
  char *weights;          /* "fp32", "bf16", "q8" or NULL */
  gboolean ignore_eos;    /* llama.cpp's extension: generate past the eos token */
  JsonArray *messages;    /* chat: the messages as sent (formatted later) */
} GptdHttpRequest;

void gptd__http_request_free (GptdHttpRequest *req);
G_DEFINE_AUTOPTR_CLEANUP_FUNC (GptdHttpRequest, gptd__http_request_free)

/* An error as the API reports it: status, message, the field at fault. */
typedef struct {
  guint status;
  char *message;
  char *param;            /* NULL for none */
  const char *code;       /* a short code ("invalid_value", "model_not_found"), or NULL */
} GptdHttpError;

void gptd__http_error_clear (GptdHttpError *err);

/* Parses a request body for @endpoint. FALSE with @err filled (400, naming the
 * field) when it is not a JSON object or a field has a bad type or value. */
gboolean gptd__http_request_parse (GptdHttpEndpoint endpoint, const char *body, gsize length,
                                   GptdHttpRequest **out, GptdHttpError *err);

/* Formats a chat request's messages into its one prompt with @tmpl. FALSE with
 * @err (400) when they cannot be formatted. */
gboolean gptd__http_request_format_chat (GptdHttpRequest *req, const GptdPromptTemplate *tmpl,
                                         GptdHttpError *err);

/* Answers @msg with an error object: {"error": {message, type, param, code}}. */
void gptd__http_respond_error (SoupServerMessage *msg, guint status, const char *param,
                               const char *code, const char *format, ...) G_GNUC_PRINTF (5, 6);
/* The same, from a GptdHttpError. */
void gptd__http_respond_error_struct (SoupServerMessage *msg, const GptdHttpError *err);
/* The error object for @status and @message, as JSON text (for a stream). */
char *gptd__http_error_json (guint status, const char *param, const char *code,
                             const char *message);
/* Answers @msg with @status and @node as JSON. */
void gptd__http_respond_json (SoupServerMessage *msg, guint status, JsonNode *node);

/* ---- http-stream.c ---- */

/* Forwards @req (for @model) to the daemon and answers @msg when it is done, or
 * as a stream of server-sent events. Takes @req. */
void gptd__http_forward (GptdHttp *http, SoupServerMessage *msg, GptdHttpModel *model,
                         GptdHttpRequest *req);

/* Whether the daemon answers a ping (blocking, a short timeout). */
gboolean gptd__http_daemon_alive (GptdHttp *http, GError **error);

/* ---- http-metrics.c ---- */

GptdHttpMetrics *gptd__http_metrics_new (void);
void gptd__http_metrics_free (GptdHttpMetrics *m);
/* A request to @path ended with @status. */
void gptd__http_metrics_request (GptdHttpMetrics *m, const char *path, guint status);
/* Tokens counted into the totals and the rate over the last minute. */
void gptd__http_metrics_prompt_tokens (GptdHttpMetrics *m, guint64 n);
void gptd__http_metrics_generated_tokens (GptdHttpMetrics *m, guint64 n);
/* Requests forwarded to the daemon: +1/-1 as they start and end; "waiting":
 * sent, no answer yet (the serving worker's queue). */
void gptd__http_metrics_in_flight (GptdHttpMetrics *m, int delta);
void gptd__http_metrics_waiting (GptdHttpMetrics *m, int delta);
/* The exposition text (text/plain; version=0.0.4). */
char *gptd__http_metrics_render (GptdHttpMetrics *m);

G_END_DECLS
