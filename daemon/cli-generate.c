/* cli-generate.c: `gptd generate`, text generation from a model directory in the
 * foreground, without a pipeline file or a daemon. See cli.h. */
#include "config.h"

#include <stdio.h>
#include <string.h>

#include <gptd/generate.h>
#include <gptd/nn.h>
#include <gptd/quant.h>

#include "cli.h"

/* Streams each completed piece of text to standard output. */
static void
print_token (gint32 id, const char *text, gsize text_len, gpointer user_data)
{
  (void) id;
  (void) user_data;
  if (text_len > 0)
    {
      fwrite (text, 1, text_len, stdout);
      fflush (stdout);
    }
}

int
gptd_cli_generate (int argc, char **argv)
{
  g_autofree char *model = NULL;
  g_autofree char *prompt = NULL;
  g_autofree char *vocab = NULL;
  g_autofree char *weights = NULL;
  g_auto (GStrv) stop = NULL;
  int max_new_tokens = 50, top_k = 0, threads = 0, eos_id = -1, context = 0;
  double temperature = 0, top_p = 1;
  gint64 seed = GPTD_GENERATE_DEFAULT_SEED;
  gboolean quiet = FALSE;
  GOptionEntry entries[] = {
    { "model", 'm', 0, G_OPTION_ARG_FILENAME, &model,
      "Model directory (config.json + model.safetensors) or a run's checkpoint/ "
      "directory (its latest checkpoint)", "DIR" },
    { "prompt", 'p', 0, G_OPTION_ARG_STRING, &prompt,
      "Prompt text (or give it as the arguments that follow the options)", "TEXT" },
    { "max-new-tokens", 'n', 0, G_OPTION_ARG_INT, &max_new_tokens,
      "Tokens to generate (default 50)", "N" },
    { "temperature", 't', 0, G_OPTION_ARG_DOUBLE, &temperature,
      "0 (the default) is greedy; else the logits are divided by it before sampling", "T" },
    { "top-k", 'k', 0, G_OPTION_ARG_INT, &top_k,
      "Sample among the K most likely tokens only; 0 (the default) keeps all", "K" },
    { "top-p", 0, 0, G_OPTION_ARG_DOUBLE, &top_p,
      "Nucleus sampling threshold in (0, 1] (default 1)", "P" },
    { "seed", 's', 0, G_OPTION_ARG_INT64, &seed, "Seed of the sampling (default 123)", "S" },
    { "eos-id", 0, 0, G_OPTION_ARG_INT, &eos_id,
      "Stop when this token id is generated; -1 (the default) never", "ID" },
    { "context-length", 0, 0, G_OPTION_ARG_INT, &context,
      "Window of tokens each step looks at (default: the model's context)", "N" },
    { "vocab", 0, 0, G_OPTION_ARG_STRING, &vocab,
      "Tokenizer (a directory, or a name such as gpt2); default: the model's own", "VOCAB" },
    { "threads", 'j', 0, G_OPTION_ARG_INT, &threads,
      "Threads for the model (default: one per CPU)", "N" },
    { "weights", 'w', 0, G_OPTION_ARG_STRING, &weights,
      "Weight format: fp32, bf16 or q8 (converted on load); default: the "
      "model directory's own", "FORMAT" },
    { "stop", 0, 0, G_OPTION_ARG_STRING_ARRAY, &stop,
      "End the text before this string when it comes out (not printed); "
      "repeatable", "S" },
    { "quiet", 'q', 0, G_OPTION_ARG_NONE, &quiet,
      "Print only the generated text (not the prompt)", NULL },
    { NULL }
  };
  g_autoptr (GOptionContext) oc = g_option_context_new ("-m MODEL_DIR [PROMPT...]");
  g_option_context_set_summary (oc, "Generates text from a model directory in the "
                                "foreground: the prompt, then its continuation as it "
                                "is produced. Exit status: 0 success, 1 the model "
                                "cannot be loaded or generation failed, 2 bad usage.");
  g_option_context_add_main_entries (oc, entries, NULL);
  g_autoptr (GError) error = NULL;
  if (!g_option_context_parse (oc, &argc, &argv, &error))
    {
      g_printerr ("gptd generate: %s\n(try gptd generate --help)\n", error->message);
      return GPTD_CLI_EXIT_USAGE;
    }
  if (model == NULL)
    {
      g_printerr ("gptd generate: give the model directory with -m DIR\n");
      return GPTD_CLI_EXIT_USAGE;
    }
  if (argc > 1)
    {
      if (prompt != NULL)
        {
          g_printerr ("gptd generate: give the prompt either with -p or as arguments\n");
          return GPTD_CLI_EXIT_USAGE;
        }
      prompt = g_strjoinv (" ", argv + 1);
    }
  if (prompt == NULL || *prompt == '\0')
    {
      g_printerr ("gptd generate: give a prompt (-p TEXT)\n");
      return GPTD_CLI_EXIT_USAGE;
    }

  GptdGenerateOptions o;
  gptd_generate_options_init (&o);
  o.max_new_tokens = max_new_tokens;
  o.temperature = temperature;
  o.top_k = top_k;
  o.top_p = top_p;
  o.seed = (guint64) seed;
  o.eos_id = eos_id;
  o.stop = (const char *const *) stop;
  if (seed < 0 || context < 0 || !gptd_generate_options_validate (&o, &error))
    {
      g_printerr ("gptd generate: %s\n",
                  error ? error->message : "--seed and --context-length must not be negative");
      return GPTD_CLI_EXIT_USAGE;
    }
  g_autoptr (GptdStopMatcher) check = gptd_stop_matcher_new (o.stop, &error);
  if (check == NULL)
    {
      g_printerr ("gptd generate: --stop: %s\n", error->message);
      return GPTD_CLI_EXIT_USAGE;
    }

  GptdGeneratorLoadOptions lo;
  gptd_generator_load_options_init (&lo);
  lo.vocab = vocab;
  lo.context_length = context;
  if (weights != NULL)
    {
      GptdWeightFormat f;
      if (!gptd_weight_format_from_string (weights, &f, &error))
        {
          g_printerr ("gptd generate: --weights: %s\n", error->message);
          return GPTD_CLI_EXIT_USAGE;
        }
      lo.weights = (int) f;
    }

  gptd_nn_set_num_threads (threads);
  g_autoptr (GptdGenerator) gen = gptd_generator_load_full (model, &lo, &error);
  if (gen == NULL)
    {
      g_printerr ("gptd generate: cannot load the model %s: %s\n", model, error->message);
      return GPTD_CLI_EXIT_FAILED;
    }
  if (!gptd_generator_has_tokenizer (gen))
    {
      g_printerr ("gptd generate: the model %s has no tokenizer files (vocab.json + "
                  "merges.txt); name one with --vocab\n", model);
      return GPTD_CLI_EXIT_FAILED;
    }
  if (!quiet)
    {
      fputs (prompt, stdout);
      fflush (stdout);
    }
  GptdGenerateCallbacks cb = { print_token, NULL, NULL };
  g_autoptr (GptdGenerateResult) r = gptd_generator_generate (gen, prompt, &o, &cb, &error);
  if (r == NULL)
    {
      fputc ('\n', stdout);
      g_printerr ("gptd generate: %s\n", error->message);
      return GPTD_CLI_EXIT_FAILED;
    }
  fputc ('\n', stdout);
  return GPTD_CLI_EXIT_OK;
}
