/* gptd/runner.h: running a loaded pipeline.
 *
 * A GptdRunner runs one GptdPipeline: it creates every stage instance (on the calling
 * thread, before anything flows: a stage that cannot open its files stops the run
 * there), then starts one thread per stage, links them with bounded queues of packed
 * protobuf messages, and waits for them all to end. End-of-stream flows downstream;
 * epoch requests flow upstream to batch-forming stages (see stage.h). The first error
 * of any stage cancels the run; it is returned with the stage's name.
 *
 * What happens during a run reaches the caller as Gptd__Event messages through one
 * callback: state changes (RUNNING, then SUCCEEDED, FAILED or CANCELLED), progress,
 * log lines, samples, models and streamed text. The callback is called from stage
 * threads (and the thread calling gptd_runner_run()), never from two at once; events
 * carry increasing sequence numbers and times. The callback must not block for long:
 * the stage that emitted the event waits for it.
 *
 * The same runner serves `gptd run` (foreground) and the daemon's worker processes.
 */
#ifndef GPTD_RUNNER_H
#define GPTD_RUNNER_H

#include <glib.h>
#include <gptd/pipeline.h>
#include <gptd.pb-c.h>

G_BEGIN_DECLS

/* The number of messages a link holds before its producer blocks (the default). */
#define GPTD_RUNNER_DEFAULT_LINK_CAPACITY 16

/**
 * GptdEventFunc:
 * @event: the event; valid only during the call (copy what you keep, or pack it)
 * @user_data: the data given to gptd_runner_new()
 *
 * Receives the events of a run. Called from the runner's threads, serialised.
 */
typedef void (*GptdEventFunc) (const Gptd__Event *event, gpointer user_data);

/**
 * GptdRunner:
 *
 * One run of a pipeline; opaque. Run it once.
 */
typedef struct _GptdRunner GptdRunner;

/**
 * gptd_runner_new:
 * @pipeline: a loaded pipeline; it must outlive the runner
 * @run_dir: the run directory, which must exist (stages write metrics,
 *   checkpoints and samples there)
 * @func: (nullable): receives the run's events
 * @user_data: passed to @func
 *
 * Returns: (transfer full): a runner, ready for gptd_runner_run().
 */
GptdRunner *gptd_runner_new (GptdPipeline *pipeline, const char *run_dir,
                             GptdEventFunc func, gpointer user_data);

/**
 * gptd_runner_free:
 * @runner: (nullable): a runner that is not running
 */
void gptd_runner_free (GptdRunner *runner);
G_DEFINE_AUTOPTR_CLEANUP_FUNC (GptdRunner, gptd_runner_free)

/* Sets the run id copied into every event (default ""). Before gptd_runner_run(). */
void gptd_runner_set_run_id (GptdRunner *runner, const char *run_id);
/* Asks the stages to resume from their last checkpoint
 * (gptd_stage_context_is_resume()). Before gptd_runner_run(). */
void gptd_runner_set_resume (GptdRunner *runner, gboolean resume);
/* Sets how many messages each link holds (>= 1; default
 * GPTD_RUNNER_DEFAULT_LINK_CAPACITY). Before gptd_runner_run(). */
void gptd_runner_set_link_capacity (GptdRunner *runner, guint capacity);

/**
 * gptd_runner_run:
 * @runner: a runner
 * @error: return location for a #GError
 *
 * Creates the stage instances, runs the pipeline and blocks until every stage has
 * ended and every instance has been destroyed.
 *
 * Returns: %TRUE when every stage finished. %FALSE with @error set otherwise: the
 * first stage error (its domain and code, its message prefixed with
 * "stage NAME: "), or G_IO_ERROR_CANCELLED when the run was cancelled.
 */
gboolean gptd_runner_run (GptdRunner *runner, GError **error);

/**
 * gptd_runner_cancel:
 * @runner: a runner
 *
 * Cancels the run: every blocked push, pull and epoch request returns with
 * G_IO_ERROR_CANCELLED and gptd_stage_context_is_cancelled() turns TRUE. Safe to call
 * from any thread (a signal-handling thread, a libuv callback, an event callback),
 * any number of times, before, during or after gptd_runner_run(). It takes only
 * the runner's link lock briefly and never calls the event callback itself.
 */
void gptd_runner_cancel (GptdRunner *runner);

/* TRUE once gptd_runner_cancel() has been called or a stage has failed. */
gboolean gptd_runner_is_cancelled (GptdRunner *runner);

/* The run's state: UNKNOWN before gptd_runner_run(), RUNNING during it, then
 * SUCCEEDED, FAILED or CANCELLED. */
Gptd__RunState gptd_runner_get_state (GptdRunner *runner);

/* The stage whose error failed the run (FAILED only), else NULL. */
const char *gptd_runner_get_error_stage (GptdRunner *runner);

/* The message of the error that failed the run, without the stage prefix
 * (FAILED only), else NULL. */
const char *gptd_runner_get_error_message (GptdRunner *runner);

/* ---- Formatting events --------------------------------------------------- */

/**
 * gptd_progress_format:
 * @progress: a progress event
 * @bar_width: width in columns of a progress bar, 0 for none (a bar is drawn only
 *   when the total is known)
 *
 * Formats progress as one line without a newline, e.g.
 * "train  step 120/4000  epoch 2/10  loss 4.812  val 5.102  1830 tok/s  ETA 12m03s"
 * (fields that are not measured are left out), followed by the bar when asked.
 *
 * Returns: (transfer full): the line.
 */
char *gptd_progress_format (const Gptd__Progress *progress, guint bar_width);

/**
 * gptd_event_format:
 * @event: an event
 *
 * Formats an event as one plain log line without a newline, as `gptd run` writes it
 * when not on a terminal and `gptctl logs` prints it, e.g.
 * "12:03:55 corpus: read 3 files", "12:03:56 state: failed (stage train: ...)".
 *
 * Returns: (transfer full): the line.
 */
char *gptd_event_format (const Gptd__Event *event);

/* The name of a run state as shown to users: "queued", "running", "succeeded", ... */
const char *gptd_run_state_to_string (Gptd__RunState state);

G_END_DECLS

#endif /* GPTD_RUNNER_H */
