/* dist-zero.c: ZeRO-1 (see gptd/dist.h): the AdamW moments and the update of
 * the trainable parameters sharded across the group, the weights all-gathered
 * after each step, and the shards gathered on rank 0 for a checkpoint.
 *
 * The trainable parameters (from the gradient buffer's offset to the end of the
 * parameter buffer, all of them unfrozen) are cut into size consecutive shares
 * aligned to 64 floats.  The gradients were summed in full on every rank (the
 * same buckets as plain data-parallel, dist-grads.c), and AdamW computes each
 * element alike whatever range it updates (adamw.c), so sharding changes the
 * optimizer's memory, not a bit of the weights.
 */
#include "config.h"

#include <gptd/dist.h>

#include <string.h>

#include "dist/dist-private.h"

/* The trainable parameters as one range of the parameter buffer: its offset and
 * length; FALSE when they are not contiguous. */
static gboolean
trainable_range (GptdGpt *model, size_t *base, size_t *n)
{
  guint nt = gptd_gpt_n_tensors (model);
  size_t total = 0;
  for (guint i = 0; i < nt; i++)
    if (!gptd_gpt_get_tensor (model, i)->frozen)
      total += gptd_gpt_get_tensor (model, i)->numel;
  *base = gptd_gpt_get_grads_offset (model);
  *n = gptd_gpt_n_params (model) - *base;
  return total == *n;
}

/* Every rank's share of @n floats: counts[r], and this rank's begin and end. */
static size_t *
shares (size_t n, size_t *begin, size_t *end)
{
  int size = gptd_dist_size ();
  size_t *counts = g_new (size_t, size);
  const size_t align = 64;
  size_t units = (n + align - 1) / align;
  for (int r = 0; r < size; r++)
    {
      size_t b = MIN (units * r / size * align, n);
      size_t e = MIN (units * (r + 1) / size * align, n);
      counts[r] = e - b;
      if (r == gptd_dist_rank ())
        {
          *begin = b;
          *end = e;
        }
    }
  return counts;
}

GptdAdamW *
gptd_dist_zero_new_optimizer (GptdGpt *model, const GptdAdamWParams *params,
                              GptdAdamW *whole, GError **error)
{
  size_t base, n, begin = 0, end = 0;
  if (!trainable_range (model, &base, &n))
    {
      g_set_error (error, GPTD_DIST_ERROR, GPTD_DIST_ERROR_FAILED,
                   "zero=1 needs the trainable parameters in one range (not with "
                   "lora-rank)");
      return NULL;
    }
  g_autofree size_t *counts = shares (n, &begin, &end);
  GptdAdamW *o = gptd_adamw_new_shard (model, params, begin, end, error);
  if (o == NULL || whole == NULL)
    return o;
  size_t wb, wn;
  float *wv, *v;
  float *wm = gptd_adamw_get_moments (whole, &wv, &wb, &wn);
  float *m = gptd_adamw_get_moments (o, &v, NULL, NULL);
  g_assert (wb == 0 && wn == n);
  memcpy (m, wm + begin, (end - begin) * sizeof (float));
  memcpy (v, wv + begin, (end - begin) * sizeof (float));
  gptd_adamw_set_step (o, gptd_adamw_get_step (whole));
  return o;
}

void
gptd_dist_zero_gather_weights (GptdGpt *model)
{
  size_t base, n, begin = 0, end = 0;
  if (gptd_dist_size () == 1 || !trainable_range (model, &base, &n))
    return;
  g_autofree size_t *counts = shares (n, &begin, &end);
  gptd_dist_allgather_floats (gptd_gpt_get_params (model) + base, counts);
}

GptdAdamW *
gptd_dist_zero_gather_optimizer (GptdGpt *model, GptdAdamW *shard, GError **error)
{
  size_t base, n, begin = 0, end = 0;
  gboolean contiguous = trainable_range (model, &base, &n);
  g_assert (contiguous);
  g_autofree size_t *counts = shares (n, &begin, &end);
  GptdAdamW *whole = NULL;
  gboolean ok = TRUE;
  if (gptd_dist_rank () == 0)
    {
      whole = gptd_adamw_new (model, gptd_adamw_get_params (shard), error);
      ok = whole != NULL;
    }
  /* Every rank must take part even when rank 0 could not allocate. */
  double flag = ok ? 0 : 1;
  gptd_dist_sum (&flag, 1);
  if (flag != 0)
    {
      gptd_adamw_free (whole);
      return NULL;
    }
  float *v, *wv = NULL, *wm = NULL;
  float *m = gptd_adamw_get_moments (shard, &v, NULL, NULL);
  if (whole != NULL)
    wm = gptd_adamw_get_moments (whole, &wv, NULL, NULL);
  gptd_dist_gather_floats (m, end - begin, wm, counts, 0);
  gptd_dist_gather_floats (v, end - begin, wv, counts, 0);
  if (whole != NULL)
    gptd_adamw_set_step (whole, gptd_adamw_get_step (shard));
  return whole;
}
