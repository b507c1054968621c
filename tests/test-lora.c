/* test-lora.c: LoRA adapters (lib/nn/gpt2-lora.c) against PyTorch reference
 * values (tests/golden/lora/make_goldens.py, the book's appendix E scaled by
 * alpha / rank): the adapted forward's logits and loss, the gradients of
 * every A and B with the base frozen, and two AdamW steps on the adapters,
 * after which every base weight must be bitwise unchanged.  Also checks that
 * the merged model's forward equals the adapted one, that fresh adapters
 * leave the outputs alone, and that bad ranks and alphas are errors; and
 * the two ways to store adapters: a model directory with them (checkpoints)
 * and a PEFT-layout adapter directory that loads merged onto its base.
 */
#include "test-nn-util.h"

#include <gptd/gpt2-file.h>
#include <gptd/safetensors.h>
#include <glib/gstdio.h>

#define REL_TOL 1e-4

typedef struct {
  GptdGptConfig cfg;
  int B, T;
  guint32 seed;
  int rank;
  float alpha, lr, wd;
} Setup;

static TnnGolden *
load_golden (Setup *s)
{
  g_autofree char *path =
      g_test_build_filename (G_TEST_DIST, "golden", "lora", "tiny.bin", NULL);
  TnnGolden *g = tnn_golden_load (path);
  const TnnRecord *c = tnn_golden_get (g, "config");
  const gint32 *v = c->data;
  g_assert_cmpuint (c->numel, ==, 9);
  const float *lo = tnn_golden_get (g, "lora")->data;
  *s = (Setup){
    .cfg = {
      .n_layer = v[0], .n_head = v[1], .n_embd = v[2],
      .context_length = v[3], .vocab_size = v[4], .n_out = 0,
      .qkv_bias = v[5], .tie_embeddings = FALSE, .head_bias = FALSE,
      .dropout = 0.0f, .layer_norm_epsilon = 1e-5f,
    },
    .B = v[6], .T = v[7], .seed = (guint32) v[8],
    .rank = (int) lo[0], .alpha = lo[1], .lr = lo[2], .wd = lo[3],
  };
  return g;
}

static gboolean
is_adapter (const char *name)
{
  return g_str_has_suffix (name, ".lora_A") || g_str_has_suffix (name, ".lora_B");
}

/* The tiny model with the golden's base weights and adapters, base frozen. */
static GptdGpt *
adapted_model (const Setup *s, const TnnGolden *g)
{
  GError *error = NULL;
  GptdGpt *m = gptd_gpt_new (&s->cfg, &error);
  g_assert_no_error (error);
  tnn_init_weights (m, s->seed);
  guint n_base = gptd_gpt_n_tensors (m);
  g_assert_true (gptd_gpt_add_lora (m, s->rank, s->alpha, 1, &error));
  g_assert_no_error (error);
  g_assert_cmpint (gptd_gpt_get_lora_rank (m), ==, s->rank);
  g_assert_cmpuint (gptd_gpt_n_tensors (m), ==, n_base + 8 * s->cfg.n_layer);
  g_assert_cmpuint (gptd_gpt_set_frozen (m, "*", TRUE), ==,
                    gptd_gpt_n_tensors (m));
  g_assert_cmpuint (gptd_gpt_set_frozen (m, "*.lora_?", FALSE), ==,
                    8 * s->cfg.n_layer);
  for (guint k = n_base; k < gptd_gpt_n_tensors (m); k++)
    {
      const GptdNnTensor *t = gptd_gpt_get_tensor (m, k);
      g_assert_true (is_adapter (t->name));
      const TnnRecord *r = tnn_golden_get (g, t->name);
      g_assert_cmpuint (r->numel, ==, t->numel);
      g_assert_cmpuint (r->dims[0], ==, t->shape[0]);
      memcpy (t->data, r->data, t->numel * sizeof (float));
    }
  /* Gradients exist for the adapters only. */
  g_assert_cmpuint (gptd_gpt_get_grads_offset (m), ==,
                    (size_t) (gptd_gpt_get_tensor (m, n_base)->data -
                              gptd_gpt_get_params (m)));
  return m;
}

static void
test_forward_backward (void)
{
  Setup s;
  TnnGolden *g = load_golden (&s);
  g_autoptr (GptdGpt) m = adapted_model (&s, g);
  GError *error = NULL;
  float loss = 0.0f;
  g_assert_true (gptd_gpt_forward (m, tnn_golden_get (g, "tokens")->data,
                                   tnn_golden_get (g, "targets")->data, s.B,
                                   s.T, GPTD_GPT_FORWARD_NONE, &loss, &error));
  g_assert_no_error (error);
  const TnnRecord *want = tnn_golden_get (g, "logits");
  tnn_assert_close ("logits", gptd_gpt_get_logits (m, NULL, NULL, NULL),
                    want->data, want->numel, REL_TOL);
  g_assert_cmpfloat_with_epsilon (loss, *(float *) tnn_golden_get (g, "loss")->data,
                                  1e-5);
  gptd_gpt_zero_grad (m);
  g_assert_true (gptd_gpt_backward (m, 1.0f, &error));
  g_assert_no_error (error);
  guint checked = 0;
  for (guint k = 0; k < gptd_gpt_n_tensors (m); k++)
    {
      const GptdNnTensor *t = gptd_gpt_get_tensor (m, k);
      if (!is_adapter (t->name))
        {
          g_assert_true (t->frozen);
          g_assert_null (t->grad);
          continue;
        }
      g_autofree char *name = g_strconcat ("grad.", t->name, NULL);
      const TnnRecord *r = tnn_golden_get (g, name);
      tnn_assert_close (name, t->grad, r->data, r->numel, REL_TOL);
      checked++;
    }
  g_assert_cmpuint (checked, ==, 8 * s.cfg.n_layer);
  tnn_golden_free (g);
}

static void
test_adamw_steps (void)
{
  Setup s;
  TnnGolden *g = load_golden (&s);
  g_autoptr (GptdGpt) m = adapted_model (&s, g);
  GError *error = NULL;
  guint n_base = gptd_gpt_n_tensors (m) - 8 * s.cfg.n_layer;
  size_t base_floats = (size_t) (gptd_gpt_get_tensor (m, n_base)->data -
                                 gptd_gpt_get_params (m));
  g_autofree float *base = g_memdup2 (gptd_gpt_get_params (m),
                                      base_floats * sizeof (float));
  GptdAdamWParams ap;
  gptd_adamw_params_init (&ap);
  ap.weight_decay = s.wd;
  ap.decay_1d = TRUE;
  g_autoptr (GptdAdamW) opt = gptd_adamw_new (m, &ap, &error);
  g_assert_no_error (error);
  /* Moments for the adapters only. */
  g_assert_cmpuint (gptd_adamw_n_tensors (opt), ==, 2 * 8 * s.cfg.n_layer);
  const TnnRecord *rl = tnn_golden_get (g, "step_losses");
  for (int step = 0; step < 2; step++)
    {
      float loss = 0.0f;
      gptd_gpt_zero_grad (m);
      g_assert_true (gptd_gpt_forward (m, tnn_golden_get (g, "tokens")->data,
                                       tnn_golden_get (g, "targets")->data,
                                       s.B, s.T, GPTD_GPT_FORWARD_TRAIN, &loss,
                                       &error));
      g_assert_no_error (error);
      g_assert_true (gptd_gpt_backward (m, 1.0f, &error));
      g_assert_no_error (error);
      gptd_adamw_step (opt, m, s.lr);
      g_assert_cmpfloat_with_epsilon (loss, ((float *) rl->data)[step], 1e-5);
    }
  for (guint k = n_base; k < gptd_gpt_n_tensors (m); k++)
    {
      const GptdNnTensor *t = gptd_gpt_get_tensor (m, k);
      g_autofree char *name = g_strconcat ("after.", t->name, NULL);
      const TnnRecord *r = tnn_golden_get (g, name);
      tnn_assert_close (name, t->data, r->data, r->numel, REL_TOL);
    }
  /* The frozen base weights are bitwise unchanged. */
  g_assert_cmpmem (gptd_gpt_get_params (m), base_floats * sizeof (float), base,
                   base_floats * sizeof (float));
  tnn_golden_free (g);
}

static void
test_merge (void)
{
  Setup s;
  TnnGolden *g = load_golden (&s);
  g_autoptr (GptdGpt) m = adapted_model (&s, g);
  GError *error = NULL;
  const gint32 *tokens = tnn_golden_get (g, "tokens")->data;
  g_assert_true (gptd_gpt_forward (m, tokens, NULL, s.B, s.T,
                                   GPTD_GPT_FORWARD_NONE, NULL, &error));
  g_assert_no_error (error);
  int V = 0;
  size_t n = (size_t) s.B * s.T * s.cfg.vocab_size;
  g_autofree float *adapted =
      g_memdup2 (gptd_gpt_get_logits (m, NULL, NULL, &V), n * sizeof (float));

  /* KV-cache decoding needs merged weights. */
  GptdGptKvCache *cache = gptd_gpt_kv_cache_new (m, 0, &error);
  g_assert_null (cache);
  g_assert_error (error, GPTD_NN_ERROR, GPTD_NN_ERROR_STATE);
  g_clear_error (&error);

  g_assert_true (gptd_gpt_merge_lora (m, &error));
  g_assert_no_error (error);
  g_assert_cmpint (gptd_gpt_get_lora_rank (m), ==, 0);
  g_assert_cmpuint (gptd_gpt_n_params (m), ==, gptd_gpt_config_n_params (&s.cfg));
  g_assert_null (gptd_gpt_lookup_tensor (m, "h.0.attn.c_attn.lora_A"));
  g_assert_true (gptd_gpt_forward (m, tokens, NULL, s.B, s.T,
                                   GPTD_GPT_FORWARD_NONE, NULL, &error));
  g_assert_no_error (error);
  tnn_assert_close ("merged logits", gptd_gpt_get_logits (m, NULL, NULL, NULL),
                    adapted, n, 1e-5);
  /* And the merged model is the reference's adapted model. */
  const TnnRecord *want = tnn_golden_get (g, "logits");
  tnn_assert_close ("merged logits vs reference",
                    gptd_gpt_get_logits (m, NULL, NULL, NULL), want->data,
                    want->numel, REL_TOL);
  cache = gptd_gpt_kv_cache_new (m, 0, &error);
  g_assert_no_error (error);
  gptd_gpt_kv_cache_free (cache);
  tnn_golden_free (g);
}

static void
test_fresh_adapters (void)
{
  Setup s;
  TnnGolden *g = load_golden (&s);
  GError *error = NULL;
  g_autoptr (GptdGpt) m = gptd_gpt_new (&s.cfg, &error);
  g_assert_no_error (error);
  tnn_init_weights (m, s.seed);
  const gint32 *tokens = tnn_golden_get (g, "tokens")->data;
  size_t n = (size_t) s.B * s.T * s.cfg.vocab_size;
  g_assert_true (gptd_gpt_forward (m, tokens, NULL, s.B, s.T,
                                   GPTD_GPT_FORWARD_NONE, NULL, &error));
  g_autofree float *before =
      g_memdup2 (gptd_gpt_get_logits (m, NULL, NULL, NULL), n * sizeof (float));
  g_assert_true (gptd_gpt_add_lora (m, 3, 6.0f, 42, &error));
  g_assert_no_error (error);
  double bound = 1.0 / sqrt (3.0), amax = 0.0;
  for (guint k = 0; k < gptd_gpt_n_tensors (m); k++)
    {
      const GptdNnTensor *t = gptd_gpt_get_tensor (m, k);
      if (g_str_has_suffix (t->name, ".lora_B"))
        for (size_t i = 0; i < t->numel; i++)
          g_assert_cmpfloat (t->data[i], ==, 0.0f);
      if (g_str_has_suffix (t->name, ".lora_A"))
        for (size_t i = 0; i < t->numel; i++)
          {
            g_assert_cmpfloat (fabs (t->data[i]), <=, bound);
            amax = MAX (amax, fabs (t->data[i]));
          }
    }
  g_assert_cmpfloat (amax, >, 0.5 * bound);
  const GptdNnTensor *a = gptd_gpt_lookup_tensor (m, "h.1.mlp.c_proj.lora_A");
  g_assert_nonnull (a);
  g_assert_cmpuint (a->shape[0], ==, 4 * (size_t) s.cfg.n_embd);
  g_assert_cmpuint (a->shape[1], ==, 3);
  g_assert_true (gptd_gpt_forward (m, tokens, NULL, s.B, s.T,
                                   GPTD_GPT_FORWARD_NONE, NULL, &error));
  tnn_assert_close ("logits with B = 0", gptd_gpt_get_logits (m, NULL, NULL, NULL),
                    before, n, 0.0);
  tnn_golden_free (g);
}

static void
test_bad_input (void)
{
  GptdGptConfig cfg = {
    .n_layer = 1, .n_head = 2, .n_embd = 8, .context_length = 8,
    .vocab_size = 10, .layer_norm_epsilon = 1e-5f,
  };
  GError *error = NULL;
  g_autoptr (GptdGpt) m = gptd_gpt_new (&cfg, &error);
  g_assert_no_error (error);
  static const struct {
    int rank;
    float alpha;
  } bad[] = {
    { 0, 1.0f },  /* rank must be positive */
    { -2, 1.0f }, /* likewise */
    { 9, 1.0f },  /* rank above n_embd */
    { 2, 0.0f },  /* alpha must be positive */
    { 2, -1.0f }, /* likewise */
    { 2, NAN },   /* and finite */
    { 2, INFINITY },
  };
  for (size_t i = 0; i < G_N_ELEMENTS (bad); i++)
    {
      g_assert_false (gptd_gpt_add_lora (m, bad[i].rank, bad[i].alpha, 0, &error));
      g_assert_error (error, GPTD_NN_ERROR, GPTD_NN_ERROR_CONFIG);
      g_assert_nonnull (strstr (error->message, "lora-"));
      g_clear_error (&error);
      g_assert_cmpint (gptd_gpt_get_lora_rank (m), ==, 0);
    }
  g_assert_true (gptd_gpt_add_lora (m, 8, 1.0f, 0, &error));
  g_assert_no_error (error);
  g_assert_false (gptd_gpt_add_lora (m, 2, 1.0f, 0, &error));
  g_assert_error (error, GPTD_NN_ERROR, GPTD_NN_ERROR_STATE);
  g_clear_error (&error);
}

/* Removes a directory tree made by a test. */
static void
remove_tree (const char *path)
{
  GDir *d = g_dir_open (path, 0, NULL);
  const char *name;
  while (d != NULL && (name = g_dir_read_name (d)) != NULL)
    {
      g_autofree char *child = g_build_filename (path, name, NULL);
      if (g_file_test (child, G_FILE_TEST_IS_DIR) && !g_file_test (child, G_FILE_TEST_IS_SYMLINK))
        remove_tree (child);
      else
        g_unlink (child);
    }
  if (d != NULL)
    g_dir_close (d);
  g_rmdir (path);
}

/* Logits of @m on the golden's tokens, copied. */
static float *
logits_of (GptdGpt *m, const Setup *s, const TnnGolden *g)
{
  GError *error = NULL;
  g_assert_true (gptd_gpt_forward (m, tnn_golden_get (g, "tokens")->data, NULL, s->B,
                                   s->T, GPTD_GPT_FORWARD_NONE, NULL, &error));
  g_assert_no_error (error);
  return g_memdup2 (gptd_gpt_get_logits (m, NULL, NULL, NULL),
                    (size_t) s->B * s->T * s->cfg.vocab_size * sizeof (float));
}

static void
test_file_with_adapters (void)
{
  Setup s;
  TnnGolden *g = load_golden (&s);
  g_autoptr (GptdGpt) m = adapted_model (&s, g);
  GError *error = NULL;
  g_autofree char *tmp = g_dir_make_tmp ("test-lora-XXXXXX", &error);
  g_assert_no_error (error);
  g_autofree char *dir = g_build_filename (tmp, "model", NULL);
  g_assert_true (gptd_gpt_dir_save (m, dir, NULL, NULL, &error));
  g_assert_no_error (error);
  g_autoptr (GptdGpt) back = gptd_gpt_dir_load (dir, &error);
  g_assert_no_error (error);
  g_assert_cmpint (gptd_gpt_get_lora_rank (back), ==, s.rank);
  g_assert_cmpfloat (gptd_gpt_get_lora_alpha (back), ==, s.alpha);
  g_assert_cmpuint (gptd_gpt_n_params (back), ==, gptd_gpt_n_params (m));
  g_assert_cmpmem (gptd_gpt_get_params (back), gptd_gpt_n_params (m) * sizeof (float),
                   gptd_gpt_get_params (m), gptd_gpt_n_params (m) * sizeof (float));

  /* lora_rank without lora_alpha is an error naming the keys. */
  g_autofree char *cfg_path = g_build_filename (dir, "config.json", NULL);
  g_autofree char *json = NULL;
  g_assert_true (g_file_get_contents (cfg_path, &json, NULL, NULL));
  char *a = strstr (json, ",\n  \"lora_alpha\"");
  g_assert_nonnull (a);
  strcpy (a, "\n}\n");
  g_assert_true (g_file_set_contents (cfg_path, json, -1, NULL));
  g_autoptr (GptdGpt) bad = gptd_gpt_dir_load (dir, &error);
  g_assert_null (bad);
  g_assert_error (error, GPTD_GPT_FILE_ERROR, GPTD_GPT_FILE_ERROR_CONFIG);
  g_assert_nonnull (strstr (error->message, "lora_alpha"));
  g_clear_error (&error);
  remove_tree (tmp);
  tnn_golden_free (g);
}

static void
test_adapter_dir (void)
{
  Setup s;
  TnnGolden *g = load_golden (&s);
  GError *error = NULL;
  g_autofree char *tmp = g_dir_make_tmp ("test-lora-XXXXXX", &error);
  g_assert_no_error (error);
  g_autofree char *base_dir = g_build_filename (tmp, "base", NULL);
  g_autofree char *ad_dir = g_build_filename (tmp, "adapter", NULL);
  {
    g_autoptr (GptdGpt) base = gptd_gpt_new (&s.cfg, &error);
    g_assert_no_error (error);
    tnn_init_weights (base, s.seed);
    g_assert_true (gptd_gpt_dir_save (base, base_dir, NULL, NULL, &error));
    g_assert_no_error (error);
  }
  g_autoptr (GptdGpt) m = adapted_model (&s, g);
  g_autofree float *want = logits_of (m, &s, g);
  g_assert_true (gptd_gpt_dir_save_adapter (m, ad_dir, "../base", NULL, NULL, NULL, NULL,
                                            0, &error));
  g_assert_no_error (error);

  /* PEFT's names and nn.Linear layouts; nothing else (the head was frozen). */
  g_autofree char *wpath = g_build_filename (ad_dir, "adapter_model.safetensors", NULL);
  g_autoptr (GptdSafetensors) st = gptd_safetensors_open (wpath, &error);
  g_assert_no_error (error);
  g_assert_cmpuint (gptd_safetensors_get_n_tensors (st), ==, 8 * s.cfg.n_layer);
  const GptdSafetensorsTensor *t =
      gptd_safetensors_lookup (st, "base_model.model.transformer.h.1.mlp.c_fc.lora_A.weight");
  g_assert_nonnull (t);
  g_assert_cmpuint (t->shape[0], ==, (size_t) s.rank);
  g_assert_cmpuint (t->shape[1], ==, (size_t) s.cfg.n_embd);
  t = gptd_safetensors_lookup (st, "base_model.model.transformer.h.0.attn.c_attn.lora_B.weight");
  g_assert_nonnull (t);
  g_assert_cmpuint (t->shape[0], ==, 3 * (size_t) s.cfg.n_embd);
  g_assert_cmpuint (t->shape[1], ==, (size_t) s.rank);
  g_autofree char *cpath = g_build_filename (ad_dir, "adapter_config.json", NULL);
  g_autofree char *acfg = NULL;
  g_assert_true (g_file_get_contents (cpath, &acfg, NULL, NULL));
  g_assert_nonnull (strstr (acfg, "\"r\" : 4"));
  g_assert_nonnull (strstr (acfg, "\"lora_alpha\" : 8"));
  g_assert_nonnull (strstr (acfg, "\"c_attn\""));

  /* Loaded merged onto the base: the adapted model's logits. */
  g_autoptr (GptdGpt) back = gptd_gpt_dir_load (ad_dir, &error);
  g_assert_no_error (error);
  g_assert_cmpint (gptd_gpt_get_lora_rank (back), ==, 0);
  g_autofree float *got = logits_of (back, &s, g);
  tnn_assert_close ("adapter directory logits", got, want,
                    (size_t) s.B * s.T * s.cfg.vocab_size, 1e-5);

  /* Without its base, the error names the base. */
  g_autofree char *moved = g_build_filename (tmp, "elsewhere", NULL);
  g_assert_cmpint (g_rename (base_dir, moved), ==, 0);
  g_autoptr (GptdGpt) none = gptd_gpt_dir_load (ad_dir, &error);
  g_assert_null (none);
  g_assert_nonnull (error);
  g_assert_nonnull (strstr (error->message, "base model"));
  g_clear_error (&error);
  remove_tree (tmp);
  tnn_golden_free (g);
}

int
main (int argc, char **argv)
{
  g_test_init (&argc, &argv, NULL);
  gptd_nn_set_num_threads (2);
  g_test_add_func ("/lora/golden/forward-backward", test_forward_backward);
  g_test_add_func ("/lora/golden/adamw-frozen-base", test_adamw_steps);
  g_test_add_func ("/lora/merge/same-forward", test_merge);
  g_test_add_func ("/lora/init/no-change", test_fresh_adapters);
  g_test_add_func ("/lora/bad-input", test_bad_input);
  g_test_add_func ("/lora/file/model-dir-with-adapters", test_file_with_adapters);
  g_test_add_func ("/lora/file/adapter-dir", test_adapter_dir);
  return g_test_run ();
}
