/* bench/tokenizer/bpe-naive-train.c: the straightforward BPE trainer (see the
 * header): count words, then per merge recount all pairs, pick the best, rewrite
 * all words.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE 1
#endif
#include "bpe-naive-train.h"

#include <string.h>

#include "bpe/bpe-internal.h"

typedef struct {
  GArray *sym;   /* guint32 */
  guint64 count;
} Word;

static void
count_words (GHashTable *words, const guint8 *s, gsize len)
{
  gsize pos = 0;
  while (pos < len)
    {
      gsize e = gptd__bpe_pretok_next (s, pos, len);
      GBytes *key = g_bytes_new (s + pos, e - pos);
      gpointer old = g_hash_table_lookup (words, key);
      g_hash_table_replace (words, key, GSIZE_TO_POINTER (GPOINTER_TO_SIZE (old) + 1));
      pos = e;
    }
}

GPtrArray *
gptd_naive_bpe_train (const char *const *texts,
                      const gsize        *lens,
                      guint               n_texts,
                      const char *const  *special,
                      guint               vocab_size)
{
  guint n_special = special ? g_strv_length ((char **) special) : 0;
  gptd__bpe_classes_init ();

  /* Word counts, with the special tokens cut out. */
  GHashTable *wc = g_hash_table_new_full (g_bytes_hash, g_bytes_equal, (GDestroyNotify) g_bytes_unref, NULL);
  for (guint t = 0; t < n_texts; t++)
    {
      const guint8 *s = (const guint8 *) texts[t];
      gsize len = lens[t], pos = 0;
      while (pos < len)
        {
          gsize at = len, sl = 0;
          for (guint k = 0; k < n_special; k++)
            {
              const guint8 *hit = memmem (s + pos, len - pos, special[k], strlen (special[k]));
              if (hit && (gsize) (hit - s) < at)
                {
                  at = (gsize) (hit - s);
                  sl = strlen (special[k]);
                }
            }
          count_words (wc, s + pos, at - pos);
          pos = at + sl;
        }
    }

  /* Tokens: the bytes in GPT-2's order. */
  GPtrArray *tokens = g_ptr_array_new_with_free_func ((GDestroyNotify) g_bytes_unref);
  guint32 byte_id[256];
  for (int pass = 0; pass < 2; pass++)
    for (int b = 0; b < 256; b++)
      if ((gptd__bpe_byte_to_unicode[b] == (gunichar) b) == (pass == 0))
        {
          guint8 c = (guint8) b;
          byte_id[b] = tokens->len;
          g_ptr_array_add (tokens, g_bytes_new (&c, 1));
        }

  GArray *words = g_array_new (FALSE, FALSE, sizeof (Word));
  GHashTableIter it;
  gpointer k, v;
  g_hash_table_iter_init (&it, wc);
  while (g_hash_table_iter_next (&it, &k, &v))
    {
      gsize n;
      const guint8 *p = g_bytes_get_data (k, &n);
      Word w = { g_array_sized_new (FALSE, FALSE, sizeof (guint32), (guint) n), GPOINTER_TO_SIZE (v) };
      for (gsize i = 0; i < n; i++)
        g_array_append_val (w.sym, byte_id[p[i]]);
      g_array_append_val (words, w);
    }
  g_hash_table_unref (wc);

  GHashTable *pairs = g_hash_table_new_full (g_int64_hash, g_int64_equal, g_free, g_free);
  while (tokens->len + n_special < vocab_size)
    {
      /* Count every pair of every word. */
      g_hash_table_remove_all (pairs);
      for (guint i = 0; i < words->len; i++)
        {
          Word *w = &g_array_index (words, Word, i);
          for (guint j = 0; j + 1 < w->sym->len; j++)
            {
              gint64 key = (gint64) (((guint64) g_array_index (w->sym, guint32, j) << 32)
                                     | g_array_index (w->sym, guint32, j + 1));
              guint64 *c = g_hash_table_lookup (pairs, &key);
              if (!c)
                {
                  c = g_new0 (guint64, 1);
                  g_hash_table_insert (pairs, g_memdup2 (&key, sizeof key), c);
                }
              *c += w->count;
            }
        }
      guint64 best = 0, best_key = G_MAXUINT64;
      g_hash_table_iter_init (&it, pairs);
      while (g_hash_table_iter_next (&it, &k, &v))
        {
          guint64 key = (guint64) * (gint64 *) k, c = *(guint64 *) v;
          if (c > best || (c == best && key < best_key))
            {
              best = c;
              best_key = key;
            }
        }
      if (best < 2)
        break;
      guint32 a = (guint32) (best_key >> 32), b = (guint32) best_key;

      /* The merged token, new or already made by another merge. */
      gsize na, nb;
      const guint8 *pa = g_bytes_get_data (tokens->pdata[a], &na);
      const guint8 *pb = g_bytes_get_data (tokens->pdata[b], &nb);
      guint8 *cat = g_malloc (na + nb);
      memcpy (cat, pa, na);
      memcpy (cat + na, pb, nb);
      guint32 c = tokens->len;
      for (guint i = 0; i < tokens->len; i++)
        {
          gsize n;
          const guint8 *p = g_bytes_get_data (tokens->pdata[i], &n);
          if (n == na + nb && memcmp (p, cat, n) == 0)
            c = i;
        }
      if (c == tokens->len)
        g_ptr_array_add (tokens, g_bytes_new_take (cat, na + nb));
      else
        g_free (cat);

      /* Rewrite every word. */
      for (guint i = 0; i < words->len; i++)
        {
          GArray *s = g_array_index (words, Word, i).sym;
          guint out = 0;
          for (guint j = 0; j < s->len; j++)
            {
              guint32 x = g_array_index (s, guint32, j);
              if (j + 1 < s->len && x == a && g_array_index (s, guint32, j + 1) == b)
                {
                  x = c;
                  j++;
                }
              g_array_index (s, guint32, out++) = x;
            }
          g_array_set_size (s, out);
        }
    }
  g_hash_table_unref (pairs);
  for (guint i = 0; i < words->len; i++)
    g_array_free (g_array_index (words, Word, i).sym, TRUE);
  g_array_free (words, TRUE);
  for (guint i = 0; i < n_special; i++)
    g_ptr_array_add (tokens, g_bytes_new (special[i], strlen (special[i])));
  return tokens;
}
