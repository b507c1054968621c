/* gptd/harness.h: a test harness for one stage, for plugin authors' unit tests.
 *
 * In the spirit of GStreamer's GstHarness: a GptdHarness makes one instance of a
 * stage type from its parameters, feeds its inputs with the messages a test pushes,
 * collects what it sends on each output and the lines it logs, and reports the
 * error it fails with. No pipeline file is written and no thread is managed by the
 * test:
 *
 *   g_autoptr (GError) error = NULL;
 *   const char *params[] = { "min-len=2", NULL };
 *   g_autoptr (GptdHarness) h = gptd_harness_new ("my-filter", params, &error);
 *   g_assert_no_error (error);
 *   gptd_harness_push (h, "default", &doc.base);
 *   g_assert_true (gptd_harness_run (h, &error));
 *   g_assert_cmpuint (gptd_harness_get_n_outputs (h, "default"), ==, 1);
 *   g_autoptr (GptdHarnessMessage) out = gptd_harness_pull (h, "default");
 *
 * gptd_harness_run() runs the stage the way a pipeline does (with the same runner,
 * parameter checks and links): each input receives the messages pushed to it, in
 * order, then end-of-stream; the run ends when the stage has ended. An input with
 * nothing pushed gets end-of-stream at once; an optional input (GPTD_PAD_OPTIONAL)
 * is left unlinked when nothing was pushed to it. Each output is read by a
 * collector: a plain one, which (for a batch-forming stage) asks for one epoch of
 * every split, unshuffled, or one that sends the epoch requests given with
 * gptd_harness_request_epoch() in turn and keeps each EndOfEpoch after that
 * epoch's batches. A harness is run once.
 *
 * Stage types are found by name among the plugins of GPTD_PLUGIN_PATH and the
 * installed plugin directory, or are given directly (gptd_harness_new_for_type())
 * for a stage type that is not in a loaded plugin (one defined by the test itself).
 * Values are read as a pipeline file's are (`${NAME}` is replaced from the
 * environment), and relative PATH parameters are resolved against the current
 * directory. The stage's
 * run directory is a new temporary directory, deleted by gptd_harness_free(),
 * unless one is given with gptd_harness_set_run_dir().
 *
 * This header is part of the plugin SDK (see plugin.h for the ABI rules).
 */
#ifndef GPTD_HARNESS_H
#define GPTD_HARNESS_H

#include <glib.h>
#include <protobuf-c/protobuf-c.h>
#include <gptd/plugin.h>
#include <gptd/stage.h>

G_BEGIN_DECLS

/**
 * GptdHarness:
 * One stage instance under test, its pushed inputs and its collected outputs; opaque.
 */
typedef struct _GptdHarness GptdHarness;

/**
 * GptdHarnessMessage:
 * A message collected from an output: free it with gptd_harness_message_free()
 * (or protobuf_c_message_free_unpacked (msg, NULL)). Its descriptor says its type;
 * cast it to the generated type, e.g. `(Gptd__Tokens *) msg`.
 */
typedef ProtobufCMessage GptdHarnessMessage;

/**
 * gptd_harness_new:
 * @type_name: a stage type name, e.g. "text-source"
 * @params: (nullable) (array zero-terminated=1): the stage's keys, as "key=value"
 * @error: return location for a #GError
 *
 * Loads the plugins (GPTD_PLUGIN_PATH, then the plugin directory) and checks the
 * parameters against the type's specs, as a pipeline does when it loads.
 *
 * Returns: (transfer full): a harness, or %NULL with @error set: no stage type of
 * that name (GPTD_REGISTRY_ERROR), or parameters the pipeline would refuse
 * (GPTD_PIPELINE_ERROR; the message names the key).
 */
GptdHarness *gptd_harness_new (const char *type_name, const char *const *params,
                               GError **error);

/**
 * gptd_harness_new_for_type:
 * @type: a stage type; it must outlive the harness
 * @params: (nullable) (array zero-terminated=1): the stage's keys, as "key=value"
 * @error: return location for a #GError
 *
 * gptd_harness_new() for a stage type given directly. The type is checked as a
 * plugin's would be when it loads (GPTD_REGISTRY_ERROR_INVALID when malformed).
 *
 * Returns: (transfer full): a harness, or %NULL with @error set.
 */
GptdHarness *gptd_harness_new_for_type (const GptdStageType *type,
                                        const char *const *params, GError **error);

/**
 * gptd_harness_free:
 * @harness: (nullable): a harness
 *
 * Frees the harness, the messages not pulled and the temporary run directory.
 */
void gptd_harness_free (GptdHarness *harness);
G_DEFINE_AUTOPTR_CLEANUP_FUNC (GptdHarness, gptd_harness_free)

/* Frees a message returned by gptd_harness_pull() (NULL-safe). */
void gptd_harness_message_free (GptdHarnessMessage *message);
G_DEFINE_AUTOPTR_CLEANUP_FUNC (GptdHarnessMessage, gptd_harness_message_free)

/**
 * gptd_harness_set_run_dir:
 * @harness: a harness, not yet run
 * @run_dir: an existing directory; it is kept
 *
 * Makes @run_dir the stage's run directory (gptd_stage_context_get_run_dir()),
 * e.g. to look at the files it writes, or to resume from them.
 */
void gptd_harness_set_run_dir (GptdHarness *harness, const char *run_dir);

/**
 * gptd_harness_get_plugin:
 * @harness: a harness
 *
 * Returns: (transfer none): the descriptor of the plugin that provides the stage
 * type (for gptd_harness_new_for_type(), one made by the harness).
 */
const GptdPluginDescriptor *gptd_harness_get_plugin (GptdHarness *harness);

/* Returns: (transfer none): the stage's run directory. */
const char *gptd_harness_get_run_dir (GptdHarness *harness);

/* Makes gptd_stage_context_is_resume() TRUE for the stage. Before the run. */
void gptd_harness_set_resume (GptdHarness *harness, gboolean resume);

/**
 * gptd_harness_push:
 * @harness: a harness, not yet run
 * @input: an input pad name ("default" for the one a bare `input=` links)
 * @message: a message of the input's type; it stays the caller's (it is packed)
 *
 * Queues @message for input @input; gptd_harness_run() delivers the queued
 * messages in order, then end-of-stream.
 *
 * Returns: %FALSE (and queues nothing) when the type has no such input or the
 * message is not of the input's type; g_critical() says which.
 */
gboolean gptd_harness_push (GptdHarness *harness, const char *input,
                            const ProtobufCMessage *message);

/**
 * gptd_harness_request_epoch:
 * @harness: a harness, not yet run
 * @output: an output pad name
 * @request: the request; copied
 *
 * Makes the collector of @output ask the stage for epochs, as a trainer does: it
 * sends each request given, in order, and collects that epoch's batches followed
 * by the Gptd__EndOfEpoch that closes it. The stage must implement epoch().
 */
void gptd_harness_request_epoch (GptdHarness *harness, const char *output,
                                 const Gptd__EpochRequest *request);

/**
 * gptd_harness_run:
 * @harness: a harness, not yet run
 * @error: return location for a #GError
 *
 * Creates the stage, delivers the pushed messages and waits until the stage has
 * ended and its instance has been destroyed. Logs, progress and outputs are
 * collected meanwhile.
 *
 * Returns: %TRUE when the stage finished without error; %FALSE with the stage's
 * error (its own domain and code; the message without the "stage NAME: " prefix
 * that a pipeline run adds).
 */
gboolean gptd_harness_run (GptdHarness *harness, GError **error);

/* The number of messages collected from @output and not yet pulled. */
guint gptd_harness_get_n_outputs (GptdHarness *harness, const char *output);

/**
 * gptd_harness_pull:
 * @harness: a harness that has run
 * @output: an output pad name
 *
 * Returns: (transfer full) (nullable): the next message collected from @output, in
 * the order the stage sent it, or %NULL when there is none left.
 */
GptdHarnessMessage *gptd_harness_pull (GptdHarness *harness, const char *output);

/**
 * gptd_harness_get_logs:
 * @harness: a harness
 *
 * Returns: (transfer none) (array zero-terminated=1): the lines the stage logged
 * with gptd_stage_log(), in order, each as "LEVEL: message" (LEVEL is one of
 * "error", "warning", "info", "debug").
 */
const char *const *gptd_harness_get_logs (GptdHarness *harness);

/* The number of progress reports the stage sent with gptd_stage_progress(). */
guint gptd_harness_get_n_progress (GptdHarness *harness);

/**
 * gptd_harness_get_last_progress:
 * @harness: a harness
 *
 * Returns: (transfer none) (nullable): the last progress report, or %NULL.
 */
const Gptd__Progress *gptd_harness_get_last_progress (GptdHarness *harness);

G_END_DECLS

#endif /* GPTD_HARNESS_H */
