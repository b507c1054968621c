/* tests/test-bpe.c: the BPE tokenizer: tiktoken goldens, the data corpus,
 * special tokens, invalid UTF-8, decoding and the streaming decoder, cutting
 * streamed text, and loading good and bad vocabulary files.
 *
 * Tests that need OpenAI's GPT-2 vocabulary read it from $GPTD_DATA_DIR/gpt2 and
 * are skipped when it is not there.
 */
#include "bpe/bpe-internal.h"
#include "test-bpe-util.h"

#include <json-glib/json-glib.h>

/* ------------------------------------------------------------------------ */
/* Goldens                                                                    */

static JsonArray *
load_json_array (const char *name, JsonParser **parser)
{
  g_autofree char *path = g_test_build_filename (G_TEST_DIST, "golden", "bpe", name, NULL);
  g_autoptr (GError) error = NULL;
  *parser = json_parser_new ();
  json_parser_load_from_file (*parser, path, &error);
  g_assert_no_error (error);
  return json_node_get_array (json_parser_get_root (*parser));
}

static char *
golden_text (JsonObject *o, gsize *len)
{
  GString *s = g_string_new (NULL);
  if (json_object_has_member (o, "repeat"))
    {
      const char *r = json_object_get_string_member (o, "repeat");
      gint64 n = json_object_get_int_member (o, "count");
      for (gint64 i = 0; i < n; i++)
        g_string_append (s, r);
    }
  else
    g_string_append (s, json_object_get_string_member (o, "text"));
  *len = s->len;
  return g_string_free (s, FALSE);
}

static void
print_escaped (const char *what, const char *s, gsize len)
{
  g_autofree char *esc = g_strescape (len > 200 ? "(long)" : s, NULL);
  g_test_message ("%s: \"%s\" (%" G_GSIZE_FORMAT " bytes)", what, esc, len);
}

static void
test_golden_ids (void)
{
  GptdBpe *bpe = test_bpe_gpt2 ();
  if (!bpe)
    return;
  g_autoptr (JsonParser) parser = NULL;
  JsonArray *cases = load_json_array ("ids.json", &parser);
  g_assert_cmpuint (json_array_get_length (cases), >=, 500);
  guint n_checked = 0;
  for (guint c = 0; c < json_array_get_length (cases); c++)
    {
      JsonObject *o = json_array_get_object_element (cases, c);
      gsize len;
      g_autofree char *text = golden_text (o, &len);
      const char *mode_name = json_object_get_string_member (o, "mode");
      GptdBpeEncodeOptions opts = { 0 };
      g_assert_true (gptd_bpe_special_mode_from_string (mode_name, &opts.special));
      g_autoptr (GArray) ids = g_array_new (FALSE, FALSE, sizeof (guint32));
      g_autoptr (GError) error = NULL;
      gboolean ok = gptd_bpe_encode (bpe, text, len, &opts, ids, &error);
      if (json_object_has_member (o, "error"))
        {
          if (ok)
            print_escaped ("expected an error for", text, len);
          g_assert_error (error, GPTD_BPE_ERROR, GPTD_BPE_ERROR_SPECIAL_TOKEN);
          g_assert_cmpuint (ids->len, ==, 0);
          n_checked++;
          continue;
        }
      if (!ok)
        print_escaped ("failed", text, len);
      g_assert_no_error (error);
      const guint32 *got = (const guint32 *) (void *) ids->data;
      if (json_object_has_member (o, "ids"))
        {
          JsonArray *want = json_object_get_array_member (o, "ids");
          guint n = json_array_get_length (want), i = 0;
          for (; i < MIN (n, ids->len); i++)
            if ((gint64) got[i] != json_array_get_int_element (want, i))
              break;
          if (i < n || n != ids->len)
            {
              print_escaped ("mismatch for", text, len);
              g_test_message ("mode %s: first difference at id %u (got %u, want %" G_GINT64_FORMAT
                              "), %u ids, want %u", mode_name, i, i < ids->len ? got[i] : 0,
                              i < n ? json_array_get_int_element (want, i) : -1, ids->len, n);
            }
          g_assert_cmpuint (ids->len, ==, n);
          g_assert_cmpuint (i, ==, n);
        }
      else
        {
          JsonArray *head = json_object_get_array_member (o, "ids_head");
          for (guint i = 0; i < json_array_get_length (head); i++)
            g_assert_cmpint (got[i], ==, json_array_get_int_element (head, i));
          g_assert_cmpint (ids->len, ==, json_object_get_int_member (o, "n_ids"));
          g_autofree char *h = g_strdup_printf ("%016" G_GINT64_MODIFIER "x",
                                                test_bpe_fnv1a (got, ids->len));
          g_assert_cmpstr (h, ==, json_object_get_string_member (o, "ids_fnv1a"));
        }
      n_checked++;
    }
  g_test_message ("%u golden cases match tiktoken", n_checked);
}

/* The array merge and the heap merge agree on every piece of every golden. */
static void
test_merge_algorithms (void)
{
  GptdBpe *bpe = test_bpe_gpt2 ();
  if (!bpe)
    return;
  g_autoptr (JsonParser) parser = NULL;
  JsonArray *cases = load_json_array ("ids.json", &parser);
  gptd__bpe_classes_init ();
  guint n_pieces = 0;
  for (guint c = 0; c < json_array_get_length (cases); c++)
    {
      gsize len;
      g_autofree char *text = golden_text (json_array_get_object_element (cases, c), &len);
      const guint8 *s = (const guint8 *) text;
      g_autofree guint32 *a = g_new (guint32, len + 1);
      g_autofree guint32 *b = g_new (guint32, len + 1);
      for (gsize pos = 0; pos < len;)
        {
          gsize e = gptd__bpe_pretok_next (s, pos, len);
          gsize na = gptd__bpe_merge (bpe, s + pos, e - pos, a, FALSE);
          gsize nb = gptd__bpe_merge (bpe, s + pos, e - pos, b, TRUE);
          g_assert_cmpuint (na, ==, nb);
          g_assert_cmpmem (a, na * 4, b, nb * 4);
          pos = e;
          n_pieces++;
        }
    }
  g_assert_cmpuint (n_pieces, >, 1000);
}

/* Every data file encodes to tiktoken's ids (count and hash from data-ids.json). */
static void
test_data_corpus (void)
{
  GptdBpe *bpe = test_bpe_gpt2 ();
  if (!bpe)
    return;
  g_autoptr (JsonParser) parser = NULL;
  JsonArray *files = load_json_array ("data-ids.json", &parser);
  for (guint f = 0; f < json_array_get_length (files); f++)
    {
      JsonObject *o = json_array_get_object_element (files, f);
      const char *name = json_object_get_string_member (o, "file");
      g_autofree char *path = test_bpe_data_file (name);
      if (!path)
        return;
      g_autofree char *text = NULL;
      gsize len;
      g_assert_true (g_file_get_contents (path, &text, &len, NULL));
      g_assert_cmpint (len, ==, json_object_get_int_member (o, "bytes"));
      GptdBpeEncodeOptions opts = { .special = GPTD_BPE_SPECIAL_TEXT };
      g_autoptr (GArray) ids = g_array_new (FALSE, FALSE, sizeof (guint32));
      g_autoptr (GError) error = NULL;
      g_assert_true (gptd_bpe_encode (bpe, text, len, &opts, ids, &error));
      g_assert_no_error (error);
      g_test_message ("%s: %u ids", name, ids->len);
      g_assert_cmpint (ids->len, ==, json_object_get_int_member (o, "n_ids"));
      g_autofree char *h = g_strdup_printf ("%016" G_GINT64_MODIFIER "x",
                                            test_bpe_fnv1a ((const guint32 *) (void *) ids->data, ids->len));
      g_assert_cmpstr (h, ==, json_object_get_string_member (o, "ids_fnv1a"));

      /* Decoding gives the file back. */
      g_autoptr (GString) back = g_string_new (NULL);
      g_assert_true (gptd_bpe_decode (bpe, (const guint32 *) (void *) ids->data, ids->len, back, &error));
      g_assert_cmpmem (back->str, back->len, text, len);
    }
}

/* ------------------------------------------------------------------------ */
/* Pre-tokenizer                                                              */

static void
test_classes_table (void)
{
  for (gunichar cp = 0; cp < 0x110000; cp++)
    if (gptd__bpe_class_slow (cp) != gptd__bpe_class_reference (cp))
      g_error ("class of U+%04X: table %u, GLib %u", cp, gptd__bpe_class_slow (cp),
               gptd__bpe_class_reference (cp));
  g_assert_cmpuint (gptd__bpe_class_slow ('a'), ==, GPTD__BPE_CLASS_LETTER);
  g_assert_cmpuint (gptd__bpe_class_slow (0x4E00), ==, GPTD__BPE_CLASS_LETTER);
  g_assert_cmpuint (gptd__bpe_class_slow (0x0663), ==, GPTD__BPE_CLASS_NUMBER);
  g_assert_cmpuint (gptd__bpe_class_slow (0x2167), ==, GPTD__BPE_CLASS_NUMBER);
  g_assert_cmpuint (gptd__bpe_class_slow (0x85), ==, GPTD__BPE_CLASS_SPACE);
  g_assert_cmpuint (gptd__bpe_class_slow (0x3000), ==, GPTD__BPE_CLASS_SPACE);
  g_assert_cmpuint (gptd__bpe_class_slow (0x200B), ==, GPTD__BPE_CLASS_OTHER);
  g_assert_cmpuint (gptd__bpe_class_slow (0x0301), ==, GPTD__BPE_CLASS_OTHER);
}

/* Pieces of a few texts, as the GPT-2 pattern cuts them. */
static void
test_pretok_pieces (void)
{
  static const struct {
    const char *text;
    const char *pieces; /* separated by '|' */
  } cases[] = {
    { "Hello world", "Hello| world" },
    { "I'm here", "I|'m| here" },
    { "I'M HERE", "I|'|M| HERE" },
    { "they'll've", "they|'ll|'ve" },
    { "a  b", "a| | b" },
    { "a   \n\nb", "a|   \n|\n|b" },
    { "a\t\tb", "a|\t|\t|b" },
    { "end  ", "end|  " },
    { " 123abc", " 123|abc" },
    { "x = (1 + 2);", "x| =| (|1| +| 2|);" },
    { "'''s", "'''|s" },
    { "caf\xc3\xa9 e\xcc\x81", "caf\xc3\xa9| e|\xcc\x81" },
    { "a\xe3\x80\x80\xe3\x80\x80" "b", "a|\xe3\x80\x80|\xe3\x80\x80|b" },
    { "\xe4\xbd\xa0\xe5\xa5\xbd\xef\xbc\x8c", "\xe4\xbd\xa0\xe5\xa5\xbd|\xef\xbc\x8c" },
  };
  gptd__bpe_classes_init ();
  for (guint c = 0; c < G_N_ELEMENTS (cases); c++)
    {
      const guint8 *s = (const guint8 *) cases[c].text;
      gsize len = strlen (cases[c].text);
      g_autoptr (GString) got = g_string_new (NULL);
      for (gsize pos = 0; pos < len;)
        {
          gsize e = gptd__bpe_pretok_next (s, pos, len);
          if (pos)
            g_string_append_c (got, '|');
          g_string_append_len (got, (const char *) s + pos, (gssize) (e - pos));
          pos = e;
        }
      g_assert_cmpstr (got->str, ==, cases[c].pieces);
    }
}

/* ------------------------------------------------------------------------ */
/* Encoding options                                                           */

static GArray *
encode_ok (GptdBpe *bpe, const char *text, gssize len, GptdBpeSpecialMode special, GptdBpeInvalidMode invalid)
{
  GptdBpeEncodeOptions opts = { .special = special, .invalid = invalid };
  GArray *ids = g_array_new (FALSE, FALSE, sizeof (guint32));
  g_autoptr (GError) error = NULL;
  g_assert_true (gptd_bpe_encode (bpe, text, len < 0 ? strlen (text) : (gsize) len, &opts, ids, &error));
  g_assert_no_error (error);
  return ids;
}

static GptdBpe *
small_vocab (char **dir_out)
{
  g_autoptr (GError) error = NULL;
  char *dir = g_dir_make_tmp ("gptd-bpe-XXXXXX", &error);
  g_assert_no_error (error);
  test_bpe_write_small (dir);
  GptdBpe *bpe = gptd_bpe_load (dir, &error);
  g_assert_no_error (error);
  *dir_out = dir;
  return bpe;
}

static void
rm_rf (const char *dir)
{
  g_autoptr (GDir) d = g_dir_open (dir, 0, NULL);
  const char *name;
  while (d && (name = g_dir_read_name (d)))
    {
      g_autofree char *p = g_build_filename (dir, name, NULL);
      if (g_file_test (p, G_FILE_TEST_IS_DIR))
        rm_rf (p);
      else
        g_unlink (p);
    }
  g_rmdir (dir);
}

static void
test_special_modes (void)
{
  g_autofree char *dir = NULL;
  g_autoptr (GptdBpe) bpe = small_vocab (&dir);
  guint eot = gptd_bpe_get_n_vocab (bpe) - 1;
  g_assert_cmpint (gptd_bpe_get_special_id (bpe, "<|endoftext|>"), ==, eot);
  g_assert_cmpint (gptd_bpe_get_special_id (bpe, "<|nope|>"), ==, -1);

  const char *text = "the end<|endoftext|>the";
  g_autoptr (GArray) allowed = encode_ok (bpe, text, -1, GPTD_BPE_SPECIAL_ALLOWED, GPTD_BPE_INVALID_ERROR);
  g_autoptr (GArray) plain = encode_ok (bpe, text, -1, GPTD_BPE_SPECIAL_TEXT, GPTD_BPE_INVALID_ERROR);
  guint n_eot = 0;
  for (guint i = 0; i < allowed->len; i++)
    n_eot += g_array_index (allowed, guint32, i) == eot;
  g_assert_cmpuint (n_eot, ==, 1);
  for (guint i = 0; i < plain->len; i++)
    g_assert_cmpuint (g_array_index (plain, guint32, i), !=, eot);

  /* The default (error) mode names the byte offset. */
  g_autoptr (GArray) ids = g_array_new (FALSE, FALSE, sizeof (guint32));
  g_autoptr (GError) error = NULL;
  g_array_set_size (ids, 3);
  g_assert_false (gptd_bpe_encode (bpe, text, strlen (text), NULL, ids, &error));
  g_assert_error (error, GPTD_BPE_ERROR, GPTD_BPE_ERROR_SPECIAL_TOKEN);
  g_assert_nonnull (strstr (error->message, "byte offset 7"));
  g_assert_cmpuint (ids->len, ==, 3);
  g_clear_error (&error);

  GptdBpeEncodeOptions opts = { .base_offset = 1000 };
  g_assert_false (gptd_bpe_encode (bpe, text, strlen (text), &opts, ids, &error));
  g_assert_nonnull (strstr (error->message, "byte offset 1007"));

  /* Mode names. */
  static const char *const names[] = { "error", "allowed", "text" };
  for (guint i = 0; i < G_N_ELEMENTS (names); i++)
    {
      GptdBpeSpecialMode m;
      g_assert_true (gptd_bpe_special_mode_from_string (names[i], &m));
      g_assert_cmpstr (gptd_bpe_special_mode_to_string (m), ==, names[i]);
    }
  g_assert_false (gptd_bpe_special_mode_from_string ("allow", NULL));
  gptd_bpe_unref (g_steal_pointer (&bpe));
  rm_rf (dir);
}

static void
test_invalid_utf8 (void)
{
  g_autofree char *dir = NULL;
  g_autoptr (GptdBpe) bpe = small_vocab (&dir);
  static const struct {
    const char *text;
    gsize len;
    gsize offset;        /* of the first invalid byte */
    const char *replaced;
  } cases[] = {
    { "ab\x80" "cd", 5, 2, "ab\xef\xbf\xbd" "cd" },                      /* lone continuation byte */
    { "\xc0\x80", 2, 0, "\xef\xbf\xbd\xef\xbf\xbd" },                  /* overlong NUL */
    { "x\xed\xa0\x80y", 5, 1, "x\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbdy" }, /* surrogate */
    { "the \xe2\x82", 6, 4, "the \xef\xbf\xbd" },                        /* truncated at the end */
    { "\xe2\x82z", 3, 0, "\xef\xbf\xbdz" },                              /* truncated in the middle */
    { "\xf5\x80", 2, 0, "\xef\xbf\xbd\xef\xbf\xbd" },                  /* above U+10FFFF */
    { "ok\xf4\x90\x80\x80", 6, 2, "ok\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd" },
    { "\xff", 1, 0, "\xef\xbf\xbd" },
    { "caf\xc3\xa9\xc3", 6, 5, "caf\xc3\xa9\xef\xbf\xbd" },
  };
  for (guint c = 0; c < G_N_ELEMENTS (cases); c++)
    {
      g_autoptr (GArray) ids = g_array_new (FALSE, FALSE, sizeof (guint32));
      g_autoptr (GError) error = NULL;
      GptdBpeEncodeOptions opts = { .special = GPTD_BPE_SPECIAL_TEXT };
      g_assert_false (gptd_bpe_encode (bpe, cases[c].text, cases[c].len, &opts, ids, &error));
      g_assert_error (error, GPTD_BPE_ERROR, GPTD_BPE_ERROR_INVALID_UTF8);
      g_autofree char *want = g_strdup_printf ("byte offset %" G_GSIZE_FORMAT " ", cases[c].offset);
      g_assert_nonnull (strstr (error->message, want));
      g_assert_cmpuint (ids->len, ==, 0);

      g_autoptr (GArray) rep = encode_ok (bpe, cases[c].text, (gssize) cases[c].len,
                                          GPTD_BPE_SPECIAL_TEXT, GPTD_BPE_INVALID_REPLACE);
      g_autoptr (GArray) ref = encode_ok (bpe, cases[c].replaced, -1, GPTD_BPE_SPECIAL_TEXT,
                                          GPTD_BPE_INVALID_ERROR);
      g_assert_cmpmem (rep->data, rep->len * 4, ref->data, ref->len * 4);
    }
  gptd_bpe_unref (g_steal_pointer (&bpe));
  rm_rf (dir);
}

/* ------------------------------------------------------------------------ */
/* Decoding                                                                   */

static void
roundtrip_random (GptdBpe *bpe)
{
  for (int round = 0; round < 300; round++)
    {
      g_autofree char *text = test_bpe_random_text ((gsize) g_test_rand_int_range (0, 300));
      gsize len = strlen (text);
      GptdBpeSpecialMode mode = round % 2 ? GPTD_BPE_SPECIAL_TEXT : GPTD_BPE_SPECIAL_ALLOWED;
      g_autoptr (GArray) ids = encode_ok (bpe, text, (gssize) len, mode, GPTD_BPE_INVALID_ERROR);
      g_autoptr (GString) back = g_string_new (NULL);
      g_autoptr (GError) error = NULL;
      g_assert_true (gptd_bpe_decode (bpe, (const guint32 *) (void *) ids->data, ids->len, back, &error));
      g_assert_no_error (error);
      g_assert_cmpmem (back->str, back->len, text, len);

      /* The streaming decoder gives the same text, one complete character at a time. */
      g_autoptr (GptdBpeDecoder) dec = gptd_bpe_decoder_new (bpe);
      g_autoptr (GString) streamed = g_string_new (NULL);
      for (guint i = 0; i < ids->len; i++)
        {
          gsize before = streamed->len;
          g_assert_true (gptd_bpe_decoder_push (dec, g_array_index (ids, guint32, i), streamed, &error));
          g_assert_true (g_utf8_validate (streamed->str + before, (gssize) (streamed->len - before), NULL));
        }
      gptd_bpe_decoder_finish (dec, streamed);
      g_assert_cmpmem (streamed->str, streamed->len, text, len);
    }
}

static void
test_roundtrip_small (void)
{
  g_autofree char *dir = NULL;
  g_autoptr (GptdBpe) bpe = small_vocab (&dir);
  roundtrip_random (bpe);
  gptd_bpe_unref (g_steal_pointer (&bpe));
  rm_rf (dir);
}

static void
test_roundtrip_gpt2 (void)
{
  GptdBpe *bpe = test_bpe_gpt2 ();
  if (bpe)
    roundtrip_random (bpe);
}

static void
test_decode_unknown (void)
{
  g_autofree char *dir = NULL;
  g_autoptr (GptdBpe) bpe = small_vocab (&dir);
  guint n = gptd_bpe_get_n_vocab (bpe);
  guint32 ids[] = { 10, n, 11 };
  g_autoptr (GString) out = g_string_new ("x");
  g_autoptr (GError) error = NULL;
  g_assert_false (gptd_bpe_decode (bpe, ids, 3, out, &error));
  g_assert_error (error, GPTD_BPE_ERROR, GPTD_BPE_ERROR_UNKNOWN_ID);
  g_assert_cmpstr (out->str, ==, "x");
  g_clear_error (&error);

  g_autoptr (GptdBpeDecoder) dec = gptd_bpe_decoder_new (bpe);
  g_assert_false (gptd_bpe_decoder_push (dec, 1u << 30, out, &error));
  g_assert_error (error, GPTD_BPE_ERROR, GPTD_BPE_ERROR_UNKNOWN_ID);
  gsize len;
  g_assert_null (gptd_bpe_get_token (bpe, n, &len));
  g_assert_nonnull (gptd_bpe_get_token (bpe, n - 1, &len));
  g_assert_cmpuint (len, ==, strlen ("<|endoftext|>"));
  gptd_bpe_decoder_free (g_steal_pointer (&dec));
  gptd_bpe_unref (g_steal_pointer (&bpe));
  rm_rf (dir);
}

/* A character split over byte tokens comes out whole; bytes that can never
 * complete a character come out as U+FFFD. */
static void
test_decoder_partial (void)
{
  g_autofree char *dir = NULL;
  g_autoptr (GptdBpe) bpe = small_vocab (&dir);
  g_autoptr (GArray) euro = encode_ok (bpe, "\xe2\x82\xac", -1, GPTD_BPE_SPECIAL_TEXT, GPTD_BPE_INVALID_ERROR);
  g_assert_cmpuint (euro->len, ==, 3);
  g_autoptr (GptdBpeDecoder) dec = gptd_bpe_decoder_new (bpe);
  g_autoptr (GString) out = g_string_new (NULL);
  g_autoptr (GError) error = NULL;
  g_assert_true (gptd_bpe_decoder_push (dec, g_array_index (euro, guint32, 0), out, &error));
  g_assert_true (gptd_bpe_decoder_push (dec, g_array_index (euro, guint32, 1), out, &error));
  g_assert_cmpuint (out->len, ==, 0);
  g_assert_true (gptd_bpe_decoder_push (dec, g_array_index (euro, guint32, 2), out, &error));
  g_assert_cmpstr (out->str, ==, "\xe2\x82\xac");

  /* E2 82 then 'a': the first two bytes can no longer complete. */
  g_string_truncate (out, 0);
  g_assert_true (gptd_bpe_decoder_push (dec, g_array_index (euro, guint32, 0), out, &error));
  g_assert_true (gptd_bpe_decoder_push (dec, g_array_index (euro, guint32, 1), out, &error));
  g_autoptr (GArray) a = encode_ok (bpe, "a", -1, GPTD_BPE_SPECIAL_TEXT, GPTD_BPE_INVALID_ERROR);
  g_assert_true (gptd_bpe_decoder_push (dec, g_array_index (a, guint32, 0), out, &error));
  g_assert_cmpstr (out->str, ==, "\xef\xbf\xbd" "a");

  /* A lone continuation byte, and an incomplete character at the end. */
  g_string_truncate (out, 0);
  g_assert_true (gptd_bpe_decoder_push (dec, g_array_index (euro, guint32, 1), out, &error));
  g_assert_cmpstr (out->str, ==, "\xef\xbf\xbd");
  g_assert_true (gptd_bpe_decoder_push (dec, g_array_index (euro, guint32, 0), out, &error));
  g_assert_cmpstr (out->str, ==, "\xef\xbf\xbd");
  gptd_bpe_decoder_finish (dec, out);
  g_assert_cmpstr (out->str, ==, "\xef\xbf\xbd\xef\xbf\xbd");
  g_assert_no_error (error);
  gptd_bpe_decoder_free (g_steal_pointer (&dec));
  gptd_bpe_unref (g_steal_pointer (&bpe));
  rm_rf (dir);
}

/* ------------------------------------------------------------------------ */
/* Streaming: cutting text at split points                                    */

static void
check_chunks (GptdBpe *bpe, const char *text, gsize len, GptdBpeSpecialMode mode, GptdBpeInvalidMode invalid)
{
  GptdBpeEncodeOptions opts = { .special = mode, .invalid = invalid };
  g_autoptr (GArray) whole = g_array_new (FALSE, FALSE, sizeof (guint32));
  g_assert_true (gptd_bpe_encode (bpe, text, len, &opts, whole, NULL));

  /* Feed the text in random chunks, carrying the unfinished tail over. */
  g_autoptr (GArray) streamed = g_array_new (FALSE, FALSE, sizeof (guint32));
  g_autoptr (GString) buf = g_string_new (NULL);
  g_autoptr (GError) error = NULL;
  gsize pos = 0;
  while (pos < len)
    {
      gsize n = (gsize) g_test_rand_int_range (1, 40);
      n = MIN (n, len - pos);
      g_string_append_len (buf, text + pos, (gssize) n);
      pos += n;
      gsize cut = gptd_bpe_split_point (bpe, buf->str, buf->len, mode);
      g_assert_cmpuint (cut, <=, buf->len);
      gptd_bpe_encode (bpe, buf->str, cut, &opts, streamed, &error);
      g_assert_no_error (error);
      g_string_erase (buf, 0, (gssize) cut);
    }
  gptd_bpe_encode (bpe, buf->str, buf->len, &opts, streamed, &error);
  g_assert_no_error (error);
  if (whole->len != streamed->len
      || (whole->len > 0 && memcmp (whole->data, streamed->data, whole->len * 4) != 0))
    print_escaped ("chunked encoding differs for", text, len);
  g_assert_cmpmem (whole->data, whole->len * 4, streamed->data, streamed->len * 4);
}

static void
split_random (GptdBpe *bpe)
{
  for (int round = 0; round < 200; round++)
    {
      g_autofree char *text = test_bpe_random_text ((gsize) g_test_rand_int_range (1, 400));
      check_chunks (bpe, text, strlen (text), GPTD_BPE_SPECIAL_TEXT, GPTD_BPE_INVALID_ERROR);
      check_chunks (bpe, text, strlen (text), GPTD_BPE_SPECIAL_ALLOWED, GPTD_BPE_INVALID_ERROR);
    }
  static const char *const fixed[] = {
    "a  b   c    d\n\n\n  e\t\t f", "<|endoftext|><|endoftext|>x<|endo", "it's'll've 'S", "x<|endoftext|",
    "\xe4\xbd\xa0\xe5\xa5\xbd\xe4\xbd\xa0\xe5\xa5\xbd \xf0\x9f\x98\x80\xf0\x9f\x98\x80", "    \n    \n",
  };
  for (guint i = 0; i < G_N_ELEMENTS (fixed); i++)
    for (int rep = 0; rep < 20; rep++)
      {
        check_chunks (bpe, fixed[i], strlen (fixed[i]), GPTD_BPE_SPECIAL_TEXT, GPTD_BPE_INVALID_ERROR);
        check_chunks (bpe, fixed[i], strlen (fixed[i]), GPTD_BPE_SPECIAL_ALLOWED, GPTD_BPE_INVALID_ERROR);
      }
  /* Invalid UTF-8 replaced the same way whole and in chunks. */
  static const char bad[] = "ab\xe2\x82 cd\x80\x80 \xf0\x9f\x98 e\xc3";
  for (int rep = 0; rep < 50; rep++)
    check_chunks (bpe, bad, sizeof bad - 1, GPTD_BPE_SPECIAL_TEXT, GPTD_BPE_INVALID_REPLACE);
}

static void
test_split_small (void)
{
  g_autofree char *dir = NULL;
  g_autoptr (GptdBpe) bpe = small_vocab (&dir);
  split_random (bpe);
  gptd_bpe_unref (g_steal_pointer (&bpe));
  rm_rf (dir);
}

static void
test_split_gpt2 (void)
{
  GptdBpe *bpe = test_bpe_gpt2 ();
  if (!bpe)
    return;
  split_random (bpe);
  g_autofree char *path = test_bpe_data_file ("the-verdict.txt");
  if (!path)
    return;
  g_autofree char *text = NULL;
  gsize len;
  g_assert_true (g_file_get_contents (path, &text, &len, NULL));
  check_chunks (bpe, text, len, GPTD_BPE_SPECIAL_ALLOWED, GPTD_BPE_INVALID_ERROR);
}

/* ------------------------------------------------------------------------ */
/* Vocabulary files                                                           */

static char *
read_file (const char *dir, const char *name)
{
  g_autofree char *p = g_build_filename (dir, name, NULL);
  char *s = NULL;
  g_assert_true (g_file_get_contents (p, &s, NULL, NULL));
  return s;
}

static void
write_file (const char *dir, const char *name, const char *data, gssize len)
{
  g_autofree char *p = g_build_filename (dir, name, NULL);
  g_assert_true (g_file_set_contents (p, data, len, NULL));
}

static char *
replace_once (const char *s, const char *from, const char *to)
{
  const char *at = strstr (s, from);
  g_assert_nonnull (at);
  return g_strdup_printf ("%.*s%s%s", (int) (at - s), s, to, at + strlen (from));
}

static void
expect_load_error (const char *dir, int code, const char *const *needles)
{
  g_autoptr (GError) error = NULL;
  g_autoptr (GptdBpe) bpe = gptd_bpe_load (dir, &error);
  g_assert_null (bpe);
  g_assert_error (error, GPTD_BPE_ERROR, code);
  for (guint i = 0; needles[i]; i++)
    if (!strstr (error->message, needles[i]))
      g_error ("error \"%s\" does not contain \"%s\"", error->message, needles[i]);
}

static void
test_bad_files (void)
{
  g_autofree char *dir = NULL;
  g_autoptr (GptdBpe) good = small_vocab (&dir);
  g_autofree char *json = read_file (dir, "encoder.json");
  g_autofree char *merges = read_file (dir, "vocab.bpe");
  gsize jlen = strlen (json);

  /* Each case: new encoder.json (or NULL), new vocab.bpe (or NULL), and the
   * strings the error must contain. Line numbers count from 1. */
  g_autofree char *bad_value = replace_once (json, "\"!\": 0", "\"!\": \"zero\"");
  g_autofree char *float_id = replace_once (json, "\"!\": 0", "\"!\": 0.5");
  g_autofree char *neg_id = replace_once (json, "\"!\": 0", "\"!\": -1");
  g_autofree char *dup_id = replace_once (json, "\"#\": 2", "\"#\": 1");
  g_autofree char *no_byte = replace_once (json, "\"A\": 32,\n", "");
  g_autofree char *not_special = replace_once (json, "<|endoftext|>", "endoftext");
  g_autofree char *syntax = replace_once (json, "\"#\": 2,", "\"#\" 2,");
  g_autofree char *truncated = g_strndup (json, jlen / 2);
  g_autofree char *opens = g_strnfill (100000, '[');
  g_autofree char *deep_value = g_strdup_printf ("\"!\": %s", opens);
  g_autofree char *deep = replace_once (json, "\"!\": 0", deep_value);
  g_autofree char *one_token = replace_once (merges, "\xc4\xa0 t\n", "\xc4\xa0t\n");
  g_autofree char *unknown = replace_once (merges, "h e\n", "h ee\n");
  g_autofree char *no_result = replace_once (merges, "i n\n", "i q\n");
  g_autofree char *bad_utf8 = replace_once (merges, "o n\n", "o \xc4\n");
  g_autofree char *three = replace_once (merges, "r e\n", "r e x\n");
  gsize mlen = strlen (merges);
  g_autofree char *cut_merges = g_strndup (merges, mlen - strlen ("\xc4\xa0 b\n"));
  struct {
    const char *json;
    const char *merges;
    int code;
    const char *needles[4];
  } cases[] = {
    { bad_value, NULL, GPTD_BPE_ERROR_VOCAB, { "encoder.json:2:", "not an integer" } },
    { float_id, NULL, GPTD_BPE_ERROR_VOCAB, { "encoder.json:2:", "not an integer" } },
    { neg_id, NULL, GPTD_BPE_ERROR_VOCAB, { "encoder.json:2:", "out of range" } },
    { dup_id, NULL, GPTD_BPE_ERROR_VOCAB, { "encoder.json:4:", "already the id" } },
    { no_byte, NULL, GPTD_BPE_ERROR_VOCAB, { "encoder.json", "byte 0x41" } },
    { not_special, NULL, GPTD_BPE_ERROR_VOCAB, { "encoder.json:278:", "endoftext", "truncated" } },
    { syntax, NULL, GPTD_BPE_ERROR_VOCAB, { "encoder.json:4:" } },
    { truncated, NULL, GPTD_BPE_ERROR_VOCAB, { "encoder.json:" } },
    /* nesting that would overflow json-glib's recursion */
    { deep, NULL, GPTD_BPE_ERROR_VOCAB, { "encoder.json", "deeper than 64" } },
    { "", NULL, GPTD_BPE_ERROR_VOCAB, { "encoder.json" } },
    /* no tokens at all (an empty table once reached memset with NULL) */
    { "{}", "#version: 0.2\n", GPTD_BPE_ERROR_VOCAB, { "encoder.json: no tokens" } },
    { NULL, one_token, GPTD_BPE_ERROR_VOCAB, { "vocab.bpe:2:", "two tokens" } },
    { NULL, unknown, GPTD_BPE_ERROR_VOCAB, { "vocab.bpe:3:", "right token" } },
    { NULL, no_result, GPTD_BPE_ERROR_VOCAB, { "vocab.bpe:5:", "merged token" } },
    { NULL, bad_utf8, GPTD_BPE_ERROR_VOCAB, { "vocab.bpe:8:", "UTF-8" } },
    { NULL, three, GPTD_BPE_ERROR_VOCAB, { "vocab.bpe:10:" } },
    { NULL, cut_merges, GPTD_BPE_ERROR_VOCAB, { "encoder.json:277:", "truncated", "19 merges" } },
  };
  for (guint c = 0; c < G_N_ELEMENTS (cases); c++)
    {
      g_test_message ("bad vocabulary case %u", c);
      write_file (dir, "encoder.json", cases[c].json ? cases[c].json : json, -1);
      write_file (dir, "vocab.bpe", cases[c].merges ? cases[c].merges : merges, -1);
      expect_load_error (dir, cases[c].code, cases[c].needles);
    }

  /* Missing files. */
  write_file (dir, "encoder.json", json, -1);
  g_autofree char *mp = g_build_filename (dir, "vocab.bpe", NULL);
  g_unlink (mp);
  expect_load_error (dir, GPTD_BPE_ERROR_NOT_FOUND, (const char *const[]) { "vocab.bpe", NULL });
  g_autofree char *jp = g_build_filename (dir, "encoder.json", NULL);
  g_unlink (jp);
  expect_load_error (dir, GPTD_BPE_ERROR_NOT_FOUND, (const char *const[]) { dir, NULL });

  /* .tiktoken files. */
  g_autofree char *tk = g_build_filename (dir, "bad.tiktoken", NULL);
  struct {
    const char *text;
    const char *needles[3];
  } tcases[] = {
    { "IQ== 0\nIg== 1\nIw==\n", { "bad.tiktoken:3:", "rank" } },
    { "IQ== 0\n!!!! 1\n", { "bad.tiktoken:2:", "base64" } },
    { "IQ== 0\nIg== x\n", { "bad.tiktoken:2:", "not a number" } },
    { "IQ== 0\nIg== 0\n", { "rank 0", "twice" } },
    { "IQ== 0\n", { "no token for the byte" } },
  };
  for (guint c = 0; c < G_N_ELEMENTS (tcases); c++)
    {
      g_assert_true (g_file_set_contents (tk, tcases[c].text, -1, NULL));
      expect_load_error (tk, GPTD_BPE_ERROR_VOCAB, tcases[c].needles);
    }
  g_unlink (tk);
  gptd_bpe_unref (g_steal_pointer (&good));
  rm_rf (dir);
}

/* Truncated copies of GPT-2's files are errors that name file and line. */
static void
test_truncated_gpt2 (void)
{
  if (!test_bpe_gpt2 ())
    return;
  const char *data = g_getenv ("GPTD_DATA_DIR");
  g_autofree char *src = g_build_filename (data, "gpt2", NULL);
  g_autofree char *json = NULL, *merges = NULL;
  gsize jlen, mlen;
  g_autofree char *jp = g_build_filename (src, "encoder.json", NULL);
  g_autofree char *mp = g_build_filename (src, "vocab.bpe", NULL);
  g_assert_true (g_file_get_contents (jp, &json, &jlen, NULL));
  g_assert_true (g_file_get_contents (mp, &merges, &mlen, NULL));
  g_autofree char *dir = g_dir_make_tmp ("gptd-bpe-XXXXXX", NULL);

  static const double fractions[] = { 0.0, 0.1, 0.5, 0.999 };
  for (guint i = 0; i < G_N_ELEMENTS (fractions); i++)
    {
      write_file (dir, "encoder.json", json, (gssize) (jlen * fractions[i]));
      write_file (dir, "vocab.bpe", merges, (gssize) mlen);
      expect_load_error (dir, GPTD_BPE_ERROR_VOCAB, (const char *const[]) { "encoder.json", NULL });

      write_file (dir, "encoder.json", json, (gssize) jlen);
      gsize cut = (gsize) (mlen * fractions[i]);
      /* Cut in the middle of a line, and at the end of the line before. */
      write_file (dir, "vocab.bpe", merges, (gssize) cut);
      g_autoptr (GError) error = NULL;
      g_autoptr (GptdBpe) bpe = gptd_bpe_load (dir, &error);
      g_assert_null (bpe);
      g_assert_error (error, GPTD_BPE_ERROR, GPTD_BPE_ERROR_VOCAB);
      g_assert_true (strstr (error->message, "vocab.bpe:") || strstr (error->message, "truncated"));
      g_test_message ("%s", error->message);
    }
  /* The last merge missing. */
  const char *last = merges + mlen - 1;
  while (last > merges && last[-1] != '\n')
    last--;
  write_file (dir, "vocab.bpe", merges, (gssize) (last - merges));
  expect_load_error (dir, GPTD_BPE_ERROR_VOCAB, (const char *const[]) { "gazed", "50255", "truncated", NULL });
  rm_rf (dir);
}

static void
test_names (void)
{
  g_autofree char *root = g_dir_make_tmp ("gptd-bpe-XXXXXX", NULL);
  g_autofree char *vdir = g_build_filename (root, "small", NULL);
  g_assert_cmpint (g_mkdir (vdir, 0755), ==, 0);
  test_bpe_write_small (vdir);
  g_autofree char *old = g_strdup (g_getenv ("GPTD_DATA_DIR"));
  g_setenv ("GPTD_DATA_DIR", root, TRUE);

  g_autoptr (GError) error = NULL;
  g_autoptr (GptdBpe) byname = gptd_bpe_load ("small", &error);
  g_assert_no_error (error);
  g_assert_cmpuint (gptd_bpe_get_n_vocab (byname), ==, 256 + 20 + 1);
  g_assert_cmpstr (gptd_bpe_get_source (byname), ==, vdir);

  g_autoptr (GptdBpe) missing = gptd_bpe_load ("nosuchvocab", &error);
  g_assert_null (missing);
  g_assert_error (error, GPTD_BPE_ERROR, GPTD_BPE_ERROR_NOT_FOUND);
  g_assert_nonnull (strstr (error->message, root));
  g_assert_nonnull (strstr (error->message, "GPTD_DATA_DIR"));
  g_clear_error (&error);

  /* A model directory: vocab.json + merges.txt; and a path to encoder.json. */
  g_autofree char *mdir = g_build_filename (root, "model", NULL);
  g_assert_cmpint (g_mkdir (mdir, 0755), ==, 0);
  g_autofree char *json = read_file (vdir, "encoder.json");
  g_autofree char *merges = read_file (vdir, "vocab.bpe");
  write_file (mdir, "vocab.json", json, -1);
  write_file (mdir, "merges.txt", merges, -1);
  g_autoptr (GptdBpe) model = gptd_bpe_load (mdir, &error);
  g_assert_no_error (error);
  g_autofree char *encpath = g_build_filename (vdir, "encoder.json", NULL);
  g_autoptr (GptdBpe) byfile = gptd_bpe_load (encpath, &error);
  g_assert_no_error (error);
  const char *text = "the cat is in the house, the end";
  g_autoptr (GArray) a = encode_ok (byname, text, -1, GPTD_BPE_SPECIAL_TEXT, GPTD_BPE_INVALID_ERROR);
  g_autoptr (GArray) b = encode_ok (model, text, -1, GPTD_BPE_SPECIAL_TEXT, GPTD_BPE_INVALID_ERROR);
  g_autoptr (GArray) c = encode_ok (byfile, text, -1, GPTD_BPE_SPECIAL_TEXT, GPTD_BPE_INVALID_ERROR);
  g_assert_cmpmem (a->data, a->len * 4, b->data, b->len * 4);
  g_assert_cmpmem (a->data, a->len * 4, c->data, c->len * 4);
  g_assert_cmpuint (a->len, <, strlen (text));

  g_autoptr (GptdBpe) nopath = gptd_bpe_load ("/nonexistent/dir", &error);
  g_assert_error (error, GPTD_BPE_ERROR, GPTD_BPE_ERROR_NOT_FOUND);
  g_clear_error (&error);

  if (old)
    g_setenv ("GPTD_DATA_DIR", old, TRUE);
  else
    g_unsetenv ("GPTD_DATA_DIR");
  rm_rf (root);
}

/* GPT-2 as a .tiktoken rank file gives the same ids, and saving either form
 * writes GPT-2's merges back (derived from the ranks for the .tiktoken form). */
static void
test_tiktoken_and_save (void)
{
  GptdBpe *gpt2 = test_bpe_gpt2 ();
  if (!gpt2)
    return;
  g_autofree char *dir = g_dir_make_tmp ("gptd-bpe-XXXXXX", NULL);
  g_autoptr (GString) tk = g_string_new (NULL);
  for (guint32 id = 0; id < 50256; id++)
    {
      gsize n;
      const guint8 *p = gptd_bpe_get_token (gpt2, id, &n);
      g_autofree char *b64 = g_base64_encode (p, n);
      g_string_append_printf (tk, "%s %u\n", b64, id);
    }
  write_file (dir, "gpt2.tiktoken", tk->str, (gssize) tk->len);
  g_autofree char *tkpath = g_build_filename (dir, "gpt2.tiktoken", NULL);
  g_autoptr (GError) error = NULL;
  g_autoptr (GptdBpe) fromtk = gptd_bpe_load (tkpath, &error);
  g_assert_no_error (error);
  g_assert_cmpuint (gptd_bpe_get_n_vocab (fromtk), ==, 50257);
  g_assert_cmpint (gptd_bpe_get_special_id (fromtk, "<|endoftext|>"), ==, 50256);

  g_autofree char *text = test_bpe_random_text (5000);
  g_autoptr (GArray) a = encode_ok (gpt2, text, -1, GPTD_BPE_SPECIAL_ALLOWED, GPTD_BPE_INVALID_ERROR);
  g_autoptr (GArray) b = encode_ok (fromtk, text, -1, GPTD_BPE_SPECIAL_ALLOWED, GPTD_BPE_INVALID_ERROR);
  g_assert_cmpmem (a->data, a->len * 4, b->data, b->len * 4);

  /* Save both; the vocab.bpe files equal OpenAI's. */
  g_autofree char *d1 = g_build_filename (dir, "saved1", NULL);
  g_autofree char *d2 = g_build_filename (dir, "saved2", NULL);
  g_assert_true (gptd_bpe_save (gpt2, d1, &error));
  g_assert_no_error (error);
  g_assert_true (gptd_bpe_save (fromtk, d2, &error));
  g_assert_no_error (error);
  g_autofree char *orig_merges = NULL;
  g_autofree char *orig_path = g_build_filename (g_getenv ("GPTD_DATA_DIR"), "gpt2", "vocab.bpe", NULL);
  g_assert_true (g_file_get_contents (orig_path, &orig_merges, NULL, NULL));
  g_autofree char *m1 = read_file (d1, "vocab.bpe");
  g_autofree char *m2 = read_file (d2, "vocab.bpe");
  g_assert_cmpstr (m1, ==, orig_merges);
  g_assert_cmpstr (m2, ==, orig_merges);

  g_autoptr (GptdBpe) reloaded = gptd_bpe_load (d2, &error);
  g_assert_no_error (error);
  g_assert_cmpuint (gptd_bpe_get_n_vocab (reloaded), ==, 50257);
  for (guint32 id = 0; id < 50257; id++)
    {
      gsize n1, n2;
      const guint8 *p1 = gptd_bpe_get_token (gpt2, id, &n1);
      const guint8 *p2 = gptd_bpe_get_token (reloaded, id, &n2);
      g_assert_cmpmem (p1, n1, p2, n2);
    }
  rm_rf (dir);
}

int
main (int argc, char **argv)
{
  g_test_init (&argc, &argv, NULL);
  g_test_add_func ("/bpe/golden/ids", test_golden_ids);
  g_test_add_func ("/bpe/golden/merge-algorithms", test_merge_algorithms);
  g_test_add_func ("/bpe/golden/data-corpus", test_data_corpus);
  g_test_add_func ("/bpe/pretok/classes", test_classes_table);
  g_test_add_func ("/bpe/pretok/pieces", test_pretok_pieces);
  g_test_add_func ("/bpe/encode/special-modes", test_special_modes);
  g_test_add_func ("/bpe/encode/invalid-utf8", test_invalid_utf8);
  g_test_add_func ("/bpe/decode/roundtrip-small", test_roundtrip_small);
  g_test_add_func ("/bpe/decode/roundtrip-gpt2", test_roundtrip_gpt2);
  g_test_add_func ("/bpe/decode/unknown-id", test_decode_unknown);
  g_test_add_func ("/bpe/decode/partial-characters", test_decoder_partial);
  g_test_add_func ("/bpe/split/small", test_split_small);
  g_test_add_func ("/bpe/split/gpt2", test_split_gpt2);
  g_test_add_func ("/bpe/vocab/bad-files", test_bad_files);
  g_test_add_func ("/bpe/vocab/truncated-gpt2", test_truncated_gpt2);
  g_test_add_func ("/bpe/vocab/names", test_names);
  g_test_add_func ("/bpe/vocab/tiktoken-and-save", test_tiktoken_and_save);
  return g_test_run ();
}
