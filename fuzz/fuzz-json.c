/* fuzz/fuzz-json.c: the JSON readers that take no safetensors around them. The
 * first byte picks one, the rest is the file: 0 a model's config.json, 1 a
 * checkpoint root's checkpoint.json, 2 any JSON through the bounded loader. */
#include "config.h"

#include <gptd/gpt2-file.h>
#include <gptd/json-load.h>

#include "fuzz-util.h"

int
LLVMFuzzerTestOneInput (const uint8_t *data, size_t size)
{
  fuzz_init_logging ();
  if (size == 0)
    return 0;
  int which = data[0] % 3;
  const char *json = (const char *) data + 1;
  gssize len = (gssize) size - 1;
  g_autoptr (GError) error = NULL;
  switch (which)
    {
    case 0:
      {
        GptdGptConfig c;
        guint flags;
        if (gptd_gpt_config_from_json (json, len, "config.json", &c, &flags, &error))
          g_assert (gptd_gpt_config_validate (&c, NULL));
        else
          g_assert (error != NULL);
        break;
      }
    case 1:
      {
        g_free (fuzz_write (GPTD_CHECKPOINT_INDEX, json, (size_t) len));
        g_autofree char *latest = gptd_checkpoint_get_latest (fuzz_dir (), &error);
        /* A named checkpoint lies inside the root. */
        g_assert (latest == NULL || (g_str_has_prefix (latest, fuzz_dir ())
                                     && strchr (latest + strlen (fuzz_dir ()) + 1, '/') == NULL
                                     && strstr (latest, "..") == NULL));
        g_assert ((latest == NULL) == (error != NULL));
        break;
      }
    default:
      {
        g_autoptr (JsonParser) p = gptd_json_load_bounded (json, len, "fuzz.json", 0, &error);
        g_assert ((p != NULL) == (error == NULL));
        break;
      }
    }
  return 0;
}
