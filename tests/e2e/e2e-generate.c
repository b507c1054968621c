/* tests/e2e/e2e-generate.c: generates text with the generation library
 * directly, for the end-to-end tests to compare with what gptd streams:
 *
 *   e2e-generate MODEL_DIR PROMPT MAX_NEW_TOKENS TEMPERATURE TOP_K TOP_P SEED EOS_ID
 *
 * prints the generated text followed by one newline (as `gptctl generate`
 * does) and exits 0, or prints the error and exits 1.
 */
#include "config.h"

#include <gptd/generate.h>

#include <stdio.h>
#include <stdlib.h>

int
main (int argc, char **argv)
{
  if (argc != 9)
    {
      fprintf (stderr, "usage: e2e-generate MODEL_DIR PROMPT MAX_NEW_TOKENS TEMPERATURE "
               "TOP_K TOP_P SEED EOS_ID\n");
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

  g_autoptr (GError) error = NULL;
  g_autoptr (GptdGenerator) generator = gptd_generator_load (argv[1], NULL, 0, &error);
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
