/* collate.c: the instruction data set: record storage, the book's split of the
 * record list, seeded batch orders and custom_collate_fn (see collate.h). */
#include "collate.h"

#include <gptd/windows.h>

#include <gptd/stage.h>

#include <math.h>
#include <string.h>

struct _GptdInstructSet {
  GArray *ids;            /* guint32, every record's ids one after the other */
  GArray *starts;         /* guint64, n_records + 1 offsets into ids */
  GArray *prompts;        /* guint64, prompt tokens of each record */
  guint64 max_len;
  guint64 *records;       /* record positions in split order (after shuffle-records) */
  guint n_splits;
  guint64 bounds[GPTD__INSTRUCT_MAX_SPLITS + 1];
  guint64 n_batches[GPTD__INSTRUCT_MAX_SPLITS];
  guint64 batch_size;
};

guint64
gptd__collate_seq_len (guint64 max_len, guint64 allowed_max_length)
{
  if (allowed_max_length > 0 && allowed_max_length < max_len)
    return allowed_max_length;
  return max_len;
}

void
gptd__collate_row (const guint32 *ids, guint64 len, guint64 prompt_tokens,
                   guint64 max_len, guint64 seq_len, const GptdCollateOptions *opts,
                   gint32 *scratch, gint32 *inputs, gint32 *targets)
{
  gint32 pad = (gint32) opts->pad_id;
  gboolean seen_pad = FALSE;

  g_return_if_fail (len <= max_len && seq_len <= max_len);

  /* padded: the record, one pad (its <|endoftext|>), pads up to max_len + 1. */
  for (guint64 j = 0; j < len; j++)
    scratch[j] = (gint32) ids[j];
  for (guint64 j = len; j <= max_len; j++)
    scratch[j] = pad;

  for (guint64 j = 0; j < seq_len; j++)
    inputs[j] = scratch[j];
  /* targets = padded[1:], every pad but the first ignored; the masking looks at the
   * whole row before it is cut to seq_len, as the book's does. */
  for (guint64 j = 0; j < max_len; j++)
    {
      gint32 t = scratch[j + 1];
      if (t == pad)
        {
          if (seen_pad)
            t = opts->ignore_index;
          seen_pad = TRUE;
        }
      if (opts->mask_prompt && prompt_tokens > 0 && j + 1 < prompt_tokens)
        t = opts->ignore_index;
      if (j < seq_len)
        targets[j] = t;
    }
}

void
gptd__instruct_split_bounds (guint64 n, const double *fractions, guint n_fractions,
                             guint64 *bounds)
{
  double sum = 0;

  bounds[0] = 0;
  for (guint k = 0; k < n_fractions; k++)
    {
      /* int(len(data) * f), with 1e-9 against a product that lands a hair below an
       * integer (the book's 0.85 * 1100 is 935.0 in doubles too). */
      guint64 part = (guint64) floor ((double) n * fractions[k] + 1e-9);
      bounds[k + 1] = MIN (bounds[k] + part, n);
      sum += fractions[k];
    }
  if (n_fractions > 0 && fabs (sum - 1.0) <= 1e-9)
    bounds[n_fractions] = n;
}

gboolean
gptd__instruct_split_parse (const char *split_order, const double *fractions,
                            gsize n_fractions, int *split_of, guint *n_out,
                            GError **error)
{
  g_auto (GStrv) names = g_strsplit (split_order, ",", -1);
  guint n = 0;
  double sum = 0;

  for (guint i = 0; names[i]; i++)
    {
      int k = gptd__windows_split_lookup (g_strstrip (names[i]));
      if (k < 0 || n >= GPTD__INSTRUCT_MAX_SPLITS)
        {
          g_set_error (error, GPTD_STAGE_ERROR, GPTD_STAGE_ERROR_FAILED,
                       "split-order: \"%s\" is not one of train, validation, test",
                       names[i]);
          return FALSE;
        }
      for (guint j = 0; j < n; j++)
        if (split_of[j] == k)
          {
            g_set_error (error, GPTD_STAGE_ERROR, GPTD_STAGE_ERROR_FAILED,
                         "split-order: %s is named twice", gptd__windows_split_name (k));
            return FALSE;
          }
      split_of[n++] = k;
    }
  if (n_fractions < 1 || n_fractions > n)
    {
      g_set_error (error, GPTD_STAGE_ERROR, GPTD_STAGE_ERROR_FAILED,
                   "split: give one to %u fractions (for %s), not %" G_GSIZE_FORMAT, n,
                   split_order, n_fractions);
      return FALSE;
    }
  for (gsize i = 0; i < n_fractions; i++)
    sum += fractions[i];
  if (sum > 1.0 + 1e-9)
    {
      g_set_error (error, GPTD_STAGE_ERROR, GPTD_STAGE_ERROR_FAILED,
                   "split: the fractions sum to %g, more than 1", sum);
      return FALSE;
    }
  for (gsize i = 0; i <= n_fractions; i++)
    if (i == n_fractions)
      {
        g_set_error (error, GPTD_STAGE_ERROR, GPTD_STAGE_ERROR_FAILED,
                     "split: no fraction is the train split (split-order=%s)",
                     split_order);
        return FALSE;
      }
    else if (split_of[i] == 0)
      break;
  for (gsize i = 0; i < n_fractions; i++)
    if (split_of[i] == 0 && fractions[i] <= 0)
      {
        g_set_error (error, GPTD_STAGE_ERROR, GPTD_STAGE_ERROR_FAILED,
                     "split: the train fraction must be above 0");
        return FALSE;
      }
  *n_out = (guint) n_fractions;
  return TRUE;
}

GptdInstructSet *
gptd__instruct_set_new (void)
{
  GptdInstructSet *set = g_new0 (GptdInstructSet, 1);
  guint64 zero = 0;
  set->ids = g_array_new (FALSE, FALSE, sizeof (guint32));
  set->starts = g_array_new (FALSE, FALSE, sizeof (guint64));
  set->prompts = g_array_new (FALSE, FALSE, sizeof (guint64));
  g_array_append_val (set->starts, zero);
  return set;
}

void
gptd__instruct_set_free (GptdInstructSet *set)
{
  if (set == NULL)
    return;
  g_array_unref (set->ids);
  g_array_unref (set->starts);
  g_array_unref (set->prompts);
  g_free (set->records);
  g_free (set);
}

void
gptd__instruct_set_add (GptdInstructSet *set, const guint32 *ids, gsize n,
                        guint32 prompt_tokens)
{
  guint64 end, prompt = prompt_tokens;
  g_array_append_vals (set->ids, ids, (guint) n);
  end = set->ids->len;
  g_array_append_val (set->starts, end);
  g_array_append_val (set->prompts, prompt);
  set->max_len = MAX (set->max_len, (guint64) n);
}

guint64
gptd__instruct_set_n_records (const GptdInstructSet *set)
{
  return set->prompts->len;
}

const guint32 *
gptd__instruct_set_record (const GptdInstructSet *set, guint64 i, guint64 *len,
                           guint64 *prompt_tokens)
{
  guint64 start = g_array_index (set->starts, guint64, i);
  guint64 end = g_array_index (set->starts, guint64, i + 1);
  if (len)
    *len = end - start;
  if (prompt_tokens)
    *prompt_tokens = g_array_index (set->prompts, guint64, i);
  return &g_array_index (set->ids, guint32, start);
}

guint64
gptd__instruct_set_max_len (const GptdInstructSet *set)
{
  return set->max_len;
}

void
gptd__instruct_set_layout (GptdInstructSet *set, const double *fractions,
                           guint n_fractions, guint64 batch_size,
                           int drop_last_split, gboolean shuffle_records,
                           guint64 record_key)
{
  guint64 n = gptd__instruct_set_n_records (set);

  g_return_if_fail (n_fractions >= 1 && n_fractions <= GPTD__INSTRUCT_MAX_SPLITS);
  g_return_if_fail (batch_size > 0);
  g_free (set->records);
  set->records = g_new (guint64, MAX (n, 1));
  gptd__windows_permutation (set->records, n, shuffle_records, record_key);
  set->n_splits = n_fractions;
  set->batch_size = batch_size;
  gptd__instruct_split_bounds (n, fractions, n_fractions, set->bounds);
  for (guint k = 0; k < n_fractions; k++)
    {
      guint64 m = set->bounds[k + 1] - set->bounds[k];
      set->n_batches[k] = gptd__windows_n_batches (m, batch_size, (int) k == drop_last_split);
    }
}

guint
gptd__instruct_set_n_splits (const GptdInstructSet *set)
{
  return set->n_splits;
}

guint64
gptd__instruct_set_split_records (const GptdInstructSet *set, guint k)
{
  g_return_val_if_fail (k < set->n_splits, 0);
  return set->bounds[k + 1] - set->bounds[k];
}

guint64
gptd__instruct_set_split_batches (const GptdInstructSet *set, guint k)
{
  g_return_val_if_fail (k < set->n_splits, 0);
  return set->n_batches[k];
}

void
gptd__instruct_set_order (const GptdInstructSet *set, guint k, gboolean shuffle,
                          guint64 key, guint64 *order)
{
  guint64 m = gptd__instruct_set_split_records (set, k);
  gptd__windows_permutation (order, m, shuffle, key);
  for (guint64 i = 0; i < m; i++)
    order[i] = set->records[set->bounds[k] + order[i]];
}

void
gptd__instruct_set_collate (const GptdInstructSet *set, guint k, const guint64 *order,
                            guint64 b, const GptdCollateOptions *opts, gint32 *inputs,
                            gint32 *targets, guint32 *lengths, guint *rows,
                            guint64 *seq_len)
{
  guint64 m = gptd__instruct_set_split_records (set, k);
  guint64 first = b * set->batch_size;
  guint64 n = first < m ? MIN (set->batch_size, m - first) : 0;
  guint64 max_len = 0, T;

  for (guint64 r = 0; r < n; r++)
    {
      guint64 len;
      gptd__instruct_set_record (set, order[first + r], &len, NULL);
      max_len = MAX (max_len, len);
    }
  T = gptd__collate_seq_len (max_len, opts->allowed_max_length);
  g_autofree gint32 *scratch = g_new (gint32, max_len + 1);
  for (guint64 r = 0; r < n; r++)
    {
      guint64 len, prompt;
      const guint32 *ids = gptd__instruct_set_record (set, order[first + r], &len, &prompt);
      gptd__collate_row (ids, len, prompt, max_len, T, opts, scratch, inputs + r * T,
                         targets + r * T);
      if (lengths)
        lengths[r] = (guint32) MIN (len, T);
    }
  *rows = (guint) n;
  *seq_len = T;
}
