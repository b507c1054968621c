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
 *   server-runs.c      run supervision: worker processes started, resumed,
 *                      stopped, and how they ended
 *   server-generate.c  generate requests
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
typedef struct _GenCache GenCache;

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
  gboolean finished;
  gboolean killed_workers;
  GptdRunTable *runs;
  GptdRegistry *registry;
  GList *conns;
  guint n_workers;
  guint next_conn_id;
  char *socket_path;
  guint stop_timeout_ms;
  gsize queue_limit;
  /* Generation (server-generate.c). */
  GenCache *gen_cache;
  GThreadPool *gen_pool;
  uv_async_t gen_async;     /* generation threads wake the loop with it */
  GMutex gen_out_lock;
  GQueue gen_out;           /* GenMsg*: frames from the generation threads */
  guint n_gen_jobs;         /* generate requests not yet ended */
  /* Loading submitted pipelines (server-requests.c). */
  GThreadPool *check_pool;
  uv_async_t check_async;   /* checking threads wake the loop with it */
  GMutex check_out_lock;
  GQueue check_out;         /* CheckJob*: loaded, to be answered */
  guint n_check_jobs;       /* run and validate requests not yet answered */
};

struct _Conn {
  uv_pipe_t pipe;
  uv_timer_t drain_timer;
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
  /* The run this connection watches: replaying its log, then live. */
  GptdRun *watch_run;
  guint64 watch_id;
  GptdRunLogReader *replay;
  /* The generate requests of this connection that have not ended (GenJob*). */
  GList *gen_jobs;
  /* Its run and validate requests whose pipeline is being loaded (CheckJob*). */
  GList *check_jobs;
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

/* ---- server-runs.c ---- */

/* Tells systemd (when it runs gptd) how many runs are going. */
void gptd__server_notify_status (Server *s);
/* Starts (or resumes) a run's worker process. */
gboolean gptd__server_start_worker (Server *s, GptdRun *run, gboolean resume, GError **error);
/* Sends @signum to every worker. */
void gptd__server_kill_workers (Server *s, int signum);
/* Stops the daemon once nothing runs any more (after a stop was asked for). */
void gptd__server_maybe_finish_stop (Server *s);

/* ---- server-generate.c ---- */

/* Handles a generate request. */
void gptd__request_generate (Conn *c, const Gptd__Request *req);
/* Cancels the generations of @c, which sees nothing more of them. */
void gptd__conn_cancel_generations (Conn *c);
/* Cancels every generation; their clients are told. */
void gptd__server_cancel_generations (Server *s);
/* Sets up, resizes the model cache of, stops and frees generation. */
void gptd__server_generate_init (Server *s, guint model_cache, guint threads);
void gptd__server_generate_set_cache (Server *s, guint model_cache);
void gptd__server_generate_close (Server *s);
void gptd__server_generate_free (Server *s);

/* ---- server-probe.c ---- */

/* A registry of the plugins, probed first in a child. */
GptdRegistry *gptd__server_load_registry (GError **error);

/* ---- server.c ---- */

/* Everything has stopped: closes the remaining handles so the loop ends. */
void gptd__server_finish_stop (Server *s);

G_END_DECLS
