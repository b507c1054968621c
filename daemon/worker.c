/* daemon/worker.c: the worker process that runs one pipeline (gptd --worker), and
 * the daemon's side of it: spawning the process on the libuv loop, reading its
 * event frames and reporting how it ended.
 *
 * A pipeline with ranks= above 1 (data-parallel training) runs as a rank group:
 * the worker the daemon started starts `mpirun ... gptd --worker` and relays to the
 * daemon the events rank 0 sends it over a socket in the run directory (mpirun
 * does not pass on descriptors other than stdio); the other ranks send none.
 */
#ifdef HAVE_CONFIG_H
#include "config.h"
#endif
#ifndef _GNU_SOURCE
#define _GNU_SOURCE 1
#endif

#include "worker.h"
#include "ranks.h"
#include "runs.h"

#include <gptd/dist.h>
#include <gptd/frame.h>
#include <gptd/pipeline.h>
#include <gptd/registry.h>
#include <gptd/runner.h>

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

/* The socket (in the run directory) over which rank 0 of a rank group sends its
 * events, and the variable that tells the ranks its name. */
#define RANKS_SOCKET "ranks.sock"
#define RANKS_SOCKET_ENV "GPTD_WORKER_RANKS_SOCKET"

/* ---- The worker process ------------------------------------------------------- */

typedef struct {
  int fd;
  gboolean broken;        /* the daemon is gone: nothing more is written */
  GptdRunner *runner;     /* set before the signal thread starts */
  const char *run_id;
  volatile pid_t mpirun;  /* a rank group's mpirun: stop signals go to it */
  volatile gboolean stopping; /* a stop signal came */
} WorkerCtx;

static void
worker_send (WorkerCtx *ctx, const Gptd__Event *event)
{
  if (ctx->broken)
    return;
  g_autoptr (GError) error = NULL;
  if (!gptd_frame_write_fd (ctx->fd, &event->base, &error))
    {
      /* The daemon died or closed the pipe: nobody can see this run any more, so
       * stop it (stages checkpoint as they stop). */
      ctx->broken = TRUE;
      g_warning ("run %s: cannot report to gptd (%s); cancelling the run", ctx->run_id,
                 error->message);
      if (ctx->runner)
        gptd_runner_cancel (ctx->runner);
    }
}

static void
worker_on_event (const Gptd__Event *event, gpointer user_data)
{
  worker_send (user_data, event);
}

static void
worker_send_failure (WorkerCtx *ctx, const char *message)
{
  Gptd__Event ev = GPTD__EVENT__INIT;
  Gptd__StateChange change = GPTD__STATE_CHANGE__INIT;
  change.state = GPTD__RUN_STATE__RUN_STATE_FAILED;
  change.error = (char *) message;
  change.exit_code = 1;
  ev.run_id = (char *) ctx->run_id;
  ev.time = (double) g_get_real_time () / G_USEC_PER_SEC;
  ev.body_case = GPTD__EVENT__BODY_STATE;
  ev.state = &change;
  worker_send (ctx, &ev);
}

/* SIGTERM and SIGINT are turned into a byte on this pipe: a signal may land on any
 * thread (libraries start their own before main()), and only writing to a pipe is
 * safe in a handler. */
static int signal_pipe[2] = { -1, -1 };

static void
on_stop_signal (int sig)
{
  int saved = errno;
  guint8 b = (guint8) sig;
  if (write (signal_pipe[1], &b, 1) < 0)
    {
      /* Nothing can be done in a handler; the pipe is never full in practice. */
    }
  errno = saved;
}

/* Reads the signal pipe and cancels the run. */
static void *
signal_thread (void *data)
{
  WorkerCtx *ctx = data;
  for (;;)
    {
      guint8 b;
      ssize_t n = read (signal_pipe[0], &b, 1);
      if (n < 0 && errno == EINTR)
        continue;
      if (n <= 0)
        break;
      g_message ("run %s: %s received, cancelling", ctx->run_id, g_strsignal (b));
      /* mpirun stops every rank, and rank 0 checkpoints if it has time. */
      ctx->stopping = TRUE;
      if (ctx->mpirun > 0)
        kill (ctx->mpirun, SIGTERM);
      else if (ctx->runner != NULL)
        gptd_runner_cancel (ctx->runner);
    }
  return NULL;
}

/* The last line of output.log that mpirun wrote about a rank, for the error. */
static char *
mpirun_rank_line (void)
{
  g_autofree char *text = NULL;
  gsize len = 0;
  if (!g_file_get_contents (GPTD_RUN_OUTPUT_FILE, &text, &len, NULL))
    return NULL;
  g_auto (GStrv) lines = g_strsplit (text, "\n", -1);
  char *found = NULL;
  for (guint i = 0; lines[i]; i++)
    {
      /* A rank killed ("process rank N ... exited on signal"), or one that failed
       * and aborted the group; rank 0's own failure it has reported itself. */
      const char *abort = strstr (lines[i], "invoked on rank ");
      if (strstr (lines[i], "process rank") != NULL
          || (abort != NULL && abort[strlen ("invoked on rank ")] != '0'))
        {
          g_free (found);
          found = g_strstrip (g_strdup (lines[i]));
        }
    }
  return found;
}

/* Runs the pipeline as @ranks processes under mpirun and relays rank 0's events to
 * the daemon; returns mpirun's exit status. */
static int
worker_run_ranks (WorkerCtx *ctx, guint ranks, const char *hosts, const char *run_dir,
                  gboolean resume)
{
  g_autoptr (GError) error = NULL;
  int lfd = socket (AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  struct sockaddr_un addr = { .sun_family = AF_UNIX };
  g_strlcpy (addr.sun_path, RANKS_SOCKET, sizeof addr.sun_path);
  unlink (RANKS_SOCKET);
  if (lfd < 0 || bind (lfd, (struct sockaddr *) &addr, sizeof addr) != 0
      || listen (lfd, 1) != 0)
    {
      g_autofree char *msg = g_strdup_printf ("cannot make the socket %s/%s for the ranks: "
                                              "%s", run_dir, RANKS_SOCKET, g_strerror (errno));
      worker_send_failure (ctx, msg);
      return 1;
    }
  g_autofree char *self = g_file_read_link ("/proc/self/exe", NULL);
  const char *command[] = { self ? self : "gptd", "--worker", run_dir, "--run-id",
                            ctx->run_id, NULL };
  g_auto (GStrv) argv = gptd__ranks_mpirun_argv (ranks, hosts, command, &error);
  g_auto (GStrv) env = g_get_environ ();
  env = g_environ_setenv (env, RANKS_SOCKET_ENV, RANKS_SOCKET, TRUE);
  if (resume)
    env = g_environ_setenv (env, GPTD_WORKER_RESUME_ENV, "1", TRUE);
  GPid pid = 0;
  if (argv == NULL
      || !g_spawn_async (NULL, argv, env, G_SPAWN_DO_NOT_REAP_CHILD | G_SPAWN_CHILD_INHERITS_STDIN,
                         NULL, NULL, &pid, &error))
    {
      worker_send_failure (ctx, error->message);
      close (lfd);
      return 1;
    }
  ctx->mpirun = pid;
  g_message ("run %s: %u ranks under %s (pid %d)", ctx->run_id, ranks, argv[0], (int) pid);

  /* Relay rank 0's frames as they come, until it closes the socket. */
  int status = 0, conn = -1;
  gboolean exited = FALSE;
  while (!exited)
    {
      struct pollfd p = { conn >= 0 ? conn : lfd, POLLIN, 0 };
      int r = poll (&p, 1, 200);
      if (r > 0 && conn < 0)
        conn = accept4 (lfd, NULL, NULL, SOCK_CLOEXEC);
      else if (r > 0)
        {
          char buf[65536];
          ssize_t n = read (conn, buf, sizeof buf);
          if (n > 0)
            {
              if (!ctx->broken && write (ctx->fd, buf, (size_t) n) != n)
                ctx->broken = TRUE;
              continue;
            }
          close (conn);
          conn = -2;   /* rank 0 is done: wait for mpirun */
        }
      if (conn == -2 || r == 0)
        exited = waitpid (pid, &status, conn == -2 ? 0 : WNOHANG) == pid;
    }
  if (conn >= 0)
    close (conn);
  close (lfd);
  unlink (RANKS_SOCKET);
  ctx->mpirun = 0;
  int code = WIFEXITED (status) ? WEXITSTATUS (status) : 128 + WTERMSIG (status);
  /* A cancelled group ends with aborted ranks: rank 0 reported the cancel. */
  g_autofree char *line = code != 0 && !ctx->stopping ? mpirun_rank_line () : NULL;
  if (line != NULL)
    {
      /* Another rank died or failed: mpirun said which in output.log. */
      g_autofree char *msg = g_strdup_printf ("the rank group stopped (mpirun exited with "
                                              "status %d): %s", code, line);
      g_message ("run %s: %s", ctx->run_id, msg);
      worker_send_failure (ctx, msg);
    }
  return code;
}

int
gptd__worker_main (const char *run_dir, const char *run_id, int fd)
{
  /* One of a rank group: only rank 0 reports, over the socket the launching
   * worker listens on. */
  g_autoptr (GError) dist_error = NULL;
  const char *ranks_socket = g_getenv (RANKS_SOCKET_ENV);
  if (ranks_socket != NULL)
    {
      if (!gptd_dist_init (&dist_error))
        {
          g_printerr ("gptd --worker: %s\n", dist_error->message);
          return 1;
        }
      fd = -1;
      if (gptd_dist_rank () == 0)
        {
          struct sockaddr_un addr = { .sun_family = AF_UNIX };
          g_autofree char *path = g_build_filename (run_dir, ranks_socket, NULL);
          g_strlcpy (addr.sun_path, strlen (path) < sizeof addr.sun_path ? path : ranks_socket,
                     sizeof addr.sun_path);
          fd = socket (AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
          if (chdir (run_dir) != 0
              || connect (fd, (struct sockaddr *) &addr, sizeof addr) != 0)
            {
              g_printerr ("gptd --worker: rank 0 cannot reach %s: %s\n", path,
                          g_strerror (errno));
              gptd_dist_abort (1);
            }
        }
      g_unsetenv (RANKS_SOCKET_ENV);
      int status = gptd__worker_run (run_dir, run_id, fd);
      if (gptd_dist_size () > 1 && status != 0)
        gptd_dist_abort (status);
      gptd_dist_finalize ();
      return status;
    }
  return gptd__worker_run (run_dir, run_id, fd);
}

int
gptd__worker_run (const char *run_dir, const char *run_id, int fd)
{
  WorkerCtx ctx = { .fd = fd, .run_id = run_id, .broken = fd < 0 };
  /* The daemon says so when the run is resumed; processes the stages start
   * must not inherit it. */
  gboolean resume = g_strcmp0 (g_getenv (GPTD_WORKER_RESUME_ENV), "1") == 0;
  g_unsetenv (GPTD_WORKER_RESUME_ENV);

  /* Stop the run when the daemon dies, and never leak the event pipe into
   * processes that stages start. */
  prctl (PR_SET_PDEATHSIG, SIGTERM);
  if (fd >= 0)
    fcntl (fd, F_SETFD, FD_CLOEXEC);
  signal (SIGPIPE, SIG_IGN);
  signal (SIGHUP, SIG_IGN);
  if (pipe2 (signal_pipe, O_CLOEXEC) == 0)
    {
      struct sigaction sa = { 0 };
      sa.sa_handler = on_stop_signal;
      sigemptyset (&sa.sa_mask);
      sa.sa_flags = SA_RESTART;
      sigaction (SIGTERM, &sa, NULL);
      sigaction (SIGINT, &sa, NULL);
    }

  if (chdir (run_dir) != 0)
    {
      g_autofree char *msg = g_strdup_printf ("cannot enter the run directory %s: %s",
                                              run_dir, g_strerror (errno));
      worker_send_failure (&ctx, msg);
      return 1;
    }

  g_autoptr (GError) error = NULL;
  g_autofree char *text = NULL, *filename = NULL, *workdir = NULL;
  g_auto (GStrv) settings = NULL;
  if (!gptd__run_dir_read_request (run_dir, &text, &filename, &workdir, &settings, &error))
    {
      worker_send_failure (&ctx, error->message);
      return 1;
    }

  g_autoptr (GptdRegistry) registry = gptd_registry_new ();
  if (!gptd_registry_scan (registry, &error))
    {
      worker_send_failure (&ctx, error->message);
      return 1;
    }
  /* ${NAME} reads the submitting client's environment, recorded with the run,
   * never the daemon's (which this process inherited). */
  g_auto (GStrv) environment = gptd__run_dir_read_environment (run_dir);
  g_autoptr (GptdPipeline) pipeline =
    gptd_pipeline_load_data_with_env (registry, text, -1, filename,
                                      (const char *const *) settings,
                                      (const char *const *) environment, NULL, &error);
  if (pipeline == NULL)
    {
      worker_send_failure (&ctx, error->message);
      return 1;
    }

  /* ranks=: this worker starts the group and relays its events. */
  if (gptd_pipeline_get_ranks (pipeline) > 1 && !gptd_dist_launched ())
    {
      pthread_t sig_thread;
      if (pthread_create (&sig_thread, NULL, signal_thread, &ctx) == 0)
        pthread_detach (sig_thread);
      return worker_run_ranks (&ctx, gptd_pipeline_get_ranks (pipeline),
                               gptd_pipeline_get_hosts (pipeline), run_dir, resume);
    }

  g_autoptr (GptdRunner) runner = gptd_runner_new (pipeline, run_dir, worker_on_event, &ctx);
  gptd_runner_set_run_id (runner, run_id);
  gptd_runner_set_resume (runner, resume);
  if (resume)
    g_message ("run %s: resuming from its checkpoints", run_id);
  ctx.runner = runner;

  pthread_t sig_thread;
  if (pthread_create (&sig_thread, NULL, signal_thread, &ctx) != 0)
    {
      worker_send_failure (&ctx, "cannot start the signal thread");
      return 1;
    }
  pthread_detach (sig_thread);

  gboolean ok = gptd_runner_run (runner, &error);
  Gptd__RunState state = gptd_runner_get_state (runner);
  if (ok)
    return 0;
  g_message ("run %s: %s", run_id, error->message);
  return state == GPTD__RUN_STATE__RUN_STATE_CANCELLED ? 130 : 1;
}

/* ---- The daemon's side -------------------------------------------------------- */

struct _GptdWorker {
  uv_process_t process;
  uv_pipe_t pipe;
  GptdFrameDecoder *dec;
  GptdWorkerEventFunc event_func;
  GptdWorkerExitFunc exit_func;
  gpointer user_data;
  int pid;
  int open_handles;
  gboolean exited;
  gboolean pipe_done;
  gboolean reported;
  gint64 exit_status;
  int term_signal;
  char *protocol_error;
};

static void
worker_handle_closed (uv_handle_t *handle)
{
  GptdWorker *w = handle->data;
  if (--w->open_handles > 0)
    return;
  gptd_frame_decoder_free (w->dec);
  g_free (w->protocol_error);
  g_free (w);
}

static void
worker_maybe_report (GptdWorker *w)
{
  if (!w->exited || !w->pipe_done || w->reported)
    return;
  w->reported = TRUE;
  w->exit_func (w, w->exit_status, w->term_signal, w->protocol_error, w->user_data);
  uv_close ((uv_handle_t *) &w->pipe, worker_handle_closed);
  uv_close ((uv_handle_t *) &w->process, worker_handle_closed);
}

static void
worker_stop_reading (GptdWorker *w)
{
  if (!w->pipe_done)
    {
      uv_read_stop ((uv_stream_t *) &w->pipe);
      w->pipe_done = TRUE;
    }
}

/* Passes every whole frame buffered to the event function. */
static void
worker_drain_frames (GptdWorker *w)
{
  while (w->protocol_error == NULL)
    {
      g_autoptr (GBytes) payload = NULL;
      g_autoptr (GError) error = NULL;
      GptdFrameStatus st = gptd_frame_decoder_next (w->dec, &payload, &error);
      if (st == GPTD_FRAME_NEED_MORE)
        return;
      Gptd__Event *ev = NULL;
      if (st == GPTD_FRAME_OK)
        {
          gsize n;
          const guint8 *p = g_bytes_get_data (payload, &n);
          ev = (Gptd__Event *) gptd_frame_unpack (&gptd__event__descriptor, p, n, &error);
        }
      if (ev == NULL)
        {
          w->protocol_error = g_strdup (error->message);
          g_warning ("worker %d sent a bad frame: %s; killing it", w->pid, error->message);
          if (!w->exited)
            uv_process_kill (&w->process, SIGKILL);
          worker_stop_reading (w);
          return;
        }
      w->event_func (w, ev, w->user_data);
      protobuf_c_message_free_unpacked (&ev->base, NULL);
    }
}

static void
worker_alloc (uv_handle_t *handle, size_t suggested, uv_buf_t *buf)
{
  buf->base = g_malloc (65536);
  buf->len = 65536;
}

static void
worker_read (uv_stream_t *stream, ssize_t nread, const uv_buf_t *buf)
{
  GptdWorker *w = stream->data;
  if (nread > 0 && w->protocol_error == NULL)
    {
      gptd_frame_decoder_feed (w->dec, buf->base, (gsize) nread);
      worker_drain_frames (w);
    }
  g_free (buf->base);
  if (nread < 0)
    {
      if (nread != UV_EOF)
        g_warning ("worker %d: reading its events failed: %s", w->pid, uv_strerror ((int) nread));
      else if (!gptd_frame_decoder_finish (w->dec, NULL) && w->protocol_error == NULL)
        w->protocol_error = g_strdup ("its last event was cut short");
      worker_stop_reading (w);
      worker_maybe_report (w);
    }
}

static void
worker_exited (uv_process_t *process, int64_t exit_status, int term_signal)
{
  GptdWorker *w = process->data;
  w->exited = TRUE;
  w->exit_status = exit_status;
  w->term_signal = term_signal;
  /* Everything the worker wrote is in the socket now: read it all before
   * reporting, rather than wait for an end of stream that a process it started
   * could hold back. */
  if (!w->pipe_done)
    {
      uv_os_fd_t fd;
      if (uv_fileno ((uv_handle_t *) &w->pipe, &fd) == 0)
        {
          guint8 buf[65536];
          ssize_t n;
          while (w->protocol_error == NULL
                 && ((n = read (fd, buf, sizeof buf)) > 0 || (n < 0 && errno == EINTR)))
            {
              if (n > 0)
                {
                  gptd_frame_decoder_feed (w->dec, buf, (gsize) n);
                  worker_drain_frames (w);
                }
            }
        }
      worker_stop_reading (w);
    }
  worker_maybe_report (w);
}

GptdWorker *
gptd__worker_spawn (uv_loop_t *loop, const char *run_dir, const char *run_id,
                    gboolean resume, const GptdWorkerSetup *setup,
                    GptdWorkerEventFunc event_func, GptdWorkerExitFunc exit_func,
                    gpointer user_data, GError **error)
{
  g_autofree char *out_path = g_build_filename (run_dir, GPTD_RUN_OUTPUT_FILE, NULL);
  int out_fd = open (out_path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0640);
  if (out_fd < 0)
    {
      int saved = errno;
      g_set_error (error, G_FILE_ERROR, g_file_error_from_errno (saved),
                   "Cannot open %s: %s", out_path, g_strerror (saved));
      return NULL;
    }

  GptdWorker *w = g_new0 (GptdWorker, 1);
  w->dec = gptd_frame_decoder_new (0);
  w->event_func = event_func;
  w->exit_func = exit_func;
  w->user_data = user_data;
  uv_pipe_init (loop, &w->pipe, 0);
  w->pipe.data = w;
  w->process.data = w;
  w->open_handles = 2;

  char *args[] = { (char *) "gptd", (char *) "--worker", (char *) run_dir,
                   (char *) "--run-id", (char *) run_id, NULL };
  uv_stdio_container_t stdio[4];
  stdio[0].flags = UV_IGNORE;
  stdio[1].flags = UV_INHERIT_FD;
  stdio[1].data.fd = out_fd;
  stdio[2].flags = UV_INHERIT_FD;
  stdio[2].data.fd = out_fd;
  stdio[3].flags = UV_CREATE_PIPE | UV_WRITABLE_PIPE;
  stdio[3].data.stream = (uv_stream_t *) &w->pipe;
  g_auto (GStrv) env = g_get_environ ();
  env = resume ? g_environ_setenv (env, GPTD_WORKER_RESUME_ENV, "1", TRUE)
               : g_environ_unsetenv (env, GPTD_WORKER_RESUME_ENV);
  if (setup != NULL && setup->threads > 0)
    {
      g_autofree char *threads = g_strdup_printf ("%u", setup->threads);
      env = g_environ_setenv (env, "GPTD_NN_THREADS", threads, TRUE);
    }
  uv_process_options_t opts = { 0 };
  opts.exit_cb = worker_exited;
  opts.env = env;
  opts.file = "/proc/self/exe";
  opts.args = args;
  opts.cwd = run_dir;
  opts.stdio_count = 4;
  opts.stdio = stdio;
  /* A session of its own: a Ctrl-C meant for a daemon running in a terminal
   * reaches the daemon, which then stops its workers itself. */
  opts.flags = UV_PROCESS_DETACHED;
  if (setup != NULL && setup->as_user)
    {
      /* libuv drops the supplementary groups, then sets the group and the user,
       * in the child before it executes gptd. */
      opts.flags |= UV_PROCESS_SETUID | UV_PROCESS_SETGID;
      opts.uid = (uv_uid_t) setup->uid;
      opts.gid = (uv_gid_t) setup->gid;
      if (fchown (out_fd, setup->uid, setup->gid) != 0)
        g_warning ("Cannot give %s to uid %u: %s", out_path, setup->uid, g_strerror (errno));
    }

  int r = uv_spawn (loop, &w->process, &opts);
  close (out_fd);
  if (r != 0)
    {
      g_set_error (error, G_SPAWN_ERROR, G_SPAWN_ERROR_FAILED,
                   "Cannot start a worker process: %s", uv_strerror (r));
      w->reported = TRUE;
      uv_close ((uv_handle_t *) &w->pipe, worker_handle_closed);
      uv_close ((uv_handle_t *) &w->process, worker_handle_closed);
      return NULL;
    }
  w->pid = w->process.pid;
  uv_read_start ((uv_stream_t *) &w->pipe, worker_alloc, worker_read);
  return w;
}

int
gptd__worker_get_pid (GptdWorker *worker)
{
  return worker->pid;
}

void
gptd__worker_kill (GptdWorker *worker, int signum)
{
  if (!worker->exited)
    uv_process_kill (&worker->process, signum);
}
