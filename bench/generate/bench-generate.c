/* bench-generate.c: speed of batch-1 generation (gptd/generate.h) with and
 * without the KV cache, for each weight format, against the memory-bandwidth
 * bound.
 *
 *   bench/generate/bench-generate [--threads N] [--model gpt2-small]
 *       [--prompt-tokens 16] [--new-tokens 200] [--repeat 3]
 *       [--no-cache-repeat 1] [--skip-no-cache] [--weights fp32,bf16,q8]
 *
 * The model has the preset's shape and random weights (speed does not depend
 * on the values).  Decoding is greedy.  tokens/s is new tokens over the median
 * wall time of a whole generation, prompt included.  With several weight
 * formats, each has its own copy of the same model and the runs are
 * interleaved (fp32, bf16, q8, fp32, ...), so that a busy moment on a shared
 * machine falls on all formats alike; runs without the cache are fp32 only
 * (converted weights are used by the cached path only).
 *
 * The bound: each decoded token reads every parameter once (wte twice over
 * in principle, as embedding row and as output head, but the row is
 * negligible; of wpe only one row), so tokens/s cannot exceed
 * bandwidth / parameter bytes.  Bandwidth is measured here, with the same
 * threads, by a read-only pass (a sum, as the matrix-vector products read
 * weights) and a STREAM copy (counting bytes read and written) over buffers
 * far larger than the caches, before and after the generations; the best
 * figure is used.
 *
 * Prints one JSON object per line.
 *
 *   bench/generate/bench-generate --save-model DIR [--model gpt2-small]
 *
 * writes such a model (random weights, seed 123) to the model directory DIR
 * instead, with GPT-2's tokenizer from $GPTD_DATA_DIR/gpt2 (encoder.json and
 * vocab.bpe), for a benchmark through the daemon (bench-serve.sh).
 */
#if defined(__x86_64__) && defined(__GNUC__)
#include <cpuid.h>
#endif
#include "config.h"

#include <gptd/generate.h>
#include <gptd/gpt2-file.h>
#include <gptd/nn.h>
#include <gptd/quant.h>

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#ifdef _OPENMP
#include <omp.h>
#endif

static int
cmp_double (const void *a, const void *b)
{
  double x = *(const double *) a, y = *(const double *) b;
  return (x > y) - (x < y);
}

static double
median (double *v, int n)
{
  qsort (v, n, sizeof (double), cmp_double);
  return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

static double
now_s (void)
{
  return g_get_monotonic_time () / 1e6;
}

/* CPU time of the whole process (every thread), in seconds. */
static double
cpu_s (void)
{
  struct timespec ts;
  clock_gettime (CLOCK_PROCESS_CPUTIME_ID, &ts);
  return ts.tv_sec + ts.tv_nsec / 1e9;
}

/* Best-of-several bandwidths in GB/s of a read-only sum and a copy over
 * @bytes-sized buffers. */
static void
measure_bandwidth (size_t bytes, int threads, double *read_gbs,
                   double *copy_gbs)
{
  size_t n = bytes / sizeof (float);
  float *a = g_malloc (n * sizeof (float));
  float *b = g_malloc (n * sizeof (float));
#pragma omp parallel for num_threads (threads) schedule (static)
  for (size_t i = 0; i < n; i++)
    {
      a[i] = (float) (i & 1023) * 1e-3f;
      b[i] = 0.0f;
    }
  double best_read = 0, best_copy = 0;
  volatile float sink = 0;
  for (int rep = 0; rep < 6; rep++)
    {
      double t0 = now_s ();
      float total = 0.0f;
#pragma omp parallel num_threads (threads) reduction (+ : total)
      {
        float s0 = 0, s1 = 0, s2 = 0, s3 = 0;
#pragma omp for schedule (static) nowait
        for (size_t i = 0; i < n / 64; i++)
          {
            const float *p = a + i * 64;
#pragma omp simd reduction (+ : s0, s1, s2, s3)
            for (int j = 0; j < 16; j++)
              {
                s0 += p[j];
                s1 += p[16 + j];
                s2 += p[32 + j];
                s3 += p[48 + j];
              }
          }
        total += s0 + s1 + s2 + s3;
      }
      double t1 = now_s ();
      sink += total;
#pragma omp parallel for num_threads (threads) schedule (static)
      for (size_t i = 0; i < n; i++)
        b[i] = a[i];
      double t2 = now_s ();
      best_read = MAX (best_read, (n / 64 * 64) * sizeof (float) / (t1 - t0) / 1e9);
      best_copy = MAX (best_copy, 2.0 * n * sizeof (float) / (t2 - t1) / 1e9);
    }
  (void) sink;
  g_free (a);
  g_free (b);
  *read_gbs = best_read;
  *copy_gbs = best_copy;
}

/* The CPU features the kernels may use. */
static const char *
cpu_flags (void)
{
  static char buf[128];
  buf[0] = '\0';
#if defined(__x86_64__) && defined(__GNUC__)
  __builtin_cpu_init ();
  if (__builtin_cpu_supports ("avx2"))
    g_strlcat (buf, "avx2 ", sizeof buf);
  if (__builtin_cpu_supports ("fma"))
    g_strlcat (buf, "fma ", sizeof buf);
  unsigned int a, b, c, d;
  /* F16C and AVX512-BF16 from CPUID: clang's __builtin_cpu_supports() knows
   * neither name. */
  if (__get_cpuid (1, &a, &b, &c, &d) && (c & (1u << 29)))
    g_strlcat (buf, "f16c ", sizeof buf);
  if (__builtin_cpu_supports ("avx512f"))
    g_strlcat (buf, "avx512f ", sizeof buf);
  if (__builtin_cpu_supports ("avx512bw"))
    g_strlcat (buf, "avx512bw ", sizeof buf);
  if (__builtin_cpu_supports ("avx512vnni"))
    g_strlcat (buf, "avx512vnni ", sizeof buf);
  if (__get_cpuid_count (7, 1, &a, &b, &c, &d) && (a & (1u << 5)))
    g_strlcat (buf, "avx512bf16 ", sizeof buf);
  g_strchomp (buf);
#endif
  return buf;
}

int
main (int argc, char **argv)
{
  int threads = 2, prompt_tokens = 16, new_tokens = 200, repeat = 3;
  int no_cache_repeat = 1;
  gboolean skip_no_cache = FALSE;
  g_autofree char *model_name = g_strdup ("gpt2-small");
  g_autofree char *weights = g_strdup ("fp32");
  g_autofree char *save_model = NULL;
  GOptionEntry entries[] = {
    { "save-model", 0, 0, G_OPTION_ARG_FILENAME, &save_model,
      "write the model to this directory and exit", "DIR" },
    { "threads", 0, 0, G_OPTION_ARG_INT, &threads, "threads (default 2)", "N" },
    { "model", 0, 0, G_OPTION_ARG_STRING, &model_name, "preset (gpt2-small)", "NAME" },
    { "prompt-tokens", 0, 0, G_OPTION_ARG_INT, &prompt_tokens, "prompt length (16)", "N" },
    { "new-tokens", 0, 0, G_OPTION_ARG_INT, &new_tokens, "tokens to generate (200)", "N" },
    { "repeat", 0, 0, G_OPTION_ARG_INT, &repeat, "runs with the cache (3)", "N" },
    { "no-cache-repeat", 0, 0, G_OPTION_ARG_INT, &no_cache_repeat,
      "runs without the cache (1)", "N" },
    { "skip-no-cache", 0, 0, G_OPTION_ARG_NONE, &skip_no_cache,
      "only measure with the cache", NULL },
    { "weights", 0, 0, G_OPTION_ARG_STRING, &weights,
      "weight formats, comma-separated (fp32)", "LIST" },
    { NULL }
  };
  g_autoptr (GOptionContext) oc = g_option_context_new ("- generation speed");
  g_option_context_add_main_entries (oc, entries, NULL);
  g_autoptr (GError) error = NULL;
  if (!g_option_context_parse (oc, &argc, &argv, &error))
    {
      fprintf (stderr, "%s\n", error->message);
      return 2;
    }
  repeat = MAX (repeat, 1);
  no_cache_repeat = MAX (no_cache_repeat, 1);
  gptd_nn_set_num_threads (threads);

  GptdGptConfig cfg;
  if (!gptd_gpt_config_preset (model_name, &cfg, &error))
    {
      fprintf (stderr, "%s\n", error->message);
      return 2;
    }
  cfg.dropout = 0.0f;
  if (save_model != NULL)
    {
      const char *data = g_getenv ("GPTD_DATA_DIR");
      if (data == NULL)
        {
          fprintf (stderr, "--save-model needs $GPTD_DATA_DIR (its gpt2/ tokenizer)\n");
          return 2;
        }
      g_autofree char *json = g_build_filename (data, "gpt2", "encoder.json", NULL);
      g_autofree char *merges = g_build_filename (data, "gpt2", "vocab.bpe", NULL);
      g_autoptr (GptdGpt) model = gptd_gpt_new (&cfg, &error);
      if (model != NULL)
        gptd_gpt_init_weights (model, 123);
      if (model == NULL || !gptd_gpt_dir_save (model, save_model, json, merges, &error))
        {
          fprintf (stderr, "%s\n", error->message);
          return 1;
        }
      return 0;
    }
  g_auto (GStrv) names = g_strsplit (weights, ",", -1);
  int nf = (int) g_strv_length (names);
  if (nf < 1 || nf > 3)
    {
      fprintf (stderr, "--weights takes one to three formats\n");
      return 2;
    }
  GptdGenerator *gens[3] = { NULL, NULL, NULL };
  GptdWeightFormat formats[3];
  double bytes_per_token[3];
  for (int f = 0; f < nf; f++)
    {
      if (!gptd_weight_format_from_string (names[f], &formats[f], &error))
        {
          fprintf (stderr, "%s\n", error->message);
          return 2;
        }
      GptdGpt *model = gptd_gpt_new (&cfg, &error);
      if (model == NULL)
        {
          fprintf (stderr, "%s\n", error->message);
          return 1;
        }
      gptd_gpt_init_weights (model, 123);
      if (!gptd_gpt_set_weight_format (model, formats[f], &error))
        {
          fprintf (stderr, "%s\n", error->message);
          return 1;
        }
      /* Every weight the step reads: the matrices in their format, the
       * float32 rest, one row of each embedding. */
      bytes_per_token[f] = (double) gptd_gpt_get_weight_bytes (model);
      gens[f] = gptd_generator_new (model, 0, &error);
      if (gens[f] == NULL)
        {
          fprintf (stderr, "%s\n", error->message);
          return 1;
        }
    }
  printf ("{\"impl\": \"cpu\", \"kernels\": \"%s\", \"flags\": \"%s\"}\n",
          gptd_quant_get_kernels_name (), cpu_flags ());

  /* Bandwidth before and after the generations, the best of both: on a
   * shared machine one measurement may fall in a busy moment. */
  double read_gbs, copy_gbs;
  measure_bandwidth ((size_t) 512 << 20, threads, &read_gbs, &copy_gbs);

  gint32 *prompt = g_new (gint32, prompt_tokens);
  GRand *r = g_rand_new_with_seed (123);
  for (int i = 0; i < prompt_tokens; i++)
    prompt[i] = (gint32) g_rand_int_range (r, 0, cfg.vocab_size);
  g_rand_free (r);

  GptdGenerateOptions o;
  gptd_generate_options_init (&o);

  /* Warm-up: page in the weights and plan the buffers. */
  o.use_kv_cache = TRUE;
  o.max_new_tokens = 4;
  for (int f = 0; f < nf; f++)
    gptd_generate_result_free (
      gptd_generator_generate_ids (gens[f], prompt, prompt_tokens, &o, NULL,
                                   NULL));
  o.max_new_tokens = new_tokens;

  gint32 *first_ids[3] = { NULL, NULL, NULL };
  for (int kv = 1; kv >= 0; kv--)
    {
      if (!kv && skip_no_cache)
        break;
      int reps = kv ? repeat : no_cache_repeat;
      double *secs = g_new0 (double, 3 * reps);
      double *decode = g_new0 (double, 3 * reps);
      double *cpu = g_new0 (double, 3 * reps);
      double prefill[3] = { 0, 0, 0 };
      o.use_kv_cache = kv;
      for (int i = 0; i < reps; i++)
        for (int f = 0; f < nf; f++)
          {
            if (!kv && formats[f] != GPTD_WEIGHT_FORMAT_FP32)
              continue;
            double t0 = now_s (), c0 = cpu_s ();
            GptdGenerateResult *res =
              gptd_generator_generate_ids (gens[f], prompt, prompt_tokens, &o,
                                           NULL, &error);
            secs[f * reps + i] = now_s () - t0;
            cpu[f * reps + i] = cpu_s () - c0;
            if (res == NULL)
              {
                fprintf (stderr, "%s\n", error->message);
                return 1;
              }
            decode[f * reps + i] = res->decode_s;
            prefill[f] = res->prefill_s;
            /* Every run of a format, cached or not, gives the same tokens. */
            if (first_ids[f] == NULL)
              first_ids[f] = g_memdup2 (res->ids, sizeof (gint32) * res->n_ids);
            else if (memcmp (first_ids[f], res->ids,
                             sizeof (gint32) * res->n_ids) != 0)
              {
                fprintf (stderr, "generations differ between runs\n");
                return 1;
              }
            gptd_generate_result_free (res);
          }
      for (int f = 0; f < nf; f++)
        {
          if (!kv && formats[f] != GPTD_WEIGHT_FORMAT_FP32)
            continue;
          double med = median (secs + f * reps, reps);
          double med_dec = median (decode + f * reps, reps);
          double med_cpu = median (cpu + f * reps, reps);
          double tps = new_tokens / med;
          /* Greedy tokens that equal the first format's (fp32 normally);
           * random weights make this a check, not a quality figure. */
          int agree = 0;
          for (int i = 0; i < new_tokens; i++)
            agree += first_ids[f][i] == first_ids[0][i];
          printf ("{\"impl\": \"gptd\", \"model\": \"%s\", \"weights\": \"%s\", "
                  "\"kv_cache\": %s, \"threads\": %d, \"new_tokens\": %d, "
                  "\"tokens_per_s\": %.2f, \"decode_tokens_per_s\": %.2f, "
                  "\"prefill_s\": %.4f, \"weight_bytes_per_token\": %.0f, "
                  "\"cpu_ms_per_token\": %.2f, \"same_tokens_as_%s\": %d, "
                  "\"seconds\": [",
                  model_name, names[f], kv ? "true" : "false", threads,
                  new_tokens, tps, (new_tokens - 1) / med_dec, prefill[f],
                  bytes_per_token[f], 1e3 * med_cpu / new_tokens, names[0],
                  agree);
          for (int i = 0; i < reps; i++)
            printf ("%s%.3f", i ? ", " : "", secs[f * reps + i]);
          printf ("]}\n");
        }
      fflush (stdout);
      g_free (secs);
      g_free (decode);
      g_free (cpu);
    }
  for (int f = 0; f < nf; f++)
    {
      g_free (first_ids[f]);
      gptd_generator_free (gens[f]);
    }
  g_free (prompt);

  double read2, copy2;
  measure_bandwidth ((size_t) 512 << 20, threads, &read2, &copy2);
  read_gbs = MAX (read_gbs, read2);
  copy_gbs = MAX (copy_gbs, copy2);
  double bw = MAX (read_gbs, copy_gbs);
  for (int f = 0; f < nf; f++)
    printf ("{\"impl\": \"bandwidth\", \"weights\": \"%s\", \"threads\": %d, "
            "\"read_gb_s\": %.2f, \"copy_gb_s\": %.2f, "
            "\"param_bytes_per_token\": %.0f, \"bound_tokens_per_s\": %.2f}\n",
            names[f], threads, read_gbs, copy_gbs, bytes_per_token[f],
            bw * 1e9 / bytes_per_token[f]);
  return 0;
}
