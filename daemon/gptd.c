/* daemon/gptd.c: the gptd program: the daemon (no subcommand), the one-shot
 * subcommands `run`, `validate`, `generate` and `plugins`, the HTTP gateway
 * (`gptd --http ADDR`), and the internal modes the daemon starts: a worker for
 * each run, and the plugin probe.
 */
#ifdef HAVE_CONFIG_H
#include "config.h"
#endif

#include "cli.h"
#include "daemon-config.h"
#include "paths.h"
#include "server.h"
#include "worker.h"
#include "serve.h"
#include "check.h"
#include "http.h"

#include <gptd/registry.h>

#include <locale.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static const char gptd_description[] =
  "Subcommands (each has its own --help):\n"
  "  gptd run FILE [--set KEY=VALUE]...      run a pipeline in the foreground (FILE:\n"
  "                                          a file, a shipped pipeline's name such\n"
  "                                          as quickstart, or - for standard input)\n"
  "  gptd validate FILE [--set KEY=VALUE]... check a pipeline, printing every problem\n"
  "  gptd generate -m MODEL_DIR PROMPT...    generate text from a model directory\n"
  "  gptd quantize MODEL_DIR OUT_DIR -w q8   save a model with bf16 or q8 weights\n"
  "  gptd plugins [TYPE]                     list the stage types, or describe one\n"
  "  gptd --http ADDR [--socket PATH] [--models DIR] [--token-file FILE]\n"
  "              [--max-body BYTES]          serve the OpenAI-style HTTP API on ADDR\n"
  "                                          (docs/http-api.md), a client of the daemon\n"
  "\n"
  "Without a subcommand gptd is the daemon. It listens on a Unix socket for the\n"
  "control protocol that gptctl speaks (docs/control-protocol.md) and runs each\n"
  "submitted pipeline in a worker process of its own, streaming the run's events\n"
  "to whoever watches it.\n"
  "\n"
  "Files:\n"
  "  SOCKET                the control socket, created 0660 (owner and group).\n"
  "                        Default: $GPTD_SOCKET, else /run/gptd/gptd.sock for root,\n"
  "                        else $XDG_RUNTIME_DIR/gptd/gptd.sock. A socket left by a\n"
  "                        gptd that died is replaced; a live one is refused.\n"
  "  STATE/runs/ID/        one directory per run: pipeline.pipeline (as submitted),\n"
  "                        run.json, status.json, events.log (framed events) and\n"
  "                        events.jsonl (the same as JSON lines),\n"
  "                        output.log (the worker's stdout and stderr), and what the\n"
  "                        stages write (metrics, checkpoints, samples).\n"
  "                        Default STATE: $GPTD_STATE_DIR, else /var/lib/gptd for\n"
  "                        root, else $XDG_STATE_HOME/gptd (~/.local/state/gptd).\n"
  "  STATE/lock            held while a daemon uses the state directory.\n"
  "\n"
  "On start the run table is rebuilt from STATE/runs; runs that were running when\n"
  "the previous daemon died are marked interrupted.\n"
  "\n"
  "The daemon supervises; its children compute: each run is a worker process (at\n"
  "most max-runs at once, the others queued), each loaded model a serving worker\n"
  "(one per model and user), and submitted pipelines are checked in a child. A\n"
  "root daemon starts them with the rights of the user who asked.\n"
  "\n"
  "Signals:\n"
  "  SIGTERM, SIGINT       stop: remove the socket, tell every worker to stop (its run\n"
  "                        is cancelled, trainers checkpoint), wait up to\n"
  "                        --stop-timeout, then kill what is left; those runs are\n"
  "                        marked interrupted. A second signal kills them at once.\n"
  "  SIGHUP                read the configuration again and rescan (and first\n"
  "                        probe) the plugins, answering clients meanwhile.\n"
  "\n"
  "Environment:\n"
  "  GPTD_PLUGIN_PATH      colon-separated plugin directories searched before the\n"
  "                        installed one (" GPTD_PLUGINDIR ").\n"
  "  GPTD_PLUGIN_EXCLUDE   colon-separated plugin files never loaded. The daemon\n"
  "                        loads the plugins in a child process first, at start\n"
  "                        and on SIGHUP; a plugin that crashes it (or hangs) is\n"
  "                        added to the list, for the daemon and its workers, and\n"
  "                        a warning names it.\n"
  "  GPTD_SOCKET, GPTD_STATE_DIR  the defaults described above.\n"
  "  GPTD_MODEL_CACHE, GPTD_GENERATE_THREADS  defaults of --model-cache and\n"
  "                        --generate-threads.\n"
  "  OMP_WAIT_POLICY, GOMP_SPINCOUNT  when neither is set, gptd sets\n"
  "                        GOMP_SPINCOUNT=10000 (idle OpenMP threads spin briefly).\n"
  "\n"
  "Exit status: 0 after a clean stop, 1 when the daemon cannot start (the socket is\n"
  "in use, the state directory is locked by another gptd or cannot be created), 2\n"
  "on bad usage.\n";

static int
serve_mode (int argc, char **argv)
{
  /* gptd --serve MODEL_DIR; the daemon's socket is fd 3. */
  if (argc != 3)
    {
      g_printerr ("gptd: --serve is internal: gptd --serve MODEL_DIR\n");
      return 2;
    }
  return gptd__serve_main (argv[2], 3);
}

static int
worker_mode (int argc, char **argv)
{
  /* gptd --worker RUN_DIR --run-id ID; the event pipe is fd 3. */
  if (argc != 5 || strcmp (argv[3], "--run-id") != 0)
    {
      g_printerr ("gptd: --worker is internal: gptd --worker RUN_DIR --run-id ID\n");
      return 2;
    }
  return gptd__worker_main (argv[2], argv[4], 3);
}

/* Prints what a scan does to each plugin file, a line at a time and flushed at
 * once, so that the daemon reading it learns which file was being loaded when the
 * process died. */
static void
probe_report (const char *path, GptdRegistryFileEvent event, const GError *error,
              gpointer user_data)
{
  switch (event)
    {
    case GPTD_REGISTRY_FILE_LOADING:
      printf ("loading %s\n", path);
      break;
    case GPTD_REGISTRY_FILE_LOADED:
      printf ("loaded %s\n", path);
      break;
    case GPTD_REGISTRY_FILE_FAILED:
      {
        g_autofree char *message = g_strdup (error ? error->message : "");
        g_strdelimit (message, "\r\n", ' ');
        printf ("failed %s: %s\n", path, message);
      }
      break;
    }
  fflush (stdout);
}

static int
probe_mode (int argc, char **argv)
{
  /* gptd --probe-plugins: loads the plugins as every scan does, saying which file
   * it is loading; the daemon runs it before loading them itself. */
  if (argc != 2)
    {
      g_printerr ("gptd: --probe-plugins is internal and takes no arguments\n");
      return 2;
    }
  g_autoptr (GptdRegistry) registry = gptd_registry_new ();
  gptd_registry_set_file_func (registry, probe_report, NULL);
  g_autoptr (GError) error = NULL;
  /* A directory that cannot be read is not the probe's business: the daemon's own
   * scan reports it. */
  if (!gptd_registry_scan (registry, &error))
    g_printerr ("gptd: %s\n", error->message);
  printf ("done\n");
  fflush (stdout);
  return 0;
}

/* Under systemd stderr is the journal (JOURNAL_STREAM says so): messages go
 * there as structured entries (PRIORITY, GLIB_DOMAIN, CODE_FILE, CODE_LINE,
 * MESSAGE), so that `journalctl -u gptd -p warning` filters them. Elsewhere,
 * and when the journal refuses one, the usual lines on stderr. */
static GLogWriterOutput
journal_writer (GLogLevelFlags level, const GLogField *fields, gsize n_fields,
                gpointer user_data)
{
  if (g_log_writer_default_would_drop (level, NULL))
    return G_LOG_WRITER_HANDLED;
  if (g_log_writer_journald (level, fields, n_fields, user_data) == G_LOG_WRITER_HANDLED)
    return G_LOG_WRITER_HANDLED;
  return g_log_writer_standard_streams (level, fields, n_fields, user_data);
}

static int
daemon_mode (int argc, char **argv)
{
  if (g_log_writer_is_journald (fileno (stderr)))
    g_log_set_writer_func (journal_writer, NULL, NULL);
  g_autofree char *socket_path = NULL;
  g_autofree char *state_dir = NULL;
  g_autofree char *config_path = NULL;
  int stop_timeout_s = -1;
  gint64 queue_limit = -1;
  int model_cache = -1, generate_threads = -1;
  gboolean verbose = FALSE, version = FALSE;
  GOptionEntry entries[] = {
    { "config", 'c', 0, G_OPTION_ARG_FILENAME, &config_path,
      "Read this configuration file (default $CONFIGURATION_DIRECTORY/gptd.conf under "
      "systemd, else " GPTD_SYSCONFDIR "/gptd/gptd.conf when it exists)", "FILE" },
    { "socket", 's', 0, G_OPTION_ARG_FILENAME, &socket_path,
      "Listen on this Unix socket", "PATH" },
    { "state-dir", 'd', 0, G_OPTION_ARG_FILENAME, &state_dir,
      "Keep runs in this directory", "DIR" },
    { "stop-timeout", 0, 0, G_OPTION_ARG_INT, &stop_timeout_s,
      "Seconds to wait for runs to stop when stopping (default 30)", "SECONDS" },
    { "client-queue-limit", 0, 0, G_OPTION_ARG_INT64, &queue_limit,
      "Bytes a client may fall behind before it is dropped (default 4 MiB)", "BYTES" },
    { "model-cache", 0, 0, G_OPTION_ARG_INT, &model_cache,
      "Models kept loaded, each in a serving worker (default $GPTD_MODEL_CACHE, else 2)",
      "N" },
    { "generate-threads", 0, 0, G_OPTION_ARG_INT, &generate_threads,
      "Threads each serving worker computes with (default $GPTD_GENERATE_THREADS, else "
      "the cores the running runs leave)", "N" },
    { "verbose", 'v', 0, G_OPTION_ARG_NONE, &verbose, "Log connections and debug messages",
      NULL },
    { "version", 0, 0, G_OPTION_ARG_NONE, &version, "Print the version and exit", NULL },
    { NULL }
  };
  g_autoptr (GOptionContext) ctx =
    g_option_context_new ("[run|validate|generate|plugins ...] - build and serve GPT-style models");
  g_option_context_add_main_entries (ctx, entries, NULL);
  g_option_context_set_description (ctx, gptd_description);
  g_autoptr (GError) error = NULL;
  if (!g_option_context_parse (ctx, &argc, &argv, &error))
    {
      g_printerr ("gptd: %s\nTry 'gptd --help'.\n", error->message);
      return 2;
    }
  if (version)
    {
      g_print ("gptd %s\n", PACKAGE_VERSION);
      return 0;
    }
  if (argc > 1)
    {
      g_printerr ("gptd: unknown subcommand '%s'\nTry 'gptd --help'.\n", argv[1]);
      return 2;
    }
  if ((stop_timeout_s < 0 && stop_timeout_s != -1) || (queue_limit != -1 && queue_limit < 4096)
      || (model_cache < 0 && model_cache != -1)
      || (generate_threads < 0 && generate_threads != -1))
    {
      g_printerr ("gptd: --stop-timeout, --model-cache and --generate-threads must be >= 0 "
                  "and --client-queue-limit >= 4096\n");
      return 2;
    }

  /* The command line, then the configuration file under it. */
  GptdDaemonConfig cmdline = { 0 };
  cmdline.has_socket_path = socket_path != NULL;
  cmdline.socket_path = g_strdup (socket_path);
  cmdline.has_state_dir = state_dir != NULL;
  cmdline.state_dir = state_dir ? g_canonicalize_filename (state_dir, NULL) : NULL;
  cmdline.has_log_level = verbose;
  cmdline.log_level = verbose ? g_strdup ("debug") : NULL;
  cmdline.has_stop_timeout_s = stop_timeout_s >= 0;
  cmdline.stop_timeout_s = stop_timeout_s;
  cmdline.has_client_queue_limit = queue_limit >= 0;
  cmdline.client_queue_limit = queue_limit;
  cmdline.has_model_cache = model_cache > 0;
  cmdline.model_cache = model_cache;
  cmdline.has_generate_threads = generate_threads > 0;
  cmdline.generate_threads = generate_threads;

  gboolean default_config = config_path == NULL;
  if (default_config)
    config_path = gptd__config_default_path ();
  GptdDaemonConfig cfg;
  if (!gptd__config_load (config_path, default_config, &cfg, &error))
    {
      g_printerr ("gptd: %s\n", error->message);
      gptd__config_clear (&cmdline);
      return 2;
    }
  gptd__config_overlay (&cfg, &cmdline);

  if (cfg.has_log_level && strcmp (cfg.log_level, "debug") == 0)
    g_setenv ("G_MESSAGES_DEBUG", "all", TRUE);
  if (cfg.has_data_dir)
    g_setenv ("GPTD_DATA_DIR", cfg.data_dir, TRUE);
  g_autofree char *sock = cfg.has_socket_path ? g_strdup (cfg.socket_path)
                                              : gptd__default_socket_path ();
  /* Absolute, so run directories mean the same to the workers (which start in
   * them) as to the daemon. */
  g_autofree char *dflt_state = gptd__default_state_dir ();
  g_autofree char *state = g_canonicalize_filename (cfg.has_state_dir ? cfg.state_dir
                                                                      : dflt_state, NULL);

  GptdServerOptions opts = {
    .socket_path = sock,
    .state_dir = state,
    .stop_timeout_ms = (guint) (cfg.has_stop_timeout_s ? cfg.stop_timeout_s
                                : GPTD_SERVER_DEFAULT_STOP_TIMEOUT_MS / 1000) * 1000,
    .client_queue_limit = cfg.has_client_queue_limit ? (gsize) cfg.client_queue_limit
                                                     : GPTD_SERVER_DEFAULT_CLIENT_QUEUE_LIMIT,
    .model_cache = cfg.has_model_cache ? (guint) cfg.model_cache : 0,
    .generate_threads = cfg.has_generate_threads ? (guint) cfg.generate_threads : 0,
    .config_path = config_path,
    .config_optional = default_config,
    .cmdline = &cmdline,
    .config = &cfg,
  };
  int status = gptd__server_main (&opts);
  gptd__config_clear (&cfg);
  gptd__config_clear (&cmdline);
  return status;
}

int
main (int argc, char **argv)
{
  /* OpenMP threads that spin for long while waiting for work take the cores from
   * the other stages of a pipeline, from other runs and from the daemon's
   * generation threads; never spinning costs single-token decoding about 15%.
   * Unless told otherwise, gptd's numeric loops spin briefly, then sleep. libgomp
   * reads the setting once, when it is loaded, so gptd starts itself again with
   * it set. */
  if (g_getenv ("OMP_WAIT_POLICY") == NULL && g_getenv ("GOMP_SPINCOUNT") == NULL)
    {
      g_setenv ("GOMP_SPINCOUNT", "10000", TRUE);
      execv ("/proc/self/exe", argv);
      /* Without /proc, go on with libgomp's default. */
    }

  setlocale (LC_ALL, "");

  if (argc >= 2)
    {
      if (strcmp (argv[1], "--worker") == 0)
        return worker_mode (argc, argv);
      if (strcmp (argv[1], "--serve") == 0)
        return serve_mode (argc, argv);
      if (strcmp (argv[1], "--check") == 0 && argc == 2)
        return gptd__check_main ();
      if (strcmp (argv[1], "--probe-plugins") == 0)
        return probe_mode (argc, argv);
      if (strcmp (argv[1], "--http") == 0 || g_str_has_prefix (argv[1], "--http="))
        return gptd__http_main (argc, argv);
      if (strcmp (argv[1], "run") == 0)
        return gptd_cli_run (argc - 1, argv + 1);
      if (strcmp (argv[1], "validate") == 0)
        return gptd_cli_validate (argc - 1, argv + 1);
      if (strcmp (argv[1], "plugins") == 0)
        return gptd_cli_plugins (argc - 1, argv + 1);
      if (strcmp (argv[1], "generate") == 0)
        return gptd_cli_generate (argc - 1, argv + 1);
      if (strcmp (argv[1], "quantize") == 0)
        return gptd_cli_quantize (argc - 1, argv + 1);
    }
  return daemon_mode (argc, argv);
}
