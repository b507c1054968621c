/* registry-format.c: stage types in the control protocol's form (PluginList,
 * StageTypeInfo) and as the text `gptd plugins [TYPE]` prints, in the manner of
 * gst-inspect. */
#include "config.h"

#include <string.h>

#include <gptd/registry.h>
#include "pipeline/params-private.h"

static const char *const param_type_names[] = {
  [GPTD_PARAM_STRING] = "string",
  [GPTD_PARAM_PATH] = "path",
  [GPTD_PARAM_INT] = "int",
  [GPTD_PARAM_DOUBLE] = "double",
  [GPTD_PARAM_BOOL] = "bool",
  [GPTD_PARAM_ENUM] = "enum",
  [GPTD_PARAM_DOUBLE_LIST] = "double-list",
};

const char *
gptd_param_type_to_string (GptdParamType type)
{
  if ((guint) type < G_N_ELEMENTS (param_type_names))
    return param_type_names[type];
  return "unknown";
}

/* protobuf-c frees strings with free(); GLib allocates with malloc. */
static char *
dup_or_empty (const char *s)
{
  return g_strdup (s ? s : "");
}

static Gptd__PadInfo **
pads_to_proto (const GptdPadSpec *pads, size_t *n_out)
{
  guint n = gptd__pads_count (pads);
  *n_out = n;
  if (n == 0)
    return NULL;
  Gptd__PadInfo **out = g_new0 (Gptd__PadInfo *, n);
  for (guint i = 0; i < n; i++)
    {
      Gptd__PadInfo *p = g_new0 (Gptd__PadInfo, 1);
      gptd__pad_info__init (p);
      p->name = dup_or_empty (pads[i].name);
      p->message_type = dup_or_empty (pads[i].message_type);
      p->epochs = (pads[i].flags & GPTD_PAD_EPOCHS) != 0;
      p->optional = (pads[i].flags & GPTD_PAD_OPTIONAL) != 0;
      out[i] = p;
    }
  return out;
}

static Gptd__StageTypeInfo *
describe (const GptdStageType *t, const GptdPluginDescriptor *d, const char *path)
{
  Gptd__StageTypeInfo *info = g_new0 (Gptd__StageTypeInfo, 1);
  gptd__stage_type_info__init (info);
  info->name = dup_or_empty (t->name);
  info->description = dup_or_empty (t->description);
  info->plugin = dup_or_empty (d ? d->name : NULL);
  info->plugin_path = dup_or_empty (path);
  info->plugin_version = dup_or_empty (d ? d->version : NULL);
  info->license = dup_or_empty (d ? d->license : NULL);

  guint n = 0;
  for (const GptdParamSpec *p = t->params; p && p->name; p++)
    n++;
  info->n_params = n;
  info->params = n ? g_new0 (Gptd__ParamInfo *, n) : NULL;
  for (guint i = 0; i < n; i++)
    {
      const GptdParamSpec *p = &t->params[i];
      Gptd__ParamInfo *pi = g_new0 (Gptd__ParamInfo, 1);
      gptd__param_info__init (pi);
      pi->name = dup_or_empty (p->name);
      pi->type = dup_or_empty (gptd_param_type_to_string (p->type));
      pi->default_value = dup_or_empty (p->default_value);
      if (p->type == GPTD_PARAM_ENUM && p->choices)
        {
          g_autofree char *choices = g_strjoinv (", ", (char **) p->choices);
          pi->range = g_strdup_printf ("one of: %s", choices);
        }
      else
        {
          char *range = gptd__param_range_string (p);
          pi->range = range ? range : g_strdup ("");
        }
      pi->help = dup_or_empty (p->help);
      pi->required = (p->flags & GPTD_PARAM_REQUIRED) != 0;
      if (p->type == GPTD_PARAM_ENUM && p->choices)
        {
          pi->n_choices = g_strv_length ((char **) p->choices);
          pi->choices = g_new0 (char *, pi->n_choices);
          for (size_t c = 0; c < pi->n_choices; c++)
            pi->choices[c] = g_strdup (p->choices[c]);
        }
      if ((p->type == GPTD_PARAM_INT || p->type == GPTD_PARAM_DOUBLE ||
           p->type == GPTD_PARAM_DOUBLE_LIST) && p->min < p->max)
        {
          pi->bounded = TRUE;
          pi->min = p->min;
          pi->max = p->max;
          pi->min_exclusive = (p->flags & GPTD_PARAM_MIN_EXCLUSIVE) != 0;
          pi->max_exclusive = (p->flags & GPTD_PARAM_MAX_EXCLUSIVE) != 0;
        }
      pi->must_exist = (p->flags & GPTD_PARAM_EXISTS) != 0;
      info->params[i] = pi;
    }
  info->inputs = pads_to_proto (t->inputs, &info->n_inputs);
  info->outputs = pads_to_proto (t->outputs, &info->n_outputs);
  return info;
}

Gptd__StageTypeInfo *
gptd_registry_describe (GptdRegistry *registry, const char *type_name, GError **error)
{
  g_return_val_if_fail (registry != NULL && type_name != NULL, NULL);
  const char *path = NULL;
  const GptdPluginDescriptor *d = gptd_registry_lookup_plugin (registry, type_name, &path);
  const GptdStageType *t = gptd_registry_lookup (registry, type_name);
  if (t == NULL)
    {
      const char *near = gptd_registry_suggest (registry, type_name);
      if (near)
        g_set_error (error, GPTD_REGISTRY_ERROR, GPTD_REGISTRY_ERROR_NOT_FOUND,
                     "no stage type is called '%s' (did you mean '%s'?)", type_name, near);
      else
        g_set_error (error, GPTD_REGISTRY_ERROR, GPTD_REGISTRY_ERROR_NOT_FOUND,
                     "no stage type is called '%s' (`gptd plugins` lists them)", type_name);
      return NULL;
    }
  return describe (t, d, path);
}

Gptd__PluginList *
gptd_registry_to_plugin_list (GptdRegistry *registry, const char *type_name, GError **error)
{
  g_return_val_if_fail (registry != NULL, NULL);
  g_autoptr (GPtrArray) infos = g_ptr_array_new ();
  if (type_name && *type_name)
    {
      Gptd__StageTypeInfo *info = gptd_registry_describe (registry, type_name, error);
      if (info == NULL)
        return NULL;
      g_ptr_array_add (infos, info);
    }
  else
    {
      g_autoptr (GPtrArray) types = gptd_registry_list (registry);
      for (guint i = 0; i < types->len; i++)
        {
          const GptdStageType *t = types->pdata[i];
          const char *path = NULL;
          const GptdPluginDescriptor *d = gptd_registry_lookup_plugin (registry, t->name, &path);
          g_ptr_array_add (infos, describe (t, d, path));
        }
    }
  Gptd__PluginList *list = g_new0 (Gptd__PluginList, 1);
  gptd__plugin_list__init (list);
  gsize n_infos = 0;
  list->stage_types = (Gptd__StageTypeInfo **) g_ptr_array_steal (infos, &n_infos);
  list->n_stage_types = n_infos;
  GPtrArray *warnings = gptd_registry_get_warnings (registry);
  list->n_warnings = warnings->len;
  list->warnings = warnings->len ? g_new0 (char *, warnings->len) : NULL;
  for (guint i = 0; i < warnings->len; i++)
    list->warnings[i] = g_strdup (warnings->pdata[i]);
  return list;
}

void
gptd_stage_type_info_free (Gptd__StageTypeInfo *info)
{
  if (info)
    protobuf_c_message_free_unpacked (&info->base, NULL);
}

void
gptd_plugin_list_free (Gptd__PluginList *list)
{
  if (list)
    protobuf_c_message_free_unpacked (&list->base, NULL);
}

/* ---- Text -------------------------------------------------------------- */

char *
gptd_plugin_list_format (const Gptd__PluginList *list)
{
  g_return_val_if_fail (list != NULL, NULL);
  GString *s = g_string_new (NULL);
  int plugin_w = 0, name_w = 0;
  for (size_t i = 0; i < list->n_stage_types; i++)
    {
      plugin_w = MAX (plugin_w, (int) strlen (list->stage_types[i]->plugin) + 1);
      name_w = MAX (name_w, (int) strlen (list->stage_types[i]->name) + 1);
    }
  for (size_t i = 0; i < list->n_stage_types; i++)
    {
      const Gptd__StageTypeInfo *t = list->stage_types[i];
      g_autofree char *plugin = g_strconcat (t->plugin, ":", NULL);
      g_autofree char *name = g_strconcat (t->name, ":", NULL);
      g_string_append_printf (s, "%-*s %-*s %s\n", plugin_w, plugin, name_w, name,
                              t->description);
    }
  if (list->n_warnings)
    {
      g_string_append (s, "\nPlugins skipped:\n");
      for (size_t i = 0; i < list->n_warnings; i++)
        g_string_append_printf (s, "  %s\n", list->warnings[i]);
    }
  g_string_append_printf (s, "\nTotal: %zu stage type%s\n", list->n_stage_types,
                          list->n_stage_types == 1 ? "" : "s");
  return g_string_free (s, FALSE);
}

static void
format_pads (GString *s, const char *title, Gptd__PadInfo *const *pads, size_t n)
{
  g_string_append_printf (s, "\n%s:\n", title);
  if (n == 0)
    {
      g_string_append (s, "  none\n");
      return;
    }
  int w = 0;
  for (size_t i = 0; i < n; i++)
    w = MAX (w, (int) strlen (pads[i]->name));
  for (size_t i = 0; i < n; i++)
    g_string_append_printf (s, "  %-*s  %s%s\n", w, pads[i]->name,
                            strcmp (pads[i]->message_type, "*") == 0
                              ? "any message type" : pads[i]->message_type,
                            pads[i]->epochs ? "  (requests epochs)" : "");
}

char *
gptd_stage_type_info_format (const Gptd__StageTypeInfo *info)
{
  g_return_val_if_fail (info != NULL, NULL);
  GString *s = g_string_new (NULL);
  g_string_append_printf (s, "Stage type: %s\n  %s\n", info->name, info->description);
  g_string_append_printf (s, "\nPlugin:\n  name     %s\n  file     %s\n  version  %s\n"
                          "  license  %s\n", info->plugin, info->plugin_path,
                          info->plugin_version, info->license);
  format_pads (s, "Inputs", info->inputs, info->n_inputs);
  format_pads (s, "Outputs", info->outputs, info->n_outputs);

  g_string_append (s, "\nParameters:\n");
  if (info->n_params == 0)
    g_string_append (s, "  none\n");
  int w = 0;
  for (size_t i = 0; i < info->n_params; i++)
    w = MAX (w, (int) strlen (info->params[i]->name));
  for (size_t i = 0; i < info->n_params; i++)
    {
      const Gptd__ParamInfo *p = info->params[i];
      g_string_append_printf (s, "  %-*s  %-11s", w, p->name, p->type);
      const char *sep = "";
      if (p->required)
        g_string_append (s, "required"), sep = ", ";
      if (*p->default_value)
        g_string_append_printf (s, "%sdefault %s", sep, p->default_value), sep = ", ";
      else if (!p->required)
        g_string_append_printf (s, "%sno default", sep), sep = ", ";
      if (*p->range)
        g_string_append_printf (s, "%s%s%s", sep,
                                g_str_has_prefix (p->range, "one of") ? "" : "range ",
                                p->range);
      g_string_append_c (s, '\n');
      if (*p->help)
        g_string_append_printf (s, "  %-*s  %s\n", w, "", p->help);
    }
  return g_string_free (s, FALSE);
}
