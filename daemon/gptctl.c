/* daemon/gptctl.c: gptctl, the command-line client of the gptd daemon: submits,
 * lists, watches, cancels, pauses, resumes and removes runs, reads their logs
 * and output, shows the daemon's own status, lists stage types, validates
 * pipelines, streams generated text and prints classifier predictions over the
 * control socket (docs/control-protocol.md).
 */
#ifdef HAVE_CONFIG_H
#include "config.h"
#endif

#include "paths.h"

#include <gptd/frame.h>
#include <gptd/message-json.h>
#include <gptd/registry.h>
#include <gptd/runner.h>
#include <gptd.pb-c.h>

#include <errno.h>
#include <locale.h>
#include <math.h>
#include <stdio.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

/* Exit statuses (documented in --help and docs/control-protocol.md). */
enum {
  EXIT_OK = 0,
  EXIT_RUN_FAILED = 1,   /* the run failed, was cancelled or interrupted; invalid pipeline */
  EXIT_USAGE = 2,
  EXIT_UNREACHABLE = 3,  /* gptd is not running, or the socket cannot be used */
  EXIT_NOT_FOUND = 4,    /* no such run or stage type */
  EXIT_REFUSED = 5,      /* the daemon refused: bad state, unsupported, stopping */
  EXIT_PROTOCOL = 6,     /* the connection broke, or an answer made no sense */
};

static const char gptctl_description[] =
  "Commands:\n"
  "  run FILE [--set KEY=VALUE]... [--wait]\n"
  "                     submit a pipeline; prints the run's ID. --wait then watches\n"
  "                     it to the end and exits with its result. Relative paths in\n"
  "                     the pipeline resolve against the file's directory.\n"
  "  ps                 list the runs, with their owners\n"
  "  status [ID]        show one run; without an ID, the daemon itself (version,\n"
  "                     uptime, runs by state, loaded models, memory)\n"
  "  watch ID [--from-start]\n"
  "                     follow a run until it ends: a progress bar on a terminal,\n"
  "                     plain lines otherwise; --from-start replays its past events.\n"
  "                     Ctrl-C stops watching; the run goes on.\n"
  "  logs ID            print a run's log lines and state changes\n"
  "  output ID          print a run's output (its worker's stdout and stderr)\n"
  "  rm ID              remove a run that has ended, and its run directory\n"
  "  prune [--older-than DURATION] [--state STATE]...\n"
  "                     remove your ended runs (root: everyone's) that ended longer\n"
  "                     ago than DURATION (90s, 30m, 12h, 7d; default: any age) and\n"
  "                     are in one of the STATEs (default: every ended state)\n"
  "  cancel ID [--no-wait]\n"
  "                     cancel a run (stages checkpoint as they stop) and wait for\n"
  "                     it to end\n"
  "  pause ID [--no-wait]\n"
  "                     pause a run (stages checkpoint, its worker stops) and wait\n"
  "                     for it to be paused\n"
  "  resume ID [--wait]\n"
  "                     resume a run that failed, was cancelled, was interrupted or\n"
  "                     was paused\n"
  "                     from its last checkpoint, in its run directory; --wait\n"
  "                     watches it to the end\n"
  "  generate --model DIR [--max-new-tokens N] [--temperature T] [--top-k K]\n"
  "           [--top-p P] [--seed S] [--eos-id ID] [--stop S]... [--weights F]\n"
  "           PROMPT\n"
  "                     stream text the daemon generates from PROMPT (- reads it\n"
  "                     from standard input) with the model in DIR (config.json,\n"
  "                     model.safetensors, vocab.json, merges.txt; or a checkpoint\n"
  "                     directory). Defaults: 50 tokens, greedy (temperature 0),\n"
  "                     no top-k, top-p 1, a random seed, no eos, no stop string,\n"
  "                     the directory's own weight format. The text ends before\n"
  "                     the first --stop string. The daemon keeps recently used\n"
  "                     models loaded. Ctrl-C stops the generation.\n"
  "  plugins [TYPE]     list the daemon's stage types, or describe one\n"
  "  validate FILE [--set KEY=VALUE]...\n"
  "                     check a pipeline with the daemon's plugins\n"
  "  ping               check that the daemon answers\n"
  "\n"
  "--json prints what the daemon answered as JSON (one object, or one per line for\n"
  "watch, logs and generate; the PredictionList for classify) instead of text.\n"
  "\n"
  "Environment:\n"
  "  GPTD_SOCKET        the socket when --socket is not given; default\n"
  "                     /run/gptd/gptd.sock for root, else\n"
  "                     $XDG_RUNTIME_DIR/gptd/gptd.sock when it exists, else\n"
  "                     the system daemon's /run/gptd/gptd.sock when that exists\n"
  "\n"
  "Exit status:\n"
  "  0  success\n"
  "  1  the run failed, was cancelled or was interrupted; the pipeline is invalid;\n"
  "     (generate) the generation was cancelled (the daemon is stopping)\n"
  "  2  bad usage, or the pipeline file cannot be read; (generate) a bad parameter\n"
  "     or a model the daemon cannot load\n"
  "  3  gptd is not running (or its socket cannot be used)\n"
  "  4  no such run, stage type or model directory\n"
  "  5  the daemon refused the request (the run has ended or cannot be resumed,\n"
  "     the request is not supported, the daemon is stopping, the run is another\n"
  "     user's, or the daemon does not serve this user)\n"
  "  6  the connection broke or the daemon's answer made no sense (for watch: this\n"
  "     client fell too far behind and was dropped)\n";

static void
response_free (Gptd__Response *resp)
{
  if (resp != NULL)
    protobuf_c_message_free_unpacked (&resp->base, NULL);
}
G_DEFINE_AUTOPTR_CLEANUP_FUNC (Gptd__Response, response_free)

typedef struct {
  const char *socket_path;
  int fd;
  guint64 next_id;
  gboolean json;
} Client;

/* ---- Talking to the daemon ---------------------------------------------------- */

static int
client_connect (Client *cl)
{
  struct sockaddr_un addr = { .sun_family = AF_UNIX };
  if (strlen (cl->socket_path) >= sizeof addr.sun_path)
    {
      g_printerr ("gptctl: the socket path %s is too long\n", cl->socket_path);
      return EXIT_USAGE;
    }
  g_strlcpy (addr.sun_path, cl->socket_path, sizeof addr.sun_path);
  cl->fd = socket (AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (cl->fd < 0)
    {
      g_printerr ("gptctl: socket(): %s\n", g_strerror (errno));
      return EXIT_UNREACHABLE;
    }
  if (connect (cl->fd, (struct sockaddr *) &addr, sizeof addr) != 0)
    {
      int saved = errno;
      close (cl->fd);
      cl->fd = -1;
      if (saved == ENOENT || saved == ECONNREFUSED || saved == ENOTDIR)
        g_printerr ("gptctl: gptd is not running at %s: start it with `gptd` or "
                    "`systemctl start gptd`\n", cl->socket_path);
      else if (saved == EACCES || saved == EPERM)
        g_printerr ("gptctl: cannot connect to gptd at %s: %s (is your user in the "
                    "socket's group?)\n", cl->socket_path, g_strerror (saved));
      else
        g_printerr ("gptctl: cannot connect to gptd at %s: %s\n", cl->socket_path,
                    g_strerror (saved));
      return EXIT_UNREACHABLE;
    }
  return EXIT_OK;
}

static int
client_send (Client *cl, Gptd__Request *req)
{
  req->id = ++cl->next_id;
  g_autoptr (GError) error = NULL;
  if (!gptd_frame_write_fd (cl->fd, &req->base, &error))
    {
      g_printerr ("gptctl: sending the request to gptd failed: %s\n", error->message);
      return EXIT_PROTOCOL;
    }
  return EXIT_OK;
}

/* Reads the next Response; NULL after printing why (*status is the exit code). */
static Gptd__Response *
client_receive (Client *cl, int *status)
{
  g_autoptr (GError) error = NULL;
  Gptd__Response *resp =
    (Gptd__Response *) gptd_frame_read_fd (cl->fd, &gptd__response__descriptor, 0, &error);
  if (resp == NULL)
    {
      if (g_error_matches (error, GPTD_FRAME_ERROR, GPTD_FRAME_ERROR_CLOSED))
        g_printerr ("gptctl: gptd closed the connection (is it stopping?)\n");
      else
        g_printerr ("gptctl: reading gptd's answer failed: %s\n", error->message);
      *status = EXIT_PROTOCOL;
    }
  return resp;
}

/* Prints a Response's error and returns the exit code it maps to (0: none). */
static int
response_error_status (const Gptd__Response *resp)
{
  if (resp->error == NULL || resp->error->code == GPTD__ERROR_CODE__ERROR_CODE_NONE)
    return EXIT_OK;
  g_printerr ("gptctl: %s\n", resp->error->message);
  switch (resp->error->code)
    {
    case GPTD__ERROR_CODE__ERROR_CODE_NOT_FOUND:
      return EXIT_NOT_FOUND;
    case GPTD__ERROR_CODE__ERROR_CODE_INVALID_PIPELINE:
      return EXIT_RUN_FAILED;
    case GPTD__ERROR_CODE__ERROR_CODE_BAD_STATE:
    case GPTD__ERROR_CODE__ERROR_CODE_UNSUPPORTED:
    case GPTD__ERROR_CODE__ERROR_CODE_SHUTTING_DOWN:
    case GPTD__ERROR_CODE__ERROR_CODE_PERMISSION_DENIED:
      return EXIT_REFUSED;
    case GPTD__ERROR_CODE__ERROR_CODE_BAD_REQUEST:
      return EXIT_USAGE;
    default:
      return EXIT_PROTOCOL;
    }
}

/* Sends @req and reads one answer of the expected body; NULL after printing why. */
static Gptd__Response *
client_call (Client *cl, Gptd__Request *req, Gptd__Response__BodyCase expected, int *status)
{
  *status = client_send (cl, req);
  if (*status != EXIT_OK)
    return NULL;
  Gptd__Response *resp = client_receive (cl, status);
  if (resp == NULL)
    return NULL;
  if (resp->error != NULL && resp->error->code != GPTD__ERROR_CODE__ERROR_CODE_NONE)
    return resp; /* the caller looks at the error (and at a body sent with it) */
  if (resp->body_case != expected)
    {
      g_printerr ("gptctl: gptd answered with an unexpected message\n");
      *status = EXIT_PROTOCOL;
      protobuf_c_message_free_unpacked (&resp->base, NULL);
      return NULL;
    }
  return resp;
}

/* Sends @req and waits for its answer with the @expected body. NULL with *status
 * set to gptctl's exit code when that fails or gptd answered with an error (which
 * has been printed). */
static Gptd__Response *
client_call_checked (Client *cl, Gptd__Request *req, Gptd__Response__BodyCase expected,
                     int *status)
{
  Gptd__Response *resp = client_call (cl, req, expected, status);
  if (resp != NULL && (*status = response_error_status (resp)) != EXIT_OK)
    {
      protobuf_c_message_free_unpacked (&resp->base, NULL);
      return NULL;
    }
  return resp;
}

/* Connects to gptd, then as client_call_checked(). */
static Gptd__Response *
client_request (Client *cl, Gptd__Request *req, Gptd__Response__BodyCase expected,
                int *status)
{
  if ((*status = client_connect (cl)) != EXIT_OK)
    return NULL;
  return client_call_checked (cl, req, expected, status);
}

static void
print_json (const ProtobufCMessage *msg, gboolean pretty)
{
  g_autofree char *json = gptd_message_to_json_string (msg, FALSE, pretty);
  g_print ("%s\n", json);
}

/* ---- Text output -------------------------------------------------------------- */

static char *
format_time (double t)
{
  if (t <= 0)
    return g_strdup ("-");
  g_autoptr (GDateTime) dt = g_date_time_new_from_unix_local ((gint64) t);
  return dt ? g_date_time_format (dt, "%Y-%m-%d %H:%M:%S") : g_strdup ("?");
}

static char *
format_duration (double seconds)
{
  if (seconds < 0)
    seconds = 0;
  guint64 s = (guint64) seconds;
  if (s >= 3600)
    return g_strdup_printf ("%" G_GUINT64_FORMAT "h%02um", s / 3600, (unsigned) (s % 3600) / 60);
  if (s >= 60)
    return g_strdup_printf ("%um%02us", (unsigned) s / 60, (unsigned) s % 60);
  return g_strdup_printf ("%us", (unsigned) s);
}

static double
now_s (void)
{
  return (double) g_get_real_time () / G_USEC_PER_SEC;
}

static char *
run_error_text (const Gptd__RunInfo *info)
{
  if (info->error == NULL || !*info->error)
    return NULL;
  if (info->error_stage && *info->error_stage)
    return g_strdup_printf ("stage %s: %s", info->error_stage, info->error);
  return g_strdup (info->error);
}

static void
print_run_list (const Gptd__RunList *list)
{
  if (list->n_runs == 0)
    {
      g_print ("No runs.\n");
      return;
    }
  g_print ("%-6s %-12s %-10s %-24s %-19s %-9s %s\n", "ID", "STATE", "OWNER", "NAME", "CREATED",
           "TIME", "PROGRESS / ERROR");
  for (gsize i = 0; i < list->n_runs; i++)
    {
      const Gptd__RunInfo *r = list->runs[i];
      g_autofree char *created = format_time (r->created);
      double end = r->finished > 0 ? r->finished : now_s ();
      g_autofree char *dur = r->started > 0 ? format_duration (end - r->started) : g_strdup ("-");
      g_autofree char *detail = run_error_text (r);
      if (detail == NULL && r->progress != NULL)
        detail = gptd_progress_format (r->progress, 0);
      if (detail == NULL && r->queue_position > 0)
        detail = g_strdup_printf ("waiting: number %u in the queue", r->queue_position);
      g_autofree char *owner = r->owner && *r->owner ? g_strdup (r->owner)
                                                     : g_strdup_printf ("%u", r->owner_uid);
      g_print ("%-6s %-12s %-10s %-24s %-19s %-9s %s\n", r->id,
               gptd_run_state_to_string (r->state), owner, r->name, created, dur,
               detail ? detail : "");
    }
}

static void
print_run_info (const Gptd__RunInfo *r)
{
  g_autofree char *created = format_time (r->created);
  g_autofree char *started = format_time (r->started);
  g_autofree char *finished = format_time (r->finished);
  g_autofree char *err = run_error_text (r);
  g_print ("run:       %s\n", r->id);
  g_print ("name:      %s\n", r->name);
  g_print ("state:     %s\n", gptd_run_state_to_string (r->state));
  if (r->queue_position > 0)
    g_print ("queue:     number %u\n", r->queue_position);
  g_print ("owner:     %s (uid %u)\n", r->owner && *r->owner ? r->owner : "?", r->owner_uid);
  g_print ("pipeline:  %s\n", r->filename);
  g_print ("created:   %s\n", created);
  g_print ("started:   %s\n", started);
  g_print ("finished:  %s\n", finished);
  if (r->started > 0)
    {
      g_autofree char *dur = format_duration ((r->finished > 0 ? r->finished : now_s ())
                                              - r->started);
      g_print ("time:      %s\n", dur);
    }
  if (r->pid > 0)
    g_print ("pid:       %d\n", r->pid);
  if (err)
    g_print ("error:     %s\n", err);
  if (r->progress)
    {
      g_autofree char *p = gptd_progress_format (r->progress, 0);
      g_print ("progress:  %s\n", p);
    }
  g_print ("run dir:   %s\n", r->run_dir);
}

/* The exit status a final run state maps to. */
static int
state_status (Gptd__RunState state)
{
  return state == GPTD__RUN_STATE__RUN_STATE_SUCCEEDED ? EXIT_OK : EXIT_RUN_FAILED;
}

/* ---- Watching ----------------------------------------------------------------- */

typedef struct {
  gboolean tty;       /* stdout is a terminal: redraw a progress line in place */
  gboolean json;
  gboolean has_line;  /* a progress line is on screen */
} WatchOutput;

static guint
terminal_width (void)
{
  struct winsize ws;
  if (ioctl (STDOUT_FILENO, TIOCGWINSZ, &ws) == 0 && ws.ws_col > 0)
    return ws.ws_col;
  return 80;
}

static void
watch_clear_line (WatchOutput *out)
{
  if (out->has_line)
    {
      fputs ("\r\033[K", stdout);
      out->has_line = FALSE;
    }
}

static void
watch_print_event (WatchOutput *out, const Gptd__Event *ev)
{
  if (out->json)
    {
      print_json (&ev->base, FALSE);
      fflush (stdout);
      return;
    }
  if (out->tty && ev->body_case == GPTD__EVENT__BODY_PROGRESS && ev->progress != NULL)
    {
      guint width = terminal_width ();
      g_autofree char *line = gptd_progress_format (ev->progress, width >= 100 ? 30 : 16);
      /* Never wrap: a wrapped line cannot be redrawn in place. */
      if (g_utf8_strlen (line, -1) >= (glong) width)
        {
          char *end = g_utf8_offset_to_pointer (line, (glong) width - 1);
          *end = '\0';
        }
      fputs ("\r\033[K", stdout);
      fputs (line, stdout);
      out->has_line = TRUE;
      fflush (stdout);
      return;
    }
  watch_clear_line (out);
  g_autofree char *line = gptd_event_format (ev);
  g_print ("%s\n", line);
  fflush (stdout);
}

/* Reads watch answers until the one with end set; returns the exit status from
 * the run's final state. */
static int
watch_until_end (Client *cl, WatchOutput *out)
{
  int status = EXIT_OK;
  for (;;)
    {
      g_autoptr (Gptd__Response) resp = client_receive (cl, &status);
      if (resp == NULL)
        {
          watch_clear_line (out);
          return status;
        }
      if (resp->error != NULL && resp->error->code != GPTD__ERROR_CODE__ERROR_CODE_NONE)
        {
          watch_clear_line (out);
          status = response_error_status (resp);
          return resp->error->code == GPTD__ERROR_CODE__ERROR_CODE_LAGGED ? EXIT_PROTOCOL : status;
        }
      if (resp->body_case == GPTD__RESPONSE__BODY_EVENT && resp->event != NULL)
        watch_print_event (out, resp->event);
      else if (resp->body_case == GPTD__RESPONSE__BODY_RUN && resp->run != NULL)
        {
          if (!resp->end)
            continue;  /* the run as it was when watching began */
          watch_clear_line (out);
          const Gptd__RunInfo *r = resp->run;
          if (out->json)
            print_json (&r->base, FALSE);
          else
            {
              g_autofree char *err = run_error_text (r);
              g_print ("run %s %s%s%s\n", r->id, gptd_run_state_to_string (r->state),
                       err ? ": " : "", err ? err : "");
            }
          return state_status (r->state);
        }
      if (resp->end)
        return EXIT_OK;
    }
}

static int
client_watch (Client *cl, const char *run_id, gboolean from_start)
{
  Gptd__Request req = GPTD__REQUEST__INIT;
  Gptd__WatchRequest watch = GPTD__WATCH_REQUEST__INIT;
  watch.run_id = (char *) run_id;
  watch.from_start = from_start;
  req.body_case = GPTD__REQUEST__BODY_WATCH;
  req.watch = &watch;
  int status = client_send (cl, &req);
  if (status != EXIT_OK)
    return status;
  WatchOutput out = { .tty = isatty (STDOUT_FILENO), .json = cl->json };
  return watch_until_end (cl, &out);
}

/* ---- Commands ----------------------------------------------------------------- */

typedef struct {
  char **settings;
  gboolean wait;
  gboolean from_start;
  gboolean no_wait;
  /* generate */
  char *model;
  int max_new_tokens;
  double temperature;
  int top_k;
  double top_p;
  char *seed;
  int eos_id;
  char **stop;
  /* generate and classify */
  char *weights;
  /* prune */
  char *older_than;
  char **states;
} CommandOptions;

/* Adds to @names each NAME that @text uses as ${NAME}. */
static void
collect_variables (const char *text, GHashTable *names)
{
  for (const char *p = text; (p = strstr (p, "${")) != NULL;)
    {
      p += 2;
      const char *end = strchr (p, '}');
      if (end == NULL)
        return;
      if (end > p)
        g_hash_table_add (names, g_strndup (p, (gsize) (end - p)));
      p = end + 1;
    }
}

/* The client's environment variables the pipeline names as ${NAME} (in its text
 * or in the settings): the daemon expands ${NAME} with these, never with its own
 * environment. */
static void
fill_environment (Gptd__RunRequest *rr, const char *text, char **settings, GPtrArray *keep)
{
  g_autoptr (GHashTable) names = g_hash_table_new_full (g_str_hash, g_str_equal, g_free, NULL);
  collect_variables (text, names);
  for (guint i = 0; settings && settings[i]; i++)
    collect_variables (settings[i], names);
  Gptd__Setting **list = g_new0 (Gptd__Setting *, g_hash_table_size (names) + 1);
  g_ptr_array_add (keep, list);
  gsize n = 0;
  GHashTableIter it;
  gpointer key;
  g_hash_table_iter_init (&it, names);
  while (g_hash_table_iter_next (&it, &key, NULL))
    {
      const char *value = g_getenv (key);
      if (value == NULL)
        continue;
      Gptd__Setting *s = g_new0 (Gptd__Setting, 1);
      gptd__setting__init (s);
      s->key = g_strdup (key);
      s->value = g_strdup (value);
      g_ptr_array_add (keep, s->key);
      g_ptr_array_add (keep, s->value);
      g_ptr_array_add (keep, s);
      list[n++] = s;
    }
  rr->environment = list;
  rr->n_environment = n;
}

static int
fill_run_request (Gptd__RunRequest *rr, const char *file, char **settings,
                  GPtrArray *keep)
{
  g_autoptr (GError) error = NULL;
  char *text = NULL;
  gsize length = 0;
  if (!g_file_get_contents (file, &text, &length, &error))
    {
      g_printerr ("gptctl: %s\n", error->message);
      return EXIT_USAGE;
    }
  g_ptr_array_add (keep, text);
  /* The text is sent as a string: a NUL would cut it short unseen. */
  const char *nul = memchr (text, '\0', length);
  if (nul != NULL)
    {
      g_printerr ("gptctl: %s contains a NUL byte (byte offset %td): it is not a text file\n",
                  file, nul - text);
      return EXIT_USAGE;
    }
  if (!g_utf8_validate (text, -1, NULL))
    {
      g_printerr ("gptctl: %s is not valid UTF-8 text\n", file);
      return EXIT_USAGE;
    }
  char *cwd = g_get_current_dir ();
  g_ptr_array_add (keep, cwd);
  char *abs = g_path_is_absolute (file) ? g_strdup (file) : g_build_filename (cwd, file, NULL);
  char *canon = g_canonicalize_filename (abs, NULL);
  g_free (abs);
  g_ptr_array_add (keep, canon);
  rr->pipeline = text;
  rr->filename = canon;
  rr->workdir = cwd;
  guint n = settings ? g_strv_length (settings) : 0;
  Gptd__Setting **list = g_new0 (Gptd__Setting *, MAX (n, 1));
  g_ptr_array_add (keep, list);
  for (guint i = 0; i < n; i++)
    {
      const char *eq = strchr (settings[i], '=');
      if (eq == NULL || eq == settings[i])
        {
          g_printerr ("gptctl: --set wants KEY=VALUE, not '%s'\n", settings[i]);
          return EXIT_USAGE;
        }
      Gptd__Setting *s = g_new0 (Gptd__Setting, 1);
      gptd__setting__init (s);
      s->key = g_strndup (settings[i], (gsize) (eq - settings[i]));
      s->value = g_strdup (eq + 1);
      g_ptr_array_add (keep, s->key);
      g_ptr_array_add (keep, s->value);
      g_ptr_array_add (keep, s);
      list[i] = s;
    }
  rr->settings = list;
  rr->n_settings = n;
  fill_environment (rr, text, settings, keep);
  return EXIT_OK;
}

static void
print_problems (const Gptd__ValidateResult *vr)
{
  for (gsize i = 0; i < vr->n_problems; i++)
    g_printerr ("%s\n", vr->problems[i]);
}

static int
cmd_run (Client *cl, int argc, char **argv, const CommandOptions *o)
{
  if (argc != 1)
    {
      g_printerr ("gptctl: run wants one pipeline FILE\n");
      return EXIT_USAGE;
    }
  g_autoptr (GPtrArray) keep = g_ptr_array_new_with_free_func (g_free);
  Gptd__RunRequest rr = GPTD__RUN_REQUEST__INIT;
  int status = fill_run_request (&rr, argv[0], o->settings, keep);
  if (status != EXIT_OK)
    return status;
  if ((status = client_connect (cl)) != EXIT_OK)
    return status;
  Gptd__Request req = GPTD__REQUEST__INIT;
  req.body_case = GPTD__REQUEST__BODY_RUN;
  req.run = &rr;
  g_autoptr (Gptd__Response) resp = client_call (cl, &req, GPTD__RESPONSE__BODY_RUN, &status);
  if (resp == NULL)
    return status;
  if (resp->error != NULL && resp->error->code != GPTD__ERROR_CODE__ERROR_CODE_NONE)
    {
      if (resp->body_case == GPTD__RESPONSE__BODY_VALIDATE && resp->validate != NULL)
        {
          if (cl->json)
            print_json (&resp->validate->base, TRUE);
          else
            print_problems (resp->validate);
          return EXIT_RUN_FAILED;
        }
      return response_error_status (resp);
    }
  if (cl->json)
    print_json (&resp->run->base, !o->wait);
  else
    {
      g_print ("%s\n", resp->run->id);
      fflush (stdout);
    }
  if (!o->wait)
    return EXIT_OK;
  return client_watch (cl, resp->run->id, TRUE);
}

static int
cmd_validate (Client *cl, int argc, char **argv, const CommandOptions *o)
{
  if (argc != 1)
    {
      g_printerr ("gptctl: validate wants one pipeline FILE\n");
      return EXIT_USAGE;
    }
  g_autoptr (GPtrArray) keep = g_ptr_array_new_with_free_func (g_free);
  Gptd__RunRequest rr = GPTD__RUN_REQUEST__INIT;
  int status = fill_run_request (&rr, argv[0], o->settings, keep);
  if (status != EXIT_OK)
    return status;
  Gptd__Request req = GPTD__REQUEST__INIT;
  req.body_case = GPTD__REQUEST__BODY_VALIDATE;
  req.validate = &rr;
  g_autoptr (Gptd__Response) resp =
    client_request (cl, &req, GPTD__RESPONSE__BODY_VALIDATE, &status);
  if (resp == NULL)
    return status;
  const Gptd__ValidateResult *vr = resp->validate;
  if (cl->json)
    {
      /* Every field, so that "valid" shows when false. */
      g_autofree char *text = gptd_message_to_json_string (&vr->base, TRUE, TRUE);
      g_print ("%s\n", text);
    }
  else if (vr->valid)
    g_print ("%s: valid\n", argv[0]);
  else
    print_problems (vr);
  return vr->valid ? EXIT_OK : EXIT_RUN_FAILED;
}

static int
cmd_ps (Client *cl, int argc, char **argv, const CommandOptions *o)
{
  if (argc != 0)
    {
      g_printerr ("gptctl: ps takes no arguments\n");
      return EXIT_USAGE;
    }
  int status;
  Gptd__Request req = GPTD__REQUEST__INIT;
  Gptd__Empty empty = GPTD__EMPTY__INIT;
  req.body_case = GPTD__REQUEST__BODY_PS;
  req.ps = &empty;
  g_autoptr (Gptd__Response) resp = client_request (cl, &req, GPTD__RESPONSE__BODY_RUNS, &status);
  if (resp == NULL)
    return status;
  if (cl->json)
    print_json (&resp->runs->base, TRUE);
  else
    print_run_list (resp->runs);
  return EXIT_OK;
}

/* Sends a RunIdRequest in the body @body; returns the answer or NULL. */
static Gptd__Response *
call_run_id (Client *cl, Gptd__Request__BodyCase body, const char *run_id,
             Gptd__Response__BodyCase expected, int *status)
{
  Gptd__Request req = GPTD__REQUEST__INIT;
  Gptd__RunIdRequest rid = GPTD__RUN_ID_REQUEST__INIT;
  rid.run_id = (char *) run_id;
  req.body_case = body;
  switch (body)
    {
    case GPTD__REQUEST__BODY_STATUS: req.status = &rid; break;
    case GPTD__REQUEST__BODY_LOGS: req.logs = &rid; break;
    case GPTD__REQUEST__BODY_CANCEL: req.cancel = &rid; break;
    case GPTD__REQUEST__BODY_RESUME: req.resume = &rid; break;
    case GPTD__REQUEST__BODY_PAUSE: req.pause = &rid; break;
    case GPTD__REQUEST__BODY_OUTPUT: req.output = &rid; break;
    case GPTD__REQUEST__BODY_REMOVE: req.remove = &rid; break;
    default: g_assert_not_reached ();
    }
  return client_call_checked (cl, &req, expected, status);
}

static int
want_run_id (const char *cmd, int argc)
{
  if (argc != 1)
    {
      g_printerr ("gptctl: %s wants one run ID\n", cmd);
      return EXIT_USAGE;
    }
  return EXIT_OK;
}

static char *
format_bytes (guint64 n)
{
  return g_format_size_full (n, G_FORMAT_SIZE_IEC_UNITS);
}

/* `gptctl status` without an ID: the daemon itself. */
static int
daemon_status (Client *cl)
{
  int status;
  Gptd__Request req = GPTD__REQUEST__INIT;
  Gptd__Empty empty = GPTD__EMPTY__INIT;
  req.body_case = GPTD__REQUEST__BODY_DAEMON_STATUS;
  req.daemon_status = &empty;
  g_autoptr (Gptd__Response) resp =
    client_request (cl, &req, GPTD__RESPONSE__BODY_DAEMON, &status);
  if (resp == NULL)
    return status;
  const Gptd__DaemonStatus *st = resp->daemon;
  if (cl->json)
    {
      print_json (&st->base, TRUE);
      return EXIT_OK;
    }
  g_autofree char *started = format_time (st->started);
  g_autofree char *up = format_duration (st->uptime);
  g_autofree char *rss = format_bytes (st->rss_bytes);
  g_autofree char *srss = format_bytes (st->serving_rss_bytes);
  g_print ("gptd:      %s (pid %d)\n", st->version, st->pid);
  g_print ("socket:    %s\n", st->socket);
  g_print ("state dir: %s\n", st->state_dir);
  g_print ("started:   %s (up %s)\n", started, up);
  g_print ("memory:    %s resident, %u thread(s); serving workers: %s\n", rss, st->threads,
           srss);
  g_print ("runs:     ");
  if (st->n_runs == 0)
    g_print (" none");
  for (gsize i = 0; i < st->n_runs; i++)
    g_print (" %s %u%s", gptd_run_state_to_string (st->runs[i]->state), st->runs[i]->count,
             i + 1 < st->n_runs ? "," : "");
  g_print ("\n");
  g_print ("schedule:  at most %u run(s) at once, %u thread(s) each\n", st->max_runs,
           st->run_threads);
  g_print ("models:    %zu loaded (at most %u)\n", st->n_models, st->model_cache);
  for (gsize i = 0; i < st->n_models; i++)
    g_print ("           %s\n", st->models[i]);
  return EXIT_OK;
}

static int
cmd_status (Client *cl, int argc, char **argv, const CommandOptions *o)
{
  if (argc == 0)
    return daemon_status (cl);
  int status = want_run_id ("status", argc);
  if (status != EXIT_OK || (status = client_connect (cl)) != EXIT_OK)
    return status;
  g_autoptr (Gptd__Response) resp =
    call_run_id (cl, GPTD__REQUEST__BODY_STATUS, argv[0], GPTD__RESPONSE__BODY_RUN, &status);
  if (resp == NULL)
    return status;
  if (cl->json)
    print_json (&resp->run->base, TRUE);
  else
    print_run_info (resp->run);
  return EXIT_OK;
}

static int
cmd_logs (Client *cl, int argc, char **argv, const CommandOptions *o)
{
  int status = want_run_id ("logs", argc);
  if (status != EXIT_OK || (status = client_connect (cl)) != EXIT_OK)
    return status;
  g_autoptr (Gptd__Response) resp =
    call_run_id (cl, GPTD__REQUEST__BODY_LOGS, argv[0], GPTD__RESPONSE__BODY_LOGS, &status);
  if (resp == NULL)
    return status;
  for (gsize i = 0; i < resp->logs->n_events; i++)
    {
      const Gptd__Event *ev = resp->logs->events[i];
      if (cl->json)
        print_json (&ev->base, FALSE);
      else
        {
          g_autofree char *line = gptd_event_format (ev);
          g_print ("%s\n", line);
        }
    }
  return EXIT_OK;
}

static int
cmd_watch (Client *cl, int argc, char **argv, const CommandOptions *o)
{
  int status = want_run_id ("watch", argc);
  if (status != EXIT_OK || (status = client_connect (cl)) != EXIT_OK)
    return status;
  return client_watch (cl, argv[0], o->from_start);
}

/* cancel and pause: asks the daemon to stop run argv[0] (@body), then, unless
 * --no-wait, waits for it to stop by asking for its status rather than watching (a
 * run that floods events is not slowed by it) and prints how it ended. Returns
 * EXIT_OK, or with @want_paused EXIT_RUN_FAILED when the run ended otherwise. */
static int
stop_run (Client *cl, int argc, char **argv, const CommandOptions *o, const char *command,
          Gptd__Request__BodyCase body, const char *doing, gboolean want_paused)
{
  int status = want_run_id (command, argc);
  if (status != EXIT_OK || (status = client_connect (cl)) != EXIT_OK)
    return status;
  g_autoptr (Gptd__Response) resp =
    call_run_id (cl, body, argv[0], GPTD__RESPONSE__BODY_RUN, &status);
  if (resp == NULL)
    return status;
  if (o->no_wait)
    {
      if (cl->json)
        print_json (&resp->run->base, TRUE);
      else
        g_print ("run %s: %s\n", resp->run->id, doing);
      return EXIT_OK;
    }
  /* Stages may take a while to checkpoint. */
  for (;;)
    {
      g_autoptr (Gptd__Response) st =
        call_run_id (cl, GPTD__REQUEST__BODY_STATUS, argv[0], GPTD__RESPONSE__BODY_RUN, &status);
      if (st == NULL)
        return status;
      Gptd__RunState state = st->run->state;
      if (state != GPTD__RUN_STATE__RUN_STATE_RUNNING && state != GPTD__RUN_STATE__RUN_STATE_QUEUED)
        {
          if (cl->json)
            print_json (&st->run->base, TRUE);
          else
            {
              g_autofree char *err = run_error_text (st->run);
              g_print ("run %s %s%s%s\n", st->run->id, gptd_run_state_to_string (state),
                       err ? ": " : "", err ? err : "");
            }
          if (want_paused && state != GPTD__RUN_STATE__RUN_STATE_PAUSED)
            return EXIT_RUN_FAILED;
          return EXIT_OK;
        }
      g_usleep (100 * 1000);
    }
}

static int
cmd_cancel (Client *cl, int argc, char **argv, const CommandOptions *o)
{
  return stop_run (cl, argc, argv, o, "cancel", GPTD__REQUEST__BODY_CANCEL, "cancelling",
                   FALSE);
}

static int
cmd_pause (Client *cl, int argc, char **argv, const CommandOptions *o)
{
  return stop_run (cl, argc, argv, o, "pause", GPTD__REQUEST__BODY_PAUSE, "pausing", TRUE);
}

static int
cmd_resume (Client *cl, int argc, char **argv, const CommandOptions *o)
{
  int status = want_run_id ("resume", argc);
  if (status != EXIT_OK || (status = client_connect (cl)) != EXIT_OK)
    return status;
  g_autoptr (Gptd__Response) resp =
    call_run_id (cl, GPTD__REQUEST__BODY_RESUME, argv[0], GPTD__RESPONSE__BODY_RUN, &status);
  if (resp == NULL)
    return status;
  if (cl->json)
    print_json (&resp->run->base, !o->wait);
  else
    {
      g_print ("run %s: resuming in %s\n", resp->run->id, resp->run->run_dir);
      fflush (stdout);
    }
  if (!o->wait)
    return EXIT_OK;
  return client_watch (cl, resp->run->id, FALSE);
}

static int
cmd_output (Client *cl, int argc, char **argv, const CommandOptions *o)
{
  int status = want_run_id ("output", argc);
  if (status != EXIT_OK || (status = client_connect (cl)) != EXIT_OK)
    return status;
  /* Chunks until the one with end set. */
  for (gboolean first = TRUE;; first = FALSE)
    {
      g_autoptr (Gptd__Response) resp = NULL;
      if (first)
        resp = call_run_id (cl, GPTD__REQUEST__BODY_OUTPUT, argv[0], GPTD__RESPONSE__BODY_OUTPUT,
                            &status);
      else if ((resp = client_receive (cl, &status)) != NULL
               && (status = response_error_status (resp)) != EXIT_OK)
        return status;
      if (resp == NULL)
        return status;
      if (resp->body_case != GPTD__RESPONSE__BODY_OUTPUT || resp->output == NULL)
        {
          g_printerr ("gptctl: gptd answered with an unexpected message\n");
          return EXIT_PROTOCOL;
        }
      if (cl->json)
        print_json (&resp->output->base, FALSE);
      else if (resp->output->data.len > 0
               && fwrite (resp->output->data.data, 1, resp->output->data.len, stdout)
                    != resp->output->data.len)
        {
          g_printerr ("gptctl: writing the output failed: %s\n", g_strerror (errno));
          return EXIT_USAGE;
        }
      if (resp->end)
        break;
    }
  if (fflush (stdout) != 0)
    {
      g_printerr ("gptctl: writing the output failed: %s\n", g_strerror (errno));
      return EXIT_USAGE;
    }
  return EXIT_OK;
}

static int
cmd_rm (Client *cl, int argc, char **argv, const CommandOptions *o)
{
  int status = want_run_id ("rm", argc);
  if (status != EXIT_OK || (status = client_connect (cl)) != EXIT_OK)
    return status;
  g_autoptr (Gptd__Response) resp =
    call_run_id (cl, GPTD__REQUEST__BODY_REMOVE, argv[0], GPTD__RESPONSE__BODY_RUN, &status);
  if (resp == NULL)
    return status;
  if (cl->json)
    print_json (&resp->run->base, TRUE);
  else
    g_print ("run %s removed (%s, %s)\n", resp->run->id, resp->run->name,
             gptd_run_state_to_string (resp->run->state));
  return EXIT_OK;
}

/* Parses a duration: a number followed by s, m, h or d (seconds without). */
static gboolean
parse_duration (const char *text, double *seconds)
{
  char *end = NULL;
  double v = g_ascii_strtod (text, &end);
  if (end == text || !isfinite (v) || v < 0)
    return FALSE;
  double unit = 1;
  if (*end == 'm')
    unit = 60;
  else if (*end == 'h')
    unit = 3600;
  else if (*end == 'd')
    unit = 86400;
  else if (*end != 's' && *end != '\0')
    return FALSE;
  if (*end != '\0' && end[1] != '\0')
    return FALSE;
  *seconds = v * unit;
  return TRUE;
}

static int
cmd_prune (Client *cl, int argc, char **argv, const CommandOptions *o)
{
  if (argc != 0)
    {
      g_printerr ("gptctl: prune takes no arguments (--older-than and --state choose the runs)\n");
      return EXIT_USAGE;
    }
  Gptd__PruneRequest pr = GPTD__PRUNE_REQUEST__INIT;
  if (o->older_than != NULL && !parse_duration (o->older_than, &pr.older_than_s))
    {
      g_printerr ("gptctl: --older-than wants a duration such as 90s, 30m, 12h or 7d, not "
                  "'%s'\n", o->older_than);
      return EXIT_USAGE;
    }
  guint n = o->states ? g_strv_length (o->states) : 0;
  g_autofree Gptd__RunState *states = g_new0 (Gptd__RunState, MAX (n, 1));
  for (guint i = 0; i < n; i++)
    {
      gboolean found = FALSE;
      for (int st = GPTD__RUN_STATE__RUN_STATE_SUCCEEDED;
           st <= GPTD__RUN_STATE__RUN_STATE_PAUSED && !found; st++)
        if (strcmp (o->states[i], gptd_run_state_to_string (st)) == 0)
          {
            states[i] = st;
            found = TRUE;
          }
      if (!found)
        {
          g_printerr ("gptctl: --state wants an ended state (succeeded, failed, cancelled, "
                      "interrupted or paused), not '%s'\n", o->states[i]);
          return EXIT_USAGE;
        }
    }
  pr.states = states;
  pr.n_states = n;
  int status;
  Gptd__Request req = GPTD__REQUEST__INIT;
  req.body_case = GPTD__REQUEST__BODY_PRUNE;
  req.prune = &pr;
  g_autoptr (Gptd__Response) resp = client_request (cl, &req, GPTD__RESPONSE__BODY_RUNS, &status);
  if (resp == NULL)
    return status;
  if (cl->json)
    print_json (&resp->runs->base, TRUE);
  else if (resp->runs->n_runs == 0)
    g_print ("No run removed.\n");
  else
    for (gsize i = 0; i < resp->runs->n_runs; i++)
      g_print ("run %s removed (%s, %s)\n", resp->runs->runs[i]->id, resp->runs->runs[i]->name,
               gptd_run_state_to_string (resp->runs->runs[i]->state));
  return EXIT_OK;
}

/* The prompt argument: the text itself, or standard input for "-". */
static char *
read_prompt (const char *arg)
{
  if (strcmp (arg, "-") != 0)
    return g_strdup (arg);
  GString *text = g_string_new (NULL);
  char buf[65536];
  size_t n;
  while ((n = fread (buf, 1, sizeof buf, stdin)) > 0)
    g_string_append_len (text, buf, (gssize) n);
  if (ferror (stdin))
    {
      g_printerr ("gptctl: cannot read the prompt from standard input: %s\n",
                  g_strerror (errno));
      g_string_free (text, TRUE);
      return NULL;
    }
  return g_string_free (text, FALSE);
}

static int
cmd_generate (Client *cl, int argc, char **argv, const CommandOptions *o)
{
  if (argc != 1)
    {
      g_printerr ("gptctl: generate wants one PROMPT (- reads it from standard input)\n");
      return EXIT_USAGE;
    }
  if (o->model == NULL)
    {
      g_printerr ("gptctl: generate needs --model DIR\n");
      return EXIT_USAGE;
    }
  if (o->max_new_tokens < 0 || o->top_k < 0)
    {
      g_printerr ("gptctl: --%s must be >= 0\n", o->top_k < 0 ? "top-k" : "max-new-tokens");
      return EXIT_USAGE;
    }
  guint64 seed = 0;
  if (o->seed != NULL)
    {
      g_autoptr (GError) error = NULL;
      if (!g_ascii_string_to_unsigned (o->seed, 10, 0, G_MAXUINT64, &seed, &error))
        {
          g_printerr ("gptctl: --seed: %s\n", error->message);
          return EXIT_USAGE;
        }
    }
  g_autofree char *prompt = read_prompt (argv[0]);
  if (prompt == NULL)
    return EXIT_USAGE;
  if (!g_utf8_validate (prompt, -1, NULL))
    {
      g_printerr ("gptctl: the prompt is not valid UTF-8 text\n");
      return EXIT_USAGE;
    }
  /* The daemon has another working directory: send an absolute path. */
  g_autofree char *model = g_canonicalize_filename (o->model, NULL);

  int status = client_connect (cl);
  if (status != EXIT_OK)
    return status;
  Gptd__Request req = GPTD__REQUEST__INIT;
  Gptd__GenerateRequest gr = GPTD__GENERATE_REQUEST__INIT;
  gr.model = model;
  gr.prompt = prompt;
  gr.max_new_tokens = (guint32) o->max_new_tokens;
  gr.temperature = o->temperature;
  gr.top_k = (guint32) o->top_k;
  gr.top_p = o->top_p;
  gr.seed = seed;
  gr.has_seed = o->seed != NULL;
  gr.eos_id = o->eos_id;
  gr.weights = o->weights != NULL ? o->weights : (char *) "";
  gr.n_stop = o->stop != NULL ? g_strv_length (o->stop) : 0;
  gr.stop = o->stop;
  req.body_case = GPTD__REQUEST__BODY_GENERATE;
  req.generate = &gr;
  if ((status = client_send (cl, &req)) != EXIT_OK)
    return status;

  /* Text as it comes, until the answer with end set. */
  g_autofree char *stop_reason = NULL;
  guint tokens = 0;
  gboolean ended_line = TRUE;
  for (;;)
    {
      g_autoptr (Gptd__Response) resp = client_receive (cl, &status);
      if (resp == NULL)
        {
          if (!ended_line)
            g_print ("\n");
          return status;
        }
      if (resp->error != NULL && resp->error->code != GPTD__ERROR_CODE__ERROR_CODE_NONE)
        {
          if (!ended_line)
            g_print ("\n");
          fflush (stdout);
          status = response_error_status (resp);
          return resp->error->code == GPTD__ERROR_CODE__ERROR_CODE_LAGGED ? EXIT_PROTOCOL
                                                                          : status;
        }
      if (resp->body_case != GPTD__RESPONSE__BODY_EVENT || resp->event == NULL)
        {
          g_printerr ("gptctl: gptd answered with an unexpected message\n");
          return EXIT_PROTOCOL;
        }
      const Gptd__Event *ev = resp->event;
      if (cl->json)
        {
          print_json (&ev->base, FALSE);
          fflush (stdout);
        }
      if (ev->body_case == GPTD__EVENT__BODY_TEXT && ev->text != NULL)
        {
          if (ev->text->done)
            {
              g_free (stop_reason);
              stop_reason = g_strdup (ev->text->stop_reason);
              tokens = ev->text->tokens;
            }
          else if (!cl->json && ev->text->text != NULL && *ev->text->text)
            {
              fputs (ev->text->text, stdout);
              fflush (stdout);
              ended_line = FALSE;
            }
        }
      if (resp->end)
        break;
    }
  if (!cl->json)
    {
      /* The text, then one newline. */
      g_print ("\n");
      fflush (stdout);
      if (isatty (STDERR_FILENO))
        g_printerr ("(%u tokens, stopped: %s)\n", tokens, stop_reason ? stop_reason : "?");
    }
  return g_strcmp0 (stop_reason, "cancelled") == 0 ? EXIT_RUN_FAILED : EXIT_OK;
}

/* The texts to classify: the arguments, "-" standing for standard input's
 * lines (one text each; empty lines are left out). NULL after printing why. */
static GPtrArray *
read_texts (int argc, char **argv)
{
  g_autoptr (GPtrArray) texts = g_ptr_array_new_with_free_func (g_free);
  gboolean read_stdin = FALSE;
  for (int i = 0; i < argc; i++)
    {
      if (strcmp (argv[i], "-") != 0)
        {
          g_ptr_array_add (texts, g_strdup (argv[i]));
          continue;
        }
      if (read_stdin)
        {
          g_printerr ("gptctl: classify reads standard input (-) once only\n");
          return NULL;
        }
      read_stdin = TRUE;
      g_autofree char *all = read_prompt ("-");
      if (all == NULL)
        return NULL;
      g_auto (GStrv) lines = g_strsplit (all, "\n", -1);
      for (char **l = lines; *l != NULL; l++)
        {
          gsize len = strlen (*l);
          if (len > 0 && (*l)[len - 1] == '\r')
            (*l)[len - 1] = '\0';
          if (**l)
            g_ptr_array_add (texts, g_strdup (*l));
        }
    }
  for (guint i = 0; i < texts->len; i++)
    {
      const char *text = texts->pdata[i];
      if (!*text || !g_utf8_validate (text, -1, NULL))
        {
          g_printerr ("gptctl: text %u is %s\n", i + 1,
                      *text ? "not valid UTF-8" : "empty: there is nothing to classify");
          return NULL;
        }
    }
  if (texts->len == 0)
    {
      g_printerr ("gptctl: standard input holds no text to classify\n");
      return NULL;
    }
  return g_steal_pointer (&texts);
}

static int
cmd_classify (Client *cl, int argc, char **argv, const CommandOptions *o)
{
  if (argc < 1)
    {
      g_printerr ("gptctl: classify wants at least one TEXT (- reads one per line from "
                  "standard input)\n");
      return EXIT_USAGE;
    }
  if (o->model == NULL)
    {
      g_printerr ("gptctl: classify needs --model DIR\n");
      return EXIT_USAGE;
    }
  g_autoptr (GPtrArray) texts = read_texts (argc, argv);
  if (texts == NULL)
    return EXIT_USAGE;
  /* The daemon has another working directory: send an absolute path. */
  g_autofree char *model = g_canonicalize_filename (o->model, NULL);

  int status = client_connect (cl);
  if (status != EXIT_OK)
    return status;
  Gptd__Request req = GPTD__REQUEST__INIT;
  Gptd__ClassifyRequest cr = GPTD__CLASSIFY_REQUEST__INIT;
  cr.model = model;
  cr.n_texts = texts->len;
  cr.texts = (char **) texts->pdata;
  cr.weights = o->weights != NULL ? o->weights : (char *) "";
  req.body_case = GPTD__REQUEST__BODY_CLASSIFY;
  req.classify = &cr;
  if ((status = client_send (cl, &req)) != EXIT_OK)
    return status;

  /* A log line on where the model came from, then the predictions. */
  for (;;)
    {
      g_autoptr (Gptd__Response) resp = client_receive (cl, &status);
      if (resp == NULL)
        return status;
      if (resp->error != NULL && resp->error->code != GPTD__ERROR_CODE__ERROR_CODE_NONE)
        return response_error_status (resp);
      if (resp->body_case == GPTD__RESPONSE__BODY_EVENT && !resp->end)
        continue;
      const Gptd__PredictionList *list = resp->predictions;
      if (resp->body_case != GPTD__RESPONSE__BODY_PREDICTIONS || list == NULL
          || list->n_predictions != texts->len)
        {
          g_printerr ("gptctl: gptd answered with an unexpected message\n");
          return EXIT_PROTOCOL;
        }
      if (cl->json)
        {
          print_json (&list->base, TRUE);
          return EXIT_OK;
        }
      for (gsize i = 0; i < list->n_predictions; i++)
        {
          const Gptd__Prediction *p = list->predictions[i];
          if (p->label >= p->n_probabilities)
            {
              g_printerr ("gptctl: gptd answered with an unexpected message\n");
              return EXIT_PROTOCOL;
            }
          /* One line per text, whatever it holds. */
          g_autofree char *text = g_strdup (texts->pdata[i]);
          for (char *t = text; *t; t++)
            if (*t == '\n' || *t == '\r' || *t == '\t')
              *t = ' ';
          g_print ("%s  %.4f  %s\n", p->label_name, p->probabilities[p->label], text);
        }
      return EXIT_OK;
    }
}

static int
cmd_plugins (Client *cl, int argc, char **argv, const CommandOptions *o)
{
  if (argc > 1)
    {
      g_printerr ("gptctl: plugins takes at most one stage TYPE\n");
      return EXIT_USAGE;
    }
  int status;
  Gptd__Request req = GPTD__REQUEST__INIT;
  Gptd__PluginsRequest pr = GPTD__PLUGINS_REQUEST__INIT;
  pr.stage_type = argc == 1 ? argv[0] : (char *) "";
  req.body_case = GPTD__REQUEST__BODY_PLUGINS;
  req.plugins = &pr;
  g_autoptr (Gptd__Response) resp =
    client_request (cl, &req, GPTD__RESPONSE__BODY_PLUGINS, &status);
  if (resp == NULL)
    return status;
  const Gptd__PluginList *list = resp->plugins;
  if (cl->json)
    {
      if (argc == 1 && list->n_stage_types == 1)
        print_json (&list->stage_types[0]->base, TRUE);
      else
        print_json (&list->base, TRUE);
      return EXIT_OK;
    }
  g_autofree char *text = argc == 1 && list->n_stage_types == 1
                            ? gptd_stage_type_info_format (list->stage_types[0])
                            : gptd_plugin_list_format (list);
  g_print ("%s", text);
  return EXIT_OK;
}

static int
cmd_ping (Client *cl, int argc, char **argv, const CommandOptions *o)
{
  if (argc != 0)
    {
      g_printerr ("gptctl: ping takes no arguments\n");
      return EXIT_USAGE;
    }
  int status;
  Gptd__Request req = GPTD__REQUEST__INIT;
  Gptd__Empty empty = GPTD__EMPTY__INIT;
  req.body_case = GPTD__REQUEST__BODY_PING;
  req.ping = &empty;
  g_autoptr (Gptd__Response) resp = client_request (cl, &req, GPTD__RESPONSE__BODY_OK, &status);
  if (resp == NULL)
    return status;
  if (cl->json)
    g_print ("{\"ok\":true}\n");
  else
    g_print ("gptd is running at %s\n", cl->socket_path);
  return EXIT_OK;
}

/* The options each command takes: a bit per option. */
enum {
  OPT_SET = 1 << 0,
  OPT_WAIT = 1 << 1,
  OPT_FROM_START = 1 << 2,
  OPT_NO_WAIT = 1 << 3,
  OPT_GENERATE = 1 << 4,
  OPT_MODEL = 1 << 5,
  OPT_PRUNE = 1 << 6,
  OPT_WEIGHTS = 1 << 7,
};

static const struct {
  const char *name;
  int (*func) (Client *cl, int argc, char **argv, const CommandOptions *o);
  const char *params;
  const char *summary;
  guint options;
} commands[] = {
  { "run", cmd_run, "FILE", "Submits a pipeline and prints the run's ID. Relative paths "
    "in the pipeline resolve against the file's directory.", OPT_SET | OPT_WAIT },
  { "ps", cmd_ps, "", "Lists the runs.", 0 },
  { "status", cmd_status, "[ID]", "Shows one run; without an ID, the daemon itself (version, "
    "uptime, runs by state, loaded models, memory).", 0 },
  { "watch", cmd_watch, "ID", "Follows a run until it ends: a progress bar on a terminal, "
    "plain lines otherwise. Ctrl-C stops watching; the run goes on.", OPT_FROM_START },
  { "logs", cmd_logs, "ID", "Prints a run's log lines and state changes.", 0 },
  { "cancel", cmd_cancel, "ID", "Cancels a run (stages checkpoint as they stop) and waits "
    "for it to end.", OPT_NO_WAIT },
  { "pause", cmd_pause, "ID", "Pauses a run: its stages checkpoint and its worker stops; "
    "resume continues it exactly. Waits for it to be paused.", OPT_NO_WAIT },
  { "resume", cmd_resume, "ID", "Resumes a run that failed, was cancelled, was interrupted or "
    "was paused, from its last checkpoint, in its run directory.", OPT_WAIT },
  { "output", cmd_output, "ID", "Prints a run's output: what its worker wrote to standard "
    "output and standard error (dump's records, say).", 0 },
  { "rm", cmd_rm, "ID", "Removes a run that has ended, and its run directory. A running or "
    "queued run is refused: cancel it first.", 0 },
  { "prune", cmd_prune, "", "Removes your runs that have ended (root: everyone's), those "
    "that ended longer ago than --older-than and are in one of the --state states (default: "
    "any age, every ended state), and lists them. Running and queued runs are never "
    "touched.", OPT_PRUNE },
  { "generate", cmd_generate, "--model DIR PROMPT", "Streams the text the daemon generates "
    "from PROMPT (- reads it from standard input) with the model in DIR (config.json, "
    "model.safetensors, vocab.json, merges.txt; or a checkpoint directory). The daemon "
    "keeps recently used models loaded. Ctrl-C stops the generation.",
    OPT_MODEL | OPT_GENERATE | OPT_WEIGHTS },
  { "classify", cmd_classify, "--model DIR TEXT...", "Prints the label the classifier in DIR "
    "gives each TEXT (- reads one text per line from standard input), its probability and "
    "the text, one line per text. The daemon keeps recently used models loaded.",
    OPT_MODEL | OPT_WEIGHTS },
  { "plugins", cmd_plugins, "[TYPE]", "Lists the daemon's stage types, or describes one.", 0 },
  { "validate", cmd_validate, "FILE", "Checks a pipeline with the daemon's plugins.", OPT_SET },
  { "ping", cmd_ping, "", "Checks that the daemon answers.", 0 },
};

static void
command_options_clear (CommandOptions *o)
{
  g_strfreev (o->settings);
  g_free (o->model);
  g_free (o->seed);
  g_strfreev (o->stop);
  g_free (o->weights);
  g_free (o->older_than);
  g_strfreev (o->states);
}

/* The closest command to a mistyped one, or NULL. */
static const char *
closest_command (const char *name)
{
  const char *best = NULL;
  guint best_d = G_MAXUINT;
  for (gsize i = 0; i < G_N_ELEMENTS (commands); i++)
    {
      guint d = gptd_levenshtein (name, commands[i].name);
      if (d < best_d)
        {
          best_d = d;
          best = commands[i].name;
        }
    }
  return best_d <= 2 ? best : NULL;
}

/* Parses the options of command @i: its own, and --socket and --json, which may
 * also come before the command. Leaves the positional arguments in @argc/@argv. */
static gboolean
parse_command_options (gsize i, int *argc, char ***argv, CommandOptions *o,
                       char **socket_path, gboolean *json)
{
  GOptionEntry all[] = {
    { "socket", 's', 0, G_OPTION_ARG_FILENAME, socket_path,
      "The daemon's control socket (default: $GPTD_SOCKET, else the daemon's default)",
      "PATH" },
    { "json", 'j', 0, G_OPTION_ARG_NONE, json, "Print the answers as JSON", NULL },
    { "set", 0, 0, G_OPTION_ARG_STRING_ARRAY, &o->settings,
      "Set a variable (var=value) or a stage key (stage.key=value); repeatable",
      "KEY=VALUE" },
    { "wait", 'w', 0, G_OPTION_ARG_NONE, &o->wait,
      "Watch the run to its end and exit with its result", NULL },
    { "from-start", 0, 0, G_OPTION_ARG_NONE, &o->from_start,
      "Replay the run's past events first", NULL },
    { "no-wait", 0, 0, G_OPTION_ARG_NONE, &o->no_wait,
      "Return without waiting for the run to end", NULL },
    { "model", 0, 0, G_OPTION_ARG_FILENAME, &o->model, "The model directory", "DIR" },
    { "max-new-tokens", 0, 0, G_OPTION_ARG_INT, &o->max_new_tokens,
      "How many tokens to generate (default 50)", "N" },
    { "temperature", 0, 0, G_OPTION_ARG_DOUBLE, &o->temperature,
      "0 (the default) for greedy decoding, else sample at this temperature", "T" },
    { "top-k", 0, 0, G_OPTION_ARG_INT, &o->top_k,
      "Sample among the K most likely tokens only (default 0: all)", "K" },
    { "top-p", 0, 0, G_OPTION_ARG_DOUBLE, &o->top_p,
      "Nucleus sampling threshold in (0, 1] (default 1: all)", "P" },
    { "seed", 0, 0, G_OPTION_ARG_STRING, &o->seed,
      "Seed of the sampling (default: a random one)", "S" },
    { "eos-id", 0, 0, G_OPTION_ARG_INT, &o->eos_id,
      "Stop when this token comes out (default -1: never)", "ID" },
    { "older-than", 0, 0, G_OPTION_ARG_STRING, &o->older_than,
      "Only runs that ended longer ago than this (90s, 30m, 12h, 7d)", "DURATION" },
    { "state", 0, 0, G_OPTION_ARG_STRING_ARRAY, &o->states,
      "Only runs in this state (succeeded, failed, cancelled, interrupted, paused); "
      "repeatable", "STATE" },
    { "weights", 0, 0, G_OPTION_ARG_STRING, &o->weights,
      "The format the daemon holds the weights in: fp32, bf16 or q8 (default: the model "
      "directory's own)", "FORMAT" },
    { "stop", 0, 0, G_OPTION_ARG_STRING_ARRAY, &o->stop,
      "End the text before this string when it comes out (it is not sent); repeatable",
      "S" },
  };
  static const guint bit[G_N_ELEMENTS (all)] = {
    0, 0, OPT_SET, OPT_WAIT, OPT_FROM_START, OPT_NO_WAIT, OPT_MODEL, OPT_GENERATE,
    OPT_GENERATE, OPT_GENERATE, OPT_GENERATE, OPT_GENERATE, OPT_GENERATE, OPT_PRUNE,
    OPT_PRUNE, OPT_WEIGHTS, OPT_GENERATE,
  };
  GOptionEntry entries[G_N_ELEMENTS (all) + 1];
  gsize n = 0;
  for (gsize k = 0; k < G_N_ELEMENTS (all); k++)
    if (bit[k] == 0 || (commands[i].options & bit[k]))
      entries[n++] = all[k];
  entries[n] = (GOptionEntry) { NULL };

  g_autoptr (GOptionContext) ctx = g_option_context_new (commands[i].params);
  g_option_context_set_summary (ctx, commands[i].summary);
  g_option_context_add_main_entries (ctx, entries, NULL);
  g_autofree char *prgname = g_strdup_printf ("gptctl %s", commands[i].name);
  g_set_prgname (prgname);
  g_autoptr (GError) error = NULL;
  gboolean ok = g_option_context_parse (ctx, argc, argv, &error);
  g_set_prgname ("gptctl");
  if (!ok)
    {
      g_printerr ("gptctl %s: %s\nTry 'gptctl %s --help'.\n", commands[i].name,
                  error->message, commands[i].name);
      return FALSE;
    }
  return TRUE;
}

int
main (int argc, char **argv)
{
  setlocale (LC_ALL, "");
  g_set_prgname ("gptctl");

  g_autofree char *socket_path = NULL;
  gboolean json = FALSE, version = FALSE;
  CommandOptions o = { 0 };
  o.max_new_tokens = 50;
  o.top_p = 1.0;
  o.eos_id = -1;
  /* Options before the command: --socket, --json, --version. The parse stops at the
   * command, whose own options are parsed next. */
  GOptionEntry entries[] = {
    { "socket", 's', 0, G_OPTION_ARG_FILENAME, &socket_path,
      "The daemon's control socket (default: $GPTD_SOCKET, else the daemon's default)",
      "PATH" },
    { "json", 'j', 0, G_OPTION_ARG_NONE, &json, "Print the answers as JSON", NULL },
    { "version", 0, 0, G_OPTION_ARG_NONE, &version, "Print the version and exit", NULL },
    { NULL }
  };
  g_autoptr (GOptionContext) ctx =
    g_option_context_new ("COMMAND [ARGS] - control the gptd daemon");
  g_option_context_add_main_entries (ctx, entries, NULL);
  g_option_context_set_description (ctx, gptctl_description);
  g_option_context_set_strict_posix (ctx, TRUE);
  g_autoptr (GError) error = NULL;
  if (!g_option_context_parse (ctx, &argc, &argv, &error))
    {
      g_printerr ("gptctl: %s\nTry 'gptctl --help'.\n", error->message);
      return EXIT_USAGE;
    }
  if (version)
    {
      g_print ("gptctl %s\n", PACKAGE_VERSION);
      return EXIT_OK;
    }
  if (argc < 2)
    {
      g_printerr ("gptctl: no command given\nTry 'gptctl --help'.\n");
      return EXIT_USAGE;
    }

  gsize cmd = G_N_ELEMENTS (commands);
  for (gsize i = 0; i < G_N_ELEMENTS (commands); i++)
    if (strcmp (argv[1], commands[i].name) == 0)
      cmd = i;
  if (cmd == G_N_ELEMENTS (commands))
    {
      const char *near = closest_command (argv[1]);
      if (near != NULL)
        g_printerr ("gptctl: unknown command '%s' (did you mean '%s'?)\n", argv[1], near);
      else
        g_printerr ("gptctl: unknown command '%s'\n", argv[1]);
      g_printerr ("Try 'gptctl --help'.\n");
      return EXIT_USAGE;
    }

  /* The command's own arguments: argv[1] becomes its argv[0]. */
  int cargc = argc - 1;
  char **cargv = argv + 1;
  if (!parse_command_options (cmd, &cargc, &cargv, &o, &socket_path, &json))
    {
      command_options_clear (&o);
      return EXIT_USAGE;
    }

  Client cl = { .fd = -1, .json = json };
  if (socket_path == NULL)
    socket_path = gptd__client_socket_path ();
  cl.socket_path = socket_path;

  int status = commands[cmd].func (&cl, cargc - 1, cargv + 1, &o);
  if (cl.fd >= 0)
    close (cl.fd);
  command_options_clear (&o);
  return status;
}
