/* tests/test-bpe-util.h: helpers shared by the BPE tests: finding the GPT-2
 * vocabulary, a small vocabulary written on the fly, random UTF-8 text, and
 * the FNV-1a hash the goldens use.
 */
#ifndef GPTD_TEST_BPE_UTIL_H
#define GPTD_TEST_BPE_UTIL_H

#include <string.h>

#include <glib.h>
#include <glib/gstdio.h>
#include <gptd/bpe.h>

/* The GPT-2 vocabulary from $GPTD_DATA_DIR/gpt2, loaded once; NULL (and the
 * test marked skipped) when it is not there. */
G_GNUC_UNUSED static GptdBpe *
test_bpe_gpt2 (void)
{
  static GptdBpe *gpt2;
  static gboolean tried;
  if (!tried)
    {
      tried = TRUE;
      const char *dir = g_getenv ("GPTD_DATA_DIR");
      g_autofree char *enc = dir ? g_build_filename (dir, "gpt2", "encoder.json", NULL) : NULL;
      if (enc && g_file_test (enc, G_FILE_TEST_EXISTS))
        {
          g_autoptr (GError) error = NULL;
          gpt2 = gptd_bpe_load ("gpt2", &error);
          g_assert_no_error (error);
        }
    }
  if (!gpt2)
    g_test_skip ("GPTD_DATA_DIR has no gpt2/ vocabulary");
  return gpt2;
}

/* A path under $GPTD_DATA_DIR, or NULL (test skipped) when it does not exist. */
G_GNUC_UNUSED static char *
test_bpe_data_file (const char *name)
{
  const char *dir = g_getenv ("GPTD_DATA_DIR");
  char *path = dir ? g_build_filename (dir, name, NULL) : NULL;
  if (!path || !g_file_test (path, G_FILE_TEST_IS_REGULAR))
    {
      g_test_skip_printf ("GPTD_DATA_DIR has no %s", name);
      g_free (path);
      return NULL;
    }
  return path;
}

G_GNUC_UNUSED static guint64
test_bpe_fnv1a (const guint32 *ids, gsize n)
{
  guint64 h = 0xcbf29ce484222325ull;
  for (gsize i = 0; i < n; i++)
    for (int k = 0; k < 4; k++)
      {
        h ^= (ids[i] >> (8 * k)) & 0xff;
        h *= 0x100000001b3ull;
      }
  return h;
}

/* GPT-2's mapping of a byte to the character that stands for it. */
G_GNUC_UNUSED static gunichar
test_bpe_byte_char (guint8 b)
{
  if ((b >= 0x21 && b <= 0x7E) || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE))
    return b;
  int n = 0;
  for (int c = 0; c < 256; c++)
    {
      if ((c >= 0x21 && c <= 0x7E) || (c >= 0xA1 && c <= 0xAC) || (c >= 0xAE))
        continue;
      if (c == b)
        return 0x100 + n;
      n++;
    }
  g_assert_not_reached ();
}

G_GNUC_UNUSED static void
test_bpe_append_mapped (GString *s, const char *bytes)
{
  for (const guint8 *p = (const guint8 *) bytes; *p; p++)
    g_string_append_unichar (s, test_bpe_byte_char (*p));
}

G_GNUC_UNUSED static void
test_bpe_json_escape (GString *out, const char *s)
{
  for (; *s; s++)
    {
      if (*s == '"' || *s == '\\')
        g_string_append_c (out, '\\');
      g_string_append_c (out, *s);
    }
}

/* Merges of the small vocabulary, as byte strings "left right" (left and right
 * tokens separated by the first '|'). Tokens 0-255 are the bytes in GPT-2's
 * order, then one token per merge. */
static const char *const test_bpe_small_merges[] = {
  " |t", "h|e", " t|he", "i|n", " |a", "e|r", "o|n", " |s", "r|e", "a|t",
  "in|g", " |w", "e|n", " |o", "e|d", " |c", "o|u", " t|o", "i|s", " |b",
};

/* Writes the small vocabulary (with <|endoftext|> last) into dir as
 * encoder.json + vocab.bpe, one JSON member per line. */
G_GNUC_UNUSED static void
test_bpe_write_small (const char *dir)
{
  g_autoptr (GString) json = g_string_new ("{\n");
  g_autoptr (GString) merges = g_string_new ("#version: 0.2\n");
  int id = 0;
  for (int pass = 0; pass < 2; pass++)
    for (int b = 0; b < 256; b++)
      {
        gboolean printable = (b >= 0x21 && b <= 0x7E) || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE);
        if (printable != (pass == 0))
          continue;
        g_autoptr (GString) key = g_string_new (NULL);
        g_string_append_unichar (key, test_bpe_byte_char ((guint8) b));
        g_string_append (json, "  \"");
        test_bpe_json_escape (json, key->str);
        g_string_append_printf (json, "\": %d,\n", id++);
      }
  for (guint i = 0; i < G_N_ELEMENTS (test_bpe_small_merges); i++)
    {
      g_auto (GStrv) lr = g_strsplit (test_bpe_small_merges[i], "|", 2);
      g_autoptr (GString) l = g_string_new (NULL), r = g_string_new (NULL);
      test_bpe_append_mapped (l, lr[0]);
      test_bpe_append_mapped (r, lr[1]);
      g_string_append_printf (merges, "%s %s\n", l->str, r->str);
      g_autofree char *lrs = g_strconcat (l->str, r->str, NULL);
      g_string_append (json, "  \"");
      test_bpe_json_escape (json, lrs);
      g_string_append_printf (json, "\": %d,\n", id++);
    }
  g_string_append_printf (json, "  \"<|endoftext|>\": %d\n}\n", id);
  g_autofree char *jp = g_build_filename (dir, "encoder.json", NULL);
  g_autofree char *mp = g_build_filename (dir, "vocab.bpe", NULL);
  g_assert_true (g_file_set_contents (jp, json->str, (gssize) json->len, NULL));
  g_assert_true (g_file_set_contents (mp, merges->str, (gssize) merges->len, NULL));
}

/* Appends one random character of a random kind. */
G_GNUC_UNUSED static void
test_bpe_random_char (GString *s)
{
  static const char *const words[] = { "'s", "'t", "'re", "'ve", "'m", "'ll", "'d", "'S", "the", " the",
                                       "  ", "\n", "\r\n", "\t", "<|endoftext|>", "<|", "|>" };
  int kind = g_test_rand_int_range (0, 100);
  gunichar cp;
  if (kind < 40)
    cp = (gunichar) g_test_rand_int_range (0x20, 0x7F);
  else if (kind < 50)
    {
      g_string_append (s, words[g_test_rand_int_range (0, G_N_ELEMENTS (words))]);
      return;
    }
  else if (kind < 55)
    cp = (gunichar) g_test_rand_int_range (0, 0x20);
  else if (kind < 70)
    cp = (gunichar) g_test_rand_int_range (0x80, 0x800);
  else if (kind < 85)
    cp = (gunichar) g_test_rand_int_range (0x800, 0x10000);
  else
    cp = (gunichar) g_test_rand_int_range (0x10000, 0x110000);
  if (cp >= 0xD800 && cp <= 0xDFFF)
    cp = 'x';
  g_string_append_unichar (s, cp);
}

G_GNUC_UNUSED static char *
test_bpe_random_text (gsize n_chars)
{
  GString *s = g_string_new (NULL);
  for (gsize i = 0; i < n_chars; i++)
    test_bpe_random_char (s);
  return g_string_free (s, FALSE);
}

#endif /* GPTD_TEST_BPE_UTIL_H */
