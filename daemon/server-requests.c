/* daemon/server-requests.c: the daemon's request handlers, one function per
 * request type found through a table, and the checking threads that load
 * submitted pipelines off the loop.
 */
#ifdef HAVE_CONFIG_H
#include "config.h"
#endif
#ifndef _GNU_SOURCE
#define _GNU_SOURCE 1
#endif

#include "server-private.h"
#include "check.h"

#include <gptd/pipeline.h>
#include <gptd/runner.h>

#include <math.h>
#include <signal.h>
#include <string.h>
#include <unistd.h>

/* ---- Checking submitted pipelines ------------------------------------------------ */

/* The loading itself happens in a child, `gptd --check` (check.h), started by the
 * checking thread with the client's rights: the daemon process opens no file a
 * pipeline names, and runs no stage's check. */

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
  char **environment;      /* the client's "NAME=value" variables, never NULL */
  GBytes *frame;           /* the Request for `gptd --check` */
  gboolean as_user;        /* check with the client's uid and gid */
  guint uid;
  guint gid;
  /* Set by the checking thread. */
  Gptd__Response *answer;  /* the child's; NULL with error */
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
  g_strfreev (job->environment);
  g_clear_pointer (&job->frame, g_bytes_unref);
  if (job->answer != NULL)
    protobuf_c_message_free_unpacked (&job->answer->base, NULL);
  g_clear_error (&job->error);
  g_free (job);
}

/* Checking thread: has a child load the pipeline of one request, with the
 * client's rights, and hands the job back to the loop. */
static void
check_job_run (gpointer data, gpointer user_data)
{
  CheckJob *job = data;
  Server *s = user_data;
  job->answer = gptd__check_in_child (job->frame, job->as_user, job->uid, job->gid,
                                      &job->error);
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
  /* ${NAME} reads what the client sent, never the daemon's environment. */
  job->environment = gptd_settings_from_proto (rr->environment, rr->n_environment);
  if (job->environment == NULL)
    job->environment = g_new0 (char *, 1);
  /* One variable the daemon supplies: where the data sets are (data-dir=), for
   * a client that does not say. */
  const char *data_dir = g_getenv ("GPTD_DATA_DIR");
  if (data_dir != NULL && g_environ_getenv (job->environment, "GPTD_DATA_DIR") == NULL)
    job->environment = g_environ_setenv (job->environment, "GPTD_DATA_DIR", data_dir, FALSE);
  /* What the child gets: the request with the absolute file name and the
   * environment above. */
  {
    guint n = g_strv_length (job->environment);
    g_autofree Gptd__Setting *envs = g_new0 (Gptd__Setting, MAX (n, 1));
    g_autofree Gptd__Setting **envp = g_new0 (Gptd__Setting *, MAX (n, 1));
    g_autoptr (GPtrArray) keep = g_ptr_array_new_with_free_func (g_free);
    for (guint i = 0; i < n; i++)
      {
        const char *eq = strchr (job->environment[i], '=');
        gptd__setting__init (&envs[i]);
        envs[i].key = g_strndup (job->environment[i],
                                 eq ? (gsize) (eq - job->environment[i]) : strlen (job->environment[i]));
        envs[i].value = (char *) (eq ? eq + 1 : "");
        g_ptr_array_add (keep, envs[i].key);
        envp[i] = &envs[i];
      }
    Gptd__RunRequest fwd = *rr;
    fwd.filename = job->filename;
    fwd.environment = envp;
    fwd.n_environment = n;
    Gptd__Request creq = GPTD__REQUEST__INIT;
    creq.id = req->id;
    creq.body_case = GPTD__REQUEST__BODY_VALIDATE;
    creq.validate = &fwd;
    job->frame = gptd_frame_encode (&creq.base, 0, NULL);
    if (job->frame == NULL)
      job->frame = g_bytes_new (NULL, 0);
  }
  /* A root daemon checks with the client's rights, as the run will run. */
  job->as_user = geteuid () == 0 && c->uid != 0;
  job->uid = c->uid;
  job->gid = c->gid;
  c->check_jobs = g_list_prepend (c->check_jobs, job);
  s->n_check_jobs++;
  g_thread_pool_push (s->check_pool, job, NULL);
}

/* A closing connection gets no answers: its jobs finish unseen. */
void
gptd__conn_forget_checks (Conn *c)
{
  for (GList *l = c->check_jobs; l != NULL; l = l->next)
    ((CheckJob *) l->data)->conn = NULL;
  g_clear_pointer (&c->check_jobs, g_list_free);
}

/* Loop thread: answers a validate request whose pipeline was loaded. */
static void
check_job_answer_validate (Conn *c, CheckJob *job)
{
  if (job->answer == NULL || job->answer->validate == NULL)
    {
      gptd__conn_send_error (c, job->id, GPTD__ERROR_CODE__ERROR_CODE_INTERNAL, "%s",
                             job->error ? job->error->message
                                        : "the pipeline check answered nothing");
      return;
    }
  Gptd__Response resp = GPTD__RESPONSE__INIT;
  resp.id = job->id;
  resp.body_case = GPTD__RESPONSE__BODY_VALIDATE;
  resp.validate = job->answer->validate;
  gptd__conn_send (c, &resp);
}

/* Loop thread: answers a run request whose pipeline was loaded, starting the run
 * if it is valid. */
static void
check_job_answer_run (Conn *c, CheckJob *job)
{
  Server *s = c->server;
  if (s->stopping)
    {
      gptd__conn_send_error (c, job->id, GPTD__ERROR_CODE__ERROR_CODE_SHUTTING_DOWN,
                       "gptd is stopping and starts no new run");
      return;
    }
  if (job->answer == NULL)
    {
      gptd__conn_send_error (c, job->id, GPTD__ERROR_CODE__ERROR_CODE_INTERNAL, "%s",
                             job->error->message);
      return;
    }
  if (job->answer->error != NULL || job->answer->validate == NULL
      || !job->answer->validate->valid)
    {
      /* Invalid: the child's answer, every problem in it. */
      job->answer->id = job->id;
      gptd__conn_send (c, job->answer);
      return;
    }

  g_autoptr (GError) error = NULL;
  GptdRun *run = gptd__run_table_create (s->runs, job->answer->validate->name,
                                         job->text, job->filename, job->workdir,
                                         (const char *const *) job->settings,
                                         (const char *const *) job->environment, &error);
  if (run == NULL)
    {
      gptd__conn_send_error (c, job->id, GPTD__ERROR_CODE__ERROR_CODE_INTERNAL, "%s", error->message);
      return;
    }
  g_message ("run %s (%s, %s) submitted by pid %d uid %u", run->id, run->name, job->filename,
             (int) c->pid, (unsigned) c->uid);
  if (!gptd__run_set_owner (run, c->uid, c->gid, &error))
    {
      g_warning ("run %s: %s", run->id, error->message);
      gptd__run_finish (run, GPTD__RUN_STATE__RUN_STATE_FAILED, NULL, error->message);
      gptd__conn_send_error (c, job->id, GPTD__ERROR_CODE__ERROR_CODE_INTERNAL, "run %s: %s",
                             run->id, error->message);
      return;
    }
  /* Started at once when a slot is free, else queued behind the others. */
  gptd__server_enqueue (s, run, FALSE);
  if (run->state == GPTD__RUN_STATE__RUN_STATE_QUEUED && run->worker == NULL)
    g_message ("run %s: queued (position %u; %u run(s) running, at most %u)", run->id,
               gptd__server_queue_position (s, run), s->n_workers, gptd__server_max_runs (s));
  gptd__conn_send_run (c, job->id, run, FALSE);
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
  gptd__server_free_old_registries (s);
  gptd__server_maybe_finish_stop (s);
}
static void
request_run (Conn *c, const Gptd__Request *req)
{
  if (c->server->stopping)
    {
      gptd__conn_send_error (c, req->id, GPTD__ERROR_CODE__ERROR_CODE_SHUTTING_DOWN,
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
      infos[i].queue_position = gptd__server_queue_position (c->server, runs->pdata[i]);
      ptrs[i] = &infos[i];
    }
  Gptd__RunList list = GPTD__RUN_LIST__INIT;
  list.runs = ptrs;
  list.n_runs = runs->len;
  Gptd__Response resp = GPTD__RESPONSE__INIT;
  resp.id = req->id;
  resp.body_case = GPTD__RESPONSE__BODY_RUNS;
  resp.runs = &list;
  gptd__conn_send (c, &resp);
}

/* The run a RunIdRequest names, or NULL after answering NOT_FOUND. */
static GptdRun *
lookup_run (Conn *c, guint64 id, const char *run_id)
{
  GptdRun *run = gptd__run_table_lookup (c->server->runs, run_id);
  if (run == NULL)
    gptd__conn_send_error (c, id, GPTD__ERROR_CODE__ERROR_CODE_NOT_FOUND, "There is no run %s",
                     run_id && *run_id ? run_id : "(empty id)");
  return run;
}

/* The run a RunIdRequest names when the client may act on it (@what: "cancel",
 * "read the logs of", ...): its owner or root. NULL after answering NOT_FOUND
 * or PERMISSION_DENIED. */
static GptdRun *
lookup_own_run (Conn *c, guint64 id, const char *run_id, const char *what)
{
  GptdRun *run = lookup_run (c, id, run_id);
  if (run == NULL || gptd__conn_may_touch (c, run))
    return run;
  g_message ("run %s: uid %u (pid %d) may not %s it (its owner is uid %u)", run->id,
             (unsigned) c->uid, (int) c->pid, what, run->owner_uid);
  gptd__conn_send_error (c, id, GPTD__ERROR_CODE__ERROR_CODE_PERMISSION_DENIED,
                         "Run %s belongs to %s (uid %u): only its owner or root may %s it",
                         run->id, run->owner ? run->owner : "another user", run->owner_uid, what);
  return NULL;
}

static void
request_status (Conn *c, const Gptd__Request *req)
{
  GptdRun *run = lookup_run (c, req->id, req->status->run_id);
  if (run != NULL)
    gptd__conn_send_run (c, req->id, run, FALSE);
}

static void
request_watch (Conn *c, const Gptd__Request *req)
{
  GptdRun *run = lookup_own_run (c, req->id, req->watch->run_id, "watch");
  if (run == NULL)
    return;
  if (c->watch_run != NULL)
    {
      gptd__conn_send_error (c, req->id, GPTD__ERROR_CODE__ERROR_CODE_BAD_STATE,
                       "This connection already watches run %s", c->watch_run->id);
      return;
    }
  /* The run as it is now, then its events, then its final RunInfo with end set. */
  gptd__conn_send_run (c, req->id, run, FALSE);
  c->watch_run = run;
  c->watch_id = req->id;
  if (req->watch->from_start)
    {
      g_autoptr (GError) error = NULL;
      c->replay = gptd__run_log_reader_new (run, &error);
      if (c->replay == NULL)
        {
          c->watch_run = NULL;
          gptd__conn_send_error (c, req->id, GPTD__ERROR_CODE__ERROR_CODE_INTERNAL, "%s",
                           error->message);
          return;
        }
      gptd__conn_replay_pump (c);
    }
  else if (gptd__run_is_finished (run))
    gptd__conn_watch_end (c);
  else
    g_ptr_array_add (run->watchers, c);
}

static void
request_logs (Conn *c, const Gptd__Request *req)
{
  GptdRun *run = lookup_own_run (c, req->id, req->logs->run_id, "read the logs of");
  if (run == NULL)
    return;
  /* Read a slice at a time from the loop: a long log does not hold it up. */
  gptd__conn_logs_start (c, req->id, run);
}

static void
request_output (Conn *c, const Gptd__Request *req)
{
  GptdRun *run = lookup_own_run (c, req->id, req->output->run_id, "read the output of");
  if (run == NULL)
    return;
  /* A chunk at a time from the loop: a long output does not hold it up. */
  gptd__conn_output_start (c, req->id, run);
}

/* (transfer full): a copy of @run's RunInfo that outlives it. */
static Gptd__RunInfo *
run_info_copy (const GptdRun *run)
{
  Gptd__RunInfo info;
  gptd__run_fill_info (run, &info);
  gsize size = protobuf_c_message_get_packed_size (&info.base);
  g_autofree guint8 *buf = g_malloc (size + 1);
  protobuf_c_message_pack (&info.base, buf);
  Gptd__RunInfo *copy = gptd__run_info__unpack (NULL, size, buf);
  g_assert (copy != NULL);
  return copy;
}

static void
run_info_free (Gptd__RunInfo *info)
{
  if (info != NULL)
    gptd__run_info__free_unpacked (info, NULL);
}

/* Whether @run may be removed: it has ended and its worker is gone. Answers
 * BAD_STATE when not. */
static gboolean
check_removable (Conn *c, guint64 id, GptdRun *run)
{
  if (!gptd__run_is_finished (run))
    {
      gptd__conn_send_error (c, id, GPTD__ERROR_CODE__ERROR_CODE_BAD_STATE,
                             "Run %s is %s; cancel it first", run->id,
                             gptd_run_state_to_string (run->state));
      return FALSE;
    }
  if (run->worker != NULL)
    {
      gptd__conn_send_error (c, id, GPTD__ERROR_CODE__ERROR_CODE_BAD_STATE,
                             "Run %s has ended but its worker (pid %d) has not exited yet; "
                             "try again in a moment", run->id, run->pid);
      return FALSE;
    }
  return TRUE;
}

/* Removes @run (checked removable): every connection holding it is detached
 * first. */
static gboolean
remove_run (Conn *c, GptdRun *run, GError **error)
{
  Server *s = c->server;
  g_autofree char *id = g_strdup (run->id);
  gptd__server_detach_run (s, run);
  if (!gptd__run_table_remove (s->runs, run, error))
    return FALSE;
  g_message ("run %s: removed by pid %d uid %u", id, (int) c->pid, (unsigned) c->uid);
  return TRUE;
}

static void
request_remove (Conn *c, const Gptd__Request *req)
{
  GptdRun *run = lookup_own_run (c, req->id, req->remove->run_id, "remove");
  if (run == NULL || !check_removable (c, req->id, run))
    return;
  /* The answer: the run as it was. */
  Gptd__RunInfo *copy = run_info_copy (run);
  g_autoptr (GError) error = NULL;
  if (!remove_run (c, run, &error))
    {
      run_info_free (copy);
      gptd__conn_send_error (c, req->id, GPTD__ERROR_CODE__ERROR_CODE_INTERNAL, "%s",
                             error->message);
      return;
    }
  Gptd__Response resp = GPTD__RESPONSE__INIT;
  resp.id = req->id;
  resp.body_case = GPTD__RESPONSE__BODY_RUN;
  resp.run = copy;
  gptd__conn_send (c, &resp);
  run_info_free (copy);
}

static void
request_prune (Conn *c, const Gptd__Request *req)
{
  const Gptd__PruneRequest *pr = req->prune;
  for (gsize i = 0; i < pr->n_states; i++)
    if (!gptd__run_state_is_final (pr->states[i]))
      {
        gptd__conn_send_error (c, req->id, GPTD__ERROR_CODE__ERROR_CODE_BAD_REQUEST,
                               "prune removes only runs that have ended; %s is not an "
                               "ended state", gptd_run_state_to_string (pr->states[i]));
        return;
      }
  if (!(pr->older_than_s >= 0) || !isfinite (pr->older_than_s))
    {
      gptd__conn_send_error (c, req->id, GPTD__ERROR_CODE__ERROR_CODE_BAD_REQUEST,
                             "prune: older_than_s must be a finite number of seconds, 0 "
                             "or more");
      return;
    }
  double cutoff = (double) g_get_real_time () / G_USEC_PER_SEC - pr->older_than_s;
  g_autoptr (GPtrArray) runs = gptd__run_table_list (c->server->runs);
  /* The answer: the runs removed, as they were (packed before each removal). */
  g_autoptr (GPtrArray) removed =
    g_ptr_array_new_with_free_func ((GDestroyNotify) run_info_free);
  for (guint i = 0; i < runs->len; i++)
    {
      GptdRun *run = runs->pdata[i];
      if (!gptd__run_is_finished (run) || run->worker != NULL || !gptd__conn_may_touch (c, run))
        continue;
      gboolean state_ok = pr->n_states == 0;
      for (gsize k = 0; k < pr->n_states && !state_ok; k++)
        state_ok = pr->states[k] == run->state;
      double ended = run->finished > 0 ? run->finished : run->created;
      if (!state_ok || (pr->older_than_s > 0 && ended > cutoff))
        continue;
      Gptd__RunInfo *copy = run_info_copy (run);
      g_autoptr (GError) error = NULL;
      if (!remove_run (c, run, &error))
        {
          g_warning ("prune: %s", error->message);
          run_info_free (copy);
          continue;
        }
      g_ptr_array_add (removed, copy);
    }
  Gptd__RunList list = GPTD__RUN_LIST__INIT;
  list.runs = (Gptd__RunInfo **) removed->pdata;
  list.n_runs = removed->len;
  Gptd__Response resp = GPTD__RESPONSE__INIT;
  resp.id = req->id;
  resp.body_case = GPTD__RESPONSE__BODY_RUNS;
  resp.runs = &list;
  gptd__conn_send (c, &resp);
}

static void
request_cancel (Conn *c, const Gptd__Request *req)
{
  Server *s = c->server;
  GptdRun *run = lookup_own_run (c, req->id, req->cancel->run_id, "cancel");
  if (run == NULL)
    return;
  if (gptd__run_is_finished (run))
    {
      gptd__conn_send_error (c, req->id, GPTD__ERROR_CODE__ERROR_CODE_BAD_STATE,
                       "Run %s has already ended (%s)", run->id,
                       gptd_run_state_to_string (run->state));
      return;
    }
  g_message ("run %s: cancel asked by pid %d uid %u", run->id, (int) c->pid, (unsigned) c->uid);
  run->cancel_requested = TRUE;
  if (run->queue_seq != 0)
    {
      /* Queued (or resumed, its new worker not started yet): it never starts. */
      run->queue_seq = 0;
      run->resume_pending = FALSE;
      gptd__run_finish (run, GPTD__RUN_STATE__RUN_STATE_CANCELLED, NULL, NULL);
    }
  else if (run->worker != NULL)
    {
      /* SIGTERM: stages checkpoint as they stop; SIGKILL after the grace
       * period when it has not (a stage blocked, say, on a FIFO). */
      gptd__server_stop_run (s, run);
    }
  else
    gptd__run_finish (run, GPTD__RUN_STATE__RUN_STATE_CANCELLED, NULL, NULL);
  /* Without a worker it has ended now (else when its worker is gone). */
  if (run->worker == NULL)
    gptd__server_run_ended (s, run);
  gptd__conn_send_run (c, req->id, run, FALSE);
}

static void
request_resume (Conn *c, const Gptd__Request *req)
{
  Server *s = c->server;
  GptdRun *run = lookup_own_run (c, req->id, req->resume->run_id, "resume");
  if (run == NULL)
    return;
  if (s->stopping)
    {
      gptd__conn_send_error (c, req->id, GPTD__ERROR_CODE__ERROR_CODE_SHUTTING_DOWN,
                       "gptd is stopping and resumes no run");
      return;
    }
  if (!gptd__run_is_finished (run))
    {
      gptd__conn_send_error (c, req->id, GPTD__ERROR_CODE__ERROR_CODE_BAD_STATE,
                       "Run %s is %s; only a run that failed, was cancelled or was "
                       "interrupted can be resumed", run->id,
                       gptd_run_state_to_string (run->state));
      return;
    }
  if (run->state == GPTD__RUN_STATE__RUN_STATE_SUCCEEDED)
    {
      gptd__conn_send_error (c, req->id, GPTD__ERROR_CODE__ERROR_CODE_BAD_STATE,
                       "Run %s has succeeded; there is nothing to resume", run->id);
      return;
    }
  if (gptd__run_checkpoint_removed (run))
    {
      gptd__conn_send_error (c, req->id, GPTD__ERROR_CODE__ERROR_CODE_BAD_STATE,
                             "Run %s was cancelled and its checkpoints were deleted "
                             "(keep-cancelled-checkpoints=false in gptd.conf); it cannot be "
                             "resumed: run its pipeline again", run->id);
      return;
    }
  g_message ("run %s: resume asked by pid %d uid %u (it was %s)", run->id, (int) c->pid,
             (unsigned) c->uid, gptd_run_state_to_string (run->state));
  gptd__run_reopen (run, NULL);
  run->cancel_requested = FALSE;
  run->pause_requested = FALSE;
  /* Its previous worker may have reported the end but not exited yet: what it
   * still says is ignored, and the new one starts once it has gone. */
  run->resume_pending = run->worker != NULL;
  gptd__server_enqueue (s, run, TRUE);
  gptd__conn_send_run (c, req->id, run, FALSE);
}

static void
request_pause (Conn *c, const Gptd__Request *req)
{
  Server *s = c->server;
  GptdRun *run = lookup_own_run (c, req->id, req->pause->run_id, "pause");
  if (run == NULL)
    return;
  if (run->state == GPTD__RUN_STATE__RUN_STATE_QUEUED && run->queue_seq != 0)
    {
      /* Not started yet: it leaves the queue. */
      g_message ("run %s: paused while queued, by uid %u", run->id, (unsigned) c->uid);
      run->queue_seq = 0;
      run->resume_pending = FALSE;
      gptd__run_finish (run, GPTD__RUN_STATE__RUN_STATE_PAUSED, NULL, NULL);
      gptd__conn_send_run (c, req->id, run, FALSE);
      return;
    }
  if (run->state != GPTD__RUN_STATE__RUN_STATE_RUNNING || run->worker == NULL)
    {
      gptd__conn_send_error (c, req->id, GPTD__ERROR_CODE__ERROR_CODE_BAD_STATE,
                             "Run %s is %s; only a running or queued run can be paused", run->id,
                             gptd_run_state_to_string (run->state));
      return;
    }
  g_message ("run %s: pause asked by pid %d uid %u", run->id, (int) c->pid, (unsigned) c->uid);
  /* The worker stops as for a cancel (stages checkpoint); the run ends paused
   * (server-runs.c), and `gptctl resume` continues it from the checkpoint. */
  run->pause_requested = TRUE;
  gptd__server_stop_run (s, run);
  gptd__conn_send_run (c, req->id, run, FALSE);
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
      gptd__conn_send_error (c, req->id, GPTD__ERROR_CODE__ERROR_CODE_NOT_FOUND, "%s", error->message);
      return;
    }
  Gptd__Response resp = GPTD__RESPONSE__INIT;
  resp.id = req->id;
  resp.body_case = GPTD__RESPONSE__BODY_PLUGINS;
  resp.plugins = list;
  gptd__conn_send (c, &resp);
  gptd_plugin_list_free (list);
}

/* The resident memory (bytes) and threads of process @pid, from /proc. */
static void
proc_usage (int pid, guint64 *rss, guint *threads)
{
  g_autofree char *path = g_strdup_printf ("/proc/%d/status", pid);
  g_autofree char *text = NULL;
  *rss = 0;
  *threads = 0;
  if (!g_file_get_contents (path, &text, NULL, NULL))
    return;
  g_auto (GStrv) lines = g_strsplit (text, "\n", -1);
  for (guint i = 0; lines[i]; i++)
    {
      if (g_str_has_prefix (lines[i], "VmRSS:"))
        *rss = g_ascii_strtoull (lines[i] + 6, NULL, 10) * 1024;
      else if (g_str_has_prefix (lines[i], "Threads:"))
        *threads = (guint) g_ascii_strtoull (lines[i] + 8, NULL, 10);
    }
}

static void
request_daemon_status (Conn *c, const Gptd__Request *req)
{
  Server *s = c->server;
  Gptd__DaemonStatus st = GPTD__DAEMON_STATUS__INIT;
  st.version = (char *) PACKAGE_VERSION;
  st.pid = (int32_t) getpid ();
  st.started = s->started;
  st.uptime = (double) g_get_real_time () / G_USEC_PER_SEC - s->started;
  guint threads;
  proc_usage (getpid (), &st.rss_bytes, &threads);
  st.threads = threads;
  st.max_runs = gptd__server_max_runs (s);
  st.run_threads = gptd__server_run_threads (s);
  st.model_cache = s->model_cache;
  st.socket = s->socket_path;
  st.state_dir = (char *) gptd__run_table_get_state_dir (s->runs);

  /* Runs by state, in the enum's order. */
  guint counts[GPTD__RUN_STATE__RUN_STATE_PAUSED + 1] = { 0 };
  g_autoptr (GPtrArray) runs = gptd__run_table_list (s->runs);
  for (guint i = 0; i < runs->len; i++)
    {
      Gptd__RunState state = ((GptdRun *) runs->pdata[i])->state;
      if ((guint) state < G_N_ELEMENTS (counts))
        counts[state]++;
    }
  Gptd__RunStateCount rsc[G_N_ELEMENTS (counts)];
  Gptd__RunStateCount *rscp[G_N_ELEMENTS (counts)];
  for (guint i = 0; i < G_N_ELEMENTS (counts); i++)
    if (counts[i] > 0)
      {
        gptd__run_state_count__init (&rsc[st.n_runs]);
        rsc[st.n_runs].state = (Gptd__RunState) i;
        rsc[st.n_runs].count = counts[i];
        rscp[st.n_runs] = &rsc[st.n_runs];
        st.n_runs++;
      }
  st.runs = rscp;

  g_autoptr (GPtrArray) models = g_ptr_array_new_with_free_func (g_free);
  g_autoptr (GArray) pids = g_array_new (FALSE, FALSE, sizeof (int));
  gptd__server_serving_count (s, models, pids);
  for (guint i = 0; i < pids->len; i++)
    {
      guint64 rss;
      proc_usage (g_array_index (pids, int, i), &rss, &threads);
      st.serving_rss_bytes += rss;
    }
  st.models = (char **) models->pdata;
  st.n_models = models->len;

  Gptd__Response resp = GPTD__RESPONSE__INIT;
  resp.id = req->id;
  resp.body_case = GPTD__RESPONSE__BODY_DAEMON;
  resp.daemon = &st;
  gptd__conn_send (c, &resp);
}

static void
request_ping (Conn *c, const Gptd__Request *req)
{
  gptd__conn_send_ok (c, req->id);
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
  { GPTD__REQUEST__BODY_PAUSE, request_pause },
  { GPTD__REQUEST__BODY_CLASSIFY, gptd__request_classify },
  { GPTD__REQUEST__BODY_DAEMON_STATUS, request_daemon_status },
  { GPTD__REQUEST__BODY_GENERATE, gptd__request_generate },
  { GPTD__REQUEST__BODY_PING, request_ping },
  { GPTD__REQUEST__BODY_OUTPUT, request_output },
  { GPTD__REQUEST__BODY_REMOVE, request_remove },
  { GPTD__REQUEST__BODY_PRUNE, request_prune },
};

void
gptd__conn_dispatch (Conn *c, const Gptd__Request *req)
{
  if (c->refused)
    {
      gptd__conn_send_error (c, req->id, GPTD__ERROR_CODE__ERROR_CODE_PERMISSION_DENIED,
                             "This gptd runs as uid %u and serves only that user, root and the "
                             "users its configuration lists in allow-users=; uid %u is not one "
                             "of them", (unsigned) geteuid (), (unsigned) c->uid);
      return;
    }
  for (gsize i = 0; i < G_N_ELEMENTS (request_table); i++)
    if (request_table[i].body == req->body_case)
      {
        request_table[i].func (c, req);
        return;
      }
  gptd__conn_send_error (c, req->id, GPTD__ERROR_CODE__ERROR_CODE_BAD_REQUEST,
                   "The request has no body this gptd knows");
}

void
gptd__server_checks_init (Server *s)
{
  g_mutex_init (&s->check_out_lock);
  g_queue_init (&s->check_out);
  uv_async_init (&s->loop, &s->check_async, server_on_check_wakeup);
  s->check_async.data = s;
  s->check_pool = g_thread_pool_new (check_job_run, s, CHECK_THREADS, FALSE, NULL);
}

void
gptd__server_checks_close (Server *s)
{
  uv_close ((uv_handle_t *) &s->check_async, NULL);
}

void
gptd__server_checks_free (Server *s)
{
  if (s->check_pool == NULL)
    return;
  g_thread_pool_free (s->check_pool, TRUE, TRUE);
  g_mutex_clear (&s->check_out_lock);
}
