/* cli.c: the one-shot subcommands of gptd — `gptd run` (a pipeline in the foreground,
 * with a progress line), `gptd validate` and `gptd plugins`. See cli.h. */
#include "config.h"

#include <errno.h>
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include <gio/gio.h>
#include <glib-unix.h>
#include <json-glib/json-glib.h>

#include <gptd/dist.h>
#include <gptd/json-load.h>
#include <gptd/message-json.h>
#include <gptd/pipeline.h>
#include <gptd/registry.h>
#include <gptd/runner.h>

#include "cli.h"
#include "ranks.h"
#include "runs.h"
#include "io/install-paths.h"

/* Parses the options of a subcommand. Returns FALSE (after printing why) on bad
 * usage; @argc/@argv are left holding the positional arguments, argv[0] first. */
static gboolean
parse_options (const char *command, const char *params, const char *summary,
               GOptionEntry *entries, int *argc, char ***argv)
{
  g_autofree char *title = g_strdup_printf ("%s %s", command, params);
  g_autoptr (GOptionContext) oc = g_option_context_new (title);
  g_option_context_set_summary (oc, summary);
  g_option_context_add_main_entries (oc, entries, NULL);
  g_autoptr (GError) error = NULL;
  if (!g_option_context_parse (oc, argc, argv, &error))
    {
      g_printerr ("gptd %s: %s\n(try gptd %s --help)\n", command, error->message, command);
      return FALSE;
    }
  return TRUE;
}

static GptdRegistry *
load_registry (gboolean print_warnings)
{
  GptdRegistry *registry = gptd_registry_new ();
  g_autoptr (GError) error = NULL;
  if (!gptd_registry_scan (registry, &error))
    g_printerr ("gptd: warning: %s\n", error->message);
  GPtrArray *warnings = gptd_registry_get_warnings (registry);
  for (guint i = 0; print_warnings && i < warnings->len; i++)
    g_printerr ("gptd: warning: %s\n", (const char *) warnings->pdata[i]);
  return registry;
}

static void
print_json (const ProtobufCMessage *msg)
{
  g_autofree char *text = gptd_message_to_json_string (msg, TRUE, TRUE);
  g_print ("%s\n", text);
}

/* Reads the pipeline a command line names: "-" is standard input (its relative
 * paths are relative to the current directory), an existing file is read as it is,
 * and a bare name is looked up among the shipped pipelines (gptd run quickstart). */
static gboolean
read_pipeline_arg (const char *arg, char **filename, char **text, gsize *length,
                   GError **error)
{
  if (strcmp (arg, "-") == 0)
    {
      g_autoptr (GString) buf = g_string_new (NULL);
      char chunk[65536];
      size_t n;
      while ((n = fread (chunk, 1, sizeof chunk, stdin)) > 0)
        g_string_append_len (buf, chunk, (gssize) n);
      if (ferror (stdin))
        {
          int e = errno;
          g_set_error (error, G_FILE_ERROR, g_file_error_from_errno (e),
                       "cannot read the pipeline from standard input: %s", g_strerror (e));
          return FALSE;
        }
      *filename = g_strdup ("<stdin>");
      *length = buf->len;
      *text = g_string_free (g_steal_pointer (&buf), FALSE);
      return TRUE;
    }
  g_autofree char *path = gptd__install_find_pipeline (arg, error);
  if (path == NULL || !g_file_get_contents (path, text, length, error))
    return FALSE;
  *filename = g_steal_pointer (&path);
  return TRUE;
}

/* ---- gptd plugins ----------------------------------------------------------- */

int
gptd_cli_plugins (int argc, char **argv)
{
  gboolean json = FALSE;
  GOptionEntry entries[] = {
    { "json", 0, 0, G_OPTION_ARG_NONE, &json, "Print the answer as JSON", NULL },
    { NULL }
  };
  if (!parse_options ("plugins", "[TYPE]", "Lists the stage types of every plugin found "
                      "on GPTD_PLUGIN_PATH and in the plugin directory, or describes one.",
                      entries, &argc, &argv))
    return GPTD_CLI_EXIT_USAGE;
  if (argc > 2)
    {
      g_printerr ("gptd plugins: give at most one stage type\n");
      return GPTD_CLI_EXIT_USAGE;
    }
  const char *type = argc == 2 ? argv[1] : NULL;
  g_autoptr (GptdRegistry) registry = load_registry (FALSE);
  g_autoptr (GError) error = NULL;
  Gptd__PluginList *list = gptd_registry_to_plugin_list (registry, type, &error);
  if (list == NULL)
    {
      g_printerr ("gptd plugins: %s\n", error->message);
      return GPTD_CLI_EXIT_FAILED;
    }
  if (json)
    print_json (&list->base);
  else if (type)
    {
      g_autofree char *text = gptd_stage_type_info_format (list->stage_types[0]);
      g_print ("%s", text);
    }
  else
    {
      g_autofree char *text = gptd_plugin_list_format (list);
      g_print ("%s", text);
    }
  gptd_plugin_list_free (list);
  return GPTD_CLI_EXIT_OK;
}

/* ---- gptd validate ---------------------------------------------------------- */

int
gptd_cli_validate (int argc, char **argv)
{
  gboolean json = FALSE;
  g_auto (GStrv) settings = NULL;
  GOptionEntry entries[] = {
    { "set", 's', 0, G_OPTION_ARG_STRING_ARRAY, &settings,
      "Set a variable (var=value) or a stage key (stage.key=value); repeatable", "KEY=VALUE" },
    { "json", 0, 0, G_OPTION_ARG_NONE, &json, "Print the result as JSON", NULL },
    { NULL }
  };
  if (!parse_options ("validate", "FILE|NAME|-", "Loads and checks a pipeline file (or a "
                      "shipped pipeline by name, or standard input), printing every "
                      "problem found.", entries, &argc, &argv))
    return GPTD_CLI_EXIT_USAGE;
  if (argc != 2)
    {
      g_printerr ("gptd validate: give one pipeline file\n");
      return GPTD_CLI_EXIT_USAGE;
    }
  g_autofree char *file = NULL;
  g_autofree char *text = NULL;
  gsize length = 0;
  g_autoptr (GError) error = NULL;
  if (!read_pipeline_arg (argv[1], &file, &text, &length, &error))
    {
      g_printerr ("gptd validate: %s\n", error->message);
      return GPTD_CLI_EXIT_USAGE;
    }
  g_autoptr (GptdRegistry) registry = load_registry (!json);
  g_autoptr (GPtrArray) problems = NULL;
  g_autoptr (GptdPipeline) pipeline =
    gptd_pipeline_load_data (registry, text, (gssize) length, file,
                             (const char *const *) settings, &problems, &error);

  if (json)
    {
      Gptd__ValidateResult *result = gptd_validate_result_new (problems,
                                                               pipeline ? NULL : error);
      print_json (&result->base);
      gptd_validate_result_free (result);
    }
  else if (pipeline)
    g_print ("%s: valid: pipeline %s, %u stage%s\n", file, gptd_pipeline_get_name (pipeline),
             gptd_pipeline_get_n_stages (pipeline),
             gptd_pipeline_get_n_stages (pipeline) == 1 ? "" : "s");
  else
    {
      for (guint i = 0; problems && i < problems->len; i++)
        g_print ("%s\n", ((GptdPipelineProblem *) problems->pdata[i])->text);
      g_print ("%s: %u problem%s\n", file, problems ? problems->len : 0,
               problems && problems->len == 1 ? "" : "s");
    }
  return pipeline ? GPTD_CLI_EXIT_OK : GPTD_CLI_EXIT_FAILED;
}

/* ---- gptd run ------------------------------------------------------------------ */

typedef struct {
  FILE *events;            /* events.jsonl */
  gboolean tty;            /* stderr is a terminal: redraw one progress line */
  gboolean verbose;
  gboolean quiet;
  char *progress_line;     /* the line currently drawn (tty) */
  gint64 last_plain_progress;
  guint columns;
  char *events_path;
  gboolean events_failed;
} RunDisplay;

static guint
terminal_columns (void)
{
  const char *env = g_getenv ("COLUMNS");
  guint64 c = env ? g_ascii_strtoull (env, NULL, 10) : 0;
  return c >= 20 && c <= 1000 ? (guint) c : 100;
}

static void
clear_progress (RunDisplay *d)
{
  if (d->tty && d->progress_line)
    g_printerr ("\r\033[K");
}

static void
draw_progress (RunDisplay *d)
{
  if (d->tty && d->progress_line)
    g_printerr ("%s", d->progress_line);
}

static void
on_event (const Gptd__Event *event, gpointer user_data)
{
  RunDisplay *d = user_data;
  if (d->events && !d->events_failed)
    {
      g_autofree char *json = gptd_message_to_json_string (&event->base, FALSE, FALSE);
      if (fprintf (d->events, "%s\n", json) < 0 || fflush (d->events) != 0)
        {
          int e = errno;
          d->events_failed = TRUE;
          clear_progress (d);
          g_printerr ("gptd: warning: writing %s failed: %s\n", d->events_path, g_strerror (e));
          draw_progress (d);
        }
    }
  if (d->quiet)
    return;

  if (event->body_case == GPTD__EVENT__BODY_PROGRESS)
    {
      if (d->tty)
        {
          g_autofree char *line = gptd_progress_format (event->progress, 24);
          if (strlen (line) >= d->columns)
            {
              g_free (line);
              line = gptd_progress_format (event->progress, 0);
              if (strlen (line) >= d->columns)
                line[d->columns - 1] = '\0';
            }
          clear_progress (d);
          g_free (d->progress_line);
          d->progress_line = g_steal_pointer (&line);
          draw_progress (d);
        }
      else
        {
          /* Not a terminal: a progress line every few seconds is enough. */
          gint64 now = g_get_monotonic_time ();
          if (now - d->last_plain_progress >= 5 * G_USEC_PER_SEC)
            {
              d->last_plain_progress = now;
              g_autofree char *line = gptd_event_format (event);
              g_printerr ("%s\n", line);
            }
        }
      return;
    }
  if (event->body_case == GPTD__EVENT__BODY_LOG && !d->verbose &&
      event->log->level == GPTD__LOG_LEVEL__LOG_LEVEL_DEBUG)
    return;
  if (event->body_case == GPTD__EVENT__BODY_STATE)
    return;   /* the outcome is printed when the run ends */
  if (event->body_case == GPTD__EVENT__BODY_TEXT)
    {
      clear_progress (d);
      g_printerr ("%s%s", event->text->text, event->text->done ? "\n" : "");
      if (event->text->done)
        draw_progress (d);
      return;
    }
  g_autofree char *line = gptd_event_format (event);
  clear_progress (d);
  g_printerr ("%s\n", line);
  draw_progress (d);
}

typedef struct {
  GptdRunner *runner;
  GMainLoop *loop;
  gboolean ok;
  GError *error;
  guint signals;
} RunThread;

static gboolean
quit_loop (gpointer data)
{
  g_main_loop_quit (data);
  return G_SOURCE_REMOVE;
}

static gpointer
run_thread (gpointer data)
{
  RunThread *rt = data;
  rt->ok = gptd_runner_run (rt->runner, &rt->error);
  /* Quit from the loop's own thread: a quit before the loop runs would be lost. */
  g_idle_add (quit_loop, rt->loop);
  return NULL;
}

static gboolean
on_signal (gpointer data)
{
  RunThread *rt = data;
  if (++rt->signals == 1)
    {
      g_printerr ("\ngptd: cancelling the run (interrupt again to stop at once)\n");
      gptd_runner_cancel (rt->runner);
      return G_SOURCE_CONTINUE;
    }
  g_printerr ("gptd: stopping at once\n");
  _exit (GPTD_CLI_EXIT_CANCELLED);
}

/* ./runs/NAME-YYYYmmdd-HHMMSS, with -2, -3, ... when that exists already. */
static char *
default_run_dir (const char *name)
{
  g_autoptr (GDateTime) now = g_date_time_new_now_local ();
  g_autofree char *stamp = g_date_time_format (now, "%Y%m%d-%H%M%S");
  g_autofree char *base = g_strdup_printf ("runs/%s-%s", name, stamp);
  char *dir = g_strdup (base);
  for (guint n = 2; g_file_test (dir, G_FILE_TEST_EXISTS); n++)
    {
      g_free (dir);
      dir = g_strdup_printf ("%s-%u", base, n);
    }
  return dir;
}

/* Points runs/NAME-latest at the run directory just made (replaced atomically), so
 * that the newest run of a pipeline has a stable name: gptd generate -m
 * runs/quickstart-latest/checkpoint. A failure is only a warning. */
static void
update_latest_link (const char *run_dir, const char *name)
{
  g_autofree char *parent = g_path_get_dirname (run_dir);
  g_autofree char *target = g_path_get_basename (run_dir);
  g_autofree char *link_name = g_strdup_printf ("%s-latest", name);
  g_autofree char *link = g_build_filename (parent, link_name, NULL);
  g_autofree char *tmp = g_strdup_printf ("%s.tmp%d", link, (int) getpid ());
  unlink (tmp);
  if (symlink (target, tmp) != 0 || rename (tmp, link) != 0)
    {
      int e = errno;
      unlink (tmp);
      g_printerr ("gptd: warning: cannot point %s at %s: %s\n", link, target, g_strerror (e));
    }
}

/* Starts this command again as @ranks processes under mpirun, which waits for
 * them: its exit status is the group's. */
static int
exec_ranks (guint ranks, const char *hosts, char **args)
{
  g_autoptr (GError) error = NULL;
  g_autoptr (GPtrArray) command = g_ptr_array_new ();
  g_autofree char *self = g_file_read_link ("/proc/self/exe", NULL);
  g_ptr_array_add (command, self ? self : args[0]);
  for (guint i = 0; args[i]; i++)
    g_ptr_array_add (command, args[i]);
  g_ptr_array_add (command, NULL);
  g_auto (GStrv) argv = gptd__ranks_mpirun_argv (ranks, hosts,
                                                 (const char *const *) command->pdata,
                                                 &error);
  if (argv == NULL)
    {
      g_printerr ("gptd run: %s\n", error->message);
      return GPTD_CLI_EXIT_USAGE;
    }
  execv (argv[0], argv);
  g_printerr ("gptd run: cannot start %s: %s\n", argv[0], g_strerror (errno));
  return GPTD_CLI_EXIT_FAILED;
}

static int run_pipeline (int argc, char **argv);

int
gptd_cli_run (int argc, char **argv)
{
  /* Under mpirun this process is one rank of a data-parallel group. */
  g_autoptr (GError) error = NULL;
  if (!gptd_dist_init (&error))
    {
      g_printerr ("gptd run: %s\n", error->message);
      return GPTD_CLI_EXIT_USAGE;
    }
  int status = run_pipeline (argc, argv);
  /* A rank that fails ends the group, which would wait for it forever. */
  if (gptd_dist_size () > 1 && status != GPTD_CLI_EXIT_OK)
    gptd_dist_abort (status);
  gptd_dist_finalize ();
  return status;
}

static int
run_pipeline (int argc, char **argv)
{
  g_auto (GStrv) set = NULL;
  g_autofree char *run_dir_opt = NULL;
  g_autofree char *resume_dir = NULL;
  gboolean quiet = FALSE, verbose = FALSE;
  int ranks_opt = 0;
  g_auto (GStrv) args = g_strdupv (argv);
  int rank = gptd_dist_rank (), size = gptd_dist_size ();
  GOptionEntry entries[] = {
    { "set", 's', 0, G_OPTION_ARG_STRING_ARRAY, &set,
      "Set a variable (var=value) or a stage key (stage.key=value); repeatable", "KEY=VALUE" },
    { "run-dir", 'd', 0, G_OPTION_ARG_FILENAME, &run_dir_opt,
      "Run directory (default ./runs/NAME-YYYYmmdd-HHMMSS)", "DIR" },
    { "resume", 'r', 0, G_OPTION_ARG_FILENAME, &resume_dir,
      "Run the pipeline saved in RUNDIR again there, resuming from its checkpoints",
      "RUNDIR" },
    { "quiet", 'q', 0, G_OPTION_ARG_NONE, &quiet, "Print only the outcome", NULL },
    { "verbose", 'v', 0, G_OPTION_ARG_NONE, &verbose, "Print debug log lines too", NULL },
    { "ranks", 'n', 0, G_OPTION_ARG_INT, &ranks_opt,
      "Train data-parallel on N processes: starts mpirun (overrides the pipeline's "
      "ranks=)", "N" },
    { NULL }
  };
  if (!parse_options ("run", "FILE|NAME|-", "Runs a pipeline in the foreground: a file, "
                      "a shipped pipeline by name (gptd run quickstart) or standard input "
                      "(-). SIGINT or SIGTERM "
                      "cancels it. Exit status: 0 success, 1 a stage failed, 2 bad usage or "
                      "an invalid pipeline, 130 cancelled.", entries, &argc, &argv))
    return GPTD_CLI_EXIT_USAGE;
  if (argc > 2 || (argc < 2 && resume_dir == NULL))
    {
      g_printerr ("gptd run: give one pipeline file\n");
      return GPTD_CLI_EXIT_USAGE;
    }
  if (resume_dir && run_dir_opt)
    {
      g_printerr ("gptd run: --resume runs in RUNDIR; do not give --run-dir too\n");
      return GPTD_CLI_EXIT_USAGE;
    }
  if (ranks_opt < 0 || ranks_opt > 4096)
    {
      g_printerr ("gptd run: --ranks: %d is not a number of processes from 1 to 4096\n",
                  ranks_opt);
      return GPTD_CLI_EXIT_USAGE;
    }
  /* The other ranks say nothing unless they fail. */
  if (rank != 0)
    quiet = TRUE;

  /* What to run: a file, or what a run directory holds. */
  g_autoptr (GPtrArray) settings = g_ptr_array_new_with_free_func (g_free);
  g_autofree char *filename = NULL;
  g_autofree char *text = NULL;
  gsize length = 0;
  g_autoptr (GError) error = NULL;
  g_autofree char *workdir = NULL;
  g_auto (GStrv) environment = NULL;
  if (resume_dir)
    {
      /* What the run directory holds (runs.h: the daemon's runs and this
       * command's share the format), with the environment the daemon recorded
       * for a submitted run. */
      g_auto (GStrv) saved_settings = NULL;
      if (!gptd__run_dir_read_request (resume_dir, &text, &filename, &workdir, &saved_settings,
                                       &error))
        {
          g_printerr ("gptd run: cannot resume %s: %s\n", resume_dir, error->message);
          return GPTD_CLI_EXIT_USAGE;
        }
      length = strlen (text);
      for (guint i = 0; saved_settings[i]; i++)
        g_ptr_array_add (settings, g_strdup (saved_settings[i]));
      environment = gptd__run_dir_read_environment (resume_dir);
      if (argc == 2)
        {
          g_free (filename);
          filename = g_strdup (argv[1]);
          g_clear_pointer (&text, g_free);
          if (!g_file_get_contents (argv[1], &text, &length, &error))
            {
              g_printerr ("gptd run: %s\n", error->message);
              return GPTD_CLI_EXIT_USAGE;
            }
        }
    }
  else
    {
      if (!read_pipeline_arg (argv[1], &filename, &text, &length, &error))
        {
          g_printerr ("gptd run: %s\n", error->message);
          return GPTD_CLI_EXIT_USAGE;
        }
    }
  for (guint i = 0; set && set[i]; i++)
    g_ptr_array_add (settings, g_strdup (set[i]));
  g_ptr_array_add (settings, NULL);

  g_autoptr (GptdRegistry) registry = load_registry (rank == 0);
  g_autoptr (GPtrArray) problems = NULL;
  g_autoptr (GptdPipeline) pipeline =
    gptd_pipeline_load_data_with_env (registry, text, (gssize) length, filename,
                                      (const char *const *) settings->pdata,
                                      (const char *const *) environment, &problems, &error);
  if (pipeline == NULL)
    {
      for (guint i = 0; problems && i < problems->len; i++)
        g_printerr ("%s\n", ((GptdPipelineProblem *) problems->pdata[i])->text);
      g_printerr ("gptd run: %s is not a valid pipeline\n", filename);
      return GPTD_CLI_EXIT_USAGE;
    }

  /* Several ranks: mpirun starts them, each running this command. */
  guint ranks = ranks_opt > 0 ? (guint) ranks_opt : gptd_pipeline_get_ranks (pipeline);
  if (ranks > 1 && !gptd_dist_launched ())
    return exec_ranks (ranks, gptd_pipeline_get_hosts (pipeline), args);

  /* The run directory, with the pipeline as submitted and the event log; rank 0
   * names it for the group. */
  g_autofree char *run_dir = NULL;
  if (rank == 0)
    run_dir = resume_dir ? g_strdup (resume_dir)
              : run_dir_opt ? g_strdup (run_dir_opt)
              : default_run_dir (gptd_pipeline_get_name (pipeline));
  if (size > 1)
    {
      char *shared = gptd_dist_broadcast_string (run_dir, 0);
      g_free (run_dir);
      run_dir = shared;
    }
  if (rank == 0 && g_mkdir_with_parents (run_dir, 0755) != 0)
    {
      int e = errno;
      g_printerr ("gptd run: cannot create the run directory %s: %s\n", run_dir,
                  g_strerror (e));
      return GPTD_CLI_EXIT_FAILED;
    }
  if (rank == 0 && !resume_dir && !run_dir_opt)
    update_latest_link (run_dir, gptd_pipeline_get_name (pipeline));
  if (rank == 0 && (!resume_dir || argc == 2))
    {
      g_autofree char *abs = g_canonicalize_filename (filename, NULL);
      if (!gptd__run_dir_write_request (run_dir, text, (gssize) length, abs, workdir,
                                        (const char *const *) settings->pdata,
                                        (const char *const *) environment, &error))
        {
          g_printerr ("gptd run: %s\n", error->message);
          return GPTD_CLI_EXIT_FAILED;
        }
    }
  RunDisplay display = { 0 };
  display.tty = isatty (STDERR_FILENO) && !quiet;
  display.quiet = quiet;
  display.verbose = verbose;
  display.columns = terminal_columns ();
  display.events_path = g_build_filename (run_dir, GPTD_RUN_EVENTS_JSON_FILE, NULL);
  if (rank == 0)
    display.events = fopen (display.events_path, resume_dir ? "a" : "w");
  if (rank == 0 && display.events == NULL)
    {
      int e = errno;
      g_printerr ("gptd run: cannot write %s: %s\n", display.events_path, g_strerror (e));
      g_free (display.events_path);
      return GPTD_CLI_EXIT_FAILED;
    }
  if (!quiet)
    g_printerr ("gptd: running %s (%s); run directory %s\n", gptd_pipeline_get_name (pipeline),
                filename, run_dir);
  if (!quiet && size > 1)
    g_printerr ("gptd: %d ranks (data-parallel)\n", size);

  g_autoptr (GptdRunner) runner = gptd_runner_new (pipeline, run_dir, on_event, &display);
  g_autofree char *run_id = g_path_get_basename (run_dir);
  gptd_runner_set_run_id (runner, run_id);
  gptd_runner_set_resume (runner, resume_dir != NULL);

  RunThread rt = { 0 };
  rt.runner = runner;
  rt.loop = g_main_loop_new (NULL, FALSE);
  guint sigint = g_unix_signal_add (SIGINT, on_signal, &rt);
  guint sigterm = g_unix_signal_add (SIGTERM, on_signal, &rt);
  gint64 start = g_get_monotonic_time ();
  GThread *thread = g_thread_new ("runner", run_thread, &rt);
  g_main_loop_run (rt.loop);
  g_thread_join (thread);
  g_source_remove (sigint);
  g_source_remove (sigterm);
  g_main_loop_unref (rt.loop);
  double seconds = (double) (g_get_monotonic_time () - start) / G_USEC_PER_SEC;

  clear_progress (&display);
  if (display.progress_line)
    {
      g_printerr ("%s\n", display.progress_line);   /* keep the last progress visible */
      g_free (display.progress_line);
    }
  if (display.events != NULL)
    fclose (display.events);
  g_free (display.events_path);

  if (rt.ok)
    {
      if (!quiet)
        g_printerr ("gptd: %s succeeded in %.1fs\n", gptd_pipeline_get_name (pipeline), seconds);
      return GPTD_CLI_EXIT_OK;
    }
  int status;
  if (gptd_runner_get_state (runner) == GPTD__RUN_STATE__RUN_STATE_CANCELLED)
    {
      g_printerr ("gptd: %s was cancelled after %.1fs\n", gptd_pipeline_get_name (pipeline),
                  seconds);
      status = GPTD_CLI_EXIT_CANCELLED;
    }
  else
    {
      if (size > 1)
        g_printerr ("gptd: rank %d of %d: %s\n", rank, size, rt.error->message);
      else
        g_printerr ("gptd: %s\n", rt.error->message);
      status = GPTD_CLI_EXIT_FAILED;
    }
  g_clear_error (&rt.error);
  return status;
}
