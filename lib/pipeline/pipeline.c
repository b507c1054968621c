/* pipeline.c: the pipeline file loader — parses the key-file text (keeping line
 * numbers), expands ${variables}, applies settings, and checks the whole graph
 * against the registry's stage types, collecting every problem before it gives up. */
#include "config.h"

#include <stdarg.h>
#include <string.h>

#include <gptd/dist.h>
#include <gptd/pipeline.h>
#include "pipeline/params-private.h"
#include "pipeline/pipeline-private.h"

G_DEFINE_QUARK (gptd-pipeline-error-quark, gptd_pipeline_error)

/* Variables may nest this deep (a variable whose value uses another, ...); a
 * legal file comes nowhere near it, and it bounds the expansion's recursion. */
#define MAX_VAR_DEPTH 256
/* The largest expanded value, and the most bytes all expansions of a file may
 * produce together, so that variables using each other several times cannot
 * grow a small file into gigabytes. */
#define MAX_VALUE_SIZE ((gsize) 1 << 20)
#define MAX_EXPANDED_TOTAL ((gsize) 8 << 20)
/* The longest pipeline name: with the timestamp and a counter added, a run
 * directory's name stays under the 255 bytes a file name may have. */
#define GPTD_PIPELINE_NAME_MAX 200

typedef struct {
  char *key;
  char *value;         /* raw (escapes processed, variables not yet expanded) */
  guint line;          /* 0 for a setting */
  gboolean from_setting;
  gboolean bad;        /* its variables could not be expanded (reported already) */
} Entry;

typedef struct {
  char *name;          /* stage name; NULL for [pipeline] */
  guint line;
  GPtrArray *entries;  /* Entry* */
} Group;

typedef struct {
  GptdRegistry *registry;
  const char *filename;
  char *base_dir;
  GPtrArray *problems;     /* GptdPipelineProblem* */
  Group *pipeline_group;
  GPtrArray *stage_groups; /* Group* in file order */
  GHashTable *set_vars;    /* var -> value from settings */
  const char *const *environment;  /* "NAME=value" for ${NAME}; NULL: the process's */
  GHashTable *vars;        /* var -> Var*: each variable is expanded once */
  GPtrArray *var_stack;    /* Var* being expanded (grey), outermost first */
  gsize expanded_total;    /* bytes produced by all expansions so far */
  gboolean total_reported; /* the total limit was reported */
} Loader;

static void
entry_free (gpointer data)
{
  Entry *e = data;
  g_free (e->key);
  g_free (e->value);
  g_free (e);
}

static void
group_free (gpointer data)
{
  Group *g = data;
  if (g == NULL)
    return;
  g_free (g->name);
  g_ptr_array_unref (g->entries);
  g_free (g);
}

static Group *
group_new (const char *name, guint line)
{
  Group *g = g_new0 (Group, 1);
  g->name = g_strdup (name);
  g->line = line;
  g->entries = g_ptr_array_new_with_free_func (entry_free);
  return g;
}

static Entry *
group_find (Group *g, const char *key)
{
  for (guint i = 0; i < g->entries->len; i++)
    {
      Entry *e = g->entries->pdata[i];
      if (strcmp (e->key, key) == 0)
        return e;
    }
  return NULL;
}

void
gptd_pipeline_problem_free (GptdPipelineProblem *problem)
{
  if (problem == NULL)
    return;
  g_free (problem->file);
  g_free (problem->stage);
  g_free (problem->key);
  g_free (problem->message);
  g_free (problem->text);
  g_free (problem);
}

static void add_problem (Loader *L, GptdPipelineError code, guint line, const char *stage,
                         const char *key, gboolean from_setting, const char *format, ...)
  G_GNUC_PRINTF (7, 8);

static void
add_problem (Loader *L, GptdPipelineError code, guint line, const char *stage,
             const char *key, gboolean from_setting, const char *format, ...)
{
  GptdPipelineProblem *p = g_new0 (GptdPipelineProblem, 1);
  va_list ap;
  va_start (ap, format);
  p->message = g_strdup_vprintf (format, ap);
  va_end (ap);
  p->code = code;
  p->file = g_strdup (L->filename);
  p->line = line;
  p->stage = g_strdup (stage);
  p->key = g_strdup (key);
  GString *s = g_string_new (L->filename);
  if (line)
    g_string_append_printf (s, ":%u", line);
  g_string_append (s, ": ");
  if (stage)
    g_string_append_printf (s, "stage %s: ", stage);
  if (key)
    g_string_append_printf (s, "key %s: ", key);
  g_string_append (s, p->message);
  if (from_setting)
    g_string_append (s, " (from a --set setting)");
  p->text = g_string_free (s, FALSE);
  g_ptr_array_add (L->problems, p);
}

/* ---- Parsing the key file ---------------------------------------------- */

static gboolean
valid_stage_name (const char *name)
{
  if (*name == '\0')
    return FALSE;
  for (const char *c = name; *c; c++)
    if (!g_ascii_isalnum (*c) && *c != '-' && *c != '_')
      return FALSE;
  return TRUE;
}

static gboolean
valid_key (const char *key)
{
  if (*key == '\0')
    return FALSE;
  for (const char *c = key; *c; c++)
    if (!g_ascii_isalnum (*c) && *c != '-' && *c != '_' && *c != '.')
      return FALSE;
  return TRUE;
}

/* Key-file escapes: \s \n \t \r \\, and \# for a '#' that does not start a
 * comment; any other backslash stays as it is. */
static char *
unescape (const char *s)
{
  GString *out = g_string_new (NULL);
  for (; *s; s++)
    {
      if (*s == '\\' && s[1])
        {
          char c = s[1];
          const char *rep = c == 's' ? " " : c == 'n' ? "\n" : c == 't' ? "\t"
                          : c == 'r' ? "\r" : c == '\\' ? "\\" : c == '#' ? "#" : NULL;
          if (rep)
            {
              g_string_append (out, rep);
              s++;
              continue;
            }
        }
      g_string_append_c (out, *s);
    }
  return g_string_free (out, FALSE);
}

/* Cuts an inline comment off a raw value: a '#' after white space starts one
 * (`key=value  # comment`); `\#` is a '#' that does not. Trailing white space
 * before the comment goes too. */
static void
strip_inline_comment (char *value)
{
  for (char *c = value; *c; c++)
    {
      if (*c == '\\' && c[1])
        {
          c++;
          continue;
        }
      if (*c == '#' && c > value && (c[-1] == ' ' || c[-1] == '\t'))
        {
          *c = '\0';
          g_strchomp (value);
          return;
        }
    }
}

static Group *
find_stage_group (Loader *L, const char *name)
{
  for (guint i = 0; i < L->stage_groups->len; i++)
    {
      Group *g = L->stage_groups->pdata[i];
      if (strcmp (g->name, name) == 0)
        return g;
    }
  return NULL;
}

static void
parse_text (Loader *L, const char *text)
{
  g_auto (GStrv) lines = g_strsplit (text, "\n", -1);
  Group *current = NULL;
  gboolean skipping = FALSE;   /* inside a bad group: its keys are not checked */
  for (guint i = 0; lines[i]; i++)
    {
      guint lineno = i + 1;
      char *line = g_strstrip (lines[i]);   /* also drops a trailing \r */
      if (*line == '\0' || *line == '#')
        continue;
      if (*line == '[')
        {
          char *end = strchr (line, ']');
          skipping = TRUE;
          current = NULL;
          if (end == NULL || end[1] != '\0')
            {
              add_problem (L, GPTD_PIPELINE_ERROR_SYNTAX, lineno, NULL, NULL, FALSE,
                           "a group header must be a whole line: [pipeline] or [stage NAME]");
              continue;
            }
          g_autofree char *inner = g_strndup (line + 1, end - line - 1);
          g_strstrip (inner);
          if (strcmp (inner, "pipeline") == 0)
            {
              if (L->pipeline_group)
                {
                  add_problem (L, GPTD_PIPELINE_ERROR_SYNTAX, lineno, NULL, NULL, FALSE,
                               "[pipeline] appears twice (first on line %u)",
                               L->pipeline_group->line);
                  continue;
                }
              current = L->pipeline_group = group_new (NULL, lineno);
              skipping = FALSE;
              continue;
            }
          if (g_str_has_prefix (inner, "stage") && g_ascii_isspace (inner[5]))
            {
              const char *name = inner + 5;
              while (g_ascii_isspace (*name))
                name++;
              if (!valid_stage_name (name))
                {
                  add_problem (L, GPTD_PIPELINE_ERROR_BAD_GROUP, lineno, NULL, NULL, FALSE,
                               "'%s' is not a valid stage name (use letters, digits, '-' "
                               "and '_')", name);
                  continue;
                }
              Group *old = find_stage_group (L, name);
              if (old)
                {
                  add_problem (L, GPTD_PIPELINE_ERROR_SYNTAX, lineno, name, NULL, FALSE,
                               "[stage %s] appears twice (first on line %u)", name,
                               old->line);
                  continue;
                }
              current = group_new (name, lineno);
              g_ptr_array_add (L->stage_groups, current);
              skipping = FALSE;
              continue;
            }
          add_problem (L, GPTD_PIPELINE_ERROR_BAD_GROUP, lineno, NULL, NULL, FALSE,
                       "unknown group [%s]: groups are [pipeline] and [stage NAME]", inner);
          continue;
        }
      char *eq = strchr (line, '=');
      if (eq == NULL)
        {
          add_problem (L, GPTD_PIPELINE_ERROR_SYNTAX, lineno, current ? current->name : NULL,
                       NULL, FALSE, "expected key=value, a [group] or a # comment");
          continue;
        }
      g_autofree char *key = g_strndup (line, eq - line);
      g_strstrip (key);
      if (!valid_key (key))
        {
          add_problem (L, GPTD_PIPELINE_ERROR_SYNTAX, lineno, current ? current->name : NULL,
                       NULL, FALSE, "'%s' is not a valid key (use letters, digits, '-', "
                       "'_' and '.')", key);
          continue;
        }
      if (current == NULL)
        {
          if (!skipping)
            add_problem (L, GPTD_PIPELINE_ERROR_SYNTAX, lineno, NULL, key, FALSE,
                         "a key before the first group");
          continue;
        }
      Entry *old = group_find (current, key);
      if (old)
        {
          add_problem (L, GPTD_PIPELINE_ERROR_SYNTAX, lineno, current->name, key, FALSE,
                       "given twice in the group (first on line %u)", old->line);
          continue;
        }
      Entry *e = g_new0 (Entry, 1);
      e->key = g_steal_pointer (&key);
      char *raw = g_strchug (eq + 1);
      strip_inline_comment (raw);
      e->value = unescape (raw);
      e->line = lineno;
      g_ptr_array_add (current->entries, e);
    }
}

/* ---- Variables --------------------------------------------------------- */

typedef struct {
  guint line;
  const char *stage;
  const char *key;
  gboolean from_setting;
} Where;

/* A variable's expansion state: white (not yet looked at; not in the table),
 * grey (being expanded: on the stack), black (done, value kept). */
typedef enum {
  VAR_GREY = 1,
  VAR_BLACK,
} VarColor;

typedef struct {
  char *name;
  VarColor color;
  char *value;         /* expanded; NULL when the variable is not defined */
  gboolean ok;         /* FALSE: its expansion failed (the problem was reported) */
  gboolean in_loop;    /* part of a loop that was reported */
} Var;

static void
var_free (gpointer data)
{
  Var *v = data;
  g_free (v->name);
  g_free (v->value);
  g_free (v);
}

static char *expand (Loader *L, const char *value, const Where *w, Var *self, gboolean *ok);

/* Reports a loop of variables once, naming them as they use each other:
 * "${x} -> ${y} -> ${x}". @v is grey, so it is on the stack. */
static void
report_var_loop (Loader *L, Var *v, const Where *w)
{
  if (v->in_loop)
    return;
  guint start = 0;
  while (start < L->var_stack->len && L->var_stack->pdata[start] != v)
    start++;
  g_autoptr (GString) names = g_string_new (NULL);
  for (guint i = start; i < L->var_stack->len; i++)
    {
      Var *in = L->var_stack->pdata[i];
      in->in_loop = TRUE;
      g_string_append_printf (names, "${%s} -> ", in->name);
    }
  g_string_append_printf (names, "${%s}", v->name);
  add_problem (L, GPTD_PIPELINE_ERROR_UNDEFINED_VARIABLE, w->line, w->stage, w->key,
               w->from_setting, "variables refer to each other in a loop: %s", names->str);
}

/* Returns the expanded variable @name, expanding it the first time only. A
 * variable that is not defined has a NULL value; one whose expansion failed (a
 * loop, an undefined variable inside, too large) has ok FALSE, and its problem
 * was reported where it was first used. */
static Var *
lookup_var (Loader *L, const char *name, const Where *w)
{
  Var *v = g_hash_table_lookup (L->vars, name);
  if (v != NULL && v->color == VAR_BLACK)
    return v;
  if (v != NULL)
    {
      /* Grey: the variable uses itself, through the ones above it on the stack.
       * Every variable of the loop fails as the expansion unwinds, so the loop
       * is reported here only. */
      report_var_loop (L, v, w);
      return v;
    }

  v = g_new0 (Var, 1);
  v->name = g_strdup (name);
  v->ok = TRUE;
  g_hash_table_insert (L->vars, v->name, v);

  const char *raw = g_hash_table_lookup (L->set_vars, name);
  Entry *e = NULL;
  if (raw == NULL && L->pipeline_group != NULL && (e = group_find (L->pipeline_group, name)))
    raw = e->value;
  if (raw == NULL)
    {
      const char *env = L->environment
                          ? g_environ_getenv ((char **) L->environment, name)
                          : g_getenv (name);
      v->value = g_strdup (env);
      v->color = VAR_BLACK;
      return v;
    }
  if (L->var_stack->len >= MAX_VAR_DEPTH)
    {
      add_problem (L, GPTD_PIPELINE_ERROR_UNDEFINED_VARIABLE, w->line, w->stage, w->key,
                   w->from_setting, "variables nest more than %d levels deep (at ${%s})",
                   MAX_VAR_DEPTH, name);
      v->ok = FALSE;
      v->color = VAR_BLACK;
      return v;
    }
  v->color = VAR_GREY;
  g_ptr_array_add (L->var_stack, v);
  gboolean ok = TRUE;
  char *value = expand (L, raw, w, v, &ok);
  g_ptr_array_remove_index (L->var_stack, L->var_stack->len - 1);
  v->value = value;
  v->ok = ok;
  v->color = VAR_BLACK;
  return v;
}

/* Expands the ${variables} of @value (the value of variable @self, or of a key
 * when @self is NULL); problems are reported at @w. */
static char *
expand (Loader *L, const char *value, const Where *w, Var *self, gboolean *ok)
{
  GString *out = g_string_new (NULL);
  for (const char *p = value; *p; p++)
    {
      if (*p != '$')
        {
          /* Copy the plain run up to the next '$' at once. */
          const char *dollar = strchr (p, '$');
          gsize n = dollar ? (gsize) (dollar - p) : strlen (p);
          g_string_append_len (out, p, (gssize) n);
          p += n - 1;
          continue;
        }
      if (p[1] == '$')
        {
          g_string_append_c (out, '$');
          p++;
          continue;
        }
      if (p[1] != '{')
        {
          g_string_append_c (out, '$');
          continue;
        }
      const char *close = strchr (p + 2, '}');
      if (close == NULL)
        {
          add_problem (L, GPTD_PIPELINE_ERROR_SYNTAX, w->line, w->stage, w->key,
                       w->from_setting, "'${' without a closing '}' (write $$ for a "
                       "literal $)");
          *ok = FALSE;
          break;
        }
      g_autofree char *name = g_strndup (p + 2, close - p - 2);
      gboolean good_name = *name != '\0';
      for (const char *c = name; *c; c++)
        if (!g_ascii_isalnum (*c) && *c != '_' && *c != '-')
          good_name = FALSE;
      if (!good_name)
        {
          add_problem (L, GPTD_PIPELINE_ERROR_SYNTAX, w->line, w->stage, w->key,
                       w->from_setting, "'${%s}' is not a valid variable name", name);
          *ok = FALSE;
          p = close;
          continue;
        }
      Var *v = lookup_var (L, name, w);
      p = close;
      if (v->color != VAR_BLACK || !v->ok)
        {
          *ok = FALSE;   /* reported already */
          continue;
        }
      if (v->value == NULL)
        {
          add_problem (L, GPTD_PIPELINE_ERROR_UNDEFINED_VARIABLE, w->line, w->stage, w->key,
                       w->from_setting, "undefined variable ${%s}: give it with --set %s=VALUE, "
                       "in [pipeline] or in the environment", name, name);
          *ok = FALSE;
          continue;
        }
      gsize n = strlen (v->value);
      if (out->len + n > MAX_VALUE_SIZE)
        {
          if (self != NULL)
            add_problem (L, GPTD_PIPELINE_ERROR_BAD_VALUE, w->line, w->stage, w->key,
                         w->from_setting, "the value of ${%s} grows past 1 MiB when its "
                         "variables are expanded", self->name);
          else
            add_problem (L, GPTD_PIPELINE_ERROR_BAD_VALUE, w->line, w->stage, w->key,
                         w->from_setting, "the value grows past 1 MiB when its variables "
                         "are expanded");
          *ok = FALSE;
          break;
        }
      if (L->expanded_total + out->len + n > MAX_EXPANDED_TOTAL)
        {
          if (!L->total_reported)
            add_problem (L, GPTD_PIPELINE_ERROR_BAD_VALUE, w->line, w->stage, w->key,
                         w->from_setting, "expanding the variables of the pipeline produces "
                         "more than %d MiB in total", (int) (MAX_EXPANDED_TOTAL >> 20));
          L->total_reported = TRUE;
          *ok = FALSE;
          break;
        }
      g_string_append_len (out, v->value, (gssize) n);
    }
  L->expanded_total += out->len;
  return g_string_free (out, FALSE);
}

/* ---- Settings ----------------------------------------------------------- */

static const char *closest (const char *word, GPtrArray *candidates);

static void
apply_settings (Loader *L, const char *const *settings)
{
  for (guint i = 0; settings && settings[i]; i++)
    {
      const char *s = settings[i];
      const char *eq = strchr (s, '=');
      if (eq == NULL || eq == s)
        {
          add_problem (L, GPTD_PIPELINE_ERROR_BAD_SETTING, 0, NULL, NULL, FALSE,
                       "setting '%s' is not KEY=VALUE", s);
          continue;
        }
      g_autofree char *key = g_strndup (s, eq - s);
      g_strstrip (key);
      const char *dot = strchr (key, '.');
      if (dot == NULL)
        {
          g_hash_table_replace (L->set_vars, g_strdup (key), g_strdup (eq + 1));
          continue;
        }
      g_autofree char *stage = g_strndup (key, dot - key);
      const char *stage_key = dot + 1;
      Group *g = find_stage_group (L, stage);
      if (g == NULL || !valid_key (stage_key))
        {
          if (g == NULL)
            {
              g_autoptr (GPtrArray) names = g_ptr_array_new ();
              for (guint k = 0; k < L->stage_groups->len; k++)
                g_ptr_array_add (names, ((Group *) L->stage_groups->pdata[k])->name);
              const char *near = closest (stage, names);
              if (near != NULL)
                add_problem (L, GPTD_PIPELINE_ERROR_NO_SUCH_STAGE, 0, stage, stage_key, TRUE,
                             "the pipeline has no stage called '%s' (did you mean '%s'?)",
                             stage, near);
              else
                add_problem (L, GPTD_PIPELINE_ERROR_NO_SUCH_STAGE, 0, stage, stage_key, TRUE,
                             "the pipeline has no stage called '%s'", stage);
            }
          else
            add_problem (L, GPTD_PIPELINE_ERROR_BAD_SETTING, 0, stage, stage_key, TRUE,
                         "'%s' is not a valid key", stage_key);
          continue;
        }
      Entry *e = group_find (g, stage_key);
      if (e == NULL)
        {
          e = g_new0 (Entry, 1);
          e->key = g_strdup (stage_key);
          g_ptr_array_add (g->entries, e);
        }
      g_free (e->value);
      e->value = g_strdup (eq + 1);
      e->line = 0;
      e->from_setting = TRUE;
    }
}

/* ---- Checking stages ----------------------------------------------------- */

static char *
pad_names (const GptdPadSpec *pads)
{
  GString *s = g_string_new (NULL);
  for (guint i = 0; pads && pads[i].name; i++)
    g_string_append_printf (s, "%s%s", i ? ", " : "", pads[i].name);
  return g_string_free (s, FALSE);
}

static const char *
closest (const char *word, GPtrArray *candidates)
{
  const char *best = NULL;
  guint best_d = G_MAXUINT;
  for (guint i = 0; i < candidates->len; i++)
    {
      guint d = gptd_levenshtein (word, candidates->pdata[i]);
      if (d < best_d)
        best_d = d, best = candidates->pdata[i];
    }
  return best_d <= MAX (2u, (guint) strlen (word) / 3) ? best : NULL;
}

static void
check_stage (Loader *L, Group *g, GptdPipelineStage *st)
{
  guint before = L->problems->len;
  /* Expand every value first. */
  for (guint i = 0; i < g->entries->len; i++)
    {
      Entry *e = g->entries->pdata[i];
      Where w = { e->line ? e->line : 0, g->name, e->key, e->from_setting };
      gboolean ok = TRUE;
      char *v = expand (L, e->value, &w, NULL, &ok);
      g_free (e->value);
      e->value = v;
      e->bad = !ok;
    }

  Entry *type_entry = group_find (g, "type");
  if (type_entry == NULL)
    add_problem (L, GPTD_PIPELINE_ERROR_MISSING_KEY, g->line, g->name, "type", FALSE,
                 "every stage needs type= (`gptd plugins` lists the stage types)");
  else if (type_entry->bad)
    return;
  else if (*type_entry->value)
    {
      st->type = gptd_registry_lookup (L->registry, type_entry->value);
      if (st->type == NULL)
        {
          const char *near = gptd_registry_suggest (L->registry, type_entry->value);
          if (near)
            add_problem (L, GPTD_PIPELINE_ERROR_NO_SUCH_STAGE_TYPE, type_entry->line, g->name,
                         "type", type_entry->from_setting,
                         "unknown stage type '%s' (did you mean '%s'?)", type_entry->value,
                         near);
          else
            add_problem (L, GPTD_PIPELINE_ERROR_NO_SUCH_STAGE_TYPE, type_entry->line, g->name,
                         "type", type_entry->from_setting,
                         "unknown stage type '%s' (`gptd plugins` lists the stage types)",
                         type_entry->value);
        }
    }
  else
    add_problem (L, GPTD_PIPELINE_ERROR_NO_SUCH_STAGE_TYPE, type_entry->line, g->name, "type",
                 type_entry->from_setting, "type= is empty");

  if (st->type == NULL)
    return;   /* keys cannot be checked without the type */

  const GptdStageType *t = st->type;
  st->n_inputs = gptd__pads_count (t->inputs);
  st->n_outputs = gptd__pads_count (t->outputs);
  st->input_stage = g_new (int, MAX (st->n_inputs, 1));
  st->input_output = g_new0 (guint, MAX (st->n_inputs, 1));
  for (guint i = 0; i < st->n_inputs; i++)
    st->input_stage[i] = -1;
  st->params = gptd__params_new (t, L->base_dir);

  g_autoptr (GPtrArray) known = g_ptr_array_new_with_free_func (g_free);
  g_ptr_array_add (known, g_strdup ("type"));
  if (st->n_inputs)
    g_ptr_array_add (known, g_strdup ("input"));
  for (guint i = 0; i < st->n_inputs; i++)
    g_ptr_array_add (known, g_strconcat ("input.", t->inputs[i].name, NULL));
  for (const GptdParamSpec *p = t->params; p && p->name; p++)
    g_ptr_array_add (known, g_strdup (p->name));

  for (guint i = 0; i < g->entries->len; i++)
    {
      Entry *e = g->entries->pdata[i];
      if (strcmp (e->key, "type") == 0)
        continue;
      if (strcmp (e->key, "input") == 0 || g_str_has_prefix (e->key, "input."))
        continue;   /* checked with the links */
      const GptdParamSpec *spec = gptd__stage_type_find_param (t, e->key);
      if (spec == NULL)
        {
          const char *near = closest (e->key, known);
          if (near)
            add_problem (L, GPTD_PIPELINE_ERROR_NO_SUCH_KEY, e->line, g->name, e->key,
                         e->from_setting, "stage type %s has no key '%s' (did you mean '%s'?)",
                         t->name, e->key, near);
          else
            add_problem (L, GPTD_PIPELINE_ERROR_NO_SUCH_KEY, e->line, g->name, e->key,
                         e->from_setting, "stage type %s has no key '%s' (`gptd plugins %s` "
                         "lists its keys)", t->name, e->key, t->name);
          continue;
        }
      if (e->bad)
        continue;   /* its variables were reported */
      g_autoptr (GError) error = NULL;
      if (!gptd__params_set (st->params, e->key, e->value, &error))
        add_problem (L, error->code, e->line, g->name, e->key, e->from_setting, "%s",
                     error->message);
    }
  for (const GptdParamSpec *p = t->params; p && p->name; p++)
    if ((p->flags & GPTD_PARAM_REQUIRED) && group_find (g, p->name) == NULL)
      add_problem (L, GPTD_PIPELINE_ERROR_MISSING_KEY, g->line, g->name, p->name, FALSE,
                   "required by stage type %s but not given%s%s", t->name,
                   p->help ? ": " : "", p->help ? p->help : "");
  gptd__params_finish (st->params);

  if (L->problems->len == before && t->check)
    {
      g_autoptr (GError) error = NULL;
      if (!t->check (st->params, &error))
        add_problem (L, GPTD_PIPELINE_ERROR_CHECK, g->line, g->name, NULL, FALSE, "%s",
                     error ? error->message : "the stage type rejected its parameters");
    }
}

static int
stage_index (GPtrArray *stages, const char *name)
{
  for (guint i = 0; i < stages->len; i++)
    if (strcmp (((GptdPipelineStage *) stages->pdata[i])->name, name) == 0)
      return (int) i;
  return -1;
}

static void
check_links (Loader *L, GPtrArray *stages)
{
  g_autoptr (GPtrArray) names = g_ptr_array_new ();
  for (guint i = 0; i < stages->len; i++)
    g_ptr_array_add (names, ((GptdPipelineStage *) stages->pdata[i])->name);

  for (guint s = 0; s < stages->len; s++)
    {
      GptdPipelineStage *st = stages->pdata[s];
      Group *g = L->stage_groups->pdata[s];
      g_autofree gboolean *attempted = g_new0 (gboolean, st->n_inputs + 1);
      for (guint i = 0; i < g->entries->len; i++)
        {
          Entry *e = g->entries->pdata[i];
          if (strcmp (e->key, "input") != 0 && !g_str_has_prefix (e->key, "input."))
            continue;
          const char *pad = e->key[5] == '.' ? e->key + 6 : NULL;

          /* This stage's input pad. */
          int in = st->type ? gptd__pads_find (st->type->inputs, pad) : -1;
          if (st->type && in < 0)
            {
              g_autofree char *have = pad_names (st->type->inputs);
              if (st->n_inputs == 0)
                add_problem (L, GPTD_PIPELINE_ERROR_NO_SUCH_PAD, e->line, st->name, e->key,
                             e->from_setting, "stage type %s has no inputs", st->type->name);
              else if (pad)
                add_problem (L, GPTD_PIPELINE_ERROR_NO_SUCH_PAD, e->line, st->name, e->key,
                             e->from_setting, "stage type %s has no input '%s' (its inputs: %s)",
                             st->type->name, pad, have);
              else
                add_problem (L, GPTD_PIPELINE_ERROR_NO_SUCH_PAD, e->line, st->name, e->key,
                             e->from_setting, "stage type %s has no default input: use "
                             "input.NAME= with one of: %s", st->type->name, have);
              continue;
            }
          if (st->type && attempted[in])
            {
              add_problem (L, GPTD_PIPELINE_ERROR_LINK, e->line, st->name, e->key,
                           e->from_setting, "input '%s' is linked twice",
                           st->type->inputs[in].name);
              continue;
            }
          if (st->type)
            attempted[in] = TRUE;
          if (e->bad)
            continue;   /* its variables were reported */

          /* The producer: STAGE or STAGE.OUTPUT. */
          if (*e->value == '\0')
            {
              add_problem (L, GPTD_PIPELINE_ERROR_BAD_VALUE, e->line, st->name, e->key,
                           e->from_setting, "empty: name the stage to read from");
              continue;
            }
          g_autofree char *pname = g_strdup (e->value);
          char *out_name = strchr (pname, '.');
          if (out_name)
            *out_name++ = '\0';
          int p = stage_index (stages, pname);
          if (p < 0)
            {
              const char *near = closest (pname, names);
              if (near)
                add_problem (L, GPTD_PIPELINE_ERROR_NO_SUCH_STAGE, e->line, st->name, e->key,
                             e->from_setting, "no stage is called '%s' (did you mean '%s'?)",
                             pname, near);
              else
                add_problem (L, GPTD_PIPELINE_ERROR_NO_SUCH_STAGE, e->line, st->name, e->key,
                             e->from_setting, "no stage is called '%s'", pname);
              continue;
            }
          if (st->type == NULL)
            continue;
          GptdPipelineStage *prod = stages->pdata[p];
          if (prod->type == NULL)
            continue;
          int out = gptd__pads_find (prod->type->outputs, out_name);
          if (out < 0)
            {
              g_autofree char *have = pad_names (prod->type->outputs);
              if (prod->n_outputs == 0)
                add_problem (L, GPTD_PIPELINE_ERROR_NO_SUCH_PAD, e->line, st->name, e->key,
                             e->from_setting, "stage %s (type %s) has no outputs", pname,
                             prod->type->name);
              else if (out_name)
                add_problem (L, GPTD_PIPELINE_ERROR_NO_SUCH_PAD, e->line, st->name, e->key,
                             e->from_setting, "stage %s (type %s) has no output '%s' (its "
                             "outputs: %s)", pname, prod->type->name, out_name, have);
              else
                add_problem (L, GPTD_PIPELINE_ERROR_NO_SUCH_PAD, e->line, st->name, e->key,
                             e->from_setting, "stage %s (type %s) has several outputs: name "
                             "one as %s.OUTPUT, one of: %s", pname, prod->type->name, pname,
                             have);
              continue;
            }
          const GptdPadSpec *ip = &st->type->inputs[in];
          const GptdPadSpec *op = &prod->type->outputs[out];
          if (strcmp (ip->message_type, "*") != 0 && strcmp (op->message_type, "*") != 0 &&
              strcmp (ip->message_type, op->message_type) != 0)
            {
              add_problem (L, GPTD_PIPELINE_ERROR_LINK, e->line, st->name, e->key,
                           e->from_setting, "stage %s sends %s (output '%s') but input '%s' "
                           "of stage type %s takes %s", pname, op->message_type, op->name,
                           ip->name, st->type->name, ip->message_type);
              continue;
            }
          if ((ip->flags & GPTD_PAD_EPOCHS) && prod->type->epoch == NULL)
            {
              add_problem (L, GPTD_PIPELINE_ERROR_LINK, e->line, st->name, e->key,
                           e->from_setting, "input '%s' requests epochs, but stage %s (type "
                           "%s) does not serve epoch requests; link a batch-forming stage",
                           ip->name, pname, prod->type->name);
              continue;
            }
          st->input_stage[in] = p;
          st->input_output[in] = (guint) out;
        }
      if (st->type == NULL)
        continue;
      for (guint i = 0; i < st->n_inputs; i++)
        {
          const GptdPadSpec *ip = &st->type->inputs[i];
          /* Links that failed their checks were reported already. */
          if (attempted[i] || (ip->flags & GPTD_PAD_OPTIONAL))
            continue;
          gboolean is_default = gptd__pads_find (st->type->inputs, NULL) == (int) i;
          g_autofree char *key = is_default ? g_strdup ("input")
                                            : g_strconcat ("input.", ip->name, NULL);
          add_problem (L, GPTD_PIPELINE_ERROR_UNLINKED, g->line, st->name, key, FALSE,
                       "input '%s' (%s) is not linked: add %s=STAGE", ip->name,
                       ip->message_type, key);
        }
    }
}

/* Depth-first search for cycles; each cycle is reported once. */
static void
find_cycle (Loader *L, GPtrArray *stages, guint s, guint8 *color, GArray *path,
            gboolean *reported)
{
  GptdPipelineStage *st = stages->pdata[s];
  color[s] = 1;
  g_array_append_val (path, s);
  for (guint i = 0; i < st->n_inputs; i++)
    {
      int p = st->input_stage[i];
      if (p < 0)
        continue;
      if (color[p] == 1)
        {
          if (!reported[p])
            {
              /* path[start] is p; each path[k + 1] feeds path[k]; p feeds s. Print
               * the cycle as data flows: p -> s -> ... -> p. */
              guint start = 0;
              while (g_array_index (path, guint, start) != (guint) p)
                start++;
              GptdPipelineStage *ps = stages->pdata[p];
              GString *text = g_string_new (ps->name);
              for (guint k = path->len; k-- > start;)
                {
                  guint idx = g_array_index (path, guint, k);
                  reported[idx] = TRUE;
                  g_string_append_printf (text, " -> %s",
                                          ((GptdPipelineStage *) stages->pdata[idx])->name);
                }
              add_problem (L, GPTD_PIPELINE_ERROR_CYCLE, ps->line, ps->name, NULL, FALSE,
                           "the links form a cycle: %s", text->str);
              g_string_free (text, TRUE);
            }
          continue;
        }
      if (color[p] == 0)
        find_cycle (L, stages, (guint) p, color, path, reported);
    }
  g_array_set_size (path, path->len - 1);
  color[s] = 2;
}

static void
check_cycles (Loader *L, GPtrArray *stages)
{
  g_autofree guint8 *color = g_new0 (guint8, stages->len);
  g_autofree gboolean *reported = g_new0 (gboolean, stages->len);
  g_autoptr (GArray) path = g_array_new (FALSE, FALSE, sizeof (guint));
  for (guint s = 0; s < stages->len; s++)
    if (color[s] == 0)
      find_cycle (L, stages, s, color, path, reported);
}

/* ---- Loading ------------------------------------------------------------ */

/* The pipeline's name goes into the names of run directories (runs/NAME-STAMP):
 * returns why @name cannot, or NULL when it can. */
static const char *
name_problem (const char *name)
{
  if (*name == '\0')
    return "empty: name the pipeline, or leave name= out to use the file's name";
  if (strlen (name) > GPTD_PIPELINE_NAME_MAX)
    return "longer than " G_STRINGIFY (GPTD_PIPELINE_NAME_MAX) " bytes";
  if (strchr (name, '/') != NULL)
    return "contains '/'";
  if (strstr (name, "..") != NULL)
    return "contains '..'";
  for (const char *c = name; *c; c++)
    if ((guchar) *c < 0x20 || *c == 0x7f)
      return "contains a control character";
  return NULL;
}

static void
stage_free (gpointer data)
{
  GptdPipelineStage *st = data;
  g_free (st->name);
  gptd_params_free (st->params);
  g_free (st->input_stage);
  g_free (st->input_output);
  g_free (st);
}

void
gptd_pipeline_free (GptdPipeline *pipeline)
{
  if (pipeline == NULL)
    return;
  g_free (pipeline->name);
  g_free (pipeline->filename);
  g_free (pipeline->text);
  g_free (pipeline->hosts);
  g_ptr_array_unref (pipeline->stages);
  g_free (pipeline);
}

static void
set_error_from_problems (GPtrArray *problems, GError **error)
{
  if (problems->len == 1)
    {
      GptdPipelineProblem *p = problems->pdata[0];
      g_set_error_literal (error, GPTD_PIPELINE_ERROR, p->code, p->text);
      return;
    }
  GString *s = g_string_new (NULL);
  g_string_append_printf (s, "%u problems:", problems->len);
  for (guint i = 0; i < problems->len; i++)
    g_string_append_printf (s, "\n%s", ((GptdPipelineProblem *) problems->pdata[i])->text);
  g_set_error_literal (error, GPTD_PIPELINE_ERROR, GPTD_PIPELINE_ERROR_INVALID, s->str);
  g_string_free (s, TRUE);
}

/* A variable given with --set that no ${...} of the pipeline uses is a mistake (a
 * typo, or a setting meant as STAGE.key): a problem, with the closest variable the
 * pipeline does use or define. */
/* [pipeline] ranks= and hosts=: a data-parallel run's processes, which need a
 * build with MPI. */
static void
check_ranks (Loader *L, GptdPipeline *pipeline)
{
  pipeline->ranks = 1;
  Entry *ranks = L->pipeline_group ? group_find (L->pipeline_group, "ranks") : NULL;
  Entry *hosts = L->pipeline_group ? group_find (L->pipeline_group, "hosts") : NULL;
  if (ranks != NULL)
    {
      Where w = { ranks->line, NULL, "ranks", FALSE };
      gboolean ok = TRUE;
      g_autofree char *v = expand (L, ranks->value, &w, NULL, &ok);
      guint64 n = 0;
      if (v == NULL || !g_ascii_string_to_unsigned (v, 10, 1, 4096, &n, NULL))
        add_problem (L, GPTD_PIPELINE_ERROR_BAD_VALUE, ranks->line, NULL, "ranks",
                     ranks->from_setting, "“%s” is not a number of processes from 1 to "
                     "4096", v ? v : ranks->value);
      else if (n > 1 && !gptd_dist_available ())
        add_problem (L, GPTD_PIPELINE_ERROR_BAD_VALUE, ranks->line, NULL, "ranks",
                     ranks->from_setting, "%" G_GUINT64_FORMAT " ranks need a gptd built "
                     "with MPI (configure --with-mpi, with Open MPI's libopenmpi-dev); "
                     "this one runs a pipeline in one process only", n);
      else
        pipeline->ranks = (guint) n;
    }
  if (hosts != NULL)
    {
      Where w = { hosts->line, NULL, "hosts", FALSE };
      gboolean ok = TRUE;
      pipeline->hosts = expand (L, hosts->value, &w, NULL, &ok);
      if (pipeline->hosts != NULL && ranks == NULL)
        add_problem (L, GPTD_PIPELINE_ERROR_BAD_VALUE, hosts->line, NULL, "hosts",
                     hosts->from_setting, "hosts= needs ranks= (the number of processes)");
    }
}

static void
check_unused_settings (Loader *L)
{
  g_autoptr (GPtrArray) known = g_ptr_array_new ();
  GHashTableIter it;
  gpointer key;
  g_hash_table_iter_init (&it, L->vars);
  while (g_hash_table_iter_next (&it, &key, NULL))
    g_ptr_array_add (known, key);
  for (guint i = 0; L->pipeline_group && i < L->pipeline_group->entries->len; i++)
    {
      Entry *e = L->pipeline_group->entries->pdata[i];
      if (strcmp (e->key, "name") != 0)
        g_ptr_array_add (known, e->key);
    }
  g_autoptr (GList) names = g_hash_table_get_keys (L->set_vars);
  names = g_list_sort (names, (GCompareFunc) strcmp);
  for (GList *l = names; l; l = l->next)
    {
      const char *name = l->data;
      if (g_hash_table_contains (L->vars, name))
        continue;
      g_autoptr (GPtrArray) others = g_ptr_array_new ();
      for (guint i = 0; i < known->len; i++)
        if (strcmp (known->pdata[i], name) != 0)
          g_ptr_array_add (others, known->pdata[i]);
      const char *near = closest (name, others);
      if (near != NULL)
        add_problem (L, GPTD_PIPELINE_ERROR_BAD_SETTING, 0, NULL, name, TRUE,
                     "no ${%s} in the pipeline uses this variable (did you mean %s?)", name,
                     near);
      else
        add_problem (L, GPTD_PIPELINE_ERROR_BAD_SETTING, 0, NULL, name, TRUE,
                     "no ${%s} in the pipeline uses this variable (to set a stage's key, "
                     "write STAGE.KEY=VALUE)", name);
    }
}

GptdPipeline *
gptd_pipeline_load_data (GptdRegistry *registry, const char *data, gssize length,
                         const char *filename, const char *const *settings,
                         GPtrArray **problems, GError **error)
{
  return gptd_pipeline_load_data_with_env (registry, data, length, filename, settings, NULL,
                                           problems, error);
}

GptdPipeline *
gptd_pipeline_load_data_with_env (GptdRegistry *registry, const char *data, gssize length,
                                  const char *filename, const char *const *settings,
                                  const char *const *environment, GPtrArray **problems,
                                  GError **error)
{
  g_return_val_if_fail (registry != NULL, NULL);
  g_return_val_if_fail (data != NULL, NULL);
  g_return_val_if_fail (filename != NULL, NULL);
  if (problems)
    *problems = NULL;

  g_autofree char *text = length < 0 ? g_strdup (data) : g_strndup (data, length);
  Loader L = { 0 };
  L.registry = registry;
  L.filename = filename;
  L.environment = environment;
  g_autofree char *abs = g_canonicalize_filename (filename, NULL);
  L.base_dir = g_path_get_dirname (abs);
  L.problems = g_ptr_array_new_with_free_func ((GDestroyNotify) gptd_pipeline_problem_free);
  L.stage_groups = g_ptr_array_new_with_free_func (group_free);
  L.set_vars = g_hash_table_new_full (g_str_hash, g_str_equal, g_free, g_free);
  L.vars = g_hash_table_new_full (g_str_hash, g_str_equal, NULL, var_free);
  L.var_stack = g_ptr_array_new ();

  GptdPipeline *pipeline = g_new0 (GptdPipeline, 1);
  pipeline->filename = g_strdup (filename);
  pipeline->text = g_strdup (text);
  pipeline->registry = registry;
  pipeline->stages = g_ptr_array_new_with_free_func (stage_free);

  const char *bad = NULL;
  if ((length >= 0 && memchr (data, '\0', length) != NULL))
    add_problem (&L, GPTD_PIPELINE_ERROR_SYNTAX, 0, NULL, NULL, FALSE,
                 "the file contains a NUL byte: it is not a text file");
  else if (!g_utf8_validate (text, -1, &bad))
    {
      guint line = 1;
      for (const char *c = text; c < bad; c++)
        line += *c == '\n';
      add_problem (&L, GPTD_PIPELINE_ERROR_SYNTAX, line, NULL, NULL, FALSE,
                   "invalid UTF-8 at byte offset %td", bad - text);
    }
  else
    {
      parse_text (&L, text);
      apply_settings (&L, settings);
      if (L.pipeline_group == NULL)
        add_problem (&L, GPTD_PIPELINE_ERROR_NO_PIPELINE, 0, NULL, NULL, FALSE,
                     "no [pipeline] group: a pipeline file starts with [pipeline] and "
                     "name=NAME");
      if (L.stage_groups->len == 0)
        add_problem (&L, GPTD_PIPELINE_ERROR_NO_STAGES, 0, NULL, NULL, FALSE,
                     "no [stage NAME] group: a pipeline needs at least one stage");

      Entry *name = L.pipeline_group ? group_find (L.pipeline_group, "name") : NULL;
      if (name)
        {
          Where w = { name->line, NULL, "name", FALSE };
          gboolean ok = TRUE;
          pipeline->name = expand (&L, name->value, &w, NULL, &ok);
          const char *why = pipeline->name ? name_problem (pipeline->name) : NULL;
          if (why)
            {
              add_problem (&L, GPTD_PIPELINE_ERROR_BAD_VALUE, name->line, NULL, "name",
                           name->from_setting, "%s: the name becomes part of a run "
                           "directory's name", why);
              g_clear_pointer (&pipeline->name, g_free);
            }
        }
      check_ranks (&L, pipeline);
      for (guint i = 0; i < L.stage_groups->len; i++)
        {
          Group *g = L.stage_groups->pdata[i];
          GptdPipelineStage *st = g_new0 (GptdPipelineStage, 1);
          st->name = g_strdup (g->name);
          st->line = g->line;
          g_ptr_array_add (pipeline->stages, st);
          check_stage (&L, g, st);
        }
      check_links (&L, pipeline->stages);
      check_cycles (&L, pipeline->stages);
      check_unused_settings (&L);
    }
  if (pipeline->name == NULL)
    {
      g_autofree char *base = g_path_get_basename (filename);
      char *dot = strrchr (base, '.');
      if (dot && dot != base)
        *dot = '\0';
      /* A file name that would not do as a pipeline name is not used as one. */
      pipeline->name = g_strdup (name_problem (base) ? "pipeline" : base);
    }

  g_free (L.base_dir);
  group_free (L.pipeline_group);
  g_ptr_array_unref (L.stage_groups);
  g_hash_table_unref (L.set_vars);
  g_hash_table_unref (L.vars);
  g_ptr_array_unref (L.var_stack);

  if (L.problems->len > 0)
    {
      set_error_from_problems (L.problems, error);
      if (problems)
        *problems = L.problems;
      else
        g_ptr_array_unref (L.problems);
      gptd_pipeline_free (pipeline);
      return NULL;
    }
  g_ptr_array_unref (L.problems);
  return pipeline;
}

GptdPipeline *
gptd_pipeline_load_file (GptdRegistry *registry, const char *filename,
                         const char *const *settings, GPtrArray **problems, GError **error)
{
  g_return_val_if_fail (filename != NULL, NULL);
  if (problems)
    *problems = NULL;
  g_autofree char *data = NULL;
  gsize length = 0;
  GError *local = NULL;
  if (!g_file_get_contents (filename, &data, &length, &local))
    {
      g_set_error (error, GPTD_PIPELINE_ERROR, GPTD_PIPELINE_ERROR_IO, "%s", local->message);
      if (problems)
        {
          *problems = g_ptr_array_new_with_free_func ((GDestroyNotify) gptd_pipeline_problem_free);
          GptdPipelineProblem *p = g_new0 (GptdPipelineProblem, 1);
          p->code = GPTD_PIPELINE_ERROR_IO;
          p->file = g_strdup (filename);
          p->message = g_strdup (local->message);
          p->text = g_strdup (local->message);
          g_ptr_array_add (*problems, p);
        }
      g_error_free (local);
      return NULL;
    }
  return gptd_pipeline_load_data (registry, data, (gssize) length, filename, settings,
                                  problems, error);
}

char **
gptd_settings_from_proto (Gptd__Setting *const *settings, gsize n_settings)
{
  char **out = g_new0 (char *, n_settings + 1);
  for (gsize i = 0; i < n_settings; i++)
    out[i] = g_strdup_printf ("%s=%s", settings[i]->key ? settings[i]->key : "",
                              settings[i]->value ? settings[i]->value : "");
  return out;
}

/* ---- Accessors ---------------------------------------------------------- */

const char *
gptd_pipeline_get_name (const GptdPipeline *pipeline)
{
  g_return_val_if_fail (pipeline != NULL, NULL);
  return pipeline->name;
}

guint
gptd_pipeline_get_ranks (const GptdPipeline *pipeline)
{
  g_return_val_if_fail (pipeline != NULL, 1);
  return MAX (pipeline->ranks, 1);
}

const char *
gptd_pipeline_get_hosts (const GptdPipeline *pipeline)
{
  g_return_val_if_fail (pipeline != NULL, NULL);
  return pipeline->hosts;
}

const char *
gptd_pipeline_get_filename (const GptdPipeline *pipeline)
{
  g_return_val_if_fail (pipeline != NULL, NULL);
  return pipeline->filename;
}

const char *
gptd_pipeline_get_text (const GptdPipeline *pipeline)
{
  g_return_val_if_fail (pipeline != NULL, NULL);
  return pipeline->text;
}

GptdRegistry *
gptd_pipeline_get_registry (const GptdPipeline *pipeline)
{
  g_return_val_if_fail (pipeline != NULL, NULL);
  return pipeline->registry;
}

guint
gptd_pipeline_get_n_stages (const GptdPipeline *pipeline)
{
  g_return_val_if_fail (pipeline != NULL, 0);
  return pipeline->stages->len;
}

static GptdPipelineStage *
get_stage (const GptdPipeline *pipeline, guint index)
{
  g_return_val_if_fail (pipeline != NULL, NULL);
  g_return_val_if_fail (index < pipeline->stages->len, NULL);
  return pipeline->stages->pdata[index];
}

const char *
gptd_pipeline_get_stage_name (const GptdPipeline *pipeline, guint index)
{
  GptdPipelineStage *st = get_stage (pipeline, index);
  return st ? st->name : NULL;
}

const GptdStageType *
gptd_pipeline_get_stage_type (const GptdPipeline *pipeline, guint index)
{
  GptdPipelineStage *st = get_stage (pipeline, index);
  return st ? st->type : NULL;
}

const GptdParams *
gptd_pipeline_get_stage_params (const GptdPipeline *pipeline, guint index)
{
  GptdPipelineStage *st = get_stage (pipeline, index);
  return st ? st->params : NULL;
}

int
gptd_pipeline_find_stage (const GptdPipeline *pipeline, const char *name)
{
  g_return_val_if_fail (pipeline != NULL && name != NULL, -1);
  return stage_index (pipeline->stages, name);
}
