/* daemon/server-http.c: the daemon's side of the HTTP gateway. With http= set
 * in gptd.conf the daemon starts the gateway (`gptd --http ADDR --socket SOCKET
 * --models DIR [--token-file FILE]`, started with uv_spawn; libsoup never runs in
 * the daemon's loop), restarts it when it dies, after a pause that doubles from
 * 1 s to 60 s while it keeps dying within a minute of starting, stops it
 * (SIGTERM) when the daemon stops, and restarts it when a reload changes http=,
 * http-token-file= or models=. A gateway that exits with status 2 (bad usage: an
 * address it cannot use, an unreadable token file, a public address without a
 * token) is not restarted until the configuration changes. A root daemon runs it
 * as the user gptd when there is one.
 */
#ifdef HAVE_CONFIG_H
#include "config.h"
#endif

#include "server-private.h"

#include <pwd.h>
#include <signal.h>
#include <string.h>
#include <unistd.h>

#define HTTP_BACKOFF_MIN_MS 1000
#define HTTP_BACKOFF_MAX_MS 60000
/* A gateway that ran this long before dying is restarted after the shortest
 * pause. */
#define HTTP_STABLE_MS 60000

/* The arguments the configuration asks for, NULL when http= is not set. */
static char **
http_wanted_argv (Server *s)
{
  if (!s->config.has_http)
    return NULL;
  GPtrArray *args = g_ptr_array_new ();
  g_ptr_array_add (args, g_strdup ("gptd"));
  g_ptr_array_add (args, g_strdup ("--http"));
  g_ptr_array_add (args, g_strdup (s->config.http));
  g_ptr_array_add (args, g_strdup ("--socket"));
  g_ptr_array_add (args, g_strdup (s->socket_path));
  g_ptr_array_add (args, g_strdup ("--models"));
  g_ptr_array_add (args, s->config.has_models ? g_strdup (s->config.models)
                                              : g_build_filename (s->http_state_dir, "models",
                                                                  NULL));
  if (s->config.has_http_token_file)
    {
      g_ptr_array_add (args, g_strdup ("--token-file"));
      g_ptr_array_add (args, g_strdup (s->config.http_token_file));
    }
  g_ptr_array_add (args, NULL);
  return (char **) g_ptr_array_free (args, FALSE);
}

static gboolean
argv_equal (char **a, char **b)
{
  if (a == NULL || b == NULL)
    return a == b;
  return g_strv_equal ((const char *const *) a, (const char *const *) b);
}

static void http_start (Server *s);

static void
http_on_closed (uv_handle_t *handle)
{
  Server *s = handle->data;
  s->http_running = FALSE;
  if (s->stopping)
    {
      gptd__server_maybe_finish_stop (s);
      return;
    }
  /* A change of configuration while it ran: start the new one now. */
  if (s->http_restart_now)
    {
      s->http_restart_now = FALSE;
      http_start (s);
    }
}

static void
http_on_timer (uv_timer_t *timer)
{
  Server *s = timer->data;
  if (!s->stopping && !s->http_running)
    http_start (s);
}

static void
http_on_exit (uv_process_t *process, int64_t exit_status, int term_signal)
{
  Server *s = process->data;
  gint64 ran_ms = (g_get_monotonic_time () - s->http_started) / 1000;
  if (s->stopping || s->http_restart_now)
    g_info ("HTTP gateway (pid %d) stopped", process->pid);
  else if (exit_status == 2)
    {
      g_warning ("The HTTP gateway (pid %d) refused its configuration (exit status 2, its "
                 "message is above); it is started again when http=, http-token-file= or "
                 "models= change", process->pid);
      s->http_bad_config = TRUE;
    }
  else
    {
      if (ran_ms >= HTTP_STABLE_MS)
        s->http_backoff_ms = HTTP_BACKOFF_MIN_MS;
      g_warning ("The HTTP gateway (pid %d) %s %d; starting it again in %u s", process->pid,
                 term_signal ? "was killed by signal" : "exited with status",
                 term_signal ? term_signal : (int) exit_status, s->http_backoff_ms / 1000);
      uv_timer_start (&s->http_timer, http_on_timer, s->http_backoff_ms, 0);
      s->http_backoff_ms = MIN (s->http_backoff_ms * 2, HTTP_BACKOFF_MAX_MS);
    }
  uv_close ((uv_handle_t *) process, http_on_closed);
}

static void
http_start (Server *s)
{
  g_strfreev (s->http_argv);
  s->http_argv = http_wanted_argv (s);
  if (s->http_argv == NULL || s->http_bad_config)
    return;
  uv_stdio_container_t stdio[3];
  stdio[0].flags = UV_IGNORE;
  stdio[1].flags = UV_INHERIT_FD;
  stdio[1].data.fd = 1;
  stdio[2].flags = UV_INHERIT_FD;
  stdio[2].data.fd = 2;
  /* It ends with the daemon (http-server.c reads this). */
  g_auto (GStrv) env = g_environ_setenv (g_get_environ (), "GPTD_HTTP_SUPERVISED", "1", TRUE);
  uv_process_options_t opts = { 0 };
  opts.exit_cb = http_on_exit;
  opts.file = "/proc/self/exe";
  opts.args = s->http_argv;
  opts.env = env;
  opts.stdio_count = 3;
  opts.stdio = stdio;
  /* Never root: a root daemon runs the gateway as the user gptd. */
  struct passwd *pw = geteuid () == 0 ? getpwnam ("gptd") : NULL;
  if (pw != NULL)
    {
      opts.flags |= UV_PROCESS_SETUID | UV_PROCESS_SETGID;
      opts.uid = pw->pw_uid;
      opts.gid = pw->pw_gid;
    }
  else if (geteuid () == 0)
    g_warning ("There is no user gptd: the HTTP gateway runs as root");
  s->http_process.data = s;
  int r = uv_spawn (&s->loop, &s->http_process, &opts);
  if (r != 0)
    {
      g_warning ("The HTTP gateway could not be started: %s; trying again in %u s",
                 uv_strerror (r), s->http_backoff_ms / 1000);
      s->http_running = TRUE;
      uv_close ((uv_handle_t *) &s->http_process, http_on_closed);
      uv_timer_start (&s->http_timer, http_on_timer, s->http_backoff_ms, 0);
      s->http_backoff_ms = MIN (s->http_backoff_ms * 2, HTTP_BACKOFF_MAX_MS);
      return;
    }
  s->http_running = TRUE;
  s->http_started = g_get_monotonic_time ();
  g_message ("HTTP gateway started on %s (pid %d)", s->config.http, s->http_process.pid);
}

void
gptd__server_http_init (Server *s, const char *state_dir)
{
  s->http_state_dir = g_strdup (state_dir);
  s->http_backoff_ms = HTTP_BACKOFF_MIN_MS;
  uv_timer_init (&s->loop, &s->http_timer);
  s->http_timer.data = s;
  http_start (s);
}

void
gptd__server_http_apply (Server *s)
{
  if (s->stopping)
    return;
  g_auto (GStrv) wanted = http_wanted_argv (s);
  if (argv_equal (wanted, s->http_argv) && (s->http_running || wanted == NULL))
    return;
  if (!argv_equal (wanted, s->http_argv))
    {
      s->http_bad_config = FALSE;
      s->http_backoff_ms = HTTP_BACKOFF_MIN_MS;
    }
  uv_timer_stop (&s->http_timer);
  if (s->http_running)
    {
      if (argv_equal (wanted, s->http_argv))
        return;
      g_message ("The HTTP gateway's settings changed: %s", wanted ? "restarting it"
                                                                   : "stopping it");
      s->http_restart_now = wanted != NULL;
      uv_process_kill (&s->http_process, SIGTERM);
      return;
    }
  http_start (s);
}

void
gptd__server_http_stop (Server *s)
{
  uv_timer_stop (&s->http_timer);
  s->http_restart_now = FALSE;
  if (s->http_running && uv_is_active ((uv_handle_t *) &s->http_process))
    uv_process_kill (&s->http_process, SIGTERM);
}

void
gptd__server_http_close (Server *s)
{
  uv_close ((uv_handle_t *) &s->http_timer, NULL);
  g_clear_pointer (&s->http_argv, g_strfreev);
  g_clear_pointer (&s->http_state_dir, g_free);
}
