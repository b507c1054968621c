/* daemon/server-serving.c: generate and classify requests, answered by serving
 * workers (gptd --serve, see serve.h): one process per model and user, kept by
 * least recent use, so that the daemon itself never holds a model nor runs a
 * numeric thread.
 *
 * A generate or classify request becomes a GenJob, queued on the serving worker of its
 * (user, model directory, weight format); a worker is started for a key that has none. A
 * worker is sent up to serve-batch jobs at once, in order (it decodes the
 * generations together, see serve.h): each job's Request is written to it
 * under a number of the daemon's own (the serial), and the Response frames it
 * answers with, which interleave, are passed on to each job's client under the
 * client's request id. A job's last one has end set; the job is then freed and
 * the worker's next job sent. At most model_cache workers are kept: beyond
 * that, the least recently used idle one is stopped (SIGTERM). A client that hangs up, lags or closes
 * gets a cancel sent for its job; the daemon stopping cancels every job and
 * stops every worker, and waits for them.
 *
 * A worker that dies (a crash, the out-of-memory killer, a signal) fails the jobs
 * it was serving, with an error saying so; the jobs queued behind them go to a
 * new worker. Nothing else is affected: runs and other models' workers go on.
 */
#ifdef HAVE_CONFIG_H
#include "config.h"
#endif
#ifndef _GNU_SOURCE
#define _GNU_SOURCE 1
#endif

#include "server-private.h"
#include "serve.h"

#include <gptd/generate.h>
#include <gptd/quant.h>

#include <errno.h>
#include <signal.h>
#include <string.h>
#include <unistd.h>

/* The most new tokens one request may ask for. */
#define GEN_MAX_NEW_TOKENS (1u << 20)

typedef struct _ServeWorker ServeWorker;

/* One generate or classify request. */
typedef struct {
  Server *server;
  Conn *conn;            /* NULL once its client is gone */
  guint64 id;            /* the client's request id */
  guint64 serial;        /* the daemon's number for it, known to the worker */
  GBytes *frame;         /* the Request frame for the worker */
  char *model;
  int client_pid;
  guint64 seed;
  gboolean noted;        /* its first log line got the cache's counters */
  gboolean classify;     /* a classify request (else generate) */
  ServeWorker *worker;
} GenJob;

struct _ServeWorker {
  Server *server;
  char *key;             /* "UID:WEIGHTS:MODEL" */
  char *model;
  char *weights;         /* the weight format asked for; "" for the stored one */
  uid_t uid;
  gid_t gid;
  uv_process_t process;
  uv_pipe_t pipe;
  int open_handles;
  GptdFrameDecoder *dec;
  int pid;
  gboolean exited;
  gboolean retired;      /* out of the cache: stopping */
  gboolean failed;       /* it could not be started */
  GQueue pending;        /* GenJob*: waiting their turn */
  GList *inflight;       /* GenJob*: sent to the worker and not ended, in order */
  guint n_inflight;
  guint batch;           /* the most jobs sent at once (serve-batch=) */
  guint64 used;          /* the clock at its last use */
};

typedef struct {
  uv_write_t req;
  GBytes *bytes;
} ServeWrite;

static void serve_worker_next (ServeWorker *w);
static ServeWorker *serve_worker_spawn (Server *s, const char *model, const char *weights,
                                        uid_t uid, gid_t gid, GError **error);

/* ---- Jobs ----------------------------------------------------------------------- */

static void
gen_job_free (GenJob *job)
{
  g_bytes_unref (job->frame);
  g_free (job->model);
  g_free (job);
}

/* The job's client sees nothing more of it. */
static void
gen_job_forget_conn (GenJob *job)
{
  if (job->conn != NULL)
    {
      job->conn->gen_jobs = g_list_remove (job->conn->gen_jobs, job);
      job->conn = NULL;
    }
}

/* The job has ended: it is freed. */
static void
gen_job_end (GenJob *job)
{
  Server *s = job->server;
  gen_job_forget_conn (job);
  gen_job_free (job);
  s->n_gen_jobs--;
}

/* Sends the client a last frame: the generation ended cancelled (a
 * classification: an error saying so). */
static void
gen_job_send_cancelled (GenJob *job)
{
  if (job->conn == NULL)
    return;
  if (job->classify)
    {
      gptd__conn_send_error (job->conn, job->id, GPTD__ERROR_CODE__ERROR_CODE_SHUTTING_DOWN,
                             "gptd is stopping: the classification was cancelled");
      return;
    }
  Gptd__Event ev = GPTD__EVENT__INIT;
  Gptd__TextChunk chunk = GPTD__TEXT_CHUNK__INIT;
  chunk.text = (char *) "";
  chunk.done = TRUE;
  chunk.stop_reason = (char *) gptd_generate_stop_to_string (GPTD_GENERATE_STOP_CANCELLED);
  ev.run_id = (char *) "";
  ev.time = (double) g_get_real_time () / G_USEC_PER_SEC;
  ev.body_case = GPTD__EVENT__BODY_TEXT;
  ev.text = &chunk;
  Gptd__Response resp = GPTD__RESPONSE__INIT;
  resp.id = job->id;
  resp.body_case = GPTD__RESPONSE__BODY_EVENT;
  resp.event = &ev;
  resp.end = TRUE;
  gptd__conn_send (job->conn, &resp);
}

/* ---- Talking to a worker ---------------------------------------------------------- */

static void
serve_write_done (uv_write_t *req, int status)
{
  ServeWrite *sw = (ServeWrite *) req;
  g_bytes_unref (sw->bytes);
  g_free (sw);
}

static void
serve_worker_write (ServeWorker *w, GBytes *frame)
{
  if (w->exited || uv_is_closing ((uv_handle_t *) &w->pipe))
    return;
  ServeWrite *sw = g_new0 (ServeWrite, 1);
  sw->bytes = g_bytes_ref (frame);
  gsize size;
  const void *data = g_bytes_get_data (frame, &size);
  uv_buf_t buf = uv_buf_init ((char *) data, (unsigned) size);
  int r = uv_write (&sw->req, (uv_stream_t *) &w->pipe, &buf, 1, serve_write_done);
  if (r != 0)
    {
      g_bytes_unref (sw->bytes);
      g_free (sw);
      g_warning ("serving worker %d (%s): cannot write to it: %s", w->pid, w->model,
                 uv_strerror (r));
    }
}

/* Asks the worker to stop @job, one it is serving. */
static void
serve_worker_cancel_job (ServeWorker *w, GenJob *job)
{
  g_autofree char *serial = g_strdup_printf ("%" G_GUINT64_FORMAT, job->serial);
  Gptd__Request req = GPTD__REQUEST__INIT;
  Gptd__RunIdRequest cancel = GPTD__RUN_ID_REQUEST__INIT;
  cancel.run_id = serial;
  req.body_case = GPTD__REQUEST__BODY_CANCEL;
  req.cancel = &cancel;
  g_autoptr (GBytes) frame = gptd_frame_encode (&req.base, 0, NULL);
  if (frame != NULL)
    serve_worker_write (w, frame);
}

/* Takes the worker out of the cache and stops it; its jobs are done first
 * (SIGTERM ends the one under way as cancelled). */
static void
serve_worker_retire (ServeWorker *w)
{
  Server *s = w->server;
  if (!w->retired)
    {
      w->retired = TRUE;
      s->serve_workers = g_list_remove (s->serve_workers, w);
      s->serve_retired = g_list_prepend (s->serve_retired, w);
    }
  if (!w->exited)
    uv_process_kill (&w->process, SIGTERM);
}

/* Stops the least recently used idle workers beyond the cache's size. */
static void
serve_evict (Server *s)
{
  while (g_list_length (s->serve_workers) > s->model_cache)
    {
      ServeWorker *lru = NULL;
      for (GList *l = s->serve_workers; l != NULL; l = l->next)
        {
          ServeWorker *w = l->data;
          if (w->inflight == NULL && g_queue_is_empty (&w->pending)
              && (lru == NULL || w->used < lru->used))
            lru = w;
        }
      if (lru == NULL)
        return;  /* all busy: the cache shrinks as they finish */
      g_message ("generate: unloading the model %s (least recently used of %u)", lru->model,
                 g_list_length (s->serve_workers));
      serve_worker_retire (lru);
    }
}

/* One Response frame from the worker. */
static void
serve_worker_on_response (ServeWorker *w, Gptd__Response *resp)
{
  Server *s = w->server;
  GenJob *job = NULL;
  for (GList *l = w->inflight; l != NULL && job == NULL; l = l->next)
    if (((GenJob *) l->data)->serial == resp->id)
      job = l->data;
  if (job == NULL)
    {
      g_warning ("serving worker %d (%s) answered a request it was not given", w->pid,
                 w->model);
      return;
    }
  Conn *c = job->conn;
  g_autofree char *noted = NULL;
  if (!job->noted && resp->body_case == GPTD__RESPONSE__BODY_EVENT && resp->event != NULL
      && resp->event->body_case == GPTD__EVENT__BODY_LOG && resp->event->log != NULL)
    {
      /* The worker's line on where the model came from, with the cache's
       * counters. */
      job->noted = TRUE;
      const char *msg = resp->event->log->message ? resp->event->log->message : "";
      if (strstr (msg, ": loaded in ") != NULL)
        s->serve_loads++;
      else
        s->serve_hits++;
      g_autofree char *seed = job->classify
                                ? g_strdup ("")
                                : g_strdup_printf ("; seed %" G_GUINT64_FORMAT, job->seed);
      noted = g_strdup_printf ("%s (models cached: %u; loads: %" G_GUINT64_FORMAT ", hits: %"
                               G_GUINT64_FORMAT ")%s", msg, g_list_length (s->serve_workers),
                               s->serve_loads, s->serve_hits, seed);
      resp->event->log->message = noted;
    }
  if (c != NULL)
    {
      if (!resp->end && c->queued > s->queue_limit)
        {
          /* The client does not read what it asked for. */
          g_message ("connection %u (pid %d) lagged behind its generation by %"
                     G_GSIZE_FORMAT " bytes; dropped", c->id, (int) c->pid, c->queued);
          gen_job_forget_conn (job);
          serve_worker_cancel_job (w, job);
          Gptd__Response lag = GPTD__RESPONSE__INIT;
          Gptd__Error err = GPTD__ERROR__INIT;
          err.code = GPTD__ERROR_CODE__ERROR_CODE_LAGGED;
          err.message = (char *) "You fell too far behind the generated text and were dropped";
          lag.id = job->id;
          lag.error = &err;
          lag.end = TRUE;
          gptd__conn_send (c, &lag);
          gptd__conn_drain (c);
        }
      else
        {
          resp->id = job->id;
          gptd__conn_send (c, resp);
        }
    }
  if (resp->end)
    {
      w->inflight = g_list_remove (w->inflight, job);
      w->n_inflight--;
      w->used = ++s->serve_clock;
      gen_job_end (job);
      serve_worker_next (w);
      serve_evict (s);
      gptd__server_maybe_finish_stop (s);
    }
}

static void
serve_worker_drain_frames (ServeWorker *w)
{
  for (;;)
    {
      g_autoptr (GBytes) payload = NULL;
      g_autoptr (GError) error = NULL;
      GptdFrameStatus st = gptd_frame_decoder_next (w->dec, &payload, &error);
      if (st == GPTD_FRAME_NEED_MORE)
        return;
      Gptd__Response *resp = NULL;
      if (st == GPTD_FRAME_OK)
        {
          gsize n;
          const guint8 *p = g_bytes_get_data (payload, &n);
          resp = (Gptd__Response *) gptd_frame_unpack (&gptd__response__descriptor, p, n,
                                                       &error);
        }
      if (resp == NULL)
        {
          g_warning ("serving worker %d (%s) sent a bad frame: %s; killing it", w->pid,
                     w->model, error->message);
          if (!w->exited)
            uv_process_kill (&w->process, SIGKILL);
          uv_read_stop ((uv_stream_t *) &w->pipe);
          return;
        }
      /* The frame's strings are freed with it: the log line set aside. */
      char *log_message = resp->body_case == GPTD__RESPONSE__BODY_EVENT && resp->event
                          && resp->event->body_case == GPTD__EVENT__BODY_LOG && resp->event->log
                          ? resp->event->log->message : NULL;
      serve_worker_on_response (w, resp);
      if (log_message != NULL)
        resp->event->log->message = log_message;
      protobuf_c_message_free_unpacked (&resp->base, NULL);
    }
}

static void
serve_worker_alloc (uv_handle_t *handle, size_t suggested, uv_buf_t *buf)
{
  buf->base = g_malloc (65536);
  buf->len = 65536;
}

static void
serve_worker_read (uv_stream_t *stream, ssize_t nread, const uv_buf_t *buf)
{
  ServeWorker *w = stream->data;
  if (nread > 0)
    {
      gptd_frame_decoder_feed (w->dec, buf->base, (gsize) nread);
      serve_worker_drain_frames (w);
    }
  g_free (buf->base);
  if (nread < 0)
    uv_read_stop (stream);
}

static void
serve_worker_closed (uv_handle_t *handle)
{
  ServeWorker *w = handle->data;
  if (--w->open_handles > 0)
    return;
  Server *s = w->server;
  gptd_frame_decoder_free (w->dec);
  g_free (w->key);
  g_free (w->model);
  g_free (w->weights);
  gboolean failed = w->failed;
  g_free (w);
  if (failed)
    return;  /* it never started */
  s->n_serve_procs--;
  gptd__server_maybe_finish_stop (s);
}

static void
serve_worker_exited (uv_process_t *process, int64_t exit_status, int term_signal)
{
  ServeWorker *w = process->data;
  Server *s = w->server;
  w->exited = TRUE;
  /* What it wrote before it ended is read first. */
  uv_os_fd_t fd;
  if (uv_fileno ((uv_handle_t *) &w->pipe, &fd) == 0)
    {
      guint8 buf[65536];
      ssize_t n;
      while ((n = read (fd, buf, sizeof buf)) > 0 || (n < 0 && errno == EINTR))
        if (n > 0)
          {
            gptd_frame_decoder_feed (w->dec, buf, (gsize) n);
            serve_worker_drain_frames (w);
          }
    }
  uv_read_stop ((uv_stream_t *) &w->pipe);
  if (!w->retired)
    {
      w->retired = TRUE;
      s->serve_workers = g_list_remove (s->serve_workers, w);
    }
  else
    s->serve_retired = g_list_remove (s->serve_retired, w);

  g_autofree char *how = term_signal
    ? g_strdup_printf ("killed by signal %d (%s)", term_signal, g_strsignal (term_signal))
    : g_strdup_printf ("exited with status %" G_GINT64_FORMAT, (gint64) exit_status);
  if (w->inflight != NULL)
    {
      /* It died serving requests: those fail, nothing else. */
      GList *jobs = g_steal_pointer (&w->inflight);
      w->n_inflight = 0;
      for (GList *l = jobs; l != NULL; l = l->next)
        {
          GenJob *job = l->data;
          g_warning ("serving worker %d (%s) %s while serving request %" G_GUINT64_FORMAT
                     " of pid %d", w->pid, w->model, how, job->id, job->client_pid);
          if (job->conn != NULL)
            gptd__conn_send_error (job->conn, job->id, GPTD__ERROR_CODE__ERROR_CODE_INTERNAL,
                                   "The serving worker of the model %s (pid %d) %s during "
                                   "this request; ask again to start a new one", w->model,
                                   w->pid, how);
          gen_job_end (job);
        }
      g_list_free (jobs);
    }
  else if (term_signal != 0 || (exit_status != 0 && exit_status != 3))
    g_warning ("serving worker %d (%s) %s", w->pid, w->model, how);
  else
    g_info ("serving worker %d (%s) %s", w->pid, w->model, how);

  /* The requests waiting their turn go to a new worker. */
  if (!g_queue_is_empty (&w->pending))
    {
      g_autoptr (GError) error = NULL;
      ServeWorker *next = s->stopping ? NULL
                                      : serve_worker_spawn (s, w->model, w->weights, w->uid,
                                                            w->gid, &error);
      GenJob *job;
      while ((job = g_queue_pop_head (&w->pending)) != NULL)
        {
          if (next != NULL)
            {
              job->worker = next;
              g_queue_push_tail (&next->pending, job);
              continue;
            }
          if (job->conn != NULL)
            {
              if (error != NULL)
                gptd__conn_send_error (job->conn, job->id, GPTD__ERROR_CODE__ERROR_CODE_INTERNAL,
                                       "%s", error->message);
              else
                gen_job_send_cancelled (job);
            }
          gen_job_end (job);
        }
      if (next != NULL)
        serve_worker_next (next);
    }
  uv_close ((uv_handle_t *) &w->pipe, serve_worker_closed);
  uv_close ((uv_handle_t *) &w->process, serve_worker_closed);
  gptd__server_maybe_finish_stop (s);
}

/* The threads a serving worker computes with: generate-threads= when given,
 * else the cores the running runs leave, one at least. */
static guint
serve_threads (Server *s)
{
  if (s->serve_threads > 0)
    return s->serve_threads;
  guint cores = g_get_num_processors ();
  guint busy = s->n_workers * gptd__server_run_threads (s);
  return busy + 1 > cores ? 1 : cores - busy;
}

/* The key of the worker serving @model with @weights for @uid. */
static char *
serve_worker_key (const char *model, const char *weights, uid_t uid)
{
  return g_strdup_printf ("%u:%s:%s", (unsigned) uid, weights, model);
}

static ServeWorker *
serve_worker_spawn (Server *s, const char *model, const char *weights, uid_t uid, gid_t gid,
                    GError **error)
{
  ServeWorker *w = g_new0 (ServeWorker, 1);
  w->server = s;
  w->model = g_strdup (model);
  w->weights = g_strdup (weights);
  w->uid = uid;
  w->gid = gid;
  w->key = serve_worker_key (model, weights, uid);
  w->dec = gptd_frame_decoder_new (0);
  g_queue_init (&w->pending);
  uv_pipe_init (&s->loop, &w->pipe, 0);
  w->pipe.data = w;
  w->process.data = w;
  w->open_handles = 2;

  char *args[] = { (char *) "gptd", (char *) "--serve", (char *) model, NULL };
  uv_stdio_container_t stdio[4];
  stdio[0].flags = UV_IGNORE;
  stdio[1].flags = UV_INHERIT_FD;
  stdio[1].data.fd = 1;
  stdio[2].flags = UV_INHERIT_FD;
  stdio[2].data.fd = 2;
  stdio[3].flags = UV_CREATE_PIPE | UV_READABLE_PIPE | UV_WRITABLE_PIPE;
  stdio[3].data.stream = (uv_stream_t *) &w->pipe;
  guint threads = serve_threads (s);
  g_autofree char *threads_str = g_strdup_printf ("%u", threads);
  g_auto (GStrv) env = g_get_environ ();
  env = g_environ_setenv (env, "GPTD_NN_THREADS", threads_str, TRUE);
  /* serve-batch= and prefill-chunk= as they are when the worker starts. */
  w->batch = s->config.has_serve_batch ? (guint) s->config.serve_batch
                                       : GPTD_SERVE_DEFAULT_BATCH;
  guint chunk = s->config.has_prefill_chunk ? (guint) s->config.prefill_chunk
                                            : GPTD_SERVE_DEFAULT_PREFILL_CHUNK;
  g_autofree char *batch_str = g_strdup_printf ("%u", w->batch);
  g_autofree char *chunk_str = g_strdup_printf ("%u", chunk);
  env = g_environ_setenv (env, "GPTD_SERVE_BATCH", batch_str, TRUE);
  env = g_environ_setenv (env, "GPTD_SERVE_PREFILL_CHUNK", chunk_str, TRUE);
  uv_process_options_t opts = { 0 };
  opts.exit_cb = serve_worker_exited;
  opts.env = env;
  opts.file = "/proc/self/exe";
  opts.args = args;
  opts.cwd = "/";
  opts.stdio_count = 4;
  opts.stdio = stdio;
  opts.flags = UV_PROCESS_DETACHED;
  /* A root daemon serves each user with that user's rights (docs/security.md). */
  if (geteuid () == 0 && uid != 0)
    {
      opts.flags |= UV_PROCESS_SETUID | UV_PROCESS_SETGID;
      opts.uid = uid;
      opts.gid = gid;
    }
  int r = uv_spawn (&s->loop, &w->process, &opts);
  if (r != 0)
    {
      g_set_error (error, G_SPAWN_ERROR, G_SPAWN_ERROR_FAILED,
                   "Cannot start a serving worker for the model %s: %s", model, uv_strerror (r));
      w->failed = TRUE;
      uv_close ((uv_handle_t *) &w->pipe, serve_worker_closed);
      uv_close ((uv_handle_t *) &w->process, serve_worker_closed);
      return NULL;
    }
  w->pid = w->process.pid;
  w->used = ++s->serve_clock;
  s->n_serve_procs++;
  s->serve_workers = g_list_prepend (s->serve_workers, w);
  uv_read_start ((uv_stream_t *) &w->pipe, serve_worker_alloc, serve_worker_read);
  g_message ("generate: serving worker %d started for the model %s (uid %u, %s weights, "
             "%u thread(s))", w->pid, model, (unsigned) uid, *weights ? weights : "stored",
             threads);
  return w;
}

/* Sends the worker its next jobs, up to its batch. */
static void
serve_worker_next (ServeWorker *w)
{
  while (!w->exited && w->n_inflight < w->batch)
    {
      GenJob *job = g_queue_pop_head (&w->pending);
      if (job == NULL)
        return;
      w->inflight = g_list_append (w->inflight, job);
      w->n_inflight++;
      w->used = ++w->server->serve_clock;
      serve_worker_write (w, job->frame);
    }
}

/* The worker that serves @model with @weights for @uid, started when there is
 * none. */
static ServeWorker *
serve_worker_get (Server *s, const char *model, const char *weights, uid_t uid, gid_t gid,
                  GError **error)
{
  g_autofree char *key = serve_worker_key (model, weights, uid);
  for (GList *l = s->serve_workers; l != NULL; l = l->next)
    {
      ServeWorker *w = l->data;
      if (strcmp (w->key, key) == 0)
        return w;
    }
  ServeWorker *w = serve_worker_spawn (s, model, weights, uid, gid, error);
  if (w != NULL)
    serve_evict (s);
  return w;
}

/* ---- The daemon's side ------------------------------------------------------------ */

void
gptd__conn_cancel_generations (Conn *c)
{
  while (c->gen_jobs != NULL)
    {
      GenJob *job = c->gen_jobs->data;
      ServeWorker *w = job->worker;
      gen_job_forget_conn (job);
      if (g_list_find (w->inflight, job) != NULL)
        serve_worker_cancel_job (w, job);
      else if (g_queue_remove (&w->pending, job))
        gen_job_end (job);
    }
}

void
gptd__server_cancel_generations (Server *s)
{
  for (GList *l = s->serve_workers; l != NULL; l = l->next)
    {
      ServeWorker *w = l->data;
      GenJob *job;
      while ((job = g_queue_pop_head (&w->pending)) != NULL)
        {
          gen_job_send_cancelled (job);
          gen_job_end (job);
        }
      for (GList *j = w->inflight; j != NULL; j = j->next)
        serve_worker_cancel_job (w, j->data);
    }
}

void
gptd__server_stop_serving (Server *s, int signum)
{
  g_autoptr (GList) all = g_list_copy (s->serve_workers);
  for (GList *l = all; l != NULL; l = l->next)
    serve_worker_retire (l->data);
  for (GList *l = s->serve_retired; signum != SIGTERM && l != NULL; l = l->next)
    {
      ServeWorker *w = l->data;
      if (!w->exited)
        uv_process_kill (&w->process, signum);
    }
}

/* Whether @model, the model directory a @what request names, is one: an
 * absolute path. Otherwise the client is answered with an error. */
static gboolean
serve_check_model (Conn *c, guint64 id, const char *what, const char *model)
{
  if (model == NULL || !*model)
    {
      gptd__conn_send_error (c, id, GPTD__ERROR_CODE__ERROR_CODE_BAD_REQUEST,
                             "The %s request names no model directory", what);
      return FALSE;
    }
  if (!g_path_is_absolute (model))
    {
      gptd__conn_send_error (c, id, GPTD__ERROR_CODE__ERROR_CODE_BAD_REQUEST,
                             "The model directory must be an absolute path, not %s", model);
      return FALSE;
    }
  return TRUE;
}

/* Whether @weights, the weight format a @what request names, is one (empty
 * for the model directory's own). Otherwise the client is answered with an
 * error. */
static gboolean
serve_check_weights (Conn *c, guint64 id, const char *what, const char *weights)
{
  GptdWeightFormat format;
  g_autoptr (GError) error = NULL;
  if (weights == NULL || !*weights || gptd_weight_format_from_string (weights, &format, &error))
    return TRUE;
  gptd__conn_send_error (c, id, GPTD__ERROR_CODE__ERROR_CODE_BAD_REQUEST,
                         "The %s request's weights: %s", what, error->message);
  return FALSE;
}

/* Queues @wreq (its id set here to the daemon's number for it) on the serving
 * worker of (@c's user, @model, @weights), started when there is none, as the
 * job of request @id of @c. NULL after answering @c with an error. The caller
 * sends the worker its next job. */
static GenJob *
serve_submit (Conn *c, guint64 id, const char *model, const char *weights,
              Gptd__Request *wreq, gboolean classify)
{
  Server *s = c->server;
  g_autoptr (GError) error = NULL;
  ServeWorker *w = serve_worker_get (s, model, weights != NULL ? weights : "", c->uid, c->gid,
                                     &error);
  if (w == NULL)
    {
      gptd__conn_send_error (c, id, GPTD__ERROR_CODE__ERROR_CODE_INTERNAL, "%s",
                             error->message);
      return NULL;
    }
  GenJob *job = g_new0 (GenJob, 1);
  job->server = s;
  job->conn = c;
  job->id = id;
  job->serial = ++s->next_gen_serial;
  job->model = g_strdup (model);
  job->client_pid = (int) c->pid;
  job->classify = classify;
  job->worker = w;
  wreq->id = job->serial;
  job->frame = gptd_frame_encode (&wreq->base, 0, &error);
  if (job->frame == NULL)
    {
      gptd__conn_send_error (c, id, GPTD__ERROR_CODE__ERROR_CODE_BAD_REQUEST,
                             "The %s request is too large: %s",
                             classify ? "classify" : "generate", error->message);
      gen_job_free (job);
      return NULL;
    }
  c->gen_jobs = g_list_prepend (c->gen_jobs, job);
  s->n_gen_jobs++;
  g_queue_push_tail (&w->pending, job);
  return job;
}

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
  if (!serve_check_model (c, req->id, "generate", gr->model)
      || !serve_check_weights (c, req->id, "generate", gr->weights))
    return;
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
  g_autofree const char **stop = g_new0 (const char *, gr->n_stop + 1);
  for (gsize i = 0; i < gr->n_stop; i++)
    stop[i] = gr->stop[i] != NULL ? gr->stop[i] : "";
  opts.stop = stop;
  g_autoptr (GError) error = NULL;
  g_autoptr (GptdStopMatcher) check = NULL;
  if (!gptd_generate_options_validate (&opts, &error)
      || (check = gptd_stop_matcher_new (opts.stop, &error)) == NULL)
    {
      gptd__conn_send_error (c, req->id, GPTD__ERROR_CODE__ERROR_CODE_BAD_REQUEST,
                             "Bad generate parameters: %s", error->message);
      return;
    }

  /* The request as the worker gets it: the seed drawn. */
  Gptd__GenerateRequest fwd = *gr;
  fwd.seed = opts.seed;
  fwd.has_seed = TRUE;
  Gptd__Request wreq = GPTD__REQUEST__INIT;
  wreq.body_case = GPTD__REQUEST__BODY_GENERATE;
  wreq.generate = &fwd;
  GenJob *job = serve_submit (c, req->id, gr->model, gr->weights, &wreq, FALSE);
  if (job == NULL)
    return;
  job->seed = opts.seed;
  g_info ("generate: request %" G_GUINT64_FORMAT " of pid %d: %u tokens from %s",
          req->id, (int) c->pid, gr->max_new_tokens, gr->model);
  serve_worker_next (job->worker);
}

void
gptd__request_classify (Conn *c, const Gptd__Request *req)
{
  Server *s = c->server;
  const Gptd__ClassifyRequest *cr = req->classify;
  if (s->stopping)
    {
      gptd__conn_send_error (c, req->id, GPTD__ERROR_CODE__ERROR_CODE_SHUTTING_DOWN,
                             "gptd is stopping and starts no classification");
      return;
    }
  if (!serve_check_model (c, req->id, "classify", cr->model)
      || !serve_check_weights (c, req->id, "classify", cr->weights))
    return;
  if (cr->n_texts == 0)
    {
      gptd__conn_send_error (c, req->id, GPTD__ERROR_CODE__ERROR_CODE_BAD_REQUEST,
                             "The classify request has no text to classify");
      return;
    }
  for (gsize i = 0; i < cr->n_texts; i++)
    {
      const char *text = cr->texts[i] != NULL ? cr->texts[i] : "";
      if (!*text || !g_utf8_validate (text, -1, NULL))
        {
          gptd__conn_send_error (c, req->id, GPTD__ERROR_CODE__ERROR_CODE_BAD_REQUEST,
                                 "Text %" G_GSIZE_FORMAT " of the classify request is %s", i + 1,
                                 *text ? "not valid UTF-8" : "empty: there is nothing to classify");
          return;
        }
    }
  Gptd__Request wreq = GPTD__REQUEST__INIT;
  wreq.body_case = GPTD__REQUEST__BODY_CLASSIFY;
  wreq.classify = (Gptd__ClassifyRequest *) cr;
  GenJob *job = serve_submit (c, req->id, cr->model, cr->weights, &wreq, TRUE);
  if (job == NULL)
    return;
  g_info ("classify: request %" G_GUINT64_FORMAT " of pid %d: %" G_GSIZE_FORMAT
          " text(s) with %s", req->id, (int) c->pid, cr->n_texts, cr->model);
  serve_worker_next (job->worker);
}

void
gptd__server_generate_init (Server *s, guint model_cache)
{
  s->model_cache = model_cache;
}

void
gptd__server_generate_set_cache (Server *s, guint model_cache)
{
  s->model_cache = model_cache;
  serve_evict (s);
}

guint
gptd__server_serving_count (Server *s, GPtrArray *models, GArray *pids)
{
  for (GList *l = s->serve_workers; l != NULL; l = l->next)
    {
      ServeWorker *w = l->data;
      if (models != NULL)
        g_ptr_array_add (models, *w->weights
                                   ? g_strdup_printf ("%s (uid %u, pid %d, %s weights)",
                                                      w->model, (unsigned) w->uid, w->pid,
                                                      w->weights)
                                   : g_strdup_printf ("%s (uid %u, pid %d)", w->model,
                                                      (unsigned) w->uid, w->pid));
      if (pids != NULL)
        g_array_append_val (pids, w->pid);
    }
  return g_list_length (s->serve_workers);
}
