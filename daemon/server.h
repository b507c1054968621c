/* daemon/server.h: the gptd daemon: one libuv loop that owns the control socket,
 * the run table, the child processes and the signals. It supervises; its
 * children compute (see server-private.h for the parts).
 *
 * Clients speak the control protocol (docs/control-protocol.md): frames of
 * gptd.Request in, gptd.Response out. Each request type is handled by one
 * function of server-requests.c, found through a table indexed by the request's
 * body, so a new request type is one function and one table line.
 *
 * Runs run in worker processes (worker.h), at most max-runs at once, the others
 * queued. Generate requests are served by serving workers (serve.h), one process
 * per model and user, the most recently used kept (server-serving.c). Submitted
 * pipelines are checked in a child with the client's rights (check.h). The
 * daemon process holds no model and runs no numeric thread.
 *
 * SIGTERM and SIGINT stop the daemon cleanly: the socket file is removed, every
 * worker gets SIGTERM (its run is cancelled, stages checkpoint) and is waited for
 * up to the stop timeout (then killed); runs stopped this way are marked
 * interrupted. SIGHUP reads the configuration file again and rescans the plugins.
 */
#pragma once

#include <glib.h>

#include "daemon-config.h"

G_BEGIN_DECLS

/**
 * GptdServerOptions:
 * @socket_path: the control socket
 * @state_dir: the state directory
 * @stop_timeout_ms: how long workers are waited for when stopping
 * @client_queue_limit: the bytes a connection may have waiting to be sent
 *   before it is told it lagged and dropped
 * @model_cache: how many serving workers (models loaded) are kept (least
 *   recently used ones beyond it are stopped); 0: $GPTD_MODEL_CACHE, else
 *   %GPTD_SERVER_DEFAULT_MODEL_CACHE
 * @generate_threads: the threads each serving worker computes with; 0:
 *   $GPTD_GENERATE_THREADS, else the cores the running runs leave
 * @config_path: the configuration file, read again on SIGHUP
 * @config_optional: whether that file may be missing (the default path)
 * @cmdline: the settings the command line gave (they override the file's)
 * @config: the settings in force (the file's, overridden by @cmdline)
 *
 * How the daemon is set up.
 */
typedef struct {
  const char *socket_path;
  const char *state_dir;
  guint stop_timeout_ms;
  gsize client_queue_limit;
  guint model_cache;
  guint generate_threads;
  const char *config_path;
  gboolean config_optional;
  const GptdDaemonConfig *cmdline;
  const GptdDaemonConfig *config;
} GptdServerOptions;

#define GPTD_SERVER_DEFAULT_STOP_TIMEOUT_MS 30000
#define GPTD_SERVER_DEFAULT_CLIENT_QUEUE_LIMIT (4u * 1024u * 1024u)
#define GPTD_SERVER_DEFAULT_MODEL_CACHE 2

/**
 * gptd__server_main:
 * @options: the set-up
 *
 * Runs the daemon until it is told to stop.
 *
 * Returns: the process exit status: 0 after a clean stop, 1 when it could not
 *   start (the reason is logged)
 */
int gptd__server_main (const GptdServerOptions *options);

G_END_DECLS
