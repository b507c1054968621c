/* daemon/server-generate.c: generate requests, served off the loop thread on a
 * pool of generation threads with a cache of loaded models.
 */
#ifdef HAVE_CONFIG_H
#include "config.h"
#endif
#ifndef _GNU_SOURCE
#define _GNU_SOURCE 1
#endif

#include "server-private.h"

#include <gptd/generate.h>
#include <gptd/gpt2-file.h>

#include <errno.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include <gio/gio.h>

/* ---- Generation --------------------------------------------------------------- */

/* Generate requests never run on the loop thread. Each one is a GenJob pushed
 * to a pool of generation threads (at most generate_threads at once; more wait
 * in the pool's queue). The thread streams what it produces as ready-made
 * Response frames through a locked queue and wakes the loop with
 * uv_async_send(); at each wakeup (wakeups coalesce) the loop sends every frame
 * queued. A job's last frame has end set; once the loop has handled it the job
 * is freed. Until then the loop alone touches the job's conn, and the thread
 * the rest; the connection going away (hanging up, lagging, closing) or the
 * daemon stopping sets the job's cancelled flag, which the generator checks
 * before each token.
 *
 * Loaded models are kept in a cache of at most model_cache generators, keyed by
 * the model directory's real path and the modification times and sizes of the
 * files a generator reads (so a model written again is loaded again). Beyond
 * the limit the least recently used idle generator is unloaded. A generator
 * serves one request at a time: a request for a model that another request is
 * using waits for it rather than loading a second copy (the weights are most of
 * a model's memory, and two generations of one model compete for the same
 * memory bandwidth anyway). Requests for different models run side by side. */

typedef struct {
  char *key;                 /* real path and file stamps */
  char *dir;                 /* the real path */
  GptdGenerator *generator;  /* NULL while it is being loaded */
  gboolean busy;             /* serving a request, or being loaded */
  guint64 used;              /* the cache's clock at its last use */
} CachedModel;

struct _GenCache {
  GMutex lock;
  GCond cond;                /* a model became free, or a load ended */
  GPtrArray *models;         /* CachedModel* */
  guint capacity;
  guint64 clock;
  guint64 loads;
  guint64 hits;
};

static void
cached_model_free (gpointer data)
{
  CachedModel *m = data;
  gptd_generator_free (m->generator);
  g_free (m->key);
  g_free (m->dir);
  g_free (m);
}

static GenCache *
gen_cache_new (guint capacity)
{
  GenCache *cache = g_new0 (GenCache, 1);
  g_mutex_init (&cache->lock);
  g_cond_init (&cache->cond);
  cache->models = g_ptr_array_new_with_free_func (cached_model_free);
  cache->capacity = capacity;
  return cache;
}

static void
gen_cache_free (GenCache *cache)
{
  if (cache == NULL)
    return;
  g_ptr_array_unref (cache->models);
  g_mutex_clear (&cache->lock);
  g_cond_clear (&cache->cond);
  g_free (cache);
}

/* Unloads the least recently used idle models beyond the capacity. Locked. */
static void
gen_cache_evict (GenCache *cache)
{
  while (cache->models->len > cache->capacity)
    {
      CachedModel *lru = NULL;
      guint at = 0;
      for (guint i = 0; i < cache->models->len; i++)
        {
          CachedModel *m = cache->models->pdata[i];
          if (!m->busy && (lru == NULL || m->used < lru->used))
            {
              lru = m;
              at = i;
            }
        }
      if (lru == NULL)
        return;  /* all in use: the cache shrinks as they are released */
      g_message ("generate: unloading the model %s (least recently used of %u)", lru->dir,
                 cache->models->len);
      g_ptr_array_remove_index (cache->models, at);
    }
}

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

/* The cache key of the model directory @dir (its real path and the stamps of
 * the files a generator loads), with the real path in *@real_out; NULL with a
 * G_FILE_ERROR when the directory cannot be used. */
static char *
model_cache_key (const char *dir, char **real_out, GError **error)
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

/* What a request learns about the cache when it gets its model. */
typedef struct {
  gboolean loaded;      /* loaded for this request (else it was cached) */
  double load_s;        /* seconds the load took */
  guint n_models;       /* models in the cache afterwards */
  guint64 loads, hits;  /* the cache's counters afterwards */
} GenCacheNote;

/* Gets a generator for the model in @dir, for the caller alone, loading it
 * when the cache does not hold it; waits while another request uses it. NULL
 * with a G_FILE_ERROR (no such directory), G_IO_ERROR_CANCELLED (@cancelled
 * became set while waiting) or the loader's error. Release it with
 * gen_cache_release(). */
static CachedModel *
gen_cache_acquire (GenCache *cache, const char *dir, gint *cancelled, GenCacheNote *note,
                   GError **error)
{
  g_autofree char *real = NULL;
  g_autofree char *key = model_cache_key (dir, &real, error);
  if (key == NULL)
    return NULL;

  g_mutex_lock (&cache->lock);
  for (;;)
    {
      CachedModel *found = NULL;
      for (guint i = 0; i < cache->models->len && found == NULL; i++)
        {
          CachedModel *m = cache->models->pdata[i];
          if (strcmp (m->key, key) == 0)
            found = m;
        }
      if (found == NULL)
        break;
      if (!found->busy)
        {
          found->busy = TRUE;
          found->used = ++cache->clock;
          cache->hits++;
          note->loaded = FALSE;
          note->n_models = cache->models->len;
          note->loads = cache->loads;
          note->hits = cache->hits;
          g_mutex_unlock (&cache->lock);
          return found;
        }
      if (g_atomic_int_get (cancelled))
        {
          g_mutex_unlock (&cache->lock);
          g_set_error (error, G_IO_ERROR, G_IO_ERROR_CANCELLED,
                       "cancelled while waiting for the model %s", real);
          return NULL;
        }
      /* In use (or being loaded) for another request: wait, looking at the
       * cancelled flag now and then. */
      g_cond_wait_until (&cache->cond, &cache->lock,
                         g_get_monotonic_time () + 100 * G_TIME_SPAN_MILLISECOND);
    }

  /* Not loaded: an entry that makes others wanting it wait for this load.
   * Idle entries of older files of the same directory go. */
  for (guint i = cache->models->len; i-- > 0;)
    {
      CachedModel *m = cache->models->pdata[i];
      if (!m->busy && strcmp (m->dir, real) == 0)
        {
          g_message ("generate: the model in %s has changed; unloading the old one", real);
          g_ptr_array_remove_index (cache->models, i);
        }
    }
  CachedModel *m = g_new0 (CachedModel, 1);
  m->key = g_strdup (key);
  m->dir = g_strdup (real);
  m->busy = TRUE;
  m->used = ++cache->clock;
  g_ptr_array_add (cache->models, m);
  g_mutex_unlock (&cache->lock);

  gint64 t0 = g_get_monotonic_time ();
  g_autoptr (GError) local = NULL;
  GptdGenerator *generator = gptd_generator_load (real, NULL, 0, &local);
  double load_s = (double) (g_get_monotonic_time () - t0) / G_USEC_PER_SEC;

  g_mutex_lock (&cache->lock);
  if (generator == NULL)
    {
      g_ptr_array_remove (cache->models, m);
      g_cond_broadcast (&cache->cond);
      g_mutex_unlock (&cache->lock);
      g_set_error (error, G_IO_ERROR, G_IO_ERROR_INVALID_DATA,
                   "Cannot load the model in %s: %s", real, local->message);
      return NULL;
    }
  m->generator = generator;
  m->used = ++cache->clock;
  cache->loads++;
  gen_cache_evict (cache);
  note->loaded = TRUE;
  note->load_s = load_s;
  note->n_models = cache->models->len;
  note->loads = cache->loads;
  note->hits = cache->hits;
  g_mutex_unlock (&cache->lock);
  g_message ("generate: loaded the model %s in %.2f s", real, load_s);
  return m;
}

static void
gen_cache_release (GenCache *cache, CachedModel *m)
{
  g_mutex_lock (&cache->lock);
  m->busy = FALSE;
  m->used = ++cache->clock;
  gen_cache_evict (cache);
  g_cond_broadcast (&cache->cond);
  g_mutex_unlock (&cache->lock);
}

/* One generate request. */
typedef struct {
  Server *server;
  Conn *conn;            /* loop thread only; NULL once its client is gone */
  guint64 id;            /* the request's id */
  char *model;
  char *prompt;
  GptdGenerateOptions options;
  int client_pid;
  gint cancelled;        /* atomic */
  guint64 seq;           /* generation thread only: the last event number */
} GenJob;

/* A frame from a generation thread to the loop. */
typedef struct {
  GenJob *job;
  GBytes *frame;         /* nullable */
  gboolean end;          /* the job's last: it is freed after this */
} GenMsg;

static void
gen_job_free (GenJob *job)
{
  g_free (job->model);
  g_free (job->prompt);
  g_free (job);
}

/* Generation thread: queues @resp for the job's client and wakes the loop. */
static void
gen_post (GenJob *job, const Gptd__Response *resp)
{
  Server *s = job->server;
  g_autoptr (GError) error = NULL;
  GenMsg *msg = g_new0 (GenMsg, 1);
  msg->job = job;
  msg->end = resp->end;
  msg->frame = gptd_frame_encode (&resp->base, 0, &error);
  if (msg->frame == NULL)
    g_warning ("generate: an answer could not be encoded: %s", error->message);
  g_mutex_lock (&s->gen_out_lock);
  g_queue_push_tail (&s->gen_out, msg);
  /* Under the lock: the loop cannot end the job, and so cannot close the
   * async handle while stopping, before this call is done. */
  uv_async_send (&s->gen_async);
  g_mutex_unlock (&s->gen_out_lock);
}

static void
gen_post_event (GenJob *job, Gptd__Event *ev, gboolean end)
{
  ev->run_id = (char *) "";
  ev->seq = ++job->seq;
  ev->time = (double) g_get_real_time () / G_USEC_PER_SEC;
  Gptd__Response resp = GPTD__RESPONSE__INIT;
  resp.id = job->id;
  resp.body_case = GPTD__RESPONSE__BODY_EVENT;
  resp.event = ev;
  resp.end = end;
  gen_post (job, &resp);
}

static void gen_post_error (GenJob *job, Gptd__ErrorCode code, const char *format, ...)
  G_GNUC_PRINTF (3, 4);

static void
gen_post_error (GenJob *job, Gptd__ErrorCode code, const char *format, ...)
{
  va_list ap;
  va_start (ap, format);
  g_autofree char *message = g_strdup_vprintf (format, ap);
  va_end (ap);
  g_message ("generate: request %" G_GUINT64_FORMAT " of pid %d failed: %s", job->id,
             job->client_pid, message);
  Gptd__Response resp = GPTD__RESPONSE__INIT;
  Gptd__Error err = GPTD__ERROR__INIT;
  err.code = code;
  err.message = message;
  resp.id = job->id;
  resp.error = &err;
  resp.end = TRUE;
  gen_post (job, &resp);
}

static void
gen_post_end (GenJob *job, const char *stop_reason, guint tokens)
{
  Gptd__Event ev = GPTD__EVENT__INIT;
  Gptd__TextChunk chunk = GPTD__TEXT_CHUNK__INIT;
  chunk.text = (char *) "";
  chunk.done = TRUE;
  chunk.stop_reason = (char *) stop_reason;
  chunk.tokens = tokens;
  ev.body_case = GPTD__EVENT__BODY_TEXT;
  ev.text = &chunk;
  gen_post_event (job, &ev, TRUE);
}

static void
gen_on_token (gint32 id, const char *text, gsize text_len, gpointer user_data)
{
  if (text_len == 0)
    return;  /* a character still incomplete */
  Gptd__Event ev = GPTD__EVENT__INIT;
  Gptd__TextChunk chunk = GPTD__TEXT_CHUNK__INIT;
  chunk.text = (char *) text;
  chunk.stop_reason = (char *) "";
  ev.body_case = GPTD__EVENT__BODY_TEXT;
  ev.text = &chunk;
  gen_post_event (user_data, &ev, FALSE);
}

static gboolean
gen_is_cancelled (gpointer user_data)
{
  GenJob *job = user_data;
  return g_atomic_int_get (&job->cancelled);
}

/* Generation thread: runs one request from start to end. */
static void
gen_job_run (gpointer data, gpointer user_data)
{
  GenJob *job = data;
  Server *s = user_data;
  if (g_atomic_int_get (&job->cancelled))
    {
      gen_post_end (job, gptd_generate_stop_to_string (GPTD_GENERATE_STOP_CANCELLED), 0);
      return;
    }

  g_autoptr (GError) error = NULL;
  GenCacheNote note = { 0 };
  CachedModel *m = gen_cache_acquire (s->gen_cache, job->model, &job->cancelled, &note, &error);
  if (m == NULL)
    {
      if (g_error_matches (error, G_IO_ERROR, G_IO_ERROR_CANCELLED))
        gen_post_end (job, gptd_generate_stop_to_string (GPTD_GENERATE_STOP_CANCELLED), 0);
      else
        gen_post_error (job, error->domain == G_FILE_ERROR
                               ? GPTD__ERROR_CODE__ERROR_CODE_NOT_FOUND
                               : GPTD__ERROR_CODE__ERROR_CODE_BAD_REQUEST,
                        "%s", error->message);
      return;
    }

  /* First a line saying where the model came from: the cache's counters. */
  {
    g_autofree char *line =
      note.loaded
        ? g_strdup_printf ("model %s: loaded in %.2f s (models cached: %u; loads: %"
                           G_GUINT64_FORMAT ", hits: %" G_GUINT64_FORMAT "); seed %"
                           G_GUINT64_FORMAT, m->dir, note.load_s, note.n_models, note.loads,
                           note.hits, job->options.seed)
        : g_strdup_printf ("model %s: cached (models cached: %u; loads: %" G_GUINT64_FORMAT
                           ", hits: %" G_GUINT64_FORMAT "); seed %" G_GUINT64_FORMAT, m->dir,
                           note.n_models, note.loads, note.hits, job->options.seed);
    Gptd__Event ev = GPTD__EVENT__INIT;
    Gptd__LogLine log = GPTD__LOG_LINE__INIT;
    log.stage = (char *) "generate";
    log.level = GPTD__LOG_LEVEL__LOG_LEVEL_INFO;
    log.message = line;
    ev.body_case = GPTD__EVENT__BODY_LOG;
    ev.log = &log;
    gen_post_event (job, &ev, FALSE);
  }

  GptdGenerateCallbacks callbacks = { gen_on_token, gen_is_cancelled, job };
  gint64 t0 = g_get_monotonic_time ();
  g_autoptr (GptdGenerateResult) result =
    gptd_generator_generate (m->generator, job->prompt, &job->options, &callbacks, &error);
  double seconds = (double) (g_get_monotonic_time () - t0) / G_USEC_PER_SEC;
  gen_cache_release (s->gen_cache, m);
  if (result == NULL)
    {
      gboolean bad_input = error->domain == GPTD_GENERATE_ERROR
                           && error->code != GPTD_GENERATE_ERROR_MODEL;
      gen_post_error (job, bad_input ? GPTD__ERROR_CODE__ERROR_CODE_BAD_REQUEST
                                     : GPTD__ERROR_CODE__ERROR_CODE_INTERNAL,
                      "Generating from the model in %s failed: %s", job->model,
                      error->message);
      return;
    }
  const char *stop = gptd_generate_stop_to_string (result->stop);
  g_message ("generate: request %" G_GUINT64_FORMAT " of pid %d: %d tokens (%s) from %s in "
             "%.2f s", job->id, job->client_pid, result->n_ids, stop, job->model, seconds);
  gen_post_end (job, stop, (guint) result->n_ids);
}

/* The job's client sees nothing more of it: it is cancelled and its connection
 * forgets it. Loop thread. */
static void
gen_job_detach (GenJob *job)
{
  g_atomic_int_set (&job->cancelled, TRUE);
  if (job->conn != NULL)
    {
      job->conn->gen_jobs = g_list_remove (job->conn->gen_jobs, job);
      job->conn = NULL;
    }
}

void
gptd__conn_cancel_generations (Conn *c)
{
  while (c->gen_jobs != NULL)
    gen_job_detach (c->gen_jobs->data);
}

/* Loop thread: sends what the generation threads queued. */
static void
server_on_gen_wakeup (uv_async_t *handle)
{
  Server *s = handle->data;
  g_mutex_lock (&s->gen_out_lock);
  GQueue queue = s->gen_out;
  g_queue_init (&s->gen_out);
  g_mutex_unlock (&s->gen_out_lock);

  GenMsg *msg;
  while ((msg = g_queue_pop_head (&queue)) != NULL)
    {
      GenJob *job = msg->job;
      Conn *c = job->conn;
      if (c != NULL && msg->frame != NULL)
        {
          if (!msg->end && c->queued > s->queue_limit)
            {
              /* The client does not read what it asked for. */
              g_message ("connection %u (pid %d) lagged behind its generation by %"
                         G_GSIZE_FORMAT " bytes; dropped", c->id, (int) c->pid, c->queued);
              gen_job_detach (job);
              Gptd__Response resp = GPTD__RESPONSE__INIT;
              Gptd__Error err = GPTD__ERROR__INIT;
              err.code = GPTD__ERROR_CODE__ERROR_CODE_LAGGED;
              err.message = (char *) "You fell too far behind the generated text and were dropped";
              resp.id = job->id;
              resp.error = &err;
              resp.end = TRUE;
              gptd__conn_send (c, &resp);
              gptd__conn_drain (c);
            }
          else
            gptd__conn_send_frame (c, msg->frame);
        }
      if (msg->end)
        {
          gen_job_detach (job);
          gen_job_free (job);
          s->n_gen_jobs--;
          gptd__server_maybe_finish_stop (s);
        }
      if (msg->frame != NULL)
        g_bytes_unref (msg->frame);
      g_free (msg);
    }
}

/* Cancels every generation; their clients are told they were cancelled. */
void
gptd__server_cancel_generations (Server *s)
{
  for (GList *l = s->conns; l != NULL; l = l->next)
    {
      Conn *c = l->data;
      for (GList *j = c->gen_jobs; j != NULL; j = j->next)
        g_atomic_int_set (&((GenJob *) j->data)->cancelled, TRUE);
    }
}

/* The most new tokens one request may ask for. */
#define GEN_MAX_NEW_TOKENS (1u << 20)
void
gptd__request_generate (Conn *c, const Gptd__Request *req)
{
  Server *s = c->server;
  const Gptd__GenerateRequest *gr = req->generate;
  if (s->stopping)
    {
      gptd__conn_send_error (c, req->id, GPTD__ERROR_CODE__ERROR_CODE_SHUTTING_DOWN,
                       "gptd is stopping and starts no generation");
      return;
    }
  if (gr->model == NULL || !*gr->model)
    {
      gptd__conn_send_error (c, req->id, GPTD__ERROR_CODE__ERROR_CODE_BAD_REQUEST,
                       "The generate request names no model directory");
      return;
    }
  if (!g_path_is_absolute (gr->model))
    {
      gptd__conn_send_error (c, req->id, GPTD__ERROR_CODE__ERROR_CODE_BAD_REQUEST,
                       "The model directory must be an absolute path, not %s", gr->model);
      return;
    }
  if (gr->prompt == NULL || !*gr->prompt)
    {
      gptd__conn_send_error (c, req->id, GPTD__ERROR_CODE__ERROR_CODE_BAD_REQUEST,
                       "The prompt is empty: generation needs at least one token");
      return;
    }
  if (gr->max_new_tokens > GEN_MAX_NEW_TOKENS || gr->top_k > G_MAXINT32)
    {
      gptd__conn_send_error (c, req->id, GPTD__ERROR_CODE__ERROR_CODE_BAD_REQUEST,
                       gr->max_new_tokens > GEN_MAX_NEW_TOKENS
                         ? "max-new-tokens must be at most %u" : "top-k must be at most %u",
                       gr->max_new_tokens > GEN_MAX_NEW_TOKENS ? GEN_MAX_NEW_TOKENS
                                                                : (guint) G_MAXINT32);
      return;
    }
  GptdGenerateOptions opts;
  gptd_generate_options_init (&opts);
  opts.max_new_tokens = (int) gr->max_new_tokens;
  opts.temperature = gr->temperature;
  opts.top_k = (int) gr->top_k;
  opts.top_p = gr->top_p;
  opts.eos_id = gr->eos_id;
  /* Without a seed, each request samples differently. */
  opts.seed = gr->has_seed ? gr->seed
                           : ((guint64) g_random_int () << 32) | (guint64) g_random_int ();
  opts.use_kv_cache = TRUE;
  g_autoptr (GError) error = NULL;
  if (!gptd_generate_options_validate (&opts, &error))
    {
      gptd__conn_send_error (c, req->id, GPTD__ERROR_CODE__ERROR_CODE_BAD_REQUEST,
                       "Bad generate parameters: %s", error->message);
      return;
    }

  GenJob *job = g_new0 (GenJob, 1);
  job->server = s;
  job->conn = c;
  job->id = req->id;
  job->model = g_strdup (gr->model);
  job->prompt = g_strdup (gr->prompt);
  job->options = opts;
  job->client_pid = (int) c->pid;
  c->gen_jobs = g_list_prepend (c->gen_jobs, job);
  s->n_gen_jobs++;
  g_info ("generate: request %" G_GUINT64_FORMAT " of pid %d: %u tokens from %s",
          req->id, (int) c->pid, gr->max_new_tokens, gr->model);
  g_thread_pool_push (s->gen_pool, job, NULL);
}


void
gptd__server_generate_init (Server *s, guint model_cache, guint threads)
{
  s->gen_cache = gen_cache_new (model_cache);
  g_mutex_init (&s->gen_out_lock);
  g_queue_init (&s->gen_out);
  uv_async_init (&s->loop, &s->gen_async, server_on_gen_wakeup);
  s->gen_async.data = s;
  s->gen_pool = g_thread_pool_new (gen_job_run, s, (gint) threads, FALSE, NULL);
}

void
gptd__server_generate_set_cache (Server *s, guint model_cache)
{
  if (s->gen_cache == NULL)
    return;
  g_mutex_lock (&s->gen_cache->lock);
  s->gen_cache->capacity = model_cache;
  gen_cache_evict (s->gen_cache);
  g_mutex_unlock (&s->gen_cache->lock);
}

void
gptd__server_generate_close (Server *s)
{
  uv_close ((uv_handle_t *) &s->gen_async, NULL);
}

void
gptd__server_generate_free (Server *s)
{
  if (s->gen_pool != NULL)
    {
      g_thread_pool_free (s->gen_pool, TRUE, TRUE);
      g_mutex_clear (&s->gen_out_lock);
    }
  gen_cache_free (s->gen_cache);
}
