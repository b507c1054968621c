/* daemon/server-probe.c: probing the plugins in a child process before the
 * daemon loads them, so that a plugin that crashes while loading is skipped.
 */
#ifdef HAVE_CONFIG_H
#include "config.h"
#endif
#ifndef _GNU_SOURCE
#define _GNU_SOURCE 1
#endif

#include "server-private.h"

#include <errno.h>
#include <poll.h>
#include <signal.h>
#include <string.h>
#include <sys/wait.h>
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
GptdRegistry *
gptd__server_load_registry (GError **error)
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
