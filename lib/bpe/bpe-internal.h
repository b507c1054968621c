/* lib/bpe/bpe-internal.h: the vocabulary's data structures and the functions the
 * files of lib/bpe share (pre-tokenizer, hash tables, merging, UTF-8 checks).
 */
#ifndef GPTD_BPE_INTERNAL_H
#define GPTD_BPE_INTERNAL_H

#include <string.h>

#include <glib.h>
#include <gptd/bpe.h>

G_BEGIN_DECLS

#define GPTD__BPE_NO_ID G_MAXUINT32

/* A special token: its string and id. */
typedef struct {
  char   *text;
  gsize   len;
  guint32 id;
} GptdBpeSpecial;

/* A merge as vocab.bpe lists it: left and right token ids. */
typedef struct {
  guint32 left;
  guint32 right;
} GptdBpeMerge;

/* Slot of the token table (bytes -> id). key is gptd__bpe_key() of the bytes;
 * for tokens of up to 8 bytes it is the bytes themselves, so that comparing key
 * and len compares the token. id == GPTD__BPE_NO_ID when empty; len ==
 * G_MAXUINT32 for a removed token, which never matches. */
typedef struct {
  guint64 key;
  guint32 id;
  guint32 len;
} GptdBpeTokSlot;

/* Slot of the table of tokens of up to 4 bytes: the bytes as gptd__bpe_key()
 * packs them, and id | len << 24 (G_MAXUINT32 when empty; len 0xff for a
 * removed token). */
typedef struct {
  guint32 key;
  guint32 id_len;
} GptdBpeShortSlot;

struct _GptdBpe {
  gint     ref_count;
  guint64  serial;        /* unique per vocabulary, keys the per-thread piece caches */
  char    *source;        /* path or "trained" */

  guint32  n_vocab;       /* highest id + 1 */
  guint8  *tok_bytes;     /* bytes of all tokens, concatenated */
  guint32 *tok_off;       /* n_vocab + 1 offsets into tok_bytes */
  guint8  *tok_kind;      /* per id: 0 none, 1 ordinary, 2 special */
  guint32  byte_id[256];  /* id of each single byte */

  GptdBpeTokSlot *tok_slots;   /* ordinary tokens of more than 4 bytes by bytes */
  guint32         tok_mask;
  guint           tok_shift;   /* 64 - log2 (number of slots) */
  GptdBpeShortSlot *short_slots; /* ordinary tokens of up to 4 bytes */
  guint32           short_mask;
  guint             short_shift;

  GptdBpeSpecial *special;     /* sorted by decreasing length */
  guint           n_special;
  guint8          special_first[32]; /* bit set of the specials' first bytes */
  gsize           special_max_len;

  GptdBpeMerge   *merges;      /* in rank order, for saving */
  guint           n_merges;
};

/* ---- hashing ---- */

static inline guint64
gptd__bpe_hash_bytes (const guint8 *p, gsize n)
{
  guint64 h = 0x9E3779B97F4A7C15ull ^ ((guint64) n * 0xff51afd7ed558ccdull);
  while (n >= 8)
    {
      guint64 w;
      memcpy (&w, p, 8);
      h = (h ^ w) * 0xbf58476d1ce4e5b9ull;
      h ^= h >> 31;
      p += 8;
      n -= 8;
    }
  if (n >= 4)
    {
      guint32 a, b;
      memcpy (&a, p, 4);
      memcpy (&b, p + n - 4, 4);
      h = (h ^ (((guint64) a << 32) | b)) * 0x94d049bb133111ebull;
      h ^= h >> 29;
    }
  else if (n > 0)
    {
      guint64 w = p[0] | ((guint64) p[n >> 1] << 8) | ((guint64) p[n - 1] << 16);
      h = (h ^ w) * 0x94d049bb133111ebull;
      h ^= h >> 29;
    }
  return h;
}

/* A 64-bit key of the bytes p[0, n): for n <= 8 the bytes themselves (one
 * value per byte string of that length), longer strings hashed. */
static inline G_GNUC_PURE guint64
gptd__bpe_key (const guint8 *p, gsize n)
{
  if (n >= 4)
    {
      guint32 a, b;
      memcpy (&a, p, 4);
      memcpy (&b, p + n - 4, 4);
      if (G_LIKELY (n <= 8))
        return a | ((guint64) b << 32);
      return gptd__bpe_hash_bytes (p, n);
    }
  return p[0] | ((guint64) p[n >> 1] << 8) | ((guint64) p[n - 1] << 16);
}

/* The first slot to probe for a key. */
static inline guint32
gptd__bpe_slot_of (const GptdBpe *bpe, guint64 key, gsize n)
{
  if (n <= 4)
    return (guint32) ((((guint32) key | ((guint64) n << 32)) * 0x9E3779B97F4A7C15ull) >> bpe->short_shift);
  return (guint32) (((key ^ ((guint64) n << 56)) * 0x9E3779B97F4A7C15ull) >> bpe->tok_shift);
}

/* Looks up the ordinary token with bytes p[0, n), whose key is key;
 * GPTD__BPE_NO_ID when none. */
static inline G_GNUC_PURE guint32
gptd__bpe_lookup_key (const GptdBpe *bpe, const guint8 *p, gsize n, guint64 key)
{
  guint32 i = gptd__bpe_slot_of (bpe, key, n);
  if (n <= 4)
    {
      guint32 want = (guint32) n << 24;
      for (;;)
        {
          const GptdBpeShortSlot *s = &bpe->short_slots[i];
          if (s->key == (guint32) key && (s->id_len & 0xff000000u) == want)
            return s->id_len & 0xffffffu;
          if (s->id_len == G_MAXUINT32)
            return GPTD__BPE_NO_ID;
          i = (i + 1) & bpe->short_mask;
        }
    }
  for (;;)
    {
      const GptdBpeTokSlot *s = &bpe->tok_slots[i];
      if (s->key == key && s->len == n)
        {
          if (G_LIKELY (n <= 8))
            return s->id;
          if (memcmp (bpe->tok_bytes + bpe->tok_off[s->id], p, n) == 0)
            return s->id;
        }
      if (s->id == GPTD__BPE_NO_ID)
        return GPTD__BPE_NO_ID;
      i = (i + 1) & bpe->tok_mask;
    }
}

/* Looks up the ordinary token with bytes p[0, n) (n >= 1); GPTD__BPE_NO_ID when none. */
static inline G_GNUC_PURE guint32
gptd__bpe_lookup_bytes (const GptdBpe *bpe, const guint8 *p, gsize n)
{
  return gptd__bpe_lookup_key (bpe, p, n, gptd__bpe_key (p, n));
}

/* ---- vocabulary construction (bpe-vocab.c) ---- */

/* Builds a vocabulary from token bytes. tokens[i] (length lens[i]) is the token
 * with id i, or NULL for an unused id; kinds[i] is 1 for ordinary and 2 for
 * special tokens. The 256 single bytes must be ordinary tokens. Takes no
 * ownership. */
GptdBpe *gptd__bpe_new (const char          *source,
                        guint32              n_vocab,
                        const guint8 *const *tokens,
                        const guint32       *lens,
                        const guint8        *kinds,
                        const GptdBpeMerge  *merges,
                        guint                n_merges,
                        GError             **error);

/* GPT-2's byte <-> unicode mapping: the code point that stands for each byte in
 * encoder.json and vocab.bpe, and the inverse (-1 for code points that stand for
 * no byte, for cp < 324). */
extern const gunichar gptd__bpe_byte_to_unicode[256];
int gptd__bpe_unicode_to_byte (gunichar cp);

/* Whether a special token's string has an accepted form: <|...|> or [...]. */
gboolean gptd__bpe_special_form_ok (const char *s, gsize len);

/* ---- pre-tokenizer (bpe-pretok.c) ---- */

enum {
  GPTD__BPE_CLASS_OTHER = 0,
  GPTD__BPE_CLASS_LETTER = 1,
  GPTD__BPE_CLASS_NUMBER = 2,
  GPTD__BPE_CLASS_SPACE = 3,
};

/* Makes sure the code point class table exists (thread-safe, once). */
void gptd__bpe_classes_init (void);

/* The class of code point cp, from the table (gptd__bpe_classes_init() first). */
guint8 gptd__bpe_class_slow (gunichar cp);

/* The class of a code point computed from GLib directly (for tests). */
guint8 gptd__bpe_class_reference (gunichar cp);

/* Returns the end of the piece that starts at pos in the valid UTF-8 text
 * s[0, len). */
gsize gptd__bpe_pretok_next (const guint8 *s, gsize pos, gsize len);

/* Whether the character at s[i] (valid UTF-8) is white space. */
gboolean gptd__bpe_space_at (const guint8 *s, gsize i);

/* ---- UTF-8 (bpe-utf8.c) ---- */

/* Returns the offset of the first invalid byte of s[0, len), or len when valid. */
gsize gptd__bpe_utf8_find_invalid (const guint8 *s, gsize len);

/* Length of the maximal subpart of an ill-formed sequence at s[0] (1 to 3 bytes),
 * or 0 when s starts with a complete valid character. */
gsize gptd__bpe_utf8_invalid_len (const guint8 *s, gsize len);

/* Whether s[0, len) is the beginning of a valid character that lacks its last
 * bytes. */
gboolean gptd__bpe_utf8_is_incomplete (const guint8 *s, gsize len);

/* Copies s with each maximal invalid subpart replaced by U+FFFD. */
GString *gptd__bpe_utf8_make_valid (const guint8 *s, gsize len);

/* ---- merging (bpe-encode.c) ---- */

/* Merges the bytes p[0, n) into tokens (n >= 1), writing ids to out (room for n);
 * returns the number of ids. use_heap forces the O(n log n) algorithm. */
gsize gptd__bpe_merge (const GptdBpe *bpe, const guint8 *p, gsize n, guint32 *out, gboolean use_heap);


G_END_DECLS

#endif /* GPTD_BPE_INTERNAL_H */
