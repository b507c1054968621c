/* cli-quantize.c: `gptd quantize`, converting a model directory's linear
 * layers to bf16 or q8 once and saving them as a model directory of their own
 * (gptd/quant.h, docs/quantization.md). See cli.h. */
#include "config.h"

#include <stdio.h>

#include <gptd/gpt2-file.h>
#include <gptd/nn.h>
#include <gptd/quant.h>

#include "cli.h"

/* The tokenizer file @name of @dir (or of a checkpoint root's latest
 * checkpoint), or NULL when there is none. */
static char *
tokenizer_file (const char *dir, const char *name)
{
  g_autofree char *path = g_build_filename (dir, name, NULL);
  if (g_file_test (path, G_FILE_TEST_IS_REGULAR))
    return g_steal_pointer (&path);
  g_autofree char *latest = gptd_checkpoint_get_latest (dir, NULL);
  if (latest == NULL)
    return NULL;
  g_autofree char *in_latest = g_build_filename (latest, name, NULL);
  if (g_file_test (in_latest, G_FILE_TEST_IS_REGULAR))
    return g_steal_pointer (&in_latest);
  return NULL;
}

int
gptd_cli_quantize (int argc, char **argv)
{
  g_autofree char *weights = NULL;
  GOptionEntry entries[] = {
    { "weights", 'w', 0, G_OPTION_ARG_STRING, &weights,
      "The format to save: bf16 or q8 (required)", "FORMAT" },
    { NULL }
  };
  g_autoptr (GOptionContext) oc =
    g_option_context_new ("MODEL_DIR OUT_DIR --weights bf16|q8");
  g_option_context_set_summary (
    oc, "Converts the linear layers and output head of a float32 model "
    "directory (or a run's checkpoint/ root) to bf16 or q8 and writes them, "
    "with the float32 rest, the configuration and the tokenizer, to OUT_DIR, "
    "which gptd generate and the generator stage load as they are. Exit "
    "status: 0 success, 1 the model cannot be read, converted or written, 2 "
    "bad usage.");
  g_option_context_add_main_entries (oc, entries, NULL);
  g_autoptr (GError) error = NULL;
  if (!g_option_context_parse (oc, &argc, &argv, &error))
    {
      g_printerr ("gptd quantize: %s\n(try gptd quantize --help)\n",
                  error->message);
      return GPTD_CLI_EXIT_USAGE;
    }
  if (argc != 3)
    {
      g_printerr ("gptd quantize: give MODEL_DIR and OUT_DIR\n(try gptd "
                  "quantize --help)\n");
      return GPTD_CLI_EXIT_USAGE;
    }
  GptdWeightFormat format;
  if (weights == NULL)
    {
      g_printerr ("gptd quantize: give the format with --weights bf16|q8\n");
      return GPTD_CLI_EXIT_USAGE;
    }
  if (!gptd_weight_format_from_string (weights, &format, &error))
    {
      g_printerr ("gptd quantize: --weights: %s\n", error->message);
      return GPTD_CLI_EXIT_USAGE;
    }
  if (format == GPTD_WEIGHT_FORMAT_FP32)
    {
      g_printerr ("gptd quantize: --weights fp32 converts nothing: give bf16 "
                  "or q8\n");
      return GPTD_CLI_EXIT_USAGE;
    }
  const char *in = argv[1], *out = argv[2];
  GptdWeightFormat stored;
  if (!gptd_gpt_dir_get_weight_format (in, &stored, &error))
    {
      g_printerr ("gptd quantize: cannot read the model %s: %s\n", in,
                  error->message);
      return GPTD_CLI_EXIT_FAILED;
    }
  if (stored != GPTD_WEIGHT_FORMAT_FP32)
    {
      g_printerr ("gptd quantize: %s already holds %s weights: convert the "
                  "float32 model\n",
                  in, gptd_weight_format_to_string (stored));
      return GPTD_CLI_EXIT_FAILED;
    }
  gint64 t0 = g_get_monotonic_time ();
  g_autoptr (GptdGpt) model = gptd_gpt_dir_load_with_format (in, format,
                                                             &error);
  if (model == NULL)
    {
      g_printerr ("gptd quantize: cannot convert the model %s: %s\n", in,
                  error->message);
      return GPTD_CLI_EXIT_FAILED;
    }
  g_autofree char *vocab = tokenizer_file (in, GPTD_GPT_DIR_VOCAB);
  g_autofree char *merges = tokenizer_file (in, GPTD_GPT_DIR_MERGES);
  if (!gptd_gpt_quant_dir_save (model, out, vocab, merges, &error))
    {
      g_printerr ("gptd quantize: cannot write %s: %s\n", out, error->message);
      return GPTD_CLI_EXIT_FAILED;
    }
  const GptdGptConfig *cfg = gptd_gpt_get_config (model);
  printf ("%s: %s weights of %d layers, width %d, vocabulary %d; %.1f MB "
          "read per token (%.2f s)%s\n",
          out, weights, cfg->n_layer, cfg->n_embd, cfg->vocab_size,
          gptd_gpt_get_weight_bytes (model) / 1e6,
          (g_get_monotonic_time () - t0) / 1e6,
          vocab == NULL || merges == NULL ? "; no tokenizer files copied" : "");
  return GPTD_CLI_EXIT_OK;
}
