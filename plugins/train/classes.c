/* classes.c: the labelled-example data set behind the classification-dataset stage:
 * examples kept in arrival order, the seeded undersampling, the seeded shuffle and
 * positional split of the book's chapter 6, padding to one length, and batches in
 * seeded epoch orders. See classes.h. */
#include "classes.h"

#include <string.h>

#include <gptd/stage.h>

struct _GptdClassesSet {
  char **names;             /* NULL-terminated */
  guint n_classes;
  GArray *ids;              /* guint32: every example's ids, concatenated */
  GArray *starts;           /* guint64: example k is ids[starts[k] .. starts[k+1]) */
  GArray *labels;           /* guint32: class of example k */
  guint64 *class_counts;
  gboolean open;            /* an example is being read */
  guint32 open_label;

  gboolean built;
  guint64 max_length;
  guint64 batch_size;
  guint64 n_kept;
  guint64 *examples;        /* the kept examples, shuffled: the splits one after another */
  guint64 split_begin[GPTD__CLASSES_MAX_SPLITS + 1];
  guint64 n_batches[GPTD__CLASSES_MAX_SPLITS];
  guint64 n_truncated[GPTD__CLASSES_MAX_SPLITS];
  /* One cached order per split, for the key it was made with. */
  guint64 *perm[GPTD__CLASSES_MAX_SPLITS];
  guint64 perm_key[GPTD__CLASSES_MAX_SPLITS];
  gboolean perm_shuffled[GPTD__CLASSES_MAX_SPLITS];
  gboolean perm_valid[GPTD__CLASSES_MAX_SPLITS];
};

/* The request seeds of the two build-time shuffles: numbers an epoch request is
 * unlikely to use ("balance" and "split" in ASCII). */
#define BALANCE_STREAM G_GUINT64_CONSTANT (0x62616c616e6365)
#define SPLIT_STREAM G_GUINT64_CONSTANT (0x73706c6974)

/* ---- Pure functions --------------------------------------------------------- */

void
gptd__classes_split_sizes (guint64 n, const double *fractions, guint n_fractions,
                           guint64 *sizes)
{
  double sum = 0.0;
  guint64 used = 0;
  int last = -1;

  for (guint k = 0; k < n_fractions; k++)
    {
      /* int(len(df) * frac), truncating as the book does (90 * 0.7 gives 62). */
      double s = (double) n * fractions[k];
      sizes[k] = s >= (double) n ? n : (guint64) s;
      sizes[k] = MIN (sizes[k], n - used);
      used += sizes[k];
      sum += fractions[k];
      if (fractions[k] > 0)
        last = (int) k;
    }
  if (sum > 1.0 - 1e-9 && last >= 0)
    sizes[last] = n - (used - sizes[last]);
}

guint64
gptd__classes_balance_key (guint64 seed, guint cls)
{
  return gptd__windows_shuffle_key (seed, BALANCE_STREAM, cls, 0);
}

guint64
gptd__classes_split_key (guint64 seed)
{
  return gptd__windows_shuffle_key (seed, SPLIT_STREAM, 0, 0);
}

guint64
gptd__classes_undersample (const guint32 *labels, guint64 n, guint n_classes,
                           guint64 seed, guint64 *kept)
{
  g_autofree guint64 *counts = g_new0 (guint64, n_classes);
  g_autofree gboolean *keep = g_new0 (gboolean, n);
  guint64 smallest = G_MAXUINT64, n_kept = 0;

  for (guint64 i = 0; i < n; i++)
    counts[labels[i]]++;
  for (guint c = 0; c < n_classes; c++)
    if (counts[c] > 0)
      smallest = MIN (smallest, counts[c]);
  for (guint c = 0; c < n_classes; c++)
    {
      if (counts[c] == 0)
        continue;
      g_autofree guint64 *members = g_new (guint64, counts[c]);
      g_autofree guint64 *perm = g_new (guint64, counts[c]);
      guint64 m = 0;
      for (guint64 i = 0; i < n; i++)
        if (labels[i] == c)
          members[m++] = i;
      gptd__windows_permutation (perm, m, TRUE, gptd__classes_balance_key (seed, c));
      for (guint64 k = 0; k < smallest; k++)
        keep[members[perm[k]]] = TRUE;
    }
  for (guint64 i = 0; i < n; i++)
    if (keep[i])
      kept[n_kept++] = i;
  return n_kept;
}

/* ---- The data set ------------------------------------------------------------ */

GptdClassesSet *
gptd__classes_new (const char *const *names, guint n_names)
{
  GptdClassesSet *set = g_new0 (GptdClassesSet, 1);
  guint64 zero = 0;

  set->names = g_new0 (char *, n_names + 1);
  for (guint k = 0; k < n_names; k++)
    set->names[k] = g_strdup (names[k]);
  set->n_classes = n_names;
  set->ids = g_array_new (FALSE, FALSE, sizeof (guint32));
  set->starts = g_array_new (FALSE, FALSE, sizeof (guint64));
  set->labels = g_array_new (FALSE, FALSE, sizeof (guint32));
  set->class_counts = g_new0 (guint64, n_names);
  g_array_append_val (set->starts, zero);
  return set;
}

void
gptd__classes_free (GptdClassesSet *set)
{
  if (set == NULL)
    return;
  g_strfreev (set->names);
  g_array_unref (set->ids);
  g_array_unref (set->starts);
  g_array_unref (set->labels);
  g_free (set->class_counts);
  g_free (set->examples);
  for (guint k = 0; k < GPTD__CLASSES_MAX_SPLITS; k++)
    g_free (set->perm[k]);
  g_free (set);
}

static GString *
names_list (const GptdClassesSet *set)
{
  GString *s = g_string_new (NULL);
  for (guint k = 0; k < set->n_classes; k++)
    g_string_append_printf (s, "%s%s", k ? "," : "", set->names[k]);
  return s;
}

gboolean
gptd__classes_append (GptdClassesSet *set, const char *label, const guint32 *ids,
                      gsize n, gboolean last, const char *what, GError **error)
{
  guint32 cls = 0;

  g_return_val_if_fail (!set->built, FALSE);
  if (label == NULL || *label == '\0')
    {
      g_set_error (error, GPTD_STAGE_ERROR, GPTD_STAGE_ERROR_INPUT,
                   "%s has no label (classification needs labelled Documents, e.g. from "
                   "table-source)", what);
      return FALSE;
    }
  while (cls < set->n_classes && !g_str_equal (set->names[cls], label))
    cls++;
  if (cls == set->n_classes)
    {
      g_autoptr (GString) list = names_list (set);
      g_set_error (error, GPTD_STAGE_ERROR, GPTD_STAGE_ERROR_INPUT,
                   "%s: label \"%s\" is not one of labels=%s", what, label, list->str);
      return FALSE;
    }
  if (set->open && cls != set->open_label)
    {
      g_set_error (error, GPTD_STAGE_ERROR, GPTD_STAGE_ERROR_INPUT,
                   "%s: label \"%s\" changes within the example (it began as \"%s\")",
                   what, label, set->names[set->open_label]);
      return FALSE;
    }
  set->open = TRUE;
  set->open_label = cls;
  g_array_append_vals (set->ids, ids, n);
  if (last)
    {
      guint64 end = set->ids->len;
      guint64 begin = g_array_index (set->starts, guint64, set->starts->len - 1);
      if (end == begin)
        {
          g_set_error (error, GPTD_STAGE_ERROR, GPTD_STAGE_ERROR_INPUT,
                       "%s: the example has no token", what);
          return FALSE;
        }
      g_array_append_val (set->starts, end);
      g_array_append_val (set->labels, cls);
      set->class_counts[cls]++;
      set->open = FALSE;
    }
  return TRUE;
}

guint64
gptd__classes_n_examples (const GptdClassesSet *set)
{
  return set->labels->len;
}

guint64
gptd__classes_class_count (const GptdClassesSet *set, guint cls)
{
  g_return_val_if_fail (cls < set->n_classes, 0);
  return set->class_counts[cls];
}

guint
gptd__classes_n_classes (const GptdClassesSet *set)
{
  return set->n_classes;
}

char **
gptd__classes_names (const GptdClassesSet *set)
{
  return set->names;
}

static guint64
example_length (const GptdClassesSet *set, guint64 example)
{
  return g_array_index (set->starts, guint64, example + 1)
         - g_array_index (set->starts, guint64, example);
}

gboolean
gptd__classes_build (GptdClassesSet *set, const GptdClassesConfig *config, GError **error)
{
  guint64 n = set->labels->len;
  guint64 sizes[GPTD__CLASSES_MAX_SPLITS] = { 0 };

  g_return_val_if_fail (!set->built, FALSE);
  g_return_val_if_fail (config->batch_size > 0, FALSE);
  g_return_val_if_fail (config->n_fractions >= 1
                        && config->n_fractions <= GPTD__CLASSES_MAX_SPLITS, FALSE);
  if (set->open)
    {
      g_set_error (error, GPTD_STAGE_ERROR, GPTD_STAGE_ERROR_INPUT,
                   "the input ended inside an example (its last part never came)");
      return FALSE;
    }
  for (guint c = 0; c < set->n_classes; c++)
    if (set->class_counts[c] == 0)
      {
        g_autoptr (GString) list = names_list (set);
        g_set_error (error, GPTD_STAGE_ERROR, GPTD_STAGE_ERROR_INPUT,
                     "class \"%s\" has no example (labels=%s; %" G_GUINT64_FORMAT
                     " examples read)", set->names[c], list->str, n);
        return FALSE;
      }

  /* 1. Balance. */
  g_autofree guint64 *kept = g_new (guint64, MAX (n, 1));
  if (config->balance == GPTD__CLASSES_BALANCE_UNDERSAMPLE)
    set->n_kept = gptd__classes_undersample ((const guint32 *) (void *) set->labels->data,
                                             n, set->n_classes, config->seed, kept);
  else
    {
      for (guint64 i = 0; i < n; i++)
        kept[i] = i;
      set->n_kept = n;
    }

  /* 2. Shuffle, then split by position. */
  g_autofree guint64 *perm = g_new (guint64, MAX (set->n_kept, 1));
  gptd__windows_permutation (perm, set->n_kept, TRUE, gptd__classes_split_key (config->seed));
  set->examples = g_new (guint64, MAX (set->n_kept, 1));
  for (guint64 i = 0; i < set->n_kept; i++)
    set->examples[i] = kept[perm[i]];
  gptd__classes_split_sizes (set->n_kept, config->fractions, config->n_fractions, sizes);
  set->split_begin[0] = 0;
  for (guint k = 0; k < GPTD__CLASSES_MAX_SPLITS; k++)
    set->split_begin[k + 1] = set->split_begin[k] + sizes[k];

  /* 3. The length: the longest training example unless given. */
  set->max_length = config->max_length;
  if (set->max_length == 0)
    {
      if (sizes[0] == 0)
        {
          g_set_error (error, GPTD_STAGE_ERROR, GPTD_STAGE_ERROR_FAILED,
                       "max-length: the train split is empty, so there is no longest "
                       "training example to take the length from; give max-length");
          return FALSE;
        }
      for (guint64 i = 0; i < sizes[0]; i++)
        set->max_length = MAX (set->max_length, example_length (set, set->examples[i]));
    }
  set->batch_size = config->batch_size;
  for (guint k = 0; k < GPTD__CLASSES_MAX_SPLITS; k++)
    {
      gboolean drop = k == 0 && config->drop_last_train;
      set->n_batches[k] = gptd__windows_n_batches (sizes[k], config->batch_size, drop);
      for (guint64 i = set->split_begin[k]; i < set->split_begin[k + 1]; i++)
        if (example_length (set, set->examples[i]) > set->max_length)
          set->n_truncated[k]++;
    }
  set->built = TRUE;
  return TRUE;
}

guint64
gptd__classes_max_length (const GptdClassesSet *set)
{
  return set->max_length;
}

guint64
gptd__classes_n_kept (const GptdClassesSet *set)
{
  return set->n_kept;
}

guint64
gptd__classes_split_size (const GptdClassesSet *set, guint split)
{
  g_return_val_if_fail (split < GPTD__CLASSES_MAX_SPLITS, 0);
  return set->split_begin[split + 1] - set->split_begin[split];
}

guint64
gptd__classes_n_batches (const GptdClassesSet *set, guint split)
{
  g_return_val_if_fail (split < GPTD__CLASSES_MAX_SPLITS, 0);
  return set->n_batches[split];
}

guint64
gptd__classes_n_truncated (const GptdClassesSet *set, guint split)
{
  g_return_val_if_fail (split < GPTD__CLASSES_MAX_SPLITS, 0);
  return set->n_truncated[split];
}

guint64
gptd__classes_example_index (const GptdClassesSet *set, guint split, guint64 i)
{
  g_return_val_if_fail (set->built && split < GPTD__CLASSES_MAX_SPLITS, 0);
  g_return_val_if_fail (i < gptd__classes_split_size (set, split), 0);
  return set->examples[set->split_begin[split] + i];
}

const guint64 *
gptd__classes_order (GptdClassesSet *set, guint split, gboolean shuffle, guint64 key)
{
  g_return_val_if_fail (set->built && split < GPTD__CLASSES_MAX_SPLITS, NULL);
  if (!set->perm_valid[split] || set->perm_shuffled[split] != shuffle
      || (shuffle && set->perm_key[split] != key))
    {
      guint64 n = gptd__classes_split_size (set, split);
      g_free (set->perm[split]);
      set->perm[split] = g_new (guint64, MAX (n, 1));
      gptd__windows_permutation (set->perm[split], n, shuffle, key);
      set->perm_key[split] = key;
      set->perm_shuffled[split] = shuffle;
      set->perm_valid[split] = TRUE;
    }
  return set->perm[split];
}

guint
gptd__classes_fill (const GptdClassesSet *set, guint split, const guint64 *order,
                    guint64 batch, gint32 pad_id, gint32 *inputs, gint32 *labels,
                    guint32 *lengths)
{
  guint64 n = gptd__classes_split_size (set, split);
  guint64 first = batch * set->batch_size;
  guint rows;

  g_return_val_if_fail (set->built, 0);
  if (first >= n)
    return 0;
  rows = (guint) MIN (set->batch_size, n - first);
  for (guint r = 0; r < rows; r++)
    {
      guint64 example = set->examples[set->split_begin[split] + order[first + r]];
      guint64 begin = g_array_index (set->starts, guint64, example);
      guint64 len = MIN (example_length (set, example), set->max_length);
      const guint32 *ids = &g_array_index (set->ids, guint32, begin);
      gint32 *row = inputs + (gsize) r * set->max_length;
      for (guint64 t = 0; t < len; t++)
        row[t] = (gint32) ids[t];
      for (guint64 t = len; t < set->max_length; t++)
        row[t] = pad_id;
      labels[r] = (gint32) g_array_index (set->labels, guint32, example);
      lengths[r] = (guint32) len;
    }
  return rows;
}
