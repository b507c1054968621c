/* bench-lora.c: LoRA against full fine-tuning in gptd, on the gpt2-small shape
 * with random weights and tokens: one training step (next-token cross-entropy
 * over every position, backward, AdamW) with either every parameter trainable
 * or the base frozen and rank-r adapters on every block's four linear layers
 * (the book's appendix E).
 *
 *   bench-lora [--lora-rank 16] [--lora-alpha 16] [--batch 2] [--context 128]
 *              [--steps 3] [--warmup 1] [--threads N]
 *
 * --lora-rank 0 is full fine-tuning.  Prints one line of key=value pairs: the
 * median step time, the trainable parameters, the optimizer-state floats and
 * the peak resident memory.  Run each mode in its own process so that each
 * peak is its own.
 */
#include <gptd/nn.h>

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
  int B = 2, T = 128, steps = 3, warmup = 1, threads = 0, rank = 16;
  double alpha = 16.0;
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
      else if (strcmp (a, "--lora-rank") == 0)
        rank = atoi (v), i++;
      else if (strcmp (a, "--lora-alpha") == 0)
        alpha = atof (v), i++;
      else
        {
          fprintf (stderr, "bench-lora: unknown option %s\n", a);
          return 2;
        }
    }
  if (steps < 1 || B < 1 || T < 1 || T > 1024 || rank < 0)
    {
      fprintf (stderr, "bench-lora: need --steps >= 1, --batch >= 1, 1 <= --context <= "
               "1024 and --lora-rank >= 0\n");
      return 2;
    }
  gptd_nn_set_num_threads (threads);

  GError *error = NULL;
  GptdGptConfig c;
  gptd_gpt_config_preset ("gpt2-small", &c, NULL);
  c.dropout = 0.0f;
  GptdGpt *m = gptd_gpt_new (&c, &error);
  if (m == NULL)
    goto fail;
  gptd_gpt_init_weights (m, 123);
  if (rank > 0)
    {
      if (!gptd_gpt_add_lora (m, rank, (float) alpha, 123, &error))
        goto fail;
      gptd_gpt_set_frozen (m, "*", TRUE);
      gptd_gpt_set_frozen (m, "*.lora_?", FALSE);
    }
  GptdAdamWParams ap;
  gptd_adamw_params_init (&ap);
  ap.weight_decay = 0.1f;
  GptdAdamW *opt = gptd_adamw_new (m, &ap, &error);
  if (opt == NULL)
    goto fail;
  size_t moments = 0;
  for (guint i = 0; i < gptd_adamw_n_tensors (opt); i++)
    moments += gptd_adamw_get_tensor (opt, i)->numel;

  gint32 *tokens = malloc (sizeof (gint32) * B * (T + 1));
  guint64 s = 42;
  for (int i = 0; i < B * (T + 1); i++)
    {
      s = s * 6364136223846793005ULL + 1442695040888963407ULL;
      tokens[i] = (gint32) ((s >> 33) % 50257);
    }
  gint32 *inputs = malloc (sizeof (gint32) * B * T), *targets = malloc (sizeof (gint32) * B * T);
  for (int b = 0; b < B; b++)
    {
      memcpy (inputs + b * T, tokens + b * (T + 1), sizeof (gint32) * T);
      memcpy (targets + b * T, tokens + b * (T + 1) + 1, sizeof (gint32) * T);
    }

  double *times = malloc (sizeof (double) * steps);
  float loss = 0;
  for (int i = 0; i < warmup + steps; i++)
    {
      double t0 = now ();
      gptd_gpt_zero_grad (m);
      if (!gptd_gpt_forward (m, inputs, targets, B, T, GPTD_GPT_FORWARD_TRAIN, &loss, &error)
          || !gptd_gpt_backward (m, 1.0f, &error))
        goto fail;
      gptd_adamw_step (opt, m, 1e-4f);
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
  printf ("impl=gptd mode=%s model=gpt2-small batch=%d context=%d threads=%d "
          "lora_rank=%d trainable_params=%zu adamw_floats=%zu step_ms=%.1f "
          "peak_rss_mib=%.0f loss=%.4f\n",
          rank > 0 ? "lora" : "full", B, T, gptd_nn_get_num_threads (), rank, n_train,
          moments, med * 1e3, ru.ru_maxrss / 1024.0, loss);
  gptd_adamw_free (opt);
  gptd_gpt_free (m);
  free (tokens);
  free (inputs);
  free (targets);
  free (times);
  return 0;

fail:
  fprintf (stderr, "bench-lora: %s\n", error ? error->message : "failed");
  return 1;
}
