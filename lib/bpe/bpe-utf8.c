/* lib/bpe/bpe-utf8.c: UTF-8 validation and repair for the tokenizer.
 *
 * Well-formed UTF-8 follows Table 3-7 of the Unicode standard (no overlong forms,
 * no surrogates, nothing above U+10FFFF). Repair replaces each maximal subpart of
 * an ill-formed sequence with U+FFFD, as Unicode recommends and as Python's
 * errors="replace" and the WHATWG decoder do.
 */
#include "bpe/bpe-internal.h"

/* Bounds of the second byte after each lead byte; lo > hi marks an invalid lead. */
static inline void
second_byte_range (guint8 lead, guint8 *lo, guint8 *hi, int *need)
{
  *lo = 0x80;
  *hi = 0xBF;
  if (lead >= 0xC2 && lead <= 0xDF)
    *need = 1;
  else if (lead >= 0xE0 && lead <= 0xEF)
    {
      *need = 2;
      if (lead == 0xE0)
        *lo = 0xA0;
      else if (lead == 0xED)
        *hi = 0x9F;
    }
  else if (lead >= 0xF0 && lead <= 0xF4)
    {
      *need = 3;
      if (lead == 0xF0)
        *lo = 0x90;
      else if (lead == 0xF4)
        *hi = 0x8F;
    }
  else
    {
      *need = 0;
      *lo = 1;
      *hi = 0;
    }
}

gsize
gptd__bpe_utf8_invalid_len (const guint8 *s, gsize len)
{
  guint8 lo, hi;
  int need;
  if (s[0] < 0x80)
    return 0;
  second_byte_range (s[0], &lo, &hi, &need);
  if (need == 0)
    return 1;
  gsize i = 1;
  for (int k = 0; k < need; k++, i++)
    {
      if (i >= len)
        return i;
      guint8 b = s[i];
      if (k == 0 ? (b < lo || b > hi) : (b < 0x80 || b > 0xBF))
        return i;
    }
  return 0;
}

gsize
gptd__bpe_utf8_find_invalid (const guint8 *s, gsize len)
{
  gsize i = 0;
  while (i < len)
    {
      /* Eight ASCII bytes at a time. */
      while (i + 8 <= len)
        {
          guint64 w;
          memcpy (&w, s + i, 8);
          if (w & 0x8080808080808080ull)
            break;
          i += 8;
        }
      if (i >= len)
        break;
      guint8 b = s[i];
      if (b < 0x80)
        {
          i++;
          continue;
        }
      guint8 lo, hi;
      int need;
      second_byte_range (b, &lo, &hi, &need);
      if (need == 0 || i + (gsize) need >= len)
        return i;
      if (s[i + 1] < lo || s[i + 1] > hi)
        return i;
      for (int k = 2; k <= need; k++)
        if ((s[i + k] & 0xC0) != 0x80)
          return i;
      i += need + 1;
    }
  return len;
}

GString *
gptd__bpe_utf8_make_valid (const guint8 *s, gsize len)
{
  GString *out = g_string_sized_new (len + 16);
  gsize i = 0;
  while (i < len)
    {
      gsize bad = gptd__bpe_utf8_find_invalid (s + i, len - i);
      g_string_append_len (out, (const char *) s + i, bad);
      i += bad;
      if (i >= len)
        break;
      g_string_append (out, "\xEF\xBF\xBD");
      i += gptd__bpe_utf8_invalid_len (s + i, len - i);
    }
  return out;
}

gboolean
gptd__bpe_utf8_is_incomplete (const guint8 *s, gsize len)
{
  guint8 lo, hi;
  int need;
  if (len == 0 || s[0] < 0x80)
    return FALSE;
  second_byte_range (s[0], &lo, &hi, &need);
  if (need == 0 || len > (gsize) need)
    return FALSE;
  for (gsize i = 1; i < len; i++)
    if (i == 1 ? (s[i] < lo || s[i] > hi) : (s[i] & 0xC0) != 0x80)
      return FALSE;
  return TRUE;
}
