/* adamw.c: the AdamW optimizer (decoupled weight decay, bias correction, as
 * torch.optim.AdamW), global-norm gradient clipping and learning-rate
 * schedules.
 *
 * Both the update and the norm walk the unfrozen parameters as one virtual
 * concatenation that is cut into equal shares per thread, so small tensors
 * cost no extra hand-offs and the summation order is fixed.
 *
 * The moments are stored for the tensors unfrozen at creation only, packed in
 * parameter order; with nothing frozen that is the parameters' own layout.
 * A shard optimizer (data-parallel training with ZeRO-1) keeps the moments of
 * one range of that packing and updates only its parameters.
 *
 * Which elements the eight-lane update takes is a function of their position
 * in the packing (lanes aligned to multiples of eight), not of where a thread's
 * or a shard's share begins: the update is the same bit for bit whatever the
 * thread count or the shards.
 */
#include "nn/nn-internal.h"

#include <math.h>
#include <string.h>
#ifdef _OPENMP
#include <omp.h>
#endif

struct _GptdAdamW {
  GptdAdamWParams hp;
  gint64 step;
  size_t n_model;         /* parameters of the model it was made for */
  size_t n;               /* floats of each moment buffer */
  size_t shard_begin;     /* the packed range a shard optimizer updates; */
  size_t shard_end;       /* 0, 0 for a whole one */
  float *m, *v;
  size_t *moment_offset;  /* per model tensor; SIZE_MAX: no moments */
  GptdNnTensor *tensors; /* 2 * n_model_tensors */
  guint n_tensors;
  GHashTable *by_name;
};

/* A run of parameters updated alike: @offset in the parameters, @grad in the
 * gradient buffer, @moment in the moment buffers. */
typedef struct {
  size_t offset, grad, moment, length;
  gboolean decay;
} Segment;

/* The unfrozen parameters as runs; with @opt only those it has moments for. */
static GArray *
segments (GptdGpt *model, const GptdAdamW *opt, gboolean decay_1d)
{
  GArray *segs = g_array_new (FALSE, FALSE, sizeof (Segment));
  const float *base = gptd_gpt_get_params (model);
  size_t gbase = gptd_gpt_get_grads_offset (model);
  guint n = gptd_gpt_n_tensors (model);
  for (guint i = 0; i < n; i++)
    {
      const GptdNnTensor *t = gptd_gpt_get_tensor (model, i);
      if (t->frozen || (opt != NULL && opt->moment_offset[i] == SIZE_MAX))
        continue;
      size_t off = (size_t) (t->data - base);
      Segment s = { off, off - gbase, opt ? opt->moment_offset[i] : off, t->numel,
                    decay_1d || t->ndim > 1 };
      Segment *last = segs->len ? &g_array_index (segs, Segment, segs->len - 1)
                                : NULL;
      if (last != NULL && last->offset + last->length == s.offset &&
          last->moment + last->length == s.moment && last->decay == s.decay)
        last->length += s.length;
      else
        g_array_append_val (segs, s);
    }
  return segs;
}

void
gptd_adamw_params_init (GptdAdamWParams *p)
{
  g_return_if_fail (p != NULL);
  p->beta1 = 0.9f;
  p->beta2 = 0.999f;
  p->eps = 1e-8f;
  p->weight_decay = 0.1f;
  p->decay_1d = TRUE;
}

GptdAdamW *
gptd_adamw_new (GptdGpt *model, const GptdAdamWParams *params, GError **error)
{
  g_return_val_if_fail (model != NULL, NULL);
  g_return_val_if_fail (params != NULL, NULL);
  GptdAdamW *o = g_new0 (GptdAdamW, 1);
  o->hp = *params;
  o->n_model = gptd_gpt_n_params (model);
  guint nt = gptd_gpt_n_tensors (model);
  o->moment_offset = g_new (size_t, nt);
  guint n_kept = 0;
  for (guint i = 0; i < nt; i++)
    {
      const GptdNnTensor *src = gptd_gpt_get_tensor (model, i);
      o->moment_offset[i] = src->frozen ? SIZE_MAX : o->n;
      if (!src->frozen)
        {
          o->n += src->numel;
          n_kept++;
        }
    }
  o->m = gptd__nn_alloc (o->n * sizeof (float));
  o->v = gptd__nn_alloc (o->n * sizeof (float));
  o->n_tensors = 2 * n_kept;
  o->tensors = g_new0 (GptdNnTensor, MAX (o->n_tensors, 1));
  o->by_name = g_hash_table_new (g_str_hash, g_str_equal);
  if (o->m == NULL || o->v == NULL)
    {
      g_set_error (error, GPTD_NN_ERROR, GPTD_NN_ERROR_NO_MEMORY,
                   "cannot allocate AdamW moments for %zu parameters", o->n);
      gptd_adamw_free (o);
      return NULL;
    }
  guint j = 0;
  for (guint k = 0; k < 2; k++)
    for (guint i = 0; i < nt; i++)
      {
        const GptdNnTensor *src = gptd_gpt_get_tensor (model, i);
        if (o->moment_offset[i] == SIZE_MAX)
          continue;
        GptdNnTensor *t = &o->tensors[j++];
        *t = *src;
        t->name = g_strconcat (k == 0 ? "adamw.m." : "adamw.v.", src->name,
                               NULL);
        t->data = (k == 0 ? o->m : o->v) + o->moment_offset[i];
        t->grad = NULL;
        t->frozen = FALSE;
        g_hash_table_insert (o->by_name, (gpointer) t->name, t);
      }
  return o;
}

GptdAdamW *
gptd_adamw_new_shard (GptdGpt *model, const GptdAdamWParams *params, size_t begin,
                      size_t end, GError **error)
{
  g_return_val_if_fail (model != NULL, NULL);
  g_return_val_if_fail (params != NULL, NULL);
  g_return_val_if_fail (begin <= end, NULL);
  size_t packed = 0;
  guint nt = gptd_gpt_n_tensors (model);
  for (guint i = 0; i < nt; i++)
    if (!gptd_gpt_get_tensor (model, i)->frozen)
      packed += gptd_gpt_get_tensor (model, i)->numel;
  if (end > packed)
    {
      g_set_error (error, GPTD_NN_ERROR, GPTD_NN_ERROR_CONFIG,
                   "an AdamW shard %zu..%zu lies beyond the %zu trainable parameters",
                   begin, end, packed);
      return NULL;
    }
  GptdAdamW *o = g_new0 (GptdAdamW, 1);
  o->hp = *params;
  o->n_model = gptd_gpt_n_params (model);
  o->moment_offset = g_new (size_t, nt);
  size_t off = 0;
  for (guint i = 0; i < nt; i++)
    {
      const GptdNnTensor *src = gptd_gpt_get_tensor (model, i);
      o->moment_offset[i] = src->frozen ? SIZE_MAX : off;
      if (!src->frozen)
        off += src->numel;
    }
  o->n = end - begin;
  o->shard_begin = begin;
  o->shard_end = end;
  /* A shard of nothing still updates nothing, not everything. */
  if (end == begin)
    o->shard_begin = o->shard_end = SIZE_MAX;
  o->m = gptd__nn_alloc (MAX (o->n, 1) * sizeof (float));
  o->v = gptd__nn_alloc (MAX (o->n, 1) * sizeof (float));
  o->tensors = g_new0 (GptdNnTensor, 1);
  o->by_name = g_hash_table_new (g_str_hash, g_str_equal);
  if (o->m == NULL || o->v == NULL)
    {
      g_set_error (error, GPTD_NN_ERROR, GPTD_NN_ERROR_NO_MEMORY,
                   "cannot allocate AdamW moments for %zu parameters", o->n);
      gptd_adamw_free (o);
      return NULL;
    }
  return o;
}

float *
gptd_adamw_get_moments (GptdAdamW *o, float **v, size_t *begin, size_t *n)
{
  g_return_val_if_fail (o != NULL, NULL);
  if (v != NULL)
    *v = o->v;
  if (begin != NULL)
    *begin = o->shard_end > 0 && o->shard_end != SIZE_MAX ? o->shard_begin : 0;
  if (n != NULL)
    *n = o->n;
  return o->m;
}

void
gptd_adamw_free (GptdAdamW *o)
{
  if (o == NULL)
    return;
  for (guint i = 0; i < o->n_tensors; i++)
    g_free ((char *) o->tensors[i].name);
  g_free (o->tensors);
  if (o->by_name != NULL)
    g_hash_table_unref (o->by_name);
  gptd__nn_free (o->m, o->n * sizeof (float));
  gptd__nn_free (o->v, o->n * sizeof (float));
  g_free (o->moment_offset);
  g_free (o);
}

GptdAdamWParams *
gptd_adamw_get_params (GptdAdamW *o)
{
  g_return_val_if_fail (o != NULL, NULL);
  return &o->hp;
}

gint64
gptd_adamw_get_step (const GptdAdamW *o)
{
  g_return_val_if_fail (o != NULL, 0);
  return o->step;
}

void
gptd_adamw_set_step (GptdAdamW *o, gint64 step)
{
  g_return_if_fail (o != NULL && step >= 0);
  o->step = step;
}

guint
gptd_adamw_n_tensors (const GptdAdamW *o)
{
  g_return_val_if_fail (o != NULL, 0);
  return o->n_tensors;
}

const GptdNnTensor *
gptd_adamw_get_tensor (const GptdAdamW *o, guint index)
{
  g_return_val_if_fail (o != NULL, NULL);
  g_return_val_if_fail (index < o->n_tensors, NULL);
  return &o->tensors[index];
}

const GptdNnTensor *
gptd_adamw_lookup_tensor (const GptdAdamW *o, const char *name)
{
  g_return_val_if_fail (o != NULL && name != NULL, NULL);
  return g_hash_table_lookup (o->by_name, name);
}

static void
adamw_range_scalar (float *restrict p, const float *restrict g,
                    float *restrict m, float *restrict v, size_t n,
                    float decay, float b1, float b2, float step_size,
                    float bc2_sqrt, float eps, float gscale)
{
  for (size_t i = 0; i < n; i++)
    {
      float pi = p[i] * decay;
      float gi = g[i] * gscale;
      float mi = m[i] + (1.0f - b1) * (gi - m[i]);
      float vi = v[i] * b2 + (1.0f - b2) * gi * gi;
      m[i] = mi;
      v[i] = vi;
      p[i] = pi - step_size * mi / (sqrtf (vi) / bc2_sqrt + eps);
    }
}

#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__)
#include <immintrin.h>

/* The same update eight lanes at a time (sqrtf with errno semantics keeps
 * the compiler from vectorising the plain loop). */
__attribute__ ((target ("avx2,fma"))) static void
adamw_range_avx2 (float *restrict p, const float *restrict g,
                  float *restrict m, float *restrict v, size_t n, float decay,
                  float b1, float b2, float step_size, float bc2_sqrt,
                  float eps, float gscale)
{
  const __m256 vdecay = _mm256_set1_ps (decay), vgs = _mm256_set1_ps (gscale);
  const __m256 c1 = _mm256_set1_ps (1.0f - b1), vb2 = _mm256_set1_ps (b2);
  const __m256 c2 = _mm256_set1_ps (1.0f - b2);
  const __m256 vstep = _mm256_set1_ps (step_size);
  const __m256 vbc2 = _mm256_set1_ps (bc2_sqrt), veps = _mm256_set1_ps (eps);
  size_t i = 0;
  for (; i + 8 <= n; i += 8)
    {
      __m256 pi = _mm256_mul_ps (_mm256_loadu_ps (p + i), vdecay);
      __m256 gi = _mm256_mul_ps (_mm256_loadu_ps (g + i), vgs);
      __m256 mo = _mm256_loadu_ps (m + i);
      __m256 mi = _mm256_fmadd_ps (c1, _mm256_sub_ps (gi, mo), mo);
      __m256 vi = _mm256_fmadd_ps (_mm256_mul_ps (c2, gi), gi,
                                   _mm256_mul_ps (_mm256_loadu_ps (v + i), vb2));
      _mm256_storeu_ps (m + i, mi);
      _mm256_storeu_ps (v + i, vi);
      __m256 den = _mm256_add_ps (_mm256_div_ps (_mm256_sqrt_ps (vi), vbc2),
                                  veps);
      _mm256_storeu_ps (p + i, _mm256_sub_ps (pi, _mm256_div_ps (
                                                      _mm256_mul_ps (vstep, mi),
                                                      den)));
    }
  adamw_range_scalar (p + i, g + i, m + i, v + i, n - i, decay, b1, b2,
                      step_size, bc2_sqrt, eps, gscale);
}
#endif

/* @vpos: the packed position of the first element; the eight-lane update takes
 * the aligned groups of eight that lie inside the range, the rest goes one by
 * one, so an element is computed alike however the packing is cut. */
static void
adamw_range (float *restrict p, const float *restrict g, float *restrict m,
             float *restrict v, size_t n, size_t vpos, float decay, float b1,
             float b2, float step_size, float bc2_sqrt, float eps, float gscale)
{
#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__)
  static gsize have_avx2 = 0; /* 0 unknown, 1 no, 2 yes */
  if (g_once_init_enter (&have_avx2))
    g_once_init_leave (&have_avx2, __builtin_cpu_supports ("avx2") &&
                                           __builtin_cpu_supports ("fma")
                                       ? 2
                                       : 1);
  if (have_avx2 == 2)
    {
      size_t head = MIN ((8 - vpos % 8) % 8, n);
      size_t body = (n - head) / 8 * 8;
      adamw_range_scalar (p, g, m, v, head, decay, b1, b2, step_size, bc2_sqrt,
                          eps, gscale);
      adamw_range_avx2 (p + head, g + head, m + head, v + head, body, decay,
                        b1, b2, step_size, bc2_sqrt, eps, gscale);
      adamw_range_scalar (p + head + body, g + head + body, m + head + body,
                          v + head + body, n - head - body, decay, b1, b2,
                          step_size, bc2_sqrt, eps, gscale);
      return;
    }
#endif
  (void) vpos;
  adamw_range_scalar (p, g, m, v, n, decay, b1, b2, step_size, bc2_sqrt, eps,
                      gscale);
}

static void
adamw_step (GptdAdamW *o, GptdGpt *model, float lr, float gscale)
{
  o->step++;
  const GptdAdamWParams hp = o->hp;
  double bc1 = 1.0 - pow ((double) hp.beta1, (double) o->step);
  double bc2 = 1.0 - pow ((double) hp.beta2, (double) o->step);
  float step_size = (float) (lr / bc1);
  float bc2_sqrt = (float) sqrt (bc2);
  float decay = 1.0f - lr * hp.weight_decay;
  float *P = gptd_gpt_get_params (model), *G = gptd_gpt_get_grads (model);
  g_autoptr (GArray) segs = segments (model, o, hp.decay_1d);
  size_t total = 0;
  for (guint s = 0; s < segs->len; s++)
    total += g_array_index (segs, Segment, s).length;
  /* A shard updates its range of the packing; its moments start there. */
  size_t lo = 0, hi = total;
  if (o->shard_end > 0)
    {
      lo = MIN (o->shard_begin, total);
      hi = MIN (o->shard_end, total);
    }
  int nt = gptd_nn_get_num_threads ();
  GPTD_NN_PRAGMA (omp parallel num_threads (nt))
  {
    int tid = 0, nth = 1;
#ifdef _OPENMP
    tid = omp_get_thread_num ();
    nth = omp_get_num_threads ();
#endif
    size_t b, e, pos = 0;
    gptd__nn_split (hi - lo, nth, tid, 64, &b, &e);
    b += lo;
    e += lo;
    for (guint s = 0; s < segs->len && pos < e; s++)
      {
        const Segment *sg = &g_array_index (segs, Segment, s);
        size_t s0 = MAX (b, pos), s1 = MIN (e, pos + sg->length);
        if (s0 < s1)
          {
            size_t off = s0 - pos, mo = sg->moment + off - lo;
            adamw_range (P + sg->offset + off, G + sg->grad + off, o->m + mo,
                         o->v + mo, s1 - s0, s0,
                         sg->decay ? decay : 1.0f, hp.beta1, hp.beta2,
                         step_size, bc2_sqrt, hp.eps, gscale);
          }
        pos += sg->length;
      }
  }
}

void
gptd_adamw_step (GptdAdamW *o, GptdGpt *model, float lr)
{
  g_return_if_fail (o != NULL && model != NULL);
  g_return_if_fail (gptd_gpt_n_params (model) == o->n_model);
  adamw_step (o, model, lr, 1.0f);
}

static float clip_norm (GptdGpt *model, float max_norm, gboolean apply,
                        float *coef_out);

float
gptd_adamw_step_clipped (GptdAdamW *o, GptdGpt *model, float lr,
                         float max_norm)
{
  g_return_val_if_fail (o != NULL && model != NULL, 0.0f);
  g_return_val_if_fail (gptd_gpt_n_params (model) == o->n_model, 0.0f);
  float coef = 1.0f;
  float norm = clip_norm (model, max_norm, FALSE, &coef);
  adamw_step (o, model, lr, coef);
  return norm;
}

GPTD_NN_CLONES static double
sumsq (const float *restrict g, size_t n)
{
  /* Blocks of float sums added in double keep the norm accurate. */
  double total = 0.0;
  for (size_t b = 0; b < n; b += 4096)
    {
      size_t e = MIN (n, b + 4096);
      float s = 0.0f;
      GPTD_NN_PRAGMA (omp simd reduction (+ : s))
      for (size_t i = b; i < e; i++)
        s += g[i] * g[i];
      total += s;
    }
  return total;
}

GPTD_NN_CLONES static void
scale_range (float *restrict g, size_t n, float s)
{
  GPTD_NN_SIMD
  for (size_t i = 0; i < n; i++)
    g[i] *= s;
}

float
gptd_gpt_clip_grad_norm (GptdGpt *model, float max_norm)
{
  g_return_val_if_fail (model != NULL, 0.0f);
  return clip_norm (model, max_norm, TRUE, NULL);
}

/* The global norm of the unfrozen gradients and the clipping factor; scales
 * the gradients when @apply. */
static float
clip_norm (GptdGpt *model, float max_norm, gboolean apply, float *coef_out)
{
  float *G = gptd_gpt_get_grads (model);
  g_autoptr (GArray) segs = segments (model, NULL, TRUE);
  size_t total = 0;
  for (guint s = 0; s < segs->len; s++)
    total += g_array_index (segs, Segment, s).length;
  int nt = gptd_nn_get_num_threads ();
  double *part = g_new0 (double, nt);
  float coef = 1.0f;
  float norm = 0.0f;
  GPTD_NN_PRAGMA (omp parallel num_threads (nt))
  {
    int tid = 0, nth = 1;
#ifdef _OPENMP
    tid = omp_get_thread_num ();
    nth = omp_get_num_threads ();
#endif
    size_t b, e, pos;
    gptd__nn_split (total, nth, tid, 64, &b, &e);
    pos = 0;
    double acc = 0.0;
    for (guint s = 0; s < segs->len && pos < e; s++)
      {
        const Segment *sg = &g_array_index (segs, Segment, s);
        size_t s0 = MAX (b, pos), s1 = MIN (e, pos + sg->length);
        if (s0 < s1)
          acc += sumsq (G + sg->grad + (s0 - pos), s1 - s0);
        pos += sg->length;
      }
    part[tid] = acc;
    GPTD_NN_PRAGMA (omp barrier)
    GPTD_NN_PRAGMA (omp single)
    {
      double sum = 0.0;
      for (int t = 0; t < nth; t++)
        sum += part[t];
      norm = (float) sqrt (sum);
      if (max_norm > 0.0f && isfinite (max_norm))
        {
          double c = (double) max_norm / ((double) norm + 1e-6);
          coef = c < 1.0 ? (float) c : 1.0f;
        }
    }
    if (apply && coef < 1.0f)
      {
        pos = 0;
        for (guint s = 0; s < segs->len && pos < e; s++)
          {
            const Segment *sg = &g_array_index (segs, Segment, s);
            size_t s0 = MAX (b, pos), s1 = MIN (e, pos + sg->length);
            if (s0 < s1)
              scale_range (G + sg->grad + (s0 - pos), s1 - s0, coef);
            pos += sg->length;
          }
      }
  }
  g_free (part);
  if (coef_out != NULL)
    *coef_out = coef;
  return norm;
}

float
gptd_lr_schedule_get (const GptdLrSchedule *s, gint64 step)
{
  g_return_val_if_fail (s != NULL, 0.0f);
  if (s->kind == GPTD_LR_CONSTANT)
    return s->peak_lr;
  if (step < s->warmup_steps)
    return (float) ((double) s->initial_lr +
                    (double) step * ((double) s->peak_lr - s->initial_lr) /
                        (double) s->warmup_steps);
  double span = (double) (s->total_steps - s->warmup_steps);
  double progress = span > 0 ? (double) (step - s->warmup_steps) / span : 1.0;
  progress = CLAMP (progress, 0.0, 1.0);
  return (float) ((double) s->min_lr + ((double) s->peak_lr - s->min_lr) *
                                           0.5 * (1.0 + cos (G_PI * progress)));
}
