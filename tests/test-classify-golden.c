/* test-classify-golden.c: the book's classification fine-tuning on a tiny model
 * against PyTorch (tests/golden/classify/make_goldens.py): a padded batch, the
 * logits and loss with the head at the last position (pooling=last) and at each
 * row's last real token (pooling=last-token), every trainable gradient with all
 * but the last block, the final LayerNorm and the head frozen, the accuracy, two
 * AdamW steps and the loss after them, and frozen weights bitwise unchanged.
 */
#include "test-nn-util.h"

typedef struct {
  TnnGolden *g;
  GptdGpt *model;
  int B, T;
  const gint32 *inputs, *labels, *lengths;
} Case;

static void
case_setup (Case *c)
{
  g_autofree char *path =
      g_test_build_filename (G_TEST_DIST, "golden", "classify", "tiny.bin", NULL);
  c->g = tnn_golden_load (path);
  const gint32 *cfg = tnn_golden_get (c->g, "config")->data;
  GptdGptConfig config = {
    .n_layer = cfg[0], .n_head = cfg[1], .n_embd = cfg[2], .context_length = cfg[3],
    .vocab_size = cfg[4], .n_out = cfg[5], .qkv_bias = TRUE, .tie_embeddings = FALSE,
    .head_bias = TRUE, .dropout = 0.0f, .layer_norm_epsilon = 1e-5f,
  };
  c->B = cfg[6];
  c->T = cfg[7];
  GError *error = NULL;
  c->model = gptd_gpt_new (&config, &error);
  g_assert_no_error (error);
  tnn_init_weights (c->model, (guint32) cfg[8]);
  c->inputs = tnn_golden_get (c->g, "inputs")->data;
  c->labels = tnn_golden_get (c->g, "labels")->data;
  c->lengths = tnn_golden_get (c->g, "lengths")->data;
  /* The book: the last block, the final LayerNorm and the head train. */
  gptd_gpt_set_frozen (c->model, "*", TRUE);
  g_autofree char *last = g_strdup_printf ("h.%d.*", config.n_layer - 1);
  gptd_gpt_set_frozen (c->model, last, FALSE);
  gptd_gpt_set_frozen (c->model, "ln_f.*", FALSE);
  gptd_gpt_set_frozen (c->model, "lm_head.*", FALSE);
}

static void
case_clear (Case *c)
{
  gptd_gpt_free (c->model);
  tnn_golden_free (c->g);
}

static float
last_loss (Case *c, gboolean train)
{
  float loss = NAN;
  g_assert_true (gptd_gpt_forward (c->model, c->inputs, c->labels, c->B, c->T,
                                   train ? GPTD_GPT_FORWARD_TRAIN | GPTD_GPT_FORWARD_LAST_ONLY
                                         : GPTD_GPT_FORWARD_LAST_ONLY, &loss, NULL));
  return loss;
}

/* The inputs are right-padded with the pad id to the longest row. */
static void
test_padding (void)
{
  Case c;
  case_setup (&c);
  const gint32 pad = ((const gint32 *) tnn_golden_get (c.g, "config")->data)[9];
  int longest = 0;
  for (int b = 0; b < c.B; b++)
    {
      longest = MAX (longest, c.lengths[b]);
      for (int t = c.lengths[b]; t < c.T; t++)
        g_assert_cmpint (c.inputs[b * c.T + t], ==, pad);
    }
  g_assert_cmpint (longest, ==, c.T);
  case_clear (&c);
}

/* Logits, loss, trainable gradients and accuracy with pooling=last; frozen
 * tensors get no gradient. */
static void
test_last (void)
{
  Case c;
  case_setup (&c);
  gptd_gpt_zero_grad (c.model);
  float loss = last_loss (&c, TRUE);
  int V = 0;
  const float *logits = gptd_gpt_get_logits (c.model, NULL, NULL, &V);
  tnn_assert_close ("logits.last", logits, tnn_golden_get (c.g, "logits.last")->data,
                    (size_t) c.B * V, 1e-5);
  int correct = 0;
  for (int b = 0; b < c.B; b++)
    correct += (logits[b * V + 1] > logits[b * V]) == (c.labels[b] == 1);
  const float *acc = tnn_golden_get (c.g, "accuracy.last")->data;
  g_assert_cmpfloat_with_epsilon ((double) correct / c.B, acc[0], 1e-6);
  const float *want = tnn_golden_get (c.g, "loss.last")->data;
  g_assert_cmpfloat_with_epsilon (loss, want[0], 1e-5);
  g_assert_true (gptd_gpt_backward (c.model, 1.0f, NULL));
  guint checked = 0;
  for (guint k = 0; k < gptd_gpt_n_tensors (c.model); k++)
    {
      const GptdNnTensor *t = gptd_gpt_get_tensor (c.model, k);
      g_autofree char *name = g_strconcat ("grad.", t->name, NULL);
      if (t->frozen)
        {
          /* Frozen: no gradient (none stored below the first trainable tensor). */
          for (size_t i = 0; t->grad != NULL && i < t->numel; i++)
            g_assert_cmpfloat (t->grad[i], ==, 0.0f);
          continue;
        }
      tnn_assert_close (name, t->grad, tnn_golden_get (c.g, name)->data, t->numel, 1e-4);
      checked++;
    }
  g_assert_cmpuint (checked, >, 10);
  case_clear (&c);
}

/* pooling=last-token reads each row at its last real token, and differs from
 * the last position where a row is padded. */
static void
test_last_token (void)
{
  Case c;
  case_setup (&c);
  gint32 pos[16];
  for (int b = 0; b < c.B; b++)
    pos[b] = c.lengths[b] - 1;
  float loss = NAN;
  g_assert_true (gptd_gpt_forward_pooled (c.model, c.inputs, pos, c.labels, c.B, c.T,
                                          GPTD_GPT_FORWARD_NONE, &loss, NULL));
  int V = 0;
  const float *logits = gptd_gpt_get_logits (c.model, NULL, NULL, &V);
  tnn_assert_close ("logits.last-token", logits,
                    tnn_golden_get (c.g, "logits.last-token")->data, (size_t) c.B * V, 1e-5);
  const float *want = tnn_golden_get (c.g, "loss.last-token")->data;
  g_assert_cmpfloat_with_epsilon (loss, want[0], 1e-5);
  const float *other = tnn_golden_get (c.g, "loss.last")->data;
  g_assert_cmpfloat (fabsf (want[0] - other[0]), >, 1e-3);
  case_clear (&c);
}

/* Two AdamW steps (lr 1e-3, weight decay 0.1): the losses, the loss after them,
 * the trained tensors, and the frozen ones bitwise as they were. */
static void
test_steps (void)
{
  Case c;
  case_setup (&c);
  size_t n = gptd_gpt_n_params (c.model);
  g_autofree float *before = g_memdup2 (gptd_gpt_get_params (c.model), n * sizeof (float));
  GptdAdamWParams ap;
  gptd_adamw_params_init (&ap);
  ap.weight_decay = 0.1f;
  g_autoptr (GptdAdamW) opt = gptd_adamw_new (c.model, &ap, NULL);
  float losses[3];
  for (int s = 0; s < 2; s++)
    {
      gptd_gpt_zero_grad (c.model);
      losses[s] = last_loss (&c, TRUE);
      g_assert_true (gptd_gpt_backward (c.model, 1.0f, NULL));
      gptd_adamw_step (opt, c.model, 1e-3f);
    }
  losses[2] = last_loss (&c, FALSE);
  tnn_assert_close ("step_losses", losses, tnn_golden_get (c.g, "step_losses")->data, 3,
                    1e-5);
  for (guint k = 0; k < gptd_gpt_n_tensors (c.model); k++)
    {
      const GptdNnTensor *t = gptd_gpt_get_tensor (c.model, k);
      g_autofree char *name = g_strconcat ("after.", t->name, NULL);
      if (t->frozen)
        g_assert_cmpmem (t->data, t->numel * sizeof (float),
                         before + (t->data - gptd_gpt_get_params (c.model)),
                         t->numel * sizeof (float));
      else
        {
          /* The updates: Adam's step on a gradient near zero amplifies float32
           * rounding, so compare the change with 15% of its largest size. */
          const float *want = tnn_golden_get (c.g, name)->data;
          const float *init = before + (t->data - gptd_gpt_get_params (c.model));
          g_autofree float *got_d = g_new (float, t->numel);
          g_autofree float *want_d = g_new (float, t->numel);
          for (size_t i = 0; i < t->numel; i++)
            {
              got_d[i] = t->data[i] - init[i];
              want_d[i] = want[i] - init[i];
            }
          tnn_assert_close (name, got_d, want_d, t->numel, 0.15);
        }
    }
  case_clear (&c);
}

int
main (int argc, char **argv)
{
  g_test_init (&argc, &argv, NULL);
  gptd_nn_set_num_threads (2);
  g_test_add_func ("/nn/classify/padding", test_padding);
  g_test_add_func ("/nn/classify/last", test_last);
  g_test_add_func ("/nn/classify/last-token", test_last_token);
  g_test_add_func ("/nn/classify/steps", test_steps);
  return g_test_run ();
}
