/* daemon/server-runs.c: run supervision: each run's worker process started or
 * resumed, its events recorded, and how it ended turned into the run's state.
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
  gptd__run_record_event (run, event);
}


/* Stops the daemon once nothing runs any more (after a stop was asked for). */
void
gptd__server_maybe_finish_stop (Server *s)
{
  if (s->stopping && s->n_workers == 0 && s->n_gen_jobs == 0 && s->n_check_jobs == 0)
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
      else if (!gptd__server_start_worker (s, run, TRUE, &error))
        {
          g_warning ("run %s: %s", run->id, error->message);
          gptd__run_finish (run, GPTD__RUN_STATE__RUN_STATE_FAILED, NULL, error->message);
        }
    }
  gptd__server_notify_status (s);
  gptd__server_maybe_finish_stop (s);
}

gboolean
gptd__server_start_worker (Server *s, GptdRun *run, gboolean resume, GError **error)
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
