/* daemon/runs.h: the daemon's run table and its state directory.
 *
 * Every run submitted to the daemon has a directory STATE/runs/ID/ (IDs are
 * increasing integers) holding:
 *
 *   pipeline.pipeline  the pipeline text as submitted
 *   run.json           the file name it was submitted as, the --set settings and
 *                      the client's working directory (the file `gptd run` writes,
 *                      so `gptd run --resume RUN_DIR` works on it)
 *   status.json        the run's RunInfo as JSON (state, times, error, pid, the
 *                      latest progress), replaced atomically on every state change
 *   events.log         every event of the run, as frames (4-byte big-endian length
 *                      and a packed gptd.Event), appended as they arrive: what
 *                      watchers replay
 *   events.jsonl       the same events as JSON lines, as `gptd run` writes them
 *   output.log         what the worker process wrote to stdout and stderr
 *   checkpoint/        what the stages checkpoint (resume continues from it)
 *   checkpoint.removed there when the daemon deleted checkpoint/ (a cancelled
 *                      run, keep-cancelled-checkpoints=false): no resume
 *
 * A removed run's directory is first renamed STATE/runs/.removed-ID, then
 * deleted; STATE/runs/.next-id keeps the next ID so none is given twice.
 *
 * The table is rebuilt from the status files when the daemon starts; a run whose
 * status still says it is running (its worker cannot report to this daemon) is
 * marked interrupted, and that is written back. The state directory is locked
 * (STATE/lock) so two daemons never share it.
 */
#pragma once

#include <glib.h>
#include <gptd.pb-c.h>

G_BEGIN_DECLS

/**
 * GptdRunTable:
 *
 * Every run of a state directory; opaque.
 */
typedef struct _GptdRunTable GptdRunTable;

/**
 * GptdRun:
 * @id: the run's ID ("1", "2", ...).
 * @dir: the run directory.
 * @name: the pipeline's name.
 * @filename: the pipeline's file name as submitted.
 * @state: the current state.
 * @created: when the run was submitted (Unix time).
 * @started: when it started running, or 0.
 * @finished: when it ended, or 0.
 * @error: the error that failed it, or %NULL.
 * @error_stage: the stage whose error failed it, or %NULL.
 * @pid: the worker's pid while one runs, else 0.
 * @owner_uid: the user who submitted the run (0 for runs recorded before
 *   owners were).
 * @owner_gid: that user's group.
 * @owner: that user's name (or the uid in decimal).
 * @progress: (nullable): the latest progress event.
 * @last_seq: the sequence number of the last event recorded.
 * @worker: (nullable): the server's worker for this run while it runs.
 * @watchers: the server's connections watching this run live (not owned).
 * @cancel_requested: a client asked to cancel the run.
 * @resume_pending: a client asked to resume the run while its previous worker
 *   was still exiting; the new worker starts once that one has gone.
 * @pause_requested: a client asked to pause the run: its worker was told to
 *   stop (stages checkpoint), and the run ends paused rather than cancelled.
 * @queue_seq: while the run waits for a free slot (state QUEUED, no worker),
 *   its place in the queue; 0 when it does not wait.
 * @queue_resume: the run waits to be resumed rather than started.
 * @kill_timer: (nullable): set when the run was told to stop (cancel, pause):
 *   its worker is killed when it has not stopped in time.
 *
 * One run. The server reads the fields; only runs.c changes the state ones.
 */
typedef struct {
  char *id;
  char *dir;
  char *name;
  char *filename;
  Gptd__RunState state;
  double created;
  double started;
  double finished;
  char *error;
  char *error_stage;
  int pid;
  guint owner_uid;
  guint owner_gid;
  char *owner;
  Gptd__Progress *progress;
  guint64 last_seq;
  /*< private >*/
  int log_fd;
  int json_fd;
  GptdRunTable *table;
  gboolean status_stale;     /* the last status.json write failed */
  double status_tried;       /* when it was last tried */
  /*< owned by the server >*/
  gpointer worker;
  GPtrArray *watchers;
  gboolean cancel_requested;
  gboolean resume_pending;
  gboolean pause_requested;
  guint64 queue_seq;
  gboolean queue_resume;
  struct uv_timer_s *kill_timer;
} GptdRun;

/* File names inside a run directory. */
#define GPTD_RUN_PIPELINE_FILE "pipeline.pipeline"
#define GPTD_RUN_REQUEST_FILE "run.json"
#define GPTD_RUN_STATUS_FILE "status.json"
#define GPTD_RUN_EVENTS_FILE "events.log"
#define GPTD_RUN_EVENTS_JSON_FILE "events.jsonl"
#define GPTD_RUN_OUTPUT_FILE "output.log"
#define GPTD_RUN_CHECKPOINT_DIR "checkpoint"
#define GPTD_RUN_CHECKPOINT_REMOVED_FILE "checkpoint.removed"

/**
 * gptd__run_table_open:
 * @state_dir: the state directory; created (0750) when missing
 * @error: return location for a #GError
 *
 * Locks @state_dir and loads every run found in STATE/runs/. Runs that were
 * queued or running are marked interrupted (status and event log written back).
 * Unreadable run directories are skipped with a warning.
 *
 * Returns: (transfer full): the table, or %NULL with @error set (the directory
 *   cannot be created, or another gptd holds its lock)
 */
GptdRunTable *gptd__run_table_open (const char *state_dir, GError **error);

/* Frees the table and its runs, releasing the lock (NULL-safe). */
void gptd__run_table_free (GptdRunTable *table);

/* The state directory. */
const char *gptd__run_table_get_state_dir (GptdRunTable *table);

/* (transfer none) (nullable): the run called @id. */
GptdRun *gptd__run_table_lookup (GptdRunTable *table, const char *id);

/* (transfer container): every run, oldest first. */
GPtrArray *gptd__run_table_list (GptdRunTable *table);

/**
 * gptd__run_table_remove:
 * @table: the table
 * @run: (transfer full): a run of @table that has ended, with no worker; the
 *   caller made sure nothing else points to it
 * @error: return location for a #GError
 *
 * Takes @run out of the table, frees it and deletes its directory (symbolic
 * links in it are removed, never followed). Its ID is not given again. A
 * directory that cannot be deleted entirely is left renamed (a warning says
 * why): the run is removed all the same.
 *
 * Returns: %TRUE when the run was removed; %FALSE with @error (the run stays)
 */
gboolean gptd__run_table_remove (GptdRunTable *table, GptdRun *run, GError **error);

/* Deletes @run's checkpoint/ directory (when there is one), leaving the mark
 * gptd__run_checkpoint_removed() looks for. */
gboolean gptd__run_remove_checkpoint (GptdRun *run, GError **error);

/* Whether the daemon deleted @run's checkpoints: it cannot be resumed. */
gboolean gptd__run_checkpoint_removed (const GptdRun *run);

/**
 * gptd__run_table_create:
 * @table: the table
 * @name: the pipeline's name
 * @text: the pipeline text as submitted
 * @filename: the absolute file name it was submitted as
 * @workdir: (nullable): the client's working directory
 * @settings: (nullable): "key=value" settings
 * @environment: (nullable): the client's "NAME=value" variables for ${NAME}
 *   (recorded in run.json; the worker expands with them, never its own)
 * @error: return location for a #GError
 *
 * Creates a new run in state QUEUED: its directory, pipeline.pipeline,
 * run.json, status.json and empty event logs.
 *
 * Returns: (transfer none): the run, or %NULL with @error set (nothing is left
 *   behind)
 */
GptdRun *gptd__run_table_create (GptdRunTable *table, const char *name, const char *text,
                                 const char *filename, const char *workdir,
                                 const char *const *settings,
                                 const char *const *environment, GError **error);

/**
 * gptd__run_set_owner:
 * @run: a run just created
 * @uid: the submitting user
 * @gid: that user's group
 * @error: return location for a #GError
 *
 * Records the run's owner in status.json. When the daemon runs as root and
 * @uid is not root, the run directory and its files are given to @uid:@gid,
 * so that the worker, which runs with the owner's rights, can write there.
 *
 * Returns: %TRUE on success
 */
gboolean gptd__run_set_owner (GptdRun *run, guint uid, guint gid, GError **error);

/* Sets the worker's pid (0 when none) and writes status.json. */
void gptd__run_set_pid (GptdRun *run, int pid);

/* Writes status.json atomically, trying up to three times; a failure is logged
 * and returned, and the write is tried again with the run's next events (the
 * event log holds the state too, and a restart rebuilds the status from it). */
gboolean gptd__run_write_status (GptdRun *run, GError **error);

/**
 * gptd__run_record_event:
 * @run: a run
 * @event: an event; its run_id and seq are replaced with the run's, and a
 *   missing time is set to now
 *
 * Records an event: appends it to the event log and applies it to the run (the
 * latest progress; the state, times and error of a StateChange, after which
 * status.json is written). A run that has finished takes no more events: they
 * are dropped and %FALSE is returned.
 *
 * Returns: %TRUE when the event was recorded
 */
gboolean gptd__run_record_event (GptdRun *run, Gptd__Event *event);

/**
 * gptd__run_finish:
 * @run: a run that has not finished
 * @state: a final state (SUCCEEDED, FAILED, CANCELLED, INTERRUPTED)
 * @stage: (nullable): the stage at fault
 * @error: (nullable): the error message
 *
 * Ends a run on the daemon's authority (the worker died, or the daemon stops):
 * records a StateChange event as gptd__run_record_event() does.
 */
void gptd__run_finish (GptdRun *run, Gptd__RunState state, const char *stage,
                       const char *error);

/**
 * gptd__run_reopen:
 * @run: a run that has ended, but not succeeded
 * @why: (nullable): what the log line announcing it says (default: "resuming
 *   from the last checkpoint")
 *
 * Makes an ended run go on in the same run directory: its error and end time
 * are cleared, a log line and a StateChange to QUEUED are appended to its event
 * log, and status.json is written. The caller then starts a worker that
 * resumes the pipeline from its checkpoints. The start time stays that of the
 * first start.
 */
void gptd__run_reopen (GptdRun *run, const char *why);

/**
 * GptdRunEventFunc:
 * @run: the run
 * @event: the event just recorded (valid during the call)
 * @user_data: the data given to gptd__run_table_set_event_func()
 *
 * Called for every event recorded in a run of the table, after the run was
 * updated: the server forwards them to the run's watchers.
 */
typedef void (*GptdRunEventFunc) (GptdRun *run, const Gptd__Event *event, gpointer user_data);

/* Sets the function called for every recorded event. */
void gptd__run_table_set_event_func (GptdRunTable *table, GptdRunEventFunc func,
                                     gpointer user_data);

/* TRUE once the run reached a final state. */
gboolean gptd__run_is_finished (const GptdRun *run);

/* TRUE for SUCCEEDED, FAILED, CANCELLED, INTERRUPTED and PAUSED (a paused run
 * has ended for now: it has no worker, takes no events, and can be resumed). */
gboolean gptd__run_state_is_final (Gptd__RunState state);

/**
 * gptd__run_fill_info:
 * @run: a run
 * @info: (out caller-allocates): a RunInfo to fill; its strings and progress
 *   point into @run
 */
void gptd__run_fill_info (const GptdRun *run, Gptd__RunInfo *info);

/**
 * gptd__run_read_log:
 * @run: a run
 * @skip_progress: leave progress events out
 * @error: return location for a #GError
 *
 * Reads the run's event log. A frame cut short at the end of the file (the
 * daemon died while writing it) is ignored.
 *
 * Returns: (transfer full) (element-type Gptd__Event): the events, each freed
 *   with protobuf_c_message_free_unpacked() by the array; %NULL with @error
 */
GPtrArray *gptd__run_read_log (GptdRun *run, gboolean skip_progress, GError **error);

/**
 * GptdRunLogReader:
 *
 * Reads a run's event log incrementally, following what is appended to it;
 * opaque.
 */
typedef struct _GptdRunLogReader GptdRunLogReader;

/* (transfer full): a reader at the start of @run's event log, or %NULL with @error. */
GptdRunLogReader *gptd__run_log_reader_new (GptdRun *run, GError **error);

/**
 * gptd__run_log_reader_next:
 * @reader: a reader
 * @error: return location for a #GError
 *
 * Returns: (transfer full) (nullable): the next event of the log (free it with
 *   protobuf_c_message_free_unpacked()), or %NULL at the current end of the log
 *   (@error unset) or on a read or decoding error (@error set)
 */
Gptd__Event *gptd__run_log_reader_next (GptdRunLogReader *reader, GError **error);

/* Frees a reader (NULL-safe). */
void gptd__run_log_reader_free (GptdRunLogReader *reader);

G_DEFINE_AUTOPTR_CLEANUP_FUNC (GptdRunLogReader, gptd__run_log_reader_free)

/**
 * gptd__run_dir_write_request:
 * @dir: a run directory
 * @text: the pipeline text
 * @length: its length, or -1 when NUL-terminated
 * @filename: the absolute file name it was submitted as
 * @workdir: (nullable): the client's working directory
 * @settings: (nullable): "key=value" settings
 * @environment: (nullable): "NAME=value" variables for ${NAME}; %NULL: none
 *   recorded (the process's environment applies)
 * @error: return location for a #GError
 *
 * Writes pipeline.pipeline and run.json, atomically: what both the daemon
 * (gptd__run_table_create()) and `gptd run` keep of a run, and what the worker
 * and `gptd run --resume` read back.
 *
 * Returns: %TRUE on success
 */
gboolean gptd__run_dir_write_request (const char *dir, const char *text, gssize length,
                                      const char *filename, const char *workdir,
                                      const char *const *settings,
                                      const char *const *environment, GError **error);

/**
 * gptd__run_dir_read_request:
 * @dir: a run directory
 * @text: (out) (transfer full): the pipeline text
 * @filename: (out) (transfer full): the file name it was submitted as
 * @workdir: (out) (transfer full): the client's working directory ("" if none)
 * @settings: (out) (transfer full): the settings, %NULL-terminated
 * @error: return location for a #GError
 *
 * Reads back what gptd__run_table_create() wrote (the worker process does).
 *
 * Returns: %TRUE on success
 */
gboolean gptd__run_dir_read_request (const char *dir, char **text, char **filename,
                                     char **workdir, char ***settings, GError **error);

/* (transfer full) (nullable): the client's environment recorded in the run's
 * run.json ("NAME=value" strings), or %NULL when none was (a run of `gptd run`:
 * the process's environment applies). */
char **gptd__run_dir_read_environment (const char *dir);

G_END_DECLS
