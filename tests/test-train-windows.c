/* test-train-windows.c: the sliding-window data set of token-windows: window
 * counts, splits, inputs and shifted targets, batching with and without the last
 * partial batch, the seeded shuffle (a pure function of its key, the same from any
 * start batch) and the memory-mapped token file. Every expectation is computed
 * here by a direct transcription of the book's GPTDatasetV1 loop. */
#include <string.h>
#include <glib.h>
#include <glib/gstdio.h>
#include <gptd/stage.h>

#include <gptd/windows.h>

/* The book's range(0, n - ctx, stride), counted by stepping. */
static guint64
reference_count (guint64 n, guint64 ctx, guint64 stride)
{
  guint64 c = 0;
  for (gint64 i = 0; i < (gint64) n - (gint64) ctx; i += stride)
    c++;
  return c;
}

static void
test_count (void)
{
  for (guint64 n = 0; n < 40; n++)
    for (guint64 ctx = 1; ctx < 10; ctx++)
      for (guint64 stride = 1; stride < 12; stride++)
        g_assert_cmpuint (gptd__windows_count (n, ctx, stride), ==,
                          reference_count (n, ctx, stride));
  /* The-verdict as in the book: 5145 tokens, 90% train. */
  g_assert_cmpuint (gptd__windows_count (4630, 256, 256), ==, 18);
  g_assert_cmpuint (gptd__windows_n_batches (18, 2, TRUE), ==, 9);
  g_assert_cmpuint (gptd__windows_n_batches (7, 2, TRUE), ==, 3);
  g_assert_cmpuint (gptd__windows_n_batches (7, 2, FALSE), ==, 4);
  g_assert_cmpuint (gptd__windows_n_batches (0, 2, FALSE), ==, 0);
}

static void
test_split_bounds (void)
{
  guint64 b[4];
  double f90[] = { 0.9, 0.1 };
  gptd__windows_split_bounds (5145, f90, 2, b);
  g_assert_cmpuint (b[0], ==, 0);
  g_assert_cmpuint (b[1], ==, 4630); /* int(0.9 * 5145) */
  g_assert_cmpuint (b[2], ==, 5145);

  double f3[] = { 0.7, 0.2, 0.1 };
  gptd__windows_split_bounds (1000, f3, 3, b);
  g_assert_cmpuint (b[1], ==, 700);
  g_assert_cmpuint (b[2], ==, 900);
  g_assert_cmpuint (b[3], ==, 1000);

  double fhalf[] = { 0.5 };
  gptd__windows_split_bounds (101, fhalf, 1, b);
  g_assert_cmpuint (b[1], ==, 50);

  g_assert_cmpint (gptd__windows_split_lookup ("train"), ==, 0);
  g_assert_cmpint (gptd__windows_split_lookup ("val"), ==, 1);
  g_assert_cmpint (gptd__windows_split_lookup ("validation"), ==, 1);
  g_assert_cmpint (gptd__windows_split_lookup ("test"), ==, 2);
  g_assert_cmpint (gptd__windows_split_lookup ("dev"), ==, -1);
}

static GptdWindowsStore *
make_store (guint64 n, guint64 threshold, const char *prefix, guint32 vocab)
{
  GptdWindowsStore *store = gptd__windows_store_new (threshold, prefix);
  g_autoptr (GError) error = NULL;
  /* Appended in uneven chunks, as a tokenizer sends them. */
  for (guint64 i = 0; i < n;)
    {
      guint32 chunk[37];
      guint k = 0;
      for (; k < 1 + (i % 37) && i < n; k++, i++)
        chunk[k] = (guint32) ((i * 7919 + 13) % vocab);
      g_assert_true (gptd__windows_store_append (store, chunk, k, vocab, "test", &error));
      g_assert_no_error (error);
    }
  g_assert_true (gptd__windows_store_finish (store, &error));
  g_assert_no_error (error);
  return store;
}

static gint32
token_at (guint64 i, guint32 vocab)
{
  return (gint32) ((i * 7919 + 13) % vocab);
}

/* Checks every batch of @split in @order against the reference windows. */
static void
check_batches (GptdWindowsSet *set, GptdWindowsStore *store, guint split,
               const guint64 *order, guint32 vocab)
{
  const GptdWindowsSplit *s = &set->splits[split];
  guint64 ctx = set->context_length;
  g_autofree gint32 *in = g_new (gint32, set->batch_size * ctx);
  g_autofree gint32 *tg = g_new (gint32, set->batch_size * ctx);
  guint64 seen = 0;

  for (guint64 b = 0; b < s->n_batches; b++)
    {
      guint rows = gptd__windows_set_fill (set, store, split, order, b, in, tg);
      g_assert_cmpuint (rows, >=, 1);
      g_assert_cmpuint (rows, <=, set->batch_size);
      if (b + 1 < s->n_batches || s->drop_last)
        g_assert_cmpuint (rows, ==, set->batch_size);
      for (guint r = 0; r < rows; r++)
        {
          guint64 w = order[b * set->batch_size + r];
          guint64 start = s->begin + w * set->stride;
          /* input = ids[i:i+ctx], target = ids[i+1:i+ctx+1], all inside the split */
          g_assert_cmpuint (start + ctx + 1, <=, s->end);
          for (guint64 t = 0; t < ctx; t++)
            {
              g_assert_cmpint (in[r * ctx + t], ==, token_at (start + t, vocab));
              g_assert_cmpint (tg[r * ctx + t], ==, token_at (start + t + 1, vocab));
            }
        }
      seen += rows;
    }
  if (s->drop_last)
    g_assert_cmpuint (seen, ==, s->n_windows / set->batch_size * set->batch_size);
  else
    g_assert_cmpuint (seen, ==, s->n_windows);
}

static void
test_windows_in_order (void)
{
  g_autoptr (GptdWindowsStore) store = make_store (1000, 0, NULL, 500);
  double fractions[] = { 0.8, 0.2 };
  GptdWindowsSet set;

  gptd__windows_set_init (&set, 1000, 16, 5, 3, fractions, 2, TRUE);
  g_assert_cmpuint (set.splits[0].begin, ==, 0);
  g_assert_cmpuint (set.splits[0].end, ==, 800);
  g_assert_cmpuint (set.splits[0].n_windows, ==, reference_count (800, 16, 5));
  g_assert_cmpuint (set.splits[0].n_batches, ==, reference_count (800, 16, 5) / 3);
  g_assert_true (set.splits[0].drop_last);
  g_assert_false (set.splits[1].drop_last);
  g_assert_cmpuint (set.splits[1].n_windows, ==, reference_count (200, 16, 5));
  g_assert_cmpuint (set.splits[1].n_batches, ==, (reference_count (200, 16, 5) + 2) / 3);

  for (guint k = 0; k < 2; k++)
    {
      const guint64 *order = gptd__windows_set_order (&set, k, FALSE, 0);
      for (guint64 w = 0; w < set.splits[k].n_windows; w++)
        g_assert_cmpuint (order[w], ==, w);
      check_batches (&set, store, k, order, 500);
    }
  gptd__windows_set_clear (&set);
}

static void
test_windows_shuffled (void)
{
  g_autoptr (GptdWindowsStore) store = make_store (2000, 0, NULL, 50257);
  double fractions[] = { 0.9, 0.1 };
  GptdWindowsSet set;
  guint64 key = gptd__windows_shuffle_key (123, 7, 3, 0);

  gptd__windows_set_init (&set, 2000, 32, 32, 4, fractions, 2, TRUE);
  guint64 n = set.splits[0].n_windows;
  g_autofree guint64 *copy = g_new (guint64, n);
  memcpy (copy, gptd__windows_set_order (&set, 0, TRUE, key), n * sizeof (guint64));

  /* A permutation: every window exactly once, and not the identity. */
  g_autofree gboolean *hit = g_new0 (gboolean, n);
  gboolean identity = TRUE;
  for (guint64 i = 0; i < n; i++)
    {
      g_assert_cmpuint (copy[i], <, n);
      g_assert_false (hit[copy[i]]);
      hit[copy[i]] = TRUE;
      identity = identity && copy[i] == i;
    }
  g_assert_false (identity);
  check_batches (&set, store, 0, copy, 50257);

  /* Pure function of the key: recomputed from scratch, the same order. */
  g_autofree guint64 *again = g_new (guint64, n);
  gptd__windows_permutation (again, n, TRUE, gptd__windows_shuffle_key (123, 7, 3, 0));
  g_assert_cmpmem (again, n * sizeof (guint64), copy, n * sizeof (guint64));

  /* Another epoch, seed or split: another order. */
  gptd__windows_permutation (again, n, TRUE, gptd__windows_shuffle_key (123, 7, 4, 0));
  g_assert_true (memcmp (again, copy, n * sizeof (guint64)) != 0);
  gptd__windows_permutation (again, n, TRUE, gptd__windows_shuffle_key (124, 7, 3, 0));
  g_assert_true (memcmp (again, copy, n * sizeof (guint64)) != 0);
  gptd__windows_permutation (again, n, TRUE, gptd__windows_shuffle_key (123, 8, 3, 0));
  g_assert_true (memcmp (again, copy, n * sizeof (guint64)) != 0);
  gptd__windows_set_clear (&set);
}

/* The shuffle must never change between versions: a resumed run made by a newer
 * build must see the batches the interrupted one would have. These values were
 * computed once by this implementation (SplitMix64, Fisher-Yates from the top). */
static void
test_shuffle_pinned (void)
{
  guint64 perm[10];
  /* Reference: the algorithm written out again here. */
  guint64 key = gptd__windows_shuffle_key (123, 0, 0, 0);
  guint64 ref[10];
  for (int i = 0; i < 10; i++)
    ref[i] = i;
  for (int i = 9; i >= 1; i--)
    {
      guint64 z = key + (guint64) (i + 1) * G_GUINT64_CONSTANT (0x9e3779b97f4a7c15);
      z = (z ^ (z >> 30)) * G_GUINT64_CONSTANT (0xbf58476d1ce4e5b9);
      z = (z ^ (z >> 27)) * G_GUINT64_CONSTANT (0x94d049bb133111eb);
      z ^= z >> 31;
      guint64 j = (guint64) (((unsigned __int128) z * (guint64) (i + 1)) >> 64);
      guint64 t = ref[i];
      ref[i] = ref[j];
      ref[j] = t;
    }
  gptd__windows_permutation (perm, 10, TRUE, key);
  g_assert_cmpmem (perm, sizeof perm, ref, sizeof ref);

  static const guint64 pinned[10] = { 8, 3, 6, 7, 0, 9, 4, 1, 5, 2 };
  g_assert_cmpmem (perm, sizeof perm, pinned, sizeof pinned);
}

static void
test_mapped_store (void)
{
  g_autofree char *dir = g_dir_make_tmp ("gptd-windows-XXXXXX", NULL);
  g_autofree char *prefix = g_build_filename (dir, "tokens-w", NULL);
  g_autofree char *u16 = g_strconcat (prefix, ".u16", NULL);
  g_autofree char *u32 = g_strconcat (prefix, ".u32", NULL);

  {
    g_autoptr (GptdWindowsStore) store = make_store (5000, 100, prefix, 50257);
    g_assert_true (gptd__windows_store_is_mapped (store));
    g_assert_cmpuint (gptd__windows_store_width (store), ==, 2);
    g_assert_cmpstr (gptd__windows_store_path (store), ==, u16);
    g_assert_cmpuint (gptd__windows_store_length (store), ==, 5000);
    GStatBuf st;
    g_assert_cmpint (g_stat (u16, &st), ==, 0);
    g_assert_cmpint (st.st_size, ==, 10000);

    /* The same batches as from memory. */
    g_autoptr (GptdWindowsStore) ram = make_store (5000, 0, NULL, 50257);
    double fractions[] = { 0.9, 0.1 };
    GptdWindowsSet set;
    gptd__windows_set_init (&set, 5000, 64, 48, 4, fractions, 2, TRUE);
    const guint64 *order = gptd__windows_set_order (&set, 0, TRUE, 99);
    check_batches (&set, store, 0, order, 50257);
    gint32 a[64 * 4], b[64 * 4], c[64 * 4], d[64 * 4];
    gptd__windows_set_fill (&set, store, 0, order, 2, a, b);
    gptd__windows_set_fill (&set, ram, 0, order, 2, c, d);
    g_assert_cmpmem (a, sizeof a, c, sizeof c);
    g_assert_cmpmem (b, sizeof b, d, sizeof d);
    gptd__windows_set_clear (&set);
    g_assert_false (gptd__windows_store_is_mapped (ram));
  }
  {
    /* A vocabulary past 65536 ids needs 32-bit ids. */
    g_autoptr (GptdWindowsStore) store = make_store (3000, 100, prefix, 100000);
    g_assert_cmpuint (gptd__windows_store_width (store), ==, 4);
    g_assert_cmpstr (gptd__windows_store_path (store), ==, u32);
    gint32 out[50];
    gptd__windows_store_read (store, 2900, 50, out);
    for (int i = 0; i < 50; i++)
      g_assert_cmpint (out[i], ==, token_at (2900 + i, 100000));
  }
  g_unlink (u16);
  g_unlink (u32);
  g_rmdir (dir);
}

static void
test_bad_ids (void)
{
  g_autoptr (GptdWindowsStore) store = gptd__windows_store_new (0, NULL);
  g_autoptr (GError) error = NULL;
  guint32 ids[] = { 1, 2, 300 };

  g_assert_false (gptd__windows_store_append (store, ids, 3, 256, "source a.txt", &error));
  g_assert_error (error, GPTD_STAGE_ERROR, GPTD_STAGE_ERROR_INPUT);
  g_assert_nonnull (strstr (error->message, "a.txt"));
  g_assert_nonnull (strstr (error->message, "300"));
}

int
main (int argc, char **argv)
{
  g_test_init (&argc, &argv, NULL);
  g_test_add_func ("/train/windows/count", test_count);
  g_test_add_func ("/train/windows/split-bounds", test_split_bounds);
  g_test_add_func ("/train/windows/in-order", test_windows_in_order);
  g_test_add_func ("/train/windows/shuffled", test_windows_shuffled);
  g_test_add_func ("/train/windows/shuffle-pinned", test_shuffle_pinned);
  g_test_add_func ("/train/windows/mapped", test_mapped_store);
  g_test_add_func ("/train/windows/bad-ids", test_bad_ids);
  return g_test_run ();
}
