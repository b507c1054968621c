/* lib/bpe/bpe-pretok.c: the GPT-2 pre-tokenizer.
 *
 * It splits text into the pieces that tiktoken's gpt2 pattern
 *
 *   's|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+
 *
 * finds, without a regex engine. Code points fall into four classes: letters
 * (general categories Lu Ll Lt Lm Lo, from GLib's tables), numbers (Nd Nl No),
 * white space (the Unicode White_Space property, which is what \s means to the
 * regex engine tiktoken uses) and everything else. The classes live in a table of
 * two bits per code point, filled once from g_unichar_type().
 */
#include "bpe/bpe-internal.h"

/* Two bits per code point, 0x110000 code points. */
static guint8 *class_table;

static const guint8 ascii_class[128] = {
  /* 0x00 */ 0, 0, 0, 0, 0, 0, 0, 0, 0, 3, 3, 3, 3, 3, 0, 0,
  /* 0x10 */ 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
  /* 0x20 */ 3, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
  /* 0x30 */ 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 0, 0, 0, 0, 0, 0,
  /* 0x40 */ 0, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1,
  /* 0x50 */ 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 0, 0, 0, 0, 0,
  /* 0x60 */ 0, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1,
  /* 0x70 */ 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 0, 0, 0, 0, 0,
};

static gboolean
is_white_space (gunichar cp)
{
  /* The White_Space property (PropList.txt); unchanged since Unicode 6.3. */
  switch (cp)
    {
    case 0x09: case 0x0A: case 0x0B: case 0x0C: case 0x0D: case 0x20:
    case 0x85: case 0xA0: case 0x1680:
    case 0x2028: case 0x2029: case 0x202F: case 0x205F: case 0x3000:
      return TRUE;
    default:
      return cp >= 0x2000 && cp <= 0x200A;
    }
}

guint8
gptd__bpe_class_reference (gunichar cp)
{
  if (is_white_space (cp))
    return GPTD__BPE_CLASS_SPACE;
  if (cp >= 0xD800 && cp <= 0xDFFF)
    return GPTD__BPE_CLASS_OTHER;
  switch (g_unichar_type (cp))
    {
    case G_UNICODE_UPPERCASE_LETTER:
    case G_UNICODE_LOWERCASE_LETTER:
    case G_UNICODE_TITLECASE_LETTER:
    case G_UNICODE_MODIFIER_LETTER:
    case G_UNICODE_OTHER_LETTER:
      return GPTD__BPE_CLASS_LETTER;
    case G_UNICODE_DECIMAL_NUMBER:
    case G_UNICODE_LETTER_NUMBER:
    case G_UNICODE_OTHER_NUMBER:
      return GPTD__BPE_CLASS_NUMBER;
    default:
      return GPTD__BPE_CLASS_OTHER;
    }
}

void
gptd__bpe_classes_init (void)
{
  static gsize once = 0;
  if (g_once_init_enter (&once))
    {
      guint8 *t = g_malloc0 (0x110000 / 4);
      for (gunichar cp = 0; cp < 0x110000; cp++)
        {
          /* Planes 4-13 hold no assigned code points; their class is OTHER (0). */
          if (cp == 0x40000)
            cp = 0xE0000;
          guint8 c = gptd__bpe_class_reference (cp);
          t[cp >> 2] |= (guint8) (c << ((cp & 3) * 2));
        }
      class_table = t;
      g_once_init_leave (&once, 1);
    }
}

static inline guint8
class_of (gunichar cp)
{
  return (class_table[cp >> 2] >> ((cp & 3) * 2)) & 3;
}

guint8
gptd__bpe_class_slow (gunichar cp)
{
  gptd__bpe_classes_init ();
  return cp < 0x110000 ? class_of (cp) : GPTD__BPE_CLASS_OTHER;
}

/* The class of the character at s[i] (valid UTF-8); its length in *clen. */
static inline guint8
class_at (const guint8 *s, gsize i, gsize *clen)
{
  guint8 b = s[i];
  gunichar cp;
  if (b < 0x80)
    {
      *clen = 1;
      return ascii_class[b];
    }
  if (b < 0xE0)
    {
      cp = ((gunichar) (b & 0x1F) << 6) | (s[i + 1] & 0x3F);
      *clen = 2;
    }
  else if (b < 0xF0)
    {
      cp = ((gunichar) (b & 0x0F) << 12) | ((gunichar) (s[i + 1] & 0x3F) << 6) | (s[i + 2] & 0x3F);
      *clen = 3;
    }
  else
    {
      cp = ((gunichar) (b & 0x07) << 18) | ((gunichar) (s[i + 1] & 0x3F) << 12)
           | ((gunichar) (s[i + 2] & 0x3F) << 6) | (s[i + 3] & 0x3F);
      *clen = 4;
    }
  return class_of (cp);
}

/* Returns the end of the run of characters of class cls that starts at i. */
static inline gsize
run_end (const guint8 *s, gsize i, gsize len, guint8 cls)
{
  while (i < len)
    {
      guint8 b = s[i];
      if (b < 0x80)
        {
          if (ascii_class[b] != cls)
            return i;
          i++;
        }
      else
        {
          gsize n;
          if (class_at (s, i, &n) != cls)
            return i;
          i += n;
        }
    }
  return i;
}

gsize
gptd__bpe_pretok_next (const guint8 *s, gsize pos, gsize len)
{
  gsize n0;
  guint8 c0 = class_at (s, pos, &n0);

  /* Contractions: 's 't 'm 'd 're 've 'll (case-sensitive). */
  if (s[pos] == '\'' && pos + 1 < len)
    {
      guint8 a = s[pos + 1];
      if (a == 's' || a == 't' || a == 'm' || a == 'd')
        return pos + 2;
      if (pos + 2 < len)
        {
          guint8 b = s[pos + 2];
          if ((a == 'r' && b == 'e') || (a == 'v' && b == 'e') || (a == 'l' && b == 'l'))
            return pos + 3;
        }
    }

  /* An optional leading space before letters, numbers or other symbols. */
  if (s[pos] == ' ' && pos + 1 < len)
    {
      gsize n1;
      guint8 c1 = class_at (s, pos + 1, &n1);
      if (c1 != GPTD__BPE_CLASS_SPACE)
        return run_end (s, pos + 1 + n1, len, c1);
    }

  if (c0 != GPTD__BPE_CLASS_SPACE)
    return run_end (s, pos + n0, len, c0);

  /* White space: \s+(?!\S) takes the run but its last character when a
   * non-space follows; a single space character before a non-space is \s+. */
  gsize last = pos;     /* start of the run's last character */
  gsize i = pos + n0;
  while (i < len)
    {
      gsize n;
      if (class_at (s, i, &n) != GPTD__BPE_CLASS_SPACE)
        break;
      last = i;
      i += n;
    }
  if (i == len || last == pos)
    return i;
  return last;
}

gboolean
gptd__bpe_space_at (const guint8 *s, gsize i)
{
  gsize n;
  return class_at (s, i, &n) == GPTD__BPE_CLASS_SPACE;
}
