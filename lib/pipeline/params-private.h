/* params-private.h: parsing and checking stage parameter values, shared by the
 * pipeline loader, the plugin loader (which checks declared defaults) and
 * gptd_params_new(). */
#ifndef GPTD_PARAMS_PRIVATE_H
#define GPTD_PARAMS_PRIVATE_H

#include <glib.h>
#include <gptd/stage.h>

G_BEGIN_DECLS

/* Checks @text against @spec. On failure returns FALSE with @error in
 * GPTD_PIPELINE_ERROR / BAD_VALUE whose message says what is wrong with the value
 * (without naming the key). */
gboolean gptd__param_check (const GptdParamSpec *spec, const char *text, GError **error);

/* The range of an INT, DOUBLE or DOUBLE_LIST spec as text ("[1, 100]", "(0, 1]"),
 * or NULL when the spec has no range. */
char *gptd__param_range_string (const GptdParamSpec *spec);

/* A new, empty parameter set for @type; relative PATH values resolve against
 * @base_dir (absolute). */
GptdParams *gptd__params_new (const GptdStageType *type, const char *base_dir);

/* Sets @name (a declared parameter) to @text, checking it. */
gboolean gptd__params_set (GptdParams *params, const char *name, const char *text,
                           GError **error);

/* Fills in defaults for the parameters not set. Call once, after the last set. */
void gptd__params_finish (GptdParams *params);

/* The spec of @name in @type, or NULL. */
const GptdParamSpec *gptd__stage_type_find_param (const GptdStageType *type,
                                                  const char *name);

/* The number of entries of a NULL-name terminated pad array (NULL: 0). */
guint gptd__pads_count (const GptdPadSpec *pads);

/* The index of the pad a link names: @name, or for NULL / "default" the pad named
 * "default", else the only pad. -1 when there is none. */
int gptd__pads_find (const GptdPadSpec *pads, const char *name);

G_END_DECLS

#endif /* GPTD_PARAMS_PRIVATE_H */
