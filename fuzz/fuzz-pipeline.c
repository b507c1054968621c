/* fuzz/fuzz-pipeline.c: the pipeline loader with settings. The input is a
 * pipeline file, then (after a 0x01 byte) settings, one KEY=VALUE per line, as
 * gptd run --set and gptctl give them; the stage types are the build tree's
 * plugins. Every load must end in a pipeline or in problems, never a crash. */
#include "config.h"

#include <gptd/pipeline.h>

#include "fuzz-util.h"

int
LLVMFuzzerTestOneInput (const uint8_t *data, size_t size)
{
  fuzz_init_logging ();
  GptdRegistry *registry = fuzz_registry ();
  const uint8_t *text, *set;
  size_t text_len, set_len;
  fuzz_part (data, size, 0, &text, &text_len);
  fuzz_part (data, size, 1, &set, &set_len);
  g_autofree char *set_str = g_strndup ((const char *) set, set_len);
  g_auto (GStrv) settings = set_len > 0 ? g_strsplit (set_str, "\n", 64) : NULL;

  g_autoptr (GError) error = NULL;
  g_autoptr (GPtrArray) problems = NULL;
  GptdPipeline *p = gptd_pipeline_load_data (registry, (const char *) text, (gssize) text_len,
                                             "fuzz.pipeline", (const char *const *) settings,
                                             &problems, &error);
  if (p != NULL)
    {
      g_assert (error == NULL);
      g_assert (gptd_pipeline_get_name (p) != NULL);
      gptd_pipeline_free (p);
    }
  else
    g_assert (error != NULL);
  return 0;
}
