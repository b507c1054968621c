/* test-generate.c: tests of text generation (gptd/generate.h): the sampler
 * (greedy ties, top-k, temperature, top-p bounds, the inverse-CDF draw,
 * reproducible seeds), the generator on a tiny random model (KV cache equal
 * to recomputing, eos, cancellation, left truncation, bad input) and greedy
 * continuations from a model directory made by the PyTorch reference script
 * tests/golden/generate/make_golden.py.
 */
#include "config.h"

#include <gptd/generate.h>
#include <gptd/bpe.h>
#include <gptd/nn.h>

#include <json-glib/json-glib.h>
#include <math.h>
#include <string.h>

/* ---- helpers --------------------------------------------------------------- */

/* Deterministic pseudo-random logits in [-scale, scale). */
static void
fill_logits (float *logits, int n, guint32 seed, float scale)
{
  GRand *r = g_rand_new_with_seed (seed);
  for (int i = 0; i < n; i++)
    logits[i] = (float) g_rand_double_range (r, -scale, scale);
  g_rand_free (r);
}

/* Reference softmax of logits / t in double. */
static void
ref_softmax (const float *logits, int n, double t, double *p)
{
  double max = -INFINITY, sum = 0;
  for (int i = 0; i < n; i++)
    max = MAX (max, logits[i]);
  for (int i = 0; i < n; i++)
    sum += (p[i] = exp ((logits[i] - max) / t));
  for (int i = 0; i < n; i++)
    p[i] /= sum;
}

static GptdGenerateOptions
sampled_options (double temperature, int top_k, double top_p, guint64 seed)
{
  GptdGenerateOptions o;
  gptd_generate_options_init (&o);
  o.temperature = temperature;
  o.top_k = top_k;
  o.top_p = top_p;
  o.seed = seed;
  return o;
}

/* ---- options ----------------------------------------------------------------- */

static void
test_options_validate (void)
{
  GptdGenerateOptions o;
  gptd_generate_options_init (&o);
  g_assert_true (gptd_generate_options_validate (&o, NULL));
  g_assert_cmpint (o.max_new_tokens, ==, 50);
  g_assert_cmpfloat (o.temperature, ==, 0.0);
  g_assert_cmpfloat (o.top_p, ==, 1.0);
  g_assert_cmpint (o.eos_id, ==, -1);
  g_assert_true (o.use_kv_cache);

  /* Each of these must be refused, naming the option. */
  GptdGenerateOptions b;
  const struct {
    const char *name;
    double top_p, temperature;
    int top_k, max_new, eos;
  } cases[] = {
    { "top-p", 0.0, 1.0, 0, 10, -1 },
    { "top-p", 1.5, 1.0, 0, 10, -1 },
    { "top-p", -0.1, 1.0, 0, 10, -1 },
    { "top-p", NAN, 1.0, 0, 10, -1 },
    { "temperature", 1.0, -1.0, 0, 10, -1 },
    { "temperature", 1.0, NAN, 0, 10, -1 },
    { "temperature", 1.0, INFINITY, 0, 10, -1 },
    { "top-k", 1.0, 1.0, -1, 10, -1 },
    { "max-new-tokens", 1.0, 1.0, 0, -1, -1 },
    { "eos-id", 1.0, 1.0, 0, 10, -2 },
  };
  for (guint i = 0; i < G_N_ELEMENTS (cases); i++)
    {
      gptd_generate_options_init (&b);
      b.top_p = cases[i].top_p;
      b.temperature = cases[i].temperature;
      b.top_k = cases[i].top_k;
      b.max_new_tokens = cases[i].max_new;
      b.eos_id = cases[i].eos;
      g_autoptr (GError) error = NULL;
      g_assert_false (gptd_generate_options_validate (&b, &error));
      g_assert_error (error, GPTD_GENERATE_ERROR, GPTD_GENERATE_ERROR_OPTIONS);
      g_assert_nonnull (strstr (error->message, cases[i].name));
    }
  /* The edges that are allowed. */
  gptd_generate_options_init (&b);
  b.top_p = 1.0;
  b.max_new_tokens = 0;
  g_assert_true (gptd_generate_options_validate (&b, NULL));
  b.top_p = 1e-9;
  g_assert_true (gptd_generate_options_validate (&b, NULL));
}

/* ---- sampler ----------------------------------------------------------------- */

static void
test_sampler_argmax_ties (void)
{
  float v[] = { 1.0f, 3.0f, -2.0f, 3.0f, 0.5f, 3.0f };
  g_assert_cmpint (gptd_argmax (v, 6), ==, 1);
  float w[] = { NAN, -INFINITY, -5.0f, -5.0f };
  g_assert_cmpint (gptd_argmax (w, 4), ==, 2);
  float one[] = { 42.0f };
  g_assert_cmpint (gptd_argmax (one, 1), ==, 0);

  /* Greedy options: the sampler gives the argmax and draws nothing. */
  GptdGenerateOptions o;
  gptd_generate_options_init (&o);
  g_autoptr (GptdSampler) s = gptd_sampler_new (&o, 6);
  g_autoptr (GptdSampler) fresh = gptd_sampler_new (&o, 6);
  for (int i = 0; i < 10; i++)
    g_assert_cmpint (gptd_sampler_sample (s, v), ==, 1);
  g_assert_cmpfloat (gptd_sampler_uniform (s), ==, gptd_sampler_uniform (fresh));
  double p[6];
  g_assert_cmpint (gptd_sampler_get_distribution (s, v, p), ==, 1);
  g_assert_cmpfloat (p[1], ==, 1.0);
  g_assert_cmpfloat (p[3], ==, 0.0);
}

static void
test_sampler_temperature (void)
{
  enum { V = 300 };
  float logits[V];
  double p[V], ref[V];
  fill_logits (logits, V, 5, 4.0f);
  const double temps[] = { 0.25, 0.7, 1.0, 3.0 };
  for (guint k = 0; k < G_N_ELEMENTS (temps); k++)
    {
      GptdGenerateOptions o = sampled_options (temps[k], 0, 1.0, 1);
      g_autoptr (GptdSampler) s = gptd_sampler_new (&o, V);
      g_assert_cmpint (gptd_sampler_get_distribution (s, logits, p), ==, V);
      ref_softmax (logits, V, temps[k], ref);
      for (int i = 0; i < V; i++)
        g_assert_cmpfloat_with_epsilon (p[i], ref[i], 1e-12);
    }
}

static void
test_sampler_top_k (void)
{
  enum { V = 500 };
  float logits[V];
  double p[V], ref[V];
  fill_logits (logits, V, 11, 3.0f);
  const int ks[] = { 1, 2, 7, 50, 499, 500, 1000 };
  for (guint j = 0; j < G_N_ELEMENTS (ks); j++)
    {
      int k = ks[j];
      GptdGenerateOptions o = sampled_options (0.8, k, 1.0, 1);
      g_autoptr (GptdSampler) s = gptd_sampler_new (&o, V);
      int n = gptd_sampler_get_distribution (s, logits, p);
      g_assert_cmpint (n, ==, MIN (k, V));
      /* The kept tokens are exactly the k largest logits... */
      for (int i = 0; i < V; i++)
        {
          int larger = 0;
          for (int m = 0; m < V; m++)
            larger += logits[m] > logits[i];
          g_assert_cmpint (p[i] > 0.0, ==, larger < k);
        }
      /* ...with the softmax of logits / T renormalised over them. */
      float kept[V];
      for (int i = 0; i < V; i++)
        kept[i] = p[i] > 0.0 ? logits[i] : -INFINITY;
      ref_softmax (kept, V, 0.8, ref);
      for (int i = 0; i < V; i++)
        g_assert_cmpfloat_with_epsilon (p[i], ref[i], 1e-12);
    }

  /* Ties with the k-th largest logit all stay, as in the book. */
  float t[] = { 1.0f, 5.0f, 3.0f, 3.0f, 0.0f, 3.0f };
  GptdGenerateOptions o = sampled_options (1.0, 2, 1.0, 1);
  g_autoptr (GptdSampler) s = gptd_sampler_new (&o, 6);
  double q[6];
  g_assert_cmpint (gptd_sampler_get_distribution (s, t, q), ==, 4);
  g_assert_cmpfloat (q[0], ==, 0.0);
  g_assert_cmpfloat (q[4], ==, 0.0);
  g_assert_cmpfloat_with_epsilon (q[2], q[3], 1e-15);
}

static void
test_sampler_top_k_1_is_greedy (void)
{
  enum { V = 1000 };
  float logits[V];
  for (guint32 trial = 0; trial < 50; trial++)
    {
      fill_logits (logits, V, 100 + trial, 2.0f);
      GptdGenerateOptions o = sampled_options (1.5, 1, 1.0, trial);
      g_autoptr (GptdSampler) s = gptd_sampler_new (&o, V);
      g_assert_cmpint (gptd_sampler_sample (s, logits), ==,
                       gptd_argmax (logits, V));
    }
}

/* For many distributions and thresholds, the top-p set is the smallest set of
 * most probable tokens reaching p. */
static void
test_sampler_top_p_bounds (void)
{
  enum { V = 2000 };
  float logits[V];
  double p[V], ref[V];
  const double ps[] = { 1e-6, 0.05, 0.3, 0.5, 0.9, 0.95, 0.999, 0.999999 };
  const float scales[] = { 0.01f, 1.0f, 8.0f, 40.0f };
  for (guint sc = 0; sc < G_N_ELEMENTS (scales); sc++)
    for (guint j = 0; j < G_N_ELEMENTS (ps); j++)
      {
        fill_logits (logits, V, 1000 + sc * 37 + j, scales[sc]);
        GptdGenerateOptions o = sampled_options (1.0, 0, ps[j], 3);
        g_autoptr (GptdSampler) s = gptd_sampler_new (&o, V);
        int n = gptd_sampler_get_distribution (s, logits, p);
        g_assert_cmpint (n, >=, 1);
        ref_softmax (logits, V, 1.0, ref);

        double kept_mass = 0, min_kept = 1, max_dropped = 0, sum = 0;
        int count = 0;
        for (int i = 0; i < V; i++)
          {
            sum += p[i];
            if (p[i] > 0)
              {
                count++;
                kept_mass += ref[i];
                min_kept = MIN (min_kept, ref[i]);
              }
            else
              max_dropped = MAX (max_dropped, ref[i]);
          }
        g_assert_cmpint (count, ==, n);
        g_assert_cmpfloat_with_epsilon (sum, 1.0, 1e-9);
        /* Kept tokens are the most probable ones. */
        g_assert_cmpfloat (min_kept, >=, max_dropped);
        /* The set reaches p (up to rounding of the cumulative sum)... */
        g_assert_cmpfloat (kept_mass, >=, ps[j] - 1e-9);
        /* ...and is the smallest that does: without its least likely token
         * it would not (unless it is the single token kept). */
        if (n > 1)
          g_assert_cmpfloat (kept_mass - min_kept, <, ps[j] + 1e-9);
        /* Every kept share is the original probability over the kept mass. */
        for (int i = 0; i < V; i++)
          if (p[i] > 0)
            g_assert_cmpfloat_with_epsilon (p[i], ref[i] / kept_mass, 1e-9);
      }

  /* top-p 1 keeps everything; a tiny top-p keeps the single argmax. */
  fill_logits (logits, V, 7, 1.0f);
  GptdGenerateOptions all = sampled_options (1.0, 0, 1.0, 3);
  g_autoptr (GptdSampler) sa = gptd_sampler_new (&all, V);
  g_assert_cmpint (gptd_sampler_get_distribution (sa, logits, p), ==, V);
  GptdGenerateOptions tiny = sampled_options (1.0, 0, 1e-9, 3);
  g_autoptr (GptdSampler) st = gptd_sampler_new (&tiny, V);
  g_assert_cmpint (gptd_sampler_get_distribution (st, logits, p), ==, 1);
  g_assert_cmpfloat (p[gptd_argmax (logits, V)], ==, 1.0);
  for (int i = 0; i < 20; i++)
    g_assert_cmpint (gptd_sampler_sample (st, logits), ==, gptd_argmax (logits, V));
}

/* Draws follow the distribution: observed frequencies within 4 standard
 * errors of the probabilities. */
static void
test_sampler_frequencies (void)
{
  float logits[] = { 0.0f, 1.0f, 2.0f, -1.0f, 0.5f, -30.0f, 1.5f, 0.2f };
  enum { V = G_N_ELEMENTS (logits), N = 40000 };
  GptdGenerateOptions o = sampled_options (1.0, 6, 0.95, 99);
  g_autoptr (GptdSampler) s = gptd_sampler_new (&o, V);
  double p[V];
  gptd_sampler_get_distribution (s, logits, p);
  int counts[V] = { 0 };
  for (int i = 0; i < N; i++)
    {
      gint32 id = gptd_sampler_sample (s, logits);
      g_assert_cmpint (id, >=, 0);
      g_assert_cmpint (id, <, V);
      counts[id]++;
    }
  for (int i = 0; i < V; i++)
    {
      double f = (double) counts[i] / N;
      double se = sqrt (p[i] * (1 - p[i]) / N);
      if (p[i] == 0.0)
        g_assert_cmpint (counts[i], ==, 0);
      else
        g_assert_cmpfloat (fabs (f - p[i]), <=, 4 * se + 1e-12);
    }
}

static void
test_sampler_seed (void)
{
  enum { V = 64, N = 200 };
  float logits[V];
  fill_logits (logits, V, 3, 1.0f);
  GptdGenerateOptions o1 = sampled_options (1.0, 0, 1.0, 42);
  GptdGenerateOptions o2 = sampled_options (1.0, 0, 1.0, 43);
  g_autoptr (GptdSampler) a = gptd_sampler_new (&o1, V);
  g_autoptr (GptdSampler) b = gptd_sampler_new (&o1, V);
  g_autoptr (GptdSampler) c = gptd_sampler_new (&o2, V);
  int same_ab = 0, same_ac = 0;
  for (int i = 0; i < N; i++)
    {
      gint32 x = gptd_sampler_sample (a, logits);
      same_ab += x == gptd_sampler_sample (b, logits);
      same_ac += x == gptd_sampler_sample (c, logits);
    }
  g_assert_cmpint (same_ab, ==, N);
  /* Two seeds agree about as often as two independent draws (1/V-ish);
   * certainly not always. */
  g_assert_cmpint (same_ac, <, N / 4);

  /* The stream is fixed by the seed: xoshiro256** seeded by splitmix64. */
  GptdGenerateOptions z = sampled_options (1.0, 0, 1.0, 0);
  g_autoptr (GptdSampler) d = gptd_sampler_new (&z, V);
  double u = gptd_sampler_uniform (d);
  g_assert_cmpfloat (u, >=, 0.0);
  g_assert_cmpfloat (u, <, 1.0);
  g_autoptr (GptdSampler) e = gptd_sampler_new (&z, V);
  g_assert_cmpfloat (gptd_sampler_uniform (e), ==, u);
}

/* ---- the generator on a tiny random model ------------------------------------- */

static GptdGpt *
tiny_model (int context_length)
{
  GptdGptConfig cfg = {
    .n_layer = 2, .n_head = 2, .n_embd = 16, .context_length = context_length,
    .vocab_size = 61, .n_out = 0, .qkv_bias = TRUE, .tie_embeddings = TRUE,
    .head_bias = FALSE, .dropout = 0.0f, .layer_norm_epsilon = 1e-5f,
  };
  g_autoptr (GError) error = NULL;
  GptdGpt *m = gptd_gpt_new (&cfg, &error);
  g_assert_no_error (error);
  gptd_gpt_init_weights (m, 7);
  /* Spread the weights so that logits differ clearly between tokens. */
  float *w = gptd_gpt_get_params (m);
  size_t n = gptd_gpt_n_params (m);
  for (size_t i = 0; i < n; i++)
    w[i] *= 15.0f;
  for (guint t = 0; t < gptd_gpt_n_tensors (m); t++)
    {
      const GptdNnTensor *x = gptd_gpt_get_tensor (m, t);
      if (strstr (x->name, "ln_") != NULL && g_str_has_suffix (x->name, ".weight"))
        for (size_t i = 0; i < x->numel; i++)
          x->data[i] = 1.0f;
    }
  return m;
}

static GptdGenerator *
tiny_generator (int model_context, int window)
{
  g_autoptr (GError) error = NULL;
  GptdGenerator *g = gptd_generator_new (tiny_model (model_context), window,
                                         &error);
  g_assert_no_error (error);
  return g;
}

static GptdGenerateResult *
run_ids (GptdGenerator *g, const gint32 *prompt, int n,
         const GptdGenerateOptions *o)
{
  g_autoptr (GError) error = NULL;
  GptdGenerateResult *r = gptd_generator_generate_ids (g, prompt, n, o, NULL,
                                                       &error);
  g_assert_no_error (error);
  g_assert_nonnull (r);
  return r;
}

static void
assert_same_ids (const GptdGenerateResult *a, const GptdGenerateResult *b)
{
  g_assert_cmpint (a->n_ids, ==, b->n_ids);
  for (int i = 0; i < a->n_ids; i++)
    if (a->ids[i] != b->ids[i])
      g_error ("token %d differs: %d against %d", i, a->ids[i], b->ids[i]);
}

static const gint32 tiny_prompt[] = { 3, 14, 15, 9, 26, 5, 35 };

/* KV cache against recomputing the window, past the end of the context. */
static void
test_generate_kv_cache (void)
{
  g_autoptr (GptdGenerator) g = tiny_generator (12, 0);
  const GptdGenerateOptions modes[] = {
    sampled_options (0.0, 0, 1.0, 1),     /* greedy */
    sampled_options (1.0, 0, 1.0, 5),     /* plain sampling */
    sampled_options (0.7, 20, 0.9, 77),   /* all filters */
  };
  for (guint m = 0; m < G_N_ELEMENTS (modes); m++)
    {
      GptdGenerateOptions o = modes[m];
      o.max_new_tokens = 25; /* 7 + 25 > 12: the window slides */
      o.use_kv_cache = FALSE;
      g_autoptr (GptdGenerateResult) plain = run_ids (g, tiny_prompt, 7, &o);
      o.use_kv_cache = TRUE;
      g_autoptr (GptdGenerateResult) cached = run_ids (g, tiny_prompt, 7, &o);
      g_assert_cmpint (plain->n_ids, ==, 25);
      g_assert_cmpint (plain->stop, ==, GPTD_GENERATE_STOP_LENGTH);
      assert_same_ids (plain, cached);
      /* Twice on the same generator: the cache is reset between calls. */
      g_autoptr (GptdGenerateResult) again = run_ids (g, tiny_prompt, 7, &o);
      assert_same_ids (plain, again);
    }
}

static void
test_generate_seed (void)
{
  g_autoptr (GptdGenerator) g = tiny_generator (32, 0);
  GptdGenerateOptions o = sampled_options (1.5, 0, 1.0, 2024);
  o.max_new_tokens = 20;
  g_autoptr (GptdGenerateResult) a = run_ids (g, tiny_prompt, 7, &o);
  g_autoptr (GptdGenerateResult) b = run_ids (g, tiny_prompt, 7, &o);
  assert_same_ids (a, b);
  o.seed = 2025;
  g_autoptr (GptdGenerateResult) c = run_ids (g, tiny_prompt, 7, &o);
  int same = 0;
  for (int i = 0; i < 20; i++)
    same += a->ids[i] == c->ids[i];
  g_assert_cmpint (same, <, 20);

  /* top-k 1 at any temperature is greedy. */
  GptdGenerateOptions greedy = sampled_options (0.0, 0, 1.0, 1);
  greedy.max_new_tokens = 20;
  GptdGenerateOptions k1 = sampled_options (2.0, 1, 1.0, 9);
  k1.max_new_tokens = 20;
  g_autoptr (GptdGenerateResult) x = run_ids (g, tiny_prompt, 7, &greedy);
  g_autoptr (GptdGenerateResult) y = run_ids (g, tiny_prompt, 7, &k1);
  assert_same_ids (x, y);
}

/* Greedy decoding equals argmax over the logits of a full forward. */
static void
test_generate_greedy_is_argmax (void)
{
  g_autoptr (GptdGenerator) g = tiny_generator (12, 0);
  GptdGenerateOptions o = sampled_options (0.0, 0, 1.0, 1);
  o.max_new_tokens = 10;
  g_autoptr (GptdGenerateResult) r = run_ids (g, tiny_prompt, 7, &o);
  gint32 seq[32];
  memcpy (seq, tiny_prompt, sizeof tiny_prompt);
  int len = 7;
  GptdGpt *m = gptd_generator_get_model (g);
  for (int i = 0; i < 10; i++)
    {
      int start = MAX (0, len - 12);
      g_autoptr (GError) error = NULL;
      g_assert_true (gptd_gpt_forward (m, seq + start, NULL, 1, len - start,
                                       GPTD_GPT_FORWARD_NONE, NULL, &error));
      int T = 0, V = 0;
      const float *logits = gptd_gpt_get_logits (m, NULL, &T, &V);
      gint32 next = gptd_argmax (logits + (size_t) (T - 1) * V, V);
      g_assert_cmpint (r->ids[i], ==, next);
      seq[len++] = next;
    }
}

static void
test_generate_eos (void)
{
  g_autoptr (GptdGenerator) g = tiny_generator (32, 0);
  GptdGenerateOptions o = sampled_options (0.0, 0, 1.0, 1);
  o.max_new_tokens = 12;
  g_autoptr (GptdGenerateResult) full = run_ids (g, tiny_prompt, 7, &o);
  /* Stop at the first occurrence of the 5th token: the eos is not output. */
  o.eos_id = full->ids[4];
  int first = 0;
  while (full->ids[first] != o.eos_id)
    first++;
  g_autoptr (GptdGenerateResult) cut = run_ids (g, tiny_prompt, 7, &o);
  g_assert_cmpint (cut->stop, ==, GPTD_GENERATE_STOP_EOS);
  g_assert_cmpint (cut->n_ids, ==, first);
  for (int i = 0; i < first; i++)
    g_assert_cmpint (cut->ids[i], ==, full->ids[i]);
  g_assert_cmpstr (gptd_generate_stop_to_string (cut->stop), ==, "eos");
  g_assert_cmpstr (gptd_generate_stop_to_string (full->stop), ==, "length");
}

typedef struct {
  int tokens;
  int cancel_after;
  GArray *ids;
} CancelData;

static void
count_token (gint32 id, const char *text, gsize len, gpointer user_data)
{
  CancelData *d = user_data;
  g_assert_cmpstr (text, ==, ""); /* no tokenizer: no text */
  g_assert_cmpuint (len, ==, 0);
  g_array_append_val (d->ids, id);
  d->tokens++;
}

static gboolean
cancel_after (gpointer user_data)
{
  CancelData *d = user_data;
  return d->tokens >= d->cancel_after;
}

static void
test_generate_cancel (void)
{
  g_autoptr (GptdGenerator) g = tiny_generator (32, 0);
  GptdGenerateOptions o = sampled_options (0.0, 0, 1.0, 1);
  o.max_new_tokens = 12;
  CancelData d = { 0, 4, g_array_new (FALSE, FALSE, sizeof (gint32)) };
  GptdGenerateCallbacks cb = { count_token, cancel_after, &d };
  g_autoptr (GError) error = NULL;
  g_autoptr (GptdGenerateResult) r =
    gptd_generator_generate_ids (g, tiny_prompt, 7, &o, &cb, &error);
  g_assert_no_error (error);
  g_assert_cmpint (r->stop, ==, GPTD_GENERATE_STOP_CANCELLED);
  g_assert_cmpint (r->n_ids, ==, 4);
  g_assert_cmpuint (d.ids->len, ==, 4);
  for (int i = 0; i < 4; i++)
    g_assert_cmpint (g_array_index (d.ids, gint32, i), ==, r->ids[i]);
  g_assert_null (r->text);
  g_array_unref (d.ids);
}

/* A prompt longer than the window is truncated from the left: the output is
 * that of its last window. */
static void
test_generate_truncate (void)
{
  g_autoptr (GptdGenerator) g = tiny_generator (12, 8);
  g_assert_cmpint (gptd_generator_get_context_length (g), ==, 8);
  gint32 longp[20];
  for (int i = 0; i < 20; i++)
    longp[i] = (i * 7 + 3) % 61;
  for (int kv = 0; kv < 2; kv++)
    {
      GptdGenerateOptions o = sampled_options (0.9, 0, 0.95, 31);
      o.max_new_tokens = 6;
      o.use_kv_cache = kv;
      g_autoptr (GptdGenerateResult) a = run_ids (g, longp, 20, &o);
      g_autoptr (GptdGenerateResult) b = run_ids (g, longp + 12, 8, &o);
      g_assert_cmpint (a->n_prompt, ==, 8);
      g_assert_cmpint (a->n_prompt_dropped, ==, 12);
      g_assert_cmpint (b->n_prompt_dropped, ==, 0);
      assert_same_ids (a, b);
    }
}

static void
test_generate_bad_input (void)
{
  g_autoptr (GError) error = NULL;
  GptdGenerator *none = gptd_generator_new (tiny_model (12), 13, &error);
  g_assert_null (none);
  g_assert_error (error, GPTD_GENERATE_ERROR, GPTD_GENERATE_ERROR_CONTEXT);
  g_clear_error (&error);

  g_autoptr (GptdGenerator) g = tiny_generator (12, 0);
  GptdGenerateOptions o = sampled_options (0.0, 0, 1.0, 1);
  gint32 bad[] = { 1, 61 };
  g_assert_null (gptd_generator_generate_ids (g, bad, 2, &o, NULL, &error));
  g_assert_error (error, GPTD_GENERATE_ERROR, GPTD_GENERATE_ERROR_PROMPT);
  g_clear_error (&error);
  g_assert_null (gptd_generator_generate_ids (g, bad, 0, &o, NULL, &error));
  g_assert_error (error, GPTD_GENERATE_ERROR, GPTD_GENERATE_ERROR_PROMPT);
  g_clear_error (&error);
  o.top_p = 1.5;
  g_assert_null (gptd_generator_generate_ids (g, tiny_prompt, 7, &o, NULL, &error));
  g_assert_error (error, GPTD_GENERATE_ERROR, GPTD_GENERATE_ERROR_OPTIONS);
  g_clear_error (&error);
  o.top_p = 1.0;
  g_assert_false (gptd_generator_has_tokenizer (g));
  int n;
  g_assert_null (gptd_generator_generate (g, "hello", &o, NULL, &error));
  g_assert_error (error, GPTD_GENERATE_ERROR, GPTD_GENERATE_ERROR_TOKENIZER);
  g_clear_error (&error);
  g_assert_null (gptd_generator_encode (g, "hello", &n, &error));
  g_assert_error (error, GPTD_GENERATE_ERROR, GPTD_GENERATE_ERROR_TOKENIZER);
  g_clear_error (&error);

  /* max-new-tokens 0 gives an empty continuation. */
  o.max_new_tokens = 0;
  g_autoptr (GptdGenerateResult) r = run_ids (g, tiny_prompt, 7, &o);
  g_assert_cmpint (r->n_ids, ==, 0);

  /* A classifier head cannot generate. */
  GptdGptConfig cfg = *gptd_gpt_get_config (gptd_generator_get_model (g));
  cfg.tie_embeddings = FALSE;
  cfg.n_out = 2;
  GptdGpt *cls = gptd_gpt_new (&cfg, &error);
  g_assert_no_error (error);
  g_assert_null (gptd_generator_new (cls, 0, &error));
  g_assert_error (error, GPTD_GENERATE_ERROR, GPTD_GENERATE_ERROR_MODEL);
}

/* Generators on different threads at once give what they give alone (the
 * daemon serves concurrent requests this way). */
typedef struct {
  GptdGenerator *g;
  GptdGenerateOptions o;
  GptdGenerateResult *r;
} ThreadJob;

static gpointer
thread_job (gpointer data)
{
  ThreadJob *j = data;
  for (int rep = 0; rep < 3; rep++)
    {
      gptd_generate_result_free (j->r);
      j->r = gptd_generator_generate_ids (j->g, tiny_prompt, 7, &j->o, NULL, NULL);
    }
  return NULL;
}

static void
test_generate_threads (void)
{
  enum { N = 3 };
  ThreadJob jobs[N];
  GptdGenerateResult *alone[N];
  for (int i = 0; i < N; i++)
    {
      jobs[i].g = tiny_generator (16, 0);
      jobs[i].o = sampled_options (i == 0 ? 0.0 : 1.0, 0, 0.9, 100 + i);
      jobs[i].o.max_new_tokens = 30;
      jobs[i].o.use_kv_cache = i != 2;
      jobs[i].r = NULL;
      alone[i] = run_ids (jobs[i].g, tiny_prompt, 7, &jobs[i].o);
    }
  GThread *threads[N];
  for (int i = 0; i < N; i++)
    threads[i] = g_thread_new ("gen", thread_job, &jobs[i]);
  for (int i = 0; i < N; i++)
    {
      g_thread_join (threads[i]);
      g_assert_nonnull (jobs[i].r);
      assert_same_ids (alone[i], jobs[i].r);
      gptd_generate_result_free (jobs[i].r);
      gptd_generate_result_free (alone[i]);
      gptd_generator_free (jobs[i].g);
    }
}

/* ---- golden: the PyTorch reference's greedy continuations --------------------- */

static char *
golden_path (const char *name)
{
  return g_test_build_filename (G_TEST_DIST, "golden", "generate", name, NULL);
}

static void
test_golden_greedy (void)
{
  g_autofree char *model_dir = golden_path ("model");
  g_autofree char *greedy = golden_path ("greedy.json");
  g_autoptr (GError) error = NULL;
  g_autoptr (JsonParser) parser = json_parser_new ();
  g_assert_true (json_parser_load_from_file (parser, greedy, &error));
  g_assert_no_error (error);
  JsonArray *cases = json_object_get_array_member (
    json_node_get_object (json_parser_get_root (parser)), "cases");
  g_assert_cmpuint (json_array_get_length (cases), >=, 4);

  for (guint c = 0; c < json_array_get_length (cases); c++)
    {
      JsonObject *k = json_array_get_object_element (cases, c);
      const char *name = json_object_get_string_member (k, "name");
      int ctx = (int) json_object_get_int_member (k, "context_length");
      JsonArray *jp = json_object_get_array_member (k, "prompt");
      JsonArray *jc = json_object_get_array_member (k, "continuation");
      int n_prompt = (int) json_array_get_length (jp);
      int n_new = (int) json_object_get_int_member (k, "max_new_tokens");
      g_assert_cmpint ((int) json_array_get_length (jc), ==, n_new);
      g_autofree gint32 *prompt = g_new (gint32, n_prompt);
      for (int i = 0; i < n_prompt; i++)
        prompt[i] = (gint32) json_array_get_int_element (jp, i);

      g_autoptr (GptdGenerator) g = gptd_generator_load (model_dir, NULL, ctx,
                                                         &error);
      g_assert_no_error (error);
      g_assert_true (gptd_generator_has_tokenizer (g));
      for (int kv = 0; kv < 2; kv++)
        {
          GptdGenerateOptions o = sampled_options (0.0, 0, 1.0, 1);
          o.max_new_tokens = n_new;
          o.use_kv_cache = kv;
          g_autoptr (GptdGenerateResult) r = run_ids (g, prompt, n_prompt, &o);
          g_assert_cmpint (r->n_ids, ==, n_new);
          for (int i = 0; i < n_new; i++)
            if (r->ids[i] != json_array_get_int_element (jc, i))
              g_error ("golden %s (kv-cache %d): token %d is %d, the reference "
                       "has %" G_GINT64_FORMAT,
                       name, kv, i, r->ids[i], json_array_get_int_element (jc, i));
        }
    }
}

/* ---- text: streaming whole UTF-8 characters ---------------------------------- */

typedef struct {
  GString *all;
  int calls;
  int final_calls;
} StreamData;

static void
collect_text (gint32 id, const char *text, gsize len, gpointer user_data)
{
  StreamData *d = user_data;
  g_assert_cmpuint (strlen (text), ==, len);
  g_assert_true (g_utf8_validate (text, (gssize) len, NULL));
  g_string_append_len (d->all, text, len);
  d->calls++;
  if (id < 0)
    d->final_calls++;
}

static void
test_generate_text (void)
{
  g_autofree char *model_dir = golden_path ("model");
  g_autoptr (GError) error = NULL;
  g_autoptr (GptdGenerator) g = gptd_generator_load (model_dir, NULL, 0, &error);
  g_assert_no_error (error);

  int n = 0;
  g_autofree gint32 *ids = gptd_generator_encode (g, "the cat and the dog", &n,
                                                  &error);
  g_assert_no_error (error);
  /* "the" and " and" are merged tokens of the tiny vocabulary. */
  g_assert_cmpint (n, <, (int) strlen ("the cat and the dog"));

  g_autoptr (GptdBpe) bpe = gptd_bpe_load (model_dir, &error);
  g_assert_no_error (error);
  const char *prompts[] = { "the cat and the dog", "caf\xc3\xa9 \xe2\x82\xac" };
  for (guint p = 0; p < G_N_ELEMENTS (prompts); p++)
    for (int kv = 0; kv < 2; kv++)
      {
        GptdGenerateOptions o = sampled_options (1.0, 0, 1.0, 5 + p);
        o.max_new_tokens = 40;
        o.use_kv_cache = kv;
        StreamData d = { g_string_new (NULL), 0, 0 };
        GptdGenerateCallbacks cb = { collect_text, NULL, &d };
        g_autoptr (GptdGenerateResult) r =
          gptd_generator_generate (g, prompts[p], &o, &cb, &error);
        g_assert_no_error (error);
        g_assert_cmpint (r->n_ids, ==, 40);
        g_assert_cmpint (d.calls, ==, 40 + d.final_calls);
        g_assert_cmpint (d.final_calls, <=, 1);
        g_assert_true (g_utf8_validate (r->text, (gssize) r->text_len, NULL));
        g_assert_cmpstr (d.all->str, ==, r->text);
        /* Where the raw bytes are valid UTF-8, the text is exactly them. */
        g_autoptr (GString) raw = g_string_new (NULL);
        g_assert_true (gptd_bpe_decode (bpe, (const guint32 *) r->ids, r->n_ids,
                                        raw, &error));
        if (g_utf8_validate (raw->str, (gssize) raw->len, NULL))
          g_assert_cmpstr (raw->str, ==, r->text);
        g_string_free (d.all, TRUE);
      }
}

/* ---- stop strings ------------------------------------------------------------- */

/* Feeds @pieces (NULL-terminated) to a matcher of @stops; returns what it
 * released (with the held tail when no stop string came), and whether and
 * after which piece it matched. */
static char *
run_matcher (const char *const *stops, const char *const *pieces, int *matched_at)
{
  g_autoptr (GError) error = NULL;
  g_autoptr (GptdStopMatcher) m = gptd_stop_matcher_new (stops, &error);
  g_assert_no_error (error);
  g_autoptr (GString) out = g_string_new (NULL);
  *matched_at = -1;
  for (int i = 0; pieces[i] != NULL; i++)
    {
      gsize before = out->len;
      gboolean hit = gptd_stop_matcher_push (m, pieces[i], strlen (pieces[i]), out);
      /* What is released is always whole characters. */
      g_assert_true (g_utf8_validate (out->str + before, (gssize) (out->len - before), NULL));
      if (hit)
        {
          *matched_at = i;
          /* Later text is dropped. */
          g_assert_true (gptd_stop_matcher_push (m, "more", 4, out));
          break;
        }
    }
  gptd_stop_matcher_finish (m, out);
  return g_string_free (g_steal_pointer (&out), FALSE);
}

static void
test_stop_matcher (void)
{
  static const struct {
    const char *what;
    const char *stops[4];
    const char *pieces[8];
    const char *out;
    int matched_at;    /* -1: no match */
  } cases[] = {
    { "whole in one piece", { "END" }, { "abc END def" }, "abc ", 0 },
    { "split over three pieces", { "STOP" }, { "hello S", "T", "OP and more" }, "hello ", 2 },
    { "a false start then the real one", { "abc" }, { "xab", "abab", "c!" }, "xabab", 2 },
    { "a prefix that never completes", { "\n\n" }, { "line\n", "next" }, "line\nnext", -1 },
    { "held tail released at the end", { "###" }, { "a #", "#" }, "a ##", -1 },
    { "the earliest of several wins", { "world", "lo w" }, { "hello world" }, "hel", 0 },
    { "several: the one that starts first wins", { "abcdef", "cd" }, { "xab", "cdef" }, "x", 1 },
    { "several: a shorter one inside a longer prefix", { "abcdef", "cd" }, { "xab", "cdx" }, "xab", 1 },
    { "overlapping candidates", { "aab" }, { "a", "a", "a", "b", "c" }, "a", 3 },
    { "at the very start", { "Q:" }, { "Q", ":", " x" }, "", 1 },
    { "UTF-8 stop string split mid-character pieces",
      { "\xc3\xa9t\xc3\xa9" }, { "l'\xc3\xa9", "t\xc3", "\xa9 x" }, "l'", -2 },
    { "UTF-8 text, ASCII stop", { "." }, { "caf\xc3\xa9", "\xe2\x82\xac.", "x" },
      "caf\xc3\xa9\xe2\x82\xac", 1 },
    { "no stop strings", { NULL }, { "a", "b" }, "ab", -1 },
  };
  for (gsize i = 0; i < G_N_ELEMENTS (cases); i++)
    {
      if (cases[i].matched_at == -2)
        continue;  /* pieces that are not whole characters: checked below */
      int at;
      g_autofree char *out = run_matcher (cases[i].stops, cases[i].pieces, &at);
      if (g_strcmp0 (out, cases[i].out) != 0 || at != cases[i].matched_at)
        g_error ("stop matcher, %s: released \"%s\" (matched at %d), expected \"%s\" (%d)",
                 cases[i].what, out, at, cases[i].out, cases[i].matched_at);
    }

  /* Pieces as the generator gives them are whole characters; a multi-byte
   * stop string split between characters is held back whole. */
  const char *stops[] = { "\xc3\xa9t\xc3\xa9", NULL };
  g_autoptr (GptdStopMatcher) m = gptd_stop_matcher_new (stops, NULL);
  g_autoptr (GString) out = g_string_new (NULL);
  g_assert_false (gptd_stop_matcher_push (m, "l'\xc3\xa9", 4, out));
  g_assert_cmpstr (out->str, ==, "l'");
  g_assert_cmpuint (gptd_stop_matcher_get_held (m), ==, 2);
  g_assert_false (gptd_stop_matcher_push (m, "t", 1, out));
  g_assert_cmpstr (out->str, ==, "l'");
  g_assert_true (gptd_stop_matcher_push (m, "\xc3\xa9!", 3, out));
  g_assert_cmpstr (out->str, ==, "l'");
  g_assert_cmpuint (gptd_stop_matcher_get_held (m), ==, 0);

  /* A character that only shares a first byte with the stop string is
   * released once it is whole. */
  g_string_truncate (out, 0);
  g_autoptr (GptdStopMatcher) m2 = gptd_stop_matcher_new (stops, NULL);
  g_assert_false (gptd_stop_matcher_push (m2, "\xc3\xa8", 2, out));
  g_assert_cmpstr (out->str, ==, "\xc3\xa8");
}

static void
test_stop_matcher_bad (void)
{
  static const char *const empty[] = { "ok", "", NULL };
  static const char *const invalid[] = { "\xff\xfe", NULL };
  g_autofree char *long_one = g_strnfill (GPTD_STOP_STRING_MAX_BYTES + 1, 'x');
  const char *const too_long[] = { long_one, NULL };
  const char *many[GPTD_STOP_STRINGS_MAX + 2];
  for (int i = 0; i <= GPTD_STOP_STRINGS_MAX; i++)
    many[i] = "s";
  many[GPTD_STOP_STRINGS_MAX + 1] = NULL;
  const struct {
    const char *const *stops;
    const char *message;
  } cases[] = {
    { empty, "stop string 2 is empty" },
    { invalid, "stop string 1 is not valid UTF-8" },
    { too_long, "more than 256" },
    { many, "at most 16" },
  };
  for (gsize i = 0; i < G_N_ELEMENTS (cases); i++)
    {
      g_autoptr (GError) error = NULL;
      g_assert_null (gptd_stop_matcher_new (cases[i].stops, &error));
      g_assert_error (error, GPTD_GENERATE_ERROR, GPTD_GENERATE_ERROR_OPTIONS);
      g_assert_nonnull (strstr (error->message, cases[i].message));
    }
}

/* The generator ends the text before a stop string taken from the middle of
 * an unstopped generation, streams exactly the same text, and stops with
 * "stop"; a stop string that never comes changes nothing. */
static void
test_generate_stop (void)
{
  g_autofree char *model_dir = golden_path ("model");
  g_autoptr (GError) error = NULL;
  g_autoptr (GptdGenerator) g = gptd_generator_load (model_dir, NULL, 0, &error);
  g_assert_no_error (error);

  GptdGenerateOptions o = sampled_options (1.0, 0, 1.0, 11);
  o.max_new_tokens = 40;
  g_autoptr (GptdGenerateResult) full =
    gptd_generator_generate (g, "the cat and the dog", &o, NULL, &error);
  g_assert_no_error (error);
  g_assert_cmpuint (full->text_len, >, 12);

  /* Stop strings of 1 to 4 characters from the middle of the text (whole
   * characters, so they can be matched). */
  for (glong len = 1; len <= 4; len++)
    {
      glong chars = g_utf8_strlen (full->text, -1);
      const char *start = g_utf8_offset_to_pointer (full->text, chars / 2);
      const char *end = g_utf8_offset_to_pointer (start, len);
      g_autofree char *stop = g_strndup (start, (gsize) (end - start));
      const char *stops[] = { "never-in-this-text-\xe2\x82\xac", stop, NULL };
      o.stop = stops;
      StreamData d = { g_string_new (NULL), 0, 0 };
      GptdGenerateCallbacks cb = { collect_text, NULL, &d };
      g_autoptr (GptdGenerateResult) r =
        gptd_generator_generate (g, "the cat and the dog", &o, &cb, &error);
      g_assert_no_error (error);
      const char *first = strstr (full->text, stop);
      g_assert_nonnull (first);
      g_autofree char *expected = g_strndup (full->text, (gsize) (first - full->text));
      g_assert_cmpint (r->stop, ==, GPTD_GENERATE_STOP_STRING);
      g_assert_cmpstr (gptd_generate_stop_to_string (r->stop), ==, "stop");
      g_assert_cmpstr (r->text, ==, expected);
      g_assert_cmpstr (d.all->str, ==, expected);
      /* The same tokens as without the stop string, up to the one that
       * completed it. */
      g_assert_cmpint (r->n_ids, <=, full->n_ids);
      for (int i = 0; i < r->n_ids; i++)
        g_assert_cmpint (r->ids[i], ==, full->ids[i]);
      g_string_free (d.all, TRUE);
    }

  const char *absent[] = { "never-in-this-text", NULL };
  o.stop = absent;
  StreamData d = { g_string_new (NULL), 0, 0 };
  GptdGenerateCallbacks cb = { collect_text, NULL, &d };
  g_autoptr (GptdGenerateResult) r =
    gptd_generator_generate (g, "the cat and the dog", &o, &cb, &error);
  g_assert_no_error (error);
  g_assert_cmpint (r->stop, ==, GPTD_GENERATE_STOP_LENGTH);
  g_assert_cmpstr (r->text, ==, full->text);
  g_assert_cmpstr (d.all->str, ==, full->text);
  g_string_free (d.all, TRUE);

  const char *bad[] = { "", NULL };
  o.stop = bad;
  g_assert_null (gptd_generator_generate (g, "the cat", &o, NULL, &error));
  g_assert_error (error, GPTD_GENERATE_ERROR, GPTD_GENERATE_ERROR_OPTIONS);
}

/* ---- generations stepped together ---------------------------------------------- */

/* Several generations of one generator stepped together (prefill in chunks
 * of 3, one batched decoding step for all the others, generations joining
 * at different steps) each give exactly the ids, text, streamed text and stop
 * reason of gptd_generator_generate_ids() alone: greedy and seeded sampling,
 * eos, stop strings, a window that slides past the context of 16. */
static void
test_generation_batch (void)
{
  g_autofree char *model_dir = golden_path ("model");
  g_autoptr (GError) error = NULL;
  g_autoptr (GptdGenerator) g = gptd_generator_load (model_dir, NULL, 0, &error);
  g_assert_no_error (error);
  static const char *const stop_a[] = { "e", NULL };
  static const struct {
    const char *prompt;
    double temperature;
    guint64 seed;
    int max_new, eos;
    const char *const *stop;
  } reqs[] = {
    { "hello world", 0, 1, 24, -1, NULL },
    { "the cat and the dog sat on the mat", 1.0, 7, 40, -1, NULL },
    { "a", 1.3, 9, 5, -1, NULL },
    { "the dog", 0.8, 3, 30, 269, NULL },
    { "caf\xc3\xa9", 1.0, 11, 30, -1, stop_a },
    { "one two three four five six seven eight nine ten eleven twelve", 1.0, 5, 20, -1, NULL },
    { "x", 0, 1, 0, -1, NULL },
  };
  const int N = G_N_ELEMENTS (reqs);
  GptdGenerateResult *want[G_N_ELEMENTS (reqs)];
  GptdGeneration *gens[G_N_ELEMENTS (reqs)];
  StreamData d[G_N_ELEMENTS (reqs)];
  for (int i = 0; i < N; i++)
    {
      GptdGenerateOptions o = sampled_options (reqs[i].temperature, 0, 1.0, reqs[i].seed);
      o.max_new_tokens = reqs[i].max_new;
      o.eos_id = reqs[i].eos;
      o.stop = reqs[i].stop;
      want[i] = gptd_generator_generate (g, reqs[i].prompt, &o, NULL, &error);
      g_assert_no_error (error);
      int n = 0;
      g_autofree gint32 *ids = gptd_generator_encode (g, reqs[i].prompt, &n, &error);
      d[i] = (StreamData) { g_string_new (NULL), 0, 0 };
      GptdGenerateCallbacks cb = { collect_text, NULL, &d[i] };
      gens[i] = gptd_generation_new (g, ids, n, &o, &cb, &error);
      g_assert_no_error (error);
    }
  g_autoptr (GptdGptDecodeBatch) batch =
    gptd_gpt_decode_batch_new (gptd_generator_get_model (g), N, &error);
  g_assert_no_error (error);
  gboolean all_done = FALSE;
  for (int step = 0; !all_done; step++)
    {
      g_assert_cmpint (step, <, 5000);
      GptdGeneration *decode[G_N_ELEMENTS (reqs)];
      int n = 0;
      gboolean prefilled = FALSE;
      all_done = step >= N;
      for (int i = 0; i < N && i <= step; i++)  /* generation i joins at step i */
        {
          if (gptd_generation_is_done (gens[i]))
            continue;
          all_done = FALSE;
          if (gptd_generation_needs_prefill (gens[i]))
            {
              if (!prefilled)  /* one prefill chunk per step */
                g_assert_cmpint (gptd_generation_prefill (gens[i], 3, &error), >, 0);
              prefilled = TRUE;
            }
          else
            decode[n++] = gens[i];
        }
      g_assert_true (gptd_generation_step_batch (decode, n, batch, &error));
      g_assert_no_error (error);
    }
  for (int i = 0; i < N; i++)
    {
      g_assert_true (gptd_generation_is_done (gens[i]));
      gptd_generation_finish (gens[i]);
      gsize len;
      const char *text = gptd_generation_get_text (gens[i], &len);
      g_test_message ("generation %d [%s] [%s]", i, d[i].all->str, want[i]->text);
      g_test_message ("generation %d: %d tokens, %s; alone %d, %s", i, gptd_generation_get_n_tokens (gens[i]), gptd_generate_stop_to_string (gptd_generation_get_stop (gens[i])), want[i]->n_ids, gptd_generate_stop_to_string (want[i]->stop));
      g_assert_cmpint (gptd_generation_get_stop (gens[i]), ==, want[i]->stop);
      g_assert_cmpint (gptd_generation_get_n_tokens (gens[i]), ==, want[i]->n_ids);
      g_assert_cmpstr (text, ==, want[i]->text);
      g_assert_cmpstr (d[i].all->str, ==, want[i]->text);
      g_string_free (d[i].all, TRUE);
      gptd_generation_free (gens[i]);
      gptd_generate_result_free (want[i]);
    }
}

int
main (int argc, char **argv)
{
  g_test_init (&argc, &argv, NULL);
  gptd_nn_set_num_threads (2);
  g_test_add_func ("/generate/options/validate", test_options_validate);
  g_test_add_func ("/generate/sampler/argmax-ties", test_sampler_argmax_ties);
  g_test_add_func ("/generate/sampler/temperature", test_sampler_temperature);
  g_test_add_func ("/generate/sampler/top-k", test_sampler_top_k);
  g_test_add_func ("/generate/sampler/top-k-1-is-greedy",
                   test_sampler_top_k_1_is_greedy);
  g_test_add_func ("/generate/sampler/top-p-bounds", test_sampler_top_p_bounds);
  g_test_add_func ("/generate/sampler/frequencies", test_sampler_frequencies);
  g_test_add_func ("/generate/sampler/seed", test_sampler_seed);
  g_test_add_func ("/generate/generator/kv-cache", test_generate_kv_cache);
  g_test_add_func ("/generate/generator/seed", test_generate_seed);
  g_test_add_func ("/generate/generator/greedy-is-argmax",
                   test_generate_greedy_is_argmax);
  g_test_add_func ("/generate/generator/eos", test_generate_eos);
  g_test_add_func ("/generate/generator/cancel", test_generate_cancel);
  g_test_add_func ("/generate/generator/truncate", test_generate_truncate);
  g_test_add_func ("/generate/generator/bad-input", test_generate_bad_input);
  g_test_add_func ("/generate/generator/threads", test_generate_threads);
  g_test_add_func ("/generate/golden/greedy", test_golden_greedy);
  g_test_add_func ("/generate/text/stream", test_generate_text);
  g_test_add_func ("/generate/stop/matcher", test_stop_matcher);
  g_test_add_func ("/generate/stop/bad", test_stop_matcher_bad);
  g_test_add_func ("/generate/stop/generator", test_generate_stop);
  g_test_add_func ("/generate/generation/batch", test_generation_batch);
  return g_test_run ();
}
