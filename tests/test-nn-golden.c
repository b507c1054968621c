/* test-nn-golden.c: the GPT-2 model against PyTorch reference values
 * (tests/golden/nn/make_goldens.py): logits, loss, every parameter gradient,
 * and the parameters after three AdamW steps with a warmup-cosine schedule
 * and gradient clipping, for tied and untied heads, with and without the
 * qkv bias, and a last-token classifier.  Also checks that the KV-cache path
 * gives the full forward's logits and that losses are reproducible.
 */
#include "test-nn-util.h"

#include <json-glib/json-glib.h>

#define REL_TOL 1e-4

typedef struct {
  GptdGptConfig cfg;
  int B, T;
  gboolean last_only;
  guint32 seed;
} Variant;

static Variant
variant_from (const TnnGolden *g)
{
  const TnnRecord *c = tnn_golden_get (g, "config");
  const gint32 *v = c->data;
  g_assert_cmpuint (c->numel, ==, 13);
  const float *hp = tnn_golden_get (g, "hparams")->data;
  Variant r = {
    .cfg = {
      .n_layer = v[0], .n_head = v[1], .n_embd = v[2],
      .context_length = v[3], .vocab_size = v[4], .n_out = v[5],
      .qkv_bias = v[6], .tie_embeddings = v[7], .head_bias = v[8],
      .dropout = 0.0f, .layer_norm_epsilon = hp[0],
    },
    .B = v[9], .T = v[10], .last_only = v[11], .seed = (guint32) v[12],
  };
  return r;
}

static TnnGolden *
load (const char *variant)
{
  g_autofree char *file = g_strdup_printf ("tiny-%s.bin", variant);
  g_autofree char *path =
      g_test_build_filename (G_TEST_DIST, "golden", "nn", file, NULL);
  return tnn_golden_load (path);
}

static GptdGpt *
model_for (const Variant *v)
{
  GError *error = NULL;
  GptdGpt *m = gptd_gpt_new (&v->cfg, &error);
  g_assert_no_error (error);
  tnn_init_weights (m, v->seed);
  return m;
}

static void
test_forward_backward (gconstpointer data)
{
  TnnGolden *g = load (data);
  Variant v = variant_from (g);
  g_autoptr (GptdGpt) m = model_for (&v);
  const gint32 *tokens = tnn_golden_get (g, "tokens")->data;
  const gint32 *targets = tnn_golden_get (g, "targets")->data;
  GptdGptForwardFlags flags =
      v.last_only ? GPTD_GPT_FORWARD_LAST_ONLY : GPTD_GPT_FORWARD_NONE;
  GError *error = NULL;
  float loss = 0.0f;
  gptd_gpt_zero_grad (m);
  g_assert_true (gptd_gpt_forward (m, tokens, targets, v.B, v.T, flags, &loss,
                                   &error));
  g_assert_no_error (error);

  int lb, lt, lv;
  const float *logits = gptd_gpt_get_logits (m, &lb, &lt, &lv);
  const TnnRecord *rl = tnn_golden_get (g, "logits");
  g_assert_nonnull (logits);
  g_assert_cmpuint ((size_t) lb * lt * lv, ==, rl->numel);
  tnn_assert_close ("logits", logits, rl->data, rl->numel, REL_TOL);
  tnn_assert_close ("loss", &loss, tnn_golden_get (g, "loss")->data, 1,
                    REL_TOL);

  g_assert_true (gptd_gpt_backward (m, 1.0f, &error));
  g_assert_no_error (error);
  g_assert_null (gptd_gpt_get_logits (m, NULL, NULL, NULL));
  guint n = gptd_gpt_n_tensors (m);
  for (guint i = 0; i < n; i++)
    {
      const GptdNnTensor *t = gptd_gpt_get_tensor (m, i);
      g_autofree char *name = g_strconcat ("grad.", t->name, NULL);
      const TnnRecord *r = tnn_golden_get (g, name);
      g_assert_cmpuint (r->numel, ==, t->numel);
      tnn_assert_close (name, t->grad, r->data, t->numel, REL_TOL);
    }
  tnn_golden_free (g);
}

static void
test_adamw_steps (gconstpointer data)
{
  TnnGolden *g = load (data);
  Variant v = variant_from (g);
  g_autoptr (GptdGpt) m = model_for (&v);
  const gint32 *tokens = tnn_golden_get (g, "tokens")->data;
  const gint32 *targets = tnn_golden_get (g, "targets")->data;
  const float *hp = tnn_golden_get (g, "hparams")->data;
  GptdLrSchedule sched = {
    .kind = GPTD_LR_WARMUP_COSINE,
    .initial_lr = hp[1], .peak_lr = hp[2], .min_lr = hp[3],
    .warmup_steps = (gint64) hp[4], .total_steps = (gint64) hp[5],
  };
  GptdAdamWParams ap;
  gptd_adamw_params_init (&ap);
  ap.beta1 = hp[6];
  ap.beta2 = hp[7];
  ap.eps = hp[8];
  ap.weight_decay = hp[9];
  ap.decay_1d = TRUE;
  float max_norm = hp[10];
  GError *error = NULL;
  g_autoptr (GptdAdamW) opt = gptd_adamw_new (m, &ap, &error);
  g_assert_no_error (error);
  GptdGptForwardFlags flags =
      v.last_only ? GPTD_GPT_FORWARD_LAST_ONLY : GPTD_GPT_FORWARD_NONE;
  float losses[3], norms[3];
  for (int step = 0; step < 3; step++)
    {
      gptd_gpt_zero_grad (m);
      g_assert_true (gptd_gpt_forward (m, tokens, targets, v.B, v.T, flags,
                                       &losses[step], &error));
      g_assert_true (gptd_gpt_backward (m, 1.0f, &error));
      norms[step] = gptd_gpt_clip_grad_norm (m, max_norm);
      gptd_adamw_step (opt, m, gptd_lr_schedule_get (&sched, step));
    }
  g_assert_cmpint (gptd_adamw_get_step (opt), ==, 3);
  tnn_assert_close ("step losses", losses,
                    tnn_golden_get (g, "step_losses")->data, 3, REL_TOL);
  tnn_assert_close ("step norms", norms,
                    tnn_golden_get (g, "step_norms")->data, 3, REL_TOL);
  for (guint i = 0; i < gptd_gpt_n_tensors (m); i++)
    {
      const GptdNnTensor *t = gptd_gpt_get_tensor (m, i);
      g_autofree char *name = g_strconcat ("after.", t->name, NULL);
      const TnnRecord *r = tnn_golden_get (g, name);
      if (g_str_has_suffix (t->name, "attn.c_attn.bias"))
        {
          /* The key bias adds a constant to each row of scores, which the
           * softmax ignores: its gradient is zero up to rounding, and Adam's
           * normalisation turns that noise into full-size steps.  Compare
           * the query and value parts only. */
          size_t C = (size_t) v.cfg.n_embd;
          const float *want = r->data;
          tnn_assert_close (name, t->data, want, C, REL_TOL);
          tnn_assert_close (name, t->data + 2 * C, want + 2 * C, C, REL_TOL);
        }
      else
        tnn_assert_close (name, t->data, r->data, t->numel, REL_TOL);
    }
  tnn_golden_free (g);
}

/* The KV-cache path (prompt, then one token at a time) gives the logits of
 * the full forward at every position. */
static void
test_kv_cache (gconstpointer data)
{
  TnnGolden *g = load (data);
  Variant v = variant_from (g);
  g_autoptr (GptdGpt) m = model_for (&v);
  const gint32 *tokens = tnn_golden_get (g, "tokens")->data;
  const float *ref = tnn_golden_get (g, "logits")->data;
  const int V = v.cfg.vocab_size, T = v.T;
  GError *error = NULL;
  g_autoptr (GptdGptKvCache) cache = gptd_gpt_kv_cache_new (m, T, &error);
  g_assert_no_error (error);
  for (int b = 0; b < v.B; b++)
    {
      gptd_gpt_kv_cache_reset (cache);
      int prompt = 5 + 30 * b;
      const float *l = gptd_gpt_forward_cached (m, cache, tokens + b * T,
                                                prompt, &error);
      g_assert_no_error (error);
      tnn_assert_close ("prompt logits", l,
                        ref + ((size_t) b * T + prompt - 1) * V, V, REL_TOL);
      for (int t = prompt; t < T; t++)
        {
          l = gptd_gpt_forward_cached (m, cache, tokens + b * T + t, 1,
                                       &error);
          g_assert_no_error (error);
          tnn_assert_close ("cached logits", l,
                            ref + ((size_t) b * T + t) * V, V, REL_TOL);
        }
      g_assert_cmpint (gptd_gpt_kv_cache_get_length (cache), ==, T);
      g_assert_null (gptd_gpt_forward_cached (m, cache, tokens, 1, &error));
      g_assert_error (error, GPTD_NN_ERROR, GPTD_NN_ERROR_STATE);
      g_clear_error (&error);
    }
  tnn_golden_free (g);
}

/* Same seed and threads: bitwise-identical losses, with dropout on; another
 * seed gives another loss. */
static void
test_determinism (void)
{
  TnnGolden *g = load ("tied-qkvbias");
  Variant v = variant_from (g);
  v.cfg.dropout = 0.1f;
  const gint32 *tokens = tnn_golden_get (g, "tokens")->data;
  const gint32 *targets = tnn_golden_get (g, "targets")->data;
  float runs[3][4];
  for (int run = 0; run < 3; run++)
    {
      g_autoptr (GptdGpt) m = model_for (&v);
      GptdAdamWParams ap;
      gptd_adamw_params_init (&ap);
      g_autoptr (GptdAdamW) opt = gptd_adamw_new (m, &ap, NULL);
      GptdRngState rng = { run == 2 ? 43 : 42, 0 };
      gptd_gpt_set_rng (m, &rng);
      for (int step = 0; step < 4; step++)
        {
          gptd_gpt_zero_grad (m);
          g_assert_true (gptd_gpt_forward (m, tokens, targets, v.B, v.T,
                                           GPTD_GPT_FORWARD_TRAIN,
                                           &runs[run][step], NULL));
          g_assert_true (gptd_gpt_backward (m, 1.0f, NULL));
          gptd_gpt_clip_grad_norm (m, 1.0f);
          gptd_adamw_step (opt, m, 1e-3f);
        }
      gptd_gpt_get_rng (m, &rng);
      g_assert_cmpuint (rng.counter, ==, 4);
    }
  g_assert_cmpmem (runs[0], sizeof runs[0], runs[1], sizeof runs[1]);
  g_assert_true (memcmp (runs[0], runs[2], sizeof runs[0]) != 0);
  tnn_golden_free (g);
}

/* hf-tiny-expected.json holds the reference logits of the model stored in
 * tests/golden/nn/hf-tiny; its weights are make_goldens.py's deterministic
 * ones, so gptd's model built from the same rule must give them. */
static void
test_hf_tiny_expected (void)
{
  g_autofree char *path = g_test_build_filename (
      G_TEST_DIST, "golden", "nn", "hf-tiny-expected.json", NULL);
  g_autoptr (JsonParser) parser = json_parser_new ();
  GError *error = NULL;
  g_assert_true (json_parser_load_from_file (parser, path, &error));
  g_assert_no_error (error);
  JsonObject *root = json_node_get_object (json_parser_get_root (parser));
  JsonArray *tok = json_object_get_array_member (root, "tokens");
  JsonArray *rows = json_object_get_array_member (root, "logits");
  int T = (int) json_array_get_length (tok);
  GptdGptConfig cfg = {
    .n_layer = 2, .n_head = 2, .n_embd = 16, .context_length = 32,
    .vocab_size = 50, .qkv_bias = TRUE, .tie_embeddings = TRUE,
    .layer_norm_epsilon = 1e-5f,
  };
  Variant v = { .cfg = cfg, .B = 1, .T = T, .seed = 7 };
  g_autoptr (GptdGpt) m = model_for (&v);
  g_autofree gint32 *tokens = g_new (gint32, T);
  for (int t = 0; t < T; t++)
    tokens[t] = (gint32) json_array_get_int_element (tok, t);
  g_assert_true (gptd_gpt_forward (m, tokens, NULL, 1, T, 0, NULL, &error));
  const float *logits = gptd_gpt_get_logits (m, NULL, NULL, NULL);
  g_assert_cmpuint (json_array_get_length (rows), ==, (guint) T);
  for (int t = 0; t < T; t++)
    {
      JsonArray *row = json_array_get_array_element (rows, t);
      g_assert_cmpuint (json_array_get_length (row), ==, 50);
      float want[50];
      for (int k = 0; k < 50; k++)
        want[k] = (float) json_array_get_double_element (row, k);
      tnn_assert_close ("hf-tiny logits", logits + t * 50, want, 50, REL_TOL);
    }
}

int
main (int argc, char **argv)
{
  g_test_init (&argc, &argv, NULL);
  static const char *variants[] = { "untied", "tied-qkvbias",
                                    "untied-qkvbias", "tied", "classifier" };
  for (size_t i = 0; i < G_N_ELEMENTS (variants); i++)
    {
      g_autofree char *p1 =
          g_strdup_printf ("/nn/golden/%s/forward-backward", variants[i]);
      g_autofree char *p2 =
          g_strdup_printf ("/nn/golden/%s/adamw-3-steps", variants[i]);
      g_test_add_data_func (p1, variants[i], test_forward_backward);
      g_test_add_data_func (p2, variants[i], test_adamw_steps);
    }
  g_test_add_data_func ("/nn/kv-cache/tied-qkvbias", "tied-qkvbias",
                        test_kv_cache);
  g_test_add_data_func ("/nn/kv-cache/untied", "untied", test_kv_cache);
  g_test_add_func ("/nn/determinism/seeded-dropout", test_determinism);
  g_test_add_func ("/nn/golden/hf-tiny-expected", test_hf_tiny_expected);
  return g_test_run ();
}
