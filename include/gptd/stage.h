/* stage.h: the stage API of gptd plugins.
 *
 * A stage type is a table (GptdStageType) that declares the stage's parameters, the
 * protobuf message type of each input and output, and its functions. The runner
 * creates one instance per pipeline stage and runs it on a thread of its own; links
 * between stages are bounded queues of packed protobuf messages, so a slow stage
 * holds back the stages that feed it.
 *
 * A stage is written in one of two styles:
 *
 *  - process style: implement process() (called once per input message, inputs
 *    served one after the other: all of input 0 until its end of stream, then input
 *    1, ...) and optionally finish() (called once every input has ended). Sources
 *    with no inputs implement run() instead.
 *  - run style: implement run(), which owns the stage's thread and calls
 *    gptd_stage_pull() / gptd_stage_push() itself. The trainer is written this way:
 *    it asks its input for epochs with gptd_stage_request_epoch().
 *
 * Batch-forming stages (token-windows, classification batcher, instruction collator)
 * keep their examples and implement epoch(): once their inputs have ended (and
 * finish() has run), the runner calls epoch() for each EpochRequest a downstream
 * stage sends and follows the batches with an EndOfEpoch. When the consumer's input
 * pad is not an epochs pad (GPTD_PAD_EPOCHS), the runner sends one request on its
 * behalf: split "" (every split, in order), epoch 0, no shuffle. It then receives
 * that epoch's batches and end-of-stream, without an EndOfEpoch. A process-style
 * consumer is always served this way (it cannot send requests).
 *
 * After a stage's run()/finish()/epoch serving ends without error, the runner sends
 * end-of-stream on each of its outputs. Once a stage's run() or process loop has
 * ended, it reads no more: what its producers still push to it is dropped. When every
 * consumer of a stage has ended, gptd_stage_push() fails with G_IO_ERROR_CLOSED; a
 * stage that returns that error (e.g. an endless source) ends cleanly, not as a
 * failure. An error (a FALSE return with the GError
 * set) cancels the whole run; the error is reported with the stage's name.
 *
 * Lifecycle of an instance: create() on the runner's thread before any stage thread
 * starts (open files, load weights: a failure here stops the run before anything
 * flows), then run()/process()/finish()/epoch() on the stage's thread, then
 * destroy() on the runner's thread after every stage thread has ended.
 */
#ifndef GPTD_STAGE_H
#define GPTD_STAGE_H

#include <glib.h>
#include <protobuf-c/protobuf-c.h>
#include <gptd/gptd.pb-c.h>

G_BEGIN_DECLS

/* ---- Parameters ------------------------------------------------------------ */

typedef enum {
  GPTD_PARAM_STRING,  /* any string */
  GPTD_PARAM_PATH,    /* a file or directory; relative to the pipeline file's directory */
  GPTD_PARAM_INT,     /* a 64-bit integer, range-checked when min < max */
  GPTD_PARAM_DOUBLE,  /* a double, range-checked when min < max */
  GPTD_PARAM_BOOL,    /* true/false, yes/no, 1/0 */
  GPTD_PARAM_ENUM,    /* one of choices[] */
  GPTD_PARAM_DOUBLE_LIST, /* comma-separated doubles, each range-checked */
} GptdParamType;

typedef enum {
  GPTD_PARAM_FLAG_NONE = 0,
  GPTD_PARAM_REQUIRED = 1 << 0,   /* must be given in the pipeline */
  GPTD_PARAM_MIN_EXCLUSIVE = 1 << 1, /* value must be > min (not >= min) */
  GPTD_PARAM_MAX_EXCLUSIVE = 1 << 2, /* value must be < max (not <= max) */
  GPTD_PARAM_EXISTS = 1 << 3,     /* PATH: must name an existing file or directory
                                     when the pipeline loads */
} GptdParamFlags;

/**
 * GptdParamSpec:
 * @name: the key in the pipeline file, e.g. "context-length".
 * @type: how the value is parsed and checked.
 * @default_value: the value used when the key is absent, as text; NULL for none.
 * @min: lower bound for INT, DOUBLE and DOUBLE_LIST (used when min < max).
 * @max: upper bound.
 * @choices: NULL-terminated list of allowed values for ENUM.
 * @help: one line of help, shown by `gptd plugins TYPE`.
 * @flags: GptdParamFlags.
 *
 * Arrays of specs end with an entry whose @name is NULL. The struct ends with
 * reserved room: members added later take it, without changing the struct's size
 * (see "Growing the ABI" in plugin.h). Initialise specs with designated or
 * positional initialisers that leave it out, so that it stays zero.
 */
typedef struct {
  const char *name;
  GptdParamType type;
  const char *default_value;
  double min;
  double max;
  const char *const *choices;
  const char *help;
  guint flags;
  /*< private >*/
  gpointer reserved[4];
} GptdParamSpec;

/* The validated parameters of one stage instance. Values have been checked against
 * their specs when the pipeline was loaded; the getters never fail for a declared
 * parameter. */
typedef struct _GptdParams GptdParams;

/* TRUE when the key was given in the pipeline or has a default. */
gboolean gptd_params_has (const GptdParams *params, const char *name);
/* TRUE when the key was given in the pipeline (not only defaulted). */
gboolean gptd_params_is_set (const GptdParams *params, const char *name);
/* The value as text (NULL when absent); for PATH, resolved against the pipeline file's
 * directory. The string belongs to @params. */
const char *gptd_params_get_string (const GptdParams *params, const char *name);
gint64 gptd_params_get_int (const GptdParams *params, const char *name);
double gptd_params_get_double (const GptdParams *params, const char *name);
gboolean gptd_params_get_bool (const GptdParams *params, const char *name);
/* The list as an array of @n_values doubles belonging to @params. */
const double *gptd_params_get_double_list (const GptdParams *params, const char *name,
                                           gsize *n_values);
/* Resolves @path (any text, e.g. one item of a STRING list of files) against the
 * pipeline file's directory, as PATH parameters are; absolute paths are returned as
 * they are. Free the result with g_free(). */
char *gptd_params_resolve_path (const GptdParams *params, const char *path);
/* The value of @name for keys that take a file or a name looked up elsewhere (vocab=
 * takes a directory or "gpt2"): a value holding '/' or naming something that exists
 * beside the pipeline file is resolved as a path, anything else is returned as it is.
 * NULL when the key has no value. Free the result with g_free(). */
char *gptd_params_resolve_name_or_path (const GptdParams *params, const char *name);
/* Notes on the getters: gptd_params_get_int() of an ENUM gives the index of the
 * choice in choices[]; gptd_params_get_double() accepts INT parameters; every type can
 * be read as text with gptd_params_get_string(). */

/* ---- Pads ------------------------------------------------------------------ */

typedef enum {
  GPTD_PAD_FLAG_NONE = 0,
  /* An input that drives its producer with EpochRequests (gptd_stage_request_epoch). */
  GPTD_PAD_EPOCHS = 1 << 0,
  /* An input that need not be linked. */
  GPTD_PAD_OPTIONAL = 1 << 1,
} GptdPadFlags;

/**
 * GptdPadSpec:
 * @name: "default" for the stage's default input/output (linked with `input=`),
 *   else the name used in `input.NAME=`.
 * @message_type: full protobuf type name, e.g. "gptd.Tokens"; "*" accepts any type.
 * @flags: GptdPadFlags.
 *
 * Arrays of pads end with an entry whose @name is NULL. As for GptdParamSpec, the
 * reserved room at the end is where later members go.
 */
typedef struct {
  const char *name;
  const char *message_type;
  guint flags;
  /*< private >*/
  gpointer reserved[4];
} GptdPadSpec;

/* ---- The stage context: what the runner offers a stage --------------------- */

typedef struct _GptdStageContext GptdStageContext;

/* The stage's name in the pipeline ("tokens" for [stage tokens]). */
const char *gptd_stage_context_get_name (GptdStageContext *ctx);
/* The run directory (metrics, checkpoints, samples go here); it exists. */
const char *gptd_stage_context_get_run_dir (GptdStageContext *ctx);
/* TRUE once the run is cancelled (by a user, a signal, or another stage's error).
 * Long loops check it; push and pull return FALSE with G_IO_ERROR_CANCELLED. */
gboolean gptd_stage_context_is_cancelled (GptdStageContext *ctx);
/* TRUE when the run was asked to resume from its last checkpoint. */
gboolean gptd_stage_context_is_resume (GptdStageContext *ctx);

/* Sends @msg (whose descriptor must be the output's message type) on output @output,
 * packed. Blocks while the link is full. Returns FALSE with @error set when the run
 * is cancelled or the message does not fit the output. @msg stays the caller's. */
gboolean gptd_stage_push (GptdStageContext *ctx, guint output,
                          const ProtobufCMessage *msg, GError **error);

typedef enum {
  GPTD_PULL_ERROR,        /* @error is set (cancelled, or a malformed message) */
  GPTD_PULL_MESSAGE,      /* *msg is a message of the input's type */
  GPTD_PULL_END_OF_EPOCH, /* *msg is the Gptd__EndOfEpoch closing a requested epoch */
  GPTD_PULL_END_OF_STREAM /* the producer has finished; *msg is NULL */
} GptdPullResult;

/* Takes the next message from input @input (run-style stages). Free *msg with
 * protobuf_c_message_free_unpacked (msg, NULL). */
GptdPullResult gptd_stage_pull (GptdStageContext *ctx, guint input,
                                ProtobufCMessage **msg, GError **error);

/* Asks the producer behind input @input (an epochs pad) for one epoch of batches;
 * pull them, then the EndOfEpoch. One request is outstanding at a time per input.
 * Pulling from such an input with no request outstanding is an error (it would wait
 * forever). */
gboolean gptd_stage_request_epoch (GptdStageContext *ctx, guint input,
                                   const Gptd__EpochRequest *request, GError **error);

/* Progress for watchers: step, epoch, losses, tokens/s, ETA. Fields not measured are
 * NaN (losses) or 0. The stage name is filled in by the runner. */
void gptd_stage_progress (GptdStageContext *ctx, const Gptd__Progress *progress);
/* A log line, sent to watchers and the run's event log. */
void gptd_stage_log (GptdStageContext *ctx, GLogLevelFlags level,
                     const char *format, ...) G_GNUC_PRINTF (3, 4);
/* A generated sample, sent to watchers as an event. */
void gptd_stage_sample (GptdStageContext *ctx, const Gptd__Sample *sample);
/* Text streamed as it is produced (generation), in whole UTF-8 characters. */
void gptd_stage_text (GptdStageContext *ctx, const char *text, gboolean done);
/* A model written (a checkpoint, or the final model), sent to watchers as an event. */
void gptd_stage_model (GptdStageContext *ctx, const Gptd__Model *model);

/* ---- The stage type -------------------------------------------------------- */

typedef struct _GptdStageType GptdStageType;

/**
 * GptdStageType:
 * @name: the type name used in `type=`, e.g. "text-source".
 * @description: one line.
 * @params: the parameters (NULL-name terminated), or NULL for none.
 * @inputs: the inputs (NULL-name terminated), or NULL for a source.
 * @outputs: the outputs (NULL-name terminated), or NULL for a sink.
 * @check: optional load-time check of parameter combinations that specs cannot
 *   express (e.g. a context longer than the model's); returns FALSE with @error.
 * @create: makes an instance from validated parameters; NULL with @error on failure.
 * @run: run style (see above); sources implement it.
 * @process: process style: handle one message from input @input. @msg belongs to
 *   the runner and is freed after the call.
 * @finish: process style: every input has ended; flush what is pending.
 * @epoch: batch-forming stages: push one epoch's batches for @request on @output
 *   (the runner sends the EndOfEpoch, with `batches` = the messages pushed on @output
 *   during the call; to fill in `total` as well, push a Gptd__EndOfEpoch yourself on
 *   @output as the last message, and the runner sends none). While epoch() runs,
 *   pushes on @output go only to the consumer that asked.
 * @destroy: frees the instance (NULL-safe).
 */
struct _GptdStageType {
  const char *name;
  const char *description;
  const GptdParamSpec *params;
  const GptdPadSpec *inputs;
  const GptdPadSpec *outputs;
  gboolean (*check) (const GptdParams *params, GError **error);
  gpointer (*create) (GptdStageContext *ctx, const GptdParams *params, GError **error);
  gboolean (*run) (gpointer self, GptdStageContext *ctx, GError **error);
  gboolean (*process) (gpointer self, GptdStageContext *ctx, guint input,
                       const ProtobufCMessage *msg, GError **error);
  gboolean (*finish) (gpointer self, GptdStageContext *ctx, GError **error);
  gboolean (*epoch) (gpointer self, GptdStageContext *ctx, guint output,
                     const Gptd__EpochRequest *request, GError **error);
  void (*destroy) (gpointer self);
  /*< private >*/
  gpointer reserved[8];
};

/* The error domain for errors raised by stages that have no domain of their own. */
#define GPTD_STAGE_ERROR (gptd_stage_error_quark ())
GQuark gptd_stage_error_quark (void);

typedef enum {
  GPTD_STAGE_ERROR_FAILED,      /* generic failure */
  GPTD_STAGE_ERROR_INPUT,       /* bad input data (names file and offset) */
  GPTD_STAGE_ERROR_IO,          /* reading or writing a file failed */
  GPTD_STAGE_ERROR_TYPE,        /* a message of the wrong type */
} GptdStageError;

G_END_DECLS

#endif /* GPTD_STAGE_H */
