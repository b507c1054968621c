/* lib/bpe/bpe-pretok.h: the GPT-2 pre-tokenizer's inner functions, inline so
 * that the encoder's loop can use them without calls (see bpe-pretok.c).
 */
#ifndef GPTD_BPE_PRETOK_H
#define GPTD_BPE_PRETOK_H

#include "bpe/bpe-internal.h"

/* Two bits per code point (filled by gptd__bpe_classes_init()), and ASCII. */
extern guint8 *gptd__bpe_class_table;
extern const guint8 gptd__bpe_ascii_class[128];

static inline guint8
gptd__bpe_class_of (gunichar cp)
{
  return (gptd__bpe_class_table[cp >> 2] >> ((cp & 3) * 2)) & 3;
}

/* The class of the character at s[i] (valid UTF-8); its length in *clen. */
static inline guint8
gptd__bpe_class_at (const guint8 *s, gsize i, gsize *clen)
{
  guint8 b = s[i];
  gunichar cp;
  if (b < 0x80)
    {
      *clen = 1;
      return gptd__bpe_ascii_class[b];
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
  return gptd__bpe_class_of (cp);
}

/* Returns the end of the run of characters of class cls that starts at i. */
static inline gsize
gptd__bpe_run_end (const guint8 *s, gsize i, gsize len, guint8 cls)
{
  while (i < len)
    {
      guint8 b = s[i];
      if (b < 0x80)
        {
          if (gptd__bpe_ascii_class[b] != cls)
            return i;
          i++;
        }
      else
        {
          gsize n;
          if (gptd__bpe_class_at (s, i, &n) != cls)
            return i;
          i += n;
        }
    }
  return i;
}

static inline gsize
gptd__bpe_pretok_next_inline (const guint8 *s, gsize pos, gsize len)
{
  gsize n0;
  guint8 c0 = gptd__bpe_class_at (s, pos, &n0);

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
      guint8 c1 = gptd__bpe_class_at (s, pos + 1, &n1);
      if (c1 != GPTD__BPE_CLASS_SPACE)
        return gptd__bpe_run_end (s, pos + 1 + n1, len, c1);
    }

  if (c0 != GPTD__BPE_CLASS_SPACE)
    return gptd__bpe_run_end (s, pos + n0, len, c0);

  /* White space: \s+(?!\S) takes the run but its last character when a
   * non-space follows; a single space character before a non-space is \s+. */
  gsize last = pos;     /* start of the run's last character */
  gsize i = pos + n0;
  while (i < len)
    {
      gsize n;
      if (gptd__bpe_class_at (s, i, &n) != GPTD__BPE_CLASS_SPACE)
        break;
      last = i;
      i += n;
    }
  if (i == len || last == pos)
    return i;
  return last;
}

#endif /* GPTD_BPE_PRETOK_H */
