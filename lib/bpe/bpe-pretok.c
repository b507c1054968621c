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
#include "bpe/bpe-pretok.h"

/* Two bits per code point, 0x110000 code points. */
guint8 *gptd__bpe_class_table;

const guint8 gptd__bpe_ascii_class[128] = {
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
      gptd__bpe_class_table = t;
      g_once_init_leave (&once, 1);
    }
}

guint8
gptd__bpe_class_slow (gunichar cp)
{
  gptd__bpe_classes_init ();
  return cp < 0x110000 ? gptd__bpe_class_of (cp) : GPTD__BPE_CLASS_OTHER;
}

gsize
gptd__bpe_pretok_next (const guint8 *s, gsize pos, gsize len)
{
  return gptd__bpe_pretok_next_inline (s, pos, len);
}

gboolean
gptd__bpe_space_at (const guint8 *s, gsize i)
{
  gsize n;
  return gptd__bpe_class_at (s, i, &n) == GPTD__BPE_CLASS_SPACE;
}
