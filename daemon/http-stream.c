/* daemon/http-stream.c: HTTP requests forwarded to the daemon. Each request has
 * a thread that connects to the control socket (control-client.c), sends the
 * GenerateRequests (one per prompt, in turn) or the ClassifyRequest, and reads
 * the answers, handing each to the main loop; the main loop alone touches
 * libsoup: it answers with one JSON object when all is done, or, for `stream:
 * true`, with server-sent events, a `data: {chunk}` per TextChunk and `data:
 * [DONE]` at the end. A client that hangs up (the message is finished or its
 * connection closed before the answer is complete) shuts the thread's
 * connection down: the daemon takes that as the client hanging up and cancels
 * the generation at its next token.
 */
#ifdef HAVE_CONFIG_H
#include "config.h"
#endif

#include "http.h"
#include "control-client.h"

#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

typedef struct {
  gatomicrefcount ref;
  GptdHttp *http;
  GptdHttpModel *model;
  GptdHttpRequest *req;
  char *id;
  gint64 created;
  /* The main loop's: */
  SoupServerMessage *msg;       /* NULL once answered or the client has gone */
  gulong finished_id, disconnected_id;
  guint watch_id;               /* the hang-up check of a request answered whole */
  gboolean answered;            /* the daemon has answered something */
  gboolean started;             /* a stream's headers are out */
  gboolean cancelled_by_client;
  GPtrArray *texts;             /* generated text per prompt */
  GPtrArray *finish_reasons;    /* per prompt */
  guint64 prompt_tokens, completion_tokens;
  guint chunk_tokens;           /* tokens counted as chunks came, for this prompt */
  Gptd__Response *predictions;  /* classify's answer */
  GptdHttpError error;          /* the first error, status 0 for none */
  /* The thread's connection, which the main loop may shut down. */
  GMutex lock;
  int fd;
  gboolean cancelled;
} Job;

typedef enum {
  POST_ANSWERED,   /* the daemon's first answer came; prompt_tokens counted */
  POST_CHUNK,      /* generated text */
  POST_PROMPT_END, /* a prompt's generation ended: finish reason, tokens */
  POST_PREDICTIONS,
  POST_ERROR,
  POST_FINISH,     /* the thread is done */
} PostKind;

typedef struct {
  Job *job;
  PostKind kind;
  char *text;
  guint64 n;
  guint status;
  Gptd__Response *resp;
} Post;

static Job *
job_ref (Job *job)
{
  g_atomic_ref_count_inc (&job->ref);
  return job;
}

static void
job_unref (Job *job)
{
  if (!g_atomic_ref_count_dec (&job->ref))
    return;
  g_assert (job->msg == NULL);
  gptd__http_model_free (job->model);
  gptd__http_request_free (job->req);
  g_free (job->id);
  g_ptr_array_unref (job->texts);
  g_ptr_array_unref (job->finish_reasons);
  gptd__control_response_free (job->predictions);
  gptd__http_error_clear (&job->error);
  g_mutex_clear (&job->lock);
  g_free (job);
}

/* ---- The thread ------------------------------------------------------------------ */

static gboolean on_post (gpointer data);

static void
post (Job *job, PostKind kind, char *text, guint64 n, guint status, Gptd__Response *resp)
{
  Post *p = g_new0 (Post, 1);
  p->job = job_ref (job);
  p->kind = kind;
  p->text = text;
  p->n = n;
  p->status = status;
  p->resp = resp;
  g_main_context_invoke (NULL, on_post, p);
}

static guint
status_of_daemon_error (Gptd__ErrorCode code)
{
  switch (code)
    {
    case GPTD__ERROR_CODE__ERROR_CODE_BAD_REQUEST:
      return SOUP_STATUS_BAD_REQUEST;
    case GPTD__ERROR_CODE__ERROR_CODE_NOT_FOUND:
      return SOUP_STATUS_NOT_FOUND;
    case GPTD__ERROR_CODE__ERROR_CODE_PERMISSION_DENIED:
      return SOUP_STATUS_FORBIDDEN;
    case GPTD__ERROR_CODE__ERROR_CODE_SHUTTING_DOWN:
    case GPTD__ERROR_CODE__ERROR_CODE_TOO_MANY_CONNECTIONS:
      return SOUP_STATUS_SERVICE_UNAVAILABLE;
    default:
      return SOUP_STATUS_INTERNAL_SERVER_ERROR;
    }
}

static gboolean
job_cancelled (Job *job)
{
  g_mutex_lock (&job->lock);
  gboolean cancelled = job->cancelled;
  g_mutex_unlock (&job->lock);
  return cancelled;
}

/* Sends one request and reads its answers to the end. FALSE when the job is over
 * (an error was posted, or the client has gone). */
static gboolean
job_exchange (Job *job, GptdControlClient *cl, Gptd__Request *request, guint64 prompt_tokens)
{
  gboolean answered = FALSE;
  g_autoptr (GError) error = NULL;
  if (!gptd__control_client_send (cl, request, &error))
    {
      if (!job_cancelled (job))
        post (job, POST_ERROR, g_strdup_printf ("The daemon at %s: %s", cl->socket_path,
                                                error->message), 0,
              SOUP_STATUS_SERVICE_UNAVAILABLE, NULL);
      return FALSE;
    }
  for (;;)
    {
      Gptd__Response *resp = gptd__control_client_receive (cl, &error);
      if (resp == NULL)
        {
          if (!job_cancelled (job))
            post (job, POST_ERROR, g_strdup_printf ("The daemon at %s: %s", cl->socket_path,
                                                    error->message), 0,
                  SOUP_STATUS_SERVICE_UNAVAILABLE, NULL);
          return FALSE;
        }
      if (gptd__control_response_failed (resp))
        {
          post (job, POST_ERROR, g_strdup (resp->error->message), 0,
                status_of_daemon_error (resp->error->code), NULL);
          gptd__control_response_free (resp);
          return FALSE;
        }
      if (!answered)
        {
          answered = TRUE;
          post (job, POST_ANSWERED, NULL, prompt_tokens, 0, NULL);
        }
      gboolean end = resp->end;
      if (resp->body_case == GPTD__RESPONSE__BODY_PREDICTIONS)
        {
          post (job, POST_PREDICTIONS, NULL, 0, 0, resp);
          return TRUE;
        }
      const Gptd__Event *ev = resp->body_case == GPTD__RESPONSE__BODY_EVENT ? resp->event : NULL;
      if (ev != NULL && ev->body_case == GPTD__EVENT__BODY_TEXT && ev->text != NULL)
        {
          if (ev->text->done)
            post (job, POST_PROMPT_END, g_strdup (ev->text->stop_reason), ev->text->tokens, 0,
                  NULL);
          else if (ev->text->text != NULL && *ev->text->text)
            post (job, POST_CHUNK, g_strdup (ev->text->text), 0, 0, NULL);
        }
      gptd__control_response_free (resp);
      if (end)
        return TRUE;
    }
}

static gpointer
job_thread (gpointer data)
{
  Job *job = data;
  GptdHttpRequest *req = job->req;
  g_autoptr (GptdControlClient) cl = gptd__control_client_new (job->http->socket_path);
  g_autoptr (GError) error = NULL;
  gboolean connected = gptd__control_client_connect (cl, &error);
  if (!connected)
    post (job, POST_ERROR, g_strdup_printf ("The daemon cannot be reached: %s", error->message),
          0, SOUP_STATUS_SERVICE_UNAVAILABLE, NULL);
  else
    {
      g_mutex_lock (&job->lock);
      job->fd = cl->fd;
      gboolean cancelled = job->cancelled;
      g_mutex_unlock (&job->lock);
      int eos_id = req->endpoint == GPTD_HTTP_CLASSIFY || req->ignore_eos
                     ? -1 : gptd__http_model_eos_id (job->model);
      if (!cancelled && req->endpoint == GPTD_HTTP_CLASSIFY)
        {
          Gptd__Request request = GPTD__REQUEST__INIT;
          Gptd__ClassifyRequest cr = GPTD__CLASSIFY_REQUEST__INIT;
          cr.model = job->model->dir;
          cr.n_texts = req->prompts->len;
          cr.texts = (char **) req->prompts->pdata;
          cr.weights = req->weights ? req->weights : (char *) "";
          request.body_case = GPTD__REQUEST__BODY_CLASSIFY;
          request.classify = &cr;
          job_exchange (job, cl, &request, 0);
        }
      else if (!cancelled)
        for (guint i = 0; i < req->prompts->len; i++)
          {
            const char *prompt = req->prompts->pdata[i];
            gint64 n = gptd__http_model_count_tokens (job->model, prompt);
            Gptd__Request request = GPTD__REQUEST__INIT;
            Gptd__GenerateRequest gr = GPTD__GENERATE_REQUEST__INIT;
            gr.model = job->model->dir;
            gr.prompt = (char *) prompt;
            gr.max_new_tokens = req->max_tokens;
            gr.temperature = req->temperature;
            gr.top_k = req->top_k;
            gr.top_p = req->top_p;
            gr.seed = req->seed;
            gr.has_seed = req->has_seed;
            gr.eos_id = eos_id;
            gr.weights = req->weights ? req->weights : (char *) "";
            gr.n_stop = req->stop->len;
            gr.stop = (char **) req->stop->pdata;
            request.body_case = GPTD__REQUEST__BODY_GENERATE;
            request.generate = &gr;
            /* One prompt at a time, on the same connection. */
            if (!job_exchange (job, cl, &request, n > 0 ? (guint64) n : 0))
              break;
          }
    }
  g_mutex_lock (&job->lock);
  job->fd = -1;
  g_clear_pointer (&cl, gptd__control_client_free);
  g_mutex_unlock (&job->lock);
  post (job, POST_FINISH, NULL, 0, 0, NULL);
  job_unref (job);
  return NULL;
}

/* ---- The main loop --------------------------------------------------------------- */

static void
gstring_free (gpointer data)
{
  g_string_free (data, TRUE);
}

static const char *
finish_reason (const char *stop_reason)
{
  if (g_strcmp0 (stop_reason, "length") == 0)
    return "length";
  if (g_strcmp0 (stop_reason, "eos") == 0 || g_strcmp0 (stop_reason, "stop") == 0)
    return "stop";
  return stop_reason ? stop_reason : "stop";
}

static void
begin_object (JsonBuilder *b, Job *job, const char *object)
{
  json_builder_begin_object (b);
  json_builder_set_member_name (b, "id");
  json_builder_add_string_value (b, job->id);
  json_builder_set_member_name (b, "object");
  json_builder_add_string_value (b, object);
  json_builder_set_member_name (b, "created");
  json_builder_add_int_value (b, job->created);
  json_builder_set_member_name (b, "model");
  json_builder_add_string_value (b, job->model->id);
}

/* One streamed chunk: @text (NULL for none) and @finish (NULL: not the last). */
static char *
stream_chunk (Job *job, const char *text, const char *finish, gboolean role)
{
  gboolean chat = job->req->endpoint == GPTD_HTTP_CHAT;
  g_autoptr (JsonBuilder) b = json_builder_new ();
  begin_object (b, job, chat ? "chat.completion.chunk" : "text_completion");
  json_builder_set_member_name (b, "choices");
  json_builder_begin_array (b);
  json_builder_begin_object (b);
  json_builder_set_member_name (b, "index");
  json_builder_add_int_value (b, 0);
  if (chat)
    {
      json_builder_set_member_name (b, "delta");
      json_builder_begin_object (b);
      if (role)
        {
          json_builder_set_member_name (b, "role");
          json_builder_add_string_value (b, "assistant");
        }
      if (text != NULL)
        {
          json_builder_set_member_name (b, "content");
          json_builder_add_string_value (b, text);
        }
      json_builder_end_object (b);
    }
  else
    {
      json_builder_set_member_name (b, "text");
      json_builder_add_string_value (b, text ? text : "");
      json_builder_set_member_name (b, "logprobs");
      json_builder_add_null_value (b);
    }
  json_builder_set_member_name (b, "finish_reason");
  if (finish != NULL)
    json_builder_add_string_value (b, finish);
  else
    json_builder_add_null_value (b);
  json_builder_end_object (b);
  json_builder_end_array (b);
  json_builder_end_object (b);
  g_autoptr (JsonNode) root = json_builder_get_root (b);
  g_autofree char *json = json_to_string (root, FALSE);
  return g_strdup_printf ("data: %s\n\n", json);
}

static void
stream_write (Job *job, char *event)
{
  SoupMessageBody *body = soup_server_message_get_response_body (job->msg);
  soup_message_body_append (body, SOUP_MEMORY_TAKE, event, strlen (event));
  soup_server_message_unpause (job->msg);
}

/* The status line and headers of a stream go with its first text, so that an
 * error before it (a model that cannot be loaded) still gets its status code
 * and a plain JSON body. */
static void
stream_begin (Job *job)
{
  if (job->started)
    return;
  job->started = TRUE;
  SoupServerMessage *msg = job->msg;
  SoupMessageHeaders *headers = soup_server_message_get_response_headers (msg);
  soup_message_headers_set_encoding (headers, SOUP_ENCODING_CHUNKED);
  soup_message_headers_set_content_type (headers, "text/event-stream", NULL);
  soup_message_headers_replace (headers, "Cache-Control", "no-cache");
  soup_message_body_set_accumulate (soup_server_message_get_response_body (msg), FALSE);
  soup_server_message_set_status (msg, SOUP_STATUS_OK, NULL);
  if (job->req->endpoint == GPTD_HTTP_CHAT)
    stream_write (job, stream_chunk (job, "", NULL, TRUE));
}

static void
add_usage (JsonBuilder *b, Job *job)
{
  json_builder_set_member_name (b, "usage");
  json_builder_begin_object (b);
  json_builder_set_member_name (b, "prompt_tokens");
  json_builder_add_int_value (b, (gint64) job->prompt_tokens);
  json_builder_set_member_name (b, "completion_tokens");
  json_builder_add_int_value (b, (gint64) job->completion_tokens);
  json_builder_set_member_name (b, "total_tokens");
  json_builder_add_int_value (b, (gint64) (job->prompt_tokens + job->completion_tokens));
  json_builder_end_object (b);
}

static JsonNode *
completion_json (Job *job)
{
  gboolean chat = job->req->endpoint == GPTD_HTTP_CHAT;
  g_autoptr (JsonBuilder) b = json_builder_new ();
  begin_object (b, job, chat ? "chat.completion" : "text_completion");
  json_builder_set_member_name (b, "choices");
  json_builder_begin_array (b);
  for (guint i = 0; i < job->texts->len; i++)
    {
      GString *text = job->texts->pdata[i];
      json_builder_begin_object (b);
      json_builder_set_member_name (b, "index");
      json_builder_add_int_value (b, i);
      if (chat)
        {
          json_builder_set_member_name (b, "message");
          json_builder_begin_object (b);
          json_builder_set_member_name (b, "role");
          json_builder_add_string_value (b, "assistant");
          json_builder_set_member_name (b, "content");
          json_builder_add_string_value (b, text->str);
          json_builder_end_object (b);
        }
      else
        {
          json_builder_set_member_name (b, "text");
          json_builder_add_string_value (b, text->str);
          json_builder_set_member_name (b, "logprobs");
          json_builder_add_null_value (b);
        }
      json_builder_set_member_name (b, "finish_reason");
      json_builder_add_string_value (b, i < job->finish_reasons->len
                                          ? job->finish_reasons->pdata[i] : "stop");
      json_builder_end_object (b);
    }
  json_builder_end_array (b);
  add_usage (b, job);
  json_builder_end_object (b);
  return json_builder_get_root (b);
}

static JsonNode *
classify_json (Job *job)
{
  const Gptd__PredictionList *list = job->predictions->predictions;
  g_autoptr (JsonBuilder) b = json_builder_new ();
  begin_object (b, job, "classification");
  json_builder_set_member_name (b, "data");
  json_builder_begin_array (b);
  for (gsize i = 0; list != NULL && i < list->n_predictions; i++)
    {
      const Gptd__Prediction *p = list->predictions[i];
      json_builder_begin_object (b);
      json_builder_set_member_name (b, "index");
      json_builder_add_int_value (b, (gint64) i);
      json_builder_set_member_name (b, "label");
      json_builder_add_string_value (b, p->label_name);
      json_builder_set_member_name (b, "label_id");
      json_builder_add_int_value (b, p->label);
      json_builder_set_member_name (b, "probability");
      json_builder_add_double_value (b, p->label < p->n_probabilities
                                          ? p->probabilities[p->label] : 0.0);
      json_builder_set_member_name (b, "probabilities");
      json_builder_begin_array (b);
      for (gsize k = 0; k < p->n_probabilities; k++)
        json_builder_add_double_value (b, p->probabilities[k]);
      json_builder_end_array (b);
      json_builder_end_object (b);
    }
  json_builder_end_array (b);
  json_builder_end_object (b);
  return json_builder_get_root (b);
}

/* The message is no longer ours: answered, or its client has gone. */
static void
job_release_msg (Job *job)
{
  if (job->msg == NULL)
    return;
  if (job->watch_id != 0)
    g_source_remove (job->watch_id);
  job->watch_id = 0;
  g_signal_handler_disconnect (job->msg, job->finished_id);
  g_signal_handler_disconnect (job->msg, job->disconnected_id);
  g_clear_object (&job->msg);
}

/* The client went away before its answer was complete. */
static void
on_client_gone (SoupServerMessage *msg, gpointer data)
{
  Job *job = data;
  g_debug ("%s: the client went away; cancelling", job->id);
  job->cancelled_by_client = TRUE;
  job_release_msg (job);
  g_mutex_lock (&job->lock);
  job->cancelled = TRUE;
  if (job->fd >= 0)
    shutdown (job->fd, SHUT_RDWR);
  g_mutex_unlock (&job->lock);
}

/* A request answered whole writes nothing until the end, so libsoup would not
 * notice its client leave: every half second, a peek at the connection. A
 * readable socket with nothing to read has been closed by the client. */
static gboolean
on_watch (gpointer data)
{
  Job *job = data;
  GSocket *sock = job->msg ? soup_server_message_get_socket (job->msg) : NULL;
  if (sock == NULL)
    return G_SOURCE_CONTINUE;
  GIOCondition cond = g_socket_condition_check (sock, G_IO_IN | G_IO_HUP | G_IO_ERR);
  char c;
  if ((cond & (G_IO_HUP | G_IO_ERR)) != 0
      || ((cond & G_IO_IN) != 0
          && recv (g_socket_get_fd (sock), &c, 1, MSG_PEEK | MSG_DONTWAIT) == 0))
    {
      job->watch_id = 0;
      on_client_gone (job->msg, job);
      return G_SOURCE_REMOVE;
    }
  return G_SOURCE_CONTINUE;
}

static void
job_finish (Job *job)
{
  GptdHttp *http = job->http;
  gptd__http_metrics_in_flight (http->metrics, -1);
  if (!job->answered)
    gptd__http_metrics_waiting (http->metrics, -1);
  http->n_jobs--;
  if (job->msg == NULL)
    return;
  SoupServerMessage *msg = g_object_ref (job->msg);
  job_release_msg (job);
  if (job->error.status != 0)
    {
      if (job->started)
        {
          g_autofree char *json = gptd__http_error_json (job->error.status, NULL, NULL,
                                                         job->error.message);
          char *event = g_strdup_printf ("data: %s\n\n", json);
          SoupMessageBody *body = soup_server_message_get_response_body (msg);
          soup_message_body_append (body, SOUP_MEMORY_TAKE, event, strlen (event));
          soup_message_body_complete (body);
        }
      else
        gptd__http_respond_error_struct (msg, &job->error);
    }
  else if (job->req->stream)
    soup_message_body_complete (soup_server_message_get_response_body (msg));
  else
    {
      g_autoptr (JsonNode) node = job->req->endpoint == GPTD_HTTP_CLASSIFY
                                    ? classify_json (job) : completion_json (job);
      gptd__http_respond_json (msg, SOUP_STATUS_OK, node);
    }
  soup_server_message_unpause (msg);
  g_object_unref (msg);
}

static gboolean
on_post (gpointer data)
{
  Post *p = data;
  Job *job = p->job;
  GptdHttpMetrics *metrics = job->http->metrics;
  switch (p->kind)
    {
    case POST_ANSWERED:
      gptd__http_metrics_prompt_tokens (metrics, p->n);
      job->prompt_tokens += p->n;
      g_ptr_array_add (job->texts, g_string_new (NULL));
      if (job->answered)
        break;
      job->answered = TRUE;
      gptd__http_metrics_waiting (metrics, -1);
      break;
    case POST_CHUNK:
      gptd__http_metrics_generated_tokens (metrics, 1);
      job->chunk_tokens++;
      if (job->texts->len > 0)
        g_string_append (job->texts->pdata[job->texts->len - 1], p->text);
      if (job->msg != NULL && job->req->stream)
        {
          stream_begin (job);
          stream_write (job, stream_chunk (job, p->text, NULL, FALSE));
        }
      break;
    case POST_PROMPT_END:
      {
        if (p->n > job->chunk_tokens)
          gptd__http_metrics_generated_tokens (metrics, p->n - job->chunk_tokens);
        job->chunk_tokens = 0;
        job->completion_tokens += p->n;
        const char *reason = finish_reason (p->text);
        g_ptr_array_add (job->finish_reasons, g_strdup (reason));
        if (job->msg != NULL && job->req->stream)
          {
            stream_begin (job);
            stream_write (job, stream_chunk (job, NULL, reason, FALSE));
            stream_write (job, g_strdup ("data: [DONE]\n\n"));
          }
      }
      break;
    case POST_PREDICTIONS:
      job->predictions = g_steal_pointer (&p->resp);
      break;
    case POST_ERROR:
      if (job->error.status == 0)
        {
          job->error.status = p->status;
          job->error.message = g_steal_pointer (&p->text);
          job->error.code = p->status == SOUP_STATUS_SERVICE_UNAVAILABLE ? "daemon_unavailable"
                                                                          : NULL;
        }
      break;
    case POST_FINISH:
      job_finish (job);
      break;
    }
  g_free (p->text);
  gptd__control_response_free (p->resp);
  job_unref (job);
  g_free (p);
  return G_SOURCE_REMOVE;
}

void
gptd__http_forward (GptdHttp *http, SoupServerMessage *msg, GptdHttpModel *model,
                    GptdHttpRequest *req)
{
  Job *job = g_new0 (Job, 1);
  g_atomic_ref_count_init (&job->ref);
  g_mutex_init (&job->lock);
  job->fd = -1;
  job->http = http;
  job->model = model;
  job->req = req;
  const char *prefix = req->endpoint == GPTD_HTTP_CHAT ? "chatcmpl"
                       : req->endpoint == GPTD_HTTP_CLASSIFY ? "clf" : "cmpl";
  job->id = g_strdup_printf ("%s-%d-%" G_GUINT64_FORMAT, prefix, (int) getpid (),
                             ++http->next_id);
  job->created = g_get_real_time () / G_USEC_PER_SEC;
  job->texts = g_ptr_array_new_with_free_func (gstring_free);
  job->finish_reasons = g_ptr_array_new_with_free_func (g_free);
  job->msg = g_object_ref (msg);
  job->finished_id = g_signal_connect (msg, "finished", G_CALLBACK (on_client_gone), job);
  job->disconnected_id = g_signal_connect (msg, "disconnected", G_CALLBACK (on_client_gone),
                                           job);
  if (!req->stream)
    job->watch_id = g_timeout_add (500, on_watch, job);
  soup_server_message_pause (msg);
  http->n_jobs++;
  gptd__http_metrics_in_flight (http->metrics, 1);
  gptd__http_metrics_waiting (http->metrics, 1);

  g_autoptr (GError) error = NULL;
  GThread *thread = g_thread_try_new ("gptd-http", job_thread, job_ref (job), &error);
  if (thread == NULL)
    {
      job_unref (job);
      job->error.status = SOUP_STATUS_INTERNAL_SERVER_ERROR;
      job->error.message = g_strdup_printf ("Cannot start a thread: %s", error->message);
      job_finish (job);
    }
  else
    g_thread_unref (thread);
  job_unref (job);
}

gboolean
gptd__http_daemon_alive (GptdHttp *http, GError **error)
{
  g_autoptr (GptdControlClient) cl = gptd__control_client_new (http->socket_path);
  if (!gptd__control_client_connect (cl, error))
    return FALSE;
  struct timeval tv = { .tv_sec = 2 };
  setsockopt (cl->fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  setsockopt (cl->fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
  Gptd__Request req = GPTD__REQUEST__INIT;
  Gptd__Empty empty = GPTD__EMPTY__INIT;
  req.body_case = GPTD__REQUEST__BODY_PING;
  req.ping = &empty;
  if (!gptd__control_client_send (cl, &req, error))
    return FALSE;
  g_autoptr (Gptd__Response) resp = gptd__control_client_receive (cl, error);
  if (resp == NULL)
    return FALSE;
  if (gptd__control_response_failed (resp))
    {
      g_set_error (error, GPTD_CONTROL_ERROR, GPTD_CONTROL_ERROR_PROTOCOL, "%s",
                   resp->error->message);
      return FALSE;
    }
  return TRUE;
}
