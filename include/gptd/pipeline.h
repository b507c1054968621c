/* gptd/pipeline.h: loading and checking pipeline files.
 *
 * A pipeline file is a key file (see docs/pipeline-format.md): a [pipeline] group
 * whose `name=` names the pipeline and whose other keys are variable defaults, and one
 * [stage NAME] group per stage with `type=`, `input=` / `input.PAD=` links and the
 * stage type's parameters.
 *
 * Loading checks everything before anything runs and reports every problem, not
 * only the first: syntax, a missing [pipeline] group or no stages, unknown stage types
 * and keys (with the closest known name), missing required keys, bad values (type,
 * range, enum choice), undefined variables, links to stages or outputs that do not
 * exist, links between mismatched message types, cycles, unlinked required inputs and
 * the stage type's own check() hook. Each problem names the file (and line), the stage
 * and the key.
 *
 * Variables: `${var}` in any value is replaced by, in order of precedence, a setting
 * `var=value`, the key `var` of the [pipeline] group (whose values may themselves use
 * variables), or the environment variable `var`. An undefined variable is an error.
 * `$$` stands for a literal `$`. A setting `stage.key=value` sets (or overrides) the
 * key of that stage.
 *
 * Paths (GPTD_PARAM_PATH parameters) are resolved against the directory of the
 * pipeline file; the daemon passes an absolute filename built from the client's
 * working directory.
 */
#ifndef GPTD_PIPELINE_H
#define GPTD_PIPELINE_H

#include <glib.h>
#include <gptd/stage.h>
#include <gptd/registry.h>
#include <gptd.pb-c.h>

G_BEGIN_DECLS

/* The error domain of the pipeline loader. */
#define GPTD_PIPELINE_ERROR (gptd_pipeline_error_quark ())
GQuark gptd_pipeline_error_quark (void);

/**
 * GptdPipelineError:
 * @GPTD_PIPELINE_ERROR_IO: the file could not be read.
 * @GPTD_PIPELINE_ERROR_SYNTAX: a line is neither a group, a key=value nor a comment;
 *   a key appears twice in a group; a group appears twice; a bad `${`.
 * @GPTD_PIPELINE_ERROR_NO_PIPELINE: there is no [pipeline] group.
 * @GPTD_PIPELINE_ERROR_NO_STAGES: there is no [stage NAME] group.
 * @GPTD_PIPELINE_ERROR_BAD_GROUP: a group that is neither [pipeline] nor [stage NAME],
 *   or a stage name that is not allowed.
 * @GPTD_PIPELINE_ERROR_NO_SUCH_STAGE_TYPE: `type=` names no registered stage type, or
 *   `type=` is missing.
 * @GPTD_PIPELINE_ERROR_NO_SUCH_KEY: a key the stage type does not declare.
 * @GPTD_PIPELINE_ERROR_MISSING_KEY: a required key is absent.
 * @GPTD_PIPELINE_ERROR_BAD_VALUE: a value of the wrong type, out of range, or not
 *   one of an enum's choices.
 * @GPTD_PIPELINE_ERROR_UNDEFINED_VARIABLE: `${var}` with no value.
 * @GPTD_PIPELINE_ERROR_NO_SUCH_STAGE: an input (or a `--set stage.key` setting)
 *   naming a stage that does not exist (a dangling input).
 * @GPTD_PIPELINE_ERROR_NO_SUCH_PAD: `input.NAME=` naming an input the stage type does
 *   not have, or `input=STAGE.OUT` naming an output STAGE does not have.
 * @GPTD_PIPELINE_ERROR_LINK: linked pads carry different message types, or an epochs
 *   input is linked to a stage that does not serve epochs.
 * @GPTD_PIPELINE_ERROR_UNLINKED: a required input is not linked.
 * @GPTD_PIPELINE_ERROR_CYCLE: the links form a cycle.
 * @GPTD_PIPELINE_ERROR_CHECK: the stage type's check() hook rejected the parameters.
 * @GPTD_PIPELINE_ERROR_BAD_SETTING: a setting that is not `key=value`.
 * @GPTD_PIPELINE_ERROR_INVALID: the summary error returned by the load functions
 *   when there is more than one problem.
 */
typedef enum {
  GPTD_PIPELINE_ERROR_IO,
  GPTD_PIPELINE_ERROR_SYNTAX,
  GPTD_PIPELINE_ERROR_NO_PIPELINE,
  GPTD_PIPELINE_ERROR_NO_STAGES,
  GPTD_PIPELINE_ERROR_BAD_GROUP,
  GPTD_PIPELINE_ERROR_NO_SUCH_STAGE_TYPE,
  GPTD_PIPELINE_ERROR_NO_SUCH_KEY,
  GPTD_PIPELINE_ERROR_MISSING_KEY,
  GPTD_PIPELINE_ERROR_BAD_VALUE,
  GPTD_PIPELINE_ERROR_UNDEFINED_VARIABLE,
  GPTD_PIPELINE_ERROR_NO_SUCH_STAGE,
  GPTD_PIPELINE_ERROR_NO_SUCH_PAD,
  GPTD_PIPELINE_ERROR_LINK,
  GPTD_PIPELINE_ERROR_UNLINKED,
  GPTD_PIPELINE_ERROR_CYCLE,
  GPTD_PIPELINE_ERROR_CHECK,
  GPTD_PIPELINE_ERROR_BAD_SETTING,
  GPTD_PIPELINE_ERROR_INVALID,
} GptdPipelineError;

/**
 * GptdPipelineProblem:
 * @code: a #GptdPipelineError.
 * @file: the pipeline's filename as given.
 * @line: 1-based line in the file, 0 when the problem has no line (a setting, a
 *   missing group, a cycle).
 * @stage: (nullable): the stage concerned.
 * @key: (nullable): the key concerned.
 * @message: what is wrong, and what to do where that is known (no location).
 * @text: the full text shown to users: "FILE:LINE: stage NAME: key KEY: MESSAGE"
 *   (the parts that are unknown are left out).
 *
 * One problem found while loading a pipeline.
 */
typedef struct {
  GptdPipelineError code;
  char *file;
  guint line;
  char *stage;
  char *key;
  char *message;
  char *text;
} GptdPipelineProblem;

void gptd_pipeline_problem_free (GptdPipelineProblem *problem);
G_DEFINE_AUTOPTR_CLEANUP_FUNC (GptdPipelineProblem, gptd_pipeline_problem_free)

/**
 * GptdPipeline:
 *
 * A loaded, checked pipeline: its stages in file order, each with its stage type,
 * validated parameters and links; opaque and immutable once loaded.
 */
typedef struct _GptdPipeline GptdPipeline;

/**
 * gptd_pipeline_load_data:
 * @registry: the stage types
 * @data: the pipeline text
 * @length: the length of @data, or -1 when it is NUL-terminated
 * @filename: the file the text came from (error messages; relative paths resolve
 *   against its directory). Relative filenames are taken relative to the current
 *   directory.
 * @settings: (nullable) (array zero-terminated=1): "var=value" and "stage.key=value"
 *   settings, applied as described above
 * @problems: (out) (optional) (transfer full) (element-type GptdPipelineProblem):
 *   on failure, every problem found (syntax, then each stage in file order, then links,
 *   then cycles); %NULL on success
 * @error: return location for a #GError
 *
 * Parses and checks a pipeline. The text is kept (gptd_pipeline_get_text()) so that
 * a run directory can hold the pipeline as submitted.
 *
 * Returns: (transfer full): the pipeline, or %NULL with @error set. With one problem
 * the error has that problem's code and text; with several its code is
 * GPTD_PIPELINE_ERROR_INVALID and its message lists them all, one per line.
 */
GptdPipeline *gptd_pipeline_load_data (GptdRegistry *registry, const char *data,
                                       gssize length, const char *filename,
                                       const char *const *settings,
                                       GPtrArray **problems, GError **error);

/**
 * gptd_pipeline_load_data_with_env:
 * @registry: the stage types
 * @data: the pipeline text
 * @length: the length of @data, or -1 when it is NUL-terminated
 * @filename: as for gptd_pipeline_load_data()
 * @settings: (nullable): as for gptd_pipeline_load_data()
 * @environment: (nullable) (array zero-terminated=1): "NAME=value" strings that
 *   `${NAME}` falls back on (after settings and [pipeline] defaults); %NULL means
 *   the process's environment. The daemon passes the client's, so that a pipeline
 *   never reads the daemon's environment.
 * @problems: (out) (optional): as for gptd_pipeline_load_data()
 * @error: return location for a #GError
 *
 * gptd_pipeline_load_data() with the environment variables given.
 *
 * Returns: (transfer full): the pipeline, or %NULL with @error set
 */
GptdPipeline *gptd_pipeline_load_data_with_env (GptdRegistry *registry, const char *data,
                                                gssize length, const char *filename,
                                                const char *const *settings,
                                                const char *const *environment,
                                                GPtrArray **problems, GError **error);

/**
 * gptd_pipeline_load_file:
 * @registry: the stage types
 * @filename: the pipeline file
 * @settings: (nullable): as for gptd_pipeline_load_data()
 * @problems: (out) (optional): as for gptd_pipeline_load_data()
 * @error: return location for a #GError
 *
 * Reads @filename and loads it with gptd_pipeline_load_data().
 *
 * Returns: (transfer full): the pipeline, or %NULL with @error set.
 */
GptdPipeline *gptd_pipeline_load_file (GptdRegistry *registry, const char *filename,
                                       const char *const *settings,
                                       GPtrArray **problems, GError **error);

/**
 * gptd_settings_from_proto:
 * @settings: (array length=n_settings): settings of a RunRequest
 * @n_settings: their number
 *
 * Returns: (transfer full): the settings as a %NULL-terminated "key=value" vector,
 * for the load functions. Free with g_strfreev().
 */
char **gptd_settings_from_proto (Gptd__Setting *const *settings, gsize n_settings);

/**
 * gptd_pipeline_free:
 * @pipeline: (nullable): a pipeline
 */
void gptd_pipeline_free (GptdPipeline *pipeline);
G_DEFINE_AUTOPTR_CLEANUP_FUNC (GptdPipeline, gptd_pipeline_free)

/* The pipeline's name (`name=` of [pipeline]; the file's basename without its
 * extension when absent). */
const char *gptd_pipeline_get_name (const GptdPipeline *pipeline);
/* The processes a run of the pipeline trains on (`ranks=` of [pipeline], default 1):
 * more than one makes the run a data-parallel group started by mpirun, which a
 * build without MPI refuses when the pipeline loads. */
guint gptd_pipeline_get_ranks (const GptdPipeline *pipeline);
/* `hosts=` of [pipeline]: mpirun's --host list for those processes, or NULL for
 * this machine. */
const char *gptd_pipeline_get_hosts (const GptdPipeline *pipeline);
/* The filename given at load time. */
const char *gptd_pipeline_get_filename (const GptdPipeline *pipeline);
/* The text as submitted (before variables were expanded). */
const char *gptd_pipeline_get_text (const GptdPipeline *pipeline);
/* The registry the pipeline was loaded with. */
GptdRegistry *gptd_pipeline_get_registry (const GptdPipeline *pipeline);
/* The number of stages. */
guint gptd_pipeline_get_n_stages (const GptdPipeline *pipeline);
/* The name of stage @index (file order). */
const char *gptd_pipeline_get_stage_name (const GptdPipeline *pipeline, guint index);
/* The stage type of stage @index. */
const GptdStageType *gptd_pipeline_get_stage_type (const GptdPipeline *pipeline, guint index);
/* The validated parameters of stage @index. */
const GptdParams *gptd_pipeline_get_stage_params (const GptdPipeline *pipeline, guint index);
/* The index of the stage called @name, or -1. */
int gptd_pipeline_find_stage (const GptdPipeline *pipeline, const char *name);

/* ---- Parameters outside a pipeline -------------------------------------- */

/**
 * gptd_params_new:
 * @type: a stage type
 * @settings: (nullable) (array zero-terminated=1): "key=value" strings
 * @base_dir: (nullable): the directory relative PATH values resolve against
 *   (%NULL: the current directory)
 * @error: return location for a #GError (GPTD_PIPELINE_ERROR)
 *
 * Builds and validates the parameters of a stage outside a pipeline: for tests of a
 * single stage, and for tools. Unknown keys, missing required keys and bad values are
 * errors, as in a pipeline; check() is called.
 *
 * Returns: (transfer full): the parameters, or %NULL with @error set.
 */
GptdParams *gptd_params_new (const GptdStageType *type, const char *const *settings,
                             const char *base_dir, GError **error);

/* Frees parameters made by gptd_params_new() (NULL-safe). */
void gptd_params_free (GptdParams *params);
G_DEFINE_AUTOPTR_CLEANUP_FUNC (GptdParams, gptd_params_free)

/**
 * gptd_validate_result_new:
 * @problems: (nullable) (element-type GptdPipelineProblem): the problems a load found
 * @error: (nullable): the load's error; %NULL when the pipeline is valid
 *
 * The answer to a validate request: valid or not, each problem as text and field
 * by field. A failed load that listed no problem gives the error's message as its
 * one problem.
 *
 * Returns: (transfer full): the result; free with gptd_validate_result_free().
 */
Gptd__ValidateResult *gptd_validate_result_new (GPtrArray *problems, const GError *error);

/**
 * gptd_validate_result_free:
 * @result: (nullable): a result from gptd_validate_result_new()
 */
void gptd_validate_result_free (Gptd__ValidateResult *result);

G_END_DECLS

#endif /* GPTD_PIPELINE_H */
