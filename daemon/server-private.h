/* daemon/server-private.h: what the parts of the gptd daemon share: the server
 * and connection structures and the functions one part calls in another.
 *
 * The daemon is split by concept, one file each:
 *
 *   server.c           the main function, stopping, signals, reloading the
 *                      configuration
 *   server-conn.c      the control socket, connections, framing, sending answers
 *                      and watchers' bounded queues
 *   server-requests.c  the request handlers (one function per request type) and
 *                      the checking threads that load submitted pipelines
 *   server-logs.c      logs requests, their event log read a slice at a time
 *   server-output.c    output requests, output.log streamed in chunks
 *   server-runs.c      run supervision: worker processes started, resumed,
 *                      stopped, and how they ended
 *   server-serving.c   generate and classify requests, answered by serving workers
 *   server-probe.c     probing the plugins in a child before loading them
 */
#pragma once

#include "server.h"
#include "runs.h"
#include "worker.h"

#include <gptd/frame.h>
#include <gptd/registry.h>

#include <sys/types.h>
#include <uv.h>

G_BEGIN_DECLS

typedef struct _Server Server;
typedef struct _Conn Conn;
typedef struct _Probe Probe;

struct _Server {
  uv_loop_t loop;
  uv_pipe_t listener;
  uv_signal_t sig_term;
  uv_signal_t sig_int;
  uv_signal_t sig_hup;
  uv_timer_t stop_timer;
  uv_timer_t watchdog;      /* systemd watchdog pings (inactive without one) */
  gboolean listening;
  gboolean activated;       /* the socket came from systemd: it is not ours to remove */
  char *config_path;        /* gptd.conf, read again on SIGHUP */
  gboolean config_optional;
  GptdDaemonConfig cmdline; /* what the command line set (it wins over the file) */
  GptdDaemonConfig config;  /* the settings in force */
  gboolean stopping;
  double started;           /* Unix time */
  gboolean finished;
  gboolean killed_workers;
  GptdRunTable *runs;
  GptdRegistry *registry;
  GList *old_registries;    /* replaced, freed once no check uses them */
  Probe *probe;             /* the plugin probe under way, if any */
  gboolean probe_again;     /* a SIGHUP came during it: another round follows */
  GList *conns;
  guint n_workers;
  guint64 queue_clock;      /* the last queue_seq given */
  guint next_conn_id;
  char *socket_path;
  guint stop_timeout_ms;
  gsize queue_limit;
  /* Serving workers (server-serving.c). */
  GList *serve_workers;     /* ServeWorker*: the cache of loaded models */
  GList *serve_retired;     /* ServeWorker*: out of the cache, stopping */
  guint model_cache;        /* how many serving workers are kept */
  guint serve_threads;      /* their threads; 0: the cores the runs leave */
  guint n_serve_procs;      /* serving worker processes not yet gone */
  guint64 serve_clock;
  guint64 serve_loads;
  guint64 serve_hits;
  guint64 next_gen_serial;
  guint n_gen_jobs;         /* generate requests not yet ended */
  /* Loading submitted pipelines (server-requests.c). */
  GThreadPool *check_pool;
  uv_async_t check_async;   /* checking threads wake the loop with it */
  GMutex check_out_lock;
  GQueue check_out;         /* CheckJob*: loaded, to be answered */
  guint n_check_jobs;       /* run and validate requests not yet answered */
  /* Logs requests being read (server-logs.c). */
  uv_idle_t logs_idle;
  GList *logs_jobs;
  /* Output requests being read (server-output.c). */
  uv_idle_t output_idle;
  GList *output_jobs;
  /* The HTTP gateway (server-http.c). */
  uv_process_t http_process;
  uv_timer_t http_timer;    /* the pause before a restart */
  gboolean http_running;    /* http_process is open (until its close callback) */
  gboolean http_restart_now;   /* the settings changed: start again once it has exited */
  gboolean http_bad_config; /* it exited 2: not restarted until the settings change */
  char **http_argv;         /* what it was started with */
  char *http_state_dir;     /* models= defaults to STATE/models */
  guint http_backoff_ms;
  gint64 http_started;      /* monotonic microseconds */
};

struct _Conn {
  uv_pipe_t pipe;
  uv_timer_t drain_timer;
  uv_timer_t read_timer;  /* read-timeout= for a partial frame, else idle-timeout= */
  Server *server;
  guint id;
  int open_handles;
  GptdFrameDecoder *dec;
  gsize queued;          /* bytes handed to uv_write and not yet written */
  gboolean closing;      /* uv_close was called */
  gboolean draining;     /* no more requests; closed once its output is flushed */
  pid_t pid;
  uid_t uid;
  gid_t gid;
  gboolean refused;      /* a user this daemon does not serve */
  gboolean partial;      /* part of a request frame is buffered (read_timer runs) */
  /* The run this connection watches: replaying its log, then live. */
  GptdRun *watch_run;
  guint64 watch_id;
  GptdRunLogReader *replay;
  /* The generate requests of this connection that have not ended (GenJob*). */
  GList *gen_jobs;
  /* Its run and validate requests whose pipeline is being loaded (CheckJob*). */
  GList *check_jobs;
  /* Its logs requests whose log is being read. */
  guint n_logs_jobs;
  /* Its output requests whose output.log is being sent. */
  guint n_output_jobs;
};

/* ---- server-conn.c ---- */

/* Sends an encoded Response frame (dropped for a closing connection). */
void gptd__conn_send_frame (Conn *c, GBytes *frame);
/* Encodes and sends a Response. */
void gptd__conn_send (Conn *c, Gptd__Response *resp);
/* Sends an Error response. */
void gptd__conn_send_error (Conn *c, guint64 id, Gptd__ErrorCode code, const char *format, ...)
  G_GNUC_PRINTF (4, 5);
/* Sends an Ok response. */
void gptd__conn_send_ok (Conn *c, guint64 id);
/* Sends @run's RunInfo. */
void gptd__conn_send_run (Conn *c, guint64 id, GptdRun *run, gboolean end);
/* Stops reading from @c and closes it once its answers are out. */
void gptd__conn_drain (Conn *c);
/* Closes @c now. */
void gptd__conn_close (Conn *c);
/* The connection limits of gptd.conf, with their defaults. */
#define GPTD_DEFAULT_MAX_CONNECTIONS 512
#define GPTD_DEFAULT_MAX_CONNECTIONS_PER_USER 256
#define GPTD_DEFAULT_REQUEST_FRAME_LIMIT (1024 * 1024)
#define GPTD_DEFAULT_READ_TIMEOUT_S 10
#define GPTD_DEFAULT_IDLE_TIMEOUT_S 600
/* @c stops watching its run. */
void gptd__conn_unwatch (Conn *c);
/* Ends @c's watch with the run's final RunInfo. */
void gptd__conn_watch_end (Conn *c);
/* Replays the watched run's log while @c's queue has room. */
void gptd__conn_replay_pump (Conn *c);
/* Forwards a recorded event to the run's live watchers (the run table's event
 * function). */
void gptd__server_on_run_event (GptdRun *run, const Gptd__Event *event, gpointer user_data);
/* Accepts a connection on the control socket. */
void gptd__server_on_connection (uv_stream_t *listener, int status);
/* Listens on the control socket (the one systemd passed, or its own). */
gboolean gptd__server_listen (Server *s, GError **error);
/* Whether the daemon serves the user @uid: a root daemon serves everyone (each
 * with their own rights), another only its own user, root and allow-users=. */
gboolean gptd__server_serves_user (Server *s, guint uid);
/* Detaches every connection from @run before it is removed: its watchers get
 * their end, its logs and output reads an error. Nothing points to it after. */
void gptd__server_detach_run (Server *s, GptdRun *run);
/* Whether @c may act on @run (cancel, pause, resume, read): its owner or root. */
gboolean gptd__conn_may_touch (Conn *c, const GptdRun *run);
/* Closes the control socket (its file is removed unless systemd owns it). */
void gptd__server_close_listener (Server *s);

/* ---- server-requests.c ---- */

/* Answers one request with the handler of its type. */
void gptd__conn_dispatch (Conn *c, const Gptd__Request *req);
/* A closing connection gets no answers to the pipelines it submitted. */
void gptd__conn_forget_checks (Conn *c);
/* Starts, stops and frees the checking threads. */
void gptd__server_checks_init (Server *s);
void gptd__server_checks_close (Server *s);
void gptd__server_checks_free (Server *s);

/* ---- server-logs.c ---- */

/* Answers a logs request for @run once its log is read, a slice at a time. */
void gptd__conn_logs_start (Conn *c, guint64 id, GptdRun *run);
/* A closing connection gets no answers to its logs requests. */
void gptd__conn_forget_logs (Conn *c);
/* Ends, with an error, the logs requests reading @run. */
void gptd__server_logs_detach_run (Server *s, GptdRun *run);
/* Sets up and closes the logs readers' idle handle. */
void gptd__server_logs_init (Server *s);
void gptd__server_logs_close (Server *s);

/* ---- server-output.c ---- */

/* Answers an output request for @run: its output.log in chunks, the last with
 * end set. */
void gptd__conn_output_start (Conn *c, guint64 id, GptdRun *run);
/* A closing connection gets no more of its output requests' answers. */
void gptd__conn_forget_output (Conn *c);
/* Ends, with an error, the output requests reading @run. */
void gptd__server_output_detach_run (Server *s, GptdRun *run);
/* Sets up and closes the output readers' idle handle. */
void gptd__server_output_init (Server *s);
void gptd__server_output_close (Server *s);

/* ---- server-runs.c ---- */

/* Tells systemd (when it runs gptd) how many runs are going. */
void gptd__server_notify_status (Server *s);
/* Starts (or resumes) a run's worker process. */
gboolean gptd__server_start_worker (Server *s, GptdRun *run, gboolean resume, GError **error);
/* How many runs run at once (max-runs=, else one per four cores, one at least). */
guint gptd__server_max_runs (Server *s);
/* Puts a run (state QUEUED) in the queue, to start (or resume) when a slot is
 * free: at once when one is. */
void gptd__server_enqueue (Server *s, GptdRun *run, gboolean resume);
/* Starts the queued runs that fit, in the order they were queued. */
void gptd__server_schedule (Server *s);
/* A queued run's 1-based place in the queue, else 0. */
guint gptd__server_queue_position (Server *s, const GptdRun *run);
/* Tells a run's worker to stop (SIGTERM: stages checkpoint), and kills it
 * (SIGKILL) when it has not stopped CANCEL_GRACE_MS later. */
void gptd__server_stop_run (Server *s, GptdRun *run);
#define CANCEL_GRACE_MS(s) \
  ((guint) ((s)->config.has_cancel_timeout_s ? (s)->config.cancel_timeout_s : 10) * 1000u)

/* The threads each run computes with (the configuration's threads=, else the
 * cores shared among max-runs runs). */
guint gptd__server_run_threads (Server *s);
/* Sends @signum to every worker. */
void gptd__server_kill_workers (Server *s, int signum);
/* Stops the daemon once nothing runs any more (after a stop was asked for). */
void gptd__server_maybe_finish_stop (Server *s);
/* A run has ended and its worker is gone: a cancelled run's checkpoints are
 * deleted when keep-cancelled-checkpoints=false. */
void gptd__server_run_ended (Server *s, GptdRun *run);

/* ---- server-serving.c ---- */

/* Handles a generate request. */
void gptd__request_generate (Conn *c, const Gptd__Request *req);

/* Handles a classify request. */
void gptd__request_classify (Conn *c, const Gptd__Request *req);
/* Cancels the generations of @c, which sees nothing more of them. */
void gptd__conn_cancel_generations (Conn *c);
/* Cancels every generation; their clients are told. */
void gptd__server_cancel_generations (Server *s);
/* Stops every serving worker (SIGTERM: after the request under way; SIGKILL:
 * at once). */
void gptd__server_stop_serving (Server *s, int signum);
/* Sets how many serving workers are kept. */
void gptd__server_generate_init (Server *s, guint model_cache);
void gptd__server_generate_set_cache (Server *s, guint model_cache);
/* How many models are loaded; their directories (with the user and pid) are
 * appended to @models and their workers' pids to @pids (both nullable). */
guint gptd__server_serving_count (Server *s, GPtrArray *models, GArray *pids);

/* ---- server-probe.c ---- */

/**
 * GptdProbeDoneFunc:
 * @s: the server
 * @registry: (transfer full) (nullable): the new registry
 * @error: (nullable): why there is none
 */
typedef void (*GptdProbeDoneFunc) (Server *s, GptdRegistry *registry, const GError *error);

/* Probes the plugins in a child, then scans them on a thread, without blocking
 * the loop; @done is called on the loop thread. One round at a time
 * (s->probe is set meanwhile). */
void gptd__server_load_registry_async (Server *s, GptdProbeDoneFunc done);

/* ---- server-http.c ---- */

/* Starts the HTTP gateway when http= is set. */
void gptd__server_http_init (Server *s, const char *state_dir);
/* Starts, restarts or stops the gateway after the configuration changed. */
void gptd__server_http_apply (Server *s);
/* Stops the gateway (the daemon is stopping). */
void gptd__server_http_stop (Server *s);
/* Closes the restart timer (once the gateway has exited). */
void gptd__server_http_close (Server *s);

/* ---- server.c ---- */

/* Frees the registries SIGHUP replaced, once no pipeline being checked uses
 * them. */
void gptd__server_free_old_registries (Server *s);
/* Everything has stopped: closes the remaining handles so the loop ends. */
void gptd__server_finish_stop (Server *s);

G_END_DECLS
