/* params.c: stage parameters — parsing a value against its GptdParamSpec (type,
 * range, enum choices), the validated GptdParams set a stage instance receives, and
 * its getters (declared in stage.h). */
#include "config.h"

#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include <gptd/pipeline.h>
#include "pipeline/params-private.h"

typedef struct {
  const GptdParamSpec *spec;
  char *text;          /* the value as given (or the default); NULL when absent */
  char *path;          /* PATH: @text resolved against the base directory */
  gboolean is_set;     /* given explicitly, not defaulted */
  gint64 i;            /* INT; ENUM: index of the choice */
  double d;            /* DOUBLE (and INT as double) */
  gboolean b;          /* BOOL */
  double *list;        /* DOUBLE_LIST */
  gsize n_list;
} ParamValue;

struct _GptdParams {
  const GptdStageType *type;
  char *base_dir;
  GHashTable *values;  /* name -> ParamValue */
};

static void
param_value_free (gpointer data)
{
  ParamValue *v = data;
  g_free (v->text);
  g_free (v->path);
  g_free (v->list);
  g_free (v);
}

/* ---- Parsing ------------------------------------------------------------ */

static gboolean
parse_int (const char *text, gint64 *out)
{
  char *end = NULL;
  errno = 0;
  if (*text == '\0' || g_ascii_isspace (*text))
    return FALSE;
  gint64 v = g_ascii_strtoll (text, &end, 10);
  if (errno != 0 || end == text || *end != '\0')
    return FALSE;
  *out = v;
  return TRUE;
}

/* Whether @text is a decimal number as people write one: an optional sign,
 * digits with at most one point (at least one digit), and an optional exponent
 * (e or E, an optional sign, digits). strtod() also takes hexadecimal (0x10 is
 * 16), inf and nan, which no one means as a learning rate. */
static gboolean
is_decimal (const char *text)
{
  const char *p = text;
  if (*p == '+' || *p == '-')
    p++;
  gboolean digits = FALSE;
  while (g_ascii_isdigit (*p))
    p++, digits = TRUE;
  if (*p == '.')
    {
      p++;
      while (g_ascii_isdigit (*p))
        p++, digits = TRUE;
    }
  if (!digits)
    return FALSE;
  if (*p == 'e' || *p == 'E')
    {
      p++;
      if (*p == '+' || *p == '-')
        p++;
      if (!g_ascii_isdigit (*p))
        return FALSE;
      while (g_ascii_isdigit (*p))
        p++;
    }
  return *p == '\0';
}

static gboolean
parse_double (const char *text, double *out)
{
  char *end = NULL;
  errno = 0;
  if (!is_decimal (text))
    return FALSE;
  double v = g_ascii_strtod (text, &end);
  if (errno != 0 || end == text || *end != '\0' || !isfinite (v))
    return FALSE;
  *out = v;
  return TRUE;
}

static gboolean
parse_bool (const char *text, gboolean *out)
{
  static const char *const yes[] = { "true", "yes", "on", "1", NULL };
  static const char *const no[] = { "false", "no", "off", "0", NULL };
  for (guint i = 0; yes[i]; i++)
    if (g_ascii_strcasecmp (text, yes[i]) == 0)
      return (*out = TRUE, TRUE);
  for (guint i = 0; no[i]; i++)
    if (g_ascii_strcasecmp (text, no[i]) == 0)
      return (*out = FALSE, TRUE);
  return FALSE;
}

static gboolean
spec_has_range (const GptdParamSpec *spec)
{
  return spec->min < spec->max;
}

char *
gptd__param_range_string (const GptdParamSpec *spec)
{
  if (spec->type != GPTD_PARAM_INT && spec->type != GPTD_PARAM_DOUBLE &&
      spec->type != GPTD_PARAM_DOUBLE_LIST)
    return NULL;
  if (!spec_has_range (spec))
    return NULL;
  char lo[G_ASCII_DTOSTR_BUF_SIZE], hi[G_ASCII_DTOSTR_BUF_SIZE];
  if (spec->type == GPTD_PARAM_INT)
    {
      g_snprintf (lo, sizeof lo, "%.0f", spec->min);
      g_snprintf (hi, sizeof hi, "%.0f", spec->max);
    }
  else
    {
      g_ascii_formatd (lo, sizeof lo, "%g", spec->min);
      g_ascii_formatd (hi, sizeof hi, "%g", spec->max);
    }
  return g_strdup_printf ("%c%s, %s%c", (spec->flags & GPTD_PARAM_MIN_EXCLUSIVE) ? '(' : '[',
                          lo, hi, (spec->flags & GPTD_PARAM_MAX_EXCLUSIVE) ? ')' : ']');
}

static gboolean
check_range (const GptdParamSpec *spec, double v, const char *text, GError **error)
{
  if (!spec_has_range (spec))
    return TRUE;
  gboolean lo_ok = (spec->flags & GPTD_PARAM_MIN_EXCLUSIVE) ? v > spec->min : v >= spec->min;
  gboolean hi_ok = (spec->flags & GPTD_PARAM_MAX_EXCLUSIVE) ? v < spec->max : v <= spec->max;
  if (lo_ok && hi_ok)
    return TRUE;
  g_autofree char *range = gptd__param_range_string (spec);
  g_set_error (error, GPTD_PIPELINE_ERROR, GPTD_PIPELINE_ERROR_BAD_VALUE,
               "value %s is out of range %s", text, range);
  return FALSE;
}

/* Parses @text into @v (which may be NULL to only check). */
static gboolean
param_parse (const GptdParamSpec *spec, const char *text, ParamValue *v, GError **error)
{
  switch (spec->type)
    {
    case GPTD_PARAM_STRING:
    case GPTD_PARAM_PATH:
      return TRUE;
    case GPTD_PARAM_INT:
      {
        gint64 i;
        if (!parse_int (text, &i))
          {
            g_set_error (error, GPTD_PIPELINE_ERROR, GPTD_PIPELINE_ERROR_BAD_VALUE,
                         "'%s' is not an integer", text);
            return FALSE;
          }
        if (!check_range (spec, (double) i, text, error))
          return FALSE;
        if (v)
          v->i = i, v->d = (double) i;
        return TRUE;
      }
    case GPTD_PARAM_DOUBLE:
      {
        double d;
        if (!parse_double (text, &d))
          {
            g_set_error (error, GPTD_PIPELINE_ERROR, GPTD_PIPELINE_ERROR_BAD_VALUE,
                         "'%s' is not a number (write it in decimal: 0.0004, "
                         "4e-4)", text);
            return FALSE;
          }
        if (!check_range (spec, d, text, error))
          return FALSE;
        if (v)
          v->d = d;
        return TRUE;
      }
    case GPTD_PARAM_BOOL:
      {
        gboolean b;
        if (!parse_bool (text, &b))
          {
            g_set_error (error, GPTD_PIPELINE_ERROR, GPTD_PIPELINE_ERROR_BAD_VALUE,
                         "'%s' is not a boolean (use true or false)", text);
            return FALSE;
          }
        if (v)
          v->b = b;
        return TRUE;
      }
    case GPTD_PARAM_ENUM:
      {
        for (gint64 i = 0; spec->choices && spec->choices[i]; i++)
          if (strcmp (spec->choices[i], text) == 0)
            {
              if (v)
                v->i = i;
              return TRUE;
            }
        g_autofree char *choices = spec->choices
          ? g_strjoinv (", ", (char **) spec->choices) : g_strdup ("");
        g_set_error (error, GPTD_PIPELINE_ERROR, GPTD_PIPELINE_ERROR_BAD_VALUE,
                     "'%s' is not one of: %s", text, choices);
        return FALSE;
      }
    case GPTD_PARAM_DOUBLE_LIST:
      {
        g_auto (GStrv) parts = g_strsplit (text, ",", -1);
        guint n = g_strv_length (parts);
        if (n == 0)
          {
            g_set_error (error, GPTD_PIPELINE_ERROR, GPTD_PIPELINE_ERROR_BAD_VALUE,
                         "an empty list (expected comma-separated numbers)");
            return FALSE;
          }
        g_autofree double *list = g_new0 (double, n);
        for (guint k = 0; k < n; k++)
          {
            char *item = g_strstrip (parts[k]);
            if (!parse_double (item, &list[k]))
              {
                g_set_error (error, GPTD_PIPELINE_ERROR, GPTD_PIPELINE_ERROR_BAD_VALUE,
                             "'%s' is not a comma-separated list of numbers ('%s' is not a number)",
                             text, item);
                return FALSE;
              }
            if (!check_range (spec, list[k], item, error))
              return FALSE;
          }
        if (v)
          {
            g_free (v->list);
            v->list = g_steal_pointer (&list);
            v->n_list = n;
          }
        return TRUE;
      }
    }
  g_set_error (error, GPTD_PIPELINE_ERROR, GPTD_PIPELINE_ERROR_BAD_VALUE,
               "the parameter has an unknown type %d", (int) spec->type);
  return FALSE;
}

gboolean
gptd__param_check (const GptdParamSpec *spec, const char *text, GError **error)
{
  return param_parse (spec, text, NULL, error);
}

/* ---- Stage types and pads ----------------------------------------------- */

const GptdParamSpec *
gptd__stage_type_find_param (const GptdStageType *type, const char *name)
{
  for (const GptdParamSpec *p = type->params; p && p->name; p++)
    if (strcmp (p->name, name) == 0)
      return p;
  return NULL;
}

guint
gptd__pads_count (const GptdPadSpec *pads)
{
  guint n = 0;
  for (; pads && pads[n].name; n++)
    ;
  return n;
}

int
gptd__pads_find (const GptdPadSpec *pads, const char *name)
{
  guint n = gptd__pads_count (pads);
  if (name == NULL || strcmp (name, "default") == 0)
    {
      for (guint i = 0; i < n; i++)
        if (strcmp (pads[i].name, "default") == 0)
          return (int) i;
      return n == 1 ? 0 : -1;
    }
  for (guint i = 0; i < n; i++)
    if (strcmp (pads[i].name, name) == 0)
      return (int) i;
  return -1;
}

/* ---- GptdParams ---------------------------------------------------------- */

GptdParams *
gptd__params_new (const GptdStageType *type, const char *base_dir)
{
  GptdParams *params = g_new0 (GptdParams, 1);
  params->type = type;
  params->base_dir = base_dir ? g_strdup (base_dir) : g_get_current_dir ();
  params->values = g_hash_table_new_full (g_str_hash, g_str_equal, NULL, param_value_free);
  return params;
}

static gboolean
params_store (GptdParams *params, const GptdParamSpec *spec, const char *text,
              gboolean is_set, GError **error)
{
  ParamValue *v = g_new0 (ParamValue, 1);
  v->spec = spec;
  if (!param_parse (spec, text, v, error))
    {
      param_value_free (v);
      return FALSE;
    }
  v->text = g_strdup (text);
  v->is_set = is_set;
  if (spec->type == GPTD_PARAM_PATH)
    v->path = g_path_is_absolute (text) || *text == '\0'
      ? g_strdup (text)
      : g_canonicalize_filename (text, params->base_dir);
  if (spec->type == GPTD_PARAM_PATH && (spec->flags & GPTD_PARAM_EXISTS) && *text != '\0'
      && !g_file_test (v->path, G_FILE_TEST_EXISTS))
    {
      g_set_error (error, GPTD_PIPELINE_ERROR, GPTD_PIPELINE_ERROR_BAD_VALUE,
                   "%s: no such file or directory%s%s%s", text,
                   strcmp (text, v->path) != 0 ? " (looked for " : "",
                   strcmp (text, v->path) != 0 ? v->path : "",
                   strcmp (text, v->path) != 0 ? ")" : "");
      param_value_free (v);
      return FALSE;
    }
  g_hash_table_replace (params->values, (gpointer) spec->name, v);
  return TRUE;
}

gboolean
gptd__params_set (GptdParams *params, const char *name, const char *text, GError **error)
{
  const GptdParamSpec *spec = gptd__stage_type_find_param (params->type, name);
  if (spec == NULL)
    {
      g_set_error (error, GPTD_PIPELINE_ERROR, GPTD_PIPELINE_ERROR_NO_SUCH_KEY,
                   "stage type %s has no parameter '%s'", params->type->name, name);
      return FALSE;
    }
  return params_store (params, spec, text, TRUE, error);
}

void
gptd__params_finish (GptdParams *params)
{
  for (const GptdParamSpec *p = params->type->params; p && p->name; p++)
    if (p->default_value && !g_hash_table_contains (params->values, p->name))
      {
        g_autoptr (GError) error = NULL;
        if (!params_store (params, p, p->default_value, FALSE, &error))
          g_warning ("stage type %s: the default of '%s' is invalid: %s",
                     params->type->name, p->name, error->message);
      }
}

GptdParams *
gptd_params_new (const GptdStageType *type, const char *const *settings,
                 const char *base_dir, GError **error)
{
  g_return_val_if_fail (type != NULL, NULL);
  g_autoptr (GptdParams) params = gptd__params_new (type, base_dir);
  for (guint i = 0; settings && settings[i]; i++)
    {
      const char *eq = strchr (settings[i], '=');
      if (eq == NULL || eq == settings[i])
        {
          g_set_error (error, GPTD_PIPELINE_ERROR, GPTD_PIPELINE_ERROR_BAD_SETTING,
                       "'%s' is not key=value", settings[i]);
          return NULL;
        }
      g_autofree char *key = g_strndup (settings[i], eq - settings[i]);
      g_autoptr (GError) local = NULL;
      if (!gptd__params_set (params, key, eq + 1, &local))
        {
          g_set_error (error, GPTD_PIPELINE_ERROR, local->code, "key %s: %s", key,
                       local->message);
          return NULL;
        }
    }
  for (const GptdParamSpec *p = type->params; p && p->name; p++)
    if ((p->flags & GPTD_PARAM_REQUIRED) && !g_hash_table_contains (params->values, p->name))
      {
        g_set_error (error, GPTD_PIPELINE_ERROR, GPTD_PIPELINE_ERROR_MISSING_KEY,
                     "key %s: required by stage type %s but not given", p->name, type->name);
        return NULL;
      }
  gptd__params_finish (params);
  if (type->check && !type->check (params, error))
    {
      if (error && *error == NULL)
        g_set_error (error, GPTD_PIPELINE_ERROR, GPTD_PIPELINE_ERROR_CHECK,
                     "stage type %s rejected its parameters", type->name);
      return NULL;
    }
  return g_steal_pointer (&params);
}

void
gptd_params_free (GptdParams *params)
{
  if (params == NULL)
    return;
  g_hash_table_unref (params->values);
  g_free (params->base_dir);
  g_free (params);
}

/* ---- Getters (stage.h) ------------------------------------------------- */

static const ParamValue *
lookup (const GptdParams *params, const char *name, const char *getter)
{
  g_return_val_if_fail (params != NULL && name != NULL, NULL);
  const ParamValue *v = g_hash_table_lookup (params->values, name);
  if (v == NULL && gptd__stage_type_find_param (params->type, name) == NULL)
    g_critical ("%s: stage type %s declares no parameter '%s'", getter,
                params->type->name, name);
  return v;
}

gboolean
gptd_params_has (const GptdParams *params, const char *name)
{
  g_return_val_if_fail (params != NULL && name != NULL, FALSE);
  return g_hash_table_contains (params->values, name);
}

gboolean
gptd_params_is_set (const GptdParams *params, const char *name)
{
  g_return_val_if_fail (params != NULL && name != NULL, FALSE);
  const ParamValue *v = g_hash_table_lookup (params->values, name);
  return v != NULL && v->is_set;
}

const char *
gptd_params_get_string (const GptdParams *params, const char *name)
{
  const ParamValue *v = lookup (params, name, G_STRFUNC);
  if (v == NULL)
    return NULL;
  return v->path ? v->path : v->text;
}

gint64
gptd_params_get_int (const GptdParams *params, const char *name)
{
  const ParamValue *v = lookup (params, name, G_STRFUNC);
  if (v == NULL)
    return 0;
  if (v->spec->type == GPTD_PARAM_DOUBLE)
    return (gint64) v->d;
  if (v->spec->type == GPTD_PARAM_BOOL)
    return v->b;
  return v->i;
}

double
gptd_params_get_double (const GptdParams *params, const char *name)
{
  const ParamValue *v = lookup (params, name, G_STRFUNC);
  if (v == NULL)
    return 0.0;
  if (v->spec->type == GPTD_PARAM_INT || v->spec->type == GPTD_PARAM_ENUM)
    return (double) v->i;
  if (v->spec->type == GPTD_PARAM_DOUBLE_LIST)
    return v->n_list > 0 ? v->list[0] : 0.0;
  return v->d;
}

gboolean
gptd_params_get_bool (const GptdParams *params, const char *name)
{
  const ParamValue *v = lookup (params, name, G_STRFUNC);
  if (v == NULL)
    return FALSE;
  if (v->spec->type == GPTD_PARAM_INT)
    return v->i != 0;
  return v->b;
}

const double *
gptd_params_get_double_list (const GptdParams *params, const char *name, gsize *n_values)
{
  const ParamValue *v = lookup (params, name, G_STRFUNC);
  if (n_values)
    *n_values = v ? v->n_list : 0;
  return v ? v->list : NULL;
}

char *
gptd_params_resolve_path (const GptdParams *params, const char *path)
{
  g_return_val_if_fail (params != NULL && path != NULL, NULL);
  if (g_path_is_absolute (path) || *path == '\0')
    return g_strdup (path);
  return g_canonicalize_filename (path, params->base_dir);
}

char *
gptd_params_resolve_name_or_path (const GptdParams *params, const char *name)
{
  g_return_val_if_fail (params != NULL && name != NULL, NULL);
  const char *value = gptd_params_get_string (params, name);
  if (value == NULL)
    return NULL;
  g_autofree char *path = gptd_params_resolve_path (params, value);
  if (strchr (value, '/') != NULL || g_file_test (path, G_FILE_TEST_EXISTS))
    return g_steal_pointer (&path);
  return g_strdup (value);
}
