/* lib/bpe/bpe-vocab.c: the BPE vocabulary: building its lookup tables, loading
 * GPT-2's encoder.json + vocab.bpe (or vocab.json + merges.txt) and tiktoken rank
 * files, resolving names such as "gpt2", and saving in GPT-2's format.
 *
 * encoder.json is read by a strict parser for its one shape (a flat object of
 * string keys and integer ids), which is fast enough for the whole load to stay
 * well under 50 ms; when that parser meets anything else, json-glib parses the
 * file to report syntax errors with line and column. Saving uses json-glib.
 */
#ifdef HAVE_CONFIG_H
#include "config.h"
#endif

#include "bpe/bpe-internal.h"

#include <errno.h>
#include <stdlib.h>

#include <glib/gstdio.h>
#include <json-glib/json-glib.h>
#include <gptd/atomic-file.h>
#include <gptd/json-load.h>
#include "io/install-paths.h"


/* Ids above this are refused, so that a corrupt file cannot ask for huge tables. */
#define MAX_ID ((1u << 24) - 1)

G_DEFINE_QUARK (gptd-bpe-error-quark, gptd_bpe_error)

static const char *const special_mode_names[] = {
#define GPTD_BPE_SPECIAL_NAME_(suffix, name) name,
  GPTD_BPE_SPECIAL_MODE_MAP (GPTD_BPE_SPECIAL_NAME_)
#undef GPTD_BPE_SPECIAL_NAME_
};

gboolean
gptd_bpe_special_mode_from_string (const char *name, GptdBpeSpecialMode *mode)
{
  g_return_val_if_fail (name != NULL, FALSE);
  for (guint i = 0; i < G_N_ELEMENTS (special_mode_names); i++)
    if (strcmp (name, special_mode_names[i]) == 0)
      {
        if (mode)
          *mode = (GptdBpeSpecialMode) i;
        return TRUE;
      }
  return FALSE;
}

const char *
gptd_bpe_special_mode_to_string (GptdBpeSpecialMode mode)
{
  g_return_val_if_fail ((guint) mode < G_N_ELEMENTS (special_mode_names), NULL);
  return special_mode_names[mode];
}

/* ------------------------------------------------------------------------ */
/* GPT-2's byte <-> unicode mapping.                                          */

const gunichar gptd__bpe_byte_to_unicode[256] = {
#define R4(a) a, a + 1, a + 2, a + 3
#define R16(a) R4 (a), R4 (a + 4), R4 (a + 8), R4 (a + 12)
  /* 0x00-0x20 stand for U+0100-U+0120. */
  R16 (0x100), R16 (0x110), 0x120,
  /* 0x21-0x7E stand for themselves. */
  0x21, 0x22, 0x23, 0x24, 0x25, 0x26, 0x27, 0x28, 0x29, 0x2A, 0x2B, 0x2C, 0x2D, 0x2E, 0x2F,
  R16 (0x30), R16 (0x40), R16 (0x50), R16 (0x60), R4 (0x70), R4 (0x74), R4 (0x78), 0x7C, 0x7D, 0x7E,
  /* 0x7F-0xA0 stand for U+0121-U+0142. */
  R16 (0x121), R16 (0x131), 0x141, 0x142,
  /* 0xA1-0xAC stand for themselves, 0xAD for U+0143, 0xAE-0xFF for themselves. */
  R4 (0xA1), R4 (0xA5), R4 (0xA9),
  0x143,
  0xAE, 0xAF, R16 (0xB0), R16 (0xC0), R16 (0xD0), R16 (0xE0), R16 (0xF0),
#undef R16
#undef R4
};

int
gptd__bpe_unicode_to_byte (gunichar cp)
{
  if ((cp >= 0x21 && cp <= 0x7E) || (cp >= 0xA1 && cp <= 0xAC) || (cp >= 0xAE && cp <= 0xFF))
    return (int) cp;
  if (cp >= 0x100 && cp <= 0x120)
    return (int) (cp - 0x100);
  if (cp >= 0x121 && cp <= 0x142)
    return (int) (cp - 0x121 + 0x7F);
  if (cp == 0x143)
    return 0xAD;
  return -1;
}

gboolean
gptd__bpe_special_form_ok (const char *s, gsize len)
{
  if (len >= 5 && s[0] == '<' && s[1] == '|' && s[len - 2] == '|' && s[len - 1] == '>')
    return TRUE;
  if (len >= 3 && s[0] == '[' && s[len - 1] == ']')
    return TRUE;
  return FALSE;
}

/* ------------------------------------------------------------------------ */
/* Tables.                                                                    */

static guint32
pow2_at_least (guint64 n)
{
  guint32 p = 16;
  while (p < n)
    p <<= 1;
  return p;
}

/* Inserts id into the token tables; returns the id already there with the same
 * bytes, or GPTD__BPE_NO_ID. */
static guint32
tok_insert (GptdBpe *bpe, guint32 id)
{
  const guint8 *p = bpe->tok_bytes + bpe->tok_off[id];
  gsize n = bpe->tok_off[id + 1] - bpe->tok_off[id];
  guint64 key = gptd__bpe_key (p, n);
  guint32 dup = gptd__bpe_lookup_key (bpe, p, n, key);
  if (dup != GPTD__BPE_NO_ID)
    return dup;
  guint32 i = gptd__bpe_slot_of (bpe, key, n);
  if (n <= 4)
    {
      while (bpe->short_slots[i].id_len != G_MAXUINT32)
        i = (i + 1) & bpe->short_mask;
      bpe->short_slots[i].key = (guint32) key;
      bpe->short_slots[i].id_len = id | ((guint32) n << 24);
      return GPTD__BPE_NO_ID;
    }
  while (bpe->tok_slots[i].id != GPTD__BPE_NO_ID)
    i = (i + 1) & bpe->tok_mask;
  bpe->tok_slots[i].key = key;
  bpe->tok_slots[i].id = id;
  bpe->tok_slots[i].len = (guint32) n;
  return GPTD__BPE_NO_ID;
}

/* Removes token id (an ordinary token turned special) from the token tables. */
static void
tok_remove (GptdBpe *bpe, guint32 id)
{
  const guint8 *p = bpe->tok_bytes + bpe->tok_off[id];
  gsize n = bpe->tok_off[id + 1] - bpe->tok_off[id];
  guint32 i = gptd__bpe_slot_of (bpe, gptd__bpe_key (p, n), n);
  if (n <= 4)
    {
      for (; bpe->short_slots[i].id_len != G_MAXUINT32; i = (i + 1) & bpe->short_mask)
        if ((bpe->short_slots[i].id_len & 0xffffffu) == id)
          bpe->short_slots[i].id_len = id | 0xff000000u;
      return;
    }
  for (; bpe->tok_slots[i].id != GPTD__BPE_NO_ID; i = (i + 1) & bpe->tok_mask)
    if (bpe->tok_slots[i].id == id)
      bpe->tok_slots[i].len = G_MAXUINT32;
}

static int
special_cmp (gconstpointer a, gconstpointer b)
{
  const GptdBpeSpecial *x = a, *y = b;
  if (x->len != y->len)
    return x->len > y->len ? -1 : 1;
  return x->id < y->id ? -1 : x->id > y->id;
}

/* Lists the special tokens (kind 2), longest first. */
static gboolean
index_specials (GptdBpe *bpe, GError **error)
{
  for (guint i = 0; i < bpe->n_special; i++)
    g_free (bpe->special[i].text);
  g_free (bpe->special);
  memset (bpe->special_first, 0, sizeof bpe->special_first);
  bpe->special_max_len = 0;
  guint n_special = 0;
  for (guint32 i = 0; i < bpe->n_vocab; i++)
    n_special += bpe->tok_kind[i] == 2;
  bpe->n_special = n_special;
  bpe->special = g_new0 (GptdBpeSpecial, n_special + 1);
  guint k = 0;
  for (guint32 i = 0; i < bpe->n_vocab; i++)
    if (bpe->tok_kind[i] == 2)
      {
        GptdBpeSpecial *sp = &bpe->special[k++];
        sp->len = bpe->tok_off[i + 1] - bpe->tok_off[i];
        sp->text = g_strndup ((const char *) bpe->tok_bytes + bpe->tok_off[i], sp->len);
        sp->id = i;
        if (sp->len == 0)
          {
            g_set_error (error, GPTD_BPE_ERROR, GPTD_BPE_ERROR_VOCAB,
                         "%s: special token %u is empty", bpe->source, i);
            return FALSE;
          }
        bpe->special_first[(guint8) sp->text[0] >> 3] |= (guint8) (1u << ((guint8) sp->text[0] & 7));
        bpe->special_max_len = MAX (bpe->special_max_len, sp->len);
      }
  qsort (bpe->special, n_special, sizeof (GptdBpeSpecial), special_cmp);
  return TRUE;
}

GptdBpe *
gptd__bpe_new (const char          *source,
               guint32              n_vocab,
               const guint8 *const *tokens,
               const guint32       *lens,
               const guint8        *kinds,
               const GptdBpeMerge  *merges,
               guint                n_merges,
               GError             **error)
{
  static gint64 serial_counter;
  g_autoptr (GptdBpe) bpe = g_new0 (GptdBpe, 1);
  bpe->ref_count = 1;
  bpe->serial = (guint64) g_atomic_pointer_add (&serial_counter, 1) + 1;
  bpe->source = g_strdup (source);
  bpe->n_vocab = n_vocab;

  guint64 total = 0;
  guint n_ordinary = 0;
  for (guint32 i = 0; i < n_vocab; i++)
    if (tokens[i])
      {
        total += lens[i];
        if (kinds[i] == 1)
          n_ordinary++;
      }
  if (total >= G_MAXUINT32)
    {
      g_set_error (error, GPTD_BPE_ERROR, GPTD_BPE_ERROR_VOCAB, "%s: tokens too long", source);
      return NULL;
    }
  bpe->tok_bytes = g_malloc (total + 8);
  bpe->tok_off = g_new (guint32, (gsize) n_vocab + 1);
  bpe->tok_kind = g_new0 (guint8, n_vocab);
  guint32 off = 0;
  for (guint32 i = 0; i < n_vocab; i++)
    {
      bpe->tok_off[i] = off;
      if (!tokens[i])
        continue;
      memcpy (bpe->tok_bytes + off, tokens[i], lens[i]);
      off += lens[i];
      bpe->tok_kind[i] = kinds[i];
    }
  bpe->tok_off[n_vocab] = off;

  /* Ordinary tokens by bytes: up to 4 bytes, and longer. */
  guint n_short = 0;
  for (guint32 i = 0; i < n_vocab; i++)
    if (tokens[i] && kinds[i] == 1 && lens[i] <= 4)
      n_short++;
  guint32 cap = pow2_at_least ((guint64) n_short * 3 / 2);
  bpe->short_mask = cap - 1;
  bpe->short_shift = 64 - (guint) g_bit_nth_msf (cap, -1);
  bpe->short_slots = g_new (GptdBpeShortSlot, cap);
  memset (bpe->short_slots, 0xff, sizeof (GptdBpeShortSlot) * cap);
  cap = pow2_at_least ((guint64) (n_ordinary - n_short) * 3 / 2);
  bpe->tok_mask = cap - 1;
  bpe->tok_shift = 64 - (guint) g_bit_nth_msf (cap, -1);
  bpe->tok_slots = g_new (GptdBpeTokSlot, cap);
  memset (bpe->tok_slots, 0xff, sizeof (GptdBpeTokSlot) * cap);
  for (int b = 0; b < 256; b++)
    bpe->byte_id[b] = GPTD__BPE_NO_ID;
  for (guint32 i = 0; i < n_vocab; i++)
    {
      if (bpe->tok_kind[i] != 1)
        continue;
      gsize n = bpe->tok_off[i + 1] - bpe->tok_off[i];
      if (n == 0)
        {
          g_set_error (error, GPTD_BPE_ERROR, GPTD_BPE_ERROR_VOCAB,
                       "%s: token %u is empty", source, i);
          return NULL;
        }
      guint32 dup = tok_insert (bpe, i);
      if (dup != GPTD__BPE_NO_ID)
        {
          g_set_error (error, GPTD_BPE_ERROR, GPTD_BPE_ERROR_VOCAB,
                       "%s: tokens %u and %u have the same bytes", source, dup, i);
          return NULL;
        }
      if (n == 1)
        bpe->byte_id[bpe->tok_bytes[bpe->tok_off[i]]] = i;
    }
  for (int b = 0; b < 256; b++)
    if (bpe->byte_id[b] == GPTD__BPE_NO_ID)
      {
        g_set_error (error, GPTD_BPE_ERROR, GPTD_BPE_ERROR_VOCAB,
                     "%s: no token for the byte 0x%02x", source, b);
        return NULL;
      }

  if (!index_specials (bpe, error))
    return NULL;

  bpe->n_merges = n_merges;
  bpe->merges = g_memdup2 (merges, sizeof (GptdBpeMerge) * n_merges);
  return g_steal_pointer (&bpe);
}

/* ------------------------------------------------------------------------ */
/* Public accessors.                                                          */

GptdBpe *
gptd_bpe_ref (GptdBpe *bpe)
{
  g_return_val_if_fail (bpe != NULL, NULL);
  g_atomic_int_inc (&bpe->ref_count);
  return bpe;
}

void
gptd_bpe_unref (GptdBpe *bpe)
{
  if (!bpe || !g_atomic_int_dec_and_test (&bpe->ref_count))
    return;
  for (guint i = 0; i < bpe->n_special; i++)
    g_free (bpe->special[i].text);
  g_free (bpe->special);
  g_free (bpe->merges);
  g_free (bpe->tok_slots);
  g_free (bpe->short_slots);
  g_free (bpe->tok_kind);
  g_free (bpe->tok_off);
  g_free (bpe->tok_bytes);
  g_free (bpe->source);
  g_free (bpe);
}

guint
gptd_bpe_get_n_vocab (const GptdBpe *bpe)
{
  g_return_val_if_fail (bpe != NULL, 0);
  return bpe->n_vocab;
}

gint64
gptd_bpe_get_special_id (const GptdBpe *bpe, const char *text)
{
  g_return_val_if_fail (bpe != NULL, -1);
  g_return_val_if_fail (text != NULL, -1);
  gsize len = strlen (text);
  for (guint i = 0; i < bpe->n_special; i++)
    if (bpe->special[i].len == len && memcmp (bpe->special[i].text, text, len) == 0)
      return bpe->special[i].id;
  return -1;
}

const guint8 *
gptd_bpe_get_token (const GptdBpe *bpe, guint32 id, gsize *len)
{
  g_return_val_if_fail (bpe != NULL, NULL);
  if (id >= bpe->n_vocab || bpe->tok_kind[id] == 0)
    {
      if (len)
        *len = 0;
      return NULL;
    }
  if (len)
    *len = bpe->tok_off[id + 1] - bpe->tok_off[id];
  return bpe->tok_bytes + bpe->tok_off[id];
}

const char *
gptd_bpe_get_source (const GptdBpe *bpe)
{
  g_return_val_if_fail (bpe != NULL, NULL);
  return bpe->source;
}

/* ------------------------------------------------------------------------ */
/* encoder.json                                                               */

typedef struct {
  guint32 key_off;   /* unescaped UTF-8 key in the key arena */
  guint32 key_len;
  guint32 id;
  guint32 file_off;  /* where the key starts in the file, for messages */
} JsonEntry;

typedef struct {
  const char *p;
  const char *end;
  const char *start;
  char       *arena;   /* unescaped keys */
  gsize       arena_len;
  const char *fail_at;
  const char *fail_why;
} FastJson;

static inline void
skip_ws (FastJson *j)
{
  while (j->p < j->end && (*j->p == ' ' || *j->p == '\n' || *j->p == '\r' || *j->p == '\t'))
    j->p++;
}

static gboolean
fail (FastJson *j, const char *why)
{
  j->fail_at = j->p;
  j->fail_why = why;
  return FALSE;
}

static int
hex4 (const char *p)
{
  int v = 0;
  for (int i = 0; i < 4; i++)
    {
      char c = p[i];
      v <<= 4;
      if (c >= '0' && c <= '9')
        v |= c - '0';
      else if (c >= 'a' && c <= 'f')
        v |= c - 'a' + 10;
      else if (c >= 'A' && c <= 'F')
        v |= c - 'A' + 10;
      else
        return -1;
    }
  return v;
}

/* Parses a JSON string at j->p (on the opening quote) into the arena. */
static gboolean
parse_string (FastJson *j, guint32 *off, guint32 *len)
{
  if (j->p >= j->end || *j->p != '"')
    return fail (j, "expected a string");
  j->p++;
  *off = (guint32) j->arena_len;
  const char *run = j->p;
  for (;;)
    {
      if (j->p >= j->end)
        return fail (j, "unterminated string");
      guint8 c = (guint8) *j->p;
      if (c == '"' || c == '\\' || c < 0x20)
        {
          memcpy (j->arena + j->arena_len, run, (gsize) (j->p - run));
          j->arena_len += (gsize) (j->p - run);
          if (c == '"')
            {
              j->p++;
              break;
            }
          if (c < 0x20)
            return fail (j, "control character in string");
          /* An escape. */
          if (j->end - j->p < 2)
            return fail (j, "unterminated escape");
          char e = j->p[1];
          char out = 0;
          switch (e)
            {
            case '"': out = '"'; break;
            case '\\': out = '\\'; break;
            case '/': out = '/'; break;
            case 'b': out = '\b'; break;
            case 'f': out = '\f'; break;
            case 'n': out = '\n'; break;
            case 'r': out = '\r'; break;
            case 't': out = '\t'; break;
            case 'u':
              {
                if (j->end - j->p < 6)
                  return fail (j, "truncated \\u escape");
                int v = hex4 (j->p + 2);
                if (v < 0)
                  return fail (j, "bad \\u escape");
                gunichar cp = (gunichar) v;
                gsize used = 6;
                if (cp >= 0xD800 && cp <= 0xDBFF)
                  {
                    int lo = j->end - j->p >= 12 && j->p[6] == '\\' && j->p[7] == 'u' ? hex4 (j->p + 8) : -1;
                    if (lo < 0xDC00 || lo > 0xDFFF)
                      return fail (j, "unpaired surrogate escape");
                    cp = 0x10000 + ((cp - 0xD800) << 10) + ((gunichar) lo - 0xDC00);
                    used = 12;
                  }
                else if (cp >= 0xDC00 && cp <= 0xDFFF)
                  return fail (j, "unpaired surrogate escape");
                j->arena_len += (gsize) g_unichar_to_utf8 (cp, j->arena + j->arena_len);
                j->p += used;
                run = j->p;
                continue;
              }
            default:
              return fail (j, "bad escape");
            }
          j->arena[j->arena_len++] = out;
          j->p += 2;
          run = j->p;
          continue;
        }
      j->p++;
    }
  *len = (guint32) (j->arena_len - *off);
  return TRUE;
}

static gboolean
parse_id (FastJson *j, guint32 *id)
{
  const char *s = j->p;
  if (j->p < j->end && *j->p == '-')
    j->p++;
  if (j->p >= j->end || *j->p < '0' || *j->p > '9')
    return fail (j, "value is not an integer id");
  if (*j->p == '0' && j->p + 1 < j->end && j->p[1] >= '0' && j->p[1] <= '9')
    return fail (j, "number with a leading zero");
  guint64 v = 0;
  while (j->p < j->end && *j->p >= '0' && *j->p <= '9')
    {
      v = v * 10 + (guint64) (*j->p - '0');
      if (v > G_MAXUINT32)
        v = G_MAXUINT32 + 1ull;
      j->p++;
    }
  if (j->p < j->end && (*j->p == '.' || *j->p == 'e' || *j->p == 'E'))
    {
      j->p = s;
      return fail (j, "id is not an integer");
    }
  if (*s == '-' || v >= MAX_ID)
    {
      j->p = s;
      return fail (j, "id out of range");
    }
  *id = (guint32) v;
  return TRUE;
}

static gboolean
fast_parse (FastJson *j, GArray *entries)
{
  skip_ws (j);
  if (j->p >= j->end || *j->p != '{')
    return fail (j, "expected an object");
  j->p++;
  skip_ws (j);
  if (j->p < j->end && *j->p == '}')
    j->p++;
  else
    for (;;)
      {
        JsonEntry e;
        skip_ws (j);
        e.file_off = (guint32) (j->p - j->start);
        if (!parse_string (j, &e.key_off, &e.key_len))
          return FALSE;
        skip_ws (j);
        if (j->p >= j->end || *j->p != ':')
          return fail (j, "expected ':'");
        j->p++;
        skip_ws (j);
        if (!parse_id (j, &e.id))
          return FALSE;
        g_array_append_val (entries, e);
        skip_ws (j);
        if (j->p < j->end && *j->p == ',')
          {
            j->p++;
            continue;
          }
        if (j->p < j->end && *j->p == '}')
          {
            j->p++;
            break;
          }
        return fail (j, "expected ',' or '}'");
      }
  skip_ws (j);
  if (j->p != j->end)
    return fail (j, "data after the object");
  return TRUE;
}

static guint
line_of (const char *start, gsize off)
{
  guint line = 1;
  const char *p = start, *end = start + off;
  while ((p = memchr (p, '\n', (gsize) (end - p))) != NULL)
    {
      line++;
      p++;
    }
  return line;
}

/* Parses encoder.json into entries and the key arena; errors name the file and line. */
static gboolean
parse_encoder_json (const char *path, const char *data, gsize len,
                    GArray *entries, char **arena, GError **error)
{
  FastJson j = { data, data + len, data, g_malloc (len + 8), 0, NULL, NULL };
  if (fast_parse (&j, entries))
    {
      *arena = j.arena;
      return TRUE;
    }
  g_free (j.arena);

  /* Let json-glib say what is wrong with the syntax. */
  g_autoptr (GError) jerr = NULL;
  g_autoptr (JsonParser) parser = gptd_json_load_bounded (data, (gssize) len, path,
                                                          G_MAXSIZE, &jerr);
  if (parser == NULL)
    {
      /* A syntax error reads "PATH:LINE:COLUMN: ..." like the other vocabulary errors. */
      g_autofree char *prefix = g_strdup_printf ("%s: not valid JSON: ", path);
      if (g_str_has_prefix (jerr->message, prefix))
        g_set_error (error, GPTD_BPE_ERROR, GPTD_BPE_ERROR_VOCAB, "%s:%s", path,
                     jerr->message + strlen (prefix));
      else
        g_set_error_literal (error, GPTD_BPE_ERROR, GPTD_BPE_ERROR_VOCAB, jerr->message);
      return FALSE;
    }
  gsize off = (gsize) (j.fail_at - data);
  g_set_error (error, GPTD_BPE_ERROR, GPTD_BPE_ERROR_VOCAB,
               "%s:%u: %s (byte %" G_GSIZE_FORMAT "); expected an object mapping token strings to integer ids",
               path, line_of (data, off), j.fail_why, off);
  return FALSE;
}

/* Decodes a token string through the byte-to-unicode mapping into out (room for
 * len bytes); returns the number of bytes, or -1 when the string has a character
 * that stands for no byte (or is not UTF-8). The characters that stand for bytes
 * are U+0021-U+007E and U+00A1-U+0143: one or two bytes of UTF-8. */
static gssize
unmap_token (const char *s, gsize len, guint8 *out)
{
  const guint8 *p = (const guint8 *) s, *end = p + len;
  gsize n = 0;
  while (p < end)
    {
      guint8 c = *p;
      if (c >= 0x21 && c <= 0x7E)
        {
          out[n++] = c;
          p++;
          continue;
        }
      if (c < 0xC2 || c > 0xC5 || p + 1 >= end || (p[1] & 0xC0) != 0x80)
        return -1;
      int b = gptd__bpe_unicode_to_byte (((gunichar) (c & 0x1F) << 6) | (p[1] & 0x3F));
      if (b < 0)
        return -1;
      out[n++] = (guint8) b;
      p += 2;
    }
  return (gssize) n;
}

static gboolean
read_file (const char *path, GMappedFile **mapped, GError **error)
{
  g_autoptr (GError) err = NULL;
  *mapped = g_mapped_file_new (path, FALSE, &err);
  if (!*mapped)
    {
      g_set_error (error, GPTD_BPE_ERROR,
                   g_error_matches (err, G_FILE_ERROR, G_FILE_ERROR_NOENT)
                     ? GPTD_BPE_ERROR_NOT_FOUND : GPTD_BPE_ERROR_IO,
                   "%s", err->message);
      return FALSE;
    }
  return TRUE;
}

static GptdBpe *
load_gpt2 (const char *dir, const char *json_name, const char *merges_name, GError **error)
{
  g_autofree char *json_path = g_build_filename (dir, json_name, NULL);
  g_autofree char *merges_path = g_build_filename (dir, merges_name, NULL);
  g_autoptr (GMappedFile) jmap = NULL;
  g_autoptr (GMappedFile) mmap_ = NULL;
  if (!read_file (json_path, &jmap, error) || !read_file (merges_path, &mmap_, error))
    return NULL;

  const char *jdata = g_mapped_file_get_contents (jmap);
  gsize jlen = g_mapped_file_get_length (jmap);
  g_autoptr (GArray) entries = g_array_sized_new (FALSE, FALSE, sizeof (JsonEntry), 60000);
  g_autofree char *arena = NULL;
  if (!parse_encoder_json (json_path, jdata ? jdata : "", jlen, entries, &arena, error))
    return NULL;

  /* A vocabulary without tokens ({}) cannot hold the 256 byte tokens. */
  if (entries->len == 0)
    {
      g_set_error (error, GPTD_BPE_ERROR, GPTD_BPE_ERROR_VOCAB,
                   "%s: no tokens: a byte-level vocabulary needs at least the 256 byte "
                   "tokens", json_path);
      return NULL;
    }

  /* Ids: unique, below MAX_ID. */
  guint32 n_vocab = 0;
  for (guint i = 0; i < entries->len; i++)
    n_vocab = MAX (n_vocab, g_array_index (entries, JsonEntry, i).id + 1);
  g_autofree gint32 *entry_of = g_new (gint32, n_vocab);
  memset (entry_of, 0xff, sizeof (gint32) * n_vocab);
  g_autofree guint8 *bytes_arena = g_malloc (jlen + 8);
  g_autofree const guint8 **tokens = g_new0 (const guint8 *, n_vocab);
  g_autofree guint32 *lens = g_new0 (guint32, n_vocab);
  g_autofree guint8 *kinds = g_new0 (guint8, n_vocab);
  gboolean byte_seen[256] = { FALSE };
  gsize boff = 0;
  for (guint i = 0; i < entries->len; i++)
    {
      JsonEntry *e = &g_array_index (entries, JsonEntry, i);
      if (entry_of[e->id] >= 0)
        {
          JsonEntry *o = &g_array_index (entries, JsonEntry, entry_of[e->id]);
          g_set_error (error, GPTD_BPE_ERROR, GPTD_BPE_ERROR_VOCAB,
                       "%s:%u: id %u of \"%.*s\" (byte %u) is already the id of \"%.*s\"",
                       json_path, line_of (jdata, e->file_off), e->id, (int) e->key_len,
                       arena + e->key_off, e->file_off, (int) o->key_len, arena + o->key_off);
          return NULL;
        }
      entry_of[e->id] = (gint32) i;
      gssize n = unmap_token (arena + e->key_off, e->key_len, bytes_arena + boff);
      if (n > 0)
        {
          tokens[e->id] = bytes_arena + boff;
          lens[e->id] = (guint32) n;
          kinds[e->id] = 1;
          if (n == 1)
            byte_seen[bytes_arena[boff]] = TRUE;
          boff += (gsize) n;
        }
      else
        {
          /* Not a byte-level token: can only be a special token. */
          const char *k = arena + e->key_off;
          if (gptd__bpe_utf8_find_invalid ((const guint8 *) k, e->key_len) != e->key_len
              || !gptd__bpe_special_form_ok (k, e->key_len))
            {
              g_set_error (error, GPTD_BPE_ERROR, GPTD_BPE_ERROR_VOCAB,
                           "%s:%u: token \"%.*s\" (id %u, byte %u) has characters that stand for "
                           "no byte, and is not a special token like <|endoftext|>",
                           json_path, line_of (jdata, e->file_off), (int) MIN (e->key_len, 200), k,
                           e->id, e->file_off);
              return NULL;
            }
          tokens[e->id] = (const guint8 *) k;
          lens[e->id] = e->key_len;
          kinds[e->id] = 2;
        }
    }

  /* Every byte must have its token. */
  for (int b = 0; b < 256; b++)
    if (!byte_seen[b])
      {
        char ch[8] = { 0 };
        g_unichar_to_utf8 (gptd__bpe_byte_to_unicode[b], ch);
        g_set_error (error, GPTD_BPE_ERROR, GPTD_BPE_ERROR_VOCAB,
                     "%s: no token for the byte 0x%02x (\"%s\" is missing)", json_path, b, ch);
        return NULL;
      }

  /* The vocabulary, with every byte-level token taken as ordinary for now. */
  g_autoptr (GptdBpe) bpe = gptd__bpe_new (dir, n_vocab, tokens, lens, kinds, NULL, 0, error);
  if (!bpe)
    {
      g_prefix_error (error, "%s: ", json_path);
      return NULL;
    }

  /* vocab.bpe: "#version" line, then one "LEFT RIGHT" merge per line. */
  const char *m = g_mapped_file_get_contents (mmap_);
  gsize mlen = g_mapped_file_get_length (mmap_);
  g_autofree guint8 *made = g_new0 (guint8, n_vocab);
  GptdBpeMerge *merges = g_new (GptdBpeMerge, mlen / 4 + 1);
  guint n_merges = 0;
  guint8 buf[1024];
  gsize pos = 0;
  guint line = 0;
  while (pos < mlen)
    {
      line++;
      const char *ls = m + pos;
      const char *nl = memchr (ls, '\n', mlen - pos);
      gsize ll = nl ? (gsize) (nl - ls) : mlen - pos;
      pos += ll + (nl ? 1 : 0);
      if (ll > 0 && ls[ll - 1] == '\r')
        ll--;
      if (ll == 0 || (line == 1 && ls[0] == '#'))
        continue;
      const char *why = NULL;
      const char *sp = memchr (ls, ' ', ll);
      guint32 a = GPTD__BPE_NO_ID, b = GPTD__BPE_NO_ID, c = GPTD__BPE_NO_ID;
      gssize na = -1, nb = -1;
      if (!sp || sp == ls || sp == ls + ll - 1 || memchr (sp + 1, ' ', (gsize) (ls + ll - sp - 1)))
        why = "expected two tokens separated by one space";
      else if (ll > sizeof buf)
        why = "line too long";
      else if ((na = unmap_token (ls, (gsize) (sp - ls), buf)) <= 0
               || (nb = unmap_token (sp + 1, (gsize) (ls + ll - sp - 1), buf + na)) <= 0)
        why = gptd__bpe_utf8_find_invalid ((const guint8 *) ls, ll) != ll
                ? "line is not valid UTF-8" : "a token has a character that stands for no byte";
      else if ((a = gptd__bpe_lookup_bytes (bpe, buf, (gsize) na)) == GPTD__BPE_NO_ID)
        why = "the left token is not in the vocabulary";
      else if ((b = gptd__bpe_lookup_bytes (bpe, buf + na, (gsize) nb)) == GPTD__BPE_NO_ID)
        why = "the right token is not in the vocabulary";
      else if ((c = gptd__bpe_lookup_bytes (bpe, buf, (gsize) (na + nb))) == GPTD__BPE_NO_ID)
        why = "the merged token is not in the vocabulary";
      if (why)
        {
          g_set_error (error, GPTD_BPE_ERROR, GPTD_BPE_ERROR_VOCAB, "%s:%u: %s: \"%.*s\"",
                       merges_path, line, why, (int) MIN (ll, 200), ls);
          g_free (merges);
          return NULL;
        }
      made[c] = 1;
      merges[n_merges].left = a;
      merges[n_merges].right = b;
      n_merges++;
    }
  bpe->merges = merges;
  bpe->n_merges = n_merges;

  /* Whatever no merge made is a special token, and must look like one. */
  gboolean respell = FALSE;
  for (guint32 id = 0; id < n_vocab; id++)
    {
      if (entry_of[id] < 0 || made[id] || (kinds[id] == 1 && lens[id] == 1))
        continue;
      JsonEntry *e = &g_array_index (entries, JsonEntry, entry_of[id]);
      if (!gptd__bpe_special_form_ok (arena + e->key_off, e->key_len))
        {
          g_set_error (error, GPTD_BPE_ERROR, GPTD_BPE_ERROR_VOCAB,
                       "%s:%u: token \"%.*s\" (id %u, byte %u) is neither a byte nor made by a "
                       "merge in %s, which has %u merges (is %s truncated?)",
                       json_path, line_of (jdata, e->file_off), (int) MIN (e->key_len, 200),
                       arena + e->key_off, id, e->file_off, merges_path, n_merges, merges_name);
          return NULL;
        }
      /* Its string is the key itself, which differs from the byte-level reading
       * only when the key has characters outside printable ASCII. */
      if (kinds[id] == 1 && (lens[id] != e->key_len || memcmp (tokens[id], arena + e->key_off, lens[id]) != 0))
        respell = TRUE;
      if (bpe->tok_kind[id] == 1)
        tok_remove (bpe, id);
      kinds[id] = 2;
      bpe->tok_kind[id] = 2;
      tokens[id] = (const guint8 *) arena + e->key_off;
      lens[id] = e->key_len;
    }
  if (respell)
    {
      GptdBpe *again = gptd__bpe_new (dir, n_vocab, tokens, lens, kinds, bpe->merges, bpe->n_merges, error);
      return again;
    }
  if (!index_specials (bpe, error))
    return NULL;
  return g_steal_pointer (&bpe);
}

/* ------------------------------------------------------------------------ */
/* .tiktoken rank files                                                       */

static GptdBpe *
load_tiktoken (const char *path, GError **error)
{
  g_autoptr (GMappedFile) map = NULL;
  if (!read_file (path, &map, error))
    return NULL;
  const char *d = g_mapped_file_get_contents (map);
  gsize len = g_mapped_file_get_length (map);

  g_autoptr (GArray) ranks = g_array_new (FALSE, FALSE, sizeof (guint32));
  g_autoptr (GByteArray) bytes = g_byte_array_new ();
  g_autoptr (GArray) offs = g_array_new (FALSE, FALSE, sizeof (guint32));
  gsize pos = 0;
  guint line = 0;
  guint32 n_vocab = 0;
  while (pos < len)
    {
      line++;
      const char *ls = d + pos;
      const char *nl = memchr (ls, '\n', len - pos);
      gsize ll = nl ? (gsize) (nl - ls) : len - pos;
      pos += ll + (nl ? 1 : 0);
      if (ll > 0 && ls[ll - 1] == '\r')
        ll--;
      if (ll == 0)
        continue;
      const char *sp = memchr (ls, ' ', ll);
      const char *why = NULL;
      gsize blen = sp ? (gsize) (sp - ls) : 0;
      guint64 rank = 0;
      if (!sp || blen == 0 || blen % 4 != 0 || sp + 1 == ls + ll)
        why = "expected a base64 token, a space and a rank";
      else
        {
          for (gsize i = 0; i < blen && !why; i++)
            {
              char c = ls[i];
              if (!(g_ascii_isalnum (c) || c == '+' || c == '/' || (c == '=' && i >= blen - 2)))
                why = "bad base64";
            }
          for (const char *q = sp + 1; q < ls + ll && !why; q++)
            {
              if (*q < '0' || *q > '9')
                why = "rank is not a number";
              else if ((rank = rank * 10 + (guint64) (*q - '0')) >= MAX_ID)
                why = "rank out of range";
            }
        }
      if (!why)
        {
          char tmp[256];
          if (blen >= sizeof tmp)
            why = "token too long";
          else
            {
              memcpy (tmp, ls, blen);
              tmp[blen] = 0;
              gsize n = 0;
              g_base64_decode_inplace (tmp, &n);
              if (n == 0)
                why = "empty token";
              else
                {
                  guint32 o = bytes->len;
                  g_byte_array_append (bytes, (const guint8 *) tmp, (guint) n);
                  guint32 r = (guint32) rank;
                  g_array_append_val (ranks, r);
                  g_array_append_val (offs, o);
                  n_vocab = MAX (n_vocab, r + 1);
                }
            }
        }
      if (why)
        {
          g_set_error (error, GPTD_BPE_ERROR, GPTD_BPE_ERROR_VOCAB, "%s:%u: %s: \"%.*s\"",
                       path, line, why, (int) MIN (ll, 200), ls);
          return NULL;
        }
    }
  guint32 end = bytes->len;
  g_array_append_val (offs, end);

  static const char eot[] = "<|endoftext|>";
  guint32 eot_id = n_vocab++;
  g_autofree const guint8 **tokens = g_new0 (const guint8 *, n_vocab);
  g_autofree guint32 *lens = g_new0 (guint32, n_vocab);
  g_autofree guint8 *kinds = g_new0 (guint8, n_vocab);
  for (guint i = 0; i < ranks->len; i++)
    {
      guint32 r = g_array_index (ranks, guint32, i);
      if (tokens[r])
        {
          g_set_error (error, GPTD_BPE_ERROR, GPTD_BPE_ERROR_VOCAB,
                       "%s: rank %u is given twice", path, r);
          return NULL;
        }
      guint32 o = g_array_index (offs, guint32, i), o2 = g_array_index (offs, guint32, i + 1);
      tokens[r] = bytes->data + o;
      lens[r] = o2 - o;
      kinds[r] = 1;
    }
  tokens[eot_id] = (const guint8 *) eot;
  lens[eot_id] = sizeof eot - 1;
  kinds[eot_id] = 2;
  return gptd__bpe_new (path, n_vocab, tokens, lens, kinds, NULL, 0, error);
}

/* ------------------------------------------------------------------------ */
/* Resolution                                                                 */

static GptdBpe *
load_path (const char *path, GError **error)
{
  if (g_file_test (path, G_FILE_TEST_IS_DIR))
    {
      static const char *const pairs[][2] = {
        { "encoder.json", "vocab.bpe" },
        { "vocab.json", "merges.txt" },
      };
      for (guint i = 0; i < G_N_ELEMENTS (pairs); i++)
        {
          g_autofree char *a = g_build_filename (path, pairs[i][0], NULL);
          if (g_file_test (a, G_FILE_TEST_EXISTS))
            return load_gpt2 (path, pairs[i][0], pairs[i][1], error);
        }
      g_set_error (error, GPTD_BPE_ERROR, GPTD_BPE_ERROR_NOT_FOUND,
                   "%s: no encoder.json + vocab.bpe or vocab.json + merges.txt in this directory",
                   path);
      return NULL;
    }
  g_autofree char *base = g_path_get_basename (path);
  if (g_str_has_suffix (path, ".tiktoken"))
    return load_tiktoken (path, error);
  if (strcmp (base, "encoder.json") == 0 || strcmp (base, "vocab.json") == 0)
    {
      g_autofree char *dir = g_path_get_dirname (path);
      return load_gpt2 (dir, base, base[0] == 'e' ? "vocab.bpe" : "merges.txt", error);
    }
  g_set_error (error, GPTD_BPE_ERROR, GPTD_BPE_ERROR_NOT_FOUND,
               "%s: not a vocabulary (expected a directory with encoder.json + vocab.bpe, "
               "or a .tiktoken file)", path);
  return NULL;
}

char *
gptd_bpe_locate (const char *vocab, GError **error)
{
  g_return_val_if_fail (vocab != NULL, NULL);
  g_return_val_if_fail (error == NULL || *error == NULL, NULL);

  if (*vocab == '\0')
    {
      g_set_error (error, GPTD_BPE_ERROR, GPTD_BPE_ERROR_NOT_FOUND, "empty vocabulary name");
      return NULL;
    }
  if (strchr (vocab, '/') || g_file_test (vocab, G_FILE_TEST_EXISTS))
    {
      if (!g_file_test (vocab, G_FILE_TEST_EXISTS))
        {
          g_set_error (error, GPTD_BPE_ERROR, GPTD_BPE_ERROR_NOT_FOUND,
                       "%s: no such file or directory", vocab);
          return NULL;
        }
      return g_strdup (vocab);
    }

  /* A name: $GPTD_DATA_DIR/NAME, then the installed data directory. */
  const char *dirs[2] = { g_getenv ("GPTD_DATA_DIR"), gptd__install_datadir () };
  g_autoptr (GString) tried = g_string_new (NULL);
  for (guint i = 0; i < G_N_ELEMENTS (dirs); i++)
    {
      if (!dirs[i] || !*dirs[i])
        continue;
      g_autofree char *d = g_build_filename (dirs[i], vocab, NULL);
      g_autofree char *t = g_strconcat (d, ".tiktoken", NULL);
      if (g_file_test (d, G_FILE_TEST_IS_DIR))
        return g_steal_pointer (&d);
      if (g_file_test (t, G_FILE_TEST_IS_REGULAR))
        return g_steal_pointer (&t);
      g_string_append_printf (tried, "%s%s", tried->len ? ", " : "", d);
    }
  g_set_error (error, GPTD_BPE_ERROR, GPTD_BPE_ERROR_NOT_FOUND,
               "vocabulary \"%s\" not found (looked in %s; set GPTD_DATA_DIR to the directory "
               "that holds %s/)", vocab, tried->str, vocab);
  return NULL;
}

GptdBpe *
gptd_bpe_load (const char *vocab, GError **error)
{
  g_autofree char *path = gptd_bpe_locate (vocab, error);
  if (path == NULL)
    return NULL;
  return load_path (path, error);
}

/* ------------------------------------------------------------------------ */
/* Saving                                                                     */

/* Finds, for a token made by merging, the two tokens it was merged from: the
 * split that byte-pair merging with only lower ranks arrives at. */
static gboolean
derive_merge (const GptdBpe *bpe, guint32 id, GptdBpeMerge *out)
{
  const guint8 *p = bpe->tok_bytes + bpe->tok_off[id];
  gsize n = bpe->tok_off[id + 1] - bpe->tok_off[id];
  g_autofree gsize *start = g_new (gsize, n + 1);
  for (gsize i = 0; i <= n; i++)
    start[i] = i;
  gsize m = n;
  while (m > 2)
    {
      guint32 best = GPTD__BPE_NO_ID;
      gsize at = 0;
      for (gsize i = 0; i + 1 < m; i++)
        {
          guint32 r = gptd__bpe_lookup_bytes (bpe, p + start[i], start[i + 2] - start[i]);
          if (r < id && r < best)
            {
              best = r;
              at = i;
            }
        }
      if (best == GPTD__BPE_NO_ID)
        return FALSE;
      memmove (start + at + 1, start + at + 2, sizeof (gsize) * (m - at - 1));
      m--;
    }
  out->left = gptd__bpe_lookup_bytes (bpe, p, start[1]);
  out->right = gptd__bpe_lookup_bytes (bpe, p + start[1], n - start[1]);
  return out->left != GPTD__BPE_NO_ID && out->right != GPTD__BPE_NO_ID;
}

static void
append_mapped (GString *s, const guint8 *p, gsize n)
{
  for (gsize i = 0; i < n; i++)
    g_string_append_unichar (s, gptd__bpe_byte_to_unicode[p[i]]);
}

gboolean
gptd_bpe_save (const GptdBpe *bpe, const char *dir, GError **error)
{
  g_return_val_if_fail (bpe != NULL, FALSE);
  g_return_val_if_fail (dir != NULL, FALSE);

  if (g_mkdir_with_parents (dir, 0755) != 0)
    {
      int e = errno;
      g_set_error (error, GPTD_BPE_ERROR, GPTD_BPE_ERROR_IO, "%s: cannot create directory: %s",
                   dir, g_strerror (e));
      return FALSE;
    }

  /* vocab.bpe */
  g_autoptr (GString) m = g_string_new ("#version: 0.2\n");
  g_autoptr (GArray) derived = NULL;
  const GptdBpeMerge *merges = bpe->merges;
  guint n_merges = bpe->n_merges;
  if (n_merges == 0)
    {
      derived = g_array_new (FALSE, FALSE, sizeof (GptdBpeMerge));
      for (guint32 id = 0; id < bpe->n_vocab; id++)
        {
          if (bpe->tok_kind[id] != 1 || bpe->tok_off[id + 1] - bpe->tok_off[id] < 2)
            continue;
          GptdBpeMerge mg;
          if (!derive_merge (bpe, id, &mg))
            {
              g_set_error (error, GPTD_BPE_ERROR, GPTD_BPE_ERROR_VOCAB,
                           "%s: token %u cannot be made by merging tokens of lower rank",
                           bpe->source, id);
              return FALSE;
            }
          g_array_append_val (derived, mg);
        }
      merges = (const GptdBpeMerge *) (void *) derived->data;
      n_merges = derived->len;
    }
  for (guint i = 0; i < n_merges; i++)
    {
      guint32 a = merges[i].left, b = merges[i].right;
      append_mapped (m, bpe->tok_bytes + bpe->tok_off[a], bpe->tok_off[a + 1] - bpe->tok_off[a]);
      g_string_append_c (m, ' ');
      append_mapped (m, bpe->tok_bytes + bpe->tok_off[b], bpe->tok_off[b + 1] - bpe->tok_off[b]);
      g_string_append_c (m, '\n');
    }

  /* encoder.json, in id order. */
  g_autoptr (JsonBuilder) jb = json_builder_new ();
  json_builder_begin_object (jb);
  g_autoptr (GString) key = g_string_new (NULL);
  for (guint32 id = 0; id < bpe->n_vocab; id++)
    {
      if (bpe->tok_kind[id] == 0)
        continue;
      g_string_truncate (key, 0);
      const guint8 *p = bpe->tok_bytes + bpe->tok_off[id];
      gsize n = bpe->tok_off[id + 1] - bpe->tok_off[id];
      if (bpe->tok_kind[id] == 1)
        append_mapped (key, p, n);
      else
        g_string_append_len (key, (const char *) p, (gssize) n);
      json_builder_set_member_name (jb, key->str);
      json_builder_add_int_value (jb, id);
    }
  json_builder_end_object (jb);
  g_autoptr (JsonNode) root = json_builder_get_root (jb);
  g_autoptr (JsonGenerator) gen = json_generator_new ();
  json_generator_set_root (gen, root);
  gsize jlen = 0;
  g_autofree char *json = json_generator_to_data (gen, &jlen);

  g_autofree char *jpath = g_build_filename (dir, "encoder.json", NULL);
  g_autofree char *mpath = g_build_filename (dir, "vocab.bpe", NULL);
  g_autoptr (GError) err = NULL;
  if (!gptd_atomic_file_set_contents (jpath, json, jlen, &err)
      || !gptd_atomic_file_set_contents (mpath, m->str, m->len, &err))
    {
      g_set_error (error, GPTD_BPE_ERROR, GPTD_BPE_ERROR_IO, "%s", err->message);
      return FALSE;
    }
  return TRUE;
}
