/* judge.c: the `judge` stage: scores each record's response with a larger
 * model served by an Ollama-compatible HTTP API (the book's chapter 7,
 * "evaluating the fine-tuned LLM").
 *
 * Each gptd.Document of the input carries a record (Document.record, a JSON
 * object with "instruction", "input", "output" and the response, by default
 * "model_response", as the responder writes them).  For each, the stage sends
 * the book's scoring prompt to URL/api/chat, joins the streamed reply and
 * reads an integer 0..100 from it.  Unreachable servers, HTTP 5xx and 429 are
 * retried (`retries=`, waiting retry-delay, then twice as long each time);
 * a request the server refuses (another status) or a reply without a score is
 * not.  What still fails stops the run with an error naming the URL and the
 * record, or with on-error=skip gives the record the score -1.  Every record
 * is pushed as a gptd.Score and written as a JSON line to `output=`; each
 * score is logged, and at the end the average over the scored records
 * ("Average score: 50.32", as the book prints it).
 */
#include "config.h"

#include <gptd/atomic-file.h>
#include <gptd/message-json.h>

#include <math.h>
#include <string.h>

#include "judge-plugin.h"
#include "judge-prompt.h"
#include "ollama-chat.h"

enum { ON_ERROR_FAIL = 0, ON_ERROR_SKIP = 1 };

static const char *const on_error_choices[] = { "fail", "skip", NULL };

static const GptdParamSpec judge_params[] = {
  { "url", GPTD_PARAM_STRING, "http://localhost:11434", 0, 0, NULL,
    "the Ollama-compatible server (requests go to URL/api/chat)", 0 },
  { "model", GPTD_PARAM_STRING, "llama3", 0, 0, NULL,
    "the judging model, as the server names it", 0 },
  { "response-key", GPTD_PARAM_STRING, "model_response", 0, 0, NULL,
    "the record member holding the response to score", 0 },
  { "seed", GPTD_PARAM_INT, "123", 0, (double) G_MAXINT64, NULL,
    "options.seed of each request", 0 },
  { "temperature", GPTD_PARAM_DOUBLE, "0", 0, 100, NULL,
    "options.temperature of each request", 0 },
  { "num-ctx", GPTD_PARAM_INT, "2048", 1, G_MAXINT32, NULL,
    "options.num_ctx of each request (the judge's context length)", 0 },
  { "retries", GPTD_PARAM_INT, "3", 0, 1000, NULL,
    "attempts after the first when the server is unreachable or answers "
    "HTTP 5xx or 429", 0 },
  { "retry-delay", GPTD_PARAM_DOUBLE, "1", 0, 3600, NULL,
    "seconds before the first retry; each further retry waits twice as long", 0 },
  { "timeout", GPTD_PARAM_DOUBLE, "300", 0, 86400, NULL,
    "seconds a request may wait on the server to connect or send more; 0: "
    "no limit", 0 },
  { "on-error", GPTD_PARAM_ENUM, "fail", 0, 0, on_error_choices,
    "fail: a record that cannot be scored stops the run; skip: it gets the "
    "score -1 and is left out of the average", 0 },
  { "output", GPTD_PARAM_PATH, NULL, 0, 0, NULL,
    "write each score as a JSON line (default: scores.jsonl in the run "
    "directory)", 0 },
  { NULL }
};

static const GptdPadSpec judge_inputs[] = {
  { "default", "gptd.Document", 0 },
  { NULL }
};

static const GptdPadSpec judge_outputs[] = {
  { "default", "gptd.Score", 0 },
  { NULL }
};

typedef struct {
  char *url;
  char *model;
  char *response_key;
  GptdOllamaOptions options;
  int retries;
  double retry_delay;
  double timeout;
  int on_error;
  GptdOllamaClient *client; /* made and used on the stage's thread */
  GptdAtomicFile *output;
  char *doc_record;         /* the current document's record */
  char *doc_source;
  guint64 doc_index;
  gboolean in_doc;
  guint n_records;
  guint n_scored;
  gint64 score_sum;
} Judge;

static gboolean
judge_check (const GptdParams *params, GError **error)
{
  g_autoptr (GptdOllamaClient) c =
    gptd__ollama_client_new (gptd_params_get_string (params, "url"), 0, error);
  return c != NULL;
}

static void
judge_destroy (gpointer data)
{
  Judge *self = data;
  if (self == NULL)
    return;
  gptd__ollama_client_free (self->client);
  gptd_atomic_file_free (self->output);
  g_free (self->url);
  g_free (self->model);
  g_free (self->response_key);
  g_free (self->doc_record);
  g_free (self->doc_source);
  g_free (self);
}

static gpointer
judge_create (GptdStageContext *ctx, const GptdParams *params, GError **error)
{
  Judge *self = g_new0 (Judge, 1);
  self->url = g_strdup (gptd_params_get_string (params, "url"));
  self->model = g_strdup (gptd_params_get_string (params, "model"));
  self->response_key = g_strdup (gptd_params_get_string (params, "response-key"));
  self->options.model = self->model;
  self->options.seed = gptd_params_get_int (params, "seed");
  self->options.temperature = gptd_params_get_double (params, "temperature");
  self->options.num_ctx = gptd_params_get_int (params, "num-ctx");
  self->retries = (int) gptd_params_get_int (params, "retries");
  self->retry_delay = gptd_params_get_double (params, "retry-delay");
  self->timeout = gptd_params_get_double (params, "timeout");
  self->on_error = (int) gptd_params_get_int (params, "on-error");

  g_autofree char *path = NULL;
  if (gptd_params_is_set (params, "output"))
    path = g_strdup (gptd_params_get_string (params, "output"));
  else if (gptd_stage_context_get_run_dir (ctx) != NULL)
    path = g_build_filename (gptd_stage_context_get_run_dir (ctx), "scores.jsonl", NULL);
  if (path != NULL)
    {
      g_autoptr (GError) local = NULL;
      self->output = gptd_atomic_file_open (path, &local);
      if (self->output == NULL)
        {
          g_set_error (error, GPTD_STAGE_ERROR, GPTD_STAGE_ERROR_IO,
                       "cannot open output %s: %s", path, local->message);
          judge_destroy (self);
          return NULL;
        }
    }
  return self;
}

/* ---- Cancellation while a request is in flight ------------------------------ */

/* A thread that cancels @cancellable once the run is cancelled, so that a
 * request waiting on a slow server ends at once. */
typedef struct {
  GptdStageContext *ctx;
  GCancellable *cancellable;
  GMutex lock;
  GCond cond;
  gboolean stop;
  GThread *thread;
} Watch;

static gpointer
watch_thread (gpointer data)
{
  Watch *w = data;
  g_mutex_lock (&w->lock);
  while (!w->stop)
    {
      if (gptd_stage_context_is_cancelled (w->ctx))
        {
          g_cancellable_cancel (w->cancellable);
          break;
        }
      g_cond_wait_until (&w->cond, &w->lock,
                         g_get_monotonic_time () + G_TIME_SPAN_MILLISECOND * 100);
    }
  g_mutex_unlock (&w->lock);
  return NULL;
}

static void
watch_start (Watch *w, GptdStageContext *ctx)
{
  w->ctx = ctx;
  w->cancellable = g_cancellable_new ();
  g_mutex_init (&w->lock);
  g_cond_init (&w->cond);
  w->stop = FALSE;
  w->thread = g_thread_new ("judge-watch", watch_thread, w);
}

static void
watch_stop (Watch *w)
{
  g_mutex_lock (&w->lock);
  w->stop = TRUE;
  g_cond_signal (&w->cond);
  g_mutex_unlock (&w->lock);
  g_thread_join (w->thread);
  g_mutex_clear (&w->lock);
  g_cond_clear (&w->cond);
  g_object_unref (w->cancellable);
}

/* Waits @seconds unless the run is cancelled first. */
static gboolean
sleep_unless_cancelled (GptdStageContext *ctx, double seconds)
{
  gint64 end = g_get_monotonic_time () + (gint64) (seconds * G_USEC_PER_SEC);
  for (;;)
    {
      if (gptd_stage_context_is_cancelled (ctx))
        return FALSE;
      gint64 left = end - g_get_monotonic_time ();
      if (left <= 0)
        return TRUE;
      g_usleep (MIN (left, 50 * G_TIME_SPAN_MILLISECOND));
    }
}

/* ---- Scoring ---------------------------------------------------------------- */

/* Asks the server for @prompt's score, retrying what is worth retrying.  On
 * success *reply holds the reply and *score the score; a reply without a
 * score fails with GPTD_OLLAMA_ERROR_REPLY and leaves *reply set. */
static gboolean
ask (Judge *self, GptdStageContext *ctx, const char *prompt, char **reply, int *score,
     GError **error)
{
  if (self->client == NULL)
    {
      self->client = gptd__ollama_client_new (self->url, self->timeout, error);
      if (self->client == NULL)
        return FALSE;
    }
  double delay = self->retry_delay;
  for (int attempt = 0;; attempt++)
    {
      g_autoptr (GError) local = NULL;
      Watch w;
      watch_start (&w, ctx);
      char *text = gptd__ollama_chat (self->client, &self->options, prompt,
                                      w.cancellable, &local);
      watch_stop (&w);
      if (text != NULL)
        {
          *reply = text;
          if (!gptd__judge_parse_score (text, score))
            {
              g_set_error (error, GPTD_OLLAMA_ERROR, GPTD_OLLAMA_ERROR_REPLY,
                           "the reply of %s is not an integer from 0 to 100: \"%s\"",
                           gptd__ollama_client_get_url (self->client), text);
              return FALSE;
            }
          return TRUE;
        }
      gboolean retry = g_error_matches (local, GPTD_OLLAMA_ERROR,
                                        GPTD_OLLAMA_ERROR_UNREACHABLE) ||
                       g_error_matches (local, GPTD_OLLAMA_ERROR,
                                        GPTD_OLLAMA_ERROR_SERVER);
      if (!retry || attempt >= self->retries)
        {
          if (retry && attempt > 0)
            g_prefix_error (&local, "after %d attempts: ", attempt + 1);
          g_propagate_error (error, g_steal_pointer (&local));
          return FALSE;
        }
      gptd_stage_log (ctx, G_LOG_LEVEL_WARNING,
                      "record %" G_GUINT64_FORMAT ": %s; retrying in %.2g s",
                      self->doc_index, local->message, delay);
      if (!sleep_unless_cancelled (ctx, delay))
        {
          g_set_error (error, G_IO_ERROR, G_IO_ERROR_CANCELLED, "cancelled");
          return FALSE;
        }
      delay *= 2;
    }
}

/* Writes @score to the output file and pushes it. */
static gboolean
emit (Judge *self, GptdStageContext *ctx, Gptd__Score *score, GError **error)
{
  if (self->output != NULL)
    {
      g_autofree char *line = gptd_message_to_json_string (&score->base, TRUE, FALSE);
      if (!gptd_atomic_file_write (self->output, line, strlen (line), error) ||
          !gptd_atomic_file_write (self->output, "\n", 1, error))
        return FALSE;
    }
  self->n_records++;
  Gptd__Progress p = GPTD__PROGRESS__INIT;
  p.loss = p.val_loss = NAN;
  p.eta_s = -1;
  p.items = self->n_records;
  p.unit = (char *) "records";
  gptd_stage_progress (ctx, &p);
  return gptd_stage_push (ctx, 0, &score->base, error);
}

/* Scores the current document's record. */
static gboolean
judge_record (Judge *self, GptdStageContext *ctx, GError **error)
{
  const char *source = self->doc_source != NULL ? self->doc_source : "";
  if (self->doc_record == NULL)
    {
      g_set_error (error, GPTD_STAGE_ERROR, GPTD_STAGE_ERROR_INPUT,
                   "record %" G_GUINT64_FORMAT " (%s): the document carries no "
                   "record; link the judge to a stage that sends records with "
                   "responses (responder)", self->doc_index, source);
      return FALSE;
    }
  g_autoptr (JsonParser) parser = json_parser_new ();
  g_autoptr (GError) local = NULL;
  if (!json_parser_load_from_data (parser, self->doc_record, -1, &local) ||
      !JSON_NODE_HOLDS_OBJECT (json_parser_get_root (parser)))
    {
      g_set_error (error, GPTD_STAGE_ERROR, GPTD_STAGE_ERROR_INPUT,
                   "record %" G_GUINT64_FORMAT " (%s) is not a JSON object%s%s",
                   self->doc_index, source, local ? ": " : "", local ? local->message : "");
      return FALSE;
    }
  JsonObject *record = json_node_get_object (json_parser_get_root (parser));
  g_autofree char *prompt = gptd__judge_prompt (record, self->response_key, &local);
  if (prompt == NULL)
    {
      g_set_error (error, GPTD_STAGE_ERROR, GPTD_STAGE_ERROR_INPUT,
                   "record %" G_GUINT64_FORMAT " (%s): %s", self->doc_index, source,
                   local->message);
      return FALSE;
    }

  Gptd__Score score = GPTD__SCORE__INIT;
  score.source = (char *) source;
  score.index = self->doc_index;
  score.record = self->doc_record;
  g_autofree char *reply = NULL;
  int value = -1;
  if (ask (self, ctx, prompt, &reply, &value, &local))
    {
      score.score = value;
      self->n_scored++;
      self->score_sum += value;
      gptd_stage_log (ctx, G_LOG_LEVEL_INFO, "record %" G_GUINT64_FORMAT ": score %d",
                      self->doc_index, value);
    }
  else if (g_error_matches (local, G_IO_ERROR, G_IO_ERROR_CANCELLED) ||
           self->on_error == ON_ERROR_FAIL)
    {
      g_set_error (error, GPTD_STAGE_ERROR, GPTD_STAGE_ERROR_FAILED,
                   "record %" G_GUINT64_FORMAT " (%s): cannot score it with %s: %s",
                   self->doc_index, source, self->model, local->message);
      return FALSE;
    }
  else
    {
      score.score = -1;
      gptd_stage_log (ctx, G_LOG_LEVEL_WARNING,
                      "record %" G_GUINT64_FORMAT " (%s) skipped: %s",
                      self->doc_index, source, local->message);
    }
  score.reply = reply != NULL ? reply : (char *) "";
  return emit (self, ctx, &score, error);
}

static gboolean
judge_process (gpointer data, GptdStageContext *ctx, guint input,
               const ProtobufCMessage *msg, GError **error)
{
  Judge *self = data;
  const Gptd__Document *d = (const Gptd__Document *) msg;
  if (!self->in_doc)
    {
      self->in_doc = TRUE;
      self->doc_source = g_strdup (d->source);
      self->doc_index = d->index;
    }
  if (self->doc_record == NULL && d->record != NULL && d->record[0] != '\0')
    self->doc_record = g_strdup (d->record);
  if (!d->last)
    return TRUE;
  gboolean ok = judge_record (self, ctx, error);
  g_clear_pointer (&self->doc_record, g_free);
  g_clear_pointer (&self->doc_source, g_free);
  self->in_doc = FALSE;
  if (!ok)
    g_clear_pointer (&self->client, gptd__ollama_client_free);
  return ok;
}

static gboolean
judge_finish (gpointer data, GptdStageContext *ctx, GError **error)
{
  Judge *self = data;
  gboolean ok = TRUE;
  if (self->in_doc)
    {
      /* A source whose last chunk never came: score what arrived. */
      ok = judge_record (self, ctx, error);
      self->in_doc = FALSE;
    }
  /* The session is used and freed on this thread. */
  g_clear_pointer (&self->client, gptd__ollama_client_free);
  if (!ok)
    return FALSE;
  gptd_stage_log (ctx, G_LOG_LEVEL_INFO, "Number of scores: %u of %u",
                  self->n_scored, self->n_records);
  if (self->n_scored > 0)
    gptd_stage_log (ctx, G_LOG_LEVEL_INFO, "Average score: %.2f",
                    (double) self->score_sum / self->n_scored);
  if (self->output != NULL && !gptd_atomic_file_commit (self->output, error))
    return FALSE;
  return TRUE;
}

const GptdStageType gptd__judge_type = {
  .name = "judge",
  .description = "Scores each record's response from 0 to 100 with a model "
                 "served by an Ollama-compatible HTTP API (the book's scoring "
                 "prompt)",
  .params = judge_params,
  .inputs = judge_inputs,
  .outputs = judge_outputs,
  .check = judge_check,
  .create = judge_create,
  .process = judge_process,
  .finish = judge_finish,
  .destroy = judge_destroy,
};
