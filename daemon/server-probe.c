/* daemon/server-probe.c: probing the plugins in a child process before the
 * daemon loads them, so that a plugin that crashes while loading is skipped;
 * asynchronous, so that the loop (clients, signals, the watchdog) never waits
 * for it.
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
#include <string.h>
#include <unistd.h>

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
 * The probe never blocks the loop: the child is started with uv_spawn, its
 * report read and its time limit kept by the loop, and once it has loaded
 * everything the daemon's own scan runs on a thread of its own, which wakes the
 * loop when it is done (uv_async_send). At start the loop turns for the probe
 * alone before the socket is opened; on SIGHUP clients are answered meanwhile
 * with the old registry, which is swapped for the new one when it is ready (and
 * freed once no pipeline being checked uses it). */

#define PROBE_TIMEOUT_S 10
#define PROBE_MAX_ATTEMPTS 16

/* GPTD_PLUGIN_EXCLUDE as the daemon was started with it: each round of probes
 * starts again from it, so that a plugin fixed since it crashed is loaded on
 * the next SIGHUP. */
static char *probe_user_exclude;
static gboolean probe_user_exclude_known;

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

/* One round of probes, then the daemon's scan. */
struct _Probe {
  Server *server;
  GptdProbeDoneFunc done;
  int open_handles;          /* the timer and the async handle */
  uv_timer_t timer;          /* an attempt's time limit */
  uv_async_t async;          /* the scanning thread is done */
  guint attempt;
  GHashTable *excluded;      /* absolute paths excluded this round */
  GString *exclude;          /* GPTD_PLUGIN_EXCLUDE for the next attempt */
  /* The attempt under way. */
  uv_process_t process;
  uv_pipe_t out;
  int attempt_handles;
  GString *report;
  gboolean exited;
  gboolean eof;
  gboolean timed_out;
  gint64 exit_status;
  int term_signal;
  /* The scan. */
  GThread *thread;
  GptdRegistry *registry;
  GError *error;
};

static void probe_attempt (Probe *p);

static void
probe_handle_closed (uv_handle_t *handle)
{
  Probe *p = handle->data;
  if (--p->open_handles > 0)
    return;
  g_hash_table_unref (p->excluded);
  g_string_free (p->exclude, TRUE);
  if (p->report != NULL)
    g_string_free (p->report, TRUE);
  g_free (p);
}

/* Scanning thread: the daemon's own registry, every plugin the probe let through. */
static gpointer
probe_scan_thread (gpointer data)
{
  Probe *p = data;
  g_autoptr (GptdRegistry) registry = gptd_registry_new ();
  if (gptd_registry_scan (registry, &p->error))
    p->registry = g_steal_pointer (&registry);
  uv_async_send (&p->async);
  return NULL;
}

static void
probe_on_scanned (uv_async_t *handle)
{
  Probe *p = handle->data;
  Server *s = p->server;
  g_thread_join (p->thread);
  p->thread = NULL;
  if (p->registry != NULL)
    {
      /* What the scan skipped or rejected goes to the log too, not only to
       * `gptctl plugins`. */
      GPtrArray *warnings = gptd_registry_get_warnings (p->registry);
      for (guint i = 0; warnings != NULL && i < warnings->len; i++)
        g_warning ("Plugin skipped: %s", (const char *) warnings->pdata[i]);
    }
  s->probe = NULL;
  p->done (s, p->registry, p->error);
  g_clear_error (&p->error);
  uv_close ((uv_handle_t *) &p->timer, probe_handle_closed);
  uv_close ((uv_handle_t *) &p->async, probe_handle_closed);
}

/* The probes are over (the plugins load, or the culprits are excluded): the
 * daemon scans them on a thread. */
static void
probe_finish (Probe *p)
{
  p->thread = g_thread_new ("gptd-scan", probe_scan_thread, p);
}

/* Looks at how an attempt ended: done, or another attempt without the culprit. */
static void
probe_judge (Probe *p)
{
  g_autofree char *culprit = NULL, *how = NULL;
  gboolean done;
  probe_parse (p->report->str, &culprit, &done);
  /* Once the probe said "done" every plugin is loaded: how it ends after that
   * (a leak checker's exit status, say) is not the loading's doing. */
  if (done && culprit == NULL && !p->timed_out)
    {
      probe_finish (p);
      return;
    }
  if (p->timed_out)
    how = g_strdup_printf ("did not finish loading within %d s", PROBE_TIMEOUT_S);
  else if (p->term_signal != 0)
    how = g_strdup_printf ("crashed while loading (signal %d, %s)", p->term_signal,
                           g_strsignal (p->term_signal));
  else if (p->exit_status != 0)
    how = g_strdup_printf ("crashed while loading (exit status %d)", (int) p->exit_status);
  else if (!done)
    how = g_strdup ("ended the process while loading (exit status 0)");
  else
    {
      probe_finish (p);
      return;
    }
  if (culprit == NULL)
    {
      g_warning ("Probing the plugins failed without naming a plugin (the probe %s); "
                 "loading them all", how);
      probe_finish (p);
      return;
    }
  if (strstr (culprit, G_SEARCHPATH_SEPARATOR_S) != NULL)
    {
      g_warning ("plugin %s %s, and cannot be listed in %s (its name holds a "
                 "'%s'); loading it anyway",
                 culprit, how, GPTD_PLUGIN_EXCLUDE_ENV, G_SEARCHPATH_SEPARATOR_S);
      probe_finish (p);
      return;
    }
  /* Listed as an absolute path, since workers start in their run directory. */
  g_autofree char *abs = g_canonicalize_filename (culprit, NULL);
  if (g_hash_table_contains (p->excluded, abs))
    {
      g_warning ("plugin %s %s although it is listed in %s; giving up probing",
                 culprit, how, GPTD_PLUGIN_EXCLUDE_ENV);
      probe_finish (p);
      return;
    }
  g_warning ("plugin %s %s: skipped", culprit, how);
  g_hash_table_add (p->excluded, g_strdup (abs));
  if (p->exclude->len > 0)
    g_string_append (p->exclude, G_SEARCHPATH_SEPARATOR_S);
  g_string_append (p->exclude, abs);
  g_setenv (GPTD_PLUGIN_EXCLUDE_ENV, p->exclude->str, TRUE);
  if (++p->attempt >= PROBE_MAX_ATTEMPTS)
    {
      g_warning ("Plugins still crash after %d probes; loading the rest without probing",
                 PROBE_MAX_ATTEMPTS);
      probe_finish (p);
      return;
    }
  probe_attempt (p);
}

static void
probe_attempt_closed (uv_handle_t *handle)
{
  Probe *p = handle->data;
  if (--p->attempt_handles > 0)
    return;
  probe_judge (p);
}

/* The child has exited and its report has been read: the attempt is over. */
static void
probe_maybe_end_attempt (Probe *p)
{
  if (!p->exited || !p->eof || p->attempt_handles != 2)
    return;
  uv_timer_stop (&p->timer);
  uv_close ((uv_handle_t *) &p->out, probe_attempt_closed);
  uv_close ((uv_handle_t *) &p->process, probe_attempt_closed);
}

static void
probe_alloc (uv_handle_t *handle, size_t suggested, uv_buf_t *buf)
{
  buf->base = g_malloc (4096);
  buf->len = 4096;
}

static void
probe_read (uv_stream_t *stream, ssize_t nread, const uv_buf_t *buf)
{
  Probe *p = stream->data;
  if (nread > 0)
    g_string_append_len (p->report, buf->base, nread);
  g_free (buf->base);
  if (nread < 0)
    {
      uv_read_stop (stream);
      p->eof = TRUE;
      probe_maybe_end_attempt (p);
    }
}

static void
probe_exited (uv_process_t *process, int64_t exit_status, int term_signal)
{
  Probe *p = process->data;
  p->exited = TRUE;
  p->exit_status = exit_status;
  p->term_signal = term_signal;
  probe_maybe_end_attempt (p);
}

static void
probe_on_timeout (uv_timer_t *timer)
{
  Probe *p = timer->data;
  p->timed_out = TRUE;
  if (!p->exited)
    uv_process_kill (&p->process, SIGKILL);
  /* A process the child started may hold its output open: stop waiting. */
  if (!p->eof)
    {
      uv_read_stop ((uv_stream_t *) &p->out);
      p->eof = TRUE;
    }
  probe_maybe_end_attempt (p);
}

/* Starts one probe: `gptd --probe-plugins` with the daemon's environment
 * (GPTD_PLUGIN_EXCLUDE included); its stderr is the daemon's, so what a plugin
 * prints there lands in the daemon's log. */
static void
probe_attempt (Probe *p)
{
  Server *s = p->server;
  if (p->report != NULL)
    g_string_truncate (p->report, 0);
  else
    p->report = g_string_new (NULL);
  p->exited = p->eof = p->timed_out = FALSE;
  p->exit_status = 0;
  p->term_signal = 0;
  uv_pipe_init (&s->loop, &p->out, 0);
  p->out.data = p;
  p->process.data = p;
  p->attempt_handles = 2;

  char *args[] = { (char *) "gptd", (char *) "--probe-plugins", NULL };
  uv_stdio_container_t stdio[3];
  stdio[0].flags = UV_IGNORE;
  stdio[1].flags = UV_CREATE_PIPE | UV_WRITABLE_PIPE;
  stdio[1].data.stream = (uv_stream_t *) &p->out;
  stdio[2].flags = UV_INHERIT_FD;
  stdio[2].data.fd = 2;
  g_auto (GStrv) env = g_get_environ ();
  uv_process_options_t opts = { 0 };
  opts.exit_cb = probe_exited;
  opts.env = env;
  opts.file = "/proc/self/exe";
  opts.args = args;
  opts.stdio_count = 3;
  opts.stdio = stdio;
  int r = uv_spawn (&s->loop, &p->process, &opts);
  if (r != 0)
    {
      g_warning ("Probing the plugins failed without naming a plugin (the probe could not "
                 "be started: %s); loading them all", uv_strerror (r));
      p->attempt_handles = 2;
      uv_close ((uv_handle_t *) &p->out, NULL);
      uv_close ((uv_handle_t *) &p->process, NULL);
      p->attempt_handles = 0;
      probe_finish (p);
      return;
    }
  uv_read_start ((uv_stream_t *) &p->out, probe_alloc, probe_read);
  uv_timer_start (&p->timer, probe_on_timeout, PROBE_TIMEOUT_S * 1000, 0);
}

void
gptd__server_load_registry_async (Server *s, GptdProbeDoneFunc done)
{
  g_return_if_fail (s->probe == NULL);
  if (!probe_user_exclude_known)
    {
      probe_user_exclude = g_strdup (g_getenv (GPTD_PLUGIN_EXCLUDE_ENV));
      probe_user_exclude_known = TRUE;
    }
  /* Each round starts from the exclusions the daemon was started with. Workers
   * read the environment when they start, on the loop thread, as this does. */
  if (g_strcmp0 (g_getenv (GPTD_PLUGIN_EXCLUDE_ENV), probe_user_exclude) != 0)
    {
      if (probe_user_exclude)
        g_setenv (GPTD_PLUGIN_EXCLUDE_ENV, probe_user_exclude, TRUE);
      else
        g_unsetenv (GPTD_PLUGIN_EXCLUDE_ENV);
    }
  Probe *p = g_new0 (Probe, 1);
  p->server = s;
  p->done = done;
  p->excluded = g_hash_table_new_full (g_str_hash, g_str_equal, g_free, NULL);
  p->exclude = g_string_new (probe_user_exclude);
  uv_timer_init (&s->loop, &p->timer);
  uv_async_init (&s->loop, &p->async, probe_on_scanned);
  p->timer.data = p->async.data = p;
  p->open_handles = 2;
  s->probe = p;
  probe_attempt (p);
}
