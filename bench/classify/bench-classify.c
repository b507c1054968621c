/* bench-classify.c: speed and memory of the book's classification fine-tuning
 * step (chapter 6) on the gpt2-small shape: a new 2-class head with a bias,
 * everything frozen but the last block, the final LayerNorm and the head, the
 * cross-entropy of the last position's logits, backward, AdamW (lr 5e-5,
 * weight decay 0.1).  Random weights and tokens: the speed does not depend on
 * them.
 *
 *   bench-classify [--batch 8] [--context 120] [--steps 10] [--warmup 2]
 *                  [--threads N] [--trainable last-block|all] [--dropout 0]
 *
 * Prints one line of key=value pairs: examples per second (median over the
 * measured steps), the step time, and the peak resident memory.
 */
#include <gptd/nn.h>

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>

static double
now (void)
{
  struct timespec t;
  clock_gettime (CLOCK_MONOTONIC, &t);
  return t.tv_sec + t.tv_nsec * 1e-9;
}

static int
cmp_double (const void *a, const void *b)
{
  double x = *(const double *) a, y = *(const double *) b;
  return x < y ? -1 : x > y;
}

int
main (int argc, char **argv)
{
  int B = 8, T = 120, steps = 10, warmup = 2, threads = 0;
  double dropout = 0.0; /* the book's BASE_CONFIG drop_rate for chapter 6 */
  const char *trainable = "last-block";
  for (int i = 1; i < argc; i++)
    {
      const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : "";
      if (strcmp (a, "--batch") == 0)
        B = atoi (v), i++;
      else if (strcmp (a, "--context") == 0)
        T = atoi (v), i++;
      else if (strcmp (a, "--steps") == 0)
        steps = atoi (v), i++;
      else if (strcmp (a, "--warmup") == 0)
        warmup = atoi (v), i++;
      else if (strcmp (a, "--threads") == 0)
        threads = atoi (v), i++;
      else if (strcmp (a, "--dropout") == 0)
        dropout = atof (v), i++;
      else if (strcmp (a, "--trainable") == 0)
        trainable = v, i++;
      else
        {
          fprintf (stderr, "bench-classify: unknown option %s\n", a);
          return 2;
        }
    }
  gptd_nn_set_num_threads (threads);

  GError *error = NULL;
  GptdGptConfig c;
  gptd_gpt_config_preset ("gpt2-small", &c, NULL);
  c.tie_embeddings = FALSE;
  c.head_bias = TRUE;
  c.n_out = 2;
  c.dropout = (float) dropout;
  GptdGpt *m = gptd_gpt_new (&c, &error);
  if (m == NULL)
    {
      fprintf (stderr, "bench-classify: %s\n", error->message);
      return 1;
    }
  gptd_gpt_init_weights (m, 123);
  if (strcmp (trainable, "all") != 0)
    {
      char pattern[32];
      snprintf (pattern, sizeof pattern, "h.%d.*", c.n_layer - 1);
      gptd_gpt_set_frozen (m, "*", TRUE);
      gptd_gpt_set_frozen (m, pattern, FALSE);
      gptd_gpt_set_frozen (m, "ln_f.*", FALSE);
      gptd_gpt_set_frozen (m, "lm_head.*", FALSE);
    }
  GptdAdamWParams ap;
  gptd_adamw_params_init (&ap);
  ap.weight_decay = 0.1f;
  GptdAdamW *opt = gptd_adamw_new (m, &ap, &error);
  if (opt == NULL)
    {
      fprintf (stderr, "bench-classify: %s\n", error->message);
      return 1;
    }

  gint32 *tokens = malloc (sizeof (gint32) * B * T), *labels = malloc (sizeof (gint32) * B);
  guint64 s = 42;
  for (int i = 0; i < B * T; i++)
    {
      s = s * 6364136223846793005ULL + 1442695040888963407ULL;
      tokens[i] = (gint32) ((s >> 33) % 50257);
    }
  for (int b = 0; b < B; b++)
    labels[b] = b % 2;

  double *times = malloc (sizeof (double) * (steps > 0 ? steps : 1));
  float loss = 0;
  for (int i = 0; i < warmup + steps; i++)
    {
      double t0 = now ();
      gptd_gpt_zero_grad (m);
      if (!gptd_gpt_forward (m, tokens, labels, B, T,
                             GPTD_GPT_FORWARD_TRAIN | GPTD_GPT_FORWARD_LAST_ONLY, &loss,
                             &error) ||
          !gptd_gpt_backward (m, 1.0f, &error))
        {
          fprintf (stderr, "bench-classify: %s\n", error->message);
          return 1;
        }
      gptd_adamw_step (opt, m, 5e-5f);
      if (i >= warmup)
        times[i - warmup] = now () - t0;
    }
  qsort (times, steps, sizeof (double), cmp_double);
  double med = times[steps / 2];
  size_t n_train = 0;
  for (guint i = 0; i < gptd_gpt_n_tensors (m); i++)
    if (!gptd_gpt_get_tensor (m, i)->frozen)
      n_train += gptd_gpt_get_tensor (m, i)->numel;
  struct rusage ru;
  getrusage (RUSAGE_SELF, &ru);
  printf ("impl=gptd model=gpt2-small batch=%d context=%d threads=%d trainable=%s "
          "trainable_params=%zu step_ms=%.1f examples_per_s=%.2f peak_rss_mib=%.0f "
          "loss=%.4f\n",
          B, T, gptd_nn_get_num_threads (), trainable, n_train, med * 1e3, B / med,
          ru.ru_maxrss / 1024.0, loss);
  gptd_adamw_free (opt);
  gptd_gpt_free (m);
  free (tokens);
  free (labels);
  free (times);
  return 0;
}
