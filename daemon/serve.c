/* daemon/serve.c: the serving worker process (gptd --serve MODEL_DIR): one model
 * kept loaded, a language model or a classifier as its config.json says,
 * generate and classify requests read from the daemon's socket; generations
 * decoded together, a slot each, one batched step over all of them at a time,
 * with prompts fed in chunks between the steps; classifications answered one
 * at a time between steps (see serve.h).
 */
#ifdef HAVE_CONFIG_H
#include "config.h"
#endif
#ifndef _GNU_SOURCE
#define _GNU_SOURCE 1
#endif

#include "serve.h"

#include <gptd/json-load.h>
#include <gptd/classify.h>
#include <gptd/frame.h>
#include <gptd/generate.h>
#include <gptd/gpt2-file.h>
#include <gptd/quant.h>
#include <gptd.pb-c.h>

#include <json-glib/json-glib.h>

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <unistd.h>

/* A request waiting in the queue: its Request, or NULL when the daemon closed
 * its end. */
typedef struct {
  Gptd__Request *req;
} ServeItem;

/* Where one request's answers go: its id (the daemon's number for it) and the
 * last event number sent for it. */
typedef struct {
  guint64 id;
  guint64 seq;
  const char *what;            /* its kind, for the log: "generate" or "classify" */
} ServeReq;

typedef struct _ServeSlot ServeSlot;

typedef struct {
  int fd;
  GAsyncQueue *queue;          /* ServeItem* */
  GMutex cancel_lock;
  GHashTable *cancelled_ids;   /* ids cancelled before they were admitted */
  GHashTable *slots;           /* id -> ServeSlot*: the generations under way */
  gint closing;                /* atomic: the daemon closed its end */
  gboolean broken;             /* the daemon is gone */
} ServeCtx;

/* A generation under way. */
struct _ServeSlot {
  ServeCtx *ctx;
  ServeReq r;
  GptdGeneration *gen;
  gint cancelled;              /* atomic: set by the reading thread */
  gint64 t0;
  int max_batch;               /* the most generations it was decoded with */
  GError *error;               /* the model failed it */
};

static volatile sig_atomic_t serve_stop;

static void
serve_on_term (int sig)
{
  serve_stop = 1;
}

/* ---- Answers -------------------------------------------------------------------- */

static void
serve_send (ServeCtx *ctx, Gptd__Response *resp)
{
  if (ctx->broken)
    return;
  g_autoptr (GError) error = NULL;
  if (!gptd_frame_write_fd (ctx->fd, &resp->base, &error))
    {
      ctx->broken = TRUE;
      g_warning ("serving worker: cannot answer gptd (%s); stopping", error->message);
    }
}

static void
serve_send_event (ServeCtx *ctx, ServeReq *r, Gptd__Event *ev, gboolean end)
{
  ev->run_id = (char *) "";
  ev->seq = ++r->seq;
  ev->time = (double) g_get_real_time () / G_USEC_PER_SEC;
  Gptd__Response resp = GPTD__RESPONSE__INIT;
  resp.id = r->id;
  resp.body_case = GPTD__RESPONSE__BODY_EVENT;
  resp.event = ev;
  resp.end = end;
  serve_send (ctx, &resp);
}

static void serve_send_error (ServeCtx *ctx, ServeReq *r, Gptd__ErrorCode code,
                              const char *format, ...) G_GNUC_PRINTF (4, 5);

static void
serve_send_error (ServeCtx *ctx, ServeReq *r, Gptd__ErrorCode code, const char *format, ...)
{
  va_list ap;
  va_start (ap, format);
  g_autofree char *message = g_strdup_vprintf (format, ap);
  va_end (ap);
  g_message ("%s: request %" G_GUINT64_FORMAT " failed: %s", r->what, r->id, message);
  Gptd__Response resp = GPTD__RESPONSE__INIT;
  Gptd__Error err = GPTD__ERROR__INIT;
  err.code = code;
  err.message = message;
  resp.id = r->id;
  resp.error = &err;
  resp.end = TRUE;
  serve_send (ctx, &resp);
}

static void
serve_send_end (ServeCtx *ctx, ServeReq *r, const char *stop_reason, guint tokens)
{
  Gptd__Event ev = GPTD__EVENT__INIT;
  Gptd__TextChunk chunk = GPTD__TEXT_CHUNK__INIT;
  chunk.text = (char *) "";
  chunk.done = TRUE;
  chunk.stop_reason = (char *) stop_reason;
  chunk.tokens = tokens;
  ev.body_case = GPTD__EVENT__BODY_TEXT;
  ev.text = &chunk;
  serve_send_event (ctx, r, &ev, TRUE);
}

static void
serve_send_log (ServeCtx *ctx, ServeReq *r, const char *line)
{
  Gptd__Event ev = GPTD__EVENT__INIT;
  Gptd__LogLine log = GPTD__LOG_LINE__INIT;
  log.stage = (char *) r->what;
  log.level = GPTD__LOG_LEVEL__LOG_LEVEL_INFO;
  log.message = (char *) line;
  ev.body_case = GPTD__EVENT__BODY_LOG;
  ev.log = &log;
  serve_send_event (ctx, r, &ev, FALSE);
}

static void
serve_on_token (gint32 id, const char *text, gsize text_len, gpointer user_data)
{
  ServeSlot *slot = user_data;
  if (text_len == 0)
    return;  /* a character still incomplete, or text held back */
  Gptd__Event ev = GPTD__EVENT__INIT;
  Gptd__TextChunk chunk = GPTD__TEXT_CHUNK__INIT;
  chunk.text = (char *) text;
  chunk.stop_reason = (char *) "";
  ev.body_case = GPTD__EVENT__BODY_TEXT;
  ev.text = &chunk;
  serve_send_event (slot->ctx, &slot->r, &ev, FALSE);
}

static gboolean
serve_is_cancelled (gpointer user_data)
{
  ServeSlot *slot = user_data;
  return serve_stop || slot->ctx->broken || g_atomic_int_get (&slot->ctx->closing)
         || g_atomic_int_get (&slot->cancelled);
}

/* ---- Reading the daemon's requests ---------------------------------------------- */

/* Reads requests until the daemon closes its end: generate and classify
 * requests are queued for the main thread, cancels mark their slot (or are
 * remembered for a request not yet admitted). */
static void *
serve_reader (void *data)
{
  ServeCtx *ctx = data;
  for (;;)
    {
      g_autoptr (GError) error = NULL;
      Gptd__Request *req =
        (Gptd__Request *) gptd_frame_read_fd (ctx->fd, &gptd__request__descriptor, 0, &error);
      if (req == NULL)
        {
          if (!g_error_matches (error, GPTD_FRAME_ERROR, GPTD_FRAME_ERROR_CLOSED))
            g_warning ("serving worker: reading gptd's requests: %s", error->message);
          break;
        }
      if (req->body_case == GPTD__REQUEST__BODY_CANCEL && req->cancel != NULL)
        {
          guint64 id = g_ascii_strtoull (req->cancel->run_id ? req->cancel->run_id : "", NULL,
                                         10);
          g_mutex_lock (&ctx->cancel_lock);
          ServeSlot *slot = g_hash_table_lookup (ctx->slots, &id);
          if (slot != NULL)
            g_atomic_int_set (&slot->cancelled, TRUE);
          else
            g_hash_table_add (ctx->cancelled_ids, g_memdup2 (&id, sizeof id));
          g_mutex_unlock (&ctx->cancel_lock);
          protobuf_c_message_free_unpacked (&req->base, NULL);
          continue;
        }
      ServeItem *item = g_new0 (ServeItem, 1);
      item->req = req;
      g_async_queue_push (ctx->queue, item);
    }
  /* The daemon is done with this worker: what is under way stops. */
  g_atomic_int_set (&ctx->closing, TRUE);
  g_async_queue_push (ctx->queue, g_new0 (ServeItem, 1));
  return NULL;
}

/* Whether request @id was cancelled before it was admitted (forgotten then). */
static gboolean
serve_take_cancel (ServeCtx *ctx, guint64 id)
{
  g_mutex_lock (&ctx->cancel_lock);
  gboolean cancelled = g_hash_table_remove (ctx->cancelled_ids, &id);
  g_mutex_unlock (&ctx->cancel_lock);
  return cancelled;
}

/* ---- The model ------------------------------------------------------------------- */

static void
append_file_stamp (GString *key, const char *dir, const char *name)
{
  g_autofree char *path = g_build_filename (dir, name, NULL);
  struct stat st;
  if (stat (path, &st) != 0)
    g_string_append_printf (key, "|%s:-", name);
  else
    g_string_append_printf (key, "|%s:%lld.%09ld:%lld", name, (long long) st.st_mtim.tv_sec,
                            (long) st.st_mtim.tv_nsec, (long long) st.st_size);
}

/* The stamp of the model directory @dir: its real path and the modification
 * times and sizes of the files a generator loads, with the real path in
 * *@real_out; NULL with a G_FILE_ERROR when the directory cannot be used. */
static char *
model_stamp (const char *dir, char **real_out, GError **error)
{
  char *resolved = realpath (dir, NULL);
  if (resolved == NULL)
    {
      int saved = errno;
      g_set_error (error, G_FILE_ERROR, g_file_error_from_errno (saved),
                   "The model directory %s %s", dir,
                   saved == ENOENT ? "does not exist" : g_strerror (saved));
      return NULL;
    }
  g_autofree char *real = g_strdup (resolved);
  free (resolved);
  struct stat st;
  if (stat (real, &st) != 0 || !S_ISDIR (st.st_mode))
    {
      g_set_error (error, G_FILE_ERROR, G_FILE_ERROR_NOTDIR,
                   "The model %s is not a directory", dir);
      return NULL;
    }
  GString *key = g_string_new (real);
  static const char *const files[] = {
    GPTD_GPT_DIR_CONFIG, GPTD_GPT_DIR_WEIGHTS, GPTD_GPT_DIR_VOCAB, GPTD_GPT_DIR_MERGES,
    GPTD_CHECKPOINT_INDEX,
  };
  for (gsize i = 0; i < G_N_ELEMENTS (files); i++)
    append_file_stamp (key, real, files[i]);
  *real_out = g_steal_pointer (&real);
  return g_string_free (key, FALSE);
}

/* Whether the model in @dir (a model directory, or a checkpoint root standing
 * for its latest checkpoint) is a sequence classifier: its config.json names
 * GPT2ForSequenceClassification in architectures, or has num_labels. FALSE
 * with @error when config.json cannot be read. */
static gboolean
model_is_classifier (const char *dir, gboolean *is_classifier, GError **error)
{
  g_autofree char *config = g_build_filename (dir, GPTD_GPT_DIR_CONFIG, NULL);
  g_autofree char *index = g_build_filename (dir, GPTD_CHECKPOINT_INDEX, NULL);
  if (!g_file_test (config, G_FILE_TEST_EXISTS) && g_file_test (index, G_FILE_TEST_EXISTS))
    {
      g_autofree char *latest = gptd_checkpoint_get_latest (dir, error);
      if (latest == NULL)
        return FALSE;
      g_free (config);
      config = g_build_filename (latest, GPTD_GPT_DIR_CONFIG, NULL);
    }
  g_autoptr (JsonParser) parser = gptd_json_load_file_bounded (config, 0, error);
  if (parser == NULL)
    return FALSE;
  JsonNode *root = json_parser_get_root (parser);
  if (root == NULL || !JSON_NODE_HOLDS_OBJECT (root))
    {
      g_set_error (error, G_FILE_ERROR, G_FILE_ERROR_INVAL, "%s: not a JSON object", config);
      return FALSE;
    }
  *is_classifier = gptd_gpt_config_is_classifier (json_node_get_object (root));
  return TRUE;
}

/* ---- Serving --------------------------------------------------------------------- */

typedef struct {
  char *stamp;          /* model_stamp() and the weight format asked for */
  char *real;
  GptdGenerator *generator;     /* a language model's */
  GptdClassifier *classifier;   /* or a classifier */
  GptdGptDecodeBatch *batch;    /* the generator's decoding scratch */
} ServeModel;

typedef enum {
  SERVE_LOAD_OK,
  SERVE_LOAD_REFUSED,   /* the request was answered with an error; the worker goes on */
  SERVE_LOAD_FAILED,    /* the same, and the worker ends: it holds no model */
} ServeLoad;

/* Makes @model hold the model in @model_dir with its weights in the format
 * @weights names (empty: the directory's own), loaded again when its files
 * changed, as a classifier when @classify; then sends the log line saying
 * where it came from (the daemon adds its cache's counters to it). A model of
 * the other kind is refused. */
static ServeLoad
serve_load (ServeCtx *ctx, ServeReq *r, ServeModel *model, const char *model_dir,
            const char *weights, gboolean classify)
{
  g_autoptr (GError) error = NULL;
  g_autofree char *real = NULL;
  GptdWeightFormat format = GPTD_WEIGHT_FORMAT_FP32;
  gboolean stored = weights == NULL || *weights == '\0';
  if (!stored && !gptd_weight_format_from_string (weights, &format, &error))
    {
      serve_send_error (ctx, r, GPTD__ERROR_CODE__ERROR_CODE_BAD_REQUEST, "weights: %s",
                        error->message);
      return model->generator != NULL || model->classifier != NULL ? SERVE_LOAD_REFUSED
                                                                     : SERVE_LOAD_FAILED;
    }
  g_autofree char *files = model_stamp (model_dir, &real, &error);
  if (files == NULL)
    {
      serve_send_error (ctx, r, GPTD__ERROR_CODE__ERROR_CODE_NOT_FOUND, "%s", error->message);
      return SERVE_LOAD_FAILED;
    }
  g_autofree char *stamp = g_strdup_printf ("%s|weights:%s", files,
                                            stored ? "stored" : weights);
  gboolean held = model->generator != NULL || model->classifier != NULL;
  /* A model of the other kind is refused before it is loaded. */
  gboolean is_classifier = model->classifier != NULL;
  if (!held || strcmp (model->stamp, stamp) != 0)
    {
      if (!model_is_classifier (real, &is_classifier, &error))
        {
          serve_send_error (ctx, r, GPTD__ERROR_CODE__ERROR_CODE_BAD_REQUEST,
                            "Cannot load the model in %s: %s", real, error->message);
          return held ? SERVE_LOAD_REFUSED : SERVE_LOAD_FAILED;
        }
    }
  if (classify && !is_classifier)
    {
      serve_send_error (ctx, r, GPTD__ERROR_CODE__ERROR_CODE_BAD_REQUEST,
                        "The model in %s is a language model, not a classifier (its %s has "
                        "no num_labels): it answers generate requests, not classify",
                        model_dir, GPTD_GPT_DIR_CONFIG);
      return held ? SERVE_LOAD_REFUSED : SERVE_LOAD_FAILED;
    }
  if (!classify && is_classifier)
    {
      serve_send_error (ctx, r, GPTD__ERROR_CODE__ERROR_CODE_BAD_REQUEST,
                        "The model in %s is a classifier (its %s names "
                        "GPT2ForSequenceClassification), not a language model: it answers "
                        "classify requests, not generate", model_dir, GPTD_GPT_DIR_CONFIG);
      return held ? SERVE_LOAD_REFUSED : SERVE_LOAD_FAILED;
    }

  gboolean loaded = FALSE;
  double load_s = 0;
  if (!held || strcmp (model->stamp, stamp) != 0)
    {
      if (held)
        g_message ("%s: the model in %s has changed; loading it again", r->what, real);
      g_clear_pointer (&model->batch, gptd_gpt_decode_batch_free);
      g_clear_pointer (&model->generator, gptd_generator_free);
      g_clear_pointer (&model->classifier, gptd_classifier_free);
      g_clear_pointer (&model->stamp, g_free);
      gint64 t0 = g_get_monotonic_time ();
      if (is_classifier)
        {
          model->classifier = gptd_classifier_load (real, NULL, &error);
          if (model->classifier != NULL && !stored
              && !gptd_classifier_set_weight_format (model->classifier, format, &error))
            g_clear_pointer (&model->classifier, gptd_classifier_free);
        }
      else
        {
          GptdGeneratorLoadOptions lo;
          gptd_generator_load_options_init (&lo);
          if (!stored)
            lo.weights = (int) format;
          model->generator = gptd_generator_load_full (real, &lo, &error);
        }
      load_s = (double) (g_get_monotonic_time () - t0) / G_USEC_PER_SEC;
      if (model->generator == NULL && model->classifier == NULL)
        {
          serve_send_error (ctx, r, GPTD__ERROR_CODE__ERROR_CODE_BAD_REQUEST,
                            "Cannot load the %s in %s: %s",
                            is_classifier ? "classifier" : "model", real, error->message);
          return SERVE_LOAD_FAILED;
        }
      model->stamp = g_strdup (stamp);
      g_free (model->real);
      model->real = g_strdup (real);
      loaded = TRUE;
      g_message ("%s: loaded the %s %s (%s weights) in %.2f s", r->what,
                 is_classifier ? "classifier" : "model", real,
                 stored ? "stored" : weights, load_s);
    }

  g_autofree char *fmt = stored ? g_strdup ("") : g_strdup_printf (", %s weights", weights);
  g_autofree char *line = loaded ? g_strdup_printf ("model %s%s: loaded in %.2f s", real, fmt,
                                                    load_s)
                                 : g_strdup_printf ("model %s%s: cached", real, fmt);
  serve_send_log (ctx, r, line);
  return SERVE_LOAD_OK;
}

/* Whether the model held is still what @model_dir with @weights names (its
 * files unchanged): a request for it can join the generations under way. */
static gboolean
serve_model_current (const ServeModel *model, const char *model_dir, const char *weights)
{
  if (model->stamp == NULL)
    return FALSE;
  g_autofree char *real = NULL;
  g_autofree char *files = model_stamp (model_dir, &real, NULL);
  if (files == NULL)
    return FALSE;
  gboolean stored = weights == NULL || *weights == '\0';
  g_autofree char *stamp = g_strdup_printf ("%s|weights:%s", files, stored ? "stored" : weights);
  return strcmp (stamp, model->stamp) == 0;
}

/* Admits a generate request: checks it, makes @model hold the model and
 * starts a generation in a new slot, added to @slots. Returns FALSE when the
 * model cannot be loaded (the worker then ends). */
static gboolean
serve_admit_generate (ServeCtx *ctx, ServeModel *model, const char *model_dir,
                      const Gptd__Request *req, int max_rows, GPtrArray *slots)
{
  const Gptd__GenerateRequest *gr = req->generate;
  ServeReq r = { req->id, 0, "generate" };
  if (serve_take_cancel (ctx, req->id) || serve_stop || g_atomic_int_get (&ctx->closing))
    {
      serve_send_end (ctx, &r, gptd_generate_stop_to_string (GPTD_GENERATE_STOP_CANCELLED), 0);
      return TRUE;
    }

  GptdGenerateOptions opts;
  gptd_generate_options_init (&opts);
  opts.max_new_tokens = (int) gr->max_new_tokens;
  opts.temperature = gr->temperature;
  opts.top_k = (int) gr->top_k;
  opts.top_p = gr->top_p;
  opts.eos_id = gr->eos_id;
  opts.seed = gr->seed;
  opts.use_kv_cache = TRUE;
  /* The stop strings, as the NULL-terminated list the options take. */
  g_autofree const char **stop = g_new0 (const char *, gr->n_stop + 1);
  for (gsize i = 0; i < gr->n_stop; i++)
    stop[i] = gr->stop[i] != NULL ? gr->stop[i] : "";
  opts.stop = stop;
  g_autoptr (GError) error = NULL;
  g_autoptr (GptdStopMatcher) check = NULL;
  if (!gptd_generate_options_validate (&opts, &error)
      || (check = gptd_stop_matcher_new (opts.stop, &error)) == NULL)
    {
      serve_send_error (ctx, &r, GPTD__ERROR_CODE__ERROR_CODE_BAD_REQUEST,
                        "Bad generate parameters: %s", error->message);
      return TRUE;
    }

  ServeLoad load = serve_load (ctx, &r, model, model_dir, gr->weights, FALSE);
  if (load != SERVE_LOAD_OK)
    return load == SERVE_LOAD_REFUSED;
  if (model->batch == NULL)
    {
      model->batch = gptd_gpt_decode_batch_new (gptd_generator_get_model (model->generator),
                                                max_rows, &error);
      if (model->batch == NULL)
        {
          serve_send_error (ctx, &r, GPTD__ERROR_CODE__ERROR_CODE_INTERNAL,
                            "Cannot decode with the model in %s: %s", model_dir,
                            error->message);
          return TRUE;
        }
    }

  int n = 0;
  g_autofree gint32 *ids = gptd_generator_encode (model->generator, gr->prompt, &n, &error);
  ServeSlot *slot = g_new0 (ServeSlot, 1);
  slot->ctx = ctx;
  slot->r = r;
  slot->t0 = g_get_monotonic_time ();
  GptdGenerateCallbacks callbacks = { serve_on_token, serve_is_cancelled, slot };
  if (ids != NULL)
    slot->gen = gptd_generation_new (model->generator, ids, n, &opts, &callbacks, &error);
  if (slot->gen == NULL)
    {
      gboolean bad_input = error->domain == GPTD_GENERATE_ERROR
                           && error->code != GPTD_GENERATE_ERROR_MODEL;
      serve_send_error (ctx, &slot->r, bad_input ? GPTD__ERROR_CODE__ERROR_CODE_BAD_REQUEST
                                                 : GPTD__ERROR_CODE__ERROR_CODE_INTERNAL,
                        "Generating from the model in %s failed: %s", model_dir,
                        error->message);
      g_free (slot);
      return TRUE;
    }
  g_mutex_lock (&ctx->cancel_lock);
  g_hash_table_insert (ctx->slots, &slot->r.id, slot);
  g_mutex_unlock (&ctx->cancel_lock);
  g_ptr_array_add (slots, slot);
  return TRUE;
}

/* Ends a slot: the text held back is sent, then the end (or @error), and the
 * slot is freed. */
static void
serve_slot_end (ServeSlot *slot, const char *model_dir, const GError *error)
{
  ServeCtx *ctx = slot->ctx;
  g_mutex_lock (&ctx->cancel_lock);
  g_hash_table_remove (ctx->slots, &slot->r.id);
  g_mutex_unlock (&ctx->cancel_lock);
  double seconds = (double) (g_get_monotonic_time () - slot->t0) / G_USEC_PER_SEC;
  if (error != NULL)
    serve_send_error (ctx, &slot->r, GPTD__ERROR_CODE__ERROR_CODE_INTERNAL,
                      "Generating from the model in %s failed: %s", model_dir,
                      error->message);
  else
    {
      gptd_generation_finish (slot->gen);
      const char *why = gptd_generate_stop_to_string (gptd_generation_get_stop (slot->gen));
      int n = gptd_generation_get_n_tokens (slot->gen);
      g_message ("generate: request %" G_GUINT64_FORMAT ": %d tokens (%s) from %s in %.2f s, "
                 "decoded in steps of up to %d generation(s)", slot->r.id, n, why, model_dir,
                 seconds, slot->max_batch);
      serve_send_end (ctx, &slot->r, why, (guint) n);
    }
  gptd_generation_free (slot->gen);
  g_clear_error (&slot->error);
  g_free (slot);
}

/* One round of the generations under way: up to @prefill_chunk tokens of
 * pending prefills, taken in turn from the slots that need one (so that a
 * long prompt delays the others by one chunk per step, and no prompt waits
 * for another to be fed whole), then one batched decoding step of every
 * generation past its prefill; the generations that ended are answered and
 * removed. *@turn is where the next round's prefills start. */
static void
serve_step (ServeCtx *ctx, ServeModel *model, const char *model_dir, GPtrArray *slots,
            int prefill_chunk, guint *turn)
{
  g_autoptr (GError) error = NULL;
  const guint n_slots = slots->len;
  int budget = prefill_chunk;
  const guint start = *turn;
  for (guint k = 0; k < n_slots && budget > 0; k++)
    {
      ServeSlot *slot = slots->pdata[(start + k) % n_slots];
      if (gptd_generation_is_done (slot->gen) || !gptd_generation_needs_prefill (slot->gen))
        continue;
      int fed = gptd_generation_prefill (slot->gen, budget, &error);
      if (fed < 0)
        {
          /* Ended below, with the error. */
          slot->error = g_steal_pointer (&error);
          continue;
        }
      budget -= MAX (fed, 1);
      *turn = (start + k + 1) % n_slots;
    }

  g_autofree GptdGeneration **decode = g_new (GptdGeneration *, MAX (n_slots, 1));
  g_autofree ServeSlot **decoding = g_new (ServeSlot *, MAX (n_slots, 1));
  int n = 0;
  for (guint i = 0; i < n_slots; i++)
    {
      ServeSlot *slot = slots->pdata[i];
      if (slot->error != NULL || gptd_generation_is_done (slot->gen)
          || gptd_generation_needs_prefill (slot->gen))
        continue;
      decoding[n] = slot;
      decode[n++] = slot->gen;
    }
  for (int i = 0; i < n; i++)
    decoding[i]->max_batch = MAX (decoding[i]->max_batch, n);
  if (n > 0 && !gptd_generation_step_batch (decode, n, model->batch, &error))
    {
      /* The model failed: every generation of the step fails with it. */
      for (int i = 0; i < n; i++)
        decoding[i]->error = g_error_copy (error);
    }
  for (guint i = 0; i < slots->len; i++)
    {
      ServeSlot *slot = slots->pdata[i];
      if (slot->error == NULL && !gptd_generation_is_done (slot->gen))
        continue;
      g_ptr_array_remove_index (slots, i--);
      serve_slot_end (slot, model_dir, slot->error);
    }
  if (slots->len > 0)
    *turn %= slots->len;
  else
    *turn = 0;
}

/* Serves one classify request: one Prediction per text, in order, in one
 * answer. Returns FALSE when the model cannot be loaded (the worker then
 * ends). */
static gboolean
serve_classify (ServeCtx *ctx, ServeModel *model, const char *model_dir, guint64 id,
                const Gptd__ClassifyRequest *cr)
{
  ServeReq req = { id, 0, "classify" }, *r = &req;
  if (serve_take_cancel (ctx, id) || serve_stop || g_atomic_int_get (&ctx->closing))
    {
      serve_send_error (ctx, r, GPTD__ERROR_CODE__ERROR_CODE_SHUTTING_DOWN,
                        "The classification was cancelled");
      return TRUE;
    }
  ServeLoad load = serve_load (ctx, r, model, model_dir, cr->weights, TRUE);
  if (load != SERVE_LOAD_OK)
    return load == SERVE_LOAD_REFUSED;

  GptdClassifier *c = model->classifier;
  int n_classes = gptd_classifier_get_n_classes (c);
  gsize n = cr->n_texts;
  g_autofree Gptd__Prediction *preds = g_new0 (Gptd__Prediction, n);
  g_autofree Gptd__Prediction **ptrs = g_new0 (Gptd__Prediction *, n);
  g_autofree float *probs = g_new0 (float, n * (gsize) n_classes);
  gint64 t0 = g_get_monotonic_time ();
  for (gsize i = 0; i < n; i++)
    {
      if (serve_take_cancel (ctx, id) || serve_stop || g_atomic_int_get (&ctx->closing))
        {
          serve_send_error (ctx, r, GPTD__ERROR_CODE__ERROR_CODE_SHUTTING_DOWN,
                            "The classification was cancelled after %" G_GSIZE_FORMAT
                            " of %" G_GSIZE_FORMAT " texts", i, n);
          return TRUE;
        }
      g_autoptr (GError) error = NULL;
      float *p = probs + i * (gsize) n_classes;
      int best = gptd_classifier_classify (c, cr->texts[i], -1, p, &error);
      if (best < 0)
        {
          gboolean bad_input = error->domain == GPTD_CLASSIFY_ERROR
                               && error->code == GPTD_CLASSIFY_ERROR_INPUT;
          serve_send_error (ctx, r, bad_input ? GPTD__ERROR_CODE__ERROR_CODE_BAD_REQUEST
                                           : GPTD__ERROR_CODE__ERROR_CODE_INTERNAL,
                            "Classifying text %" G_GSIZE_FORMAT " with the classifier in %s "
                            "failed: %s", i + 1, model_dir, error->message);
          return TRUE;
        }
      gptd__prediction__init (&preds[i]);
      preds[i].source = (char *) "";
      preds[i].label = (uint32_t) best;
      preds[i].label_name = (char *) gptd_classifier_get_label (c, best);
      preds[i].n_probabilities = (size_t) n_classes;
      preds[i].probabilities = p;
      ptrs[i] = &preds[i];
    }
  g_message ("classify: request %" G_GUINT64_FORMAT ": %" G_GSIZE_FORMAT " text(s) from %s "
             "in %.2f s", id, n, model_dir,
             (double) (g_get_monotonic_time () - t0) / G_USEC_PER_SEC);
  Gptd__PredictionList list = GPTD__PREDICTION_LIST__INIT;
  list.n_predictions = n;
  list.predictions = ptrs;
  Gptd__Response resp = GPTD__RESPONSE__INIT;
  resp.id = id;
  resp.body_case = GPTD__RESPONSE__BODY_PREDICTIONS;
  resp.predictions = &list;
  resp.end = TRUE;
  serve_send (ctx, &resp);
  return TRUE;
}

/* A number from the environment variable @name, within [@lo, @hi], else
 * @dflt. */
static int
serve_env_int (const char *name, int lo, int hi, int dflt)
{
  const char *v = g_getenv (name);
  gint64 n = v != NULL ? g_ascii_strtoll (v, NULL, 10) : 0;
  return n >= lo && n <= hi ? (int) n : dflt;
}

int
gptd__serve_main (const char *model_dir, int fd)
{
  /* End with the daemon, and never leak its socket into other processes. */
  prctl (PR_SET_PDEATHSIG, SIGTERM);
  fcntl (fd, F_SETFD, FD_CLOEXEC);
  signal (SIGPIPE, SIG_IGN);
  signal (SIGHUP, SIG_IGN);
  signal (SIGINT, SIG_IGN);
  struct sigaction sa = { 0 };
  sa.sa_handler = serve_on_term;
  sigemptyset (&sa.sa_mask);
  sigaction (SIGTERM, &sa, NULL);

  /* The daemon passes serve-batch= and prefill-chunk=. */
  const int max_rows = serve_env_int ("GPTD_SERVE_BATCH", 1, 256, GPTD_SERVE_DEFAULT_BATCH);
  const int prefill_chunk = serve_env_int ("GPTD_SERVE_PREFILL_CHUNK", 1, 1 << 20,
                                           GPTD_SERVE_DEFAULT_PREFILL_CHUNK);

  ServeCtx ctx = { .fd = fd };
  ctx.queue = g_async_queue_new ();
  g_mutex_init (&ctx.cancel_lock);
  ctx.cancelled_ids = g_hash_table_new_full (g_int64_hash, g_int64_equal, g_free, NULL);
  ctx.slots = g_hash_table_new (g_int64_hash, g_int64_equal);

  pthread_t reader;
  if (pthread_create (&reader, NULL, serve_reader, &ctx) != 0)
    {
      g_warning ("serving worker: cannot start its reading thread");
      return 1;
    }
  pthread_detach (reader);

  ServeModel model = { 0 };
  g_autoptr (GPtrArray) slots = g_ptr_array_new ();
  /* Requests taken from the queue that wait for room: more generations than
   * the batch holds, or a model to load again once the generations of the
   * one held are done. */
  GQueue waiting = G_QUEUE_INIT;
  gboolean closed = FALSE;
  guint turn = 0;
  int status = 0;
  for (;;)
    {
      /* Admit what came, between steps. */
      for (;;)
        {
          Gptd__Request *req = NULL;
          if (!g_queue_is_empty (&waiting) && (int) slots->len < max_rows)
            {
              Gptd__Request *head = g_queue_peek_head (&waiting);
              gboolean needs_reload = head->body_case == GPTD__REQUEST__BODY_GENERATE
                                      && head->generate != NULL && slots->len > 0
                                      && !serve_model_current (&model, model_dir,
                                                               head->generate->weights);
              if (!needs_reload)
                req = g_queue_pop_head (&waiting);
            }
          if (req == NULL && !closed)
            {
              ServeItem *item = slots->len == 0 && g_queue_is_empty (&waiting)
                                  ? g_async_queue_timeout_pop (ctx.queue,
                                                               200 * G_TIME_SPAN_MILLISECOND)
                                  : g_async_queue_try_pop (ctx.queue);
              if (item == NULL)
                break;
              req = item->req;
              g_free (item);
              if (req == NULL)
                {
                  closed = TRUE;  /* the daemon closed its end */
                  break;
                }
              if (!g_queue_is_empty (&waiting) || (int) slots->len >= max_rows
                  || (req->body_case == GPTD__REQUEST__BODY_GENERATE && req->generate != NULL
                      && slots->len > 0
                      && !serve_model_current (&model, model_dir, req->generate->weights)))
                {
                  g_queue_push_tail (&waiting, req);
                  continue;
                }
            }
          if (req == NULL)
            break;
          gboolean ok = TRUE;
          if (req->body_case == GPTD__REQUEST__BODY_GENERATE && req->generate != NULL)
            ok = serve_admit_generate (&ctx, &model, model_dir, req, max_rows, slots);
          else if (req->body_case == GPTD__REQUEST__BODY_CLASSIFY && req->classify != NULL)
            ok = serve_classify (&ctx, &model, model_dir, req->id, req->classify);
          else
            {
              ServeReq r = { req->id, 0, "serve" };
              serve_send_error (&ctx, &r, GPTD__ERROR_CODE__ERROR_CODE_BAD_REQUEST,
                                "A serving worker answers generate and classify requests only");
            }
          protobuf_c_message_free_unpacked (&req->base, NULL);
          if (!ok)
            {
              status = 3;
              break;
            }
        }
      if (status != 0 || ctx.broken)
        break;
      if (slots->len > 0)
        serve_step (&ctx, &model, model_dir, slots, prefill_chunk, &turn);
      else if (serve_stop || (closed && g_queue_is_empty (&waiting)))
        break;
    }
  /* What is left: the generations end cancelled (or with the worker's
   * failure), the requests waiting are answered. */
  for (guint i = 0; i < slots->len; i++)
    {
      ServeSlot *slot = slots->pdata[i];
      g_atomic_int_set (&slot->cancelled, TRUE);
      serve_slot_end (slot, model_dir, NULL);
    }
  Gptd__Request *req;
  while ((req = g_queue_pop_head (&waiting)) != NULL)
    {
      ServeReq r = { req->id, 0, req->body_case == GPTD__REQUEST__BODY_CLASSIFY ? "classify"
                                                                                : "generate" };
      if (req->body_case == GPTD__REQUEST__BODY_GENERATE && status == 0)
        serve_send_end (&ctx, &r, gptd_generate_stop_to_string (GPTD_GENERATE_STOP_CANCELLED),
                        0);
      else
        serve_send_error (&ctx, &r, GPTD__ERROR_CODE__ERROR_CODE_SHUTTING_DOWN,
                          "The serving worker of the model %s stopped before this request",
                          model_dir);
      protobuf_c_message_free_unpacked (&req->base, NULL);
    }
  /* The reading thread may still be blocked on the socket: the process ends
   * without waiting for it. */
  gptd_gpt_decode_batch_free (model.batch);
  gptd_generator_free (model.generator);
  gptd_classifier_free (model.classifier);
  g_free (model.stamp);
  g_free (model.real);
  return status;
}
