/* daemon/server.c: the gptd daemon's event loop: the control socket and its
 * connections, the request handlers (one function per request type), watchers
 * with bounded output queues, worker processes (started and resumed), text
 * generation on a pool of threads with a cache of loaded models, signals and
 * the clean stop.
 */
#ifdef HAVE_CONFIG_H
#include "config.h"
#endif
#ifndef _GNU_SOURCE
#define _GNU_SOURCE 1
#endif

#include "server.h"
#include "runs.h"
#include "worker.h"

#include <gptd/frame.h>
#include <gptd/generate.h>
#include <gptd/gpt2-file.h>
#include <gptd/pipeline.h>
#include <gptd/registry.h>
#include <gptd/runner.h>

#include <errno.h>
#include <limits.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <poll.h>
#include <unistd.h>

#include <gio/gio.h>
#include <glib/gstdio.h>
#include <uv.h>

#ifdef HAVE_SYSTEMD
#include <systemd/sd-daemon.h>
#endif

typedef struct _Server Server;
typedef struct _Conn Conn;
typedef struct _GenCache GenCache;

struct _Server {
  uv_loop_t loop;
  uv_pipe_t listener;
  uv_signal_t sig_term;
  uv_signal_t sig_int;
  uv_signal_t sig_hup;
  uv_timer_t stop_timer;
  uv_timer_t watchdog;      /* systemd watchdog pings (inactive without one) */
  gboolean listening;
  gboolean activated;       /* the socket came from systemd: it is not ours to remove */
  char *config_path;        /* gptd.conf, read again on SIGHUP */
  gboolean config_optional;
  GptdDaemonConfig cmdline; /* what the command line set (it wins over the file) */
  GptdDaemonConfig config;  /* the settings in force */
  gboolean stopping;
  gboolean finished;
  gboolean killed_workers;
  GptdRunTable *runs;
  GptdRegistry *registry;
  GList *conns;
  guint n_workers;
  guint next_conn_id;
  char *socket_path;
  guint stop_timeout_ms;
  gsize queue_limit;
  /* Generation (see "Generation" below). */
  GenCache *gen_cache;
  GThreadPool *gen_pool;
  uv_async_t gen_async;     /* generation threads wake the loop with it */
  GMutex gen_out_lock;
  GQueue gen_out;           /* GenMsg*: frames from the generation threads */
  guint n_gen_jobs;         /* generate requests not yet ended */
  /* Loading submitted pipelines (see "Checking submitted pipelines" below). */
  GThreadPool *check_pool;
  uv_async_t check_async;   /* checking threads wake the loop with it */
  GMutex check_out_lock;
  GQueue check_out;         /* CheckJob*: loaded, to be answered */
  guint n_check_jobs;       /* run and validate requests not yet answered */
};

struct _Conn {
  uv_pipe_t pipe;
  uv_timer_t drain_timer;
  Server *server;
  guint id;
  int open_handles;
  GptdFrameDecoder *dec;
  gsize queued;          /* bytes handed to uv_write and not yet written */
  gboolean closing;      /* uv_close was called */
  gboolean draining;     /* no more requests; closed once its output is flushed */
  pid_t pid;
  uid_t uid;
  gid_t gid;
  /* The run this connection watches: replaying its log, then live. */
  GptdRun *watch_run;
  guint64 watch_id;
  GptdRunLogReader *replay;
  /* The generate requests of this connection that have not ended (GenJob*). */
  GList *gen_jobs;
  /* Its run and validate requests whose pipeline is being loaded (CheckJob*). */
  GList *check_jobs;
};

typedef struct {
  uv_write_t req;
  GBytes *bytes;
  Conn *conn;
} WriteReq;

static void conn_close (Conn *c);
static void conn_replay_pump (Conn *c);
static void conn_cancel_generations (Conn *c);
static void conn_forget_checks (Conn *c);
static void server_finish_stop (Server *s);

/* ---- Sending ------------------------------------------------------------------ */

static void
write_done (uv_write_t *req, int status)
{
  WriteReq *wr = (WriteReq *) req;
  Conn *c = wr->conn;
  c->queued -= g_bytes_get_size (wr->bytes);
  g_bytes_unref (wr->bytes);
  g_free (wr);
  if (status < 0)
    {
      if (status != UV_ECANCELED)
        g_debug ("connection %u: write failed: %s", c->id, uv_strerror (status));
      conn_close (c);
      return;
    }
  if (c->closing)
    return;
  if (c->draining && c->queued == 0)
    {
      conn_close (c);
      return;
    }
  if (c->replay != NULL && c->queued <= c->server->queue_limit / 2)
    conn_replay_pump (c);
}

static void
conn_send_bytes (Conn *c, GBytes *bytes)
{
  if (c->closing)
    return;
  WriteReq *wr = g_new0 (WriteReq, 1);
  wr->bytes = g_bytes_ref (bytes);
  wr->conn = c;
  gsize size;
  const void *data = g_bytes_get_data (bytes, &size);
  uv_buf_t buf = uv_buf_init ((char *) data, (unsigned) size);
  c->queued += size;
  int r = uv_write (&wr->req, (uv_stream_t *) &c->pipe, &buf, 1, write_done);
  if (r != 0)
    {
      c->queued -= size;
      g_bytes_unref (wr->bytes);
      g_free (wr);
      g_debug ("connection %u: write failed: %s", c->id, uv_strerror (r));
      conn_close (c);
    }
}

static void
conn_on_drain_timeout (uv_timer_t *timer)
{
  conn_close (timer->data);
}

/* Stops reading from @c and closes it once what it was sent is flushed (or after
 * a few seconds, for a client that does not read). */
static void
conn_drain (Conn *c)
{
  if (c->closing || c->draining)
    return;
  c->draining = TRUE;
  /* Nothing more will be sent: a generation for this client stops. */
  conn_cancel_generations (c);
  uv_read_stop ((uv_stream_t *) &c->pipe);
  if (c->queued == 0)
    conn_close (c);
  else
    uv_timer_start (&c->drain_timer, conn_on_drain_timeout, 5000, 0);
}

static void conn_send_error (Conn *c, guint64 id, Gptd__ErrorCode code, const char *format, ...)
  G_GNUC_PRINTF (4, 5);

/* Sends an encoded Response frame. */
static void
conn_send_frame (Conn *c, GBytes *frame)
{
  if (c->closing || c->draining)
    return;
  /* A client that sends requests without reading the answers is dropped before
   * its queue grows without bound. */
  if (c->queued > c->server->queue_limit + 2 * (gsize) GPTD_FRAME_MAX_SIZE)
    {
      g_message ("connection %u (pid %d): not reading its answers; dropped", c->id, (int) c->pid);
      conn_close (c);
      return;
    }
  conn_send_bytes (c, frame);
}

static void
conn_send (Conn *c, Gptd__Response *resp)
{
  if (c->closing || c->draining)
    return;
  g_autoptr (GError) error = NULL;
  g_autoptr (GBytes) frame = gptd_frame_encode (&resp->base, 0, &error);
  if (frame == NULL)
    {
      conn_send_error (c, resp->id, GPTD__ERROR_CODE__ERROR_CODE_INTERNAL,
                       "The answer is too large to send: %s", error->message);
      return;
    }
  conn_send_frame (c, frame);
}

static void
conn_send_error (Conn *c, guint64 id, Gptd__ErrorCode code, const char *format, ...)
{
  va_list ap;
  va_start (ap, format);
  g_autofree char *message = g_strdup_vprintf (format, ap);
  va_end (ap);
  Gptd__Response resp = GPTD__RESPONSE__INIT;
  Gptd__Error err = GPTD__ERROR__INIT;
  err.code = code;
  err.message = message;
  resp.id = id;
  resp.error = &err;
  conn_send (c, &resp);
}

static void
conn_send_ok (Conn *c, guint64 id)
{
  Gptd__Response resp = GPTD__RESPONSE__INIT;
  Gptd__Empty empty = GPTD__EMPTY__INIT;
  resp.id = id;
  resp.body_case = GPTD__RESPONSE__BODY_OK;
  resp.ok = &empty;
  conn_send (c, &resp);
}

static void
conn_send_run (Conn *c, guint64 id, GptdRun *run, gboolean end)
{
  Gptd__Response resp = GPTD__RESPONSE__INIT;
  Gptd__RunInfo info;
  gptd__run_fill_info (run, &info);
  resp.id = id;
  resp.body_case = GPTD__RESPONSE__BODY_RUN;
  resp.run = &info;
  resp.end = end;
  conn_send (c, &resp);
}

/* ---- Watching ----------------------------------------------------------------- */

static void
conn_unwatch (Conn *c)
{
  if (c->watch_run != NULL)
    g_ptr_array_remove (c->watch_run->watchers, c);
  c->watch_run = NULL;
  g_clear_pointer (&c->replay, gptd__run_log_reader_free);
}

/* The run's story is over for this watcher: its final RunInfo, with end set. */
static void
conn_watch_end (Conn *c)
{
  GptdRun *run = c->watch_run;
  guint64 id = c->watch_id;
  if (run == NULL)
    return;  /* the connection was closed meanwhile */
  conn_unwatch (c);
  conn_send_run (c, id, run, TRUE);
}

static void
conn_send_event (Conn *c, const Gptd__Event *event)
{
  Gptd__Response resp = GPTD__RESPONSE__INIT;
  resp.id = c->watch_id;
  resp.body_case = GPTD__RESPONSE__BODY_EVENT;
  resp.event = (Gptd__Event *) event;
  conn_send (c, &resp);
}

/* Sends the logged events of the watched run while the connection's queue has
 * room; at the end of the log the watcher turns live (or ends, when the run has
 * finished). Events recorded meanwhile are in the log before they are broadcast,
 * so none is missed or sent twice. */
static void
conn_replay_pump (Conn *c)
{
  while (c->replay != NULL && !c->closing && !c->draining
         && c->queued <= c->server->queue_limit / 2)
    {
      g_autoptr (GError) error = NULL;
      Gptd__Event *ev = gptd__run_log_reader_next (c->replay, &error);
      if (error != NULL)
        {
          guint64 id = c->watch_id;
          conn_unwatch (c);
          conn_send_error (c, id, GPTD__ERROR_CODE__ERROR_CODE_INTERNAL, "%s", error->message);
          return;
        }
      if (ev != NULL)
        {
          conn_send_event (c, ev);
          protobuf_c_message_free_unpacked (&ev->base, NULL);
          continue;
        }
      g_clear_pointer (&c->replay, gptd__run_log_reader_free);
      if (gptd__run_is_finished (c->watch_run))
        conn_watch_end (c);
      else
        g_ptr_array_add (c->watch_run->watchers, c);
    }
}

/* Called for every event recorded in any run: forwarded to its live watchers. */
static void
server_on_run_event (GptdRun *run, const Gptd__Event *event, gpointer user_data)
{
  Server *s = user_data;
  if (run->watchers->len == 0)
    return;
  gboolean final = event->body_case == GPTD__EVENT__BODY_STATE && event->state != NULL
                   && gptd__run_state_is_final (event->state->state);
  g_autoptr (GPtrArray) watchers = g_ptr_array_copy (run->watchers, NULL, NULL);
  for (guint i = 0; i < watchers->len; i++)
    {
      Conn *c = watchers->pdata[i];
      if (c->queued > s->queue_limit)
        {
          g_message ("connection %u (pid %d) lagged behind run %s by %" G_GSIZE_FORMAT
                     " bytes; dropped", c->id, (int) c->pid, run->id, c->queued);
          guint64 id = c->watch_id;
          conn_unwatch (c);
          conn_send_error (c, id, GPTD__ERROR_CODE__ERROR_CODE_LAGGED,
                           "You fell more than %" G_GSIZE_FORMAT " bytes behind run %s and "
                           "were dropped; watch it again to catch up", s->queue_limit, run->id);
          conn_drain (c);
          continue;
        }
      conn_send_event (c, event);
      if (final && !c->closing)
        conn_watch_end (c);
    }
}

/* ---- Workers ------------------------------------------------------------------ */

/* Tells systemd (when it runs gptd) how many runs are going. */
static void
server_notify_status (Server *s)
{
#ifdef HAVE_SYSTEMD
  sd_notifyf (0, "STATUS=Listening on %s; %u run(s) running", s->socket_path, s->n_workers);
#endif
}

typedef struct {
  Server *server;
  GptdRun *run;
} WorkerLink;

static void
server_on_worker_event (GptdWorker *worker, Gptd__Event *event, gpointer user_data)
{
  WorkerLink *link = user_data;
  GptdRun *run = link->run;
  /* The run was resumed while this (old) worker was still exiting: what it
   * still says belongs to the run that ended. */
  if (run->resume_pending)
    return;
  /* A run cancelled because the daemon stops was interrupted, not cancelled by
   * anyone: it can be resumed. */
  if (link->server->stopping && !run->cancel_requested
      && event->body_case == GPTD__EVENT__BODY_STATE && event->state != NULL
      && event->state->state == GPTD__RUN_STATE__RUN_STATE_CANCELLED)
    {
      if (!gptd__run_is_finished (run))
        gptd__run_finish (run, GPTD__RUN_STATE__RUN_STATE_INTERRUPTED, NULL,
                          "gptd stopped; the run was stopped with it");
      return;
    }
  gptd__run_record_event (run, event);
}

static gboolean server_start_worker (Server *s, GptdRun *run, gboolean resume, GError **error);

/* Stops the daemon once nothing runs any more (after a stop was asked for). */
static void
server_maybe_finish_stop (Server *s)
{
  if (s->stopping && s->n_workers == 0 && s->n_gen_jobs == 0 && s->n_check_jobs == 0)
    server_finish_stop (s);
}

static void
server_on_worker_exit (GptdWorker *worker, gint64 exit_status, int term_signal,
                       const char *protocol_error, gpointer user_data)
{
  WorkerLink *link = user_data;
  Server *s = link->server;
  GptdRun *run = link->run;
  g_free (link);

  if (term_signal)
    g_message ("run %s: worker %d killed by signal %d (%s)", run->id, run->pid, term_signal,
               g_strsignal (term_signal));
  else
    g_info ("run %s: worker %d exited with status %" G_GINT64_FORMAT, run->id, run->pid,
            exit_status);

  gboolean resume = run->resume_pending;
  run->resume_pending = FALSE;
  if (!resume && !gptd__run_is_finished (run))
    {
      g_autofree char *why = NULL;
      Gptd__RunState state = GPTD__RUN_STATE__RUN_STATE_FAILED;
      if (protocol_error != NULL)
        why = g_strdup_printf ("worker sent a malformed event: %s", protocol_error);
      else if (run->cancel_requested)
        {
          /* Killed by the cancel's SIGTERM before it could handle it. */
          state = GPTD__RUN_STATE__RUN_STATE_CANCELLED;
        }
      else if (s->stopping)
        {
          state = GPTD__RUN_STATE__RUN_STATE_INTERRUPTED;
          why = g_strdup (term_signal == SIGKILL
                            ? "gptd stopped; the worker did not stop in time and was killed"
                            : "gptd stopped; the run was stopped with it");
        }
      else if (term_signal)
        why = g_strdup_printf ("worker died: signal %d (%s)", term_signal,
                               g_strsignal (term_signal));
      else
        why = g_strdup_printf ("worker exited with status %" G_GINT64_FORMAT
                               " without reporting how the run ended", exit_status);
      gptd__run_finish (run, state, NULL, why);
    }
  run->worker = NULL;
  gptd__run_set_pid (run, 0);
  s->n_workers--;
  if (resume)
    {
      /* A resume asked for while this worker was exiting: start its successor. */
      g_autoptr (GError) error = NULL;
      if (s->stopping)
        gptd__run_finish (run, GPTD__RUN_STATE__RUN_STATE_INTERRUPTED, NULL,
                          "gptd stopped before the run could resume");
      else if (!server_start_worker (s, run, TRUE, &error))
        {
          g_warning ("run %s: %s", run->id, error->message);
          gptd__run_finish (run, GPTD__RUN_STATE__RUN_STATE_FAILED, NULL, error->message);
        }
    }
  server_notify_status (s);
  server_maybe_finish_stop (s);
}

static gboolean
server_start_worker (Server *s, GptdRun *run, gboolean resume, GError **error)
{
  WorkerLink *link = g_new0 (WorkerLink, 1);
  link->server = s;
  link->run = run;
  GptdWorker *w = gptd__worker_spawn (&s->loop, run->dir, run->id, resume,
                                      server_on_worker_event,
                                      server_on_worker_exit, link, error);
  if (w == NULL)
    {
      g_free (link);
      return FALSE;
    }
  run->worker = w;
  s->n_workers++;
  server_notify_status (s);
  gptd__run_set_pid (run, gptd__worker_get_pid (w));
  return TRUE;
}

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

static void
conn_cancel_generations (Conn *c)
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
              conn_send (c, &resp);
              conn_drain (c);
            }
          else
            conn_send_frame (c, msg->frame);
        }
      if (msg->end)
        {
          gen_job_detach (job);
          gen_job_free (job);
          s->n_gen_jobs--;
          server_maybe_finish_stop (s);
        }
      if (msg->frame != NULL)
        g_bytes_unref (msg->frame);
      g_free (msg);
    }
}

/* Cancels every generation; their clients are told they were cancelled. */
static void
server_cancel_generations (Server *s)
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

/* ---- Requests ----------------------------------------------------------------- */

/* ---- Checking submitted pipelines ------------------------------------------------ */

/* A submitted pipeline is loaded (parsed, its variables expanded, every stage
 * checked) off the loop thread: the text is the client's, and however long its
 * loading takes, the loop goes on answering other clients and signals. Each run
 * or validate request becomes a CheckJob pushed to a small pool of threads; the
 * thread loads the pipeline, queues the job for the loop and wakes it with
 * uv_async_send() (wakeups coalesce, so the loop takes every job queued). The
 * loop then answers the client and, for a run, creates the run and starts its
 * worker. Only the loop touches a job's conn: a connection that closes
 * meanwhile sets it to NULL and the answer is dropped. A stopping daemon waits
 * for the jobs under way; a run whose check ends after the stop began is
 * refused. */

typedef struct {
  Server *server;
  Conn *conn;              /* loop thread only; NULL once the connection closed */
  guint64 id;
  gboolean is_run;         /* a run request; otherwise a validate request */
  char *text;
  char *filename;          /* absolute */
  char *workdir;           /* as the client gave it (may be NULL) */
  char **settings;
  /* Set by the checking thread. */
  GptdPipeline *pipeline;
  GPtrArray *problems;
  GError *error;
} CheckJob;

/* The threads loading submitted pipelines: two, so one slow file does not hold
 * up every other client's. */
#define CHECK_THREADS 2

static void
check_job_free (CheckJob *job)
{
  g_free (job->text);
  g_free (job->filename);
  g_free (job->workdir);
  g_strfreev (job->settings);
  g_clear_pointer (&job->pipeline, gptd_pipeline_free);
  g_clear_pointer (&job->problems, g_ptr_array_unref);
  g_clear_error (&job->error);
  g_free (job);
}

/* Checking thread: loads the pipeline of one request with the daemon's registry
 * and hands the job back to the loop. */
static void
check_job_run (gpointer data, gpointer user_data)
{
  CheckJob *job = data;
  Server *s = user_data;
  job->pipeline = gptd_pipeline_load_data (s->registry, job->text, -1, job->filename,
                                           (const char *const *) job->settings,
                                           &job->problems, &job->error);
  g_mutex_lock (&s->check_out_lock);
  g_queue_push_tail (&s->check_out, job);
  /* Under the lock: the loop cannot close the async handle before this call is
   * done (it waits for n_check_jobs, which it lowers after taking the job). */
  uv_async_send (&s->check_async);
  g_mutex_unlock (&s->check_out_lock);
}

/* Starts loading the pipeline of a run or validate request. The file name is
 * made absolute against the client's working directory, so relative paths in
 * the pipeline resolve against the pipeline file's directory as they do for
 * `gptd run`. */
static void
check_job_submit (Conn *c, const Gptd__Request *req, const Gptd__RunRequest *rr,
                  gboolean is_run)
{
  Server *s = c->server;
  const char *name = rr->filename && *rr->filename ? rr->filename : "submitted.pipeline";
  const char *workdir = rr->workdir && *rr->workdir ? rr->workdir : "/";
  CheckJob *job = g_new0 (CheckJob, 1);
  job->server = s;
  job->conn = c;
  job->id = req->id;
  job->is_run = is_run;
  job->text = g_strdup (rr->pipeline ? rr->pipeline : "");
  job->filename = g_path_is_absolute (name) ? g_strdup (name)
                                            : g_build_filename (workdir, name, NULL);
  job->workdir = g_strdup (rr->workdir);
  job->settings = gptd_settings_from_proto (rr->settings, rr->n_settings);
  c->check_jobs = g_list_prepend (c->check_jobs, job);
  s->n_check_jobs++;
  g_thread_pool_push (s->check_pool, job, NULL);
}

/* A closing connection gets no answers: its jobs finish unseen. */
static void
conn_forget_checks (Conn *c)
{
  for (GList *l = c->check_jobs; l != NULL; l = l->next)
    ((CheckJob *) l->data)->conn = NULL;
  g_clear_pointer (&c->check_jobs, g_list_free);
}

/* Loop thread: answers a validate request whose pipeline was loaded. */
static void
check_job_answer_validate (Conn *c, CheckJob *job)
{
  Gptd__Response resp = GPTD__RESPONSE__INIT;
  Gptd__ValidateResult *vr =
    gptd_validate_result_new (job->problems, job->pipeline ? NULL : job->error);
  resp.id = job->id;
  resp.body_case = GPTD__RESPONSE__BODY_VALIDATE;
  resp.validate = vr;
  conn_send (c, &resp);
  gptd_validate_result_free (vr);
}

/* Loop thread: answers a run request whose pipeline was loaded, starting the run
 * if it is valid. */
static void
check_job_answer_run (Conn *c, CheckJob *job)
{
  Server *s = c->server;
  if (s->stopping)
    {
      conn_send_error (c, job->id, GPTD__ERROR_CODE__ERROR_CODE_SHUTTING_DOWN,
                       "gptd is stopping and starts no new run");
      return;
    }
  if (job->pipeline == NULL)
    {
      Gptd__Response resp = GPTD__RESPONSE__INIT;
      Gptd__Error err = GPTD__ERROR__INIT;
      Gptd__ValidateResult *vr = gptd_validate_result_new (job->problems, job->error);
      err.code = GPTD__ERROR_CODE__ERROR_CODE_INVALID_PIPELINE;
      err.message = job->error->message;
      resp.id = job->id;
      resp.error = &err;
      resp.body_case = GPTD__RESPONSE__BODY_VALIDATE;
      resp.validate = vr;
      conn_send (c, &resp);
      gptd_validate_result_free (vr);
      return;
    }

  g_autoptr (GError) error = NULL;
  GptdRun *run = gptd__run_table_create (s->runs, gptd_pipeline_get_name (job->pipeline),
                                         job->text, job->filename, job->workdir,
                                         (const char *const *) job->settings, &error);
  if (run == NULL)
    {
      conn_send_error (c, job->id, GPTD__ERROR_CODE__ERROR_CODE_INTERNAL, "%s", error->message);
      return;
    }
  g_message ("run %s (%s, %s) submitted by pid %d uid %u", run->id, run->name, job->filename,
             (int) c->pid, (unsigned) c->uid);
  if (!server_start_worker (s, run, FALSE, &error))
    {
      g_warning ("run %s: %s", run->id, error->message);
      gptd__run_finish (run, GPTD__RUN_STATE__RUN_STATE_FAILED, NULL, error->message);
      conn_send_error (c, job->id, GPTD__ERROR_CODE__ERROR_CODE_INTERNAL, "run %s: %s",
                       run->id, error->message);
      return;
    }
  conn_send_run (c, job->id, run, FALSE);
}

/* Loop thread: answers every request whose pipeline the checking threads loaded. */
static void
server_on_check_wakeup (uv_async_t *handle)
{
  Server *s = handle->data;
  g_mutex_lock (&s->check_out_lock);
  GQueue queue = s->check_out;
  g_queue_init (&s->check_out);
  g_mutex_unlock (&s->check_out_lock);

  CheckJob *job;
  while ((job = g_queue_pop_head (&queue)) != NULL)
    {
      Conn *c = job->conn;
      if (c != NULL)
        {
          c->check_jobs = g_list_remove (c->check_jobs, job);
          if (job->is_run)
            check_job_answer_run (c, job);
          else
            check_job_answer_validate (c, job);
        }
      check_job_free (job);
      s->n_check_jobs--;
    }
  server_maybe_finish_stop (s);
}

static void
request_run (Conn *c, const Gptd__Request *req)
{
  if (c->server->stopping)
    {
      conn_send_error (c, req->id, GPTD__ERROR_CODE__ERROR_CODE_SHUTTING_DOWN,
                       "gptd is stopping and starts no new run");
      return;
    }
  check_job_submit (c, req, req->run, TRUE);
}

static void
request_validate (Conn *c, const Gptd__Request *req)
{
  check_job_submit (c, req, req->validate, FALSE);
}

static void
request_ps (Conn *c, const Gptd__Request *req)
{
  g_autoptr (GPtrArray) runs = gptd__run_table_list (c->server->runs);
  g_autofree Gptd__RunInfo *infos = g_new0 (Gptd__RunInfo, MAX (runs->len, 1));
  g_autofree Gptd__RunInfo **ptrs = g_new0 (Gptd__RunInfo *, MAX (runs->len, 1));
  for (guint i = 0; i < runs->len; i++)
    {
      gptd__run_fill_info (runs->pdata[i], &infos[i]);
      ptrs[i] = &infos[i];
    }
  Gptd__RunList list = GPTD__RUN_LIST__INIT;
  list.runs = ptrs;
  list.n_runs = runs->len;
  Gptd__Response resp = GPTD__RESPONSE__INIT;
  resp.id = req->id;
  resp.body_case = GPTD__RESPONSE__BODY_RUNS;
  resp.runs = &list;
  conn_send (c, &resp);
}

/* The run a RunIdRequest names, or NULL after answering NOT_FOUND. */
static GptdRun *
lookup_run (Conn *c, guint64 id, const char *run_id)
{
  GptdRun *run = gptd__run_table_lookup (c->server->runs, run_id);
  if (run == NULL)
    conn_send_error (c, id, GPTD__ERROR_CODE__ERROR_CODE_NOT_FOUND, "There is no run %s",
                     run_id && *run_id ? run_id : "(empty id)");
  return run;
}

static void
request_status (Conn *c, const Gptd__Request *req)
{
  GptdRun *run = lookup_run (c, req->id, req->status->run_id);
  if (run != NULL)
    conn_send_run (c, req->id, run, FALSE);
}

static void
request_watch (Conn *c, const Gptd__Request *req)
{
  GptdRun *run = lookup_run (c, req->id, req->watch->run_id);
  if (run == NULL)
    return;
  if (c->watch_run != NULL)
    {
      conn_send_error (c, req->id, GPTD__ERROR_CODE__ERROR_CODE_BAD_STATE,
                       "This connection already watches run %s", c->watch_run->id);
      return;
    }
  /* The run as it is now, then its events, then its final RunInfo with end set. */
  conn_send_run (c, req->id, run, FALSE);
  c->watch_run = run;
  c->watch_id = req->id;
  if (req->watch->from_start)
    {
      g_autoptr (GError) error = NULL;
      c->replay = gptd__run_log_reader_new (run, &error);
      if (c->replay == NULL)
        {
          c->watch_run = NULL;
          conn_send_error (c, req->id, GPTD__ERROR_CODE__ERROR_CODE_INTERNAL, "%s",
                           error->message);
          return;
        }
      conn_replay_pump (c);
    }
  else if (gptd__run_is_finished (run))
    conn_watch_end (c);
  else
    g_ptr_array_add (run->watchers, c);
}

static void
request_logs (Conn *c, const Gptd__Request *req)
{
  GptdRun *run = lookup_run (c, req->id, req->logs->run_id);
  if (run == NULL)
    return;
  g_autoptr (GError) error = NULL;
  g_autoptr (GPtrArray) events = gptd__run_read_log (run, TRUE, &error);
  if (events == NULL)
    {
      conn_send_error (c, req->id, GPTD__ERROR_CODE__ERROR_CODE_INTERNAL, "%s", error->message);
      return;
    }
  /* Keep the most recent events that fit in one frame. */
  gsize budget = GPTD_FRAME_MAX_SIZE - 1024, first = events->len;
  while (first > 0)
    {
      gsize size = protobuf_c_message_get_packed_size (events->pdata[first - 1]) + 8;
      if (size > budget)
        break;
      budget -= size;
      first--;
    }
  Gptd__LogEntries entries = GPTD__LOG_ENTRIES__INIT;
  entries.events = (Gptd__Event **) events->pdata + first;
  entries.n_events = events->len - first;
  Gptd__Response resp = GPTD__RESPONSE__INIT;
  resp.id = req->id;
  resp.body_case = GPTD__RESPONSE__BODY_LOGS;
  resp.logs = &entries;
  conn_send (c, &resp);
}

static void
request_cancel (Conn *c, const Gptd__Request *req)
{
  GptdRun *run = lookup_run (c, req->id, req->cancel->run_id);
  if (run == NULL)
    return;
  if (gptd__run_is_finished (run))
    {
      conn_send_error (c, req->id, GPTD__ERROR_CODE__ERROR_CODE_BAD_STATE,
                       "Run %s has already ended (%s)", run->id,
                       gptd_run_state_to_string (run->state));
      return;
    }
  g_message ("run %s: cancel asked by pid %d uid %u", run->id, (int) c->pid, (unsigned) c->uid);
  run->cancel_requested = TRUE;
  if (run->resume_pending)
    {
      /* Resumed, but its new worker has not started yet: it never will. */
      run->resume_pending = FALSE;
      gptd__run_finish (run, GPTD__RUN_STATE__RUN_STATE_CANCELLED, NULL, NULL);
    }
  else if (run->worker != NULL)
    gptd__worker_kill (run->worker, SIGTERM);
  else
    gptd__run_finish (run, GPTD__RUN_STATE__RUN_STATE_CANCELLED, NULL, NULL);
  conn_send_run (c, req->id, run, FALSE);
}

static void
request_resume (Conn *c, const Gptd__Request *req)
{
  Server *s = c->server;
  GptdRun *run = lookup_run (c, req->id, req->resume->run_id);
  if (run == NULL)
    return;
  if (s->stopping)
    {
      conn_send_error (c, req->id, GPTD__ERROR_CODE__ERROR_CODE_SHUTTING_DOWN,
                       "gptd is stopping and resumes no run");
      return;
    }
  if (!gptd__run_is_finished (run))
    {
      conn_send_error (c, req->id, GPTD__ERROR_CODE__ERROR_CODE_BAD_STATE,
                       "Run %s is %s; only a run that failed, was cancelled or was "
                       "interrupted can be resumed", run->id,
                       gptd_run_state_to_string (run->state));
      return;
    }
  if (run->state == GPTD__RUN_STATE__RUN_STATE_SUCCEEDED)
    {
      conn_send_error (c, req->id, GPTD__ERROR_CODE__ERROR_CODE_BAD_STATE,
                       "Run %s has succeeded; there is nothing to resume", run->id);
      return;
    }
  g_message ("run %s: resume asked by pid %d uid %u (it was %s)", run->id, (int) c->pid,
             (unsigned) c->uid, gptd_run_state_to_string (run->state));
  gptd__run_reopen (run, NULL);
  run->cancel_requested = FALSE;
  if (run->worker != NULL)
    {
      /* Its previous worker has reported the end but not exited yet: the new
       * one starts when it has (server_on_worker_exit). */
      run->resume_pending = TRUE;
      conn_send_run (c, req->id, run, FALSE);
      return;
    }
  g_autoptr (GError) error = NULL;
  if (!server_start_worker (s, run, TRUE, &error))
    {
      g_warning ("run %s: %s", run->id, error->message);
      gptd__run_finish (run, GPTD__RUN_STATE__RUN_STATE_FAILED, NULL, error->message);
      conn_send_error (c, req->id, GPTD__ERROR_CODE__ERROR_CODE_INTERNAL, "run %s: %s",
                       run->id, error->message);
      return;
    }
  conn_send_run (c, req->id, run, FALSE);
}

static void
request_plugins (Conn *c, const Gptd__Request *req)
{
  const char *type = req->plugins->stage_type;
  g_autoptr (GError) error = NULL;
  Gptd__PluginList *list = gptd_registry_to_plugin_list (c->server->registry,
                                                          type && *type ? type : NULL, &error);
  if (list == NULL)
    {
      conn_send_error (c, req->id, GPTD__ERROR_CODE__ERROR_CODE_NOT_FOUND, "%s", error->message);
      return;
    }
  Gptd__Response resp = GPTD__RESPONSE__INIT;
  resp.id = req->id;
  resp.body_case = GPTD__RESPONSE__BODY_PLUGINS;
  resp.plugins = list;
  conn_send (c, &resp);
  gptd_plugin_list_free (list);
}

static void
request_ping (Conn *c, const Gptd__Request *req)
{
  conn_send_ok (c, req->id);
}

static void
request_generate (Conn *c, const Gptd__Request *req)
{
  Server *s = c->server;
  const Gptd__GenerateRequest *gr = req->generate;
  if (s->stopping)
    {
      conn_send_error (c, req->id, GPTD__ERROR_CODE__ERROR_CODE_SHUTTING_DOWN,
                       "gptd is stopping and starts no generation");
      return;
    }
  if (gr->model == NULL || !*gr->model)
    {
      conn_send_error (c, req->id, GPTD__ERROR_CODE__ERROR_CODE_BAD_REQUEST,
                       "The generate request names no model directory");
      return;
    }
  if (!g_path_is_absolute (gr->model))
    {
      conn_send_error (c, req->id, GPTD__ERROR_CODE__ERROR_CODE_BAD_REQUEST,
                       "The model directory must be an absolute path, not %s", gr->model);
      return;
    }
  if (gr->prompt == NULL || !*gr->prompt)
    {
      conn_send_error (c, req->id, GPTD__ERROR_CODE__ERROR_CODE_BAD_REQUEST,
                       "The prompt is empty: generation needs at least one token");
      return;
    }
  if (gr->max_new_tokens > GEN_MAX_NEW_TOKENS || gr->top_k > G_MAXINT32)
    {
      conn_send_error (c, req->id, GPTD__ERROR_CODE__ERROR_CODE_BAD_REQUEST,
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
      conn_send_error (c, req->id, GPTD__ERROR_CODE__ERROR_CODE_BAD_REQUEST,
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

static void
request_unsupported (Conn *c, const Gptd__Request *req)
{
  const ProtobufCFieldDescriptor *f =
    protobuf_c_message_descriptor_get_field (&gptd__request__descriptor, req->body_case);
  conn_send_error (c, req->id, GPTD__ERROR_CODE__ERROR_CODE_UNSUPPORTED,
                   "This gptd does not support the '%s' request yet", f ? f->name : "?");
}

typedef void (*RequestFunc) (Conn *c, const Gptd__Request *req);

/* One line per request type: the body it carries and the function answering it. */
static const struct {
  Gptd__Request__BodyCase body;
  RequestFunc func;
} request_table[] = {
  { GPTD__REQUEST__BODY_RUN, request_run },
  { GPTD__REQUEST__BODY_VALIDATE, request_validate },
  { GPTD__REQUEST__BODY_PS, request_ps },
  { GPTD__REQUEST__BODY_STATUS, request_status },
  { GPTD__REQUEST__BODY_WATCH, request_watch },
  { GPTD__REQUEST__BODY_LOGS, request_logs },
  { GPTD__REQUEST__BODY_CANCEL, request_cancel },
  { GPTD__REQUEST__BODY_PLUGINS, request_plugins },
  { GPTD__REQUEST__BODY_RESUME, request_resume },
  { GPTD__REQUEST__BODY_PAUSE, request_unsupported },
  { GPTD__REQUEST__BODY_GENERATE, request_generate },
  { GPTD__REQUEST__BODY_PING, request_ping },
};

static void
conn_dispatch (Conn *c, const Gptd__Request *req)
{
  for (gsize i = 0; i < G_N_ELEMENTS (request_table); i++)
    if (request_table[i].body == req->body_case)
      {
        request_table[i].func (c, req);
        return;
      }
  conn_send_error (c, req->id, GPTD__ERROR_CODE__ERROR_CODE_BAD_REQUEST,
                   "The request has no body this gptd knows");
}

/* ---- Connections -------------------------------------------------------------- */

static void
conn_handle_closed (uv_handle_t *handle)
{
  Conn *c = handle->data;
  if (--c->open_handles > 0)
    return;
  gptd_frame_decoder_free (c->dec);
  g_free (c);
}

static void
conn_close (Conn *c)
{
  if (c->closing)
    return;
  c->closing = TRUE;
  conn_unwatch (c);
  conn_cancel_generations (c);
  conn_forget_checks (c);
  c->server->conns = g_list_remove (c->server->conns, c);
  g_debug ("connection %u closed", c->id);
  uv_close ((uv_handle_t *) &c->pipe, conn_handle_closed);
  uv_close ((uv_handle_t *) &c->drain_timer, conn_handle_closed);
}

static void
conn_alloc (uv_handle_t *handle, size_t suggested, uv_buf_t *buf)
{
  buf->base = g_malloc (65536);
  buf->len = 65536;
}

static void
conn_read (uv_stream_t *stream, ssize_t nread, const uv_buf_t *buf)
{
  Conn *c = stream->data;
  if (nread > 0 && !c->draining)
    gptd_frame_decoder_feed (c->dec, buf->base, (gsize) nread);
  g_free (buf->base);

  while (nread > 0 && !c->closing && !c->draining)
    {
      g_autoptr (GBytes) payload = NULL;
      g_autoptr (GError) error = NULL;
      GptdFrameStatus st = gptd_frame_decoder_next (c->dec, &payload, &error);
      if (st == GPTD_FRAME_NEED_MORE)
        break;
      if (st == GPTD_FRAME_FAILED)
        {
          g_message ("connection %u (pid %d): %s; closing it", c->id, (int) c->pid,
                     error->message);
          conn_send_error (c, 0, GPTD__ERROR_CODE__ERROR_CODE_FRAME_TOO_LARGE, "%s",
                           error->message);
          conn_drain (c);
          return;
        }
      gsize n;
      const guint8 *p = g_bytes_get_data (payload, &n);
      Gptd__Request *req =
        (Gptd__Request *) gptd_frame_unpack (&gptd__request__descriptor, p, n, &error);
      if (req == NULL)
        {
          g_message ("connection %u (pid %d): %s; closing it", c->id, (int) c->pid,
                     error->message);
          conn_send_error (c, 0, GPTD__ERROR_CODE__ERROR_CODE_MALFORMED, "%s", error->message);
          conn_drain (c);
          return;
        }
      conn_dispatch (c, req);
      protobuf_c_message_free_unpacked (&req->base, NULL);
    }

  if (nread < 0)
    {
      if (nread != UV_EOF)
        g_debug ("connection %u: %s", c->id, uv_strerror ((int) nread));
      /* The client has hung up (or says it is done): it is closed once the
       * answers already queued are out. */
      conn_unwatch (c);
      conn_drain (c);
    }
}

static void
server_on_connection (uv_stream_t *listener, int status)
{
  Server *s = listener->data;
  if (status < 0)
    {
      g_warning ("Accepting a connection failed: %s", uv_strerror (status));
      return;
    }
  Conn *c = g_new0 (Conn, 1);
  c->server = s;
  c->id = ++s->next_conn_id;
  c->dec = gptd_frame_decoder_new (0);
  uv_pipe_init (&s->loop, &c->pipe, 0);
  uv_timer_init (&s->loop, &c->drain_timer);
  c->pipe.data = c;
  c->drain_timer.data = c;
  c->open_handles = 2;
  s->conns = g_list_prepend (s->conns, c);
  int r = uv_accept (listener, (uv_stream_t *) &c->pipe);
  if (r != 0)
    {
      g_warning ("Accepting a connection failed: %s", uv_strerror (r));
      conn_close (c);
      return;
    }
  uv_os_fd_t fd;
  struct ucred cred = { 0 };
  socklen_t len = sizeof cred;
  if (uv_fileno ((uv_handle_t *) &c->pipe, &fd) == 0
      && getsockopt (fd, SOL_SOCKET, SO_PEERCRED, &cred, &len) == 0)
    {
      c->pid = cred.pid;
      c->uid = cred.uid;
      c->gid = cred.gid;
    }
  g_info ("connection %u from pid %d uid %u gid %u", c->id, (int) c->pid, (unsigned) c->uid,
          (unsigned) c->gid);
  if (s->stopping)
    {
      conn_close (c);
      return;
    }
  uv_read_start ((uv_stream_t *) &c->pipe, conn_alloc, conn_read);
}

/* ---- The socket --------------------------------------------------------------- */

/* Removes a socket file left by a daemon that died; refuses a live one. */
static gboolean
check_existing_socket (const char *path, GError **error)
{
  struct stat st;
  if (lstat (path, &st) != 0)
    return TRUE;
  if (!S_ISSOCK (st.st_mode))
    {
      g_set_error (error, G_FILE_ERROR, G_FILE_ERROR_EXIST,
                   "%s exists and is not a socket; remove it or choose another --socket", path);
      return FALSE;
    }
  struct sockaddr_un addr = { .sun_family = AF_UNIX };
  g_strlcpy (addr.sun_path, path, sizeof addr.sun_path);
  int fd = socket (AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0)
    {
      g_set_error (error, G_FILE_ERROR, g_file_error_from_errno (errno), "socket(): %s",
                   g_strerror (errno));
      return FALSE;
    }
  int r = connect (fd, (struct sockaddr *) &addr, sizeof addr);
  int saved = errno;
  close (fd);
  if (r == 0)
    {
      g_set_error (error, G_FILE_ERROR, G_FILE_ERROR_EXIST,
                   "Another gptd is already running at %s; stop it first, or give this "
                   "one another --socket", path);
      return FALSE;
    }
  if (saved != ECONNREFUSED)
    {
      g_set_error (error, G_FILE_ERROR, g_file_error_from_errno (saved),
                   "Cannot check the existing socket %s: %s", path, g_strerror (saved));
      return FALSE;
    }
  g_message ("Removing the stale socket %s left by a gptd that is no longer running", path);
  if (g_unlink (path) != 0 && errno != ENOENT)
    {
      saved = errno;
      g_set_error (error, G_FILE_ERROR, g_file_error_from_errno (saved),
                   "Cannot remove the stale socket %s: %s", path, g_strerror (saved));
      return FALSE;
    }
  return TRUE;
}

/* Takes the listening socket systemd passed (socket activation: gptd.socket), when
 * there is one. Returns FALSE with @error for a passed descriptor gptd cannot use;
 * TRUE otherwise, with s->activated telling whether a socket was taken. */
static gboolean
server_listen_activated (Server *s, GError **error)
{
#ifdef HAVE_SYSTEMD
  int n = sd_listen_fds (1);
  if (n <= 0)
    return TRUE;
  if (n > 1 || sd_is_socket_unix (SD_LISTEN_FDS_START, SOCK_STREAM, 1, NULL, 0) <= 0)
    {
      g_set_error (error, G_FILE_ERROR, G_FILE_ERROR_INVAL,
                   "systemd passed %d socket(s); gptd takes one listening Unix stream "
                   "socket (ListenStream= with a path in gptd.socket)", n);
      return FALSE;
    }
  struct sockaddr_un addr = { 0 };
  socklen_t len = sizeof addr;
  if (getsockname (SD_LISTEN_FDS_START, (struct sockaddr *) &addr, &len) == 0
      && len > offsetof (struct sockaddr_un, sun_path) && addr.sun_path[0] != '\0')
    {
      g_free (s->socket_path);
      s->socket_path = g_strndup (addr.sun_path, len - offsetof (struct sockaddr_un, sun_path));
    }
  uv_pipe_init (&s->loop, &s->listener, 0);
  s->listener.data = s;
  s->listening = TRUE;
  s->activated = TRUE;
  int r = uv_pipe_open (&s->listener, SD_LISTEN_FDS_START);
  if (r == 0)
    r = uv_listen ((uv_stream_t *) &s->listener, 128, server_on_connection);
  if (r != 0)
    {
      g_set_error (error, G_FILE_ERROR, G_FILE_ERROR_FAILED,
                   "Cannot listen on the socket systemd passed (%s): %s", s->socket_path,
                   uv_strerror (r));
      return FALSE;
    }
  g_message ("Listening on %s, passed by systemd", s->socket_path);
#else
  (void) s;
  (void) error;
#endif
  return TRUE;
}

static gboolean
server_listen (Server *s, GError **error)
{
  if (!server_listen_activated (s, error))
    return FALSE;
  if (s->activated)
    return TRUE;
  if (strlen (s->socket_path) >= sizeof (((struct sockaddr_un *) NULL)->sun_path))
    {
      g_set_error (error, G_FILE_ERROR, G_FILE_ERROR_NAMETOOLONG,
                   "The socket path %s is too long for a Unix socket", s->socket_path);
      return FALSE;
    }
  g_autofree char *dir = g_path_get_dirname (s->socket_path);
  if (g_mkdir_with_parents (dir, 0750) != 0)
    {
      int saved = errno;
      g_set_error (error, G_FILE_ERROR, g_file_error_from_errno (saved),
                   "Cannot create the socket directory %s: %s", dir, g_strerror (saved));
      return FALSE;
    }
  if (!check_existing_socket (s->socket_path, error))
    return FALSE;

  uv_pipe_init (&s->loop, &s->listener, 0);
  s->listener.data = s;
  s->listening = TRUE;
  /* Created 0660 (owner and group, e.g. group gptd) with no window where it is
   * more open than that. */
  mode_t old = umask (0117);
  int r = uv_pipe_bind (&s->listener, s->socket_path);
  umask (old);
  if (r == 0)
    r = uv_listen ((uv_stream_t *) &s->listener, 128, server_on_connection);
  if (r != 0)
    {
      g_set_error (error, G_FILE_ERROR, G_FILE_ERROR_FAILED, "Cannot listen on %s: %s",
                   s->socket_path, uv_strerror (r));
      return FALSE;
    }
  if (chmod (s->socket_path, 0660) != 0)
    g_warning ("Cannot chmod %s: %s", s->socket_path, g_strerror (errno));
  return TRUE;
}

/* ---- Stopping and signals ----------------------------------------------------- */

static void
server_close_listener (Server *s)
{
  if (!s->listening)
    return;
  s->listening = FALSE;
  uv_close ((uv_handle_t *) &s->listener, NULL);
  if (!s->activated && g_unlink (s->socket_path) != 0 && errno != ENOENT)
    g_warning ("Cannot remove the socket %s: %s", s->socket_path, g_strerror (errno));
}

static void
server_kill_workers (Server *s, int signum)
{
  g_autoptr (GPtrArray) runs = gptd__run_table_list (s->runs);
  for (guint i = 0; i < runs->len; i++)
    {
      GptdRun *run = runs->pdata[i];
      if (run->worker != NULL)
        gptd__worker_kill (run->worker, signum);
    }
}

static void
server_on_stop_timeout (uv_timer_t *timer)
{
  Server *s = timer->data;
  g_warning ("%u worker(s) did not stop within %u ms; killing them", s->n_workers,
             s->stop_timeout_ms);
  s->killed_workers = TRUE;
  server_kill_workers (s, SIGKILL);
}

/* Everything has stopped: close the remaining handles so the loop ends. */
static void
server_finish_stop (Server *s)
{
  if (s->finished)
    return;
  s->finished = TRUE;
  uv_timer_stop (&s->stop_timer);
  uv_close ((uv_handle_t *) &s->stop_timer, NULL);
  uv_close ((uv_handle_t *) &s->watchdog, NULL);
  uv_close ((uv_handle_t *) &s->sig_term, NULL);
  uv_close ((uv_handle_t *) &s->sig_int, NULL);
  uv_close ((uv_handle_t *) &s->sig_hup, NULL);
  /* No generation is left to post to it (server_maybe_finish_stop). */
  uv_close ((uv_handle_t *) &s->gen_async, NULL);
  /* No pipeline is being loaded either. */
  uv_close ((uv_handle_t *) &s->check_async, NULL);
  /* Each connection is closed once its last answers are out (a few seconds at
   * most). */
  for (GList *l = s->conns; l != NULL;)
    {
      Conn *c = l->data;
      l = l->next;
      conn_unwatch (c);
      conn_drain (c);
    }
}

static void
server_begin_stop (Server *s, int signum)
{
  if (s->stopping)
    {
      if (!s->killed_workers && s->n_workers > 0)
        {
          g_message ("%s again: killing %u worker(s) now", g_strsignal (signum), s->n_workers);
          s->killed_workers = TRUE;
          server_kill_workers (s, SIGKILL);
        }
      return;
    }
  s->stopping = TRUE;
  g_message ("%s received: stopping (%u run(s) and %u generation(s) to stop)",
             g_strsignal (signum), s->n_workers, s->n_gen_jobs);
#ifdef HAVE_SYSTEMD
  sd_notify (0, "STOPPING=1");
#endif
  server_close_listener (s);
  /* Generations end at their next token, telling their clients they were
   * cancelled. */
  server_cancel_generations (s);
  if (s->n_workers == 0)
    {
      server_maybe_finish_stop (s);
      return;
    }
  server_kill_workers (s, SIGTERM);
  uv_timer_start (&s->stop_timer, server_on_stop_timeout, s->stop_timeout_ms, 0);
}

/* ---- Probing the plugins ------------------------------------------------------ */

/* Loading a plugin runs its code (constructors, and whatever the loader reaches
 * through its descriptor), and a plugin that crashes there would take the daemon
 * down with it, at start or on SIGHUP, and every worker after it. So before the
 * daemon loads the plugins itself it has a child do it first: gptd re-executed as
 * `gptd --probe-plugins`, which names each file before and after loading it. When
 * the child dies (a signal, an exit, or no "done" line) or hangs past
 * PROBE_TIMEOUT_S, the file it was loading is added to GPTD_PLUGIN_EXCLUDE in the
 * daemon's own environment, so that the daemon's scan and every worker it starts
 * skip it, and the probe runs again, PROBE_MAX_ATTEMPTS times at most.
 *
 * The probe is synchronous: it runs at start, before the loop turns, and on
 * SIGHUP, an operator's request that is rare. Loading the plugins takes a fraction
 * of a second, which the loop can afford to stand still for; only a plugin that
 * hangs while loading holds it up to PROBE_TIMEOUT_S (each attempt). */

#define PROBE_TIMEOUT_S 10
#define PROBE_MAX_ATTEMPTS 16

/* GPTD_PLUGIN_EXCLUDE as the daemon was started with it: each round of probes
 * starts again from it, so that a plugin fixed since it crashed is loaded on
 * the next SIGHUP. */
static char *probe_user_exclude;
static gboolean probe_user_exclude_known;

typedef enum {
  PROBE_OK,          /* every plugin loaded or was skipped with a reason */
  PROBE_CULPRIT,     /* the child died or hung while loading *culprit */
  PROBE_UNKNOWN,     /* the child died or could not start, and names no file */
} ProbeResult;

/* Reads the probe's report: the file being loaded when it ended, if any, and
 * whether it said "done". */
static void
probe_parse (const char *out, char **culprit, gboolean *done)
{
  g_auto (GStrv) lines = g_strsplit (out, "\n", -1);
  g_autofree char *loading = NULL;
  guint n = g_strv_length (lines);
  *done = FALSE;
  /* The last element is what followed the last newline: a line cut short. */
  for (guint i = 0; i + 1 < n; i++)
    {
      const char *l = lines[i];
      if (g_str_has_prefix (l, "loading "))
        {
          g_free (loading);
          loading = g_strdup (l + strlen ("loading "));
        }
      else if (loading && g_str_has_prefix (l, "loaded ") &&
               strcmp (l + strlen ("loaded "), loading) == 0)
        g_clear_pointer (&loading, g_free);
      else if (loading && g_str_has_prefix (l, "failed ") &&
               g_str_has_prefix (l + strlen ("failed "), loading) &&
               g_str_has_prefix (l + strlen ("failed ") + strlen (loading), ": "))
        g_clear_pointer (&loading, g_free);
      else if (strcmp (l, "done") == 0)
        *done = TRUE;
    }
  *culprit = g_steal_pointer (&loading);
}

/* Runs one probe. *how says what happened to the child, e.g. "crashed while
 * loading (signal 11, Segmentation fault)"; on PROBE_CULPRIT, *culprit is the file
 * it was loading. */
static ProbeResult
probe_once (char **culprit, char **how)
{
  char *argv[] = { (char *) "/proc/self/exe", (char *) "--probe-plugins", NULL };
  GPid pid;
  int out_fd = -1;
  g_autoptr (GError) error = NULL;
  *culprit = NULL;
  *how = NULL;
  /* The daemon's environment, GPTD_PLUGIN_EXCLUDE included; its stderr is the
   * daemon's, so what a plugin prints there lands in the daemon's log. */
  if (!g_spawn_async_with_pipes (NULL, argv, NULL, G_SPAWN_DO_NOT_REAP_CHILD, NULL, NULL,
                                 &pid, NULL, &out_fd, NULL, &error))
    {
      *how = g_strdup_printf ("could not be started: %s", error->message);
      return PROBE_UNKNOWN;
    }

  g_autoptr (GString) out = g_string_new (NULL);
  gint64 deadline = g_get_monotonic_time () + (gint64) PROBE_TIMEOUT_S * G_USEC_PER_SEC;
  gboolean timed_out = FALSE, eof = FALSE;
  int wstatus = 0;
  for (;;)
    {
      gint64 left_ms = (deadline - g_get_monotonic_time ()) / 1000;
      if (left_ms <= 0)
        {
          timed_out = TRUE;
          break;
        }
      if (eof)
        {
          pid_t r = waitpid (pid, &wstatus, WNOHANG);
          if (r == pid)
            break;
          if (r < 0 && errno != EINTR)
            {
              wstatus = 0;
              break;
            }
          g_usleep (10 * 1000);
          continue;
        }
      struct pollfd pfd = { .fd = out_fd, .events = POLLIN };
      int r = poll (&pfd, 1, (int) MIN (left_ms, 1000));
      if (r < 0 && errno != EINTR)
        eof = TRUE;
      else if (r > 0)
        {
          char buf[4096];
          ssize_t got = read (out_fd, buf, sizeof buf);
          if (got > 0)
            g_string_append_len (out, buf, got);
          else if (got == 0 || errno != EINTR)
            eof = TRUE;
        }
    }
  close (out_fd);
  if (timed_out)
    {
      kill (pid, SIGKILL);
      while (waitpid (pid, &wstatus, 0) < 0 && errno == EINTR)
        ;
    }
  g_spawn_close_pid (pid);

  gboolean done;
  probe_parse (out->str, culprit, &done);
  /* Once the probe said "done" every plugin is loaded: how it ends after that
   * (a leak checker's exit status, say) is not the loading's doing. */
  if (done && *culprit == NULL && !timed_out)
    return PROBE_OK;
  if (timed_out)
    *how = g_strdup_printf ("did not finish loading within %d s", PROBE_TIMEOUT_S);
  else if (WIFSIGNALED (wstatus))
    *how = g_strdup_printf ("crashed while loading (signal %d, %s)", WTERMSIG (wstatus),
                            g_strsignal (WTERMSIG (wstatus)));
  else if (WIFEXITED (wstatus) && WEXITSTATUS (wstatus) != 0)
    *how = g_strdup_printf ("crashed while loading (exit status %d)", WEXITSTATUS (wstatus));
  else if (!done)
    *how = g_strdup ("ended the process while loading (exit status 0)");
  else
    {
      g_clear_pointer (culprit, g_free);
      return PROBE_OK;
    }
  return *culprit ? PROBE_CULPRIT : PROBE_UNKNOWN;
}

/* Probes the plugins until they load without killing the probe, excluding each
 * file that did (see above). */
static void
server_probe_plugins (void)
{
  if (!probe_user_exclude_known)
    {
      probe_user_exclude = g_strdup (g_getenv (GPTD_PLUGIN_EXCLUDE_ENV));
      probe_user_exclude_known = TRUE;
    }
  g_autoptr (GString) exclude = g_string_new (probe_user_exclude);
  /* Keep the environment as it is when nothing changes: threads may read it. */
  if (g_strcmp0 (g_getenv (GPTD_PLUGIN_EXCLUDE_ENV), probe_user_exclude) != 0)
    {
      if (probe_user_exclude)
        g_setenv (GPTD_PLUGIN_EXCLUDE_ENV, probe_user_exclude, TRUE);
      else
        g_unsetenv (GPTD_PLUGIN_EXCLUDE_ENV);
    }

  g_autoptr (GHashTable) excluded = g_hash_table_new_full (g_str_hash, g_str_equal, g_free,
                                                           NULL);
  for (guint attempt = 0; attempt < PROBE_MAX_ATTEMPTS; attempt++)
    {
      g_autofree char *culprit = NULL, *how = NULL;
      ProbeResult r = probe_once (&culprit, &how);
      if (r == PROBE_OK)
        return;
      if (r == PROBE_UNKNOWN)
        {
          g_warning ("Probing the plugins failed without naming a plugin (the probe %s); "
                     "loading them all", how);
          return;
        }
      if (strstr (culprit, G_SEARCHPATH_SEPARATOR_S) != NULL)
        {
          g_warning ("plugin %s %s, and cannot be listed in %s (its name holds a "
                     "'%s'); loading it anyway",
                     culprit, how, GPTD_PLUGIN_EXCLUDE_ENV, G_SEARCHPATH_SEPARATOR_S);
          return;
        }
      /* Listed as an absolute path, since workers start in their run directory. */
      g_autofree char *abs = g_canonicalize_filename (culprit, NULL);
      if (g_hash_table_contains (excluded, abs))
        {
          g_warning ("plugin %s %s although it is listed in %s; giving up probing",
                     culprit, how, GPTD_PLUGIN_EXCLUDE_ENV);
          return;
        }
      g_warning ("plugin %s %s: skipped", culprit, how);
      g_hash_table_add (excluded, g_strdup (abs));
      if (exclude->len > 0)
        g_string_append (exclude, G_SEARCHPATH_SEPARATOR_S);
      g_string_append (exclude, abs);
      g_setenv (GPTD_PLUGIN_EXCLUDE_ENV, exclude->str, TRUE);
    }
  g_warning ("Plugins still crash after %d probes; loading the rest without probing",
             PROBE_MAX_ATTEMPTS);
}

/* A registry of the plugins, probed first. */
static GptdRegistry *
server_load_registry (GError **error)
{
  server_probe_plugins ();
  g_autoptr (GptdRegistry) registry = gptd_registry_new ();
  if (!gptd_registry_scan (registry, error))
    return NULL;
  /* What the scan skipped or rejected goes to the log too, not only to
   * `gptctl plugins`. */
  GPtrArray *warnings = gptd_registry_get_warnings (registry);
  for (guint i = 0; warnings != NULL && i < warnings->len; i++)
    g_warning ("Plugin skipped: %s", (const char *) warnings->pdata[i]);
  return g_steal_pointer (&registry);
}

/* SIGHUP: reads the configuration file again. What can change while the daemon
 * runs takes effect; the rest is logged as waiting for a restart. A file that no
 * longer loads leaves the old settings in force. */
static void
server_reload_config (Server *s)
{
  if (s->config_path == NULL)
    return;
  g_autoptr (GError) error = NULL;
  GptdDaemonConfig fresh;
  if (!gptd__config_load (s->config_path, s->config_optional, &fresh, &error))
    {
      g_warning ("Reloading the configuration failed, keeping the old one: %s",
                 error->message);
      return;
    }
  gptd__config_overlay (&fresh, &s->cmdline);
  g_autoptr (GPtrArray) changes = g_ptr_array_new_with_free_func (g_free);
  gptd__config_diff (&s->config, &fresh, changes);
  if (changes->len == 0)
    g_message ("Configuration %s reloaded: nothing changed", s->config_path);
  for (guint i = 0; i < changes->len; i++)
    {
      const char *change = changes->pdata[i];
      gboolean live = !g_str_has_prefix (change, "socket:")
                      && !g_str_has_prefix (change, "state-dir:")
                      && !g_str_has_prefix (change, "generate-threads:");
      g_message ("Configuration %s reloaded: %s%s", s->config_path, change,
                 live ? "" : " (takes effect when gptd restarts)");
    }
  if (fresh.has_stop_timeout_s)
    s->stop_timeout_ms = (guint) fresh.stop_timeout_s * 1000;
  if (fresh.has_client_queue_limit)
    s->queue_limit = (gsize) fresh.client_queue_limit;
  if (fresh.has_model_cache && s->gen_cache != NULL)
    {
      g_mutex_lock (&s->gen_cache->lock);
      s->gen_cache->capacity = (guint) fresh.model_cache;
      gen_cache_evict (s->gen_cache);
      g_mutex_unlock (&s->gen_cache->lock);
    }
  g_log_set_debug_enabled (fresh.has_log_level && strcmp (fresh.log_level, "debug") == 0);
  if (fresh.has_data_dir)
    g_setenv ("GPTD_DATA_DIR", fresh.data_dir, TRUE);
  /* Settings that wait for a restart keep their value in force meanwhile. */
  g_free (fresh.socket_path);
  fresh.socket_path = g_strdup (s->config.socket_path);
  fresh.has_socket_path = s->config.has_socket_path;
  g_free (fresh.state_dir);
  fresh.state_dir = g_strdup (s->config.state_dir);
  fresh.has_state_dir = s->config.has_state_dir;
  fresh.generate_threads = s->config.generate_threads;
  fresh.has_generate_threads = s->config.has_generate_threads;
  gptd__config_clear (&s->config);
  s->config = fresh;
}

static void
server_on_signal (uv_signal_t *handle, int signum)
{
  Server *s = handle->data;
  if (signum == SIGHUP)
    {
      server_reload_config (s);
      g_message ("SIGHUP received: rescanning the plugins");
      g_autoptr (GError) error = NULL;
      g_autoptr (GptdRegistry) registry = server_load_registry (&error);
      if (registry == NULL)
        {
          g_warning ("Rescanning the plugins failed, keeping the old ones: %s", error->message);
          return;
        }
      g_autoptr (GPtrArray) types = gptd_registry_list (registry);
      g_message ("%u stage type(s) loaded", types->len);
      GptdRegistry *old = s->registry;
      s->registry = g_steal_pointer (&registry);
      gptd_registry_free (old);
      return;
    }
  server_begin_stop (s, signum);
}

/* ---- Main --------------------------------------------------------------------- */

#ifdef HAVE_SYSTEMD
static void
server_on_watchdog (uv_timer_t *timer)
{
  sd_notify (0, "WATCHDOG=1");
}
#endif

int
gptd__server_main (const GptdServerOptions *options)
{
  Server s = { 0 };
  s.socket_path = g_strdup (options->socket_path);
  s.stop_timeout_ms = options->stop_timeout_ms;
  s.queue_limit = options->client_queue_limit;
  s.config_path = g_strdup (options->config_path);
  s.config_optional = options->config_optional;
  if (options->cmdline != NULL)
    gptd__config_copy (&s.cmdline, options->cmdline);
  if (options->config != NULL)
    gptd__config_copy (&s.config, options->config);
  g_autoptr (GError) error = NULL;

  signal (SIGPIPE, SIG_IGN);

  s.runs = gptd__run_table_open (options->state_dir, &error);
  if (s.runs == NULL)
    {
      g_printerr ("gptd: %s\n", error->message);
      g_free (s.socket_path);
      return 1;
    }
  gptd__run_table_set_event_func (s.runs, server_on_run_event, &s);

  s.registry = server_load_registry (&error);
  if (s.registry == NULL)
    {
      g_printerr ("gptd: %s\n", error->message);
      gptd__run_table_free (s.runs);
      g_free (s.socket_path);
      return 1;
    }

  uv_loop_init (&s.loop);
  int status = 0;
  if (!server_listen (&s, &error))
    {
      g_printerr ("gptd: %s\n", error->message);
      if (s.listening)
        uv_close ((uv_handle_t *) &s.listener, NULL);
      s.listening = FALSE;
      uv_run (&s.loop, UV_RUN_DEFAULT);
      status = 1;
      goto out;
    }

  uv_signal_init (&s.loop, &s.sig_term);
  uv_signal_init (&s.loop, &s.sig_int);
  uv_signal_init (&s.loop, &s.sig_hup);
  uv_timer_init (&s.loop, &s.stop_timer);
  uv_timer_init (&s.loop, &s.watchdog);
  s.sig_term.data = s.sig_int.data = s.sig_hup.data = s.stop_timer.data = &s;
  uv_signal_start (&s.sig_term, server_on_signal, SIGTERM);
  uv_signal_start (&s.sig_int, server_on_signal, SIGINT);
  uv_signal_start (&s.sig_hup, server_on_signal, SIGHUP);

  /* Generation: the model cache and the pool of generation threads. */
  {
    guint cache_size = options->model_cache, threads = options->generate_threads;
    const char *env;
    if (cache_size == 0 && (env = g_getenv ("GPTD_MODEL_CACHE")) != NULL && atoi (env) > 0)
      cache_size = (guint) atoi (env);
    if (threads == 0 && (env = g_getenv ("GPTD_GENERATE_THREADS")) != NULL && atoi (env) > 0)
      threads = (guint) atoi (env);
    if (cache_size == 0)
      cache_size = GPTD_SERVER_DEFAULT_MODEL_CACHE;
    if (threads == 0)
      threads = GPTD_SERVER_DEFAULT_GENERATE_THREADS;
    s.gen_cache = gen_cache_new (cache_size);
    g_mutex_init (&s.gen_out_lock);
    g_queue_init (&s.gen_out);
    uv_async_init (&s.loop, &s.gen_async, server_on_gen_wakeup);
    s.gen_async.data = &s;
    s.gen_pool = g_thread_pool_new (gen_job_run, &s, (gint) threads, FALSE, NULL);
    g_message ("generate: up to %u request(s) at once, up to %u model(s) kept loaded", threads,
               cache_size);
  }

  /* Loading submitted pipelines. */
  g_mutex_init (&s.check_out_lock);
  g_queue_init (&s.check_out);
  uv_async_init (&s.loop, &s.check_async, server_on_check_wakeup);
  s.check_async.data = &s;
  s.check_pool = g_thread_pool_new (check_job_run, &s, CHECK_THREADS, FALSE, NULL);

  {
    g_autoptr (GPtrArray) types = gptd_registry_list (s.registry);
    g_autoptr (GPtrArray) runs = gptd__run_table_list (s.runs);
    g_message ("gptd %s listening on %s (state in %s, %u stage type(s), %u run(s) on record)",
               PACKAGE_VERSION, s.socket_path, options->state_dir, types->len, runs->len);
  }
#ifdef HAVE_SYSTEMD
  sd_notifyf (0, "READY=1\nSTATUS=Listening on %s; 0 run(s) running\nMAINPID=%lu",
              s.socket_path, (unsigned long) getpid ());
  /* With WatchdogSec= set, ping at half the interval: a loop that stops turning
   * gets the daemon restarted. */
  uint64_t watchdog_usec = 0;
  if (sd_watchdog_enabled (0, &watchdog_usec) > 0 && watchdog_usec >= 2000)
    uv_timer_start (&s.watchdog, server_on_watchdog, watchdog_usec / 2000,
                    watchdog_usec / 2000);
#endif

  uv_run (&s.loop, UV_RUN_DEFAULT);
  g_message ("gptd stopped");

out:
  if (s.check_pool != NULL)
    {
      /* Every check has been answered (the loop waited for them). */
      g_thread_pool_free (s.check_pool, TRUE, TRUE);
      g_mutex_clear (&s.check_out_lock);
    }
  if (s.gen_pool != NULL)
    {
      /* Every generation has ended (the loop waited for them): the threads are
       * idle and are joined here. */
      g_thread_pool_free (s.gen_pool, TRUE, TRUE);
      g_mutex_clear (&s.gen_out_lock);
    }
  gen_cache_free (s.gen_cache);
  {
    int r = uv_loop_close (&s.loop);
    if (r != 0)
      {
        g_warning ("The event loop still had handles open when it ended");
        status = 1;
      }
  }
  gptd_registry_free (s.registry);
  gptd__run_table_free (s.runs);
  g_free (s.socket_path);
  g_free (s.config_path);
  gptd__config_clear (&s.cmdline);
  gptd__config_clear (&s.config);
  return status;
}
