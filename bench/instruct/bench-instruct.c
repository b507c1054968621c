/* bench-instruct.c: speed of instruction fine-tuning steps (the book's chapter 7)
 * on the gpt2-small shape with random weights: the records of
 * instruction-data.json formatted with the Alpaca template, tokenized with GPT-2's
 * vocabulary and collated as instruction-collator does (the book's
 * custom_collate_fn: batches of 8 in file order, padded to the batch's longest
 * record plus one, pads after the first ignored), then forward, cross-entropy
 * over the non-ignored targets, backward and AdamW (lr 5e-5, weight decay 0.1,
 * no clipping, dropout 0), as the book's train_model_simple.
 *
 *   bench-instruct --data DIR [--steps N] [--warmup W] [--threads N]
 *                  [--dump FILE] [--preset gpt2-small]
 *
 * The first W train batches warm up, the next N are timed. --dump writes those
 * W + N batches (int32: count, then per batch B, T, inputs, targets) for the
 * PyTorch peer (bench_instruct_torch.py), which then trains on identical batches.
 * Prints one line of key=value pairs: tokens/s counts every position of the
 * padded batches (B x T), as the book's tokens_seen does.
 */
#include <gptd/bpe.h>
#include <gptd/json-load.h>
#include <gptd/nn.h>

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>

#include "../../plugins/instruct/collate.h"
#include "pipeline/prompt-template.h"

static double
now (void)
{
  struct timespec t;
  clock_gettime (CLOCK_MONOTONIC, &t);
  return t.tv_sec + t.tv_nsec * 1e-9;
}

static void
die (GError *error)
{
  fprintf (stderr, "bench-instruct: %s\n", error->message);
  exit (1);
}

/* The records of @path as an instruction set: Alpaca text, GPT-2 ids. */
static GptdInstructSet *
load_set (const char *data_dir)
{
  g_autofree char *path = g_build_filename (data_dir, "instruction-data.json", NULL);
  g_autofree char *vocab = g_build_filename (data_dir, "gpt2", NULL);
  GError *error = NULL;
  g_autoptr (JsonParser) parser = gptd_json_load_file_bounded (path, 0, &error);
  if (parser == NULL)
    die (error);
  GptdBpe *bpe = gptd_bpe_load (vocab, &error);
  if (bpe == NULL)
    die (error);
  g_autoptr (GptdPromptTemplate) alpaca = gptd__prompt_template_builtin ("alpaca");
  GptdInstructSet *set = gptd__instruct_set_new ();
  JsonArray *records = json_node_get_array (json_parser_get_root (parser));
  g_autoptr (GString) text = g_string_new (NULL);
  g_autoptr (GArray) ids = g_array_new (FALSE, FALSE, sizeof (guint32));
  for (guint i = 0; i < json_array_get_length (records); i++)
    {
      JsonObject *r = json_array_get_object_element (records, i);
      gsize prompt_bytes = 0;
      g_string_truncate (text, 0);
      gptd__prompt_template_render (alpaca, json_object_get_string_member (r, "instruction"),
                                    json_object_get_string_member (r, "input"),
                                    json_object_get_string_member (r, "output"), text,
                                    &prompt_bytes);
      g_array_set_size (ids, 0);
      if (!gptd_bpe_encode (bpe, text->str, text->len, NULL, ids, &error))
        die (error);
      gptd__instruct_set_add (set, (const guint32 *) (void *) ids->data, ids->len, 0);
    }
  gptd_bpe_unref (bpe);
  static const double fractions[] = { 0.85, 0.1, 0.05 };
  gptd__instruct_set_layout (set, fractions, 3, 8, 0, FALSE, 0);
  return set;
}

int
main (int argc, char **argv)
{
  const char *data = g_getenv ("GPTD_DATA_DIR"), *dump = NULL, *preset = "gpt2-small";
  int steps = 10, warmup = 2, threads = 0;
  for (int i = 1; i < argc; i++)
    {
      const char *a = argv[i];
      const char *v = i + 1 < argc ? argv[i + 1] : "";
      if (strcmp (a, "--data") == 0)
        data = v, i++;
      else if (strcmp (a, "--steps") == 0)
        steps = atoi (v), i++;
      else if (strcmp (a, "--warmup") == 0)
        warmup = atoi (v), i++;
      else if (strcmp (a, "--threads") == 0)
        threads = atoi (v), i++;
      else if (strcmp (a, "--dump") == 0)
        dump = v, i++;
      else if (strcmp (a, "--preset") == 0)
        preset = v, i++;
      else
        {
          fprintf (stderr, "unknown option %s\n", a);
          return 2;
        }
    }
  if (data == NULL || steps < 1 || warmup < 0)
    {
      fprintf (stderr, "usage: bench-instruct --data DIR [--steps N] [--warmup W] "
               "[--threads N] [--dump FILE]\n");
      return 2;
    }
  gptd_nn_set_num_threads (threads);
  threads = gptd_nn_get_num_threads ();

  /* The batches: the first warmup + steps of the train split, in order. */
  g_autoptr (GptdInstructSet) set = load_set (data);
  int n_batches = warmup + steps;
  if ((guint64) n_batches > gptd__instruct_set_split_batches (set, 0))
    {
      fprintf (stderr, "bench-instruct: only %" G_GUINT64_FORMAT " train batches\n",
               gptd__instruct_set_split_batches (set, 0));
      return 1;
    }
  GptdCollateOptions opts = { 50256, GPTD_NN_IGNORE_INDEX, 1024, FALSE };
  guint64 max_len = gptd__instruct_set_max_len (set);
  g_autofree guint64 *order = g_new (guint64, gptd__instruct_set_split_records (set, 0));
  gptd__instruct_set_order (set, 0, FALSE, 0, order);
  gint32 **inputs = g_new0 (gint32 *, n_batches), **targets = g_new0 (gint32 *, n_batches);
  guint *rows = g_new0 (guint, n_batches);
  guint64 *lens = g_new0 (guint64, n_batches);
  for (int b = 0; b < n_batches; b++)
    {
      inputs[b] = g_new (gint32, 8 * (max_len + 1));
      targets[b] = g_new (gint32, 8 * (max_len + 1));
      gptd__instruct_set_collate (set, 0, order, b, &opts, inputs[b], targets[b], NULL,
                                  &rows[b], &lens[b]);
    }
  if (dump != NULL)
    {
      FILE *f = fopen (dump, "wb");
      gint32 n = n_batches;
      fwrite (&n, sizeof n, 1, f);
      for (int b = 0; b < n_batches; b++)
        {
          gint32 bt[2] = { (gint32) rows[b], (gint32) lens[b] };
          fwrite (bt, sizeof bt, 1, f);
          fwrite (inputs[b], sizeof (gint32), rows[b] * lens[b], f);
          fwrite (targets[b], sizeof (gint32), rows[b] * lens[b], f);
        }
      fclose (f);
    }

  GptdGptConfig cfg;
  GError *error = NULL;
  if (!gptd_gpt_config_preset (preset, &cfg, &error))
    die (error);
  cfg.dropout = 0.0f;
  cfg.qkv_bias = TRUE;
  GptdGpt *m = gptd_gpt_new (&cfg, &error);
  if (m == NULL)
    die (error);
  gptd_gpt_init_weights (m, 1);
  GptdAdamWParams ap;
  gptd_adamw_params_init (&ap);
  ap.weight_decay = 0.1f;
  GptdAdamW *opt = gptd_adamw_new (m, &ap, &error);
  if (opt == NULL)
    die (error);

  double total = 0, tokens = 0;
  float loss = 0, first = 0;
  g_autoptr (GString) shapes = g_string_new (NULL);
  for (int b = 0; b < n_batches; b++)
    {
      double t = now ();
      gptd_gpt_zero_grad (m);
      if (!gptd_gpt_forward (m, inputs[b], targets[b], (int) rows[b], (int) lens[b],
                             GPTD_GPT_FORWARD_TRAIN, &loss, &error)
          || !gptd_gpt_backward (m, 1.0f, &error))
        die (error);
      gptd_adamw_step (opt, m, 5e-5f);
      t = now () - t;
      if (b == 0)
        first = loss;
      if (b >= warmup)
        {
          total += t;
          tokens += (double) rows[b] * lens[b];
          g_string_append_printf (shapes, "%s%" G_GUINT64_FORMAT, shapes->len ? "," : "",
                                  lens[b]);
        }
    }
  struct rusage ru;
  getrusage (RUSAGE_SELF, &ru);
  printf ("impl=gptd preset=%s threads=%d steps=%d warmup=%d seq_lens=%s tokens=%.0f "
          "time_s=%.3f step_s=%.4f tokens_per_s=%.1f peak_rss_mib=%.0f loss_first=%.4f "
          "loss_last=%.4f\n", preset, threads, steps, warmup, shapes->str, tokens, total,
          total / steps, tokens / total, ru.ru_maxrss / 1024.0, (double) first,
          (double) loss);
  for (int b = 0; b < n_batches; b++)
    {
      g_free (inputs[b]);
      g_free (targets[b]);
    }
  g_free (inputs);
  g_free (targets);
  g_free (rows);
  g_free (lens);
  gptd_adamw_free (opt);
  gptd_gpt_free (m);
  return 0;
}
