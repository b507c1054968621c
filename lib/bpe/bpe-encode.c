/* lib/bpe/bpe-encode.c: encoding text to token ids as tiktoken's gpt2 encoding
 * does, and finding the points where streamed text may be cut.
 *
 * Each pre-tokenizer piece that is itself a token becomes that token (as in
 * tiktoken). Other pieces are merged byte pair by byte pair, lowest rank first:
 * short pieces by scanning an array of pair ranks, long ones with a linked list
 * and a binary heap (O(n log n)). A pair's rank is the id of the token made of
 * its bytes, found in the token table. The ids of pieces that needed merging are kept in a small
 * per-thread cache, so a rare word costs one merge per thread and vocabulary.
 */
#ifdef HAVE_CONFIG_H
#include "config.h"
#endif
#ifndef _GNU_SOURCE
#define _GNU_SOURCE 1
#endif

#include "bpe/bpe-pretok.h"

/* Pieces longer than this are merged with the heap. */
#define ARRAY_MERGE_MAX 40
/* Heap merges of pieces up to this long use stack memory. */
#define HEAP_STACK_MAX 512
/* Pieces longer than this are not cached. */
#define CACHE_PIECE_MAX 128
#define CACHE_SLOTS_LOG2 15
#define CACHE_KEY_BYTES (1u << 20)
#define CACHE_ID_COUNT (1u << 18)

/* ------------------------------------------------------------------------ */
/* Merging                                                                    */

/* The rank (= id) of the token whose bytes are p[a, b), or GPTD__BPE_NO_ID. */
static inline guint32
rank_of (const GptdBpe *bpe, const guint8 *p, gsize a, gsize b)
{
  return gptd__bpe_lookup_bytes (bpe, p + a, b - a);
}

static gsize
merge_array (const GptdBpe *bpe, const guint8 *p, gsize n, guint32 *out)
{
  guint32 id[ARRAY_MERGE_MAX];
  guint32 rank[ARRAY_MERGE_MAX];
  guint32 start[ARRAY_MERGE_MAX + 1];
  for (gsize i = 0; i < n; i++)
    {
      id[i] = bpe->byte_id[p[i]];
      start[i] = (guint32) i;
    }
  start[n] = (guint32) n;
  for (gsize i = 0; i + 1 < n; i++)
    rank[i] = rank_of (bpe, p, i, i + 2);
  rank[n - 1] = GPTD__BPE_NO_ID;
  gsize m = n;
  while (m > 1)
    {
      guint32 best = GPTD__BPE_NO_ID;
      gsize at = 0;
      for (gsize i = 0; i + 1 < m; i++)
        if (rank[i] < best)
          {
            best = rank[i];
            at = i;
          }
      if (best == GPTD__BPE_NO_ID)
        break;
      id[at] = best;
      for (gsize i = at + 1; i + 1 < m; i++)
        {
          id[i] = id[i + 1];
          rank[i] = rank[i + 1];
          start[i] = start[i + 1];
        }
      start[m - 1] = start[m];
      m--;
      rank[at] = at + 1 < m ? rank_of (bpe, p, start[at], start[at + 2]) : GPTD__BPE_NO_ID;
      if (at > 0)
        rank[at - 1] = rank_of (bpe, p, start[at - 1], start[at + 1]);
    }
  memcpy (out, id, sizeof (guint32) * m);
  return m;
}

static inline void
heap_push (guint64 *heap, gsize *len, guint64 v)
{
  gsize i = (*len)++;
  while (i > 0)
    {
      gsize parent = (i - 1) / 2;
      if (heap[parent] <= v)
        break;
      heap[i] = heap[parent];
      i = parent;
    }
  heap[i] = v;
}

static inline guint64
heap_pop (guint64 *heap, gsize *len)
{
  guint64 top = heap[0];
  guint64 v = heap[--(*len)];
  gsize i = 0, n = *len;
  for (;;)
    {
      gsize c = 2 * i + 1;
      if (c >= n)
        break;
      if (c + 1 < n && heap[c + 1] < heap[c])
        c++;
      if (heap[c] >= v)
        break;
      heap[i] = heap[c];
      i = c;
    }
  if (n > 0)
    heap[i] = v;
  return top;
}

/* Linked list of parts plus a heap of (rank, left position); entries whose rank
 * no longer matches their left part are stale and skipped. Ties on rank pop the
 * leftmost pair, as tiktoken merges. */
static gsize
merge_heap (const GptdBpe *bpe, const guint8 *p, gsize n, guint32 *out)
{
  /* Part i starts at byte i and ends where next[i] starts. */
  guint32 id_stack[HEAP_STACK_MAX * 4];
  guint64 heap_stack[HEAP_STACK_MAX * 3 + 4];
  gboolean on_stack = n <= HEAP_STACK_MAX;
  guint32 *id = on_stack ? id_stack : g_new (guint32, n * 4);
  guint32 *next = id + n, *prev = id + 2 * n, *rnext = id + 3 * n;
  gsize hlen = 0;
  guint64 *heap = on_stack ? heap_stack : g_new (guint64, n * 3 + 4);
  for (gsize i = 0; i < n; i++)
    {
      id[i] = bpe->byte_id[p[i]];
      next[i] = (guint32) (i + 1);
      prev[i] = (guint32) i - 1;
    }
  for (gsize i = 0; i < n; i++)
    {
      rnext[i] = i + 1 < n ? rank_of (bpe, p, i, i + 2) : GPTD__BPE_NO_ID;
      if (rnext[i] != GPTD__BPE_NO_ID)
        heap_push (heap, &hlen, ((guint64) rnext[i] << 32) | i);
    }
  while (hlen > 0)
    {
      guint64 top = heap_pop (heap, &hlen);
      guint32 r = (guint32) (top >> 32), i = (guint32) top;
      if (id[i] == GPTD__BPE_NO_ID || rnext[i] != r)
        continue;
      guint32 j = next[i];
      id[i] = r;
      next[i] = next[j];
      if (next[j] < n)
        prev[next[j]] = i;
      id[j] = GPTD__BPE_NO_ID;
      rnext[j] = GPTD__BPE_NO_ID;
      /* The heap holds at most n - 1 entries at first and each merge (at most
       * n - 1 of them) pushes two, so hcap = 3n + 4 always suffices. */
      guint32 k = next[i];
      rnext[i] = k < n ? rank_of (bpe, p, i, next[k]) : GPTD__BPE_NO_ID;
      if (rnext[i] != GPTD__BPE_NO_ID)
        heap_push (heap, &hlen, ((guint64) rnext[i] << 32) | i);
      guint32 q = prev[i];
      if (q < n)
        {
          rnext[q] = rank_of (bpe, p, q, next[i]);
          if (rnext[q] != GPTD__BPE_NO_ID)
            heap_push (heap, &hlen, ((guint64) rnext[q] << 32) | q);
        }
    }
  gsize m = 0;
  for (guint32 i = 0; i < n; i = next[i])
    out[m++] = id[i];
  if (!on_stack)
    {
      g_free (heap);
      g_free (id);
    }
  return m;
}

gsize
gptd__bpe_merge (const GptdBpe *bpe, const guint8 *p, gsize n, guint32 *out, gboolean use_heap)
{
  if (n == 0)
    return 0;
  if (!use_heap && n <= ARRAY_MERGE_MAX)
    return merge_array (bpe, p, n, out);
  return merge_heap (bpe, p, n, out);
}

/* ------------------------------------------------------------------------ */
/* Per-thread piece cache                                                     */

typedef struct {
  guint32 hash;
  guint32 key_off;
  guint32 ids_off;
  guint16 key_len;  /* 0: empty */
  guint16 n_ids;
} CacheSlot;

typedef struct {
  guint64    serial;
  CacheSlot *slots;
  guint8    *keys;
  guint32   *ids;
  guint32    keys_len;
  guint32    ids_len;
} PieceCache;

static void
piece_cache_free (gpointer data)
{
  PieceCache *c = data;
  g_free (c->slots);
  g_free (c->keys);
  g_free (c->ids);
  g_free (c);
}

static GPrivate cache_key = G_PRIVATE_INIT (piece_cache_free);

static void
piece_cache_clear (PieceCache *c)
{
  memset (c->slots, 0, sizeof (CacheSlot) << CACHE_SLOTS_LOG2);
  c->keys_len = 0;
  c->ids_len = 0;
}

static PieceCache *
piece_cache_get (const GptdBpe *bpe)
{
  PieceCache *c = g_private_get (&cache_key);
  if (G_UNLIKELY (!c))
    {
      c = g_new0 (PieceCache, 1);
      c->slots = g_new0 (CacheSlot, 1u << CACHE_SLOTS_LOG2);
      c->keys = g_malloc (CACHE_KEY_BYTES);
      c->ids = g_new (guint32, CACHE_ID_COUNT);
      c->serial = bpe->serial;
      g_private_set (&cache_key, c);
    }
  else if (G_UNLIKELY (c->serial != bpe->serial))
    {
      piece_cache_clear (c);
      c->serial = bpe->serial;
    }
  return c;
}

/* Encodes one piece; out has room for n ids. Returns the number of ids. */
static inline gsize
encode_piece (const GptdBpe *bpe, PieceCache *c, const guint8 *p, gsize n, guint32 *out)
{
  if (n == 1)
    {
      out[0] = bpe->byte_id[p[0]];
      return 1;
    }
  guint64 key = gptd__bpe_key (p, n);

  /* The whole piece as one token. */
  guint32 id = gptd__bpe_lookup_key (bpe, p, n, key);
  if (id != GPTD__BPE_NO_ID)
    {
      out[0] = id;
      return 1;
    }
  guint64 h = n <= 8 ? key * 0xbf58476d1ce4e5b9ull ^ n : key;
  guint32 h32 = (guint32) (h >> 32);

  if (n > CACHE_PIECE_MAX)
    return gptd__bpe_merge (bpe, p, n, out, FALSE);

  CacheSlot *slot = &c->slots[(h >> 8) & ((1u << CACHE_SLOTS_LOG2) - 1)];
  if (slot->key_len == n && slot->hash == h32 && memcmp (c->keys + slot->key_off, p, n) == 0)
    {
      memcpy (out, c->ids + slot->ids_off, sizeof (guint32) * slot->n_ids);
      return slot->n_ids;
    }
  gsize m = gptd__bpe_merge (bpe, p, n, out, FALSE);
  if (c->keys_len + n > CACHE_KEY_BYTES || c->ids_len + m > CACHE_ID_COUNT)
    piece_cache_clear (c);
  memcpy (c->keys + c->keys_len, p, n);
  memcpy (c->ids + c->ids_len, out, sizeof (guint32) * m);
  slot->hash = h32;
  slot->key_off = c->keys_len;
  slot->ids_off = c->ids_len;
  slot->key_len = (guint16) n;
  slot->n_ids = (guint16) m;
  c->keys_len += (guint32) n;
  c->ids_len += (guint32) m;
  return m;
}

/* Encodes valid UTF-8 text without special tokens into ids, whose first k
 * elements are taken; the array grows as needed (its length is its capacity
 * here). Returns the new number of ids. */
static gsize
encode_ordinary_into (const GptdBpe *bpe, const guint8 *s, gsize len, GArray *ids, gsize k)
{
  gptd__bpe_classes_init ();
  PieceCache *c = piece_cache_get (bpe);
  guint32 *out = (guint32 *) (void *) ids->data;
  gsize cap = ids->len;
  gsize pos = 0;
  while (pos < len)
    {
      gsize e = gptd__bpe_pretok_next_inline (s, pos, len);
      if (G_UNLIKELY (k + (e - pos) > cap))
        {
          cap = MAX (cap * 2, k + (e - pos) + 4096);
          cap = MIN (cap, MAX (k + (len - pos), k + (e - pos)));
          g_array_set_size (ids, (guint) cap);
          out = (guint32 *) (void *) ids->data;
        }
      k += encode_piece (bpe, c, s + pos, e - pos, out + k);
      pos = e;
    }
  return k;
}

/* ------------------------------------------------------------------------ */
/* Special tokens                                                             */

/* Finds the first special token at or after from in s[0, len); returns its
 * position, or len when there is none. */
static gsize
find_special (const GptdBpe *bpe, const guint8 *s, gsize from, gsize len, const GptdBpeSpecial **found)
{
  if (bpe->n_special == 1)
    {
      const GptdBpeSpecial *sp = &bpe->special[0];
      const guint8 *hit = memmem (s + from, len - from, sp->text, sp->len);
      *found = sp;
      return hit ? (gsize) (hit - s) : len;
    }
  for (gsize i = from; i < len; i++)
    {
      guint8 b = s[i];
      if (!(bpe->special_first[b >> 3] & (1u << (b & 7))))
        continue;
      for (guint k = 0; k < bpe->n_special; k++)
        {
          const GptdBpeSpecial *sp = &bpe->special[k];
          if (sp->len <= len - i && memcmp (s + i, sp->text, sp->len) == 0)
            {
              *found = sp;
              return i;
            }
        }
    }
  return len;
}

gboolean
gptd_bpe_encode (const GptdBpe              *bpe,
                 const char                 *text,
                 gsize                       len,
                 const GptdBpeEncodeOptions *options,
                 GArray                     *ids,
                 GError                    **error)
{
  static const GptdBpeEncodeOptions defaults = { 0 };
  g_return_val_if_fail (bpe != NULL, FALSE);
  g_return_val_if_fail (text != NULL || len == 0, FALSE);
  g_return_val_if_fail (ids != NULL && g_array_get_element_size (ids) == sizeof (guint32), FALSE);
  /* A GArray holds fewer than 2^32 elements; longer texts are encoded in parts. */
  g_return_val_if_fail (len < G_MAXUINT - ids->len, FALSE);
  g_return_val_if_fail (error == NULL || *error == NULL, FALSE);
  if (!options)
    options = &defaults;

  const guint8 *s = (const guint8 *) text;
  g_autoptr (GString) fixed = NULL;
  gsize bad = gptd__bpe_utf8_find_invalid (s, len);
  if (bad < len)
    {
      if (options->invalid != GPTD_BPE_INVALID_REPLACE)
        {
          g_set_error (error, GPTD_BPE_ERROR, GPTD_BPE_ERROR_INVALID_UTF8,
                       "invalid UTF-8 at byte offset %" G_GUINT64_FORMAT " (byte 0x%02x)",
                       options->base_offset + bad, s[bad]);
          return FALSE;
        }
      fixed = gptd__bpe_utf8_make_valid (s, len);
      s = (const guint8 *) fixed->str;
      len = fixed->len;
    }

  /* Room for a part of the text; encode_ordinary_into() grows it as needed. */
  guint old = ids->len;
  g_array_set_size (ids, old + (guint) MIN (len + 1, (gsize) 1 << 16));
  gsize k = old;
  if (options->special == GPTD_BPE_SPECIAL_TEXT || bpe->n_special == 0)
    k = encode_ordinary_into (bpe, s, len, ids, k);
  else
    {
      gsize pos = 0;
      while (pos < len)
        {
          const GptdBpeSpecial *sp = NULL;
          gsize at = find_special (bpe, s, pos, len, &sp);
          if (at < len && options->special == GPTD_BPE_SPECIAL_ERROR)
            {
              g_array_set_size (ids, old);
              g_set_error (error, GPTD_BPE_ERROR, GPTD_BPE_ERROR_SPECIAL_TOKEN,
                           "the text contains the special token \"%s\" at byte offset %"
                           G_GUINT64_FORMAT "; allow special tokens or encode them as text",
                           sp->text, options->base_offset + at);
              return FALSE;
            }
          k = encode_ordinary_into (bpe, s + pos, at - pos, ids, k);
          if (at < len)
            {
              if (k + 1 > ids->len)
                g_array_set_size (ids, (guint) (k + 1));
              g_array_index (ids, guint32, k++) = sp->id;
              at += sp->len;
            }
          pos = at;
        }
    }
  g_array_set_size (ids, (guint) k);
  return TRUE;
}

/* ------------------------------------------------------------------------ */
/* Cutting streamed text                                                      */

static inline gboolean
ascii_space (guint8 b)
{
  return b == ' ' || (b >= 0x09 && b <= 0x0D);
}

/* Where s[start, lim) may be cut: before its last piece; before an apostrophe
 * piece too close to lim to tell whether it starts a contraction; and never
 * between white-space pieces or right after them, since how a run of white space
 * splits depends on what follows it. */
static gsize
last_piece_start (const guint8 *s, gsize start, gsize lim)
{
  gsize pos = start, last = start, run_start = start;
  gboolean in_space = FALSE;
  while (pos < lim)
    {
      gsize e = gptd__bpe_pretok_next (s, pos, lim);
      gsize cut = in_space ? run_start : pos;
      if (s[pos] == '\'' && pos + 2 >= lim)
        return cut;
      last = cut;
      gboolean space = gptd__bpe_space_at (s, pos) && !(s[pos] == ' ' && e > pos + 1 && !gptd__bpe_space_at (s, pos + 1));
      if (space && !in_space)
        run_start = pos;
      in_space = space;
      pos = e;
    }
  return last;
}

gsize
gptd_bpe_split_point (const GptdBpe     *bpe,
                      const char        *text,
                      gsize              len,
                      GptdBpeSpecialMode special)
{
  g_return_val_if_fail (bpe != NULL, 0);
  const guint8 *s = (const guint8 *) text;
  gsize lim = len;

  /* 1. Hold back a character whose last bytes have not arrived. */
  for (gsize k = 1; k <= 4 && k <= len; k++)
    {
      guint8 b = s[len - k];
      if ((b & 0xC0) == 0x80)
        continue;
      if (b >= 0xC0)
        {
          gsize need = b >= 0xF0 ? 4 : b >= 0xE0 ? 3 : 2;
          if (need > k)
            lim = len - k;
        }
      break;
    }

  /* 2. Hold back the beginning of a special token's string. */
  gboolean specials = special != GPTD_BPE_SPECIAL_TEXT && bpe->n_special > 0;
  if (specials)
    {
      gsize from = lim > bpe->special_max_len ? lim - bpe->special_max_len + 1 : 0;
      for (gsize p = from; p < lim; p++)
        {
          gboolean prefix = FALSE;
          for (guint k = 0; k < bpe->n_special && !prefix; k++)
            {
              const GptdBpeSpecial *sp = &bpe->special[k];
              prefix = lim - p < sp->len && memcmp (s + p, sp->text, lim - p) == 0;
            }
          if (prefix)
            {
              lim = p;
              break;
            }
        }
    }
  if (lim == 0)
    return 0;

  /* 3. A position where a piece surely starts: white space after a non-space
   * ASCII character, or the end of a special token. */
  gsize start = 0;
  gsize floor_ = lim > (1u << 20) ? lim - (1u << 20) : 0;
  for (gsize q = lim - 1; q > floor_; q--)
    if (ascii_space (s[q]) && s[q - 1] < 0x80 && !ascii_space (s[q - 1]))
      {
        start = q;
        break;
      }
  if (specials)
    {
      gsize from = start > bpe->special_max_len ? start - bpe->special_max_len : 0;
      for (;;)
        {
          const GptdBpeSpecial *sp = NULL;
          gsize at = find_special (bpe, s, from, lim, &sp);
          if (at >= lim)
            break;
          if (at + sp->len > start)
            start = at + sp->len;
          from = at + 1;
        }
      if (start >= lim)
        return lim;
    }

  /* 4. The start of the last piece (a piece ends where the next starts, which
   * only the next characters decide, and an apostrophe piece may yet become a
   * contraction). Invalid UTF-8 is looked at as the U+FFFD
   * that replaces it; offsets are mapped back to the original text. */
  gptd__bpe_classes_init ();
  gsize bad = gptd__bpe_utf8_find_invalid (s + start, lim - start);
  if (bad == lim - start)
    {
      return last_piece_start (s, start, lim);
    }
  g_autoptr (GString) fixed = g_string_sized_new (lim - start + 16);
  g_autoptr (GArray) map = g_array_new (FALSE, FALSE, sizeof (gsize) * 2);
  gsize i = start;
  while (i < lim)
    {
      gsize ok = gptd__bpe_utf8_find_invalid (s + i, lim - i);
      g_string_append_len (fixed, (const char *) s + i, (gssize) ok);
      i += ok;
      if (i >= lim)
        break;
      gsize pair[2] = { fixed->len, i };
      g_array_append_val (map, pair);
      g_string_append (fixed, "\xEF\xBF\xBD");
      i += gptd__bpe_utf8_invalid_len (s + i, lim - i);
      gsize after[2] = { fixed->len, i };
      g_array_append_val (map, after);
    }
  const guint8 *f = (const guint8 *) fixed->str;
  gsize last = last_piece_start (f, 0, fixed->len);
  gsize orig = start + last;
  for (guint k = 0; k < map->len; k++)
    {
      const gsize *pair = &g_array_index (map, gsize, k * 2);
      if (pair[0] > last)
        break;
      orig = pair[1] + (last - pair[0]);
    }
  return orig;
}
