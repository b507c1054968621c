/* bench-quant.c: what bf16 and q8 weights cost in quality, for a trained
 * model: the mean cross-entropy of held-out text against fp32's, and how
 * many greedy tokens of 200-token continuations stay the same.
 *
 *   bench/quant/bench-quant --model DIR [--text FILE]... [--prompts 8]
 *       [--prompt-tokens 32] [--new-tokens 200] [--max-tokens 4096]
 *       [--threads 2]
 *
 * For each format (fp32, bf16, q8, each converted from DIR's float32
 * weights when loaded) and each text: the text is tokenized with the
 * model's tokenizer (at most --max-tokens tokens), cut into windows of the
 * model's context, and every window is fed token by token through the KV
 * cache (the path generation uses); the loss is the mean of -log p(next
 * token) over every position that has one.  Then --prompts prompts, taken
 * at even offsets of the first text, are continued greedily by
 * --new-tokens tokens; the figures are the share of positions whose token
 * equals fp32's and the mean length of the prefix that is identical.
 *
 * Prints one JSON object per line.
 */
#include "config.h"

#include <gptd/generate.h>
#include <gptd/nn.h>
#include <gptd/quant.h>

#include <math.h>
#include <stdio.h>
#include <string.h>

/* Mean cross-entropy (nats) of @ids through the KV cache, in windows of
 * @ctx tokens. */
static double
mean_ce (GptdGpt *m, const gint32 *ids, int n, int ctx, GError **error)
{
  const int V = gptd_gpt_get_config (m)->vocab_size;
  g_autoptr (GptdGptKvCache) c = gptd_gpt_kv_cache_new (m, ctx, error);
  if (c == NULL)
    return NAN;
  double sum = 0;
  long count = 0;
  for (int start = 0; start + 1 < n; start += ctx)
    {
      int len = MIN (ctx, n - start);
      gptd_gpt_kv_cache_reset (c);
      for (int t = 0; t + 1 < len; t++)
        {
          const float *l = gptd_gpt_forward_cached (m, c, ids + start + t, 1,
                                                    error);
          if (l == NULL)
            return NAN;
          double mx = l[0];
          for (int v = 1; v < V; v++)
            mx = MAX (mx, l[v]);
          double z = 0;
          for (int v = 0; v < V; v++)
            z += exp (l[v] - mx);
          sum += mx + log (z) - l[ids[start + t + 1]];
          count++;
        }
    }
  return sum / count;
}

int
main (int argc, char **argv)
{
  g_autofree char *model_dir = NULL;
  g_auto (GStrv) texts = NULL;
  int n_prompts = 8, prompt_tokens = 32, new_tokens = 200, max_tokens = 4096;
  int threads = 2;
  GOptionEntry entries[] = {
    { "model", 0, 0, G_OPTION_ARG_FILENAME, &model_dir,
      "trained float32 model directory or checkpoint root", "DIR" },
    { "text", 0, 0, G_OPTION_ARG_FILENAME_ARRAY, &texts,
      "held-out text (repeatable)", "FILE" },
    { "prompts", 0, 0, G_OPTION_ARG_INT, &n_prompts, "prompts (8)", "N" },
    { "prompt-tokens", 0, 0, G_OPTION_ARG_INT, &prompt_tokens,
      "tokens per prompt (32)", "N" },
    { "new-tokens", 0, 0, G_OPTION_ARG_INT, &new_tokens,
      "tokens per continuation (200)", "N" },
    { "max-tokens", 0, 0, G_OPTION_ARG_INT, &max_tokens,
      "most tokens of each text scored (4096)", "N" },
    { "threads", 0, 0, G_OPTION_ARG_INT, &threads, "threads (2)", "N" },
    { NULL }
  };
  g_autoptr (GOptionContext) oc = g_option_context_new ("- quality of bf16 "
                                                        "and q8 weights");
  g_option_context_add_main_entries (oc, entries, NULL);
  g_autoptr (GError) error = NULL;
  if (!g_option_context_parse (oc, &argc, &argv, &error) || model_dir == NULL ||
      texts == NULL || texts[0] == NULL)
    {
      fprintf (stderr, "%s\n", error ? error->message
                                     : "give --model DIR and --text FILE");
      return 2;
    }
  gptd_nn_set_num_threads (threads);

  GptdGenerator *gens[3];
  for (int f = 0; f < 3; f++)
    {
      GptdGeneratorLoadOptions lo;
      gptd_generator_load_options_init (&lo);
      lo.weights = f;
      gens[f] = gptd_generator_load_full (model_dir, &lo, &error);
      if (gens[f] == NULL)
        {
          fprintf (stderr, "%s\n", error->message);
          return 1;
        }
    }
  const int ctx = gptd_generator_get_context_length (gens[0]);
  printf ("{\"impl\": \"cpu\", \"kernels\": \"%s\"}\n",
          gptd_quant_get_kernels_name ());

  gint32 *first_ids = NULL;
  int first_n = 0;
  for (guint i = 0; texts[i] != NULL; i++)
    {
      g_autofree char *text = NULL;
      if (!g_file_get_contents (texts[i], &text, NULL, &error))
        {
          fprintf (stderr, "%s\n", error->message);
          return 1;
        }
      int n = 0;
      gint32 *ids = gptd_generator_encode (gens[0], text, &n, &error);
      if (ids == NULL)
        {
          fprintf (stderr, "%s\n", error->message);
          return 1;
        }
      n = MIN (n, max_tokens);
      double ce[3];
      for (int f = 0; f < 3; f++)
        {
          ce[f] = mean_ce (gptd_generator_get_model (gens[f]), ids, n, ctx,
                           &error);
          if (isnan (ce[f]))
            {
              fprintf (stderr, "%s\n", error->message);
              return 1;
            }
          printf ("{\"impl\": \"quality\", \"text\": \"%s\", \"tokens\": %d, "
                  "\"weights\": \"%s\", \"mean_ce\": %.5f, "
                  "\"ce_change_vs_fp32\": %.5f}\n",
                  texts[i], n, gptd_weight_format_to_string (f), ce[f],
                  (ce[f] - ce[0]) / ce[0]);
          fflush (stdout);
        }
      if (first_ids == NULL)
        {
          first_ids = ids;
          first_n = n;
        }
      else
        g_free (ids);
    }

  /* Greedy continuations of prompts taken across the first text. */
  GptdGenerateOptions o;
  gptd_generate_options_init (&o);
  o.max_new_tokens = new_tokens;
  long same[3] = { 0, 0, 0 }, prefix[3] = { 0, 0, 0 }, total = 0;
  for (int p = 0; p < n_prompts; p++)
    {
      int off = (int) ((long) (first_n - prompt_tokens) * p / MAX (n_prompts, 1));
      gint32 *out[3];
      int got[3];
      for (int f = 0; f < 3; f++)
        {
          GptdGenerateResult *r = gptd_generator_generate_ids (
            gens[f], first_ids + off, prompt_tokens, &o, NULL, &error);
          if (r == NULL)
            {
              fprintf (stderr, "%s\n", error->message);
              return 1;
            }
          out[f] = g_memdup2 (r->ids, sizeof (gint32) * (r->n_ids + 1));
          got[f] = r->n_ids;
          gptd_generate_result_free (r);
        }
      total += got[0];
      for (int f = 0; f < 3; f++)
        {
          int k = 0, lim = MIN (got[f], got[0]);
          while (k < lim && out[f][k] == out[0][k])
            k++;
          prefix[f] += k;
          for (int t = 0; t < lim; t++)
            same[f] += out[f][t] == out[0][t];
        }
      for (int f = 0; f < 3; f++)
        g_free (out[f]);
    }
  for (int f = 1; f < 3; f++)
    printf ("{\"impl\": \"agreement\", \"weights\": \"%s\", \"prompts\": %d, "
            "\"new_tokens\": %d, \"same_tokens_share\": %.4f, "
            "\"mean_identical_prefix\": %.1f}\n",
            gptd_weight_format_to_string (f), n_prompts, new_tokens,
            (double) same[f] / MAX (total, 1),
            (double) prefix[f] / MAX (n_prompts, 1));
  g_free (first_ids);
  for (int f = 0; f < 3; f++)
    gptd_generator_free (gens[f]);
  return 0;
}
