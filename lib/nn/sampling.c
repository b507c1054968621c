/* sampling.c: picking the next token from logits: greedy argmax, top-k,
 * temperature, softmax, top-p (nucleus) and an inverse-CDF draw from a seeded
 * xoshiro256** stream; and the generation options.  The order of the steps is
 * documented at the top of gptd/generate.h.
 */
#include "config.h"

#include <gptd/generate.h>

#include <math.h>
#include <stdlib.h>
#include <string.h>

G_DEFINE_QUARK (gptd-generate-error-quark, gptd_generate_error)

void
gptd_generate_options_init (GptdGenerateOptions *options)
{
  g_return_if_fail (options != NULL);
  options->max_new_tokens = 50;
  options->temperature = 0.0;
  options->top_k = 0;
  options->top_p = 1.0;
  options->seed = GPTD_GENERATE_DEFAULT_SEED;
  options->eos_id = -1;
  options->use_kv_cache = TRUE;
  options->stop = NULL;
}

gboolean
gptd_generate_options_validate (const GptdGenerateOptions *options,
                                GError **error)
{
  g_return_val_if_fail (options != NULL, FALSE);
  if (options->max_new_tokens < 0)
    {
      g_set_error (error, GPTD_GENERATE_ERROR, GPTD_GENERATE_ERROR_OPTIONS,
                   "max-new-tokens must be >= 0, not %d",
                   options->max_new_tokens);
      return FALSE;
    }
  if (!(options->temperature >= 0.0) || isinf (options->temperature))
    {
      g_set_error (error, GPTD_GENERATE_ERROR, GPTD_GENERATE_ERROR_OPTIONS,
                   "temperature must be finite and >= 0, not %g",
                   options->temperature);
      return FALSE;
    }
  if (options->top_k < 0)
    {
      g_set_error (error, GPTD_GENERATE_ERROR, GPTD_GENERATE_ERROR_OPTIONS,
                   "top-k must be >= 0 (0: no top-k), not %d", options->top_k);
      return FALSE;
    }
  if (!(options->top_p > 0.0 && options->top_p <= 1.0))
    {
      g_set_error (error, GPTD_GENERATE_ERROR, GPTD_GENERATE_ERROR_OPTIONS,
                   "top-p must be in (0, 1], not %g", options->top_p);
      return FALSE;
    }
  if (options->eos_id < -1)
    {
      g_set_error (error, GPTD_GENERATE_ERROR, GPTD_GENERATE_ERROR_OPTIONS,
                   "eos-id must be a token id or -1 (none), not %d",
                   options->eos_id);
      return FALSE;
    }
  return TRUE;
}

/* ---- Random stream: xoshiro256** seeded by splitmix64 -------------------- */

static guint64
splitmix64 (guint64 *x)
{
  guint64 z = (*x += 0x9e3779b97f4a7c15ull);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
  return z ^ (z >> 31);
}

static inline guint64
rotl (guint64 x, int k)
{
  return (x << k) | (x >> (64 - k));
}

static guint64
xoshiro_next (guint64 s[4])
{
  guint64 result = rotl (s[1] * 5, 7) * 9;
  guint64 t = s[1] << 17;
  s[2] ^= s[0];
  s[3] ^= s[1];
  s[1] ^= s[2];
  s[0] ^= s[3];
  s[2] ^= t;
  s[3] = rotl (s[3], 45);
  return result;
}

/* ---- The sampler ---------------------------------------------------------- */

struct _GptdSampler {
  GptdGenerateOptions options;
  int n_vocab;
  guint64 rng[4];
  double *probs;    /* (n_vocab) the distribution of the current step */
  float *scratch;   /* (n_vocab) copy of the logits for the k-th largest */
  gint32 *order;    /* (n_vocab) candidate indices for top-p */
};

GptdSampler *
gptd_sampler_new (const GptdGenerateOptions *options, int n_vocab)
{
  g_return_val_if_fail (options != NULL, NULL);
  g_return_val_if_fail (n_vocab >= 1, NULL);
  g_return_val_if_fail (gptd_generate_options_validate (options, NULL), NULL);

  GptdSampler *s = g_new0 (GptdSampler, 1);
  s->options = *options;
  s->n_vocab = n_vocab;
  guint64 x = options->seed;
  for (int i = 0; i < 4; i++)
    s->rng[i] = splitmix64 (&x);
  s->probs = g_new (double, n_vocab);
  s->scratch = g_new (float, n_vocab);
  s->order = g_new (gint32, n_vocab);
  return s;
}

void
gptd_sampler_free (GptdSampler *sampler)
{
  if (sampler == NULL)
    return;
  g_free (sampler->probs);
  g_free (sampler->scratch);
  g_free (sampler->order);
  g_free (sampler);
}

double
gptd_sampler_uniform (GptdSampler *sampler)
{
  g_return_val_if_fail (sampler != NULL, 0.0);
  return (double) (xoshiro_next (sampler->rng) >> 11) * 0x1.0p-53;
}

gint32
gptd_argmax (const float *values, int n)
{
  g_return_val_if_fail (values != NULL && n >= 1, 0);
  int best = -1;
  for (int i = 0; i < n; i++)
    {
      if (isnan (values[i]))
        continue;
      if (best < 0 || values[i] > values[best])
        best = i;
    }
  return best < 0 ? 0 : best;
}

/* The k-th largest of a[0..n) (1 <= k <= n), by quickselect; reorders a. */
static float
kth_largest (float *a, int n, int k)
{
  int lo = 0, hi = n - 1, want = k - 1;
  while (lo < hi)
    {
      /* Median of three as the pivot keeps sorted inputs fast. */
      int mid = lo + (hi - lo) / 2;
      float x = a[lo], y = a[mid], z = a[hi];
      float pivot = x > y ? (y > z ? y : (x > z ? z : x))
                          : (x > z ? x : (y > z ? z : y));
      int i = lo, j = hi;
      while (i <= j)
        {
          while (a[i] > pivot)
            i++;
          while (a[j] < pivot)
            j--;
          if (i <= j)
            {
              float t = a[i];
              a[i] = a[j];
              a[j] = t;
              i++;
              j--;
            }
        }
      /* Now a[lo..j] >= pivot, a[i..hi] <= pivot and a[j+1..i-1] == pivot. */
      if (want <= j)
        hi = j;
      else if (want >= i)
        lo = i;
      else
        return pivot;
    }
  return a[want];
}

typedef struct {
  const double *probs;
} OrderCtx;

static int
cmp_prob_desc (const void *pa, const void *pb, void *data)
{
  const double *p = ((const OrderCtx *) data)->probs;
  gint32 a = *(const gint32 *) pa, b = *(const gint32 *) pb;
  if (p[a] > p[b])
    return -1;
  if (p[a] < p[b])
    return 1;
  return (a > b) - (a < b);
}

/* Fills s->probs with the renormalised distribution of a sampled step and
 * returns the number of tokens with a nonzero share. */
static int
sampler_distribution (GptdSampler *s, const float *logits)
{
  const int V = s->n_vocab;
  const GptdGenerateOptions *o = &s->options;
  double *p = s->probs;

  /* Top-k: drop the logits below the k-th largest (ties all stay). */
  float min_keep = -INFINITY;
  gboolean filter_k = o->top_k > 0 && o->top_k < V;
  if (filter_k)
    {
      memcpy (s->scratch, logits, sizeof (float) * V);
      for (int i = 0; i < V; i++)
        if (isnan (s->scratch[i]))
          s->scratch[i] = -INFINITY;
      min_keep = kth_largest (s->scratch, V, o->top_k);
    }

  /* Temperature and softmax, in double precision. */
  double max = -INFINITY;
  for (int i = 0; i < V; i++)
    if ((!filter_k || logits[i] >= min_keep) && logits[i] > max)
      max = logits[i];
  if (isinf (max) && max < 0)
    {
      /* Every logit is -inf or NaN: fall back to the first token. */
      memset (p, 0, sizeof (double) * V);
      p[0] = 1.0;
      return 1;
    }
  const double inv_t = 1.0 / o->temperature;
  double sum = 0.0;
  for (int i = 0; i < V; i++)
    {
      double v = logits[i];
      if ((filter_k && !(v >= min_keep)) || isnan (v))
        p[i] = 0.0;
      else
        {
          p[i] = exp ((v - max) * inv_t);
          sum += p[i];
        }
    }
  for (int i = 0; i < V; i++)
    p[i] /= sum;

  if (o->top_p >= 1.0)
    {
      int n = 0;
      for (int i = 0; i < V; i++)
        n += p[i] > 0.0;
      return n;
    }

  /* Top-p.  The nucleus is a prefix of the tokens ordered by probability.
   * Any set {p >= t} whose mass reaches top_p is also such a prefix and holds
   * the nucleus, so only that set is sorted: t starts near the largest
   * probability and is lowered until the set is large enough. */
  double pmax = 0.0;
  for (int i = 0; i < V; i++)
    if (p[i] > pmax)
      pmax = p[i];
  double t = pmax / 64.0;
  int n = 0;
  for (;;)
    {
      double mass = 0.0;
      n = 0;
      for (int i = 0; i < V; i++)
        if (p[i] > 0.0 && p[i] >= t)
          {
            s->order[n++] = i;
            mass += p[i];
          }
      if (mass >= o->top_p || t == 0.0)
        break;
      t = t < 1e-300 ? 0.0 : t / 256.0;
    }
  OrderCtx ctx = { p };
  g_qsort_with_data (s->order, n, sizeof (gint32), cmp_prob_desc, &ctx);
  double cum = 0.0;
  int keep = 0;
  while (keep < n)
    {
      cum += p[s->order[keep]];
      keep++;
      if (cum >= o->top_p)
        break;
    }
  double kept = 0.0;
  for (int j = 0; j < keep; j++)
    kept += p[s->order[j]];
  /* Mark the kept tokens by negating their probability, clear the rest,
   * then restore the sign while renormalising. */
  for (int j = 0; j < keep; j++)
    p[s->order[j]] = -p[s->order[j]];
  for (int i = 0; i < V; i++)
    p[i] = p[i] < 0.0 ? -p[i] / kept : 0.0;
  return keep;
}

int
gptd_sampler_get_distribution (GptdSampler *sampler, const float *logits,
                               double *probs)
{
  g_return_val_if_fail (sampler != NULL && logits != NULL && probs != NULL, 0);
  if (sampler->options.temperature == 0.0)
    {
      memset (probs, 0, sizeof (double) * sampler->n_vocab);
      probs[gptd_argmax (logits, sampler->n_vocab)] = 1.0;
      return 1;
    }
  int n = sampler_distribution (sampler, logits);
  memcpy (probs, sampler->probs, sizeof (double) * sampler->n_vocab);
  return n;
}

gint32
gptd_sampler_sample (GptdSampler *sampler, const float *logits)
{
  g_return_val_if_fail (sampler != NULL && logits != NULL, 0);
  if (sampler->options.temperature == 0.0)
    return gptd_argmax (logits, sampler->n_vocab);

  sampler_distribution (sampler, logits);
  const double *p = sampler->probs;
  double u = gptd_sampler_uniform (sampler);
  double cum = 0.0;
  int last = -1;
  for (int i = 0; i < sampler->n_vocab; i++)
    {
      if (p[i] <= 0.0)
        continue;
      cum += p[i];
      last = i;
      if (cum > u)
        return i;
    }
  /* Rounding left the total just below u: the last kept token. */
  return last < 0 ? 0 : last;
}
