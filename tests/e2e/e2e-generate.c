/* tests/e2e/e2e-generate.c: generates text with the generation library
 * directly, for the end-to-end tests to compare with what gptd streams:
 *
 *   e2e-generate MODEL_DIR PROMPT MAX_NEW_TOKENS TEMPERATURE TOP_K TOP_P SEED EOS_ID
 *                [WEIGHTS [STOP...]]
 *
 * WEIGHTS is a weight format (fp32, bf16, q8; empty: the directory's own) and
 * each STOP a stop string.
 * prints the generated text followed by one newline (as `gptctl generate`
 * does) and exits 0, or prints the error and exits 1.
 */
#include "config.h"

#include <gptd/generate.h>
#include <gptd/quant.h>

#include <stdio.h>
#include <stdlib.h>

int
main (int argc, char **argv)
{
  if (argc < 9)
    {
      fprintf (stderr, "usage: e2e-generate MODEL_DIR PROMPT MAX_NEW_TOKENS TEMPERATURE "
               "TOP_K TOP_P SEED EOS_ID [WEIGHTS [STOP...]]\n");
      return 2;
    }
  GptdGenerateOptions opts;
  gptd_generate_options_init (&opts);
  opts.max_new_tokens = atoi (argv[3]);
  opts.temperature = g_ascii_strtod (argv[4], NULL);
  opts.top_k = atoi (argv[5]);
  opts.top_p = g_ascii_strtod (argv[6], NULL);
  opts.seed = g_ascii_strtoull (argv[7], NULL, 10);
  opts.eos_id = atoi (argv[8]);
  opts.use_kv_cache = TRUE;
  if (argc > 10)
    opts.stop = (const char *const *) argv + 10;

  g_autoptr (GError) error = NULL;
  GptdGeneratorLoadOptions lo;
  gptd_generator_load_options_init (&lo);
  if (argc > 9 && *argv[9])
    {
      GptdWeightFormat f;
      if (!gptd_weight_format_from_string (argv[9], &f, &error))
        {
          fprintf (stderr, "e2e-generate: %s\n", error->message);
          return 2;
        }
      lo.weights = (int) f;
    }
  g_autoptr (GptdGenerator) generator = gptd_generator_load_full (argv[1], &lo, &error);
  g_autoptr (GptdGenerateResult) result = NULL;
  if (generator != NULL)
    result = gptd_generator_generate (generator, argv[2], &opts, NULL, &error);
  if (result == NULL)
    {
      fprintf (stderr, "e2e-generate: %s\n", error->message);
      return 1;
    }
  fwrite (result->text, 1, result->text_len, stdout);
  fputc ('\n', stdout);
  return 0;
}
