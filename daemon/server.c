/* daemon/server.c: the gptd daemon's main function: the run table, the plugins,
 * the control socket and the loop set up; the clean stop; signals; the
 * configuration read again on SIGHUP. The other parts are in server-*.c (see
 * server-private.h).
 */
#ifdef HAVE_CONFIG_H
#include "config.h"
#endif
#ifndef _GNU_SOURCE
#define _GNU_SOURCE 1
#endif

#include "server-private.h"

#include <errno.h>
#include <signal.h>
#include <sys/stat.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#ifdef HAVE_SYSTEMD
#include <systemd/sd-daemon.h>
#endif

/* ---- Stopping and signals ----------------------------------------------------- */

static void
server_on_stop_timeout (uv_timer_t *timer)
{
  Server *s = timer->data;
  g_warning ("%u worker(s) did not stop within %u ms; killing them", s->n_workers,
             s->stop_timeout_ms);
  s->killed_workers = TRUE;
  gptd__server_kill_workers (s, SIGKILL);
  gptd__server_stop_serving (s, SIGKILL);
}

/* Everything has stopped: close the remaining handles so the loop ends. */
void
gptd__server_finish_stop (Server *s)
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
  gptd__server_http_close (s);
  /* No pipeline is being loaded (gptd__server_maybe_finish_stop). */
  gptd__server_checks_close (s);
  gptd__server_logs_close (s);
  gptd__server_output_close (s);
  /* Each connection is closed once its last answers are out (a few seconds at
   * most). */
  for (GList *l = s->conns; l != NULL;)
    {
      Conn *c = l->data;
      l = l->next;
      gptd__conn_unwatch (c);
      gptd__conn_drain (c);
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
          gptd__server_kill_workers (s, SIGKILL);
          gptd__server_stop_serving (s, SIGKILL);
        }
      return;
    }
  s->stopping = TRUE;
  g_message ("%s received: stopping (%u run(s) and %u generation(s) to stop)",
             g_strsignal (signum), s->n_workers, s->n_gen_jobs);
#ifdef HAVE_SYSTEMD
  sd_notify (0, "STOPPING=1");
#endif
  gptd__server_close_listener (s);
  gptd__server_http_stop (s);
  /* Generations end at their next token, telling their clients they were
   * cancelled. */
  gptd__server_cancel_generations (s);
  gptd__server_stop_serving (s, SIGTERM);
  if (s->n_workers == 0 && s->n_serve_procs == 0)
    {
      gptd__server_maybe_finish_stop (s);
      return;
    }
  gptd__server_kill_workers (s, SIGTERM);
  uv_timer_start (&s->stop_timer, server_on_stop_timeout, s->stop_timeout_ms, 0);
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
  if (fresh.has_model_cache)
    gptd__server_generate_set_cache (s, (guint) fresh.model_cache);
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
  /* More room (max-runs=) starts queued runs now. */
  gptd__server_schedule (s);
  /* http=, http-token-file=, models=: the gateway is started, restarted or
   * stopped. */
  gptd__server_http_apply (s);
}

/* The registry a SIGHUP's probe and scan made: it replaces the old one, which
 * the pipelines being checked may still use (freed once none is). */
static void
server_on_rescanned (Server *s, GptdRegistry *registry, const GError *error)
{
  if (registry == NULL)
    g_warning ("Rescanning the plugins failed, keeping the old ones: %s", error->message);
  else
    {
      g_autoptr (GPtrArray) types = gptd_registry_list (registry);
      g_message ("%u stage type(s) loaded", types->len);
      s->old_registries = g_list_prepend (s->old_registries, s->registry);
      s->registry = registry;
      gptd__server_free_old_registries (s);
    }
  if (s->probe_again && !s->stopping)
    {
      s->probe_again = FALSE;
      g_message ("Rescanning the plugins again, for the SIGHUP that came meanwhile");
      gptd__server_load_registry_async (s, server_on_rescanned);
    }
  gptd__server_maybe_finish_stop (s);
}

void
gptd__server_free_old_registries (Server *s)
{
  if (s->n_check_jobs > 0)
    return;
  g_list_free_full (g_steal_pointer (&s->old_registries), (GDestroyNotify) gptd_registry_free);
}

/* The registry the daemon starts with. */
static void
server_on_first_scan (Server *s, GptdRegistry *registry, const GError *error)
{
  s->registry = registry;
  if (registry == NULL)
    g_printerr ("gptd: %s\n", error->message);
}

static void
server_on_signal (uv_signal_t *handle, int signum)
{
  Server *s = handle->data;
  if (signum == SIGHUP)
    {
      server_reload_config (s);
      if (s->probe != NULL)
        {
          g_message ("SIGHUP received while the plugins are being probed: they are "
                     "rescanned again after that");
          s->probe_again = TRUE;
          return;
        }
      if (s->stopping)
        return;
      g_message ("SIGHUP received: rescanning the plugins (clients are answered meanwhile)");
      gptd__server_load_registry_async (s, server_on_rescanned);
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
  s.started = (double) g_get_real_time () / G_USEC_PER_SEC;

  s.runs = gptd__run_table_open (options->state_dir, &error);
  if (s.runs == NULL)
    {
      g_printerr ("gptd: %s\n", error->message);
      g_free (s.socket_path);
      return 1;
    }
  gptd__run_table_set_event_func (s.runs, gptd__server_on_run_event, &s);
  /* A root daemon runs each run as its owner, who must reach the run directory
   * (theirs) through the state directory: traversable, not listable. */
  if (geteuid () == 0)
    {
      g_autofree char *runs_dir = g_build_filename (options->state_dir, "runs", NULL);
      g_mkdir_with_parents (runs_dir, 0711);
      if (chmod (options->state_dir, 0711) != 0 || chmod (runs_dir, 0711) != 0)
        g_warning ("Cannot make %s traversable for the runs' owners: %s", runs_dir,
                   g_strerror (errno));
    }

  uv_loop_init (&s.loop);
  /* The loop turns for the probe alone: nothing else is open yet. */
  gptd__server_load_registry_async (&s, server_on_first_scan);
  uv_run (&s.loop, UV_RUN_DEFAULT);
  if (s.registry == NULL)
    {
      uv_loop_close (&s.loop);
      gptd__run_table_free (s.runs);
      g_free (s.socket_path);
      return 1;
    }

  int status = 0;
  if (!gptd__server_listen (&s, &error))
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

  /* Serving: how many models are kept loaded, and the threads each serving
   * worker computes with (given, or the cores the runs leave). */
  {
    guint cache_size = options->model_cache, threads = options->generate_threads;
    const char *env;
    if (cache_size == 0 && (env = g_getenv ("GPTD_MODEL_CACHE")) != NULL && atoi (env) > 0)
      cache_size = (guint) atoi (env);
    if (threads == 0 && (env = g_getenv ("GPTD_GENERATE_THREADS")) != NULL && atoi (env) > 0)
      threads = (guint) atoi (env);
    if (cache_size == 0)
      cache_size = GPTD_SERVER_DEFAULT_MODEL_CACHE;
    gptd__server_generate_init (&s, cache_size);
    s.serve_threads = threads;
    g_message ("generate: up to %u model(s) kept loaded in serving workers, %s; runs: at most "
               "%u at once, %u thread(s) each", cache_size,
               threads ? "with the threads generate-threads= gives"
                       : "each with the cores the running runs leave",
               gptd__server_max_runs (&s), gptd__server_run_threads (&s));
  }

  /* Loading submitted pipelines. */
  gptd__server_checks_init (&s);
  gptd__server_logs_init (&s);
  gptd__server_output_init (&s);
  gptd__server_http_init (&s, options->state_dir);

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
  /* Every check has been answered and every generation has ended (the loop
   * waited for them): the threads are idle and are joined here. */
  gptd__server_checks_free (&s);
  {
    int r = uv_loop_close (&s.loop);
    if (r != 0)
      {
        g_warning ("The event loop still had handles open when it ended");
        status = 1;
      }
  }
  gptd_registry_free (s.registry);
  g_list_free_full (s.old_registries, (GDestroyNotify) gptd_registry_free);
  gptd__run_table_free (s.runs);
  g_free (s.socket_path);
  g_free (s.config_path);
  gptd__config_clear (&s.cmdline);
  gptd__config_clear (&s.config);
  return status;
}

