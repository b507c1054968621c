/* test-nn-grad.c: finite-difference checks of every backward kernel
 * (LayerNorm, GELU, causal attention with and without dropout,
 * cross-entropy with ignored targets) and of a whole tiny model with dropout;
 * plus the behaviour around them: freezing, gradient accumulation, clipping,
 * schedules, presets, last-position and pooled logits, RNG state and input
 * errors; and the classifier head read at a position per row.
 */
#include "test-nn-util.h"

#include "nn/nn-internal.h"

/* Uniform in [-1, 1), deterministic. */
static void
fill_uniform (float *x, size_t n, guint32 seed, float scale)
{
  for (size_t i = 0; i < n; i++)
    x[i] = scale * (float) (tnn_hash32 (seed, (guint32) i) / 2147483648.0 - 1.0);
}

static double
weighted_sum (const float *y, const float *w, size_t n)
{
  double s = 0.0;
  for (size_t i = 0; i < n; i++)
    s += (double) y[i] * w[i];
  return s;
}

/* Relative error of a gradient: ||num - ana|| / ||num||. */
static double
rel_error (const double *num, const float *ana, size_t n)
{
  double d = 0.0, r = 0.0;
  for (size_t i = 0; i < n; i++)
    {
      d += (num[i] - ana[i]) * (num[i] - ana[i]);
      r += num[i] * num[i];
    }
  return sqrt (d) / (sqrt (r) + 1e-30);
}

#define FD_EPS 1e-2f
#define FD_TOL 5e-3

/* ---- LayerNorm ---------------------------------------------------------- */

typedef struct {
  size_t rows;
  int C;
  float *x, *w, *b, *out, *mean, *rstd, *gw;
} LnCase;

static double
ln_objective (LnCase *c)
{
  gptd__nn_layernorm_forward (c->out, c->mean, c->rstd, c->x, c->w, c->b,
                              c->rows, c->C, 1e-5f);
  return weighted_sum (c->out, c->gw, c->rows * c->C);
}

static void
fd_vector (double (*f) (void *), void *ctx, float *x, size_t n, double *num)
{
  for (size_t i = 0; i < n; i++)
    {
      float keep = x[i];
      x[i] = keep + FD_EPS;
      double up = f (ctx);
      x[i] = keep - FD_EPS;
      double down = f (ctx);
      x[i] = keep;
      num[i] = (up - down) / (2.0 * FD_EPS);
    }
}

static void
test_layernorm (void)
{
  LnCase c = { .rows = 5, .C = 24 };
  size_t n = c.rows * c.C;
  c.x = g_new (float, n);
  c.w = g_new (float, c.C);
  c.b = g_new (float, c.C);
  c.out = g_new (float, n);
  c.mean = g_new (float, c.rows);
  c.rstd = g_new (float, c.rows);
  c.gw = g_new (float, n);
  fill_uniform (c.x, n, 1, 2.0f);
  fill_uniform (c.w, c.C, 2, 1.0f);
  fill_uniform (c.b, c.C, 3, 1.0f);
  fill_uniform (c.gw, n, 4, 1.0f);
  ln_objective (&c);
  float *dx = g_new0 (float, n), *dw = g_new0 (float, c.C),
        *db = g_new0 (float, c.C);
  float *scratch = g_new0 (float, (size_t) gptd_nn_get_num_threads () * 2 *
                                      c.C);
  gptd__nn_layernorm_backward (dx, dw, db, c.gw, c.x, c.mean, c.rstd, c.w,
                               c.rows, c.C, scratch);
  double *num = g_new (double, n);
  fd_vector ((double (*) (void *)) ln_objective, &c, c.x, n, num);
  g_assert_cmpfloat (rel_error (num, dx, n), <, FD_TOL);
  fd_vector ((double (*) (void *)) ln_objective, &c, c.w, c.C, num);
  g_assert_cmpfloat (rel_error (num, dw, c.C), <, FD_TOL);
  fd_vector ((double (*) (void *)) ln_objective, &c, c.b, c.C, num);
  g_assert_cmpfloat (rel_error (num, db, c.C), <, FD_TOL);
  g_free (num);
  g_free (dx);
  g_free (dw);
  g_free (db);
  g_free (scratch);
  g_free (c.x);
  g_free (c.w);
  g_free (c.b);
  g_free (c.out);
  g_free (c.mean);
  g_free (c.rstd);
  g_free (c.gw);
}

/* ---- GELU ------------------------------------------------------------------ */

static void
test_gelu (void)
{
  enum { N = 301 };
  float x[N], y[N], d[N];
  for (int i = 0; i < N; i++)
    x[i] = -6.0f + 12.0f * i / (N - 1);
  gptd__nn_gelu_forward (y, x, N);
  for (int i = 0; i < N; i++)
    {
      /* Against the formula in double precision. */
      double v = x[i];
      double ref = 0.5 * v *
                   (1.0 + tanh (sqrt (2.0 / G_PI) * (v + 0.044715 * v * v * v)));
      g_assert_cmpfloat (fabs (y[i] - ref), <=, 1e-6 * fmax (1.0, fabs (ref)));
      d[i] = 1.0f;
    }
  gptd__nn_gelu_backward (d, x, N);
  for (int i = 0; i < N; i++)
    {
      float yp, ym, xp = x[i] + 1e-3f, xm = x[i] - 1e-3f;
      gptd__nn_gelu_forward (&yp, &xp, 1);
      gptd__nn_gelu_forward (&ym, &xm, 1);
      double num = ((double) yp - ym) / ((double) xp - xm);
      g_assert_cmpfloat (fabs (num - d[i]), <, 2e-3);
    }
}

/* ---- attention -------------------------------------------------------------- */

typedef struct {
  int B, T, C, nh;
  GptdNnDropout drop;
  float *qkv, *out, *lse, *gw, *scratch;
} AttCase;

static double
att_objective (AttCase *c)
{
  gptd__nn_attention_forward (c->out, c->lse, c->qkv, c->B, c->T, c->C, c->nh,
                              &c->drop, c->scratch);
  return weighted_sum (c->out, c->gw, (size_t) c->B * c->T * c->C);
}

static void
check_attention (float p)
{
  AttCase c = { .B = 2, .T = 70, .C = 12, .nh = 3 };
  c.drop = gptd__nn_dropout_stream (7, 3, 5, p);
  size_t n3 = (size_t) c.B * c.T * 3 * c.C, n1 = (size_t) c.B * c.T * c.C;
  int nt = gptd_nn_get_num_threads ();
  c.qkv = g_new (float, n3);
  c.out = g_new (float, n1);
  c.lse = g_new (float, (size_t) c.B * c.nh * c.T);
  c.gw = g_new (float, n1);
  c.scratch = g_new0 (float, (size_t) nt * 3 * c.T * c.T);
  fill_uniform (c.qkv, n3, 11, 1.5f);
  fill_uniform (c.gw, n1, 12, 1.0f);
  att_objective (&c);

  /* Causality: the output at position t ignores later positions. */
  float *dqkv = g_new0 (float, n3);
  gptd__nn_attention_backward (dqkv, c.gw, c.out, c.lse, c.qkv, c.B, c.T, c.C,
                               c.nh, &c.drop, c.scratch);
  /* Finite differences on a sample of entries, both batch items, all of
   * q, k and v, on both sides of the 64-row block boundary. */
  GArray *idx = g_array_new (FALSE, FALSE, sizeof (size_t));
  for (size_t i = 0; i < n3; i += 7)
    g_array_append_val (idx, i);
  double *num = g_new (double, idx->len);
  float *ana = g_new (float, idx->len);
  for (guint k = 0; k < idx->len; k++)
    {
      size_t i = g_array_index (idx, size_t, k);
      float keep = c.qkv[i];
      c.qkv[i] = keep + FD_EPS;
      double up = att_objective (&c);
      c.qkv[i] = keep - FD_EPS;
      double down = att_objective (&c);
      c.qkv[i] = keep;
      num[k] = (up - down) / (2.0 * FD_EPS);
      ana[k] = dqkv[i];
    }
  g_assert_cmpfloat (rel_error (num, ana, idx->len), <, FD_TOL);

  /* Changing the last position leaves earlier outputs unchanged. */
  att_objective (&c);
  float *before = g_memdup2 (c.out, n1 * sizeof (float));
  for (int k = 0; k < 3 * c.C; k++)
    c.qkv[((size_t) c.T - 1) * 3 * c.C + k] += 1.0f;
  att_objective (&c);
  g_assert_cmpmem (before, (c.T - 1) * c.C * sizeof (float), c.out,
                   (c.T - 1) * c.C * sizeof (float));
  g_free (before);
  g_array_unref (idx);
  g_free (num);
  g_free (ana);
  g_free (dqkv);
  g_free (c.qkv);
  g_free (c.out);
  g_free (c.lse);
  g_free (c.gw);
  g_free (c.scratch);
}

static void
test_attention (void)
{
  check_attention (0.0f);
}

static void
test_attention_dropout (void)
{
  check_attention (0.3f);
}

/* ---- cross-entropy ---------------------------------------------------------- */

typedef struct {
  size_t rows;
  int V;
  float *logits, *lse;
  gint32 *targets;
} CeCase;

static double
ce_objective (CeCase *c)
{
  double sum;
  size_t count;
  gptd__nn_cross_entropy_forward (c->lse, c->logits, c->targets, c->rows,
                                  c->V, &sum, &count);
  return sum / (double) count;
}

static void
test_cross_entropy (void)
{
  CeCase c = { .rows = 6, .V = 37 };
  size_t n = c.rows * c.V;
  c.logits = g_new (float, n);
  c.lse = g_new (float, c.rows);
  gint32 targets[6] = { 3, GPTD_NN_IGNORE_INDEX, 36, 0, GPTD_NN_IGNORE_INDEX,
                        20 };
  c.targets = targets;
  fill_uniform (c.logits, n, 21, 4.0f);
  double loss = ce_objective (&c);
  /* Against a direct computation. */
  double ref = 0.0;
  for (size_t r = 0; r < c.rows; r++)
    {
      if (targets[r] == GPTD_NN_IGNORE_INDEX)
        continue;
      double s = 0.0;
      for (int j = 0; j < c.V; j++)
        s += exp (c.logits[r * c.V + j]);
      ref += log (s) - c.logits[r * c.V + targets[r]];
    }
  g_assert_cmpfloat (fabs (loss - ref / 4), <, 1e-5);
  double *num = g_new (double, n);
  fd_vector ((double (*) (void *)) ce_objective, &c, c.logits, n, num);
  float *grad = g_memdup2 (c.logits, n * sizeof (float));
  ce_objective (&c);
  gptd__nn_cross_entropy_backward (grad, c.lse, targets, c.rows, c.V,
                                   1.0f / 4);
  g_assert_cmpfloat (rel_error (num, grad, n), <, FD_TOL);
  for (int j = 0; j < c.V; j++)
    g_assert_cmpfloat (grad[1 * c.V + j], ==, 0.0f);
  g_free (num);
  g_free (grad);
  g_free (c.logits);
  g_free (c.lse);
}

/* ---- whole model -------------------------------------------------------- */

static GptdGptConfig
tiny_config (void)
{
  GptdGptConfig c = {
    .n_layer = 2, .n_head = 2, .n_embd = 8, .context_length = 12,
    .vocab_size = 11, .n_out = 0, .qkv_bias = TRUE, .tie_embeddings = TRUE,
    .head_bias = FALSE, .dropout = 0.0f, .layer_norm_epsilon = 1e-5f,
  };
  return c;
}

static GptdGpt *
tiny_model (const GptdGptConfig *c, guint32 seed)
{
  GError *error = NULL;
  GptdGpt *m = gptd_gpt_new (c, &error);
  g_assert_no_error (error);
  tnn_init_weights (m, seed);
  return m;
}

static const gint32 tiny_tokens[2 * 10] = { 1, 5, 9, 3, 3, 0, 10, 7, 2, 4,
                                             8, 8, 1, 6, 0, 2, 9, 5, 10, 3 };
static const gint32 tiny_targets[2 * 10] = { 5, 9, 3, -100, 0, 10, 7, 2, 4, 1,
                                              8, 1, 6, 0, 2, -100, 5, 10, 3, 7 };

static float
tiny_loss (GptdGpt *m, GptdGptForwardFlags flags)
{
  /* The same dropout masks for every evaluation. */
  GptdRngState rng = { 99, 5 };
  gptd_gpt_set_rng (m, &rng);
  float loss = 0.0f;
  g_assert_true (gptd_gpt_forward (m, tiny_tokens, tiny_targets, 2, 10, flags,
                                   &loss, NULL));
  return loss;
}

static void
check_model_fd (const GptdGptConfig *c)
{
  g_autoptr (GptdGpt) m = tiny_model (c, 5);
  gptd_gpt_zero_grad (m);
  tiny_loss (m, GPTD_GPT_FORWARD_TRAIN);
  g_assert_true (gptd_gpt_backward (m, 1.0f, NULL));
  for (guint k = 0; k < gptd_gpt_n_tensors (m); k++)
    {
      const GptdNnTensor *t = gptd_gpt_get_tensor (m, k);
      size_t step = MAX ((size_t) 1, t->numel / 40);
      size_t cnt = (t->numel + step - 1) / step;
      double *num = g_new (double, cnt);
      float *ana = g_new (float, cnt);
      for (size_t i = 0, j = 0; i < t->numel; i += step, j++)
        {
          float keep = t->data[i];
          t->data[i] = keep + FD_EPS;
          double up = tiny_loss (m, GPTD_GPT_FORWARD_TRAIN);
          t->data[i] = keep - FD_EPS;
          double down = tiny_loss (m, GPTD_GPT_FORWARD_TRAIN);
          t->data[i] = keep;
          num[j] = (up - down) / (2.0 * FD_EPS);
          ana[j] = t->grad[i];
        }
      double err = rel_error (num, ana, cnt);
      if (err >= 2e-2)
        g_test_fail_printf ("%s: finite-difference relative error %g",
                            t->name, err);
      g_free (num);
      g_free (ana);
    }
}

static void
test_model_fd (void)
{
  GptdGptConfig c = tiny_config ();
  check_model_fd (&c);
}

static void
test_model_fd_dropout (void)
{
  GptdGptConfig c = tiny_config ();
  c.dropout = 0.2f;
  c.tie_embeddings = FALSE;
  c.qkv_bias = FALSE;
  c.head_bias = TRUE;
  check_model_fd (&c);
}

/* Dropout changes the loss only in training, and the same RNG state gives
 * the same masks. */
static void
test_dropout_state (void)
{
  GptdGptConfig c = tiny_config ();
  c.dropout = 0.3f;
  g_autoptr (GptdGpt) m = tiny_model (&c, 3);
  float eval1 = tiny_loss (m, GPTD_GPT_FORWARD_NONE);
  GptdRngState st;
  gptd_gpt_get_rng (m, &st);
  g_assert_cmpuint (st.counter, ==, 5); /* evaluation draws no masks */
  float train1 = tiny_loss (m, GPTD_GPT_FORWARD_TRAIN);
  float train2 = tiny_loss (m, GPTD_GPT_FORWARD_TRAIN);
  g_assert_cmpfloat (train1, ==, train2);
  g_assert_cmpfloat (train1, !=, eval1);
  gptd_gpt_get_rng (m, &st);
  g_assert_cmpuint (st.counter, ==, 6);
  float l1 = 0, l2 = 0;
  g_assert_true (gptd_gpt_forward (m, tiny_tokens, tiny_targets, 2, 10,
                                   GPTD_GPT_FORWARD_TRAIN, &l1, NULL));
  g_assert_true (gptd_gpt_forward (m, tiny_tokens, tiny_targets, 2, 10,
                                   GPTD_GPT_FORWARD_TRAIN, &l2, NULL));
  g_assert_cmpfloat (l1, !=, l2); /* the counter moved on */

  /* The mask keeps about 1 - p of the elements. */
  GptdNnDropout d = gptd__nn_dropout_stream (1, 2, 3, 0.3f);
  size_t kept = 0, n = 100000;
  for (size_t i = 0; i < n; i++)
    kept += gptd__nn_dropout_mul (&d, (guint32) i) != 0.0f;
  g_assert_cmpfloat (fabs ((double) kept / n - 0.7), <, 0.01);
  g_assert_cmpfloat (fabs (d.scale - 1.0f / 0.7f), <, 1e-6);
}

/* Frozen tensors get no gradient and no update; the others get exactly the
 * gradient of the unfrozen model. */
static void
test_freeze (void)
{
  GptdGptConfig c = tiny_config ();
  c.tie_embeddings = FALSE;
  g_autoptr (GptdGpt) full = tiny_model (&c, 8);
  g_autoptr (GptdGpt) part = tiny_model (&c, 8);
  g_assert_cmpuint (gptd_gpt_set_frozen (part, "*", TRUE), ==,
                    gptd_gpt_n_tensors (part));
  g_assert_cmpuint (gptd_gpt_set_frozen (part, "h.1.*", FALSE), ==, 12);
  g_assert_cmpuint (gptd_gpt_set_frozen (part, "ln_f.*", FALSE), ==, 2);
  g_assert_cmpuint (gptd_gpt_set_frozen (part, "lm_head.weight", FALSE), ==,
                    1);
  g_assert_cmpuint (gptd_gpt_set_frozen (part, "nothing*", FALSE), ==, 0);
  gptd_gpt_zero_grad (full);
  gptd_gpt_zero_grad (part);
  tiny_loss (full, GPTD_GPT_FORWARD_NONE);
  tiny_loss (part, GPTD_GPT_FORWARD_NONE);
  g_assert_true (gptd_gpt_backward (full, 1.0f, NULL));
  g_assert_true (gptd_gpt_backward (part, 1.0f, NULL));
  g_autofree float *before =
      g_memdup2 (gptd_gpt_get_params (part),
                 gptd_gpt_n_params (part) * sizeof (float));
  for (guint k = 0; k < gptd_gpt_n_tensors (part); k++)
    {
      const GptdNnTensor *t = gptd_gpt_get_tensor (part, k);
      const GptdNnTensor *f = gptd_gpt_get_tensor (full, k);
      gboolean want_frozen = !(g_str_has_prefix (t->name, "h.1.") ||
                               g_str_has_prefix (t->name, "ln_f.") ||
                               strcmp (t->name, "lm_head.weight") == 0);
      g_assert_cmpint (t->frozen, ==, want_frozen);
      /* Below the first trainable tensor no gradient is even stored. */
      if ((size_t) (t->data - gptd_gpt_get_params (part)) <
          gptd_gpt_get_grads_offset (part))
        {
          g_assert_true (want_frozen);
          g_assert_null (t->grad);
          continue;
        }
      for (size_t i = 0; i < t->numel; i++)
        if (want_frozen)
          g_assert_cmpfloat (t->grad[i], ==, 0.0f);
        else
          g_assert_cmpfloat (t->grad[i], ==, f->grad[i]);
    }
  GptdAdamWParams ap;
  gptd_adamw_params_init (&ap);
  g_autoptr (GptdAdamW) opt = gptd_adamw_new (part, &ap, NULL);
  g_assert_cmpuint (gptd_adamw_n_tensors (opt), ==, 2 * 15); /* the unfrozen only */
  gptd_gpt_clip_grad_norm (part, 1e-3f);
  gptd_adamw_step (opt, part, 0.1f);
  for (guint k = 0; k < gptd_gpt_n_tensors (part); k++)
    {
      const GptdNnTensor *t = gptd_gpt_get_tensor (part, k);
      const float *b = before + (t->data - gptd_gpt_get_params (part));
      gboolean same = memcmp (b, t->data, t->numel * sizeof (float)) == 0;
      g_assert_cmpint (same, ==, t->frozen);
    }
}

/* Two backward passes scaled by 1/2 accumulate the gradient of one. */
static void
test_accumulation (void)
{
  GptdGptConfig c = tiny_config ();
  g_autoptr (GptdGpt) a = tiny_model (&c, 4);
  g_autoptr (GptdGpt) b = tiny_model (&c, 4);
  gptd_gpt_zero_grad (a);
  gptd_gpt_zero_grad (b);
  tiny_loss (a, GPTD_GPT_FORWARD_NONE);
  g_assert_true (gptd_gpt_backward (a, 1.0f, NULL));
  for (int k = 0; k < 2; k++)
    {
      tiny_loss (b, GPTD_GPT_FORWARD_NONE);
      g_assert_true (gptd_gpt_backward (b, 0.5f, NULL));
    }
  tnn_assert_close ("accumulated gradient", gptd_gpt_get_grads (b),
                    gptd_gpt_get_grads (a), gptd_gpt_n_params (a), 1e-6);
  /* Backward consumed the logits: a second one needs a new forward. */
  GError *error = NULL;
  g_assert_false (gptd_gpt_backward (b, 1.0f, &error));
  g_assert_error (error, GPTD_NN_ERROR, GPTD_NN_ERROR_STATE);
  g_clear_error (&error);
}

static void
test_clip (void)
{
  GptdGptConfig c = tiny_config ();
  g_autoptr (GptdGpt) m = tiny_model (&c, 2);
  gptd_gpt_zero_grad (m);
  tiny_loss (m, GPTD_GPT_FORWARD_NONE);
  g_assert_true (gptd_gpt_backward (m, 1.0f, NULL));
  const float *g = gptd_gpt_get_grads (m);
  double ss = 0.0;
  for (size_t i = 0; i < gptd_gpt_n_params (m); i++)
    ss += (double) g[i] * g[i];
  float norm = gptd_gpt_clip_grad_norm (m, 0.0f); /* measure only */
  g_assert_cmpfloat (fabs (norm - sqrt (ss)), <, 1e-5 * sqrt (ss));
  float again = gptd_gpt_clip_grad_norm (m, norm * 2); /* no change */
  g_assert_cmpfloat (again, ==, norm);
  gptd_gpt_clip_grad_norm (m, norm / 4);
  float after = gptd_gpt_clip_grad_norm (m, 0.0f);
  g_assert_cmpfloat (fabs (after - norm / 4), <, 1e-5 * norm);
}

/* The fused clip-and-step matches clip then step bit for bit and leaves the
 * gradients unclipped. */
static void
test_step_clipped (void)
{
  GptdGptConfig c = tiny_config ();
  g_autoptr (GptdGpt) a = tiny_model (&c, 2);
  g_autoptr (GptdGpt) b = tiny_model (&c, 2);
  GptdAdamWParams ap;
  gptd_adamw_params_init (&ap);
  g_autoptr (GptdAdamW) oa = gptd_adamw_new (a, &ap, NULL);
  g_autoptr (GptdAdamW) ob = gptd_adamw_new (b, &ap, NULL);
  size_t n = gptd_gpt_n_params (a);
  for (int step = 0; step < 3; step++)
    {
      gptd_gpt_zero_grad (a);
      gptd_gpt_zero_grad (b);
      tiny_loss (a, GPTD_GPT_FORWARD_NONE);
      tiny_loss (b, GPTD_GPT_FORWARD_NONE);
      g_assert_true (gptd_gpt_backward (a, 1.0f, NULL));
      g_assert_true (gptd_gpt_backward (b, 1.0f, NULL));
      g_autofree float *gb = g_memdup2 (gptd_gpt_get_grads (b), n * 4);
      float na = gptd_gpt_clip_grad_norm (a, 0.05f);
      gptd_adamw_step (oa, a, 1e-2f);
      float nb = gptd_adamw_step_clipped (ob, b, 1e-2f, 0.05f);
      g_assert_cmpfloat (na, ==, nb);
      g_assert_cmpfloat (na, >, 0.05f);
      g_assert_cmpmem (gb, n * 4, gptd_gpt_get_grads (b), n * 4);
      g_assert_cmpmem (gptd_gpt_get_params (a), n * 4,
                       gptd_gpt_get_params (b), n * 4);
    }
}

static void
test_schedule (void)
{
  GptdLrSchedule s = { GPTD_LR_WARMUP_COSINE, 1e-3f, 1e-5f, 1e-4f, 10, 110 };
  g_assert_cmpfloat (gptd_lr_schedule_get (&s, 0), ==, 1e-5f);
  g_assert_cmpfloat (fabs (gptd_lr_schedule_get (&s, 5) - 5.05e-4f), <, 1e-9);
  g_assert_cmpfloat (fabs (gptd_lr_schedule_get (&s, 10) - 1e-3f), <, 1e-9);
  g_assert_cmpfloat (fabs (gptd_lr_schedule_get (&s, 60) - 5.5e-4f), <, 1e-9);
  g_assert_cmpfloat (fabs (gptd_lr_schedule_get (&s, 110) - 1e-4f), <, 1e-9);
  g_assert_cmpfloat (fabs (gptd_lr_schedule_get (&s, 500) - 1e-4f), <, 1e-9);
  s.kind = GPTD_LR_CONSTANT;
  g_assert_cmpfloat (gptd_lr_schedule_get (&s, 3), ==, 1e-3f);
}

static void
test_presets (void)
{
  static const struct {
    const char *name;
    size_t n;
  } want[] = { { "gpt2-small", 124439808 }, { "gpt2-medium", 354823168 },
               { "gpt2-large", 774030080 }, { "gpt2-xl", 1557611200 } };
  GptdGptConfig c;
  GError *error = NULL;
  for (size_t i = 0; i < G_N_ELEMENTS (want); i++)
    {
      g_assert_true (gptd_gpt_config_preset (want[i].name, &c, &error));
      g_assert_cmpuint (gptd_gpt_config_n_params (&c), ==, want[i].n);
      g_assert_true (gptd_gpt_config_validate (&c, &error));
    }
  g_assert_false (gptd_gpt_config_preset ("gpt3", &c, &error));
  g_assert_error (error, GPTD_NN_ERROR, GPTD_NN_ERROR_CONFIG);
  g_clear_error (&error);

  /* The book's model: untied head, no qkv bias: 163M parameters. */
  gptd_gpt_config_preset ("gpt2-small", &c, NULL);
  c.tie_embeddings = FALSE;
  c.qkv_bias = FALSE;
  c.context_length = 256;
  g_assert_cmpuint (gptd_gpt_config_n_params (&c), ==, 162419712);

  c = tiny_config ();
  c.n_embd = 9;
  g_assert_false (gptd_gpt_config_validate (&c, &error));
  g_assert_error (error, GPTD_NN_ERROR, GPTD_NN_ERROR_CONFIG);
  g_assert_nonnull (strstr (error->message, "n_head"));
  g_clear_error (&error);
  c = tiny_config ();
  c.n_out = 2; /* needs an untied head */
  g_assert_null (gptd_gpt_new (&c, &error));
  g_assert_error (error, GPTD_NN_ERROR, GPTD_NN_ERROR_CONFIG);
  g_clear_error (&error);
  c = tiny_config ();
  c.dropout = 1.0f;
  g_assert_false (gptd_gpt_config_validate (&c, &error));
  g_clear_error (&error);
}

static void
test_tensors (void)
{
  GptdGptConfig c = tiny_config ();
  g_autoptr (GptdGpt) m = tiny_model (&c, 1);
  g_assert_cmpuint (gptd_gpt_n_tensors (m), ==, 2 + 12 * 2 + 2);
  const GptdNnTensor *t = gptd_gpt_lookup_tensor (m, "h.1.attn.c_attn.weight");
  g_assert_nonnull (t);
  g_assert_cmpint (t->ndim, ==, 2);
  g_assert_cmpuint (t->shape[0], ==, 8);
  g_assert_cmpuint (t->shape[1], ==, 24);
  g_assert_null (gptd_gpt_lookup_tensor (m, "lm_head.weight"));
  size_t total = 0;
  for (guint k = 0; k < gptd_gpt_n_tensors (m); k++)
    {
      t = gptd_gpt_get_tensor (m, k);
      g_assert_true (t->data == gptd_gpt_get_params (m) + total);
      g_assert_true (t->grad == gptd_gpt_get_grads (m) + total);
      total += t->numel;
    }
  g_assert_cmpuint (total, ==, gptd_gpt_n_params (m));

  GptdAdamWParams ap;
  gptd_adamw_params_init (&ap);
  g_autoptr (GptdAdamW) opt = gptd_adamw_new (m, &ap, NULL);
  g_assert_cmpuint (gptd_adamw_n_tensors (opt), ==,
                    2 * gptd_gpt_n_tensors (m));
  const GptdNnTensor *mv = gptd_adamw_lookup_tensor (opt, "adamw.v.wpe.weight");
  g_assert_nonnull (mv);
  g_assert_cmpuint (mv->numel, ==, 12 * 8);
  g_assert_null (mv->grad);
  g_assert_cmpstr (gptd_adamw_get_tensor (opt, 0)->name, ==,
                   "adamw.m.wte.weight");
  gptd_adamw_set_step (opt, 7);
  g_assert_cmpint (gptd_adamw_get_step (opt), ==, 7);
}

/* LAST_ONLY gives the full forward's last-position logits. */
static void
test_last_only (void)
{
  GptdGptConfig c = tiny_config ();
  g_autoptr (GptdGpt) m = tiny_model (&c, 6);
  g_assert_true (gptd_gpt_forward (m, tiny_tokens, NULL, 2, 10,
                                   GPTD_GPT_FORWARD_NONE, NULL, NULL));
  int B, T, V;
  g_autofree float *full =
      g_memdup2 (gptd_gpt_get_logits (m, &B, &T, &V), 2 * 10 * 11 * 4);
  g_assert_cmpint (T, ==, 10);
  g_assert_true (gptd_gpt_forward (m, tiny_tokens, NULL, 2, 10,
                                   GPTD_GPT_FORWARD_LAST_ONLY, NULL, NULL));
  const float *last = gptd_gpt_get_logits (m, &B, &T, &V);
  g_assert_cmpint (B, ==, 2);
  g_assert_cmpint (T, ==, 1);
  g_assert_cmpint (V, ==, 11);
  for (int b = 0; b < 2; b++)
    tnn_assert_close ("last logits", last + b * V, full + (b * 10 + 9) * V, V,
                      1e-6);
  /* A smaller batch reuses the plan. */
  g_assert_true (gptd_gpt_forward (m, tiny_tokens, NULL, 1, 4,
                                   GPTD_GPT_FORWARD_NONE, NULL, NULL));
}

/* ---- Pooled classifier head --------------------------------------------- */

static const gint32 pool_pos[2] = { 6, 3 };
static const gint32 pool_labels[2] = { 1, 2 };

static float
pooled_loss (GptdGpt *m)
{
  GptdRngState rng = { 99, 5 };
  gptd_gpt_set_rng (m, &rng);
  float loss = 0.0f;
  g_assert_true (gptd_gpt_forward_pooled (m, tiny_tokens, pool_pos,
                                          pool_labels, 2, 10,
                                          GPTD_GPT_FORWARD_TRAIN, &loss,
                                          NULL));
  return loss;
}

/* A 3-class head with a bias read at a position per row, with dropout and
 * the first block frozen: every trainable gradient matches finite
 * differences, and the frozen ones stay zero. */
static void
test_pooled_fd (void)
{
  GptdGptConfig c = tiny_config ();
  c.tie_embeddings = FALSE;
  c.head_bias = TRUE;
  c.n_out = 3;
  c.dropout = 0.2f;
  g_autoptr (GptdGpt) m = tiny_model (&c, 8);
  g_assert_cmpuint (gptd_gpt_set_frozen (m, "*", TRUE), >, 0);
  gptd_gpt_set_frozen (m, "h.1.*", FALSE);
  gptd_gpt_set_frozen (m, "ln_f.*", FALSE);
  gptd_gpt_set_frozen (m, "lm_head.*", FALSE);
  gptd_gpt_zero_grad (m);
  pooled_loss (m);
  g_assert_true (gptd_gpt_backward (m, 1.0f, NULL));
  for (guint k = 0; k < gptd_gpt_n_tensors (m); k++)
    {
      const GptdNnTensor *t = gptd_gpt_get_tensor (m, k);
      if (t->frozen)
        {
          /* Frozen: no gradient (none stored below the first trainable tensor). */
          for (size_t i = 0; t->grad != NULL && i < t->numel; i++)
            g_assert_cmpfloat (t->grad[i], ==, 0.0f);
          continue;
        }
      size_t step = MAX ((size_t) 1, t->numel / 40);
      size_t cnt = (t->numel + step - 1) / step;
      g_autofree double *num = g_new (double, cnt);
      g_autofree float *ana = g_new (float, cnt);
      for (size_t i = 0, j = 0; i < t->numel; i += step, j++)
        {
          float keep = t->data[i];
          t->data[i] = keep + FD_EPS;
          double up = pooled_loss (m);
          t->data[i] = keep - FD_EPS;
          double down = pooled_loss (m);
          t->data[i] = keep;
          num[j] = (up - down) / (2.0 * FD_EPS);
          ana[j] = t->grad[i];
        }
      double err = rel_error (num, ana, cnt);
      if (err >= 2e-2)
        g_test_fail_printf ("%s: finite-difference relative error %g",
                            t->name, err);
    }
}

/* Pooled logits are the full forward's logits at the given positions; the
 * last position gives LAST_ONLY's; a position outside the row is an error. */
static void
test_pooled_positions (void)
{
  GptdGptConfig c = tiny_config ();
  g_autoptr (GptdGpt) m = tiny_model (&c, 6);
  g_assert_true (gptd_gpt_forward (m, tiny_tokens, NULL, 2, 10,
                                   GPTD_GPT_FORWARD_NONE, NULL, NULL));
  int B, T, V;
  g_autofree float *full =
      g_memdup2 (gptd_gpt_get_logits (m, &B, &T, &V), 2 * 10 * 11 * 4);
  g_assert_true (gptd_gpt_forward_pooled (m, tiny_tokens, pool_pos, NULL, 2,
                                          10, GPTD_GPT_FORWARD_NONE, NULL,
                                          NULL));
  const float *got = gptd_gpt_get_logits (m, &B, &T, &V);
  g_assert_cmpint (T, ==, 1);
  for (int b = 0; b < 2; b++)
    tnn_assert_close ("pooled logits", got + b * V,
                      full + (b * 10 + pool_pos[b]) * V, V, 1e-6);

  const gint32 last[2] = { 9, 9 };
  float l1 = 0, l2 = 0;
  const gint32 tg[2] = { 4, 7 };
  g_assert_true (gptd_gpt_forward_pooled (m, tiny_tokens, last, tg, 2, 10,
                                          GPTD_GPT_FORWARD_NONE, &l1, NULL));
  g_assert_true (gptd_gpt_forward (m, tiny_tokens, tg, 2, 10,
                                   GPTD_GPT_FORWARD_LAST_ONLY, &l2, NULL));
  g_assert_cmpfloat (l1, ==, l2);

  GError *error = NULL;
  const gint32 bad[2] = { 3, 10 };
  g_assert_false (gptd_gpt_forward_pooled (m, tiny_tokens, bad, NULL, 2, 10,
                                           GPTD_GPT_FORWARD_NONE, NULL,
                                           &error));
  g_assert_error (error, GPTD_NN_ERROR, GPTD_NN_ERROR_INPUT);
  g_assert_nonnull (strstr (error->message, "row 1"));
  g_clear_error (&error);
}

/* Changing the team size after the plan regrows the per-thread scratch. */
static void
test_thread_change (void)
{
  int saved = gptd_nn_get_num_threads ();
  GptdGptConfig c = tiny_config ();
  g_autoptr (GptdGpt) m = tiny_model (&c, 6);
  g_autoptr (GptdGptKvCache) cache = gptd_gpt_kv_cache_new (m, 0, NULL);
  gptd_nn_set_num_threads (1);
  float l1 = tiny_loss (m, GPTD_GPT_FORWARD_NONE);
  const float *k1 = gptd_gpt_forward_cached (m, cache, tiny_tokens, 6, NULL);
  float first = k1[3];
  gptd_nn_set_num_threads (4);
  g_assert_cmpint (gptd_nn_get_num_threads (), ==, 4);
  float l4 = tiny_loss (m, GPTD_GPT_FORWARD_NONE);
  g_assert_true (gptd_gpt_backward (m, 1.0f, NULL));
  gptd_gpt_kv_cache_reset (cache);
  const float *k4 = gptd_gpt_forward_cached (m, cache, tiny_tokens, 6, NULL);
  g_assert_cmpfloat (fabs (l1 - l4), <, 1e-5);
  g_assert_cmpfloat (fabs (first - k4[3]), <, 1e-5);
  gptd_nn_set_num_threads (saved);
}

/* One token at a time (the single-region decoding step, its products split
 * by rows of the weights over the team) gives the logits of the several-row
 * path over the same prefix, for 1 to 3 threads, with and without the qkv
 * bias, with a tied and with an untied biased head. */
static void
test_decode_step (void)
{
  int saved = gptd_nn_get_num_threads ();
  for (int variant = 0; variant < 2; variant++)
    {
      GptdGptConfig c = tiny_config ();
      c.n_embd = 24;
      c.n_head = 3;
      if (variant == 1)
        {
          c.qkv_bias = FALSE;
          c.tie_embeddings = FALSE;
          c.head_bias = TRUE;
        }
      g_autoptr (GptdGpt) m = tiny_model (&c, 11 + variant);
      const int V = c.vocab_size, n = 10;
      g_autoptr (GptdGptKvCache) step = gptd_gpt_kv_cache_new (m, 0, NULL);
      g_autoptr (GptdGptKvCache) whole = gptd_gpt_kv_cache_new (m, 0, NULL);
      for (int nt = 1; nt <= 3; nt++)
        {
          gptd_nn_set_num_threads (nt);
          gptd_gpt_kv_cache_reset (step);
          for (int k = 0; k < n; k++)
            {
              GError *error = NULL;
              const float *a =
                  gptd_gpt_forward_cached (m, step, tiny_tokens + k, 1, &error);
              g_assert_no_error (error);
              float got[64];
              memcpy (got, a, sizeof (float) * V);
              if (k == 0)
                continue; /* one row: the same path either way */
              gptd_gpt_kv_cache_reset (whole);
              const float *b = gptd_gpt_forward_cached (m, whole, tiny_tokens,
                                                        k + 1, &error);
              g_assert_no_error (error);
              for (int v = 0; v < V; v++)
                if (fabsf (got[v] - b[v]) > 1e-5f * (1.0f + fabsf (b[v])))
                  g_error ("variant %d, %d threads, token %d: logit %d is %g "
                           "one token at a time, %g for the whole prefix",
                           variant, nt, k, v, got[v], b[v]);
            }
          g_assert_cmpint (gptd_gpt_kv_cache_get_length (step), ==, n);
        }
    }
  gptd_nn_set_num_threads (saved);
}

static void
test_input_errors (void)
{
  GptdGptConfig c = tiny_config ();
  g_autoptr (GptdGpt) m = tiny_model (&c, 6);
  GError *error = NULL;
  gint32 bad[3] = { 1, 11, 2 };
  g_assert_false (gptd_gpt_forward (m, bad, NULL, 1, 3, 0, NULL, &error));
  g_assert_error (error, GPTD_NN_ERROR, GPTD_NN_ERROR_INPUT);
  g_assert_nonnull (strstr (error->message, "position 1"));
  g_clear_error (&error);
  g_assert_false (gptd_gpt_forward (m, tiny_tokens, NULL, 1, 13, 0, NULL,
                                    &error));
  g_assert_error (error, GPTD_NN_ERROR, GPTD_NN_ERROR_INPUT);
  g_clear_error (&error);
  gint32 tgt[3] = { 1, -5, 2 };
  g_assert_false (gptd_gpt_forward (m, tiny_tokens, tgt, 1, 3, 0, NULL,
                                    &error));
  g_assert_error (error, GPTD_NN_ERROR, GPTD_NN_ERROR_INPUT);
  g_clear_error (&error);
  /* All targets ignored: NaN loss, and backward refuses. */
  gint32 none[3] = { -100, -100, -100 };
  float loss = 0.0f;
  g_assert_true (gptd_gpt_forward (m, tiny_tokens, none, 1, 3, 0, &loss,
                                   &error));
  g_assert_true (isnan (loss));
  g_assert_false (gptd_gpt_backward (m, 1.0f, &error));
  g_assert_error (error, GPTD_NN_ERROR, GPTD_NN_ERROR_STATE);
  g_clear_error (&error);
  g_assert_true (gptd_gpt_forward (m, tiny_tokens, NULL, 1, 3, 0, NULL,
                                   &error));
  g_assert_false (gptd_gpt_backward (m, 1.0f, &error));
  g_assert_error (error, GPTD_NN_ERROR, GPTD_NN_ERROR_STATE);
  g_clear_error (&error);
  g_assert_null (gptd_gpt_kv_cache_new (m, 13, &error));
  g_assert_error (error, GPTD_NN_ERROR, GPTD_NN_ERROR_CONFIG);
  g_clear_error (&error);
}

/* The vectorised exp: close to expf() over its range, clamped at the ends
 * (infinities included), and NaN for NaN. Without its NaN guard the exponent is
 * an undefined conversion of NaN to an integer, which the sanitizer build
 * (float-cast-overflow, shift) stops at. */
static void
test_expf (void)
{
  for (float x = -80.0f; x <= 80.0f; x += 0.37f)
    {
      float got = gptd__nn_expf (x), want = expf (x);
      g_assert_cmpfloat (fabsf (got - want), <=, 4e-7f * want);
    }
  g_assert_cmpfloat (gptd__nn_expf (INFINITY), ==, gptd__nn_expf (88.0f));
  g_assert_cmpfloat (gptd__nn_expf (-INFINITY), ==, gptd__nn_expf (-87.0f));
  g_assert_cmpfloat (gptd__nn_expf (-1e30f), >, 0.0f);
  volatile float nan_in = NAN;
  g_assert_true (isnan (gptd__nn_expf (nan_in)));
  g_assert_true (isnan (gptd__nn_expf (-nan_in)));
}

int
main (int argc, char **argv)
{
  g_test_init (&argc, &argv, NULL);
  g_test_add_func ("/nn/grad/expf", test_expf);
  g_test_add_func ("/nn/grad/layernorm", test_layernorm);
  g_test_add_func ("/nn/grad/gelu", test_gelu);
  g_test_add_func ("/nn/grad/attention", test_attention);
  g_test_add_func ("/nn/grad/attention-dropout", test_attention_dropout);
  g_test_add_func ("/nn/grad/cross-entropy", test_cross_entropy);
  g_test_add_func ("/nn/grad/model", test_model_fd);
  g_test_add_func ("/nn/grad/model-dropout-untied", test_model_fd_dropout);
  g_test_add_func ("/nn/model/dropout-state", test_dropout_state);
  g_test_add_func ("/nn/model/freeze", test_freeze);
  g_test_add_func ("/nn/model/accumulation", test_accumulation);
  g_test_add_func ("/nn/model/clip", test_clip);
  g_test_add_func ("/nn/model/step-clipped", test_step_clipped);
  g_test_add_func ("/nn/model/schedule", test_schedule);
  g_test_add_func ("/nn/model/presets", test_presets);
  g_test_add_func ("/nn/model/tensors", test_tensors);
  g_test_add_func ("/nn/model/last-only", test_last_only);
  g_test_add_func ("/nn/grad/pooled", test_pooled_fd);
  g_test_add_func ("/nn/model/pooled-positions", test_pooled_positions);
  g_test_add_func ("/nn/model/thread-change", test_thread_change);
  g_test_add_func ("/nn/model/decode-step", test_decode_step);
  g_test_add_func ("/nn/model/input-errors", test_input_errors);
  return g_test_run ();
}
