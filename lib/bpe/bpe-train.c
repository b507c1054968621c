/* lib/bpe/bpe-train.c: training a byte-level BPE vocabulary.
 *
 * The text is cut into pieces by the GPT-2 pre-tokenizer and each distinct
 * piece ("word") is counted. Training then repeats: take the most frequent
 * adjacent pair of symbols (ties: smaller left id, then smaller right id), give
 * the merged bytes the next id, and rewrite the words that hold the pair. Pair
 * counts are kept up to date incrementally: only the words in the merged pair's
 * occurrence list are visited, and each visited word adjusts the counts of the
 * pairs it loses and gains. A max-heap with lazy invalidation picks the next pair.
 */
#ifdef HAVE_CONFIG_H
#include "config.h"
#endif
#ifndef _GNU_SOURCE
#define _GNU_SOURCE 1
#endif

#include "bpe/bpe-internal.h"

/* ------------------------------------------------------------------------ */
/* Word counting                                                              */

typedef struct {
  guint64 hash;
  guint32 off;     /* in the key arena */
  guint32 len;
  guint64 count;
} WordSlot;

struct _GptdBpeTrainer {
  GptdBpeSpecial *special;
  guint           n_special;
  GByteArray     *keys;
  WordSlot       *slots;
  guint32         mask;
  guint32         n_words;
};

GptdBpeTrainer *
gptd_bpe_trainer_new (const char *const *special, GError **error)
{
  guint n = special ? g_strv_length ((char **) special) : 0;
  for (guint i = 0; i < n; i++)
    {
      gsize len = strlen (special[i]);
      if (!gptd__bpe_special_form_ok (special[i], len) || !g_utf8_validate (special[i], (gssize) len, NULL))
        {
          g_set_error (error, GPTD_BPE_ERROR, GPTD_BPE_ERROR_TRAIN,
                       "special token \"%s\" must be UTF-8 of the form <|...|> or [...]", special[i]);
          return NULL;
        }
      for (guint k = 0; k < i; k++)
        if (strcmp (special[k], special[i]) == 0)
          {
            g_set_error (error, GPTD_BPE_ERROR, GPTD_BPE_ERROR_TRAIN,
                         "special token \"%s\" is given twice", special[i]);
            return NULL;
          }
    }
  GptdBpeTrainer *t = g_new0 (GptdBpeTrainer, 1);
  t->n_special = n;
  t->special = g_new0 (GptdBpeSpecial, n + 1);
  for (guint i = 0; i < n; i++)
    {
      t->special[i].text = g_strdup (special[i]);
      t->special[i].len = strlen (special[i]);
    }
  t->keys = g_byte_array_new ();
  t->mask = 1023;
  t->slots = g_new0 (WordSlot, t->mask + 1);
  return t;
}

void
gptd_bpe_trainer_free (GptdBpeTrainer *trainer)
{
  if (!trainer)
    return;
  for (guint i = 0; i < trainer->n_special; i++)
    g_free (trainer->special[i].text);
  g_free (trainer->special);
  g_byte_array_unref (trainer->keys);
  g_free (trainer->slots);
  g_free (trainer);
}

static void
word_grow (GptdBpeTrainer *t)
{
  guint32 cap = (t->mask + 1) * 2;
  WordSlot *slots = g_new0 (WordSlot, cap);
  for (guint32 i = 0; i <= t->mask; i++)
    {
      WordSlot *s = &t->slots[i];
      if (s->count == 0)
        continue;
      guint32 j = (guint32) s->hash & (cap - 1);
      while (slots[j].count != 0)
        j = (j + 1) & (cap - 1);
      slots[j] = *s;
    }
  g_free (t->slots);
  t->slots = slots;
  t->mask = cap - 1;
}

static void
word_add (GptdBpeTrainer *t, const guint8 *p, gsize n)
{
  guint64 h = gptd__bpe_hash_bytes (p, n);
  guint32 i = (guint32) h & t->mask;
  for (;;)
    {
      WordSlot *s = &t->slots[i];
      if (s->count == 0)
        break;
      if (s->hash == h && s->len == n && memcmp (t->keys->data + s->off, p, n) == 0)
        {
          s->count++;
          return;
        }
      i = (i + 1) & t->mask;
    }
  WordSlot *s = &t->slots[i];
  s->hash = h;
  s->off = t->keys->len;
  s->len = (guint32) n;
  s->count = 1;
  g_byte_array_append (t->keys, p, (guint) n);
  if (++t->n_words * 2 > t->mask)
    word_grow (t);
}

static void
add_ordinary (GptdBpeTrainer *t, const guint8 *s, gsize len)
{
  gsize pos = 0;
  while (pos < len)
    {
      gsize e = gptd__bpe_pretok_next (s, pos, len);
      word_add (t, s + pos, e - pos);
      pos = e;
    }
}

gboolean
gptd_bpe_trainer_add_text (GptdBpeTrainer *trainer,
                           const char     *text,
                           gsize           len,
                           GError        **error)
{
  g_return_val_if_fail (trainer != NULL, FALSE);
  g_return_val_if_fail (text != NULL || len == 0, FALSE);
  const guint8 *s = (const guint8 *) text;
  gsize bad = gptd__bpe_utf8_find_invalid (s, len);
  if (bad < len)
    {
      g_set_error (error, GPTD_BPE_ERROR, GPTD_BPE_ERROR_INVALID_UTF8,
                   "invalid UTF-8 at byte offset %" G_GSIZE_FORMAT " (byte 0x%02x)", bad, s[bad]);
      return FALSE;
    }
  gptd__bpe_classes_init ();
  gsize pos = 0;
  while (pos < len)
    {
      /* The next special token, if any. */
      gsize at = len, slen = 0;
      for (guint k = 0; k < trainer->n_special; k++)
        {
          const guint8 *hit = memmem (s + pos, len - pos, trainer->special[k].text, trainer->special[k].len);
          if (hit && (gsize) (hit - s) < at)
            {
              at = (gsize) (hit - s);
              slen = trainer->special[k].len;
            }
        }
      add_ordinary (trainer, s + pos, at - pos);
      pos = at + slen;
    }
  return TRUE;
}

/* ------------------------------------------------------------------------ */
/* Training                                                                   */

/* GPT-2's order of the byte tokens: printable bytes first. */
static void
byte_order (guint8 order[256])
{
  int n = 0;
  for (int b = 0; b < 256; b++)
    if (gptd__bpe_byte_to_unicode[b] == (gunichar) b)
      order[n++] = (guint8) b;
  for (int b = 0; b < 256; b++)
    if (gptd__bpe_byte_to_unicode[b] != (gunichar) b)
      order[n++] = (guint8) b;
}

typedef struct {
  guint64 key;     /* left << 32 | right; G_MAXUINT64 when empty */
  guint32 index;   /* into the pair arrays */
} PairSlot;

typedef struct {
  guint64 count;
  guint64 key;
} HeapEntry;

typedef struct {
  /* words */
  guint32  n_words;
  guint32 *sym;        /* symbols of all words */
  guint32 *word_off;
  guint32 *word_len;   /* current number of symbols */
  guint64 *word_count;
  /* pairs */
  PairSlot *slots;
  guint32   mask;
  guint32   n_pairs;
  guint64  *pair_count;
  GArray  **pair_where; /* word indices (may be stale or repeated) */
  guint32  *pair_stamp; /* merge step that last marked the pair */
  guint64  *pair_key;
  guint32   pair_cap;
  guint32   stamp;
  GArray   *dirty;      /* pairs marked in this step */
  /* heap */
  HeapEntry *heap;
  gsize      heap_len, heap_cap;
} Train;

static inline gboolean
heap_before (const HeapEntry *a, const HeapEntry *b)
{
  if (a->count != b->count)
    return a->count > b->count;
  return a->key < b->key;
}

static void
heap_push (Train *tr, guint64 count, guint64 key)
{
  if (tr->heap_len == tr->heap_cap)
    {
      tr->heap_cap = tr->heap_cap ? tr->heap_cap * 2 : 1024;
      tr->heap = g_renew (HeapEntry, tr->heap, tr->heap_cap);
    }
  HeapEntry v = { count, key };
  gsize i = tr->heap_len++;
  while (i > 0)
    {
      gsize parent = (i - 1) / 2;
      if (!heap_before (&v, &tr->heap[parent]))
        break;
      tr->heap[i] = tr->heap[parent];
      i = parent;
    }
  tr->heap[i] = v;
}

static HeapEntry
heap_pop (Train *tr)
{
  HeapEntry top = tr->heap[0];
  HeapEntry v = tr->heap[--tr->heap_len];
  gsize i = 0, n = tr->heap_len;
  for (;;)
    {
      gsize c = 2 * i + 1;
      if (c >= n)
        break;
      if (c + 1 < n && heap_before (&tr->heap[c + 1], &tr->heap[c]))
        c++;
      if (!heap_before (&tr->heap[c], &v))
        break;
      tr->heap[i] = tr->heap[c];
      i = c;
    }
  if (n > 0)
    tr->heap[i] = v;
  return top;
}

static void pair_grow (Train *tr);

/* Returns the index of pair key, creating it when create. */
static guint32
pair_find (Train *tr, guint64 key, gboolean create)
{
  guint32 i = (guint32) ((key * 0x9E3779B97F4A7C15ull) >> 32) & tr->mask;
  for (;;)
    {
      PairSlot *s = &tr->slots[i];
      if (s->key == key)
        return s->index;
      if (s->key == G_MAXUINT64)
        break;
      i = (i + 1) & tr->mask;
    }
  if (!create)
    return G_MAXUINT32;
  if (tr->n_pairs == tr->pair_cap)
    {
      tr->pair_cap = tr->pair_cap ? tr->pair_cap * 2 : 4096;
      tr->pair_count = g_renew (guint64, tr->pair_count, tr->pair_cap);
      tr->pair_where = g_renew (GArray *, tr->pair_where, tr->pair_cap);
      tr->pair_stamp = g_renew (guint32, tr->pair_stamp, tr->pair_cap);
      tr->pair_key = g_renew (guint64, tr->pair_key, tr->pair_cap);
    }
  guint32 idx = tr->n_pairs++;
  tr->pair_count[idx] = 0;
  tr->pair_where[idx] = NULL;
  tr->pair_stamp[idx] = G_MAXUINT32;
  tr->pair_key[idx] = key;
  tr->slots[i].key = key;
  tr->slots[i].index = idx;
  if (tr->n_pairs * 2 > tr->mask)
    pair_grow (tr);
  return idx;
}

static void
pair_grow (Train *tr)
{
  guint32 cap = (tr->mask + 1) * 2;
  PairSlot *slots = g_new (PairSlot, cap);
  memset (slots, 0xff, sizeof (PairSlot) * cap);
  for (guint32 i = 0; i <= tr->mask; i++)
    {
      if (tr->slots[i].key == G_MAXUINT64)
        continue;
      guint32 j = (guint32) ((tr->slots[i].key * 0x9E3779B97F4A7C15ull) >> 32) & (cap - 1);
      while (slots[j].key != G_MAXUINT64)
        j = (j + 1) & (cap - 1);
      slots[j] = tr->slots[i];
    }
  g_free (tr->slots);
  tr->slots = slots;
  tr->mask = cap - 1;
}

/* Adds delta occurrences of pair (a, b) in word w. A pair that w did not hold
 * before (track) gets w in its occurrence list and is marked for the heap. */
static void
pair_add (Train *tr, guint32 a, guint32 b, gint64 delta, guint32 w, gboolean track)
{
  guint64 key = ((guint64) a << 32) | b;
  guint32 idx = pair_find (tr, key, delta > 0);
  if (idx == G_MAXUINT32)
    return;
  tr->pair_count[idx] = (guint64) ((gint64) tr->pair_count[idx] + delta);
  if (track)
    {
      if (!tr->pair_where[idx])
        tr->pair_where[idx] = g_array_new (FALSE, FALSE, sizeof (guint32));
      GArray *wh = tr->pair_where[idx];
      if (wh->len == 0 || g_array_index (wh, guint32, wh->len - 1) != w)
        g_array_append_val (wh, w);
      if (tr->pair_stamp[idx] != tr->stamp)
        {
          tr->pair_stamp[idx] = tr->stamp;
          g_array_append_val (tr->dirty, idx);
        }
    }
}

static void
train_clear (Train *tr)
{
  for (guint32 i = 0; i < tr->n_pairs; i++)
    if (tr->pair_where[i])
      g_array_free (tr->pair_where[i], TRUE);
  g_free (tr->pair_where);
  g_free (tr->pair_stamp);
  g_free (tr->pair_key);
  g_free (tr->pair_count);
  if (tr->dirty)
    g_array_free (tr->dirty, TRUE);
  g_free (tr->slots);
  g_free (tr->heap);
  g_free (tr->sym);
  g_free (tr->word_off);
  g_free (tr->word_len);
  g_free (tr->word_count);
}

/* Bytes -> id of the tokens made so far, to notice a merge that makes bytes
 * some token already has. */
typedef struct {
  GByteArray *bytes;
  GArray     *off;    /* guint32, n_tokens + 1 */
  GHashTable *by_bytes; /* GBytes -> id + 1 */
} TokenList;

static guint32
token_add (TokenList *tl, const guint8 *p, gsize n)
{
  guint32 id = tl->off->len - 1;
  g_byte_array_append (tl->bytes, p, (guint) n);
  guint32 end = tl->bytes->len;
  g_array_append_val (tl->off, end);
  g_hash_table_insert (tl->by_bytes, g_bytes_new (p, n), GUINT_TO_POINTER (id + 1));
  return id;
}

GptdBpe *
gptd_bpe_trainer_train (GptdBpeTrainer *trainer,
                        guint           vocab_size,
                        GError        **error)
{
  g_return_val_if_fail (trainer != NULL, NULL);
  if (vocab_size < 256 + trainer->n_special || vocab_size > (1u << 24))
    {
      g_set_error (error, GPTD_BPE_ERROR, GPTD_BPE_ERROR_TRAIN,
                   "vocabulary size %u out of range (256 bytes + %u special tokens up to %u)",
                   vocab_size, trainer->n_special, 1u << 24);
      return NULL;
    }
  guint n_merges_max = vocab_size - 256 - trainer->n_special;

  TokenList tl = { g_byte_array_new (), g_array_new (FALSE, FALSE, sizeof (guint32)),
                   g_hash_table_new_full (g_bytes_hash, g_bytes_equal, (GDestroyNotify) g_bytes_unref, NULL) };
  guint32 zero = 0;
  g_array_append_val (tl.off, zero);
  guint8 order[256];
  guint32 byte_id[256];
  byte_order (order);
  for (int i = 0; i < 256; i++)
    byte_id[order[i]] = token_add (&tl, &order[i], 1);

  /* Words. Their order does not matter: counts and ties decide every merge. */
  Train tr = { 0 };
  tr.dirty = g_array_new (FALSE, FALSE, sizeof (guint32));
  guint32 nw = trainer->n_words;
  g_autofree guint32 *wslot = g_new (guint32, nw ? nw : 1);
  guint32 k = 0;
  gsize total_syms = 0;
  for (guint32 i = 0; i <= trainer->mask; i++)
    if (trainer->slots[i].count)
      {
        wslot[k++] = i;
        total_syms += trainer->slots[i].len;
      }
  tr.n_words = nw;
  tr.sym = g_new (guint32, total_syms + 1);
  tr.word_off = g_new (guint32, nw + 1);
  tr.word_len = g_new (guint32, nw + 1);
  tr.word_count = g_new (guint64, nw + 1);
  tr.mask = 4095;
  tr.slots = g_new (PairSlot, tr.mask + 1);
  memset (tr.slots, 0xff, sizeof (PairSlot) * (tr.mask + 1));
  gsize so = 0;
  for (guint32 w = 0; w < nw; w++)
    {
      const WordSlot *ws = &trainer->slots[wslot[w]];
      const guint8 *p = trainer->keys->data + ws->off;
      tr.word_off[w] = (guint32) so;
      tr.word_len[w] = ws->len;
      tr.word_count[w] = ws->count;
      for (guint32 j = 0; j < ws->len; j++)
        tr.sym[so++] = byte_id[p[j]];
    }
  for (guint32 w = 0; w < nw; w++)
    {
      const guint32 *s = tr.sym + tr.word_off[w];
      for (guint32 j = 0; j + 1 < tr.word_len[w]; j++)
        pair_add (&tr, s[j], s[j + 1], (gint64) tr.word_count[w], w, TRUE);
    }
  g_array_set_size (tr.dirty, 0);
  for (guint32 i = 0; i < tr.n_pairs; i++)
    heap_push (&tr, tr.pair_count[i], tr.pair_key[i]);

  g_autoptr (GArray) merges = g_array_new (FALSE, FALSE, sizeof (GptdBpeMerge));
  guint8 *tmp = NULL;
  gsize tmp_cap = 0;
  while (merges->len < n_merges_max && tr.heap_len > 0)
    {
      HeapEntry top = heap_pop (&tr);
      guint32 idx = pair_find (&tr, top.key, FALSE);
      guint64 cur = tr.pair_count[idx];
      if (cur != top.count)
        {
          if (cur > 0)
            heap_push (&tr, cur, top.key);
          continue;
        }
      if (cur < 2)
        break;
      guint32 a = (guint32) (top.key >> 32), b = (guint32) top.key;

      /* The merged token: new, or one that another merge already made. */
      guint32 ao = g_array_index (tl.off, guint32, a), an = g_array_index (tl.off, guint32, a + 1) - ao;
      guint32 bo = g_array_index (tl.off, guint32, b), bn = g_array_index (tl.off, guint32, b + 1) - bo;
      if (an + bn > tmp_cap)
        {
          tmp_cap = (an + bn) * 2;
          tmp = g_realloc (tmp, tmp_cap);
        }
      memcpy (tmp, tl.bytes->data + ao, an);
      memcpy (tmp + an, tl.bytes->data + bo, bn);
      g_autoptr (GBytes) kb = g_bytes_new_static (tmp, an + bn);
      guint32 c = GPOINTER_TO_UINT (g_hash_table_lookup (tl.by_bytes, kb));
      if (c == 0)
        {
          c = token_add (&tl, tmp, an + bn);
          GptdBpeMerge mg = { a, b };
          g_array_append_val (merges, mg);
        }
      else
        c--;

      /* Rewrite every word that holds the pair. */
      GArray *where = tr.pair_where[idx];
      tr.pair_where[idx] = NULL;
      tr.stamp++;
      for (guint wi = 0; where && wi < where->len; wi++)
        {
          guint32 w = g_array_index (where, guint32, wi);
          guint32 *s = tr.sym + tr.word_off[w];
          guint32 n = tr.word_len[w];
          gint64 wc = (gint64) tr.word_count[w];
          guint32 out = 0;
          gboolean changed = FALSE;
          for (guint32 j = 0; j < n; j++)
            {
              if (j + 1 < n && s[j] == a && s[j + 1] == b)
                {
                  if (!changed)
                    {
                      /* Remove all of this word's pairs, then add the new ones. */
                      for (guint32 q = 0; q + 1 < n; q++)
                        pair_add (&tr, s[q], s[q + 1], -wc, w, FALSE);
                      changed = TRUE;
                    }
                  s[out++] = c;
                  j++;
                }
              else
                s[out++] = s[j];
            }
          if (!changed)
            continue;
          tr.word_len[w] = out;
          /* Pairs without c were in the word before; pairs with c are new. */
          for (guint32 q = 0; q + 1 < out; q++)
            pair_add (&tr, s[q], s[q + 1], wc, w, s[q] == c || s[q + 1] == c);
        }
      for (guint i = 0; i < tr.dirty->len; i++)
        {
          guint32 d = g_array_index (tr.dirty, guint32, i);
          if (tr.pair_count[d] > 0)
            heap_push (&tr, tr.pair_count[d], tr.pair_key[d]);
        }
      g_array_set_size (tr.dirty, 0);
      if (where)
        g_array_free (where, TRUE);
    }
  g_free (tmp);

  /* Build the vocabulary: tokens, then the special tokens. */
  guint32 n_tok = tl.off->len - 1;
  guint32 n_vocab = n_tok + trainer->n_special;
  g_autofree const guint8 **tokens = g_new0 (const guint8 *, n_vocab);
  g_autofree guint32 *lens = g_new0 (guint32, n_vocab);
  g_autofree guint8 *kinds = g_new0 (guint8, n_vocab);
  for (guint32 i = 0; i < n_tok; i++)
    {
      guint32 o = g_array_index (tl.off, guint32, i);
      tokens[i] = tl.bytes->data + o;
      lens[i] = g_array_index (tl.off, guint32, i + 1) - o;
      kinds[i] = 1;
    }
  for (guint i = 0; i < trainer->n_special; i++)
    {
      tokens[n_tok + i] = (const guint8 *) trainer->special[i].text;
      lens[n_tok + i] = (guint32) trainer->special[i].len;
      kinds[n_tok + i] = 2;
    }
  GptdBpe *bpe = gptd__bpe_new ("trained", n_vocab, tokens, lens, kinds,
                                (const GptdBpeMerge *) (void *) merges->data, merges->len, error);
  train_clear (&tr);
  g_byte_array_unref (tl.bytes);
  g_array_free (tl.off, TRUE);
  g_hash_table_unref (tl.by_bytes);
  return bpe;
}
