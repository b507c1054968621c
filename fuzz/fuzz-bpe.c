/* fuzz/fuzz-bpe.c: the BPE encoder, round trip. The input is text, encoded with
 * GPT-2's vocabulary when $GPTD_DATA_DIR/gpt2 has it, else with the shipped
 * byte-level vocabulary; special-token strings are encoded as text. Valid UTF-8
 * must decode back to itself, byte for byte (NULs included); invalid UTF-8 is
 * refused and nothing else. Chunks cut at gptd_bpe_split_point() encode as the
 * whole does. */
#include "config.h"

#include <gptd/bpe.h>

#include "fuzz-util.h"

static GptdBpe *bpe;

static void
load_vocab (void)
{
  g_autoptr (GError) error = NULL;
  const char *dd = g_getenv ("GPTD_DATA_DIR");
  g_autofree char *enc = dd ? g_build_filename (dd, "gpt2", "encoder.json", NULL) : NULL;
  if (enc && g_file_test (enc, G_FILE_TEST_IS_REGULAR))
    bpe = gptd_bpe_load ("gpt2", &error);
  else
    {
      g_autofree char *dir = g_build_filename (GPTD_ABS_SRCDIR, "pipelines", "vocab", "bytes",
                                               NULL);
      bpe = gptd_bpe_load (dir, &error);
    }
  if (bpe == NULL)
    g_error ("cannot load a vocabulary: %s", error->message);
}

int
LLVMFuzzerTestOneInput (const uint8_t *data, size_t size)
{
  fuzz_init_logging ();
  if (bpe == NULL)
    load_vocab ();
  const char *text = (const char *) data;
  GptdBpeEncodeOptions o = { 0 };
  o.special = GPTD_BPE_SPECIAL_TEXT;
  g_autoptr (GArray) ids = g_array_new (FALSE, FALSE, sizeof (guint32));
  g_autoptr (GError) error = NULL;
  gboolean ok = gptd_bpe_encode (bpe, text, size, &o, ids, &error);
  if (!ok)
    {
      /* Only invalid UTF-8 is refused. */
      g_assert (g_error_matches (error, GPTD_BPE_ERROR, GPTD_BPE_ERROR_INVALID_UTF8));
      g_assert (ids->len == 0);
      return 0;
    }
  g_autoptr (GString) back = g_string_new (NULL);
  g_assert (gptd_bpe_decode (bpe, (const guint32 *) ids->data, ids->len, back, NULL));
  if (back->len != size || memcmp (back->str, text, size) != 0)
    g_error ("round trip: %zu bytes in, %zu bytes back", size, back->len);

  /* Encoded in two chunks cut where the encoder says it may be: the same ids. */
  gsize cut = gptd_bpe_split_point (bpe, text, size / 2, o.special);
  g_autoptr (GArray) parts = g_array_new (FALSE, FALSE, sizeof (guint32));
  if (gptd_bpe_encode (bpe, text, cut, &o, parts, NULL)
      && gptd_bpe_encode (bpe, text + cut, size - cut, &o, parts, NULL))
    {
      if (parts->len != ids->len
          || memcmp (parts->data, ids->data, ids->len * sizeof (guint32)) != 0)
        g_error ("split at %zu of %zu: %u ids, whole: %u", cut, size, parts->len, ids->len);
    }
  return 0;
}
