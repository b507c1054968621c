/* daemon/server-runs.c: run supervision: the queue of runs waiting for a slot
 * (max-runs run at once), each run's worker process started or resumed with
 * its owner's rights and its share of the cores, its events recorded, pause and
 * cancel (escalated to SIGKILL after a grace period), and how it ended turned
 * into the run's state.
 */
#ifdef HAVE_CONFIG_H
#include "config.h"
#endif
#ifndef _GNU_SOURCE
#define _GNU_SOURCE 1
#endif

#include "server-private.h"

#include <signal.h>
#include <string.h>
#include <unistd.h>

#ifdef HAVE_SYSTEMD
#include <systemd/sd-daemon.h>
#endif

/* ---- Workers ------------------------------------------------------------------ */

/* Tells systemd (when it runs gptd) how many runs are going. */
void
gptd__server_notify_status (Server *s)
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
  /* A run paused: its worker was told to stop as a cancel does (stages
   * checkpoint), and the run ends paused, to be resumed. */
  if (run->pause_requested && !run->cancel_requested
      && event->body_case == GPTD__EVENT__BODY_STATE && event->state != NULL
      && event->state->state == GPTD__RUN_STATE__RUN_STATE_CANCELLED)
    {
      if (!gptd__run_is_finished (run))
        gptd__run_finish (run, GPTD__RUN_STATE__RUN_STATE_PAUSED, NULL, NULL);
      return;
    }
  gptd__run_record_event (run, event);
}


/* Stops the daemon once nothing runs any more (after a stop was asked for). */
void
gptd__server_maybe_finish_stop (Server *s)
{
  if (s->stopping && s->n_workers == 0 && s->n_gen_jobs == 0 && s->n_check_jobs == 0
      && s->n_serve_procs == 0 && s->probe == NULL && !s->http_running)
    gptd__server_finish_stop (s);
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
          /* Killed by the cancel's SIGTERM before it could handle it, or by
           * the SIGKILL that followed. */
          state = GPTD__RUN_STATE__RUN_STATE_CANCELLED;
          if (term_signal == SIGKILL)
            why = g_strdup_printf ("the worker did not stop within %u s of the cancel and "
                                   "was killed", CANCEL_GRACE_MS (s) / 1000);
        }
      else if (run->pause_requested)
        {
          state = GPTD__RUN_STATE__RUN_STATE_PAUSED;
          if (term_signal == SIGKILL)
            why = g_strdup_printf ("the worker did not stop within %u s of the pause and "
                                   "was killed; it resumes from its last checkpoint",
                                   CANCEL_GRACE_MS (s) / 1000);
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
  run->pause_requested = FALSE;
  if (run->kill_timer != NULL)
    {
      uv_timer_stop (run->kill_timer);
      uv_close ((uv_handle_t *) run->kill_timer, (uv_close_cb) g_free);
      run->kill_timer = NULL;
    }
  gptd__run_set_pid (run, 0);
  s->n_workers--;
  if (!resume)
    gptd__server_run_ended (s, run);
  if (resume && s->stopping)
    gptd__run_finish (run, GPTD__RUN_STATE__RUN_STATE_INTERRUPTED, NULL,
                      "gptd stopped before the run could resume");
  /* A resume asked for while this worker was exiting waits in the queue; a
   * slot is free now. */
  gptd__server_schedule (s);
  gptd__server_notify_status (s);
  gptd__server_maybe_finish_stop (s);
}

void
gptd__server_run_ended (Server *s, GptdRun *run)
{
  if (run->state != GPTD__RUN_STATE__RUN_STATE_CANCELLED || run->worker != NULL
      || !s->config.has_keep_cancelled_checkpoints || s->config.keep_cancelled_checkpoints)
    return;
  g_autoptr (GError) error = NULL;
  if (!gptd__run_remove_checkpoint (run, &error))
    g_warning ("run %s: cancelled; deleting its checkpoints (keep-cancelled-checkpoints=false) "
               "failed: %s", run->id, error->message);
  else
    g_message ("run %s: cancelled; its checkpoints are deleted "
               "(keep-cancelled-checkpoints=false)", run->id);
}

gboolean
gptd__server_start_worker (Server *s, GptdRun *run, gboolean resume, GError **error)
{
  WorkerLink *link = g_new0 (WorkerLink, 1);
  link->server = s;
  link->run = run;
  GptdWorkerSetup setup = { 0 };
  setup.threads = gptd__server_run_threads (s);
  /* A root daemon runs each run with its owner's rights (docs/security.md). */
  setup.as_user = geteuid () == 0 && run->owner_uid != 0;
  setup.uid = run->owner_uid;
  setup.gid = run->owner_gid;
  GptdWorker *w = gptd__worker_spawn (&s->loop, run->dir, run->id, resume, &setup,
                                      server_on_worker_event,
                                      server_on_worker_exit, link, error);
  if (w == NULL)
    {
      g_free (link);
      return FALSE;
    }
  run->worker = w;
  s->n_workers++;
  gptd__server_notify_status (s);
  gptd__run_set_pid (run, gptd__worker_get_pid (w));
  return TRUE;
}

void
gptd__server_kill_workers (Server *s, int signum)
{
  g_autoptr (GPtrArray) runs = gptd__run_table_list (s->runs);
  for (guint i = 0; i < runs->len; i++)
    {
      GptdRun *run = runs->pdata[i];
      if (run->worker != NULL)
        gptd__worker_kill (run->worker, signum);
    }
}

/* ---- Scheduling ----------------------------------------------------------------- */

guint
gptd__server_max_runs (Server *s)
{
  if (s->config.has_max_runs)
    return (guint) s->config.max_runs;
  /* One training run per four cores, one at least: a run's threads fill the
   * cores they are given, and two runs sharing two cores are both slower than
   * one after the other. */
  return MAX (1u, g_get_num_processors () / 4);
}

guint
gptd__server_run_threads (Server *s)
{
  if (s->config.has_threads)
    return (guint) s->config.threads;
  return MAX (1u, g_get_num_processors () / gptd__server_max_runs (s));
}

void
gptd__server_enqueue (Server *s, GptdRun *run, gboolean resume)
{
  run->queue_seq = ++s->queue_clock;
  run->queue_resume = resume;
  gptd__server_schedule (s);
}

guint
gptd__server_queue_position (Server *s, const GptdRun *run)
{
  if (run->queue_seq == 0)
    return 0;
  guint ahead = 0;
  g_autoptr (GPtrArray) runs = gptd__run_table_list (s->runs);
  for (guint i = 0; i < runs->len; i++)
    {
      GptdRun *r = runs->pdata[i];
      if (r->queue_seq != 0 && r->queue_seq < run->queue_seq)
        ahead++;
    }
  return ahead + 1;
}

/* The run that has waited longest for a slot and can start now. */
static GptdRun *
server_next_queued (Server *s)
{
  GptdRun *next = NULL;
  g_autoptr (GPtrArray) runs = gptd__run_table_list (s->runs);
  for (guint i = 0; i < runs->len; i++)
    {
      GptdRun *r = runs->pdata[i];
      /* A run resumed while its old worker exits waits for it to be gone. */
      if (r->queue_seq != 0 && r->worker == NULL && (next == NULL || r->queue_seq < next->queue_seq))
        next = r;
    }
  return next;
}

void
gptd__server_schedule (Server *s)
{
  if (s->stopping)
    return;
  GptdRun *run;
  while (s->n_workers < gptd__server_max_runs (s) && (run = server_next_queued (s)) != NULL)
    {
      gboolean resume = run->queue_resume;
      run->queue_seq = 0;
      run->queue_resume = FALSE;
      run->resume_pending = FALSE;
      g_autoptr (GError) error = NULL;
      if (!gptd__server_start_worker (s, run, resume, &error))
        {
          g_warning ("run %s: %s", run->id, error->message);
          gptd__run_finish (run, GPTD__RUN_STATE__RUN_STATE_FAILED, NULL, error->message);
          continue;
        }
      g_message ("run %s: %s (%u of at most %u run(s) running, %u thread(s) each)", run->id,
                 resume ? "resumed" : "started", s->n_workers, gptd__server_max_runs (s),
                 gptd__server_run_threads (s));
    }
}

/* ---- Cancel and pause ----------------------------------------------------------- */

typedef struct {
  uv_timer_t timer;
  Server *server;
  GptdRun *run;
} KillTimer;

static void
server_on_kill_timer (uv_timer_t *timer)
{
  KillTimer *kt = (KillTimer *) timer;
  Server *s = kt->server;
  GptdRun *run = kt->run;
  if (run->worker == NULL)
    return;
  g_message ("run %s: worker %d did not stop within %u s of the %s; killing it (SIGKILL)",
             run->id, run->pid, CANCEL_GRACE_MS (s) / 1000,
             run->cancel_requested ? "cancel" : "pause");
  /* Watchers and `gptctl logs` see it too. */
  g_autofree char *line = g_strdup_printf ("the worker did not stop within %u s of the %s: "
                                           "killing it (SIGKILL)", CANCEL_GRACE_MS (s) / 1000,
                                           run->cancel_requested ? "cancel" : "pause");
  Gptd__Event ev = GPTD__EVENT__INIT;
  Gptd__LogLine log = GPTD__LOG_LINE__INIT;
  log.stage = (char *) "gptd";
  log.level = GPTD__LOG_LEVEL__LOG_LEVEL_WARNING;
  log.message = line;
  ev.body_case = GPTD__EVENT__BODY_LOG;
  ev.log = &log;
  ev.run_id = (char *) "";
  gptd__run_record_event (run, &ev);
  gptd__worker_kill (run->worker, SIGKILL);
}

void
gptd__server_stop_run (Server *s, GptdRun *run)
{
  if (run->worker == NULL)
    return;
  gptd__worker_kill (run->worker, SIGTERM);
  if (run->kill_timer == NULL)
    {
      KillTimer *kt = g_new0 (KillTimer, 1);
      kt->server = s;
      kt->run = run;
      run->kill_timer = &kt->timer;
      uv_timer_init (&s->loop, run->kill_timer);
      uv_timer_start (run->kill_timer, server_on_kill_timer, CANCEL_GRACE_MS (s), 0);
    }
}
