/* bench-train.c: speed of a full GPT-2 training step (forward, backward,
 * clipping, AdamW) in tokens per second and GFLOP/s, with the peak resident
 * memory, and the sgemm peak of this machine for comparison.
 *
 *   bench-train [--preset gpt2-small] [--layers L --embd C --heads H]
 *               [--batch B] [--context T] [--steps N] [--warmup W]
 *               [--threads N] [--dropout P] [--sgemm-peak]
 *
 * Prints one line of key=value pairs.  Model FLOPs per token are
 * 6 N + 12 L T C (N parameters), as in the PaLM paper's accounting.
 */
#include <gptd/nn.h>

#include <cblas.h>
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

static double
cpu_now (void)
{
  struct timespec t;
  clock_gettime (CLOCK_PROCESS_CPUTIME_ID, &t);
  return t.tv_sec + t.tv_nsec * 1e-9;
}

static int
cmp_double (const void *a, const void *b)
{
  double x = *(const double *) a, y = *(const double *) b;
  return x < y ? -1 : x > y;
}

static long
peak_rss_kib (void)
{
  struct rusage ru;
  getrusage (RUSAGE_SELF, &ru);
  return ru.ru_maxrss;
}

/* Best GFLOP/s of OpenBLAS's own threaded sgemm on a large product. */
static double
sgemm_peak (int threads)
{
#if defined(OPENBLAS_VERSION) || defined(OPENBLAS_CONST)
  openblas_set_num_threads (threads);
#endif
  const int M = 2048, N = 2048, K = 2048;
  float *A = malloc (sizeof (float) * M * K), *B = malloc (sizeof (float) * K * N),
        *C = malloc (sizeof (float) * M * N);
  for (long i = 0; i < (long) M * K; i++)
    A[i] = (float) (i % 13) * 0.01f;
  for (long i = 0; i < (long) K * N; i++)
    B[i] = (float) (i % 7) * 0.01f;
  memset (C, 0, sizeof (float) * M * N);
  double best = 1e9;
  for (int r = 0; r < 6; r++)
    {
      double t = now ();
      cblas_sgemm (CblasRowMajor, CblasNoTrans, CblasNoTrans, M, N, K, 1.0f, A,
                   K, B, N, 0.0f, C, N);
      t = now () - t;
      if (t < best)
        best = t;
    }
  free (A);
  free (B);
  free (C);
#if defined(OPENBLAS_VERSION) || defined(OPENBLAS_CONST)
  openblas_set_num_threads (1);
#endif
  return 2.0 * M * N * K / best / 1e9;
}

int
main (int argc, char **argv)
{
  const char *preset = NULL;
  int layers = 6, embd = 384, heads = 6, B = 8, T = 256, steps = 10,
      warmup = 2, threads = 0;
  float dropout = 0.1f;
  gboolean peak = FALSE;
  for (int i = 1; i < argc; i++)
    {
      const char *a = argv[i];
      const char *v = i + 1 < argc ? argv[i + 1] : "";
      if (strcmp (a, "--preset") == 0)
        preset = v, i++;
      else if (strcmp (a, "--layers") == 0)
        layers = atoi (v), i++;
      else if (strcmp (a, "--embd") == 0)
        embd = atoi (v), i++;
      else if (strcmp (a, "--heads") == 0)
        heads = atoi (v), i++;
      else if (strcmp (a, "--batch") == 0)
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
        dropout = (float) atof (v), i++;
      else if (strcmp (a, "--sgemm-peak") == 0)
        peak = TRUE;
      else
        {
          fprintf (stderr, "unknown option %s\n", a);
          return 2;
        }
    }
  gptd_nn_set_num_threads (threads);
  threads = gptd_nn_get_num_threads ();
  if (peak)
    {
      printf ("sgemm_peak_gflops=%.1f threads=%d\n", sgemm_peak (threads),
              threads);
      return 0;
    }

  GptdGptConfig cfg;
  GError *error = NULL;
  if (preset != NULL)
    {
      if (!gptd_gpt_config_preset (preset, &cfg, &error))
        {
          fprintf (stderr, "%s\n", error->message);
          return 1;
        }
    }
  else
    {
      gptd_gpt_config_preset ("gpt2-small", &cfg, NULL);
      cfg.n_layer = layers;
      cfg.n_embd = embd;
      cfg.n_head = heads;
    }
  cfg.context_length = T;
  cfg.dropout = dropout;
  GptdGpt *m = gptd_gpt_new (&cfg, &error);
  if (m == NULL)
    {
      fprintf (stderr, "%s\n", error->message);
      return 1;
    }
  gptd_gpt_init_weights (m, 1);
  GptdAdamWParams ap;
  gptd_adamw_params_init (&ap);
  GptdAdamW *opt = gptd_adamw_new (m, &ap, &error);
  gint32 *tok = g_new (gint32, (size_t) B * T + 1);
  guint64 s = 12345;
  for (size_t i = 0; i < (size_t) B * T + 1; i++)
    {
      s = s * 6364136223846793005ull + 1442695040888963407ull;
      tok[i] = (gint32) ((s >> 33) % (guint64) cfg.vocab_size);
    }
  GptdRngState rng = { 1, 0 };
  gptd_gpt_set_rng (m, &rng);
  double *times = g_new (double, steps);
  double *cpus = g_new (double, steps);
  float loss = 0.0f, first = 0.0f;
  for (int it = 0; it < warmup + steps; it++)
    {
      double t = now (), c = cpu_now ();
      gptd_gpt_zero_grad (m);
      if (!gptd_gpt_forward (m, tok, tok + 1, B, T, GPTD_GPT_FORWARD_TRAIN,
                             &loss, &error) ||
          !gptd_gpt_backward (m, 1.0f, &error))
        {
          fprintf (stderr, "%s\n", error->message);
          return 1;
        }
      gptd_adamw_step_clipped (opt, m, 1e-4f, 1.0f);
      t = now () - t;
      c = cpu_now () - c;
      if (it == 0)
        first = loss;
      if (it >= warmup)
        {
          times[it - warmup] = t;
          cpus[it - warmup] = c;
        }
    }
  qsort (times, steps, sizeof (double), cmp_double);
  qsort (cpus, steps, sizeof (double), cmp_double);
  double med = times[steps / 2];
  double n = (double) gptd_gpt_n_params (m);
  double flops_tok = 6.0 * n + 12.0 * cfg.n_layer * T * cfg.n_embd;
  double tps = (double) B * T / med;
  printf ("impl=gptd layers=%d embd=%d heads=%d batch=%d context=%d "
          "params=%.0f threads=%d dropout=%g step_s=%.4f min_step_s=%.4f "
          "tokens_per_s=%.1f gflops=%.1f cpu_s=%.3f gflops_per_cpu_s=%.1f "
          "peak_rss_mib=%.0f loss_first=%.4f loss_last=%.4f\n",
          cfg.n_layer, cfg.n_embd, cfg.n_head, B, T, n, threads,
          (double) dropout, med, times[0], tps, tps * flops_tok / 1e9,
          cpus[steps / 2], (double) B * T * flops_tok / cpus[steps / 2] / 1e9,
          peak_rss_kib () / 1024.0, (double) first, (double) loss);
  gptd_adamw_free (opt);
  gptd_gpt_free (m);
  g_free (tok);
  g_free (times);
  g_free (cpus);
  return 0;
}
