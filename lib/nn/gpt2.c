/* gpt2.c: the GPT-2 model: configuration and presets, the parameter and
 * gradient buffers with their Hugging Face names, freezing, the activation
 * plan, and the training forward and backward passes.
 *
 * Block l maps res[l] to res[l+1]:
 *   ln1 = LN(res[l]); qkv = ln1 Wattn + b; y = attention(qkv);
 *   mid = res[l] + drop(y Wproj + b); ln2 = LN(mid);
 *   fch = ln2 Wfc + b; res[l+1] = mid + drop(gelu(fch) Wfcproj + b).
 * The residual additions are fused with the next LayerNorm.  Backward reuses
 * the logits' memory for its scratch once the head's gradient is done.
 */
#include "nn/gpt2-private.h"

#include <math.h>
#include <string.h>
#ifdef _OPENMP
#include <omp.h>
#endif

/* ---- configuration ------------------------------------------------------- */

gboolean
gptd_gpt_config_preset (const char *name, GptdGptConfig *config,
                        GError **error)
{
  static const struct {
    const char *name;
    int n_layer, n_head, n_embd;
  } presets[] = {
    { "gpt2", 12, 12, 768 },         { "gpt2-small", 12, 12, 768 },
    { "gpt2-medium", 24, 16, 1024 }, { "gpt2-large", 36, 20, 1280 },
    { "gpt2-xl", 48, 25, 1600 },
  };
  g_return_val_if_fail (name != NULL, FALSE);
  g_return_val_if_fail (config != NULL, FALSE);
  for (size_t i = 0; i < G_N_ELEMENTS (presets); i++)
    if (strcmp (presets[i].name, name) == 0)
      {
        *config = (GptdGptConfig){
          .n_layer = presets[i].n_layer,
          .n_head = presets[i].n_head,
          .n_embd = presets[i].n_embd,
          .context_length = 1024,
          .vocab_size = 50257,
          .n_out = 0,
          .qkv_bias = TRUE,
          .tie_embeddings = TRUE,
          .head_bias = FALSE,
          .dropout = 0.1f,
          .layer_norm_epsilon = 1e-5f,
        };
        return TRUE;
      }
  g_set_error (error, GPTD_NN_ERROR, GPTD_NN_ERROR_CONFIG,
               "unknown model preset \"%s\" (known: gpt2-small, gpt2-medium, "
               "gpt2-large, gpt2-xl)",
               name);
  return FALSE;
}

gboolean
gptd_gpt_config_validate (const GptdGptConfig *c, GError **error)
{
  g_return_val_if_fail (c != NULL, FALSE);
#define BAD(...)                                                            \
  do                                                                        \
    {                                                                       \
      g_set_error (error, GPTD_NN_ERROR, GPTD_NN_ERROR_CONFIG, __VA_ARGS__); \
      return FALSE;                                                         \
    }                                                                       \
  while (0)
  if (c->n_layer < 1 || c->n_layer > 10000)
    BAD ("n_layer must be in [1, 10000], not %d", c->n_layer);
  if (c->n_head < 1)
    BAD ("n_head must be positive, not %d", c->n_head);
  if (c->n_embd < 1 || c->n_embd > (1 << 20))
    BAD ("n_embd must be in [1, 1048576], not %d", c->n_embd);
  if (c->n_embd % c->n_head != 0)
    BAD ("n_embd (%d) must be a multiple of n_head (%d)", c->n_embd,
         c->n_head);
  if (c->context_length < 1 || c->context_length > (1 << 20))
    BAD ("context_length must be in [1, 1048576], not %d",
         c->context_length);
  if (c->vocab_size < 1 || c->vocab_size > (1 << 28))
    BAD ("vocab_size must be in [1, 268435456], not %d", c->vocab_size);
  if (c->n_out < 0 || c->n_out > (1 << 28))
    BAD ("n_out must be in [0, 268435456], not %d", c->n_out);
  if (c->tie_embeddings && c->n_out != 0 && c->n_out != c->vocab_size)
    BAD ("n_out (%d) differs from vocab_size (%d), which needs "
         "tie_embeddings false",
         c->n_out, c->vocab_size);
  if (!(c->dropout >= 0.0f && c->dropout < 1.0f))
    BAD ("dropout must be in [0, 1), not %g", (double) c->dropout);
  if (!(c->layer_norm_epsilon > 0.0f) || !isfinite (c->layer_norm_epsilon))
    BAD ("layer_norm_epsilon must be positive, not %g",
         (double) c->layer_norm_epsilon);
  if ((double) c->vocab_size * c->n_embd >= 2147483647.0 ||
      (double) c->context_length * 4 * c->n_embd >= 2147483647.0)
    BAD ("model too large: vocab_size * n_embd and context_length * 4 * "
         "n_embd must stay below 2^31");
#undef BAD
  return TRUE;
}

size_t
gptd_gpt_config_n_params (const GptdGptConfig *c)
{
  size_t C = (size_t) c->n_embd;
  size_t n_out = c->n_out ? (size_t) c->n_out : (size_t) c->vocab_size;
  size_t per_block = 2 * C + C * 3 * C + (c->qkv_bias ? 3 * C : 0) + C * C +
                     C + 2 * C + C * 4 * C + 4 * C + 4 * C * C + C;
  size_t n = (size_t) c->vocab_size * C + (size_t) c->context_length * C +
             (size_t) c->n_layer * per_block + 2 * C;
  if (!c->tie_embeddings)
    n += n_out * C;
  if (c->head_bias)
    n += n_out;
  return n;
}

/* ---- model object ------------------------------------------------------ */

static GptdNnTensor *
add_tensor (GptdGpt *m, size_t *offset, char *name, int ndim, size_t d0,
            size_t d1)
{
  GptdNnTensor *t = &m->tensors[m->n_tensors++];
  t->name = name;
  t->ndim = ndim;
  t->shape[0] = d0;
  t->shape[1] = ndim > 1 ? d1 : 0;
  t->numel = ndim > 1 ? d0 * d1 : d0;
  t->data = m->params + *offset;
  t->grad = NULL; /* set by alloc_grads() */
  t->frozen = FALSE;
  *offset += t->numel;
  return t;
}

static gboolean
trainable (const GptdNnTensor *t)
{
  return t != NULL && !t->frozen;
}

static gboolean
block_trainable (const Block *bl)
{
  const GptdNnTensor *ts[] = { bl->ln1_w, bl->ln1_b, bl->attn_w, bl->attn_b,
                               bl->proj_w, bl->proj_b, bl->ln2_w, bl->ln2_b,
                               bl->fc_w, bl->fc_b, bl->fcp_w, bl->fcp_b };
  for (size_t i = 0; i < G_N_ELEMENTS (ts); i++)
    if (trainable (ts[i]))
      return TRUE;
  for (int k = 0; k < 4; k++)
    if (trainable (bl->lora_A[k]) || trainable (bl->lora_B[k]))
      return TRUE;
  return FALSE;
}

/* The lowest block backward reaches (whose activations must be kept): 0 when
 * the embeddings train, L when only ln_f and the head do (or nothing). */
static int
lowest_kept_block (const GptdGpt *m)
{
  const int L = m->cfg.n_layer;
  if (trainable (m->wpe) || trainable (m->wte))
    return 0;
  for (int l = 0; l < L; l++)
    if (block_trainable (&m->blocks[l]))
      return l;
  return L;
}

/* Offset of the first unfrozen parameter; n_params when all are frozen. */
static size_t
first_trainable_offset (const GptdGpt *m)
{
  for (guint i = 0; i < m->n_tensors; i++)
    if (trainable (&m->tensors[i]))
      return (size_t) (m->tensors[i].data - m->params);
  return m->n_params;
}

/* (Re)allocates the gradient buffer for the parameters from the first
 * unfrozen one to the end, zeroed, and points the tensors' grad into it
 * (NULL below it).  Nothing changes when that range is the same.  A fresh
 * buffer is mapped lazily, so a model that never trains never touches it. */
gboolean
gptd__gpt_alloc_grads (GptdGpt *m)
{
  size_t base = first_trainable_offset (m);
  if (m->grads != NULL && base == m->grad_base)
    return TRUE;
  gptd__nn_free (m->grads, (m->n_params - m->grad_base) * sizeof (float));
  m->grads = gptd__nn_alloc ((m->n_params - base) * sizeof (float));
  m->grad_base = base;
  for (guint i = 0; i < m->n_tensors; i++)
    {
      GptdNnTensor *t = &m->tensors[i];
      size_t off = (size_t) (t->data - m->params);
      t->grad = m->grads != NULL && off >= base ? m->grads + (off - base) : NULL;
    }
  return m->grads != NULL;
}

GptdGpt *
gptd_gpt_new (const GptdGptConfig *config, GError **error)
{
  g_return_val_if_fail (config != NULL, NULL);
  if (!gptd_gpt_config_validate (config, error))
    return NULL;
  gptd__nn_threads_init ();

  GptdGpt *m = g_new0 (GptdGpt, 1);
  m->cfg = *config;
  m->n_out = config->n_out ? config->n_out : config->vocab_size;
  m->n_params = gptd_gpt_config_n_params (config);
  m->params = gptd__nn_alloc (m->n_params * sizeof (float));
  if (m->params == NULL)
    {
      g_set_error (error, GPTD_NN_ERROR, GPTD_NN_ERROR_NO_MEMORY,
                   "cannot allocate %zu parameters", m->n_params);
      gptd_gpt_free (m);
      return NULL;
    }

  const int L = config->n_layer;
  const size_t C = (size_t) config->n_embd;
  /* Room for the adapters gptd_gpt_add_lora() may add: the blocks point
   * into this array, which therefore never moves. */
  m->tensors = g_new0 (GptdNnTensor, 20 * (size_t) L + 6);
  m->blocks = g_new0 (Block, L);
  size_t off = 0;
  m->wte = add_tensor (m, &off, g_strdup ("wte.weight"), 2,
                       (size_t) config->vocab_size, C);
  m->wpe = add_tensor (m, &off, g_strdup ("wpe.weight"), 2,
                       (size_t) config->context_length, C);
  for (int l = 0; l < L; l++)
    {
      Block *bl = &m->blocks[l];
#define T1(field, suffix, n)                                                \
  bl->field = add_tensor (m, &off, g_strdup_printf ("h.%d.%s", l, suffix), 1, \
                          (n), 0)
#define T2(field, suffix, a, b)                                             \
  bl->field = add_tensor (m, &off, g_strdup_printf ("h.%d.%s", l, suffix), 2, \
                          (a), (b))
      T1 (ln1_w, "ln_1.weight", C);
      T1 (ln1_b, "ln_1.bias", C);
      T2 (attn_w, "attn.c_attn.weight", C, 3 * C);
      if (config->qkv_bias)
        T1 (attn_b, "attn.c_attn.bias", 3 * C);
      T2 (proj_w, "attn.c_proj.weight", C, C);
      T1 (proj_b, "attn.c_proj.bias", C);
      T1 (ln2_w, "ln_2.weight", C);
      T1 (ln2_b, "ln_2.bias", C);
      T2 (fc_w, "mlp.c_fc.weight", C, 4 * C);
      T1 (fc_b, "mlp.c_fc.bias", 4 * C);
      T2 (fcp_w, "mlp.c_proj.weight", 4 * C, C);
      T1 (fcp_b, "mlp.c_proj.bias", C);
#undef T1
#undef T2
    }
  m->lnf_w = add_tensor (m, &off, g_strdup ("ln_f.weight"), 1, C, 0);
  m->lnf_b = add_tensor (m, &off, g_strdup ("ln_f.bias"), 1, C, 0);
  if (config->tie_embeddings)
    m->head_w = m->wte;
  else
    m->head_w = add_tensor (m, &off, g_strdup ("lm_head.weight"), 2,
                            (size_t) m->n_out, C);
  if (config->head_bias)
    m->head_b = add_tensor (m, &off, g_strdup ("lm_head.bias"), 1,
                            (size_t) m->n_out, 0);
  g_assert (off == m->n_params);
  m->n_base_tensors = m->n_tensors;

  if (!gptd__gpt_alloc_grads (m))
    {
      g_set_error (error, GPTD_NN_ERROR, GPTD_NN_ERROR_NO_MEMORY,
                   "cannot allocate gradients for %zu parameters", m->n_params);
      gptd_gpt_free (m);
      return NULL;
    }

  m->by_name = g_hash_table_new (g_str_hash, g_str_equal);
  for (guint i = 0; i < m->n_tensors; i++)
    g_hash_table_insert (m->by_name, (gpointer) m->tensors[i].name,
                         &m->tensors[i]);

  /* LayerNorm weights start at one, everything else at zero. */
  for (int l = 0; l < L; l++)
    for (size_t c = 0; c < C; c++)
      m->blocks[l].ln1_w->data[c] = m->blocks[l].ln2_w->data[c] = 1.0f;
  for (size_t c = 0; c < C; c++)
    m->lnf_w->data[c] = 1.0f;
  return m;
}

void
gptd__gpt_plan_clear (GptdGpt *m)
{
  gptd__nn_free (m->lora_act, m->lora_act_bytes);
  m->lora_act = NULL;
  m->lora_act_bytes = 0;
  gptd__nn_free (m->act, m->act_bytes);
  gptd__nn_free (m->big, m->big_bytes);
  gptd__nn_free (m->scratch, m->scratch_bytes);
  m->act = m->big = m->scratch = NULL;
  m->act_bytes = m->big_bytes = m->scratch_bytes = 0;
  g_clear_pointer (&m->acts, g_free);
  g_clear_pointer (&m->res, g_free);
  g_clear_pointer (&m->tokens, g_free);
  g_clear_pointer (&m->targets, g_free);
  g_clear_pointer (&m->pool_pos, g_free);
  m->plan_bt = 0;
  m->plan_t = 0;
  m->plan_nt = 0;
  m->plan_keep = 0;
  m->logits_valid = FALSE;
}

void
gptd_gpt_free (GptdGpt *m)
{
  if (m == NULL)
    return;
  gptd__gpt_quant_free (m->quant);
  gptd__gpt_plan_clear (m);
  for (guint i = 0; i < m->n_tensors; i++)
    g_free ((char *) m->tensors[i].name);
  g_free (m->tensors);
  g_free (m->blocks);
  if (m->by_name != NULL)
    g_hash_table_unref (m->by_name);
  gptd__nn_free (m->params, m->n_params * sizeof (float));
  gptd__nn_free (m->grads, (m->n_params - m->grad_base) * sizeof (float));
  g_free (m);
}

const GptdGptConfig *
gptd_gpt_get_config (const GptdGpt *m)
{
  g_return_val_if_fail (m != NULL, NULL);
  return &m->cfg;
}

size_t
gptd_gpt_n_params (const GptdGpt *m)
{
  g_return_val_if_fail (m != NULL, 0);
  return m->n_params;
}

float *
gptd_gpt_get_params (GptdGpt *m)
{
  g_return_val_if_fail (m != NULL, NULL);
  return m->params;
}

float *
gptd_gpt_get_grads (GptdGpt *m)
{
  g_return_val_if_fail (m != NULL, NULL);
  return m->grads;
}

size_t
gptd_gpt_get_grads_offset (const GptdGpt *m)
{
  g_return_val_if_fail (m != NULL, 0);
  return m->grad_base;
}

guint
gptd_gpt_n_tensors (const GptdGpt *m)
{
  g_return_val_if_fail (m != NULL, 0);
  return m->n_tensors;
}

const GptdNnTensor *
gptd_gpt_get_tensor (const GptdGpt *m, guint index)
{
  g_return_val_if_fail (m != NULL, NULL);
  g_return_val_if_fail (index < m->n_tensors, NULL);
  return &m->tensors[index];
}

const GptdNnTensor *
gptd_gpt_lookup_tensor (const GptdGpt *m, const char *name)
{
  g_return_val_if_fail (m != NULL, NULL);
  g_return_val_if_fail (name != NULL, NULL);
  return g_hash_table_lookup (m->by_name, name);
}

guint
gptd_gpt_set_frozen (GptdGpt *m, const char *pattern, gboolean frozen)
{
  g_return_val_if_fail (m != NULL, 0);
  g_return_val_if_fail (pattern != NULL, 0);
  GPatternSpec *spec = g_pattern_spec_new (pattern);
  guint n = 0;
  for (guint i = 0; i < m->n_tensors; i++)
    if (g_pattern_spec_match_string (spec, m->tensors[i].name))
      {
        m->tensors[i].frozen = frozen;
        n++;
      }
  g_pattern_spec_free (spec);
  /* The gradient range follows; backward reports a failed allocation. */
  gptd__gpt_alloc_grads (m);
  return n;
}

void
gptd_gpt_get_rng (const GptdGpt *m, GptdRngState *state)
{
  g_return_if_fail (m != NULL && state != NULL);
  *state = m->rng;
}

void
gptd_gpt_set_rng (GptdGpt *m, const GptdRngState *state)
{
  g_return_if_fail (m != NULL && state != NULL);
  m->rng = *state;
}

/* xoshiro256** for weight initialisation. */
typedef struct {
  guint64 s[4];
} InitRng;

static guint64
rotl (guint64 x, int k)
{
  return (x << k) | (x >> (64 - k));
}

static guint64
init_rng_next (InitRng *r)
{
  guint64 res = rotl (r->s[1] * 5, 7) * 9;
  guint64 t = r->s[1] << 17;
  r->s[2] ^= r->s[0];
  r->s[3] ^= r->s[1];
  r->s[1] ^= r->s[2];
  r->s[0] ^= r->s[3];
  r->s[2] ^= t;
  r->s[3] = rotl (r->s[3], 45);
  return res;
}

static void
fill_normal (InitRng *r, float *x, size_t n, float std)
{
  for (size_t i = 0; i < n; i += 2)
    {
      double u1 = ((init_rng_next (r) >> 11) + 1) * 0x1.0p-53;
      double u2 = (init_rng_next (r) >> 11) * 0x1.0p-53;
      double rad = sqrt (-2.0 * log (u1)) * std;
      x[i] = (float) (rad * cos (2.0 * G_PI * u2));
      if (i + 1 < n)
        x[i + 1] = (float) (rad * sin (2.0 * G_PI * u2));
    }
}

void
gptd_gpt_init_weights (GptdGpt *m, guint64 seed)
{
  g_return_if_fail (m != NULL);
  InitRng r;
  guint64 z = seed;
  for (int i = 0; i < 4; i++)
    {
      z += 0x9E3779B97F4A7C15ull;
      guint64 x = z;
      x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ull;
      x = (x ^ (x >> 27)) * 0x94D049BB133111EBull;
      r.s[i] = x ^ (x >> 31);
    }
  float proj_std = 0.02f / sqrtf (2.0f * (float) m->cfg.n_layer);
  for (guint i = 0; i < m->n_tensors; i++)
    {
      GptdNnTensor *t = &m->tensors[i];
      if (t->ndim == 2)
        fill_normal (&r, t->data, t->numel,
                     g_str_has_suffix (t->name, "c_proj.weight") ? proj_std
                                                                 : 0.02f);
      else
        {
          float v = g_str_has_suffix (t->name, "ln_1.weight") ||
                            g_str_has_suffix (t->name, "ln_2.weight") ||
                            strcmp (t->name, "ln_f.weight") == 0
                        ? 1.0f
                        : 0.0f;
          for (size_t k = 0; k < t->numel; k++)
            t->data[k] = v;
        }
    }
}

void
gptd_gpt_zero_grad (GptdGpt *m)
{
  g_return_if_fail (m != NULL);
  float *g = m->grads;
  size_t n = m->n_params - m->grad_base;
  if (g == NULL)
    return;
  int nt = gptd_nn_get_num_threads ();
  GPTD_NN_PRAGMA (omp parallel num_threads (nt))
  {
    int t = 0, k = 1;
#ifdef _OPENMP
    t = omp_get_thread_num ();
    k = omp_get_num_threads ();
#endif
    size_t b, e;
    gptd__nn_split (n, k, t, 1024, &b, &e);
    memset (g + b, 0, (e - b) * sizeof (float));
  }
}

/* ---- activation plan ------------------------------------------------------ */

static gboolean
plan (GptdGpt *m, int B, int T, GError **error)
{
  size_t BT = (size_t) B * T;
  int nt = gptd_nn_get_num_threads ();
  int keep = lowest_kept_block (m);
  if (BT <= m->plan_bt && T <= m->plan_t && nt <= m->plan_nt &&
      keep == m->plan_keep)
    return TRUE;
  size_t bt = MAX (BT, m->plan_bt);
  int t = MAX (T, m->plan_t);
  gptd__gpt_plan_clear (m);

  const int L = m->cfg.n_layer, nh = m->cfg.n_head;
  const size_t C = (size_t) m->cfg.n_embd, V = (size_t) m->n_out;
  /* bt rows hold at least bt / t sequences of t positions. */
  size_t nb = (bt + t - 1) / t;
  /* ln1, atty, mid, ln2; qkv; fch, fchg; four LayerNorm statistics; the
   * attention log-sum-exp.  Blocks below @keep share one set and two
   * residual buffers: backward never reads them. */
  size_t per_layer = bt * C * 4 + bt * 3 * C + bt * 4 * C * 2 + bt * 4 +
                     nb * nh * t;
  size_t n_sets = (size_t) (L - keep) + (keep > 0 ? 1 : 0);
  size_t n_res = (size_t) (L - keep + 1) + (keep > 0 ? 2 : 0);
  size_t act_floats = per_layer * n_sets + bt * C * n_res +
                      bt * C + 2 * bt + bt * C + bt;
  size_t bwd_floats = bt * C * 3 + bt * 4 * C;
  size_t big_floats = MAX (bt * V, bwd_floats);
  size_t scratch_floats = (size_t) nt * 3 * t * t + (size_t) nt * 2 * C;

  m->act_bytes = act_floats * sizeof (float);
  m->big_bytes = big_floats * sizeof (float);
  m->scratch_bytes = scratch_floats * sizeof (float);
  m->act = gptd__nn_alloc (m->act_bytes);
  m->big = gptd__nn_alloc (m->big_bytes);
  m->scratch = gptd__nn_alloc (m->scratch_bytes);
  /* LoRA: u = in A of the four linear layers of every block, and du. */
  m->lora_act_bytes = m->lora_rank > 0 ? ((size_t) L * 4 + 1) * bt *
                                             (size_t) m->lora_rank *
                                             sizeof (float)
                                       : 0;
  m->lora_act = m->lora_rank > 0 ? gptd__nn_alloc (m->lora_act_bytes) : NULL;
  m->tokens = g_try_new (gint32, bt);
  m->targets = g_try_new (gint32, bt);
  m->pool_pos = g_try_new (gint32, bt);
  if (m->act == NULL || m->big == NULL || m->scratch == NULL ||
      (m->lora_rank > 0 && m->lora_act == NULL) ||
      m->tokens == NULL || m->targets == NULL || m->pool_pos == NULL)
    {
      g_set_error (error, GPTD_NN_ERROR, GPTD_NN_ERROR_NO_MEMORY,
                   "cannot allocate activations for %zu positions "
                   "(%zu bytes)",
                   bt, m->act_bytes + m->big_bytes + m->scratch_bytes +
                         m->lora_act_bytes);
      gptd__gpt_plan_clear (m);
      return FALSE;
    }
  m->acts = g_new0 (Acts, L);
  m->res = g_new0 (float *, L + 1);
  float *p = m->act;
#define TAKE(n) (p += (n), p - (n))
  float *pingpong[2] = { NULL, NULL };
  if (keep > 0)
    {
      pingpong[0] = TAKE (bt * C);
      pingpong[1] = TAKE (bt * C);
    }
  for (int l = 0; l <= L; l++)
    m->res[l] = l < keep ? pingpong[l % 2] : TAKE (bt * C);
  for (int l = 0; l < L; l++)
    {
      Acts *a = &m->acts[l];
      if (l > 0 && l < keep)
        {
          *a = m->acts[0]; /* the shared set */
          continue;
        }
      a->ln1 = TAKE (bt * C);
      a->ln1_mean = TAKE (bt);
      a->ln1_rstd = TAKE (bt);
      a->qkv = TAKE (bt * 3 * C);
      a->atty = TAKE (bt * C);
      a->att_lse = TAKE (nb * nh * t);
      a->mid = TAKE (bt * C);
      a->ln2 = TAKE (bt * C);
      a->ln2_mean = TAKE (bt);
      a->ln2_rstd = TAKE (bt);
      a->fch = TAKE (bt * 4 * C);
      a->fchg = TAKE (bt * 4 * C);
    }
  m->lnf = TAKE (bt * C);
  m->lnf_mean = TAKE (bt);
  m->lnf_rstd = TAKE (bt);
  m->branch = TAKE (bt * C);
  m->ce_lse = TAKE (bt);
#undef TAKE
  g_assert ((size_t) (p - m->act) == act_floats);
  m->plan_bt = bt;
  m->plan_t = t;
  m->plan_nt = nt;
  m->plan_keep = keep;
  return TRUE;
}

/* ---- forward ---------------------------------------------------------------- */

static GptdNnDropout
drop_for (GptdGpt *m, gboolean train, guint64 counter, guint site)
{
  /* Stream 0 is the seed's own; another stream mixes its number in. */
  guint64 seed = m->dropout_stream == 0
                   ? m->rng.seed
                   : m->rng.seed ^ (m->dropout_stream * G_GUINT64_CONSTANT (0x9e3779b97f4a7c15));
  return gptd__nn_dropout_stream (seed, counter, site, train ? m->cfg.dropout : 0.0f);
}

void
gptd_gpt_set_dropout_stream (GptdGpt *m, guint64 stream)
{
  g_return_if_fail (m != NULL);
  m->dropout_stream = stream;
}

#define SITE_EMBED 0
#define SITE_ATT(l) (1 + 3 * (guint) (l))
#define SITE_ATT_RES(l) (2 + 3 * (guint) (l))
#define SITE_MLP_RES(l) (3 + 3 * (guint) (l))

/* The forward of gptd_gpt_forward() and gptd_gpt_forward_pooled(): with
 * @positions (which implies LAST_ONLY) the head reads row b at positions[b],
 * else at T - 1. */
static gboolean
forward (GptdGpt *m, const gint32 *tokens, const gint32 *positions,
         const gint32 *targets, int B, int T, GptdGptForwardFlags flags,
         float *loss, GError **error)
{
  const GptdGptConfig *cfg = &m->cfg;
  const int L = cfg->n_layer, nh = cfg->n_head, V = m->n_out;
  const size_t C = (size_t) cfg->n_embd;
  const float eps = cfg->layer_norm_epsilon;
  const gboolean last_only = (flags & GPTD_GPT_FORWARD_LAST_ONLY) != 0;

  m->logits_valid = FALSE;
  if (B < 1 || T < 1 || T > cfg->context_length ||
      (double) B * T * MAX ((double) V, 4.0 * C) >= 9.2e18 ||
      (double) B * T >= 2147483647.0 / 4)
    {
      g_set_error (error, GPTD_NN_ERROR, GPTD_NN_ERROR_INPUT,
                   "bad batch shape (%d, %d): need B >= 1 and 1 <= T <= "
                   "context_length %d",
                   B, T, cfg->context_length);
      return FALSE;
    }
  size_t BT = (size_t) B * T;
  size_t n_targets = last_only ? (size_t) B : BT;
  for (size_t i = 0; i < BT; i++)
    if (tokens[i] < 0 || tokens[i] >= cfg->vocab_size)
      {
        g_set_error (error, GPTD_NN_ERROR, GPTD_NN_ERROR_INPUT,
                     "token id %d at batch %zu position %zu is outside the "
                     "vocabulary [0, %d)",
                     tokens[i], i / T, i % T, cfg->vocab_size);
        return FALSE;
      }
  if (targets != NULL)
    for (size_t i = 0; i < n_targets; i++)
      if (targets[i] != GPTD_NN_IGNORE_INDEX &&
          (targets[i] < 0 || targets[i] >= V))
        {
          g_set_error (error, GPTD_NN_ERROR, GPTD_NN_ERROR_INPUT,
                       "target %d at index %zu is outside [0, %d) and is "
                       "not the ignore index %d",
                       targets[i], i, V, GPTD_NN_IGNORE_INDEX);
          return FALSE;
        }
  if (positions != NULL)
    for (int b = 0; b < B; b++)
      if (positions[b] < 0 || positions[b] >= T)
        {
          g_set_error (error, GPTD_NN_ERROR, GPTD_NN_ERROR_INPUT,
                       "pooling position %d of batch row %d is outside the "
                       "sequence [0, %d)",
                       positions[b], b, T);
          return FALSE;
        }
  if (!plan (m, B, T, error))
    return FALSE;

  if (last_only)
    for (int b = 0; b < B; b++)
      m->pool_pos[b] = positions != NULL ? positions[b] : T - 1;
  memcpy (m->tokens, tokens, BT * sizeof (gint32));
  if (targets != NULL)
    memcpy (m->targets, targets, n_targets * sizeof (gint32));
  gboolean train = (flags & GPTD_GPT_FORWARD_TRAIN) && cfg->dropout > 0.0f;
  guint64 counter = m->rng.counter;
  if (train)
    m->rng.counter++;
  m->fw_B = B;
  m->fw_T = T;
  m->fw_flags = flags;
  m->fw_train = train;
  m->fw_counter = counter;
  m->fw_has_targets = targets != NULL;

  GptdNnDropout d = drop_for (m, train, counter, SITE_EMBED);
  gptd__nn_embed_forward (m->res[0], tokens, m->wte->data, m->wpe->data, B,
                          T, (int) C, &d);
  gptd__nn_layernorm_forward (m->acts[0].ln1, m->acts[0].ln1_mean,
                              m->acts[0].ln1_rstd, m->res[0],
                              m->blocks[0].ln1_w->data,
                              m->blocks[0].ln1_b->data, BT, (int) C, eps);
  for (int l = 0; l < L; l++)
    {
      Block *bl = &m->blocks[l];
      Acts *a = &m->acts[l];
      GptdNnLora lo;
      GptdNnLinearEpi e = {
        .bias = bl->attn_b ? bl->attn_b->data : NULL,
        .lora = gptd__gpt_lora_forward (m, &lo, l, 0, a->ln1, BT),
      };
      // qkv (BT,3C) = ln1 (BT,C) Wattn (C,3C) + b
      gptd__nn_linear_forward (a->qkv, a->ln1, bl->attn_w->data, BT, (int) C,
                               3 * (int) C, &e);
      d = drop_for (m, train, counter, SITE_ATT (l));
      gptd__nn_attention_forward (a->atty, a->att_lse, a->qkv, B, T, (int) C,
                                  nh, &d, m->scratch);
      // mid = res[l] + drop(atty Wproj + b); ln2 = LN(mid)
      e = (GptdNnLinearEpi){
        .bias = bl->proj_b->data, .res_out = a->mid, .res_in = m->res[l],
        .drop = drop_for (m, train, counter, SITE_ATT_RES (l)),
        .ln_out = a->ln2, .mean = a->ln2_mean, .rstd = a->ln2_rstd,
        .ln_w = bl->ln2_w->data, .ln_b = bl->ln2_b->data, .eps = eps,
        .lora = gptd__gpt_lora_forward (m, &lo, l, 1, a->atty, BT),
      };
      gptd__nn_linear_forward (m->branch, a->atty, bl->proj_w->data, BT,
                               (int) C, (int) C, &e);
      // fch (BT,4C) = ln2 Wfc + b; fchg = gelu(fch)
      e = (GptdNnLinearEpi){
        .bias = bl->fc_b->data, .gelu_out = a->fchg,
        .lora = gptd__gpt_lora_forward (m, &lo, l, 2, a->ln2, BT),
      };
      gptd__nn_linear_forward (a->fch, a->ln2, bl->fc_w->data, BT, (int) C,
                               4 * (int) C, &e);
      // res[l+1] = mid + drop(fchg Wfcp + b), then the next LayerNorm
      e = (GptdNnLinearEpi){
        .bias = bl->fcp_b->data, .res_out = m->res[l + 1], .res_in = a->mid,
        .drop = drop_for (m, train, counter, SITE_MLP_RES (l)), .eps = eps,
        .lora = gptd__gpt_lora_forward (m, &lo, l, 3, a->fchg, BT),
      };
      if (l + 1 < L)
        {
          Acts *n = &m->acts[l + 1];
          e.ln_out = n->ln1;
          e.mean = n->ln1_mean;
          e.rstd = n->ln1_rstd;
          e.ln_w = m->blocks[l + 1].ln1_w->data;
          e.ln_b = m->blocks[l + 1].ln1_b->data;
        }
      else if (!last_only)
        {
          e.ln_out = m->lnf;
          e.mean = m->lnf_mean;
          e.rstd = m->lnf_rstd;
          e.ln_w = m->lnf_w->data;
          e.ln_b = m->lnf_b->data;
        }
      gptd__nn_linear_forward (m->branch, a->fchg, bl->fcp_w->data, BT,
                               4 * (int) C, (int) C, &e);
    }

  size_t rows = BT;
  if (last_only)
    {
      rows = (size_t) B;
      for (int b = 0; b < B; b++)
        gptd__nn_layernorm_rows (m->lnf + b * C, m->lnf_mean + b,
                                 m->lnf_rstd + b,
                                 m->res[L] + ((size_t) b * T +
                                              (size_t) m->pool_pos[b]) * C,
                                 m->lnf_w->data, m->lnf_b->data, 1, (int) C,
                                 eps);
    }
  // logits (rows, V) = lnf (rows, C) head^T (C, V) + bias
  float *logits = m->big;
  if (m->head_b != NULL)
    gptd__nn_fill_bias (logits, m->head_b->data, rows, V, V);
  gptd__nn_sgemm (FALSE, TRUE, (int) rows, V, (int) C, 1.0f, m->lnf, (int) C,
                  m->head_w->data, (int) C, m->head_b != NULL ? 1.0f : 0.0f,
                  logits, V);
  m->logits_valid = TRUE;

  m->fw_count = 0;
  if (targets != NULL)
    {
      double sum;
      size_t count;
      gptd__nn_cross_entropy_forward (m->ce_lse, logits, m->targets, rows, V,
                                      &sum, &count);
      m->fw_count = count;
      if (loss != NULL)
        *loss = count > 0 ? (float) (sum / (double) count) : NAN;
    }
  return TRUE;
}

gboolean
gptd_gpt_forward (GptdGpt *m, const gint32 *tokens, const gint32 *targets,
                  int B, int T, GptdGptForwardFlags flags, float *loss,
                  GError **error)
{
  g_return_val_if_fail (m != NULL, FALSE);
  g_return_val_if_fail (tokens != NULL, FALSE);
  g_return_val_if_fail (error == NULL || *error == NULL, FALSE);
  return forward (m, tokens, NULL, targets, B, T, flags, loss, error);
}

gboolean
gptd_gpt_forward_pooled (GptdGpt *m, const gint32 *tokens,
                         const gint32 *positions, const gint32 *targets, int B,
                         int T, GptdGptForwardFlags flags, float *loss,
                         GError **error)
{
  g_return_val_if_fail (m != NULL, FALSE);
  g_return_val_if_fail (tokens != NULL, FALSE);
  g_return_val_if_fail (positions != NULL, FALSE);
  g_return_val_if_fail (error == NULL || *error == NULL, FALSE);
  return forward (m, tokens, positions, targets, B, T,
                  flags | GPTD_GPT_FORWARD_LAST_ONLY, loss, error);
}

const float *
gptd_gpt_get_logits (const GptdGpt *m, int *B, int *T, int *V)
{
  g_return_val_if_fail (m != NULL, NULL);
  if (!m->logits_valid)
    return NULL;
  if (B != NULL)
    *B = m->fw_B;
  if (T != NULL)
    *T = (m->fw_flags & GPTD_GPT_FORWARD_LAST_ONLY) ? 1 : m->fw_T;
  if (V != NULL)
    *V = m->n_out;
  return m->big;
}

/* ---- backward -------------------------------------------------------------- */

static float *
grad_or_null (const GptdNnTensor *t)
{
  return trainable (t) ? t->grad : NULL;
}

static gboolean backward (GptdGpt *m, float loss_scale, GError **error);

void
gptd_gpt_set_backward_hook (GptdGpt *m, GptdGptBackwardHook hook, gpointer user_data)
{
  g_return_if_fail (m != NULL);
  m->bw_hook = hook;
  m->bw_hook_data = user_data;
}

size_t
gptd_gpt_get_loss_count (const GptdGpt *m)
{
  g_return_val_if_fail (m != NULL, 0);
  return m->fw_has_targets ? m->fw_count : 0;
}

gboolean
gptd_gpt_backward (GptdGpt *m, float loss_scale, GError **error)
{
  g_return_val_if_fail (m != NULL, FALSE);
  g_return_val_if_fail (error == NULL || *error == NULL, FALSE);
  if (!backward (m, loss_scale, error))
    return FALSE;
  if (m->bw_hook != NULL)
    m->bw_hook (m, -1, m->bw_hook_data);
  return TRUE;
}

static gboolean
backward (GptdGpt *m, float loss_scale, GError **error)
{
  if (!m->logits_valid || !m->fw_has_targets)
    {
      g_set_error (error, GPTD_NN_ERROR, GPTD_NN_ERROR_STATE,
                   "backward needs a forward with targets just before it");
      return FALSE;
    }
  if (m->fw_count == 0)
    {
      g_set_error (error, GPTD_NN_ERROR, GPTD_NN_ERROR_STATE,
                   "backward: every target of the last forward was ignored");
      return FALSE;
    }
  m->logits_valid = FALSE;

  const GptdGptConfig *cfg = &m->cfg;
  const int L = cfg->n_layer, nh = cfg->n_head, V = m->n_out;
  const int B = m->fw_B, T = m->fw_T;
  const size_t C = (size_t) cfg->n_embd, BT = (size_t) B * T;
  const gboolean last_only = (m->fw_flags & GPTD_GPT_FORWARD_LAST_ONLY) != 0;
  const size_t rows = last_only ? (size_t) B : BT;
  const gboolean train = m->fw_train;
  const guint64 counter = m->fw_counter;

  /* How far down gradients must flow. */
  gboolean emb = trainable (m->wpe) || trainable (m->wte);
  int lowest = emb ? -1 : L;
  if (!emb)
    for (int l = 0; l < L; l++)
      if (block_trainable (&m->blocks[l]))
        {
          lowest = l;
          break;
        }
  gboolean need_lnf_input = lowest < L;
  if (MAX (lowest, 0) < m->plan_keep)
    {
      g_set_error (error, GPTD_NN_ERROR, GPTD_NN_ERROR_STATE,
                   "backward: parameters were unfrozen after the forward, "
                   "which kept no activations below block %d", m->plan_keep);
      return FALSE;
    }
  if (m->grads == NULL)
    {
      g_set_error (error, GPTD_NN_ERROR, GPTD_NN_ERROR_NO_MEMORY,
                   "cannot allocate gradients for %zu parameters",
                   m->n_params - first_trainable_offset (m));
      return FALSE;
    }

  // dlogits in place: (rows, V)
  float *dlogits = m->big;
  gptd__nn_cross_entropy_backward (dlogits, m->ce_lse, m->targets, rows, V,
                                   loss_scale / (float) m->fw_count);
  if (trainable (m->head_w))
    gptd__nn_sgemm (TRUE, FALSE, V, (int) C, (int) rows, 1.0f, dlogits, V,
                    m->lnf, (int) C, 1.0f, m->head_w->grad, (int) C);
  if (trainable (m->head_b))
    gptd__nn_bias_backward (m->head_b->grad, dlogits, rows, V, V);
  if (!need_lnf_input && !trainable (m->lnf_w) && !trainable (m->lnf_b))
    return TRUE;
  // dlnf (rows, C) = dlogits (rows, V) head (V, C)
  float *dlnf = m->branch;
  gptd__nn_sgemm (FALSE, FALSE, (int) rows, (int) C, V, 1.0f, dlogits, V,
                  m->head_w->data, (int) C, 0.0f, dlnf, (int) C);

  /* The logits are dead: their memory becomes the backward scratch. */
  float *dres = m->big;                /* (BT,C) */
  float *dbranch = dres + BT * C;      /* (BT,C) */
  float *dln = dbranch + BT * C;       /* (BT,C), also d(atty) */
  float *dwide = dln + BT * C;         /* (BT,4C): d(fch) or d(qkv) */
  float *ln_scratch = m->scratch + (size_t) gptd_nn_get_num_threads () * 3 *
                                       m->plan_t * m->plan_t;
  memset (dres, 0, BT * C * sizeof (float));
  if (last_only)
    for (int b = 0; b < B; b++)
      {
        size_t r = (size_t) b * T + (size_t) m->pool_pos[b];
        gptd__nn_layernorm_backward (dres + r * C, grad_or_null (m->lnf_w),
                                     grad_or_null (m->lnf_b), dlnf + b * C,
                                     m->res[L] + r * C, m->lnf_mean + b,
                                     m->lnf_rstd + b, m->lnf_w->data, 1,
                                     (int) C, ln_scratch);
      }
  else
    gptd__nn_layernorm_backward (dres, grad_or_null (m->lnf_w),
                                 grad_or_null (m->lnf_b), dlnf, m->res[L],
                                 m->lnf_mean, m->lnf_rstd, m->lnf_w->data, BT,
                                 (int) C, ln_scratch);

  for (int l = L - 1; l >= 0 && l >= lowest; l--)
    {
      Block *bl = &m->blocks[l];
      Acts *a = &m->acts[l];
      gboolean below = l > lowest;
      GptdNnDropout d;

      /* MLP branch: res[l+1] = mid + drop(gelu(fch) Wfcp + b). */
      d = drop_for (m, train, counter, SITE_MLP_RES (l));
      const float *db_ = dres;
      if (d.threshold != 0)
        {
          gptd__nn_dropout_apply (dbranch, dres, &d, BT * C);
          db_ = dbranch;
        }
      GptdNnLora lo;
      // dfch (BT,4C) = (db_ Wfcp^T) * gelu'(fch)
      gptd__nn_linear_backward (dwide, grad_or_null (bl->fcp_w),
                                grad_or_null (bl->fcp_b), db_, a->fchg,
                                bl->fcp_w->data, BT, 4 * (int) C, (int) C,
                                a->fch,
                                gptd__gpt_lora_backward (m, &lo, l, 3, db_,
                                                         a->fchg, BT));
      gptd__nn_linear_backward (dln, grad_or_null (bl->fc_w),
                                grad_or_null (bl->fc_b), dwide, a->ln2,
                                bl->fc_w->data, BT, (int) C, 4 * (int) C,
                                NULL,
                                gptd__gpt_lora_backward (m, &lo, l, 2, dwide,
                                                         a->ln2, BT));
      gptd__nn_layernorm_backward (dres, grad_or_null (bl->ln2_w),
                                   grad_or_null (bl->ln2_b), dln, a->mid,
                                   a->ln2_mean, a->ln2_rstd, bl->ln2_w->data,
                                   BT, (int) C, ln_scratch);

      /* Attention branch: mid = res[l] + drop(y Wproj + b). */
      d = drop_for (m, train, counter, SITE_ATT_RES (l));
      db_ = dres;
      if (d.threshold != 0)
        {
          gptd__nn_dropout_apply (dbranch, dres, &d, BT * C);
          db_ = dbranch;
        }
      gptd__nn_linear_backward (dln, grad_or_null (bl->proj_w),
                                grad_or_null (bl->proj_b), db_, a->atty,
                                bl->proj_w->data, BT, (int) C, (int) C, NULL,
                                gptd__gpt_lora_backward (m, &lo, l, 1, db_,
                                                         a->atty, BT));
      d = drop_for (m, train, counter, SITE_ATT (l));
      gptd__nn_attention_backward (dwide, dln, a->atty, a->att_lse, a->qkv, B,
                                   T, (int) C, nh, &d, m->scratch);
      gboolean need_dln1 = below || trainable (bl->ln1_w) ||
                           trainable (bl->ln1_b);
      gptd__nn_linear_backward (need_dln1 ? dln : NULL,
                                grad_or_null (bl->attn_w),
                                grad_or_null (bl->attn_b), dwide, a->ln1,
                                bl->attn_w->data, BT, (int) C, 3 * (int) C,
                                NULL,
                                gptd__gpt_lora_backward (m, &lo, l, 0, dwide,
                                                         a->ln1, BT));
      if (need_dln1)
        gptd__nn_layernorm_backward (dres, grad_or_null (bl->ln1_w),
                                     grad_or_null (bl->ln1_b), dln, m->res[l],
                                     a->ln1_mean, a->ln1_rstd,
                                     bl->ln1_w->data, BT, (int) C,
                                     ln_scratch);
      /* Block l's gradients are final. */
      if (m->bw_hook != NULL)
        m->bw_hook (m, l, m->bw_hook_data);
    }

  if (lowest < 0)
    {
      GptdNnDropout d = drop_for (m, train, counter, SITE_EMBED);
      if (d.threshold != 0)
        gptd__nn_dropout_apply (dres, dres, &d, BT * C);
      gptd__nn_embed_backward (grad_or_null (m->wte), grad_or_null (m->wpe),
                               dres, m->tokens, B, T, (int) C);
    }
  return TRUE;
}
