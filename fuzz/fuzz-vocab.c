/* fuzz/fuzz-vocab.c: the vocabulary loaders. The input is an encoder.json, then
 * (after a 0x01 byte) a vocab.bpe of merges; a vocabulary that loads must encode
 * and decode a short text back to itself. */
#include "config.h"

#include <gptd/bpe.h>

#include "fuzz-util.h"

int
LLVMFuzzerTestOneInput (const uint8_t *data, size_t size)
{
  fuzz_init_logging ();
  const uint8_t *enc, *merges;
  size_t enc_len, merges_len;
  fuzz_part (data, size, 0, &enc, &enc_len);
  fuzz_part (data, size, 1, &merges, &merges_len);
  g_autofree char *a = fuzz_write ("encoder.json", enc, enc_len);
  g_autofree char *b = fuzz_write ("vocab.bpe", merges, merges_len);

  g_autoptr (GError) error = NULL;
  GptdBpe *bpe = gptd_bpe_load (fuzz_dir (), &error);
  if (bpe == NULL)
    {
      g_assert (error != NULL);
      return 0;
    }
  static const char text[] = "Hello, world! 12 \xc3\xa9t\xc3\xa9\n\0x";
  g_autoptr (GArray) ids = g_array_new (FALSE, FALSE, sizeof (guint32));
  GptdBpeEncodeOptions o = { 0 };
  o.special = GPTD_BPE_SPECIAL_TEXT;
  if (gptd_bpe_encode (bpe, text, sizeof text - 1, &o, ids, &error))
    {
      g_autoptr (GString) back = g_string_new (NULL);
      g_assert (gptd_bpe_decode (bpe, (const guint32 *) ids->data, ids->len, back, &error));
      g_assert (back->len == sizeof text - 1 && memcmp (back->str, text, back->len) == 0);
    }
  gptd_bpe_unref (bpe);
  return 0;
}
