/* tests/test-bpe-train.c: BPE training: the incremental trainer makes exactly the
 * vocabulary of the straightforward one, is deterministic, honours the size and
 * the special tokens, and what it saves loads again and round-trips text.
 */
#include "bpe/bpe-internal.h"
#include "test-bpe-util.h"
#include "../bench/tokenizer/bpe-naive-train.h"

/* A corpus with repetition (so that there is something to learn), in several
 * scripts, built from a fixed seed. */
static GPtrArray *
make_corpus (guint n_docs, guint32 seed)
{
  static const char *const words[] = {
    "the", "cat", "sat", "on", "mat", "and", "then", "there", "were", "none", "it's", "we're",
    "I'll", "don't", "hello", "world", "token", "tokens", "tokenizer", "byte", "pair", "encoding",
    "123", "4567", "3.14", "\xe4\xbd\xa0\xe5\xa5\xbd", "\xe4\xb8\x96\xe7\x95\x8c", "\xd8\xb3\xd9\x84\xd8\xa7\xd9\x85",
    "\xe0\xa4\xa8\xe0\xa4\xae\xe0\xa4\xb8\xe0\xa5\x8d\xe0\xa4\xa4\xe0\xa5\x87", "caf\xc3\xa9", "\xf0\x9f\x98\x80",
    "(x)", "a->b", "==", "  ", "\n", "\t", "<|endoftext|>",
  };
  GRand *r = g_rand_new_with_seed (seed);
  GPtrArray *docs = g_ptr_array_new_with_free_func (g_free);
  for (guint d = 0; d < n_docs; d++)
    {
      GString *s = g_string_new (NULL);
      guint n = (guint) g_rand_int_range (r, 5, 200);
      for (guint i = 0; i < n; i++)
        {
          /* Zipf-like: earlier words are more frequent. */
          guint w = (guint) g_rand_int_range (r, 0, G_N_ELEMENTS (words));
          w = (guint) g_rand_int_range (r, 0, (gint32) w + 1);
          if (i && g_rand_int_range (r, 0, 4))
            g_string_append_c (s, ' ');
          g_string_append (s, words[w]);
        }
      g_ptr_array_add (docs, g_string_free (s, FALSE));
    }
  g_rand_free (r);
  return docs;
}

static GptdBpe *
train (GPtrArray *docs, gboolean reverse, guint vocab_size)
{
  static const char *const special[] = { "<|endoftext|>", "[PAD]", NULL };
  g_autoptr (GError) error = NULL;
  g_autoptr (GptdBpeTrainer) t = gptd_bpe_trainer_new (special, &error);
  g_assert_no_error (error);
  for (guint i = 0; i < docs->len; i++)
    {
      const char *d = docs->pdata[reverse ? docs->len - 1 - i : i];
      g_assert_true (gptd_bpe_trainer_add_text (t, d, strlen (d), &error));
    }
  GptdBpe *bpe = gptd_bpe_trainer_train (t, vocab_size, &error);
  g_assert_no_error (error);
  return bpe;
}

static void
assert_same_tokens (GptdBpe *a, GptdBpe *b)
{
  g_assert_cmpuint (gptd_bpe_get_n_vocab (a), ==, gptd_bpe_get_n_vocab (b));
  for (guint32 id = 0; id < gptd_bpe_get_n_vocab (a); id++)
    {
      gsize na, nb;
      const guint8 *pa = gptd_bpe_get_token (a, id, &na);
      const guint8 *pb = gptd_bpe_get_token (b, id, &nb);
      g_assert_cmpmem (pa, na, pb, nb);
    }
}

/* The incremental trainer and the recount-everything trainer agree token for token. */
static void
test_matches_reference (void)
{
  static const guint sizes[] = { 258, 300, 420 };
  static const guint32 seeds[] = { 1, 2, 3 };
  static const char *const special[] = { "<|endoftext|>", "[PAD]", NULL };
  for (guint s = 0; s < G_N_ELEMENTS (seeds); s++)
    {
      g_autoptr (GPtrArray) docs = make_corpus (60, seeds[s]);
      g_autofree gsize *lens = g_new (gsize, docs->len);
      for (guint i = 0; i < docs->len; i++)
        lens[i] = strlen (docs->pdata[i]);
      for (guint z = 0; z < G_N_ELEMENTS (sizes); z++)
        {
          g_autoptr (GptdBpe) fast = train (docs, FALSE, sizes[z]);
          g_autoptr (GPtrArray) ref = gptd_naive_bpe_train ((const char *const *) docs->pdata, lens,
                                                             docs->len, special, sizes[z]);
          g_assert_cmpuint (gptd_bpe_get_n_vocab (fast), ==, ref->len);
          for (guint32 id = 0; id < ref->len; id++)
            {
              gsize n, rn;
              const guint8 *p = gptd_bpe_get_token (fast, id, &n);
              const guint8 *rp = g_bytes_get_data (ref->pdata[id], &rn);
              g_assert_cmpmem (p, n, rp, rn);
            }
        }
    }
}

/* The order of the documents changes nothing. */
static void
test_deterministic (void)
{
  g_autoptr (GPtrArray) docs = make_corpus (80, 7);
  g_autoptr (GptdBpe) a = train (docs, FALSE, 400);
  g_autoptr (GptdBpe) b = train (docs, TRUE, 400);
  assert_same_tokens (a, b);
}

/* The vocabulary has exactly the size asked for, the special tokens come last,
 * and no token holds a special token's bytes. */
static void
test_size_and_special (void)
{
  g_autoptr (GPtrArray) docs = make_corpus (80, 11);
  g_autoptr (GptdBpe) bpe = train (docs, FALSE, 350);
  g_assert_cmpuint (gptd_bpe_get_n_vocab (bpe), ==, 350);
  g_assert_cmpint (gptd_bpe_get_special_id (bpe, "<|endoftext|>"), ==, 348);
  g_assert_cmpint (gptd_bpe_get_special_id (bpe, "[PAD]"), ==, 349);
  for (guint32 id = 0; id < 348; id++)
    {
      gsize n;
      const guint8 *p = gptd_bpe_get_token (bpe, id, &n);
      g_assert_null (g_strstr_len ((const char *) p, (gssize) n, "|>"));
    }
  /* Ids 0-255 are the bytes in GPT-2's order: '!' first. */
  gsize n;
  const guint8 *p = gptd_bpe_get_token (bpe, 0, &n);
  g_assert_cmpmem (p, n, "!", 1);

  /* A tiny corpus runs out of pairs before the size is reached. */
  static const char *const none[] = { NULL };
  g_autoptr (GError) error = NULL;
  g_autoptr (GptdBpeTrainer) t = gptd_bpe_trainer_new (none, &error);
  g_assert_true (gptd_bpe_trainer_add_text (t, "abab abab", 9, &error));
  g_autoptr (GptdBpe) small = gptd_bpe_trainer_train (t, 1000, &error);
  g_assert_no_error (error);
  g_assert_cmpuint (gptd_bpe_get_n_vocab (small), <, 1000);
  g_assert_cmpuint (gptd_bpe_get_n_vocab (small), >, 256);
}

/* Saved and loaded again: the same tokens, and text round-trips. */
static void
test_save_reload (void)
{
  g_autoptr (GPtrArray) docs = make_corpus (100, 5);
  g_autoptr (GptdBpe) bpe = train (docs, FALSE, 500);
  g_autofree char *dir = g_dir_make_tmp ("gptd-bpe-train-XXXXXX", NULL);
  g_autofree char *sub = g_build_filename (dir, "vocab", NULL);
  g_autoptr (GError) error = NULL;
  g_assert_true (gptd_bpe_save (bpe, sub, &error));
  g_assert_no_error (error);
  g_autoptr (GptdBpe) back = gptd_bpe_load (sub, &error);
  g_assert_no_error (error);
  assert_same_tokens (bpe, back);
  g_assert_cmpint (gptd_bpe_get_special_id (back, "[PAD]"), ==, 499);

  GptdBpeEncodeOptions opts = { .special = GPTD_BPE_SPECIAL_ALLOWED };
  for (guint i = 0; i < docs->len; i++)
    {
      const char *d = docs->pdata[i];
      g_autoptr (GArray) a = g_array_new (FALSE, FALSE, sizeof (guint32));
      g_autoptr (GArray) b = g_array_new (FALSE, FALSE, sizeof (guint32));
      g_assert_true (gptd_bpe_encode (bpe, d, strlen (d), &opts, a, &error));
      g_assert_true (gptd_bpe_encode (back, d, strlen (d), &opts, b, &error));
      g_assert_cmpmem (a->data, a->len * 4, b->data, b->len * 4);
      g_assert_cmpuint (a->len, <, strlen (d) / 2 + 2);
      g_autoptr (GString) out = g_string_new (NULL);
      g_assert_true (gptd_bpe_decode (back, (const guint32 *) (void *) b->data, b->len, out, &error));
      g_assert_cmpstr (out->str, ==, d);
    }
  for (int round = 0; round < 100; round++)
    {
      g_autofree char *text = test_bpe_random_text (200);
      g_autoptr (GArray) ids = g_array_new (FALSE, FALSE, sizeof (guint32));
      g_assert_true (gptd_bpe_encode (back, text, strlen (text), &opts, ids, &error));
      g_autoptr (GString) out = g_string_new (NULL);
      g_assert_true (gptd_bpe_decode (back, (const guint32 *) (void *) ids->data, ids->len, out, &error));
      g_assert_cmpstr (out->str, ==, text);
    }
  g_autofree char *jp = g_build_filename (sub, "encoder.json", NULL);
  g_autofree char *mp = g_build_filename (sub, "vocab.bpe", NULL);
  g_unlink (jp);
  g_unlink (mp);
  g_rmdir (sub);
  g_rmdir (dir);
}

/* Training on the-verdict.txt with GPT-2's special token. */
static void
test_verdict (void)
{
  g_autofree char *path = test_bpe_data_file ("the-verdict.txt");
  if (!path)
    return;
  g_autofree char *text = NULL;
  gsize len;
  g_assert_true (g_file_get_contents (path, &text, &len, NULL));
  static const char *const special[] = { "<|endoftext|>", NULL };
  g_autoptr (GError) error = NULL;
  g_autoptr (GptdBpeTrainer) t = gptd_bpe_trainer_new (special, &error);
  g_assert_true (gptd_bpe_trainer_add_text (t, text, len, &error));
  g_autoptr (GptdBpe) bpe = gptd_bpe_trainer_train (t, 600, &error);
  g_assert_no_error (error);
  g_autoptr (GPtrArray) ref = gptd_naive_bpe_train ((const char *const[]) { text }, &len, 1, special, 600);
  g_assert_cmpuint (ref->len, ==, 600);
  for (guint32 id = 0; id < 600; id++)
    {
      gsize n, rn;
      const guint8 *p = gptd_bpe_get_token (bpe, id, &n);
      const guint8 *rp = g_bytes_get_data (ref->pdata[id], &rn);
      g_assert_cmpmem (p, n, rp, rn);
    }
  GptdBpeEncodeOptions opts = { .special = GPTD_BPE_SPECIAL_TEXT };
  g_autoptr (GArray) ids = g_array_new (FALSE, FALSE, sizeof (guint32));
  g_assert_true (gptd_bpe_encode (bpe, text, len, &opts, ids, &error));
  g_test_message ("the-verdict.txt: %u tokens with a 600-token vocabulary", ids->len);
  g_assert_cmpuint (ids->len, <, len / 2);
}

static void
test_errors (void)
{
  g_autoptr (GError) error = NULL;
  static const char *const bad1[] = { "EOT", NULL };
  static const char *const bad2[] = { "<|a|>", "<|a|>", NULL };
  g_assert_null (gptd_bpe_trainer_new (bad1, &error));
  g_assert_error (error, GPTD_BPE_ERROR, GPTD_BPE_ERROR_TRAIN);
  g_clear_error (&error);
  g_assert_null (gptd_bpe_trainer_new (bad2, &error));
  g_assert_error (error, GPTD_BPE_ERROR, GPTD_BPE_ERROR_TRAIN);
  g_clear_error (&error);

  static const char *const special[] = { "<|endoftext|>", NULL };
  g_autoptr (GptdBpeTrainer) t = gptd_bpe_trainer_new (special, &error);
  g_assert_false (gptd_bpe_trainer_add_text (t, "ok \xff", 4, &error));
  g_assert_error (error, GPTD_BPE_ERROR, GPTD_BPE_ERROR_INVALID_UTF8);
  g_assert_nonnull (strstr (error->message, "byte offset 3"));
  g_clear_error (&error);
  g_assert_null (gptd_bpe_trainer_train (t, 256, &error));
  g_assert_error (error, GPTD_BPE_ERROR, GPTD_BPE_ERROR_TRAIN);
}

int
main (int argc, char **argv)
{
  g_test_init (&argc, &argv, NULL);
  g_test_add_func ("/bpe/train/matches-reference", test_matches_reference);
  g_test_add_func ("/bpe/train/deterministic", test_deterministic);
  g_test_add_func ("/bpe/train/size-and-special", test_size_and_special);
  g_test_add_func ("/bpe/train/save-reload", test_save_reload);
  g_test_add_func ("/bpe/train/the-verdict", test_verdict);
  g_test_add_func ("/bpe/train/errors", test_errors);
  return g_test_run ();
}
