/* daemon/worker.h: the worker process that runs one pipeline for the daemon.
 *
 * Each run is a process of its own, so a crashing or out-of-memory stage takes
 * down its run and nothing else. The daemon re-executes its own binary
 * (/proc/self/exe) as
 *
 *   gptd --worker RUN_DIR --run-id ID
 *
 * with fd 3 the write end of a socket pair and stdout/stderr appended to
 * RUN_DIR/output.log. The worker loads the plugins, loads the pipeline saved in
 * RUN_DIR (pipeline.pipeline and run.json, see runs.h) under its original
 * file name, runs it with the runner in RUN_DIR and writes every event of the run
 * to fd 3 as a frame (gptd.Event). A worker started to resume a run (the
 * environment variable GPTD_WORKER_RESUME=1, which the worker removes from its
 * environment) runs the pipeline with the runner's resume flag, as
 * `gptd run --resume RUN_DIR` does: stages continue from their last
 * checkpoints. SIGTERM or SIGINT cancel the run (stages that
 * checkpoint do so as they stop); the worker also gets SIGTERM when the daemon
 * dies. Exit status: 0 succeeded, 1 failed, 130 cancelled.
 *
 * The daemon side (GptdWorker) spawns the process on the daemon's libuv loop,
 * reads its frames and reports its end once both the process has exited and
 * everything it wrote has been read.
 */
#pragma once

#include <glib.h>
#include <uv.h>
#include <gptd.pb-c.h>

G_BEGIN_DECLS

/* The environment variable that tells a worker to resume its run. */
#define GPTD_WORKER_RESUME_ENV "GPTD_WORKER_RESUME"

/**
 * gptd__worker_main:
 * @run_dir: the run directory
 * @run_id: the run's ID, copied into its events
 * @fd: the file descriptor events are written to
 *
 * The worker process's main function (`gptd --worker`).
 *
 * Returns: the process exit status
 */
int gptd__worker_main (const char *run_dir, const char *run_id, int fd);

/* Runs the pipeline of @run_dir as gptd__worker_main() does, once the process
 * knows whether it is one of a rank group; @fd -1 sends no events. */
int gptd__worker_run (const char *run_dir, const char *run_id, int fd);

/**
 * GptdWorker:
 *
 * The daemon's handle on a worker process; opaque.
 */
typedef struct _GptdWorker GptdWorker;

/**
 * GptdWorkerEventFunc:
 * @worker: the worker
 * @event: an event it sent; freed after the call
 * @user_data: the data given to gptd__worker_spawn()
 */
typedef void (*GptdWorkerEventFunc) (GptdWorker *worker, Gptd__Event *event, gpointer user_data);

/**
 * GptdWorkerExitFunc:
 * @worker: the worker
 * @exit_status: the process's exit status (when @term_signal is 0)
 * @term_signal: the signal that killed it, or 0
 * @protocol_error: (nullable): why its output was refused (it was then killed)
 * @user_data: the data given to gptd__worker_spawn()
 *
 * Called once, when the process has exited and its output has been read. The
 * worker closes its handles and frees itself after the call.
 */
typedef void (*GptdWorkerExitFunc) (GptdWorker *worker, gint64 exit_status, int term_signal,
                                    const char *protocol_error, gpointer user_data);

/**
 * GptdWorkerSetup:
 * @threads: the threads the run computes with (GPTD_NN_THREADS in the
 *   worker's environment), 0 to leave the environment as it is
 * @as_user: start the worker with @uid and @gid (and no supplementary groups):
 *   a root daemon runs each run with its submitter's rights
 * @uid: the user
 * @gid: the group
 *
 * How a worker process is started.
 */
typedef struct {
  guint threads;
  gboolean as_user;
  guint uid;
  guint gid;
} GptdWorkerSetup;

/**
 * gptd__worker_spawn:
 * @loop: the daemon's loop
 * @run_dir: the run directory (its output.log receives stdout and stderr)
 * @run_id: the run's ID
 * @resume: resume the run from its checkpoints rather than start it
 * @setup: (nullable): threads and credentials
 * @event_func: receives the worker's events
 * @exit_func: told when the worker has ended
 * @user_data: passed to the functions
 * @error: return location for a #GError
 *
 * Starts a worker process for a run.
 *
 * Returns: (transfer none): the worker, or %NULL with @error set
 */
GptdWorker *gptd__worker_spawn (uv_loop_t *loop, const char *run_dir, const char *run_id,
                                gboolean resume, const GptdWorkerSetup *setup,
                                GptdWorkerEventFunc event_func, GptdWorkerExitFunc exit_func,
                                gpointer user_data, GError **error);

/* The worker's process id. */
int gptd__worker_get_pid (GptdWorker *worker);

/* Sends @signum to the worker process (ignored once it has exited). */
void gptd__worker_kill (GptdWorker *worker, int signum);

G_END_DECLS
