/* daemon/daemon-config.h: gptd.conf, the daemon's configuration file (GKeyFile, group
 * [gptd]; see dist/gptd.conf for every key with its default).
 *
 * The command line overrides the file. On SIGHUP the daemon reads the file again:
 * settings that can change while it runs take effect and are logged, the others
 * are logged as needing a restart, and a file that no longer loads is an error in
 * the log that leaves the old configuration in force.
 */
#pragma once

#include <glib.h>

G_BEGIN_DECLS

/* The settings, each with whether it was given (by the file or the command
 * line). */
typedef struct {
  char *socket_path;
  char *state_dir;
  char *data_dir;           /* GPTD_DATA_DIR for the runs */
  char *log_level;          /* "info" or "debug" */
  gint64 stop_timeout_s;
  gint64 client_queue_limit;
  gint64 model_cache;
  gint64 generate_threads;
  gint64 max_runs;          /* runs running at once; more wait, queued */
  gint64 threads;           /* threads each run computes with */
  char *allow_users;        /* users besides the daemon's own and root it serves */
  gint64 cancel_timeout_s;  /* seconds a cancelled run has to stop before SIGKILL */
  gint64 max_connections;   /* control connections open at once, in all */
  gint64 max_connections_per_user;  /* ... and of one user (uid) */
  gint64 request_frame_limit;       /* bytes of the largest request frame */
  gint64 read_timeout_s;    /* seconds a partial request frame may take to arrive */
  gint64 idle_timeout_s;    /* seconds a connection with nothing under way stays open */
  gint64 keep_cancelled_checkpoints;  /* 0: a cancelled run's checkpoint/ is deleted */
  char *http;               /* the HTTP gateway's address; unset: no gateway */
  char *http_token_file;    /* its bearer token's file */
  char *models;             /* its models directory */
  gint64 serve_batch;       /* generations a serving worker decodes together */
  gint64 prefill_chunk;     /* prompt tokens a serving worker feeds between steps */
  gboolean has_socket_path, has_state_dir, has_data_dir, has_log_level,
           has_stop_timeout_s, has_client_queue_limit, has_model_cache,
           has_generate_threads, has_max_runs, has_threads, has_allow_users,
           has_cancel_timeout_s, has_max_connections, has_max_connections_per_user,
           has_request_frame_limit, has_read_timeout_s, has_idle_timeout_s,
           has_keep_cancelled_checkpoints, has_http, has_http_token_file, has_models,
           has_serve_batch, has_prefill_chunk;
} GptdDaemonConfig;

/* The configuration file gptd reads when --config is not given:
 * $CONFIGURATION_DIRECTORY/gptd.conf under systemd, else SYSCONFDIR/gptd/gptd.conf. */
char *gptd__config_default_path (void);

/* Reads @path into @config (cleared first). A missing file is not an error when
 * @missing_ok. Errors name the file and line: unknown groups or keys (with the
 * closest known key), values of the wrong type or out of range. */
gboolean gptd__config_load (const char *path, gboolean missing_ok, GptdDaemonConfig *config,
                            GError **error);

/* Copies into @config every setting @over has. */
void gptd__config_overlay (GptdDaemonConfig *config, const GptdDaemonConfig *over);

/* Appends to @changes ("key: old -> new" lines) the settings that differ. */
void gptd__config_diff (const GptdDaemonConfig *old, const GptdDaemonConfig *new_,
                        GPtrArray *changes);

/* Whether @uid is one of the users @config's allow-users= lists (user names or
 * numbers, or @GROUP for a group's members, separated by commas or spaces). */
gboolean gptd__config_allows_user (const GptdDaemonConfig *config, guint uid);

void gptd__config_copy (GptdDaemonConfig *dest, const GptdDaemonConfig *src);
void gptd__config_clear (GptdDaemonConfig *config);

G_END_DECLS
